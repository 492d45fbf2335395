//! Node codec on the stanza waevent sends most: a group `message` with one `<to>` per
//! recipient device (3,000 LID devices, a ~200-byte `pkmsg` each) inside
//! `<participants>`, plus the `skmsg` for the group. Also the token lookup the encoder
//! does for every string, against the alternatives it was chosen over.
//!
//! `cargo bench --bench node_codec -- --warm-up-time 1 --measurement-time 3`

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use waevent::binary::token::{self, DOUBLE_BYTE_TOKENS, SINGLE_BYTE_TOKENS, Token};
use waevent::binary::{Node, encode_node_into, marshal, unmarshal};
use waevent::jid::Jid;

fn group_message(devices: usize) -> Node {
    let participants = (0..devices)
        .map(|i| {
            let user = format!("{}", 100_000_000_000_000u64 + (i as u64 / 4) * 7919);
            Node::new("to")
                .attr("jid", Jid::new_ad(user, 1 + (i % 4) as u16, "lid"))
                .child(
                    Node::new("enc")
                        .attr("v", "2")
                        .attr("type", "pkmsg")
                        .with_bytes(vec![(i % 251) as u8; 200]),
                )
        })
        .collect();
    Node::new("message")
        .attr("id", "3EB0C431C26A1916E4F1A9")
        .attr("to", Jid::group("120363019502650977"))
        .attr("type", "event")
        .attr("addressing_mode", "lid")
        .attr("phash", "2:hGkw9yDT")
        .with_children(vec![
            Node::new("participants").with_children(participants),
            Node::new("enc")
                .attr("v", "2")
                .attr("type", "skmsg")
                .with_bytes(vec![0x33; 180]),
            Node::new("device-identity").with_bytes(vec![0x0A; 150]),
        ])
}

fn codec(c: &mut Criterion) {
    let node = group_message(3000);
    let frame = marshal(&node).expect("encodable");
    assert_eq!(unmarshal(&frame).expect("decodable"), node);
    eprintln!("stanza: 3000 <to> children, {} bytes", frame.len());

    let mut g = c.benchmark_group("group_message_3000");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("marshal", |b| {
        b.iter(|| marshal(black_box(&node)).expect("encodable"))
    });
    let mut buf = Vec::with_capacity(frame.len());
    g.bench_function("encode_into_reused_buffer", |b| {
        b.iter(|| {
            buf.clear();
            encode_node_into(black_box(&node), &mut buf).expect("encodable");
        })
    });
    g.bench_function("unmarshal", |b| {
        b.iter(|| unmarshal(black_box(&frame)).expect("decodable"))
    });
    g.finish();
}

/// The strings one `<to>` child makes the encoder look up, plus misses (LID user
/// digits, ids) that must fall through quickly.
const LOOKUPS: &[&str] = &[
    "to",
    "jid",
    "enc",
    "v",
    "2",
    "type",
    "pkmsg",
    "participants",
    "addressing_mode",
    "phash",
    "device-identity",
    "100000000007919",
    "3EB0C431C26A1916E4F1A9",
    "w:g2",
    "keys",
];

fn token_lookup(c: &mut Criterion) {
    let all = || {
        SINGLE_BYTE_TOKENS
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, t)| (*t, Token::Single(i as u8)))
            .chain(DOUBLE_BYTE_TOKENS.iter().enumerate().flat_map(|(d, ts)| {
                ts.iter()
                    .enumerate()
                    .map(move |(i, t)| (*t, Token::Double(d as u8, i as u8)))
            }))
    };
    let siphash: HashMap<&str, Token> = all().collect();
    let mut sorted: Vec<(&str, Token)> = all().collect();
    sorted.sort_unstable_by_key(|(t, _)| *t);
    for s in LOOKUPS {
        let want = token::lookup(s);
        assert_eq!(siphash.get(s).copied(), want);
        assert_eq!(
            sorted
                .binary_search_by_key(s, |(t, _)| *t)
                .ok()
                .map(|i| sorted[i].1),
            want
        );
    }

    let mut g = c.benchmark_group("token_lookup_15_strings");
    g.bench_function("open_addressing_used", |b| {
        b.iter(|| {
            for s in LOOKUPS {
                black_box(token::lookup(black_box(s)));
            }
        })
    });
    g.bench_function("siphash_hashmap", |b| {
        b.iter(|| {
            for s in LOOKUPS {
                black_box(siphash.get(black_box(s)));
            }
        })
    });
    g.bench_function("sorted_binary_search", |b| {
        b.iter(|| {
            for s in LOOKUPS {
                black_box(sorted.binary_search_by_key(black_box(s), |(t, _)| *t).ok());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, codec, token_lookup);
criterion_main!(benches);
