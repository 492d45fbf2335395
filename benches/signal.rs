//! Signal engine benchmarks (issue 3 targets, one thread):
//! session build from a bundle + first encrypt ≤ 300 µs, pairwise encrypt of ~150 B on
//! an existing session ≤ 2.5 µs, sender-key encrypt of ~300 B ≤ 20 µs, and the decrypt
//! of each. Run: `cargo bench --bench signal -- --warm-up-time 1 --measurement-time 3`.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::hint::black_box;
use waevent::signal::{
    KeyPair, LocalIdentity, PreKeyBundle, PreKeySignalMessage, PreKeys, SenderKeyRecord,
    SessionRecord, SignedPreKeyRecord, decrypt_prekey, decrypt_whisper, encrypt, generate_prekeys,
    group, initialize_from_bundle,
};

const SKDM_SIZE: usize = 150;
const CARD_SIZE: usize = 300;

/// Alice and Bob with an acknowledged session (both have sent and received).
fn established(rng: &mut StdRng) -> (SessionRecord, SessionRecord) {
    let alice = LocalIdentity::generate(rng);
    let bob = LocalIdentity::generate(rng);
    let signed = SignedPreKeyRecord::generate(&bob.key_pair, 1, 0, rng);
    let one = generate_prekeys(1, 1, rng).remove(0);
    let bundle = PreKeyBundle::from_local(&bob, 1, &signed, Some(&one));
    let mut a = SessionRecord::new();
    initialize_from_bundle(&mut a, &alice, &bundle, rng).unwrap();
    let first = encrypt(&mut a, b"hi").unwrap();
    let mut b = SessionRecord::new();
    let msg = PreKeySignalMessage::deserialize(first.bytes()).unwrap();
    decrypt_prekey(
        &mut b,
        &bob,
        &msg,
        PreKeys {
            signed: Some(&signed),
            one_time: Some(&one),
        },
        rng,
    )
    .unwrap();
    let reply = encrypt(&mut b, b"hello").unwrap();
    decrypt_whisper(&mut a, reply.bytes(), rng).unwrap();
    (a, b)
}

fn pairwise(c: &mut Criterion) {
    let rng = &mut StdRng::seed_from_u64(1);
    let alice = LocalIdentity::generate(rng);
    let bob = LocalIdentity::generate(rng);
    let signed = SignedPreKeyRecord::generate(&bob.key_pair, 1, 0, rng);
    let one = generate_prekeys(1, 1, rng).remove(0);
    let bundle = PreKeyBundle::from_local(&bob, 1, &signed, Some(&one));
    let skdm_sized = vec![0x5Au8; SKDM_SIZE];

    c.bench_function("session build from bundle + first encrypt (150 B)", |b| {
        b.iter(|| {
            let mut record = SessionRecord::new();
            initialize_from_bundle(&mut record, &alice, black_box(&bundle), rng).unwrap();
            black_box(encrypt(&mut record, &skdm_sized).unwrap())
        })
    });

    let (mut a, b_record) = established(rng);
    c.bench_function("pairwise encrypt, existing session (150 B)", |b| {
        b.iter(|| black_box(encrypt(&mut a, black_box(&skdm_sized)).unwrap()))
    });

    // Decrypt on an existing receiving chain: Bob has already received one message of
    // Alice's current chain, the benchmarked one is the next.
    let (mut a2, mut b2) = established(rng);
    let opener = encrypt(&mut a2, &skdm_sized).unwrap();
    decrypt_whisper(&mut b2, opener.bytes(), rng).unwrap();
    let next = encrypt(&mut a2, &skdm_sized).unwrap().into_bytes();
    c.bench_function("pairwise decrypt, existing chain (150 B)", |b| {
        b.iter_batched(
            || b2.clone(),
            |mut record| {
                black_box(decrypt_whisper(&mut record, &next, rng).unwrap());
                record
            },
            BatchSize::SmallInput,
        )
    });

    // Decrypt of a message that starts a new chain (DH ratchet step: 2 X25519 + keygen).
    let (a3, mut b3) = established(rng);
    let reply = encrypt(&mut b3, b"turn").unwrap();
    let mut a3 = a3;
    decrypt_whisper(&mut a3, reply.bytes(), rng).unwrap();
    let new_chain = encrypt(&mut a3, &skdm_sized).unwrap().into_bytes();
    c.bench_function("pairwise decrypt, new ratchet step (150 B)", |b| {
        b.iter_batched(
            || b3.clone(),
            |mut record| {
                black_box(decrypt_whisper(&mut record, &new_chain, rng).unwrap());
                record
            },
            BatchSize::SmallInput,
        )
    });

    // The responder's side of session setup: pkmsg decrypt with X3DH.
    let mut fresh = SessionRecord::new();
    initialize_from_bundle(&mut fresh, &alice, &bundle, rng).unwrap();
    let pk = PreKeySignalMessage::deserialize(encrypt(&mut fresh, &skdm_sized).unwrap().bytes())
        .unwrap();
    c.bench_function("pkmsg decrypt, new session (150 B)", |b| {
        b.iter(|| {
            let mut record = SessionRecord::new();
            black_box(
                decrypt_prekey(
                    &mut record,
                    &bob,
                    &pk,
                    PreKeys {
                        signed: Some(&signed),
                        one_time: Some(&one),
                    },
                    rng,
                )
                .unwrap(),
            )
        })
    });
    drop(b_record);
}

fn sender_keys(c: &mut Criterion) {
    let rng = &mut StdRng::seed_from_u64(2);
    let card = vec![0xA5u8; CARD_SIZE];
    let mut own = SenderKeyRecord::new();
    let (skdm, _) = group::create_distribution_message(&mut own, rng).unwrap();
    let mut theirs = SenderKeyRecord::new();
    group::process_distribution_message(&mut theirs, &skdm);

    c.bench_function("sender-key encrypt (300 B)", |b| {
        b.iter(|| black_box(group::encrypt(&mut own, black_box(&card), rng).unwrap()))
    });

    let mut own2 = SenderKeyRecord::new();
    let (skdm2, _) = group::create_distribution_message(&mut own2, rng).unwrap();
    let mut theirs2 = SenderKeyRecord::new();
    group::process_distribution_message(&mut theirs2, &skdm2);
    let msg = group::encrypt(&mut own2, &card, rng).unwrap();
    c.bench_function("sender-key decrypt (300 B)", |b| {
        b.iter_batched(
            || theirs2.clone(),
            |mut record| {
                black_box(group::decrypt(&mut record, &msg).unwrap());
                record
            },
            BatchSize::SmallInput,
        )
    });
    drop(theirs);
}

fn primitives(c: &mut Criterion) {
    let rng = &mut StdRng::seed_from_u64(3);
    let a = KeyPair::generate(rng);
    let b = KeyPair::generate(rng);
    let msg = [7u8; 100];
    let sig = a.sign(rng, &msg);
    c.bench_function("X25519 agreement (used: Edwards form, dalek AVX2)", |bch| {
        bch.iter(|| black_box(a.agree(black_box(&b.public))))
    });
    c.bench_function("X25519 agreement (Montgomery ladder)", |bch| {
        bch.iter(|| black_box(a.private.agree_ladder(black_box(&b.public))))
    });
    c.bench_function("key pair generation", |bch| {
        bch.iter(|| black_box(KeyPair::generate(rng)))
    });
    c.bench_function("XEdDSA sign (100 B)", |bch| {
        bch.iter(|| black_box(a.sign(rng, black_box(&msg))))
    });
    c.bench_function("XEdDSA verify (100 B)", |bch| {
        bch.iter(|| black_box(a.public.verify(black_box(&msg), &sig)))
    });
}

criterion_group!(benches, pairwise, sender_keys, primitives);
criterion_main!(benches);
