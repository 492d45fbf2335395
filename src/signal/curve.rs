//! Curve25519 keys as libsignal and WhatsApp use them: X25519 agreement, the 33-byte
//! `0x05`-prefixed public key form, and XEdDSA signatures in libsignal's
//! "curve25519 sign" variant (the Edwards sign bit travels in the top bit of `sig[63]`).
//!
//! The curve arithmetic is curve25519-dalek / x25519-dalek; nothing here touches field
//! elements directly.

use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::Scalar;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The type byte in front of serialized Curve25519 public keys (`DJB_TYPE`).
pub const DJB_TYPE: u8 = 0x05;
/// Length of a raw Curve25519 key.
pub const KEY_LEN: usize = 32;
/// Length of an XEdDSA signature.
pub const SIGNATURE_LEN: usize = 64;

/// Errors from key parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CurveError {
    /// A public key had the wrong length or type byte.
    #[error("bad public key: {0}")]
    BadPublicKey(&'static str),
    /// A private key had the wrong length.
    #[error("bad private key length {0} (want 32)")]
    BadPrivateKey(usize),
}

/// A Curve25519 public key (Montgomery u-coordinate, 32 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; KEY_LEN]);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.0))
    }
}

impl PublicKey {
    /// The raw 32 bytes (the form used in WhatsApp XML nodes and in Noise).
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The 33-byte libsignal form: `0x05 || key`.
    pub fn serialize(&self) -> [u8; KEY_LEN + 1] {
        let mut out = [0u8; KEY_LEN + 1];
        out[0] = DJB_TYPE;
        out[1..].copy_from_slice(&self.0);
        out
    }

    /// Parses the 33-byte `0x05`-prefixed form. Refuses any other length or type byte.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, CurveError> {
        match bytes {
            [DJB_TYPE, rest @ ..] if rest.len() == KEY_LEN => {
                let mut k = [0u8; KEY_LEN];
                k.copy_from_slice(rest);
                Ok(PublicKey(k))
            }
            [DJB_TYPE, ..] => Err(CurveError::BadPublicKey("length is not 33")),
            [] => Err(CurveError::BadPublicKey("empty")),
            _ => Err(CurveError::BadPublicKey("type byte is not 0x05")),
        }
    }

    /// Parses a raw 32-byte key. Refuses any other length.
    pub fn from_raw(bytes: &[u8]) -> Result<Self, CurveError> {
        let k: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CurveError::BadPublicKey("length is not 32"))?;
        Ok(PublicKey(k))
    }

    /// Verifies an XEdDSA signature by this key over `message` (libsignal's variant: the
    /// Edwards sign bit is taken from `signature[63]`). Returns false for anything that is
    /// not a valid signature, including non-canonical scalars.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = <&[u8; SIGNATURE_LEN]>::try_from(signature) else {
            return false;
        };
        let sign_bit = (sig[63] & 0x80) >> 7;
        let Some(ed_point) = MontgomeryPoint(self.0).to_edwards(sign_bit) else {
            return false;
        };
        let cap_a = ed_point.compress();
        let mut cap_r = [0u8; 32];
        cap_r.copy_from_slice(&sig[..32]);
        let mut s_bytes = [0u8; 32];
        s_bytes.copy_from_slice(&sig[32..]);
        s_bytes[31] &= 0x7F;
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
            return false;
        };
        let mut hash = Sha512::new();
        hash.update(cap_r);
        hash.update(cap_a.as_bytes());
        hash.update(message);
        let h = Scalar::from_hash(hash);
        let check = EdwardsPoint::vartime_double_scalar_mul_basepoint(&h, &(-ed_point), &s);
        bool::from(check.compress().as_bytes().ct_eq(&cap_r))
    }
}

/// A Curve25519 private key, stored clamped. Zeroized on drop; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PrivateKey([u8; KEY_LEN]);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

impl PartialEq for PrivateKey {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}
impl Eq for PrivateKey {}

fn clamp(mut k: [u8; KEY_LEN]) -> [u8; KEY_LEN] {
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
    k
}

impl PrivateKey {
    /// Generates a fresh random private key.
    pub fn generate<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut k = [0u8; KEY_LEN];
        rng.fill_bytes(&mut k);
        let key = PrivateKey(clamp(k));
        k.zeroize();
        key
    }

    /// Imports 32 private key bytes (clamping them). Refuses any other length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CurveError> {
        let mut k: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CurveError::BadPrivateKey(bytes.len()))?;
        let key = PrivateKey(clamp(k));
        k.zeroize();
        Ok(key)
    }

    /// The clamped private bytes, for persistence; wiped when the result is dropped.
    pub fn to_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.0)
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        let point = EdwardsPoint::mul_base_clamped(self.0).to_montgomery();
        PublicKey(point.to_bytes())
    }

    /// X25519 agreement with `their` public key (RFC 7748, as libsignal).
    ///
    /// For keys on the curve (every honest key) the product is computed on the Edwards
    /// form, where curve25519-dalek uses its vectorized (AVX2) backend when the CPU has
    /// it — measurably faster here than the Montgomery ladder — and mapped back to `u`;
    /// the result is the same `u` the ladder gives (tested against x25519-dalek). Keys on
    /// the twist or `u = −1`, which have no Edwards form, take the ladder.
    pub fn agree(&self, their: &PublicKey) -> [u8; KEY_LEN] {
        let u = MontgomeryPoint(their.0);
        match u.to_edwards(0) {
            Some(point) => point.mul_clamped(self.0).to_montgomery().to_bytes(),
            None => u.mul_clamped(self.0).to_bytes(),
        }
    }

    /// X25519 with the Montgomery ladder only (the reference for [`agree`](Self::agree)).
    pub fn agree_ladder(&self, their: &PublicKey) -> [u8; KEY_LEN] {
        MontgomeryPoint(their.0).mul_clamped(self.0).to_bytes()
    }

    /// XEdDSA signature over `message` (libsignal's `calculateSignature`), using 64 bytes
    /// of fresh randomness.
    pub fn sign<R: RngCore + CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        message: &[u8],
    ) -> [u8; SIGNATURE_LEN] {
        let mut random = [0u8; 64];
        rng.fill_bytes(&mut random);
        let sig = self.sign_with_random(message, &random);
        random.zeroize();
        sig
    }

    /// XEdDSA signature with caller-supplied randomness: exactly libsignal's
    /// `curve25519_sign(sig, priv, msg, random)`, so the same inputs give the same bytes
    /// (used to compare against other implementations). The nonce hashes the private
    /// key and the message too, so a repeated `random` does not leak the key; still,
    /// prefer [`sign`](Self::sign).
    pub fn sign_with_random(&self, message: &[u8], random: &[u8; 64]) -> [u8; SIGNATURE_LEN] {
        self.sign_inner(&self.edwards_public(), message, random)
    }

    /// XEdDSA's `A`: the compressed Edwards point `a·B` of this key (its sign bit is the
    /// one signatures carry). Costs one fixed-base scalar multiplication; keys that sign
    /// often cache it and use [`sign_with_edwards_public`](Self::sign_with_edwards_public).
    pub fn edwards_public(&self) -> [u8; KEY_LEN] {
        EdwardsPoint::mul_base_clamped(self.0).compress().to_bytes()
    }

    /// XEdDSA signature given this key's cached [`edwards_public`](Self::edwards_public):
    /// one scalar multiplication instead of two. A wrong `edwards_public` produces
    /// signatures that do not verify; it never exposes the key.
    pub fn sign_with_edwards_public<R: RngCore + CryptoRng + ?Sized>(
        &self,
        edwards_public: &[u8; KEY_LEN],
        rng: &mut R,
        message: &[u8],
    ) -> [u8; SIGNATURE_LEN] {
        let mut random = [0u8; 64];
        rng.fill_bytes(&mut random);
        let sig = self.sign_inner(edwards_public, message, &random);
        random.zeroize();
        sig
    }

    fn sign_inner(
        &self,
        cap_a: &[u8; KEY_LEN],
        message: &[u8],
        random: &[u8; 64],
    ) -> [u8; SIGNATURE_LEN] {
        let mut a = Scalar::from_bytes_mod_order(self.0);
        let sign_bit = cap_a[31] & 0x80;
        let mut prefix = [0xFFu8; 32];
        prefix[0] = 0xFE;
        let mut h1 = Sha512::new();
        h1.update(prefix);
        h1.update(self.0);
        h1.update(message);
        h1.update(random);
        let mut r = Scalar::from_hash(h1);
        let cap_r = (&r * ED25519_BASEPOINT_TABLE).compress();
        let mut h2 = Sha512::new();
        h2.update(cap_r.as_bytes());
        h2.update(cap_a);
        h2.update(message);
        let h = Scalar::from_hash(h2);
        let s = h * a + r;
        a.zeroize();
        r.zeroize();
        let mut out = [0u8; SIGNATURE_LEN];
        out[..32].copy_from_slice(cap_r.as_bytes());
        out[32..].copy_from_slice(s.as_bytes());
        out[63] &= 0x7F;
        out[63] |= sign_bit;
        out
    }
}

/// A Curve25519 key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// The public half.
    pub public: PublicKey,
    /// The private half (zeroized on drop).
    pub private: PrivateKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .field("private", &"<redacted>")
            .finish()
    }
}

impl KeyPair {
    /// Generates a fresh key pair.
    pub fn generate<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_private(PrivateKey::generate(rng))
    }

    /// Pairs a stored public key with its private key without recomputing the public
    /// half (a scalar multiplication): for records that already hold both.
    pub(crate) fn from_parts_unchecked(public: PublicKey, private: PrivateKey) -> Self {
        KeyPair { public, private }
    }

    /// Builds the pair from a private key.
    pub fn from_private(private: PrivateKey) -> Self {
        KeyPair {
            public: private.public_key(),
            private,
        }
    }

    /// X25519 agreement with `their` public key.
    pub fn agree(&self, their: &PublicKey) -> [u8; KEY_LEN] {
        self.private.agree(their)
    }

    /// XEdDSA signature over `message`.
    pub fn sign<R: RngCore + CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        message: &[u8],
    ) -> [u8; SIGNATURE_LEN] {
        self.private.sign(rng, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    #[test]
    fn agreement_is_symmetric_and_matches_x25519_dalek() {
        let a = KeyPair::generate(&mut OsRng);
        let b = KeyPair::generate(&mut OsRng);
        assert_eq!(a.agree(&b.public), b.agree(&a.public));
        let s = x25519_dalek::StaticSecret::from(*a.private.to_bytes());
        assert_eq!(x25519_dalek::PublicKey::from(&s).to_bytes(), a.public.0);
        let shared = s.diffie_hellman(&x25519_dalek::PublicKey::from(b.public.0));
        assert_eq!(shared.to_bytes(), a.agree(&b.public));
    }

    #[test]
    fn edwards_agreement_equals_the_ladder_on_every_kind_of_input() {
        use rand::{RngCore, SeedableRng, rngs::StdRng};
        let rng = &mut StdRng::seed_from_u64(25519);
        let mut inputs: Vec<[u8; 32]> = Vec::new();
        // Honest keys, arbitrary bytes (about half are on the twist), and edge cases:
        // 0, 1, p-1 (u = -1), p, p+1, small-order points, the top bit set.
        for _ in 0..200 {
            inputs.push(KeyPair::generate(rng).public.0);
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            inputs.push(b);
        }
        let p_minus = |k: u8| {
            let mut b = [0xFFu8; 32];
            b[31] = 0x7F;
            b[0] = 0xED - k;
            b
        };
        inputs.push([0u8; 32]);
        let mut one = [0u8; 32];
        one[0] = 1;
        inputs.push(one);
        inputs.push(p_minus(1)); // p - 1 = -1
        inputs.push(p_minus(0)); // p (non-canonical 0)
        let mut p_plus_one = p_minus(0);
        p_plus_one[0] = 0xEE;
        inputs.push(p_plus_one);
        inputs.push(
            hex::decode("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
                .unwrap()
                .try_into()
                .unwrap(),
        );
        inputs.push(
            hex::decode("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157")
                .unwrap()
                .try_into()
                .unwrap(),
        );
        let mut high = KeyPair::generate(rng).public.0;
        high[31] |= 0x80;
        inputs.push(high);
        let mut twist_seen = 0;
        for u in inputs {
            let k = KeyPair::generate(rng).private;
            let theirs = PublicKey(u);
            let reference = x25519_dalek::x25519(*k.to_bytes(), u);
            assert_eq!(k.agree(&theirs), reference, "u = {}", hex::encode(u));
            assert_eq!(k.agree_ladder(&theirs), reference);
            if MontgomeryPoint(u).to_edwards(0).is_none() {
                twist_seen += 1;
            }
        }
        assert!(twist_seen > 50, "the ladder fallback was exercised");
    }

    #[test]
    fn sign_verify_both_sign_bits() {
        let mut seen = [false; 2];
        for i in 0..64u32 {
            let kp = KeyPair::generate(&mut OsRng);
            let msg = i.to_be_bytes();
            let sig = kp.sign(&mut OsRng, &msg);
            seen[(sig[63] >> 7) as usize] = true;
            assert!(kp.public.verify(&msg, &sig));
            assert!(!kp.public.verify(b"other", &sig));
            let mut bad = sig;
            bad[10] ^= 1;
            assert!(!kp.public.verify(&msg, &bad));
            let mut flipped = sig;
            flipped[63] ^= 0x80;
            assert!(!kp.public.verify(&msg, &flipped));
            assert!(!kp.public.verify(&msg, &sig[..63]));
        }
        assert!(seen[0] && seen[1], "both sign bits should occur");
    }

    #[test]
    fn cached_edwards_public_gives_the_same_signatures() {
        use rand::{RngCore, SeedableRng, rngs::StdRng};
        for seed in 0..16u64 {
            let kp = KeyPair::generate(&mut OsRng);
            let a = kp.private.edwards_public();
            let mut random = [0u8; 64];
            StdRng::seed_from_u64(seed).fill_bytes(&mut random);
            let expected = kp.private.sign_with_random(b"msg", &random);
            let sig =
                kp.private
                    .sign_with_edwards_public(&a, &mut StdRng::seed_from_u64(seed), b"msg");
            assert_eq!(sig, expected);
            assert!(kp.public.verify(b"msg", &sig));
            // A wrong cached A yields a signature that does not verify.
            let mut wrong = a;
            wrong[0] ^= 1;
            let bad = kp
                .private
                .sign_with_edwards_public(&wrong, &mut OsRng, b"msg");
            assert!(!kp.public.verify(b"msg", &bad));
        }
    }

    #[test]
    fn serialization_forms() {
        let kp = KeyPair::generate(&mut OsRng);
        let ser = kp.public.serialize();
        assert_eq!(ser[0], 5);
        assert_eq!(PublicKey::deserialize(&ser).unwrap(), kp.public);
        assert!(PublicKey::deserialize(&ser[1..]).is_err());
        assert!(PublicKey::deserialize(&[]).is_err());
        assert_eq!(PublicKey::from_raw(&ser[1..]).unwrap(), kp.public);
        assert!(format!("{:?}", kp).contains("redacted"));
        assert!(!format!("{:?}", kp).contains(&hex::encode(kp.private.to_bytes())));
    }
}
