//! The events API's own stanzas against an independent implementation: Baileys 7's
//! WABinary (npm `baileys@7.0.0-rc14`), driven by `tools/interop/binary_roundtrip.js`.
//!
//! * The call-link request: Baileys' `createCallLink(type, {startTime})` builds
//!   `<call id to="@call"><link_create media><event start_time/></link_create></call>`;
//!   Baileys encodes that node to exactly the bytes of
//!   `call_link::link_create_request`, and decodes our bytes back to it.
//! * The server's answer, encoded by Baileys in whatsapp-rust's form (`<ack
//!   class="call" type="link_create">`) and in the bare form Baileys itself accepts, is
//!   decoded by waevent and read as the right join link.
//! * Chat states: whatsmeow's / whatsapp-rust's `<chatstate to><composing/></chatstate>`
//!   and `<paused/>` encoded by Baileys are byte-identical to `chat_state::chat_state_node`.

mod common;

use serde_json::{Value, json};
use waevent::binary::json::node_to_json;
use waevent::binary::{marshal, unmarshal};
use waevent::client::call_link::{link_create_request, parse_link_create_answer};
use waevent::client::chat_state::{ChatState, chat_state_node};
use waevent::event::CallType;
use waevent::jid::Jid;

fn run_baileys(request: &Value) -> Value {
    let out = common::run_node("binary_roundtrip.js", request.to_string().as_bytes());
    serde_json::from_slice(&out).expect("binary_roundtrip.js prints JSON")
}

fn hex_list(v: &Value) -> Vec<Vec<u8>> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| hex::decode(s.as_str().expect("hex")).expect("hex"))
        .collect()
}

#[test]
fn call_link_and_chat_state_stanzas_match_baileys_bytes_both_ways() {
    // The nodes exactly as Baileys' createCallLink / whatsmeow's SendChatPresence
    // build them.
    let baileys_call = |media: &str, id: &str| {
        json!({"tag": "call", "attrs": {"id": id, "to": "@call"}, "content": [
            {"tag": "link_create", "attrs": {"media": media}, "content": [
                {"tag": "event", "attrs": {"start_time": "1764612000"}, "content": null}
            ]}
        ]})
    };
    let group = Jid::group("120363019502650977");
    let chatstate = |state: &str, to: &str| {
        json!({"tag": "chatstate", "attrs": {"to": to}, "content": [
            {"tag": state, "attrs": {}, "content": null}
        ]})
    };
    let theirs = vec![
        baileys_call("video", "1234.5678-9"),
        baileys_call("audio", "3EB0AB"),
        chatstate("composing", "120363019502650977@g.us"),
        chatstate("paused", "120363019502650977@g.us"),
        chatstate("composing", "5511999990000@s.whatsapp.net"),
        chatstate("paused", "100000000000001@lid"),
    ];
    let ours = [
        link_create_request("1234.5678-9", CallType::Video, 1_764_612_000),
        link_create_request("3EB0AB", CallType::Voice, 1_764_612_000),
        chat_state_node(&group, ChatState::Composing),
        chat_state_node(&group, ChatState::Paused),
        chat_state_node(
            &Jid::parse("5511999990000:4@s.whatsapp.net").unwrap(),
            ChatState::Composing,
        ),
        chat_state_node(&Jid::lid_user("100000000000001"), ChatState::Paused),
    ];
    let our_bytes: Vec<Vec<u8>> = ours.iter().map(|n| marshal(n).unwrap()).collect();
    let out = run_baileys(&json!({
        "encode": theirs,
        "decode": our_bytes.iter().map(hex::encode).collect::<Vec<_>>(),
    }));
    let encoded = hex_list(&out["encoded"]);
    let decoded = out["decoded"].as_array().unwrap();
    assert_eq!(encoded.len(), ours.len());
    for (i, node) in ours.iter().enumerate() {
        assert_eq!(
            encoded[i], our_bytes[i],
            "Baileys' bytes differ from ours for {node}"
        );
        assert_eq!(
            decoded[i], theirs[i],
            "Baileys decoded our {node} differently"
        );
        assert_eq!(node_to_json(node), theirs[i]);
    }
}

#[test]
fn link_create_answers_encoded_by_baileys_are_read() {
    let answers = json!([
        // whatsapp-rust's expected form.
        {"tag": "ack", "attrs": {"class": "call", "type": "link_create", "id": "1.2-3"}, "content": [
            {"tag": "link_create", "attrs": {"token": "Yz3Kq0pVx8LmN2bQwE1r", "media": "video"}, "content": null}
        ]},
        // The bare form Baileys accepts (any answer with a link_create token).
        {"tag": "ack", "attrs": {"id": "1.2-4"}, "content": [
            {"tag": "link_create", "attrs": {"token": "AbCdEf_12-34"}, "content": null}
        ]},
        // A refusal.
        {"tag": "ack", "attrs": {"class": "call", "type": "link_create", "id": "1.2-5", "error": "403"}, "content": null}
    ]);
    let out = run_baileys(&json!({ "encode": answers }));
    let encoded = hex_list(&out["encoded"]);
    let nodes: Vec<_> = encoded.iter().map(|b| unmarshal(b).unwrap()).collect();
    assert_eq!(
        parse_link_create_answer(&nodes[0], CallType::Video).unwrap(),
        "https://call.whatsapp.com/video/Yz3Kq0pVx8LmN2bQwE1r"
    );
    assert_eq!(
        parse_link_create_answer(&nodes[1], CallType::Voice).unwrap(),
        "https://call.whatsapp.com/voice/AbCdEf_12-34"
    );
    let refused = parse_link_create_answer(&nodes[2], CallType::Voice).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "the server refused to create a call link: error 403"
    );
}
