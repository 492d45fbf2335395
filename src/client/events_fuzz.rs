//! Fuzz support for the events API's receiving side (target `event_incoming`): the
//! bytes are read both as a `<link_create>` answer (a frame payload) and as a decrypted
//! `Message` handed to `handle_incoming_message` by a member of a group whose store
//! already holds one event card and its secret, so RSVPs and edits reach decryption.
//! Seeds are real messages built here ([`seeds`]).

use std::sync::Arc;

use prost::Message as _;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::call_link::parse_link_create_answer;
use super::receive::{IncomingMessage, MessageInfo};
use super::{Client, ClientConfig};
use crate::binary::{Node, marshal, unmarshal};
use crate::event::{CallType, EventCard, EventRef, MessageSecret, Rsvp, RsvpResponse};
use crate::jid::Jid;
use crate::proto::e2e;
use crate::store::{
    DeviceCredentials, EventRecord, LidPnMapping, MemoryStore, MessageSecretRecord, SecretBytes,
    Store, StoreBatch,
};

/// The seeded event's id.
const EVENT_ID: &str = "3EB0F0221E55EED00000AA";
const GROUP: &str = "120363000000000042";
const CREATOR_LID: &str = "200000000000002";
const CREATOR_PN: &str = "5511988887777";
const SECRET: [u8; 32] = [0x42; 32];

fn creator() -> Jid {
    Jid::lid_user(CREATOR_LID)
}

fn card() -> EventCard {
    EventCard::builder()
        .name("Fuzz party")
        .start_unix(1_798_812_000)
        .build()
        .unwrap_or_else(|_| unreachable!("a valid fixed card"))
}

async fn client() -> Option<(Client, super::Events)> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut creds = DeviceCredentials::generate(&mut StdRng::seed_from_u64(7));
    creds.pn = Jid::parse("5511999990000:7@s.whatsapp.net").ok();
    creds.lid = Jid::parse("100000000000001:7@lid").ok();
    store.save_credentials(&creds).await.ok()?;
    store
        .commit_batch(StoreBatch {
            mappings: vec![LidPnMapping::new(&creator(), &Jid::pn_user(CREATOR_PN)).ok()?],
            secrets: vec![MessageSecretRecord {
                chat: Jid::group(GROUP),
                sender: creator(),
                message_id: EVENT_ID.into(),
                secret: SecretBytes::from_array(SECRET),
                created_at_ms: 0,
            }],
            events: vec![EventRecord {
                chat: Jid::group(GROUP),
                message_id: EVENT_ID.into(),
                creator: creator(),
                from_me: false,
                card: card().to_event_message().encode_to_vec(),
                timestamp_ms: 0,
            }],
            ..StoreBatch::default()
        })
        .await
        .ok()?;
    Some(Client::new(store, ClientConfig::default()))
}

fn incoming(message: e2e::Message, sender: Jid) -> IncomingMessage {
    IncomingMessage {
        info: MessageInfo {
            id: "3EB0F022".into(),
            chat: Jid::group(GROUP),
            sender,
            sender_alt: None,
            from_me: false,
            timestamp: 1_798_000_000,
            push_name: None,
            stanza_type: "event".into(),
            edit: None,
        },
        message,
    }
}

/// Runs one input; returns how many activity events it produced (for the seed test).
pub fn event_incoming(data: &[u8]) -> usize {
    if let Ok(node) = unmarshal(data) {
        for ct in [CallType::Voice, CallType::Video] {
            let _ = parse_link_create_answer(&node, ct);
        }
    }
    let Ok(message) = e2e::Message::decode(data) else {
        return 0;
    };
    super::receive_support::block_on(async {
        let Some((client, mut events)) = client().await else {
            return 0;
        };
        for sender in [
            creator().with_device(3),
            Jid::parse("300000000000003:1@lid").unwrap_or_default(),
        ] {
            client
                .handle_incoming_message(&incoming(message.clone(), sender))
                .await;
        }
        let mut n = 0;
        while events.try_recv().is_some() {
            n += 1;
        }
        n
    })
    .unwrap_or(0)
}

/// Real inputs for the corpus: (name, bytes). Messages the seeded member sends (a card,
/// an RSVP, an edit, a cancellation) and `link_create` answers in both accepted forms.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let rng = &mut StdRng::seed_from_u64(0x5eed_0e0e);
    let secret = MessageSecret::from_array(SECRET);
    let event = EventRef::new(Jid::group(GROUP), EVENT_ID, creator());
    let voter = Jid::lid_user("300000000000003");
    let mut out = Vec::new();
    out.push(("card", card().to_message(rng).0.encode_to_vec()));
    if let Ok(m) = crate::event::rsvp_message(
        &Rsvp::new(RsvpResponse::Going, 1_798_000_000_000),
        &event,
        &secret,
        &voter,
        rng,
    ) {
        out.push(("rsvp", m.encode_to_vec()));
    }
    let moved = card()
        .to_builder()
        .name("Fuzz party (moved)")
        .build()
        .unwrap_or_else(|_| card());
    if let Ok(m) = crate::event::edit_message(&moved, &event, &secret, &creator(), rng) {
        out.push(("edit", m.encode_to_vec()));
    }
    if let Ok(m) =
        crate::event::edit_message(&card().to_canceled(), &event, &secret, &creator(), rng)
    {
        out.push(("cancel", m.encode_to_vec()));
    }
    let answer = |attrs: bool| {
        let mut n = Node::new("ack").attr("id", "1.2-3");
        if attrs {
            n = n.attr("class", "call").attr("type", "link_create");
        }
        n.child(
            Node::new("link_create")
                .attr("token", "Yz3Kq0pVx8LmN2bQwE1r")
                .attr("media", "video"),
        )
    };
    for (name, node) in [("link_ack", answer(true)), ("link_bare", answer(false))] {
        if let Ok(bytes) = marshal(&node) {
            out.push((name, bytes));
        }
    }
    let corrupt: Vec<(&'static str, Vec<u8>)> = out
        .iter()
        .filter(|(n, _)| matches!(*n, "rsvp" | "edit"))
        .map(|(n, b)| {
            let mut b = b.clone();
            let len = b.len();
            if let Some(x) = b.get_mut(len.saturating_sub(5)) {
                *x ^= 0x40;
            }
            (
                if *n == "rsvp" {
                    "corrupt_rsvp"
                } else {
                    "corrupt_edit"
                },
                b,
            )
        })
        .collect();
    out.extend(corrupt);
    if let Some((_, b)) = out.iter().find(|(n, _)| *n == "card") {
        let half = b.get(..b.len() / 2).unwrap_or_default().to_vec();
        out.push(("corrupt_truncated_card", half));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_do_what_they_say() {
        let seeds = seeds();
        let count = |name: &str| {
            let (_, b) = seeds.iter().find(|(n, _)| *n == name).unwrap();
            event_incoming(b)
        };
        // The card is taken from its first sender only (the same id from someone else
        // does not replace it); the RSVP opens only for the voter it was written as (the
        // second sender); edit and cancel only from the creator (the first).
        assert_eq!(count("card"), 1);
        assert_eq!(count("rsvp"), 1);
        assert_eq!(count("edit"), 1);
        assert_eq!(count("cancel"), 1);
        assert_eq!(count("corrupt_rsvp"), 0);
        assert_eq!(count("corrupt_edit"), 0);
        assert_eq!(count("link_ack"), 0);
        if std::env::var_os("WAEVENT_WRITE_SEEDS").is_some() {
            let dir =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/event_incoming");
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in &seeds {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }
}
