//! CLI plumbing shared by the commands that talk to a server: where the store is,
//! which server and root to use, and how results are printed (`--json`: one JSON object
//! per line on stdout, for scripts).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use serde_json::{Value, json};
use waevent::client::ClientConfig;
use waevent::noise::TrustRoot;
use waevent::store::{SqliteStore, Store};

/// File name of the default store inside the data directory.
const DEFAULT_STORE_FILE: &str = "store.db";

/// Options of every command that uses a session.
#[derive(Args, Debug, Clone)]
pub struct SessionOpts {
    /// The session store (SQLite). Default: `waevent/store.db` in the user's data
    /// directory (e.g. ~/.local/share/waevent/store.db).
    #[arg(long, global = true, value_name = "PATH")]
    pub store: Option<PathBuf>,
    /// Server websocket URL instead of WhatsApp's (e.g. the simulator's
    /// ws://127.0.0.1:PORT/ws/chat).
    #[arg(long, global = true, value_name = "URL")]
    pub server: Option<String>,
    /// Certificate root of that server, 64 hex characters (default: WhatsApp's). The
    /// server's certificate chain is always verified.
    #[arg(long = "trust-root", global = true, value_name = "HEX")]
    pub trust_root: Option<String>,
    /// Print one JSON object per line instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

impl SessionOpts {
    /// The store path: `--store`, or the default in the data directory (its directory
    /// is created owner-only).
    pub fn store_path(&self) -> Result<PathBuf, String> {
        if let Some(p) = &self.store {
            return Ok(p.clone());
        }
        let base = dirs::data_dir().ok_or(
            "cannot find the user's data directory (no HOME?); pass --store PATH".to_owned(),
        )?;
        let dir = base.join("waevent");
        create_private_dir(&dir)?;
        Ok(dir.join(DEFAULT_STORE_FILE))
    }

    /// Opens the SQLite store.
    pub async fn open_store(&self) -> Result<(Arc<dyn Store>, PathBuf), String> {
        let path = self.store_path()?;
        let store = SqliteStore::open(&path)
            .await
            .map_err(|e| format!("cannot open the store {}: {e}", path.display()))?;
        Ok((Arc::new(store), path))
    }

    /// The client configuration: WhatsApp's server and root unless overridden.
    pub fn client_config(&self) -> Result<ClientConfig, String> {
        let mut config = ClientConfig::default();
        if let Some(url) = &self.server {
            if !(url.starts_with("ws://") || url.starts_with("wss://")) {
                return Err(format!(
                    "--server {url:?} is not a websocket URL (ws://… or wss://…)"
                ));
            }
            config.url = url.clone();
        }
        if let Some(hex) = &self.trust_root {
            config.trust_root = hex
                .parse::<TrustRoot>()
                .map_err(|e| format!("--trust-root: {e}"))?;
        }
        Ok(config)
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// Prints results as text or as JSON lines.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// One JSON object on its own line (flushed at once: scripts read it live).
    pub fn json_line(&self, value: &Value) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{value}").and_then(|_| out.flush());
    }

    /// A line of text for people (stdout), or nothing in JSON mode.
    pub fn text(&self, line: &str) {
        use std::io::Write;
        if !self.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}").and_then(|_| out.flush());
        }
    }

    /// An error: `{"event":"error","message"}` in JSON mode, `waevent: …` on stderr
    /// otherwise.
    pub fn error(&self, message: &str) {
        let message = super::one_line(message);
        if self.json {
            self.json_line(&json!({"event": "error", "message": message}));
        } else {
            eprintln!("waevent: {message}");
        }
    }
}
