//! What the server does with a connection once its Noise handshake is done (PROTOCOL.md
//! §5, §14): registration payload → `pair-device` with the QR refs; login payload →
//! `<success>` or `<failure reason="401"/>`; then every stanza the client sends is
//! answered: IQs get a result or an error (unknown ones `501 feature-not-implemented`,
//! never silence), receipts get acks, acks are recorded.

use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost::Message;
use rand::RngCore;
use rand::rngs::OsRng;

use super::stanza::{self, attr_text};
use super::world::{
    ConnAction, ConnId, Phase, Registering, RegistrationData, SignedPreKeyPublic, World, unix_now,
};
use crate::binary::Node;
use crate::proto::companion::DeviceProps;
use crate::proto::wa6::ClientPayload;
use crate::proto::wa6::client_payload::DevicePairingRegistrationData;
use crate::signal::curve::{DJB_TYPE, PublicKey, SIGNATURE_LEN};

/// Failure reason for logged-out / unknown devices.
pub const FAILURE_LOGGED_OUT: u16 = 401;
/// Failure reason for a payload that is neither a valid registration nor a login.
pub const FAILURE_BAD_REQUEST: u16 = 400;

/// Reads the key material of a registration payload; refuses wrong lengths, a key type
/// other than `0x05` and a signed prekey whose signature does not verify.
pub fn registration_data(p: &DevicePairingRegistrationData) -> Result<RegistrationData, String> {
    let field = |name: &str, v: &Option<Vec<u8>>, len: usize| -> Result<Vec<u8>, String> {
        match v {
            Some(b) if b.len() == len => Ok(b.clone()),
            Some(b) => Err(format!("{name} is {} bytes, expected {len}", b.len())),
            None => Err(format!("{name} is missing")),
        }
    };
    let reg = field("eRegid", &p.e_regid, 4)?;
    let key_type = field("eKeytype", &p.e_keytype, 1)?;
    if key_type != [DJB_TYPE] {
        return Err(format!("eKeytype is {key_type:02x?}, expected [05]"));
    }
    let identity = PublicKey::from_raw(&field("eIdent", &p.e_ident, 32)?)
        .map_err(|e| format!("eIdent: {e}"))?;
    let skey_id = field("eSkeyID", &p.e_skey_id, 3)?;
    let skey = PublicKey::from_raw(&field("eSkeyVal", &p.e_skey_val, 32)?)
        .map_err(|e| format!("eSkeyVal: {e}"))?;
    let sig = field("eSkeySig", &p.e_skey_sig, SIGNATURE_LEN)?;
    if !identity.verify(&skey.serialize(), &sig) {
        return Err("eSkeySig does not verify with eIdent over 0x05 ‖ eSkeyVal".into());
    }
    let mut signature = [0u8; SIGNATURE_LEN];
    signature.copy_from_slice(&sig);
    let props = match &p.device_props {
        Some(b) => {
            Some(DeviceProps::decode(b.as_slice()).map_err(|e| format!("deviceProps: {e}"))?)
        }
        None => None,
    };
    Ok(RegistrationData {
        identity,
        registration_id: stanza::be_uint(&reg, 4).unwrap_or(0),
        signed_prekey: SignedPreKeyPublic {
            id: stanza::be_uint(&skey_id, 3).unwrap_or(0),
            key: skey,
            signature,
        },
        platform: props
            .as_ref()
            .and_then(|p| p.os.clone())
            .unwrap_or_default(),
        platform_type: props.and_then(|p| p.platform_type),
    })
}

/// A random pair-device ref in the `2@…` shape WhatsApp's refs have.
fn new_ref() -> String {
    let mut raw = [0u8; 33];
    OsRng.fill_bytes(&mut raw);
    format!("2@{}", STANDARD.encode(raw))
}

impl World {
    /// Handles the ClientPayload of a connection that finished its handshake.
    pub fn on_client_payload(&mut self, conn: ConnId, payload: &ClientPayload, now: Instant) {
        if let Some(data) = &payload.device_pairing_data {
            match registration_data(data) {
                Ok(reg) => self.start_registration(conn, reg, now),
                Err(why) => {
                    self.protocol_error(conn, format!("bad registration payload: {why}"));
                    self.fail(conn, FAILURE_BAD_REQUEST, Some(&why));
                }
            }
        } else if let (Some(user), Some(device)) = (payload.username, payload.device) {
            self.login(conn, user, device, now);
        } else {
            let why = "payload has neither devicePairingData nor username + device";
            self.protocol_error(conn, why);
            self.fail(conn, FAILURE_BAD_REQUEST, Some(why));
        }
    }

    fn fail(&mut self, conn: ConnId, reason: u16, message: Option<&str>) {
        if let Some(c) = self.connections.get_mut(&conn) {
            c.phase = Phase::Ending;
        }
        self.send(conn, stanza::failure(reason, message));
        self.push(conn, ConnAction::Close);
    }

    fn start_registration(&mut self, conn: ConnId, data: RegistrationData, now: Instant) {
        let schedule = self.config.qr;
        let refs: Vec<String> = (0..schedule.count).map(|_| new_ref()).collect();
        let id = self.stanza_id();
        let node = stanza::pair_device(&id, &refs);
        let Some(c) = self.connections.get_mut(&conn) else {
            return;
        };
        c.phase = Phase::Registering(Box::new(Registering {
            data,
            refs,
            refs_sent_at: now,
            code: None,
            pairing: None,
        }));
        self.send(conn, node);
        self.push(conn, ConnAction::WakeAt(now + schedule.total()));
    }

    fn login(&mut self, conn: ConnId, username: u64, device: u32, now: Instant) {
        let user = username.to_string();
        let Some(client_static) = self.connections.get(&conn).map(|c| c.client_static) else {
            return;
        };
        let refusal = match (u16::try_from(device), self.accounts.get(&user)) {
            (_, None) => Some(format!("no account {user}")),
            (Err(_), _) => Some(format!("device {device} does not exist")),
            (Ok(d), Some(account)) => match account.devices.get(&d) {
                None => Some(format!("{user}:{d} is not a registered device")),
                Some(r) if r.removed => Some(format!("{user}:{d} was removed")),
                Some(r) if r.noise_key != Some(client_static) => Some(format!(
                    "{user}:{d} logged in with another Noise key than it paired with"
                )),
                Some(_) => None,
            },
        };
        if let Some(why) = refusal {
            tracing::info!(conn, "sim: login refused: {why}");
            self.fail(conn, FAILURE_LOGGED_OUT, None);
            return;
        }
        // Checked above: the device number fits and the account exists.
        let device = device as u16;
        let Some(lid) = self.accounts.get(&user).map(|a| a.lid_device(device)) else {
            return;
        };
        for old in self.connections_of(&user, device) {
            if old != conn {
                self.end_with_stream_error(
                    old,
                    stanza::stream_error(None, Some(stanza::conflict("replaced"))),
                );
            }
        }
        if let Some(c) = self.connections.get_mut(&conn) {
            c.phase = Phase::LoggedIn {
                account: user.clone(),
                device,
                active: false,
            };
        }
        if let Some(d) = self
            .accounts
            .get_mut(&user)
            .and_then(|a| a.devices.get_mut(&device))
        {
            d.last_activity = Some(now);
        }
        self.send(conn, stanza::success(unix_now(), &lid));
    }

    /// Handles one stanza from a connection, including everything simulated devices do
    /// in answer (see [`World::settle`]).
    pub fn on_node(&mut self, conn: ConnId, node: Node, now: Instant) {
        self.on_node_deferred(conn, node, now);
        self.settle();
    }

    /// Handles one stanza from a connection but leaves what it routed to simulated
    /// devices queued: the I/O layer sends the answer (e.g. the message ack) first and
    /// then runs [`World::settle_steps`] in slices, so a send to thousands of simulated
    /// devices does not hold everything else up.
    pub fn on_node_deferred(&mut self, conn: ConnId, node: Node, now: Instant) {
        let logged_in = match self.connections.get_mut(&conn) {
            None => return,
            Some(c) => {
                c.last_activity = now;
                match &c.phase {
                    Phase::Ending => return,
                    Phase::LoggedIn {
                        account, device, ..
                    } => Some((account.clone(), *device)),
                    Phase::Registering(_) => None,
                }
            }
        };
        if let Some((account, device)) = &logged_in
            && let Some(d) = self
                .accounts
                .get_mut(account)
                .and_then(|a| a.devices.get_mut(device))
        {
            d.last_activity = Some(now);
        }
        match node.tag.as_ref() {
            "iq" => self.on_iq(conn, logged_in, &node),
            "ack" => self.on_ack(conn, &node),
            "receipt" => {
                self.ack_stanza(conn, &node, None);
                if let Some((account, device)) = &logged_in {
                    let origin = super::routing::Origin {
                        account: account.clone(),
                        device: *device,
                        conn: Some(conn),
                    };
                    self.route_receipt(&origin, &node);
                }
            }
            "call" => self.on_call(conn, &node),
            "message" => match &logged_in {
                Some((account, device)) => {
                    self.on_client_message(conn, account, *device, &node);
                }
                None => {
                    self.protocol_error(conn, "<message> before login");
                    self.ack_stanza(conn, &node, Some(401));
                }
            },
            "presence" | "chatstate" | "ib" => {}
            other => self.protocol_error(conn, format!("unexpected <{other}> stanza ignored")),
        }
    }

    /// `<ack class=<tag> id from=<to of the stanza> [type] [error]/>`.
    fn ack_stanza(&mut self, conn: ConnId, node: &Node, error: Option<u16>) {
        let Some(id) = attr_text(node, "id") else {
            self.protocol_error(conn, format!("<{}> without id cannot be acked", node.tag));
            return;
        };
        let from = node.get_attr("to").cloned().unwrap_or_else(stanza::server);
        let kind = attr_text(node, "type");
        let ack = stanza::ack(&node.tag, &id, from, kind.as_deref(), error);
        self.send(conn, ack);
    }

    fn on_ack(&mut self, conn: ConnId, node: &Node) {
        let Some(id) = attr_text(node, "id") else {
            self.protocol_error(conn, "<ack> without id");
            return;
        };
        if let Some(c) = self.connections.get_mut(&conn) {
            c.unacked.remove(id.as_ref());
        }
    }

    fn on_iq(&mut self, conn: ConnId, logged_in: Option<(String, u16)>, iq: &Node) {
        let Some(id) = attr_text(iq, "id").map(|s| s.into_owned()) else {
            self.protocol_error(conn, "<iq> without id");
            return;
        };
        let kind = attr_text(iq, "type")
            .map(|s| s.into_owned())
            .unwrap_or_default();
        if kind == "result" || kind == "error" {
            self.on_iq_response(conn, &id, iq);
            return;
        }
        if kind != "get" && kind != "set" {
            self.protocol_error(conn, format!("<iq id={id}> has type {kind:?}"));
            self.send(conn, stanza::iq_error(&id, 400, "bad-request"));
            return;
        }
        let xmlns = attr_text(iq, "xmlns")
            .map(|s| s.into_owned())
            .unwrap_or_default();
        let first = iq.children().first().map(|c| c.tag.as_ref()).unwrap_or("");
        let reply = match (xmlns.as_str(), kind.as_str(), first, &logged_in) {
            ("w:p", "get", _, _) | ("urn:xmpp:ping", "get", _, _) => {
                if let Some(c) = self.connections.get_mut(&conn) {
                    c.pings = c.pings.saturating_add(1);
                }
                Some(stanza::iq_result(&id))
            }
            ("md", "set", "link_code_companion_reg", None) => {
                self.on_link_code_iq(conn, &id, iq);
                None
            }
            ("md", "set", "remove-companion-device", Some((account, device))) => {
                Some(self.on_remove_companion(conn, &id, iq, account, *device))
            }
            ("passive", "set", "active" | "passive", Some(_)) => {
                let active = first == "active";
                if let Some(Phase::LoggedIn { active: a, .. }) =
                    self.connections.get_mut(&conn).map(|c| &mut c.phase)
                {
                    *a = active;
                }
                self.send(conn, stanza::iq_result(&id));
                if active {
                    // The offline backlog goes out after <active/>, then its end marker.
                    let n = self.flush_offline(conn);
                    self.send(conn, stanza::offline_done(n));
                }
                None
            }
            ("w:g2", _, _, Some((account, _))) => {
                let reply = self.on_group_iq(conn, account, &id, &kind, iq);
                let held =
                    stanza::attr_jid(iq, "to").and_then(|g| self.held_group_info.get_mut(&g.user));
                match held {
                    Some(waiting) => {
                        waiting.push((conn, reply));
                        None
                    }
                    None => Some(reply),
                }
            }
            ("usync", "get", "usync", Some(_)) => Some(self.on_usync(conn, &id, iq)),
            ("encrypt", _, _, Some((account, device))) => {
                Some(self.on_encrypt_iq(conn, account, *device, &id, &kind, iq))
            }
            _ => {
                tracing::info!(
                    conn,
                    "sim: unsupported iq xmlns={xmlns:?} type={kind} <{first}> → 501"
                );
                Some(stanza::iq_error(&id, 501, "feature-not-implemented"))
            }
        };
        if let Some(reply) = reply {
            self.send(conn, reply);
        }
    }

    fn on_iq_response(&mut self, conn: ConnId, id: &str, iq: &Node) {
        let pairing_reply = matches!(
            self.connections.get(&conn).map(|c| &c.phase),
            Some(Phase::Registering(r)) if r.pairing.as_ref().is_some_and(|p| p.iq_id == id)
        );
        if pairing_reply {
            self.on_pairing_reply(conn, iq);
        }
        // Anything else is the acknowledgement of pair-device or of a server ping.
    }

    /// `<remove-companion-device jid reason/>`: the client logs itself out (or another
    /// companion of the same account).
    fn on_remove_companion(
        &mut self,
        conn: ConnId,
        id: &str,
        iq: &Node,
        account: &str,
        device: u16,
    ) -> Node {
        let target = iq
            .child_by_tag("remove-companion-device")
            .and_then(|n| stanza::attr_jid(n, "jid"));
        let Some(target) = target else {
            self.protocol_error(conn, "remove-companion-device without jid");
            return stanza::iq_error(id, 400, "bad-request");
        };
        let same_account = self.account_key(&target).as_deref() == Some(account);
        if !same_account || target.device == 0 {
            return stanza::iq_error(id, 403, "forbidden");
        }
        let own = target.device == device;
        if own {
            // The client disconnects by itself after the result.
            if let Some(d) = self.device_mut(&target) {
                d.removed = true;
            }
        } else if !self.remove_device(&target) {
            return stanza::iq_error(id, 404, "item-not-found");
        }
        stanza::iq_result(id)
    }

    /// The wake-up the connection asked for: closes a registering connection whose QR
    /// refs all expired without a pairing in progress.
    pub fn on_deadline(&mut self, conn: ConnId, now: Instant) {
        let total = self.config.qr.total();
        let expired = matches!(
            self.connections.get(&conn).map(|c| &c.phase),
            Some(Phase::Registering(r))
                if r.pairing.is_none() && now.saturating_duration_since(r.refs_sent_at) >= total
        );
        if expired {
            tracing::info!(conn, "sim: every QR ref expired without a scan; closing");
            if let Some(c) = self.connections.get_mut(&conn) {
                c.phase = Phase::Ending;
            }
            self.push(conn, ConnAction::Close);
        }
    }

    /// Sends a stream error to every connection of a device and closes them; returns
    /// how many there were.
    pub fn stream_error_to(&mut self, device: &crate::jid::Jid, node: &Node) -> usize {
        let conns = self.connections_of_jid(device);
        for c in &conns {
            self.end_with_stream_error(*c, node.clone());
        }
        conns.len()
    }

    /// Drops every connection of a device without a goodbye; returns how many.
    pub fn abort_connections_of(&mut self, device: &crate::jid::Jid) -> usize {
        let conns = self.connections_of_jid(device);
        for c in &conns {
            if let Some(conn) = self.connections.get_mut(c) {
                conn.phase = Phase::Ending;
            }
            self.push(*c, ConnAction::Abort);
        }
        conns.len()
    }
}
