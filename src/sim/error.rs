//! Errors the simulator reports to the test (or demo) driving it.

use std::time::Duration;

/// What went wrong in a simulator operation. The messages name the step and the cause, so
/// a failing end-to-end test says which side broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// The listening socket could not be opened.
    #[error("simulator could not listen on {addr}: {detail}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The OS error.
        detail: String,
    },
    /// No registering client showed a QR within the time given.
    #[error("no registering client showed a QR code within {0:?}")]
    NoQr(Duration),
    /// The QR string does not have WhatsApp's `ref,noise,identity,adv[,type]` shape.
    #[error("QR string is malformed: {0}")]
    BadQr(String),
    /// The QR carries no ADV secret (only the client knows it; [`crate::sim::SimServer::next_qr`]
    /// cannot fill it in).
    #[error(
        "QR string has no ADV secret: the simulator cannot know the client's secret, so scan the \
         QR string the client rendered"
    )]
    QrWithoutAdvSecret,
    /// No connected registering client is showing this ref right now.
    #[error("QR ref {reference:?} is not the current ref of any connected registering client")]
    QrRefNotCurrent {
        /// The ref read from the QR.
        reference: String,
    },
    /// The QR's keys differ from what the client sent in its registration payload.
    #[error("QR {field} does not match the registering client's registration payload")]
    QrKeyMismatch {
        /// `noise key` or `identity key`.
        field: &'static str,
    },
    /// No account has this phone number (or LID).
    #[error("simulator has no account {0}")]
    UnknownAccount(String),
    /// A phone number given to the simulator is not usable.
    #[error("invalid phone number {input:?}: {detail}")]
    BadPhoneNumber {
        /// What was given.
        input: String,
        /// Why it was refused.
        detail: String,
    },
    /// The pairing code is not 8 characters of WhatsApp's link-code alphabet.
    #[error("pairing code {0:?} is not 8 characters of 123456789ABCDEFGHJKLMNPQRSTVWXYZ")]
    BadPairingCode(String),
    /// No connected client asked for a pairing code for this account.
    #[error("no connected client is waiting for a pairing code for {0}")]
    NoPendingCodePairing(String),
    /// The key bundle from `companion_finish` did not decrypt: the code typed on the phone
    /// differs from the client's, or the client derived its keys differently.
    #[error("pairing code rejected: {0}")]
    PairingCodeRejected(String),
    /// The client refused or botched the `pair-success` step.
    #[error("pairing failed: {0}")]
    PairingFailed(String),
    /// The client did not answer in time.
    #[error("client did not answer {what} within {after:?}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long the simulator waited.
        after: Duration,
    },
    /// The client's connection ended before the operation finished.
    #[error("client connection closed during {0}")]
    ConnectionClosed(&'static str),
    /// Another pairing is already running on that connection.
    #[error("a pairing is already in progress on this connection")]
    PairingInProgress,
    /// No group has this JID.
    #[error("simulator has no group {0}")]
    UnknownGroup(String),
    /// A group operation was refused (bad spec, not a member, …).
    #[error("group operation refused: {0}")]
    BadGroup(String),
    /// A simulated member could not do what was asked (no keys, event never received,
    /// the server refused its message, …).
    #[error("simulated member: {0}")]
    Member(String),
    /// The simulator has been shut down.
    #[error("simulator is shut down")]
    Shutdown,
}
