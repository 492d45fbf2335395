//! The Noise symmetric state (`h`, `ck`, the handshake cipher key and its nonce counter)
//! with WhatsApp's exact operations. Shared by the client initiator and the simulator's
//! responder so both sides run the same code.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::NOISE_PROTOCOL_NAME;
use crate::signal::curve::{PrivateKey, PublicKey};

/// Why a symmetric-state operation failed (the handshake adds which step it was).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CryptoFailure {
    /// AES-GCM refused the ciphertext (wrong key, wrong transcript or tampering).
    Decrypt,
    /// AES-GCM refused to encrypt (input beyond its size limit).
    Encrypt,
    /// The Diffie-Hellman result was all zeros: the peer sent a low-order point.
    WeakKey,
    /// Encrypt/decrypt before any key was mixed in, or the nonce counter ran out.
    State,
}

/// The 12-byte nonce WhatsApp uses: eight zero bytes, then the counter big-endian.
pub(crate) fn nonce_bytes(counter: u32) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[8..].copy_from_slice(&counter.to_be_bytes());
    n
}

/// HKDF-SHA256 with `salt`, `ikm`, empty info, 64 bytes out, split in two 32-byte halves.
pub(crate) fn hkdf_split(
    salt: &[u8; 32],
    ikm: &[u8],
) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    let mut okm = Zeroizing::new([0u8; 64]);
    // 64 bytes is far below HKDF-SHA256's 8160-byte output limit; this cannot fail.
    hk.expand(&[], okm.as_mut_slice())
        .expect("HKDF-SHA256 expands to 64 bytes");
    let mut first = Zeroizing::new([0u8; 32]);
    let mut second = Zeroizing::new([0u8; 32]);
    first.copy_from_slice(&okm[..32]);
    second.copy_from_slice(&okm[32..]);
    (first, second)
}

/// X25519 agreement that refuses an all-zero result (a low-order peer point), as Go's
/// `curve25519.X25519` does in whatsmeow.
pub(crate) fn agree(
    private: &PrivateKey,
    public: &PublicKey,
) -> Result<Zeroizing<[u8; 32]>, CryptoFailure> {
    let shared = Zeroizing::new(private.agree(public));
    if bool::from(shared.ct_eq(&[0u8; 32])) {
        return Err(CryptoFailure::WeakKey);
    }
    Ok(shared)
}

/// `h`, `ck` and the current handshake key with its shared encrypt/decrypt counter.
pub(crate) struct SymmetricState {
    hash: [u8; 32],
    chaining_key: Zeroizing<[u8; 32]>,
    cipher: Option<Aes256Gcm>,
    counter: u32,
}

impl SymmetricState {
    /// `h = ck = NOISE_PROTOCOL_NAME` (raw, not hashed), then `MixHash(prologue)`.
    pub(crate) fn new(prologue: &[u8]) -> Self {
        let mut state = SymmetricState {
            hash: *NOISE_PROTOCOL_NAME,
            chaining_key: Zeroizing::new(*NOISE_PROTOCOL_NAME),
            cipher: None,
            counter: 0,
        };
        state.mix_hash(prologue);
        state
    }

    /// `h = SHA256(h || data)`.
    pub(crate) fn mix_hash(&mut self, data: &[u8]) {
        let mut hasher = Sha256::new();
        hasher.update(self.hash);
        hasher.update(data);
        self.hash = hasher.finalize().into();
    }

    /// `ck, k = HKDF(ck, ikm)`; resets the nonce counter.
    pub(crate) fn mix_key(&mut self, ikm: &[u8]) {
        let (chaining_key, key) = hkdf_split(&self.chaining_key, ikm);
        self.chaining_key = chaining_key;
        self.cipher = Some(Aes256Gcm::new(key.as_ref().into()));
        self.counter = 0;
    }

    /// `MixKey(DH(private, public))`, refusing low-order points.
    pub(crate) fn mix_dh(
        &mut self,
        private: &PrivateKey,
        public: &PublicKey,
    ) -> Result<(), CryptoFailure> {
        let shared = agree(private, public)?;
        self.mix_key(shared.as_ref());
        Ok(())
    }

    fn next_nonce(&mut self) -> Result<[u8; 12], CryptoFailure> {
        let n = nonce_bytes(self.counter);
        self.counter = self.counter.checked_add(1).ok_or(CryptoFailure::State)?;
        Ok(n)
    }

    /// `c = AES-GCM(k, n++, plaintext, aad = h)`; `MixHash(c)`.
    pub(crate) fn encrypt_and_hash(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoFailure> {
        let nonce = self.next_nonce()?;
        let cipher = self.cipher.as_ref().ok_or(CryptoFailure::State)?;
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &self.hash,
                },
            )
            .map_err(|_| CryptoFailure::Encrypt)?;
        self.mix_hash(&ciphertext);
        Ok(ciphertext)
    }

    /// `p = AES-GCM-open(k, n++, ciphertext, aad = h)`; `MixHash(ciphertext)`.
    pub(crate) fn decrypt_and_hash(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoFailure> {
        let nonce = self.next_nonce()?;
        let cipher = self.cipher.as_ref().ok_or(CryptoFailure::State)?;
        let plaintext = cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: ciphertext,
                    aad: &self.hash,
                },
            )
            .map_err(|_| CryptoFailure::Decrypt)?;
        self.mix_hash(ciphertext);
        Ok(plaintext)
    }

    /// `Split()`: HKDF(ck, empty) → (first half, second half). The client writes with the
    /// first half, the server with the second.
    pub(crate) fn split(self) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
        hkdf_split(&self.chaining_key, &[])
    }

    /// The current handshake hash `h` (public transcript hash).
    #[cfg(test)]
    pub(crate) fn hash(&self) -> [u8; 32] {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_hash_is_the_raw_name_then_the_prologue() {
        let s = SymmetricState::new(b"WA\x06\x03");
        let mut expect = Sha256::new();
        expect.update(NOISE_PROTOCOL_NAME);
        expect.update(b"WA\x06\x03");
        let expect: [u8; 32] = expect.finalize().into();
        assert_eq!(s.hash(), expect);
        assert_eq!(NOISE_PROTOCOL_NAME.len(), 32);
    }

    #[test]
    fn nonce_layout() {
        assert_eq!(nonce_bytes(0), [0; 12]);
        assert_eq!(
            nonce_bytes(0x01020304),
            [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]
        );
    }

    #[test]
    fn no_key_no_encryption() {
        let mut s = SymmetricState::new(b"");
        assert_eq!(s.encrypt_and_hash(b"x"), Err(CryptoFailure::State));
    }

    #[test]
    fn low_order_points_are_refused() {
        let key = PrivateKey::from_bytes(&[7u8; 32]).unwrap();
        assert_eq!(
            agree(&key, &PublicKey([0u8; 32])).map(|_| ()),
            Err(CryptoFailure::WeakKey)
        );
        let mut one = [0u8; 32];
        one[0] = 1;
        assert_eq!(
            agree(&key, &PublicKey(one)).map(|_| ()),
            Err(CryptoFailure::WeakKey)
        );
    }

    #[test]
    fn both_sides_agree_and_tampering_is_caught() {
        let mut a = SymmetricState::new(b"p");
        let mut b = SymmetricState::new(b"p");
        a.mix_key(b"ikm");
        b.mix_key(b"ikm");
        let c = a.encrypt_and_hash(b"hello").unwrap();
        assert_eq!(c.len(), 5 + 16);
        assert_eq!(b.decrypt_and_hash(&c).unwrap(), b"hello");
        assert_eq!(a.hash(), b.hash());
        let c2 = a.encrypt_and_hash(b"again").unwrap();
        let mut bad = c2.clone();
        bad[0] ^= 1;
        assert_eq!(b.decrypt_and_hash(&bad), Err(CryptoFailure::Decrypt));
        let (a1, a2) = a.split();
        assert_ne!(*a1, *a2);
    }
}
