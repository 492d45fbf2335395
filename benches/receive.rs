//! Receive pipeline benchmarks (one thread, in-memory store, everything except the
//! socket): parsing a group `<message>`, decrypting an skmsg with a known sender key
//! and committing its batch (the warm path of every group message), and a pkmsg that
//! starts a session and carries a sender key followed by its skmsg (the first message
//! of a member). Run: `cargo bench --bench receive -- --warm-up-time 1 --measurement-time 3`.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::hint::black_box;
use waevent::binary::{Node, marshal, unmarshal};
use waevent::client::decrypt::decrypt_envelope;
use waevent::client::envelope::Envelope;
use waevent::client::receive_support::{
    LocalDevice, Member, SEED_GROUP, block_on, text_with_secret,
};
use waevent::jid::Jid;
use waevent::store::{MemoryStore, Store};

/// A ~300-byte message with a message secret, like an event card.
fn content() -> waevent::proto::e2e::Message {
    text_with_secret(&"x".repeat(260), [7; 32])
}

fn receive(store: &MemoryStore, local: &LocalDevice, node: &Node, rng: &mut StdRng) -> usize {
    let envelope = Envelope::parse(node, &local.own_ids()).unwrap();
    let d = block_on(decrypt_envelope(
        store,
        &local.credentials.identity,
        &envelope,
        rng,
        0,
    ))
    .unwrap()
    .unwrap();
    assert!(d.failure.is_none());
    block_on(store.commit_batch(d.batch)).unwrap().unwrap();
    d.messages.len()
}

fn benches(c: &mut Criterion) {
    let rng = &mut StdRng::seed_from_u64(1);
    let local = LocalDevice::fixed();
    let group = Jid::parse(SEED_GROUP).unwrap();

    // Parsing only (frame payload → node → envelope).
    let mut member = Member::new(Jid::parse("70000001:1@lid").unwrap(), None, rng);
    member.start_session(&local.bundle(Some(1)), rng).unwrap();
    let frame = marshal(
        &member
            .group_stanza(&group, "3EB0BENCH", &content(), true, rng)
            .unwrap(),
    )
    .unwrap();
    c.bench_function("receive/parse group message frame", |b| {
        b.iter(|| {
            let node = unmarshal(black_box(&frame)).unwrap();
            black_box(Envelope::parse(&node, &local.own_ids()).unwrap());
        })
    });

    // Warm: the member's sender key is known; each message is one skmsg.
    let store = block_on(local.store()).unwrap();
    let first = member
        .group_stanza(&group, "3EB0WARM0", &content(), true, rng)
        .unwrap();
    receive(&store, &local, &first, rng);
    let mut n = 0u64;
    c.bench_function("receive/skmsg with known sender key + commit", |b| {
        b.iter_batched(
            || {
                n += 1;
                member
                    .group_stanza(&group, &format!("3EB0W{n}"), &content(), false, rng)
                    .unwrap()
            },
            |node| {
                black_box(receive(
                    &store,
                    &local,
                    &node,
                    &mut StdRng::seed_from_u64(2),
                ))
            },
            BatchSize::SmallInput,
        )
    });

    // Cold: a new member device (X3DH as responder, no one-time prekey) sends its
    // sender key in a pkmsg and the content in an skmsg.
    let cold_store = block_on(local.store()).unwrap();
    let mut m = 0u64;
    c.bench_function("receive/pkmsg new session + SKDM + skmsg + commit", |b| {
        b.iter_batched(
            || {
                m += 1;
                let device = Jid::parse(&format!("{}:1@lid", 80_000_000 + m)).unwrap();
                let mut member = Member::new(device, None, rng);
                member.start_session(&local.bundle(None), rng).unwrap();
                member
                    .group_stanza(&group, &format!("3EB0C{m}"), &content(), true, rng)
                    .unwrap()
            },
            |node| {
                black_box(receive(
                    &cold_store,
                    &local,
                    &node,
                    &mut StdRng::seed_from_u64(3),
                ))
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(receive_benches, benches);
criterion_main!(receive_benches);
