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

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::event::{EventCard, Rsvp};
pub use crate::event::{IncomingEvent, SendOptions};
use crate::jid::Jid;

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
