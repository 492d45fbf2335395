//! Sender keys (libsignal's group cipher, sans-IO): one [`SenderKeyRecord`] per
//! (group, sending device) — see [`super::SenderKeyName`].
//!
//! The sender creates a state (random 31-bit key id, random chain key, fresh signing key
//! pair), hands it to every member in a SenderKeyDistributionMessage (pairwise
//! encrypted), and then encrypts each group message once: AES-256-CBC with keys from the
//! chain, signed with the signing key (`skmsg`). Receivers keep up to
//! [`MAX_SENDER_KEY_STATES`] states per record, accept jumps of up to 2000 iterations
//! and keep up to 2000 skipped keys per state. Decryption is transactional: a forged,
//! corrupted or duplicate message leaves the record unchanged.

use std::collections::VecDeque;

use prost::Message;
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroize;

use super::crypto::aes_cbc_decrypt;
use super::curve::{KeyPair, PrivateKey, PublicKey};
use super::message::{SenderKeyDistributionMessage, SenderKeyMessage};
use super::ratchet::{SenderChainKey, SenderMessageKey};
use super::records::{self, RECORD_VERSION};
use super::{RecordError, SignalError};
use crate::proto::records as pb;

/// States kept per sender-key record (the oldest is dropped).
pub const MAX_SENDER_KEY_STATES: usize = 5;
/// Skipped message keys kept per sender-key state (the oldest are dropped).
pub const MAX_SENDER_MESSAGE_KEYS: usize = 2000;
/// Largest accepted jump of an iteration past the chain's position.
pub const MAX_SENDER_FORWARD_JUMPS: u32 = 2000;

/// Our own signing key: the private key and its cached XEdDSA `A`.
#[derive(Clone)]
pub(super) struct OwnSigningKey {
    private: PrivateKey,
    edwards_public: [u8; 32],
}

impl std::fmt::Debug for OwnSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnSigningKey")
            .field("private", &self.private)
            .finish_non_exhaustive()
    }
}

impl OwnSigningKey {
    pub(super) fn new(private: PrivateKey) -> Self {
        let edwards_public = private.edwards_public();
        OwnSigningKey {
            private,
            edwards_public,
        }
    }
}

/// One sender-key chain: key id, chain key, signing key and skipped message keys.
#[derive(Clone)]
pub struct SenderKeyState {
    key_id: u32,
    chain_key: SenderChainKey,
    signing_public: PublicKey,
    signing_private: Option<OwnSigningKey>,
    skipped: VecDeque<SenderMessageKey>,
}

impl std::fmt::Debug for SenderKeyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderKeyState")
            .field("key_id", &self.key_id)
            .field("iteration", &self.chain_key.iteration())
            .field("signing_key", &self.signing_public)
            .field("own", &self.signing_private.is_some())
            .field("skipped_keys", &self.skipped.len())
            .field("keys", &"<redacted>")
            .finish()
    }
}

impl SenderKeyState {
    /// The key id (chain id) that selects this state.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The iteration of the next message of this chain.
    pub fn iteration(&self) -> u32 {
        self.chain_key.iteration()
    }

    /// The public signing key.
    pub fn signing_key(&self) -> &PublicKey {
        &self.signing_public
    }

    /// True for our own state (we hold the private signing key).
    pub fn is_own(&self) -> bool {
        self.signing_private.is_some()
    }
}

/// The sender-key states of one (group, sender) pair, newest first.
#[derive(Clone, Default, Debug)]
pub struct SenderKeyRecord {
    states: VecDeque<SenderKeyState>,
}

const RECORD: &str = "sender key";

impl SenderKeyRecord {
    /// An empty record.
    pub fn new() -> Self {
        SenderKeyRecord::default()
    }

    /// True when the record holds no state.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// The newest state (the one our own sends use).
    pub fn current_state(&self) -> Option<&SenderKeyState> {
        self.states.front()
    }

    /// The state with `key_id`, if any.
    pub fn state(&self, key_id: u32) -> Option<&SenderKeyState> {
        self.states.iter().find(|s| s.key_id == key_id)
    }

    /// All states, newest first.
    pub fn states(&self) -> impl Iterator<Item = &SenderKeyState> {
        self.states.iter()
    }

    /// Serializes as a versioned `SenderKeyRecordStructure` (libsignal's layout).
    pub fn serialize(&self) -> Vec<u8> {
        use pb::sender_key_state_structure::{
            SenderChainKey as PbChain, SenderMessageKey as PbKey, SenderSigningKey,
        };
        let mut msg = pb::SenderKeyRecordStructure {
            sender_key_states: self
                .states
                .iter()
                .map(|s| pb::SenderKeyStateStructure {
                    sender_key_id: Some(s.key_id),
                    sender_chain_key: Some(PbChain {
                        iteration: Some(s.chain_key.iteration()),
                        seed: Some(s.chain_key.seed().to_vec()),
                    }),
                    sender_signing_key: Some(SenderSigningKey {
                        public: Some(s.signing_public.serialize().to_vec()),
                        private: s
                            .signing_private
                            .as_ref()
                            .map(|p| p.private.to_bytes().to_vec()),
                        edwards_public: s
                            .signing_private
                            .as_ref()
                            .map(|p| p.edwards_public.to_vec()),
                    }),
                    sender_message_keys: s
                        .skipped
                        .iter()
                        .map(|k| PbKey {
                            iteration: Some(k.iteration),
                            seed: Some(k.seed.to_vec()),
                        })
                        .collect(),
                })
                .collect(),
            version: Some(RECORD_VERSION),
        };
        let out = msg.encode_to_vec();
        wipe(&mut msg);
        out
    }

    /// Parses a `SenderKeyRecordStructure`. Refuses garbage, unknown versions, missing or
    /// mis-sized keys, more than 5 states and more than 2000 skipped keys per state.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut msg =
            records::decode::<pb::SenderKeyRecordStructure>(RECORD, bytes, |m| m.version)?;
        let result = (|| {
            if msg.sender_key_states.len() > MAX_SENDER_KEY_STATES {
                return Err(records::invalid(RECORD, "more than 5 states"));
            }
            let mut states = VecDeque::with_capacity(msg.sender_key_states.len());
            for s in &msg.sender_key_states {
                if s.sender_message_keys.len() > MAX_SENDER_MESSAGE_KEYS {
                    return Err(records::invalid(RECORD, "more than 2000 skipped keys"));
                }
                let chain = s
                    .sender_chain_key
                    .as_ref()
                    .ok_or(records::invalid(RECORD, "missing chain key"))?;
                let signing = s
                    .sender_signing_key
                    .as_ref()
                    .ok_or(records::invalid(RECORD, "missing signing key"))?;
                let signing_public =
                    records::public_key(RECORD, signing.public.as_ref(), "bad public signing key")?;
                // Our own key is trusted as stored (like the private key itself), so a
                // load costs no scalar multiplication unless `A` is missing.
                let signing_private = match &signing.private {
                    None => None,
                    Some(p) => {
                        let private =
                            records::private_key(RECORD, Some(p), "bad private signing key")?;
                        Some(match &signing.edwards_public {
                            Some(a) => OwnSigningKey {
                                private,
                                edwards_public: records::fixed(
                                    RECORD,
                                    Some(a),
                                    "Edwards public key is not 32 bytes",
                                )?,
                            },
                            None => {
                                if private.public_key() != signing_public {
                                    return Err(records::invalid(
                                        RECORD,
                                        "signing keys do not match",
                                    ));
                                }
                                OwnSigningKey::new(private)
                            }
                        })
                    }
                };
                let mut skipped = VecDeque::with_capacity(s.sender_message_keys.len());
                for k in &s.sender_message_keys {
                    skipped.push_back(SenderMessageKey::new(
                        k.iteration.unwrap_or(0),
                        records::fixed(
                            RECORD,
                            k.seed.as_ref(),
                            "skipped key seed is not 32 bytes",
                        )?,
                    ));
                }
                states.push_back(SenderKeyState {
                    key_id: s.sender_key_id.unwrap_or(0),
                    chain_key: SenderChainKey::new(
                        chain.iteration.unwrap_or(0),
                        records::fixed(RECORD, chain.seed.as_ref(), "chain seed is not 32 bytes")?,
                    ),
                    signing_public,
                    signing_private,
                    skipped,
                });
            }
            Ok(SenderKeyRecord { states })
        })();
        wipe(&mut msg);
        result
    }
}

fn wipe(msg: &mut pb::SenderKeyRecordStructure) {
    for s in &mut msg.sender_key_states {
        if let Some(c) = s.sender_chain_key.as_mut() {
            c.seed.zeroize();
        }
        if let Some(k) = s.sender_signing_key.as_mut() {
            k.private.zeroize();
            k.edwards_public.zeroize();
        }
        for k in &mut s.sender_message_keys {
            k.seed.zeroize();
        }
    }
}

/// A random sender key id in `0..2^31`, as libsignal and Baileys draw them.
fn generate_key_id<R: RngCore + ?Sized>(rng: &mut R) -> u32 {
    rng.next_u32() & 0x7FFF_FFFF
}

/// Replaces everything in `record` with a fresh own state: random key id, random chain
/// key at iteration 0, fresh signing key pair. Use it to rotate our sender key (e.g.
/// when a member who had it leaves the group).
pub fn create_sender_key<R: RngCore + CryptoRng + ?Sized>(
    record: &mut SenderKeyRecord,
    rng: &mut R,
) {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let signing = KeyPair::generate(rng);
    record.states.clear();
    record.states.push_back(SenderKeyState {
        key_id: generate_key_id(rng),
        chain_key: SenderChainKey::new(0, seed),
        signing_public: signing.public,
        signing_private: Some(OwnSigningKey::new(signing.private)),
        skipped: VecDeque::new(),
    });
    seed.zeroize();
}

/// The SKDM for our sender key in `record`, creating the key first when the record is
/// empty. The message carries the current iteration and chain key, so members only
/// read messages from now on. Returns the message and whether the record was changed
/// (created). Refuses a record whose newest state is not our own.
pub fn create_distribution_message<R: RngCore + CryptoRng + ?Sized>(
    record: &mut SenderKeyRecord,
    rng: &mut R,
) -> Result<(SenderKeyDistributionMessage, bool), SignalError> {
    let created = record.is_empty();
    if created {
        create_sender_key(record, rng);
    }
    let state = record.states.front().ok_or(SignalError::NoSenderKey)?;
    if state.signing_private.is_none() {
        return Err(SignalError::NotOwnSenderKey);
    }
    Ok((
        SenderKeyDistributionMessage::new(
            state.key_id,
            state.chain_key.iteration(),
            *state.chain_key.seed(),
            state.signing_public,
        ),
        created,
    ))
}

/// Adds the sender key from a received SKDM to `record` (the record of the SKDM's
/// sender in its group). As libsignal: an SKDM repeating a state we already have (same
/// key id and signing key) keeps that state, so a replayed SKDM cannot rewind the
/// chain; a state with the same key id but another signing key is replaced; at most
/// [`MAX_SENDER_KEY_STATES`] states are kept, newest first.
pub fn process_distribution_message(
    record: &mut SenderKeyRecord,
    message: &SenderKeyDistributionMessage,
) {
    let same = record
        .states
        .iter()
        .position(|s| s.key_id == message.key_id() && s.signing_public == *message.signing_key());
    let state = match same.and_then(|i| record.states.remove(i)) {
        Some(existing) => existing,
        None => SenderKeyState {
            key_id: message.key_id(),
            chain_key: SenderChainKey::new(message.iteration(), *message.chain_key()),
            signing_public: *message.signing_key(),
            signing_private: None,
            skipped: VecDeque::new(),
        },
    };
    record.states.retain(|s| s.key_id != message.key_id());
    record.states.push_front(state);
    record.states.truncate(MAX_SENDER_KEY_STATES);
}

/// Encrypts `plaintext` (already WhatsApp-padded) with our sender key and signs it: the
/// bytes of `<enc type="skmsg">`. Advances the chain. Refuses an empty record and a
/// record whose newest state is not our own.
pub fn encrypt<R: RngCore + CryptoRng + ?Sized>(
    record: &mut SenderKeyRecord,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, SignalError> {
    let state = record.states.front_mut().ok_or(SignalError::NoSenderKey)?;
    let own = state
        .signing_private
        .as_ref()
        .ok_or(SignalError::NotOwnSenderKey)?;
    let (message_key, next) = state.chain_key.step()?;
    let keys = message_key.cipher_keys();
    let mut out = SenderKeyMessage::encrypt_unsigned(
        state.key_id,
        message_key.iteration(),
        &keys.iv,
        &keys.cipher_key,
        plaintext,
    );
    let signature = own
        .private
        .sign_with_edwards_public(&own.edwards_public, rng, &out);
    out.extend_from_slice(&signature);
    state.chain_key = next;
    Ok(out)
}

/// Decrypts a serialized SenderKeyMessage (`enc type="skmsg"`) with the state named by
/// its key id. Returns the plaintext (still WhatsApp-padded).
///
/// Refuses malformed input, an unknown key id, a bad signature, a duplicate
/// ([`SignalError::DuplicateMessage`]) and a jump of more than 2000 iterations; on any
/// error the record is unchanged.
pub fn decrypt(record: &mut SenderKeyRecord, ciphertext: &[u8]) -> Result<Vec<u8>, SignalError> {
    let message = SenderKeyMessage::deserialize(ciphertext)?;
    if record.is_empty() {
        return Err(SignalError::NoSenderKey);
    }
    let index = record
        .states
        .iter()
        .position(|s| s.key_id == message.key_id())
        .ok_or(SignalError::NoSenderKeyState(message.key_id()))?;
    let state = record
        .states
        .get_mut(index)
        .ok_or(SignalError::NoSenderKeyState(message.key_id()))?;
    if !message.verify_signature(&state.signing_public) {
        return Err(SignalError::BadSignature);
    }
    let iteration = message.iteration();
    let current = state.chain_key.iteration();
    if iteration < current {
        let pos = state
            .skipped
            .iter()
            .position(|k| k.iteration == iteration)
            .ok_or(SignalError::DuplicateMessage {
                counter: iteration,
                chain_index: current,
            })?;
        let key = state
            .skipped
            .get(pos)
            .ok_or(SignalError::DuplicateMessage {
                counter: iteration,
                chain_index: current,
            })?;
        let plaintext = decrypt_body(key, &message)?;
        state.skipped.remove(pos);
        return Ok(plaintext);
    }
    if iteration - current > MAX_SENDER_FORWARD_JUMPS {
        return Err(SignalError::TooFarInFuture {
            counter: iteration,
            chain_index: current,
            limit: MAX_SENDER_FORWARD_JUMPS,
        });
    }
    let mut skipped = Vec::with_capacity((iteration - current) as usize);
    let mut chain = state.chain_key.clone();
    while chain.iteration() < iteration {
        let (key, next) = chain.step()?;
        skipped.push(key);
        chain = next;
    }
    let (key, next) = chain.step()?;
    let plaintext = decrypt_body(&key, &message)?;
    state.skipped.extend(skipped);
    while state.skipped.len() > MAX_SENDER_MESSAGE_KEYS {
        state.skipped.pop_front();
    }
    state.chain_key = next;
    Ok(plaintext)
}

fn decrypt_body(
    key: &SenderMessageKey,
    message: &SenderKeyMessage,
) -> Result<Vec<u8>, SignalError> {
    let keys = key.cipher_keys();
    aes_cbc_decrypt(&keys.cipher_key, &keys.iv, message.ciphertext()).map_err(|detail| {
        SignalError::BadCiphertext {
            message: "SenderKeyMessage",
            detail,
        }
    })
}
