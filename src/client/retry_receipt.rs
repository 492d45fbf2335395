//! Retry receipts for our messages (PROTOCOL.md §10.8), parsed sans-IO.
//!
//! ```text
//! <receipt from="<chat>" [participant="<device>"] id="<msg id>" type="retry" t>
//!   <retry v="1" id="<msg id>" t="<message t>" count="<n>" [error="<reason>"]/>
//!   <registration>4 bytes</registration>
//!   [<keys><type/><identity/><key/><skey/><device-identity/></keys>]
//! </receipt>
//! ```
//!
//! For a group the requesting device is `participant`; for a 1:1 chat it is `from`
//! (a device JID).

use super::key_bundles::{FetchedBundle, parse_bundle_keys};
use super::wire_read::{Malformed, attr_num, attr_text, be_u32, child_fixed, require_jid};
use crate::binary::Node;
use crate::jid::Jid;

/// Retry receipts at or above this count are refused (WhatsApp Web's limit).
pub const MAX_RETRY_COUNT: u32 = 5;

/// A parsed retry receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryReceipt {
    /// The chat of the message (group, or the peer user without device).
    pub chat: Jid,
    /// The device that could not decrypt.
    pub device: Jid,
    /// The message id.
    pub message_id: String,
    /// The retry number (1 for the first).
    pub count: u32,
    /// The `error` reason code, when given.
    pub reason: Option<u32>,
    /// The original message's `t`, when given.
    pub message_time: Option<i64>,
    /// The device's registration id.
    pub registration_id: u32,
    /// A fresh bundle of the device (`<keys>`), when it sent one.
    pub keys: Option<FetchedBundle>,
}

const WHAT: &str = "retry receipt";

/// Parses a `<receipt type="retry">`. Refuses another receipt type, a missing `<retry>`
/// or `<registration>`, an id that differs from `<retry id>`, a requesting device that
/// is not a user device, and an unreadable `<keys>`.
pub fn parse_retry_receipt(node: &Node) -> Result<RetryReceipt, Malformed> {
    if node.tag != "receipt" || attr_text(node, "type").as_deref() != Some("retry") {
        return Err(Malformed::new(WHAT, "not a <receipt type=\"retry\">"));
    }
    let from = require_jid(node, "from", WHAT)?;
    let (chat, device) = if node.get_attr("participant").is_some() {
        (from.to_non_ad(), require_jid(node, "participant", WHAT)?)
    } else {
        (from.to_non_ad(), from)
    };
    if device.user.is_empty() || device.is_group() {
        return Err(Malformed::new(WHAT, format!("{device} is not a device")));
    }
    let message_id = attr_text(node, "id")
        .filter(|i| !i.is_empty() && i.len() <= crate::store::MAX_MESSAGE_ID_LEN)
        .ok_or_else(|| Malformed::new(WHAT, "no usable id"))?;
    let retry = node
        .child_by_tag("retry")
        .ok_or_else(|| Malformed::new(WHAT, "no <retry>"))?;
    if let Some(inner) = attr_text(retry, "id")
        && inner != message_id
    {
        return Err(Malformed::new(
            WHAT,
            "<retry id> differs from the receipt id",
        ));
    }
    let count = attr_num::<u32>(retry, "count", WHAT)?.unwrap_or(1);
    let reason = attr_num::<u32>(retry, "error", WHAT)?;
    let message_time = attr_num::<i64>(retry, "t", WHAT)?;
    let registration_id = be_u32(child_fixed(node, "registration", 4, WHAT)?);
    let keys = match node.child_by_tag("keys") {
        Some(k) => Some(parse_bundle_keys(node, k, u32::from(device.device))?),
        None => None,
    };
    Ok(RetryReceipt {
        chat,
        device,
        message_id,
        count,
        reason,
        message_time,
        registration_id,
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::{marshal, unmarshal};
    use crate::client::prekeys::{prekey_node, signed_prekey_node};
    use crate::signal::identity::{
        LocalIdentity, PreKeyBundle, SignedPreKeyRecord, generate_prekeys,
    };
    use rand::SeedableRng;

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    fn receipt(count: u32, keys: Option<Node>) -> Node {
        let mut r = Node::new("receipt")
            .attr("from", jid("120363001@g.us"))
            .attr("participant", jid("222:3@lid"))
            .attr("id", "3EB0AA")
            .attr("type", "retry")
            .child(
                Node::new("retry")
                    .attr("v", "1")
                    .attr("id", "3EB0AA")
                    .attr("t", "1700000000")
                    .attr("count", count.to_string())
                    .attr("error", "7"),
            )
            .child(Node::new("registration").with_bytes(vec![0, 0, 0x30, 0x39]));
        if let Some(k) = keys {
            r = r.child(k);
        }
        unmarshal(&marshal(&r).unwrap()).unwrap()
    }

    #[test]
    fn group_retry_with_and_without_keys() {
        let r = parse_retry_receipt(&receipt(1, None)).unwrap();
        assert_eq!(r.chat, jid("120363001@g.us"));
        assert_eq!(r.device, jid("222:3@lid"));
        assert_eq!(r.message_id, "3EB0AA");
        assert_eq!(
            (r.count, r.reason, r.message_time),
            (1, Some(7), Some(1_700_000_000))
        );
        assert_eq!(r.registration_id, 12345);
        assert!(r.keys.is_none());

        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let id = LocalIdentity::generate(&mut rng);
        let spk = SignedPreKeyRecord::generate(&id.key_pair, 9, 0, &mut rng);
        let opk = generate_prekeys(77, 1, &mut rng).remove(0);
        let keys = Node::new("keys").with_children(vec![
            Node::new("type").with_bytes(vec![5]),
            Node::new("identity").with_bytes(id.key_pair.public.as_bytes().to_vec()),
            prekey_node(opk.id, &opk.key_pair.public).unwrap(),
            signed_prekey_node(&spk).unwrap(),
            Node::new("device-identity").with_bytes(vec![9]),
        ]);
        let r = parse_retry_receipt(&receipt(2, Some(keys))).unwrap();
        let k = r.keys.unwrap();
        let mut expected = PreKeyBundle::from_local(&id, 3, &spk, Some(&opk));
        expected.registration_id = 12345;
        assert_eq!(k.bundle, expected);
        assert_eq!(k.device_identity, Some(vec![9]));
    }

    #[test]
    fn one_to_one_retry_uses_from_as_device() {
        let r = Node::new("receipt")
            .attr("from", jid("222:3@lid"))
            .attr("id", "X")
            .attr("type", "retry")
            .child(Node::new("retry").attr("count", "3"))
            .child(Node::new("registration").with_bytes(vec![0, 0, 0, 1]));
        let p = parse_retry_receipt(&r).unwrap();
        assert_eq!(p.chat, jid("222@lid"));
        assert_eq!(p.device, jid("222:3@lid"));
        assert_eq!(p.count, 3);
    }

    #[test]
    fn hostile_receipts_are_refused() {
        let base = receipt(1, None);
        let mut no_retry = base.clone();
        no_retry.content = crate::binary::NodeContent::Nodes(vec![
            Node::new("registration").with_bytes(vec![0, 0, 0, 1]),
        ]);
        let mut not_retry = base.clone();
        not_retry.attrs.set("type", "read");
        let mut other_id = base.clone();
        other_id.attrs.set("id", "OTHER");
        let mut group_participant = base.clone();
        group_participant.attrs.set("participant", jid("1@g.us"));
        let bad_keys = receipt(
            2,
            Some(Node::new("keys").child(Node::new("identity").with_bytes(vec![1]))),
        );
        for (n, needle) in [
            (no_retry, "no <retry>"),
            (not_retry, "not a <receipt"),
            (other_id, "differs"),
            (group_participant, "not a device"),
            (bad_keys, "<identity> is 1 bytes"),
        ] {
            let e = parse_retry_receipt(&n).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} should mention {needle}");
        }
    }
}
