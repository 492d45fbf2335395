//! Signal addresses: which local session / sender-key record a JID maps to.
//!
//! These strings are local storage keys only; they never go on the wire. They follow
//! whatsmeow (`types.JID.SignalAddress`): the name is the JID's user, suffixed with
//! `_<domain>` for non-PN domains (`_1` for `@lid`, `_128` for `@hosted`, `_129` for
//! `@hosted.lid`), and the device is kept separately; the string form is `name:device`.
//! PN and LID addresses of the same person are therefore distinct.

use std::fmt;
use std::str::FromStr;

use crate::jid::{DEFAULT_USER_SERVER, HIDDEN_USER_SERVER, HOSTED_LID_SERVER, HOSTED_SERVER, Jid};

/// Domain number of `@lid` users in signal addresses.
pub const LID_DOMAIN: u8 = 1;
/// Domain number of `@hosted` devices.
pub const HOSTED_DOMAIN: u8 = 128;
/// Domain number of `@hosted.lid` devices.
pub const HOSTED_LID_DOMAIN: u8 = 129;

/// The address of one remote device's Signal sessions: `name:device_id`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolAddress {
    /// The user part with its domain suffix (`15551234567`, `123456789012345_1`).
    pub name: String,
    /// The device number (0 = primary phone).
    pub device_id: u32,
}

impl fmt::Debug for ProtocolAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProtocolAddress({self})")
    }
}

impl fmt::Display for ProtocolAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.device_id)
    }
}

/// Why a string is not a `name:device` address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid signal address {0:?}: expected name:device")]
pub struct AddressParseError(pub String);

impl FromStr for ProtocolAddress {
    type Err = AddressParseError;

    /// Parses `name:device`. Refuses a missing `:`, an empty name or a non-numeric device.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || AddressParseError(s.chars().take(64).collect());
        let (name, device) = s.rsplit_once(':').ok_or_else(err)?;
        if name.is_empty() {
            return Err(err());
        }
        let device_id = device.parse().map_err(|_| err())?;
        Ok(ProtocolAddress::new(name, device_id))
    }
}

impl ProtocolAddress {
    /// An address from its parts.
    pub fn new(name: impl Into<String>, device_id: u32) -> Self {
        ProtocolAddress {
            name: name.into(),
            device_id,
        }
    }

    /// The address of a device JID as whatsmeow forms it: `user` for `@s.whatsapp.net`,
    /// `user_1` for `@lid`, `user_128` for `@hosted`, `user_129` for `@hosted.lid`, and
    /// `user_<agent>` for other servers whose JID carries an agent; the device is the
    /// JID's device.
    pub fn from_jid(jid: &Jid) -> Self {
        let domain = match jid.server.as_ref() {
            DEFAULT_USER_SERVER => 0,
            HIDDEN_USER_SERVER => LID_DOMAIN,
            HOSTED_SERVER => HOSTED_DOMAIN,
            HOSTED_LID_SERVER => HOSTED_LID_DOMAIN,
            _ => jid.agent,
        };
        let mut name = String::with_capacity(jid.user.len() + 4);
        name.push_str(&jid.user);
        if domain != 0 {
            // `user_<domain>`, written without the formatting machinery (hot in
            // fan-outs).
            name.push('_');
            let digits = [domain / 100, domain / 10 % 10, domain % 10];
            let skip = if domain >= 100 {
                0
            } else if domain >= 10 {
                1
            } else {
                2
            };
            for d in &digits[skip..] {
                name.push(char::from(b'0' + d));
            }
        }
        ProtocolAddress::new(name, u32::from(jid.device))
    }
}

impl From<&Jid> for ProtocolAddress {
    fn from(jid: &Jid) -> Self {
        ProtocolAddress::from_jid(jid)
    }
}

/// The name of a sender-key record: one group and one sending device, as whatsmeow forms
/// it (`NewSenderKeyName(group.String(), sender.SignalAddress())`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SenderKeyName {
    /// The group JID in text form (`120363…@g.us`).
    pub group: String,
    /// The sending device's address.
    pub sender: ProtocolAddress,
}

impl SenderKeyName {
    /// The sender-key name of `sender` (a device JID) in `group`.
    pub fn new(group: &Jid, sender: &Jid) -> Self {
        SenderKeyName {
            group: group.to_string(),
            sender: ProtocolAddress::from_jid(sender),
        }
    }

    /// A sender-key name from its parts.
    pub fn from_parts(group: impl Into<String>, sender: ProtocolAddress) -> Self {
        SenderKeyName {
            group: group.into(),
            sender,
        }
    }
}

impl fmt::Display for SenderKeyName {
    /// `group::name:device`, a single storage key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::{}", self.group, self.sender)
    }
}

impl fmt::Debug for SenderKeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SenderKeyName({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_whatsmeow() {
        let cases = [
            ("15551234567:3@s.whatsapp.net", "15551234567", 3),
            ("15551234567@s.whatsapp.net", "15551234567", 0),
            ("123456789012345:7@lid", "123456789012345_1", 7),
            ("15551234567:99@hosted", "15551234567_128", 99),
            ("123456789012345:99@hosted.lid", "123456789012345_129", 99),
        ];
        for (jid, name, dev) in cases {
            let addr = ProtocolAddress::from_jid(&Jid::parse(jid).unwrap());
            assert_eq!(addr.name, name, "{jid}");
            assert_eq!(addr.device_id, dev, "{jid}");
            assert_eq!(addr.to_string(), format!("{name}:{dev}"));
            assert_eq!(addr.to_string().parse::<ProtocolAddress>().unwrap(), addr);
        }
        // PN and LID of the same digits never collide.
        let pn = ProtocolAddress::from_jid(&Jid::parse("1234567:1@s.whatsapp.net").unwrap());
        let lid = ProtocolAddress::from_jid(&Jid::parse("1234567:1@lid").unwrap());
        assert_ne!(pn, lid);
    }

    #[test]
    fn every_agent_domain_is_written_in_decimal() {
        for agent in 1..=u8::MAX {
            let jid = Jid {
                agent,
                ..Jid::new_ad("4455", 2, "example.net")
            };
            let address = ProtocolAddress::from_jid(&jid);
            assert_eq!(address.name, format!("4455_{agent}"));
            assert_eq!(address.device_id, 2);
        }
    }

    #[test]
    fn address_parse_refuses_garbage() {
        for bad in [
            "",
            "abc",
            ":3",
            "abc:",
            "abc:x",
            "abc:-1",
            "abc:99999999999",
        ] {
            assert!(bad.parse::<ProtocolAddress>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sender_key_name_form() {
        let group = Jid::parse("120363025246125888@g.us").unwrap();
        let sender = Jid::parse("123456789012345:2@lid").unwrap();
        let name = SenderKeyName::new(&group, &sender);
        assert_eq!(name.group, "120363025246125888@g.us");
        assert_eq!(name.sender, ProtocolAddress::new("123456789012345_1", 2));
        assert_eq!(
            name.to_string(),
            "120363025246125888@g.us::123456789012345_1:2"
        );
    }
}
