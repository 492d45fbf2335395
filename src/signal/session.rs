//! Pairwise sessions: [`SessionState`] (one Double Ratchet), [`SessionRecord`] (the
//! current state plus up to 40 archived ones for one remote device), and X3DH session
//! setup from a [`PreKeyBundle`] (we start) or from a PreKeySignalMessage (they start).
//!
//! Everything here works on in-memory records; loading and committing them is the
//! caller's job (see [`super::store`]).

use std::collections::VecDeque;

use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroize;

use super::curve::{KeyPair, PublicKey};
use super::identity::{LocalIdentity, PreKeyBundle, PreKeyRecord, SignedPreKeyRecord};
use super::message::PreKeySignalMessage;
use super::ratchet::{ChainKey, MessageKeys, RootKey, derive_initial_keys};
use super::records;
use super::{RecordError, SignalError};
use crate::proto::records as pb;

/// The session version WhatsApp uses (libsignal v3, no post-quantum part).
pub const SESSION_VERSION: u32 = 3;
/// Receiver chains kept per session state (older ones are dropped).
pub const MAX_RECEIVER_CHAINS: usize = 5;
/// Archived session states kept per record.
pub const MAX_ARCHIVED_STATES: usize = 40;
/// Skipped message keys kept per receiver chain (the oldest are dropped).
pub const MAX_MESSAGE_KEYS: usize = 2000;
/// Largest accepted jump of a message counter past the chain's position.
pub const MAX_FORWARD_JUMPS: u32 = 2000;

/// Our sending chain: our current ratchet key pair and its chain key.
#[derive(Clone)]
pub(crate) struct SenderChain {
    pub(crate) ratchet: KeyPair,
    pub(crate) chain_key: ChainKey,
}

/// A receiving chain: the peer's ratchet key, its chain key, and skipped message keys
/// (oldest first).
#[derive(Clone)]
pub(crate) struct ReceiverChain {
    pub(crate) ratchet_key: PublicKey,
    pub(crate) chain_key: ChainKey,
    pub(crate) skipped: VecDeque<MessageKeys>,
}

/// What a session we started still has to tell the peer (sent in every pkmsg).
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct PendingPreKey {
    pub(crate) prekey_id: Option<u32>,
    pub(crate) signed_prekey_id: u32,
    pub(crate) base_key: PublicKey,
}

/// One Double Ratchet session with one remote device. Private keys and chain keys are
/// zeroized on drop; `Debug` shows no key material.
#[derive(Clone)]
pub struct SessionState {
    pub(crate) local_identity: PublicKey,
    pub(crate) remote_identity: PublicKey,
    pub(crate) root_key: RootKey,
    pub(crate) previous_counter: u32,
    pub(crate) sender_chain: Option<SenderChain>,
    pub(crate) receiver_chains: VecDeque<ReceiverChain>,
    pub(crate) pending_prekey: Option<PendingPreKey>,
    pub(crate) remote_registration_id: u32,
    pub(crate) local_registration_id: u32,
    pub(crate) alice_base_key: Option<PublicKey>,
}

impl std::fmt::Debug for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionState")
            .field("remote_identity", &self.remote_identity)
            .field("remote_registration_id", &self.remote_registration_id)
            .field("alice_base_key", &self.alice_base_key)
            .field(
                "sending_index",
                &self.sender_chain.as_ref().map(|c| c.chain_key.index()),
            )
            .field("receiver_chains", &self.receiver_chains.len())
            .field("unacknowledged_prekey", &self.pending_prekey.is_some())
            .field("keys", &"<redacted>")
            .finish()
    }
}

impl SessionState {
    /// Our identity key as recorded in the session.
    pub fn local_identity(&self) -> &PublicKey {
        &self.local_identity
    }

    /// The peer's identity key.
    pub fn remote_identity(&self) -> &PublicKey {
        &self.remote_identity
    }

    /// The peer's registration id (from the bundle or its pkmsg).
    pub fn remote_registration_id(&self) -> u32 {
        self.remote_registration_id
    }

    /// Our registration id as recorded in the session.
    pub fn local_registration_id(&self) -> u32 {
        self.local_registration_id
    }

    /// The X3DH base key that identifies this session.
    pub fn alice_base_key(&self) -> Option<&PublicKey> {
        self.alice_base_key.as_ref()
    }

    /// True while we started this session and have not yet decrypted anything from the
    /// peer: every message we encrypt is then a `pkmsg`.
    pub fn has_unacknowledged_prekey(&self) -> bool {
        self.pending_prekey.is_some()
    }

    /// How many receiving chains the state keeps (at most [`MAX_RECEIVER_CHAINS`]).
    pub fn receiver_chains_len(&self) -> usize {
        self.receiver_chains.len()
    }

    /// Index of the next message we send on this session.
    pub fn sending_index(&self) -> Option<u32> {
        self.sender_chain.as_ref().map(|c| c.chain_key.index())
    }
}

/// All session states with one remote device: the current one and up to
/// [`MAX_ARCHIVED_STATES`] archived ones (newest first), so that late messages to a
/// replaced session still decrypt.
#[derive(Clone, Default, Debug)]
pub struct SessionRecord {
    pub(crate) current: Option<SessionState>,
    pub(crate) previous: VecDeque<SessionState>,
}

/// The prekeys a PreKeySignalMessage needs to build a new session.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PreKeyIds {
    /// Our signed prekey the sender used.
    pub signed_prekey_id: u32,
    /// Our one-time prekey the sender used, if any.
    pub prekey_id: Option<u32>,
}

impl SessionRecord {
    /// An empty record (no session yet).
    pub fn new() -> Self {
        SessionRecord::default()
    }

    /// The current session state, if any.
    pub fn current(&self) -> Option<&SessionState> {
        self.current.as_ref()
    }

    /// True when there is a current session to encrypt with.
    pub fn has_current_session(&self) -> bool {
        self.current.is_some()
    }

    /// The archived states, newest first.
    pub fn previous_states(&self) -> impl Iterator<Item = &SessionState> {
        self.previous.iter()
    }

    /// True when the current or an archived state was built from `base_key`.
    pub fn has_state_with_base_key(&self, base_key: &PublicKey) -> bool {
        self.state_with_base_key(base_key).is_some()
    }

    /// The current or archived state built from `base_key`, if any.
    pub(crate) fn state_with_base_key(&self, base_key: &PublicKey) -> Option<&SessionState> {
        self.current
            .iter()
            .chain(self.previous.iter())
            .find(|s| s.alice_base_key.as_ref() == Some(base_key))
    }

    /// Which prekeys [`super::decrypt_prekey`] needs for `message`, or `None` when a state
    /// for its base key already exists (then no prekey is needed or consumed).
    pub fn prekeys_needed(&self, message: &PreKeySignalMessage) -> Option<PreKeyIds> {
        if self.has_state_with_base_key(message.base_key()) {
            None
        } else {
            Some(PreKeyIds {
                signed_prekey_id: message.signed_prekey_id(),
                prekey_id: message.prekey_id(),
            })
        }
    }

    /// Moves the current state (if any) to the front of the archive, dropping the oldest
    /// beyond [`MAX_ARCHIVED_STATES`]. Afterwards there is no current state.
    pub fn archive_current_state(&mut self) {
        if let Some(state) = self.current.take() {
            self.previous.push_front(state);
            self.previous.truncate(MAX_ARCHIVED_STATES);
        }
    }

    /// Makes `state` current, archiving the previous current state.
    pub(crate) fn promote(&mut self, state: SessionState) {
        self.archive_current_state();
        self.current = Some(state);
    }

    /// Serializes as a versioned `RecordStructure` (libsignal's layout), written
    /// directly into one exactly sized buffer (no intermediate prost structs: this runs
    /// once per device on every group send).
    pub fn serialize(&self) -> Vec<u8> {
        super::session_wire::encode_record(self)
    }

    /// The previous serializer, through the prost structs: the oracle the direct
    /// writer's tests compare against byte for byte.
    #[cfg(test)]
    pub(crate) fn serialize_via_prost(&self) -> Vec<u8> {
        let mut msg = pb::RecordStructure {
            current_session: self.current.as_ref().map(state_to_pb),
            previous_sessions: self.previous.iter().map(state_to_pb).collect(),
            version: Some(records::RECORD_VERSION),
        };
        let out = prost::Message::encode_to_vec(&msg);
        wipe_record(&mut msg);
        out
    }

    /// Parses a `RecordStructure`. Refuses garbage, unknown versions, missing or
    /// mis-sized keys, and more chains, skipped keys or archived states than the limits.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut msg = records::decode::<pb::RecordStructure>(RECORD, bytes, |m| m.version)?;
        let result = (|| {
            if msg.previous_sessions.len() > MAX_ARCHIVED_STATES {
                return Err(records::invalid(RECORD, "more than 40 archived states"));
            }
            Ok(SessionRecord {
                current: msg
                    .current_session
                    .as_ref()
                    .map(state_from_pb)
                    .transpose()?,
                previous: msg
                    .previous_sessions
                    .iter()
                    .map(state_from_pb)
                    .collect::<Result<_, _>>()?,
            })
        })();
        wipe_record(&mut msg);
        result
    }
}

const RECORD: &str = "session";

fn wipe_record(msg: &mut pb::RecordStructure) {
    for s in msg
        .current_session
        .iter_mut()
        .chain(msg.previous_sessions.iter_mut())
    {
        s.root_key.zeroize();
        for c in s
            .sender_chain
            .iter_mut()
            .chain(s.receiver_chains.iter_mut())
        {
            c.sender_ratchet_key_private.zeroize();
            if let Some(ck) = c.chain_key.as_mut() {
                ck.key.zeroize();
            }
            for k in &mut c.message_keys {
                k.cipher_key.zeroize();
                k.mac_key.zeroize();
                k.iv.zeroize();
            }
        }
    }
}

#[cfg(test)]
fn chain_key_to_pb(ck: &ChainKey) -> pb::session_structure::chain::ChainKey {
    pb::session_structure::chain::ChainKey {
        index: Some(ck.index()),
        key: Some(ck.key_bytes().to_vec()),
    }
}

#[cfg(test)]
fn state_to_pb(s: &SessionState) -> pb::SessionStructure {
    use pb::session_structure::{Chain, PendingPreKey as PbPending, chain::MessageKey};
    pb::SessionStructure {
        session_version: Some(SESSION_VERSION),
        local_identity_public: Some(s.local_identity.serialize().to_vec()),
        remote_identity_public: Some(s.remote_identity.serialize().to_vec()),
        root_key: Some(s.root_key.as_bytes().to_vec()),
        previous_counter: Some(s.previous_counter),
        sender_chain: s.sender_chain.as_ref().map(|c| Chain {
            sender_ratchet_key: Some(c.ratchet.public.serialize().to_vec()),
            sender_ratchet_key_private: Some(c.ratchet.private.to_bytes().to_vec()),
            chain_key: Some(chain_key_to_pb(&c.chain_key)),
            message_keys: Vec::new(),
        }),
        receiver_chains: s
            .receiver_chains
            .iter()
            .map(|c| Chain {
                sender_ratchet_key: Some(c.ratchet_key.serialize().to_vec()),
                sender_ratchet_key_private: None,
                chain_key: Some(chain_key_to_pb(&c.chain_key)),
                message_keys: c
                    .skipped
                    .iter()
                    .map(|k| MessageKey {
                        index: Some(k.counter),
                        cipher_key: Some(k.cipher_key.to_vec()),
                        mac_key: Some(k.mac_key.to_vec()),
                        iv: Some(k.iv.to_vec()),
                    })
                    .collect(),
            })
            .collect(),
        pending_pre_key: s.pending_prekey.as_ref().map(|p| PbPending {
            pre_key_id: p.prekey_id,
            base_key: Some(p.base_key.serialize().to_vec()),
            signed_pre_key_id: Some(p.signed_prekey_id as i32),
        }),
        remote_registration_id: Some(s.remote_registration_id),
        local_registration_id: Some(s.local_registration_id),
        needs_refresh: None,
        alice_base_key: s.alice_base_key.map(|k| k.serialize().to_vec()),
    }
}

fn chain_key_from_pb(
    c: Option<&pb::session_structure::chain::ChainKey>,
) -> Result<ChainKey, RecordError> {
    let c = c.ok_or(records::invalid(RECORD, "chain without chain key"))?;
    Ok(ChainKey::new(
        records::fixed::<32>(RECORD, c.key.as_ref(), "chain key is not 32 bytes")?,
        c.index.unwrap_or(0),
    ))
}

fn state_from_pb(s: &pb::SessionStructure) -> Result<SessionState, RecordError> {
    if s.session_version.unwrap_or(SESSION_VERSION) != SESSION_VERSION {
        return Err(records::invalid(RECORD, "session version is not 3"));
    }
    if s.receiver_chains.len() > MAX_RECEIVER_CHAINS {
        return Err(records::invalid(RECORD, "more than 5 receiver chains"));
    }
    let sender_chain = match &s.sender_chain {
        None => None,
        Some(c) => {
            // Both halves are stored; recomputing the public one would cost a scalar
            // multiplication per state on every load (up to 41 states per record).
            let private = records::private_key(
                RECORD,
                c.sender_ratchet_key_private.as_ref(),
                "bad sending ratchet private key",
            )?;
            let public = records::public_key(
                RECORD,
                c.sender_ratchet_key.as_ref(),
                "bad sending ratchet key",
            )?;
            let ratchet = KeyPair::from_parts_unchecked(public, private);
            Some(SenderChain {
                ratchet,
                chain_key: chain_key_from_pb(c.chain_key.as_ref())?,
            })
        }
    };
    let mut receiver_chains = VecDeque::with_capacity(s.receiver_chains.len());
    for c in &s.receiver_chains {
        if c.message_keys.len() > MAX_MESSAGE_KEYS {
            return Err(records::invalid(
                RECORD,
                "more than 2000 skipped message keys",
            ));
        }
        let mut skipped = VecDeque::with_capacity(c.message_keys.len());
        for k in &c.message_keys {
            skipped.push_back(MessageKeys {
                cipher_key: records::fixed(
                    RECORD,
                    k.cipher_key.as_ref(),
                    "bad skipped cipher key",
                )?,
                mac_key: records::fixed(RECORD, k.mac_key.as_ref(), "bad skipped MAC key")?,
                iv: records::fixed(RECORD, k.iv.as_ref(), "bad skipped IV")?,
                counter: k.index.unwrap_or(0),
            });
        }
        receiver_chains.push_back(ReceiverChain {
            ratchet_key: records::public_key(
                RECORD,
                c.sender_ratchet_key.as_ref(),
                "bad receiving ratchet key",
            )?,
            chain_key: chain_key_from_pb(c.chain_key.as_ref())?,
            skipped,
        });
    }
    let pending_prekey = match &s.pending_pre_key {
        None => None,
        Some(p) => Some(PendingPreKey {
            prekey_id: p.pre_key_id,
            signed_prekey_id: p.signed_pre_key_id.unwrap_or(0) as u32,
            base_key: records::public_key(RECORD, p.base_key.as_ref(), "bad pending base key")?,
        }),
    };
    Ok(SessionState {
        local_identity: records::public_key(
            RECORD,
            s.local_identity_public.as_ref(),
            "bad local identity",
        )?,
        remote_identity: records::public_key(
            RECORD,
            s.remote_identity_public.as_ref(),
            "bad remote identity",
        )?,
        root_key: RootKey::new(records::fixed(
            RECORD,
            s.root_key.as_ref(),
            "root key is not 32 bytes",
        )?),
        previous_counter: s.previous_counter.unwrap_or(0),
        sender_chain,
        receiver_chains,
        pending_prekey,
        remote_registration_id: s.remote_registration_id.unwrap_or(0),
        local_registration_id: s.local_registration_id.unwrap_or(0),
        alice_base_key: match &s.alice_base_key {
            None => None,
            Some(b) => Some(records::public_key(RECORD, Some(b), "bad base key")?),
        },
    })
}

/// The X3DH master secret buffer: `0xFF×32` and up to four DH outputs.
struct Secret {
    buf: [u8; 32 * 5],
    len: usize,
}

impl Secret {
    fn new() -> Self {
        let mut buf = [0u8; 160];
        buf[..32].fill(0xFF);
        Secret { buf, len: 32 }
    }

    fn push(&mut self, mut dh: [u8; 32]) {
        self.buf[self.len..self.len + 32].copy_from_slice(&dh);
        self.len += 32;
        dh.zeroize();
    }

    fn derive(mut self) -> (RootKey, ChainKey) {
        let keys = derive_initial_keys(&self.buf[..self.len]);
        self.buf.zeroize();
        keys
    }
}

/// Starts a session with the device that published `bundle` (X3DH as the initiator,
/// with or without a one-time prekey), archiving any current state of `record`.
///
/// Verifies the signed-prekey signature first and refuses the bundle with
/// [`SignalError::InvalidSignedPreKeySignature`] when it does not verify. Until the
/// peer answers, [`super::encrypt`] produces `pkmsg`s.
pub fn initialize_from_bundle<R: RngCore + CryptoRng + ?Sized>(
    record: &mut SessionRecord,
    our: &LocalIdentity,
    bundle: &PreKeyBundle,
    rng: &mut R,
) -> Result<(), SignalError> {
    bundle.verify()?;
    let base = KeyPair::generate(rng);
    let sending_ratchet = KeyPair::generate(rng);
    let mut secret = Secret::new();
    secret.push(our.key_pair.agree(&bundle.signed_prekey));
    secret.push(base.agree(&bundle.identity_key));
    secret.push(base.agree(&bundle.signed_prekey));
    if let Some((_, one_time)) = &bundle.prekey {
        secret.push(base.agree(one_time));
    }
    let (root, receiving) = secret.derive();
    let (root, sending) = root.create_chain(&bundle.signed_prekey, &sending_ratchet.private);
    let state = SessionState {
        local_identity: our.key_pair.public,
        remote_identity: bundle.identity_key,
        root_key: root,
        previous_counter: 0,
        sender_chain: Some(SenderChain {
            ratchet: sending_ratchet,
            chain_key: sending,
        }),
        receiver_chains: VecDeque::from([ReceiverChain {
            ratchet_key: bundle.signed_prekey,
            chain_key: receiving,
            skipped: VecDeque::new(),
        }]),
        pending_prekey: Some(PendingPreKey {
            prekey_id: bundle.prekey.map(|(id, _)| id),
            signed_prekey_id: bundle.signed_prekey_id,
            base_key: base.public,
        }),
        remote_registration_id: bundle.registration_id,
        local_registration_id: our.registration_id,
        alice_base_key: Some(base.public),
    };
    record.promote(state);
    Ok(())
}

/// The responder's side of X3DH for an incoming PreKeySignalMessage: a fresh state whose
/// sending chain uses our signed prekey as the ratchet key.
pub(crate) fn initialize_as_responder(
    our: &LocalIdentity,
    signed: &SignedPreKeyRecord,
    one_time: Option<&PreKeyRecord>,
    message: &PreKeySignalMessage,
) -> SessionState {
    let their_base = message.base_key();
    let mut secret = Secret::new();
    secret.push(signed.key_pair.agree(message.identity_key()));
    secret.push(our.key_pair.agree(their_base));
    secret.push(signed.key_pair.agree(their_base));
    if let Some(one_time) = one_time {
        secret.push(one_time.key_pair.agree(their_base));
    }
    let (root, sending) = secret.derive();
    SessionState {
        local_identity: our.key_pair.public,
        remote_identity: *message.identity_key(),
        root_key: root,
        previous_counter: 0,
        sender_chain: Some(SenderChain {
            ratchet: signed.key_pair.clone(),
            chain_key: sending,
        }),
        receiver_chains: VecDeque::new(),
        pending_prekey: None,
        remote_registration_id: message.registration_id(),
        local_registration_id: our.registration_id,
        alice_base_key: Some(*their_base),
    }
}
