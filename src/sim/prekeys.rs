//! The server's `encrypt` IQs (PROTOCOL.md §7): prekey upload, signed-prekey rotation,
//! pool count, key-bundle fetch (one one-time prekey popped per device) and the key
//! digest, plus the low-count notification when a device's pool runs low.

use std::collections::HashSet;

use sha1::{Digest, Sha1};

use super::stanza::{self, be_bytes, be_uint, child_bytes};
use super::world::{ConnId, DeviceRecord, SignedPreKeyPublic, World, unix_now};
use crate::binary::Node;
use crate::jid::Jid;
use crate::signal::curve::{DJB_TYPE, PublicKey, SIGNATURE_LEN};

/// Most one-time prekeys accepted in one upload.
pub const MAX_UPLOAD: usize = 2_000;
/// Most devices in one key-bundle fetch.
pub const MAX_FETCH: usize = 10_000;

/// A malformed request: answered `400 bad-request`, the detail is recorded.
struct BadRequest(String);

fn key_node(id: u32, key: &PublicKey) -> Node {
    Node::new("key").with_children(vec![
        Node::new("id").with_bytes(be_bytes(id, 3)),
        Node::new("value").with_bytes(key.as_bytes().to_vec()),
    ])
}

fn skey_node(s: &SignedPreKeyPublic) -> Node {
    Node::new("skey").with_children(vec![
        Node::new("id").with_bytes(be_bytes(s.id, 3)),
        Node::new("value").with_bytes(s.key.as_bytes().to_vec()),
        Node::new("signature").with_bytes(s.signature.to_vec()),
    ])
}

fn parse_key(node: &Node, what: &str) -> Result<(u32, PublicKey), BadRequest> {
    let id = child_bytes(node, "id")
        .and_then(|b| be_uint(b, 3))
        .ok_or_else(|| BadRequest(format!("{what} id is not 3 bytes")))?;
    let key = child_bytes(node, "value")
        .and_then(|b| PublicKey::from_raw(b).ok())
        .ok_or_else(|| BadRequest(format!("{what} value is not a 32-byte key")))?;
    Ok((id, key))
}

fn parse_skey(node: &Node, identity: &PublicKey) -> Result<SignedPreKeyPublic, BadRequest> {
    let (id, key) = parse_key(node, "skey")?;
    let sig = child_bytes(node, "signature")
        .and_then(|b| <[u8; SIGNATURE_LEN]>::try_from(b).ok())
        .ok_or_else(|| BadRequest("skey signature is not 64 bytes".into()))?;
    if !identity.verify(&key.serialize(), &sig) {
        return Err(BadRequest(
            "skey signature does not verify with the identity key over 0x05 ‖ value".into(),
        ));
    }
    Ok(SignedPreKeyPublic {
        id,
        key,
        signature: sig,
    })
}

/// The `<user>` of a key-bundle fetch result for one device.
fn bundle_node(jid: &Jid, d: &DeviceRecord, prekey: Option<(u32, PublicKey)>) -> Node {
    let mut children = vec![
        Node::new("registration").with_bytes(be_bytes(d.registration_id, 4)),
        Node::new("type").with_bytes(vec![DJB_TYPE]),
        Node::new("identity").with_bytes(d.identity.as_bytes().to_vec()),
        skey_node(&d.signed_prekey),
    ];
    if let Some((id, key)) = prekey {
        children.push(key_node(id, &key));
    }
    if let Some(signed) = &d.signed_identity {
        children.push(Node::new("device-identity").with_bytes(signed.clone()));
    }
    Node::new("user").attr("jid", jid).with_children(children)
}

/// SHA-1 over identity ‖ signed prekey ‖ its signature ‖ every pooled prekey, as
/// WhatsApp Web's digest check recomputes it.
pub fn key_digest(d: &DeviceRecord) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(d.identity.as_bytes());
    h.update(d.signed_prekey.key.as_bytes());
    h.update(d.signed_prekey.signature);
    for (_, key) in &d.prekeys {
        h.update(key.as_bytes());
    }
    h.finalize().into()
}

impl World {
    fn device_record(&mut self, account: &str, device: u16) -> Option<&mut DeviceRecord> {
        self.accounts.get_mut(account)?.devices.get_mut(&device)
    }

    /// Answers an `encrypt` IQ of a logged-in device.
    pub(crate) fn on_encrypt_iq(
        &mut self,
        conn: ConnId,
        account: &str,
        device: u16,
        id: &str,
        kind: &str,
        iq: &Node,
    ) -> Node {
        let first = iq.children().first().map(|c| c.tag.as_ref()).unwrap_or("");
        let result = match (kind, first) {
            ("set", "rotate") => self.rotate(account, device, id, iq),
            ("set", _) if iq.child_by_tag("registration").is_some() => {
                self.upload(conn, account, device, id, iq)
            }
            ("get", "count") => Ok(self.count(account, device, id)),
            ("get", "key") => self.fetch(iq, id),
            ("get", "digest") => Ok(self.digest(account, device, id)),
            _ => Ok(stanza::iq_error(id, 501, "feature-not-implemented")),
        };
        result.unwrap_or_else(|BadRequest(why)| {
            self.protocol_error(conn, format!("encrypt <{first}> refused: {why}"));
            stanza::iq_error(id, 400, "bad-request")
        })
    }

    fn count(&mut self, account: &str, device: u16, id: &str) -> Node {
        let n = self
            .device_record(account, device)
            .map_or(0, |d| d.prekeys.len());
        stanza::iq_result(id).child(Node::new("count").attr("value", n))
    }

    fn upload(
        &mut self,
        conn: ConnId,
        account: &str,
        device: u16,
        id: &str,
        iq: &Node,
    ) -> Result<Node, BadRequest> {
        let max_pool = self.config.max_prekeys_per_device;
        let registration = child_bytes(iq, "registration")
            .and_then(|b| be_uint(b, 4))
            .ok_or_else(|| BadRequest("registration is not 4 bytes".into()))?;
        if child_bytes(iq, "type") != Some(&[DJB_TYPE][..]) {
            return Err(BadRequest("type is not [05]".into()));
        }
        let identity = child_bytes(iq, "identity")
            .and_then(|b| PublicKey::from_raw(b).ok())
            .ok_or_else(|| BadRequest("identity is not a 32-byte key".into()))?;
        let list = iq
            .child_by_tag("list")
            .ok_or_else(|| BadRequest("no <list>".into()))?;
        if list.children().len() > MAX_UPLOAD {
            return Err(BadRequest(format!(
                "{} prekeys in one upload (most: {MAX_UPLOAD})",
                list.children().len()
            )));
        }
        let keys = list
            .children()
            .iter()
            .map(|k| parse_key(k, "prekey"))
            .collect::<Result<Vec<_>, _>>()?;
        let skey = iq
            .child_by_tag("skey")
            .ok_or_else(|| BadRequest("no <skey>".into()))
            .and_then(|s| parse_skey(s, &identity))?;
        let Some(d) = self.device_record(account, device) else {
            return Ok(stanza::iq_error(id, 404, "item-not-found"));
        };
        if identity != d.identity || registration != d.registration_id {
            let what = if identity != d.identity {
                "identity key"
            } else {
                "registration id"
            };
            self.protocol_error(
                conn,
                format!("prekey upload with another {what} than paired"),
            );
            return Ok(stanza::iq_error(id, 406, "not-acceptable"));
        }
        // A re-uploaded id replaces the pooled key; within one upload the last wins.
        let mut seen = HashSet::new();
        let mut fresh: Vec<(u32, PublicKey)> = keys
            .into_iter()
            .rev()
            .filter(|(id, _)| seen.insert(*id))
            .collect();
        fresh.reverse();
        let mut pool = d.prekeys.clone();
        pool.retain(|(existing, _)| !seen.contains(existing));
        pool.extend(fresh);
        if pool.len() > max_pool {
            return Ok(stanza::iq_error(id, 419, "resource-limit"));
        }
        d.prekeys = pool;
        d.signed_prekey = skey;
        d.low_count_notified = false;
        Ok(stanza::iq_result(id))
    }

    fn rotate(
        &mut self,
        account: &str,
        device: u16,
        id: &str,
        iq: &Node,
    ) -> Result<Node, BadRequest> {
        let Some(d) = self.device_record(account, device) else {
            return Ok(stanza::iq_error(id, 404, "item-not-found"));
        };
        let identity = d.identity;
        let skey = iq
            .child_by_tag("rotate")
            .and_then(|r| r.child_by_tag("skey"))
            .ok_or_else(|| BadRequest("<rotate> has no <skey>".into()))
            .and_then(|s| parse_skey(s, &identity))?;
        if let Some(d) = self.device_record(account, device) {
            d.signed_prekey = skey;
        }
        Ok(stanza::iq_result(id))
    }

    fn digest(&mut self, account: &str, device: u16, id: &str) -> Node {
        let Some(d) = self.device_record(account, device) else {
            return stanza::iq_error(id, 404, "item-not-found");
        };
        let list = d
            .prekeys
            .iter()
            .map(|(kid, _)| Node::new("id").with_bytes(be_bytes(*kid, 3)))
            .collect();
        stanza::iq_result(id).child(Node::new("digest").with_children(vec![
            Node::new("registration").with_bytes(be_bytes(d.registration_id, 4)),
            Node::new("type").with_bytes(vec![DJB_TYPE]),
            Node::new("identity").with_bytes(d.identity.as_bytes().to_vec()),
            skey_node(&d.signed_prekey),
            Node::new("list").with_children(list),
            Node::new("hash").with_bytes(key_digest(d).to_vec()),
        ]))
    }

    fn fetch(&mut self, iq: &Node, id: &str) -> Result<Node, BadRequest> {
        let users: Vec<&Node> = iq
            .child_by_tag("key")
            .map(|k| k.children_by_tag("user").collect())
            .unwrap_or_default();
        if users.is_empty() {
            return Err(BadRequest("<key> lists no <user>".into()));
        }
        if users.len() > MAX_FETCH {
            return Err(BadRequest(format!(
                "{} devices in one fetch (most: {MAX_FETCH})",
                users.len()
            )));
        }
        let mut out = Vec::with_capacity(users.len());
        for user in users {
            let jid = stanza::attr_jid(user, "jid")
                .ok_or_else(|| BadRequest("<user> without a JID".into()))?;
            out.push(self.fetch_one(&jid));
        }
        Ok(stanza::iq_result(id).child(Node::new("list").with_children(out)))
    }

    fn fetch_one(&mut self, jid: &Jid) -> Node {
        let threshold = self.config.low_prekey_threshold;
        let owner = self.account_key(jid).map(|a| (a, jid.device));
        if let Some((account, device)) = &owner {
            self.refill_simulated_prekeys(account, *device);
        }
        let found = owner.as_ref().and_then(|(account, device)| {
            let d = self
                .device_record(account, *device)
                .filter(|d| !d.removed)?;
            let prekey = d.prekeys.pop_front();
            let notify = prekey.is_some() && d.prekeys.len() < threshold && !d.low_count_notified;
            if notify {
                d.low_count_notified = true;
            }
            let left = d.prekeys.len();
            Some((bundle_node(jid, d, prekey), notify.then_some(left)))
        });
        match found {
            Some((node, low)) => {
                if let (Some(left), Some((account, device))) = (low, owner) {
                    self.notify_low_prekeys(&account, device, left);
                }
                node
            }
            None => Node::new("user").attr("jid", jid).child(
                Node::new("error")
                    .attr("code", 406)
                    .attr("text", "not-acceptable"),
            ),
        }
    }

    /// Sends `<notification type="encrypt"><count value/></notification>` to every
    /// connection of the device.
    pub(crate) fn notify_low_prekeys(&mut self, account: &str, device: u16, left: usize) {
        for conn in self.connections_of(account, device) {
            let id = self.stanza_id();
            if let Some(c) = self.connections.get_mut(&conn) {
                c.unacked.insert(id.clone(), "encrypt".into());
            }
            self.send(
                conn,
                stanza::prekey_count_notification(&id, unix_now(), left),
            );
        }
    }

    /// Test hook: sends the low-count notification now, whatever the pool size; returns
    /// how many connections got it.
    pub fn force_low_prekey_notification(&mut self, device: &Jid) -> usize {
        let Some(account) = self.account_key(device) else {
            return 0;
        };
        let n = self.connections_of(&account, device.device).len();
        let left = self
            .device_record(&account, device.device)
            .map_or(0, |d| d.prekeys.len());
        self.notify_low_prekeys(&account, device.device, left);
        n
    }
}
