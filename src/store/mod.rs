//! Persistent state of one linked device behind one async [`Store`] trait, with an
//! embedded SQLite backend ([`SqliteStore`], feature `sqlite`) and an in-memory one
//! ([`MemoryStore`]) that behave the same.
//!
//! What is kept (PROTOCOL.md §6.5, §4, §10.7, §11):
//! * [`DeviceCredentials`]: Noise and identity keys, registration id, ADV secret, own
//!   PN and LID JIDs, the signed device identity, login state, prekey numbering;
//! * all Signal state, through the [`SignalStore`] traits (sessions, identities,
//!   prekeys with "uploaded" marks, signed prekeys, sender keys);
//! * LID↔PN mappings, device-list and group-metadata caches, and the sender-key memory
//!   (which devices already hold our sender key of a group);
//! * message secrets, event cards and RSVPs (latest per voter, with a tally);
//! * sent messages (for retry receipts and for resending after a crash), a buffer of
//!   decrypted plaintexts (so a redelivered message is not lost after a crash), and the
//!   gateway's webhook outbox and idempotency keys.
//!
//! **One transaction per operation.** Everything a send or a receive changes goes into
//! one [`StoreBatch`] and [`Store::commit_batch`] applies it atomically: the client
//! stores the advanced ratchet, the sender-key iteration, the message secret and the
//! prepared stanza *before* the bytes leave, so a crash can never make it reuse a key,
//! and a resend after the crash uses the same message id. [`SignalStore::commit`] is
//! the same with only the Signal part (the method has another name on [`Store`] so
//! that calls on `Arc<dyn Store>` are not ambiguous).
//!
//! **Logout** ([`Store::clear_all`]) wipes everything in one transaction.
//!
//! # How the client uses it
//!
//! * **First start**: [`DeviceCredentials::generate`], then
//!   [`save_credentials`](Store::save_credentials) before connecting (the QR code shows
//!   these keys).
//! * **Pair success**: one batch with the completed credentials (`pn`, `lid`, `account`,
//!   `platform`, …), the own [`LidPnMapping`], and the account signature key as the
//!   identity of the own LID device 0 (`signal.identities`).
//! * **Pre-keys**: generate from `credentials.next_prekey_id`, commit the credentials
//!   with the advanced id *and* the new `prekeys` in one batch, upload, then
//!   [`mark_prekeys_uploaded`](Store::mark_prekeys_uploaded). Killed in between, the
//!   keys are stored but not marked: [`unuploaded_prekeys`](Store::unuploaded_prekeys)
//!   hands them to the next upload, and no id is ever handed out twice.
//! * **Send**: load records, encrypt, commit one batch (Signal state, message secret,
//!   event card, [`SentMessage`] in state `Pending` with the prepared stanza), then
//!   write the bytes. On the server's ack, [`set_sent_state`](Store::set_sent_state)
//!   `Acked` and mark the sender-key memory. After a crash or reconnect,
//!   [`pending_sent_messages`](Store::pending_sent_messages) gives the stanzas to send
//!   again unchanged (same id, same ciphertext).
//! * **Receive**: decrypt, commit one batch (Signal state, the plaintext in
//!   `decrypted` under the ciphertext's SHA-256, secrets / cards / RSVPs, webhook jobs),
//!   then ack. A redelivery after a crash finds its plaintext with
//!   [`load_decrypted`](Store::load_decrypted) instead of failing to decrypt with an
//!   already advanced ratchet.
//!
//! With SQLite every commit costs one `fsync` (milliseconds on most disks; see
//! `benches/store.rs`); reads and the in-memory backend cost microseconds.

mod batch;
mod credentials;
mod error;
mod memory;
mod records;
#[cfg(feature = "sqlite")]
mod sqlite;

use async_trait::async_trait;

pub use batch::{CommitOutcome, StoreBatch};
pub use credentials::{DeviceCredentials, SECRET_LEN, SecretBytes};
pub use error::{Error, Result};
pub use memory::MemoryStore;
pub use records::{
    AddressingMode, DecryptedMessage, DeviceEntry, DeviceList, EventRecord, EventTally,
    GroupMetadata, GroupParticipant, IdempotencyClaim, IdempotencyState, LidPnMapping, MAX_KEY_LEN,
    MAX_MESSAGE_ID_LEN, MessageSecretRecord, ParticipantRole, PruneBefore, PruneCounts, RsvpRecord,
    RsvpStatus, SenderKeyMemoryUpdate, SentMessage, SentState, SentStateUpdate, StoredResponse,
    StoredSentMessage, WebhookJob,
};
#[cfg(feature = "sqlite")]
pub use sqlite::{SCHEMA_VERSION, SqliteStore};

use crate::jid::Jid;
use crate::signal::store::SignalStore;

/// Every trait needed to call a store's methods: `use waevent::store::prelude::*;`.
pub mod prelude {
    pub use super::Store;
    pub use crate::signal::store::{
        IdentityStore, PreKeyStore, SenderKeyStore, SessionStore, SignalStore, SignalStoreExt,
        SignedPreKeyStore,
    };
}

/// The device's whole persistent state. Object safe: use it as `Arc<dyn Store>`.
///
/// Reads take keys and return `None` (or an empty list) for what is not stored. Writes
/// go through [`commit_batch`](Store::commit_batch); the single-purpose writers
/// (`save_credentials`, `put_lid_mappings`, …) are one-part batches.
#[async_trait]
pub trait Store: SignalStore + Send + Sync {
    /// Applies `batch` in one transaction (see [`StoreBatch`] for the order). Refuses
    /// an invalid entry with [`Error::Invalid`] before writing anything; on any error
    /// nothing is applied.
    async fn commit_batch(&self, batch: StoreBatch) -> Result<CommitOutcome>;

    /// The stored credentials, if any.
    async fn load_credentials(&self) -> Result<Option<DeviceCredentials>>;

    /// Logout: deletes everything (credentials, Signal state, caches, secrets, events,
    /// RSVPs, sent messages, webhook outbox, idempotency keys) in one transaction.
    async fn clear_all(&self) -> Result<()>;

    /// Up to `limit` stored prekeys not yet marked uploaded (id, record), lowest ids
    /// first.
    async fn unuploaded_prekeys(&self, limit: usize) -> Result<Vec<(u32, Vec<u8>)>>;

    /// The LID of each phone-number JID (same device; `@hosted` → `@hosted.lid`), or
    /// `None` where no mapping is known or the JID is not a PN, in input order.
    async fn lids_for_pns(&self, pns: &[Jid]) -> Result<Vec<Option<Jid>>>;

    /// The phone-number JID of each LID (same device; `@hosted.lid` → `@hosted`), or
    /// `None` where no mapping is known or the JID is not a LID, in input order.
    async fn pns_for_lids(&self, lids: &[Jid]) -> Result<Vec<Option<Jid>>>;

    /// The cached device list of each user (device parts of the input are ignored),
    /// in input order.
    async fn load_device_lists(&self, users: &[Jid]) -> Result<Vec<Option<DeviceList>>>;

    /// The cached metadata of `group`.
    async fn load_group(&self, group: &Jid) -> Result<Option<GroupMetadata>>;

    /// The devices that hold our current sender key of `group`, sorted.
    async fn sender_key_holders(&self, group: &Jid) -> Result<Vec<Jid>>;

    /// The message secret stored under exactly (chat, sender at user level, id).
    /// [`find_message_secret`](Store::find_message_secret) also tries LID/PN
    /// alternates.
    async fn message_secret(
        &self,
        chat: &Jid,
        sender: &Jid,
        message_id: &str,
    ) -> Result<Option<MessageSecretRecord>>;

    /// The event card `message_id` in `chat`.
    async fn load_event(&self, chat: &Jid, message_id: &str) -> Result<Option<EventRecord>>;

    /// Every stored event card with this message id (normally one), sorted by chat.
    async fn events_by_id(&self, message_id: &str) -> Result<Vec<EventRecord>>;

    /// The latest answer of every voter to event `event_id` in `chat`, sorted by voter.
    async fn rsvps(&self, chat: &Jid, event_id: &str) -> Result<Vec<RsvpRecord>>;

    /// The sent message `message_id` in exactly `chat`.
    async fn load_sent_message(
        &self,
        chat: &Jid,
        message_id: &str,
    ) -> Result<Option<StoredSentMessage>>;

    /// Up to `limit` sent messages still waiting for the server's ack, oldest first
    /// (ties by chat and id), to resend after a reconnect.
    async fn pending_sent_messages(&self, limit: usize) -> Result<Vec<StoredSentMessage>>;

    /// Counts one more retry receipt from `device` for a sent message and returns the
    /// new count, or `None` when the message is not stored.
    async fn bump_sent_retry(
        &self,
        chat: &Jid,
        message_id: &str,
        device: &Jid,
    ) -> Result<Option<u32>>;

    /// The buffered plaintext of a message whose ciphertext has this SHA-256.
    async fn load_decrypted(&self, ciphertext_hash: &[u8; 32]) -> Result<Option<DecryptedMessage>>;

    /// Up to `limit` webhook jobs due at `now_ms`, earliest first (ties by id).
    async fn due_webhooks(&self, now_ms: i64, limit: usize) -> Result<Vec<WebhookJob>>;

    /// Records a failed delivery of job `id`: one more attempt, the next one not before
    /// `next_attempt_at_ms`. Returns false when the job is not queued.
    async fn reschedule_webhook(
        &self,
        id: &str,
        next_attempt_at_ms: i64,
        error: &str,
    ) -> Result<bool>;

    /// Removes a delivered (or abandoned) job. Returns false when it was not queued.
    async fn delete_webhook(&self, id: &str) -> Result<bool>;

    /// How many webhook jobs are queued.
    async fn webhook_count(&self) -> Result<u64>;

    /// Claims an idempotency key atomically: exactly one of concurrent claims of a free
    /// key gets [`IdempotencyState::Claimed`]. Refuses empty or over-long keys.
    async fn claim_idempotency_key(&self, claim: &IdempotencyClaim) -> Result<IdempotencyState>;

    /// Stores the response of a claimed key; later claims get it back. Refuses a key
    /// that is not claimed.
    async fn complete_idempotency_key(
        &self,
        instance: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<()>;

    /// Gives up a claim that did not complete (the request failed before sending), so
    /// a retry can run. Completed keys are kept. Returns false when nothing was
    /// released.
    async fn release_idempotency_key(&self, instance: &str, key: &str) -> Result<bool>;

    /// Removes old message secrets, sent messages, decrypted plaintexts and idempotency
    /// keys, in one transaction.
    async fn prune(&self, before: PruneBefore) -> Result<PruneCounts>;

    // ---- provided: one-part batches and lookups built on the methods above ----

    /// Stores the credentials (replacing the stored ones).
    async fn save_credentials(&self, credentials: &DeviceCredentials) -> Result<()> {
        self.commit_batch(StoreBatch {
            credentials: Some(credentials.clone()),
            ..StoreBatch::default()
        })
        .await
        .map(drop)
    }

    /// Marks prekeys as accepted by the server.
    async fn mark_prekeys_uploaded(&self, ids: &[u32]) -> Result<()> {
        self.commit_batch(StoreBatch {
            uploaded_prekeys: ids.to_vec(),
            ..StoreBatch::default()
        })
        .await
        .map(drop)
    }

    /// Stores LID↔PN mappings.
    async fn put_lid_mappings(&self, mappings: &[LidPnMapping]) -> Result<()> {
        self.commit_batch(StoreBatch {
            mappings: mappings.to_vec(),
            ..StoreBatch::default()
        })
        .await
        .map(drop)
    }

    /// The LID of one phone-number JID (same device), if known.
    async fn lid_for_pn(&self, pn: &Jid) -> Result<Option<Jid>> {
        Ok(self
            .lids_for_pns(std::slice::from_ref(pn))
            .await?
            .pop()
            .flatten())
    }

    /// The phone-number JID of one LID (same device), if known.
    async fn pn_for_lid(&self, lid: &Jid) -> Result<Option<Jid>> {
        Ok(self
            .pns_for_lids(std::slice::from_ref(lid))
            .await?
            .pop()
            .flatten())
    }

    /// The same user or device in the other namespace (LID for a PN, PN for a LID),
    /// if the mapping is known; `None` for groups and other servers.
    async fn alternate_jid(&self, jid: &Jid) -> Result<Option<Jid>> {
        if jid.is_lid() {
            self.pn_for_lid(jid).await
        } else if jid.is_pn() {
            self.lid_for_pn(jid).await
        } else {
            Ok(None)
        }
    }

    /// Caches device lists.
    async fn save_device_lists(&self, lists: &[DeviceList]) -> Result<()> {
        self.commit_batch(StoreBatch {
            device_lists: lists.to_vec(),
            ..StoreBatch::default()
        })
        .await
        .map(drop)
    }

    /// Drops cached device lists.
    async fn delete_device_lists(&self, users: &[Jid]) -> Result<()> {
        self.commit_batch(StoreBatch {
            removed_device_lists: users.to_vec(),
            ..StoreBatch::default()
        })
        .await
        .map(drop)
    }

    /// Caches group metadata.
    async fn save_group(&self, group: &GroupMetadata) -> Result<()> {
        self.commit_batch(StoreBatch {
            groups: vec![group.clone()],
            ..StoreBatch::default()
        })
        .await
        .map(drop)
    }

    /// Drops cached group metadata.
    async fn delete_group(&self, group: &Jid) -> Result<()> {
        self.commit_batch(StoreBatch {
            removed_groups: vec![group.clone()],
            ..StoreBatch::default()
        })
        .await
        .map(drop)
    }

    /// Applies sender-key memory changes.
    async fn update_sender_key_memory(&self, updates: &[SenderKeyMemoryUpdate]) -> Result<()> {
        self.commit_batch(StoreBatch {
            sender_key_memory: updates.to_vec(),
            ..StoreBatch::default()
        })
        .await
        .map(drop)
    }

    /// Stores message secrets.
    async fn put_message_secrets(&self, secrets: &[MessageSecretRecord]) -> Result<()> {
        self.commit_batch(StoreBatch {
            secrets: secrets.to_vec(),
            ..StoreBatch::default()
        })
        .await
        .map(drop)
    }

    /// The message secret of (chat, sender, id), trying the sender as given, then its
    /// LID/PN alternate, then the same with the chat's alternate (for 1:1 chats). The
    /// returned record says under which chat and sender it was stored (the creator JID
    /// to derive keys with).
    async fn find_message_secret(
        &self,
        chat: &Jid,
        sender: &Jid,
        message_id: &str,
    ) -> Result<Option<MessageSecretRecord>> {
        let sender = sender.to_non_ad();
        let mut senders = vec![sender.clone()];
        if let Some(alt) = self.alternate_jid(&sender).await? {
            senders.push(alt);
        }
        let mut chats = vec![chat.clone()];
        if !chat.is_group()
            && let Some(alt) = self.alternate_jid(chat).await?
        {
            chats.push(alt);
        }
        for c in &chats {
            for s in &senders {
                if let Some(found) = self.message_secret(c, s, message_id).await? {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    /// Stores one event card (replacing an earlier version: edits).
    async fn put_event(&self, event: &EventRecord) -> Result<()> {
        self.commit_batch(StoreBatch {
            events: vec![event.clone()],
            ..StoreBatch::default()
        })
        .await
        .map(drop)
    }

    /// Records one RSVP; returns false when the voter's stored answer is newer.
    async fn record_rsvp(&self, rsvp: &RsvpRecord) -> Result<bool> {
        let outcome = self
            .commit_batch(StoreBatch {
                rsvps: vec![rsvp.clone()],
                ..StoreBatch::default()
            })
            .await?;
        Ok(outcome.rsvps_applied.first().copied().unwrap_or(false))
    }

    /// Latest answer per voter and totals for event `event_id` in `chat`.
    async fn event_tally(&self, chat: &Jid, event_id: &str) -> Result<EventTally> {
        Ok(EventTally::from_responses(
            self.rsvps(chat, event_id).await?,
        ))
    }

    /// The sent message `message_id` in `chat`, or else in the chat's LID/PN alternate
    /// (retry receipts may name the other form).
    async fn find_sent_message(
        &self,
        chat: &Jid,
        message_id: &str,
    ) -> Result<Option<StoredSentMessage>> {
        if let Some(found) = self.load_sent_message(chat, message_id).await? {
            return Ok(Some(found));
        }
        match self.alternate_jid(&chat.to_non_ad()).await? {
            Some(alt) if !chat.is_group() => self.load_sent_message(&alt, message_id).await,
            _ => Ok(None),
        }
    }

    /// Sets the state of one sent message (ignored when it is not stored).
    async fn set_sent_state(&self, chat: &Jid, message_id: &str, state: SentState) -> Result<()> {
        self.commit_batch(StoreBatch {
            sent_states: vec![SentStateUpdate {
                chat: chat.clone(),
                message_id: message_id.to_string(),
                state,
            }],
            ..StoreBatch::default()
        })
        .await
        .map(drop)
    }

    /// Queues one webhook delivery.
    async fn enqueue_webhook(&self, job: &WebhookJob) -> Result<()> {
        self.commit_batch(StoreBatch {
            webhooks: vec![job.clone()],
            ..StoreBatch::default()
        })
        .await
        .map(drop)
    }
}

/// Milliseconds since the Unix epoch, by the local clock (0 if it is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
