//! The symmetric primitives under the ratchets: HMAC-SHA256, HKDF-SHA256 (RFC 5869) and
//! AES-256-CBC with PKCS#7, written for the hot path: HMAC states are keyed once and
//! cloned, the HKDF extract with the all-zero salt starts from a pre-keyed state, and
//! encryption writes straight into the caller's output buffer.

use std::sync::LazyLock;

use aes::Aes256;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit, KeyIvInit};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

/// HMAC-SHA256.
pub(crate) type HmacSha256 = Hmac<Sha256>;

/// AES block size.
pub(crate) const AES_BLOCK: usize = 16;

/// HMAC-SHA256 keyed with a key of at most 64 bytes.
///
/// HMAC pads short keys with zeros to the 64-byte block, so keying with the padded
/// block is the same function; it is infallible, unlike `new_from_slice`.
pub(crate) fn hmac_keyed(key: &[u8]) -> HmacSha256 {
    debug_assert!(key.len() <= 64);
    let mut block = [0u8; 64];
    let n = key.len().min(64);
    block[..n].copy_from_slice(&key[..n]);
    let mac = <HmacSha256 as KeyInit>::new(&block.into());
    block.zeroize();
    mac
}

/// HMAC-SHA256 keyed with 32 zero bytes: HKDF's extract step when no salt is given.
static ZERO_SALT: LazyLock<HmacSha256> = LazyLock::new(|| hmac_keyed(&[0u8; 32]));

/// HKDF-SHA256 expand from an HMAC state keyed with the PRK; fills `out` (≤ 255 blocks).
fn expand(prk: &HmacSha256, info: &[u8], out: &mut [u8]) {
    debug_assert!(out.len() <= 255 * 32);
    let mut prev = [0u8; 32];
    for (i, chunk) in out.chunks_mut(32).enumerate() {
        let mut m = prk.clone();
        if i > 0 {
            m.update(&prev);
        }
        m.update(info);
        m.update(&[(i + 1) as u8]);
        prev.copy_from_slice(&m.finalize().into_bytes());
        chunk.copy_from_slice(&prev[..chunk.len()]);
    }
    prev.zeroize();
}

/// HKDF-SHA256 with the given salt (`None` = 32 zero bytes, as libsignal).
pub(crate) fn hkdf(salt: Option<&[u8; 32]>, ikm: &[u8], info: &[u8], out: &mut [u8]) {
    let mut extract = match salt {
        Some(s) => hmac_keyed(s),
        None => ZERO_SALT.clone(),
    };
    extract.update(ikm);
    let mut prk: [u8; 32] = extract.finalize().into_bytes().into();
    expand(&hmac_keyed(&prk), info, out);
    prk.zeroize();
}

/// Length of the AES-CBC/PKCS#7 ciphertext of `plaintext_len` bytes.
pub(crate) fn cbc_ciphertext_len(plaintext_len: usize) -> usize {
    (plaintext_len / AES_BLOCK + 1) * AES_BLOCK
}

/// AES-256-CBC/PKCS#7 encryption of `plaintext`, appended to `out`.
pub(crate) fn aes_cbc_encrypt_into(
    key: &[u8; 32],
    iv: &[u8; 16],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) {
    let start = out.len();
    let ct_len = cbc_ciphertext_len(plaintext.len());
    out.resize(start + ct_len, 0);
    let enc = cbc::Encryptor::<Aes256>::new(key.into(), iv.into());
    // The buffer is exactly the padded length, so padding cannot fail.
    let written = enc
        .encrypt_padded_b2b_mut::<Pkcs7>(plaintext, &mut out[start..])
        .map(|c| c.len())
        .unwrap_or(0);
    debug_assert_eq!(written, ct_len);
    out.truncate(start + written);
}

/// AES-256-CBC/PKCS#7 decryption. Refuses an empty ciphertext, a length that is not a
/// multiple of 16, and bad padding (as one error, to give no padding oracle detail).
pub(crate) fn aes_cbc_decrypt(
    key: &[u8; 32],
    iv: &[u8; 16],
    ciphertext: &[u8],
) -> Result<Vec<u8>, &'static str> {
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(AES_BLOCK) {
        return Err("length is not a non-zero multiple of 16");
    }
    let dec = cbc::Decryptor::<Aes256>::new(key.into(), iv.into());
    dec.decrypt_padded_vec_mut::<Pkcs7>(ciphertext)
        .map_err(|_| "bad PKCS#7 padding")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hkdf_matches_rfc5869_and_the_hkdf_crate() {
        // RFC 5869 test case 3 (no salt, no info).
        let ikm = [0x0b; 22];
        let mut okm = [0u8; 42];
        hkdf(None, &ikm, &[], &mut okm);
        assert_eq!(
            hex::encode(okm),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
        );
        // Salt path agrees with the hkdf crate.
        let salt = [7u8; 32];
        let mut ours = [0u8; 80];
        hkdf(Some(&salt), b"input", b"WhisperMessageKeys", &mut ours);
        let mut theirs = [0u8; 80];
        hkdf::Hkdf::<Sha256>::new(Some(&salt), b"input")
            .expand(b"WhisperMessageKeys", &mut theirs)
            .unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn hmac_keyed_equals_new_from_slice() {
        let key = [3u8; 32];
        let a = hmac_keyed(&key).chain_update(b"x").finalize().into_bytes();
        let b = <HmacSha256 as Mac>::new_from_slice(&key)
            .unwrap()
            .chain_update(b"x")
            .finalize()
            .into_bytes();
        assert_eq!(a, b);
    }

    #[test]
    fn cbc_round_trip_and_refusals() {
        let key = [1u8; 32];
        let iv = [2u8; 16];
        for len in [0usize, 1, 15, 16, 17, 150] {
            let pt = vec![0x42; len];
            let mut ct = vec![0xEE];
            aes_cbc_encrypt_into(&key, &iv, &pt, &mut ct);
            assert_eq!(ct.len(), 1 + cbc_ciphertext_len(len));
            assert_eq!(aes_cbc_decrypt(&key, &iv, &ct[1..]).unwrap(), pt);
        }
        assert!(aes_cbc_decrypt(&key, &iv, &[]).is_err());
        assert!(aes_cbc_decrypt(&key, &iv, &[0; 15]).is_err());
    }
}
