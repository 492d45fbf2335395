//! Webhooks: the JSON the gateway POSTs for incoming events, how it is signed, and
//! the delivery worker that drains the store's outbox.
//!
//! **Shapes.** Every incoming event goes to the instance's `webhook_url` as
//!
//! ```json
//! {"id": "<64 hex>", "type": "event.rsvp", "instance": "main",
//!  "createdAt": "2026-05-01T12:00:00.000Z", "data": {…}}
//! ```
//!
//! (`type` is `event.card`, `event.rsvp`, `event.edited` or `event.canceled`; `id` is
//! the same for the same event, so receivers can drop duplicates). Incoming RSVPs also
//! go to `zapi_webhook_url` in Z-API's received-message shape (`"type":
//! "ReceivedCallBack"` with `eventResponse{response, responseFrom, time,
//! referencedMessage}`). The WebSocket stream carries the first shape.
//!
//! **Signature.** Each POST carries `X-Waevent-Signature: sha256=<hex>`, the
//! HMAC-SHA256 of the raw body under the instance's `webhook_secret`, and
//! `X-Waevent-Timestamp` (unix seconds of the attempt), `X-Waevent-Delivery` (the
//! outbox job id) and `X-Waevent-Attempt` (1 for the first attempt). The body itself
//! holds `id` and `createdAt`, so a receiver that checks the signature can drop
//! replays by `id` and stale deliveries by `createdAt`. [`verify_signature`] checks a
//! signature in constant time.
//!
//! **Delivery.** An event is written to the store's webhook outbox before the first
//! attempt, and removed only after a 2xx answer. Failed attempts are retried after
//! `initial_backoff_ms`, doubling up to `max_backoff_ms` (plus up to 10 % jitter),
//! forever unless `max_attempts` is set. Jobs outlive the process: a restarted
//! gateway delivers what is left in the outbox. Delivery is at least once.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, broadcast, watch};

use super::InstanceRuntime;
use super::backend::IncomingEvent;
use super::config::{Secret, WebhookSettings};
use super::http::{now_ms, rfc3339_ms};
use crate::jid::{DEFAULT_USER_SERVER, Jid};
use crate::store::{StoreBatch, WebhookJob};

/// Header with the body's HMAC-SHA256: `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-waevent-signature";
/// Header with the attempt's unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "x-waevent-timestamp";
/// Header with the outbox job id.
pub const DELIVERY_HEADER: &str = "x-waevent-delivery";
/// Header with the attempt number (1 for the first).
pub const ATTEMPT_HEADER: &str = "x-waevent-attempt";
/// Header with the event type (`event.rsvp`, … or `ReceivedCallBack`).
pub const EVENT_HEADER: &str = "x-waevent-event";

/// Job id prefix of deliveries to `webhook_url`.
pub const NATIVE_PREFIX: &str = "waevent.";
/// Job id prefix of deliveries to `zapi_webhook_url`.
pub const ZAPI_PREFIX: &str = "zapi.";

type HmacSha256 = Hmac<Sha256>;

/// `sha256=<hex of HMAC-SHA256(secret, body)>`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` is a valid `sha256=<hex>` signature of `body` under `secret`
/// (compared in constant time).
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// A JID as Z-API writes phone fields: digits for a phone number, `<id>-group` for
/// a group, the JID text otherwise.
pub fn zapi_phone(jid: &Jid) -> String {
    if jid.is_group() {
        format!("{}-group", jid.user)
    } else if jid.server == DEFAULT_USER_SERVER {
        jid.user.clone()
    } else {
        jid.to_non_ad().to_string()
    }
}

/// The `data` object of the gateway's own webhook shape (also what `waevent listen`
/// prints).
pub fn event_data(event: &IncomingEvent) -> Value {
    match event {
        IncomingEvent::EventCard {
            chat,
            message_id,
            sender,
            from_me,
            card,
            time_ms,
        } => json!({
            "chat": chat.to_string(),
            "messageId": message_id,
            "sender": sender.to_string(),
            "fromMe": from_me,
            "time": time_ms,
            "event": card.to_json(),
        }),
        IncomingEvent::Rsvp {
            chat,
            message_id,
            event_id,
            event_from_me,
            event_creator,
            voter,
            voter_alt,
            from_me,
            response,
            extra_guests,
            time_ms,
        } => json!({
            "chat": chat.to_string(),
            "messageId": message_id,
            "eventMessageId": event_id,
            "eventFromMe": event_from_me,
            "eventCreator": event_creator.as_ref().map(Jid::to_string),
            "voter": voter.to_string(),
            "voterAlt": voter_alt.as_ref().map(Jid::to_string),
            "fromMe": from_me,
            "response": response.as_str(),
            "extraGuests": extra_guests,
            "time": time_ms,
        }),
        IncomingEvent::EventEdited {
            chat,
            message_id,
            event_id,
            editor,
            card,
            time_ms,
        } => json!({
            "chat": chat.to_string(),
            "messageId": message_id,
            "eventMessageId": event_id,
            "editor": editor.to_string(),
            "time": time_ms,
            "event": card.to_json(),
        }),
        IncomingEvent::EventCanceled {
            chat,
            message_id,
            event_id,
            editor,
            time_ms,
        } => json!({
            "chat": chat.to_string(),
            "messageId": message_id,
            "eventMessageId": event_id,
            "editor": editor.to_string(),
            "time": time_ms,
        }),
    }
}

/// A stable id for an event of an instance: hex SHA-256 over the instance, the type
/// and the data (so a redelivered event gets the same id).
fn stable_event_id(instance: &str, kind: &str, data: &Value) -> String {
    let mut h = Sha256::new();
    for part in [instance.as_bytes(), kind.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update(data.to_string().as_bytes());
    hex::encode(h.finalize())
}

/// The gateway's own JSON for `event` (webhook body and stream frame).
pub fn native_payload(instance: &str, event: &IncomingEvent, created_ms: i64) -> Value {
    let data = event_data(event);
    let kind = event.kind();
    json!({
        "id": stable_event_id(instance, kind, &data),
        "type": kind,
        "instance": instance,
        "createdAt": rfc3339_ms(created_ms),
        "data": data,
    })
}

/// An incoming RSVP in Z-API's received-message (`ReceivedCallBack`) shape; `None`
/// for other events, which Z-API does not document.
pub fn zapi_payload(instance: &str, event: &IncomingEvent) -> Option<Value> {
    let IncomingEvent::Rsvp {
        chat,
        message_id,
        event_id,
        event_from_me,
        event_creator,
        voter,
        voter_alt,
        from_me,
        response,
        time_ms,
        ..
    } = event
    else {
        return None;
    };
    let (lid, pn) = match (voter.is_lid(), voter_alt) {
        (true, alt) => (Some(voter), alt.as_ref().filter(|a| a.is_pn())),
        (false, alt) => (
            alt.as_ref().filter(|a| a.is_lid()),
            Some(voter).filter(|v| v.is_pn()),
        ),
    };
    let phone = zapi_phone(chat);
    let voter_phone = pn.map(zapi_phone).unwrap_or_else(|| zapi_phone(voter));
    Some(json!({
        "isStatusReply": false,
        "senderLid": lid.map(|l| l.to_non_ad().to_string()),
        "waitingMessage": false,
        "isEdit": false,
        "isGroup": chat.is_group(),
        "isNewsletter": false,
        "instanceId": instance,
        "messageId": message_id,
        "phone": if chat.is_group() { phone.clone() } else { voter_phone.clone() },
        "fromMe": from_me,
        "momment": time_ms,
        "status": "RECEIVED",
        "participantPhone": if chat.is_group() { Some(voter_phone.clone()) } else { None },
        "participantLid": if chat.is_group() { lid.map(|l| l.to_non_ad().to_string()) } else { None },
        "type": "ReceivedCallBack",
        "eventResponse": {
            "response": response.as_str(),
            "responseFrom": voter_phone,
            "time": time_ms,
            "referencedMessage": {
                "messageId": event_id,
                "fromMe": event_from_me,
                "phone": phone,
                "participant": event_creator.as_ref().map(zapi_phone),
            }
        }
    }))
}

/// The outbox jobs for `event`: one per configured webhook target.
pub(crate) fn jobs_for(
    inst: &InstanceRuntime,
    native: &Value,
    event: &IncomingEvent,
) -> Vec<WebhookJob> {
    let now = now_ms();
    let id = native.get("id").and_then(Value::as_str).unwrap_or_default();
    let name = &inst.config.name;
    let mut jobs = Vec::new();
    if inst.config.webhook_url.is_some() {
        jobs.push(WebhookJob {
            id: format!("{NATIVE_PREFIX}{id}"),
            instance: name.clone(),
            payload: native.to_string().into_bytes(),
            attempts: 0,
            next_attempt_at_ms: now,
            created_at_ms: now,
            last_error: None,
        });
    }
    if inst.config.zapi_webhook_url.is_some()
        && let Some(z) = zapi_payload(name, event)
    {
        jobs.push(WebhookJob {
            id: format!("{ZAPI_PREFIX}{id}"),
            instance: name.clone(),
            payload: z.to_string().into_bytes(),
            attempts: 0,
            next_attempt_at_ms: now,
            created_at_ms: now,
            last_error: None,
        });
    }
    jobs
}

/// Delay before attempt `failed + 1` after `failed` failures (≥ 1): the initial
/// backoff doubled per failure, capped, plus up to 10 % jitter.
pub fn backoff(settings: &WebhookSettings, failed: u32) -> Duration {
    let shift = failed.saturating_sub(1).min(40);
    let base = settings
        .initial_backoff_ms
        .saturating_mul(1u64 << shift)
        .min(settings.max_backoff_ms);
    let jitter = rand::thread_rng().gen_range(0..=base / 10);
    Duration::from_millis(base.saturating_add(jitter))
}

/// Writes the jobs for one event, retrying a failing store a few times.
pub(crate) async fn enqueue(inst: &InstanceRuntime, jobs: Vec<WebhookJob>) -> bool {
    if jobs.is_empty() {
        return true;
    }
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=8 {
        let batch = StoreBatch {
            webhooks: jobs.clone(),
            ..StoreBatch::default()
        };
        match inst.store.commit_batch(batch).await {
            Ok(_) => return true,
            Err(e) => {
                tracing::warn!(instance = %inst.config.name, attempt, error = %e, "cannot queue a webhook");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    tracing::error!(instance = %inst.config.name, "webhook lost: the store refused it 8 times");
    false
}

/// Forwards the backend's events into the outbox and the stream until the backend
/// closes its channel or `stop` is set.
pub(crate) async fn run_event_pump(
    inst: Arc<InstanceRuntime>,
    mut events: broadcast::Receiver<IncomingEvent>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let event = tokio::select! {
            _ = stop.changed() => return,
            r = events.recv() => r,
        };
        match event {
            Ok(event) => {
                let native = native_payload(&inst.config.name, &event, now_ms());
                let jobs = jobs_for(&inst, &native, &event);
                if enqueue(&inst, jobs).await {
                    inst.wake.notify_one();
                }
                // No subscriber is fine.
                let _ = inst.stream.send(Arc::from(native.to_string()));
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::error!(instance = %inst.config.name, missed, "incoming events lost: the gateway fell behind the client");
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Delivers due outbox jobs of one instance until `stop` is set.
pub(crate) async fn run_delivery(
    inst: Arc<InstanceRuntime>,
    settings: WebhookSettings,
    http: reqwest::Client,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    const BATCH: usize = 32;
    let poll = Duration::from_millis(settings.poll_interval_ms);
    loop {
        if *stop.borrow() {
            return;
        }
        let due = match inst.store.due_webhooks(now_ms(), BATCH).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::error!(instance = %inst.config.name, error = %e, "cannot read the webhook outbox");
                Vec::new()
            }
        };
        let full = due.len() == BATCH;
        for job in due {
            if *stop.borrow() {
                return;
            }
            deliver(&inst, &settings, &http, job).await;
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Where a job goes, by its id prefix.
fn target<'a>(inst: &'a InstanceRuntime, job: &WebhookJob) -> Option<&'a str> {
    if job.id.starts_with(ZAPI_PREFIX) {
        inst.config.zapi_webhook_url.as_deref()
    } else {
        inst.config.webhook_url.as_deref()
    }
}

/// One attempt at one job; the outcome is written back to the store.
async fn deliver(
    inst: &InstanceRuntime,
    settings: &WebhookSettings,
    http: &reqwest::Client,
    job: WebhookJob,
) {
    let name = inst.config.name.as_str();
    let (Some(url), Some(secret)) = (target(inst, &job), inst.config.webhook_secret.as_ref())
    else {
        tracing::warn!(instance = name, job = %job.id, "webhook target no longer configured; dropping the delivery");
        let _ = inst.store.delete_webhook(&job.id).await;
        return;
    };
    let attempt = job.attempts.saturating_add(1);
    let result = post(http, url, secret, &job, attempt, settings).await;
    match result {
        Ok(()) => {
            tracing::info!(instance = name, job = %job.id, attempt, "webhook delivered");
            if let Err(e) = inst.store.delete_webhook(&job.id).await {
                // It will be delivered again: receivers drop duplicates by id.
                tracing::error!(instance = name, error = %e, "cannot remove a delivered webhook");
            }
        }
        Err(why) => {
            if settings.max_attempts.is_some_and(|max| attempt >= max) {
                tracing::error!(instance = name, job = %job.id, attempt, error = %why, "webhook given up");
                let _ = inst.store.delete_webhook(&job.id).await;
                return;
            }
            let wait = backoff(settings, attempt);
            let next = now_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
            tracing::warn!(instance = name, job = %job.id, attempt, error = %why, retry_in_ms = wait.as_millis() as u64, "webhook failed");
            if let Err(e) = inst.store.reschedule_webhook(&job.id, next, &why).await {
                tracing::error!(instance = name, error = %e, "cannot reschedule a webhook");
            }
        }
    }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    secret: &Secret,
    job: &WebhookJob,
    attempt: u32,
    settings: &WebhookSettings,
) -> Result<(), String> {
    let kind = if job.id.starts_with(ZAPI_PREFIX) {
        "ReceivedCallBack".to_string()
    } else {
        serde_json::from_slice::<Value>(&job.payload)
            .ok()
            .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_default()
    };
    let timestamp = (now_ms() / 1000).to_string();
    let response = http
        .post(url)
        .timeout(Duration::from_millis(settings.timeout_ms))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, sign(secret.expose(), &job.payload))
        .header(TIMESTAMP_HEADER, timestamp)
        .header(DELIVERY_HEADER, &job.id)
        .header(ATTEMPT_HEADER, attempt.to_string())
        .header(EVENT_HEADER, kind)
        .body(job.payload.clone())
        .send()
        .await
        // Without the URL: it may carry credentials.
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", status.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventCard, RsvpResponse};

    fn rsvp(voter: Jid, voter_alt: Option<Jid>) -> IncomingEvent {
        IncomingEvent::Rsvp {
            chat: Jid::group("120363019502650977"),
            message_id: "RSVP1".into(),
            event_id: "EVT1".into(),
            event_from_me: true,
            event_creator: Some(Jid::pn_user("5511999999999")),
            voter,
            voter_alt,
            from_me: false,
            response: RsvpResponse::Going,
            extra_guests: 2,
            time_ms: 1_714_393_800_123,
        }
    }

    #[test]
    fn signatures() {
        let sig = sign(b"key", b"The quick brown fox jumps over the lazy dog");
        // RFC 2104 / Wikipedia test vector.
        assert_eq!(
            sig,
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        assert!(verify_signature(
            b"key",
            b"The quick brown fox jumps over the lazy dog",
            &sig
        ));
        assert!(!verify_signature(
            b"key",
            b"the quick brown fox jumps over the lazy dog",
            &sig
        ));
        assert!(!verify_signature(
            b"kez",
            b"The quick brown fox jumps over the lazy dog",
            &sig
        ));
        assert!(!verify_signature(b"key", b"x", "sha256=zz"));
        assert!(!verify_signature(b"key", b"x", "md5=00"));
    }

    #[test]
    fn native_shape_and_stable_id() {
        let e = rsvp(
            Jid::lid_user("123456789"),
            Some(Jid::pn_user("5511988887777")),
        );
        let a = native_payload("main", &e, 1_000);
        let b = native_payload("main", &e, 2_000);
        assert_eq!(a["id"], b["id"]);
        assert_ne!(a["id"], native_payload("other", &e, 1_000)["id"]);
        assert_eq!(a["type"], "event.rsvp");
        assert_eq!(a["createdAt"], "1970-01-01T00:00:01.000Z");
        assert_eq!(a["data"]["voter"], "123456789@lid");
        assert_eq!(a["data"]["voterAlt"], "5511988887777@s.whatsapp.net");
        assert_eq!(a["data"]["response"], "GOING");
        assert_eq!(a["data"]["extraGuests"], 2);
        assert_eq!(a["data"]["eventMessageId"], "EVT1");
        let card = EventCard::builder()
            .name("n")
            .start_unix(10)
            .build()
            .unwrap();
        let c = native_payload(
            "main",
            &IncomingEvent::EventCard {
                chat: Jid::group("1"),
                message_id: "M".into(),
                sender: Jid::pn_user("5511999999999"),
                from_me: false,
                card,
                time_ms: 5,
            },
            0,
        );
        assert_eq!(c["type"], "event.card");
        assert_eq!(c["data"]["event"]["name"], "n");
        assert_eq!(c["data"]["event"]["startAt"], "1970-01-01T00:00:10Z");
    }

    #[test]
    fn zapi_shape() {
        let z = zapi_payload(
            "main",
            &rsvp(
                Jid::lid_user("123456789"),
                Some(Jid::pn_user("5511988887777")),
            ),
        )
        .unwrap();
        assert_eq!(z["type"], "ReceivedCallBack");
        assert_eq!(z["phone"], "120363019502650977-group");
        assert_eq!(z["isGroup"], true);
        assert_eq!(z["participantPhone"], "5511988887777");
        assert_eq!(z["participantLid"], "123456789@lid");
        assert_eq!(z["senderLid"], "123456789@lid");
        assert_eq!(z["momment"], 1_714_393_800_123i64);
        assert_eq!(z["eventResponse"]["response"], "GOING");
        assert_eq!(z["eventResponse"]["responseFrom"], "5511988887777");
        assert_eq!(z["eventResponse"]["time"], 1_714_393_800_123i64);
        assert_eq!(z["eventResponse"]["referencedMessage"]["messageId"], "EVT1");
        assert_eq!(z["eventResponse"]["referencedMessage"]["fromMe"], true);
        assert_eq!(
            z["eventResponse"]["referencedMessage"]["participant"],
            "5511999999999"
        );
        // A voter known only by phone number.
        let z = zapi_payload("main", &rsvp(Jid::pn_user("5511988887777"), None)).unwrap();
        assert_eq!(z["participantPhone"], "5511988887777");
        assert!(z["participantLid"].is_null());
        let card = EventCard::builder()
            .name("n")
            .start_unix(10)
            .build()
            .unwrap();
        assert!(
            zapi_payload(
                "main",
                &IncomingEvent::EventEdited {
                    chat: Jid::group("1"),
                    message_id: "M".into(),
                    event_id: "E".into(),
                    editor: Jid::pn_user("5511999999999"),
                    card,
                    time_ms: 0,
                }
            )
            .is_none()
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let s = WebhookSettings {
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
            ..WebhookSettings::default()
        };
        for (failed, base) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1_000),
            (60, 1_000),
        ] {
            let d = backoff(&s, failed).as_millis() as u64;
            assert!((base..=base + base / 10).contains(&d), "{failed}: {d}");
        }
    }
}
