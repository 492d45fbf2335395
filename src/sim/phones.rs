//! Simulated member phones: every simulated device keeps its own Signal state (pairwise
//! sessions, the sender keys of others, its own sender key per group) and does with the
//! stanzas routed to it what WhatsApp's apps do (PROTOCOL.md §8, §11, §12):
//!
//! * `pkmsg` → X3DH as Bob with its own signed and one-time prekeys (the used one-time
//!   prekey is deleted), `msg` → the ratchet; the plaintext is unpadded and parsed as a
//!   `Message`; a sender-key distribution message is processed under (group, sender);
//! * `skmsg` → decrypted with the sender's sender key;
//! * the content is checked and recorded in a [`DeviceView`]: event cards (their message
//!   secret is kept), RSVPs and edits (opened with the kept secret, trying the LID and
//!   phone-number forms of creator and sender);
//! * success → a delivery receipt to the sender (grouped per message by the router);
//!   failure → a retry receipt with `<registration>` and `<keys>` (a fresh one-time
//!   prekey that never goes to the server pool), at most 5 per message;
//! * as a sender (RSVP or card from its primary phone): its own sender key, SKDMs pairwise
//!   to the devices that lack it (bundles fetched from the world's prekey pools, so a real
//!   client gets a `pkmsg`), `skmsg`, `type="event"` + `<meta event_type=…/>`, and for RSVPs
//!   `decrypt-fail="hide"`; retry receipts it gets are answered with a single-device
//!   resend carrying the content and a fresh SKDM.
//!
//! Every stanza a simulated device gets is kept (the last [`MAX_CAPTURES`]) so tests can
//! hand captured `pkmsg`/`skmsg` bytes to an independent implementation.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use prost::Message as _;
use rand::rngs::OsRng;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use super::SimError;
use super::groups::{DeviceView, GroupAddressing};
use super::routing::{Origin, push_bounded};
use super::stanza::{self, attr_jid, attr_text, be_bytes, be_uint};
use super::world::{SimulatedKeys, World, unix_now};
use crate::binary::Node;
use crate::event::{
    EventCard, EventRef, MessageSecret, Parties, Rsvp, decrypt_event_edit, decrypt_rsvp,
    edit_message, rsvp_message, sender_for, unwrap_message,
};
use crate::jid::Jid;
use crate::proto::e2e;
use crate::signal::curve::DJB_TYPE;
use crate::signal::identity::{PreKeyBundle, PreKeyRecord};
use crate::signal::message::{PreKeySignalMessage, SenderKeyDistributionMessage};
use crate::signal::padding::{pad, unpad};
use crate::signal::{
    PreKeys, SenderKeyRecord, SessionRecord, SignalError, decrypt_prekey, decrypt_whisper, encrypt,
    group, initialize_from_bundle,
};

/// Stanzas kept per simulated device.
pub const MAX_CAPTURES: usize = 64;
/// Message views kept per simulated device.
pub const MAX_VIEWS: usize = 256;
/// Event secrets kept per simulated device.
pub const MAX_SECRETS: usize = 256;
/// Sent messages kept per simulated device for retry resends.
pub const MAX_SENT: usize = 64;
/// Message ids tracked per device for retry counts and receipts (a hostile client
/// cannot grow the maps without bound).
pub const MAX_TRACKED: usize = 4_096;
/// Devices recorded as delivered per message.
pub const MAX_TRACKED_DEVICES: usize = 16_384;
/// Retry receipts a device sends for one message at most.
pub const MAX_RETRIES: u32 = 5;

/// A peer device: (account key, device number).
type Peer = (String, u16);

/// A message a simulated device sent, kept to answer retry receipts.
#[derive(Debug, Clone)]
struct SentMessage {
    chat: Jid,
    plaintext: Vec<u8>,
    kind: String,
    meta: Option<Node>,
    hide: bool,
    /// Sent with `edit="1"` (an event edit).
    edit: bool,
}

/// The secret of an event card a simulated device saw or sent.
#[derive(Clone)]
struct KnownEvent {
    secret: MessageSecret,
    /// The creator's account key.
    creator: String,
    /// The creator as the card's stanza named it (user JID).
    creator_jid: Jid,
}

impl std::fmt::Debug for KnownEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownEvent")
            .field("creator", &self.creator_jid)
            .finish_non_exhaustive()
    }
}

/// Everything one simulated device keeps.
#[derive(Debug, Clone, Default)]
pub struct PhoneState {
    sessions: HashMap<Peer, SessionRecord>,
    sender_keys: HashMap<(String, Peer), SenderKeyRecord>,
    own_sender_keys: HashMap<String, SenderKeyRecord>,
    key_holders: HashMap<String, HashSet<Peer>>,
    events: HashMap<(String, String), KnownEvent>,
    event_order: VecDeque<(String, String)>,
    views: HashMap<(String, String), DeviceView>,
    view_order: VecDeque<(String, String)>,
    captures: VecDeque<Node>,
    retries: HashMap<String, u32>,
    sent: HashMap<String, SentMessage>,
    sent_order: VecDeque<String>,
    /// Devices that confirmed delivery, per message id.
    delivered: BTreeMap<String, Vec<Jid>>,
    /// Retry receipts received, per message id.
    retry_requests: BTreeMap<String, u32>,
}

/// A WhatsApp-style message id: `3EB0` + 18 upper-case hex digits of a SHA-256 over
/// time, sender and randomness.
pub fn message_id<R: RngCore + ?Sized>(sender: &Jid, rng: &mut R) -> String {
    let mut random = [0u8; 16];
    rng.fill_bytes(&mut random);
    let mut h = Sha256::new();
    h.update(unix_now().to_be_bytes());
    h.update(sender.user.as_bytes());
    h.update(b"@c.us");
    h.update(random);
    format!("3EB0{}", hex::encode_upper(&h.finalize()[..9]))
}

fn signal_error(what: &str, e: SignalError) -> String {
    format!("{what}: {e}")
}

fn enc_node(kind: &str, bytes: Vec<u8>, hide: bool) -> Node {
    let mut n = Node::new("enc").attr("v", "2").attr("type", kind);
    if hide {
        n = n.attr("decrypt-fail", "hide");
    }
    n.with_bytes(bytes)
}

impl PhoneState {
    fn remember_view(&mut self, key: (String, String), view: DeviceView) {
        if !self.views.contains_key(&key) {
            push_bounded(&mut self.view_order, key.clone(), MAX_VIEWS);
            let live: HashSet<&(String, String)> = self.view_order.iter().collect();
            self.views.retain(|k, _| live.contains(k) || *k == key);
        }
        self.views.insert(key, view);
    }

    fn remember_event(&mut self, key: (String, String), event: KnownEvent) {
        if !self.events.contains_key(&key) {
            push_bounded(&mut self.event_order, key.clone(), MAX_SECRETS);
            let live: HashSet<&(String, String)> = self.event_order.iter().collect();
            self.events.retain(|k, _| live.contains(k) || *k == key);
        }
        self.events.insert(key, event);
    }

    fn remember_sent(&mut self, id: String, sent: SentMessage) {
        if !self.sent.contains_key(&id) {
            push_bounded(&mut self.sent_order, id.clone(), MAX_SENT);
            let live: HashSet<&String> = self.sent_order.iter().collect();
            self.sent.retain(|k, _| live.contains(k) || *k == id);
        }
        self.sent.insert(id, sent);
    }
}

/// What the device made of the pairwise and group parts of one stanza.
struct Opened {
    messages: Vec<e2e::Message>,
    consumed_prekey: Option<u32>,
    got_sender_key: bool,
}

impl World {
    fn simulated_keys(&self, account: &str, device: u16) -> Option<&SimulatedKeys> {
        self.accounts
            .get(account)?
            .devices
            .get(&device)?
            .simulated
            .as_ref()
    }

    /// The LID and PN user JIDs of an account (for key-derivation alternates).
    fn alternates(&self, account: &str) -> Vec<Jid> {
        self.accounts
            .get(account)
            .map(|a| vec![a.lid.clone(), a.pn.clone()])
            .unwrap_or_default()
    }

    /// A simulated device handles one stanza routed to it.
    pub(crate) fn phone_receive(&mut self, account: &str, device: u16, node: Node) {
        let key = (account.to_owned(), device);
        let mut state = self.phones.remove(&key).unwrap_or_default();
        push_bounded(&mut state.captures, node.clone(), MAX_CAPTURES);
        match node.tag.as_ref() {
            "message" => self.phone_message(account, device, &mut state, &node),
            "receipt" => self.phone_receipt(account, device, &mut state, &node),
            _ => {}
        }
        self.phones.insert(key, state);
    }

    fn phone_message(&mut self, account: &str, device: u16, state: &mut PhoneState, node: &Node) {
        let (Some(id), Some(from)) = (attr_text(node, "id"), attr_jid(node, "from")) else {
            return;
        };
        let id = id.into_owned();
        let (chat, sender) = if from.is_group() {
            match attr_jid(node, "participant") {
                Some(p) => (from.clone(), p),
                None => return,
            }
        } else {
            // 1:1: from our own other device the chat is `recipient`.
            let chat = attr_jid(node, "recipient").unwrap_or_else(|| from.to_non_ad());
            (chat, from.clone())
        };
        let Some(sender_account) = self.account_key(&sender) else {
            return;
        };
        let peer: Peer = (sender_account.clone(), sender.device);
        let addressing = if sender.is_lid() {
            GroupAddressing::Lid
        } else {
            GroupAddressing::Pn
        };
        let me = self
            .device_jid(account, device, addressing)
            .unwrap_or_else(|| Jid::new(account, crate::jid::DEFAULT_USER_SERVER));
        let view_key = (chat.to_string(), id.clone());
        let mut view = state
            .views
            .get(&view_key)
            .cloned()
            .unwrap_or_else(|| DeviceView::new(me.clone()));
        view.sender = Some(sender.clone());
        let encs: Vec<&Node> = node.children_by_tag("enc").collect();
        view.enc_types = encs
            .iter()
            .filter_map(|e| attr_text(e, "type").map(|t| t.into_owned()))
            .collect();
        let opened = self.open_encs(account, device, state, &chat, &peer, &encs);
        match opened {
            Ok(opened) => {
                if let Some(id) = opened.consumed_prekey
                    && let Some(keys) = self
                        .accounts
                        .get_mut(account)
                        .and_then(|a| a.devices.get_mut(&device))
                        .and_then(|d| d.simulated.as_mut())
                {
                    keys.prekeys.remove(&id);
                }
                view.got_sender_key |= opened.got_sender_key;
                view.error = None;
                for message in &opened.messages {
                    self.phone_content(
                        state,
                        &mut view,
                        &chat,
                        &sender,
                        &sender_account,
                        &id,
                        message,
                    );
                }
                state.remember_view(view_key, view);
                let receipt_key = (chat.to_string(), sender_account, sender.device, id);
                self.pending_receipts
                    .entry(receipt_key)
                    .or_default()
                    .push(me);
            }
            Err(why) => {
                view.error = Some(why.clone());
                if state.retries.len() >= MAX_TRACKED && !state.retries.contains_key(&id) {
                    state.retries.clear();
                }
                let count = state.retries.entry(id.clone()).or_insert(0);
                *count = count.saturating_add(1);
                let count = *count;
                if count <= MAX_RETRIES {
                    view.retry_sent = true;
                    let t = attr_text(node, "t")
                        .map(|t| t.into_owned())
                        .unwrap_or_default();
                    let receipt =
                        self.retry_receipt(account, device, &chat, &sender, &id, &t, count);
                    let origin = Origin {
                        account: account.to_owned(),
                        device,
                        conn: None,
                    };
                    tracing::debug!(
                        "sim: {me} cannot decrypt {id} from {sender}: {why}; retry {count}"
                    );
                    self.route_receipt(&origin, &receipt);
                }
                state.remember_view(view_key, view);
            }
        }
    }

    /// Decrypts the pairwise part first (it may carry the SKDM), then the skmsg.
    fn open_encs(
        &self,
        account: &str,
        device: u16,
        state: &mut PhoneState,
        chat: &Jid,
        peer: &Peer,
        encs: &[&Node],
    ) -> Result<Opened, String> {
        let keys = self
            .simulated_keys(account, device)
            .ok_or_else(|| "device has no simulated keys".to_string())?;
        let mut opened = Opened {
            messages: Vec::new(),
            consumed_prekey: None,
            got_sender_key: false,
        };
        if encs.is_empty() {
            return Err("message has no <enc>".into());
        }
        let mut ordered: Vec<&Node> = encs
            .iter()
            .copied()
            .filter(|e| attr_text(e, "type").as_deref() != Some("skmsg"))
            .collect();
        ordered.extend(
            encs.iter()
                .copied()
                .filter(|e| attr_text(e, "type").as_deref() == Some("skmsg")),
        );
        for enc in ordered {
            let kind = attr_text(enc, "type")
                .map(|t| t.into_owned())
                .unwrap_or_default();
            let bytes = enc
                .bytes()
                .ok_or_else(|| format!("<enc type={kind}> has no bytes"))?;
            let padded = match kind.as_str() {
                "pkmsg" => {
                    let message = PreKeySignalMessage::deserialize(bytes)
                        .map_err(|e| signal_error("pkmsg", e))?;
                    let record = state.sessions.entry(peer.clone()).or_default();
                    let one_time = message.prekey_id().and_then(|id| keys.prekeys.get(&id));
                    let signed = (keys.signed_prekey.id == message.signed_prekey_id())
                        .then_some(&keys.signed_prekey);
                    // Transactional: a failed decrypt leaves the record as it was.
                    let out = decrypt_prekey(
                        record,
                        &keys.identity,
                        &message,
                        PreKeys { signed, one_time },
                        &mut OsRng,
                    )
                    .map_err(|e| signal_error("pkmsg", e))?;
                    opened.consumed_prekey = out.consumed_prekey_id;
                    out.plaintext
                }
                "msg" => {
                    let record = state
                        .sessions
                        .get_mut(peer)
                        .ok_or_else(|| "msg: no session with the sender".to_string())?;
                    decrypt_whisper(record, bytes, &mut OsRng)
                        .map_err(|e| signal_error("msg", e))?
                }
                "skmsg" => {
                    let record = state
                        .sender_keys
                        .get_mut(&(chat.user.clone(), peer.clone()))
                        .ok_or_else(|| "skmsg: no sender key from the sender".to_string())?;
                    group::decrypt(record, bytes).map_err(|e| signal_error("skmsg", e))?
                }
                other => return Err(format!("unknown <enc type={other:?}>")),
            };
            let plain = unpad(&padded).map_err(|e| format!("{kind}: {e}"))?;
            let message =
                e2e::Message::decode(plain).map_err(|e| format!("{kind}: not a Message: {e}"))?;
            if let Some(skdm) = &message.sender_key_distribution_message {
                let group_id = skdm.group_id.as_deref().unwrap_or_default();
                if chat.is_group() && group_id != chat.to_string() {
                    return Err(format!("SKDM for {group_id:?} arrived in {chat}"));
                }
                let target = Jid::parse(group_id).map_err(|e| format!("SKDM group id: {e}"))?;
                let bytes = skdm
                    .axolotl_sender_key_distribution_message
                    .as_deref()
                    .ok_or_else(|| "SKDM without axolotl bytes".to_string())?;
                let parsed = SenderKeyDistributionMessage::deserialize(bytes)
                    .map_err(|e| signal_error("SKDM", e))?;
                let record = state
                    .sender_keys
                    .entry((target.user.clone(), peer.clone()))
                    .or_default();
                group::process_distribution_message(record, &parsed);
                opened.got_sender_key = true;
            }
            opened.messages.push(message);
        }
        Ok(opened)
    }

    /// Checks and records what a decrypted `Message` carries.
    #[allow(clippy::too_many_arguments)]
    fn phone_content(
        &self,
        state: &mut PhoneState,
        view: &mut DeviceView,
        chat: &Jid,
        sender: &Jid,
        sender_account: &str,
        id: &str,
        message: &e2e::Message,
    ) {
        let message = unwrap_message(message);
        if message.event_message.is_some() {
            match EventCard::from_message(message) {
                Ok(card) => view.card = Some(card),
                Err(e) => view.error = Some(format!("event card: {e}")),
            }
            match MessageSecret::from_message(message) {
                Ok(secret) => state.remember_event(
                    (chat.to_string(), id.to_owned()),
                    KnownEvent {
                        secret,
                        creator: sender_account.to_owned(),
                        creator_jid: sender.to_non_ad(),
                    },
                ),
                Err(e) => view.error = Some(format!("event card without message secret: {e}")),
            }
        }
        if let Some(enc) = &message.enc_event_response_message {
            let event_id = enc
                .event_creation_message_key
                .as_ref()
                .and_then(|k| k.id.clone())
                .unwrap_or_default();
            match state.events.get(&(chat.to_string(), event_id.clone())) {
                None => view.error = Some(format!("RSVP to unknown event {event_id}")),
                Some(known) => {
                    let creators = self.alternates(&known.creator);
                    let senders = self.alternates(sender_account);
                    let candidates = Parties::alternates(&creators, &senders);
                    match decrypt_rsvp(enc, &known.secret, &candidates) {
                        Ok(d) => view.rsvp = Some((event_id, d.parties.sender, d.value)),
                        Err(e) => view.error = Some(format!("RSVP: {e}")),
                    }
                }
            }
        }
        if let Some(sem) = &message.secret_encrypted_message {
            let event_id = sem
                .target_message_key
                .as_ref()
                .and_then(|k| k.id.clone())
                .unwrap_or_default();
            match state.events.get(&(chat.to_string(), event_id.clone())) {
                None => view.error = Some(format!("edit of unknown event {event_id}")),
                Some(known) => {
                    let creators = self.alternates(&known.creator);
                    let senders = self.alternates(sender_account);
                    let candidates = Parties::alternates(&creators, &senders);
                    match decrypt_event_edit(sem, &known.secret, &candidates) {
                        Ok(d) => {
                            view.card = Some(d.value);
                            view.edit_of = Some(event_id);
                        }
                        Err(e) => view.error = Some(format!("event edit: {e}")),
                    }
                }
            }
        }
    }

    /// A retry receipt from (account, device) for message `id` of `sender` in `chat`,
    /// with a fresh one-time prekey in `<keys>` (kept by the device, never pooled).
    #[allow(clippy::too_many_arguments)]
    fn retry_receipt(
        &mut self,
        account: &str,
        device: u16,
        chat: &Jid,
        sender: &Jid,
        id: &str,
        t: &str,
        count: u32,
    ) -> Node {
        let fresh = self.fresh_private_prekey(account, device);
        let Some(d) = self
            .accounts
            .get(account)
            .and_then(|a| a.devices.get(&device))
        else {
            return Node::new("receipt");
        };
        let mut keys = vec![
            Node::new("type").with_bytes(vec![DJB_TYPE]),
            Node::new("identity").with_bytes(d.identity.as_bytes().to_vec()),
        ];
        if let Some((kid, key)) = fresh {
            keys.push(Node::new("key").with_children(vec![
                Node::new("id").with_bytes(be_bytes(kid, 3)),
                Node::new("value").with_bytes(key.as_bytes().to_vec()),
            ]));
        }
        keys.push(Node::new("skey").with_children(vec![
            Node::new("id").with_bytes(be_bytes(d.signed_prekey.id, 3)),
            Node::new("value").with_bytes(d.signed_prekey.key.as_bytes().to_vec()),
            Node::new("signature").with_bytes(d.signed_prekey.signature.to_vec()),
        ]));
        if let Some(identity) = &d.signed_identity {
            keys.push(Node::new("device-identity").with_bytes(identity.clone()));
        }
        let mut receipt = Node::new("receipt").attr("id", id).attr("type", "retry");
        receipt = if chat.is_group() {
            receipt.attr("to", chat).attr("participant", sender)
        } else {
            receipt.attr("to", sender)
        };
        receipt.with_children(vec![
            Node::new("retry")
                .attr("v", "1")
                .attr("id", id)
                .attr("t", t)
                .attr("count", count),
            Node::new("registration").with_bytes(be_bytes(d.registration_id, 4)),
            Node::new("keys").with_children(keys),
        ])
    }

    /// Generates a one-time prekey only the device knows (for retry receipts).
    fn fresh_private_prekey(
        &mut self,
        account: &str,
        device: u16,
    ) -> Option<(u32, crate::signal::PublicKey)> {
        let keys = self
            .accounts
            .get_mut(account)?
            .devices
            .get_mut(&device)?
            .simulated
            .as_mut()?;
        let next = keys.prekeys.keys().next_back().copied().unwrap_or(0) % 0x00FF_FFFF + 1;
        let record = PreKeyRecord {
            id: next,
            key_pair: crate::signal::KeyPair::generate(&mut OsRng),
        };
        let public = record.key_pair.public;
        keys.prekeys.insert(next, record);
        Some((next, public))
    }

    /// A receipt reached a simulated sender: delivery receipts are recorded, retry
    /// receipts answered with a single-device resend.
    fn phone_receipt(&mut self, account: &str, device: u16, state: &mut PhoneState, node: &Node) {
        let Some(id) = attr_text(node, "id").map(|s| s.into_owned()) else {
            return;
        };
        if attr_text(node, "type").as_deref() == Some("retry") {
            if state.retry_requests.len() >= MAX_TRACKED {
                state.retry_requests.pop_first();
            }
            let n = state.retry_requests.entry(id.clone()).or_insert(0);
            *n = n.saturating_add(1);
            if let Err(e) = self.answer_retry(account, device, state, node, &id) {
                tracing::debug!("sim: simulated device cannot answer retry for {id}: {e}");
            }
            return;
        }
        let mut devices: Vec<Jid> = node
            .children_by_tag("participants")
            .flat_map(|p| p.children_by_tag("user"))
            .filter_map(|u| attr_jid(u, "jid"))
            .collect();
        if devices.is_empty()
            && let Some(p) = attr_jid(node, "participant").or_else(|| attr_jid(node, "from"))
        {
            devices.push(p);
        }
        if attr_text(node, "type").is_none() {
            if state.delivered.len() >= MAX_TRACKED && !state.delivered.contains_key(&id) {
                state.delivered.pop_first();
            }
            let seen = state.delivered.entry(id).or_default();
            for d in devices {
                if seen.len() < MAX_TRACKED_DEVICES && !seen.contains(&d) {
                    seen.push(d);
                }
            }
        }
    }

    /// A key bundle for (account, device) as the server hands it out: pops one pooled
    /// one-time prekey (refilling simulated pools).
    pub(crate) fn bundle_for(&mut self, account: &str, device: u16) -> Option<PreKeyBundle> {
        self.refill_simulated_prekeys(account, device);
        let d = self.accounts.get_mut(account)?.devices.get_mut(&device)?;
        if d.removed {
            return None;
        }
        let prekey = d.prekeys.pop_front();
        Some(PreKeyBundle {
            registration_id: d.registration_id,
            device_id: u32::from(device),
            prekey,
            signed_prekey_id: d.signed_prekey.id,
            signed_prekey: d.signed_prekey.key,
            signed_prekey_signature: d.signed_prekey.signature,
            identity_key: d.identity,
        })
    }

    /// Tops up the server pool of a simulated device with one fresh one-time prekey when
    /// it is empty (simulated devices publish few keys up front).
    pub(crate) fn refill_simulated_prekeys(&mut self, account: &str, device: u16) {
        let Some(d) = self
            .accounts
            .get_mut(account)
            .and_then(|a| a.devices.get_mut(&device))
        else {
            return;
        };
        if !d.prekeys.is_empty() {
            return;
        }
        let Some(keys) = d.simulated.as_mut() else {
            return;
        };
        let next = keys.prekeys.keys().next_back().copied().unwrap_or(0) % 0x00FF_FFFF + 1;
        let record = PreKeyRecord {
            id: next,
            key_pair: crate::signal::KeyPair::generate(&mut OsRng),
        };
        d.prekeys.push_back((next, record.key_pair.public));
        keys.prekeys.insert(next, record);
    }

    /// Answers a retry receipt: a new session from its `<keys>` (or a fetched bundle),
    /// then the content and a fresh SKDM pairwise to that device only.
    fn answer_retry(
        &mut self,
        account: &str,
        device: u16,
        state: &mut PhoneState,
        node: &Node,
        id: &str,
    ) -> Result<(), String> {
        let sent = state
            .sent
            .get(id)
            .cloned()
            .ok_or_else(|| format!("message {id} is not in the recent-sent cache"))?;
        let requester = attr_jid(node, "participant")
            .filter(|_| sent.chat.is_group())
            .or_else(|| attr_jid(node, "from"))
            .ok_or_else(|| "retry receipt names no device".to_string())?;
        let req_account = self
            .account_key(&requester)
            .ok_or_else(|| format!("unknown device {requester}"))?;
        let peer: Peer = (req_account.clone(), requester.device);
        let count = node
            .child_by_tag("retry")
            .and_then(|r| attr_text(r, "count"))
            .and_then(|c| c.parse::<u32>().ok())
            .unwrap_or(1);
        if count >= MAX_RETRIES {
            return Err(format!("retry count {count} reached the limit"));
        }
        let bundle = match node.child_by_tag("keys") {
            Some(keys) => bundle_from_keys(node, keys, requester.device)?,
            None => self
                .bundle_for(&req_account, requester.device)
                .ok_or_else(|| format!("no bundle for {requester}"))?,
        };
        let own = self
            .simulated_keys(account, device)
            .ok_or_else(|| "no simulated keys".to_string())?
            .identity
            .clone();
        let record = state.sessions.entry(peer.clone()).or_default();
        initialize_from_bundle(record, &own, &bundle, &mut OsRng)
            .map_err(|e| signal_error("retry session", e))?;
        let mut message =
            e2e::Message::decode(sent.plaintext.as_slice()).map_err(|e| e.to_string())?;
        if sent.chat.is_group() {
            let own_key = state
                .own_sender_keys
                .entry(sent.chat.user.clone())
                .or_default();
            let (skdm, _) = group::create_distribution_message(own_key, &mut OsRng)
                .map_err(|e| signal_error("SKDM", e))?;
            message.sender_key_distribution_message = Some(e2e::SenderKeyDistributionMessage {
                group_id: Some(sent.chat.to_string()),
                axolotl_sender_key_distribution_message: Some(skdm.serialize()),
            });
            state
                .key_holders
                .entry(sent.chat.user.clone())
                .or_default()
                .insert(peer.clone());
        }
        let padded = pad(&message.encode_to_vec(), &mut OsRng);
        let ct = encrypt(record, &padded).map_err(|e| signal_error("resend", e))?;
        let enc = enc_node(ct.enc_type(), ct.into_bytes(), sent.hide).attr("count", count);
        let mut out = Node::new("message")
            .attr("id", id)
            .attr("type", sent.kind.as_str());
        if sent.edit {
            out = out.attr("edit", "1");
        }
        out = if sent.chat.is_group() {
            out.attr("to", &sent.chat).attr("participant", &requester)
        } else {
            out.attr("to", &requester).attr("device_fanout", "false")
        };
        let mut children = vec![enc];
        if let Some(meta) = &sent.meta {
            children.push(meta.clone());
        }
        let origin = Origin {
            account: account.to_owned(),
            device,
            conn: None,
        };
        self.route_message(&origin, &out.with_children(children));
        Ok(())
    }

    /// Sends `message` from the primary phone of simulated member `member` to `group` as
    /// a phone does (`event_type` goes into `<meta>`; `edit` also sets `edit="1"`);
    /// returns the message id.
    #[allow(clippy::too_many_arguments)]
    fn member_send<R: RngCore + CryptoRng>(
        &mut self,
        group_jid: &Jid,
        account: &str,
        state: &mut PhoneState,
        message: &e2e::Message,
        kind: &str,
        event_type: &str,
        hide: bool,
        rng: &mut R,
    ) -> Result<String, SimError> {
        let device = 0u16;
        let g = self
            .group(group_jid)
            .cloned()
            .ok_or_else(|| SimError::UnknownGroup(group_jid.to_string()))?;
        let me = self
            .device_jid(account, device, g.addressing)
            .ok_or_else(|| SimError::UnknownAccount(account.to_owned()))?;
        let own = self
            .simulated_keys(account, device)
            .ok_or_else(|| SimError::Member(format!("{me} is not a simulated device")))?
            .identity
            .clone();
        let id = message_id(&me, rng);
        let devices = self.group_devices(&g);
        let phash = super::groups::participant_hash(&devices);
        let own_key = state.own_sender_keys.entry(g.jid.user.clone()).or_default();
        let (skdm, _) = group::create_distribution_message(own_key, rng)
            .map_err(|e| SimError::Member(signal_error("sender key", e)))?;
        let plaintext = message.encode_to_vec();
        let skmsg = group::encrypt(own_key, &pad(&plaintext, rng), rng)
            .map_err(|e| SimError::Member(signal_error("skmsg", e)))?;
        let skdm_plain = e2e::Message {
            sender_key_distribution_message: Some(e2e::SenderKeyDistributionMessage {
                group_id: Some(g.jid.to_string()),
                axolotl_sender_key_distribution_message: Some(skdm.serialize()),
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let holders = state
            .key_holders
            .entry(g.jid.user.clone())
            .or_default()
            .clone();
        let mut to_nodes = Vec::new();
        let mut new_holders = Vec::new();
        for target in devices {
            if target == me {
                continue;
            }
            let Some(t_account) = self.account_key(&target) else {
                continue;
            };
            let peer: Peer = (t_account.clone(), target.device);
            if holders.contains(&peer) {
                continue;
            }
            let has_session = state
                .sessions
                .get(&peer)
                .is_some_and(SessionRecord::has_current_session);
            if !has_session {
                let Some(bundle) = self.bundle_for(&t_account, target.device) else {
                    continue;
                };
                let record = state.sessions.entry(peer.clone()).or_default();
                if let Err(e) = initialize_from_bundle(record, &own, &bundle, rng) {
                    tracing::debug!("sim: {me} cannot start a session with {target}: {e}");
                    continue;
                }
            }
            let Some(record) = state.sessions.get_mut(&peer) else {
                continue;
            };
            let ct = encrypt(record, &pad(&skdm_plain, rng))
                .map_err(|e| SimError::Member(signal_error("SKDM pairwise", e)))?;
            to_nodes.push(Node::new("to").attr("jid", &target).child(enc_node(
                ct.enc_type(),
                ct.into_bytes(),
                hide,
            )));
            new_holders.push(peer);
        }
        let meta = Node::new("meta").attr("event_type", event_type);
        let mut children = Vec::new();
        if !to_nodes.is_empty() {
            children.push(Node::new("participants").with_children(to_nodes));
        }
        children.push(enc_node("skmsg", skmsg, hide));
        children.push(meta.clone());
        let edit = event_type == "edit";
        let mut stanza = Node::new("message")
            .attr("id", id.as_str())
            .attr("to", &g.jid)
            .attr("type", kind)
            .attr("phash", phash.as_str())
            .attr("addressing_mode", g.addressing.as_str());
        if edit {
            stanza = stanza.attr("edit", "1");
        }
        let stanza = stanza.with_children(children);
        state.remember_sent(
            id.clone(),
            SentMessage {
                chat: g.jid.clone(),
                plaintext,
                kind: kind.to_owned(),
                meta: Some(meta),
                hide,
                edit,
            },
        );
        let origin = Origin {
            account: account.to_owned(),
            device,
            conn: None,
        };
        let outcome = self
            .route_message(&origin, &stanza)
            .ok_or_else(|| SimError::Member("message was not routed".into()))?;
        if let Some(code) = outcome.error() {
            return Err(SimError::Member(format!(
                "server refused {id} with error {code}"
            )));
        }
        state
            .key_holders
            .entry(g.jid.user.clone())
            .or_default()
            .extend(new_holders);
        Ok(id)
    }

    /// Makes `group` an established group among its simulated members: every simulated
    /// member's primary phone hands its sender key to every other simulated device of
    /// the group directly, as if their SKDMs had been exchanged long ago. A member's
    /// next group message then carries pairwise SKDMs only for the devices that are not
    /// simulated (the client under test), instead of a session build with every device
    /// of the group (O(members × devices) X3DH, minutes for a 256-member demo group).
    /// Returns how many sender keys were handed over. Refuses an unknown group.
    pub fn share_member_sender_keys<R: RngCore + CryptoRng>(
        &mut self,
        group: &Jid,
        rng: &mut R,
    ) -> Result<usize, SimError> {
        let g = self
            .group(group)
            .cloned()
            .ok_or_else(|| SimError::UnknownGroup(group.to_string()))?;
        let simulated: Vec<Peer> = self
            .group_devices(&g)
            .iter()
            .filter_map(|d| {
                let account = self.account_key(d)?;
                self.simulated_keys(&account, d.device)?;
                Some((account, d.device))
            })
            .collect();
        let mut handed = 0usize;
        for sender in simulated.iter().filter(|(_, device)| *device == 0) {
            let mut state = self.phones.remove(sender).unwrap_or_default();
            let own_key = state.own_sender_keys.entry(g.jid.user.clone()).or_default();
            let skdm = match group::create_distribution_message(own_key, rng) {
                Ok((skdm, _)) => skdm,
                Err(e) => {
                    self.phones.insert(sender.clone(), state);
                    return Err(SimError::Member(signal_error("sender key", e)));
                }
            };
            let holders = state.key_holders.entry(g.jid.user.clone()).or_default();
            for target in simulated.iter().filter(|t| *t != sender) {
                let target_state = self.phones.entry(target.clone()).or_default();
                let record = target_state
                    .sender_keys
                    .entry((g.jid.user.clone(), sender.clone()))
                    .or_default();
                group::process_distribution_message(record, &skdm);
                holders.insert(target.clone());
                handed += 1;
            }
            self.phones.insert(sender.clone(), state);
        }
        Ok(handed)
    }

    /// Takes the phone state of a simulated member's primary phone out of the world.
    fn primary_phone(
        &mut self,
        group: &Jid,
        member: &Jid,
    ) -> Result<(String, PhoneState), SimError> {
        let account = self
            .account_key(member)
            .ok_or_else(|| SimError::UnknownAccount(member.to_string()))?;
        let g = self
            .group(group)
            .ok_or_else(|| SimError::UnknownGroup(group.to_string()))?;
        if !g.members.contains(&account) {
            return Err(SimError::BadGroup(format!(
                "{member} is not a member of {group}"
            )));
        }
        if self.simulated_keys(&account, 0).is_none() {
            return Err(SimError::Member(format!("{member} has no simulated phone")));
        }
        let state = self
            .phones
            .remove(&(account.clone(), 0))
            .unwrap_or_default();
        Ok((account, state))
    }

    /// Simulated member `member` answers event `event_id` (which its phone received or
    /// sent) from its primary phone; returns the RSVP's message id. Refuses unknown
    /// groups and accounts, non-members, and events its phone never saw.
    pub fn member_rsvp<R: RngCore + CryptoRng>(
        &mut self,
        group: &Jid,
        member: &Jid,
        event_id: &str,
        rsvp: &Rsvp,
        rng: &mut R,
    ) -> Result<String, SimError> {
        let (account, mut state) = self.primary_phone(group, member)?;
        let result = (|| {
            let known = state
                .events
                .get(&(group.to_string(), event_id.to_owned()))
                .cloned()
                .ok_or_else(|| {
                    SimError::Member(format!("{member}'s phone has not seen event {event_id}"))
                })?;
            let a = self
                .accounts
                .get(&account)
                .ok_or_else(|| SimError::UnknownAccount(account.clone()))?;
            let (pn, lid) = (a.pn.clone(), a.lid.clone());
            let responder = sender_for(&known.creator_jid, &pn, Some(&lid)).clone();
            let event = EventRef::new(group.clone(), event_id, known.creator_jid.clone());
            let message = rsvp_message(rsvp, &event, &known.secret, &responder, rng)
                .map_err(|e| SimError::Member(format!("RSVP: {e}")))?;
            self.member_send(
                group, &account, &mut state, &message, "event", "response", true, rng,
            )
        })();
        self.phones.insert((account, 0), state);
        self.settle();
        result
    }

    /// Simulated member `member` sends event card `card` to `group` from its primary
    /// phone (with a fresh message secret it keeps); returns the message id.
    pub fn member_send_card<R: RngCore + CryptoRng>(
        &mut self,
        group: &Jid,
        member: &Jid,
        card: &EventCard,
        rng: &mut R,
    ) -> Result<String, SimError> {
        let (account, mut state) = self.primary_phone(group, member)?;
        let (message, secret) = card.to_message(rng);
        let result = self.member_send(
            group, &account, &mut state, &message, "event", "creation", false, rng,
        );
        if let Ok(id) = &result
            && let Some(creator_jid) = self
                .group(group)
                .and_then(|g| self.user_jid(&account, g.addressing))
        {
            state.remember_event(
                (group.to_string(), id.clone()),
                KnownEvent {
                    secret,
                    creator: account.clone(),
                    creator_jid,
                },
            );
        }
        self.phones.insert((account, 0), state);
        self.settle();
        result
    }

    /// Simulated member `member` edits (or, with `card.is_canceled()`, cancels) event
    /// `event_id` it created, from its primary phone: an EVENT_EDIT
    /// `secretEncryptedMessage` framed `type="event"`, `edit="1"`, `<meta
    /// event_type="edit"/>`, `decrypt-fail="hide"`. Returns the edit's message id.
    /// Refuses events its phone did not create.
    pub fn member_edit_card<R: RngCore + CryptoRng>(
        &mut self,
        group: &Jid,
        member: &Jid,
        event_id: &str,
        card: &EventCard,
        rng: &mut R,
    ) -> Result<String, SimError> {
        let (account, mut state) = self.primary_phone(group, member)?;
        let result = (|| {
            let known = state
                .events
                .get(&(group.to_string(), event_id.to_owned()))
                .cloned()
                .ok_or_else(|| {
                    SimError::Member(format!("{member}'s phone has not seen event {event_id}"))
                })?;
            if known.creator != account {
                return Err(SimError::Member(format!(
                    "{member} did not create event {event_id}"
                )));
            }
            let event = EventRef::new(group.clone(), event_id, known.creator_jid.clone());
            let message = edit_message(card, &event, &known.secret, &known.creator_jid, rng)
                .map_err(|e| SimError::Member(format!("edit: {e}")))?;
            self.member_send(
                group, &account, &mut state, &message, "event", "edit", true, rng,
            )
        })();
        self.phones.insert((account, 0), state);
        self.settle();
        result
    }

    /// A simulated device forgets its session with `sender` (a device JID) and every
    /// sender key of it, so the next message from it fails and the device sends a retry
    /// receipt. Returns false when `device` is not simulated or `sender` unknown.
    pub fn forget_sender(&mut self, device: &Jid, sender: &Jid) -> bool {
        let (Some(account), Some(peer_account)) =
            (self.account_key(device), self.account_key(sender))
        else {
            return false;
        };
        if self.simulated_keys(&account, device.device).is_none() {
            return false;
        }
        let peer: Peer = (peer_account, sender.device);
        let state = self.phones.entry((account, device.device)).or_default();
        state.sessions.remove(&peer);
        state.sender_keys.retain(|(_, p), _| *p != peer);
        true
    }

    /// Rotation on removal: the simulated devices of `account` drop their own sender key
    /// for `group` (the next send creates a new one and redistributes it).
    pub(crate) fn phones_forget_own_sender_key(&mut self, account: &str, group: &Jid) {
        for ((a, _), state) in self.phones.iter_mut() {
            if a == account {
                state.own_sender_keys.remove(&group.user);
                state.key_holders.remove(&group.user);
            }
        }
    }

    /// A copy of the private keys of a simulated device as they are now (tests hand them
    /// to an independent implementation; one-time prekeys are deleted once used, so take
    /// the copy before the message arrives).
    pub fn simulated_device_keys(&self, device: &Jid) -> Option<SimulatedKeys> {
        let account = self.account_key(device)?;
        self.simulated_keys(&account, device.device).cloned()
    }

    /// What every simulated device made of message `message_id` in `group`, sorted by
    /// device.
    pub fn group_views(&self, group: &Jid, message_id: &str) -> Result<Vec<DeviceView>, SimError> {
        if self.group(group).is_none() {
            return Err(SimError::UnknownGroup(group.to_string()));
        }
        let key = (group.to_string(), message_id.to_owned());
        let mut views: Vec<DeviceView> = self
            .phones
            .values()
            .filter_map(|s| s.views.get(&key).cloned())
            .collect();
        views.sort_by(|a, b| a.device.cmp(&b.device));
        Ok(views)
    }

    /// What one simulated device made of message `message_id` in `chat`.
    pub fn device_view(&self, device: &Jid, chat: &Jid, message_id: &str) -> Option<DeviceView> {
        let account = self.account_key(device)?;
        self.phones
            .get(&(account, device.device))?
            .views
            .get(&(chat.to_string(), message_id.to_owned()))
            .cloned()
    }

    /// The last stanzas routed to a simulated device, oldest first (at most
    /// [`MAX_CAPTURES`]).
    pub fn captured_stanzas(&self, device: &Jid) -> Vec<Node> {
        self.account_key(device)
            .and_then(|a| self.phones.get(&(a, device.device)))
            .map(|s| s.captures.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Devices that sent a simulated device a delivery receipt for `message_id`.
    pub fn delivered_to(&self, device: &Jid, message_id: &str) -> Vec<Jid> {
        self.account_key(device)
            .and_then(|a| self.phones.get(&(a, device.device)))
            .and_then(|s| s.delivered.get(message_id).cloned())
            .unwrap_or_default()
    }

    /// Retry receipts a simulated device got for `message_id`.
    pub fn retry_requests(&self, device: &Jid, message_id: &str) -> u32 {
        self.account_key(device)
            .and_then(|a| self.phones.get(&(a, device.device)))
            .and_then(|s| s.retry_requests.get(message_id).copied())
            .unwrap_or(0)
    }
}

/// A bundle from the `<keys>` of a retry receipt (plus its `<registration>`).
fn bundle_from_keys(receipt: &Node, keys: &Node, device: u16) -> Result<PreKeyBundle, String> {
    let registration = stanza::child_bytes(receipt, "registration")
        .and_then(|b| be_uint(b, 4))
        .ok_or("retry receipt <registration> is not 4 bytes")?;
    let identity = stanza::child_bytes(keys, "identity")
        .and_then(|b| crate::signal::PublicKey::from_raw(b).ok())
        .ok_or("<keys><identity> is not a 32-byte key")?;
    let key = |node: &Node| -> Option<(u32, crate::signal::PublicKey)> {
        let id = stanza::child_bytes(node, "id").and_then(|b| be_uint(b, 3))?;
        let value = stanza::child_bytes(node, "value")
            .and_then(|b| crate::signal::PublicKey::from_raw(b).ok())?;
        Some((id, value))
    };
    let prekey = keys.child_by_tag("key").and_then(key);
    let skey = keys.child_by_tag("skey").ok_or("<keys> without <skey>")?;
    let (signed_id, signed) = key(skey).ok_or("<skey> id/value malformed")?;
    let signature = stanza::child_bytes(skey, "signature")
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .ok_or("<skey><signature> is not 64 bytes")?;
    Ok(PreKeyBundle {
        registration_id: registration,
        device_id: u32::from(device),
        prekey,
        signed_prekey_id: signed_id,
        signed_prekey: signed,
        signed_prekey_signature: signature,
        identity_key: identity,
    })
}
