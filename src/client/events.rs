//! Typed events the client reports to its embedder, in order, through [`Events`].

use std::fmt;
use std::time::Duration;

use tokio::sync::mpsc;

use super::stanza::{ConnectFailure, StreamError};
use crate::jid::Jid;

/// Something that happened to the connection or the pairing.
///
/// `Debug` hides the QR string (it carries the ADV secret) and the pairing code; read
/// the fields to show them.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// Logged in (`<success>`): the connection is ready for requests.
    Connected,
    /// The connection ended. `will_reconnect` says whether the client reconnects by
    /// itself (after a backoff delay).
    Disconnected {
        /// Why.
        reason: DisconnectReason,
        /// True when the client reconnects on its own.
        will_reconnect: bool,
    },
    /// The server says this device is no longer linked. The store has been cleared;
    /// the client does not reconnect. Pair again to continue.
    LoggedOut {
        /// Why.
        reason: LogoutReason,
    },
    /// A QR code to show (one per `pair-device` ref, the next one replaces it).
    PairingQr {
        /// The exact string to encode in the QR.
        code: String,
        /// How long it is valid (60 s for the first, 20 s for each following one).
        timeout: Duration,
    },
    /// The code to type on the phone (Linked devices → Link with phone number).
    PairingCode {
        /// `XXXX-XXXX`.
        code: String,
    },
    /// Pairing succeeded and the identity is stored; the server restarts the stream
    /// next (515) and the client logs in.
    PairSuccess {
        /// Our phone-number device JID.
        jid: Jid,
        /// Our LID device JID, if the server sent one.
        lid: Option<Jid>,
        /// The primary phone's platform (`android`, `iphone`, …).
        platform: String,
        /// Business name (empty for personal accounts).
        business_name: String,
    },
    /// Pairing failed (a bad pair-success, a pairing-code step that failed). The
    /// connection is closed when the failure is fatal to the attempt.
    PairError {
        /// What went wrong.
        message: String,
    },
    /// Every QR ref expired without a scan; the client disconnected.
    PairingTimeout,
    /// Another connection of this device took over; the client stopped and does not
    /// reconnect.
    StreamReplaced,
    /// A keepalive ping went unanswered within its deadline.
    KeepAliveTimeout {
        /// Consecutive failed pings.
        error_count: u32,
    },
    /// A keepalive ping succeeded after failures.
    KeepAliveRestored,
    /// One-time prekeys were uploaded to the server.
    PreKeysUploaded {
        /// How many.
        count: usize,
    },
    /// An event card, RSVP, edit or cancellation arrived (or was sent from another of
    /// our devices), decrypted and stored.
    Activity(Box<crate::event::IncomingEvent>),
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Connected => f.write_str("Connected"),
            Event::Disconnected {
                reason,
                will_reconnect,
            } => f
                .debug_struct("Disconnected")
                .field("reason", reason)
                .field("will_reconnect", will_reconnect)
                .finish(),
            Event::LoggedOut { reason } => {
                f.debug_struct("LoggedOut").field("reason", reason).finish()
            }
            Event::PairingQr { timeout, .. } => f
                .debug_struct("PairingQr")
                .field("code", &"<redacted>")
                .field("timeout", timeout)
                .finish(),
            Event::PairingCode { .. } => f
                .debug_struct("PairingCode")
                .field("code", &"<redacted>")
                .finish(),
            Event::PairSuccess {
                jid,
                lid,
                platform,
                business_name,
            } => f
                .debug_struct("PairSuccess")
                .field("jid", jid)
                .field("lid", lid)
                .field("platform", platform)
                .field("business_name", business_name)
                .finish(),
            Event::PairError { message } => f
                .debug_struct("PairError")
                .field("message", message)
                .finish(),
            Event::PairingTimeout => f.write_str("PairingTimeout"),
            Event::StreamReplaced => f.write_str("StreamReplaced"),
            Event::KeepAliveTimeout { error_count } => f
                .debug_struct("KeepAliveTimeout")
                .field("error_count", error_count)
                .finish(),
            Event::KeepAliveRestored => f.write_str("KeepAliveRestored"),
            Event::PreKeysUploaded { count } => f
                .debug_struct("PreKeysUploaded")
                .field("count", count)
                .finish(),
            Event::Activity(activity) => f.debug_tuple("Activity").field(activity).finish(),
        }
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// `disconnect()` was called.
    Requested,
    /// The server refused the login (`<failure>`) for a reason that is not a logout.
    LoginFailure {
        /// The numeric reason (405 = client outdated, 503 = service unavailable, …).
        reason: u16,
        /// Human-readable description.
        message: String,
    },
    /// The server ended the stream with `<stream:error>`.
    StreamError {
        /// The code (may be empty).
        code: String,
        /// Human-readable description.
        message: String,
    },
    /// The server ended the stream with `<xmlstreamend/>`.
    StreamEnd,
    /// The websocket failed or was closed.
    Socket(String),
    /// Connecting or the Noise handshake failed (includes certificate rejections).
    Connect(String),
    /// Keepalive pings went unanswered for too long.
    KeepAliveTimeout,
    /// Every QR ref expired without a scan.
    PairingTimeout,
    /// Another connection of this device took over.
    Replaced,
    /// The device was logged out (see [`Event::LoggedOut`]).
    LoggedOut,
    /// The server sent something the client cannot continue after (undecryptable
    /// frame, broken framing).
    Protocol(String),
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::Requested => f.write_str("disconnect requested"),
            DisconnectReason::LoginFailure { message, .. } => f.write_str(message),
            DisconnectReason::StreamError { message, .. } => f.write_str(message),
            DisconnectReason::StreamEnd => f.write_str("the server ended the stream"),
            DisconnectReason::Socket(m) => write!(f, "websocket: {m}"),
            DisconnectReason::Connect(m) => write!(f, "cannot connect: {m}"),
            DisconnectReason::KeepAliveTimeout => f.write_str("keepalive pings unanswered"),
            DisconnectReason::PairingTimeout => {
                f.write_str("pairing timed out: every QR code expired without a scan")
            }
            DisconnectReason::Replaced => {
                f.write_str("another connection of this device took over")
            }
            DisconnectReason::LoggedOut => f.write_str("logged out"),
            DisconnectReason::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl From<&ConnectFailure> for DisconnectReason {
    fn from(f: &ConnectFailure) -> Self {
        DisconnectReason::LoginFailure {
            reason: f.reason,
            message: f.to_string(),
        }
    }
}

impl From<&StreamError> for DisconnectReason {
    fn from(e: &StreamError) -> Self {
        let code = match e {
            StreamError::RestartRequired => "515".to_owned(),
            StreamError::DeviceRemoved { code, .. } | StreamError::Other { code, .. } => {
                code.clone()
            }
            StreamError::ServiceUnavailable => "503".to_owned(),
            StreamError::RateLimited => "429".to_owned(),
            StreamError::Replaced
            | StreamError::MissingAck { .. }
            | StreamError::XmlNotWellFormed => String::new(),
        };
        DisconnectReason::StreamError {
            code,
            message: e.to_string(),
        }
    }
}

/// Why the device is logged out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogoutReason {
    /// The login was refused with `<failure reason>` 401, 403 or 406.
    LoginFailure {
        /// 401, 403 or 406.
        reason: u16,
        /// Human-readable description.
        message: String,
    },
    /// The server ended the stream because the device was unlinked (401
    /// `device_removed`).
    DeviceRemoved {
        /// Human-readable description.
        message: String,
    },
}

impl fmt::Display for LogoutReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogoutReason::LoginFailure { message, .. }
            | LogoutReason::DeviceRemoved { message } => f.write_str(message),
        }
    }
}

/// The receiving end of the client's events. Events are queued without bound, so
/// the client never blocks on a slow reader; read them promptly.
#[derive(Debug)]
pub struct Events {
    pub(crate) rx: mpsc::UnboundedReceiver<Event>,
}

impl Events {
    /// The next event; `None` once every `Client` handle is dropped.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is already queued.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_pairing_secrets() {
        let qr = Event::PairingQr {
            code: "2@ref,Tk9JU0U=,SURFTlQ=,U0VDUkVU,1".into(),
            timeout: Duration::from_secs(60),
        };
        let text = format!("{qr:?}");
        assert!(
            !text.contains("U0VDUkVU") && text.contains("redacted"),
            "{text}"
        );
        let code = format!(
            "{:?}",
            Event::PairingCode {
                code: "ABCD-EFGH".into()
            }
        );
        assert!(!code.contains("ABCD"), "{code}");
    }
}
