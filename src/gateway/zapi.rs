//! Z-API compatible routes:
//!
//! * `POST /instances/{instance}/token/{token}/send-event`
//!   `{phone, event: {name, description?, dateTime, timeZone?, location?: {name},
//!   callLinkType?: voice|video, canceled?}}`;
//! * `POST …/send-edit-event` `{phone, eventMessageId, event: {…}}` — the event is
//!   replaced whole: fields left out are removed from the card;
//! * `POST …/send-event-response` `{phone, eventMessageId, eventResponse}` with
//!   `GOING` or `NOT_GOING` (and, as extensions, `MAYBE` or `NONE` to withdraw).
//!
//! `phone` is a phone number (digits), a group id `<digits>-group`, or a JID. Success
//! is `200 {"zaapId", "messageId", "id"}` (`id` = `messageId`); errors are
//! `{"error": "<text>"}` with 400 (invalid body), 401 (token or `Client-Token`), 404
//! (instance or event not found), 405 (method), 409/422 (idempotency), 413 (body too
//! large), 415 (no JSON content type), 500 (send failed), 503 (not connected).
//!
//! **Times.** `dateTime` is ISO 8601. With an offset (`Z`, `-03:00`) the offset is
//! used and `timeZone` is ignored. Without one (`2024-04-29T09:30:00`) it is a wall
//! time in `timeZone` — `UTC-3`, `UTC+5:30`, `GMT+1`, `-03:00` — or in UTC when
//! `timeZone` is absent. Named zones (`America/Sao_Paulo`) are refused: give the
//! offset.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{FixedOffset, NaiveDateTime};
use serde::Deserialize;
use serde_json::json;

use super::action::{Action, ActionError};
use super::http::{
    BodyError, Reply, header_text, idempotency_key, is_json, parse_json_object, read_body,
};
use super::{AppState, InstanceRuntime, idempotency};
use crate::event::{EventCard, EventCardError, EventCardRequest, LocationRequest, RsvpResponse};
use crate::jid::Jid;

/// The `event` object of `send-event` and `send-edit-event`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZapiEvent {
    /// Title (required).
    #[serde(default)]
    pub name: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Start, ISO 8601 with or without an offset (required).
    #[serde(default)]
    pub date_time: Option<String>,
    /// Offset for a `dateTime` without one: `UTC-3`, `UTC+05:30`, `GMT`, `-03:00`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Location; Z-API documents `name`, `address`/`latitude`/`longitude` are
    /// accepted too.
    #[serde(default)]
    pub location: Option<LocationRequest>,
    /// `voice` or `video`: the event gets a WhatsApp call link of that kind.
    #[serde(default)]
    pub call_link_type: Option<String>,
    /// Whether the event is canceled.
    #[serde(default)]
    pub canceled: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendEventBody {
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    event: Option<ZapiEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EditEventBody {
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    event_message_id: Option<String>,
    #[serde(default)]
    event: Option<ZapiEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventResponseBody {
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    event_message_id: Option<String>,
    #[serde(default)]
    event_response: Option<String>,
}

/// Which Z-API route a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZapiRoute {
    /// `send-event`.
    SendEvent,
    /// `send-edit-event`.
    SendEditEvent,
    /// `send-event-response`.
    SendEventResponse,
}

impl ZapiRoute {
    /// The route's last path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            ZapiRoute::SendEvent => "send-event",
            ZapiRoute::SendEditEvent => "send-edit-event",
            ZapiRoute::SendEventResponse => "send-event-response",
        }
    }
}

/// Longest message id accepted in `eventMessageId`.
pub const MAX_MESSAGE_ID_LEN: usize = 128;

/// Parses a `timeZone` such as `UTC-3`, `UTC+05:30`, `GMT+1`, `UTC`, `-03:00` or
/// `+0530` into an offset. Refuses named zones and offsets beyond ±18 hours.
pub fn parse_time_zone(text: &str) -> Result<FixedOffset, String> {
    let bad = || {
        format!(
            "Invalid timeZone: expected an offset such as UTC-3 or UTC+05:30, got {:?}",
            text.chars().take(40).collect::<String>()
        )
    };
    let t = text.trim();
    let upper = t.to_ascii_uppercase();
    let rest = upper
        .strip_prefix("UTC")
        .or_else(|| upper.strip_prefix("GMT"))
        .unwrap_or(&upper);
    if rest.is_empty() || rest == "Z" {
        return FixedOffset::east_opt(0).ok_or_else(bad);
    }
    let (sign, digits) = match rest.as_bytes().first() {
        Some(b'+') => (1, &rest[1..]),
        Some(b'-') => (-1, &rest[1..]),
        _ => return Err(bad()),
    };
    let (hours, minutes) = match digits.split_once(':') {
        Some((h, m)) => (h, m),
        None if digits.len() == 4 && digits.is_ascii() => (&digits[..2], &digits[2..]),
        None => (digits, "0"),
    };
    let num = |s: &str, max: i32| -> Option<i32> {
        if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<i32>().ok().filter(|v| *v <= max)
    };
    let (Some(h), Some(m)) = (num(hours, 18), num(minutes, 59)) else {
        return Err(bad());
    };
    let secs = sign * (h * 3600 + m * 60);
    if secs.abs() > 18 * 3600 {
        return Err(bad());
    }
    FixedOffset::east_opt(secs).ok_or_else(bad)
}

/// Resolves Z-API's `dateTime` + `timeZone` into an RFC3339 time with an offset:
/// a `dateTime` with an offset is returned as is (`timeZone` ignored); one without
/// is read as a wall time in `timeZone`, or UTC. Text that is neither is returned
/// unchanged for the event card to report.
pub fn resolve_date_time(date_time: &str, time_zone: Option<&str>) -> Result<String, String> {
    let t = date_time.trim();
    if chrono::DateTime::parse_from_rfc3339(t).is_ok() {
        return Ok(t.to_string());
    }
    const NAIVE: [&str; 6] = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ];
    let Some(naive) = NAIVE
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
    else {
        return Ok(t.to_string());
    };
    let offset = match time_zone.map(str::trim).filter(|z| !z.is_empty()) {
        Some(z) => parse_time_zone(z)?,
        None => FixedOffset::east_opt(0).ok_or("UTC offset")?,
    };
    match naive.and_local_timezone(offset).single() {
        Some(dt) => Ok(dt.to_rfc3339()),
        None => Err(format!(
            "Invalid dateTime: {t:?} does not exist with offset {offset}"
        )),
    }
}

/// The Z-API wording of an event-card error (`dateTime`, `callLinkType` instead of
/// the card's own field names).
fn card_error_text(e: &EventCardError) -> String {
    match e {
        EventCardError::MissingStart => "dateTime is required".into(),
        EventCardError::InvalidTime {
            field: "startAt",
            detail,
        } => format!("Invalid dateTime, expected ISO 8601: {detail}"),
        EventCardError::InvalidCallType(got) => {
            format!("Invalid callLinkType: expected \"voice\" or \"video\", got {got:?}")
        }
        other => other.to_string(),
    }
}

/// Validates a Z-API `event` object into a card (the full card: an edit replaces
/// the event with exactly this).
pub fn event_card(event: ZapiEvent) -> Result<EventCard, String> {
    let start_at = match event.date_time.as_deref() {
        Some(dt) if !dt.trim().is_empty() => Some(serde_json::Value::String(resolve_date_time(
            dt,
            event.time_zone.as_deref(),
        )?)),
        _ => None,
    };
    let request = EventCardRequest {
        name: event.name,
        description: event.description,
        start_at,
        location: event.location,
        call_type: event.call_link_type,
        is_canceled: event.canceled,
        ..EventCardRequest::default()
    };
    request.into_card().map_err(|e| card_error_text(&e))
}

fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, String> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(format!("{name} is required")),
    }
}

fn message_id(value: &Option<String>) -> Result<String, String> {
    let id = required(value, "eventMessageId")?;
    if id.len() > MAX_MESSAGE_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "Invalid eventMessageId: expected up to {MAX_MESSAGE_ID_LEN} printable ASCII characters"
        ));
    }
    Ok(id.to_string())
}

fn chat(value: &Option<String>) -> Result<Jid, String> {
    Jid::parse_recipient(required(value, "phone")?).map_err(|e| e.to_string())
}

/// Parses and validates a Z-API request body for `route` into the action to run.
/// The error is the `error` text of a 400 reply.
pub(crate) fn parse_request(route: ZapiRoute, body: &[u8]) -> Result<Action, String> {
    match route {
        ZapiRoute::SendEvent => {
            let b: SendEventBody = parse_json_object(body)?;
            let chat = chat(&b.phone)?;
            let event = b.event.ok_or("event is required")?;
            Ok(Action::Send {
                chat,
                card: event_card(event)?,
                options: Default::default(),
            })
        }
        ZapiRoute::SendEditEvent => {
            let b: EditEventBody = parse_json_object(body)?;
            let chat = chat(&b.phone)?;
            let event_id = message_id(&b.event_message_id)?;
            let event = b.event.ok_or("event is required")?;
            Ok(Action::Edit {
                chat,
                event_id,
                card: event_card(event)?,
            })
        }
        ZapiRoute::SendEventResponse => {
            let b: EventResponseBody = parse_json_object(body)?;
            let chat = chat(&b.phone)?;
            let event_id = message_id(&b.event_message_id)?;
            let response: RsvpResponse = required(&b.event_response, "eventResponse")?
                .parse()
                .map_err(|e: crate::event::RsvpError| e.to_string())?;
            Ok(Action::Respond {
                chat,
                event_id,
                response,
            })
        }
    }
}

fn error(status: StatusCode, text: &str) -> Reply {
    Reply::json(status, &json!({ "error": text }))
}

/// Z-API's 405 for a route that only takes POST.
pub(crate) async fn method_not_allowed() -> Reply {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed: use POST",
    );
    r.allow = Some("POST");
    r
}

/// Finds the instance and checks the path token and, when configured, the
/// `Client-Token` header.
fn authorize<'a>(
    app: &'a AppState,
    instance: &str,
    token: &str,
    headers: &HeaderMap,
) -> Result<&'a Arc<InstanceRuntime>, Reply> {
    let Some(inst) = app.instances.get(instance) else {
        return Err(error(StatusCode::NOT_FOUND, "Instance not found"));
    };
    if !inst.config.token.matches(token.as_bytes()) {
        return Err(error(StatusCode::UNAUTHORIZED, "Invalid instance token"));
    }
    if let Some(expected) = &inst.config.client_token {
        match header_text(headers, "client-token") {
            // Z-API's own text for a missing Client-Token.
            None => return Err(error(StatusCode::UNAUTHORIZED, "null not allowed")),
            Some(got) if !expected.matches(got.as_bytes()) => {
                return Err(error(StatusCode::UNAUTHORIZED, "Invalid Client-Token"));
            }
            Some(_) => {}
        }
    }
    Ok(inst)
}

fn action_error(e: ActionError) -> Reply {
    match e {
        ActionError::NotConnected => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Instance is not connected to WhatsApp",
        ),
        ActionError::EventNotFound(id) => error(
            StatusCode::NOT_FOUND,
            &format!("Event message not found: {id}"),
        ),
        ActionError::Rejected(why) => error(StatusCode::BAD_REQUEST, &why),
        ActionError::Failed(why) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("Failed to send event: {why}"),
        ),
    }
}

async fn handle(
    app: Arc<AppState>,
    route: ZapiRoute,
    instance: String,
    token: String,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let reply = handle_inner(&app, route, &instance, &token, &headers, body).await;
    tracing::info!(
        api = "z-api",
        route = route.as_str(),
        instance = %instance.chars().take(64).collect::<String>(),
        status = reply.status.as_u16(),
        replayed = reply.replayed,
        "request"
    );
    reply
}

async fn handle_inner(
    app: &AppState,
    route: ZapiRoute,
    instance: &str,
    token: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let inst = match authorize(app, instance, token, headers) {
        Ok(i) => i,
        Err(r) => return r,
    };
    if !is_json(headers) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        );
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
    let action = match parse_request(route, &body) {
        Ok(a) => a,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    if !inst.backend.is_connected() {
        return action_error(ActionError::NotConnected);
    }
    let fingerprint = idempotency::fingerprint("z-api", route.as_str(), &inst.config.name, &body);
    idempotency::run(
        &app.locks,
        inst,
        key.as_deref(),
        fingerprint,
        error,
        || async {
            match action.run(inst.backend.as_ref()).await {
                Ok(sent) => idempotency::Outcome::Attempted(Reply::json(
                    StatusCode::OK,
                    &json!({
                        "zaapId": idempotency::random_id(),
                        "messageId": sent.message_id,
                        "id": sent.message_id,
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

/// `POST …/send-event`.
pub(crate) async fn send_event(
    State(app): State<Arc<AppState>>,
    Path((instance, token)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    handle(app, ZapiRoute::SendEvent, instance, token, headers, body).await
}

/// `POST …/send-edit-event`.
pub(crate) async fn send_edit_event(
    State(app): State<Arc<AppState>>,
    Path((instance, token)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    handle(
        app,
        ZapiRoute::SendEditEvent,
        instance,
        token,
        headers,
        body,
    )
    .await
}

/// `POST …/send-event-response`.
pub(crate) async fn send_event_response(
    State(app): State<Arc<AppState>>,
    Path((instance, token)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    handle(
        app,
        ZapiRoute::SendEventResponse,
        instance,
        token,
        headers,
        body,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::CallType;

    #[test]
    fn time_zones() {
        for (text, secs) in [
            ("UTC-3", -3 * 3600),
            ("utc+5:30", 5 * 3600 + 1800),
            ("UTC+05:30", 5 * 3600 + 1800),
            ("GMT+1", 3600),
            ("UTC", 0),
            ("-03:00", -3 * 3600),
            ("+0530", 5 * 3600 + 1800),
            ("UTC+14", 14 * 3600),
            (" UTC-12 ", -12 * 3600),
        ] {
            assert_eq!(
                parse_time_zone(text).map(|o| o.local_minus_utc()),
                Ok(secs),
                "{text}"
            );
        }
        for bad in [
            "America/Sao_Paulo",
            "UTC-19",
            "UTC+3:60",
            "UTC+123",
            "UTC 3",
            "3",
            "UTC+",
            "UTC-:30",
            "UTC+aé1",
            "UTC+é",
        ] {
            let err = parse_time_zone(bad).unwrap_err();
            assert!(
                err.starts_with("Invalid timeZone: expected"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn date_time_resolution() {
        // Without an offset: the time zone applies, UTC when absent.
        assert_eq!(
            resolve_date_time("2024-04-29T09:30:00", Some("UTC-3")).unwrap(),
            "2024-04-29T09:30:00-03:00"
        );
        assert_eq!(
            resolve_date_time("2024-04-29 09:30", None).unwrap(),
            "2024-04-29T09:30:00+00:00"
        );
        assert_eq!(
            resolve_date_time("2024-04-29T09:30:53.309", Some("UTC+5:30")).unwrap(),
            "2024-04-29T09:30:53.309+05:30"
        );
        // With an offset the offset wins and timeZone is ignored.
        assert_eq!(
            resolve_date_time("2024-04-29T09:30:53.309Z", Some("UTC-3")).unwrap(),
            "2024-04-29T09:30:53.309Z"
        );
        // A bad zone is only an error when it is used.
        assert!(resolve_date_time("2024-04-29T09:30:00", Some("Mars/Base")).is_err());
        assert!(resolve_date_time("2024-04-29T09:30:00Z", Some("Mars/Base")).is_ok());
        // Garbage passes through for the card to report.
        assert_eq!(resolve_date_time("tomorrow", None).unwrap(), "tomorrow");
    }

    fn card(json: &str) -> Result<EventCard, String> {
        event_card(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn event_objects() {
        let c = card(
            r#"{"name":"Sync","description":"D","dateTime":"2024-04-29T09:30:00","timeZone":"UTC-3",
                "location":{"name":"Room"},"callLinkType":"video","canceled":false}"#,
        )
        .unwrap();
        assert_eq!(c.name(), "Sync");
        assert_eq!(c.start_time(), 1_714_393_800);
        assert_eq!(c.location().unwrap().name.as_deref(), Some("Room"));
        assert_eq!(c.call_type(), Some(CallType::Video));
        assert!(!c.is_canceled());
        assert!(
            card(r#"{"name":"x","dateTime":"2024-04-29T09:30:00Z","canceled":true}"#)
                .unwrap()
                .is_canceled()
        );
        for (json, want) in [
            (r#"{"dateTime":"2024-04-29T09:30:00Z"}"#, "Name is required"),
            (r#"{"name":"x"}"#, "dateTime is required"),
            (r#"{"name":"x","dateTime":"  "}"#, "dateTime is required"),
            (
                r#"{"name":"x","dateTime":"soon"}"#,
                "Invalid dateTime, expected ISO 8601: \"soon\": premature end of input",
            ),
            (
                r#"{"name":"x","dateTime":"2024-04-29T09:30:00","timeZone":"BRT"}"#,
                "Invalid timeZone: expected an offset such as UTC-3 or UTC+05:30, got \"BRT\"",
            ),
            (
                r#"{"name":"x","dateTime":"2024-04-29T09:30:00Z","callLinkType":"phone"}"#,
                "Invalid callLinkType: expected \"voice\" or \"video\", got \"phone\"",
            ),
        ] {
            assert_eq!(card(json).unwrap_err(), want, "{json}");
        }
    }

    #[test]
    fn requests() {
        let ok = parse_request(
            ZapiRoute::SendEvent,
            br#"{"phone":"120363019502650977-group","event":{"name":"n","dateTime":"2024-04-29T09:30:00Z"}}"#,
        )
        .unwrap();
        assert!(
            matches!(ok, Action::Send { chat, .. } if chat == Jid::group("120363019502650977"))
        );
        let ok = parse_request(
            ZapiRoute::SendEventResponse,
            br#"{"phone":"120363019502650977-group","eventMessageId":"ABC","eventResponse":"NOT_GOING"}"#,
        )
        .unwrap();
        assert!(matches!(
            ok,
            Action::Respond {
                response: RsvpResponse::NotGoing,
                ..
            }
        ));
        for (route, body, want) in [
            (
                ZapiRoute::SendEvent,
                &b"{"[..],
                "Invalid request body: EOF while parsing",
            ),
            (
                ZapiRoute::SendEvent,
                b"[]",
                "Invalid request body: expected a JSON object, got an array",
            ),
            (
                ZapiRoute::SendEvent,
                br#"{"phone":1}"#,
                "Invalid request body: invalid type: integer",
            ),
            (
                ZapiRoute::SendEvent,
                br#"{"event":{}}"#,
                "phone is required",
            ),
            (
                ZapiRoute::SendEvent,
                br#"{"phone":"1-group"}"#,
                "event is required",
            ),
            (
                ZapiRoute::SendEvent,
                br#"{"phone":"abc","event":{}}"#,
                "Invalid phone number format: unexpected character",
            ),
            (
                ZapiRoute::SendEditEvent,
                br#"{"phone":"1-group","event":{}}"#,
                "eventMessageId is required",
            ),
            (
                ZapiRoute::SendEditEvent,
                br#"{"phone":"1-group","eventMessageId":"A B","event":{}}"#,
                "Invalid eventMessageId",
            ),
            (
                ZapiRoute::SendEventResponse,
                br#"{"phone":"1-group","eventMessageId":"A"}"#,
                "eventResponse is required",
            ),
            (
                ZapiRoute::SendEventResponse,
                br#"{"phone":"1-group","eventMessageId":"A","eventResponse":"YES"}"#,
                "Invalid eventResponse: expected GOING, NOT_GOING, MAYBE or NONE, got \"YES\"",
            ),
        ] {
            let err = match parse_request(route, body) {
                Ok(_) => panic!("{route:?} accepted {}", String::from_utf8_lossy(body)),
                Err(e) => e,
            };
            assert!(err.starts_with(want), "{want:?} vs {err:?}");
        }
    }
}
