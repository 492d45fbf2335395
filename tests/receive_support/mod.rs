//! A websocket server with a valid certificate chain (the simulator's certificate
//! authority and Noise responder) that a receive test drives by hand: it logs the
//! client in, hands it `<message>` stanzas and reads what the client answers.

#![allow(dead_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use waevent::binary::{Node, marshal, unmarshal};
use waevent::client::{BackoffConfig, ClientConfig, KeepAliveConfig};
use waevent::jid::Jid;
use waevent::noise::{IncomingCipher, OutgoingCipher, TrustRoot};
use waevent::signal::PreKeyBundle;
use waevent::signal::curve::{KeyPair, PublicKey};
use waevent::sim::certs::{SimCertAuthority, Validity};
use waevent::sim::handshake::{ServerFrameReader, accept_client_hello};

/// How long a test waits for the client.
pub const WAIT: Duration = Duration::from_secs(20);

/// The listening server.
pub struct Server {
    listener: TcpListener,
    root: TrustRoot,
    server_static: KeyPair,
    chain: Vec<u8>,
}

/// One handshaken connection.
pub struct Conn {
    ws: WebSocketStream<TcpStream>,
    reader: ServerFrameReader,
    outgoing: OutgoingCipher,
    incoming: IncomingCipher,
}

impl Server {
    /// Listens on a free local port with a fresh certificate chain.
    pub async fn start() -> Self {
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
        Server {
            listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            root: ca.trust_root(),
            server_static,
            chain,
        }
    }

    /// A client configuration for this server (long keepalive: the tests do not
    /// answer pings).
    pub fn config(&self) -> ClientConfig {
        let url = format!("ws://{}/ws/chat", self.listener.local_addr().unwrap());
        let mut c = ClientConfig::for_server(url, self.root);
        c.keepalive = KeepAliveConfig {
            interval_min: Duration::from_secs(600),
            interval_max: Duration::from_secs(600),
            response_deadline: Duration::from_secs(60),
            max_fail_time: Duration::from_secs(1200),
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

    /// Accepts the next client and runs the responder side of the handshake.
    pub async fn accept(&self) -> Conn {
        let (tcp, _) = tokio::time::timeout(WAIT, self.listener.accept())
            .await
            .expect("a client connects")
            .unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let mut reader = ServerFrameReader::new();
        let first = next_frame(&mut ws, &mut reader).await;
        let (waiting, hello) = accept_client_hello(
            &first,
            &self.server_static,
            &self.chain,
            &mut rand::rngs::OsRng,
        )
        .unwrap();
        ws.send(Message::Binary(hello.into())).await.unwrap();
        let finish = next_frame(&mut ws, &mut reader).await;
        let accepted = waiting.process_client_finish(&finish).unwrap();
        let (outgoing, incoming) = accepted.transport.into_halves();
        Conn {
            ws,
            reader,
            outgoing,
            incoming,
        }
    }
}

async fn next_frame(
    ws: &mut WebSocketStream<TcpStream>,
    reader: &mut ServerFrameReader,
) -> Vec<u8> {
    loop {
        let Some(Ok(Message::Binary(chunk))) = ws.next().await else {
            panic!("client went away during the handshake");
        };
        if let Some(frame) = reader.push(&chunk).unwrap().into_iter().next() {
            return frame;
        }
    }
}

impl Conn {
    /// Sends one stanza to the client.
    pub async fn send(&mut self, node: &Node) {
        let frame = self
            .outgoing
            .encrypt_frame(&marshal(node).unwrap())
            .unwrap();
        self.ws.send(Message::Binary(frame.into())).await.unwrap();
    }

    /// Logs the client in.
    pub async fn login(&mut self) {
        self.send(&Node::new("success").attr("t", "1700000000"))
            .await;
    }

    /// The next stanza from the client, or `None` when it closed or `within` passed.
    pub async fn recv(&mut self, within: Duration) -> Option<Node> {
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

    /// The next stanza about message `id` (a receipt or an ack), skipping IQs and the
    /// rest.
    pub async fn next_about(&mut self, id: &str) -> Node {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Some(n) if n.tag != "iq" && n.attr_str("id") == Some(id) => return n,
                Some(_) => {}
                None => panic!("nothing about {id} from the client"),
            }
        }
    }
}

/// The keys of a retry receipt as the bundle a sender starts a new session from.
pub fn bundle_from_retry_receipt(receipt: &Node, device_id: u32) -> PreKeyBundle {
    let registration = receipt
        .child_by_tag("registration")
        .unwrap()
        .bytes()
        .unwrap();
    let keys = receipt
        .child_by_tag("keys")
        .expect("keys in the retry receipt");
    let bytes = |n: &Node, tag: &str| n.child_by_tag(tag).unwrap().bytes().unwrap().to_vec();
    let id = |b: Vec<u8>| u32::from_be_bytes([0, b[0], b[1], b[2]]);
    let key = keys.child_by_tag("key").unwrap();
    let skey = keys.child_by_tag("skey").unwrap();
    assert_eq!(bytes(keys, "type"), vec![5]);
    PreKeyBundle {
        registration_id: u32::from_be_bytes(registration.try_into().unwrap()),
        device_id,
        prekey: Some((
            id(bytes(key, "id")),
            PublicKey::from_raw(&bytes(key, "value")).unwrap(),
        )),
        signed_prekey_id: id(bytes(skey, "id")),
        signed_prekey: PublicKey::from_raw(&bytes(skey, "value")).unwrap(),
        signed_prekey_signature: bytes(skey, "signature").try_into().unwrap(),
        identity_key: PublicKey::from_raw(&bytes(keys, "identity")).unwrap(),
    }
}

/// A JID from text.
pub fn jid(s: &str) -> Jid {
    Jid::parse(s).unwrap()
}
