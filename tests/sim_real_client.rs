//! The real `waevent::client::Client` against the simulator, seen from the server side:
//! pairing by QR and by code goes through the simulated phone, the client never trips
//! the simulator's protocol checks, its prekeys land in the server pool, a low-count
//! notification makes it upload more, a 503 stream error makes it reconnect, and
//! unlinking it from the phone logs it out.

#![cfg(feature = "sim")]

use std::sync::Arc;
use std::time::Duration;

use waevent::client::{Client, ClientConfig, Event, Events};
use waevent::jid::Jid;
use waevent::noise::TrustRoot;
use waevent::sim::{SimConfig, SimServer};
use waevent::store::MemoryStore;

const WAIT: Duration = Duration::from_secs(60);

fn client(sim: &SimServer) -> (Client, Events) {
    let mut config = ClientConfig::for_server(sim.url(), TrustRoot::new(sim.trust_root()));
    config.backoff.initial = Duration::from_millis(50);
    config.backoff.max = Duration::from_millis(400);
    Client::new(Arc::new(MemoryStore::new()), config)
}

async fn next(events: &mut Events, what: &str, want: impl Fn(&Event) -> bool) -> Event {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) if want(&e) => return e,
            Ok(Some(e)) => seen.push(format!("{e:?}")),
            _ => panic!("no {what} within {WAIT:?}; events seen: {seen:#?}"),
        }
    }
}

/// Waits until the server pool of `device` satisfies `want`.
async fn pool(sim: &SimServer, device: &Jid, want: impl Fn(usize) -> bool) -> usize {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let n = sim
            .registered_devices(device)
            .into_iter()
            .find(|d| d.jid == *device)
            .map_or(0, |d| d.prekeys_left);
        if want(n) || std::time::Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_client_pairs_by_qr_keeps_its_prekeys_up_reconnects_and_is_unlinked() {
    let sim = SimServer::start(SimConfig::default()).await.unwrap();
    let phone = sim.create_account("15554440001");
    let (client, mut events) = client(&sim);
    client.connect().await.unwrap();
    let Event::PairingQr { code, .. } =
        next(&mut events, "QR", |e| matches!(e, Event::PairingQr { .. })).await
    else {
        unreachable!()
    };
    let device = phone
        .scan_qr(&code)
        .await
        .expect("the phone pairs the real client");
    next(&mut events, "login after 515", |e| {
        matches!(e, Event::Connected)
    })
    .await;
    assert_eq!(client.own_jid().await, Some(device.clone()));
    let after_upload = pool(&sim, &device, |n| n > 0).await;
    assert!(
        after_upload >= 5,
        "client uploaded prekeys after login: {after_upload}"
    );

    // The pool runs low: the notification makes the client upload again.
    sim.with_world(|w| {
        if let Some(d) = w.device_mut(&device) {
            d.prekeys.truncate(2);
        }
    });
    assert_eq!(sim.force_low_prekey_notification(&device), 1);
    let refilled = pool(&sim, &device, |n| n > 2).await;
    assert!(
        refilled > 2,
        "client refilled after the low-count notification: {refilled}"
    );
    assert!(
        sim.unacked_notifications(&device).is_empty(),
        "client acked the notification"
    );

    // 503: the client comes back by itself.
    sim.stream_error(&device, "503", None).await;
    next(&mut events, "reconnect after 503", |e| {
        matches!(e, Event::Connected)
    })
    .await;
    assert!(sim.registered_devices(&device)[1].connected);

    // Unlinked from the phone: logged out, and it stays out.
    assert!(sim.remove_device(&device));
    next(&mut events, "logout", |e| {
        matches!(e, Event::LoggedOut { .. })
    })
    .await;
    assert!(client.own_jid().await.is_none(), "store cleared");
    assert!(
        sim.protocol_errors().is_empty(),
        "{:?}",
        sim.protocol_errors()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_client_pairs_by_code_through_the_simulated_phone() {
    let sim = SimServer::start(SimConfig::default()).await.unwrap();
    let phone = sim.create_account("15554440002");
    let (client, mut events) = client(&sim);
    client.connect().await.unwrap();
    next(&mut events, "QR", |e| matches!(e, Event::PairingQr { .. })).await;
    let code = client
        .pair_phone("+1 555 444 0002")
        .await
        .expect("companion_hello");
    assert_eq!(code.len(), 9, "XXXX-XXXX: {code}");
    let device = phone
        .enter_pairing_code(&code)
        .await
        .expect("the phone accepts the code");
    next(&mut events, "login after 515", |e| {
        matches!(e, Event::Connected)
    })
    .await;
    assert_eq!(client.own_jid().await, Some(device.clone()));
    assert_eq!(device, phone.pn().with_device(1));
    assert!(
        sim.protocol_errors().is_empty(),
        "{:?}",
        sim.protocol_errors()
    );
    client.disconnect().await;
    sim.shutdown().await;
}
