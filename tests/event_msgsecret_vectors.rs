//! The message-secret cryptography against vectors computed independently by
//! `tools/interop/msgsecret_vectors.py` (PyPI `cryptography`: HKDF-SHA256 and
//! AES-256-GCM, protobuf plaintexts encoded by hand), committed as
//! `tests/data/msgsecret_vectors.json`.
//!
//! For every vector waevent must derive the same key and additional data, produce
//! the same `encPayload` (byte for byte, given the same IV) from the same RSVP or
//! card, and decrypt the Python payload back to the same content.

mod common;

use prost::Message as _;
use rand_core::{CryptoRng, RngCore};
use serde_json::Value;
use waevent::event::secret::{self, UseCase};
use waevent::event::{
    EventCard, EventRef, MessageSecret, Parties, Rsvp, RsvpResponse, decrypt_event_edit,
    decrypt_rsvp, edit_message, encrypt_rsvp,
};
use waevent::jid::Jid;

/// An RNG that yields fixed bytes (the vector's IV), then zeros.
struct FixedBytes(Vec<u8>);

impl RngCore for FixedBytes {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for d in dest.iter_mut() {
            *d = if self.0.is_empty() {
                0
            } else {
                self.0.remove(0)
            };
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for FixedBytes {}

fn vectors() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/msgsecret_vectors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn hex_of(v: &Value, k: &str) -> Vec<u8> {
    hex::decode(v[k].as_str().unwrap()).unwrap()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap()
}

/// The JID as a device would hold it: the same user with a device number, to check
/// that the derivation drops devices.
fn with_device(text: &str, device: u16) -> Jid {
    Jid::parse(text).unwrap().with_device(device)
}

fn card_from(content: &Value) -> EventCard {
    let mut b = EventCard::builder()
        .name(content["name"].as_str().unwrap())
        .start_unix(content["startTime"].as_i64().unwrap())
        .canceled(content["isCanceled"].as_bool().unwrap())
        .extra_guests_allowed(content["extraGuestsAllowed"].as_bool().unwrap())
        .schedule_call(content["isScheduleCall"].as_bool().unwrap())
        .has_reminder(content["hasReminder"].as_bool().unwrap());
    if let Some(d) = content["description"].as_str() {
        b = b.description(d);
    }
    if let Some(e) = content["endTime"].as_i64() {
        b = b.end_unix(e);
    }
    if let Some(o) = content["reminderOffsetSec"].as_i64() {
        b = b.reminder_offset_secs(o);
    }
    b.build().unwrap()
}

#[test]
fn vectors_cover_both_use_cases() {
    let v = vectors();
    assert!(v.len() >= 6);
    assert!(v.iter().any(|x| x["use_case"] == "Event Response"));
    assert!(v.iter().any(|x| x["use_case"] == "Event Edit"));
}

#[test]
fn key_and_additional_data_match() {
    for v in vectors() {
        let name = s(&v, "name");
        let uc = match s(&v, "use_case") {
            "Event Response" => UseCase::EventResponse,
            "Event Edit" => UseCase::EventEdit,
            other => panic!("{other}"),
        };
        let secret = MessageSecret::from_bytes(&hex_of(&v, "secret")).unwrap();
        let parties = Parties::new(
            with_device(s(&v, "creator"), 9),
            with_device(s(&v, "sender"), 23),
        );
        let key = secret::derive_use_case_key(&secret, uc, s(&v, "message_id"), &parties).unwrap();
        assert_eq!(hex::encode(*key), s(&v, "key"), "{name}");
        let aad = secret::additional_data(uc, s(&v, "message_id"), &parties.sender);
        assert_eq!(hex::encode(aad), s(&v, "aad"), "{name}");
        let sealed = secret::seal(
            &secret,
            uc,
            s(&v, "message_id"),
            &parties,
            &hex_of(&v, "plaintext"),
            &mut FixedBytes(hex_of(&v, "iv")),
        )
        .unwrap();
        assert_eq!(hex::encode(&sealed.payload), s(&v, "payload"), "{name}");
    }
}

#[test]
fn rsvps_encrypt_to_the_same_bytes_and_decrypt() {
    let mut n = 0;
    for v in vectors()
        .iter()
        .filter(|v| v["use_case"] == "Event Response")
    {
        n += 1;
        let name = s(v, "name");
        let c = &v["content"];
        let rsvp = Rsvp {
            response: RsvpResponse::from_proto(c["response"].as_i64().unwrap() as i32).unwrap(),
            extra_guests: c["extra_guests"].as_u64().unwrap() as u32,
            timestamp_ms: c["timestamp_ms"].as_i64().unwrap(),
        };
        assert_eq!(
            hex::encode(rsvp.to_proto().encode_to_vec()),
            s(v, "plaintext"),
            "{name}: EventResponseMessage bytes"
        );
        let secret = MessageSecret::from_bytes(&hex_of(v, "secret")).unwrap();
        let ev = EventRef::new(
            Jid::group("120363000000000001"),
            s(v, "message_id"),
            with_device(s(v, "creator"), 4),
        );
        let responder = with_device(s(v, "sender"), 2);
        let enc = encrypt_rsvp(
            &rsvp,
            &ev,
            &secret,
            &responder,
            &mut FixedBytes(hex_of(v, "iv")),
        )
        .unwrap();
        assert_eq!(
            hex::encode(enc.enc_payload.as_ref().unwrap()),
            s(v, "payload"),
            "{name}"
        );
        assert_eq!(
            hex::encode(enc.enc_iv.as_ref().unwrap()),
            s(v, "iv"),
            "{name}"
        );

        // Decrypt the Python payload, with a wrong candidate first.
        let mut py = enc.clone();
        py.enc_payload = Some(hex_of(v, "payload"));
        let cands = vec![
            Parties::new(Jid::pn_user("1"), Jid::pn_user("2")),
            Parties::new(Jid::parse(s(v, "creator")).unwrap(), responder.clone()),
        ];
        let d = decrypt_rsvp(&py, &secret, &cands).unwrap();
        assert_eq!(d.value, rsvp, "{name}");
        assert_eq!(d.parties, cands[1]);

        // One flipped bit anywhere in the payload is refused.
        let mut bad = py.clone();
        let p = bad.enc_payload.as_mut().unwrap();
        let last = p.len() - 1;
        p[last] ^= 0x80;
        assert!(decrypt_rsvp(&bad, &secret, &cands).is_err(), "{name}");
    }
    assert!(n >= 4);
}

#[test]
fn edits_encrypt_to_the_same_bytes_and_decrypt() {
    let mut n = 0;
    for v in vectors().iter().filter(|v| v["use_case"] == "Event Edit") {
        n += 1;
        let name = s(v, "name");
        let card = card_from(&v["content"]);
        let secret = MessageSecret::from_bytes(&hex_of(v, "secret")).unwrap();
        let creator = with_device(s(v, "creator"), 1);
        let ev = EventRef::new(
            Jid::group("120363000000000001"),
            s(v, "message_id"),
            creator,
        );
        let editor = with_device(s(v, "sender"), 5);
        let m = edit_message(
            &card,
            &ev,
            &secret,
            &editor,
            &mut FixedBytes(hex_of(v, "iv")),
        )
        .unwrap();
        let sem = m.secret_encrypted_message.as_ref().unwrap();
        assert_eq!(
            hex::encode(sem.enc_payload.as_ref().unwrap()),
            s(v, "payload"),
            "{name}"
        );

        let mut py = sem.clone();
        py.enc_payload = Some(hex_of(v, "payload"));
        let cands = [Parties::new(
            Jid::parse(s(v, "creator")).unwrap(),
            Jid::parse(s(v, "sender")).unwrap(),
        )];
        let d = decrypt_event_edit(&py, &secret, &cands).unwrap();
        assert_eq!(d.value, card, "{name}");
    }
    assert!(n >= 2);
}

/// The committed JSON is what the script prints (run under the pinned PyPI
/// `cryptography` in tools/interop/.venv).
#[test]
fn committed_vectors_are_the_scripts_output() {
    let out = common::run_python("msgsecret_vectors.py", b"");
    let fresh: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(fresh, Value::Array(vectors()));
}
