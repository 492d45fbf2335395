//! The key schedule of the Double Ratchet and of sender keys: root keys, chain keys and
//! message keys, with libsignal's constants (PROTOCOL.md §8.3–8.6).
//!
//! * chain step: message-key seed = HMAC(chainKey, 0x01), next chain key = HMAC(chainKey, 0x02)
//! * pairwise message keys: HKDF(seed, "WhisperMessageKeys", 80) = cipher key ‖ MAC key ‖ IV
//! * root step: HKDF(salt = rootKey, DH, "WhisperRatchet", 64) = new root ‖ chain key
//! * sender message keys: HKDF(seed, "WhisperGroup", 48) = IV ‖ cipher key
//!
//! Every key type is zeroized on drop and prints as `<redacted>`.

use hmac::Mac;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::SignalError;
use super::crypto::{hkdf, hmac_keyed};
use super::curve::{PrivateKey, PublicKey};

const MESSAGE_KEY_SEED: u8 = 0x01;
const CHAIN_KEY_SEED: u8 = 0x02;
const WHISPER_TEXT: &[u8] = b"WhisperText";
const WHISPER_RATCHET: &[u8] = b"WhisperRatchet";
const WHISPER_MESSAGE_KEYS: &[u8] = b"WhisperMessageKeys";
const WHISPER_GROUP: &[u8] = b"WhisperGroup";

/// One HMAC keyed with `key`, evaluated on 0x01 and 0x02: (message seed, next key).
fn chain_step(key: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    let keyed = hmac_keyed(key);
    let seed = keyed
        .clone()
        .chain_update([MESSAGE_KEY_SEED])
        .finalize()
        .into_bytes();
    let next = keyed.chain_update([CHAIN_KEY_SEED]).finalize().into_bytes();
    (seed.into(), next.into())
}

/// A root key of the Double Ratchet.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct RootKey([u8; 32]);

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RootKey(<redacted>)")
    }
}

impl RootKey {
    pub(crate) fn new(key: [u8; 32]) -> Self {
        RootKey(key)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The root step: DH(`ours`, `their_ratchet`) mixed into this root key gives the next
    /// root key and a fresh chain key at index 0.
    pub(crate) fn create_chain(
        &self,
        their_ratchet: &PublicKey,
        ours: &PrivateKey,
    ) -> (RootKey, ChainKey) {
        let mut shared = ours.agree(their_ratchet);
        let (root, chain) = derive_root_and_chain(Some(&self.0), &shared, WHISPER_RATCHET);
        shared.zeroize();
        (root, chain)
    }
}

/// HKDF to 64 bytes split into (root key, chain key at index 0).
fn derive_root_and_chain(salt: Option<&[u8; 32]>, ikm: &[u8], info: &[u8]) -> (RootKey, ChainKey) {
    let mut okm = [0u8; 64];
    hkdf(salt, ikm, info, &mut okm);
    let mut root = [0u8; 32];
    let mut chain = [0u8; 32];
    root.copy_from_slice(&okm[..32]);
    chain.copy_from_slice(&okm[32..]);
    okm.zeroize();
    (RootKey(root), ChainKey::new(chain, 0))
}

/// The X3DH master secret (`0xFF×32 ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4]`) to (root key, chain key).
pub(crate) fn derive_initial_keys(secret: &[u8]) -> (RootKey, ChainKey) {
    derive_root_and_chain(None, secret, WHISPER_TEXT)
}

/// A sending or receiving chain key with the index of the next message.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct ChainKey {
    key: [u8; 32],
    index: u32,
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChainKey(index {}, <redacted>)", self.index)
    }
}

impl ChainKey {
    pub(crate) fn new(key: [u8; 32], index: u32) -> Self {
        ChainKey { key, index }
    }

    /// Index of the next message this chain produces.
    pub fn index(&self) -> u32 {
        self.index
    }

    pub(crate) fn key_bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// The message keys for [`index`](Self::index) and the chain key after it.
    /// Fails only when the index would pass `u32::MAX`.
    pub(crate) fn step(&self) -> Result<(MessageKeys, ChainKey), SignalError> {
        let next_index = self
            .index
            .checked_add(1)
            .ok_or(SignalError::ChainExhausted)?;
        let (mut seed, next) = chain_step(&self.key);
        let keys = MessageKeys::derive(&seed, self.index);
        seed.zeroize();
        Ok((keys, ChainKey::new(next, next_index)))
    }
}

/// The keys of one pairwise message: AES-256 key, HMAC key and CBC IV.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct MessageKeys {
    pub(crate) cipher_key: [u8; 32],
    pub(crate) mac_key: [u8; 32],
    pub(crate) iv: [u8; 16],
    pub(crate) counter: u32,
}

impl std::fmt::Debug for MessageKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MessageKeys(counter {}, <redacted>)", self.counter)
    }
}

impl MessageKeys {
    fn derive(seed: &[u8; 32], counter: u32) -> Self {
        let mut okm = [0u8; 80];
        hkdf(None, seed, WHISPER_MESSAGE_KEYS, &mut okm);
        let mut keys = MessageKeys {
            cipher_key: [0; 32],
            mac_key: [0; 32],
            iv: [0; 16],
            counter,
        };
        keys.cipher_key.copy_from_slice(&okm[..32]);
        keys.mac_key.copy_from_slice(&okm[32..64]);
        keys.iv.copy_from_slice(&okm[64..]);
        okm.zeroize();
        keys
    }

    /// The message counter these keys belong to.
    pub fn counter(&self) -> u32 {
        self.counter
    }
}

/// A sender-key chain key with its iteration.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SenderChainKey {
    iteration: u32,
    seed: [u8; 32],
}

impl std::fmt::Debug for SenderChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SenderChainKey(iteration {}, <redacted>)",
            self.iteration
        )
    }
}

impl SenderChainKey {
    pub(crate) fn new(iteration: u32, seed: [u8; 32]) -> Self {
        SenderChainKey { iteration, seed }
    }

    /// Iteration of the next message this chain produces.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    pub(crate) fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// The message key for [`iteration`](Self::iteration) and the chain key after it.
    pub(crate) fn step(&self) -> Result<(SenderMessageKey, SenderChainKey), SignalError> {
        let next_iteration = self
            .iteration
            .checked_add(1)
            .ok_or(SignalError::ChainExhausted)?;
        let (seed, next) = chain_step(&self.seed);
        Ok((
            SenderMessageKey::new(self.iteration, seed),
            SenderChainKey::new(next_iteration, next),
        ))
    }
}

/// The seed of one sender-key message key (what skipped-key storage keeps).
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SenderMessageKey {
    pub(crate) iteration: u32,
    pub(crate) seed: [u8; 32],
}

impl std::fmt::Debug for SenderMessageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SenderMessageKey(iteration {}, <redacted>)",
            self.iteration
        )
    }
}

/// The AES key and IV of one sender-key message.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct SenderCipherKeys {
    pub(crate) iv: [u8; 16],
    pub(crate) cipher_key: [u8; 32],
}

impl SenderMessageKey {
    pub(crate) fn new(iteration: u32, seed: [u8; 32]) -> Self {
        SenderMessageKey { iteration, seed }
    }

    /// The iteration this key belongs to.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// HKDF(seed, "WhisperGroup", 48) = IV (16) ‖ cipher key (32).
    pub(crate) fn cipher_keys(&self) -> SenderCipherKeys {
        let mut okm = [0u8; 48];
        hkdf(None, &self.seed, WHISPER_GROUP, &mut okm);
        let mut keys = SenderCipherKeys {
            iv: [0; 16],
            cipher_key: [0; 32],
        };
        keys.iv.copy_from_slice(&okm[..16]);
        keys.cipher_key.copy_from_slice(&okm[16..]);
        okm.zeroize();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::Mac;

    fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
        crate::signal::crypto::hmac_keyed(key)
            .chain_update(data)
            .finalize()
            .into_bytes()
            .into()
    }

    #[test]
    fn chain_step_matches_the_definition() {
        let ck = ChainKey::new([7u8; 32], 5);
        let (mk, next) = ck.step().unwrap();
        assert_eq!(next.index(), 6);
        assert_eq!(next.key_bytes(), &hmac(&[7u8; 32], &[2]));
        let seed = hmac(&[7u8; 32], &[1]);
        let mut okm = [0u8; 80];
        hkdf::Hkdf::<sha2::Sha256>::new(None, &seed)
            .expand(b"WhisperMessageKeys", &mut okm)
            .unwrap();
        assert_eq!(&mk.cipher_key[..], &okm[..32]);
        assert_eq!(&mk.mac_key[..], &okm[32..64]);
        assert_eq!(&mk.iv[..], &okm[64..]);
        assert_eq!(mk.counter(), 5);
        assert_eq!(
            ChainKey::new([0; 32], u32::MAX).step().unwrap_err(),
            SignalError::ChainExhausted
        );
    }

    #[test]
    fn sender_keys_are_iv_then_key() {
        let mk = SenderMessageKey::new(0, [9u8; 32]);
        let keys = mk.cipher_keys();
        let mut okm = [0u8; 48];
        hkdf::Hkdf::<sha2::Sha256>::new(None, &[9u8; 32])
            .expand(b"WhisperGroup", &mut okm)
            .unwrap();
        assert_eq!(&keys.iv[..], &okm[..16]);
        assert_eq!(&keys.cipher_key[..], &okm[16..]);
    }

    #[test]
    fn debug_is_redacted() {
        let ck = ChainKey::new([0xAB; 32], 1);
        let text = format!(
            "{ck:?} {:?} {:?}",
            RootKey::new([0xAB; 32]),
            ck.step().unwrap().0
        );
        assert!(!text.contains("ab") && !text.contains("171"), "{text}");
        assert!(text.contains("redacted"));
    }
}
