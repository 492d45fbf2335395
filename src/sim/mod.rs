//! The local WhatsApp-like server used by the end-to-end tests, the demo and the gateway
//! tests (cargo feature `sim`). It is a test double for the network built from the same
//! codecs as the client; server-only logic lives here, never in the client path.
//!
//! - [`certs`]: mints the simulator's own root → intermediate → leaf certificate chain
//!   (and deliberately broken chains for tests).
//! - [`handshake`]: the Noise XX responder (strips the optional `ED` pre-intro and the
//!   `WA` header, proves the server static key, serves the chain, decodes the
//!   `ClientPayload`).

pub mod certs;
pub mod handshake;
