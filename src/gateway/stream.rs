//! `GET /instances/{instance}/events`: the instance's incoming events on a WebSocket,
//! one text frame per event in the webhook's own JSON shape.
//!
//! The token goes in the `token` header, as `Authorization: Bearer <token>`, or (for
//! browsers, which cannot set headers on a WebSocket) as `?token=`. The first frame is
//! `{"type": "stream.ready", "instance": …}`; a client too slow to keep up gets
//! `{"type": "stream.lagged", "missed": n}` and the stream goes on. The stream is live
//! only: events from before the connection are not replayed (the webhook outbox is
//! the durable path). Frames from the client are ignored.

use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;

use super::AppState;
use super::http::{Reply, header_text};

/// The query string of the stream route.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StreamQuery {
    #[serde(default)]
    token: Option<String>,
}

fn error(status: StatusCode, text: &str) -> Response {
    Reply::json(status, &json!({ "error": text })).into_response()
}

fn token_of<'a>(headers: &'a HeaderMap, query: &'a StreamQuery) -> Option<&'a str> {
    header_text(headers, "token")
        .or_else(|| {
            header_text(headers, "authorization")
                .and_then(|a| a.strip_prefix("Bearer ").map(str::trim))
        })
        .or(query.token.as_deref())
        .filter(|t| !t.is_empty())
}

/// Authenticates, then upgrades to a WebSocket that carries the instance's events.
pub(crate) async fn events(
    State(app): State<Arc<AppState>>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let query = query.map(|q| q.0).unwrap_or_default();
    let Some(token) = token_of(&headers, &query) else {
        return error(StatusCode::UNAUTHORIZED, "Missing token");
    };
    let Some(inst) = app.instances.get(&instance) else {
        return error(StatusCode::NOT_FOUND, "Instance not found");
    };
    if !inst.config.token.matches(token.as_bytes()) {
        return error(StatusCode::UNAUTHORIZED, "Invalid token");
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rej) => {
            return error(
                StatusCode::UPGRADE_REQUIRED,
                &format!("This route is a WebSocket: {}", rej.body_text()),
            );
        }
    };
    // Subscribe before the upgrade so nothing sent after the 101 is missed.
    let events = inst.stream.subscribe();
    let name = inst.config.name.clone();
    tracing::info!(instance = %name, "event stream opened");
    upgrade.on_upgrade(move |socket| forward(socket, events, name))
}

async fn forward(
    mut socket: WebSocket,
    mut events: broadcast::Receiver<Arc<str>>,
    instance: String,
) {
    let ready = json!({ "type": "stream.ready", "instance": instance }).to_string();
    if socket.send(Message::Text(ready.into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                // Pings are answered by the library; other frames are ignored.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            event = events.recv() => {
                let text = match event {
                    Ok(text) => text.to_string(),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        json!({ "type": "stream.lagged", "missed": missed }).to_string()
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        }
    }
    tracing::info!(instance = %instance, "event stream closed");
}
