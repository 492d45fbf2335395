//! The client (initiator) side of WhatsApp's Noise XX handshake, as a sans-IO state
//! machine with one type per step:
//!
//! ```text
//! ClientHandshake::start ──first bytes──▶ server
//!        │◀──────────── ServerHello frame payload
//!        ▼ process_server_hello (decrypt server static + certificate chain, verify chain)
//! VerifiedHandshake::finish(ClientPayload bytes) ──ClientFinish frame──▶ server
//!        ▼
//!     Transport
//! ```
//!
//! Step order (PROTOCOL.md §2.3): `h = ck = name`; `MixHash(WA 06 03)`; `MixHash(e)`;
//! send `e` (its empty payload is *not* hashed); on ServerHello `MixHash(re)`,
//! `MixKey(DH(e, re))`, `rs = DecryptAndHash(static)`, `MixKey(DH(e, rs))`,
//! `certs = DecryptAndHash(payload)`; then `EncryptAndHash(s)` (nonce 1 of the same key),
//! `MixKey(DH(s, re))`, `EncryptAndHash(ClientPayload)`; `Split()` with the client
//! writing with the first half.

use prost::Message;
use rand_core::{CryptoRng, RngCore};

use super::cert::{CertError, TrustRoot, VerifiedCertChain, verify_cert_chain};
use super::framing::{FrameError, connection_intro, encode_frame_into};
use super::symmetric::{CryptoFailure, SymmetricState};
use super::transport::{Role, Transport};
use super::{CONNECTION_HEADER, FRAME_LENGTH_PREFIX};
use crate::proto::wa6::HandshakeMessage;
use crate::proto::wa6::handshake_message::{ClientFinish, ClientHello};
use crate::signal::curve::{KeyPair, PublicKey};

/// Why the client handshake failed. Each step has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// A frame or the routing info is too large.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The server's frame is not a `HandshakeMessage` protobuf.
    #[error("server handshake frame is not a HandshakeMessage protobuf: {0}")]
    Malformed(String),
    /// The `HandshakeMessage` has no `serverHello`.
    #[error("server handshake frame has no serverHello")]
    MissingServerHello,
    /// The ServerHello's ephemeral key is absent or not 32 bytes.
    #[error("server ephemeral key is {len} bytes, expected 32")]
    ServerEphemeralLength {
        /// Length received.
        len: usize,
    },
    /// The ServerHello has no encrypted static key.
    #[error("server hello has no encrypted static key")]
    MissingServerStatic,
    /// The ServerHello has no encrypted certificate payload.
    #[error("server hello has no encrypted certificate payload")]
    MissingCertificate,
    /// A Diffie-Hellman with a server key gave all zeros (low-order point).
    #[error("server {0} key is a low-order point; refusing the handshake")]
    WeakServerKey(&'static str),
    /// The server's static key did not decrypt: the server does not share our transcript.
    #[error("could not decrypt the server static key (AES-GCM authentication failed)")]
    ServerStaticDecrypt,
    /// The decrypted server static key is not 32 bytes.
    #[error("decrypted server static key is {len} bytes, expected 32")]
    ServerStaticLength {
        /// Length received.
        len: usize,
    },
    /// The certificate payload did not decrypt.
    #[error("could not decrypt the server certificate payload (AES-GCM authentication failed)")]
    CertificateDecrypt,
    /// The server's certificate chain failed verification.
    #[error("server certificate rejected: {0}")]
    Certificate(#[from] CertError),
    /// Encryption of our own handshake data failed (input beyond AES-GCM limits).
    #[error("could not encrypt the {0}")]
    Encrypt(&'static str),
}

/// Maps a failed Diffie-Hellman (only possible failure: a low-order point).
fn weak_key(which: &'static str) -> impl FnOnce(CryptoFailure) -> HandshakeError {
    move |_| HandshakeError::WeakServerKey(which)
}

/// Maps a failed decryption to the step's error.
fn undecryptable(err: HandshakeError) -> impl FnOnce(CryptoFailure) -> HandshakeError {
    move |_| err
}

/// Maps a failed encryption of our own data.
fn unencryptable(what: &'static str) -> impl FnOnce(CryptoFailure) -> HandshakeError {
    move |_| HandshakeError::Encrypt(what)
}

/// Step 1: the ClientHello is sent; waiting for the ServerHello.
pub struct ClientHandshake {
    state: SymmetricState,
    ephemeral: KeyPair,
    noise_static: KeyPair,
    trust_root: TrustRoot,
}

impl std::fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("ephemeral", &self.ephemeral.public)
            .field("noise_static", &self.noise_static.public)
            .field("trust_root", &self.trust_root)
            .finish_non_exhaustive()
    }
}

impl ClientHandshake {
    /// Starts a handshake with the device's long-term Noise key. Returns the state and the
    /// first bytes to send: the `WA 06 03` header followed by the ClientHello frame.
    pub fn start<R: RngCore + CryptoRng>(
        noise_static: &KeyPair,
        trust_root: TrustRoot,
        rng: &mut R,
    ) -> (Self, Vec<u8>) {
        let (hs, hello) = Self::client_hello(noise_static, trust_root, rng);
        let mut first =
            Vec::with_capacity(CONNECTION_HEADER.len() + FRAME_LENGTH_PREFIX + hello.len());
        first.extend_from_slice(&CONNECTION_HEADER);
        // The hello holds one 32-byte key (36 bytes in all): far below the 3-byte limit.
        let [_, a, b, c] = (hello.len() as u32).to_be_bytes();
        first.extend_from_slice(&[a, b, c]);
        first.extend_from_slice(&hello);
        (hs, first)
    }

    /// Like [`Self::start`], with the `ED 00 01` routing pre-intro (routing info from an
    /// earlier `<edge_routing>`) in front of the header. Refuses routing info longer than
    /// `0xFFFFFF` bytes.
    pub fn start_with_routing_info<R: RngCore + CryptoRng>(
        noise_static: &KeyPair,
        trust_root: TrustRoot,
        routing_info: &[u8],
        rng: &mut R,
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        let mut first = connection_intro(Some(routing_info))?;
        let (hs, hello) = Self::client_hello(noise_static, trust_root, rng);
        encode_frame_into(&mut first, &hello)?;
        Ok((hs, first))
    }

    /// New ephemeral key, `MixHash(prologue)`, `MixHash(e)`, and the serialized hello.
    fn client_hello<R: RngCore + CryptoRng>(
        noise_static: &KeyPair,
        trust_root: TrustRoot,
        rng: &mut R,
    ) -> (Self, Vec<u8>) {
        let ephemeral = KeyPair::generate(rng);
        let mut state = SymmetricState::new(&CONNECTION_HEADER);
        state.mix_hash(ephemeral.public.as_bytes());
        let hello = HandshakeMessage {
            client_hello: Some(ClientHello {
                ephemeral: Some(ephemeral.public.as_bytes().to_vec()),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let hs = ClientHandshake {
            state,
            ephemeral,
            noise_static: noise_static.clone(),
            trust_root,
        };
        (hs, hello)
    }

    /// The ephemeral public key sent in the ClientHello.
    pub fn ephemeral_public(&self) -> PublicKey {
        self.ephemeral.public
    }

    /// Processes the ServerHello (the payload of the first frame from the server):
    /// decrypts the server's static key and certificate chain and verifies the chain
    /// against the trust root at unix time `now_unix`. Any failure ends the handshake.
    pub fn process_server_hello(
        mut self,
        frame_payload: &[u8],
        now_unix: u64,
    ) -> Result<VerifiedHandshake, HandshakeError> {
        let message = HandshakeMessage::decode(frame_payload)
            .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
        let hello = message
            .server_hello
            .ok_or(HandshakeError::MissingServerHello)?;
        let server_ephemeral = hello.ephemeral.as_deref().unwrap_or_default();
        let server_ephemeral = PublicKey::from_raw(server_ephemeral).map_err(|_| {
            HandshakeError::ServerEphemeralLength {
                len: server_ephemeral.len(),
            }
        })?;
        let static_ciphertext = hello.r#static.ok_or(HandshakeError::MissingServerStatic)?;
        let cert_ciphertext = hello.payload.ok_or(HandshakeError::MissingCertificate)?;

        let st = &mut self.state;
        st.mix_hash(server_ephemeral.as_bytes());
        st.mix_dh(&self.ephemeral.private, &server_ephemeral)
            .map_err(weak_key("ephemeral"))?;
        let static_plain = st
            .decrypt_and_hash(&static_ciphertext)
            .map_err(undecryptable(HandshakeError::ServerStaticDecrypt))?;
        let server_static =
            PublicKey::from_raw(&static_plain).map_err(|_| HandshakeError::ServerStaticLength {
                len: static_plain.len(),
            })?;
        st.mix_dh(&self.ephemeral.private, &server_static)
            .map_err(weak_key("static"))?;
        let cert_plain = st
            .decrypt_and_hash(&cert_ciphertext)
            .map_err(undecryptable(HandshakeError::CertificateDecrypt))?;
        let certs = verify_cert_chain(&cert_plain, &server_static, now_unix, &self.trust_root)?;

        Ok(VerifiedHandshake {
            state: self.state,
            server_ephemeral,
            server_static,
            certs,
            noise_static: self.noise_static,
        })
    }
}

/// Step 2: the server proved its static key and its certificate chain verified; ready to
/// send the ClientFinish with the ClientPayload.
pub struct VerifiedHandshake {
    state: SymmetricState,
    server_ephemeral: PublicKey,
    server_static: PublicKey,
    certs: VerifiedCertChain,
    noise_static: KeyPair,
}

impl std::fmt::Debug for VerifiedHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedHandshake")
            .field("server_static", &self.server_static)
            .field("certs", &self.certs)
            .finish_non_exhaustive()
    }
}

impl VerifiedHandshake {
    /// The server's static Noise key (equal to the leaf certificate's key).
    pub fn server_static(&self) -> PublicKey {
        self.server_static
    }

    /// The verified certificate chain.
    pub fn cert_chain(&self) -> &VerifiedCertChain {
        &self.certs
    }

    /// Encrypts our static key and the serialized `ClientPayload`, and returns the
    /// ClientFinish frame to send (no connection header) and the established transport
    /// (client writes with the first half of `Split()`).
    pub fn finish(mut self, client_payload: &[u8]) -> Result<(Vec<u8>, Transport), HandshakeError> {
        let st = &mut self.state;
        let encrypted_static = st
            .encrypt_and_hash(self.noise_static.public.as_bytes())
            .map_err(unencryptable("client static key"))?;
        st.mix_dh(&self.noise_static.private, &self.server_ephemeral)
            .map_err(weak_key("ephemeral"))?;
        let encrypted_payload = st
            .encrypt_and_hash(client_payload)
            .map_err(unencryptable("client payload"))?;
        let finish = HandshakeMessage {
            client_finish: Some(ClientFinish {
                r#static: Some(encrypted_static),
                payload: Some(encrypted_payload),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let mut frame = Vec::new();
        encode_frame_into(&mut frame, &finish)?;
        let (first, second) = self.state.split();
        Ok((
            frame,
            Transport::from_split(&first, &second, Role::Initiator),
        ))
    }
}
