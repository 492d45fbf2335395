//! Nodes as JSON, for the `waevent wire node-decode` / `node-encode` tools:
//!
//! ```json
//! {"tag": "iq", "attrs": {"id": "1", "to": "@s.whatsapp.net"}, "content": null}
//! ```
//!
//! `content` is `null` (no content), a hex string (bytes) or an array of nodes.
//! Attribute values are strings; JID values are written as their text (the server JID
//! as `@s.whatsapp.net`, see [`AttrValue::to_text`]), and strings that are JIDs become
//! JID values again on the way back, so decode → JSON → encode gives the same bytes.
//! Attribute order is kept (it decides the bytes).

use serde_json::{Map, Value};

use super::MAX_DEPTH;
use super::node::{AttrValue, Attrs, Node, NodeContent};

/// Why a JSON value is not a node. `path` says where, e.g. `$.content[2].attrs.to`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node JSON at {path}: {detail}")]
pub struct JsonNodeError {
    /// Where in the JSON the problem is.
    pub path: String,
    /// What is wrong.
    pub detail: String,
}

fn err(path: &str, detail: impl Into<String>) -> JsonNodeError {
    JsonNodeError {
        path: path.to_string(),
        detail: detail.into(),
    }
}

/// The JSON form of a node: `{"tag", "attrs", "content"}` with bytes as lower-case hex.
pub fn node_to_json(node: &Node) -> Value {
    let mut attrs = Map::with_capacity(node.attrs.len());
    for (k, v) in node.attrs.iter() {
        attrs.insert(k.to_string(), Value::String(v.to_text().into_owned()));
    }
    let content = match &node.content {
        NodeContent::None => Value::Null,
        NodeContent::Bytes(b) => Value::String(hex::encode(b)),
        NodeContent::Nodes(children) => Value::Array(children.iter().map(node_to_json).collect()),
    };
    let mut obj = Map::with_capacity(3);
    obj.insert("tag".into(), Value::String(node.tag.to_string()));
    obj.insert("attrs".into(), Value::Object(attrs));
    obj.insert("content".into(), content);
    Value::Object(obj)
}

/// The node a JSON value describes (the inverse of [`node_to_json`]).
///
/// `attrs` and `content` may be left out (no attributes, no content). Refuses anything
/// but an object with a non-empty string `tag`, an object of string `attrs`, and
/// `content` that is `null`, a hex string or an array of nodes; unknown keys (likely
/// typos); nesting deeper than [`MAX_DEPTH`].
pub fn node_from_json(value: &Value) -> Result<Node, JsonNodeError> {
    node_at(value, "$", 1)
}

fn node_at(value: &Value, path: &str, depth: usize) -> Result<Node, JsonNodeError> {
    if depth > MAX_DEPTH {
        return Err(err(path, format!("nested deeper than {MAX_DEPTH} nodes")));
    }
    let obj = value
        .as_object()
        .ok_or_else(|| err(path, "a node must be a JSON object"))?;
    if let Some(key) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "tag" | "attrs" | "content"))
    {
        return Err(err(
            path,
            format!("unknown key {key:?} (a node has tag, attrs, content)"),
        ));
    }
    let tag = match obj.get("tag") {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        Some(Value::String(_)) => return Err(err(&format!("{path}.tag"), "the tag is empty")),
        Some(_) => return Err(err(&format!("{path}.tag"), "the tag must be a string")),
        None => return Err(err(path, "missing \"tag\"")),
    };
    let attrs = match obj.get("attrs") {
        None | Some(Value::Null) => Attrs::new(),
        Some(Value::Object(map)) => {
            let mut attrs = Attrs::with_capacity(map.len());
            for (k, v) in map {
                let s = v.as_str().ok_or_else(|| {
                    err(
                        &format!("{path}.attrs.{k}"),
                        "attribute values must be strings",
                    )
                })?;
                attrs.set(k.clone(), AttrValue::from(s));
            }
            attrs
        }
        Some(_) => {
            return Err(err(
                &format!("{path}.attrs"),
                "attrs must be an object of strings",
            ));
        }
    };
    let content = match obj.get("content") {
        None | Some(Value::Null) => NodeContent::None,
        Some(Value::String(h)) => NodeContent::Bytes(hex::decode(h).map_err(|e| {
            err(
                &format!("{path}.content"),
                format!("byte content must be hex: {e}"),
            )
        })?),
        Some(Value::Array(items)) => {
            let mut children = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                children.push(node_at(item, &format!("{path}.content[{i}]"), depth + 1)?);
            }
            NodeContent::Nodes(children)
        }
        Some(_) => {
            return Err(err(
                &format!("{path}.content"),
                "content must be null, a hex string or an array of nodes",
            ));
        }
    };
    Ok(Node {
        tag: tag.into(),
        attrs,
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::{marshal, unmarshal};
    use crate::jid::Jid;
    use serde_json::json;

    fn sample() -> Node {
        Node::new("message")
            .attr("to", "120363019502650977@g.us")
            .attr("type", "text")
            .attr("id", "3EB0A1B2C3D4E5F6")
            .attr("addressing_mode", "lid")
            .with_children(vec![
                Node::new("participants").with_children(vec![
                    Node::new("to")
                        .attr("jid", Jid::new_ad("123456789012345", 3, "lid"))
                        .with_children(vec![
                            Node::new("enc")
                                .attr("v", "2")
                                .attr("type", "pkmsg")
                                .with_bytes(vec![0x33, 0x08, 0xAB]),
                        ]),
                ]),
                Node::new("iq").attr("to", Jid::server_jid()),
                Node::new("empty").with_children(vec![]),
                Node::new("blank").with_bytes(vec![]),
            ])
    }

    #[test]
    fn json_shape() {
        let v = node_to_json(
            &Node::new("iq")
                .attr("to", Jid::server_jid())
                .attr("id", "1"),
        );
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"tag":"iq","attrs":{"to":"@s.whatsapp.net","id":"1"},"content":null}"#
        );
        let v = node_to_json(&Node::new("enc").with_bytes(vec![0xde, 0xad]));
        assert_eq!(v["content"], json!("dead"));
    }

    #[test]
    fn round_trips_and_keeps_bytes() {
        let node = sample();
        let v = node_to_json(&node);
        let back = node_from_json(&v).unwrap();
        assert_eq!(back, node);
        // Through text too, as the CLI does, with the same bytes.
        let text = serde_json::to_string(&v).unwrap();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        let again = node_from_json(&parsed).unwrap();
        assert_eq!(marshal(&again).unwrap(), marshal(&node).unwrap());
        assert_eq!(unmarshal(&marshal(&again).unwrap()).unwrap(), node);
    }

    #[test]
    fn accepts_short_forms() {
        let n = node_from_json(&json!({"tag": "ping"})).unwrap();
        assert_eq!(n, Node::new("ping"));
        let n = node_from_json(&json!({"tag": "x", "attrs": null, "content": "ABCD"})).unwrap();
        assert_eq!(n.bytes(), Some(&[0xAB, 0xCD][..]));
    }

    #[test]
    fn refuses_bad_json_with_a_path() {
        for (v, path, needle) in [
            (json!([]), "$", "object"),
            (json!({}), "$", "missing"),
            (json!({"tag": ""}), "$.tag", "empty"),
            (json!({"tag": 5}), "$.tag", "string"),
            (json!({"tag": "a", "atrs": {}}), "$", "unknown key"),
            (json!({"tag": "a", "attrs": []}), "$.attrs", "object"),
            (
                json!({"tag": "a", "attrs": {"n": 1}}),
                "$.attrs.n",
                "strings",
            ),
            (json!({"tag": "a", "content": "xyz"}), "$.content", "hex"),
            (json!({"tag": "a", "content": 1}), "$.content", "null"),
            (
                json!({"tag": "a", "content": [{"tag": "b"}, {"tag": 1}]}),
                "$.content[1].tag",
                "string",
            ),
        ] {
            let e = node_from_json(&v).unwrap_err();
            assert_eq!(e.path, path, "{v}");
            assert!(e.detail.contains(needle), "{v}: {e}");
        }
        let mut deep = json!({"tag": "leaf"});
        for _ in 0..MAX_DEPTH {
            deep = json!({"tag": "n", "content": [deep]});
        }
        assert!(node_from_json(&deep).unwrap_err().detail.contains("deeper"));
    }
}
