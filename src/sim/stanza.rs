//! The nodes the simulated server sends, and small readers for the nodes it receives.
//! Shapes follow PROTOCOL.md §5–§7; every `from` the server writes is the server JID
//! written as a JID (`JID_PAIR`), as WhatsApp's server does.

use std::borrow::Cow;

use crate::binary::{AttrValue, Node};
use crate::jid::Jid;

/// The server JID `s.whatsapp.net` as an attribute value.
pub fn server() -> AttrValue {
    AttrValue::Jid(Jid::server_jid())
}

/// Text of attribute `key` whether it was written as a string or as a JID.
pub fn attr_text<'a>(node: &'a Node, key: &str) -> Option<Cow<'a, str>> {
    node.get_attr(key).map(AttrValue::to_text)
}

/// The JID in attribute `key`, whether written as a JID or as JID text.
pub fn attr_jid(node: &Node, key: &str) -> Option<Jid> {
    match node.get_attr(key)? {
        AttrValue::Jid(j) => Some(j.clone()),
        AttrValue::Str(s) => Jid::parse(s).ok(),
    }
}

/// Byte content of the child `tag`, when present and bytes.
pub fn child_bytes<'a>(node: &'a Node, tag: &str) -> Option<&'a [u8]> {
    node.child_by_tag(tag).and_then(Node::bytes)
}

/// `<iq from="s.whatsapp.net" id type="result"/>`.
pub fn iq_result(id: &str) -> Node {
    Node::new("iq")
        .attr("from", server())
        .attr("id", id)
        .attr("type", "result")
}

/// `<iq from id type="error"><error code text/></iq>`.
pub fn iq_error(id: &str, code: u16, text: &str) -> Node {
    Node::new("iq")
        .attr("from", server())
        .attr("id", id)
        .attr("type", "error")
        .child(Node::new("error").attr("code", code).attr("text", text))
}

/// `<success t lid/>`: logged in; `lid` is the device's own LID device JID.
pub fn success(t: u64, lid: &Jid) -> Node {
    Node::new("success").attr("t", t).attr("lid", lid)
}

/// `<failure reason [message]/>` sent instead of `<success>`.
pub fn failure(reason: u16, message: Option<&str>) -> Node {
    let node = Node::new("failure").attr("reason", reason);
    match message {
        Some(m) => node.attr("message", m),
        None => node,
    }
}

/// `<stream:error [code]>[child]</stream:error>`.
pub fn stream_error(code: Option<&str>, child: Option<Node>) -> Node {
    let mut node = Node::new("stream:error");
    if let Some(code) = code {
        node = node.attr("code", code);
    }
    match child {
        Some(c) => node.child(c),
        None => node,
    }
}

/// `<conflict type/>`, the child of `replaced` and `device_removed` stream errors.
pub fn conflict(kind: &str) -> Node {
    Node::new("conflict").attr("type", kind)
}

/// `<iq from id type="set" xmlns="md"><pair-device><ref>…</ref>×N</pair-device></iq>`.
pub fn pair_device(id: &str, refs: &[String]) -> Node {
    let refs = refs
        .iter()
        .map(|r| Node::new("ref").with_bytes(r.as_bytes().to_vec()))
        .collect();
    Node::new("iq")
        .attr("from", server())
        .attr("id", id)
        .attr("type", "set")
        .attr("xmlns", "md")
        .child(Node::new("pair-device").with_children(refs))
}

/// The `pair-success` IQ: device identity container, the new device's PN and LID JIDs,
/// and the phone's platform.
pub fn pair_success(
    id: &str,
    t: u64,
    device_identity: &[u8],
    device_pn: &Jid,
    device_lid: &Jid,
    platform: &str,
) -> Node {
    Node::new("iq")
        .attr("from", server())
        .attr("id", id)
        .attr("t", t)
        .attr("type", "set")
        .attr("xmlns", "md")
        .child(Node::new("pair-success").with_children(vec![
            Node::new("device-identity").with_bytes(device_identity.to_vec()),
            Node::new("device")
                .attr("jid", device_pn)
                .attr("lid", device_lid),
            Node::new("platform").attr("name", platform),
        ]))
}

/// `<notification from id t type="encrypt"><count value/></notification>`: the server's
/// prekey pool for the device is running low.
pub fn prekey_count_notification(id: &str, t: u64, count: usize) -> Node {
    Node::new("notification")
        .attr("from", server())
        .attr("id", id)
        .attr("t", t)
        .attr("type", "encrypt")
        .child(Node::new("count").attr("value", count))
}

/// `<notification from id t type="link_code_companion_reg"><link_code_companion_reg
/// stage="primary_hello">…</link_code_companion_reg></notification>`: the phone's answer
/// to a pairing code.
pub fn primary_hello_notification(
    id: &str,
    t: u64,
    wrapped_primary_ephemeral: &[u8],
    primary_identity: &[u8],
    reference: &str,
) -> Node {
    Node::new("notification")
        .attr("from", server())
        .attr("id", id)
        .attr("t", t)
        .attr("type", "link_code_companion_reg")
        .child(
            Node::new("link_code_companion_reg")
                .attr("stage", "primary_hello")
                .with_children(vec![
                    Node::new("link_code_pairing_wrapped_primary_ephemeral_pub")
                        .with_bytes(wrapped_primary_ephemeral.to_vec()),
                    Node::new("primary_identity_pub").with_bytes(primary_identity.to_vec()),
                    Node::new("link_code_pairing_ref").with_bytes(reference.as_bytes().to_vec()),
                ]),
        )
}

/// `<ib><offline count/></ib>`: end of the (here empty) offline backlog.
pub fn offline_done(count: usize) -> Node {
    Node::new("ib").child(Node::new("offline").attr("count", count))
}

/// `<ack class id from [type] [error]/>` for a stanza the client sent.
pub fn ack(class: &str, id: &str, from: AttrValue, kind: Option<&str>, error: Option<u16>) -> Node {
    let mut node = Node::new("ack")
        .attr("class", class)
        .attr("id", id)
        .attr("from", from);
    if let Some(kind) = kind {
        node = node.attr("type", kind);
    }
    if let Some(code) = error {
        node = node.attr("error", code);
    }
    node
}

/// Big-endian bytes of `value`, keeping the low `len` bytes (3 for prekey ids, 4 for
/// registration ids).
pub fn be_bytes(value: u32, len: usize) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    bytes[4usize.saturating_sub(len)..].to_vec()
}

/// Reads a big-endian unsigned integer of exactly `len` bytes (`len` ≤ 4).
pub fn be_uint(bytes: &[u8], len: usize) -> Option<u32> {
    if bytes.len() != len || len > 4 {
        return None;
    }
    Some(bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::{marshal, unmarshal};

    #[test]
    fn server_nodes_survive_the_codec_with_jid_from() {
        let nodes = [
            iq_result("1"),
            iq_error("2", 501, "feature-not-implemented"),
            pair_device("3", &["2@a".into(), "2@b".into()]),
            stream_error(Some("401"), Some(conflict("device_removed"))),
            prekey_count_notification("4", 5, 3),
        ];
        for n in nodes {
            let back = unmarshal(&marshal(&n).unwrap()).unwrap();
            assert_eq!(back, n);
            if back.tag != "stream:error" {
                assert_eq!(attr_jid(&back, "from"), Some(Jid::server_jid()));
            }
        }
    }

    #[test]
    fn big_endian_helpers() {
        assert_eq!(be_bytes(0x0102_0304, 3), vec![2, 3, 4]);
        assert_eq!(be_bytes(7, 4), vec![0, 0, 0, 7]);
        assert_eq!(be_uint(&[2, 3, 4], 3), Some(0x020304));
        assert_eq!(be_uint(&[2, 3], 3), None);
        assert_eq!(be_uint(&[1, 2, 3, 4, 5], 5), None);
    }
}
