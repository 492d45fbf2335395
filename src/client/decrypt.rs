//! Decrypting one received message (PROTOCOL.md §11), without sockets or tokio: the
//! store is only read here; everything the message changes comes back in one
//! [`StoreBatch`] for the caller to commit before it acks.
//!
//! For each `<enc>` part, pairwise first:
//! 1. a part seen before (same chat, sender, message id and ciphertext:
//!    [`buffer_key`]) takes its plaintext from the store's `decrypted` buffer — a
//!    redelivery after a crash never fails on a ratchet that already moved on;
//! 2. otherwise `pkmsg`/`msg` decrypt with the sender device's session (its LID address
//!    when the LID is known; a session still under the phone-number address is moved
//!    over), `skmsg` with the sender key of (chat, sender device);
//! 3. unpad (`v="2"`), parse the `Message`, unwrap a `deviceSentMessage` from our own
//!    devices, process an embedded sender-key distribution message whose group is the
//!    chat, keep `messageContextInfo.messageSecret`.
//!
//! The first part that fails stops the message (the sender re-sends it after our retry
//! receipt); the parts before it are kept. A duplicate (a message key already used) is
//! skipped without asking for a retry.

use std::collections::HashMap;

use prost::Message as _;
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use crate::jid::Jid;
use crate::proto::e2e;
use crate::signal::store::{SignalStoreExt, StoreError};
use crate::signal::{
    LocalIdentity, PreKeySignalMessage, PreKeys, ProtocolAddress, SenderKeyDistributionMessage,
    SenderKeyName, SenderKeyRecord, SessionRecord, SignalError, decrypt_prekey, decrypt_whisper,
    group, padding,
};
use crate::store::{
    DecryptedMessage, LidPnMapping, MessageSecretRecord, SecretBytes, Store, StoreBatch,
};

use super::envelope::{EncPart, EncType, Envelope, RetryReason};
use super::receive::IncomingMessage;

/// Why one part of a message could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartError {
    /// Signal refused the ciphertext.
    #[error("{enc_type} from {sender} does not decrypt: {source}")]
    Signal {
        /// The part's kind.
        enc_type: EncType,
        /// The sending device.
        sender: Jid,
        /// Why.
        source: SignalError,
    },
    /// A stored session or sender-key record could not be read.
    #[error("{enc_type} from {sender}: stored state is unreadable: {detail}")]
    Record {
        /// The part's kind.
        enc_type: EncType,
        /// The sending device.
        sender: Jid,
        /// Why.
        detail: String,
    },
    /// The plaintext's WhatsApp padding is wrong.
    #[error("{enc_type} from {sender} decrypted to badly padded plaintext: {detail}")]
    Padding {
        /// The part's kind.
        enc_type: EncType,
        /// The sending device.
        sender: Jid,
        /// Why.
        detail: String,
    },
    /// The plaintext is not a `Message` protobuf.
    #[error("{enc_type} from {sender} decrypted to an invalid Message protobuf: {detail}")]
    InvalidProtobuf {
        /// The part's kind.
        enc_type: EncType,
        /// The sending device.
        sender: Jid,
        /// The decoder's message.
        detail: String,
    },
}

impl PartError {
    /// The `error` reason of the retry receipt; `None` when asking for a retry is
    /// pointless (the sender's plaintext itself is bad).
    pub fn retry_reason(&self) -> Option<RetryReason> {
        match self {
            PartError::Signal { source, .. } => Some(RetryReason::of(source)),
            PartError::Record { .. } => Some(RetryReason::InvalidSession),
            PartError::Padding { .. } => Some(RetryReason::InvalidMessage),
            PartError::InvalidProtobuf { .. } => None,
        }
    }

    /// True when we lack the session, the sender key or the prekey the message needs:
    /// the retry receipt then carries our keys at once.
    pub fn needs_keys(&self) -> bool {
        matches!(
            self.retry_reason(),
            Some(RetryReason::NoSession | RetryReason::InvalidKeyId | RetryReason::InvalidSession)
        )
    }
}

/// What decrypting one message produced.
#[derive(Debug, Default)]
pub struct Decryption {
    /// Everything to commit before acking: Signal state, plaintexts, message secrets,
    /// LID↔PN mappings.
    pub batch: StoreBatch,
    /// The messages with content (a part carrying only a sender key is not one).
    pub messages: Vec<IncomingMessage>,
    /// The first part that failed, if any (later parts were not tried).
    pub failure: Option<PartError>,
    /// Parts whose message key was already used and whose plaintext is no longer
    /// buffered: duplicates, skipped.
    pub duplicates: usize,
    /// Parts whose plaintext came from the `decrypted` buffer (a redelivery).
    pub redelivered: usize,
    /// Sender-key distribution messages that were ignored (wrong group, malformed).
    pub ignored_skdms: usize,
}

/// True when `jid` is stored exactly as it is (its text form parses back to it); the
/// store refuses anything else, and one refused entry would sink the whole batch.
fn storable(jid: &Jid) -> bool {
    Jid::parse(&jid.to_string()).is_ok_and(|back| back == *jid)
}

/// Where the sender's sessions and sender keys live: under its LID device when we
/// know it (`primary`), possibly still under its phone-number device from before
/// (`fallback`, read when the primary record is empty and then moved over).
async fn addresses_of<S: Store + ?Sized>(
    store: &S,
    sender: &Jid,
    alt: Option<&Jid>,
) -> Result<(Jid, Option<Jid>), StoreFailure> {
    if sender.is_pn() {
        let lid = match alt.filter(|a| a.is_lid()) {
            Some(alt) => Some(alt.with_device(sender.device)),
            None => store.lid_for_pn(sender).await?,
        };
        return Ok(match lid {
            Some(lid) => (lid, Some(sender.clone())),
            None => (sender.clone(), None),
        });
    }
    if sender.is_lid() {
        let pn = match alt.filter(|a| a.is_pn()) {
            Some(alt) => Some(alt.with_device(sender.device)),
            None => store.pn_for_lid(sender).await?,
        };
        return Ok((sender.clone(), pn));
    }
    Ok((sender.clone(), None))
}

/// The key of a part's plaintext in the store's `decrypted` buffer: SHA-256 over the
/// chat, the sender device, the message id and the ciphertext. A redelivery (the same
/// stanza again) finds it; the same ciphertext under another message never does.
pub fn buffer_key(envelope: &Envelope, ciphertext: &[u8]) -> [u8; 32] {
    let info = &envelope.info;
    let mut h = Sha256::new();
    for field in [
        info.chat.to_string().as_bytes(),
        info.sender.to_string().as_bytes(),
        info.id.as_bytes(),
    ] {
        h.update(u64::try_from(field.len()).unwrap_or(u64::MAX).to_be_bytes());
        h.update(field);
    }
    h.update(ciphertext);
    h.finalize().into()
}

/// Records changed while decrypting one message (later parts see earlier changes).
#[derive(Default)]
struct Working {
    sessions: HashMap<ProtocolAddress, SessionRecord>,
    sender_keys: HashMap<SenderKeyName, SenderKeyRecord>,
}

/// The store could not be read: nothing about the message was decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store failed while decrypting a message: {0}")]
pub struct StoreFailure(pub String);

impl From<crate::store::Error> for StoreFailure {
    fn from(e: crate::store::Error) -> Self {
        StoreFailure(e.to_string())
    }
}

/// A record that cannot be read is the message's problem (a retry builds a new one);
/// a backend failure is ours.
fn unreadable(e: StoreError) -> Result<String, StoreFailure> {
    match e {
        StoreError::Backend(detail) => Err(StoreFailure(detail)),
        StoreError::Record(r) => Ok(r.to_string()),
    }
}

/// Decrypts every part of `envelope` (see the module docs). `local` is our identity;
/// `now_ms` stamps buffered plaintexts and secrets.
///
/// Returns `Err` only when the store cannot be read (nothing was decided: do not ack,
/// the server delivers the message again). Every problem with the message itself is in
/// [`Decryption::failure`].
pub async fn decrypt_envelope<S, R>(
    store: &S,
    local: &LocalIdentity,
    envelope: &Envelope,
    rng: &mut R,
    now_ms: i64,
) -> Result<Decryption, StoreFailure>
where
    S: Store + ?Sized,
    R: RngCore + CryptoRng + Send,
{
    let info = &envelope.info;
    let sender = &info.sender;
    let (primary, fallback) = addresses_of(store, sender, info.sender_alt.as_ref()).await?;
    let mut out = Decryption::default();
    let mut work = Working::default();
    if let Some(alt) = &info.sender_alt {
        let mapping = if sender.is_lid() {
            LidPnMapping::new(sender, alt)
        } else {
            LidPnMapping::new(alt, sender)
        };
        if let Ok(m) = mapping {
            out.batch.mappings.push(m);
        }
    }
    for part in &envelope.parts {
        let hash = buffer_key(envelope, &part.ciphertext);
        let (plaintext, fresh) = match store.load_decrypted(&hash).await? {
            Some(buffered) => {
                out.redelivered += 1;
                (buffered.plaintext, false)
            }
            None => {
                let padded = match decrypt_part(
                    store,
                    local,
                    envelope,
                    part,
                    (&primary, fallback.as_ref()),
                    &mut work,
                    &mut out,
                    rng,
                )
                .await?
                {
                    Ok(p) => p,
                    Err(PartError::Signal {
                        source: SignalError::DuplicateMessage { .. },
                        ..
                    }) => {
                        out.duplicates += 1;
                        continue;
                    }
                    Err(e) => {
                        out.failure = Some(e);
                        break;
                    }
                };
                let plaintext = if part.version == 3 {
                    padded
                } else {
                    match padding::unpad(&padded) {
                        Ok(p) => p.to_vec(),
                        Err(e) => {
                            out.failure = Some(PartError::Padding {
                                enc_type: part.enc_type,
                                sender: sender.clone(),
                                detail: e.to_string(),
                            });
                            break;
                        }
                    }
                };
                (plaintext, true)
            }
        };
        let message = match e2e::Message::decode(plaintext.as_slice()) {
            Ok(m) => m,
            Err(e) => {
                out.failure = Some(PartError::InvalidProtobuf {
                    enc_type: part.enc_type,
                    sender: sender.clone(),
                    detail: e.to_string(),
                });
                break;
            }
        };
        if fresh {
            out.batch.decrypted.push(DecryptedMessage {
                ciphertext_hash: hash,
                plaintext,
                received_at_ms: now_ms,
            });
        }
        let message = if info.from_me {
            unwrap_device_sent(message)
        } else {
            message
        };
        if fresh {
            if let Some(skdm) = &message.sender_key_distribution_message {
                process_skdm(store, envelope, skdm, &primary, &mut work, &mut out).await?;
            }
            keep_secret(envelope, &message, now_ms, &mut out);
        }
        if has_content(&message) {
            out.messages.push(IncomingMessage {
                info: info.clone(),
                message,
            });
        }
    }
    for (address, record) in &work.sessions {
        out.batch.signal.put_session(address.clone(), record);
    }
    for (name, record) in &work.sender_keys {
        out.batch.signal.put_sender_key(name.clone(), record);
    }
    Ok(out)
}

/// Decrypts one part with Signal; the outer `Result` is a store failure.
#[allow(clippy::too_many_arguments)]
async fn decrypt_part<S, R>(
    store: &S,
    local: &LocalIdentity,
    envelope: &Envelope,
    part: &EncPart,
    (primary, fallback): (&Jid, Option<&Jid>),
    work: &mut Working,
    out: &mut Decryption,
    rng: &mut R,
) -> Result<Result<Vec<u8>, PartError>, StoreFailure>
where
    S: Store + ?Sized,
    R: RngCore + CryptoRng + Send,
{
    let sender = &envelope.info.sender;
    let signal_err = |source| PartError::Signal {
        enc_type: part.enc_type,
        sender: sender.clone(),
        source,
    };
    let record_err = |e: StoreError| -> Result<PartError, StoreFailure> {
        Ok(PartError::Record {
            enc_type: part.enc_type,
            sender: sender.clone(),
            detail: unreadable(e)?,
        })
    };
    if part.enc_type == EncType::SenderKey {
        if !envelope.is_group {
            return Ok(Err(signal_err(SignalError::Malformed {
                message: "SenderKeyMessage",
                detail: "skmsg outside a group chat",
            })));
        }
        let (name, mut record) =
            match sender_key_record(store, &envelope.info.chat, primary, fallback, work).await {
                Ok(found) => found,
                Err(e) => return Ok(Err(record_err(e)?)),
            };
        let plaintext = match group::decrypt(&mut record, &part.ciphertext) {
            Ok(p) => p,
            Err(e) => return Ok(Err(signal_err(e))),
        };
        work.sender_keys.insert(name, record);
        return Ok(Ok(plaintext));
    }
    let address = ProtocolAddress::from_jid(primary);
    let mut record = match work.sessions.get(&address) {
        Some(r) => r.clone(),
        None => match store.load_session_record(&address).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(record_err(e)?)),
        },
    };
    // A session made under the phone-number address (before we knew the LID, or in a
    // PN-addressed chat): use it and move it to the LID address.
    if !record.has_current_session()
        && part.enc_type == EncType::Whisper
        && let Some(fallback) = fallback
    {
        let pn_address = ProtocolAddress::from_jid(fallback);
        match store.load_session_record(&pn_address).await {
            Ok(r) if r.has_current_session() => {
                record = r;
                out.batch.signal.removed_sessions.push(pn_address);
            }
            Ok(_) => {}
            Err(e) => return Ok(Err(record_err(e)?)),
        }
    }
    let plaintext = match part.enc_type {
        EncType::PreKey => {
            let message = match PreKeySignalMessage::deserialize(&part.ciphertext) {
                Ok(m) => m,
                Err(e) => return Ok(Err(signal_err(e))),
            };
            let (mut signed, mut one_time) = (None, None);
            if let Some(ids) = record.prekeys_needed(&message) {
                match store.load_signed_prekey_record(ids.signed_prekey_id).await {
                    Ok(k) => signed = k,
                    Err(e) => return Ok(Err(record_err(e)?)),
                }
                if let Some(id) = ids.prekey_id {
                    match store.load_prekey_record(id).await {
                        Ok(k) => one_time = k,
                        Err(e) => return Ok(Err(record_err(e)?)),
                    }
                }
            }
            let prekeys = PreKeys {
                signed: signed.as_ref(),
                one_time: one_time.as_ref(),
            };
            let done = match decrypt_prekey(&mut record, local, &message, prekeys, rng) {
                Ok(d) => d,
                Err(e) => return Ok(Err(signal_err(e))),
            };
            if let Some(id) = done.consumed_prekey_id {
                out.batch.signal.remove_prekey(id);
            }
            out.batch
                .signal
                .put_identity(address.clone(), done.remote_identity);
            done.plaintext.clone()
        }
        _ => match decrypt_whisper(&mut record, &part.ciphertext, rng) {
            Ok(p) => p,
            Err(e) => return Ok(Err(signal_err(e))),
        },
    };
    work.sessions.insert(address, record);
    Ok(Ok(plaintext))
}

/// The sender-key record of (chat, sender): under the primary (LID) name, or else
/// under the phone-number name an SKDM was stored with before.
async fn sender_key_record<S: Store + ?Sized>(
    store: &S,
    chat: &Jid,
    primary: &Jid,
    fallback: Option<&Jid>,
    work: &Working,
) -> Result<(SenderKeyName, SenderKeyRecord), StoreError> {
    let name = SenderKeyName::new(chat, primary);
    if let Some(r) = work.sender_keys.get(&name) {
        return Ok((name, r.clone()));
    }
    let record = store.load_sender_key_record(&name).await?;
    if record.is_empty()
        && let Some(fallback) = fallback
    {
        let pn_name = SenderKeyName::new(chat, fallback);
        if let Some(r) = work.sender_keys.get(&pn_name) {
            return Ok((pn_name, r.clone()));
        }
        let pn_record = store.load_sender_key_record(&pn_name).await?;
        if !pn_record.is_empty() {
            return Ok((pn_name, pn_record));
        }
    }
    Ok((name, record))
}

/// Adds the sender key of an embedded SKDM (its group must be the chat).
async fn process_skdm<S: Store + ?Sized>(
    store: &S,
    envelope: &Envelope,
    skdm: &e2e::SenderKeyDistributionMessage,
    primary: &Jid,
    work: &mut Working,
    out: &mut Decryption,
) -> Result<(), StoreFailure> {
    let chat = &envelope.info.chat;
    let group_id = skdm.group_id.as_deref().unwrap_or_default();
    if !envelope.is_group || group_id != chat.to_string() {
        tracing::warn!(%chat, sender = %envelope.info.sender, group_id = %group_id.chars().take(64).collect::<String>(),
            "ignoring a sender key distribution message for another chat");
        out.ignored_skdms += 1;
        return Ok(());
    }
    let bytes = skdm
        .axolotl_sender_key_distribution_message
        .as_deref()
        .unwrap_or_default();
    let message = match SenderKeyDistributionMessage::deserialize(bytes) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(%chat, sender = %envelope.info.sender, error = %e, "ignoring a malformed sender key distribution message");
            out.ignored_skdms += 1;
            return Ok(());
        }
    };
    let name = SenderKeyName::new(chat, primary);
    let mut record = match work.sender_keys.get(&name) {
        Some(r) => r.clone(),
        None => match store.load_sender_key_record(&name).await {
            Ok(r) => r,
            Err(StoreError::Backend(d)) => return Err(StoreFailure(d)),
            // An unreadable record is replaced by the new key.
            Err(StoreError::Record(_)) => SenderKeyRecord::new(),
        },
    };
    group::process_distribution_message(&mut record, &message);
    work.sender_keys.insert(name, record);
    Ok(())
}

/// Keeps `messageContextInfo.messageSecret` under (chat, sender user, id).
fn keep_secret(envelope: &Envelope, message: &e2e::Message, now_ms: i64, out: &mut Decryption) {
    let Some(secret) = message
        .message_context_info
        .as_ref()
        .and_then(|c| c.message_secret.as_deref())
    else {
        return;
    };
    let info = &envelope.info;
    let sender = info.sender.to_non_ad();
    match SecretBytes::from_slice(secret) {
        Ok(secret) if storable(&info.chat) && storable(&sender) => {
            out.batch.secrets.push(MessageSecretRecord {
                chat: info.chat.clone(),
                sender,
                message_id: info.id.clone(),
                secret,
                created_at_ms: now_ms,
            });
        }
        Ok(_) => {
            tracing::warn!(chat = %info.chat, "message secret under a JID the store cannot keep")
        }
        Err(_) => tracing::warn!(
            chat = %info.chat, id = %info.id, len = secret.len(),
            "ignoring a message secret that is not 32 bytes"
        ),
    }
}

/// The content of a `deviceSentMessage` (our other device's copy of what it sent),
/// keeping the outer `messageContextInfo` when the inner message has none.
fn unwrap_device_sent(mut message: e2e::Message) -> e2e::Message {
    let Some(inner) = message
        .device_sent_message
        .as_mut()
        .and_then(|d| d.message.take())
    else {
        return message;
    };
    let mut inner = *inner;
    if inner.message_context_info.is_none() {
        inner.message_context_info = message.message_context_info.take();
    }
    if inner.sender_key_distribution_message.is_none() {
        inner.sender_key_distribution_message = message.sender_key_distribution_message.take();
    }
    inner
}

/// True when the message carries more than a sender key and context info.
fn has_content(message: &e2e::Message) -> bool {
    let mut rest = message.clone();
    rest.sender_key_distribution_message = None;
    rest.message_context_info = None;
    rest != e2e::Message::default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::{Node, NodeContent};
    use crate::client::receive_support::{
        LocalDevice, Member, SEED_GROUP, block_on, message_stanza, seed_stanzas, text_with_secret,
    };
    use crate::signal::store::SignalStoreExt;
    use crate::store::MemoryStore;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn jid(s: &str) -> Jid {
        Jid::parse(s).unwrap()
    }

    struct Fixture {
        local: LocalDevice,
        store: MemoryStore,
        member: Member,
        rng: StdRng,
    }

    fn fixture() -> Fixture {
        let local = LocalDevice::fixed();
        let store = block_on(local.store()).unwrap();
        let mut rng = StdRng::seed_from_u64(11);
        let mut member = Member::new(
            jid("70000009:2@lid"),
            Some(jid("5511700000009:2@s.whatsapp.net")),
            &mut rng,
        );
        member
            .start_session(&local.bundle(Some(1)), &mut rng)
            .unwrap();
        Fixture {
            local,
            store,
            member,
            rng,
        }
    }

    fn run(f: &mut Fixture, node: &Node) -> Decryption {
        let env = Envelope::parse(node, &f.local.own_ids()).unwrap();
        block_on(decrypt_envelope(
            &f.store,
            &f.local.credentials.identity,
            &env,
            &mut f.rng,
            1,
        ))
        .unwrap()
        .unwrap()
    }

    fn commit(f: &Fixture, batch: StoreBatch) {
        block_on(f.store.commit_batch(batch)).unwrap().unwrap();
    }

    #[test]
    fn group_message_with_sender_key_decrypts_and_stores_everything() {
        let mut f = fixture();
        let group = jid(SEED_GROUP);
        let content = text_with_secret("hello", [5; 32]);
        let node = f
            .member
            .group_stanza(&group, "M1", &content, true, &mut f.rng)
            .unwrap();
        let d = run(&mut f, &node);
        assert_eq!(d.failure, None);
        assert_eq!(d.messages.len(), 1, "the SKDM-only part is not a message");
        let m = &d.messages[0];
        assert_eq!(m.message, content);
        assert_eq!(m.info.chat, group);
        assert_eq!(m.info.sender, jid("70000009:2@lid"));
        let b = &d.batch;
        assert_eq!(b.signal.removed_prekeys, vec![1]);
        assert_eq!(b.signal.identities.len(), 1);
        assert_eq!(b.signal.identities[0].1, *f.member.identity.public_key());
        assert_eq!(b.signal.sessions.len(), 1);
        assert_eq!(b.signal.sessions[0].0.to_string(), "70000009_1:2");
        assert_eq!(b.signal.sender_keys.len(), 1);
        assert_eq!(b.decrypted.len(), 2);
        assert_eq!(b.secrets.len(), 1);
        assert_eq!(b.secrets[0].secret.as_bytes(), &[5; 32]);
        assert_eq!(b.secrets[0].sender, jid("70000009@lid"));
        assert_eq!(b.mappings.len(), 1);
        commit(&f, d.batch);
        // The next message needs only the skmsg.
        let next = text_with_secret("second", [6; 32]);
        let node = f
            .member
            .group_stanza(&group, "M2", &next, false, &mut f.rng)
            .unwrap();
        let d = run(&mut f, &node);
        assert_eq!(d.failure, None);
        assert_eq!(d.messages[0].message, next);
        assert!(d.batch.signal.removed_prekeys.is_empty());
    }

    #[test]
    fn redelivery_uses_the_buffer_and_duplicates_are_skipped() {
        let mut f = fixture();
        let group = jid(SEED_GROUP);
        let node = f
            .member
            .group_stanza(
                &group,
                "M1",
                &text_with_secret("x", [1; 32]),
                true,
                &mut f.rng,
            )
            .unwrap();
        let first = run(&mut f, &node);
        commit(&f, first.batch);
        // Same stanza again (the ack was lost): same message, from the buffer.
        let again = run(&mut f, &node);
        assert_eq!(again.failure, None);
        assert_eq!(again.redelivered, 2);
        assert_eq!(again.messages, first.messages);
        assert!(again.batch.decrypted.is_empty() && again.batch.signal.is_empty());
        // The same ciphertext under another message id is not that message: its keys
        // are used up, so it is a duplicate and nothing is delivered.
        let other = node.clone().attr("id", "M1-COPY");
        let copy = run(&mut f, &other);
        assert_eq!(copy.redelivered, 0);
        assert_eq!(copy.duplicates, 2);
        assert!(copy.messages.is_empty());
        // A message whose plaintext is not buffered (only the Signal state was kept):
        // its key is used up, so it is a duplicate, not a failure.
        let node = f
            .member
            .group_stanza(
                &group,
                "M2",
                &text_with_secret("y", [2; 32]),
                false,
                &mut f.rng,
            )
            .unwrap();
        let d = run(&mut f, &node);
        commit(&f, StoreBatch::from_signal(d.batch.signal));
        let dup = run(&mut f, &node);
        assert_eq!(dup.failure, None);
        assert_eq!(dup.duplicates, 1);
        assert!(dup.messages.is_empty());
    }

    #[test]
    fn failures_say_what_to_ask_for() {
        let mut f = fixture();
        let group = jid(SEED_GROUP);
        // skmsg without the sender key: no session → keys in the retry receipt.
        f.member.skdm_message(&group, &mut f.rng).unwrap();
        let node = f
            .member
            .group_stanza(
                &group,
                "M1",
                &text_with_secret("x", [1; 32]),
                false,
                &mut f.rng,
            )
            .unwrap();
        let d = run(&mut f, &node);
        let failure = d.failure.unwrap();
        assert!(matches!(
            failure,
            PartError::Signal {
                enc_type: EncType::SenderKey,
                source: SignalError::NoSenderKey,
                ..
            }
        ));
        assert_eq!(failure.retry_reason(), Some(RetryReason::NoSession));
        assert!(failure.needs_keys());
        // A corrupted pkmsg: the first part fails, the skmsg is not tried, nothing is
        // stored for it.
        let mut node = f
            .member
            .group_stanza(
                &group,
                "M2",
                &text_with_secret("x", [1; 32]),
                true,
                &mut f.rng,
            )
            .unwrap();
        if let NodeContent::Nodes(children) = &mut node.content
            && let NodeContent::Bytes(b) = &mut children[0].content
        {
            let last = b.len() - 1;
            b[last] ^= 1;
        }
        let d = run(&mut f, &node);
        assert!(matches!(
            d.failure,
            Some(PartError::Signal {
                enc_type: EncType::PreKey,
                ..
            })
        ));
        assert!(d.batch.signal.is_empty() && d.batch.decrypted.is_empty());
        assert!(d.messages.is_empty());
    }

    #[test]
    fn sender_keys_for_other_groups_are_ignored() {
        let mut f = fixture();
        let other = jid("120363999999999999@g.us");
        let skdm = f.member.skdm_message(&other, &mut f.rng).unwrap();
        let (kind, bytes) = f.member.encrypt_pairwise(&skdm, &mut f.rng).unwrap();
        let node = Node::new("message")
            .attr("from", jid(SEED_GROUP))
            .attr("participant", f.member.device.clone())
            .attr("id", "M1")
            .attr("t", "1")
            .child(
                Node::new("enc")
                    .attr("v", "2")
                    .attr("type", kind)
                    .with_bytes(bytes),
            );
        let d = run(&mut f, &node);
        assert_eq!(d.failure, None);
        assert_eq!(d.ignored_skdms, 1);
        assert!(d.batch.signal.sender_keys.is_empty());
        assert!(d.messages.is_empty());
    }

    #[test]
    fn own_device_copies_are_unwrapped_and_pn_sessions_move_to_the_lid() {
        let mut f = fixture();
        // The seed corpus has one own-device stanza: a deviceSentMessage.
        let seeds = seed_stanzas();
        let (_, bytes) = seeds.iter().find(|(n, _)| n == "own_device_sent").unwrap();
        let node = crate::binary::unmarshal(bytes).unwrap();
        let d = run(&mut f, &node);
        assert_eq!(d.failure, None);
        let m = &d.messages[0];
        assert!(m.info.from_me);
        assert_eq!(m.info.chat, jid("5511700000002@s.whatsapp.net"));
        assert_eq!(
            m.message.conversation.as_deref(),
            Some("sent from my phone")
        );
        assert!(m.message.device_sent_message.is_none());
        // A PN sender whose LID we learn later: the msg after the pkmsg finds the PN
        // session and moves it to the LID address.
        let mut pn_member = Member::new(jid("5511700000077:1@s.whatsapp.net"), None, &mut f.rng);
        pn_member
            .start_session(&f.local.bundle(Some(3)), &mut f.rng)
            .unwrap();
        let node = pn_member
            .direct_stanza("D1", &text_with_secret("a", [3; 32]), &mut f.rng)
            .unwrap();
        let d = run(&mut f, &node);
        assert_eq!(d.failure, None);
        commit(&f, d.batch);
        // Our reply acknowledges the session on the member's side.
        let ours = block_on(
            f.store
                .load_session_record(&ProtocolAddress::from_jid(&pn_member.device)),
        )
        .unwrap()
        .unwrap();
        let mut ours = ours;
        let reply =
            crate::signal::encrypt(&mut ours, &crate::signal::padding::pad_with(b"r", 1)).unwrap();
        assert_eq!(reply.enc_type(), "msg");
        crate::signal::decrypt_whisper(&mut pn_member.session, reply.bytes(), &mut f.rng).unwrap();
        let node = pn_member
            .direct_stanza("D2", &text_with_secret("b", [4; 32]), &mut f.rng)
            .unwrap()
            .attr("sender_lid", jid("77000077@lid"));
        let d = run(&mut f, &node);
        assert_eq!(d.failure, None, "{:?}", d.failure);
        assert_eq!(d.messages.len(), 1);
        assert_eq!(d.batch.signal.sessions[0].0.to_string(), "77000077_1:1");
        assert_eq!(
            d.batch.signal.removed_sessions,
            vec![ProtocolAddress::from_jid(&pn_member.device)]
        );
    }

    #[test]
    fn a_lid_sender_finds_its_phone_number_session() {
        let mut f = fixture();
        let pn = jid("5511700000088:1@s.whatsapp.net");
        let mut m = Member::new(pn.clone(), None, &mut f.rng);
        m.start_session(&f.local.bundle(Some(4)), &mut f.rng)
            .unwrap();
        let node = m
            .direct_stanza("P1", &text_with_secret("a", [1; 32]), &mut f.rng)
            .unwrap();
        let d = run(&mut f, &node);
        assert_eq!(d.failure, None);
        assert_eq!(d.batch.signal.sessions[0].0.to_string(), "5511700000088:1");
        commit(&f, d.batch);
        let mut ours = block_on(f.store.load_session_record(&ProtocolAddress::from_jid(&pn)))
            .unwrap()
            .unwrap();
        let reply =
            crate::signal::encrypt(&mut ours, &crate::signal::padding::pad_with(b"r", 1)).unwrap();
        crate::signal::decrypt_whisper(&mut m.session, reply.bytes(), &mut f.rng).unwrap();
        // Now the server addresses the same device by its LID, naming the PN.
        m.device = jid("88000088:1@lid");
        let node = m
            .direct_stanza("P2", &text_with_secret("b", [2; 32]), &mut f.rng)
            .unwrap()
            .attr("sender_pn", jid("5511700000088@s.whatsapp.net"));
        let d = run(&mut f, &node);
        assert_eq!(d.failure, None, "{:?}", d.failure);
        assert_eq!(d.messages[0].message.conversation.as_deref(), Some("b"));
        assert_eq!(d.batch.signal.sessions[0].0.to_string(), "88000088_1:1");
        assert_eq!(
            d.batch.signal.removed_sessions,
            vec![ProtocolAddress::from_jid(&pn)]
        );
        assert_eq!(d.batch.mappings.len(), 1);
    }

    #[test]
    fn every_seed_stanza_decrypts_through_the_fuzz_entry() {
        let seeds = seed_stanzas();
        assert_eq!(seeds.len(), 4);
        for (name, bytes) in &seeds {
            let expected = usize::from(name != "group_skmsg_only");
            assert_eq!(message_stanza(bytes), expected, "{name}");
        }
        assert_eq!(message_stanza(&[0, 1, 2]), 0);
    }
}
