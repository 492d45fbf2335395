//! The HTTP gateway (`waevent serve`): Z-API and RyzeAPI compatible routes for event
//! cards and RSVPs over one or more linked devices ("instances"), signed webhooks
//! that survive restarts, a WebSocket event stream, `Idempotency-Key`, and an
//! OpenAPI document.
//!
//! # Routes
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | POST | `/instances/{instance}/token/{token}/send-event` | Z-API: send an event card ([`zapi`]) |
//! | POST | `/instances/{instance}/token/{token}/send-edit-event` | Z-API: replace an event (fields left out are removed) |
//! | POST | `/instances/{instance}/token/{token}/send-event-response` | Z-API: answer an event (`GOING`, `NOT_GOING`, `MAYBE`) |
//! | POST | `/api/message/event/{instance}` | RyzeAPI: send an event card, `token` header ([`ryze`]) |
//! | GET | `/instances/{instance}/events` | WebSocket stream of incoming events |
//! | GET | `/healthz` | liveness: `{"status":"ok", …}` |
//! | GET | `/openapi.json` | OpenAPI 3.1 document of all of the above ([`openapi`]) |
//!
//! Z-API routes answer `{"zaapId", "messageId", "id"}` or `{"error": "…"}`; they want
//! `Content-Type: application/json` (else 415) and, when the instance has a
//! `client_token`, the `Client-Token` header. RyzeAPI answers `{"success": true, …,
//! "data": {"messageId", …}}` or `{"success": false, "error": {"message": "…"}}` with
//! RyzeAPI's exact error texts (the card's texts come from [`crate::event`]). A wrong
//! method gets 405 with `Allow: POST`; a body over `body_limit` gets 413.
//!
//! # Times
//!
//! RyzeAPI's `startAt`/`endAt` are RFC3339 with an offset (or unix seconds). Z-API's
//! `dateTime` may come without an offset: it is then a wall time in `timeZone`
//! (`UTC-3`, `UTC+05:30`, `GMT+1`, `-03:00`), or in UTC when `timeZone` is absent. A
//! `dateTime` with an offset (`Z` included) keeps its offset and `timeZone` is ignored —
//! so Z-API's own example `"2024-04-29T09:30:53.309Z"` with `"UTC-3"` is 09:30 UTC; send
//! `"2024-04-29T09:30:53"` for 09:30 at UTC-3.
//!
//! # Incoming events
//!
//! Each instance's [`EventBackend::subscribe`] stream is pumped into the instance's
//! store outbox (before any delivery attempt), delivered to the webhook URLs with an
//! HMAC-SHA256 signature and retried with capped exponential backoff until a 2xx
//! ([`webhook`]); the same events go to the WebSocket stream.
//!
//! # Idempotency
//!
//! A POST with `Idempotency-Key` (1 to 256 printable ASCII characters) runs at most
//! once per instance and key: duplicates — concurrent ones too, and after a restart —
//! get the first response byte for byte, with the header `Idempotent-Replayed: true`.
//! A key is freed again when nothing was sent (not connected, event not found, refused
//! by the backend); once the backend was asked, its answer is kept. The same key with
//! a different request gets 422; a key whose request never finished (the gateway died
//! mid-send) gets 409.
//!
//! # Security
//!
//! Tokens and secrets are compared in constant time, never logged, and redacted from
//! `Debug` ([`Secret`]). Logs (`tracing`) record API, route, instance, status — never
//! paths (the Z-API path holds the token), bodies or headers.
//!
//! # Wiring
//!
//! [`Gateway::new`] takes the configuration, one [`EventBackend`] and one
//! [`Store`] per instance (injectable: tests use their own
//! backend), [`Gateway::open`] opens each instance's SQLite store from the config.
//! [`Gateway::start`] serves on a listener and runs the background tasks until the
//! returned [`RunningGateway`] is shut down or dropped.

mod action;
pub mod backend;
pub mod client_backend;
pub mod config;
#[doc(hidden)]
pub mod fuzz_support;
mod http;
mod idempotency;
pub mod openapi;
pub mod ryze;
mod stream;
pub mod webhook;
pub mod zapi;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;

pub use backend::{
    BackendError, DisconnectedBackend, EventBackend, IncomingEvent, SendOptions, SentMessage,
};
pub use client_backend::ClientBackend;
pub use config::{ConfigError, GatewayConfig, InstanceConfig, Secret, WebhookSettings};

use crate::store::Store;
use http::Reply;

/// Capacity of each instance's stream channel (frames a slow WebSocket client may fall
/// behind before it gets a `stream.lagged` frame).
pub const STREAM_CAPACITY: usize = 1024;

/// Why a gateway could not be built or started.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An instance of the configuration has no backend.
    #[error("instance {0:?} has no backend")]
    MissingBackend(String),
    /// An instance of the configuration has no store (neither given nor configured).
    #[error("instance {0:?} has no store (set `store` in its config)")]
    MissingStore(String),
    /// A backend or store was given for a name the configuration does not have.
    #[error("{0:?} is not an instance of the configuration")]
    UnknownInstance(String),
    /// Two instances were given the same store.
    #[error("instances {0:?} and {1:?} share one store; give each its own")]
    SharedStore(String, String),
    /// An instance's store could not be opened.
    #[error("cannot open the store of instance {instance:?}: {source}")]
    Store {
        /// The instance.
        instance: String,
        /// Why.
        source: crate::store::Error,
    },
    /// The webhook HTTP client could not be built.
    #[error("cannot build the webhook HTTP client: {0}")]
    Http(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// One instance at run time.
pub(crate) struct InstanceRuntime {
    pub config: InstanceConfig,
    pub backend: Arc<dyn EventBackend>,
    pub store: Arc<dyn Store>,
    /// Serialized events for the WebSocket streams.
    pub stream: broadcast::Sender<Arc<str>>,
    /// Wakes the delivery worker when a job was queued.
    pub wake: Arc<Notify>,
}

/// What every handler sees.
pub(crate) struct AppState {
    pub instances: HashMap<String, Arc<InstanceRuntime>>,
    pub locks: idempotency::KeyLocks,
    pub body_limit: usize,
    pub openapi: String,
}

/// A configured gateway, ready to serve. See the [module docs](self).
pub struct Gateway {
    app: Arc<AppState>,
    config: GatewayConfig,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Builds a gateway from a configuration and, for every configured instance, a
    /// backend and a store. Refuses an invalid configuration, an instance without a
    /// backend or store, a backend or store for an unknown name, and one store shared
    /// by two instances.
    pub fn new(
        config: GatewayConfig,
        mut backends: HashMap<String, Arc<dyn EventBackend>>,
        mut stores: HashMap<String, Arc<dyn Store>>,
    ) -> Result<Gateway, GatewayError> {
        config.validate()?;
        let mut instances = HashMap::new();
        let mut seen: Vec<(&str, *const ())> = Vec::new();
        for inst in &config.instances {
            let backend = backends
                .remove(&inst.name)
                .ok_or_else(|| GatewayError::MissingBackend(inst.name.clone()))?;
            let store = stores
                .remove(&inst.name)
                .ok_or_else(|| GatewayError::MissingStore(inst.name.clone()))?;
            let ptr = Arc::as_ptr(&store) as *const ();
            if let Some((other, _)) = seen.iter().find(|(_, p)| *p == ptr) {
                return Err(GatewayError::SharedStore(
                    (*other).to_string(),
                    inst.name.clone(),
                ));
            }
            seen.push((&inst.name, ptr));
            let runtime = InstanceRuntime {
                config: inst.clone(),
                backend,
                store,
                stream: broadcast::channel(STREAM_CAPACITY).0,
                wake: Arc::new(Notify::new()),
            };
            instances.insert(inst.name.clone(), Arc::new(runtime));
        }
        if let Some(name) = backends.into_keys().chain(stores.into_keys()).next() {
            return Err(GatewayError::UnknownInstance(name));
        }
        let app = AppState {
            instances,
            locks: idempotency::KeyLocks::default(),
            body_limit: config.body_limit,
            openapi: openapi::document().to_string(),
        };
        Ok(Gateway {
            app: Arc::new(app),
            config,
        })
    }

    /// Like [`Gateway::new`], opening each instance's SQLite store at its configured
    /// `store` path.
    #[cfg(feature = "sqlite")]
    pub async fn open(
        config: GatewayConfig,
        backends: HashMap<String, Arc<dyn EventBackend>>,
    ) -> Result<Gateway, GatewayError> {
        let mut stores: HashMap<String, Arc<dyn Store>> = HashMap::new();
        for inst in &config.instances {
            let path = inst
                .store
                .as_ref()
                .ok_or_else(|| GatewayError::MissingStore(inst.name.clone()))?;
            let store = crate::store::SqliteStore::open(path)
                .await
                .map_err(|source| GatewayError::Store {
                    instance: inst.name.clone(),
                    source,
                })?;
            stores.insert(inst.name.clone(), Arc::new(store));
        }
        Gateway::new(config, backends, stores)
    }

    /// The configuration.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// The HTTP routes (without the background webhook and stream tasks, which
    /// [`Gateway::start`] runs).
    pub fn router(&self) -> Router {
        let ryze_missing = || post(ryze::missing_instance).fallback(ryze::method_not_allowed);
        Router::new()
            .route("/healthz", get(healthz))
            .route("/openapi.json", get(openapi_json))
            .route(
                "/instances/{instance}/token/{token}/send-event",
                post(zapi::send_event).fallback(zapi::method_not_allowed),
            )
            .route(
                "/instances/{instance}/token/{token}/send-edit-event",
                post(zapi::send_edit_event).fallback(zapi::method_not_allowed),
            )
            .route(
                "/instances/{instance}/token/{token}/send-event-response",
                post(zapi::send_event_response).fallback(zapi::method_not_allowed),
            )
            .route("/instances/{instance}/events", get(stream::events))
            .route(
                "/api/message/event/{instance}",
                post(ryze::send_event).fallback(ryze::method_not_allowed),
            )
            .route("/api/message/event", ryze_missing())
            .route("/api/message/event/", ryze_missing())
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(self.config.body_limit))
            .with_state(self.app.clone())
    }

    /// Binds the configured `listen` address and starts (see [`Gateway::start`]).
    pub async fn bind(self) -> Result<RunningGateway, GatewayError> {
        let addr = self.config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Listen { addr, source })?;
        self.start(listener)
    }

    /// Serves on `listener` and starts, per instance, the event pump (backend events
    /// into the webhook outbox and the stream), the webhook delivery worker and the
    /// expiry of old idempotency keys.
    pub fn start(self, listener: TcpListener) -> Result<RunningGateway, GatewayError> {
        let addr = listener
            .local_addr()
            .map_err(|source| GatewayError::Listen {
                addr: self.config.listen,
                source,
            })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| GatewayError::Http(e.to_string()))?;
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for inst in self.app.instances.values() {
            let events = inst.backend.subscribe();
            tasks.push(tokio::spawn(webhook::run_event_pump(
                inst.clone(),
                events,
                stop_rx.clone(),
            )));
            tasks.push(tokio::spawn(idempotency::run_pruning(
                inst.clone(),
                Duration::from_secs(self.config.idempotency_ttl_secs),
                stop_rx.clone(),
            )));
            tasks.push(tokio::spawn(webhook::run_delivery(
                inst.clone(),
                self.config.webhook.clone(),
                http.clone(),
                inst.wake.clone(),
                stop_rx.clone(),
            )));
        }
        let router = self.router();
        let mut server_stop = stop_rx.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = server_stop.wait_for(|s| *s).await;
                })
                .await
        });
        tracing::info!(%addr, instances = self.app.instances.len(), "gateway listening");
        Ok(RunningGateway {
            addr,
            stop,
            server: Some(server),
            tasks,
        })
    }
}

/// A gateway serving in the background. [`RunningGateway::shutdown`] stops it
/// gracefully; dropping it stops everything at once (queued webhooks stay in the
/// store for the next start).
#[derive(Debug)]
pub struct RunningGateway {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningGateway {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting requests, lets running ones finish (up to 10 s), and stops
    /// the background tasks.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        let mut result = Ok(());
        if let Some(mut server) = self.server.take() {
            match tokio::time::timeout(Duration::from_secs(10), &mut server).await {
                Ok(Ok(r)) => result = r,
                Ok(Err(join)) => result = Err(std::io::Error::other(join.to_string())),
                Err(_) => server.abort(),
            }
        }
        for task in self.tasks.drain(..) {
            if tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_err()
            {
                tracing::warn!("a gateway task did not stop in time");
            }
        }
        result
    }

    /// Runs until the server stops (an accept error) or `shutdown` resolves, then
    /// shuts down gracefully.
    pub async fn run_until(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let Some(server) = self.server.as_mut() else {
            return Ok(());
        };
        tokio::select! {
            r = server => {
                self.server = None;
                return match r {
                    Ok(r) => r,
                    Err(join) => Err(std::io::Error::other(join.to_string())),
                };
            }
            _ = shutdown => {}
        }
        self.shutdown().await
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            server.abort();
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn healthz(State(app): State<Arc<AppState>>) -> Reply {
    let connected = app
        .instances
        .values()
        .filter(|i| i.backend.is_connected())
        .count();
    Reply::json(
        StatusCode::OK,
        &json!({
            "status": "ok",
            "instances": app.instances.len(),
            "connected": connected,
        }),
    )
}

async fn openapi_json(State(app): State<Arc<AppState>>) -> Reply {
    Reply {
        status: StatusCode::OK,
        body: app.openapi.clone().into_bytes(),
        replayed: false,
        allow: None,
    }
}

async fn not_found() -> Reply {
    Reply::json(StatusCode::NOT_FOUND, &json!({ "error": "Not found" }))
}
