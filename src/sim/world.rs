//! The simulated world: accounts (one PN, one LID, a primary phone with its own Signal
//! identity), their devices with the key material the server holds for them (identity,
//! registration id, signed prekey, one-time prekey pool, ADV identity), and the live
//! connections. Sans-IO: connections are ids; what must reach a socket is queued as an
//! [`Effect`] that the I/O layer (`server.rs`) drains after every operation.
//!
//! Room to grow (issue 5): groups and usync device lists read `accounts`/`devices`;
//! simulated member phones and companions are accounts whose devices carry
//! [`SimulatedKeys`] (private halves) so they can decrypt what is routed to them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Instant;

use rand::Rng;
use rand::rngs::OsRng;
use rand_core::{CryptoRng, RngCore};

use super::SimError;
use super::adv::IssuedIdentity;
use super::config::SimConfig;
use super::pair_code::PrimaryHello;
use crate::binary::Node;
use crate::jid::{DEFAULT_USER_SERVER, HIDDEN_USER_SERVER, Jid};
use crate::signal::curve::{PublicKey, SIGNATURE_LEN};
use crate::signal::identity::{LocalIdentity, PreKeyRecord, SignedPreKeyRecord, generate_prekeys};

/// Identifies one client connection.
pub type ConnId = u64;

/// Identifies one pairing the phone started and waits on.
pub type Ticket = u64;

/// Device number hosted (business) devices use; never assigned to companions.
pub const HOSTED_DEVICE_ID: u16 = 99;
/// Most protocol errors kept (a hostile client cannot grow the list without bound).
pub const MAX_PROTOCOL_ERRORS: usize = 1_000;
/// Largest device number (device numbers are one byte on the wire).
pub const MAX_DEVICE_ID: u16 = 255;

/// What the I/O layer must do for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnAction {
    /// Encrypt and send this node.
    Send(Node),
    /// Close the websocket after what is queued (a clean close frame).
    Close,
    /// Drop the TCP connection at once, without a close frame.
    Abort,
    /// Call [`World::on_deadline`] for this connection at that instant.
    WakeAt(Instant),
}

/// Something the I/O layer must carry out after a world operation.
#[derive(Debug, Clone)]
pub enum Effect {
    /// An action on a connection.
    Conn(ConnId, ConnAction),
    /// A pairing finished: wake the phone call waiting on the ticket.
    PairingDone(Ticket, Result<Jid, SimError>),
}

/// A signed prekey as the server keeps it (public half only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedPreKeyPublic {
    /// 24-bit id.
    pub id: u32,
    /// The public key.
    pub key: PublicKey,
    /// XEdDSA signature of the identity key over `0x05 ‖ key`.
    pub signature: [u8; SIGNATURE_LEN],
}

/// Private key material of a device the simulator itself plays (primary phones, and in
/// issue 5 group members), so it can decrypt what is sent to it.
#[derive(Debug, Clone)]
pub struct SimulatedKeys {
    /// Identity key pair and registration id.
    pub identity: LocalIdentity,
    /// The signed prekey with its private half.
    pub signed_prekey: SignedPreKeyRecord,
    /// Every one-time prekey ever published, by id (consumed ones stay until used).
    pub prekeys: BTreeMap<u32, PreKeyRecord>,
}

/// One device of an account as the server knows it.
#[derive(Debug, Clone)]
pub struct DeviceRecord {
    /// Device number (0 = primary phone).
    pub id: u16,
    /// Signal identity key.
    pub identity: PublicKey,
    /// Registration id.
    pub registration_id: u32,
    /// Current signed prekey.
    pub signed_prekey: SignedPreKeyPublic,
    /// One-time prekeys still on the server, oldest first (fetches pop the front).
    pub prekeys: VecDeque<(u32, PublicKey)>,
    /// ADV key index (0 for the primary).
    pub key_index: u32,
    /// The `ADVSignedDeviceIdentity` handed out with key bundles (companions only).
    pub signed_identity: Option<Vec<u8>>,
    /// Noise static key the device logs in with (companions only).
    pub noise_key: Option<PublicKey>,
    /// What the device calls itself (`DeviceProps.os`, or the phone platform).
    pub platform: String,
    /// Unlinked: refuses logins with 401.
    pub removed: bool,
    /// A low-prekey notification went out since the last upload.
    pub low_count_notified: bool,
    /// Last frame received from a connection of this device.
    pub last_activity: Option<Instant>,
    /// Private keys, for devices the simulator plays itself.
    pub simulated: Option<SimulatedKeys>,
}

/// An account: a phone number, its LID, its primary phone and companions.
#[derive(Debug, Clone)]
pub struct Account {
    /// Phone-number user JID (`<digits>@s.whatsapp.net`).
    pub pn: Jid,
    /// LID user JID (`<digits>@lid`).
    pub lid: Jid,
    /// `rawId` in every ADV identity the phone issues.
    pub raw_id: u32,
    /// Devices by number; device 0 is the simulated primary phone.
    pub devices: BTreeMap<u16, DeviceRecord>,
    /// Next key index to issue.
    pub next_key_index: u32,
    /// Next device number to try.
    pub next_device_id: u16,
}

impl Account {
    /// The primary phone's keys (the account key is its identity key pair).
    pub fn primary_keys(&self) -> Option<&SimulatedKeys> {
        self.devices.get(&0).and_then(|d| d.simulated.as_ref())
    }

    /// PN device JID of device `id`.
    pub fn pn_device(&self, id: u16) -> Jid {
        self.pn.with_device(id)
    }

    /// LID device JID of device `id`.
    pub fn lid_device(&self, id: u16) -> Jid {
        self.lid.with_device(id)
    }

    /// Reserves the next free companion device number (1..=255, never 99).
    pub(crate) fn allocate_device_id(&mut self) -> Option<u16> {
        for _ in 0..MAX_DEVICE_ID {
            let id = self.next_device_id.clamp(1, MAX_DEVICE_ID);
            self.next_device_id = if id >= MAX_DEVICE_ID { 1 } else { id + 1 };
            if id != HOSTED_DEVICE_ID && !self.devices.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    /// Reserves the next ADV key index.
    pub(crate) fn allocate_key_index(&mut self) -> u32 {
        let k = self.next_key_index;
        self.next_key_index = self.next_key_index.saturating_add(1);
        k
    }
}

/// What a registering client sent in its `devicePairingData`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationData {
    /// Signal identity key.
    pub identity: PublicKey,
    /// Registration id.
    pub registration_id: u32,
    /// Signed prekey.
    pub signed_prekey: SignedPreKeyPublic,
    /// `DeviceProps.os`.
    pub platform: String,
    /// `DeviceProps.platformType`.
    pub platform_type: Option<i32>,
}

/// Pair-code state of a registering connection.
#[derive(Debug, Clone)]
pub struct CodePairing {
    /// PN user of the account the client asked to link to.
    pub account: String,
    /// `link_code_pairing_wrapped_companion_ephemeral_pub` (80 bytes).
    pub wrapped_companion_ephemeral: Vec<u8>,
    /// The ref the server handed out.
    pub reference: String,
    /// Set once the phone entered a code.
    pub primary_hello: Option<(PrimaryHello, Ticket)>,
}

/// A pair-success sent and waiting for the client's `pair-device-sign`.
#[derive(Debug, Clone)]
pub struct PairingInFlight {
    /// Id of the pair-success IQ.
    pub iq_id: String,
    /// What the phone issued.
    pub issued: IssuedIdentity,
    /// Device number assigned.
    pub device_id: u16,
    /// PN user of the account.
    pub account: String,
    /// Who waits for the outcome.
    pub ticket: Ticket,
}

/// A client that sent a registration payload and is being shown QR codes.
#[derive(Debug, Clone)]
pub struct Registering {
    /// The registration payload's key material.
    pub data: RegistrationData,
    /// The pair-device refs, in order.
    pub refs: Vec<String>,
    /// When the pair-device IQ went out.
    pub refs_sent_at: Instant,
    /// Pair-code flow, when the client asked for a code.
    pub code: Option<CodePairing>,
    /// Pair-success awaiting the reply.
    pub pairing: Option<PairingInFlight>,
}

/// Where a connection is after the handshake.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Registration payload: being paired.
    Registering(Box<Registering>),
    /// Login payload accepted.
    LoggedIn {
        /// PN user of the account.
        account: String,
        /// Device number.
        device: u16,
        /// The client sent `<active/>`.
        active: bool,
    },
    /// Failed, removed or replaced: only waits for the socket to close.
    Ending,
}

/// One connection after its Noise handshake.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Its id.
    pub id: ConnId,
    /// The client's Noise static key.
    pub client_static: PublicKey,
    /// Where it is.
    pub phase: Phase,
    /// When the handshake finished.
    pub connected_at: Instant,
    /// Last frame received.
    pub last_activity: Instant,
    /// Number of `w:p` pings answered.
    pub pings: u64,
    /// Ids of notifications sent and not acked yet, with their `type`.
    pub unacked: BTreeMap<String, String>,
}

/// A device as [`crate::sim::SimServer::registered_devices`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimDeviceInfo {
    /// PN device JID.
    pub jid: Jid,
    /// LID device JID.
    pub lid: Jid,
    /// Signal identity key.
    pub identity: PublicKey,
    /// Registration id.
    pub registration_id: u32,
    /// Signed prekey id.
    pub signed_prekey_id: u32,
    /// Signed prekey public key.
    pub signed_prekey: PublicKey,
    /// One-time prekeys left on the server.
    pub prekeys_left: usize,
    /// Ids of those prekeys, oldest first.
    pub prekey_ids: Vec<u32>,
    /// ADV key index.
    pub key_index: u32,
    /// The stored `ADVSignedDeviceIdentity` (companions).
    pub signed_identity: Option<Vec<u8>>,
    /// What the device calls itself.
    pub platform: String,
    /// Unlinked.
    pub removed: bool,
    /// A connection is logged in as this device now.
    pub connected: bool,
    /// Last frame received from it.
    pub last_activity: Option<Instant>,
}

/// What a test injects with [`crate::sim::SimServer::inject_device`]: a companion that
/// is registered without going through pairing.
#[derive(Debug, Clone)]
pub struct DeviceRegistration {
    /// The Noise static key it will log in with.
    pub noise_key: PublicKey,
    /// Its identity key pair and registration id (the private half signs its ADV
    /// device signature, as the real companion would have).
    pub identity: LocalIdentity,
    /// Its signed prekey (public half and signature are kept).
    pub signed_prekey: SignedPreKeyPublic,
    /// What it calls itself.
    pub platform: String,
}

/// The whole simulated world. Every method is synchronous and leaves socket work in
/// the effect queue.
#[derive(Debug, Clone)]
pub struct World {
    pub(crate) config: SimConfig,
    pub(crate) accounts: BTreeMap<String, Account>,
    pub(crate) lids: HashMap<String, String>,
    pub(crate) connections: BTreeMap<ConnId, Connection>,
    next_conn: ConnId,
    next_stanza: u64,
    next_ticket: Ticket,
    effects: Vec<Effect>,
    protocol_errors: Vec<String>,
    /// Groups by id (the user part of `<id>@g.us`).
    pub(crate) groups: BTreeMap<String, super::groups::Group>,
    /// Stanzas waiting for a real device to log in and send `<active/>`, by (account,
    /// device).
    pub(crate) offline: HashMap<(String, u16), VecDeque<Node>>,
    /// The Signal state and what they saw of every simulated device that received or
    /// sent something, by (account, device).
    pub(crate) phones: HashMap<(String, u16), super::phones::PhoneState>,
    /// Stanzas routed to simulated devices, processed by [`World::settle`].
    pub(crate) in_world: VecDeque<(String, u16, Node)>,
    /// Delivery receipts simulated devices owe, grouped per message before they go out.
    pub(crate) pending_receipts: BTreeMap<super::routing::ReceiptKey, Vec<Jid>>,
    /// Groups whose `w:g2` answers are held back (tests of slow queries), with the
    /// answers waiting, by group id.
    pub(crate) held_group_info: HashMap<String, Vec<(ConnId, Node)>>,
}

/// Current unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl World {
    /// An empty world with these settings.
    pub fn new(config: SimConfig) -> Self {
        World {
            config,
            accounts: BTreeMap::new(),
            lids: HashMap::new(),
            connections: BTreeMap::new(),
            next_conn: 1,
            next_stanza: OsRng.gen_range(1_000_000_000..2_000_000_000),
            next_ticket: 1,
            effects: Vec::new(),
            protocol_errors: Vec::new(),
            groups: BTreeMap::new(),
            offline: HashMap::new(),
            phones: HashMap::new(),
            in_world: VecDeque::new(),
            pending_receipts: BTreeMap::new(),
            held_group_info: HashMap::new(),
        }
    }

    /// Takes the queued effects.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    pub(crate) fn push(&mut self, conn: ConnId, action: ConnAction) {
        self.effects.push(Effect::Conn(conn, action));
    }

    pub(crate) fn send(&mut self, conn: ConnId, node: Node) {
        self.push(conn, ConnAction::Send(node));
    }

    pub(crate) fn finish_pairing(&mut self, ticket: Ticket, result: Result<Jid, SimError>) {
        self.effects.push(Effect::PairingDone(ticket, result));
    }

    /// A fresh id for a stanza the server sends.
    pub(crate) fn stanza_id(&mut self) -> String {
        self.next_stanza = self.next_stanza.wrapping_add(1);
        self.next_stanza.to_string()
    }

    /// Restarts stanza ids at `next` (fuzzing and tests that need stable ids).
    #[doc(hidden)]
    pub fn reseed_stanza_ids(&mut self, next: u64) {
        self.next_stanza = next;
    }

    /// A fresh ticket for a pairing.
    pub fn ticket(&mut self) -> Ticket {
        let t = self.next_ticket;
        self.next_ticket = self.next_ticket.wrapping_add(1);
        t
    }

    /// Records something the client did wrong (tests assert on the list).
    pub(crate) fn protocol_error(&mut self, conn: ConnId, what: impl Into<String>) {
        let what = what.into();
        tracing::warn!(conn, "sim: client protocol error: {what}");
        if self.protocol_errors.len() < MAX_PROTOCOL_ERRORS {
            self.protocol_errors
                .push(format!("connection {conn}: {what}"));
        }
    }

    /// Everything clients did wrong so far.
    pub fn protocol_errors(&self) -> Vec<String> {
        self.protocol_errors.clone()
    }

    /// Creates (or returns the existing) account for a phone number's digits: a fresh
    /// LID, a primary phone (device 0) with its own identity, signed prekey and
    /// `config.phone_prekeys` one-time prekeys.
    pub fn create_account(&mut self, pn_user: &str) -> &Account {
        self.create_account_with_rng(pn_user, &mut OsRng)
    }

    /// [`Self::create_account`] drawing the LID and keys from `rng` (reproducible worlds
    /// for fuzzing and fixtures).
    pub fn create_account_with_rng<R: RngCore + CryptoRng + ?Sized>(
        &mut self,
        pn_user: &str,
        rng: &mut R,
    ) -> &Account {
        if !self.accounts.contains_key(pn_user) {
            let account = self.new_account(pn_user, rng);
            self.lids
                .insert(account.lid.user.clone(), pn_user.to_owned());
            self.accounts.insert(pn_user.to_owned(), account);
        }
        &self.accounts[pn_user]
    }

    fn new_account<R: RngCore + CryptoRng + ?Sized>(&self, pn_user: &str, rng: &mut R) -> Account {
        let lid_user = loop {
            let candidate = rng
                .gen_range(100_000_000_000_000u64..1_000_000_000_000_000)
                .to_string();
            if !self.lids.contains_key(&candidate) {
                break candidate;
            }
        };
        let identity = LocalIdentity::generate(rng);
        let signed = SignedPreKeyRecord::generate(&identity.key_pair, 1, unix_now() * 1000, rng);
        let prekeys = generate_prekeys(1, self.config.phone_prekeys, rng);
        let phone = DeviceRecord {
            id: 0,
            identity: identity.key_pair.public,
            registration_id: identity.registration_id,
            signed_prekey: SignedPreKeyPublic {
                id: signed.id,
                key: signed.key_pair.public,
                signature: signed.signature,
            },
            prekeys: prekeys.iter().map(|p| (p.id, p.key_pair.public)).collect(),
            key_index: 0,
            signed_identity: None,
            noise_key: None,
            platform: self.config.phone_platform.clone(),
            removed: false,
            low_count_notified: false,
            last_activity: None,
            simulated: Some(SimulatedKeys {
                identity,
                signed_prekey: signed,
                prekeys: prekeys.into_iter().map(|p| (p.id, p)).collect(),
            }),
        };
        Account {
            pn: Jid::new(pn_user, DEFAULT_USER_SERVER),
            lid: Jid::new(lid_user, HIDDEN_USER_SERVER),
            raw_id: rng.r#gen(),
            devices: BTreeMap::from([(0, phone)]),
            next_key_index: 1,
            next_device_id: 1,
        }
    }

    /// The account of a PN or LID JID (any device).
    pub fn account(&self, user: &Jid) -> Option<&Account> {
        self.account_key(user).and_then(|k| self.accounts.get(&k))
    }

    /// The PN user keying the account of a PN or LID JID.
    pub fn account_key(&self, user: &Jid) -> Option<String> {
        if user.is_pn() {
            self.accounts
                .contains_key(&user.user)
                .then(|| user.user.clone())
        } else if user.is_lid() {
            self.lids.get(&user.user).cloned()
        } else {
            None
        }
    }

    /// The connections logged in as device `device` of account `account`.
    pub(crate) fn connections_of(&self, account: &str, device: u16) -> Vec<ConnId> {
        self.connections
            .values()
            .filter(|c| {
                matches!(&c.phase, Phase::LoggedIn { account: a, device: d, .. }
                    if a == account && *d == device)
            })
            .map(|c| c.id)
            .collect()
    }

    /// Connections logged in as the device a PN or LID device JID names.
    pub fn connections_of_jid(&self, device: &Jid) -> Vec<ConnId> {
        match self.account_key(device) {
            Some(account) => self.connections_of(&account, device.device),
            None => Vec::new(),
        }
    }

    /// Every device of the account `user` names (PN or LID), primary first.
    pub fn device_infos(&self, user: &Jid) -> Vec<SimDeviceInfo> {
        let Some(key) = self.account_key(user) else {
            return Vec::new();
        };
        let Some(account) = self.accounts.get(&key) else {
            return Vec::new();
        };
        account
            .devices
            .values()
            .map(|d| SimDeviceInfo {
                jid: account.pn_device(d.id),
                lid: account.lid_device(d.id),
                identity: d.identity,
                registration_id: d.registration_id,
                signed_prekey_id: d.signed_prekey.id,
                signed_prekey: d.signed_prekey.key,
                prekeys_left: d.prekeys.len(),
                prekey_ids: d.prekeys.iter().map(|(id, _)| *id).collect(),
                key_index: d.key_index,
                signed_identity: d.signed_identity.clone(),
                platform: d.platform.clone(),
                removed: d.removed,
                connected: !self.connections_of(&key, d.id).is_empty(),
                last_activity: d.last_activity,
            })
            .collect()
    }

    /// Registers a new connection after its handshake; returns its id.
    pub fn new_connection(&mut self, client_static: PublicKey, now: Instant) -> ConnId {
        let id = self.next_conn;
        self.next_conn = self.next_conn.wrapping_add(1);
        self.connections.insert(
            id,
            Connection {
                id,
                client_static,
                phase: Phase::Ending,
                connected_at: now,
                last_activity: now,
                pings: 0,
                unacked: BTreeMap::new(),
            },
        );
        id
    }

    /// The device record of a device JID, for tests and hooks.
    pub fn device_mut(&mut self, device: &Jid) -> Option<&mut DeviceRecord> {
        let key = self.account_key(device)?;
        self.accounts.get_mut(&key)?.devices.get_mut(&device.device)
    }

    /// Marks a device unlinked; its live connections get `401` + `device_removed` and
    /// are closed. Returns false when there is no such device.
    pub fn remove_device(&mut self, device: &Jid) -> bool {
        let Some(record) = self.device_mut(device) else {
            return false;
        };
        record.removed = true;
        for conn in self.connections_of_jid(device) {
            self.end_with_stream_error(
                conn,
                super::stanza::stream_error(
                    Some("401"),
                    Some(super::stanza::conflict("device_removed")),
                ),
            );
        }
        true
    }

    /// Sends a stream error to a connection, then closes it.
    pub(crate) fn end_with_stream_error(&mut self, conn: ConnId, node: Node) {
        if let Some(c) = self.connections.get_mut(&conn) {
            c.phase = Phase::Ending;
        }
        self.send(conn, node);
        self.push(conn, ConnAction::Close);
    }

    /// Forgets a connection whose socket is gone and fails what waited on it.
    pub fn on_closed(&mut self, conn: ConnId) {
        let Some(c) = self.connections.remove(&conn) else {
            return;
        };
        if let Phase::Registering(reg) = c.phase {
            if let Some(p) = reg.pairing {
                self.finish_pairing(p.ticket, Err(SimError::ConnectionClosed("pairing")));
            }
            if let Some((_, ticket)) = reg.code.and_then(|c| c.primary_hello) {
                self.finish_pairing(ticket, Err(SimError::ConnectionClosed("code pairing")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_have_a_pn_a_lid_and_a_simulated_phone() {
        let mut w = World::new(SimConfig::default());
        let a = w.create_account("15550001111").clone();
        assert_eq!(a.pn.to_string(), "15550001111@s.whatsapp.net");
        assert!(a.lid.is_lid() && a.lid.user.len() == 15);
        let phone = &a.devices[&0];
        let keys = a.primary_keys().unwrap();
        assert_eq!(phone.identity, keys.identity.key_pair.public);
        assert!(keys.signed_prekey.verify(&phone.identity));
        assert_eq!(phone.prekeys.len(), 20);
        // Idempotent, and reachable by LID.
        assert_eq!(w.create_account("15550001111").lid, a.lid);
        assert_eq!(w.account(&a.lid).unwrap().pn, a.pn);
        assert_eq!(w.device_infos(&a.lid.with_device(0)).len(), 1);
        assert!(w.account(&Jid::new("1", DEFAULT_USER_SERVER)).is_none());
    }

    #[test]
    fn device_ids_skip_99_and_wrap_within_one_byte() {
        let mut w = World::new(SimConfig::default());
        let mut a = w.create_account("1").clone();
        a.next_device_id = 98;
        assert_eq!(a.allocate_device_id(), Some(98));
        assert_eq!(a.allocate_device_id(), Some(100));
        a.next_device_id = 255;
        assert_eq!(a.allocate_device_id(), Some(255));
        assert_eq!(a.allocate_device_id(), Some(1));
        let phone = a.devices[&0].clone();
        for id in 1..=255u16 {
            a.devices.insert(
                id,
                DeviceRecord {
                    id,
                    ..phone.clone()
                },
            );
        }
        assert_eq!(a.allocate_device_id(), None);
    }
}
