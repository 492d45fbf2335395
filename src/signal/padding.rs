//! WhatsApp's plaintext padding (PROTOCOL.md §9), applied to the serialized `Message`
//! before pairwise and sender-key encryption of `enc v="2"` payloads and removed after
//! decryption. It is separate from the PKCS#7 padding inside AES-CBC.
//!
//! `pad` appends `p` bytes each equal to `p`, with `p` uniformly random in `1..=16`
//! (as WhatsApp Web and Baileys do). `unpad` checks that every padding byte equals the
//! last one, so a corrupted tail is an error rather than silently truncated content.

use rand_core::RngCore;

/// Largest padding length WhatsApp writes.
pub const MAX_PADDING: u8 = 16;

/// Why a decrypted plaintext does not carry valid WhatsApp padding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaddingError {
    /// The plaintext is empty: there is not even a padding length byte.
    #[error("padded plaintext is empty")]
    Empty,
    /// The last byte is 0, which no padder writes.
    #[error("padding length is 0")]
    ZeroLength,
    /// The padding length is larger than the plaintext.
    #[error("padding length {pad} exceeds the plaintext length {len}")]
    TooLong {
        /// The padding length from the last byte.
        pad: u8,
        /// The plaintext length.
        len: usize,
    },
    /// Not every padding byte equals the padding length.
    #[error("padding bytes are inconsistent (length {pad})")]
    Inconsistent {
        /// The padding length from the last byte.
        pad: u8,
    },
}

/// Appends 1..=16 random padding bytes (each equal to the padding length).
pub fn pad<R: RngCore + ?Sized>(plaintext: &[u8], rng: &mut R) -> Vec<u8> {
    // The low four bits of a uniform u32 are uniform in 0..16.
    let n = (rng.next_u32() & 0x0F) as u8 + 1;
    pad_with(plaintext, n)
}

/// Appends exactly `n` padding bytes of value `n`. `n` must be 1..=16; other values
/// are clamped into that range (0 becomes 1, anything above 16 becomes 16).
pub fn pad_with(plaintext: &[u8], n: u8) -> Vec<u8> {
    let n = n.clamp(1, MAX_PADDING);
    let mut out = Vec::with_capacity(plaintext.len() + usize::from(n));
    out.extend_from_slice(plaintext);
    out.resize(plaintext.len() + usize::from(n), n);
    out
}

/// Removes WhatsApp padding. Accepts any length 1..=255 that fits (other clients may
/// pad differently) but refuses empty input, a zero length, a length beyond the input,
/// and padding bytes that are not all equal to the length.
pub fn unpad(padded: &[u8]) -> Result<&[u8], PaddingError> {
    let (&pad, _) = padded.split_last().ok_or(PaddingError::Empty)?;
    if pad == 0 {
        return Err(PaddingError::ZeroLength);
    }
    let content_len = padded
        .len()
        .checked_sub(usize::from(pad))
        .ok_or(PaddingError::TooLong {
            pad,
            len: padded.len(),
        })?;
    let (content, padding) = padded.split_at(content_len);
    if padding.iter().any(|&b| b != pad) {
        return Err(PaddingError::Inconsistent { pad });
    }
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::OsRng;

    #[test]
    fn pad_lengths_cover_1_to_16() {
        let mut seen = [false; 17];
        for _ in 0..2000 {
            let p = pad(b"hello", &mut OsRng);
            let n = p.len() - 5;
            assert!((1..=16).contains(&n));
            assert!(p[5..].iter().all(|&b| usize::from(b) == n));
            seen[n] = true;
        }
        assert!(seen[1..].iter().all(|&s| s), "every length 1..=16 occurs");
    }

    #[test]
    fn unpad_refuses_bad_padding() {
        assert_eq!(unpad(&[]), Err(PaddingError::Empty));
        assert_eq!(unpad(&[1, 2, 0]), Err(PaddingError::ZeroLength));
        assert_eq!(
            unpad(&[3, 3]),
            Err(PaddingError::TooLong { pad: 3, len: 2 })
        );
        assert_eq!(
            unpad(&[9, 2, 3, 3]),
            Err(PaddingError::Inconsistent { pad: 3 })
        );
        assert_eq!(unpad(&[9, 4, 3, 3, 3]).unwrap(), &[9, 4]);
        // Padding that fills the whole plaintext leaves empty content.
        assert_eq!(unpad(&[2, 2]).unwrap(), &[] as &[u8]);
        assert_eq!(pad_with(b"", 0), vec![1]);
        assert_eq!(pad_with(b"x", 200).len(), 17);
    }

    proptest! {
        #[test]
        fn pad_unpad_round_trip(data in proptest::collection::vec(any::<u8>(), 0..300), n in 1u8..=16) {
            let padded = pad_with(&data, n);
            prop_assert_eq!(unpad(&padded).unwrap(), &data[..]);
        }

        #[test]
        fn unpad_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = unpad(&data);
        }
    }
}
