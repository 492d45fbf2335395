//! Simulated group members talking to each other through the simulator's server, with
//! no client involved: cards fanned out to every member device and decrypted there,
//! RSVPs, a removal with sender-key rotation, retry receipts, a 1,024-member group, and
//! what members receive checked against independent implementations in both directions
//! (`tools/interop/sim_member.js`: npm `libsignal@6.0.0` for pairwise sessions, Baileys
//! 7's `lib/Signal/Group` for sender keys, Baileys 7's WAProto for the protobufs):
//!
//! * a `pkmsg` and an `skmsg` captured on their way to a simulated device are decrypted by
//!   node with that device's private keys, and carry the card the device recorded;
//! * a `pkmsg` (SKDM) and an `skmsg` (card) built by node for a simulated device are
//!   routed by the server and decrypted by the device.

#![cfg(feature = "sim")]

mod common;
mod sim_util;

use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use sim_util::{Keys, RawClient, iq};
use waevent::binary::Node;
use waevent::event::{EventCard, RsvpResponse};
use waevent::jid::Jid;
use waevent::signal::curve::{KeyPair, PrivateKey};
use waevent::signal::identity::{LocalIdentity, SignedPreKeyRecord};
use waevent::signal::message::PreKeySignalMessage;
use waevent::signal::padding::unpad;
use waevent::signal::{PreKeys, SenderKeyRecord, SessionRecord, decrypt_prekey, group};
use waevent::sim::routing::Origin;
use waevent::sim::stanza::attr_text;
use waevent::sim::{
    DeviceRegistration, GroupAddressing, GroupSpec, SignedPreKeyPublic, SimConfig, SimServer,
};

fn card(name: &str) -> EventCard {
    EventCard::builder()
        .name(name)
        .description("Bring snacks")
        .start_unix(1_900_000_000)
        .end_unix(1_900_003_600)
        .build()
        .unwrap()
}

async fn sim_with_group(
    members: usize,
    devices: std::ops::RangeInclusive<u16>,
    addressing: GroupAddressing,
) -> (SimServer, Jid, Vec<Jid>) {
    let sim = SimServer::start(SimConfig::default()).await.unwrap();
    let group = sim
        .create_group(GroupSpec {
            subject: "Team".into(),
            accounts: vec![],
            simulated_members: members,
            devices_per_member: devices,
            addressing,
        })
        .unwrap();
    let members = sim.group_members(&group).unwrap();
    (sim, group, members)
}

#[tokio::test]
async fn members_send_cards_and_rsvps_and_a_removed_member_reads_nothing_after() {
    let (sim, group, members) = sim_with_group(8, 1..=4, GroupAddressing::Lid).await;
    let devices = sim.group_devices(&group).unwrap();
    let c = card("Offsite");
    let id = sim.member_send_card(&group, &members[0], &c).await.unwrap();
    let views = sim.group_views(&group, &id).unwrap();
    assert_eq!(views.len(), devices.len() - 1, "every other device got it");
    for v in &views {
        assert_eq!(v.error, None, "{}", v.device);
        assert_eq!(v.card.as_ref(), Some(&c), "{}", v.device);
    }
    assert_eq!(
        sim.delivered_to(&members[0].with_device(0), &id).len(),
        devices.len() - 1
    );

    // Member 2 answers; every device (the creator's included) decrypts the RSVP.
    let rid = sim
        .member_rsvp(&group, &members[2], &id, RsvpResponse::Maybe, 1)
        .await
        .unwrap();
    let rsvp_views = sim.group_views(&group, &rid).unwrap();
    assert!(
        rsvp_views
            .iter()
            .any(|v| v.device.to_non_ad() == members[0])
    );
    for v in &rsvp_views {
        let (event, voter, rsvp) = v.rsvp.clone().unwrap_or_else(|| panic!("{v:?}"));
        assert_eq!((event.as_str(), &voter), (id.as_str(), &members[2]));
        assert_eq!((rsvp.response, rsvp.extra_guests), (RsvpResponse::Maybe, 1));
    }
    // The RSVP stanza is framed as phones render it.
    let stanza = sim
        .captured_stanzas(&members[1].with_device(0))
        .into_iter()
        .find(|n| attr_text(n, "id").as_deref() == Some(rid.as_str()))
        .unwrap();
    assert_eq!(stanza.attr_str("type"), Some("event"));
    assert_eq!(
        stanza.child_by_tag("meta").unwrap().attr_str("event_type"),
        Some("response")
    );
    assert!(
        stanza
            .children_by_tag("enc")
            .all(|e| e.attr_str("decrypt-fail") == Some("hide"))
    );

    // Remove member 7: it gets nothing of the next card; the others get a new key.
    sim.remove_member(&group, &members[7]).unwrap();
    let id2 = sim
        .member_send_card(&group, &members[0], &card("After"))
        .await
        .unwrap();
    let views = sim.group_views(&group, &id2).unwrap();
    assert!(views.iter().all(|v| v.device.to_non_ad() != members[7]));
    assert!(views.iter().all(|v| v.got_sender_key && v.error.is_none()));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_member_that_lost_its_session_recovers_through_a_retry_receipt() {
    let (sim, group, members) = sim_with_group(3, 2..=2, GroupAddressing::Pn).await;
    let sender = members[0].with_device(0);
    sim.member_send_card(&group, &members[0], &card("First"))
        .await
        .unwrap();
    let victim = members[2].with_device(1);
    assert!(sim.forget_sender(&victim, &sender));
    let c = card("Second");
    let id = sim.member_send_card(&group, &members[0], &c).await.unwrap();
    let view = sim.device_view(&victim, &group, &id).unwrap();
    assert!(
        view.retry_sent,
        "the skmsg failed and a retry receipt went out"
    );
    assert_eq!(view.error, None);
    assert_eq!(view.card, Some(c));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_1024_member_group_with_about_3000_devices_is_created_and_served_in_seconds() {
    let sim = SimServer::start(SimConfig::default()).await.unwrap();
    let started = Instant::now();
    let group = sim
        .create_group(GroupSpec {
            subject: "Big".into(),
            accounts: vec![],
            simulated_members: 1024,
            devices_per_member: 2..=4,
            addressing: GroupAddressing::Lid,
        })
        .unwrap();
    let created = started.elapsed();
    let devices = sim.group_devices(&group).unwrap();
    assert!(devices.len() > 2_500, "{}", devices.len());
    let members = sim.group_members(&group).unwrap();
    let started = Instant::now();
    let id = sim
        .member_send_card(&group, &members[0], &card("All hands"))
        .await
        .unwrap();
    let fanned = started.elapsed();
    let views = sim.group_views(&group, &id).unwrap();
    assert_eq!(views.len(), devices.len() - 1);
    assert!(views.iter().all(|v| v.error.is_none() && v.card.is_some()));
    eprintln!(
        "1024 members, {} devices: created in {created:?}; a member's card (X3DH to every \
         device, decrypted by every device) in {fanned:?}",
        devices.len()
    );
    assert!(created.as_secs() < 60, "creation took {created:?}");
    sim.shutdown().await;
}

fn keys_json(keys: &waevent::sim::world::SimulatedKeys) -> Value {
    json!({
        "identityPub": B64.encode(keys.identity.key_pair.public.as_bytes()),
        "identityPriv": B64.encode(*keys.identity.key_pair.private.to_bytes()),
        "registrationId": keys.identity.registration_id,
        "signed": {
            "id": keys.signed_prekey.id,
            "pub": B64.encode(keys.signed_prekey.key_pair.public.as_bytes()),
            "priv": B64.encode(*keys.signed_prekey.key_pair.private.to_bytes()),
        },
        "preKeys": keys.prekeys.values().map(|p| json!({
            "id": p.id,
            "pub": B64.encode(p.key_pair.public.as_bytes()),
            "priv": B64.encode(*p.key_pair.private.to_bytes()),
        })).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn captured_pkmsg_and_skmsg_decrypt_with_npm_libsignal_and_baileys_group_cipher() {
    let (sim, group, members) = sim_with_group(3, 2..=2, GroupAddressing::Lid).await;
    let target = members[1].with_device(1);
    // Take the device's keys before the message consumes its one-time prekey.
    let keys = sim
        .with_world(|w| w.simulated_device_keys(&target))
        .unwrap();
    let c = card("Checked by node");
    let id = sim.member_send_card(&group, &members[0], &c).await.unwrap();
    let stanza = sim
        .captured_stanzas(&target)
        .into_iter()
        .find(|n| attr_text(n, "id").as_deref() == Some(id.as_str()))
        .unwrap();
    let enc = |kind: &str| {
        stanza
            .children_by_tag("enc")
            .find(|e| e.attr_str("type") == Some(kind))
            .and_then(Node::bytes)
            .map(|b| B64.encode(b))
            .unwrap()
    };
    let request = json!({
        "op": "open",
        "keys": keys_json(&keys),
        "sender": { "name": members[0].user, "device": 0 },
        "group": group.to_string(),
        "pkmsg": enc("pkmsg"),
        "skmsg": enc("skmsg"),
    });
    let out = common::run_node("sim_member.js", request.to_string().as_bytes());
    let out: Value = serde_json::from_slice(&out).unwrap();
    let ev = &out["content"]["eventMessage"];
    assert_eq!(ev["name"], "Checked by node");
    assert_eq!(ev["description"], "Bring snacks");
    assert_eq!(ev["startTime"], "1900000000");
    assert_eq!(ev["endTime"], "1900003600");
    let secret = out["content"]["messageContextInfo"]["messageSecret"]
        .as_str()
        .unwrap();
    assert_eq!(B64.decode(secret).unwrap().len(), 32);
    // The simulated device read the same card.
    let view = sim.device_view(&target, &group, &id).unwrap();
    assert_eq!(view.card, Some(c));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_card_encrypted_by_npm_libsignal_is_decrypted_by_a_simulated_member() {
    let (sim, group, members) = sim_with_group(2, 1..=1, GroupAddressing::Lid).await;
    let target = members[1].with_device(0);
    let keys = sim
        .with_world(|w| w.simulated_device_keys(&target))
        .unwrap();
    let prekey = keys.prekeys.values().next().unwrap();
    let secret = [7u8; 32];
    let request = json!({
        "op": "send",
        "bundle": {
            "identity": B64.encode(keys.identity.key_pair.public.as_bytes()),
            "registrationId": keys.identity.registration_id,
            "signed": {
                "id": keys.signed_prekey.id,
                "pub": B64.encode(keys.signed_prekey.key_pair.public.as_bytes()),
                "sig": B64.encode(keys.signed_prekey.signature),
            },
            "preKey": { "id": prekey.id, "pub": B64.encode(prekey.key_pair.public.as_bytes()) },
        },
        "target": { "name": target.user, "device": 0 },
        "sender": { "name": "node", "device": 5 },
        "group": group.to_string(),
        "message": {
            "eventMessage": { "name": "From node", "startTime": "1900000000", "isCanceled": false },
            "messageContextInfo": { "messageSecret": B64.encode(secret) },
        },
        "bytesFields": ["messageSecret"],
    });
    let out = common::run_node("sim_member.js", request.to_string().as_bytes());
    let out: Value = serde_json::from_slice(&out).unwrap();
    let b = |k: &str| B64.decode(out[k].as_str().unwrap()).unwrap();
    // Register node's identity as a companion of member 0 and send from it.
    let private = PrivateKey::from_bytes(&b("identityPriv")).unwrap();
    let identity = LocalIdentity {
        key_pair: KeyPair {
            public: private.public_key(),
            private,
        },
        registration_id: out["registrationId"].as_u64().unwrap() as u32,
    };
    assert_eq!(
        identity.key_pair.public.as_bytes().to_vec(),
        b("identityPub")
    );
    let rng = &mut rand::rngs::OsRng;
    let signed = SignedPreKeyRecord::generate(&identity.key_pair, 1, 0, rng);
    let sender = sim
        .inject_device(
            &members[0],
            DeviceRegistration {
                noise_key: KeyPair::generate(rng).public,
                identity,
                signed_prekey: SignedPreKeyPublic {
                    id: 1,
                    key: signed.key_pair.public,
                    signature: signed.signature,
                },
                platform: "node".into(),
            },
        )
        .unwrap();
    let message = Node::new("message")
        .attr("id", "3EB0FROMNODE")
        .attr("to", &group)
        .attr("type", "event")
        .attr("participant", &target)
        .with_children(vec![
            Node::new("enc")
                .attr("v", "2")
                .attr("type", "pkmsg")
                .with_bytes(b("pkmsg")),
            Node::new("enc")
                .attr("v", "2")
                .attr("type", "skmsg")
                .with_bytes(b("skmsg")),
            Node::new("meta").attr("event_type", "creation"),
        ]);
    let outcome = sim
        .with_world(|w| {
            let account = w.account_key(&sender).unwrap();
            let origin = Origin {
                account,
                device: sender.device,
                conn: None,
            };
            let outcome = w.route_message(&origin, &message);
            w.settle();
            outcome
        })
        .unwrap();
    assert_eq!(outcome.error(), None);
    let view = sim.device_view(&target, &group, "3EB0FROMNODE").unwrap();
    assert_eq!(view.error, None);
    assert!(view.got_sender_key);
    let got = view.card.unwrap();
    assert_eq!(got.name(), "From node");
    assert_eq!(got.start_time(), 1_900_000_000);
    sim.shutdown().await;
}

/// A raw client (no waevent client code) over the simulator's real socket: group info,
/// usync, a group send acked before the simulated members' retry receipts arrive, and a
/// member's card delivered to it and decrypted with the crate's Signal primitives.
#[tokio::test]
async fn a_raw_client_in_a_group_over_the_socket() {
    use prost::Message as _;
    let sim = SimServer::start(SimConfig::default()).await.unwrap();
    let account = sim.create_account("15550004444");
    let keys = Keys::generate();
    let me = sim
        .inject_device(&account.pn(), keys.device_registration())
        .unwrap();
    let group = sim
        .create_group(GroupSpec {
            subject: "Socket".into(),
            accounts: vec![account.lid()],
            simulated_members: 40,
            devices_per_member: 1..=3,
            addressing: GroupAddressing::Lid,
        })
        .unwrap();
    let mut c = RawClient::connect(
        &sim.url(),
        sim.trust_root(),
        &keys.noise,
        &keys.login_payload(&me),
    )
    .await
    .unwrap();
    assert_eq!(c.recv().await.unwrap().tag, "success");
    let r = c.iq(iq("passive", "set", vec![Node::new("active")])).await;
    assert_eq!(r.attr_str("type"), Some("result"));

    // Group info over the socket.
    let info = c
        .iq(Node::new("iq")
            .attr("to", &group)
            .attr("xmlns", "w:g2")
            .attr("type", "get")
            .child(Node::new("query").attr("request", "interactive")))
        .await;
    let g = info.child_by_tag("group").expect("group node");
    assert_eq!(g.attr_str("addressing_mode"), Some("lid"));
    let participants: Vec<Jid> = g
        .children_by_tag("participant")
        .filter_map(|p| p.attr_jid("jid").cloned())
        .collect();
    assert_eq!(participants.len(), 41);
    assert_eq!(participants[0], account.lid());

    // usync for every participant; the device set and phash match the server's.
    let users = participants
        .iter()
        .map(|p| Node::new("user").attr("jid", p))
        .collect();
    let r = c
        .iq(iq(
            "usync",
            "get",
            vec![
                Node::new("usync")
                    .attr("sid", "1")
                    .attr("mode", "query")
                    .attr("last", "true")
                    .attr("index", "0")
                    .attr("context", "message")
                    .with_children(vec![
                        Node::new("query").child(Node::new("devices").attr("version", "2")),
                        Node::new("list").with_children(users),
                    ]),
            ],
        ))
        .await;
    let mut devices = Vec::new();
    for user in r
        .child_by_tag("usync")
        .and_then(|u| u.child_by_tag("list"))
        .unwrap()
        .children_by_tag("user")
    {
        let jid = user.attr_jid("jid").unwrap().clone();
        for d in user
            .child_by_tag("devices")
            .and_then(|d| d.child_by_tag("device-list"))
            .unwrap()
            .children_by_tag("device")
        {
            let id: u16 = d.attr_str("id").unwrap().parse().unwrap();
            devices.push(jid.with_device(id));
        }
    }
    let phash = waevent::sim::groups::participant_hash(&devices);
    assert_eq!(phash, sim.group_phash(&group).unwrap());

    // A group send with an skmsg nobody can read: the ack comes first, then a retry
    // receipt from every simulated device.
    let send = Node::new("message")
        .attr("id", "3EB0SOCKET")
        .attr("to", &group)
        .attr("type", "text")
        .attr("phash", phash.as_str())
        .child(
            Node::new("enc")
                .attr("v", "2")
                .attr("type", "skmsg")
                .with_bytes(vec![0x33, 8, 1]),
        );
    c.send(&send).await;
    let ack = c.recv_skip_ib().await.unwrap();
    assert_eq!(ack.tag, "ack");
    assert_eq!(ack.attr_str("class"), Some("message"));
    assert_eq!(ack.get_attr("error"), None);
    let mut retries = 0;
    while retries < devices.len() - 1 {
        let n = c.recv_skip_ib().await.expect("retry receipts");
        if n.tag == "receipt" && n.attr_str("type") == Some("retry") {
            assert!(n.child_by_tag("keys").is_some());
            retries += 1;
        }
    }

    // A member's card reaches the raw client as a pkmsg (SKDM) + skmsg it decrypts.
    let members = sim.group_members(&group).unwrap();
    let c2 = card("To the socket");
    let id = sim
        .member_send_card(&group, &members[5], &c2)
        .await
        .unwrap();
    let msg = loop {
        let n = c.recv_skip_ib().await.expect("the card");
        if n.tag == "message" {
            break n;
        }
    };
    assert_eq!(msg.attr_str("id"), Some(id.as_str()));
    assert_eq!(
        msg.attr_jid("participant"),
        Some(&members[5].with_device(0))
    );
    let enc = |kind: &str| {
        msg.children_by_tag("enc")
            .find(|e| e.attr_str("type") == Some(kind))
            .and_then(Node::bytes)
            .unwrap()
            .to_vec()
    };
    let pk = PreKeySignalMessage::deserialize(&enc("pkmsg")).unwrap();
    let mut session = SessionRecord::new();
    let opened = decrypt_prekey(
        &mut session,
        &keys.identity,
        &pk,
        PreKeys {
            signed: Some(&keys.signed_prekey),
            one_time: None,
        },
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    let skdm_msg = waevent::proto::e2e::Message::decode(unpad(&opened.plaintext).unwrap()).unwrap();
    let skdm = skdm_msg.sender_key_distribution_message.unwrap();
    assert_eq!(skdm.group_id.as_deref(), Some(group.to_string().as_str()));
    let dist = waevent::signal::SenderKeyDistributionMessage::deserialize(
        skdm.axolotl_sender_key_distribution_message
            .as_deref()
            .unwrap(),
    )
    .unwrap();
    let mut record = SenderKeyRecord::new();
    group::process_distribution_message(&mut record, &dist);
    let plain = group::decrypt(&mut record, &enc("skmsg")).unwrap();
    let content = waevent::proto::e2e::Message::decode(unpad(&plain).unwrap()).unwrap();
    assert_eq!(EventCard::from_message(&content).unwrap(), c2);
    sim.shutdown().await;
}
