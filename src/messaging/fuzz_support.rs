//! The `group_fanout` fuzz target: hostile device lists (from usync and group
//! notifications), a hostile sender-key record (from the store) and a hostile `Message`
//! go through the fan-out state and a group send that needs no X3DH.
//!
//! Input layout: one flags byte (bit 0: LID addressing), a u16-BE-length-prefixed
//! sender-key record, a u16-BE-length-prefixed `Message`, then lines of text: the first
//! is our sending device, `+jid` marks a device as having our key, `-jid` forgets it,
//! `=` replaces the device list with the plain lines seen so far, any other line is a
//! device. Invariants checked: the phash is the hash of the devices plus the sender,
//! devices are sorted and unique, every prepared stanza encodes.

use prost::Message as _;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::binary::encode_node;
use crate::jid::Jid;
use crate::proto::e2e;
use crate::signal::group::SenderKeyRecord;
use crate::signal::identity::LocalIdentity;
use crate::signal::session::SessionRecord;
use crate::store::AddressingMode;

use super::fanout::{GroupFanout, GroupSend, PairwiseTarget, prepare_group_send};
use super::framing::Framing;
use super::phash::participant_hash;

const GROUP: &str = "120363000000000000@g.us";

fn take_chunk<'a>(data: &mut &'a [u8]) -> &'a [u8] {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return &[];
    };
    let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (chunk, rest) = rest.split_at(len);
    *data = rest;
    chunk
}

/// Builds one input in the layout above (for seeds and tests).
pub fn input(lid: bool, record: &[u8], message: &[u8], lines: &[&str]) -> Vec<u8> {
    let mut out = vec![u8::from(lid)];
    for chunk in [record, message] {
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(chunk.get(..usize::from(len)).unwrap_or(chunk));
    }
    out.extend_from_slice(lines.join("\n").as_bytes());
    out
}

/// Runs one input (see the module docs). Panics only on a broken invariant.
pub fn group_fanout(data: &[u8]) {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mode = if flags & 1 == 1 {
        AddressingMode::Lid
    } else {
        AddressingMode::Pn
    };
    let record_bytes = take_chunk(&mut rest);
    let message_bytes = take_chunk(&mut rest);
    let message = e2e::Message::decode(message_bytes).unwrap_or_default();
    let _ = Framing::of(&message);
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.lines();
    let Some(sender) = lines.next().and_then(|l| Jid::parse(l).ok()) else {
        return;
    };
    let Ok(group) = Jid::parse(GROUP) else {
        return;
    };
    let Ok(mut fanout) = GroupFanout::new(group, mode, sender.clone(), []) else {
        return;
    };
    let mut listed = Vec::new();
    for line in lines.take(512) {
        if line == "=" {
            if fanout.set_devices(listed.clone()).is_err() {
                return;
            }
            check(&fanout);
        } else if let Some(j) = line.strip_prefix('+').and_then(|l| Jid::parse(l).ok()) {
            fanout.mark_has_sender_key([&j]);
        } else if let Some(j) = line.strip_prefix('-').and_then(|l| Jid::parse(l).ok()) {
            fanout.forget_sender_key(&j);
        } else if let Ok(j) = Jid::parse(line) {
            listed.push(j);
        }
    }
    check(&fanout);

    let rng = &mut StdRng::seed_from_u64(1);
    let mut record = SenderKeyRecord::deserialize(record_bytes).unwrap_or_default();
    fanout.ensure_sender_key(&mut record, rng);
    let targets = fanout
        .lacking_sender_key()
        .into_iter()
        .map(|device| PairwiseTarget {
            device,
            session: SessionRecord::new(),
            bundle: None,
        })
        .collect();
    let our = LocalIdentity::generate(rng);
    let send = GroupSend {
        message_id: "3EB0FFFFFFFFFFFFFFFFFF",
        message: &message,
        device_identity: b"",
        targets,
    };
    if let Ok(prepared) = prepare_group_send(&fanout, &our, &mut record, send, rng) {
        assert_eq!(prepared.unreachable.len(), fanout.lacking_count());
        assert!(
            encode_node(&prepared.node).is_ok(),
            "a prepared stanza does not encode"
        );
    }
}

fn check(fanout: &GroupFanout) {
    let ads: Vec<String> = fanout.devices().iter().map(Jid::ad_string).collect();
    assert!(
        ads.windows(2).all(|w| w[0] < w[1]),
        "devices not sorted and unique"
    );
    let mut all = fanout.devices().to_vec();
    all.push(fanout.sender().clone());
    assert_eq!(fanout.phash(), participant_hash(all.iter()), "stale phash");
    assert!(fanout.lacking_count() <= fanout.devices().len());
}

/// Seed inputs for `fuzz/corpus/group_fanout/`, by file name: real device lists, a
/// real sender-key record and real messages, plus corrupt ones.
pub fn seed_files() -> Vec<(String, Vec<u8>)> {
    let rng = &mut StdRng::seed_from_u64(9);
    let mut record = SenderKeyRecord::new();
    crate::signal::group::create_sender_key(&mut record, rng);
    let record = record.serialize();
    let card = e2e::Message {
        event_message: Some(Box::new(e2e::EventMessage {
            name: Some("Dinner".into()),
            start_time: Some(1_900_000_000),
            ..Default::default()
        })),
        message_context_info: Some(e2e::MessageContextInfo {
            message_secret: Some(vec![1; 32]),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec();
    let rsvp = e2e::Message {
        enc_event_response_message: Some(e2e::EncEventResponseMessage {
            event_creation_message_key: None,
            enc_payload: Some(vec![3; 24]),
            enc_iv: Some(vec![4; 12]),
        }),
        ..Default::default()
    }
    .encode_to_vec();
    let lid_lines = [
        "100000000000009:3@lid",
        "100000000000001@lid",
        "100000000000001:5@lid",
        "100000000000002@lid",
        "100000000000002:99@lid",
        "100000000000003@hosted.lid",
        "100000000000009@lid",
        "=",
        "+100000000000001@lid",
        "+100000000000001:5@lid",
        "-100000000000001@lid",
    ];
    let pn_lines = [
        "5511999990000:2@s.whatsapp.net",
        "5511999990001@s.whatsapp.net",
        "5511999990001:1@s.whatsapp.net",
        "=",
        "+5511999990001@s.whatsapp.net",
    ];
    let mut corrupt_record = record.clone();
    if let Some(b) = corrupt_record.get_mut(5) {
        *b ^= 0xFF;
    }
    vec![
        ("lid_card".into(), input(true, &record, &card, &lid_lines)),
        (
            "lid_rsvp_new_key".into(),
            input(true, &[], &rsvp, &lid_lines),
        ),
        ("pn_card".into(), input(false, &record, &card, &pn_lines)),
        (
            "wrong_addressing".into(),
            input(true, &record, &card, &pn_lines),
        ),
        (
            "corrupt_record".into(),
            input(true, &corrupt_record, &card, &lid_lines),
        ),
        (
            "corrupt_message".into(),
            input(true, &record, &[0xFF, 0xFF, 0x01], &lid_lines),
        ),
        ("truncated".into(), vec![1, 0xFF]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed corpus in `fuzz/corpus/group_fanout/` is what `seed_files` produces
    /// (run with `WAEVENT_WRITE_FUZZ_SEEDS=1` to rewrite it); every seed runs cleanly.
    #[test]
    fn fuzz_seed_corpus_is_current() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/group_fanout");
        let write = std::env::var_os("WAEVENT_WRITE_FUZZ_SEEDS").is_some();
        if write {
            std::fs::create_dir_all(&dir).unwrap();
        }
        for (name, bytes) in seed_files() {
            group_fanout(&bytes);
            let path = dir.join(&name);
            if write {
                std::fs::write(&path, &bytes).unwrap();
            }
            let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (WAEVENT_WRITE_FUZZ_SEEDS=1 writes it)",
                    path.display()
                )
            });
            assert_eq!(on_disk, bytes, "{name} is stale");
        }
    }

    #[test]
    fn seeds_exercise_the_send() {
        // The LID seed builds a fan-out of four devices and prepares a send.
        let seeds = seed_files();
        let (_, lid) = &seeds[0];
        group_fanout(lid);
        group_fanout(&[]);
        group_fanout(&[0]);
    }
}
