//! Small, strict readers for the server's nodes, shared by the send-side IQ codecs
//! (group info, usync, key bundles, notifications, retry receipts). Every reader checks
//! the shape and length of what it reads and returns a [`Malformed`] that says what was
//! wrong, so hostile input ends as an error, never a panic.

use super::stanza::iq_error_of;
use crate::binary::{AttrValue, Node};
use crate::jid::Jid;

/// A server node that does not have the shape the protocol gives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what}: {detail}")]
pub struct Malformed {
    /// What was being read (e.g. `usync response`).
    pub what: &'static str,
    /// What is wrong with it.
    pub detail: String,
}

impl Malformed {
    /// A `Malformed` for `what`.
    pub fn new(what: &'static str, detail: impl Into<String>) -> Self {
        Malformed {
            what,
            detail: detail.into(),
        }
    }
}

/// Longest attribute text shown in an error message.
const SHOWN: usize = 64;

/// `text` cut to [`SHOWN`] characters for an error message.
pub(crate) fn shown(text: &str) -> String {
    text.chars().take(SHOWN).collect()
}

/// The JID in attribute `key`, whether the encoder wrote it as a JID or as JID text;
/// `None` when absent or not a JID.
pub(crate) fn attr_jid(node: &Node, key: &str) -> Option<Jid> {
    match node.get_attr(key)? {
        AttrValue::Jid(j) => Some(j.clone()),
        AttrValue::Str(s) => Jid::parse(s).ok(),
    }
}

/// The JID in attribute `key`; refuses a missing or unparseable one.
pub(crate) fn require_jid(node: &Node, key: &str, what: &'static str) -> Result<Jid, Malformed> {
    match node.get_attr(key) {
        None => Err(Malformed::new(
            what,
            format!("<{}> has no {key} attribute", node.tag),
        )),
        Some(v) => attr_jid(node, key).ok_or_else(|| {
            Malformed::new(
                what,
                format!(
                    "<{} {key}={:?}> is not a JID",
                    node.tag,
                    shown(&v.to_text())
                ),
            )
        }),
    }
}

/// A user JID (no device, PN or LID namespace, non-empty user) from attribute `key`.
pub(crate) fn require_user_jid(
    node: &Node,
    key: &str,
    what: &'static str,
) -> Result<Jid, Malformed> {
    let jid = require_jid(node, key, what)?;
    if jid.user.is_empty() || jid.device != 0 || !(jid.is_pn() || jid.is_lid()) {
        return Err(Malformed::new(
            what,
            format!("<{} {key}=\"{jid}\"> is not a user JID", node.tag),
        ));
    }
    Ok(jid)
}

/// The text of attribute `key` (a JID attribute gives its text form).
pub(crate) fn attr_text(node: &Node, key: &str) -> Option<String> {
    node.get_attr(key).map(|v| v.to_text().into_owned())
}

/// Attribute `key` as a decimal number; `Ok(None)` when absent, an error when present
/// but not a number of this type.
pub(crate) fn attr_num<T: std::str::FromStr>(
    node: &Node,
    key: &str,
    what: &'static str,
) -> Result<Option<T>, Malformed> {
    let Some(v) = node.get_attr(key) else {
        return Ok(None);
    };
    let text = v.to_text();
    text.parse::<T>().map(Some).map_err(|_| {
        Malformed::new(
            what,
            format!("<{} {key}={:?}> is not a number", node.tag, shown(&text)),
        )
    })
}

/// The byte content of child `tag`, which must be exactly `len` bytes.
pub(crate) fn child_fixed<'a>(
    node: &'a Node,
    tag: &str,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], Malformed> {
    let child = node
        .child_by_tag(tag)
        .ok_or_else(|| Malformed::new(what, format!("<{}> has no <{tag}>", node.tag)))?;
    let bytes = child
        .bytes()
        .ok_or_else(|| Malformed::new(what, format!("<{tag}> holds no bytes")))?;
    if bytes.len() != len {
        return Err(Malformed::new(
            what,
            format!("<{tag}> is {} bytes, expected {len}", bytes.len()),
        ));
    }
    Ok(bytes)
}

/// A big-endian unsigned number of 1..=4 bytes.
pub(crate) fn be_u32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
}

/// The `<error code text>` child of a node, if any: (code, text shortened for an
/// error message). Code 0 when unreadable. The same reading as [`iq_error_of`].
pub(crate) fn error_child(node: &Node) -> Option<(u16, String)> {
    node.child_by_tag("error")?;
    let (code, text) = iq_error_of(node);
    Some((code, shown(&text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_refuse_bad_shapes() {
        let n = Node::new("user")
            .attr("jid", "123:4@s.whatsapp.net")
            .attr("n", "x1")
            .child(Node::new("registration").with_bytes(vec![0, 0, 1, 2]))
            .child(Node::new("identity").with_bytes(vec![1; 31]));
        assert_eq!(require_jid(&n, "jid", "t").unwrap().device, 4);
        assert!(require_user_jid(&n, "jid", "t").is_err());
        assert!(require_jid(&n, "missing", "t").is_err());
        assert!(attr_num::<u32>(&n, "n", "t").is_err());
        assert_eq!(attr_num::<u32>(&n, "absent", "t"), Ok(None));
        assert_eq!(
            be_u32(child_fixed(&n, "registration", 4, "t").unwrap()),
            258
        );
        let err = child_fixed(&n, "identity", 32, "t").unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed t: <identity> is 31 bytes, expected 32"
        );
        assert!(child_fixed(&n, "nothing", 1, "t").is_err());
    }
}
