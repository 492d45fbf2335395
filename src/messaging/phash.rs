//! The participant-list hash `phash` (PROTOCOL.md §10.6), as WhatsApp Web (`phashV2`),
//! whatsmeow (`participantListHashV2`) and whatsapp-rust (`participant_list_hash`)
//! compute it: the ADString `user.0:device@server` of every device, sorted byte-wise,
//! concatenated without separator, SHA-256, the first 6 bytes in standard base64
//! without padding, prefixed with `2:`.
//!
//! For a group send the set is every participant device (hosted devices dropped) plus
//! the sending device, in the group's addressing. Baileys computes a different value
//! (plain JID strings, padded base64 of the whole hash cut to 6 characters) that cannot
//! match; we do not follow it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use sha2::{Digest, Sha256};

use crate::jid::Jid;

/// The version prefix of the hash.
pub const PHASH_PREFIX: &str = "2:";

/// The phash of a set of device JIDs (any order; duplicates count twice, as in WA Web).
pub fn participant_hash<'a>(devices: impl IntoIterator<Item = &'a Jid>) -> String {
    let mut strings: Vec<String> = devices.into_iter().map(Jid::ad_string).collect();
    strings.sort_unstable();
    participant_hash_of_sorted(&strings)
}

/// The phash of ADStrings that are already sorted byte-wise (see [`Jid::ad_string`]).
/// The caller guarantees the order; an unsorted slice gives a different hash.
pub fn participant_hash_of_sorted<S: AsRef<str>>(sorted_ad_strings: &[S]) -> String {
    let mut hasher = Sha256::new();
    for s in sorted_ad_strings {
        hasher.update(s.as_ref().as_bytes());
    }
    let digest = hasher.finalize();
    let mut out = String::with_capacity(PHASH_PREFIX.len() + 8);
    out.push_str(PHASH_PREFIX);
    // The digest is always 32 bytes; `get` keeps this free of indexing panics.
    STANDARD_NO_PAD.encode_string(digest.get(..6).unwrap_or_default(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn jid(s: &str) -> Jid {
        s.parse().unwrap()
    }

    #[test]
    fn whatsapp_rust_vectors() {
        // oxidezap/whatsapp-rust wacore/src/messages.rs tests (values, not code).
        assert_eq!(
            participant_hash([&jid("5511999999999:3@s.whatsapp.net")]),
            "2:5s+YxCff"
        );
        assert_eq!(
            participant_hash([&jid("5511999999999@s.whatsapp.net")]),
            "2:RJWVxcMQ"
        );
        let a = jid("5511988887777:14@s.whatsapp.net");
        let b = jid("7469250125917:21@s.whatsapp.net");
        assert_eq!(participant_hash([&a, &b]), "2:AAv/hwhn");
        assert_eq!(participant_hash([&b, &a]), "2:AAv/hwhn");
    }

    #[test]
    fn agent_is_written_as_zero_and_lid_server_is_kept() {
        let lid = jid("123456789012345:2@lid");
        assert_eq!(lid.ad_string(), "123456789012345.0:2@lid");
        assert_ne!(
            participant_hash([&lid]),
            participant_hash([&jid("123456789012345:2@s.whatsapp.net")])
        );
        assert_eq!(participant_hash(std::iter::empty()).len(), 10);
    }

    proptest! {
        #[test]
        fn order_does_not_matter(users in proptest::collection::vec((1u64..1_000_000_000_000, 0u16..100), 1..20)) {
            let jids: Vec<Jid> = users
                .iter()
                .map(|(u, d)| Jid::new_ad(u.to_string(), *d, "s.whatsapp.net"))
                .collect();
            let forward = participant_hash(jids.iter());
            let backward = participant_hash(jids.iter().rev());
            prop_assert_eq!(&forward, &backward);
            prop_assert!(forward.starts_with("2:"));
            prop_assert_eq!(forward.len(), 10);
            prop_assert!(!forward.contains('='));
        }
    }
}
