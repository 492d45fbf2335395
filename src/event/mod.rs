//! Event cards, RSVPs and the message-secret cryptography that protects them.
//!
//! * [`EventCard`] — a validated event (name, times, location, call link, flags);
//!   built with [`EventCard::builder`] or from the gateway's JSON
//!   ([`EventCard::from_json`], [`EventCardRequest`]); turned into the E2E `Message`
//!   with a fresh [`MessageSecret`] by [`EventCard::to_message`]; read back with
//!   [`EventCard::from_message`].
//! * [`Rsvp`] — going / not going / maybe (or no answer), extra guests, time;
//!   encrypted with [`rsvp_message`] / [`encrypt_rsvp`], decrypted with
//!   [`decrypt_rsvp`].
//! * Edits and cancellations — [`edit_message`], [`decrypt_event_edit`].
//! * The shared key derivation and AES-GCM sealing — [`secret`].
//!
//! Everything here is pure computation: no I/O, no clock (callers pass times and a
//! random number generator).

mod api;
mod card;
mod edit;
mod key;
mod request;
mod rsvp;
pub mod secret;

pub use api::{IncomingEvent, SendOptions};
pub use card::{
    CALL_LINK_HOST, CallType, EventCard, EventCardBuilder, EventCardError, EventLocation,
    MAX_EVENT_TIME, MAX_JOIN_LINK_LEN, format_unix, unwrap_message,
};
pub use edit::{decrypt_event_edit, edit_message, open_event_edit};
pub use key::{Decrypted, EventRef, creator_from_key};
pub use request::{EventCardRequest, LocationRequest, MAX_EVENT_JSON_LEN};
pub use rsvp::{Rsvp, RsvpError, RsvpResponse, decrypt_rsvp, encrypt_rsvp, rsvp_message};
pub use secret::{MessageSecret, Parties, SecretError, UseCase, sender_for};
