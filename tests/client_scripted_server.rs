//! Connection behaviour that needs a server doing what the simulator never does: going
//! silent (keepalive deadline and forced reconnect), pinging the client
//! (`urn:xmpp:ping`), sending an IQ the client does not know, ending the stream with
//! `<xmlstreamend/>`, and handing out edge routing info (the `ED` pre-intro of the next
//! connection). The server here is the simulator's own Noise responder and certificate
//! minting driven step by step by each test.

mod client_support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use waevent::binary::{Node, marshal, unmarshal};
use waevent::client::{
    BackoffConfig, Client, ClientConfig, DisconnectReason, Event, KeepAliveConfig,
};
use waevent::jid::Jid;
use waevent::noise::{IncomingCipher, OutgoingCipher, TrustRoot};
use waevent::signal::curve::KeyPair;
use waevent::sim::certs::{SimCertAuthority, Validity};
use waevent::sim::handshake::{ServerFrameReader, accept_client_hello};
use waevent::store::{DeviceCredentials, MemoryStore, Store};

use client_support::*;

/// A websocket server with a valid certificate chain that the test scripts by hand.
struct ScriptedServer {
    listener: TcpListener,
    root: TrustRoot,
    server_static: KeyPair,
    chain: Vec<u8>,
}

/// One accepted, handshaken connection.
struct Conn {
    ws: WebSocketStream<TcpStream>,
    reader: ServerFrameReader,
    outgoing: OutgoingCipher,
    incoming: IncomingCipher,
    /// Routing info the client put in front of its header.
    routing_info: Option<Vec<u8>>,
    /// Login username from the ClientPayload.
    username: Option<u64>,
}

impl ScriptedServer {
    async fn start() -> Self {
        let mut rng = rand::rngs::OsRng;
        let ca = SimCertAuthority::generate(&mut rng);
        let server_static = KeyPair::generate(&mut rng);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let chain = ca.chain_bytes(
            &server_static.public,
            Validity::days_around(now, 1),
            &mut rng,
        );
        ScriptedServer {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            root: ca.trust_root(),
            server_static,
            chain,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/ws/chat", self.listener.local_addr().unwrap())
    }

    /// Accepts the next client and runs the responder side of the handshake.
    async fn accept(&self) -> Conn {
        let (tcp, _) = tokio::time::timeout(EVENT_TIMEOUT, self.listener.accept())
            .await
            .expect("a client connects")
            .unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let mut reader = ServerFrameReader::new();
        let mut frames = Vec::new();
        while frames.is_empty() {
            let Some(Ok(Message::Binary(chunk))) = ws.next().await else {
                panic!("client went away during the handshake");
            };
            frames = reader.push(&chunk).unwrap();
        }
        let (waiting, hello) = accept_client_hello(
            &frames[0],
            &self.server_static,
            &self.chain,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        ws.send(Message::Binary(hello.into())).await.unwrap();
        let mut frames = Vec::new();
        while frames.is_empty() {
            let Some(Ok(Message::Binary(chunk))) = ws.next().await else {
                panic!("client went away during the handshake");
            };
            frames = reader.push(&chunk).unwrap();
        }
        let accepted = waiting.process_client_finish(&frames[0]).unwrap();
        let (outgoing, incoming) = accepted.transport.into_halves();
        Conn {
            routing_info: reader.routing_info().map(<[u8]>::to_vec),
            ws,
            reader,
            outgoing,
            incoming,
            username: accepted.payload.username,
        }
    }
}

impl Conn {
    async fn send(&mut self, node: &Node) {
        let frame = self
            .outgoing
            .encrypt_frame(&marshal(node).unwrap())
            .unwrap();
        self.ws.send(Message::Binary(frame.into())).await.unwrap();
    }

    /// The next stanza from the client, or `None` when it closed or `within` passed.
    async fn recv(&mut self, within: Duration) -> Option<Node> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            let Ok(Message::Binary(chunk)) = msg else {
                return None;
            };
            if let Some(frame) = self.reader.push(&chunk).unwrap().into_iter().next() {
                let plain = self.incoming.decrypt_frame(&frame).unwrap();
                return Some(unmarshal(&plain).unwrap());
            }
        }
    }

    /// Reads stanzas until one matches (failing after `within`).
    async fn expect(&mut self, within: Duration, what: &str, want: impl Fn(&Node) -> bool) -> Node {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Some(n) if want(&n) => return n,
                Some(_) => {}
                None => panic!("no {what} from the client"),
            }
        }
    }
}

/// A paired device's credentials (the scripted server does not check them).
fn paired_store() -> Arc<dyn Store> {
    let mut creds = DeviceCredentials::generate(&mut rand::rngs::OsRng);
    creds.pn = Some(Jid::parse("5511966660001:4@s.whatsapp.net").unwrap());
    creds.lid = Some(Jid::parse("99990001:4@lid").unwrap());
    Arc::new(MemoryStore::with_credentials(creds).unwrap())
}

fn config(server: &ScriptedServer) -> ClientConfig {
    let mut c = ClientConfig::for_server(server.url(), server.root);
    c.keepalive = KeepAliveConfig {
        interval_min: Duration::from_millis(100),
        interval_max: Duration::from_millis(150),
        response_deadline: Duration::from_millis(200),
        max_fail_time: Duration::from_millis(900),
    };
    c.backoff = BackoffConfig {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
        multiplier: 2,
        rate_limit_factor: 2,
    };
    c.iq_timeout = Duration::from_secs(2);
    c
}

fn success() -> Node {
    Node::new("success")
        .attr("t", "1700000000")
        .attr("lid", Jid::parse("99990001:4@lid").unwrap())
}

#[tokio::test]
async fn a_silent_server_trips_the_keepalive_and_the_client_reconnects() {
    let server = ScriptedServer::start().await;
    let (client, mut events) = Client::new(paired_store(), config(&server));
    let (connected, mut conn) = tokio::join!(client.connect(), server.accept());
    connected.unwrap();
    assert_eq!(conn.username, Some(5_511_966_660_001));
    conn.send(&success()).await;
    wait_for(&mut events, "login", |e| matches!(e, Event::Connected)).await;
    // Answer nothing from now on (but keep reading so the socket stays open).
    let silent = tokio::spawn(async move {
        let mut pings = 0;
        while let Some(n) = conn.recv(Duration::from_secs(10)).await {
            if n.attr_str("xmlns") == Some("w:p") {
                pings += 1;
            }
        }
        pings
    });
    match wait_for(&mut events, "keepalive timeout", |e| {
        matches!(e, Event::KeepAliveTimeout { .. })
    })
    .await
    {
        Event::KeepAliveTimeout { error_count } => assert_eq!(error_count, 1),
        _ => unreachable!(),
    }
    match wait_for(&mut events, "forced disconnect", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await
    {
        Event::Disconnected {
            reason: DisconnectReason::KeepAliveTimeout,
            will_reconnect: true,
        } => {}
        other => panic!("unexpected {other:?}"),
    }
    let pings = silent.await.unwrap();
    assert!(pings >= 2, "the client kept pinging ({pings})");
    // The client comes back on its own.
    let mut conn = server.accept().await;
    conn.send(&success()).await;
    wait_for(&mut events, "login again", |e| {
        matches!(e, Event::Connected)
    })
    .await;
    // This time pings are answered: no more timeouts.
    let answering = tokio::spawn(async move {
        while let Some(n) = conn.recv(Duration::from_millis(800)).await {
            if n.attr_str("xmlns") == Some("w:p") {
                let reply = Node::new("iq")
                    .attr("from", Jid::server_jid())
                    .attr("id", n.attr_str("id").unwrap())
                    .attr("type", "result");
                conn.send(&reply).await;
            }
        }
    });
    let quiet = drain(&mut events, Duration::from_millis(600)).await;
    assert!(
        !quiet
            .iter()
            .any(|e| matches!(e, Event::KeepAliveTimeout { .. })),
        "{quiet:?}"
    );
    client.disconnect().await;
    let _ = answering.await;
}

#[tokio::test]
async fn server_pings_unknown_iqs_stream_end_and_edge_routing() {
    let server = ScriptedServer::start().await;
    let mut cfg = config(&server);
    cfg.keepalive.interval_min = Duration::from_secs(60);
    cfg.keepalive.interval_max = Duration::from_secs(60);
    let store = paired_store();
    let (client, mut events) = Client::new(store.clone(), cfg);
    let (connected, mut conn) = tokio::join!(client.connect(), server.accept());
    connected.unwrap();
    assert_eq!(conn.routing_info, None);
    conn.send(&success()).await;
    wait_for(&mut events, "login", |e| matches!(e, Event::Connected)).await;

    // The server pings the client.
    conn.send(
        &Node::new("iq")
            .attr("from", Jid::server_jid())
            .attr("id", "srv-ping")
            .attr("type", "get")
            .attr("xmlns", "urn:xmpp:ping")
            .child(Node::new("ping")),
    )
    .await;
    let pong = conn
        .expect(EVENT_TIMEOUT, "pong", |n| {
            n.attr_str("id") == Some("srv-ping")
        })
        .await;
    assert_eq!(pong.tag, "iq");
    assert_eq!(pong.attr_str("type"), Some("result"));

    // An IQ the client does not implement gets 501, not silence.
    conn.send(
        &Node::new("iq")
            .attr("from", Jid::server_jid())
            .attr("id", "srv-odd")
            .attr("type", "set")
            .attr("xmlns", "something")
            .child(Node::new("odd")),
    )
    .await;
    let reply = conn
        .expect(EVENT_TIMEOUT, "error reply", |n| {
            n.attr_str("id") == Some("srv-odd")
        })
        .await;
    assert_eq!(reply.attr_str("type"), Some("error"));
    let err = reply.child_by_tag("error").unwrap();
    assert_eq!(err.attr_str("code"), Some("501"));

    // Edge routing info is stored and sent in front of the next connection's header.
    conn.send(&Node::new("ib").child(
        Node::new("edge_routing").child(Node::new("routing_info").with_bytes(b"route-me".to_vec())),
    ))
    .await;
    for _ in 0..200 {
        let stored = store
            .load_credentials()
            .await
            .unwrap()
            .unwrap()
            .routing_info;
        if stored.as_deref() == Some(&b"route-me"[..]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        store
            .load_credentials()
            .await
            .unwrap()
            .unwrap()
            .routing_info
            .as_deref(),
        Some(&b"route-me"[..])
    );

    // <xmlstreamend/>: reconnect.
    conn.send(&Node::new("xmlstreamend")).await;
    match wait_for(&mut events, "stream end", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await
    {
        Event::Disconnected {
            reason: DisconnectReason::StreamEnd,
            will_reconnect: true,
        } => {}
        other => panic!("unexpected {other:?}"),
    }
    let mut conn = server.accept().await;
    assert_eq!(conn.routing_info.as_deref(), Some(&b"route-me"[..]));
    conn.send(&success()).await;
    wait_for(&mut events, "login again", |e| {
        matches!(e, Event::Connected)
    })
    .await;

    // A garbage frame that still decrypts but does not decode is skipped; one that
    // does not decrypt ends the connection.
    let frame = conn.outgoing.encrypt_frame(&[0x00, 0xFF, 0xFF]).unwrap();
    conn.ws.send(Message::Binary(frame.into())).await.unwrap();
    conn.send(
        &Node::new("iq")
            .attr("from", Jid::server_jid())
            .attr("id", "after-garbage")
            .attr("type", "get")
            .attr("xmlns", "urn:xmpp:ping"),
    )
    .await;
    conn.expect(EVENT_TIMEOUT, "pong after garbage", |n| {
        n.attr_str("id") == Some("after-garbage")
    })
    .await;
    conn.ws
        .send(Message::Binary(
            vec![
                0, 0, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
            ]
            .into(),
        ))
        .await
        .unwrap();
    match wait_for(&mut events, "protocol error", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await
    {
        Event::Disconnected {
            reason: DisconnectReason::Protocol(m),
            will_reconnect: true,
        } => assert!(m.contains("authentication"), "{m}"),
        other => panic!("unexpected {other:?}"),
    }
    client.disconnect().await;
}

#[tokio::test]
async fn login_failures_retry_when_transient_and_stop_otherwise() {
    let server = ScriptedServer::start().await;
    let store = paired_store();
    let (client, mut events) = Client::new(store.clone(), config(&server));
    let (connected, mut conn) = tokio::join!(client.connect(), server.accept());
    connected.unwrap();
    conn.send(&Node::new("failure").attr("reason", "503")).await;
    match wait_for(&mut events, "disconnect", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await
    {
        Event::Disconnected {
            reason: DisconnectReason::LoginFailure { reason: 503, .. },
            will_reconnect: true,
        } => {}
        other => panic!("unexpected {other:?}"),
    }
    // It comes back; this time the version is refused: stop and say why.
    let mut conn = server.accept().await;
    conn.send(&Node::new("failure").attr("reason", "405")).await;
    match wait_for(&mut events, "disconnect", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await
    {
        Event::Disconnected {
            reason:
                DisconnectReason::LoginFailure {
                    reason: 405,
                    message,
                },
            will_reconnect: false,
        } => assert!(message.contains("outdated"), "{message}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(400), server.listener.accept())
            .await
            .is_err(),
        "no reconnect after 405"
    );
    assert!(
        store.load_credentials().await.unwrap().is_some(),
        "not a logout"
    );
    client.disconnect().await;
}
