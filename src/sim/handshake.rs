//! The server (responder) side of WhatsApp's Noise XX handshake, for the simulator. It
//! uses the same symmetric state, framing and transport as the client, mirrored
//! (PROTOCOL.md §2.3, server side):
//!
//! ```text
//! ServerFrameReader: strip [ED 00 01 len routing-info] + WA 06 03, cut frames
//! accept_client_hello(ClientHello) → MixHash(e_c); MixHash(e_s); MixKey(DH(e_s, e_c));
//!     static = EncryptAndHash(S); MixKey(DH(S, e_c)); payload = EncryptAndHash(CertChain)
//!     → ServerHello frame
//! AwaitingClientFinish::process_client_finish(ClientFinish) → s_c = DecryptAndHash(static);
//!     MixKey(DH(e_s, s_c)); ClientPayload = DecryptAndHash(payload); Split (server writes
//!     with the second half)
//! ```

use prost::Message;
use rand_core::{CryptoRng, RngCore};

use crate::noise::framing::{FrameDecoder, FrameError, encode_frame};
use crate::noise::symmetric::{CryptoFailure, SymmetricState};
use crate::noise::transport::{Role, Transport};
use crate::noise::{CONNECTION_HEADER, FRAME_LENGTH_PREFIX, ROUTING_PREINTRO_MAGIC};
use crate::proto::wa6::handshake_message::ServerHello;
use crate::proto::wa6::{ClientPayload, HandshakeMessage};
use crate::signal::curve::{KeyPair, PublicKey};

/// Longest routing info the simulator accepts in an `ED` pre-intro.
pub const MAX_ROUTING_INFO_LEN: usize = 64 * 1024;

/// Why the simulator refused a client's handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponderError {
    /// Framing failed (oversize frame).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream does not start with `WA 06 03` (after an optional `ED` pre-intro).
    #[error("connection does not start with the WA 06 03 header (got {found})")]
    BadHeader {
        /// Hex of the bytes found instead.
        found: String,
    },
    /// The `ED` pre-intro is not `ED 00 01` or its routing info is too long.
    #[error("bad ED routing pre-intro: {0}")]
    BadPreIntro(String),
    /// A client frame is not a `HandshakeMessage` protobuf.
    #[error("client handshake frame is not a HandshakeMessage protobuf: {0}")]
    Malformed(String),
    /// The first frame has no `clientHello`.
    #[error("first client frame has no clientHello")]
    MissingClientHello,
    /// The client's ephemeral key is absent or not 32 bytes.
    #[error("client ephemeral key is {len} bytes, expected 32")]
    ClientEphemeralLength {
        /// Length received.
        len: usize,
    },
    /// The second frame has no `clientFinish` with both `static` and `payload`.
    #[error("second client frame has no clientFinish with static and payload")]
    MissingClientFinish,
    /// A Diffie-Hellman with a client key gave all zeros (low-order point).
    #[error("client {0} key is a low-order point")]
    WeakClientKey(&'static str),
    /// The client's static key did not decrypt.
    #[error("could not decrypt the client static key (AES-GCM authentication failed)")]
    ClientStaticDecrypt,
    /// The decrypted client static key is not 32 bytes.
    #[error("decrypted client static key is {len} bytes, expected 32")]
    ClientStaticLength {
        /// Length received.
        len: usize,
    },
    /// The client payload did not decrypt.
    #[error("could not decrypt the client payload (AES-GCM authentication failed)")]
    ClientPayloadDecrypt,
    /// The decrypted client payload is not a `ClientPayload` protobuf.
    #[error("client payload is not a ClientPayload protobuf: {0}")]
    ClientPayloadMalformed(String),
    /// Encrypting our own handshake data failed.
    #[error("could not encrypt the server {0}")]
    Encrypt(&'static str),
}

/// Where the reader is in the connection intro.
#[derive(Debug, Clone)]
enum Intro {
    /// Collecting the first bytes.
    Pending(Vec<u8>),
    /// Intro consumed; frames follow.
    Done,
}

/// Server-side reader of a client's byte stream: strips the optional `ED` routing
/// pre-intro and the `WA 06 03` header once, then cuts frames.
#[derive(Debug, Clone)]
pub struct ServerFrameReader {
    intro: Intro,
    routing_info: Option<Vec<u8>>,
    frames: FrameDecoder,
}

impl Default for ServerFrameReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerFrameReader {
    /// A reader at the start of a connection, accepting frames up to `0xFFFFFF` bytes.
    pub fn new() -> Self {
        Self::with_frame_decoder(FrameDecoder::new())
    }

    /// A reader using the given frame decoder (e.g. with a lower size limit).
    pub fn with_frame_decoder(frames: FrameDecoder) -> Self {
        ServerFrameReader {
            intro: Intro::Pending(Vec::new()),
            routing_info: None,
            frames,
        }
    }

    /// The routing info the client sent in its `ED` pre-intro, if any.
    pub fn routing_info(&self) -> Option<&[u8]> {
        self.routing_info.as_deref()
    }

    /// Whether the connection intro has been consumed.
    pub fn intro_done(&self) -> bool {
        matches!(self.intro, Intro::Done)
    }

    /// Feeds one websocket chunk; returns the payloads of the frames it completes.
    /// Refuses a stream that does not open with a valid intro, or oversize frames.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, ResponderError> {
        let Intro::Pending(pending) = &mut self.intro else {
            return Ok(self.frames.push(chunk)?);
        };
        pending.extend_from_slice(chunk);
        match parse_intro(pending)? {
            None => Ok(Vec::new()),
            Some(intro) => {
                let rest = pending.split_off(intro.len.min(pending.len()));
                self.routing_info = intro.routing_info;
                self.intro = Intro::Done;
                Ok(self.frames.push(&rest)?)
            }
        }
    }
}

/// A complete connection intro: its length and the routing info it carried.
struct ParsedIntro {
    len: usize,
    routing_info: Option<Vec<u8>>,
}

/// Parses the intro at the start of `buf`: `Ok(None)` if more bytes are needed.
fn parse_intro(buf: &[u8]) -> Result<Option<ParsedIntro>, ResponderError> {
    let mut header_at = 0;
    let mut routing_info = None;
    if buf.first() == Some(&b'E') {
        let Some(magic) = buf.get(..ROUTING_PREINTRO_MAGIC.len()) else {
            return check_prefix(buf, &ROUTING_PREINTRO_MAGIC).map(|()| None);
        };
        if magic != ROUTING_PREINTRO_MAGIC {
            return Err(ResponderError::BadPreIntro(format!(
                "starts with {}, expected 45440001",
                hex::encode(magic)
            )));
        }
        let len_at = ROUTING_PREINTRO_MAGIC.len();
        let Some(&[a, b, c]) = buf.get(len_at..len_at + FRAME_LENGTH_PREFIX) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([0, a, b, c]) as usize;
        if len > MAX_ROUTING_INFO_LEN {
            return Err(ResponderError::BadPreIntro(format!(
                "routing info of {len} bytes exceeds {MAX_ROUTING_INFO_LEN}"
            )));
        }
        let info_at = len_at + FRAME_LENGTH_PREFIX;
        let Some(info) = buf.get(info_at..info_at + len) else {
            return Ok(None);
        };
        routing_info = Some(info.to_vec());
        header_at = info_at + len;
    }
    let rest = buf.get(header_at..).unwrap_or_default();
    match rest.get(..CONNECTION_HEADER.len()) {
        Some(h) if h == CONNECTION_HEADER => Ok(Some(ParsedIntro {
            len: header_at + CONNECTION_HEADER.len(),
            routing_info,
        })),
        Some(h) => Err(ResponderError::BadHeader {
            found: hex::encode(h),
        }),
        None => check_prefix(rest, &CONNECTION_HEADER).map(|()| None),
    }
}

/// Refuses early when the bytes so far already differ from the expected start.
fn check_prefix(got: &[u8], expected: &[u8]) -> Result<(), ResponderError> {
    if expected.starts_with(got) {
        Ok(())
    } else {
        Err(ResponderError::BadHeader {
            found: hex::encode(got),
        })
    }
}

/// The ServerHello is sent; waiting for the client's ClientFinish.
pub struct AwaitingClientFinish {
    state: SymmetricState,
    ephemeral: KeyPair,
}

impl std::fmt::Debug for AwaitingClientFinish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwaitingClientFinish")
            .field("ephemeral", &self.ephemeral.public)
            .finish_non_exhaustive()
    }
}

/// A client that completed the handshake.
#[derive(Debug)]
pub struct AcceptedClient {
    /// The client's static Noise key (what the QR shows and pairing binds).
    pub client_static: PublicKey,
    /// The decoded ClientPayload (registration or login).
    pub payload: ClientPayload,
    /// The server's transport (writes with the second half of `Split()`).
    pub transport: Transport,
}

/// Answers a ClientHello (the first frame's payload) with the server's static key
/// `server_static` and the serialized `cert_chain` to serve. Returns the next state and
/// the ServerHello frame to send.
pub fn accept_client_hello<R: RngCore + CryptoRng>(
    client_hello_frame: &[u8],
    server_static: &KeyPair,
    cert_chain: &[u8],
    rng: &mut R,
) -> Result<(AwaitingClientFinish, Vec<u8>), ResponderError> {
    let message = HandshakeMessage::decode(client_hello_frame)
        .map_err(|e| ResponderError::Malformed(e.to_string()))?;
    let hello = message
        .client_hello
        .ok_or(ResponderError::MissingClientHello)?;
    let client_ephemeral = hello.ephemeral.as_deref().unwrap_or_default();
    let client_ephemeral = PublicKey::from_raw(client_ephemeral).map_err(|_| {
        ResponderError::ClientEphemeralLength {
            len: client_ephemeral.len(),
        }
    })?;

    let ephemeral = KeyPair::generate(rng);
    let mut state = SymmetricState::new(&CONNECTION_HEADER);
    state.mix_hash(client_ephemeral.as_bytes());
    state.mix_hash(ephemeral.public.as_bytes());
    let weak = |_: CryptoFailure| ResponderError::WeakClientKey("ephemeral");
    state
        .mix_dh(&ephemeral.private, &client_ephemeral)
        .map_err(weak)?;
    let encrypted_static = state
        .encrypt_and_hash(server_static.public.as_bytes())
        .map_err(|_| ResponderError::Encrypt("static key"))?;
    state
        .mix_dh(&server_static.private, &client_ephemeral)
        .map_err(weak)?;
    let encrypted_chain = state
        .encrypt_and_hash(cert_chain)
        .map_err(|_| ResponderError::Encrypt("certificate chain"))?;
    let server_hello = HandshakeMessage {
        server_hello: Some(ServerHello {
            ephemeral: Some(ephemeral.public.as_bytes().to_vec()),
            r#static: Some(encrypted_static),
            payload: Some(encrypted_chain),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec();
    let frame = encode_frame(&server_hello)?;
    Ok((AwaitingClientFinish { state, ephemeral }, frame))
}

impl AwaitingClientFinish {
    /// Processes the ClientFinish (the second frame's payload): decrypts the client's
    /// static key and its ClientPayload, and returns them with the server transport.
    pub fn process_client_finish(mut self, frame: &[u8]) -> Result<AcceptedClient, ResponderError> {
        let message = HandshakeMessage::decode(frame)
            .map_err(|e| ResponderError::Malformed(e.to_string()))?;
        let finish = message
            .client_finish
            .ok_or(ResponderError::MissingClientFinish)?;
        let (Some(static_ciphertext), Some(payload_ciphertext)) = (finish.r#static, finish.payload)
        else {
            return Err(ResponderError::MissingClientFinish);
        };
        let st = &mut self.state;
        let static_plain = st
            .decrypt_and_hash(&static_ciphertext)
            .map_err(|_| ResponderError::ClientStaticDecrypt)?;
        let client_static =
            PublicKey::from_raw(&static_plain).map_err(|_| ResponderError::ClientStaticLength {
                len: static_plain.len(),
            })?;
        st.mix_dh(&self.ephemeral.private, &client_static)
            .map_err(|_| ResponderError::WeakClientKey("static"))?;
        let payload_plain = st
            .decrypt_and_hash(&payload_ciphertext)
            .map_err(|_| ResponderError::ClientPayloadDecrypt)?;
        let payload = ClientPayload::decode(payload_plain.as_slice())
            .map_err(|e| ResponderError::ClientPayloadMalformed(e.to_string()))?;
        let (first, second) = self.state.split();
        Ok(AcceptedClient {
            client_static,
            payload,
            transport: Transport::from_split(&first, &second, Role::Responder),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::connection_intro;
    use crate::noise::framing::encode_frame_into;

    fn stream(routing: Option<&[u8]>, frames: &[&[u8]]) -> Vec<u8> {
        let mut out = connection_intro(routing).unwrap();
        for f in frames {
            encode_frame_into(&mut out, f).unwrap();
        }
        out
    }

    #[test]
    fn intro_is_stripped_byte_by_byte_with_and_without_routing_info() {
        for routing in [None, Some(&b"route-me"[..]), Some(&[][..])] {
            let bytes = stream(routing, &[b"one", b"two"]);
            let mut r = ServerFrameReader::new();
            let mut frames = Vec::new();
            for b in &bytes {
                frames.extend(r.push(std::slice::from_ref(b)).unwrap());
            }
            assert_eq!(frames, vec![b"one".to_vec(), b"two".to_vec()]);
            assert_eq!(r.routing_info(), routing);
            let mut r = ServerFrameReader::new();
            assert_eq!(r.push(&bytes).unwrap().len(), 2);
        }
    }

    #[test]
    fn wrong_headers_are_refused_early() {
        let mut r = ServerFrameReader::new();
        assert!(matches!(
            r.push(b"WA\x06\x02\0\0\0"),
            Err(ResponderError::BadHeader { .. })
        ));
        let mut r = ServerFrameReader::new();
        assert!(matches!(
            r.push(b"GET / HTTP/1.1"),
            Err(ResponderError::BadHeader { .. })
        ));
        let mut r = ServerFrameReader::new();
        assert!(matches!(
            r.push(b"X"),
            Err(ResponderError::BadHeader { .. })
        ));
        let mut r = ServerFrameReader::new();
        assert!(matches!(
            r.push(b"ED\x00\x02"),
            Err(ResponderError::BadPreIntro(_))
        ));
        let mut r = ServerFrameReader::new();
        assert!(matches!(
            r.push(b"ED\x00\x01\xff\xff\xff"),
            Err(ResponderError::BadPreIntro(_))
        ));
        let mut r = ServerFrameReader::new();
        assert!(r.push(b"W").unwrap().is_empty());
        assert!(!r.intro_done());
    }
}
