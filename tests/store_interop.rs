//! The SQLite store file checked with a second, independent SQLite build: Python's
//! `sqlite3` module (tools/interop/store_sqlite.py). Both directions: Python opens a
//! file waevent wrote (while waevent still has it open) and finds a valid, owner-only,
//! WAL-mode database with waevent's schema and rows; then Python writes rows (valid
//! ones and a damaged one) that waevent reads back, and Python's SQLite enforces the
//! schema's constraints too.

#![cfg(feature = "sqlite")]

mod common;
mod store_support;

use serde_json::{Value, json};
use store_support::*;
use waevent::signal::ProtocolAddress;
use waevent::store::prelude::*;
use waevent::store::{RsvpStatus, SCHEMA_VERSION, SqliteStore};

fn python(path: &std::path::Path, action: &str) -> Value {
    let input = json!({"path": path, "action": action}).to_string();
    let out = common::run_python("store_sqlite.py", input.as_bytes());
    serde_json::from_slice(&out).expect("store_sqlite.py prints JSON")
}

#[tokio::test]
async fn python_sqlite_reads_and_writes_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store.commit_batch(full_batch(5)).await.unwrap();
    store
        .bump_sent_retry(&jid(GROUPS[0]), MESSAGE_IDS[0], &jid("99002:1@lid"))
        .await
        .unwrap();

    // waevent → Python.
    let seen = python(&path, "inspect");
    eprintln!("python sqlite {}", seen["sqlite_version"]);
    assert_eq!(seen["integrity"], json!(["ok"]));
    assert_eq!(seen["foreign_key_violations"], 0);
    assert_eq!(seen["journal_mode"], "wal");
    assert_eq!(seen["user_version"], SCHEMA_VERSION);
    assert_eq!(seen["application_id"], 0x5741_4556);
    assert_eq!(seen["mode"], "0o600");
    let tables = seen["tables"].as_object().unwrap();
    assert_eq!(tables.len(), 20, "{tables:?}");
    assert_eq!(
        seen["strict"].as_array().unwrap().len(),
        20,
        "every table STRICT"
    );
    assert_eq!(tables["session"], 9);
    assert_eq!(tables["identity"], 9);
    assert_eq!(tables["prekey"], 5);
    assert_eq!(tables["sender_key"], 8);
    assert_eq!(tables["group_participant"], 4);
    assert_eq!(tables["device_list_entry"], 6);
    assert_eq!(
        seen["lid_mapping"],
        json!([
            ["99001", "15550001"],
            ["99002", "15550002"],
            ["99003", "15550003"]
        ])
    );
    assert_eq!(
        seen["rsvp"],
        json!([
            ["120363001@g.us", "3EB0A1", "99002@lid", 1, 1, 10],
            ["120363001@g.us", "3EB0A1", "99003@lid", 3, 2, 11]
        ])
    );
    let c = creds(5);
    assert_eq!(
        seen["device"],
        json!([
            "15550009:3@s.whatsapp.net",
            "99009:3@lid",
            c.identity.registration_id,
            32,
            32,
            "android",
            "waevent 5",
            5,
            7
        ])
    );
    assert_eq!(
        seen["sent_message"],
        json!([
            ["120363001@g.us", "3EB0A1", 60, 0],
            ["120363002@g.us", "3EB0A2", 60, 1]
        ])
    );
    assert_eq!(seen["retries"], json!([["3EB0A1", "99002:1@lid", 1]]));

    // Python → waevent (the store stays open: WAL readers and writers coexist).
    let wrote = python(&path, "write");
    assert_eq!(
        wrote["refused"],
        json!([true, true, true, true]),
        "UNIQUE pn, STRICT type, foreign key and singleton constraints hold in Python's SQLite"
    );
    assert_eq!(
        store.pn_for_lid(&jid("99005:2@lid")).await.unwrap(),
        Some(jid("15550005:2@s.whatsapp.net"))
    );
    let e = store
        .load_event(&jid(GROUPS[0]), "PYEVENT")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (e.creator, e.card, e.timestamp_ms),
        (
            jid("99005@lid"),
            b"\x1a\x04Meet".to_vec(),
            1_700_000_000_123
        )
    );
    let tally = store.event_tally(&jid(GROUPS[0]), "PYEVENT").await.unwrap();
    assert_eq!((tally.maybe, tally.responses[0].extra_guests), (1, 2));
    assert_eq!(tally.responses[0].response, RsvpStatus::Maybe);
    let job = store
        .due_webhooks(10, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.id == "py-1")
        .unwrap();
    assert_eq!(
        (job.attempts, job.payload.as_slice()),
        (4, &br#"{"from":"python"}"#[..])
    );
    let m = store
        .load_sent_message(&jid(GROUPS[0]), MESSAGE_IDS[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        m.retry_counts,
        vec![(jid("99002:1@lid"), 1), (jid("99009:4@lid"), 3)]
    );
    let err = store
        .load_identities(&[ProtocolAddress::new("broken", 1)])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("corrupt identity key"), "{err}");
    store.integrity_check().await.unwrap();
}
