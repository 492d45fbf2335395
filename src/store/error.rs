//! The store's error type: what failed, in words a person on call can act on.

use std::path::PathBuf;

use crate::signal::RecordError;
use crate::signal::store::StoreError;

/// Errors from a [`Store`](super::Store) backend.
///
/// Messages never contain key material or stored payloads, only what was being done
/// and which kind of row was involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite refused or failed an operation.
    #[cfg(feature = "sqlite")]
    #[error("sqlite failed to {context}: {source}")]
    Sqlite {
        /// What the store was doing (`"commit a batch"`, `"load sessions"`, …).
        context: &'static str,
        /// SQLite's own error.
        #[source]
        source: rusqlite::Error,
    },
    /// A file-system operation on the database file failed.
    #[error("cannot {context} {}: {source}", path.display())]
    Io {
        /// What the store was doing (`"create"`, `"tighten the mode of"`, …).
        context: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A stored row could not be read back (garbage blob, bad JID text, out-of-range
    /// number): the database was damaged or written by something else.
    #[error("corrupt {what} in the store: {detail}")]
    Corrupt {
        /// Which kind of row.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The caller asked for something the store refuses (an out-of-range prekey id, a
    /// group JID that is not a group, an empty message id, …). Nothing was written.
    #[error("refused {what}: {detail}")]
    Invalid {
        /// Which kind of input.
        what: &'static str,
        /// Why it was refused.
        detail: String,
    },
    /// The file is not a waevent store (another application's SQLite database).
    #[error("{} is not a waevent store: {detail}", path.display())]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// What gave it away.
        detail: String,
    },
    /// The database was written by a newer waevent whose schema this build cannot read.
    #[error(
        "store schema version {found} is newer than this build of waevent supports ({supported}); upgrade waevent"
    )]
    SchemaTooNew {
        /// The version in the file (`PRAGMA user_version`).
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// No device credentials are stored yet (generate and save them before connecting),
    /// or they were wiped by a logout.
    #[error("no device credentials in the store (not set up yet, or logged out)")]
    NoCredentials,
    /// `PRAGMA integrity_check` reported problems.
    #[error("database integrity check failed: {0}")]
    IntegrityCheck(String),
    /// The blocking worker running a database call failed (panicked or was cancelled).
    #[error("store worker thread failed: {0}")]
    Worker(String),
    /// A stored Signal record could not be decoded.
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Result of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    #[cfg(feature = "sqlite")]
    pub(crate) fn corrupt(what: &'static str, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            what,
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        Error::Invalid {
            what,
            detail: detail.into(),
        }
    }
}

impl From<Error> for StoreError {
    /// Signal-trait calls report store failures as [`StoreError::Backend`] (with the
    /// full message) and record failures as [`StoreError::Record`].
    fn from(err: Error) -> Self {
        match err {
            Error::Record(r) => StoreError::Record(r),
            other => StoreError::Backend(other.to_string()),
        }
    }
}
