//! Event card → serialized `Message` (validation, builder, secret, protobuf
//! encoding), and reading a card back from those bytes; plus RSVP sealing and
//! opening, the per-answer cost of tallying.

use criterion::{Criterion, criterion_group, criterion_main};
use prost::Message as _;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::hint::black_box;
use waevent::event::{
    EventCard, EventLocation, EventRef, MessageSecret, Parties, Rsvp, RsvpResponse, decrypt_rsvp,
    rsvp_message,
};
use waevent::jid::Jid;
use waevent::proto::e2e;

const CARD_JSON: &str = r#"{"name":"Quarterly planning","description":"Bring the Q3 numbers",
  "startAt":"2026-12-01T15:00:00-03:00","endAt":"2026-12-01T16:30:00-03:00",
  "location":{"name":"HQ, room 4","address":"Av. Paulista 1000","latitude":-23.5614,"longitude":-46.6559},
  "joinLink":"https://call.whatsapp.com/video/AbCdEf123456","isScheduleCall":true,
  "hasReminder":true,"reminderOffsetSec":900,"extraGuestsAllowed":true,"isCanceled":false}"#;

fn build_card() -> EventCard {
    EventCard::builder()
        .name("Quarterly planning")
        .description("Bring the Q3 numbers")
        .start_at("2026-12-01T15:00:00-03:00")
        .end_at("2026-12-01T16:30:00-03:00")
        .location(EventLocation {
            name: Some("HQ, room 4".into()),
            address: Some("Av. Paulista 1000".into()),
            latitude: Some(-23.5614),
            longitude: Some(-46.6559),
        })
        .join_link("https://call.whatsapp.com/video/AbCdEf123456")
        .schedule_call(true)
        .reminder_offset_secs(900)
        .extra_guests_allowed(true)
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    c.bench_function("event_card/builder_to_message_bytes", |b| {
        b.iter(|| {
            let card = build_card();
            let (m, _secret) = card.to_message(&mut rng);
            black_box(m.encode_to_vec())
        })
    });
    c.bench_function("event_card/json_to_message_bytes", |b| {
        b.iter(|| {
            let card = EventCard::from_json(black_box(CARD_JSON)).unwrap();
            let (m, _secret) = card.to_message(&mut rng);
            black_box(m.encode_to_vec())
        })
    });
    let bytes = build_card().to_message(&mut rng).0.encode_to_vec();
    c.bench_function("event_card/read_back_from_bytes", |b| {
        b.iter(|| {
            let m = e2e::Message::decode(black_box(bytes.as_slice())).unwrap();
            black_box(EventCard::from_message(&m).unwrap())
        })
    });

    let secret = MessageSecret::generate(&mut rng);
    let creator = Jid::pn_user("5511999990000");
    let responder = Jid::pn_user("5511988887777");
    let ev = EventRef::new(
        Jid::group("120363000000000001"),
        "3EB0C4B7A1D2E3F40516",
        creator.clone(),
    );
    let rsvp = Rsvp::new(RsvpResponse::Going, 1_796_148_000_000);
    c.bench_function("rsvp/encrypt", |b| {
        b.iter(|| black_box(rsvp_message(&rsvp, &ev, &secret, &responder, &mut rng).unwrap()))
    });
    let enc = rsvp_message(&rsvp, &ev, &secret, &responder, &mut rng)
        .unwrap()
        .enc_event_response_message
        .unwrap();
    let cands = Parties::alternates(&[creator], &[responder]);
    c.bench_function("rsvp/decrypt", |b| {
        b.iter(|| black_box(decrypt_rsvp(&enc, &secret, &cands).unwrap()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
