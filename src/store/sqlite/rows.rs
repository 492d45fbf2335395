//! Reading and writing rows. Every read extracts raw column values first and converts
//! them afterwards, so a malformed row becomes an [`Error::Corrupt`] naming the row
//! kind, never a panic.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Params, params};
use zeroize::Zeroizing;

use super::sql;
use crate::jid::Jid;
use crate::signal::address::ProtocolAddress;
use crate::signal::curve::{KeyPair, PrivateKey, PublicKey};
use crate::signal::identity::LocalIdentity;
use crate::signal::store::{IdentityChange, SignalStateBatch};
use crate::store::batch::{CommitOutcome, StoreBatch};
use crate::store::credentials::{DeviceCredentials, SecretBytes};
use crate::store::error::{Error, Result};
use crate::store::records::{
    AddressingMode, DecryptedMessage, DeviceEntry, DeviceList, EventRecord, GroupMetadata,
    GroupParticipant, IdempotencyClaim, IdempotencyState, MessageSecretRecord, ParticipantRole,
    PruneBefore, PruneCounts, RsvpRecord, RsvpStatus, SenderKeyMemoryUpdate, SentMessage,
    SentState, StoredResponse, StoredSentMessage, WebhookJob, mapping_side, swap_namespace,
};

// ---- conversions ----

pub(super) fn to_u32(what: &'static str, v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::corrupt(what, format!("{v} is not a u32")))
}

fn to_u16(what: &'static str, v: i64) -> Result<u16> {
    u16::try_from(v).map_err(|_| Error::corrupt(what, format!("{v} is not a u16")))
}

fn to_bool(what: &'static str, v: i64) -> Result<bool> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Error::corrupt(what, format!("{v} is not a boolean"))),
    }
}

fn jid(what: &'static str, text: &str) -> Result<Jid> {
    Jid::parse(text).map_err(|e| Error::corrupt(what, e.to_string()))
}

fn opt_jid(what: &'static str, text: Option<String>) -> Result<Option<Jid>> {
    text.map(|t| jid(what, &t)).transpose()
}

fn public_key(what: &'static str, bytes: &[u8]) -> Result<PublicKey> {
    PublicKey::from_raw(bytes).map_err(|e| Error::corrupt(what, e.to_string()))
}

fn key_pair(what: &'static str, public: &[u8], private: &[u8]) -> Result<KeyPair> {
    let private =
        PrivateKey::from_bytes(private).map_err(|e| Error::corrupt(what, e.to_string()))?;
    let pair = KeyPair::from_private(private);
    if pair.public != public_key(what, public)? {
        return Err(Error::corrupt(
            what,
            "the public key does not match the private key",
        ));
    }
    Ok(pair)
}

fn u64_to_i64(what: &'static str, v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid(what, format!("{v} does not fit SQLite's i64")))
}

// ---- credentials ----

pub(super) fn load_local_identity(conn: &Connection) -> Result<Option<LocalIdentity>> {
    let row = conn
        .prepare_cached(
            "SELECT identity_public, identity_private, registration_id FROM device
             WHERE singleton = 1",
        )
        .and_then(|mut s| {
            s.query_row([], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    Zeroizing::new(r.get::<_, Vec<u8>>(1)?),
                    r.get::<_, i64>(2)?,
                ))
            })
            .optional()
        })
        .map_err(sql("load the local identity"))?;
    let Some((public, private, registration_id)) = row else {
        return Ok(None);
    };
    Ok(Some(LocalIdentity {
        key_pair: key_pair("identity key pair", &public, &private)?,
        registration_id: to_u32("registration id", registration_id)?,
    }))
}

struct CredentialsRow {
    noise_public: Vec<u8>,
    noise_private: Zeroizing<Vec<u8>>,
    identity_public: Vec<u8>,
    identity_private: Zeroizing<Vec<u8>>,
    registration_id: i64,
    signed_prekey_id: i64,
    adv_secret: Zeroizing<Vec<u8>>,
    pn: Option<String>,
    lid: Option<String>,
    account: Option<Vec<u8>>,
    platform: String,
    push_name: String,
    business_name: String,
    routing_info: Option<Vec<u8>>,
    login_counter: i64,
    next_prekey_id: i64,
    server_time_offset_ms: i64,
}

pub(super) fn load_credentials(conn: &Connection) -> Result<Option<DeviceCredentials>> {
    let row = conn
        .prepare_cached(
            "SELECT noise_public, noise_private, identity_public, identity_private,
                    registration_id, signed_prekey_id, adv_secret, pn_jid, lid_jid, account,
                    platform, push_name, business_name, routing_info, login_counter,
                    next_prekey_id, server_time_offset_ms
             FROM device WHERE singleton = 1",
        )
        .and_then(|mut s| {
            s.query_row([], |r| {
                Ok(CredentialsRow {
                    noise_public: r.get(0)?,
                    noise_private: Zeroizing::new(r.get(1)?),
                    identity_public: r.get(2)?,
                    identity_private: Zeroizing::new(r.get(3)?),
                    registration_id: r.get(4)?,
                    signed_prekey_id: r.get(5)?,
                    adv_secret: Zeroizing::new(r.get(6)?),
                    pn: r.get(7)?,
                    lid: r.get(8)?,
                    account: r.get(9)?,
                    platform: r.get(10)?,
                    push_name: r.get(11)?,
                    business_name: r.get(12)?,
                    routing_info: r.get(13)?,
                    login_counter: r.get(14)?,
                    next_prekey_id: r.get(15)?,
                    server_time_offset_ms: r.get(16)?,
                })
            })
            .optional()
        })
        .map_err(sql("load device credentials"))?;
    let Some(row) = row else { return Ok(None) };
    let what = "device credentials";
    Ok(Some(DeviceCredentials {
        noise_key: key_pair("noise key pair", &row.noise_public, &row.noise_private)?,
        identity: LocalIdentity {
            key_pair: key_pair(
                "identity key pair",
                &row.identity_public,
                &row.identity_private,
            )?,
            registration_id: to_u32("registration id", row.registration_id)?,
        },
        signed_prekey_id: to_u32("signed prekey id", row.signed_prekey_id)?,
        adv_secret: SecretBytes::from_slice(&row.adv_secret)
            .map_err(|_| Error::corrupt(what, "ADV secret is not 32 bytes"))?,
        pn: opt_jid("own PN JID", row.pn)?,
        lid: opt_jid("own LID", row.lid)?,
        account: row.account,
        platform: row.platform,
        push_name: row.push_name,
        business_name: row.business_name,
        routing_info: row.routing_info,
        login_counter: u64::try_from(row.login_counter)
            .map_err(|_| Error::corrupt(what, "negative login counter"))?,
        next_prekey_id: to_u32("next prekey id", row.next_prekey_id)?,
        server_time_offset_ms: row.server_time_offset_ms,
    }))
}

fn save_credentials(conn: &Connection, c: &DeviceCredentials) -> Result<()> {
    let context = "save device credentials";
    let noise_private = Zeroizing::new(c.noise_key.private.to_bytes());
    let identity_private = Zeroizing::new(c.identity.key_pair.private.to_bytes());
    let login_counter = u64_to_i64("login counter", c.login_counter)?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO device (
            singleton, noise_public, noise_private, identity_public, identity_private,
            registration_id, signed_prekey_id, adv_secret, pn_jid, lid_jid, account,
            platform, push_name, business_name, routing_info, login_counter,
            next_prekey_id, server_time_offset_ms)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )
    .and_then(|mut s| {
        s.execute(params![
            c.noise_key.public.as_bytes().as_slice(),
            noise_private.as_slice(),
            c.identity.key_pair.public.as_bytes().as_slice(),
            identity_private.as_slice(),
            c.identity.registration_id,
            c.signed_prekey_id,
            c.adv_secret.as_bytes().as_slice(),
            c.pn.as_ref().map(Jid::to_string),
            c.lid.as_ref().map(Jid::to_string),
            c.account,
            c.platform,
            c.push_name,
            c.business_name,
            c.routing_info,
            login_counter,
            c.next_prekey_id,
            c.server_time_offset_ms,
        ])
    })
    .map_err(sql(context))?;
    Ok(())
}

// ---- signal ----

pub(super) fn load_identity(conn: &Connection, a: &ProtocolAddress) -> Result<Option<PublicKey>> {
    let key: Option<Vec<u8>> = conn
        .prepare_cached("SELECT public_key FROM identity WHERE name = ?1 AND device = ?2")
        .and_then(|mut s| {
            s.query_row(params![a.name, a.device_id], |r| r.get(0))
                .optional()
        })
        .map_err(sql("load identities"))?;
    key.map(|k| public_key("identity key", &k)).transpose()
}

pub(super) fn save_identity(
    conn: &Connection,
    a: &ProtocolAddress,
    key: &PublicKey,
) -> Result<IdentityChange> {
    let old = load_identity(conn, a)?;
    conn.prepare_cached(
        "INSERT INTO identity (name, device, public_key) VALUES (?1, ?2, ?3)
         ON CONFLICT (name, device) DO UPDATE SET public_key = excluded.public_key",
    )
    .and_then(|mut s| s.execute(params![a.name, a.device_id, key.as_bytes().as_slice()]))
    .map_err(sql("save an identity"))?;
    Ok(IdentityChange::between(old.as_ref(), key))
}

/// Sessions of `addresses` in input order. A group send asks for every device of
/// ~1,000 users, so the devices of one name are read with one query.
pub(super) fn load_sessions(
    conn: &Connection,
    addresses: &[ProtocolAddress],
) -> Result<Vec<Option<Vec<u8>>>> {
    let context = "load sessions";
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, a) in addresses.iter().enumerate() {
        by_name.entry(a.name.as_str()).or_default().push(i);
    }
    let mut out: Vec<Option<Vec<u8>>> = vec![None; addresses.len()];
    let mut one = conn
        .prepare_cached("SELECT record FROM session WHERE name = ?1 AND device = ?2")
        .map_err(sql(context))?;
    let mut all = conn
        .prepare_cached("SELECT device, record FROM session WHERE name = ?1")
        .map_err(sql(context))?;
    for (name, wanted) in by_name {
        if let [i] = wanted[..] {
            let device = addresses.get(i).map_or(0, |a| a.device_id);
            let record = one
                .query_row(params![name, device], |r| r.get(0))
                .optional()
                .map_err(sql(context))?;
            if let Some(slot) = out.get_mut(i) {
                *slot = record;
            }
            continue;
        }
        let mut rows = all.query([name]).map_err(sql(context))?;
        while let Some(row) = rows.next().map_err(sql(context))? {
            let device: i64 = row.get(0).map_err(sql(context))?;
            for &i in &wanted {
                if addresses
                    .get(i)
                    .is_some_and(|a| i64::from(a.device_id) == device)
                {
                    let record: Vec<u8> = row.get(1).map_err(sql(context))?;
                    if let Some(slot) = out.get_mut(i) {
                        *slot = Some(record);
                    }
                }
            }
        }
    }
    Ok(out)
}

pub(super) fn remove_prekeys(conn: &Connection, ids: &[u32]) -> Result<()> {
    let mut stmt = conn
        .prepare_cached("DELETE FROM prekey WHERE id = ?1")
        .map_err(sql("remove prekeys"))?;
    for id in ids {
        stmt.execute([id]).map_err(sql("remove prekeys"))?;
    }
    Ok(())
}

fn apply_signal(conn: &Connection, batch: SignalStateBatch) -> Result<Vec<IdentityChange>> {
    let context = "write Signal state";
    {
        let mut put = conn
            .prepare_cached(
                "INSERT INTO session (name, device, record) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name, device) DO UPDATE SET record = excluded.record",
            )
            .map_err(sql(context))?;
        for (a, record) in &batch.sessions {
            put.execute(params![a.name, a.device_id, record.as_slice()])
                .map_err(sql(context))?;
        }
        let mut delete = conn
            .prepare_cached("DELETE FROM session WHERE name = ?1 AND device = ?2")
            .map_err(sql(context))?;
        for a in &batch.removed_sessions {
            delete
                .execute(params![a.name, a.device_id])
                .map_err(sql(context))?;
        }
    }
    {
        let mut put = conn
            .prepare_cached(
                "INSERT INTO sender_key (group_jid, sender_name, sender_device, record)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (group_jid, sender_name, sender_device)
                 DO UPDATE SET record = excluded.record",
            )
            .map_err(sql(context))?;
        for (n, record) in &batch.sender_keys {
            put.execute(params![
                n.group,
                n.sender.name,
                n.sender.device_id,
                record.as_slice()
            ])
            .map_err(sql(context))?;
        }
        let mut delete = conn
            .prepare_cached(
                "DELETE FROM sender_key
                 WHERE group_jid = ?1 AND sender_name = ?2 AND sender_device = ?3",
            )
            .map_err(sql(context))?;
        for n in &batch.removed_sender_keys {
            delete
                .execute(params![n.group, n.sender.name, n.sender.device_id])
                .map_err(sql(context))?;
        }
    }
    let mut changes = Vec::with_capacity(batch.identities.len());
    for (a, key) in &batch.identities {
        changes.push(save_identity(conn, a, key)?);
    }
    remove_prekeys(conn, &batch.removed_prekeys)?;
    Ok(changes)
}

// ---- the batch ----

pub(super) fn apply_batch(conn: &Connection, batch: StoreBatch) -> Result<CommitOutcome> {
    let context = "commit a batch";
    if let Some(c) = &batch.credentials {
        save_credentials(conn, c)?;
    }
    if !batch.prekeys.is_empty() {
        let mut stmt = conn
            .prepare_cached(
                "INSERT INTO prekey (id, record, uploaded) VALUES (?1, ?2, 0)
                 ON CONFLICT (id) DO UPDATE SET record = excluded.record, uploaded = 0",
            )
            .map_err(sql(context))?;
        for (id, record) in &batch.prekeys {
            stmt.execute(params![id, record]).map_err(sql(context))?;
        }
    }
    if !batch.uploaded_prekeys.is_empty() {
        let mut stmt = conn
            .prepare_cached("UPDATE prekey SET uploaded = 1 WHERE id = ?1")
            .map_err(sql(context))?;
        for id in &batch.uploaded_prekeys {
            stmt.execute([id]).map_err(sql(context))?;
        }
    }
    if !batch.signed_prekeys.is_empty() {
        let mut stmt = conn
            .prepare_cached(
                "INSERT INTO signed_prekey (id, record) VALUES (?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET record = excluded.record",
            )
            .map_err(sql(context))?;
        for (id, record) in &batch.signed_prekeys {
            stmt.execute(params![id, record]).map_err(sql(context))?;
        }
    }
    let identity_changes = apply_signal(conn, batch.signal)?;
    if !batch.mappings.is_empty() {
        let mut delete = conn
            .prepare_cached("DELETE FROM lid_mapping WHERE lid_user = ?1 OR pn_user = ?2")
            .map_err(sql(context))?;
        let mut insert = conn
            .prepare_cached("INSERT INTO lid_mapping (lid_user, pn_user) VALUES (?1, ?2)")
            .map_err(sql(context))?;
        for m in &batch.mappings {
            delete
                .execute([m.lid_user(), m.pn_user()])
                .map_err(sql(context))?;
            insert
                .execute([m.lid_user(), m.pn_user()])
                .map_err(sql(context))?;
        }
    }
    for list in &batch.device_lists {
        save_device_list(conn, list)?;
    }
    if !batch.removed_device_lists.is_empty() {
        let mut stmt = conn
            .prepare_cached("DELETE FROM device_list WHERE user_jid = ?1")
            .map_err(sql(context))?;
        for user in &batch.removed_device_lists {
            stmt.execute([user.to_string()]).map_err(sql(context))?;
        }
    }
    for group in &batch.groups {
        save_group(conn, group)?;
    }
    if !batch.removed_groups.is_empty() {
        let mut stmt = conn
            .prepare_cached("DELETE FROM group_metadata WHERE group_jid = ?1")
            .map_err(sql(context))?;
        for group in &batch.removed_groups {
            stmt.execute([group.to_string()]).map_err(sql(context))?;
        }
    }
    for update in &batch.sender_key_memory {
        apply_sender_key_memory(conn, update)?;
    }
    if !batch.secrets.is_empty() {
        let mut stmt = conn
            .prepare_cached(
                "INSERT INTO message_secret (chat_jid, sender_jid, message_id, secret, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (chat_jid, sender_jid, message_id)
                 DO UPDATE SET secret = excluded.secret, created_at_ms = excluded.created_at_ms",
            )
            .map_err(sql(context))?;
        for s in &batch.secrets {
            stmt.execute(params![
                s.chat.to_string(),
                s.sender.to_string(),
                s.message_id,
                s.secret.as_bytes().as_slice(),
                s.created_at_ms
            ])
            .map_err(sql(context))?;
        }
    }
    if !batch.events.is_empty() {
        let mut stmt = conn
            .prepare_cached(
                "INSERT INTO event_card (chat_jid, message_id, creator_jid, from_me, card, timestamp_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (chat_jid, message_id) DO UPDATE SET
                    creator_jid = excluded.creator_jid, from_me = excluded.from_me,
                    card = excluded.card, timestamp_ms = excluded.timestamp_ms",
            )
            .map_err(sql(context))?;
        for e in &batch.events {
            stmt.execute(params![
                e.chat.to_string(),
                e.message_id,
                e.creator.to_string(),
                e.from_me,
                e.card,
                e.timestamp_ms
            ])
            .map_err(sql(context))?;
        }
    }
    let mut rsvps_applied = Vec::with_capacity(batch.rsvps.len());
    if !batch.rsvps.is_empty() {
        // The WHERE of the upsert skips an answer older than the stored one; `execute`
        // then reports 0 changed rows.
        let mut stmt = conn
            .prepare_cached(
                "INSERT INTO rsvp (chat_jid, event_id, voter_jid, response, extra_guests, timestamp_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (chat_jid, event_id, voter_jid) DO UPDATE SET
                    response = excluded.response, extra_guests = excluded.extra_guests,
                    timestamp_ms = excluded.timestamp_ms
                 WHERE excluded.timestamp_ms >= rsvp.timestamp_ms",
            )
            .map_err(sql(context))?;
        for r in &batch.rsvps {
            let changed = stmt
                .execute(params![
                    r.chat.to_string(),
                    r.event_id,
                    r.voter.to_string(),
                    r.response.code(),
                    r.extra_guests,
                    r.timestamp_ms
                ])
                .map_err(sql(context))?;
            rsvps_applied.push(changed > 0);
        }
    }
    if !batch.sent_messages.is_empty() {
        // An upsert, not INSERT OR REPLACE: replacing would delete the row and cascade
        // away its retry counts.
        let mut stmt = conn
            .prepare_cached(
                "INSERT INTO sent_message
                    (chat_jid, message_id, message, stanza, state, refused_code, source,
                     created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (chat_jid, message_id) DO UPDATE SET
                    message = excluded.message, stanza = excluded.stanza,
                    state = excluded.state, refused_code = excluded.refused_code,
                    source = excluded.source, created_at_ms = excluded.created_at_ms",
            )
            .map_err(sql(context))?;
        for m in &batch.sent_messages {
            let (state, refused_code) = m.state.code();
            stmt.execute(params![
                m.chat.to_string(),
                m.message_id,
                m.message,
                m.stanza,
                state,
                refused_code,
                m.source,
                m.created_at_ms
            ])
            .map_err(sql(context))?;
        }
    }
    if !batch.sent_states.is_empty() {
        let mut stmt = conn
            .prepare_cached(
                "UPDATE sent_message SET state = ?3, refused_code = ?4
                 WHERE chat_jid = ?1 AND message_id = ?2",
            )
            .map_err(sql(context))?;
        for s in &batch.sent_states {
            let (state, refused_code) = s.state.code();
            stmt.execute(params![
                s.chat.to_string(),
                s.message_id,
                state,
                refused_code
            ])
            .map_err(sql(context))?;
        }
    }
    if !batch.decrypted.is_empty() {
        let mut stmt = conn
            .prepare_cached(
                "INSERT INTO decrypted_message (ciphertext_hash, plaintext, received_at_ms)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (ciphertext_hash) DO UPDATE SET
                    plaintext = excluded.plaintext, received_at_ms = excluded.received_at_ms",
            )
            .map_err(sql(context))?;
        for d in &batch.decrypted {
            stmt.execute(params![
                d.ciphertext_hash.as_slice(),
                d.plaintext,
                d.received_at_ms
            ])
            .map_err(sql(context))?;
        }
    }
    if !batch.webhooks.is_empty() {
        let mut stmt = conn
            .prepare_cached(
                "INSERT OR REPLACE INTO webhook_outbox
                    (id, instance, payload, attempts, next_attempt_at_ms, created_at_ms, last_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(sql(context))?;
        for w in &batch.webhooks {
            stmt.execute(params![
                w.id,
                w.instance,
                w.payload,
                w.attempts,
                w.next_attempt_at_ms,
                w.created_at_ms,
                w.last_error
            ])
            .map_err(sql(context))?;
        }
    }
    Ok(CommitOutcome {
        identity_changes,
        rsvps_applied,
    })
}

// ---- LID↔PN ----

pub(super) fn map_namespace(
    conn: &Connection,
    jids: &[Jid],
    want_lid_input: bool,
) -> Result<Vec<Option<Jid>>> {
    let query = if want_lid_input {
        "SELECT pn_user FROM lid_mapping WHERE lid_user = ?1"
    } else {
        "SELECT lid_user FROM lid_mapping WHERE pn_user = ?1"
    };
    let mut stmt = conn
        .prepare_cached(query)
        .map_err(sql("look up LID↔PN mappings"))?;
    jids.iter()
        .map(|jid| {
            let Some((is_lid, other_server)) = mapping_side(jid) else {
                return Ok(None);
            };
            if is_lid != want_lid_input {
                return Ok(None);
            }
            let other: Option<String> = stmt
                .query_row([&jid.user], |r| r.get(0))
                .optional()
                .map_err(sql("look up LID↔PN mappings"))?;
            Ok(other.map(|user| swap_namespace(jid, &user, other_server)))
        })
        .collect()
}

// ---- device lists ----

fn save_device_list(conn: &Connection, list: &DeviceList) -> Result<()> {
    let context = "cache a device list";
    let user = list.user.to_string();
    conn.prepare_cached("DELETE FROM device_list WHERE user_jid = ?1")
        .and_then(|mut s| s.execute([&user]))
        .map_err(sql(context))?;
    conn.prepare_cached(
        "INSERT INTO device_list (user_jid, hash, key_index_ts, fetched_at_ms)
         VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| {
        s.execute(params![
            user,
            list.hash,
            list.key_index_ts,
            list.fetched_at_ms
        ])
    })
    .map_err(sql(context))?;
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO device_list_entry (user_jid, device, key_index, hosted)
             VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(sql(context))?;
    for d in &list.devices {
        stmt.execute(params![user, d.id, d.key_index, d.hosted])
            .map_err(sql(context))?;
    }
    Ok(())
}

pub(super) fn load_device_list(conn: &Connection, user: &Jid) -> Result<Option<DeviceList>> {
    let context = "load device lists";
    let key = user.to_string();
    let head: Option<(Option<String>, Option<i64>, i64)> = conn
        .prepare_cached(
            "SELECT hash, key_index_ts, fetched_at_ms FROM device_list WHERE user_jid = ?1",
        )
        .and_then(|mut s| {
            s.query_row([&key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .map_err(sql(context))?;
    let Some((hash, key_index_ts, fetched_at_ms)) = head else {
        return Ok(None);
    };
    let raw: Vec<(i64, Option<i64>, i64)> = conn
        .prepare_cached(
            "SELECT device, key_index, hosted FROM device_list_entry
             WHERE user_jid = ?1 ORDER BY device",
        )
        .and_then(|mut s| {
            s.query_map([&key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect()
        })
        .map_err(sql(context))?;
    let devices = raw
        .into_iter()
        .map(|(id, key_index, hosted)| {
            Ok(DeviceEntry {
                id: to_u16("device id", id)?,
                key_index: key_index.map(|k| to_u32("key index", k)).transpose()?,
                hosted: to_bool("hosted flag", hosted)?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Some(DeviceList {
        user: user.clone(),
        devices,
        hash,
        key_index_ts,
        fetched_at_ms,
    }))
}

// ---- groups ----

fn save_group(conn: &Connection, g: &GroupMetadata) -> Result<()> {
    let context = "cache group metadata";
    let group = g.group.to_string();
    conn.prepare_cached("DELETE FROM group_metadata WHERE group_jid = ?1")
        .and_then(|mut s| s.execute([&group]))
        .map_err(sql(context))?;
    conn.prepare_cached(
        "INSERT INTO group_metadata (group_jid, addressing_mode, phash, subject, fetched_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            group,
            g.addressing_mode.as_str(),
            g.phash,
            g.subject,
            g.fetched_at_ms
        ])
    })
    .map_err(sql(context))?;
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO group_participant (group_jid, position, jid, phone_number, lid, role)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(sql(context))?;
    for (position, p) in g.participants.iter().enumerate() {
        stmt.execute(params![
            group,
            i64::try_from(position).unwrap_or(i64::MAX),
            p.jid.to_string(),
            p.phone_number.as_ref().map(Jid::to_string),
            p.lid.as_ref().map(Jid::to_string),
            p.role.code()
        ])
        .map_err(sql(context))?;
    }
    Ok(())
}

type ParticipantRow = (String, Option<String>, Option<String>, i64);

pub(super) fn load_group(conn: &Connection, group: &Jid) -> Result<Option<GroupMetadata>> {
    let context = "load group metadata";
    let key = group.to_string();
    let head: Option<(String, Option<String>, Option<String>, i64)> = conn
        .prepare_cached(
            "SELECT addressing_mode, phash, subject, fetched_at_ms FROM group_metadata
             WHERE group_jid = ?1",
        )
        .and_then(|mut s| {
            s.query_row([&key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()
        })
        .map_err(sql(context))?;
    let Some((mode, phash, subject, fetched_at_ms)) = head else {
        return Ok(None);
    };
    let addressing_mode = AddressingMode::parse(&mode).ok_or_else(|| {
        Error::corrupt(
            "group metadata",
            format!(
                "addressing mode {:?}",
                mode.chars().take(16).collect::<String>()
            ),
        )
    })?;
    let raw: Vec<ParticipantRow> = conn
        .prepare_cached(
            "SELECT jid, phone_number, lid, role FROM group_participant
             WHERE group_jid = ?1 ORDER BY position",
        )
        .and_then(|mut s| {
            s.query_map([&key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect()
        })
        .map_err(sql(context))?;
    let participants = raw
        .into_iter()
        .map(|(j, pn, lid, role)| {
            Ok(GroupParticipant {
                jid: jid("group participant", &j)?,
                phone_number: opt_jid("group participant", pn)?,
                lid: opt_jid("group participant", lid)?,
                role: ParticipantRole::from_code(role)
                    .ok_or_else(|| Error::corrupt("group participant", format!("role {role}")))?,
            })
        })
        .collect::<Result<_>>()?;
    Ok(Some(GroupMetadata {
        group: group.clone(),
        addressing_mode,
        participants,
        phash,
        subject,
        fetched_at_ms,
    }))
}

// ---- sender-key memory ----

fn apply_sender_key_memory(conn: &Connection, update: &SenderKeyMemoryUpdate) -> Result<()> {
    let context = "update the sender-key memory";
    match update {
        SenderKeyMemoryUpdate::MarkHas { group, devices } => {
            let group = group.to_string();
            let mut stmt = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO sender_key_memory (group_jid, device_jid)
                     VALUES (?1, ?2)",
                )
                .map_err(sql(context))?;
            for d in devices {
                stmt.execute([&group, &d.to_string()])
                    .map_err(sql(context))?;
            }
        }
        SenderKeyMemoryUpdate::Forget { group, devices } => {
            let group = group.to_string();
            let mut stmt = conn
                .prepare_cached(
                    "DELETE FROM sender_key_memory WHERE group_jid = ?1 AND device_jid = ?2",
                )
                .map_err(sql(context))?;
            for d in devices {
                stmt.execute([&group, &d.to_string()])
                    .map_err(sql(context))?;
            }
        }
        SenderKeyMemoryUpdate::ClearGroup { group } => {
            conn.prepare_cached("DELETE FROM sender_key_memory WHERE group_jid = ?1")
                .and_then(|mut s| s.execute([group.to_string()]))
                .map_err(sql(context))?;
        }
    }
    Ok(())
}

pub(super) fn sender_key_holders(conn: &Connection, group: &str) -> Result<Vec<Jid>> {
    let raw: Vec<String> = conn
        .prepare_cached("SELECT device_jid FROM sender_key_memory WHERE group_jid = ?1")
        .and_then(|mut s| s.query_map([group], |r| r.get(0))?.collect())
        .map_err(sql("load the sender-key memory"))?;
    let mut devices = raw
        .iter()
        .map(|d| jid("sender-key memory device", d))
        .collect::<Result<Vec<_>>>()?;
    devices.sort();
    Ok(devices)
}

// ---- secrets, events, RSVPs ----

pub(super) fn load_message_secret(
    conn: &Connection,
    chat: &Jid,
    sender: &Jid,
    id: &str,
) -> Result<Option<MessageSecretRecord>> {
    let row: Option<(Zeroizing<Vec<u8>>, i64)> = conn
        .prepare_cached(
            "SELECT secret, created_at_ms FROM message_secret
             WHERE chat_jid = ?1 AND sender_jid = ?2 AND message_id = ?3",
        )
        .and_then(|mut s| {
            s.query_row(params![chat.to_string(), sender.to_string(), id], |r| {
                Ok((Zeroizing::new(r.get(0)?), r.get(1)?))
            })
            .optional()
        })
        .map_err(sql("load a message secret"))?;
    let Some((secret, created_at_ms)) = row else {
        return Ok(None);
    };
    Ok(Some(MessageSecretRecord {
        chat: chat.clone(),
        sender: sender.clone(),
        message_id: id.to_string(),
        secret: SecretBytes::from_slice(&secret)
            .map_err(|_| Error::corrupt("message secret", "not 32 bytes"))?,
        created_at_ms,
    }))
}

type EventRow = (String, String, String, i64, Vec<u8>, i64);

pub(super) fn load_events<P: Params>(
    conn: &Connection,
    query: &str,
    p: P,
) -> Result<Vec<EventRecord>> {
    let raw: Vec<EventRow> = conn
        .prepare_cached(query)
        .and_then(|mut s| {
            s.query_map(p, |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?
            .collect()
        })
        .map_err(sql("load event cards"))?;
    raw.into_iter()
        .map(|(chat, message_id, creator, from_me, card, timestamp_ms)| {
            Ok(EventRecord {
                chat: jid("event chat", &chat)?,
                message_id,
                creator: jid("event creator", &creator)?,
                from_me: to_bool("event from_me", from_me)?,
                card,
                timestamp_ms,
            })
        })
        .collect()
}

pub(super) fn load_rsvps(conn: &Connection, chat: &Jid, event_id: &str) -> Result<Vec<RsvpRecord>> {
    let raw: Vec<(String, i64, i64, i64)> = conn
        .prepare_cached(
            "SELECT voter_jid, response, extra_guests, timestamp_ms FROM rsvp
             WHERE chat_jid = ?1 AND event_id = ?2",
        )
        .and_then(|mut s| {
            s.query_map(params![chat.to_string(), event_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect()
        })
        .map_err(sql("load RSVPs"))?;
    let mut rsvps = raw
        .into_iter()
        .map(|(voter, response, extra_guests, timestamp_ms)| {
            let response = i32::try_from(response)
                .ok()
                .and_then(RsvpStatus::from_code)
                .ok_or_else(|| Error::corrupt("RSVP", format!("response {response}")))?;
            Ok(RsvpRecord {
                chat: chat.clone(),
                event_id: event_id.to_string(),
                voter: jid("RSVP voter", &voter)?,
                response,
                extra_guests: to_u32("RSVP extra guests", extra_guests)?,
                timestamp_ms,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    rsvps.sort_by(|a, b| a.voter.cmp(&b.voter));
    Ok(rsvps)
}

// ---- sent messages ----

type SentRow = (
    String,
    String,
    Vec<u8>,
    Vec<u8>,
    i64,
    Option<i64>,
    Option<String>,
    i64,
);

pub(super) fn load_sent<P: Params>(
    conn: &Connection,
    query: &str,
    p: P,
) -> Result<Vec<StoredSentMessage>> {
    let context = "load sent messages";
    let raw: Vec<SentRow> = conn
        .prepare_cached(query)
        .and_then(|mut s| {
            s.query_map(p, |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })?
            .collect()
        })
        .map_err(sql(context))?;
    let mut retries = conn
        .prepare_cached(
            "SELECT device_jid, count FROM sent_message_retry
             WHERE chat_jid = ?1 AND message_id = ?2",
        )
        .map_err(sql(context))?;
    raw.into_iter()
        .map(
            |(chat, message_id, message, stanza, state, refused_code, source, created_at_ms)| {
                let counts: Vec<(String, i64)> = retries
                    .query_map(params![chat, message_id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .and_then(Iterator::collect)
                    .map_err(sql(context))?;
                let mut retry_counts = counts
                    .into_iter()
                    .map(|(d, c)| Ok((jid("retry device", &d)?, to_u32("retry count", c)?)))
                    .collect::<Result<Vec<_>>>()?;
                retry_counts.sort();
                Ok(StoredSentMessage {
                    sent: SentMessage {
                        chat: jid("sent message chat", &chat)?,
                        message_id,
                        message,
                        stanza,
                        state: SentState::from_code(state, refused_code).ok_or_else(|| {
                            Error::corrupt(
                                "sent message",
                                format!("state {state}, refused code {refused_code:?}"),
                            )
                        })?,
                        source,
                        created_at_ms,
                    },
                    retry_counts,
                })
            },
        )
        .collect()
}

pub(super) fn bump_sent_retry(
    conn: &Connection,
    chat: &str,
    id: &str,
    device: &str,
) -> Result<Option<u32>> {
    let context = "count a retry receipt";
    let exists: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM sent_message WHERE chat_jid = ?1 AND message_id = ?2")
        .and_then(|mut s| s.query_row([chat, id], |r| r.get(0)).optional())
        .map_err(sql(context))?;
    if exists.is_none() {
        return Ok(None);
    }
    let count: i64 = conn
        .prepare_cached(
            "INSERT INTO sent_message_retry (chat_jid, message_id, device_jid, count)
             VALUES (?1, ?2, ?3, 1)
             ON CONFLICT (chat_jid, message_id, device_jid)
             DO UPDATE SET count = min(count + 1, 4294967295)
             RETURNING count",
        )
        .and_then(|mut s| s.query_row([chat, id, device], |r| r.get(0)))
        .map_err(sql(context))?;
    Ok(Some(to_u32("retry count", count)?))
}

pub(super) fn load_decrypted(
    conn: &Connection,
    hash: &[u8; 32],
) -> Result<Option<DecryptedMessage>> {
    let row: Option<(Vec<u8>, i64)> = conn
        .prepare_cached(
            "SELECT plaintext, received_at_ms FROM decrypted_message WHERE ciphertext_hash = ?1",
        )
        .and_then(|mut s| {
            s.query_row([hash.as_slice()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(sql("load a decrypted message"))?;
    Ok(row.map(|(plaintext, received_at_ms)| DecryptedMessage {
        ciphertext_hash: *hash,
        plaintext,
        received_at_ms,
    }))
}

// ---- gateway ----

type WebhookRow = (String, String, Vec<u8>, i64, i64, i64, Option<String>);

pub(super) fn due_webhooks(conn: &Connection, now_ms: i64, limit: i64) -> Result<Vec<WebhookJob>> {
    let raw: Vec<WebhookRow> = conn
        .prepare_cached(
            "SELECT id, instance, payload, attempts, next_attempt_at_ms, created_at_ms, last_error
             FROM webhook_outbox WHERE next_attempt_at_ms <= ?1
             ORDER BY next_attempt_at_ms, id LIMIT ?2",
        )
        .and_then(|mut s| {
            s.query_map(params![now_ms, limit], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })?
            .collect()
        })
        .map_err(sql("list due webhooks"))?;
    raw.into_iter()
        .map(
            |(id, instance, payload, attempts, next_attempt_at_ms, created_at_ms, last_error)| {
                Ok(WebhookJob {
                    id,
                    instance,
                    payload,
                    attempts: to_u32("webhook attempts", attempts)?,
                    next_attempt_at_ms,
                    created_at_ms,
                    last_error,
                })
            },
        )
        .collect()
}

/// fingerprint, since_ms, status (None while in progress), body
type IdempotencyRow = (String, i64, Option<i64>, Option<Vec<u8>>);

pub(super) fn claim_idempotency_key(
    conn: &Connection,
    claim: &IdempotencyClaim,
) -> Result<IdempotencyState> {
    let context = "claim an idempotency key";
    let row: Option<IdempotencyRow> = conn
        .prepare_cached(
            "SELECT fingerprint, since_ms, status, body FROM idempotency_key
             WHERE instance = ?1 AND key = ?2",
        )
        .and_then(|mut s| {
            s.query_row([&claim.instance, &claim.key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
        })
        .map_err(sql(context))?;
    let Some((fingerprint, since_ms, status, body)) = row else {
        conn.prepare_cached(
            "INSERT INTO idempotency_key (instance, key, fingerprint, since_ms)
             VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut s| {
            s.execute(params![
                claim.instance,
                claim.key,
                claim.fingerprint,
                claim.now_ms
            ])
        })
        .map_err(sql(context))?;
        return Ok(IdempotencyState::Claimed);
    };
    if fingerprint != claim.fingerprint {
        return Ok(IdempotencyState::Mismatch);
    }
    match status {
        None => Ok(IdempotencyState::InProgress { since_ms }),
        Some(status) => Ok(IdempotencyState::Completed(StoredResponse {
            status: u16::try_from(status)
                .map_err(|_| Error::corrupt("idempotency key", format!("status {status}")))?,
            body: body.unwrap_or_default(),
        })),
    }
}

pub(super) fn prune(conn: &Connection, before: PruneBefore) -> Result<PruneCounts> {
    let context = "prune old rows";
    let run = |query: &str, cutoff: Option<i64>| -> Result<u64> {
        let Some(cutoff) = cutoff else { return Ok(0) };
        let n = conn
            .prepare_cached(query)
            .and_then(|mut s| s.execute([cutoff]))
            .map_err(sql(context))?;
        Ok(n as u64)
    };
    Ok(PruneCounts {
        message_secrets: run(
            "DELETE FROM message_secret WHERE created_at_ms < ?1",
            before.message_secrets,
        )?,
        sent_messages: run(
            "DELETE FROM sent_message WHERE created_at_ms < ?1",
            before.sent_messages,
        )?,
        decrypted: run(
            "DELETE FROM decrypted_message WHERE received_at_ms < ?1",
            before.decrypted,
        )?,
        idempotency_keys: run(
            "DELETE FROM idempotency_key WHERE since_ms < ?1",
            before.idempotency_keys,
        )?,
    })
}
