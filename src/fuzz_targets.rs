//! Entry points shared by the cargo-fuzz targets in `fuzz/` and by the corpus replay in
//! `cargo test` (`tests/fuzz_corpus.rs`), so both exercise exactly the same code.
//! Each function must return normally on any input: a panic is a bug.

/// A fuzz entry point: must return normally on any input.
pub type FuzzEntry = fn(&[u8]);

/// Every fuzz target by name (the name of its `fuzz/fuzz_targets/<name>.rs` file and of
/// its `fuzz/corpus/<name>/` directory).
pub const TARGETS: &[(&str, FuzzEntry)] = &[
    ("noise_server_hello", noise_server_hello),
    ("noise_frames", noise_frames),
    ("node_decode", node_decode),
];

/// Looks up a fuzz entry point by target name.
pub fn by_name(name: &str) -> Option<FuzzEntry> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Arbitrary bytes as the ServerHello payload into a fresh Noise initiator, and as a
/// certificate chain into the verifier.
pub fn noise_server_hello(data: &[u8]) {
    let _ = crate::noise::fuzz_support::server_hello(data);
}

/// Arbitrary chunks into the frame decoder, every frame into the transport decrypt.
pub fn noise_frames(data: &[u8]) {
    let _ = crate::noise::fuzz_support::frames(data);
}

/// `binary::unmarshal` on arbitrary frame payloads; whatever decodes must re-encode, and
/// decoding that encoding must give the same node (decode ∘ encode is the identity on
/// decoded nodes). Panics only on a codec bug.
pub fn node_decode(data: &[u8]) {
    use crate::binary::{marshal, unmarshal};
    if let Ok(node) = unmarshal(data) {
        let bytes = match marshal(&node) {
            Ok(b) => b,
            Err(e) => panic!("a decoded node does not re-encode: {e}\n{node}"),
        };
        match unmarshal(&bytes) {
            Ok(again) => assert!(
                again == node,
                "decode(encode(node)) differs:\n{again}\n{node}"
            ),
            Err(e) => panic!("a re-encoded node does not decode: {e}\n{node}"),
        }
    }
}
