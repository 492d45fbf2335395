//! The seed corpus of the `message_event` fuzz target (`fuzz/corpus/message_event/`):
//! real messages produced by waevent (cards, RSVPs and edits encrypted under the
//! target's fixed secret so decryption succeeds, wrapped forms, JSON) plus a few
//! corrupt ones. `WAEVENT_WRITE_FUZZ_SEEDS=1 cargo test --test event_fuzz_seeds`
//! rewrites them; every run checks the committed seeds are exactly those bytes and
//! still reach the deep paths.

use std::path::PathBuf;

use prost::Message as _;
use rand::SeedableRng;
use rand::rngs::StdRng;
use waevent::event::{
    EventCard, EventLocation, EventRef, MessageSecret, Parties, Rsvp, RsvpResponse,
    creator_from_key, decrypt_event_edit, decrypt_rsvp, edit_message, rsvp_message,
};
use waevent::fuzz_targets::{
    FUZZ_EVENT_GROUP, FUZZ_EVENT_SECRET, FUZZ_EVENT_SENDER, message_event,
};
use waevent::jid::Jid;
use waevent::proto::e2e;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/message_event")
}

fn card() -> EventCard {
    EventCard::builder()
        .name("Team sync")
        .description("Weekly")
        .start_at("2026-12-01T15:00:00-03:00")
        .end_at("2026-12-01T16:00:00-03:00")
        .location(EventLocation {
            name: Some("Room 4".into()),
            address: Some("Main St 1".into()),
            latitude: Some(-23.5),
            longitude: Some(-46.6),
        })
        .join_link("https://call.whatsapp.com/voice/AbC")
        .reminder_offset_secs(600)
        .extra_guests_allowed(true)
        .build()
        .unwrap()
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut rng = StdRng::seed_from_u64(2026);
    let secret = MessageSecret::from_array(FUZZ_EVENT_SECRET);
    let group = Jid::parse(FUZZ_EVENT_GROUP).unwrap();
    let sender = Jid::parse(FUZZ_EVENT_SENDER).unwrap();
    let mut out: Vec<(&'static str, Vec<u8>)> = Vec::new();

    let full = card().to_message_with_secret(&secret);
    out.push(("card_full", full.encode_to_vec()));
    let minimal = EventCard::builder()
        .name("x")
        .start_unix(0)
        .build()
        .unwrap()
        .to_message_with_secret(&secret);
    out.push(("card_minimal", minimal.encode_to_vec()));

    let ev_pn = EventRef::new(
        group.clone(),
        "3EB0SEED000000000001",
        Jid::pn_user("5511999990000"),
    );
    let ev_lid = EventRef::new(
        group.clone(),
        "3EB0SEED000000000002",
        Jid::lid_user("100000000000001"),
    );
    let rsvp = Rsvp {
        response: RsvpResponse::Going,
        extra_guests: 1,
        timestamp_ms: 1_796_148_000_000,
    };
    let r1 = rsvp_message(&rsvp, &ev_pn, &secret, &sender, &mut rng).unwrap();
    out.push(("rsvp_pn", r1.encode_to_vec()));
    let r2 = rsvp_message(
        &Rsvp::new(RsvpResponse::Maybe, 5),
        &ev_lid,
        &secret,
        &sender,
        &mut rng,
    )
    .unwrap();
    out.push(("rsvp_lid_creator", r2.encode_to_vec()));

    let own = EventRef::new(group.clone(), "3EB0SEED000000000003", sender.clone());
    let edit = edit_message(&card().to_canceled(), &own, &secret, &sender, &mut rng).unwrap();
    out.push(("edit_cancel", edit.encode_to_vec()));

    let wrapped = e2e::Message {
        device_sent_message: Some(Box::new(e2e::DeviceSentMessage {
            destination_jid: Some(FUZZ_EVENT_GROUP.into()),
            message: Some(Box::new(full.clone())),
            phash: Some("2:AAAAAAAA".into()),
        })),
        ..Default::default()
    };
    out.push(("card_device_sent", wrapped.encode_to_vec()));
    let eph = e2e::Message {
        ephemeral_message: Some(Box::new(e2e::FutureProofMessage {
            message: Some(Box::new(r1.clone())),
        })),
        ..Default::default()
    };
    out.push(("rsvp_ephemeral", eph.encode_to_vec()));
    let skdm = e2e::Message {
        sender_key_distribution_message: Some(e2e::SenderKeyDistributionMessage {
            group_id: Some(FUZZ_EVENT_GROUP.into()),
            axolotl_sender_key_distribution_message: Some(vec![0x33; 70]),
        }),
        extended_text_message: Some(Box::new(e2e::ExtendedTextMessage {
            text: Some("hello".into()),
            context_info: Some(Box::new(e2e::ContextInfo {
                stanza_id: Some("3EB0SEED000000000001".into()),
                participant: Some("5511999990000@s.whatsapp.net".into()),
                quoted_message: Some(Box::new(minimal.clone())),
                mentioned_jid: vec![FUZZ_EVENT_SENDER.into()],
                ..Default::default()
            })),
        })),
        ..Default::default()
    };
    out.push(("skdm_text_quote", skdm.encode_to_vec()));
    out.push((
        "card_json",
        br#"{"name":"Team sync","startAt":"2026-12-01T15:00:00-03:00","endAt":1796151600,"location":{"name":"Room 4","latitude":1,"longitude":2},"hasReminder":true,"reminderOffsetSec":60}"#.to_vec(),
    ));

    // Corrupt ones.
    let mut b = full.encode_to_vec();
    b.truncate(b.len() / 2);
    out.push(("corrupt_card_truncated", b));
    let mut bad = r1.clone();
    if let Some(p) = bad
        .enc_event_response_message
        .as_mut()
        .and_then(|e| e.enc_payload.as_mut())
    {
        p[0] ^= 1;
    }
    out.push(("corrupt_rsvp_bitflip", bad.encode_to_vec()));
    let mut wrong = edit.clone();
    if let Some(s) = wrong.secret_encrypted_message.as_mut() {
        s.secret_enc_type = Some(4);
    }
    out.push(("corrupt_edit_type", wrong.encode_to_vec()));
    out.push(("corrupt_garbage", vec![0xff, 0x01, 0xda, 0x04, 0x80]));
    out
}

/// The committed `seed_*` files are exactly what `seeds()` makes;
/// `WAEVENT_WRITE_FUZZ_SEEDS=1` rewrites them first.
#[test]
fn committed_seeds_are_what_the_generator_makes() {
    let dir = corpus_dir();
    let write = std::env::var_os("WAEVENT_WRITE_FUZZ_SEEDS").is_some();
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, bytes) in seeds() {
        let path = dir.join(format!("seed_{name}"));
        if write {
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (regenerate with WAEVENT_WRITE_FUZZ_SEEDS=1)",
                path.display()
            )
        });
        assert!(
            committed == bytes,
            "{} differs from the generator",
            path.display()
        );
    }
}

#[test]
fn committed_seeds_reach_decryption() {
    let secret = MessageSecret::from_array(FUZZ_EVENT_SECRET);
    let chat = Jid::parse(FUZZ_EVENT_GROUP).unwrap();
    let sender = Jid::parse(FUZZ_EVENT_SENDER).unwrap();
    let (mut cards, mut rsvps, mut edits, mut files) = (0, 0, 0, 0);
    for entry in std::fs::read_dir(corpus_dir()).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        files += 1;
        message_event(&data);
        let Ok(m) = e2e::Message::decode(data.as_slice()) else {
            continue;
        };
        if EventCard::from_message(&m).is_ok() {
            cards += 1;
        }
        let inner = waevent::event::unwrap_message(&m);
        if let Some(enc) = &inner.enc_event_response_message {
            let creator = creator_from_key(
                enc.event_creation_message_key.as_ref().unwrap(),
                &chat,
                &sender,
            );
            let opened = creator
                .and_then(|c| decrypt_rsvp(enc, &secret, &[Parties::new(c, sender.clone())]));
            if opened.is_ok() {
                rsvps += 1;
            }
        }
        if let Some(sem) = &inner.secret_encrypted_message {
            let cands = [Parties::new(sender.clone(), sender.clone())];
            if decrypt_event_edit(sem, &secret, &cands).is_ok() {
                edits += 1;
            }
        }
    }
    assert!(files >= 13, "{files} seeds");
    assert!(cards >= 3, "{cards} cards");
    assert!(rsvps >= 3, "{rsvps} RSVPs decrypt");
    assert!(edits >= 1, "{edits} edits decrypt");
}
