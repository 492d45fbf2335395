//! Receiving messages: decrypt `pkmsg`/`msg`/`skmsg`, process embedded sender keys,
//! keep the plaintext until it is handled, send delivery receipts and acks, ask for a
//! retry when a message cannot be decrypted.
//!
//! (Issue 5 skeleton: the types other modules build on. The receive pipeline owner
//! fills in the pipeline.)

use crate::jid::Jid;
use crate::proto::e2e;

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
