//! The gateway's TOML configuration: where to listen, how large a request may be,
//! how webhooks are retried, and the instances (linked devices) with their tokens,
//! stores and webhook targets.
//!
//! ```toml
//! listen = "127.0.0.1:8080"
//! body_limit = 1048576
//!
//! [webhook]
//! initial_backoff_ms = 1000
//! max_backoff_ms = 300000
//!
//! [[instances]]
//! name = "main"
//! token = "a-long-random-instance-token"
//! client_token = "a-long-random-account-token"   # Z-API Client-Token (optional)
//! store = "/var/lib/waevent/main.db"
//! webhook_url = "https://example.com/waevent"
//! webhook_secret = "a-long-random-signing-secret"
//! ```
//!
//! Secrets ([`Secret`]) are compared in constant time, zeroized when dropped and
//! printed as `<redacted>` by `Debug`.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Shortest token or secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;
/// Longest token or secret accepted, in bytes.
pub const MAX_SECRET_LEN: usize = 512;
/// Longest instance name accepted, in bytes.
pub const MAX_INSTANCE_NAME_LEN: usize = 64;
/// Default request body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;
/// Largest request body limit that may be configured: 16 MiB.
pub const MAX_BODY_LIMIT: usize = 16 << 20;
/// Longest configuration file read, in bytes.
pub const MAX_CONFIG_LEN: u64 = 1 << 20;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the gateway config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not valid TOML of the expected shape.
    #[error("invalid gateway config: {0}")]
    Toml(String),
    /// A value is out of range or inconsistent with another one.
    #[error("invalid gateway config: {field}: {detail}")]
    Invalid {
        /// Which setting (`instances[0].token`, `body_limit`, …).
        field: String,
        /// What is wrong with it.
        detail: String,
    },
}

fn invalid(field: impl Into<String>, detail: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        detail: detail.into(),
    }
}

/// A token or signing secret. `Debug` never shows it, it is zeroized on drop, and
/// [`Secret::matches`] compares in constant time (over SHA-256 digests, so the time
/// does not depend on where the inputs differ nor on their lengths).
#[derive(Clone, Zeroize, ZeroizeOnDrop, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret's bytes, for signing. Never log them.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Whether `candidate` equals the secret, in constant time.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let want = Sha256::digest(self.0.as_bytes());
        let got = Sha256::digest(candidate);
        bool::from(want.ct_eq(&got))
    }

    fn check(&self, field: &str) -> Result<(), ConfigError> {
        let len = self.0.len();
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&len) {
            return Err(invalid(
                field,
                format!("must be {MIN_SECRET_LEN} to {MAX_SECRET_LEN} bytes long, got {len}"),
            ));
        }
        if self.0.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(invalid(
                field,
                "must be printable ASCII without spaces (it travels in HTTP headers and paths)",
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How webhook deliveries are retried.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Delay after the first failed attempt, in milliseconds; doubled after each
    /// further failure (plus up to 10 % jitter).
    pub initial_backoff_ms: u64,
    /// Longest delay between two attempts, in milliseconds.
    pub max_backoff_ms: u64,
    /// Give a delivery up after this many failed attempts; absent = retry forever.
    pub max_attempts: Option<u32>,
    /// Timeout of one delivery attempt, in milliseconds.
    pub timeout_ms: u64,
    /// How often the outbox is checked for due deliveries when nothing new arrives,
    /// in milliseconds.
    pub poll_interval_ms: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            initial_backoff_ms: 1_000,
            max_backoff_ms: 300_000,
            max_attempts: None,
            timeout_ms: 10_000,
            poll_interval_ms: 1_000,
        }
    }
}

impl WebhookSettings {
    fn check(&self) -> Result<(), ConfigError> {
        let day = 86_400_000;
        if !(1..=day).contains(&self.initial_backoff_ms) {
            return Err(invalid(
                "webhook.initial_backoff_ms",
                "must be 1 ms to 1 day",
            ));
        }
        if !(self.initial_backoff_ms..=day).contains(&self.max_backoff_ms) {
            return Err(invalid(
                "webhook.max_backoff_ms",
                "must be at least initial_backoff_ms and at most 1 day",
            ));
        }
        if self.max_attempts == Some(0) {
            return Err(invalid(
                "webhook.max_attempts",
                "must be 1 or more (leave it out to retry forever)",
            ));
        }
        if !(100..=600_000).contains(&self.timeout_ms) {
            return Err(invalid(
                "webhook.timeout_ms",
                "must be 100 ms to 10 minutes",
            ));
        }
        if !(10..=60_000).contains(&self.poll_interval_ms) {
            return Err(invalid(
                "webhook.poll_interval_ms",
                "must be 10 ms to 1 minute",
            ));
        }
        Ok(())
    }
}

/// One instance: a linked device, its credentials for the HTTP APIs, its store and
/// where its incoming events go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// Name used in URLs (`/instances/{name}/…`, `/api/message/event/{name}`):
    /// 1 to 64 of `A-Z a-z 0-9 _ - .`.
    pub name: String,
    /// The instance token: Z-API's `{token}` path segment, RyzeAPI's `token` header,
    /// and the WebSocket stream's token.
    pub token: Secret,
    /// Z-API's account security token (`Client-Token` header); when set, Z-API
    /// routes refuse requests without it.
    #[serde(default)]
    pub client_token: Option<Secret>,
    /// SQLite store of this instance (used by [`super::Gateway::open`]).
    #[serde(default)]
    pub store: Option<PathBuf>,
    /// Where incoming event cards, RSVPs, edits and cancellations are POSTed (the
    /// gateway's own JSON shape).
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Where incoming RSVPs are POSTed in Z-API's received-message shape.
    #[serde(default)]
    pub zapi_webhook_url: Option<String>,
    /// Key of the `X-Waevent-Signature` HMAC-SHA256; required with a webhook URL.
    #[serde(default)]
    pub webhook_secret: Option<Secret>,
}

impl InstanceConfig {
    fn check(&self, field: &str) -> Result<(), ConfigError> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= MAX_INSTANCE_NAME_LEN
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !name_ok {
            return Err(invalid(
                format!("{field}.name"),
                format!(
                    "must be 1 to {MAX_INSTANCE_NAME_LEN} of A-Z a-z 0-9 _ - ., got {:?}",
                    self.name.chars().take(80).collect::<String>()
                ),
            ));
        }
        self.token.check(&format!("{field}.token"))?;
        if let Some(t) = &self.client_token {
            t.check(&format!("{field}.client_token"))?;
        }
        if let Some(s) = &self.webhook_secret {
            s.check(&format!("{field}.webhook_secret"))?;
        }
        for (key, url) in [
            ("webhook_url", &self.webhook_url),
            ("zapi_webhook_url", &self.zapi_webhook_url),
        ] {
            let Some(url) = url else { continue };
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| invalid(format!("{field}.{key}"), format!("not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(invalid(
                    format!("{field}.{key}"),
                    "must be an http:// or https:// URL with a host",
                ));
            }
            if self.webhook_secret.is_none() {
                return Err(invalid(
                    format!("{field}.webhook_secret"),
                    format!("is required with {key} (every delivery is signed)"),
                ));
            }
        }
        Ok(())
    }

    /// Whether any webhook target is configured.
    pub fn has_webhook(&self) -> bool {
        self.webhook_url.is_some() || self.zapi_webhook_url.is_some()
    }
}

/// The TOML error without the source excerpt toml prints (the offending line may hold
/// a token), with the line number instead.
fn toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let line = e
        .span()
        .and_then(|span| text.get(..span.start))
        .map(|before| before.matches('\n').count() + 1);
    let message = e.message().trim_end();
    match line {
        Some(line) => ConfigError::Toml(format!("line {line}: {message}")),
        None => ConfigError::Toml(message.to_string()),
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_body_limit() -> usize {
    DEFAULT_BODY_LIMIT
}

fn default_idempotency_ttl() -> u64 {
    86_400
}

/// The whole gateway configuration. Build it with [`GatewayConfig::from_toml`] or
/// [`GatewayConfig::load`], which validate everything.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address to listen on (default `127.0.0.1:8080`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes (default 1 MiB); larger ones get 413.
    #[serde(default = "default_body_limit")]
    pub body_limit: usize,
    /// Webhook retry settings.
    #[serde(default)]
    pub webhook: WebhookSettings,
    /// How long an `Idempotency-Key` is remembered, in seconds (default 1 day); a
    /// key whose request never finished is also freed after this long.
    #[serde(default = "default_idempotency_ttl")]
    pub idempotency_ttl_secs: u64,
    /// The instances (at least one).
    pub instances: Vec<InstanceConfig>,
}

impl GatewayConfig {
    /// Parses and validates a TOML configuration. Refuses unknown keys, duplicate
    /// instance names or store paths, short or non-ASCII tokens, non-http(s) webhook
    /// URLs, a webhook URL without a secret, and out-of-range limits.
    pub fn from_toml(text: &str) -> Result<GatewayConfig, ConfigError> {
        let config: GatewayConfig = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and validates a TOML configuration file (at most 1 MiB); relative
    /// `store` paths are taken relative to the file's folder.
    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_CONFIG_LEN {
            return Err(invalid(
                "(file)",
                format!("larger than {MAX_CONFIG_LEN} bytes"),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let mut config = GatewayConfig::from_toml(&text)?;
        if let Some(dir) = path.parent() {
            config.resolve_relative_to(dir);
        }
        config.validate()?;
        Ok(config)
    }

    /// Makes relative `store` paths relative to `dir` (the config file's folder).
    pub fn resolve_relative_to(&mut self, dir: &Path) {
        for inst in &mut self.instances {
            if let Some(store) = &inst.store
                && store.is_relative()
            {
                inst.store = Some(dir.join(store));
            }
        }
    }

    /// Checks every value (what [`GatewayConfig::from_toml`] runs).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1024..=MAX_BODY_LIMIT).contains(&self.body_limit) {
            return Err(invalid(
                "body_limit",
                format!("must be 1024 to {MAX_BODY_LIMIT} bytes"),
            ));
        }
        self.webhook.check()?;
        if !(60..=90 * 86_400).contains(&self.idempotency_ttl_secs) {
            return Err(invalid(
                "idempotency_ttl_secs",
                "must be 60 seconds to 90 days",
            ));
        }
        if self.instances.is_empty() {
            return Err(invalid("instances", "at least one instance is required"));
        }
        let mut names = HashSet::new();
        let mut stores = HashSet::new();
        for (i, inst) in self.instances.iter().enumerate() {
            let field = format!("instances[{i}]");
            inst.check(&field)?;
            if !names.insert(inst.name.as_str()) {
                return Err(invalid(
                    format!("{field}.name"),
                    format!("{:?} is used by two instances", inst.name),
                ));
            }
            if let Some(store) = &inst.store
                && !stores.insert(store.as_path())
            {
                return Err(invalid(
                    format!("{field}.store"),
                    "each instance needs its own store file",
                ));
            }
        }
        Ok(())
    }

    /// The instance named `name`.
    pub fn instance(&self, name: &str) -> Option<&InstanceConfig> {
        self.instances.iter().find(|i| i.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        listen = "127.0.0.1:9090"
        body_limit = 2048
        [webhook]
        initial_backoff_ms = 50
        max_backoff_ms = 1000
        [[instances]]
        name = "main"
        token = "instance-token-0123456789"
        client_token = "client-token-0123456789"
        store = "/tmp/main.db"
        webhook_url = "https://example.com/hook"
        webhook_secret = "signing-secret-0123456789"
    "#;

    #[test]
    fn parses_and_redacts() {
        let c = GatewayConfig::from_toml(GOOD).unwrap();
        assert_eq!(c.listen.port(), 9090);
        assert_eq!(c.body_limit, 2048);
        assert_eq!(c.webhook.initial_backoff_ms, 50);
        assert_eq!(c.webhook.timeout_ms, 10_000);
        let inst = c.instance("main").unwrap();
        assert!(inst.token.matches(b"instance-token-0123456789"));
        assert!(!inst.token.matches(b"instance-token-012345678"));
        assert!(!inst.token.matches(b""));
        let dbg = format!("{c:?}");
        for secret in ["instance-token", "client-token", "signing-secret"] {
            assert!(!dbg.contains(secret), "{secret} leaked in {dbg}");
        }
        assert!(dbg.contains("<redacted>"));
    }

    #[test]
    fn relative_stores_follow_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.toml");
        std::fs::write(&path, GOOD.replace("/tmp/main.db", "data/main.db")).unwrap();
        let c = GatewayConfig::load(&path).unwrap();
        assert_eq!(
            c.instances[0].store.as_deref(),
            Some(dir.path().join("data/main.db").as_path())
        );
        assert_eq!(c.idempotency_ttl_secs, 86_400);
        let abs = GatewayConfig::from_toml(GOOD).unwrap();
        assert_eq!(
            abs.instances[0].store.as_deref(),
            Some(Path::new("/tmp/main.db"))
        );
    }

    #[test]
    fn shipped_example_is_valid() {
        let c = GatewayConfig::from_toml(include_str!("../../examples/gateway.toml")).unwrap();
        assert_eq!(c.instances.len(), 1);
        assert!(c.instances[0].client_token.is_some());
    }

    #[test]
    fn refuses_bad_configs() {
        let cases = [
            (
                GOOD.replace("name = \"main\"", "name = \"a/b\""),
                "instances[0].name",
            ),
            (
                GOOD.replace("instance-token-0123456789", "short"),
                "instances[0].token: must be 16",
            ),
            (
                GOOD.replace("instance-token-0123456789", "instance token 0123456789"),
                "printable ASCII",
            ),
            (
                GOOD.replace("https://example.com/hook", "ftp://x/y"),
                "webhook_url",
            ),
            (
                GOOD.replace("webhook_secret = \"signing-secret-0123456789\"", ""),
                "webhook_secret: is required",
            ),
            (
                GOOD.replace("body_limit = 2048", "body_limit = 10"),
                "body_limit",
            ),
            (
                GOOD.replace("max_backoff_ms = 1000", "max_backoff_ms = 10"),
                "max_backoff_ms",
            ),
            (GOOD.replace("listen =", "listne ="), "unknown field"),
            (
                format!(
                    "{GOOD}\n[[instances]]\nname = \"main\"\ntoken = \"another-token-0123456789\""
                ),
                "used by two instances",
            ),
            (
                format!(
                    "{GOOD}\n[[instances]]\nname = \"b\"\ntoken = \"another-token-0123456789\"\nstore = \"/tmp/main.db\""
                ),
                "own store file",
            ),
            ("instances = []".to_string(), "at least one instance"),
            (
                format!("idempotency_ttl_secs = 5\n{GOOD}"),
                "idempotency_ttl_secs",
            ),
            (
                GOOD.replace("client_token =", "client_tokn ="),
                "line 10: unknown field `client_tokn`",
            ),
        ];
        for (text, want) in cases {
            let err = GatewayConfig::from_toml(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{want:?} not in {err:?}");
            assert!(!err.contains("0123456789"), "secret in error: {err}");
        }
    }
}
