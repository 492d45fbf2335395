//! Device lists over usync (PROTOCOL.md §10.2), sans-IO: the query for many users in
//! one IQ and the parsing of its answer into [`DeviceList`]s and LID↔PN pairs.
//!
//! ```text
//! → <iq xmlns="usync" type="get" to="s.whatsapp.net" id>
//!     <usync sid mode="query" last="true" index="0" context="message">
//!       <query><devices version="2"/><lid/></query>
//!       <list><user jid="<user>"/>…</list></usync></iq>
//! ← <usync><list><user jid><devices><device-list [hash]><device id [key-index]
//!     [is_hosted]/>…</device-list><key-index-list ts>bytes</key-index-list></devices>
//!     [<lid val/>]</user>…</list></usync>
//! ```
//!
//! Filtering (as WhatsApp's clients do): a companion (device ≠ 0) without `key-index`
//! is dropped; when the signed key-index list is present, a companion is kept only if
//! its key index is valid (`validIndexes`) or newer than `currentIndex`. Hosted devices
//! are kept in the list (they belong to the user) and left out of group fan-outs by
//! [`fanout_devices`].

use prost::Message;

use super::wire_read::{Malformed, attr_jid, attr_num, attr_text, error_child, shown};
use crate::binary::Node;
use crate::jid::Jid;
use crate::proto::adv::{AdvKeyIndexList, AdvSignedKeyIndexList};
use crate::store::{DeviceEntry, DeviceList, LidPnMapping};

/// The most users asked in one usync IQ (WhatsApp Web asks in chunks of this size).
pub const USYNC_BATCH: usize = 500;
/// The most devices accepted for one user (WhatsApp allows a phone and a handful of
/// companions; the device id is one byte).
pub const MAX_DEVICES_PER_USER: usize = 256;
/// The most users accepted in one answer.
pub const MAX_USERS_PER_ANSWER: usize = 10_000;

/// The usync device-list query for `users` (devices are dropped from the JIDs), with
/// `<lid/>` so the server also says each user's LID. `sid` is the session id the server
/// echoes. No IQ id yet: the client assigns it.
pub fn device_list_iq(users: &[Jid], sid: &str) -> Node {
    let list = users
        .iter()
        .map(|u| Node::new("user").attr("jid", u.to_non_ad()))
        .collect();
    Node::new("iq")
        .attr("xmlns", "usync")
        .attr("type", "get")
        .attr("to", Jid::server_jid())
        .child(
            Node::new("usync")
                .attr("sid", sid)
                .attr("mode", "query")
                .attr("last", "true")
                .attr("index", "0")
                .attr("context", "message")
                .child(Node::new("query").with_children(vec![
                    Node::new("devices").attr("version", "2"),
                    Node::new("lid"),
                ]))
                .child(Node::new("list").with_children(list)),
        )
}

/// What one usync answer said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceListAnswer {
    /// The device list of every user the server answered for (filtered).
    pub lists: Vec<DeviceList>,
    /// LIDs the server gave for PN users (`<lid val>`).
    pub mappings: Vec<LidPnMapping>,
    /// Users the server answered with an error instead of devices (user, code, text).
    pub failed: Vec<(Jid, u16, String)>,
}

const WHAT: &str = "usync answer";

/// Parses the result of [`device_list_iq`]. Refuses a result without
/// `<usync><list>`, a `<user>` without a user JID, device ids that are not one byte
/// or repeat, more than [`MAX_DEVICES_PER_USER`] devices or
/// [`MAX_USERS_PER_ANSWER`] users. A user whose `<devices>` carries an `<error>` is
/// reported in `failed`.
pub fn parse_device_lists(response: &Node, now_ms: i64) -> Result<DeviceListAnswer, Malformed> {
    let list = response
        .child_by_tag("usync")
        .and_then(|u| u.child_by_tag("list"))
        .ok_or_else(|| Malformed::new(WHAT, "the result has no <usync><list>"))?;
    let users: Vec<&Node> = list.children_by_tag("user").collect();
    if users.len() > MAX_USERS_PER_ANSWER {
        return Err(Malformed::new(
            WHAT,
            format!(
                "{} users (most accepted: {MAX_USERS_PER_ANSWER})",
                users.len()
            ),
        ));
    }
    let mut answer = DeviceListAnswer::default();
    for user in users {
        let jid = attr_jid(user, "jid")
            .filter(|j| !j.user.is_empty() && (j.is_pn() || j.is_lid()))
            .ok_or_else(|| {
                Malformed::new(
                    WHAT,
                    format!(
                        "<user jid={:?}> is not a user JID",
                        shown(&attr_text(user, "jid").unwrap_or_default())
                    ),
                )
            })?
            .to_non_ad();
        if jid.is_pn()
            && let Some(lid) = user.child_by_tag("lid").and_then(|l| attr_jid(l, "val"))
            && let Ok(m) = LidPnMapping::new(&lid, &jid)
        {
            answer.mappings.push(m);
        }
        let Some(devices) = user.child_by_tag("devices") else {
            continue;
        };
        if let Some((code, text)) = error_child(devices) {
            answer.failed.push((jid, code, text));
            continue;
        }
        let Some(device_list) = devices.child_by_tag("device-list") else {
            continue;
        };
        let key_index = devices.child_by_tag("key-index-list");
        let valid = key_index.and_then(Node::bytes).map(decode_key_index_list);
        let mut entries = Vec::new();
        for d in device_list.children_by_tag("device") {
            if entries.len() >= MAX_DEVICES_PER_USER {
                return Err(Malformed::new(
                    WHAT,
                    format!("{jid} has more than {MAX_DEVICES_PER_USER} devices"),
                ));
            }
            let id: u16 = attr_num::<u8>(d, "id", WHAT)?
                .ok_or_else(|| Malformed::new(WHAT, format!("a device of {jid} has no id")))?
                .into();
            let key: Option<u32> = attr_num(d, "key-index", WHAT)?;
            let hosted = attr_text(d, "is_hosted").as_deref() == Some("true");
            if entries.iter().any(|e: &DeviceEntry| e.id == id) {
                return Err(Malformed::new(
                    WHAT,
                    format!("{jid} lists device {id} twice"),
                ));
            }
            if id != 0 {
                let Some(k) = key else { continue };
                match &valid {
                    Some(Some(v)) if !v.accepts(k) => continue,
                    // The list is there but unreadable: trust no companion.
                    Some(None) => continue,
                    _ => {}
                }
            }
            entries.push(DeviceEntry {
                id,
                key_index: key,
                hosted,
            });
        }
        entries.sort_by_key(|e| e.id);
        answer.lists.push(DeviceList {
            user: jid,
            devices: entries,
            hash: attr_text(device_list, "hash").map(|h| shown(&h)),
            key_index_ts: key_index
                .map(|k| attr_num::<i64>(k, "ts", WHAT))
                .transpose()?
                .flatten(),
            fetched_at_ms: now_ms,
        });
    }
    Ok(answer)
}

/// The valid key indexes of a signed key-index list.
struct ValidIndexes {
    current: u32,
    valid: Vec<u32>,
}

impl ValidIndexes {
    fn accepts(&self, key_index: u32) -> bool {
        key_index > self.current || self.valid.contains(&key_index)
    }
}

/// Decodes `ADVSignedKeyIndexList{details: ADVKeyIndexList}`; `None` when unreadable.
fn decode_key_index_list(bytes: &[u8]) -> Option<ValidIndexes> {
    let signed = AdvSignedKeyIndexList::decode(bytes).ok()?;
    let list = AdvKeyIndexList::decode(signed.details.as_deref()?).ok()?;
    Some(ValidIndexes {
        current: list.current_index.unwrap_or(0),
        valid: list.valid_indexes,
    })
}

/// The device JIDs of `list` a message fan-out goes to: every device, except hosted
/// ones (`@hosted`, `@hosted.lid`, device 99) when `for_group` (WhatsApp's clients never
/// send group messages to hosted devices).
pub fn fanout_devices(list: &DeviceList, for_group: bool) -> Vec<Jid> {
    if !for_group {
        return list.device_jids();
    }
    list.device_jids()
        .into_iter()
        .zip(&list.devices)
        .filter(|(_, d)| !d.hosted && d.id != 99)
        .map(|(j, _)| j)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::{marshal, unmarshal};

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    fn key_index_list(current: u32, valid: Vec<u32>) -> Vec<u8> {
        AdvSignedKeyIndexList {
            details: Some(
                AdvKeyIndexList {
                    raw_id: Some(1),
                    timestamp: Some(1000),
                    current_index: Some(current),
                    valid_indexes: valid,
                    account_type: None,
                }
                .encode_to_vec(),
            ),
            account_signature: Some(vec![0; 64]),
            account_signature_key: None,
        }
        .encode_to_vec()
    }

    fn device(id: u32, key: Option<u32>) -> Node {
        let d = Node::new("device").attr("id", id.to_string());
        match key {
            Some(k) => d.attr("key-index", k.to_string()),
            None => d,
        }
    }

    fn user(j: &str, devices: Vec<Node>, kil: Option<Vec<u8>>, lid: Option<&str>) -> Node {
        let mut devs = vec![
            Node::new("device-list")
                .attr("hash", "2:abcdefgh")
                .with_children(devices),
        ];
        if let Some(k) = kil {
            devs.push(Node::new("key-index-list").attr("ts", "1000").with_bytes(k));
        }
        let mut u = Node::new("user")
            .attr("jid", jid(j))
            .child(Node::new("devices").with_children(devs));
        if let Some(l) = lid {
            u = u.child(Node::new("lid").attr("val", jid(l)));
        }
        u
    }

    fn result(users: Vec<Node>) -> Node {
        Node::new("iq")
            .attr("type", "result")
            .child(Node::new("usync").child(Node::new("list").with_children(users)))
    }

    #[test]
    fn request_shape() {
        let iq = device_list_iq(&[jid("5511:3@s.whatsapp.net"), jid("111@lid")], "sid1");
        assert_eq!(iq.attr_str("xmlns"), Some("usync"));
        let usync = iq.child_by_tag("usync").unwrap();
        for (k, v) in [
            ("sid", "sid1"),
            ("mode", "query"),
            ("last", "true"),
            ("index", "0"),
            ("context", "message"),
        ] {
            assert_eq!(usync.attr_str(k), Some(v), "{k}");
        }
        let q = usync.child_by_tag("query").unwrap();
        assert_eq!(
            q.child_by_tag("devices").unwrap().attr_str("version"),
            Some("2")
        );
        assert!(q.child_by_tag("lid").is_some());
        let users: Vec<_> = usync
            .child_by_tag("list")
            .unwrap()
            .children()
            .iter()
            .map(|u| u.attr_jid("jid").unwrap().clone())
            .collect();
        assert_eq!(users, [jid("5511@s.whatsapp.net"), jid("111@lid")]);
        assert_eq!(unmarshal(&marshal(&iq).unwrap()).unwrap(), iq);
    }

    #[test]
    fn filters_companions_by_key_index() {
        let resp = result(vec![
            user(
                "5511@s.whatsapp.net",
                vec![
                    device(0, None),
                    device(7, Some(3)),
                    device(8, None),     // no key-index: dropped
                    device(9, Some(1)),  // revoked (not valid, not newer): dropped
                    device(10, Some(5)), // newer than current: kept
                ],
                Some(key_index_list(3, vec![2, 3])),
                Some("111@lid"),
            ),
            user(
                "222@lid",
                vec![device(0, None), device(2, Some(1))],
                None,
                None,
            ),
        ]);
        let resp = unmarshal(&marshal(&resp).unwrap()).unwrap();
        let a = parse_device_lists(&resp, 5).unwrap();
        assert_eq!(a.lists.len(), 2);
        let ids: Vec<u16> = a.lists[0].devices.iter().map(|d| d.id).collect();
        assert_eq!(ids, [0, 7, 10]);
        assert_eq!(a.lists[0].hash.as_deref(), Some("2:abcdefgh"));
        assert_eq!(a.lists[0].key_index_ts, Some(1000));
        assert_eq!(a.lists[0].fetched_at_ms, 5);
        // No key-index list: companions with a key-index are kept.
        let ids: Vec<u16> = a.lists[1].devices.iter().map(|d| d.id).collect();
        assert_eq!(ids, [0, 2]);
        assert_eq!(a.mappings.len(), 1);
        assert_eq!(a.mappings[0].lid(), jid("111@lid"));
        // An unreadable key-index list keeps only the phone.
        let resp = result(vec![user(
            "5511@s.whatsapp.net",
            vec![device(0, None), device(7, Some(3))],
            Some(vec![0xFF, 0xFF]),
            None,
        )]);
        let a = parse_device_lists(&resp, 0).unwrap();
        assert_eq!(a.lists[0].devices.len(), 1);
    }

    #[test]
    fn hosted_devices_stay_out_of_group_fanouts() {
        let resp = result(vec![user(
            "222@lid",
            vec![
                device(0, None),
                device(3, Some(1)),
                device(99, Some(2)).attr("is_hosted", "true"),
            ],
            None,
            None,
        )]);
        let a = parse_device_lists(&resp, 0).unwrap();
        let list = &a.lists[0];
        assert!(list.devices[2].hosted);
        assert_eq!(
            fanout_devices(list, true),
            [jid("222@lid"), jid("222:3@lid")]
        );
        assert_eq!(fanout_devices(list, false).len(), 3);
        assert_eq!(fanout_devices(list, false)[2], jid("222:99@hosted.lid"));
    }

    #[test]
    fn per_user_errors_and_hostile_answers() {
        let failed = result(vec![
            Node::new("user")
                .attr("jid", jid("5511@s.whatsapp.net"))
                .child(
                    Node::new("devices")
                        .child(Node::new("error").attr("code", "404").attr("text", "nf")),
                ),
        ]);
        let a = parse_device_lists(&failed, 0).unwrap();
        assert_eq!(
            a.failed,
            [(jid("5511@s.whatsapp.net"), 404, "nf".to_owned())]
        );
        assert!(a.lists.is_empty());

        let cases = [
            (Node::new("iq"), "no <usync><list>"),
            (result(vec![Node::new("user")]), "not a user JID"),
            (
                result(vec![Node::new("user").attr("jid", jid("1@g.us"))]),
                "not a user JID",
            ),
            (
                result(vec![user("1@lid", vec![device(300, None)], None, None)]),
                "not a number",
            ),
            (
                result(vec![user("1@lid", vec![Node::new("device")], None, None)]),
                "no id",
            ),
            (
                result(vec![user(
                    "1@lid",
                    vec![device(0, None), device(0, None)],
                    None,
                    None,
                )]),
                "twice",
            ),
            (
                result(vec![user(
                    "1@lid",
                    vec![device(2, Some(u32::MAX)).attr("key-index", "-1")],
                    None,
                    None,
                )]),
                "not a number",
            ),
        ];
        for (resp, needle) in cases {
            let err = parse_device_lists(&resp, 0).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
    }
}
