//! WhatsApp-style message ids, as WhatsApp Web, whatsmeow (`GenerateMessageID`) and
//! Baileys (`generateMessageIDV2`) make them: `3EB0` followed by the first 9 bytes, in
//! upper-case hex, of `SHA-256(unix seconds as u64 big-endian ‖ own PN user ‖ "@c.us" ‖
//! 16 random bytes)`. Without a known own user the user part is left out (as both
//! anchors do before pairing). The clock and the random number generator are passed
//! in, so ids are reproducible in tests.

use rand_core::RngCore;
use sha2::{Digest, Sha256};

use crate::jid::Jid;

/// Every generated id starts with this.
pub const MESSAGE_ID_PREFIX: &str = "3EB0";

/// Length of a generated id (`3EB0` + 18 hex digits).
pub const MESSAGE_ID_LEN: usize = 22;

/// A fresh message id for a message sent at `unix_secs` by the account whose phone
/// number JID is `own_pn` (only its user part is used; a LID or `None` leaves the user
/// part out, as the anchors do when they do not know their phone number).
pub fn generate_message_id<R: RngCore + ?Sized>(
    unix_secs: i64,
    own_pn: Option<&Jid>,
    rng: &mut R,
) -> String {
    let mut random = [0u8; 16];
    rng.fill_bytes(&mut random);
    message_id_from_parts(unix_secs, own_pn, &random)
}

/// The id for given random bytes (the deterministic core of [`generate_message_id`]).
pub fn message_id_from_parts(unix_secs: i64, own_pn: Option<&Jid>, random: &[u8; 16]) -> String {
    let mut hasher = Sha256::new();
    // whatsmeow writes `uint64(time.Now().Unix())`: a negative clock wraps the same way.
    hasher.update((unix_secs as u64).to_be_bytes());
    if let Some(own) = own_pn.filter(|j| j.is_pn() && !j.user.is_empty()) {
        hasher.update(own.user.as_bytes());
        hasher.update(b"@c.us");
    }
    hasher.update(random);
    let digest = hasher.finalize();
    let mut id = String::with_capacity(MESSAGE_ID_LEN);
    id.push_str(MESSAGE_ID_PREFIX);
    id.push_str(&hex::encode_upper(digest.get(..9).unwrap_or_default()));
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn shape_and_determinism() {
        let own: Jid = "5511999999999:3@s.whatsapp.net".parse().unwrap();
        let a = generate_message_id(
            1_700_000_000,
            Some(&own),
            &mut rand::rngs::StdRng::seed_from_u64(1),
        );
        let b = generate_message_id(
            1_700_000_000,
            Some(&own),
            &mut rand::rngs::StdRng::seed_from_u64(1),
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), MESSAGE_ID_LEN);
        assert!(a.starts_with("3EB0"));
        assert!(
            a[4..]
                .chars()
                .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
        );
        let c = generate_message_id(
            1_700_000_000,
            Some(&own),
            &mut rand::rngs::StdRng::seed_from_u64(2),
        );
        assert_ne!(a, c);
    }

    #[test]
    fn matches_the_definition() {
        // Recompute the definition by hand: SHA-256(BE secs ‖ "5511999999999@c.us" ‖ r).
        let random = [0xABu8; 16];
        let own = Jid::pn_user("5511999999999");
        let mut input = 1_700_000_000u64.to_be_bytes().to_vec();
        input.extend_from_slice(b"5511999999999@c.us");
        input.extend_from_slice(&random);
        let digest = Sha256::digest(&input);
        let expected = format!("3EB0{}", hex::encode_upper(&digest[..9]));
        assert_eq!(
            message_id_from_parts(1_700_000_000, Some(&own), &random),
            expected
        );
        // Device and agent parts do not matter, only the user.
        let device: Jid = "5511999999999:7@s.whatsapp.net".parse().unwrap();
        assert_eq!(
            message_id_from_parts(1_700_000_000, Some(&device), &random),
            expected
        );
        // No PN user: time and random bytes only.
        let mut input = 1_700_000_000u64.to_be_bytes().to_vec();
        input.extend_from_slice(&random);
        let expected = format!("3EB0{}", hex::encode_upper(&Sha256::digest(&input)[..9]));
        assert_eq!(
            message_id_from_parts(1_700_000_000, None, &random),
            expected
        );
        let lid = Jid::lid_user("123");
        assert_eq!(
            message_id_from_parts(1_700_000_000, Some(&lid), &random),
            expected
        );
    }
}
