//! Node → bytes, making the same choice as Baileys 7 (WhatsApp Web's encoder) for every
//! string: single-byte token, double-byte token, NIBBLE_8, HEX_8, JID, raw bytes.

use super::node::{AttrValue, Node, NodeContent};
use super::token::{
    self, AD_JID, BINARY_8, BINARY_20, BINARY_32, DICTIONARY_0, FB_JID, HEX_8, INTEROP_JID,
    JID_PAIR, LIST_8, LIST_16, LIST_EMPTY, NIBBLE_8, PACKED_MAX, Token,
};
use super::wire_jid::JidLayout;
use super::{FLAG_COMPRESSED, MAX_DEPTH};
use crate::jid::{INTEROP_SERVER, MESSENGER_SERVER};

/// Why a node cannot be written. Each names the node's tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// Every node needs a tag.
    #[error("cannot encode a node with an empty tag")]
    EmptyTag,
    /// The list header holds at most 65535 items (tag + 2 per attribute + content).
    #[error("node <{tag}> has {count} attributes; at most 32766 fit in a list header")]
    TooManyAttributes {
        /// Tag of the node.
        tag: String,
        /// Number of attributes.
        count: usize,
    },
    /// A list of children holds at most 65535 nodes.
    #[error("node <{tag}> has {count} children; at most 65535 fit in a list header")]
    TooManyChildren {
        /// Tag of the node.
        tag: String,
        /// Number of children.
        count: usize,
    },
    /// Bytes and strings are at most `u32::MAX` bytes long (BINARY_32).
    #[error("node <{tag}>: {len} bytes do not fit in BINARY_32")]
    TooLong {
        /// Tag of the node.
        tag: String,
        /// Length of the content or string.
        len: usize,
    },
    /// Nesting deeper than [`MAX_DEPTH`](super::MAX_DEPTH) (the decoder would refuse it).
    #[error("node <{tag}> is nested deeper than {max} levels")]
    TooDeep {
        /// Tag of the node past the limit.
        tag: String,
        /// The limit.
        max: usize,
    },
    /// A JID value no JID token can carry (e.g. device above 255, device on `g.us`).
    #[error("node <{tag}> attribute {key:?}: cannot encode JID {jid}: {reason}")]
    UnrepresentableJid {
        /// Tag of the node.
        tag: String,
        /// Attribute holding the JID.
        key: String,
        /// The JID, as text.
        jid: String,
        /// What no token can carry.
        reason: &'static str,
    },
    /// zlib compression of the encoded node failed.
    #[error("cannot zlib-compress the encoded node: {0}")]
    Compression(String),
}

/// Encodes a node without the frame flags byte (what follows the flags byte in a frame).
///
/// Refuses nodes the format cannot carry: see [`EncodeError`].
pub fn encode_node(node: &Node) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(size_hint(node, 1));
    encode_node_into(node, &mut out)?;
    Ok(out)
}

/// Encodes a node as a frame payload: the flags byte `0x00` (uncompressed) and the node.
/// This is what goes into a Noise transport frame.
pub fn marshal(node: &Node) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(1 + size_hint(node, 1));
    out.push(0);
    encode_node_into(node, &mut out)?;
    Ok(out)
}

/// Encodes a node as a zlib-compressed frame payload (flags byte `0x02`). Clients never
/// send these; servers may, so this exists for tests and simulators. Refuses what
/// [`encode_node`] refuses and reports a failing compressor as
/// [`EncodeError::Compression`].
pub fn marshal_compressed(node: &Node) -> Result<Vec<u8>, EncodeError> {
    use std::io::Write;
    let plain = encode_node(node)?;
    let mut z = flate2::write::ZlibEncoder::new(vec![FLAG_COMPRESSED], Default::default());
    let compression = |e: std::io::Error| EncodeError::Compression(e.to_string());
    z.write_all(&plain).map_err(compression)?;
    z.finish().map_err(compression)
}

/// Appends the encoding of `node` (no flags byte) to `out`. On error `out` is left as it
/// was.
pub fn encode_node_into(node: &Node, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let result = Encoder { out }.write_node(node, 1);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// A cheap upper-bound-ish estimate of the encoded size, so the output is allocated once
/// for typical stanzas. Stops descending at the depth limit (encoding fails there anyway).
fn size_hint(node: &Node, depth: usize) -> usize {
    let mut n = 3 + node.tag.len();
    for (k, v) in node.attrs.iter() {
        n += 2 + k.len();
        n += match v {
            AttrValue::Str(s) => 5 + s.len(),
            AttrValue::Jid(j) => 8 + j.user.len() + j.server.len(),
        };
    }
    match &node.content {
        NodeContent::None => {}
        NodeContent::Bytes(b) => n += 5 + b.len(),
        NodeContent::Nodes(children) => {
            n += 3;
            if depth < MAX_DEPTH {
                for c in children {
                    n += size_hint(c, depth + 1);
                }
            }
        }
    }
    n
}

fn is_nibble(s: &str) -> bool {
    s.len() <= PACKED_MAX
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b == b'.')
}

fn is_hex(s: &str) -> bool {
    s.len() <= PACKED_MAX
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

fn nibble_code(b: u8) -> u8 {
    match b {
        b'-' => 10,
        b'.' => 11,
        // Only digits remain after `is_nibble`.
        d => d.wrapping_sub(b'0') & 0x0F,
    }
}

fn hex_code(b: u8) -> u8 {
    match b {
        b'A'..=b'F' => b - b'A' + 10,
        // Only digits remain after `is_hex`.
        d => d.wrapping_sub(b'0') & 0x0F,
    }
}

/// Where a string is written: JID detection applies to tags, keys and values (as in
/// Baileys) but not to the parts of a JID.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StringKind {
    MayBeJid,
    Plain,
}

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
}

impl Encoder<'_> {
    fn write_node(&mut self, node: &Node, depth: usize) -> Result<(), EncodeError> {
        if depth > MAX_DEPTH {
            return Err(EncodeError::TooDeep {
                tag: node.tag.to_string(),
                max: MAX_DEPTH,
            });
        }
        if node.tag.is_empty() {
            return Err(EncodeError::EmptyTag);
        }
        let has_content = usize::from(!matches!(node.content, NodeContent::None));
        let size = node
            .attrs
            .len()
            .checked_mul(2)
            .and_then(|n| n.checked_add(1 + has_content))
            .filter(|&n| n <= usize::from(u16::MAX))
            .ok_or_else(|| EncodeError::TooManyAttributes {
                tag: node.tag.to_string(),
                count: node.attrs.len(),
            })?;
        self.write_list_start(size);
        self.write_string(&node.tag, StringKind::MayBeJid)
            .map_err(|len| too_long(node, len))?;
        for (key, value) in node.attrs.iter() {
            self.write_string(key, StringKind::MayBeJid)
                .map_err(|len| too_long(node, len))?;
            match value {
                AttrValue::Str(s) => self
                    .write_string(s, StringKind::MayBeJid)
                    .map_err(|len| too_long(node, len))?,
                AttrValue::Jid(jid) => {
                    let layout = JidLayout::of_jid(jid).map_err(|reason| {
                        EncodeError::UnrepresentableJid {
                            tag: node.tag.to_string(),
                            key: key.to_string(),
                            jid: jid.to_string(),
                            reason,
                        }
                    })?;
                    self.write_jid(layout).map_err(|len| too_long(node, len))?;
                }
            }
        }
        match &node.content {
            NodeContent::None => {}
            NodeContent::Bytes(bytes) => {
                self.write_byte_length(bytes.len())
                    .map_err(|len| too_long(node, len))?;
                self.out.extend_from_slice(bytes);
            }
            NodeContent::Nodes(children) => {
                if children.len() > usize::from(u16::MAX) {
                    return Err(EncodeError::TooManyChildren {
                        tag: node.tag.to_string(),
                        count: children.len(),
                    });
                }
                self.write_list_start(children.len());
                for child in children {
                    self.write_node(child, depth + 1)?;
                }
            }
        }
        Ok(())
    }

    /// `size` is at most 65535 (checked by the callers).
    fn write_list_start(&mut self, size: usize) {
        match size {
            0 => self.out.push(LIST_EMPTY),
            1..=255 => self.out.extend_from_slice(&[LIST_8, size as u8]),
            _ => {
                let [hi, lo] = (size as u16).to_be_bytes();
                self.out.extend_from_slice(&[LIST_16, hi, lo]);
            }
        }
    }

    /// BINARY_8 below 256, BINARY_20 below 2^20, BINARY_32 up to `u32::MAX`; the error
    /// carries the length that does not fit.
    fn write_byte_length(&mut self, len: usize) -> Result<(), usize> {
        if len < 256 {
            self.out.extend_from_slice(&[BINARY_8, len as u8]);
        } else if len < 1 << 20 {
            let [_, a, b, c] = (len as u32).to_be_bytes();
            self.out.extend_from_slice(&[BINARY_20, a, b, c]);
        } else {
            let len32 = u32::try_from(len).map_err(|_| len)?;
            self.out.push(BINARY_32);
            self.out.extend_from_slice(&len32.to_be_bytes());
        }
        Ok(())
    }

    fn write_string(&mut self, s: &str, kind: StringKind) -> Result<(), usize> {
        if s.is_empty() {
            // Baileys writes "" as an empty BINARY_8 (whatsmeow would pack it).
            self.out.extend_from_slice(&[BINARY_8, 0]);
            return Ok(());
        }
        if let Some(t) = token::lookup(s) {
            match t {
                Token::Single(b) => self.out.push(b),
                Token::Double(dict, index) => {
                    self.out.extend_from_slice(&[DICTIONARY_0 + dict, index]);
                }
            }
            return Ok(());
        }
        if is_nibble(s) {
            self.write_packed(s, NIBBLE_8, nibble_code);
            return Ok(());
        }
        if is_hex(s) {
            self.write_packed(s, HEX_8, hex_code);
            return Ok(());
        }
        if kind == StringKind::MayBeJid
            && s.contains('@')
            && let Some(layout) = JidLayout::of_text(s)
        {
            return self.write_jid(layout);
        }
        self.write_byte_length(s.len())?;
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }

    /// `s` is at most [`PACKED_MAX`] ASCII characters of the packer's alphabet.
    fn write_packed(&mut self, s: &str, tag: u8, code: fn(u8) -> u8) {
        let bytes = s.as_bytes();
        let pairs = bytes.len().div_ceil(2) as u8;
        let odd = if bytes.len() % 2 == 1 { 0x80 } else { 0 };
        self.out.extend_from_slice(&[tag, pairs | odd]);
        for pair in bytes.chunks(2) {
            let (hi, lo) = match *pair {
                [a, b] => (code(a), code(b)),
                [a] => (code(a), 0x0F),
                _ => continue, // `chunks(2)` yields one or two bytes
            };
            self.out.push((hi << 4) | lo);
        }
    }

    fn write_jid(&mut self, layout: JidLayout<'_>) -> Result<(), usize> {
        match layout {
            JidLayout::Pair { user, server } => {
                self.out.push(JID_PAIR);
                if user.is_empty() {
                    self.out.push(LIST_EMPTY);
                } else {
                    self.write_string(user, StringKind::Plain)?;
                }
                self.write_string(server, StringKind::Plain)
            }
            JidLayout::Ad {
                domain,
                device,
                user,
            } => {
                self.out.extend_from_slice(&[AD_JID, domain, device]);
                self.write_string(user, StringKind::Plain)
            }
            JidLayout::Fb { user, device } => {
                self.out.push(FB_JID);
                self.write_string(user, StringKind::Plain)?;
                self.out.extend_from_slice(&device.to_be_bytes());
                self.write_string(MESSENGER_SERVER, StringKind::Plain)
            }
            JidLayout::Interop {
                user,
                device,
                integrator,
            } => {
                self.out.push(INTEROP_JID);
                self.write_string(user, StringKind::Plain)?;
                self.out.extend_from_slice(&device.to_be_bytes());
                self.out.extend_from_slice(&integrator.to_be_bytes());
                self.write_string(INTEROP_SERVER, StringKind::Plain)
            }
        }
    }
}

fn too_long(node: &Node, len: usize) -> EncodeError {
    EncodeError::TooLong {
        tag: node.tag.to_string(),
        len,
    }
}
