//! The connection's life: connect, the session's reader/writer/keepalive tasks, how a
//! session ends, and the supervisor that decides whether and when to reconnect.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::backoff::Backoff;
use super::error::{ClientError, ConnectError, IqError};
use super::events::{DisconnectReason, Event, LogoutReason};
use super::prekeys::server_iq;
use super::socket::{CLOSE_TIMEOUT, NoiseSocket};
use super::stanza::{ConnectFailure, StreamError, iq_error, iq_result, is_server_jid};
use super::{Client, ConnectionState, Inner, Running, SessionLink, lock, socket};
use crate::binary::{Node, unmarshal};
use crate::noise::OutgoingCipher;

/// What the writer task is asked to do.
pub(crate) enum Outgoing {
    /// Encrypt and send this marshaled node.
    Frame(Vec<u8>),
    /// Send a websocket close and stop.
    Close,
}

/// How a session ended, and so what the supervisor does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// `disconnect()`: stop.
    Requested,
    /// 515 after pairing (or any restart request): reconnect at once.
    Restart,
    /// Logged out: clear the store, report, stop.
    LoggedOut(LogoutReason),
    /// Another connection took over: report, stop.
    Replaced,
    /// Every QR ref expired: report, stop.
    PairingTimeout,
    /// Stop and report (login failure that retrying cannot fix, pairing failure).
    Fatal(DisconnectReason),
    /// Reconnect after a backoff delay (longer when rate limited).
    Reconnect {
        reason: DisconnectReason,
        rate_limited: bool,
    },
}

impl Client {
    /// Connects: loads (or, for a new store, generates and stores) the credentials,
    /// opens the websocket, runs the Noise handshake and sends the login payload (the
    /// registration payload while unpaired). Returns once the handshake is done; the
    /// server's answer arrives as events ([`Event::Connected`], [`Event::PairingQr`],
    /// …). From then on the client reconnects by itself as configured. Errors of this
    /// first attempt (unreachable server, rejected certificate) are returned and
    /// nothing keeps running.
    pub async fn connect(&self) -> Result<(), ClientError> {
        {
            let running = lock(&self.inner.running);
            if running.as_ref().is_some_and(|r| !r.task.is_finished()) {
                return Err(ClientError::AlreadyConnected);
            }
        }
        self.start_stanza_dispatcher();
        self.set_state(ConnectionState::Connecting);
        let socket = match self.open_socket().await {
            Ok(s) => s,
            Err(e) => {
                self.set_state(ConnectionState::Disconnected);
                return Err(e);
            }
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let client = self.clone();
        let task = tokio::spawn(async move { client.supervise(socket, shutdown_rx).await });
        *lock(&self.inner.running) = Some(Running { shutdown, task });
        Ok(())
    }

    /// Disconnects: closes the websocket cleanly, fails pending IQs, stops
    /// reconnecting, and waits until every connection task has ended. Does nothing
    /// when not connected.
    pub async fn disconnect(&self) {
        let running = lock(&self.inner.running).take();
        if let Some(Running { shutdown, task }) = running {
            let _ = shutdown.send(true);
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "connection task ended abnormally");
            }
        }
    }

    /// Loads or creates the credentials and opens a Noise socket with the right
    /// payload.
    async fn open_socket(&self) -> Result<NoiseSocket, ClientError> {
        let creds = self.ensure_credentials().await?;
        let payload = self.client_payload(&creds).await?;
        let socket = socket::connect(
            &self.inner.config,
            &creds.noise_key,
            &payload,
            creds.routing_info.as_deref(),
        )
        .await?;
        Ok(socket)
    }

    /// The supervisor: runs sessions one after another until one ends for good.
    async fn supervise(self, first: NoiseSocket, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(self.inner.config.backoff);
        let mut next = Some(first);
        loop {
            let socket = match next.take() {
                Some(s) => s,
                None => {
                    self.set_state(ConnectionState::Connecting);
                    let attempt = tokio::select! {
                        r = self.open_socket() => r,
                        _ = shutdown_requested(&mut shutdown) => break,
                    };
                    match attempt {
                        Ok(s) => s,
                        Err(e) => {
                            let fatal = match &e {
                                ClientError::Connect(c) => c.is_fatal(),
                                ClientError::Store(_) | ClientError::SignalStore(_) => true,
                                _ => false,
                            };
                            let will_reconnect = !fatal && self.inner.config.auto_reconnect;
                            tracing::warn!(error = %e, will_reconnect, "reconnect attempt failed");
                            if !will_reconnect {
                                self.set_state(ConnectionState::Disconnected);
                                self.emit(Event::Disconnected {
                                    reason: DisconnectReason::Connect(e.to_string()),
                                    will_reconnect: false,
                                });
                                break;
                            }
                            let delay = backoff.next_delay(false, &mut rand::thread_rng());
                            if wait_or_shutdown(delay, &mut shutdown).await {
                                break;
                            }
                            continue;
                        }
                    }
                }
            };
            let logged_in = Arc::new(AtomicBool::new(false));
            let end = self.run_session(socket, &mut shutdown, &logged_in).await;
            if logged_in.load(Ordering::Relaxed) {
                backoff.reset();
            }
            self.set_state(ConnectionState::Disconnected);
            tracing::info!(?end, "session ended");
            match end {
                SessionEnd::Requested => {
                    self.emit(Event::Disconnected {
                        reason: DisconnectReason::Requested,
                        will_reconnect: false,
                    });
                    break;
                }
                SessionEnd::Restart => continue,
                SessionEnd::LoggedOut(reason) => {
                    self.log_out_locally().await;
                    self.emit(Event::LoggedOut { reason });
                    self.emit(Event::Disconnected {
                        reason: DisconnectReason::LoggedOut,
                        will_reconnect: false,
                    });
                    break;
                }
                SessionEnd::Replaced => {
                    self.emit(Event::StreamReplaced);
                    self.emit(Event::Disconnected {
                        reason: DisconnectReason::Replaced,
                        will_reconnect: false,
                    });
                    break;
                }
                SessionEnd::PairingTimeout => {
                    self.emit(Event::PairingTimeout);
                    self.emit(Event::Disconnected {
                        reason: DisconnectReason::PairingTimeout,
                        will_reconnect: false,
                    });
                    break;
                }
                SessionEnd::Fatal(reason) => {
                    self.emit(Event::Disconnected {
                        reason,
                        will_reconnect: false,
                    });
                    break;
                }
                SessionEnd::Reconnect {
                    reason,
                    rate_limited,
                } => {
                    let will_reconnect = self.inner.config.auto_reconnect;
                    self.emit(Event::Disconnected {
                        reason,
                        will_reconnect,
                    });
                    if !will_reconnect {
                        break;
                    }
                    let delay = backoff.next_delay(rate_limited, &mut rand::thread_rng());
                    tracing::info!(?delay, "reconnecting");
                    if wait_or_shutdown(delay, &mut shutdown).await {
                        break;
                    }
                }
            }
        }
        self.set_state(ConnectionState::Disconnected);
    }

    /// Runs one session until it ends; cleans up after it (pending IQs failed, writer
    /// closed, session tasks stopped).
    async fn run_session(
        &self,
        socket: NoiseSocket,
        shutdown: &mut watch::Receiver<bool>,
        logged_in: &Arc<AtomicBool>,
    ) -> SessionEnd {
        let NoiseSocket {
            sink,
            mut stream,
            mut decoder,
            outgoing,
            mut incoming,
            pending,
        } = socket;
        let id = self.inner.session_counter.fetch_add(1, Ordering::Relaxed) + 1;
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (end_tx, mut end_rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_loop(sink, outgoing, out_rx));
        *lock(&self.inner.session) = Some(SessionLink {
            id,
            out: out_tx.clone(),
            end: end_tx,
        });
        let mut tasks = SessionTasks {
            keepalive: Some(tokio::spawn(keepalive_loop(
                Arc::downgrade(&self.inner),
                id,
            ))),
            qr: None,
        };
        let ctx = SessionContext {
            logged_in: logged_in.clone(),
        };

        let mut end = None;
        for frame in pending {
            if let Some(e) = self.on_frame(frame, &mut incoming, &ctx, &mut tasks).await {
                end = Some(e);
                break;
            }
        }
        while end.is_none() {
            end = tokio::select! {
                biased;
                _ = shutdown_requested(shutdown) => Some(SessionEnd::Requested),
                e = end_rx.recv() => e,
                msg = stream.next() => match msg {
                    None => Some(reconnect(DisconnectReason::Socket("connection closed".into()))),
                    Some(Err(e)) => Some(reconnect(DisconnectReason::Socket(e.to_string()))),
                    Some(Ok(Message::Close(frame))) => Some(reconnect(DisconnectReason::Socket(
                        match frame {
                            Some(f) => format!("closed by the server ({} {})", f.code, f.reason),
                            None => "closed by the server".to_owned(),
                        },
                    ))),
                    Some(Ok(Message::Binary(chunk))) => match decoder.push(&chunk) {
                        Err(e) => Some(SessionEnd::Fatal(DisconnectReason::Protocol(e.to_string()))),
                        Ok(frames) => {
                            let mut e = None;
                            for frame in frames {
                                e = self.on_frame(frame, &mut incoming, &ctx, &mut tasks).await;
                                if e.is_some() {
                                    break;
                                }
                            }
                            e
                        }
                    },
                    Some(Ok(_)) => None,
                },
            };
        }
        let end = end.unwrap_or(SessionEnd::Requested);

        // Tear down: no new sends, pending IQs fail, tasks stop, the socket closes.
        {
            let mut session = lock(&self.inner.session);
            if session.as_ref().is_some_and(|s| s.id == id) {
                *session = None;
            }
        }
        lock(&self.inner.waiters).clear();
        tasks.abort_all();
        let _ = out_tx.send(Outgoing::Close);
        drop(out_tx);
        match tokio::time::timeout(CLOSE_TIMEOUT, writer).await {
            Ok(_) => {}
            Err(_) => tracing::debug!("websocket close timed out"),
        }
        end
    }

    /// One frame from the server: decrypt, decode, dispatch.
    async fn on_frame(
        &self,
        frame: Vec<u8>,
        incoming: &mut crate::noise::IncomingCipher,
        ctx: &SessionContext,
        tasks: &mut SessionTasks,
    ) -> Option<SessionEnd> {
        let plaintext = match incoming.decrypt_frame_owned(frame) {
            Ok(p) => p,
            Err(e) => {
                return Some(reconnect(DisconnectReason::Protocol(e.to_string())));
            }
        };
        let node = match unmarshal(&plaintext) {
            Ok(n) => n,
            Err(e) => {
                // The stream is still in sync; skip the stanza (the server redelivers
                // what it needs acked).
                tracing::warn!(error = %e, "undecodable stanza skipped");
                return None;
            }
        };
        tracing::trace!(%node, "recv");
        self.dispatch(node, ctx, tasks).await
    }

    /// Routes one stanza (see the module docs of `client`).
    async fn dispatch(
        &self,
        node: Node,
        ctx: &SessionContext,
        tasks: &mut SessionTasks,
    ) -> Option<SessionEnd> {
        match node.tag.as_ref() {
            "success" => {
                self.on_success(&node, ctx).await;
                None
            }
            "failure" => Some(self.on_failure(&node)),
            "stream:error" => Some(self.on_stream_error(&node).await),
            "xmlstreamend" => Some(reconnect(DisconnectReason::StreamEnd)),
            "iq" => self.on_iq(node, tasks).await,
            "ib" => {
                self.on_ib(&node).await;
                None
            }
            "ack" => {
                if let Some(node) = self.resolve_waiter(node) {
                    self.queue_stanza(node).await;
                }
                None
            }
            _ => {
                self.queue_stanza(node).await;
                None
            }
        }
    }

    /// Hands a response to the caller waiting for its id; gives the node back when
    /// nobody waits for it.
    fn resolve_waiter(&self, node: Node) -> Option<Node> {
        let Some(id) = node.attr_str("id") else {
            return Some(node);
        };
        let waiter = lock(&self.inner.waiters).remove(id);
        match waiter {
            Some(tx) => {
                // The caller may have timed out meanwhile.
                let _ = tx.send(node);
                None
            }
            None => Some(node),
        }
    }

    fn on_failure(&self, node: &Node) -> SessionEnd {
        let failure = ConnectFailure::parse(node);
        tracing::warn!(%failure, "login refused");
        if failure.is_logged_out() {
            SessionEnd::LoggedOut(LogoutReason::LoginFailure {
                reason: failure.reason,
                message: failure.to_string(),
            })
        } else if failure.is_transient() {
            reconnect((&failure).into())
        } else {
            SessionEnd::Fatal((&failure).into())
        }
    }

    async fn on_stream_error(&self, node: &Node) -> SessionEnd {
        let error = StreamError::classify(node);
        tracing::info!(%error, "stream error");
        match &error {
            StreamError::RestartRequired => SessionEnd::Restart,
            StreamError::DeviceRemoved { .. } => {
                SessionEnd::LoggedOut(LogoutReason::DeviceRemoved {
                    message: error.to_string(),
                })
            }
            StreamError::Replaced => SessionEnd::Replaced,
            StreamError::RateLimited => SessionEnd::Reconnect {
                reason: (&error).into(),
                rate_limited: true,
            },
            StreamError::MissingAck { id, class } => {
                // Ack what the server waits for, if the socket still takes it, then
                // reconnect (with backoff: a server that keeps asking must not make us
                // spin).
                if let Some(to) = node.child_by_tag("ack").and_then(|a| a.get_attr("from")) {
                    let ack = Node::new("ack")
                        .attr("class", class.as_str())
                        .attr("id", id.as_str())
                        .attr("to", to.clone());
                    let _ = self.send_node(&ack).await;
                }
                reconnect((&error).into())
            }
            _ => reconnect((&error).into()),
        }
    }

    async fn on_iq(&self, node: Node, tasks: &mut SessionTasks) -> Option<SessionEnd> {
        let iq_type = node.attr_str("type").unwrap_or_default().to_owned();
        if matches!(iq_type.as_str(), "result" | "error") {
            if let Some(unclaimed) = self.resolve_waiter(node) {
                tracing::debug!(node = %unclaimed, "iq response nobody waits for");
            }
            return None;
        }
        if node.attr_str("xmlns") == Some("urn:xmpp:ping") {
            let _ = self.send_node(&iq_result(&node)).await;
            return None;
        }
        let from_server = is_server_jid(node.get_attr("from"));
        let child = node.children().first().map(|c| c.tag.clone());
        match child.as_deref() {
            Some("pair-device") if from_server => {
                self.on_pair_device(&node, tasks).await;
                None
            }
            Some("pair-success") if from_server => {
                let end = self.on_pair_success(&node).await;
                if end.is_none()
                    && let Some(qr) = tasks.qr.take()
                {
                    qr.abort();
                }
                end
            }
            _ => {
                tracing::debug!(%node, "unhandled server iq answered with 501");
                let _ = self
                    .send_node(&iq_error(&node, 501, "feature-not-implemented"))
                    .await;
                None
            }
        }
    }

    /// `<ib>`: stores edge routing info for the next connection's `ED` pre-intro.
    async fn on_ib(&self, node: &Node) {
        for child in node.children() {
            match child.tag.as_ref() {
                "edge_routing" => {
                    let info = child
                        .child_by_tag("routing_info")
                        .and_then(Node::bytes)
                        .filter(|b| !b.is_empty() && b.len() <= socket_routing_limit())
                        .map(<[u8]>::to_vec);
                    if let Some(info) = info {
                        let r = self
                            .update_credentials(|c| {
                                c.routing_info = Some(info);
                                Default::default()
                            })
                            .await;
                        if let Err(e) = r {
                            tracing::warn!(error = %e, "could not store routing info");
                        }
                    }
                }
                other => tracing::debug!(tag = other, "ib child"),
            }
        }
    }

    /// Queues a stanza for the stanza handler task (waiting while the queue is full).
    async fn queue_stanza(&self, node: Node) {
        let _ = self.inner.stanzas.send(node).await;
    }

    /// Starts the task that feeds the stanza handler (once per client).
    fn start_stanza_dispatcher(&self) {
        let Some(mut rx) = lock(&self.inner.stanza_rx).take() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            while let Some(node) = rx.recv().await {
                let Some(inner) = weak.upgrade() else { break };
                let client = Client { inner };
                client.handle_stanza(node).await;
            }
        });
    }

    /// Sends a keepalive ping and waits for its response up to the deadline.
    pub(crate) async fn ping(&self, deadline: Duration) -> Result<(), IqError> {
        match self
            .send_iq_timeout(server_iq("w:p", "get", Vec::new()), deadline)
            .await
        {
            // Any answer proves the connection is alive.
            Ok(_) | Err(IqError::Server { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The largest routing info kept for the `ED` pre-intro.
fn socket_routing_limit() -> usize {
    crate::noise::framing::MAX_FRAME_LEN
}

fn reconnect(reason: DisconnectReason) -> SessionEnd {
    SessionEnd::Reconnect {
        reason,
        rate_limited: false,
    }
}

/// What the handlers of one session need to know about it.
pub(crate) struct SessionContext {
    pub logged_in: Arc<AtomicBool>,
}

/// Tasks that live as long as one session.
#[derive(Default)]
pub(crate) struct SessionTasks {
    pub keepalive: Option<JoinHandle<()>>,
    pub qr: Option<JoinHandle<()>>,
}

impl SessionTasks {
    fn abort_all(&mut self) {
        for task in [self.keepalive.take(), self.qr.take()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }
}

/// Sleeps `delay` unless shutdown is requested first; true when it was.
async fn wait_or_shutdown(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        biased;
        _ = shutdown_requested(shutdown) => true,
        _ = tokio::time::sleep(delay) => false,
    }
}

/// Completes when shutdown is requested (or its sender is gone).
async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it here, inside.
    let _ = shutdown.wait_for(|s| *s).await.map(drop);
}

/// The writer task: encrypts and sends frames in order; on `Close` (or when every
/// sender is gone) closes the websocket.
async fn write_loop(
    mut sink: futures_util::stream::SplitSink<socket::WsStream, Message>,
    mut cipher: OutgoingCipher,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
) {
    while let Some(msg) = rx.recv().await {
        match msg {
            Outgoing::Frame(plain) => {
                let frame = match cipher.encrypt_frame(&plain) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encrypt a frame; dropping it");
                        continue;
                    }
                };
                if let Err(e) = sink.send(Message::Binary(frame.into())).await {
                    tracing::debug!(error = %e, "websocket send failed");
                    break;
                }
            }
            Outgoing::Close => break,
        }
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        let _ = sink.send(Message::Close(None)).await;
        let _ = sink.close().await;
    })
    .await;
}

/// Keepalive: pings at random intervals; reports failed pings; ends the session when
/// none has succeeded for `max_fail_time`. Stops when the session or client is gone.
async fn keepalive_loop(inner: Weak<Inner>, session_id: u64) {
    let mut last_success = Instant::now();
    let mut errors = 0u32;
    loop {
        let Some(config) = inner.upgrade().map(|i| i.config.keepalive) else {
            return;
        };
        let (lo, hi) = (
            config.interval_min,
            config.interval_max.max(config.interval_min),
        );
        let wait = if hi > lo {
            rand::thread_rng().gen_range(lo..=hi)
        } else {
            lo
        };
        tokio::time::sleep(wait).await;
        let Some(inner) = inner.upgrade() else { return };
        let client = Client { inner };
        let Some(link) = client.session_link().filter(|l| l.id == session_id) else {
            return;
        };
        match client.ping(config.response_deadline).await {
            Ok(()) => {
                if errors > 0 {
                    errors = 0;
                    client.emit(Event::KeepAliveRestored);
                }
                last_success = Instant::now();
            }
            Err(IqError::Timeout { .. }) => {
                errors = errors.saturating_add(1);
                tracing::warn!(errors, "keepalive ping timed out");
                client.emit(Event::KeepAliveTimeout {
                    error_count: errors,
                });
                if last_success.elapsed() >= config.max_fail_time {
                    let _ = link.end.send(reconnect(DisconnectReason::KeepAliveTimeout));
                    return;
                }
            }
            Err(_) => return, // the session is ending
        }
    }
}

impl From<ConnectError> for DisconnectReason {
    fn from(e: ConnectError) -> Self {
        DisconnectReason::Connect(e.to_string())
    }
}
