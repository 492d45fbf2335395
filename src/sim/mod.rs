//! The local WhatsApp-like server used by the end-to-end tests, the demo and the gateway
//! tests (cargo feature `sim`). It is a test double for the network built from the same
//! codecs as the client; server-only logic lives here, never in the client path.
//!
//! ```text
//! SimServer::start ─ TCP 127.0.0.1 ─ websocket /ws/chat (Origin required)
//!   └─ per connection: ServerFrameReader (ED pre-intro, WA 06 03) → Noise responder
//!      (handshake.rs, chain from certs.rs) → ClientPayload → frame cipher ⇄ World
//! World (sans-IO): accounts · devices · prekey pools · connections → queued effects
//!   session.rs  registration → pair-device refs │ login → success / failure 401
//!               IQ dispatch (unknown → 501), acks, stream errors, replaced conflicts
//!   pairing.rs  QR scan / pair code → pair-success → pair-device-sign check → 515
//!   prekeys.rs  encrypt IQs: upload, rotate, count, fetch (pops one OPK), digest
//!   groups.rs   groups, w:g2 group info, phash, add/remove + w:gp2 notifications
//!   usync.rs    device lists (key-index, key-index-list, lid)
//!   routing.rs  group / 1:1 fan-out, acks, receipts, resends, offline queue, link_create
//!   phones.rs   simulated member devices: Signal state, decrypt, views, RSVPs, retries
//! SimPhone: the primary phone of an account (adv.rs, pair_code.rs do its crypto)
//! ```
//!
//! - [`certs`]: mints the simulator's own root → intermediate → leaf certificate chain
//!   (and deliberately broken chains for tests).
//! - [`handshake`]: the Noise XX responder (strips the optional `ED` pre-intro and the
//!   `WA` header, proves the server static key, serves the chain, decodes the
//!   `ClientPayload`).
//! - [`world`], [`session`], [`pairing`], [`prekeys`], [`groups`], [`usync`],
//!   [`routing`]: the server's state and behaviour, sans-IO; [`server`] runs them on
//!   tokio.
//! - [`phones`]: the group members the simulator plays (their own Signal state).
//! - [`adv`], [`pair_code`], [`qr`]: what the simulated primary phone computes.
//!
//! A typical test: `let sim = SimServer::start(SimConfig::default()).await?;
//! let phone = sim.create_account("15550001234");` then connect a client to
//! [`SimServer::url`] trusting [`SimServer::trust_root`], and pair it with
//! [`SimPhone::scan_qr`] (the QR string the client rendered) or
//! [`SimPhone::enter_pairing_code`].

pub mod adv;
pub mod certs;
pub mod config;
mod error;
#[doc(hidden)]
pub mod fuzz_support;
pub mod groups;
pub mod handshake;
pub mod pair_code;
pub mod pairing;
pub mod phones;
pub mod prekeys;
pub mod qr;
pub mod routing;
pub mod server;
pub mod session;
pub mod stanza;
pub mod usync;
pub mod world;

pub use config::{QrSchedule, SimConfig};
pub use error::SimError;
pub use groups::{DeviceView, GroupAddressing, GroupSpec};
pub use server::{SimPhone, SimServer};
pub use world::{DeviceRegistration, SignedPreKeyPublic, SimDeviceInfo};
