//! Sender keys between in-process parties: SKDM create/process, a chain of 2,500
//! messages delivered with gaps and out of order, duplicates, forward-jump and
//! skipped-key limits, forged signatures, several states per record, and rotation.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use waevent::signal::group::{
    self, MAX_SENDER_KEY_STATES, create_distribution_message, create_sender_key,
    process_distribution_message,
};
use waevent::signal::{
    KeyPair, SenderKeyDistributionMessage, SenderKeyMessage, SenderKeyRecord, SignalError,
};

fn rng() -> StdRng {
    StdRng::seed_from_u64(0x6752_4F55)
}

/// Our record, and a member's record after processing our SKDM (sent over the wire).
fn setup(rng: &mut StdRng) -> (SenderKeyRecord, SenderKeyRecord) {
    let mut ours = SenderKeyRecord::new();
    let (skdm, created) = create_distribution_message(&mut ours, rng).unwrap();
    assert!(created);
    let (again, created_again) = create_distribution_message(&mut ours, rng).unwrap();
    assert!(!created_again);
    assert_eq!(again.serialize(), skdm.serialize());
    let wire = skdm.serialize();
    let mut theirs = SenderKeyRecord::new();
    process_distribution_message(
        &mut theirs,
        &SenderKeyDistributionMessage::deserialize(&wire).unwrap(),
    );
    (ours, theirs)
}

#[test]
fn chain_of_2500_with_gaps_and_reordering() {
    let rng = &mut rng();
    let (mut ours, mut theirs) = setup(rng);
    let msgs: Vec<Vec<u8>> = (0..2500u32)
        .map(|i| group::encrypt(&mut ours, format!("event {i}").as_bytes(), rng).unwrap())
        .collect();
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(
            SenderKeyMessage::deserialize(m).unwrap().iteration(),
            i as u32
        );
    }
    // First pass: deliver everything except every 7th message and a block of 300.
    let held: Vec<usize> = (0..2500)
        .filter(|i| i % 7 == 3 || (1200..1500).contains(i))
        .collect();
    for (i, m) in msgs.iter().enumerate() {
        if !held.contains(&i) {
            assert_eq!(
                group::decrypt(&mut theirs, m).unwrap(),
                format!("event {i}").as_bytes()
            );
        }
    }
    // Persist, then deliver the held messages in random order.
    theirs = SenderKeyRecord::deserialize(&theirs.serialize()).unwrap();
    let mut late = held.clone();
    late.shuffle(rng);
    for i in late {
        assert_eq!(
            group::decrypt(&mut theirs, &msgs[i]).unwrap(),
            format!("event {i}").as_bytes()
        );
    }
    // Everything again: duplicates only.
    let before = theirs.serialize();
    for m in msgs.iter().step_by(97) {
        assert!(matches!(
            group::decrypt(&mut theirs, m),
            Err(SignalError::DuplicateMessage { .. })
        ));
    }
    assert_eq!(theirs.serialize(), before);
}

#[test]
fn forward_jump_and_skipped_key_limits() {
    let rng = &mut rng();
    let (mut ours, mut theirs) = setup(rng);
    let msgs: Vec<Vec<u8>> = (0..4003u32)
        .map(|i| group::encrypt(&mut ours, &i.to_be_bytes(), rng).unwrap())
        .collect();
    let err = group::decrypt(&mut theirs.clone(), &msgs[2001]).unwrap_err();
    assert_eq!(
        err,
        SignalError::TooFarInFuture {
            counter: 2001,
            chain_index: 0,
            limit: 2000
        }
    );
    assert_eq!(
        group::decrypt(&mut theirs, &msgs[2000]).unwrap(),
        2000u32.to_be_bytes()
    );
    assert_eq!(
        group::decrypt(&mut theirs, &msgs[4001]).unwrap(),
        4001u32.to_be_bytes()
    );
    // 0..=2000 were pushed out by the 2000 newer skipped keys.
    assert!(matches!(
        group::decrypt(&mut theirs, &msgs[0]),
        Err(SignalError::DuplicateMessage { .. })
    ));
    assert_eq!(
        group::decrypt(&mut theirs, &msgs[2001]).unwrap(),
        2001u32.to_be_bytes()
    );
    assert_eq!(
        group::decrypt(&mut theirs, &msgs[4000]).unwrap(),
        4000u32.to_be_bytes()
    );
}

#[test]
fn forged_or_unknown_messages_change_nothing() {
    let rng = &mut rng();
    let (mut ours, mut theirs) = setup(rng);
    let good = group::encrypt(&mut ours, b"the card", rng).unwrap();
    let before = theirs.serialize();
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x04;
        assert!(
            group::decrypt(&mut theirs, &bad).is_err(),
            "flipped byte {i} accepted"
        );
    }
    for len in 0..good.len() {
        assert!(group::decrypt(&mut theirs, &good[..len]).is_err());
    }
    assert_eq!(theirs.serialize(), before);

    // The same body re-signed by someone else's key: bad signature.
    let body = &good[..good.len() - 64];
    let mut resigned = body.to_vec();
    resigned.extend_from_slice(&KeyPair::generate(rng).sign(rng, body));
    assert_eq!(
        group::decrypt(&mut theirs, &resigned).unwrap_err(),
        SignalError::BadSignature
    );

    // A sender key we never received: unknown key id.
    let mut impostor = SenderKeyRecord::new();
    create_distribution_message(&mut impostor, rng).unwrap();
    let forged = group::encrypt(&mut impostor, b"forged", rng).unwrap();
    let err = group::decrypt(&mut theirs, &forged).unwrap_err();
    assert!(matches!(err, SignalError::NoSenderKeyState(_)), "{err}");
    assert_eq!(
        group::decrypt(&mut SenderKeyRecord::new(), &good).unwrap_err(),
        SignalError::NoSenderKey
    );
    assert_eq!(group::decrypt(&mut theirs, &good).unwrap(), b"the card");

    // A receiver's record cannot encrypt.
    assert_eq!(
        group::encrypt(&mut theirs, b"x", rng).unwrap_err(),
        SignalError::NotOwnSenderKey
    );
}

#[test]
fn replayed_skdm_does_not_rewind_and_states_are_capped() {
    let rng = &mut rng();
    let mut ours = SenderKeyRecord::new();
    let (skdm, _) = create_distribution_message(&mut ours, rng).unwrap();
    let mut theirs = SenderKeyRecord::new();
    process_distribution_message(&mut theirs, &skdm);
    let m0 = group::encrypt(&mut ours, b"0", rng).unwrap();
    group::decrypt(&mut theirs, &m0).unwrap();
    // The same SKDM again (a retry) must not make m0 decryptable a second time.
    process_distribution_message(&mut theirs, &skdm);
    assert!(matches!(
        group::decrypt(&mut theirs, &m0),
        Err(SignalError::DuplicateMessage { .. })
    ));

    // Rotation: a new key id; the old state stays available for late messages.
    let late_old = group::encrypt(&mut ours, b"late", rng).unwrap();
    let mut rotated = SenderKeyRecord::new();
    create_sender_key(&mut rotated, rng);
    let (skdm2, _) = create_distribution_message(&mut rotated, rng).unwrap();
    assert_ne!(skdm2.key_id(), skdm.key_id());
    process_distribution_message(&mut theirs, &skdm2);
    let new_msg = group::encrypt(&mut rotated, b"new", rng).unwrap();
    assert_eq!(group::decrypt(&mut theirs, &new_msg).unwrap(), b"new");
    assert_eq!(group::decrypt(&mut theirs, &late_old).unwrap(), b"late");

    for _ in 0..(MAX_SENDER_KEY_STATES + 3) {
        let mut r = SenderKeyRecord::new();
        let (d, _) = create_distribution_message(&mut r, rng).unwrap();
        process_distribution_message(&mut theirs, &d);
    }
    assert_eq!(theirs.states().count(), MAX_SENDER_KEY_STATES);
    assert!(
        theirs.state(skdm.key_id()).is_none(),
        "oldest state dropped"
    );
    let reloaded = SenderKeyRecord::deserialize(&theirs.serialize()).unwrap();
    assert_eq!(reloaded.serialize(), theirs.serialize());
}

#[test]
fn skdm_mid_chain_reads_only_newer_messages() {
    let rng = &mut rng();
    let mut ours = SenderKeyRecord::new();
    create_distribution_message(&mut ours, rng).unwrap();
    let early = group::encrypt(&mut ours, b"before you joined", rng).unwrap();
    let (skdm, _) = create_distribution_message(&mut ours, rng).unwrap();
    assert_eq!(skdm.iteration(), 1);
    let mut theirs = SenderKeyRecord::new();
    process_distribution_message(&mut theirs, &skdm);
    assert!(matches!(
        group::decrypt(&mut theirs, &early),
        Err(SignalError::DuplicateMessage { .. })
    ));
    let later = group::encrypt(&mut ours, b"after", rng).unwrap();
    assert_eq!(group::decrypt(&mut theirs, &later).unwrap(), b"after");
}

#[test]
fn records_refuse_garbage_and_debug_is_redacted() {
    assert!(SenderKeyRecord::deserialize(&[0x0A, 0xFF]).is_err());
    assert!(SenderKeyRecord::deserialize(&[]).is_err());
    let rng = &mut rng();
    let (ours, _) = setup(rng);
    let text = format!("{ours:?}");
    assert!(
        text.contains("redacted") && text.contains("own: true"),
        "{text}"
    );
}

#[test]
fn own_record_without_cached_edwards_key_still_signs() {
    use prost::Message;
    use waevent::proto::records::SenderKeyRecordStructure;
    let rng = &mut rng();
    let (mut ours, mut theirs) = setup(rng);
    // Strip the waevent-only field, as a record written by another tool would be.
    let mut pb = SenderKeyRecordStructure::decode(ours.serialize().as_slice()).unwrap();
    let signing = pb.sender_key_states[0].sender_signing_key.as_mut().unwrap();
    assert_eq!(signing.edwards_public.take().map(|a| a.len()), Some(32));
    let mut stripped = SenderKeyRecord::deserialize(&pb.encode_to_vec()).unwrap();
    let m = group::encrypt(&mut stripped, b"still signs", rng).unwrap();
    assert_eq!(group::decrypt(&mut theirs, &m).unwrap(), b"still signs");
    // Mismatched halves are refused when they have to be checked.
    let other = KeyPair::generate(rng);
    let signing = pb.sender_key_states[0].sender_signing_key.as_mut().unwrap();
    signing.private = Some(other.private.to_bytes().to_vec());
    assert!(SenderKeyRecord::deserialize(&pb.encode_to_vec()).is_err());
    let _ = group::encrypt(&mut ours, b"x", rng).unwrap();
}
