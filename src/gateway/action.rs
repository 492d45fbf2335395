//! What a validated request asks the instance to do, whichever API it came from.

use super::backend::{BackendError, EventBackend, SendOptions, SentMessage};
use super::http::now_ms;
use crate::event::{EventCard, Rsvp, RsvpResponse};
use crate::jid::Jid;

/// One send, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Send a new event card.
    Send {
        chat: Jid,
        card: EventCard,
        options: SendOptions,
    },
    /// Replace an event by a new card.
    Edit {
        chat: Jid,
        event_id: String,
        card: EventCard,
    },
    /// Answer an event.
    Respond {
        chat: Jid,
        event_id: String,
        response: RsvpResponse,
    },
}

/// Why an action did not succeed (the backend's error).
pub(crate) type ActionError = BackendError;

impl Action {
    /// Runs the action on `backend`.
    pub async fn run(&self, backend: &dyn EventBackend) -> Result<SentMessage, ActionError> {
        match self {
            Action::Send {
                chat,
                card,
                options,
            } => backend.send_event(chat, card, options).await,
            Action::Edit {
                chat,
                event_id,
                card,
            } => {
                backend
                    .edit_event(chat, event_id, card, &SendOptions::default())
                    .await
            }
            Action::Respond {
                chat,
                event_id,
                response,
            } => {
                let rsvp = Rsvp::new(*response, now_ms());
                backend
                    .respond_to_event(chat, event_id, &rsvp, &SendOptions::default())
                    .await
            }
        }
    }
}
