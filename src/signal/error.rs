//! Errors of the Signal engine. Every failure on network input is one of these, never a
//! panic; the messages say which message or record was refused and why.

use super::curve::CurveError;

/// Why a persisted record (session, sender key, prekey, identity) could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes are not a protobuf of the expected record type.
    #[error("{record} record is not valid protobuf: {detail}")]
    Decode {
        /// Which record type was being read.
        record: &'static str,
        /// The protobuf decoder's message.
        detail: String,
    },
    /// The record was written by a layout this build does not know.
    #[error("{record} record has version {found:?}, this build reads version {expected}")]
    UnknownVersion {
        /// Which record type was being read.
        record: &'static str,
        /// The version stored in the record (None when the field is missing).
        found: Option<u32>,
        /// The version this build writes and reads.
        expected: u32,
    },
    /// A field is missing or has an impossible value.
    #[error("{record} record is invalid: {detail}")]
    Invalid {
        /// Which record type was being read.
        record: &'static str,
        /// What is wrong.
        detail: &'static str,
    },
}

/// Errors from building sessions, encrypting and decrypting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    /// A wire message could not be parsed.
    #[error("malformed {message}: {detail}")]
    Malformed {
        /// Which message type (`SignalMessage`, `PreKeySignalMessage`, ...).
        message: &'static str,
        /// What is wrong with it.
        detail: &'static str,
    },
    /// A wire message carries a version other than 3 (`0x33`).
    #[error("{message} has unsupported version {version} (only version 3 is supported)")]
    UnsupportedVersion {
        /// Which message type.
        message: &'static str,
        /// The version nibble found (the high 4 bits of the first byte).
        version: u8,
    },
    /// A key inside a message or bundle is not a valid 33-byte Curve25519 key.
    #[error("bad key in {context}: {source}")]
    BadKey {
        /// Where the key was found.
        context: &'static str,
        /// What is wrong with it.
        source: CurveError,
    },
    /// The signed prekey signature of a bundle does not verify against its identity key.
    #[error("signed prekey {signed_prekey_id} in the bundle has an invalid signature")]
    InvalidSignedPreKeySignature {
        /// Id of the refused signed prekey.
        signed_prekey_id: u32,
    },
    /// The record holds no session state to encrypt with.
    #[error("no session with this address: build one from a prekey bundle first")]
    NoSession,
    /// The state has no sending chain (a corrupt or half-built session).
    #[error("session state has no sending chain")]
    NoSendingChain,
    /// The SignalMessage MAC does not match: wrong session, forged or corrupted.
    #[error("SignalMessage MAC does not verify")]
    BadMac,
    /// AES-CBC decryption produced invalid PKCS#7 padding or a ciphertext of bad length.
    #[error("{message} ciphertext does not decrypt: {detail}")]
    BadCiphertext {
        /// Which message type.
        message: &'static str,
        /// What went wrong.
        detail: &'static str,
    },
    /// The message key for this counter was already used: a duplicate delivery.
    #[error(
        "duplicate message: counter {counter} was already received (chain is at {chain_index})"
    )]
    DuplicateMessage {
        /// The counter (or sender-key iteration) of the message.
        counter: u32,
        /// The next counter the chain expects.
        chain_index: u32,
    },
    /// The counter is more than 2000 ahead of the chain.
    #[error(
        "message counter {counter} is too far ahead of the chain at {chain_index} (limit {limit})"
    )]
    TooFarInFuture {
        /// The counter (or iteration) of the message.
        counter: u32,
        /// The next counter the chain expects.
        chain_index: u32,
        /// The largest accepted jump.
        limit: u32,
    },
    /// A chain counter would pass `u32::MAX`.
    #[error("chain counter exhausted")]
    ChainExhausted,
    /// No session state (current or archived) could decrypt the message.
    #[error("no session state decrypts this message ({tried} tried; current state: {current})")]
    NoValidSession {
        /// How many states were tried.
        tried: usize,
        /// Why the current state refused it.
        current: Box<SignalError>,
    },
    /// A PreKeySignalMessage for an existing session (same base key) carries an identity
    /// key other than the one that session was built with. The identity field is outside
    /// the MAC, so this is a forgery or a corrupted message.
    #[error(
        "PreKeySignalMessage identity key differs from the identity of the session with its base key"
    )]
    PreKeyIdentityMismatch,
    /// A PreKeySignalMessage names a signed prekey that the caller did not supply.
    #[error("signed prekey {0} named by the PreKeySignalMessage is not available")]
    MissingSignedPreKey(u32),
    /// A PreKeySignalMessage names a one-time prekey that the caller did not supply
    /// (already used, or never ours).
    #[error("one-time prekey {0} named by the PreKeySignalMessage is not available")]
    MissingPreKey(u32),
    /// The supplied prekey record's id does not match the one the message names.
    #[error("supplied {kind} {supplied} does not match the id {wanted} named by the message")]
    WrongPreKey {
        /// `signed prekey` or `one-time prekey`.
        kind: &'static str,
        /// Id of the supplied record.
        supplied: u32,
        /// Id named by the message.
        wanted: u32,
    },
    /// The sender-key record has no state for the key id of the message.
    #[error("no sender key state for key id {0}")]
    NoSenderKeyState(u32),
    /// The sender-key record is empty (no SKDM processed, or nothing created yet).
    #[error("no sender key for this group and sender")]
    NoSenderKey,
    /// Our own sender-key state has no private signing key (it came from an SKDM).
    #[error("sender key state has no private signing key: it is not our own")]
    NotOwnSenderKey,
    /// The SenderKeyMessage signature does not verify against the state's signing key.
    #[error("SenderKeyMessage signature does not verify")]
    BadSignature,
    /// A stored record could not be read.
    #[error(transparent)]
    Record(#[from] RecordError),
}
