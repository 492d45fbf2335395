//! The events API: send event cards, answer them, edit and cancel them, and follow
//! what members answer.
//!
//! (Issue 5 skeleton: the signatures the gateway and the CLI build on. The events API
//! owner replaces the bodies.)

use crate::event::{EventCard, Rsvp, SendOptions};
use crate::jid::Jid;
use crate::store::EventTally;

use super::Client;
use super::receive::IncomingMessage;
use super::send::{SendError, SendReceipt};

/// Why an events-API call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The event to answer, edit or cancel is not known (no stored message secret);
    /// nothing was sent.
    #[error("event {0} not found")]
    EventNotFound(String),
    /// The request is not allowed (e.g. editing an event someone else created);
    /// nothing was sent.
    #[error("{0}")]
    Rejected(String),
    /// Sending failed.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
}

impl Client {
    /// Sends an event card to `chat`; returns once the server acked it. The card's
    /// message secret is stored before the bytes leave.
    pub async fn send_event(
        &self,
        chat: &Jid,
        card: &EventCard,
        options: &SendOptions,
    ) -> Result<SendReceipt, EventError> {
        let _ = (chat, card, options);
        Err(EventError::Rejected(
            "send_event not implemented yet".into(),
        ))
    }

    /// Answers the event `event_id` in `chat` with an encrypted RSVP.
    pub async fn respond_to_event(
        &self,
        chat: &Jid,
        event_id: &str,
        rsvp: &Rsvp,
        options: &SendOptions,
    ) -> Result<SendReceipt, EventError> {
        let _ = (chat, event_id, rsvp, options);
        Err(EventError::Rejected(
            "respond_to_event not implemented yet".into(),
        ))
    }

    /// Replaces the event `event_id` in `chat` (created by us) by `card` (an
    /// encrypted EVENT_EDIT).
    pub async fn edit_event(
        &self,
        chat: &Jid,
        event_id: &str,
        card: &EventCard,
        options: &SendOptions,
    ) -> Result<SendReceipt, EventError> {
        let _ = (chat, event_id, card, options);
        Err(EventError::Rejected(
            "edit_event not implemented yet".into(),
        ))
    }

    /// Cancels the event `event_id` in `chat` (an edit with `isCanceled`).
    pub async fn cancel_event(
        &self,
        chat: &Jid,
        event_id: &str,
        options: &SendOptions,
    ) -> Result<SendReceipt, EventError> {
        let _ = (chat, event_id, options);
        Err(EventError::Rejected(
            "cancel_event not implemented yet".into(),
        ))
    }

    /// The latest answer of every voter and the totals, from the store.
    pub async fn event_tally(&self, event_id: &str) -> Result<EventTally, EventError> {
        let _ = event_id;
        Err(EventError::Rejected(
            "event_tally not implemented yet".into(),
        ))
    }

    /// Called by the receive pipeline for every decrypted message after its plaintext
    /// is stored; must be idempotent (a redelivery after a crash calls it again).
    #[allow(dead_code)]
    pub(crate) async fn handle_incoming_message(&self, message: &IncomingMessage) {
        let _ = message;
    }
}
