//! A minimal raw client for driving the simulator in tests, built only from the crate's
//! sans-IO codecs (`waevent::noise` for the handshake and frame cipher,
//! `waevent::binary` for nodes) on a plain tokio-tungstenite websocket. It does exactly
//! what a test tells it to and nothing on its own, so tests see every stanza. The
//! companion-side pairing steps are written here from PROTOCOL.md §6.3, independently of
//! the simulator's phone code.

#![allow(dead_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use prost::Message as _;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use waevent::binary::{Node, marshal, unmarshal};
use waevent::jid::Jid;
use waevent::noise::client_payload::{Login, Registration, login_payload, registration_payload};
use waevent::noise::{ClientHandshake, FrameDecoder, HandshakeError, Transport, TrustRoot};
use waevent::proto::adv::{
    AdvDeviceIdentity, AdvSignedDeviceIdentity, AdvSignedDeviceIdentityHmac,
};
use waevent::proto::wa6::ClientPayload;
use waevent::signal::curve::{KeyPair, PublicKey};
use waevent::signal::identity::{LocalIdentity, SignedPreKeyRecord};
use waevent::sim::stanza::{attr_text, child_bytes};
use waevent::sim::{DeviceRegistration, SignedPreKeyPublic};

/// How long a test waits for one stanza (generous: the machine may be loaded).
pub const STEP: Duration = Duration::from_secs(30);

/// A companion's long-term keys, as a client keeps them before and after pairing.
#[derive(Clone)]
pub struct Keys {
    pub noise: KeyPair,
    pub identity: LocalIdentity,
    pub signed_prekey: SignedPreKeyRecord,
    pub adv_secret: [u8; 32],
}

impl Keys {
    pub fn generate() -> Keys {
        let identity = LocalIdentity::generate(&mut OsRng);
        let signed_prekey =
            SignedPreKeyRecord::generate(&identity.key_pair, 1, 1_700_000_000_000, &mut OsRng);
        let mut adv_secret = [0u8; 32];
        OsRng.fill_bytes(&mut adv_secret);
        Keys {
            noise: KeyPair::generate(&mut OsRng),
            identity,
            signed_prekey,
            adv_secret,
        }
    }

    pub fn registration_payload(&self) -> ClientPayload {
        registration_payload(&Registration::new(
            self.identity.registration_id,
            self.identity.key_pair.public,
            self.signed_prekey.id,
            self.signed_prekey.key_pair.public,
            self.signed_prekey.signature,
        ))
        .expect("registration payload")
    }

    pub fn login_payload(&self, device: &Jid) -> ClientPayload {
        login_payload(&Login::new(device.user.clone(), device.device)).expect("login payload")
    }

    /// What `inject_device` needs to register these keys directly.
    pub fn device_registration(&self) -> DeviceRegistration {
        DeviceRegistration {
            noise_key: self.noise.public,
            identity: self.identity.clone(),
            signed_prekey: SignedPreKeyPublic {
                id: self.signed_prekey.id,
                key: self.signed_prekey.key_pair.public,
                signature: self.signed_prekey.signature,
            },
            platform: "raw-test-client".into(),
        }
    }

    /// The QR string the client would render for `reference`.
    pub fn qr(&self, reference: &str) -> String {
        use base64::Engine;
        let b = base64::engine::general_purpose::STANDARD;
        format!(
            "{reference},{},{},{},1",
            b.encode(self.noise.public.as_bytes()),
            b.encode(self.identity.key_pair.public.as_bytes()),
            b.encode(self.adv_secret)
        )
    }
}

/// Why a raw connection failed.
#[derive(Debug)]
pub enum ConnectError {
    Ws(String),
    Handshake(HandshakeError),
    Closed,
}

/// One connection to the simulator after the Noise handshake.
pub struct RawClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    frames: FrameDecoder,
    transport: Transport,
    queued: std::collections::VecDeque<Vec<u8>>,
    next_id: u64,
    /// Flags byte of the last frame received (`0x02` = zlib-compressed).
    pub last_flags: u8,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Opens the websocket with WhatsApp's `Origin` header.
pub async fn open_ws(
    url: &str,
    origin: Option<&str>,
) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>, String> {
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    if let Some(origin) = origin {
        req.headers_mut()
            .insert("Origin", origin.parse().map_err(|_| "origin header")?);
    }
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

impl RawClient {
    /// Connects, runs the handshake against `trust_root` and sends `payload`.
    pub async fn connect(
        url: &str,
        trust_root: PublicKey,
        noise: &KeyPair,
        payload: &ClientPayload,
    ) -> Result<RawClient, ConnectError> {
        Self::connect_with(url, trust_root, noise, payload, None, 1024).await
    }

    /// [`Self::connect`] with an optional `ED` routing pre-intro, sending the client's
    /// bytes in websocket messages of at most `chunk` bytes.
    pub async fn connect_with(
        url: &str,
        trust_root: PublicKey,
        noise: &KeyPair,
        payload: &ClientPayload,
        routing_info: Option<&[u8]>,
        chunk: usize,
    ) -> Result<RawClient, ConnectError> {
        let mut ws = open_ws(url, Some("https://web.whatsapp.com"))
            .await
            .map_err(ConnectError::Ws)?;
        let root = TrustRoot::new(trust_root);
        let (hs, first) = match routing_info {
            Some(info) => ClientHandshake::start_with_routing_info(noise, root, info, &mut OsRng)
                .map_err(ConnectError::Handshake)?,
            None => ClientHandshake::start(noise, root, &mut OsRng),
        };
        for piece in first.chunks(chunk.max(1)) {
            ws.send(Message::Binary(piece.to_vec().into()))
                .await
                .map_err(|e| ConnectError::Ws(e.to_string()))?;
        }
        let mut frames = FrameDecoder::new();
        let hello = loop {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => {
                    let mut got = frames
                        .push(&b)
                        .map_err(|e| ConnectError::Ws(e.to_string()))?;
                    if !got.is_empty() {
                        break got.remove(0);
                    }
                }
                Some(Ok(_)) => {}
                _ => return Err(ConnectError::Closed),
            }
        };
        let verified = hs
            .process_server_hello(&hello, now_unix())
            .map_err(ConnectError::Handshake)?;
        let (finish, transport) = verified
            .finish(&payload.encode_to_vec())
            .map_err(ConnectError::Handshake)?;
        for piece in finish.chunks(chunk.max(1)) {
            ws.send(Message::Binary(piece.to_vec().into()))
                .await
                .map_err(|e| ConnectError::Ws(e.to_string()))?;
        }
        Ok(RawClient {
            ws,
            frames,
            transport,
            queued: Default::default(),
            next_id: 1,
            last_flags: 0,
        })
    }

    /// A fresh IQ id.
    pub fn id(&mut self) -> String {
        self.next_id += 1;
        format!("raw.{}", self.next_id)
    }

    /// Encrypts and sends one node.
    pub async fn send(&mut self, node: &Node) {
        let frame = self
            .transport
            .encrypt_frame(&marshal(node).expect("encode"))
            .expect("encrypt");
        self.ws
            .send(Message::Binary(frame.into()))
            .await
            .expect("websocket send");
    }

    /// Encrypts and sends arbitrary plaintext as one frame.
    pub async fn send_raw_plaintext(&mut self, plaintext: &[u8]) {
        let frame = self.transport.encrypt_frame(plaintext).unwrap();
        self.ws.send(Message::Binary(frame.into())).await.unwrap();
    }

    /// Sends several nodes in one websocket message (frames back to back).
    pub async fn send_batched(&mut self, nodes: &[Node]) {
        let mut bytes = Vec::new();
        for n in nodes {
            bytes.extend(self.transport.encrypt_frame(&marshal(n).unwrap()).unwrap());
        }
        self.ws.send(Message::Binary(bytes.into())).await.unwrap();
    }

    /// Sends one node split over websocket messages of `chunk` bytes.
    pub async fn send_split(&mut self, node: &Node, chunk: usize) {
        let frame = self
            .transport
            .encrypt_frame(&marshal(node).unwrap())
            .unwrap();
        for piece in frame.chunks(chunk) {
            self.ws
                .send(Message::Binary(piece.to_vec().into()))
                .await
                .unwrap();
        }
    }

    /// The next node, `None` when the server closed the connection (or `STEP` passed).
    pub async fn recv(&mut self) -> Option<Node> {
        self.recv_within(STEP).await
    }

    pub async fn recv_within(&mut self, wait: Duration) -> Option<Node> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(frame) = self.queued.pop_front() {
                let plain = self.transport.decrypt_frame(&frame).expect("decrypt");
                self.last_flags = plain.first().copied().unwrap_or(0);
                return Some(unmarshal(&plain).expect("decode"));
            }
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match msg {
                Ok(Message::Binary(b)) => self.queued.extend(self.frames.push(&b).expect("frames")),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The next node that is not an `ib` info stanza.
    pub async fn recv_skip_ib(&mut self) -> Option<Node> {
        loop {
            let n = self.recv().await?;
            if n.tag != "ib" {
                return Some(n);
            }
        }
    }

    /// Sends an IQ (an `id` is added) and returns the reply with the same id, skipping
    /// other stanzas.
    pub async fn iq(&mut self, iq: Node) -> Node {
        let id = self.id();
        let iq = iq.attr("id", id.as_str());
        self.send(&iq).await;
        loop {
            let n = self
                .recv()
                .await
                .expect("connection closed while waiting for an iq reply");
            if n.tag == "iq" && attr_text(&n, "id").as_deref() == Some(id.as_str()) {
                return n;
            }
        }
    }

    /// Waits for the server to end the connection (close frame, EOF or reset); returns
    /// the nodes it still sent.
    pub async fn until_closed(&mut self) -> Vec<Node> {
        let mut nodes = Vec::new();
        while let Some(n) = self.recv().await {
            nodes.push(n);
        }
        nodes
    }

    /// Whether the next websocket event is a clean close frame (as opposed to a reset
    /// or EOF without one).
    pub async fn next_close_kind(&mut self) -> &'static str {
        loop {
            match tokio::time::timeout(STEP, self.ws.next()).await {
                Err(_) => return "timeout",
                Ok(None) => return "eof",
                Ok(Some(Ok(Message::Close(_)))) => return "close-frame",
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) => return "error",
            }
        }
    }
}

/// `<iq to="s.whatsapp.net" xmlns type>children</iq>` without id (`RawClient::iq` adds it).
pub fn iq(xmlns: &str, kind: &str, children: Vec<Node>) -> Node {
    Node::new("iq")
        .attr("to", Jid::server_jid())
        .attr("xmlns", xmlns)
        .attr("type", kind)
        .with_children(children)
}

/// The companion's answer to pair-success per PROTOCOL.md §6.3: HMAC check, account
/// signature check, device signature, `accountSignatureKey` removed. Returns the reply
/// IQ, the device JID and LID from `<device>`, and the decoded ADV details.
pub fn answer_pair_success(
    keys: &Keys,
    pair_success: &Node,
) -> (Node, Jid, Jid, AdvDeviceIdentity) {
    let id = attr_text(pair_success, "id").unwrap().into_owned();
    let ps = pair_success
        .child_by_tag("pair-success")
        .expect("pair-success child");
    let container =
        AdvSignedDeviceIdentityHmac::decode(child_bytes(ps, "device-identity").unwrap()).unwrap();
    let details = container.details.unwrap();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&keys.adv_secret).unwrap();
    mac.update(&details);
    mac.verify_slice(&container.hmac.unwrap())
        .expect("HMAC with the adv secret");
    let mut signed = AdvSignedDeviceIdentity::decode(&details[..]).unwrap();
    let account_key = PublicKey::from_raw(signed.account_signature_key.as_ref().unwrap()).unwrap();
    let inner = signed.details.clone().unwrap();
    let own = keys.identity.key_pair.public;
    let msg = [&[6u8, 0][..], &inner, own.as_bytes()].concat();
    assert!(
        account_key.verify(&msg, signed.account_signature.as_ref().unwrap()),
        "account signature"
    );
    let dev_msg = [
        &[6u8, 1][..],
        &inner,
        own.as_bytes(),
        account_key.as_bytes(),
    ]
    .concat();
    let sig = keys.identity.key_pair.private.sign(&mut OsRng, &dev_msg);
    signed.device_signature = Some(sig.to_vec());
    signed.account_signature_key = None;
    let adv = AdvDeviceIdentity::decode(&inner[..]).unwrap();
    let device = ps.child_by_tag("device").unwrap();
    let jid = waevent::sim::stanza::attr_jid(device, "jid").unwrap();
    let lid = waevent::sim::stanza::attr_jid(device, "lid").unwrap();
    let reply = Node::new("iq")
        .attr("to", Jid::server_jid())
        .attr("type", "result")
        .attr("id", id.as_str())
        .child(
            Node::new("pair-device-sign").child(
                Node::new("device-identity")
                    .attr("key-index", adv.key_index.unwrap_or(0))
                    .with_bytes(signed.encode_to_vec()),
            ),
        );
    (reply, jid, lid, adv)
}

/// The refs of a `pair-device` IQ.
pub fn refs_of(pair_device: &Node) -> Vec<String> {
    pair_device
        .child_by_tag("pair-device")
        .map(|p| {
            p.children_by_tag("ref")
                .map(|r| String::from_utf8(r.bytes().unwrap().to_vec()).unwrap())
                .collect()
        })
        .unwrap_or_default()
}
