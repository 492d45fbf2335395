//! Keeping the send pipeline right between sends: notifications that change who a
//! message goes to (device lists, group membership, sender-key rotation), retry
//! receipts for our messages, and resending what was committed but never acked (after
//! a crash or a dropped connection).

use prost::Message as _;
use rand::rngs::OsRng;

use super::Client;
use super::fanout_notifications::{
    DeviceChangeKind, DeviceNotification, GroupChangeKind, GroupNotification,
    parse_device_notification, parse_group_notification,
};
use super::retry_receipt::{MAX_RETRY_COUNT, RetryReceipt, parse_retry_receipt};
use super::send::{MessageAck, SendError, is_own};
use crate::binary::{Node, unmarshal};
use crate::jid::Jid;
use crate::messaging::{PairwiseTarget, RetryResend, participant_hash, prepare_retry_resend};
use crate::proto::e2e;
use crate::signal::address::{ProtocolAddress, SenderKeyName};
use crate::signal::store::SignalStoreExt;
use crate::store::{
    DeviceEntry, DeviceList, GroupParticipant, LidPnMapping, ParticipantRole,
    SenderKeyMemoryUpdate, SentState, SentStateUpdate, StoreBatch, StoredSentMessage,
};

/// How many pending messages one reconnect resends at most.
pub const MAX_PENDING_RESEND: usize = 1_000;

/// What a retry receipt led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RetryOutcome {
    /// The message was re-encrypted for the device and sent.
    Resent,
    /// Refused: too many retries.
    TooManyRetries(u32),
    /// The message is not (or no longer) stored.
    UnknownMessage,
    /// Neither the receipt nor the server gave keys for a new session.
    NoKeys,
}

impl Client {
    /// Applies a `notification` of type `devices` or `w:gp2` to the device-list and
    /// group caches (and rotates our sender key of a group when a member left); other
    /// stanzas are ignored. Called by the stanza handler (a custom [`super::StanzaHandler`]
    /// should call it too), which acks the notification afterwards. Unreadable
    /// notifications are logged and change nothing.
    pub async fn handle_fanout_notification(&self, notification: &Node) {
        let result = match notification.attr_str("type") {
            Some("devices") => match parse_device_notification(notification) {
                Ok(n) => self.apply_device_notification(&n).await,
                Err(e) => Err(SendError::Query(e.to_string())),
            },
            Some("w:gp2") => match parse_group_notification(notification) {
                Ok(n) => self.apply_group_notification(&n).await,
                Err(e) => Err(SendError::Query(e.to_string())),
            },
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not apply a fan-out notification");
        }
    }

    /// Patches the cached device list of the user (and of its LID); drops it when the
    /// result's hash differs from the server's or the change is an `update`. Every
    /// in-memory group fan-out with devices of that user is dropped (rebuilt from the
    /// caches, with the persisted sender-key marks, by the next send).
    pub(crate) async fn apply_device_notification(
        &self,
        n: &DeviceNotification,
    ) -> Result<(), SendError> {
        let store = self.store();
        let mut users = vec![n.user.clone()];
        match &n.lid {
            Some(lid) => users.push(lid.clone()),
            // The same account in the other namespace (LID groups list LID devices).
            None => users.extend(store.alternate_jid(&n.user).await?),
        }
        let mut caches = self.inner.send.caches.lock().await;
        caches.epoch = caches.epoch.wrapping_add(1);
        let cached = store.load_device_lists(&users).await?;
        let mut batch = StoreBatch::default();
        if let Some(lid) = &n.lid
            && n.user.is_pn()
            && let Ok(m) = LidPnMapping::new(lid, &n.user)
        {
            batch.mappings.push(m);
        }
        for (user, list) in users.iter().zip(cached) {
            let Some(list) = list else { continue };
            match patch_device_list(list, n, user == &n.user) {
                Some(patched) => batch.device_lists.push(patched),
                None => batch.removed_device_lists.push(user.clone()),
            }
        }
        store.commit_batch(batch).await?;
        drop(caches);
        self.drop_fanouts_with_users(&users).await;
        Ok(())
    }

    /// Drops in-memory group fan-outs that contain a device of one of `users`.
    async fn drop_fanouts_with_users(&self, users: &[Jid]) {
        let mut caches = self.inner.send.caches.lock().await;
        caches.epoch = caches.epoch.wrapping_add(1);
        caches.groups.retain(|_, f| {
            !f.devices().iter().any(|d| {
                users
                    .iter()
                    .any(|u| u.user == d.user && u.server == d.server)
            })
        });
    }

    /// Membership changes: patch (or drop) the cached group metadata, store the LID↔PN
    /// pairs, drop the in-memory fan-out; on `remove`/`modify`, rotate our sender key:
    /// delete it and forget who had it, so the next send creates and distributes a new
    /// one that the departed member cannot read.
    pub(crate) async fn apply_group_notification(
        &self,
        n: &GroupNotification,
    ) -> Result<(), SendError> {
        if !n.changes_members() {
            return Ok(());
        }
        let store = self.store();
        let creds = self
            .credentials()
            .await
            .map_err(|e| SendError::Store(e.to_string()))?;
        let mut caches = self.inner.send.caches.lock().await;
        caches.epoch = caches.epoch.wrapping_add(1);
        let fanout = caches.groups.remove(&n.group);
        let mut batch = StoreBatch::default();
        for c in &n.changes {
            for p in &c.participants {
                let pair = match (&p.phone_number, &p.lid) {
                    (Some(pn), _) if p.jid.is_lid() => LidPnMapping::new(&p.jid, pn).ok(),
                    (_, Some(lid)) if p.jid.is_pn() => LidPnMapping::new(lid, &p.jid).ok(),
                    _ => None,
                };
                batch.mappings.extend(pair);
            }
        }
        if let Some(meta) = store.load_group(&n.group).await? {
            match patch_group(meta, n) {
                Some(patched) => batch.groups.push(patched),
                None => batch.removed_groups.push(n.group.clone()),
            }
        }
        if n.needs_rotation() {
            tracing::info!(group = %n.group, "member left or changed: rotating our sender key");
            let mut senders: Vec<Jid> = Vec::new();
            if let Some(f) = &fanout {
                senders.push(f.sender().clone());
            }
            if let Some(c) = &creds {
                senders.extend(c.pn.iter().chain(&c.lid).cloned());
            }
            senders.sort();
            senders.dedup();
            batch.signal.removed_sender_keys = senders
                .iter()
                .map(|s| SenderKeyName::new(&n.group, s))
                .collect();
            batch
                .sender_key_memory
                .push(SenderKeyMemoryUpdate::ClearGroup {
                    group: n.group.clone(),
                });
        }
        store.commit_batch(batch).await?;
        Ok(())
    }

    /// Answers a server `receipt type="retry"` for one of our messages: re-encrypts
    /// for that one device with the same id (a new session from the receipt's keys when
    /// given), and marks the device as lacking our sender key. Refuses (logs) at retry
    /// count 5, unknown messages and unreadable receipts. Called by the stanza handler
    /// (a custom [`super::StanzaHandler`] should call it too), which acks the receipt
    /// afterwards.
    pub async fn handle_retry_receipt(&self, receipt: &Node) {
        match parse_retry_receipt(receipt) {
            Ok(r) => match self.answer_retry(&r).await {
                Ok(outcome) => {
                    tracing::debug!(id = %r.message_id, device = %r.device, ?outcome, "retry receipt")
                }
                Err(e) => {
                    tracing::warn!(id = %r.message_id, device = %r.device, error = %e, "could not answer a retry receipt")
                }
            },
            Err(e) => tracing::warn!(error = %e, "unreadable retry receipt"),
        }
    }

    /// The retry itself (see [`handle_retry_receipt`](Self::handle_retry_receipt)).
    pub(crate) async fn answer_retry(&self, r: &RetryReceipt) -> Result<RetryOutcome, SendError> {
        if r.count >= MAX_RETRY_COUNT {
            return Ok(RetryOutcome::TooManyRetries(r.count));
        }
        let store = self.store();
        let creds = self
            .credentials()
            .await
            .map_err(|e| SendError::Store(e.to_string()))?
            .ok_or_else(|| SendError::Rejected("this device is not paired".into()))?;
        let Some(sent) = self.find_sent(&r.chat, &r.message_id).await? else {
            return Ok(RetryOutcome::UnknownMessage);
        };
        let chat = sent.sent.chat.clone();
        let Some(our_count) = store
            .bump_sent_retry(&chat, &r.message_id, &r.device)
            .await?
        else {
            return Ok(RetryOutcome::UnknownMessage);
        };
        if our_count > MAX_RETRY_COUNT {
            return Ok(RetryOutcome::TooManyRetries(our_count));
        }
        let message = e2e::Message::decode(sent.sent.message.as_slice()).map_err(|e| {
            SendError::Prepare(format!(
                "stored message {} does not decode: {e}",
                r.message_id
            ))
        })?;
        let mut caches = self.inner.send.caches.lock().await;
        let address = ProtocolAddress::from_jid(&r.device);
        let mut session = store.load_session_record(&address).await?;
        // A different registration id means the device was reinstalled: its old
        // session is useless.
        if session
            .current()
            .is_some_and(|s| s.remote_registration_id() != r.registration_id)
        {
            session = Default::default();
        }
        let bundle = match &r.keys {
            Some(k) => Some(k.bundle.clone()),
            None if !session.has_current_session() => {
                let fetched = self.fetch_bundles(std::slice::from_ref(&r.device)).await?;
                fetched.bundles.get(&r.device).map(|b| b.bundle.clone())
            }
            None => None,
        };
        if bundle.is_none() && !session.has_current_session() {
            return Ok(RetryOutcome::NoKeys);
        }
        let mode = if chat.is_group() {
            match store.load_group(&chat).await? {
                Some(g) => Some(g.addressing_mode),
                None => Some(if r.device.is_lid() {
                    crate::store::AddressingMode::Lid
                } else {
                    crate::store::AddressingMode::Pn
                }),
            }
        } else {
            None
        };
        let own_users: Vec<Jid> = creds
            .pn
            .iter()
            .chain(&creds.lid)
            .map(Jid::to_non_ad)
            .collect();
        let prepared = prepare_retry_resend(
            &creds.identity,
            RetryResend {
                chat: &chat,
                own_users: &own_users,
                addressing_mode: mode,
                message_id: &r.message_id,
                message: &message,
                retry_count: r.count,
                original_timestamp: r.message_time,
                device_identity: creds.account.as_deref().unwrap_or_default(),
                target: PairwiseTarget {
                    device: r.device.clone(),
                    session,
                    bundle,
                },
            },
            &mut OsRng,
        )?;
        let mut batch = StoreBatch::from_signal(prepared.signal_state);
        if chat.is_group() && !is_own(&r.device, &creds) {
            // The device lacks our sender key: the next group message carries it again.
            // A primary (device 0) that lost it takes its companions along, as in
            // WhatsApp Web (a companion counts as having the key only with its primary).
            let mut forget = vec![r.device.clone()];
            if let Some(f) = caches.groups.get_mut(&chat) {
                if r.device.device == 0 {
                    forget.extend(
                        f.devices()
                            .iter()
                            .filter(|d| {
                                d.user == r.device.user
                                    && d.server == r.device.server
                                    && d.device != 0
                            })
                            .cloned(),
                    );
                }
                f.forget_sender_key(&r.device);
            }
            batch.sender_key_memory.push(SenderKeyMemoryUpdate::Forget {
                group: chat.clone(),
                devices: forget,
            });
        }
        store.commit_batch(batch).await?;
        drop(caches);
        self.send_node(&prepared.node)
            .await
            .map_err(|e| SendError::Failed(e.to_string()))?;
        Ok(RetryOutcome::Resent)
    }

    /// The sent message `id` in `chat`, or in the chat's LID/PN alternate (1:1).
    async fn find_sent(
        &self,
        chat: &Jid,
        id: &str,
    ) -> Result<Option<StoredSentMessage>, SendError> {
        let store = self.store();
        if let Some(m) = store.load_sent_message(chat, id).await? {
            return Ok(Some(m));
        }
        if !chat.is_group()
            && let Some(alt) = store.alternate_jid(chat).await?
        {
            return Ok(store.load_sent_message(&alt, id).await?);
        }
        Ok(None)
    }

    /// After (re)login: sends every message that was committed but never acked again,
    /// unchanged (same id, same ciphertext: nothing is re-encrypted, so no key is used
    /// twice and members see one message). Messages still being sent by a running
    /// `send_message` are left to it. Returns how many the server acked.
    pub async fn resend_pending_messages(&self) -> Result<usize, SendError> {
        let pending = self
            .store()
            .pending_sent_messages(MAX_PENDING_RESEND)
            .await?;
        let mut acked = 0;
        for m in pending {
            let id = &m.sent.message_id;
            if crate::client::lock(&self.inner.send.in_flight).contains(id) {
                continue;
            }
            // Checked before it goes out again; written as stored (the same bytes).
            if let Err(e) = unmarshal(&m.sent.stanza) {
                tracing::warn!(%id, error = %e, "stored stanza does not decode; not resending it");
                continue;
            }
            tracing::info!(chat = %m.sent.chat, %id, "resending a message the server never acked");
            let ack = match self
                .send_frame_and_wait(m.sent.stanza.clone(), id, self.inner.config.iq_timeout)
                .await
            {
                Ok(a) => MessageAck::parse(&a),
                Err(e) => {
                    // Still pending: the next login tries again.
                    return Err(SendError::Failed(format!("resending {id}: {e}")));
                }
            };
            if let Some(code) = ack.error {
                if ack.phash.is_some() && m.sent.chat.is_group() {
                    // The members changed while the message waited: encrypt the stored
                    // content again for the current members, same id (new sender-key
                    // iteration and ratchet steps: no key is used twice).
                    tracing::info!(%id, code, "members changed since the message was prepared; preparing it again");
                    self.invalidate_group(&m.sent.chat).await?;
                    let message = e2e::Message::decode(m.sent.message.as_slice()).map_err(|e| {
                        SendError::Prepare(format!("stored message {id} does not decode: {e}"))
                    })?;
                    let again = super::send::OutgoingMessage {
                        message,
                        id: Some(id.clone()),
                        batch: StoreBatch::default(),
                        source: m.sent.source.clone(),
                    };
                    match self.send_message(&m.sent.chat, again).await {
                        Ok(_) => acked += 1,
                        Err(e) => {
                            tracing::warn!(%id, error = %e, "the prepared-again message failed")
                        }
                    }
                    continue;
                }
                tracing::warn!(%id, code, "the server refused a resent message");
            } else {
                acked += 1;
            }
            let state = match ack.error {
                Some(code) => SentState::Refused { code },
                None => SentState::Acked,
            };
            self.store()
                .commit_batch(StoreBatch {
                    sent_states: vec![SentStateUpdate {
                        chat: m.sent.chat.clone(),
                        message_id: id.clone(),
                        state,
                    }],
                    ..StoreBatch::default()
                })
                .await?;
        }
        Ok(acked)
    }
}

/// `list` with the notification's changes applied; `None` when the cache must be
/// dropped instead (an `update`, an unknown device, or a result whose hash differs from
/// the server's `device_hash` — compared only in the notification's own namespace).
pub(crate) fn patch_device_list(
    mut list: DeviceList,
    n: &DeviceNotification,
    own_namespace: bool,
) -> Option<DeviceList> {
    let mut last_hash = None;
    for c in &n.changes {
        let device = c.device.as_ref()?;
        match c.kind {
            DeviceChangeKind::Update => return None,
            DeviceChangeKind::Add => {
                if !list.devices.iter().any(|d| d.id == device.device) {
                    list.devices.push(DeviceEntry {
                        id: device.device,
                        key_index: c.key_index,
                        hosted: device.is_hosted(),
                    });
                }
            }
            DeviceChangeKind::Remove => list.devices.retain(|d| d.id != device.device),
        }
        last_hash = c.device_hash.clone();
    }
    list.devices.sort_by_key(|d| d.id);
    if own_namespace
        && let Some(h) = last_hash
        && participant_hash(&list.device_jids()) != h
    {
        return None;
    }
    list.hash = None;
    Some(list)
}

/// `meta` with the membership changes applied; `None` when it must be refetched
/// (`modify`: a member changed identity).
pub(crate) fn patch_group(
    mut meta: crate::store::GroupMetadata,
    n: &GroupNotification,
) -> Option<crate::store::GroupMetadata> {
    for c in &n.changes {
        match c.kind {
            GroupChangeKind::Modify => return None,
            GroupChangeKind::Add => {
                for p in &c.participants {
                    if p.jid.is_lid() != (meta.addressing_mode == crate::store::AddressingMode::Lid)
                    {
                        return None;
                    }
                    if !meta.participants.iter().any(|x| x.jid == p.jid) {
                        meta.participants.push(GroupParticipant {
                            jid: p.jid.clone(),
                            phone_number: p.phone_number.clone(),
                            lid: p.lid.clone(),
                            role: ParticipantRole::Member,
                        });
                    }
                }
            }
            GroupChangeKind::Remove => {
                meta.participants
                    .retain(|x| !c.participants.iter().any(|p| p.jid == x.jid));
            }
            GroupChangeKind::Promote | GroupChangeKind::Demote => {
                let role = if c.kind == GroupChangeKind::Promote {
                    ParticipantRole::Admin
                } else {
                    ParticipantRole::Member
                };
                for x in &mut meta.participants {
                    if c.participants.iter().any(|p| p.jid == x.jid) {
                        x.role = role;
                    }
                }
            }
            GroupChangeKind::Other(_) => {}
        }
    }
    meta.phash = None;
    Some(meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::fanout_notifications::{ChangedParticipant, DeviceChange, GroupChange};
    use crate::store::{AddressingMode, GroupMetadata};

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    fn list(ids: &[u16]) -> DeviceList {
        DeviceList {
            user: jid("5511@s.whatsapp.net"),
            devices: ids
                .iter()
                .map(|&id| DeviceEntry {
                    id,
                    key_index: (id != 0).then_some(1),
                    hosted: false,
                })
                .collect(),
            hash: Some("2:old".into()),
            key_index_ts: None,
            fetched_at_ms: 0,
        }
    }

    fn change(kind: DeviceChangeKind, dev: u16, hash: Option<String>) -> DeviceChange {
        DeviceChange {
            kind,
            device: Some(jid("5511@s.whatsapp.net").with_device(dev)),
            device_lid: None,
            key_index: Some(4),
            device_hash: hash,
        }
    }

    #[test]
    fn device_lists_are_patched_and_checked_against_the_server_hash() {
        let after: Vec<Jid> = [0u16, 2, 5]
            .iter()
            .map(|&d| jid("5511@s.whatsapp.net").with_device(d))
            .collect();
        let good = participant_hash(&after);
        let n = DeviceNotification {
            user: jid("5511@s.whatsapp.net"),
            lid: None,
            changes: vec![change(DeviceChangeKind::Add, 5, Some(good.clone()))],
        };
        let patched = patch_device_list(list(&[0, 2]), &n, true).unwrap();
        assert_eq!(
            patched.devices.iter().map(|d| d.id).collect::<Vec<_>>(),
            [0, 2, 5]
        );
        assert_eq!(patched.devices[2].key_index, Some(4));
        // A hash that does not match what we computed drops the cache.
        let n_bad = DeviceNotification {
            changes: vec![change(DeviceChangeKind::Add, 5, Some("2:AAAAAAAA".into()))],
            ..n.clone()
        };
        assert!(patch_device_list(list(&[0, 2]), &n_bad, true).is_none());
        // ... but is not compared in the other namespace.
        assert!(patch_device_list(list(&[0, 2]), &n_bad, false).is_some());
        let rm = DeviceNotification {
            changes: vec![change(DeviceChangeKind::Remove, 2, None)],
            ..n.clone()
        };
        assert_eq!(
            patch_device_list(list(&[0, 2]), &rm, true)
                .unwrap()
                .devices
                .len(),
            1
        );
        let upd = DeviceNotification {
            changes: vec![change(DeviceChangeKind::Update, 2, None)],
            ..n
        };
        assert!(patch_device_list(list(&[0, 2]), &upd, true).is_none());
    }

    #[test]
    fn group_metadata_follows_membership() {
        let p = |j: &str| GroupParticipant {
            jid: jid(j),
            phone_number: None,
            lid: None,
            role: ParticipantRole::Member,
        };
        let meta = GroupMetadata {
            group: jid("1203@g.us"),
            addressing_mode: AddressingMode::Lid,
            participants: vec![p("1@lid"), p("2@lid")],
            phash: Some("2:x".into()),
            subject: None,
            fetched_at_ms: 0,
        };
        let cp = |j: &str| ChangedParticipant {
            jid: jid(j),
            phone_number: None,
            lid: None,
        };
        let n = |kind, ps: Vec<ChangedParticipant>| GroupNotification {
            group: jid("1203@g.us"),
            actor: None,
            changes: vec![GroupChange {
                kind,
                participants: ps,
            }],
        };
        let added = patch_group(meta.clone(), &n(GroupChangeKind::Add, vec![cp("3@lid")])).unwrap();
        assert_eq!(added.participants.len(), 3);
        assert_eq!(added.phash, None);
        let removed =
            patch_group(meta.clone(), &n(GroupChangeKind::Remove, vec![cp("1@lid")])).unwrap();
        assert_eq!(removed.participants, vec![p("2@lid")]);
        let promoted = patch_group(
            meta.clone(),
            &n(GroupChangeKind::Promote, vec![cp("2@lid")]),
        )
        .unwrap();
        assert_eq!(promoted.participants[1].role, ParticipantRole::Admin);
        assert!(
            patch_group(meta.clone(), &n(GroupChangeKind::Modify, vec![cp("2@lid")])).is_none()
        );
        // A PN participant added to a LID group: refetch instead of guessing.
        assert!(
            patch_group(
                meta,
                &n(GroupChangeKind::Add, vec![cp("55@s.whatsapp.net")])
            )
            .is_none()
        );
    }
}
