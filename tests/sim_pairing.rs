//! Pairing against the simulator with a raw client whose companion steps are written
//! from PROTOCOL.md §6: QR scan → pair-success → pair-device-sign → 515 → login, the
//! refusals (bad device signature, client error, stale ref, wrong keys, QR without ADV
//! secret), and the pair-code flow with right and wrong codes.

#![cfg(feature = "sim")]

mod sim_util;

use std::time::Duration;

use prost::Message as _;
use rand::rngs::OsRng;
use sim_util::{Keys, RawClient, answer_pair_success, iq, refs_of};
use waevent::binary::Node;
use waevent::jid::Jid;
use waevent::proto::adv::{AdvEncryptionType, AdvSignedDeviceIdentity};
use waevent::signal::curve::KeyPair;
use waevent::sim::pair_code::{
    KeyBundle, adv_secret, seal_key_bundle, unwrap_ephemeral, wrap_ephemeral,
};
use waevent::sim::stanza::{attr_text, child_bytes};
use waevent::sim::{SimConfig, SimError, SimPhone, SimServer};
use zeroize::Zeroizing;

async fn registering(sim: &SimServer, keys: &Keys) -> (RawClient, Vec<String>) {
    let mut c = RawClient::connect(
        &sim.url(),
        sim.trust_root(),
        &keys.noise,
        &keys.registration_payload(),
    )
    .await
    .unwrap();
    let pd = c.recv().await.unwrap();
    let refs = refs_of(&pd);
    let id = attr_text(&pd, "id").unwrap().into_owned();
    c.send(
        &Node::new("iq")
            .attr("to", Jid::server_jid())
            .attr("id", id.as_str())
            .attr("type", "result"),
    )
    .await;
    (c, refs)
}

/// Scans in the background; returns the join handle of the phone's call.
fn scan(phone: &SimPhone, qr: String) -> tokio::task::JoinHandle<Result<Jid, SimError>> {
    let phone = phone.clone();
    tokio::spawn(async move { phone.scan_qr(&qr).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_pairing_registers_the_device_restarts_with_515_and_the_device_logs_in() {
    let sim = SimServer::start(SimConfig::default()).await.unwrap();
    let phone = sim.create_account("15551110000");
    let keys = Keys::generate();
    let (mut c, refs) = registering(&sim, &keys).await;
    // With the wa.me prefix whatsmeow and Baileys render.
    let scanning = scan(
        &phone,
        format!(
            "https://wa.me/settings/linked_devices#{}",
            keys.qr(&refs[0])
        ),
    );

    let ps = c.recv().await.unwrap();
    assert_eq!(ps.tag, "iq");
    assert!(ps.child_by_tag("pair-success").is_some(), "{ps}");
    let platform = ps
        .child_by_tag("pair-success")
        .unwrap()
        .child_by_tag("platform")
        .unwrap();
    assert_eq!(attr_text(platform, "name").as_deref(), Some("android"));
    let (reply, jid, lid, adv) = answer_pair_success(&keys, &ps);
    assert_eq!(jid, phone.pn().with_device(1));
    assert_eq!(lid, phone.lid().with_device(1));
    assert_eq!(adv.key_index, Some(1));
    assert_eq!(adv.account_type, Some(AdvEncryptionType::E2ee as i32));
    c.send(&reply).await;

    let e = c.recv().await.unwrap();
    assert_eq!(e.tag, "stream:error");
    assert_eq!(attr_text(&e, "code").as_deref(), Some("515"));
    assert!(c.recv().await.is_none());
    assert_eq!(scanning.await.unwrap().unwrap(), jid);

    let devices = sim.registered_devices(&phone.pn());
    assert_eq!(devices.len(), 2);
    let d = &devices[1];
    assert_eq!(d.jid, jid);
    assert_eq!(d.lid, lid);
    assert_eq!(d.identity, keys.identity.key_pair.public);
    assert_eq!(d.registration_id, keys.identity.registration_id);
    assert_eq!(d.signed_prekey_id, keys.signed_prekey.id);
    assert_eq!(d.signed_prekey, keys.signed_prekey.key_pair.public);
    assert_eq!(d.key_index, 1);
    assert_eq!(d.platform, "waevent");
    let stored = AdvSignedDeviceIdentity::decode(&d.signed_identity.clone().unwrap()[..]).unwrap();
    assert!(stored.device_signature.is_some());
    assert_eq!(
        stored.account_signature_key.as_deref(),
        Some(&phone.account_key().unwrap().as_bytes()[..])
    );

    // Restart with the login payload.
    let mut c = RawClient::connect(
        &sim.url(),
        sim.trust_root(),
        &keys.noise,
        &keys.login_payload(&jid),
    )
    .await
    .unwrap();
    let s = c.recv().await.unwrap();
    assert_eq!(s.tag, "success");
    assert_eq!(waevent::sim::stanza::attr_jid(&s, "lid"), Some(lid));

    // A second companion gets the next device number and key index.
    let keys2 = Keys::generate();
    let (mut c2, refs2) = registering(&sim, &keys2).await;
    let scanning = scan(&phone, keys2.qr(&refs2[0]));
    let ps = c2.recv().await.unwrap();
    let (reply, jid2, _, adv2) = answer_pair_success(&keys2, &ps);
    assert_eq!((jid2.device, adv2.key_index), (2, Some(2)));
    c2.send(&reply).await;
    assert_eq!(scanning.await.unwrap().unwrap(), jid2);
    assert!(
        sim.protocol_errors().is_empty(),
        "{:?}",
        sim.protocol_errors()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_pair_device_sign_fails_the_scan_and_registers_nothing() {
    let sim = SimServer::start(SimConfig::default()).await.unwrap();
    let phone = sim.create_account("15551110001");
    let keys = Keys::generate();
    let (mut c, refs) = registering(&sim, &keys).await;
    let scanning = scan(&phone, keys.qr(&refs[0]));
    let ps = c.recv().await.unwrap();
    let (reply, _, _, _) = answer_pair_success(&keys, &ps);
    // Keep the account signature key in the reply (companions must strip it).
    let mut tampered = reply.clone();
    let di = tampered.children()[0].children()[0].clone();
    let mut signed = AdvSignedDeviceIdentity::decode(di.bytes().unwrap()).unwrap();
    signed.account_signature_key = Some(phone.account_key().unwrap().as_bytes().to_vec());
    tampered = Node::new("iq")
        .attr("to", Jid::server_jid())
        .attr("type", "result")
        .attr("id", attr_text(&reply, "id").unwrap().as_ref())
        .child(Node::new("pair-device-sign").child(di.with_bytes(signed.encode_to_vec())));
    c.send(&tampered).await;
    let err = scanning.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, SimError::PairingFailed(m) if m.contains("accountSignatureKey")),
        "{err}"
    );
    assert_eq!(sim.registered_devices(&phone.pn()).len(), 1);
    assert!(
        c.recv_within(Duration::from_millis(300))
            .await
            .is_none_or(|n| n.tag != "stream:error")
    );

    // Signed by a key that is not the companion's identity.
    let keys = Keys::generate();
    let (mut c, refs) = registering(&sim, &keys).await;
    let scanning = scan(&phone, keys.qr(&refs[0]));
    let ps = c.recv().await.unwrap();
    let mut forger = keys.clone();
    forger.identity.key_pair = KeyPair::generate(&mut OsRng);
    // The forger cannot even pass the account-signature check with its key, so build
    // the reply with the real keys and then corrupt the device signature.
    let (reply, _, _, _) = answer_pair_success(&keys, &ps);
    let di = reply.children()[0].children()[0].clone();
    let mut signed = AdvSignedDeviceIdentity::decode(di.bytes().unwrap()).unwrap();
    signed.device_signature.as_mut().unwrap()[3] ^= 0x40;
    let bad = Node::new("iq")
        .attr("type", "result")
        .attr("id", attr_text(&reply, "id").unwrap().as_ref())
        .child(Node::new("pair-device-sign").child(di.with_bytes(signed.encode_to_vec())));
    c.send(&bad).await;
    let err = scanning.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, SimError::PairingFailed(m) if m.contains("device signature")),
        "{err}"
    );
    assert_eq!(sim.registered_devices(&phone.pn()).len(), 1);
    assert_eq!(
        sim.protocol_errors().len(),
        2,
        "{:?}",
        sim.protocol_errors()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_error_reply_fails_the_scan() {
    let sim = SimServer::start(SimConfig::default()).await.unwrap();
    let phone = sim.create_account("15551110002");
    let keys = Keys::generate();
    let (mut c, refs) = registering(&sim, &keys).await;
    // The QR carries another ADV secret than the client's: its HMAC check fails.
    let mut wrong = keys.clone();
    wrong.adv_secret = [0x55; 32];
    let scanning = scan(&phone, wrong.qr(&refs[0]));
    let ps = c.recv().await.unwrap();
    let id = attr_text(&ps, "id").unwrap().into_owned();
    c.send(
        &Node::new("iq")
            .attr("to", Jid::server_jid())
            .attr("type", "error")
            .attr("id", id.as_str())
            .child(
                Node::new("error")
                    .attr("code", 401)
                    .attr("text", "hmac-mismatch"),
            ),
    )
    .await;
    let err = scanning.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, SimError::PairingFailed(m) if m.contains("401") && m.contains("hmac-mismatch")),
        "{err}"
    );
    assert_eq!(sim.registered_devices(&phone.pn()).len(), 1);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_foreign_or_secretless_qrs_are_refused_before_anything_is_sent() {
    let sim = SimServer::start(SimConfig::default()).await.unwrap();
    let phone = sim.create_account("15551110003");
    let keys = Keys::generate();
    let (mut c, refs) = registering(&sim, &keys).await;
    // refs[1] is not current yet.
    let err = phone.scan_qr(&keys.qr(&refs[1])).await.unwrap_err();
    assert_eq!(
        err,
        SimError::QrRefNotCurrent {
            reference: refs[1].clone()
        }
    );
    let err = phone.scan_qr(&keys.qr("2@nonexistent")).await.unwrap_err();
    assert!(matches!(err, SimError::QrRefNotCurrent { .. }));
    // Right ref, other keys.
    let other = Keys::generate();
    let err = phone.scan_qr(&other.qr(&refs[0])).await.unwrap_err();
    assert_eq!(err, SimError::QrKeyMismatch { field: "noise key" });
    let mut half = other.clone();
    half.noise = keys.noise.clone();
    let err = phone.scan_qr(&half.qr(&refs[0])).await.unwrap_err();
    assert_eq!(
        err,
        SimError::QrKeyMismatch {
            field: "identity key"
        }
    );
    // What next_qr shows cannot be scanned: it has no ADV secret.
    let shown = sim.next_qr(Duration::from_secs(1)).await.unwrap();
    assert_eq!(
        phone.scan_qr(&shown).await.unwrap_err(),
        SimError::QrWithoutAdvSecret
    );
    assert!(matches!(
        phone.scan_qr("not a qr").await,
        Err(SimError::BadQr(_))
    ));
    // Nothing reached the client.
    assert!(c.recv_within(Duration::from_millis(200)).await.is_none());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_gives_up_when_the_client_never_answers() {
    let sim = SimServer::start(SimConfig {
        pairing_timeout: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let phone = sim.create_account("15551110004");
    let keys = Keys::generate();
    let (mut c, refs) = registering(&sim, &keys).await;
    let err = phone.scan_qr(&keys.qr(&refs[0])).await.unwrap_err();
    assert!(matches!(err, SimError::Timeout { .. }), "{err}");
    assert!(
        c.recv()
            .await
            .unwrap()
            .child_by_tag("pair-success")
            .is_some()
    );
    // The abandoned pairing does not block a new scan.
    let scanning = scan(&phone, keys.qr(&refs[0]));
    let ps = c.recv().await.unwrap();
    let (reply, jid, _, _) = answer_pair_success(&keys, &ps);
    c.send(&reply).await;
    assert_eq!(scanning.await.unwrap().unwrap(), jid);
    sim.shutdown().await;
}

/// The companion's side of the code flow (PROTOCOL.md §6.4) on a raw client.
struct CodeCompanion {
    ephemeral: KeyPair,
    code: String,
    phone: Jid,
}

impl CodeCompanion {
    async fn hello(
        c: &mut RawClient,
        keys: &Keys,
        phone: &Jid,
        code: &str,
    ) -> (CodeCompanion, Node) {
        let ephemeral = KeyPair::generate(&mut OsRng);
        let wrapped = wrap_ephemeral(code, &ephemeral.public, &mut OsRng);
        let reply = c
            .iq(iq(
                "md",
                "set",
                vec![
                    Node::new("link_code_companion_reg")
                        .attr("jid", phone)
                        .attr("stage", "companion_hello")
                        .attr("should_show_push_notification", "true")
                        .with_children(vec![
                            Node::new("link_code_pairing_wrapped_companion_ephemeral_pub")
                                .with_bytes(wrapped.to_vec()),
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
        (
            CodeCompanion {
                ephemeral,
                code: code.to_owned(),
                phone: phone.clone(),
            },
            reply,
        )
    }

    /// Answers primary_hello; returns the companion_finish IQ and the ADV secret.
    fn finish(&self, keys: &Keys, notification: &Node) -> (Node, [u8; 32]) {
        let reg = notification
            .child_by_tag("link_code_companion_reg")
            .unwrap();
        assert_eq!(attr_text(reg, "stage").as_deref(), Some("primary_hello"));
        let wrapped = child_bytes(reg, "link_code_pairing_wrapped_primary_ephemeral_pub").unwrap();
        assert_eq!(wrapped.len(), 80);
        let primary_identity = waevent::signal::curve::PublicKey::from_raw(
            child_bytes(reg, "primary_identity_pub").unwrap(),
        )
        .unwrap();
        let reference = child_bytes(reg, "link_code_pairing_ref").unwrap().to_vec();
        let primary_eph = unwrap_ephemeral(&self.code, wrapped).unwrap();
        let shared = self.ephemeral.agree(&primary_eph);
        let adv_random = Zeroizing::new([0x42u8; 32]);
        let bundle = seal_key_bundle(
            &shared,
            &KeyBundle {
                companion_identity: keys.identity.key_pair.public,
                primary_identity,
                adv_random: adv_random.clone(),
            },
            &mut OsRng,
        );
        let adv = adv_secret(
            &shared,
            &keys.identity.key_pair.agree(&primary_identity),
            &adv_random,
        );
        let node = iq(
            "md",
            "set",
            vec![
                Node::new("link_code_companion_reg")
                    .attr("jid", &self.phone)
                    .attr("stage", "companion_finish")
                    .with_children(vec![
                        Node::new("link_code_pairing_wrapped_key_bundle").with_bytes(bundle),
                        Node::new("companion_identity_public")
                            .with_bytes(keys.identity.key_pair.public.as_bytes().to_vec()),
                        Node::new("link_code_pairing_ref").with_bytes(reference),
                    ]),
            ],
        );
        (node, *adv)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_code_flow_pairs_with_the_right_code_and_fails_with_a_wrong_one() {
    let sim = SimServer::start(SimConfig::default()).await.unwrap();
    let phone = sim.create_account("15551110005");
    assert!(matches!(
        phone.enter_pairing_code("ABCD-EFGH").await,
        Err(SimError::NoPendingCodePairing(_))
    ));

    // Wrong code first.
    let keys = Keys::generate();
    let (mut c, _) = registering(&sim, &keys).await;
    let (companion, reply) = CodeCompanion::hello(&mut c, &keys, &phone.pn(), "2RNV5KXC").await;
    assert_eq!(
        attr_text(&reply, "type").as_deref(),
        Some("result"),
        "{reply}"
    );
    assert!(
        reply
            .child_by_tag("link_code_companion_reg")
            .and_then(|r| child_bytes(r, "link_code_pairing_ref"))
            .is_some()
    );
    assert!(matches!(
        phone.enter_pairing_code("2RNV-5KX").await,
        Err(SimError::BadPairingCode(_))
    ));
    let entering = {
        let phone = phone.clone();
        tokio::spawn(async move { phone.enter_pairing_code("2RNV-5KXD").await })
    };
    let note = c.recv().await.unwrap();
    assert_eq!(note.tag, "notification");
    assert_eq!(
        attr_text(&note, "type").as_deref(),
        Some("link_code_companion_reg")
    );
    let (finish, _) = companion.finish(&keys, &note);
    let r = c.iq(finish).await;
    assert_eq!(attr_text(&r, "type").as_deref(), Some("error"));
    let err = entering.await.unwrap().unwrap_err();
    assert!(
        matches!(&err, SimError::PairingCodeRejected(m) if m.contains("AES-GCM")),
        "{err}"
    );
    assert_eq!(sim.registered_devices(&phone.pn()).len(), 1);

    // The right code, typed in lower case without the dash.
    let (companion, _) = CodeCompanion::hello(&mut c, &keys, &phone.pn(), "7HJKLMNP").await;
    let entering = {
        let phone = phone.clone();
        tokio::spawn(async move { phone.enter_pairing_code("7hjklmnp").await })
    };
    let note = c.recv().await.unwrap();
    c.send(
        &Node::new("ack")
            .attr("class", "notification")
            .attr("id", attr_text(&note, "id").unwrap().as_ref())
            .attr("type", "link_code_companion_reg"),
    )
    .await;
    let (finish, adv) = companion.finish(&keys, &note);
    let r = c.iq(finish).await;
    assert_eq!(attr_text(&r, "type").as_deref(), Some("result"), "{r}");
    let ps = c.recv().await.unwrap();
    let mut with_adv = keys.clone();
    with_adv.adv_secret = adv;
    // answer_pair_success checks the HMAC with the ADV secret derived from the code flow.
    let (reply, jid, _, _) = answer_pair_success(&with_adv, &ps);
    c.send(&reply).await;
    assert_eq!(
        attr_text(&c.recv().await.unwrap(), "code").as_deref(),
        Some("515")
    );
    assert_eq!(entering.await.unwrap().unwrap(), jid);
    assert_eq!(sim.registered_devices(&phone.pn()).len(), 2);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn companion_hello_is_checked() {
    let sim = SimServer::start(SimConfig::default()).await.unwrap();
    let phone = sim.create_account("15551110006");
    let keys = Keys::generate();
    let (mut c, _) = registering(&sim, &keys).await;
    let base = |display: &[u8], auth: Vec<u8>, jid: Jid| {
        iq(
            "md",
            "set",
            vec![
                Node::new("link_code_companion_reg")
                    .attr("jid", jid)
                    .attr("stage", "companion_hello")
                    .with_children(vec![
                        Node::new("link_code_pairing_wrapped_companion_ephemeral_pub")
                            .with_bytes(vec![0; 80]),
                        Node::new("companion_server_auth_key_pub").with_bytes(auth),
                        Node::new("companion_platform_id").with_bytes(b"1".to_vec()),
                        Node::new("companion_platform_display").with_bytes(display.to_vec()),
                        Node::new("link_code_pairing_nonce").with_bytes(vec![0]),
                    ]),
            ],
        )
    };
    let noise = keys.noise.public.as_bytes().to_vec();
    let code = |r: &Node| {
        r.child_by_tag("error")
            .and_then(|e| attr_text(e, "code"))
            .map(|s| s.into_owned())
    };
    let r = c.iq(base(b"Chrome", noise.clone(), phone.pn())).await;
    assert_eq!(code(&r).as_deref(), Some("400"));
    let r = c.iq(base(b"Chrome (Linux)", vec![1; 32], phone.pn())).await;
    assert_eq!(code(&r).as_deref(), Some("400"));
    let r = c
        .iq(base(
            b"Chrome (Linux)",
            noise.clone(),
            Jid::pn_user("19999999999"),
        ))
        .await;
    assert_eq!(code(&r).as_deref(), Some("404"));
    let r = c.iq(base(b"Chrome (Linux)", noise, phone.pn())).await;
    assert_eq!(code(&r), None);
    assert_eq!(
        sim.protocol_errors().len(),
        2,
        "{:?}",
        sim.protocol_errors()
    );
    sim.shutdown().await;
}
