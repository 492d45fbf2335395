//! Bytes → node, for hostile input: every length is checked against the remaining input
//! before anything is allocated, nesting and the total number of nodes and attributes
//! are bounded, and every failure is a [`DecodeError`] naming what was being read and the
//! offset.

use std::borrow::Cow;
use std::io::Read;

use super::node::{AttrValue, Attrs, Node, NodeContent};
use super::token::{
    self, AD_JID, BINARY_8, BINARY_20, BINARY_32, DICTIONARY_0, DICTIONARY_3, FB_JID, HEX_8,
    INTEROP_JID, JID_PAIR, LIST_8, LIST_16, LIST_EMPTY, NIBBLE_8,
};
use super::wire_jid::{is_real_jid, jid_from_ad, real_jid_in_text, wire_text};
use super::{FLAG_COMPRESSED, MAX_DEPTH, MAX_INFLATED_SIZE, MAX_ITEMS};
use crate::jid::{INTEROP_SERVER, Jid, MESSENGER_SERVER};

/// Why bytes are not a node. Offsets count from the first byte of the node (the byte
/// after the flags byte; in compressed frames, of the inflated data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A frame payload needs at least the flags byte.
    #[error("empty frame payload: no flags byte")]
    EmptyFrame,
    /// The input ends in the middle of something.
    #[error(
        "truncated node: {what} needs {needed} bytes at offset {offset}, only {available} left"
    )]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where it starts.
        offset: usize,
        /// Bytes it needs.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// A byte that cannot start what is expected there.
    #[error("unexpected byte 0x{byte:02x} at offset {offset}: expected {expected}")]
    UnexpectedByte {
        /// Where the byte is.
        offset: usize,
        /// The byte.
        byte: u8,
        /// What was expected.
        expected: &'static str,
    },
    /// A node's list header says 0 items (a node needs at least its tag).
    #[error("node at offset {offset} has list size 0")]
    EmptyNode {
        /// Where the node starts.
        offset: usize,
    },
    /// A node's tag is the empty string.
    #[error("node at offset {offset} has an empty tag")]
    EmptyTag {
        /// Where the node starts.
        offset: usize,
    },
    /// Nodes nested deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
    #[error("nodes nested deeper than {max} levels at offset {offset}")]
    TooDeep {
        /// Where the node past the limit starts.
        offset: usize,
        /// The limit.
        max: usize,
    },
    /// More nodes and attributes in one stanza than [`MAX_ITEMS`](super::MAX_ITEMS).
    #[error("more than {max} nodes and attributes in one stanza (at offset {offset})")]
    TooManyItems {
        /// Where the limit was crossed.
        offset: usize,
        /// The limit.
        max: usize,
    },
    /// A string that is not UTF-8.
    #[error("string at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Where the string's bytes start.
        offset: usize,
    },
    /// A NIBBLE_8 / HEX_8 string with a bad code or shape.
    #[error("packed string at offset {offset}: {detail}")]
    InvalidPacked {
        /// Where the packed string starts.
        offset: usize,
        /// What is wrong.
        detail: &'static str,
    },
    /// A JID token with bad parts.
    #[error("JID at offset {offset}: {detail}")]
    InvalidJid {
        /// Where the JID token starts.
        offset: usize,
        /// What is wrong.
        detail: &'static str,
    },
    /// The same attribute twice in one node.
    #[error("node at offset {offset} has attribute {key:?} twice")]
    DuplicateAttribute {
        /// Where the node starts.
        offset: usize,
        /// The key (at most 64 characters of it).
        key: String,
    },
    /// Bytes left after the root node.
    #[error("{count} trailing bytes after the root node at offset {offset}")]
    TrailingBytes {
        /// Where the trailing bytes start.
        offset: usize,
        /// How many there are.
        count: usize,
    },
    /// A compressed frame whose zlib stream is corrupt or truncated.
    #[error("compressed frame does not inflate: {detail}")]
    Inflate {
        /// The zlib error.
        detail: String,
    },
    /// A compressed frame that inflates past [`MAX_INFLATED_SIZE`](super::MAX_INFLATED_SIZE).
    #[error("compressed frame inflates to more than {limit} bytes")]
    InflatedTooLarge {
        /// The limit.
        limit: usize,
    },
}

type Result<T> = std::result::Result<T, DecodeError>;

/// Decodes one node that fills all of `data` (no flags byte).
///
/// Refuses truncated input, unknown tag bytes, lists where strings belong, invalid UTF-8,
/// bad packed strings, bad JIDs, empty tags, nodes with list size 0, duplicate
/// attributes, nesting past [`MAX_DEPTH`](super::MAX_DEPTH), more than
/// [`MAX_ITEMS`](super::MAX_ITEMS) nodes + attributes, and trailing bytes.
pub fn decode_node(data: &[u8]) -> Result<Node> {
    let mut d = Decoder {
        data,
        pos: 0,
        items: 0,
    };
    let node = d.read_node(1)?;
    if d.pos < data.len() {
        return Err(DecodeError::TrailingBytes {
            offset: d.pos,
            count: data.len() - d.pos,
        });
    }
    Ok(node)
}

/// Decodes a frame payload: the flags byte, then the node, zlib-inflated first when
/// `flags & 0x02` is set (other flag bits are ignored, as WhatsApp's clients do).
///
/// Refuses an empty payload, zlib data that is corrupt, truncated, followed by extra
/// bytes or inflates past [`MAX_INFLATED_SIZE`](super::MAX_INFLATED_SIZE), and
/// everything [`decode_node`] refuses.
pub fn unmarshal(frame: &[u8]) -> Result<Node> {
    let (&flags, rest) = frame.split_first().ok_or(DecodeError::EmptyFrame)?;
    if flags & FLAG_COMPRESSED != 0 {
        let plain = inflate(rest, MAX_INFLATED_SIZE)?;
        decode_node(&plain)
    } else {
        decode_node(rest)
    }
}

fn inflate(data: &[u8], limit: usize) -> Result<Vec<u8>> {
    let mut z = flate2::bufread::ZlibDecoder::new(data);
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    (&mut z)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Inflate {
            detail: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(DecodeError::InflatedTooLarge { limit });
    }
    // flate2 reports a stream that ends early as an error, so here the zlib stream is
    // complete; what is left of the input comes after it.
    if !z.get_ref().is_empty() {
        return Err(DecodeError::Inflate {
            detail: format!(
                "{} bytes after the end of the zlib stream",
                z.get_ref().len()
            ),
        });
    }
    Ok(out)
}

/// A string or JID read from the wire.
enum Item<'a> {
    /// A dictionary token: a `'static` string, kept without copying.
    Token(&'static str),
    Text(Cow<'a, str>),
    Jid(Jid),
}

impl<'a> Item<'a> {
    /// As a string (JID parts): a JID becomes its wire text.
    fn into_text(self) -> Cow<'a, str> {
        match self {
            Item::Token(t) => Cow::Borrowed(t),
            Item::Text(t) => t,
            Item::Jid(j) => Cow::Owned(wire_text(&j)),
        }
    }

    /// As an owned-or-static string (tags and keys): tokens are not copied.
    fn into_static_text(self) -> Cow<'static, str> {
        match self {
            Item::Token(t) => Cow::Borrowed(t),
            other => Cow::Owned(other.into_text().into_owned()),
        }
    }
}

struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
    /// Nodes and attributes read so far, against [`MAX_ITEMS`].
    items: usize,
}

impl<'a> Decoder<'a> {
    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let available = self.remaining();
        if n > available {
            return Err(DecodeError::Truncated {
                what,
                offset: self.pos,
                needed: n,
                available,
            });
        }
        let bytes = self.data.get(self.pos..self.pos + n).unwrap_or_default();
        self.pos += n;
        Ok(bytes)
    }

    fn byte(&mut self, what: &'static str) -> Result<u8> {
        let b = self.take(1, what)?;
        Ok(b.first().copied().unwrap_or_default())
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let b = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn count_item(&mut self, offset: usize) -> Result<()> {
        self.items += 1;
        if self.items > MAX_ITEMS {
            return Err(DecodeError::TooManyItems {
                offset,
                max: MAX_ITEMS,
            });
        }
        Ok(())
    }

    /// The length after a BINARY_8/20/32 tag byte.
    fn binary_len(&mut self, tag: u8) -> Result<usize> {
        Ok(match tag {
            BINARY_8 => usize::from(self.byte("BINARY_8 length")?),
            BINARY_20 => {
                let [a, b, c] = self.array("BINARY_20 length")?;
                (usize::from(a & 0x0F) << 16) | (usize::from(b) << 8) | usize::from(c)
            }
            _ => {
                let len = u32::from_be_bytes(self.array("BINARY_32 length")?);
                usize::try_from(len).unwrap_or(usize::MAX)
            }
        })
    }

    fn read_node(&mut self, depth: usize) -> Result<Node> {
        let start = self.pos;
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep {
                offset: start,
                max: MAX_DEPTH,
            });
        }
        self.count_item(start)?;
        let header = self.byte("node list header")?;
        let size = match header {
            LIST_8 => usize::from(self.byte("LIST_8 size")?),
            LIST_16 => usize::from(u16::from_be_bytes(self.array("LIST_16 size")?)),
            LIST_EMPTY => 0,
            byte => {
                return Err(DecodeError::UnexpectedByte {
                    offset: start,
                    byte,
                    expected: "a node (LIST_8 or LIST_16)",
                });
            }
        };
        if size == 0 {
            return Err(DecodeError::EmptyNode { offset: start });
        }
        let tag = self.read_item("node tag")?.into_static_text();
        if tag.is_empty() {
            return Err(DecodeError::EmptyTag { offset: start });
        }
        let attr_count = (size - 1) / 2;
        // Each attribute takes at least two bytes.
        let mut attrs = Attrs::with_capacity(attr_count.min(self.remaining() / 2));
        for _ in 0..attr_count {
            self.count_item(self.pos)?;
            let key = self.read_item("attribute key")?.into_static_text();
            let value = match self.read_item("attribute value")? {
                // A JID token whose text is no real JID (Baileys writes any
                // `x@y` string as JID_PAIR) reads back as the string it was.
                Item::Jid(j) if !is_real_jid(&j) => AttrValue::Str(Cow::Owned(wire_text(&j))),
                Item::Jid(j) => AttrValue::Jid(j),
                Item::Token(t) => AttrValue::from_static(t),
                Item::Text(t) => match real_jid_in_text(&t) {
                    Some(j) => AttrValue::Jid(j),
                    None => AttrValue::Str(Cow::Owned(t.into_owned())),
                },
            };
            attrs.push_unchecked(key, value);
        }
        check_unique_keys(&attrs, start)?;
        let content = if size % 2 == 0 {
            self.read_content(depth)?
        } else {
            NodeContent::None
        };
        Ok(Node {
            tag,
            attrs,
            content,
        })
    }

    fn read_content(&mut self, depth: usize) -> Result<NodeContent> {
        let at = self.pos;
        let tag = self.byte("node content")?;
        let children = match tag {
            LIST_EMPTY => 0,
            LIST_8 => usize::from(self.byte("LIST_8 size")?),
            LIST_16 => usize::from(u16::from_be_bytes(self.array("LIST_16 size")?)),
            BINARY_8 | BINARY_20 | BINARY_32 => {
                let len = self.binary_len(tag)?;
                return Ok(NodeContent::Bytes(self.take(len, "byte content")?.to_vec()));
            }
            _ => {
                let text = self.item_from_tag(tag, at, "string content")?.into_text();
                return Ok(NodeContent::Bytes(text.into_owned().into_bytes()));
            }
        };
        // Each child takes at least three bytes (LIST_8, size, tag).
        let mut nodes = Vec::with_capacity(children.min(self.remaining() / 3));
        for _ in 0..children {
            nodes.push(self.read_node(depth + 1)?);
        }
        Ok(NodeContent::Nodes(nodes))
    }

    fn read_item(&mut self, what: &'static str) -> Result<Item<'a>> {
        let at = self.pos;
        let tag = self.byte(what)?;
        self.item_from_tag(tag, at, what)
    }

    /// A string or JID whose tag byte (at offset `at`) was just read.
    fn item_from_tag(&mut self, tag: u8, at: usize, what: &'static str) -> Result<Item<'a>> {
        match tag {
            LIST_EMPTY => Ok(Item::Token("")),
            DICTIONARY_0..=DICTIONARY_3 => {
                let index = self.byte("double-byte token index")?;
                let s = token::double_byte(tag - DICTIONARY_0, index).unwrap_or_default();
                Ok(Item::Token(s))
            }
            BINARY_8 | BINARY_20 | BINARY_32 => {
                let len = self.binary_len(tag)?;
                let start = self.pos;
                let bytes = self.take(len, "string bytes")?;
                let s = std::str::from_utf8(bytes)
                    .map_err(|_| DecodeError::InvalidUtf8 { offset: start })?;
                Ok(Item::Text(Cow::Borrowed(s)))
            }
            NIBBLE_8 | HEX_8 => Ok(Item::Text(Cow::Owned(self.read_packed(tag, at)?))),
            JID_PAIR => {
                let user = self.read_jid_part(at, "JID user")?;
                let server = self.read_jid_part(at, "JID server")?;
                if server.is_empty() {
                    return Err(invalid_jid(at, "JID_PAIR with an empty server"));
                }
                Ok(Item::Jid(Jid::new(user, server)))
            }
            AD_JID => {
                let [domain, device] = self.array("AD_JID domain and device")?;
                let user = self.read_jid_part(at, "JID user")?;
                Ok(Item::Jid(jid_from_ad(domain, device, user.into_owned())))
            }
            FB_JID => {
                let user = self.read_jid_part(at, "JID user")?;
                let device = u16::from_be_bytes(self.array("FB_JID device")?);
                let server = self.read_jid_part(at, "JID server")?;
                if server != MESSENGER_SERVER {
                    return Err(invalid_jid(at, "FB_JID server is not msgr"));
                }
                Ok(Item::Jid(Jid::new_ad(user, device, MESSENGER_SERVER)))
            }
            INTEROP_JID => {
                let user = self.read_jid_part(at, "JID user")?;
                let device = u16::from_be_bytes(self.array("INTEROP_JID device")?);
                let integrator = u16::from_be_bytes(self.array("INTEROP_JID integrator")?);
                let server = self.read_jid_part(at, "JID server")?;
                if server != INTEROP_SERVER {
                    return Err(invalid_jid(at, "INTEROP_JID server is not interop"));
                }
                Ok(Item::Jid(Jid {
                    integrator,
                    ..Jid::new_ad(user, device, INTEROP_SERVER)
                }))
            }
            LIST_8 | LIST_16 => Err(DecodeError::UnexpectedByte {
                offset: at,
                byte: tag,
                expected: what_string(what),
            }),
            byte => match token::single_byte(byte) {
                Some(s) => Ok(Item::Token(s)),
                None => Err(DecodeError::UnexpectedByte {
                    offset: at,
                    byte,
                    expected: what_string(what),
                }),
            },
        }
    }

    /// A user or server inside a JID token: a string, never a nested JID.
    fn read_jid_part(&mut self, jid_at: usize, what: &'static str) -> Result<Cow<'a, str>> {
        match self.read_item(what)? {
            Item::Token(t) => Ok(Cow::Borrowed(t)),
            Item::Text(t) => Ok(t),
            Item::Jid(_) => Err(invalid_jid(jid_at, "a JID part is itself a JID")),
        }
    }

    /// NIBBLE_8 / HEX_8: a length byte (`0x80` = odd length, low 7 bits = byte count),
    /// then two characters per byte, high nibble first; an odd string's last nibble is
    /// filler and dropped.
    fn read_packed(&mut self, tag: u8, at: usize) -> Result<String> {
        let head = self.byte("packed string length")?;
        let odd = head & 0x80 != 0;
        let count = usize::from(head & 0x7F);
        if odd && count == 0 {
            return Err(DecodeError::InvalidPacked {
                offset: at,
                detail: "odd length flag on an empty string",
            });
        }
        let bytes = self.take(count, "packed string bytes")?;
        let mut s = String::with_capacity(count * 2);
        let last = count.saturating_sub(1);
        for (i, &b) in bytes.iter().enumerate() {
            let hi = unpack(tag, b >> 4, at)?;
            s.push(hi);
            if odd && i == last {
                // The filler: must still be a valid code (as WhatsApp's decoders check);
                // it is not part of the string.
                unpack(tag, b & 0x0F, at)?;
            } else {
                s.push(unpack(tag, b & 0x0F, at)?);
            }
        }
        if s.contains('\0') {
            return Err(DecodeError::InvalidPacked {
                offset: at,
                detail: "filler nibble 0xF inside the string",
            });
        }
        Ok(s)
    }
}

fn unpack(tag: u8, code: u8, at: usize) -> Result<char> {
    let c = if tag == NIBBLE_8 {
        match code {
            0..=9 => char::from(b'0' + code),
            10 => '-',
            11 => '.',
            15 => '\0',
            _ => {
                return Err(DecodeError::InvalidPacked {
                    offset: at,
                    detail: "nibble code 12, 13 or 14",
                });
            }
        }
    } else {
        match code {
            0..=9 => char::from(b'0' + code),
            _ => char::from(b'A' + (code & 0x0F) - 10),
        }
    };
    Ok(c)
}

fn invalid_jid(offset: usize, detail: &'static str) -> DecodeError {
    DecodeError::InvalidJid { offset, detail }
}

fn what_string(what: &'static str) -> &'static str {
    match what {
        "node tag" => "a string for the node tag",
        "attribute key" => "a string for an attribute key",
        "attribute value" => "a string or JID for an attribute value",
        "string content" => "node content (a list, bytes or a string)",
        _ => "a string",
    }
}

/// Attribute keys must be unique (a duplicate could make two readers of the same stanza
/// disagree about its value).
fn check_unique_keys(attrs: &Attrs, node_at: usize) -> Result<()> {
    let duplicate = if attrs.len() <= 16 {
        let keys: Vec<&str> = attrs.iter().map(|(k, _)| k).collect();
        keys.iter()
            .enumerate()
            .find(|&(i, k)| keys.iter().skip(i + 1).any(|other| other == k))
            .map(|(_, k)| *k)
    } else {
        let mut keys: Vec<&str> = attrs.iter().map(|(k, _)| k).collect();
        keys.sort_unstable();
        keys.windows(2)
            .find(|w| w.first() == w.get(1))
            .and_then(|w| w.first().copied())
    };
    match duplicate {
        Some(key) => Err(DecodeError::DuplicateAttribute {
            offset: node_at,
            key: key.chars().take(64).collect(),
        }),
        None => Ok(()),
    }
}
