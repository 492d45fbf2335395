//! How JIDs are laid out inside binary nodes, and which attribute strings are JIDs.
//!
//! Four layouts exist: `JID_PAIR` (user, server), `AD_JID` (domain type, one-byte
//! device, user), `FB_JID` (user, 16-bit device, `msgr`) and `INTEROP_JID` (user, device,
//! integrator, `interop`). A [`Jid`] value picks its layout from its server and device
//! ([`JidLayout::of_jid`]). A plain string is written as a JID exactly when Baileys 7
//! would write it as one *and* reading the bytes back gives the same JID
//! ([`JidLayout::of_text`]); strings Baileys would mangle (`a_1@…`, `a:0@…`,
//! `a:300@…`, `a:5@g.us`) are written raw instead, so every string survives a round trip.

use crate::jid::{
    DEFAULT_USER_SERVER, HIDDEN_USER_SERVER, HOSTED_LID_SERVER, HOSTED_SERVER, INTEROP_SERVER, Jid,
    MESSENGER_SERVER,
};

use super::token::{DOMAIN_HOSTED, DOMAIN_HOSTED_LID, DOMAIN_LID, DOMAIN_WHATSAPP};

/// The wire layout of one JID, borrowing its strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JidLayout<'a> {
    /// `JID_PAIR`: user (empty → `LIST_EMPTY`), server.
    Pair { user: &'a str, server: &'a str },
    /// `AD_JID`: domain type, device, user.
    Ad {
        domain: u8,
        device: u8,
        user: &'a str,
    },
    /// `FB_JID`: user, device; the server is always `msgr`.
    Fb { user: &'a str, device: u16 },
    /// `INTEROP_JID`: user, device, integrator; the server is always `interop`.
    Interop {
        user: &'a str,
        device: u16,
        integrator: u16,
    },
}

/// The AD_JID domain type of a server that has one.
fn ad_domain(server: &str) -> Option<u8> {
    match server {
        DEFAULT_USER_SERVER => Some(DOMAIN_WHATSAPP),
        HIDDEN_USER_SERVER => Some(DOMAIN_LID),
        HOSTED_SERVER => Some(DOMAIN_HOSTED),
        HOSTED_LID_SERVER => Some(DOMAIN_HOSTED_LID),
        _ => None,
    }
}

/// The JID an `AD_JID` stands for. Unknown domain types are kept as the agent of an
/// `s.whatsapp.net` JID (whatsmeow does the same), so they are written back unchanged.
pub(crate) fn jid_from_ad(domain: u8, device: u8, user: String) -> Jid {
    let (server, agent) = match domain {
        DOMAIN_LID => (HIDDEN_USER_SERVER, 0),
        DOMAIN_HOSTED => (HOSTED_SERVER, 0),
        DOMAIN_HOSTED_LID => (HOSTED_LID_SERVER, 0),
        DOMAIN_WHATSAPP => (DEFAULT_USER_SERVER, 0),
        other => (DEFAULT_USER_SERVER, other),
    };
    Jid {
        user,
        agent,
        device: u16::from(device),
        integrator: 0,
        server: server.into(),
    }
}

/// Why a [`Jid`] value has no wire layout.
pub(crate) type Unrepresentable = &'static str;

/// A device number written in text the way Baileys reads it back unchanged: decimal,
/// 1..=255, no sign, no leading zero.
fn parse_text_device(text: &str) -> Option<u8> {
    if text.is_empty() || text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u8>().ok()
}

impl<'a> JidLayout<'a> {
    /// The layout of a JID value. Device JIDs on `s.whatsapp.net`, `lid`, `hosted` and
    /// `hosted.lid` become `AD_JID` (as Baileys writes them); `msgr` and `interop` JIDs
    /// with a device become `FB_JID` / `INTEROP_JID` (as whatsmeow writes them);
    /// everything else is a `JID_PAIR`.
    ///
    /// Refuses JIDs no layout can carry: an empty server, a device above 255 on an
    /// AD_JID server, a device on any other server, an agent outside `s.whatsapp.net`
    /// or equal to a domain type (1, 128, 129), an integrator outside `interop`.
    pub(crate) fn of_jid(jid: &'a Jid) -> Result<Self, Unrepresentable> {
        let server = jid.server.as_ref();
        if server.is_empty() {
            return Err("the server is empty");
        }
        if jid.integrator != 0 && server != INTEROP_SERVER {
            return Err("only interop JIDs carry an integrator");
        }
        if jid.agent != 0 && server != DEFAULT_USER_SERVER {
            return Err("only s.whatsapp.net JIDs carry an agent");
        }
        let user = jid.user.as_str();
        if let Some(domain) = ad_domain(server) {
            if jid.agent == 0 && jid.device == 0 {
                return Ok(JidLayout::Pair { user, server });
            }
            let domain = match jid.agent {
                0 => domain,
                DOMAIN_LID | DOMAIN_HOSTED | DOMAIN_HOSTED_LID => {
                    return Err("the agent equals an AD_JID domain type (1, 128 or 129)");
                }
                agent => agent,
            };
            let device = u8::try_from(jid.device)
                .map_err(|_| "AD_JID devices are one byte; the device is above 255")?;
            return Ok(JidLayout::Ad {
                domain,
                device,
                user,
            });
        }
        match server {
            MESSENGER_SERVER if jid.device != 0 => Ok(JidLayout::Fb {
                user,
                device: jid.device,
            }),
            INTEROP_SERVER if jid.device != 0 || jid.integrator != 0 => Ok(JidLayout::Interop {
                user,
                device: jid.device,
                integrator: jid.integrator,
            }),
            _ if jid.device != 0 => Err("this server has no device JIDs"),
            _ => Ok(JidLayout::Pair { user, server }),
        }
    }

    /// The layout of a string written as a JID, or `None` when it stays a string.
    ///
    /// Like Baileys 7, any `user@server` text becomes a `JID_PAIR` and `user:device@server`
    /// an `AD_JID` — but only where that is lossless: one `@`, a non-empty server, no `_`
    /// (Baileys' agent separator, which it drops), and for the device form a device
    /// 1..=255 written canonically on one of the four AD_JID servers. `@server` (empty
    /// user) is the server JID, as Baileys writes and reads it.
    pub(crate) fn of_text(text: &'a str) -> Option<Self> {
        let (user_device, server) = text.split_once('@')?;
        if server.is_empty() || server.contains('@') || user_device.contains('_') {
            return None;
        }
        match user_device.split_once(':') {
            None => Some(JidLayout::Pair {
                user: user_device,
                server,
            }),
            Some((user, device)) => Some(JidLayout::Ad {
                domain: ad_domain(server)?,
                device: parse_text_device(device)?,
                user,
            }),
        }
    }

    /// The JID this layout decodes to.
    pub(crate) fn to_jid(self) -> Jid {
        match self {
            JidLayout::Pair { user, server } => Jid::new(user, server),
            JidLayout::Ad {
                domain,
                device,
                user,
            } => jid_from_ad(domain, device, user.to_string()),
            JidLayout::Fb { user, device } => Jid::new_ad(user, device, MESSENGER_SERVER),
            JidLayout::Interop {
                user,
                device,
                integrator,
            } => Jid {
                integrator,
                ..Jid::new_ad(user, device, INTEROP_SERVER)
            },
        }
    }
}

/// The text a JID value stands for in a node: its usual form, except that the server
/// JID (empty user) is `@server` and an AD JID with an empty user is `:device@server`,
/// the way Baileys reads them. Unlike `Jid`'s `Display`, this text maps back to the same
/// wire layout for every JID the decoder produces without an agent.
pub fn wire_text(jid: &Jid) -> String {
    let mut out = String::with_capacity(jid.user.len() + jid.server.len() + 8);
    out.push_str(&jid.user);
    if jid.agent != 0 {
        out.push('.');
        out.push_str(&jid.agent.to_string());
    }
    if jid.device != 0 {
        out.push(':');
        out.push_str(&jid.device.to_string());
    }
    out.push('@');
    out.push_str(&jid.server);
    out
}

/// The JID a string stands for when written into a node, or `None` when it is written as
/// a plain string: `user@server` and `user:device@server` (device 1..=255 on
/// `s.whatsapp.net`, `lid`, `hosted`, `hosted.lid`) are JIDs exactly where Baileys 7
/// writes them as JIDs and reads them back unchanged; `@server` is the server JID.
pub fn jid_in_text(text: &str) -> Option<Jid> {
    JidLayout::of_text(text).map(JidLayout::to_jid)
}

/// The JID a decoded or constructed string attribute is read as, or `None` to keep it a
/// string: only text that is a real JID ([`is_real_jid`]), so that `notify="Bob @ work"`
/// stays text. The encoder writes both forms with the same bytes.
pub(crate) fn real_jid_in_text(text: &str) -> Option<Jid> {
    if !text.contains('@') {
        return None;
    }
    jid_in_text(text).filter(is_real_jid)
}

/// True when `jid` is a real JID: a server in [`crate::jid::KNOWN_SERVERS`] and a user
/// of ASCII letters, digits, `-` and `.` (or empty, the server JID).
pub(crate) fn is_real_jid(jid: &Jid) -> bool {
    crate::jid::KNOWN_SERVERS.contains(&jid.server.as_ref())
        && jid
            .user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(text: &str) -> Option<JidLayout<'_>> {
        JidLayout::of_text(text)
    }

    #[test]
    fn text_forms_that_are_jids() {
        assert_eq!(
            layout("5511999999999@s.whatsapp.net"),
            Some(JidLayout::Pair {
                user: "5511999999999",
                server: "s.whatsapp.net"
            })
        );
        assert_eq!(
            layout("123456789012345:7@lid"),
            Some(JidLayout::Ad {
                domain: 1,
                device: 7,
                user: "123456789012345"
            })
        );
        assert_eq!(
            layout("55119:99@hosted"),
            Some(JidLayout::Ad {
                domain: 128,
                device: 99,
                user: "55119"
            })
        );
        assert_eq!(
            layout("1:255@hosted.lid"),
            Some(JidLayout::Ad {
                domain: 129,
                device: 255,
                user: "1"
            })
        );
        assert_eq!(
            layout("@s.whatsapp.net"),
            Some(JidLayout::Pair {
                user: "",
                server: "s.whatsapp.net"
            })
        );
        assert_eq!(
            layout("a:b@g.us"),
            None,
            "device on a non-AD server is not lossless"
        );
        assert_eq!(
            layout("x@example.com"),
            Some(JidLayout::Pair {
                user: "x",
                server: "example.com"
            })
        );
    }

    #[test]
    fn text_forms_baileys_would_mangle_stay_strings() {
        for t in [
            "no-at-sign",
            "a@",
            "a@b@c",
            "a_1@s.whatsapp.net",
            "a_1:2@s.whatsapp.net",
            "a:0@s.whatsapp.net",
            "a:01@s.whatsapp.net",
            "a:+1@s.whatsapp.net",
            "a:256@s.whatsapp.net",
            "a:@s.whatsapp.net",
            "a:1:2@lid",
            "a:5@g.us",
            "a:5@msgr",
        ] {
            assert_eq!(layout(t), None, "{t}");
        }
    }

    #[test]
    fn text_jids_read_back_as_the_same_text() {
        for t in [
            "5511999999999@s.whatsapp.net",
            "5511999999999:3@s.whatsapp.net",
            "123456789012345:7@lid",
            "120363019502650977@g.us",
            "status@broadcast",
            "@s.whatsapp.net",
            ":3@lid",
            "x@c.us",
            "1.5@s.whatsapp.net",
        ] {
            let jid = jid_in_text(t).unwrap();
            assert_eq!(wire_text(&jid), t);
            assert_eq!(
                JidLayout::of_jid(&jid),
                JidLayout::of_text(t).ok_or(""),
                "{t}"
            );
        }
    }

    #[test]
    fn jid_values_pick_their_layout() {
        let j = Jid::parse("5511999999999:3@s.whatsapp.net").unwrap();
        assert!(matches!(
            JidLayout::of_jid(&j),
            Ok(JidLayout::Ad {
                domain: 0,
                device: 3,
                ..
            })
        ));
        let j = Jid::new("u", "hosted");
        assert!(matches!(JidLayout::of_jid(&j), Ok(JidLayout::Pair { .. })));
        let j = Jid::new_ad("u", 3, "msgr");
        assert!(matches!(
            JidLayout::of_jid(&j),
            Ok(JidLayout::Fb { device: 3, .. })
        ));
        let j = Jid {
            integrator: 7,
            ..Jid::new("u", "interop")
        };
        assert!(matches!(
            JidLayout::of_jid(&j),
            Ok(JidLayout::Interop { integrator: 7, .. })
        ));
        let agent = Jid {
            agent: 5,
            ..Jid::new_ad("u", 2, "s.whatsapp.net")
        };
        assert!(matches!(
            JidLayout::of_jid(&agent),
            Ok(JidLayout::Ad {
                domain: 5,
                device: 2,
                ..
            })
        ));
        assert_eq!(JidLayout::of_jid(&agent).unwrap().to_jid(), agent);
        for bad in [
            Jid::new_ad("u", 256, "s.whatsapp.net"),
            Jid::new_ad("u", 1, "g.us"),
            Jid::new("u", ""),
            Jid {
                agent: 1,
                ..Jid::new_ad("u", 2, "s.whatsapp.net")
            },
            Jid {
                agent: 3,
                ..Jid::new_ad("u", 2, "lid")
            },
            Jid {
                integrator: 3,
                ..Jid::new("u", "s.whatsapp.net")
            },
        ] {
            assert!(JidLayout::of_jid(&bad).is_err(), "{bad:?}");
        }
    }
}
