//! The websocket and the Noise handshake over it: what turns a URL into an encrypted
//! stream of frames. The protocol steps are `crate::noise`'s; this module only moves
//! their bytes through tokio-tungstenite.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::config::ClientConfig;
use super::error::ConnectError;
use crate::noise::{ClientHandshake, FrameDecoder, IncomingCipher, OutgoingCipher};
use crate::signal::curve::KeyPair;

pub(crate) type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An established Noise session over a websocket.
pub(crate) struct NoiseSocket {
    pub sink: SplitSink<WsStream, Message>,
    pub stream: SplitStream<WsStream>,
    pub decoder: FrameDecoder,
    pub outgoing: OutgoingCipher,
    pub incoming: IncomingCipher,
    /// Frames that arrived together with the ServerHello (already cut, still
    /// encrypted), to process before reading more.
    pub pending: Vec<Vec<u8>>,
}

/// Seconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Connects to `config.url`, runs the Noise handshake with the device's Noise key,
/// verifies the server's certificate chain against `config.trust_root`, and sends
/// `client_payload`. The whole exchange is bounded by `config.connect_timeout`.
pub(crate) async fn connect(
    config: &ClientConfig,
    noise_key: &KeyPair,
    client_payload: &[u8],
    routing_info: Option<&[u8]>,
) -> Result<NoiseSocket, ConnectError> {
    let url = config.url.clone();
    match tokio::time::timeout(
        config.connect_timeout,
        connect_inner(config, noise_key, client_payload, routing_info),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout {
            url,
            after: config.connect_timeout,
        }),
    }
}

async fn connect_inner(
    config: &ClientConfig,
    noise_key: &KeyPair,
    client_payload: &[u8],
    routing_info: Option<&[u8]>,
) -> Result<NoiseSocket, ConnectError> {
    let url = config.url.as_str();
    let ws_error = |e: &dyn std::fmt::Display| ConnectError::Websocket {
        url: url.to_owned(),
        detail: e.to_string(),
    };
    let mut request = url.into_client_request().map_err(|e| ConnectError::Url {
        url: url.to_owned(),
        detail: e.to_string(),
    })?;
    let origin = HeaderValue::from_str(&config.origin).map_err(|e| ConnectError::Url {
        url: url.to_owned(),
        detail: format!("origin {:?}: {e}", config.origin),
    })?;
    let headers = request.headers_mut();
    headers.insert("Origin", origin);
    headers.insert("Cache-Control", HeaderValue::from_static("no-cache"));
    headers.insert("Pragma", HeaderValue::from_static("no-cache"));
    // A websocket message holds at most one maximal frame plus its prefix in practice;
    // the frame layer enforces the real limit.
    let limit = config.max_frame_len.saturating_add(64);
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let (ws, _response) =
        tokio_tungstenite::connect_async_with_config(request, Some(ws_config), true)
            .await
            .map_err(|e| ws_error(&e))?;
    let (mut sink, mut stream) = ws.split();

    let mut rng = rand::rngs::OsRng;
    let (handshake, first) = match routing_info {
        Some(info) => {
            ClientHandshake::start_with_routing_info(noise_key, config.trust_root, info, &mut rng)
                .map_err(|source| ConnectError::Handshake {
                url: url.to_owned(),
                source,
            })?
        }
        None => ClientHandshake::start(noise_key, config.trust_root, &mut rng),
    };
    sink.send(Message::Binary(first.into()))
        .await
        .map_err(|e| ws_error(&e))?;

    let mut decoder = FrameDecoder::with_max_frame_len(config.max_frame_len);
    let mut frames = Vec::new();
    while frames.is_empty() {
        match stream.next().await {
            None | Some(Ok(Message::Close(_))) => {
                return Err(ConnectError::ClosedDuringHandshake {
                    url: url.to_owned(),
                });
            }
            Some(Err(e)) => return Err(ws_error(&e)),
            Some(Ok(Message::Binary(chunk))) => {
                frames = decoder.push(&chunk).map_err(|e| ConnectError::Handshake {
                    url: url.to_owned(),
                    source: e.into(),
                })?;
            }
            Some(Ok(_)) => {} // text, ping, pong: not part of the protocol
        }
    }
    let mut frames = frames.into_iter();
    let hello = frames.next().unwrap_or_default();
    let verified = handshake
        .process_server_hello(&hello, unix_now())
        .map_err(|source| ConnectError::Handshake {
            url: url.to_owned(),
            source,
        })?;
    let (finish, transport) =
        verified
            .finish(client_payload)
            .map_err(|source| ConnectError::Handshake {
                url: url.to_owned(),
                source,
            })?;
    sink.send(Message::Binary(finish.into()))
        .await
        .map_err(|e| ws_error(&e))?;
    let (outgoing, incoming) = transport.into_halves();
    Ok(NoiseSocket {
        sink,
        stream,
        decoder,
        outgoing,
        incoming,
        pending: frames.collect(),
    })
}

/// How long a clean close may take before the socket is simply dropped.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
