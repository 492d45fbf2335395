//! The WhatsApp client: connection, login, pairing as a linked device, IQs and
//! pre-keys, over tokio and tokio-tungstenite.
//!
//! ```text
//! Client::new(store, config) ──▶ (Client, Events)
//! client.connect().await        websocket + Noise handshake + ClientPayload
//!     │                         (registration payload while unpaired, login payload after)
//!     ├─ reader: frames → transport decrypt → binary::unmarshal → dispatch
//!     │     success / failure / stream:error / xmlstreamend   → connection state
//!     │     iq responses and acks                             → waiting send_iq callers
//!     │     server iqs (ping, pair-device, pair-success)      → answered here
//!     │     message / receipt / notification / call / …       → the stanza queue
//!     ├─ writer: node → marshal → transport encrypt → websocket (one task, in order)
//!     ├─ keepalive: w:p pings with a deadline; reconnect after max_fail_time
//!     └─ supervisor: reconnects with capped exponential backoff and jitter,
//!                    at once after 515, never after logout / replaced / fatal errors
//! client.disconnect().await     closes the websocket cleanly; every task ends
//! ```
//!
//! Stanzas the connection layer does not consume (`message`, `receipt`,
//! `notification`, `call`, …) go, in arrival order, through one queue to a
//! [`StanzaHandler`]; the default one ([`MessageHandler`]) decrypts messages and acks
//! everything. The client itself handles the
//! `encrypt` notifications (pre-key replenishment, identity changes) and the
//! pairing-code notification before the handler sees anything.
//!
//! The pure protocol steps live in sans-IO submodules with their own tests:
//! [`pairing`] (QR strings, ADV checks and signature), [`pair_code`] (8-character code,
//! key wrapping and derivations), [`prekeys`] (`encrypt` IQs), [`stanza`] (success,
//! failure, stream errors, acks), [`backoff`]; for received messages [`envelope`]
//! (`<message>` parsing, delivery and retry receipts) and [`decrypt`] (Signal
//! decryption into one store batch), driven by [`receive::MessageHandler`].

pub mod backoff;
pub mod call_link;
pub mod chat_state;
mod config;
mod connection;
pub mod decrypt;
pub mod envelope;
mod error;
mod events;
mod events_api;
#[doc(hidden)]
pub mod events_fuzz;
pub mod fanout_notifications;
#[doc(hidden)]
pub mod fuzz_support;
pub mod group_info;
mod handlers;
pub mod key_bundles;
pub mod pair_code;
pub mod pairing;
pub mod prekeys;
pub mod receive;
#[doc(hidden)]
pub mod receive_support;
pub mod retry_receipt;
pub mod send;
#[doc(hidden)]
pub mod send_fuzz;
mod send_maintenance;
mod send_resolve;
mod socket;
pub mod stanza;
pub mod usync;
mod wire_read;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rand::RngCore;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use backoff::BackoffConfig;
pub use config::{ClientConfig, DEFAULT_ORIGIN, DEFAULT_URL, KeepAliveConfig, QrTiming};
pub use error::{ClientError, ConnectError, IqError};
pub use events::{DisconnectReason, Event, Events, LogoutReason};
pub use events_api::{EventError, MAX_TYPING_DELAY};
pub use handlers::PAIR_CODE_VALIDITY;
pub use receive::{IncomingMessage, MessageHandler, MessageInfo, MessageOutcome};
pub use send::{OutgoingMessage, SendError, SendReceipt};
pub use wire_read::Malformed;

use crate::binary::{Node, marshal};
use crate::jid::Jid;
use crate::store::{DeviceCredentials, Store};

/// Stanzas waiting for the [`StanzaHandler`]. When the handler falls this far behind,
/// the reader waits for it (the server then sees TCP backpressure) instead of buffering
/// without bound.
pub const STANZA_QUEUE_CAPACITY: usize = 16_384;

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// No connection (not started, stopped, or waiting to reconnect).
    Disconnected,
    /// Opening the websocket and running the handshake.
    Connecting,
    /// Connected with the registration payload: waiting for a QR scan or a pairing
    /// code.
    AwaitingPairing,
    /// Logged in (`<success>` received).
    LoggedIn,
}

/// Receives every stanza the connection layer does not handle itself (`message`,
/// `receipt`, `notification` other than `encrypt` and `link_code_companion_reg`,
/// `call`, `presence`, `chatstate`, unmatched `ack`s, …), one at a time in arrival
/// order, on a task of its own: a handler may await IQs (their responses are read by
/// another task). It must ack what it receives ([`Client::send_ack`]), or the server
/// redelivers it and eventually recycles the stream.
#[async_trait]
pub trait StanzaHandler: Send + Sync {
    /// Handles one stanza.
    async fn handle(&self, client: &Client, stanza: Node);
}

/// A minimal handler: acks `receipt`, `notification` and `call` stanzas and
/// `message`s (without decrypting them or sending a delivery receipt), ignores the
/// rest. The default is [`MessageHandler`].
#[derive(Debug, Default, Clone, Copy)]
pub struct AckingHandler;

#[async_trait]
impl StanzaHandler for AckingHandler {
    async fn handle(&self, client: &Client, stanza: Node) {
        if matches!(
            stanza.tag.as_ref(),
            "message" | "receipt" | "notification" | "call"
        ) && let Err(e) = client.send_ack(&stanza, None).await
        {
            tracing::debug!(error = %e, tag = %stanza.tag, "could not ack a stanza");
        }
    }
}

/// A handle on the client; clones share one connection. Create one with
/// [`Client::new`], start it with [`Client::connect`], stop it with
/// [`Client::disconnect`] (dropping handles does not stop a running connection).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.config.url)
            .field("state", &*self.inner.state.borrow())
            .finish_non_exhaustive()
    }
}

/// A running supervisor and the switch that stops it.
struct Running {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The live session's outgoing side.
#[derive(Clone)]
pub(crate) struct SessionLink {
    pub id: u64,
    pub out: mpsc::UnboundedSender<connection::Outgoing>,
    pub end: mpsc::UnboundedSender<connection::SessionEnd>,
}

/// A pairing-code attempt waiting for the phone.
pub(crate) struct PendingPairCode {
    pub phone: Jid,
    pub hello: pair_code::CompanionHello,
    pub pairing_ref: Vec<u8>,
}

pub(crate) struct Inner {
    store: Arc<dyn Store>,
    config: ClientConfig,
    events: mpsc::UnboundedSender<Event>,
    /// The credentials in use (loaded on connect). Writers hold the lock across the
    /// store write so memory and disk stay equal.
    creds: tokio::sync::Mutex<Option<DeviceCredentials>>,
    session: Mutex<Option<SessionLink>>,
    waiters: Mutex<HashMap<String, oneshot::Sender<Node>>>,
    state: watch::Sender<ConnectionState>,
    running: Mutex<Option<Running>>,
    stanzas: mpsc::Sender<Node>,
    stanza_rx: Mutex<Option<mpsc::Receiver<Node>>>,
    handler: std::sync::RwLock<Arc<dyn StanzaHandler>>,
    prekey_upload: tokio::sync::Mutex<()>,
    pair_code: Mutex<Option<PendingPairCode>>,
    id_prefix: String,
    id_counter: AtomicU64,
    session_counter: AtomicU64,
    /// The send pipeline's per-group fan-out states and Signal-state lock.
    pub(crate) send: send::SendState,
}

/// Locks a std mutex, recovering the data if a panicking thread poisoned it (every
/// critical section here leaves the data consistent).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Client {
    /// A client over `store` (credentials are created on first connect if the store
    /// has none) and the receiver of its events.
    pub fn new(store: Arc<dyn Store>, config: ClientConfig) -> (Client, Events) {
        let (events, rx) = mpsc::unbounded_channel();
        let (stanzas, stanza_rx) = mpsc::channel(STANZA_QUEUE_CAPACITY);
        let mut prefix = [0u8; 2];
        rand::rngs::OsRng.fill_bytes(&mut prefix);
        let inner = Inner {
            store,
            config,
            events,
            creds: tokio::sync::Mutex::new(None),
            session: Mutex::new(None),
            waiters: Mutex::new(HashMap::new()),
            state: watch::Sender::new(ConnectionState::Disconnected),
            running: Mutex::new(None),
            stanzas,
            stanza_rx: Mutex::new(Some(stanza_rx)),
            handler: std::sync::RwLock::new(Arc::new(MessageHandler::new())),
            prekey_upload: tokio::sync::Mutex::new(()),
            pair_code: Mutex::new(None),
            id_prefix: format!("{}.{}-", prefix[0], prefix[1]),
            id_counter: AtomicU64::new(1),
            session_counter: AtomicU64::new(0),
            send: send::SendState::default(),
        };
        (
            Client {
                inner: Arc::new(inner),
            },
            Events { rx },
        )
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Replaces the handler of stanzas the connection layer does not consume.
    pub fn set_stanza_handler(&self, handler: Arc<dyn StanzaHandler>) {
        *self
            .inner
            .handler
            .write()
            .unwrap_or_else(|p| p.into_inner()) = handler;
    }

    /// The connection state now.
    pub fn state(&self) -> ConnectionState {
        *self.inner.state.borrow()
    }

    /// A receiver that sees every state change.
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.inner.state.subscribe()
    }

    /// Waits until the state is `wanted`, up to `timeout`.
    pub async fn wait_for_state(
        &self,
        wanted: ConnectionState,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let mut rx = self.inner.state.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s == wanted))
            .await
            .map_err(|_| ClientError::Timeout(timeout, "the connection state"))?
            .map(drop)
            .map_err(|_| ClientError::NotConnected)
    }

    /// The stored credentials (loaded from the store when not in memory yet).
    pub async fn credentials(&self) -> Result<Option<DeviceCredentials>, ClientError> {
        let mut guard = self.inner.creds.lock().await;
        if guard.is_none() {
            *guard = self.inner.store.load_credentials().await?;
        }
        Ok(guard.clone())
    }

    /// Our phone-number device JID, once paired.
    pub async fn own_jid(&self) -> Option<Jid> {
        self.credentials().await.ok().flatten().and_then(|c| c.pn)
    }

    /// Our LID device JID, once known.
    pub async fn own_lid(&self) -> Option<Jid> {
        self.credentials().await.ok().flatten().and_then(|c| c.lid)
    }

    /// A fresh stanza id (`<rnd>.<rnd>-<counter>`, unique for this client).
    pub fn generate_id(&self) -> String {
        let n = self.inner.id_counter.fetch_add(1, Ordering::Relaxed);
        format!("{}{n}", self.inner.id_prefix)
    }

    /// Sends one stanza on the live connection (encoded now, encrypted and written in
    /// order by the writer task). Refuses when not connected.
    pub async fn send_node(&self, node: &Node) -> Result<(), ClientError> {
        let bytes = marshal(node).map_err(|e| ClientError::Encode {
            tag: node.tag.to_string(),
            detail: e.to_string(),
        })?;
        tracing::trace!(%node, "send");
        self.send_frame(bytes)
    }

    /// Queues an already marshaled stanza (flags byte and node, as [`marshal`] makes
    /// it) for the writer task. Refuses when not connected.
    pub(crate) fn send_frame(&self, frame: Vec<u8>) -> Result<(), ClientError> {
        let link = self.session_link().ok_or(ClientError::NotConnected)?;
        link.out
            .send(connection::Outgoing::Frame(frame))
            .map_err(|_| ClientError::NotConnected)
    }

    /// Sends an IQ request (`<iq type="get|set">`; an `id` is added when missing) and
    /// waits for the `result`, up to the configured IQ timeout. A `type="error"`
    /// response becomes [`IqError::Server`] with its code and text.
    pub async fn send_iq(&self, iq: Node) -> Result<Node, IqError> {
        self.send_iq_timeout(iq, self.inner.config.iq_timeout).await
    }

    /// [`send_iq`](Self::send_iq) with its own timeout.
    pub async fn send_iq_timeout(&self, mut iq: Node, timeout: Duration) -> Result<Node, IqError> {
        if iq.tag != "iq" || !matches!(iq.attr_str("type"), Some("get" | "set")) {
            return Err(IqError::NotARequest(format!(
                "<{} type={:?}>",
                iq.tag,
                iq.attr_str("type")
            )));
        }
        let id = match iq.attr_str("id") {
            Some(id) => id.to_owned(),
            None => {
                let id = self.generate_id();
                iq.attrs.set("id", id.as_str());
                id
            }
        };
        let response = self.send_and_wait(&iq, &id, timeout).await?;
        if response.tag == "iq" && response.attr_str("type") == Some("error") {
            let (code, text) = stanza::iq_error_of(&response);
            return Err(IqError::Server { id, code, text });
        }
        Ok(response)
    }

    /// Sends `node` and waits for the stanza answering its `id` (an `<iq>` result or
    /// error, or an `<ack>`), up to `timeout`. For message sends that wait for the
    /// server's ack.
    pub async fn send_and_wait(
        &self,
        node: &Node,
        id: &str,
        timeout: Duration,
    ) -> Result<Node, IqError> {
        let frame = marshal(node).map_err(|e| IqError::Encode(e.to_string()))?;
        tracing::trace!(%node, "send");
        self.send_frame_and_wait(frame, id, timeout).await
    }

    /// [`send_and_wait`](Self::send_and_wait) for a stanza already marshaled (a big
    /// group message is encoded once, for the store and the wire).
    pub(crate) async fn send_frame_and_wait(
        &self,
        frame: Vec<u8>,
        id: &str,
        timeout: Duration,
    ) -> Result<Node, IqError> {
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.waiters).insert(id.to_owned(), tx);
        if self.send_frame(frame).is_err() {
            lock(&self.inner.waiters).remove(id);
            return Err(IqError::NotConnected);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(IqError::Disconnected { id: id.to_owned() }),
            Err(_) => {
                lock(&self.inner.waiters).remove(id);
                Err(IqError::Timeout {
                    id: id.to_owned(),
                    after: timeout,
                })
            }
        }
    }

    /// Acks a received stanza (see [`stanza::ack_for`]); `error` makes it a nack.
    pub async fn send_ack(&self, stanza: &Node, error: Option<u16>) -> Result<(), ClientError> {
        let own = self.own_jid().await;
        match stanza::ack_for(stanza, own.as_ref(), error) {
            Some(ack) => self.send_node(&ack).await,
            None => Ok(()),
        }
    }

    pub(crate) fn session_link(&self) -> Option<SessionLink> {
        lock(&self.inner.session).clone()
    }

    pub(crate) fn emit(&self, event: Event) {
        tracing::debug!(?event, "event");
        // Nobody listening is not an error.
        let _ = self.inner.events.send(event);
    }

    pub(crate) fn set_state(&self, state: ConnectionState) {
        self.inner.state.send_replace(state);
    }
}
