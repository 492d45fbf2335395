//! `Idempotency-Key` over real HTTP: concurrent duplicates send once and all get the
//! same response; a key is freed when nothing was sent, kept once the backend was
//! asked, refused for a different request, and remembered across a restart (SQLite).
//!
//! `RecordingBackend` (tests/gateway_support) stands in for the WhatsApp client until
//! group sends land; the HTTP responses are checked on their own, the backend's call
//! count separately.

mod gateway_support;

use std::time::Duration;

use futures_util::future::join_all;
use gateway_support::*;
use serde_json::json;
use waevent::gateway::BackendError;

const GROUP: &str = "120363019502650977-group";

fn zapi_body() -> String {
    json!({"phone": GROUP, "event": {"name": "Launch", "dateTime": "2026-05-01T10:00:00", "timeZone": "UTC-3"}})
        .to_string()
}

fn ryze_body() -> String {
    json!({"number": "120363312345678901@g.us", "name": "Launch", "startAt": "2026-05-01T10:00:00-03:00"})
        .to_string()
}

/// Status, replay header and raw body bytes.
async fn raw(r: reqwest::Response) -> (u16, bool, Vec<u8>) {
    let status = r.status().as_u16();
    let replayed = r
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    (status, replayed, r.bytes().await.unwrap().to_vec())
}

async fn zapi_with_key(gw: &TestGateway, key: &str, body: &str) -> (u16, bool, Vec<u8>) {
    let r = gw
        .client
        .post(gw.zapi("send-event"))
        .header("Client-Token", CLIENT_TOKEN)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", key)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    raw(r).await
}

async fn ryze_with_key(gw: &TestGateway, key: &str, body: &str) -> (u16, bool, Vec<u8>) {
    let r = gw
        .client
        .post(gw.ryze())
        .header("token", TOKEN)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", key)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    raw(r).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_duplicates_send_once() {
    let (_dir, path) = temp_store();
    let gw = TestGateway::start_at(&path, "").await;
    // A slow send, so the duplicates really overlap with it.
    gw.backend.set_delay(Duration::from_millis(300));

    let body = zapi_body();
    let results = join_all((0..20).map(|_| zapi_with_key(&gw, "order-42", &body))).await;
    assert!(
        results.iter().all(|(status, _, _)| *status == 200),
        "{results:?}"
    );
    assert!(
        results.iter().all(|(_, _, b)| *b == results[0].2),
        "bodies differ"
    );
    assert_eq!(
        results.iter().filter(|(_, replayed, _)| !replayed).count(),
        1
    );
    let first: serde_json::Value = serde_json::from_slice(&results[0].2).unwrap();
    assert!(first["messageId"].as_str().unwrap().starts_with("3EB0"));

    let body = ryze_body();
    let results = join_all((0..20).map(|_| ryze_with_key(&gw, "order-43", &body))).await;
    assert!(
        results.iter().all(|(status, _, _)| *status == 200),
        "{results:?}"
    );
    assert!(
        results.iter().all(|(_, _, b)| *b == results[0].2),
        "bodies differ"
    );
    assert_eq!(
        results.iter().filter(|(_, replayed, _)| !replayed).count(),
        1
    );

    // One send per key reached the backend.
    assert_eq!(gw.backend.calls().len(), 2);

    // Without a key, every request sends.
    gw.backend.set_delay(Duration::ZERO);
    let (a, _) = gw.post_zapi("send-event", &zapi_body()).await;
    let (b, _) = gw.post_zapi("send-event", &zapi_body()).await;
    assert_eq!((a, b), (200, 200));
    assert_eq!(gw.backend.calls().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rules() {
    let (_dir, path) = temp_store();
    let gw = TestGateway::start_at(&path, "").await;

    // Not connected: nothing was sent, the key is freed and works later.
    gw.backend.set_connected(false);
    let (status, replayed, _) = zapi_with_key(&gw, "k1", &zapi_body()).await;
    assert_eq!((status, replayed), (503, false));
    gw.backend.set_connected(true);
    let (status, replayed, first) = zapi_with_key(&gw, "k1", &zapi_body()).await;
    assert_eq!((status, replayed), (200, false));
    let (status, replayed, again) = zapi_with_key(&gw, "k1", &zapi_body()).await;
    assert_eq!((status, replayed), (200, true));
    assert_eq!(again, first);
    assert_eq!(gw.backend.calls().len(), 1);

    // The same key with another body, route or API: 422, nothing sent.
    let other = zapi_body().replace("Launch", "Other");
    let (status, _, body) = zapi_with_key(&gw, "k1", &other).await;
    assert_eq!(status, 422);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        json!({"error": "This Idempotency-Key was already used for a different request"})
    );
    let (status, _, body) = ryze_with_key(&gw, "k1", &ryze_body()).await;
    assert_eq!(status, 422);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        json!({"success": false, "error": {"message": "This Idempotency-Key was already used for a different request"}})
    );
    assert_eq!(gw.backend.calls().len(), 1);

    // A send of unknown outcome is kept: the duplicate gets the same 500, no resend.
    gw.backend.fail_with(Some(BackendError::Failed(
        "connection lost before the ack".into(),
    )));
    let (status, replayed, failed) = ryze_with_key(&gw, "k2", &ryze_body()).await;
    assert_eq!((status, replayed), (500, false));
    gw.backend.fail_with(None);
    let (status, replayed, again) = ryze_with_key(&gw, "k2", &ryze_body()).await;
    assert_eq!((status, replayed), (500, true));
    assert_eq!(again, failed);
    assert_eq!(gw.backend.calls().len(), 2);

    // Validation errors do not use the key.
    let (status, _, _) = zapi_with_key(&gw, "k3", "{}").await;
    assert_eq!(status, 400);
    let (status, replayed, _) = zapi_with_key(&gw, "k3", &zapi_body()).await;
    assert_eq!((status, replayed), (200, false));

    // Malformed keys are refused.
    for key in ["", &"k".repeat(257)] {
        let (status, _, body) = zapi_with_key(&gw, key, &zapi_body()).await;
        assert_eq!(status, 400, "{key:?}");
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.contains("Idempotency-Key must be 1 to 256 characters"),
            "{text}"
        );
    }
    assert_eq!(gw.backend.calls().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_survive_a_restart() {
    let (_dir, path) = temp_store();
    let mut first = TestGateway::start_at(&path, "").await;
    let (status, _, zapi_first) = zapi_with_key(&first, "restart-1", &zapi_body()).await;
    assert_eq!(status, 200);
    let (status, _, ryze_first) = ryze_with_key(&first, "restart-2", &ryze_body()).await;
    assert_eq!(status, 200);
    first.kill();
    drop(first);

    let second = TestGateway::start_at(&path, "").await;
    let (status, replayed, zapi_again) = zapi_with_key(&second, "restart-1", &zapi_body()).await;
    assert_eq!((status, replayed), (200, true));
    assert_eq!(zapi_again, zapi_first);
    let (status, replayed, ryze_again) = ryze_with_key(&second, "restart-2", &ryze_body()).await;
    assert_eq!((status, replayed), (200, true));
    assert_eq!(ryze_again, ryze_first);
    assert!(second.backend.calls().is_empty());
}
