//! The simulator's I/O shell: a tokio TCP listener, the websocket upgrade on `/ws/chat`,
//! the Noise responder, the frame cipher, and one task per connection that moves bytes
//! between the socket and the sans-IO [`World`]. Everything the protocol decides
//! happens in `World`; this file only carries it out.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rand::rngs::OsRng;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::SimError;
use super::certs::{SimCertAuthority, Validity};
use super::config::SimConfig;
use super::handshake::{ServerFrameReader, accept_client_hello};
use super::pair_code::PrimaryHello;
use super::qr::QrData;
use super::stanza;
use super::world::{
    ConnAction, ConnId, DeviceRegistration, Effect, SimDeviceInfo, Ticket, World, unix_now,
};
use crate::binary::{Node, marshal, marshal_compressed, unmarshal};
use crate::jid::Jid;
use crate::noise::transport::{IncomingCipher, OutgoingCipher};
use crate::noise::{FRAME_LENGTH_PREFIX, FRAME_SIZE_LIMIT};
use crate::signal::curve::{KeyPair, PublicKey};

/// Path of the websocket endpoint, as on `web.whatsapp.com`.
pub const WS_PATH: &str = "/ws/chat";

/// Longest websocket message accepted (one maximal frame with its prefix).
const MAX_WS_MESSAGE: usize = FRAME_SIZE_LIMIT + FRAME_LENGTH_PREFIX;

/// In-world deliveries processed per world lock when settling after a client stanza.
const SETTLE_SLICE: usize = 64;

/// How long `disconnect`/`stream_error` wait for the connection task to finish.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// State shared by the handle, the accept loop and the connection tasks.
struct Shared {
    world: Mutex<World>,
    links: Mutex<HashMap<ConnId, mpsc::UnboundedSender<ConnAction>>>,
    waiters: Mutex<HashMap<Ticket, oneshot::Sender<Result<Jid, SimError>>>>,
    server_static: KeyPair,
    cert_chain: Vec<u8>,
    config: SimConfig,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    /// Runs `f` on the world and carries out the effects it queued, under the world
    /// lock so that effects of consecutive operations keep their order.
    fn with_world<T>(&self, f: impl FnOnce(&mut World, &Self) -> T) -> T {
        let mut world = lock(&self.world);
        let out = f(&mut world, self);
        for effect in world.take_effects() {
            match effect {
                Effect::Conn(conn, action) => {
                    if let Some(tx) = lock(&self.links).get(&conn) {
                        let _ = tx.send(action);
                    }
                }
                Effect::PairingDone(ticket, result) => {
                    if let Some(tx) = lock(&self.waiters).remove(&ticket) {
                        let _ = tx.send(result);
                    }
                }
            }
        }
        out
    }

    /// Registers a waiter for a new ticket.
    fn waiter(&self, world: &mut World) -> (Ticket, oneshot::Receiver<Result<Jid, SimError>>) {
        let ticket = world.ticket();
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters).insert(ticket, tx);
        (ticket, rx)
    }

    /// Waits for a pairing outcome; on timeout the pairing is abandoned.
    async fn await_pairing(
        &self,
        ticket: Ticket,
        rx: oneshot::Receiver<Result<Jid, SimError>>,
        what: &'static str,
    ) -> Result<Jid, SimError> {
        let after = self.config.pairing_timeout;
        match tokio::time::timeout(after, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(SimError::Shutdown),
            Err(_) => {
                lock(&self.waiters).remove(&ticket);
                self.with_world(|w, _| w.cancel_pairing(ticket));
                Err(SimError::Timeout { what, after })
            }
        }
    }

    /// Waits until none of `conns` has a live task any more.
    async fn wait_closed(&self, conns: &[ConnId]) {
        let deadline = Instant::now() + CLOSE_WAIT;
        while Instant::now() < deadline {
            let open = {
                let links = lock(&self.links);
                conns.iter().any(|c| links.contains_key(c))
            };
            if !open {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A running simulator. Cheap to clone; [`SimServer::shutdown`] stops it.
#[derive(Clone)]
pub struct SimServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    trust_root: PublicKey,
    accept_task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for SimServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimServer")
            .field("addr", &self.addr)
            .field("trust_root", &self.trust_root)
            .finish_non_exhaustive()
    }
}

impl SimServer {
    /// Binds the listener, mints the certificate chain (root → intermediate → leaf for a
    /// fresh server static key) and starts accepting. Refuses an address it cannot bind.
    pub async fn start(config: SimConfig) -> Result<SimServer, SimError> {
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|e| SimError::Bind {
                addr: config.bind.to_string(),
                detail: e.to_string(),
            })?;
        let addr = listener.local_addr().map_err(|e| SimError::Bind {
            addr: config.bind.to_string(),
            detail: e.to_string(),
        })?;
        let rng = &mut OsRng;
        let ca = match &config.root {
            Some(root) => SimCertAuthority::from_root(root.clone(), rng),
            None => SimCertAuthority::generate(rng),
        };
        let server_static = KeyPair::generate(rng);
        let validity = config.cert_validity.unwrap_or_else(|| {
            let now = unix_now();
            Validity {
                not_before: now.saturating_sub(86_400),
                not_after: now.saturating_add(30 * 86_400),
            }
        });
        let chain = match config.chain_defect {
            Some(defect) => ca.broken_chain(defect, &server_static.public, validity, rng),
            None => ca.chain(&server_static.public, validity, rng),
        };
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            world: Mutex::new(World::new(config.clone())),
            links: Mutex::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
            server_static,
            cert_chain: prost::Message::encode_to_vec(&chain),
            config,
            shutdown,
        });
        // Subscribe before spawning: a shutdown sent before the task first runs (a
        // test that never yields) must still stop it.
        let stop = shared.shutdown.subscribe();
        let accept_task = tokio::spawn(accept_loop(listener, shared.clone(), stop));
        Ok(SimServer {
            shared,
            addr,
            trust_root: ca.trust_root().public_key(),
            accept_task: Arc::new(Mutex::new(Some(accept_task))),
        })
    }

    /// The websocket URL clients connect to: `ws://127.0.0.1:PORT/ws/chat`.
    pub fn url(&self) -> String {
        format!("ws://{}{WS_PATH}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The root public key of the simulator's certificate chain (the client's trust root).
    pub fn trust_root(&self) -> PublicKey {
        self.trust_root
    }

    /// The server's static Noise key (equal to the leaf certificate's key).
    pub fn server_static_key(&self) -> PublicKey {
        self.shared.server_static.public
    }

    /// Creates an account for a phone number (digits, optionally with `+`, spaces,
    /// dashes, parentheses) with its primary phone; returns the existing one if the
    /// number already has an account. Refuses text that is not a phone number.
    pub fn try_create_account(&self, phone: &str) -> Result<SimPhone, SimError> {
        let digits: String = phone
            .chars()
            .filter(|c| !matches!(c, '+' | ' ' | '-' | '(' | ')'))
            .collect();
        if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SimError::BadPhoneNumber {
                input: phone.chars().take(40).collect(),
                detail: "expected up to 20 digits".into(),
            });
        }
        if digits.parse::<u64>().is_err() {
            return Err(SimError::BadPhoneNumber {
                input: phone.to_owned(),
                detail: "does not fit the 64-bit login username".into(),
            });
        }
        let (pn, lid) = self.shared.with_world(|w, _| {
            let a = w.create_account(&digits);
            (a.pn.clone(), a.lid.clone())
        });
        Ok(SimPhone {
            shared: self.shared.clone(),
            pn,
            lid,
        })
    }

    /// [`Self::try_create_account`] for numbers known to be valid.
    ///
    /// # Panics
    /// When `phone` is not a phone number (a bug in the calling test).
    pub fn create_account(&self, phone: &str) -> SimPhone {
        match self.try_create_account(phone) {
            Ok(p) => p,
            Err(e) => panic!("SimServer::create_account: {e}"),
        }
    }

    /// The phone of an existing account (PN or LID JID).
    pub fn phone(&self, user: &Jid) -> Option<SimPhone> {
        let (pn, lid) = self
            .shared
            .with_world(|w, _| w.account(user).map(|a| (a.pn.clone(), a.lid.clone())))?;
        Some(SimPhone {
            shared: self.shared.clone(),
            pn,
            lid,
        })
    }

    /// The QR the most recently connected registering client shows now, waiting up to
    /// `timeout` for one. The ADV-secret field is empty: the secret never leaves the
    /// client, so pair with the QR string the client rendered
    /// ([`SimPhone::scan_qr`] refuses this one with [`SimError::QrWithoutAdvSecret`]).
    pub async fn next_qr(&self, timeout: Duration) -> Result<String, SimError> {
        let deadline = Instant::now() + timeout;
        loop {
            let qr = self.shared.with_world(|w, _| w.current_qr(Instant::now()));
            if let Some(qr) = qr {
                return Ok(qr);
            }
            if Instant::now() >= deadline {
                return Err(SimError::NoQr(timeout));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Cuts every connection of a device (PN or LID device JID) without a goodbye, and
    /// waits until they are gone.
    pub async fn disconnect(&self, device: &Jid) {
        let conns = self.shared.with_world(|w, _| w.connections_of_jid(device));
        self.shared
            .with_world(|w, _| w.abort_connections_of(device));
        self.shared.wait_closed(&conns).await;
    }

    /// Sends `<stream:error code>[<conflict type/>]</stream:error>` to every connection
    /// of a device, closes them, and waits until they are gone.
    pub async fn stream_error(&self, device: &Jid, code: &str, conflict: Option<&str>) {
        let node = stanza::stream_error(
            (!code.is_empty()).then_some(code),
            conflict.map(stanza::conflict),
        );
        self.stream_error_node(device, node).await;
    }

    /// Sends an arbitrary stream-ending node (e.g. `<stream:error><ack id class/>…`) to
    /// every connection of a device, closes them, and waits until they are gone.
    pub async fn stream_error_node(&self, device: &Jid, node: Node) {
        let conns = self.shared.with_world(|w, _| w.connections_of_jid(device));
        self.shared
            .with_world(|w, _| w.stream_error_to(device, &node));
        self.shared.wait_closed(&conns).await;
    }

    /// Unlinks a device: a connected one gets `401` + `<conflict type="device_removed"/>`,
    /// later logins get `<failure reason="401"/>`. Returns false for an unknown device.
    pub fn remove_device(&self, device: &Jid) -> bool {
        self.shared.with_world(|w, _| w.remove_device(device))
    }

    /// Every device (primary first) of the account a PN or LID JID names.
    pub fn registered_devices(&self, user: &Jid) -> Vec<SimDeviceInfo> {
        self.shared.with_world(|w, _| w.device_infos(user))
    }

    /// Test hook: registers a companion for the account of `user` without pairing;
    /// returns its PN device JID. It can log in with `registration.noise_key`.
    pub fn inject_device(
        &self,
        user: &Jid,
        registration: DeviceRegistration,
    ) -> Result<Jid, SimError> {
        self.shared
            .with_world(|w, _| w.inject_device(user, registration))
    }

    /// Test hook: sends the `encrypt` low-count notification to a device's connections
    /// now; returns how many got it.
    pub fn force_low_prekey_notification(&self, device: &Jid) -> usize {
        self.shared
            .with_world(|w, _| w.force_low_prekey_notification(device))
    }

    /// Notifications sent to a device's connections that were not acked yet (ids).
    pub fn unacked_notifications(&self, device: &Jid) -> Vec<String> {
        self.shared.with_world(|w, _| {
            w.connections_of_jid(device)
                .into_iter()
                .filter_map(|c| w.connections.get(&c))
                .flat_map(|c| c.unacked.keys().cloned())
                .collect()
        })
    }

    /// `w:p` / `urn:xmpp:ping` pings answered on a device's live connections.
    pub fn pings_answered(&self, device: &Jid) -> u64 {
        self.shared.with_world(|w, _| {
            w.connections_of_jid(device)
                .into_iter()
                .filter_map(|c| w.connections.get(&c))
                .map(|c| c.pings)
                .sum()
        })
    }

    /// When a device last sent a frame.
    pub fn last_activity(&self, device: &Jid) -> Option<Instant> {
        self.shared
            .with_world(|w, _| w.device_mut(device).and_then(|d| d.last_activity))
    }

    /// Number of connections past their handshake.
    pub fn connection_count(&self) -> usize {
        lock(&self.shared.links).len()
    }

    /// What clients did wrong so far (malformed stanzas, refused pairings, …), one line
    /// each. Tests of well-behaved clients assert it stays empty.
    pub fn protocol_errors(&self) -> Vec<String> {
        self.shared.with_world(|w, _| w.protocol_errors())
    }

    /// Runs `f` on the world (for tests that need more than the methods above), after
    /// finishing whatever simulated devices still had to process (a client's stanza is
    /// acked before the simulated members decrypt it), so `f` sees a settled world.
    pub fn with_world<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        self.shared.with_world(|w, _| {
            w.settle();
            f(w)
        })
    }

    /// Stops accepting, closes every connection and waits for the tasks to end.
    pub async fn shutdown(self) {
        let _ = self.shared.shutdown.send(true);
        let task = lock(&self.accept_task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The primary phone of a simulated account.
#[derive(Clone)]
pub struct SimPhone {
    shared: Arc<Shared>,
    pn: Jid,
    lid: Jid,
}

impl std::fmt::Debug for SimPhone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPhone")
            .field("pn", &self.pn)
            .field("lid", &self.lid)
            .finish_non_exhaustive()
    }
}

impl SimPhone {
    /// The account's phone-number JID (`<digits>@s.whatsapp.net`).
    pub fn pn(&self) -> Jid {
        self.pn.clone()
    }

    /// The account's LID JID (`<digits>@lid`).
    pub fn lid(&self) -> Jid {
        self.lid.clone()
    }

    /// The account key: the primary phone's identity public key.
    pub fn account_key(&self) -> Option<PublicKey> {
        self.shared.with_world(|w, _| {
            w.account(&self.pn)
                .and_then(|a| a.primary_keys())
                .map(|k| k.identity.key_pair.public)
        })
    }

    /// Scans a QR string the way the phone's camera does: checks that its ref is the
    /// current one of a connected registering client and that its keys are that
    /// client's, sends `pair-success`, verifies the `pair-device-sign` reply, registers
    /// the device and restarts the client with `515`. Returns the new device's PN JID.
    /// Fails on a malformed or stale QR, a QR without ADV secret, a refused or invalid
    /// reply, or no reply within `pairing_timeout`.
    pub async fn scan_qr(&self, qr: &str) -> Result<Jid, SimError> {
        let qr = QrData::parse(qr)?;
        let (ticket, rx) = self.shared.with_world(|w, s| {
            let (ticket, rx) = s.waiter(w);
            match w.start_qr_pairing(&self.pn.user, &qr, ticket, Instant::now()) {
                Ok(()) => Ok((ticket, rx)),
                Err(e) => {
                    lock(&s.waiters).remove(&ticket);
                    Err(e)
                }
            }
        })?;
        self.shared.await_pairing(ticket, rx, "pair-success").await
    }

    /// Enters a pairing code on the phone (`XXXX-XXXX`, dash and case optional): answers
    /// the newest client that asked for a code for this account with `primary_hello`,
    /// opens its `companion_finish` key bundle, then pairs as [`Self::scan_qr`] does.
    /// A wrong code fails with [`SimError::PairingCodeRejected`] when the bundle does
    /// not decrypt.
    pub async fn enter_pairing_code(&self, code: &str) -> Result<Jid, SimError> {
        let (conn, reference, wrapped) = self
            .shared
            .with_world(|w, _| w.code_pairing_request(&self.pn.user))?;
        let typed = code.to_owned();
        // PBKDF2 with 2^17 rounds: keep it off the async workers.
        let hello =
            tokio::task::spawn_blocking(move || PrimaryHello::start(&typed, &wrapped, &mut OsRng))
                .await
                .map_err(|_| SimError::Shutdown)?
                .map_err(|e| match e {
                    super::pair_code::PairCodeError::BadCode(_) => {
                        SimError::BadPairingCode(code.into())
                    }
                    other => SimError::PairingCodeRejected(other.to_string()),
                })?;
        let (ticket, rx) = self.shared.with_world(|w, s| {
            let (ticket, rx) = s.waiter(w);
            match w.begin_primary_hello(conn, &reference, hello, ticket) {
                Ok(()) => Ok((ticket, rx)),
                Err(e) => {
                    lock(&s.waiters).remove(&ticket);
                    Err(e)
                }
            }
        })?;
        self.shared
            .await_pairing(ticket, rx, "companion_finish and pair-success")
            .await
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tasks.spawn(serve(stream, shared.clone()));
                }
                Err(e) => {
                    tracing::warn!("sim: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    // Connections see the same signal and close; give them a moment, then stop the rest.
    let graceful = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(CLOSE_WAIT, graceful).await.is_err() {
        tasks.shutdown().await;
    }
    let waiters: Vec<_> = lock(&shared.waiters).drain().collect();
    for (_, tx) in waiters {
        let _ = tx.send(Err(SimError::Shutdown));
    }
}

/// Accepts only `GET /ws/chat` with an `Origin` header (WhatsApp's clients always send
/// one).
#[allow(clippy::result_large_err)]
fn check_upgrade(req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
    let refuse = |status: StatusCode, why: &str| {
        let mut r = ErrorResponse::new(Some(why.to_owned()));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != WS_PATH {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            "the websocket endpoint is /ws/chat",
        ));
    }
    if !req.headers().contains_key("origin") {
        return Err(refuse(StatusCode::FORBIDDEN, "missing Origin header"));
    }
    Ok(resp)
}

/// Why a connection task ended early (logged, never shown to the client).
#[derive(Debug)]
enum Ended {
    Closed,
    Problem(String),
}

/// The websocket plus the frame reader and the frames already cut but not processed.
struct Wire {
    ws: WebSocketStream<TcpStream>,
    reader: ServerFrameReader,
    queued: VecDeque<Vec<u8>>,
}

impl Wire {
    /// The next frame payload, reading websocket messages as needed.
    async fn next_frame(&mut self) -> Result<Vec<u8>, Ended> {
        loop {
            if let Some(f) = self.queued.pop_front() {
                return Ok(f);
            }
            match self.ws.next().await {
                Some(Ok(Message::Binary(chunk))) => {
                    let frames = self
                        .reader
                        .push(&chunk)
                        .map_err(|e| Ended::Problem(e.to_string()))?;
                    self.queued.extend(frames);
                }
                Some(Ok(Message::Close(_))) | None => return Err(Ended::Closed),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(Ended::Problem(e.to_string())),
            }
        }
    }
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let handshake_timeout = shared.config.handshake_timeout;
    let setup = tokio::time::timeout(handshake_timeout, handshake(stream, &shared)).await;
    let (wire, outgoing, incoming, conn, rx) = match setup {
        Ok(Ok(parts)) => parts,
        Ok(Err(Ended::Problem(why))) => {
            tracing::info!("sim: handshake failed: {why}");
            return;
        }
        Ok(Err(Ended::Closed)) => return,
        Err(_) => {
            tracing::info!("sim: handshake timed out after {handshake_timeout:?}");
            return;
        }
    };
    let ended = run(wire, outgoing, incoming, conn, rx, &shared).await;
    if let Err(Ended::Problem(why)) = &ended {
        tracing::info!(conn, "sim: connection ended: {why}");
    }
    lock(&shared.links).remove(&conn);
    shared.with_world(|w, _| {
        w.on_closed(conn);
        // Finish what simulated devices had left to do for this connection's stanzas.
        w.settle();
    });
}

type Established = (
    Wire,
    OutgoingCipher,
    IncomingCipher,
    ConnId,
    mpsc::UnboundedReceiver<ConnAction>,
);

async fn handshake(stream: TcpStream, shared: &Arc<Shared>) -> Result<Established, Ended> {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_WS_MESSAGE))
        .max_frame_size(Some(MAX_WS_MESSAGE));
    let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, check_upgrade, Some(config))
        .await
        .map_err(|e| Ended::Problem(format!("websocket upgrade: {e}")))?;
    let mut wire = Wire {
        ws,
        reader: ServerFrameReader::new(),
        queued: VecDeque::new(),
    };
    let hello = wire.next_frame().await?;
    let (awaiting, server_hello) = accept_client_hello(
        &hello,
        &shared.server_static,
        &shared.cert_chain,
        &mut OsRng,
    )
    .map_err(|e| Ended::Problem(e.to_string()))?;
    wire.ws
        .send(Message::Binary(server_hello.into()))
        .await
        .map_err(|e| Ended::Problem(e.to_string()))?;
    let finish = wire.next_frame().await?;
    let accepted = awaiting
        .process_client_finish(&finish)
        .map_err(|e| Ended::Problem(e.to_string()))?;
    let (outgoing, incoming) = accepted.transport.into_halves();
    let (tx, rx) = mpsc::unbounded_channel();
    let now = Instant::now();
    let conn = shared.with_world(|w, s| {
        let conn = w.new_connection(accepted.client_static, now);
        lock(&s.links).insert(conn, tx);
        w.on_client_payload(conn, &accepted.payload, now);
        conn
    });
    Ok((wire, outgoing, incoming, conn, rx))
}

async fn run(
    mut wire: Wire,
    mut outgoing: OutgoingCipher,
    mut incoming: IncomingCipher,
    conn: ConnId,
    mut rx: mpsc::UnboundedReceiver<ConnAction>,
    shared: &Arc<Shared>,
) -> Result<(), Ended> {
    let mut shutdown = shared.shutdown.subscribe();
    if *shutdown.borrow_and_update() {
        let _ = wire.ws.close(None).await;
        return Ok(());
    }
    let mut wake: Option<Instant> = None;
    let compress = shared.config.compress_outgoing;
    // What simulated devices do in answer to a stanza (decrypting a group send to
    // thousands of them) runs after the answer went out, in slices, yielding in
    // between so the sender reads its ack and other connections move on meanwhile.
    let mut settling = false;
    loop {
        // Frames cut from an earlier websocket message come first.
        while let Some(frame) = wire.queued.pop_front() {
            receive_frame(&mut incoming, &frame, conn, shared)?;
            settling = true;
        }
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            action = rx.recv() => match action {
                Some(ConnAction::Send(node)) => {
                    let plain = if compress { marshal_compressed(&node) } else { marshal(&node) }
                        .map_err(|e| Ended::Problem(format!("cannot encode {}: {e}", node.tag)))?;
                    let frame = outgoing
                        .encrypt_frame(&plain)
                        .map_err(|e| Ended::Problem(e.to_string()))?;
                    wire.ws
                        .send(Message::Binary(frame.into()))
                        .await
                        .map_err(|e| Ended::Problem(e.to_string()))?;
                }
                Some(ConnAction::Close) | None => {
                    let _ = wire.ws.close(None).await;
                    return Ok(());
                }
                Some(ConnAction::Abort) => {
                    // RST instead of FIN: the client sees the connection die mid-stream.
                    let _ = wire.ws.get_ref().set_zero_linger();
                    return Ok(());
                }
                Some(ConnAction::WakeAt(at)) => {
                    wake = Some(wake.map_or(at, |w| w.min(at)));
                }
            },
            _ = sleep => {
                wake = None;
                shared.with_world(|w, _| w.on_deadline(conn, Instant::now()));
            }
            _ = shutdown.changed() => {
                let _ = wire.ws.close(None).await;
                return Ok(());
            }
            msg = wire.ws.next() => match msg {
                Some(Ok(Message::Binary(chunk))) => {
                    let frames = wire
                        .reader
                        .push(&chunk)
                        .map_err(|e| Ended::Problem(e.to_string()))?;
                    wire.queued.extend(frames);
                }
                Some(Ok(Message::Close(_))) | None => return Err(Ended::Closed),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(Ended::Problem(e.to_string())),
            },
            _ = std::future::ready(()), if settling => {
                settling = shared.with_world(|w, _| w.settle_steps(SETTLE_SLICE));
                tokio::task::yield_now().await;
            }
        }
    }
}

/// Decrypts and decodes one frame and hands the node to the world. A frame that does
/// not decrypt ends the connection; one that does not decode gets
/// `<stream:error><xml-not-well-formed/></stream:error>`.
fn receive_frame(
    incoming: &mut IncomingCipher,
    frame: &[u8],
    conn: ConnId,
    shared: &Arc<Shared>,
) -> Result<(), Ended> {
    let plain = incoming
        .decrypt_frame(frame)
        .map_err(|e| Ended::Problem(e.to_string()))?;
    let now = Instant::now();
    match unmarshal(&plain) {
        Ok(node) => shared.with_world(|w, _| w.on_node_deferred(conn, node, now)),
        Err(e) => shared.with_world(|w, _| {
            w.protocol_error(conn, format!("undecodable node: {e}"));
            w.end_with_stream_error(
                conn,
                stanza::stream_error(None, Some(Node::new("xml-not-well-formed"))),
            );
        }),
    }
    Ok(())
}
