//! Connection-level stanzas, sans-IO (PROTOCOL.md §5): what `<success>`, `<failure>` and
//! `<stream:error>` mean for the connection, and the replies the client owes the server
//! (`<ack>`, IQ results and errors).

use std::fmt;

use crate::binary::{AttrValue, Node};
use crate::jid::{DEFAULT_USER_SERVER, Jid};

/// What `<success>` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSuccess {
    /// Server clock, unix seconds (`t`).
    pub server_time: Option<i64>,
    /// Our LID device JID (`lid`), when present and valid.
    pub lid: Option<Jid>,
}

/// Reads `<success t lid>`; unknown or malformed attributes are ignored.
pub fn parse_success(node: &Node) -> LoginSuccess {
    let lid = match node.get_attr("lid") {
        Some(AttrValue::Jid(j)) => Some(j.clone()),
        Some(AttrValue::Str(s)) => Jid::parse(s).ok(),
        None => None,
    }
    .filter(Jid::is_lid);
    LoginSuccess {
        server_time: node.attr_str("t").and_then(|t| t.parse().ok()),
        lid,
    }
}

/// A `<failure reason>` in answer to the login (whatsmeow's `ConnectFailureReason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectFailure {
    /// The numeric reason (0 when missing or not a number).
    pub reason: u16,
    /// `message`, when the server sent one.
    pub message: Option<String>,
    /// For a temporary ban (402): the ban code and seconds until it expires.
    pub ban: Option<(u32, u64)>,
}

impl ConnectFailure {
    /// Reads `<failure reason [message] [code expire]>`.
    pub fn parse(node: &Node) -> Self {
        let reason = node
            .attr_str("reason")
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let ban = (reason == 402).then(|| {
            (
                node.attr_str("code")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0),
                node.attr_str("expire")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0),
            )
        });
        ConnectFailure {
            reason,
            message: node.attr_str("message").map(str::to_owned),
            ban,
        }
    }

    /// 401 logged out, 403 main device gone / account locked, 406 banned or unknown
    /// logout: the session is dead, the store must be cleared.
    pub fn is_logged_out(&self) -> bool {
        matches!(self.reason, 401 | 403 | 406)
    }

    /// 500 and 503: the server's trouble; reconnect with backoff.
    pub fn is_transient(&self) -> bool {
        matches!(self.reason, 500 | 503)
    }

    /// WhatsApp's name of the reason.
    pub fn description(&self) -> &'static str {
        match self.reason {
            400 => "bad request",
            401 => "logged out",
            402 => "temporarily banned",
            403 => "main device gone or account locked",
            405 => "client outdated: WhatsApp refuses this client version",
            406 => "logged out (banned or unknown reason)",
            409 => "bad user agent",
            413 => "Messenger access token expired",
            414 => "Messenger access token invalid",
            415 => "experimental client",
            418 => "Messenger access token not found",
            500 => "internal server error",
            501 => "experimental client",
            503 => "service unavailable",
            _ => "unknown reason",
        }
    }
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "login failure {} ({})", self.reason, self.description())?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        if let Some((code, expire)) = self.ban {
            write!(f, " [ban code {code}, expires in {expire} s]")?;
        }
        Ok(())
    }
}

/// What a `<stream:error>` asks of the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// 515: restart required (sent right after pairing): reconnect at once, logging in.
    RestartRequired,
    /// 401 with `<conflict type="device_removed"/>`, bare 401, or 516: the device was
    /// unlinked: logged out.
    DeviceRemoved {
        /// The code as sent.
        code: String,
        /// The conflict type, if any.
        conflict: Option<String>,
    },
    /// `<conflict type="replaced"/>`: another connection of this device took over. Do
    /// not reconnect (the two would keep kicking each other out).
    Replaced,
    /// 503: the server is restarting: reconnect with backoff.
    ServiceUnavailable,
    /// 429: rate limited: reconnect with a longer backoff.
    RateLimited,
    /// `<ack id class/>` without a code: the server still waits for our ack of a
    /// stanza; ack it and reconnect.
    MissingAck {
        /// The stanza id.
        id: String,
        /// Its class (tag).
        class: String,
    },
    /// `<xml-not-well-formed/>`: we sent something the server could not parse.
    XmlNotWellFormed,
    /// Anything else: reconnect with backoff and report it.
    Other {
        /// The code (empty when absent).
        code: String,
        /// The first child's tag and its `type`/`text`, for the log.
        detail: String,
    },
}

impl StreamError {
    /// Classifies a `<stream:error>` node (PROTOCOL.md §5.2).
    pub fn classify(node: &Node) -> Self {
        let code = node.attr_str("code").unwrap_or_default().to_owned();
        let conflict = node
            .child_by_tag("conflict")
            .map(|c| c.attr_str("type").unwrap_or_default().to_owned());
        if conflict.as_deref() == Some("replaced") {
            return StreamError::Replaced;
        }
        match code.as_str() {
            "515" => return StreamError::RestartRequired,
            "401" | "516" => return StreamError::DeviceRemoved { code, conflict },
            "503" => return StreamError::ServiceUnavailable,
            "429" => return StreamError::RateLimited,
            _ => {}
        }
        if conflict.as_deref() == Some("device_removed") {
            return StreamError::DeviceRemoved { code, conflict };
        }
        if code.is_empty()
            && let Some(ack) = node.child_by_tag("ack")
        {
            return StreamError::MissingAck {
                id: ack.attr_str("id").unwrap_or_default().to_owned(),
                class: ack.attr_str("class").unwrap_or_default().to_owned(),
            };
        }
        if node.child_by_tag("xml-not-well-formed").is_some() {
            return StreamError::XmlNotWellFormed;
        }
        let detail = node
            .children()
            .first()
            .map(|c| {
                let extra = c
                    .attr_str("type")
                    .or_else(|| c.attr_str("text"))
                    .map(|t| format!(" {t}"))
                    .unwrap_or_default();
                format!("<{}>{extra}", c.tag)
            })
            .unwrap_or_default();
        StreamError::Other { code, detail }
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::RestartRequired => f.write_str("stream error 515 (restart required)"),
            StreamError::DeviceRemoved { code, conflict } => {
                write!(f, "stream error {code}")?;
                if let Some(c) = conflict {
                    write!(f, " conflict {c}")?;
                }
                f.write_str(" (device removed)")
            }
            StreamError::Replaced => {
                f.write_str("stream replaced: another connection of this device took over")
            }
            StreamError::ServiceUnavailable => {
                f.write_str("stream error 503 (service unavailable)")
            }
            StreamError::RateLimited => f.write_str("stream error 429 (rate limited)"),
            StreamError::MissingAck { id, class } => {
                write!(f, "stream error: server waits for our ack of {class} {id}")
            }
            StreamError::XmlNotWellFormed => {
                f.write_str("stream error: the server could not parse a stanza we sent")
            }
            StreamError::Other { code, detail } => write!(f, "stream error {code} {detail}"),
        }
    }
}

/// True for the server's own JID however it was written (`s.whatsapp.net` as a token
/// string or as a JID with an empty user).
pub fn is_server_jid(value: Option<&AttrValue>) -> bool {
    match value {
        Some(AttrValue::Jid(j)) => j.is_server() && j.server == DEFAULT_USER_SERVER,
        Some(AttrValue::Str(s)) => s == "s.whatsapp.net" || s == "@s.whatsapp.net",
        None => false,
    }
}

/// `<iq to="<from of the request>" id type="result"/>`.
pub fn iq_result(request: &Node) -> Node {
    let mut reply = Node::new("iq");
    if let Some(from) = request.get_attr("from") {
        reply.attrs.set("to", from.clone());
    } else {
        reply.attrs.set("to", Jid::server_jid());
    }
    if let Some(id) = request.get_attr("id") {
        reply.attrs.set("id", id.clone());
    }
    reply.attr("type", "result")
}

/// `<iq to id type="error"><error code text/></iq>` answering `request`.
pub fn iq_error(request: &Node, code: u16, text: &str) -> Node {
    let mut reply = iq_result(request);
    reply.attrs.set("type", "error");
    reply.child(Node::new("error").attr("code", code).attr("text", text))
}

/// The `<ack>` a received stanza needs (PROTOCOL.md §5.6): `class` = its tag, `id`,
/// `to` = its `from`, `participant`/`recipient`/`type` copied when present (as WhatsApp
/// Web does), `from` = our own device JID for `class="message"`, and `error` for a
/// nack. `None` when the stanza has no id or no sender to ack to.
pub fn ack_for(stanza: &Node, own_jid: Option<&Jid>, error: Option<u16>) -> Option<Node> {
    let id = stanza.get_attr("id")?.clone();
    let from = stanza.get_attr("from")?.clone();
    let mut ack = Node::new("ack")
        .attr("class", stanza.tag.as_ref())
        .attr("id", id)
        .attr("to", from);
    for key in ["participant", "recipient", "type"] {
        if let Some(v) = stanza.get_attr(key) {
            ack.attrs.set(key, v.clone());
        }
    }
    if stanza.tag == "message"
        && let Some(own) = own_jid
    {
        ack.attrs.set("from", own.clone());
    }
    if let Some(code) = error {
        ack.attrs.set("error", code);
    }
    Some(ack)
}

/// The `code` and `text` of an IQ `type="error"` response (code 0 when unreadable).
pub fn iq_error_of(response: &Node) -> (u16, String) {
    let err = response.child_by_tag("error");
    let code = err
        .and_then(|e| e.attr_str("code"))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let text = err
        .and_then(|e| e.attr_str("text"))
        .unwrap_or_default()
        .to_owned();
    (code, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_error(code: Option<&str>, child: Option<Node>) -> StreamError {
        let mut n = Node::new("stream:error");
        if let Some(c) = code {
            n = n.attr("code", c);
        }
        if let Some(c) = child {
            n = n.child(c);
        }
        StreamError::classify(&n)
    }

    #[test]
    fn stream_errors_are_classified_as_protocol_md_says() {
        assert_eq!(
            stream_error(Some("515"), None),
            StreamError::RestartRequired
        );
        assert!(matches!(
            stream_error(
                Some("401"),
                Some(Node::new("conflict").attr("type", "device_removed"))
            ),
            StreamError::DeviceRemoved { .. }
        ));
        assert!(matches!(
            stream_error(Some("401"), None),
            StreamError::DeviceRemoved { .. }
        ));
        assert_eq!(
            stream_error(None, Some(Node::new("conflict").attr("type", "replaced"))),
            StreamError::Replaced
        );
        assert_eq!(
            stream_error(Some("503"), None),
            StreamError::ServiceUnavailable
        );
        assert_eq!(stream_error(Some("429"), None), StreamError::RateLimited);
        assert_eq!(
            stream_error(
                None,
                Some(Node::new("ack").attr("id", "x1").attr("class", "receipt"))
            ),
            StreamError::MissingAck {
                id: "x1".into(),
                class: "receipt".into()
            }
        );
        assert_eq!(
            stream_error(None, Some(Node::new("xml-not-well-formed"))),
            StreamError::XmlNotWellFormed
        );
        let other = stream_error(Some("999"), Some(Node::new("foo").attr("type", "bar")));
        assert_eq!(other.to_string(), "stream error 999 <foo> bar");
    }

    #[test]
    fn failures() {
        let f = ConnectFailure::parse(&Node::new("failure").attr("reason", "401"));
        assert!(f.is_logged_out());
        assert!(!f.is_transient());
        let f = ConnectFailure::parse(
            &Node::new("failure")
                .attr("reason", "402")
                .attr("code", "101")
                .attr("expire", "3600"),
        );
        assert_eq!(f.ban, Some((101, 3600)));
        assert!(f.to_string().contains("temporarily banned"));
        assert!(ConnectFailure::parse(&Node::new("failure").attr("reason", "503")).is_transient());
        let f = ConnectFailure::parse(&Node::new("failure").attr("reason", "405"));
        assert!(!f.is_logged_out() && !f.is_transient());
        assert!(f.to_string().contains("outdated"));
        assert_eq!(ConnectFailure::parse(&Node::new("failure")).reason, 0);
    }

    #[test]
    fn success_attributes() {
        let s = parse_success(
            &Node::new("success")
                .attr("t", "1700000000")
                .attr("lid", Jid::parse("123:4@lid").unwrap()),
        );
        assert_eq!(s.server_time, Some(1_700_000_000));
        assert_eq!(s.lid.unwrap().to_string(), "123:4@lid");
        // A PN in the lid attribute is not taken as our LID.
        let s = parse_success(
            &Node::new("success").attr("lid", Jid::parse("1:4@s.whatsapp.net").unwrap()),
        );
        assert_eq!(s.lid, None);
    }

    #[test]
    fn acks_copy_what_whatsapp_web_copies() {
        let group = Jid::parse("120363000000000001@g.us").unwrap();
        let sender = Jid::parse("111:2@lid").unwrap();
        let own = Jid::parse("5511:7@s.whatsapp.net").unwrap();
        let msg = Node::new("message")
            .attr("id", "ABC")
            .attr("from", group.clone())
            .attr("participant", sender.clone())
            .attr("type", "text");
        let ack = ack_for(&msg, Some(&own), None).unwrap();
        assert_eq!(ack.attr_str("class"), Some("message"));
        assert_eq!(ack.attr_str("id"), Some("ABC"));
        assert_eq!(ack.attr_jid("to"), Some(&group));
        assert_eq!(ack.attr_jid("participant"), Some(&sender));
        assert_eq!(ack.attr_str("type"), Some("text"));
        assert_eq!(ack.attr_jid("from"), Some(&own));
        let nack = ack_for(&msg, None, Some(487)).unwrap();
        assert_eq!(nack.attr_str("error"), Some("487"));
        assert_eq!(nack.get_attr("from"), None);
        let notif = Node::new("notification")
            .attr("id", "n1")
            .attr("from", Jid::server_jid())
            .attr("type", "encrypt");
        let ack = ack_for(&notif, Some(&own), None).unwrap();
        assert_eq!(ack.attr_str("class"), Some("notification"));
        assert_eq!(ack.get_attr("from"), None);
        assert!(ack_for(&Node::new("receipt").attr("id", "x"), None, None).is_none());
    }

    #[test]
    fn iq_replies() {
        let req = Node::new("iq")
            .attr("from", Jid::server_jid())
            .attr("id", "7")
            .attr("type", "get")
            .attr("xmlns", "urn:xmpp:ping");
        let r = iq_result(&req);
        assert_eq!(r.attr_str("type"), Some("result"));
        assert_eq!(r.attr_str("id"), Some("7"));
        assert!(is_server_jid(r.get_attr("to")));
        let e = iq_error(&req, 501, "feature-not-implemented");
        assert_eq!(e.attr_str("type"), Some("error"));
        assert_eq!(
            iq_error_of(&e),
            (501, "feature-not-implemented".to_string())
        );
        assert!(is_server_jid(Some(&AttrValue::Str(
            "s.whatsapp.net".into()
        ))));
        assert!(!is_server_jid(Some(&AttrValue::Jid(
            Jid::parse("1@s.whatsapp.net").unwrap()
        ))));
    }
}
