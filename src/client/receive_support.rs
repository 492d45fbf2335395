//! Test and fuzz support for the receive pipeline: a fixed local device (keys derived
//! from fixed seeds), a group member that encrypts to it with the real Signal code
//! (pkmsg/msg carrying its sender key, then skmsg), and what the `message_stanza` fuzz
//! target runs.
//!
//! Nothing here is used by the client itself.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use prost::Message as _;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_core::{CryptoRng, RngCore};

use crate::binary::{Node, unmarshal};
use crate::jid::Jid;
use crate::proto::e2e;
use crate::signal::{
    LocalIdentity, PreKeyBundle, PreKeyRecord, SenderKeyRecord, SessionRecord, SignedPreKeyRecord,
    encrypt, generate_prekeys, group, initialize_from_bundle, padding,
};
use crate::store::{DeviceCredentials, MemoryStore, Store, StoreBatch};

use super::decrypt::decrypt_envelope;
use super::envelope::{Envelope, OwnIds};

/// Our PN device in the fixed local device.
pub const LOCAL_PN: &str = "5511900000001:3@s.whatsapp.net";
/// Our LID device in the fixed local device.
pub const LOCAL_LID: &str = "90000001:3@lid";
/// The signed prekey id of the fixed local device.
pub const LOCAL_SIGNED_PREKEY_ID: u32 = 1;
/// The one-time prekeys of the fixed local device are 1..=this.
pub const LOCAL_PREKEYS: u32 = 4;
/// The group the seed stanzas are sent in.
pub const SEED_GROUP: &str = "120363000000000042@g.us";

fn jid(s: &str) -> Jid {
    // The constants above are valid JIDs; fall back to an empty one rather than panic.
    Jid::parse(s).unwrap_or_else(|_| Jid::new("", "s.whatsapp.net"))
}

/// The fixed local device: credentials, signed prekey and one-time prekeys, all from
/// fixed seeds.
pub struct LocalDevice {
    /// The credentials (paired: PN and LID set).
    pub credentials: DeviceCredentials,
    /// The signed prekey.
    pub signed_prekey: SignedPreKeyRecord,
    /// The one-time prekeys.
    pub prekeys: Vec<PreKeyRecord>,
}

impl LocalDevice {
    /// The same device every time.
    pub fn fixed() -> Self {
        let rng = &mut StdRng::seed_from_u64(0x5eed_0001);
        let mut credentials = DeviceCredentials::generate(rng);
        credentials.pn = Some(jid(LOCAL_PN));
        credentials.lid = Some(jid(LOCAL_LID));
        credentials.account = Some(b"fixed device identity".to_vec());
        credentials.next_prekey_id = LOCAL_PREKEYS + 1;
        let signed_prekey = SignedPreKeyRecord::generate(
            &credentials.identity.key_pair,
            LOCAL_SIGNED_PREKEY_ID,
            0,
            rng,
        );
        let prekeys = generate_prekeys(1, LOCAL_PREKEYS, rng);
        LocalDevice {
            credentials,
            signed_prekey,
            prekeys,
        }
    }

    /// Our own account ids.
    pub fn own_ids(&self) -> OwnIds {
        OwnIds {
            pn: self.credentials.pn.clone(),
            lid: self.credentials.lid.clone(),
        }
    }

    /// The bundle a sender fetches for us, with one-time prekey `prekey_id` when it is
    /// one of ours.
    pub fn bundle(&self, prekey_id: Option<u32>) -> PreKeyBundle {
        let prekey = prekey_id.and_then(|id| self.prekeys.iter().find(|k| k.id == id));
        PreKeyBundle::from_local(&self.credentials.identity, 3, &self.signed_prekey, prekey)
    }

    /// The store batch that puts this device into a store.
    pub fn batch(&self) -> StoreBatch {
        StoreBatch {
            credentials: Some(self.credentials.clone()),
            prekeys: self.prekeys.iter().map(|k| (k.id, k.serialize())).collect(),
            uploaded_prekeys: self.prekeys.iter().map(|k| k.id).collect(),
            signed_prekeys: vec![(self.signed_prekey.id, self.signed_prekey.serialize())],
            ..StoreBatch::default()
        }
    }

    /// A memory store holding this device.
    pub async fn store(&self) -> MemoryStore {
        let store = MemoryStore::new();
        if let Err(e) = store.commit_batch(self.batch()).await {
            tracing::error!(error = %e, "fixed local device refused by the store");
        }
        store
    }
}

/// A group member's device that sends to the local device with the real Signal code.
pub struct Member {
    /// The member device (as the stanza names it: `participant` / `from`).
    pub device: Jid,
    /// Its phone-number alternate, when the stanza carries one.
    pub device_pn: Option<Jid>,
    /// Its identity.
    pub identity: LocalIdentity,
    /// Its session with the local device.
    pub session: SessionRecord,
    /// Its own sender key in the group.
    pub sender_key: SenderKeyRecord,
}

impl Member {
    /// A member device with a fresh identity.
    pub fn new<R: RngCore + CryptoRng>(device: Jid, device_pn: Option<Jid>, rng: &mut R) -> Self {
        Member {
            device,
            device_pn,
            identity: LocalIdentity::generate(rng),
            session: SessionRecord::new(),
            sender_key: SenderKeyRecord::new(),
        }
    }

    /// Starts a session from `bundle` (what the member does after a key fetch or a
    /// retry receipt with keys).
    pub fn start_session<R: RngCore + CryptoRng>(
        &mut self,
        bundle: &PreKeyBundle,
        rng: &mut R,
    ) -> Result<(), crate::signal::SignalError> {
        initialize_from_bundle(&mut self.session, &self.identity, bundle, rng)
    }

    /// Pairwise-encrypts `message` (padded): `("pkmsg" | "msg", bytes)`.
    pub fn encrypt_pairwise<R: RngCore + CryptoRng>(
        &mut self,
        message: &e2e::Message,
        rng: &mut R,
    ) -> Result<(&'static str, Vec<u8>), crate::signal::SignalError> {
        let padded = padding::pad(&message.encode_to_vec(), rng);
        let out = encrypt(&mut self.session, &padded)?;
        Ok((out.enc_type(), out.into_bytes()))
    }

    /// The `Message` carrying this member's sender key for `group`.
    pub fn skdm_message<R: RngCore + CryptoRng>(
        &mut self,
        group: &Jid,
        rng: &mut R,
    ) -> Result<e2e::Message, crate::signal::SignalError> {
        let (skdm, _) = group::create_distribution_message(&mut self.sender_key, rng)?;
        Ok(e2e::Message {
            sender_key_distribution_message: Some(e2e::SenderKeyDistributionMessage {
                group_id: Some(group.to_string()),
                axolotl_sender_key_distribution_message: Some(skdm.serialize()),
            }),
            ..e2e::Message::default()
        })
    }

    /// A group `<message>` as the server delivers it: a pairwise part carrying the
    /// sender key when `with_skdm`, then the `skmsg` with `content`.
    pub fn group_stanza<R: RngCore + CryptoRng>(
        &mut self,
        group: &Jid,
        id: &str,
        content: &e2e::Message,
        with_skdm: bool,
        rng: &mut R,
    ) -> Result<Node, crate::signal::SignalError> {
        let mut children = Vec::new();
        if with_skdm {
            let skdm = self.skdm_message(group, rng)?;
            let (kind, bytes) = self.encrypt_pairwise(&skdm, rng)?;
            children.push(
                Node::new("enc")
                    .attr("v", "2")
                    .attr("type", kind)
                    .with_bytes(bytes),
            );
        }
        let padded = padding::pad(&content.encode_to_vec(), rng);
        let sk = group::encrypt(&mut self.sender_key, &padded, rng)?;
        children.push(
            Node::new("enc")
                .attr("v", "2")
                .attr("type", "skmsg")
                .with_bytes(sk),
        );
        let mut node = Node::new("message")
            .attr("from", group.clone())
            .attr("participant", self.device.clone())
            .attr("id", id)
            .attr("t", "1700000000")
            .attr("type", "text")
            .attr("notify", "Member");
        if let Some(pn) = &self.device_pn {
            node = node.attr("participant_pn", pn.clone());
        }
        Ok(node.with_children(children))
    }

    /// A 1:1 `<message>` from this member with `content`, pairwise-encrypted.
    pub fn direct_stanza<R: RngCore + CryptoRng>(
        &mut self,
        id: &str,
        content: &e2e::Message,
        rng: &mut R,
    ) -> Result<Node, crate::signal::SignalError> {
        let (kind, bytes) = self.encrypt_pairwise(content, rng)?;
        Ok(Node::new("message")
            .attr("from", self.device.clone())
            .attr("id", id)
            .attr("t", "1700000000")
            .attr("type", "text")
            .child(
                Node::new("enc")
                    .attr("v", "2")
                    .attr("type", kind)
                    .with_bytes(bytes),
            ))
    }
}

/// A text message with a message secret (as event cards carry one).
pub fn text_with_secret(text: &str, secret: [u8; 32]) -> e2e::Message {
    e2e::Message {
        conversation: Some(text.to_owned()),
        message_context_info: Some(e2e::MessageContextInfo {
            message_secret: Some(secret.to_vec()),
            ..e2e::MessageContextInfo::default()
        }),
        ..e2e::Message::default()
    }
}

/// Runs a future that never waits on I/O (the memory store's futures are ready at
/// once) to completion on this thread; `None` if it keeps pending.
pub fn block_on<F: Future>(future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000_000 {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return Some(out);
        }
    }
    None
}

/// The `message_stanza` fuzz target: decodes `data` as a frame payload, parses it as a
/// `<message>` for the fixed local device and decrypts it against a fresh store holding
/// that device. Returns how many messages came out (for seed tests).
pub fn message_stanza(data: &[u8]) -> usize {
    let Ok(node) = unmarshal(data) else {
        return 0;
    };
    // Key generation costs more than a whole run: make the fixed device once.
    static LOCAL: std::sync::OnceLock<LocalDevice> = std::sync::OnceLock::new();
    let local = LOCAL.get_or_init(LocalDevice::fixed);
    let Ok(envelope) = Envelope::parse(&node, &local.own_ids()) else {
        return 0;
    };
    block_on(async {
        let store = local.store().await;
        let mut rng = StdRng::seed_from_u64(9);
        match decrypt_envelope(&store, &local.credentials.identity, &envelope, &mut rng, 0).await {
            Ok(d) => {
                // The batch must be storable as produced.
                let n = d.messages.len();
                match store.commit_batch(d.batch).await {
                    Ok(_) => n,
                    Err(_) => 0,
                }
            }
            Err(_) => 0,
        }
    })
    .unwrap_or(0)
}

/// Real stanzas for the fuzz corpus and the seed test: (name, frame payload).
pub fn seed_stanzas() -> Vec<(String, Vec<u8>)> {
    let rng = &mut StdRng::seed_from_u64(0x5eed_0002);
    let local = LocalDevice::fixed();
    let group = jid(SEED_GROUP);
    let mut out = Vec::new();
    let mut push = |name: &str, node: Result<Node, crate::signal::SignalError>| {
        if let Ok(node) = node
            && let Ok(bytes) = crate::binary::marshal(&node)
        {
            out.push((name.to_owned(), bytes));
        }
    };
    let mut member = Member::new(
        jid("70000001:2@lid"),
        Some(jid("5511700000001:2@s.whatsapp.net")),
        rng,
    );
    if member.start_session(&local.bundle(Some(1)), rng).is_ok() {
        push(
            "group_pkmsg_skdm_skmsg",
            member.group_stanza(
                &group,
                "3EB0SEED0001",
                &text_with_secret("hello group", [7; 32]),
                true,
                rng,
            ),
        );
        push(
            "group_skmsg_only",
            member.group_stanza(
                &group,
                "3EB0SEED0002",
                &text_with_secret("again", [8; 32]),
                false,
                rng,
            ),
        );
    }
    let mut direct = Member::new(jid("5511700000002:0@s.whatsapp.net"), None, rng);
    if direct.start_session(&local.bundle(None), rng).is_ok() {
        push(
            "direct_pkmsg_no_onetime",
            direct.direct_stanza("3EB0SEED0003", &text_with_secret("hi", [9; 32]), rng),
        );
    }
    let mut own = Member::new(jid("5511900000001:5@s.whatsapp.net"), None, rng);
    if own.start_session(&local.bundle(Some(2)), rng).is_ok() {
        let dsm = e2e::Message {
            device_sent_message: Some(Box::new(e2e::DeviceSentMessage {
                destination_jid: Some("5511700000002@s.whatsapp.net".into()),
                message: Some(Box::new(text_with_secret("sent from my phone", [10; 32]))),
                phash: None,
            })),
            ..e2e::Message::default()
        };
        push(
            "own_device_sent",
            own.direct_stanza("3EB0SEED0004", &dsm, rng)
                .map(|n| n.attr("recipient", jid("5511700000002@s.whatsapp.net"))),
        );
    }
    out
}
