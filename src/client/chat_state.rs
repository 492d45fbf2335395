//! Chat states ("typing…"): the `<chatstate>` node a client sends to show that it is
//! composing in a chat, and to stop showing it.
//!
//! ```text
//! <chatstate to="<chat>"><composing/></chatstate>
//! <chatstate to="<chat>"><paused/></chatstate>
//! ```
//!
//! whatsmeow (`SendChatPresence`) and whatsapp-rust (`Chatstate::send`) send exactly
//! this; Baileys adds a `from` attribute with the own JID, which the server does not
//! need (it knows who is connected). Recording a voice note is `<composing
//! media="audio"/>`. The server relays the state to the chat's other members; it
//! sends no answer. Sans-IO: builds nodes only.

use crate::binary::Node;
use crate::jid::Jid;

/// What the chat is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatState {
    /// "typing…" (`<composing/>`).
    Composing,
    /// "recording audio…" (`<composing media="audio"/>`).
    Recording,
    /// Stopped typing (`<paused/>`).
    Paused,
}

/// The `<chatstate to=chat>` node announcing `state` in `chat` (a group or a user,
/// without device).
pub fn chat_state_node(chat: &Jid, state: ChatState) -> Node {
    let child = match state {
        ChatState::Composing => Node::new("composing"),
        ChatState::Recording => Node::new("composing").attr("media", "audio"),
        ChatState::Paused => Node::new("paused"),
    };
    Node::new("chatstate")
        .attr("to", chat.to_non_ad())
        .child(child)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::{marshal, unmarshal};

    #[test]
    fn nodes_match_whatsmeow_and_whatsapp_rust() {
        let group = Jid::group("120363000000000001");
        let n = chat_state_node(&group, ChatState::Composing);
        assert_eq!(
            n.to_string(),
            r#"<chatstate to="120363000000000001@g.us"><composing/></chatstate>"#
        );
        let p = chat_state_node(
            &Jid::parse("5511999990000:3@s.whatsapp.net").unwrap(),
            ChatState::Paused,
        );
        assert_eq!(
            p.to_string(),
            r#"<chatstate to="5511999990000@s.whatsapp.net"><paused/></chatstate>"#
        );
        let r = chat_state_node(&group, ChatState::Recording);
        assert_eq!(r.children()[0].attr_str("media"), Some("audio"));
        for node in [n, p, r] {
            assert_eq!(unmarshal(&marshal(&node).unwrap()).unwrap(), node);
        }
    }
}
