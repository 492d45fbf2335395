//! WhatsApp JIDs ("Jabber IDs"): parsing, formatting and comparison.
//!
//! A JID names a user, a device of a user, a group, a broadcast list or a server:
//! `user@server`, the AD ("addressable device") form `user:device@server`, and
//! whatsmeow's agent form `user.agent:device@server`. Device 0 is the primary phone.
//!
//! [`Jid::parse_recipient`] additionally accepts what gateway users type (phone numbers
//! with `+`, spaces, dashes or parentheses; Z-API group ids such as
//! `120363019502650977-group`) and refuses everything else with
//! `Invalid phone number format: <detail>`.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// Server of phone-number (PN) users, and the bare server JID IQs are addressed to.
pub const DEFAULT_USER_SERVER: &str = "s.whatsapp.net";
/// Legacy PN server found in protobufs and ids; normalised to [`DEFAULT_USER_SERVER`].
pub const LEGACY_USER_SERVER: &str = "c.us";
/// Server of groups.
pub const GROUP_SERVER: &str = "g.us";
/// Server of LID ("hidden user") accounts.
pub const HIDDEN_USER_SERVER: &str = "lid";
/// Server of broadcast lists and `status@broadcast`.
pub const BROADCAST_SERVER: &str = "broadcast";
/// Server of channels.
pub const NEWSLETTER_SERVER: &str = "newsletter";
/// Server of hosted (business / Cloud API) PN devices.
pub const HOSTED_SERVER: &str = "hosted";
/// Server of hosted LID devices.
pub const HOSTED_LID_SERVER: &str = "hosted.lid";
/// Server of Messenger users.
pub const MESSENGER_SERVER: &str = "msgr";
/// Server of interop users.
pub const INTEROP_SERVER: &str = "interop";
/// Server of Meta AI bots.
pub const BOT_SERVER: &str = "bot";
/// The call service (`@call`), target of call-link requests.
pub const CALL_SERVER: &str = "call";

/// Servers a JID may name. Anything else is refused by the parser.
pub const KNOWN_SERVERS: &[&str] = &[
    DEFAULT_USER_SERVER,
    GROUP_SERVER,
    HIDDEN_USER_SERVER,
    BROADCAST_SERVER,
    NEWSLETTER_SERVER,
    HOSTED_SERVER,
    HOSTED_LID_SERVER,
    MESSENGER_SERVER,
    INTEROP_SERVER,
    BOT_SERVER,
    CALL_SERVER,
];

/// Longest JID text accepted by the parser (anything longer is not a JID).
pub const MAX_JID_LEN: usize = 256;

/// A parsed JID.
///
/// Two JIDs compare equal when every part is equal; use [`Jid::to_non_ad`] to compare
/// users regardless of device. `c.us` is normalised to `s.whatsapp.net` on parse.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Jid {
    /// User part: phone number digits, LID digits, group id; empty for a server JID.
    pub user: String,
    /// Agent byte (whatsmeow's `RawAgent`); 0 for ordinary JIDs.
    pub agent: u8,
    /// Device number; 0 is the primary phone (and the only value for non-AD JIDs).
    pub device: u16,
    /// Integrator id of interop JIDs; 0 otherwise.
    pub integrator: u16,
    /// Server part, e.g. `s.whatsapp.net`, `g.us`, `lid`.
    /// Borrowed from [`KNOWN_SERVERS`] whenever it is one of them, so cloning a JID
    /// copies only its user.
    pub server: Cow<'static, str>,
}

/// `server` as one of the [`KNOWN_SERVERS`] constants without a copy, or copied when
/// it is none of them.
fn intern_server(server: &str) -> Cow<'static, str> {
    match KNOWN_SERVERS.iter().find(|known| **known == server) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(server.to_owned()),
    }
}

/// Why a string is not a JID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JidError {
    /// The text is not a JID; the detail says what is wrong.
    #[error("invalid JID {text:?}: {detail}")]
    Invalid {
        /// The offending text (truncated to 64 characters).
        text: String,
        /// What is wrong with it.
        detail: &'static str,
    },
    /// A recipient given by a gateway user is neither a phone number, a group id nor a JID.
    #[error("Invalid phone number format: {0}")]
    InvalidPhoneNumber(String),
}

fn invalid(text: &str, detail: &'static str) -> JidError {
    JidError::Invalid {
        text: text.chars().take(64).collect(),
        detail,
    }
}

impl Jid {
    /// A JID with no device part: `user@server`.
    pub fn new(user: impl Into<String>, server: impl AsRef<str>) -> Self {
        Jid {
            user: user.into(),
            server: intern_server(server.as_ref()),
            ..Default::default()
        }
    }

    /// A device JID `user:device@server`.
    pub fn new_ad(user: impl Into<String>, device: u16, server: impl AsRef<str>) -> Self {
        Jid {
            user: user.into(),
            device,
            server: intern_server(server.as_ref()),
            ..Default::default()
        }
    }

    /// The bare server JID `s.whatsapp.net`, target of most IQs.
    pub fn server_jid() -> Self {
        Jid::new("", DEFAULT_USER_SERVER)
    }

    /// The group JID `<id>@g.us`.
    pub fn group(id: impl Into<String>) -> Self {
        Jid::new(id, GROUP_SERVER)
    }

    /// A phone-number user JID `<digits>@s.whatsapp.net`.
    pub fn pn_user(digits: impl Into<String>) -> Self {
        Jid::new(digits, DEFAULT_USER_SERVER)
    }

    /// A LID user JID `<digits>@lid`.
    pub fn lid_user(digits: impl Into<String>) -> Self {
        Jid::new(digits, HIDDEN_USER_SERVER)
    }

    /// True for `@g.us`.
    pub fn is_group(&self) -> bool {
        self.server == GROUP_SERVER
    }

    /// True for `@lid` and `@hosted.lid`.
    pub fn is_lid(&self) -> bool {
        self.server == HIDDEN_USER_SERVER || self.server == HOSTED_LID_SERVER
    }

    /// True for `@s.whatsapp.net` and `@hosted`.
    pub fn is_pn(&self) -> bool {
        self.server == DEFAULT_USER_SERVER || self.server == HOSTED_SERVER
    }

    /// True for hosted (business / Cloud API) devices, which group sends skip.
    pub fn is_hosted(&self) -> bool {
        self.server == HOSTED_SERVER || self.server == HOSTED_LID_SERVER
    }

    /// True for `@broadcast` JIDs.
    pub fn is_broadcast(&self) -> bool {
        self.server == BROADCAST_SERVER
    }

    /// True when this JID names a specific device (agent, device or the AD servers).
    pub fn is_ad(&self) -> bool {
        self.agent != 0 || self.device != 0
    }

    /// The bare server JID has an empty user.
    pub fn is_server(&self) -> bool {
        self.user.is_empty()
    }

    /// The user JID without agent and device (`user@server`).
    pub fn to_non_ad(&self) -> Jid {
        Jid {
            user: self.user.clone(),
            agent: 0,
            device: 0,
            integrator: self.integrator,
            server: self.server.clone(),
        }
    }

    /// The same user with another device number.
    pub fn with_device(&self, device: u16) -> Jid {
        Jid {
            device,
            ..self.to_non_ad()
        }
    }

    /// The ADString `user.0:device@server` with every part written, as used by the
    /// participant hash: the agent position is always the literal `0`, whatever the
    /// JID's agent (PROTOCOL.md 10.6).
    pub fn ad_string(&self) -> String {
        format!("{}.0:{}@{}", self.user, self.device, self.server)
    }

    /// Parses a JID in any of its text forms. `c.us` becomes `s.whatsapp.net`.
    ///
    /// Refuses empty text, text over [`MAX_JID_LEN`] bytes, unknown servers, non-numeric
    /// devices or agents, and control characters.
    pub fn parse(text: &str) -> Result<Jid, JidError> {
        if text.is_empty() {
            return Err(invalid(text, "empty"));
        }
        if text.len() > MAX_JID_LEN {
            return Err(invalid(text, "too long"));
        }
        if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(invalid(text, "contains whitespace or control characters"));
        }
        let (user_part, server) = match text.rsplit_once('@') {
            Some((u, s)) => (u, s),
            None => ("", text),
        };
        let server = if server == LEGACY_USER_SERVER {
            DEFAULT_USER_SERVER
        } else {
            server
        };
        if !KNOWN_SERVERS.contains(&server) {
            return Err(invalid(text, "unknown server"));
        }
        if user_part.contains('@') {
            return Err(invalid(text, "more than one '@'"));
        }
        let mut jid = Jid::new("", server);
        if user_part.is_empty() {
            if text.contains('@') {
                return Err(invalid(text, "empty user before '@'"));
            }
            return Ok(jid);
        }
        let (user_agent, device) = match user_part.split_once(':') {
            Some((ua, d)) => {
                let dev: u16 = d
                    .parse()
                    .map_err(|_| invalid(text, "device is not a number below 65536"))?;
                (ua, Some(dev))
            }
            None => (user_part, None),
        };
        // Agent forms: whatsmeow `user.agent`, Baileys `user_agent`. Only for servers
        // whose users are numeric (a group id never carries an agent).
        let (user, agent) = if matches!(server, DEFAULT_USER_SERVER | HIDDEN_USER_SERVER) {
            match user_agent.rsplit_once(['.', '_']) {
                Some((u, a)) if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) => {
                    let agent: u8 = a
                        .parse()
                        .map_err(|_| invalid(text, "agent is not a number below 256"))?;
                    (u, agent)
                }
                _ => (user_agent, 0),
            }
        } else {
            (user_agent, 0)
        };
        if user.is_empty() {
            return Err(invalid(text, "empty user"));
        }
        jid.user = user.to_string();
        jid.agent = agent;
        jid.device = device.unwrap_or(0);
        Ok(jid)
    }

    /// Parses a recipient as gateway users send it: a phone number (digits with optional
    /// `+`, spaces, dashes, dots or parentheses; 7–15 digits), a Z-API group id
    /// `<digits>-group` or `<digits>-<digits>-group`, a bare group id with `@g.us`, or any
    /// full JID of a user, LID or group.
    ///
    /// Refuses anything else with [`JidError::InvalidPhoneNumber`], whose text is the
    /// RyzeAPI message `Invalid phone number format: <detail>`.
    pub fn parse_recipient(input: &str) -> Result<Jid, JidError> {
        let bad = |d: &str| JidError::InvalidPhoneNumber(d.to_string());
        let s = input.trim();
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.len() > MAX_JID_LEN {
            return Err(bad("longer than 256 characters"));
        }
        if s.contains('@') {
            let jid = Jid::parse(s).map_err(|e| match e {
                JidError::Invalid { detail, .. } => bad(detail),
                other => other,
            })?;
            if !(jid.is_pn() || jid.is_lid() || jid.is_group()) || jid.user.is_empty() {
                return Err(bad("not a user, LID or group JID"));
            }
            if jid.server == DEFAULT_USER_SERVER && !(7..=15).contains(&jid.user.len()) {
                return Err(bad("a phone number has 7 to 15 digits"));
            }
            if !jid.user.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                return Err(bad("user part must be digits"));
            }
            return Ok(jid);
        }
        if let Some(id) = s.strip_suffix("-group") {
            if !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit() || b == b'-')
                && !id.starts_with('-')
                && !id.ends_with('-')
            {
                return Ok(Jid::group(id));
            }
            return Err(bad("group id must be digits followed by -group"));
        }
        let mut digits = String::with_capacity(s.len());
        for (i, c) in s.char_indices() {
            match c {
                '0'..='9' => digits.push(c),
                '+' if i == 0 => {}
                ' ' | '-' | '(' | ')' | '.' => {}
                _ => {
                    return Err(bad(&format!(
                        "unexpected character {c:?}; expected digits with optional +, spaces, dashes or parentheses"
                    )));
                }
            }
        }
        if digits.is_empty() {
            return Err(bad("no digits"));
        }
        if !(7..=15).contains(&digits.len()) {
            return Err(bad(&format!(
                "{} digits; a phone number has 7 to 15 digits including the country code",
                digits.len()
            )));
        }
        if digits.starts_with('0') {
            return Err(bad("must start with the country code, not 0"));
        }
        Ok(Jid::pn_user(digits))
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.user.is_empty() {
            return f.write_str(&self.server);
        }
        f.write_str(&self.user)?;
        if self.agent != 0 {
            write!(f, ".{}", self.agent)?;
        }
        if self.device != 0 {
            write!(f, ":{}", self.device)?;
        }
        write!(f, "@{}", self.server)
    }
}

impl fmt::Debug for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Jid({self})")
    }
}

impl FromStr for Jid {
    type Err = JidError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Jid::parse(s)
    }
}

impl serde::Serialize for Jid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Jid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Jid::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_every_form() {
        for (text, user, agent, device, server) in [
            (
                "5511999999999@s.whatsapp.net",
                "5511999999999",
                0,
                0,
                "s.whatsapp.net",
            ),
            (
                "5511999999999:3@s.whatsapp.net",
                "5511999999999",
                0,
                3,
                "s.whatsapp.net",
            ),
            ("123456789012345:7@lid", "123456789012345", 0, 7, "lid"),
            (
                "5511999999999.1:2@s.whatsapp.net",
                "5511999999999",
                1,
                2,
                "s.whatsapp.net",
            ),
            (
                "120363019502650977@g.us",
                "120363019502650977",
                0,
                0,
                "g.us",
            ),
            ("status@broadcast", "status", 0, 0, "broadcast"),
            ("s.whatsapp.net", "", 0, 0, "s.whatsapp.net"),
            ("123@newsletter", "123", 0, 0, "newsletter"),
            ("55119:99@hosted", "55119", 0, 99, "hosted"),
        ] {
            let j = Jid::parse(text).unwrap();
            assert_eq!(
                (j.user.as_str(), j.agent, j.device, j.server.as_ref()),
                (user, agent, device, server),
                "{text}"
            );
            assert_eq!(j.to_string(), text);
        }
    }

    #[test]
    fn c_us_and_baileys_agent_normalise() {
        let j = Jid::parse("5511999999999@c.us").unwrap();
        assert_eq!(j.to_string(), "5511999999999@s.whatsapp.net");
        let j = Jid::parse("5511999999999_1:2@s.whatsapp.net").unwrap();
        assert_eq!((j.agent, j.device), (1, 2));
    }

    #[test]
    fn refuses_garbage() {
        for t in [
            "",
            "@s.whatsapp.net",
            "a@b@s.whatsapp.net",
            "1@example.com",
            "1:x@s.whatsapp.net",
            "1:70000@s.whatsapp.net",
            "1 2@s.whatsapp.net",
        ] {
            assert!(Jid::parse(t).is_err(), "{t}");
        }
    }

    #[test]
    fn non_ad_and_ad_string() {
        let j = Jid::parse("5511999999999:3@s.whatsapp.net").unwrap();
        assert!(j.is_ad());
        assert_eq!(j.to_non_ad().to_string(), "5511999999999@s.whatsapp.net");
        assert_eq!(j.ad_string(), "5511999999999.0:3@s.whatsapp.net");
        // The agent position is the literal 0 even for a JID with an agent.
        let agent = Jid {
            agent: 1,
            ..j.clone()
        };
        assert_eq!(agent.ad_string(), "5511999999999.0:3@s.whatsapp.net");
    }

    /// The participant hash of PROTOCOL.md 10.6 over `ad_string`s, with its vectors.
    #[test]
    fn ad_strings_give_the_phash_vectors() {
        use base64::Engine as _;
        use sha2::Digest as _;
        fn phash(jids: &[&str]) -> String {
            let mut ads: Vec<String> = jids
                .iter()
                .map(|j| Jid::parse(j).unwrap().ad_string())
                .collect();
            ads.sort();
            let digest = sha2::Sha256::digest(ads.concat().as_bytes());
            format!(
                "2:{}",
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(&digest[..6])
            )
        }
        assert_eq!(phash(&["5511999999999:3@s.whatsapp.net"]), "2:5s+YxCff");
        assert_eq!(phash(&["5511999999999@s.whatsapp.net"]), "2:RJWVxcMQ");
        assert_eq!(
            phash(&[
                "7469250125917:21@s.whatsapp.net",
                "5511988887777:14@s.whatsapp.net"
            ]),
            "2:AAv/hwhn"
        );
    }

    #[test]
    fn recipients_as_gateway_users_send_them() {
        for (input, want) in [
            ("+55 (11) 99999-9999", "5511999999999@s.whatsapp.net"),
            ("5511999999999", "5511999999999@s.whatsapp.net"),
            ("120363019502650977-group", "120363019502650977@g.us"),
            (
                "5511999999999-1623281429-group",
                "5511999999999-1623281429@g.us",
            ),
            ("120363019502650977@g.us", "120363019502650977@g.us"),
            ("123456789012345@lid", "123456789012345@lid"),
            ("5511999999999@c.us", "5511999999999@s.whatsapp.net"),
        ] {
            assert_eq!(
                Jid::parse_recipient(input).unwrap().to_string(),
                want,
                "{input}"
            );
        }
        for input in [
            "",
            "abc",
            "+1",
            "12345678901234567",
            "55-11-abc",
            "-group",
            "0511999999999",
        ] {
            let e = Jid::parse_recipient(input).unwrap_err().to_string();
            assert!(
                e.starts_with("Invalid phone number format: "),
                "{input}: {e}"
            );
        }
    }
}
