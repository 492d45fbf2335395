//! End-to-end tests of `waevent wire …`: the built binary, fed through stdin.
//! Success prints to stdout with exit code 0; every failure is one line on stderr
//! with exit code 2, and no input makes the process panic.

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use prost::Message as _;
use waevent::event::{EventCard, MessageSecret};
use waevent::proto::e2e;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn wire(sub: &str, stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_waevent"))
        .args(["wire", sub])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start waevent");
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    // The binary may stop reading early (oversized input); ignore a broken pipe.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A failure: exit code 2, nothing on stdout, exactly one line on stderr; returns it.
fn fails(r: Run) -> String {
    assert_eq!(r.code, 2, "stdout: {} stderr: {}", r.stdout, r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{:?}", r.stderr);
    r.stderr.trim_end().to_string()
}

const README_CARD: &str =
    r#"{"name":"Team sync","startAt":"2026-12-01T15:00:00-03:00","location":{"name":"Room 4"}}"#;

#[test]
fn event_prints_the_message_as_base64() {
    let r = wire("event", README_CARD.as_bytes());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let bytes = B64.decode(r.stdout.trim()).unwrap();
    let m = e2e::Message::decode(bytes.as_slice()).unwrap();
    let card = EventCard::from_message(&m).unwrap();
    assert_eq!(card, EventCard::from_json(README_CARD).unwrap());
    assert_eq!(
        MessageSecret::from_message(&m).unwrap().as_bytes().len(),
        32
    );
    // A fresh secret every run.
    let again = wire("event", README_CARD.as_bytes());
    assert_ne!(again.stdout, r.stdout);
}

#[test]
fn event_errors_are_the_gateway_texts() {
    for (input, want) in [
        (
            r#"{"startAt":"2026-12-01T15:00:00Z"}"#,
            "waevent: Name is required",
        ),
        (r#"{"name":"x"}"#, "waevent: startAt is required"),
        (
            r#"{"name":"x","startAt":"2026-12-01T15:00:00"}"#,
            "waevent: Invalid startAt, expected ISO 8601 (RFC3339): \"2026-12-01T15:00:00\" has no UTC offset; append Z or an offset such as -03:00",
        ),
        (
            "",
            "waevent: input is empty; expected event card JSON on stdin",
        ),
    ] {
        assert_eq!(fails(wire("event", input.as_bytes())), want);
    }
    // Broken JSON: one line even though serde's message names line and column.
    let line = fails(wire("event", b"{\"name\":\n\"x\",\n"));
    assert!(line.starts_with("waevent: Invalid event JSON: "), "{line}");
}

#[test]
fn decode_prints_the_message_as_json() {
    let b64 = wire("event", README_CARD.as_bytes()).stdout;
    let r = wire("decode", b64.as_bytes());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["eventMessage"]["name"], "Team sync");
    assert_eq!(v["eventMessage"]["startTime"], "1796148000");
    assert_eq!(v["eventMessage"]["isCanceled"], false);
    assert_eq!(v["eventMessage"]["location"]["name"], "Room 4");
    let secret = B64
        .decode(v["messageContextInfo"]["messageSecret"].as_str().unwrap())
        .unwrap();
    assert_eq!(secret.len(), 32);
}

#[test]
fn decode_refuses_what_is_not_a_message() {
    let line = fails(wire("decode", b"not base64!"));
    assert!(line.starts_with("waevent: input is not base64: "), "{line}");
    // 0xff is a field with wire type 7: not a protobuf.
    let line = fails(wire("decode", b"/w=="));
    assert!(
        line.starts_with("waevent: not a valid wa.e2e.Message protobuf: "),
        "{line}"
    );
    fails(wire("decode", b"\n\n"));
    fails(wire("decode", &[0xff, 0xfe, 0x00]));
}

#[test]
fn hostile_input_never_panics() {
    // Larger than the 16 MiB limit.
    let huge = vec![b'A'; (16 << 20) + 10];
    let line = fails(wire("decode", &huge));
    assert!(line.contains("larger than"), "{line}");
    fails(wire("event", &huge));
    // Deeply nested JSON and protobuf.
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    fails(wire("event", deep_json.as_bytes()));
    let mut deep = Vec::new();
    for _ in 0..10_000 {
        // ephemeralMessage (40) { message (1) { … } } nested, lengths left open.
        deep.extend_from_slice(&[0xc2, 0x02, 0x7f]);
    }
    fails(wire("decode", B64.encode(&deep).as_bytes()));
    // Pseudo-random bytes.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..20 {
        let bytes: Vec<u8> = (0..200)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for sub in ["event", "decode"] {
            let r = wire(sub, &bytes);
            assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
            let r = wire(sub, B64.encode(&bytes).as_bytes());
            assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        }
    }
}

const STANZA_JSON: &str = r#"{"tag":"message","attrs":{"id":"3EB0C4B7A1D2E3F40516","to":"120363019502650977@g.us","type":"event","phash":"2:abcDEF12","addressing_mode":"pn"},"content":[{"tag":"meta","attrs":{"event_type":"creation"},"content":null},{"tag":"enc","attrs":{"v":"2","type":"skmsg"},"content":"33080112201a2b3c"},{"tag":"participants","attrs":{},"content":[{"tag":"to","attrs":{"jid":"5511988887777:3@s.whatsapp.net"},"content":[{"tag":"enc","attrs":{"v":"2","type":"pkmsg","decrypt-fail":"hide"},"content":"00ff"}]}]}]}"#;

#[test]
fn node_encode_and_decode_round_trip() {
    let enc = wire("node-encode", STANZA_JSON.as_bytes());
    assert_eq!(enc.code, 0, "{}", enc.stderr);
    let hex_out = enc.stdout.trim().to_string();
    assert!(hex_out.starts_with("00"), "flags byte first: {hex_out}");
    let dec = wire("node-decode", hex_out.as_bytes());
    assert_eq!(dec.code, 0, "{}", dec.stderr);
    let got: serde_json::Value = serde_json::from_str(&dec.stdout).unwrap();
    let want: serde_json::Value = serde_json::from_str(STANZA_JSON).unwrap();
    assert_eq!(got, want);

    // The same node in a zlib-compressed frame (flag 0x02) decodes the same.
    let raw = hex::decode(&hex_out).unwrap();
    let mut z = flate2::write::ZlibEncoder::new(vec![0x02], flate2::Compression::default());
    z.write_all(&raw[1..]).unwrap();
    let compressed = z.finish().unwrap();
    let dec = wire("node-decode", hex::encode(compressed).as_bytes());
    assert_eq!(dec.code, 0, "{}", dec.stderr);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&dec.stdout).unwrap(),
        want
    );
}

#[test]
fn node_tools_refuse_bad_input() {
    let line = fails(wire("node-decode", b"zz"));
    assert!(line.starts_with("waevent: input is not hex: "), "{line}");
    let line = fails(wire("node-decode", b"00f8"));
    assert!(line.starts_with("waevent: not a binary node: "), "{line}");
    fails(wire("node-decode", b""));
    let line = fails(wire("node-encode", br#"{"tag":"iq","atrs":{}}"#));
    assert!(
        line.starts_with("waevent: cannot encode the node: "),
        "{line}"
    );
    fails(wire("node-encode", b"{\"tag\":"));
    let deep = format!(
        "{}{}",
        r#"{"tag":"a","content":["#.repeat(5_000),
        "]}".repeat(5_000)
    );
    fails(wire("node-encode", deep.as_bytes()));
    // A deep chain of nested lists in binary form.
    let mut deep_bin = vec![0x00];
    for _ in 0..5_000 {
        deep_bin.extend_from_slice(&[0xf8, 0x02, 0x0a, 0xf8, 0x01]);
    }
    fails(wire("node-decode", hex::encode(deep_bin).as_bytes()));
}
