//! RSVPs: `EventResponseMessage`, encrypted into `EncEventResponseMessage` with the
//! event's message secret (use case "Event Response").

use prost::Message as _;
use rand_core::{CryptoRng, RngCore};

use super::key::{Decrypted, EventRef, key_id};
use super::secret::{self, MessageSecret, Parties, SecretError, UseCase};
use crate::jid::Jid;
use crate::proto::e2e;
use crate::proto::e2e::event_response_message::EventResponseType;

/// An answer to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RsvpResponse {
    /// No answer; sending it removes an earlier answer (`UNKNOWN`, 0).
    Unknown,
    /// Going (`GOING`, 1).
    Going,
    /// Not going (`NOT_GOING`, 2).
    NotGoing,
    /// Maybe (`MAYBE`, 3).
    Maybe,
}

impl RsvpResponse {
    /// The protobuf enum value.
    pub fn to_proto(self) -> EventResponseType {
        match self {
            RsvpResponse::Unknown => EventResponseType::Unknown,
            RsvpResponse::Going => EventResponseType::Going,
            RsvpResponse::NotGoing => EventResponseType::NotGoing,
            RsvpResponse::Maybe => EventResponseType::Maybe,
        }
    }

    /// From the protobuf enum value; refuses numbers WhatsApp does not define.
    pub fn from_proto(value: i32) -> Result<RsvpResponse, RsvpError> {
        match EventResponseType::try_from(value) {
            Ok(EventResponseType::Unknown) => Ok(RsvpResponse::Unknown),
            Ok(EventResponseType::Going) => Ok(RsvpResponse::Going),
            Ok(EventResponseType::NotGoing) => Ok(RsvpResponse::NotGoing),
            Ok(EventResponseType::Maybe) => Ok(RsvpResponse::Maybe),
            Err(_) => Err(RsvpError::UnknownResponse(value)),
        }
    }

    /// `GOING`, `NOT_GOING`, `MAYBE` or `NONE`, as gateways name them.
    pub fn as_str(self) -> &'static str {
        match self {
            RsvpResponse::Unknown => "NONE",
            RsvpResponse::Going => "GOING",
            RsvpResponse::NotGoing => "NOT_GOING",
            RsvpResponse::Maybe => "MAYBE",
        }
    }
}

impl std::str::FromStr for RsvpResponse {
    type Err = RsvpError;

    /// Accepts `GOING`, `NOT_GOING`, `MAYBE`, `NONE`/`UNKNOWN` (any case, `-` or
    /// space for `_`) and the numbers 0–3 (whatsapp-web.js).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .trim()
            .chars()
            .map(|c| match c {
                '-' | ' ' => '_',
                c => c.to_ascii_uppercase(),
            })
            .collect();
        match norm.as_str() {
            "GOING" | "1" => Ok(RsvpResponse::Going),
            "NOT_GOING" | "2" => Ok(RsvpResponse::NotGoing),
            "MAYBE" | "3" => Ok(RsvpResponse::Maybe),
            "NONE" | "UNKNOWN" | "0" => Ok(RsvpResponse::Unknown),
            _ => Err(RsvpError::InvalidResponseText(s.chars().take(40).collect())),
        }
    }
}

/// Why an RSVP was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RsvpError {
    /// The response number is not one WhatsApp defines.
    #[error("unknown event response {0} (expected 0 to 3)")]
    UnknownResponse(i32),
    /// The response text is not one of the accepted names.
    #[error("Invalid eventResponse: expected GOING, NOT_GOING, MAYBE or NONE, got {0:?}")]
    InvalidResponseText(String),
    /// A negative extra-guest count.
    #[error("negative extraGuestCount {0}")]
    NegativeGuests(i32),
}

/// An answer to an event, with the extra guests the responder brings and when it
/// was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rsvp {
    /// The answer.
    pub response: RsvpResponse,
    /// Extra guests (0 when none; values above `i32::MAX` are sent as `i32::MAX`).
    pub extra_guests: u32,
    /// When it was given, unix milliseconds.
    pub timestamp_ms: i64,
}

impl Rsvp {
    /// An answer without extra guests.
    pub fn new(response: RsvpResponse, timestamp_ms: i64) -> Self {
        Rsvp {
            response,
            extra_guests: 0,
            timestamp_ms,
        }
    }

    /// The `EventResponseMessage` (all three fields written).
    pub fn to_proto(&self) -> e2e::EventResponseMessage {
        e2e::EventResponseMessage {
            response: Some(self.response.to_proto() as i32),
            timestamp_ms: Some(self.timestamp_ms),
            extra_guest_count: Some(i32::try_from(self.extra_guests).unwrap_or(i32::MAX)),
        }
    }

    /// Reads an `EventResponseMessage`. Missing fields read as WhatsApp's defaults
    /// (no answer, 0 guests, time 0); refuses unknown responses and negative counts.
    pub fn from_proto(m: &e2e::EventResponseMessage) -> Result<Rsvp, RsvpError> {
        let guests = m.extra_guest_count.unwrap_or(0);
        Ok(Rsvp {
            response: RsvpResponse::from_proto(m.response.unwrap_or(0))?,
            extra_guests: u32::try_from(guests).map_err(|_| RsvpError::NegativeGuests(guests))?,
            timestamp_ms: m.timestamp_ms.unwrap_or(0),
        })
    }
}

/// Encrypts an RSVP to `event` as `responder` (pick it with
/// [`secret::sender_for`] so the creator derives the same key) into the
/// `EncEventResponseMessage`, with the event's key filled in.
pub fn encrypt_rsvp<R: RngCore + CryptoRng>(
    rsvp: &Rsvp,
    event: &EventRef,
    event_secret: &MessageSecret,
    responder: &Jid,
    rng: &mut R,
) -> Result<e2e::EncEventResponseMessage, SecretError> {
    let parties = Parties::new(event.creator.to_non_ad(), responder.to_non_ad());
    let sealed = secret::seal(
        event_secret,
        UseCase::EventResponse,
        &event.id,
        &parties,
        &rsvp.to_proto().encode_to_vec(),
        rng,
    )?;
    Ok(e2e::EncEventResponseMessage {
        event_creation_message_key: Some(event.message_key(responder)),
        enc_payload: Some(sealed.payload),
        enc_iv: Some(sealed.iv.to_vec()),
    })
}

/// [`encrypt_rsvp`] wrapped in the `Message` to send (no message secret of its own).
pub fn rsvp_message<R: RngCore + CryptoRng>(
    rsvp: &Rsvp,
    event: &EventRef,
    event_secret: &MessageSecret,
    responder: &Jid,
    rng: &mut R,
) -> Result<e2e::Message, SecretError> {
    Ok(e2e::Message {
        enc_event_response_message: Some(encrypt_rsvp(rsvp, event, event_secret, responder, rng)?),
        ..Default::default()
    })
}

/// Decrypts an RSVP with the event's secret, trying each candidate (creator,
/// responder) pair in order (see [`Parties::alternates`]). The event id is the one
/// in `eventCreationMessageKey`.
///
/// Refuses a message without key id, IV or payload, a payload no candidate opens,
/// and plaintext that is not a valid `EventResponseMessage`.
pub fn decrypt_rsvp(
    enc: &e2e::EncEventResponseMessage,
    event_secret: &MessageSecret,
    candidates: &[Parties],
) -> Result<Decrypted<Rsvp>, SecretError> {
    let id = key_id(
        enc.event_creation_message_key.as_ref(),
        "eventCreationMessageKey.ID",
    )?;
    let iv = enc
        .enc_iv
        .as_deref()
        .ok_or(SecretError::MissingField("encIV"))?;
    let payload = enc
        .enc_payload
        .as_deref()
        .ok_or(SecretError::MissingField("encPayload"))?;
    let (plain, parties) = secret::open(
        event_secret,
        UseCase::EventResponse,
        id,
        candidates,
        iv,
        payload,
    )?;
    let decode_err = |detail: String| SecretError::Decode {
        what: "EventResponseMessage",
        detail,
    };
    let msg = e2e::EventResponseMessage::decode(plain.as_slice())
        .map_err(|e| decode_err(e.to_string()))?;
    let rsvp = Rsvp::from_proto(&msg).map_err(|e| decode_err(e.to_string()))?;
    Ok(Decrypted {
        value: rsvp,
        parties: parties.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn response_names_and_numbers() {
        for (text, r) in [
            ("GOING", RsvpResponse::Going),
            ("not going", RsvpResponse::NotGoing),
            ("Not-Going", RsvpResponse::NotGoing),
            ("maybe", RsvpResponse::Maybe),
            ("0", RsvpResponse::Unknown),
            ("NONE", RsvpResponse::Unknown),
        ] {
            assert_eq!(text.parse::<RsvpResponse>().unwrap(), r);
            assert_eq!(RsvpResponse::from_proto(r.to_proto() as i32).unwrap(), r);
        }
        assert!("yes".parse::<RsvpResponse>().is_err());
        assert_eq!(
            RsvpResponse::from_proto(4),
            Err(RsvpError::UnknownResponse(4))
        );
    }

    #[test]
    fn rsvp_proto_round_trip_and_refusals() {
        let r = Rsvp {
            response: RsvpResponse::Maybe,
            extra_guests: 2,
            timestamp_ms: 1_764_612_000_123,
        };
        assert_eq!(Rsvp::from_proto(&r.to_proto()).unwrap(), r);
        let neg = e2e::EventResponseMessage {
            extra_guest_count: Some(-1),
            ..Default::default()
        };
        assert_eq!(Rsvp::from_proto(&neg), Err(RsvpError::NegativeGuests(-1)));
        let huge = Rsvp {
            extra_guests: u32::MAX,
            ..r
        };
        assert_eq!(huge.to_proto().extra_guest_count, Some(i32::MAX));
    }

    #[test]
    fn encrypt_then_decrypt_with_alternate_jids() {
        let mut rng = StdRng::seed_from_u64(5);
        let secret = MessageSecret::generate(&mut rng);
        let creator_lid = Jid::lid_user("100000000000001");
        let creator_pn = Jid::pn_user("5511999990000");
        let me_pn = Jid::pn_user("5511988887777");
        let me_lid = Jid::lid_user("200000000000002");
        let ev = EventRef::new(
            Jid::group("120363000000000001"),
            "3EB0AA",
            creator_lid.clone(),
        );
        let responder = secret::sender_for(&ev.creator, &me_pn, Some(&me_lid));
        let rsvp = Rsvp::new(RsvpResponse::Going, 1_764_612_000_000);
        let m = rsvp_message(&rsvp, &ev, &secret, &responder.with_device(3), &mut rng).unwrap();
        let enc = m.enc_event_response_message.as_ref().unwrap();
        let key = enc.event_creation_message_key.as_ref().unwrap();
        assert_eq!(key.participant.as_deref(), Some("100000000000001@lid"));
        assert_eq!(key.from_me, Some(false));
        assert_eq!(enc.enc_iv.as_ref().unwrap().len(), 12);

        // The creator knows the responder by PN first, then by LID.
        let cands =
            Parties::alternates(&[creator_pn, creator_lid.clone()], &[me_pn, me_lid.clone()]);
        let d = decrypt_rsvp(enc, &secret, &cands).unwrap();
        assert_eq!(d.value, rsvp);
        assert_eq!(d.parties, Parties::new(creator_lid, me_lid));

        let mut no_id = enc.clone();
        no_id.event_creation_message_key.as_mut().unwrap().id = None;
        assert_eq!(
            decrypt_rsvp(&no_id, &secret, &cands),
            Err(SecretError::MissingField("eventCreationMessageKey.ID"))
        );
        let mut no_iv = enc.clone();
        no_iv.enc_iv = None;
        assert_eq!(
            decrypt_rsvp(&no_iv, &secret, &cands),
            Err(SecretError::MissingField("encIV"))
        );
    }
}
