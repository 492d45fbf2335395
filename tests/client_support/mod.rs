//! Helpers for end-to-end tests of the client against the in-process simulator: fast
//! timers, waiting for events, pairing by QR, and child processes (the test binary
//! re-executed) that log in from a SQLite store.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use waevent::client::{
    BackoffConfig, Client, ClientConfig, Event, Events, KeepAliveConfig, QrTiming,
};
use waevent::jid::Jid;
use waevent::noise::TrustRoot;
use waevent::sim::{SimConfig, SimPhone, SimServer};
use waevent::store::{SqliteStore, Store};

/// How long a test waits for one event before failing.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A simulator with WhatsApp's behaviour and timers short enough for tests.
pub async fn start_sim() -> SimServer {
    start_sim_with(SimConfig::default()).await
}

/// A simulator with `config`.
pub async fn start_sim_with(config: SimConfig) -> SimServer {
    SimServer::start(config).await.expect("simulator starts")
}

/// The client configuration for `sim` with test timers: keepalive every 0.2–0.3 s,
/// reconnects after 50–400 ms.
pub fn client_config(sim: &SimServer) -> ClientConfig {
    let mut c = ClientConfig::for_server(sim.url(), TrustRoot::new(sim.trust_root()));
    c.keepalive = KeepAliveConfig {
        interval_min: Duration::from_millis(200),
        interval_max: Duration::from_millis(300),
        response_deadline: Duration::from_secs(2),
        max_fail_time: Duration::from_secs(5),
    };
    c.backoff = BackoffConfig {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(400),
        multiplier: 2,
        rate_limit_factor: 2,
    };
    c.iq_timeout = Duration::from_secs(10);
    c.connect_timeout = Duration::from_secs(10);
    c.qr_timing = QrTiming::default();
    c
}

/// Waits for the first event matching `want`, failing with every event seen when none
/// comes within [`EVENT_TIMEOUT`].
pub async fn wait_for(events: &mut Events, what: &str, want: impl Fn(&Event) -> bool) -> Event {
    wait_for_within(events, EVENT_TIMEOUT, what, want).await
}

/// [`wait_for`] with its own timeout.
pub async fn wait_for_within(
    events: &mut Events,
    timeout: Duration,
    what: &str,
    want: impl Fn(&Event) -> bool,
) -> Event {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(e)) if want(&e) => return e,
            Ok(Some(e)) => seen.push(e),
            Ok(None) => panic!("event stream ended while waiting for {what}; saw {seen:#?}"),
            Err(_) => panic!("no {what} within {timeout:?}; saw {seen:#?}"),
        }
    }
}

/// Collects the events that arrive within `window`.
pub async fn drain(events: &mut Events, window: Duration) -> Vec<Event> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline, events.recv()).await {
        out.push(e);
    }
    out
}

/// A client over a fresh SQLite store at `path`.
pub async fn sqlite_client(path: &Path, config: ClientConfig) -> (Client, Events, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(path).await.expect("open store"));
    let (client, events) = Client::new(store.clone(), config);
    (client, events, store)
}

/// Connects an unpaired client and pairs it by letting `phone` scan the first QR.
/// Returns the new device JID once the client has logged in after the 515 restart and
/// uploaded its prekeys.
pub async fn pair_by_qr(client: &Client, events: &mut Events, phone: &SimPhone) -> Jid {
    client.connect().await.expect("connect");
    let code = match wait_for(events, "a QR code", |e| {
        matches!(e, Event::PairingQr { .. })
    })
    .await
    {
        Event::PairingQr { code, timeout } => {
            assert_eq!(
                timeout,
                Duration::from_secs(60),
                "first ref is shown for 60 s"
            );
            code
        }
        _ => unreachable!(),
    };
    let (scanned, paired) = tokio::join!(
        phone.scan_qr(&code),
        wait_for(events, "pair success", |e| matches!(
            e,
            Event::PairSuccess { .. }
        ))
    );
    let device = scanned.expect("the phone accepts the QR");
    match paired {
        Event::PairSuccess { jid, lid, .. } => {
            assert_eq!(jid, device);
            assert_eq!(lid.map(|l| l.user), Some(phone.lid().user));
        }
        _ => unreachable!(),
    }
    wait_for(events, "login after the 515 restart", |e| {
        matches!(e, Event::Connected)
    })
    .await;
    wait_for(events, "the first prekey upload", |e| {
        matches!(e, Event::PreKeysUploaded { .. })
    })
    .await;
    device
}

/// Environment variables that make the test binary act as a child client.
pub const CHILD_MODE: &str = "WAEVENT_E2E_CHILD";
/// Store path for the child.
pub const CHILD_STORE: &str = "WAEVENT_E2E_STORE";
/// Simulator URL for the child.
pub const CHILD_URL: &str = "WAEVENT_E2E_URL";
/// Simulator root (hex) for the child.
pub const CHILD_ROOT: &str = "WAEVENT_E2E_ROOT";

/// Starts the current test binary as a child client running `test_name` in `mode`
/// against `sim` with the store at `store`. Its stdout is piped.
pub fn spawn_child(test_name: &str, mode: &str, sim: &SimServer, store: &Path) -> Child {
    Command::new(std::env::current_exe().expect("test binary path"))
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(CHILD_MODE, mode)
        .env(CHILD_STORE, store)
        .env(CHILD_URL, sim.url())
        .env(CHILD_ROOT, hex::encode(sim.trust_root().as_bytes()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the child client")
}

/// The child's configuration from its environment (`None` when not a child).
pub fn child_config() -> Option<(String, std::path::PathBuf, ClientConfig)> {
    let mode = std::env::var(CHILD_MODE).ok()?;
    let store = std::env::var_os(CHILD_STORE)?.into();
    let url = std::env::var(CHILD_URL).ok()?;
    let root: TrustRoot = std::env::var(CHILD_ROOT).ok()?.parse().ok()?;
    let mut config = ClientConfig::for_server(url, root);
    config.backoff = BackoffConfig {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(400),
        multiplier: 2,
        rate_limit_factor: 2,
    };
    Some((mode, store, config))
}

/// Prints a line the parent reads (`CHILD <what>`), flushed at once.
pub fn child_say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "CHILD {line}").and_then(|_| out.flush());
}
