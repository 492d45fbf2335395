//! Tests of the fan-out: every stanza is decrypted by simulated member devices with
//! the crate's own receiving Signal code (the npm libsignal check lives in
//! `tests/interop_group_send.rs`).

use super::*;
use crate::binary::{NodeContent, decode_node, encode_node};
use crate::messaging::phash::participant_hash;
use crate::signal::cipher::{PreKeys, decrypt_prekey, decrypt_whisper};
use crate::signal::identity::{PreKeyRecord, SignedPreKeyRecord, generate_prekeys};
use crate::signal::message::PreKeySignalMessage;
use proptest::prelude::*;
use rand::SeedableRng;

const GROUP: &str = "120363040000000001@g.us";

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn jid(s: &str) -> Jid {
    s.parse().unwrap()
}

/// A simulated member device: its keys and its receiving state.
struct Member {
    device: Jid,
    identity: LocalIdentity,
    signed: SignedPreKeyRecord,
    prekey: PreKeyRecord,
    session: SessionRecord,
    sender_key: SenderKeyRecord,
}

impl Member {
    fn new(device: &str, seed: u64) -> Member {
        let r = &mut rng(seed);
        let identity = LocalIdentity::generate(r);
        let signed = SignedPreKeyRecord::generate(&identity.key_pair, 1, 0, r);
        let prekey = generate_prekeys(7, 1, r).remove(0);
        Member {
            device: jid(device),
            identity,
            signed,
            prekey,
            session: SessionRecord::new(),
            sender_key: SenderKeyRecord::new(),
        }
    }

    fn bundle(&self) -> PreKeyBundle {
        PreKeyBundle::from_local(
            &self.identity,
            u32::from(self.device.device),
            &self.signed,
            Some(&self.prekey),
        )
    }

    fn cold_target(&self) -> PairwiseTarget {
        PairwiseTarget {
            device: self.device.clone(),
            session: SessionRecord::new(),
            bundle: Some(self.bundle()),
        }
    }

    /// Decrypts a pairwise `<enc>` and returns the unpadded `Message`.
    fn decrypt_pairwise(&mut self, enc: &Node) -> e2e::Message {
        let bytes = enc.bytes().unwrap();
        let plaintext = match enc.attr_str("type").unwrap() {
            "pkmsg" => {
                let message = PreKeySignalMessage::deserialize(bytes).unwrap();
                decrypt_prekey(
                    &mut self.session,
                    &self.identity,
                    &message,
                    PreKeys {
                        signed: Some(&self.signed),
                        one_time: Some(&self.prekey),
                    },
                    &mut rng(1),
                )
                .unwrap()
                .plaintext
            }
            "msg" => decrypt_whisper(&mut self.session, bytes, &mut rng(1)).unwrap(),
            other => panic!("unexpected enc type {other}"),
        };
        e2e::Message::decode(padding::unpad(&plaintext).unwrap()).unwrap()
    }

    /// What this device reads from a group stanza: processes its SKDM (if any) and
    /// decrypts the skmsg.
    fn receive_group(&mut self, node: &Node) -> e2e::Message {
        if let Some(enc) = to_enc(node, &self.device) {
            let skdm = self.decrypt_pairwise(enc);
            let inner = skdm.sender_key_distribution_message.unwrap();
            assert_eq!(inner.group_id.as_deref(), Some(GROUP));
            let skdm = SenderKeyDistributionMessage::deserialize(
                &inner.axolotl_sender_key_distribution_message.unwrap(),
            )
            .unwrap();
            group::process_distribution_message(&mut self.sender_key, &skdm);
        }
        let skmsg = node
            .children()
            .iter()
            .find(|c| c.tag == "enc")
            .expect("skmsg enc");
        assert_eq!(skmsg.attr_str("type"), Some("skmsg"));
        let plaintext = group::decrypt(&mut self.sender_key, skmsg.bytes().unwrap()).unwrap();
        e2e::Message::decode(padding::unpad(&plaintext).unwrap()).unwrap()
    }
}

/// The `<enc>` inside `<participants><to jid=device>`.
fn to_enc<'a>(node: &'a Node, device: &Jid) -> Option<&'a Node> {
    node.child_by_tag("participants")?
        .children()
        .iter()
        .find(|to| to.attr_jid("jid") == Some(device))
        .and_then(|to| to.child_by_tag("enc"))
}

fn card() -> e2e::Message {
    e2e::Message {
        event_message: Some(Box::new(e2e::EventMessage {
            name: Some("Team dinner".into()),
            description: Some("Bring friends".into()),
            start_time: Some(1_900_000_000),
            extra_guests_allowed: Some(true),
            ..Default::default()
        })),
        message_context_info: Some(e2e::MessageContextInfo {
            message_secret: Some(vec![9; 32]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn rsvp() -> e2e::Message {
    e2e::Message {
        enc_event_response_message: Some(e2e::EncEventResponseMessage {
            event_creation_message_key: Some(e2e::MessageKey {
                remote_jid: Some(GROUP.into()),
                from_me: Some(false),
                id: Some("3EB0AAAAAAAAAAAAAAAAAA".into()),
                participant: Some("100000000000001@lid".into()),
            }),
            enc_payload: Some(vec![1; 30]),
            enc_iv: Some(vec![2; 12]),
        }),
        ..Default::default()
    }
}

const SENDER: &str = "100000000000009:3@lid";

struct Setup {
    our: LocalIdentity,
    fanout: GroupFanout,
    sender_key: SenderKeyRecord,
    members: Vec<Member>,
}

/// A LID group with two members (two devices and one device) and our own phone.
fn setup() -> Setup {
    let members = vec![
        Member::new("100000000000001@lid", 11),
        Member::new("100000000000001:5@lid", 12),
        Member::new("100000000000002@lid", 13),
        // Our own phone (device 0 of our own LID user).
        Member::new("100000000000009@lid", 14),
    ];
    let mut devices: Vec<Jid> = members.iter().map(|m| m.device.clone()).collect();
    // Hosted devices and the sending device itself are dropped.
    devices.push(jid("100000000000002:99@lid"));
    devices.push(jid("100000000000003@hosted.lid"));
    devices.push(jid(SENDER));
    devices.push(jid("100000000000001:5@lid")); // duplicate
    let mut fanout = GroupFanout::new(jid(GROUP), AddressingMode::Lid, jid(SENDER), devices)
        .expect("valid fan-out");
    let mut sender_key = SenderKeyRecord::new();
    assert!(fanout.ensure_sender_key(&mut sender_key, &mut rng(2)));
    Setup {
        our: LocalIdentity::generate(&mut rng(3)),
        fanout,
        sender_key,
        members,
    }
}

fn send<'a>(message: &'a e2e::Message, targets: Vec<PairwiseTarget>) -> GroupSend<'a> {
    GroupSend {
        message_id: "3EB0112233445566778899",
        message,
        device_identity: b"adv-device-identity",
        targets,
    }
}

#[test]
fn new_filters_sorts_and_hashes() {
    let s = setup();
    let devices: Vec<String> = s.fanout.devices().iter().map(|d| d.to_string()).collect();
    assert_eq!(
        devices,
        [
            "100000000000001@lid",
            "100000000000001:5@lid",
            "100000000000002@lid",
            "100000000000009@lid"
        ]
    );
    let mut with_sender = s.fanout.devices().to_vec();
    with_sender.push(jid(SENDER));
    assert_eq!(s.fanout.phash(), participant_hash(with_sender.iter()));
    assert_eq!(s.fanout.lacking_count(), 4);
    assert!(!s.fanout.everyone_has_sender_key());
    assert_eq!(s.fanout.lacking_sender_key(), s.fanout.devices());
}

#[test]
fn new_refuses_bad_input() {
    let lid = AddressingMode::Lid;
    assert!(matches!(
        GroupFanout::new(jid("1@s.whatsapp.net"), lid, jid(SENDER), []),
        Err(FanoutError::NotAGroup(_))
    ));
    assert!(matches!(
        GroupFanout::new(
            jid(GROUP),
            lid,
            jid(SENDER),
            [jid("5511999999999@s.whatsapp.net")]
        ),
        Err(FanoutError::WrongAddressing { mode: "lid", .. })
    ));
    assert!(matches!(
        GroupFanout::new(jid(GROUP), AddressingMode::Pn, jid(SENDER), []),
        Err(FanoutError::WrongAddressing { mode: "pn", .. })
    ));
    let too_many =
        (0..=MAX_FANOUT_DEVICES as u64).map(|i| Jid::new_ad(format!("{}", 1000 + i), 1, "lid"));
    assert!(matches!(
        GroupFanout::new(jid(GROUP), lid, jid(SENDER), too_many),
        Err(FanoutError::TooManyDevices { .. })
    ));
}

#[test]
fn cold_send_reaches_every_device_and_warm_send_carries_no_skdm() {
    let mut s = setup();
    let message = card();
    let targets = s.members.iter().map(Member::cold_target).collect();
    let before = s.sender_key.clone();
    let prepared = prepare_group_send(
        &s.fanout,
        &s.our,
        &mut s.sender_key,
        send(&message, targets),
        &mut rng(4),
    )
    .unwrap();
    let node = &prepared.node;
    // The stanza: attributes in whatsapp-rust's order, children as §10.4.
    let attrs: Vec<(&str, String)> = node
        .attrs
        .iter()
        .map(|(k, v)| (k, v.to_text().into_owned()))
        .collect();
    assert_eq!(
        attrs,
        [
            ("to", GROUP.to_string()),
            ("id", "3EB0112233445566778899".to_string()),
            ("type", "event".to_string()),
            ("addressing_mode", "lid".to_string()),
            ("phash", s.fanout.phash().to_string()),
        ]
    );
    let tags: Vec<&str> = node.children().iter().map(|c| c.tag.as_ref()).collect();
    assert_eq!(tags, ["participants", "device-identity", "enc", "meta"]);
    assert_eq!(
        node.child_by_tag("device-identity").unwrap().bytes(),
        Some(&b"adv-device-identity"[..])
    );
    assert_eq!(
        node.child_by_tag("meta").unwrap().attr_str("event_type"),
        Some("creation")
    );
    let participants = node.child_by_tag("participants").unwrap();
    assert_eq!(participants.children().len(), 4);
    for to in participants.children() {
        let enc = to.child_by_tag("enc").unwrap();
        assert_eq!(enc.attr_str("v"), Some("2"));
        assert_eq!(enc.attr_str("type"), Some("pkmsg"));
        assert_eq!(enc.attr_str("decrypt-fail"), None);
    }
    assert_eq!(
        prepared.counts,
        FanoutCounts {
            devices: 4,
            pkmsg: 4,
            msg: 0,
            new_sessions: 4,
            unreachable: 0
        }
    );
    assert_eq!(prepared.skdm_devices, s.fanout.devices());
    assert_eq!(prepared.phash.as_deref(), Some(s.fanout.phash()));
    // The batch: four sessions, four identities, our sender key advanced by one.
    let batch = &prepared.signal_state;
    assert_eq!(batch.sessions.len(), 4);
    assert_eq!(batch.identities.len(), 4);
    assert_eq!(batch.sender_keys.len(), 1);
    assert_eq!(
        batch.sender_keys[0].0,
        SenderKeyName::new(&jid(GROUP), &jid(SENDER))
    );
    assert_eq!(
        SenderKeyRecord::deserialize(&batch.sender_keys[0].1)
            .unwrap()
            .current_state()
            .unwrap()
            .iteration(),
        1
    );
    assert_eq!(
        s.sender_key.current_state().unwrap().iteration(),
        before.current_state().unwrap().iteration() + 1
    );
    // The stanza survives the wire codec.
    assert_eq!(&decode_node(&encode_node(node).unwrap()).unwrap(), node);
    for m in &mut s.members {
        assert_eq!(m.receive_group(node), message, "{}", m.device);
    }

    // After the ack everyone has the key: the next send is skmsg only.
    s.fanout.mark_has_sender_key(&prepared.skdm_devices);
    assert!(s.fanout.everyone_has_sender_key());
    let second = rsvp();
    let prepared = prepare_group_send(
        &s.fanout,
        &s.our,
        &mut s.sender_key,
        send(&second, Vec::new()),
        &mut rng(5),
    )
    .unwrap();
    let tags: Vec<&str> = prepared
        .node
        .children()
        .iter()
        .map(|c| c.tag.as_ref())
        .collect();
    assert_eq!(tags, ["enc", "meta"]);
    let enc = prepared.node.child_by_tag("enc").unwrap();
    assert_eq!(enc.attr_str("decrypt-fail"), Some("hide"));
    assert_eq!(prepared.node.attr_str("type"), Some("event"));
    assert!(prepared.signal_state.sessions.is_empty());
    assert_eq!(prepared.signal_state.sender_keys.len(), 1);
    assert!(prepared.skdm_devices.is_empty());
    assert_eq!(prepared.counts.devices, 4);
    for m in &mut s.members {
        assert_eq!(m.receive_group(&prepared.node), second);
    }
}

#[test]
fn answered_sessions_get_msg_and_no_device_identity() {
    let mut s = setup();
    let message = card();
    let targets = s.members.iter().map(Member::cold_target).collect();
    let prepared = prepare_group_send(
        &s.fanout,
        &s.our,
        &mut s.sender_key,
        send(&message, targets),
        &mut rng(4),
    )
    .unwrap();
    let mut our_sessions: Vec<SessionRecord> = prepared
        .signal_state
        .sessions
        .iter()
        .map(|(_, bytes)| SessionRecord::deserialize(bytes).unwrap())
        .collect();
    for (m, ours) in s.members.iter_mut().zip(&mut our_sessions) {
        m.receive_group(&prepared.node);
        // The member answers, which acknowledges the session on our side.
        let reply = cipher::encrypt(&mut m.session, b"ack").unwrap();
        assert_eq!(reply.enc_type(), "msg");
        decrypt_whisper(ours, reply.bytes(), &mut rng(6)).unwrap();
    }
    // Our sender key rotates: everyone lacks the new one and gets it over `msg`.
    group::create_sender_key(&mut s.sender_key, &mut rng(7));
    assert!(!s.fanout.ensure_sender_key(&mut s.sender_key, &mut rng(8)));
    assert_eq!(s.fanout.lacking_count(), 4);
    let targets = s
        .members
        .iter()
        .zip(our_sessions)
        .map(|(m, session)| PairwiseTarget {
            device: m.device.clone(),
            session,
            bundle: None,
        })
        .collect();
    let prepared = prepare_group_send(
        &s.fanout,
        &s.our,
        &mut s.sender_key,
        send(&message, targets),
        &mut rng(9),
    )
    .unwrap();
    assert_eq!(prepared.counts.msg, 4);
    assert_eq!(prepared.counts.pkmsg, 0);
    assert_eq!(prepared.counts.new_sessions, 0);
    assert!(prepared.signal_state.identities.is_empty());
    assert!(prepared.node.child_by_tag("device-identity").is_none());
    for m in &mut s.members {
        assert_eq!(m.receive_group(&prepared.node), message);
    }
}

#[test]
fn only_devices_lacking_the_key_get_an_skdm() {
    let mut s = setup();
    let message = card();
    s.fanout
        .mark_has_sender_key(&[s.members[0].device.clone(), s.members[2].device.clone()]);
    assert_eq!(s.fanout.lacking_count(), 2);
    let targets = vec![s.members[3].cold_target(), s.members[1].cold_target()];
    let prepared = prepare_group_send(
        &s.fanout,
        &s.our,
        &mut s.sender_key,
        send(&message, targets),
        &mut rng(4),
    )
    .unwrap();
    // In fan-out order whatever the input order.
    assert_eq!(
        prepared.skdm_devices,
        [s.members[1].device.clone(), s.members[3].device.clone()]
    );
    let to: Vec<&Jid> = prepared
        .node
        .child_by_tag("participants")
        .unwrap()
        .children()
        .iter()
        .map(|t| t.attr_jid("jid").unwrap())
        .collect();
    assert_eq!(to, [&s.members[1].device, &s.members[3].device]);
}

#[test]
fn unreachable_devices_are_skipped_and_stay_lacking() {
    let mut s = setup();
    let message = card();
    let mut targets: Vec<PairwiseTarget> = s.members.iter().map(Member::cold_target).collect();
    targets[2].bundle = None;
    let prepared = prepare_group_send(
        &s.fanout,
        &s.our,
        &mut s.sender_key,
        send(&message, targets),
        &mut rng(4),
    )
    .unwrap();
    assert_eq!(prepared.unreachable, [s.members[2].device.clone()]);
    assert_eq!(prepared.counts.unreachable, 1);
    assert_eq!(prepared.skdm_devices.len(), 3);
    assert!(to_enc(&prepared.node, &s.members[2].device).is_none());
    s.fanout.mark_has_sender_key(&prepared.skdm_devices);
    assert_eq!(s.fanout.lacking_sender_key(), [s.members[2].device.clone()]);

    // Nobody reachable: the stanza has no participants and no device identity.
    let targets = vec![PairwiseTarget {
        device: s.members[2].device.clone(),
        session: SessionRecord::new(),
        bundle: None,
    }];
    let prepared = prepare_group_send(
        &s.fanout,
        &s.our,
        &mut s.sender_key,
        send(&message, targets),
        &mut rng(5),
    )
    .unwrap();
    let tags: Vec<&str> = prepared
        .node
        .children()
        .iter()
        .map(|c| c.tag.as_ref())
        .collect();
    assert_eq!(tags, ["enc", "meta"]);
}

#[test]
fn bad_targets_are_refused_and_nothing_changes() {
    let mut s = setup();
    let message = card();
    let before = s.sender_key.serialize();
    let mut attempt = |targets: Vec<PairwiseTarget>| {
        prepare_group_send(
            &s.fanout,
            &s.our,
            &mut s.sender_key,
            send(&message, targets),
            &mut rng(4),
        )
        .unwrap_err()
    };
    let all = || -> Vec<PairwiseTarget> { s.members.iter().map(Member::cold_target).collect() };
    // Missing one.
    let mut t = all();
    t.pop();
    assert!(matches!(attempt(t), FanoutError::MissingTarget(d) if d == s.members[3].device));
    // A duplicate.
    let mut t = all();
    t[3] = s.members[0].cold_target();
    assert!(matches!(attempt(t), FanoutError::DuplicateTarget(_)));
    // A stranger, and one device too many.
    let mut t = all();
    t.push(Member::new("100000000000077@lid", 99).cold_target());
    assert!(matches!(attempt(t), FanoutError::UnexpectedTarget(_)));
    let mut t = all();
    t[0] = Member::new("100000000000077@lid", 99).cold_target();
    assert!(matches!(attempt(t), FanoutError::UnexpectedTarget(_)));
    // A bundle with a bad signed-prekey signature.
    let mut t = all();
    if let Some(b) = t[1].bundle.as_mut() {
        b.signed_prekey_signature[5] ^= 1;
    }
    assert!(matches!(
        attempt(t),
        FanoutError::Pairwise {
            source: SignalError::InvalidSignedPreKeySignature { .. },
            ..
        }
    ));
    // A known session record that holds no current session with a bundle-less target is
    // "unreachable", but a broken one (no sending chain) is not possible to build here;
    // the record stays untouched after all the refusals above.
    assert_eq!(s.sender_key.serialize(), before);

    // A record the state is not synced with.
    let mut other = SenderKeyRecord::new();
    group::create_sender_key(&mut other, &mut rng(50));
    let err = prepare_group_send(
        &s.fanout,
        &s.our,
        &mut other,
        send(&message, all()),
        &mut rng(4),
    )
    .unwrap_err();
    assert!(matches!(err, FanoutError::SenderKeyNotSynced { .. }));
    let mut empty = SenderKeyRecord::new();
    let err = prepare_group_send(
        &s.fanout,
        &s.our,
        &mut empty,
        send(&message, all()),
        &mut rng(4),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        FanoutError::SenderKeyNotSynced { found: None, .. }
    ));
}

#[test]
fn marks_follow_membership_and_key_changes() {
    let mut s = setup();
    let devices = s.fanout.devices().to_vec();
    s.fanout.mark_has_sender_key(&devices);
    assert!(s.fanout.everyone_has_sender_key());
    // Unknown devices are ignored.
    s.fanout.mark_has_sender_key(&[jid("1@lid")]);
    s.fanout.forget_sender_key(&jid("1@lid"));
    assert!(s.fanout.everyone_has_sender_key());

    // A companion's retry receipt forgets only that companion.
    s.fanout.forget_sender_key(&devices[1]);
    assert_eq!(s.fanout.lacking_sender_key(), [devices[1].clone()]);
    s.fanout.mark_has_sender_key(&devices[1..2]);
    // Forgetting a primary forgets every device of that user.
    s.fanout.forget_sender_key(&devices[0]);
    assert_eq!(s.fanout.lacking_sender_key(), devices[..2].to_vec());
    s.fanout.mark_has_sender_key(&devices);

    // A new device lacks the key, kept devices keep their marks, removed ones go.
    let new = jid("100000000000002:4@lid");
    let mut next: Vec<Jid> = devices[1..].to_vec();
    next.push(new.clone());
    let old_phash = s.fanout.phash().to_string();
    let (added, removed) = s.fanout.set_devices(next.clone()).unwrap();
    assert_eq!(added, std::slice::from_ref(&new));
    assert_eq!(removed, [devices[0].clone()]);
    assert_eq!(s.fanout.lacking_sender_key(), std::slice::from_ref(&new));
    assert!(s.fanout.has_sender_key(&devices[1]));
    assert!(!s.fanout.has_sender_key(&devices[0]));
    assert_ne!(s.fanout.phash(), old_phash);
    next.push(jid(SENDER));
    assert_eq!(s.fanout.phash(), participant_hash(next.iter()));

    // Rotation: a new key makes everyone lack it.
    s.fanout.mark_has_sender_key(&[new]);
    let old_id = s.fanout.sender_key_id();
    group::create_sender_key(&mut s.sender_key, &mut rng(60));
    s.fanout.ensure_sender_key(&mut s.sender_key, &mut rng(61));
    assert_ne!(s.fanout.sender_key_id(), old_id);
    assert_eq!(s.fanout.lacking_count(), 4);
    // Someone else's state as newest: replaced by our own fresh key.
    let mut foreign = SenderKeyRecord::new();
    let (skdm, _) = group::create_distribution_message(&mut foreign.clone(), &mut rng(62)).unwrap();
    group::process_distribution_message(&mut foreign, &skdm);
    let devices = s.fanout.devices().to_vec();
    s.fanout.mark_has_sender_key(&devices);
    assert!(s.fanout.ensure_sender_key(&mut foreign, &mut rng(63)));
    assert!(foreign.current_state().unwrap().is_own());
    assert_eq!(s.fanout.lacking_count(), 4);
}

#[test]
fn pn_groups_use_pn_devices() {
    let sender = jid("5511999990000:2@s.whatsapp.net");
    let devices = [
        jid("5511999990001@s.whatsapp.net"),
        jid("5511999990001:1@hosted"),
    ];
    let mut fanout =
        GroupFanout::new(jid(GROUP), AddressingMode::Pn, sender.clone(), devices).unwrap();
    assert_eq!(fanout.devices().len(), 1);
    let mut record = SenderKeyRecord::new();
    fanout.ensure_sender_key(&mut record, &mut rng(1));
    let m = Member::new("5511999990001@s.whatsapp.net", 70);
    let our = LocalIdentity::generate(&mut rng(2));
    let message = card();
    let prepared = prepare_group_send(
        &fanout,
        &our,
        &mut record,
        send(&message, vec![m.cold_target()]),
        &mut rng(3),
    )
    .unwrap();
    assert_eq!(prepared.node.attr_str("addressing_mode"), Some("pn"));
    assert_eq!(
        prepared.signal_state.sender_keys[0].0,
        SenderKeyName::new(&jid(GROUP), &sender)
    );
}

#[test]
fn many_devices_are_encrypted_in_parallel_deterministically() {
    // Enough bundles to cross the parallel threshold and span several chunks.
    let members: Vec<Member> = (0..70)
        .map(|i| Member::new(&format!("1000000000{:05}@lid", i), 1000 + i))
        .collect();
    let build = || {
        let mut fanout = GroupFanout::new(
            jid(GROUP),
            AddressingMode::Lid,
            jid(SENDER),
            members.iter().map(|m| m.device.clone()),
        )
        .unwrap();
        let mut record = SenderKeyRecord::new();
        fanout.ensure_sender_key(&mut record, &mut rng(1));
        (fanout, record)
    };
    let our = LocalIdentity::generate(&mut rng(2));
    let message = card();
    let run = || {
        let (fanout, mut record) = build();
        let targets = members.iter().rev().map(Member::cold_target).collect();
        prepare_group_send(
            &fanout,
            &our,
            &mut record,
            send(&message, targets),
            &mut rng(3),
        )
        .unwrap()
    };
    let a = run();
    let b = run();
    assert_eq!(encode_node(&a.node).unwrap(), encode_node(&b.node).unwrap());
    assert_eq!(a.counts.pkmsg, 70);
    assert_eq!(a.skdm_devices.len(), 70);
    // Batch order follows the fan-out order.
    let order: Vec<ProtocolAddress> = a
        .signal_state
        .sessions
        .iter()
        .map(|(a, _)| a.clone())
        .collect();
    let expected: Vec<ProtocolAddress> = a
        .skdm_devices
        .iter()
        .map(ProtocolAddress::from_jid)
        .collect();
    assert_eq!(order, expected);
    let mut members = members;
    for m in members.iter_mut().step_by(9) {
        assert_eq!(m.receive_group(&a.node), message);
    }
}

#[test]
fn direct_send_gives_own_devices_a_device_sent_message() {
    let our = LocalIdentity::generate(&mut rng(1));
    let peer_user = jid("5511988887777@s.whatsapp.net");
    let mut peer_phone = Member::new("5511988887777@s.whatsapp.net", 21);
    let mut peer_web = Member::new("5511988887777:4@s.whatsapp.net", 22);
    let mut own_phone = Member::new("5511999990000@s.whatsapp.net", 23);
    let sender = jid("5511999990000:2@s.whatsapp.net");
    let own_users = [
        jid("5511999990000@s.whatsapp.net"),
        jid("100000000000009@lid"),
    ];
    let message = card();
    let prepared = prepare_direct_send(
        &our,
        DirectSend {
            chat: &peer_user,
            sender: &sender,
            own_users: &own_users,
            message_id: "3EB0AB",
            message: &message,
            device_identity: b"adv",
            targets: vec![
                own_phone.cold_target(),
                peer_web.cold_target(),
                peer_phone.cold_target(),
            ],
        },
        &mut rng(2),
    )
    .unwrap();
    let node = &prepared.node;
    assert_eq!(node.attr_jid("to"), Some(&peer_user));
    assert_eq!(node.attr_str("type"), Some("event"));
    assert!(node.get_attr("phash").is_none());
    let tags: Vec<&str> = node.children().iter().map(|c| c.tag.as_ref()).collect();
    assert_eq!(tags, ["participants", "device-identity", "meta"]);
    assert_eq!(prepared.counts.devices, 3);
    assert_eq!(prepared.counts.pkmsg, 3);
    for m in [&mut peer_phone, &mut peer_web] {
        let enc = to_enc(node, &m.device).unwrap();
        assert_eq!(m.decrypt_pairwise(enc), message);
    }
    let enc = to_enc(node, &own_phone.device).unwrap();
    let dsm = own_phone.decrypt_pairwise(enc);
    assert_eq!(dsm.message_context_info, message.message_context_info);
    let inner = dsm.device_sent_message.unwrap();
    assert_eq!(
        inner.destination_jid.as_deref(),
        Some("5511988887777@s.whatsapp.net")
    );
    assert_eq!(inner.message.as_deref(), Some(&message));

    // Refusals.
    let attempt = |chat: &Jid, targets: Vec<PairwiseTarget>| {
        prepare_direct_send(
            &our,
            DirectSend {
                chat,
                sender: &sender,
                own_users: &own_users,
                message_id: "X",
                message: &message,
                device_identity: b"adv",
                targets,
            },
            &mut rng(3),
        )
        .unwrap_err()
    };
    assert!(matches!(
        attempt(&jid(GROUP), vec![]),
        FanoutError::NotAUserChat(_)
    ));
    assert!(matches!(
        attempt(&jid("5511988887777:4@s.whatsapp.net"), vec![]),
        FanoutError::NotAUserChat(_)
    ));
    assert!(matches!(
        attempt(&peer_user, vec![]),
        FanoutError::NoRecipients(_)
    ));
    let stranger = Member::new("5511000000000@s.whatsapp.net", 24);
    assert!(matches!(
        attempt(&peer_user, vec![stranger.cold_target()]),
        FanoutError::UnexpectedTarget(_)
    ));
    let myself = Member::new("5511999990000:2@s.whatsapp.net", 25);
    assert!(matches!(
        attempt(&peer_user, vec![myself.cold_target()]),
        FanoutError::UnexpectedTarget(_)
    ));
    assert!(matches!(
        attempt(
            &peer_user,
            vec![peer_web.cold_target(), peer_web.cold_target()]
        ),
        FanoutError::DuplicateTarget(_)
    ));
}

#[test]
fn retry_resend_targets_one_device() {
    let our = LocalIdentity::generate(&mut rng(1));
    let mut member = Member::new("100000000000001:5@lid", 31);
    let message = rsvp();
    let prepared = prepare_retry_resend(
        &our,
        RetryResend {
            chat: &jid(GROUP),
            own_users: &[],
            addressing_mode: Some(AddressingMode::Lid),
            message_id: "3EB0CAFE",
            message: &message,
            retry_count: 2,
            original_timestamp: Some(1_700_000_000),
            device_identity: b"adv",
            target: member.cold_target(),
        },
        &mut rng(2),
    )
    .unwrap();
    let node = &prepared.node;
    let attrs: Vec<(&str, String)> = node
        .attrs
        .iter()
        .map(|(k, v)| (k, v.to_text().into_owned()))
        .collect();
    assert_eq!(
        attrs,
        [
            ("to", GROUP.to_string()),
            ("participant", "100000000000001:5@lid".to_string()),
            ("id", "3EB0CAFE".to_string()),
            ("type", "event".to_string()),
            ("addressing_mode", "lid".to_string()),
            ("t", "1700000000".to_string()),
        ]
    );
    let tags: Vec<&str> = node.children().iter().map(|c| c.tag.as_ref()).collect();
    assert_eq!(tags, ["enc", "device-identity", "meta"]);
    let enc = node.child_by_tag("enc").unwrap();
    assert_eq!(enc.attr_str("type"), Some("pkmsg"));
    assert_eq!(enc.attr_str("count"), Some("2"));
    assert_eq!(enc.attr_str("decrypt-fail"), Some("hide"));
    assert_eq!(member.decrypt_pairwise(enc), message);
    assert_eq!(prepared.signal_state.sessions.len(), 1);
    assert_eq!(prepared.signal_state.identities.len(), 1);

    // 1:1: to the device, device_fanout="false"; our own device gets the DSM copy.
    let mut own = Member::new("5511999990000:7@s.whatsapp.net", 32);
    let peer = jid("5511988887777@s.whatsapp.net");
    let text = e2e::Message {
        conversation: Some("hi".into()),
        ..Default::default()
    };
    let prepared = prepare_retry_resend(
        &our,
        RetryResend {
            chat: &peer,
            own_users: &[jid("5511999990000@s.whatsapp.net")],
            addressing_mode: None,
            message_id: "3EB0BEEF",
            message: &text,
            retry_count: 1,
            original_timestamp: None,
            device_identity: b"adv",
            target: own.cold_target(),
        },
        &mut rng(3),
    )
    .unwrap();
    assert_eq!(prepared.node.attr_jid("to"), Some(&own.device));
    assert_eq!(prepared.node.attr_str("device_fanout"), Some("false"));
    assert_eq!(prepared.node.attr_str("type"), Some("text"));
    let enc = prepared.node.child_by_tag("enc").unwrap();
    let got = own.decrypt_pairwise(enc);
    assert_eq!(
        got.device_sent_message.unwrap().message.as_deref(),
        Some(&text)
    );

    // No session and no bundle: refused.
    let err = prepare_retry_resend(
        &our,
        RetryResend {
            chat: &jid(GROUP),
            own_users: &[],
            addressing_mode: Some(AddressingMode::Lid),
            message_id: "3EB0CAFE",
            message: &message,
            retry_count: 2,
            original_timestamp: None,
            device_identity: b"adv",
            target: PairwiseTarget {
                device: member.device.clone(),
                session: SessionRecord::new(),
                bundle: None,
            },
        },
        &mut rng(2),
    )
    .unwrap_err();
    assert!(matches!(err, FanoutError::MissingTarget(_)));
    // A group resend without addressing mode is refused.
    let err = prepare_retry_resend(
        &our,
        RetryResend {
            chat: &jid(GROUP),
            own_users: &[],
            addressing_mode: None,
            message_id: "3EB0CAFE",
            message: &message,
            retry_count: 2,
            original_timestamp: None,
            device_identity: b"adv",
            target: member.cold_target(),
        },
        &mut rng(2),
    )
    .unwrap_err();
    assert!(matches!(err, FanoutError::NotAGroup(_)));
}

#[test]
fn skdm_copies_carry_decrypt_fail_hide_when_the_content_does() {
    let mut s = setup();
    let message = rsvp();
    let targets = s.members.iter().map(Member::cold_target).collect();
    let prepared = prepare_group_send(
        &s.fanout,
        &s.our,
        &mut s.sender_key,
        send(&message, targets),
        &mut rng(4),
    )
    .unwrap();
    let participants = prepared.node.child_by_tag("participants").unwrap();
    for to in participants.children() {
        let enc = to.child_by_tag("enc").unwrap();
        assert_eq!(enc.attr_str("decrypt-fail"), Some("hide"));
    }
    assert!(matches!(
        prepared.node.child_by_tag("meta").unwrap().content,
        NodeContent::None
    ));
    for m in &mut s.members {
        assert_eq!(m.receive_group(&prepared.node), message);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the device list and the marks, the state agrees with a naive model.
    #[test]
    fn state_matches_a_naive_model(
        users in proptest::collection::vec((1u64..50, 0u16..4), 0..40),
        marks in proptest::collection::vec(any::<bool>(), 40),
        forget in proptest::collection::vec((1u64..50, 0u16..4), 0..5),
    ) {
        let devices: Vec<Jid> = users
            .iter()
            .map(|(u, d)| Jid::new_ad(format!("1000{u}"), *d, "lid"))
            .collect();
        let mut fanout =
            GroupFanout::new(jid(GROUP), AddressingMode::Lid, jid(SENDER), devices.clone()).unwrap();
        let mut unique: Vec<Jid> = devices.clone();
        unique.sort_by_key(Jid::ad_string);
        unique.dedup();
        prop_assert_eq!(fanout.devices(), &unique[..]);
        let marked: Vec<Jid> = unique
            .iter()
            .zip(&marks)
            .filter(|(_, m)| **m)
            .map(|(d, _)| d.clone())
            .collect();
        fanout.mark_has_sender_key(&marked);
        let mut model: Vec<bool> = unique.iter().map(|d| marked.contains(d)).collect();
        for (u, d) in &forget {
            let f = Jid::new_ad(format!("1000{u}"), *d, "lid");
            fanout.forget_sender_key(&f);
            for (i, dev) in unique.iter().enumerate() {
                if dev.user == f.user && (f.device == 0 || dev.device == f.device) {
                    model[i] = false;
                }
            }
        }
        let lacking: Vec<Jid> = unique
            .iter()
            .zip(&model)
            .filter(|(_, has)| !**has)
            .map(|(d, _)| d.clone())
            .collect();
        prop_assert_eq!(fanout.lacking_sender_key(), lacking.clone());
        prop_assert_eq!(fanout.everyone_has_sender_key(), lacking.is_empty());
        let mut with_sender = unique.clone();
        with_sender.push(jid(SENDER));
        prop_assert_eq!(fanout.phash(), participant_hash(with_sender.iter()));
    }
}
