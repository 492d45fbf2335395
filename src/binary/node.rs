//! The in-memory form of a binary XML node: a tag, ordered attributes and content that
//! is nothing, bytes or child nodes.

use std::borrow::Cow;
use std::fmt;

use crate::jid::Jid;

use super::wire_jid::{real_jid_in_text, wire_text};

/// An attribute value: a string or a JID.
///
/// The decoder yields [`AttrValue::Jid`] for the JID tokens (and for raw strings the
/// encoder would itself write as JIDs), [`AttrValue::Str`] for everything else. The
/// `From` conversions follow the same rule, so `"123@g.us".into()` is a `Jid` and
/// `"s.whatsapp.net".into()` a `Str` (it is a token). A `Str` built directly that looks
/// like a JID is still written as a JID, exactly as Baileys writes such strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttrValue {
    /// A plain string (borrowed when it is a `'static` one, e.g. a token).
    Str(Cow<'static, str>),
    /// A JID, written with a JID token.
    Jid(Jid),
}

impl AttrValue {
    /// The string of a `Str` value; `None` for a JID (see [`AttrValue::to_text`]).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            AttrValue::Jid(_) => None,
        }
    }

    /// The JID of a `Jid` value; `None` for a string.
    pub fn as_jid(&self) -> Option<&Jid> {
        match self {
            AttrValue::Jid(j) => Some(j),
            AttrValue::Str(_) => None,
        }
    }

    /// The value as text: the string itself, or the JID's text as Baileys shows it (the
    /// server JID is `@s.whatsapp.net`). Converting this text back with `From` gives the
    /// same value for every value the decoder produces, except JIDs with an agent.
    pub fn to_text(&self) -> Cow<'_, str> {
        match self {
            AttrValue::Str(s) => Cow::Borrowed(s.as_ref()),
            AttrValue::Jid(j) => Cow::Owned(wire_text(j)),
        }
    }

    /// A string value, or a JID value when the string is a real JID (see
    /// `real_jid_in_text`; the encoder writes both forms alike).
    fn from_string(s: String) -> Self {
        match real_jid_in_text(&s) {
            Some(jid) => AttrValue::Jid(jid),
            None => AttrValue::Str(Cow::Owned(s)),
        }
    }

    /// Like `From<&str>`, without copying the string: for the fixed values of hot
    /// stanzas (`"2"`, `"msg"`, `"hide"`).
    pub fn from_static(s: &'static str) -> Self {
        match real_jid_in_text(s) {
            Some(jid) => AttrValue::Jid(jid),
            None => AttrValue::Str(Cow::Borrowed(s)),
        }
    }
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl PartialEq<str> for AttrValue {
    fn eq(&self, other: &str) -> bool {
        match self {
            AttrValue::Str(s) => s.as_ref() == other,
            AttrValue::Jid(j) => wire_text(j) == other,
        }
    }
}

impl PartialEq<&str> for AttrValue {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

impl From<String> for AttrValue {
    fn from(s: String) -> Self {
        AttrValue::from_string(s)
    }
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> Self {
        AttrValue::from_string(s.to_string())
    }
}

impl From<&String> for AttrValue {
    fn from(s: &String) -> Self {
        AttrValue::from_string(s.clone())
    }
}

impl From<Jid> for AttrValue {
    fn from(j: Jid) -> Self {
        AttrValue::Jid(j)
    }
}

impl From<&Jid> for AttrValue {
    fn from(j: &Jid) -> Self {
        AttrValue::Jid(j.clone())
    }
}

macro_rules! attr_value_from_integer {
    ($($t:ty),*) => {$(
        impl From<$t> for AttrValue {
            /// The decimal text of the number (written nibble-packed on the wire).
            fn from(n: $t) -> Self {
                AttrValue::Str(Cow::Owned(n.to_string()))
            }
        }
    )*};
}
attr_value_from_integer!(u8, u16, u32, u64, usize, i32, i64);

/// A node's attributes in insertion order (the order they are written in, which the
/// bytes depend on). Keys are unique: [`Attrs::set`] replaces a value in place. Keys
/// that are `'static` strings (every literal, every decoded token) are not copied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Attrs(Vec<(Cow<'static, str>, AttrValue)>);

impl Attrs {
    /// No attributes.
    pub fn new() -> Self {
        Attrs(Vec::new())
    }

    /// Room for `n` attributes.
    pub fn with_capacity(n: usize) -> Self {
        Attrs(Vec::with_capacity(n))
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no attributes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&AttrValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// True when `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key`: replaces the value where the key already is, else appends it.
    pub fn set(&mut self, key: impl Into<Cow<'static, str>>, value: impl Into<AttrValue>) {
        let key = key.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<AttrValue> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }

    /// The attributes in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &AttrValue)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// Appends without the duplicate check; the decoder checks keys itself.
    pub(crate) fn push_unchecked(&mut self, key: Cow<'static, str>, value: AttrValue) {
        self.0.push((key, value));
    }
}

impl<K: Into<Cow<'static, str>>, V: Into<AttrValue>> FromIterator<(K, V)> for Attrs {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut attrs = Attrs::new();
        for (k, v) in iter {
            attrs.set(k, v);
        }
        attrs
    }
}

/// What a node holds after its attributes.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub enum NodeContent {
    /// No content item at all (`<tag/>`).
    #[default]
    None,
    /// Raw bytes. String content from the wire (a token, packed string or JID in content
    /// position) is kept as its UTF-8 bytes.
    Bytes(Vec<u8>),
    /// Child nodes; an empty list is written as `LIST_EMPTY` and differs from `None`.
    Nodes(Vec<Node>),
}

impl fmt::Debug for NodeContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeContent::None => f.write_str("None"),
            NodeContent::Bytes(b) => write!(f, "Bytes({})", ShortBytes(b)),
            NodeContent::Nodes(n) => f.debug_tuple("Nodes").field(n).finish(),
        }
    }
}

/// A binary XML node (a "stanza" when it is the root).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Node {
    /// The element name, e.g. `iq`, `message`, `enc`. Never empty on the wire; not
    /// copied when it is a `'static` string (a literal or a decoded token).
    pub tag: Cow<'static, str>,
    /// The attributes, in the order they are written.
    pub attrs: Attrs,
    /// Nothing, bytes or child nodes.
    pub content: NodeContent,
}

impl Node {
    /// A node with no attributes and no content.
    pub fn new(tag: impl Into<Cow<'static, str>>) -> Self {
        Node {
            tag: tag.into(),
            attrs: Attrs::new(),
            content: NodeContent::None,
        }
    }

    /// Builder: sets attribute `key` (strings that are JIDs become JID values, see
    /// [`AttrValue`]; pass a [`Jid`] to write one directly).
    pub fn attr(mut self, key: impl Into<Cow<'static, str>>, value: impl Into<AttrValue>) -> Self {
        self.attrs.set(key, value);
        self
    }

    /// Builder: replaces the content with these children.
    pub fn with_children(mut self, children: Vec<Node>) -> Self {
        self.content = NodeContent::Nodes(children);
        self
    }

    /// Builder: appends one child (content that was not a list becomes a list).
    pub fn child(mut self, child: Node) -> Self {
        match &mut self.content {
            NodeContent::Nodes(children) => children.push(child),
            other => *other = NodeContent::Nodes(vec![child]),
        }
        self
    }

    /// Builder: replaces the content with these bytes.
    pub fn with_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.content = NodeContent::Bytes(bytes.into());
        self
    }

    /// The value of attribute `key`.
    pub fn get_attr(&self, key: &str) -> Option<&AttrValue> {
        self.attrs.get(key)
    }

    /// The string value of attribute `key`; `None` when it is missing or a JID.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).and_then(AttrValue::as_str)
    }

    /// The JID value of attribute `key`; `None` when it is missing or not a JID.
    pub fn attr_jid(&self, key: &str) -> Option<&Jid> {
        self.attrs.get(key).and_then(AttrValue::as_jid)
    }

    /// The child nodes; empty when the content is not a list.
    pub fn children(&self) -> &[Node] {
        match &self.content {
            NodeContent::Nodes(children) => children,
            _ => &[],
        }
    }

    /// The first child with this tag.
    pub fn child_by_tag(&self, tag: &str) -> Option<&Node> {
        self.children().iter().find(|c| c.tag == tag)
    }

    /// Every child with this tag, in order.
    pub fn children_by_tag<'a>(&'a self, tag: &'a str) -> impl Iterator<Item = &'a Node> {
        self.children().iter().filter(move |c| c.tag == tag)
    }

    /// The byte content; `None` when the content is not bytes.
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.content {
            NodeContent::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// Byte content as shown in logs: printable text up to [`MAX_TEXT_SHOWN`] bytes as
/// text, up to [`MAX_HEX_SHOWN`] bytes as hex, anything else as its length only.
struct ShortBytes<'a>(&'a [u8]);

const MAX_TEXT_SHOWN: usize = 128;
const MAX_HEX_SHOWN: usize = 16;

impl fmt::Display for ShortBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b.is_empty() {
            return Ok(());
        }
        if b.len() <= MAX_TEXT_SHOWN
            && let Ok(text) = std::str::from_utf8(b)
            && !text.chars().any(char::is_control)
        {
            return write_escaped(f, text);
        }
        if b.len() <= MAX_HEX_SHOWN {
            return f.write_str(&hex::encode(b));
        }
        write!(f, "<!-- {} bytes -->", b.len())
    }
}

fn write_escaped(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    for c in text.chars() {
        match c {
            '&' => f.write_str("&amp;")?,
            '<' => f.write_str("&lt;")?,
            '>' => f.write_str("&gt;")?,
            '"' => f.write_str("&quot;")?,
            c if c.is_control() => write!(f, "&#x{:x};", u32::from(c))?,
            c => fmt::Write::write_char(f, c)?,
        }
    }
    Ok(())
}

impl Node {
    fn fmt_xml(&self, f: &mut fmt::Formatter<'_>, indent: Option<usize>) -> fmt::Result {
        if let Some(depth) = indent {
            for _ in 0..depth {
                f.write_str("  ")?;
            }
        }
        f.write_str("<")?;
        write_escaped(f, &self.tag)?;
        for (k, v) in self.attrs.iter() {
            f.write_str(" ")?;
            write_escaped(f, k)?;
            f.write_str("=\"")?;
            write_escaped(f, &v.to_text())?;
            f.write_str("\"")?;
        }
        match &self.content {
            NodeContent::None => return f.write_str("/>"),
            NodeContent::Bytes(b) => {
                f.write_str(">")?;
                write!(f, "{}", ShortBytes(b))?;
            }
            NodeContent::Nodes(children) => {
                f.write_str(">")?;
                for child in children {
                    if let Some(depth) = indent {
                        f.write_str("\n")?;
                        child.fmt_xml(f, Some(depth + 1))?;
                    } else {
                        child.fmt_xml(f, None)?;
                    }
                }
                if let (Some(depth), false) = (indent, children.is_empty()) {
                    f.write_str("\n")?;
                    for _ in 0..depth {
                        f.write_str("  ")?;
                    }
                }
            }
        }
        f.write_str("</")?;
        write_escaped(f, &self.tag)?;
        f.write_str(">")
    }
}

/// XML-like text for logs: `<iq id="1" to="@s.whatsapp.net"><ping/></iq>`; `{:#}`
/// indents children. Byte content is shown as text when short and printable, as hex up
/// to 16 bytes, otherwise only as its length (`<!-- 210 bytes -->`), so ciphertexts and
/// keys are never dumped.
impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_xml(f, f.alternate().then_some(0))
    }
}

/// Same as `Display` (a derived `Debug` would dump every content byte).
impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_and_accessors() {
        let lid = Jid::new_ad("123456789012345", 7, "lid");
        let node = Node::new("iq")
            .attr("id", "abc")
            .attr("to", Jid::server_jid())
            .attr("from", "120363019502650977@g.us")
            .attr("t", 1_700_000_000u64)
            .attr("id", "replaced")
            .child(Node::new("list").attr("jid", &lid))
            .child(Node::new("item").with_bytes(vec![1, 2, 3]));
        assert_eq!(
            node.attrs.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            ["id", "to", "from", "t"]
        );
        assert_eq!(node.attr_str("id"), Some("replaced"));
        assert_eq!(node.attr_jid("to"), Some(&Jid::server_jid()));
        assert_eq!(
            node.attr_jid("from"),
            Some(&Jid::group("120363019502650977"))
        );
        assert_eq!(node.attr_str("from"), None);
        assert!(node.get_attr("to").is_some_and(|v| v == "@s.whatsapp.net"));
        assert_eq!(node.attr_str("t"), Some("1700000000"));
        assert_eq!(node.children().len(), 2);
        assert_eq!(
            node.child_by_tag("list").and_then(|l| l.attr_jid("jid")),
            Some(&lid)
        );
        assert_eq!(
            node.child_by_tag("item").and_then(Node::bytes),
            Some(&[1u8, 2, 3][..])
        );
        assert_eq!(node.children_by_tag("item").count(), 1);
        assert!(node.child_by_tag("missing").is_none());
        assert!(Node::new("x").children().is_empty());
        assert_eq!(
            AttrValue::from("s.whatsapp.net"),
            AttrValue::Str("s.whatsapp.net".into())
        );
    }

    #[test]
    fn attrs_keep_order_and_replace_in_place() {
        let mut a: Attrs = [("b", "1"), ("a", "2"), ("b", "3")].into_iter().collect();
        assert_eq!(a.len(), 2);
        assert_eq!(a.get("b").and_then(AttrValue::as_str), Some("3"));
        assert_eq!(a.iter().next().map(|(k, _)| k), Some("b"));
        assert_eq!(a.remove("b"), Some(AttrValue::Str("3".into())));
        assert!(!a.contains_key("b"));
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn display_is_short_and_escaped() {
        let node = Node::new("message")
            .attr("to", "120363019502650977@g.us")
            .attr("note", "a<b&\"c\"")
            .with_children(vec![
                Node::new("enc").with_bytes(vec![0xAB; 200]),
                Node::new("ref").with_bytes(b"2@abc,def".to_vec()),
                Node::new("key").with_bytes(vec![0, 1, 0xFF]),
                Node::new("empty").with_children(vec![]),
            ]);
        assert_eq!(
            node.to_string(),
            "<message to=\"120363019502650977@g.us\" note=\"a&lt;b&amp;&quot;c&quot;\">\
             <enc><!-- 200 bytes --></enc><ref>2@abc,def</ref><key>0001ff</key>\
             <empty></empty></message>"
        );
        assert_eq!(
            format!("{:#}", Node::new("a").child(Node::new("b"))),
            "<a>\n  <b/>\n</a>"
        );
        assert_eq!(format!("{node:?}"), node.to_string());
    }
}
