//! Helpers shared by the record (de)serializers: version checks and typed field readers
//! that turn missing or mis-sized fields into [`RecordError`]s.

use super::RecordError;
use super::curve::{KEY_LEN, PrivateKey, PublicKey};

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
