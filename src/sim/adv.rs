//! The primary phone's half of ADV (account/device verification, PROTOCOL.md §6.3):
//! issuing the signed device identity that goes into `pair-success`, and checking the
//! companion's `pair-device-sign` reply.
//!
//! ```text
//! ADVDeviceIdentity{rawId, timestamp, keyIndex, accountType, deviceType}  → details
//! accountSignature = XEdDSA(accountKey, 06 00 ‖ details ‖ companionIdentity)
//! ADVSignedDeviceIdentity{details, accountSignatureKey, accountSignature} → signed
//! ADVSignedDeviceIdentityHMAC{details = signed, HMAC = HMAC-SHA256(advSecret, signed)}
//! reply: ADVSignedDeviceIdentity{details, accountSignature, deviceSignature}, no key,
//!   deviceSignature = XEdDSA(companionIdentity, 06 01 ‖ details ‖ companionIdentity ‖ accountKey)
//! ```

use hmac::{Hmac, Mac};
use prost::Message;
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::proto::adv::{
    AdvDeviceIdentity, AdvEncryptionType, AdvSignedDeviceIdentity, AdvSignedDeviceIdentityHmac,
};
use crate::signal::curve::{KeyPair, PublicKey, SIGNATURE_LEN};

/// Prefix of the message the account key signs (`06 00`).
pub const ACCOUNT_SIGNATURE_PREFIX: [u8; 2] = [6, 0];
/// Prefix of the message the companion's identity key signs (`06 01`).
pub const DEVICE_SIGNATURE_PREFIX: [u8; 2] = [6, 1];

/// Why a companion's `pair-device-sign` reply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvReplyError {
    /// The companion answered `pair-success` with an IQ error.
    #[error("client answered pair-success with error {code} {text:?}")]
    ClientError {
        /// `code` of its `<error>`.
        code: String,
        /// `text` of its `<error>`.
        text: String,
    },
    /// The reply is not shaped as `<iq type="result"><pair-device-sign><device-identity
    /// key-index>bytes</device-identity></pair-device-sign></iq>`.
    #[error("pair-device-sign reply is malformed: {0}")]
    Malformed(String),
    /// `key-index` differs from the key index issued.
    #[error("pair-device-sign key-index {got:?} differs from the issued key index {want}")]
    KeyIndex {
        /// What the reply said.
        got: Option<String>,
        /// What was issued.
        want: u32,
    },
    /// The reply still carries `accountSignatureKey`, which companions must strip.
    #[error("pair-device-sign reply still carries accountSignatureKey (companions must remove it)")]
    AccountKeyPresent,
    /// The reply's details or account signature differ from what the phone issued.
    #[error("pair-device-sign reply changed the issued {0}")]
    Altered(&'static str),
    /// The device signature is absent or does not verify with the companion's identity.
    #[error("device signature does not verify with the companion identity key")]
    BadDeviceSignature,
}

/// A device identity the phone issued for one companion, kept to check the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedIdentity {
    /// Serialized `ADVDeviceIdentity`.
    pub details: Vec<u8>,
    /// The account signature over it.
    pub account_signature: [u8; SIGNATURE_LEN],
    /// The account (primary identity) public key.
    pub account_key: PublicKey,
    /// The companion's identity key the signature binds.
    pub companion_identity: PublicKey,
    /// The key index issued.
    pub key_index: u32,
    /// Serialized `ADVSignedDeviceIdentityHMAC`: the `<device-identity>` of pair-success.
    pub hmac_container: Vec<u8>,
}

/// Issues a device identity: `raw_id` of the account, `timestamp` (unix seconds), the new
/// `key_index`, E2EE account and device type, signed with `account` and HMAC'd with the
/// companion's `adv_secret`.
pub fn issue_device_identity<R: RngCore + CryptoRng + ?Sized>(
    account: &KeyPair,
    companion_identity: &PublicKey,
    adv_secret: &[u8; 32],
    raw_id: u32,
    key_index: u32,
    timestamp: u64,
    rng: &mut R,
) -> IssuedIdentity {
    let details = AdvDeviceIdentity {
        raw_id: Some(raw_id),
        timestamp: Some(timestamp),
        key_index: Some(key_index),
        account_type: Some(AdvEncryptionType::E2ee as i32),
        device_type: Some(AdvEncryptionType::E2ee as i32),
    }
    .encode_to_vec();
    let account_signature = account.private.sign(
        rng,
        &[
            &ACCOUNT_SIGNATURE_PREFIX[..],
            &details,
            companion_identity.as_bytes(),
        ]
        .concat(),
    );
    let signed = AdvSignedDeviceIdentity {
        details: Some(details.clone()),
        account_signature_key: Some(account.public.as_bytes().to_vec()),
        account_signature: Some(account_signature.to_vec()),
        device_signature: None,
    }
    .encode_to_vec();
    let hmac = adv_hmac(adv_secret, &signed);
    let hmac_container = AdvSignedDeviceIdentityHmac {
        details: Some(signed),
        hmac: Some(hmac.to_vec()),
        account_type: None,
    }
    .encode_to_vec();
    IssuedIdentity {
        details,
        account_signature,
        account_key: account.public,
        companion_identity: *companion_identity,
        key_index,
        hmac_container,
    }
}

/// HMAC-SHA256 keyed with the ADV secret, as the companion checks it (E2EE accounts: no
/// prefix).
pub fn adv_hmac(adv_secret: &[u8; 32], signed_identity: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(adv_secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(signed_identity);
    mac.finalize().into_bytes().into()
}

/// The message a companion signs with its identity key.
pub fn device_signature_message(
    details: &[u8],
    companion_identity: &PublicKey,
    account_key: &PublicKey,
) -> Vec<u8> {
    [
        &DEVICE_SIGNATURE_PREFIX[..],
        details,
        companion_identity.as_bytes(),
        account_key.as_bytes(),
    ]
    .concat()
}

impl IssuedIdentity {
    /// Checks the `device-identity` of a `pair-device-sign` reply: the same details and
    /// account signature as issued, no `accountSignatureKey`, the issued key index, and a
    /// device signature by the companion's identity key. Returns the full
    /// `ADVSignedDeviceIdentity` to keep for the device (with the account key put back,
    /// as WhatsApp hands it out in key bundles).
    pub fn check_reply(
        &self,
        key_index_attr: Option<&str>,
        signed_identity: &[u8],
    ) -> Result<Vec<u8>, AdvReplyError> {
        if key_index_attr != Some(self.key_index.to_string().as_str()) {
            return Err(AdvReplyError::KeyIndex {
                got: key_index_attr.map(str::to_owned),
                want: self.key_index,
            });
        }
        let reply = AdvSignedDeviceIdentity::decode(signed_identity).map_err(|e| {
            AdvReplyError::Malformed(format!("not an ADVSignedDeviceIdentity: {e}"))
        })?;
        if reply.account_signature_key.is_some() {
            return Err(AdvReplyError::AccountKeyPresent);
        }
        let details = reply.details.as_deref().unwrap_or_default();
        if !bool::from(details.ct_eq(&self.details)) {
            return Err(AdvReplyError::Altered("details"));
        }
        let account_signature = reply.account_signature.as_deref().unwrap_or_default();
        if !bool::from(account_signature.ct_eq(&self.account_signature)) {
            return Err(AdvReplyError::Altered("account signature"));
        }
        let device_signature = reply
            .device_signature
            .as_deref()
            .ok_or(AdvReplyError::BadDeviceSignature)?;
        let message =
            device_signature_message(&self.details, &self.companion_identity, &self.account_key);
        if !self.companion_identity.verify(&message, device_signature) {
            return Err(AdvReplyError::BadDeviceSignature);
        }
        Ok(AdvSignedDeviceIdentity {
            account_signature_key: Some(self.account_key.as_bytes().to_vec()),
            ..reply
        }
        .encode_to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    struct Setup {
        account: KeyPair,
        companion: KeyPair,
        adv: [u8; 32],
        issued: IssuedIdentity,
        rng: StdRng,
    }

    fn setup() -> Setup {
        let mut rng = StdRng::seed_from_u64(5);
        let account = KeyPair::generate(&mut rng);
        let companion = KeyPair::generate(&mut rng);
        let adv = [9u8; 32];
        let issued = issue_device_identity(
            &account,
            &companion.public,
            &adv,
            0xABCD,
            3,
            1_780_000_000,
            &mut rng,
        );
        Setup {
            account,
            companion,
            adv,
            issued,
            rng,
        }
    }

    /// What a companion does with pair-success (PROTOCOL.md §6.3), written from the spec.
    fn companion_reply(s: &mut Setup) -> (u32, Vec<u8>) {
        let container = AdvSignedDeviceIdentityHmac::decode(&s.issued.hmac_container[..]).unwrap();
        let signed = container.details.unwrap();
        assert_eq!(container.hmac.unwrap(), adv_hmac(&s.adv, &signed));
        let mut identity = AdvSignedDeviceIdentity::decode(&signed[..]).unwrap();
        let account_key = PublicKey::from_raw(identity.account_signature_key.as_ref().unwrap())
            .expect("32-byte account key");
        assert_eq!(account_key, s.account.public);
        let details = identity.details.clone().unwrap();
        let msg = [&[6u8, 0][..], &details, s.companion.public.as_bytes()].concat();
        assert!(account_key.verify(&msg, identity.account_signature.as_ref().unwrap()));
        let parsed = AdvDeviceIdentity::decode(&details[..]).unwrap();
        let sig = s.companion.private.sign(
            &mut s.rng,
            &device_signature_message(&details, &s.companion.public, &account_key),
        );
        identity.device_signature = Some(sig.to_vec());
        identity.account_signature_key = None;
        (parsed.key_index.unwrap(), identity.encode_to_vec())
    }

    #[test]
    fn issued_identity_has_the_fields_and_a_reply_from_the_spec_is_accepted() {
        let mut s = setup();
        let details = AdvDeviceIdentity::decode(&s.issued.details[..]).unwrap();
        assert_eq!(details.raw_id, Some(0xABCD));
        assert_eq!(details.key_index, Some(3));
        assert_eq!(details.timestamp, Some(1_780_000_000));
        assert_eq!(details.account_type, Some(AdvEncryptionType::E2ee as i32));
        let (key_index, reply) = companion_reply(&mut s);
        let stored = s
            .issued
            .check_reply(Some(&key_index.to_string()), &reply)
            .unwrap();
        let stored = AdvSignedDeviceIdentity::decode(&stored[..]).unwrap();
        assert_eq!(
            stored.account_signature_key.as_deref(),
            Some(&s.account.public.as_bytes()[..])
        );
        assert!(stored.device_signature.is_some());
    }

    #[test]
    fn every_defect_in_the_reply_is_refused() {
        let mut s = setup();
        let (_, good) = companion_reply(&mut s);
        let good_msg = AdvSignedDeviceIdentity::decode(&good[..]).unwrap();
        let check = |ki: Option<&str>, m: &AdvSignedDeviceIdentity| {
            s.issued.check_reply(ki, &m.encode_to_vec()).unwrap_err()
        };
        assert!(matches!(
            check(Some("4"), &good_msg),
            AdvReplyError::KeyIndex { want: 3, .. }
        ));
        assert!(matches!(
            check(None, &good_msg),
            AdvReplyError::KeyIndex { .. }
        ));
        let mut with_key = good_msg.clone();
        with_key.account_signature_key = Some(s.account.public.as_bytes().to_vec());
        assert_eq!(
            check(Some("3"), &with_key),
            AdvReplyError::AccountKeyPresent
        );
        let mut altered = good_msg.clone();
        altered.details.as_mut().unwrap().push(0);
        assert_eq!(
            check(Some("3"), &altered),
            AdvReplyError::Altered("details")
        );
        let mut altered = good_msg.clone();
        altered.account_signature.as_mut().unwrap()[0] ^= 1;
        assert_eq!(
            check(Some("3"), &altered),
            AdvReplyError::Altered("account signature")
        );
        let mut bad_sig = good_msg.clone();
        bad_sig.device_signature.as_mut().unwrap()[10] ^= 1;
        assert_eq!(
            check(Some("3"), &bad_sig),
            AdvReplyError::BadDeviceSignature
        );
        let mut no_sig = good_msg.clone();
        no_sig.device_signature = None;
        assert_eq!(check(Some("3"), &no_sig), AdvReplyError::BadDeviceSignature);
        assert!(matches!(
            s.issued.check_reply(Some("3"), b"\xff\xff"),
            Err(AdvReplyError::Malformed(_))
        ));
        // Signed by another key than the companion's identity.
        let other = KeyPair::generate(&mut StdRng::seed_from_u64(77));
        let mut forged = good_msg;
        let details = forged.details.clone().unwrap();
        forged.device_signature = Some(
            other
                .private
                .sign(
                    &mut StdRng::seed_from_u64(1),
                    &device_signature_message(&details, &s.companion.public, &s.account.public),
                )
                .to_vec(),
        );
        assert_eq!(check(Some("3"), &forged), AdvReplyError::BadDeviceSignature);
    }
}
