//! The Signal protocol as WhatsApp deploys it: Curve25519/XEdDSA keys, X3DH, the Double
//! Ratchet, sender keys and the store traits. Sans-IO: nothing here touches sockets or
//! an async runtime; the store traits are async so that a database can sit behind them.
//!
//! How the pieces fit (one send to a group, as the client does it):
//! 1. load every involved record from the [`store`] (`load_sessions`, `load_sender_key`);
//! 2. pairwise: [`initialize_from_bundle`] for devices without a session, [`encrypt`] the
//!    padded SKDM for each device; group: [`group::encrypt`] the padded message once;
//! 3. put every changed record into one [`store::SignalStateBatch`] and `commit` it
//!    before the stanza leaves.
//!
//! Receiving is the mirror image with [`decrypt_prekey`], [`decrypt_whisper`],
//! [`group::process_distribution_message`] and [`group::decrypt`]. Every decrypt
//! function leaves its record untouched when it fails.
//!
//! Plaintexts are encrypted as given: WhatsApp pads them first ([`padding`]).

pub mod address;
pub mod cipher;
mod crypto;
pub mod curve;
mod error;
pub mod group;
pub mod identity;
pub mod message;
pub mod padding;
pub mod ratchet;
mod records;
pub mod session;
pub mod store;

pub use address::{ProtocolAddress, SenderKeyName};
pub use cipher::{PreKeyDecryption, PreKeys, decrypt_prekey, decrypt_whisper, encrypt};
pub use curve::{KeyPair, PrivateKey, PublicKey};
pub use error::{RecordError, SignalError};
pub use group::SenderKeyRecord;
pub use identity::{
    LocalIdentity, PreKeyBundle, PreKeyRecord, SignedPreKeyRecord, generate_prekeys,
    generate_registration_id,
};
pub use message::{
    CiphertextMessage, PreKeySignalMessage, SenderKeyDistributionMessage, SenderKeyMessage,
    SignalMessage,
};
pub use records::RECORD_VERSION;
pub use session::{PreKeyIds, SessionRecord, SessionState, initialize_from_bundle};
