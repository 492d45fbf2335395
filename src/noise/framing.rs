//! The frame layer under Noise: the once-per-connection intro (optional `ED` routing
//! pre-intro + `WA 06 03` header), 3-byte big-endian length prefixes, and a decoder that
//! cuts frames out of websocket chunks of any size.

use super::{CONNECTION_HEADER, FRAME_LENGTH_PREFIX, FRAME_SIZE_LIMIT, ROUTING_PREINTRO_MAGIC};

/// Largest length a 3-byte prefix can express (and the largest frame accepted).
pub const MAX_FRAME_LEN: usize = FRAME_SIZE_LIMIT - 1;

/// Errors of the frame layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame to send (or one announced by its length prefix) is too long.
    #[error("frame of {len} bytes is too large (limit: {limit} bytes)")]
    TooLarge {
        /// Length of the offending frame payload.
        len: usize,
        /// Largest accepted payload length.
        limit: usize,
    },
    /// Routing info for the `ED` pre-intro does not fit its 3-byte length.
    #[error("routing info of {len} bytes does not fit the 3-byte ED pre-intro length")]
    RoutingInfoTooLarge {
        /// Length of the routing info.
        len: usize,
    },
    /// The decoder refused an earlier input; the stream cannot be resynchronised.
    #[error("frame stream is broken by an earlier error: {0}")]
    Broken(Box<FrameError>),
}

/// Appends `payload` as one frame (3-byte big-endian length, then the payload) to `out`.
/// Refuses payloads of `1 << 24` bytes or more.
pub fn encode_frame_into(out: &mut Vec<u8>, payload: &[u8]) -> Result<(), FrameError> {
    let prefix = length_prefix(payload.len())?;
    out.reserve(FRAME_LENGTH_PREFIX + payload.len());
    out.extend_from_slice(&prefix);
    out.extend_from_slice(payload);
    Ok(())
}

/// Encodes `payload` as one frame (3-byte big-endian length, then the payload).
/// Refuses payloads of `1 << 24` bytes or more.
pub fn encode_frame(payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    encode_frame_into(&mut out, payload)?;
    Ok(out)
}

/// The 3-byte big-endian length prefix for a payload of `len` bytes.
pub(crate) fn length_prefix(len: usize) -> Result<[u8; 3], FrameError> {
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len,
            limit: MAX_FRAME_LEN,
        });
    }
    let [_, a, b, c] = (len as u32).to_be_bytes();
    Ok([a, b, c])
}

/// The bytes sent once in front of the first frame of a connection: the `ED 00 01`
/// routing pre-intro with its 3-byte length when `routing_info` is given, then the
/// `WA 06 03` connection header. Refuses routing info longer than `0xFFFFFF` bytes.
pub fn connection_intro(routing_info: Option<&[u8]>) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::new();
    if let Some(info) = routing_info {
        let prefix = length_prefix(info.len())
            .map_err(|_| FrameError::RoutingInfoTooLarge { len: info.len() })?;
        out.reserve(ROUTING_PREINTRO_MAGIC.len() + FRAME_LENGTH_PREFIX + info.len());
        out.extend_from_slice(&ROUTING_PREINTRO_MAGIC);
        out.extend_from_slice(&prefix);
        out.extend_from_slice(info);
    }
    out.extend_from_slice(&CONNECTION_HEADER);
    Ok(out)
}

/// Cuts length-prefixed frames out of a byte stream that arrives in chunks of any size:
/// a chunk may hold several frames, part of one, or the end of one and the start of the
/// next. Only the unfinished tail is buffered, so memory stays below one frame plus its
/// prefix. A frame longer than the limit breaks the stream for good.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    max_frame_len: usize,
    broken: Option<FrameError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder accepting every length a 3-byte prefix can express (up to `0xFFFFFF`).
    pub fn new() -> Self {
        Self::with_max_frame_len(MAX_FRAME_LEN)
    }

    /// A decoder refusing frames longer than `max_frame_len` bytes (capped at `0xFFFFFF`).
    pub fn with_max_frame_len(max_frame_len: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            max_frame_len: max_frame_len.min(MAX_FRAME_LEN),
            broken: None,
        }
    }

    /// The largest frame payload this decoder accepts.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Number of bytes held back as the start of an unfinished frame.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Feeds one chunk and returns the payloads of every frame it completes, in order.
    /// Refuses (and stays broken after) a frame announced longer than the limit.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        if let Some(err) = &self.broken {
            return Err(FrameError::Broken(Box::new(err.clone())));
        }
        let mut frames = Vec::new();
        let mut rest = chunk;
        while !rest.is_empty() {
            // Complete the length prefix first.
            if self.buf.len() < FRAME_LENGTH_PREFIX {
                let need = FRAME_LENGTH_PREFIX - self.buf.len();
                let (head, tail) = rest.split_at(need.min(rest.len()));
                self.buf.extend_from_slice(head);
                rest = tail;
                if self.buf.len() < FRAME_LENGTH_PREFIX {
                    break;
                }
            }
            let len = self.announced_len()?;
            // Invariant: the buffer never holds more than prefix + announced length.
            let have = self.buf.len().saturating_sub(FRAME_LENGTH_PREFIX);
            let need = len.saturating_sub(have);
            let (body, tail) = rest.split_at(need.min(rest.len()));
            self.buf.extend_from_slice(body);
            rest = tail;
            if self.buf.len() == FRAME_LENGTH_PREFIX + len {
                let mut frame = std::mem::take(&mut self.buf);
                frame.drain(..FRAME_LENGTH_PREFIX);
                frames.push(frame);
            }
        }
        Ok(frames)
    }

    /// The length announced by the buffered prefix, refusing oversize frames.
    fn announced_len(&mut self) -> Result<usize, FrameError> {
        let len = match self.buf.get(..FRAME_LENGTH_PREFIX) {
            Some(&[a, b, c]) => u32::from_be_bytes([0, a, b, c]) as usize,
            _ => 0,
        };
        if len > self.max_frame_len {
            let err = FrameError::TooLarge {
                len,
                limit: self.max_frame_len,
            };
            self.broken = Some(err.clone());
            self.buf = Vec::new();
            return Err(err);
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frame_layout_is_three_byte_big_endian_length() {
        assert_eq!(encode_frame(b"abc").unwrap(), [0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(encode_frame(&[]).unwrap(), [0, 0, 0]);
        let big = vec![7u8; 0x01_02_03];
        let f = encode_frame(&big).unwrap();
        assert_eq!(&f[..3], &[1, 2, 3]);
        assert_eq!(f.len(), 3 + big.len());
    }

    #[test]
    fn frames_of_16_mib_or_more_are_refused() {
        let limit = vec![0u8; FRAME_SIZE_LIMIT];
        assert_eq!(
            encode_frame(&limit),
            Err(FrameError::TooLarge {
                len: FRAME_SIZE_LIMIT,
                limit: FRAME_SIZE_LIMIT - 1
            })
        );
        let largest = vec![0u8; FRAME_SIZE_LIMIT - 1];
        let f = encode_frame(&largest).unwrap();
        assert_eq!(&f[..3], &[0xFF, 0xFF, 0xFF]);
    }

    #[test]
    fn intro_with_and_without_routing_info() {
        assert_eq!(connection_intro(None).unwrap(), b"WA\x06\x03");
        assert_eq!(
            connection_intro(Some(&[9, 8])).unwrap(),
            [b'E', b'D', 0, 1, 0, 0, 2, 9, 8, b'W', b'A', 6, 3]
        );
        assert_eq!(
            connection_intro(Some(&vec![0; 1 << 24])),
            Err(FrameError::RoutingInfoTooLarge { len: 1 << 24 })
        );
    }

    #[test]
    fn decoder_cuts_several_frames_from_one_chunk_and_one_frame_from_many() {
        let mut stream = Vec::new();
        encode_frame_into(&mut stream, b"first").unwrap();
        encode_frame_into(&mut stream, b"").unwrap();
        encode_frame_into(&mut stream, b"third frame").unwrap();
        let mut d = FrameDecoder::new();
        let frames = d.push(&stream).unwrap();
        assert_eq!(
            frames,
            vec![b"first".to_vec(), vec![], b"third frame".to_vec()]
        );
        assert_eq!(d.buffered_len(), 0);

        let mut d = FrameDecoder::new();
        let mut out = Vec::new();
        for b in &stream {
            out.extend(d.push(std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(
            out,
            vec![b"first".to_vec(), vec![], b"third frame".to_vec()]
        );
    }

    #[test]
    fn decoder_refuses_oversize_frames_as_soon_as_the_prefix_arrives_and_stays_broken() {
        let mut d = FrameDecoder::with_max_frame_len(10);
        assert_eq!(d.push(&[0, 0]).unwrap(), Vec::<Vec<u8>>::new());
        let err = d.push(&[11]).unwrap_err();
        assert_eq!(err, FrameError::TooLarge { len: 11, limit: 10 });
        assert_eq!(d.buffered_len(), 0);
        assert!(matches!(d.push(&[0, 0, 1, 5]), Err(FrameError::Broken(_))));

        let mut d = FrameDecoder::with_max_frame_len(10);
        let ok = encode_frame(&[1; 10]).unwrap();
        assert_eq!(d.push(&ok).unwrap(), vec![vec![1; 10]]);
        // The full 3-byte range is accepted by default.
        let mut d = FrameDecoder::new();
        assert!(d.push(&[0xFF, 0xFF, 0xFF, 1, 2]).unwrap().is_empty());
        assert_eq!(d.buffered_len(), 5);
    }

    proptest! {
        #[test]
        fn any_chunking_yields_the_same_frames(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..12),
            cuts in proptest::collection::vec(0usize..4000, 0..20),
        ) {
            let mut stream = Vec::new();
            for p in &payloads {
                encode_frame_into(&mut stream, p).unwrap();
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut d = FrameDecoder::with_max_frame_len(300);
            let mut out = Vec::new();
            let mut start = 0;
            for c in cuts.into_iter().chain(std::iter::once(stream.len())) {
                out.extend(d.push(&stream[start..c]).unwrap());
                start = c;
                prop_assert!(d.buffered_len() <= 3 + 300);
            }
            prop_assert_eq!(out, payloads);
            prop_assert_eq!(d.buffered_len(), 0);
        }
    }
}
