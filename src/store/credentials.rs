//! The device's own long-term state: keys generated before the first connection and what
//! pairing and login add to them (PROTOCOL.md §6.5).

use rand_core::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::error::{Error, Result};
use crate::jid::Jid;
use crate::signal::identity::MAX_PREKEY_ID;
use crate::signal::{KeyPair, LocalIdentity};

/// Length of the ADV secret key (and of a message secret).
pub const SECRET_LEN: usize = 32;

/// 32 secret bytes: the ADV secret key, or an event's message secret.
///
/// Never printed (`Debug` is redacted), compared in constant time, wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes([u8; SECRET_LEN]);

impl SecretBytes {
    /// Fresh random bytes.
    pub fn generate<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; SECRET_LEN];
        rng.fill_bytes(&mut bytes);
        SecretBytes(bytes)
    }

    /// Wraps 32 bytes.
    pub fn from_array(bytes: [u8; SECRET_LEN]) -> Self {
        SecretBytes(bytes)
    }

    /// Copies a 32-byte slice; refuses any other length.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let array: [u8; SECRET_LEN] = bytes.try_into().map_err(|_| {
            Error::invalid(
                "secret",
                format!("{} bytes, want {SECRET_LEN}", bytes.len()),
            )
        })?;
        Ok(SecretBytes(array))
    }

    /// The raw bytes (to use them; never log them).
    pub fn as_bytes(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for SecretBytes {}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

/// Everything the device keeps about itself.
///
/// Generated once before the first connection ([`DeviceCredentials::generate`]), filled
/// in by pairing (`pn`, `lid`, `account`, `platform`, `business_name`) and updated by
/// login (`routing_info`, `login_counter`, `server_time_offset_ms`) and pre-key uploads
/// (`next_prekey_id`). The signed prekey itself lives in the signed-prekey table under
/// `signed_prekey_id`.
///
/// `Debug` shows no key material: private keys and the ADV secret are redacted, byte
/// strings are shown by length. Private keys are zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceCredentials {
    /// The Noise static key pair (the server knows the device by it).
    pub noise_key: KeyPair,
    /// The Signal identity key pair and registration id.
    pub identity: LocalIdentity,
    /// Id of the current signed prekey (24-bit).
    pub signed_prekey_id: u32,
    /// The ADV secret shown in the QR code; verifies the pair-success HMAC.
    pub adv_secret: SecretBytes,
    /// Own phone-number device JID (`<digits>:<device>@s.whatsapp.net`), once paired.
    pub pn: Option<Jid>,
    /// Own LID device JID (`<digits>:<device>@lid`), once paired.
    pub lid: Option<Jid>,
    /// The full `ADVSignedDeviceIdentity` bytes from pairing, account signature key
    /// included (sent as `<device-identity>` with every pkmsg), once paired.
    pub account: Option<Vec<u8>>,
    /// The platform the primary phone reported at pairing (`android`, `iphone`, …).
    pub platform: String,
    /// Our push name (shown to recipients as `notify`).
    pub push_name: String,
    /// Business name from pairing (empty for personal accounts).
    pub business_name: String,
    /// Routing info from the server's `<success>`/edge routing, echoed on reconnect.
    pub routing_info: Option<Vec<u8>>,
    /// How many times the device has logged in (incremented per successful login).
    pub login_counter: u64,
    /// The id the next generated one-time prekey gets (24-bit ids, starting at 1).
    pub next_prekey_id: u32,
    /// Server clock minus local clock in milliseconds, from the last `<success t>`.
    pub server_time_offset_ms: i64,
}

impl DeviceCredentials {
    /// Fresh credentials for a device that has never connected: new Noise and identity
    /// key pairs, registration id and ADV secret; signed prekey id 1; prekey ids from 1.
    pub fn generate<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        DeviceCredentials {
            noise_key: KeyPair::generate(rng),
            identity: LocalIdentity::generate(rng),
            signed_prekey_id: 1,
            adv_secret: SecretBytes::generate(rng),
            pn: None,
            lid: None,
            account: None,
            platform: String::new(),
            push_name: String::new(),
            business_name: String::new(),
            routing_info: None,
            login_counter: 0,
            next_prekey_id: 1,
            server_time_offset_ms: 0,
        }
    }

    /// True once pairing stored our phone-number JID.
    pub fn is_paired(&self) -> bool {
        self.pn.is_some()
    }

    /// Refuses out-of-range ids and JIDs in the wrong namespace.
    pub(crate) fn validate(&self) -> Result<()> {
        let what = "device credentials";
        if self.signed_prekey_id > MAX_PREKEY_ID {
            return Err(Error::invalid(
                what,
                format!("signed prekey id {} is not 24-bit", self.signed_prekey_id),
            ));
        }
        // next_prekey_id may be one past the last usable id (all ids used up).
        if self.next_prekey_id > MAX_PREKEY_ID + 1 {
            return Err(Error::invalid(
                what,
                format!("next prekey id {} is not 24-bit", self.next_prekey_id),
            ));
        }
        if let Some(pn) = &self.pn
            && !pn.is_pn()
        {
            return Err(Error::invalid(what, format!("own PN JID {pn} is not a PN")));
        }
        for jid in self.pn.iter().chain(&self.lid) {
            super::records::check_jid(what, jid)?;
        }
        if let Some(lid) = &self.lid
            && !lid.is_lid()
        {
            return Err(Error::invalid(what, format!("own LID {lid} is not a LID")));
        }
        Ok(())
    }
}

fn len_of(bytes: &Option<Vec<u8>>) -> Option<usize> {
    bytes.as_ref().map(Vec::len)
}

impl std::fmt::Debug for DeviceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCredentials")
            .field("noise_key", &self.noise_key)
            .field("identity", &self.identity)
            .field("signed_prekey_id", &self.signed_prekey_id)
            .field("adv_secret", &self.adv_secret)
            .field("pn", &self.pn)
            .field("lid", &self.lid)
            .field("account_len", &len_of(&self.account))
            .field("platform", &self.platform)
            .field("push_name", &self.push_name)
            .field("business_name", &self.business_name)
            .field("routing_info_len", &len_of(&self.routing_info))
            .field("login_counter", &self.login_counter)
            .field("next_prekey_id", &self.next_prekey_id)
            .field("server_time_offset_ms", &self.server_time_offset_ms)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn debug_shows_no_key_material() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut creds = DeviceCredentials::generate(&mut rng);
        creds.account = Some(vec![0xAB; 300]);
        let text = format!("{creds:?}");
        let private = hex::encode(creds.identity.key_pair.private.to_bytes());
        let noise = hex::encode(creds.noise_key.private.to_bytes());
        let adv = hex::encode(creds.adv_secret.as_bytes());
        for secret in [private, noise, adv] {
            assert!(!text.contains(&secret), "{text}");
        }
        assert!(!text.contains("abab"), "{text}");
        assert!(text.contains("account_len: Some(300)"), "{text}");
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn validation_refuses_out_of_range_and_wrong_namespaces() {
        let mut rng = StdRng::seed_from_u64(8);
        let good = DeviceCredentials::generate(&mut rng);
        good.validate().unwrap();
        let mut c = good.clone();
        c.next_prekey_id = MAX_PREKEY_ID + 1;
        c.validate().unwrap();
        c.next_prekey_id = MAX_PREKEY_ID + 2;
        assert!(c.validate().is_err());
        let mut c = good.clone();
        c.signed_prekey_id = MAX_PREKEY_ID + 1;
        assert!(c.validate().is_err());
        let mut c = good.clone();
        c.pn = Some(Jid::parse("123:4@lid").unwrap());
        assert!(c.validate().unwrap_err().to_string().contains("not a PN"));
        let mut c = good;
        c.lid = Some(Jid::parse("123:4@s.whatsapp.net").unwrap());
        assert!(c.validate().is_err());
    }

    #[test]
    fn secret_bytes_refuse_wrong_length() {
        assert!(SecretBytes::from_slice(&[0; 31]).is_err());
        assert!(SecretBytes::from_slice(&[0; 33]).is_err());
        let s = SecretBytes::from_slice(&[9; 32]).unwrap();
        assert_eq!(s, SecretBytes::from_array([9; 32]));
        assert_ne!(s, SecretBytes::from_array([8; 32]));
        assert_eq!(format!("{s:?}"), "SecretBytes(<redacted>)");
    }
}
