//! The seeds of the `sim_stanzas` fuzz target are real client stanzas for each
//! connection state (built by `waevent::sim::fuzz_support` from fixed keys) plus a few
//! corrupt inputs. This test regenerates them, checks how many nodes the server answers
//! each with, and checks the committed files under `fuzz/corpus/sim_stanzas/` are
//! exactly these bytes. Rewrite them with
//! `WAEVENT_WRITE_FUZZ_SEEDS=1 cargo test --test sim_fuzz_seeds`.

#![cfg(feature = "sim")]

use std::path::Path;

use prost::Message as _;
use waevent::binary::Node;
use waevent::jid::Jid;
use waevent::sim::fuzz_support::{
    self, ACCOUNT, Mode, OTHER, PAIR_SUCCESS_ID, client_iq, client_keys, companion_finish_node,
    companion_hello_node, fetch_node, frames, group_nodes, input, misc_nodes,
    pair_device_sign_node, stanzas, upload_node,
};
use waevent::sim::pair_code::WRAPPED_EPHEMERAL_LEN;

/// (file name, input, nodes the server must send in answer)
fn seeds() -> Vec<(&'static str, Vec<u8>, usize)> {
    let keys = client_keys();
    let own = Jid::pn_user(ACCOUNT).with_device(1);
    let mut corrupt_frame = frames(&misc_nodes());
    corrupt_frame[0].truncate(5);
    vec![
        (
            "registering_ping_and_unknown_iq",
            input(
                Mode::Registering,
                &frames(&[
                    client_iq("p", "w:p", "get", vec![]),
                    client_iq("x", "usync", "get", vec![Node::new("usync")]),
                ]),
            ),
            2,
        ),
        (
            "registering_companion_hello",
            input(
                Mode::Registering,
                &frames(&[companion_hello_node(&[7; WRAPPED_EPHEMERAL_LEN], &keys)]),
            ),
            1,
        ),
        (
            "pairing_reply_with_wrong_signature",
            input(Mode::Pairing, &frames(&[pair_device_sign_node()])),
            0,
        ),
        (
            "pairing_client_error",
            input(
                Mode::Pairing,
                &frames(&[Node::new("iq")
                    .attr("id", PAIR_SUCCESS_ID)
                    .attr("type", "error")
                    .child(
                        Node::new("error")
                            .attr("code", 401)
                            .attr("text", "hmac-mismatch"),
                    )]),
            ),
            0,
        ),
        (
            "code_companion_finish",
            input(Mode::Code, &frames(&[companion_finish_node()])),
            2,
        ),
        (
            "logged_in_prekeys",
            input(
                Mode::LoggedIn,
                &frames(&[
                    upload_node(10),
                    client_iq("c", "encrypt", "get", vec![Node::new("count")]),
                    client_iq("d", "encrypt", "get", vec![Node::new("digest")]),
                    fetch_node(&[
                        own.clone(),
                        Jid::pn_user(OTHER).with_device(0),
                        Jid::pn_user(OTHER).with_device(9),
                    ]),
                ]),
            ),
            4,
        ),
        (
            "logged_in_misc",
            input(Mode::LoggedIn, &frames(&misc_nodes())),
            7,
        ),
        (
            "logged_in_group_stanzas",
            input(Mode::LoggedIn, &frames(&group_nodes())),
            16,
        ),
        (
            "logged_in_remove_self",
            input(
                Mode::LoggedIn,
                &frames(&[client_iq(
                    "r",
                    "md",
                    "set",
                    vec![
                        Node::new("remove-companion-device")
                            .attr("jid", &own)
                            .attr("reason", "user_initiated"),
                    ],
                )]),
            ),
            1,
        ),
        (
            "payload_login_then_ping",
            input(
                Mode::Payload,
                &[
                    fuzz_support::login().encode_to_vec(),
                    frames(&[client_iq("p", "w:p", "get", vec![])]).remove(0),
                ],
            ),
            2,
        ),
        (
            "payload_registration",
            input(
                Mode::Payload,
                &[fuzz_support::registration(&keys).encode_to_vec()],
            ),
            1,
        ),
        ("corrupt_empty_payload", input(Mode::Payload, &[vec![]]), 1),
        (
            "corrupt_truncated_frame",
            input(Mode::LoggedIn, &corrupt_frame),
            6,
        ),
        (
            "corrupt_length_past_end",
            [vec![3u8, 0xFF, 0xFF], frames(&misc_nodes()).remove(0)].concat(),
            1,
        ),
    ]
}

#[test]
fn sim_stanza_seeds_are_real_answered_and_committed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/sim_stanzas");
    let write = std::env::var_os("WAEVENT_WRITE_FUZZ_SEEDS").is_some();
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, bytes, want) in seeds() {
        assert_eq!(stanzas(&bytes), want, "{name}: nodes sent in answer");
        let path = dir.join(format!("{name}.bin"));
        if write {
            std::fs::write(&path, &bytes).unwrap();
        } else {
            let committed = std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (run with WAEVENT_WRITE_FUZZ_SEEDS=1)",
                    path.display()
                )
            });
            assert!(
                committed == bytes,
                "{name}: committed seed differs from the generated one"
            );
        }
    }
}
