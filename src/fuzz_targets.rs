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
    ("signal_decrypt", signal_decrypt),
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

/// Arbitrary bytes as pkmsg / msg / skmsg / SKDM (first byte selects) into real
/// sessions; see `signal::fuzz`.
pub fn signal_decrypt(data: &[u8]) {
    crate::signal::fuzz::signal_decrypt(data);
}
