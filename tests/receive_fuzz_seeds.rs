//! The seeds of the `message_stanza` fuzz target are real `<message>` stanzas for the
//! target's fixed local device (a group message carrying a sender key in a pkmsg and
//! its content in an skmsg, an skmsg alone, a 1:1 pkmsg, a copy from our own phone),
//! made by the crate's Signal code, plus corrupt ones. This test regenerates them
//! deterministically, checks what the target makes of each, and checks the committed
//! files under `fuzz/corpus/message_stanza/` are exactly these bytes. Rewrite them with
//! `WAEVENT_WRITE_FUZZ_SEEDS=1 cargo test --test receive_fuzz_seeds`.

use std::path::Path;

use waevent::binary::{Node, NodeContent, marshal, unmarshal};
use waevent::client::receive_support::{message_stanza, seed_stanzas};

/// (file name, bytes, messages the target must get out of it).
fn seeds() -> Vec<(String, Vec<u8>, usize)> {
    let mut out = Vec::new();
    for (name, bytes) in seed_stanzas() {
        // An skmsg alone cannot decrypt on a fresh store (no sender key yet).
        let expected = usize::from(name != "group_skmsg_only");
        out.push((name, bytes, expected));
    }
    let group = out[0].1.clone();
    let node = unmarshal(&group).unwrap();
    // Corrupt: a flipped ciphertext byte in the pkmsg, the stanza cut short, no <enc>,
    // a non-numeric time.
    let mut flipped = node.clone();
    if let NodeContent::Nodes(children) = &mut flipped.content
        && let NodeContent::Bytes(b) = &mut children[0].content
    {
        b[40] ^= 0x55;
    }
    out.push((
        "corrupt_flipped_pkmsg".into(),
        marshal(&flipped).unwrap(),
        0,
    ));
    out.push((
        "corrupt_truncated".into(),
        group[..group.len() / 2].to_vec(),
        0,
    ));
    let mut empty = node.clone();
    empty.content = NodeContent::None;
    out.push(("corrupt_no_enc".into(), marshal(&empty).unwrap(), 0));
    let bad_t: Node = node.clone().attr("t", "yesterday");
    out.push(("corrupt_bad_t".into(), marshal(&bad_t).unwrap(), 0));
    out
}

#[test]
fn message_stanza_seeds_are_real_and_committed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/message_stanza");
    let write = std::env::var_os("WAEVENT_WRITE_FUZZ_SEEDS").is_some();
    if write {
        std::fs::create_dir_all(&dir).unwrap();
    }
    let seeds = seeds();
    assert_eq!(seeds.len(), 8);
    for (name, bytes, expected) in &seeds {
        assert_eq!(message_stanza(bytes), *expected, "{name}");
        let path = dir.join(name);
        if write {
            std::fs::write(&path, bytes).unwrap();
        }
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (regenerate the seeds)", path.display()));
        assert!(
            committed == *bytes,
            "{name} differs from the committed seed"
        );
    }
}
