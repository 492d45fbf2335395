//! The JSON form of an event card, with the field names of the RyzeAPI request body:
//! `name`, `description`, `startAt`, `endAt`, `location{name,address,latitude,longitude}`,
//! `joinLink`, `isScheduleCall`, `hasReminder`, `reminderOffsetSec`,
//! `extraGuestsAllowed`, `isCanceled` (plus `callType`: `voice`, `video` or `none`).
//!
//! Times are RFC3339 strings with an offset, or unix seconds (a JSON integer or a
//! string of digits). Unknown fields are ignored so the form can sit inside a larger
//! request body.

use serde::{Deserialize, Serialize};

use super::card::{CallType, EventCard, EventCardError, EventLocation, format_unix};

/// The `location` object of an event request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocationRequest {
    /// Name of the place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Street address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Latitude in degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    /// Longitude in degrees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
}

/// An event card as the gateway receives it in JSON. Nothing is validated until
/// [`EventCardRequest::into_card`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventCardRequest {
    /// Title (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Start: RFC3339 with offset, or unix seconds (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<serde_json::Value>,
    /// End: RFC3339 with offset, or unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_at: Option<serde_json::Value>,
    /// Where the event takes place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<LocationRequest>,
    /// Call link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_link: Option<String>,
    /// `voice`, `video` or `none`: the call link the sender should create when no
    /// `joinLink` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_type: Option<String>,
    /// Whether the event is a scheduled call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_schedule_call: Option<bool>,
    /// Whether phones remind attendees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_reminder: Option<bool>,
    /// Reminder offset before the start, in seconds (0 or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminder_offset_sec: Option<i64>,
    /// Whether responders may bring extra guests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_guests_allowed: Option<bool>,
    /// Whether the event is canceled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_canceled: Option<bool>,
}

/// Longest event JSON [`EventCard::from_json`] accepts, in bytes.
pub const MAX_EVENT_JSON_LEN: usize = 1 << 20;

fn time_text(field: &'static str, v: &serde_json::Value) -> Result<String, EventCardError> {
    let bad = |detail: String| EventCardError::InvalidTime { field, detail };
    match v {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Ok(i.to_string()),
            None if n.is_u64() => Err(bad(format!("unix seconds {n} out of range"))),
            None => Err(bad(format!("unix seconds must be a whole number, got {n}"))),
        },
        other => Err(bad(format!(
            "expected a string or unix seconds, got {}",
            json_kind(other)
        ))),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

impl EventCardRequest {
    /// Validates the request into a card; the errors are the gateway's texts
    /// (`Name is required`, `startAt is required`,
    /// `Invalid startAt, expected ISO 8601 (RFC3339): …`, …).
    pub fn into_card(self) -> Result<EventCard, EventCardError> {
        // The builder reports a missing name first; do the same before looking at
        // the JSON types of the times.
        if self.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
            return Err(EventCardError::MissingName);
        }
        let mut b = EventCard::builder()
            .schedule_call(self.is_schedule_call.unwrap_or(false))
            .extra_guests_allowed(self.extra_guests_allowed.unwrap_or(false))
            .canceled(self.is_canceled.unwrap_or(false));
        if let Some(n) = self.name {
            b = b.name(n);
        }
        if let Some(d) = self.description {
            b = b.description(d);
        }
        if let Some(v) = &self.start_at {
            b = b.start_at(time_text("startAt", v)?);
        }
        if let Some(v) = &self.end_at {
            b = b.end_at(time_text("endAt", v)?);
        }
        if let Some(l) = self.location {
            b = b.location(EventLocation {
                name: l.name,
                address: l.address,
                latitude: l.latitude,
                longitude: l.longitude,
            });
        }
        if let Some(j) = self.join_link {
            b = b.join_link(j);
        }
        if let Some(ct) = &self.call_type {
            b = b.call_type(CallType::parse_optional(ct)?);
        }
        if let Some(h) = self.has_reminder {
            b = b.has_reminder(h);
        }
        if let Some(o) = self.reminder_offset_sec {
            b = b.reminder_offset_secs(o);
        }
        b.build()
    }
}

impl From<&EventCard> for EventCardRequest {
    /// The request form of a card (times as RFC3339 UTC).
    fn from(card: &EventCard) -> Self {
        EventCardRequest {
            name: Some(card.name().to_string()),
            description: card.description().map(str::to_string),
            start_at: Some(serde_json::Value::String(format_unix(card.start_time()))),
            end_at: card
                .end_time()
                .map(|e| serde_json::Value::String(format_unix(e))),
            location: card.location().map(|l| LocationRequest {
                name: l.name.clone(),
                address: l.address.clone(),
                latitude: l.latitude,
                longitude: l.longitude,
            }),
            join_link: card.join_link().map(str::to_string),
            call_type: card.call_type().map(|c| c.as_str().to_string()),
            is_schedule_call: Some(card.is_schedule_call()),
            has_reminder: Some(card.reminder_offset_secs().is_some()),
            reminder_offset_sec: card.reminder_offset_secs(),
            extra_guests_allowed: Some(card.extra_guests_allowed()),
            is_canceled: Some(card.is_canceled()),
        }
    }
}

impl EventCard {
    /// Parses and validates an event card from the gateway's JSON (see
    /// [`EventCardRequest`]). Refuses input over [`MAX_EVENT_JSON_LEN`] bytes, JSON
    /// that is not an object of the expected types, and invalid fields.
    pub fn from_json(json: &str) -> Result<EventCard, EventCardError> {
        if json.len() > MAX_EVENT_JSON_LEN {
            return Err(EventCardError::InvalidJson(format!(
                "longer than {MAX_EVENT_JSON_LEN} bytes"
            )));
        }
        let req: EventCardRequest =
            serde_json::from_str(json).map_err(|e| EventCardError::InvalidJson(e.to_string()))?;
        req.into_card()
    }

    /// The card as the gateway's JSON object (times as RFC3339 UTC).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(EventCardRequest::from(self)).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_example_parses() {
        let c = EventCard::from_json(
            r#"{"name":"Team sync","startAt":"2026-12-01T15:00:00-03:00","location":{"name":"Room 4"}}"#,
        )
        .unwrap();
        assert_eq!(c.name(), "Team sync");
        assert_eq!(c.start_time(), 1_796_148_000);
        assert_eq!(c.location().unwrap().name.as_deref(), Some("Room 4"));
    }

    #[test]
    fn every_field_is_read() {
        let c = EventCard::from_json(
            r#"{"name":"N","description":"D","startAt":1764612000,"endAt":"1764615600",
                "location":{"name":"L","address":"A","latitude":1.5,"longitude":-2.5},
                "joinLink":"https://call.whatsapp.com/video/T","isScheduleCall":true,
                "hasReminder":true,"reminderOffsetSec":300,"extraGuestsAllowed":true,
                "isCanceled":true,"phone":"ignored"}"#,
        )
        .unwrap();
        assert_eq!(c.description(), Some("D"));
        assert_eq!(c.end_time(), Some(1_764_615_600));
        assert_eq!(c.location().unwrap().latitude, Some(1.5));
        assert_eq!(c.call_type(), Some(CallType::Video));
        assert!(c.is_schedule_call() && c.extra_guests_allowed() && c.is_canceled());
        assert_eq!(c.reminder_offset_secs(), Some(300));
        // And back: the JSON form re-parses to the same card.
        let again = EventCard::from_json(&c.to_json().to_string()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn error_texts() {
        for (json, want) in [
            (r#"{"startAt":"2026-12-01T15:00:00Z"}"#, "Name is required"),
            (r#"{"name":" ","startAt":true}"#, "Name is required"),
            (r#"{"name":"x"}"#, "startAt is required"),
            (r#"{"name":"x","startAt":null}"#, "startAt is required"),
            (
                r#"{"name":"x","startAt":true}"#,
                "Invalid startAt, expected ISO 8601 (RFC3339): expected a string or unix seconds, got a boolean",
            ),
            (
                r#"{"name":"x","startAt":1.5}"#,
                "Invalid startAt, expected ISO 8601 (RFC3339): unix seconds must be a whole number, got 1.5",
            ),
            (
                r#"{"name":"x","startAt":"2026-12-01T15:00:00Z","endAt":"2026-12-01 10:00:00"}"#,
                "Invalid endAt, expected ISO 8601 (RFC3339): \"2026-12-01 10:00:00\" has no UTC offset; append Z or an offset such as -03:00",
            ),
            (
                r#"{"name":"x","startAt":1,"callType":"phone"}"#,
                "Invalid callType: expected \"voice\", \"video\" or \"none\", got \"phone\"",
            ),
            (
                r#"{"name":"x","startAt":1,"reminderOffsetSec":-60}"#,
                "Invalid reminderOffsetSec: must be 0 or more seconds, got -60",
            ),
        ] {
            assert_eq!(
                EventCard::from_json(json).unwrap_err().to_string(),
                want,
                "{json}"
            );
        }
        assert!(matches!(
            EventCard::from_json("[1]"),
            Err(EventCardError::InvalidJson(_))
        ));
        assert!(matches!(
            EventCard::from_json(r#"{"name":"x","startAt":1,"isCanceled":"yes"}"#),
            Err(EventCardError::InvalidJson(_))
        ));
    }
}
