//! [`StoreBatch`]: everything one send or one received message changes, applied by
//! [`Store::commit_batch`](super::Store::commit_batch) in one transaction.

use std::collections::HashSet;

use super::credentials::DeviceCredentials;
use super::error::{Error, Result};
use super::records::{
    DecryptedMessage, DeviceList, EventRecord, GroupMetadata, LidPnMapping, MessageSecretRecord,
    RsvpRecord, SenderKeyMemoryUpdate, SentMessage, SentStateUpdate, WebhookJob, check_group,
    check_jid, check_key, check_message_id, check_user,
};
use crate::signal::identity::MAX_PREKEY_ID;
use crate::signal::store::{IdentityChange, SignalStateBatch};

/// All changes of one operation, applied atomically: either every part is stored or,
/// on any error, none is.
///
/// The parts are applied in field order; within a part, in vector order (so a later
/// entry for the same key wins, and an RSVP older than the stored one is skipped).
/// Puts come before the matching removals (`device_lists` before
/// `removed_device_lists`, prekeys before `signal.removed_prekeys`).
///
/// `Debug` shows only how many entries each part has.
#[derive(Clone, Default)]
pub struct StoreBatch {
    /// Device credentials to store (replacing the stored ones).
    pub credentials: Option<DeviceCredentials>,
    /// New one-time prekeys (id, serialized record), stored as not yet uploaded.
    pub prekeys: Vec<(u32, Vec<u8>)>,
    /// Prekeys the server accepted (marked uploaded; absent ids are ignored).
    pub uploaded_prekeys: Vec<u32>,
    /// Signed prekeys to store (id, serialized record).
    pub signed_prekeys: Vec<(u32, Vec<u8>)>,
    /// Sessions, sender keys, identities and consumed prekeys.
    pub signal: SignalStateBatch,
    /// LID↔PN mappings learned (a new mapping of either side replaces the old one).
    pub mappings: Vec<LidPnMapping>,
    /// Device lists to cache (replacing each user's list).
    pub device_lists: Vec<DeviceList>,
    /// Users whose cached device list is dropped.
    pub removed_device_lists: Vec<crate::jid::Jid>,
    /// Group metadata to cache (replacing each group's).
    pub groups: Vec<GroupMetadata>,
    /// Groups whose cached metadata is dropped.
    pub removed_groups: Vec<crate::jid::Jid>,
    /// Changes to who holds our sender keys.
    pub sender_key_memory: Vec<SenderKeyMemoryUpdate>,
    /// Message secrets to keep.
    pub secrets: Vec<MessageSecretRecord>,
    /// Event cards seen or sent (an existing one is replaced: edits).
    pub events: Vec<EventRecord>,
    /// RSVPs; each replaces the voter's stored answer unless that one is newer.
    pub rsvps: Vec<RsvpRecord>,
    /// Sent messages to keep (replacing one with the same chat and id; retry counts
    /// are kept).
    pub sent_messages: Vec<SentMessage>,
    /// State changes of sent messages (unknown ones are ignored).
    pub sent_states: Vec<SentStateUpdate>,
    /// Received plaintexts by ciphertext hash.
    pub decrypted: Vec<DecryptedMessage>,
    /// Webhook deliveries to queue (replacing a job with the same id).
    pub webhooks: Vec<WebhookJob>,
}

impl StoreBatch {
    /// An empty batch.
    pub fn new() -> Self {
        StoreBatch::default()
    }

    /// A batch with only Signal changes.
    pub fn from_signal(signal: SignalStateBatch) -> Self {
        StoreBatch {
            signal,
            ..StoreBatch::default()
        }
    }

    /// True when the batch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.credentials.is_none()
            && self.prekeys.is_empty()
            && self.uploaded_prekeys.is_empty()
            && self.signed_prekeys.is_empty()
            && self.signal.is_empty()
            && self.mappings.is_empty()
            && self.device_lists.is_empty()
            && self.removed_device_lists.is_empty()
            && self.groups.is_empty()
            && self.removed_groups.is_empty()
            && self.sender_key_memory.is_empty()
            && self.secrets.is_empty()
            && self.events.is_empty()
            && self.rsvps.is_empty()
            && self.sent_messages.is_empty()
            && self.sent_states.is_empty()
            && self.decrypted.is_empty()
            && self.webhooks.is_empty()
    }

    /// Checks every entry and brings user-level keys to user level (drops devices from
    /// voters, creators, secret senders and device-list users; sorts device entries).
    /// Both backends call this first, so they store exactly the same data and refuse
    /// exactly the same batches, before touching anything.
    pub(crate) fn prepare(mut self) -> Result<Self> {
        if let Some(c) = &self.credentials {
            c.validate()?;
        }
        for (id, _) in self.prekeys.iter().chain(&self.signed_prekeys) {
            check_prekey_id(*id)?;
        }
        for list in &mut self.device_lists {
            check_user("device list", &list.user)?;
            list.user = list.user.to_non_ad();
            list.devices.sort_by_key(|d| d.id);
            if list.devices.windows(2).any(|w| w[0].id == w[1].id) {
                return Err(Error::invalid(
                    "device list",
                    format!("device ids of {} are not unique", list.user),
                ));
            }
        }
        for user in &mut self.removed_device_lists {
            *user = user.to_non_ad();
        }
        for group in &self.groups {
            check_group("group metadata", &group.group)?;
            let mut seen = HashSet::with_capacity(group.participants.len());
            for p in &group.participants {
                check_user("group participant", &p.jid)?;
                for alt in p.phone_number.iter().chain(&p.lid) {
                    check_user("group participant", alt)?;
                }
                if !seen.insert(&p.jid) {
                    return Err(Error::invalid(
                        "group metadata",
                        format!("{} lists {} twice", group.group, p.jid),
                    ));
                }
            }
        }
        for update in &self.sender_key_memory {
            match update {
                SenderKeyMemoryUpdate::MarkHas { group, devices }
                | SenderKeyMemoryUpdate::Forget { group, devices } => {
                    check_group("sender-key memory", group)?;
                    for d in devices {
                        check_user("sender-key memory device", d)?;
                    }
                }
                SenderKeyMemoryUpdate::ClearGroup { group } => {
                    check_group("sender-key memory", group)?
                }
            }
        }
        for s in &mut self.secrets {
            check_message_id("message secret", &s.message_id)?;
            check_jid("message secret chat", &s.chat)?;
            check_user("message secret sender", &s.sender)?;
            s.sender = s.sender.to_non_ad();
        }
        for e in &mut self.events {
            check_message_id("event card", &e.message_id)?;
            check_jid("event chat", &e.chat)?;
            check_user("event creator", &e.creator)?;
            e.creator = e.creator.to_non_ad();
        }
        for r in &mut self.rsvps {
            check_message_id("RSVP", &r.event_id)?;
            check_jid("RSVP chat", &r.chat)?;
            check_user("RSVP voter", &r.voter)?;
            r.voter = r.voter.to_non_ad();
            if r.extra_guests > i32::MAX as u32 {
                return Err(Error::invalid(
                    "RSVP",
                    format!("{} extra guests is beyond int32", r.extra_guests),
                ));
            }
        }
        for m in &self.sent_messages {
            check_message_id("sent message", &m.message_id)?;
            check_jid("sent message chat", &m.chat)?;
        }
        for s in &self.sent_states {
            check_message_id("sent message state", &s.message_id)?;
        }
        for w in &self.webhooks {
            check_key("webhook job", "id", &w.id)?;
            check_key("webhook job", "instance", &w.instance)?;
        }
        Ok(self)
    }
}

pub(crate) fn check_prekey_id(id: u32) -> Result<()> {
    if id > MAX_PREKEY_ID {
        return Err(Error::invalid(
            "prekey",
            format!("id {id} is not 24-bit (max {MAX_PREKEY_ID})"),
        ));
    }
    Ok(())
}

impl std::fmt::Debug for StoreBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.signal;
        f.debug_struct("StoreBatch")
            .field("credentials", &self.credentials.is_some())
            .field("prekeys", &self.prekeys.len())
            .field("uploaded_prekeys", &self.uploaded_prekeys.len())
            .field("signed_prekeys", &self.signed_prekeys.len())
            .field("sessions", &s.sessions.len())
            .field("removed_sessions", &s.removed_sessions.len())
            .field("sender_keys", &s.sender_keys.len())
            .field("removed_sender_keys", &s.removed_sender_keys.len())
            .field("identities", &s.identities.len())
            .field("removed_prekeys", &s.removed_prekeys.len())
            .field("mappings", &self.mappings.len())
            .field("device_lists", &self.device_lists.len())
            .field("removed_device_lists", &self.removed_device_lists.len())
            .field("groups", &self.groups.len())
            .field("removed_groups", &self.removed_groups.len())
            .field("sender_key_memory", &self.sender_key_memory.len())
            .field("secrets", &self.secrets.len())
            .field("events", &self.events.len())
            .field("rsvps", &self.rsvps.len())
            .field("sent_messages", &self.sent_messages.len())
            .field("sent_states", &self.sent_states.len())
            .field("decrypted", &self.decrypted.len())
            .field("webhooks", &self.webhooks.len())
            .finish()
    }
}

/// What a commit reported.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct CommitOutcome {
    /// The outcome of each entry of `signal.identities`, in order.
    pub identity_changes: Vec<IdentityChange>,
    /// For each entry of `rsvps`, in order: true when it became the voter's latest
    /// answer, false when a newer one was already stored.
    pub rsvps_applied: Vec<bool>,
}
