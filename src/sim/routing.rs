//! Message routing as WhatsApp's server does it (PROTOCOL.md §10.4, §10.8, §14.4–5):
//! group fan-out with the membership and `phash` checks, 1:1 fan-out, single-device
//! resends, receipts routed back to the sender, `link_create` call links, and the
//! offline queue of real devices.
//!
//! Simulator assumptions (the real server's behaviour is not documented):
//! * a sender that is not a member gets `<ack … error="403"/>`, an unknown group
//!   `error="404"`; nothing is delivered;
//! * a `phash` that differs from the server's own (every member device, sender included)
//!   gets `<ack … error="409" phash="<server's>"/>` and nothing is delivered; a message
//!   without `phash` is accepted;
//! * recipients get `<message from=<group> participant=<sender device> id t type notify
//!   addressing_mode participant_pn|participant_lid [edit]>` with their own `<enc>` from
//!   `<participants>` (if any), the `skmsg`, every `<meta>`, and `<device-identity>` when
//!   their `<enc>` is a `pkmsg`;
//! * delivery receipts of simulated devices go to the sender grouped per message:
//!   `<receipt from=<group> id t><participants key=<id>><user jid t/>…</participants>
//!   </receipt>` (whatsmeow parses this form); receipts from real clients are forwarded
//!   one by one as `<receipt from=<group> participant=<their device> id t [type]>`
//!   with their children (retry receipts keep `<retry>`, `<registration>`, `<keys>`);
//! * `<call to="@call" id><link_create media="audio|video">…</link_create></call>` is
//!   answered `<ack class="call" type="link_create" id from="@call"><link_create
//!   token media/></ack>` (the shape whatsapp-rust's `parse_call_link_create_ack`
//!   expects); the token is 22 random base62 characters.

use std::collections::VecDeque;

use rand::Rng;
use rand::rngs::OsRng;

use super::groups::GroupAddressing;
use super::stanza::{self, attr_jid, attr_text};
use super::world::{ConnId, Phase, World, unix_now};
use crate::binary::Node;
use crate::jid::{CALL_SERVER, Jid};

/// Most stanzas kept for a real device that is offline (the oldest are dropped).
pub const MAX_OFFLINE: usize = 20_000;
/// Most in-world deliveries processed by one [`World::settle`] (bounds loops between
/// simulated devices, e.g. retry ping-pong).
pub const MAX_IN_WORLD_STEPS: usize = 1_000_000;

/// (chat, sender account, sender device, message id): one grouped delivery receipt.
pub type ReceiptKey = (String, String, u16, String);

/// Who sent a stanza into the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Account key (PN user) of the sending device.
    pub account: String,
    /// Device number.
    pub device: u16,
    /// The connection it came on (`None` for simulated devices).
    pub conn: Option<ConnId>,
}

/// What the server answered a routed message with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteOutcome {
    /// The `<ack class="message">` the sender got.
    pub ack: Node,
    /// Device JIDs the message was delivered (or queued) to.
    pub delivered: Vec<Jid>,
}

impl RouteOutcome {
    /// The ack's `error` code, if the message was refused.
    pub fn error(&self) -> Option<String> {
        attr_text(&self.ack, "error").map(|e| e.into_owned())
    }
}

fn message_ack(id: &str, from: &Jid, error: Option<u16>) -> Node {
    let mut ack = Node::new("ack")
        .attr("class", "message")
        .attr("id", id)
        .attr("from", from)
        .attr("t", unix_now());
    if let Some(code) = error {
        ack = ack.attr("error", code);
    }
    ack
}

/// A random call-link token (22 characters of `[0-9A-Za-z]`).
pub fn call_link_token() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = OsRng;
    (0..22)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

impl World {
    /// Hands a stanza to a device: simulated devices get it in-world (processed by
    /// [`World::settle`]), real devices on their active connections, or in the offline
    /// queue when none is active. `unacked` records the stanza id as awaiting the
    /// client's ack, with that kind.
    pub(crate) fn deliver(
        &mut self,
        account: &str,
        device: u16,
        node: Node,
        unacked: Option<&str>,
    ) {
        let simulated = self
            .accounts
            .get(account)
            .and_then(|a| a.devices.get(&device))
            .is_some_and(|d| d.simulated.is_some());
        if simulated {
            self.in_world.push_back((account.to_owned(), device, node));
            return;
        }
        let active: Vec<ConnId> = self
            .connections
            .values()
            .filter(|c| {
                matches!(&c.phase, Phase::LoggedIn { account: a, device: d, active: true }
                    if a == account && *d == device)
            })
            .map(|c| c.id)
            .collect();
        if active.is_empty() {
            let queue = self
                .offline
                .entry((account.to_owned(), device))
                .or_default();
            if queue.len() >= MAX_OFFLINE {
                queue.pop_front();
            }
            queue.push_back(node);
            return;
        }
        for conn in active {
            if let (Some(kind), Some(id)) = (unacked, attr_text(&node, "id"))
                && let Some(c) = self.connections.get_mut(&conn)
            {
                c.unacked.insert(id.into_owned(), kind.to_owned());
            }
            self.send(conn, node.clone());
        }
    }

    /// Sends the offline queue of the device logged in on `conn` (after its
    /// `<active/>`); returns how many stanzas went out.
    pub(crate) fn flush_offline(&mut self, conn: ConnId) -> usize {
        let Some(Phase::LoggedIn {
            account, device, ..
        }) = self.connections.get(&conn).map(|c| c.phase.clone())
        else {
            return 0;
        };
        let queue = self
            .offline
            .remove(&(account.clone(), device))
            .unwrap_or_default();
        let n = queue.len();
        for node in queue {
            if let (Some(id), Some(c)) = (attr_text(&node, "id"), self.connections.get_mut(&conn)) {
                c.unacked.insert(id.into_owned(), node.tag.to_string());
            }
            self.send(conn, node);
        }
        n
    }

    /// Stanzas queued for a real device that is not active (tests).
    pub fn offline_queue(&self, device: &Jid) -> Vec<Node> {
        self.account_key(device)
            .and_then(|k| self.offline.get(&(k, device.device)))
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The device JID of (account, device) in `addressing`.
    pub(crate) fn device_jid(
        &self,
        account: &str,
        device: u16,
        addressing: GroupAddressing,
    ) -> Option<Jid> {
        self.user_jid(account, addressing)
            .map(|u| u.with_device(device))
    }

    /// A `<message>` from a logged-in connection.
    pub(crate) fn on_client_message(
        &mut self,
        conn: ConnId,
        account: &str,
        device: u16,
        node: &Node,
    ) {
        let origin = Origin {
            account: account.to_owned(),
            device,
            conn: Some(conn),
        };
        self.route_message(&origin, node);
    }

    /// Routes a message stanza from `origin` (see the module doc); the ack goes to its
    /// connection (if any) and is returned.
    pub fn route_message(&mut self, origin: &Origin, node: &Node) -> Option<RouteOutcome> {
        let Some(id) = attr_text(node, "id").map(|s| s.into_owned()) else {
            if let Some(conn) = origin.conn {
                self.protocol_error(conn, "<message> without id");
            }
            return None;
        };
        let Some(to) = attr_jid(node, "to") else {
            if let Some(conn) = origin.conn {
                self.protocol_error(conn, format!("<message id={id}> without to"));
            }
            let ack = message_ack(&id, &Jid::server_jid(), Some(400));
            return Some(self.finish_route(origin, ack, Vec::new()));
        };
        let (ack, delivered) = if to.is_group() {
            self.route_group(origin, &id, &to, node)
        } else if to.is_pn() || to.is_lid() {
            self.route_direct(origin, &id, &to, node)
        } else {
            (message_ack(&id, &to, Some(400)), Vec::new())
        };
        Some(self.finish_route(origin, ack, delivered))
    }

    fn finish_route(&mut self, origin: &Origin, ack: Node, delivered: Vec<Jid>) -> RouteOutcome {
        if let Some(conn) = origin.conn {
            self.send(conn, ack.clone());
        }
        RouteOutcome { ack, delivered }
    }

    /// The `<enc>` for `target` in `<participants>`, matched by account and device
    /// whatever the addressing of the `<to jid>`.
    fn enc_for(&self, node: &Node, account: &str, device: u16) -> Option<Node> {
        let participants = node.child_by_tag("participants")?;
        participants
            .children_by_tag("to")
            .find(|to| {
                attr_jid(to, "jid").is_some_and(|j| {
                    j.device == device && self.account_key(&j).as_deref() == Some(account)
                })
            })
            .and_then(|to| to.child_by_tag("enc"))
            .cloned()
    }

    fn route_group(
        &mut self,
        origin: &Origin,
        id: &str,
        group_jid: &Jid,
        node: &Node,
    ) -> (Node, Vec<Jid>) {
        let Some(group) = self.group(group_jid).cloned() else {
            return (message_ack(id, group_jid, Some(404)), Vec::new());
        };
        if !group.members.contains(&origin.account) {
            if let Some(conn) = origin.conn {
                self.protocol_error(
                    conn,
                    format!("message {id} to {group_jid} from a non-member"),
                );
            }
            return (message_ack(id, group_jid, Some(403)), Vec::new());
        }
        let Some(sender) = self.device_jid(&origin.account, origin.device, group.addressing) else {
            return (message_ack(id, group_jid, Some(400)), Vec::new());
        };
        let devices = self.group_devices(&group);
        // Single-device resend: only that device gets it, no phash check.
        if let Some(target) = attr_jid(node, "participant") {
            let Some(account) = self.account_key(&target) else {
                return (message_ack(id, group_jid, Some(404)), Vec::new());
            };
            let Some(target) = self.device_jid(&account, target.device, group.addressing) else {
                return (message_ack(id, group_jid, Some(404)), Vec::new());
            };
            if !devices.contains(&target) {
                return (message_ack(id, group_jid, Some(404)), Vec::new());
            }
            let encs: Vec<Node> = node
                .children()
                .iter()
                .filter(|c| c.tag == "enc")
                .cloned()
                .chain(self.enc_for(node, &account, target.device))
                .collect();
            let out = self.group_stanza(&group, &sender, id, node, encs);
            self.deliver(&account, target.device, out, Some("message"));
            return (message_ack(id, group_jid, None), vec![target]);
        }
        let phash = super::groups::participant_hash(&devices);
        if let Some(theirs) = attr_text(node, "phash")
            && theirs != phash
        {
            let ack = message_ack(id, group_jid, Some(409)).attr("phash", phash.as_str());
            return (ack, Vec::new());
        }
        let skmsg: Vec<Node> = node
            .children()
            .iter()
            .filter(|c| c.tag == "enc")
            .cloned()
            .collect();
        let mut delivered = Vec::with_capacity(devices.len());
        for device in devices {
            if device == sender {
                continue;
            }
            let Some(account) = self.account_key(&device) else {
                continue;
            };
            let mut encs: Vec<Node> = self
                .enc_for(node, &account, device.device)
                .into_iter()
                .collect();
            encs.extend(skmsg.iter().cloned());
            if encs.is_empty() {
                continue;
            }
            let out = self.group_stanza(&group, &sender, id, node, encs);
            self.deliver(&account, device.device, out, Some("message"));
            delivered.push(device);
        }
        (message_ack(id, group_jid, None), delivered)
    }

    /// The stanza one member device gets: attributes of the original plus sender and
    /// addressing, then its `<enc>`s, `<device-identity>` if one of them is a pkmsg,
    /// and every `<meta>`.
    fn group_stanza(
        &self,
        group: &super::groups::Group,
        sender: &Jid,
        id: &str,
        original: &Node,
        encs: Vec<Node>,
    ) -> Node {
        let account = self.account_key(sender);
        let mut out = Node::new("message")
            .attr("from", &group.jid)
            .attr("participant", sender)
            .attr("id", id)
            .attr("t", unix_now())
            .attr(
                "type",
                attr_text(original, "type").as_deref().unwrap_or("text"),
            )
            .attr("addressing_mode", group.addressing.as_str());
        if let Some(a) = account.as_deref().and_then(|k| self.accounts.get(k)) {
            out = out.attr("notify", format!("+{}", a.pn.user));
            out = match group.addressing {
                GroupAddressing::Lid => out.attr("participant_pn", a.pn_device(sender.device)),
                GroupAddressing::Pn => out.attr("participant_lid", a.lid_device(sender.device)),
            };
        }
        if let Some(edit) = attr_text(original, "edit") {
            out = out.attr("edit", edit.as_ref());
        }
        let pkmsg = encs
            .iter()
            .any(|e| attr_text(e, "type").as_deref() == Some("pkmsg"));
        let mut children = encs;
        if pkmsg && let Some(identity) = original.child_by_tag("device-identity") {
            children.push(identity.clone());
        }
        children.extend(original.children_by_tag("meta").cloned());
        out.with_children(children)
    }

    /// 1:1: `<participants><to jid=<device>>` (or one `<enc>` to a device JID) to the
    /// peer's devices and the sender's other devices; own devices get `recipient`.
    fn route_direct(
        &mut self,
        origin: &Origin,
        id: &str,
        to: &Jid,
        node: &Node,
    ) -> (Node, Vec<Jid>) {
        let Some(peer) = self.account_key(to) else {
            return (message_ack(id, to, Some(404)), Vec::new());
        };
        let addressing = if to.is_lid() {
            GroupAddressing::Lid
        } else {
            GroupAddressing::Pn
        };
        let Some(sender) = self.device_jid(&origin.account, origin.device, addressing) else {
            return (message_ack(id, to, Some(400)), Vec::new());
        };
        let mut targets: Vec<(String, u16, Node)> = Vec::new();
        if let Some(participants) = node.child_by_tag("participants") {
            for t in participants.children_by_tag("to") {
                let Some(jid) = attr_jid(t, "jid") else {
                    continue;
                };
                let Some(account) = self.account_key(&jid) else {
                    continue;
                };
                if account != peer && account != origin.account {
                    continue;
                }
                if account == origin.account && jid.device == origin.device {
                    continue;
                }
                if let Some(enc) = t.child_by_tag("enc") {
                    targets.push((account, jid.device, enc.clone()));
                }
            }
        } else if let Some(enc) = node.child_by_tag("enc") {
            targets.push((peer.clone(), to.device, enc.clone()));
        }
        let mut delivered = Vec::new();
        for (account, device, enc) in targets {
            let exists = self
                .accounts
                .get(&account)
                .and_then(|a| a.devices.get(&device))
                .is_some_and(|d| !d.removed);
            if !exists {
                continue;
            }
            let mut out = Node::new("message")
                .attr("from", &sender)
                .attr("id", id)
                .attr("t", unix_now())
                .attr("type", attr_text(node, "type").as_deref().unwrap_or("text"));
            if account == origin.account {
                out = out.attr("recipient", to.to_non_ad());
            } else if let Some(a) = self.accounts.get(&origin.account) {
                out = out.attr("notify", format!("+{}", a.pn.user));
            }
            if let Some(edit) = attr_text(node, "edit") {
                out = out.attr("edit", edit.as_ref());
            }
            let pkmsg = attr_text(&enc, "type").as_deref() == Some("pkmsg");
            let mut children = vec![enc];
            if pkmsg && let Some(identity) = node.child_by_tag("device-identity") {
                children.push(identity.clone());
            }
            children.extend(node.children_by_tag("meta").cloned());
            let out = out.with_children(children);
            if let Some(jid) = self.device_jid(&account, device, addressing) {
                delivered.push(jid);
            }
            self.deliver(&account, device, out, Some("message"));
        }
        (message_ack(id, to, None), delivered)
    }

    /// A `<receipt>` from a device (real or simulated): forwarded to the device it
    /// answers. Group receipts name that device in `participant`; 1:1 receipts in `to`
    /// (a device JID, or a user JID meaning every device of it).
    pub fn route_receipt(&mut self, origin: &Origin, node: &Node) {
        let Some(to) = attr_jid(node, "to") else {
            if let Some(conn) = origin.conn {
                self.protocol_error(conn, "<receipt> without to");
            }
            return;
        };
        let mut out = Node::new("receipt");
        let targets: Vec<(String, u16)>;
        if to.is_group() {
            let Some(group) = self.group(&to).cloned() else {
                return;
            };
            let (Some(original), Some(me)) = (
                attr_jid(node, "participant"),
                self.device_jid(&origin.account, origin.device, group.addressing),
            ) else {
                return;
            };
            let Some(account) = self.account_key(&original) else {
                return;
            };
            targets = vec![(account, original.device)];
            out = out.attr("from", &to).attr("participant", &me);
        } else {
            let Some(account) = self.account_key(&to) else {
                return;
            };
            let addressing = if to.is_lid() {
                GroupAddressing::Lid
            } else {
                GroupAddressing::Pn
            };
            let Some(me) = self.device_jid(&origin.account, origin.device, addressing) else {
                return;
            };
            targets = if to.is_ad() || to.device != 0 {
                vec![(account, to.device)]
            } else {
                self.account_devices(&account, addressing)
                    .into_iter()
                    .map(|d| (account.clone(), d.device))
                    .collect()
            };
            out = out.attr("from", &me);
        }
        for key in ["id", "type"] {
            if let Some(v) = attr_text(node, key) {
                out = out.attr(key, v.as_ref());
            }
        }
        out = out.attr("t", unix_now());
        let out = out.with_children(node.children().to_vec());
        for (account, device) in targets {
            if account == origin.account && device == origin.device {
                continue;
            }
            self.deliver(&account, device, out.clone(), Some("receipt"));
        }
    }

    /// Sends the grouped delivery receipts simulated devices owe.
    pub(crate) fn flush_receipts(&mut self) {
        let pending = std::mem::take(&mut self.pending_receipts);
        for ((chat, account, device, id), devices) in pending {
            let t = unix_now();
            let Ok(chat_jid) = Jid::parse(&chat) else {
                continue;
            };
            let node = if chat_jid.is_group() {
                let users = devices
                    .iter()
                    .map(|d| Node::new("user").attr("jid", d).attr("t", t))
                    .collect();
                Node::new("receipt")
                    .attr("from", &chat_jid)
                    .attr("id", id.as_str())
                    .attr("t", t)
                    .child(
                        Node::new("participants")
                            .attr("key", id.as_str())
                            .with_children(users),
                    )
            } else {
                // 1:1: one receipt per device (the chat is the sender's peer).
                for d in &devices {
                    let node = Node::new("receipt")
                        .attr("from", d)
                        .attr("id", id.as_str())
                        .attr("t", t);
                    self.deliver(&account, device, node, Some("receipt"));
                }
                continue;
            };
            self.deliver(&account, device, node, Some("receipt"));
        }
    }

    /// Processes every in-world delivery (simulated devices decrypt, answer, resend…)
    /// until nothing is left, then sends the grouped delivery receipts. Every public
    /// world operation that can route something ends with it.
    pub fn settle(&mut self) {
        let mut steps = 0usize;
        while self.settle_steps(1024) {
            steps += 1024;
            if steps > MAX_IN_WORLD_STEPS {
                tracing::warn!("sim: in-world delivery loop cut after {MAX_IN_WORLD_STEPS} steps");
                self.in_world.clear();
                self.pending_receipts.clear();
                return;
            }
        }
    }

    /// Processes at most `max` in-world deliveries; when the queue is empty, sends the
    /// grouped delivery receipts. Returns true while work is left.
    pub fn settle_steps(&mut self, max: usize) -> bool {
        for _ in 0..max.max(1) {
            let Some((account, device, node)) = self.in_world.pop_front() else {
                break;
            };
            self.phone_receive(&account, device, node);
        }
        if self.in_world.is_empty() && !self.pending_receipts.is_empty() {
            self.flush_receipts();
        }
        !self.in_world.is_empty() || !self.pending_receipts.is_empty()
    }

    /// `<call to="@call"><link_create media/></call>` → the link token; other call
    /// stanzas are acked.
    pub(crate) fn on_call(&mut self, conn: ConnId, node: &Node) {
        let Some(id) = attr_text(node, "id").map(|s| s.into_owned()) else {
            self.protocol_error(conn, "<call> without id");
            return;
        };
        if let Some(create) = node.child_by_tag("link_create") {
            let media = attr_text(create, "media")
                .map(|m| m.into_owned())
                .unwrap_or_default();
            if media != "audio" && media != "video" {
                self.protocol_error(conn, format!("link_create with media {media:?}"));
                let ack = stanza::ack(
                    "call",
                    &id,
                    Jid::new("", CALL_SERVER).into(),
                    Some("link_create"),
                    Some(400),
                );
                self.send(conn, ack);
                return;
            }
            let ack = Node::new("ack")
                .attr("class", "call")
                .attr("type", "link_create")
                .attr("id", id.as_str())
                .attr("from", Jid::new("", CALL_SERVER))
                .child(
                    Node::new("link_create")
                        .attr("token", call_link_token())
                        .attr("media", media.as_str()),
                );
            self.send(conn, ack);
            return;
        }
        let from = node.get_attr("to").cloned().unwrap_or_else(stanza::server);
        let kind = attr_text(node, "type").map(|s| s.into_owned());
        let ack = stanza::ack("call", &id, from, kind.as_deref(), None);
        self.send(conn, ack);
    }
}

/// Keeps at most `max` entries, dropping the oldest.
pub(crate) fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, max: usize) {
    while queue.len() >= max.max(1) {
        queue.pop_front();
    }
    queue.push_back(item);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventCard, Rsvp, RsvpResponse};
    use crate::signal::KeyPair;
    use crate::signal::identity::{LocalIdentity, SignedPreKeyRecord};
    use crate::sim::groups::GroupSpec;
    use crate::sim::world::{ConnAction, DeviceRegistration, Effect, SignedPreKeyPublic};
    use crate::sim::{SimConfig, SimError};
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::time::Instant;

    fn card(name: &str) -> EventCard {
        EventCard::builder()
            .name(name)
            .start_unix(1_900_000_000)
            .build()
            .unwrap()
    }

    fn group_of(
        w: &mut World,
        members: usize,
        devices: std::ops::RangeInclusive<u16>,
        addressing: GroupAddressing,
        accounts: Vec<Jid>,
    ) -> (Jid, Vec<Jid>) {
        let rng = &mut StdRng::seed_from_u64(7);
        let spec = GroupSpec {
            accounts,
            simulated_members: members,
            devices_per_member: devices,
            addressing,
            ..GroupSpec::default()
        };
        let g = w.create_group_with_rng(&spec, rng).unwrap();
        let m = w.group_members(&g).unwrap();
        (g, m)
    }

    /// A companion of `user` without simulated keys, logged in and active on a fresh
    /// connection (what a real client looks like to the world).
    fn real_client(w: &mut World, user: &Jid, connect: bool) -> (Jid, Option<ConnId>) {
        let rng = &mut StdRng::seed_from_u64(9);
        let identity = LocalIdentity::generate(rng);
        let signed = SignedPreKeyRecord::generate(&identity.key_pair, 1, 0, rng);
        let noise = KeyPair::generate(rng).public;
        let jid = w
            .inject_device(
                user,
                DeviceRegistration {
                    noise_key: noise,
                    identity,
                    signed_prekey: SignedPreKeyPublic {
                        id: 1,
                        key: signed.key_pair.public,
                        signature: signed.signature,
                    },
                    platform: "test".into(),
                },
            )
            .unwrap();
        if !connect {
            return (jid, None);
        }
        let conn = w.new_connection(noise, Instant::now());
        w.connections.get_mut(&conn).unwrap().phase = Phase::LoggedIn {
            account: jid.user.clone(),
            device: jid.device,
            active: true,
        };
        (jid, Some(conn))
    }

    fn sent_to(effects: &[Effect], conn: ConnId) -> Vec<Node> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Conn(c, ConnAction::Send(n)) if *c == conn => Some(n.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_member_card_reaches_every_other_simulated_device_and_receipts_come_back() {
        let mut w = World::new(SimConfig::default());
        let (g, members) = group_of(&mut w, 6, 1..=3, GroupAddressing::Lid, vec![]);
        let c = card("Standup");
        let id = w
            .member_send_card(&g, &members[0], &c, &mut StdRng::seed_from_u64(1))
            .unwrap();
        let group = w.group(&g).unwrap().clone();
        let devices = w.group_devices(&group);
        let views = w.group_views(&g, &id).unwrap();
        assert_eq!(views.len(), devices.len() - 1);
        for v in &views {
            assert_eq!(v.error, None, "{}", v.device);
            assert_eq!(v.card.as_ref(), Some(&c));
            assert!(v.got_sender_key);
            assert_eq!(v.enc_types, ["pkmsg", "skmsg"]);
            assert_eq!(v.sender, Some(members[0].with_device(0)));
        }
        let delivered = w.delivered_to(&members[0].with_device(0), &id);
        assert_eq!(delivered.len(), devices.len() - 1);
        // A second card carries no SKDM: every device already has the sender key.
        let id2 = w
            .member_send_card(
                &g,
                &members[0],
                &card("Retro"),
                &mut StdRng::seed_from_u64(2),
            )
            .unwrap();
        for v in w.group_views(&g, &id2).unwrap() {
            assert_eq!(v.enc_types, ["skmsg"]);
            assert_eq!(v.card.as_ref().map(EventCard::name), Some("Retro"));
        }
    }

    #[test]
    fn rsvps_from_a_member_decrypt_on_every_device_in_pn_groups_too() {
        for addressing in [GroupAddressing::Lid, GroupAddressing::Pn] {
            let mut w = World::new(SimConfig::default());
            let (g, members) = group_of(&mut w, 4, 1..=2, addressing, vec![]);
            let rng = &mut StdRng::seed_from_u64(3);
            let id = w
                .member_send_card(&g, &members[0], &card("Party"), rng)
                .unwrap();
            let rsvp = Rsvp {
                response: RsvpResponse::Going,
                extra_guests: 2,
                timestamp_ms: 1_700_000_000_000,
            };
            let rid = w.member_rsvp(&g, &members[1], &id, &rsvp, rng).unwrap();
            let views = w.group_views(&g, &rid).unwrap();
            assert!(!views.is_empty());
            for v in views {
                assert_eq!(v.error, None, "{addressing:?} {}", v.device);
                let (event, voter, got) = v.rsvp.unwrap();
                assert_eq!(event, id);
                assert_eq!(voter, members[1]);
                assert_eq!(got, rsvp);
            }
            // An RSVP to an event the phone never saw is refused.
            assert!(matches!(
                w.member_rsvp(&g, &members[1], "3EB0NOPE", &rsvp, rng),
                Err(SimError::Member(_))
            ));
        }
    }

    #[test]
    fn edits_and_cancels_from_the_creator_reach_every_device() {
        let mut w = World::new(SimConfig::default());
        let (g, members) = group_of(&mut w, 4, 1..=2, GroupAddressing::Lid, vec![]);
        let rng = &mut StdRng::seed_from_u64(8);
        let original = card("Lunch");
        let id = w.member_send_card(&g, &members[0], &original, rng).unwrap();
        let moved = original
            .to_builder()
            .name("Lunch (moved)")
            .start_unix(1_900_007_200)
            .build()
            .unwrap();
        let eid = w
            .member_edit_card(&g, &members[0], &id, &moved, rng)
            .unwrap();
        let views = w.group_views(&g, &eid).unwrap();
        assert!(!views.is_empty());
        for v in &views {
            assert_eq!(v.error, None, "{}", v.device);
            assert_eq!(v.edit_of.as_deref(), Some(id.as_str()));
            assert_eq!(v.card.as_ref(), Some(&moved));
        }
        let stanza = w
            .captured_stanzas(&members[1].with_device(0))
            .into_iter()
            .find(|n| n.attr_str("id") == Some(eid.as_str()))
            .unwrap();
        assert_eq!(stanza.attr_str("edit"), Some("1"));
        assert_eq!(
            stanza.child_by_tag("meta").unwrap().attr_str("event_type"),
            Some("edit")
        );
        let cid = w
            .member_edit_card(&g, &members[0], &id, &moved.to_canceled(), rng)
            .unwrap();
        for v in w.group_views(&g, &cid).unwrap() {
            assert!(v.card.unwrap().is_canceled());
        }
        // Only the creator edits.
        assert!(matches!(
            w.member_edit_card(&g, &members[1], &id, &moved, rng),
            Err(SimError::Member(_))
        ));
    }

    #[test]
    fn client_messages_are_checked_for_membership_and_phash_and_fanned_out() {
        let mut w = World::new(SimConfig::default());
        let me = w.create_account("15550001111").lid.clone();
        let (client, conn) = real_client(&mut w, &me, true);
        let conn = conn.unwrap();
        let (g, _) = group_of(&mut w, 3, 1..=2, GroupAddressing::Lid, vec![me.clone()]);
        let outsider = w.create_account("15550009999").lid.clone();
        let (_, out_conn) = real_client(&mut w, &outsider, true);
        w.take_effects();
        let msg = |phash: &str| {
            Node::new("message")
                .attr("id", "3EB0AA")
                .attr("to", &g)
                .attr("type", "event")
                .attr("phash", phash)
                .child(
                    Node::new("enc")
                        .attr("v", "2")
                        .attr("type", "skmsg")
                        .with_bytes(vec![0x33, 1, 2]),
                )
                .child(Node::new("meta").attr("event_type", "creation"))
        };
        // Not a member: 403, nothing delivered.
        w.on_node(out_conn.unwrap(), msg("2:x"), Instant::now());
        let acks = sent_to(&w.take_effects(), out_conn.unwrap());
        assert_eq!(acks[0].attr_str("error"), Some("403"));
        // Wrong phash: 409 with the server's phash.
        w.on_node(conn, msg("2:AAAAAAAA"), Instant::now());
        let effects = w.take_effects();
        let acks = sent_to(&effects, conn);
        let server_phash = w.group_phash(&g).unwrap();
        assert_eq!(acks[0].attr_str("error"), Some("409"));
        assert_eq!(acks[0].attr_str("phash"), Some(server_phash.as_str()));
        assert!(w.group_views(&g, "3EB0AA").unwrap().is_empty());
        // Right phash: ack, every other device gets it; simulated devices cannot
        // decrypt garbage and send retry receipts back to the client.
        w.on_node(conn, msg(&server_phash), Instant::now());
        let sent = sent_to(&w.take_effects(), conn);
        assert_eq!(sent[0].tag, "ack");
        assert_eq!(sent[0].get_attr("error"), None);
        let retries: Vec<&Node> = sent
            .iter()
            .filter(|n| n.tag == "receipt" && n.attr_str("type") == Some("retry"))
            .collect();
        let devices = w.group_devices(w.group(&g).unwrap());
        assert_eq!(retries.len(), devices.len() - 1);
        for r in &retries {
            assert_eq!(attr_jid(r, "from"), Some(g.clone()));
            assert!(r.child_by_tag("keys").is_some() && r.child_by_tag("retry").is_some());
        }
        let views = w.group_views(&g, "3EB0AA").unwrap();
        assert!(views.iter().all(|v| v.retry_sent && v.error.is_some()));
        assert!(!views.iter().any(|v| v.device == client));
    }

    #[test]
    fn offline_devices_get_their_stanzas_after_active_and_receipts_route_back() {
        let mut w = World::new(SimConfig::default());
        let me = w.create_account("15550001111").lid.clone();
        let (offline, _) = real_client(&mut w, &me, false);
        let (g, members) = group_of(&mut w, 2, 1..=1, GroupAddressing::Lid, vec![me.clone()]);
        let id = w
            .member_send_card(
                &g,
                &members[1],
                &card("Offline"),
                &mut StdRng::seed_from_u64(4),
            )
            .unwrap();
        let queued = w.offline_queue(&offline);
        assert_eq!(queued.len(), 1);
        let m = &queued[0];
        assert_eq!(attr_jid(m, "from"), Some(g.clone()));
        assert_eq!(attr_jid(m, "participant"), Some(members[1].with_device(0)));
        assert_eq!(m.attr_str("type"), Some("event"));
        let types: Vec<_> = m.children().iter().map(|c| c.tag.clone()).collect();
        assert_eq!(types, ["enc", "enc", "meta"]);
        // Log in, go active: the backlog comes first, then the end marker.
        let conn = w.new_connection(KeyPair::generate(&mut OsRng).public, Instant::now());
        w.connections.get_mut(&conn).unwrap().phase = Phase::LoggedIn {
            account: offline.user.clone(),
            device: offline.device,
            active: false,
        };
        let active = Node::new("iq")
            .attr("id", "a1")
            .attr("type", "set")
            .attr("xmlns", "passive")
            .child(Node::new("active"));
        w.on_node(conn, active, Instant::now());
        let sent = sent_to(&w.take_effects(), conn);
        assert_eq!(sent.len(), 3);
        assert_eq!(sent[1].tag, "message");
        assert_eq!(sent[2].tag, "ib");
        assert!(w.offline_queue(&offline).is_empty());
        // The client's delivery receipt reaches the simulated sender.
        let receipt = Node::new("receipt")
            .attr("id", id.as_str())
            .attr("to", &g)
            .attr("participant", members[1].with_device(0));
        w.on_node(conn, receipt, Instant::now());
        let delivered = w.delivered_to(&members[1].with_device(0), &id);
        let offline_lid = w.account(&offline).unwrap().lid_device(offline.device);
        assert!(delivered.contains(&offline_lid), "{delivered:?}");
    }

    #[test]
    fn a_device_that_lost_its_keys_recovers_through_a_retry_receipt() {
        let mut w = World::new(SimConfig::default());
        let (g, members) = group_of(&mut w, 3, 2..=2, GroupAddressing::Lid, vec![]);
        let rng = &mut StdRng::seed_from_u64(5);
        let sender = members[0].with_device(0);
        w.member_send_card(&g, &members[0], &card("One"), rng)
            .unwrap();
        let victim = members[1].with_device(1);
        assert!(w.forget_sender(&victim, &sender));
        let c2 = card("Two");
        let id = w.member_send_card(&g, &members[0], &c2, rng).unwrap();
        let view = w.device_view(&victim, &g, &id).unwrap();
        assert!(view.retry_sent);
        assert_eq!(view.error, None, "the resend decrypted");
        assert_eq!(view.card.as_ref(), Some(&c2));
        assert!(view.got_sender_key);
        assert_eq!(w.retry_requests(&sender, &id), 1);
        // The captured stanzas hold the failed skmsg and the pkmsg resend.
        let captured = w.captured_stanzas(&victim);
        let last = captured.last().unwrap();
        let enc = last.child_by_tag("enc").unwrap();
        assert_eq!(enc.attr_str("type"), Some("pkmsg"));
        assert_eq!(enc.attr_str("count"), Some("1"));
    }

    #[test]
    fn removal_notifies_everyone_and_the_removed_member_gets_nothing_after() {
        let mut w = World::new(SimConfig::default());
        let me = w.create_account("15550001111").lid.clone();
        let (client, conn) = real_client(&mut w, &me, true);
        let conn = conn.unwrap();
        let (g, members) = group_of(&mut w, 3, 1..=1, GroupAddressing::Lid, vec![me.clone()]);
        let rng = &mut StdRng::seed_from_u64(6);
        w.member_send_card(&g, &members[1], &card("Before"), rng)
            .unwrap();
        w.take_effects();
        w.remove_group_member(&g, &members[3]).unwrap();
        let sent = sent_to(&w.take_effects(), conn);
        let note = sent.iter().find(|n| n.tag == "notification").unwrap();
        assert_eq!(note.attr_str("type"), Some("w:gp2"));
        let removed = note
            .child_by_tag("remove")
            .unwrap()
            .child_by_tag("participant")
            .unwrap();
        assert_eq!(attr_jid(removed, "jid"), Some(members[3].clone()));
        assert_eq!(w.group_members(&g).unwrap().len(), 3);
        let id = w
            .member_send_card(&g, &members[1], &card("After"), rng)
            .unwrap();
        let views = w.group_views(&g, &id).unwrap();
        assert!(views.iter().all(|v| v.device.to_non_ad() != members[3]));
        // The sender rotated: everyone got a fresh SKDM.
        assert!(views.iter().all(|v| v.got_sender_key && v.error.is_none()));
        let _ = client;
        // Adding back notifies too.
        w.add_group_member(&g, &members[3]).unwrap();
        assert!(matches!(
            w.add_group_member(&g, &members[3]),
            Err(SimError::BadGroup(_))
        ));
    }

    #[test]
    fn direct_messages_fan_out_to_the_peer_and_own_devices_only() {
        let mut w = World::new(SimConfig::default());
        let me = w.create_account("15550001111").pn.clone();
        let (client, conn) = real_client(&mut w, &me, true);
        let conn = conn.unwrap();
        let peer = w.create_account("15550002222").pn.clone();
        let stranger = w.create_account("15550003333").pn.clone();
        w.take_effects();
        let enc = || {
            Node::new("enc")
                .attr("v", "2")
                .attr("type", "pkmsg")
                .with_bytes(vec![0x33, 1])
        };
        let to = |jid: Jid| Node::new("to").attr("jid", jid).child(enc());
        let msg = Node::new("message")
            .attr("id", "3EB0DM")
            .attr("to", &peer)
            .attr("type", "text")
            .child(Node::new("participants").with_children(vec![
                to(peer.with_device(0)),
                to(me.with_device(0)),
                to(client.clone()),
                to(stranger.with_device(0)),
            ]));
        w.on_node(conn, msg, Instant::now());
        let sent = sent_to(&w.take_effects(), conn);
        assert_eq!(sent[0].tag, "ack");
        assert_eq!(sent[0].get_attr("error"), None);
        let at_peer = w.captured_stanzas(&peer.with_device(0));
        assert_eq!(at_peer.len(), 1);
        assert_eq!(attr_jid(&at_peer[0], "from"), Some(client.clone()));
        assert_eq!(at_peer[0].get_attr("recipient"), None);
        let at_own = w.captured_stanzas(&me.with_device(0));
        assert_eq!(at_own.len(), 1);
        assert_eq!(attr_jid(&at_own[0], "recipient"), Some(peer.clone()));
        // Not the stranger, not the sending device itself.
        assert!(w.captured_stanzas(&stranger.with_device(0)).is_empty());
        // Both phones failed on the garbage and asked the client for a retry.
        let retries = sent
            .iter()
            .filter(|n| n.tag == "receipt" && n.attr_str("type") == Some("retry"))
            .count();
        assert_eq!(retries, 2);
        // Unknown recipient: 404.
        let lost = Node::new("message")
            .attr("id", "3EB0LOST")
            .attr("to", Jid::pn_user("19999"))
            .child(enc());
        w.on_node(conn, lost, Instant::now());
        let sent = sent_to(&w.take_effects(), conn);
        assert_eq!(sent[0].attr_str("error"), Some("404"));
    }

    #[test]
    fn device_changes_notify_everyone_sharing_a_group_and_change_the_phash() {
        let mut w = World::new(SimConfig::default());
        let me = w.create_account("15550001111").lid.clone();
        let (_, conn) = real_client(&mut w, &me, true);
        let conn = conn.unwrap();
        let (g, members) = group_of(&mut w, 2, 1..=1, GroupAddressing::Lid, vec![me]);
        let before = w.group_phash(&g).unwrap();
        w.take_effects();
        let added = w
            .add_member_device(&members[1], &mut StdRng::seed_from_u64(3))
            .unwrap();
        let sent = sent_to(&w.take_effects(), conn);
        let note = sent.iter().find(|n| n.tag == "notification").unwrap();
        assert_eq!(note.attr_str("type"), Some("devices"));
        let add = note.child_by_tag("add").unwrap();
        let device = add.child_by_tag("device").unwrap();
        assert_eq!(attr_jid(device, "lid"), Some(added.clone()));
        assert!(device.get_attr("key-index").is_some());
        let lids = w.account_devices(&w.account_key(&added).unwrap(), GroupAddressing::Lid);
        assert_eq!(
            add.attr_str("device_lid_hash"),
            Some(super::super::groups::participant_hash(&lids).as_str())
        );
        assert_ne!(w.group_phash(&g).unwrap(), before);
        // The new device gets the next card (the sender distributes its key to it).
        let id = w
            .member_send_card(
                &g,
                &members[2],
                &card("New device"),
                &mut StdRng::seed_from_u64(4),
            )
            .unwrap();
        assert!(w.device_view(&added, &g, &id).unwrap().card.is_some());
        w.remove_member_device(&added).unwrap();
        let sent = sent_to(&w.take_effects(), conn);
        assert!(sent.iter().any(|n| n.child_by_tag("remove").is_some()));
        assert_eq!(w.group_phash(&g).unwrap(), before);
        assert!(w.remove_member_device(&members[1].with_device(0)).is_err());
    }

    #[test]
    fn link_create_gets_a_token_in_whatsapp_rusts_ack_shape() {
        let mut w = World::new(SimConfig::default());
        let me = w.create_account("15550001111").lid.clone();
        let (_, conn) = real_client(&mut w, &me, true);
        let conn = conn.unwrap();
        w.take_effects();
        let call = Node::new("call")
            .attr("id", "c1")
            .attr("to", Jid::new("", CALL_SERVER))
            .child(
                Node::new("link_create")
                    .attr("media", "video")
                    .child(Node::new("event").attr("start_time", 1_900_000_000u64)),
            );
        w.on_node(conn, call, Instant::now());
        let sent = sent_to(&w.take_effects(), conn);
        let ack = &sent[0];
        assert_eq!(ack.tag, "ack");
        assert_eq!(ack.attr_str("class"), Some("call"));
        assert_eq!(ack.attr_str("type"), Some("link_create"));
        assert_eq!(ack.attr_str("id"), Some("c1"));
        let lc = ack.child_by_tag("link_create").unwrap();
        assert_eq!(lc.attr_str("media"), Some("video"));
        let token = lc.attr_str("token").unwrap();
        assert_eq!(token.len(), 22);
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
