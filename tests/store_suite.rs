//! One test suite, run against both backends (`memory::…` and `sqlite::…`): every
//! operation of the `Store` trait, the Signal traits used by the real Signal engine,
//! batch atomicity, ordering rules, logout, and concurrent idempotency claims.

#![cfg(feature = "sqlite")]

mod store_support;

use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use store_support::*;
use waevent::jid::Jid;
use waevent::signal::store::{IdentityChange, SignalStateBatch, SignalStoreExt};
use waevent::signal::{
    LocalIdentity, PreKeyBundle, PreKeySignalMessage, PreKeys, ProtocolAddress, SenderKeyName,
    SignedPreKeyRecord, decrypt_prekey, encrypt, generate_prekeys, group, initialize_from_bundle,
};
use waevent::store::{
    DeviceEntry, Error, IdempotencyClaim, IdempotencyState, LidPnMapping, PruneBefore, RsvpStatus,
    SenderKeyMemoryUpdate, SentState, SentStateUpdate, Store, StoreBatch, StoredResponse,
};

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let f = super::memory();
                    super::$name(f.store.clone()).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let f = super::sqlite().await;
                    super::$name(f.store.clone()).await;
                }
            )*
        }
    };
}

both_backends!(
    credentials_and_local_identity,
    identities_trust_on_first_use,
    prekeys_and_upload_marks,
    signed_prekeys,
    sessions_and_sender_keys,
    lid_pn_mappings,
    device_lists,
    groups,
    sender_key_memory,
    message_secrets_and_alternates,
    events_rsvps_and_tally,
    sent_messages_and_retries,
    decrypted_buffer,
    webhook_outbox,
    idempotency_keys,
    concurrent_idempotency_claims,
    prune_old_rows,
    full_batch_lands_everywhere,
    invalid_batch_applies_nothing,
    batch_order_puts_before_removals,
    logout_wipes_everything,
);

async fn credentials_and_local_identity(store: Arc<dyn Store>) {
    assert!(store.load_credentials().await.unwrap().is_none());
    let err = store.local_identity().await.unwrap_err();
    assert!(err.to_string().contains("no device credentials"), "{err}");

    let mut c = creds(1);
    store.save_credentials(&c).await.unwrap();
    assert_eq!(store.load_credentials().await.unwrap().as_ref(), Some(&c));
    assert_eq!(store.local_identity().await.unwrap(), c.identity);

    // Unpaired credentials (no JIDs, no account) round-trip too.
    let mut rng = StdRng::seed_from_u64(2);
    let fresh = waevent::store::DeviceCredentials::generate(&mut rng);
    store.save_credentials(&fresh).await.unwrap();
    assert_eq!(
        store.load_credentials().await.unwrap().as_ref(),
        Some(&fresh)
    );
    assert_eq!(store.local_identity().await.unwrap(), fresh.identity);

    c.login_counter = u64::from(u32::MAX) + 5;
    c.server_time_offset_ms = i64::MIN;
    store.save_credentials(&c).await.unwrap();
    assert_eq!(store.load_credentials().await.unwrap().as_ref(), Some(&c));

    c.next_prekey_id = 1 << 25;
    let err = store.save_credentials(&c).await.unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
}

async fn identities_trust_on_first_use(store: Arc<dyn Store>) {
    let a = ProtocolAddress::new("15550001", 2);
    let b = ProtocolAddress::new("15550001", 3);
    let c = ProtocolAddress::new("99001_1", 2);
    assert_eq!(
        store.save_identity(&a, &public(1)).await.unwrap(),
        IdentityChange::New
    );
    assert_eq!(
        store.save_identity(&a, &public(1)).await.unwrap(),
        IdentityChange::Unchanged
    );
    assert_eq!(
        store.save_identity(&a, &public(2)).await.unwrap(),
        IdentityChange::Replaced {
            previous: public(1)
        }
    );
    store.save_identity(&b, &public(3)).await.unwrap();
    store.save_identity(&c, &public(4)).await.unwrap();
    assert_eq!(
        store
            .load_identities(&[
                c.clone(),
                a.clone(),
                ProtocolAddress::new("x", 1),
                b.clone()
            ])
            .await
            .unwrap(),
        vec![Some(public(4)), Some(public(2)), None, Some(public(3))]
    );
    store.delete_identities_of("15550001").await.unwrap();
    assert_eq!(
        store.load_identities(&[a, b, c]).await.unwrap(),
        vec![None, None, Some(public(4))]
    );
    // Through a batch: outcomes in order, a repeated address sees its own earlier entry.
    let d = ProtocolAddress::new("15550002", 0);
    let mut batch = SignalStateBatch::new();
    batch
        .put_identity(d.clone(), public(5))
        .put_identity(d.clone(), public(5))
        .put_identity(d.clone(), public(6));
    assert_eq!(
        store.commit(batch).await.unwrap(),
        vec![
            IdentityChange::New,
            IdentityChange::Unchanged,
            IdentityChange::Replaced {
                previous: public(5)
            }
        ]
    );
}

async fn prekeys_and_upload_marks(store: Arc<dyn Store>) {
    assert_eq!(store.prekey_count().await.unwrap(), 0);
    assert_eq!(store.max_prekey_id().await.unwrap(), None);
    let keys: Vec<(u32, Vec<u8>)> = (1..=10).map(|i| (i, vec![i as u8; 8])).collect();
    store.store_prekeys(&keys).await.unwrap();
    assert_eq!(store.prekey_count().await.unwrap(), 10);
    assert_eq!(store.max_prekey_id().await.unwrap(), Some(10));
    assert_eq!(store.load_prekey(4).await.unwrap(), Some(vec![4; 8]));
    assert_eq!(store.load_prekey(11).await.unwrap(), None);

    assert_eq!(
        store.unuploaded_prekeys(3).await.unwrap(),
        keys[..3].to_vec()
    );
    store
        .mark_prekeys_uploaded(&[1, 2, 3, 5, 99])
        .await
        .unwrap();
    let pending: Vec<u32> = store
        .unuploaded_prekeys(100)
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(pending, vec![4, 6, 7, 8, 9, 10]);
    // Re-storing a key makes it "not uploaded" again.
    store.store_prekeys(&[(5, vec![55])]).await.unwrap();
    assert_eq!(
        store.unuploaded_prekeys(2).await.unwrap()[..1],
        [(4, vec![4; 8])]
    );
    assert!(
        store
            .unuploaded_prekeys(100)
            .await
            .unwrap()
            .contains(&(5, vec![55]))
    );

    store.remove_prekeys(&[10, 9, 42]).await.unwrap();
    assert_eq!(store.prekey_count().await.unwrap(), 8);
    assert_eq!(store.max_prekey_id().await.unwrap(), Some(8));
    assert_eq!(store.unuploaded_prekeys(0).await.unwrap(), vec![]);

    // 24-bit ids only.
    let max = waevent::signal::identity::MAX_PREKEY_ID;
    store.store_prekeys(&[(max, vec![1])]).await.unwrap();
    assert!(store.store_prekeys(&[(max + 1, vec![1])]).await.is_err());
    assert_eq!(store.load_prekey(max + 1).await.unwrap(), None);
}

async fn signed_prekeys(store: Arc<dyn Store>) {
    store.store_signed_prekey(1, b"one").await.unwrap();
    store.store_signed_prekey(2, b"two").await.unwrap();
    store.store_signed_prekey(1, b"uno").await.unwrap();
    assert_eq!(
        store.load_signed_prekey(1).await.unwrap(),
        Some(b"uno".to_vec())
    );
    store.remove_signed_prekey(1).await.unwrap();
    store.remove_signed_prekey(7).await.unwrap();
    assert_eq!(store.load_signed_prekey(1).await.unwrap(), None);
    assert_eq!(
        store.load_signed_prekey(2).await.unwrap(),
        Some(b"two".to_vec())
    );
}

async fn sessions_and_sender_keys(store: Arc<dyn Store>) {
    let mut batch = SignalStateBatch::new();
    for d in [7, 0, 3] {
        batch
            .sessions
            .push((ProtocolAddress::new("15550001", d), vec![d as u8].into()));
    }
    batch
        .sessions
        .push((ProtocolAddress::new("15550001_1", 0), vec![100].into()));
    let name = SenderKeyName::from_parts("120363001@g.us", ProtocolAddress::new("99001_1", 2));
    let other = SenderKeyName::from_parts("120363002@g.us", ProtocolAddress::new("99001_1", 2));
    batch
        .sender_keys
        .push((name.clone(), b"sk1".to_vec().into()));
    batch
        .sender_keys
        .push((other.clone(), b"sk2".to_vec().into()));
    assert!(store.commit(batch).await.unwrap().is_empty());

    assert_eq!(
        store.session_devices("15550001").await.unwrap(),
        vec![0, 3, 7]
    );
    assert_eq!(store.session_devices("15550001_1").await.unwrap(), vec![0]);
    assert_eq!(
        store.session_devices("nobody").await.unwrap(),
        Vec::<u32>::new()
    );
    let loaded = store
        .load_sessions(&[
            ProtocolAddress::new("15550001", 3),
            ProtocolAddress::new("15550001", 4),
        ])
        .await
        .unwrap();
    assert_eq!(loaded, vec![Some(vec![3]), None]);
    assert_eq!(
        store.load_sender_key(&name).await.unwrap(),
        Some(b"sk1".to_vec())
    );

    let mut batch = SignalStateBatch::new();
    batch
        .removed_sessions
        .push(ProtocolAddress::new("15550001", 0));
    batch.removed_sender_keys.push(name.clone());
    store.commit(batch).await.unwrap();
    assert_eq!(store.session_devices("15550001").await.unwrap(), vec![3, 7]);
    assert_eq!(store.load_sender_key(&name).await.unwrap(), None);
    assert_eq!(
        store.load_sender_key(&other).await.unwrap(),
        Some(b"sk2".to_vec())
    );

    store.delete_sessions_of("15550001").await.unwrap();
    assert_eq!(
        store.session_devices("15550001").await.unwrap(),
        Vec::<u32>::new()
    );
    assert_eq!(store.session_devices("15550001_1").await.unwrap(), vec![0]);
}

/// Two devices, each with its own store of the backend under test, run X3DH, the
/// Double Ratchet and a sender-key message with the real Signal engine, committing
/// every change (with the message secret and the sent message) through `commit_batch`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_signal_traffic_memory() {
    real_signal_traffic_through_the_store(memory().store, memory().store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_signal_traffic_sqlite() {
    let (a, b) = (sqlite().await, sqlite().await);
    real_signal_traffic_through_the_store(a.store.clone(), b.store.clone()).await;
}

async fn real_signal_traffic_through_the_store(alice: Arc<dyn Store>, bob: Arc<dyn Store>) {
    let rng = &mut StdRng::seed_from_u64(42);
    let (alice_jid, bob_jid) = (jid("15550001:2@s.whatsapp.net"), jid("99001:3@lid"));
    let (alice_addr, bob_addr) = (
        ProtocolAddress::from_jid(&alice_jid),
        ProtocolAddress::from_jid(&bob_jid),
    );
    alice.save_credentials(&creds(10)).await.unwrap();
    bob.save_credentials(&creds(11)).await.unwrap();

    // Bob's prekeys.
    let bob_identity = bob.local_identity().await.unwrap();
    let signed = SignedPreKeyRecord::generate(&bob_identity.key_pair, 1, 1_700_000_000_000, rng);
    bob.store_signed_prekey(1, &signed.serialize())
        .await
        .unwrap();
    let prekeys: Vec<(u32, Vec<u8>)> = generate_prekeys(1, 3, rng)
        .iter()
        .map(|p| (p.id, p.serialize()))
        .collect();
    bob.store_prekeys(&prekeys).await.unwrap();
    let one = bob.load_prekey_record(2).await.unwrap().unwrap();
    let bundle = PreKeyBundle::from_local(&bob_identity, 3, &signed, Some(&one));

    // Alice: new session, encrypt, commit with the secret and the sent message.
    let ours = alice.local_identity().await.unwrap();
    let mut record = alice.load_session_record(&bob_addr).await.unwrap();
    initialize_from_bundle(&mut record, &ours, &bundle, rng).unwrap();
    let out = encrypt(&mut record, b"event card").unwrap();
    let mut batch = StoreBatch::new();
    batch.signal.put_session(bob_addr.clone(), &record);
    batch
        .signal
        .put_identity(bob_addr.clone(), bundle.identity_key);
    batch
        .secrets
        .push(secret("99001@lid", "15550001@s.whatsapp.net", "3EB0A1", 7));
    batch
        .sent_messages
        .push(sent("99001@lid", "3EB0A1", 1, SentState::Pending));
    let outcome = alice.commit_batch(batch).await.unwrap();
    assert_eq!(outcome.identity_changes, vec![IdentityChange::New]);

    // Bob: decrypt the pkmsg with keys from his store; commit consumes the prekey.
    let msg = PreKeySignalMessage::deserialize(out.bytes()).unwrap();
    let mut bob_record = bob.load_session_record(&alice_addr).await.unwrap();
    let needed = bob_record.prekeys_needed(&msg).unwrap();
    let signed = bob
        .load_signed_prekey_record(needed.signed_prekey_id)
        .await
        .unwrap();
    let one_time = bob
        .load_prekey_record(needed.prekey_id.unwrap())
        .await
        .unwrap();
    let got = decrypt_prekey(
        &mut bob_record,
        &bob_identity,
        &msg,
        PreKeys {
            signed: signed.as_ref(),
            one_time: one_time.as_ref(),
        },
        rng,
    )
    .unwrap();
    assert_eq!(got.plaintext, b"event card");
    let mut batch = StoreBatch::new();
    batch.signal.put_session(alice_addr.clone(), &bob_record);
    batch
        .signal
        .put_identity(alice_addr.clone(), got.remote_identity);
    if let Some(id) = got.consumed_prekey_id {
        batch.signal.remove_prekey(id);
    }
    // Bob also starts a sender key for a group and stores his own SKDM state.
    let group_jid = jid("120363001@g.us");
    let sk_name = SenderKeyName::new(&group_jid, &bob_jid);
    let mut sk = bob.load_sender_key_record(&sk_name).await.unwrap();
    let (skdm, created) = group::create_distribution_message(&mut sk, rng).unwrap();
    assert!(created);
    let skmsg = group::encrypt(&mut sk, b"to the group", rng).unwrap();
    batch.signal.put_sender_key(sk_name.clone(), &sk);
    bob.commit_batch(batch).await.unwrap();
    assert_eq!(
        bob.load_prekey(2).await.unwrap(),
        None,
        "consumed prekey removed"
    );
    assert_eq!(bob.prekey_count().await.unwrap(), 2);

    // Alice processes the SKDM and the group message from her store.
    let alice_sk_name = SenderKeyName::new(&group_jid, &bob_jid);
    let mut their = alice.load_sender_key_record(&alice_sk_name).await.unwrap();
    group::process_distribution_message(&mut their, &skdm);
    assert_eq!(group::decrypt(&mut their, &skmsg).unwrap(), b"to the group");
    let mut batch = SignalStateBatch::new();
    batch.put_sender_key(alice_sk_name.clone(), &their);
    alice.commit(batch).await.unwrap();

    // Bob's reply uses the stored session; Alice decrypts it from her stored session.
    let mut bob_record = bob.load_session_record(&alice_addr).await.unwrap();
    let reply = encrypt(&mut bob_record, b"going").unwrap();
    assert_eq!(reply.enc_type(), "msg");
    let mut alice_record = alice.load_session_record(&bob_addr).await.unwrap();
    let plain = waevent::signal::decrypt_whisper(&mut alice_record, reply.bytes(), rng).unwrap();
    assert_eq!(plain, b"going");

    // The sender key Alice stored still decrypts Bob's next group message.
    let mut bob_sk = bob.load_sender_key_record(&sk_name).await.unwrap();
    let next = group::encrypt(&mut bob_sk, b"second", rng).unwrap();
    let mut their = alice.load_sender_key_record(&alice_sk_name).await.unwrap();
    assert_eq!(group::decrypt(&mut their, &next).unwrap(), b"second");
}

async fn lid_pn_mappings(store: Arc<dyn Store>) {
    let m = |l: &str, p: &str| LidPnMapping::new(&jid(l), &jid(p)).unwrap();
    store
        .put_lid_mappings(&[m("99001@lid", "15550001@s.whatsapp.net")])
        .await
        .unwrap();
    // Devices are kept; hosted servers map to hosted servers.
    assert_eq!(
        store
            .lid_for_pn(&jid("15550001:5@s.whatsapp.net"))
            .await
            .unwrap(),
        Some(jid("99001:5@lid"))
    );
    assert_eq!(
        store.pn_for_lid(&jid("99001:99@hosted.lid")).await.unwrap(),
        Some(jid("15550001:99@hosted"))
    );
    assert_eq!(
        store.alternate_jid(&jid("99001@lid")).await.unwrap(),
        Some(jid("15550001@s.whatsapp.net"))
    );
    assert_eq!(
        store.alternate_jid(&jid("120363001@g.us")).await.unwrap(),
        None
    );
    // Wrong-side input finds nothing.
    assert_eq!(store.lid_for_pn(&jid("99001@lid")).await.unwrap(), None);
    assert_eq!(
        store
            .pn_for_lid(&jid("15550001@s.whatsapp.net"))
            .await
            .unwrap(),
        None
    );

    // A new LID for the same number replaces the old pair in both directions.
    store
        .put_lid_mappings(&[m("99002@lid", "15550001@s.whatsapp.net")])
        .await
        .unwrap();
    assert_eq!(store.pn_for_lid(&jid("99001@lid")).await.unwrap(), None);
    assert_eq!(
        store
            .lid_for_pn(&jid("15550001@s.whatsapp.net"))
            .await
            .unwrap(),
        Some(jid("99002@lid"))
    );
    // And a new number for a LID.
    store
        .put_lid_mappings(&[
            m("99003@lid", "15550003@s.whatsapp.net"),
            m("99002@lid", "15550002@s.whatsapp.net"),
        ])
        .await
        .unwrap();
    let lids = store
        .lids_for_pns(&[
            jid("15550001@s.whatsapp.net"),
            jid("15550002:1@s.whatsapp.net"),
            jid("15550003@s.whatsapp.net"),
            jid("120363001@g.us"),
        ])
        .await
        .unwrap();
    assert_eq!(
        lids,
        vec![None, Some(jid("99002:1@lid")), Some(jid("99003@lid")), None]
    );
}

async fn device_lists(store: Arc<dyn Store>) {
    let mut list = device_list(PNS[0], 4);
    list.user = jid("15550001:9@s.whatsapp.net"); // device part is dropped
    list.devices.reverse(); // stored sorted
    store.save_device_lists(&[list]).await.unwrap();
    let loaded = store
        .load_device_lists(&[jid("15550001:3@s.whatsapp.net"), jid(PNS[1])])
        .await
        .unwrap();
    assert_eq!(loaded, vec![Some(device_list(PNS[0], 4)), None]);
    assert_eq!(
        loaded[0].as_ref().unwrap().device_jids(),
        vec![
            jid("15550001@s.whatsapp.net"),
            jid("15550001:5@s.whatsapp.net"),
            jid("15550001:99@hosted")
        ]
    );
    // Replacing drops devices that are gone.
    let mut shorter = device_list(PNS[0], 6);
    shorter.devices.truncate(1);
    store.save_device_lists(&[shorter.clone()]).await.unwrap();
    assert_eq!(
        store.load_device_lists(&[jid(PNS[0])]).await.unwrap(),
        vec![Some(shorter)]
    );
    store
        .delete_device_lists(&[jid("15550001:2@s.whatsapp.net")])
        .await
        .unwrap();
    assert_eq!(
        store.load_device_lists(&[jid(PNS[0])]).await.unwrap(),
        vec![None]
    );

    let mut dup = device_list(PNS[1], 1);
    dup.devices.push(DeviceEntry {
        id: 0,
        key_index: None,
        hosted: false,
    });
    let err = store.save_device_lists(&[dup]).await.unwrap_err();
    assert!(err.to_string().contains("not unique"), "{err}");
}

async fn groups(store: Arc<dyn Store>) {
    let g = group(GROUPS[0], 2);
    store.save_group(&g).await.unwrap();
    assert_eq!(
        store.load_group(&jid(GROUPS[0])).await.unwrap(),
        Some(g.clone())
    );
    assert_eq!(store.load_group(&jid(GROUPS[1])).await.unwrap(), None);
    // Replacing keeps the server's order of the new list.
    let mut g2 = group(GROUPS[0], 3);
    g2.participants.reverse();
    g2.phash = None;
    g2.subject = None;
    store.save_group(&g2).await.unwrap();
    assert_eq!(store.load_group(&jid(GROUPS[0])).await.unwrap(), Some(g2));
    store.delete_group(&jid(GROUPS[0])).await.unwrap();
    assert_eq!(store.load_group(&jid(GROUPS[0])).await.unwrap(), None);

    let mut not_group = group(GROUPS[0], 2);
    not_group.group = jid(PNS[0]);
    assert!(matches!(
        store.save_group(&not_group).await,
        Err(Error::Invalid { .. })
    ));
    let mut twice = group(GROUPS[0], 2);
    twice.participants.push(twice.participants[0].clone());
    assert!(store.save_group(&twice).await.is_err());
}

async fn sender_key_memory(store: Arc<dyn Store>) {
    let (g1, g2) = (jid(GROUPS[0]), jid(GROUPS[1]));
    let devs = |list: &[&str]| list.iter().map(|s| jid(s)).collect::<Vec<_>>();
    store
        .update_sender_key_memory(&[
            SenderKeyMemoryUpdate::MarkHas {
                group: g1.clone(),
                devices: devs(&["99002:1@lid", "99001@lid", "99001:4@lid", "99001@lid"]),
            },
            SenderKeyMemoryUpdate::MarkHas {
                group: g2.clone(),
                devices: devs(&["99003@lid"]),
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        store.sender_key_holders(&g1).await.unwrap(),
        devs(&["99001@lid", "99001:4@lid", "99002:1@lid"])
    );
    store
        .update_sender_key_memory(&[SenderKeyMemoryUpdate::Forget {
            group: g1.clone(),
            devices: devs(&["99001:4@lid", "99009@lid"]),
        }])
        .await
        .unwrap();
    assert_eq!(
        store.sender_key_holders(&g1).await.unwrap(),
        devs(&["99001@lid", "99002:1@lid"])
    );
    // Rotation clears one group only; applied in order within one batch.
    store
        .update_sender_key_memory(&[
            SenderKeyMemoryUpdate::ClearGroup { group: g1.clone() },
            SenderKeyMemoryUpdate::MarkHas {
                group: g1.clone(),
                devices: devs(&["99002@lid"]),
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        store.sender_key_holders(&g1).await.unwrap(),
        devs(&["99002@lid"])
    );
    assert_eq!(
        store.sender_key_holders(&g2).await.unwrap(),
        devs(&["99003@lid"])
    );
    assert!(
        store
            .update_sender_key_memory(&[SenderKeyMemoryUpdate::ClearGroup { group: jid(PNS[0]) }])
            .await
            .is_err()
    );
}

async fn message_secrets_and_alternates(store: Arc<dyn Store>) {
    store
        .put_lid_mappings(&[
            LidPnMapping::new(&jid(LIDS[0]), &jid(PNS[0])).unwrap(),
            LidPnMapping::new(&jid(LIDS[1]), &jid(PNS[1])).unwrap(),
        ])
        .await
        .unwrap();
    // Stored with a device JID: the device is dropped.
    let mut s = secret(GROUPS[0], "99001:7@lid", MESSAGE_IDS[0], 9);
    store.put_message_secrets(&[s.clone()]).await.unwrap();
    s.sender = jid(LIDS[0]);
    let g = jid(GROUPS[0]);
    assert_eq!(
        store
            .message_secret(&g, &jid("99001:2@lid"), MESSAGE_IDS[0])
            .await
            .unwrap(),
        Some(s.clone())
    );
    assert_eq!(
        store
            .message_secret(&g, &jid(PNS[0]), MESSAGE_IDS[0])
            .await
            .unwrap(),
        None
    );
    // find_… tries the PN↔LID alternate of the sender and reports the stored sender.
    assert_eq!(
        store
            .find_message_secret(&g, &jid("15550001:4@s.whatsapp.net"), MESSAGE_IDS[0])
            .await
            .unwrap(),
        Some(s.clone())
    );
    assert_eq!(
        store
            .find_message_secret(&g, &jid(PNS[1]), MESSAGE_IDS[0])
            .await
            .unwrap(),
        None
    );
    // 1:1 chats: the chat's alternate too.
    let dm = secret(LIDS[1], LIDS[1], MESSAGE_IDS[1], 3);
    store
        .put_message_secrets(std::slice::from_ref(&dm))
        .await
        .unwrap();
    assert_eq!(
        store
            .find_message_secret(&jid(PNS[1]), &jid(PNS[1]), MESSAGE_IDS[1])
            .await
            .unwrap(),
        Some(dm)
    );
    // Overwrite.
    let newer = secret(GROUPS[0], LIDS[0], MESSAGE_IDS[0], 10);
    store
        .put_message_secrets(std::slice::from_ref(&newer))
        .await
        .unwrap();
    assert_eq!(
        store
            .message_secret(&g, &jid(LIDS[0]), MESSAGE_IDS[0])
            .await
            .unwrap(),
        Some(newer)
    );
    let mut bad = secret(GROUPS[0], LIDS[0], "", 1);
    assert!(store.put_message_secrets(&[bad.clone()]).await.is_err());
    bad.message_id = "x".repeat(129);
    assert!(store.put_message_secrets(&[bad]).await.is_err());
}

async fn events_rsvps_and_tally(store: Arc<dyn Store>) {
    let g = jid(GROUPS[0]);
    let e = event(GROUPS[0], MESSAGE_IDS[0], "99001:2@lid", 2);
    store.put_event(&e).await.unwrap();
    let stored = store.load_event(&g, MESSAGE_IDS[0]).await.unwrap().unwrap();
    assert_eq!(stored.creator, jid(LIDS[0]), "creator stored at user level");
    assert_eq!(stored.card, e.card);
    // An edit replaces the card.
    let mut edited = e.clone();
    edited.card = b"edited".to_vec();
    store.put_event(&edited).await.unwrap();
    assert_eq!(
        store
            .load_event(&g, MESSAGE_IDS[0])
            .await
            .unwrap()
            .unwrap()
            .card,
        b"edited"
    );
    // The same id in two chats; events_by_id sorted by chat.
    store
        .put_event(&event(GROUPS[1], MESSAGE_IDS[0], PNS[0], 3))
        .await
        .unwrap();
    let by_id = store.events_by_id(MESSAGE_IDS[0]).await.unwrap();
    assert_eq!(
        by_id.iter().map(|e| e.chat.clone()).collect::<Vec<_>>(),
        vec![jid(GROUPS[0]), jid(GROUPS[1])]
    );
    assert!(store.events_by_id(MESSAGE_IDS[2]).await.unwrap().is_empty());

    let id = MESSAGE_IDS[0];
    assert!(
        store
            .record_rsvp(&rsvp(GROUPS[0], id, "99002:3@lid", RsvpStatus::Going, 100))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_rsvp(&rsvp(GROUPS[0], id, LIDS[2], RsvpStatus::Maybe, 100))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_rsvp(&rsvp(GROUPS[0], id, PNS[0], RsvpStatus::NotGoing, 50))
            .await
            .unwrap()
    );
    // Older than stored: skipped. Same timestamp: replaces (a duplicate is harmless).
    assert!(
        !store
            .record_rsvp(&rsvp(GROUPS[0], id, LIDS[1], RsvpStatus::NotGoing, 99))
            .await
            .unwrap()
    );
    assert!(
        store
            .record_rsvp(&rsvp(GROUPS[0], id, LIDS[2], RsvpStatus::Going, 100))
            .await
            .unwrap()
    );
    // Another event does not mix in.
    store
        .record_rsvp(&rsvp(
            GROUPS[0],
            MESSAGE_IDS[1],
            LIDS[0],
            RsvpStatus::Going,
            1,
        ))
        .await
        .unwrap();
    let tally = store.event_tally(&g, id).await.unwrap();
    assert_eq!((tally.going, tally.not_going, tally.maybe), (2, 1, 0));
    // extra_guests = ts % 3: 100 → 1 for each of the two voters going.
    assert_eq!(tally.extra_guests_going, 2);
    assert_eq!(
        tally
            .responses
            .iter()
            .map(|r| r.voter.clone())
            .collect::<Vec<_>>(),
        vec![jid(PNS[0]), jid(LIDS[1]), jid(LIDS[2])]
    );
    // Several RSVPs in one batch report each outcome in order.
    let outcome = store
        .commit_batch(StoreBatch {
            rsvps: vec![
                rsvp(GROUPS[0], id, LIDS[1], RsvpStatus::Unknown, 200),
                rsvp(GROUPS[0], id, LIDS[1], RsvpStatus::Going, 150),
                rsvp(GROUPS[0], id, LIDS[0], RsvpStatus::Maybe, 1),
            ],
            ..StoreBatch::default()
        })
        .await
        .unwrap();
    assert_eq!(outcome.rsvps_applied, vec![true, false, true]);
    let tally = store.event_tally(&g, id).await.unwrap();
    assert_eq!((tally.going, tally.not_going, tally.maybe), (1, 1, 1));
    assert_eq!(tally.responses.len(), 4);
    assert_eq!(
        store
            .event_tally(&jid(GROUPS[1]), id)
            .await
            .unwrap()
            .responses
            .len(),
        0
    );
}

async fn sent_messages_and_retries(store: Arc<dyn Store>) {
    let g = jid(GROUPS[0]);
    let dm = jid(LIDS[0]);
    store
        .commit_batch(StoreBatch {
            sent_messages: vec![
                sent(GROUPS[0], MESSAGE_IDS[0], 5, SentState::Pending),
                sent(GROUPS[1], MESSAGE_IDS[0], 5, SentState::Pending),
                sent(LIDS[0], MESSAGE_IDS[1], 3, SentState::Pending),
                sent(GROUPS[0], MESSAGE_IDS[2], 9, SentState::Acked),
            ],
            ..StoreBatch::default()
        })
        .await
        .unwrap();
    let pending = store.pending_sent_messages(10).await.unwrap();
    let order: Vec<(String, String)> = pending
        .iter()
        .map(|m| (m.sent.chat.to_string(), m.sent.message_id.clone()))
        .collect();
    assert_eq!(
        order,
        vec![
            ("99001@lid".into(), MESSAGE_IDS[1].into()),
            ("120363001@g.us".into(), MESSAGE_IDS[0].into()),
            ("120363002@g.us".into(), MESSAGE_IDS[0].into()),
        ]
    );
    assert_eq!(store.pending_sent_messages(1).await.unwrap().len(), 1);

    let d1 = jid("99002:1@lid");
    let d2 = jid("99002@lid");
    assert_eq!(
        store
            .bump_sent_retry(&g, MESSAGE_IDS[0], &d1)
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        store
            .bump_sent_retry(&g, MESSAGE_IDS[0], &d1)
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        store
            .bump_sent_retry(&g, MESSAGE_IDS[0], &d2)
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        store.bump_sent_retry(&g, "unknown", &d1).await.unwrap(),
        None
    );

    // The ack; unknown messages are ignored.
    store
        .commit_batch(StoreBatch {
            sent_states: vec![
                SentStateUpdate {
                    chat: g.clone(),
                    message_id: MESSAGE_IDS[0].into(),
                    state: SentState::Acked,
                },
                SentStateUpdate {
                    chat: g.clone(),
                    message_id: "never-sent".into(),
                    state: SentState::Acked,
                },
            ],
            ..StoreBatch::default()
        })
        .await
        .unwrap();
    let m = store
        .load_sent_message(&g, MESSAGE_IDS[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.sent.state, SentState::Acked);
    assert_eq!(m.sent.stanza, vec![6; 60]);
    assert_eq!(m.retry_counts, vec![(d2.clone(), 1), (d1.clone(), 2)]);
    assert_eq!(store.pending_sent_messages(10).await.unwrap().len(), 2);

    // Re-storing (a resend re-prepared) keeps the retry counts.
    store
        .commit_batch(StoreBatch {
            sent_messages: vec![sent(GROUPS[0], MESSAGE_IDS[0], 7, SentState::Pending)],
            ..StoreBatch::default()
        })
        .await
        .unwrap();
    let m = store
        .load_sent_message(&g, MESSAGE_IDS[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!((m.sent.message[0], m.sent.state), (7, SentState::Pending));
    assert_eq!(m.retry_counts.len(), 2);

    // A retry receipt may name the 1:1 chat in the other namespace.
    store
        .put_lid_mappings(&[LidPnMapping::new(&jid(LIDS[0]), &jid(PNS[0])).unwrap()])
        .await
        .unwrap();
    assert!(
        store
            .load_sent_message(&jid(PNS[0]), MESSAGE_IDS[1])
            .await
            .unwrap()
            .is_none()
    );
    let found = store
        .find_sent_message(&jid(PNS[0]), MESSAGE_IDS[1])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.sent.chat, dm);
    store
        .set_sent_state(&dm, MESSAGE_IDS[1], SentState::Acked)
        .await
        .unwrap();
    assert_eq!(
        store
            .load_sent_message(&dm, MESSAGE_IDS[1])
            .await
            .unwrap()
            .unwrap()
            .sent
            .state,
        SentState::Acked
    );

    // A refusal keeps its code and leaves the pending list.
    let pending_before = store.pending_sent_messages(10).await.unwrap().len();
    store
        .set_sent_state(&g, MESSAGE_IDS[0], SentState::Refused { code: 403 })
        .await
        .unwrap();
    let m = store
        .load_sent_message(&g, MESSAGE_IDS[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.sent.state, SentState::Refused { code: 403 });
    assert_eq!(
        store.pending_sent_messages(10).await.unwrap().len(),
        pending_before - 1
    );
    // Stored again as pending (prepared again), the code is gone.
    store
        .commit_batch(StoreBatch {
            sent_messages: vec![sent(GROUPS[0], MESSAGE_IDS[0], 8, SentState::Pending)],
            ..StoreBatch::default()
        })
        .await
        .unwrap();
    let m = store
        .load_sent_message(&g, MESSAGE_IDS[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.sent.state, SentState::Pending);
}

async fn decrypted_buffer(store: Arc<dyn Store>) {
    assert_eq!(store.load_decrypted(&hash(1)).await.unwrap(), None);
    let d = waevent::store::DecryptedMessage {
        ciphertext_hash: hash(1),
        plaintext: b"plain".to_vec(),
        received_at_ms: 77,
    };
    store
        .commit_batch(StoreBatch {
            decrypted: vec![d.clone()],
            ..StoreBatch::default()
        })
        .await
        .unwrap();
    assert_eq!(store.load_decrypted(&hash(1)).await.unwrap(), Some(d));
    assert_eq!(store.load_decrypted(&hash(2)).await.unwrap(), None);
}

async fn webhook_outbox(store: Arc<dyn Store>) {
    for (id, seed) in [("w3", 1u8), ("w1", 2), ("w2", 2)] {
        store.enqueue_webhook(&webhook(id, seed)).await.unwrap();
    }
    assert_eq!(store.webhook_count().await.unwrap(), 3);
    let due = store.due_webhooks(150, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        vec!["w3"]
    );
    let due = store.due_webhooks(200, 2).await.unwrap();
    assert_eq!(
        due.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        vec!["w3", "w1"]
    );

    assert!(
        store
            .reschedule_webhook("w3", 1_000, "HTTP 500")
            .await
            .unwrap()
    );
    assert!(
        store
            .reschedule_webhook("w3", 2_000, "timeout")
            .await
            .unwrap()
    );
    assert!(!store.reschedule_webhook("nope", 2_000, "x").await.unwrap());
    let all = store.due_webhooks(i64::MAX, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        vec!["w1", "w2", "w3"]
    );
    assert_eq!(all[2].attempts, 2);
    assert_eq!(all[2].next_attempt_at_ms, 2_000);
    assert_eq!(all[2].last_error.as_deref(), Some("timeout"));
    assert_eq!(all[0].payload, br#"{"n":2}"#);

    assert!(store.delete_webhook("w1").await.unwrap());
    assert!(!store.delete_webhook("w1").await.unwrap());
    assert_eq!(store.webhook_count().await.unwrap(), 2);
    let mut bad = webhook("", 1);
    assert!(store.enqueue_webhook(&bad).await.is_err());
    bad.id = "ok".into();
    bad.instance = "i".repeat(257);
    assert!(store.enqueue_webhook(&bad).await.is_err());
}

fn claim(key: &str, fingerprint: &str, now: i64) -> IdempotencyClaim {
    IdempotencyClaim {
        instance: "main".into(),
        key: key.into(),
        fingerprint: fingerprint.into(),
        now_ms: now,
    }
}

async fn idempotency_keys(store: Arc<dyn Store>) {
    assert_eq!(
        store
            .claim_idempotency_key(&claim("k1", "f1", 10))
            .await
            .unwrap(),
        IdempotencyState::Claimed
    );
    assert_eq!(
        store
            .claim_idempotency_key(&claim("k1", "f1", 20))
            .await
            .unwrap(),
        IdempotencyState::InProgress { since_ms: 10 }
    );
    assert_eq!(
        store
            .claim_idempotency_key(&claim("k1", "other", 20))
            .await
            .unwrap(),
        IdempotencyState::Mismatch
    );
    let response = StoredResponse {
        status: 200,
        body: br#"{"messageId":"3EB0"}"#.to_vec(),
    };
    store
        .complete_idempotency_key("main", "k1", &response)
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_idempotency_key(&claim("k1", "f1", 30))
            .await
            .unwrap(),
        IdempotencyState::Completed(response.clone())
    );
    // Completed keys are not released.
    assert!(!store.release_idempotency_key("main", "k1").await.unwrap());
    // Keys are per instance.
    let mut other = claim("k1", "f1", 40);
    other.instance = "second".into();
    assert_eq!(
        store.claim_idempotency_key(&other).await.unwrap(),
        IdempotencyState::Claimed
    );
    // A failed request releases its claim and a retry can claim again.
    store
        .claim_idempotency_key(&claim("k2", "f", 50))
        .await
        .unwrap();
    assert!(store.release_idempotency_key("main", "k2").await.unwrap());
    assert_eq!(
        store
            .claim_idempotency_key(&claim("k2", "f", 60))
            .await
            .unwrap(),
        IdempotencyState::Claimed
    );
    assert!(matches!(
        store
            .complete_idempotency_key("main", "never", &response)
            .await,
        Err(Error::Invalid { .. })
    ));
    assert!(
        store
            .claim_idempotency_key(&claim("", "f", 1))
            .await
            .is_err()
    );
}

async fn concurrent_idempotency_claims(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .claim_idempotency_key(&claim("same", "f", i))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut claimed = 0;
    for t in tasks {
        match t.await.unwrap() {
            IdempotencyState::Claimed => claimed += 1,
            IdempotencyState::InProgress { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(claimed, 1, "exactly one concurrent duplicate may run");
}

async fn prune_old_rows(store: Arc<dyn Store>) {
    store
        .commit_batch(StoreBatch {
            secrets: vec![
                secret(GROUPS[0], LIDS[0], MESSAGE_IDS[0], 1),
                secret(GROUPS[0], LIDS[0], MESSAGE_IDS[1], 5),
            ],
            sent_messages: vec![
                sent(GROUPS[0], MESSAGE_IDS[0], 1, SentState::Pending),
                sent(GROUPS[0], MESSAGE_IDS[1], 9, SentState::Acked),
            ],
            decrypted: vec![waevent::store::DecryptedMessage {
                ciphertext_hash: hash(3),
                plaintext: vec![],
                received_at_ms: 10,
            }],
            ..StoreBatch::default()
        })
        .await
        .unwrap();
    store
        .bump_sent_retry(&jid(GROUPS[0]), MESSAGE_IDS[0], &jid("99001@lid"))
        .await
        .unwrap();
    store
        .claim_idempotency_key(&claim("old", "f", 5))
        .await
        .unwrap();
    store
        .claim_idempotency_key(&claim("new", "f", 500))
        .await
        .unwrap();
    let counts = store
        .prune(PruneBefore {
            message_secrets: Some(3_000),
            sent_messages: Some(50),
            decrypted: None,
            idempotency_keys: Some(100),
        })
        .await
        .unwrap();
    assert_eq!(
        (
            counts.message_secrets,
            counts.sent_messages,
            counts.decrypted,
            counts.idempotency_keys
        ),
        (1, 1, 0, 1)
    );
    let g = jid(GROUPS[0]);
    assert!(
        store
            .message_secret(&g, &jid(LIDS[0]), MESSAGE_IDS[0])
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .message_secret(&g, &jid(LIDS[0]), MESSAGE_IDS[1])
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .load_sent_message(&g, MESSAGE_IDS[0])
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .load_sent_message(&g, MESSAGE_IDS[1])
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.load_decrypted(&hash(3)).await.unwrap().is_some());
    assert_eq!(
        store
            .claim_idempotency_key(&claim("old", "f", 600))
            .await
            .unwrap(),
        IdempotencyState::Claimed
    );
    assert_eq!(
        store
            .claim_idempotency_key(&claim("new", "f", 600))
            .await
            .unwrap(),
        IdempotencyState::InProgress { since_ms: 500 }
    );
    // Pruned sent messages take their retry counts along: a new message with the same
    // id starts from zero.
    store
        .commit_batch(StoreBatch {
            sent_messages: vec![sent(GROUPS[0], MESSAGE_IDS[0], 100, SentState::Pending)],
            ..StoreBatch::default()
        })
        .await
        .unwrap();
    assert!(
        store
            .load_sent_message(&g, MESSAGE_IDS[0])
            .await
            .unwrap()
            .unwrap()
            .retry_counts
            .is_empty()
    );
}

async fn full_batch_lands_everywhere(store: Arc<dyn Store>) {
    assert!(snapshot(&*store).await.is_empty());
    let outcome = store.commit_batch(full_batch(3)).await.unwrap();
    assert!(changes_all_new(&outcome.identity_changes));
    assert_eq!(outcome.identity_changes.len(), addresses().len());
    assert_eq!(outcome.rsvps_applied, vec![true, true]);
    assert_full(&snapshot(&*store).await, 3);
}

/// A batch whose last entry is invalid is refused as a whole.
async fn invalid_batch_applies_nothing(store: Arc<dyn Store>) {
    type Spoil = Box<dyn Fn(&mut StoreBatch)>;
    let invalid_tails: Vec<Spoil> = vec![
        Box::new(|b| b.webhooks.push(webhook("", 1))),
        Box::new(|b| {
            b.rsvps
                .push(rsvp(GROUPS[0], "", LIDS[0], RsvpStatus::Going, 1))
        }),
        Box::new(|b| b.prekeys.push((1 << 24, vec![1]))),
        Box::new(|b| {
            let mut g = group(GROUPS[1], 1);
            g.group = jid(LIDS[0]);
            b.groups.push(g)
        }),
        Box::new(|b| {
            b.sender_key_memory.push(SenderKeyMemoryUpdate::MarkHas {
                group: jid(GROUPS[0]),
                devices: vec![Jid::new("", "lid")],
            })
        }),
        Box::new(|b| {
            let mut c = creds(1);
            c.lid = Some(jid(PNS[0]));
            b.credentials = Some(c)
        }),
    ];
    for (i, tail) in invalid_tails.iter().enumerate() {
        let mut batch = full_batch(4);
        tail(&mut batch);
        let err = store.commit_batch(batch).await.unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "case {i}: {err}");
        let snap = snapshot(&*store).await;
        assert!(snap.is_empty(), "case {i}: something was applied: {snap:?}");
    }
    // The store is still usable.
    store.commit_batch(full_batch(4)).await.unwrap();
    assert_full(&snapshot(&*store).await, 4);
}

async fn batch_order_puts_before_removals(store: Arc<dyn Store>) {
    let a = ProtocolAddress::new("15550001", 1);
    let mut batch = StoreBatch::new();
    batch.signal.sessions.push((a.clone(), vec![1u8].into()));
    batch.signal.removed_sessions.push(a.clone());
    batch.prekeys.push((3, vec![3]));
    batch.signal.removed_prekeys.push(3);
    batch.device_lists.push(device_list(PNS[0], 1));
    batch.removed_device_lists.push(jid(PNS[0]));
    batch.groups.push(group(GROUPS[0], 1));
    batch.removed_groups.push(jid(GROUPS[0]));
    // Later entries for the same key win.
    batch
        .events
        .push(event(GROUPS[0], MESSAGE_IDS[0], LIDS[0], 1));
    batch
        .events
        .push(event(GROUPS[0], MESSAGE_IDS[0], LIDS[1], 2));
    batch
        .mappings
        .push(LidPnMapping::new(&jid(LIDS[0]), &jid(PNS[0])).unwrap());
    batch
        .mappings
        .push(LidPnMapping::new(&jid(LIDS[1]), &jid(PNS[0])).unwrap());
    store.commit_batch(batch).await.unwrap();
    assert_eq!(store.load_sessions(&[a]).await.unwrap(), vec![None]);
    assert_eq!(store.load_prekey(3).await.unwrap(), None);
    assert_eq!(
        store.load_device_lists(&[jid(PNS[0])]).await.unwrap(),
        vec![None]
    );
    assert_eq!(store.load_group(&jid(GROUPS[0])).await.unwrap(), None);
    assert_eq!(
        store
            .load_event(&jid(GROUPS[0]), MESSAGE_IDS[0])
            .await
            .unwrap()
            .unwrap()
            .creator,
        jid(LIDS[1])
    );
    assert_eq!(
        store.lid_for_pn(&jid(PNS[0])).await.unwrap(),
        Some(jid(LIDS[1]))
    );
    assert_eq!(store.pn_for_lid(&jid(LIDS[0])).await.unwrap(), None);
    // An empty batch is fine.
    assert_eq!(
        store.commit_batch(StoreBatch::new()).await.unwrap(),
        Default::default()
    );
}

async fn logout_wipes_everything(store: Arc<dyn Store>) {
    store.commit_batch(full_batch(5)).await.unwrap();
    store
        .claim_idempotency_key(&claim("k", "f", 1))
        .await
        .unwrap();
    store
        .bump_sent_retry(&jid(GROUPS[0]), MESSAGE_IDS[0], &jid("99001@lid"))
        .await
        .unwrap();
    assert_full(&snapshot(&*store).await, 5);

    store.clear_all().await.unwrap();
    let snap = snapshot(&*store).await;
    assert!(snap.is_empty(), "left after logout: {snap:?}");
    assert_eq!(
        store
            .claim_idempotency_key(&claim("k", "f", 2))
            .await
            .unwrap(),
        IdempotencyState::Claimed,
        "idempotency keys are wiped too"
    );
    assert!(store.local_identity().await.is_err());

    // A new pairing starts from scratch in the same store.
    store.commit_batch(full_batch(6)).await.unwrap();
    assert_full(&snapshot(&*store).await, 6);
    assert_eq!(
        store
            .load_sent_message(&jid(GROUPS[0]), MESSAGE_IDS[0])
            .await
            .unwrap()
            .unwrap()
            .retry_counts,
        vec![]
    );
    let _ = LocalIdentity::generate(&mut StdRng::seed_from_u64(1));
}
