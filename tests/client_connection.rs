//! The connection's life against the simulator: reconnects (cut connection, 503,
//! missing-ack stream error), logout on 401 (stream error and login failure), replaced
//! streams, keepalive, prekey replenishment, IQ errors and timeouts, graceful
//! shutdown, and certificate chains the client must refuse.

mod client_support;

use std::sync::Arc;
use std::time::Duration;

use waevent::binary::Node;
use waevent::client::prekeys::server_iq;
use waevent::client::{
    Client, ClientError, ConnectError, ConnectionState, DisconnectReason, Event, IqError,
    LogoutReason,
};
use waevent::jid::Jid;
use waevent::noise::{CertError, HandshakeError, TrustRoot};
use waevent::signal::curve::KeyPair;
use waevent::sim::certs::ChainDefect;
use waevent::sim::{SimConfig, SimServer};
use waevent::store::{MemoryStore, Store};

use client_support::*;

/// A simulator, an account and a client paired with it (logged in, prekeys uploaded).
async fn paired(
    phone_number: &str,
) -> (
    SimServer,
    Client,
    waevent::client::Events,
    Jid,
    Arc<dyn Store>,
) {
    let sim = start_sim().await;
    let phone = sim.create_account(phone_number);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (client, mut events) = Client::new(store.clone(), client_config(&sim));
    let device = pair_by_qr(&client, &mut events, &phone).await;
    (sim, client, events, device, store)
}

/// Waits until the simulator sees `n` logged-in connections of `device`.
async fn wait_connected_on_server(sim: &SimServer, device: &Jid) {
    for _ in 0..500 {
        if sim
            .registered_devices(device)
            .iter()
            .any(|d| &d.jid == device && d.connected)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{device} never showed up as connected on the server");
}

#[tokio::test]
async fn reconnects_after_the_connection_is_cut_and_after_server_errors() {
    let (sim, client, mut events, device, _store) = paired("5511988880001").await;

    // Abrupt TCP cut.
    sim.disconnect(&device).await;
    match wait_for(&mut events, "disconnect", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await
    {
        Event::Disconnected {
            reason: DisconnectReason::Socket(_),
            will_reconnect: true,
        } => {}
        other => panic!("unexpected {other:?}"),
    }
    wait_for(&mut events, "reconnect", |e| matches!(e, Event::Connected)).await;
    wait_connected_on_server(&sim, &device).await;

    // 503: the server restarts; reconnect with backoff.
    sim.stream_error(&device, "503", None).await;
    match wait_for(&mut events, "disconnect", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await
    {
        Event::Disconnected {
            reason: DisconnectReason::StreamError { code, .. },
            will_reconnect: true,
        } => assert_eq!(code, "503"),
        other => panic!("unexpected {other:?}"),
    }
    wait_for(&mut events, "reconnect", |e| matches!(e, Event::Connected)).await;
    wait_connected_on_server(&sim, &device).await;

    // The server still waits for an ack: ack and reconnect.
    let ack_error = Node::new("stream:error").child(
        Node::new("ack")
            .attr("id", "X1")
            .attr("class", "receipt")
            .attr("from", Jid::server_jid()),
    );
    sim.stream_error_node(&device, ack_error).await;
    wait_for(&mut events, "disconnect", |e| {
        matches!(
            e,
            Event::Disconnected {
                will_reconnect: true,
                ..
            }
        )
    })
    .await;
    wait_for(&mut events, "reconnect", |e| matches!(e, Event::Connected)).await;

    // 515 outside pairing: restart at once, no Disconnected event.
    wait_connected_on_server(&sim, &device).await;
    sim.stream_error(&device, "515", None).await;
    let seen = wait_for(&mut events, "reconnect", |e| {
        matches!(e, Event::Connected | Event::Disconnected { .. })
    })
    .await;
    assert_eq!(seen, Event::Connected);
    assert_eq!(client.state(), ConnectionState::LoggedIn);
    assert!(
        sim.protocol_errors().is_empty(),
        "{:?}",
        sim.protocol_errors()
    );
    client.disconnect().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn device_removed_logs_out_clears_the_store_and_stays_down() {
    let (sim, client, mut events, device, store) = paired("5511988880002").await;
    assert!(sim.remove_device(&device));
    match wait_for(&mut events, "logout", |e| {
        matches!(e, Event::LoggedOut { .. })
    })
    .await
    {
        Event::LoggedOut {
            reason: LogoutReason::DeviceRemoved { message },
        } => assert!(message.contains("401"), "{message}"),
        other => panic!("unexpected {other:?}"),
    }
    match wait_for(&mut events, "disconnect", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await
    {
        Event::Disconnected {
            reason: DisconnectReason::LoggedOut,
            will_reconnect: false,
        } => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        store.load_credentials().await.unwrap().is_none(),
        "store cleared"
    );
    assert_eq!(store.prekey_count().await.unwrap(), 0, "prekeys cleared");
    let later = drain(&mut events, Duration::from_millis(700)).await;
    assert!(later.is_empty(), "no reconnect after logout: {later:?}");
    assert_eq!(client.state(), ConnectionState::Disconnected);
    assert_eq!(sim.connection_count(), 0);
    client.disconnect().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_401_login_failure_logs_out() {
    let (sim, client, mut events, device, store) = paired("5511988880003").await;
    client.disconnect().await;
    wait_for(&mut events, "disconnect", |e| {
        matches!(
            e,
            Event::Disconnected {
                reason: DisconnectReason::Requested,
                will_reconnect: false
            }
        )
    })
    .await;
    assert!(sim.remove_device(&device));
    client.connect().await.unwrap();
    match wait_for(&mut events, "logout", |e| {
        matches!(e, Event::LoggedOut { .. })
    })
    .await
    {
        Event::LoggedOut {
            reason: LogoutReason::LoginFailure { reason, .. },
        } => assert_eq!(reason, 401),
        other => panic!("unexpected {other:?}"),
    }
    assert!(store.load_credentials().await.unwrap().is_none());
    let later = drain(&mut events, Duration::from_millis(500)).await;
    assert!(
        !later.iter().any(|e| matches!(e, Event::Connected)),
        "{later:?}"
    );
    // A new connect starts over as a new, unpaired device.
    client.connect().await.unwrap();
    wait_for(&mut events, "a QR for the new registration", |e| {
        matches!(e, Event::PairingQr { .. })
    })
    .await;
    client.disconnect().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_replaced_stream_stops_without_fighting() {
    let (sim, client, mut events, device, store) = paired("5511988880004").await;
    sim.stream_error(&device, "", Some("replaced")).await;
    wait_for(&mut events, "stream replaced", |e| {
        matches!(e, Event::StreamReplaced)
    })
    .await;
    match wait_for(&mut events, "disconnect", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await
    {
        Event::Disconnected {
            reason: DisconnectReason::Replaced,
            will_reconnect: false,
        } => {}
        other => panic!("unexpected {other:?}"),
    }
    let later = drain(&mut events, Duration::from_millis(500)).await;
    assert!(later.is_empty(), "{later:?}");
    assert!(
        store.load_credentials().await.unwrap().is_some(),
        "still paired"
    );
    client.disconnect().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn keepalive_pings_are_answered_and_low_prekeys_are_replenished() {
    let (sim, client, mut events, device, store) = paired("5511988880005").await;
    let quiet = drain(&mut events, Duration::from_millis(1200)).await;
    assert!(
        !quiet
            .iter()
            .any(|e| matches!(e, Event::KeepAliveTimeout { .. })),
        "{quiet:?}"
    );
    assert!(
        sim.pings_answered(&device) >= 3,
        "pings: {}",
        sim.pings_answered(&device)
    );

    let before = store.prekey_count().await.unwrap();
    assert_eq!(sim.force_low_prekey_notification(&device), 1);
    wait_for(&mut events, "replenishment", |e| {
        matches!(e, Event::PreKeysUploaded { count: 50 })
    })
    .await;
    assert_eq!(store.prekey_count().await.unwrap(), before + 50);
    let info = sim
        .registered_devices(&device)
        .into_iter()
        .find(|d| d.jid == device)
        .unwrap();
    assert_eq!(info.prekeys_left, 812 + 50);
    // The notification was acked.
    for _ in 0..100 {
        if sim.unacked_notifications(&device).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(sim.unacked_notifications(&device).is_empty());
    assert!(
        sim.protocol_errors().is_empty(),
        "{:?}",
        sim.protocol_errors()
    );
    client.disconnect().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn iq_errors_timeouts_and_graceful_disconnect() {
    let (sim, client, mut events, device, _store) = paired("5511988880006").await;
    // The server answers what it does not know with 501.
    let err = client
        .send_iq(server_iq(
            "waevent:unknown",
            "get",
            vec![Node::new("nothing")],
        ))
        .await
        .unwrap_err();
    match err {
        IqError::Server { code, text, .. } => {
            assert_eq!(code, 501);
            assert_eq!(text, "feature-not-implemented");
        }
        other => panic!("unexpected {other:?}"),
    }
    // Not a request.
    assert!(matches!(
        client.send_iq(Node::new("iq").attr("type", "result")).await,
        Err(IqError::NotARequest(_))
    ));
    // No answer in time: the response to this ping carries another id than the one
    // waited for.
    let ping = server_iq("w:p", "get", vec![]).attr("id", "ping-1");
    let err = client
        .send_and_wait(&ping, "nobody-answers-this", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, IqError::Timeout { .. }), "{err:?}");
    // A good one.
    let pong = client
        .send_iq(server_iq("w:p", "get", vec![]))
        .await
        .unwrap();
    assert_eq!(pong.attr_str("type"), Some("result"));

    client.disconnect().await;
    match wait_for(&mut events, "disconnect", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await
    {
        Event::Disconnected {
            reason: DisconnectReason::Requested,
            will_reconnect: false,
        } => {}
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(client.state(), ConnectionState::Disconnected);
    assert!(matches!(
        client.send_iq(server_iq("w:p", "get", vec![])).await,
        Err(IqError::NotConnected)
    ));
    for _ in 0..100 {
        if sim.connection_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim.connection_count(), 0, "the websocket was closed");
    assert!(!sim.registered_devices(&device).iter().any(|d| d.connected));
    let later = drain(&mut events, Duration::from_millis(300)).await;
    assert!(later.is_empty(), "{later:?}");
    // Disconnecting twice is harmless; connecting again works.
    client.disconnect().await;
    client.connect().await.unwrap();
    wait_for(&mut events, "login", |e| matches!(e, Event::Connected)).await;
    assert!(matches!(
        client.connect().await,
        Err(ClientError::AlreadyConnected)
    ));
    client.disconnect().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn pending_iqs_fail_when_the_connection_drops() {
    let (sim, client, mut events, device, _store) = paired("5511988880007").await;
    // Cut the connection while an IQ that the server never answers is pending.
    let pending = {
        let client = client.clone();
        tokio::spawn(async move {
            // The server answers every iq: wait for an id no response carries.
            let ping = server_iq("w:p", "get", vec![]).attr("id", "ping-2");
            client
                .send_and_wait(&ping, "never-answered", Duration::from_secs(20))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    sim.disconnect(&device).await;
    let result = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the waiter is released at once")
        .unwrap();
    assert!(
        matches!(result, Err(IqError::Disconnected { .. })),
        "{result:?}"
    );
    wait_for(&mut events, "reconnect", |e| matches!(e, Event::Connected)).await;
    client.disconnect().await;
    sim.shutdown().await;
}

/// Connecting to a simulator serving `defect` fails with a certificate error.
async fn refused(defect: Option<ChainDefect>, root: Option<TrustRoot>) -> (CertError, String) {
    let sim = start_sim_with(SimConfig {
        chain_defect: defect,
        ..SimConfig::default()
    })
    .await;
    let mut config = client_config(&sim);
    if let Some(r) = root {
        config.trust_root = r;
    }
    let (client, mut events) = Client::new(Arc::new(MemoryStore::new()), config);
    let err = client.connect().await.expect_err("the chain is refused");
    let message = err.to_string();
    let cert = match err {
        ClientError::Connect(ConnectError::Handshake {
            source: HandshakeError::Certificate(c),
            ..
        }) => c,
        other => panic!("{defect:?}: not a certificate error: {other:?}"),
    };
    assert_eq!(client.state(), ConnectionState::Disconnected);
    assert!(events.try_recv().is_none(), "nothing keeps running");
    assert_eq!(sim.connection_count(), 0);
    sim.shutdown().await;
    (cert, message)
}

#[tokio::test]
async fn certificate_failures_are_refused_with_clear_errors() {
    let other_root = TrustRoot::new(KeyPair::generate(&mut rand::rngs::OsRng).public);
    let cases: Vec<(&str, Option<ChainDefect>, Option<TrustRoot>, &str)> = vec![
        (
            "wrong root (client trusts another key)",
            None,
            Some(other_root),
            "intermediate",
        ),
        (
            "intermediate signed by another root",
            Some(ChainDefect::WrongRoot),
            None,
            "intermediate",
        ),
        ("expired leaf", Some(ChainDefect::ExpiredLeaf), None, "leaf"),
        (
            "expired intermediate",
            Some(ChainDefect::ExpiredIntermediate),
            None,
            "intermediate",
        ),
        (
            "leaf not yet valid",
            Some(ChainDefect::LeafNotYetValid),
            None,
            "leaf",
        ),
        (
            "leaf key is not the static key",
            Some(ChainDefect::LeafKeyMismatch),
            None,
            "static",
        ),
        (
            "bad leaf signature",
            Some(ChainDefect::CorruptLeafSignature),
            None,
            "leaf",
        ),
        (
            "bad intermediate signature",
            Some(ChainDefect::CorruptIntermediateSignature),
            None,
            "intermediate",
        ),
        (
            "leaf issuer serial",
            Some(ChainDefect::LeafIssuerSerialMismatch),
            None,
            "serial",
        ),
        (
            "intermediate issuer serial",
            Some(ChainDefect::IntermediateIssuerSerialNonZero),
            None,
            "serial",
        ),
    ];
    for (what, defect, root, must_mention) in cases {
        let (cert, message) = refused(defect, root).await;
        let lower = message.to_lowercase();
        assert!(
            lower.contains("certificate") && lower.contains(must_mention),
            "{what}: unclear error {message:?} ({cert:?})"
        );
    }
}

#[tokio::test]
async fn a_valid_chain_under_the_right_root_is_accepted_and_nothing_else_can_skip_it() {
    // The default configuration trusts WhatsApp's root, so the simulator is refused
    // unless its root is configured: there is no switch to skip verification.
    let sim = start_sim().await;
    let mut config = client_config(&sim);
    config.trust_root = TrustRoot::default();
    let (client, _events) = Client::new(Arc::new(MemoryStore::new()), config);
    let err = client.connect().await.unwrap_err().to_string();
    assert!(err.contains("certificate"), "{err}");
    let (client, mut events) = Client::new(Arc::new(MemoryStore::new()), client_config(&sim));
    client.connect().await.unwrap();
    wait_for(&mut events, "QR", |e| matches!(e, Event::PairingQr { .. })).await;
    client.disconnect().await;
    sim.shutdown().await;
}
