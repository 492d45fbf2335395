//! Pairwise encryption and decryption on a [`SessionRecord`] (libsignal's
//! `SessionCipher`, sans-IO).
//!
//! Decryption is transactional: the record is changed only when a message
//! authenticates and decrypts. Everything a message would change (a new receiving
//! chain, skipped keys, the advanced chain key) is first computed on the side; a forged,
//! corrupted or duplicate message leaves the record exactly as it was.

use std::collections::VecDeque;

use rand_core::{CryptoRng, RngCore};

use super::SignalError;
use super::crypto::aes_cbc_decrypt;
use super::curve::{KeyPair, PublicKey};
use super::identity::{LocalIdentity, PreKeyRecord, SignedPreKeyRecord};
use super::message::{CiphertextMessage, PreKeySignalMessage, SignalMessage};
use super::ratchet::{ChainKey, MessageKeys, RootKey};
use super::session::{
    MAX_FORWARD_JUMPS, MAX_MESSAGE_KEYS, MAX_RECEIVER_CHAINS, ReceiverChain, SenderChain,
    SessionRecord, SessionState, initialize_as_responder,
};

/// Encrypts `plaintext` on the current session of `record` and advances its sending
/// chain. Returns a `pkmsg` while the session is unacknowledged (we started it and have
/// not yet decrypted anything from the peer), a `msg` afterwards.
///
/// `plaintext` is encrypted as given: add WhatsApp's padding first
/// ([`super::padding::pad`]). Refuses with [`SignalError::NoSession`] when the record is
/// empty.
pub fn encrypt(
    record: &mut SessionRecord,
    plaintext: &[u8],
) -> Result<CiphertextMessage, SignalError> {
    let state = record.current.as_mut().ok_or(SignalError::NoSession)?;
    let chain = state
        .sender_chain
        .as_mut()
        .ok_or(SignalError::NoSendingChain)?;
    let (keys, next) = chain.chain_key.step()?;
    let message = SignalMessage::encrypt(
        &keys,
        &chain.ratchet.public,
        state.previous_counter,
        &state.local_identity,
        &state.remote_identity,
        plaintext,
    );
    chain.chain_key = next;
    Ok(match &state.pending_prekey {
        Some(p) => CiphertextMessage::PreKey(PreKeySignalMessage::serialize_parts(
            state.local_registration_id,
            p.prekey_id,
            p.signed_prekey_id,
            &p.base_key,
            &state.local_identity,
            &message,
        )),
        None => CiphertextMessage::Whisper(message),
    })
}

/// Decrypts a serialized SignalMessage (`enc type="msg"`) with the current or an archived
/// state of `record` (an archived state that decrypts is made current again).
///
/// Returns the plaintext (still WhatsApp-padded). Refuses malformed input, a duplicate
/// ([`SignalError::DuplicateMessage`]), a jump of more than 2000, and a message no state
/// authenticates ([`SignalError::NoValidSession`]); on any error the record is unchanged.
pub fn decrypt_whisper<R: RngCore + CryptoRng + ?Sized>(
    record: &mut SessionRecord,
    ciphertext: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, SignalError> {
    let message = SignalMessage::deserialize(ciphertext)?;
    decrypt_message(record, &message, rng)
}

/// The prekeys the caller loaded for an incoming PreKeySignalMessage (see
/// [`SessionRecord::prekeys_needed`]).
#[derive(Clone, Copy, Default, Debug)]
pub struct PreKeys<'a> {
    /// Our signed prekey named by the message.
    pub signed: Option<&'a SignedPreKeyRecord>,
    /// Our one-time prekey named by the message, if it names one.
    pub one_time: Option<&'a PreKeyRecord>,
}

/// The result of decrypting a PreKeySignalMessage.
#[derive(Clone, PartialEq, Eq)]
pub struct PreKeyDecryption {
    /// The plaintext (still WhatsApp-padded).
    pub plaintext: Vec<u8>,
    /// The one-time prekey this message consumed: delete it in the same commit.
    pub consumed_prekey_id: Option<u32>,
    /// True when the message created a new session state (false when a state for its
    /// base key already existed).
    pub new_session: bool,
    /// The sender's identity key: save it (trust on first use) in the same commit.
    pub remote_identity: PublicKey,
    /// The sender's registration id.
    pub remote_registration_id: u32,
}

impl std::fmt::Debug for PreKeyDecryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreKeyDecryption")
            .field("plaintext_len", &self.plaintext.len())
            .field("consumed_prekey_id", &self.consumed_prekey_id)
            .field("new_session", &self.new_session)
            .field("remote_identity", &self.remote_identity)
            .field("remote_registration_id", &self.remote_registration_id)
            .finish()
    }
}

/// Decrypts a PreKeySignalMessage (`enc type="pkmsg"`).
///
/// When a state for the message's base key exists (the peer has not seen our answer
/// yet), the inner message is decrypted with the record like [`decrypt_whisper`] and no
/// prekey is needed. Otherwise X3DH runs as responder with `prekeys` (load them by
/// [`SessionRecord::prekeys_needed`]); the new state becomes current and the old one is
/// archived. Refuses a missing or mismatched prekey, a reused base key with another
/// identity key ([`SignalError::PreKeyIdentityMismatch`]), and anything [`decrypt_whisper`]
/// refuses; on any error the record is unchanged.
pub fn decrypt_prekey<R: RngCore + CryptoRng + ?Sized>(
    record: &mut SessionRecord,
    our: &LocalIdentity,
    message: &PreKeySignalMessage,
    prekeys: PreKeys<'_>,
    rng: &mut R,
) -> Result<PreKeyDecryption, SignalError> {
    let done = |plaintext, consumed_prekey_id, new_session| PreKeyDecryption {
        plaintext,
        consumed_prekey_id,
        new_session,
        remote_identity: *message.identity_key(),
        remote_registration_id: message.registration_id(),
    };
    if let Some(existing) = record.state_with_base_key(message.base_key()) {
        // The outer identity key is not covered by the inner MAC: only accept it when it
        // is the identity this session was built with.
        if existing.remote_identity != *message.identity_key() {
            return Err(SignalError::PreKeyIdentityMismatch);
        }
        let plaintext = decrypt_message(record, message.message(), rng)?;
        return Ok(done(plaintext, None, false));
    }
    let wanted = message.signed_prekey_id();
    let signed = prekeys
        .signed
        .ok_or(SignalError::MissingSignedPreKey(wanted))?;
    if signed.id != wanted {
        return Err(SignalError::WrongPreKey {
            kind: "signed prekey",
            supplied: signed.id,
            wanted,
        });
    }
    let one_time = match message.prekey_id() {
        None => None,
        Some(wanted) => {
            let k = prekeys.one_time.ok_or(SignalError::MissingPreKey(wanted))?;
            if k.id != wanted {
                return Err(SignalError::WrongPreKey {
                    kind: "one-time prekey",
                    supplied: k.id,
                    wanted,
                });
            }
            Some(k)
        }
    };
    let mut state = initialize_as_responder(our, signed, one_time, message);
    let plan = plan_decrypt(&state, message.message())?;
    let plaintext = apply_plan(&mut state, plan, rng);
    record.promote(state);
    Ok(done(plaintext, message.prekey_id(), true))
}

/// Tries the current state, then each archived state; commits the first that works.
fn decrypt_message<R: RngCore + CryptoRng + ?Sized>(
    record: &mut SessionRecord,
    message: &SignalMessage,
    rng: &mut R,
) -> Result<Vec<u8>, SignalError> {
    let current = record.current.as_mut().ok_or(SignalError::NoSession)?;
    let current_error = match plan_decrypt(current, message) {
        Ok(plan) => return Ok(apply_plan(current, plan, rng)),
        Err(e @ SignalError::DuplicateMessage { .. }) => return Err(e),
        Err(e) => e,
    };
    for i in 0..record.previous.len() {
        let Some(state) = record.previous.get(i) else {
            break;
        };
        match plan_decrypt(state, message) {
            Ok(plan) => {
                let Some(mut state) = record.previous.remove(i) else {
                    break;
                };
                let plaintext = apply_plan(&mut state, plan, rng);
                record.promote(state);
                return Ok(plaintext);
            }
            Err(e @ SignalError::DuplicateMessage { .. }) => return Err(e),
            Err(_) => {}
        }
    }
    Err(SignalError::NoValidSession {
        tried: 1 + record.previous.len(),
        current: Box::new(current_error),
    })
}

/// Which receiving chain a message is on.
enum ChainTarget {
    Existing(usize),
    /// A new ratchet key from the peer: the root key after the receiving half of the DH
    /// ratchet step, and the new chain's key at index 0.
    New {
        root: RootKey,
        their: PublicKey,
        start: ChainKey,
    },
}

/// Where the message key comes from.
enum KeySource {
    /// A skipped key stored in the chain, at this position.
    Skipped(usize),
    /// Derived forward: keys skipped on the way, and the chain key after the message.
    Derived {
        skipped: Vec<MessageKeys>,
        next: ChainKey,
    },
}

/// Everything a successful decryption changes, computed without changing anything.
struct Plan {
    target: ChainTarget,
    source: KeySource,
    plaintext: Vec<u8>,
}

fn plan_decrypt(state: &SessionState, message: &SignalMessage) -> Result<Plan, SignalError> {
    let sender = state
        .sender_chain
        .as_ref()
        .ok_or(SignalError::NoSendingChain)?;
    let their = message.ratchet_key();
    let existing = state
        .receiver_chains
        .iter()
        .position(|c| c.ratchet_key == *their);
    let (target, chain_key, skipped_store) = match existing {
        Some(i) => {
            let chain = state
                .receiver_chains
                .get(i)
                .ok_or(SignalError::NoSendingChain)?;
            (
                ChainTarget::Existing(i),
                chain.chain_key.clone(),
                Some(&chain.skipped),
            )
        }
        None => {
            let (root, start) = state.root_key.create_chain(their, &sender.ratchet.private);
            let chain_key = start.clone();
            (
                ChainTarget::New {
                    root,
                    their: *their,
                    start,
                },
                chain_key,
                None,
            )
        }
    };
    let counter = message.counter();
    let index = chain_key.index();
    let (keys, source) = if counter < index {
        let pos = skipped_store
            .and_then(|s| s.iter().position(|k| k.counter == counter))
            .ok_or(SignalError::DuplicateMessage {
                counter,
                chain_index: index,
            })?;
        let keys = skipped_store.and_then(|s| s.get(pos)).cloned().ok_or(
            SignalError::DuplicateMessage {
                counter,
                chain_index: index,
            },
        )?;
        (keys, KeySource::Skipped(pos))
    } else {
        if counter - index > MAX_FORWARD_JUMPS {
            return Err(SignalError::TooFarInFuture {
                counter,
                chain_index: index,
                limit: MAX_FORWARD_JUMPS,
            });
        }
        let mut skipped = Vec::with_capacity((counter - index) as usize);
        let mut ck = chain_key;
        while ck.index() < counter {
            let (k, next) = ck.step()?;
            skipped.push(k);
            ck = next;
        }
        let (keys, next) = ck.step()?;
        (keys, KeySource::Derived { skipped, next })
    };
    if !message.verify_mac(&state.remote_identity, &state.local_identity, &keys.mac_key) {
        return Err(SignalError::BadMac);
    }
    let plaintext =
        aes_cbc_decrypt(&keys.cipher_key, &keys.iv, message.ciphertext()).map_err(|detail| {
            SignalError::BadCiphertext {
                message: "SignalMessage",
                detail,
            }
        })?;
    Ok(Plan {
        target,
        source,
        plaintext,
    })
}

/// Applies a plan to the state it was computed on. Cannot fail.
fn apply_plan<R: RngCore + CryptoRng + ?Sized>(
    state: &mut SessionState,
    plan: Plan,
    rng: &mut R,
) -> Vec<u8> {
    let chain_index = match plan.target {
        ChainTarget::Existing(i) => i,
        ChainTarget::New { root, their, start } => {
            // The sending half of the DH ratchet step: a fresh ratchet key pair.
            let ours = KeyPair::generate(rng);
            let (root, sending) = root.create_chain(&their, &ours.private);
            state.root_key = root;
            state.receiver_chains.push_back(ReceiverChain {
                ratchet_key: their,
                chain_key: start,
                skipped: VecDeque::new(),
            });
            while state.receiver_chains.len() > MAX_RECEIVER_CHAINS {
                state.receiver_chains.pop_front();
            }
            let sent = state
                .sender_chain
                .as_ref()
                .map_or(0, |c| c.chain_key.index());
            state.previous_counter = sent.saturating_sub(1);
            state.sender_chain = Some(SenderChain {
                ratchet: ours,
                chain_key: sending,
            });
            state.receiver_chains.len().saturating_sub(1)
        }
    };
    if let Some(chain) = state.receiver_chains.get_mut(chain_index) {
        match plan.source {
            KeySource::Skipped(pos) => {
                chain.skipped.remove(pos);
            }
            KeySource::Derived { skipped, next } => {
                chain.skipped.extend(skipped);
                while chain.skipped.len() > MAX_MESSAGE_KEYS {
                    chain.skipped.pop_front();
                }
                chain.chain_key = next;
            }
        }
    }
    state.pending_prekey = None;
    plan.plaintext
}
