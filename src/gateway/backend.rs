//! What the gateway needs from a linked device: the [`EventBackend`] trait.
//!
//! The gateway never talks to WhatsApp itself. Each instance is an
//! `Arc<dyn EventBackend>`; the WhatsApp client implements the trait (its events API:
//! `send_event`, `respond_to_event`, `edit_event` and its stream of incoming events),
//! and tests can put any other implementation behind it. Until a client is linked,
//! [`DisconnectedBackend`] stands in and every send answers "not connected".
//!
//! Implementing the trait:
//! * the send methods return once the server acknowledged the message (or failed);
//!   the returned [`SentMessage::message_id`] is WhatsApp's message id;
//! * [`BackendError::NotConnected`], [`BackendError::EventNotFound`] and
//!   [`BackendError::Rejected`] promise that nothing was sent; [`BackendError::Failed`]
//!   means the outcome is unknown (the gateway then never re-runs the request under
//!   the same `Idempotency-Key`);
//! * [`EventBackend::subscribe`] hands out receivers of one `tokio::sync::broadcast`
//!   channel; size it for bursts (a receiver that falls behind loses events, which
//!   the gateway logs as an error).

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::event::{EventCard, Rsvp, RsvpResponse};
use crate::jid::Jid;

/// How a message is sent, beyond its content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// Id of a message in the same chat to quote.
    pub reply_to: Option<String>,
    /// Reply to the quoted group message in the author's private chat instead.
    pub reply_private: bool,
    /// Show "typing…" for this long before sending.
    pub typing_delay: Option<Duration>,
    /// Free-form label of who asked for the send (`api` when not given), stored with
    /// the message and echoed to webhooks.
    pub source: Option<String>,
}

/// A message the server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// WhatsApp's message id.
    pub message_id: String,
    /// When it was sent, unix milliseconds.
    pub timestamp_ms: i64,
}

/// Why a backend did not send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The device is not connected to WhatsApp; nothing was sent.
    #[error("instance is not connected to WhatsApp")]
    NotConnected,
    /// The event to answer or edit is not known (no stored message secret); nothing
    /// was sent.
    #[error("event {0} not found")]
    EventNotFound(String),
    /// The request cannot be sent as given (e.g. not a member of the group); nothing
    /// was sent.
    #[error("{0}")]
    Rejected(String),
    /// Sending failed; whether some devices got the message is unknown.
    #[error("{0}")]
    Failed(String),
}

impl BackendError {
    /// Whether the message may have left (only [`BackendError::Failed`]).
    pub fn may_have_sent(&self) -> bool {
        matches!(self, BackendError::Failed(_))
    }
}

/// Something that happened to an event in a chat of the instance, as the client
/// decrypted it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum IncomingEvent {
    /// An event card arrived (from another member, or sent from another of our
    /// devices).
    EventCard {
        /// The chat (group or user).
        chat: Jid,
        /// The card's message id.
        message_id: String,
        /// Who created it (non-AD).
        sender: Jid,
        /// Whether we sent it (from another device of ours).
        from_me: bool,
        /// The card.
        card: EventCard,
        /// When it was sent, unix milliseconds.
        time_ms: i64,
    },
    /// Someone answered an event.
    Rsvp {
        /// The chat of the event.
        chat: Jid,
        /// The response message's own id.
        message_id: String,
        /// The event card's message id.
        event_id: String,
        /// Whether we created the event.
        event_from_me: bool,
        /// The event's creator (non-AD), when known.
        event_creator: Option<Jid>,
        /// Who answered (non-AD, as the message was addressed: LID or phone number).
        voter: Jid,
        /// The voter in the other namespace (phone number for a LID, and back), when
        /// the mapping is known.
        voter_alt: Option<Jid>,
        /// Whether the answer is ours (from another of our devices).
        from_me: bool,
        /// The answer.
        response: RsvpResponse,
        /// Extra guests the voter brings.
        extra_guests: u32,
        /// When it was given, unix milliseconds.
        time_ms: i64,
    },
    /// The creator edited an event (the whole new card).
    EventEdited {
        /// The chat of the event.
        chat: Jid,
        /// The edit message's own id.
        message_id: String,
        /// The event card's message id.
        event_id: String,
        /// Who edited it (non-AD).
        editor: Jid,
        /// The card after the edit.
        card: EventCard,
        /// When it was edited, unix milliseconds.
        time_ms: i64,
    },
    /// The creator canceled an event.
    EventCanceled {
        /// The chat of the event.
        chat: Jid,
        /// The cancel message's own id.
        message_id: String,
        /// The event card's message id.
        event_id: String,
        /// Who canceled it (non-AD).
        editor: Jid,
        /// When it was canceled, unix milliseconds.
        time_ms: i64,
    },
}

impl IncomingEvent {
    /// The event's type in webhooks and on the stream: `event.card`, `event.rsvp`,
    /// `event.edited` or `event.canceled`.
    pub fn kind(&self) -> &'static str {
        match self {
            IncomingEvent::EventCard { .. } => "event.card",
            IncomingEvent::Rsvp { .. } => "event.rsvp",
            IncomingEvent::EventEdited { .. } => "event.edited",
            IncomingEvent::EventCanceled { .. } => "event.canceled",
        }
    }
}

/// One linked device as the gateway uses it. Implemented by the WhatsApp client;
/// object safe (`Arc<dyn EventBackend>`).
#[async_trait]
pub trait EventBackend: Send + Sync {
    /// Sends an event card to `chat` (a group or a user); returns its message id.
    async fn send_event(
        &self,
        chat: &Jid,
        card: &EventCard,
        options: &SendOptions,
    ) -> Result<SentMessage, BackendError>;

    /// Answers the event `event_id` in `chat` (an encrypted RSVP).
    async fn respond_to_event(
        &self,
        chat: &Jid,
        event_id: &str,
        rsvp: &Rsvp,
        options: &SendOptions,
    ) -> Result<SentMessage, BackendError>;

    /// Replaces the event `event_id` in `chat` by `card` (an encrypted EVENT_EDIT;
    /// a canceled card cancels the event).
    async fn edit_event(
        &self,
        chat: &Jid,
        event_id: &str,
        card: &EventCard,
        options: &SendOptions,
    ) -> Result<SentMessage, BackendError>;

    /// Whether the device is connected and logged in right now.
    fn is_connected(&self) -> bool;

    /// A new receiver of the device's incoming events.
    fn subscribe(&self) -> broadcast::Receiver<IncomingEvent>;
}

/// A backend for an instance that has no linked WhatsApp client: never connected,
/// never sends, never receives.
#[derive(Debug)]
pub struct DisconnectedBackend {
    events: broadcast::Sender<IncomingEvent>,
}

impl DisconnectedBackend {
    /// A new disconnected backend.
    pub fn new() -> Self {
        DisconnectedBackend {
            events: broadcast::channel(1).0,
        }
    }
}

impl Default for DisconnectedBackend {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl EventBackend for DisconnectedBackend {
    async fn send_event(
        &self,
        _chat: &Jid,
        _card: &EventCard,
        _options: &SendOptions,
    ) -> Result<SentMessage, BackendError> {
        Err(BackendError::NotConnected)
    }

    async fn respond_to_event(
        &self,
        _chat: &Jid,
        _event_id: &str,
        _rsvp: &Rsvp,
        _options: &SendOptions,
    ) -> Result<SentMessage, BackendError> {
        Err(BackendError::NotConnected)
    }

    async fn edit_event(
        &self,
        _chat: &Jid,
        _event_id: &str,
        _card: &EventCard,
        _options: &SendOptions,
    ) -> Result<SentMessage, BackendError> {
        Err(BackendError::NotConnected)
    }

    fn is_connected(&self) -> bool {
        false
    }

    fn subscribe(&self) -> broadcast::Receiver<IncomingEvent> {
        self.events.subscribe()
    }
}
