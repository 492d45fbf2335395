//! Pairing as a linked device, the sans-IO part (PROTOCOL.md §6.2, §6.3): the QR string
//! the phone scans, and the checks and signature of `pair-success`.
//!
//! When the phone scans the QR, the server sends `<pair-success>` with an
//! `ADVSignedDeviceIdentityHMAC` container. [`process_device_identity`]:
//! 1. checks the container's HMAC-SHA256 keyed with our ADV secret (constant time);
//! 2. checks the account signature, XEdDSA by `accountSignatureKey` over
//!    `06 00 ‖ details ‖ our identity public key`;
//! 3. signs `06 01 ‖ details ‖ our identity public key ‖ accountSignatureKey` with our
//!    identity key.
//!
//! It returns the identity to store (with `accountSignatureKey`, which later goes out as
//! `<device-identity>` with every pkmsg) and the one to reply with (without it). Each
//! failure maps to the error reply WhatsApp's clients send ([`AdvError::reply`]).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use prost::Message;
use rand_core::{CryptoRng, RngCore};
use sha2::Sha256;

use crate::binary::{AttrValue, Node};
use crate::jid::Jid;
use crate::proto::adv::{
    AdvDeviceIdentity, AdvEncryptionType, AdvSignedDeviceIdentity, AdvSignedDeviceIdentityHmac,
};
use crate::proto::companion::device_props::PlatformType;
use crate::signal::curve::{KEY_LEN, KeyPair, PublicKey, SIGNATURE_LEN};

/// Prefix whatsmeow and Baileys put in front of the QR string so that a phone's camera
/// app opens WhatsApp's linked-devices screen. waevent emits the bare string by default
/// (what WhatsApp Web itself renders; WhatsApp's in-app scanner reads both forms) and
/// adds this prefix only when asked (`ClientConfig::qr_link_prefix`).
pub const QR_LINK_PREFIX: &str = "https://wa.me/settings/linked_devices#";

/// Prefix of the message the primary phone signs for a normal account.
pub const ADV_ACCOUNT_SIGNATURE_PREFIX: [u8; 2] = [6, 0];
/// Prefix of the message the companion signs.
pub const ADV_DEVICE_SIGNATURE_PREFIX: [u8; 2] = [6, 1];
/// Prefix of the account signature (and of the HMAC input) for hosted accounts.
pub const ADV_HOSTED_ACCOUNT_SIGNATURE_PREFIX: [u8; 2] = [6, 5];

/// Length of the ADV secret key shown in the QR.
pub const ADV_SECRET_LEN: usize = 32;

/// The client type at the end of the QR string and in `companion_platform_id`
/// (WhatsApp's `PairClientType`): which kind of client the phone lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PairClientType {
    /// `0`
    Unknown,
    /// `1`
    Chrome,
    /// `2`
    Edge,
    /// `3`
    Firefox,
    /// `4`
    Ie,
    /// `5`
    Opera,
    /// `6`
    Safari,
    /// `7`
    Electron,
    /// `8`
    Uwp,
    /// `9`
    OtherWebClient,
    /// `c`
    MacOs,
    /// `e`
    Android,
}

impl PairClientType {
    /// The one-character code on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            PairClientType::Unknown => "0",
            PairClientType::Chrome => "1",
            PairClientType::Edge => "2",
            PairClientType::Firefox => "3",
            PairClientType::Ie => "4",
            PairClientType::Opera => "5",
            PairClientType::Safari => "6",
            PairClientType::Electron => "7",
            PairClientType::Uwp => "8",
            PairClientType::OtherWebClient => "9",
            PairClientType::MacOs => "c",
            PairClientType::Android => "e",
        }
    }

    /// The client type matching the `DeviceProps.platformType` a registration announces
    /// (as whatsmeow maps it); web clients of other kinds are "other web client".
    pub fn for_platform(platform: PlatformType) -> Self {
        match platform {
            PlatformType::Chrome => PairClientType::Chrome,
            PlatformType::Firefox => PairClientType::Firefox,
            PlatformType::Edge => PairClientType::Edge,
            PlatformType::Ie => PairClientType::Ie,
            PlatformType::Opera => PairClientType::Opera,
            PlatformType::Safari => PairClientType::Safari,
            PlatformType::Uwp => PairClientType::Uwp,
            PlatformType::AndroidPhone => PairClientType::Android,
            _ => PairClientType::OtherWebClient,
        }
    }
}

/// The QR string for one `pair-device` ref:
/// `ref,base64(noisePub),base64(identityPub),base64(advSecret),clientType` (standard
/// base64 with padding, raw 32-byte keys), optionally behind [`QR_LINK_PREFIX`].
pub fn qr_string(
    pairing_ref: &str,
    noise_key: &PublicKey,
    identity_key: &PublicKey,
    adv_secret: &[u8; ADV_SECRET_LEN],
    client_type: PairClientType,
    link_prefix: bool,
) -> String {
    format!(
        "{}{},{},{},{},{}",
        if link_prefix { QR_LINK_PREFIX } else { "" },
        pairing_ref,
        STANDARD.encode(noise_key.as_bytes()),
        STANDARD.encode(identity_key.as_bytes()),
        STANDARD.encode(adv_secret),
        client_type.as_str()
    )
}

/// Longest `pair-device` ref accepted (real ones are ~80 ASCII characters).
pub const MAX_REF_LEN: usize = 1024;
/// Most refs accepted from one `pair-device` (the server sends 6).
pub const MAX_REFS: usize = 64;

/// The refs of a `<pair-device>` IQ, in order. Skips children that are not `<ref>` with
/// printable ASCII content (a comma would break the QR string); refuses an IQ without
/// `<pair-device>` or without a single usable ref.
pub fn parse_pair_device(iq: &Node) -> Result<Vec<String>, PairError> {
    let pair_device = iq
        .child_by_tag("pair-device")
        .ok_or(PairError::Missing("pair-device"))?;
    let refs: Vec<String> = pair_device
        .children_by_tag("ref")
        .filter_map(|r| r.bytes())
        .filter(|b| {
            !b.is_empty()
                && b.len() <= MAX_REF_LEN
                && b.iter().all(|c| c.is_ascii_graphic() && *c != b',')
        })
        .filter_map(|b| std::str::from_utf8(b).ok().map(str::to_owned))
        .take(MAX_REFS)
        .collect();
    if refs.is_empty() {
        return Err(PairError::Missing("usable <ref> in pair-device"));
    }
    Ok(refs)
}

/// What `<pair-success>` says about the new device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairSuccessInfo {
    /// The `id` of the IQ (the reply echoes it).
    pub iq_id: String,
    /// The `ADVSignedDeviceIdentityHMAC` container bytes.
    pub device_identity: Vec<u8>,
    /// Our new phone-number device JID (`<device jid>`).
    pub jid: Jid,
    /// Our new LID device JID (`<device lid>`), when the server sent one.
    pub lid: Option<Jid>,
    /// The primary phone's platform (`<platform name>`), e.g. `android`.
    pub platform: String,
    /// The business name (`<biz name>`), empty for personal accounts.
    pub business_name: String,
    /// The server's clock (`t` on the IQ), unix seconds.
    pub server_time: Option<i64>,
}

/// Reads a `<pair-success>` IQ. Refuses a missing id, device identity or device JID, or
/// JIDs in the wrong namespace.
pub fn parse_pair_success(iq: &Node) -> Result<PairSuccessInfo, PairError> {
    let iq_id = iq
        .attr_str("id")
        .ok_or(PairError::Missing("id on the pair-success iq"))?
        .to_owned();
    let ps = iq
        .child_by_tag("pair-success")
        .ok_or(PairError::Missing("pair-success"))?;
    let device_identity = ps
        .child_by_tag("device-identity")
        .and_then(Node::bytes)
        .filter(|b| !b.is_empty())
        .ok_or(PairError::Missing("device-identity in pair-success"))?
        .to_vec();
    let device = ps
        .child_by_tag("device")
        .ok_or(PairError::Missing("device in pair-success"))?;
    let jid = attr_jid(device, "jid")?.ok_or(PairError::Missing("jid on <device>"))?;
    if !jid.is_pn() || jid.device == 0 {
        return Err(PairError::Invalid(format!(
            "pair-success device jid {jid} is not a companion phone-number device"
        )));
    }
    let lid = attr_jid(device, "lid")?;
    if let Some(l) = &lid
        && !l.is_lid()
    {
        return Err(PairError::Invalid(format!(
            "pair-success lid {l} is not a @lid JID"
        )));
    }
    let text = |tag: &str, attr: &str| {
        ps.child_by_tag(tag)
            .and_then(|n| n.get_attr(attr))
            .map(|v| v.to_text().into_owned())
            .unwrap_or_default()
    };
    Ok(PairSuccessInfo {
        iq_id,
        device_identity,
        jid,
        lid,
        platform: text("platform", "name"),
        business_name: text("biz", "name"),
        server_time: iq.attr_str("t").and_then(|t| t.parse().ok()),
    })
}

/// A JID attribute, whether the encoder wrote it as a JID token or as a string.
fn attr_jid(node: &Node, key: &str) -> Result<Option<Jid>, PairError> {
    match node.get_attr(key) {
        None => Ok(None),
        Some(AttrValue::Jid(j)) => Ok(Some(j.clone())),
        Some(AttrValue::Str(s)) => Jid::parse(s)
            .map(Some)
            .map_err(|e| PairError::Invalid(format!("{key}={s:?} is not a JID: {e}"))),
    }
}

/// Our identity after a successful pair-success check.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedDeviceIdentity {
    /// The full `ADVSignedDeviceIdentity` with `accountSignatureKey` and our
    /// `deviceSignature`: what the store keeps.
    pub account: Vec<u8>,
    /// The same without `accountSignatureKey`: the `<device-identity>` of the reply.
    pub reply: Vec<u8>,
    /// `ADVDeviceIdentity.keyIndex` (the reply's `key-index`).
    pub key_index: u32,
    /// The primary phone's account signature key (the Signal identity of device 0).
    pub account_signature_key: PublicKey,
}

impl std::fmt::Debug for SignedDeviceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedDeviceIdentity")
            .field("account_len", &self.account.len())
            .field("key_index", &self.key_index)
            .field("account_signature_key", &self.account_signature_key)
            .finish_non_exhaustive()
    }
}

/// Why a pair-success device identity was refused. [`AdvError::reply`] gives the error
/// reply WhatsApp's clients send for each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvError {
    /// The container is not an `ADVSignedDeviceIdentityHMAC`.
    #[error("pair-success device identity container is not a valid protobuf: {0}")]
    MalformedContainer(String),
    /// The container's HMAC does not match our ADV secret: not for this QR.
    #[error("pair-success HMAC does not match our ADV secret (hmac-mismatch)")]
    HmacMismatch,
    /// The signed identity is not an `ADVSignedDeviceIdentity`.
    #[error("pair-success signed device identity is not a valid protobuf: {0}")]
    MalformedIdentity(String),
    /// The identity details are not an `ADVDeviceIdentity`.
    #[error("pair-success device identity details are not a valid protobuf: {0}")]
    MalformedDetails(String),
    /// The account signature does not verify over our identity key.
    #[error("pair-success account signature does not verify (signature-mismatch)")]
    AccountSignatureMismatch,
}

impl AdvError {
    /// The `<error code text>` of the IQ error reply: 401 `hmac-mismatch`, 401
    /// `signature-mismatch`, 500 `internal-error` for unreadable data.
    pub fn reply(&self) -> (u16, &'static str) {
        match self {
            AdvError::HmacMismatch => (401, "hmac-mismatch"),
            AdvError::AccountSignatureMismatch => (401, "signature-mismatch"),
            _ => (500, "internal-error"),
        }
    }
}

/// Checks a pair-success device identity container against our ADV secret and
/// identity key and signs it (see the module docs). Refuses a bad HMAC, unreadable
/// protobufs and an account signature that does not verify.
pub fn process_device_identity<R: RngCore + CryptoRng + ?Sized>(
    container: &[u8],
    adv_secret: &[u8; ADV_SECRET_LEN],
    identity: &KeyPair,
    rng: &mut R,
) -> Result<SignedDeviceIdentity, AdvError> {
    let container = AdvSignedDeviceIdentityHmac::decode(container)
        .map_err(|e| AdvError::MalformedContainer(e.to_string()))?;
    let details = container.details.as_deref().unwrap_or_default();
    let hosted_container = container.account_type == Some(AdvEncryptionType::Hosted as i32);
    let mut mac = Hmac::<Sha256>::new_from_slice(adv_secret)
        .map_err(|_| AdvError::MalformedContainer("bad ADV secret length".into()))?;
    if hosted_container {
        mac.update(&ADV_HOSTED_ACCOUNT_SIGNATURE_PREFIX);
    }
    mac.update(details);
    // verify_slice compares in constant time and refuses a wrong length.
    mac.verify_slice(container.hmac.as_deref().unwrap_or_default())
        .map_err(|_| AdvError::HmacMismatch)?;

    let mut signed = AdvSignedDeviceIdentity::decode(details)
        .map_err(|e| AdvError::MalformedIdentity(e.to_string()))?;
    let identity_details = signed.details.as_deref().unwrap_or_default();
    let device = AdvDeviceIdentity::decode(identity_details)
        .map_err(|e| AdvError::MalformedDetails(e.to_string()))?;

    let account_key = signed
        .account_signature_key
        .as_deref()
        .and_then(|k| PublicKey::from_raw(k).ok())
        .ok_or(AdvError::AccountSignatureMismatch)?;
    let account_signature = signed.account_signature.as_deref().unwrap_or_default();
    if account_signature.len() != SIGNATURE_LEN {
        return Err(AdvError::AccountSignatureMismatch);
    }
    let hosted_device = device.device_type == Some(AdvEncryptionType::Hosted as i32);
    let prefix = if hosted_device {
        ADV_HOSTED_ACCOUNT_SIGNATURE_PREFIX
    } else {
        ADV_ACCOUNT_SIGNATURE_PREFIX
    };
    let message = account_signature_message(&prefix, identity_details, &identity.public);
    if !account_key.verify(&message, account_signature) {
        return Err(AdvError::AccountSignatureMismatch);
    }

    let to_sign = device_signature_message(identity_details, &identity.public, &account_key);
    signed.device_signature = Some(identity.private.sign(rng, &to_sign).to_vec());
    let account = signed.encode_to_vec();
    signed.account_signature_key = None;
    let reply = signed.encode_to_vec();
    Ok(SignedDeviceIdentity {
        account,
        reply,
        key_index: device.key_index.unwrap_or(0),
        account_signature_key: account_key,
    })
}

/// `prefix ‖ details ‖ companion identity`: what the primary phone signs.
pub fn account_signature_message(
    prefix: &[u8; 2],
    details: &[u8],
    companion_identity: &PublicKey,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(2 + details.len() + KEY_LEN);
    m.extend_from_slice(prefix);
    m.extend_from_slice(details);
    m.extend_from_slice(companion_identity.as_bytes());
    m
}

/// `06 01 ‖ details ‖ companion identity ‖ account key`: what the companion signs.
pub fn device_signature_message(
    details: &[u8],
    companion_identity: &PublicKey,
    account_key: &PublicKey,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(2 + details.len() + 2 * KEY_LEN);
    m.extend_from_slice(&ADV_DEVICE_SIGNATURE_PREFIX);
    m.extend_from_slice(details);
    m.extend_from_slice(companion_identity.as_bytes());
    m.extend_from_slice(account_key.as_bytes());
    m
}

/// The reply to pair-success: `<iq to=server type=result id><pair-device-sign>
/// <device-identity key-index>identity without accountSignatureKey</device-identity>
/// </pair-device-sign></iq>`.
pub fn pair_device_sign_reply(iq_id: &str, signed: &SignedDeviceIdentity) -> Node {
    Node::new("iq")
        .attr("to", Jid::server_jid())
        .attr("type", "result")
        .attr("id", iq_id)
        .child(
            Node::new("pair-device-sign").child(
                Node::new("device-identity")
                    .attr("key-index", signed.key_index)
                    .with_bytes(signed.reply.clone()),
            ),
        )
}

/// The error reply to a pair-success we refuse:
/// `<iq to=server type=error id><error code text/></iq>`.
pub fn pair_error_reply(iq_id: &str, code: u16, text: &str) -> Node {
    Node::new("iq")
        .attr("to", Jid::server_jid())
        .attr("type", "error")
        .attr("id", iq_id)
        .child(Node::new("error").attr("code", code).attr("text", text))
}

/// A pairing stanza that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    /// A required element or attribute is absent.
    #[error("pairing stanza has no {0}")]
    Missing(&'static str),
    /// A value is present but unusable.
    #[error("pairing stanza is invalid: {0}")]
    Invalid(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::adv::AdvEncryptionType;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    struct Phone {
        account: KeyPair,
    }

    impl Phone {
        /// What the primary phone sends: details signed over the companion identity,
        /// wrapped with an HMAC keyed by the ADV secret.
        fn container(
            &self,
            rng: &mut StdRng,
            adv_secret: &[u8; 32],
            companion: &PublicKey,
            key_index: u32,
        ) -> Vec<u8> {
            let details = AdvDeviceIdentity {
                raw_id: Some(77),
                timestamp: Some(1_700_000_000),
                key_index: Some(key_index),
                account_type: Some(AdvEncryptionType::E2ee as i32),
                device_type: Some(AdvEncryptionType::E2ee as i32),
            }
            .encode_to_vec();
            let msg = account_signature_message(&ADV_ACCOUNT_SIGNATURE_PREFIX, &details, companion);
            let signed = AdvSignedDeviceIdentity {
                details: Some(details),
                account_signature_key: Some(self.account.public.as_bytes().to_vec()),
                account_signature: Some(self.account.private.sign(rng, &msg).to_vec()),
                device_signature: None,
            }
            .encode_to_vec();
            let mut mac = Hmac::<Sha256>::new_from_slice(adv_secret).unwrap();
            mac.update(&signed);
            AdvSignedDeviceIdentityHmac {
                details: Some(signed),
                hmac: Some(mac.finalize().into_bytes().to_vec()),
                account_type: Some(AdvEncryptionType::E2ee as i32),
            }
            .encode_to_vec()
        }
    }

    fn setup() -> (StdRng, Phone, KeyPair, [u8; 32]) {
        let mut rng = StdRng::seed_from_u64(42);
        let phone = Phone {
            account: KeyPair::generate(&mut rng),
        };
        let identity = KeyPair::generate(&mut rng);
        let mut adv = [0u8; 32];
        rng.fill_bytes(&mut adv);
        (rng, phone, identity, adv)
    }

    proptest::proptest! {
        #[test]
        fn qr_fields_round_trip(
            r in "[0-9A-Za-z@+/=]{1,80}",
            noise: [u8; 32],
            identity: [u8; 32],
            adv: [u8; 32],
            prefix: bool,
        ) {
            let qr = qr_string(&r, &PublicKey(noise), &PublicKey(identity), &adv, PairClientType::Firefox, prefix);
            let body = qr.strip_prefix(QR_LINK_PREFIX).unwrap_or(&qr);
            proptest::prop_assert_eq!(body.len() < qr.len(), prefix);
            let fields: Vec<&str> = body.split(',').collect();
            proptest::prop_assert_eq!(fields.len(), 5);
            proptest::prop_assert_eq!(fields[0], r.as_str());
            proptest::prop_assert_eq!(STANDARD.decode(fields[1]).unwrap(), noise.to_vec());
            proptest::prop_assert_eq!(STANDARD.decode(fields[2]).unwrap(), identity.to_vec());
            proptest::prop_assert_eq!(STANDARD.decode(fields[3]).unwrap(), adv.to_vec());
            proptest::prop_assert_eq!(fields[4], "3");
        }
    }

    #[test]
    fn qr_string_layout() {
        let qr = qr_string(
            "2@abc",
            &PublicKey([1; 32]),
            &PublicKey([2; 32]),
            &[3; 32],
            PairClientType::Chrome,
            false,
        );
        assert_eq!(
            qr,
            "2@abc,AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=,\
             AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=,\
             AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=,1"
        );
        let prefixed = qr_string(
            "r",
            &PublicKey([1; 32]),
            &PublicKey([2; 32]),
            &[3; 32],
            PairClientType::MacOs,
            true,
        );
        assert!(prefixed.starts_with("https://wa.me/settings/linked_devices#r,"));
        assert!(prefixed.ends_with(",c"));
    }

    #[test]
    fn accepts_and_signs_a_genuine_identity() {
        let (mut rng, phone, identity, adv) = setup();
        let container = phone.container(&mut rng, &adv, &identity.public, 3);
        let signed = process_device_identity(&container, &adv, &identity, &mut rng).unwrap();
        assert_eq!(signed.key_index, 3);
        assert_eq!(signed.account_signature_key, phone.account.public);

        let stored = AdvSignedDeviceIdentity::decode(&signed.account[..]).unwrap();
        assert_eq!(
            stored.account_signature_key.as_deref(),
            Some(&phone.account.public.as_bytes()[..])
        );
        let reply = AdvSignedDeviceIdentity::decode(&signed.reply[..]).unwrap();
        assert_eq!(reply.account_signature_key, None);
        assert_eq!(reply.details, stored.details);
        assert_eq!(reply.account_signature, stored.account_signature);
        let sig = reply.device_signature.unwrap();
        let msg = device_signature_message(
            stored.details.as_deref().unwrap(),
            &identity.public,
            &phone.account.public,
        );
        assert_eq!(&msg[..2], &[6, 1]);
        assert!(identity.public.verify(&msg, &sig));
        // The signature is over our key: another identity's check fails.
        assert!(!phone.account.public.verify(&msg, &sig));

        let node = pair_device_sign_reply("abc", &signed);
        let di = node
            .child_by_tag("pair-device-sign")
            .and_then(|n| n.child_by_tag("device-identity"))
            .unwrap();
        assert_eq!(di.attr_str("key-index"), Some("3"));
        assert_eq!(di.bytes(), Some(&signed.reply[..]));
        assert_eq!(node.attr_str("type"), Some("result"));
    }

    #[test]
    fn refuses_a_wrong_adv_secret() {
        let (mut rng, phone, identity, adv) = setup();
        let container = phone.container(&mut rng, &adv, &identity.public, 1);
        let mut other = adv;
        other[0] ^= 1;
        let err = process_device_identity(&container, &other, &identity, &mut rng).unwrap_err();
        assert_eq!(err, AdvError::HmacMismatch);
        assert_eq!(err.reply(), (401, "hmac-mismatch"));
    }

    #[test]
    fn refuses_an_identity_signed_for_another_companion() {
        let (mut rng, phone, identity, adv) = setup();
        let stranger = KeyPair::generate(&mut rng);
        let container = phone.container(&mut rng, &adv, &stranger.public, 1);
        let err = process_device_identity(&container, &adv, &identity, &mut rng).unwrap_err();
        assert_eq!(err, AdvError::AccountSignatureMismatch);
        assert_eq!(err.reply(), (401, "signature-mismatch"));
    }

    #[test]
    fn refuses_tampered_details_and_garbage() {
        let (mut rng, phone, identity, adv) = setup();
        let container = phone.container(&mut rng, &adv, &identity.public, 1);
        let mut tampered = container.clone();
        let last = tampered.len() - 40; // inside the signed details
        tampered[last] ^= 0x40;
        assert!(process_device_identity(&tampered, &adv, &identity, &mut rng).is_err());
        let err = process_device_identity(&[0xFF, 0xFF], &adv, &identity, &mut rng).unwrap_err();
        assert_eq!(err.reply(), (500, "internal-error"));
        // Correct HMAC over details that are not a signed identity.
        let mut mac = Hmac::<Sha256>::new_from_slice(&adv).unwrap();
        mac.update(&[0xFF]);
        let c = AdvSignedDeviceIdentityHmac {
            details: Some(vec![0xFF]),
            hmac: Some(mac.finalize().into_bytes().to_vec()),
            account_type: None,
        }
        .encode_to_vec();
        let err = process_device_identity(&c, &adv, &identity, &mut rng).unwrap_err();
        assert!(matches!(err, AdvError::MalformedIdentity(_)), "{err:?}");
    }

    #[test]
    fn parses_pair_device_and_pair_success() {
        let iq = Node::new("iq")
            .attr("id", "1")
            .child(Node::new("pair-device").with_children(vec![
                Node::new("ref").with_bytes(b"2@one".to_vec()),
                Node::new("ref").with_bytes(b"bad,ref".to_vec()),
                Node::new("other"),
                Node::new("ref").with_bytes(b"2@two".to_vec()),
            ]));
        assert_eq!(parse_pair_device(&iq).unwrap(), ["2@one", "2@two"]);
        assert!(parse_pair_device(&Node::new("iq")).is_err());

        let ps = Node::new("iq")
            .attr("id", "p1")
            .attr("t", "1700000000")
            .child(Node::new("pair-success").with_children(vec![
                Node::new("device-identity").with_bytes(vec![1, 2, 3]),
                Node::new("device")
                    .attr("jid", Jid::parse("5511:7@s.whatsapp.net").unwrap())
                    .attr("lid", Jid::parse("999:7@lid").unwrap()),
                Node::new("platform").attr("name", "android"),
            ]));
        let info = parse_pair_success(&ps).unwrap();
        assert_eq!(info.iq_id, "p1");
        assert_eq!(info.jid.to_string(), "5511:7@s.whatsapp.net");
        assert_eq!(info.lid.unwrap().to_string(), "999:7@lid");
        assert_eq!(info.platform, "android");
        assert_eq!(info.business_name, "");
        assert_eq!(info.server_time, Some(1_700_000_000));

        let wrong_ns =
            Node::new("iq")
                .attr("id", "p1")
                .child(Node::new("pair-success").with_children(vec![
                    Node::new("device-identity").with_bytes(vec![1]),
                    Node::new("device").attr("jid", Jid::parse("5511:7@lid").unwrap()),
                ]));
        assert!(parse_pair_success(&wrong_ns).is_err());
    }

    #[test]
    fn client_type_codes() {
        assert_eq!(
            PairClientType::for_platform(PlatformType::Chrome).as_str(),
            "1"
        );
        assert_eq!(
            PairClientType::for_platform(PlatformType::Desktop).as_str(),
            "9"
        );
        assert_eq!(PairClientType::Android.as_str(), "e");
    }
}
