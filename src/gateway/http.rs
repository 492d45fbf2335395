//! Shared HTTP plumbing: JSON replies, content-type and body-size checks, header
//! reading, and the per-request context both APIs build.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A finished response: status and JSON body bytes. Idempotent replays return the
/// stored bytes unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
    /// Set on a response replayed for a repeated `Idempotency-Key`.
    pub replayed: bool,
    /// `Allow` header value (405 replies).
    pub allow: Option<&'static str>,
}

impl Reply {
    /// A JSON reply.
    pub fn json(status: StatusCode, value: &serde_json::Value) -> Reply {
        Reply {
            status,
            // Serializing a `Value` cannot fail (its map keys are strings).
            body: serde_json::to_vec(value).unwrap_or_default(),
            replayed: false,
            allow: None,
        }
    }
}

/// Name of the header that marks a replayed idempotent response.
pub(crate) const REPLAYED_HEADER: &str = "idempotent-replayed";

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.replayed {
            headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        }
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        resp
    }
}

/// A header's value as text, if present and visible ASCII.
pub(crate) fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether the request declares a JSON body (`application/json`, with parameters
/// such as `charset`, or any `application/*+json`).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = header_text(headers, header::CONTENT_TYPE.as_str()) else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Why a request body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Over the configured limit.
    TooLarge,
    /// The connection failed while reading.
    Unreadable(String),
}

/// The body bytes, or why they could not be read (axum's `DefaultBodyLimit` turns an
/// oversized body into a rejection with status 413).
pub(crate) fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, BodyError> {
    match body {
        Ok(b) => Ok(b),
        Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(BodyError::TooLarge),
        Err(rej) => Err(BodyError::Unreadable(rej.body_text())),
    }
}

/// Longest `Idempotency-Key` accepted (the store's key limit).
pub(crate) const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;

/// The `Idempotency-Key` header: `Ok(None)` when absent; refuses an empty, over-long
/// or non-printable key.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, String> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bytes = raw.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_IDEMPOTENCY_KEY_LEN {
        return Err(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters"
        ));
    }
    if !bytes.iter().all(|b| b.is_ascii_graphic()) {
        return Err("Idempotency-Key must be printable ASCII without spaces".into());
    }
    // All bytes are ASCII, so this cannot fail.
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

/// A short description of a JSON parse error, without echoing the input.
pub(crate) fn json_error_detail(e: &serde_json::Error) -> String {
    let mut text = e.to_string();
    if text.len() > 200 {
        let mut cut = 200;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Parses a request body that must be one JSON object into `T`; the error is
/// `Invalid request body: <detail>` (serde_json bounds nesting at 128 levels).
pub(crate) fn parse_json_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let invalid = |detail: String| format!("Invalid request body: {detail}");
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| invalid(json_error_detail(&e)))?;
    let kind = match &value {
        serde_json::Value::Object(_) => None,
        serde_json::Value::Array(_) => Some("an array"),
        serde_json::Value::String(_) => Some("a string"),
        serde_json::Value::Number(_) => Some("a number"),
        serde_json::Value::Bool(_) => Some("a boolean"),
        serde_json::Value::Null => Some("null"),
    };
    if let Some(kind) = kind {
        return Err(invalid(format!("expected a JSON object, got {kind}")));
    }
    serde_json::from_value(value).map_err(|e| invalid(json_error_detail(&e)))
}

/// Milliseconds since the Unix epoch (0 before 1970).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// RFC3339 UTC with milliseconds for unix milliseconds.
pub(crate) fn rfc3339_ms(ms: i64) -> String {
    match chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_ct(ct: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        h
    }

    #[test]
    fn json_content_types() {
        assert!(is_json(&with_ct("application/json")));
        assert!(is_json(&with_ct("Application/JSON; charset=utf-8")));
        assert!(is_json(&with_ct("application/merge-patch+json")));
        assert!(!is_json(&with_ct("text/plain")));
        assert!(!is_json(&with_ct("application/jsonx")));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn idempotency_keys() {
        let mut h = HeaderMap::new();
        assert_eq!(idempotency_key(&h), Ok(None));
        h.insert("idempotency-key", HeaderValue::from_static("abc-123"));
        assert_eq!(idempotency_key(&h), Ok(Some("abc-123".into())));
        h.insert("idempotency-key", HeaderValue::from_static("a b"));
        assert!(idempotency_key(&h).is_err());
        h.insert(
            "idempotency-key",
            HeaderValue::from_str(&"k".repeat(257)).unwrap(),
        );
        assert!(idempotency_key(&h).is_err());
        h.insert("idempotency-key", HeaderValue::from_static(""));
        assert!(idempotency_key(&h).is_err());
    }
}
