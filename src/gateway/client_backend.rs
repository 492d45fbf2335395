//! [`EventBackend`] for the real WhatsApp [`Client`]: what `waevent serve` puts behind
//! every instance.
//!
//! [`ClientBackend::spawn`] takes a client and its [`Events`] receiver and starts one
//! task that reads the events in order: every [`Event::Activity`] (an incoming card,
//! RSVP, edit or cancellation, already decrypted and stored by the client) goes to
//! the broadcast channel the gateway subscribes to; every event (connection changes
//! included) also goes to [`ClientBackend::client_events`] receivers and to the log.
//!
//! Errors keep the trait's promises: only outcomes for which the events API
//! guarantees that nothing left become [`BackendError::NotConnected`],
//! [`BackendError::EventNotFound`] or [`BackendError::Rejected`] (see
//! [`backend_error`]); everything else is [`BackendError::Failed`], so the gateway
//! never re-runs such a request under the same `Idempotency-Key`.

use async_trait::async_trait;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::backend::{BackendError, EventBackend, IncomingEvent, SendOptions, SentMessage};
use crate::client::{Client, ConnectionState, Event, EventError, Events, SendError, SendReceipt};
use crate::event::{EventCard, Rsvp};
use crate::jid::Jid;

/// Capacity of the incoming-event channel: a burst of RSVPs from a large group fits
/// before a slow subscriber lags.
pub const ACTIVITY_CAPACITY: usize = 8192;

/// Capacity of the channel of all client events (connection changes and activity).
pub const CLIENT_EVENT_CAPACITY: usize = 8192;

/// The WhatsApp client as a gateway instance. Dropping it stops the event pump (the
/// client itself keeps running until [`Client::disconnect`]).
pub struct ClientBackend {
    client: Client,
    activity: broadcast::Sender<IncomingEvent>,
    client_events: broadcast::Sender<Event>,
    pump: JoinHandle<()>,
}

impl std::fmt::Debug for ClientBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBackend")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl ClientBackend {
    /// Wraps `client`, reading `events` (the receiver [`Client::new`] returned) on a
    /// task of its own. Must be called inside a tokio runtime.
    pub fn spawn(client: Client, events: Events) -> ClientBackend {
        let activity = broadcast::channel(ACTIVITY_CAPACITY).0;
        let client_events = broadcast::channel(CLIENT_EVENT_CAPACITY).0;
        let pump = tokio::spawn(pump_events(events, activity.clone(), client_events.clone()));
        ClientBackend {
            client,
            activity,
            client_events,
            pump,
        }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A receiver of every client event from now on (connection changes, pairing,
    /// activity).
    pub fn client_events(&self) -> broadcast::Receiver<Event> {
        self.client_events.subscribe()
    }
}

impl Drop for ClientBackend {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

/// Reads the client's events until every client handle is gone.
async fn pump_events(
    mut events: Events,
    activity: broadcast::Sender<IncomingEvent>,
    client_events: broadcast::Sender<Event>,
) {
    while let Some(event) = events.recv().await {
        match &event {
            Event::Activity(incoming) => {
                // No subscriber yet is not an error: the gateway subscribes at start.
                let _ = activity.send((**incoming).clone());
            }
            Event::Connected => tracing::info!("WhatsApp connection logged in"),
            Event::Disconnected {
                reason,
                will_reconnect,
            } => tracing::warn!(%reason, will_reconnect, "WhatsApp connection lost"),
            Event::LoggedOut { reason } => {
                tracing::error!(%reason, "device logged out: pair it again")
            }
            Event::StreamReplaced => {
                tracing::error!("another connection of this device took over")
            }
            other => tracing::debug!(event = ?other, "client event"),
        }
        let _ = client_events.send(event);
    }
}

/// Maps an events-API error onto the gateway's promises: `NotConnected`,
/// `EventNotFound` and `Rejected` only where the events API guarantees that nothing
/// was sent; a server refusal, a store failure or an unknown outcome is `Failed`.
pub fn backend_error(error: EventError) -> BackendError {
    match error {
        EventError::EventNotFound(id) => BackendError::EventNotFound(id),
        EventError::Rejected(why) => BackendError::Rejected(why),
        EventError::Send(SendError::NotConnected) => BackendError::NotConnected,
        EventError::Send(SendError::Rejected(why)) => BackendError::Rejected(why),
        // A card without its secret, a call link the server would not make: refused
        // before anything was encrypted.
        other @ (EventError::MissingSecret { .. } | EventError::CallLink(_)) => {
            BackendError::Rejected(other.to_string())
        }
        other => BackendError::Failed(other.to_string()),
    }
}

/// The server's ack as the gateway reports it.
pub fn sent_message(receipt: SendReceipt) -> SentMessage {
    SentMessage {
        message_id: receipt.message_id,
        timestamp_ms: receipt.server_time.saturating_mul(1000),
    }
}

#[async_trait]
impl EventBackend for ClientBackend {
    async fn send_event(
        &self,
        chat: &Jid,
        card: &EventCard,
        options: &SendOptions,
    ) -> Result<SentMessage, BackendError> {
        self.client
            .send_event(chat, card, options)
            .await
            .map(sent_message)
            .map_err(backend_error)
    }

    async fn respond_to_event(
        &self,
        chat: &Jid,
        event_id: &str,
        rsvp: &Rsvp,
        options: &SendOptions,
    ) -> Result<SentMessage, BackendError> {
        self.client
            .respond_to_event(chat, event_id, rsvp, options)
            .await
            .map(sent_message)
            .map_err(backend_error)
    }

    async fn edit_event(
        &self,
        chat: &Jid,
        event_id: &str,
        card: &EventCard,
        options: &SendOptions,
    ) -> Result<SentMessage, BackendError> {
        // A canceled card is sent as the edit WhatsApp's apps send to cancel.
        let result = self.client.edit_event(chat, event_id, card, options).await;
        result.map(sent_message).map_err(backend_error)
    }

    fn is_connected(&self) -> bool {
        self.client.state() == ConnectionState::LoggedIn
    }

    fn subscribe(&self) -> broadcast::Receiver<IncomingEvent> {
        self.activity.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_guaranteed_unsent_outcomes_free_the_request() {
        let cases = [
            (
                EventError::EventNotFound("3EB0AA".into()),
                BackendError::EventNotFound("3EB0AA".into()),
            ),
            (
                EventError::Rejected("not the creator".into()),
                BackendError::Rejected("not the creator".into()),
            ),
            (
                EventError::Send(SendError::NotConnected),
                BackendError::NotConnected,
            ),
            (
                EventError::Send(SendError::Rejected("not a member of the group".into())),
                BackendError::Rejected("not a member of the group".into()),
            ),
        ];
        for (from, want) in cases {
            let got = backend_error(from);
            assert_eq!(got, want);
            assert!(!got.may_have_sent());
        }
        for unknown in [
            EventError::Send(SendError::Failed("socket closed".into())),
            EventError::Send(SendError::ServerError {
                id: "3EB0AA".into(),
                code: 479,
            }),
            EventError::Store("disk full".into()),
        ] {
            let text = unknown.to_string();
            let got = backend_error(unknown);
            assert!(got.may_have_sent(), "{got:?}");
            assert_eq!(got, BackendError::Failed(text));
        }
    }

    #[test]
    fn server_time_becomes_milliseconds_without_overflow() {
        let sent = sent_message(SendReceipt {
            message_id: "3EB0X".into(),
            server_time: 1_777_000_000,
            pairwise_devices: 3,
        });
        assert_eq!(sent.timestamp_ms, 1_777_000_000_000);
        assert_eq!(sent.message_id, "3EB0X");
        let huge = sent_message(SendReceipt {
            message_id: "x".into(),
            server_time: i64::MAX,
            pairwise_devices: 0,
        });
        assert_eq!(huge.timestamp_ms, i64::MAX);
    }
}
