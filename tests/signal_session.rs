//! Pairwise sessions between two in-process parties: X3DH with and without a one-time
//! prekey, the Double Ratchet in both directions, out-of-order delivery, duplicates,
//! skipped-key limits, session replacement and archived states, forged input, and
//! persistence of records mid-conversation.

use std::collections::HashMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use waevent::signal::session::{MAX_ARCHIVED_STATES, MAX_RECEIVER_CHAINS};
use waevent::signal::{
    CiphertextMessage, LocalIdentity, PreKeyBundle, PreKeyRecord, PreKeySignalMessage, PreKeys,
    SessionRecord, SignalError, SignedPreKeyRecord, decrypt_prekey, decrypt_whisper, encrypt,
    generate_prekeys, initialize_from_bundle,
};

struct Party {
    identity: LocalIdentity,
    signed: SignedPreKeyRecord,
    prekeys: HashMap<u32, PreKeyRecord>,
    session: SessionRecord,
}

impl Party {
    fn new(rng: &mut StdRng) -> Self {
        let identity = LocalIdentity::generate(rng);
        let signed = SignedPreKeyRecord::generate(&identity.key_pair, 1, 0, rng);
        let prekeys = generate_prekeys(1, 10, rng)
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
        Party {
            identity,
            signed,
            prekeys,
            session: SessionRecord::new(),
        }
    }

    fn bundle(&self, prekey: Option<u32>) -> PreKeyBundle {
        PreKeyBundle::from_local(
            &self.identity,
            1,
            &self.signed,
            prekey.map(|id| &self.prekeys[&id]),
        )
    }

    fn start_with(&mut self, other: &Party, prekey: Option<u32>, rng: &mut StdRng) {
        initialize_from_bundle(
            &mut self.session,
            &self.identity,
            &other.bundle(prekey),
            rng,
        )
        .unwrap();
    }

    fn send(&mut self, plaintext: &[u8]) -> CiphertextMessage {
        encrypt(&mut self.session, plaintext).unwrap()
    }

    /// Decrypts like a client would: look up prekeys by what the message names, then
    /// drop the consumed one-time prekey.
    fn receive(
        &mut self,
        msg: &CiphertextMessage,
        rng: &mut StdRng,
    ) -> Result<Vec<u8>, SignalError> {
        match msg {
            CiphertextMessage::Whisper(b) => decrypt_whisper(&mut self.session, b, rng),
            CiphertextMessage::PreKey(b) => {
                let pkmsg = PreKeySignalMessage::deserialize(b)?;
                let needed = self.session.prekeys_needed(&pkmsg);
                let signed = needed
                    .filter(|n| n.signed_prekey_id == self.signed.id)
                    .map(|_| &self.signed);
                let one_time = needed
                    .and_then(|n| n.prekey_id)
                    .and_then(|id| self.prekeys.get(&id));
                let out = decrypt_prekey(
                    &mut self.session,
                    &self.identity,
                    &pkmsg,
                    PreKeys { signed, one_time },
                    rng,
                )?;
                assert_eq!(out.remote_identity, *pkmsg.identity_key());
                if let Some(id) = out.consumed_prekey_id {
                    self.prekeys.remove(&id);
                }
                Ok(out.plaintext)
            }
        }
    }

    /// Saves and reloads the session record, as a store round trip would.
    fn persist(&mut self) {
        let bytes = self.session.serialize();
        self.session = SessionRecord::deserialize(&bytes).unwrap();
        assert_eq!(self.session.serialize(), bytes, "serialization is stable");
    }
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(0x5167_4E41)
}

fn pair(rng: &mut StdRng, prekey: Option<u32>) -> (Party, Party) {
    let mut alice = Party::new(rng);
    let bob = Party::new(rng);
    alice.start_with(&bob, prekey, rng);
    (alice, bob)
}

#[test]
fn x3dh_with_and_without_one_time_prekey_then_ratchet_both_ways() {
    for prekey in [Some(3), None] {
        let rng = &mut rng();
        let (mut alice, mut bob) = pair(rng, prekey);
        assert!(alice.session.current().unwrap().has_unacknowledged_prekey());

        // Until Bob answers, every message from Alice is a pkmsg.
        let m1 = alice.send(b"first");
        let m2 = alice.send(b"second");
        assert_eq!(m1.enc_type(), "pkmsg");
        assert_eq!(m2.enc_type(), "pkmsg");
        let pk = PreKeySignalMessage::deserialize(m1.bytes()).unwrap();
        assert_eq!(pk.prekey_id(), prekey);
        assert_eq!(pk.registration_id(), alice.identity.registration_id);
        assert_eq!(bob.receive(&m1, rng).unwrap(), b"first");
        if let Some(id) = prekey {
            assert!(!bob.prekeys.contains_key(&id), "one-time prekey consumed");
        }
        // The second pkmsg reuses the session built by the first (same base key).
        assert_eq!(bob.receive(&m2, rng).unwrap(), b"second");
        assert_eq!(bob.session.previous_states().count(), 0);

        let r1 = bob.send(b"reply");
        assert_eq!(r1.enc_type(), "msg");
        assert_eq!(alice.receive(&r1, rng).unwrap(), b"reply");
        assert!(!alice.session.current().unwrap().has_unacknowledged_prekey());
        assert_eq!(alice.send(b"now whisper").enc_type(), "msg");

        // Many ratchet turns with uneven message counts, persisting now and then.
        for round in 0..30u32 {
            for i in 0..(round % 4 + 1) {
                let text = format!("a{round}.{i}");
                let m = alice.send(text.as_bytes());
                assert_eq!(bob.receive(&m, rng).unwrap(), text.as_bytes());
            }
            for i in 0..(round % 3) {
                let text = format!("b{round}.{i}");
                let m = bob.send(text.as_bytes());
                assert_eq!(alice.receive(&m, rng).unwrap(), text.as_bytes());
            }
            if round % 7 == 0 {
                alice.persist();
                bob.persist();
            }
        }
        assert!(alice.session.current().unwrap().receiver_chains_len() <= MAX_RECEIVER_CHAINS);
    }
}

#[test]
fn out_of_order_and_duplicates() {
    let rng = &mut rng();
    let (mut alice, mut bob) = pair(rng, Some(1));
    let first = alice.send(b"hello");
    bob.receive(&first, rng).unwrap();
    alice.receive(&bob.send(b"ack"), rng).unwrap();

    let mut msgs: Vec<(usize, CiphertextMessage)> = (0..40)
        .map(|i| (i, alice.send(format!("m{i}").as_bytes())))
        .collect();
    msgs.shuffle(rng);
    for (i, m) in &msgs {
        assert_eq!(bob.receive(m, rng).unwrap(), format!("m{i}").as_bytes());
    }
    // Every one of them again: a duplicate is an error and changes nothing.
    let before = bob.session.serialize();
    for (_, m) in &msgs {
        let err = bob.receive(m, rng).unwrap_err();
        assert!(matches!(err, SignalError::DuplicateMessage { .. }), "{err}");
    }
    assert_eq!(bob.session.serialize(), before);
    // And the first pkmsg again, too.
    assert!(matches!(
        bob.receive(&first, rng),
        Err(SignalError::DuplicateMessage { .. })
    ));
}

#[test]
fn skipped_keys_survive_a_ratchet_step() {
    let rng = &mut rng();
    let (mut alice, mut bob) = pair(rng, None);
    bob.receive(&alice.send(b"hi"), rng).unwrap();
    alice.receive(&bob.send(b"hi back"), rng).unwrap();

    let late1 = alice.send(b"late 1");
    let late2 = alice.send(b"late 2");
    // Bob answers before seeing them, so Alice's next message starts a new chain.
    let b = bob.send(b"meanwhile");
    alice.receive(&b, rng).unwrap();
    let fresh = alice.send(b"new chain");
    assert_eq!(bob.receive(&fresh, rng).unwrap(), b"new chain");
    bob.persist();
    assert_eq!(bob.receive(&late2, rng).unwrap(), b"late 2");
    assert_eq!(bob.receive(&late1, rng).unwrap(), b"late 1");
}

#[test]
fn forward_jump_limit_and_skipped_key_cap() {
    let rng = &mut rng();
    let (mut alice, mut bob) = pair(rng, None);
    bob.receive(&alice.send(b"0"), rng).unwrap();
    alice.receive(&bob.send(b"ok"), rng).unwrap();

    // Alice's new chain starts at 0. Counter 2000 (a jump of exactly 2000) is accepted,
    // counter 2001 on a fresh chain is not.
    let msgs: Vec<CiphertextMessage> = (0..4003)
        .map(|i| alice.send(format!("{i}").as_bytes()))
        .collect();
    let err = decrypt_whisper(&mut bob.session.clone(), msgs[2001].bytes(), rng).unwrap_err();
    match err {
        SignalError::NoValidSession { current, .. } => {
            assert!(matches!(
                *current,
                SignalError::TooFarInFuture {
                    counter: 2001,
                    chain_index: 0,
                    limit: 2000
                }
            ))
        }
        other => panic!("{other}"),
    }
    assert_eq!(bob.receive(&msgs[2000], rng).unwrap(), b"2000"); // stores 2000 skipped keys
    assert_eq!(bob.receive(&msgs[4001], rng).unwrap(), b"4001"); // 2000 more: the oldest 2000 go
    // Keys 0..=2000 were evicted (2001..=4000 kept): an evicted one is refused.
    assert!(matches!(
        bob.receive(&msgs[5], rng),
        Err(SignalError::DuplicateMessage { .. })
    ));
    assert_eq!(bob.receive(&msgs[2001], rng).unwrap(), b"2001");
    assert_eq!(bob.receive(&msgs[4000], rng).unwrap(), b"4000");
    assert_eq!(bob.receive(&msgs[4002], rng).unwrap(), b"4002");
    bob.persist();
    assert_eq!(bob.receive(&msgs[3000], rng).unwrap(), b"3000");
}

#[test]
fn session_replacement_and_archived_states() {
    let rng = &mut rng();
    let (mut alice, mut bob) = pair(rng, Some(1));
    bob.receive(&alice.send(b"old 1"), rng).unwrap();
    alice.receive(&bob.send(b"old reply"), rng).unwrap();
    let late_old = alice.send(b"late on the old session");

    // Alice starts over (e.g. after a retry receipt) from a new bundle: new base key.
    alice.start_with(&bob, Some(2), rng);
    assert_eq!(alice.session.previous_states().count(), 1);
    let new1 = alice.send(b"new session");
    assert_eq!(new1.enc_type(), "pkmsg");
    assert_eq!(bob.receive(&new1, rng).unwrap(), b"new session");
    assert_eq!(
        bob.session.previous_states().count(),
        1,
        "old state archived"
    );
    let new_base = *PreKeySignalMessage::deserialize(new1.bytes())
        .unwrap()
        .base_key();
    assert_eq!(
        bob.session.current().unwrap().alice_base_key(),
        Some(&new_base)
    );

    // The late message of the old session still decrypts, from the archive, and its
    // state becomes current again (libsignal's promotion).
    assert_eq!(
        bob.receive(&late_old, rng).unwrap(),
        b"late on the old session"
    );
    assert_ne!(
        bob.session.current().unwrap().alice_base_key(),
        Some(&new_base)
    );
    // Both sessions keep working in both directions.
    let reply_old = bob.send(b"reply on old");
    assert_eq!(alice.receive(&reply_old, rng).unwrap(), b"reply on old");
    let again = alice.send(b"again");
    assert_eq!(bob.receive(&again, rng).unwrap(), b"again");
    bob.persist();
    alice.persist();
    let reply = bob.send(b"after persist");
    assert_eq!(alice.receive(&reply, rng).unwrap(), b"after persist");
}

#[test]
fn archive_is_capped_at_40_states() {
    let rng = &mut rng();
    let mut alice = Party::new(rng);
    let bob = Party::new(rng);
    for _ in 0..(MAX_ARCHIVED_STATES + 5) {
        alice.start_with(&bob, None, rng);
    }
    assert_eq!(alice.session.previous_states().count(), MAX_ARCHIVED_STATES);
    alice.persist();
    assert_eq!(alice.session.previous_states().count(), MAX_ARCHIVED_STATES);
}

#[test]
fn forged_and_corrupted_messages_change_nothing() {
    let rng = &mut rng();
    let (mut alice, mut bob) = pair(rng, Some(4));
    let first = alice.send(b"x");
    // Corrupt the pkmsg's inner MAC / ciphertext: no session may be created.
    let mut bad = first.bytes().to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let before = bob.session.serialize();
    assert!(bob.receive(&CiphertextMessage::PreKey(bad), rng).is_err());
    assert_eq!(bob.session.serialize(), before);
    assert!(bob.prekeys.contains_key(&4));
    bob.receive(&first, rng).unwrap();
    alice.receive(&bob.send(b"y"), rng).unwrap();

    let good = alice.send(b"payload of some length......");
    let before = bob.session.serialize();
    for i in 0..good.bytes().len() {
        for bit in [0x01u8, 0x80] {
            let mut bytes = good.bytes().to_vec();
            bytes[i] ^= bit;
            let r = decrypt_whisper(&mut bob.session, &bytes, rng);
            assert!(r.is_err(), "flipping byte {i} bit {bit:#x} was accepted");
        }
    }
    for len in 0..good.bytes().len() {
        assert!(decrypt_whisper(&mut bob.session, &good.bytes()[..len], rng).is_err());
    }
    assert_eq!(
        bob.session.serialize(),
        before,
        "failed decrypts left the record untouched"
    );
    assert_eq!(
        bob.receive(&good, rng).unwrap(),
        b"payload of some length......"
    );

    // The inner SignalMessage of a third party's pkmsg, delivered as a plain msg: no
    // state of Bob's authenticates it.
    let mut other = Party::new(rng);
    other.start_with(&bob, None, rng);
    let forged = other.send(b"forged");
    let inner = PreKeySignalMessage::deserialize(forged.bytes())
        .unwrap()
        .message()
        .serialized()
        .to_vec();
    let before = bob.session.serialize();
    assert!(matches!(
        bob.receive(&CiphertextMessage::Whisper(inner), rng),
        Err(SignalError::NoValidSession { .. })
    ));
    assert_eq!(bob.session.serialize(), before);
}

#[test]
fn bad_bundles_and_missing_prekeys_are_refused() {
    let rng = &mut rng();
    let mut alice = Party::new(rng);
    let mut bob = Party::new(rng);
    let mut bundle = bob.bundle(Some(1));
    bundle.signed_prekey_signature[0] ^= 1;
    let err =
        initialize_from_bundle(&mut alice.session, &alice.identity, &bundle, rng).unwrap_err();
    assert_eq!(
        err,
        SignalError::InvalidSignedPreKeySignature {
            signed_prekey_id: 1
        }
    );
    assert!(!alice.session.has_current_session());
    assert!(matches!(
        encrypt(&mut alice.session, b"x"),
        Err(SignalError::NoSession)
    ));
    assert!(matches!(
        decrypt_whisper(&mut alice.session, &[0x33; 20], rng),
        Err(SignalError::Malformed { .. })
    ));
    // A well-formed message on an empty record: no session.
    let (mut carol, _) = pair(rng, None);
    let from_carol = carol.send(b"hi");
    let inner = PreKeySignalMessage::deserialize(from_carol.bytes()).unwrap();
    assert_eq!(
        decrypt_whisper(&mut alice.session, inner.message().serialized(), rng).unwrap_err(),
        SignalError::NoSession
    );

    alice.start_with(&bob, Some(1), rng);
    let m = alice.send(b"x");
    bob.prekeys.remove(&1);
    assert_eq!(
        bob.receive(&m, rng).unwrap_err(),
        SignalError::MissingPreKey(1)
    );
    let pk = PreKeySignalMessage::deserialize(m.bytes()).unwrap();
    let err = decrypt_prekey(
        &mut bob.session,
        &bob.identity,
        &pk,
        PreKeys::default(),
        rng,
    )
    .unwrap_err();
    assert_eq!(err, SignalError::MissingSignedPreKey(1));
    let wrong = generate_prekeys(9, 1, rng).remove(0);
    let err = decrypt_prekey(
        &mut bob.session,
        &bob.identity,
        &pk,
        PreKeys {
            signed: Some(&bob.signed),
            one_time: Some(&wrong),
        },
        rng,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        SignalError::WrongPreKey {
            supplied: 9,
            wanted: 1,
            ..
        }
    ));
    assert!(!bob.session.has_current_session());
}

#[test]
fn records_refuse_garbage_and_unknown_versions() {
    assert!(SessionRecord::deserialize(&[0xFF; 5]).is_err());
    assert!(SessionRecord::deserialize(&[]).is_err(), "no version field");
    let rng = &mut rng();
    let (alice, _) = pair(rng, None);
    let mut bytes = alice.session.serialize();
    // Append `version = 2` (field 15, varint): the last value wins in protobuf.
    bytes.extend_from_slice(&[0x78, 0x02]);
    let err = SessionRecord::deserialize(&bytes).unwrap_err();
    assert!(err.to_string().contains("version"), "{err}");
}

#[test]
fn debug_output_has_no_key_material() {
    let rng = &mut rng();
    let (alice, _) = pair(rng, Some(2));
    let text = format!("{:?}", alice.session);
    assert!(text.contains("redacted"));
    assert!(!text.contains(&hex::encode(alice.identity.key_pair.private.to_bytes())));
}

#[test]
fn reused_base_key_with_a_swapped_identity_key_is_refused() {
    let rng = &mut rng();
    let (mut alice, mut bob) = pair(rng, Some(2));
    let m1 = alice.send(b"first");
    let m2 = alice.send(b"second");
    assert_eq!(bob.receive(&m1, rng).unwrap(), b"first");

    // m2 reuses m1's base key; swap its outer (un-MACed) identityKey (field 3) for
    // Mallory's identity.
    let mallory = LocalIdentity::generate(rng);
    let mut field = vec![0x1A, 0x21];
    field.extend_from_slice(&alice.identity.key_pair.public.serialize());
    let mut forged = m2.bytes().to_vec();
    let at = forged
        .windows(field.len())
        .position(|w| w == field.as_slice())
        .expect("identity key field in the pkmsg");
    forged[at + 2..at + field.len()].copy_from_slice(&mallory.key_pair.public.serialize());
    let pkmsg = PreKeySignalMessage::deserialize(&forged).unwrap();
    assert_eq!(*pkmsg.identity_key(), mallory.key_pair.public);
    let before = bob.session.serialize();
    let err = decrypt_prekey(
        &mut bob.session,
        &bob.identity,
        &pkmsg,
        PreKeys {
            signed: None,
            one_time: None,
        },
        rng,
    )
    .unwrap_err();
    assert_eq!(err, SignalError::PreKeyIdentityMismatch);
    assert_eq!(bob.session.serialize(), before, "record unchanged");
    // The genuine message still decrypts.
    assert_eq!(bob.receive(&m2, rng).unwrap(), b"second");
}
