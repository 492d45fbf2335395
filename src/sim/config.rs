//! How a simulator instance is set up: address, keys, certificate validity, QR timing.

use std::net::SocketAddr;
use std::time::Duration;

use super::certs::{ChainDefect, Validity};
use crate::signal::curve::KeyPair;

/// When each pair-device ref is shown: the first for `first`, every following one for
/// `next`, `count` refs in all (WhatsApp: 6 refs, 60 s then 20 s each, 160 s in total).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QrSchedule {
    /// Number of refs in the `pair-device` IQ.
    pub count: usize,
    /// How long the first ref is valid.
    pub first: Duration,
    /// How long each following ref is valid.
    pub next: Duration,
}

impl Default for QrSchedule {
    fn default() -> Self {
        QrSchedule {
            count: 6,
            first: Duration::from_secs(60),
            next: Duration::from_secs(20),
        }
    }
}

impl QrSchedule {
    /// Index of the ref that is current `elapsed` after the `pair-device` IQ was sent;
    /// `None` once every ref has expired.
    pub fn current_index(&self, elapsed: Duration) -> Option<usize> {
        if self.count == 0 {
            return None;
        }
        if elapsed < self.first {
            return Some(0);
        }
        if self.next.is_zero() {
            return None;
        }
        let after_first = elapsed.saturating_sub(self.first);
        let steps = after_first.as_nanos() / self.next.as_nanos();
        let index = usize::try_from(steps).ok()?.checked_add(1)?;
        (index < self.count).then_some(index)
    }

    /// Time from the `pair-device` IQ until the last ref expires.
    pub fn total(&self) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rest = u32::try_from(self.count - 1).unwrap_or(u32::MAX);
        self.first.saturating_add(self.next.saturating_mul(rest))
    }
}

/// Settings of one simulator. `SimConfig::default()` listens on `127.0.0.1:0` with a fresh
/// root key, certificates valid from a day ago to 30 days ahead and WhatsApp's QR timing.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where to listen (port 0 picks a free port).
    pub bind: SocketAddr,
    /// The root key pair of the certificate chain; `None` generates one.
    pub root: Option<KeyPair>,
    /// Validity of both served certificates; `None` = from 1 day ago to 30 days ahead.
    pub cert_validity: Option<Validity>,
    /// Serve a chain with this defect instead of a valid one (to test client refusals).
    pub chain_defect: Option<ChainDefect>,
    /// The pair-device ref schedule.
    pub qr: QrSchedule,
    /// How long the simulated phone waits for the client's `pair-device-sign` reply or
    /// `companion_finish`.
    pub pairing_timeout: Duration,
    /// How long a client may take from TCP accept to the end of the Noise handshake.
    pub handshake_timeout: Duration,
    /// A prekey pool below this size triggers the `encrypt` low-count notification.
    pub low_prekey_threshold: usize,
    /// Most one-time prekeys the server keeps per device (uploads beyond are refused).
    pub max_prekeys_per_device: usize,
    /// `<platform name>` the simulated primary phones report in `pair-success`.
    pub phone_platform: String,
    /// Number of one-time prekeys each simulated primary phone publishes.
    pub phone_prekeys: u32,
    /// Send every node zlib-compressed (flag `0x02`), to exercise the client's inflate path.
    pub compress_outgoing: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            root: None,
            cert_validity: None,
            chain_defect: None,
            qr: QrSchedule::default(),
            pairing_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(20),
            low_prekey_threshold: 5,
            max_prekeys_per_device: 5_000,
            phone_platform: "android".to_owned(),
            phone_prekeys: 20,
            compress_outgoing: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whatsapp_schedule_is_160_seconds_of_six_refs() {
        let s = QrSchedule::default();
        assert_eq!(s.total(), Duration::from_secs(160));
        assert_eq!(s.current_index(Duration::ZERO), Some(0));
        assert_eq!(s.current_index(Duration::from_millis(59_999)), Some(0));
        assert_eq!(s.current_index(Duration::from_secs(60)), Some(1));
        assert_eq!(s.current_index(Duration::from_secs(79)), Some(1));
        assert_eq!(s.current_index(Duration::from_secs(80)), Some(2));
        assert_eq!(s.current_index(Duration::from_millis(159_999)), Some(5));
        assert_eq!(s.current_index(Duration::from_secs(160)), None);
        assert_eq!(s.current_index(Duration::MAX), None);
    }

    #[test]
    fn degenerate_schedules_do_not_panic() {
        let none = QrSchedule {
            count: 0,
            ..QrSchedule::default()
        };
        assert_eq!(none.current_index(Duration::ZERO), None);
        assert_eq!(none.total(), Duration::ZERO);
        let zero_next = QrSchedule {
            count: 3,
            first: Duration::from_secs(1),
            next: Duration::ZERO,
        };
        assert_eq!(zero_next.current_index(Duration::from_secs(2)), None);
        assert_eq!(zero_next.total(), Duration::from_secs(1));
    }
}
