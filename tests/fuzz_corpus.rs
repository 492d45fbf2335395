//! Replays every seed and saved input under `fuzz/corpus/<target>/` through the same
//! entry point the fuzz target uses, so a regression fails `cargo test` without running
//! the fuzzer.

use std::path::Path;

#[test]
fn replay_fuzz_corpora() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut replayed = 0usize;
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .expect("fuzz/corpus exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let entry = waevent::fuzz_targets::by_name(&name)
            .unwrap_or_else(|| panic!("fuzz/corpus/{name} has no entry in fuzz_targets::by_name"));
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            entry(&data);
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} corpus inputs");
}
