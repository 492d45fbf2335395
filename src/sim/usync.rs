//! The `usync` device-list query (PROTOCOL.md §10.2): for each listed user, its devices
//! (`<device id [key-index]/>`, primary without key index), the signed key-index list,
//! and with `<lid/>` in the query the user's LID.

use prost::Message as _;
use rand::rngs::OsRng;

use super::stanza::{self, attr_jid, attr_text};
use super::world::{ConnId, HOSTED_DEVICE_ID, World, unix_now};
use crate::binary::Node;
use crate::proto::adv::{AdvKeyIndexList, AdvSignedKeyIndexList};

/// Most users in one usync query.
pub const MAX_USYNC_USERS: usize = 10_000;
/// Signature prefix of the key-index list (account signature over `prefix ‖ details`).
/// Not established from an open-source client (none verifies it); `[6, 2]` continues
/// the ADV prefix family.
pub const KEY_INDEX_SIGNATURE_PREFIX: [u8; 2] = [6, 2];

impl World {
    /// The signed `ADVSignedKeyIndexList` of an account: raw id, now, the highest key
    /// index issued, every live companion's key index.
    pub(crate) fn key_index_list_bytes(&self, key: &str) -> Option<Vec<u8>> {
        let a = self.accounts.get(key)?;
        let valid: Vec<u32> = a
            .devices
            .values()
            .filter(|d| !d.removed && d.id != 0)
            .map(|d| d.key_index)
            .collect();
        let details = AdvKeyIndexList {
            raw_id: Some(a.raw_id),
            timestamp: Some(unix_now()),
            current_index: Some(a.next_key_index.saturating_sub(1)),
            valid_indexes: valid,
            account_type: None,
        }
        .encode_to_vec();
        let signature = a.primary_keys().map(|k| {
            k.identity
                .key_pair
                .private
                .sign(
                    &mut OsRng,
                    &[&KEY_INDEX_SIGNATURE_PREFIX[..], &details].concat(),
                )
                .to_vec()
        });
        Some(
            AdvSignedKeyIndexList {
                details: Some(details),
                account_signature: signature,
                account_signature_key: None,
            }
            .encode_to_vec(),
        )
    }

    /// Answers `<iq xmlns="usync" type="get"><usync><query>…</query><list><user jid/>…`.
    pub(crate) fn on_usync(&mut self, conn: ConnId, id: &str, iq: &Node) -> Node {
        let Some(usync) = iq.child_by_tag("usync") else {
            return stanza::iq_error(id, 400, "bad-request");
        };
        let query = usync.child_by_tag("query");
        let want_devices = query.is_some_and(|q| q.child_by_tag("devices").is_some());
        let want_lid = query.is_some_and(|q| q.child_by_tag("lid").is_some());
        let users: Vec<&Node> = usync
            .child_by_tag("list")
            .map(|l| l.children_by_tag("user").collect())
            .unwrap_or_default();
        if users.len() > MAX_USYNC_USERS {
            self.protocol_error(
                conn,
                format!("usync with {} users (most: {MAX_USYNC_USERS})", users.len()),
            );
            return stanza::iq_error(id, 400, "bad-request");
        }
        let mut out = Vec::with_capacity(users.len());
        for user in users {
            let Some(jid) = attr_jid(user, "jid") else {
                self.protocol_error(conn, "usync <user> without jid");
                return stanza::iq_error(id, 400, "bad-request");
            };
            let jid = jid.to_non_ad();
            let mut children = Vec::new();
            match self.account_key(&jid) {
                Some(key) => {
                    if want_devices {
                        let devices: Vec<Node> = self
                            .accounts
                            .get(&key)
                            .map(|a| {
                                a.devices
                                    .values()
                                    .filter(|d| !d.removed && d.id != HOSTED_DEVICE_ID)
                                    .map(|d| {
                                        let n = Node::new("device").attr("id", d.id);
                                        if d.id == 0 {
                                            n
                                        } else {
                                            n.attr("key-index", d.key_index)
                                        }
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        let mut dev = vec![Node::new("device-list").with_children(devices)];
                        if let Some(list) = self.key_index_list_bytes(&key) {
                            dev.push(
                                Node::new("key-index-list")
                                    .attr("ts", unix_now())
                                    .with_bytes(list),
                            );
                        }
                        children.push(Node::new("devices").with_children(dev));
                    }
                    if want_lid && let Some(a) = self.accounts.get(&key) {
                        children.push(Node::new("lid").attr("val", &a.lid));
                    }
                }
                None => {
                    if want_devices {
                        children.push(
                            Node::new("devices").child(
                                Node::new("error")
                                    .attr("code", 404)
                                    .attr("text", "item-not-found"),
                            ),
                        );
                    }
                }
            }
            out.push(Node::new("user").attr("jid", &jid).with_children(children));
        }
        let mut reply = Node::new("usync");
        for key in ["sid", "mode", "context"] {
            if let Some(v) = attr_text(usync, key) {
                reply = reply.attr(key, v.as_ref());
            }
        }
        let reply = reply
            .attr("last", "true")
            .attr("index", "0")
            .child(Node::new("list").with_children(out));
        stanza::iq_result(id).child(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jid::Jid;
    use crate::sim::SimConfig;
    use crate::sim::groups::GroupAddressing;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn usync_lists_devices_key_indexes_and_lids() {
        let mut w = World::new(SimConfig::default());
        let key = w.create_simulated_member(3, &mut StdRng::seed_from_u64(1));
        let a = w.accounts[&key].clone();
        let iq = Node::new("iq").child(
            Node::new("usync")
                .attr("sid", "s1")
                .attr("mode", "query")
                .attr("context", "message")
                .child(Node::new("query").with_children(vec![
                    Node::new("devices").attr("version", "2"),
                    Node::new("lid"),
                ]))
                .child(Node::new("list").with_children(vec![
                    Node::new("user").attr("jid", &a.pn),
                    Node::new("user").attr("jid", Jid::pn_user("1")),
                ])),
        );
        let r = w.on_usync(1, "u1", &iq);
        let usync = r.child_by_tag("usync").unwrap();
        assert_eq!(usync.attr_str("sid"), Some("s1"));
        let users: Vec<&Node> = usync
            .child_by_tag("list")
            .unwrap()
            .children_by_tag("user")
            .collect();
        let devs: Vec<&Node> = users[0]
            .child_by_tag("devices")
            .unwrap()
            .child_by_tag("device-list")
            .unwrap()
            .children_by_tag("device")
            .collect();
        assert_eq!(devs.len(), 3);
        assert_eq!(devs[0].get_attr("key-index"), None);
        assert!(devs[1..].iter().all(|d| d.get_attr("key-index").is_some()));
        let list = users[0]
            .child_by_tag("devices")
            .unwrap()
            .child_by_tag("key-index-list")
            .unwrap();
        let signed = AdvSignedKeyIndexList::decode(list.bytes().unwrap()).unwrap();
        let details = AdvKeyIndexList::decode(signed.details.as_deref().unwrap()).unwrap();
        assert_eq!(details.valid_indexes, vec![1, 2]);
        assert_eq!(
            attr_jid(users[0].child_by_tag("lid").unwrap(), "val"),
            Some(a.lid.clone())
        );
        assert!(
            users[1]
                .child_by_tag("devices")
                .unwrap()
                .child_by_tag("error")
                .is_some()
        );
        // The devices match the group fan-out set.
        assert_eq!(w.account_devices(&key, GroupAddressing::Pn).len(), 3);
    }
}
