//! The message-secret cryptography behind RSVPs and event edits.
//!
//! An event card carries 32 random bytes in `messageContextInfo.messageSecret`. Whoever
//! modifies the event (answers it, edits it) derives a use-case key from that secret:
//!
//! ```text
//! info = event message id ‖ creator JID ‖ modification sender JID ‖ use case
//! key  = HKDF-SHA256(ikm = message secret, salt = none, info, 32 bytes)
//! ```
//!
//! where both JIDs are written without device (`user@server`), and encrypts with
//! AES-256-GCM under a random 12-byte nonce. The additional data is
//! `message id ‖ 0x00 ‖ modification sender` for "Event Response" and empty for
//! "Event Edit". The payload on the wire is ciphertext ‖ 16-byte tag.
//!
//! Sender and receiver must write the JIDs the same way (LID or phone number); the
//! receiving side therefore tries a list of candidate [`Parties`].

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::jid::Jid;
use crate::proto::e2e;

/// Length of a message secret in bytes.
pub const MESSAGE_SECRET_LEN: usize = 32;
/// Length of the AES-GCM nonce (`encIV`) in bytes.
pub const IV_LEN: usize = 12;
/// Length of the AES-GCM tag at the end of `encPayload`.
pub const TAG_LEN: usize = 16;

/// The 32-byte secret an event card carries in `messageContextInfo.messageSecret`.
///
/// Whoever holds it can read and forge RSVPs and edits of that event, so it is kept
/// out of `Debug` output, compared in constant time and wiped when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MessageSecret([u8; MESSAGE_SECRET_LEN]);

impl MessageSecret {
    /// Draws a fresh secret from `rng`.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut bytes = [0u8; MESSAGE_SECRET_LEN];
        rng.fill_bytes(&mut bytes);
        MessageSecret(bytes)
    }

    /// Wraps 32 bytes.
    pub fn from_array(bytes: [u8; MESSAGE_SECRET_LEN]) -> Self {
        MessageSecret(bytes)
    }

    /// Takes a secret from a byte slice; refuses any length other than 32.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        let arr: [u8; MESSAGE_SECRET_LEN] = bytes
            .try_into()
            .map_err(|_| SecretError::SecretLength(bytes.len()))?;
        Ok(MessageSecret(arr))
    }

    /// Reads `messageContextInfo.messageSecret` of a message; refuses a message
    /// without one or with one that is not 32 bytes.
    pub fn from_message(message: &e2e::Message) -> Result<Self, SecretError> {
        let bytes = message
            .message_context_info
            .as_ref()
            .and_then(|c| c.message_secret.as_deref())
            .ok_or(SecretError::NoSecret)?;
        Self::from_bytes(bytes)
    }

    /// The raw bytes (to store them; never log them).
    pub fn as_bytes(&self) -> &[u8; MESSAGE_SECRET_LEN] {
        &self.0
    }
}

impl PartialEq for MessageSecret {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for MessageSecret {}

impl std::fmt::Debug for MessageSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageSecret(<redacted>)")
    }
}

/// What a use-case key is for; its text goes into the HKDF info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UseCase {
    /// An RSVP (`EncEventResponseMessage`): "Event Response", AAD bound to id and sender.
    EventResponse,
    /// An edit or cancellation (`SecretEncryptedMessage` EVENT_EDIT): "Event Edit", empty AAD.
    EventEdit,
}

impl UseCase {
    /// The use-case string WhatsApp feeds into the HKDF info.
    pub fn as_str(self) -> &'static str {
        match self {
            UseCase::EventResponse => "Event Response",
            UseCase::EventEdit => "Event Edit",
        }
    }

    /// Whether the GCM additional data is `message id ‖ 0x00 ‖ sender` (else empty).
    pub fn binds_sender(self) -> bool {
        matches!(self, UseCase::EventResponse)
    }
}

/// The two JIDs a use-case key is bound to: the event's creator and the sender of
/// the modification (responder or editor). Devices are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Parties {
    /// Who created the event (the original message's sender).
    pub creator: Jid,
    /// Who sends the RSVP or edit.
    pub sender: Jid,
}

impl Parties {
    /// A pair from creator and modification sender.
    pub fn new(creator: Jid, sender: Jid) -> Self {
        Parties { creator, sender }
    }

    /// Every (creator, sender) combination of the given alternate forms of each
    /// (e.g. the LID and the phone-number JID of the same user), in order, with
    /// duplicates (after dropping devices) removed. Use it to build the candidate
    /// list for decryption.
    pub fn alternates(creators: &[Jid], senders: &[Jid]) -> Vec<Parties> {
        let mut out: Vec<Parties> = Vec::with_capacity(creators.len() * senders.len());
        for c in creators {
            for s in senders {
                let p = Parties::new(c.to_non_ad(), s.to_non_ad());
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    }
}

/// Picks the JID to respond or edit as: our own LID when the creator is a LID,
/// otherwise our phone-number JID (the rule WhatsApp's clients follow, so that the
/// creator derives the same key). Falls back to the phone-number JID when no LID
/// is known.
pub fn sender_for<'a>(creator: &Jid, own_pn: &'a Jid, own_lid: Option<&'a Jid>) -> &'a Jid {
    match own_lid {
        Some(lid) if creator.is_lid() => lid,
        _ => own_pn,
    }
}

/// Why a secret-protected payload could not be built or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The message secret is not 32 bytes.
    #[error("message secret must be {MESSAGE_SECRET_LEN} bytes, got {0}")]
    SecretLength(usize),
    /// The event message has no `messageContextInfo.messageSecret`.
    #[error("message has no messageContextInfo.messageSecret")]
    NoSecret,
    /// A required field of the encrypted message is absent.
    #[error("{0} is missing")]
    MissingField(&'static str),
    /// `encIV` is not 12 bytes.
    #[error("encIV must be {IV_LEN} bytes, got {0}")]
    IvLength(usize),
    /// `encPayload` is shorter than the GCM tag.
    #[error("encPayload has {0} bytes, less than the {TAG_LEN}-byte GCM tag")]
    PayloadTooShort(usize),
    /// The `SecretEncryptedMessage` is not of the expected type.
    #[error("secretEncType is {found}, expected {expected}")]
    WrongType {
        /// What was expected (e.g. `EVENT_EDIT`).
        expected: &'static str,
        /// What the message says (name or number).
        found: String,
    },
    /// No candidate JID pair was given to decrypt with.
    #[error("no (creator, sender) JID pairs to decrypt {0} with")]
    NoCandidates(&'static str),
    /// GCM authentication failed with every candidate pair: wrong secret, wrong
    /// message id, JIDs written differently by the sender, or a tampered payload.
    #[error(
        "could not decrypt {use_case}: authentication failed with all {tried} (creator, sender) JID pair(s) tried ({pairs}); wrong secret, wrong JID form (LID vs phone number) or tampered payload"
    )]
    Authentication {
        /// The use case string.
        use_case: &'static str,
        /// How many pairs were tried.
        tried: usize,
        /// The pairs tried, as `creator→sender`, for logs.
        pairs: String,
    },
    /// The decrypted bytes are not the expected protobuf.
    #[error("decrypted {what} is not a valid protobuf: {detail}")]
    Decode {
        /// What was decoded.
        what: &'static str,
        /// The decoder's error.
        detail: String,
    },
    /// The AEAD refused to encrypt (only for plaintexts beyond GCM's 64 GiB limit).
    #[error("AES-GCM encryption failed")]
    Encrypt,
    /// An event edit authenticated, but its sender is not the event's creator: only the
    /// creator may edit or cancel an event.
    #[error("event edit sent by {sender}, but only the creator {creator} may edit the event")]
    EditNotByCreator {
        /// The authenticated sender (without device).
        sender: Jid,
        /// The creator of the event (without device).
        creator: Jid,
    },
}

fn non_ad_string(jid: &Jid) -> String {
    jid.to_non_ad().to_string()
}

/// Derives the 32-byte use-case key for a modification of message `message_id`.
///
/// `parties` JIDs are written without device. Exposed for test vectors and
/// debugging; [`seal`] and [`open`] use it.
pub fn derive_use_case_key(
    secret: &MessageSecret,
    use_case: UseCase,
    message_id: &str,
    parties: &Parties,
) -> Result<Zeroizing<[u8; 32]>, SecretError> {
    let creator = non_ad_string(&parties.creator);
    let sender = non_ad_string(&parties.sender);
    let uc = use_case.as_str();
    let mut info = Vec::with_capacity(message_id.len() + creator.len() + sender.len() + uc.len());
    info.extend_from_slice(message_id.as_bytes());
    info.extend_from_slice(creator.as_bytes());
    info.extend_from_slice(sender.as_bytes());
    info.extend_from_slice(uc.as_bytes());
    let hk = Hkdf::<Sha256>::new(None, secret.as_bytes());
    let mut key = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length; map the impossible error
    // rather than panic.
    hk.expand(&info, key.as_mut())
        .map_err(|_| SecretError::Encrypt)?;
    Ok(key)
}

/// The GCM additional data for a use case: `message id ‖ 0x00 ‖ sender` for
/// "Event Response", empty for "Event Edit".
pub fn additional_data(use_case: UseCase, message_id: &str, sender: &Jid) -> Vec<u8> {
    if !use_case.binds_sender() {
        return Vec::new();
    }
    let sender = non_ad_string(sender);
    let mut aad = Vec::with_capacity(message_id.len() + 1 + sender.len());
    aad.extend_from_slice(message_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(sender.as_bytes());
    aad
}

/// An encrypted payload as it goes into `encPayload` / `encIV`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Ciphertext followed by the 16-byte tag.
    pub payload: Vec<u8>,
    /// The random 12-byte nonce.
    pub iv: [u8; IV_LEN],
}

/// Encrypts `plaintext` for `use_case` under a key derived from `secret`, with a
/// random nonce drawn from `rng`.
pub fn seal<R: RngCore + CryptoRng>(
    secret: &MessageSecret,
    use_case: UseCase,
    message_id: &str,
    parties: &Parties,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Sealed, SecretError> {
    let key = derive_use_case_key(secret, use_case, message_id, parties)?;
    let aad = additional_data(use_case, message_id, &parties.sender);
    let mut iv = [0u8; IV_LEN];
    rng.fill_bytes(&mut iv);
    let cipher = Aes256Gcm::new(key.as_ref().into());
    let payload = cipher
        .encrypt(
            &Nonce::from(iv),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| SecretError::Encrypt)?;
    Ok(Sealed { payload, iv })
}

/// Decrypts one payload with one candidate pair; `None` on authentication failure.
fn open_once(
    secret: &MessageSecret,
    use_case: UseCase,
    message_id: &str,
    parties: &Parties,
    iv: &[u8; IV_LEN],
    payload: &[u8],
) -> Result<Option<Vec<u8>>, SecretError> {
    let key = derive_use_case_key(secret, use_case, message_id, parties)?;
    let aad = additional_data(use_case, message_id, &parties.sender);
    let cipher = Aes256Gcm::new(key.as_ref().into());
    Ok(cipher
        .decrypt(
            &Nonce::from(*iv),
            Payload {
                msg: payload,
                aad: &aad,
            },
        )
        .ok())
}

/// Decrypts a payload, trying each candidate (creator, sender) pair in order.
/// Returns the plaintext and the pair that authenticated.
///
/// Refuses a nonce that is not 12 bytes, a payload shorter than the tag, an empty
/// candidate list, and (with [`SecretError::Authentication`]) a payload no candidate
/// authenticates. The tag check is the AEAD's own constant-time comparison.
pub fn open<'c>(
    secret: &MessageSecret,
    use_case: UseCase,
    message_id: &str,
    candidates: &'c [Parties],
    iv: &[u8],
    payload: &[u8],
) -> Result<(Vec<u8>, &'c Parties), SecretError> {
    let iv: &[u8; IV_LEN] = iv.try_into().map_err(|_| SecretError::IvLength(iv.len()))?;
    if payload.len() < TAG_LEN {
        return Err(SecretError::PayloadTooShort(payload.len()));
    }
    if candidates.is_empty() {
        return Err(SecretError::NoCandidates(use_case.as_str()));
    }
    for parties in candidates {
        if let Some(plain) = open_once(secret, use_case, message_id, parties, iv, payload)? {
            return Ok((plain, parties));
        }
    }
    Err(SecretError::Authentication {
        use_case: use_case.as_str(),
        tried: candidates.len(),
        pairs: candidates
            .iter()
            .map(|p| format!("{}→{}", p.creator.to_non_ad(), p.sender.to_non_ad()))
            .collect::<Vec<_>>()
            .join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn parties() -> Parties {
        Parties::new(
            Jid::parse("5511999990000:12@s.whatsapp.net").unwrap(),
            Jid::parse("5511988887777@s.whatsapp.net").unwrap(),
        )
    }

    #[test]
    fn seal_then_open_round_trips_and_ignores_devices() {
        let mut rng = StdRng::seed_from_u64(1);
        let secret = MessageSecret::generate(&mut rng);
        let p = parties();
        let sealed = seal(
            &secret,
            UseCase::EventResponse,
            "3EB0AB",
            &p,
            b"hi",
            &mut rng,
        )
        .unwrap();
        assert_eq!(sealed.payload.len(), 2 + TAG_LEN);
        let same_users = [Parties::new(p.creator.to_non_ad(), p.sender.with_device(5))];
        let (plain, used) = open(
            &secret,
            UseCase::EventResponse,
            "3EB0AB",
            &same_users,
            &sealed.iv,
            &sealed.payload,
        )
        .unwrap();
        assert_eq!(plain, b"hi");
        assert_eq!(used, &same_users[0]);
    }

    #[test]
    fn open_refuses_wrong_inputs_with_typed_errors() {
        let mut rng = StdRng::seed_from_u64(2);
        let secret = MessageSecret::generate(&mut rng);
        let p = parties();
        let sealed = seal(&secret, UseCase::EventResponse, "ID1", &p, b"x", &mut rng).unwrap();
        let c = [p.clone()];
        // Wrong use case, wrong id, wrong secret, wrong sender: all authentication failures.
        for (uc, id, s, cand) in [
            (UseCase::EventEdit, "ID1", secret.clone(), c.to_vec()),
            (UseCase::EventResponse, "ID2", secret.clone(), c.to_vec()),
            (
                UseCase::EventResponse,
                "ID1",
                MessageSecret::from_array([7; 32]),
                c.to_vec(),
            ),
            (
                UseCase::EventResponse,
                "ID1",
                secret.clone(),
                vec![Parties::new(p.creator.clone(), Jid::lid_user("123"))],
            ),
        ] {
            let err = open(&s, uc, id, &cand, &sealed.iv, &sealed.payload).unwrap_err();
            assert!(
                matches!(err, SecretError::Authentication { tried: 1, .. }),
                "{err}"
            );
        }
        assert_eq!(
            open(
                &secret,
                UseCase::EventResponse,
                "ID1",
                &c,
                &[0; 11],
                &sealed.payload
            ),
            Err(SecretError::IvLength(11))
        );
        assert_eq!(
            open(
                &secret,
                UseCase::EventResponse,
                "ID1",
                &c,
                &sealed.iv,
                &[0; 15]
            ),
            Err(SecretError::PayloadTooShort(15))
        );
        assert_eq!(
            open(
                &secret,
                UseCase::EventResponse,
                "ID1",
                &[],
                &sealed.iv,
                &sealed.payload
            ),
            Err(SecretError::NoCandidates("Event Response"))
        );
        let mut tampered = sealed.payload.clone();
        tampered[0] ^= 1;
        assert!(
            open(
                &secret,
                UseCase::EventResponse,
                "ID1",
                &c,
                &sealed.iv,
                &tampered
            )
            .is_err()
        );
    }

    #[test]
    fn second_candidate_is_tried_after_the_first_fails() {
        let mut rng = StdRng::seed_from_u64(3);
        let secret = MessageSecret::generate(&mut rng);
        let lid = Parties::new(
            Jid::lid_user("100000000000001"),
            Jid::lid_user("200000000000002"),
        );
        let sealed = seal(&secret, UseCase::EventEdit, "E", &lid, b"edit", &mut rng).unwrap();
        let cands = Parties::alternates(
            &[
                Jid::pn_user("5511999990000"),
                Jid::lid_user("100000000000001"),
            ],
            &[
                Jid::pn_user("5511988887777"),
                Jid::lid_user("200000000000002"),
            ],
        );
        assert_eq!(cands.len(), 4);
        let (plain, used) = open(
            &secret,
            UseCase::EventEdit,
            "E",
            &cands,
            &sealed.iv,
            &sealed.payload,
        )
        .unwrap();
        assert_eq!(plain, b"edit");
        assert_eq!(used, &lid);
    }

    #[test]
    fn aad_only_for_event_response() {
        let s = Jid::parse("5511988887777:3@s.whatsapp.net").unwrap();
        assert_eq!(
            additional_data(UseCase::EventResponse, "ABC", &s),
            b"ABC\x005511988887777@s.whatsapp.net"
        );
        assert!(additional_data(UseCase::EventEdit, "ABC", &s).is_empty());
    }

    #[test]
    fn secret_is_redacted_checked_and_compared() {
        let s = MessageSecret::from_array([0xAB; 32]);
        assert_eq!(format!("{s:?}"), "MessageSecret(<redacted>)");
        assert_eq!(
            MessageSecret::from_bytes(&[1; 31]),
            Err(SecretError::SecretLength(31))
        );
        assert_eq!(s, MessageSecret::from_bytes(&[0xAB; 32]).unwrap());
        assert_ne!(s, MessageSecret::from_array([0xAC; 32]));
        assert_eq!(
            MessageSecret::from_message(&e2e::Message::default()),
            Err(SecretError::NoSecret)
        );
    }

    #[test]
    fn sender_follows_the_creators_namespace() {
        let pn = Jid::pn_user("5511988887777");
        let lid = Jid::lid_user("200000000000002");
        assert_eq!(sender_for(&Jid::lid_user("1"), &pn, Some(&lid)), &lid);
        assert_eq!(sender_for(&Jid::pn_user("1"), &pn, Some(&lid)), &pn);
        assert_eq!(sender_for(&Jid::lid_user("1"), &pn, None), &pn);
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn jid() -> impl Strategy<Value = Jid> {
        ("[1-9][0-9]{6,14}", any::<bool>(), 0u16..100).prop_map(|(user, lid, device)| {
            let j = if lid {
                Jid::lid_user(user)
            } else {
                Jid::pn_user(user)
            };
            j.with_device(device)
        })
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(
            seed in any::<u64>(),
            edit in any::<bool>(),
            id in "[0-9A-F]{16,32}",
            creator in jid(),
            sender in jid(),
            plaintext in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let secret = MessageSecret::generate(&mut rng);
            let uc = if edit { UseCase::EventEdit } else { UseCase::EventResponse };
            let p = Parties::new(creator, sender);
            let sealed = seal(&secret, uc, &id, &p, &plaintext, &mut rng).unwrap();
            prop_assert_eq!(sealed.payload.len(), plaintext.len() + TAG_LEN);
            let c = [Parties::new(p.creator.to_non_ad(), p.sender.to_non_ad())];
            let (plain, _) = open(&secret, uc, &id, &c, &sealed.iv, &sealed.payload).unwrap();
            prop_assert_eq!(plain, plaintext);
        }
    }
}
