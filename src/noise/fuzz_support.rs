//! Fixed keys and entry points behind the `noise_server_hello` and `noise_frames` fuzz
//! targets (see `src/fuzz_targets.rs`). Everything is deterministic so that seeds minted
//! by a real responder for this exact client (tests/noise_fuzz_seeds.rs) get past the
//! AEAD checks and exercise the certificate verifier and the transport.

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::cert::{TrustRoot, verify_cert_chain};
use super::framing::FrameDecoder;
use super::handshake::ClientHandshake;
use super::transport::Transport;
use crate::signal::curve::{KeyPair, PrivateKey};

/// Unix time the fuzzed handshakes verify certificates at.
pub const NOW: u64 = 1_780_000_000;
/// Seed of the RNG that draws the fuzzed client's ephemeral key.
pub const CLIENT_RNG_SEED: u64 = 0x5EED_0001;
/// Private key bytes of the fuzzed client's static Noise key.
pub const CLIENT_STATIC: [u8; 32] = [0x11; 32];
/// Private key bytes of the root the fuzzed client trusts.
pub const ROOT_PRIVATE: [u8; 32] = [0x22; 32];
/// Private key bytes of the server static key seeds are minted for.
pub const SERVER_STATIC: [u8; 32] = [0x33; 32];
/// Key the fuzzed transport reads with (seed frames are encrypted with it).
pub const FRAMES_READ_KEY: [u8; 32] = [0x44; 32];
/// Key the fuzzed transport writes with.
pub const FRAMES_WRITE_KEY: [u8; 32] = [0x55; 32];
/// Largest frame the fuzzed decoder accepts (keeps runs fast).
pub const FRAMES_MAX_LEN: usize = 1 << 16;

fn key_pair(private: [u8; 32]) -> KeyPair {
    match PrivateKey::from_bytes(&private) {
        Ok(k) => KeyPair::from_private(k),
        Err(_) => unreachable!("32-byte private key"),
    }
}

/// The fuzzed client's static key pair.
pub fn client_static() -> KeyPair {
    key_pair(CLIENT_STATIC)
}

/// The root key pair whose public half the fuzzed client trusts.
pub fn root() -> KeyPair {
    key_pair(ROOT_PRIVATE)
}

/// The server static key pair seeds are minted for.
pub fn server_static() -> KeyPair {
    key_pair(SERVER_STATIC)
}

/// The fuzzed client right after `start` (always the same ephemeral key), with its first
/// bytes (header + ClientHello frame).
pub fn client() -> (ClientHandshake, Vec<u8>) {
    let mut rng = StdRng::seed_from_u64(CLIENT_RNG_SEED);
    ClientHandshake::start(&client_static(), TrustRoot::new(root().public), &mut rng)
}

/// Feeds `data` as the ServerHello payload to a fresh fuzzed client and as a certificate
/// chain to the verifier. Returns (handshake accepted, chain accepted).
pub fn server_hello(data: &[u8]) -> (bool, bool) {
    let (hs, _) = client();
    let handshake_ok = match hs.process_server_hello(data, NOW) {
        Ok(verified) => verified.finish(b"fuzz").is_ok(),
        Err(_) => false,
    };
    let root = TrustRoot::new(root().public);
    let chain_ok = verify_cert_chain(data, &server_static().public, NOW, &root).is_ok();
    (handshake_ok, chain_ok)
}

/// The transport the frames target decrypts with.
pub fn frames_transport() -> Transport {
    Transport::from_keys(&FRAMES_WRITE_KEY, &FRAMES_READ_KEY)
}

/// The first byte of `data` picks the chunk size (1–256); the rest is cut into chunks,
/// fed to a frame decoder, and each frame decrypted. Returns how many frames decrypted.
pub fn frames(data: &[u8]) -> usize {
    let Some((&size, stream)) = data.split_first() else {
        return 0;
    };
    let mut decoder = FrameDecoder::with_max_frame_len(FRAMES_MAX_LEN);
    let mut transport = frames_transport();
    let mut opened = 0;
    for chunk in stream.chunks(usize::from(size) + 1) {
        let Ok(frames) = decoder.push(chunk) else {
            return opened;
        };
        for frame in frames {
            if transport.decrypt_frame(&frame).is_ok() {
                opened += 1;
            }
        }
    }
    opened
}

/// The peer of [`frames_transport`]: what encrypts the seed frames.
pub fn frames_peer_transport() -> Transport {
    Transport::from_keys(&FRAMES_READ_KEY, &FRAMES_WRITE_KEY)
}
