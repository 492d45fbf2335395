//! The `sim_stanzas` fuzz target: hostile stanzas into the sans-IO server. The first
//! input byte picks a connection state (registering, pair-success in flight, code
//! pairing in progress, logged in, or a fresh connection whose ClientPayload comes from
//! the input); the rest is a sequence of `u16 BE length ‖ frame payload` chunks, each
//! decoded with `binary::unmarshal` and handed to [`World::on_node`]. Every node the
//! server queues in answer must encode (`binary::marshal`); nothing may panic.
//!
//! The states are built once per thread from fixed seeds and cloned per input, so an
//! input replays the same way. The seed helpers below build real client stanzas for
//! each state (`tests/sim_fuzz_seeds.rs` writes and checks `fuzz/corpus/sim_stanzas`).

use std::time::{Duration, Instant};

use prost::Message as _;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::config::SimConfig;
use super::groups::{GroupAddressing, GroupSpec};
use super::pair_code::{
    KeyBundle, PrimaryHello, seal_key_bundle, unwrap_ephemeral, wrap_ephemeral,
};
use super::qr::QrData;
use super::stanza::{self, be_bytes};
use super::world::{
    ConnAction, ConnId, DeviceRegistration, Effect, Phase, SignedPreKeyPublic, World,
};
use crate::binary::{Node, marshal, unmarshal};
use crate::jid::Jid;
use crate::noise::client_payload::{Login, Registration, login_payload, registration_payload};
use crate::proto::wa6::ClientPayload;
use crate::signal::curve::KeyPair;
use crate::signal::identity::{LocalIdentity, SignedPreKeyRecord, generate_prekeys};

/// Account the fuzzed client belongs to.
pub const ACCOUNT: &str = "15550000001";
/// Another account (key fetches, removals).
pub const OTHER: &str = "15550000002";
/// Id of the pair-success in flight in the pairing state.
pub const PAIR_SUCCESS_ID: &str = "1001";
/// Ref of the code pairing in the code state.
pub const CODE_REF: &str = "fuzz-ref";
/// The code the companion used in the code state.
pub const CODE: &str = "2RNV5KXC";
/// The group the logged-in state's account belongs to (with [`OTHER`] and two simulated
/// members).
pub const GROUP: &str = "120363000000000001";
/// Most chunks processed per input.
pub const MAX_STEPS: usize = 64;

/// Connection states an input can start from (first byte modulo 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Registration payload accepted, pair-device sent.
    Registering = 0,
    /// pair-success sent, waiting for pair-device-sign.
    Pairing = 1,
    /// companion_hello done and the phone's primary_hello sent.
    Code = 2,
    /// Logged in as device 1 of [`ACCOUNT`] with prekeys on the server.
    LoggedIn = 3,
    /// Fresh connection: the first chunk is the ClientPayload.
    Payload = 4,
}

impl Mode {
    /// The mode a first input byte selects.
    pub fn from_byte(b: u8) -> Mode {
        match b % 5 {
            0 => Mode::Registering,
            1 => Mode::Pairing,
            2 => Mode::Code,
            3 => Mode::LoggedIn,
            _ => Mode::Payload,
        }
    }
}

/// The fuzzed client's keys (fixed).
pub struct ClientKeys {
    /// Noise static key.
    pub noise: KeyPair,
    /// Identity and registration id.
    pub identity: LocalIdentity,
    /// Signed prekey.
    pub signed_prekey: SignedPreKeyRecord,
    /// Ephemeral of its code pairing.
    pub code_ephemeral: KeyPair,
}

/// The client keys every state uses.
pub fn client_keys() -> ClientKeys {
    let mut rng = StdRng::seed_from_u64(0x51_57A7);
    let identity = LocalIdentity::generate(&mut rng);
    let signed_prekey = SignedPreKeyRecord::generate(&identity.key_pair, 1, 0, &mut rng);
    ClientKeys {
        noise: KeyPair::generate(&mut rng),
        identity,
        signed_prekey,
        code_ephemeral: KeyPair::generate(&mut rng),
    }
}

/// The registration payload of the fuzzed client.
pub fn registration(keys: &ClientKeys) -> ClientPayload {
    registration_payload(&Registration::new(
        keys.identity.registration_id,
        keys.identity.key_pair.public,
        keys.signed_prekey.id,
        keys.signed_prekey.key_pair.public,
        keys.signed_prekey.signature,
    ))
    .unwrap_or_default()
}

/// The login payload of device 1 of [`ACCOUNT`].
pub fn login() -> ClientPayload {
    login_payload(&Login::new(ACCOUNT, 1)).unwrap_or_default()
}

struct Template {
    world: World,
    conn: ConnId,
}

impl Clone for Template {
    fn clone(&self) -> Self {
        Template {
            world: self.world.clone(),
            conn: self.conn,
        }
    }
}

struct Templates {
    registering: Template,
    pairing: Template,
    code: Template,
    logged_in: Template,
    payload: Template,
    /// Wrapped primary ephemeral of the code state (for its seed).
    primary_wrapped: Vec<u8>,
}

fn base_world() -> World {
    let mut world = World::new(SimConfig {
        phone_prekeys: 3,
        ..SimConfig::default()
    });
    world.reseed_stanza_ids(1000);
    let mut rng = StdRng::seed_from_u64(0xACC0);
    world.create_account_with_rng(ACCOUNT, &mut rng);
    world.create_account_with_rng(OTHER, &mut rng);
    world
}

fn build() -> Templates {
    let keys = client_keys();
    let now = Instant::now();
    let mut rng = StdRng::seed_from_u64(0xC0DE);

    let mut world = base_world();
    let conn = world.new_connection(keys.noise.public, now);
    world.on_client_payload(conn, &registration(&keys), now);
    world.take_effects();
    let registering = Template { world, conn };

    let mut pairing = registering.clone();
    let reference = match &pairing.world.connections.get(&conn).map(|c| &c.phase) {
        Some(Phase::Registering(r)) => r.refs.first().cloned().unwrap_or_default(),
        _ => String::new(),
    };
    let qr = QrData {
        reference,
        noise_key: keys.noise.public,
        identity_key: keys.identity.key_pair.public,
        adv_secret: Some([1; 32]),
        client_type: None,
    };
    let ticket = pairing.world.ticket();
    let _ = pairing.world.start_qr_pairing(ACCOUNT, &qr, ticket, now);
    pairing.world.take_effects();

    let mut code = registering.clone();
    let wrapped = wrap_ephemeral(CODE, &keys.code_ephemeral.public, &mut rng);
    code.world
        .on_node(conn, companion_hello_node(&wrapped, &keys), now);
    let mut primary_wrapped = Vec::new();
    if let Some(Phase::Registering(r)) = code.world.connections.get_mut(&conn).map(|c| &mut c.phase)
        && let Some(c) = r.code.as_mut()
    {
        c.reference = CODE_REF.to_owned();
    }
    if let Ok(hello) = PrimaryHello::start(CODE, &wrapped, &mut rng) {
        primary_wrapped = hello.wrapped_primary_ephemeral.to_vec();
        let ticket = code.world.ticket();
        let _ = code
            .world
            .begin_primary_hello(conn, CODE_REF, hello, ticket);
    }
    code.world.take_effects();

    let mut world = base_world();
    let registration = DeviceRegistration {
        noise_key: keys.noise.public,
        identity: keys.identity.clone(),
        signed_prekey: SignedPreKeyPublic {
            id: keys.signed_prekey.id,
            key: keys.signed_prekey.key_pair.public,
            signature: keys.signed_prekey.signature,
        },
        platform: "fuzz".into(),
    };
    let _ = world.inject_device(&Jid::pn_user(ACCOUNT), registration);
    if let Some(d) = world.device_mut(&Jid::pn_user(ACCOUNT).with_device(1)) {
        d.prekeys = generate_prekeys(1, 6, &mut rng)
            .into_iter()
            .map(|p| (p.id, p.key_pair.public))
            .collect();
    }
    let payload_world = world.clone();
    add_group(&mut world);
    let conn = world.new_connection(keys.noise.public, now);
    world.on_client_payload(conn, &login(), now);
    world.take_effects();
    let logged_in = Template { world, conn };

    let mut world = payload_world;
    let conn = world.new_connection(keys.noise.public, now);
    let payload = Template { world, conn };

    Templates {
        registering,
        pairing,
        code,
        logged_in,
        payload,
        primary_wrapped,
    }
}

/// Puts [`ACCOUNT`], [`OTHER`] and two simulated members into group [`GROUP`].
fn add_group(world: &mut World) {
    let spec = GroupSpec {
        subject: "fuzz".into(),
        accounts: vec![Jid::pn_user(ACCOUNT), Jid::pn_user(OTHER)],
        simulated_members: 2,
        devices_per_member: 1..=2,
        addressing: GroupAddressing::Lid,
    };
    let Ok(jid) = world.create_group_with_rng(&spec, &mut StdRng::seed_from_u64(0x6709)) else {
        return;
    };
    if let Some(mut g) = world.groups.remove(&jid.user) {
        g.jid = Jid::group(GROUP);
        world.groups.insert(GROUP.to_owned(), g);
    }
}

thread_local! {
    static TEMPLATES: Templates = build();
}

/// Encodes every node the server queued; a node it cannot encode is a server bug.
fn check_effects(world: &mut World) -> usize {
    let mut sent = 0;
    for effect in world.take_effects() {
        if let Effect::Conn(_, ConnAction::Send(node)) = effect {
            if let Err(e) = marshal(&node) {
                panic!("the simulator queued a node it cannot encode: {e}\n{node}");
            }
            sent += 1;
        }
    }
    sent
}

/// Splits `u16 BE length ‖ bytes` chunks (a short last chunk is taken as is).
pub fn chunks(mut rest: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        if out.len() >= MAX_STEPS {
            break;
        }
        let len = usize::from(u16::from_be_bytes(*len));
        let (chunk, tail) = tail.split_at(len.min(tail.len()));
        out.push(chunk);
        rest = tail;
    }
    out
}

/// Runs one input; returns how many nodes the server sent (for seed checks).
pub fn stanzas(data: &[u8]) -> usize {
    let Some((&mode, rest)) = data.split_first() else {
        return 0;
    };
    let mode = Mode::from_byte(mode);
    let mut t = TEMPLATES.with(|t| match mode {
        Mode::Registering => t.registering.clone(),
        Mode::Pairing => t.pairing.clone(),
        Mode::Code => t.code.clone(),
        Mode::LoggedIn => t.logged_in.clone(),
        Mode::Payload => t.payload.clone(),
    });
    let now = Instant::now();
    let mut sent = 0;
    let mut pieces = chunks(rest).into_iter();
    if mode == Mode::Payload {
        let Some(first) = pieces.next() else {
            return 0;
        };
        let payload = ClientPayload::decode(first).unwrap_or_default();
        t.world.on_client_payload(t.conn, &payload, now);
        sent += check_effects(&mut t.world);
    }
    for piece in pieces {
        if let Ok(node) = unmarshal(piece) {
            t.world.on_node(t.conn, node, now);
            sent += check_effects(&mut t.world);
        }
    }
    t.world.on_deadline(t.conn, now + Duration::from_secs(3600));
    t.world.on_closed(t.conn);
    sent + check_effects(&mut t.world)
}

/// Builds a fuzz input: the mode byte, then each frame payload with its length.
pub fn input(mode: Mode, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![mode as u8];
    for f in frames {
        let len = u16::try_from(f.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(f.get(..usize::from(len)).unwrap_or(f));
    }
    out
}

/// `<iq to xmlns type id>children</iq>` as the client sends it.
pub fn client_iq(id: &str, xmlns: &str, kind: &str, children: Vec<Node>) -> Node {
    Node::new("iq")
        .attr("to", Jid::server_jid())
        .attr("id", id)
        .attr("xmlns", xmlns)
        .attr("type", kind)
        .with_children(children)
}

/// The companion_hello the code state was built with.
pub fn companion_hello_node(wrapped: &[u8], keys: &ClientKeys) -> Node {
    client_iq(
        "hello",
        "md",
        "set",
        vec![
            Node::new("link_code_companion_reg")
                .attr("jid", Jid::pn_user(ACCOUNT))
                .attr("stage", "companion_hello")
                .attr("should_show_push_notification", "true")
                .with_children(vec![
                    Node::new("link_code_pairing_wrapped_companion_ephemeral_pub")
                        .with_bytes(wrapped.to_vec()),
                    Node::new("companion_server_auth_key_pub")
                        .with_bytes(keys.noise.public.as_bytes().to_vec()),
                    Node::new("companion_platform_id").with_bytes(b"1".to_vec()),
                    Node::new("companion_platform_display").with_bytes(b"Chrome (Linux)".to_vec()),
                    Node::new("link_code_pairing_nonce").with_bytes(vec![0]),
                ]),
        ],
    )
}

/// A valid companion_finish for the code state (the key bundle opens).
pub fn companion_finish_node() -> Node {
    let keys = client_keys();
    let wrapped = TEMPLATES.with(|t| t.primary_wrapped.clone());
    let primary_identity = TEMPLATES.with(|t| {
        t.code
            .world
            .account(&Jid::pn_user(ACCOUNT))
            .and_then(|a| a.primary_keys())
            .map(|k| k.identity.key_pair.public)
    });
    let (Ok(primary_eph), Some(primary_identity)) =
        (unwrap_ephemeral(CODE, &wrapped), primary_identity)
    else {
        return Node::new("iq");
    };
    let shared = keys.code_ephemeral.agree(&primary_eph);
    let bundle = seal_key_bundle(
        &shared,
        &KeyBundle {
            companion_identity: keys.identity.key_pair.public,
            primary_identity,
            adv_random: zeroize::Zeroizing::new([9; 32]),
        },
        &mut StdRng::seed_from_u64(9),
    );
    client_iq(
        "finish",
        "md",
        "set",
        vec![
            Node::new("link_code_companion_reg")
                .attr("jid", Jid::pn_user(ACCOUNT))
                .attr("stage", "companion_finish")
                .with_children(vec![
                    Node::new("link_code_pairing_wrapped_key_bundle").with_bytes(bundle),
                    Node::new("companion_identity_public")
                        .with_bytes(keys.identity.key_pair.public.as_bytes().to_vec()),
                    Node::new("link_code_pairing_ref").with_bytes(CODE_REF.as_bytes().to_vec()),
                ]),
        ],
    )
}

/// A prekey upload of the logged-in device with `n` keys.
pub fn upload_node(n: u32) -> Node {
    let keys = client_keys();
    let prekeys = generate_prekeys(100, n, &mut StdRng::seed_from_u64(3));
    let list = prekeys
        .iter()
        .map(|p| {
            Node::new("key").with_children(vec![
                Node::new("id").with_bytes(be_bytes(p.id, 3)),
                Node::new("value").with_bytes(p.key_pair.public.as_bytes().to_vec()),
            ])
        })
        .collect();
    let s = &keys.signed_prekey;
    client_iq(
        "up",
        "encrypt",
        "set",
        vec![
            Node::new("registration").with_bytes(be_bytes(keys.identity.registration_id, 4)),
            Node::new("type").with_bytes(vec![5]),
            Node::new("identity").with_bytes(keys.identity.key_pair.public.as_bytes().to_vec()),
            Node::new("list").with_children(list),
            Node::new("skey").with_children(vec![
                Node::new("id").with_bytes(be_bytes(s.id, 3)),
                Node::new("value").with_bytes(s.key_pair.public.as_bytes().to_vec()),
                Node::new("signature").with_bytes(s.signature.to_vec()),
            ]),
        ],
    )
}

/// A key-bundle fetch for these device JIDs.
pub fn fetch_node(jids: &[Jid]) -> Node {
    client_iq(
        "fetch",
        "encrypt",
        "get",
        vec![
            Node::new("key").with_children(
                jids.iter()
                    .map(|j| Node::new("user").attr("jid", j).attr("reason", "identity"))
                    .collect(),
            ),
        ],
    )
}

/// A pair-device-sign reply to the pairing state's pair-success (its signature cannot
/// be right: the issued details change with the clock).
pub fn pair_device_sign_node() -> Node {
    Node::new("iq")
        .attr("to", Jid::server_jid())
        .attr("id", PAIR_SUCCESS_ID)
        .attr("type", "result")
        .child(
            Node::new("pair-device-sign").child(
                Node::new("device-identity")
                    .attr("key-index", 1u32)
                    .with_bytes(
                        crate::proto::adv::AdvSignedDeviceIdentity {
                            details: Some(vec![8, 1, 16, 2, 24, 1]),
                            account_signature_key: None,
                            account_signature: Some(vec![0; 64]),
                            device_signature: Some(vec![0; 64]),
                        }
                        .encode_to_vec(),
                    ),
            ),
        )
}

/// `w:p` ping, count, digest, passive and an unknown IQ.
pub fn misc_nodes() -> Vec<Node> {
    vec![
        client_iq("p", "w:p", "get", vec![]),
        client_iq("c", "encrypt", "get", vec![Node::new("count")]),
        client_iq("d", "encrypt", "get", vec![Node::new("digest")]),
        client_iq("a", "passive", "set", vec![Node::new("active")]),
        client_iq("u", "w:g2", "get", vec![Node::new("participating")]),
        Node::new("receipt")
            .attr("id", "R1")
            .attr("to", Jid::pn_user(OTHER))
            .attr("type", "read"),
        Node::new("ack")
            .attr("class", "notification")
            .attr("id", "1001")
            .attr("type", "encrypt"),
        stanza::iq_result("ignored"),
    ]
}

/// Group stanzas of the logged-in state: `<active/>`, group info (member, unknown group), usync,
/// a group message with a wrong phash, one without phash (undecryptable: every
/// simulated member answers with a retry receipt), a retry receipt, a 1:1 message, and
/// a call-link request.
pub fn group_nodes() -> Vec<Node> {
    let group = Jid::group(GROUP);
    let other = Jid::pn_user(OTHER);
    let query = |id: &str, to: &Jid| {
        Node::new("iq")
            .attr("to", to)
            .attr("id", id)
            .attr("xmlns", "w:g2")
            .attr("type", "get")
            .child(Node::new("query").attr("request", "interactive"))
    };
    let enc = |kind: &str| {
        Node::new("enc")
            .attr("v", "2")
            .attr("type", kind)
            .with_bytes(vec![0x33, 8, 1, 16, 2])
    };
    let message = |id: &str, phash: Option<&str>| {
        let mut m = Node::new("message")
            .attr("id", id)
            .attr("to", &group)
            .attr("type", "event");
        if let Some(p) = phash {
            m = m.attr("phash", p);
        }
        m.with_children(vec![
            Node::new("participants").child(
                Node::new("to")
                    .attr("jid", other.with_device(0))
                    .child(enc("pkmsg")),
            ),
            enc("skmsg"),
            Node::new("meta").attr("event_type", "creation"),
        ])
    };
    vec![
        client_iq("a", "passive", "set", vec![Node::new("active")]),
        query("g1", &group),
        query("g2", &Jid::group("120363999")),
        client_iq(
            "u1",
            "usync",
            "get",
            vec![
                Node::new("usync")
                    .attr("sid", "s")
                    .attr("mode", "query")
                    .attr("context", "message")
                    .with_children(vec![
                        Node::new("query").with_children(vec![
                            Node::new("devices").attr("version", "2"),
                            Node::new("lid"),
                        ]),
                        Node::new("list").with_children(vec![
                            Node::new("user").attr("jid", Jid::pn_user(ACCOUNT)),
                            Node::new("user").attr("jid", other.clone()),
                        ]),
                    ]),
            ],
        ),
        message("3EB0F1", Some("2:AAAAAAAA")),
        message("3EB0F2", None),
        Node::new("receipt")
            .attr("id", "3EB0F0")
            .attr("to", &group)
            .attr("participant", other.with_device(0))
            .attr("type", "retry")
            .child(Node::new("retry").attr("count", "1").attr("id", "3EB0F0")),
        Node::new("message")
            .attr("id", "3EB0F3")
            .attr("to", other.clone())
            .attr("type", "text")
            .child(enc("msg")),
        Node::new("call")
            .attr("id", "c1")
            .attr("to", Jid::new("", crate::jid::CALL_SERVER))
            .child(Node::new("link_create").attr("media", "audio")),
    ]
}

/// Marshals nodes into frame payloads for [`input`].
pub fn frames(nodes: &[Node]) -> Vec<Vec<u8>> {
    nodes.iter().filter_map(|n| marshal(n).ok()).collect()
}
