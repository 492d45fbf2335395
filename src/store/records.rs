//! What the store keeps besides credentials and Signal records: LID↔PN mappings,
//! device-list and group caches, sender-key memory, message secrets, event cards, RSVPs,
//! sent messages, the decrypted-message buffer and the gateway's webhook outbox and
//! idempotency keys.
//!
//! Every type is plain data; constructors and [`validate`](StoreBatch) checks keep the
//! two backends storing exactly the same thing.

use super::credentials::SecretBytes;
use super::error::{Error, Result};
use crate::jid::{DEFAULT_USER_SERVER, HIDDEN_USER_SERVER, HOSTED_LID_SERVER, HOSTED_SERVER, Jid};

/// Longest message id accepted (WhatsApp's are 16–32 characters).
pub const MAX_MESSAGE_ID_LEN: usize = 128;
/// Longest webhook id, instance name or idempotency key accepted.
pub const MAX_KEY_LEN: usize = 256;

/// One account's LID and phone number, at user level (devices are the same under both).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct LidPnMapping {
    lid_user: String,
    pn_user: String,
}

impl LidPnMapping {
    /// A mapping from a `@lid` JID and a `@s.whatsapp.net` JID (device parts are
    /// dropped). Refuses any other servers and empty users.
    pub fn new(lid: &Jid, pn: &Jid) -> Result<Self> {
        let what = "LID↔PN mapping";
        if lid.server != HIDDEN_USER_SERVER || lid.user.is_empty() {
            return Err(Error::invalid(what, format!("{lid} is not a @lid user")));
        }
        if pn.server != DEFAULT_USER_SERVER || pn.user.is_empty() {
            return Err(Error::invalid(
                what,
                format!("{pn} is not a @s.whatsapp.net user"),
            ));
        }
        Ok(LidPnMapping {
            lid_user: lid.user.clone(),
            pn_user: pn.user.clone(),
        })
    }

    /// The LID user JID (`<digits>@lid`).
    pub fn lid(&self) -> Jid {
        Jid::lid_user(&self.lid_user)
    }

    /// The phone-number user JID (`<digits>@s.whatsapp.net`).
    pub fn pn(&self) -> Jid {
        Jid::pn_user(&self.pn_user)
    }

    pub(crate) fn lid_user(&self) -> &str {
        &self.lid_user
    }

    pub(crate) fn pn_user(&self) -> &str {
        &self.pn_user
    }
}

/// Which side of a LID↔PN mapping a JID is on, and the server of the other side.
pub(crate) fn mapping_side(jid: &Jid) -> Option<(bool, &'static str)> {
    match jid.server.as_ref() {
        HIDDEN_USER_SERVER => Some((true, DEFAULT_USER_SERVER)),
        HOSTED_LID_SERVER => Some((true, HOSTED_SERVER)),
        DEFAULT_USER_SERVER => Some((false, HIDDEN_USER_SERVER)),
        HOSTED_SERVER => Some((false, HOSTED_LID_SERVER)),
        _ => None,
    }
}

/// `jid` moved to the other namespace: same device, user `other_user`.
pub(crate) fn swap_namespace(jid: &Jid, other_user: &str, other_server: &str) -> Jid {
    Jid::new_ad(other_user, jid.device, other_server)
}

/// One device in a user's device list (from usync `<device id key-index is_hosted>`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DeviceEntry {
    /// Device number (0 = primary phone).
    pub id: u16,
    /// The `key-index` attribute, absent for device 0.
    pub key_index: Option<u32>,
    /// `is_hosted="true"`: a business-hosted device (`@hosted` / `@hosted.lid`).
    pub hosted: bool,
}

/// A cached device list of one user.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DeviceList {
    /// The user (stored without device).
    pub user: Jid,
    /// The devices, stored sorted by id; ids are unique.
    pub devices: Vec<DeviceEntry>,
    /// The `device-list hash` (`2:…`) the server sent, if any.
    pub hash: Option<String>,
    /// The `key-index-list ts` the server sent (unix seconds), if any.
    pub key_index_ts: Option<i64>,
    /// When we fetched it (unix ms).
    pub fetched_at_ms: i64,
}

impl DeviceList {
    /// The device JIDs: hosted devices under `@hosted` (`@hosted.lid` for LID users).
    pub fn device_jids(&self) -> Vec<Jid> {
        self.devices
            .iter()
            .map(|d| {
                let server = match (d.hosted, self.user.is_lid()) {
                    (false, _) => self.user.server.as_ref(),
                    (true, true) => HOSTED_LID_SERVER,
                    (true, false) => HOSTED_SERVER,
                };
                Jid::new_ad(&self.user.user, d.id, server)
            })
            .collect()
    }
}

/// How a group addresses its members.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AddressingMode {
    /// Phone numbers (`addressing_mode="pn"`).
    Pn,
    /// LIDs (`addressing_mode="lid"`).
    Lid,
}

impl AddressingMode {
    /// The attribute value: `pn` or `lid`.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressingMode::Pn => "pn",
            AddressingMode::Lid => "lid",
        }
    }

    /// Parses `pn` or `lid`; refuses anything else.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pn" => Some(AddressingMode::Pn),
            "lid" => Some(AddressingMode::Lid),
            _ => None,
        }
    }
}

/// A member's role in a group.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum ParticipantRole {
    /// An ordinary member.
    #[default]
    Member,
    /// `type="admin"`.
    Admin,
    /// `type="superadmin"` (the creator).
    SuperAdmin,
}

#[cfg(feature = "sqlite")]
impl ParticipantRole {
    pub(crate) fn code(self) -> i64 {
        match self {
            ParticipantRole::Member => 0,
            ParticipantRole::Admin => 1,
            ParticipantRole::SuperAdmin => 2,
        }
    }

    pub(crate) fn from_code(code: i64) -> Option<Self> {
        match code {
            0 => Some(ParticipantRole::Member),
            1 => Some(ParticipantRole::Admin),
            2 => Some(ParticipantRole::SuperAdmin),
            _ => None,
        }
    }
}

/// One member of a group as the metadata IQ lists it.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct GroupParticipant {
    /// The member in the group's addressing mode.
    pub jid: Jid,
    /// `phone_number` attribute (LID groups).
    pub phone_number: Option<Jid>,
    /// `lid` attribute (PN groups).
    pub lid: Option<Jid>,
    /// Admin status.
    pub role: ParticipantRole,
}

/// Cached group metadata.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GroupMetadata {
    /// The group JID (`…@g.us`).
    pub group: Jid,
    /// LID or phone-number addressing.
    pub addressing_mode: AddressingMode,
    /// Members in the order the server listed them.
    pub participants: Vec<GroupParticipant>,
    /// The last participant hash (`2:…`) computed or acknowledged, if any.
    pub phash: Option<String>,
    /// The group subject, if known.
    pub subject: Option<String>,
    /// When it was fetched (unix ms).
    pub fetched_at_ms: i64,
}

/// A change to the sender-key memory: which devices hold our current sender key of a
/// group (PROTOCOL.md §10.7).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum SenderKeyMemoryUpdate {
    /// These devices now have our current key (after the server acked the SKDM).
    MarkHas {
        /// The group (or broadcast list).
        group: Jid,
        /// Device JIDs.
        devices: Vec<Jid>,
    },
    /// These devices must get an SKDM again (e.g. after a retry receipt).
    Forget {
        /// The group (or broadcast list).
        group: Jid,
        /// Device JIDs.
        devices: Vec<Jid>,
    },
    /// Nobody has our key any more (rotation: a member left, a number changed).
    ClearGroup {
        /// The group (or broadcast list).
        group: Jid,
    },
}

/// The message secret of a message (event card), keyed by chat, sender and id.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MessageSecretRecord {
    /// The chat the message was in.
    pub chat: Jid,
    /// Who sent it, at user level (the device part is dropped when stored).
    pub sender: Jid,
    /// The message id.
    pub message_id: String,
    /// The 32-byte `messageContextInfo.messageSecret`.
    pub secret: SecretBytes,
    /// When it was stored (unix ms), for pruning.
    pub created_at_ms: i64,
}

/// An event card seen or sent.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct EventRecord {
    /// The chat (group or user).
    pub chat: Jid,
    /// The event's message id.
    pub message_id: String,
    /// The creator at user level (device dropped), in the namespace the card came in.
    pub creator: Jid,
    /// True when we sent it.
    pub from_me: bool,
    /// The serialized card (an `EventMessage` or the whole `Message`; the store does
    /// not look inside). An edit replaces it.
    pub card: Vec<u8>,
    /// The message timestamp (unix ms).
    pub timestamp_ms: i64,
}

/// An answer to an event, with WhatsApp's `EventResponseType` numbers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum RsvpStatus {
    /// No answer / answer removed (`UNKNOWN`, 0).
    Unknown,
    /// `GOING` (1).
    Going,
    /// `NOT_GOING` (2).
    NotGoing,
    /// `MAYBE` (3).
    Maybe,
}

impl RsvpStatus {
    /// WhatsApp's enum number.
    pub fn code(self) -> i32 {
        match self {
            RsvpStatus::Unknown => 0,
            RsvpStatus::Going => 1,
            RsvpStatus::NotGoing => 2,
            RsvpStatus::Maybe => 3,
        }
    }

    /// From WhatsApp's enum number; refuses numbers it does not define.
    pub fn from_code(code: i32) -> Option<Self> {
        match code {
            0 => Some(RsvpStatus::Unknown),
            1 => Some(RsvpStatus::Going),
            2 => Some(RsvpStatus::NotGoing),
            3 => Some(RsvpStatus::Maybe),
            _ => None,
        }
    }
}

/// One voter's answer to an event. The store keeps the latest per voter by
/// `timestamp_ms`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RsvpRecord {
    /// The chat of the event.
    pub chat: Jid,
    /// The event's message id.
    pub event_id: String,
    /// Who answered, at user level (device dropped). Pass one namespace per person
    /// (LID when known): the store does not merge a voter's LID and PN.
    pub voter: Jid,
    /// The answer.
    pub response: RsvpStatus,
    /// Extra guests the voter brings.
    pub extra_guests: u32,
    /// The answer's `timestampMS`.
    pub timestamp_ms: i64,
}

/// Latest answers and totals for one event.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct EventTally {
    /// Voters going.
    pub going: u32,
    /// Voters not going.
    pub not_going: u32,
    /// Voters who answered maybe.
    pub maybe: u32,
    /// Extra guests of voters going.
    pub extra_guests_going: u32,
    /// The latest answer of every voter (those with `Unknown` included, not counted),
    /// sorted by voter.
    pub responses: Vec<RsvpRecord>,
}

impl EventTally {
    /// Tallies latest answers.
    pub fn from_responses(mut responses: Vec<RsvpRecord>) -> Self {
        responses.sort_by(|a, b| a.voter.cmp(&b.voter));
        let mut tally = EventTally::default();
        for r in &responses {
            match r.response {
                RsvpStatus::Going => {
                    tally.going = tally.going.saturating_add(1);
                    tally.extra_guests_going =
                        tally.extra_guests_going.saturating_add(r.extra_guests);
                }
                RsvpStatus::NotGoing => tally.not_going = tally.not_going.saturating_add(1),
                RsvpStatus::Maybe => tally.maybe = tally.maybe.saturating_add(1),
                RsvpStatus::Unknown => {}
            }
        }
        tally.responses = responses;
        tally
    }
}

/// What the server said about a sent message.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum SentState {
    /// Stored before sending; no server ack yet (resend after reconnect, same id).
    Pending,
    /// The server acked it.
    Acked,
    /// The server answered with an error ack (e.g. 403 not a member, 406, 479): it will
    /// not be delivered and is not resent.
    Refused {
        /// The ack's `error` code.
        code: u16,
    },
}

#[cfg(feature = "sqlite")]
impl SentState {
    /// The `state` column (0 pending, 1 acked, 2 refused) and the `refused_code` column.
    pub(crate) fn code(self) -> (i64, Option<i64>) {
        match self {
            SentState::Pending => (0, None),
            SentState::Acked => (1, None),
            SentState::Refused { code } => (2, Some(i64::from(code))),
        }
    }

    /// The state from its two columns; `None` for values this build never writes.
    pub(crate) fn from_code(state: i64, refused_code: Option<i64>) -> Option<Self> {
        match (state, refused_code) {
            (0, None) => Some(SentState::Pending),
            (1, None) => Some(SentState::Acked),
            (2, Some(code)) => u16::try_from(code)
                .ok()
                .map(|code| SentState::Refused { code }),
            _ => None,
        }
    }
}

/// A message we sent, kept for retry receipts and for resending after a crash.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SentMessage {
    /// Where it went.
    pub chat: Jid,
    /// Its id (a resend reuses it).
    pub message_id: String,
    /// The plaintext `Message` protobuf (re-encrypted for a device that asks to retry).
    pub message: Vec<u8>,
    /// The prepared, encrypted stanza (binary node bytes), sent again as is after a
    /// crash before the ack.
    pub stanza: Vec<u8>,
    /// Pending until the server acks.
    pub state: SentState,
    /// Who asked for the send (`SendOptions::source`, e.g. the gateway caller's
    /// label); `None` when nobody said.
    pub source: Option<String>,
    /// When it was prepared (unix ms).
    pub created_at_ms: i64,
}

/// A sent message as stored, with per-device retry counts.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoredSentMessage {
    /// The message.
    pub sent: SentMessage,
    /// Retry receipts answered so far, per requesting device, sorted by device.
    pub retry_counts: Vec<(Jid, u32)>,
}

/// A state change of a sent message (e.g. the server's ack). Unknown messages are
/// ignored.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SentStateUpdate {
    /// The chat.
    pub chat: Jid,
    /// The message id.
    pub message_id: String,
    /// The new state.
    pub state: SentState,
}

/// A received message already decrypted, kept by ciphertext hash so that a redelivery
/// after a crash (ratchet already advanced) is answered from here instead of failing.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DecryptedMessage {
    /// SHA-256 of the ciphertext.
    pub ciphertext_hash: [u8; 32],
    /// The decrypted, unpadded plaintext.
    pub plaintext: Vec<u8>,
    /// When it arrived (unix ms), for pruning.
    pub received_at_ms: i64,
}

/// A webhook delivery waiting in the outbox.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct WebhookJob {
    /// Unique id chosen by the caller (also sent to the receiver for de-duplication).
    pub id: String,
    /// The gateway instance it belongs to.
    pub instance: String,
    /// The JSON body.
    pub payload: Vec<u8>,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Earliest time for the next attempt (unix ms).
    pub next_attempt_at_ms: i64,
    /// When it was queued (unix ms).
    pub created_at_ms: i64,
    /// Why the last attempt failed, if one did.
    pub last_error: Option<String>,
}

/// A claim of an idempotency key by a request.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct IdempotencyClaim {
    /// The gateway instance (keys are per instance).
    pub instance: String,
    /// The `Idempotency-Key` header.
    pub key: String,
    /// A digest of the request (method, path, body): the same key with another request
    /// is refused.
    pub fingerprint: String,
    /// Now (unix ms).
    pub now_ms: i64,
}

/// The response stored for a completed idempotent request.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// Response body.
    pub body: Vec<u8>,
}

/// What claiming an idempotency key found.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum IdempotencyState {
    /// The key was free and is now ours: run the request, then complete or release it.
    Claimed,
    /// Another request with this key is running since `since_ms`: wait and claim again,
    /// or refuse (409).
    InProgress {
        /// When that request claimed the key (unix ms).
        since_ms: i64,
    },
    /// A request with this key finished: return its response, do not run again.
    Completed(StoredResponse),
    /// The key was used for a different request (fingerprint differs): refuse (422).
    Mismatch,
}

/// What [`Store::prune`](super::Store::prune) removes: rows older than each cut-off
/// (unix ms); `None` keeps that kind.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PruneBefore {
    /// Message secrets by `created_at_ms`.
    pub message_secrets: Option<i64>,
    /// Sent messages by `created_at_ms` (pending ones too).
    pub sent_messages: Option<i64>,
    /// Decrypted-message buffer by `received_at_ms`.
    pub decrypted: Option<i64>,
    /// Idempotency keys by claim time (in-progress ones too).
    pub idempotency_keys: Option<i64>,
}

/// How many rows [`Store::prune`](super::Store::prune) removed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct PruneCounts {
    /// Message secrets removed.
    pub message_secrets: u64,
    /// Sent messages removed.
    pub sent_messages: u64,
    /// Decrypted messages removed.
    pub decrypted: u64,
    /// Idempotency keys removed.
    pub idempotency_keys: u64,
}

pub(crate) fn check_message_id(what: &'static str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_MESSAGE_ID_LEN {
        return Err(Error::invalid(
            what,
            format!(
                "message id must be 1..={MAX_MESSAGE_ID_LEN} bytes, got {}",
                id.len()
            ),
        ));
    }
    Ok(())
}

pub(crate) fn check_key(what: &'static str, field: &str, key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Error::invalid(
            what,
            format!("{field} must be 1..={MAX_KEY_LEN} bytes, got {}", key.len()),
        ));
    }
    Ok(())
}

/// Refuses JIDs whose text form does not parse back to the same JID (the SQLite
/// backend stores JIDs as text).
pub(crate) fn check_jid(what: &'static str, jid: &Jid) -> Result<()> {
    let text = jid.to_string();
    match Jid::parse(&text) {
        Ok(back) if back == *jid => Ok(()),
        _ => Err(Error::invalid(
            what,
            format!(
                "JID {:?} does not survive its text form",
                text.chars().take(64).collect::<String>()
            ),
        )),
    }
}

pub(crate) fn check_user(what: &'static str, jid: &Jid) -> Result<()> {
    if jid.user.is_empty() || jid.is_group() {
        return Err(Error::invalid(what, format!("{jid} is not a user JID")));
    }
    check_jid(what, jid)
}

pub(crate) fn check_group(what: &'static str, jid: &Jid) -> Result<()> {
    if jid.user.is_empty() || !(jid.is_group() || jid.is_broadcast()) {
        return Err(Error::invalid(
            what,
            format!("{jid} is not a group or broadcast JID"),
        ));
    }
    check_jid(what, jid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    #[test]
    fn mapping_checks_namespaces_and_drops_devices() {
        let m = LidPnMapping::new(&jid("111:3@lid"), &jid("5511:3@s.whatsapp.net")).unwrap();
        assert_eq!(m.lid(), jid("111@lid"));
        assert_eq!(m.pn(), jid("5511@s.whatsapp.net"));
        assert!(LidPnMapping::new(&jid("5511@s.whatsapp.net"), &jid("111@lid")).is_err());
        assert!(LidPnMapping::new(&jid("111@hosted.lid"), &jid("5511@s.whatsapp.net")).is_err());
        assert!(LidPnMapping::new(&jid("lid"), &jid("5511@s.whatsapp.net")).is_err());
    }

    #[test]
    fn device_jids_put_hosted_devices_on_hosted_servers() {
        let list = DeviceList {
            user: jid("111@lid"),
            devices: vec![
                DeviceEntry {
                    id: 0,
                    key_index: None,
                    hosted: false,
                },
                DeviceEntry {
                    id: 99,
                    key_index: Some(2),
                    hosted: true,
                },
            ],
            hash: None,
            key_index_ts: None,
            fetched_at_ms: 0,
        };
        assert_eq!(
            list.device_jids(),
            vec![jid("111@lid"), jid("111:99@hosted.lid")]
        );
        let pn = DeviceList {
            user: jid("5511@s.whatsapp.net"),
            ..list
        };
        assert_eq!(
            pn.device_jids(),
            vec![jid("5511@s.whatsapp.net"), jid("5511:99@hosted")]
        );
    }

    #[test]
    fn tally_counts_latest_answers() {
        let r = |voter: &str, response, guests| RsvpRecord {
            chat: jid("1203@g.us"),
            event_id: "E1".into(),
            voter: jid(voter),
            response,
            extra_guests: guests,
            timestamp_ms: 1,
        };
        let tally = EventTally::from_responses(vec![
            r("3@lid", RsvpStatus::Maybe, 0),
            r("1@lid", RsvpStatus::Going, 2),
            r("2@lid", RsvpStatus::Going, 0),
            r("4@lid", RsvpStatus::NotGoing, 5),
            r("5@lid", RsvpStatus::Unknown, 1),
        ]);
        assert_eq!(
            (
                tally.going,
                tally.not_going,
                tally.maybe,
                tally.extra_guests_going
            ),
            (2, 1, 1, 2)
        );
        assert_eq!(tally.responses.len(), 5);
        assert_eq!(tally.responses[0].voter, jid("1@lid"));
    }

    #[test]
    fn codes_round_trip_and_refuse_unknown_numbers() {
        for s in [
            RsvpStatus::Unknown,
            RsvpStatus::Going,
            RsvpStatus::NotGoing,
            RsvpStatus::Maybe,
        ] {
            assert_eq!(RsvpStatus::from_code(s.code()), Some(s));
        }
        assert_eq!(RsvpStatus::from_code(4), None);
        assert_eq!(RsvpStatus::from_code(-1), None);
        assert_eq!(AddressingMode::parse("LID"), None);
        assert_eq!(AddressingMode::parse("lid"), Some(AddressingMode::Lid));
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn stored_codes_round_trip_and_refuse_unknown_numbers() {
        for r in [
            ParticipantRole::Member,
            ParticipantRole::Admin,
            ParticipantRole::SuperAdmin,
        ] {
            assert_eq!(ParticipantRole::from_code(r.code()), Some(r));
        }
        assert_eq!(ParticipantRole::from_code(3), None);
        for (state, code) in [
            (2, None),
            (0, Some(403)),
            (1, Some(0)),
            (2, Some(70_000)),
            (3, None),
        ] {
            assert_eq!(SentState::from_code(state, code), None, "{state} {code:?}");
        }
        for s in [
            SentState::Pending,
            SentState::Acked,
            SentState::Refused { code: 403 },
            SentState::Refused { code: u16::MAX },
        ] {
            let (state, code) = s.code();
            assert_eq!(SentState::from_code(state, code), Some(s));
        }
    }
}
