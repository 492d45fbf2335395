//! The simulated phone's pairing bytes against independent implementations
//! (`tools/interop/sim_pairing.js`: Baileys 7's WAProto for the ADV protobufs, npm
//! `libsignal`'s curve25519-js XEdDSA and X25519, node's crypto for HMAC, PBKDF2,
//! AES-CTR, AES-GCM and HKDF), over the simulator's real sockets, in both directions:
//!
//! * QR: the sim's `pair-success` identity → node checks the HMAC with the ADV secret,
//!   decodes the identity with WAProto and verifies the account signature (and refuses
//!   a tampered one); node's `pair-device-sign` (WAProto-encoded, curve25519-js device
//!   signature) → the sim accepts it and registers the device.
//! * Pair code: node wraps the companion ephemeral with the code → the phone unwraps it;
//!   the phone's wrapped ephemeral → node unwraps it, seals the key bundle and derives
//!   the ADV secret → the phone opens the bundle, and its `pair-success` HMAC verifies
//!   with node's ADV secret.

#![cfg(feature = "sim")]

mod common;
mod sim_util;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use sim_util::{Keys, RawClient, iq, refs_of};
use waevent::binary::Node;
use waevent::jid::Jid;
use waevent::sim::stanza::{attr_text, child_bytes};
use waevent::sim::{SimConfig, SimServer};

/// The node script can take tens of seconds on a loaded machine; the phone must not
/// give up on the client meanwhile.
async fn patient_sim() -> SimServer {
    SimServer::start(SimConfig {
        pairing_timeout: std::time::Duration::from_secs(600),
        qr: waevent::sim::QrSchedule {
            first: std::time::Duration::from_secs(600),
            ..Default::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

async fn node(request: Value) -> Value {
    let input = serde_json::to_vec(&request).unwrap();
    let out = tokio::task::spawn_blocking(move || common::run_node("sim_pairing.js", &input))
        .await
        .unwrap();
    serde_json::from_slice(&out).unwrap()
}

fn bytes(v: &Value, key: &str) -> Vec<u8> {
    B64.decode(v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}")))
        .unwrap()
}

/// Node answers a pair-success; returns the pair-device-sign IQ and node's findings.
async fn node_reply(keys: &Keys, pair_success: &Node) -> (Node, Value) {
    let ps = pair_success.child_by_tag("pair-success").unwrap();
    let v = node(json!({
        "op": "companion_reply",
        "device_identity": B64.encode(child_bytes(ps, "device-identity").unwrap()),
        "adv_secret": B64.encode(keys.adv_secret),
        "identity_priv": B64.encode(keys.identity.key_pair.private.to_bytes()),
        "identity_pub": B64.encode(keys.identity.key_pair.public.as_bytes()),
    }))
    .await;
    let reply = Node::new("iq")
        .attr("to", Jid::server_jid())
        .attr("type", "result")
        .attr("id", attr_text(pair_success, "id").unwrap().as_ref())
        .child(
            Node::new("pair-device-sign").child(
                Node::new("device-identity")
                    .attr("key-index", v["key_index"].as_u64().unwrap())
                    .with_bytes(bytes(&v, "reply")),
            ),
        );
    (reply, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_pairing_bytes_agree_with_waproto_and_libsignal() {
    let sim = patient_sim().await;
    let phone = sim.create_account("15553330001");
    let keys = Keys::generate();
    let mut c = RawClient::connect(
        &sim.url(),
        sim.trust_root(),
        &keys.noise,
        &keys.registration_payload(),
    )
    .await
    .unwrap();
    let refs = refs_of(&c.recv().await.unwrap());
    let scanning = {
        let phone = phone.clone();
        let qr = keys.qr(&refs[0]);
        tokio::spawn(async move { phone.scan_qr(&qr).await })
    };
    let ps = c.recv().await.unwrap();
    let (reply, v) = node_reply(&keys, &ps).await;
    assert_eq!(v["hmac_ok"], true, "{v}");
    assert_eq!(v["account_sig_ok"], true, "{v}");
    assert_eq!(v["account_sig_tampered_ok"], false, "{v}");
    assert_eq!(v["key_index"], 1);
    assert_eq!(v["account_type"], 0);
    assert_eq!(
        bytes(&v, "account_key"),
        phone.account_key().unwrap().as_bytes()
    );
    let t = v["timestamp"].as_u64().unwrap();
    assert!(t > 1_700_000_000);
    c.send(&reply).await;
    let e = c.recv().await.unwrap();
    assert_eq!(attr_text(&e, "code").as_deref(), Some("515"), "{e}");
    let jid = scanning.await.unwrap().unwrap();
    assert_eq!(jid, phone.pn().with_device(1));
    assert_eq!(sim.registered_devices(&jid)[1].key_index, 1);
    assert!(
        sim.protocol_errors().is_empty(),
        "{:?}",
        sim.protocol_errors()
    );

    // Node's HMAC check fails with another ADV secret (the check can fail).
    let keys2 = Keys::generate();
    let mut c2 = RawClient::connect(
        &sim.url(),
        sim.trust_root(),
        &keys2.noise,
        &keys2.registration_payload(),
    )
    .await
    .unwrap();
    let refs2 = refs_of(&c2.recv().await.unwrap());
    let mut wrong = keys2.clone();
    wrong.adv_secret = [7; 32];
    let scanning = {
        let phone = phone.clone();
        let qr = wrong.qr(&refs2[0]);
        tokio::spawn(async move { phone.scan_qr(&qr).await })
    };
    let ps = c2.recv().await.unwrap();
    let (_, v) = node_reply(&keys2, &ps).await;
    assert_eq!(v["hmac_ok"], false, "{v}");
    drop(c2);
    assert!(scanning.await.unwrap().is_err());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_code_crypto_agrees_with_node_crypto_in_both_directions() {
    let sim = patient_sim().await;
    let phone = sim.create_account("15553330002");
    let keys = Keys::generate();
    let mut c = RawClient::connect(
        &sim.url(),
        sim.trust_root(),
        &keys.noise,
        &keys.registration_payload(),
    )
    .await
    .unwrap();
    c.recv().await.unwrap();
    let code = "V4RNXK8Q";
    let hello = node(json!({"op": "code_hello", "code": code})).await;
    // Their wrap → our unwrap.
    assert_eq!(
        waevent::sim::pair_code::unwrap_ephemeral(code, &bytes(&hello, "wrapped"))
            .unwrap()
            .as_bytes()[..],
        bytes(&hello, "eph_pub")[..]
    );
    let r = c
        .iq(iq(
            "md",
            "set",
            vec![
                Node::new("link_code_companion_reg")
                    .attr("jid", phone.pn())
                    .attr("stage", "companion_hello")
                    .attr("should_show_push_notification", "true")
                    .with_children(vec![
                        Node::new("link_code_pairing_wrapped_companion_ephemeral_pub")
                            .with_bytes(bytes(&hello, "wrapped")),
                        Node::new("companion_server_auth_key_pub")
                            .with_bytes(keys.noise.public.as_bytes().to_vec()),
                        Node::new("companion_platform_id").with_bytes(b"1".to_vec()),
                        Node::new("companion_platform_display")
                            .with_bytes(b"Chrome (Linux)".to_vec()),
                        Node::new("link_code_pairing_nonce").with_bytes(vec![0]),
                    ]),
            ],
        ))
        .await;
    assert_eq!(attr_text(&r, "type").as_deref(), Some("result"), "{r}");
    let entering = {
        let phone = phone.clone();
        tokio::spawn(async move { phone.enter_pairing_code("V4RN-XK8Q").await })
    };
    let note = c.recv().await.unwrap();
    let reg = note.child_by_tag("link_code_companion_reg").unwrap();
    let reference = child_bytes(reg, "link_code_pairing_ref").unwrap().to_vec();
    // Our wrap → their unwrap, bundle and ADV secret.
    let finish = node(json!({
        "op": "code_finish",
        "code": code,
        "eph_priv": hello["eph_priv"],
        "identity_priv": B64.encode(keys.identity.key_pair.private.to_bytes()),
        "identity_pub": B64.encode(keys.identity.key_pair.public.as_bytes()),
        "wrapped_primary": B64.encode(child_bytes(reg, "link_code_pairing_wrapped_primary_ephemeral_pub").unwrap()),
        "primary_identity": B64.encode(child_bytes(reg, "primary_identity_pub").unwrap()),
    }))
    .await;
    assert_eq!(
        child_bytes(reg, "primary_identity_pub").unwrap(),
        phone.account_key().unwrap().as_bytes()
    );
    let r = c
        .iq(iq(
            "md",
            "set",
            vec![
                Node::new("link_code_companion_reg")
                    .attr("jid", phone.pn())
                    .attr("stage", "companion_finish")
                    .with_children(vec![
                        Node::new("link_code_pairing_wrapped_key_bundle")
                            .with_bytes(bytes(&finish, "bundle")),
                        Node::new("companion_identity_public")
                            .with_bytes(keys.identity.key_pair.public.as_bytes().to_vec()),
                        Node::new("link_code_pairing_ref").with_bytes(reference),
                    ]),
            ],
        ))
        .await;
    assert_eq!(attr_text(&r, "type").as_deref(), Some("result"), "{r}");
    // The phone's pair-success is HMAC'd with the ADV secret node derived.
    let ps = c.recv().await.unwrap();
    let mut with_adv = keys.clone();
    with_adv.adv_secret = bytes(&finish, "adv_secret").try_into().unwrap();
    let (reply, v) = node_reply(&with_adv, &ps).await;
    assert_eq!(v["hmac_ok"], true, "{v}");
    assert_eq!(v["account_sig_ok"], true, "{v}");
    c.send(&reply).await;
    assert_eq!(
        attr_text(&c.recv().await.unwrap(), "code").as_deref(),
        Some("515")
    );
    assert_eq!(entering.await.unwrap().unwrap(), phone.pn().with_device(1));
    sim.shutdown().await;
}
