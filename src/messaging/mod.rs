//! Sans-IO message stanzas: what goes into a `<message>` for a group or a 1:1 chat.
//!
//! * [`framing`](crate::messaging::framing): the stanza `type`, `<meta>`, `edit` and `decrypt-fail` derived from the
//!   content of a `Message` (event cards, RSVPs, event edits).
//! * [`phash`](crate::messaging::phash): the participant-list hash (`phash="2:…"`).
//! * [`message_id`](crate::messaging::message_id): WhatsApp-style message ids (`3EB0…`).
//! * [`fanout`](crate::messaging::fanout): preparing a send — pads and encrypts the content, distributes our
//!   sender key pairwise to the devices that lack it, and builds the `<message>` node and
//!   the Signal state batch to commit before the bytes leave. Also the 1:1 variant and
//!   the retry resend to a single device.
//!
//! Nothing here touches sockets, tokio or a store: the caller loads records, hands them
//! in, commits the returned [`crate::signal::store::SignalStateBatch`] and writes the
//! node. Everything is deterministic given the random number generator passed in.

pub mod fanout;
pub mod framing;
#[doc(hidden)]
pub mod fuzz_support;
pub mod message_id;
pub mod phash;

pub use fanout::{
    DirectSend, FanoutCounts, FanoutError, GroupFanout, GroupSend, PairwiseTarget, PreparedSend,
    RetryResend, estimated_fanout_micros, prepare_direct_send, prepare_group_send,
    prepare_retry_resend,
};
pub use framing::{EventMetaType, Framing, StanzaType};
pub use message_id::generate_message_id;
pub use phash::participant_hash;
