//! Interop of the Signal engine with independent, deployed implementations:
//!
//! * npm `libsignal@6.0.0` (libsignal-node, the fork WhatsApp libraries run): it decrypts
//!   our pkmsg and msg, and we decrypt its pkmsg and msg, in both session directions,
//!   with out-of-order delivery (`tools/interop/signal_peer.js`);
//! * Baileys 7's `lib/Signal/Group` (pure JS): it decrypts our skmsg after our SKDM, and
//!   we decrypt its skmsg after its SKDM;
//! * Baileys 7's `WAProto` (WhatsApp's schema compiled by protobufjs): our wire bodies
//!   and our session / sender-key records decode with it and re-encode to the same
//!   bytes, and its encodings decode with ours;
//! * PyPI `python-axolotl-curve25519` (libsignal's C curve code): XEdDSA signatures are
//!   byte-identical for the same randomness and verify in both directions
//!   (`tools/interop/signal_xeddsa.py`) — npm libsignal does not verify signed-prekey
//!   signatures, so it cannot catch a wrong XEdDSA.

// tests/common uses File::lock (Rust 1.89) while Cargo.toml declares rust-version 1.85.
#[allow(clippy::incompatible_msrv)]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde_json::{Value, json};
use waevent::signal::{
    CiphertextMessage, KeyPair, LocalIdentity, PreKeyBundle, PreKeySignalMessage, PreKeys,
    PublicKey, SenderKeyDistributionMessage, SenderKeyRecord, SessionRecord, SignedPreKeyRecord,
    decrypt_prekey, decrypt_whisper, encrypt, generate_prekeys, group, initialize_from_bundle,
};

/// The node peer, spoken to one JSON line at a time.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn start() -> Peer {
        let dir = common::node_env();
        let mut child = Command::new("node")
            .arg(dir.join("signal_peer.js"))
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node signal_peer.js");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Peer {
            child,
            stdin,
            stdout,
        }
    }

    fn try_call(&mut self, req: Value) -> Result<Value, String> {
        writeln!(self.stdin, "{req}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad reply {line:?}: {e}"));
        if v["ok"] == true {
            Ok(v)
        } else {
            Err(v["error"].as_str().unwrap_or("?").to_string())
        }
    }

    fn call(&mut self, req: Value) -> Value {
        let op = req["op"].clone();
        self.try_call(req)
            .unwrap_or_else(|e| panic!("peer {op} failed: {e}"))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn unb64(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().unwrap_or_else(|| panic!("not a string: {v}")))
        .unwrap()
}

fn key(v: &Value) -> PublicKey {
    PublicKey::deserialize(&unb64(v)).unwrap()
}

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn text(i: usize) -> Vec<u8> {
    // Plaintexts of varying length, some around the SKDM size (~150 bytes).
    let mut t = format!("message {i} ").into_bytes();
    t.resize(10 + (i * 37) % 180, b'a' + (i % 26) as u8);
    t
}

/// Their bundle as the server would hand it out, checked with our XEdDSA verify
/// (libsignal-node signs with curve25519-js).
fn their_bundle(peer: &mut Peer, with_prekey: bool) -> PreKeyBundle {
    let id = peer.call(json!({"op": "identity"}));
    let keys = peer.call(json!({"op": "prekeys", "signedId": 5, "preKeyIds": [11, 12]}));
    let bundle = PreKeyBundle {
        registration_id: id["registrationId"].as_u64().unwrap() as u32,
        device_id: 1,
        prekey: with_prekey.then(|| (11, key(&keys["preKeys"][0]["pub"]))),
        signed_prekey_id: 5,
        signed_prekey: key(&keys["signed"]["pub"]),
        signed_prekey_signature: unb64(&keys["signed"]["sig"]).try_into().unwrap(),
        identity_key: key(&id["identity"]),
    };
    bundle
        .verify()
        .expect("libsignal-node's signed prekey signature verifies with our XEdDSA");
    bundle
}

#[test]
fn we_start_the_session_libsignal_node_answers() {
    for with_prekey in [true, false] {
        let rng = &mut rng(1 + with_prekey as u64);
        let mut peer = Peer::start();
        let ours = LocalIdentity::generate(rng);
        let bundle = their_bundle(&mut peer, with_prekey);
        let mut record = SessionRecord::new();
        initialize_from_bundle(&mut record, &ours, &bundle, rng).unwrap();
        let us = "15550001111.2"; // our address as the peer stores it

        // Three pkmsgs, delivered 0, 2, 1: they decrypt all (the first builds the session).
        let pk: Vec<CiphertextMessage> = (0..3)
            .map(|i| encrypt(&mut record, &text(i)).unwrap())
            .collect();
        for i in [0usize, 2, 1] {
            assert_eq!(pk[i].enc_type(), "pkmsg");
            let r = peer.call(
                json!({"op": "decrypt", "addr": us, "type": "pkmsg", "body": b64(pk[i].bytes())}),
            );
            assert_eq!(unb64(&r["plaintext"]), text(i), "pkmsg {i}");
        }
        let removed = peer.call(json!({"op": "removedPreKeys"}));
        assert_eq!(
            removed["ids"],
            if with_prekey { json!([11]) } else { json!([]) }
        );
        // A replayed pkmsg is refused by them.
        assert!(
            peer.try_call(
                json!({"op": "decrypt", "addr": us, "type": "pkmsg", "body": b64(pk[1].bytes())})
            )
            .is_err()
        );

        // Their replies (msg); we decrypt them out of order.
        let replies: Vec<Vec<u8>> = (0..4)
            .map(|i| {
                let r = peer
                    .call(json!({"op": "encrypt", "addr": us, "plaintext": b64(&text(100 + i))}));
                assert_eq!(r["type"], "msg");
                unb64(&r["body"])
            })
            .collect();
        for i in [1usize, 3, 0, 2] {
            assert_eq!(
                decrypt_whisper(&mut record, &replies[i], rng).unwrap(),
                text(100 + i)
            );
        }
        assert!(
            decrypt_whisper(&mut record, &replies[2], rng).is_err(),
            "duplicate refused"
        );

        // Now we send plain msgs; several ratchet turns both ways.
        for round in 0..6usize {
            let ours_now: Vec<CiphertextMessage> = (0..3)
                .map(|i| encrypt(&mut record, &text(200 + round * 10 + i)).unwrap())
                .collect();
            for i in [2usize, 0, 1] {
                assert_eq!(ours_now[i].enc_type(), "msg");
                let r = peer.call(json!({"op": "decrypt", "addr": us, "type": "msg", "body": b64(ours_now[i].bytes())}));
                assert_eq!(unb64(&r["plaintext"]), text(200 + round * 10 + i));
            }
            let r = peer
                .call(json!({"op": "encrypt", "addr": us, "plaintext": b64(&text(300 + round))}));
            assert_eq!(
                decrypt_whisper(&mut record, &unb64(&r["body"]), rng).unwrap(),
                text(300 + round)
            );
            record = SessionRecord::deserialize(&record.serialize()).unwrap();
        }
    }
}

#[test]
fn libsignal_node_starts_the_session_we_answer() {
    for with_prekey in [true, false] {
        let rng = &mut rng(10 + with_prekey as u64);
        let mut peer = Peer::start();
        let ours = LocalIdentity::generate(rng);
        let signed = SignedPreKeyRecord::generate(&ours.key_pair, 3, 0, rng);
        let one_time = generate_prekeys(77, 1, rng).remove(0);
        let bundle = json!({
            "identity": b64(&ours.key_pair.public.serialize()),
            "registrationId": ours.registration_id,
            "signed": {"id": 3, "pub": b64(&signed.key_pair.public.serialize()), "sig": b64(&signed.signature)},
            "preKey": if with_prekey { json!({"id": 77, "pub": b64(&one_time.key_pair.public.serialize())}) } else { Value::Null },
        });
        let us = "123456789012345_1.4";
        peer.call(json!({"op": "start", "addr": us, "bundle": bundle}));
        let their_identity = key(&peer.call(json!({"op": "identity"}))["identity"]);

        let pk: Vec<Vec<u8>> = (0..3)
            .map(|i| {
                let r = peer.call(json!({"op": "encrypt", "addr": us, "plaintext": b64(&text(i))}));
                assert_eq!(r["type"], "pkmsg");
                unb64(&r["body"])
            })
            .collect();
        let mut record = SessionRecord::new();
        for (n, i) in [1usize, 0, 2].into_iter().enumerate() {
            let msg = PreKeySignalMessage::deserialize(&pk[i]).unwrap();
            assert_eq!(msg.identity_key(), &their_identity);
            assert_eq!(msg.prekey_id(), with_prekey.then_some(77));
            let needed = record.prekeys_needed(&msg);
            assert_eq!(
                needed.is_some(),
                n == 0,
                "only the first pkmsg needs prekeys"
            );
            let out = decrypt_prekey(
                &mut record,
                &ours,
                &msg,
                PreKeys {
                    signed: Some(&signed),
                    one_time: Some(&one_time),
                },
                rng,
            )
            .unwrap();
            assert_eq!(out.plaintext, text(i));
            assert_eq!(out.new_session, n == 0);
            assert_eq!(
                out.consumed_prekey_id,
                if n == 0 && with_prekey {
                    Some(77)
                } else {
                    None
                }
            );
        }
        // We answer with msgs, out of order; then they answer with msgs.
        for round in 0..5usize {
            let replies: Vec<CiphertextMessage> = (0..3)
                .map(|i| encrypt(&mut record, &text(100 + round * 10 + i)).unwrap())
                .collect();
            for i in [2usize, 1, 0] {
                assert_eq!(replies[i].enc_type(), "msg");
                let r = peer.call(json!({"op": "decrypt", "addr": us, "type": "msg", "body": b64(replies[i].bytes())}));
                assert_eq!(unb64(&r["plaintext"]), text(100 + round * 10 + i));
            }
            let theirs: Vec<Vec<u8>> = (0..2)
                .map(|i| {
                    let r = peer.call(json!({"op": "encrypt", "addr": us, "plaintext": b64(&text(200 + round * 10 + i))}));
                    assert_eq!(r["type"], "msg", "they stop sending pkmsg once we answered");
                    unb64(&r["body"])
                })
                .collect();
            for i in [1usize, 0] {
                assert_eq!(
                    decrypt_whisper(&mut record, &theirs[i], rng).unwrap(),
                    text(200 + round * 10 + i)
                );
            }
        }
    }
}

#[test]
fn sender_keys_with_baileys_group_cipher_both_ways() {
    let rng = &mut rng(20);
    let mut peer = Peer::start();
    let group_id = "120363000000000042@g.us";

    // Ours → theirs: they process our SKDM, then decrypt our skmsgs (with gaps and late).
    let mut own = SenderKeyRecord::new();
    let (skdm, _) = group::create_distribution_message(&mut own, rng).unwrap();
    let our_name = "15550001111_1.2";
    peer.call(json!({"op": "skProcess", "group": group_id, "sender": our_name, "skdm": b64(&skdm.serialize())}));
    let msgs: Vec<Vec<u8>> = (0..60)
        .map(|i| group::encrypt(&mut own, &text(i), rng).unwrap())
        .collect();
    let mut late = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        if i % 5 == 2 {
            late.push(i);
            continue;
        }
        let r = peer.call(
            json!({"op": "skDecrypt", "group": group_id, "sender": our_name, "body": b64(m)}),
        );
        assert_eq!(unb64(&r["plaintext"]), text(i), "skmsg {i}");
    }
    for i in late.into_iter().rev() {
        let r = peer.call(json!({"op": "skDecrypt", "group": group_id, "sender": our_name, "body": b64(&msgs[i])}));
        assert_eq!(unb64(&r["plaintext"]), text(i), "late skmsg {i}");
    }
    // A tampered skmsg of ours is refused by them (signature check).
    let mut forged = msgs[3].clone();
    let n = forged.len();
    forged[n - 10] ^= 1;
    assert!(
        peer.try_call(
            json!({"op": "skDecrypt", "group": group_id, "sender": our_name, "body": b64(&forged)})
        )
        .is_err()
    );

    // Theirs → ours: we process their SKDM and decrypt their skmsgs.
    let their_name = "15550002222.0";
    let r = peer.call(json!({"op": "skCreate", "group": group_id, "sender": their_name}));
    let their_skdm = SenderKeyDistributionMessage::deserialize(&unb64(&r["skdm"])).unwrap();
    let mut theirs = SenderKeyRecord::new();
    group::process_distribution_message(&mut theirs, &their_skdm);
    let bodies: Vec<Vec<u8>> = (0..30)
        .map(|i| unb64(&peer.call(json!({"op": "skEncrypt", "group": group_id, "sender": their_name, "plaintext": b64(&text(500 + i))}))["body"]))
        .collect();
    for i in (0..30).rev() {
        assert_eq!(
            group::decrypt(&mut theirs, &bodies[i]).unwrap(),
            text(500 + i),
            "their skmsg {i}"
        );
    }
    theirs = SenderKeyRecord::deserialize(&theirs.serialize()).unwrap();
    for b in &bodies {
        assert!(group::decrypt(&mut theirs, b).is_err(), "duplicate refused");
    }
}

/// Asks WAProto to decode `body` as `ty`; checks it re-encodes to the same bytes.
fn waproto_roundtrip(peer: &mut Peer, ty: &str, body: &[u8]) -> Value {
    let r = peer.call(json!({"op": "protoDecode", "type": ty, "body": b64(body)}));
    assert_eq!(
        unb64(&r["reencoded"]),
        body,
        "{ty}: protobufjs re-encodes our bytes identically"
    );
    r["json"].clone()
}

#[test]
fn wire_bodies_and_records_match_whatsapp_schema() {
    let rng = &mut rng(30);
    let mut peer = Peer::start();
    let alice = LocalIdentity::generate(rng);
    let bob = LocalIdentity::generate(rng);
    let signed = SignedPreKeyRecord::generate(&bob.key_pair, 0xABCDE, 0, rng);
    let one = generate_prekeys(0xFFFFFF, 1, rng).remove(0);
    let bundle = PreKeyBundle::from_local(&bob, 1, &signed, Some(&one));
    let mut record = SessionRecord::new();
    initialize_from_bundle(&mut record, &alice, &bundle, rng).unwrap();
    let pk = encrypt(&mut record, &[7u8; 150]).unwrap();

    // PreKeySignalMessage and the SignalMessage inside it.
    let json = waproto_roundtrip(&mut peer, "PreKeySignalMessage", &pk.bytes()[1..]);
    assert_eq!(json["preKeyId"], 0xFFFFFF);
    assert_eq!(json["signedPreKeyId"], 0xABCDE);
    assert_eq!(json["registrationId"], alice.registration_id);
    assert_eq!(
        B64.decode(json["identityKey"].as_str().unwrap()).unwrap(),
        alice.key_pair.public.serialize()
    );
    let inner = B64.decode(json["message"].as_str().unwrap()).unwrap();
    let json = waproto_roundtrip(&mut peer, "SignalMessage", &inner[1..inner.len() - 8]);
    assert_eq!(json["counter"], 0);
    assert_eq!(json["previousCounter"], 0);
    assert_eq!(
        B64.decode(json["ciphertext"].as_str().unwrap())
            .unwrap()
            .len(),
        160
    );

    // Sender-key messages.
    let mut own = SenderKeyRecord::new();
    let (skdm, _) = group::create_distribution_message(&mut own, rng).unwrap();
    let json = waproto_roundtrip(
        &mut peer,
        "SenderKeyDistributionMessage",
        &skdm.serialize()[1..],
    );
    assert_eq!(json["id"], skdm.key_id());
    assert_eq!(
        B64.decode(json["signingKey"].as_str().unwrap()).unwrap(),
        skdm.signing_key().serialize()
    );
    let sk = group::encrypt(&mut own, &[1u8; 300], rng).unwrap();
    let json = waproto_roundtrip(&mut peer, "SenderKeyMessage", &sk[1..sk.len() - 64]);
    assert_eq!(json["iteration"], 0);
    // A member's copy of our sender key, with skipped keys (iterations 1 and 2).
    let mut member = SenderKeyRecord::new();
    group::process_distribution_message(&mut member, &skdm);
    let later: Vec<Vec<u8>> = (0..3)
        .map(|_| group::encrypt(&mut own, b"later", rng).unwrap())
        .collect();
    group::decrypt(&mut member, &later[2]).unwrap();

    // Their encodings → our parsers.
    let ratchet = KeyPair::generate(rng).public;
    let r = peer.call(json!({"op": "protoEncode", "type": "SignalMessage", "bytesFields": ["ratchetKey", "ciphertext"],
        "json": {"ratchetKey": b64(&ratchet.serialize()), "counter": 4242, "previousCounter": 17, "ciphertext": b64(&[9u8; 32])}}));
    let mut wire = vec![0x33];
    wire.extend(unb64(&r["body"]));
    wire.extend([0u8; 8]);
    let parsed = waevent::signal::SignalMessage::deserialize(&wire).unwrap();
    assert_eq!(
        (
            parsed.counter(),
            parsed.previous_counter(),
            parsed.ratchet_key()
        ),
        (4242, 17, &ratchet)
    );
    let r = peer.call(json!({"op": "protoEncode", "type": "SenderKeyDistributionMessage", "bytesFields": ["chainKey", "signingKey"],
        "json": {"id": 123456, "iteration": 99, "chainKey": b64(&[5u8; 32]), "signingKey": b64(&ratchet.serialize())}}));
    let mut wire = vec![0x33];
    wire.extend(unb64(&r["body"]));
    let parsed = SenderKeyDistributionMessage::deserialize(&wire).unwrap();
    assert_eq!(
        (parsed.key_id(), parsed.iteration(), parsed.signing_key()),
        (123456, 99, &ratchet)
    );

    // Records: WhatsApp's RecordStructure / SenderKeyRecordStructure read ours; their
    // re-encoding is ours minus our trailing `version` field (15 = 1: bytes 78 01).
    let mut bob_record = SessionRecord::new();
    let msg = PreKeySignalMessage::deserialize(pk.bytes()).unwrap();
    decrypt_prekey(
        &mut bob_record,
        &bob,
        &msg,
        PreKeys {
            signed: Some(&signed),
            one_time: Some(&one),
        },
        rng,
    )
    .unwrap();
    let reply = encrypt(&mut bob_record, b"r").unwrap();
    decrypt_whisper(&mut record, reply.bytes(), rng).unwrap();
    initialize_from_bundle(&mut record, &alice, &bundle, rng).unwrap(); // one archived state
    for _ in 0..3 {
        encrypt(&mut bob_record, b"skip").unwrap();
    }
    // Bob answers on the session Alice just archived: decrypts from her archive.
    let x = encrypt(&mut bob_record, b"x").unwrap();
    assert_eq!(decrypt_whisper(&mut record, x.bytes(), rng).unwrap(), b"x");
    for (ty, ours) in [
        ("RecordStructure", record.serialize()),
        ("RecordStructure", bob_record.serialize()),
        ("SenderKeyRecordStructure", member.serialize()),
    ] {
        let r = peer.call(json!({"op": "protoDecode", "type": ty, "body": b64(&ours)}));
        let mut theirs = unb64(&r["reencoded"]);
        assert_eq!(&ours[ours.len() - 2..], &[0x78, 0x01]);
        assert_eq!(
            theirs,
            &ours[..ours.len() - 2],
            "{ty}: same bytes under WhatsApp's schema"
        );
        theirs.extend([0x78, 0x01]);
        match ty {
            "RecordStructure" => assert_eq!(
                SessionRecord::deserialize(&theirs).unwrap().serialize(),
                ours
            ),
            _ => assert_eq!(
                SenderKeyRecord::deserialize(&theirs).unwrap().serialize(),
                ours
            ),
        }
    }
    let json = peer.call(
        json!({"op": "protoDecode", "type": "RecordStructure", "body": b64(&record.serialize())}),
    )["json"]
        .clone();
    assert_eq!(json["previousSessions"].as_array().unwrap().len(), 1);
    assert_eq!(json["currentSession"]["sessionVersion"], 3);
    assert_eq!(
        B64.decode(
            json["currentSession"]["remoteIdentityPublic"]
                .as_str()
                .unwrap()
        )
        .unwrap(),
        bob.key_pair.public.serialize()
    );
}

#[test]
fn xeddsa_matches_libsignal_c_via_python_axolotl_curve25519() {
    let rng = &mut rng(40);
    let keys: Vec<KeyPair> = (0..64).map(|_| KeyPair::generate(rng)).collect();
    let mut sign = Vec::new();
    let mut verify = Vec::new();
    let mut expect_verify = Vec::new();
    let mut ours = Vec::new();
    let mut sign_bits = [0usize; 2];
    for (i, kp) in keys.iter().enumerate() {
        let mut msg = vec![0u8; i * 3];
        rng.fill_bytes(&mut msg);
        let mut random = [0u8; 64];
        rng.fill_bytes(&mut random);
        let sig = kp.private.sign_with_random(&msg, &random);
        sign_bits[(sig[63] >> 7) as usize] += 1;
        sign.push(json!({"priv": hex::encode(kp.private.to_bytes()), "msg": hex::encode(&msg), "random": hex::encode(random)}));
        verify.push(json!({"pub": hex::encode(kp.public.as_bytes()), "msg": hex::encode(&msg), "sig": hex::encode(sig)}));
        expect_verify.push(true);
        let mut bad = sig;
        bad[(i * 7) % 64] ^= 1 << (i % 8);
        verify.push(json!({"pub": hex::encode(kp.public.as_bytes()), "msg": hex::encode(&msg), "sig": hex::encode(bad)}));
        expect_verify.push(false);
        ours.push((kp.public, msg, sig));
    }
    assert!(
        sign_bits[0] > 0 && sign_bits[1] > 0,
        "both Edwards sign bits exercised"
    );
    let req = json!({"sign": sign, "verify": verify, "public": keys.iter().map(|k| hex::encode(k.private.to_bytes())).collect::<Vec<_>>()});
    let out: Value = serde_json::from_slice(&common::run_python(
        "signal_xeddsa.py",
        req.to_string().as_bytes(),
    ))
    .unwrap();

    let verdicts: Vec<bool> = out["verify"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_bool().unwrap())
        .collect();
    assert_eq!(
        verdicts, expect_verify,
        "libsignal's C verify accepts ours and rejects tampered ones"
    );
    for (i, (public, msg, sig)) in ours.iter().enumerate() {
        let theirs = hex::decode(out["sign"][i].as_str().unwrap()).unwrap();
        assert_eq!(
            &theirs[..],
            &sig[..],
            "signature {i} is byte-identical for the same randomness"
        );
        assert!(public.verify(msg, &theirs));
        assert_eq!(
            hex::decode(out["public"][i].as_str().unwrap()).unwrap(),
            public.as_bytes()
        );
    }

    // Also libsignal-node's curve module (curve25519-js), both directions.
    let mut peer = Peer::start();
    for (i, kp) in keys.iter().take(16).enumerate() {
        let (public, msg, sig) = &ours[i];
        let r = peer.call(json!({"op": "curveVerify", "pub": b64(&public.serialize()), "msg": b64(msg), "sig": b64(sig)}));
        assert_eq!(r["ok"], true);
        let r = peer
            .call(json!({"op": "curveSign", "priv": b64(kp.private.to_bytes().as_slice()), "msg": b64(msg)}));
        assert!(
            kp.public.verify(msg, &unb64(&r["sig"])),
            "curve25519-js signature {i} verifies with ours"
        );
    }
}
