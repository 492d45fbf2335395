//! The notifications that change who a message fans out to (PROTOCOL.md §10.10),
//! parsed sans-IO: `devices` (a user's device list changed) and `w:gp2` (group
//! membership changed).
//!
//! ```text
//! <notification type="devices" from="<user>" [lid="<LID>"] id t>
//!   <add|remove|update device_hash="2:…" [device_lid_hash]>
//!     <device jid="<device>" [lid] [key-index]/> [<key-index-list ts>…</key-index-list>]
//!   </add> …</notification>
//! <notification type="w:gp2" from="<group>" participant="<actor>" id t>
//!   <add|remove|promote|demote|modify|subject|… [reason]>
//!     <participant jid [phone_number|lid]/> …</…> …</notification>
//! ```

use super::wire_read::{Malformed, attr_jid, attr_num, attr_text, require_jid, shown};
use crate::binary::Node;
use crate::jid::Jid;

/// The most children and participants read from one notification.
pub const MAX_NOTIFICATION_ITEMS: usize = 4_096;

/// What happened to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChangeKind {
    /// A device was linked.
    Add,
    /// A device was unlinked.
    Remove,
    /// The list changed in a way the notification does not spell out: refetch.
    Update,
}

/// One change of a `devices` notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceChange {
    /// Add, remove or update.
    pub kind: DeviceChangeKind,
    /// The device concerned (absent in some `update`s).
    pub device: Option<Jid>,
    /// The same device under the user's LID, when given.
    pub device_lid: Option<Jid>,
    /// The device's `key-index`, when given.
    pub key_index: Option<u32>,
    /// The participant hash of the user's device list after the change (`2:…`).
    pub device_hash: Option<String>,
}

/// A parsed `devices` notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNotification {
    /// The user whose devices changed (no device part).
    pub user: Jid,
    /// The user's LID, when the server said (`lid` attribute).
    pub lid: Option<Jid>,
    /// The changes, in order. Unknown children are skipped.
    pub changes: Vec<DeviceChange>,
}

/// What happened in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChangeKind {
    /// Members joined or were added.
    Add,
    /// Members left or were removed.
    Remove,
    /// Members became admins.
    Promote,
    /// Members stopped being admins.
    Demote,
    /// A member changed number or moved to a LID (WhatsApp rotates the sender key).
    Modify,
    /// Anything else (subject, description, settings, …), by tag.
    Other(String),
}

/// A member named in a `w:gp2` change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedParticipant {
    /// The member (user JID, in the group's addressing).
    pub jid: Jid,
    /// `phone_number` attribute (LID groups).
    pub phone_number: Option<Jid>,
    /// `lid` attribute (PN groups).
    pub lid: Option<Jid>,
}

/// One change of a `w:gp2` notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupChange {
    /// What happened.
    pub kind: GroupChangeKind,
    /// The members concerned (empty for setting changes).
    pub participants: Vec<ChangedParticipant>,
}

/// A parsed `w:gp2` notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupNotification {
    /// The group.
    pub group: Jid,
    /// Who made the change (`participant`), when given.
    pub actor: Option<Jid>,
    /// The changes, in order.
    pub changes: Vec<GroupChange>,
}

impl GroupNotification {
    /// True when a member left, was removed or changed identity: the group's sender key
    /// must be rotated (PROTOCOL.md §10.7).
    pub fn needs_rotation(&self) -> bool {
        self.changes
            .iter()
            .any(|c| matches!(c.kind, GroupChangeKind::Remove | GroupChangeKind::Modify))
    }

    /// True when the member list changed (the cached metadata is stale).
    pub fn changes_members(&self) -> bool {
        self.changes.iter().any(|c| {
            matches!(
                c.kind,
                GroupChangeKind::Add
                    | GroupChangeKind::Remove
                    | GroupChangeKind::Modify
                    | GroupChangeKind::Promote
                    | GroupChangeKind::Demote
            )
        })
    }
}

const DEVICES: &str = "devices notification";
const GROUP: &str = "w:gp2 notification";

/// Parses a `<notification type="devices">`. Refuses another type, a `from` that is
/// not a user, a `<device jid>` of another user, and more than
/// [`MAX_NOTIFICATION_ITEMS`] children.
pub fn parse_device_notification(node: &Node) -> Result<DeviceNotification, Malformed> {
    if node.tag != "notification" || attr_text(node, "type").as_deref() != Some("devices") {
        return Err(Malformed::new(
            DEVICES,
            format!(
                "<{} type={:?}> is not one",
                node.tag,
                attr_text(node, "type").map(|t| shown(&t))
            ),
        ));
    }
    let user = require_jid(node, "from", DEVICES)?;
    if user.user.is_empty() || !(user.is_pn() || user.is_lid()) {
        return Err(Malformed::new(
            DEVICES,
            format!("from={user} is not a user"),
        ));
    }
    let user = user.to_non_ad();
    let lid = attr_jid(node, "lid")
        .filter(|l| l.is_lid() && !l.user.is_empty())
        .map(|l| l.to_non_ad());
    if node.children().len() > MAX_NOTIFICATION_ITEMS {
        return Err(Malformed::new(
            DEVICES,
            format!("{} children", node.children().len()),
        ));
    }
    let mut changes = Vec::new();
    for child in node.children() {
        let kind = match child.tag.as_ref() {
            "add" => DeviceChangeKind::Add,
            "remove" => DeviceChangeKind::Remove,
            "update" => DeviceChangeKind::Update,
            _ => continue,
        };
        let d = child.child_by_tag("device");
        let device = d.map(|d| require_jid(d, "jid", DEVICES)).transpose()?;
        if let Some(dev) = &device
            && dev.to_non_ad() != user
            && Some(dev.to_non_ad()) != lid
        {
            return Err(Malformed::new(
                DEVICES,
                format!("device {dev} does not belong to {user}"),
            ));
        }
        let device_lid = d.and_then(|d| attr_jid(d, "lid")).filter(Jid::is_lid);
        let key_index = d
            .map(|d| attr_num::<u32>(d, "key-index", DEVICES))
            .transpose()?
            .flatten();
        changes.push(DeviceChange {
            kind,
            device,
            device_lid,
            key_index,
            device_hash: attr_text(child, "device_hash").map(|h| shown(&h)),
        });
    }
    Ok(DeviceNotification { user, lid, changes })
}

/// Parses a `<notification type="w:gp2">`. Refuses another type, a `from` that is not
/// a group, participants that are not user JIDs, and more than
/// [`MAX_NOTIFICATION_ITEMS`] children or participants per change.
pub fn parse_group_notification(node: &Node) -> Result<GroupNotification, Malformed> {
    if node.tag != "notification" || attr_text(node, "type").as_deref() != Some("w:gp2") {
        return Err(Malformed::new(
            GROUP,
            format!(
                "<{} type={:?}> is not one",
                node.tag,
                attr_text(node, "type").map(|t| shown(&t))
            ),
        ));
    }
    let group = require_jid(node, "from", GROUP)?;
    if !group.is_group() || group.user.is_empty() {
        return Err(Malformed::new(
            GROUP,
            format!("from={group} is not a group"),
        ));
    }
    if node.children().len() > MAX_NOTIFICATION_ITEMS {
        return Err(Malformed::new(
            GROUP,
            format!("{} children", node.children().len()),
        ));
    }
    let mut changes = Vec::with_capacity(node.children().len());
    for child in node.children() {
        let kind = match child.tag.as_ref() {
            "add" => GroupChangeKind::Add,
            "remove" | "leave" => GroupChangeKind::Remove,
            "promote" => GroupChangeKind::Promote,
            "demote" => GroupChangeKind::Demote,
            "modify" => GroupChangeKind::Modify,
            other => GroupChangeKind::Other(shown(other)),
        };
        let ps: Vec<&Node> = child.children_by_tag("participant").collect();
        if ps.len() > MAX_NOTIFICATION_ITEMS {
            return Err(Malformed::new(
                GROUP,
                format!("{} participants in <{}>", ps.len(), child.tag),
            ));
        }
        let mut participants = Vec::with_capacity(ps.len());
        for p in ps {
            let jid = require_jid(p, "jid", GROUP)?;
            if jid.user.is_empty() || !(jid.is_pn() || jid.is_lid()) {
                return Err(Malformed::new(
                    GROUP,
                    format!("participant {jid} is not a user"),
                ));
            }
            participants.push(ChangedParticipant {
                jid: jid.to_non_ad(),
                phone_number: attr_jid(p, "phone_number")
                    .filter(Jid::is_pn)
                    .map(|j| j.to_non_ad()),
                lid: attr_jid(p, "lid")
                    .filter(Jid::is_lid)
                    .map(|j| j.to_non_ad()),
            });
        }
        changes.push(GroupChange { kind, participants });
    }
    Ok(GroupNotification {
        group: group.to_non_ad(),
        actor: attr_jid(node, "participant"),
        changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::{marshal, unmarshal};

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    fn wire(n: Node) -> Node {
        unmarshal(&marshal(&n).unwrap()).unwrap()
    }

    #[test]
    fn device_notifications() {
        let n = wire(
            Node::new("notification")
                .attr("type", "devices")
                .attr("from", jid("5511@s.whatsapp.net"))
                .attr("lid", jid("111@lid"))
                .attr("id", "1")
                .child(
                    Node::new("add").attr("device_hash", "2:aaaaaaaa").child(
                        Node::new("device")
                            .attr("jid", jid("5511:4@s.whatsapp.net"))
                            .attr("lid", jid("111:4@lid"))
                            .attr("key-index", "6"),
                    ),
                )
                .child(
                    Node::new("remove")
                        .attr("device_hash", "2:bbbbbbbb")
                        .child(Node::new("device").attr("jid", jid("5511:2@s.whatsapp.net"))),
                )
                .child(Node::new("update").attr("hash", "x"))
                .child(Node::new("whatever")),
        );
        let p = parse_device_notification(&n).unwrap();
        assert_eq!(p.user, jid("5511@s.whatsapp.net"));
        assert_eq!(p.lid, Some(jid("111@lid")));
        assert_eq!(p.changes.len(), 3);
        assert_eq!(p.changes[0].kind, DeviceChangeKind::Add);
        assert_eq!(p.changes[0].device, Some(jid("5511:4@s.whatsapp.net")));
        assert_eq!(p.changes[0].device_lid, Some(jid("111:4@lid")));
        assert_eq!(p.changes[0].key_index, Some(6));
        assert_eq!(p.changes[0].device_hash.as_deref(), Some("2:aaaaaaaa"));
        assert_eq!(p.changes[1].kind, DeviceChangeKind::Remove);
        assert_eq!(p.changes[2].kind, DeviceChangeKind::Update);
        assert_eq!(p.changes[2].device, None);

        let foreign = Node::new("notification")
            .attr("type", "devices")
            .attr("from", jid("5511@s.whatsapp.net"))
            .child(
                Node::new("add")
                    .child(Node::new("device").attr("jid", jid("9999:1@s.whatsapp.net"))),
            );
        assert!(
            parse_device_notification(&foreign)
                .unwrap_err()
                .to_string()
                .contains("does not belong")
        );
        let group_from = Node::new("notification")
            .attr("type", "devices")
            .attr("from", jid("1@g.us"));
        assert!(parse_device_notification(&group_from).is_err());
        let wrong_type = Node::new("notification")
            .attr("type", "w:gp2")
            .attr("from", jid("1@lid"));
        assert!(parse_device_notification(&wrong_type).is_err());
    }

    #[test]
    fn group_notifications() {
        let n = wire(
            Node::new("notification")
                .attr("type", "w:gp2")
                .attr("from", jid("120363001@g.us"))
                .attr("participant", jid("111:2@lid"))
                .child(
                    Node::new("remove").attr("reason", "x").child(
                        Node::new("participant")
                            .attr("jid", jid("222@lid"))
                            .attr("phone_number", jid("5522@s.whatsapp.net")),
                    ),
                )
                .child(Node::new("add").child(Node::new("participant").attr("jid", jid("333@lid"))))
                .child(Node::new("subject").attr("subject", "x")),
        );
        let g = parse_group_notification(&n).unwrap();
        assert_eq!(g.group, jid("120363001@g.us"));
        assert_eq!(g.actor, Some(jid("111:2@lid")));
        assert_eq!(g.changes[0].kind, GroupChangeKind::Remove);
        assert_eq!(
            g.changes[0].participants[0].phone_number,
            Some(jid("5522@s.whatsapp.net"))
        );
        assert_eq!(g.changes[1].kind, GroupChangeKind::Add);
        assert_eq!(g.changes[2].kind, GroupChangeKind::Other("subject".into()));
        assert!(g.needs_rotation());
        assert!(g.changes_members());

        let only_add = GroupNotification {
            changes: vec![g.changes[1].clone()],
            ..g.clone()
        };
        assert!(!only_add.needs_rotation());
        let subject_only = GroupNotification {
            changes: vec![g.changes[2].clone()],
            ..g
        };
        assert!(!subject_only.changes_members());

        let bad = Node::new("notification")
            .attr("type", "w:gp2")
            .attr("from", jid("120363001@g.us"))
            .child(Node::new("add").child(Node::new("participant").attr("jid", jid("1@g.us"))));
        assert!(parse_group_notification(&bad).is_err());
        let not_group = Node::new("notification")
            .attr("type", "w:gp2")
            .attr("from", jid("1@lid"));
        assert!(parse_group_notification(&not_group).is_err());
    }
}
