//! What the `client_stanzas` fuzz target runs: every parser the client applies to
//! stanzas from the server, on one arbitrary frame payload. Fixed keys let seeds carry
//! a pair-success that passes the ADV checks, so the fuzzer starts deep inside them.

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::pair_code::{parse_companion_hello_response, parse_primary_hello};
use super::pairing::{parse_pair_device, parse_pair_success, process_device_identity};
use super::prekeys::parse_count;
use super::stanza::{ConnectFailure, StreamError, ack_for, iq_error_of, parse_success};
use crate::binary::unmarshal;
use crate::signal::curve::{KeyPair, PrivateKey};

/// The ADV secret the fuzz target checks pair-success HMACs with.
pub const ADV_SECRET: [u8; 32] = [0x33; 32];
/// The private key of the identity the fuzz target pairs as.
pub const IDENTITY_PRIVATE: [u8; 32] = [0x44; 32];

/// The identity key pair the fuzz target pairs as.
pub fn identity() -> KeyPair {
    // 32 bytes are always a valid (clamped) private key.
    KeyPair::from_private(
        PrivateKey::from_bytes(&IDENTITY_PRIVATE)
            .unwrap_or_else(|_| PrivateKey::generate(&mut StdRng::seed_from_u64(0))),
    )
}

/// Decodes `data` as a frame payload and runs every client-side parser on the node.
/// Returns how many parsers accepted it (for seed tests).
pub fn stanzas(data: &[u8]) -> usize {
    let Ok(node) = unmarshal(data) else {
        return 0;
    };
    let mut accepted = 0;
    let _ = parse_success(&node);
    let _ = ConnectFailure::parse(&node).to_string();
    let _ = StreamError::classify(&node).to_string();
    let _ = iq_error_of(&node);
    let _ = ack_for(&node, None, Some(500));
    accepted += usize::from(parse_pair_device(&node).is_ok());
    accepted += usize::from(parse_count(&node).is_ok());
    accepted += usize::from(parse_primary_hello(&node).is_ok());
    accepted += usize::from(parse_companion_hello_response(&node).is_ok());
    if let Ok(info) = parse_pair_success(&node) {
        accepted += 1;
        let mut rng = StdRng::seed_from_u64(1);
        if process_device_identity(&info.device_identity, &ADV_SECRET, &identity(), &mut rng)
            .is_ok()
        {
            accepted += 1;
        }
    }
    accepted
}
