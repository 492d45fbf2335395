//! Pre-key bundle fetch for many devices in one IQ (PROTOCOL.md §7), sans-IO.
//!
//! ```text
//! → <iq xmlns="encrypt" type="get" to="s.whatsapp.net" id>
//!     <key><user jid="<device>" reason="identity"/>…</key></iq>
//! ← <iq type="result"><list>
//!     <user jid="<device>"><registration>4</registration><type>05</type>
//!       <identity>32</identity><skey><id>3</id><value>32</value><signature>64</signature></skey>
//!       [<key><id>3</id><value>32</value></key>] [<device-identity>…</device-identity>]
//!     </user>
//!     <user jid><error code="406" text="not-acceptable"/></user> …</list></iq>
//! ```
//!
//! The key children may also come wrapped in `<keys>` (retry receipts carry exactly that
//! shape, see [`parse_bundle_keys`]).

use super::wire_read::{Malformed, be_u32, child_fixed, error_child, require_jid};
use crate::binary::Node;
use crate::jid::Jid;
use crate::signal::curve::{DJB_TYPE, PublicKey};
use crate::signal::identity::PreKeyBundle;

/// The most devices asked in one fetch IQ; larger fan-outs are split.
pub const BUNDLE_BATCH: usize = 1_000;

/// `<iq xmlns="encrypt" type="get" to="s.whatsapp.net"><key><user jid
/// reason="identity"/>…</key></iq>` for `devices` (no IQ id yet). `reason="identity"`
/// is what whatsmeow always sends.
pub fn bundle_fetch_iq(devices: &[Jid]) -> Node {
    let users = devices
        .iter()
        .map(|d| {
            Node::new("user")
                .attr("jid", d.clone())
                .attr("reason", "identity")
        })
        .collect();
    Node::new("iq")
        .attr("xmlns", "encrypt")
        .attr("type", "get")
        .attr("to", Jid::server_jid())
        .child(Node::new("key").with_children(users))
}

/// A device's fetched bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedBundle {
    /// What X3DH needs.
    pub bundle: PreKeyBundle,
    /// The device's serialized `ADVSignedDeviceIdentity`, when the server sent one.
    pub device_identity: Option<Vec<u8>>,
}

/// The server's answer for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleAnswer {
    /// A usable bundle.
    Bundle(FetchedBundle),
    /// The server refused this device (`406` = not registered any more: drop it from
    /// the device cache; `404` = unknown).
    Refused {
        /// The `<error code>`.
        code: u16,
        /// The `<error text>`.
        text: String,
    },
    /// The server's `<user>` could not be read (the reason says why).
    Unreadable(Malformed),
}

const WHAT: &str = "key bundle";

/// Parses a fetch result: one entry per `<user>` of the `<list>`, in order. Refuses a
/// result without `<list>` and `<user>`s without a device JID; a bundle with bad keys
/// becomes [`BundleAnswer::Unreadable`] for that device only.
pub fn parse_bundles(response: &Node) -> Result<Vec<(Jid, BundleAnswer)>, Malformed> {
    let list = response
        .child_by_tag("list")
        .ok_or_else(|| Malformed::new(WHAT, "the result has no <list>"))?;
    let mut out = Vec::with_capacity(list.children().len().min(BUNDLE_BATCH));
    for user in list.children_by_tag("user") {
        let jid = require_jid(user, "jid", WHAT)?;
        if jid.user.is_empty() {
            return Err(Malformed::new(
                WHAT,
                format!("<user jid=\"{jid}\"> has no user"),
            ));
        }
        let answer = if let Some((code, text)) = error_child(user) {
            BundleAnswer::Refused { code, text }
        } else {
            let keys = user.child_by_tag("keys").unwrap_or(user);
            match parse_bundle_keys(user, keys, u32::from(jid.device)) {
                Ok(b) => BundleAnswer::Bundle(b),
                Err(e) => BundleAnswer::Unreadable(e),
            }
        };
        out.push((jid, answer));
    }
    Ok(out)
}

/// Reads a bundle: `<registration>` from `outer`, the key children (`<type>`,
/// `<identity>`, `<skey>`, optional `<key>`, optional `<device-identity>`) from `keys`
/// (the same node, or a `<keys>` child). Checks every length and the key type; the
/// signed-prekey signature is checked later by X3DH.
pub fn parse_bundle_keys(
    outer: &Node,
    keys: &Node,
    device_id: u32,
) -> Result<FetchedBundle, Malformed> {
    let registration_id = be_u32(child_fixed(outer, "registration", 4, WHAT)?);
    if let Some(t) = keys.child_by_tag("type").and_then(Node::bytes)
        && t != [DJB_TYPE]
    {
        return Err(Malformed::new(WHAT, format!("key type {t:02x?} is not 05")));
    }
    let identity_key = public_key(child_fixed(keys, "identity", 32, WHAT)?)?;
    let skey = keys
        .child_by_tag("skey")
        .ok_or_else(|| Malformed::new(WHAT, "no <skey>"))?;
    let signed_prekey_id = be_u32(child_fixed(skey, "id", 3, WHAT)?);
    let signed_prekey = public_key(child_fixed(skey, "value", 32, WHAT)?)?;
    let mut signature = [0u8; 64];
    signature.copy_from_slice(child_fixed(skey, "signature", 64, WHAT)?);
    let prekey = match keys.child_by_tag("key") {
        None => None,
        Some(k) => Some((
            be_u32(child_fixed(k, "id", 3, WHAT)?),
            public_key(child_fixed(k, "value", 32, WHAT)?)?,
        )),
    };
    let device_identity = keys
        .child_by_tag("device-identity")
        .or_else(|| outer.child_by_tag("device-identity"))
        .and_then(Node::bytes)
        .map(<[u8]>::to_vec);
    Ok(FetchedBundle {
        bundle: PreKeyBundle {
            registration_id,
            device_id,
            prekey,
            signed_prekey_id,
            signed_prekey,
            signed_prekey_signature: signature,
            identity_key,
        },
        device_identity,
    })
}

fn public_key(bytes: &[u8]) -> Result<PublicKey, Malformed> {
    PublicKey::from_raw(bytes).map_err(|e| Malformed::new(WHAT, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::{marshal, unmarshal};
    use crate::client::prekeys::{prekey_node, signed_prekey_node};
    use crate::signal::identity::{LocalIdentity, SignedPreKeyRecord, generate_prekeys};
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    #[test]
    fn request_shape() {
        let iq = bundle_fetch_iq(&[jid("111:3@lid"), jid("5511@s.whatsapp.net")]);
        assert_eq!(iq.attr_str("xmlns"), Some("encrypt"));
        assert_eq!(iq.attr_str("type"), Some("get"));
        let users = iq.child_by_tag("key").unwrap().children();
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].attr_jid("jid"), Some(&jid("111:3@lid")));
        assert_eq!(users[0].attr_str("reason"), Some("identity"));
        assert_eq!(unmarshal(&marshal(&iq).unwrap()).unwrap(), iq);
    }

    #[test]
    fn bundles_errors_and_wrapped_keys() {
        let mut rng = StdRng::seed_from_u64(3);
        let identity = LocalIdentity::generate(&mut rng);
        let spk = SignedPreKeyRecord::generate(&identity.key_pair, 0x0A0B0C, 0, &mut rng);
        let opk = generate_prekeys(0x010203, 1, &mut rng).remove(0);
        let key_children = |with_opk: bool| {
            let mut c = vec![
                Node::new("type").with_bytes(vec![5]),
                Node::new("identity").with_bytes(identity.key_pair.public.as_bytes().to_vec()),
                signed_prekey_node(&spk).unwrap(),
            ];
            if with_opk {
                c.push(prekey_node(opk.id, &opk.key_pair.public).unwrap());
            }
            c
        };
        let reg = || {
            Node::new("registration").with_bytes(identity.registration_id.to_be_bytes().to_vec())
        };
        let mut flat = key_children(true);
        flat.insert(0, reg());
        flat.push(Node::new("device-identity").with_bytes(vec![1, 2, 3]));
        let resp = Node::new("iq")
            .attr("type", "result")
            .child(Node::new("list").with_children(vec![
            Node::new("user").attr("jid", jid("111:3@lid")).with_children(flat),
            Node::new("user")
                .attr("jid", jid("222@lid"))
                .with_children(vec![reg(), Node::new("keys").with_children(key_children(false))]),
            Node::new("user")
                .attr("jid", jid("333:1@lid"))
                .child(Node::new("error").attr("code", "406").attr("text", "not-acceptable")),
            Node::new("user")
                .attr("jid", jid("444@lid"))
                .with_children(vec![reg(), Node::new("identity").with_bytes(vec![0; 31])]),
        ]));
        let resp = unmarshal(&marshal(&resp).unwrap()).unwrap();
        let got = parse_bundles(&resp).unwrap();
        assert_eq!(got.len(), 4);
        let BundleAnswer::Bundle(b) = &got[0].1 else {
            panic!("{:?}", got[0])
        };
        let expected = PreKeyBundle::from_local(&identity, 3, &spk, Some(&opk));
        assert_eq!(b.bundle, expected);
        b.bundle.verify().unwrap();
        assert_eq!(b.device_identity.as_deref(), Some(&[1, 2, 3][..]));
        let BundleAnswer::Bundle(b) = &got[1].1 else {
            panic!("{:?}", got[1])
        };
        assert_eq!(b.bundle, PreKeyBundle::from_local(&identity, 0, &spk, None));
        assert_eq!(
            got[2].1,
            BundleAnswer::Refused {
                code: 406,
                text: "not-acceptable".into()
            }
        );
        let BundleAnswer::Unreadable(e) = &got[3].1 else {
            panic!("{:?}", got[3])
        };
        assert!(e.to_string().contains("<identity> is 31 bytes"), "{e}");

        assert!(parse_bundles(&Node::new("iq")).is_err());
        let no_jid = Node::new("iq").child(Node::new("list").child(Node::new("user")));
        assert!(parse_bundles(&no_jid).is_err());
        let bad_type =
            Node::new("user").with_children(vec![reg(), Node::new("type").with_bytes(vec![6])]);
        assert!(
            parse_bundle_keys(&bad_type, &bad_type, 0)
                .unwrap_err()
                .to_string()
                .contains("not 05")
        );
    }
}
