//! Event edits and cancellations: a `SecretEncryptedMessage` of type EVENT_EDIT
//! whose plaintext is a full `Message` carrying the complete updated `eventMessage`
//! (use case "Event Edit", empty additional data). Cancelling is an edit with
//! `isCanceled = true`.
//!
//! No open-source client builds this message; the layout (a full replacement card
//! inside a `Message`) follows the MESSAGE_EDIT analogue and WhatsApp Web's edit
//! action, which resends every field.

use prost::Message as _;
use rand_core::{CryptoRng, RngCore};

use super::card::{EventCard, unwrap_message};
use super::key::{Decrypted, EventRef, key_id};
use super::secret::{self, MessageSecret, Parties, SecretError, UseCase};
use crate::jid::Jid;
use crate::proto::e2e;
use crate::proto::e2e::secret_encrypted_message::SecretEncType;

/// Encrypts the edited (or canceled) `card` of `event` as `editor` (normally the
/// creator) into the `Message` to send: `secretEncryptedMessage{targetMessageKey,
/// encPayload, encIV, secretEncType = EVENT_EDIT}`.
pub fn edit_message<R: RngCore + CryptoRng>(
    card: &EventCard,
    event: &EventRef,
    event_secret: &MessageSecret,
    editor: &Jid,
    rng: &mut R,
) -> Result<e2e::Message, SecretError> {
    let inner = e2e::Message {
        event_message: Some(Box::new(card.to_event_message())),
        ..Default::default()
    };
    let parties = Parties::new(event.creator.to_non_ad(), editor.to_non_ad());
    let sealed = secret::seal(
        event_secret,
        UseCase::EventEdit,
        &event.id,
        &parties,
        &inner.encode_to_vec(),
        rng,
    )?;
    Ok(e2e::Message {
        secret_encrypted_message: Some(e2e::SecretEncryptedMessage {
            target_message_key: Some(event.message_key(editor)),
            enc_payload: Some(sealed.payload),
            enc_iv: Some(sealed.iv.to_vec()),
            secret_enc_type: Some(SecretEncType::EventEdit as i32),
            remote_key_id: None,
        }),
        ..Default::default()
    })
}

/// Decrypts an EVENT_EDIT into the inner `Message`, trying each candidate
/// (creator, editor) pair in order. Refuses other `secretEncType`s, missing key id,
/// IV or payload, a payload no candidate opens, an edit whose authenticated sender is
/// not the creator ([`SecretError::EditNotByCreator`]: the same user without device,
/// or one of the creator forms among `candidates`, e.g. its LID and phone number), and
/// plaintext that is not a `Message`.
///
/// Look `event_secret` and the candidates' creator up under the creator STORED with
/// the original event card, never under the one the edit's key claims (`fromMe`
/// makes the sender the claimed creator): otherwise anyone who knows the secret (every
/// group member does) could pass as the creator.
pub fn open_event_edit(
    sem: &e2e::SecretEncryptedMessage,
    event_secret: &MessageSecret,
    candidates: &[Parties],
) -> Result<Decrypted<e2e::Message>, SecretError> {
    let ty = sem.secret_enc_type.unwrap_or(0);
    if ty != SecretEncType::EventEdit as i32 {
        let found = SecretEncType::try_from(ty)
            .map(|t| t.as_str_name().to_string())
            .unwrap_or_else(|_| ty.to_string());
        return Err(SecretError::WrongType {
            expected: "EVENT_EDIT",
            found,
        });
    }
    let id = key_id(sem.target_message_key.as_ref(), "targetMessageKey.ID")?;
    let iv = sem
        .enc_iv
        .as_deref()
        .ok_or(SecretError::MissingField("encIV"))?;
    let payload = sem
        .enc_payload
        .as_deref()
        .ok_or(SecretError::MissingField("encPayload"))?;
    let (plain, parties) = secret::open(
        event_secret,
        UseCase::EventEdit,
        id,
        candidates,
        iv,
        payload,
    )?;
    let sender = parties.sender.to_non_ad();
    let by_creator = sender == parties.creator.to_non_ad()
        || candidates.iter().any(|c| c.creator.to_non_ad() == sender);
    if !by_creator {
        return Err(SecretError::EditNotByCreator {
            sender,
            creator: parties.creator.to_non_ad(),
        });
    }
    let inner = e2e::Message::decode(plain.as_slice()).map_err(|e| SecretError::Decode {
        what: "Event Edit Message",
        detail: e.to_string(),
    })?;
    Ok(Decrypted {
        value: inner,
        parties: parties.clone(),
    })
}

/// Decrypts an EVENT_EDIT and reads the edited card from it (see
/// [`open_event_edit`], including its creator-only rule); also refuses a plaintext without a valid `eventMessage`.
pub fn decrypt_event_edit(
    sem: &e2e::SecretEncryptedMessage,
    event_secret: &MessageSecret,
    candidates: &[Parties],
) -> Result<Decrypted<EventCard>, SecretError> {
    let opened = open_event_edit(sem, event_secret, candidates)?;
    let card = EventCard::from_message(unwrap_message(&opened.value)).map_err(|e| {
        SecretError::Decode {
            what: "Event Edit card",
            detail: e.to_string(),
        }
    })?;
    Ok(Decrypted {
        value: card,
        parties: opened.parties,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn cancel_round_trips() {
        let mut rng = StdRng::seed_from_u64(11);
        let card = EventCard::builder()
            .name("Launch")
            .start_unix(1_764_612_000)
            .build()
            .unwrap();
        let creator = Jid::parse("5511999990000:2@s.whatsapp.net").unwrap();
        let (_, secret) = card.to_message(&mut rng);
        let ev = EventRef::new(Jid::group("120363000000000001"), "3EB0EE", creator.clone());
        let m = edit_message(&card.to_canceled(), &ev, &secret, &creator, &mut rng).unwrap();
        let sem = m.secret_encrypted_message.as_ref().unwrap();
        assert_eq!(sem.secret_enc_type, Some(1));
        assert_eq!(sem.target_message_key.as_ref().unwrap().from_me, Some(true));
        let cands = [Parties::new(creator.to_non_ad(), creator.to_non_ad())];
        let d = decrypt_event_edit(sem, &secret, &cands).unwrap();
        assert!(d.value.is_canceled());
        assert_eq!(d.value.name(), "Launch");

        let mut wrong = sem.clone();
        wrong.secret_enc_type = Some(2);
        assert_eq!(
            decrypt_event_edit(&wrong, &secret, &cands),
            Err(SecretError::WrongType {
                expected: "EVENT_EDIT",
                found: "MESSAGE_EDIT".into()
            })
        );
        wrong.secret_enc_type = Some(99);
        assert!(matches!(
            decrypt_event_edit(&wrong, &secret, &cands),
            Err(SecretError::WrongType { .. })
        ));
    }

    #[test]
    fn only_the_creator_may_edit() {
        let mut rng = StdRng::seed_from_u64(12);
        let card = EventCard::builder()
            .name("Launch")
            .start_unix(1_764_612_000)
            .build()
            .unwrap();
        let creator_pn = Jid::pn_user("5511999990000");
        let creator_lid = Jid::lid_user("100000000000001");
        let member = Jid::parse("5511988887777:3@s.whatsapp.net").unwrap();
        let (_, secret) = card.to_message(&mut rng);
        let ev = EventRef::new(
            Jid::group("120363000000000001"),
            "3EB0EE",
            creator_pn.clone(),
        );

        // A member who knows the secret seals a valid edit under its own pair.
        let m = edit_message(&card.to_canceled(), &ev, &secret, &member, &mut rng).unwrap();
        let sem = m.secret_encrypted_message.as_ref().unwrap();
        let cands = Parties::alternates(
            std::slice::from_ref(&creator_pn),
            std::slice::from_ref(&member),
        );
        assert_eq!(
            decrypt_event_edit(sem, &secret, &cands),
            Err(SecretError::EditNotByCreator {
                sender: member.to_non_ad(),
                creator: creator_pn.clone(),
            })
        );

        // The creator editing from its LID while the event names its phone number.
        let m = edit_message(&card.to_canceled(), &ev, &secret, &creator_lid, &mut rng).unwrap();
        let sem = m.secret_encrypted_message.as_ref().unwrap();
        let cands = Parties::alternates(
            &[creator_pn.clone(), creator_lid.clone()],
            std::slice::from_ref(&creator_lid),
        );
        let d = decrypt_event_edit(sem, &secret, &cands).unwrap();
        assert!(d.value.is_canceled());
        assert_eq!(d.parties, Parties::new(creator_pn, creator_lid));
    }
}
