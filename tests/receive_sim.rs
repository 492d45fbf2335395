//! The receive pipeline against the simulator: a real client, paired by QR, is a member
//! of a group of simulated phones. A member's event card reaches the client, which
//! decrypts it (pkmsg with the sender key, then skmsg), stores its message secret and
//! sends the delivery receipt the member's phone records. When the client has lost that
//! member's sender key, the next card fails, the client's retry receipt reaches the
//! member's phone, which re-sends on a new session built from the receipt's keys, and
//! the card arrives after all.

mod client_support;

use std::sync::Arc;
use std::time::Duration;

use waevent::client::{Client, MessageHandler};
use waevent::event::EventCard;
use waevent::jid::Jid;
use waevent::signal::SenderKeyName;
use waevent::sim::{GroupAddressing, GroupSpec, SimServer};
use waevent::store::{MemoryStore, Store, StoreBatch};

use client_support::*;

/// Waits until the member's phone has the client's delivery receipt for `id`.
async fn wait_delivered(sim: &SimServer, member_phone: &Jid, id: &str, client_device: &Jid) {
    for _ in 0..600 {
        let delivered = sim.with_world(|w| w.delivered_to(member_phone, id));
        if delivered.contains(client_device) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let delivered = sim.with_world(|w| w.delivered_to(member_phone, id));
    panic!(
        "no delivery receipt from {client_device} for {id} reached {member_phone}: {delivered:?}; errors {:?}",
        sim.protocol_errors()
    );
}

#[tokio::test]
async fn member_cards_are_received_and_a_lost_sender_key_recovers_by_retry() {
    let sim = start_sim().await;
    let phone = sim.create_account("5511955550001");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (client, mut events) = Client::new(store.clone(), client_config(&sim));
    // The simulator counts only receipts without `type` as deliveries (it ignores
    // `type="inactive"`, which the default handler sends): receipts as an active app.
    client.set_stanza_handler(Arc::new(MessageHandler::with_active_receipts(true)));
    let device = pair_by_qr(&client, &mut events, &phone).await;
    let client_device = phone.lid().with_device(device.device);
    let group = sim
        .create_group(GroupSpec {
            subject: "Receive".into(),
            accounts: vec![phone.pn()],
            simulated_members: 2,
            devices_per_member: 1..=2,
            addressing: GroupAddressing::Lid,
        })
        .unwrap();
    let member = sim.group_members(&group).unwrap()[1].clone();
    let member_phone = member.with_device(0);
    let card = EventCard::builder()
        .name("Team dinner")
        .start_unix(1_900_000_000)
        .build()
        .unwrap();

    // First card: pkmsg (sender key) + skmsg.
    let first = sim.member_send_card(&group, &member, &card).await.unwrap();
    wait_delivered(&sim, &member_phone, &first, &client_device).await;
    assert!(
        store
            .message_secret(&group, &member, &first)
            .await
            .unwrap()
            .is_some(),
        "the card's message secret is stored"
    );
    let name = SenderKeyName::new(&group, &member_phone);
    assert!(store.load_sender_key(&name).await.unwrap().is_some());

    // Second card: skmsg only.
    let second = sim.member_send_card(&group, &member, &card).await.unwrap();
    wait_delivered(&sim, &member_phone, &second, &client_device).await;
    assert_eq!(
        sim.with_world(|w| w.retry_requests(&member_phone, &second)),
        0
    );

    // The client loses the member's sender key: the third card cannot decrypt until
    // the member answers the client's retry receipt.
    let mut batch = StoreBatch::new();
    batch.signal.removed_sender_keys.push(name.clone());
    store.commit_batch(batch).await.unwrap();
    let third = sim.member_send_card(&group, &member, &card).await.unwrap();
    wait_delivered(&sim, &member_phone, &third, &client_device).await;
    assert_eq!(
        sim.with_world(|w| w.retry_requests(&member_phone, &third)),
        1,
        "the member's phone saw exactly one retry receipt"
    );
    assert!(
        store
            .message_secret(&group, &member, &third)
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.load_sender_key(&name).await.unwrap().is_some());
    assert!(
        sim.protocol_errors().is_empty(),
        "{:?}",
        sim.protocol_errors()
    );
    client.disconnect().await;
    let _: &Client = &client;
}
