//! The frame cipher after the handshake: one AES-256-GCM key per direction, each with its
//! own 32-bit frame counter (nonce = eight zero bytes ‖ counter big-endian), empty AAD.
//!
//! Any failure to open a frame is fatal: the failed frame still used up its counter value
//! (as in WhatsApp's clients), so the stream cannot continue and the incoming half refuses
//! every later frame. Counters never wrap: after 2³² frames a direction is exhausted.

use super::framing::{FrameError, length_prefix};
use super::symmetric::nonce_bytes;
use super::{AEAD_TAG_LEN, FRAME_LENGTH_PREFIX};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};

/// Errors of the frame cipher.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// A frame failed authentication: wrong key, reordered, dropped or tampered frames.
    #[error(
        "incoming frame #{counter} failed AES-GCM authentication; the connection must be closed"
    )]
    Decrypt {
        /// Counter value the frame was expected to use.
        counter: u64,
    },
    /// A frame is too short to even hold the authentication tag.
    #[error("incoming frame #{counter} is {len} bytes, shorter than the 16-byte tag")]
    TooShort {
        /// Counter value the frame was expected to use.
        counter: u64,
        /// Length of the frame payload.
        len: usize,
    },
    /// An earlier incoming frame failed; the stream cannot be resynchronised.
    #[error("incoming stream is broken by an earlier undecryptable frame")]
    Broken,
    /// All 2³² nonces of this direction are used up.
    #[error("{direction} frame counter exhausted after 2^32 frames; reconnect")]
    CounterExhausted {
        /// "outgoing" or "incoming".
        direction: &'static str,
    },
    /// The plaintext does not fit one frame once encrypted.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// AES-GCM refused to encrypt (input beyond its size limit).
    #[error("AES-GCM refused to encrypt a {len}-byte frame")]
    Encrypt {
        /// Plaintext length.
        len: usize,
    },
}

/// Which key of `Split()` a side writes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "sim"), allow(dead_code))]
pub(crate) enum Role {
    /// The client: writes with the first half, reads with the second.
    Initiator,
    /// The server: writes with the second half, reads with the first.
    Responder,
}

fn nonce_for(counter: u64, direction: &'static str) -> Result<[u8; 12], TransportError> {
    let counter =
        u32::try_from(counter).map_err(|_| TransportError::CounterExhausted { direction })?;
    Ok(nonce_bytes(counter))
}

/// The sending half: encrypts plaintexts into frames, counting from 0.
pub struct OutgoingCipher {
    cipher: Aes256Gcm,
    counter: u64,
}

impl std::fmt::Debug for OutgoingCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingCipher")
            .field("key", &"<redacted>")
            .field("counter", &self.counter)
            .finish()
    }
}

impl OutgoingCipher {
    fn new(key: &[u8; 32]) -> Self {
        OutgoingCipher {
            cipher: Aes256Gcm::new(key.into()),
            counter: 0,
        }
    }

    /// Number of frames encrypted so far (the counter the next frame will use).
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// Encrypts `plaintext` and returns the whole frame to send: 3-byte big-endian length,
    /// ciphertext, 16-byte tag. Refuses plaintexts whose frame would reach 16 MiB and
    /// refuses to reuse a nonce after 2³² frames.
    pub fn encrypt_frame(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, TransportError> {
        let ciphertext_len = plaintext.len().saturating_add(AEAD_TAG_LEN);
        let prefix = length_prefix(ciphertext_len)?;
        let nonce = nonce_for(self.counter, "outgoing")?;
        let mut frame = Vec::with_capacity(FRAME_LENGTH_PREFIX + ciphertext_len);
        frame.extend_from_slice(&prefix);
        frame.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                b"",
                &mut frame[FRAME_LENGTH_PREFIX..],
            )
            .map_err(|_| TransportError::Encrypt {
                len: plaintext.len(),
            })?;
        frame.extend_from_slice(&tag);
        self.counter += 1;
        Ok(frame)
    }
}

/// The receiving half: opens frame payloads in order, counting from 0. After one failure
/// it refuses everything.
pub struct IncomingCipher {
    cipher: Aes256Gcm,
    counter: u64,
    broken: bool,
}

impl std::fmt::Debug for IncomingCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingCipher")
            .field("key", &"<redacted>")
            .field("counter", &self.counter)
            .field("broken", &self.broken)
            .finish()
    }
}

impl IncomingCipher {
    fn new(key: &[u8; 32]) -> Self {
        IncomingCipher {
            cipher: Aes256Gcm::new(key.into()),
            counter: 0,
            broken: false,
        }
    }

    /// Number of frames consumed so far (the counter the next frame must use).
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// Whether an earlier frame failed and the stream is dead.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Decrypts one frame payload (as cut by [`super::FrameDecoder`], without its length
    /// prefix). Refuses short or unauthenticated frames, and every frame after a failure.
    pub fn decrypt_frame(&mut self, payload: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.decrypt_frame_owned(payload.to_vec())
    }

    /// Like [`Self::decrypt_frame`] but decrypts in place in the given buffer.
    pub fn decrypt_frame_owned(&mut self, mut payload: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        if self.broken {
            return Err(TransportError::Broken);
        }
        let counter = self.counter;
        let nonce = match nonce_for(counter, "incoming") {
            Ok(n) => n,
            Err(e) => {
                self.broken = true;
                return Err(e);
            }
        };
        // The frame uses up its counter value whatever happens next.
        self.counter += 1;
        let Some(body_len) = payload.len().checked_sub(AEAD_TAG_LEN) else {
            self.broken = true;
            return Err(TransportError::TooShort {
                counter,
                len: payload.len(),
            });
        };
        let tag = *Tag::from_slice(&payload[body_len..]);
        payload.truncate(body_len);
        if self
            .cipher
            .decrypt_in_place_detached(Nonce::from_slice(&nonce), b"", &mut payload, &tag)
            .is_err()
        {
            self.broken = true;
            return Err(TransportError::Decrypt { counter });
        }
        Ok(payload)
    }
}

/// Both directions of an established Noise session.
#[derive(Debug)]
pub struct Transport {
    outgoing: OutgoingCipher,
    incoming: IncomingCipher,
}

impl Transport {
    /// Builds the transport from the two halves of `Split()` for the given role.
    pub(crate) fn from_split(first: &[u8; 32], second: &[u8; 32], role: Role) -> Self {
        let (write, read) = match role {
            Role::Initiator => (first, second),
            Role::Responder => (second, first),
        };
        Transport {
            outgoing: OutgoingCipher::new(write),
            incoming: IncomingCipher::new(read),
        }
    }

    /// A transport from explicit keys (for fuzzing and tests of the frame cipher).
    pub(crate) fn from_keys(write: &[u8; 32], read: &[u8; 32]) -> Self {
        Transport {
            outgoing: OutgoingCipher::new(write),
            incoming: IncomingCipher::new(read),
        }
    }

    /// Encrypts `plaintext` into a complete frame (see [`OutgoingCipher::encrypt_frame`]).
    pub fn encrypt_frame(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.outgoing.encrypt_frame(plaintext)
    }

    /// Decrypts one frame payload (see [`IncomingCipher::decrypt_frame`]).
    pub fn decrypt_frame(&mut self, payload: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.incoming.decrypt_frame(payload)
    }

    /// Separates the directions, e.g. for a reader task and a writer task.
    pub fn into_halves(self) -> (OutgoingCipher, IncomingCipher) {
        (self.outgoing, self.incoming)
    }

    /// The sending half.
    pub fn outgoing(&mut self) -> &mut OutgoingCipher {
        &mut self.outgoing
    }

    /// The receiving half.
    pub fn incoming(&mut self) -> &mut IncomingCipher {
        &mut self.incoming
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::FrameDecoder;
    use aes_gcm::aead::Aead;

    fn pair() -> (Transport, Transport) {
        let a = [1u8; 32];
        let b = [2u8; 32];
        (
            Transport::from_split(&a, &b, Role::Initiator),
            Transport::from_split(&a, &b, Role::Responder),
        )
    }

    #[test]
    fn frames_round_trip_both_ways_with_independent_counters() {
        let (mut client, mut server) = pair();
        for i in 0..5u8 {
            let f = client.encrypt_frame(&[i; 40]).unwrap();
            assert_eq!(&f[..3], &[0, 0, 56]);
            assert_eq!(server.decrypt_frame(&f[3..]).unwrap(), vec![i; 40]);
        }
        let f = server.encrypt_frame(b"back").unwrap();
        assert_eq!(client.decrypt_frame(&f[3..]).unwrap(), b"back");
        assert_eq!(client.outgoing().counter(), 5);
        assert_eq!(client.incoming().counter(), 1);
    }

    #[test]
    fn ciphertext_matches_plain_aes_gcm_with_whatsapp_nonce_and_empty_aad() {
        let (mut client, _) = pair();
        client.encrypt_frame(b"zero").unwrap();
        let f = client.encrypt_frame(b"one").unwrap();
        let reference = Aes256Gcm::new((&[1u8; 32]).into())
            .encrypt(
                Nonce::from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
                b"one".as_slice(),
            )
            .unwrap();
        assert_eq!(&f[3..], reference.as_slice());
    }

    #[test]
    fn tampered_frame_is_fatal() {
        let (mut client, mut server) = pair();
        let mut f = client.encrypt_frame(b"hello").unwrap();
        f[4] ^= 0x40;
        assert_eq!(
            server.decrypt_frame(&f[3..]),
            Err(TransportError::Decrypt { counter: 0 })
        );
        assert!(server.incoming().is_broken());
        let good = client.encrypt_frame(b"next").unwrap();
        assert_eq!(
            server.decrypt_frame(&good[3..]),
            Err(TransportError::Broken)
        );
    }

    #[test]
    fn dropped_or_reordered_frames_fail() {
        let (mut client, mut server) = pair();
        let _lost = client.encrypt_frame(b"a").unwrap();
        let second = client.encrypt_frame(b"b").unwrap();
        assert_eq!(
            server.decrypt_frame(&second[3..]),
            Err(TransportError::Decrypt { counter: 0 })
        );
    }

    #[test]
    fn short_frames_are_refused() {
        let (_, mut server) = pair();
        assert_eq!(
            server.decrypt_frame(&[0; 15]),
            Err(TransportError::TooShort {
                counter: 0,
                len: 15
            })
        );
        assert!(server.incoming().is_broken());
    }

    #[test]
    fn counters_do_not_wrap() {
        let (mut client, mut server) = pair();
        client.outgoing.counter = u32::MAX as u64;
        let last = client.encrypt_frame(b"last").unwrap();
        assert_eq!(
            client.encrypt_frame(b"one too many"),
            Err(TransportError::CounterExhausted {
                direction: "outgoing"
            })
        );
        server.incoming.counter = u32::MAX as u64;
        assert_eq!(server.decrypt_frame(&last[3..]).unwrap(), b"last");
        assert_eq!(
            server.decrypt_frame(&last[3..]),
            Err(TransportError::CounterExhausted {
                direction: "incoming"
            })
        );
    }

    #[test]
    fn oversize_plaintext_is_refused() {
        let (mut client, _) = pair();
        let big = vec![0u8; (1 << 24) - 16];
        assert!(matches!(
            client.encrypt_frame(&big),
            Err(TransportError::Frame(FrameError::TooLarge { .. }))
        ));
        assert_eq!(client.outgoing().counter(), 0);
        let fits = vec![0u8; (1 << 24) - 17];
        let f = client.encrypt_frame(&fits).unwrap();
        let mut d = FrameDecoder::new();
        assert_eq!(d.push(&f).unwrap().len(), 1);
    }

    #[test]
    fn debug_output_has_no_keys() {
        let (client, _) = pair();
        let s = format!("{client:?}");
        assert!(s.contains("redacted"));
        assert!(!s.contains("0101"));
    }
}
