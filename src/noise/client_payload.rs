//! Builders for the `ClientPayload` a client encrypts into its Noise ClientFinish: the
//! **registration** payload of a device that is not paired yet (its Signal keys, so the
//! server can register it when the phone scans the QR) and the **login** payload of a
//! paired device (its phone number and device id). Field values follow WhatsApp Web as
//! described in PROTOCOL.md §2.6. Inputs are plain values, not a store.

use md5::{Digest, Md5};

use crate::proto::companion::DeviceProps;
use crate::proto::companion::device_props;
use crate::proto::wa6::ClientPayload;
use crate::proto::wa6::client_payload::{
    ConnectReason, ConnectType, DevicePairingRegistrationData, UserAgent, WebInfo, user_agent,
    web_info,
};
use crate::signal::curve::{DJB_TYPE, PublicKey, SIGNATURE_LEN};

/// A WhatsApp Web version `primary.secondary.tertiary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WaWebVersion {
    /// Always 2 today.
    pub primary: u32,
    /// 3000 for current WhatsApp Web builds.
    pub secondary: u32,
    /// The build number.
    pub tertiary: u32,
}

impl WaWebVersion {
    /// The version waevent announces: the one whatsmeow shipped in its 2026-08 snapshot
    /// (PROTOCOL.md §2.6). The real server answers an outdated version with failure 405;
    /// pass a newer one through the builders' `version` field when that happens.
    pub const CURRENT: WaWebVersion = WaWebVersion {
        primary: 2,
        secondary: 3000,
        tertiary: 1_045_649_367,
    };

    /// `buildHash`: MD5 of the ASCII string `"primary.secondary.tertiary"`.
    pub fn build_hash(&self) -> [u8; 16] {
        Md5::digest(self.to_string().as_bytes()).into()
    }

    fn user_agent_version(&self) -> user_agent::AppVersion {
        user_agent::AppVersion {
            primary: Some(self.primary),
            secondary: Some(self.secondary),
            tertiary: Some(self.tertiary),
            ..Default::default()
        }
    }
}

impl Default for WaWebVersion {
    fn default() -> Self {
        Self::CURRENT
    }
}

impl std::fmt::Display for WaWebVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.primary, self.secondary, self.tertiary)
    }
}

/// The name shown on the phone's linked-devices list unless another is given.
pub const DEFAULT_DEVICE_OS: &str = "waevent";

/// Largest signed-prekey id: it travels as 3 big-endian bytes.
pub const MAX_SIGNED_PREKEY_ID: u32 = 0x00FF_FFFF;

/// Why a payload could not be built from the given values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientPayloadError {
    /// The signed-prekey id does not fit the 3-byte `eSkeyID`.
    #[error("signed prekey id {0} does not fit in 3 bytes (max {MAX_SIGNED_PREKEY_ID})")]
    SignedPreKeyId(u32),
    /// The phone-number user is not 1–20 ASCII digits fitting a u64.
    #[error("phone-number user {0:?} is not a number that fits in 64 bits")]
    Username(String),
}

/// What a not-yet-paired device registers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Signal registration id (sent as 4 bytes big-endian).
    pub registration_id: u32,
    /// Identity public key (32 raw bytes on the wire).
    pub identity_key: PublicKey,
    /// Signed prekey id (must fit 3 bytes).
    pub signed_prekey_id: u32,
    /// Signed prekey public key.
    pub signed_prekey_public: PublicKey,
    /// XEdDSA signature by the identity key over `0x05 || signed prekey public`.
    pub signed_prekey_signature: [u8; SIGNATURE_LEN],
    /// The name shown on the phone's linked-devices list (`DeviceProps.os`).
    pub device_os: String,
    /// Browser type shown on the phone (`DeviceProps.platformType`).
    pub platform_type: device_props::PlatformType,
    /// WhatsApp Web version announced (and hashed into `buildHash`).
    pub version: WaWebVersion,
}

impl Registration {
    /// A registration with the defaults: device name "waevent", platform Chrome, the
    /// current WhatsApp Web version.
    pub fn new(
        registration_id: u32,
        identity_key: PublicKey,
        signed_prekey_id: u32,
        signed_prekey_public: PublicKey,
        signed_prekey_signature: [u8; SIGNATURE_LEN],
    ) -> Self {
        Registration {
            registration_id,
            identity_key,
            signed_prekey_id,
            signed_prekey_public,
            signed_prekey_signature,
            device_os: DEFAULT_DEVICE_OS.to_owned(),
            platform_type: device_props::PlatformType::Chrome,
            version: WaWebVersion::CURRENT,
        }
    }
}

/// What a paired device logs in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The account's phone-number user (digits of the PN JID, e.g. "5511999999999").
    pub pn_user: String,
    /// This companion's device id.
    pub device: u16,
    /// Push name to announce, if any.
    pub push_name: Option<String>,
    /// `passive`: true logs in passive (whatsmeow and Baileys do, then send the
    /// `<active/>` IQ); WhatsApp Web sends false. The server delivers offline messages
    /// only after `<active/>` either way.
    pub passive: bool,
    /// Login counter (`lc`), when the caller persists one.
    pub login_counter: Option<i32>,
    /// WhatsApp Web version announced.
    pub version: WaWebVersion,
}

impl Login {
    /// A login with the defaults: passive (then `<active/>`), no push name, no counter,
    /// the current WhatsApp Web version.
    pub fn new(pn_user: impl Into<String>, device: u16) -> Self {
        Login {
            pn_user: pn_user.into(),
            device,
            push_name: None,
            passive: true,
            login_counter: None,
            version: WaWebVersion::CURRENT,
        }
    }
}

/// The fields every payload shares: WhatsApp Web's user agent and web info, Wi-Fi,
/// user-activated.
fn common(version: &WaWebVersion) -> ClientPayload {
    ClientPayload {
        user_agent: Some(UserAgent {
            platform: Some(user_agent::Platform::Web as i32),
            app_version: Some(version.user_agent_version()),
            mcc: Some("000".to_owned()),
            mnc: Some("000".to_owned()),
            os_version: Some("0.1".to_owned()),
            manufacturer: Some(String::new()),
            device: Some("Desktop".to_owned()),
            os_build_number: Some("0.1".to_owned()),
            release_channel: Some(user_agent::ReleaseChannel::Release as i32),
            locale_language_iso6391: Some("en".to_owned()),
            locale_country_iso31661_alpha2: Some("US".to_owned()),
            ..Default::default()
        }),
        web_info: Some(WebInfo {
            web_sub_platform: Some(web_info::WebSubPlatform::WebBrowser as i32),
            ..Default::default()
        }),
        connect_type: Some(ConnectType::WifiUnknown as i32),
        connect_reason: Some(ConnectReason::UserActivated as i32),
        ..Default::default()
    }
}

/// The `DeviceProps` a registration announces (serialized into `deviceProps`).
pub fn device_props(device_os: &str, platform_type: device_props::PlatformType) -> DeviceProps {
    DeviceProps {
        os: Some(device_os.to_owned()),
        version: Some(device_props::AppVersion {
            primary: Some(0),
            secondary: Some(1),
            tertiary: Some(0),
            ..Default::default()
        }),
        platform_type: Some(platform_type as i32),
        require_full_sync: Some(false),
        history_sync_config: Some(device_props::HistorySyncConfig {
            storage_quota_mb: Some(10240),
            inline_initial_payload_in_e2_ee_msg: Some(true),
            support_call_log_history: Some(false),
            support_bot_user_agent_chat_history: Some(true),
            support_cag_reactions_and_polls: Some(true),
            support_biz_hosted_msg: Some(true),
            support_recent_sync_chunk_message_count_tuning: Some(true),
            support_hosted_group_msg: Some(true),
            support_fbid_bot_chat_history: Some(true),
            support_message_association: Some(true),
            ..Default::default()
        }),
    }
}

/// The registration payload: common fields, `passive = false`, `pull = false` and the
/// `devicePairingData` (eRegid 4 bytes BE, eKeytype `[5]`, eIdent, eSkeyID 3 bytes BE,
/// eSkeyVal, eSkeySig, buildHash, deviceProps). Refuses a signed-prekey id above 2²⁴−1.
pub fn registration_payload(r: &Registration) -> Result<ClientPayload, ClientPayloadError> {
    if r.signed_prekey_id > MAX_SIGNED_PREKEY_ID {
        return Err(ClientPayloadError::SignedPreKeyId(r.signed_prekey_id));
    }
    let [_, id1, id2, id3] = r.signed_prekey_id.to_be_bytes();
    let props = prost::Message::encode_to_vec(&device_props(&r.device_os, r.platform_type));
    Ok(ClientPayload {
        passive: Some(false),
        pull: Some(false),
        device_pairing_data: Some(DevicePairingRegistrationData {
            e_regid: Some(r.registration_id.to_be_bytes().to_vec()),
            e_keytype: Some(vec![DJB_TYPE]),
            e_ident: Some(r.identity_key.as_bytes().to_vec()),
            e_skey_id: Some(vec![id1, id2, id3]),
            e_skey_val: Some(r.signed_prekey_public.as_bytes().to_vec()),
            e_skey_sig: Some(r.signed_prekey_signature.to_vec()),
            build_hash: Some(r.version.build_hash().to_vec()),
            device_props: Some(props),
        }),
        ..common(&r.version)
    })
}

/// The login payload: common fields plus `username` (the phone number as an integer),
/// `device`, `passive`, `pull = true`, and optionally `pushName` and `lc`. Refuses a
/// phone-number user that is not 1–20 digits fitting a u64.
pub fn login_payload(l: &Login) -> Result<ClientPayload, ClientPayloadError> {
    let user = &l.pn_user;
    if user.is_empty() || user.len() > 20 || !user.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ClientPayloadError::Username(user.clone()));
    }
    let username: u64 = user
        .parse()
        .map_err(|_| ClientPayloadError::Username(user.clone()))?;
    Ok(ClientPayload {
        username: Some(username),
        device: Some(u32::from(l.device)),
        passive: Some(l.passive),
        pull: Some(true),
        push_name: l.push_name.clone().filter(|n| !n.is_empty()),
        lc: l.login_counter,
        ..common(&l.version)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn registration() -> Registration {
        Registration::new(
            0x0102_0304,
            PublicKey([1; 32]),
            0x0A0B0C,
            PublicKey([2; 32]),
            [3; 64],
        )
    }

    #[test]
    fn build_hash_is_md5_of_the_dotted_version() {
        let v = WaWebVersion {
            primary: 2,
            secondary: 2340,
            tertiary: 16,
        };
        assert_eq!(v.to_string(), "2.2340.16");
        // Expected values computed with coreutils: printf '2.2340.16' | md5sum
        assert_eq!(
            hex::encode(v.build_hash()),
            "395e111c582dd710aaac51fc09614984"
        );
        assert_eq!(WaWebVersion::CURRENT.to_string(), "2.3000.1045649367");
        assert_eq!(
            hex::encode(WaWebVersion::CURRENT.build_hash()),
            "9fa53af9421567b114e33c9bb1ef7db2"
        );
    }

    #[test]
    fn registration_fields_have_whatsapps_layout() {
        let p = registration_payload(&registration()).unwrap();
        let d = p.device_pairing_data.as_ref().unwrap();
        assert_eq!(d.e_regid.as_deref(), Some(&[1, 2, 3, 4][..]));
        assert_eq!(d.e_keytype.as_deref(), Some(&[5][..]));
        assert_eq!(d.e_ident.as_deref(), Some(&[1; 32][..]));
        assert_eq!(d.e_skey_id.as_deref(), Some(&[0x0A, 0x0B, 0x0C][..]));
        assert_eq!(d.e_skey_val.as_deref(), Some(&[2; 32][..]));
        assert_eq!(d.e_skey_sig.as_deref(), Some(&[3; 64][..]));
        assert_eq!(d.build_hash.as_deref().map(<[u8]>::len), Some(16));
        let props = DeviceProps::decode(d.device_props.as_deref().unwrap()).unwrap();
        assert_eq!(props.os.as_deref(), Some("waevent"));
        assert_eq!(
            props.platform_type,
            Some(device_props::PlatformType::Chrome as i32)
        );
        assert_eq!(p.passive, Some(false));
        assert_eq!(p.pull, Some(false));
        assert_eq!(p.username, None);
        assert_eq!(p.device, None);
        let ua = p.user_agent.as_ref().unwrap();
        assert_eq!(ua.platform, Some(14));
        assert_eq!(ua.app_version.as_ref().unwrap().secondary, Some(3000));
        assert_eq!(p.connect_type, Some(1));
        assert_eq!(p.connect_reason, Some(1));
        assert_eq!(p.web_info.as_ref().unwrap().web_sub_platform, Some(0));
    }

    #[test]
    fn signed_prekey_id_must_fit_three_bytes() {
        let mut r = registration();
        r.signed_prekey_id = 0x0100_0000;
        assert_eq!(
            registration_payload(&r),
            Err(ClientPayloadError::SignedPreKeyId(0x0100_0000))
        );
        r.signed_prekey_id = MAX_SIGNED_PREKEY_ID;
        assert!(registration_payload(&r).is_ok());
    }

    #[test]
    fn login_fields() {
        let mut l = Login::new("5511999999999", 7);
        l.push_name = Some("Ana".into());
        let p = login_payload(&l).unwrap();
        assert_eq!(p.username, Some(5_511_999_999_999));
        assert_eq!(p.device, Some(7));
        assert_eq!(p.passive, Some(true));
        assert_eq!(p.pull, Some(true));
        assert_eq!(p.push_name.as_deref(), Some("Ana"));
        assert_eq!(p.device_pairing_data, None);
        for bad in [
            "",
            "+5511",
            "55 11",
            "99999999999999999999",
            "123456789012345678901",
        ] {
            assert!(login_payload(&Login::new(bad, 1)).is_err(), "{bad}");
        }
    }
}
