//! End-to-end: `Client::send_message` against the simulator's groups (issue 5 items 1,
//! 2 and 8). Every simulated member device decrypts what it receives with its own
//! Signal state; these tests read what each device made of each message.
//!
//! * a card reaches every device of a LID group; the next one carries no SKDM for the
//!   members (only our own phone gets one: own devices are never memoised);
//! * a member removed (w:gp2 notification) makes the next card use a new sender key;
//! * a stale member list (notification not applied) gets `error=409` + the server's
//!   phash; the client refreshes and resends once with the same id;
//! * a device that lost its session recovers through a retry receipt;
//! * a crash between the commit and the write: the stored stanza goes out unchanged
//!   after the next login (one id, one delivery), and later sends still decrypt.

mod client_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::OsRng;
use waevent::binary::Node;
use waevent::client::{Client, Event, Events, OutgoingMessage, SendError, StanzaHandler};
use waevent::event::EventCard;
use waevent::jid::Jid;
use waevent::signal::SenderKeyMessage;
use waevent::signal::address::{ProtocolAddress, SenderKeyName};
use waevent::signal::curve::PublicKey;
use waevent::signal::identity::LocalIdentity;
use waevent::signal::store::{
    IdentityChange, IdentityStore, PreKeyStore, SenderKeyStore, SessionStore, SignalStateBatch,
    SignalStore, SignalStoreExt, SignedPreKeyStore, StoreResult,
};
use waevent::sim::{DeviceView, GroupAddressing, GroupSpec, SimPhone, SimServer};
use waevent::store::*;

use client_support::*;

/// A [`MemoryStore`] that, when armed, "crashes" right after committing a send: the
/// batch with the pending message is stored, then the commit reports an error, so the
/// bytes never leave — as if the process died between the commit and the write.
struct CrashAfterCommit {
    inner: MemoryStore,
    armed: AtomicBool,
}

#[async_trait]
impl IdentityStore for CrashAfterCommit {
    async fn local_identity(&self) -> StoreResult<LocalIdentity> {
        self.inner.local_identity().await
    }
    async fn load_identities(
        &self,
        addresses: &[ProtocolAddress],
    ) -> StoreResult<Vec<Option<PublicKey>>> {
        self.inner.load_identities(addresses).await
    }
    async fn save_identity(
        &self,
        address: &ProtocolAddress,
        identity: &PublicKey,
    ) -> StoreResult<IdentityChange> {
        self.inner.save_identity(address, identity).await
    }
    async fn delete_identities_of(&self, name: &str) -> StoreResult<()> {
        self.inner.delete_identities_of(name).await
    }
}

#[async_trait]
impl PreKeyStore for CrashAfterCommit {
    async fn load_prekey(&self, id: u32) -> StoreResult<Option<Vec<u8>>> {
        self.inner.load_prekey(id).await
    }
    async fn store_prekeys(&self, prekeys: &[(u32, Vec<u8>)]) -> StoreResult<()> {
        self.inner.store_prekeys(prekeys).await
    }
    async fn remove_prekeys(&self, ids: &[u32]) -> StoreResult<()> {
        self.inner.remove_prekeys(ids).await
    }
    async fn prekey_count(&self) -> StoreResult<usize> {
        self.inner.prekey_count().await
    }
    async fn max_prekey_id(&self) -> StoreResult<Option<u32>> {
        self.inner.max_prekey_id().await
    }
}

#[async_trait]
impl SignedPreKeyStore for CrashAfterCommit {
    async fn load_signed_prekey(&self, id: u32) -> StoreResult<Option<Vec<u8>>> {
        self.inner.load_signed_prekey(id).await
    }
    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> StoreResult<()> {
        self.inner.store_signed_prekey(id, record).await
    }
    async fn remove_signed_prekey(&self, id: u32) -> StoreResult<()> {
        self.inner.remove_signed_prekey(id).await
    }
}

#[async_trait]
impl SessionStore for CrashAfterCommit {
    async fn load_sessions(
        &self,
        addresses: &[ProtocolAddress],
    ) -> StoreResult<Vec<Option<Vec<u8>>>> {
        self.inner.load_sessions(addresses).await
    }
    async fn session_devices(&self, name: &str) -> StoreResult<Vec<u32>> {
        self.inner.session_devices(name).await
    }
    async fn delete_sessions_of(&self, name: &str) -> StoreResult<()> {
        self.inner.delete_sessions_of(name).await
    }
}

#[async_trait]
impl SenderKeyStore for CrashAfterCommit {
    async fn load_sender_key(&self, name: &SenderKeyName) -> StoreResult<Option<Vec<u8>>> {
        self.inner.load_sender_key(name).await
    }
}

#[async_trait]
impl SignalStore for CrashAfterCommit {
    async fn commit(&self, batch: SignalStateBatch) -> StoreResult<Vec<IdentityChange>> {
        SignalStore::commit(&self.inner, batch).await
    }
}

#[async_trait]
impl Store for CrashAfterCommit {
    async fn commit_batch(&self, batch: StoreBatch) -> Result<CommitOutcome> {
        let crash = batch
            .sent_messages
            .iter()
            .any(|m| m.state == SentState::Pending)
            && self.armed.swap(false, Ordering::SeqCst);
        let outcome = self.inner.commit_batch(batch).await?;
        if crash {
            return Err(Error::Invalid {
                what: "test",
                detail: "simulated crash right after the commit".into(),
            });
        }
        Ok(outcome)
    }
    async fn load_credentials(&self) -> Result<Option<DeviceCredentials>> {
        self.inner.load_credentials().await
    }
    async fn clear_all(&self) -> Result<()> {
        self.inner.clear_all().await
    }
    async fn unuploaded_prekeys(&self, limit: usize) -> Result<Vec<(u32, Vec<u8>)>> {
        self.inner.unuploaded_prekeys(limit).await
    }
    async fn lids_for_pns(&self, pns: &[Jid]) -> Result<Vec<Option<Jid>>> {
        self.inner.lids_for_pns(pns).await
    }
    async fn pns_for_lids(&self, lids: &[Jid]) -> Result<Vec<Option<Jid>>> {
        self.inner.pns_for_lids(lids).await
    }
    async fn load_device_lists(&self, users: &[Jid]) -> Result<Vec<Option<DeviceList>>> {
        self.inner.load_device_lists(users).await
    }
    async fn load_group(&self, group: &Jid) -> Result<Option<GroupMetadata>> {
        self.inner.load_group(group).await
    }
    async fn sender_key_holders(&self, group: &Jid) -> Result<Vec<Jid>> {
        self.inner.sender_key_holders(group).await
    }
    async fn message_secret(
        &self,
        chat: &Jid,
        sender: &Jid,
        message_id: &str,
    ) -> Result<Option<MessageSecretRecord>> {
        self.inner.message_secret(chat, sender, message_id).await
    }
    async fn load_event(&self, chat: &Jid, message_id: &str) -> Result<Option<EventRecord>> {
        self.inner.load_event(chat, message_id).await
    }
    async fn events_by_id(&self, message_id: &str) -> Result<Vec<EventRecord>> {
        self.inner.events_by_id(message_id).await
    }
    async fn rsvps(&self, chat: &Jid, event_id: &str) -> Result<Vec<RsvpRecord>> {
        self.inner.rsvps(chat, event_id).await
    }
    async fn load_sent_message(
        &self,
        chat: &Jid,
        message_id: &str,
    ) -> Result<Option<StoredSentMessage>> {
        self.inner.load_sent_message(chat, message_id).await
    }
    async fn pending_sent_messages(&self, limit: usize) -> Result<Vec<StoredSentMessage>> {
        self.inner.pending_sent_messages(limit).await
    }
    async fn bump_sent_retry(
        &self,
        chat: &Jid,
        message_id: &str,
        device: &Jid,
    ) -> Result<Option<u32>> {
        self.inner.bump_sent_retry(chat, message_id, device).await
    }
    async fn load_decrypted(&self, hash: &[u8; 32]) -> Result<Option<DecryptedMessage>> {
        self.inner.load_decrypted(hash).await
    }
    async fn due_webhooks(&self, now_ms: i64, limit: usize) -> Result<Vec<WebhookJob>> {
        self.inner.due_webhooks(now_ms, limit).await
    }
    async fn reschedule_webhook(&self, id: &str, next: i64, error: &str) -> Result<bool> {
        self.inner.reschedule_webhook(id, next, error).await
    }
    async fn delete_webhook(&self, id: &str) -> Result<bool> {
        self.inner.delete_webhook(id).await
    }
    async fn webhook_count(&self) -> Result<u64> {
        self.inner.webhook_count().await
    }
    async fn claim_idempotency_key(&self, claim: &IdempotencyClaim) -> Result<IdempotencyState> {
        self.inner.claim_idempotency_key(claim).await
    }
    async fn complete_idempotency_key(
        &self,
        instance: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<()> {
        self.inner
            .complete_idempotency_key(instance, key, response)
            .await
    }
    async fn release_idempotency_key(&self, instance: &str, key: &str) -> Result<bool> {
        self.inner.release_idempotency_key(instance, key).await
    }
    async fn prune(&self, before: PruneBefore) -> Result<PruneCounts> {
        self.inner.prune(before).await
    }
}

/// Acks like the default handler, and first hands notifications and retry receipts to
/// the send pipeline (what the receive pipeline's handler does).
struct SendSideHandler {
    /// `w:gp2` notifications handled so far.
    group_notifications: Arc<AtomicUsize>,
}

#[async_trait]
impl StanzaHandler for SendSideHandler {
    async fn handle(&self, client: &Client, stanza: Node) {
        match stanza.tag.as_ref() {
            "notification" => {
                client.handle_fanout_notification(&stanza).await;
                if stanza.attr_str("type") == Some("w:gp2") {
                    self.group_notifications.fetch_add(1, Ordering::SeqCst);
                }
            }
            "receipt" if stanza.attr_str("type") == Some("retry") => {
                client.handle_retry_receipt(&stanza).await
            }
            _ => {}
        }
        if matches!(
            stanza.tag.as_ref(),
            "message" | "receipt" | "notification" | "call"
        ) {
            let _ = client.send_ack(&stanza, None).await;
        }
    }
}

struct Setup {
    /// `w:gp2` notifications the handler applied (when it handles them).
    group_notifications: Arc<AtomicUsize>,
    sim: SimServer,
    client: Client,
    events: Events,
    store: Arc<CrashAfterCommit>,
    phone: SimPhone,
    device: Jid,
    group: Jid,
}

/// A paired client whose account is in a LID group of `members` simulated members
/// with 1–3 devices each.
async fn setup(members: usize, handle_notifications: bool) -> Setup {
    setup_with(members, 1..=3, handle_notifications).await
}

/// [`setup`] with `devices` per member.
async fn setup_with(
    members: usize,
    devices: std::ops::RangeInclusive<u16>,
    handle_notifications: bool,
) -> Setup {
    let sim = start_sim().await;
    let phone = sim.create_account("5511988880001");
    let store = Arc::new(CrashAfterCommit {
        inner: MemoryStore::new(),
        armed: AtomicBool::new(false),
    });
    let mut config = client_config(&sim);
    if members > 100 {
        // The simulator decrypts for every member device before it answers pings; the
        // test keepalive (5 s without answers = dead) is too tight for thousands.
        config.keepalive = waevent::client::KeepAliveConfig::default();
        config.iq_timeout = Duration::from_secs(120);
    }
    let (client, mut events) = Client::new(store.clone(), config);
    let group_notifications = Arc::new(AtomicUsize::new(0));
    if handle_notifications {
        client.set_stanza_handler(Arc::new(SendSideHandler {
            group_notifications: group_notifications.clone(),
        }));
    }
    let device = pair_by_qr(&client, &mut events, &phone).await;
    let group = sim
        .create_group(GroupSpec {
            subject: "Team".into(),
            accounts: vec![phone.pn()],
            simulated_members: members,
            devices_per_member: devices,
            addressing: GroupAddressing::Lid,
        })
        .expect("group");
    Setup {
        group_notifications,
        sim,
        client,
        events,
        store,
        phone,
        device,
        group,
    }
}

fn card(name: &str) -> (EventCard, OutgoingMessage) {
    let card = EventCard::builder()
        .name(name)
        .description("Bring coffee")
        .start_unix(1_900_000_000)
        .build()
        .expect("card");
    let (message, _secret) = card.to_message(&mut OsRng);
    (
        card,
        OutgoingMessage {
            message,
            ..OutgoingMessage::default()
        },
    )
}

/// The group's devices except our own sending device (in LID form).
fn recipients(s: &Setup, own_lid_device: &Jid) -> Vec<Jid> {
    let mut d: Vec<Jid> = s
        .sim
        .group_devices(&s.group)
        .unwrap()
        .into_iter()
        .filter(|d| d != own_lid_device)
        .collect();
    d.sort();
    d
}

/// Waits until `want` devices have a view of `id`; returns the views.
async fn views(sim: &SimServer, group: &Jid, id: &str, want: usize) -> Vec<DeviceView> {
    for _ in 0..200 {
        let v = sim.group_views(group, id).unwrap();
        if v.len() >= want {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.group_views(group, id).unwrap()
}

fn assert_everyone_read(views: &[DeviceView], devices: &[Jid], card: &EventCard) {
    let seen: Vec<&Jid> = views.iter().map(|v| &v.device).collect();
    assert_eq!(
        seen,
        devices.iter().collect::<Vec<_>>(),
        "devices with a view"
    );
    for v in views {
        assert_eq!(v.error, None, "{} failed", v.device);
        assert_eq!(v.card.as_ref(), Some(card), "{} card", v.device);
    }
}

/// The `<enc>` types a device received for message `id`.
fn enc_types(sim: &SimServer, device: &Jid, id: &str) -> Vec<String> {
    sim.with_world(|w| w.captured_stanzas(device))
        .iter()
        .filter(|n| n.tag == "message" && n.attr_str("id") == Some(id))
        .flat_map(|n| n.children_by_tag("enc"))
        .filter_map(|e| e.attr_str("type").map(str::to_owned))
        .collect()
}

/// The sender-key id of the skmsg a device received for message `id`.
fn skmsg_key_id(sim: &SimServer, device: &Jid, id: &str) -> u32 {
    let stanza = sim
        .with_world(|w| w.captured_stanzas(device))
        .into_iter()
        .find(|n| n.tag == "message" && n.attr_str("id") == Some(id))
        .expect("captured");
    let enc = stanza
        .children_by_tag("enc")
        .find(|e| e.attr_str("type") == Some("skmsg"))
        .expect("skmsg");
    SenderKeyMessage::deserialize(enc.bytes().unwrap())
        .unwrap()
        .key_id()
}

async fn own_lid(client: &Client) -> Jid {
    client.own_lid().await.expect("own LID")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_reaches_every_device_and_the_warm_send_carries_no_skdm() {
    let s = setup(40, true).await;
    let me = own_lid(&s.client).await;
    let devices = recipients(&s, &me);
    assert!(devices.len() > 40, "{} devices", devices.len());

    let (card1, out) = card("Standup");
    let r1 = s
        .client
        .send_message(&s.group, out)
        .await
        .expect("first card");
    assert!(r1.message_id.starts_with("3EB0"), "{}", r1.message_id);
    // Cold: every device got the sender key pairwise.
    assert_eq!(r1.pairwise_devices, devices.len());
    let v = views(&s.sim, &s.group, &r1.message_id, devices.len()).await;
    assert_everyone_read(&v, &devices, &card1);
    let member = devices.iter().find(|d| d.user != me.user).unwrap();
    let types = enc_types(&s.sim, member, &r1.message_id);
    assert!(
        types.contains(&"pkmsg".to_owned()) && types.contains(&"skmsg".to_owned()),
        "{types:?}"
    );

    // Warm: nobody gets an SKDM, our own other devices (the phone) included.
    let (card2, out) = card("Retro");
    let r2 = s
        .client
        .send_message(&s.group, out)
        .await
        .expect("second card");
    assert_eq!(r2.pairwise_devices, 0);
    let v = views(&s.sim, &s.group, &r2.message_id, devices.len()).await;
    assert_everyone_read(&v, &devices, &card2);
    assert_eq!(enc_types(&s.sim, member, &r2.message_id), ["skmsg"]);
    for own in devices.iter().filter(|d| d.user == me.user) {
        assert_eq!(enc_types(&s.sim, own, &r2.message_id), ["skmsg"], "{own}");
    }
    // Same sender key, next iteration.
    assert_eq!(
        skmsg_key_id(&s.sim, member, &r1.message_id),
        skmsg_key_id(&s.sim, member, &r2.message_id)
    );
    // Stored: acked, with the prepared stanza; sender-key memory holds every device,
    // our own other devices included.
    let sent = s
        .store
        .load_sent_message(&s.group, &r2.message_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sent.sent.state, SentState::Acked);
    let holders = s.store.sender_key_holders(&s.group).await.unwrap();
    assert_eq!(holders.len(), devices.len());
    assert!(holders.iter().any(|h| h.user == me.user));
    assert!(
        s.sim.protocol_errors().is_empty(),
        "{:?}",
        s.sim.protocol_errors()
    );
    let _ = (&s.phone, &s.device, &s.events);
    s.client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_member_rotates_the_sender_key() {
    let s = setup(8, true).await;
    let me = own_lid(&s.client).await;
    let (_, out) = card("Before");
    let r1 = s.client.send_message(&s.group, out).await.unwrap();
    let members = s.sim.group_members(&s.group).unwrap();
    let leaver = members.iter().find(|m| m.user != me.user).unwrap().clone();
    s.sim.remove_member(&s.group, &leaver).unwrap();
    // The w:gp2 notification reaches the handler: our key and its memory are gone.
    for _ in 0..100 {
        if s.store
            .sender_key_holders(&s.group)
            .await
            .unwrap()
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        s.store
            .sender_key_holders(&s.group)
            .await
            .unwrap()
            .is_empty()
    );

    let devices = recipients(&s, &me);
    assert!(devices.iter().all(|d| d.user != leaver.user));
    let (card2, out) = card("After");
    let r2 = s.client.send_message(&s.group, out).await.unwrap();
    // Everyone gets the new key again.
    assert_eq!(r2.pairwise_devices, devices.len());
    let v = views(&s.sim, &s.group, &r2.message_id, devices.len()).await;
    assert_everyone_read(&v, &devices, &card2);
    let stayer = devices.iter().find(|d| d.user != me.user).unwrap();
    let old_key = skmsg_key_id(&s.sim, stayer, &r1.message_id);
    let new_key = skmsg_key_id(&s.sim, stayer, &r2.message_id);
    assert_ne!(old_key, new_key, "a new sender key after the removal");
    // The removed member's devices got nothing (and only ever held the old key).
    let leaver_device = leaver.with_device(0);
    assert!(
        s.sim
            .with_world(|w| w.device_view(&leaver_device, &s.group, &r2.message_id))
            .is_none()
    );
    s.client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_group_query_does_not_hold_up_sends_to_other_groups() {
    let s = setup(3, true).await;
    let other = s
        .sim
        .create_group(GroupSpec {
            subject: "Other".into(),
            accounts: vec![s.phone.pn()],
            simulated_members: 2,
            devices_per_member: 1..=2,
            addressing: GroupAddressing::Lid,
        })
        .unwrap();
    // The server is slow to describe the first group: its send waits for the answer.
    s.sim.hold_group_info(&s.group);
    let slow = tokio::spawn({
        let client = s.client.clone();
        let group = s.group.clone();
        async move { client.send_message(&group, card("Slow").1).await }
    });
    for _ in 0..200 {
        if s.sim.held_group_info(&s.group) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.sim.held_group_info(&s.group), 1, "the first send asked");
    // Meanwhile a send to another (also cold) group goes through.
    let fast = tokio::time::timeout(
        Duration::from_secs(3),
        s.client.send_message(&other, card("Fast").1),
    )
    .await
    .expect("the other group's send is not held up by the slow query")
    .unwrap();
    assert!(fast.pairwise_devices > 0);
    assert!(!slow.is_finished());
    s.sim.release_group_info(&s.group);
    let slow = slow.await.unwrap().unwrap();
    assert!(slow.pairwise_devices > 0);
    s.client.disconnect().await;
}

/// The group is described without the send lock; a member removed (and the
/// notification applied) while that answer is on its way must not get anything: the
/// send asks again under the lock instead of trusting the older answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_removed_while_the_group_is_described_gets_nothing() {
    let s = setup(4, true).await;
    let me = own_lid(&s.client).await;
    let leaver = s
        .sim
        .group_members(&s.group)
        .unwrap()
        .into_iter()
        .find(|m| m.user != me.user)
        .unwrap();
    let leaver_devices: Vec<Jid> = recipients(&s, &me)
        .into_iter()
        .filter(|d| d.user == leaver.user)
        .collect();
    assert!(!leaver_devices.is_empty());

    s.sim.hold_group_info(&s.group);
    let send = tokio::spawn({
        let client = s.client.clone();
        let group = s.group.clone();
        async move {
            client
                .send_message(&group, card("After the removal").1)
                .await
        }
    });
    for _ in 0..500 {
        if s.sim.held_group_info(&s.group) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.sim.held_group_info(&s.group), 1);
    // The held answer still lists the leaver; the removal's notification is applied
    // before that answer arrives.
    let applied = s.group_notifications.load(Ordering::SeqCst);
    s.sim.remove_member(&s.group, &leaver).unwrap();
    for _ in 0..1000 {
        if s.group_notifications.load(Ordering::SeqCst) > applied {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(s.group_notifications.load(Ordering::SeqCst) > applied);
    s.sim.release_group_info(&s.group);

    let receipt = send.await.unwrap().unwrap();
    for device in &leaver_devices {
        let session = s
            .store
            .load_session_record(&ProtocolAddress::from_jid(device))
            .await
            .unwrap();
        assert!(
            !session.has_current_session(),
            "nothing was ever encrypted for the removed member's {device}"
        );
        assert!(
            s.sim
                .with_world(|w| w.device_view(device, &s.group, &receipt.message_id))
                .is_none()
        );
    }
    s.client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_send_is_stored_as_refused_with_its_code() {
    // Notifications are not applied: the client still believes it is a member.
    let s = setup(3, false).await;
    let me = own_lid(&s.client).await;
    let (_, out) = card("First");
    s.client.send_message(&s.group, out).await.unwrap();
    let us = s
        .sim
        .group_members(&s.group)
        .unwrap()
        .into_iter()
        .find(|m| m.user == me.user)
        .unwrap();
    s.sim.remove_member(&s.group, &us).unwrap();

    let (_, out) = card("Second");
    let err = s.client.send_message(&s.group, out).await.unwrap_err();
    let SendError::ServerError { id, code } = err else {
        panic!("expected the server's refusal, got {err}");
    };
    assert_eq!(code, 403);
    let stored = s
        .store
        .load_sent_message(&s.group, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.sent.state, SentState::Refused { code: 403 });
    assert!(s.store.pending_sent_messages(10).await.unwrap().is_empty());
    s.client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_members_get_409_then_one_refreshed_resend() {
    // Notifications are not applied here: the client's member list goes stale.
    let s = setup(5, false).await;
    let me = own_lid(&s.client).await;
    let (_, out) = card("First");
    s.client.send_message(&s.group, out).await.unwrap();
    let other = s
        .sim
        .create_group(GroupSpec {
            subject: "Other".into(),
            accounts: vec![s.phone.pn()],
            simulated_members: 1,
            devices_per_member: 2..=2,
            addressing: GroupAddressing::Lid,
        })
        .unwrap();
    let newcomer = s
        .sim
        .group_members(&other)
        .unwrap()
        .into_iter()
        .find(|m| m.user != me.user)
        .unwrap();
    s.sim.add_member(&s.group, &newcomer).unwrap();

    let devices = recipients(&s, &me);
    let (card2, out) = card("Second");
    let r2 = s
        .client
        .send_message(&s.group, out)
        .await
        .expect("refreshed and resent");
    let v = views(&s.sim, &s.group, &r2.message_id, devices.len()).await;
    assert_everyone_read(&v, &devices, &card2);
    assert!(v.iter().any(|v| v.device.user == newcomer.user));
    // Only the 409 path can have refreshed the cached members (notifications are not
    // applied in this test).
    let cached = s.store.load_group(&s.group).await.unwrap().unwrap();
    assert!(cached.participants.iter().any(|p| p.jid == newcomer));
    s.client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_lost_its_session_recovers_through_a_retry_receipt() {
    let s = setup(4, true).await;
    let me = own_lid(&s.client).await;
    let devices = recipients(&s, &me);
    let (_, out) = card("One");
    s.client.send_message(&s.group, out).await.unwrap();
    let victim = devices.iter().find(|d| d.user != me.user).unwrap().clone();
    assert!(s.sim.with_world(|w| w.forget_sender(&victim, &me)));

    let (card2, out) = card("Two");
    let r2 = s.client.send_message(&s.group, out).await.unwrap();
    let mut view = None;
    for _ in 0..200 {
        view = s
            .sim
            .with_world(|w| w.device_view(&victim, &s.group, &r2.message_id));
        if view.as_ref().is_some_and(|v| v.card.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let view = view.expect("the victim saw the message");
    assert_eq!(
        view.card.as_ref(),
        Some(&card2),
        "recovered: {:?}",
        view.error
    );
    let sent = s
        .store
        .load_sent_message(&s.group, &r2.message_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sent.retry_counts.len(), 1, "one device asked");
    assert_eq!(sent.retry_counts[0].0, victim);
    // The victim lacks our sender key again: the next card carries an SKDM for it.
    let (card3, out) = card("Three");
    let r3 = s.client.send_message(&s.group, out).await.unwrap();
    let v = views(&s.sim, &s.group, &r3.message_id, devices.len()).await;
    assert_everyone_read(&v, &devices, &card3);
    assert!(enc_types(&s.sim, &victim, &r3.message_id).len() == 2);
    s.client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_commit_and_write_resends_the_same_stanza_after_login() {
    let mut s = setup(6, true).await;
    let me = own_lid(&s.client).await;
    let devices = recipients(&s, &me);
    let (card1, out) = card("Warm-up");
    let r1 = s.client.send_message(&s.group, out).await.unwrap();
    views(&s.sim, &s.group, &r1.message_id, devices.len()).await;

    s.store.armed.store(true, Ordering::SeqCst);
    let (card2, out) = card("Crash");
    let err = s.client.send_message(&s.group, out).await.unwrap_err();
    assert!(matches!(err, SendError::Store(_)), "{err}");
    let pending = s.store.pending_sent_messages(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    let id = pending[0].sent.message_id.clone();
    let stored_stanza = pending[0].sent.stanza.clone();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        s.sim.group_views(&s.group, &id).unwrap().is_empty(),
        "nothing left before the crash"
    );

    // "Restart": a new login resends the stored stanza as it is.
    s.client.disconnect().await;
    s.client.connect().await.unwrap();
    wait_for(&mut s.events, "login", |e| matches!(e, Event::Connected)).await;
    let v = views(&s.sim, &s.group, &id, devices.len()).await;
    assert_everyone_read(&v, &devices, &card2);
    let member = devices.iter().find(|d| d.user != me.user).unwrap();
    let deliveries = s
        .sim
        .with_world(|w| w.captured_stanzas(member))
        .iter()
        .filter(|n| n.tag == "message" && n.attr_str("id") == Some(id.as_str()))
        .count();
    assert_eq!(deliveries, 1, "one message id, delivered once");
    for _ in 0..100 {
        if s.store.pending_sent_messages(10).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(s.store.pending_sent_messages(10).await.unwrap().is_empty());
    let after = s
        .store
        .load_sent_message(&s.group, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.sent.stanza, stored_stanza, "never re-encrypted");

    // No key was used twice: the next card (next sender-key iteration) decrypts too.
    let (card3, out) = card("After restart");
    let r3 = s.client.send_message(&s.group, out).await.unwrap();
    let v = views(&s.sim, &s.group, &r3.message_id, devices.len()).await;
    assert_everyone_read(&v, &devices, &card3);
    let _ = card1;
    s.client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_card_reaches_every_device_of_the_peer() {
    let s = setup(1, true).await;
    let me = own_lid(&s.client).await;
    let peer = s
        .sim
        .group_members(&s.group)
        .unwrap()
        .into_iter()
        .find(|m| m.user != me.user)
        .unwrap();
    let peer_devices: Vec<Jid> = recipients(&s, &me)
        .into_iter()
        .filter(|d| d.user == peer.user)
        .collect();
    let (card1, out) = card("Coffee?");
    let r = s.client.send_message(&peer, out).await.expect("1:1 card");
    // Every peer device and our phone got a pairwise copy.
    assert_eq!(r.pairwise_devices, peer_devices.len() + 1);
    for d in &peer_devices {
        let mut view = None;
        for _ in 0..100 {
            view = s.sim.with_world(|w| {
                w.device_view(d, &me.to_non_ad(), &r.message_id)
                    .or_else(|| w.device_view(d, &s.phone.pn(), &r.message_id))
            });
            if view.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let view = view.unwrap_or_else(|| panic!("{d} got nothing"));
        assert_eq!(view.error, None);
        assert_eq!(view.card.as_ref(), Some(&card1));
    }
    s.client.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_message_for_changed_members_is_prepared_again_with_the_same_id() {
    let mut s = setup(4, true).await;
    let me = own_lid(&s.client).await;
    let (_, out) = card("Warm-up");
    s.client.send_message(&s.group, out).await.unwrap();

    s.store.armed.store(true, Ordering::SeqCst);
    let (card2, out) = card("Crash");
    assert!(s.client.send_message(&s.group, out).await.is_err());
    let id = s.store.pending_sent_messages(10).await.unwrap()[0]
        .sent
        .message_id
        .clone();
    // While the message waits, someone joins: its stored phash is now stale.
    let other = s
        .sim
        .create_group(GroupSpec {
            subject: "Other".into(),
            accounts: vec![s.phone.pn()],
            simulated_members: 1,
            devices_per_member: 1..=1,
            addressing: GroupAddressing::Lid,
        })
        .unwrap();
    let newcomer = s
        .sim
        .group_members(&other)
        .unwrap()
        .into_iter()
        .find(|m| m.user != me.user)
        .unwrap();
    s.sim.add_member(&s.group, &newcomer).unwrap();

    s.client.disconnect().await;
    s.client.connect().await.unwrap();
    wait_for(&mut s.events, "login", |e| matches!(e, Event::Connected)).await;
    let devices = recipients(&s, &me);
    let v = views(&s.sim, &s.group, &id, devices.len()).await;
    assert_everyone_read(&v, &devices, &card2);
    assert!(v.iter().any(|v| v.device.user == newcomer.user));
    for _ in 0..100 {
        if s.store.pending_sent_messages(10).await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(s.store.pending_sent_messages(10).await.unwrap().is_empty());
    s.client.disconnect().await;
}

/// Issue 5's "Done when": a card to a 1,024-member group (3 devices each: 3,071
/// devices besides ours) is decrypted by every simulated device with every field intact, and
/// the second card carries no member SKDM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1024_member_group_reads_the_card_and_the_second_card_has_no_skdm() {
    let s = setup_with(1023, 3..=3, true).await;
    let me = own_lid(&s.client).await;
    let devices = recipients(&s, &me);
    assert!(devices.len() > 3_000, "{} devices", devices.len());
    let started = std::time::Instant::now();
    let (card1, out) = card("All hands");
    let r1 = s
        .client
        .send_message(&s.group, out)
        .await
        .expect("cold send");
    let cold = started.elapsed();
    assert_eq!(r1.pairwise_devices, devices.len());
    let v = views(&s.sim, &s.group, &r1.message_id, devices.len()).await;
    assert_everyone_read(&v, &devices, &card1);
    let started = std::time::Instant::now();
    let (card2, out) = card("All hands, again");
    let r2 = s
        .client
        .send_message(&s.group, out)
        .await
        .expect("warm send");
    let warm = started.elapsed();
    assert_eq!(
        r2.pairwise_devices, 0,
        "the second card carries no SKDM at all"
    );
    let v = views(&s.sim, &s.group, &r2.message_id, devices.len()).await;
    assert_everyone_read(&v, &devices, &card2);
    eprintln!(
        "{} devices: cold send {cold:?}, warm send {warm:?} (debug build, simulator included)",
        devices.len()
    );
    s.client.disconnect().await;
}
