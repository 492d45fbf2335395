//! [`MemoryStore`]: the whole [`Store`] in process memory (tests, tools, the simulator).
//!
//! One mutex guards all state. A commit first checks the whole batch
//! ([`StoreBatch::prepare`]) and then applies it without any step that can fail, so it
//! is atomic like the SQLite backend's transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::Store;
use super::batch::{CommitOutcome, StoreBatch};
use super::credentials::DeviceCredentials;
use super::error::{Error, Result};
use super::records::{
    DecryptedMessage, DeviceList, EventRecord, GroupMetadata, IdempotencyClaim, IdempotencyState,
    MessageSecretRecord, PruneBefore, PruneCounts, RsvpRecord, SenderKeyMemoryUpdate, SentMessage,
    SentState, StoredResponse, StoredSentMessage, WebhookJob, check_key, mapping_side,
    swap_namespace,
};
use crate::jid::Jid;
use crate::signal::address::{ProtocolAddress, SenderKeyName};
use crate::signal::curve::PublicKey;
use crate::signal::identity::LocalIdentity;
use crate::signal::store::{
    IdentityChange, IdentityStore, PreKeyStore, SenderKeyStore, SessionStore, SignalStateBatch,
    SignalStore, SignedPreKeyStore, StoreResult,
};

#[derive(Clone)]
struct SentEntry {
    sent: SentMessage,
    retries: BTreeMap<Jid, u32>,
}

#[derive(Clone)]
enum IdempotencyEntry {
    InProgress {
        fingerprint: String,
        since_ms: i64,
    },
    Completed {
        fingerprint: String,
        since_ms: i64,
        response: StoredResponse,
    },
}

impl IdempotencyEntry {
    fn since_ms(&self) -> i64 {
        match self {
            IdempotencyEntry::InProgress { since_ms, .. }
            | IdempotencyEntry::Completed { since_ms, .. } => *since_ms,
        }
    }
}

#[derive(Default)]
struct State {
    credentials: Option<DeviceCredentials>,
    identities: HashMap<ProtocolAddress, PublicKey>,
    /// id → (record, uploaded)
    prekeys: BTreeMap<u32, (Vec<u8>, bool)>,
    signed_prekeys: HashMap<u32, Vec<u8>>,
    /// name → device → record
    sessions: HashMap<String, BTreeMap<u32, Vec<u8>>>,
    sender_keys: HashMap<SenderKeyName, Vec<u8>>,
    lid_to_pn: HashMap<String, String>,
    pn_to_lid: HashMap<String, String>,
    device_lists: HashMap<Jid, DeviceList>,
    groups: HashMap<Jid, GroupMetadata>,
    sender_key_memory: HashMap<Jid, BTreeSet<Jid>>,
    secrets: HashMap<(Jid, Jid, String), MessageSecretRecord>,
    events: BTreeMap<(Jid, String), EventRecord>,
    rsvps: HashMap<(Jid, String), BTreeMap<Jid, RsvpRecord>>,
    sent: HashMap<(Jid, String), SentEntry>,
    decrypted: HashMap<[u8; 32], DecryptedMessage>,
    webhooks: HashMap<String, WebhookJob>,
    idempotency: HashMap<(String, String), IdempotencyEntry>,
}

impl State {
    fn put_mapping(&mut self, lid: &str, pn: &str) {
        if let Some(old_pn) = self.lid_to_pn.insert(lid.to_string(), pn.to_string())
            && old_pn != pn
        {
            self.pn_to_lid.remove(&old_pn);
        }
        if let Some(old_lid) = self.pn_to_lid.insert(pn.to_string(), lid.to_string())
            && old_lid != lid
        {
            self.lid_to_pn.remove(&old_lid);
        }
    }

    fn apply_signal(&mut self, batch: SignalStateBatch) -> Vec<IdentityChange> {
        for (address, mut bytes) in batch.sessions {
            // Move the record out of its zeroizing wrapper without copying it.
            self.sessions
                .entry(address.name)
                .or_default()
                .insert(address.device_id, std::mem::take(&mut *bytes));
        }
        for address in &batch.removed_sessions {
            if let Some(devices) = self.sessions.get_mut(&address.name) {
                devices.remove(&address.device_id);
                if devices.is_empty() {
                    self.sessions.remove(&address.name);
                }
            }
        }
        for (name, mut bytes) in batch.sender_keys {
            self.sender_keys.insert(name, std::mem::take(&mut *bytes));
        }
        for name in &batch.removed_sender_keys {
            self.sender_keys.remove(name);
        }
        let mut changes = Vec::with_capacity(batch.identities.len());
        for (address, identity) in batch.identities {
            let old = self.identities.insert(address, identity);
            changes.push(IdentityChange::between(old.as_ref(), &identity));
        }
        for id in &batch.removed_prekeys {
            self.prekeys.remove(id);
        }
        changes
    }

    /// Applies a prepared batch; nothing here can fail.
    fn apply(&mut self, batch: StoreBatch) -> CommitOutcome {
        if let Some(c) = batch.credentials {
            self.credentials = Some(c);
        }
        for (id, record) in batch.prekeys {
            self.prekeys.insert(id, (record, false));
        }
        for id in &batch.uploaded_prekeys {
            if let Some(entry) = self.prekeys.get_mut(id) {
                entry.1 = true;
            }
        }
        for (id, record) in batch.signed_prekeys {
            self.signed_prekeys.insert(id, record);
        }
        let identity_changes = self.apply_signal(batch.signal);
        for m in &batch.mappings {
            self.put_mapping(m.lid_user(), m.pn_user());
        }
        for list in batch.device_lists {
            self.device_lists.insert(list.user.clone(), list);
        }
        for user in &batch.removed_device_lists {
            self.device_lists.remove(user);
        }
        for group in batch.groups {
            self.groups.insert(group.group.clone(), group);
        }
        for group in &batch.removed_groups {
            self.groups.remove(group);
        }
        for update in batch.sender_key_memory {
            match update {
                SenderKeyMemoryUpdate::MarkHas { group, devices } => {
                    self.sender_key_memory
                        .entry(group)
                        .or_default()
                        .extend(devices);
                }
                SenderKeyMemoryUpdate::Forget { group, devices } => {
                    if let Some(set) = self.sender_key_memory.get_mut(&group) {
                        for d in &devices {
                            set.remove(d);
                        }
                        if set.is_empty() {
                            self.sender_key_memory.remove(&group);
                        }
                    }
                }
                SenderKeyMemoryUpdate::ClearGroup { group } => {
                    self.sender_key_memory.remove(&group);
                }
            }
        }
        for s in batch.secrets {
            let key = (s.chat.clone(), s.sender.clone(), s.message_id.clone());
            self.secrets.insert(key, s);
        }
        for e in batch.events {
            self.events
                .insert((e.chat.clone(), e.message_id.clone()), e);
        }
        let mut rsvps_applied = Vec::with_capacity(batch.rsvps.len());
        for r in batch.rsvps {
            let voters = self
                .rsvps
                .entry((r.chat.clone(), r.event_id.clone()))
                .or_default();
            let newer_stored = voters
                .get(&r.voter)
                .is_some_and(|old| old.timestamp_ms > r.timestamp_ms);
            rsvps_applied.push(!newer_stored);
            if !newer_stored {
                voters.insert(r.voter.clone(), r);
            }
        }
        for m in batch.sent_messages {
            let key = (m.chat.clone(), m.message_id.clone());
            match self.sent.get_mut(&key) {
                Some(entry) => entry.sent = m,
                None => {
                    self.sent.insert(
                        key,
                        SentEntry {
                            sent: m,
                            retries: BTreeMap::new(),
                        },
                    );
                }
            }
        }
        for s in batch.sent_states {
            if let Some(entry) = self.sent.get_mut(&(s.chat, s.message_id)) {
                entry.sent.state = s.state;
            }
        }
        for d in batch.decrypted {
            self.decrypted.insert(d.ciphertext_hash, d);
        }
        for w in batch.webhooks {
            self.webhooks.insert(w.id.clone(), w);
        }
        CommitOutcome {
            identity_changes,
            rsvps_applied,
        }
    }
}

fn stored_sent(entry: &SentEntry) -> StoredSentMessage {
    StoredSentMessage {
        sent: entry.sent.clone(),
        retry_counts: entry.retries.iter().map(|(d, c)| (d.clone(), *c)).collect(),
    }
}

/// The whole [`Store`] in memory, with the same semantics as the SQLite backend.
/// Lost when dropped.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store (no credentials yet).
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// A store holding `credentials`.
    pub fn with_credentials(credentials: DeviceCredentials) -> Result<Self> {
        credentials.validate()?;
        let store = MemoryStore::new();
        store.lock().credentials = Some(credentials);
        Ok(store)
    }

    /// The state; a panic while it was held cannot leave it half-written (commits
    /// apply without failing steps), so a poisoned lock is taken over.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn map_namespace(state: &State, jids: &[Jid], want_lid_input: bool) -> Vec<Option<Jid>> {
    jids.iter()
        .map(|jid| {
            let (is_lid, other_server) = mapping_side(jid)?;
            if is_lid != want_lid_input {
                return None;
            }
            let table = if is_lid {
                &state.lid_to_pn
            } else {
                &state.pn_to_lid
            };
            table
                .get(&jid.user)
                .map(|other| swap_namespace(jid, other, other_server))
        })
        .collect()
}

#[async_trait]
impl IdentityStore for MemoryStore {
    async fn local_identity(&self) -> StoreResult<LocalIdentity> {
        match &self.lock().credentials {
            Some(c) => Ok(c.identity.clone()),
            None => Err(Error::NoCredentials.into()),
        }
    }

    async fn load_identities(
        &self,
        addresses: &[ProtocolAddress],
    ) -> StoreResult<Vec<Option<PublicKey>>> {
        let state = self.lock();
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
        let old = self.lock().identities.insert(address.clone(), *identity);
        Ok(IdentityChange::between(old.as_ref(), identity))
    }

    async fn delete_identities_of(&self, name: &str) -> StoreResult<()> {
        self.lock().identities.retain(|a, _| a.name != name);
        Ok(())
    }
}

#[async_trait]
impl PreKeyStore for MemoryStore {
    async fn load_prekey(&self, id: u32) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.lock().prekeys.get(&id).map(|(r, _)| r.clone()))
    }

    async fn store_prekeys(&self, prekeys: &[(u32, Vec<u8>)]) -> StoreResult<()> {
        self.commit_batch(StoreBatch {
            prekeys: prekeys.to_vec(),
            ..StoreBatch::default()
        })
        .await?;
        Ok(())
    }

    async fn remove_prekeys(&self, ids: &[u32]) -> StoreResult<()> {
        let mut state = self.lock();
        for id in ids {
            state.prekeys.remove(id);
        }
        Ok(())
    }

    async fn prekey_count(&self) -> StoreResult<usize> {
        Ok(self.lock().prekeys.len())
    }

    async fn max_prekey_id(&self) -> StoreResult<Option<u32>> {
        Ok(self.lock().prekeys.keys().next_back().copied())
    }
}

#[async_trait]
impl SignedPreKeyStore for MemoryStore {
    async fn load_signed_prekey(&self, id: u32) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.lock().signed_prekeys.get(&id).cloned())
    }

    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> StoreResult<()> {
        self.commit_batch(StoreBatch {
            signed_prekeys: vec![(id, record.to_vec())],
            ..StoreBatch::default()
        })
        .await?;
        Ok(())
    }

    async fn remove_signed_prekey(&self, id: u32) -> StoreResult<()> {
        self.lock().signed_prekeys.remove(&id);
        Ok(())
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn load_sessions(
        &self,
        addresses: &[ProtocolAddress],
    ) -> StoreResult<Vec<Option<Vec<u8>>>> {
        let state = self.lock();
        Ok(addresses
            .iter()
            .map(|a| {
                state
                    .sessions
                    .get(&a.name)
                    .and_then(|d| d.get(&a.device_id))
                    .cloned()
            })
            .collect())
    }

    async fn session_devices(&self, name: &str) -> StoreResult<Vec<u32>> {
        Ok(self
            .lock()
            .sessions
            .get(name)
            .map(|d| d.keys().copied().collect())
            .unwrap_or_default())
    }

    async fn delete_sessions_of(&self, name: &str) -> StoreResult<()> {
        self.lock().sessions.remove(name);
        Ok(())
    }
}

#[async_trait]
impl SenderKeyStore for MemoryStore {
    async fn load_sender_key(&self, name: &SenderKeyName) -> StoreResult<Option<Vec<u8>>> {
        Ok(self.lock().sender_keys.get(name).cloned())
    }
}

#[async_trait]
impl SignalStore for MemoryStore {
    async fn commit(&self, batch: SignalStateBatch) -> StoreResult<Vec<IdentityChange>> {
        Ok(self
            .commit_batch(StoreBatch::from_signal(batch))
            .await?
            .identity_changes)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn commit_batch(&self, batch: StoreBatch) -> Result<CommitOutcome> {
        let batch = batch.prepare()?;
        Ok(self.lock().apply(batch))
    }

    async fn load_credentials(&self) -> Result<Option<DeviceCredentials>> {
        Ok(self.lock().credentials.clone())
    }

    async fn clear_all(&self) -> Result<()> {
        *self.lock() = State::default();
        Ok(())
    }

    async fn unuploaded_prekeys(&self, limit: usize) -> Result<Vec<(u32, Vec<u8>)>> {
        Ok(self
            .lock()
            .prekeys
            .iter()
            .filter(|(_, (_, uploaded))| !uploaded)
            .take(limit)
            .map(|(id, (record, _))| (*id, record.clone()))
            .collect())
    }

    async fn lids_for_pns(&self, pns: &[Jid]) -> Result<Vec<Option<Jid>>> {
        Ok(map_namespace(&self.lock(), pns, false))
    }

    async fn pns_for_lids(&self, lids: &[Jid]) -> Result<Vec<Option<Jid>>> {
        Ok(map_namespace(&self.lock(), lids, true))
    }

    async fn load_device_lists(&self, users: &[Jid]) -> Result<Vec<Option<DeviceList>>> {
        let state = self.lock();
        Ok(users
            .iter()
            .map(|u| state.device_lists.get(&u.to_non_ad()).cloned())
            .collect())
    }

    async fn load_group(&self, group: &Jid) -> Result<Option<GroupMetadata>> {
        Ok(self.lock().groups.get(group).cloned())
    }

    async fn sender_key_holders(&self, group: &Jid) -> Result<Vec<Jid>> {
        Ok(self
            .lock()
            .sender_key_memory
            .get(group)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn message_secret(
        &self,
        chat: &Jid,
        sender: &Jid,
        message_id: &str,
    ) -> Result<Option<MessageSecretRecord>> {
        let key = (chat.clone(), sender.to_non_ad(), message_id.to_string());
        Ok(self.lock().secrets.get(&key).cloned())
    }

    async fn load_event(&self, chat: &Jid, message_id: &str) -> Result<Option<EventRecord>> {
        Ok(self
            .lock()
            .events
            .get(&(chat.clone(), message_id.to_string()))
            .cloned())
    }

    async fn events_by_id(&self, message_id: &str) -> Result<Vec<EventRecord>> {
        // BTreeMap order is (chat, id): already sorted by chat.
        Ok(self
            .lock()
            .events
            .values()
            .filter(|e| e.message_id == message_id)
            .cloned()
            .collect())
    }

    async fn rsvps(&self, chat: &Jid, event_id: &str) -> Result<Vec<RsvpRecord>> {
        Ok(self
            .lock()
            .rsvps
            .get(&(chat.clone(), event_id.to_string()))
            .map(|voters| voters.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn load_sent_message(
        &self,
        chat: &Jid,
        message_id: &str,
    ) -> Result<Option<StoredSentMessage>> {
        Ok(self
            .lock()
            .sent
            .get(&(chat.clone(), message_id.to_string()))
            .map(stored_sent))
    }

    async fn pending_sent_messages(&self, limit: usize) -> Result<Vec<StoredSentMessage>> {
        let state = self.lock();
        let mut pending: Vec<(i64, String, &SentEntry)> = state
            .sent
            .values()
            .filter(|e| e.sent.state == SentState::Pending)
            .map(|e| (e.sent.created_at_ms, e.sent.chat.to_string(), e))
            .collect();
        pending.sort_by(|a, b| {
            (a.0, &a.1, &a.2.sent.message_id).cmp(&(b.0, &b.1, &b.2.sent.message_id))
        });
        Ok(pending
            .into_iter()
            .take(limit)
            .map(|(_, _, e)| stored_sent(e))
            .collect())
    }

    async fn bump_sent_retry(
        &self,
        chat: &Jid,
        message_id: &str,
        device: &Jid,
    ) -> Result<Option<u32>> {
        let mut state = self.lock();
        let Some(entry) = state.sent.get_mut(&(chat.clone(), message_id.to_string())) else {
            return Ok(None);
        };
        let count = entry.retries.entry(device.clone()).or_insert(0);
        *count = count.saturating_add(1);
        Ok(Some(*count))
    }

    async fn load_decrypted(&self, ciphertext_hash: &[u8; 32]) -> Result<Option<DecryptedMessage>> {
        Ok(self.lock().decrypted.get(ciphertext_hash).cloned())
    }

    async fn due_webhooks(&self, now_ms: i64, limit: usize) -> Result<Vec<WebhookJob>> {
        let state = self.lock();
        let mut due: Vec<&WebhookJob> = state
            .webhooks
            .values()
            .filter(|w| w.next_attempt_at_ms <= now_ms)
            .collect();
        due.sort_by(|a, b| (a.next_attempt_at_ms, &a.id).cmp(&(b.next_attempt_at_ms, &b.id)));
        Ok(due.into_iter().take(limit).cloned().collect())
    }

    async fn reschedule_webhook(
        &self,
        id: &str,
        next_attempt_at_ms: i64,
        error: &str,
    ) -> Result<bool> {
        let mut state = self.lock();
        let Some(job) = state.webhooks.get_mut(id) else {
            return Ok(false);
        };
        job.attempts = job.attempts.saturating_add(1);
        job.next_attempt_at_ms = next_attempt_at_ms;
        job.last_error = Some(error.to_string());
        Ok(true)
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool> {
        Ok(self.lock().webhooks.remove(id).is_some())
    }

    async fn webhook_count(&self) -> Result<u64> {
        Ok(self.lock().webhooks.len() as u64)
    }

    async fn claim_idempotency_key(&self, claim: &IdempotencyClaim) -> Result<IdempotencyState> {
        check_key("idempotency key", "instance", &claim.instance)?;
        check_key("idempotency key", "key", &claim.key)?;
        let mut state = self.lock();
        let slot = (claim.instance.clone(), claim.key.clone());
        Ok(match state.idempotency.get(&slot) {
            None => {
                state.idempotency.insert(
                    slot,
                    IdempotencyEntry::InProgress {
                        fingerprint: claim.fingerprint.clone(),
                        since_ms: claim.now_ms,
                    },
                );
                IdempotencyState::Claimed
            }
            Some(
                IdempotencyEntry::InProgress { fingerprint, .. }
                | IdempotencyEntry::Completed { fingerprint, .. },
            ) if *fingerprint != claim.fingerprint => IdempotencyState::Mismatch,
            Some(IdempotencyEntry::InProgress { since_ms, .. }) => IdempotencyState::InProgress {
                since_ms: *since_ms,
            },
            Some(IdempotencyEntry::Completed { response, .. }) => {
                IdempotencyState::Completed(response.clone())
            }
        })
    }

    async fn complete_idempotency_key(
        &self,
        instance: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<()> {
        let mut state = self.lock();
        let slot = (instance.to_string(), key.to_string());
        let Some(entry) = state.idempotency.get_mut(&slot) else {
            return Err(Error::invalid(
                "idempotency key",
                "completing a key that was not claimed",
            ));
        };
        let (fingerprint, since_ms) = match entry {
            IdempotencyEntry::InProgress {
                fingerprint,
                since_ms,
            }
            | IdempotencyEntry::Completed {
                fingerprint,
                since_ms,
                ..
            } => (std::mem::take(fingerprint), *since_ms),
        };
        *entry = IdempotencyEntry::Completed {
            fingerprint,
            since_ms,
            response: response.clone(),
        };
        Ok(())
    }

    async fn release_idempotency_key(&self, instance: &str, key: &str) -> Result<bool> {
        let mut state = self.lock();
        let slot = (instance.to_string(), key.to_string());
        if matches!(
            state.idempotency.get(&slot),
            Some(IdempotencyEntry::InProgress { .. })
        ) {
            state.idempotency.remove(&slot);
            return Ok(true);
        }
        Ok(false)
    }

    async fn prune(&self, before: PruneBefore) -> Result<PruneCounts> {
        let mut state = self.lock();
        let mut counts = PruneCounts::default();
        fn prune_map<K, V>(
            map: &mut HashMap<K, V>,
            cutoff: Option<i64>,
            time: impl Fn(&V) -> i64,
        ) -> u64 {
            let Some(cutoff) = cutoff else { return 0 };
            let before = map.len();
            map.retain(|_, v| time(v) >= cutoff);
            (before - map.len()) as u64
        }
        counts.message_secrets = prune_map(&mut state.secrets, before.message_secrets, |s| {
            s.created_at_ms
        });
        counts.sent_messages = prune_map(&mut state.sent, before.sent_messages, |e| {
            e.sent.created_at_ms
        });
        counts.decrypted = prune_map(&mut state.decrypted, before.decrypted, |d| d.received_at_ms);
        counts.idempotency_keys = prune_map(&mut state.idempotency, before.idempotency_keys, |e| {
            e.since_ms()
        });
        Ok(counts)
    }
}
