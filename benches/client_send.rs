//! The warm path through `Client::send_message` (the group's sender key already
//! distributed), end to end over the loopback simulator: resolve from memory, one
//! sender-key encryption, one store commit (MemoryStore), the websocket write, the
//! simulator's routing and phash check, and the ack back. The per-device fan-out work
//! is measured by `benches/group_send.rs`; this shows what a whole warm send costs.
//!
//! Run: `cargo bench --bench client_send -- --warm-up-time 1 --measurement-time 3`

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rand::rngs::OsRng;
use waevent::client::{Client, ClientConfig, Event, Events, OutgoingMessage};
use waevent::event::EventCard;
use waevent::jid::Jid;
use waevent::noise::TrustRoot;
use waevent::sim::{GroupAddressing, GroupSpec, SimServer};
use waevent::store::MemoryStore;

async fn next(events: &mut Events, want: impl Fn(&Event) -> bool) -> Event {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .expect("event in time")
            .expect("event stream open");
        if want(&e) {
            return e;
        }
    }
}

/// A paired, logged-in client in a LID group with `members` simulated members of one
/// device each.
async fn setup(members: usize) -> (SimServer, Client, Jid) {
    let sim = SimServer::start(Default::default()).await.expect("sim");
    let phone = sim.create_account("5511977770001");
    let mut config = ClientConfig::for_server(sim.url(), TrustRoot::new(sim.trust_root()));
    config.iq_timeout = Duration::from_secs(10);
    let (client, mut events) = Client::new(Arc::new(MemoryStore::new()), config);
    client.connect().await.expect("connect");
    let Event::PairingQr { code, .. } =
        next(&mut events, |e| matches!(e, Event::PairingQr { .. })).await
    else {
        unreachable!()
    };
    phone.scan_qr(&code).await.expect("scan");
    next(&mut events, |e| matches!(e, Event::Connected)).await;
    next(&mut events, |e| matches!(e, Event::PreKeysUploaded { .. })).await;
    let group = sim
        .create_group(GroupSpec {
            subject: "Bench".into(),
            accounts: vec![phone.pn()],
            simulated_members: members,
            devices_per_member: 1..=1,
            addressing: GroupAddressing::Lid,
        })
        .expect("group");
    // Keep the event channel drained in the background.
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    (sim, client, group)
}

fn warm_send(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let card = EventCard::builder()
        .name("Standup")
        .start_unix(1_900_000_000)
        .build()
        .expect("card");
    let mut group = c.benchmark_group("client_send");
    group.sample_size(30);
    for members in [1usize, 16] {
        let (sim, client, chat) = rt.block_on(setup(members));
        // Cold send: distributes the sender key; everything after is warm.
        let (message, _) = card.to_message(&mut OsRng);
        rt.block_on(client.send_message(
            &chat,
            OutgoingMessage {
                message,
                ..OutgoingMessage::default()
            },
        ))
        .expect("cold send");
        group.bench_function(
            format!("warm_send_message_roundtrip_{members}_members"),
            |b| {
                b.iter(|| {
                    let (message, _) = card.to_message(&mut OsRng);
                    rt.block_on(client.send_message(
                        &chat,
                        OutgoingMessage {
                            message,
                            ..OutgoingMessage::default()
                        },
                    ))
                    .expect("warm send")
                })
            },
        );
        rt.block_on(client.disconnect());
        rt.block_on(sim.shutdown());
    }
    group.finish();
}

criterion_group!(benches, warm_send);
criterion_main!(benches);
