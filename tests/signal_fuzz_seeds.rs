//! The seed corpus of the `signal_decrypt` fuzz target: checks that every seed in
//! `fuzz/corpus/signal_decrypt/` still runs, and that the corpus is exactly the
//! target fixture's valid seeds plus a few corrupted ones.
//!
//! `WAEVENT_WRITE_FUZZ_SEEDS=1 cargo test --test signal_fuzz_seeds` regenerates them.

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

/// The corpus is exactly what the fixture makes (valid seeds plus their corruptions);
/// `WAEVENT_WRITE_FUZZ_SEEDS=1` rewrites it first.
#[test]
fn seed_corpus_is_what_the_fixture_makes() {
    let write = std::env::var_os("WAEVENT_WRITE_FUZZ_SEEDS").is_some();
    let dir = if write {
        std::fs::create_dir_all(corpus()).unwrap();
        corpus()
    } else {
        let dir = std::env::temp_dir().join(format!("waevent-signal-seeds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    };
    write_seeds(&dir);
    if !write {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let committed = corpus().join(entry.file_name());
            assert_eq!(
                std::fs::read(&committed).unwrap_or_else(|e| panic!(
                    "{}: {e} (regenerate with WAEVENT_WRITE_FUZZ_SEEDS=1)",
                    committed.display()
                )),
                std::fs::read(entry.path()).unwrap(),
                "{} differs from what the fixture makes",
                committed.display()
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

fn write_seeds(dir: &std::path::Path) {
    for seed in waevent::signal::fuzz::seeds() {
        let tail = hex::encode(&seed[seed.len() - 4..]);
        std::fs::write(dir.join(format!("valid-kind{}-{tail}", seed[0])), &seed).unwrap();
        // Corruptions: a flipped bit in the middle, a truncation, a wrong kind byte.
        let mut flipped = seed.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x01;
        std::fs::write(
            dir.join(format!("flipped-kind{}-{tail}", seed[0])),
            &flipped,
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("truncated-kind{}-{tail}", seed[0])),
            &seed[..seed.len() * 2 / 3],
        )
        .unwrap();
        let mut rekinded = seed.clone();
        rekinded[0] = rekinded[0].wrapping_add(1);
        std::fs::write(
            dir.join(format!("rekinded-kind{}-{tail}", seed[0])),
            &rekinded,
        )
        .unwrap();
    }
}
