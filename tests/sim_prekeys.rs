//! The simulator's `encrypt` IQs over a real connection: prekey upload, count, key-bundle
//! fetch (one one-time prekey popped per device, LID and PN addressing, 406 for unknown
//! devices), the SHA-1 key digest, signed-prekey rotation, refusals of malformed or
//! foreign uploads, and the low-count notification with its ack. A fetched bundle of
//! the simulated phone is used to start a real Signal session that the phone's own keys
//! decrypt.

#![cfg(feature = "sim")]

mod sim_util;

use rand::rngs::OsRng;
use sha1::{Digest, Sha1};
use sim_util::{Keys, RawClient, iq};
use waevent::binary::Node;
use waevent::jid::Jid;
use waevent::proto::adv::AdvSignedDeviceIdentity;
use waevent::signal::curve::PublicKey;
use waevent::signal::identity::{PreKeyBundle, PreKeyRecord, SignedPreKeyRecord, generate_prekeys};
use waevent::signal::{
    CiphertextMessage, PreKeySignalMessage, PreKeys, SessionRecord, decrypt_prekey, encrypt,
    initialize_from_bundle,
};
use waevent::sim::stanza::{attr_jid, attr_text, be_uint, child_bytes};
use waevent::sim::{SimConfig, SimServer};

async fn login(sim: &SimServer, phone: &str) -> (RawClient, Jid, Keys) {
    let account = sim.create_account(phone);
    let keys = Keys::generate();
    let jid = sim
        .inject_device(&account.pn(), keys.device_registration())
        .unwrap();
    let mut c = RawClient::connect(
        &sim.url(),
        sim.trust_root(),
        &keys.noise,
        &keys.login_payload(&jid),
    )
    .await
    .unwrap();
    assert_eq!(c.recv().await.unwrap().tag, "success");
    (c, jid, keys)
}

fn key_node(id: u32, key: &PublicKey) -> Node {
    Node::new("key").with_children(vec![
        Node::new("id").with_bytes(id.to_be_bytes()[1..].to_vec()),
        Node::new("value").with_bytes(key.as_bytes().to_vec()),
    ])
}

fn skey_node(s: &SignedPreKeyRecord) -> Node {
    Node::new("skey").with_children(vec![
        Node::new("id").with_bytes(s.id.to_be_bytes()[1..].to_vec()),
        Node::new("value").with_bytes(s.key_pair.public.as_bytes().to_vec()),
        Node::new("signature").with_bytes(s.signature.to_vec()),
    ])
}

fn upload(keys: &Keys, prekeys: &[PreKeyRecord], skey: &SignedPreKeyRecord) -> Node {
    iq(
        "encrypt",
        "set",
        vec![
            Node::new("registration")
                .with_bytes(keys.identity.registration_id.to_be_bytes().to_vec()),
            Node::new("type").with_bytes(vec![5]),
            Node::new("identity").with_bytes(keys.identity.key_pair.public.as_bytes().to_vec()),
            Node::new("list").with_children(
                prekeys
                    .iter()
                    .map(|p| key_node(p.id, &p.key_pair.public))
                    .collect(),
            ),
            skey_node(skey),
        ],
    )
}

async fn count(c: &mut RawClient) -> usize {
    let r = c.iq(iq("encrypt", "get", vec![Node::new("count")])).await;
    attr_text(r.child_by_tag("count").unwrap(), "value")
        .unwrap()
        .parse()
        .unwrap()
}

async fn fetch(c: &mut RawClient, jids: &[Jid]) -> Vec<Node> {
    let users = jids
        .iter()
        .map(|j| Node::new("user").attr("jid", j).attr("reason", "identity"))
        .collect();
    let r = c
        .iq(iq(
            "encrypt",
            "get",
            vec![Node::new("key").with_children(users)],
        ))
        .await;
    assert_eq!(attr_text(&r, "type").as_deref(), Some("result"), "{r}");
    r.child_by_tag("list").unwrap().children().to_vec()
}

fn is_result(r: &Node) -> bool {
    attr_text(r, "type").as_deref() == Some("result")
}

fn error_code(r: &Node) -> Option<String> {
    r.child_by_tag("error")
        .and_then(|e| attr_text(e, "code"))
        .map(|s| s.into_owned())
}

/// A fetched `<user>` as a Signal bundle.
fn bundle_of(user: &Node, device: u32) -> PreKeyBundle {
    let skey = user.child_by_tag("skey").unwrap();
    let key = user.child_by_tag("key");
    PreKeyBundle {
        registration_id: be_uint(child_bytes(user, "registration").unwrap(), 4).unwrap(),
        device_id: device,
        prekey: key.map(|k| {
            (
                be_uint(child_bytes(k, "id").unwrap(), 3).unwrap(),
                PublicKey::from_raw(child_bytes(k, "value").unwrap()).unwrap(),
            )
        }),
        signed_prekey_id: be_uint(child_bytes(skey, "id").unwrap(), 3).unwrap(),
        signed_prekey: PublicKey::from_raw(child_bytes(skey, "value").unwrap()).unwrap(),
        signed_prekey_signature: child_bytes(skey, "signature").unwrap().try_into().unwrap(),
        identity_key: PublicKey::from_raw(child_bytes(user, "identity").unwrap()).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_count_fetch_digest_rotate_and_low_count_notification() {
    let sim = SimServer::start(SimConfig::default()).await.unwrap();
    let (mut a, a_jid, a_keys) = login(&sim, "15552220001").await;
    let (mut b, _, _) = login(&sim, "15552220002").await;

    assert_eq!(count(&mut a).await, 0);
    let prekeys = generate_prekeys(1, 8, &mut OsRng);
    let r = a.iq(upload(&a_keys, &prekeys, &a_keys.signed_prekey)).await;
    assert!(is_result(&r), "{r}");
    assert_eq!(count(&mut a).await, 8);

    // Digest: SHA-1 over identity ‖ skey ‖ skey signature ‖ every pooled prekey.
    let r = a.iq(iq("encrypt", "get", vec![Node::new("digest")])).await;
    let digest = r.child_by_tag("digest").unwrap();
    let mut h = Sha1::new();
    h.update(a_keys.identity.key_pair.public.as_bytes());
    h.update(a_keys.signed_prekey.key_pair.public.as_bytes());
    h.update(a_keys.signed_prekey.signature);
    for p in &prekeys {
        h.update(p.key_pair.public.as_bytes());
    }
    assert_eq!(child_bytes(digest, "hash").unwrap(), &h.finalize()[..]);
    let ids: Vec<u32> = digest
        .child_by_tag("list")
        .unwrap()
        .children()
        .iter()
        .map(|n| be_uint(n.bytes().unwrap(), 3).unwrap())
        .collect();
    assert_eq!(ids, (1..=8).collect::<Vec<_>>());
    assert_eq!(
        be_uint(child_bytes(digest, "registration").unwrap(), 4),
        Some(a_keys.identity.registration_id)
    );

    // B fetches A by PN and by LID device JID: one prekey popped each time.
    let a_lid = sim.registered_devices(&a_jid)[1].lid.clone();
    let users = fetch(&mut b, &[a_jid.clone(), a_lid.clone()]).await;
    assert_eq!(users.len(), 2);
    assert_eq!(attr_jid(&users[0], "jid"), Some(a_jid.clone()));
    assert_eq!(attr_jid(&users[1], "jid"), Some(a_lid));
    for (i, user) in users.iter().enumerate() {
        let bundle = bundle_of(user, 1);
        bundle.verify().unwrap();
        assert_eq!(bundle.identity_key, a_keys.identity.key_pair.public);
        assert_eq!(bundle.registration_id, a_keys.identity.registration_id);
        assert_eq!(bundle.prekey.unwrap().0, prekeys[i].id);
        assert_eq!(bundle.prekey.unwrap().1, prekeys[i].key_pair.public);
        // The companion's ADV identity verifies against the account key.
        let adv =
            AdvSignedDeviceIdentity::decode_from(child_bytes(user, "device-identity").unwrap());
        let account_key = PublicKey::from_raw(adv.account_signature_key.as_ref().unwrap()).unwrap();
        let details = adv.details.clone().unwrap();
        let own = a_keys.identity.key_pair.public;
        assert!(account_key.verify(
            &[&[6u8, 0][..], &details, own.as_bytes()].concat(),
            adv.account_signature.as_ref().unwrap()
        ));
        assert!(
            own.verify(
                &[
                    &[6u8, 1][..],
                    &details,
                    own.as_bytes(),
                    account_key.as_bytes()
                ]
                .concat(),
                adv.device_signature.as_ref().unwrap()
            )
        );
    }
    assert_eq!(count(&mut a).await, 6);

    // Unknown devices are refused per user, not for the whole request.
    let users = fetch(
        &mut b,
        &[
            a_jid.with_device(42),
            Jid::pn_user("19990001111").with_device(0),
        ],
    )
    .await;
    for u in &users {
        assert_eq!(error_code(u).as_deref(), Some("406"));
    }

    // Draining below 5 notifies A once.
    let users = fetch(&mut b, &[a_jid.clone(), a_jid.clone()]).await;
    assert_eq!(users.len(), 2);
    let note = a.recv().await.unwrap();
    assert_eq!(note.tag, "notification");
    assert_eq!(attr_text(&note, "type").as_deref(), Some("encrypt"));
    assert_eq!(
        attr_text(note.child_by_tag("count").unwrap(), "value").as_deref(),
        Some("4")
    );
    let id = attr_text(&note, "id").unwrap().into_owned();
    assert_eq!(sim.unacked_notifications(&a_jid), vec![id.clone()]);
    a.send(
        &Node::new("ack")
            .attr("class", "notification")
            .attr("id", id.as_str())
            .attr("type", "encrypt"),
    )
    .await;
    assert_eq!(count(&mut a).await, 4);
    assert!(sim.unacked_notifications(&a_jid).is_empty());
    // Fetching until empty: no further notification, bundles without <key>.
    for _ in 0..5 {
        fetch(&mut b, std::slice::from_ref(&a_jid)).await;
    }
    let last = fetch(&mut b, std::slice::from_ref(&a_jid)).await;
    assert!(last[0].child_by_tag("key").is_none());
    assert_eq!(count(&mut a).await, 0);
    assert_eq!(sim.force_low_prekey_notification(&a_jid), 1);
    let forced = a.recv().await.unwrap();
    assert_eq!(
        attr_text(forced.child_by_tag("count").unwrap(), "value").as_deref(),
        Some("0")
    );

    // Rotation: the next bundle and digest carry the new signed prekey.
    let rotated = SignedPreKeyRecord::generate(&a_keys.identity.key_pair, 2, 0, &mut OsRng);
    let r = a
        .iq(iq(
            "encrypt",
            "set",
            vec![Node::new("rotate").child(skey_node(&rotated))],
        ))
        .await;
    assert!(is_result(&r), "{r}");
    let user = &fetch(&mut b, std::slice::from_ref(&a_jid)).await[0];
    assert_eq!(bundle_of(user, 1).signed_prekey, rotated.key_pair.public);
    assert_eq!(bundle_of(user, 1).signed_prekey_id, 2);
    assert!(
        sim.protocol_errors().is_empty(),
        "{:?}",
        sim.protocol_errors()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_foreign_uploads_are_refused() {
    let sim = SimServer::start(SimConfig::default()).await.unwrap();
    let (mut a, _, keys) = login(&sim, "15552220003").await;
    let prekeys = generate_prekeys(1, 3, &mut OsRng);
    // Signed prekey signed by another identity.
    let other = Keys::generate();
    let r = a.iq(upload(&keys, &prekeys, &other.signed_prekey)).await;
    assert_eq!(error_code(&r).as_deref(), Some("400"));
    // Another identity than the paired one.
    let r = a.iq(upload(&other, &prekeys, &other.signed_prekey)).await;
    assert_eq!(error_code(&r).as_deref(), Some("406"));
    // A key id that is not 3 bytes.
    let mut bad = upload(&keys, &prekeys, &keys.signed_prekey);
    if let waevent::binary::NodeContent::Nodes(children) = &mut bad.content {
        children[3] = Node::new("list").child(Node::new("key").with_children(vec![
            Node::new("id").with_bytes(vec![1, 2]),
            Node::new("value").with_bytes(vec![0; 32]),
        ]));
    }
    let r = a.iq(bad).await;
    assert_eq!(error_code(&r).as_deref(), Some("400"));
    assert_eq!(
        count(&mut a).await,
        0,
        "nothing stored from refused uploads"
    );
    assert_eq!(
        sim.protocol_errors().len(),
        3,
        "{:?}",
        sim.protocol_errors()
    );
    // Fetch without users.
    let r = a.iq(iq("encrypt", "get", vec![Node::new("key")])).await;
    assert_eq!(error_code(&r).as_deref(), Some("400"));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_from_the_phones_fetched_bundle_decrypts_with_the_phones_own_keys() {
    let sim = SimServer::start(SimConfig::default()).await.unwrap();
    let (mut a, _, a_keys) = login(&sim, "15552220004").await;
    let phone = sim.create_account("15552220005");
    let users = fetch(&mut a, &[phone.lid().with_device(0)]).await;
    assert!(
        users[0].child_by_tag("device-identity").is_none(),
        "primary has no ADV identity"
    );
    let bundle = bundle_of(&users[0], 0);
    let mut session = SessionRecord::new();
    initialize_from_bundle(&mut session, &a_keys.identity, &bundle, &mut OsRng).unwrap();
    let CiphertextMessage::PreKey(bytes) = encrypt(&mut session, b"hello phone").unwrap() else {
        panic!("first message must be a pkmsg");
    };
    let message = PreKeySignalMessage::deserialize(&bytes).unwrap();
    let plain = sim.with_world(|w| {
        let keys = w
            .account(&phone.pn())
            .unwrap()
            .primary_keys()
            .unwrap()
            .clone();
        let one_time = message
            .prekey_id()
            .and_then(|id| keys.prekeys.get(&id).cloned());
        let mut record = SessionRecord::new();
        decrypt_prekey(
            &mut record,
            &keys.identity,
            &message,
            PreKeys {
                signed: Some(&keys.signed_prekey),
                one_time: one_time.as_ref(),
            },
            &mut OsRng,
        )
        .unwrap()
        .plaintext
    });
    assert_eq!(plain, b"hello phone");
    sim.shutdown().await;
}

trait DecodeFrom {
    fn decode_from(bytes: &[u8]) -> Self;
}

impl DecodeFrom for AdvSignedDeviceIdentity {
    fn decode_from(bytes: &[u8]) -> Self {
        prost::Message::decode(bytes).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reuploaded_prekey_id_replaces_the_pooled_key() {
    let sim = SimServer::start(SimConfig::default()).await.unwrap();
    let (mut a, a_jid, keys) = login(&sim, "15552220006").await;
    let first = generate_prekeys(1, 3, &mut OsRng);
    assert!(is_result(
        &a.iq(upload(&keys, &first, &keys.signed_prekey)).await
    ));
    let mut second = generate_prekeys(3, 2, &mut OsRng); // ids 3 and 4
    second.push(generate_prekeys(4, 1, &mut OsRng).remove(0)); // id 4 again: last wins
    assert!(is_result(
        &a.iq(upload(&keys, &second, &keys.signed_prekey)).await
    ));
    let info = &sim.registered_devices(&a_jid)[1];
    assert_eq!(info.prekey_ids, vec![1, 2, 3, 4]);
    let digest = a.iq(iq("encrypt", "get", vec![Node::new("digest")])).await;
    let mut h = Sha1::new();
    h.update(keys.identity.key_pair.public.as_bytes());
    h.update(keys.signed_prekey.key_pair.public.as_bytes());
    h.update(keys.signed_prekey.signature);
    for p in [&first[0], &first[1], &second[0], &second[2]] {
        h.update(p.key_pair.public.as_bytes());
    }
    assert_eq!(
        child_bytes(digest.child_by_tag("digest").unwrap(), "hash").unwrap(),
        &h.finalize()[..]
    );
    sim.shutdown().await;
}
