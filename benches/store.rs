//! Store benchmarks: what persisting costs on the send and receive paths.
//!
//! * `commit/warm_send`: the batch of a group send once the sender key is distributed
//!   (sender-key record, message secret, sent message with a 4 KiB stanza, event card);
//! * `commit/fanout_1024x3`: the batch of a send that distributes the sender key to
//!   1,024 members × 3 devices (3,072 sessions of 1 KiB, the sender-key memory of
//!   3,072 devices, a 600 KiB stanza);
//! * `commit/rsvp_receive`: a received RSVP (session, RSVP, webhook job);
//! * `load/*`: reading 3,072 sessions, the sender-key memory of 3,072 devices, and
//!   1,024 LID lookups.
//!
//! SQLite runs with `synchronous=FULL`, so every commit includes an fsync of the WAL:
//! the numbers depend on the disk. Run:
//! `cargo bench --bench store -- --warm-up-time 1 --measurement-time 3`.

use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use waevent::jid::Jid;
use waevent::signal::{ProtocolAddress, SenderKeyName};
use waevent::store::prelude::*;
use waevent::store::{
    DeviceCredentials, EventRecord, LidPnMapping, MemoryStore, MessageSecretRecord, RsvpRecord,
    RsvpStatus, SecretBytes, SenderKeyMemoryUpdate, SentMessage, SentState, SqliteStore,
    StoreBatch, WebhookJob,
};

const MEMBERS: usize = 1024;
const DEVICES: usize = 3;

fn member(i: usize) -> Jid {
    Jid::lid_user(format!("{}", 100_000_000_000_000u64 + i as u64))
}

fn devices() -> Vec<Jid> {
    (0..MEMBERS)
        .flat_map(|i| (0..DEVICES).map(move |d| member(i).with_device(d as u16)))
        .collect()
}

fn group() -> Jid {
    Jid::group("120363025246125888")
}

fn sender_key_name() -> SenderKeyName {
    SenderKeyName::new(&group(), &Jid::parse("99009:3@lid").unwrap())
}

fn warm_send(n: u64) -> StoreBatch {
    let id = format!("3EB0{n:016X}");
    let mut b = StoreBatch::new();
    b.signal
        .sender_keys
        .push((sender_key_name(), vec![7u8; 240].into()));
    b.secrets.push(MessageSecretRecord {
        chat: group(),
        sender: Jid::lid_user("99009"),
        message_id: id.clone(),
        secret: SecretBytes::from_array([5; 32]),
        created_at_ms: 0,
    });
    b.events.push(EventRecord {
        chat: group(),
        message_id: id.clone(),
        creator: Jid::lid_user("99009"),
        from_me: true,
        card: vec![1; 300],
        timestamp_ms: 0,
    });
    b.sent_messages.push(SentMessage {
        chat: group(),
        message_id: id,
        message: vec![2; 400],
        stanza: vec![3; 4096],
        state: SentState::Pending,
        source: Some("api".into()),
        created_at_ms: 0,
    });
    b
}

fn fanout(n: u64) -> StoreBatch {
    let mut b = warm_send(n);
    let devs = devices();
    for d in &devs {
        b.signal
            .sessions
            .push((ProtocolAddress::from_jid(d), vec![9u8; 1024].into()));
    }
    if let Some(s) = b.sent_messages.first_mut() {
        s.stanza = vec![3; 600 * 1024];
    }
    b.sender_key_memory.push(SenderKeyMemoryUpdate::MarkHas {
        group: group(),
        devices: devs,
    });
    b
}

fn rsvp_receive(n: u64) -> StoreBatch {
    let mut b = StoreBatch::new();
    let voter = member((n % MEMBERS as u64) as usize);
    b.signal
        .sessions
        .push((ProtocolAddress::from_jid(&voter), vec![9u8; 1024].into()));
    b.rsvps.push(RsvpRecord {
        chat: group(),
        event_id: "3EB0EVENT".into(),
        voter,
        response: RsvpStatus::Going,
        extra_guests: 0,
        timestamp_ms: n as i64,
    });
    b.webhooks.push(WebhookJob {
        id: format!("w{n}"),
        instance: "main".into(),
        payload: vec![b'x'; 500],
        attempts: 0,
        next_attempt_at_ms: 0,
        created_at_ms: 0,
        last_error: None,
    });
    b
}

struct Backends {
    rt: tokio::runtime::Runtime,
    memory: Arc<dyn Store>,
    sqlite: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

fn backends() -> Backends {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(
        rt.block_on(SqliteStore::open(dir.path().join("bench.db")))
            .unwrap(),
    );
    let memory: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let creds = DeviceCredentials::generate(&mut StdRng::seed_from_u64(1));
    for store in [&memory, &sqlite] {
        rt.block_on(async {
            store.save_credentials(&creds).await.unwrap();
            store.commit_batch(fanout(0)).await.unwrap();
            let mappings: Vec<LidPnMapping> = (0..MEMBERS)
                .map(|i| {
                    LidPnMapping::new(&member(i), &Jid::pn_user(format!("5511{i:09}"))).unwrap()
                })
                .collect();
            store.put_lid_mappings(&mappings).await.unwrap();
        });
    }
    Backends {
        rt,
        memory,
        sqlite,
        _dir: dir,
    }
}

fn bench_commits(c: &mut Criterion) {
    let b = backends();
    let mut n = 1u64;
    let mut g = c.benchmark_group("commit");
    for (name, store) in [("memory", &b.memory), ("sqlite", &b.sqlite)] {
        g.bench_function(format!("warm_send/{name}"), |bench| {
            bench.iter_batched(
                || {
                    n += 1;
                    warm_send(n)
                },
                |batch| b.rt.block_on(store.commit_batch(batch)).unwrap(),
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("rsvp_receive/{name}"), |bench| {
            bench.iter_batched(
                || {
                    n += 1;
                    rsvp_receive(n)
                },
                |batch| b.rt.block_on(store.commit_batch(batch)).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.sample_size(10);
    for (name, store) in [("memory", &b.memory), ("sqlite", &b.sqlite)] {
        g.bench_function(format!("fanout_1024x3/{name}"), |bench| {
            bench.iter_batched(
                || {
                    n += 1;
                    fanout(n)
                },
                |batch| b.rt.block_on(store.commit_batch(batch)).unwrap(),
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn bench_loads(c: &mut Criterion) {
    let b = backends();
    let addresses: Vec<ProtocolAddress> = devices().iter().map(ProtocolAddress::from_jid).collect();
    let pns: Vec<Jid> = (0..MEMBERS)
        .map(|i| Jid::pn_user(format!("5511{i:09}")))
        .collect();
    let mut g = c.benchmark_group("load");
    g.sample_size(20);
    for (name, store) in [("memory", &b.memory), ("sqlite", &b.sqlite)] {
        g.bench_function(format!("sessions_3072/{name}"), |bench| {
            bench.iter(|| {
                let found = b.rt.block_on(store.load_sessions(&addresses)).unwrap();
                assert_eq!(found.len(), addresses.len());
            })
        });
        g.bench_function(format!("sender_key_holders_3072/{name}"), |bench| {
            bench.iter(|| {
                let holders = b.rt.block_on(store.sender_key_holders(&group())).unwrap();
                assert_eq!(holders.len(), MEMBERS * DEVICES);
            })
        });
        g.bench_function(format!("lids_for_pns_1024/{name}"), |bench| {
            bench.iter(|| b.rt.block_on(store.lids_for_pns(&pns)).unwrap())
        });
        g.bench_function(format!("sender_key/{name}"), |bench| {
            bench.iter(|| {
                b.rt.block_on(store.load_sender_key(&sender_key_name()))
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_commits, bench_loads);
criterion_main!(benches);
