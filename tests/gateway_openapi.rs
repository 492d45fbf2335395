//! The `/openapi.json` document checked by independent validators (PyPI
//! `openapi-spec-validator` for the document, `openapi-schema-validator`'s OAS 3.1
//! validator for instances): real responses of the running gateway and the webhook
//! bodies it sends must match the schemas the document declares, and broken instances
//! must not.
//!
//! `RecordingBackend` (tests/gateway_support) stands in for the WhatsApp client until
//! group sends land.

mod common;
mod gateway_support;

use gateway_support::*;
use serde_json::{Value, json};
use waevent::event::{EventCard, RsvpResponse};
use waevent::gateway::IncomingEvent;
use waevent::gateway::webhook::{native_payload, zapi_payload};
use waevent::jid::Jid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn document_and_real_payloads_validate() {
    let (_dir, path) = temp_store();
    let gw = TestGateway::start_at(&path, "").await;
    let (_, doc) = json_of(
        gw.client
            .get(format!("{}/openapi.json", gw.base))
            .send()
            .await
            .unwrap(),
    )
    .await;

    let (status, zapi_sent) = gw
        .post_zapi(
            "send-event",
            &json!({"phone": "120363019502650977-group", "event": {"name": "n", "dateTime": "2026-05-01T10:00:00"}})
                .to_string(),
        )
        .await;
    assert_eq!(status, 200);
    let (status, zapi_error) = gw.post_zapi("send-event", "{}").await;
    assert_eq!(status, 400);
    let (status, ryze_ok) = gw
        .post_ryze(
            &json!({"number": "5511999999999", "name": "n", "startAt": "2026-05-01T10:00:00Z"})
                .to_string(),
        )
        .await;
    assert_eq!(status, 200);
    let (status, ryze_error) = gw.post_ryze("{}").await;
    assert_eq!(status, 400);

    let card = EventCard::builder()
        .name("Team sync")
        .start_unix(1_777_395_600)
        .build()
        .unwrap();
    let chat = Jid::group("120363019502650977");
    let voter = Jid::lid_user("123456789012345");
    let events = [
        IncomingEvent::EventCard {
            chat: chat.clone(),
            message_id: "M1".into(),
            sender: voter.clone(),
            from_me: false,
            card: card.clone(),
            time_ms: 1,
        },
        IncomingEvent::Rsvp {
            chat: chat.clone(),
            message_id: "M2".into(),
            event_id: "M1".into(),
            event_from_me: false,
            event_creator: Some(voter.clone()),
            voter: voter.clone(),
            voter_alt: None,
            from_me: true,
            response: RsvpResponse::Maybe,
            extra_guests: 0,
            time_ms: 2,
        },
        IncomingEvent::EventEdited {
            chat: chat.clone(),
            message_id: "M3".into(),
            event_id: "M1".into(),
            editor: voter.clone(),
            card: card.to_canceled(),
            time_ms: 3,
        },
        IncomingEvent::EventCanceled {
            chat: chat.clone(),
            message_id: "M4".into(),
            event_id: "M1".into(),
            editor: voter.clone(),
            time_ms: 4,
        },
    ];
    let mut instances = vec![
        json!(["ZapiSent", zapi_sent]),
        json!(["ZapiError", zapi_error]),
        json!(["RyzeSuccess", ryze_ok]),
        json!(["RyzeError", ryze_error]),
        json!([
            "ZapiReceivedCallBack",
            zapi_payload(INSTANCE, &events[1]).unwrap()
        ]),
    ];
    for e in &events {
        instances.push(json!(["WebhookEvent", native_payload(INSTANCE, e, 5)]));
    }
    let good = instances.len();
    // Instances that must fail, so a validator that accepts everything is caught.
    let mut broken_sent = zapi_sent.clone();
    broken_sent.as_object_mut().unwrap().remove("id");
    instances.push(json!(["ZapiSent", broken_sent]));
    instances.push(json!(["RyzeError", {"success": true, "error": {"message": "x"}}]));
    let mut broken_event = native_payload(INSTANCE, &events[0], 5);
    broken_event["type"] = json!("event.unknown");
    instances.push(json!(["WebhookEvent", broken_event]));

    let out = common::run_python(
        "openapi_validate.py",
        json!({"document": doc, "instances": instances})
            .to_string()
            .as_bytes(),
    );
    let out: Value = serde_json::from_slice(&out).unwrap();
    let results = out["results"].as_array().unwrap();
    assert_eq!(results.len(), instances.len());
    for (i, r) in results.iter().enumerate() {
        let errors = r["errors"].as_array().unwrap();
        if i < good {
            assert!(
                errors.is_empty(),
                "{} should validate: {errors:?}\n{}",
                r["schema"],
                instances[i]
            );
        } else {
            assert!(
                !errors.is_empty(),
                "{} should not validate: {}",
                r["schema"],
                instances[i]
            );
        }
    }
}
