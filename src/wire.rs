//! Conversions behind the `waevent wire` tools: event cards and messages to and from
//! JSON, base64 and hex, for debugging cards that do not render on a phone.
