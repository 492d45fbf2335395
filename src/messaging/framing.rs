//! The stanza framing of a message, derived from its content (PROTOCOL.md §10.5): the
//! `type` attribute of `<message>`, the `<meta event_type="…"/>` child, the `edit`
//! attribute and `decrypt-fail="hide"` on every `<enc>`.
//!
//! Phones only render an event card, an RSVP or an event edit when the stanza carries
//! the framing WhatsApp's own apps give it. What the open implementations send today:
//!
//! | content | whatsmeow | Baileys | whatsapp-rust (WA Web `typeAttributeFromProtobuf`) |
//! | --- | --- | --- | --- |
//! | `eventMessage` | `type="text"`, no meta | `type="event"`, `<meta event_type="creation"/>` | `type="event"`, `<meta event_type="creation"/>` |
//! | `encEventResponseMessage` (RSVP) | `text` | `text`, no meta, no `decrypt-fail` | `event`, `<meta event_type="response"/>`, `decrypt-fail="hide"` |
//! | `secretEncryptedMessage` EVENT_EDIT | `text` | not supported | `event`, `edit="1"`, `<meta event_type="edit"/>`, `decrypt-fail="hide"` |
//!
//! (Checked in the sources: Baileys `7.0.0-rc14` `lib/Socket/messages-send.js`
//! `getMessageType` and `sendMessage`, which adds the creation meta only for its own
//! `event` content; whatsapp-rust `wacore` `stanza_type_from_message` and the group
//! stanza builder in `wacore/src/send/group.rs`, which puts `decrypt-fail="hide"` on the
//! SKDM copies as well as on the skmsg so that receivers without our key stay silent;
//! whatsmeow `send.go` `getTypeFromMessage`.)
//!
//! We follow whatsapp-rust everywhere: it is derived from WhatsApp Web's own code and
//! is the only one that frames RSVPs and edits (Baileys' plain-`text` RSVP is accepted
//! by the server but the phones do not count it). Like WA Web we classify the content
//! after unwrapping `ephemeralMessage` and `deviceSentMessage` wrappers, so the copy our
//! own devices get is framed like the original.
//!
//! Everything else is framed `type="text"` with no meta and no `decrypt-fail`.
//! Reactions (`reaction`), polls (`poll` + `<meta polltype>`), media (`media` +
//! `mediatype`) and other edits are out of scope for waevent: it never builds them, and
//! this module frames them as `text` (which the server accepts but phones may not
//! render as such) rather than guessing.

use crate::binary::{AttrValue, Node};
use crate::proto::e2e;
use crate::proto::e2e::secret_encrypted_message::SecretEncType;

/// How deep `ephemeralMessage` / `deviceSentMessage` wrappers are unwrapped (real
/// messages nest at most two).
const MAX_UNWRAP_DEPTH: usize = 4;

/// The `type` attribute of a `<message>` stanza.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum StanzaType {
    /// `type="text"`: plain content and everything waevent does not frame specially.
    Text,
    /// `type="event"`: event cards, RSVPs and event edits.
    Event,
}

impl StanzaType {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            StanzaType::Text => "text",
            StanzaType::Event => "event",
        }
    }
}

/// The `event_type` of the `<meta/>` child of an event stanza.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum EventMetaType {
    /// A new event card (`eventMessage`).
    Creation,
    /// An RSVP (`encEventResponseMessage`).
    Response,
    /// An edit or cancellation (`secretEncryptedMessage` of type EVENT_EDIT).
    Edit,
}

impl EventMetaType {
    /// The attribute value: `creation`, `response` or `edit`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventMetaType::Creation => "creation",
            EventMetaType::Response => "response",
            EventMetaType::Edit => "edit",
        }
    }
}

/// The framing of one message: what goes on `<message>` and its `<enc>` children
/// besides the ciphertext.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Framing {
    /// The `type` attribute.
    pub stanza_type: StanzaType,
    /// The `<meta event_type="…"/>` child, if any.
    pub event_meta: Option<EventMetaType>,
    /// The `edit` attribute (`"1"` for an event edit), if any.
    pub edit: Option<&'static str>,
    /// Whether every `<enc>` carries `decrypt-fail="hide"` (recipients that cannot
    /// decrypt show nothing instead of "waiting for this message").
    pub hide_decrypt_fail: bool,
}

impl Framing {
    /// Plain framing: `type="text"`, nothing else.
    pub const TEXT: Framing = Framing {
        stanza_type: StanzaType::Text,
        event_meta: None,
        edit: None,
        hide_decrypt_fail: false,
    };

    /// The framing WhatsApp's apps give `message` (see the module docs). Never fails:
    /// content waevent does not frame specially is `type="text"`.
    pub fn of(message: &e2e::Message) -> Framing {
        let message = unwrap(message);
        if message.event_message.is_some() {
            return Framing {
                stanza_type: StanzaType::Event,
                event_meta: Some(EventMetaType::Creation),
                edit: None,
                hide_decrypt_fail: false,
            };
        }
        if message.enc_event_response_message.is_some() {
            return Framing {
                stanza_type: StanzaType::Event,
                event_meta: Some(EventMetaType::Response),
                edit: None,
                hide_decrypt_fail: true,
            };
        }
        if let Some(secret) = &message.secret_encrypted_message
            && secret.secret_enc_type == Some(SecretEncType::EventEdit as i32)
        {
            return Framing {
                stanza_type: StanzaType::Event,
                event_meta: Some(EventMetaType::Edit),
                edit: Some("1"),
                hide_decrypt_fail: true,
            };
        }
        Framing::TEXT
    }

    /// The `<meta event_type="…"/>` child, if this framing has one.
    pub fn meta_node(&self) -> Option<Node> {
        self.event_meta
            .map(|m| Node::new("meta").attr("event_type", m.as_str()))
    }

    /// An `<enc v="2" type="…">` node holding `ciphertext`, with `decrypt-fail="hide"`
    /// when this framing asks for it. `enc_type` is `pkmsg`, `msg` or `skmsg`.
    pub fn enc_node(&self, enc_type: &'static str, ciphertext: Vec<u8>) -> Node {
        let mut node = Node::new("enc")
            .attr("v", AttrValue::from_static("2"))
            .attr("type", AttrValue::from_static(enc_type));
        if self.hide_decrypt_fail {
            node = node.attr("decrypt-fail", AttrValue::from_static("hide"));
        }
        node.with_bytes(ciphertext)
    }
}

/// The content inside `ephemeralMessage` and `deviceSentMessage` wrappers (bounded
/// depth; a wrapper without content is classified as itself).
fn unwrap(message: &e2e::Message) -> &e2e::Message {
    let mut current = message;
    for _ in 0..MAX_UNWRAP_DEPTH {
        let inner = current
            .ephemeral_message
            .as_ref()
            .and_then(|w| w.message.as_deref())
            .or_else(|| {
                current
                    .device_sent_message
                    .as_ref()
                    .and_then(|d| d.message.as_deref())
            });
        match inner {
            Some(inner) => current = inner,
            None => break,
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::NodeContent;

    fn event() -> e2e::Message {
        e2e::Message {
            event_message: Some(Box::new(e2e::EventMessage {
                name: Some("Dinner".into()),
                start_time: Some(1_800_000_000),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn rsvp() -> e2e::Message {
        e2e::Message {
            enc_event_response_message: Some(e2e::EncEventResponseMessage {
                event_creation_message_key: None,
                enc_payload: Some(vec![1; 20]),
                enc_iv: Some(vec![2; 12]),
            }),
            ..Default::default()
        }
    }

    fn secret(kind: SecretEncType) -> e2e::Message {
        e2e::Message {
            secret_encrypted_message: Some(e2e::SecretEncryptedMessage {
                secret_enc_type: Some(kind as i32),
                enc_payload: Some(vec![1; 20]),
                enc_iv: Some(vec![2; 12]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn event_card_is_event_creation_without_hide() {
        let f = Framing::of(&event());
        assert_eq!(f.stanza_type.as_str(), "event");
        assert_eq!(f.event_meta, Some(EventMetaType::Creation));
        assert_eq!(f.edit, None);
        assert!(!f.hide_decrypt_fail);
        let meta = f.meta_node().unwrap();
        assert_eq!(meta.tag, "meta");
        assert_eq!(meta.attr_str("event_type"), Some("creation"));
        assert_eq!(meta.content, NodeContent::None);
    }

    #[test]
    fn rsvp_is_event_response_hidden() {
        let f = Framing::of(&rsvp());
        assert_eq!(f.stanza_type, StanzaType::Event);
        assert_eq!(f.event_meta, Some(EventMetaType::Response));
        assert_eq!(f.edit, None);
        assert!(f.hide_decrypt_fail);
        let enc = f.enc_node("skmsg", vec![7, 8]);
        assert_eq!(enc.attr_str("v"), Some("2"));
        assert_eq!(enc.attr_str("type"), Some("skmsg"));
        assert_eq!(enc.attr_str("decrypt-fail"), Some("hide"));
        assert_eq!(enc.bytes(), Some(&[7u8, 8][..]));
    }

    #[test]
    fn event_edit_is_edit_1_hidden() {
        let f = Framing::of(&secret(SecretEncType::EventEdit));
        assert_eq!(f.stanza_type, StanzaType::Event);
        assert_eq!(f.event_meta, Some(EventMetaType::Edit));
        assert_eq!(f.edit, Some("1"));
        assert!(f.hide_decrypt_fail);
    }

    #[test]
    fn everything_else_is_text() {
        let text = e2e::Message {
            conversation: Some("hi".into()),
            ..Default::default()
        };
        assert_eq!(Framing::of(&text), Framing::TEXT);
        assert_eq!(Framing::of(&e2e::Message::default()), Framing::TEXT);
        // Other secret-encrypted kinds (message edits, polls) are not event stanzas.
        assert_eq!(
            Framing::of(&secret(SecretEncType::MessageEdit)),
            Framing::TEXT
        );
        let enc = Framing::TEXT.enc_node("pkmsg", vec![1]);
        assert_eq!(enc.attr_str("decrypt-fail"), None);
        assert!(Framing::TEXT.meta_node().is_none());
    }

    #[test]
    fn wrappers_are_classified_by_their_content() {
        let dsm = e2e::Message {
            device_sent_message: Some(Box::new(e2e::DeviceSentMessage {
                destination_jid: Some("1@s.whatsapp.net".into()),
                message: Some(Box::new(rsvp())),
                phash: None,
            })),
            ..Default::default()
        };
        assert_eq!(Framing::of(&dsm), Framing::of(&rsvp()));
        let ephemeral = e2e::Message {
            ephemeral_message: Some(Box::new(e2e::FutureProofMessage {
                message: Some(Box::new(event())),
            })),
            ..Default::default()
        };
        assert_eq!(Framing::of(&ephemeral), Framing::of(&event()));
    }

    #[test]
    fn deep_wrapper_chains_stop() {
        let mut m = event();
        for _ in 0..100 {
            m = e2e::Message {
                ephemeral_message: Some(Box::new(e2e::FutureProofMessage {
                    message: Some(Box::new(m)),
                })),
                ..Default::default()
            };
        }
        // Too deep to reach the card: framed as text, without recursion or panic.
        assert_eq!(Framing::of(&m), Framing::TEXT);
    }
}
