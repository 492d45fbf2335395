//! Incoming events out of the gateway: signed webhook delivery with retries against a
//! local receiver (axum) that fails the first attempts, Z-API's received-message shape,
//! delivery after a restart from the SQLite outbox, the WebSocket stream, and the
//! signature checked both ways with Python's hmac.
//!
//! Incoming events are injected through `RecordingBackend` (tests/gateway_support),
//! which stands in for the WhatsApp client until group sends land.

mod common;
mod gateway_support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use futures_util::StreamExt;
use gateway_support::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;
use waevent::event::{EventCard, EventLocation, RsvpResponse};
use waevent::gateway::IncomingEvent;
use waevent::gateway::webhook::verify_signature;
use waevent::jid::Jid;
use waevent::store::Store;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    headers: HeaderMap,
    body: Bytes,
    at: tokio::time::Instant,
    answered: u16,
}

/// A webhook receiver: answers 500 to the first `fail_first[path]` requests of a path,
/// 503 to everything while `accept` is false, 200 otherwise; records every request.
#[derive(Default)]
struct Receiver {
    hits: Mutex<Vec<Hit>>,
    fail_first: Mutex<HashMap<String, usize>>,
    refuse_all: AtomicBool,
}

impl Receiver {
    fn hits(&self, path: &str) -> Vec<Hit> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }

    fn delivered(&self, path: &str) -> Vec<Hit> {
        self.hits(path)
            .into_iter()
            .filter(|h| h.answered == 200)
            .collect()
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
        match fail.get_mut(&path) {
            Some(n) if *n > 0 => {
                *n -= 1;
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::OK,
        }
    };
    rx.hits.lock().unwrap().push(Hit {
        path,
        headers,
        body,
        at: tokio::time::Instant::now(),
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

fn webhook_keys(addr: SocketAddr) -> String {
    format!("webhook_url = \"http://{addr}/hook\"\nzapi_webhook_url = \"http://{addr}/zapi\"")
}

fn rsvp() -> IncomingEvent {
    IncomingEvent::Rsvp {
        chat: Jid::group("120363019502650977"),
        message_id: "3EB0RSVP0001".into(),
        event_id: "3EB0EVENT001".into(),
        event_from_me: true,
        event_creator: Some(Jid::pn_user("5511999999999")),
        voter: Jid::lid_user("123456789012345"),
        voter_alt: Some(Jid::pn_user("5511988887777")),
        from_me: false,
        response: RsvpResponse::Going,
        extra_guests: 1,
        time_ms: 1_777_395_600_123,
    }
}

fn card_event() -> IncomingEvent {
    IncomingEvent::EventCard {
        chat: Jid::group("120363019502650977"),
        message_id: "3EB0EVENT002".into(),
        sender: Jid::lid_user("123456789012345"),
        from_me: false,
        card: EventCard::builder()
            .name("Team sync")
            .start_at("2026-12-01T15:00:00-03:00")
            .location(EventLocation::named("Room 4"))
            .build()
            .unwrap(),
        time_ms: 1_777_395_600_000,
    }
}

fn header<'a>(hit: &'a Hit, name: &str) -> &'a str {
    hit.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_delivery_retried_until_accepted() {
    let rx = Arc::new(Receiver::default());
    rx.fail_first.lock().unwrap().insert("hook".into(), 2);
    let addr = start_receiver(rx.clone()).await;
    let (_dir, path) = temp_store();
    let gw = TestGateway::start_at(&path, &webhook_keys(addr)).await;

    gw.backend.emit(rsvp());
    assert!(
        eventually(Duration::from_secs(10), || async {
            !rx.delivered("hook").is_empty() && !rx.delivered("zapi").is_empty()
        })
        .await,
        "not delivered: {:?}",
        rx.hits.lock().unwrap()
    );

    // Three attempts to the gateway's own URL: 500, 500, 200, same signed body.
    let hits = rx.hits("hook");
    assert_eq!(
        hits.iter().map(|h| h.answered).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    for (i, hit) in hits.iter().enumerate() {
        assert_eq!(hit.body, hits[0].body);
        assert_eq!(header(hit, "x-waevent-attempt"), (i + 1).to_string());
        assert_eq!(
            header(hit, "x-waevent-delivery"),
            header(&hits[0], "x-waevent-delivery")
        );
        assert_eq!(header(hit, "x-waevent-event"), "event.rsvp");
        assert_eq!(header(hit, "content-type"), "application/json");
        assert!(verify_signature(
            SECRET.as_bytes(),
            &hit.body,
            header(hit, "x-waevent-signature")
        ));
        let ts: i64 = header(hit, "x-waevent-timestamp").parse().unwrap();
        assert!((ts - waevent_now_secs()).abs() < 60);
    }
    assert!(header(&hits[0], "x-waevent-delivery").starts_with("waevent."));
    // Backoff: 60 ms after the first failure, 120 ms after the second (jitter only adds).
    assert!(hits[1].at - hits[0].at >= Duration::from_millis(60));
    assert!(hits[2].at - hits[1].at >= Duration::from_millis(120));

    let body: Value = serde_json::from_slice(&hits[0].body).unwrap();
    assert_eq!(body["type"], "event.rsvp");
    assert_eq!(body["instance"], INSTANCE);
    assert_eq!(body["id"].as_str().unwrap().len(), 64);
    assert_eq!(
        body["data"],
        json!({"chat": "120363019502650977@g.us", "messageId": "3EB0RSVP0001",
            "eventMessageId": "3EB0EVENT001", "eventFromMe": true, "eventCreator": "5511999999999@s.whatsapp.net",
            "voter": "123456789012345@lid", "voterAlt": "5511988887777@s.whatsapp.net", "fromMe": false,
            "response": "GOING", "extraGuests": 1, "time": 1_777_395_600_123i64})
    );

    // The Z-API shape went to its own URL, signed the same way.
    let zapi = rx.delivered("zapi");
    assert_eq!(zapi.len(), 1);
    assert_eq!(header(&zapi[0], "x-waevent-event"), "ReceivedCallBack");
    assert!(header(&zapi[0], "x-waevent-delivery").starts_with("zapi."));
    assert!(verify_signature(
        SECRET.as_bytes(),
        &zapi[0].body,
        header(&zapi[0], "x-waevent-signature")
    ));
    let z: Value = serde_json::from_slice(&zapi[0].body).unwrap();
    assert_eq!(z["type"], "ReceivedCallBack");
    assert_eq!(z["phone"], "120363019502650977-group");
    assert_eq!(z["isGroup"], true);
    assert_eq!(z["messageId"], "3EB0RSVP0001");
    assert_eq!(z["participantPhone"], "5511988887777");
    assert_eq!(z["participantLid"], "123456789012345@lid");
    assert_eq!(
        z["eventResponse"],
        json!({"response": "GOING", "responseFrom": "5511988887777", "time": 1_777_395_600_123i64,
            "referencedMessage": {"messageId": "3EB0EVENT001", "fromMe": true,
                "phone": "120363019502650977-group", "participant": "5511999999999"}})
    );

    // Delivered jobs leave the outbox.
    assert!(
        eventually(Duration::from_secs(5), || async {
            gw.store.webhook_count().await.unwrap() == 0
        })
        .await
    );

    // An event card goes to the gateway's URL only (Z-API documents no card shape).
    gw.backend.emit(card_event());
    assert!(
        eventually(Duration::from_secs(10), || async {
            rx.delivered("hook").len() == 2
        })
        .await
    );
    let card: Value = serde_json::from_slice(&rx.delivered("hook")[1].body).unwrap();
    assert_eq!(card["type"], "event.card");
    assert_eq!(card["data"]["event"]["name"], "Team sync");
    assert_eq!(card["data"]["event"]["startAt"], "2026-12-01T18:00:00Z");
    assert_eq!(card["data"]["event"]["location"]["name"], "Room 4");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.hits("zapi").len(), 1);

    // The signatures check out with Python's hmac, and Python's with ours.
    let all: Vec<Hit> = rx.hits.lock().unwrap().clone();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut deliveries: Vec<Value> = all
        .iter()
        .map(|h| json!({"body_b64": b64(&h.body), "signature": header(h, "x-waevent-signature")}))
        .collect();
    let mut tampered = all[0].body.to_vec();
    tampered[10] ^= 1;
    deliveries.push(
        json!({"body_b64": b64(&tampered), "signature": header(&all[0], "x-waevent-signature")}),
    );
    let other = br#"{"id":"x","type":"event.card"}"#;
    let out = common::run_python(
        "webhook_hmac.py",
        json!({"secret": SECRET, "deliveries": deliveries, "sign_b64": b64(other)})
            .to_string()
            .as_bytes(),
    );
    let out: Value = serde_json::from_slice(&out).unwrap();
    let checks: Vec<bool> = serde_json::from_value(out["checks"].clone()).unwrap();
    assert_eq!(checks.len(), all.len() + 1);
    assert!(checks[..all.len()].iter().all(|c| *c), "{checks:?}");
    assert!(!checks[all.len()], "Python accepted a tampered body");
    assert!(verify_signature(
        SECRET.as_bytes(),
        other,
        out["signature"].as_str().unwrap()
    ));
    assert!(!verify_signature(
        b"another-secret-0123456789",
        other,
        out["signature"].as_str().unwrap()
    ));
}

fn waevent_now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_webhooks_survive_a_restart() {
    let rx = Arc::new(Receiver::default());
    rx.refuse_all.store(true, Ordering::SeqCst);
    let addr = start_receiver(rx.clone()).await;
    let (_dir, path) = temp_store();

    let mut first = TestGateway::start_at(&path, &webhook_keys(addr)).await;
    first.backend.emit(rsvp());
    assert!(
        eventually(Duration::from_secs(10), || async {
            rx.hits("hook").len() >= 2
        })
        .await
    );
    // Both jobs (gateway shape and Z-API shape) wait in the outbox.
    assert_eq!(first.store.webhook_count().await.unwrap(), 2);
    let refused_body = rx.hits("hook")[0].body.clone();
    first.kill();
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let attempts_before = rx.hits.lock().unwrap().len();

    // Nothing runs between the two gateways: no attempt is made.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.hits.lock().unwrap().len(), attempts_before);

    // A new gateway on the same SQLite file delivers what was left.
    rx.refuse_all.store(false, Ordering::SeqCst);
    let second = TestGateway::start_at(&path, &webhook_keys(addr)).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            rx.delivered("hook").len() == 1 && rx.delivered("zapi").len() == 1
        })
        .await
    );
    let delivered = &rx.delivered("hook")[0];
    assert_eq!(delivered.body, refused_body);
    let attempt: u32 = header(delivered, "x-waevent-attempt").parse().unwrap();
    assert!(
        attempt >= 3,
        "attempt {attempt}: the count survived the restart"
    );
    assert!(verify_signature(
        SECRET.as_bytes(),
        &delivered.body,
        header(delivered, "x-waevent-signature")
    ));
    assert!(
        eventually(Duration::from_secs(5), || async {
            second.store.webhook_count().await.unwrap() == 0
        })
        .await
    );
    // The new backend was never asked to send anything.
    assert!(second.backend.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_stream() {
    let (_dir, path) = temp_store();
    let gw = TestGateway::start_at(&path, "").await;
    let ws_base = gw.base.replace("http://", "ws://");

    // Wrong or missing token: refused before the upgrade.
    for url in [
        format!("{ws_base}/instances/{INSTANCE}/events"),
        format!("{ws_base}/instances/{INSTANCE}/events?token=wrong-token-0123456789"),
    ] {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
            other => panic!("{url}: {other:?}"),
        }
    }
    match tokio_tungstenite::connect_async(format!("{ws_base}/instances/nope/events?token={TOKEN}"))
        .await
    {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 404),
        other => panic!("{other:?}"),
    }
    // Plain HTTP on the stream route: 426.
    let r = gw
        .client
        .get(format!("{}/instances/{INSTANCE}/events", gw.base))
        .header("token", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 426);

    // Token in the query, and in a header.
    let (mut by_query, _) = tokio_tungstenite::connect_async(format!(
        "{ws_base}/instances/{INSTANCE}/events?token={TOKEN}"
    ))
    .await
    .unwrap();
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "{ws_base}/instances/{INSTANCE}/events"
    ))
    .unwrap();
    request
        .headers_mut()
        .insert("token", TOKEN.parse().unwrap());
    let (mut by_header, _) = tokio_tungstenite::connect_async(request).await.unwrap();

    async fn next_json(
        ws: &mut tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    ) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .expect("a frame in time")
                .expect("stream open")
                .expect("no error");
            if let tungstenite::Message::Text(t) = msg {
                return serde_json::from_str(t.as_str()).unwrap();
            }
        }
    }
    for ws in [&mut by_query, &mut by_header] {
        assert_eq!(
            next_json(ws).await,
            json!({"type": "stream.ready", "instance": INSTANCE})
        );
    }
    gw.backend.emit(card_event());
    gw.backend.emit(rsvp());
    for ws in [&mut by_query, &mut by_header] {
        let card = next_json(ws).await;
        assert_eq!(card["type"], "event.card");
        assert_eq!(card["data"]["messageId"], "3EB0EVENT002");
        let answer = next_json(ws).await;
        assert_eq!(answer["type"], "event.rsvp");
        assert_eq!(answer["data"]["response"], "GOING");
        assert_eq!(answer["data"]["voter"], "123456789012345@lid");
    }
    // Without webhook URLs nothing is queued.
    assert_eq!(gw.store.webhook_count().await.unwrap(), 0);
}
