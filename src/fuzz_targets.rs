//! Entry points shared by the cargo-fuzz targets in `fuzz/` and by the corpus replay in
//! `cargo test` (`tests/fuzz_corpus.rs`), so both exercise exactly the same code.
//! Each function must return normally on any input: a panic is a bug.

/// A fuzz entry point: must return normally on any input.
pub type FuzzEntry = fn(&[u8]);

/// Every fuzz target by name (the name of its `fuzz/fuzz_targets/<name>.rs` file and of
/// its `fuzz/corpus/<name>/` directory).
pub const TARGETS: &[(&str, FuzzEntry)] = &[
    ("noise_server_hello", noise_server_hello),
    ("noise_frames", noise_frames),
    ("node_decode", node_decode),
    ("message_event", message_event),
    ("signal_decrypt", signal_decrypt),
    ("gateway_request", gateway_request),
    ("sim_stanzas", sim_stanzas),
    ("client_stanzas", client_stanzas),
    ("message_stanza", message_stanza),
    ("send_answers", send_answers),
    ("event_incoming", event_incoming),
    ("group_fanout", group_fanout),
];

/// Looks up a fuzz entry point by target name.
pub fn by_name(name: &str) -> Option<FuzzEntry> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Arbitrary bytes as the ServerHello payload into a fresh Noise initiator, and as a
/// certificate chain into the verifier.
pub fn noise_server_hello(data: &[u8]) {
    let _ = crate::noise::fuzz_support::server_hello(data);
}

/// Arbitrary chunks into the frame decoder, every frame into the transport decrypt.
pub fn noise_frames(data: &[u8]) {
    let _ = crate::noise::fuzz_support::frames(data);
}

/// `binary::unmarshal` on arbitrary frame payloads; whatever decodes must re-encode, and
/// decoding that encoding must give the same node (decode ∘ encode is the identity on
/// decoded nodes). Panics only on a codec bug.
pub fn node_decode(data: &[u8]) {
    use crate::binary::{marshal, unmarshal};
    if let Ok(node) = unmarshal(data) {
        let bytes = match marshal(&node) {
            Ok(b) => b,
            Err(e) => panic!("a decoded node does not re-encode: {e}\n{node}"),
        };
        match unmarshal(&bytes) {
            Ok(again) => assert!(
                again == node,
                "decode(encode(node)) differs:\n{again}\n{node}"
            ),
            Err(e) => panic!("a re-encoded node does not decode: {e}\n{node}"),
        }
    }
}

/// The message secret the `message_event` target decrypts RSVPs and edits with
/// (its seed corpus is encrypted under it, so decryption succeeds on the seeds).
pub const FUZZ_EVENT_SECRET: [u8; 32] = [0x42; 32];
/// The modification sender the `message_event` target assumes.
pub const FUZZ_EVENT_SENDER: &str = "5511988887777@s.whatsapp.net";
/// The group the `message_event` target assumes the message arrived in.
pub const FUZZ_EVENT_GROUP: &str = "120363000000000001@g.us";

/// Decodes arbitrary bytes as an E2E `Message` and runs everything that reads
/// events from it: card extraction, message secret, RSVP and EVENT_EDIT decryption
/// (creator taken from the key as a receiver does), and the JSON rendering of
/// `waevent wire decode`. Valid UTF-8 is also parsed as event-card JSON.
pub fn message_event(data: &[u8]) {
    use crate::event::{
        EventCard, MessageSecret, Parties, creator_from_key, decrypt_event_edit, decrypt_rsvp,
        unwrap_message,
    };
    use crate::jid::Jid;
    use prost::Message as _;

    if let Ok(text) = std::str::from_utf8(data) {
        let _ = EventCard::from_json(text);
    }
    let Ok(message) = crate::proto::e2e::Message::decode(data) else {
        return;
    };
    let _ = EventCard::from_message(&message);
    let _ = MessageSecret::from_message(&message);
    let _ = crate::wire::message_to_json(data);

    let (Ok(chat), Ok(sender)) = (Jid::parse(FUZZ_EVENT_GROUP), Jid::parse(FUZZ_EVENT_SENDER))
    else {
        return;
    };
    let secret = MessageSecret::from_array(FUZZ_EVENT_SECRET);
    let candidates = |key: Option<&crate::proto::e2e::MessageKey>| -> Vec<Parties> {
        let creators: Vec<Jid> = key
            .and_then(|k| creator_from_key(k, &chat, &sender).ok())
            .into_iter()
            .collect();
        Parties::alternates(&creators, std::slice::from_ref(&sender))
    };
    let inner = unwrap_message(&message);
    if let Some(enc) = &inner.enc_event_response_message {
        let _ = decrypt_rsvp(
            enc,
            &secret,
            &candidates(enc.event_creation_message_key.as_ref()),
        );
    }
    if let Some(sem) = &inner.secret_encrypted_message {
        let _ = decrypt_event_edit(sem, &secret, &candidates(sem.target_message_key.as_ref()));
    }
}

/// Arbitrary bytes as pkmsg / msg / skmsg / SKDM (first byte selects) into real
/// sessions; see `signal::fuzz`.
pub fn signal_decrypt(data: &[u8]) {
    crate::signal::fuzz::signal_decrypt(data);
}

/// Arbitrary bytes as a Z-API or RyzeAPI request body (first byte selects the route)
/// into the gateway's request parsers, and as `dateTime|timeZone` into the Z-API time
/// helpers. A no-op without the `gateway` feature.
pub fn gateway_request(data: &[u8]) {
    #[cfg(feature = "gateway")]
    crate::gateway::fuzz_support::requests(data);
    #[cfg(not(feature = "gateway"))]
    let _ = data;
}

/// Hostile stanzas into the simulator's sans-IO server from every connection state
/// (`sim::fuzz_support`); every node it answers with must encode. A no-op without the
/// `sim` feature.
pub fn sim_stanzas(data: &[u8]) {
    #[cfg(feature = "sim")]
    let _ = crate::sim::fuzz_support::stanzas(data);
    #[cfg(not(feature = "sim"))]
    let _ = data;
}

/// Arbitrary frame payloads through every parser the client runs on server stanzas
/// (success, failure, stream errors, pair-device, pair-success with the ADV checks under
/// a fixed secret and identity, prekey counts, pairing-code stanzas, acks).
pub fn client_stanzas(data: &[u8]) {
    let _ = crate::client::fuzz_support::stanzas(data);
}

/// Arbitrary bytes as a received `<message>` frame: the envelope parser, then the
/// decrypt path (pairwise, sender keys, SKDMs, unpadding, `Message` parsing, the store
/// batch) for a fixed local device on a fresh in-memory store.
pub fn message_stanza(data: &[u8]) {
    let _ = crate::client::receive_support::message_stanza(data);
}

/// Every parser of the send pipeline (group info, usync, key bundles, fan-out
/// notifications, retry receipts, message acks) on one arbitrary frame payload.
pub fn send_answers(data: &[u8]) {
    let _ = crate::client::send_fuzz::send_answers(data);
}

/// Arbitrary bytes as a `link_create` answer and as a decrypted `Message` given to the
/// events API's incoming handler (cards, RSVPs and edits of a stored event).
pub fn event_incoming(data: &[u8]) {
    let _ = crate::client::events_fuzz::event_incoming(data);
}

/// Hostile device lists, sender-key record and `Message` through the group fan-out
/// state and a send (see `messaging::fuzz_support`).
pub fn group_fanout(data: &[u8]) {
    crate::messaging::fuzz_support::group_fanout(data);
}
