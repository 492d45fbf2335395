//! The receive pipeline against an independent sender (`tools/interop/receive_member.js`:
//! npm `libsignal@6.0.0` sessions, Baileys 7's sender keys, WAProto and WABinary), both
//! directions:
//! * their bytes → us: a group `<message>` encoded by Baileys' WABinary, with a pkmsg
//!   (libsignal, from our bundle) carrying the SKDM and an skmsg (Baileys' GroupCipher)
//!   carrying the content, is parsed, decrypted, unpadded and its message secret kept;
//! * our bytes → them: our retry receipt is decoded by Baileys' WABinary, its `<keys>`
//!   start a libsignal session as a sender answering a retry does, and the re-sent
//!   pkmsg (content + fresh SKDM) decrypts here.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use waevent::binary::{marshal, unmarshal};
use waevent::client::decrypt::{Decryption, decrypt_envelope};
use waevent::client::envelope::{Envelope, RetryKeys, RetryReason, RetryRequest, retry_receipt};
use waevent::client::receive_support::LocalDevice;
use waevent::jid::Jid;
use waevent::signal::generate_prekeys;
use waevent::store::{MemoryStore, Store, StoreBatch};

const GROUP: &str = "120363000000000077@g.us";
const SENDER: &str = "70000077:4@lid";
const SENDER_PN: &str = "5511700000077:4@s.whatsapp.net";

fn member(request: &Value) -> Value {
    let out = common::run_node("receive_member.js", request.to_string().as_bytes());
    serde_json::from_slice(&out).expect("receive_member.js replies JSON")
}

async fn decrypt(store: &MemoryStore, local: &LocalDevice, frame_hex: &str) -> Decryption {
    let node = unmarshal(&hex::decode(frame_hex).unwrap()).expect("Baileys' bytes decode");
    let envelope = Envelope::parse(&node, &local.own_ids()).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    decrypt_envelope(store, &local.credentials.identity, &envelope, &mut rng, 1)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_baileys_member_message_decrypts_and_our_retry_receipt_starts_its_new_session() {
    let local = LocalDevice::fixed();
    let store = local.store().await;
    let creds = &local.credentials;
    let prekey = &local.prekeys[0];
    let common_fields = json!({
        "group": GROUP, "sender": SENDER, "senderPn": SENDER_PN, "t": "1700000123",
        "text": "Baileys says hi", "secret": B64.encode([0x5a; 32]),
    });
    let mut send = common_fields.clone();
    send["op"] = json!("send");
    send["id"] = json!("3EB0INTEROP1");
    send["local"] = json!({
        "identity": B64.encode(creds.identity.public_key().as_bytes()),
        "registrationId": creds.identity.registration_id,
        "signed": {
            "id": local.signed_prekey.id,
            "pub": B64.encode(local.signed_prekey.key_pair.public.as_bytes()),
            "sig": B64.encode(local.signed_prekey.signature),
        },
        "preKey": { "id": prekey.id, "pub": B64.encode(prekey.key_pair.public.as_bytes()) },
    });
    let sent = member(&send);

    // Their bytes → us.
    let d = decrypt(&store, &local, sent["stanza"].as_str().unwrap()).await;
    assert_eq!(d.failure, None);
    assert_eq!(d.messages.len(), 1);
    let m = &d.messages[0];
    assert_eq!(m.info.id, "3EB0INTEROP1");
    assert_eq!(m.info.sender, Jid::parse(SENDER).unwrap());
    assert_eq!(m.info.sender_alt, Some(Jid::parse(SENDER_PN).unwrap()));
    assert_eq!(m.info.push_name.as_deref(), Some("Baileys member"));
    assert_eq!(m.message.conversation.as_deref(), Some("Baileys says hi"));
    assert_eq!(d.batch.secrets.len(), 1);
    assert_eq!(d.batch.secrets[0].secret.as_bytes(), &[0x5a; 32]);
    assert_eq!(d.batch.signal.removed_prekeys, vec![prekey.id]);
    assert_eq!(d.batch.signal.sender_keys.len(), 1);
    store.commit_batch(d.batch).await.unwrap();

    // Our retry receipt (count 2: with keys) → them. The fresh prekey is stored first,
    // as the client does.
    let fresh = generate_prekeys(500, 1, &mut StdRng::seed_from_u64(2)).remove(0);
    store
        .commit_batch(StoreBatch {
            prekeys: vec![(fresh.id, fresh.serialize())],
            uploaded_prekeys: vec![fresh.id],
            ..StoreBatch::default()
        })
        .await
        .unwrap();
    let original = unmarshal(&hex::decode(sent["stanza"].as_str().unwrap()).unwrap()).unwrap();
    let receipt = retry_receipt(
        &original,
        &RetryRequest {
            count: 2,
            reason: RetryReason::BadMac,
            registration_id: creds.identity.registration_id,
            keys: Some(RetryKeys {
                identity: creds.identity.public_key(),
                prekey: &fresh,
                signed_prekey: &local.signed_prekey,
                device_identity: creds.account.as_deref().unwrap(),
            }),
        },
    )
    .unwrap();
    let mut resend = common_fields.clone();
    resend["op"] = json!("resend");
    resend["receipt"] = json!(hex::encode(marshal(&receipt).unwrap()));
    resend["identity"] = sent["identity"].clone();
    resend["registrationId"] = sent["registrationId"].clone();
    resend["text"] = json!("Baileys says hi (again)");
    let answered = member(&resend);
    let seen = &answered["receipt"];
    assert_eq!(seen["tag"], "receipt");
    assert_eq!(seen["attrs"]["id"], "3EB0INTEROP1");
    assert_eq!(seen["attrs"]["type"], "retry");
    assert_eq!(seen["attrs"]["to"], GROUP);
    assert_eq!(seen["attrs"]["participant"], SENDER);
    let children = seen["content"].as_array().unwrap();
    let tags: Vec<&str> = children
        .iter()
        .map(|c| c["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["retry", "registration", "keys"]);
    assert_eq!(
        children[0]["attrs"],
        json!({"v": "1", "id": "3EB0INTEROP1", "t": "1700000123", "count": "2", "error": "7"})
    );
    assert_eq!(
        children[1]["content"],
        hex::encode(creds.identity.registration_id.to_be_bytes())
    );
    let keys: Vec<&str> = children[2]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tag"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["type", "identity", "key", "skey", "device-identity"]);

    // Their re-send on the session they built from our keys → us.
    let d = decrypt(&store, &local, answered["stanza"].as_str().unwrap()).await;
    assert_eq!(d.failure, None);
    assert_eq!(d.messages.len(), 1);
    assert_eq!(
        d.messages[0].message.conversation.as_deref(),
        Some("Baileys says hi (again)")
    );
    assert_eq!(d.batch.signal.removed_prekeys, vec![fresh.id]);
    assert_eq!(
        d.batch.signal.sender_keys.len(),
        1,
        "the fresh SKDM is processed"
    );
    store.commit_batch(d.batch).await.unwrap();
}
