//! The seed corpus of the `signal_decrypt` fuzz target: checks that every seed in
//! `fuzz/corpus/signal_decrypt/` still runs, and (with `--ignored`) rewrites the valid
//! seeds from the target's fixture plus a few corrupted ones.
//!
//! `cargo test --test signal_fuzz_seeds -- --ignored` regenerates them.

use std::path::PathBuf;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/signal_decrypt")
}

#[test]
fn valid_seeds_in_the_corpus_still_decrypt() {
    let mut valid = 0;
    for seed in waevent::signal::fuzz::seeds() {
        let name = format!(
            "valid-kind{}-{}",
            seed[0],
            hex::encode(&seed[seed.len() - 4..])
        );
        let path = corpus().join(&name);
        if path.exists() {
            assert_eq!(
                std::fs::read(&path).unwrap(),
                seed,
                "{name} differs from the fixture's seed"
            );
            assert!(waevent::signal::fuzz::signal_decrypt(&seed));
            valid += 1;
        }
    }
    assert!(
        valid >= 7,
        "expected the 7 valid seeds in fuzz/corpus/signal_decrypt, found {valid}"
    );
}

#[test]
#[ignore = "writes fuzz/corpus/signal_decrypt"]
fn write_seed_corpus() {
    std::fs::create_dir_all(corpus()).unwrap();
    for seed in waevent::signal::fuzz::seeds() {
        let tail = hex::encode(&seed[seed.len() - 4..]);
        std::fs::write(
            corpus().join(format!("valid-kind{}-{tail}", seed[0])),
            &seed,
        )
        .unwrap();
        // Corruptions: a flipped bit in the middle, a truncation, a wrong kind byte.
        let mut flipped = seed.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x01;
        std::fs::write(
            corpus().join(format!("flipped-kind{}-{tail}", seed[0])),
            &flipped,
        )
        .unwrap();
        std::fs::write(
            corpus().join(format!("truncated-kind{}-{tail}", seed[0])),
            &seed[..seed.len() * 2 / 3],
        )
        .unwrap();
        let mut rekinded = seed.clone();
        rekinded[0] = rekinded[0].wrapping_add(1);
        std::fs::write(
            corpus().join(format!("rekinded-kind{}-{tail}", seed[0])),
            &rekinded,
        )
        .unwrap();
    }
}
