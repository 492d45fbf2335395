//! The client's errors: each says what was being done and what went wrong.

use std::time::Duration;

use crate::noise::HandshakeError;
use crate::noise::client_payload::ClientPayloadError;

/// Why an IQ got no usable response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IqError {
    /// There is no live connection to send it on.
    #[error("not connected")]
    NotConnected,
    /// The connection closed before the response arrived.
    #[error("the connection closed before the response to iq {id} arrived")]
    Disconnected {
        /// The IQ id.
        id: String,
    },
    /// No response within the timeout.
    #[error("no response to iq {id} within {after:?}")]
    Timeout {
        /// The IQ id.
        id: String,
        /// How long the client waited.
        after: Duration,
    },
    /// The server answered `type="error"`.
    #[error("the server answered iq {id} with error {code} {text}")]
    Server {
        /// The IQ id.
        id: String,
        /// `<error code>` (0 when unreadable).
        code: u16,
        /// `<error text>`.
        text: String,
    },
    /// The node is not an IQ request (`<iq type="get|set">`).
    #[error("not an iq request: {0}")]
    NotARequest(String),
    /// The node cannot be encoded.
    #[error("cannot encode the iq: {0}")]
    Encode(String),
}

/// Why the websocket or the Noise handshake could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The URL is unusable.
    #[error("invalid server URL {url:?}: {detail}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        detail: String,
    },
    /// The TCP/TLS connection or the websocket upgrade failed.
    #[error("websocket connection to {url} failed: {detail}")]
    Websocket {
        /// The URL.
        url: String,
        /// The transport's error.
        detail: String,
    },
    /// The server did not complete the handshake in time.
    #[error("{url} did not complete the Noise handshake within {after:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// The limit.
        after: Duration,
    },
    /// The server closed the connection during the handshake.
    #[error("{url} closed the connection during the Noise handshake")]
    ClosedDuringHandshake {
        /// The URL.
        url: String,
    },
    /// The handshake failed: the server is not who it claims to be (certificate
    /// chain), or it does not speak WhatsApp's Noise handshake.
    #[error("Noise handshake with {url} failed: {source}")]
    Handshake {
        /// The URL.
        url: String,
        /// What failed.
        source: HandshakeError,
    },
    /// Our ClientPayload could not be built from the stored credentials.
    #[error("cannot build the login payload: {0}")]
    Payload(#[from] ClientPayloadError),
}

impl ConnectError {
    /// Errors that retrying cannot fix: the server's identity or protocol is wrong, or
    /// our own payload is. The client does not reconnect after these.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ConnectError::Url { .. } | ConnectError::Handshake { .. } | ConnectError::Payload(_)
        )
    }
}

/// Errors of the client API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// An IQ failed.
    #[error(transparent)]
    Iq(#[from] IqError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] crate::store::Error),
    /// A Signal record in the store could not be read.
    #[error("signal store: {0}")]
    SignalStore(#[from] crate::signal::store::StoreError),
    /// The client is already connected (or connecting).
    #[error("the client is already connected; call disconnect() first")]
    AlreadyConnected,
    /// There is no live connection.
    #[error("not connected")]
    NotConnected,
    /// The operation needs an unpaired device, but this one is paired.
    #[error("this device is already paired as {0}; log out or use another store to pair again")]
    AlreadyPaired(String),
    /// The operation needs a paired device.
    #[error("this device is not paired yet")]
    NotPaired,
    /// The phone number is unusable for pairing.
    #[error("invalid phone number {number:?}: {detail}")]
    InvalidPhoneNumber {
        /// What was given (truncated).
        number: String,
        /// Why it was refused.
        detail: &'static str,
    },
    /// Pairing failed.
    #[error("pairing failed: {0}")]
    Pairing(String),
    /// A stanza could not be encoded.
    #[error("cannot encode a {tag} stanza: {detail}")]
    Encode {
        /// The stanza's tag.
        tag: String,
        /// The encoder's error.
        detail: String,
    },
    /// Waited too long for a state.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
}
