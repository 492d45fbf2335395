//! Call links for scheduled calls (PROTOCOL.md §12.7): the `link_create` request a
//! client sends to `@call` before it sends an event card with a call type but no join
//! link, and the server's answer carrying the link's token.
//!
//! ```text
//! → <call id="…" to="@call"><link_create media="audio|video"><event start_time="<unix s>"/></link_create></call>
//! ← <ack class="call" type="link_create" id="…"><link_create token="…" media="…"/></ack>
//! ```
//!
//! The request is Baileys' (`createCallLink` with an event: the `<event>` child ties
//! the link to the event's start); whatsapp-rust sends the same without `<event>`. The
//! answer is read in both forms those clients accept: whatsapp-rust's `<ack
//! class="call" type="link_create">` and Baileys' "any stanza answering the id that has
//! a `<link_create token>` child" (so also an ack without `class`/`type`, or a `<call>`
//! or an `<iq type="result">` answer).
//!
//! Sans-IO: builds and reads nodes only.

use crate::binary::Node;
use crate::event::CallType;
use crate::jid::{CALL_SERVER, Jid};

/// Longest token accepted from the server (real tokens are ~22 characters).
pub const MAX_CALL_LINK_TOKEN_LEN: usize = 256;

/// Why a `link_create` answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallLinkError {
    /// The answer is not an ack, call or IQ result for a call-link request.
    #[error("unexpected answer to link_create: {0}")]
    UnexpectedAnswer(String),
    /// The server refused to create the link.
    #[error("the server refused to create a call link: error {code}{}", text.as_deref().map(|t| format!(" ({t})")).unwrap_or_default())]
    Refused {
        /// The error code (the `error` or `code` attribute).
        code: String,
        /// The error text, when the server gave one.
        text: Option<String>,
    },
    /// The answer has no `<link_create>` child or no usable `token`.
    #[error("the link_create answer has no {0}")]
    Missing(&'static str),
    /// The token has characters that cannot be part of a link path, or is too long.
    #[error("the call-link token is not a URL path segment: {0:?}")]
    InvalidToken(String),
    /// The server created a link of the other media type.
    #[error("asked for a {asked} call link, the server created a {got} one")]
    MediaMismatch {
        /// The media asked for (`audio` or `video`).
        asked: &'static str,
        /// The media in the answer.
        got: String,
    },
}

/// `@call`, the service address of call-link requests.
pub fn call_service_jid() -> Jid {
    Jid::new("", CALL_SERVER)
}

/// The `<call to="@call" id><link_create media><event start_time/></link_create></call>`
/// request for a link of `call_type` for an event starting at `start_time` (unix
/// seconds). `id` is the stanza id the answer will carry.
pub fn link_create_request(id: &str, call_type: CallType, start_time: i64) -> Node {
    Node::new("call")
        .attr("id", id)
        .attr("to", call_service_jid())
        .child(
            Node::new("link_create")
                .attr("media", call_type.link_media())
                .child(Node::new("event").attr("start_time", start_time)),
        )
}

/// Reads the server's answer to a `link_create` request for `call_type` and returns
/// the join link (`https://call.whatsapp.com/voice|video/<token>`).
///
/// Accepts an `<ack>` (with `class="call"` and `type="link_create"` when those are
/// present), a `<call>` or an `<iq type="result">` with a `<link_create token>` child.
/// Refuses an `error` attribute (or an `<error>` child), a missing or malformed token
/// (it must be 1–256 URL-safe characters: letters, digits, `-` and `_`) and a `media`
/// attribute naming the other call type.
pub fn parse_link_create_answer(
    answer: &Node,
    call_type: CallType,
) -> Result<String, CallLinkError> {
    let shape = || {
        format!(
            "<{} class={:?} type={:?}>",
            answer.tag,
            answer.attr_str("class"),
            answer.attr_str("type")
        )
    };
    match answer.tag.as_ref() {
        "ack" => {
            if answer.attr_str("class").is_some_and(|c| c != "call")
                || answer.attr_str("type").is_some_and(|t| t != "link_create")
            {
                return Err(CallLinkError::UnexpectedAnswer(shape()));
            }
        }
        "call" => {}
        "iq" => {
            if answer.attr_str("type") == Some("error") {
                let err = answer.child_by_tag("error");
                return Err(CallLinkError::Refused {
                    code: err
                        .and_then(|e| e.get_attr("code"))
                        .map(|c| c.to_text().into_owned())
                        .unwrap_or_else(|| "unknown".into()),
                    text: err.and_then(|e| e.attr_str("text")).map(str::to_owned),
                });
            }
            if answer.attr_str("type") != Some("result") {
                return Err(CallLinkError::UnexpectedAnswer(shape()));
            }
        }
        _ => return Err(CallLinkError::UnexpectedAnswer(shape())),
    }
    if let Some(code) = answer.get_attr("error") {
        return Err(CallLinkError::Refused {
            code: code.to_text().into_owned(),
            text: answer.attr_str("text").map(str::to_owned),
        });
    }
    if let Some(err) = answer.child_by_tag("error") {
        return Err(CallLinkError::Refused {
            code: err
                .get_attr("code")
                .map(|c| c.to_text().into_owned())
                .unwrap_or_else(|| "unknown".into()),
            text: err.attr_str("text").map(str::to_owned),
        });
    }
    let link = answer
        .child_by_tag("link_create")
        .ok_or(CallLinkError::Missing("<link_create> child"))?;
    let token = link
        .attr_str("token")
        .filter(|t| !t.is_empty())
        .ok_or(CallLinkError::Missing("token"))?;
    if token.len() > MAX_CALL_LINK_TOKEN_LEN
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(CallLinkError::InvalidToken(
            token.chars().take(64).collect(),
        ));
    }
    if let Some(media) = link.attr_str("media") {
        let same = match call_type {
            CallType::Voice => matches!(media, "audio" | "voice"),
            CallType::Video => media == "video",
        };
        if !same {
            return Err(CallLinkError::MediaMismatch {
                asked: call_type.link_media(),
                got: media.chars().take(32).collect(),
            });
        }
    }
    Ok(format!("{}{token}", call_type.link_prefix()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::{marshal, unmarshal};

    fn ack(token: &str, media: &str) -> Node {
        Node::new("ack")
            .attr("class", "call")
            .attr("type", "link_create")
            .attr("id", "1.2-3")
            .child(
                Node::new("link_create")
                    .attr("token", token)
                    .attr("media", media),
            )
    }

    #[test]
    fn request_has_baileys_shape_and_survives_the_codec() {
        let req = link_create_request("77.88-9", CallType::Video, 1_764_612_000);
        let back = unmarshal(&marshal(&req).unwrap()).unwrap();
        assert_eq!(back, req);
        assert_eq!(back.tag, "call");
        assert_eq!(back.attr_str("id"), Some("77.88-9"));
        assert_eq!(back.get_attr("to").unwrap().to_text(), "@call");
        let lc = back.child_by_tag("link_create").unwrap();
        assert_eq!(lc.attr_str("media"), Some("video"));
        assert_eq!(
            lc.child_by_tag("event").unwrap().attr_str("start_time"),
            Some("1764612000")
        );
        let voice = link_create_request("x", CallType::Voice, 5);
        assert_eq!(
            voice.child_by_tag("link_create").unwrap().attr_str("media"),
            Some("audio")
        );
    }

    #[test]
    fn reads_whatsapp_rust_and_baileys_answers() {
        assert_eq!(
            parse_link_create_answer(&ack("AbC-12_x", "audio"), CallType::Voice).unwrap(),
            "https://call.whatsapp.com/voice/AbC-12_x"
        );
        assert_eq!(
            parse_link_create_answer(&ack("tok", "video"), CallType::Video).unwrap(),
            "https://call.whatsapp.com/video/tok"
        );
        // Baileys only looks for the child: bare ack, call and iq result answers.
        let bare = Node::new("ack")
            .attr("id", "1")
            .child(Node::new("link_create").attr("token", "T0k"));
        assert_eq!(
            parse_link_create_answer(&bare, CallType::Video).unwrap(),
            "https://call.whatsapp.com/video/T0k"
        );
        let call = Node::new("call")
            .attr("id", "1")
            .child(Node::new("link_create").attr("token", "T0k"));
        assert!(parse_link_create_answer(&call, CallType::Voice).is_ok());
        let iq = Node::new("iq")
            .attr("type", "result")
            .child(Node::new("link_create").attr("token", "T0k"));
        assert!(parse_link_create_answer(&iq, CallType::Voice).is_ok());
    }

    #[test]
    fn refuses_errors_and_bad_tokens() {
        let mut refused = ack("tok", "audio");
        refused.attrs.set("error", "403");
        assert_eq!(
            parse_link_create_answer(&refused, CallType::Voice),
            Err(CallLinkError::Refused {
                code: "403".into(),
                text: None
            })
        );
        let iq_err = Node::new("iq").attr("type", "error").child(
            Node::new("error")
                .attr("code", "429")
                .attr("text", "rate-overlimit"),
        );
        let e = parse_link_create_answer(&iq_err, CallType::Voice).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the server refused to create a call link: error 429 (rate-overlimit)"
        );
        assert_eq!(
            parse_link_create_answer(&Node::new("ack"), CallType::Voice),
            Err(CallLinkError::Missing("<link_create> child"))
        );
        assert_eq!(
            parse_link_create_answer(
                &Node::new("ack").child(Node::new("link_create")),
                CallType::Voice
            ),
            Err(CallLinkError::Missing("token"))
        );
        for bad in ["a/b", "x?y=1", "tok en", "é", &"a".repeat(257)] {
            assert!(
                matches!(
                    parse_link_create_answer(&ack(bad, "audio"), CallType::Voice),
                    Err(CallLinkError::InvalidToken(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            parse_link_create_answer(&ack("tok", "video"), CallType::Voice),
            Err(CallLinkError::MediaMismatch {
                asked: "audio",
                got: "video".into()
            })
        );
        let wrong_class = Node::new("ack")
            .attr("class", "message")
            .child(Node::new("link_create").attr("token", "t"));
        assert!(matches!(
            parse_link_create_answer(&wrong_class, CallType::Voice),
            Err(CallLinkError::UnexpectedAnswer(_))
        ));
        assert!(matches!(
            parse_link_create_answer(&Node::new("receipt"), CallType::Voice),
            Err(CallLinkError::UnexpectedAnswer(_))
        ));
    }

    #[test]
    fn every_link_made_is_a_valid_event_join_link() {
        for (ct, media) in [(CallType::Voice, "audio"), (CallType::Video, "video")] {
            let link = parse_link_create_answer(&ack("Zz9-_", media), ct).unwrap();
            assert_eq!(CallType::of_link(&link), Some(ct));
            let card = crate::event::EventCard::builder()
                .name("Call")
                .start_unix(1_764_612_000)
                .call_type(Some(ct))
                .build()
                .unwrap();
            assert_eq!(card.with_join_link(link).unwrap().needs_call_link(), None);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_token_the_server_may_send_makes_a_valid_join_link(
            token in "[A-Za-z0-9_-]{1,64}",
            video: bool,
            bare: bool,
        ) {
            let ct = if video { CallType::Video } else { CallType::Voice };
            let mut answer = Node::new("ack").attr("id", "1");
            if !bare {
                answer = answer.attr("class", "call").attr("type", "link_create");
            }
            let answer = answer.child(
                Node::new("link_create")
                    .attr("token", token.as_str())
                    .attr("media", ct.link_media()),
            );
            // Through the codec, as it arrives.
            let answer = unmarshal(&marshal(&answer).unwrap()).unwrap();
            let link = parse_link_create_answer(&answer, ct).unwrap();
            proptest::prop_assert_eq!(&link, &format!("{}{token}", ct.link_prefix()));
            proptest::prop_assert_eq!(CallType::of_link(&link), Some(ct));
            let card = crate::event::EventCard::builder()
                .name("Call")
                .start_unix(1_764_612_000)
                .call_type(Some(ct))
                .build()
                .unwrap();
            proptest::prop_assert!(card.with_join_link(link).is_ok());
        }

        #[test]
        fn tokens_with_other_characters_are_refused(
            token in "[A-Za-z0-9]{0,8}[^A-Za-z0-9_-][A-Za-z0-9]{0,8}",
        ) {
            let answer = Node::new("ack")
                .child(Node::new("link_create").attr("token", token.as_str()));
            proptest::prop_assert!(parse_link_create_answer(&answer, CallType::Voice).is_err());
        }
    }
}
