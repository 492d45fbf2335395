//! Pairing by phone number with an 8-character code (PROTOCOL.md §6.4), the sans-IO
//! part: the code, the key wrapping and the derivations.
//!
//! 1. [`CompanionHello::generate`]: a fresh ephemeral key pair and code; the ephemeral
//!    public key is wrapped as `salt(32) ‖ iv(16) ‖ AES-256-CTR(key, iv, pub)` with
//!    `key = PBKDF2-HMAC-SHA256(code, salt, 2^17, 32)` and sent in `companion_hello`.
//! 2. The user types the code on the phone; the phone's ephemeral key comes back wrapped
//!    the same way in a `link_code_companion_reg` notification with its identity key.
//! 3. [`companion_finish`]: unwraps it, `shared = X25519(ephemeral, primary ephemeral)`,
//!    encrypts `our identity ‖ primary identity ‖ adv random(32)` with AES-256-GCM under
//!    `HKDF-SHA256(shared, salt, "link_code_pairing_key_bundle_encryption_key")` as
//!    `salt(32) ‖ nonce(12) ‖ ciphertext`, and derives the new ADV secret
//!    `HKDF-SHA256(shared ‖ X25519(identity, primary identity) ‖ adv random, no salt,
//!    "adv_secret")`, which then checks the pair-success HMAC as in the QR flow.
//!
//! The PBKDF2 step costs 2^17 HMAC rounds (tens of milliseconds optimized); callers on
//! an async runtime run these functions on a blocking thread.

use aes::Aes256;
use aes::cipher::{KeyIvInit, StreamCipher};
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use super::pairing::PairClientType;
use super::prekeys::server_iq;
use crate::binary::Node;
use crate::jid::Jid;
use crate::signal::curve::{KEY_LEN, KeyPair, PublicKey};

/// The 32 characters a pairing code is written with (Crockford-like: no 0, I, O, U).
pub const PAIR_CODE_ALPHABET: &[u8; 32] = b"123456789ABCDEFGHJKLMNPQRSTVWXYZ";
/// Characters in a pairing code (5 random bytes, 5 bits per character).
pub const PAIR_CODE_LEN: usize = 8;
/// PBKDF2-HMAC-SHA256 iterations that turn the code into the wrapping key.
pub const PAIR_CODE_PBKDF2_ROUNDS: u32 = 1 << 17;
/// Salt length of a wrapped key.
pub const WRAP_SALT_LEN: usize = 32;
/// AES-CTR IV length of a wrapped key.
pub const WRAP_IV_LEN: usize = 16;
/// Length of a wrapped ephemeral key: salt, IV, encrypted 32-byte key.
pub const WRAPPED_KEY_LEN: usize = WRAP_SALT_LEN + WRAP_IV_LEN + KEY_LEN;
/// HKDF info of the key-bundle encryption key.
pub const KEY_BUNDLE_INFO: &[u8] = b"link_code_pairing_key_bundle_encryption_key";
/// HKDF info of the ADV secret.
pub const ADV_SECRET_INFO: &[u8] = b"adv_secret";
/// Salt length of the wrapped key bundle.
pub const KEY_BUNDLE_SALT_LEN: usize = 32;
/// AES-GCM nonce length of the wrapped key bundle.
pub const KEY_BUNDLE_NONCE_LEN: usize = 12;
/// Length of the random part of the ADV secret input.
pub const ADV_RANDOM_LEN: usize = 32;

type Aes256Ctr = ctr::Ctr128BE<Aes256>;

/// Why a pairing-code step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairCodeError {
    /// The wrapped primary ephemeral key is shorter than 80 bytes.
    #[error("wrapped primary ephemeral key is {0} bytes, expected at least {WRAPPED_KEY_LEN}")]
    WrappedKeyLength(usize),
    /// The primary identity key is not 32 bytes.
    #[error("primary identity key is {0} bytes, expected 32")]
    PrimaryIdentityLength(usize),
    /// A Diffie-Hellman gave all zeros: the phone's key is a low-order point (or the
    /// code was wrong, so the unwrapped key is garbage that happens to be one).
    #[error("the {0} Diffie-Hellman gave a low-order result; refusing the key")]
    WeakKey(&'static str),
    /// AES-GCM refused (never expected for these sizes).
    #[error("could not encrypt the key bundle")]
    Encrypt,
    /// A pairing stanza lacks a required element.
    #[error("pairing-code stanza has no {0}")]
    Missing(&'static str),
    /// A code that is not 8 characters of the pairing alphabet.
    #[error("pairing code {0:?} is not 8 characters of {alphabet}", alphabet = std::str::from_utf8(PAIR_CODE_ALPHABET).unwrap_or_default())]
    BadCode(String),
}

/// Encodes 5 random bytes as the 8-character code (base32, most significant bits
/// first, in [`PAIR_CODE_ALPHABET`]).
pub fn encode_pair_code(random: &[u8; 5]) -> String {
    let mut bits = 0u64;
    for b in random {
        bits = (bits << 8) | u64::from(*b);
    }
    (0..PAIR_CODE_LEN)
        .rev()
        .map(|i| {
            let index = ((bits >> (i * 5)) & 0x1F) as usize;
            char::from(PAIR_CODE_ALPHABET[index])
        })
        .collect()
}

/// The code as shown to people: `XXXX-XXXX`.
pub fn format_pair_code(code: &str) -> String {
    match (code.get(..4), code.get(4..)) {
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => code.to_owned(),
    }
}

/// Normalizes a code a person typed (`abcd-efgh`, spaces) to the 8 characters the key
/// derivation uses. Refuses anything that is not 8 characters of the alphabet.
pub fn normalize_pair_code(input: &str) -> Result<String, PairCodeError> {
    let code: String = input
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if code.len() != PAIR_CODE_LEN || !code.bytes().all(|b| PAIR_CODE_ALPHABET.contains(&b)) {
        return Err(PairCodeError::BadCode(input.chars().take(32).collect()));
    }
    Ok(code)
}

/// `PBKDF2-HMAC-SHA256(code, salt, 2^17, 32)`: the key that wraps ephemeral keys.
pub fn pair_code_key(code: &str, salt: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sha256>(code.as_bytes(), salt, PAIR_CODE_PBKDF2_ROUNDS, key.as_mut());
    key
}

/// Wraps a 32-byte public key with the code: `salt ‖ iv ‖ AES-256-CTR(key, iv, pub)`.
pub fn wrap_ephemeral_key(
    code: &str,
    public: &PublicKey,
    salt: &[u8; WRAP_SALT_LEN],
    iv: &[u8; WRAP_IV_LEN],
) -> [u8; WRAPPED_KEY_LEN] {
    let key = pair_code_key(code, salt);
    let mut out = [0u8; WRAPPED_KEY_LEN];
    out[..WRAP_SALT_LEN].copy_from_slice(salt);
    out[WRAP_SALT_LEN..WRAP_SALT_LEN + WRAP_IV_LEN].copy_from_slice(iv);
    let body = &mut out[WRAP_SALT_LEN + WRAP_IV_LEN..];
    body.copy_from_slice(public.as_bytes());
    Aes256Ctr::new(key.as_ref().into(), iv.into()).apply_keystream(body);
    out
}

/// Unwraps a key wrapped by [`wrap_ephemeral_key`] (the first 80 bytes are used, as
/// WhatsApp's clients do). A wrong code gives a different key, not an error: CTR mode
/// has no authentication, so the mistake shows up later as a failed HMAC.
pub fn unwrap_ephemeral_key(code: &str, wrapped: &[u8]) -> Result<PublicKey, PairCodeError> {
    let wrapped = wrapped
        .get(..WRAPPED_KEY_LEN)
        .ok_or(PairCodeError::WrappedKeyLength(wrapped.len()))?;
    let (salt, rest) = wrapped.split_at(WRAP_SALT_LEN);
    let (iv, body) = rest.split_at(WRAP_IV_LEN);
    let key = pair_code_key(code, salt);
    let mut plain = [0u8; KEY_LEN];
    plain.copy_from_slice(body);
    let iv: &[u8; WRAP_IV_LEN] = iv
        .try_into()
        .map_err(|_| PairCodeError::WrappedKeyLength(wrapped.len()))?;
    Aes256Ctr::new(key.as_ref().into(), iv.into()).apply_keystream(&mut plain);
    Ok(PublicKey(plain))
}

/// The key that encrypts the key bundle:
/// `HKDF-SHA256(ikm = shared, salt, info = "link_code_pairing_key_bundle_encryption_key")`.
pub fn key_bundle_key(ephemeral_shared: &[u8; 32], salt: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail.
    let _ = Hkdf::<Sha256>::new(Some(salt), ephemeral_shared).expand(KEY_BUNDLE_INFO, key.as_mut());
    key
}

/// The ADV secret of the code flow: `HKDF-SHA256(ikm = ephemeral shared ‖ identity
/// shared ‖ adv random, no salt, info = "adv_secret", 32)`.
pub fn derive_adv_secret(
    ephemeral_shared: &[u8; 32],
    identity_shared: &[u8; 32],
    adv_random: &[u8; ADV_RANDOM_LEN],
) -> Zeroizing<[u8; 32]> {
    let mut ikm = Zeroizing::new([0u8; 96]);
    ikm[..32].copy_from_slice(ephemeral_shared);
    ikm[32..64].copy_from_slice(identity_shared);
    ikm[64..].copy_from_slice(adv_random);
    let mut secret = Zeroizing::new([0u8; 32]);
    let _ = Hkdf::<Sha256>::new(None, ikm.as_ref()).expand(ADV_SECRET_INFO, secret.as_mut());
    secret
}

/// What `companion_hello` sends, and what the later steps need to remember.
pub struct CompanionHello {
    /// The 8-character code (show it as `XXXX-XXXX`, see [`format_pair_code`]).
    pub code: String,
    /// The companion's ephemeral key pair for this attempt.
    pub ephemeral: KeyPair,
    /// `link_code_pairing_wrapped_companion_ephemeral_pub`.
    pub wrapped_ephemeral: [u8; WRAPPED_KEY_LEN],
}

impl std::fmt::Debug for CompanionHello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The code unlocks the pairing: keep it out of logs.
        f.debug_struct("CompanionHello")
            .field("ephemeral", &self.ephemeral.public)
            .finish_non_exhaustive()
    }
}

impl CompanionHello {
    /// A fresh code, ephemeral key pair, salt and IV, and the wrapped key.
    pub fn generate<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut random = [0u8; 5];
        rng.fill_bytes(&mut random);
        let code = encode_pair_code(&random);
        random.zeroize();
        let mut salt = [0u8; WRAP_SALT_LEN];
        let mut iv = [0u8; WRAP_IV_LEN];
        rng.fill_bytes(&mut salt);
        rng.fill_bytes(&mut iv);
        let ephemeral = KeyPair::generate(rng);
        let wrapped_ephemeral = wrap_ephemeral_key(&code, &ephemeral.public, &salt, &iv);
        CompanionHello {
            code,
            ephemeral,
            wrapped_ephemeral,
        }
    }
}

/// What `companion_finish` sends, and the new ADV secret.
pub struct CompanionFinish {
    /// `link_code_pairing_wrapped_key_bundle`: salt ‖ nonce ‖ AES-GCM ciphertext.
    pub wrapped_key_bundle: Vec<u8>,
    /// The ADV secret that the pair-success HMAC will be keyed with.
    pub adv_secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for CompanionFinish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompanionFinish")
            .field("wrapped_key_bundle_len", &self.wrapped_key_bundle.len())
            .finish_non_exhaustive()
    }
}

/// Step 3 of the module docs: unwraps the phone's ephemeral key with the code, wraps
/// the key bundle and derives the ADV secret. Refuses a short wrapped key, a primary
/// identity that is not 32 bytes and low-order Diffie-Hellman results.
pub fn companion_finish<R: RngCore + CryptoRng + ?Sized>(
    code: &str,
    ephemeral: &KeyPair,
    identity: &KeyPair,
    wrapped_primary_ephemeral: &[u8],
    primary_identity: &[u8],
    rng: &mut R,
) -> Result<CompanionFinish, PairCodeError> {
    let primary_identity = PublicKey::from_raw(primary_identity)
        .map_err(|_| PairCodeError::PrimaryIdentityLength(primary_identity.len()))?;
    let primary_ephemeral = unwrap_ephemeral_key(code, wrapped_primary_ephemeral)?;
    let ephemeral_shared = Zeroizing::new(ephemeral.agree(&primary_ephemeral));
    if ephemeral_shared.iter().all(|b| *b == 0) {
        return Err(PairCodeError::WeakKey("ephemeral"));
    }
    let identity_shared = Zeroizing::new(identity.agree(&primary_identity));
    if identity_shared.iter().all(|b| *b == 0) {
        return Err(PairCodeError::WeakKey("identity"));
    }

    let mut adv_random = Zeroizing::new([0u8; ADV_RANDOM_LEN]);
    rng.fill_bytes(adv_random.as_mut());
    let mut salt = [0u8; KEY_BUNDLE_SALT_LEN];
    let mut nonce = [0u8; KEY_BUNDLE_NONCE_LEN];
    rng.fill_bytes(&mut salt);
    rng.fill_bytes(&mut nonce);

    let mut bundle = Zeroizing::new(Vec::with_capacity(2 * KEY_LEN + ADV_RANDOM_LEN));
    bundle.extend_from_slice(identity.public.as_bytes());
    bundle.extend_from_slice(primary_identity.as_bytes());
    bundle.extend_from_slice(adv_random.as_ref());
    let key = key_bundle_key(&ephemeral_shared, &salt);
    let ciphertext = Aes256Gcm::new(key.as_ref().into())
        .encrypt(Nonce::from_slice(&nonce), bundle.as_slice())
        .map_err(|_| PairCodeError::Encrypt)?;
    let mut wrapped_key_bundle =
        Vec::with_capacity(KEY_BUNDLE_SALT_LEN + KEY_BUNDLE_NONCE_LEN + ciphertext.len());
    wrapped_key_bundle.extend_from_slice(&salt);
    wrapped_key_bundle.extend_from_slice(&nonce);
    wrapped_key_bundle.extend_from_slice(&ciphertext);

    Ok(CompanionFinish {
        wrapped_key_bundle,
        adv_secret: derive_adv_secret(&ephemeral_shared, &identity_shared, &adv_random),
    })
}

/// The `companion_hello` IQ: `<iq xmlns="md" type="set"><link_code_companion_reg
/// jid="<phone>@s.whatsapp.net" stage="companion_hello" should_show_push_notification>
/// <link_code_pairing_wrapped_companion_ephemeral_pub/><companion_server_auth_key_pub/>
/// <companion_platform_id/><companion_platform_display/><link_code_pairing_nonce/>
/// </link_code_companion_reg></iq>`.
pub fn companion_hello_iq(
    phone: &Jid,
    hello: &CompanionHello,
    noise_key: &PublicKey,
    client_type: PairClientType,
    platform_display: &str,
    show_push_notification: bool,
) -> Node {
    server_iq(
        "md",
        "set",
        vec![
            Node::new("link_code_companion_reg")
                .attr("jid", phone.to_non_ad())
                .attr("stage", "companion_hello")
                .attr(
                    "should_show_push_notification",
                    if show_push_notification {
                        "true"
                    } else {
                        "false"
                    },
                )
                .with_children(vec![
                    Node::new("link_code_pairing_wrapped_companion_ephemeral_pub")
                        .with_bytes(hello.wrapped_ephemeral.to_vec()),
                    Node::new("companion_server_auth_key_pub")
                        .with_bytes(noise_key.as_bytes().to_vec()),
                    Node::new("companion_platform_id")
                        .with_bytes(client_type.as_str().as_bytes().to_vec()),
                    Node::new("companion_platform_display")
                        .with_bytes(platform_display.as_bytes().to_vec()),
                    Node::new("link_code_pairing_nonce").with_bytes(vec![0]),
                ]),
        ],
    )
}

/// The `link_code_pairing_ref` of the `companion_hello` response. Refuses a response
/// without one.
pub fn parse_companion_hello_response(response: &Node) -> Result<Vec<u8>, PairCodeError> {
    response
        .child_by_tag("link_code_companion_reg")
        .and_then(|n| n.child_by_tag("link_code_pairing_ref"))
        .and_then(Node::bytes)
        .filter(|r| !r.is_empty())
        .map(<[u8]>::to_vec)
        .ok_or(PairCodeError::Missing(
            "link_code_pairing_ref in the companion_hello response",
        ))
}

/// What the phone sends once the code is typed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryHello {
    /// The pairing ref it answers.
    pub pairing_ref: Vec<u8>,
    /// `link_code_pairing_wrapped_primary_ephemeral_pub` (salt ‖ iv ‖ encrypted key).
    pub wrapped_primary_ephemeral: Vec<u8>,
    /// `primary_identity_pub`.
    pub primary_identity: Vec<u8>,
}

/// Reads the `<notification type="link_code_companion_reg">`. Refuses one without the
/// ref, the wrapped key or the identity.
pub fn parse_primary_hello(notification: &Node) -> Result<PrimaryHello, PairCodeError> {
    let reg =
        notification
            .child_by_tag("link_code_companion_reg")
            .ok_or(PairCodeError::Missing(
                "link_code_companion_reg in the notification",
            ))?;
    let bytes_of = |tag: &str, what: &'static str| {
        reg.child_by_tag(tag)
            .and_then(Node::bytes)
            .map(<[u8]>::to_vec)
            .ok_or(PairCodeError::Missing(what))
    };
    Ok(PrimaryHello {
        pairing_ref: bytes_of("link_code_pairing_ref", "link_code_pairing_ref")?,
        wrapped_primary_ephemeral: bytes_of(
            "link_code_pairing_wrapped_primary_ephemeral_pub",
            "link_code_pairing_wrapped_primary_ephemeral_pub",
        )?,
        primary_identity: bytes_of("primary_identity_pub", "primary_identity_pub")?,
    })
}

/// The `companion_finish` IQ: `<iq xmlns="md" type="set"><link_code_companion_reg
/// jid stage="companion_finish"><link_code_pairing_wrapped_key_bundle/>
/// <companion_identity_public/><link_code_pairing_ref/></link_code_companion_reg></iq>`.
pub fn companion_finish_iq(
    phone: &Jid,
    finish: &CompanionFinish,
    identity: &PublicKey,
    pairing_ref: &[u8],
) -> Node {
    server_iq(
        "md",
        "set",
        vec![
            Node::new("link_code_companion_reg")
                .attr("jid", phone.to_non_ad())
                .attr("stage", "companion_finish")
                .with_children(vec![
                    Node::new("link_code_pairing_wrapped_key_bundle")
                        .with_bytes(finish.wrapped_key_bundle.clone()),
                    Node::new("companion_identity_public").with_bytes(identity.as_bytes().to_vec()),
                    Node::new("link_code_pairing_ref").with_bytes(pairing_ref.to_vec()),
                ]),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn code_is_base32_of_the_random_bytes() {
        assert_eq!(encode_pair_code(&[0; 5]), "11111111");
        assert_eq!(encode_pair_code(&[0xFF; 5]), "ZZZZZZZZ");
        // 0x00 0x44 0x32 0x14 0xC7 = 00000 00001 00010 00011 00100 00101 00110 00111
        assert_eq!(
            encode_pair_code(&[0x00, 0x44, 0x32, 0x14, 0xC7]),
            "12345678"
        );
        assert_eq!(format_pair_code("ABCDEFGH"), "ABCD-EFGH");
        assert_eq!(normalize_pair_code("abcd-efgh").unwrap(), "ABCDEFGH");
        assert!(normalize_pair_code("ABCD-EFG0").is_err()); // 0 is not in the alphabet
        assert!(normalize_pair_code("ABC").is_err());
    }

    proptest::proptest! {
        #[test]
        fn codes_are_a_bijection_on_40_bits(bytes: [u8; 5], dash: bool) {
            let code = encode_pair_code(&bytes);
            proptest::prop_assert_eq!(code.len(), 8);
            // Decode by hand: each character is 5 bits, most significant first.
            let mut bits = 0u64;
            for c in code.bytes() {
                let i = PAIR_CODE_ALPHABET.iter().position(|a| *a == c).unwrap();
                bits = (bits << 5) | i as u64;
            }
            let mut back = [0u8; 5];
            for (i, b) in back.iter_mut().enumerate() {
                *b = (bits >> (8 * (4 - i))) as u8;
            }
            proptest::prop_assert_eq!(back, bytes);
            let typed = if dash { format_pair_code(&code).to_lowercase() } else { code.to_lowercase() };
            proptest::prop_assert_eq!(normalize_pair_code(&typed).unwrap(), code);
        }
    }

    #[test]
    fn wrap_round_trip_and_wrong_code() {
        let mut rng = StdRng::seed_from_u64(1);
        let hello = CompanionHello::generate(&mut rng);
        assert_eq!(hello.code.len(), 8);
        let back = unwrap_ephemeral_key(&hello.code, &hello.wrapped_ephemeral).unwrap();
        assert_eq!(back, hello.ephemeral.public);
        let wrong = unwrap_ephemeral_key("ZZZZZZZZ", &hello.wrapped_ephemeral).unwrap();
        assert_ne!(wrong, hello.ephemeral.public);
        assert_eq!(
            unwrap_ephemeral_key(&hello.code, &hello.wrapped_ephemeral[..79]),
            Err(PairCodeError::WrappedKeyLength(79))
        );
    }

    /// The phone's side, written from the derivations in the module docs.
    #[test]
    fn both_sides_derive_the_same_adv_secret() {
        let mut rng = StdRng::seed_from_u64(2);
        let identity = KeyPair::generate(&mut rng);
        let hello = CompanionHello::generate(&mut rng);
        // Phone: unwraps our ephemeral key with the code typed in, wraps its own.
        let companion_ephemeral =
            unwrap_ephemeral_key(&hello.code, &hello.wrapped_ephemeral).unwrap();
        let primary_ephemeral = KeyPair::generate(&mut rng);
        let primary_identity = KeyPair::generate(&mut rng);
        let wrapped_primary =
            wrap_ephemeral_key(&hello.code, &primary_ephemeral.public, &[7; 32], &[8; 16]);

        let finish = companion_finish(
            &hello.code,
            &hello.ephemeral,
            &identity,
            &wrapped_primary,
            primary_identity.public.as_bytes(),
            &mut rng,
        )
        .unwrap();

        // Phone: opens the key bundle and derives the secret the same way.
        let shared = primary_ephemeral.agree(&companion_ephemeral);
        let (salt, rest) = finish.wrapped_key_bundle.split_at(32);
        let (nonce, ct) = rest.split_at(12);
        let key = key_bundle_key(&shared, salt);
        let bundle = Aes256Gcm::new(key.as_ref().into())
            .decrypt(Nonce::from_slice(nonce), ct)
            .unwrap();
        assert_eq!(bundle.len(), 96);
        assert_eq!(&bundle[..32], identity.public.as_bytes());
        assert_eq!(&bundle[32..64], primary_identity.public.as_bytes());
        let adv_random: [u8; 32] = bundle[64..].try_into().unwrap();
        let identity_shared = primary_identity.agree(&identity.public);
        let secret = derive_adv_secret(&shared, &identity_shared, &adv_random);
        assert_eq!(*secret, *finish.adv_secret);
    }

    #[test]
    fn refuses_bad_inputs() {
        let mut rng = StdRng::seed_from_u64(3);
        let identity = KeyPair::generate(&mut rng);
        let hello = CompanionHello::generate(&mut rng);
        let err = companion_finish(
            &hello.code,
            &hello.ephemeral,
            &identity,
            &[0; 10],
            &[1; 32],
            &mut rng,
        );
        assert_eq!(err.unwrap_err(), PairCodeError::WrappedKeyLength(10));
        let err = companion_finish(
            &hello.code,
            &hello.ephemeral,
            &identity,
            &[0; 80],
            &[1; 31],
            &mut rng,
        );
        assert_eq!(err.unwrap_err(), PairCodeError::PrimaryIdentityLength(31));
        // A primary identity of all zeros is a low-order point.
        let wrapped = wrap_ephemeral_key(
            &hello.code,
            &KeyPair::generate(&mut rng).public,
            &[1; 32],
            &[2; 16],
        );
        let err = companion_finish(
            &hello.code,
            &hello.ephemeral,
            &identity,
            &wrapped,
            &[0; 32],
            &mut rng,
        );
        assert_eq!(err.unwrap_err(), PairCodeError::WeakKey("identity"));
    }
}
