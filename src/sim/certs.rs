//! The simulator's certificate authority: its own root key pair, an intermediate signed by
//! the root, and leaf certificates for a server static key — the same `CertChain` shape
//! and XEdDSA signatures as WhatsApp's servers. Clients reach the simulator by trusting
//! [`SimCertAuthority::trust_root`] instead of WhatsApp's root.
//!
//! [`SimCertAuthority::broken_chain`] mints chains with one defect each, so tests can
//! check that every verification step refuses what it must.

use prost::Message;
use rand_core::{CryptoRng, RngCore};

use crate::noise::TrustRoot;
use crate::proto::cert::CertChain;
use crate::proto::cert::cert_chain::{NoiseCertificate, noise_certificate::Details};
use crate::signal::curve::{KeyPair, PublicKey};

/// Serial of the simulator's intermediate certificate.
pub const INTERMEDIATE_SERIAL: u32 = 1;
/// Serial of the leaf certificates it issues.
pub const LEAF_SERIAL: u32 = 2;

/// A validity window in unix seconds (both ends inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First valid second.
    pub not_before: u64,
    /// Last valid second.
    pub not_after: u64,
}

impl Validity {
    /// A window from `days` days before `now` to `days` days after it.
    pub fn days_around(now: u64, days: u64) -> Self {
        let span = days.saturating_mul(86_400);
        Validity {
            not_before: now.saturating_sub(span),
            not_after: now.saturating_add(span),
        }
    }

    /// A window that ended one second before this one starts.
    fn before(&self) -> Self {
        Validity {
            not_before: self.not_before.saturating_sub(86_400),
            not_after: self.not_before.saturating_sub(1),
        }
    }

    /// A window that starts one second after this one ends.
    fn after(&self) -> Self {
        Validity {
            not_before: self.not_after.saturating_add(1),
            not_after: self.not_after.saturating_add(86_400),
        }
    }
}

/// One deliberate defect in a minted chain (each maps to one verification failure).
/// Time defects are relative to the `Validity` given: the chain fails for any `now` in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainDefect {
    /// The intermediate is signed by another root than the authority's.
    WrongRoot,
    /// The intermediate's signature has a flipped bit.
    CorruptIntermediateSignature,
    /// The leaf's signature has a flipped bit.
    CorruptLeafSignature,
    /// The leaf certifies a random key instead of the server static key.
    LeafKeyMismatch,
    /// The leaf names another issuer serial than the intermediate's.
    LeafIssuerSerialMismatch,
    /// The intermediate claims a non-root issuer serial.
    IntermediateIssuerSerialNonZero,
    /// The leaf's window ended before the given one starts.
    ExpiredLeaf,
    /// The leaf's window starts after the given one ends.
    LeafNotYetValid,
    /// The intermediate's window ended before the given one starts.
    ExpiredIntermediate,
}

/// XEdDSA-signs serialized `details` with `signer` into a `NoiseCertificate`.
pub fn sign_certificate<R: RngCore + CryptoRng>(
    signer: &KeyPair,
    details: &Details,
    rng: &mut R,
) -> NoiseCertificate {
    let raw = details.encode_to_vec();
    let signature = signer.sign(rng, &raw);
    NoiseCertificate {
        details: Some(raw),
        signature: Some(signature.to_vec()),
    }
}

fn details(serial: u32, issuer_serial: u32, key: &PublicKey, validity: Validity) -> Details {
    Details {
        serial: Some(serial),
        issuer_serial: Some(issuer_serial),
        key: Some(key.as_bytes().to_vec()),
        not_before: Some(validity.not_before),
        not_after: Some(validity.not_after),
    }
}

fn flip_signature_bit(cert: &mut NoiseCertificate) {
    if let Some(byte) = cert.signature.as_mut().and_then(|s| s.get_mut(5)) {
        *byte ^= 0x01;
    }
}

/// The simulator's root and intermediate key pairs. Private keys are zeroized on drop and
/// never printed.
#[derive(Clone)]
pub struct SimCertAuthority {
    root: KeyPair,
    intermediate: KeyPair,
}

impl std::fmt::Debug for SimCertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCertAuthority")
            .field("root", &self.root.public)
            .field("intermediate", &self.intermediate.public)
            .finish_non_exhaustive()
    }
}

impl SimCertAuthority {
    /// A fresh authority with random root and intermediate keys.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self::from_root(KeyPair::generate(rng), rng)
    }

    /// An authority for a given (e.g. persisted) root key pair, with a fresh intermediate.
    pub fn from_root<R: RngCore + CryptoRng>(root: KeyPair, rng: &mut R) -> Self {
        SimCertAuthority {
            root,
            intermediate: KeyPair::generate(rng),
        }
    }

    /// The root clients must trust to accept this simulator.
    pub fn trust_root(&self) -> TrustRoot {
        TrustRoot::new(self.root.public)
    }

    /// The root key pair (to persist it so the trust root stays the same across runs).
    pub fn root_key_pair(&self) -> &KeyPair {
        &self.root
    }

    /// A valid chain for `server_static`, both certificates valid during `validity`.
    pub fn chain<R: RngCore + CryptoRng>(
        &self,
        server_static: &PublicKey,
        validity: Validity,
        rng: &mut R,
    ) -> CertChain {
        self.chain_with_windows(server_static, validity, validity, rng)
    }

    /// [`Self::chain`], serialized (the plaintext the server encrypts into ServerHello).
    pub fn chain_bytes<R: RngCore + CryptoRng>(
        &self,
        server_static: &PublicKey,
        validity: Validity,
        rng: &mut R,
    ) -> Vec<u8> {
        self.chain(server_static, validity, rng).encode_to_vec()
    }

    /// A chain whose intermediate and leaf have their own validity windows.
    pub fn chain_with_windows<R: RngCore + CryptoRng>(
        &self,
        server_static: &PublicKey,
        intermediate_validity: Validity,
        leaf_validity: Validity,
        rng: &mut R,
    ) -> CertChain {
        let intermediate = sign_certificate(
            &self.root,
            &details(
                INTERMEDIATE_SERIAL,
                0,
                &self.intermediate.public,
                intermediate_validity,
            ),
            rng,
        );
        let leaf = sign_certificate(
            &self.intermediate,
            &details(
                LEAF_SERIAL,
                INTERMEDIATE_SERIAL,
                server_static,
                leaf_validity,
            ),
            rng,
        );
        CertChain {
            leaf: Some(leaf),
            intermediate: Some(intermediate),
        }
    }

    /// A chain for `server_static` with exactly one `defect`; it fails verification for
    /// any `now` inside `validity`.
    pub fn broken_chain<R: RngCore + CryptoRng>(
        &self,
        defect: ChainDefect,
        server_static: &PublicKey,
        validity: Validity,
        rng: &mut R,
    ) -> CertChain {
        let mut inter_signer = &self.root;
        let other_root;
        let mut inter_issuer = 0;
        let mut inter_validity = validity;
        let mut leaf_key = *server_static;
        let mut leaf_issuer = INTERMEDIATE_SERIAL;
        let mut leaf_validity = validity;
        match defect {
            ChainDefect::WrongRoot => {
                other_root = KeyPair::generate(rng);
                inter_signer = &other_root;
            }
            ChainDefect::IntermediateIssuerSerialNonZero => inter_issuer = 7,
            ChainDefect::LeafKeyMismatch => leaf_key = KeyPair::generate(rng).public,
            ChainDefect::LeafIssuerSerialMismatch => leaf_issuer = INTERMEDIATE_SERIAL + 1,
            ChainDefect::ExpiredLeaf => leaf_validity = validity.before(),
            ChainDefect::LeafNotYetValid => leaf_validity = validity.after(),
            ChainDefect::ExpiredIntermediate => inter_validity = validity.before(),
            ChainDefect::CorruptIntermediateSignature | ChainDefect::CorruptLeafSignature => {}
        }
        let mut intermediate = sign_certificate(
            inter_signer,
            &details(
                INTERMEDIATE_SERIAL,
                inter_issuer,
                &self.intermediate.public,
                inter_validity,
            ),
            rng,
        );
        let mut leaf = sign_certificate(
            &self.intermediate,
            &details(LEAF_SERIAL, leaf_issuer, &leaf_key, leaf_validity),
            rng,
        );
        match defect {
            ChainDefect::CorruptIntermediateSignature => flip_signature_bit(&mut intermediate),
            ChainDefect::CorruptLeafSignature => flip_signature_bit(&mut leaf),
            _ => {}
        }
        CertChain {
            leaf: Some(leaf),
            intermediate: Some(intermediate),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::{CertError, CertRole, verify_cert_chain};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const NOW: u64 = 1_780_000_000;

    fn setup() -> (SimCertAuthority, KeyPair, StdRng) {
        let mut rng = StdRng::seed_from_u64(11);
        let ca = SimCertAuthority::generate(&mut rng);
        let server = KeyPair::generate(&mut rng);
        (ca, server, rng)
    }

    #[test]
    fn minted_chain_verifies_and_reports_its_details() {
        let (ca, server, mut rng) = setup();
        let v = Validity::days_around(NOW, 30);
        let bytes = ca.chain_bytes(&server.public, v, &mut rng);
        let ok = verify_cert_chain(&bytes, &server.public, NOW, &ca.trust_root()).unwrap();
        assert_eq!(ok.leaf.key, server.public);
        assert_eq!(ok.leaf.issuer_serial, ok.intermediate.serial);
        assert_eq!(ok.intermediate.issuer_serial, 0);
        assert_eq!(ok.leaf.not_after, NOW + 30 * 86_400);
        // Edges of the window are inclusive.
        assert!(verify_cert_chain(&bytes, &server.public, v.not_before, &ca.trust_root()).is_ok());
        assert!(verify_cert_chain(&bytes, &server.public, v.not_after, &ca.trust_root()).is_ok());
        // But WhatsApp's root does not accept it.
        assert_eq!(
            verify_cert_chain(&bytes, &server.public, NOW, &TrustRoot::default()),
            Err(CertError::NotSignedByRoot {
                root: TrustRoot::default()
            })
        );
    }

    #[test]
    fn each_defect_is_refused_with_its_own_error() {
        let (ca, server, mut rng) = setup();
        let v = Validity::days_around(NOW, 1);
        let root = ca.trust_root();
        let check = |defect, rng: &mut StdRng| {
            let bytes = ca
                .broken_chain(defect, &server.public, v, rng)
                .encode_to_vec();
            verify_cert_chain(&bytes, &server.public, NOW, &root).unwrap_err()
        };
        assert_eq!(
            check(ChainDefect::WrongRoot, &mut rng),
            CertError::NotSignedByRoot { root }
        );
        assert_eq!(
            check(ChainDefect::CorruptIntermediateSignature, &mut rng),
            CertError::NotSignedByRoot { root }
        );
        assert!(matches!(
            check(ChainDefect::CorruptLeafSignature, &mut rng),
            CertError::BadLeafSignature { .. }
        ));
        assert!(matches!(
            check(ChainDefect::LeafKeyMismatch, &mut rng),
            CertError::LeafKeyMismatch { .. }
        ));
        assert_eq!(
            check(ChainDefect::LeafIssuerSerialMismatch, &mut rng),
            CertError::SerialMismatch {
                leaf_issuer_serial: 2,
                intermediate_serial: 1
            }
        );
        assert_eq!(
            check(ChainDefect::IntermediateIssuerSerialNonZero, &mut rng),
            CertError::IntermediateIssuerSerial { found: 7 }
        );
        assert!(matches!(
            check(ChainDefect::ExpiredLeaf, &mut rng),
            CertError::Expired {
                role: CertRole::Leaf,
                ..
            }
        ));
        assert!(matches!(
            check(ChainDefect::LeafNotYetValid, &mut rng),
            CertError::NotYetValid {
                role: CertRole::Leaf,
                ..
            }
        ));
        assert!(matches!(
            check(ChainDefect::ExpiredIntermediate, &mut rng),
            CertError::Expired {
                role: CertRole::Intermediate,
                ..
            }
        ));
    }

    #[test]
    fn debug_does_not_print_private_keys() {
        let (ca, _, _) = setup();
        let s = format!("{ca:?}");
        assert!(!s.contains(&hex::encode(ca.root.private.to_bytes())));
        assert!(!s.contains(&hex::encode(ca.intermediate.private.to_bytes())));
    }
}
