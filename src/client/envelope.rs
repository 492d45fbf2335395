//! Incoming `<message>` stanzas, sans-IO (PROTOCOL.md §11, §5.6, §10.8): where a
//! message comes from and its `<enc>` parts, and the replies the client owes for it —
//! the delivery receipt, the ack and the retry receipt.
//!
//! ```text
//! <message from id t type [participant] [participant_pn|participant_lid]
//!          [sender_pn|sender_lid] [recipient] [notify] [edit] [category] [offline]>
//!   <enc v="2" type="pkmsg|msg|skmsg" [count] [decrypt-fail="hide"] [mediatype]>bytes</enc>…
//! </message>
//! ```
//!
//! Everything here comes from the network: [`Envelope::parse`] checks every attribute it
//! uses and every length, and refuses with an [`EnvelopeError`] that says what is wrong.

use crate::binary::{AttrValue, Node};
use crate::jid::Jid;
use crate::signal::SignalError;
use crate::signal::curve::{DJB_TYPE, PublicKey};
use crate::signal::identity::{PreKeyRecord, SignedPreKeyRecord};
use crate::store::MAX_MESSAGE_ID_LEN;

use super::prekeys::{prekey_node, signed_prekey_node};
use super::receive::MessageInfo;

/// At most this many `<enc>` children are read from one message (WhatsApp sends one
/// pairwise part and one `skmsg` at most).
pub const MAX_ENC_PARTS: usize = 4;
/// The largest accepted ciphertext of one `<enc>` (message content is small; media
/// travels separately).
pub const MAX_CIPHERTEXT_LEN: usize = 512 * 1024;
/// Larger `count`s on an `<enc>` are read as this (WhatsApp stops retrying at 5).
pub const MAX_ENC_COUNT: u32 = 1000;
/// Longest accepted text attribute (`type`, `notify`, `edit`, `category`).
pub const MAX_ATTR_LEN: usize = 1024;

/// Why a `<message>` stanza was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The node is not a `<message>`.
    #[error("expected a <message> stanza, got <{0}>")]
    NotAMessage(String),
    /// A required attribute is missing.
    #[error("message stanza has no `{0}` attribute")]
    MissingAttr(&'static str),
    /// An attribute has a value that cannot be right.
    #[error("message stanza attribute `{attr}` is invalid: {detail}")]
    InvalidAttr {
        /// The attribute.
        attr: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// An `<enc>` child is unusable.
    #[error("<enc> part {index} is invalid: {detail}")]
    InvalidEnc {
        /// Its position among the `<enc>` children.
        index: usize,
        /// What is wrong.
        detail: String,
    },
    /// More `<enc>` children than [`MAX_ENC_PARTS`].
    #[error("message stanza has {0} <enc> parts (at most {MAX_ENC_PARTS} are accepted)")]
    TooManyParts(usize),
}

/// The kind of Signal message in an `<enc>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncType {
    /// `pkmsg`: a PreKeySignalMessage (pairwise, starts a session).
    PreKey,
    /// `msg`: a SignalMessage (pairwise, existing session).
    Whisper,
    /// `skmsg`: a SenderKeyMessage (group).
    SenderKey,
}

impl EncType {
    /// The wire name (`pkmsg`, `msg`, `skmsg`).
    pub fn as_str(self) -> &'static str {
        match self {
            EncType::PreKey => "pkmsg",
            EncType::Whisper => "msg",
            EncType::SenderKey => "skmsg",
        }
    }

    /// Parses the wire name; `None` for other kinds (`msmsg`, `frskmsg`, …).
    pub fn from_wire(s: &str) -> Option<Self> {
        match s {
            "pkmsg" => Some(EncType::PreKey),
            "msg" => Some(EncType::Whisper),
            "skmsg" => Some(EncType::SenderKey),
            _ => None,
        }
    }

    /// True for `pkmsg` and `msg`.
    pub fn is_pairwise(self) -> bool {
        !matches!(self, EncType::SenderKey)
    }
}

impl std::fmt::Display for EncType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `<enc>` child.
#[derive(Clone, PartialEq, Eq)]
pub struct EncPart {
    /// `pkmsg`, `msg` or `skmsg`.
    pub enc_type: EncType,
    /// `v`: 2 (padded Signal payload, the default) or 3 (unpadded).
    pub version: u8,
    /// The ciphertext (the Signal message bytes).
    pub ciphertext: Vec<u8>,
    /// `count`: how many times the sender re-sent this after retry receipts (0 when
    /// absent or unreadable, at most [`MAX_ENC_COUNT`]).
    pub count: u32,
    /// `decrypt-fail="hide"`: the UI shows no placeholder when it fails.
    pub hide_fail: bool,
    /// `mediatype`, when present.
    pub media_type: Option<String>,
}

impl std::fmt::Debug for EncPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncPart")
            .field("enc_type", &self.enc_type)
            .field("version", &self.version)
            .field("ciphertext_len", &self.ciphertext.len())
            .field("count", &self.count)
            .field("hide_fail", &self.hide_fail)
            .field("media_type", &self.media_type)
            .finish()
    }
}

/// A parsed `<message>` stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Chat, sender, id, time, push name, type, edit.
    pub info: MessageInfo,
    /// A group (or broadcast) message.
    pub is_group: bool,
    /// `category` (`peer` for messages between our own devices).
    pub category: Option<String>,
    /// `offline`: delivered from the backlog after a reconnect.
    pub offline: bool,
    /// `recipient`, when present (the other party of a message we sent from another
    /// device).
    pub recipient: Option<Jid>,
    /// The `<enc>` parts WhatsApp encrypts with Signal, pairwise ones first, in
    /// stanza order otherwise.
    pub parts: Vec<EncPart>,
    /// `<enc>` children of other kinds (`msmsg`, …), skipped.
    pub skipped_parts: Vec<String>,
    /// The stanza has an `<unavailable>` child (the content is only on the phone).
    pub unavailable: bool,
}

/// Our own account, to tell our other devices' messages apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnIds {
    /// Our phone-number JID (any device).
    pub pn: Option<Jid>,
    /// Our LID (any device).
    pub lid: Option<Jid>,
}

impl OwnIds {
    /// True when `jid` is a device of our own account (PN or LID).
    pub fn is_own(&self, jid: &Jid) -> bool {
        let same = |own: &Option<Jid>| {
            own.as_ref()
                .is_some_and(|o| o.user == jid.user && o.server == jid.server)
        };
        same(&self.pn) || same(&self.lid)
    }
}

/// A JID attribute, whether the decoder gave it as a JID or as text.
fn jid_attr(node: &Node, attr: &'static str) -> Result<Option<Jid>, EnvelopeError> {
    match node.get_attr(attr) {
        None => Ok(None),
        Some(AttrValue::Jid(j)) => Ok(Some(j.clone())),
        Some(AttrValue::Str(s)) if s.is_empty() => Ok(None),
        Some(AttrValue::Str(s)) => {
            Jid::parse(s)
                .map(Some)
                .map_err(|e| EnvelopeError::InvalidAttr {
                    attr,
                    detail: e.to_string(),
                })
        }
    }
}

/// A text attribute of bounded length.
fn text_attr(node: &Node, attr: &'static str) -> Result<Option<String>, EnvelopeError> {
    match node.get_attr(attr) {
        None => Ok(None),
        Some(v) => {
            let text = v.to_text();
            if text.len() > MAX_ATTR_LEN {
                return Err(EnvelopeError::InvalidAttr {
                    attr,
                    detail: format!("{} bytes (at most {MAX_ATTR_LEN})", text.len()),
                });
            }
            Ok(Some(text.into_owned()))
        }
    }
}

/// The sender's alternate JID from `<lid_attr>` (when the sender is a PN) or
/// `<pn_attr>` (when it is a LID). A value that is not a JID of the other namespace is
/// ignored (logged): it only helps to find sessions, and refusing the stanza for it
/// would lose the message.
fn alternate(
    node: &Node,
    sender: &Jid,
    pn_attr: &'static str,
    lid_attr: &'static str,
) -> Option<Jid> {
    let (attr, wanted_lid) = if sender.is_lid() {
        (pn_attr, false)
    } else {
        (lid_attr, true)
    };
    match jid_attr(node, attr) {
        Ok(Some(alt)) if alt.is_lid() == wanted_lid && (alt.is_lid() || alt.is_pn()) => Some(alt),
        Ok(None) => None,
        Ok(Some(alt)) => {
            tracing::warn!(%sender, %alt, attr, "ignoring an alternate JID of the wrong kind");
            None
        }
        Err(e) => {
            tracing::warn!(%sender, error = %e, attr, "ignoring an unreadable alternate JID");
            None
        }
    }
}

impl Envelope {
    /// Reads a `<message>` stanza (PROTOCOL.md §11). `own` tells our own devices apart.
    ///
    /// Refuses a stanza without `from`, `id` or `t`, a group message without a
    /// `participant`, a sender that is not a user device, a `t` that is not a number, an
    /// id longer than [`MAX_MESSAGE_ID_LEN`], and `<enc>` parts that are empty, too long, of an unknown version or
    /// more than [`MAX_ENC_PARTS`].
    pub fn parse(node: &Node, own: &OwnIds) -> Result<Envelope, EnvelopeError> {
        if node.tag != "message" {
            return Err(EnvelopeError::NotAMessage(
                node.tag.chars().take(64).collect(),
            ));
        }
        let from = jid_attr(node, "from")?.ok_or(EnvelopeError::MissingAttr("from"))?;
        let id = text_attr(node, "id")?.ok_or(EnvelopeError::MissingAttr("id"))?;
        if id.is_empty() || id.len() > MAX_MESSAGE_ID_LEN {
            return Err(EnvelopeError::InvalidAttr {
                attr: "id",
                detail: format!("{} bytes (1..={MAX_MESSAGE_ID_LEN})", id.len()),
            });
        }
        let t = text_attr(node, "t")?.ok_or(EnvelopeError::MissingAttr("t"))?;
        let timestamp: i64 = t.parse().map_err(|_| EnvelopeError::InvalidAttr {
            attr: "t",
            detail: format!(
                "{:?} is not a unix time",
                t.chars().take(32).collect::<String>()
            ),
        })?;
        let recipient = jid_attr(node, "recipient")?;
        let is_group = from.is_group() || from.is_broadcast();
        let (chat, sender, sender_alt, from_me) = if is_group {
            let sender =
                jid_attr(node, "participant")?.ok_or(EnvelopeError::MissingAttr("participant"))?;
            let alt = alternate(node, &sender, "participant_pn", "participant_lid");
            let from_me = own.is_own(&sender);
            (from.clone(), sender, alt, from_me)
        } else {
            let alt = alternate(node, &from, "sender_pn", "sender_lid");
            if own.is_own(&from) {
                // Our other device: a DM we sent (chat = `recipient`) or a peer message.
                let chat = recipient
                    .as_ref()
                    .map(Jid::to_non_ad)
                    .unwrap_or_else(|| from.to_non_ad());
                (chat, from.clone(), alt, true)
            } else {
                (from.to_non_ad(), from.clone(), alt, false)
            }
        };
        if !(sender.is_pn() || sender.is_lid() || sender.is_hosted()) || sender.user.is_empty() {
            return Err(EnvelopeError::InvalidAttr {
                attr: if is_group { "participant" } else { "from" },
                detail: format!("{sender} is not a user device"),
            });
        }
        let stanza_type = text_attr(node, "type")?.unwrap_or_else(|| "text".to_owned());
        let info = MessageInfo {
            id,
            chat,
            sender,
            sender_alt,
            from_me,
            timestamp,
            push_name: text_attr(node, "notify")?,
            stanza_type,
            edit: text_attr(node, "edit")?,
        };
        let encs: Vec<&Node> = node.children_by_tag("enc").collect();
        if encs.len() > MAX_ENC_PARTS {
            return Err(EnvelopeError::TooManyParts(encs.len()));
        }
        let mut parts = Vec::with_capacity(encs.len());
        let mut skipped_parts = Vec::new();
        for (index, enc) in encs.into_iter().enumerate() {
            let bad = |detail: String| EnvelopeError::InvalidEnc { index, detail };
            let kind = enc
                .get_attr("type")
                .map(|v| v.to_text())
                .unwrap_or_default();
            let Some(enc_type) = EncType::from_wire(&kind) else {
                skipped_parts.push(kind.chars().take(32).collect());
                continue;
            };
            let version = match enc.get_attr("v").map(|v| v.to_text()) {
                None => 2,
                Some(v) if v == "2" => 2,
                Some(v) if v == "3" => 3,
                Some(v) => {
                    return Err(bad(format!(
                        "version {:?} (2 or 3 expected)",
                        v.chars().take(16).collect::<String>()
                    )));
                }
            };
            let ciphertext = enc
                .bytes()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| bad(format!("{enc_type} has no ciphertext")))?;
            if ciphertext.len() > MAX_CIPHERTEXT_LEN {
                return Err(bad(format!(
                    "{} bytes of ciphertext (at most {MAX_CIPHERTEXT_LEN})",
                    ciphertext.len()
                )));
            }
            // Informational only: an unreadable count must not cost the message.
            let count = enc
                .get_attr("count")
                .and_then(|v| v.to_text().parse::<u32>().ok())
                .unwrap_or(0)
                .min(MAX_ENC_COUNT);
            let media_type = text_attr(enc, "mediatype").map_err(|e| bad(e.to_string()))?;
            parts.push(EncPart {
                enc_type,
                version,
                ciphertext: ciphertext.to_vec(),
                count,
                hide_fail: enc.get_attr("decrypt-fail").map(|v| v.to_text()).as_deref()
                    == Some("hide"),
                media_type,
            });
        }
        // Pairwise first: it usually carries the SKDM the skmsg needs (stable sort).
        parts.sort_by_key(|p| !p.enc_type.is_pairwise());
        Ok(Envelope {
            info,
            is_group,
            category: text_attr(node, "category")?,
            offline: node.get_attr("offline").is_some(),
            recipient,
            parts,
            skipped_parts,
            unavailable: node.child_by_tag("unavailable").is_some(),
        })
    }

    /// True for a `category="peer"` message (between our own devices).
    pub fn is_peer(&self) -> bool {
        self.category.as_deref() == Some("peer")
    }

    /// The highest `count` of its parts: how often the sender already re-sent it.
    pub fn resend_count(&self) -> u32 {
        self.parts.iter().map(|p| p.count).max().unwrap_or(0)
    }
}

/// Copies `to` = `from` and the addressing attributes of a received stanza.
fn reply_to(message: &Node, mut reply: Node) -> Option<Node> {
    let from = message.get_attr("from")?.clone();
    reply.attrs.set("to", from);
    for key in ["participant", "recipient"] {
        if let Some(v) = message.get_attr(key) {
            reply.attrs.set(key, v.clone());
        }
    }
    Some(reply)
}

/// The delivery receipt for a message we decrypted (PROTOCOL.md §5.6):
/// `<receipt id to=<from> [participant] [recipient] [type]>`, `type` being `peer_msg`
/// for peer messages, `sender` for messages from our own other devices, `inactive`
/// when `active` is false (we never announced presence), absent otherwise.
/// `None` when the stanza has no `id` or `from`.
pub fn delivery_receipt(message: &Node, envelope: &Envelope, active: bool) -> Option<Node> {
    let id = message.get_attr("id")?.clone();
    let mut receipt = reply_to(message, Node::new("receipt").attr("id", id))?;
    let kind = if envelope.is_peer() {
        Some("peer_msg")
    } else if envelope.info.from_me {
        Some("sender")
    } else if !active {
        Some("inactive")
    } else {
        None
    };
    if let Some(kind) = kind {
        receipt.attrs.set("type", kind);
    }
    Some(receipt)
}

/// The ack of a message stanza: [`super::stanza::ack_for`] (`error` makes it a nack).
pub fn message_ack(message: &Node, own_device: Option<&Jid>, error: Option<u16>) -> Option<Node> {
    super::stanza::ack_for(message, own_device, error)
}

/// Client nack codes for messages (PROTOCOL.md §5.6).
pub mod nack {
    /// The stanza could not be parsed.
    pub const PARSING_ERROR: u16 = 487;
    /// The decrypted payload is not a `Message` protobuf.
    pub const INVALID_PROTOBUF: u16 = 491;
    /// Anything else that went wrong on our side.
    pub const UNHANDLED_ERROR: u16 = 500;
}

/// Why a message could not be decrypted, as the retry receipt's `error` says it
/// (whatsapp-rust's reason codes, PROTOCOL.md §10.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RetryReason {
    /// Unknown (the `error` attribute is left out).
    Unknown = 0,
    /// No session or no sender key.
    NoSession = 1,
    /// A key in the message is invalid.
    InvalidKey = 2,
    /// The prekey the message names is not ours (any more).
    InvalidKeyId = 3,
    /// The message is malformed.
    InvalidMessage = 4,
    /// The sender-key signature does not verify.
    InvalidSignature = 5,
    /// The counter is too far ahead.
    FutureMessage = 6,
    /// The MAC does not verify.
    BadMac = 7,
    /// The session is unusable.
    InvalidSession = 8,
}

impl RetryReason {
    /// The reason for a Signal error.
    pub fn of(error: &SignalError) -> Self {
        match error {
            SignalError::NoSession
            | SignalError::NoSenderKey
            | SignalError::NoSenderKeyState(_) => RetryReason::NoSession,
            SignalError::BadKey { .. } | SignalError::PreKeyIdentityMismatch => {
                RetryReason::InvalidKey
            }
            SignalError::MissingPreKey(_)
            | SignalError::MissingSignedPreKey(_)
            | SignalError::WrongPreKey { .. } => RetryReason::InvalidKeyId,
            SignalError::Malformed { .. }
            | SignalError::UnsupportedVersion { .. }
            | SignalError::BadCiphertext { .. } => RetryReason::InvalidMessage,
            SignalError::BadSignature => RetryReason::InvalidSignature,
            SignalError::TooFarInFuture { .. } => RetryReason::FutureMessage,
            SignalError::BadMac => RetryReason::BadMac,
            SignalError::NoValidSession { current, .. } => match RetryReason::of(current) {
                RetryReason::Unknown => RetryReason::BadMac,
                r => r,
            },
            SignalError::NoSendingChain | SignalError::Record(_) => RetryReason::InvalidSession,
            SignalError::DuplicateMessage { .. }
            | SignalError::ChainExhausted
            | SignalError::InvalidSignedPreKeySignature { .. }
            | SignalError::NotOwnSenderKey => RetryReason::Unknown,
        }
    }
}

/// Our keys in a retry receipt, so the sender can start a new session with us.
#[derive(Debug, Clone, Copy)]
pub struct RetryKeys<'a> {
    /// Our identity key.
    pub identity: &'a PublicKey,
    /// A fresh one-time prekey (stored, never uploaded).
    pub prekey: &'a PreKeyRecord,
    /// Our current signed prekey.
    pub signed_prekey: &'a SignedPreKeyRecord,
    /// Our `ADVSignedDeviceIdentity` bytes.
    pub device_identity: &'a [u8],
}

/// What goes into a retry receipt besides the stanza it answers.
#[derive(Debug, Clone, Copy)]
pub struct RetryRequest<'a> {
    /// Which retry this is (1 for the first).
    pub count: u32,
    /// Why decryption failed.
    pub reason: RetryReason,
    /// Our registration id.
    pub registration_id: u32,
    /// Our keys: included when `count ≥ 2` or when we have no session / sender key.
    pub keys: Option<RetryKeys<'a>>,
}

/// The retry receipt asking the sender to re-send `message` (PROTOCOL.md §10.8):
///
/// ```text
/// <receipt id type="retry" to=<from> [participant] [recipient]>
///   <retry v="1" id t count [error]/>
///   <registration>4 bytes BE</registration>
///   [<keys><type>05</type><identity/><key><id/><value/></key><skey/><device-identity/></keys>]
/// </receipt>
/// ```
///
/// `None` when the stanza has no `id` or `from`, or a prekey id is not 24-bit.
pub fn retry_receipt(message: &Node, request: &RetryRequest<'_>) -> Option<Node> {
    let id = message.get_attr("id")?.clone();
    let mut receipt = Node::new("receipt")
        .attr("id", id.clone())
        .attr("type", "retry");
    receipt = reply_to(message, receipt)?;
    let mut retry = Node::new("retry").attr("v", "1").attr("id", id);
    if let Some(t) = message.get_attr("t") {
        retry.attrs.set("t", t.clone());
    }
    retry.attrs.set("count", request.count.to_string());
    if request.reason != RetryReason::Unknown {
        retry.attrs.set("error", (request.reason as u8).to_string());
    }
    let mut children = vec![
        retry,
        Node::new("registration").with_bytes(request.registration_id.to_be_bytes().to_vec()),
    ];
    if let Some(keys) = &request.keys {
        children.push(Node::new("keys").with_children(vec![
            Node::new("type").with_bytes(vec![DJB_TYPE]),
            Node::new("identity").with_bytes(keys.identity.as_bytes().to_vec()),
            prekey_node(keys.prekey.id, &keys.prekey.key_pair.public).ok()?,
            signed_prekey_node(keys.signed_prekey).ok()?,
            Node::new("device-identity").with_bytes(keys.device_identity.to_vec()),
        ]));
    }
    Some(receipt.with_children(children))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn own() -> OwnIds {
        OwnIds {
            pn: Some(Jid::parse("5511999990000:7@s.whatsapp.net").unwrap()),
            lid: Some(Jid::parse("88880000:7@lid").unwrap()),
        }
    }

    fn group_message() -> Node {
        Node::new("message")
            .attr("from", Jid::parse("120363000000000001@g.us").unwrap())
            .attr("participant", Jid::parse("4444:2@lid").unwrap())
            .attr(
                "participant_pn",
                Jid::parse("5511444440000:2@s.whatsapp.net").unwrap(),
            )
            .attr("id", "3EB0AAAA")
            .attr("t", "1700000001")
            .attr("type", "event")
            .attr("notify", "Ana")
            .attr("addressing_mode", "lid")
            .with_children(vec![
                Node::new("enc")
                    .attr("v", "2")
                    .attr("type", "skmsg")
                    .attr("decrypt-fail", "hide")
                    .with_bytes(vec![0x33, 1, 2]),
                Node::new("enc")
                    .attr("v", "2")
                    .attr("type", "pkmsg")
                    .attr("count", "2")
                    .with_bytes(vec![0x33, 9]),
                Node::new("enc")
                    .attr("v", "2")
                    .attr("type", "msmsg")
                    .with_bytes(vec![1]),
            ])
    }

    #[test]
    fn group_message_source_and_parts() {
        let env = Envelope::parse(&group_message(), &own()).unwrap();
        assert!(env.is_group);
        assert_eq!(env.info.chat.to_string(), "120363000000000001@g.us");
        assert_eq!(env.info.sender.to_string(), "4444:2@lid");
        assert_eq!(
            env.info.sender_alt.as_ref().unwrap().to_string(),
            "5511444440000:2@s.whatsapp.net"
        );
        assert!(!env.info.from_me);
        assert_eq!(env.info.timestamp, 1_700_000_001);
        assert_eq!(env.info.push_name.as_deref(), Some("Ana"));
        assert_eq!(env.info.stanza_type, "event");
        // Pairwise first, unknown kinds skipped.
        assert_eq!(env.parts.len(), 2);
        assert_eq!(env.parts[0].enc_type, EncType::PreKey);
        assert_eq!(env.parts[0].count, 2);
        assert_eq!(env.parts[1].enc_type, EncType::SenderKey);
        assert!(env.parts[1].hide_fail);
        assert_eq!(env.skipped_parts, vec!["msmsg".to_string()]);
        assert_eq!(env.resend_count(), 2);
    }

    #[test]
    fn own_device_messages() {
        // A DM we sent from our phone: chat = recipient.
        let n = Node::new("message")
            .attr("from", Jid::parse("5511999990000@s.whatsapp.net").unwrap())
            .attr(
                "recipient",
                Jid::parse("5511222220000@s.whatsapp.net").unwrap(),
            )
            .attr("id", "X")
            .attr("t", "5");
        let env = Envelope::parse(&n, &own()).unwrap();
        assert!(env.info.from_me);
        assert_eq!(env.info.chat.to_string(), "5511222220000@s.whatsapp.net");
        assert_eq!(env.info.stanza_type, "text");
        // Our own LID in a group.
        let n = group_message().attr("participant", Jid::parse("88880000:1@lid").unwrap());
        let mut n = n;
        n.attrs.remove("participant_pn");
        assert!(Envelope::parse(&n, &own()).unwrap().info.from_me);
        // A DM from someone else: chat = their user JID.
        let n = Node::new("message")
            .attr("from", Jid::parse("4444:3@lid").unwrap())
            .attr(
                "sender_pn",
                Jid::parse("5511444440000@s.whatsapp.net").unwrap(),
            )
            .attr("id", "Y")
            .attr("t", "5")
            .attr("category", "peer")
            .attr("offline", "1");
        let env = Envelope::parse(&n, &own()).unwrap();
        assert_eq!(env.info.chat.to_string(), "4444@lid");
        assert_eq!(env.info.sender.to_string(), "4444:3@lid");
        assert!(env.offline && env.is_peer());
    }

    #[test]
    fn hostile_stanzas_are_refused_with_reasons() {
        let own = own();
        let without = |attr: &str| {
            let mut n = group_message();
            n.attrs.remove(attr);
            Envelope::parse(&n, &own).unwrap_err()
        };
        assert_eq!(without("from"), EnvelopeError::MissingAttr("from"));
        assert_eq!(without("id"), EnvelopeError::MissingAttr("id"));
        assert_eq!(without("t"), EnvelopeError::MissingAttr("t"));
        assert_eq!(
            without("participant"),
            EnvelopeError::MissingAttr("participant")
        );
        let e = Envelope::parse(&group_message().attr("t", "soon"), &own).unwrap_err();
        assert!(e.to_string().contains("`t`"), "{e}");
        let e = Envelope::parse(&group_message().attr("id", "x".repeat(200)), &own).unwrap_err();
        assert!(matches!(e, EnvelopeError::InvalidAttr { attr: "id", .. }));
        // An alternate in the wrong namespace is ignored, not fatal.
        let env = Envelope::parse(
            &group_message().attr("participant_pn", Jid::parse("1:2@lid").unwrap()),
            &own,
        )
        .unwrap();
        assert_eq!(env.info.sender_alt, None);
        // The participant must be a user device.
        let e = Envelope::parse(
            &group_message().attr("participant", Jid::parse("1@g.us").unwrap()),
            &own,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a user device"), "{e}");
        // Bad <enc> parts.
        let with_enc = |enc: Node| {
            Envelope::parse(
                &Node::new("message")
                    .attr("from", Jid::parse("1:1@s.whatsapp.net").unwrap())
                    .attr("id", "i")
                    .attr("t", "1")
                    .child(enc),
                &own,
            )
        };
        assert!(with_enc(Node::new("enc").attr("type", "msg")).is_err());
        assert!(with_enc(Node::new("enc").attr("type", "msg").with_bytes(vec![])).is_err());
        assert!(
            with_enc(
                Node::new("enc")
                    .attr("type", "msg")
                    .attr("v", "9")
                    .with_bytes(vec![1])
            )
            .is_err()
        );
        // An unreadable count is taken as 0, a huge one is capped.
        let env = with_enc(
            Node::new("enc")
                .attr("type", "msg")
                .attr("count", "-1")
                .with_bytes(vec![1]),
        )
        .unwrap();
        assert_eq!(env.parts[0].count, 0);
        let env = with_enc(
            Node::new("enc")
                .attr("type", "msg")
                .attr("count", "99999")
                .with_bytes(vec![1]),
        )
        .unwrap();
        assert_eq!(env.parts[0].count, MAX_ENC_COUNT);
        assert!(
            with_enc(
                Node::new("enc")
                    .attr("type", "msg")
                    .with_bytes(vec![0; MAX_CIPHERTEXT_LEN + 1])
            )
            .is_err()
        );
        let many = (0..=MAX_ENC_PARTS)
            .map(|_| Node::new("enc").attr("type", "msg").with_bytes(vec![1]))
            .collect();
        let e = Envelope::parse(
            &Node::new("message")
                .attr("from", Jid::parse("1:1@s.whatsapp.net").unwrap())
                .attr("id", "i")
                .attr("t", "1")
                .with_children(many),
            &own,
        )
        .unwrap_err();
        assert_eq!(e, EnvelopeError::TooManyParts(MAX_ENC_PARTS + 1));
        assert!(matches!(
            Envelope::parse(&Node::new("receipt"), &own),
            Err(EnvelopeError::NotAMessage(_))
        ));
    }

    #[test]
    fn receipts_copy_the_addressing() {
        let node = group_message();
        let env = Envelope::parse(&node, &own()).unwrap();
        let r = delivery_receipt(&node, &env, false).unwrap();
        assert_eq!(r.tag, "receipt");
        assert_eq!(r.attr_str("id"), Some("3EB0AAAA"));
        assert_eq!(r.attr_jid("to"), node.attr_jid("from"));
        assert_eq!(r.attr_jid("participant"), node.attr_jid("participant"));
        assert_eq!(r.attr_str("type"), Some("inactive"));
        assert_eq!(
            delivery_receipt(&node, &env, true)
                .unwrap()
                .get_attr("type"),
            None
        );
        let mut own_env = env.clone();
        own_env.info.from_me = true;
        assert_eq!(
            delivery_receipt(&node, &own_env, true)
                .unwrap()
                .attr_str("type"),
            Some("sender")
        );
        own_env.category = Some("peer".into());
        assert_eq!(
            delivery_receipt(&node, &own_env, true)
                .unwrap()
                .attr_str("type"),
            Some("peer_msg")
        );
        let ack = message_ack(&node, own().pn.as_ref(), None).unwrap();
        assert_eq!(ack.attr_str("class"), Some("message"));
    }

    #[test]
    fn retry_receipt_layout() {
        let rng = &mut rand::rngs::StdRng::seed_from_u64(3);
        let identity = crate::signal::LocalIdentity::generate(rng);
        let prekey = crate::signal::generate_prekeys(77, 1, rng).remove(0);
        let signed = SignedPreKeyRecord::generate(&identity.key_pair, 5, 0, rng);
        let node = group_message();
        let request = RetryRequest {
            count: 2,
            reason: RetryReason::NoSession,
            registration_id: 0x0102_0304,
            keys: Some(RetryKeys {
                identity: identity.public_key(),
                prekey: &prekey,
                signed_prekey: &signed,
                device_identity: b"adv",
            }),
        };
        let r = retry_receipt(&node, &request).unwrap();
        assert_eq!(r.attr_str("type"), Some("retry"));
        assert_eq!(r.attr_str("id"), Some("3EB0AAAA"));
        assert_eq!(r.attr_jid("to"), node.attr_jid("from"));
        assert_eq!(r.attr_jid("participant"), node.attr_jid("participant"));
        let retry = r.child_by_tag("retry").unwrap();
        assert_eq!(retry.attr_str("v"), Some("1"));
        assert_eq!(retry.attr_str("id"), Some("3EB0AAAA"));
        assert_eq!(retry.attr_str("t"), Some("1700000001"));
        assert_eq!(retry.attr_str("count"), Some("2"));
        assert_eq!(retry.attr_str("error"), Some("1"));
        assert_eq!(
            r.child_by_tag("registration").unwrap().bytes(),
            Some(&[1u8, 2, 3, 4][..])
        );
        let keys = r.child_by_tag("keys").unwrap();
        let tags: Vec<&str> = keys.children().iter().map(|c| c.tag.as_ref()).collect();
        assert_eq!(tags, ["type", "identity", "key", "skey", "device-identity"]);
        assert_eq!(
            keys.child_by_tag("key")
                .unwrap()
                .child_by_tag("id")
                .unwrap()
                .bytes(),
            Some(&[0u8, 0, 77][..])
        );
        // First retry without keys and with an unknown reason: no keys, no error attr.
        let r = retry_receipt(
            &node,
            &RetryRequest {
                count: 1,
                reason: RetryReason::Unknown,
                registration_id: 1,
                keys: None,
            },
        )
        .unwrap();
        assert!(r.child_by_tag("keys").is_none());
        assert_eq!(r.child_by_tag("retry").unwrap().get_attr("error"), None);
    }

    #[test]
    fn the_send_pipeline_reads_our_retry_receipt_as_the_server_forwards_it() {
        let rng = &mut rand::rngs::StdRng::seed_from_u64(4);
        let identity = crate::signal::LocalIdentity::generate(rng);
        let prekey = crate::signal::generate_prekeys(900, 1, rng).remove(0);
        let signed = SignedPreKeyRecord::generate(&identity.key_pair, 6, 0, rng);
        let node = group_message();
        let ours = retry_receipt(
            &node,
            &RetryRequest {
                count: 3,
                reason: RetryReason::BadMac,
                registration_id: identity.registration_id,
                keys: Some(RetryKeys {
                    identity: identity.public_key(),
                    prekey: &prekey,
                    signed_prekey: &signed,
                    device_identity: b"adv",
                }),
            },
        )
        .unwrap();
        // The server hands it to the sender from the group, naming us as participant.
        let me = Jid::parse("88880000:7@lid").unwrap();
        let mut forwarded = ours.clone();
        forwarded.attrs.remove("to");
        forwarded
            .attrs
            .set("from", node.attr_jid("from").unwrap().clone());
        forwarded.attrs.set("participant", me.clone());
        let parsed = super::super::retry_receipt::parse_retry_receipt(&forwarded).unwrap();
        assert_eq!(parsed.device, me);
        assert_eq!(parsed.message_id, "3EB0AAAA");
        assert_eq!(parsed.count, 3);
        assert_eq!(parsed.reason, Some(7));
        assert_eq!(parsed.message_time, Some(1_700_000_001));
        assert_eq!(parsed.registration_id, identity.registration_id);
        let keys = parsed.keys.unwrap();
        assert_eq!(
            keys.bundle,
            crate::signal::PreKeyBundle::from_local(&identity, 7, &signed, Some(&prekey))
        );
        assert_eq!(keys.device_identity.as_deref(), Some(&b"adv"[..]));
    }

    const REASONS: [RetryReason; 9] = [
        RetryReason::Unknown,
        RetryReason::NoSession,
        RetryReason::InvalidKey,
        RetryReason::InvalidKeyId,
        RetryReason::InvalidMessage,
        RetryReason::InvalidSignature,
        RetryReason::FutureMessage,
        RetryReason::BadMac,
        RetryReason::InvalidSession,
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever we put in a retry receipt, the send pipeline reads back once the
        /// server has forwarded it (and the stanza survives the binary codec).
        #[test]
        fn retry_receipts_round_trip(
            id in "[0-9A-F]{1,40}",
            t in 0i64..=4_102_444_800,
            count in 1u32..=MAX_ENC_COUNT,
            reason in 0usize..9,
            registration_id in proptest::prelude::any::<u32>(),
            prekey_id in 1u32..=crate::signal::identity::MAX_PREKEY_ID,
            with_keys in proptest::prelude::any::<bool>(),
            device in 0u16..100,
        ) {
            let rng = &mut rand::rngs::StdRng::seed_from_u64(u64::from(prekey_id));
            let identity = crate::signal::LocalIdentity::generate(rng);
            let prekey = crate::signal::generate_prekeys(prekey_id, 1, rng).remove(0);
            let signed = SignedPreKeyRecord::generate(&identity.key_pair, 9, 0, rng);
            let message = group_message().attr("id", id.as_str()).attr("t", t.to_string());
            let receipt = retry_receipt(&message, &RetryRequest {
                count,
                reason: REASONS[reason],
                registration_id,
                keys: with_keys.then_some(RetryKeys {
                    identity: identity.public_key(),
                    prekey: &prekey,
                    signed_prekey: &signed,
                    device_identity: b"adv",
                }),
            }).unwrap();
            let mut forwarded = crate::binary::unmarshal(&crate::binary::marshal(&receipt).unwrap()).unwrap();
            let me = Jid::new_ad("88880000", device, "lid");
            forwarded.attrs.remove("to");
            forwarded.attrs.set("from", message.attr_jid("from").unwrap().clone());
            forwarded.attrs.set("participant", me.clone());
            let parsed = super::super::retry_receipt::parse_retry_receipt(&forwarded).unwrap();
            proptest::prop_assert_eq!(parsed.device, me);
            proptest::prop_assert_eq!(parsed.message_id, id);
            proptest::prop_assert_eq!(parsed.count, count);
            proptest::prop_assert_eq!(parsed.message_time, Some(t));
            proptest::prop_assert_eq!(
                parsed.reason,
                (reason != 0).then_some(REASONS[reason] as u32)
            );
            proptest::prop_assert_eq!(parsed.registration_id, registration_id);
            proptest::prop_assert_eq!(
                parsed.keys.map(|k| k.bundle),
                with_keys.then(|| crate::signal::PreKeyBundle::from_local(
                    &crate::signal::LocalIdentity {
                        key_pair: identity.key_pair.clone(),
                        registration_id,
                    },
                    u32::from(device),
                    &signed,
                    Some(&prekey),
                ))
            );
        }
    }

    #[test]
    fn retry_reasons() {
        assert_eq!(RetryReason::of(&SignalError::BadMac), RetryReason::BadMac);
        assert_eq!(
            RetryReason::of(&SignalError::NoSenderKey),
            RetryReason::NoSession
        );
        assert_eq!(
            RetryReason::of(&SignalError::MissingPreKey(3)),
            RetryReason::InvalidKeyId
        );
        assert_eq!(
            RetryReason::of(&SignalError::NoValidSession {
                tried: 2,
                current: Box::new(SignalError::BadMac)
            }),
            RetryReason::BadMac
        );
    }
}
