//! Entry points shared by the cargo-fuzz targets in `fuzz/` and by the corpus replay in
//! `cargo test` (`tests/fuzz_corpus.rs`), so both exercise exactly the same code.
//! Each function must return normally on any input: a panic is a bug.

/// A fuzz entry point: must return normally on any input.
pub type FuzzEntry = fn(&[u8]);

/// Every fuzz target by name (the name of its `fuzz/fuzz_targets/<name>.rs` file and of
/// its `fuzz/corpus/<name>/` directory).
pub const TARGETS: &[(&str, FuzzEntry)] = &[("signal_decrypt", signal_decrypt)];

/// Looks up a fuzz entry point by target name.
pub fn by_name(name: &str) -> Option<FuzzEntry> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// Arbitrary bytes as pkmsg / msg / skmsg / SKDM (first byte selects) into real
/// sessions; see `signal::fuzz`.
pub fn signal_decrypt(data: &[u8]) {
    crate::signal::fuzz::signal_decrypt(data);
}
