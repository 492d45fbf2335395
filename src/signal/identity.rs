//! Long-term key material: our identity and registration id, signed prekeys, one-time
//! prekeys, and the [`PreKeyBundle`] a peer fetches to start a session with us.
//!
//! Prekey ids are 24-bit (they travel as 3 big-endian bytes in `<key><id>`); the
//! signed-prekey signature is XEdDSA(identity private key, `0x05 ‖ signedPreKeyPublic`).

use rand_core::{CryptoRng, RngCore};

use super::curve::{KeyPair, PublicKey, SIGNATURE_LEN};
use super::records::{self, RECORD_VERSION};
use super::{RecordError, SignalError};
use crate::proto::records as pb;

/// Largest prekey id (ids are 24-bit on the wire).
pub const MAX_PREKEY_ID: u32 = 0x00FF_FFFF;
/// Largest registration id generated (libsignal draws from 1..=16380).
pub const MAX_REGISTRATION_ID: u32 = 16380;

/// A random registration id in `1..=16380`, as libsignal's `KeyHelper` draws it.
pub fn generate_registration_id<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> u32 {
    // Rejection sampling keeps the distribution uniform.
    loop {
        let v = rng.next_u32() & 0x3FFF;
        if (1..=MAX_REGISTRATION_ID).contains(&v) {
            return v;
        }
    }
}

/// Our own identity: the identity key pair and the registration id.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LocalIdentity {
    /// The identity key pair (private half zeroized on drop, redacted in `Debug`).
    pub key_pair: KeyPair,
    /// The registration id sent in `<registration>` and in PreKeySignalMessages.
    pub registration_id: u32,
}

impl LocalIdentity {
    /// A fresh identity key pair with a fresh registration id.
    pub fn generate<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        LocalIdentity {
            key_pair: KeyPair::generate(rng),
            registration_id: generate_registration_id(rng),
        }
    }

    /// The public identity key.
    pub fn public_key(&self) -> &PublicKey {
        &self.key_pair.public
    }

    /// Serializes as a versioned `LocalIdentityStructure`.
    pub fn serialize(&self) -> Vec<u8> {
        let msg = pb::LocalIdentityStructure {
            public_key: Some(self.key_pair.public.serialize().to_vec()),
            private_key: Some(self.key_pair.private.to_bytes().to_vec()),
            registration_id: Some(self.registration_id),
            version: Some(RECORD_VERSION),
        };
        records::encode_wiping(msg, |m| &mut m.private_key)
    }

    /// Parses a `LocalIdentityStructure`. Refuses garbage, unknown versions, keys of the
    /// wrong size, a public key that does not belong to the private key and a missing
    /// registration id.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, RecordError> {
        const R: &str = "local identity";
        let mut msg = records::decode::<pb::LocalIdentityStructure>(R, bytes, |m| m.version)?;
        let key_pair = records::take_key_pair(R, msg.public_key.as_ref(), &mut msg.private_key)?;
        Ok(LocalIdentity {
            key_pair,
            registration_id: msg
                .registration_id
                .ok_or(records::invalid(R, "missing registration id"))?,
        })
    }
}

/// A one-time prekey with its private half.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PreKeyRecord {
    /// The 24-bit prekey id.
    pub id: u32,
    /// The key pair.
    pub key_pair: KeyPair,
}

/// The prekey id `n` steps after `first`, wrapping from [`MAX_PREKEY_ID`] to 1.
pub fn prekey_id_after(first: u32, n: u32) -> u32 {
    let first = first.clamp(1, MAX_PREKEY_ID);
    ((u64::from(first) - 1 + u64::from(n)) % u64::from(MAX_PREKEY_ID)) as u32 + 1
}

/// Generates `count` one-time prekeys with ids `first_id, first_id + 1, …`, wrapping
/// from [`MAX_PREKEY_ID`] back to 1 (0 is never used). `first_id` outside
/// `1..=MAX_PREKEY_ID` is clamped into it.
pub fn generate_prekeys<R: RngCore + CryptoRng + ?Sized>(
    first_id: u32,
    count: u32,
    rng: &mut R,
) -> Vec<PreKeyRecord> {
    (0..count)
        .map(|i| PreKeyRecord {
            id: prekey_id_after(first_id, i),
            key_pair: KeyPair::generate(rng),
        })
        .collect()
}

impl PreKeyRecord {
    /// Serializes as a versioned `PreKeyRecordStructure`.
    pub fn serialize(&self) -> Vec<u8> {
        let msg = pb::PreKeyRecordStructure {
            id: Some(self.id),
            public_key: Some(self.key_pair.public.serialize().to_vec()),
            private_key: Some(self.key_pair.private.to_bytes().to_vec()),
            version: Some(RECORD_VERSION),
        };
        records::encode_wiping(msg, |m| &mut m.private_key)
    }

    /// Parses a `PreKeyRecordStructure`; refuses garbage, unknown versions, bad keys.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, RecordError> {
        const R: &str = "prekey";
        let mut msg = records::decode::<pb::PreKeyRecordStructure>(R, bytes, |m| m.version)?;
        let key_pair = records::take_key_pair(R, msg.public_key.as_ref(), &mut msg.private_key)?;
        Ok(PreKeyRecord {
            id: msg.id.ok_or(records::invalid(R, "missing id"))?,
            key_pair,
        })
    }
}

/// A signed prekey with its private half and the identity key's signature over it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SignedPreKeyRecord {
    /// The 24-bit signed prekey id.
    pub id: u32,
    /// The key pair.
    pub key_pair: KeyPair,
    /// XEdDSA(identity private key, `0x05 ‖ public`).
    pub signature: [u8; SIGNATURE_LEN],
    /// Creation time in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

impl SignedPreKeyRecord {
    /// Generates a signed prekey and signs it with `identity`.
    pub fn generate<R: RngCore + CryptoRng + ?Sized>(
        identity: &KeyPair,
        id: u32,
        timestamp_ms: u64,
        rng: &mut R,
    ) -> Self {
        let key_pair = KeyPair::generate(rng);
        let signature = identity.private.sign(rng, &key_pair.public.serialize());
        SignedPreKeyRecord {
            id,
            key_pair,
            signature,
            timestamp_ms,
        }
    }

    /// True when the signature verifies against `identity`.
    pub fn verify(&self, identity: &PublicKey) -> bool {
        identity.verify(&self.key_pair.public.serialize(), &self.signature)
    }

    /// Serializes as a versioned `SignedPreKeyRecordStructure`.
    pub fn serialize(&self) -> Vec<u8> {
        let msg = pb::SignedPreKeyRecordStructure {
            id: Some(self.id),
            public_key: Some(self.key_pair.public.serialize().to_vec()),
            private_key: Some(self.key_pair.private.to_bytes().to_vec()),
            signature: Some(self.signature.to_vec()),
            timestamp: Some(self.timestamp_ms),
            version: Some(RECORD_VERSION),
        };
        records::encode_wiping(msg, |m| &mut m.private_key)
    }

    /// Parses a `SignedPreKeyRecordStructure`; refuses garbage, unknown versions, bad
    /// keys and signatures that are not 64 bytes.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, RecordError> {
        const R: &str = "signed prekey";
        let mut msg = records::decode::<pb::SignedPreKeyRecordStructure>(R, bytes, |m| m.version)?;
        let key_pair = records::take_key_pair(R, msg.public_key.as_ref(), &mut msg.private_key)?;
        Ok(SignedPreKeyRecord {
            id: msg.id.ok_or(records::invalid(R, "missing id"))?,
            key_pair,
            signature: records::fixed::<SIGNATURE_LEN>(R, msg.signature.as_ref(), "bad signature")?,
            timestamp_ms: msg.timestamp.unwrap_or(0),
        })
    }
}

/// What a peer publishes so that others can start a session with one of its devices
/// (the `<user>` element of an `encrypt` key-fetch result).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PreKeyBundle {
    /// The device's registration id.
    pub registration_id: u32,
    /// The device number.
    pub device_id: u32,
    /// The one-time prekey (id, public key), absent when the server's pool was empty.
    pub prekey: Option<(u32, PublicKey)>,
    /// The signed prekey id.
    pub signed_prekey_id: u32,
    /// The signed prekey.
    pub signed_prekey: PublicKey,
    /// XEdDSA signature of the identity key over `0x05 ‖ signed_prekey`.
    pub signed_prekey_signature: [u8; SIGNATURE_LEN],
    /// The device's identity key.
    pub identity_key: PublicKey,
}

impl PreKeyBundle {
    /// Our own bundle for `device_id`, as the server would hand it out.
    pub fn from_local(
        identity: &LocalIdentity,
        device_id: u32,
        signed: &SignedPreKeyRecord,
        prekey: Option<&PreKeyRecord>,
    ) -> Self {
        PreKeyBundle {
            registration_id: identity.registration_id,
            device_id,
            prekey: prekey.map(|p| (p.id, p.key_pair.public)),
            signed_prekey_id: signed.id,
            signed_prekey: signed.key_pair.public,
            signed_prekey_signature: signed.signature,
            identity_key: identity.key_pair.public,
        }
    }

    /// Checks the signed-prekey signature; refuses the bundle with
    /// [`SignalError::InvalidSignedPreKeySignature`] when it does not verify.
    pub fn verify(&self) -> Result<(), SignalError> {
        if self.identity_key.verify(
            &self.signed_prekey.serialize(),
            &self.signed_prekey_signature,
        ) {
            Ok(())
        } else {
            Err(SignalError::InvalidSignedPreKeySignature {
                signed_prekey_id: self.signed_prekey_id,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use rand::rngs::OsRng;

    #[test]
    fn registration_ids_in_range() {
        for _ in 0..1000 {
            let id = generate_registration_id(&mut OsRng);
            assert!((1..=MAX_REGISTRATION_ID).contains(&id));
        }
    }

    #[test]
    fn prekey_ids_wrap_at_24_bits() {
        let keys = generate_prekeys(MAX_PREKEY_ID - 1, 4, &mut OsRng);
        let ids: Vec<u32> = keys.iter().map(|k| k.id).collect();
        assert_eq!(ids, vec![MAX_PREKEY_ID - 1, MAX_PREKEY_ID, 1, 2]);
        assert_eq!(prekey_id_after(0, 0), 1);
        assert_eq!(prekey_id_after(u32::MAX, 1), 1);
    }

    #[test]
    fn signed_prekey_signature_is_over_the_33_byte_key() {
        let identity = LocalIdentity::generate(&mut OsRng);
        let spk = SignedPreKeyRecord::generate(&identity.key_pair, 7, 1234, &mut OsRng);
        assert!(spk.verify(identity.public_key()));
        assert!(
            identity
                .public_key()
                .verify(&spk.key_pair.public.serialize(), &spk.signature)
        );
        assert!(
            !identity
                .public_key()
                .verify(spk.key_pair.public.as_bytes(), &spk.signature)
        );
        let mut bundle = PreKeyBundle::from_local(&identity, 1, &spk, None);
        bundle.verify().unwrap();
        bundle.signed_prekey_signature[5] ^= 1;
        assert_eq!(
            bundle.verify(),
            Err(SignalError::InvalidSignedPreKeySignature {
                signed_prekey_id: 7
            })
        );
    }

    #[test]
    fn records_round_trip_and_refuse_garbage() {
        let identity = LocalIdentity::generate(&mut OsRng);
        assert_eq!(
            LocalIdentity::deserialize(&identity.serialize()).unwrap(),
            identity
        );
        let spk = SignedPreKeyRecord::generate(&identity.key_pair, 3, 99, &mut OsRng);
        assert_eq!(
            SignedPreKeyRecord::deserialize(&spk.serialize()).unwrap(),
            spk
        );
        let pk = generate_prekeys(10, 1, &mut OsRng).remove(0);
        assert_eq!(PreKeyRecord::deserialize(&pk.serialize()).unwrap(), pk);

        assert!(matches!(
            PreKeyRecord::deserialize(&[0xFF, 0xFF]),
            Err(RecordError::Decode { .. })
        ));
        // A record without the version field.
        let unversioned = pb::PreKeyRecordStructure {
            id: Some(1),
            ..Default::default()
        }
        .encode_to_vec();
        assert!(matches!(
            PreKeyRecord::deserialize(&unversioned),
            Err(RecordError::UnknownVersion { found: None, .. })
        ));
        let future = pb::PreKeyRecordStructure {
            version: Some(RECORD_VERSION + 1),
            ..Default::default()
        }
        .encode_to_vec();
        assert!(matches!(
            PreKeyRecord::deserialize(&future),
            Err(RecordError::UnknownVersion { found: Some(2), .. })
        ));
        // Mismatched key halves are refused.
        let mut msg = pb::PreKeyRecordStructure::decode(pk.serialize().as_slice()).unwrap();
        msg.public_key = Some(KeyPair::generate(&mut OsRng).public.serialize().to_vec());
        assert!(matches!(
            PreKeyRecord::deserialize(&msg.encode_to_vec()),
            Err(RecordError::Invalid { .. })
        ));
    }

    #[test]
    fn local_identity_without_registration_id_is_refused() {
        let identity = LocalIdentity::generate(&mut OsRng);
        let mut msg = pb::LocalIdentityStructure::decode(identity.serialize().as_slice()).unwrap();
        msg.registration_id = None;
        assert_eq!(
            LocalIdentity::deserialize(&msg.encode_to_vec()).unwrap_err(),
            RecordError::Invalid {
                record: "local identity",
                detail: "missing registration id"
            }
        );
    }

    #[test]
    fn debug_never_shows_private_keys() {
        let identity = LocalIdentity::generate(&mut OsRng);
        let spk = SignedPreKeyRecord::generate(&identity.key_pair, 3, 99, &mut OsRng);
        let pk = generate_prekeys(1, 1, &mut OsRng).remove(0);
        for (text, private) in [
            (
                format!("{identity:?}"),
                identity.key_pair.private.to_bytes(),
            ),
            (format!("{spk:?}"), spk.key_pair.private.to_bytes()),
            (format!("{pk:?}"), pk.key_pair.private.to_bytes()),
        ] {
            assert!(text.contains("redacted"), "{text}");
            assert!(!text.contains(&hex::encode(*private)), "{text}");
            assert!(!text.contains(&format!("{:?}", *private)), "{text}");
        }
    }
}
