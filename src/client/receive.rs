//! Receiving messages: decrypt `pkmsg`/`msg`/`skmsg`, process embedded sender keys,
//! keep the plaintext until it is handled, send delivery receipts and acks, ask for a
//! retry when a message cannot be decrypted.
//!
//! [`MessageHandler`] is the client's default stanza handler; the sans-IO steps are
//! in [`super::envelope`] (stanza parsing, receipts, acks) and [`super::decrypt`]
//! (Signal decryption into one store batch).
//!
//! Order for every message, so that nothing is lost and no key is reused: decrypt →
//! commit ONE batch (Signal state, plaintext, message secrets, LID↔PN mappings) →
//! hand the messages to the events layer → delivery receipt → ack. When the store
//! fails the message is not acked and the server delivers it again; a redelivered
//! message finds its plaintext in the store.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::binary::Node;
use crate::jid::Jid;
use crate::proto::e2e;
use crate::signal::identity::prekey_id_after;
use crate::signal::store::{IdentityChange, SignalStoreExt};
use crate::signal::{PreKeyRecord, ProtocolAddress, generate_prekeys};
use crate::store::{StoreBatch, now_ms};

use super::decrypt::decrypt_envelope;
use super::envelope::{
    Envelope, OwnIds, RetryKeys, RetryReason, RetryRequest, delivery_receipt, nack, retry_receipt,
};
use super::{Client, ClientError, StanzaHandler, lock};

/// Where a received message comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// The message id.
    pub id: String,
    /// The chat: the group, or the other user (non-AD) of a 1:1 chat.
    pub chat: Jid,
    /// The sending device (AD JID, as addressed: LID in LID groups).
    pub sender: Jid,
    /// The sender in the other namespace (`participant_pn` / `participant_lid`,
    /// `sender_pn` / `sender_lid`), when the server said.
    pub sender_alt: Option<Jid>,
    /// Sent by another device of our own account.
    pub from_me: bool,
    /// The stanza's `t` (unix seconds).
    pub timestamp: i64,
    /// The sender's push name (`notify`).
    pub push_name: Option<String>,
    /// The stanza's `type` (`text`, `event`, …).
    pub stanza_type: String,
    /// The stanza's `edit` attribute.
    pub edit: Option<String>,
}

/// A decrypted message.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingMessage {
    /// Where it came from.
    pub info: MessageInfo,
    /// The content, unpadded and parsed; a `DeviceSentMessage` from our own devices is
    /// already unwrapped.
    pub message: e2e::Message,
}

/// How many retry receipts we send for one message before giving up (WhatsApp's
/// clients stop at 5 too).
pub const MAX_RETRY_RECEIPTS: u32 = 5;
/// How many messages' retry counts are remembered (the oldest are forgotten first).
pub const RETRY_MEMORY: usize = 4096;

/// Retry receipts sent per message, bounded in size.
#[derive(Debug, Default)]
struct RetryCounts {
    counts: HashMap<String, u32>,
    order: VecDeque<String>,
}

impl RetryCounts {
    fn bump(&mut self, key: &str) -> u32 {
        if let Some(n) = self.counts.get_mut(key) {
            *n = n.saturating_add(1);
            return *n;
        }
        while self.order.len() >= RETRY_MEMORY {
            if let Some(old) = self.order.pop_front() {
                self.counts.remove(&old);
            }
        }
        self.order.push_back(key.to_owned());
        self.counts.insert(key.to_owned(), 1);
        1
    }

    fn forget(&mut self, key: &str) {
        if self.counts.remove(key).is_some() {
            self.order.retain(|k| k != key);
        }
    }
}

/// What the handler did with one `<message>` (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Decrypted and stored; `delivered` messages were handed on; receipt and ack sent.
    Delivered {
        /// Messages with content handed to the events layer.
        delivered: usize,
        /// Parts whose plaintext came from the redelivery buffer.
        redelivered: usize,
        /// Duplicate parts skipped.
        duplicates: usize,
        /// Senders whose identity key changed with this message (accepted, as
        /// WhatsApp's clients do; logged).
        changed_identities: Vec<ProtocolAddress>,
    },
    /// Every part was a duplicate: acked, nothing delivered again.
    Duplicate,
    /// Could not be decrypted: retry receipt `count` sent (unless past the limit) and
    /// acked.
    RetryRequested {
        /// The retry count for this message (1 for the first).
        count: u32,
        /// Whether a retry receipt went out (false past [`MAX_RETRY_RECEIPTS`]).
        sent: bool,
        /// Why it failed.
        error: String,
    },
    /// Refused (malformed stanza or payload): nacked with `code`.
    Rejected {
        /// The nack code.
        code: u16,
        /// Why.
        error: String,
    },
    /// Nothing to decrypt (no Signal parts): acked.
    Empty,
    /// The store failed: not acked, so the server delivers the message again.
    NotAcked {
        /// Why.
        error: String,
    },
}

/// The client's default [`StanzaHandler`]: decrypts messages, answers what the server
/// expects, and hands decrypted messages to the events layer.
///
/// * `message` → decrypt ([`super::decrypt`]), commit one store batch, hand the
///   messages on, then the delivery receipt and the ack; undecryptable → a retry
///   receipt (at most [`MAX_RETRY_RECEIPTS`] per message) and the ack; a malformed
///   stanza → a nack.
/// * `receipt type="retry"` → the send pipeline re-sends, then ack; other receipts → ack.
/// * `notification type="devices|w:gp2"` → the send pipeline's caches, then ack; other
///   notifications and `call` → ack.
#[derive(Debug, Default)]
pub struct MessageHandler {
    /// Send delivery receipts without `type="inactive"` (only right when we announced
    /// presence as available; WhatsApp's companions start inactive).
    pub active_receipts: bool,
    retries: Mutex<RetryCounts>,
}

impl MessageHandler {
    /// A handler with inactive delivery receipts.
    pub fn new() -> Self {
        MessageHandler::default()
    }

    /// A handler whose delivery receipts say the app is active (no `type`), for an
    /// embedder that announced presence as available.
    pub fn with_active_receipts(active: bool) -> Self {
        MessageHandler {
            active_receipts: active,
            ..MessageHandler::default()
        }
    }

    /// Handles one `<message>` stanza (see the type docs) and says what it did.
    pub async fn handle_message(&self, client: &Client, node: &Node) -> MessageOutcome {
        let nack = |code: u16, error: String| async move {
            tracing::warn!(%error, code, "refusing a message stanza");
            if let Err(e) = client.send_ack(node, Some(code)).await {
                tracing::debug!(error = %e, "could not nack a message");
            }
            MessageOutcome::Rejected { code, error }
        };
        let creds = match client.credentials().await {
            Ok(Some(c)) if c.is_paired() => c,
            _ => return nack(nack::UNHANDLED_ERROR, "not paired: cannot decrypt".into()).await,
        };
        let own = OwnIds {
            pn: creds.pn.clone(),
            lid: creds.lid.clone(),
        };
        let envelope = match Envelope::parse(node, &own) {
            Ok(e) => e,
            Err(e) => return nack(nack::PARSING_ERROR, e.to_string()).await,
        };
        if envelope.parts.is_empty() {
            tracing::debug!(id = %envelope.info.id, skipped = ?envelope.skipped_parts,
                unavailable = envelope.unavailable, "message without Signal parts");
            ack(client, node).await;
            return MessageOutcome::Empty;
        }
        let store = client.store();
        // Sends and retries change the same sessions and sender keys: hold their lock
        // from loading the records to committing them (not while handing messages on,
        // which may send).
        let signal_state = client.inner.send.caches.lock().await;
        let mut decryption = match decrypt_envelope(
            store.as_ref(),
            &creds.identity,
            &envelope,
            &mut rand::rngs::OsRng,
            now_ms(),
        )
        .await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, id = %envelope.info.id, "not acking a message: the store failed");
                return MessageOutcome::NotAcked {
                    error: e.to_string(),
                };
            }
        };
        let committed = commit(client, std::mem::take(&mut decryption.batch)).await;
        drop(signal_state);
        let changed_identities = match committed {
            Ok(changed) => changed,
            Err(error) => {
                tracing::error!(%error, id = %envelope.info.id, "not acking a message: its state could not be stored");
                return MessageOutcome::NotAcked { error };
            }
        };
        for message in &decryption.messages {
            client.handle_incoming_message(message).await;
        }
        let key = format!(
            "{}\u{0}{}\u{0}{}",
            envelope.info.chat, envelope.info.id, envelope.info.sender
        );
        if let Some(failure) = decryption.failure {
            let Some(reason) = failure.retry_reason() else {
                return nack(nack::INVALID_PROTOBUF, failure.to_string()).await;
            };
            let count = lock(&self.retries).bump(&key);
            let sent = count <= MAX_RETRY_RECEIPTS;
            tracing::warn!(error = %failure, count, sent, "message does not decrypt; asking for a retry");
            if sent
                && let Err(e) = client
                    .send_retry_receipt(node, count, reason, failure.needs_keys())
                    .await
            {
                tracing::warn!(error = %e, "could not send a retry receipt");
            }
            ack(client, node).await;
            return MessageOutcome::RetryRequested {
                count,
                sent,
                error: failure.to_string(),
            };
        }
        lock(&self.retries).forget(&key);
        if decryption.duplicates == envelope.parts.len() {
            tracing::debug!(id = %envelope.info.id, "duplicate message acked");
            ack(client, node).await;
            return MessageOutcome::Duplicate;
        }
        if let Some(receipt) = delivery_receipt(node, &envelope, self.active_receipts)
            && let Err(e) = client.send_node(&receipt).await
        {
            tracing::debug!(error = %e, "could not send a delivery receipt");
        }
        ack(client, node).await;
        MessageOutcome::Delivered {
            delivered: decryption.messages.len(),
            redelivered: decryption.redelivered,
            duplicates: decryption.duplicates,
            changed_identities,
        }
    }
}

async fn ack(client: &Client, node: &Node) {
    if let Err(e) = client.send_ack(node, None).await {
        tracing::debug!(error = %e, tag = %node.tag, "could not ack a stanza");
    }
}

/// Commits a received message's batch; returns the addresses whose identity key was
/// replaced (logged). A batch the store refuses as invalid (an entry it cannot keep)
/// is committed again with the Signal state and plaintexts only, so the ratchet never
/// falls behind the ack.
async fn commit(client: &Client, batch: StoreBatch) -> Result<Vec<ProtocolAddress>, String> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let identities = batch.signal.identities.clone();
    let store = client.store();
    let outcome = match store.commit_batch(batch.clone()).await {
        Ok(o) => o,
        Err(crate::store::Error::Invalid { .. }) => {
            let essential = StoreBatch {
                signal: batch.signal,
                decrypted: batch.decrypted,
                ..StoreBatch::default()
            };
            store
                .commit_batch(essential)
                .await
                .map_err(|e| e.to_string())?
        }
        Err(e) => return Err(e.to_string()),
    };
    let mut changed = Vec::new();
    for ((address, _), change) in identities.iter().zip(&outcome.identity_changes) {
        if let IdentityChange::Replaced { .. } = change {
            // WhatsApp's clients accept a new identity (reinstall, new phone) and show
            // a security notice; so do we.
            tracing::warn!(%address, "the sender's identity key changed; accepted");
            changed.push(address.clone());
        }
    }
    Ok(changed)
}

impl Client {
    /// Sends a retry receipt for `message` (PROTOCOL.md §10.8), with our keys — a
    /// fresh one-time prekey, stored before it leaves, the signed prekey and our device
    /// identity — when `count ≥ 2` or `with_keys`.
    pub(crate) async fn send_retry_receipt(
        &self,
        message: &Node,
        count: u32,
        reason: RetryReason,
        with_keys: bool,
    ) -> Result<(), ClientError> {
        let creds = self.credentials().await?.ok_or(ClientError::NotPaired)?;
        let mut fresh: Option<PreKeyRecord> = None;
        let mut signed = None;
        if count >= 2 || with_keys {
            signed = self
                .store()
                .load_signed_prekey_record(creds.signed_prekey_id)
                .await?;
            if signed.is_some() && creds.account.is_some() {
                self.update_credentials(|c| {
                    let key = generate_prekeys(c.next_prekey_id, 1, &mut rand::rngs::OsRng).pop();
                    c.next_prekey_id = prekey_id_after(c.next_prekey_id, 1);
                    let batch = StoreBatch {
                        prekeys: key.iter().map(|k| (k.id, k.serialize())).collect(),
                        // It goes to the sender, not to the server's pool.
                        uploaded_prekeys: key.iter().map(|k| k.id).collect(),
                        ..StoreBatch::default()
                    };
                    fresh = key;
                    batch
                })
                .await?;
            } else {
                tracing::warn!("no signed prekey or device identity: retry receipt without keys");
            }
        }
        let keys = match (&fresh, &signed, &creds.account) {
            (Some(prekey), Some(signed_prekey), Some(account)) => Some(RetryKeys {
                identity: creds.identity.public_key(),
                prekey,
                signed_prekey,
                device_identity: account,
            }),
            _ => None,
        };
        let request = RetryRequest {
            count,
            reason,
            registration_id: creds.identity.registration_id,
            keys,
        };
        let receipt = retry_receipt(message, &request).ok_or_else(|| ClientError::Encode {
            tag: "receipt".into(),
            detail: "the message has no id or from, or a prekey id is not 24-bit".into(),
        })?;
        self.send_node(&receipt).await
    }
}

#[async_trait]
impl StanzaHandler for MessageHandler {
    async fn handle(&self, client: &Client, stanza: Node) {
        match stanza.tag.as_ref() {
            "message" => {
                let outcome = self.handle_message(client, &stanza).await;
                tracing::debug!(?outcome, "message handled");
            }
            "receipt" => {
                if stanza.attr_str("type") == Some("retry") {
                    client.handle_retry_receipt(&stanza).await;
                }
                ack(client, &stanza).await;
            }
            "notification" => {
                if matches!(stanza.attr_str("type"), Some("devices" | "w:gp2")) {
                    client.handle_fanout_notification(&stanza).await;
                }
                ack(client, &stanza).await;
            }
            "call" => ack(client, &stanza).await,
            _ => {}
        }
    }
}
