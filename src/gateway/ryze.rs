//! RyzeAPI compatible route: `POST /api/message/event/{instance}` with the instance
//! token in the `token` header and the body
//! `{number, name, startAt, endAt?, description?, location?{name,address,latitude,
//! longitude}, joinLink?, isScheduleCall?, hasReminder?, reminderOffsetSec?,
//! extraGuestsAllowed?, isCanceled?, delay?, replyTo?, replyPrivate?, source?}`
//! (plus the `callType` extension: `voice` or `video` asks for a call link).
//!
//! `startAt`/`endAt` are RFC3339 with an offset (or unix seconds). `delay` is in
//! seconds (0 to [`MAX_DELAY_SECS`]): "typing…" is shown that long before the card.
//!
//! Success: `200 {"success": true, "message": "Message sent successfully",
//! "status": "sent", "data": {"messageId", "number", "messageType": "event",
//! "content", "timestamp", "source"}}`. Errors: `{"success": false, "error":
//! {"message": "<text>"}}` with RyzeAPI's texts — 400 `Instance name is required`,
//! `Invalid request body: <detail>`, `Number is required`, `Name is required`,
//! `startAt is required`, `Invalid startAt, expected ISO 8601 (RFC3339): <detail>`,
//! `Invalid phone number format: <detail>` (and the card's other validation texts);
//! 401 `Missing token in header` / `Invalid token`; 404 `Instance not found`; 413;
//! 409/422 (idempotency); 500 `Failed to send event: <reason>`; 503 `Instance is not
//! connected to WhatsApp`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::action::{Action, ActionError};
use super::backend::SendOptions;
use super::http::{
    BodyError, Reply, header_text, idempotency_key, parse_json_object, read_body, rfc3339_ms,
};
use super::{AppState, idempotency};
use crate::event::{EventCard, EventCardRequest, format_unix};
use crate::jid::Jid;

/// Longest `delay` accepted, in seconds.
pub const MAX_DELAY_SECS: u64 = 300;
/// Longest `replyTo` message id accepted.
pub const MAX_REPLY_TO_LEN: usize = 128;
/// Longest `source` label accepted.
pub const MAX_SOURCE_LEN: usize = 64;

/// The request body of `POST /api/message/event/{instance}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RyzeEventRequest {
    /// Recipient: phone number, JID or group JID (a JSON string or integer).
    #[serde(default)]
    pub number: Option<serde_json::Value>,
    /// Seconds of "typing…" before sending.
    #[serde(default)]
    pub delay: Option<u64>,
    /// Id of a message to quote.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// Reply to the quoted group message in private.
    #[serde(default)]
    pub reply_private: Option<bool>,
    /// Label of the caller (default `api`).
    #[serde(default)]
    pub source: Option<String>,
    /// The event fields (RyzeAPI's names, see [`EventCardRequest`]).
    #[serde(flatten)]
    pub event: EventCardRequest,
}

fn number_text(v: &Option<serde_json::Value>) -> Result<Option<String>, String> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Number(n)) if n.is_u64() => Ok(Some(n.to_string())),
        Some(_) => Err("Invalid request body: number must be a string".into()),
    }
}

fn check_label(what: &str, value: &Option<String>, max: usize) -> Result<(), String> {
    if let Some(v) = value
        && (v.len() > max || v.chars().any(char::is_control))
    {
        return Err(format!(
            "Invalid request body: {what} must be at most {max} bytes without control characters"
        ));
    }
    Ok(())
}

/// Validates a RyzeAPI body into the send to run, in RyzeAPI's order: body,
/// `number`, the card (`name`, `startAt`, …), the phone number format, then the
/// send options. The error is the `error.message` of a 400 reply.
pub(crate) fn parse_request(body: &[u8]) -> Result<Action, String> {
    let req: RyzeEventRequest = parse_json_object(body)?;
    let number = number_text(&req.number)?.ok_or("Number is required")?;
    let card = req.event.into_card().map_err(|e| e.to_string())?;
    let chat = Jid::parse_recipient(&number).map_err(|e| e.to_string())?;
    if let Some(d) = req.delay
        && d > MAX_DELAY_SECS
    {
        return Err(format!(
            "Invalid request body: delay must be 0 to {MAX_DELAY_SECS} seconds, got {d}"
        ));
    }
    check_label("replyTo", &req.reply_to, MAX_REPLY_TO_LEN)?;
    check_label("source", &req.source, MAX_SOURCE_LEN)?;
    Ok(Action::Send {
        chat,
        card,
        options: SendOptions {
            reply_to: req.reply_to.filter(|r| !r.trim().is_empty()),
            reply_private: req.reply_private.unwrap_or(false),
            typing_delay: req.delay.filter(|d| *d > 0).map(Duration::from_secs),
            source: Some(
                req.source
                    .filter(|s| !s.trim().is_empty())
                    .unwrap_or_else(|| "api".to_string()),
            ),
        },
    })
}

/// The text form of a card stored as the message's `content`.
pub fn content_text(card: &EventCard) -> String {
    let mut text = format!("📅 {}\n🕒 {}", card.name(), format_unix(card.start_time()));
    if let Some(end) = card.end_time() {
        text.push_str(&format!(" – {}", format_unix(end)));
    }
    if let Some(loc) = card.location()
        && let Some(name) = loc.name.as_deref().or(loc.address.as_deref())
    {
        text.push_str(&format!("\n📍 {name}"));
    }
    if let Some(link) = card.join_link() {
        text.push_str(&format!("\n🔗 {link}"));
    }
    if card.is_canceled() {
        text.push_str("\n(canceled)");
    }
    text
}

fn error(status: StatusCode, text: &str) -> Reply {
    Reply::json(
        status,
        &json!({ "success": false, "error": { "message": text } }),
    )
}

/// RyzeAPI's 405 for a route that only takes POST.
pub(crate) async fn method_not_allowed() -> Reply {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed: use POST",
    );
    r.allow = Some("POST");
    r
}

/// `POST /api/message/event` and `/api/message/event/` (no instance).
pub(crate) async fn missing_instance() -> Reply {
    error(StatusCode::BAD_REQUEST, "Instance name is required")
}

fn action_error(e: ActionError) -> Reply {
    match e {
        ActionError::NotConnected => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Instance is not connected to WhatsApp",
        ),
        ActionError::EventNotFound(why) | ActionError::Rejected(why) | ActionError::Failed(why) => {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("Failed to send event: {why}"),
            )
        }
    }
}

/// `POST /api/message/event/{instance}`.
pub(crate) async fn send_event(
    State(app): State<Arc<AppState>>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let reply = handle(&app, instance.trim(), &headers, body).await;
    tracing::info!(
        api = "ryzeapi",
        route = "message/event",
        instance = %instance.chars().take(64).collect::<String>(),
        status = reply.status.as_u16(),
        replayed = reply.replayed,
        "request"
    );
    reply
}

async fn handle(
    app: &AppState,
    instance: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    if instance.is_empty() {
        return error(StatusCode::BAD_REQUEST, "Instance name is required");
    }
    let Some(token) = header_text(headers, "token").filter(|t| !t.is_empty()) else {
        return error(StatusCode::UNAUTHORIZED, "Missing token in header");
    };
    let Some(inst) = app.instances.get(instance) else {
        return error(StatusCode::NOT_FOUND, "Instance not found");
    };
    if !inst.config.token.matches(token.as_bytes()) {
        return error(StatusCode::UNAUTHORIZED, "Invalid token");
    }
    let body = match read_body(body) {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("Request body is larger than {} bytes", app.body_limit),
            );
        }
        Err(BodyError::Unreadable(why)) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("Invalid request body: {why}"),
            );
        }
    };
    let key = match idempotency_key(headers) {
        Ok(k) => k,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    let action = match parse_request(&body) {
        Ok(a) => a,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    if !inst.backend.is_connected() {
        return action_error(ActionError::NotConnected);
    }
    let fingerprint =
        idempotency::fingerprint("ryzeapi", "message/event", &inst.config.name, &body);
    idempotency::run(
        &app.locks,
        inst,
        key.as_deref(),
        fingerprint,
        error,
        || async {
            let result = action.run(inst.backend.as_ref()).await;
            let Action::Send {
                chat,
                card,
                options,
            } = &action
            else {
                // parse_request only builds sends.
                return idempotency::Outcome::NotSent(error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Failed to send event: unexpected action",
                ));
            };
            match result {
                Ok(sent) => idempotency::Outcome::Attempted(Reply::json(
                    StatusCode::OK,
                    &json!({
                        "success": true,
                        "message": "Message sent successfully",
                        "status": "sent",
                        "data": {
                            "messageId": sent.message_id,
                            "number": chat.to_string(),
                            "messageType": "event",
                            "content": content_text(card),
                            "timestamp": rfc3339_ms(sent.timestamp_ms),
                            "source": options.source.as_deref().unwrap_or("api"),
                        }
                    }),
                )),
                Err(e) => {
                    let attempted = e.may_have_sent();
                    let reply = action_error(e);
                    if attempted {
                        idempotency::Outcome::Attempted(reply)
                    } else {
                        idempotency::Outcome::NotSent(reply)
                    }
                }
            }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Action, String> {
        parse_request(body.as_bytes())
    }

    #[test]
    fn full_body() {
        let a = parse(
            r#"{"number":"5511999999999","name":"Team meeting","description":"Q",
                "startAt":"2026-04-28T14:00:00-03:00","endAt":"2026-04-28T16:00:00-03:00",
                "location":{"name":"Room 3","address":"Av. Paulista, 1000","latitude":-23.56,"longitude":-46.65},
                "joinLink":"https://call.whatsapp.com/video/abc","isScheduleCall":true,
                "hasReminder":true,"reminderOffsetSec":900,"extraGuestsAllowed":true,
                "isCanceled":false,"delay":3,"replyTo":"3EB0ABC","replyPrivate":true,"source":"crm"}"#,
        )
        .unwrap();
        let Action::Send {
            chat,
            card,
            options,
        } = a
        else {
            panic!("not a send")
        };
        assert_eq!(chat, Jid::pn_user("5511999999999"));
        assert_eq!(card.name(), "Team meeting");
        assert_eq!(card.start_time(), 1_777_395_600);
        assert_eq!(card.end_time(), Some(1_777_402_800));
        assert_eq!(card.reminder_offset_secs(), Some(900));
        assert!(card.is_schedule_call() && card.extra_guests_allowed());
        assert_eq!(card.location().unwrap().latitude, Some(-23.56));
        assert_eq!(options.reply_to.as_deref(), Some("3EB0ABC"));
        assert!(options.reply_private);
        assert_eq!(options.typing_delay, Some(Duration::from_secs(3)));
        assert_eq!(options.source.as_deref(), Some("crm"));
        let text = content_text(&card);
        assert!(
            text.starts_with("📅 Team meeting\n🕒 2026-04-28T17:00:00Z – 2026-04-28T19:00:00Z")
        );
    }

    #[test]
    fn group_and_defaults() {
        let Action::Send { chat, options, .. } = parse(
            r#"{"number":"120363312345678901@g.us","name":"n","startAt":"2026-04-28T14:00:00Z"}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert!(chat.is_group());
        assert_eq!(options.source.as_deref(), Some("api"));
        assert_eq!(options.typing_delay, None);
        assert!(parse(r#"{"number":5511999999999,"name":"n","startAt":1}"#).is_ok());
    }

    #[test]
    fn documented_errors_in_order() {
        for (body, want) in [
            ("{", "Invalid request body: EOF while parsing an object"),
            (
                "[1]",
                "Invalid request body: expected a JSON object, got an array",
            ),
            (
                r#"{"name":"n","startAt":"2026-04-28T14:00:00Z"}"#,
                "Number is required",
            ),
            (r#"{"number":" ","name":"n"}"#, "Number is required"),
            (
                r#"{"number":true}"#,
                "Invalid request body: number must be a string",
            ),
            (
                r#"{"number":"5511999999999","startAt":"x"}"#,
                "Name is required",
            ),
            (
                r#"{"number":"5511999999999","name":"n"}"#,
                "startAt is required",
            ),
            (
                r#"{"number":"5511999999999","name":"n","startAt":"2026-04-28 14:00"}"#,
                "Invalid startAt, expected ISO 8601 (RFC3339): ",
            ),
            (
                r#"{"number":"55-abc","name":"n","startAt":"2026-04-28T14:00:00Z"}"#,
                "Invalid phone number format: ",
            ),
            (
                r#"{"number":"5511999999999","name":"n","startAt":"2026-04-28T14:00:00Z","delay":301}"#,
                "Invalid request body: delay must be 0 to 300 seconds, got 301",
            ),
            (
                r#"{"number":"5511999999999","name":"n","startAt":"2026-04-28T14:00:00Z","delay":-1}"#,
                "Invalid request body: invalid value: integer `-1`",
            ),
            (
                r#"{"number":"5511999999999","name":"n","startAt":"2026-04-28T14:00:00Z","isCanceled":"no"}"#,
                "Invalid request body: invalid type: string",
            ),
        ] {
            let err = parse(body).unwrap_err();
            assert!(err.starts_with(want), "{body}: {want:?} vs {err:?}");
        }
    }
}
