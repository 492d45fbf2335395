//! The seeds of the `client_stanzas` fuzz target are real stanzas as the server sends
//! them (built with the crate's encoder, a pair-success signed like the simulated phone
//! does for the target's fixed identity and ADV secret), a compressed one, and corrupt
//! ones. This test regenerates them deterministically, checks how many parsers accept
//! each, and checks the committed files under `fuzz/corpus/client_stanzas/` are exactly
//! these bytes. Rewrite them with
//! `WAEVENT_WRITE_FUZZ_SEEDS=1 cargo test --test client_fuzz_seeds`.

use std::path::Path;

use hmac::{Hmac, Mac};
use prost::Message;
use rand::SeedableRng;
use rand::rngs::StdRng;
use sha2::Sha256;
use waevent::binary::{Node, marshal, marshal_compressed};
use waevent::client::fuzz_support::{ADV_SECRET, identity, stanzas};
use waevent::client::pairing::{ADV_ACCOUNT_SIGNATURE_PREFIX, account_signature_message};
use waevent::jid::Jid;
use waevent::proto::adv::{
    AdvDeviceIdentity, AdvSignedDeviceIdentity, AdvSignedDeviceIdentityHmac,
};
use waevent::signal::curve::KeyPair;

fn server() -> Jid {
    Jid::server_jid()
}

fn pair_success_container(rng: &mut StdRng) -> Vec<u8> {
    let account = KeyPair::generate(rng);
    let details = AdvDeviceIdentity {
        raw_id: Some(1),
        timestamp: Some(1_700_000_000),
        key_index: Some(1),
        account_type: Some(0),
        device_type: Some(0),
    }
    .encode_to_vec();
    let msg =
        account_signature_message(&ADV_ACCOUNT_SIGNATURE_PREFIX, &details, &identity().public);
    let signed = AdvSignedDeviceIdentity {
        details: Some(details),
        account_signature_key: Some(account.public.as_bytes().to_vec()),
        account_signature: Some(account.private.sign(rng, &msg).to_vec()),
        device_signature: None,
    }
    .encode_to_vec();
    let mut mac = Hmac::<Sha256>::new_from_slice(&ADV_SECRET).unwrap();
    mac.update(&signed);
    AdvSignedDeviceIdentityHmac {
        details: Some(signed),
        hmac: Some(mac.finalize().into_bytes().to_vec()),
        account_type: Some(0),
    }
    .encode_to_vec()
}

fn pair_success(container: Vec<u8>) -> Node {
    Node::new("iq")
        .attr("from", server())
        .attr("id", "ps1")
        .attr("type", "result")
        .attr("t", "1700000000")
        .child(Node::new("pair-success").with_children(vec![
            Node::new("device-identity").with_bytes(container),
            Node::new("device")
                .attr("jid", Jid::parse("5511999999999:3@s.whatsapp.net").unwrap())
                .attr("lid", Jid::parse("123456789:3@lid").unwrap()),
            Node::new("platform").attr("name", "android"),
        ]))
}

/// (file name, bytes, how many parsers accept it)
fn seeds() -> Vec<(&'static str, Vec<u8>, usize)> {
    let mut rng = StdRng::seed_from_u64(0xC11E);
    let container = pair_success_container(&mut rng);
    let mut bad_hmac = container.clone();
    let last = bad_hmac.len() - 1;
    bad_hmac[last] ^= 1;
    let pair_device = Node::new("iq")
        .attr("from", server())
        .attr("id", "pd1")
        .attr("type", "set")
        .attr("xmlns", "md")
        .child(
            Node::new("pair-device").with_children(
                (0..6)
                    .map(|i| Node::new("ref").with_bytes(format!("2@ref{i}").into_bytes()))
                    .collect(),
            ),
        );
    let count = Node::new("iq")
        .attr("from", server())
        .attr("id", "c1")
        .attr("type", "result")
        .child(Node::new("count").attr("value", "3"));
    let low = Node::new("notification")
        .attr("from", server())
        .attr("id", "n1")
        .attr("type", "encrypt")
        .child(Node::new("count").attr("value", "2"));
    let primary_hello = Node::new("notification")
        .attr("from", server())
        .attr("id", "n2")
        .attr("type", "link_code_companion_reg")
        .child(Node::new("link_code_companion_reg").with_children(vec![
            Node::new("link_code_pairing_ref").with_bytes(b"ref".to_vec()),
            Node::new("link_code_pairing_wrapped_primary_ephemeral_pub").with_bytes(vec![7; 80]),
            Node::new("primary_identity_pub").with_bytes(vec![8; 32]),
        ]));
    let hello_response = Node::new("iq")
        .attr("from", server())
        .attr("id", "h1")
        .attr("type", "result")
        .child(
            Node::new("link_code_companion_reg")
                .child(Node::new("link_code_pairing_ref").with_bytes(b"ref".to_vec())),
        );
    let success = Node::new("success")
        .attr("t", "1700000000")
        .attr("lid", Jid::parse("123456789:3@lid").unwrap());
    let failure = Node::new("failure")
        .attr("reason", "402")
        .attr("code", "101")
        .attr("expire", "60");
    let removed = Node::new("stream:error")
        .attr("code", "401")
        .child(Node::new("conflict").attr("type", "device_removed"));
    let ack_error =
        Node::new("stream:error").child(Node::new("ack").attr("id", "x").attr("class", "receipt"));
    let iq_error = Node::new("iq")
        .attr("from", server())
        .attr("id", "e1")
        .attr("type", "error")
        .child(
            Node::new("error")
                .attr("code", "406")
                .attr("text", "not-acceptable"),
        );
    let m = |n: &Node| marshal(n).unwrap();
    let truncated = {
        let mut b = m(&pair_success(container.clone()));
        b.truncate(b.len() / 2);
        b
    };
    vec![
        ("pair_success_valid", m(&pair_success(container.clone())), 2),
        (
            "pair_success_compressed",
            marshal_compressed(&pair_success(container)).unwrap(),
            2,
        ),
        ("corrupt_pair_success_hmac", m(&pair_success(bad_hmac)), 1),
        ("corrupt_pair_success_truncated", truncated, 0),
        ("pair_device", m(&pair_device), 1),
        ("count_result", m(&count), 1),
        ("encrypt_notification", m(&low), 1),
        ("link_code_notification", m(&primary_hello), 2),
        ("companion_hello_response", m(&hello_response), 1),
        ("success", m(&success), 0),
        ("failure_temp_ban", m(&failure), 0),
        ("stream_error_device_removed", m(&removed), 0),
        ("stream_error_ack", m(&ack_error), 0),
        ("iq_error", m(&iq_error), 0),
        ("corrupt_garbage", vec![0x00, 0xF8, 0x7F, 0x01], 0),
    ]
}

#[test]
fn client_stanza_seeds_are_real_and_committed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/client_stanzas");
    let write = std::env::var_os("WAEVENT_WRITE_FUZZ_SEEDS").is_some();
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    }
    for (name, bytes, accepted) in seeds() {
        assert_eq!(stanzas(&bytes), accepted, "{name}");
        let path = dir.join(name);
        if write {
            std::fs::write(&path, &bytes).unwrap();
        } else {
            let committed = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (regenerate the seeds)", path.display()));
            assert_eq!(committed, bytes, "{name} differs from the committed seed");
        }
    }
}
