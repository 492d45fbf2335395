//! kill -9 at random moments: a child process (this test binary, re-run with a filter
//! and an environment variable) commits large multi-row batches in a loop — the shape
//! of a send (sessions, sender keys, secret, prepared stanza), of a receive (RSVP,
//! webhook) and of a pre-key refill (credentials with the next prekey id plus new
//! prekeys) — and is SIGKILLed, 30 times, sometimes while it is still opening or
//! migrating the database. After every kill the store must open, pass
//! `PRAGMA integrity_check`, and hold every batch up to the last committed one in full
//! and nothing of the next.

#![cfg(feature = "sqlite")]

mod store_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store_support::*;
use waevent::jid::Jid;
use waevent::signal::store::SignalStateBatch;
use waevent::signal::{ProtocolAddress, SenderKeyName};
use waevent::store::prelude::*;
use waevent::store::{
    RsvpStatus, SenderKeyMemoryUpdate, SentState, SentStateUpdate, SqliteStore, StoreBatch,
};

const ENV: &str = "WAEVENT_STORE_CRASH_DB";
const ROUNDS: usize = 30;
const SESSIONS: u32 = 30;
const SHARED: u32 = 20;
const PREKEYS: u32 = 5;
const GROUP: &str = "120363000@g.us";

fn shared_record(i: u64) -> Vec<u8> {
    i.to_le_bytes().repeat(16)
}

fn holder(i: u64) -> Jid {
    jid(&format!("99001:{}@lid", i % 500 + 1))
}

/// Batch number `i` (from 1).
fn batch(i: u64) -> StoreBatch {
    let mut c = creds(1);
    c.login_counter = i;
    c.next_prekey_id = (i as u32) * PREKEYS + 1;
    let mut signal = SignalStateBatch::new();
    for d in 0..SESSIONS {
        signal.sessions.push((
            ProtocolAddress::new(format!("b{i}"), d),
            vec![i as u8; 300].into(),
        ));
    }
    for d in 0..SHARED {
        signal
            .sessions
            .push((ProtocolAddress::new("shared", d), shared_record(i).into()));
    }
    for d in 0..5 {
        signal
            .identities
            .push((ProtocolAddress::new(format!("b{i}"), d), public(d as u8)));
    }
    signal.sender_keys.push((
        SenderKeyName::from_parts(GROUP, ProtocolAddress::new("self_1", 1)),
        shared_record(i).into(),
    ));
    if i > 2 {
        let old = (i - 2) as u32;
        signal
            .removed_prekeys
            .extend((old - 1) * PREKEYS + 1..=old * PREKEYS);
    }
    let first = (i as u32 - 1) * PREKEYS + 1;
    let mut b = StoreBatch {
        credentials: Some(c),
        prekeys: (first..first + PREKEYS)
            .map(|id| (id, vec![7; 64]))
            .collect(),
        signal,
        sender_key_memory: vec![
            SenderKeyMemoryUpdate::ClearGroup { group: jid(GROUP) },
            SenderKeyMemoryUpdate::MarkHas {
                group: jid(GROUP),
                devices: vec![holder(i), jid("99002@lid")],
            },
        ],
        secrets: vec![secret(GROUP, "99009@lid", &format!("M{i}"), i as u8)],
        events: vec![event(GROUP, &format!("M{i}"), "99009@lid", i as u8)],
        rsvps: vec![rsvp(
            GROUP,
            "SHARED",
            "99001@lid",
            RsvpStatus::Going,
            i as i64,
        )],
        webhooks: vec![webhook(&format!("w{i}"), i as u8)],
        ..StoreBatch::default()
    };
    let mut s = sent(GROUP, &format!("M{i}"), i as u8, SentState::Pending);
    s.stanza = vec![i as u8; 100 * 1024]; // a big stanza: the commit spans many pages
    b.sent_messages.push(s);
    if i > 1 {
        b.sent_states.push(SentStateUpdate {
            chat: jid(GROUP),
            message_id: format!("M{}", i - 1),
            state: SentState::Acked,
        });
    }
    b
}

/// The child: commit batches forever (until killed).
#[test]
#[ignore = "run by sqlite_store_survives_sigkill as its child process"]
fn crash_child() {
    let Ok(path) = std::env::var(ENV) else { return };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&path).await.unwrap();
        let mut i = store
            .load_credentials()
            .await
            .unwrap()
            .map_or(0, |c| c.login_counter);
        println!("ready {i}");
        // Bounded, in case the parent died without killing us.
        let started = std::time::Instant::now();
        for _ in 0..5_000 {
            if started.elapsed() > std::time::Duration::from_secs(30) {
                break;
            }
            i += 1;
            store.commit_batch(batch(i)).await.unwrap();
        }
    });
}

fn count(conn: &rusqlite::Connection, query: &str) -> i64 {
    conn.query_row(query, [], |r| r.get(0)).unwrap()
}

/// Everything up to batch `k` is there in full, nothing of `k + 1`.
async fn verify(path: &Path, round: usize) -> u64 {
    let store = SqliteStore::open(path)
        .await
        .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
    store
        .integrity_check()
        .await
        .unwrap_or_else(|e| panic!("round {round}: {e}"));
    let Some(c) = store.load_credentials().await.unwrap() else {
        // Killed before the first commit: nothing at all may be there.
        assert!(snapshot(&store).await.is_empty(), "round {round}");
        return 0;
    };
    let k = c.login_counter;
    let ctx = format!("round {round}, last committed batch {k}");
    assert_eq!(c.next_prekey_id, k as u32 * PREKEYS + 1, "{ctx}");
    let g = jid(GROUP);

    // Batch k in full, through the API.
    let addrs: Vec<ProtocolAddress> = (0..SESSIONS)
        .map(|d| ProtocolAddress::new(format!("b{k}"), d))
        .collect();
    assert!(
        store
            .load_sessions(&addrs)
            .await
            .unwrap()
            .iter()
            .all(|s| s.as_deref() == Some(&vec![k as u8; 300][..])),
        "{ctx}"
    );
    let shared: Vec<ProtocolAddress> = (0..SHARED)
        .map(|d| ProtocolAddress::new("shared", d))
        .collect();
    assert!(
        store
            .load_sessions(&shared)
            .await
            .unwrap()
            .iter()
            .all(|s| s.as_deref() == Some(&shared_record(k)[..])),
        "{ctx}: shared sessions from another batch"
    );
    let id = format!("M{k}");
    assert_eq!(
        store
            .message_secret(&g, &jid("99009@lid"), &id)
            .await
            .unwrap()
            .unwrap()
            .secret,
        secret(GROUP, "99009@lid", &id, k as u8).secret,
        "{ctx}"
    );
    assert!(store.load_event(&g, &id).await.unwrap().is_some(), "{ctx}");
    let m = store.load_sent_message(&g, &id).await.unwrap().unwrap();
    assert_eq!(
        (m.sent.state, m.sent.stanza.len()),
        (SentState::Pending, 100 * 1024),
        "{ctx}"
    );
    assert!(m.sent.stanza.iter().all(|b| *b == k as u8), "{ctx}");
    let tally = store.rsvps(&g, "SHARED").await.unwrap();
    assert_eq!(tally.len(), 1);
    assert_eq!(
        tally[0].timestamp_ms, k as i64,
        "{ctx}: RSVP from another batch"
    );
    let mut holders = vec![holder(k), jid("99002@lid")];
    holders.sort();
    assert_eq!(
        store.sender_key_holders(&g).await.unwrap(),
        holders,
        "{ctx}"
    );
    let sk = SenderKeyName::from_parts(GROUP, ProtocolAddress::new("self_1", 1));
    assert_eq!(
        store.load_sender_key(&sk).await.unwrap(),
        Some(shared_record(k)),
        "{ctx}"
    );
    assert_eq!(
        store.max_prekey_id().await.unwrap(),
        Some(k as u32 * PREKEYS),
        "{ctx}"
    );

    // Nothing of batch k + 1.
    let next = k + 1;
    assert!(
        store
            .session_devices(&format!("b{next}"))
            .await
            .unwrap()
            .is_empty(),
        "{ctx}"
    );
    assert!(
        store
            .load_event(&g, &format!("M{next}"))
            .await
            .unwrap()
            .is_none(),
        "{ctx}"
    );
    assert!(
        store
            .load_sent_message(&g, &format!("M{next}"))
            .await
            .unwrap()
            .is_none(),
        "{ctx}"
    );

    // Every earlier batch in full: totals over all rows.
    drop(store);
    let conn = rusqlite::Connection::open(path).unwrap();
    let k = k as i64;
    assert_eq!(
        count(&conn, "SELECT count(*) FROM session WHERE name LIKE 'b%'"),
        k * i64::from(SESSIONS),
        "{ctx}"
    );
    assert_eq!(
        count(&conn, "SELECT count(*) FROM identity"),
        k * 5,
        "{ctx}"
    );
    assert_eq!(
        count(&conn, "SELECT count(*) FROM prekey"),
        k.min(2) * i64::from(PREKEYS),
        "{ctx}"
    );
    assert_eq!(
        count(&conn, "SELECT count(*) FROM message_secret"),
        k,
        "{ctx}"
    );
    assert_eq!(count(&conn, "SELECT count(*) FROM event_card"), k, "{ctx}");
    assert_eq!(
        count(&conn, "SELECT count(*) FROM webhook_outbox"),
        k,
        "{ctx}"
    );
    assert_eq!(
        count(&conn, "SELECT count(*) FROM sent_message"),
        k,
        "{ctx}"
    );
    assert_eq!(
        count(&conn, "SELECT count(*) FROM sent_message WHERE state = 0"),
        1,
        "{ctx}"
    );
    k as u64
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let seed: u64 = std::env::var("WAEVENT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen());
    eprintln!("crash test seed {seed} (set WAEVENT_CRASH_SEED to repeat)");
    let mut rng = StdRng::seed_from_u64(seed);
    let exe = std::env::current_exe().unwrap();
    let mut last = 0u64;
    let mut progressed = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if round % 4 == 0 {
            // Blind: may land while the child is still opening or migrating.
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..80)));
        } else {
            // Wait until it runs (the harness prints `test crash_child ... ready N`),
            // then let it commit for a random while.
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    match line {
                        Ok(l) if l.contains("ready") => {
                            let _ = tx.send(());
                            return;
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            });
            if rx.recv_timeout(Duration::from_secs(60)).is_err() {
                let _ = child.kill();
                panic!("round {round}: child did not get ready within 60 s");
            }
            std::thread::sleep(Duration::from_millis(rng.gen_range(1..150)));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let k = verify(&path, round).await;
        assert!(
            k >= last,
            "round {round}: committed batches went missing ({last} → {k})"
        );
        if k > last {
            progressed += 1;
        }
        last = k;
    }
    eprintln!("{ROUNDS} kills, {last} batches committed, {progressed} rounds made progress");
    assert!(
        progressed >= ROUNDS / 3,
        "only {progressed} of {ROUNDS} rounds committed anything: the kills did not exercise commits"
    );
}
