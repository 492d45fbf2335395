//! waevent's Noise handshake, transport, ClientPayload and handshake/login protobufs
//! against independent implementations:
//!
//! * `tools/interop/noise_responder.py`: a responder built from PyPI `noiseprotocol`'s
//!   SymmetricState/CipherState and X25519/AES-GCM/SHA-256 objects driven in WhatsApp's
//!   order, Google's protobuf runtime, and libsignal's C curve25519 signatures
//!   (`python-axolotl-curve25519`) for the certificate chain. It must accept waevent's
//!   handshake, decrypt its ClientPayload and exchange transport frames both ways; waevent
//!   must accept its ServerHello and certificate chains (and refuse its broken ones).
//! * `tools/interop/noise_wa_proto.js`: WhatsApp's schema as shipped by Baileys 7
//!   (WAProto, compiled by protobufjs). Field numbers, types and enum values of every
//!   message in proto/{wa6,cert,adv,companion}.proto must match it, and real messages must
//!   decode identically in both directions.

#![cfg(feature = "sim")]

// tests/common uses File::lock (Rust 1.89) while Cargo.toml says rust-version 1.85.
mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use prost::Message;
use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, Value as Reflected};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use waevent::noise::client_payload::{
    Login, Registration, device_props, login_payload, registration_payload,
};
use waevent::noise::{
    CertError, CertRole, ClientHandshake, FrameDecoder, HandshakeError, Transport, TrustRoot,
    VerifiedHandshake,
};
use waevent::proto::adv::{
    AdvDeviceIdentity, AdvEncryptionType, AdvKeyIndexList, AdvSignedDeviceIdentity,
    AdvSignedDeviceIdentityHmac, AdvSignedKeyIndexList,
};
use waevent::proto::companion::device_props::PlatformType;
use waevent::proto::wa6::ClientPayload;
use waevent::signal::curve::{KeyPair, PublicKey};
use waevent::sim::certs::{SimCertAuthority, Validity};

const NOW: u64 = 1_790_000_000;

/// The Python responder as a child process speaking JSON lines.
struct PyResponder {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl PyResponder {
    fn spawn() -> Self {
        let py = common::python_env();
        let mut child = Command::new(py)
            .arg(common::interop_dir().join("noise_responder.py"))
            .current_dir(common::interop_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start noise_responder.py");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        PyResponder {
            child,
            stdin,
            stdout,
        }
    }

    fn call(&mut self, req: Value) -> Value {
        writeln!(self.stdin, "{req}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(
            !line.is_empty(),
            "noise_responder.py exited (see its stderr above)"
        );
        serde_json::from_str(&line).unwrap()
    }

    fn feed(&mut self, bytes: &[u8]) -> Value {
        self.call(json!({"cmd": "client_bytes", "hex": hex::encode(bytes)}))
    }
}

impl Drop for PyResponder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hex_field(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(v[key].as_str().unwrap_or_else(|| panic!("no {key} in {v}"))).unwrap()
}

fn registration(rng: &mut StdRng) -> ClientPayload {
    let identity = KeyPair::generate(rng);
    let spk = KeyPair::generate(rng);
    let sig = identity.sign(rng, &spk.public.serialize());
    let mut r = Registration::new(rng.r#gen(), identity.public, 0x00AB_CDEF, spk.public, sig);
    r.device_os = "waevent interop".into();
    registration_payload(&r).unwrap()
}

fn login() -> ClientPayload {
    let mut l = Login::new("5511912345678", 23);
    l.push_name = Some("Interop".into());
    l.login_counter = Some(4);
    login_payload(&l).unwrap()
}

/// Sends `bytes` to the responder in two pieces (the first one never completes anything).
fn feed_split(py: &mut PyResponder, bytes: &[u8], cut: usize) -> Value {
    let (a, b) = bytes.split_at(cut);
    assert_eq!(
        py.feed(a),
        Value::Null,
        "nothing should be complete after {cut} bytes"
    );
    py.feed(b)
}

struct Session {
    server_hello_payload: Vec<u8>,
    client_hello_frame: Vec<u8>,
    client_finish_frame: Vec<u8>,
    client_payload_plaintext: Vec<u8>,
}

/// A full handshake between waevent's initiator and the Python responder serving a chain
/// minted by waevent's simulator CA, then frames both ways.
fn handshake_with_python(
    seed: u64,
    payload: &ClientPayload,
    routing_info: Option<&[u8]>,
) -> Session {
    let mut rng = StdRng::seed_from_u64(seed);
    let ca = SimCertAuthority::generate(&mut rng);
    let server_static = KeyPair::generate(&mut rng);
    let client_static = KeyPair::generate(&mut rng);
    let chain = ca.chain_bytes(
        &server_static.public,
        Validity::days_around(NOW, 7),
        &mut rng,
    );

    let mut py = PyResponder::spawn();
    let setup = py.call(json!({
        "cmd": "setup", "now": NOW,
        "server_static": hex::encode(server_static.private.to_bytes()),
        "cert_chain": hex::encode(&chain),
        "root_public": hex::encode(ca.trust_root().public_key().0),
    }));
    assert_eq!(
        setup["chain_checked"], true,
        "libsignal's C verifier must accept the chain waevent minted"
    );

    let (client, first) = match routing_info {
        None => ClientHandshake::start(&client_static, ca.trust_root(), &mut rng),
        Some(info) => ClientHandshake::start_with_routing_info(
            &client_static,
            ca.trust_root(),
            info,
            &mut rng,
        )
        .unwrap(),
    };
    let reply = feed_split(&mut py, &first, first.len() - 5);
    assert_eq!(
        reply["routing_info"],
        routing_info.map_or(Value::Null, |r| json!(hex::encode(r)))
    );
    let mut decoder = FrameDecoder::new();
    let frames = decoder.push(&hex_field(&reply, "server_hello")).unwrap();
    assert_eq!(frames.len(), 1);
    let verified: VerifiedHandshake = client
        .process_server_hello(&frames[0], NOW)
        .expect("waevent accepts the noiseprotocol responder's ServerHello");
    assert_eq!(verified.server_static(), server_static.public);

    let payload_bytes = payload.encode_to_vec();
    let (finish, mut transport): (Vec<u8>, Transport) = verified.finish(&payload_bytes).unwrap();
    // ClientFinish and two transport frames in one websocket message, split mid-frame.
    let mut stream = finish.clone();
    let node_a = b"\x00<iq id='1'/>".to_vec();
    let node_b = vec![0x42; 70_000];
    stream.extend(transport.encrypt_frame(&node_a).unwrap());
    stream.extend(transport.encrypt_frame(&node_b).unwrap());
    let reply = feed_split(&mut py, &stream, 10);
    assert_eq!(hex_field(&reply, "client_static"), client_static.public.0);
    let decrypted_by_python = hex_field(&reply, "client_payload");
    assert_eq!(decrypted_by_python, payload_bytes);
    let got: Vec<Vec<u8>> = reply["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| hex::decode(f.as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(got, vec![node_a, node_b]);

    for msg in [b"\x00<success/>".to_vec(), vec![7u8; 100_000], vec![]] {
        let frame = hex_field(
            &py.call(json!({"cmd": "send", "hex": hex::encode(&msg)})),
            "frame",
        );
        let mut frames = decoder.push(&frame).unwrap();
        assert_eq!(transport.decrypt_frame(&frames.remove(0)).unwrap(), msg);
    }

    let intro_len = routing_info.map_or(0, |r| 7 + r.len()) + 4;
    Session {
        server_hello_payload: frames[0].clone(),
        client_hello_frame: first[intro_len + 3..].to_vec(),
        client_finish_frame: finish[3..].to_vec(),
        client_payload_plaintext: decrypted_by_python,
    }
}

#[test]
fn noiseprotocol_responder_accepts_registration_handshake_and_transport() {
    let mut rng = StdRng::seed_from_u64(100);
    let payload = registration(&mut rng);
    let s = handshake_with_python(1, &payload, None);
    // The decrypted payload decodes with WhatsApp's schema exactly as waevent built it.
    check_decodes_like_waproto("wa.wa6.ClientPayload", &s.client_payload_plaintext);
    let reg = ClientPayload::decode(s.client_payload_plaintext.as_slice()).unwrap();
    let props = reg.device_pairing_data.unwrap().device_props.unwrap();
    check_decodes_like_waproto("wa.companion.DeviceProps", &props);
    check_decodes_like_waproto("wa.wa6.HandshakeMessage", &s.client_hello_frame);
    check_decodes_like_waproto("wa.wa6.HandshakeMessage", &s.server_hello_payload);
    check_decodes_like_waproto("wa.wa6.HandshakeMessage", &s.client_finish_frame);
}

#[test]
fn noiseprotocol_responder_accepts_login_handshake_with_routing_preintro() {
    let s = handshake_with_python(2, &login(), Some(b"\x08\x08\x10\x02\x18\x01"));
    check_decodes_like_waproto("wa.wa6.ClientPayload", &s.client_payload_plaintext);
    let tree = waproto(json!([{"op": "decode", "type": "ClientPayload",
        "hex": hex::encode(&s.client_payload_plaintext)}]));
    let tree = &tree[0];
    assert_eq!(tree["1"], "5511912345678", "username");
    assert_eq!(tree["18"], 23, "device");
    assert_eq!(tree["3"], true, "passive");
    assert_eq!(tree["33"], true, "pull");
    assert_eq!(tree["7"], "Interop", "pushName");
    assert_eq!(tree["24"], 4, "lc");
    assert_eq!(tree["12"], 1, "connectType WIFI_UNKNOWN");
    assert_eq!(tree["13"], 1, "connectReason USER_ACTIVATED");
    assert_eq!(tree["5"]["1"], 14, "userAgent.platform WEB");
}

/// Runs the handshake against a chain minted by the Python side (libsignal's C signer).
fn python_minted(seed: u64, defect: Option<&str>) -> Result<(), HandshakeError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let server_static = KeyPair::generate(&mut rng);
    let client_static = KeyPair::generate(&mut rng);
    let mut py = PyResponder::spawn();
    let setup = py.call(json!({
        "cmd": "setup", "now": NOW,
        "server_static": hex::encode(server_static.private.to_bytes()),
        "mint": {"defect": defect},
    }));
    assert_eq!(setup["chain_checked"], defect.is_none());
    let root = TrustRoot::new(PublicKey::from_raw(&hex_field(&setup, "root_public")).unwrap());
    // The chain alone, through the verifier, must agree with the handshake's verdict.
    let alone = waevent::noise::verify_cert_chain(
        &hex_field(&setup, "cert_chain"),
        &server_static.public,
        NOW,
        &root,
    );
    let (client, first) = ClientHandshake::start(&client_static, root, &mut rng);
    let reply = py.feed(&first);
    let hello = hex_field(&reply, "server_hello");
    let verified = client.process_server_hello(&hello[3..], NOW);
    assert_eq!(
        verified.as_ref().err().and_then(|e| match e {
            HandshakeError::Certificate(c) => Some(c.clone()),
            _ => None,
        }),
        alone.clone().err()
    );
    let (finish, mut transport) = verified?.finish(&login().encode_to_vec()).unwrap();
    let reply = py.feed(&finish);
    assert_eq!(hex_field(&reply, "client_payload"), login().encode_to_vec());
    let f = hex_field(&py.call(json!({"cmd": "send", "hex": "00"})), "frame");
    assert_eq!(transport.decrypt_frame(&f[3..]).unwrap(), [0]);
    Ok(())
}

#[test]
fn chains_signed_by_libsignal_c_are_verified_and_broken_ones_refused() {
    python_minted(10, None).expect("a valid chain minted with python-axolotl-curve25519");
    match python_minted(11, Some("wrong_root")) {
        Err(HandshakeError::Certificate(CertError::NotSignedByRoot { .. })) => {}
        other => panic!("{other:?}"),
    }
    match python_minted(12, Some("bad_leaf_signature")) {
        Err(HandshakeError::Certificate(CertError::BadLeafSignature { .. })) => {}
        other => panic!("{other:?}"),
    }
    match python_minted(13, Some("expired")) {
        Err(HandshakeError::Certificate(CertError::Expired {
            role: CertRole::Leaf,
            ..
        })) => {}
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------- WAProto ---------------

fn waproto(requests: Value) -> Vec<Value> {
    let out = common::run_node("noise_wa_proto.js", requests.to_string().as_bytes());
    serde_json::from_slice(&out).unwrap()
}

/// Our full name `wa.wa6.ClientPayload.UserAgent` → WAProto's `.proto.ClientPayload.UserAgent`.
fn waproto_name(full_name: &str, package: &str) -> String {
    format!(
        ".proto.{}",
        full_name
            .strip_prefix(package)
            .unwrap()
            .trim_start_matches('.')
    )
}

/// A message as a tree keyed by field number (the format of noise_wa_proto.js).
fn tree(msg: &DynamicMessage) -> Value {
    let mut map = Map::new();
    for (field, value) in msg.fields() {
        map.insert(field.number().to_string(), reflected(value));
    }
    Value::Object(map)
}

fn reflected(v: &Reflected) -> Value {
    match v {
        Reflected::Bool(b) => json!(b),
        Reflected::I32(i) => json!(i),
        Reflected::U32(i) => json!(i),
        Reflected::I64(i) => json!(i.to_string()),
        Reflected::U64(i) => json!(i.to_string()),
        Reflected::F32(f) => json!(f),
        Reflected::F64(f) => json!(f),
        Reflected::String(s) => json!(s),
        Reflected::Bytes(b) => json!(hex::encode(b)),
        Reflected::EnumNumber(n) => json!(n),
        Reflected::Message(m) => tree(m),
        Reflected::List(l) => Value::Array(l.iter().map(reflected).collect()),
        Reflected::Map(_) => panic!("no map fields in these schemas"),
    }
}

fn descriptor(name: &str) -> MessageDescriptor {
    waevent::proto::descriptor_pool()
        .get_message_by_name(name)
        .unwrap_or_else(|| panic!("{name} not in the descriptor pool"))
}

fn package_of(name: &str) -> &'static str {
    ["wa.wa6", "wa.cert", "wa.adv", "wa.companion"]
        .into_iter()
        .find(|p| name.starts_with(p))
        .unwrap()
}

/// Our bytes decode with WAProto to the same values as with our schema, and WAProto's
/// encoding of those values decodes back to the same message here.
fn check_decodes_like_waproto(ours: &str, bytes: &[u8]) {
    let desc = descriptor(ours);
    let their_type = waproto_name(ours, package_of(ours));
    let their_type = their_type.trim_start_matches(".proto.");
    let mine = tree(&DynamicMessage::decode(desc.clone(), bytes).unwrap());
    let results = waproto(json!([
        {"op": "decode", "type": their_type, "hex": hex::encode(bytes)},
        {"op": "encode", "type": their_type, "tree": mine},
    ]));
    assert_eq!(
        results[0], mine,
        "{ours}: WAProto decodes our bytes differently"
    );
    let theirs = hex::decode(results[1]["hex"].as_str().unwrap()).unwrap();
    let back = DynamicMessage::decode(desc, theirs.as_slice()).unwrap();
    assert_eq!(
        tree(&back),
        mine,
        "{ours}: WAProto's bytes decode differently here"
    );
}

fn kind_name(kind: &Kind, package: &str) -> String {
    match kind {
        Kind::Double => "double".into(),
        Kind::Float => "float".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Uint32 => "uint32".into(),
        Kind::Uint64 => "uint64".into(),
        Kind::Sint32 => "sint32".into(),
        Kind::Sint64 => "sint64".into(),
        Kind::Fixed32 => "fixed32".into(),
        Kind::Fixed64 => "fixed64".into(),
        Kind::Sfixed32 => "sfixed32".into(),
        Kind::Sfixed64 => "sfixed64".into(),
        Kind::Bool => "bool".into(),
        Kind::String => "string".into(),
        Kind::Bytes => "bytes".into(),
        Kind::Message(m) => format!("message {}", waproto_name(m.full_name(), package)),
        Kind::Enum(e) => format!("enum {}", waproto_name(e.full_name(), package)),
    }
}

#[test]
fn schema_matches_waproto_field_for_field() {
    let pool = waevent::proto::descriptor_pool();
    let packages = ["wa.wa6", "wa.cert", "wa.adv", "wa.companion"];
    let tops: Vec<MessageDescriptor> = pool
        .all_messages()
        .filter(|m| packages.contains(&m.package_name()) && m.parent_message().is_none())
        .collect();
    let requests: Vec<Value> = tops
        .iter()
        .map(|m| json!({"op": "schema", "type": m.name()}))
        .collect();
    let mut theirs = Map::new();
    for dump in waproto(Value::Array(requests)) {
        theirs.extend(dump.as_object().unwrap().clone());
    }
    let mut checked_fields = 0;
    let mut checked_values = 0;
    for m in pool
        .all_messages()
        .filter(|m| packages.contains(&m.package_name()))
    {
        let package = m.package_name().to_owned();
        let name = waproto_name(m.full_name(), &package);
        let their_fields = theirs
            .get(&name)
            .unwrap_or_else(|| panic!("WAProto has no {name}"))["fields"]
            .as_object()
            .unwrap()
            .clone();
        let mut ours = Map::new();
        for f in m.fields() {
            ours.insert(
                f.number().to_string(),
                json!({"name": f.name().to_lowercase(), "type": kind_name(&f.kind(), &package),
                       "repeated": f.is_list()}),
            );
            checked_fields += 1;
        }
        let their_fields: Map<String, Value> = their_fields
            .into_iter()
            .map(|(k, mut v)| {
                let lower = v["name"].as_str().unwrap().to_lowercase();
                v["name"] = json!(lower);
                (k, v)
            })
            .collect();
        assert_eq!(
            Value::Object(ours),
            Value::Object(their_fields),
            "fields of {name}"
        );
        for e in m.child_enums() {
            let ename = waproto_name(e.full_name(), &package);
            let values: Map<String, Value> = e
                .values()
                .map(|v| (v.name().to_owned(), json!(v.number())))
                .collect();
            checked_values += values.len();
            let their_values = theirs
                .get(&ename)
                .unwrap_or_else(|| panic!("WAProto has no {ename}"))["values"]
                .clone();
            assert_eq!(Value::Object(values), their_values, "values of {ename}");
        }
    }
    // The top-level enum of the ADV package.
    let adv = pool.get_enum_by_name("wa.adv.ADVEncryptionType").unwrap();
    let values: Map<String, Value> = adv
        .values()
        .map(|v| (v.name().to_owned(), json!(v.number())))
        .collect();
    assert_eq!(
        Value::Object(values),
        theirs[".proto.ADVEncryptionType"]["values"]
    );
    assert!(checked_fields > 150, "checked {checked_fields} fields");
    assert!(checked_values > 100, "checked {checked_values} enum values");
}

#[test]
fn cert_adv_and_device_props_bytes_agree_with_waproto_both_ways() {
    let mut rng = StdRng::seed_from_u64(7);
    let ca = SimCertAuthority::generate(&mut rng);
    let server = KeyPair::generate(&mut rng);
    let chain = ca.chain(&server.public, Validity::days_around(NOW, 3), &mut rng);
    check_decodes_like_waproto("wa.cert.CertChain", &chain.encode_to_vec());
    let leaf = chain.leaf.unwrap();
    check_decodes_like_waproto(
        "wa.cert.CertChain.NoiseCertificate.Details",
        leaf.details.as_deref().unwrap(),
    );
    check_decodes_like_waproto(
        "wa.cert.NoiseCertificate.Details",
        &waevent::proto::cert::noise_certificate::Details {
            serial: Some(9),
            issuer: Some("WhatsAppLongTerm1".into()),
            expires: Some(NOW),
            subject: Some("CN=test".into()),
            key: Some(vec![1; 32]),
        }
        .encode_to_vec(),
    );

    let device = AdvDeviceIdentity {
        raw_id: Some(0xDEAD_BEEF),
        timestamp: Some(NOW),
        key_index: Some(3),
        account_type: Some(AdvEncryptionType::E2ee as i32),
        device_type: Some(AdvEncryptionType::Hosted as i32),
    };
    check_decodes_like_waproto("wa.adv.ADVDeviceIdentity", &device.encode_to_vec());
    let signed = AdvSignedDeviceIdentity {
        details: Some(device.encode_to_vec()),
        account_signature_key: Some(vec![2; 32]),
        account_signature: Some(vec![3; 64]),
        device_signature: Some(vec![4; 64]),
    };
    check_decodes_like_waproto("wa.adv.ADVSignedDeviceIdentity", &signed.encode_to_vec());
    let hmac = AdvSignedDeviceIdentityHmac {
        details: Some(signed.encode_to_vec()),
        hmac: Some(vec![5; 32]),
        account_type: Some(AdvEncryptionType::Hosted as i32),
    };
    check_decodes_like_waproto("wa.adv.ADVSignedDeviceIdentityHMAC", &hmac.encode_to_vec());
    let list = AdvKeyIndexList {
        raw_id: Some(77),
        timestamp: Some(NOW),
        current_index: Some(4),
        valid_indexes: vec![0, 2, 4, 300],
        account_type: Some(AdvEncryptionType::E2ee as i32),
    };
    // Both sides write validIndexes packed, so even the bytes are identical.
    let theirs = waproto(json!([{"op": "encode", "type": "ADVKeyIndexList",
        "tree": tree(&DynamicMessage::decode(descriptor("wa.adv.ADVKeyIndexList"),
            list.encode_to_vec().as_slice()).unwrap())}]));
    assert_eq!(theirs[0]["hex"], hex::encode(list.encode_to_vec()));
    check_decodes_like_waproto("wa.adv.ADVKeyIndexList", &list.encode_to_vec());
    let signed_list = AdvSignedKeyIndexList {
        details: Some(list.encode_to_vec()),
        account_signature: Some(vec![6; 64]),
        account_signature_key: Some(vec![7; 32]),
    };
    check_decodes_like_waproto("wa.adv.ADVSignedKeyIndexList", &signed_list.encode_to_vec());

    let props = device_props("Linux", PlatformType::Desktop);
    check_decodes_like_waproto("wa.companion.DeviceProps", &props.encode_to_vec());
}

#[test]
fn waproto_built_messages_decode_here() {
    // Values written by hand in WAProto's terms, encoded by WAProto, decoded by prost.
    let results = waproto(json!([
        {"op": "encode", "type": "ClientPayload", "tree": {
            "1": "18005550100", "3": false, "18": 65535, "33": true, "41": true,
            "5": {"1": 14, "2": {"1": 2, "2": 3000, "3": 1045649367}, "10": 0},
            "6": {"4": 0}, "12": 1, "13": 1, "14": [3, 5], "20": 4, "24": 9,
            "19": {"1": "00000102", "2": "05", "4": "000001"}}},
        {"op": "encode", "type": "HandshakeMessage", "tree": {
            "3": {"1": "11".repeat(32), "2": "22".repeat(48), "3": "33".repeat(90)}}},
        {"op": "encode", "type": "ADVSignedDeviceIdentityHMAC", "tree": {
            "1": "0a0208011a00", "2": "ab".repeat(32), "3": 1}},
        {"op": "encode", "type": "DeviceProps", "tree": {
            "1": "Mac OS", "3": 7, "4": false, "2": {"1": 10, "2": 15, "3": 7},
            "5": {"3": 10240, "4": true, "15": false}}},
    ]));
    let bytes = |i: usize| hex::decode(results[i]["hex"].as_str().unwrap()).unwrap();

    let p = ClientPayload::decode(bytes(0).as_slice()).unwrap();
    assert_eq!(p.username, Some(18_005_550_100));
    assert_eq!(p.passive, Some(false));
    assert_eq!(p.device, Some(65535));
    assert_eq!(p.pull, Some(true));
    assert_eq!(p.lid_db_migrated, Some(true));
    assert_eq!(p.shards, vec![3, 5]);
    assert_eq!(p.product, Some(4)); // WHATSAPP_LID
    assert_eq!(p.lc, Some(9));
    let ua = p.user_agent.unwrap();
    assert_eq!(
        ua.platform(),
        waevent::proto::wa6::client_payload::user_agent::Platform::Web
    );
    assert_eq!(ua.app_version.unwrap().tertiary, Some(1_045_649_367));
    let reg = p.device_pairing_data.unwrap();
    assert_eq!(reg.e_regid, Some(vec![0, 0, 1, 2]));
    assert_eq!(reg.e_keytype, Some(vec![5]));
    assert_eq!(reg.e_skey_id, Some(vec![0, 0, 1]));

    let h = waevent::proto::wa6::HandshakeMessage::decode(bytes(1).as_slice()).unwrap();
    let sh = h.server_hello.unwrap();
    assert_eq!(sh.ephemeral, Some(vec![0x11; 32]));
    assert_eq!(sh.r#static, Some(vec![0x22; 48]));
    assert_eq!(sh.payload, Some(vec![0x33; 90]));
    assert!(h.client_hello.is_none() && h.client_finish.is_none());

    let a = AdvSignedDeviceIdentityHmac::decode(bytes(2).as_slice()).unwrap();
    assert_eq!(a.hmac, Some(vec![0xab; 32]));
    assert_eq!(a.account_type(), AdvEncryptionType::Hosted);

    let d = waevent::proto::companion::DeviceProps::decode(bytes(3).as_slice()).unwrap();
    assert_eq!(d.os.as_deref(), Some("Mac OS"));
    assert_eq!(d.platform_type(), PlatformType::Desktop);
    assert_eq!(d.version.unwrap().secondary, Some(15));
    let h = d.history_sync_config.unwrap();
    assert_eq!(h.storage_quota_mb, Some(10240));
    assert_eq!(h.support_group_history, Some(false));
}
