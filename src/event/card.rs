//! The event card: a validated set of event fields, and its E2E `Message` form.

use chrono::{DateTime, NaiveDateTime, Utc};
use rand_core::{CryptoRng, RngCore};

use super::secret::MessageSecret;
use crate::proto::e2e;

/// Latest instant accepted as an event time: 9999-12-31T23:59:59Z.
pub const MAX_EVENT_TIME: i64 = 253_402_300_799;
/// Longest join link accepted, in bytes.
pub const MAX_JOIN_LINK_LEN: usize = 2048;
/// Host of WhatsApp call links.
pub const CALL_LINK_HOST: &str = "call.whatsapp.com";

/// Why event-card input was refused. The messages are the gateway's error texts.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventCardError {
    /// No name, or only whitespace.
    #[error("Name is required")]
    MissingName,
    /// No start time.
    #[error("startAt is required")]
    MissingStart,
    /// A time that is not RFC3339 with an offset nor unix seconds.
    #[error("Invalid {field}, expected ISO 8601 (RFC3339): {detail}")]
    InvalidTime {
        /// `startAt` or `endAt`.
        field: &'static str,
        /// What is wrong with the value.
        detail: String,
    },
    /// The end is before the start.
    #[error("endAt ({end}) is before startAt ({start})")]
    EndBeforeStart {
        /// Start, RFC3339 UTC.
        start: String,
        /// End, RFC3339 UTC.
        end: String,
    },
    /// A location field is out of range or the location is empty.
    #[error("Invalid location.{field}: {detail}")]
    InvalidLocation {
        /// `name`, `address`, `latitude` or `longitude` (or `*` for the whole object).
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The join link is not a usable https URL or disagrees with the call type.
    #[error("Invalid joinLink: {0}")]
    InvalidJoinLink(String),
    /// The call type is not `voice`, `video` or `none`.
    #[error("Invalid callType: expected \"voice\", \"video\" or \"none\", got {0:?}")]
    InvalidCallType(String),
    /// A negative reminder offset.
    #[error("Invalid reminderOffsetSec: must be 0 or more seconds, got {0}")]
    InvalidReminderOffset(i64),
    /// A reminder offset while `hasReminder` is explicitly false.
    #[error("Invalid reminderOffsetSec: set while hasReminder is false")]
    ReminderOffsetWithoutReminder,
    /// The message read back has no `eventMessage`.
    #[error("message has no eventMessage (not an event card)")]
    NotAnEvent,
    /// The event JSON does not parse.
    #[error("Invalid event JSON: {0}")]
    InvalidJson(String),
}

/// The kind of call an event's join link starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallType {
    /// A voice call (`https://call.whatsapp.com/voice/<token>`).
    Voice,
    /// A video call (`https://call.whatsapp.com/video/<token>`).
    Video,
}

impl CallType {
    /// `voice` or `video`, as in the gateway's JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CallType::Voice => "voice",
            CallType::Video => "video",
        }
    }

    /// The `media` attribute of a `<link_create>` request: `audio` or `video`.
    pub fn link_media(self) -> &'static str {
        match self {
            CallType::Voice => "audio",
            CallType::Video => "video",
        }
    }

    /// The prefix a call-link token is appended to.
    pub fn link_prefix(self) -> &'static str {
        match self {
            CallType::Voice => "https://call.whatsapp.com/voice/",
            CallType::Video => "https://call.whatsapp.com/video/",
        }
    }

    /// Parses `voice` / `audio` / `video` (any case); `none` and the empty string
    /// mean no call. Refuses anything else.
    pub fn parse_optional(text: &str) -> Result<Option<CallType>, EventCardError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "voice" | "audio" => Ok(Some(CallType::Voice)),
            "video" => Ok(Some(CallType::Video)),
            "none" | "" => Ok(None),
            _ => Err(EventCardError::InvalidCallType(truncate(text, 40))),
        }
    }

    /// The call type of a WhatsApp call link, if `link` is one
    /// (`https://call.whatsapp.com/{voice,audio,video}/<token>`).
    pub fn of_link(link: &str) -> Option<CallType> {
        let rest = link
            .strip_prefix("https://")?
            .strip_prefix(CALL_LINK_HOST)?;
        let rest = rest.strip_prefix('/')?;
        let (kind, token) = rest.split_once('/')?;
        if token.is_empty() {
            return None;
        }
        match kind {
            "voice" | "audio" => Some(CallType::Voice),
            "video" => Some(CallType::Video),
            _ => None,
        }
    }
}

/// Where an event takes place. At least one field must be set; latitude and
/// longitude go together.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventLocation {
    /// Name of the place.
    pub name: Option<String>,
    /// Street address.
    pub address: Option<String>,
    /// Latitude in degrees, −90 to 90.
    pub latitude: Option<f64>,
    /// Longitude in degrees, −180 to 180.
    pub longitude: Option<f64>,
}

impl EventLocation {
    /// A location with just a name.
    pub fn named(name: impl Into<String>) -> Self {
        EventLocation {
            name: Some(name.into()),
            ..Default::default()
        }
    }

    fn validate(mut self) -> Result<EventLocation, EventCardError> {
        self.name = non_empty(self.name);
        self.address = non_empty(self.address);
        let loc_err = |field, detail: String| EventCardError::InvalidLocation { field, detail };
        for (field, value, limit) in [
            ("latitude", self.latitude, 90.0),
            ("longitude", self.longitude, 180.0),
        ] {
            match value {
                Some(v) if !(v.is_finite() && (-limit..=limit).contains(&v)) => {
                    return Err(loc_err(
                        field,
                        format!("must be between -{limit} and {limit}, got {v}"),
                    ));
                }
                _ => {}
            }
        }
        match (self.latitude, self.longitude) {
            (Some(_), None) => {
                return Err(loc_err(
                    "longitude",
                    "is required when latitude is given".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(loc_err(
                    "latitude",
                    "is required when longitude is given".into(),
                ));
            }
            _ => {}
        }
        if self.name.is_none() && self.address.is_none() && self.latitude.is_none() {
            return Err(loc_err(
                "name",
                "location is empty; give a name, an address or latitude and longitude".into(),
            ));
        }
        Ok(self)
    }

    fn to_proto(&self) -> e2e::LocationMessage {
        e2e::LocationMessage {
            degrees_latitude: self.latitude,
            degrees_longitude: self.longitude,
            name: self.name.clone(),
            address: self.address.clone(),
            url: None,
        }
    }

    fn from_proto(loc: &e2e::LocationMessage) -> EventLocation {
        EventLocation {
            name: loc.name.clone(),
            address: loc.address.clone(),
            latitude: loc.degrees_latitude,
            longitude: loc.degrees_longitude,
        }
    }
}

/// A time as given by the user, parsed when the card is built.
#[derive(Debug, Clone, PartialEq)]
enum TimeInput {
    Unix(i64),
    Text(String),
}

/// A validated event card. Build one with [`EventCard::builder`], from the gateway's
/// JSON with [`EventCard::from_json`] (see [`super::EventCardRequest`]), or read one
/// from a message with [`EventCard::from_message`]. Every card that exists is valid.
#[derive(Debug, Clone, PartialEq)]
pub struct EventCard {
    name: String,
    description: Option<String>,
    start: i64,
    end: Option<i64>,
    location: Option<EventLocation>,
    join_link: Option<String>,
    call_type: Option<CallType>,
    schedule_call: bool,
    reminder_offset: Option<i64>,
    extra_guests_allowed: bool,
    canceled: bool,
}

/// Collects event fields; [`EventCardBuilder::build`] validates them all at once.
#[derive(Debug, Clone, Default)]
pub struct EventCardBuilder {
    name: Option<String>,
    description: Option<String>,
    start: Option<TimeInput>,
    end: Option<TimeInput>,
    location: Option<EventLocation>,
    join_link: Option<String>,
    call_type: Option<CallType>,
    schedule_call: bool,
    has_reminder: Option<bool>,
    reminder_offset: Option<i64>,
    extra_guests_allowed: bool,
    canceled: bool,
}

impl EventCardBuilder {
    /// Title of the event (required, not blank).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Description shown under the title; an empty string means none.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Start as unix seconds (required, unless given with [`Self::start_at`]).
    pub fn start_unix(mut self, secs: i64) -> Self {
        self.start = Some(TimeInput::Unix(secs));
        self
    }

    /// Start as RFC3339 text with an offset (`2026-12-01T15:00:00-03:00`), or unix
    /// seconds as digits.
    pub fn start_at(mut self, text: impl Into<String>) -> Self {
        self.start = Some(TimeInput::Text(text.into()));
        self
    }

    /// End as unix seconds (optional, not before the start).
    pub fn end_unix(mut self, secs: i64) -> Self {
        self.end = Some(TimeInput::Unix(secs));
        self
    }

    /// End as RFC3339 text with an offset, or unix seconds as digits.
    pub fn end_at(mut self, text: impl Into<String>) -> Self {
        self.end = Some(TimeInput::Text(text.into()));
        self
    }

    /// Removes the end time.
    pub fn no_end(mut self) -> Self {
        self.end = None;
        self
    }

    /// Where the event takes place.
    pub fn location(mut self, location: EventLocation) -> Self {
        self.location = Some(location);
        self
    }

    /// Removes the location.
    pub fn no_location(mut self) -> Self {
        self.location = None;
        self
    }

    /// The call link (`https://…`); a WhatsApp call link also sets the call type.
    pub fn join_link(mut self, link: impl Into<String>) -> Self {
        self.join_link = Some(link.into());
        self
    }

    /// The kind of call; without a join link the sender must create one (a
    /// `<link_create>` request) and add it with [`EventCard::with_join_link`].
    pub fn call_type(mut self, call_type: Option<CallType>) -> Self {
        self.call_type = call_type;
        self
    }

    /// Marks the event as a scheduled call.
    pub fn schedule_call(mut self, yes: bool) -> Self {
        self.schedule_call = yes;
        self
    }

    /// Turns the reminder on or off (off by default).
    pub fn has_reminder(mut self, yes: bool) -> Self {
        self.has_reminder = Some(yes);
        self
    }

    /// Reminder this many seconds before the start (turns the reminder on unless it
    /// was explicitly turned off, which is refused).
    pub fn reminder_offset_secs(mut self, secs: i64) -> Self {
        self.reminder_offset = Some(secs);
        self
    }

    /// Whether responders may bring extra guests.
    pub fn extra_guests_allowed(mut self, yes: bool) -> Self {
        self.extra_guests_allowed = yes;
        self
    }

    /// Marks the event as canceled.
    pub fn canceled(mut self, yes: bool) -> Self {
        self.canceled = yes;
        self
    }

    /// Validates every field and returns the card, or the first problem found
    /// (name, start, end, end ≥ start, location, join link, reminder, in that order).
    pub fn build(self) -> Result<EventCard, EventCardError> {
        let name = match self.name {
            Some(n) if !n.trim().is_empty() => n,
            _ => return Err(EventCardError::MissingName),
        };
        let start = match self.start {
            None => return Err(EventCardError::MissingStart),
            Some(TimeInput::Text(t)) if t.trim().is_empty() => {
                return Err(EventCardError::MissingStart);
            }
            Some(t) => resolve_time("startAt", t)?,
        };
        let end = match self.end {
            None => None,
            Some(TimeInput::Text(t)) if t.trim().is_empty() => None,
            Some(t) => Some(resolve_time("endAt", t)?),
        };
        if let Some(end) = end
            && end < start
        {
            return Err(EventCardError::EndBeforeStart {
                start: format_unix(start),
                end: format_unix(end),
            });
        }
        let location = self.location.map(EventLocation::validate).transpose()?;
        let join_link = non_empty(self.join_link)
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty());
        let mut call_type = self.call_type;
        if let Some(link) = &join_link {
            validate_link(link)?;
            if let Some(kind) = CallType::of_link(link) {
                match call_type {
                    Some(ct) if ct != kind => {
                        return Err(EventCardError::InvalidJoinLink(format!(
                            "it is a {} call link but callType is {}",
                            kind.as_str(),
                            ct.as_str()
                        )));
                    }
                    _ => call_type = Some(kind),
                }
            }
        }
        let reminder_offset = match (self.has_reminder, self.reminder_offset) {
            (_, Some(o)) if o < 0 => return Err(EventCardError::InvalidReminderOffset(o)),
            (Some(false), Some(_)) => return Err(EventCardError::ReminderOffsetWithoutReminder),
            (Some(false), None) | (None, None) => None,
            (Some(true), None) => Some(0),
            (_, Some(o)) => Some(o),
        };
        Ok(EventCard {
            name,
            description: non_empty(self.description),
            start,
            end,
            location,
            join_link,
            call_type,
            schedule_call: self.schedule_call,
            reminder_offset,
            extra_guests_allowed: self.extra_guests_allowed,
            canceled: self.canceled,
        })
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max_chars).collect();
        t.push('…');
        t
    }
}

fn validate_link(link: &str) -> Result<(), EventCardError> {
    let bad = |d: String| Err(EventCardError::InvalidJoinLink(d));
    if link.len() > MAX_JOIN_LINK_LEN {
        return bad(format!("longer than {MAX_JOIN_LINK_LEN} bytes"));
    }
    if link.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad(format!(
            "contains whitespace or control characters: {:?}",
            truncate(link, 60)
        ));
    }
    let Some(rest) = link.strip_prefix("https://") else {
        return bad(format!(
            "expected an https:// URL, got {:?}",
            truncate(link, 60)
        ));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return bad(format!("no host in {:?}", truncate(link, 60)));
    }
    if host == CALL_LINK_HOST && CallType::of_link(link).is_none() {
        return bad(format!(
            "a WhatsApp call link is https://call.whatsapp.com/voice/<token> or …/video/<token>, got {:?}",
            truncate(link, 60)
        ));
    }
    Ok(())
}

/// Formats unix seconds as RFC3339 UTC (`2026-12-01T18:00:00Z`).
pub fn format_unix(secs: i64) -> String {
    match DateTime::<Utc>::from_timestamp(secs, 0) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        None => secs.to_string(),
    }
}

fn check_unix(secs: i64) -> Result<i64, String> {
    if secs < 0 {
        return Err(format!("unix seconds must not be negative, got {secs}"));
    }
    if secs > MAX_EVENT_TIME {
        let hint = if secs > 100_000_000_000 {
            " (looks like milliseconds; divide by 1000)"
        } else {
            ""
        };
        return Err(format!(
            "unix seconds {secs} is after 9999-12-31T23:59:59Z{hint}"
        ));
    }
    Ok(secs)
}

/// Parses a start/end time: RFC3339 with offset, or unix seconds as digits.
fn parse_time_text(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return match t.parse::<i64>() {
            Ok(secs) => check_unix(secs),
            Err(_) => Err(format!("unix seconds {} out of range", truncate(t, 40))),
        };
    }
    match DateTime::parse_from_rfc3339(t) {
        Ok(dt) => check_unix(dt.timestamp()),
        Err(e) => {
            let shown = truncate(t, 60);
            let no_offset = [
                "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%d %H:%M:%S",
                "%Y-%m-%dT%H:%M:%S%.f",
                "%Y-%m-%dT%H:%M",
            ]
            .iter()
            .any(|f| NaiveDateTime::parse_from_str(t, f).is_ok());
            if no_offset {
                Err(format!(
                    "{shown:?} has no UTC offset; append Z or an offset such as -03:00"
                ))
            } else {
                Err(format!("{shown:?}: {e}"))
            }
        }
    }
}

fn resolve_time(field: &'static str, input: TimeInput) -> Result<i64, EventCardError> {
    let r = match input {
        TimeInput::Unix(secs) => check_unix(secs),
        TimeInput::Text(t) => parse_time_text(&t),
    };
    r.map_err(|detail| EventCardError::InvalidTime { field, detail })
}

/// How deep [`EventCard::from_message`] looks through wrapper messages
/// (`deviceSentMessage`, `ephemeralMessage`).
const MAX_UNWRAP: usize = 4;

/// Finds the content message inside `deviceSentMessage` / `ephemeralMessage`
/// wrappers (bounded depth).
pub fn unwrap_message(message: &e2e::Message) -> &e2e::Message {
    let mut m = message;
    for _ in 0..MAX_UNWRAP {
        let inner = m
            .device_sent_message
            .as_ref()
            .and_then(|d| d.message.as_deref())
            .or_else(|| {
                m.ephemeral_message
                    .as_ref()
                    .and_then(|e| e.message.as_deref())
            });
        match inner {
            Some(i) => m = i,
            None => break,
        }
    }
    m
}

impl EventCard {
    /// An empty builder.
    pub fn builder() -> EventCardBuilder {
        EventCardBuilder::default()
    }

    /// A builder holding this card's fields, to edit (or cancel) it.
    pub fn to_builder(&self) -> EventCardBuilder {
        EventCardBuilder {
            name: Some(self.name.clone()),
            description: self.description.clone(),
            start: Some(TimeInput::Unix(self.start)),
            end: self.end.map(TimeInput::Unix),
            location: self.location.clone(),
            join_link: self.join_link.clone(),
            call_type: self.call_type,
            schedule_call: self.schedule_call,
            has_reminder: Some(self.reminder_offset.is_some()),
            reminder_offset: self.reminder_offset,
            extra_guests_allowed: self.extra_guests_allowed,
            canceled: self.canceled,
        }
    }

    /// The title.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The description, if any.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
    /// Start, unix seconds.
    pub fn start_time(&self) -> i64 {
        self.start
    }
    /// End, unix seconds, if any.
    pub fn end_time(&self) -> Option<i64> {
        self.end
    }
    /// The location, if any.
    pub fn location(&self) -> Option<&EventLocation> {
        self.location.as_ref()
    }
    /// The join link, if any.
    pub fn join_link(&self) -> Option<&str> {
        self.join_link.as_deref()
    }
    /// The call type, if any (given, or read from a WhatsApp call link).
    pub fn call_type(&self) -> Option<CallType> {
        self.call_type
    }
    /// The call type whose link still has to be created: set when a call type was
    /// asked for but there is no join link yet.
    pub fn needs_call_link(&self) -> Option<CallType> {
        match self.join_link {
            None => self.call_type,
            Some(_) => None,
        }
    }
    /// Whether it is a scheduled call.
    pub fn is_schedule_call(&self) -> bool {
        self.schedule_call
    }
    /// Reminder offset in seconds before the start; `None` when the reminder is off.
    pub fn reminder_offset_secs(&self) -> Option<i64> {
        self.reminder_offset
    }
    /// Whether responders may bring extra guests.
    pub fn extra_guests_allowed(&self) -> bool {
        self.extra_guests_allowed
    }
    /// Whether the event is canceled.
    pub fn is_canceled(&self) -> bool {
        self.canceled
    }

    /// The same card with a join link (e.g. one just created for its call type).
    /// Refuses a link that is invalid or of the other call type.
    pub fn with_join_link(&self, link: impl Into<String>) -> Result<EventCard, EventCardError> {
        self.to_builder().join_link(link).build()
    }

    /// The same card, canceled (an edit with `isCanceled = true` cancels an event).
    pub fn to_canceled(&self) -> EventCard {
        EventCard {
            canceled: true,
            ..self.clone()
        }
    }

    /// The `EventMessage` of this card, with every boolean flag written explicitly
    /// (isCanceled, extraGuestsAllowed, isScheduleCall, hasReminder): phones have
    /// been seen to drop cards that leave them unset.
    pub fn to_event_message(&self) -> e2e::EventMessage {
        e2e::EventMessage {
            context_info: None,
            is_canceled: Some(self.canceled),
            name: Some(self.name.clone()),
            description: self.description.clone(),
            location: self.location.as_ref().map(EventLocation::to_proto),
            join_link: self.join_link.clone(),
            start_time: Some(self.start),
            end_time: self.end,
            extra_guests_allowed: Some(self.extra_guests_allowed),
            is_schedule_call: Some(self.schedule_call),
            has_reminder: Some(self.reminder_offset.is_some()),
            reminder_offset_sec: self.reminder_offset,
        }
    }

    /// The message to send: `eventMessage` plus `messageContextInfo.messageSecret`
    /// with a fresh random 32-byte secret, which is returned too. Keep the secret
    /// (with the message id and the creator JID): RSVPs and edits need it.
    pub fn to_message<R: RngCore + CryptoRng>(&self, rng: &mut R) -> (e2e::Message, MessageSecret) {
        let secret = MessageSecret::generate(rng);
        let message = self.to_message_with_secret(&secret);
        (message, secret)
    }

    /// Like [`Self::to_message`] with a given secret (re-sending the same card).
    pub fn to_message_with_secret(&self, secret: &MessageSecret) -> e2e::Message {
        e2e::Message {
            event_message: Some(Box::new(self.to_event_message())),
            message_context_info: Some(e2e::MessageContextInfo {
                message_secret: Some(secret.as_bytes().to_vec()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Reads the card in a message's `eventMessage` (looking through
    /// `deviceSentMessage` / `ephemeralMessage` wrappers) and validates it like any
    /// other input. Refuses a message without `eventMessage`.
    pub fn from_message(message: &e2e::Message) -> Result<EventCard, EventCardError> {
        let ev = unwrap_message(message)
            .event_message
            .as_deref()
            .ok_or(EventCardError::NotAnEvent)?;
        Self::from_event_message(ev)
    }

    /// Reads and validates an `EventMessage`.
    pub fn from_event_message(ev: &e2e::EventMessage) -> Result<EventCard, EventCardError> {
        let mut b = EventCard::builder()
            .extra_guests_allowed(ev.extra_guests_allowed.unwrap_or(false))
            .schedule_call(ev.is_schedule_call.unwrap_or(false))
            .canceled(ev.is_canceled.unwrap_or(false));
        if let Some(n) = &ev.name {
            b = b.name(n.clone());
        }
        if let Some(d) = &ev.description {
            b = b.description(d.clone());
        }
        if let Some(s) = ev.start_time {
            b = b.start_unix(s);
        }
        if let Some(e) = ev.end_time {
            b = b.end_unix(e);
        }
        if let Some(l) = &ev.location {
            let loc = EventLocation::from_proto(l);
            if loc != EventLocation::default() {
                b = b.location(loc);
            }
        }
        if let Some(j) = &ev.join_link {
            b = b.join_link(j.clone());
        }
        match (ev.has_reminder, ev.reminder_offset_sec) {
            (Some(true), off) => {
                b = b.has_reminder(true).reminder_offset_secs(off.unwrap_or(0));
            }
            // A phone may write an offset with the reminder off; the reminder is off.
            _ => b = b.has_reminder(false),
        }
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn base() -> EventCardBuilder {
        EventCard::builder()
            .name("Team sync")
            .start_at("2026-12-01T15:00:00-03:00")
    }

    #[test]
    fn required_fields_have_the_gateway_texts() {
        let e = EventCard::builder().start_unix(1).build().unwrap_err();
        assert_eq!(e.to_string(), "Name is required");
        let e = EventCard::builder()
            .name("  ")
            .start_unix(1)
            .build()
            .unwrap_err();
        assert_eq!(e.to_string(), "Name is required");
        let e = EventCard::builder().name("x").build().unwrap_err();
        assert_eq!(e.to_string(), "startAt is required");
        let e = EventCard::builder()
            .name("x")
            .start_at(" ")
            .build()
            .unwrap_err();
        assert_eq!(e.to_string(), "startAt is required");
    }

    #[test]
    fn times_need_an_offset_or_unix_seconds() {
        let c = base().end_at("2026-12-01T19:30:00Z").build().unwrap();
        assert_eq!(c.start_time(), 1_796_148_000);
        assert_eq!(c.end_time(), Some(1_796_153_400));
        let c = base().start_at("1764612000").build().unwrap();
        assert_eq!(c.start_time(), 1_764_612_000);

        let e = base().start_at("2026-12-01T15:00:00").build().unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid startAt, expected ISO 8601 (RFC3339): \"2026-12-01T15:00:00\" has no UTC offset; append Z or an offset such as -03:00"
        );
        let e = base().end_at("tomorrow").build().unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Invalid endAt, expected ISO 8601 (RFC3339): \"tomorrow\": "),
            "{e}"
        );
        let e = base().start_unix(1_764_612_000_000).build().unwrap_err();
        assert!(e.to_string().contains("milliseconds"), "{e}");
        let e = base().start_unix(-1).build().unwrap_err();
        assert!(e.to_string().starts_with("Invalid startAt"), "{e}");
        let e = base()
            .start_at("99999999999999999999999")
            .build()
            .unwrap_err();
        assert!(e.to_string().starts_with("Invalid startAt"), "{e}");
    }

    #[test]
    fn end_may_equal_but_not_precede_start() {
        assert!(base().end_at("2026-12-01T18:00:00Z").build().is_ok());
        let e = base().end_at("2026-12-01T17:59:59Z").build().unwrap_err();
        assert_eq!(
            e.to_string(),
            "endAt (2026-12-01T17:59:59Z) is before startAt (2026-12-01T18:00:00Z)"
        );
    }

    #[test]
    fn location_is_range_checked() {
        let ok = EventLocation {
            name: Some("Room 4".into()),
            latitude: Some(-23.5),
            longitude: Some(-46.6),
            ..Default::default()
        };
        assert!(base().location(ok.clone()).build().is_ok());
        for (loc, field) in [
            (
                EventLocation {
                    latitude: Some(90.5),
                    longitude: Some(0.0),
                    ..Default::default()
                },
                "latitude",
            ),
            (
                EventLocation {
                    latitude: Some(0.0),
                    longitude: Some(f64::NAN),
                    ..Default::default()
                },
                "longitude",
            ),
            (
                EventLocation {
                    name: Some("x".into()),
                    latitude: Some(1.0),
                    ..Default::default()
                },
                "longitude",
            ),
            (EventLocation::default(), "name"),
        ] {
            match base().location(loc).build().unwrap_err() {
                EventCardError::InvalidLocation { field: f, .. } => assert_eq!(f, field),
                other => panic!("{other}"),
            }
        }
    }

    #[test]
    fn join_links_and_call_types() {
        let c = base()
            .join_link("https://call.whatsapp.com/video/AbC123")
            .build()
            .unwrap();
        assert_eq!(c.call_type(), Some(CallType::Video));
        assert_eq!(c.needs_call_link(), None);
        let e = base()
            .join_link("https://call.whatsapp.com/video/AbC123")
            .call_type(Some(CallType::Voice))
            .build()
            .unwrap_err();
        assert!(e.to_string().starts_with("Invalid joinLink: "), "{e}");
        for bad in [
            "http://call.whatsapp.com/voice/x",
            "https://",
            "https://call.whatsapp.com/meet/x",
            "https://exa mple.com",
        ] {
            assert!(base().join_link(bad).build().is_err(), "{bad}");
        }
        let c = base().call_type(Some(CallType::Voice)).build().unwrap();
        assert_eq!(c.needs_call_link(), Some(CallType::Voice));
        let c = c
            .with_join_link("https://call.whatsapp.com/voice/tok")
            .unwrap();
        assert_eq!(c.needs_call_link(), None);
        assert_eq!(CallType::parse_optional("none").unwrap(), None);
        assert!(CallType::parse_optional("phone").is_err());
    }

    #[test]
    fn reminder_rules() {
        assert_eq!(base().build().unwrap().reminder_offset_secs(), None);
        assert_eq!(
            base()
                .has_reminder(true)
                .build()
                .unwrap()
                .reminder_offset_secs(),
            Some(0)
        );
        assert_eq!(
            base()
                .reminder_offset_secs(900)
                .build()
                .unwrap()
                .reminder_offset_secs(),
            Some(900)
        );
        assert_eq!(
            base().reminder_offset_secs(-1).build().unwrap_err(),
            EventCardError::InvalidReminderOffset(-1)
        );
        assert_eq!(
            base()
                .has_reminder(false)
                .reminder_offset_secs(5)
                .build()
                .unwrap_err(),
            EventCardError::ReminderOffsetWithoutReminder
        );
    }

    #[test]
    fn message_sets_every_flag_and_a_fresh_secret() {
        let mut rng = StdRng::seed_from_u64(9);
        let card = base().build().unwrap();
        let (m1, s1) = card.to_message(&mut rng);
        let (_, s2) = card.to_message(&mut rng);
        assert_ne!(s1, s2);
        let ev = m1.event_message.as_deref().unwrap();
        assert_eq!(ev.is_canceled, Some(false));
        assert_eq!(ev.extra_guests_allowed, Some(false));
        assert_eq!(ev.is_schedule_call, Some(false));
        assert_eq!(ev.has_reminder, Some(false));
        assert_eq!(ev.reminder_offset_sec, None);
        assert_eq!(MessageSecret::from_message(&m1).unwrap(), s1);
        assert_eq!(EventCard::from_message(&m1).unwrap(), card);
    }

    #[test]
    fn full_card_round_trips_through_the_message() {
        let card = base()
            .description("Quarterly planning")
            .end_at("2026-12-01T16:30:00-03:00")
            .location(EventLocation {
                name: Some("HQ".into()),
                address: Some("Av. Paulista 1000".into()),
                latitude: Some(-23.56),
                longitude: Some(-46.65),
            })
            .join_link("https://call.whatsapp.com/voice/TOKEN")
            .schedule_call(true)
            .reminder_offset_secs(600)
            .extra_guests_allowed(true)
            .canceled(true)
            .build()
            .unwrap();
        let m = card.to_message_with_secret(&MessageSecret::from_array([1; 32]));
        assert_eq!(EventCard::from_message(&m).unwrap(), card);
        let wrapped = e2e::Message {
            device_sent_message: Some(Box::new(e2e::DeviceSentMessage {
                destination_jid: Some("1@g.us".into()),
                message: Some(Box::new(m)),
                phash: None,
            })),
            ..Default::default()
        };
        assert_eq!(EventCard::from_message(&wrapped).unwrap(), card);
        assert_eq!(card.to_builder().build().unwrap(), card);
        assert!(card.to_canceled().is_canceled());
    }

    #[test]
    fn from_message_refuses_non_events() {
        assert_eq!(
            EventCard::from_message(&e2e::Message {
                conversation: Some("hi".into()),
                ..Default::default()
            }),
            Err(EventCardError::NotAnEvent)
        );
        let no_start = e2e::Message {
            event_message: Some(Box::new(e2e::EventMessage {
                name: Some("x".into()),
                ..Default::default()
            })),
            ..Default::default()
        };
        assert_eq!(
            EventCard::from_message(&no_start),
            Err(EventCardError::MissingStart)
        );
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;
    use prost::Message as _;

    fn opt_text() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[a-zA-Z0-9 çãé,.!-]{0,24}[a-z]")
    }

    prop_compose! {
        fn location()(
            name in opt_text(),
            address in opt_text(),
            coords in proptest::option::of((-90.0f64..=90.0, -180.0f64..=180.0)),
        ) -> EventLocation {
            let mut loc = EventLocation {
                name,
                address,
                latitude: coords.map(|c| c.0),
                longitude: coords.map(|c| c.1),
            };
            if loc.name.is_none() && loc.address.is_none() && loc.latitude.is_none() {
                loc.name = Some("somewhere".into());
            }
            loc
        }
    }

    prop_compose! {
        fn card()(
            name in "[^\\s]{1,8}( [^\\s]{1,8}){0,3}",
            description in opt_text(),
            start in 0i64..=MAX_EVENT_TIME,
            duration in proptest::option::of(0i64..=30 * 86_400),
            location in proptest::option::of(location()),
            link in proptest::option::of((any::<bool>(), "[A-Za-z0-9]{1,22}")),
            schedule_call in any::<bool>(),
            reminder in proptest::option::of(0i64..=7 * 86_400),
            extra_guests in any::<bool>(),
            canceled in any::<bool>(),
        ) -> EventCard {
            let mut b = EventCard::builder()
                .name(name)
                .start_unix(start)
                .schedule_call(schedule_call)
                .extra_guests_allowed(extra_guests)
                .canceled(canceled);
            if let Some(d) = description { b = b.description(d); }
            if let Some(d) = duration { b = b.end_unix(start.saturating_add(d).min(MAX_EVENT_TIME)); }
            if let Some(l) = location { b = b.location(l); }
            if let Some((video, token)) = link {
                let ct = if video { CallType::Video } else { CallType::Voice };
                b = b.join_link(format!("{}{token}", ct.link_prefix()));
            }
            if let Some(r) = reminder { b = b.reminder_offset_secs(r); }
            b.build().unwrap()
        }
    }

    proptest! {
        #[test]
        fn card_round_trips_through_message_bytes(card in card(), seed in any::<[u8; 32]>()) {
            let secret = MessageSecret::from_array(seed);
            let bytes = card.to_message_with_secret(&secret).encode_to_vec();
            let back = e2e::Message::decode(bytes.as_slice()).unwrap();
            prop_assert_eq!(EventCard::from_message(&back).unwrap(), card);
            prop_assert_eq!(MessageSecret::from_message(&back).unwrap(), secret);
        }

        #[test]
        fn card_round_trips_through_gateway_json(card in card()) {
            let json = card.to_json().to_string();
            let back = EventCard::from_json(&json).unwrap();
            // serde_json's float parser may land one ULP off; coordinates only need
            // to agree to far better than a millimetre.
            let coords = |c: &EventCard| {
                c.location().map(|l| (l.latitude, l.longitude))
            };
            match (coords(&back), coords(&card)) {
                (Some((Some(a), Some(b))), Some((Some(x), Some(y)))) => {
                    prop_assert!((a - x).abs() < 1e-9 && (b - y).abs() < 1e-9);
                }
                (a, b) => prop_assert_eq!(a, b),
            }
            let strip = |c: &EventCard| {
                let mut b = c.to_builder();
                if let Some(mut l) = c.location().cloned() {
                    l.latitude = l.latitude.map(|_| 0.0);
                    l.longitude = l.longitude.map(|_| 0.0);
                    b = b.location(l);
                }
                b.build().unwrap()
            };
            prop_assert_eq!(strip(&back), strip(&card));
        }

        #[test]
        fn arbitrary_time_text_never_panics(text in "\\PC{0,40}") {
            let _ = EventCard::builder().name("x").start_at(text.clone()).end_at(text).build();
        }
    }
}
