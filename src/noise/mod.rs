//! The Noise_XX_25519_AESGCM_SHA256 handshake as WhatsApp runs it, and the frame cipher.
//!
//! Sans-IO: nothing here touches a socket or an async runtime. The caller moves bytes:
//!
//! 1. [`ClientHandshake::start`] returns the first bytes to send (connection header,
//!    optionally preceded by the `ED` routing pre-intro, and the ClientHello frame).
//! 2. Incoming websocket chunks go through a [`FrameDecoder`]; the first frame's payload
//!    goes to [`ClientHandshake::process_server_hello`], which decrypts the server's static
//!    key and certificate chain and verifies the chain against a [`TrustRoot`] (there is
//!    no way to skip this).
//! 3. [`VerifiedHandshake::finish`] encrypts the [`client_payload`] and returns the
//!    ClientFinish frame plus the [`Transport`] that seals and opens every later frame.
//!
//! WhatsApp's handshake differs from stock Noise XX in ways a spec-following library gets
//! wrong (see `PROTOCOL.md` §2 and §15a): the 32-byte protocol name is used raw as the
//! initial hash, the prologue is only the 4-byte connection header, the first message's
//! empty payload is not hashed, and the client's write key is the first half of Split.

pub mod cert;
pub mod client_payload;
pub mod framing;
#[doc(hidden)]
pub mod fuzz_support;
pub mod handshake;
pub(crate) mod symmetric;
pub mod transport;

pub use cert::{CertDetails, CertError, CertRole, TrustRoot, VerifiedCertChain, verify_cert_chain};
pub use framing::{FrameDecoder, FrameError, connection_intro, encode_frame, encode_frame_into};
pub use handshake::{ClientHandshake, HandshakeError, VerifiedHandshake};
pub use transport::{IncomingCipher, OutgoingCipher, Transport, TransportError};

/// The Noise protocol name, NUL-padded to exactly 32 bytes. Because it is exactly one
/// hash length long it is used directly as the initial handshake hash (not hashed).
pub const NOISE_PROTOCOL_NAME: &[u8; 32] = b"Noise_XX_25519_AESGCM_SHA256\0\0\0\0";

/// Version of WhatsApp's binary XML token dictionary announced in the connection header.
pub const DICTIONARY_VERSION: u8 = 3;

/// The connection header `'W' 'A' 6 <dictionary version>`: sent once, in front of the first
/// frame of a connection, and the whole Noise prologue.
pub const CONNECTION_HEADER: [u8; 4] = [b'W', b'A', 6, DICTIONARY_VERSION];

/// Magic of the optional routing pre-intro `'E' 'D' 0 1` that may precede the connection
/// header (followed by a 3-byte big-endian length and the routing info).
pub const ROUTING_PREINTRO_MAGIC: [u8; 4] = [b'E', b'D', 0, 1];

/// Length of the big-endian length prefix in front of every frame.
pub const FRAME_LENGTH_PREFIX: usize = 3;

/// Frames must be strictly shorter than this (`1 << 24`, WhatsApp's `FrameMaxSize`).
pub const FRAME_SIZE_LIMIT: usize = 1 << 24;

/// How long WhatsApp's clients wait for the ServerHello before giving up (the caller's
/// I/O layer enforces it; this module has no clock).
pub const SERVER_HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// Length of the AES-GCM authentication tag appended to every ciphertext.
pub const AEAD_TAG_LEN: usize = 16;
