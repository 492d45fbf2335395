//! Everything a client can be told: which server, which root to trust, how it presents
//! itself, and every timer (short ones make tests fast).

use std::time::Duration;

use super::backoff::BackoffConfig;
use crate::noise::TrustRoot;
use crate::noise::client_payload::{DEFAULT_DEVICE_OS, WaWebVersion};
use crate::proto::companion::device_props::PlatformType;

/// WhatsApp's websocket endpoint.
pub const DEFAULT_URL: &str = "wss://web.whatsapp.com/ws/chat";
/// The `Origin` header WhatsApp's endpoint expects.
pub const DEFAULT_ORIGIN: &str = "https://web.whatsapp.com";

/// Keepalive pings (`<iq xmlns="w:p" type="get"/>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAliveConfig {
    /// Shortest wait between pings.
    pub interval_min: Duration,
    /// Longest wait between pings (each wait is random in between).
    pub interval_max: Duration,
    /// A ping unanswered after this long has failed.
    pub response_deadline: Duration,
    /// Reconnect when no ping has succeeded for this long.
    pub max_fail_time: Duration,
}

impl Default for KeepAliveConfig {
    /// whatsmeow's values: every 20–30 s, 10 s deadline, reconnect after 3 minutes of
    /// failures.
    fn default() -> Self {
        KeepAliveConfig {
            interval_min: Duration::from_secs(20),
            interval_max: Duration::from_secs(30),
            response_deadline: Duration::from_secs(10),
            max_fail_time: Duration::from_secs(180),
        }
    }
}

/// How long each QR ref is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QrTiming {
    /// The first ref.
    pub first: Duration,
    /// Each following ref.
    pub rest: Duration,
}

impl Default for QrTiming {
    /// WhatsApp's schedule: 60 s for the first ref, 20 s for each following one.
    fn default() -> Self {
        QrTiming {
            first: Duration::from_secs(60),
            rest: Duration::from_secs(20),
        }
    }
}

/// Client configuration. `Default` connects to WhatsApp with WhatsApp's root.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Websocket URL (`ws://` or `wss://`).
    pub url: String,
    /// `Origin` header of the websocket upgrade.
    pub origin: String,
    /// The root the server's certificate chain must lead to. Verification cannot be
    /// turned off; point this at another server's root (e.g. the simulator's).
    pub trust_root: TrustRoot,
    /// WhatsApp Web version announced.
    pub version: WaWebVersion,
    /// Name shown on the phone's linked-devices list.
    pub device_os: String,
    /// Browser type announced at registration (also picks the QR client type).
    pub platform_type: PlatformType,
    /// `companion_platform_display` of the pairing-code flow: must be a plausible
    /// `Browser (OS)` or WhatsApp answers 400.
    pub pairing_display: String,
    /// Push name announced at login.
    pub push_name: Option<String>,
    /// Prefix QR strings with `https://wa.me/settings/linked_devices#` (whatsmeow and
    /// Baileys do; WhatsApp Web does not). Off by default.
    pub qr_link_prefix: bool,
    /// QR ref schedule.
    pub qr_timing: QrTiming,
    /// Keepalive pings.
    pub keepalive: KeepAliveConfig,
    /// How long an IQ waits for its response.
    pub iq_timeout: Duration,
    /// How long the websocket upgrade and the Noise handshake may take.
    pub connect_timeout: Duration,
    /// Reconnect delays.
    pub backoff: BackoffConfig,
    /// Reconnect by itself after a connection is lost (never after logout, a replaced
    /// stream, a login failure that is not transient, or a certificate failure).
    pub auto_reconnect: bool,
    /// Frames larger than this are refused (bounded by the 16 MiB protocol limit).
    pub max_frame_len: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            url: DEFAULT_URL.to_owned(),
            origin: DEFAULT_ORIGIN.to_owned(),
            trust_root: TrustRoot::WHATSAPP,
            version: WaWebVersion::CURRENT,
            device_os: DEFAULT_DEVICE_OS.to_owned(),
            platform_type: PlatformType::Chrome,
            pairing_display: "Chrome (Linux)".to_owned(),
            push_name: None,
            qr_link_prefix: false,
            qr_timing: QrTiming::default(),
            keepalive: KeepAliveConfig::default(),
            iq_timeout: Duration::from_secs(75),
            connect_timeout: crate::noise::SERVER_HELLO_TIMEOUT,
            backoff: BackoffConfig::default(),
            auto_reconnect: true,
            max_frame_len: crate::noise::framing::MAX_FRAME_LEN,
        }
    }
}

impl ClientConfig {
    /// The default configuration pointed at another server (e.g. the simulator).
    pub fn for_server(url: impl Into<String>, trust_root: TrustRoot) -> Self {
        ClientConfig {
            url: url.into(),
            trust_root,
            ..ClientConfig::default()
        }
    }
}
