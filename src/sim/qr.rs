//! The pairing QR string as WhatsApp's companions render it (PROTOCOL.md §6.2):
//! `ref,base64(noisePub),base64(identityPub),base64(advSecret)[,clientType]`, standard
//! base64 with padding, optionally behind `https://wa.me/settings/linked_devices#`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::SimError;
use crate::proto::companion::device_props::PlatformType;
use crate::signal::curve::PublicKey;

/// Prefix whatsmeow and Baileys put in front of the QR data (lets a camera app open it).
pub const QR_LINK_PREFIX: &str = "https://wa.me/settings/linked_devices#";

/// Longest QR string accepted (real ones are about 200 characters).
pub const MAX_QR_LEN: usize = 2048;

/// The fields of a pairing QR code.
#[derive(Clone, PartialEq, Eq)]
pub struct QrData {
    /// The pair-device ref shown.
    pub reference: String,
    /// The client's Noise static key.
    pub noise_key: PublicKey,
    /// The client's Signal identity key.
    pub identity_key: PublicKey,
    /// The client's ADV secret (32 bytes), `None` when the field is empty.
    pub adv_secret: Option<[u8; 32]>,
    /// The `PairClientType` field, when present.
    pub client_type: Option<String>,
}

impl std::fmt::Debug for QrData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QrData")
            .field("reference", &self.reference)
            .field("noise_key", &self.noise_key)
            .field("identity_key", &self.identity_key)
            .field("adv_secret", &self.adv_secret.map(|_| "<redacted>"))
            .field("client_type", &self.client_type)
            .finish()
    }
}

fn key_field(name: &str, text: &str) -> Result<[u8; 32], SimError> {
    let bytes = STANDARD
        .decode(text)
        .map_err(|e| SimError::BadQr(format!("{name} is not standard base64: {e}")))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| SimError::BadQr(format!("{name} is {} bytes, expected 32", bytes.len())))
}

impl QrData {
    /// Parses a QR string (with or without the `wa.me` prefix). Refuses anything that is
    /// not 4 or 5 comma-separated fields with 32-byte base64 keys; an empty ADV field is
    /// accepted and gives `adv_secret: None`.
    pub fn parse(qr: &str) -> Result<QrData, SimError> {
        if qr.len() > MAX_QR_LEN {
            return Err(SimError::BadQr(format!(
                "{} characters, longer than {MAX_QR_LEN}",
                qr.len()
            )));
        }
        let data = qr.trim().strip_prefix(QR_LINK_PREFIX).unwrap_or(qr.trim());
        let fields: Vec<&str> = data.split(',').collect();
        let (reference, noise, identity, adv, client_type) = match fields.as_slice() {
            [r, n, i, a] => (*r, *n, *i, *a, None),
            [r, n, i, a, t] => (*r, *n, *i, *a, Some((*t).to_owned())),
            _ => {
                return Err(SimError::BadQr(format!(
                    "{} comma-separated fields, expected 4 or 5 (ref,noise,identity,adv[,type])",
                    fields.len()
                )));
            }
        };
        if reference.is_empty() {
            return Err(SimError::BadQr("the ref is empty".into()));
        }
        let adv_secret = if adv.is_empty() {
            None
        } else {
            Some(key_field("ADV secret", adv)?)
        };
        Ok(QrData {
            reference: reference.to_owned(),
            noise_key: PublicKey(key_field("noise key", noise)?),
            identity_key: PublicKey(key_field("identity key", identity)?),
            adv_secret,
            client_type,
        })
    }

    /// The QR string without the link prefix; the ADV field is empty when unknown and the
    /// client type is left out when absent.
    pub fn render(&self) -> String {
        let adv = self
            .adv_secret
            .map(|s| STANDARD.encode(s))
            .unwrap_or_default();
        let mut out = format!(
            "{},{},{},{}",
            self.reference,
            STANDARD.encode(self.noise_key.as_bytes()),
            STANDARD.encode(self.identity_key.as_bytes()),
            adv
        );
        if let Some(t) = &self.client_type {
            out.push(',');
            out.push_str(t);
        }
        out
    }
}

/// The QR `PairClientType` digit for the browser a `DeviceProps.platformType` names
/// (`0` unknown, `1` Chrome, `2` Edge, `3` Firefox, `4` IE, `5` Opera, `6` Safari,
/// `7` Electron for desktop apps, `8` UWP).
pub fn pair_client_type(platform: Option<i32>) -> &'static str {
    match platform.and_then(|p| PlatformType::try_from(p).ok()) {
        Some(PlatformType::Chrome) => "1",
        Some(PlatformType::Edge) => "2",
        Some(PlatformType::Firefox) => "3",
        Some(PlatformType::Ie) => "4",
        Some(PlatformType::Opera) => "5",
        Some(PlatformType::Safari) => "6",
        Some(PlatformType::Desktop) => "7",
        Some(PlatformType::Uwp) => "8",
        _ => "0",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> QrData {
        QrData {
            reference: "2@abc+/=".into(),
            noise_key: PublicKey([1; 32]),
            identity_key: PublicKey([2; 32]),
            adv_secret: Some([3; 32]),
            client_type: Some("1".into()),
        }
    }

    #[test]
    fn render_parse_round_trip_with_and_without_prefix_and_type() {
        let q = sample();
        let s = q.render();
        assert_eq!(
            s,
            format!(
                "2@abc+/=,{},{},{},1",
                STANDARD.encode([1; 32]),
                STANDARD.encode([2; 32]),
                STANDARD.encode([3; 32])
            )
        );
        assert_eq!(QrData::parse(&s).unwrap(), q);
        assert_eq!(QrData::parse(&format!("{QR_LINK_PREFIX}{s}")).unwrap(), q);
        let four = QrData {
            client_type: None,
            ..sample()
        };
        assert_eq!(QrData::parse(&four.render()).unwrap(), four);
        let no_adv = QrData {
            adv_secret: None,
            ..sample()
        };
        assert!(no_adv.render().contains(",,1"));
        assert_eq!(QrData::parse(&no_adv.render()).unwrap(), no_adv);
    }

    #[test]
    fn malformed_qr_strings_are_refused_with_the_reason() {
        let good = sample().render();
        let cases = [
            ("", "fields"),
            ("a,b", "fields"),
            (&good.replacen("2@abc+/=", "", 1)[..], "ref is empty"),
            (&format!("{good},x"), "fields"),
            (
                &good.replacen(&STANDARD.encode([1; 32]), "AAAA", 1)[..],
                "3 bytes",
            ),
            (
                &good.replacen(&STANDARD.encode([2; 32]), "!!", 1)[..],
                "base64",
            ),
        ];
        for (qr, want) in cases {
            let err = QrData::parse(qr).unwrap_err().to_string();
            assert!(err.contains(want), "{qr:?}: {err}");
        }
        assert!(QrData::parse(&"x".repeat(MAX_QR_LEN + 1)).is_err());
    }

    #[test]
    fn debug_hides_the_adv_secret() {
        let s = format!("{:?}", sample());
        assert!(!s.contains("[3, 3"));
        assert!(s.contains("redacted"));
    }

    #[test]
    fn client_type_digits() {
        assert_eq!(pair_client_type(Some(PlatformType::Chrome as i32)), "1");
        assert_eq!(pair_client_type(Some(PlatformType::Firefox as i32)), "3");
        assert_eq!(pair_client_type(Some(9999)), "0");
        assert_eq!(pair_client_type(None), "0");
    }
}
