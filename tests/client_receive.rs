//! The receive pipeline end to end through a real client connection: a server (the
//! simulator's Noise responder, scripted here) hands the client `<message>` stanzas
//! that group members encrypted with the crate's Signal code, and checks what the
//! client answers — delivery receipt and ack after the state is stored, retry receipts
//! (with keys that let the member start a new session) for what it cannot decrypt,
//! no second retry past the limit, acks for receipts and notifications.

mod receive_support;

use std::sync::Arc;

use prost::Message as _;
use rand::SeedableRng;
use rand::rngs::StdRng;
use waevent::binary::Node;
use waevent::client::receive::MAX_RETRY_RECEIPTS;
use waevent::client::receive_support::{LocalDevice, Member, SEED_GROUP, text_with_secret};
use waevent::client::{Client, ConnectionState, MessageHandler, MessageOutcome};
use waevent::proto::e2e;
use waevent::signal::ProtocolAddress;
use waevent::store::Store;

use receive_support::*;

struct Setup {
    client: Client,
    conn: Conn,
    store: Arc<dyn Store>,
    local: LocalDevice,
    rng: StdRng,
}

async fn setup() -> Setup {
    let server = Server::start().await;
    let local = LocalDevice::fixed();
    let store: Arc<dyn Store> = Arc::new(local.store().await);
    let (client, _events) = Client::new(store.clone(), server.config());
    let (connected, mut conn) = tokio::join!(client.connect(), server.accept());
    connected.unwrap();
    conn.login().await;
    client
        .wait_for_state(ConnectionState::LoggedIn, WAIT)
        .await
        .unwrap();
    // The server keeps listening for reconnects in the background of the test.
    std::mem::forget(server);
    Setup {
        client,
        conn,
        store,
        local,
        rng: StdRng::seed_from_u64(21),
    }
}

fn is_ack(n: &Node) -> bool {
    n.tag == "ack" && n.attr_str("class") == Some("message") && n.get_attr("error").is_none()
}

/// Expects the delivery receipt, then the ack, of message `id`.
async fn expect_delivered(conn: &mut Conn, id: &str) {
    let receipt = conn.next_about(id).await;
    assert_eq!(receipt.tag, "receipt", "{receipt}");
    assert_eq!(receipt.attr_str("type"), Some("inactive"), "{receipt}");
    assert_eq!(receipt.attr_jid("to"), Some(&jid(SEED_GROUP)));
    let ack = conn.next_about(id).await;
    assert!(is_ack(&ack), "{ack}");
}

#[tokio::test]
async fn members_messages_are_stored_receipted_and_acked() {
    let Setup {
        client,
        mut conn,
        store,
        local,
        mut rng,
    } = setup().await;
    let group = jid(SEED_GROUP);
    let mut member = Member::new(
        jid("70000001:2@lid"),
        Some(jid("5511700000001:2@s.whatsapp.net")),
        &mut rng,
    );
    member
        .start_session(&local.bundle(Some(2)), &mut rng)
        .unwrap();

    // pkmsg with the sender key + skmsg with an event-like message secret.
    let first = member
        .group_stanza(
            &group,
            "3EB0R1",
            &text_with_secret("card", [9; 32]),
            true,
            &mut rng,
        )
        .unwrap();
    conn.send(&first).await;
    expect_delivered(&mut conn, "3EB0R1").await;
    // Stored before the ack: the secret (by the member's LID user), the LID mapping,
    // the used one-time prekey is gone.
    let secret = store
        .message_secret(&group, &jid("70000001@lid"), "3EB0R1")
        .await
        .unwrap()
        .expect("message secret stored");
    assert_eq!(secret.secret.as_bytes(), &[9; 32]);
    assert_eq!(
        store
            .lid_for_pn(&jid("5511700000001:2@s.whatsapp.net"))
            .await
            .unwrap(),
        Some(jid("70000001:2@lid"))
    );
    assert_eq!(store.load_prekey(2).await.unwrap(), None);

    // The next one is an skmsg alone.
    let second = member
        .group_stanza(
            &group,
            "3EB0R2",
            &text_with_secret("more", [8; 32]),
            false,
            &mut rng,
        )
        .unwrap();
    conn.send(&second).await;
    expect_delivered(&mut conn, "3EB0R2").await;
    // A redelivery (our ack was lost) is receipted again from the stored plaintext.
    conn.send(&second).await;
    expect_delivered(&mut conn, "3EB0R2").await;

    // The member reinstalls WhatsApp (same device, new identity): its new session is
    // accepted and the new identity recorded, as WhatsApp's clients do.
    let old_identity = *member.identity.public_key();
    let mut reinstalled = Member::new(member.device.clone(), None, &mut rng);
    reinstalled
        .start_session(&local.bundle(Some(1)), &mut rng)
        .unwrap();
    let after = reinstalled
        .group_stanza(
            &group,
            "3EB0R3",
            &text_with_secret("new phone", [7; 32]),
            true,
            &mut rng,
        )
        .unwrap();
    // Straight through a handler, to see its outcome.
    let outcome = MessageHandler::new().handle_message(&client, &after).await;
    assert_eq!(
        outcome,
        MessageOutcome::Delivered {
            delivered: 1,
            redelivered: 0,
            duplicates: 0,
            changed_identities: vec![ProtocolAddress::from_jid(&member.device)],
        }
    );
    expect_delivered(&mut conn, "3EB0R3").await;
    let stored = store
        .load_identities(&[ProtocolAddress::from_jid(&member.device)])
        .await
        .unwrap();
    assert_eq!(stored, vec![Some(*reinstalled.identity.public_key())]);
    assert_ne!(old_identity, *reinstalled.identity.public_key());

    // Receipts and notifications are acked; retry receipts and fan-out notifications
    // go through the send pipeline first.
    for (tag, kind) in [
        ("receipt", "retry"),
        ("receipt", "read"),
        ("notification", "devices"),
        ("notification", "w:gp2"),
        ("notification", "account_sync"),
    ] {
        let id = format!("{tag}-{kind}");
        conn.send(
            &Node::new(tag)
                .attr("from", group.clone())
                .attr("id", id.as_str())
                .attr("type", kind),
        )
        .await;
        let ack = conn.next_about(&id).await;
        assert_eq!(ack.tag, "ack");
        assert_eq!(ack.attr_str("class"), Some(tag));
    }

    // A malformed message stanza is nacked (487), not dropped.
    conn.send(
        &Node::new("message")
            .attr("from", group.clone())
            .attr("id", "3EB0BAD")
            .attr("t", "1"),
    )
    .await;
    let nack = conn.next_about("3EB0BAD").await;
    assert_eq!(nack.tag, "ack");
    assert_eq!(nack.attr_str("error"), Some("487"));
    client.disconnect().await;
}

#[tokio::test]
async fn an_undecryptable_message_is_recovered_through_a_retry_receipt() {
    let Setup {
        client,
        mut conn,
        local,
        mut rng,
        ..
    } = setup().await;
    let group = jid(SEED_GROUP);
    // A member whose sender key never reached us (its SKDM went missing).
    let mut member = Member::new(jid("70000002:1@lid"), None, &mut rng);
    member
        .start_session(&local.bundle(Some(3)), &mut rng)
        .unwrap();
    member.skdm_message(&group, &mut rng).unwrap();
    let content = text_with_secret("lost card", [4; 32]);
    let lost = member
        .group_stanza(&group, "3EB0LOST", &content, false, &mut rng)
        .unwrap();
    conn.send(&lost).await;
    let retry = conn.next_about("3EB0LOST").await;
    assert_eq!(retry.tag, "receipt", "{retry}");
    assert_eq!(retry.attr_str("type"), Some("retry"));
    assert_eq!(retry.attr_jid("to"), Some(&group));
    assert_eq!(retry.attr_jid("participant"), Some(&member.device));
    let r = retry.child_by_tag("retry").unwrap();
    assert_eq!(r.attr_str("count"), Some("1"));
    assert_eq!(r.attr_str("t"), Some("1700000000"));
    assert_eq!(r.attr_str("error"), Some("1"), "no sender key");
    assert!(is_ack(&conn.next_about("3EB0LOST").await));

    // No sender key: our keys come with the first retry. The member starts a new
    // session from them and re-sends pairwise with its sender key inside, as
    // whatsmeow and Baileys do.
    let bundle = bundle_from_retry_receipt(&retry, 3);
    assert_eq!(
        bundle.identity_key,
        *local.credentials.identity.public_key()
    );
    assert_eq!(
        bundle.registration_id,
        local.credentials.identity.registration_id
    );
    assert_eq!(bundle.signed_prekey_id, local.signed_prekey.id);
    member.session = Default::default();
    member.start_session(&bundle, &mut rng).unwrap();
    let mut resent = member.skdm_message(&group, &mut rng).unwrap();
    resent.conversation = content.conversation.clone();
    resent.message_context_info = content.message_context_info.clone();
    let (kind, bytes) = member.encrypt_pairwise(&resent, &mut rng).unwrap();
    assert_eq!(kind, "pkmsg");
    let mut again = lost.clone();
    again.content = waevent::binary::NodeContent::None;
    let again = again.child(
        Node::new("enc")
            .attr("v", "2")
            .attr("type", kind)
            .attr("count", "1")
            .with_bytes(bytes),
    );
    conn.send(&again).await;
    expect_delivered(&mut conn, "3EB0LOST").await;
    // And its next skmsg decrypts.
    let next = member
        .group_stanza(
            &group,
            "3EB0NEXT",
            &text_with_secret("next", [5; 32]),
            false,
            &mut rng,
        )
        .unwrap();
    conn.send(&next).await;
    expect_delivered(&mut conn, "3EB0NEXT").await;
    client.disconnect().await;
}

#[tokio::test]
async fn retry_receipts_stop_after_the_limit() {
    let Setup {
        client,
        mut conn,
        local,
        mut rng,
        ..
    } = setup().await;
    let mut member = Member::new(jid("5511700000003:0@s.whatsapp.net"), None, &mut rng);
    member
        .start_session(&local.bundle(Some(4)), &mut rng)
        .unwrap();
    let mut node = member
        .direct_stanza("3EB0GARBLED", &e2e::Message::default(), &mut rng)
        .unwrap();
    // A pkmsg whose inner message is cut: it cannot decrypt.
    if let waevent::binary::NodeContent::Nodes(children) = &mut node.content {
        children[0] = Node::new("enc")
            .attr("v", "2")
            .attr("type", "msg")
            .with_bytes(
                e2e::Message::default()
                    .encode_to_vec()
                    .into_iter()
                    .chain([0x33, 1, 2, 3])
                    .collect::<Vec<u8>>(),
            );
    }
    for count in 1..=MAX_RETRY_RECEIPTS {
        conn.send(&node).await;
        let retry = conn.next_about("3EB0GARBLED").await;
        assert_eq!(retry.attr_str("type"), Some("retry"), "{retry}");
        let r = retry.child_by_tag("retry").unwrap();
        assert_eq!(r.attr_str("count"), Some(count.to_string().as_str()));
        // Keys from the second retry on (a malformed message does not force them).
        assert_eq!(retry.child_by_tag("keys").is_some(), count >= 2, "{retry}");
        assert!(is_ack(&conn.next_about("3EB0GARBLED").await));
    }
    // Past the limit: only the ack.
    conn.send(&node).await;
    assert!(is_ack(&conn.next_about("3EB0GARBLED").await));
    client.disconnect().await;
}

#[tokio::test]
async fn a_redelivery_after_a_restart_finds_its_plaintext_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("receive.db");
    let local = LocalDevice::fixed();
    let server = Server::start().await;
    let mut rng = StdRng::seed_from_u64(31);
    let group = jid(SEED_GROUP);
    let mut member = Member::new(jid("70000005:1@lid"), None, &mut rng);
    member
        .start_session(&local.bundle(Some(1)), &mut rng)
        .unwrap();
    let stanza = member
        .group_stanza(
            &group,
            "3EB0DISK",
            &text_with_secret("kept", [3; 32]),
            true,
            &mut rng,
        )
        .unwrap();
    for run in 0..2 {
        let store: Arc<dyn Store> =
            Arc::new(waevent::store::SqliteStore::open(&path).await.unwrap());
        if run == 0 {
            store.commit_batch(local.batch()).await.unwrap();
        }
        let (client, _events) = Client::new(store.clone(), server.config());
        let (connected, mut conn) = tokio::join!(client.connect(), server.accept());
        connected.unwrap();
        conn.login().await;
        client
            .wait_for_state(ConnectionState::LoggedIn, WAIT)
            .await
            .unwrap();
        // The second time the ratchet and the prekey are gone: only the stored
        // plaintext can answer it.
        let outcome = MessageHandler::new().handle_message(&client, &stanza).await;
        let redelivered = if run == 0 { 0 } else { 2 };
        assert_eq!(
            outcome,
            MessageOutcome::Delivered {
                delivered: 1,
                redelivered,
                duplicates: 0,
                changed_identities: vec![],
            },
            "run {run}"
        );
        expect_delivered(&mut conn, "3EB0DISK").await;
        client.disconnect().await;
    }
}
