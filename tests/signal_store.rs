//! The store traits through the in-memory store, used the way the client uses them:
//! load records, run the sans-IO crypto, commit every change of one message in one batch.
//! Covers trust on first use and the identity-change outcome.

use rand::SeedableRng;
use rand::rngs::StdRng;
use waevent::jid::Jid;
use waevent::signal::store::{
    IdentityChange, IdentityStore, MemorySignalStore, PreKeyStore, SessionStore, SignalStateBatch,
    SignalStore, SignalStoreExt, SignedPreKeyStore,
};
use waevent::signal::{
    CiphertextMessage, LocalIdentity, PreKeyBundle, PreKeySignalMessage, PreKeys, ProtocolAddress,
    SenderKeyName, SenderKeyRecord, SignedPreKeyRecord, decrypt_prekey, encrypt, generate_prekeys,
    group, initialize_from_bundle,
};

struct Device {
    store: MemorySignalStore,
    address: ProtocolAddress,
}

async fn device(jid: &str, rng: &mut StdRng) -> Device {
    let identity = LocalIdentity::generate(rng);
    let store = MemorySignalStore::new(identity.clone());
    let signed = SignedPreKeyRecord::generate(&identity.key_pair, 1, 1_700_000_000_000, rng);
    store
        .store_signed_prekey(1, &signed.serialize())
        .await
        .unwrap();
    let prekeys: Vec<(u32, Vec<u8>)> = generate_prekeys(1, 5, rng)
        .iter()
        .map(|p| (p.id, p.serialize()))
        .collect();
    store.store_prekeys(&prekeys).await.unwrap();
    Device {
        store,
        address: ProtocolAddress::from_jid(&Jid::parse(jid).unwrap()),
    }
}

/// What the server would hand out for `d`: its bundle with one one-time prekey.
async fn fetch_bundle(d: &Device, prekey: u32) -> PreKeyBundle {
    let identity = d.store.local_identity().await.unwrap();
    let signed = d.store.load_signed_prekey_record(1).await.unwrap().unwrap();
    let one = d.store.load_prekey_record(prekey).await.unwrap().unwrap();
    PreKeyBundle::from_local(&identity, d.address.device_id, &signed, Some(&one))
}

async fn send(
    from: &Device,
    to: &Device,
    bundle: Option<PreKeyBundle>,
    text: &[u8],
    rng: &mut StdRng,
) -> CiphertextMessage {
    let ours = from.store.local_identity().await.unwrap();
    let mut record = from.store.load_session_record(&to.address).await.unwrap();
    let mut batch = SignalStateBatch::new();
    if let Some(bundle) = bundle {
        initialize_from_bundle(&mut record, &ours, &bundle, rng).unwrap();
        batch.put_identity(to.address.clone(), bundle.identity_key);
    }
    let out = encrypt(&mut record, text).unwrap();
    batch.put_session(to.address.clone(), &record);
    from.store.commit(batch).await.unwrap();
    out
}

async fn receive_pkmsg(
    at: &Device,
    from: &Device,
    bytes: &[u8],
    rng: &mut StdRng,
) -> (Vec<u8>, IdentityChange) {
    let ours = at.store.local_identity().await.unwrap();
    let msg = PreKeySignalMessage::deserialize(bytes).unwrap();
    let mut record = at.store.load_session_record(&from.address).await.unwrap();
    let (mut signed, mut one_time) = (None, None);
    if let Some(needed) = record.prekeys_needed(&msg) {
        signed = at
            .store
            .load_signed_prekey_record(needed.signed_prekey_id)
            .await
            .unwrap();
        if let Some(id) = needed.prekey_id {
            one_time = at.store.load_prekey_record(id).await.unwrap();
        }
    }
    let out = decrypt_prekey(
        &mut record,
        &ours,
        &msg,
        PreKeys {
            signed: signed.as_ref(),
            one_time: one_time.as_ref(),
        },
        rng,
    )
    .unwrap();
    let mut batch = SignalStateBatch::new();
    batch
        .put_session(from.address.clone(), &record)
        .put_identity(from.address.clone(), out.remote_identity);
    if let Some(id) = out.consumed_prekey_id {
        batch.remove_prekey(id);
    }
    let changes = at.store.commit(batch).await.unwrap();
    (out.plaintext, changes[0])
}

#[tokio::test]
async fn pkmsg_flow_through_stores_with_identity_outcomes() {
    let rng = &mut StdRng::seed_from_u64(7);
    let alice = device("15550001111:2@s.whatsapp.net", rng).await;
    let bob = device("123456789012345:3@lid", rng).await;
    assert_eq!(bob.address.to_string(), "123456789012345_1:3");

    let bundle = fetch_bundle(&bob, 2).await;
    let m = send(&alice, &bob, Some(bundle), b"hello", rng).await;
    assert_eq!(m.enc_type(), "pkmsg");
    let (plain, change) = receive_pkmsg(&bob, &alice, m.bytes(), rng).await;
    assert_eq!(plain, b"hello");
    assert_eq!(change, IdentityChange::New);
    assert_eq!(
        bob.store.prekey_count().await.unwrap(),
        4,
        "consumed prekey deleted in the commit"
    );
    assert!(bob.store.load_prekey(2).await.unwrap().is_none());

    // The same pkmsg processed twice would be a duplicate; a second pkmsg on the same
    // session reports the identity as unchanged.
    let m2 = send(&alice, &bob, None, b"again", rng).await;
    let (plain, change) = receive_pkmsg(&bob, &alice, m2.bytes(), rng).await;
    assert_eq!(
        (plain.as_slice(), change),
        (&b"again"[..], IdentityChange::Unchanged)
    );

    // Alice reinstalls: same address, new identity. Bob records it and learns it changed.
    let old_identity = *alice.store.local_identity().await.unwrap().public_key();
    let alice2 = Device {
        store: MemorySignalStore::new(LocalIdentity::generate(rng)),
        address: alice.address.clone(),
    };
    let bundle = fetch_bundle(&bob, 3).await;
    let m3 = send(&alice2, &bob, Some(bundle), b"new phone", rng).await;
    let (plain, change) = receive_pkmsg(&bob, &alice2, m3.bytes(), rng).await;
    assert_eq!(plain, b"new phone");
    assert_eq!(
        change,
        IdentityChange::Replaced {
            previous: old_identity
        }
    );
    let stored = bob
        .store
        .load_identities(std::slice::from_ref(&alice.address))
        .await
        .unwrap();
    assert_eq!(
        stored[0].as_ref(),
        Some(alice2.store.local_identity().await.unwrap().public_key())
    );
}

#[tokio::test]
async fn batch_commit_and_user_level_deletes() {
    let rng = &mut StdRng::seed_from_u64(8);
    let me = device("15550002222:1@s.whatsapp.net", rng).await;
    let peer_ids = [0u16, 1, 7];
    let mut batch = SignalStateBatch::new();
    for d in peer_ids {
        let peer = device(&format!("15550003333:{d}@s.whatsapp.net"), rng).await;
        let mut record = Default::default();
        initialize_from_bundle(
            &mut record,
            &me.store.local_identity().await.unwrap(),
            &fetch_bundle(&peer, 1).await,
            rng,
        )
        .unwrap();
        batch.put_session(peer.address.clone(), &record);
    }
    let group_name = SenderKeyName::new(
        &Jid::parse("120363000000000001@g.us").unwrap(),
        &Jid::parse("15550002222:1@s.whatsapp.net").unwrap(),
    );
    let mut own = SenderKeyRecord::new();
    group::create_distribution_message(&mut own, rng).unwrap();
    batch.put_sender_key(group_name.clone(), &own);
    assert!(!batch.is_empty());
    assert!(me.store.commit(batch).await.unwrap().is_empty());

    assert_eq!(
        me.store.session_devices("15550003333").await.unwrap(),
        vec![0, 1, 7]
    );
    let addrs: Vec<ProtocolAddress> = [0u32, 1, 5]
        .iter()
        .map(|&d| ProtocolAddress::new("15550003333", d))
        .collect();
    let loaded = me.store.load_session_records(&addrs).await.unwrap();
    assert_eq!(
        loaded
            .iter()
            .map(|r| r.has_current_session())
            .collect::<Vec<_>>(),
        vec![true, true, false]
    );
    let sk = me.store.load_sender_key_record(&group_name).await.unwrap();
    assert_eq!(sk.serialize(), own.serialize());

    me.store.delete_sessions_of("15550003333").await.unwrap();
    assert!(
        me.store
            .session_devices("15550003333")
            .await
            .unwrap()
            .is_empty()
    );
    let mut removal = SignalStateBatch::new();
    removal.removed_sender_keys.push(group_name.clone());
    me.store.commit(removal).await.unwrap();
    assert!(
        me.store
            .load_sender_key_record(&group_name)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(me.store.max_prekey_id().await.unwrap(), Some(5));
}

#[tokio::test]
async fn corrupt_stored_records_are_typed_errors() {
    let rng = &mut StdRng::seed_from_u64(9);
    let me = device("15550004444@s.whatsapp.net", rng).await;
    let addr = ProtocolAddress::new("x", 1);
    let mut batch = SignalStateBatch::new();
    batch.sessions.push((addr.clone(), vec![0xFF, 0x01].into()));
    me.store.commit(batch).await.unwrap();
    let err = me.store.load_session_record(&addr).await.unwrap_err();
    assert!(err.to_string().contains("session record"), "{err}");
}
