//! The gateway over real HTTP with the real WhatsApp client behind it
//! ([`ClientBackend`]), connected to the in-process simulator: a device paired through
//! the QR flow, a group of simulated members whose phones decrypt what the gateway
//! sends and answer with real encrypted RSVPs. No stand-in backend anywhere.
//!
//! Covered: Z-API send-event / send-edit-event / send-event-response and RyzeAPI
//! send-event end to end (every member device decrypts the card the request
//! described), the documented errors of both APIs with the real backend (validation,
//! auth, unknown event, failed send, not connected), `Idempotency-Key` under
//! concurrent duplicates (one message on the wire), incoming RSVPs on the signed
//! webhook with retries, in Z-API's shape and on the WebSocket stream, and queued
//! webhooks delivered after a gateway restart.

#![cfg(all(feature = "sim", feature = "gateway", feature = "sqlite"))]

mod gateway_support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use futures_util::StreamExt;
use gateway_support::{CLIENT_TOKEN, INSTANCE, SECRET, TOKEN, config_toml, eventually, json_of};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;
use waevent::client::Client;
use waevent::demo::{self, PairedClient};
use waevent::event::{EventCard, RsvpResponse};
use waevent::gateway::webhook::verify_signature;
use waevent::gateway::{ClientBackend, EventBackend, Gateway, GatewayConfig, RunningGateway};
use waevent::jid::Jid;
use waevent::sim::{GroupAddressing, GroupSpec, SimConfig, SimServer};
use waevent::store::{SqliteStore, Store};

const WAIT: Duration = Duration::from_secs(60);

/// A simulator, a paired client with its SQLite store, and a group of simulated
/// members.
struct World {
    _dir: tempfile::TempDir,
    store_path: PathBuf,
    sim: SimServer,
    client: Client,
    backend: Arc<ClientBackend>,
    store: Arc<SqliteStore>,
    device: Jid,
    group: Jid,
    members: Vec<Jid>,
    member_devices: usize,
}

impl World {
    async fn new(phone_number: &str, members: usize) -> World {
        let dir = tempfile::tempdir().unwrap();
        let store_path = dir.path().join("gateway.db");
        let sim = SimServer::start(SimConfig::default()).await.unwrap();
        let phone = sim.create_account(phone_number);
        let store = Arc::new(SqliteStore::open(&store_path).await.unwrap());
        let PairedClient {
            client,
            events,
            device,
        } = demo::pair_client(&sim, &phone, store.clone(), WAIT, |_| {})
            .await
            .expect("the client pairs through the simulated phone");
        let group = sim
            .create_group(GroupSpec {
                subject: "gateway test".into(),
                accounts: vec![phone.pn()],
                simulated_members: members,
                devices_per_member: 1..=2,
                addressing: GroupAddressing::Lid,
            })
            .unwrap();
        let members: Vec<Jid> = sim
            .group_members(&group)
            .unwrap()
            .into_iter()
            .filter(|m| m.to_non_ad() != phone.lid() && m.to_non_ad() != phone.pn())
            .collect();
        let member_devices = demo::member_devices(&sim, &members, &device).len();
        assert!(member_devices >= members.len());
        let backend = Arc::new(ClientBackend::spawn(client.clone(), events));
        World {
            _dir: dir,
            store_path,
            sim,
            client,
            backend,
            store,
            device,
            group,
            members,
            member_devices,
        }
    }

    /// Starts a gateway over this world's client and store.
    async fn gateway(&self, instance_extra: &str) -> Gw {
        let config =
            GatewayConfig::from_toml(&config_toml(&self.store_path, instance_extra)).unwrap();
        let mut backends: HashMap<String, Arc<dyn EventBackend>> = HashMap::new();
        backends.insert(INSTANCE.into(), self.backend.clone());
        let mut stores: HashMap<String, Arc<dyn Store>> = HashMap::new();
        stores.insert(INSTANCE.into(), self.store.clone());
        let gateway = Gateway::new(config, backends, stores).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = gateway.start(listener).unwrap();
        let base = format!("http://{}", running.local_addr());
        Gw {
            running: Some(running),
            base,
            http: reqwest::Client::new(),
        }
    }

    /// Waits until every member device saw `message_id`; returns the card one decrypted.
    async fn delivered(&self, message_id: &str) -> EventCard {
        let d = demo::wait_for_delivery(
            &self.sim,
            &self.group,
            message_id,
            &self.device,
            None,
            self.member_devices,
            WAIT,
            |_| {},
        )
        .await
        .unwrap();
        assert!(d.failed.is_empty(), "devices failed: {:?}", d.failed);
        assert_eq!(d.decrypted, self.member_devices, "every member device");
        d.sample.expect("a decrypted card")
    }

    fn zapi_group(&self) -> String {
        format!("{}-group", self.group.user)
    }
}

struct Gw {
    running: Option<RunningGateway>,
    base: String,
    http: reqwest::Client,
}

impl Gw {
    fn zapi(&self, route: &str) -> String {
        format!("{}/instances/{INSTANCE}/token/{TOKEN}/{route}", self.base)
    }

    fn ryze(&self) -> String {
        format!("{}/api/message/event/{INSTANCE}", self.base)
    }

    async fn post_zapi(&self, route: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.zapi(route))
            .header("Client-Token", CLIENT_TOKEN)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        json_of(r).await
    }

    async fn post_ryze_text(&self, body: &str, key: Option<&str>) -> (u16, Value, bool) {
        let mut req = self
            .http
            .post(self.ryze())
            .header("token", TOKEN)
            .header("Content-Type", "application/json")
            .body(body.to_string());
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let r = req.send().await.unwrap();
        let replayed = r.headers().get("idempotent-replayed").is_some();
        let (status, v) = json_of(r).await;
        (status, v, replayed)
    }

    async fn post_ryze(&self, body: &Value) -> (u16, Value) {
        let (s, v, _) = self.post_ryze_text(&body.to_string(), None).await;
        (s, v)
    }

    fn kill(&mut self) {
        drop(self.running.take());
    }
}

fn ryze_error(text: &str) -> Value {
    json!({"success": false, "error": {"message": text}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_apis_send_through_the_real_client_to_every_member_device() {
    let w = World::new("15550107001", 5).await;
    let gw = w.gateway("").await;

    // Z-API: a wall time at UTC-3 becomes 18:00 UTC on every member's phone.
    let (status, body) = gw
        .post_zapi(
            "send-event",
            &json!({"phone": w.zapi_group(), "event": {
                "name": "Team sync", "description": "Weekly",
                "dateTime": "2026-12-01T15:00:00", "timeZone": "UTC-3",
                "location": {"name": "Room 4"}, "canceled": false}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let zapi_id = body["messageId"].as_str().unwrap().to_string();
    assert_eq!(body["id"], body["messageId"]);
    assert!(!body["zaapId"].as_str().unwrap().is_empty());
    let card = w.delivered(&zapi_id).await;
    assert_eq!(card.name(), "Team sync");
    assert_eq!(card.description(), Some("Weekly"));
    assert_eq!(card.start_time(), 1_796_148_000, "2026-12-01T18:00:00Z");
    assert_eq!(
        card.location().and_then(|l| l.name.as_deref()),
        Some("Room 4")
    );

    // RyzeAPI: the whole body, the success envelope, the same card on every device.
    let ryze_body = json!({
        "number": w.group.to_string(), "name": "Planning", "description": "Q1",
        "startAt": "2026-12-02T10:00:00-03:00", "endAt": "2026-12-02T11:30:00-03:00",
        "location": {"name": "HQ", "address": "Main St 1", "latitude": -23.56, "longitude": -46.65},
        "joinLink": "https://call.whatsapp.com/video/AbC123xyz", "isScheduleCall": false,
        "hasReminder": true, "reminderOffsetSec": 900, "extraGuestsAllowed": true,
        "isCanceled": false, "source": "test"});
    let (status, body) = gw.post_ryze(&ryze_body).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Message sent successfully");
    assert_eq!(body["status"], "sent");
    assert_eq!(body["data"]["number"], w.group.to_string());
    assert_eq!(body["data"]["messageType"], "event");
    let ryze_id = body["data"]["messageId"].as_str().unwrap().to_string();
    assert_ne!(ryze_id, zapi_id);
    let expected = EventCard::from_json(&ryze_body.to_string()).unwrap();
    assert_eq!(w.delivered(&ryze_id).await, expected);

    // Z-API: answer our own event, and edit it (fields left out are removed).
    let (status, body) = gw
        .post_zapi(
            "send-event-response",
            &json!({"phone": w.zapi_group(), "eventMessageId": ryze_id, "eventResponse": "GOING"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["messageId"], ryze_id);
    let (status, body) = gw
        .post_zapi(
            "send-edit-event",
            &json!({"phone": w.zapi_group(), "eventMessageId": ryze_id,
                    "event": {"name": "Planning (moved)", "dateTime": "2026-12-03T10:00:00Z"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // An event the instance does not know: nothing sent, Z-API 404.
    let (status, body) = gw
        .post_zapi(
            "send-event-response",
            &json!({"phone": w.zapi_group(), "eventMessageId": "3EB0000000000000DEAD", "eventResponse": "MAYBE"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body["error"],
        "Event message not found: 3EB0000000000000DEAD"
    );

    // RyzeAPI's documented 400s, exactly.
    let cases: Vec<(String, &str)> = vec![
        ("{".into(), "Invalid request body: "),
        (
            json!({"name": "x", "startAt": "2026-12-01T15:00:00Z"}).to_string(),
            "Number is required",
        ),
        (
            json!({"number": w.group.to_string(), "startAt": "2026-12-01T15:00:00Z"}).to_string(),
            "Name is required",
        ),
        (
            json!({"number": w.group.to_string(), "name": "x"}).to_string(),
            "startAt is required",
        ),
        (
            json!({"number": w.group.to_string(), "name": "x", "startAt": "tomorrow"}).to_string(),
            "Invalid startAt, expected ISO 8601 (RFC3339): ",
        ),
        (
            json!({"number": "12ab", "name": "x", "startAt": "2026-12-01T15:00:00Z"}).to_string(),
            "Invalid phone number format: ",
        ),
    ];
    for (body, want) in cases {
        let (status, got, _) = gw.post_ryze_text(&body, None).await;
        assert_eq!(status, 400, "{body}: {got}");
        assert_eq!(got["success"], false);
        let text = got["error"]["message"].as_str().unwrap();
        assert!(
            text.starts_with(want),
            "{body}: {text:?} does not start with {want:?}"
        );
    }
    let r = gw
        .http
        .post(format!("{}/api/message/event/", gw.base))
        .header("token", TOKEN)
        .header("Content-Type", "application/json")
        .body(ryze_body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_of(r).await,
        (400, ryze_error("Instance name is required"))
    );
    let r = gw
        .http
        .post(format!("{}/api/message/event/nope", gw.base))
        .header("token", TOKEN)
        .header("Content-Type", "application/json")
        .body(ryze_body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r).await, (404, ryze_error("Instance not found")));

    // Z-API's method, content-type and auth answers.
    let r = gw.http.get(gw.zapi("send-event")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let r = gw
        .http
        .post(gw.zapi("send-event"))
        .header("Client-Token", CLIENT_TOKEN)
        .header("Content-Type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = gw
        .http
        .post(gw.zapi("send-event"))
        .header("Client-Token", "wrong-client-token-000000")
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A send the client cannot make (a group that does not exist): 500 with the reason.
    let (status, body) = gw
        .post_ryze(&json!({"number": "120363999999999999@g.us", "name": "x",
                           "startAt": "2026-12-01T15:00:00Z"}))
        .await;
    assert_eq!(status, 500, "{body}");
    let text = body["error"]["message"].as_str().unwrap();
    assert!(text.starts_with("Failed to send event: "), "{text}");

    // Idempotency under concurrent duplicates: one send, one message id for all.
    let dup = json!({"number": w.group.to_string(), "name": "Once",
                     "startAt": "2026-12-05T09:00:00Z"})
    .to_string();
    let answers = futures_util::future::join_all(
        (0..8).map(|_| gw.post_ryze_text(&dup, Some("concurrent-dup-1"))),
    )
    .await;
    let first = &answers[0].1;
    assert!(
        answers.iter().all(|(s, v, _)| *s == 200 && v == first),
        "{answers:?}"
    );
    assert_eq!(answers.iter().filter(|(_, _, r)| *r).count(), 7);
    let once_id = first["data"]["messageId"].as_str().unwrap().to_string();
    assert_eq!(w.delivered(&once_id).await.name(), "Once");

    // Not connected: 503 from both APIs, nothing sent.
    w.client.disconnect().await;
    assert!(!w.backend.is_connected());
    let (status, body) = gw.post_ryze(&ryze_body).await;
    assert_eq!(
        (status, body),
        (503, ryze_error("Instance is not connected to WhatsApp"))
    );
    let (status, body) = gw
        .post_zapi(
            "send-event",
            &json!({"phone": w.zapi_group(), "event": {"name": "x", "dateTime": "2026-12-01T15:00:00"}}),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            503,
            json!({"error": "Instance is not connected to WhatsApp"})
        )
    );
    assert!(
        w.sim.protocol_errors().is_empty(),
        "{:?}",
        w.sim.protocol_errors()
    );
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    headers: HeaderMap,
    body: Bytes,
    answered: u16,
}

/// A webhook receiver: 500 to the first `fail_first` requests of `/hook`, 503 to all
/// while `refuse_all`, 200 otherwise.
#[derive(Default)]
struct Receiver {
    hits: Mutex<Vec<Hit>>,
    fail_first: Mutex<usize>,
    refuse_all: AtomicBool,
}

impl Receiver {
    fn delivered(&self, path: &str, kind: &str) -> Vec<Value> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path && h.answered == 200)
            .map(|h| serde_json::from_slice::<Value>(&h.body).unwrap())
            .filter(|v| kind.is_empty() || v["type"] == kind)
            .collect()
    }

    fn attempts(&self, path: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .count()
    }
}

async fn receive(
    State(rx): State<Arc<Receiver>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let status = if rx.refuse_all.load(Ordering::SeqCst) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        let mut fail = rx.fail_first.lock().unwrap();
        if path == "hook" && *fail > 0 {
            *fail -= 1;
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        }
    };
    rx.hits.lock().unwrap().push(Hit {
        path,
        headers,
        body,
        answered: status.as_u16(),
    });
    status
}

async fn start_receiver(rx: Arc<Receiver>) -> SocketAddr {
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::post(receive))
        .with_state(rx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_rsvps_reach_webhooks_and_the_stream_and_survive_a_restart() {
    let w = World::new("15550107002", 3).await;
    let rx = Arc::new(Receiver::default());
    *rx.fail_first.lock().unwrap() = 2;
    let addr = start_receiver(rx.clone()).await;
    let hooks =
        format!("webhook_url = \"http://{addr}/hook\"\nzapi_webhook_url = \"http://{addr}/zapi\"");
    let mut gw = w.gateway(&hooks).await;
    let ws_url = format!(
        "{}/instances/{INSTANCE}/events?token={TOKEN}",
        gw.base.replace("http://", "ws://")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .unwrap();

    let (status, body) = gw
        .post_ryze(&json!({"number": w.group.to_string(), "name": "Dinner",
                           "startAt": "2026-12-04T20:00:00Z", "extraGuestsAllowed": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    let event_id = body["data"]["messageId"].as_str().unwrap().to_string();
    w.delivered(&event_id).await;

    // A member answers from their phone: signed webhook after two refused attempts.
    let voter = w.members[0].clone();
    w.sim
        .member_rsvp(&w.group, &voter, &event_id, RsvpResponse::Going, 2)
        .await
        .unwrap();
    assert!(
        eventually(WAIT, || async {
            !rx.delivered("hook", "event.rsvp").is_empty()
        })
        .await,
        "the RSVP reached the webhook; attempts: {}",
        rx.attempts("hook")
    );
    let hits: Vec<Hit> = rx
        .hits
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.path == "hook")
        .cloned()
        .collect();
    assert!(hits.len() >= 3, "two refusals, then the delivery");
    let ok = hits.iter().find(|h| h.answered == 200).unwrap();
    let sig = ok.headers["x-waevent-signature"].to_str().unwrap();
    assert!(verify_signature(SECRET.as_bytes(), &ok.body, sig));
    let rsvp = &rx.delivered("hook", "event.rsvp")[0];
    assert_eq!(rsvp["instance"], INSTANCE);
    assert_eq!(rsvp["data"]["eventMessageId"], event_id.as_str());
    assert_eq!(rsvp["data"]["chat"], w.group.to_string());
    assert_eq!(rsvp["data"]["response"], "GOING");
    assert_eq!(rsvp["data"]["extraGuests"], 2);
    assert_eq!(rsvp["data"]["eventFromMe"], true);
    let voter_seen = rsvp["data"]["voter"].as_str().unwrap();
    let alt_seen = rsvp["data"]["voterAlt"].as_str().unwrap_or_default();
    assert!(
        voter_seen == voter.to_string() || alt_seen == voter.to_string(),
        "{rsvp}"
    );
    // Z-API's received-message shape.
    assert!(
        eventually(WAIT, || async { !rx.delivered("zapi", "").is_empty() }).await,
        "Z-API webhook"
    );
    let z = &rx.delivered("zapi", "")[0];
    assert_eq!(z["type"], "ReceivedCallBack");
    assert_eq!(z["phone"], w.zapi_group());
    assert_eq!(z["isGroup"], true);
    assert_eq!(z["eventResponse"]["response"], "GOING");
    assert_eq!(
        z["eventResponse"]["referencedMessage"]["messageId"],
        event_id.as_str()
    );
    // The stream saw it too.
    let frame = loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .unwrap()
            .unwrap();
        if let tungstenite::Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == "event.rsvp" {
                break v;
            }
        }
    };
    assert_eq!(frame["data"]["eventMessageId"], event_id.as_str());
    // The client's tally counts it.
    let tally = w.store.event_tally(&w.group, &event_id).await.unwrap();
    assert_eq!((tally.going, tally.extra_guests_going), (1, 2));

    // The receiver is down; another member answers; the gateway dies before delivery.
    rx.refuse_all.store(true, Ordering::SeqCst);
    let second = w.members[1].clone();
    w.sim
        .member_rsvp(&w.group, &second, &event_id, RsvpResponse::NotGoing, 0)
        .await
        .unwrap();
    let refused_before = rx.attempts("hook");
    assert!(
        eventually(WAIT, || async { rx.attempts("hook") > refused_before }).await,
        "a refused attempt for the second RSVP"
    );
    gw.kill();
    assert!(
        w.store.webhook_count().await.unwrap() >= 1,
        "queued in the store"
    );

    // Restart: the queued RSVP is delivered from the store.
    rx.refuse_all.store(false, Ordering::SeqCst);
    let _gw2 = w.gateway(&hooks).await;
    assert!(
        eventually(WAIT, || async {
            rx.delivered("hook", "event.rsvp")
                .iter()
                .any(|v| v["data"]["response"] == "NOT_GOING")
        })
        .await,
        "the queued RSVP was delivered after the restart"
    );
    assert!(
        eventually(WAIT, || async {
            w.store.webhook_count().await.unwrap() == 0
        })
        .await,
        "outbox drained"
    );
    assert!(
        w.sim.protocol_errors().is_empty(),
        "{:?}",
        w.sim.protocol_errors()
    );
    w.client.disconnect().await;
}
