//! Storage of Signal state behind async traits, so any database can hold it.
//!
//! Records travel as their serialized, versioned protobuf bytes (`proto/records.proto`):
//! a backend stores opaque blobs under simple keys (an address string, a sender-key name,
//! a prekey id) and never needs to understand them. Identity keys are plain public keys.
//!
//! Reads are by key (with batch forms); writes that belong to one send or one received
//! message go through [`SignalStore::commit`] with a [`SignalStateBatch`], which a backend
//! applies in a single transaction — so either all of a send's ratchet steps are saved
//! or none, and nothing leaves the machine before its state is on disk.
//!
//! [`SignalStoreExt`] adds typed loading on top (`load_session_record` and friends), and
//! [`MemorySignalStore`] is the in-memory implementation.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::RecordError;
use super::address::{ProtocolAddress, SenderKeyName};
use super::curve::PublicKey;
use super::group::SenderKeyRecord;
use super::identity::{LocalIdentity, PreKeyRecord, SignedPreKeyRecord};
use super::session::SessionRecord;

/// Errors from a store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O, database, lock).
    #[error("signal store backend failed: {0}")]
    Backend(String),
    /// A stored record could not be read.
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// What saving an identity key for an address did (trust on first use).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IdentityChange {
    /// No identity was known for the address; this one is now trusted.
    New,
    /// The same identity was already stored.
    Unchanged,
    /// A different identity was stored and has been replaced: the peer reinstalled or
    /// changed devices (WhatsApp clients accept this and show a security notice).
    Replaced {
        /// The identity that was replaced.
        previous: PublicKey,
    },
}

impl IdentityChange {
    /// The outcome of replacing `old` (if any) with `new`.
    pub fn between(old: Option<&PublicKey>, new: &PublicKey) -> Self {
        match old {
            None => IdentityChange::New,
            Some(o) if o == new => IdentityChange::Unchanged,
            Some(o) => IdentityChange::Replaced { previous: *o },
        }
    }
}

/// Our identity and the identities of remote devices.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// Our identity key pair and registration id.
    async fn local_identity(&self) -> StoreResult<LocalIdentity>;
    /// The stored identity of each address (None where unknown), in input order.
    async fn load_identities(
        &self,
        addresses: &[ProtocolAddress],
    ) -> StoreResult<Vec<Option<PublicKey>>>;
    /// Saves one identity (trust on first use) and reports what changed.
    async fn save_identity(
        &self,
        address: &ProtocolAddress,
        identity: &PublicKey,
    ) -> StoreResult<IdentityChange>;
    /// Forgets the identities of every device of `name` (on an identity-change
    /// notification).
    async fn delete_identities_of(&self, name: &str) -> StoreResult<()>;
}

/// Our one-time prekeys, as serialized [`PreKeyRecord`]s.
#[async_trait]
pub trait PreKeyStore: Send + Sync {
    /// The serialized prekey with `id`, if present.
    async fn load_prekey(&self, id: u32) -> StoreResult<Option<Vec<u8>>>;
    /// Stores a batch of serialized prekeys (id, bytes).
    async fn store_prekeys(&self, prekeys: &[(u32, Vec<u8>)]) -> StoreResult<()>;
    /// Removes prekeys (absent ids are ignored).
    async fn remove_prekeys(&self, ids: &[u32]) -> StoreResult<()>;
    /// How many prekeys are stored.
    async fn prekey_count(&self) -> StoreResult<usize>;
    /// The largest stored prekey id (to continue numbering), if any.
    async fn max_prekey_id(&self) -> StoreResult<Option<u32>>;
}

/// Our signed prekeys, as serialized [`SignedPreKeyRecord`]s.
#[async_trait]
pub trait SignedPreKeyStore: Send + Sync {
    /// The serialized signed prekey with `id`, if present.
    async fn load_signed_prekey(&self, id: u32) -> StoreResult<Option<Vec<u8>>>;
    /// Stores a serialized signed prekey.
    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> StoreResult<()>;
    /// Removes a signed prekey (absent ids are ignored).
    async fn remove_signed_prekey(&self, id: u32) -> StoreResult<()>;
}

/// Pairwise sessions, as serialized [`SessionRecord`]s keyed by address.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// The serialized record of each address (None where there is none), in input order.
    async fn load_sessions(
        &self,
        addresses: &[ProtocolAddress],
    ) -> StoreResult<Vec<Option<Vec<u8>>>>;
    /// The device ids of `name` that have a session.
    async fn session_devices(&self, name: &str) -> StoreResult<Vec<u32>>;
    /// Deletes the sessions of every device of `name`.
    async fn delete_sessions_of(&self, name: &str) -> StoreResult<()>;
}

/// Sender keys, as serialized [`SenderKeyRecord`]s keyed by [`SenderKeyName`].
#[async_trait]
pub trait SenderKeyStore: Send + Sync {
    /// The serialized record for `name`, if present.
    async fn load_sender_key(&self, name: &SenderKeyName) -> StoreResult<Option<Vec<u8>>>;
}

/// A serialized record (root/chain keys, ratchet private keys, sender-key seeds), wiped
/// from memory when dropped.
pub type RecordBytes = Zeroizing<Vec<u8>>;

/// All state changes of one send or one received message, applied atomically by
/// [`SignalStore::commit`]. Its `Debug` shows addresses and record lengths only.
#[derive(Clone, Default)]
pub struct SignalStateBatch {
    /// Session records to write (address, serialized record).
    pub sessions: Vec<(ProtocolAddress, RecordBytes)>,
    /// Session records to delete.
    pub removed_sessions: Vec<ProtocolAddress>,
    /// Sender-key records to write (name, serialized record).
    pub sender_keys: Vec<(SenderKeyName, RecordBytes)>,
    /// Sender-key records to delete (e.g. our own key on rotation).
    pub removed_sender_keys: Vec<SenderKeyName>,
    /// Identities to save (trust on first use); `commit` reports each outcome.
    pub identities: Vec<(ProtocolAddress, PublicKey)>,
    /// One-time prekeys consumed by incoming pkmsgs.
    pub removed_prekeys: Vec<u32>,
}

impl std::fmt::Debug for SignalStateBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Lengths<'a, K>(&'a [(K, RecordBytes)]);
        impl<K: std::fmt::Debug> std::fmt::Debug for Lengths<'_, K> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_map()
                    .entries(
                        self.0
                            .iter()
                            .map(|(k, v)| (k, format!("<{} bytes redacted>", v.len()))),
                    )
                    .finish()
            }
        }
        f.debug_struct("SignalStateBatch")
            .field("sessions", &Lengths(&self.sessions))
            .field("removed_sessions", &self.removed_sessions)
            .field("sender_keys", &Lengths(&self.sender_keys))
            .field("removed_sender_keys", &self.removed_sender_keys)
            .field("identities", &self.identities)
            .field("removed_prekeys", &self.removed_prekeys)
            .finish()
    }
}

impl SignalStateBatch {
    /// An empty batch.
    pub fn new() -> Self {
        SignalStateBatch::default()
    }

    /// Adds a session record (serialized now).
    pub fn put_session(&mut self, address: ProtocolAddress, record: &SessionRecord) -> &mut Self {
        self.sessions
            .push((address, Zeroizing::new(record.serialize())));
        self
    }

    /// Adds a sender-key record (serialized now).
    pub fn put_sender_key(&mut self, name: SenderKeyName, record: &SenderKeyRecord) -> &mut Self {
        self.sender_keys
            .push((name, Zeroizing::new(record.serialize())));
        self
    }

    /// Adds an identity to save.
    pub fn put_identity(&mut self, address: ProtocolAddress, identity: PublicKey) -> &mut Self {
        self.identities.push((address, identity));
        self
    }

    /// Adds a consumed one-time prekey to delete.
    pub fn remove_prekey(&mut self, id: u32) -> &mut Self {
        self.removed_prekeys.push(id);
        self
    }

    /// True when the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
            && self.removed_sessions.is_empty()
            && self.sender_keys.is_empty()
            && self.removed_sender_keys.is_empty()
            && self.identities.is_empty()
            && self.removed_prekeys.is_empty()
    }
}

/// A complete Signal store: every kind of state plus an atomic commit.
#[async_trait]
pub trait SignalStore:
    IdentityStore + PreKeyStore + SignedPreKeyStore + SessionStore + SenderKeyStore
{
    /// Applies `batch` in one transaction: writes and deletes sessions and sender keys,
    /// saves identities, deletes consumed prekeys. Returns the [`IdentityChange`] of each
    /// entry of `batch.identities`, in order. On error nothing is applied.
    async fn commit(&self, batch: SignalStateBatch) -> StoreResult<Vec<IdentityChange>>;
}

/// Typed loading on top of the byte-oriented traits.
#[async_trait]
pub trait SignalStoreExt: SignalStore {
    /// The session record of `address` (empty when none is stored).
    async fn load_session_record(&self, address: &ProtocolAddress) -> StoreResult<SessionRecord> {
        let mut records = self
            .load_session_records(std::slice::from_ref(address))
            .await?;
        Ok(records.pop().unwrap_or_default())
    }

    /// The session records of `addresses` (empty where none is stored), in input order.
    async fn load_session_records(
        &self,
        addresses: &[ProtocolAddress],
    ) -> StoreResult<Vec<SessionRecord>> {
        self.load_sessions(addresses)
            .await?
            .into_iter()
            .map(|b| match b {
                Some(bytes) => SessionRecord::deserialize(&bytes).map_err(StoreError::from),
                None => Ok(SessionRecord::new()),
            })
            .collect()
    }

    /// The sender-key record of `name` (empty when none is stored).
    async fn load_sender_key_record(&self, name: &SenderKeyName) -> StoreResult<SenderKeyRecord> {
        match self.load_sender_key(name).await? {
            Some(bytes) => Ok(SenderKeyRecord::deserialize(&bytes)?),
            None => Ok(SenderKeyRecord::new()),
        }
    }

    /// The one-time prekey `id`, if present.
    async fn load_prekey_record(&self, id: u32) -> StoreResult<Option<PreKeyRecord>> {
        match self.load_prekey(id).await? {
            Some(bytes) => Ok(Some(PreKeyRecord::deserialize(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The signed prekey `id`, if present.
    async fn load_signed_prekey_record(&self, id: u32) -> StoreResult<Option<SignedPreKeyRecord>> {
        match self.load_signed_prekey(id).await? {
            Some(bytes) => Ok(Some(SignedPreKeyRecord::deserialize(&bytes)?)),
            None => Ok(None),
        }
    }
}

impl<T: SignalStore + ?Sized> SignalStoreExt for T {}

#[derive(Default)]
struct MemoryState {
    identities: HashMap<ProtocolAddress, PublicKey>,
    prekeys: HashMap<u32, Vec<u8>>,
    signed_prekeys: HashMap<u32, Vec<u8>>,
    sessions: HashMap<ProtocolAddress, Vec<u8>>,
    sender_keys: HashMap<SenderKeyName, Vec<u8>>,
}

/// An in-memory [`SignalStore`] (tests, tools, the simulator). One mutex guards all
/// state, so a commit is atomic with respect to every other call.
pub struct MemorySignalStore {
    local: LocalIdentity,
    state: Mutex<MemoryState>,
}

impl std::fmt::Debug for MemorySignalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemorySignalStore")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl MemorySignalStore {
    /// An empty store for the device with identity `local`.
    pub fn new(local: LocalIdentity) -> Self {
        MemorySignalStore {
            local,
            state: Mutex::new(MemoryState::default()),
        }
    }

    fn lock(&self) -> StoreResult<MutexGuard<'_, MemoryState>> {
        self.state
            .lock()
            .map_err(|_| StoreError::Backend("memory store mutex poisoned".into()))
    }
}

fn name_matches(address: &ProtocolAddress, name: &str) -> bool {
    address.name == name
}

#[async_trait]
impl IdentityStore for MemorySignalStore {
    async fn local_identity(&self) -> StoreResult<LocalIdentity> {
        Ok(self.local.clone())
    }

    async fn load_identities(
        &self,
        addresses: &[ProtocolAddress],
    ) -> StoreResult<Vec<Option<PublicKey>>> {
        let state = self.lock()?;
        Ok(addresses
            .iter()
            .map(|a| state.identities.get(a).copied())
            .collect())
    }

    async fn save_identity(
        &self,
        address: &ProtocolAddress,
        identity: &PublicKey,
    ) -> StoreResult<IdentityChange> {
        let mut state = self.lock()?;
        let old = state.identities.insert(address.clone(), *identity);
        Ok(IdentityChange::between(old.as_ref(), identity))
    }

    async fn delete_identities_of(&self, name: &str) -> StoreResult<()> {
        self.lock()?
            .identities
            .retain(|a, _| !name_matches(a, name));
        Ok(())
    }
}

#[async_trait]
impl PreKeyStore for MemorySignalStore {
    async fn load_prekey(&self, id: u32) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.lock()?.prekeys.get(&id).cloned())
    }

    async fn store_prekeys(&self, prekeys: &[(u32, Vec<u8>)]) -> StoreResult<()> {
        let mut state = self.lock()?;
        for (id, bytes) in prekeys {
            state.prekeys.insert(*id, bytes.clone());
        }
        Ok(())
    }

    async fn remove_prekeys(&self, ids: &[u32]) -> StoreResult<()> {
        let mut state = self.lock()?;
        for id in ids {
            state.prekeys.remove(id);
        }
        Ok(())
    }

    async fn prekey_count(&self) -> StoreResult<usize> {
        Ok(self.lock()?.prekeys.len())
    }

    async fn max_prekey_id(&self) -> StoreResult<Option<u32>> {
        Ok(self.lock()?.prekeys.keys().max().copied())
    }
}

#[async_trait]
impl SignedPreKeyStore for MemorySignalStore {
    async fn load_signed_prekey(&self, id: u32) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.lock()?.signed_prekeys.get(&id).cloned())
    }

    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> StoreResult<()> {
        self.lock()?.signed_prekeys.insert(id, record.to_vec());
        Ok(())
    }

    async fn remove_signed_prekey(&self, id: u32) -> StoreResult<()> {
        self.lock()?.signed_prekeys.remove(&id);
        Ok(())
    }
}

#[async_trait]
impl SessionStore for MemorySignalStore {
    async fn load_sessions(
        &self,
        addresses: &[ProtocolAddress],
    ) -> StoreResult<Vec<Option<Vec<u8>>>> {
        let state = self.lock()?;
        Ok(addresses
            .iter()
            .map(|a| state.sessions.get(a).cloned())
            .collect())
    }

    async fn session_devices(&self, name: &str) -> StoreResult<Vec<u32>> {
        let state = self.lock()?;
        let mut devices: Vec<u32> = state
            .sessions
            .keys()
            .filter(|a| name_matches(a, name))
            .map(|a| a.device_id)
            .collect();
        devices.sort_unstable();
        Ok(devices)
    }

    async fn delete_sessions_of(&self, name: &str) -> StoreResult<()> {
        self.lock()?.sessions.retain(|a, _| !name_matches(a, name));
        Ok(())
    }
}

#[async_trait]
impl SenderKeyStore for MemorySignalStore {
    async fn load_sender_key(&self, name: &SenderKeyName) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.lock()?.sender_keys.get(name).cloned())
    }
}

#[async_trait]
impl SignalStore for MemorySignalStore {
    async fn commit(&self, batch: SignalStateBatch) -> StoreResult<Vec<IdentityChange>> {
        let mut state = self.lock()?;
        for (address, bytes) in batch.sessions {
            state.sessions.insert(address, bytes.to_vec());
        }
        for address in &batch.removed_sessions {
            state.sessions.remove(address);
        }
        for (name, bytes) in batch.sender_keys {
            state.sender_keys.insert(name, bytes.to_vec());
        }
        for name in &batch.removed_sender_keys {
            state.sender_keys.remove(name);
        }
        let mut changes = Vec::with_capacity(batch.identities.len());
        for (address, identity) in batch.identities {
            let old = state.identities.insert(address, identity);
            changes.push(IdentityChange::between(old.as_ref(), &identity));
        }
        for id in &batch.removed_prekeys {
            state.prekeys.remove(id);
        }
        Ok(changes)
    }
}
