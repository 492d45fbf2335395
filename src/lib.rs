//! # waevent
//!
//! A WhatsApp multi-device transport that sends **event cards** and **RSVPs** straight to
//! group JIDs and tallies the RSVPs that come back. It speaks the protocol itself: Noise
//! over a websocket, WhatsApp's binary XML nodes, the Signal protocol and WhatsApp's
//! protobuf messages.
//!
//! The core ([`binary`], [`jid`], [`noise`], [`signal`], [`event`]) is sans-IO: no
//! sockets, no async runtime.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod binary;
pub mod client;
pub mod event;
pub mod jid;
/// Sans-IO message stanzas: framing, phash, message ids and the group/1:1 send fan-out.
pub mod messaging;
pub mod noise;
pub mod proto;
pub mod signal;
pub mod store;
pub mod wire;

#[cfg(feature = "sim")]
pub mod sim;

#[cfg(feature = "gateway")]
pub mod gateway;

#[doc(hidden)]
pub mod fuzz_targets;
