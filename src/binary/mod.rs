//! WhatsApp's binary XML node codec (token dictionary version 3).
//!
//! Every stanza on the wire (`iq`, `message`, `receipt`, `notification`, …) is a [`Node`]:
//! a tag, ordered attributes and content that is nothing, bytes or child nodes. The
//! format writes each node as a list `[tag, key1, value1, …, content?]`; strings are
//! written as one-byte or two-byte dictionary tokens ([`token`]), packed digit/hex
//! strings, JID tokens or raw bytes.
//!
//! * [`marshal`] / [`unmarshal`] work on frame payloads (flags byte + node, the
//!   plaintext of a Noise transport frame); [`encode_node`] / [`decode_node`] on the
//!   bare node.
//! * The encoder makes exactly the choices WhatsApp Web's encoder (Baileys 7) makes, so
//!   the bytes are identical; `tests/interop_binary.rs` checks this in both directions on
//!   a thousand random nodes.
//! * The decoder treats its input as hostile: it never panics, checks lengths before
//!   allocating, bounds nesting ([`MAX_DEPTH`]), the number of nodes and attributes
//!   ([`MAX_ITEMS`]) and inflated size ([`MAX_INFLATED_SIZE`]), and refuses trailing
//!   bytes.
//! * [`json`] converts nodes to and from the JSON the `waevent wire node-*` tools use.
//!
//! Sans-IO: nothing here touches sockets or an async runtime.

mod decode;
mod encode;
pub mod json;
mod node;
pub mod token;
mod wire_jid;

pub use decode::{DecodeError, decode_node, unmarshal};
pub use encode::{EncodeError, encode_node, encode_node_into, marshal, marshal_compressed};
pub use node::{AttrValue, Attrs, Node, NodeContent};
pub use wire_jid::{jid_in_text, wire_text};

/// Flag bit in a frame payload's first byte: the rest is zlib-compressed.
pub const FLAG_COMPRESSED: u8 = 0x02;

/// Deepest nesting of nodes the codec accepts (the root is level 1). Real stanzas nest
/// four or five levels.
pub const MAX_DEPTH: usize = 64;

/// Most nodes plus attributes the decoder builds from one stanza (128 Ki). Bounds the
/// memory a hostile frame — even a 16 KiB zlib bomb inflating to 16 MiB — can make the
/// decoder allocate (each item costs ~100 bytes, so ~13 MB at most); a group message to
/// 3,000 devices has about 15,000.
pub const MAX_ITEMS: usize = 1 << 17;

/// Largest inflated size of a compressed frame payload (the frame layer's own limit is
/// 16 MiB too).
pub const MAX_INFLATED_SIZE: usize = 16 << 20;

#[cfg(test)]
mod tests;
