//! The gateway over real HTTP on 127.0.0.1: every documented success and error case
//! of the Z-API and RyzeAPI routes, plus health, OpenAPI and unknown routes.
//!
//! The backend behind the gateway is `RecordingBackend` (tests/gateway_support): it
//! stands in for the WhatsApp client until group sends land. Each test first checks
//! the HTTP status and body on their own, then, separately, what reached the backend.

mod gateway_support;

use std::time::Duration;

use gateway_support::*;
use serde_json::{Value, json};
use waevent::event::{CallType, RsvpResponse};
use waevent::gateway::BackendError;
use waevent::jid::Jid;

const GROUP: &str = "120363019502650977-group";

fn group() -> Jid {
    Jid::group("120363019502650977")
}

async fn gateway() -> (tempfile::TempDir, TestGateway) {
    let (dir, path) = temp_store();
    let gw = TestGateway::start_at(&path, "").await;
    (dir, gw)
}

fn zapi_error(body: &Value) -> &str {
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error text: {body}"))
}

fn ryze_error(body: &Value) -> &str {
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(2), "{body}");
    body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message: {body}"))
}

fn assert_sent_shape(body: &Value) -> String {
    let obj = body.as_object().unwrap();
    assert_eq!(obj.len(), 3, "{body}");
    let id = body["messageId"].as_str().unwrap().to_string();
    assert_eq!(body["id"], body["messageId"]);
    let zaap = body["zaapId"].as_str().unwrap();
    assert_eq!(zaap.len(), 32);
    assert!(zaap.bytes().all(|b| b.is_ascii_hexdigit()));
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zapi_send_event() {
    let (_dir, gw) = gateway().await;
    let (status, body) = gw
        .post_zapi(
            "send-event",
            &json!({"phone": GROUP, "event": {"name": "Event name", "description": "Event description",
                "dateTime": "2024-04-29T09:30:00", "timeZone": "UTC-3", "location": {"name": "Place name"},
                "callLinkType": "voice", "canceled": false}})
            .to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = assert_sent_shape(&body);
    assert!(id.starts_with("3EB0"));

    let calls = gw.backend.calls();
    assert_eq!(calls.len(), 1);
    let Call::Send { chat, card, .. } = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(chat, &group());
    assert_eq!(card.name(), "Event name");
    assert_eq!(card.description(), Some("Event description"));
    // 09:30 at UTC-3 is 12:30 UTC.
    assert_eq!(card.start_time(), 1_714_393_800);
    assert_eq!(card.location().unwrap().name.as_deref(), Some("Place name"));
    assert_eq!(card.call_type(), Some(CallType::Voice));
    assert!(!card.is_canceled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zapi_date_time_rules() {
    let (_dir, gw) = gateway().await;
    for (date_time, zone, want) in [
        // No offset, no zone: UTC.
        ("2024-04-29T09:30:00", None, 1_714_383_000),
        // No offset: the zone applies.
        ("2024-04-29 09:30", Some("UTC+05:30"), 1_714_363_200),
        // An offset wins over the zone (Z-API's own example).
        ("2024-04-29T09:30:53.309Z", Some("UTC-3"), 1_714_383_053),
        ("2024-04-29T09:30:00-03:00", Some("UTC+1"), 1_714_393_800),
    ] {
        let mut event = json!({"name": "n", "dateTime": date_time});
        if let Some(z) = zone {
            event["timeZone"] = json!(z);
        }
        let (status, body) = gw
            .post_zapi(
                "send-event",
                &json!({"phone": GROUP, "event": event}).to_string(),
            )
            .await;
        assert_eq!(status, 200, "{date_time} {zone:?}: {body}");
        let Some(Call::Send { card, .. }) = gw.backend.calls().pop() else {
            panic!()
        };
        assert_eq!(card.start_time(), want, "{date_time} {zone:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zapi_edit_event_replaces_the_card() {
    let (_dir, gw) = gateway().await;
    let (status, body) = gw
        .post_zapi(
            "send-edit-event",
            &json!({"phone": GROUP, "eventMessageId": "3EB0C767D71D3D3E1A12",
                "event": {"name": "New name", "dateTime": "2024-04-30T10:00:00", "timeZone": "UTC-3", "canceled": true}})
            .to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_sent_shape(&body);

    let calls = gw.backend.calls();
    let [
        Call::Edit {
            chat,
            event_id,
            card,
        },
    ] = &calls[..]
    else {
        panic!("{calls:?}")
    };
    assert_eq!(chat, &group());
    assert_eq!(event_id, "3EB0C767D71D3D3E1A12");
    assert_eq!(card.name(), "New name");
    assert_eq!(card.start_time(), 1_714_482_000);
    assert!(card.is_canceled());
    // Fields left out are removed, as Z-API documents.
    assert_eq!(card.description(), None);
    assert_eq!(card.location(), None);
    assert_eq!(card.call_type(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zapi_event_response() {
    let (_dir, gw) = gateway().await;
    for (text, want) in [
        ("GOING", RsvpResponse::Going),
        ("NOT_GOING", RsvpResponse::NotGoing),
        ("MAYBE", RsvpResponse::Maybe),
    ] {
        let (status, body) = gw
            .post_zapi(
                "send-event-response",
                &json!({"phone": GROUP, "eventMessageId": "D2D612289D9E8F62307D72409A8D9DC3", "eventResponse": text})
                    .to_string(),
            )
            .await;
        assert_eq!(status, 200, "{text}: {body}");
        assert_sent_shape(&body);
        let Some(Call::Respond {
            chat,
            event_id,
            rsvp,
        }) = gw.backend.calls().pop()
        else {
            panic!()
        };
        assert_eq!(chat, group());
        assert_eq!(event_id, "D2D612289D9E8F62307D72409A8D9DC3");
        assert_eq!(rsvp.response, want);
        assert!(rsvp.timestamp_ms > 1_700_000_000_000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zapi_transport_errors() {
    let (_dir, gw) = gateway().await;
    let valid = json!({"phone": GROUP, "event": {"name": "n", "dateTime": "2024-04-29T09:30:00Z"}})
        .to_string();
    for route in ["send-event", "send-edit-event", "send-event-response"] {
        // 405 for any other method, with Allow.
        for method in [
            reqwest::Method::GET,
            reqwest::Method::PUT,
            reqwest::Method::DELETE,
        ] {
            let r = gw
                .client
                .request(method.clone(), gw.zapi(route))
                .header("Client-Token", CLIENT_TOKEN)
                .send()
                .await
                .unwrap();
            assert_eq!(r.headers()["allow"], "POST");
            let (status, body) = json_of(r).await;
            assert_eq!(
                (status, zapi_error(&body)),
                (405, "Method not allowed: use POST"),
                "{method} {route}"
            );
        }
        // 415 without a JSON content type.
        for ct in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let mut req = gw
                .client
                .post(gw.zapi(route))
                .header("Client-Token", CLIENT_TOKEN)
                .body(valid.clone());
            if let Some(ct) = ct {
                req = req.header("Content-Type", ct);
            }
            let (status, body) = json_of(req.send().await.unwrap()).await;
            assert_eq!(
                (status, zapi_error(&body)),
                (415, "Content-Type must be application/json"),
                "{ct:?}"
            );
        }
    }
    // A JSON content type with parameters is fine.
    let r = gw
        .client
        .post(gw.zapi("send-event"))
        .header("Client-Token", CLIENT_TOKEN)
        .header("Content-Type", "application/json; charset=utf-8")
        .body(valid.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // 413 over the body limit.
    let big = json!({"phone": GROUP, "event": {"name": "x".repeat(BODY_LIMIT), "dateTime": "2024-04-29T09:30:00Z"}});
    let (status, body) = gw.post_zapi("send-event", &big.to_string()).await;
    assert_eq!(status, 413);
    assert_eq!(
        zapi_error(&body),
        format!("Request body is larger than {BODY_LIMIT} bytes")
    );
    // Auth: unknown instance, wrong token, missing and wrong Client-Token.
    let other = gw.zapi("send-event").replace("/main/", "/nope/");
    let r = gw
        .client
        .post(other)
        .header("Client-Token", CLIENT_TOKEN)
        .header("Content-Type", "application/json")
        .body(valid.clone())
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(r).await;
    assert_eq!((status, zapi_error(&body)), (404, "Instance not found"));
    let wrong = gw
        .zapi("send-event")
        .replace(TOKEN, "test-instance-token-0123456780");
    let r = gw
        .client
        .post(wrong)
        .header("Client-Token", CLIENT_TOKEN)
        .header("Content-Type", "application/json")
        .body(valid.clone())
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(r).await;
    assert_eq!((status, zapi_error(&body)), (401, "Invalid instance token"));
    let r = gw
        .client
        .post(gw.zapi("send-event"))
        .header("Content-Type", "application/json")
        .body(valid.clone())
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(r).await;
    assert_eq!((status, zapi_error(&body)), (401, "null not allowed"));
    let r = gw
        .client
        .post(gw.zapi("send-event"))
        .header("Client-Token", "x")
        .header("Content-Type", "application/json")
        .body(valid.clone())
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(r).await;
    assert_eq!((status, zapi_error(&body)), (401, "Invalid Client-Token"));
    // Only the one good request reached the backend.
    assert_eq!(gw.backend.calls().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zapi_validation_errors() {
    let (_dir, gw) = gateway().await;
    let ev = |extra: Value| {
        let mut e = json!({"name": "n", "dateTime": "2024-04-29T09:30:00Z"});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    };
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "send-event",
            json!({"event": ev(json!({}))}),
            "phone is required",
        ),
        ("send-event", json!({"phone": GROUP}), "event is required"),
        (
            "send-event",
            json!({"phone": "12ab", "event": ev(json!({}))}),
            "Invalid phone number format: unexpected character 'a'; expected digits with optional +, spaces, dashes or parentheses",
        ),
        (
            "send-event",
            json!({"phone": GROUP, "event": {"dateTime": "2024-04-29T09:30:00Z"}}),
            "Name is required",
        ),
        (
            "send-event",
            json!({"phone": GROUP, "event": {"name": "n"}}),
            "dateTime is required",
        ),
        (
            "send-event",
            json!({"phone": GROUP, "event": ev(json!({"dateTime": "2024-04-29T09:30:00", "timeZone": "America/Sao_Paulo"}))}),
            "Invalid timeZone: expected an offset such as UTC-3 or UTC+05:30, got \"America/Sao_Paulo\"",
        ),
        (
            "send-event",
            json!({"phone": GROUP, "event": ev(json!({"dateTime": "29/04/2024"}))}),
            "Invalid dateTime, expected ISO 8601: \"29/04/2024\": premature end of input",
        ),
        (
            "send-event",
            json!({"phone": GROUP, "event": ev(json!({"callLinkType": "phone"}))}),
            "Invalid callLinkType: expected \"voice\" or \"video\", got \"phone\"",
        ),
        (
            "send-event",
            json!({"phone": GROUP, "event": ev(json!({"canceled": "no"}))}),
            "Invalid request body: invalid type: string \"no\", expected a boolean",
        ),
        (
            "send-event",
            json!([1]),
            "Invalid request body: expected a JSON object, got an array",
        ),
        (
            "send-edit-event",
            json!({"phone": GROUP, "event": ev(json!({}))}),
            "eventMessageId is required",
        ),
        (
            "send-edit-event",
            json!({"phone": GROUP, "eventMessageId": "A1"}),
            "event is required",
        ),
        (
            "send-event-response",
            json!({"phone": GROUP, "eventMessageId": "A1"}),
            "eventResponse is required",
        ),
        (
            "send-event-response",
            json!({"phone": GROUP, "eventResponse": "GOING"}),
            "eventMessageId is required",
        ),
        (
            "send-event-response",
            json!({"phone": GROUP, "eventMessageId": "A1", "eventResponse": "YES"}),
            "Invalid eventResponse: expected GOING, NOT_GOING, MAYBE or NONE, got \"YES\"",
        ),
    ];
    for (route, body, want) in cases {
        let (status, reply) = gw.post_zapi(route, &body.to_string()).await;
        assert_eq!((status, zapi_error(&reply)), (400, want), "{route} {body}");
    }
    let (status, reply) = gw.post_zapi("send-event", "{\"phone\":").await;
    assert_eq!(status, 400);
    assert!(
        zapi_error(&reply).starts_with("Invalid request body: EOF while parsing"),
        "{reply}"
    );
    assert!(gw.backend.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zapi_backend_outcomes() {
    let (_dir, gw) = gateway().await;
    let send = json!({"phone": GROUP, "event": {"name": "n", "dateTime": "2024-04-29T09:30:00Z"}})
        .to_string();
    let respond =
        json!({"phone": GROUP, "eventMessageId": "E1", "eventResponse": "GOING"}).to_string();
    gw.backend.set_connected(false);
    let (status, body) = gw.post_zapi("send-event", &send).await;
    assert_eq!(
        (status, zapi_error(&body)),
        (503, "Instance is not connected to WhatsApp")
    );
    assert!(gw.backend.calls().is_empty());
    gw.backend.set_connected(true);
    gw.backend
        .fail_with(Some(BackendError::EventNotFound("E1".into())));
    let (status, body) = gw.post_zapi("send-event-response", &respond).await;
    assert_eq!(
        (status, zapi_error(&body)),
        (404, "Event message not found: E1")
    );
    gw.backend.fail_with(Some(BackendError::Failed(
        "server refused the message (479)".into(),
    )));
    let (status, body) = gw.post_zapi("send-event", &send).await;
    assert_eq!(
        (status, zapi_error(&body)),
        (
            500,
            "Failed to send event: server refused the message (479)"
        )
    );
    gw.backend.fail_with(Some(BackendError::Rejected(
        "not a participant of the group".into(),
    )));
    let (status, body) = gw.post_zapi("send-event", &send).await;
    assert_eq!(
        (status, zapi_error(&body)),
        (400, "not a participant of the group")
    );
    assert_eq!(gw.backend.calls().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ryze_send_event() {
    let (_dir, gw) = gateway().await;
    let (status, body) = gw
        .post_ryze(
            &json!({"number": "120363312345678901@g.us", "name": "Team meeting", "description": "Quarterly planning",
                "startAt": "2026-04-28T14:00:00-03:00", "endAt": "2026-04-28T16:00:00-03:00",
                "location": {"name": "Room 3, HQ", "address": "Av. Paulista, 1000", "latitude": -23.5614, "longitude": -46.6558},
                "joinLink": "https://call.whatsapp.com/video/AbC123", "isScheduleCall": true, "hasReminder": true,
                "reminderOffsetSec": 900, "extraGuestsAllowed": true, "isCanceled": false, "delay": 1,
                "replyTo": "3EB0AAAA", "replyPrivate": true, "source": "crm"})
            .to_string(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    assert_eq!(body["message"], "Message sent successfully");
    assert_eq!(body["status"], "sent");
    let data = &body["data"];
    assert!(data["messageId"].as_str().unwrap().starts_with("3EB0"));
    assert_eq!(data["number"], "120363312345678901@g.us");
    assert_eq!(data["messageType"], "event");
    assert_eq!(data["source"], "crm");
    assert!(
        data["content"]
            .as_str()
            .unwrap()
            .starts_with("📅 Team meeting\n🕒 2026-04-28T17:00:00Z")
    );
    assert!(data["timestamp"].as_str().unwrap().starts_with("2026-"));

    let calls = gw.backend.calls();
    let [
        Call::Send {
            chat,
            card,
            options,
        },
    ] = &calls[..]
    else {
        panic!("{calls:?}")
    };
    assert_eq!(chat, &Jid::group("120363312345678901"));
    assert_eq!(card.name(), "Team meeting");
    assert_eq!(card.start_time(), 1_777_395_600);
    assert_eq!(card.end_time(), Some(1_777_402_800));
    assert_eq!(
        card.location().unwrap().address.as_deref(),
        Some("Av. Paulista, 1000")
    );
    assert_eq!(
        card.join_link(),
        Some("https://call.whatsapp.com/video/AbC123")
    );
    assert_eq!(card.reminder_offset_secs(), Some(900));
    assert!(card.is_schedule_call() && card.extra_guests_allowed() && !card.is_canceled());
    assert_eq!(options.reply_to.as_deref(), Some("3EB0AAAA"));
    assert!(options.reply_private);
    assert_eq!(options.typing_delay, Some(Duration::from_secs(1)));
    assert_eq!(options.source.as_deref(), Some("crm"));

    // A phone number with formatting, minimum body, default source.
    let (status, body) = gw
        .post_ryze(&json!({"number": "+55 (11) 99999-9999", "name": "n", "startAt": "2026-04-28T14:00:00Z"}).to_string())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["number"], "5511999999999@s.whatsapp.net");
    assert_eq!(body["data"]["source"], "api");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ryze_documented_errors() {
    let (_dir, gw) = gateway().await;
    let valid = json!({"number": "5511999999999", "name": "n", "startAt": "2026-04-28T14:00:00Z"})
        .to_string();
    // 400 Instance name is required.
    for path in [
        "/api/message/event",
        "/api/message/event/",
        "/api/message/event/%20",
    ] {
        let r = gw
            .client
            .post(format!("{}{path}", gw.base))
            .header("token", TOKEN)
            .header("Content-Type", "application/json")
            .body(valid.clone())
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(r).await;
        assert_eq!(
            (status, ryze_error(&body)),
            (400, "Instance name is required"),
            "{path}"
        );
    }
    // 401 without the token header, or with a wrong one; 404 for an unknown instance.
    let r = gw
        .client
        .post(gw.ryze())
        .header("Content-Type", "application/json")
        .body(valid.clone())
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(r).await;
    assert_eq!(
        (status, ryze_error(&body)),
        (401, "Missing token in header")
    );
    let r = gw
        .client
        .post(gw.ryze())
        .header("token", "wrong-token-0123456789")
        .header("Content-Type", "application/json")
        .body(valid.clone())
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(r).await;
    assert_eq!((status, ryze_error(&body)), (401, "Invalid token"));
    let r = gw
        .client
        .post(format!("{}/api/message/event/nope", gw.base))
        .header("token", TOKEN)
        .header("Content-Type", "application/json")
        .body(valid.clone())
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(r).await;
    assert_eq!((status, ryze_error(&body)), (404, "Instance not found"));
    // 400 body validation, in RyzeAPI's order.
    let cases: Vec<(String, &str)> = vec![
        ("{\"number\":".into(), "Invalid request body: EOF while parsing a value at line 1 column 10"),
        ("\"text\"".into(), "Invalid request body: expected a JSON object, got a string"),
        (json!({"number": "5511999999999", "name": "n", "startAt": "2026-04-28T14:00:00Z", "hasReminder": "yes"}).to_string(),
            "Invalid request body: invalid type: string \"yes\", expected a boolean"),
        (json!({"name": "n", "startAt": "2026-04-28T14:00:00Z"}).to_string(), "Number is required"),
        (json!({"number": "", "name": "n"}).to_string(), "Number is required"),
        (json!({"number": "5511999999999", "startAt": "2026-04-28T14:00:00Z"}).to_string(), "Name is required"),
        (json!({"number": "5511999999999", "name": "  ", "startAt": "2026-04-28T14:00:00Z"}).to_string(), "Name is required"),
        (json!({"number": "5511999999999", "name": "n"}).to_string(), "startAt is required"),
        (json!({"number": "5511999999999", "name": "n", "startAt": "2026-04-28 14:00:00"}).to_string(),
            "Invalid startAt, expected ISO 8601 (RFC3339): \"2026-04-28 14:00:00\" has no UTC offset; append Z or an offset such as -03:00"),
        (json!({"number": "5511999999999", "name": "n", "startAt": "next week"}).to_string(),
            "Invalid startAt, expected ISO 8601 (RFC3339): \"next week\": premature end of input"),
        (json!({"number": "12345", "name": "n", "startAt": "2026-04-28T14:00:00Z"}).to_string(),
            "Invalid phone number format: 5 digits; a phone number has 7 to 15 digits including the country code"),
        (json!({"number": "5511999999999@broadcast", "name": "n", "startAt": "2026-04-28T14:00:00Z"}).to_string(),
            "Invalid phone number format: not a user, LID or group JID"),
        (json!({"number": "5511999999999", "name": "n", "startAt": "2026-04-28T14:00:00Z", "endAt": "2026-04-28T13:00:00Z"}).to_string(),
            "endAt (2026-04-28T13:00:00Z) is before startAt (2026-04-28T14:00:00Z)"),
        (json!({"number": "5511999999999", "name": "n", "startAt": "2026-04-28T14:00:00Z", "delay": 999}).to_string(),
            "Invalid request body: delay must be 0 to 300 seconds, got 999"),
    ];
    for (body, want) in cases {
        let (status, reply) = gw.post_ryze(&body).await;
        assert_eq!((status, ryze_error(&reply)), (400, want), "{body}");
    }
    // 413 over the body limit.
    let big = json!({"number": "5511999999999", "name": "x".repeat(BODY_LIMIT), "startAt": "2026-04-28T14:00:00Z"});
    let (status, body) = gw.post_ryze(&big.to_string()).await;
    assert_eq!(
        (status, ryze_error(&body)),
        (413, "Request body is larger than 4096 bytes")
    );
    // 405 with Allow.
    let r = gw
        .client
        .get(gw.ryze())
        .header("token", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["allow"], "POST");
    let (status, body) = json_of(r).await;
    assert_eq!(
        (status, ryze_error(&body)),
        (405, "Method not allowed: use POST")
    );
    assert!(gw.backend.calls().is_empty());
    // 503 and 500 come from the instance.
    gw.backend.set_connected(false);
    let (status, body) = gw.post_ryze(&valid).await;
    assert_eq!(
        (status, ryze_error(&body)),
        (503, "Instance is not connected to WhatsApp")
    );
    assert!(gw.backend.calls().is_empty());
    gw.backend.set_connected(true);
    gw.backend.fail_with(Some(BackendError::Failed(
        "timed out waiting for the server ack".into(),
    )));
    let (status, body) = gw.post_ryze(&valid).await;
    assert_eq!(
        (status, ryze_error(&body)),
        (
            500,
            "Failed to send event: timed out waiting for the server ack"
        )
    );
    assert_eq!(gw.backend.calls().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_openapi_and_unknown_routes() {
    let (_dir, gw) = gateway().await;
    let (status, body) = json_of(
        gw.client
            .get(format!("{}/healthz", gw.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"status": "ok", "instances": 1, "connected": 1})
    );
    gw.backend.set_connected(false);
    let (_, body) = json_of(
        gw.client
            .get(format!("{}/healthz", gw.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(body["connected"], 0);
    let (status, doc) = json_of(
        gw.client
            .get(format!("{}/openapi.json", gw.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/message/event/{instance}"]["post"].is_object());
    let (status, body) = json_of(
        gw.client
            .get(format!("{}/nothing/here", gw.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, zapi_error(&body)), (404, "Not found"));
}
