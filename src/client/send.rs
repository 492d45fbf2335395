//! Sending messages: the group pipeline (group metadata, usync device lists, bundle
//! fetch, sender-key distribution, `skmsg` + `participants`, `phash`, ack) and 1:1
//! chats (`pkmsg`/`msg` to every device, `DeviceSentMessage` to our own), with the
//! state of every send committed to the store before the bytes leave.
//!
//! ```text
//! send_message(chat, message)
//!   group: metadata (cache | w:g2) → device lists (cache | usync, own user included)
//!          → GroupFanout (kept in memory per group; marks restored from the store)
//!          → sender key (created when absent) → sessions (+ one batched bundle fetch
//!          for devices lacking our key and a session) → prepare_group_send
//!   1:1:   peer's LID when known → device lists of peer and own user → sessions
//!          (+ bundles) → prepare_direct_send
//!   commit ONE StoreBatch: Signal state + message.batch + SentMessage{Pending, stanza}
//!   write the stanza, await <ack class="message" id> (the server's answer)
//!     error + another phash → refresh group and device caches, prepare again, resend
//!     once (same id; new ratchet steps, never a reused key)
//!     other error → SendError::ServerError
//!   mark the devices that got our sender key (our own included) and the message Acked
//! ```
//!
//! One lock serialises every change of Signal state made by sends and retries (sender
//! key iterations, ratchets), from loading the records to committing them; it is not
//! held while waiting for the server's ack. A warm group send (everyone already has
//! our sender key) does no per-device work: the per-group [`GroupFanout`] stays in
//! memory with its device list, phash and marks.

use std::collections::{HashMap, HashSet};

use prost::Message as _;
use rand::rngs::OsRng;

use super::Client;
use crate::binary::{Node, marshal};
use crate::jid::Jid;
use crate::messaging::{
    DirectSend, FanoutError, GroupFanout, GroupSend, PairwiseTarget, PreparedSend,
    estimated_fanout_micros, generate_message_id, prepare_direct_send, prepare_group_send,
};
use crate::proto::e2e;
use crate::signal::LocalIdentity;
use crate::signal::address::SenderKeyName;
use crate::signal::group::SenderKeyRecord;
use crate::signal::store::SignalStoreExt;
use crate::store::{
    AddressingMode, DeviceCredentials, DeviceList, GroupMetadata, SenderKeyMemoryUpdate,
    SentMessage, SentState, SentStateUpdate, StoreBatch, now_ms,
};

/// One message to send.
#[derive(Debug, Default)]
pub struct OutgoingMessage {
    /// The plaintext `Message`. The stanza framing (`type`, `<meta>`, `edit`,
    /// `decrypt-fail`) is derived from its content, as WhatsApp's apps do.
    pub message: e2e::Message,
    /// The message id to use; a fresh WhatsApp-style id (`3EB0…`) when `None`.
    pub id: Option<String>,
    /// Extra store writes (e.g. the event card and its message secret) committed in
    /// the same transaction as the send's Signal state, before the bytes leave.
    pub batch: StoreBatch,
    /// Who asked for the send, stored with the sent message (see
    /// [`SentMessage::source`]).
    pub source: Option<String>,
}

/// The message a send stores with its stanza.
#[derive(Clone, Copy)]
struct MessageRecord<'a> {
    id: &'a str,
    message: &'a e2e::Message,
    /// `message`, encoded.
    plaintext: &'a [u8],
    source: Option<&'a str>,
}

/// What the server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReceipt {
    /// The message id.
    pub message_id: String,
    /// The server's timestamp from the ack (unix seconds).
    pub server_time: i64,
    /// How many devices the message was encrypted for (skmsg readers excluded).
    pub pairwise_devices: usize,
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// Not connected or not logged in; nothing was sent.
    #[error("not connected to WhatsApp")]
    NotConnected,
    /// The chat cannot be sent to (not a member of the group, unknown user, …); nothing
    /// was sent.
    #[error("{0}")]
    Rejected(String),
    /// The server refused the message with an error code in its ack.
    #[error("the server refused message {id} with error {code}")]
    ServerError {
        /// The message id.
        id: String,
        /// The ack's `error` attribute.
        code: u16,
    },
    /// Sending failed after the stanza may have left; the outcome is unknown.
    #[error("sending failed: {0}")]
    Failed(String),
    /// A query the send needs (group info, device lists, pre-key bundles) failed or
    /// was answered with something unreadable; nothing was sent.
    #[error("{0}; nothing was sent")]
    Query(String),
    /// The store could not be read or written; nothing was sent.
    #[error("store: {0}; nothing was sent")]
    Store(String),
    /// The message could not be encrypted for the chat; nothing was sent.
    #[error("cannot prepare the message: {0}; nothing was sent")]
    Prepare(String),
}

impl From<crate::store::Error> for SendError {
    fn from(e: crate::store::Error) -> Self {
        SendError::Store(e.to_string())
    }
}

impl From<crate::signal::store::StoreError> for SendError {
    fn from(e: crate::signal::store::StoreError) -> Self {
        SendError::Store(e.to_string())
    }
}

impl From<FanoutError> for SendError {
    fn from(e: FanoutError) -> Self {
        match e {
            FanoutError::NoRecipients(_) => SendError::Rejected(e.to_string()),
            e => SendError::Prepare(e.to_string()),
        }
    }
}

/// The send pipeline's memory: the per-group fan-out states, behind the lock that
/// serialises Signal-state changes of sends and retries.
#[derive(Default)]
pub(crate) struct SendState {
    pub(crate) caches: tokio::sync::Mutex<SendCaches>,
    /// Ids of messages between commit and ack in this process (the reconnect resend
    /// leaves them to their sender).
    pub(crate) in_flight: std::sync::Mutex<HashSet<String>>,
}

/// What the lock guards.
#[derive(Default)]
pub(crate) struct SendCaches {
    /// Per group: devices, phash, who has our current sender key.
    pub(crate) groups: HashMap<Jid, GroupFanout>,
    /// Bumped by the device and group notification handlers and by
    /// `invalidate_group`. A send that queried the group without the lock queries again
    /// when this moved meanwhile (its answers may predate the change).
    pub(crate) epoch: u64,
}

/// The server's `<ack class="message">` for one of our stanzas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MessageAck {
    pub error: Option<u16>,
    pub phash: Option<String>,
    pub t: Option<i64>,
}

impl MessageAck {
    pub(crate) fn parse(node: &Node) -> Self {
        let text = |k: &str| node.get_attr(k).map(|v| v.to_text().into_owned());
        MessageAck {
            // An unreadable error code is still an error.
            error: text("error").map(|e| e.parse().unwrap_or(0)),
            phash: text("phash"),
            t: text("t").and_then(|t| t.parse().ok()),
        }
    }
}

/// True when `device` belongs to our own account (either namespace).
pub(crate) fn is_own(device: &Jid, creds: &DeviceCredentials) -> bool {
    creds
        .pn
        .iter()
        .chain(&creds.lid)
        .any(|own| own.user == device.user && own.server == device.server)
        || creds.pn.iter().chain(&creds.lid).any(|own| {
            // Hosted forms of our own user.
            own.user == device.user && device.is_hosted()
        })
}

/// A prepared, committed stanza waiting to be written.
struct Committed {
    /// The marshaled stanza (what the store holds for a resend), written as is; taken
    /// when written.
    frame: Vec<u8>,
    id: String,
    skdm_devices: Vec<Jid>,
    sender_key_id: Option<u32>,
    pairwise: usize,
    phash: Option<String>,
}

impl Client {
    /// Sends `message` to `chat` (a group `@g.us`, or a user) and waits for the
    /// server's ack. Refuses when not logged in.
    pub async fn send_message(
        &self,
        chat: &Jid,
        message: OutgoingMessage,
    ) -> Result<SendReceipt, SendError> {
        if self.state() != super::ConnectionState::LoggedIn {
            return Err(SendError::NotConnected);
        }
        let creds = self
            .credentials()
            .await
            .map_err(|e| SendError::Store(e.to_string()))?
            .filter(DeviceCredentials::is_paired)
            .ok_or_else(|| SendError::Rejected("this device is not paired".into()))?;
        if chat.user.is_empty() {
            return Err(SendError::Rejected(format!("{chat} is not a chat")));
        }
        if chat.is_group() {
            self.send_group(&chat.to_non_ad(), message, &creds).await
        } else if chat.is_pn() || chat.is_lid() {
            self.send_direct(&chat.to_non_ad(), message, &creds).await
        } else {
            Err(SendError::Rejected(format!(
                "cannot send to {chat}: only groups (@g.us) and users (@s.whatsapp.net, @lid) are supported"
            )))
        }
    }

    fn new_message_id(&self, creds: &DeviceCredentials) -> String {
        let secs = (now_ms().saturating_add(creds.server_time_offset_ms)) / 1000;
        generate_message_id(secs, creds.pn.as_ref(), &mut OsRng)
    }

    /// The group path: up to two attempts (the second after a phash mismatch).
    async fn send_group(
        &self,
        group: &Jid,
        mut message: OutgoingMessage,
        creds: &DeviceCredentials,
    ) -> Result<SendReceipt, SendError> {
        let id = message
            .id
            .take()
            .unwrap_or_else(|| self.new_message_id(creds));
        let plaintext = message.message.encode_to_vec();
        let mut extra = Some(std::mem::take(&mut message.batch));
        let record = MessageRecord {
            id: &id,
            message: &message.message,
            plaintext: &plaintext,
            source: message.source.as_deref(),
        };
        let mut refresh = false;
        loop {
            let mut committed = self
                .prepare_and_commit_group(
                    group,
                    record,
                    extra.take().unwrap_or_default(),
                    creds,
                    refresh,
                )
                .await?;
            let ack = self.write_and_await_ack(&mut committed, group).await?;
            let stale_phash = ack
                .phash
                .as_ref()
                .is_some_and(|p| Some(p) != committed.phash.as_ref());
            if stale_phash {
                tracing::info!(%group, ours = ?committed.phash, server = ?ack.phash, "phash differs from the server's; dropping cached members and devices");
                self.invalidate_group(group).await?;
            }
            match ack.error {
                None => {
                    self.after_group_ack(group, &committed).await?;
                    return Ok(SendReceipt {
                        message_id: id,
                        server_time: ack.t.unwrap_or_else(|| now_ms() / 1000),
                        pairwise_devices: committed.pairwise,
                    });
                }
                Some(_) if stale_phash && !refresh => {
                    refresh = true;
                    continue;
                }
                Some(code) => {
                    self.mark_refused(group, &id, code).await;
                    return Err(SendError::ServerError { id, code });
                }
            }
        }
    }

    /// Resolves members and devices, prepares the group stanza and commits it with the
    /// Signal state, `extra` and the pending sent message. Holds the send lock from
    /// the key fetch on (group info and device lists of a group not yet in memory are
    /// queried before).
    async fn prepare_and_commit_group(
        &self,
        group: &Jid,
        message: MessageRecord<'_>,
        extra: StoreBatch,
        creds: &DeviceCredentials,
        refresh: bool,
    ) -> Result<Committed, SendError> {
        // A group without fan-out state has its group info and device lists queried
        // into the store's caches before the send lock is taken, so a slow or cold
        // group does not hold up sends to other chats. The fan-out is still built under
        // the lock, from those caches: a notification handled meanwhile (it takes the
        // lock) has already dropped whatever it made stale, and that part is queried
        // again. Pre-key bundles are fetched under the lock: whether a device needs one
        // depends on the sessions the lock guards.
        let mut describe_refresh = refresh;
        let mut rounds = 0;
        let (mut caches, refresh) = loop {
            let (known, epoch) = {
                let caches = self.inner.send.caches.lock().await;
                (caches.groups.contains_key(group), caches.epoch)
            };
            if !known {
                self.describe_group(group, creds, describe_refresh).await?;
            }
            let caches = self.inner.send.caches.lock().await;
            if known {
                break (caches, refresh);
            }
            if caches.epoch == epoch {
                // Just described: built from the caches, nothing asked again.
                break (caches, false);
            }
            // A notification changed the caches while the answers were on their way
            // (they may predate it, e.g. list a removed member): ask everything again,
            // still without the lock, unless the caches keep changing.
            rounds += 1;
            if rounds >= MAX_DESCRIBE_ROUNDS {
                break (caches, true);
            }
            drop(caches);
            describe_refresh = true;
        };
        let fresh = !caches.groups.contains_key(group);
        let mut fanout = match caches.groups.remove(group) {
            Some(f) => f,
            None => self.build_group_fanout(group, creds, refresh).await?,
        };
        let name = SenderKeyName::new(group, fanout.sender());
        let mut holders = Vec::new();
        let mut member_left = false;
        if fresh {
            // Restore who has our key. A holder whose user is no longer in the group
            // (removed while we did not watch) forces a new key: forward secrecy.
            let members: HashSet<(&str, &str)> = fanout
                .devices()
                .iter()
                .map(|d| (d.user.as_str(), d.server.as_ref()))
                .collect();
            for d in self.store().sender_key_holders(group).await? {
                if members.contains(&(d.user.as_str(), d.server.as_ref())) {
                    holders.push(d);
                } else {
                    member_left = true;
                }
            }
        }
        let mut record = if member_left {
            tracing::info!(%group, "a member who had our sender key left: rotating it");
            SenderKeyRecord::new()
        } else {
            self.store().load_sender_key_record(&name).await?
        };
        let created = fanout.ensure_sender_key(&mut record, &mut OsRng);
        if !created {
            fanout.mark_has_sender_key(holders.iter());
        }
        let (fanout, result) = self
            .prepare_group_locked(fanout, record, group, message, extra, creds, created)
            .await;
        match (fanout, result) {
            (Some(fanout), Ok((committed, stale_users))) => {
                if stale_users.is_empty() {
                    caches.groups.insert(group.clone(), fanout);
                } else {
                    // Some device is gone: rebuild from fresh device lists next time.
                    tracing::debug!(%group, "device lists went stale during the send");
                }
                Ok(committed)
            }
            (None, Ok((committed, _))) => Ok(committed),
            (fanout, Err(e)) => {
                if let Some(fanout) = fanout.filter(|_| !created) {
                    caches.groups.insert(group.clone(), fanout);
                }
                Err(e)
            }
        }
    }

    /// Fetches the keys of the devices lacking our sender key, prepares the stanza
    /// (on tokio's blocking pool when the fan-out is big, see
    /// [`prepare_group_send_owned`]) and commits it. Gives the fan-out state back
    /// (`None` only if the blocking task died).
    #[allow(clippy::too_many_arguments)]
    async fn prepare_group_locked(
        &self,
        fanout: GroupFanout,
        record: SenderKeyRecord,
        group: &Jid,
        message: MessageRecord<'_>,
        extra: StoreBatch,
        creds: &DeviceCredentials,
        created: bool,
    ) -> (
        Option<GroupFanout>,
        Result<(Committed, Vec<Jid>), SendError>,
    ) {
        let lacking = fanout.lacking_sender_key();
        let (targets, stale_users) = if lacking.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            match self.pairwise_targets(&lacking).await {
                Ok(found) => found,
                Err(e) => return (Some(fanout), Err(e)),
            }
        };
        let device_identity = creds.account.as_deref().unwrap_or_default();
        let (fanout, prepared) = prepare_group_send_owned(
            fanout,
            record,
            &creds.identity,
            device_identity,
            message.id,
            message.message,
            targets,
        )
        .await;
        let (prepared, record) = match prepared {
            Ok(done) => done,
            Err(e) => return (fanout, Err(e)),
        };
        let mut batch = extra;
        if created {
            batch
                .sender_key_memory
                .push(SenderKeyMemoryUpdate::ClearGroup {
                    group: group.clone(),
                });
        }
        let key_id = record.current_state().map(|s| s.key_id());
        let committed = self
            .commit_prepared(prepared, batch, group, message, key_id)
            .await;
        (fanout, committed.map(|c| (c, stale_users)))
    }

    /// Commits the prepared send (Signal state + `batch` + the pending sent message)
    /// in one transaction. Nothing has left yet.
    async fn commit_prepared(
        &self,
        prepared: PreparedSend,
        mut batch: StoreBatch,
        chat: &Jid,
        message: MessageRecord<'_>,
        sender_key_id: Option<u32>,
    ) -> Result<Committed, SendError> {
        let id = message.id;
        let stanza = marshal(&prepared.node)
            .map_err(|e| SendError::Prepare(format!("the stanza does not encode: {e}")))?;
        batch.signal = merge_signal(std::mem::take(&mut batch.signal), prepared.signal_state);
        batch.sent_messages.push(SentMessage {
            chat: chat.clone(),
            message_id: id.to_owned(),
            message: message.plaintext.to_vec(),
            stanza: stanza.clone(),
            state: SentState::Pending,
            source: message.source.map(str::to_owned),
            created_at_ms: now_ms(),
        });
        self.store().commit_batch(batch).await?;
        crate::client::lock(&self.inner.send.in_flight).insert(id.to_owned());
        tracing::trace!(node = %prepared.node, "send");
        Ok(Committed {
            frame: stanza,
            id: id.to_owned(),
            pairwise: prepared.counts.pkmsg + prepared.counts.msg,
            skdm_devices: prepared.skdm_devices,
            sender_key_id,
            phash: prepared.phash,
        })
    }

    /// Writes a committed stanza and waits for the server's ack.
    async fn write_and_await_ack(
        &self,
        committed: &mut Committed,
        chat: &Jid,
    ) -> Result<MessageAck, SendError> {
        let result = self
            .send_frame_and_wait(
                std::mem::take(&mut committed.frame),
                &committed.id,
                self.inner.config.iq_timeout,
            )
            .await;
        crate::client::lock(&self.inner.send.in_flight).remove(&committed.id);
        match result {
            Ok(node) => Ok(MessageAck::parse(&node)),
            Err(super::IqError::NotConnected) => Err(SendError::Failed(format!(
                "not connected when writing message {} to {chat}; it is stored and will be sent after reconnecting",
                committed.id
            ))),
            Err(e) => Err(SendError::Failed(format!(
                "{e}; message {} to {chat} is stored and will be sent again after reconnecting",
                committed.id
            ))),
        }
    }

    /// After the server's ack of a group message: the devices that got our sender key
    /// have it (our own other devices included), the message is Acked.
    async fn after_group_ack(&self, group: &Jid, committed: &Committed) -> Result<(), SendError> {
        // Our own other devices are remembered like everyone else's (as Baileys does;
        // whatsapp-rust re-sends to them every time), so a warm send carries no SKDM at
        // all; one of ours that lost the key asks again with a retry receipt, which
        // marks it as lacking the key.
        let holders: Vec<Jid> = committed.skdm_devices.clone();
        let mut batch = StoreBatch {
            sent_states: vec![SentStateUpdate {
                chat: group.clone(),
                message_id: committed.id.clone(),
                state: SentState::Acked,
            }],
            ..StoreBatch::default()
        };
        let mut caches = self.inner.send.caches.lock().await;
        // Only while the fan-out still uses the key the SKDMs carried (a rotation or an
        // invalidation meanwhile makes the marks meaningless: the next send redoes them).
        if let Some(f) = caches.groups.get_mut(group)
            && f.sender_key_id() == committed.sender_key_id
            && !holders.is_empty()
        {
            f.mark_has_sender_key(holders.iter());
            batch
                .sender_key_memory
                .push(SenderKeyMemoryUpdate::MarkHas {
                    group: group.clone(),
                    devices: holders,
                });
        }
        self.store().commit_batch(batch).await?;
        Ok(())
    }

    /// A message the server answered with an error will not be delivered: it is
    /// stored as `Refused` with the code, and not resent after reconnecting.
    async fn mark_refused(&self, chat: &Jid, id: &str, code: u16) {
        let batch = StoreBatch {
            sent_states: vec![SentStateUpdate {
                chat: chat.clone(),
                message_id: id.to_owned(),
                state: SentState::Refused { code },
            }],
            ..StoreBatch::default()
        };
        if let Err(e) = self.store().commit_batch(batch).await {
            tracing::warn!(error = %e, %chat, id, "could not record the server's refusal");
        }
    }

    /// Drops the cached metadata of `group`, the cached device lists of its members and
    /// its in-memory fan-out state, so the next send asks the server again.
    pub(crate) async fn invalidate_group(&self, group: &Jid) -> Result<(), SendError> {
        let store = self.store();
        let members: Vec<Jid> = store
            .load_group(group)
            .await?
            .map(|g| g.participants.into_iter().map(|p| p.jid).collect())
            .unwrap_or_default();
        let mut caches = self.inner.send.caches.lock().await;
        caches.epoch = caches.epoch.wrapping_add(1);
        let mut users: Vec<Jid> = members;
        if let Some(f) = caches.groups.remove(group) {
            users.extend(f.devices().iter().map(Jid::to_non_ad));
        }
        users.sort();
        users.dedup();
        store
            .commit_batch(StoreBatch {
                removed_groups: vec![group.clone()],
                removed_device_lists: users,
                ..StoreBatch::default()
            })
            .await?;
        Ok(())
    }

    /// Our sending device in a group addressed by `mode`.
    pub(crate) fn own_sender(
        creds: &DeviceCredentials,
        mode: AddressingMode,
    ) -> Result<Jid, SendError> {
        match mode {
            AddressingMode::Lid => creds.lid.clone().ok_or_else(|| {
                SendError::Rejected(
                    "our own LID is not known yet (it comes with the login success)".into(),
                )
            }),
            AddressingMode::Pn => creds
                .pn
                .clone()
                .ok_or_else(|| SendError::Rejected("this device is not paired".into())),
        }
    }

    /// A new fan-out state for `group` from its metadata and every member's devices
    /// (own user included).
    async fn build_group_fanout(
        &self,
        group: &Jid,
        creds: &DeviceCredentials,
        refresh: bool,
    ) -> Result<GroupFanout, SendError> {
        let (meta, sender, lists) = self.describe_group(group, creds, refresh).await?;
        let devices = lists
            .iter()
            .flat_map(|l| super::usync::fanout_devices(l, true));
        Ok(GroupFanout::new(
            group.clone(),
            meta.addressing_mode,
            sender,
            devices,
        )?)
    }

    /// The group's metadata, our sending device in its addressing, and the device
    /// lists of every member and of ourselves: from the store's caches, the missing
    /// parts (all of them when `refresh`) queried and cached.
    async fn describe_group(
        &self,
        group: &Jid,
        creds: &DeviceCredentials,
        refresh: bool,
    ) -> Result<(GroupMetadata, Jid, Vec<DeviceList>), SendError> {
        let meta = self.resolve_group(group, refresh).await?;
        let sender = Self::own_sender(creds, meta.addressing_mode)?;
        let own_user = sender.to_non_ad();
        let mut users: Vec<Jid> = meta.participants.iter().map(|p| p.jid.clone()).collect();
        if !users.contains(&own_user) {
            users.push(own_user);
        }
        let lists = self.resolve_device_lists(&users, refresh).await?;
        Ok((meta, sender, lists))
    }

    /// The 1:1 path.
    async fn send_direct(
        &self,
        peer: &Jid,
        mut message: OutgoingMessage,
        creds: &DeviceCredentials,
    ) -> Result<SendReceipt, SendError> {
        let id = message
            .id
            .take()
            .unwrap_or_else(|| self.new_message_id(creds));
        // Address the peer by LID when we know it, as WhatsApp's clients do.
        let chat = if peer.is_pn() {
            self.store()
                .lid_for_pn(peer)
                .await?
                .unwrap_or_else(|| peer.clone())
        } else {
            peer.clone()
        };
        let mode = if chat.is_lid() {
            AddressingMode::Lid
        } else {
            AddressingMode::Pn
        };
        let sender = Self::own_sender(creds, mode)?;
        let own_users: Vec<Jid> = creds
            .pn
            .iter()
            .chain(&creds.lid)
            .map(Jid::to_non_ad)
            .collect();
        let plaintext = message.message.encode_to_vec();
        let mut committed = {
            let _caches = self.inner.send.caches.lock().await;
            let lists = self
                .resolve_device_lists(&[chat.clone(), sender.to_non_ad()], false)
                .await?;
            if !lists.iter().any(|l| l.user == chat) {
                return Err(SendError::Rejected(format!(
                    "{chat} has no devices (not on WhatsApp?)"
                )));
            }
            let devices: Vec<Jid> = lists
                .iter()
                .flat_map(|l| super::usync::fanout_devices(l, false))
                .filter(|d| *d != sender)
                .collect();
            let (targets, _stale) = self.pairwise_targets(&devices).await?;
            let prepared = prepare_direct_send(
                &creds.identity,
                DirectSend {
                    chat: &chat,
                    sender: &sender,
                    own_users: &own_users,
                    message_id: &id,
                    message: &message.message,
                    device_identity: creds.account.as_deref().unwrap_or_default(),
                    targets,
                },
                &mut OsRng,
            )?;
            let record = MessageRecord {
                id: &id,
                message: &message.message,
                plaintext: &plaintext,
                source: message.source.as_deref(),
            };
            self.commit_prepared(
                prepared,
                std::mem::take(&mut message.batch),
                &chat,
                record,
                None,
            )
            .await?
        };
        let ack = self.write_and_await_ack(&mut committed, &chat).await?;
        if ack.phash.is_some() && ack.phash != committed.phash {
            let users = vec![chat.clone(), sender.to_non_ad()];
            self.store().delete_device_lists(&users).await?;
        }
        match ack.error {
            None => {
                self.store()
                    .commit_batch(StoreBatch {
                        sent_states: vec![SentStateUpdate {
                            chat: chat.clone(),
                            message_id: id.clone(),
                            state: SentState::Acked,
                        }],
                        ..StoreBatch::default()
                    })
                    .await?;
                Ok(SendReceipt {
                    message_id: id,
                    server_time: ack.t.unwrap_or_else(|| now_ms() / 1000),
                    pairwise_devices: committed.pairwise,
                })
            }
            Some(code) => {
                self.mark_refused(&chat, &id, code).await;
                Err(SendError::ServerError { id, code })
            }
        }
    }
}

/// Times a send describes its group without the lock while notifications keep
/// changing the caches; after that it asks again under the lock.
const MAX_DESCRIBE_ROUNDS: usize = 3;

/// Estimated fan-out cost (µs) from which a group send is prepared on tokio's blocking
/// pool instead of the async worker (see [`estimated_fanout_micros`]). A cold send to 3,000 devices takes ~0.4 s of CPU, which would stall
/// every task on that worker (on a current-thread runtime, the connection's reader and
/// keepalive too).
const BLOCKING_PREPARE_MICROS: usize = 1_000;

/// [`prepare_group_send`] on owned values: inline for a small fan-out (a warm send has
/// none at all), else on the blocking pool. Returns the fan-out state (`None` when the
/// blocking task died) and the prepared send with the advanced sender-key record.
async fn prepare_group_send_owned(
    fanout: GroupFanout,
    mut record: SenderKeyRecord,
    identity: &LocalIdentity,
    device_identity: &[u8],
    id: &str,
    message: &e2e::Message,
    targets: Vec<PairwiseTarget>,
) -> (
    Option<GroupFanout>,
    Result<(PreparedSend, SenderKeyRecord), SendError>,
) {
    if estimated_fanout_micros(&targets) < BLOCKING_PREPARE_MICROS {
        let prepared = prepare_group_send(
            &fanout,
            identity,
            &mut record,
            GroupSend {
                message_id: id,
                message,
                device_identity,
                targets,
            },
            &mut OsRng,
        );
        return (
            Some(fanout),
            prepared.map(|p| (p, record)).map_err(SendError::from),
        );
    }
    let identity = identity.clone();
    let device_identity = device_identity.to_vec();
    let (id, message) = (id.to_owned(), message.clone());
    let task = tokio::task::spawn_blocking(move || {
        let prepared = prepare_group_send(
            &fanout,
            &identity,
            &mut record,
            GroupSend {
                message_id: &id,
                message: &message,
                device_identity: &device_identity,
                targets,
            },
            &mut OsRng,
        );
        (fanout, prepared.map(|p| (p, record)))
    });
    match task.await {
        Ok((fanout, prepared)) => (Some(fanout), prepared.map_err(SendError::from)),
        Err(e) => (
            None,
            Err(SendError::Prepare(format!(
                "the fan-out task did not finish: {e}"
            ))),
        ),
    }
}

/// `a` followed by `b` (both parts of one transaction).
fn merge_signal(
    mut a: crate::signal::store::SignalStateBatch,
    b: crate::signal::store::SignalStateBatch,
) -> crate::signal::store::SignalStateBatch {
    if a.is_empty() {
        return b;
    }
    a.sessions.extend(b.sessions);
    a.removed_sessions.extend(b.removed_sessions);
    a.sender_keys.extend(b.sender_keys);
    a.removed_sender_keys.extend(b.removed_sender_keys);
    a.identities.extend(b.identities);
    a.removed_prekeys.extend(b.removed_prekeys);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A big fan-out leaves the runtime free: on a current-thread runtime a ticker keeps
    /// running while 200 sessions are started (it could not tick at all if the X3DHs
    /// ran on the runtime's only thread).
    #[tokio::test(flavor = "current_thread")]
    async fn a_big_fan_out_is_prepared_off_the_runtime() {
        use crate::signal::{PreKeyBundle, SignedPreKeyRecord, generate_prekeys};
        let rng = &mut OsRng;
        let devices: Vec<(Jid, PreKeyBundle)> = (0..200u64)
            .map(|i| {
                let identity = LocalIdentity::generate(rng);
                let signed = SignedPreKeyRecord::generate(&identity.key_pair, 1, 0, rng);
                let prekey = generate_prekeys(1, 1, rng).remove(0);
                let device = Jid::new_ad(format!("{}", 200_000_000_000_000 + i), 1, "lid");
                let bundle = PreKeyBundle::from_local(&identity, 1, &signed, Some(&prekey));
                (device, bundle)
            })
            .collect();
        let mut fanout = GroupFanout::new(
            "120363040000000001@g.us".parse().unwrap(),
            AddressingMode::Lid,
            "100000000000000:7@lid".parse().unwrap(),
            devices.iter().map(|(d, _)| d.clone()),
        )
        .unwrap();
        let mut record = SenderKeyRecord::new();
        fanout.ensure_sender_key(&mut record, rng);
        let targets = devices
            .into_iter()
            .map(|(device, bundle)| PairwiseTarget {
                device,
                session: Default::default(),
                bundle: Some(bundle),
            })
            .collect();
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        let message = e2e::Message {
            conversation: Some("hello".into()),
            ..Default::default()
        };
        let our = LocalIdentity::generate(rng);
        // Let the ticker start, then count its ticks during the prepare only.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
        let started = std::time::Instant::now();
        let (fanout, prepared) =
            prepare_group_send_owned(fanout, record, &our, &[1; 8], "3EB0AA", &message, targets)
                .await;
        let took = started.elapsed();
        let during = ticks.load(std::sync::atomic::Ordering::Relaxed) - before;
        ticker.abort();
        let (prepared, _) = prepared.unwrap();
        assert!(fanout.is_some());
        assert_eq!(prepared.counts.new_sessions, 200);
        assert!(
            during >= 3,
            "the runtime ticked {during} times during a {took:?} prepare"
        );
    }

    #[test]
    fn ack_parsing() {
        let ack = Node::new("ack")
            .attr("class", "message")
            .attr("id", "X")
            .attr("t", "1700000000")
            .attr("error", "409")
            .attr("phash", "2:AAAAAAAA");
        assert_eq!(
            MessageAck::parse(&ack),
            MessageAck {
                error: Some(409),
                phash: Some("2:AAAAAAAA".into()),
                t: Some(1_700_000_000)
            }
        );
        let ok = MessageAck::parse(&Node::new("ack").attr("error", "x"));
        assert_eq!(ok.error, Some(0));
        assert_eq!(MessageAck::parse(&Node::new("ack")).error, None);
    }

    #[test]
    fn own_devices_are_recognised_in_both_namespaces() {
        let mut creds = DeviceCredentials::generate(&mut OsRng);
        creds.pn = Some(Jid::parse("5511:3@s.whatsapp.net").unwrap());
        creds.lid = Some(Jid::parse("111:3@lid").unwrap());
        for own in [
            "5511@s.whatsapp.net",
            "5511:7@s.whatsapp.net",
            "111:0@lid",
            "111:99@hosted.lid",
        ] {
            assert!(is_own(&Jid::parse(own).unwrap(), &creds), "{own}");
        }
        for other in ["5512@s.whatsapp.net", "111@s.whatsapp.net", "222:3@lid"] {
            assert!(!is_own(&Jid::parse(other).unwrap(), &creds), "{other}");
        }
    }

    #[test]
    fn errors_say_nothing_was_sent() {
        assert_eq!(
            SendError::Query("usync device lists: not connected".into()).to_string(),
            "usync device lists: not connected; nothing was sent"
        );
        let e: SendError = FanoutError::NoRecipients(Jid::parse("1@lid").unwrap()).into();
        assert!(matches!(e, SendError::Rejected(_)));
    }
}
