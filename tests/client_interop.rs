//! The client's pairing crypto and stanzas against independent implementations:
//!
//! * ADV (pair-success): a primary phone built from Baileys' WAProto, libsignal-node's
//!   curve25519-js XEdDSA and Node's HMAC (`tools/interop/adv_phone.js`) makes the
//!   device identity container; waevent checks and signs it; the phone checks the reply,
//!   and libsignal's C XEdDSA (`python-axolotl-curve25519`) checks the device signature.
//! * Pairing code: a phone written with PyPI `cryptography`
//!   (`tools/interop/pair_code_phone.py`) unwraps waevent's ephemeral key with the code,
//!   wraps its own, opens waevent's key bundle and derives the same ADV secret.
//! * Stanzas: Baileys 7's WABinary decodes what the client sends (prekey upload,
//!   pair-device-sign, pair error, companion_hello/finish, acks) and encodes what the
//!   server sends (pair-device, pair-success, count, link-code notification, success,
//!   failure, stream errors), which the client's parsers read.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost::Message;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use waevent::binary::json::{node_from_json, node_to_json};
use waevent::binary::{Node, marshal, unmarshal};
use waevent::client::pair_code::{
    CompanionHello, companion_finish, companion_finish_iq, companion_hello_iq,
    parse_companion_hello_response, parse_primary_hello,
};
use waevent::client::pairing::{
    AdvError, PairClientType, device_signature_message, pair_device_sign_reply, pair_error_reply,
    parse_pair_device, parse_pair_success, process_device_identity,
};
use waevent::client::prekeys::{parse_count, upload_iq};
use waevent::client::stanza::{ConnectFailure, StreamError, ack_for, parse_success};
use waevent::jid::Jid;
use waevent::proto::adv::AdvSignedDeviceIdentity;
use waevent::signal::curve::{KeyPair, PublicKey};
use waevent::signal::identity::{SignedPreKeyRecord, generate_prekeys};

fn b64(b: &[u8]) -> String {
    STANDARD.encode(b)
}

fn unb64(v: &Value) -> Vec<u8> {
    STANDARD
        .decode(v.as_str().expect("base64 string"))
        .expect("base64")
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("hex")
}

fn node_js(requests: Value) -> Vec<Value> {
    let out = common::run_node("adv_phone.js", requests.to_string().as_bytes());
    serde_json::from_slice::<Value>(&out)
        .expect("adv_phone.js prints JSON")
        .as_array()
        .expect("array")
        .clone()
}

#[test]
fn adv_pair_success_against_a_libsignal_phone() {
    let mut rng = StdRng::seed_from_u64(11);
    let identity = KeyPair::generate(&mut rng);
    let stranger = KeyPair::generate(&mut rng);
    let adv = [0x5Au8; 32];
    let req = |extra: Value| {
        let mut r = json!({
            "op": "container",
            "advSecret": b64(&adv),
            "companionIdentity": b64(identity.public.as_bytes()),
            "keyIndex": 5,
        });
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    };
    let made = node_js(json!([
        req(json!({})),
        req(json!({"hmacKey": b64(&[0x5B; 32])})),
        req(json!({"signedFor": b64(stranger.public.as_bytes())})),
    ]));

    // Their container → we verify and sign.
    let container = unb64(&made[0]["container"]);
    let signed = process_device_identity(&container, &adv, &identity, &mut rng).unwrap();
    assert_eq!(signed.key_index, 5);
    assert_eq!(
        signed.account_signature_key.as_bytes().to_vec(),
        unb64(&made[0]["accountKey"])
    );
    assert_eq!(
        process_device_identity(&unb64(&made[1]["container"]), &adv, &identity, &mut rng),
        Err(AdvError::HmacMismatch)
    );
    assert_eq!(
        process_device_identity(&unb64(&made[2]["container"]), &adv, &identity, &mut rng),
        Err(AdvError::AccountSignatureMismatch)
    );

    // Our reply (and the stored identity) → they check.
    let check = |bytes: &[u8]| {
        json!({
            "op": "check_reply",
            "reply": b64(bytes),
            "companionIdentity": b64(identity.public.as_bytes()),
            "accountKey": made[0]["accountKey"],
            "details": made[0]["details"],
        })
    };
    let checked = node_js(json!([check(&signed.reply), check(&signed.account)]));
    let reply = &checked[0];
    assert_eq!(reply["hasAccountSignatureKey"], json!(false), "{reply}");
    assert_eq!(reply["detailsEqual"], json!(true));
    assert_eq!(reply["deviceSignatureValid"], json!(true));
    assert_eq!(reply["tamperedSignatureValid"], json!(false));
    assert_eq!(reply["accountSignatureValid"], json!(true));
    assert_eq!(reply["keyIndex"], json!(5));
    assert_eq!(checked[1]["hasAccountSignatureKey"], json!(true));
    assert_eq!(checked[1]["deviceSignatureValid"], json!(true));

    // libsignal's C XEdDSA agrees on the device signature.
    let reply_msg = AdvSignedDeviceIdentity::decode(&signed.reply[..]).unwrap();
    let device_signature = reply_msg.device_signature.unwrap();
    let message = device_signature_message(
        reply_msg.details.as_deref().unwrap(),
        &identity.public,
        &signed.account_signature_key,
    );
    let mut bad = device_signature.clone();
    bad[0] ^= 1;
    let out = common::run_python(
        "signal_xeddsa.py",
        json!({"verify": [
            {"pub": hex::encode(identity.public.as_bytes()), "msg": hex::encode(&message),
             "sig": hex::encode(&device_signature)},
            {"pub": hex::encode(identity.public.as_bytes()), "msg": hex::encode(&message),
             "sig": hex::encode(bad)},
        ]})
        .to_string()
        .as_bytes(),
    );
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["verify"], json!([true, false]));
}

#[test]
fn pair_code_against_a_cryptography_phone() {
    let mut rng = StdRng::seed_from_u64(12);
    let identity = KeyPair::generate(&mut rng);
    let hello = CompanionHello::generate(&mut rng);
    let out = common::run_python(
        "pair_code_phone.py",
        json!([{"op": "hello", "code": hello.code, "wrapped": hex::encode(hello.wrapped_ephemeral)}])
            .to_string()
            .as_bytes(),
    );
    let phone: Value = serde_json::from_slice::<Value>(&out).unwrap()[0].clone();
    // They unwrapped our ephemeral key with the code.
    assert_eq!(
        unhex(&phone["companion_ephemeral"]),
        hello.ephemeral.public.as_bytes().to_vec()
    );

    // We unwrap theirs and wrap the bundle.
    let finish = companion_finish(
        &hello.code,
        &hello.ephemeral,
        &identity,
        &unhex(&phone["wrapped_primary"]),
        &unhex(&phone["primary_identity"]),
        &mut rng,
    )
    .unwrap();
    // A wrong code unwraps another key, so the secret differs.
    let wrong = companion_finish(
        "ZZZZZZZZ",
        &hello.ephemeral,
        &identity,
        &unhex(&phone["wrapped_primary"]),
        &unhex(&phone["primary_identity"]),
        &mut rng,
    )
    .unwrap();

    let out = common::run_python(
        "pair_code_phone.py",
        json!([{
            "op": "finish",
            "code": hello.code,
            "state": phone["state"],
            "companion_ephemeral": phone["companion_ephemeral"],
            "wrapped_bundle": hex::encode(&finish.wrapped_key_bundle),
            "companion_identity": hex::encode(identity.public.as_bytes()),
        }])
        .to_string()
        .as_bytes(),
    );
    let done: Value = serde_json::from_slice::<Value>(&out).unwrap()[0].clone();
    assert_eq!(done["companion_identity_ok"], json!(true), "{done}");
    assert_eq!(done["primary_identity_ok"], json!(true));
    assert_eq!(done["bundle_len"], json!(96));
    assert_eq!(unhex(&done["adv_secret"]), finish.adv_secret.to_vec());
    assert_ne!(unhex(&done["adv_secret"]), wrong.adv_secret.to_vec());
}

fn baileys(request: Value) -> Value {
    let out = common::run_node("binary_roundtrip.js", request.to_string().as_bytes());
    serde_json::from_slice(&out).expect("binary_roundtrip.js prints JSON")
}

#[test]
fn client_stanzas_against_baileys_wabinary() {
    let mut rng = StdRng::seed_from_u64(13);
    let identity = KeyPair::generate(&mut rng);
    let signed_prekey = SignedPreKeyRecord::generate(&identity, 7, 0, &mut rng);
    let prekeys = generate_prekeys(0xFFFFFE, 3, &mut rng); // wraps to 1
    let hello = CompanionHello::generate(&mut rng);
    let phone = Jid::pn_user("5511999999999");
    let noise = PublicKey([9; 32]);
    let finish = companion_finish(
        &hello.code,
        &hello.ephemeral,
        &identity,
        &[1u8; 80],
        KeyPair::generate(&mut rng).public.as_bytes(),
        &mut rng,
    )
    .unwrap();
    let adv = [3u8; 32];

    // What the client sends → Baileys decodes.
    let mut upload = upload_iq(0x1234, &identity.public, &prekeys, &signed_prekey).unwrap();
    upload.attrs.set("id", "u1");
    let signed_identity = {
        let container = node_js(json!([{
            "op": "container", "advSecret": b64(&adv),
            "companionIdentity": b64(identity.public.as_bytes()), "keyIndex": 2,
        }]));
        process_device_identity(
            &unb64(&container[0]["container"]),
            &adv,
            &identity,
            &mut rng,
        )
        .unwrap()
    };
    let group = Jid::parse("120363000000000001@g.us").unwrap();
    let sent = [
        upload,
        pair_device_sign_reply("ps1", &signed_identity),
        pair_error_reply("ps2", 401, "hmac-mismatch"),
        companion_hello_iq(
            &phone,
            &hello,
            &noise,
            PairClientType::Chrome,
            "Chrome (Linux)",
            true,
        ),
        companion_finish_iq(&phone, &finish, &identity.public, b"ref-1"),
        ack_for(
            &Node::new("message")
                .attr("id", "M1")
                .attr("from", group.clone())
                .attr("participant", Jid::parse("123:4@lid").unwrap())
                .attr("type", "text"),
            Some(&Jid::parse("5511999999999:7@s.whatsapp.net").unwrap()),
            None,
        )
        .unwrap(),
    ];
    let hexes: Vec<String> = sent
        .iter()
        .map(|n| hex::encode(marshal(n).unwrap()))
        .collect();
    let decoded = baileys(json!({ "decode": hexes }))["decoded"].clone();
    let decoded = decoded.as_array().unwrap();
    for (ours, theirs) in sent.iter().zip(decoded) {
        assert_eq!(
            &node_to_json(ours),
            theirs,
            "Baileys reads our {}",
            ours.tag
        );
    }
    // Spot checks of the layout as Baileys sees it.
    let up = &decoded[0];
    assert_eq!(up["attrs"]["to"], json!("@s.whatsapp.net"));
    assert_eq!(up["attrs"]["xmlns"], json!("encrypt"));
    assert_eq!(up["content"][0]["content"], json!("00001234"));
    assert_eq!(up["content"][1]["content"], json!("05"));
    let ids: Vec<&Value> = up["content"][3]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["content"][0]["content"])
        .collect();
    assert_eq!(ids, [&json!("fffffe"), &json!("ffffff"), &json!("000001")]);
    assert_eq!(up["content"][4]["content"][0]["content"], json!("000007"));
    let sign = &decoded[1]["content"][0]["content"][0];
    assert_eq!(sign["tag"], json!("device-identity"));
    assert_eq!(sign["attrs"]["key-index"], json!("2"));
    let hello_reg = &decoded[3]["content"][0];
    assert_eq!(
        hello_reg["attrs"]["jid"],
        json!("5511999999999@s.whatsapp.net")
    );
    assert_eq!(hello_reg["attrs"]["stage"], json!("companion_hello"));
    assert_eq!(
        hello_reg["content"][0]["content"],
        json!(hex::encode(hello.wrapped_ephemeral))
    );
    assert_eq!(hello_reg["content"][2]["content"], json!("31")); // "1" = Chrome
    let ack = &decoded[5];
    assert_eq!(ack["attrs"]["class"], json!("message"));
    assert_eq!(ack["attrs"]["participant"], json!("123:4@lid"));

    // What the server sends, encoded by Baileys → the client's parsers.
    let container = node_js(json!([{
        "op": "container", "advSecret": b64(&adv),
        "companionIdentity": b64(identity.public.as_bytes()), "keyIndex": 9,
    }]));
    let container_hex = hex::encode(unb64(&container[0]["container"]));
    let server = json!([
        {"tag": "iq", "attrs": {"from": "@s.whatsapp.net", "type": "set", "id": "pd1", "xmlns": "md"},
         "content": [{"tag": "pair-device", "attrs": {}, "content": [
            {"tag": "ref", "attrs": {}, "content": hex::encode("2@AAAA")},
            {"tag": "ref", "attrs": {}, "content": {"string": "2@BBBB"}}]}]},
        {"tag": "iq", "attrs": {"from": "@s.whatsapp.net", "type": "result", "id": "ps9", "t": "1700000001"},
         "content": [{"tag": "pair-success", "attrs": {}, "content": [
            {"tag": "device-identity", "attrs": {}, "content": container_hex},
            {"tag": "device", "attrs": {"jid": "5511999999999:3@s.whatsapp.net", "lid": "876543210:3@lid"}, "content": null},
            {"tag": "platform", "attrs": {"name": "android"}, "content": null},
            {"tag": "biz", "attrs": {"name": "Acme"}, "content": null}]}]},
        {"tag": "iq", "attrs": {"from": "@s.whatsapp.net", "type": "result", "id": "c1"},
         "content": [{"tag": "count", "attrs": {"value": "4"}, "content": null}]},
        {"tag": "notification", "attrs": {"from": "@s.whatsapp.net", "type": "link_code_companion_reg", "id": "n1"},
         "content": [{"tag": "link_code_companion_reg", "attrs": {}, "content": [
            {"tag": "link_code_pairing_ref", "attrs": {}, "content": hex::encode("ref-1")},
            {"tag": "link_code_pairing_wrapped_primary_ephemeral_pub", "attrs": {}, "content": hex::encode([7u8; 80])},
            {"tag": "primary_identity_pub", "attrs": {}, "content": hex::encode([8u8; 32])}]}]},
        {"tag": "iq", "attrs": {"from": "@s.whatsapp.net", "type": "result", "id": "h1"},
         "content": [{"tag": "link_code_companion_reg", "attrs": {}, "content": [
            {"tag": "link_code_pairing_ref", "attrs": {}, "content": hex::encode("ref-1")}]}]},
        {"tag": "success", "attrs": {"t": "1700000002", "lid": "876543210:3@lid", "props": "1"}, "content": null},
        {"tag": "failure", "attrs": {"reason": "401", "location": "frc"}, "content": null},
        {"tag": "stream:error", "attrs": {"code": "515"}, "content": null},
        {"tag": "stream:error", "attrs": {}, "content": [{"tag": "conflict", "attrs": {"type": "replaced"}, "content": null}]},
        {"tag": "stream:error", "attrs": {"code": "401"}, "content": [{"tag": "conflict", "attrs": {"type": "device_removed"}, "content": null}]},
    ]);
    let encoded = baileys(json!({ "encode": server }))["encoded"].clone();
    let nodes: Vec<Node> = encoded
        .as_array()
        .unwrap()
        .iter()
        .map(|h| unmarshal(&unhex(h)).expect("we decode Baileys' bytes"))
        .collect();
    for (node, want) in nodes.iter().zip(server.as_array().unwrap()) {
        // Baileys' string content arrives as bytes; everything else must match exactly.
        let mut want = want.clone();
        if want["content"][0]["tag"] == json!("pair-device") {
            want["content"][0]["content"][1]["content"] = json!(hex::encode("2@BBBB"));
        }
        assert_eq!(node, &node_from_json(&want).unwrap());
    }
    assert_eq!(parse_pair_device(&nodes[0]).unwrap(), ["2@AAAA", "2@BBBB"]);
    let ps = parse_pair_success(&nodes[1]).unwrap();
    assert_eq!(ps.jid.to_string(), "5511999999999:3@s.whatsapp.net");
    assert_eq!(ps.lid.as_ref().unwrap().to_string(), "876543210:3@lid");
    assert_eq!(
        (ps.platform.as_str(), ps.business_name.as_str()),
        ("android", "Acme")
    );
    assert_eq!(ps.server_time, Some(1_700_000_001));
    let signed = process_device_identity(&ps.device_identity, &adv, &identity, &mut rng).unwrap();
    assert_eq!(signed.key_index, 9);
    assert_eq!(parse_count(&nodes[2]), Ok(4));
    let primary = parse_primary_hello(&nodes[3]).unwrap();
    assert_eq!(primary.pairing_ref, b"ref-1");
    assert_eq!(primary.wrapped_primary_ephemeral, [7u8; 80]);
    assert_eq!(parse_companion_hello_response(&nodes[4]).unwrap(), b"ref-1");
    let success = parse_success(&nodes[5]);
    assert_eq!(success.lid.unwrap().to_string(), "876543210:3@lid");
    assert_eq!(success.server_time, Some(1_700_000_002));
    assert!(ConnectFailure::parse(&nodes[6]).is_logged_out());
    assert_eq!(
        StreamError::classify(&nodes[7]),
        StreamError::RestartRequired
    );
    assert_eq!(StreamError::classify(&nodes[8]), StreamError::Replaced);
    assert!(matches!(
        StreamError::classify(&nodes[9]),
        StreamError::DeviceRemoved { .. }
    ));
}
