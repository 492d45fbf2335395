//! Shared by the store tests: fixtures for both backends, a small universe of keys,
//! a batch that fills every table, and a snapshot of everything reachable through the
//! `Store` API for those keys (to compare backends, reopened files and wiped stores).

#![allow(dead_code)]

use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use waevent::jid::Jid;
use waevent::signal::store::{IdentityChange, SignalStateBatch};
use waevent::signal::{LocalIdentity, ProtocolAddress, PublicKey, SenderKeyName};
use waevent::store::{
    AddressingMode, DecryptedMessage, DeviceCredentials, DeviceEntry, DeviceList, EventRecord,
    GroupMetadata, GroupParticipant, LidPnMapping, MemoryStore, MessageSecretRecord,
    ParticipantRole, RsvpRecord, RsvpStatus, SecretBytes, SenderKeyMemoryUpdate, SentMessage,
    SentState, SqliteStore, Store, StoreBatch, StoredSentMessage, WebhookJob,
};

pub fn jid(s: &str) -> Jid {
    Jid::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

pub fn creds(seed: u64) -> DeviceCredentials {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut c = DeviceCredentials::generate(&mut rng);
    c.pn = Some(jid("15550009:3@s.whatsapp.net"));
    c.lid = Some(jid("99009:3@lid"));
    c.account = Some(vec![seed as u8; 150]);
    c.platform = "android".into();
    c.push_name = format!("waevent {seed}");
    c.business_name = String::new();
    c.routing_info = Some(vec![8, 8, seed as u8]);
    c.login_counter = seed;
    c.next_prekey_id = 7;
    c.server_time_offset_ms = -1234;
    c
}

pub fn public(seed: u8) -> PublicKey {
    let mut rng = StdRng::seed_from_u64(u64::from(seed) + 1000);
    LocalIdentity::generate(&mut rng).key_pair.public
}

// ---- the universe of keys ----

pub const NAMES: [&str; 3] = ["15550001", "15550002", "99001_1"];
pub const DEVICES: [u32; 3] = [0, 1, 7];
pub const PREKEY_IDS: [u32; 6] = [1, 2, 3, 4, 5, 6];
pub const SIGNED_IDS: [u32; 2] = [1, 2];
pub const GROUPS: [&str; 2] = ["120363001@g.us", "120363002@g.us"];
pub const PNS: [&str; 3] = [
    "15550001@s.whatsapp.net",
    "15550002@s.whatsapp.net",
    "15550003@s.whatsapp.net",
];
pub const LIDS: [&str; 3] = ["99001@lid", "99002@lid", "99003@lid"];
pub const MESSAGE_IDS: [&str; 3] = ["3EB0A1", "3EB0A2", "3EB0A3"];
pub const WEBHOOK_IDS: [&str; 3] = ["w1", "w2", "w3"];

pub fn addresses() -> Vec<ProtocolAddress> {
    NAMES
        .iter()
        .flat_map(|n| DEVICES.iter().map(move |d| ProtocolAddress::new(*n, *d)))
        .collect()
}

pub fn sender_key_names() -> Vec<SenderKeyName> {
    GROUPS
        .iter()
        .flat_map(|g| {
            addresses()
                .into_iter()
                .take(4)
                .map(move |a| SenderKeyName::from_parts(*g, a))
        })
        .collect()
}

/// Users (PN and LID) of the universe.
pub fn users() -> Vec<Jid> {
    PNS.iter().chain(LIDS.iter()).map(|s| jid(s)).collect()
}

/// Chats: the groups and the users.
pub fn chats() -> Vec<Jid> {
    GROUPS.iter().map(|g| jid(g)).chain(users()).collect()
}

pub fn hash(seed: u8) -> [u8; 32] {
    [seed; 32]
}

// ---- fixtures ----

pub struct Fixture {
    pub store: Arc<dyn Store>,
    pub dir: Option<tempfile::TempDir>,
}

pub fn memory() -> Fixture {
    Fixture {
        store: Arc::new(MemoryStore::new()),
        dir: None,
    }
}

pub async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("store.db"))
        .await
        .unwrap();
    Fixture {
        store: Arc::new(store),
        dir: Some(dir),
    }
}

// ---- a batch touching every table ----

pub fn device_list(user: &str, seed: u8) -> DeviceList {
    DeviceList {
        user: jid(user),
        devices: vec![
            DeviceEntry {
                id: 0,
                key_index: None,
                hosted: false,
            },
            DeviceEntry {
                id: u16::from(seed % 5) + 1,
                key_index: Some(u32::from(seed)),
                hosted: false,
            },
            DeviceEntry {
                id: 99,
                key_index: Some(3),
                hosted: true,
            },
        ],
        hash: Some(format!("2:hash{seed}")),
        key_index_ts: Some(1_700_000_000 + i64::from(seed)),
        fetched_at_ms: 1_700_000_000_000 + i64::from(seed),
    }
}

pub fn group(g: &str, seed: u8) -> GroupMetadata {
    GroupMetadata {
        group: jid(g),
        addressing_mode: if seed.is_multiple_of(2) {
            AddressingMode::Lid
        } else {
            AddressingMode::Pn
        },
        participants: vec![
            GroupParticipant {
                jid: jid(LIDS[(seed % 3) as usize]),
                phone_number: Some(jid(PNS[(seed % 3) as usize])),
                lid: None,
                role: ParticipantRole::SuperAdmin,
            },
            GroupParticipant {
                jid: jid(LIDS[((seed % 3 + 1) % 3) as usize]),
                phone_number: None,
                lid: None,
                role: ParticipantRole::Member,
            },
        ],
        phash: Some(format!("2:ph{seed}")),
        subject: Some(format!("Group {seed}")),
        fetched_at_ms: 1_700_000_000_000,
    }
}

pub fn secret(chat: &str, sender: &str, id: &str, seed: u8) -> MessageSecretRecord {
    MessageSecretRecord {
        chat: jid(chat),
        sender: jid(sender),
        message_id: id.into(),
        secret: SecretBytes::from_array([seed; 32]),
        created_at_ms: 1_000 * i64::from(seed),
    }
}

pub fn event(chat: &str, id: &str, creator: &str, seed: u8) -> EventRecord {
    EventRecord {
        chat: jid(chat),
        message_id: id.into(),
        creator: jid(creator),
        from_me: seed.is_multiple_of(2),
        card: vec![seed; 40],
        timestamp_ms: 1_700_000_000_000 + i64::from(seed),
    }
}

pub fn rsvp(chat: &str, id: &str, voter: &str, response: RsvpStatus, ts: i64) -> RsvpRecord {
    RsvpRecord {
        chat: jid(chat),
        event_id: id.into(),
        voter: jid(voter),
        response,
        extra_guests: (ts % 3) as u32,
        timestamp_ms: ts,
    }
}

pub fn sent(chat: &str, id: &str, seed: u8, state: SentState) -> SentMessage {
    SentMessage {
        chat: jid(chat),
        message_id: id.into(),
        message: vec![seed; 30],
        stanza: vec![seed.wrapping_add(1); 60],
        state,
        // Odd seeds carry a source, even ones none: both must round-trip.
        source: (seed % 2 == 1).then(|| format!("crm-{seed}")),
        created_at_ms: i64::from(seed) * 10,
    }
}

pub fn webhook(id: &str, seed: u8) -> WebhookJob {
    WebhookJob {
        id: id.into(),
        instance: "main".into(),
        payload: format!("{{\"n\":{seed}}}").into_bytes(),
        attempts: 0,
        next_attempt_at_ms: i64::from(seed) * 100,
        created_at_ms: i64::from(seed),
        last_error: None,
    }
}

/// A batch that writes at least one row into every table.
pub fn full_batch(seed: u8) -> StoreBatch {
    let mut signal = SignalStateBatch::new();
    for (i, a) in addresses().into_iter().enumerate() {
        signal
            .sessions
            .push((a.clone(), vec![seed, i as u8, 1, 2, 3].into()));
        signal
            .identities
            .push((a, public(seed.wrapping_add(i as u8))));
    }
    for (i, n) in sender_key_names().into_iter().enumerate() {
        signal.sender_keys.push((n, vec![seed, i as u8, 9].into()));
    }
    signal.removed_prekeys.push(6);
    StoreBatch {
        credentials: Some(creds(u64::from(seed))),
        prekeys: PREKEY_IDS
            .iter()
            .map(|id| (*id, vec![seed, *id as u8]))
            .collect(),
        uploaded_prekeys: vec![1, 2],
        signed_prekeys: SIGNED_IDS
            .iter()
            .map(|id| (*id, vec![seed, 0xAA, *id as u8]))
            .collect(),
        signal,
        mappings: (0..3)
            .map(|i| LidPnMapping::new(&jid(LIDS[i]), &jid(PNS[i])).unwrap())
            .collect(),
        device_lists: vec![device_list(PNS[0], seed), device_list(LIDS[1], seed)],
        removed_device_lists: vec![],
        groups: vec![
            group(GROUPS[0], seed),
            group(GROUPS[1], seed.wrapping_add(1)),
        ],
        removed_groups: vec![],
        sender_key_memory: vec![SenderKeyMemoryUpdate::MarkHas {
            group: jid(GROUPS[0]),
            devices: vec![jid("99001:1@lid"), jid("99002@lid"), jid("99001@lid")],
        }],
        secrets: vec![
            secret(GROUPS[0], LIDS[0], MESSAGE_IDS[0], seed),
            secret(PNS[1], PNS[1], MESSAGE_IDS[1], seed.wrapping_add(1)),
        ],
        events: vec![event(GROUPS[0], MESSAGE_IDS[0], LIDS[0], seed)],
        rsvps: vec![
            rsvp(GROUPS[0], MESSAGE_IDS[0], LIDS[1], RsvpStatus::Going, 10),
            rsvp(GROUPS[0], MESSAGE_IDS[0], LIDS[2], RsvpStatus::Maybe, 11),
        ],
        sent_messages: vec![
            sent(GROUPS[0], MESSAGE_IDS[0], seed, SentState::Pending),
            sent(GROUPS[1], MESSAGE_IDS[1], seed, SentState::Acked),
        ],
        sent_states: vec![],
        decrypted: vec![DecryptedMessage {
            ciphertext_hash: hash(seed),
            plaintext: vec![seed; 12],
            received_at_ms: 5,
        }],
        webhooks: vec![webhook(WEBHOOK_IDS[0], seed), webhook(WEBHOOK_IDS[1], seed)],
    }
}

// ---- snapshot ----

/// Everything the `Store` API returns for the universe's keys.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub credentials: Option<DeviceCredentials>,
    pub local_identity: Option<LocalIdentity>,
    pub identities: Vec<Option<PublicKey>>,
    pub prekeys: Vec<Option<Vec<u8>>>,
    pub prekey_count: usize,
    pub max_prekey_id: Option<u32>,
    pub unuploaded: Vec<(u32, Vec<u8>)>,
    pub signed_prekeys: Vec<Option<Vec<u8>>>,
    pub sessions: Vec<Option<Vec<u8>>>,
    pub session_devices: Vec<Vec<u32>>,
    pub sender_keys: Vec<Option<Vec<u8>>>,
    pub lids: Vec<Option<Jid>>,
    pub pns: Vec<Option<Jid>>,
    pub device_lists: Vec<Option<DeviceList>>,
    pub groups: Vec<Option<GroupMetadata>>,
    pub holders: Vec<Vec<Jid>>,
    pub secrets: Vec<Option<MessageSecretRecord>>,
    pub events: Vec<Option<EventRecord>>,
    pub events_by_id: Vec<Vec<EventRecord>>,
    pub rsvps: Vec<Vec<RsvpRecord>>,
    pub sent: Vec<Option<StoredSentMessage>>,
    pub pending: Vec<StoredSentMessage>,
    pub decrypted: Vec<Option<DecryptedMessage>>,
    pub webhooks: Vec<WebhookJob>,
    pub webhook_count: u64,
}

impl Snapshot {
    pub fn is_empty(&self) -> bool {
        self.credentials.is_none()
            && self.local_identity.is_none()
            && self.identities.iter().all(Option::is_none)
            && self.prekeys.iter().all(Option::is_none)
            && self.prekey_count == 0
            && self.max_prekey_id.is_none()
            && self.unuploaded.is_empty()
            && self.signed_prekeys.iter().all(Option::is_none)
            && self.sessions.iter().all(Option::is_none)
            && self.session_devices.iter().all(Vec::is_empty)
            && self.sender_keys.iter().all(Option::is_none)
            && self.lids.iter().all(Option::is_none)
            && self.pns.iter().all(Option::is_none)
            && self.device_lists.iter().all(Option::is_none)
            && self.groups.iter().all(Option::is_none)
            && self.holders.iter().all(Vec::is_empty)
            && self.secrets.iter().all(Option::is_none)
            && self.events.iter().all(Option::is_none)
            && self.events_by_id.iter().all(Vec::is_empty)
            && self.rsvps.iter().all(Vec::is_empty)
            && self.sent.iter().all(Option::is_none)
            && self.pending.is_empty()
            && self.decrypted.iter().all(Option::is_none)
            && self.webhooks.is_empty()
            && self.webhook_count == 0
    }
}

pub async fn snapshot(store: &dyn Store) -> Snapshot {
    let addresses = addresses();
    let mut secrets = Vec::new();
    let mut events = Vec::new();
    let mut rsvps = Vec::new();
    let mut sent = Vec::new();
    for chat in chats() {
        for id in MESSAGE_IDS {
            for sender in users() {
                secrets.push(store.message_secret(&chat, &sender, id).await.unwrap());
            }
            events.push(store.load_event(&chat, id).await.unwrap());
            rsvps.push(store.rsvps(&chat, id).await.unwrap());
            sent.push(store.load_sent_message(&chat, id).await.unwrap());
        }
    }
    let mut events_by_id = Vec::new();
    for id in MESSAGE_IDS {
        events_by_id.push(store.events_by_id(id).await.unwrap());
    }
    let mut prekeys = Vec::new();
    for id in PREKEY_IDS {
        prekeys.push(store.load_prekey(id).await.unwrap());
    }
    let mut signed_prekeys = Vec::new();
    for id in SIGNED_IDS {
        signed_prekeys.push(store.load_signed_prekey(id).await.unwrap());
    }
    let mut session_devices = Vec::new();
    for n in NAMES {
        session_devices.push(store.session_devices(n).await.unwrap());
    }
    let mut sender_keys = Vec::new();
    for n in sender_key_names() {
        sender_keys.push(store.load_sender_key(&n).await.unwrap());
    }
    let mut groups = Vec::new();
    let mut holders = Vec::new();
    for g in GROUPS {
        groups.push(store.load_group(&jid(g)).await.unwrap());
        holders.push(store.sender_key_holders(&jid(g)).await.unwrap());
    }
    let mut decrypted = Vec::new();
    for seed in 0..=255u8 {
        if let Some(d) = store.load_decrypted(&hash(seed)).await.unwrap() {
            decrypted.push(Some(d));
        }
    }
    let devices: Vec<Jid> = users()
        .iter()
        .flat_map(|u| [u.clone(), u.with_device(3)])
        .chain([jid("1555:1@hosted"), jid("99001:99@hosted.lid")])
        .collect();
    Snapshot {
        credentials: store.load_credentials().await.unwrap(),
        local_identity: store.local_identity().await.ok(),
        identities: store.load_identities(&addresses).await.unwrap(),
        prekeys,
        prekey_count: store.prekey_count().await.unwrap(),
        max_prekey_id: store.max_prekey_id().await.unwrap(),
        unuploaded: store.unuploaded_prekeys(100).await.unwrap(),
        signed_prekeys,
        sessions: store.load_sessions(&addresses).await.unwrap(),
        session_devices,
        sender_keys,
        lids: store.lids_for_pns(&devices).await.unwrap(),
        pns: store.pns_for_lids(&devices).await.unwrap(),
        device_lists: store.load_device_lists(&users()).await.unwrap(),
        groups,
        holders,
        secrets,
        events,
        events_by_id,
        rsvps,
        sent,
        pending: store.pending_sent_messages(1000).await.unwrap(),
        decrypted,
        webhooks: store.due_webhooks(i64::MAX, 1000).await.unwrap(),
        webhook_count: store.webhook_count().await.unwrap(),
    }
}

/// Checks that a snapshot holds what `full_batch(seed)` wrote into an empty store.
pub fn assert_full(s: &Snapshot, seed: u8) {
    assert_eq!(s.credentials, Some(creds(u64::from(seed))));
    assert_eq!(s.local_identity, Some(creds(u64::from(seed)).identity));
    assert!(s.identities.iter().all(Option::is_some));
    assert!(s.sessions.iter().all(Option::is_some));
    assert_eq!(s.prekey_count, 5, "prekey 6 was consumed in the same batch");
    assert_eq!(s.max_prekey_id, Some(5));
    assert_eq!(
        s.unuploaded.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert!(s.signed_prekeys.iter().all(Option::is_some));
    assert!(s.sender_keys.iter().all(Option::is_some));
    assert_eq!(s.lids.iter().flatten().count(), 6);
    assert_eq!(
        s.pns.iter().flatten().count(),
        7,
        "the hosted.lid device maps too"
    );
    assert_eq!(s.device_lists.iter().flatten().count(), 2);
    assert_eq!(s.groups.iter().flatten().count(), 2);
    assert_eq!(s.holders[0].len(), 3);
    assert_eq!(s.secrets.iter().flatten().count(), 2);
    assert_eq!(s.events.iter().flatten().count(), 1);
    assert_eq!(s.rsvps.iter().map(Vec::len).sum::<usize>(), 2);
    assert_eq!(s.sent.iter().flatten().count(), 2);
    assert_eq!(s.pending.len(), 1);
    assert_eq!(s.decrypted.len(), 1);
    assert_eq!(s.webhooks.len(), 2);
    assert_eq!(s.webhook_count, 2);
}

pub fn changes_all_new(changes: &[IdentityChange]) -> bool {
    changes.iter().all(|c| *c == IdentityChange::New)
}
