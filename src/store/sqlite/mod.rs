//! [`SqliteStore`]: the [`Store`] in one SQLite file (rusqlite, bundled SQLite).
//!
//! Durability choices:
//! * **WAL journal, `synchronous=FULL`.** In WAL mode `NORMAL` is safe against a
//!   process crash but a power loss can roll back the last commits. Here that is not
//!   acceptable: the client commits an advanced ratchet (or sender-key iteration)
//!   *before* sending the bytes, and a rolled-back commit after the bytes left would
//!   make it encrypt the next message with the same message key. `FULL` costs one
//!   `fsync` of the WAL per commit, small next to a network round trip.
//! * **One transaction per batch** (`BEGIN IMMEDIATE`, so a writer never has to upgrade
//!   a read lock), and every multi-row change (logout, prekey removal, migrations) in
//!   one transaction too.
//! * **Owner-only file.** The file is created with mode 0600 before SQLite opens it,
//!   an existing file (and its `-wal`/`-shm`/`-journal` companions) with a looser mode
//!   is tightened; SQLite gives the companions it creates the main file's mode.
//! * `secure_delete=ON` overwrites deleted rows (consumed prekeys, old sessions, a
//!   logout) with zeros, and a logout truncates the WAL afterwards.
//! * `foreign_keys=ON` (child rows cascade), `STRICT` tables, `cell_size_check=ON`,
//!   `trusted_schema=OFF`, a 5 s busy timeout for a second process (e.g. the CLI
//!   reading a tally while the gateway runs).
//!
//! The connection sits behind a `std::sync::Mutex`; every call runs on tokio's blocking
//! pool (`spawn_blocking`), or inline when no tokio runtime is running. Statements are
//! cached (`prepare_cached`). A row that does not decode (garbage blob, bad JID text,
//! out-of-range number) is an [`Error::Corrupt`], never a panic.

mod rows;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, TransactionBehavior};

use super::Store;
use super::batch::{CommitOutcome, StoreBatch};
use super::credentials::DeviceCredentials;
use super::error::{Error, Result};
use super::records::{
    DecryptedMessage, DeviceList, EventRecord, GroupMetadata, IdempotencyClaim, IdempotencyState,
    MessageSecretRecord, PruneBefore, PruneCounts, RsvpRecord, StoredResponse, StoredSentMessage,
    WebhookJob,
};
use crate::jid::Jid;
use crate::signal::address::{ProtocolAddress, SenderKeyName};
use crate::signal::curve::PublicKey;
use crate::signal::identity::LocalIdentity;
use crate::signal::store::{
    IdentityChange, IdentityStore, PreKeyStore, SenderKeyStore, SessionStore, SignalStateBatch,
    SignalStore, SignedPreKeyStore, StoreResult,
};

/// The schema version this build writes and reads (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = schema::MIGRATIONS.len() as i64;

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const STATEMENT_CACHE: usize = 128;

/// Maps a rusqlite error to [`Error::Sqlite`] with what was being done.
pub(super) fn sql(context: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |source| Error::Sqlite { context, source }
}

/// The [`Store`] in a SQLite file. Cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// Our identity, read on open and kept in step with commits (the Signal code asks
    /// for it on every message).
    local: Arc<RwLock<Option<LocalIdentity>>>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Runs `job` on tokio's blocking pool, or right here without a runtime.
async fn run_blocking<T, F>(job: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(job)
            .await
            .map_err(|e| Error::Worker(e.to_string()))?,
        Err(_) => job(),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path` on the blocking pool. See
    /// [`open_blocking`](Self::open_blocking).
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        run_blocking(move || Self::open_blocking(&path)).await
    }

    /// Opens (creating if needed) the store at `path`, blocking the thread.
    ///
    /// Creates the file owner-only (0600) and tightens a looser existing one, sets the
    /// pragmas, and migrates the schema. Refuses a file that is not a waevent store
    /// ([`Error::NotAStore`]), one written by a newer schema
    /// ([`Error::SchemaTooNew`]), and a path that is not a regular file.
    pub fn open_blocking(path: &Path) -> Result<Self> {
        prepare_file(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn =
            Connection::open_with_flags(path, flags).map_err(sql("open the database"))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sql("set the busy timeout"))?;
        check_identity(&conn, path)?;
        configure(&conn)?;
        migrate(&mut conn)?;
        // SQLite has now created the WAL companions (with the main file's mode).
        for companion in companions(path) {
            tighten_mode(&companion)?;
        }
        let local = rows::load_local_identity(&conn)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            local: Arc::new(RwLock::new(local)),
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `PRAGMA integrity_check` and `PRAGMA foreign_key_check`; refuses with
    /// [`Error::IntegrityCheck`] listing the first problems.
    pub async fn integrity_check(&self) -> Result<()> {
        self.run(|conn| {
            let mut stmt = conn
                .prepare("PRAGMA integrity_check(20)")
                .map_err(sql("check integrity"))?;
            let report: Vec<String> = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(sql("check integrity"))?
                .collect::<rusqlite::Result<_>>()
                .map_err(sql("check integrity"))?;
            if report != ["ok"] {
                return Err(Error::IntegrityCheck(report.join("; ")));
            }
            let mut stmt = conn
                .prepare("PRAGMA foreign_key_check")
                .map_err(sql("check foreign keys"))?;
            let broken: Vec<String> = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(sql("check foreign keys"))?
                .collect::<rusqlite::Result<_>>()
                .map_err(sql("check foreign keys"))?;
            if !broken.is_empty() {
                return Err(Error::IntegrityCheck(format!(
                    "{} rows with dangling foreign keys in {}",
                    broken.len(),
                    broken.join(", ")
                )));
            }
            Ok(())
        })
        .await
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        run_blocking(move || {
            // A panic inside `f` drops its open transaction, which rolls back: the
            // connection is consistent, so a poisoned lock is taken over.
            let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard)
        })
        .await
    }

    /// Runs `f` inside one `BEGIN IMMEDIATE` transaction; commits if it succeeds.
    async fn write<T, F>(&self, context: &'static str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    {
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql(context))?;
            let out = f(&tx)?;
            tx.commit().map_err(sql(context))?;
            Ok(out)
        })
        .await
    }

    fn set_local(&self, local: Option<LocalIdentity>) {
        *self.local.write().unwrap_or_else(PoisonError::into_inner) = local;
    }
}

/// `-wal`, `-shm` and `-journal` next to the database.
fn companions(path: &Path) -> Vec<PathBuf> {
    ["-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| {
            let mut name = path.as_os_str().to_os_string();
            name.push(suffix);
            PathBuf::from(name)
        })
        .collect()
}

/// Creates the file with mode 0600 if missing, and tightens its mode (and its
/// companions') if group or others have any access.
fn prepare_file(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(Error::Io {
                    context: "create the database file",
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
    let meta = std::fs::metadata(path).map_err(|source| Error::Io {
        context: "inspect the database file",
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(Error::NotAStore {
            path: path.to_path_buf(),
            detail: "not a regular file".into(),
        });
    }
    tighten_mode(path)?;
    for companion in companions(path) {
        tighten_mode(&companion)?;
    }
    Ok(())
}

#[cfg(unix)]
fn tighten_mode(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Io {
                context: "inspect",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| Error::Io {
                context: "tighten the mode (to 0600) of",
                path: path.to_path_buf(),
                source,
            },
        )?;
        tracing::warn!(
            path = %path.display(),
            old_mode = format_args!("{mode:o}"),
            "store file was readable by others; mode set to 0600"
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn tighten_mode(_path: &Path) -> Result<()> {
    Ok(())
}

/// Refuses files that are not SQLite databases or belong to another application,
/// before anything is written to them.
fn check_identity(conn: &Connection, path: &Path) -> Result<()> {
    let not_db = |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => Error::NotAStore {
            path: path.to_path_buf(),
            detail: "not a SQLite database".into(),
        },
        _ => Error::Sqlite {
            context: "read the database header",
            source: e,
        },
    };
    let app_id: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(not_db)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(not_db)?;
    if app_id != schema::APPLICATION_ID && !(app_id == 0 && version == 0) {
        return Err(Error::NotAStore {
            path: path.to_path_buf(),
            detail: format!("application id {app_id:#x}, schema version {version}"),
        });
    }
    if version == 0 {
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'",
                [],
                |r| r.get(0),
            )
            .map_err(not_db)?;
        if tables != 0 {
            return Err(Error::NotAStore {
                path: path.to_path_buf(),
                detail: format!("{tables} tables of another application"),
            });
        }
    }
    if version > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

fn configure(conn: &Connection) -> Result<()> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(sql("switch to WAL journaling"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Sqlite {
            context: "switch to WAL journaling",
            source: rusqlite::Error::InvalidParameterName(format!("journal_mode stayed {mode}")),
        });
    }
    for (pragma, value) in [
        ("synchronous", "FULL"),
        ("foreign_keys", "ON"),
        ("secure_delete", "ON"),
        ("trusted_schema", "OFF"),
        ("cell_size_check", "ON"),
        // 16 MiB of page cache (the default is 2 MB): a group of 1,024 members has
        // ~3,000 sessions of 1–2 KiB, read on every sender-key distribution.
        ("cache_size", "-16384"),
    ] {
        conn.pragma_update(None, pragma, value)
            .map_err(sql("set pragmas"))?;
    }
    let fk: i64 = conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .map_err(sql("set pragmas"))?;
    if fk != 1 {
        return Err(Error::Sqlite {
            context: "enable foreign keys",
            source: rusqlite::Error::InvalidParameterName("foreign_keys stayed off".into()),
        });
    }
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql("start the schema migration"))?;
    // Read again under the write lock: another process may have migrated meanwhile.
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql("read the schema version"))?;
    if version > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    let from = usize::try_from(version).map_err(|_| {
        Error::corrupt("schema version", format!("negative user_version {version}"))
    })?;
    if from == schema::MIGRATIONS.len() {
        return Ok(());
    }
    for step in schema::MIGRATIONS.iter().skip(from) {
        tx.execute_batch(step).map_err(sql("migrate the schema"))?;
    }
    tx.pragma_update(None, "application_id", schema::APPLICATION_ID)
        .map_err(sql("migrate the schema"))?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(sql("migrate the schema"))?;
    tx.commit().map_err(sql("commit the schema migration"))?;
    Ok(())
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl IdentityStore for SqliteStore {
    async fn local_identity(&self) -> StoreResult<LocalIdentity> {
        self.local
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| Error::NoCredentials.into())
    }

    async fn load_identities(
        &self,
        addresses: &[ProtocolAddress],
    ) -> StoreResult<Vec<Option<PublicKey>>> {
        let addresses = addresses.to_vec();
        Ok(self
            .run(move |conn| {
                addresses
                    .iter()
                    .map(|a| rows::load_identity(conn, a))
                    .collect()
            })
            .await?)
    }

    async fn save_identity(
        &self,
        address: &ProtocolAddress,
        identity: &PublicKey,
    ) -> StoreResult<IdentityChange> {
        let (address, identity) = (address.clone(), *identity);
        Ok(self
            .write("save an identity", move |tx| {
                rows::save_identity(tx, &address, &identity)
            })
            .await?)
    }

    async fn delete_identities_of(&self, name: &str) -> StoreResult<()> {
        let name = name.to_string();
        Ok(self
            .write("delete identities", move |tx| {
                tx.prepare_cached("DELETE FROM identity WHERE name = ?1")
                    .and_then(|mut s| s.execute([&name]))
                    .map_err(sql("delete identities"))?;
                Ok(())
            })
            .await?)
    }
}

#[async_trait]
impl PreKeyStore for SqliteStore {
    async fn load_prekey(&self, id: u32) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .run(move |conn| {
                conn.prepare_cached("SELECT record FROM prekey WHERE id = ?1")
                    .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
                    .map_err(sql("load a prekey"))
            })
            .await?)
    }

    async fn store_prekeys(&self, prekeys: &[(u32, Vec<u8>)]) -> StoreResult<()> {
        self.commit_batch(StoreBatch {
            prekeys: prekeys.to_vec(),
            ..StoreBatch::default()
        })
        .await?;
        Ok(())
    }

    async fn remove_prekeys(&self, ids: &[u32]) -> StoreResult<()> {
        let ids = ids.to_vec();
        Ok(self
            .write("remove prekeys", move |tx| rows::remove_prekeys(tx, &ids))
            .await?)
    }

    async fn prekey_count(&self) -> StoreResult<usize> {
        let count: i64 = self
            .run(|conn| {
                conn.query_row("SELECT count(*) FROM prekey", [], |r| r.get(0))
                    .map_err(sql("count prekeys"))
            })
            .await?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    async fn max_prekey_id(&self) -> StoreResult<Option<u32>> {
        Ok(self
            .run(|conn| {
                let max: Option<i64> = conn
                    .query_row("SELECT max(id) FROM prekey", [], |r| r.get(0))
                    .map_err(sql("find the largest prekey id"))?;
                max.map(|id| rows::to_u32("prekey id", id)).transpose()
            })
            .await?)
    }
}

#[async_trait]
impl SignedPreKeyStore for SqliteStore {
    async fn load_signed_prekey(&self, id: u32) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .run(move |conn| {
                conn.prepare_cached("SELECT record FROM signed_prekey WHERE id = ?1")
                    .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
                    .map_err(sql("load a signed prekey"))
            })
            .await?)
    }

    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> StoreResult<()> {
        self.commit_batch(StoreBatch {
            signed_prekeys: vec![(id, record.to_vec())],
            ..StoreBatch::default()
        })
        .await?;
        Ok(())
    }

    async fn remove_signed_prekey(&self, id: u32) -> StoreResult<()> {
        Ok(self
            .write("remove a signed prekey", move |tx| {
                tx.prepare_cached("DELETE FROM signed_prekey WHERE id = ?1")
                    .and_then(|mut s| s.execute([id]))
                    .map_err(sql("remove a signed prekey"))?;
                Ok(())
            })
            .await?)
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn load_sessions(
        &self,
        addresses: &[ProtocolAddress],
    ) -> StoreResult<Vec<Option<Vec<u8>>>> {
        let addresses = addresses.to_vec();
        Ok(self
            .run(move |conn| rows::load_sessions(conn, &addresses))
            .await?)
    }

    async fn session_devices(&self, name: &str) -> StoreResult<Vec<u32>> {
        let name = name.to_string();
        Ok(self
            .run(move |conn| {
                let mut stmt = conn
                    .prepare_cached("SELECT device FROM session WHERE name = ?1 ORDER BY device")
                    .map_err(sql("list session devices"))?;
                let devices: Vec<i64> = stmt
                    .query_map([&name], |r| r.get(0))
                    .and_then(Iterator::collect)
                    .map_err(sql("list session devices"))?;
                devices
                    .into_iter()
                    .map(|d| rows::to_u32("session device", d))
                    .collect()
            })
            .await?)
    }

    async fn delete_sessions_of(&self, name: &str) -> StoreResult<()> {
        let name = name.to_string();
        Ok(self
            .write("delete sessions", move |tx| {
                tx.prepare_cached("DELETE FROM session WHERE name = ?1")
                    .and_then(|mut s| s.execute([&name]))
                    .map_err(sql("delete sessions"))?;
                Ok(())
            })
            .await?)
    }
}

#[async_trait]
impl SenderKeyStore for SqliteStore {
    async fn load_sender_key(&self, name: &SenderKeyName) -> StoreResult<Option<Vec<u8>>> {
        let name = name.clone();
        Ok(self
            .run(move |conn| {
                conn.prepare_cached(
                    "SELECT record FROM sender_key
                     WHERE group_jid = ?1 AND sender_name = ?2 AND sender_device = ?3",
                )
                .and_then(|mut s| {
                    s.query_row(
                        rusqlite::params![name.group, name.sender.name, name.sender.device_id],
                        |r| r.get(0),
                    )
                    .optional()
                })
                .map_err(sql("load a sender key"))
            })
            .await?)
    }
}

#[async_trait]
impl SignalStore for SqliteStore {
    async fn commit(&self, batch: SignalStateBatch) -> StoreResult<Vec<IdentityChange>> {
        Ok(self
            .commit_batch(StoreBatch::from_signal(batch))
            .await?
            .identity_changes)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn commit_batch(&self, batch: StoreBatch) -> Result<CommitOutcome> {
        let batch = batch.prepare()?;
        if batch.is_empty() {
            return Ok(CommitOutcome::default());
        }
        let new_local = batch.credentials.as_ref().map(|c| c.identity.clone());
        let local = Arc::clone(&self.local);
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql("begin a batch"))?;
            let outcome = rows::apply_batch(&tx, batch)?;
            tx.commit().map_err(sql("commit a batch"))?;
            // Still under the connection lock: readers of the cache see commits in order.
            if let Some(identity) = new_local {
                *local.write().unwrap_or_else(PoisonError::into_inner) = Some(identity);
            }
            Ok(outcome)
        })
        .await
    }

    async fn load_credentials(&self) -> Result<Option<DeviceCredentials>> {
        self.run(|conn| rows::load_credentials(conn)).await
    }

    async fn clear_all(&self) -> Result<()> {
        let local = Arc::clone(&self.local);
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql("wipe the store"))?;
            for table in schema::TABLES {
                tx.execute(&format!("DELETE FROM {table}"), [])
                    .map_err(sql("wipe the store"))?;
            }
            tx.commit().map_err(sql("wipe the store"))?;
            *local.write().unwrap_or_else(PoisonError::into_inner) = None;
            // Old page images with key material stay in the WAL until a checkpoint:
            // write them back (zeroed by secure_delete) and truncate the WAL. A busy
            // reader can keep part of it; that is not an error.
            let _: rusqlite::Result<(i64, i64, i64)> =
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                });
            Ok(())
        })
        .await?;
        self.set_local(None);
        Ok(())
    }

    async fn unuploaded_prekeys(&self, max: usize) -> Result<Vec<(u32, Vec<u8>)>> {
        self.run(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, record FROM prekey WHERE uploaded = 0 ORDER BY id LIMIT ?1",
                )
                .map_err(sql("list prekeys to upload"))?;
            let found: Vec<(i64, Vec<u8>)> = stmt
                .query_map([limit(max)], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(Iterator::collect)
                .map_err(sql("list prekeys to upload"))?;
            found
                .into_iter()
                .map(|(id, record)| Ok((rows::to_u32("prekey id", id)?, record)))
                .collect()
        })
        .await
    }

    async fn lids_for_pns(&self, pns: &[Jid]) -> Result<Vec<Option<Jid>>> {
        let pns = pns.to_vec();
        self.run(move |conn| rows::map_namespace(conn, &pns, false))
            .await
    }

    async fn pns_for_lids(&self, lids: &[Jid]) -> Result<Vec<Option<Jid>>> {
        let lids = lids.to_vec();
        self.run(move |conn| rows::map_namespace(conn, &lids, true))
            .await
    }

    async fn load_device_lists(&self, users: &[Jid]) -> Result<Vec<Option<DeviceList>>> {
        let users = users.to_vec();
        self.run(move |conn| {
            users
                .iter()
                .map(|u| rows::load_device_list(conn, &u.to_non_ad()))
                .collect()
        })
        .await
    }

    async fn load_group(&self, group: &Jid) -> Result<Option<GroupMetadata>> {
        let group = group.clone();
        self.run(move |conn| rows::load_group(conn, &group)).await
    }

    async fn sender_key_holders(&self, group: &Jid) -> Result<Vec<Jid>> {
        let group = group.to_string();
        self.run(move |conn| rows::sender_key_holders(conn, &group))
            .await
    }

    async fn message_secret(
        &self,
        chat: &Jid,
        sender: &Jid,
        message_id: &str,
    ) -> Result<Option<MessageSecretRecord>> {
        let (chat, sender, id) = (chat.clone(), sender.to_non_ad(), message_id.to_string());
        self.run(move |conn| rows::load_message_secret(conn, &chat, &sender, &id))
            .await
    }

    async fn load_event(&self, chat: &Jid, message_id: &str) -> Result<Option<EventRecord>> {
        let (chat, id) = (chat.to_string(), message_id.to_string());
        self.run(move |conn| {
            Ok(rows::load_events(
                conn,
                "SELECT chat_jid, message_id, creator_jid, from_me, card, timestamp_ms
                 FROM event_card WHERE chat_jid = ?1 AND message_id = ?2",
                rusqlite::params![chat, id],
            )?
            .pop())
        })
        .await
    }

    async fn events_by_id(&self, message_id: &str) -> Result<Vec<EventRecord>> {
        let id = message_id.to_string();
        self.run(move |conn| {
            let mut events = rows::load_events(
                conn,
                "SELECT chat_jid, message_id, creator_jid, from_me, card, timestamp_ms
                 FROM event_card WHERE message_id = ?1",
                rusqlite::params![id],
            )?;
            events.sort_by(|a, b| a.chat.cmp(&b.chat));
            Ok(events)
        })
        .await
    }

    async fn rsvps(&self, chat: &Jid, event_id: &str) -> Result<Vec<RsvpRecord>> {
        let (chat, id) = (chat.clone(), event_id.to_string());
        self.run(move |conn| rows::load_rsvps(conn, &chat, &id))
            .await
    }

    async fn load_sent_message(
        &self,
        chat: &Jid,
        message_id: &str,
    ) -> Result<Option<StoredSentMessage>> {
        let (chat, id) = (chat.to_string(), message_id.to_string());
        self.run(move |conn| {
            Ok(rows::load_sent(
                conn,
                "SELECT chat_jid, message_id, message, stanza, state, refused_code, source,
                        created_at_ms
                 FROM sent_message WHERE chat_jid = ?1 AND message_id = ?2",
                rusqlite::params![chat, id],
            )?
            .pop())
        })
        .await
    }

    async fn pending_sent_messages(&self, max: usize) -> Result<Vec<StoredSentMessage>> {
        self.run(move |conn| {
            rows::load_sent(
                conn,
                "SELECT chat_jid, message_id, message, stanza, state, refused_code, source,
                        created_at_ms
                 FROM sent_message WHERE state = 0
                 ORDER BY created_at_ms, chat_jid, message_id LIMIT ?1",
                rusqlite::params![limit(max)],
            )
        })
        .await
    }

    async fn bump_sent_retry(
        &self,
        chat: &Jid,
        message_id: &str,
        device: &Jid,
    ) -> Result<Option<u32>> {
        let (chat, id, device) = (chat.to_string(), message_id.to_string(), device.to_string());
        self.write("count a retry receipt", move |tx| {
            rows::bump_sent_retry(tx, &chat, &id, &device)
        })
        .await
    }

    async fn load_decrypted(&self, ciphertext_hash: &[u8; 32]) -> Result<Option<DecryptedMessage>> {
        let hash = *ciphertext_hash;
        self.run(move |conn| rows::load_decrypted(conn, &hash))
            .await
    }

    async fn due_webhooks(&self, now_ms: i64, max: usize) -> Result<Vec<WebhookJob>> {
        self.run(move |conn| rows::due_webhooks(conn, now_ms, limit(max)))
            .await
    }

    async fn reschedule_webhook(
        &self,
        id: &str,
        next_attempt_at_ms: i64,
        error: &str,
    ) -> Result<bool> {
        let (id, error) = (id.to_string(), error.to_string());
        self.write("reschedule a webhook", move |tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE webhook_outbox
                     SET attempts = min(attempts + 1, 4294967295),
                         next_attempt_at_ms = ?2, last_error = ?3
                     WHERE id = ?1",
                )
                .and_then(|mut s| s.execute(rusqlite::params![id, next_attempt_at_ms, error]))
                .map_err(sql("reschedule a webhook"))?;
            Ok(changed > 0)
        })
        .await
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool> {
        let id = id.to_string();
        self.write("delete a webhook", move |tx| {
            let changed = tx
                .prepare_cached("DELETE FROM webhook_outbox WHERE id = ?1")
                .and_then(|mut s| s.execute([&id]))
                .map_err(sql("delete a webhook"))?;
            Ok(changed > 0)
        })
        .await
    }

    async fn webhook_count(&self) -> Result<u64> {
        self.run(|conn| {
            let n: i64 = conn
                .query_row("SELECT count(*) FROM webhook_outbox", [], |r| r.get(0))
                .map_err(sql("count webhooks"))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn claim_idempotency_key(&self, claim: &IdempotencyClaim) -> Result<IdempotencyState> {
        super::records::check_key("idempotency key", "instance", &claim.instance)?;
        super::records::check_key("idempotency key", "key", &claim.key)?;
        let claim = claim.clone();
        self.write("claim an idempotency key", move |tx| {
            rows::claim_idempotency_key(tx, &claim)
        })
        .await
    }

    async fn complete_idempotency_key(
        &self,
        instance: &str,
        key: &str,
        response: &StoredResponse,
    ) -> Result<()> {
        let (instance, key, response) = (instance.to_string(), key.to_string(), response.clone());
        self.write("complete an idempotency key", move |tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE idempotency_key SET status = ?3, body = ?4
                     WHERE instance = ?1 AND key = ?2",
                )
                .and_then(|mut s| {
                    s.execute(rusqlite::params![
                        instance,
                        key,
                        response.status,
                        response.body
                    ])
                })
                .map_err(sql("complete an idempotency key"))?;
            if changed == 0 {
                return Err(Error::invalid(
                    "idempotency key",
                    "completing a key that was not claimed",
                ));
            }
            Ok(())
        })
        .await
    }

    async fn release_idempotency_key(&self, instance: &str, key: &str) -> Result<bool> {
        let (instance, key) = (instance.to_string(), key.to_string());
        self.write("release an idempotency key", move |tx| {
            let changed = tx
                .prepare_cached(
                    "DELETE FROM idempotency_key
                     WHERE instance = ?1 AND key = ?2 AND status IS NULL",
                )
                .and_then(|mut s| s.execute([&instance, &key]))
                .map_err(sql("release an idempotency key"))?;
            Ok(changed > 0)
        })
        .await
    }

    async fn prune(&self, before: PruneBefore) -> Result<PruneCounts> {
        self.write("prune old rows", move |tx| rows::prune(tx, before))
            .await
    }
}
