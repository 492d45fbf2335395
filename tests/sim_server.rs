//! The simulator's server side over real sockets, driven by a raw client made of the
//! crate's Noise and binary codecs: websocket upgrade rules, handshake and certificate
//! chain, registration (pair-device refs and their schedule), login success/failure,
//! keepalive, unknown IQs, stream errors on demand, replaced connections and abrupt
//! disconnects.

#![cfg(feature = "sim")]

mod sim_util;

use std::time::Duration;

use sim_util::{ConnectError, Keys, RawClient, iq, open_ws, refs_of};
use waevent::binary::Node;
use waevent::noise::{CertError, HandshakeError};
use waevent::signal::curve::KeyPair;
use waevent::sim::certs::ChainDefect;
use waevent::sim::qr::QrData;
use waevent::sim::stanza::{attr_jid, attr_text};
use waevent::sim::{QrSchedule, SimConfig, SimServer};

async fn sim() -> SimServer {
    SimServer::start(SimConfig::default()).await.unwrap()
}

/// A companion injected into `phone`'s account, logged in; returns its JID too.
async fn logged_in(sim: &SimServer, phone: &str) -> (RawClient, waevent::jid::Jid, Keys) {
    let account = sim.create_account(phone);
    let keys = Keys::generate();
    let jid = sim
        .inject_device(&account.pn(), keys.device_registration())
        .unwrap();
    let mut c = RawClient::connect(
        &sim.url(),
        sim.trust_root(),
        &keys.noise,
        &keys.login_payload(&jid),
    )
    .await
    .unwrap();
    let success = c.recv().await.unwrap();
    assert_eq!(success.tag, "success", "{success}");
    (c, jid, keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_chain_verifies_with_trust_root_and_nothing_else() {
    let sim = sim().await;
    let keys = Keys::generate();
    // The raw client verifies the chain against trust_root() inside process_server_hello.
    let mut c = RawClient::connect(
        &sim.url(),
        sim.trust_root(),
        &keys.noise,
        &keys.registration_payload(),
    )
    .await
    .expect("handshake with the simulator's root");
    assert_eq!(c.recv().await.unwrap().tag, "iq");

    let other_root = KeyPair::generate(&mut rand::rngs::OsRng).public;
    match RawClient::connect(
        &sim.url(),
        other_root,
        &keys.noise,
        &keys.registration_payload(),
    )
    .await
    {
        Err(ConnectError::Handshake(HandshakeError::Certificate(CertError::NotSignedByRoot {
            ..
        }))) => {}
        other => panic!("expected a certificate refusal, got {:?}", other.err()),
    }
    sim.shutdown().await;

    // A simulator configured to serve a broken chain is refused by the client.
    let broken = SimServer::start(SimConfig {
        chain_defect: Some(ChainDefect::LeafKeyMismatch),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    match RawClient::connect(
        &broken.url(),
        broken.trust_root(),
        &keys.noise,
        &keys.registration_payload(),
    )
    .await
    {
        Err(ConnectError::Handshake(HandshakeError::Certificate(CertError::LeafKeyMismatch {
            ..
        }))) => {}
        other => panic!("expected LeafKeyMismatch, got {:?}", other.err()),
    }
    broken.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_needs_the_chat_path_and_an_origin() {
    let sim = sim().await;
    let err = open_ws(&sim.url(), None).await.unwrap_err();
    assert!(err.contains("403"), "{err}");
    let wrong_path = sim.url().replace("/ws/chat", "/ws");
    let err = open_ws(&wrong_path, Some("https://web.whatsapp.com"))
        .await
        .unwrap_err();
    assert!(err.contains("404"), "{err}");
    assert!(
        open_ws(&sim.url(), Some("https://web.whatsapp.com"))
            .await
            .is_ok()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_preintro_and_byte_sized_chunks_are_accepted() {
    let sim = sim().await;
    let keys = Keys::generate();
    let mut c = RawClient::connect_with(
        &sim.url(),
        sim.trust_root(),
        &keys.noise,
        &keys.registration_payload(),
        Some(b"edge-routing-info"),
        1,
    )
    .await
    .unwrap();
    let first = c.recv().await.unwrap();
    assert_eq!(refs_of(&first).len(), 6);
    // Two IQs in one websocket message, then one IQ split into 3-byte messages.
    let ping = |id: &str| iq("w:p", "get", vec![]).attr("id", id);
    c.send_batched(&[ping("a"), ping("b")]).await;
    c.send_split(&ping("c"), 3).await;
    for want in ["a", "b", "c"] {
        let r = c.recv().await.unwrap();
        assert_eq!(attr_text(&r, "id").as_deref(), Some(want));
        assert_eq!(attr_text(&r, "type").as_deref(), Some("result"));
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_gets_pair_device_with_six_refs_and_next_qr_shows_the_first() {
    let sim = sim().await;
    let keys = Keys::generate();
    let mut c = RawClient::connect(
        &sim.url(),
        sim.trust_root(),
        &keys.noise,
        &keys.registration_payload(),
    )
    .await
    .unwrap();
    let pd = c.recv().await.unwrap();
    assert_eq!(pd.tag, "iq");
    assert_eq!(attr_text(&pd, "type").as_deref(), Some("set"));
    assert_eq!(attr_text(&pd, "xmlns").as_deref(), Some("md"));
    assert_eq!(attr_jid(&pd, "from"), Some(waevent::jid::Jid::server_jid()));
    let refs = refs_of(&pd);
    assert_eq!(refs.len(), 6);
    assert!(refs.iter().all(|r| r.starts_with("2@")));
    let mut unique = refs.clone();
    unique.dedup();
    assert_eq!(unique.len(), 6);
    // The client acknowledges pair-device.
    let id = attr_text(&pd, "id").unwrap().into_owned();
    c.send(
        &Node::new("iq")
            .attr("id", id.as_str())
            .attr("type", "result"),
    )
    .await;

    let qr = QrData::parse(&sim.next_qr(Duration::from_secs(5)).await.unwrap()).unwrap();
    assert_eq!(qr.reference, refs[0]);
    assert_eq!(qr.noise_key, keys.noise.public);
    assert_eq!(qr.identity_key, keys.identity.key_pair.public);
    assert_eq!(
        qr.adv_secret, None,
        "the simulator cannot know the ADV secret"
    );
    assert_eq!(qr.client_type.as_deref(), Some("1"), "Chrome");
    assert!(
        sim.protocol_errors().is_empty(),
        "{:?}",
        sim.protocol_errors()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refs_rotate_on_schedule_and_the_server_closes_when_they_run_out() {
    let sim = SimServer::start(SimConfig {
        qr: QrSchedule {
            count: 3,
            first: Duration::from_millis(600),
            next: Duration::from_millis(300),
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let keys = Keys::generate();
    let start = std::time::Instant::now();
    let mut c = RawClient::connect(
        &sim.url(),
        sim.trust_root(),
        &keys.noise,
        &keys.registration_payload(),
    )
    .await
    .unwrap();
    let refs = refs_of(&c.recv().await.unwrap());
    assert_eq!(refs.len(), 3);
    let current = || async {
        QrData::parse(&sim.next_qr(Duration::ZERO).await.unwrap())
            .unwrap()
            .reference
    };
    assert_eq!(current().await, refs[0]);
    tokio::time::sleep(Duration::from_millis(750)).await;
    assert_eq!(current().await, refs[1]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(current().await, refs[2]);
    assert_eq!(c.next_close_kind().await, "close-frame");
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(1200), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert!(sim.next_qr(Duration::from_millis(50)).await.is_err());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_of_unknown_removed_or_impostor_devices_get_failure_401() {
    let sim = sim().await;
    let phone = sim.create_account("+1 (555) 000-2222");
    assert_eq!(phone.pn().user, "15550002222");
    let keys = Keys::generate();
    let jid = phone.pn().with_device(7);
    // Unknown device.
    let mut c = RawClient::connect(
        &sim.url(),
        sim.trust_root(),
        &keys.noise,
        &keys.login_payload(&jid),
    )
    .await
    .unwrap();
    let f = c.recv().await.unwrap();
    assert_eq!(f.tag, "failure");
    assert_eq!(attr_text(&f, "reason").as_deref(), Some("401"));
    assert!(c.recv().await.is_none(), "closed after the failure");
    // Unknown account.
    let stranger = waevent::jid::Jid::pn_user("19990000000").with_device(1);
    let mut c = RawClient::connect(
        &sim.url(),
        sim.trust_root(),
        &keys.noise,
        &keys.login_payload(&stranger),
    )
    .await
    .unwrap();
    assert_eq!(
        attr_text(&c.recv().await.unwrap(), "reason").as_deref(),
        Some("401")
    );
    // A registered device, but another Noise key.
    let jid = sim
        .inject_device(&phone.pn(), keys.device_registration())
        .unwrap();
    let impostor = KeyPair::generate(&mut rand::rngs::OsRng);
    let mut c = RawClient::connect(
        &sim.url(),
        sim.trust_root(),
        &impostor,
        &keys.login_payload(&jid),
    )
    .await
    .unwrap();
    assert_eq!(
        attr_text(&c.recv().await.unwrap(), "reason").as_deref(),
        Some("401")
    );
    // Removed device.
    assert!(sim.remove_device(&jid));
    let mut c = RawClient::connect(
        &sim.url(),
        sim.trust_root(),
        &keys.noise,
        &keys.login_payload(&jid),
    )
    .await
    .unwrap();
    assert_eq!(
        attr_text(&c.recv().await.unwrap(), "reason").as_deref(),
        Some("401")
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_device_logs_in_with_success_t_and_its_lid() {
    let sim = sim().await;
    let phone = sim.create_account("15550003333");
    let keys = Keys::generate();
    let jid = sim
        .inject_device(&phone.pn(), keys.device_registration())
        .unwrap();
    assert_eq!(jid.device, 1);
    let mut c = RawClient::connect(
        &sim.url(),
        sim.trust_root(),
        &keys.noise,
        &keys.login_payload(&jid),
    )
    .await
    .unwrap();
    let s = c.recv().await.unwrap();
    assert_eq!(s.tag, "success");
    assert_eq!(attr_jid(&s, "lid"), Some(phone.lid().with_device(1)));
    let t: u64 = attr_text(&s, "t").unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(t.abs_diff(now) < 60);
    // <active/> → result, then the (empty) offline backlog end marker.
    let r = c.iq(iq("passive", "set", vec![Node::new("active")])).await;
    assert_eq!(attr_text(&r, "type").as_deref(), Some("result"));
    let ib = c.recv().await.unwrap();
    assert_eq!(ib.tag, "ib");
    assert_eq!(
        ib.child_by_tag("offline")
            .and_then(|o| attr_text(o, "count"))
            .as_deref(),
        Some("0")
    );
    let devices = sim.registered_devices(&phone.lid());
    assert_eq!(devices.len(), 2);
    assert!(devices[1].connected && !devices[0].connected);
    assert_eq!(devices[1].identity, keys.identity.key_pair.public);
    assert_eq!(devices[1].registration_id, keys.identity.registration_id);
    assert!(
        sim.protocol_errors().is_empty(),
        "{:?}",
        sim.protocol_errors()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_is_answered_and_recorded_and_unknown_iqs_get_501() {
    let sim = sim().await;
    let (mut c, jid, _) = logged_in(&sim, "15550004444").await;
    assert_eq!(c.last_flags, 0, "uncompressed unless configured");
    let before = sim.last_activity(&jid).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..3 {
        let r = c.iq(iq("w:p", "get", vec![])).await;
        assert_eq!(attr_text(&r, "type").as_deref(), Some("result"));
        assert_eq!(attr_jid(&r, "from"), Some(waevent::jid::Jid::server_jid()));
    }
    // Baileys' variant with a <ping/> child, and the XMPP ping.
    let r = c.iq(iq("w:p", "get", vec![Node::new("ping")])).await;
    assert_eq!(attr_text(&r, "type").as_deref(), Some("result"));
    let r = c.iq(iq("urn:xmpp:ping", "get", vec![])).await;
    assert_eq!(attr_text(&r, "type").as_deref(), Some("result"));
    assert_eq!(sim.pings_answered(&jid), 5);
    assert!(sim.last_activity(&jid).unwrap() > before);

    let r = c.iq(iq("w:mex", "get", vec![Node::new("query")])).await;
    assert_eq!(attr_text(&r, "type").as_deref(), Some("error"));
    let e = r.child_by_tag("error").unwrap();
    assert_eq!(attr_text(e, "code").as_deref(), Some("501"));
    assert_eq!(
        attr_text(e, "text").as_deref(),
        Some("feature-not-implemented")
    );
    // A receipt is acked with its class, id and type.
    c.send(
        &Node::new("receipt")
            .attr("id", "ABC")
            .attr("to", waevent::jid::Jid::pn_user("15550009999"))
            .attr("type", "read"),
    )
    .await;
    let ack = c.recv().await.unwrap();
    assert_eq!(ack.tag, "ack");
    assert_eq!(attr_text(&ack, "class").as_deref(), Some("receipt"));
    assert_eq!(attr_text(&ack, "id").as_deref(), Some("ABC"));
    assert_eq!(attr_text(&ack, "type").as_deref(), Some("read"));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_errors_on_demand_end_the_connection() {
    let sim = sim().await;
    for (code, conflict) in [
        ("515", None),
        ("503", None),
        ("401", Some("device_removed")),
    ] {
        let (mut c, jid, _) = logged_in(&sim, "15550005555").await;
        sim.stream_error(&jid, code, conflict).await;
        let e = c.recv().await.unwrap();
        assert_eq!(e.tag, "stream:error");
        assert_eq!(attr_text(&e, "code").as_deref(), Some(code));
        assert_eq!(
            e.child_by_tag("conflict")
                .and_then(|n| attr_text(n, "type"))
                .map(|s| s.into_owned()),
            conflict.map(str::to_owned)
        );
        assert!(c.recv().await.is_none());
    }
    // An <ack> child (server still waits for a transport ack).
    let (mut c, jid, _) = logged_in(&sim, "15550005555").await;
    sim.stream_error_node(
        &jid,
        waevent::sim::stanza::stream_error(
            None,
            Some(Node::new("ack").attr("id", "X").attr("class", "message")),
        ),
    )
    .await;
    let e = c.recv().await.unwrap();
    assert_eq!(
        e.child_by_tag("ack")
            .and_then(|a| attr_text(a, "id"))
            .as_deref(),
        Some("X")
    );
    assert_eq!(sim.connection_count(), 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_connected_device_sends_device_removed_and_blocks_later_logins() {
    let sim = sim().await;
    let (mut c, jid, keys) = logged_in(&sim, "15550006666").await;
    assert!(sim.remove_device(&jid));
    let e = c.recv().await.unwrap();
    assert_eq!(attr_text(&e, "code").as_deref(), Some("401"));
    assert_eq!(
        e.child_by_tag("conflict")
            .and_then(|n| attr_text(n, "type"))
            .as_deref(),
        Some("device_removed")
    );
    assert!(c.recv().await.is_none());
    let mut again = RawClient::connect(
        &sim.url(),
        sim.trust_root(),
        &keys.noise,
        &keys.login_payload(&jid),
    )
    .await
    .unwrap();
    let f = again.recv().await.unwrap();
    assert_eq!(
        (f.tag.as_ref(), attr_text(&f, "reason").as_deref()),
        ("failure", Some("401"))
    );
    assert!(
        sim.registered_devices(&jid)
            .iter()
            .any(|d| d.jid == jid && d.removed)
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_of_the_same_device_replaces_the_first() {
    let sim = sim().await;
    let (mut first, jid, keys) = logged_in(&sim, "15550007777").await;
    let mut second = RawClient::connect(
        &sim.url(),
        sim.trust_root(),
        &keys.noise,
        &keys.login_payload(&jid),
    )
    .await
    .unwrap();
    assert_eq!(second.recv().await.unwrap().tag, "success");
    let e = first.recv().await.unwrap();
    assert_eq!(e.tag, "stream:error");
    assert_eq!(
        e.child_by_tag("conflict")
            .and_then(|n| attr_text(n, "type"))
            .as_deref(),
        Some("replaced")
    );
    assert!(first.recv().await.is_none());
    // The second one still works.
    let r = second.iq(iq("w:p", "get", vec![])).await;
    assert_eq!(attr_text(&r, "type").as_deref(), Some("result"));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_cuts_the_socket_without_a_close_frame() {
    let sim = sim().await;
    let (mut c, jid, _) = logged_in(&sim, "15550008888").await;
    sim.disconnect(&jid).await;
    let kind = c.next_close_kind().await;
    assert!(kind == "error" || kind == "eof", "{kind}");
    assert_eq!(sim.connection_count(), 0);
    assert!(!sim.registered_devices(&jid)[1].connected);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_frames_when_configured() {
    let sim = SimServer::start(SimConfig {
        compress_outgoing: true,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    // The raw client's unmarshal inflates flag-0x02 frames.
    let (mut c, _, _) = logged_in(&sim, "15550001010").await;
    let r = c.iq(iq("w:p", "get", vec![])).await;
    assert_eq!(attr_text(&r, "type").as_deref(), Some("result"));
    assert_eq!(c.last_flags, waevent::binary::FLAG_COMPRESSED);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_nodes_get_xml_not_well_formed() {
    let sim = sim().await;
    let (mut c, _, _) = logged_in(&sim, "15550001212").await;
    // A frame whose plaintext is not a node: flags byte then nonsense.
    c.send_raw_plaintext(&[0, 0xFF, 0xFF, 0xFF]).await;
    let e = c.recv().await.unwrap();
    assert_eq!(e.tag, "stream:error");
    assert!(e.child_by_tag("xml-not-well-formed").is_some());
    assert!(c.recv().await.is_none());
    assert_eq!(
        sim.protocol_errors().len(),
        1,
        "{:?}",
        sim.protocol_errors()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_connections_and_stops_listening() {
    let sim = sim().await;
    let (mut c, _, _) = logged_in(&sim, "15550001313").await;
    let url = sim.url();
    let keys = Keys::generate();
    let mut registering = RawClient::connect(
        &url,
        sim.trust_root(),
        &keys.noise,
        &keys.registration_payload(),
    )
    .await
    .unwrap();
    registering.recv().await.unwrap();
    sim.shutdown().await;
    assert_eq!(c.next_close_kind().await, "close-frame");
    assert!(
        open_ws(&url, Some("https://web.whatsapp.com"))
            .await
            .is_err()
    );
}
