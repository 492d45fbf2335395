//! Shared setup of the gateway tests: a gateway on 127.0.0.1 over a real SQLite store,
//! reached with reqwest.
//!
//! `RecordingBackend` stands in for the WhatsApp client until group sends land (issue
//! 5): it records every call, answers with a fresh message id (or a configured
//! error), and lets a test inject incoming events. The HTTP assertions in the tests
//! check status codes and bodies on their own; what the backend recorded is checked
//! separately, so they stay valid once the real client is behind the trait.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;
use waevent::event::{EventCard, Rsvp};
use waevent::gateway::{
    BackendError, EventBackend, Gateway, GatewayConfig, IncomingEvent, RunningGateway, SendOptions,
    SentMessage,
};
use waevent::jid::Jid;
use waevent::store::{SqliteStore, Store};

pub const INSTANCE: &str = "main";
pub const TOKEN: &str = "test-instance-token-0123456789";
pub const CLIENT_TOKEN: &str = "test-client-token-0123456789";
pub const SECRET: &str = "test-webhook-secret-0123456789";
pub const BODY_LIMIT: usize = 4096;

/// One call the gateway made on the backend.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Send {
        chat: Jid,
        card: EventCard,
        options: SendOptions,
    },
    Respond {
        chat: Jid,
        event_id: String,
        rsvp: Rsvp,
    },
    Edit {
        chat: Jid,
        event_id: String,
        card: EventCard,
    },
}

/// Stands in for the WhatsApp client (see the module docs).
pub struct RecordingBackend {
    calls: Mutex<Vec<Call>>,
    connected: AtomicBool,
    fail_with: Mutex<Option<BackendError>>,
    delay: Mutex<Duration>,
    next_id: AtomicU64,
    events: broadcast::Sender<IncomingEvent>,
}

impl RecordingBackend {
    pub fn new() -> Arc<Self> {
        Arc::new(RecordingBackend {
            calls: Mutex::new(Vec::new()),
            connected: AtomicBool::new(true),
            fail_with: Mutex::new(None),
            delay: Mutex::new(Duration::ZERO),
            next_id: AtomicU64::new(1),
            events: broadcast::channel(256).0,
        })
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn set_connected(&self, yes: bool) {
        self.connected.store(yes, Ordering::SeqCst);
    }

    pub fn fail_with(&self, error: Option<BackendError>) {
        *self.fail_with.lock().unwrap() = error;
    }

    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    /// Delivers an incoming event to the gateway, as the client would.
    pub fn emit(&self, event: IncomingEvent) {
        self.events
            .send(event)
            .expect("the gateway subscribed to the backend");
    }

    async fn answer(&self, call: Call) -> Result<SentMessage, BackendError> {
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.calls.lock().unwrap().push(call);
        if let Some(e) = self.fail_with.lock().unwrap().clone() {
            return Err(e);
        }
        let n = self.next_id.fetch_add(1, Ordering::SeqCst);
        Ok(SentMessage {
            message_id: format!("3EB0{n:016X}"),
            timestamp_ms: 1_777_000_000_000 + n as i64,
        })
    }
}

#[async_trait]
impl EventBackend for RecordingBackend {
    async fn send_event(
        &self,
        chat: &Jid,
        card: &EventCard,
        options: &SendOptions,
    ) -> Result<SentMessage, BackendError> {
        self.answer(Call::Send {
            chat: chat.clone(),
            card: card.clone(),
            options: options.clone(),
        })
        .await
    }

    async fn respond_to_event(
        &self,
        chat: &Jid,
        event_id: &str,
        rsvp: &Rsvp,
        _options: &SendOptions,
    ) -> Result<SentMessage, BackendError> {
        self.answer(Call::Respond {
            chat: chat.clone(),
            event_id: event_id.to_string(),
            rsvp: *rsvp,
        })
        .await
    }

    async fn edit_event(
        &self,
        chat: &Jid,
        event_id: &str,
        card: &EventCard,
        _options: &SendOptions,
    ) -> Result<SentMessage, BackendError> {
        self.answer(Call::Edit {
            chat: chat.clone(),
            event_id: event_id.to_string(),
            card: card.clone(),
        })
        .await
    }

    fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    fn subscribe(&self) -> broadcast::Receiver<IncomingEvent> {
        self.events.subscribe()
    }
}

/// The TOML of a one-instance gateway with its store at `store` and the given extra
/// instance keys (webhook URLs) and `[webhook]` settings.
pub fn config_toml(store: &Path, instance_extra: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
body_limit = {BODY_LIMIT}

[webhook]
initial_backoff_ms = 60
max_backoff_ms = 400
poll_interval_ms = 20
timeout_ms = 2000

[[instances]]
name = "{INSTANCE}"
token = "{TOKEN}"
client_token = "{CLIENT_TOKEN}"
store = "{}"
webhook_secret = "{SECRET}"
{instance_extra}
"#,
        store.display()
    )
}

/// A running gateway with its backend and store.
pub struct TestGateway {
    pub running: Option<RunningGateway>,
    pub base: String,
    pub backend: Arc<RecordingBackend>,
    pub store: Arc<SqliteStore>,
    pub client: reqwest::Client,
}

impl TestGateway {
    /// Starts a gateway over the SQLite store at `store_path` (created if missing).
    pub async fn start_at(store_path: &Path, instance_extra: &str) -> TestGateway {
        let config = GatewayConfig::from_toml(&config_toml(store_path, instance_extra)).unwrap();
        let backend = RecordingBackend::new();
        let store = Arc::new(SqliteStore::open(store_path).await.unwrap());
        let mut backends: HashMap<String, Arc<dyn EventBackend>> = HashMap::new();
        backends.insert(INSTANCE.into(), backend.clone());
        let mut stores: HashMap<String, Arc<dyn Store>> = HashMap::new();
        stores.insert(INSTANCE.into(), store.clone());
        let gateway = Gateway::new(config, backends, stores).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = gateway.start(listener).unwrap();
        let base = format!("http://{}", running.local_addr());
        TestGateway {
            running: Some(running),
            base,
            backend,
            store,
            client: reqwest::Client::new(),
        }
    }

    /// The Z-API URL of `route` for the test instance.
    pub fn zapi(&self, route: &str) -> String {
        format!("{}/instances/{INSTANCE}/token/{TOKEN}/{route}", self.base)
    }

    /// The RyzeAPI URL for the test instance.
    pub fn ryze(&self) -> String {
        format!("{}/api/message/event/{INSTANCE}", self.base)
    }

    /// POSTs JSON text to a Z-API route with the right Client-Token.
    pub async fn post_zapi(&self, route: &str, body: &str) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(self.zapi(route))
            .header("Client-Token", CLIENT_TOKEN)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        json_of(r).await
    }

    /// POSTs JSON text to the RyzeAPI route with the right token.
    pub async fn post_ryze(&self, body: &str) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(self.ryze())
            .header("token", TOKEN)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        json_of(r).await
    }

    /// Stops the gateway at once (as a crash would, from the outbox's point of view).
    pub fn kill(&mut self) {
        drop(self.running.take());
    }
}

/// Status and JSON body of a response (the body must be JSON).
pub async fn json_of(r: reqwest::Response) -> (u16, serde_json::Value) {
    let status = r.status().as_u16();
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "status {status}"
    );
    let bytes = r.bytes().await.unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
    (status, value)
}

/// A fresh temporary directory and a store path in it.
pub fn temp_store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.db");
    (dir, path)
}

/// Polls `check` every 10 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
