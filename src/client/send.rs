//! Sending messages: the group pipeline (group metadata, usync device lists, bundle
//! fetch, sender-key distribution, `skmsg` + `participants`, `phash`, ack) and 1:1
//! chats (`pkmsg`/`msg` to every device, `DeviceSentMessage` to our own), with the
//! state of every send committed to the store before the bytes leave.
//!
//! (Issue 5 skeleton: the signatures other modules build on. The send pipeline owner
//! replaces the bodies.)

use crate::binary::Node;
use crate::jid::Jid;
use crate::proto::e2e;
use crate::store::StoreBatch;

use super::Client;

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
}

impl Client {
    /// Sends `message` to `chat` (a group `@g.us`, or a user) and waits for the
    /// server's ack. Refuses when not logged in.
    pub async fn send_message(
        &self,
        chat: &Jid,
        message: OutgoingMessage,
    ) -> Result<SendReceipt, SendError> {
        let _ = (chat, message);
        Err(SendError::Failed("group send not implemented yet".into()))
    }

    /// Answers a server `receipt type="retry"` for one of our messages: re-encrypts
    /// for that one device (bounded retries). Called by the stanza handler, which acks
    /// the receipt afterwards.
    #[allow(dead_code)]
    pub(crate) async fn handle_retry_receipt(&self, receipt: &Node) {
        let _ = receipt;
    }

    /// Applies a `notification` of type `devices` or `w:gp2` to the device-list and
    /// group caches (and rotates our sender key of a group when a member left).
    /// Called by the stanza handler, which acks the notification afterwards.
    #[allow(dead_code)]
    pub(crate) async fn handle_fanout_notification(&self, notification: &Node) {
        let _ = notification;
    }
}
