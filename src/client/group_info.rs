//! The group metadata IQ (PROTOCOL.md §10.1), sans-IO: the `w:g2` query and the
//! parsing of its `<group>` answer into a [`GroupMetadata`] plus the LID↔PN pairs it
//! reveals.
//!
//! ```text
//! → <iq xmlns="w:g2" type="get" to="<group>@g.us" id><query request="interactive"/></iq>
//! ← <iq type="result"><group id subject addressing_mode="lid|pn" …>
//!     <participant jid [type="admin|superadmin"] [phone_number] [lid]/> …</group></iq>
//! ```

use super::IqError;
use super::wire_read::{Malformed, attr_jid, attr_text, require_user_jid, shown};
use crate::binary::Node;
use crate::jid::Jid;
use crate::store::{
    AddressingMode, GroupMetadata, GroupParticipant, LidPnMapping, ParticipantRole,
};

/// The most participants accepted in one group answer (WhatsApp's limit is 1,024;
/// communities' announcement groups are larger).
pub const MAX_GROUP_PARTICIPANTS: usize = 10_000;

/// Why the group's metadata could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupInfoError {
    /// The server says the group does not exist (`404 item-not-found`).
    #[error("group {0} does not exist (server error 404)")]
    NotFound(Jid),
    /// The server says we are not a member (`403 forbidden`).
    #[error("not a member of group {0} (server error 403)")]
    Forbidden(Jid),
    /// Another IQ failure (timeout, disconnect, other error code).
    #[error("group info query for {group} failed: {source}")]
    Iq {
        /// The group.
        group: Jid,
        /// The IQ error.
        source: IqError,
    },
    /// The answer does not have the shape of a group.
    #[error(transparent)]
    Malformed(#[from] Malformed),
}

impl GroupInfoError {
    /// The typed error for a failed group-info IQ: 404 and 403 get their own variants.
    pub fn from_iq(group: &Jid, error: IqError) -> Self {
        match &error {
            IqError::Server { code: 404, .. } => GroupInfoError::NotFound(group.clone()),
            IqError::Server { code: 403, .. } => GroupInfoError::Forbidden(group.clone()),
            _ => GroupInfoError::Iq {
                group: group.clone(),
                source: error,
            },
        }
    }
}

/// `<iq xmlns="w:g2" type="get" to="<group>"><query request="interactive"/></iq>`
/// (no id yet: the client assigns it).
pub fn group_info_iq(group: &Jid) -> Node {
    Node::new("iq")
        .attr("xmlns", "w:g2")
        .attr("type", "get")
        .attr("to", group.clone())
        .child(Node::new("query").attr("request", "interactive"))
}

/// A parsed group answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The metadata to cache (`phash` is left `None`: it is computed over devices).
    pub metadata: GroupMetadata,
    /// LID↔PN pairs from the participants' `phone_number` / `lid` attributes.
    pub mappings: Vec<LidPnMapping>,
}

const WHAT: &str = "group info";

/// Parses the result of [`group_info_iq`] for `group`. Refuses an answer about another
/// group, a missing or unknown `addressing_mode` (PN is assumed only when the attribute
/// is absent, as in older groups), participants that are not user JIDs or that do not
/// match the addressing mode, duplicates, and more than [`MAX_GROUP_PARTICIPANTS`].
pub fn parse_group_info(group: &Jid, response: &Node, now_ms: i64) -> Result<GroupInfo, Malformed> {
    let node = response
        .child_by_tag("group")
        .ok_or_else(|| Malformed::new(WHAT, "the result has no <group>"))?;
    if let Some(id) = attr_text(node, "id") {
        // `id` is the user part; some servers write the full JID.
        let user = id.split('@').next().unwrap_or_default();
        if user != group.user {
            return Err(Malformed::new(
                WHAT,
                format!("asked for {group}, the answer is about {:?}", shown(&id)),
            ));
        }
    }
    let addressing_mode = match attr_text(node, "addressing_mode") {
        None => AddressingMode::Pn,
        Some(mode) => AddressingMode::parse(&mode).ok_or_else(|| {
            Malformed::new(WHAT, format!("unknown addressing_mode {:?}", shown(&mode)))
        })?,
    };
    let count = node.children_by_tag("participant").count();
    if count > MAX_GROUP_PARTICIPANTS {
        return Err(Malformed::new(
            WHAT,
            format!("{count} participants (most accepted: {MAX_GROUP_PARTICIPANTS})"),
        ));
    }
    let mut participants = Vec::with_capacity(count);
    let mut mappings = Vec::new();
    let mut seen = std::collections::HashSet::with_capacity(count);
    for p in node.children_by_tag("participant") {
        let jid = require_user_jid(p, "jid", WHAT)?;
        let expected_lid = addressing_mode == AddressingMode::Lid;
        if jid.is_lid() != expected_lid {
            return Err(Malformed::new(
                WHAT,
                format!(
                    "participant {jid} in a group addressed by {}",
                    addressing_mode.as_str()
                ),
            ));
        }
        if !seen.insert(jid.clone()) {
            return Err(Malformed::new(
                WHAT,
                format!("participant {jid} listed twice"),
            ));
        }
        let role = match attr_text(p, "type").as_deref() {
            None | Some("") => ParticipantRole::Member,
            Some("admin") => ParticipantRole::Admin,
            Some("superadmin") => ParticipantRole::SuperAdmin,
            // Roles added later are treated as members: the fan-out does not depend
            // on roles.
            Some(_) => ParticipantRole::Member,
        };
        let alt_user = |key: &str| {
            attr_jid(p, key)
                .filter(|j| !j.user.is_empty() && j.device == 0 && (j.is_pn() || j.is_lid()))
        };
        let phone_number = alt_user("phone_number").filter(Jid::is_pn);
        let lid = alt_user("lid").filter(Jid::is_lid);
        let pair = match (&jid, &phone_number, &lid) {
            (j, Some(pn), _) if j.is_lid() => LidPnMapping::new(j, pn).ok(),
            (j, _, Some(l)) if j.is_pn() => LidPnMapping::new(l, j).ok(),
            _ => None,
        };
        mappings.extend(pair);
        participants.push(GroupParticipant {
            jid,
            phone_number,
            lid,
            role,
        });
    }
    if participants.is_empty() {
        return Err(Malformed::new(WHAT, "the group lists no participant"));
    }
    Ok(GroupInfo {
        metadata: GroupMetadata {
            group: group.to_non_ad(),
            addressing_mode,
            participants,
            phash: None,
            subject: attr_text(node, "subject").map(|s| s.chars().take(1024).collect()),
            fetched_at_ms: now_ms,
        },
        mappings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::{marshal, unmarshal};

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    fn answer(mode: Option<&str>, participants: Vec<Node>) -> Node {
        let mut g = Node::new("group")
            .attr("id", "120363001")
            .attr("subject", "Team")
            .attr("creator", jid("111@lid"));
        if let Some(m) = mode {
            g = g.attr("addressing_mode", m);
        }
        Node::new("iq")
            .attr("type", "result")
            .attr("from", jid("120363001@g.us"))
            .child(g.with_children(participants))
    }

    #[test]
    fn request_shape() {
        let iq = group_info_iq(&jid("120363001@g.us"));
        assert_eq!(iq.attr_str("xmlns"), Some("w:g2"));
        assert_eq!(iq.attr_str("type"), Some("get"));
        assert_eq!(iq.attr_jid("to"), Some(&jid("120363001@g.us")));
        let q = iq.child_by_tag("query").unwrap();
        assert_eq!(q.attr_str("request"), Some("interactive"));
        // Survives the wire codec.
        assert_eq!(unmarshal(&marshal(&iq).unwrap()).unwrap(), iq);
    }

    #[test]
    fn lid_group_with_roles_and_mappings() {
        let resp = answer(
            Some("lid"),
            vec![
                Node::new("participant")
                    .attr("jid", jid("111@lid"))
                    .attr("type", "superadmin")
                    .attr("phone_number", jid("5511@s.whatsapp.net")),
                Node::new("participant").attr("jid", jid("222@lid")),
                Node::new("participant")
                    .attr("jid", jid("333@lid"))
                    .attr("type", "admin")
                    .attr("phone_number", jid("5533@s.whatsapp.net")),
            ],
        );
        // Through the codec, as it arrives.
        let resp = unmarshal(&marshal(&resp).unwrap()).unwrap();
        let info = parse_group_info(&jid("120363001@g.us"), &resp, 7).unwrap();
        let m = &info.metadata;
        assert_eq!(m.addressing_mode, AddressingMode::Lid);
        assert_eq!(m.subject.as_deref(), Some("Team"));
        assert_eq!(m.fetched_at_ms, 7);
        assert_eq!(m.participants.len(), 3);
        assert_eq!(m.participants[0].role, ParticipantRole::SuperAdmin);
        assert_eq!(m.participants[1].role, ParticipantRole::Member);
        assert_eq!(m.participants[2].role, ParticipantRole::Admin);
        assert_eq!(
            m.participants[0].phone_number,
            Some(jid("5511@s.whatsapp.net"))
        );
        assert_eq!(info.mappings.len(), 2);
        assert_eq!(info.mappings[1].lid(), jid("333@lid"));
        assert_eq!(info.mappings[1].pn(), jid("5533@s.whatsapp.net"));
    }

    #[test]
    fn pn_group_and_default_mode() {
        let resp = answer(
            None,
            vec![
                Node::new("participant")
                    .attr("jid", jid("5511@s.whatsapp.net"))
                    .attr("lid", jid("111@lid")),
            ],
        );
        let info = parse_group_info(&jid("120363001@g.us"), &resp, 0).unwrap();
        assert_eq!(info.metadata.addressing_mode, AddressingMode::Pn);
        assert_eq!(info.mappings[0].lid(), jid("111@lid"));
    }

    #[test]
    fn hostile_answers_are_refused() {
        let g = jid("120363001@g.us");
        let p = |j: &str| Node::new("participant").attr("jid", j);
        let cases = [
            (Node::new("iq"), "no <group>"),
            (answer(Some("lid"), vec![]), "no participant"),
            (answer(Some("xx"), vec![p("1@lid")]), "addressing_mode"),
            (
                answer(Some("lid"), vec![p("5511@s.whatsapp.net")]),
                "addressed by lid",
            ),
            (answer(Some("lid"), vec![p("1@lid"), p("1@lid")]), "twice"),
            (answer(Some("lid"), vec![p("1:2@lid")]), "not a user JID"),
            (
                answer(Some("lid"), vec![p("120363@g.us")]),
                "not a user JID",
            ),
            (
                answer(Some("lid"), vec![Node::new("participant")]),
                "no jid",
            ),
            (answer(Some("lid"), vec![p("not a jid")]), "not a JID"),
        ];
        for (resp, needle) in cases {
            let err = parse_group_info(&g, &resp, 0).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
        let other = parse_group_info(&jid("999@g.us"), &answer(Some("lid"), vec![p("1@lid")]), 0);
        assert!(other.unwrap_err().to_string().contains("about"));
        let many = answer(
            Some("lid"),
            (0..=MAX_GROUP_PARTICIPANTS)
                .map(|i| p(&format!("{i}@lid")))
                .collect(),
        );
        assert!(parse_group_info(&g, &many, 0).is_err());
    }

    #[test]
    fn iq_errors_are_typed() {
        let g = jid("120363001@g.us");
        let server = |code| IqError::Server {
            id: "1".into(),
            code,
            text: "x".into(),
        };
        assert_eq!(
            GroupInfoError::from_iq(&g, server(404)),
            GroupInfoError::NotFound(g.clone())
        );
        assert_eq!(
            GroupInfoError::from_iq(&g, server(403)).to_string(),
            "not a member of group 120363001@g.us (server error 403)"
        );
        assert!(matches!(
            GroupInfoError::from_iq(&g, server(500)),
            GroupInfoError::Iq { .. }
        ));
    }
}
