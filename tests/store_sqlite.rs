//! SQLite-only behaviour: reopening, file modes, refusing foreign files, typed errors
//! for damaged rows, rollback of a batch that fails inside SQLite, several handles on
//! one file, and use without a tokio runtime.

#![cfg(feature = "sqlite")]

mod store_support;

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use rusqlite::Connection;
use store_support::*;
use waevent::signal::{ProtocolAddress, SenderKeyName};
use waevent::store::prelude::*;
use waevent::store::{
    Error, IdempotencyClaim, IdempotencyState, RsvpStatus, SCHEMA_VERSION, SentState, SqliteStore,
    StoreBatch,
};

fn raw(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn reopening_returns_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let before = {
        let store = SqliteStore::open(&path).await.unwrap();
        store.commit_batch(full_batch(8)).await.unwrap();
        store
            .bump_sent_retry(&jid(GROUPS[0]), MESSAGE_IDS[0], &jid("99003:2@lid"))
            .await
            .unwrap();
        store
            .reschedule_webhook("w1", 9_999, "HTTP 502")
            .await
            .unwrap();
        let claim = IdempotencyClaim {
            instance: "main".into(),
            key: "k".into(),
            fingerprint: "f".into(),
            now_ms: 42,
        };
        store.claim_idempotency_key(&claim).await.unwrap();
        snapshot(&store).await
    };
    assert_full(&before, 8);
    let store = SqliteStore::open(&path).await.unwrap();
    let after = snapshot(&store).await;
    assert_eq!(before, after);
    let claim = IdempotencyClaim {
        instance: "main".into(),
        key: "k".into(),
        fingerprint: "f".into(),
        now_ms: 50,
    };
    assert_eq!(
        store.claim_idempotency_key(&claim).await.unwrap(),
        IdempotencyState::InProgress { since_ms: 42 }
    );
    store.integrity_check().await.unwrap();
    // What the schema looks like from outside.
    let conn = raw(&path);
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    let app: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    let journal: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        (version, app, journal.as_str()),
        (SCHEMA_VERSION, 0x5741_4556, "wal")
    );
}

#[cfg(unix)]
#[tokio::test]
async fn files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store.commit_batch(full_batch(1)).await.unwrap();
    assert_eq!(mode(&path), 0o600);
    for suffix in ["-wal", "-shm"] {
        let companion = dir.path().join(format!("new.db{suffix}"));
        assert!(companion.exists(), "{suffix} exists while open");
        assert_eq!(mode(&companion), 0o600, "{suffix}");
    }
    drop(store);

    // An existing store left world-readable (and its companions) is tightened.
    let loose = dir.path().join("loose.db");
    SqliteStore::open(&loose).await.unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let wal = dir.path().join("loose.db-wal");
    std::fs::write(&wal, b"").unwrap();
    std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o666)).unwrap();
    let store = SqliteStore::open(&loose).await.unwrap();
    assert_eq!(mode(&loose), 0o600);
    assert_eq!(mode(&wal), 0o600);
    store.integrity_check().await.unwrap();

    // An empty file created by someone else (e.g. `touch`) becomes a store, 0600.
    let touched = dir.path().join("touched.db");
    std::fs::write(&touched, b"").unwrap();
    std::fs::set_permissions(&touched, std::fs::Permissions::from_mode(0o664)).unwrap();
    SqliteStore::open(&touched).await.unwrap();
    assert_eq!(mode(&touched), 0o600);
}

#[tokio::test]
async fn foreign_files_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();

    let garbage = dir.path().join("garbage.db");
    let bytes: Vec<u8> = (0..4096u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&garbage, &bytes).unwrap();
    let err = SqliteStore::open(&garbage).await.unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err}");
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
    assert_eq!(std::fs::read(&garbage).unwrap(), bytes);

    let foreign = dir.path().join("foreign.db");
    raw(&foreign)
        .execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        .unwrap();
    let err = SqliteStore::open(&foreign).await.unwrap_err();
    assert!(err.to_string().contains("not a waevent store"), "{err}");
    let tables: i64 = raw(&foreign)
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 1, "nothing was created in the foreign database");

    let other_app = dir.path().join("other_app.db");
    raw(&other_app)
        .execute_batch("PRAGMA application_id = 1234")
        .unwrap();
    assert!(matches!(
        SqliteStore::open(&other_app).await,
        Err(Error::NotAStore { .. })
    ));

    let newer = dir.path().join("newer.db");
    SqliteStore::open(&newer).await.unwrap();
    raw(&newer)
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    let err = SqliteStore::open(&newer).await.unwrap_err();
    assert!(
        matches!(err, Error::SchemaTooNew { found, supported } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err}"
    );

    let err = SqliteStore::open(dir.path()).await.unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let err = SqliteStore::open(dir.path().join("missing/dir/store.db"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

/// A version-1 database (before `refused_code` and `source`) opens, migrates to the
/// current version and keeps its sent messages; a refusal can then be stored.
#[tokio::test]
async fn a_version_1_database_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store
            .commit_batch(StoreBatch {
                sent_messages: vec![sent(GROUPS[0], MESSAGE_IDS[0], 3, SentState::Pending)],
                ..StoreBatch::default()
            })
            .await
            .unwrap();
    }
    // Turn it back into what version 1 wrote.
    raw(&path)
        .execute_batch(
            "DROP INDEX sent_message_pending;
             ALTER TABLE sent_message DROP COLUMN refused_code;
             ALTER TABLE sent_message DROP COLUMN source;
             CREATE INDEX sent_message_pending ON sent_message (created_at_ms, chat_jid, message_id)
                 WHERE state = 0;
             PRAGMA user_version = 1;",
        )
        .unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    let version: i64 = raw(&path)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let group = GROUPS[0].parse().unwrap();
    let m = store
        .load_sent_message(&group, MESSAGE_IDS[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (m.sent.message[0], m.sent.state, m.sent.source),
        (3, SentState::Pending, None)
    );
    store
        .set_sent_state(&group, MESSAGE_IDS[0], SentState::Refused { code: 479 })
        .await
        .unwrap();
    let m = store
        .load_sent_message(&group, MESSAGE_IDS[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.sent.state, SentState::Refused { code: 479 });
    assert!(store.pending_sent_messages(10).await.unwrap().is_empty());
    store.integrity_check().await.unwrap();
}

/// Rows damaged behind the store's back come back as typed errors, not panics.
#[tokio::test]
async fn damaged_rows_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store.commit_batch(full_batch(2)).await.unwrap();
    let conn = raw(&path);
    let g = jid(GROUPS[0]);

    conn.execute(
        "UPDATE session SET record = x'0a03ffffff' WHERE name = '15550001'",
        [],
    )
    .unwrap();
    let err = store
        .load_session_record(&ProtocolAddress::new("15550001", 0))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("session"), "{err}");

    conn.execute("UPDATE sender_key SET record = x'ff'", [])
        .unwrap();
    let name = SenderKeyName::from_parts(GROUPS[0], ProtocolAddress::new("15550001", 0));
    assert!(store.load_sender_key_record(&name).await.is_err());

    conn.execute("UPDATE identity SET public_key = x'0102'", [])
        .unwrap();
    let err = store
        .load_identities(&[ProtocolAddress::new("15550001", 0)])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("corrupt identity key"), "{err}");

    conn.execute(
        "UPDATE sender_key_memory SET device_jid = 'not a jid' WHERE device_jid = '99002@lid'",
        [],
    )
    .unwrap();
    let err = store.sender_key_holders(&g).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Corrupt {
                what: "sender-key memory device",
                ..
            }
        ),
        "{err}"
    );

    conn.execute("UPDATE rsvp SET response = 9", []).unwrap();
    let err = store.event_tally(&g, MESSAGE_IDS[0]).await.unwrap_err();
    assert!(err.to_string().contains("corrupt RSVP"), "{err}");

    conn.execute("UPDATE event_card SET from_me = 7", [])
        .unwrap();
    assert!(matches!(
        store.load_event(&g, MESSAGE_IDS[0]).await,
        Err(Error::Corrupt { .. })
    ));

    conn.execute(
        "UPDATE device_list_entry SET device = 70000 WHERE device = 99",
        [],
    )
    .unwrap();
    assert!(store.load_device_lists(&[jid(PNS[0])]).await.is_err());

    conn.execute("UPDATE group_metadata SET addressing_mode = 'both'", [])
        .unwrap();
    assert!(store.load_group(&g).await.is_err());

    conn.execute("UPDATE message_secret SET secret = x'00'", [])
        .unwrap();
    assert!(
        store
            .message_secret(&g, &jid(LIDS[0]), MESSAGE_IDS[0])
            .await
            .is_err()
    );

    conn.execute("UPDATE sent_message SET state = 5", [])
        .unwrap();
    assert!(
        store.pending_sent_messages(10).await.is_ok(),
        "state 5 is not pending"
    );
    assert!(store.load_sent_message(&g, MESSAGE_IDS[0]).await.is_err());

    // Credentials whose public key does not match the private key.
    conn.execute("UPDATE device SET identity_public = zeroblob(32)", [])
        .unwrap();
    let err = store.load_credentials().await.unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    drop(store);
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(err.to_string().contains("identity key pair"), "{err}");

    // STRICT tables refuse values of the wrong type outright.
    assert!(
        conn.execute("UPDATE prekey SET uploaded = 'yes'", [])
            .is_err(),
        "STRICT column type"
    );
}

/// A batch that fails inside SQLite halfway through (a trigger aborts the RSVP insert,
/// long after sessions, keys and credentials were written) leaves nothing behind.
#[tokio::test]
async fn batch_failing_inside_sqlite_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).await.unwrap();
    raw(&path)
        .execute_batch(
            "CREATE TRIGGER fail_midway BEFORE INSERT ON rsvp
             WHEN NEW.voter_jid = '99003@lid'
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    let mut batch = full_batch(3);
    batch.rsvps.push(rsvp(
        GROUPS[0],
        MESSAGE_IDS[1],
        LIDS[2],
        RsvpStatus::Going,
        1,
    ));
    let err = store.commit_batch(batch).await.unwrap_err();
    assert!(matches!(err, Error::Sqlite { .. }), "{err}");
    assert!(err.to_string().contains("injected failure"), "{err}");
    let snap = snapshot(&store).await;
    assert!(snap.is_empty(), "partially applied: {snap:?}");
    assert!(
        store.local_identity().await.is_err(),
        "identity cache untouched"
    );

    raw(&path)
        .execute_batch("DROP TRIGGER fail_midway")
        .unwrap();
    store.commit_batch(full_batch(3)).await.unwrap();
    assert_full(&snapshot(&store).await, 3);
    store.integrity_check().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_and_two_handles_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let a = Arc::new(SqliteStore::open(&path).await.unwrap());
    let b = Arc::new(SqliteStore::open(&path).await.unwrap());
    let tasks: Vec<_> = (0..8u8)
        .map(|t| {
            let store = if t % 2 == 0 {
                Arc::clone(&a)
            } else {
                Arc::clone(&b)
            };
            tokio::spawn(async move {
                for i in 0..20u8 {
                    let mut batch = StoreBatch::new();
                    batch.signal.sessions.push((
                        ProtocolAddress::new(format!("t{t}"), u32::from(i)),
                        vec![t, i].into(),
                    ));
                    batch.sent_messages.push(sent(
                        GROUPS[0],
                        &format!("m{t}-{i}"),
                        i,
                        SentState::Pending,
                    ));
                    store.commit_batch(batch).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for t in 0..8u8 {
        assert_eq!(
            b.session_devices(&format!("t{t}")).await.unwrap(),
            (0..20).collect::<Vec<u32>>()
        );
    }
    assert_eq!(a.pending_sent_messages(1000).await.unwrap().len(), 160);
    // Credentials written through one handle are seen by a new one.
    a.save_credentials(&creds(4)).await.unwrap();
    let c = SqliteStore::open(&path).await.unwrap();
    assert_eq!(c.local_identity().await.unwrap(), creds(4).identity);
}

fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// Without a tokio runtime the calls run inline on the caller's thread.
#[test]
fn works_without_a_tokio_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_blocking(&dir.path().join("store.db")).unwrap();
    block_on(store.commit_batch(full_batch(9))).unwrap();
    assert_full(&block_on(snapshot(&store)), 9);
    block_on(store.clear_all()).unwrap();
    assert!(block_on(snapshot(&store)).is_empty());
    let reopened = block_on(SqliteStore::open(dir.path().join("store.db"))).unwrap();
    assert!(block_on(reopened.load_credentials()).unwrap().is_none());
}

/// A logout leaves no key material in the file or its WAL (secure_delete + checkpoint).
#[tokio::test]
async fn logout_leaves_no_key_bytes_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let c = creds(77);
    store.save_credentials(&c).await.unwrap();
    let mut batch = StoreBatch::new();
    batch
        .secrets
        .push(secret(GROUPS[0], LIDS[0], MESSAGE_IDS[0], 0xC3));
    store.commit_batch(batch).await.unwrap();
    store.clear_all().await.unwrap();
    let identity_private = c.identity.key_pair.private.to_bytes();
    let noise_private = c.noise_key.private.to_bytes();
    for file in [path.clone(), dir.path().join("store.db-wal")] {
        let bytes = std::fs::read(&file).unwrap_or_default();
        for (what, needle) in [
            ("identity private key", &identity_private[..]),
            ("noise private key", &noise_private[..]),
            ("ADV secret", &c.adv_secret.as_bytes()[..]),
            ("message secret", &[0xC3; 32][..]),
        ] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{what} still in {}",
                file.display()
            );
        }
    }
}
