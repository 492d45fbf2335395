//! The primary phone's half of pairing by phone number with an 8-character code
//! (PROTOCOL.md §6.4), as pure functions:
//!
//! ```text
//! code key  = PBKDF2-HMAC-SHA256(code, salt, 2^17 rounds, 32 bytes)
//! wrapped   = salt(32) ‖ iv(16) ‖ AES-256-CTR(code key, iv, ephemeral public key)   (80 bytes)
//! shared    = X25519(primary ephemeral, companion ephemeral)
//! bundle    = salt(32) ‖ nonce(12) ‖ AES-256-GCM(HKDF(shared, salt,
//!             "link_code_pairing_key_bundle_encryption_key"), nonce,
//!             companionIdentity ‖ primaryIdentity ‖ advRandom)
//! advSecret = HKDF(shared ‖ X25519(primary identity, companion identity) ‖ advRandom,
//!             no salt, "adv_secret", 32)
//! ```
//!
//! A wrong code cannot be seen when unwrapping (CTR has no tag): both sides derive
//! different shared secrets, and the phone's AES-GCM open of the bundle fails.

use aes::Aes256;
use aes::cipher::{KeyIvInit, StreamCipher};
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::signal::curve::{KeyPair, PublicKey};

/// The 32 characters link codes are written in (Crockford-like base32 without 0, O, I, U).
pub const LINK_CODE_ALPHABET: &str = "123456789ABCDEFGHJKLMNPQRSTVWXYZ";
/// Number of characters in a link code.
pub const LINK_CODE_LEN: usize = 8;
/// PBKDF2 rounds for the code key (`2 << 16`).
pub const LINK_CODE_PBKDF2_ROUNDS: u32 = 1 << 17;
/// Length of a wrapped ephemeral key: salt, IV, encrypted key.
pub const WRAPPED_EPHEMERAL_LEN: usize = 32 + 16 + 32;
/// HKDF info of the key-bundle encryption key.
pub const KEY_BUNDLE_INFO: &[u8] = b"link_code_pairing_key_bundle_encryption_key";
/// HKDF info of the ADV secret.
pub const ADV_SECRET_INFO: &[u8] = b"adv_secret";
/// Length of the key-bundle plaintext: two identity keys and the ADV randomness.
pub const KEY_BUNDLE_PLAINTEXT_LEN: usize = 96;
/// Length of a wrapped key bundle: salt, nonce, ciphertext with its 16-byte tag.
pub const WRAPPED_KEY_BUNDLE_LEN: usize = 32 + 12 + KEY_BUNDLE_PLAINTEXT_LEN + 16;

type Aes256Ctr = ctr::Ctr128BE<Aes256>;

/// Why a pair-code step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairCodeError {
    /// The code is not 8 characters of [`LINK_CODE_ALPHABET`].
    #[error("pairing code {0:?} is not 8 characters of {LINK_CODE_ALPHABET}")]
    BadCode(String),
    /// A wrapped value has the wrong length.
    #[error("{what} is {len} bytes, expected {want}")]
    Length {
        /// Which value.
        what: &'static str,
        /// Length received.
        len: usize,
        /// Length expected.
        want: usize,
    },
    /// The key bundle failed AES-GCM authentication (wrong code on either side).
    #[error(
        "key bundle failed AES-GCM authentication: the code entered on the phone is not the \
         client's code"
    )]
    BundleDecrypt,
    /// The bundle names another primary identity than this phone's.
    #[error("key bundle names another primary identity key")]
    PrimaryIdentityMismatch,
    /// The bundle's companion identity differs from `companion_identity_public`.
    #[error("key bundle's companion identity differs from companion_identity_public")]
    CompanionIdentityMismatch,
    /// A Diffie-Hellman gave all zeros (low-order point).
    #[error("{0} key is a low-order point")]
    WeakKey(&'static str),
}

/// Normalises a code as typed on the phone: drops `-` and spaces, upper-cases, and
/// refuses anything that is not 8 characters of the alphabet.
pub fn normalize_code(typed: &str) -> Result<String, PairCodeError> {
    let code: String = typed
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if code.len() != LINK_CODE_LEN || !code.chars().all(|c| LINK_CODE_ALPHABET.contains(c)) {
        return Err(PairCodeError::BadCode(typed.chars().take(32).collect()));
    }
    Ok(code)
}

/// `PBKDF2-HMAC-SHA256(code, salt, 2^17, 32)`. Takes about 2^18 SHA-256 blocks: run it
/// off the async executor.
pub fn code_key(code: &str, salt: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sha256>(code.as_bytes(), salt, LINK_CODE_PBKDF2_ROUNDS, key.as_mut());
    key
}

fn ctr_apply(key: &[u8; 32], iv: &[u8], data: &mut [u8]) {
    // Key and IV lengths are fixed by the callers (32 and 16 bytes).
    if let Ok(mut c) = Aes256Ctr::new_from_slices(key, iv) {
        c.apply_keystream(data);
    }
}

/// Wraps an ephemeral public key with the code: `salt ‖ iv ‖ AES-256-CTR(key, iv, pub)`.
pub fn wrap_ephemeral<R: RngCore + CryptoRng + ?Sized>(
    code: &str,
    ephemeral: &PublicKey,
    rng: &mut R,
) -> [u8; WRAPPED_EPHEMERAL_LEN] {
    let mut out = [0u8; WRAPPED_EPHEMERAL_LEN];
    rng.fill_bytes(&mut out[..48]);
    out[48..].copy_from_slice(ephemeral.as_bytes());
    let key = code_key(code, &out[..32]);
    let (head, body) = out.split_at_mut(48);
    ctr_apply(&key, &head[32..48], body);
    out
}

/// Unwraps an 80-byte wrapped ephemeral key with the code. With a wrong code the result
/// is a different (garbage) key: CTR mode cannot tell.
pub fn unwrap_ephemeral(code: &str, wrapped: &[u8]) -> Result<PublicKey, PairCodeError> {
    if wrapped.len() != WRAPPED_EPHEMERAL_LEN {
        return Err(PairCodeError::Length {
            what: "wrapped ephemeral key",
            len: wrapped.len(),
            want: WRAPPED_EPHEMERAL_LEN,
        });
    }
    let (salt, rest) = wrapped.split_at(32);
    let (iv, encrypted) = rest.split_at(16);
    let key = code_key(code, salt);
    let mut plain = [0u8; 32];
    plain.copy_from_slice(encrypted);
    ctr_apply(&key, iv, &mut plain);
    Ok(PublicKey(plain))
}

/// The decrypted key bundle of `companion_finish`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyBundle {
    /// The companion's identity key.
    pub companion_identity: PublicKey,
    /// The primary identity key the companion names.
    pub primary_identity: PublicKey,
    /// The 32 random bytes mixed into the ADV secret.
    pub adv_random: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for KeyBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyBundle")
            .field("companion_identity", &self.companion_identity)
            .field("primary_identity", &self.primary_identity)
            .finish_non_exhaustive()
    }
}

fn bundle_key(shared: &[u8; 32], salt: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(salt), shared)
        .expand(KEY_BUNDLE_INFO, key.as_mut())
        .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 length"));
    key
}

/// Encrypts a key bundle as the companion does (used by tests and by simulated
/// companions): `salt ‖ nonce ‖ AES-256-GCM(HKDF(shared, salt), nonce, bundle)`.
pub fn seal_key_bundle<R: RngCore + CryptoRng + ?Sized>(
    shared: &[u8; 32],
    bundle: &KeyBundle,
    rng: &mut R,
) -> Vec<u8> {
    let mut salt_nonce = [0u8; 44];
    rng.fill_bytes(&mut salt_nonce);
    let key = bundle_key(shared, &salt_nonce[..32]);
    let mut plain = Zeroizing::new(Vec::with_capacity(KEY_BUNDLE_PLAINTEXT_LEN));
    plain.extend_from_slice(bundle.companion_identity.as_bytes());
    plain.extend_from_slice(bundle.primary_identity.as_bytes());
    plain.extend_from_slice(bundle.adv_random.as_ref());
    let sealed = Aes256Gcm::new(key.as_ref().into())
        .encrypt(Nonce::from_slice(&salt_nonce[32..]), plain.as_slice())
        .unwrap_or_else(|_| unreachable!("96 bytes is within AES-GCM's limit"));
    [&salt_nonce[..], &sealed].concat()
}

/// Decrypts the wrapped key bundle with the shared ephemeral secret. Refuses a wrong
/// length or a bundle that fails authentication.
pub fn open_key_bundle(shared: &[u8; 32], wrapped: &[u8]) -> Result<KeyBundle, PairCodeError> {
    if wrapped.len() != WRAPPED_KEY_BUNDLE_LEN {
        return Err(PairCodeError::Length {
            what: "wrapped key bundle",
            len: wrapped.len(),
            want: WRAPPED_KEY_BUNDLE_LEN,
        });
    }
    let (salt, rest) = wrapped.split_at(32);
    let (nonce, ciphertext) = rest.split_at(12);
    let key = bundle_key(shared, salt);
    let mut plain = Aes256Gcm::new(key.as_ref().into())
        .decrypt(Nonce::from_slice(nonce), ciphertext)
        .map_err(|_| PairCodeError::BundleDecrypt)?;
    let bundle = (plain.len() == KEY_BUNDLE_PLAINTEXT_LEN).then(|| {
        let mut c = [0u8; 32];
        let mut pi = [0u8; 32];
        let mut adv_random = Zeroizing::new([0u8; 32]);
        c.copy_from_slice(&plain[..32]);
        pi.copy_from_slice(&plain[32..64]);
        adv_random.copy_from_slice(&plain[64..]);
        KeyBundle {
            companion_identity: PublicKey(c),
            primary_identity: PublicKey(pi),
            adv_random,
        }
    });
    let len = plain.len();
    plain.zeroize();
    bundle.ok_or(PairCodeError::Length {
        what: "key bundle plaintext",
        len,
        want: KEY_BUNDLE_PLAINTEXT_LEN,
    })
}

/// `HKDF-SHA256(ephemeral shared ‖ identity shared ‖ advRandom, no salt, "adv_secret")`.
pub fn adv_secret(
    ephemeral_shared: &[u8; 32],
    identity_shared: &[u8; 32],
    adv_random: &[u8; 32],
) -> Zeroizing<[u8; 32]> {
    let mut ikm = Zeroizing::new([0u8; 96]);
    ikm[..32].copy_from_slice(ephemeral_shared);
    ikm[32..64].copy_from_slice(identity_shared);
    ikm[64..].copy_from_slice(adv_random);
    let mut out = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, ikm.as_ref())
        .expand(ADV_SECRET_INFO, out.as_mut())
        .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF-SHA256 length"));
    out
}

/// X25519 that refuses an all-zero result (a low-order peer key).
pub fn agree(
    own: &KeyPair,
    their: &PublicKey,
    what: &'static str,
) -> Result<Zeroizing<[u8; 32]>, PairCodeError> {
    let shared = Zeroizing::new(own.agree(their));
    if shared.iter().all(|b| *b == 0) {
        return Err(PairCodeError::WeakKey(what));
    }
    Ok(shared)
}

/// The phone's state between sending `primary_hello` and receiving `companion_finish`.
#[derive(Clone)]
pub struct PrimaryHello {
    ephemeral: KeyPair,
    companion_ephemeral: PublicKey,
    /// The wrapped primary ephemeral key for `link_code_pairing_wrapped_primary_ephemeral_pub`.
    pub wrapped_primary_ephemeral: [u8; WRAPPED_EPHEMERAL_LEN],
}

impl std::fmt::Debug for PrimaryHello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrimaryHello")
            .field("ephemeral", &self.ephemeral.public)
            .field("companion_ephemeral", &self.companion_ephemeral)
            .finish_non_exhaustive()
    }
}

impl PrimaryHello {
    /// The phone reads the code typed by its user: unwraps the companion's ephemeral key
    /// with it and wraps a fresh ephemeral of its own. Refuses a malformed code or
    /// wrapped key (a wrong but well-formed code goes through and fails later).
    pub fn start<R: RngCore + CryptoRng + ?Sized>(
        typed_code: &str,
        wrapped_companion_ephemeral: &[u8],
        rng: &mut R,
    ) -> Result<Self, PairCodeError> {
        let code = normalize_code(typed_code)?;
        let companion_ephemeral = unwrap_ephemeral(&code, wrapped_companion_ephemeral)?;
        let ephemeral = KeyPair::generate(rng);
        let wrapped_primary_ephemeral = wrap_ephemeral(&code, &ephemeral.public, rng);
        Ok(PrimaryHello {
            ephemeral,
            companion_ephemeral,
            wrapped_primary_ephemeral,
        })
    }

    /// On `companion_finish`: opens the key bundle, checks that it names `primary`'s
    /// identity and the `companion_identity` the client sent, and derives the ADV secret
    /// the client derived. Fails when the codes differ.
    pub fn finish(
        &self,
        primary: &KeyPair,
        companion_identity: &PublicKey,
        wrapped_key_bundle: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, PairCodeError> {
        let shared = agree(
            &self.ephemeral,
            &self.companion_ephemeral,
            "companion ephemeral",
        )?;
        let bundle = open_key_bundle(&shared, wrapped_key_bundle)?;
        if bundle.primary_identity != primary.public {
            return Err(PairCodeError::PrimaryIdentityMismatch);
        }
        if bundle.companion_identity != *companion_identity {
            return Err(PairCodeError::CompanionIdentityMismatch);
        }
        let identity_shared = agree(primary, companion_identity, "companion identity")?;
        Ok(adv_secret(&shared, &identity_shared, &bundle.adv_random))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn codes_are_normalised_and_checked() {
        assert_eq!(normalize_code("abcd-efgh").unwrap(), "ABCDEFGH");
        assert_eq!(normalize_code(" 1234 5678 ").unwrap(), "12345678");
        for bad in [
            "ABCDEFG",
            "ABCDEFGHJ",
            "ABCDEFG0",
            "ABCDEFGO",
            "ABCDEFGI",
            "ABCDEFGU",
            "ÄBCDEFGH",
        ] {
            assert!(normalize_code(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pbkdf2_with_the_published_parameters() {
        // RFC 7914 §11: PBKDF2-HMAC-SHA256("passwd", "salt", 1) — its first 32 bytes.
        let mut out = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(b"passwd", b"salt", 1, &mut out);
        assert_eq!(
            hex::encode(out),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
        assert_eq!(LINK_CODE_PBKDF2_ROUNDS, 131_072);
    }

    #[test]
    fn both_halves_agree_on_the_adv_secret_and_a_wrong_code_fails() {
        let mut rng = StdRng::seed_from_u64(3);
        let code = "2RNV5KXC";
        let primary = KeyPair::generate(&mut rng);
        let companion_identity = KeyPair::generate(&mut rng);
        let companion_eph = KeyPair::generate(&mut rng);
        let wrapped = wrap_ephemeral(code, &companion_eph.public, &mut rng);
        assert_eq!(
            unwrap_ephemeral(code, &wrapped).unwrap(),
            companion_eph.public
        );

        for (typed, ok) in [("2RNV-5KXC", true), ("2RNV5KXD", false)] {
            let hello = PrimaryHello::start(typed, &wrapped, &mut rng).unwrap();
            // The companion's side, from the spec.
            let primary_eph = unwrap_ephemeral(code, &hello.wrapped_primary_ephemeral).unwrap();
            let shared = companion_eph.agree(&primary_eph);
            let adv_random = Zeroizing::new([7u8; 32]);
            let sealed = seal_key_bundle(
                &shared,
                &KeyBundle {
                    companion_identity: companion_identity.public,
                    primary_identity: primary.public,
                    adv_random: adv_random.clone(),
                },
                &mut rng,
            );
            assert_eq!(sealed.len(), WRAPPED_KEY_BUNDLE_LEN);
            let companion_adv = adv_secret(
                &shared,
                &companion_identity.agree(&primary.public),
                &adv_random,
            );
            let result = hello.finish(&primary, &companion_identity.public, &sealed);
            if ok {
                assert_eq!(*result.unwrap(), *companion_adv);
            } else {
                assert_eq!(result.unwrap_err(), PairCodeError::BundleDecrypt);
            }
        }
    }

    #[test]
    fn bundle_identity_checks_and_lengths() {
        let mut rng = StdRng::seed_from_u64(4);
        let shared = [5u8; 32];
        let bundle = KeyBundle {
            companion_identity: PublicKey([1; 32]),
            primary_identity: PublicKey([2; 32]),
            adv_random: Zeroizing::new([3; 32]),
        };
        let sealed = seal_key_bundle(&shared, &bundle, &mut rng);
        let opened = open_key_bundle(&shared, &sealed).unwrap();
        assert_eq!(opened, bundle);
        assert!(matches!(
            open_key_bundle(&shared, &sealed[1..]),
            Err(PairCodeError::Length { .. })
        ));
        assert!(matches!(
            unwrap_ephemeral("AAAAAAAA", &[0; 79]),
            Err(PairCodeError::Length { .. })
        ));
        assert!(!format!("{opened:?}").contains("[3, 3"));
    }
}
