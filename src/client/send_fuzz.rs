//! What the `send_answers` fuzz target runs: every parser the send pipeline applies to
//! what the server sends (group info, usync, key bundles, `devices` and `w:gp2`
//! notifications, retry receipts, message acks) on one arbitrary frame payload, and the
//! cache patches that follow a parsed notification.

use super::fanout_notifications::{parse_device_notification, parse_group_notification};
use super::group_info::parse_group_info;
use super::key_bundles::{BundleAnswer, parse_bundles};
use super::retry_receipt::parse_retry_receipt;
use super::send::MessageAck;
use super::send_maintenance::{patch_device_list, patch_group};
use super::usync::{fanout_devices, parse_device_lists};
use crate::binary::unmarshal;
use crate::jid::Jid;
use crate::store::{
    AddressingMode, DeviceEntry, DeviceList, GroupMetadata, GroupParticipant, ParticipantRole,
};

/// The id of the group the target's group-info answers are about.
pub const FUZZ_GROUP_ID: &str = "120363012345678901";

/// Decodes `data` as a frame payload and runs every send-side parser on the node.
/// Returns how many parsers accepted it (for seed tests).
pub fn send_answers(data: &[u8]) -> usize {
    let Ok(node) = unmarshal(data) else {
        return 0;
    };
    let group = Jid::group(FUZZ_GROUP_ID);
    let mut accepted = 0;
    let _ = MessageAck::parse(&node);
    if let Ok(info) = parse_group_info(&group, &node, 0) {
        accepted += 1;
        assert!(!info.metadata.participants.is_empty());
    }
    if let Ok(answer) = parse_device_lists(&node, 0) {
        accepted += 1;
        for l in &answer.lists {
            let _ = fanout_devices(l, true);
            let _ = fanout_devices(l, false);
        }
    }
    if let Ok(bundles) = parse_bundles(&node) {
        accepted += 1;
        for (_, b) in bundles {
            if let BundleAnswer::Bundle(b) = b {
                let _ = b.bundle.verify();
            }
        }
    }
    if let Ok(n) = parse_device_notification(&node) {
        accepted += 1;
        let cached = DeviceList {
            user: n.user.clone(),
            devices: vec![
                DeviceEntry {
                    id: 0,
                    key_index: None,
                    hosted: false,
                },
                DeviceEntry {
                    id: 4,
                    key_index: Some(1),
                    hosted: false,
                },
            ],
            hash: None,
            key_index_ts: None,
            fetched_at_ms: 0,
        };
        let _ = patch_device_list(cached.clone(), &n, true);
        let _ = patch_device_list(cached, &n, false);
    }
    if let Ok(n) = parse_group_notification(&node) {
        accepted += 1;
        let meta = GroupMetadata {
            group: n.group.clone(),
            addressing_mode: AddressingMode::Lid,
            participants: vec![GroupParticipant {
                jid: Jid::lid_user("111111111111111"),
                phone_number: None,
                lid: None,
                role: ParticipantRole::Member,
            }],
            phash: None,
            subject: None,
            fetched_at_ms: 0,
        };
        let _ = (n.needs_rotation(), n.changes_members());
        let _ = patch_group(meta, &n);
    }
    if parse_retry_receipt(&node).is_ok() {
        accepted += 1;
    }
    accepted
}
