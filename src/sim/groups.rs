//! Groups in the simulated world: creation (simulated member accounts with real key
//! material, plus existing accounts such as the one a client under test is paired to),
//! the `w:g2` group-info IQ (PROTOCOL.md §10.1), the server's participant hash (§10.6),
//! and membership changes with their `w:gp2` notifications (§10.10).
//!
//! What the simulated members do with the messages routed to them lives in
//! [`super::phones`]; how stanzas travel in [`super::routing`]; device lists in
//! [`super::usync`].

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use rand::Rng;
use rand::rngs::OsRng;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use super::SimError;
use super::adv::{ACCOUNT_SIGNATURE_PREFIX, device_signature_message};
use super::server::SimServer;
use super::stanza::{self, attr_text};
use super::world::{
    Account, ConnId, DeviceRecord, HOSTED_DEVICE_ID, SignedPreKeyPublic, SimulatedKeys, World,
    unix_now,
};
use crate::binary::Node;
use crate::event::{EventCard, Rsvp, RsvpResponse};
use crate::jid::{GROUP_SERVER, Jid};
use crate::proto::adv::{AdvDeviceIdentity, AdvEncryptionType, AdvSignedDeviceIdentity};
use crate::signal::identity::{LocalIdentity, SignedPreKeyRecord, generate_prekeys};

/// Most simulated members one group may be created with (WhatsApp's limit is 1,024
/// participants; a little headroom for tests that go past it).
pub const MAX_SIMULATED_MEMBERS: usize = 2_048;
/// One-time prekeys each simulated member device publishes up front; fetches refill the
/// pool one key at a time (`World::refill_simulated_prekeys`), so creating
/// thousands of devices stays fast.
pub const MEMBER_PREKEYS: u32 = 2;

/// How group members are addressed in stanzas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupAddressing {
    /// LID addressing (WhatsApp's default for new groups).
    #[default]
    Lid,
    /// Phone-number addressing.
    Pn,
}

impl GroupAddressing {
    /// The `addressing_mode` attribute value: `lid` or `pn`.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupAddressing::Lid => "lid",
            GroupAddressing::Pn => "pn",
        }
    }
}

/// What group to create.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    /// Group subject.
    pub subject: String,
    /// Accounts that already exist (e.g. the account a client under test is paired
    /// to), added as members; the first one is the group's creator and admin.
    pub accounts: Vec<Jid>,
    /// How many simulated members to create in addition (each a new account).
    pub simulated_members: usize,
    /// How many devices each simulated member has (primary phone included), chosen
    /// at random in this range (1..=4 at most).
    pub devices_per_member: RangeInclusive<u16>,
    /// LID or PN addressing.
    pub addressing: GroupAddressing,
}

impl Default for GroupSpec {
    fn default() -> Self {
        GroupSpec {
            subject: "Simulated group".into(),
            accounts: Vec::new(),
            simulated_members: 0,
            devices_per_member: 1..=1,
            addressing: GroupAddressing::Lid,
        }
    }
}

/// What one simulated member device made of a message it received.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceView {
    /// The device (in the group's addressing).
    pub device: Jid,
    /// The event card it decrypted, if the message was one (for an edit: the edited
    /// card).
    pub card: Option<EventCard>,
    /// Why it could not decrypt, if it could not.
    pub error: Option<String>,
    /// The sending device as the stanza named it (`participant` in groups, `from` in
    /// 1:1).
    pub sender: Option<Jid>,
    /// `enc` types in the stanza it got, in order (`pkmsg`, `msg`, `skmsg`).
    pub enc_types: Vec<String>,
    /// The stanza carried a sender-key distribution message it processed.
    pub got_sender_key: bool,
    /// The RSVP it decrypted, if the message was one: (event message id, responder as
    /// the key derivation authenticated it, the answer).
    pub rsvp: Option<(String, Jid, Rsvp)>,
    /// The message was an event edit of this event id (the new card is in `card`).
    pub edit_of: Option<String>,
    /// It sent a retry receipt for this message (decryption failed).
    pub retry_sent: bool,
}

impl DeviceView {
    /// An empty view of `device`.
    pub fn new(device: Jid) -> Self {
        DeviceView {
            device,
            card: None,
            error: None,
            sender: None,
            enc_types: Vec::new(),
            got_sender_key: false,
            rsvp: None,
            edit_of: None,
            retry_sent: false,
        }
    }
}

/// A group as the server keeps it.
#[derive(Debug, Clone)]
pub struct Group {
    /// `<id>@g.us`.
    pub jid: Jid,
    /// Subject.
    pub subject: String,
    /// LID or PN addressing.
    pub addressing: GroupAddressing,
    /// Account key (PN user) of the creator.
    pub creator: String,
    /// Creation time (unix seconds).
    pub created: u64,
    /// Account keys of the members, creator first.
    pub members: Vec<String>,
    /// Account keys of the admins.
    pub admins: BTreeSet<String>,
}

/// WhatsApp's participant-list hash (`phash`, PROTOCOL.md §10.6): the ADStrings of the
/// devices, sorted byte-wise, concatenated, SHA-256, first 6 bytes, standard base64
/// without padding, prefixed `2:`.
pub fn participant_hash(devices: &[Jid]) -> String {
    let mut strings: Vec<String> = devices.iter().map(Jid::ad_string).collect();
    strings.sort();
    let mut h = Sha256::new();
    for s in &strings {
        h.update(s.as_bytes());
    }
    let digest = h.finalize();
    format!("2:{}", STANDARD_NO_PAD.encode(&digest[..6]))
}

/// A new simulated companion (or primary) device with its private keys.
fn simulated_device<R: RngCore + CryptoRng + ?Sized>(
    id: u16,
    key_index: u32,
    platform: &str,
    rng: &mut R,
) -> DeviceRecord {
    let identity = LocalIdentity::generate(rng);
    let signed = SignedPreKeyRecord::generate(&identity.key_pair, 1, unix_now() * 1000, rng);
    let prekeys = generate_prekeys(1, MEMBER_PREKEYS, rng);
    DeviceRecord {
        id,
        identity: identity.key_pair.public,
        registration_id: identity.registration_id,
        signed_prekey: SignedPreKeyPublic {
            id: signed.id,
            key: signed.key_pair.public,
            signature: signed.signature,
        },
        prekeys: prekeys.iter().map(|p| (p.id, p.key_pair.public)).collect(),
        key_index,
        signed_identity: None,
        noise_key: None,
        platform: platform.to_owned(),
        removed: false,
        low_count_notified: false,
        last_activity: None,
        simulated: Some(SimulatedKeys {
            identity,
            signed_prekey: signed,
            prekeys: prekeys.into_iter().map(|p| (p.id, p)).collect(),
        }),
    }
}

/// The `ADVSignedDeviceIdentity` the account's phone issues to a simulated companion
/// (account signature by the phone, device signature by the companion), as the server
/// hands it out in key bundles.
fn simulated_adv_identity<R: RngCore + CryptoRng + ?Sized>(
    account: &Account,
    device: &DeviceRecord,
    rng: &mut R,
) -> Option<Vec<u8>> {
    let primary = account.primary_keys()?;
    let companion = device.simulated.as_ref()?;
    let details = prost::Message::encode_to_vec(&AdvDeviceIdentity {
        raw_id: Some(account.raw_id),
        timestamp: Some(unix_now()),
        key_index: Some(device.key_index),
        account_type: Some(AdvEncryptionType::E2ee as i32),
        device_type: Some(AdvEncryptionType::E2ee as i32),
    });
    let account_signature = primary.identity.key_pair.private.sign(
        rng,
        &[
            &ACCOUNT_SIGNATURE_PREFIX[..],
            &details,
            device.identity.as_bytes(),
        ]
        .concat(),
    );
    let device_signature = companion.identity.key_pair.private.sign(
        rng,
        &device_signature_message(
            &details,
            &device.identity,
            &primary.identity.key_pair.public,
        ),
    );
    Some(prost::Message::encode_to_vec(&AdvSignedDeviceIdentity {
        details: Some(details),
        account_signature_key: Some(primary.identity.key_pair.public.as_bytes().to_vec()),
        account_signature: Some(account_signature.to_vec()),
        device_signature: Some(device_signature.to_vec()),
    }))
}

impl World {
    /// Creates a simulated account with `devices` devices (primary phone + companions,
    /// every one with private keys the simulator plays); returns its account key.
    pub fn create_simulated_member<R: RngCore + CryptoRng + ?Sized>(
        &mut self,
        devices: u16,
        rng: &mut R,
    ) -> String {
        let pn = loop {
            let candidate = format!("1999{:09}", rng.gen_range(0..1_000_000_000u64));
            if !self.accounts.contains_key(&candidate) {
                break candidate;
            }
        };
        self.create_account_with_rng(&pn, rng);
        if let Some(account) = self.accounts.get_mut(&pn) {
            // The primary phone gets the small pool too (the default account pool is
            // sized for pairing tests).
            if let Some(phone) = account.devices.get_mut(&0)
                && let Some(keys) = phone.simulated.as_mut()
            {
                let keep: Vec<u32> = keys
                    .prekeys
                    .keys()
                    .copied()
                    .take(MEMBER_PREKEYS as usize)
                    .collect();
                keys.prekeys.retain(|id, _| keep.contains(id));
                phone.prekeys.retain(|(id, _)| keep.contains(id));
            }
            for _ in 1..devices.clamp(1, 4) {
                let Some(id) = account.allocate_device_id() else {
                    break;
                };
                let key_index = account.allocate_key_index();
                let mut record = simulated_device(id, key_index, "web", rng);
                record.signed_identity = simulated_adv_identity(account, &record, rng);
                account.devices.insert(id, record);
            }
        }
        pn
    }

    /// Creates a group (see [`GroupSpec`]); returns its JID. Refuses unknown existing
    /// accounts, a group with no member at all, more than [`MAX_SIMULATED_MEMBERS`]
    /// simulated members, and a device range outside 1..=4.
    pub fn create_group_with_rng<R: RngCore + CryptoRng + ?Sized>(
        &mut self,
        spec: &GroupSpec,
        rng: &mut R,
    ) -> Result<Jid, SimError> {
        if spec.simulated_members > MAX_SIMULATED_MEMBERS {
            return Err(SimError::BadGroup(format!(
                "{} simulated members (most: {MAX_SIMULATED_MEMBERS})",
                spec.simulated_members
            )));
        }
        let (lo, hi) = (
            *spec.devices_per_member.start(),
            *spec.devices_per_member.end(),
        );
        if lo == 0 || hi > 4 || lo > hi {
            return Err(SimError::BadGroup(format!(
                "devices per member {lo}..={hi} is not within 1..=4"
            )));
        }
        let mut members = Vec::new();
        for jid in &spec.accounts {
            let key = self
                .account_key(jid)
                .ok_or_else(|| SimError::UnknownAccount(jid.to_string()))?;
            if !members.contains(&key) {
                members.push(key);
            }
        }
        for _ in 0..spec.simulated_members {
            let n = rng.gen_range(lo..=hi);
            members.push(self.create_simulated_member(n, rng));
        }
        let Some(creator) = members.first().cloned() else {
            return Err(SimError::BadGroup(
                "a group needs at least one member".into(),
            ));
        };
        let id = loop {
            let candidate = format!("120363{:012}", rng.gen_range(0..1_000_000_000_000u64));
            if !self.groups.contains_key(&candidate) {
                break candidate;
            }
        };
        let jid = Jid::new(id.clone(), GROUP_SERVER);
        self.groups.insert(
            id,
            Group {
                jid: jid.clone(),
                subject: spec.subject.clone(),
                addressing: spec.addressing,
                creator: creator.clone(),
                created: unix_now(),
                members,
                admins: BTreeSet::from([creator]),
            },
        );
        Ok(jid)
    }

    /// The group a group JID names.
    pub fn group(&self, jid: &Jid) -> Option<&Group> {
        if jid.server != GROUP_SERVER {
            return None;
        }
        self.groups.get(&jid.user)
    }

    /// The user JID of account `key` in `addressing`.
    pub fn user_jid(&self, key: &str, addressing: GroupAddressing) -> Option<Jid> {
        let a = self.accounts.get(key)?;
        Some(match addressing {
            GroupAddressing::Lid => a.lid.clone(),
            GroupAddressing::Pn => a.pn.clone(),
        })
    }

    /// The members of a group (user JIDs in its addressing), creator first.
    pub fn group_members(&self, group: &Jid) -> Result<Vec<Jid>, SimError> {
        let g = self
            .group(group)
            .ok_or_else(|| SimError::UnknownGroup(group.to_string()))?;
        Ok(g.members
            .iter()
            .filter_map(|m| self.user_jid(m, g.addressing))
            .collect())
    }

    /// Every live device of account `key` as a device JID in `addressing`, primary first
    /// (hosted device 99 and removed devices left out).
    pub fn account_devices(&self, key: &str, addressing: GroupAddressing) -> Vec<Jid> {
        let Some(a) = self.accounts.get(key) else {
            return Vec::new();
        };
        a.devices
            .values()
            .filter(|d| !d.removed && d.id != HOSTED_DEVICE_ID)
            .map(|d| match addressing {
                GroupAddressing::Lid => a.lid_device(d.id),
                GroupAddressing::Pn => a.pn_device(d.id),
            })
            .collect()
    }

    /// Every device of every member of a group, in its addressing: the server's fan-out
    /// set (the sending device is part of it; the router skips it).
    pub fn group_devices(&self, group: &Group) -> Vec<Jid> {
        group
            .members
            .iter()
            .flat_map(|m| self.account_devices(m, group.addressing))
            .collect()
    }

    /// The `phash` the server computes for a group: every member device (sender
    /// included).
    pub fn group_phash(&self, group: &Jid) -> Option<String> {
        let g = self.group(group)?;
        Some(participant_hash(&self.group_devices(g)))
    }

    /// `<participant jid [type] [phone_number|lid]/>` of one member.
    fn participant_node(&self, g: &Group, key: &str) -> Option<Node> {
        let a = self.accounts.get(key)?;
        let mut node = match g.addressing {
            GroupAddressing::Lid => Node::new("participant")
                .attr("jid", &a.lid)
                .attr("phone_number", &a.pn),
            GroupAddressing::Pn => Node::new("participant")
                .attr("jid", &a.pn)
                .attr("lid", &a.lid),
        };
        if g.admins.contains(key) {
            let kind = if *key == g.creator {
                "superadmin"
            } else {
                "admin"
            };
            node = node.attr("type", kind);
        }
        Some(node)
    }

    /// The `<group>` node of a group-info result.
    pub fn group_node(&self, g: &Group) -> Node {
        let creator = self
            .user_jid(&g.creator, g.addressing)
            .unwrap_or_else(|| Jid::new(g.creator.clone(), crate::jid::DEFAULT_USER_SERVER));
        let mut node = Node::new("group")
            .attr("id", g.jid.user.as_str())
            .attr("subject", g.subject.as_str())
            .attr("s_t", g.created)
            .attr("s_o", &creator)
            .attr("creation", g.created)
            .attr("creator", &creator)
            .attr("size", g.members.len())
            .attr("addressing_mode", g.addressing.as_str());
        if g.addressing == GroupAddressing::Lid
            && let Some(a) = self.accounts.get(&g.creator)
        {
            node = node.attr("creator_pn", &a.pn).attr("s_o_pn", &a.pn);
        }
        let participants = g
            .members
            .iter()
            .filter_map(|m| self.participant_node(g, m))
            .collect();
        node.with_children(participants)
    }

    /// Answers `<iq xmlns="w:g2" type="get" to="<group>"><query/></iq>`: the group
    /// node; `404 item-not-found` for an unknown group, `403 forbidden` when the asking
    /// account is not a member. With a `phash` on the query equal to the server's, the
    /// result carries no `<group>` (nothing changed).
    pub(crate) fn on_group_iq(
        &mut self,
        conn: ConnId,
        account: &str,
        id: &str,
        kind: &str,
        iq: &Node,
    ) -> Node {
        let Some(group_jid) = stanza::attr_jid(iq, "to").filter(Jid::is_group) else {
            self.protocol_error(conn, "w:g2 iq without a group JID in to");
            return stanza::iq_error(id, 400, "bad-request");
        };
        let from = || {
            Node::new("iq")
                .attr("from", &group_jid)
                .attr("id", id)
                .attr("type", "result")
        };
        let error = |code: u16, text: &str| {
            Node::new("iq")
                .attr("from", &group_jid)
                .attr("id", id)
                .attr("type", "error")
                .child(Node::new("error").attr("code", code).attr("text", text))
        };
        let Some(query) = iq.child_by_tag("query") else {
            return error(501, "feature-not-implemented");
        };
        if kind != "get" {
            return error(501, "feature-not-implemented");
        }
        let Some(g) = self.group(&group_jid) else {
            return error(404, "item-not-found");
        };
        if !g.members.iter().any(|m| m == account) {
            return error(403, "forbidden");
        }
        let phash = participant_hash(&self.group_devices(g));
        if attr_text(query, "phash").as_deref() == Some(phash.as_str()) {
            return from();
        }
        from().child(self.group_node(g))
    }

    /// Adds an account to a group and sends `<notification type="w:gp2"><add>` to every
    /// member device (the new one included). Refuses unknown groups and accounts and
    /// accounts that are already members.
    pub fn add_group_member(&mut self, group: &Jid, member: &Jid) -> Result<(), SimError> {
        let key = self
            .account_key(member)
            .ok_or_else(|| SimError::UnknownAccount(member.to_string()))?;
        let g = self
            .group(group)
            .ok_or_else(|| SimError::UnknownGroup(group.to_string()))?;
        if g.members.contains(&key) {
            return Err(SimError::BadGroup(format!("{member} is already a member")));
        }
        if let Some(g) = self.groups.get_mut(&group.user) {
            g.members.push(key.clone());
        }
        self.notify_membership(group, "add", &key);
        self.settle();
        Ok(())
    }

    /// Removes an account from a group and sends `<notification type="w:gp2"><remove>`
    /// to the removed member's devices and every remaining member device. Simulated
    /// members that stay rotate their own sender key for the group (as WhatsApp's
    /// clients do when someone who had it leaves). Refuses unknown groups, non-members
    /// and removing the last member.
    pub fn remove_group_member(&mut self, group: &Jid, member: &Jid) -> Result<(), SimError> {
        let key = self
            .account_key(member)
            .ok_or_else(|| SimError::UnknownAccount(member.to_string()))?;
        let g = self
            .group(group)
            .ok_or_else(|| SimError::UnknownGroup(group.to_string()))?;
        if !g.members.contains(&key) {
            return Err(SimError::BadGroup(format!("{member} is not a member")));
        }
        if g.members.len() == 1 {
            return Err(SimError::BadGroup("cannot remove the last member".into()));
        }
        // The removed member hears about it too (its own devices drop the group).
        self.notify_membership(group, "remove", &key);
        if let Some(g) = self.groups.get_mut(&group.user) {
            g.members.retain(|m| *m != key);
            g.admins.remove(&key);
            if g.creator == key
                && let Some(first) = g.members.first()
            {
                g.admins.insert(first.clone());
            }
        }
        let remaining = self
            .group(group)
            .map(|g| g.members.clone())
            .unwrap_or_default();
        for m in remaining {
            self.phones_forget_own_sender_key(&m, group);
        }
        self.settle();
        Ok(())
    }

    /// Gives simulated member `member` one more simulated companion device (with its
    /// ADV identity) and sends the `devices` add notification; returns the new device's
    /// JID in `member`'s form. Refuses unknown accounts, accounts without a simulated
    /// phone and accounts with no free device number.
    pub fn add_member_device<R: RngCore + CryptoRng + ?Sized>(
        &mut self,
        member: &Jid,
        rng: &mut R,
    ) -> Result<Jid, SimError> {
        let key = self
            .account_key(member)
            .ok_or_else(|| SimError::UnknownAccount(member.to_string()))?;
        let account = self
            .accounts
            .get_mut(&key)
            .ok_or_else(|| SimError::UnknownAccount(key.clone()))?;
        if account.primary_keys().is_none() {
            return Err(SimError::Member(format!("{member} has no simulated phone")));
        }
        let id = account
            .allocate_device_id()
            .ok_or_else(|| SimError::Member(format!("{member} has no free device number")))?;
        let key_index = account.allocate_key_index();
        let mut record = simulated_device(id, key_index, "web", rng);
        record.signed_identity = simulated_adv_identity(account, &record, rng);
        account.devices.insert(id, record);
        self.notify_devices(&key, "add", id);
        self.settle();
        Ok(member.with_device(id))
    }

    /// Unlinks device `device` (its connections get `401 device_removed`) and sends the
    /// `devices` remove notification. Refuses unknown devices and primary phones.
    pub fn remove_member_device(&mut self, device: &Jid) -> Result<(), SimError> {
        let key = self
            .account_key(device)
            .ok_or_else(|| SimError::UnknownAccount(device.to_string()))?;
        if device.device == 0 {
            return Err(SimError::Member(
                "the primary phone cannot be unlinked".into(),
            ));
        }
        if !self.remove_device(device) {
            return Err(SimError::UnknownAccount(device.to_string()));
        }
        self.notify_devices(&key, "remove", device.device);
        self.settle();
        Ok(())
    }

    /// `<notification type="devices" from=<PN user> lid=<LID user>><add|remove
    /// device_hash><device jid lid [key-index]/><key-index-list/></…></notification>`
    /// to the account's other devices and every device of every account sharing a group
    /// with it (PROTOCOL.md §10.10).
    fn notify_devices(&mut self, key: &str, action: &str, device: u16) {
        let Some(a) = self.accounts.get(key).cloned() else {
            return;
        };
        let devices = self.account_devices(key, GroupAddressing::Pn);
        let lid_devices = self.account_devices(key, GroupAddressing::Lid);
        let mut changed = Node::new("device")
            .attr("jid", a.pn_device(device))
            .attr("lid", a.lid_device(device));
        if let Some(d) = a.devices.get(&device) {
            changed = changed.attr("key-index", d.key_index);
        }
        let mut children = vec![changed];
        if let Some(list) = self.key_index_list_bytes(key) {
            children.push(
                Node::new("key-index-list")
                    .attr("ts", unix_now())
                    .with_bytes(list),
            );
        }
        let body = Node::new(action.to_string())
            .attr("device_hash", participant_hash(&devices))
            .attr("device_lid_hash", participant_hash(&lid_devices))
            .with_children(children);
        let mut audience: BTreeSet<String> = BTreeSet::from([key.to_owned()]);
        for g in self.groups.values() {
            if g.members.iter().any(|m| m == key) {
                audience.extend(g.members.iter().cloned());
            }
        }
        let t = unix_now();
        for m in audience {
            let targets: Vec<u16> = self
                .accounts
                .get(&m)
                .map(|acc| {
                    acc.devices
                        .values()
                        .filter(|d| {
                            let changed = m == key && d.id == device;
                            !d.removed && !changed
                        })
                        .map(|d| d.id)
                        .collect()
                })
                .unwrap_or_default();
            for d in targets {
                let id = self.stanza_id();
                let node = Node::new("notification")
                    .attr("from", &a.pn)
                    .attr("lid", &a.lid)
                    .attr("id", id.as_str())
                    .attr("t", t)
                    .attr("type", "devices")
                    .child(body.clone());
                self.deliver(&m, d, node, Some("devices"));
            }
        }
    }

    /// Sends a `w:gp2` `<add|remove><participant/></…>` notification about `subject` to
    /// every device of every member (as the group is now).
    fn notify_membership(&mut self, group: &Jid, action: &str, subject: &str) {
        let Some(g) = self.group(group).cloned() else {
            return;
        };
        let Some(participant) = self.participant_node(&g, subject) else {
            return;
        };
        let actor = self
            .user_jid(&g.creator, g.addressing)
            .unwrap_or_else(Jid::server_jid);
        let mut targets: Vec<String> = g.members.clone();
        if !targets.iter().any(|m| m == subject) {
            targets.push(subject.to_owned());
        }
        let t = unix_now();
        for m in targets {
            let devices: Vec<u16> = self
                .accounts
                .get(&m)
                .map(|a| {
                    a.devices
                        .values()
                        .filter(|d| !d.removed)
                        .map(|d| d.id)
                        .collect()
                })
                .unwrap_or_default();
            for d in devices {
                let id = self.stanza_id();
                let node = Node::new("notification")
                    .attr("from", group)
                    .attr("id", id.as_str())
                    .attr("t", t)
                    .attr("type", "w:gp2")
                    .attr("participant", &actor)
                    .attr("addressing_mode", g.addressing.as_str())
                    .child(Node::new(action.to_string()).child(participant.clone()));
                self.deliver(&m, d, node, Some("w:gp2"));
            }
        }
    }
}

impl SimServer {
    /// Creates a group; returns its JID (`<id>@g.us`). Refuses what
    /// [`World::create_group_with_rng`] refuses.
    pub fn create_group(&self, spec: GroupSpec) -> Result<Jid, SimError> {
        self.with_world(|w| w.create_group_with_rng(&spec, &mut OsRng))
    }

    /// The group's members (user JIDs in the group's addressing), creator first.
    pub fn group_members(&self, group: &Jid) -> Result<Vec<Jid>, SimError> {
        self.with_world(|w| w.group_members(group))
    }

    /// Every member device of the group in its addressing (the server's fan-out set).
    pub fn group_devices(&self, group: &Jid) -> Result<Vec<Jid>, SimError> {
        self.with_world(|w| {
            let g = w
                .group(group)
                .ok_or_else(|| SimError::UnknownGroup(group.to_string()))?;
            Ok(w.group_devices(g))
        })
    }

    /// The participant hash the server expects on messages to the group.
    pub fn group_phash(&self, group: &Jid) -> Result<String, SimError> {
        self.with_world(|w| {
            w.group_phash(group)
                .ok_or_else(|| SimError::UnknownGroup(group.to_string()))
        })
    }

    /// What every simulated member device made of message `message_id` in `group`
    /// (devices that have not received it yet are missing). Like every `SimServer`
    /// accessor it first finishes what simulated devices still had to process, so a
    /// test that got its ack can look right away.
    pub fn group_views(&self, group: &Jid, message_id: &str) -> Result<Vec<DeviceView>, SimError> {
        self.with_world(|w| w.group_views(group, message_id))
    }

    /// Makes simulated member `member` answer event `event_id` (which its devices
    /// received) from its primary phone: an encrypted RSVP sent to the group like a
    /// real phone sends it. Returns the RSVP's message id.
    pub async fn member_rsvp(
        &self,
        group: &Jid,
        member: &Jid,
        event_id: &str,
        response: RsvpResponse,
        extra_guests: u32,
    ) -> Result<String, SimError> {
        let rsvp = Rsvp {
            response,
            extra_guests,
            timestamp_ms: i64::try_from(unix_now()).unwrap_or(0).saturating_mul(1000),
        };
        self.with_world(|w| w.member_rsvp(group, member, event_id, &rsvp, &mut OsRng))
    }

    /// Makes simulated member `member` send event card `card` to `group` from its
    /// primary phone; returns the message id.
    pub async fn member_send_card(
        &self,
        group: &Jid,
        member: &Jid,
        card: &EventCard,
    ) -> Result<String, SimError> {
        self.with_world(|w| w.member_send_card(group, member, card, &mut OsRng))
    }

    /// Makes `group` an established group among its simulated members (see
    /// [`World::share_member_sender_keys`]): their later group messages carry SKDMs
    /// only for devices that are not simulated. Returns how many keys were handed over.
    pub fn share_member_sender_keys(&self, group: &Jid) -> Result<usize, SimError> {
        self.with_world(|w| w.share_member_sender_keys(group, &mut OsRng))
    }

    /// Makes simulated member `member` edit (or cancel, with a canceled card) event
    /// `event_id` it created; returns the edit's message id.
    pub async fn member_edit_card(
        &self,
        group: &Jid,
        member: &Jid,
        event_id: &str,
        card: &EventCard,
    ) -> Result<String, SimError> {
        self.with_world(|w| w.member_edit_card(group, member, event_id, card, &mut OsRng))
    }

    /// Holds back the answers to `w:g2` queries about `group` (a slow server, for
    /// tests) until [`SimServer::release_group_info`]. Other stanzas are not held.
    pub fn hold_group_info(&self, group: &Jid) {
        self.with_world(|w| {
            w.held_group_info.entry(group.user.clone()).or_default();
        });
    }

    /// How many `w:g2` answers about `group` are being held back.
    pub fn held_group_info(&self, group: &Jid) -> usize {
        self.with_world(|w| w.held_group_info.get(&group.user).map_or(0, Vec::len))
    }

    /// Sends the held-back `w:g2` answers about `group` and stops holding them.
    pub fn release_group_info(&self, group: &Jid) {
        self.with_world(|w| {
            for (conn, reply) in w.held_group_info.remove(&group.user).unwrap_or_default() {
                w.send(conn, reply);
            }
        });
    }

    /// Gives simulated member `member` one more simulated device (a `devices` add
    /// notification goes to everyone who shares a group with it); returns its JID.
    pub fn add_member_device(&self, member: &Jid) -> Result<Jid, SimError> {
        self.with_world(|w| w.add_member_device(member, &mut OsRng))
    }

    /// Unlinks a member's companion device (a `devices` remove notification goes to
    /// everyone who shares a group with it).
    pub fn remove_member_device(&self, device: &Jid) -> Result<(), SimError> {
        self.with_world(|w| w.remove_member_device(device))
    }

    /// What simulated device `device` made of message `message_id` in `chat`.
    pub fn device_view(&self, device: &Jid, chat: &Jid, message_id: &str) -> Option<DeviceView> {
        self.with_world(|w| w.device_view(device, chat, message_id))
    }

    /// The last stanzas the server routed to simulated device `device`, oldest first
    /// (bounded: [`super::phones::MAX_CAPTURES`]).
    pub fn captured_stanzas(&self, device: &Jid) -> Vec<Node> {
        self.with_world(|w| w.captured_stanzas(device))
    }

    /// Retry on demand: simulated device `device` forgets its session with `sender` (a
    /// device JID) and every sender key of it, so the next message from `sender` fails
    /// to decrypt and the device sends a retry receipt (with `<keys>`); it then decrypts
    /// the single-device resend. Returns false for a device that is not simulated or an
    /// unknown sender.
    pub fn forget_sender(&self, device: &Jid, sender: &Jid) -> bool {
        self.with_world(|w| w.forget_sender(device, sender))
    }

    /// Devices whose delivery receipts for `message_id` reached simulated device
    /// `device` (the sender).
    pub fn delivered_to(&self, device: &Jid, message_id: &str) -> Vec<Jid> {
        self.with_world(|w| w.delivered_to(device, message_id))
    }

    /// Adds `member` (an existing account) to `group` (a `w:gp2` add notification goes
    /// to every member device).
    pub fn add_member(&self, group: &Jid, member: &Jid) -> Result<(), SimError> {
        self.with_world(|w| w.add_group_member(group, member))
    }

    /// Removes `member` from `group` (a `w:gp2` remove notification goes to every
    /// remaining member device).
    pub fn remove_member(&self, group: &Jid, member: &Jid) -> Result<(), SimError> {
        self.with_world(|w| w.remove_group_member(group, member))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimConfig;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn phash_matches_whatsapp_rust_vectors() {
        let j = |s: &str| Jid::parse(s).unwrap();
        assert_eq!(
            participant_hash(&[j("5511999999999:3@s.whatsapp.net")]),
            "2:5s+YxCff"
        );
        assert_eq!(
            participant_hash(&[j("5511999999999@s.whatsapp.net")]),
            "2:RJWVxcMQ"
        );
        assert_eq!(
            participant_hash(&[
                j("7469250125917:21@s.whatsapp.net"),
                j("5511988887777:14@s.whatsapp.net"),
            ]),
            "2:AAv/hwhn"
        );
    }

    #[test]
    fn groups_have_members_devices_and_refuse_bad_specs() {
        let mut w = World::new(SimConfig::default());
        let rng = &mut StdRng::seed_from_u64(1);
        let me = w.create_account("15550001111").lid.clone();
        let spec = GroupSpec {
            accounts: vec![me.clone()],
            simulated_members: 5,
            devices_per_member: 1..=4,
            ..GroupSpec::default()
        };
        let g = w.create_group_with_rng(&spec, rng).unwrap();
        let members = w.group_members(&g).unwrap();
        assert_eq!(members.len(), 6);
        assert_eq!(members[0], me);
        assert!(members.iter().all(Jid::is_lid));
        let group = w.group(&g).unwrap().clone();
        let devices = w.group_devices(&group);
        assert!(
            devices.len() >= 6 && devices.len() <= 21,
            "{}",
            devices.len()
        );
        // Simulated companions carry a key index and an ADV identity.
        for d in devices.iter().filter(|d| d.device != 0) {
            let key = w.account_key(d).unwrap();
            let rec = &w.accounts[&key].devices[&d.device];
            assert!(rec.key_index > 0 && rec.signed_identity.is_some());
            assert!(rec.simulated.is_some());
        }
        let bad = GroupSpec {
            devices_per_member: 0..=2,
            ..spec.clone()
        };
        assert!(matches!(
            w.create_group_with_rng(&bad, rng),
            Err(SimError::BadGroup(_))
        ));
        let unknown = GroupSpec {
            accounts: vec![Jid::pn_user("1")],
            ..spec
        };
        assert!(matches!(
            w.create_group_with_rng(&unknown, rng),
            Err(SimError::UnknownAccount(_))
        ));
    }

    #[test]
    fn group_info_answers_members_404_and_403() {
        let mut w = World::new(SimConfig::default());
        let rng = &mut StdRng::seed_from_u64(2);
        let me = w.create_account("15550001111").pn.clone();
        w.create_account("15550002222");
        let spec = GroupSpec {
            accounts: vec![me],
            simulated_members: 2,
            addressing: GroupAddressing::Pn,
            ..GroupSpec::default()
        };
        let g = w.create_group_with_rng(&spec, rng).unwrap();
        let query = |to: &Jid| {
            Node::new("iq")
                .attr("id", "q1")
                .attr("type", "get")
                .attr("xmlns", "w:g2")
                .attr("to", to)
                .child(Node::new("query").attr("request", "interactive"))
        };
        let r = w.on_group_iq(1, "15550001111", "q1", "get", &query(&g));
        assert_eq!(r.attr_str("type"), Some("result"));
        let group = r.child_by_tag("group").unwrap();
        assert_eq!(group.attr_str("addressing_mode"), Some("pn"));
        let parts: Vec<&Node> = group.children_by_tag("participant").collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].attr_str("type"), Some("superadmin"));
        assert!(parts.iter().all(|p| p.get_attr("lid").is_some()));
        let r = w.on_group_iq(1, "15550002222", "q1", "get", &query(&g));
        assert_eq!(
            r.child_by_tag("error").unwrap().attr_str("code"),
            Some("403")
        );
        let r = w.on_group_iq(
            1,
            "15550001111",
            "q1",
            "get",
            &query(&Jid::group("1203630")),
        );
        assert_eq!(
            r.child_by_tag("error").unwrap().attr_str("code"),
            Some("404")
        );
        // An unchanged phash gets an empty result.
        let phash = w.group_phash(&g).unwrap();
        let q = Node::new("iq").attr("to", &g).child(
            Node::new("query")
                .attr("request", "interactive")
                .attr("phash", phash.as_str()),
        );
        let r = w.on_group_iq(1, "15550001111", "q1", "get", &q);
        assert!(r.child_by_tag("group").is_none());
    }
}
