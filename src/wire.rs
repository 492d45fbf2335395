//! Conversions behind the `waevent wire` tools: event cards and messages to and from
//! JSON, base64 and hex, for debugging cards that do not render on a phone.
//!
//! Every function takes untrusted text and returns a [`WireError`] (never panics).

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use prost::Message as _;
use prost_reflect::{DynamicMessage, SerializeOptions};
use rand_core::{CryptoRng, RngCore};

use crate::event::{EventCard, EventCardError};

/// Largest input the wire tools accept, in bytes (16 MiB).
pub const MAX_INPUT_LEN: usize = 16 << 20;

/// Full name of the E2E message type in the descriptor pool.
pub const MESSAGE_TYPE: &str = "wa.e2e.Message";

/// Why a wire conversion failed. The message is one line, fit for stderr.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    /// The input is over [`MAX_INPUT_LEN`].
    #[error("input is larger than {max} bytes")]
    InputTooLarge {
        /// The limit.
        max: usize,
    },
    /// The input is empty (after trimming whitespace).
    #[error("input is empty; expected {0} on stdin")]
    Empty(&'static str),
    /// The input is not UTF-8 text.
    #[error("input is not UTF-8 text")]
    NotText,
    /// The input is not base64.
    #[error("input is not base64: {0}")]
    Base64(String),
    /// The input is not hex.
    #[error("input is not hex: {0}")]
    Hex(String),
    /// The bytes are not a valid protobuf of the expected type.
    #[error("not a valid {ty} protobuf: {detail}")]
    Protobuf {
        /// The message type.
        ty: &'static str,
        /// The decoder's error.
        detail: String,
    },
    /// The event card is invalid.
    #[error(transparent)]
    Event(#[from] EventCardError),
    /// JSON output or input failed.
    #[error("JSON: {0}")]
    Json(String),
    /// The bytes are not a binary node frame.
    #[error("not a binary node: {0}")]
    NodeDecode(String),
    /// The node cannot be encoded.
    #[error("cannot encode the node: {0}")]
    NodeEncode(String),
    /// The schema lacks a type (a build problem).
    #[error("schema has no message type {0}")]
    Schema(&'static str),
}

/// Checks the size and UTF-8 of raw stdin and trims surrounding whitespace.
pub fn input_text<'a>(raw: &'a [u8], expected: &'static str) -> Result<&'a str, WireError> {
    if raw.len() > MAX_INPUT_LEN {
        return Err(WireError::InputTooLarge { max: MAX_INPUT_LEN });
    }
    let text = std::str::from_utf8(raw)
        .map_err(|_| WireError::NotText)?
        .trim();
    if text.is_empty() {
        return Err(WireError::Empty(expected));
    }
    Ok(text)
}

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

/// Decodes base64 (standard or URL-safe alphabet, padding optional, whitespace and
/// line breaks ignored).
pub fn decode_base64(text: &str) -> Result<Vec<u8>, WireError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err(WireError::Empty("base64"));
    }
    let engine = if compact.contains(['-', '_']) {
        &URL_SAFE_LENIENT
    } else {
        &STANDARD_LENIENT
    };
    engine
        .decode(compact.as_bytes())
        .map_err(|e| WireError::Base64(e.to_string()))
}

/// Decodes hex (either case, whitespace ignored, optional `0x` prefix).
pub fn decode_hex(text: &str) -> Result<Vec<u8>, WireError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let compact = compact
        .strip_prefix("0x")
        .or_else(|| compact.strip_prefix("0X"))
        .unwrap_or(&compact);
    if compact.is_empty() {
        return Err(WireError::Empty("hex"));
    }
    hex::decode(compact).map_err(|e| WireError::Hex(e.to_string()))
}

/// `waevent wire event`: event card JSON (RyzeAPI field names) → base64 of the
/// serialized E2E `Message` with a fresh message secret.
pub fn event_json_to_base64<R: RngCore + CryptoRng>(
    json: &str,
    rng: &mut R,
) -> Result<String, WireError> {
    let card = EventCard::from_json(json)?;
    let (message, _secret) = card.to_message(rng);
    Ok(general_purpose::STANDARD.encode(message.encode_to_vec()))
}

fn decode_dynamic(bytes: &[u8]) -> Result<DynamicMessage, WireError> {
    let desc = crate::proto::descriptor_pool()
        .get_message_by_name(MESSAGE_TYPE)
        .ok_or(WireError::Schema(MESSAGE_TYPE))?;
    DynamicMessage::decode(desc, bytes).map_err(|e| WireError::Protobuf {
        ty: MESSAGE_TYPE,
        detail: e.to_string(),
    })
}

/// Serialized E2E `Message` → its JSON form (protobuf JSON mapping with WhatsApp's
/// field names; bytes as base64, 64-bit integers as strings, enums by name).
/// Refuses bytes that are not a valid `Message`.
pub fn message_to_json(bytes: &[u8]) -> Result<serde_json::Value, WireError> {
    let msg = decode_dynamic(bytes)?;
    let options = SerializeOptions::new().skip_default_fields(true);
    msg.serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| WireError::Json(e.to_string()))
}

/// Like [`message_to_json`], as pretty-printed text with fields in field-number
/// order.
pub fn message_to_json_text(bytes: &[u8]) -> Result<String, WireError> {
    let msg = decode_dynamic(bytes)?;
    let options = SerializeOptions::new().skip_default_fields(true);
    let mut out = Vec::new();
    msg.serialize_with_options(&mut serde_json::Serializer::pretty(&mut out), &options)
        .map_err(|e| WireError::Json(e.to_string()))?;
    String::from_utf8(out).map_err(|e| WireError::Json(e.to_string()))
}

/// `waevent wire decode`: base64 of a serialized `Message` → pretty JSON.
pub fn message_base64_to_json(text: &str) -> Result<String, WireError> {
    message_to_json_text(&decode_base64(text)?)
}

/// `waevent wire node-decode`: hex of a binary node frame payload (flags byte first;
/// flag 0x02 = zlib-compressed) → pretty JSON `{"tag", "attrs", "content"}` with
/// content `null`, a hex string or an array of child nodes.
pub fn node_hex_to_json(text: &str) -> Result<String, WireError> {
    let bytes = decode_hex(text)?;
    let node =
        crate::binary::unmarshal(&bytes).map_err(|e| WireError::NodeDecode(e.to_string()))?;
    serde_json::to_string_pretty(&crate::binary::json::node_to_json(&node))
        .map_err(|e| WireError::Json(e.to_string()))
}

/// `waevent wire node-encode`: the JSON of `node-decode` → hex of the uncompressed
/// frame payload (flags byte 0x00, then the node).
pub fn node_json_to_hex(json: &str) -> Result<String, WireError> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| WireError::Json(e.to_string()))?;
    let node = crate::binary::json::node_from_json(&value)
        .map_err(|e| WireError::NodeEncode(e.to_string()))?;
    let bytes = crate::binary::marshal(&node).map_err(|e| WireError::NodeEncode(e.to_string()))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn event_to_base64_and_back_to_json() {
        let mut rng = StdRng::seed_from_u64(1);
        let b64 = event_json_to_base64(
            r#"{"name":"Team sync","startAt":"2026-12-01T15:00:00-03:00","location":{"name":"Room 4"}}"#,
            &mut rng,
        )
        .unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&message_base64_to_json(&b64).unwrap()).unwrap();
        let ev = &json["eventMessage"];
        assert_eq!(ev["name"], "Team sync");
        assert_eq!(ev["startTime"], "1796148000");
        assert_eq!(ev["isCanceled"], false);
        assert_eq!(ev["hasReminder"], false);
        assert_eq!(ev["location"]["name"], "Room 4");
        let secret = decode_base64(
            json["messageContextInfo"]["messageSecret"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(secret.len(), 32);
    }

    #[test]
    fn nodes_to_json_and_back() {
        let json = r#"{"tag":"iq","attrs":{"id":"1","to":"@s.whatsapp.net","type":"get","xmlns":"w:g2"},"content":[{"tag":"query","attrs":{"request":"interactive"},"content":null}]}"#;
        let hex = node_json_to_hex(json).unwrap();
        assert!(hex.starts_with("00"), "{hex}");
        let back: serde_json::Value =
            serde_json::from_str(&node_hex_to_json(&hex).unwrap()).unwrap();
        let want: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(back, want);
        assert!(matches!(
            node_hex_to_json("00"),
            Err(WireError::NodeDecode(_))
        ));
        assert!(matches!(
            node_json_to_hex(r#"{"tag":""}"#),
            Err(WireError::NodeEncode(_))
        ));
        assert!(matches!(node_json_to_hex("{"), Err(WireError::Json(_))));
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        assert!(matches!(decode_base64("!!"), Err(WireError::Base64(_))));
        assert_eq!(decode_base64(" \n"), Err(WireError::Empty("base64")));
        assert_eq!(decode_base64("AQID").unwrap(), [1, 2, 3]);
        assert_eq!(decode_base64("AQI").unwrap(), [1, 2]);
        assert_eq!(decode_base64("-_8=").unwrap(), [0xfb, 0xff]);
        assert!(matches!(
            message_base64_to_json("/w=="),
            Err(WireError::Protobuf { .. })
        ));
        assert_eq!(decode_hex("0x0A ff").unwrap(), [10, 255]);
        assert!(matches!(decode_hex("abc"), Err(WireError::Hex(_))));
        assert_eq!(input_text(b"  ", "JSON"), Err(WireError::Empty("JSON")));
        assert_eq!(input_text(&[0xff], "JSON"), Err(WireError::NotText));
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            event_json_to_base64(r#"{"startAt":1}"#, &mut rng)
                .unwrap_err()
                .to_string(),
            "Name is required"
        );
    }
}
