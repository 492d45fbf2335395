//! Naming an event card from RSVPs and edits: chat, message id and creator, and the
//! `MessageKey` that carries them on the wire.

use super::secret::{Parties, SecretError};
use crate::jid::Jid;
use crate::proto::e2e;

/// The event card an RSVP or edit refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventRef {
    /// The chat the event was sent to (a group JID, or the other party in 1:1).
    pub chat: Jid,
    /// The event message's id.
    pub id: String,
    /// Who created the event, as known to the sender of the modification (LID or
    /// phone number; the device is ignored).
    pub creator: Jid,
}

/// Decrypted content with the (creator, sender) pair whose key opened it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decrypted<T> {
    /// The decrypted content.
    pub value: T,
    /// The pair that authenticated (store it to try it first next time).
    pub parties: Parties,
}

impl EventRef {
    /// An event reference.
    pub fn new(chat: Jid, id: impl Into<String>, creator: Jid) -> Self {
        EventRef {
            chat,
            id: id.into(),
            creator,
        }
    }

    /// The `MessageKey` a modification written by `sender` carries: `remoteJID` =
    /// chat, `fromMe` = the sender is the creator (same user, devices ignored), `ID`,
    /// and in groups `participant` = the creator without device.
    pub fn message_key(&self, sender: &Jid) -> e2e::MessageKey {
        let creator = self.creator.to_non_ad();
        e2e::MessageKey {
            remote_jid: Some(self.chat.to_non_ad().to_string()),
            from_me: Some(sender.to_non_ad() == creator),
            id: Some(self.id.clone()),
            participant: self.chat.is_group().then(|| creator.to_string()),
        }
    }
}

/// The event creator named by a modification's `MessageKey`, as a receiver reads it
/// (the rule of WhatsApp's clients): the modification's sender when `fromMe`, the
/// key's `remoteJID` in 1:1 chats, its `participant` in groups.
///
/// `chat` is the chat the modification arrived in and `sender` who sent it. Refuses
/// a key without the JID it needs, or with one that does not parse, or a group
/// participant that is not a user (phone number or LID).
pub fn creator_from_key(
    key: &e2e::MessageKey,
    chat: &Jid,
    sender: &Jid,
) -> Result<Jid, SecretError> {
    if key.from_me == Some(true) {
        return Ok(sender.to_non_ad());
    }
    let (field, text) = if chat.is_pn() || chat.is_lid() {
        ("MessageKey.remoteJID", key.remote_jid.as_deref())
    } else {
        ("MessageKey.participant", key.participant.as_deref())
    };
    let text = text.ok_or(SecretError::MissingField(field))?;
    let jid = Jid::parse(text).map_err(|e| SecretError::Decode {
        what: field,
        detail: e.to_string(),
    })?;
    if !(jid.is_pn() || jid.is_lid()) || jid.user.is_empty() {
        return Err(SecretError::Decode {
            what: field,
            detail: format!("{jid} is not a user JID"),
        });
    }
    Ok(jid.to_non_ad())
}

/// The message id a modification's key names; refuses a key without one.
pub(crate) fn key_id<'k>(
    key: Option<&'k e2e::MessageKey>,
    field: &'static str,
) -> Result<&'k str, SecretError> {
    key.and_then(|k| k.id.as_deref())
        .filter(|id| !id.is_empty())
        .ok_or(SecretError::MissingField(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_in_groups_names_the_creator() {
        let ev = EventRef::new(
            Jid::group("120363000000000001"),
            "3EB0C0FFEE",
            Jid::parse("5511999990000:4@s.whatsapp.net").unwrap(),
        );
        let k = ev.message_key(&Jid::pn_user("5511988887777"));
        assert_eq!(k.remote_jid.as_deref(), Some("120363000000000001@g.us"));
        assert_eq!(k.from_me, Some(false));
        assert_eq!(k.id.as_deref(), Some("3EB0C0FFEE"));
        assert_eq!(
            k.participant.as_deref(),
            Some("5511999990000@s.whatsapp.net")
        );
        let own = ev.message_key(&Jid::parse("5511999990000:7@s.whatsapp.net").unwrap());
        assert_eq!(own.from_me, Some(true));

        let dm = EventRef::new(
            Jid::pn_user("5511999990000"),
            "X",
            Jid::pn_user("5511999990000"),
        );
        assert_eq!(dm.message_key(&Jid::pn_user("1")).participant, None);
    }

    #[test]
    fn creator_is_read_like_whatsapp_reads_it() {
        let group = Jid::group("1");
        let sender = Jid::parse("200000000000002:3@lid").unwrap();
        let mut k = e2e::MessageKey {
            remote_jid: Some("1@g.us".into()),
            from_me: Some(false),
            id: Some("ID".into()),
            participant: Some("100000000000001@lid".into()),
        };
        assert_eq!(
            creator_from_key(&k, &group, &sender).unwrap(),
            Jid::lid_user("100000000000001")
        );
        k.from_me = Some(true);
        assert_eq!(
            creator_from_key(&k, &group, &sender).unwrap(),
            Jid::lid_user("200000000000002")
        );
        k.from_me = None;
        k.participant = Some("1@g.us".into());
        assert!(creator_from_key(&k, &group, &sender).is_err());
        k.participant = None;
        assert_eq!(
            creator_from_key(&k, &group, &sender),
            Err(SecretError::MissingField("MessageKey.participant"))
        );
        let dm = e2e::MessageKey {
            remote_jid: Some("5511999990000@s.whatsapp.net".into()),
            ..Default::default()
        };
        assert_eq!(
            creator_from_key(&dm, &Jid::pn_user("5511999990000"), &sender).unwrap(),
            Jid::pn_user("5511999990000")
        );
    }
}
