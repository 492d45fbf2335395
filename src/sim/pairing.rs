//! The pairing dance on the server's side, with the simulated primary phone playing its
//! part (PROTOCOL.md §6): QR scans, the pair-code exchange, `pair-success`, the check of
//! the `pair-device-sign` reply, device registration and the `515` restart.

use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use rand::rngs::OsRng;

use super::SimError;
use super::adv::issue_device_identity;
use super::pair_code::{PrimaryHello, WRAPPED_EPHEMERAL_LEN};
use super::qr::{QrData, pair_client_type};
use super::stanza::{self, attr_text, child_bytes};
use super::world::{
    CodePairing, ConnId, DeviceRecord, DeviceRegistration, PairingInFlight, Phase, Registering,
    Ticket, World, unix_now,
};
use crate::binary::Node;
use crate::jid::Jid;
use crate::signal::curve::PublicKey;

/// Longest `companion_platform_display` accepted.
const MAX_DISPLAY_LEN: usize = 128;

/// `Browser (OS)`: what WhatsApp's server accepts as `companion_platform_display`.
fn plausible_display(display: &str) -> bool {
    let Some(inner) = display.strip_suffix(')') else {
        return false;
    };
    match inner.split_once(" (") {
        Some((browser, os)) => {
            !browser.trim().is_empty() && !os.trim().is_empty() && display.len() <= MAX_DISPLAY_LEN
        }
        None => false,
    }
}

impl World {
    fn registering(&self, conn: ConnId) -> Option<&Registering> {
        match &self.connections.get(&conn)?.phase {
            Phase::Registering(r) => Some(r),
            _ => None,
        }
    }

    fn registering_mut(&mut self, conn: ConnId) -> Option<&mut Registering> {
        match &mut self.connections.get_mut(&conn)?.phase {
            Phase::Registering(r) => Some(r),
            _ => None,
        }
    }

    /// The QR the most recently connected registering client is showing now, with the
    /// ADV field empty (only the client knows its ADV secret).
    pub fn current_qr(&self, now: Instant) -> Option<String> {
        self.connections
            .values()
            .rev()
            .find_map(|c| {
                let Phase::Registering(r) = &c.phase else {
                    return None;
                };
                let index = self
                    .config
                    .qr
                    .current_index(now.saturating_duration_since(r.refs_sent_at))?;
                let reference = r.refs.get(index)?.clone();
                Some(QrData {
                    reference,
                    noise_key: c.client_static,
                    identity_key: r.data.identity,
                    adv_secret: None,
                    client_type: Some(pair_client_type(r.data.platform_type).to_owned()),
                })
            })
            .map(|q| q.render())
    }

    /// The phone of `account` scanned `qr`: finds the connected registering client
    /// showing that ref now, checks the QR's keys against its registration payload and
    /// sends it `pair-success`. The outcome arrives later as
    /// [`super::world::Effect::PairingDone`] for `ticket`.
    pub fn start_qr_pairing(
        &mut self,
        account: &str,
        qr: &QrData,
        ticket: Ticket,
        now: Instant,
    ) -> Result<(), SimError> {
        let adv_secret = qr.adv_secret.ok_or(SimError::QrWithoutAdvSecret)?;
        if !self.accounts.contains_key(account) {
            return Err(SimError::UnknownAccount(account.to_owned()));
        }
        let schedule = self.config.qr;
        let conn = self
            .connections
            .values()
            .find(|c| match &c.phase {
                Phase::Registering(r) => schedule
                    .current_index(now.saturating_duration_since(r.refs_sent_at))
                    .and_then(|i| r.refs.get(i))
                    .is_some_and(|current| *current == qr.reference),
                _ => false,
            })
            .map(|c| (c.id, c.client_static))
            .ok_or_else(|| SimError::QrRefNotCurrent {
                reference: qr.reference.clone(),
            })?;
        let (conn, client_static) = conn;
        if client_static != qr.noise_key {
            return Err(SimError::QrKeyMismatch { field: "noise key" });
        }
        let identity = self
            .registering(conn)
            .map(|r| r.data.identity)
            .ok_or(SimError::ConnectionClosed("QR scan"))?;
        if identity != qr.identity_key {
            return Err(SimError::QrKeyMismatch {
                field: "identity key",
            });
        }
        self.send_pair_success(conn, account, &identity, &adv_secret, ticket)
    }

    /// Issues the ADV identity, assigns the device number and sends `pair-success`.
    fn send_pair_success(
        &mut self,
        conn: ConnId,
        account: &str,
        companion_identity: &PublicKey,
        adv_secret: &[u8; 32],
        ticket: Ticket,
    ) -> Result<(), SimError> {
        if self.registering(conn).is_some_and(|r| r.pairing.is_some()) {
            return Err(SimError::PairingInProgress);
        }
        let platform = self.config.phone_platform.clone();
        let iq_id = self.stanza_id();
        let acc = self
            .accounts
            .get_mut(account)
            .ok_or_else(|| SimError::UnknownAccount(account.to_owned()))?;
        let primary = acc
            .primary_keys()
            .map(|k| k.identity.key_pair.clone())
            .ok_or_else(|| SimError::UnknownAccount(account.to_owned()))?;
        let device_id = acc.allocate_device_id().ok_or_else(|| {
            SimError::PairingFailed(format!("account {account} has no free device number"))
        })?;
        let key_index = acc.allocate_key_index();
        let t = unix_now();
        let issued = issue_device_identity(
            &primary,
            companion_identity,
            adv_secret,
            acc.raw_id,
            key_index,
            t,
            &mut OsRng,
        );
        let node = stanza::pair_success(
            &iq_id,
            t,
            &issued.hmac_container,
            &acc.pn_device(device_id),
            &acc.lid_device(device_id),
            &platform,
        );
        let reg = self
            .registering_mut(conn)
            .ok_or(SimError::ConnectionClosed("pairing"))?;
        reg.pairing = Some(PairingInFlight {
            iq_id,
            issued,
            device_id,
            account: account.to_owned(),
            ticket,
        });
        self.send(conn, node);
        Ok(())
    }

    /// The client's answer to `pair-success`: on a valid `pair-device-sign` the device is
    /// registered and the connection gets `<stream:error code="515"/>`; otherwise the
    /// pairing fails and nothing is registered.
    pub(crate) fn on_pairing_reply(&mut self, conn: ConnId, iq: &Node) {
        let Some(reg) = self.registering_mut(conn) else {
            return;
        };
        let Some(pairing) = reg.pairing.take() else {
            return;
        };
        let data = reg.data.clone();
        let outcome = check_pair_reply(&pairing, iq);
        let signed_identity = match outcome {
            Ok(signed) => signed,
            Err(why) => {
                self.protocol_error(conn, format!("pairing refused: {why}"));
                self.finish_pairing(pairing.ticket, Err(SimError::PairingFailed(why)));
                return;
            }
        };
        let Some(client_static) = self.connections.get(&conn).map(|c| c.client_static) else {
            return;
        };
        let Some(account) = self.accounts.get_mut(&pairing.account) else {
            self.finish_pairing(
                pairing.ticket,
                Err(SimError::UnknownAccount(pairing.account.clone())),
            );
            return;
        };
        account.devices.insert(
            pairing.device_id,
            DeviceRecord {
                id: pairing.device_id,
                identity: data.identity,
                registration_id: data.registration_id,
                signed_prekey: data.signed_prekey,
                prekeys: Default::default(),
                key_index: pairing.issued.key_index,
                signed_identity: Some(signed_identity),
                noise_key: Some(client_static),
                platform: data.platform,
                removed: false,
                low_count_notified: false,
                last_activity: None,
                simulated: None,
            },
        );
        let jid = account.pn_device(pairing.device_id);
        tracing::info!(conn, "sim: paired {jid}");
        self.finish_pairing(pairing.ticket, Ok(jid));
        self.end_with_stream_error(conn, stanza::stream_error(Some("515"), None));
    }

    /// `link_code_companion_reg` IQs of a registering client: `companion_hello` asks for
    /// a code pairing, `companion_finish` carries the key bundle.
    pub(crate) fn on_link_code_iq(&mut self, conn: ConnId, id: &str, iq: &Node) {
        let Some(reg) = iq.child_by_tag("link_code_companion_reg") else {
            return;
        };
        let stage = attr_text(reg, "stage").map(|s| s.into_owned());
        match stage.as_deref() {
            Some("companion_hello") => {
                let reply = self.companion_hello(conn, id, reg);
                self.send(conn, reply);
            }
            Some("companion_finish") => self.companion_finish(conn, id, reg),
            other => {
                self.protocol_error(conn, format!("link_code_companion_reg stage {other:?}"));
                self.send(conn, stanza::iq_error(id, 400, "bad-request"));
            }
        }
    }

    fn companion_hello(&mut self, conn: ConnId, id: &str, reg: &Node) -> Node {
        let account = stanza::attr_jid(reg, "jid")
            .filter(|j| j.is_pn())
            .map(|j| j.user);
        let wrapped = child_bytes(reg, "link_code_pairing_wrapped_companion_ephemeral_pub");
        let auth_key = child_bytes(reg, "companion_server_auth_key_pub");
        let display = child_bytes(reg, "companion_platform_display")
            .map(|b| String::from_utf8_lossy(b).into_owned());
        let client_static = self.connections.get(&conn).map(|c| c.client_static);
        let problem = match (&account, wrapped, auth_key, &display) {
            (None, ..) => Some("jid is not a phone-number JID".to_owned()),
            (_, None, ..) | (_, _, None, _) | (_, _, _, None) => {
                Some("a required child is missing".to_owned())
            }
            (_, Some(w), _, _) if w.len() != WRAPPED_EPHEMERAL_LEN => Some(format!(
                "wrapped companion ephemeral is {} bytes, expected {WRAPPED_EPHEMERAL_LEN}",
                w.len()
            )),
            (_, _, Some(k), _)
                if client_static.map(|s| s.as_bytes().as_slice() == k) != Some(true) =>
            {
                Some("companion_server_auth_key_pub is not the connection's Noise key".into())
            }
            (_, _, _, Some(d)) if !plausible_display(d) => Some(format!(
                "companion_platform_display {d:?} is not \"Browser (OS)\""
            )),
            _ => None,
        };
        if let Some(why) = problem {
            self.protocol_error(conn, format!("companion_hello refused: {why}"));
            return stanza::iq_error(id, 400, "bad-request");
        }
        let account = account.unwrap_or_default();
        if !self.accounts.contains_key(&account) {
            return stanza::iq_error(id, 404, "item-not-found");
        }
        let mut raw = [0u8; 24];
        OsRng.fill_bytes(&mut raw);
        let reference = STANDARD.encode(raw);
        let Some(r) = self.registering_mut(conn) else {
            return stanza::iq_error(id, 405, "not-allowed");
        };
        if let Some((_, ticket)) = r.code.take().and_then(|c| c.primary_hello) {
            self.finish_pairing(
                ticket,
                Err(SimError::PairingCodeRejected(
                    "the client asked for a new code".into(),
                )),
            );
        }
        let Some(r) = self.registering_mut(conn) else {
            return stanza::iq_error(id, 405, "not-allowed");
        };
        r.code = Some(CodePairing {
            account,
            wrapped_companion_ephemeral: wrapped.unwrap_or_default().to_vec(),
            reference: reference.clone(),
            primary_hello: None,
        });
        stanza::iq_result(id).child(
            Node::new("link_code_companion_reg")
                .child(Node::new("link_code_pairing_ref").with_bytes(reference.into_bytes())),
        )
    }

    /// The connection and wrapped ephemeral key of the newest client waiting for a code
    /// for `account` (the phone unwraps it off the lock: PBKDF2 is slow).
    pub fn code_pairing_request(
        &self,
        account: &str,
    ) -> Result<(ConnId, String, Vec<u8>), SimError> {
        self.connections
            .values()
            .rev()
            .find_map(|c| match &c.phase {
                Phase::Registering(r) => r.code.as_ref().and_then(|code| {
                    (code.account == account && code.primary_hello.is_none()).then(|| {
                        (
                            c.id,
                            code.reference.clone(),
                            code.wrapped_companion_ephemeral.clone(),
                        )
                    })
                }),
                _ => None,
            })
            .ok_or_else(|| SimError::NoPendingCodePairing(account.to_owned()))
    }

    /// The phone entered the code: sends the `primary_hello` notification and waits for
    /// `companion_finish` under `ticket`.
    pub fn begin_primary_hello(
        &mut self,
        conn: ConnId,
        reference: &str,
        hello: PrimaryHello,
        ticket: Ticket,
    ) -> Result<(), SimError> {
        let id = self.stanza_id();
        let t = unix_now();
        let Some(r) = self.registering_mut(conn) else {
            return Err(SimError::ConnectionClosed("code pairing"));
        };
        let Some(code) = r.code.as_mut().filter(|c| c.reference == reference) else {
            return Err(SimError::NoPendingCodePairing(reference.to_owned()));
        };
        if code.primary_hello.is_some() {
            return Err(SimError::PairingInProgress);
        }
        let account = code.account.clone();
        let wrapped = hello.wrapped_primary_ephemeral;
        code.primary_hello = Some((hello, ticket));
        let primary = self
            .accounts
            .get(&account)
            .and_then(|a| a.primary_keys())
            .map(|k| k.identity.key_pair.public)
            .ok_or_else(|| SimError::UnknownAccount(account.clone()))?;
        let node =
            stanza::primary_hello_notification(&id, t, &wrapped, primary.as_bytes(), reference);
        if let Some(c) = self.connections.get_mut(&conn) {
            c.unacked.insert(id, "link_code_companion_reg".into());
        }
        self.send(conn, node);
        Ok(())
    }

    /// `companion_finish`: the phone opens the key bundle; on success the client gets
    /// the IQ result followed by `pair-success`.
    fn companion_finish(&mut self, conn: ConnId, id: &str, reg: &Node) {
        let reply = self.companion_finish_reply(conn, id, reg);
        if let Some(reply) = reply {
            self.send(conn, reply);
        }
    }

    fn companion_finish_reply(&mut self, conn: ConnId, id: &str, reg: &Node) -> Option<Node> {
        let bundle = child_bytes(reg, "link_code_pairing_wrapped_key_bundle");
        let identity =
            child_bytes(reg, "companion_identity_public").and_then(|b| PublicKey::from_raw(b).ok());
        let reference = child_bytes(reg, "link_code_pairing_ref")
            .map(|b| String::from_utf8_lossy(b).into_owned());
        let (Some(bundle), Some(identity), Some(reference)) = (bundle, identity, reference) else {
            self.protocol_error(
                conn,
                "companion_finish lacks its key bundle, identity or ref",
            );
            return Some(stanza::iq_error(id, 400, "bad-request"));
        };
        let Some(r) = self.registering_mut(conn) else {
            return Some(stanza::iq_error(id, 405, "not-allowed"));
        };
        let registered_identity = r.data.identity;
        let Some(code) = r.code.as_mut().filter(|c| c.reference == reference) else {
            self.protocol_error(conn, "companion_finish for an unknown pairing ref");
            return Some(stanza::iq_error(id, 404, "item-not-found"));
        };
        let Some((hello, ticket)) = code.primary_hello.take() else {
            self.protocol_error(conn, "companion_finish before the phone's primary_hello");
            return Some(stanza::iq_error(id, 400, "bad-request"));
        };
        let account = code.account.clone();
        if identity != registered_identity {
            self.finish_pairing(
                ticket,
                Err(SimError::PairingFailed(
                    "companion_identity_public differs from the registration identity".into(),
                )),
            );
            return Some(stanza::iq_error(id, 400, "bad-request"));
        }
        let Some(primary) = self
            .accounts
            .get(&account)
            .and_then(|a| a.primary_keys())
            .map(|k| k.identity.key_pair.clone())
        else {
            self.finish_pairing(ticket, Err(SimError::UnknownAccount(account)));
            return Some(stanza::iq_error(id, 404, "item-not-found"));
        };
        match hello.finish(&primary, &identity, bundle) {
            Ok(adv_secret) => {
                self.send(conn, stanza::iq_result(id));
                if let Err(e) =
                    self.send_pair_success(conn, &account, &identity, &adv_secret, ticket)
                {
                    self.finish_pairing(ticket, Err(e));
                }
                None
            }
            Err(e) => {
                self.finish_pairing(ticket, Err(SimError::PairingCodeRejected(e.to_string())));
                Some(stanza::iq_error(id, 401, "not-authorized"))
            }
        }
    }

    /// Registers a companion directly (test hook): issues and completes its ADV identity
    /// as if it had paired, and returns its PN device JID.
    pub fn inject_device(&mut self, user: &Jid, reg: DeviceRegistration) -> Result<Jid, SimError> {
        let key = self
            .account_key(user)
            .ok_or_else(|| SimError::UnknownAccount(user.to_string()))?;
        let account = self
            .accounts
            .get_mut(&key)
            .ok_or_else(|| SimError::UnknownAccount(key.clone()))?;
        let primary = account
            .primary_keys()
            .map(|k| k.identity.key_pair.clone())
            .ok_or_else(|| SimError::UnknownAccount(key.clone()))?;
        let device_id = account.allocate_device_id().ok_or_else(|| {
            SimError::PairingFailed(format!("account {key} has no free device number"))
        })?;
        let key_index = account.allocate_key_index();
        let mut adv = [0u8; 32];
        OsRng.fill_bytes(&mut adv);
        let issued = issue_device_identity(
            &primary,
            &reg.identity.key_pair.public,
            &adv,
            account.raw_id,
            key_index,
            unix_now(),
            &mut OsRng,
        );
        let device_signature = reg.identity.key_pair.private.sign(
            &mut OsRng,
            &super::adv::device_signature_message(
                &issued.details,
                &reg.identity.key_pair.public,
                &primary.public,
            ),
        );
        let reply = crate::proto::adv::AdvSignedDeviceIdentity {
            details: Some(issued.details.clone()),
            account_signature_key: None,
            account_signature: Some(issued.account_signature.to_vec()),
            device_signature: Some(device_signature.to_vec()),
        };
        let signed = issued
            .check_reply(
                Some(&key_index.to_string()),
                &prost::Message::encode_to_vec(&reply),
            )
            .map_err(|e| SimError::PairingFailed(e.to_string()))?;
        account.devices.insert(
            device_id,
            DeviceRecord {
                id: device_id,
                identity: reg.identity.key_pair.public,
                registration_id: reg.identity.registration_id,
                signed_prekey: reg.signed_prekey,
                prekeys: Default::default(),
                key_index,
                signed_identity: Some(signed),
                noise_key: Some(reg.noise_key),
                platform: reg.platform,
                removed: false,
                low_count_notified: false,
                last_activity: None,
                simulated: None,
            },
        );
        Ok(account.pn_device(device_id))
    }
}

/// Checks a reply to `pair-success`; returns the device's full signed identity.
fn check_pair_reply(pairing: &PairingInFlight, iq: &Node) -> Result<Vec<u8>, String> {
    if attr_text(iq, "type").as_deref() == Some("error") {
        let err = iq.child_by_tag("error");
        let code = err.and_then(|e| attr_text(e, "code")).unwrap_or_default();
        let text = err.and_then(|e| attr_text(e, "text")).unwrap_or_default();
        return Err(format!(
            "client answered pair-success with error {code} {text:?}"
        ));
    }
    let identity = iq
        .child_by_tag("pair-device-sign")
        .and_then(|s| s.child_by_tag("device-identity"))
        .ok_or("reply has no <pair-device-sign><device-identity>")?;
    let bytes = identity
        .bytes()
        .ok_or("<device-identity> in the reply has no bytes")?;
    let key_index = attr_text(identity, "key-index");
    pairing
        .issued
        .check_reply(key_index.as_deref(), bytes)
        .map_err(|e| e.to_string())
}

impl World {
    /// Abandons the pairing waiting on `ticket` (the phone gave up waiting), so the
    /// client can be paired again.
    pub fn cancel_pairing(&mut self, ticket: Ticket) {
        for c in self.connections.values_mut() {
            if let Phase::Registering(r) = &mut c.phase {
                if r.pairing.as_ref().is_some_and(|p| p.ticket == ticket) {
                    r.pairing = None;
                }
                if let Some(code) = &mut r.code
                    && code
                        .primary_hello
                        .as_ref()
                        .is_some_and(|(_, t)| *t == ticket)
                {
                    code.primary_hello = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_must_look_like_browser_and_os() {
        assert!(plausible_display("Chrome (Linux)"));
        assert!(plausible_display("Firefox (Mac OS)"));
        for bad in ["Chrome", "(Linux)", "Chrome ()", "Chrome (Linux", ""] {
            assert!(!plausible_display(bad), "{bad}");
        }
        assert!(!plausible_display(&format!("{} (Linux)", "x".repeat(200))));
    }
}
