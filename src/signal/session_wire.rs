//! Direct protobuf writer for [`SessionRecord`]: the bytes of
//! `waevent.records.RecordStructure` (`proto/records.proto`) written straight from the
//! in-memory states into one exactly sized buffer.
//!
//! Why not build the prost structs: a send to a group re-serializes one session record
//! per device (thousands per send), and building `pb::SessionStructure` first costs one
//! `Vec<u8>` per key (identities, root key, ratchet keys, chain keys, every skipped
//! message key) plus a second walk to encode it. Here the lengths are computed
//! arithmetically, the output is allocated once with its exact size (so it never
//! reallocates and leaves no stale copy of key material behind), and keys are copied
//! straight into it. The one exception is the sending ratchet's private key:
//! `PrivateKey::to_bytes` lends no borrow, so it passes through a stack copy that is
//! wiped when dropped.
//!
//! The bytes are identical to prost's derived encoder on the structs the old path built
//! (`SessionRecord::serialize_via_prost`, kept under `cfg(test)` as the oracle of the
//! tests below): fields in tag order, proto2 `optional` fields present iff set,
//! repeated messages in order. Only the field layout is ours; tags and varints use
//! prost's own primitives.

use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use super::curve::PublicKey;
use super::ratchet::{ChainKey, MessageKeys};
use super::records::RECORD_VERSION;
use super::session::{
    PendingPreKey, ReceiverChain, SESSION_VERSION, SenderChain, SessionRecord, SessionState,
};

// RecordStructure
const RECORD_CURRENT_SESSION: u32 = 1;
const RECORD_PREVIOUS_SESSIONS: u32 = 2;
const RECORD_VERSION_TAG: u32 = 15;

// SessionStructure (8 = pendingKeyExchange and 12 = needsRefresh are never written)
const SESSION_VERSION_TAG: u32 = 1;
const SESSION_LOCAL_IDENTITY: u32 = 2;
const SESSION_REMOTE_IDENTITY: u32 = 3;
const SESSION_ROOT_KEY: u32 = 4;
const SESSION_PREVIOUS_COUNTER: u32 = 5;
const SESSION_SENDER_CHAIN: u32 = 6;
const SESSION_RECEIVER_CHAINS: u32 = 7;
const SESSION_PENDING_PRE_KEY: u32 = 9;
const SESSION_REMOTE_REGISTRATION_ID: u32 = 10;
const SESSION_LOCAL_REGISTRATION_ID: u32 = 11;
const SESSION_ALICE_BASE_KEY: u32 = 13;

// SessionStructure.Chain
const CHAIN_SENDER_RATCHET_KEY: u32 = 1;
const CHAIN_SENDER_RATCHET_KEY_PRIVATE: u32 = 2;
const CHAIN_CHAIN_KEY: u32 = 3;
const CHAIN_MESSAGE_KEYS: u32 = 4;

// SessionStructure.Chain.ChainKey
const CHAIN_KEY_INDEX: u32 = 1;
const CHAIN_KEY_KEY: u32 = 2;

// SessionStructure.Chain.MessageKey
const MESSAGE_KEY_INDEX: u32 = 1;
const MESSAGE_KEY_CIPHER_KEY: u32 = 2;
const MESSAGE_KEY_MAC_KEY: u32 = 3;
const MESSAGE_KEY_IV: u32 = 4;

// SessionStructure.PendingPreKey
const PENDING_PRE_KEY_ID: u32 = 1;
const PENDING_BASE_KEY: u32 = 2;
const PENDING_SIGNED_PRE_KEY_ID: u32 = 3;

/// A serialized public key: `0x05 || key`.
const PUBLIC_KEY_LEN: usize = 33;
/// A private key, root key, chain key, cipher key or MAC key.
const KEY_LEN: usize = 32;
/// A skipped message key's CBC IV.
const IV_LEN: usize = 16;

/// The `RecordStructure` bytes of `record` (see the module docs).
pub(super) fn encode_record(record: &SessionRecord) -> Vec<u8> {
    // The current state's length is needed twice (total and its own header): compute
    // it once. Archived states are rare on the hot path and are measured twice.
    let current_len = record.current.as_ref().map(state_len);
    let len = current_len.map_or(0, |n| message_field_len(RECORD_CURRENT_SESSION, n))
        + previous_states_len(record)
        + uint32_field_len(RECORD_VERSION_TAG, RECORD_VERSION);
    let mut out = Vec::with_capacity(len);
    if let (Some(state), Some(state_len)) = (&record.current, current_len) {
        put_message_header(RECORD_CURRENT_SESSION, state_len, &mut out);
        put_state(state, &mut out);
    }
    for state in &record.previous {
        put_message_header(RECORD_PREVIOUS_SESSIONS, state_len(state), &mut out);
        put_state(state, &mut out);
    }
    put_uint32(RECORD_VERSION_TAG, RECORD_VERSION, &mut out);
    debug_assert_eq!(out.len(), len, "record length computed exactly");
    out
}

/// Exact length of [`encode_record`]'s output.
#[cfg(test)]
fn record_len(record: &SessionRecord) -> usize {
    record
        .current
        .iter()
        .map(|s| message_field_len(RECORD_CURRENT_SESSION, state_len(s)))
        .sum::<usize>()
        + previous_states_len(record)
        + uint32_field_len(RECORD_VERSION_TAG, RECORD_VERSION)
}

fn previous_states_len(record: &SessionRecord) -> usize {
    record
        .previous
        .iter()
        .map(|s| message_field_len(RECORD_PREVIOUS_SESSIONS, state_len(s)))
        .sum()
}

fn state_len(s: &SessionState) -> usize {
    uint32_field_len(SESSION_VERSION_TAG, SESSION_VERSION)
        + bytes_field_len(SESSION_LOCAL_IDENTITY, PUBLIC_KEY_LEN)
        + bytes_field_len(SESSION_REMOTE_IDENTITY, PUBLIC_KEY_LEN)
        + bytes_field_len(SESSION_ROOT_KEY, KEY_LEN)
        + uint32_field_len(SESSION_PREVIOUS_COUNTER, s.previous_counter)
        + s.sender_chain.as_ref().map_or(0, |c| {
            message_field_len(SESSION_SENDER_CHAIN, sender_chain_len(c))
        })
        + s.receiver_chains
            .iter()
            .map(|c| message_field_len(SESSION_RECEIVER_CHAINS, receiver_chain_len(c)))
            .sum::<usize>()
        + s.pending_prekey.as_ref().map_or(0, |p| {
            message_field_len(SESSION_PENDING_PRE_KEY, pending_len(p))
        })
        + uint32_field_len(SESSION_REMOTE_REGISTRATION_ID, s.remote_registration_id)
        + uint32_field_len(SESSION_LOCAL_REGISTRATION_ID, s.local_registration_id)
        + s.alice_base_key.map_or(0, |_| {
            bytes_field_len(SESSION_ALICE_BASE_KEY, PUBLIC_KEY_LEN)
        })
}

fn put_state(s: &SessionState, out: &mut Vec<u8>) {
    put_uint32(SESSION_VERSION_TAG, SESSION_VERSION, out);
    put_public_key(SESSION_LOCAL_IDENTITY, &s.local_identity, out);
    put_public_key(SESSION_REMOTE_IDENTITY, &s.remote_identity, out);
    put_bytes(SESSION_ROOT_KEY, s.root_key.as_bytes(), out);
    put_uint32(SESSION_PREVIOUS_COUNTER, s.previous_counter, out);
    if let Some(c) = &s.sender_chain {
        put_message_header(SESSION_SENDER_CHAIN, sender_chain_len(c), out);
        put_public_key(CHAIN_SENDER_RATCHET_KEY, &c.ratchet.public, out);
        // The only copy outside the output: a stack array wiped when dropped.
        put_bytes(
            CHAIN_SENDER_RATCHET_KEY_PRIVATE,
            &*c.ratchet.private.to_bytes(),
            out,
        );
        put_chain_key(&c.chain_key, out);
    }
    for c in &s.receiver_chains {
        put_message_header(SESSION_RECEIVER_CHAINS, receiver_chain_len(c), out);
        put_public_key(CHAIN_SENDER_RATCHET_KEY, &c.ratchet_key, out);
        put_chain_key(&c.chain_key, out);
        for k in &c.skipped {
            put_message_header(CHAIN_MESSAGE_KEYS, message_key_len(k), out);
            put_uint32(MESSAGE_KEY_INDEX, k.counter, out);
            put_bytes(MESSAGE_KEY_CIPHER_KEY, &k.cipher_key, out);
            put_bytes(MESSAGE_KEY_MAC_KEY, &k.mac_key, out);
            put_bytes(MESSAGE_KEY_IV, &k.iv, out);
        }
    }
    if let Some(p) = &s.pending_prekey {
        put_message_header(SESSION_PENDING_PRE_KEY, pending_len(p), out);
        if let Some(id) = p.prekey_id {
            put_uint32(PENDING_PRE_KEY_ID, id, out);
        }
        put_public_key(PENDING_BASE_KEY, &p.base_key, out);
        put_int32(PENDING_SIGNED_PRE_KEY_ID, p.signed_prekey_id as i32, out);
    }
    put_uint32(
        SESSION_REMOTE_REGISTRATION_ID,
        s.remote_registration_id,
        out,
    );
    put_uint32(SESSION_LOCAL_REGISTRATION_ID, s.local_registration_id, out);
    if let Some(k) = &s.alice_base_key {
        put_public_key(SESSION_ALICE_BASE_KEY, k, out);
    }
}

fn sender_chain_len(c: &SenderChain) -> usize {
    bytes_field_len(CHAIN_SENDER_RATCHET_KEY, PUBLIC_KEY_LEN)
        + bytes_field_len(CHAIN_SENDER_RATCHET_KEY_PRIVATE, KEY_LEN)
        + message_field_len(CHAIN_CHAIN_KEY, chain_key_len(&c.chain_key))
}

fn receiver_chain_len(c: &ReceiverChain) -> usize {
    bytes_field_len(CHAIN_SENDER_RATCHET_KEY, PUBLIC_KEY_LEN)
        + message_field_len(CHAIN_CHAIN_KEY, chain_key_len(&c.chain_key))
        + c.skipped
            .iter()
            .map(|k| message_field_len(CHAIN_MESSAGE_KEYS, message_key_len(k)))
            .sum::<usize>()
}

fn chain_key_len(ck: &ChainKey) -> usize {
    uint32_field_len(CHAIN_KEY_INDEX, ck.index()) + bytes_field_len(CHAIN_KEY_KEY, KEY_LEN)
}

fn put_chain_key(ck: &ChainKey, out: &mut Vec<u8>) {
    put_message_header(CHAIN_CHAIN_KEY, chain_key_len(ck), out);
    put_uint32(CHAIN_KEY_INDEX, ck.index(), out);
    put_bytes(CHAIN_KEY_KEY, ck.key_bytes(), out);
}

fn message_key_len(k: &MessageKeys) -> usize {
    uint32_field_len(MESSAGE_KEY_INDEX, k.counter)
        + bytes_field_len(MESSAGE_KEY_CIPHER_KEY, KEY_LEN)
        + bytes_field_len(MESSAGE_KEY_MAC_KEY, KEY_LEN)
        + bytes_field_len(MESSAGE_KEY_IV, IV_LEN)
}

fn pending_len(p: &PendingPreKey) -> usize {
    p.prekey_id
        .map_or(0, |id| uint32_field_len(PENDING_PRE_KEY_ID, id))
        + bytes_field_len(PENDING_BASE_KEY, PUBLIC_KEY_LEN)
        + int32_field_len(PENDING_SIGNED_PRE_KEY_ID, p.signed_prekey_id as i32)
}

fn uint32_field_len(tag: u32, value: u32) -> usize {
    key_len(tag) + encoded_len_varint(u64::from(value))
}

/// protobuf `int32`: negative values are sign-extended to 64 bits (10-byte varint).
fn int32_field_len(tag: u32, value: i32) -> usize {
    key_len(tag) + encoded_len_varint(i64::from(value) as u64)
}

fn bytes_field_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn message_field_len(tag: u32, body_len: usize) -> usize {
    bytes_field_len(tag, body_len)
}

fn put_uint32(tag: u32, value: u32, out: &mut Vec<u8>) {
    encode_key(tag, WireType::Varint, out);
    encode_varint(u64::from(value), out);
}

fn put_int32(tag: u32, value: i32, out: &mut Vec<u8>) {
    encode_key(tag, WireType::Varint, out);
    encode_varint(i64::from(value) as u64, out);
}

fn put_bytes(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn put_public_key(tag: u32, key: &PublicKey, out: &mut Vec<u8>) {
    put_bytes(tag, &key.serialize(), out);
}

fn put_message_header(tag: u32, body_len: usize, out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(body_len as u64, out);
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use proptest::collection::vec;
    use proptest::option;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::signal::cipher::{PreKeys, decrypt_prekey, decrypt_whisper, encrypt};
    use crate::signal::curve::{KeyPair, PrivateKey};
    use crate::signal::identity::{
        LocalIdentity, PreKeyBundle, SignedPreKeyRecord, generate_prekeys,
    };
    use crate::signal::message::PreKeySignalMessage;
    use crate::signal::ratchet::RootKey;
    use crate::signal::session::initialize_from_bundle;

    /// Serializes both ways and checks: identical bytes, the exact pre-sized buffer was
    /// never reallocated, and the bytes load back into a record that serializes to the
    /// same bytes again.
    fn check_against_prost(record: &SessionRecord) -> Vec<u8> {
        let direct = record.serialize();
        let oracle = record.serialize_via_prost();
        assert_eq!(
            hex::encode(&direct),
            hex::encode(&oracle),
            "direct bytes equal prost's"
        );
        assert_eq!(record_len(record), direct.len());
        assert_eq!(direct.capacity(), direct.len(), "buffer sized exactly");
        let reloaded = SessionRecord::deserialize(&direct).expect("direct bytes load");
        assert_eq!(
            reloaded.current.is_some(),
            record.current.is_some(),
            "current state kept"
        );
        assert_eq!(reloaded.previous.len(), record.previous.len());
        assert_eq!(reloaded.serialize(), direct, "round trip is stable");
        direct
    }

    /// Counters whose varints take 1, 2, 3, 4 and 5 bytes.
    fn counter() -> impl Strategy<Value = u32> {
        prop_oneof![
            0u32..0x80,
            0x80u32..0x4000,
            0x4000u32..0x20_0000,
            0x20_0000u32..0x1000_0000,
            0x1000_0000u32..=u32::MAX,
        ]
    }

    type RawChainKey = ([u8; 32], u32);
    type RawMessageKey = ([u8; 32], [u8; 32], [u8; 16], u32);
    type RawReceiverChain = ([u8; 32], RawChainKey, Vec<RawMessageKey>);
    type RawPending = (Option<u32>, u32, [u8; 32]);

    fn chain_key(raw: RawChainKey) -> ChainKey {
        ChainKey::new(raw.0, raw.1)
    }

    fn receiver_chain((ratchet, ck, skipped): RawReceiverChain) -> ReceiverChain {
        ReceiverChain {
            ratchet_key: PublicKey(ratchet),
            chain_key: chain_key(ck),
            skipped: skipped
                .into_iter()
                .map(|(cipher_key, mac_key, iv, counter)| MessageKeys {
                    cipher_key,
                    mac_key,
                    iv,
                    counter,
                })
                .collect(),
        }
    }

    fn raw_message_key() -> impl Strategy<Value = RawMessageKey> {
        (
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            any::<[u8; 16]>(),
            counter(),
        )
    }

    fn raw_receiver_chain() -> impl Strategy<Value = RawReceiverChain> {
        (
            any::<[u8; 32]>(),
            (any::<[u8; 32]>(), counter()),
            // Few keys, or enough that the chain's length prefix needs 3 bytes.
            prop_oneof![
                3 => vec(raw_message_key(), 0..=3),
                1 => vec(raw_message_key(), 150..=250),
            ],
        )
    }

    fn state() -> impl Strategy<Value = SessionState> {
        (
            any::<[[u8; 32]; 3]>(),
            counter(),
            option::of((
                any::<[u8; 32]>(),
                any::<[u8; 32]>(),
                (any::<[u8; 32]>(), counter()),
            )),
            vec(raw_receiver_chain(), 0..=5),
            // any u32 signed prekey id: ids >= 2^31 are negative int32s (10-byte varint)
            option::of((option::of(counter()), any::<u32>(), any::<[u8; 32]>())),
            counter(),
            counter(),
            option::of(any::<[u8; 32]>()),
        )
            .prop_map(
                |(
                    [local, remote, root],
                    previous_counter,
                    sender,
                    receivers,
                    pending,
                    remote_registration_id,
                    local_registration_id,
                    alice_base_key,
                )| SessionState {
                    local_identity: PublicKey(local),
                    remote_identity: PublicKey(remote),
                    root_key: RootKey::new(root),
                    previous_counter,
                    sender_chain: sender.map(|(public, private, ck)| SenderChain {
                        ratchet: KeyPair::from_parts_unchecked(
                            PublicKey(public),
                            PrivateKey::from_bytes(&private).expect("32 bytes"),
                        ),
                        chain_key: chain_key(ck),
                    }),
                    receiver_chains: receivers.into_iter().map(receiver_chain).collect(),
                    pending_prekey: pending.map(
                        |(prekey_id, signed_prekey_id, base): RawPending| PendingPreKey {
                            prekey_id,
                            signed_prekey_id,
                            base_key: PublicKey(base),
                        },
                    ),
                    remote_registration_id,
                    local_registration_id,
                    alice_base_key: alice_base_key.map(PublicKey),
                },
            )
    }

    fn record() -> impl Strategy<Value = SessionRecord> {
        (option::weighted(0.9, state()), vec(state(), 0..=3)).prop_map(|(current, previous)| {
            SessionRecord {
                current,
                previous: VecDeque::from(previous),
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn direct_serialize_matches_prost_and_round_trips(record in record()) {
            check_against_prost(&record);
        }
    }

    #[test]
    fn empty_record_matches_prost() {
        let bytes = check_against_prost(&SessionRecord::new());
        assert_eq!(bytes, [0x78, 0x01], "only version = 1");
    }

    #[test]
    fn real_sessions_serialize_like_prost_at_every_step() {
        let rng = &mut StdRng::seed_from_u64(7);
        let alice = LocalIdentity::generate(rng);
        let bob = LocalIdentity::generate(rng);
        let signed = SignedPreKeyRecord::generate(&bob.key_pair, 1, 0, rng);
        let one = generate_prekeys(1, 1, rng).remove(0);
        let with_prekey = PreKeyBundle::from_local(&bob, 1, &signed, Some(&one));
        let without_prekey = PreKeyBundle::from_local(&bob, 1, &signed, None);

        // Alice starts: pending prekey with a one-time prekey id, sending chain and the
        // receiving chain of Bob's signed prekey.
        let mut a = SessionRecord::new();
        initialize_from_bundle(&mut a, &alice, &with_prekey, rng).unwrap();
        assert!(a.current().unwrap().has_unacknowledged_prekey());
        check_against_prost(&a);

        // Three pkmsgs; Bob gets the first and the third: one skipped key kept.
        let sent: Vec<_> = (0..3)
            .map(|i| encrypt(&mut a, format!("m{i}").as_bytes()).unwrap())
            .collect();
        let mut b = SessionRecord::new();
        let prekeys = PreKeys {
            signed: Some(&signed),
            one_time: Some(&one),
        };
        for i in [0, 2] {
            let msg = PreKeySignalMessage::deserialize(sent[i].bytes()).unwrap();
            decrypt_prekey(&mut b, &bob, &msg, prekeys, rng).unwrap();
        }
        let bob_state = b.current().unwrap();
        assert_eq!(bob_state.receiver_chains.len(), 1);
        assert_eq!(bob_state.receiver_chains[0].skipped.len(), 1);
        check_against_prost(&b);

        // Bob answers; Alice's session is acknowledged and has two receiving chains.
        let reply = encrypt(&mut b, b"hello").unwrap();
        decrypt_whisper(&mut a, reply.bytes(), rng).unwrap();
        let alice_state = a.current().unwrap();
        assert!(!alice_state.has_unacknowledged_prekey());
        assert_eq!(alice_state.receiver_chains_len(), 2);
        check_against_prost(&a);

        // Alice starts over without a one-time prekey: the old state is archived.
        initialize_from_bundle(&mut a, &alice, &without_prekey, rng).unwrap();
        assert_eq!(a.previous_states().count(), 1);
        let pending = a.current().unwrap().pending_prekey.as_ref().unwrap();
        assert_eq!(pending.prekey_id, None);
        check_against_prost(&a);
    }
}
