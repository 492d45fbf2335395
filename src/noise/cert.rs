//! Verification of the certificate chain a server sends in its Noise ServerHello:
//! trusted root → intermediate → leaf, where the leaf's key must be the server's static
//! Noise key. There is deliberately no way to skip it; to talk to another server (the
//! simulator) configure that server's root with [`TrustRoot::new`].
//!
//! Checks, in order (the same as whatsmeow's `verifyServerCert`):
//! 1. both certificates present with 64-byte signatures;
//! 2. the intermediate's signature verifies with the root key (XEdDSA over its raw
//!    `details` bytes);
//! 3. the intermediate's `issuerSerial` is 0 and its key is 32 bytes;
//! 4. the leaf's signature verifies with the intermediate's key;
//! 5. `notBefore ≤ now ≤ notAfter` for the intermediate;
//! 6. the leaf's `issuerSerial` equals the intermediate's `serial`;
//! 7. the leaf's key equals the server static key from the handshake;
//! 8. `notBefore ≤ now ≤ notAfter` for the leaf.

use prost::Message;
use subtle::ConstantTimeEq;

use crate::proto::cert::CertChain;
use crate::proto::cert::cert_chain::{NoiseCertificate, noise_certificate::Details};
use crate::signal::curve::{PublicKey, SIGNATURE_LEN};

/// The `issuerSerial` an intermediate certificate signed by the root must carry.
pub const ROOT_ISSUER_SERIAL: u32 = 0;

/// WhatsApp's certificate root public key (Curve25519).
pub const WHATSAPP_ROOT_KEY: [u8; 32] = [
    0x14, 0x23, 0x75, 0x57, 0x4d, 0x0a, 0x58, 0x71, 0x66, 0xaa, 0xe7, 0x1e, 0xbe, 0x51, 0x64, 0x37,
    0xc4, 0xa2, 0x8b, 0x73, 0xe3, 0x69, 0x5c, 0x6c, 0xe1, 0xf7, 0xf9, 0x54, 0x5d, 0xa8, 0xee, 0x6b,
];

/// The root public key server certificate chains must lead to. `Default` is WhatsApp's.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrustRoot(PublicKey);

impl Default for TrustRoot {
    fn default() -> Self {
        TrustRoot::WHATSAPP
    }
}

impl std::fmt::Debug for TrustRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrustRoot({})", hex::encode(self.0.0))
    }
}

impl std::fmt::Display for TrustRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0.0))
    }
}

/// Why a trust root string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid trust root: expected 64 hex characters (a 32-byte Curve25519 public key), {0}")]
pub struct TrustRootParseError(String);

impl std::str::FromStr for TrustRoot {
    type Err = TrustRootParseError;

    /// Parses 64 hex characters. Refuses anything else.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s.trim()).map_err(|e| TrustRootParseError(format!("{e}")))?;
        let key = PublicKey::from_raw(&bytes)
            .map_err(|_| TrustRootParseError(format!("got {} bytes", bytes.len())))?;
        Ok(TrustRoot(key))
    }
}

impl TrustRoot {
    /// WhatsApp's root, `142375574d0a587166aae71ebe516437c4a28b73e3695c6ce1f7f9545da8ee6b`.
    pub const WHATSAPP: TrustRoot = TrustRoot(PublicKey(WHATSAPP_ROOT_KEY));

    /// Trusts another root key (e.g. the simulator's).
    pub fn new(key: PublicKey) -> Self {
        TrustRoot(key)
    }

    /// The root public key.
    pub fn public_key(&self) -> PublicKey {
        self.0
    }
}

/// Which certificate of the chain an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertRole {
    /// The intermediate certificate (signed by the root).
    Intermediate,
    /// The leaf certificate (signed by the intermediate, carries the server static key).
    Leaf,
}

impl std::fmt::Display for CertRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CertRole::Intermediate => "intermediate",
            CertRole::Leaf => "leaf",
        })
    }
}

/// A unix time in seconds, displayed as RFC 3339 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixTime(pub u64);

impl std::fmt::Display for UnixTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let date = i64::try_from(self.0)
            .ok()
            .and_then(|s| chrono::DateTime::<chrono::Utc>::from_timestamp(s, 0));
        match date {
            Some(d) => write!(f, "{}", d.format("%Y-%m-%dT%H:%M:%SZ")),
            None => write!(f, "unix {}", self.0),
        }
    }
}

/// A server certificate chain that failed verification. Each check has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The decrypted payload is not a `CertChain` protobuf.
    #[error("certificate chain is not a valid CertChain protobuf: {0}")]
    Malformed(String),
    /// A certificate, its details or its signature is absent.
    #[error("certificate chain has no {0}")]
    Missing(&'static str),
    /// A signature is not 64 bytes.
    #[error("{role} certificate signature is {len} bytes, expected 64")]
    SignatureLength {
        /// Which certificate.
        role: CertRole,
        /// Its signature length.
        len: usize,
    },
    /// The intermediate is not signed by the trusted root: another root issued it, or the
    /// signature or the details were altered.
    #[error(
        "intermediate certificate is not signed by the trusted root {root} (wrong root, or a corrupt signature)"
    )]
    NotSignedByRoot {
        /// The trusted root it was checked against.
        root: TrustRoot,
    },
    /// The `details` bytes of a certificate are not a `Details` protobuf.
    #[error("{role} certificate details are not a valid protobuf: {detail}")]
    MalformedDetails {
        /// Which certificate.
        role: CertRole,
        /// The decoder's complaint.
        detail: String,
    },
    /// The intermediate's `issuerSerial` is not the root's (0).
    #[error("intermediate certificate issuer serial is {found}, expected {ROOT_ISSUER_SERIAL}")]
    IntermediateIssuerSerial {
        /// The issuer serial found.
        found: u32,
    },
    /// A certificate key is not 32 bytes.
    #[error("{role} certificate key is {len} bytes, expected 32")]
    KeyLength {
        /// Which certificate.
        role: CertRole,
        /// Its key length.
        len: usize,
    },
    /// The leaf's signature does not verify with the intermediate's key.
    #[error(
        "leaf certificate signature does not verify with the intermediate key {intermediate_key}"
    )]
    BadLeafSignature {
        /// Hex of the intermediate public key.
        intermediate_key: String,
    },
    /// The leaf's `issuerSerial` is not the intermediate's `serial`.
    #[error(
        "leaf certificate issuer serial is {leaf_issuer_serial}, but the intermediate serial is {intermediate_serial}"
    )]
    SerialMismatch {
        /// `leaf.issuerSerial`.
        leaf_issuer_serial: u32,
        /// `intermediate.serial`.
        intermediate_serial: u32,
    },
    /// The leaf certifies another key than the one the server proved in the handshake.
    #[error("leaf certificate key {leaf_key} is not the server's static key {server_static}")]
    LeafKeyMismatch {
        /// Hex of the leaf's key.
        leaf_key: String,
        /// Hex of the server static key from the handshake.
        server_static: String,
    },
    /// `now` is before the certificate's `notBefore`.
    #[error("{role} certificate is not valid yet: valid from {not_before}, now is {now}")]
    NotYetValid {
        /// Which certificate.
        role: CertRole,
        /// Its `notBefore`.
        not_before: UnixTime,
        /// The time checked.
        now: UnixTime,
    },
    /// `now` is after the certificate's `notAfter`.
    #[error("{role} certificate expired at {not_after}, now is {now}")]
    Expired {
        /// Which certificate.
        role: CertRole,
        /// Its `notAfter`.
        not_after: UnixTime,
        /// The time checked.
        now: UnixTime,
    },
}

/// The parsed `details` of a verified certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertDetails {
    /// This certificate's serial.
    pub serial: u32,
    /// Serial of the certificate that signed it (0 for the root).
    pub issuer_serial: u32,
    /// The certified public key.
    pub key: PublicKey,
    /// Start of validity (unix seconds).
    pub not_before: u64,
    /// End of validity (unix seconds).
    pub not_after: u64,
}

/// A chain that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCertChain {
    /// The intermediate certificate.
    pub intermediate: CertDetails,
    /// The leaf certificate (its key is the server static key).
    pub leaf: CertDetails,
}

fn parts(cert: Option<&NoiseCertificate>, role: CertRole) -> Result<(&[u8], &[u8]), CertError> {
    let what = match role {
        CertRole::Intermediate => (
            "intermediate certificate",
            "intermediate details",
            "intermediate signature",
        ),
        CertRole::Leaf => ("leaf certificate", "leaf details", "leaf signature"),
    };
    let cert = cert.ok_or(CertError::Missing(what.0))?;
    let details = cert.details.as_deref().ok_or(CertError::Missing(what.1))?;
    let signature = cert
        .signature
        .as_deref()
        .ok_or(CertError::Missing(what.2))?;
    if signature.len() != SIGNATURE_LEN {
        return Err(CertError::SignatureLength {
            role,
            len: signature.len(),
        });
    }
    Ok((details, signature))
}

fn parse_details(raw: &[u8], role: CertRole) -> Result<(Details, PublicKey), CertError> {
    let details = Details::decode(raw).map_err(|e| CertError::MalformedDetails {
        role,
        detail: e.to_string(),
    })?;
    let key_bytes = details.key.as_deref().unwrap_or_default();
    let key = PublicKey::from_raw(key_bytes).map_err(|_| CertError::KeyLength {
        role,
        len: key_bytes.len(),
    })?;
    Ok((details, key))
}

fn check_validity(details: &CertDetails, role: CertRole, now: u64) -> Result<(), CertError> {
    if now < details.not_before {
        return Err(CertError::NotYetValid {
            role,
            not_before: UnixTime(details.not_before),
            now: UnixTime(now),
        });
    }
    if now > details.not_after {
        return Err(CertError::Expired {
            role,
            not_after: UnixTime(details.not_after),
            now: UnixTime(now),
        });
    }
    Ok(())
}

fn to_cert_details(d: &Details, key: PublicKey) -> CertDetails {
    CertDetails {
        serial: d.serial.unwrap_or(0),
        issuer_serial: d.issuer_serial.unwrap_or(0),
        key,
        not_before: d.not_before.unwrap_or(0),
        not_after: d.not_after.unwrap_or(0),
    }
}

/// Verifies a serialized `CertChain` for a server whose handshake proved `server_static`,
/// at unix time `now`, against `root`. Returns the parsed chain or the first failed check.
pub fn verify_cert_chain(
    chain_bytes: &[u8],
    server_static: &PublicKey,
    now: u64,
    root: &TrustRoot,
) -> Result<VerifiedCertChain, CertError> {
    let chain = CertChain::decode(chain_bytes).map_err(|e| CertError::Malformed(e.to_string()))?;
    let (inter_raw, inter_sig) = parts(chain.intermediate.as_ref(), CertRole::Intermediate)?;
    let (leaf_raw, leaf_sig) = parts(chain.leaf.as_ref(), CertRole::Leaf)?;

    if !root.0.verify(inter_raw, inter_sig) {
        return Err(CertError::NotSignedByRoot { root: *root });
    }
    let (inter, inter_key) = parse_details(inter_raw, CertRole::Intermediate)?;
    let found = inter.issuer_serial.unwrap_or(0);
    if found != ROOT_ISSUER_SERIAL {
        return Err(CertError::IntermediateIssuerSerial { found });
    }
    if !inter_key.verify(leaf_raw, leaf_sig) {
        return Err(CertError::BadLeafSignature {
            intermediate_key: hex::encode(inter_key.0),
        });
    }
    let intermediate = to_cert_details(&inter, inter_key);
    check_validity(&intermediate, CertRole::Intermediate, now)?;

    let (leaf_proto, leaf_key) = parse_details(leaf_raw, CertRole::Leaf)?;
    let leaf = to_cert_details(&leaf_proto, leaf_key);
    if leaf.issuer_serial != intermediate.serial {
        return Err(CertError::SerialMismatch {
            leaf_issuer_serial: leaf.issuer_serial,
            intermediate_serial: intermediate.serial,
        });
    }
    if !bool::from(leaf.key.0.ct_eq(&server_static.0)) {
        return Err(CertError::LeafKeyMismatch {
            leaf_key: hex::encode(leaf.key.0),
            server_static: hex::encode(server_static.0),
        });
    }
    check_validity(&leaf, CertRole::Leaf, now)?;
    Ok(VerifiedCertChain { intermediate, leaf })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_root_is_whatsapps() {
        assert_eq!(
            TrustRoot::default().to_string(),
            "142375574d0a587166aae71ebe516437c4a28b73e3695c6ce1f7f9545da8ee6b"
        );
        let parsed: TrustRoot = "142375574d0a587166aae71ebe516437c4a28b73e3695c6ce1f7f9545da8ee6b"
            .parse()
            .unwrap();
        assert_eq!(parsed, TrustRoot::WHATSAPP);
        assert!("1423".parse::<TrustRoot>().is_err());
        assert!("zz".parse::<TrustRoot>().is_err());
    }

    #[test]
    fn dates_are_printed_readably() {
        assert_eq!(UnixTime(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(UnixTime(1_700_000_000).to_string(), "2023-11-14T22:13:20Z");
        assert_eq!(UnixTime(u64::MAX).to_string(), format!("unix {}", u64::MAX));
    }

    #[test]
    fn garbage_and_missing_parts_are_refused() {
        let key = PublicKey([9; 32]);
        let root = TrustRoot::default();
        assert!(matches!(
            verify_cert_chain(&[0xff, 0xff], &key, 0, &root),
            Err(CertError::Malformed(_))
        ));
        assert_eq!(
            verify_cert_chain(&[], &key, 0, &root),
            Err(CertError::Missing("intermediate certificate"))
        );
        let chain = CertChain {
            leaf: Some(NoiseCertificate {
                details: Some(vec![]),
                signature: Some(vec![0; 64]),
            }),
            intermediate: Some(NoiseCertificate {
                details: Some(vec![]),
                signature: Some(vec![0; 63]),
            }),
        };
        assert_eq!(
            verify_cert_chain(&chain.encode_to_vec(), &key, 0, &root),
            Err(CertError::SignatureLength {
                role: CertRole::Intermediate,
                len: 63
            })
        );
    }
}
