//! Helpers shared by the record (de)serializers: version checks and typed field readers
//! that turn missing or mis-sized fields into [`RecordError`]s.

use super::RecordError;
use super::curve::{KEY_LEN, KeyPair, PrivateKey, PublicKey};

/// The record layout version this build writes and reads (`version = 15` in every
/// top-level message of `proto/records.proto`).
pub const RECORD_VERSION: u32 = 1;

/// Decodes a top-level record and checks its version.
pub(crate) fn decode<T: prost::Message + Default>(
    record: &'static str,
    bytes: &[u8],
    version: impl Fn(&T) -> Option<u32>,
) -> Result<T, RecordError> {
    let msg = T::decode(bytes).map_err(|e| RecordError::Decode {
        record,
        detail: e.to_string(),
    })?;
    let found = version(&msg);
    if found != Some(RECORD_VERSION) {
        return Err(RecordError::UnknownVersion {
            record,
            found,
            expected: RECORD_VERSION,
        });
    }
    Ok(msg)
}

pub(crate) fn invalid(record: &'static str, detail: &'static str) -> RecordError {
    RecordError::Invalid { record, detail }
}

/// A required 33-byte `0x05`-prefixed public key.
pub(crate) fn public_key(
    record: &'static str,
    field: Option<&Vec<u8>>,
    detail: &'static str,
) -> Result<PublicKey, RecordError> {
    field
        .and_then(|b| PublicKey::deserialize(b).ok())
        .ok_or(invalid(record, detail))
}

/// A required 32-byte private key.
pub(crate) fn private_key(
    record: &'static str,
    field: Option<&Vec<u8>>,
    detail: &'static str,
) -> Result<PrivateKey, RecordError> {
    field
        .filter(|b| b.len() == KEY_LEN)
        .and_then(|b| PrivateKey::from_bytes(b).ok())
        .ok_or(invalid(record, detail))
}

/// A required fixed-size byte string.
pub(crate) fn fixed<const N: usize>(
    record: &'static str,
    field: Option<&Vec<u8>>,
    detail: &'static str,
) -> Result<[u8; N], RecordError> {
    field
        .and_then(|b| <[u8; N]>::try_from(b.as_slice()).ok())
        .ok_or(invalid(record, detail))
}

/// A required key pair from a record's public and private fields. Always wipes the
/// private field, also when it refuses a bad public key, a bad private key or a public
/// key that does not belong to the private key.
pub(crate) fn take_key_pair(
    record: &'static str,
    public: Option<&Vec<u8>>,
    private: &mut Option<Vec<u8>>,
) -> Result<KeyPair, RecordError> {
    let public = public_key(record, public, "bad public key");
    let parsed = private_key(record, private.as_ref(), "bad private key");
    zeroize::Zeroize::zeroize(private);
    let (public, private) = (public?, parsed?);
    let key_pair = KeyPair::from_private(private);
    if key_pair.public != public {
        return Err(invalid(record, "public key does not match the private key"));
    }
    Ok(key_pair)
}

/// Encodes a record holding a private key and wipes the key field of the message
/// afterwards (the returned bytes are the record and hold the key by design).
pub(crate) fn encode_wiping<M: prost::Message>(
    mut msg: M,
    private: impl FnOnce(&mut M) -> &mut Option<Vec<u8>>,
) -> Vec<u8> {
    let out = msg.encode_to_vec();
    zeroize::Zeroize::zeroize(private(&mut msg));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_key_pair_wipes_the_private_field_on_every_path() {
        let good = KeyPair::from_private(PrivateKey::from_bytes(&[7; 32]).unwrap());
        let other = KeyPair::from_private(PrivateKey::from_bytes(&[9; 32]).unwrap());
        let cases: [(Option<Vec<u8>>, bool); 3] = [
            (Some(good.public.serialize().to_vec()), true),
            (Some(other.public.serialize().to_vec()), false),
            (None, false),
        ];
        for (public, ok) in cases {
            let mut private = Some(good.private.to_bytes().to_vec());
            let result = take_key_pair("test", public.as_ref(), &mut private);
            assert_eq!(result.is_ok(), ok);
            assert!(private.is_none(), "private field wiped");
        }
        let mut short = Some(vec![1u8; 31]);
        assert!(take_key_pair("test", None, &mut short).is_err());
        assert!(short.is_none());
    }
}
