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
#[doc(hidden)]
pub mod fuzz;
pub mod group;
pub mod identity;
pub mod message;
pub mod padding;
pub mod ratchet;
mod records;
pub mod session;
mod session_wire;
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

#[cfg(test)]
mod tests {
    use super::ratchet::{ChainKey, MessageKeys, RootKey, SenderChainKey, SenderMessageKey};
    use super::*;
    use zeroize::ZeroizeOnDrop;

    fn zeroized_on_drop<T: ZeroizeOnDrop>() {}

    #[test]
    fn every_private_and_chain_key_type_zeroizes_on_drop() {
        // Compile-time proof: these types implement ZeroizeOnDrop. Everything holding
        // key material (KeyPair, SessionState, SenderKeyState, records) holds it in
        // these types, so dropping the holder wipes it.
        zeroized_on_drop::<PrivateKey>();
        zeroized_on_drop::<RootKey>();
        zeroized_on_drop::<ChainKey>();
        zeroized_on_drop::<MessageKeys>();
        zeroized_on_drop::<SenderChainKey>();
        zeroized_on_drop::<SenderMessageKey>();
    }

    #[test]
    fn debug_output_is_redacted_everywhere() {
        use rand::SeedableRng;
        let rng = &mut rand::rngs::StdRng::seed_from_u64(5);
        let mut own = SenderKeyRecord::new();
        let (skdm, _) = group::create_distribution_message(&mut own, rng).unwrap();
        let private = KeyPair::generate(rng).private;
        let secret_hex = hex::encode(private.to_bytes());
        let mut batch = store::SignalStateBatch::new();
        let group_jid: crate::jid::Jid = "123-456@g.us".parse().unwrap();
        let sender: crate::jid::Jid = "15550001111@s.whatsapp.net".parse().unwrap();
        batch.put_sender_key(SenderKeyName::new(&group_jid, &sender), &own);
        // How a derived Debug of the record bytes would start (a list of decimal bytes).
        let record_debug = format!("{:?}", own.serialize());
        let record_prefix = &record_debug[..record_debug.len().min(40)];
        let chain_hex = hex::encode(skdm.chain_key());
        for text in [
            format!("{private:?}"),
            format!("{:?}", KeyPair::from_private(private.clone())),
            format!("{skdm:?}"),
            format!("{own:?}"),
            format!("{:?}", group::OwnSigningKey::new(private.clone())),
            format!("{batch:?}"),
        ] {
            assert!(text.contains("redacted"), "{text}");
            assert!(!text.contains(&secret_hex), "{text}");
            assert!(!text.contains(&chain_hex), "{text}");
            assert!(!text.contains(record_prefix), "{text}");
        }
    }
}
