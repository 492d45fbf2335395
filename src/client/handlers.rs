//! What the client does with what the server says: credentials and payloads, login
//! success, pairing (QR and phone-number code), pre-key uploads, built-in
//! notifications, logout.

use std::sync::atomic::Ordering;
use std::time::Duration;

use prost::Message;
use tokio::task::spawn_blocking;

use super::connection::{SessionContext, SessionEnd, SessionTasks};
use super::error::{ClientError, IqError};
use super::events::{DisconnectReason, Event};
use super::pair_code::{self, CompanionHello, format_pair_code};
use super::pairing::{
    PairClientType, pair_device_sign_reply, pair_error_reply, parse_pair_device,
    parse_pair_success, process_device_identity, qr_string,
};
use super::prekeys::{
    INITIAL_PREKEY_UPLOAD, MIN_SERVER_PREKEYS, PREKEY_BATCH, count_iq, parse_count, server_iq,
    upload_iq,
};
use super::stanza::{is_server_jid, parse_success};
use super::{Client, ConnectionState, PendingPairCode, lock};
use crate::binary::Node;
use crate::jid::Jid;
use crate::noise::client_payload::{Login, Registration, login_payload, registration_payload};
use crate::signal::address::ProtocolAddress;
use crate::signal::identity::{
    PreKeyRecord, SignedPreKeyRecord, generate_prekeys, prekey_id_after,
};
use crate::signal::store::SignalStoreExt;
use crate::store::{DeviceCredentials, LidPnMapping, StoreBatch, now_ms};

impl Client {
    /// The stored credentials; a store without any gets fresh ones (Noise and identity
    /// keys, registration id, ADV secret, signed prekey), stored in one transaction.
    pub(crate) async fn ensure_credentials(&self) -> Result<DeviceCredentials, ClientError> {
        let mut guard = self.inner.creds.lock().await;
        if guard.is_none() {
            *guard = self.inner.store.load_credentials().await?;
        }
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let mut rng = rand::rngs::OsRng;
        let creds = DeviceCredentials::generate(&mut rng);
        let signed = SignedPreKeyRecord::generate(
            &creds.identity.key_pair,
            creds.signed_prekey_id,
            u64::try_from(now_ms()).unwrap_or(0),
            &mut rng,
        );
        self.inner
            .store
            .commit_batch(StoreBatch {
                credentials: Some(creds.clone()),
                signed_prekeys: vec![(signed.id, signed.serialize())],
                ..StoreBatch::default()
            })
            .await?;
        tracing::info!("generated new device credentials");
        *guard = Some(creds.clone());
        Ok(creds)
    }

    /// Changes the credentials and stores them together with whatever else `change`
    /// puts in the batch, in one transaction; memory is updated only after the store
    /// succeeded.
    pub(crate) async fn update_credentials(
        &self,
        change: impl FnOnce(&mut DeviceCredentials) -> StoreBatch,
    ) -> Result<DeviceCredentials, ClientError> {
        let mut guard = self.inner.creds.lock().await;
        if guard.is_none() {
            *guard = self.inner.store.load_credentials().await?;
        }
        let mut creds = guard.clone().ok_or(ClientError::NotPaired)?;
        let mut batch = change(&mut creds);
        batch.credentials = Some(creds.clone());
        self.inner.store.commit_batch(batch).await?;
        *guard = Some(creds.clone());
        Ok(creds)
    }

    /// The signed prekey named by the credentials (created and stored if missing).
    async fn signed_prekey(
        &self,
        creds: &DeviceCredentials,
    ) -> Result<SignedPreKeyRecord, ClientError> {
        if let Some(spk) = self
            .inner
            .store
            .load_signed_prekey_record(creds.signed_prekey_id)
            .await?
        {
            return Ok(spk);
        }
        tracing::warn!(
            id = creds.signed_prekey_id,
            "signed prekey missing; making a new one"
        );
        let spk = SignedPreKeyRecord::generate(
            &creds.identity.key_pair,
            creds.signed_prekey_id,
            u64::try_from(now_ms()).unwrap_or(0),
            &mut rand::rngs::OsRng,
        );
        self.inner
            .store
            .commit_batch(StoreBatch {
                signed_prekeys: vec![(spk.id, spk.serialize())],
                ..StoreBatch::default()
            })
            .await?;
        Ok(spk)
    }

    /// The serialized ClientPayload: login when paired, registration otherwise.
    pub(crate) async fn client_payload(
        &self,
        creds: &DeviceCredentials,
    ) -> Result<Vec<u8>, ClientError> {
        let config = &self.inner.config;
        let payload = match &creds.pn {
            Some(pn) => {
                let mut login = Login::new(pn.user.clone(), pn.device);
                login.push_name = config
                    .push_name
                    .clone()
                    .or_else(|| Some(creds.push_name.clone()).filter(|n| !n.is_empty()));
                login.version = config.version;
                if creds.login_counter > 0 {
                    login.login_counter =
                        Some(i32::try_from(creds.login_counter).unwrap_or(i32::MAX));
                }
                login_payload(&login)
            }
            None => {
                let spk = self.signed_prekey(creds).await?;
                let mut r = Registration::new(
                    creds.identity.registration_id,
                    creds.identity.key_pair.public,
                    spk.id,
                    spk.key_pair.public,
                    spk.signature,
                );
                r.device_os = config.device_os.clone();
                r.platform_type = config.platform_type;
                r.version = config.version;
                registration_payload(&r)
            }
        }
        .map_err(super::error::ConnectError::from)?;
        Ok(payload.encode_to_vec())
    }

    /// Logout: wipes the store and forgets the credentials in memory.
    pub(crate) async fn log_out_locally(&self) {
        let mut guard = self.inner.creds.lock().await;
        if let Err(e) = self.inner.store.clear_all().await {
            tracing::error!(error = %e, "could not clear the store after logout");
        }
        *guard = None;
        *lock(&self.inner.pair_code) = None;
    }

    /// `<success>`: logged in. Stores the LID and clock offset, counts the login,
    /// reports `Connected`, then (on a task) tops up prekeys and goes active.
    pub(crate) async fn on_success(&self, node: &Node, ctx: &SessionContext) {
        let success = parse_success(node);
        let offset = success
            .server_time
            .map(|t| t.saturating_mul(1000).saturating_sub(now_ms()));
        let result = self
            .update_credentials(|c| {
                let mut batch = StoreBatch::default();
                if let Some(o) = offset {
                    c.server_time_offset_ms = o;
                }
                c.login_counter = c.login_counter.saturating_add(1);
                if let Some(lid) = &success.lid
                    && c.lid.as_ref() != Some(lid)
                {
                    if let Some(old) = &c.lid {
                        tracing::warn!(%old, new = %lid, "server reports another LID; storing it");
                    }
                    c.lid = Some(lid.clone());
                    if let Some(pn) = &c.pn
                        && let Ok(m) = LidPnMapping::new(lid, pn)
                    {
                        batch.mappings.push(m);
                    }
                }
                batch
            })
            .await;
        match result {
            Ok(c) if c.is_paired() => {}
            Ok(_) => {
                tracing::warn!("login success without pairing; ignoring it");
                return;
            }
            Err(e) => tracing::warn!(error = %e, "could not store the login state"),
        }
        ctx.logged_in.store(true, Ordering::Relaxed);
        self.set_state(ConnectionState::LoggedIn);
        self.emit(Event::Connected);
        let client = self.clone();
        tokio::spawn(async move { client.after_login().await });
    }

    /// Prekeys (count, upload when low), then `<active/>` so the server starts
    /// delivering offline messages.
    async fn after_login(&self) {
        match self.refill_prekeys_if_low().await {
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "prekey check after login failed"),
        }
        let active = server_iq("passive", "set", vec![Node::new("active")]);
        if let Err(e) = self.send_iq(active).await {
            tracing::warn!(error = %e, "could not switch to active");
        }
        // Messages committed before a crash or a dropped connection but never acked go
        // out again, unchanged (same id, same ciphertext).
        match self.resend_pending_messages().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(n, "resent messages the server had not acked"),
            Err(e) => tracing::warn!(error = %e, "could not resend pending messages"),
        }
    }

    /// Asks the server how many prekeys it holds and uploads a batch when fewer than
    /// [`MIN_SERVER_PREKEYS`] are left (812 the very first time). Returns how many
    /// were uploaded.
    pub async fn refill_prekeys_if_low(&self) -> Result<usize, ClientError> {
        let response = self.send_iq(count_iq()).await?;
        let server_count = parse_count(&response).map_err(|e| {
            ClientError::Iq(IqError::Server {
                id: response.attr_str("id").unwrap_or_default().to_owned(),
                code: 0,
                text: e.to_string(),
            })
        })?;
        tracing::debug!(server_count, "server prekey count");
        if server_count >= MIN_SERVER_PREKEYS {
            return Ok(0);
        }
        let creds = self.credentials().await?.ok_or(ClientError::NotPaired)?;
        let first_ever = server_count == 0 && creds.next_prekey_id <= 1;
        self.upload_prekeys(if first_ever {
            INITIAL_PREKEY_UPLOAD
        } else {
            PREKEY_BATCH
        })
        .await
    }

    /// Uploads at least `wanted` (at most 812) one-time prekeys with the identity and
    /// signed prekey. Keys stored earlier but never confirmed by the server (an upload cut
    /// short by a crash) are sent again first; new keys are generated and stored,
    /// together with the advanced id counter, BEFORE the upload IQ leaves, and marked
    /// uploaded after the server's result. Returns how many keys were uploaded.
    pub async fn upload_prekeys(&self, wanted: usize) -> Result<usize, ClientError> {
        let wanted = wanted.min(INITIAL_PREKEY_UPLOAD);
        let _one_at_a_time = self.inner.prekey_upload.lock().await;
        let store = &self.inner.store;
        let mut keys: Vec<PreKeyRecord> = Vec::new();
        for (id, bytes) in store.unuploaded_prekeys(INITIAL_PREKEY_UPLOAD).await? {
            match PreKeyRecord::deserialize(&bytes) {
                Ok(k) => keys.push(k),
                Err(e) => tracing::warn!(id, error = %e, "unreadable stored prekey skipped"),
            }
        }
        let missing = wanted.saturating_sub(keys.len());
        let creds = if missing > 0 {
            let n = u32::try_from(missing).unwrap_or(u32::MAX);
            let mut fresh = Vec::new();
            let creds = self
                .update_credentials(|c| {
                    fresh = generate_prekeys(c.next_prekey_id, n, &mut rand::rngs::OsRng);
                    c.next_prekey_id = prekey_id_after(c.next_prekey_id, n);
                    StoreBatch {
                        prekeys: fresh.iter().map(|k| (k.id, k.serialize())).collect(),
                        ..StoreBatch::default()
                    }
                })
                .await?;
            keys.extend(fresh);
            creds
        } else {
            self.credentials().await?.ok_or(ClientError::NotPaired)?
        };
        let signed = self.signed_prekey(&creds).await?;
        let iq = upload_iq(
            creds.identity.registration_id,
            &creds.identity.key_pair.public,
            &keys,
            &signed,
        )
        .map_err(|e| ClientError::Encode {
            tag: "iq".into(),
            detail: e.to_string(),
        })?;
        self.send_iq(iq).await?;
        let ids: Vec<u32> = keys.iter().map(|k| k.id).collect();
        store.mark_prekeys_uploaded(&ids).await?;
        tracing::info!(count = ids.len(), "uploaded prekeys");
        self.emit(Event::PreKeysUploaded { count: ids.len() });
        Ok(ids.len())
    }

    /// `<pair-device>`: acks it and shows one QR per ref on WhatsApp's schedule; when
    /// the refs run out the session ends with a pairing timeout.
    pub(crate) async fn on_pair_device(&self, node: &Node, tasks: &mut SessionTasks) {
        let _ = self.send_node(&super::stanza::iq_result(node)).await;
        let refs = match parse_pair_device(node) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "unusable pair-device");
                return;
            }
        };
        self.set_state(ConnectionState::AwaitingPairing);
        if let Some(old) = tasks.qr.take() {
            old.abort();
        }
        let client = self.clone();
        let link = self.session_link();
        tasks.qr = Some(tokio::spawn(async move {
            let timing = client.inner.config.qr_timing;
            let client_type = PairClientType::for_platform(client.inner.config.platform_type);
            for (i, r) in refs.iter().enumerate() {
                let Ok(Some(creds)) = client.credentials().await else {
                    return;
                };
                let timeout = if i == 0 { timing.first } else { timing.rest };
                client.emit(Event::PairingQr {
                    code: qr_string(
                        r,
                        &creds.noise_key.public,
                        &creds.identity.key_pair.public,
                        creds.adv_secret.as_bytes(),
                        client_type,
                        client.inner.config.qr_link_prefix,
                    ),
                    timeout,
                });
                tokio::time::sleep(timeout).await;
            }
            if let Some(link) = link {
                let _ = link.end.send(SessionEnd::PairingTimeout);
            }
        }));
    }

    /// `<pair-success>` (PROTOCOL.md §6.3): verify, sign, store, reply. A refusal is
    /// answered with the matching error and ends the attempt.
    pub(crate) async fn on_pair_success(&self, node: &Node) -> Option<SessionEnd> {
        let fail = |client: &Client, message: String| {
            tracing::error!(%message, "pairing failed");
            client.emit(Event::PairError {
                message: message.clone(),
            });
            Some(SessionEnd::Fatal(DisconnectReason::Protocol(format!(
                "pairing failed: {message}"
            ))))
        };
        let info = match parse_pair_success(node) {
            Ok(i) => i,
            Err(e) => {
                if let Some(id) = node.attr_str("id") {
                    let _ = self
                        .send_node(&pair_error_reply(id, 500, "internal-error"))
                        .await;
                }
                return fail(self, e.to_string());
            }
        };
        let creds = match self.credentials().await {
            Ok(Some(c)) => c,
            Ok(None) => return fail(self, "no credentials to pair with".into()),
            Err(e) => return fail(self, e.to_string()),
        };
        if let Some(pn) = &creds.pn {
            let _ = self
                .send_node(&pair_error_reply(&info.iq_id, 500, "internal-error"))
                .await;
            return fail(self, format!("already paired as {pn}"));
        }
        let signed = match process_device_identity(
            &info.device_identity,
            creds.adv_secret.as_bytes(),
            &creds.identity.key_pair,
            &mut rand::rngs::OsRng,
        ) {
            Ok(s) => s,
            Err(e) => {
                let (code, text) = e.reply();
                let _ = self
                    .send_node(&pair_error_reply(&info.iq_id, code, text))
                    .await;
                return fail(self, e.to_string());
            }
        };
        let offset = info
            .server_time
            .map(|t| t.saturating_mul(1000).saturating_sub(now_ms()));
        let stored = self
            .update_credentials(|c| {
                c.pn = Some(info.jid.clone());
                c.lid = info.lid.clone();
                c.account = Some(signed.account.clone());
                c.platform = info.platform.clone();
                c.business_name = info.business_name.clone();
                if let Some(o) = offset {
                    c.server_time_offset_ms = o;
                }
                let mut batch = StoreBatch::default();
                if let Some(lid) = &info.lid {
                    if let Ok(m) = LidPnMapping::new(lid, &info.jid) {
                        batch.mappings.push(m);
                    }
                    // The primary phone's identity is the account signature key
                    // (whatsmeow stores it the same way).
                    batch.signal.put_identity(
                        ProtocolAddress::from_jid(&lid.with_device(0)),
                        signed.account_signature_key,
                    );
                }
                batch
            })
            .await;
        if let Err(e) = stored {
            let _ = self
                .send_node(&pair_error_reply(&info.iq_id, 500, "internal-error"))
                .await;
            return fail(self, format!("could not store the pairing: {e}"));
        }
        *lock(&self.inner.pair_code) = None;
        if let Err(e) = self
            .send_node(&pair_device_sign_reply(&info.iq_id, &signed))
            .await
        {
            tracing::warn!(error = %e, "could not send pair-device-sign");
        }
        tracing::info!(jid = %info.jid, "paired");
        self.emit(Event::PairSuccess {
            jid: info.jid,
            lid: info.lid,
            platform: info.platform,
            business_name: info.business_name,
        });
        None
    }

    /// Pairs by phone number instead of QR (PROTOCOL.md §6.4): waits (up to the IQ
    /// timeout) for the registration connection, sends `companion_hello` and returns
    /// the code to type on the phone as `XXXX-XXXX` (also reported as
    /// [`Event::PairingCode`]). The rest happens when the phone answers. Refuses an
    /// already paired device and numbers that are not international digits.
    pub async fn pair_phone(&self, phone: &str) -> Result<String, ClientError> {
        let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
        let invalid = |detail| ClientError::InvalidPhoneNumber {
            number: phone.chars().take(32).collect(),
            detail,
        };
        if digits.len() <= 6 {
            return Err(invalid("too short: give the full number with country code"));
        }
        if digits.len() > 20 {
            return Err(invalid("too long"));
        }
        if digits.starts_with('0') {
            return Err(invalid(
                "starts with 0: give it in international form with the country code",
            ));
        }
        if let Some(c) = self.credentials().await?
            && let Some(pn) = c.pn
        {
            return Err(ClientError::AlreadyPaired(pn.to_string()));
        }
        self.wait_for_state(
            ConnectionState::AwaitingPairing,
            self.inner.config.iq_timeout,
        )
        .await?;
        let hello = spawn_blocking(|| CompanionHello::generate(&mut rand::rngs::OsRng))
            .await
            .map_err(|e| ClientError::Pairing(format!("key derivation task failed: {e}")))?;
        let creds = self.credentials().await?.ok_or(ClientError::NotPaired)?;
        let phone_jid = Jid::pn_user(digits);
        let iq = pair_code::companion_hello_iq(
            &phone_jid,
            &hello,
            &creds.noise_key.public,
            PairClientType::for_platform(self.inner.config.platform_type),
            &self.inner.config.pairing_display,
            true,
        );
        let response = self.send_iq(iq).await?;
        let pairing_ref = pair_code::parse_companion_hello_response(&response)
            .map_err(|e| ClientError::Pairing(e.to_string()))?;
        let code = format_pair_code(&hello.code);
        *lock(&self.inner.pair_code) = Some(PendingPairCode {
            phone: phone_jid,
            hello,
            pairing_ref,
        });
        self.emit(Event::PairingCode { code: code.clone() });
        Ok(code)
    }

    /// The phone accepted the code: finish the key exchange (`companion_finish`) and
    /// take the derived ADV secret (kept in memory; stored with the pairing).
    async fn on_link_code_notification(&self, node: &Node) -> Result<(), ClientError> {
        let hello = pair_code::parse_primary_hello(node)
            .map_err(|e| ClientError::Pairing(e.to_string()))?;
        let (code, ephemeral, phone) = {
            let pending = lock(&self.inner.pair_code);
            let p = pending.as_ref().ok_or_else(|| {
                ClientError::Pairing("link-code notification without a pending pairing code".into())
            })?;
            if p.pairing_ref != hello.pairing_ref {
                return Err(ClientError::Pairing(
                    "link-code notification for another pairing ref".into(),
                ));
            }
            (
                p.hello.code.clone(),
                p.hello.ephemeral.clone(),
                p.phone.clone(),
            )
        };
        let creds = self.credentials().await?.ok_or(ClientError::NotPaired)?;
        let identity = creds.identity.key_pair.clone();
        let finish = spawn_blocking(move || {
            pair_code::companion_finish(
                &code,
                &ephemeral,
                &identity,
                &hello.wrapped_primary_ephemeral,
                &hello.primary_identity,
                &mut rand::rngs::OsRng,
            )
        })
        .await
        .map_err(|e| ClientError::Pairing(format!("key derivation task failed: {e}")))?
        .map_err(|e| ClientError::Pairing(e.to_string()))?;
        {
            // The pair-success HMAC is keyed with the new secret. It is stored with the
            // pairing itself; an attempt cut short simply starts over.
            let mut guard = self.inner.creds.lock().await;
            if let Some(c) = guard.as_mut() {
                c.adv_secret = crate::store::SecretBytes::from_array(*finish.adv_secret);
            }
        }
        let iq = pair_code::companion_finish_iq(
            &phone,
            &finish,
            &creds.identity.key_pair.public,
            &hello.pairing_ref,
        );
        self.send_iq(iq).await?;
        Ok(())
    }

    /// One stanza from the queue: built-in notifications first, the rest to the
    /// embedder's handler.
    pub(crate) async fn handle_stanza(&self, node: Node) {
        if node.tag == "notification" {
            match node.attr_str("type") {
                Some("encrypt") => {
                    let _ = self.send_ack(&node, None).await;
                    self.on_encrypt_notification(&node).await;
                    return;
                }
                Some("link_code_companion_reg") => {
                    let _ = self.send_ack(&node, None).await;
                    if let Err(e) = self.on_link_code_notification(&node).await {
                        tracing::error!(error = %e, "pairing code step failed");
                        self.emit(Event::PairError {
                            message: e.to_string(),
                        });
                    }
                    return;
                }
                _ => {}
            }
        }
        let handler = self
            .inner
            .handler
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        handler.handle(self, node).await;
    }

    /// `encrypt` notifications: the server running low on our prekeys (upload a batch),
    /// or a contact's identity change (forget their identities and sessions).
    async fn on_encrypt_notification(&self, node: &Node) {
        if let Ok(count) = parse_count(node) {
            // The server sends this when it runs low; like WhatsApp Web, take it as the
            // request it is whatever count it reports (whatsmeow uploads only below 5).
            if is_server_jid(node.get_attr("from")) {
                tracing::info!(count, "server asks for prekeys");
                if let Err(e) = self.upload_prekeys(PREKEY_BATCH).await {
                    tracing::warn!(error = %e, "prekey replenishment failed");
                }
            }
            return;
        }
        if node.child_by_tag("identity").is_some()
            && let Some(from) = node.attr_jid("from")
            && !from.is_server()
        {
            let name = ProtocolAddress::from_jid(&from.to_non_ad()).name;
            let store = &self.inner.store;
            if let Err(e) = store.delete_identities_of(&name).await {
                tracing::warn!(error = %e, "could not forget a changed identity");
            }
            if let Err(e) = store.delete_sessions_of(&name).await {
                tracing::warn!(error = %e, "could not drop sessions of a changed identity");
            }
        }
    }
}

/// How long [`Client::pair_phone`] callers should expect a code to stay valid
/// (WhatsApp's clients treat codes as valid for about three minutes).
pub const PAIR_CODE_VALIDITY: Duration = Duration::from_secs(180);
