//! Types shared by the client's events API and the gateway: how a send is shaped
//! ([`SendOptions`]) and what arrives ([`IncomingEvent`]).

use std::time::Duration;

use super::{EventCard, RsvpResponse};
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
    /// Free-form label of who asked for the send: logged (as `api` when not given),
    /// stored with the sent message ([`crate::store::SentMessage::source`]) and echoed
    /// in the gateway's RyzeAPI answer.
    pub source: Option<String>,
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
