//! The seeds of the `noise_server_hello` and `noise_frames` fuzz targets are real outputs:
//! a simulator responder answering the fuzz target's fixed client, chains from the
//! simulator's CA, frames from the peer transport. This test regenerates them
//! deterministically, checks each is accepted or refused as its name says, and checks
//! the committed files under `fuzz/corpus/` are exactly these bytes.
//! Rewrite them with `WAEVENT_WRITE_FUZZ_SEEDS=1 cargo test --test noise_fuzz_seeds`.

#![cfg(feature = "sim")]

use std::path::Path;

use prost::Message;
use rand::SeedableRng;
use rand::rngs::StdRng;
use waevent::noise::fuzz_support::{
    self, NOW, frames, frames_peer_transport, root, server_hello, server_static,
};
use waevent::noise::{ClientHandshake, FrameDecoder};
use waevent::proto::wa6::HandshakeMessage;
use waevent::sim::certs::{ChainDefect, SimCertAuthority, Validity};
use waevent::sim::handshake::accept_client_hello;

/// (file name, bytes, expected verdict of the target's checks)
type Seed = (&'static str, Vec<u8>, (bool, bool));

fn server_hello_seeds() -> Vec<Seed> {
    let mut rng = StdRng::seed_from_u64(0xF0CC);
    let ca = SimCertAuthority::from_root(root(), &mut rng);
    let key = server_static();
    let validity = Validity::days_around(NOW, 30);
    let (_, first): (ClientHandshake, Vec<u8>) = fuzz_support::client();
    let hello = &first[7..];
    let answer = |chain: Vec<u8>, rng: &mut StdRng| {
        let (_, frame) = accept_client_hello(hello, &key, &chain, rng).unwrap();
        frame[3..].to_vec()
    };
    let chain = ca.chain_bytes(&key.public, validity, &mut rng);
    let valid = answer(chain.clone(), &mut rng);
    let expired = ca
        .broken_chain(ChainDefect::ExpiredLeaf, &key.public, validity, &mut rng)
        .encode_to_vec();
    let wrong_key = ca
        .broken_chain(
            ChainDefect::LeafKeyMismatch,
            &key.public,
            validity,
            &mut rng,
        )
        .encode_to_vec();
    let bad_leaf_sig = ca
        .broken_chain(
            ChainDefect::CorruptLeafSignature,
            &key.public,
            validity,
            &mut rng,
        )
        .encode_to_vec();
    let wrong_root = ca
        .broken_chain(ChainDefect::WrongRoot, &key.public, validity, &mut rng)
        .encode_to_vec();
    let hello_expired = answer(expired.clone(), &mut rng);
    let hello_wrong_root = answer(wrong_root.clone(), &mut rng);
    let mut tampered = HandshakeMessage::decode(valid.as_slice()).unwrap();
    tampered
        .server_hello
        .as_mut()
        .unwrap()
        .r#static
        .as_mut()
        .unwrap()[0] ^= 1;
    vec![
        ("valid_server_hello", valid.clone(), (true, false)),
        ("server_hello_expired_leaf", hello_expired, (false, false)),
        ("server_hello_wrong_root", hello_wrong_root, (false, false)),
        (
            "server_hello_tampered_static",
            tampered.encode_to_vec(),
            (false, false),
        ),
        (
            "server_hello_truncated",
            valid[..valid.len() / 2].to_vec(),
            (false, false),
        ),
        ("valid_cert_chain", chain, (false, true)),
        ("cert_chain_expired_leaf", expired, (false, false)),
        ("cert_chain_leaf_key_mismatch", wrong_key, (false, false)),
        (
            "cert_chain_bad_leaf_signature",
            bad_leaf_sig,
            (false, false),
        ),
        ("cert_chain_wrong_root", wrong_root, (false, false)),
        ("empty", vec![], (false, false)),
    ]
}

fn frame_seeds() -> Vec<(&'static str, Vec<u8>, usize)> {
    let mut peer = frames_peer_transport();
    let mut stream = Vec::new();
    for plaintext in [&b"\x00<success t='1'/>"[..], &[0x02; 300], b""] {
        stream.extend(peer.encrypt_frame(plaintext).unwrap());
    }
    let with_chunk = |size: u8, s: &[u8]| [&[size][..], s].concat();
    let mut tampered = stream.clone();
    tampered[10] ^= 0x20;
    vec![
        ("valid_frames_chunk1", with_chunk(0, &stream), 3),
        ("valid_frames_chunk7", with_chunk(6, &stream), 3),
        ("valid_frames_chunk256", with_chunk(255, &stream), 3),
        ("tampered_first_frame", with_chunk(16, &tampered), 0),
        (
            "truncated_stream",
            with_chunk(3, &stream[..stream.len() - 5]),
            2,
        ),
        (
            "oversize_prefix",
            with_chunk(9, &[0xFF, 0xFF, 0xFF, 1, 2, 3]),
            0,
        ),
        ("short_frame", with_chunk(9, &[0, 0, 4, 1, 2, 3, 4]), 0),
    ]
}

fn sync(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let path = dir.join(name);
    if std::env::var_os("WAEVENT_WRITE_FUZZ_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }
    let committed = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (regenerate the seeds)", path.display()));
    assert_eq!(
        committed,
        bytes,
        "{} is stale (regenerate the seeds)",
        path.display()
    );
}

#[test]
fn server_hello_seeds_are_real_and_committed() {
    for (name, bytes, expected) in server_hello_seeds() {
        assert_eq!(server_hello(&bytes), expected, "{name}");
        sync("noise_server_hello", name, &bytes);
    }
}

#[test]
fn frame_seeds_are_real_and_committed() {
    for (name, bytes, opened) in frame_seeds() {
        assert_eq!(frames(&bytes), opened, "{name}");
        sync("noise_frames", name, &bytes);
    }
    // The decoder in the target refuses what it must.
    let mut d = FrameDecoder::with_max_frame_len(fuzz_support::FRAMES_MAX_LEN);
    assert!(d.push(&[0xFF, 0xFF, 0xFF]).is_err());
}
