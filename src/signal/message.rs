//! The Signal wire formats (PROTOCOL.md §8.5): SignalMessage (`enc type="msg"`),
//! PreKeySignalMessage (`pkmsg`), SenderKeyMessage (`skmsg`) and
//! SenderKeyDistributionMessage (inside `Message.senderKeyDistributionMessage`).
//!
//! Every message starts with the version byte `0x33` (message version 3 in the high
//! nibble, current version 3 in the low one). Bodies are protobuf
//! (`proto/signal.proto`); decoding uses the prost-generated types, encoding writes the
//! same bytes by hand straight into one buffer (the hot path), in field-number order
//! like libsignal. Tests check both against prost and, in `tests/interop_signal.rs`,
//! against WhatsApp's schema compiled by protobufjs.

use hmac::Mac;
use prost::Message;

use super::SignalError;
use super::crypto::{aes_cbc_encrypt_into, cbc_ciphertext_len, hmac_keyed};
use super::curve::{PublicKey, SIGNATURE_LEN};
use super::ratchet::MessageKeys;
use crate::proto::signal as pb;

/// The Signal message version WhatsApp uses.
pub const MESSAGE_VERSION: u8 = 3;
/// The version byte in front of every message: `(3 << 4) | 3`.
pub const VERSION_BYTE: u8 = (MESSAGE_VERSION << 4) | MESSAGE_VERSION;
/// Length of the truncated HMAC-SHA256 after a SignalMessage.
pub const MAC_LEN: usize = 8;
/// Length of a serialized public key inside Signal structures (`0x05 ‖ key`).
pub const SERIALIZED_KEY_LEN: usize = 33;

// ---------------------------------------------------------------------------------
// Hand-written protobuf encoding (wire types 0 and 2 only).

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn uint_field_len(field: u32, v: u32) -> usize {
    varint_len(u64::from(field << 3)) + varint_len(u64::from(v))
}

fn put_uint_field(out: &mut Vec<u8>, field: u32, v: u32) {
    put_varint(out, u64::from(field << 3));
    put_varint(out, u64::from(v));
}

fn bytes_field_len(field: u32, len: usize) -> usize {
    varint_len(u64::from((field << 3) | 2)) + varint_len(len as u64) + len
}

fn put_bytes_header(out: &mut Vec<u8>, field: u32, len: usize) {
    put_varint(out, u64::from((field << 3) | 2));
    put_varint(out, len as u64);
}

fn put_bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_bytes_header(out, field, bytes.len());
    out.extend_from_slice(bytes);
}

// ---------------------------------------------------------------------------------
// Parsing helpers.

fn check_version(message: &'static str, first: Option<&u8>) -> Result<(), SignalError> {
    let &b = first.ok_or(SignalError::Malformed {
        message,
        detail: "empty",
    })?;
    if b >> 4 != MESSAGE_VERSION {
        return Err(SignalError::UnsupportedVersion {
            message,
            version: b >> 4,
        });
    }
    Ok(())
}

fn decode_pb<T: Message + Default>(message: &'static str, body: &[u8]) -> Result<T, SignalError> {
    T::decode(body).map_err(|_| SignalError::Malformed {
        message,
        detail: "body is not valid protobuf",
    })
}

fn key_field(
    message: &'static str,
    context: &'static str,
    field: Option<Vec<u8>>,
) -> Result<PublicKey, SignalError> {
    let bytes = field.ok_or(SignalError::Malformed {
        message,
        detail: "a required key is missing",
    })?;
    PublicKey::deserialize(&bytes).map_err(|source| SignalError::BadKey { context, source })
}

fn required<T>(
    message: &'static str,
    v: Option<T>,
    detail: &'static str,
) -> Result<T, SignalError> {
    v.ok_or(SignalError::Malformed { message, detail })
}

// ---------------------------------------------------------------------------------

/// A parsed SignalMessage: `0x33 ‖ protobuf ‖ MAC(8)`.
#[derive(Clone, PartialEq, Eq)]
pub struct SignalMessage {
    ratchet_key: PublicKey,
    counter: u32,
    previous_counter: u32,
    ciphertext: Vec<u8>,
    serialized: Vec<u8>,
}

impl std::fmt::Debug for SignalMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalMessage")
            .field("ratchet_key", &self.ratchet_key)
            .field("counter", &self.counter)
            .field("previous_counter", &self.previous_counter)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

const SIGNAL_MESSAGE: &str = "SignalMessage";

impl SignalMessage {
    /// Encrypts `plaintext` with `keys` and serializes the message with its MAC, in one
    /// buffer. `sender`/`receiver` are the identity keys of the encrypting and the
    /// decrypting side.
    pub(crate) fn encrypt(
        keys: &MessageKeys,
        ratchet_key: &PublicKey,
        previous_counter: u32,
        sender: &PublicKey,
        receiver: &PublicKey,
        plaintext: &[u8],
    ) -> Vec<u8> {
        let ct_len = cbc_ciphertext_len(plaintext.len());
        let body_len = bytes_field_len(1, SERIALIZED_KEY_LEN)
            + uint_field_len(2, keys.counter)
            + uint_field_len(3, previous_counter)
            + bytes_field_len(4, ct_len);
        let mut out = Vec::with_capacity(1 + body_len + MAC_LEN);
        out.push(VERSION_BYTE);
        put_bytes_field(&mut out, 1, &ratchet_key.serialize());
        put_uint_field(&mut out, 2, keys.counter);
        put_uint_field(&mut out, 3, previous_counter);
        put_bytes_header(&mut out, 4, ct_len);
        aes_cbc_encrypt_into(&keys.cipher_key, &keys.iv, plaintext, &mut out);
        let mac = compute_mac(&keys.mac_key, sender, receiver, &out);
        out.extend_from_slice(&mac[..MAC_LEN]);
        out
    }

    /// Parses a serialized SignalMessage. Refuses a wrong version, a body that is not
    /// protobuf, and missing ratchet key, counter or ciphertext. The MAC is checked by
    /// the decrypting side, which knows the keys.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, SignalError> {
        check_version(SIGNAL_MESSAGE, bytes.first())?;
        if bytes.len() < 1 + MAC_LEN {
            return Err(SignalError::Malformed {
                message: SIGNAL_MESSAGE,
                detail: "shorter than version byte and MAC",
            });
        }
        let body = &bytes[1..bytes.len() - MAC_LEN];
        let msg: pb::SignalMessage = decode_pb(SIGNAL_MESSAGE, body)?;
        Ok(SignalMessage {
            ratchet_key: key_field(SIGNAL_MESSAGE, "SignalMessage ratchet key", msg.ratchet_key)?,
            counter: required(SIGNAL_MESSAGE, msg.counter, "counter is missing")?,
            previous_counter: msg.previous_counter.unwrap_or(0),
            ciphertext: required(SIGNAL_MESSAGE, msg.ciphertext, "ciphertext is missing")?,
            serialized: bytes.to_vec(),
        })
    }

    /// The sender's ratchet public key.
    pub fn ratchet_key(&self) -> &PublicKey {
        &self.ratchet_key
    }

    /// The message's index in the sender's chain.
    pub fn counter(&self) -> u32 {
        self.counter
    }

    /// The length of the sender's previous sending chain.
    pub fn previous_counter(&self) -> u32 {
        self.previous_counter
    }

    /// The AES-CBC ciphertext.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// The complete serialized message.
    pub fn serialized(&self) -> &[u8] {
        &self.serialized
    }

    /// Checks the truncated MAC in constant time.
    pub(crate) fn verify_mac(
        &self,
        sender: &PublicKey,
        receiver: &PublicKey,
        mac_key: &[u8; 32],
    ) -> bool {
        let split = self.serialized.len().saturating_sub(MAC_LEN);
        let (body, mac) = self.serialized.split_at(split);
        let mut m = hmac_keyed(mac_key);
        m.update(&sender.serialize());
        m.update(&receiver.serialize());
        m.update(body);
        m.verify_truncated_left(mac).is_ok()
    }
}

fn compute_mac(
    mac_key: &[u8; 32],
    sender: &PublicKey,
    receiver: &PublicKey,
    body: &[u8],
) -> [u8; 32] {
    let mut m = hmac_keyed(mac_key);
    m.update(&sender.serialize());
    m.update(&receiver.serialize());
    m.update(body);
    m.finalize().into_bytes().into()
}

/// A parsed PreKeySignalMessage: `0x33 ‖ protobuf`, carrying a complete SignalMessage.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PreKeySignalMessage {
    registration_id: u32,
    prekey_id: Option<u32>,
    signed_prekey_id: u32,
    base_key: PublicKey,
    identity_key: PublicKey,
    message: SignalMessage,
}

const PREKEY_MESSAGE: &str = "PreKeySignalMessage";

impl PreKeySignalMessage {
    /// Wraps a serialized SignalMessage (`message`) into a serialized
    /// PreKeySignalMessage, in libsignal's field order.
    pub(crate) fn serialize_parts(
        registration_id: u32,
        prekey_id: Option<u32>,
        signed_prekey_id: u32,
        base_key: &PublicKey,
        identity_key: &PublicKey,
        message: &[u8],
    ) -> Vec<u8> {
        let len = 1
            + prekey_id.map_or(0, |id| uint_field_len(1, id))
            + 2 * bytes_field_len(2, SERIALIZED_KEY_LEN)
            + bytes_field_len(4, message.len())
            + uint_field_len(5, registration_id)
            + uint_field_len(6, signed_prekey_id);
        let mut out = Vec::with_capacity(len);
        out.push(VERSION_BYTE);
        if let Some(id) = prekey_id {
            put_uint_field(&mut out, 1, id);
        }
        put_bytes_field(&mut out, 2, &base_key.serialize());
        put_bytes_field(&mut out, 3, &identity_key.serialize());
        put_bytes_field(&mut out, 4, message);
        put_uint_field(&mut out, 5, registration_id);
        put_uint_field(&mut out, 6, signed_prekey_id);
        out
    }

    /// Parses a serialized PreKeySignalMessage and the SignalMessage inside it. Refuses a
    /// wrong version, bad protobuf, and missing signed prekey id, base key, identity key
    /// or message (as libsignal does); the registration id defaults to 0.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, SignalError> {
        check_version(PREKEY_MESSAGE, bytes.first())?;
        let msg: pb::PreKeySignalMessage = decode_pb(PREKEY_MESSAGE, &bytes[1..])?;
        let signed_prekey_id = required(
            PREKEY_MESSAGE,
            msg.signed_pre_key_id,
            "signed prekey id is missing",
        )?;
        let base_key = key_field(PREKEY_MESSAGE, "PreKeySignalMessage base key", msg.base_key)?;
        let identity_key = key_field(
            PREKEY_MESSAGE,
            "PreKeySignalMessage identity key",
            msg.identity_key,
        )?;
        let inner = required(PREKEY_MESSAGE, msg.message, "inner message is missing")?;
        Ok(PreKeySignalMessage {
            registration_id: msg.registration_id.unwrap_or(0),
            prekey_id: msg.pre_key_id,
            signed_prekey_id,
            base_key,
            identity_key,
            message: SignalMessage::deserialize(&inner)?,
        })
    }

    /// The sender's registration id.
    pub fn registration_id(&self) -> u32 {
        self.registration_id
    }

    /// Our one-time prekey the sender used, if any.
    pub fn prekey_id(&self) -> Option<u32> {
        self.prekey_id
    }

    /// Our signed prekey the sender used.
    pub fn signed_prekey_id(&self) -> u32 {
        self.signed_prekey_id
    }

    /// The sender's X3DH base key (identifies the session).
    pub fn base_key(&self) -> &PublicKey {
        &self.base_key
    }

    /// The sender's identity key.
    pub fn identity_key(&self) -> &PublicKey {
        &self.identity_key
    }

    /// The SignalMessage inside.
    pub fn message(&self) -> &SignalMessage {
        &self.message
    }
}

/// The output of a pairwise encryption: what goes into `<enc type="…">`.
#[derive(Clone, PartialEq, Eq)]
pub enum CiphertextMessage {
    /// A PreKeySignalMessage (`type="pkmsg"`): sent until the peer has answered.
    PreKey(Vec<u8>),
    /// A SignalMessage (`type="msg"`).
    Whisper(Vec<u8>),
}

impl std::fmt::Debug for CiphertextMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CiphertextMessage::{}({} bytes)",
            self.enc_type(),
            self.bytes().len()
        )
    }
}

impl CiphertextMessage {
    /// The `<enc type>` attribute: `pkmsg` or `msg`.
    pub fn enc_type(&self) -> &'static str {
        match self {
            CiphertextMessage::PreKey(_) => "pkmsg",
            CiphertextMessage::Whisper(_) => "msg",
        }
    }

    /// The serialized message.
    pub fn bytes(&self) -> &[u8] {
        match self {
            CiphertextMessage::PreKey(b) | CiphertextMessage::Whisper(b) => b,
        }
    }

    /// The serialized message, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            CiphertextMessage::PreKey(b) | CiphertextMessage::Whisper(b) => b,
        }
    }
}

/// A parsed SenderKeyMessage: `0x33 ‖ protobuf ‖ signature(64)`.
#[derive(Clone, PartialEq, Eq)]
pub struct SenderKeyMessage {
    key_id: u32,
    iteration: u32,
    ciphertext: Vec<u8>,
    serialized: Vec<u8>,
}

impl std::fmt::Debug for SenderKeyMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderKeyMessage")
            .field("key_id", &self.key_id)
            .field("iteration", &self.iteration)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

const SENDER_KEY_MESSAGE: &str = "SenderKeyMessage";

impl SenderKeyMessage {
    /// Encrypts and serializes the unsigned part (`0x33 ‖ protobuf`); the caller appends
    /// the signature.
    pub(crate) fn encrypt_unsigned(
        key_id: u32,
        iteration: u32,
        iv: &[u8; 16],
        cipher_key: &[u8; 32],
        plaintext: &[u8],
    ) -> Vec<u8> {
        let ct_len = cbc_ciphertext_len(plaintext.len());
        let len = 1
            + uint_field_len(1, key_id)
            + uint_field_len(2, iteration)
            + bytes_field_len(3, ct_len)
            + SIGNATURE_LEN;
        let mut out = Vec::with_capacity(len);
        out.push(VERSION_BYTE);
        put_uint_field(&mut out, 1, key_id);
        put_uint_field(&mut out, 2, iteration);
        put_bytes_header(&mut out, 3, ct_len);
        aes_cbc_encrypt_into(cipher_key, iv, plaintext, &mut out);
        out
    }

    /// Parses a serialized SenderKeyMessage. Refuses a wrong version, input too short for
    /// the signature, bad protobuf and missing id, iteration or ciphertext. The signature
    /// is checked against the sender's signing key by the decrypting side.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, SignalError> {
        check_version(SENDER_KEY_MESSAGE, bytes.first())?;
        if bytes.len() < 1 + SIGNATURE_LEN {
            return Err(SignalError::Malformed {
                message: SENDER_KEY_MESSAGE,
                detail: "shorter than version byte and signature",
            });
        }
        let body = &bytes[1..bytes.len() - SIGNATURE_LEN];
        let msg: pb::SenderKeyMessage = decode_pb(SENDER_KEY_MESSAGE, body)?;
        Ok(SenderKeyMessage {
            key_id: required(SENDER_KEY_MESSAGE, msg.id, "key id is missing")?,
            iteration: required(SENDER_KEY_MESSAGE, msg.iteration, "iteration is missing")?,
            ciphertext: required(SENDER_KEY_MESSAGE, msg.ciphertext, "ciphertext is missing")?,
            serialized: bytes.to_vec(),
        })
    }

    /// The sender key id (selects the state).
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The message's iteration in the sender-key chain.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The AES-CBC ciphertext.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// The complete serialized message.
    pub fn serialized(&self) -> &[u8] {
        &self.serialized
    }

    /// Verifies the XEdDSA signature over `0x33 ‖ protobuf` with `signing_key`.
    pub fn verify_signature(&self, signing_key: &PublicKey) -> bool {
        let split = self.serialized.len().saturating_sub(SIGNATURE_LEN);
        let (body, sig) = self.serialized.split_at(split);
        signing_key.verify(body, sig)
    }
}

/// A SenderKeyDistributionMessage: `0x33 ‖ protobuf { id, iteration, chainKey, signingKey }`.
#[derive(Clone, PartialEq, Eq)]
pub struct SenderKeyDistributionMessage {
    key_id: u32,
    iteration: u32,
    chain_key: [u8; 32],
    signing_key: PublicKey,
}

impl std::fmt::Debug for SenderKeyDistributionMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderKeyDistributionMessage")
            .field("key_id", &self.key_id)
            .field("iteration", &self.iteration)
            .field("chain_key", &"<redacted>")
            .field("signing_key", &self.signing_key)
            .finish()
    }
}

impl Drop for SenderKeyDistributionMessage {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.chain_key);
    }
}

const SKDM: &str = "SenderKeyDistributionMessage";

impl SenderKeyDistributionMessage {
    pub(crate) fn new(
        key_id: u32,
        iteration: u32,
        chain_key: [u8; 32],
        signing_key: PublicKey,
    ) -> Self {
        SenderKeyDistributionMessage {
            key_id,
            iteration,
            chain_key,
            signing_key,
        }
    }

    /// Serializes as `0x33 ‖ protobuf` (what goes into
    /// `axolotlSenderKeyDistributionMessage`).
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            1 + uint_field_len(1, self.key_id)
                + uint_field_len(2, self.iteration)
                + bytes_field_len(3, 32)
                + bytes_field_len(4, SERIALIZED_KEY_LEN),
        );
        out.push(VERSION_BYTE);
        put_uint_field(&mut out, 1, self.key_id);
        put_uint_field(&mut out, 2, self.iteration);
        put_bytes_field(&mut out, 3, &self.chain_key);
        put_bytes_field(&mut out, 4, &self.signing_key.serialize());
        out
    }

    /// Parses a serialized SKDM. Refuses a wrong version, bad protobuf, missing fields, a
    /// chain key that is not 32 bytes and a signing key that is not a 33-byte key.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, SignalError> {
        check_version(SKDM, bytes.first())?;
        let msg: pb::SenderKeyDistributionMessage = decode_pb(SKDM, &bytes[1..])?;
        let mut chain = required(SKDM, msg.chain_key, "chain key is missing")?;
        let chain_key =
            <[u8; 32]>::try_from(chain.as_slice()).map_err(|_| SignalError::Malformed {
                message: SKDM,
                detail: "chain key is not 32 bytes",
            });
        zeroize::Zeroize::zeroize(&mut chain);
        Ok(SenderKeyDistributionMessage {
            key_id: required(SKDM, msg.id, "key id is missing")?,
            iteration: required(SKDM, msg.iteration, "iteration is missing")?,
            chain_key: chain_key?,
            signing_key: key_field(SKDM, "SKDM signing key", msg.signing_key)?,
        })
    }

    /// The sender key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The chain iteration the chain key belongs to.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    pub(crate) fn chain_key(&self) -> &[u8; 32] {
        &self.chain_key
    }

    /// The sender's public signing key.
    pub fn signing_key(&self) -> &PublicKey {
        &self.signing_key
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::curve::KeyPair;
    use crate::signal::ratchet::ChainKey;
    use proptest::prelude::*;
    use rand::rngs::OsRng;

    #[test]
    fn hand_encoding_equals_prost() {
        let ratchet = KeyPair::generate(&mut OsRng).public;
        let a = KeyPair::generate(&mut OsRng).public;
        let b = KeyPair::generate(&mut OsRng).public;
        for (counter, prev, len) in [
            (0u32, 0u32, 0usize),
            (5, 3, 150),
            (300, 70000, 1000),
            (u32::MAX - 1, u32::MAX, 17),
        ] {
            let (keys, _) = ChainKey::new([1; 32], counter).step().unwrap();
            let bytes = SignalMessage::encrypt(&keys, &ratchet, prev, &a, &b, &vec![7u8; len]);
            let parsed = SignalMessage::deserialize(&bytes).unwrap();
            let expect = pb::SignalMessage {
                ratchet_key: Some(ratchet.serialize().to_vec()),
                counter: Some(counter),
                previous_counter: Some(prev),
                ciphertext: Some(parsed.ciphertext().to_vec()),
            }
            .encode_to_vec();
            assert_eq!(&bytes[1..bytes.len() - MAC_LEN], &expect[..]);
            assert_eq!(bytes[0], 0x33);
            assert!(parsed.verify_mac(&a, &b, &keys.mac_key));
            assert!(!parsed.verify_mac(&b, &a, &keys.mac_key));

            for prekey_id in [None, Some(0xFF_FFFF)] {
                let pk = PreKeySignalMessage::serialize_parts(16380, prekey_id, 7, &a, &b, &bytes);
                let expect = pb::PreKeySignalMessage {
                    pre_key_id: prekey_id,
                    base_key: Some(a.serialize().to_vec()),
                    identity_key: Some(b.serialize().to_vec()),
                    message: Some(bytes.clone()),
                    registration_id: Some(16380),
                    signed_pre_key_id: Some(7),
                }
                .encode_to_vec();
                assert_eq!(&pk[1..], &expect[..]);
                let parsed = PreKeySignalMessage::deserialize(&pk).unwrap();
                assert_eq!(parsed.prekey_id(), prekey_id);
                assert_eq!(parsed.message().serialized(), &bytes[..]);
            }
        }
        let skdm = SenderKeyDistributionMessage::new(0x7FFF_FFFF, 12, [3; 32], a);
        let ser = skdm.serialize();
        let expect = pb::SenderKeyDistributionMessage {
            id: Some(0x7FFF_FFFF),
            iteration: Some(12),
            chain_key: Some(vec![3; 32]),
            signing_key: Some(a.serialize().to_vec()),
        }
        .encode_to_vec();
        assert_eq!(&ser[1..], &expect[..]);
        assert_eq!(
            SenderKeyDistributionMessage::deserialize(&ser).unwrap(),
            skdm
        );

        let sk = SenderKeyMessage::encrypt_unsigned(9, 4, &[0; 16], &[1; 32], b"hi");
        let decoded = pb::SenderKeyMessage::decode(&sk[1..]).unwrap();
        assert_eq!(decoded.encode_to_vec(), &sk[1..]);
        assert_eq!(decoded.id, Some(9));
    }

    #[test]
    fn parsers_refuse_bad_input() {
        assert!(matches!(
            SignalMessage::deserialize(&[]),
            Err(SignalError::Malformed { .. })
        ));
        assert!(matches!(
            SignalMessage::deserialize(&[0x23, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(SignalError::UnsupportedVersion { version: 2, .. })
        ));
        assert!(matches!(
            SignalMessage::deserialize(&[0x33, 1, 2]),
            Err(SignalError::Malformed { .. })
        ));
        // Valid protobuf without the required fields.
        assert!(matches!(
            SignalMessage::deserialize(&[0x33; 9]),
            Err(SignalError::Malformed { .. })
        ));
        let mut bad_key = vec![0x33];
        put_bytes_field(&mut bad_key, 1, &[6u8; 33]);
        put_uint_field(&mut bad_key, 2, 0);
        put_bytes_field(&mut bad_key, 4, &[0; 16]);
        bad_key.extend_from_slice(&[0; 8]);
        assert!(matches!(
            SignalMessage::deserialize(&bad_key),
            Err(SignalError::BadKey { .. })
        ));
        assert!(PreKeySignalMessage::deserialize(&[0x33]).is_err());
        assert!(SenderKeyMessage::deserialize(&[0x33; 64]).is_err());
        assert!(SenderKeyDistributionMessage::deserialize(&[0x43]).is_err());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = SignalMessage::deserialize(&data);
            let _ = PreKeySignalMessage::deserialize(&data);
            let _ = SenderKeyMessage::deserialize(&data);
            let _ = SenderKeyDistributionMessage::deserialize(&data);
        }

        #[test]
        fn varints_match_prost(v in any::<u64>()) {
            let mut ours = Vec::new();
            put_varint(&mut ours, v);
            let mut theirs = Vec::new();
            prost::encoding::encode_varint(v, &mut theirs);
            prop_assert_eq!(&ours, &theirs);
            prop_assert_eq!(varint_len(v), ours.len());
        }
    }
}
