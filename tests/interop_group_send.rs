//! Independent check of a prepared group send: member devices played by npm
//! `libsignal@6.0.0` (pairwise) and Baileys 7's pure-JS sender-key cipher read the
//! stanza exactly as WhatsApp clients do (`tools/interop/group_member.js`):
//!
//! * Baileys' WABinary decodes the whole encoded stanza to the same node;
//! * libsignal decrypts each device's `pkmsg` from `<participants>` with that device's
//!   keys (which this test generated and holds), the unpadded plaintext decodes with
//!   WhatsApp's schema (WAProto) to a `senderKeyDistributionMessage` for the group;
//! * Baileys' GroupSessionBuilder processes that SKDM and its GroupCipher decrypts the
//!   `skmsg`; the unpadded plaintext is byte-for-byte the `Message` we sent.
//!
//! A corrupted pkmsg or skmsg byte makes the corresponding step fail.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost::Message as _;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use waevent::binary::json::node_to_json;
use waevent::binary::{Node, NodeContent, marshal};
use waevent::jid::Jid;
use waevent::messaging::{
    GroupFanout, GroupSend, PairwiseTarget, PreparedSend, generate_message_id, prepare_group_send,
};
use waevent::proto::e2e;
use waevent::signal::{
    LocalIdentity, PreKeyBundle, PreKeyRecord, ProtocolAddress, SenderKeyRecord, SessionRecord,
    SignedPreKeyRecord, generate_prekeys,
};
use waevent::store::AddressingMode;

const GROUP: &str = "120363040000000077@g.us";
const SENDER: &str = "100000000000009:3@lid";

struct Device {
    jid: Jid,
    identity: LocalIdentity,
    signed: SignedPreKeyRecord,
    prekey: PreKeyRecord,
}

impl Device {
    fn new(jid: &str, rng: &mut StdRng) -> Device {
        let identity = LocalIdentity::generate(rng);
        let signed = SignedPreKeyRecord::generate(&identity.key_pair, 5, 0, rng);
        let prekey = generate_prekeys(40, 1, rng).remove(0);
        Device {
            jid: jid.parse().unwrap(),
            identity,
            signed,
            prekey,
        }
    }

    fn target(&self) -> PairwiseTarget {
        PairwiseTarget {
            device: self.jid.clone(),
            session: SessionRecord::new(),
            bundle: Some(PreKeyBundle::from_local(
                &self.identity,
                u32::from(self.jid.device),
                &self.signed,
                Some(&self.prekey),
            )),
        }
    }

    /// The device's keys for the JS side (libsignal's 33-byte public keys).
    fn keys(&self) -> Value {
        let pair = |k: &waevent::signal::KeyPair| {
            json!({
                "pub": STANDARD.encode(k.public.serialize()),
                "priv": STANDARD.encode(k.private.to_bytes()),
            })
        };
        let mut signed = pair(&self.signed.key_pair);
        signed["id"] = json!(self.signed.id);
        let mut prekey = pair(&self.prekey.key_pair);
        prekey["id"] = json!(self.prekey.id);
        json!({
            "jid": self.jid.to_string(),
            "identity": pair(&self.identity.key_pair),
            "registrationId": self.identity.registration_id,
            "signed": signed,
            "preKey": prekey,
        })
    }
}

fn card() -> e2e::Message {
    e2e::Message {
        event_message: Some(Box::new(e2e::EventMessage {
            name: Some("Team dinner".into()),
            description: Some("Bring friends".into()),
            location: Some(e2e::LocationMessage {
                name: Some("Trattoria".into()),
                degrees_latitude: Some(-23.5),
                degrees_longitude: Some(-46.6),
                ..Default::default()
            }),
            start_time: Some(1_900_000_000),
            extra_guests_allowed: Some(true),
            ..Default::default()
        })),
        message_context_info: Some(e2e::MessageContextInfo {
            message_secret: Some(vec![0x42; 32]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct Sent {
    devices: Vec<Device>,
    message: e2e::Message,
    prepared: PreparedSend,
}

/// A cold send to three member devices and our own phone.
fn send() -> Sent {
    let rng = &mut StdRng::seed_from_u64(7);
    let devices: Vec<Device> = [
        "100000000000001@lid",
        "100000000000001:12@lid",
        "100000000000002@lid",
        "100000000000009@lid",
    ]
    .iter()
    .map(|j| Device::new(j, rng))
    .collect();
    let mut fanout = GroupFanout::new(
        GROUP.parse().unwrap(),
        AddressingMode::Lid,
        SENDER.parse().unwrap(),
        devices.iter().map(|d| d.jid.clone()),
    )
    .unwrap();
    let mut sender_key = SenderKeyRecord::new();
    fanout.ensure_sender_key(&mut sender_key, rng);
    let our = LocalIdentity::generate(rng);
    let message = card();
    let own_pn: Jid = "5511999990000:3@s.whatsapp.net".parse().unwrap();
    let id = generate_message_id(1_800_000_000, Some(&own_pn), rng);
    let prepared = prepare_group_send(
        &fanout,
        &our,
        &mut sender_key,
        GroupSend {
            message_id: &id,
            message: &message,
            device_identity: b"\x0a\x10adv-device-identity",
            targets: devices.iter().map(Device::target).collect(),
        },
        rng,
    )
    .unwrap();
    Sent {
        devices,
        message,
        prepared,
    }
}

fn run_members(node: &Node, devices: &[Device]) -> Value {
    let sender = ProtocolAddress::from_jid(&SENDER.parse().unwrap());
    let request = json!({
        "stanza": hex::encode(marshal(node).unwrap()),
        "group": GROUP,
        "sender": format!("{}.{}", sender.name, sender.device_id),
        "devices": devices.iter().map(Device::keys).collect::<Vec<_>>(),
    });
    let out = common::run_node("group_member.js", request.to_string().as_bytes());
    serde_json::from_slice(&out).expect("group_member.js prints JSON")
}

fn plaintext(v: &Value) -> Vec<u8> {
    STANDARD
        .decode(
            v["plaintext"]
                .as_str()
                .unwrap_or_else(|| panic!("no plaintext in {v}")),
        )
        .unwrap()
}

#[test]
fn libsignal_and_baileys_members_read_the_group_send() {
    let sent = send();
    let node = &sent.prepared.node;
    let out = run_members(node, &sent.devices);

    // Baileys' WABinary decodes our bytes to the node we built.
    assert_eq!(out["node"], node_to_json(node));

    let expected = sent.message.encode_to_vec();
    let results = out["devices"].as_array().unwrap();
    assert_eq!(results.len(), sent.devices.len());
    for (device, result) in sent.devices.iter().zip(results) {
        let pairwise = &result["pairwise"];
        assert_eq!(pairwise["type"], "pkmsg", "{}: {pairwise}", device.jid);
        let skdm = &pairwise["message"]["senderKeyDistributionMessage"];
        assert_eq!(skdm["groupId"], GROUP, "{}: {pairwise}", device.jid);
        assert!(skdm["axolotlSenderKeyDistributionMessage"].is_string());
        let skmsg = &result["skmsg"];
        assert_eq!(plaintext(skmsg), expected, "{}: {skmsg}", device.jid);
        let card = &skmsg["message"]["eventMessage"];
        assert_eq!(card["name"], "Team dinner");
        assert_eq!(card["startTime"], "1900000000");
        assert_eq!(
            skmsg["message"]["messageContextInfo"]["messageSecret"],
            STANDARD.encode([0x42; 32])
        );
    }
}

/// The bytes of `<enc>` children, mutably: the skmsg and each participant's.
fn enc_bytes<'a>(node: &'a mut Node, pick: &dyn Fn(&Node) -> bool) -> &'a mut Vec<u8> {
    fn walk<'a>(node: &'a mut Node, pick: &dyn Fn(&Node) -> bool) -> Option<&'a mut Vec<u8>> {
        let picked = node.tag == "enc" && pick(node);
        match &mut node.content {
            NodeContent::Bytes(b) if picked => Some(b),
            NodeContent::Nodes(children) => children.iter_mut().find_map(|c| walk(c, pick)),
            _ => None,
        }
    }
    walk(node, pick).expect("enc node")
}

#[test]
fn corrupted_bytes_make_the_independent_members_fail() {
    let sent = send();
    let expected = sent.message.encode_to_vec();

    // One flipped byte inside the first device's pkmsg (its SignalMessage ciphertext):
    // libsignal refuses it (bad MAC), so that device gets no sender key and cannot
    // read the skmsg either; the others are unaffected.
    let mut node = sent.prepared.node.clone();
    let first = enc_bytes(&mut node, &|n| n.attr_str("type") == Some("pkmsg"));
    let at = first.len() - 20;
    first[at] ^= 0x01;
    let out = run_members(&node, &sent.devices);
    let results = out["devices"].as_array().unwrap();
    assert!(
        results[0]["pairwise"]["error"].is_string(),
        "{}",
        results[0]
    );
    assert!(results[0]["skmsg"]["error"].is_string(), "{}", results[0]);
    for r in &results[1..] {
        assert_eq!(plaintext(&r["skmsg"]), expected);
    }

    // One flipped byte inside the skmsg ciphertext: the signature check fails for all.
    let mut node = sent.prepared.node.clone();
    let skmsg = enc_bytes(&mut node, &|n| n.attr_str("type") == Some("skmsg"));
    let at = skmsg.len() - 64 - 3;
    skmsg[at] ^= 0x80;
    let out = run_members(&node, &sent.devices);
    for r in out["devices"].as_array().unwrap() {
        assert_eq!(r["pairwise"]["type"], "pkmsg");
        assert!(r["skmsg"]["error"].is_string(), "{r}");
    }
}
