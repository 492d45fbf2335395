//! `waevent serve`: the HTTP gateway over one WhatsApp client per instance
//! (`--config`), or over clients paired to an in-process simulator (`--sim`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use rand::RngCore;
use serde_json::json;
use waevent::client::Client;
use waevent::gateway::{
    ClientBackend, DisconnectedBackend, EventBackend, Gateway, GatewayConfig, InstanceConfig,
};
use waevent::jid::Jid;
use waevent::store::{MemoryStore, SqliteStore, Store};

use super::session::{Output, SessionOpts};

/// How long `--sim` waits for each demo instance to pair and log in.
const SIM_PAIR_TIMEOUT: Duration = Duration::from_secs(60);

/// Arguments of `waevent serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// The gateway's TOML configuration (see examples/gateway.toml). Required unless
    /// --sim; with --sim its listen address, webhook settings and instances (names,
    /// tokens, webhook URLs) are used, and its store paths are ignored.
    #[arg(long, short, value_name = "FILE", required_unless_present = "sim")]
    pub config: Option<PathBuf>,
    /// Run against an in-process WhatsApp simulator: every instance is a new device
    /// paired through the simulator's QR flow, with a demo group of simulated members
    /// who answer every event card sent to it. Everything stays in memory.
    #[arg(long)]
    pub sim: bool,
    /// With --sim: simulated members in each demo group.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub members: usize,
    /// With --sim: members do not answer the cards (e.g. to load-test sends alone).
    #[arg(long)]
    pub no_answers: bool,
    /// With --sim and no --config: where incoming events are POSTed (signed with a
    /// secret printed at start).
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Listen on this address instead of the config's `listen` (--sim without
    /// --config: 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    pub log_level: tracing::Level,
}

/// Runs the gateway until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs, opts: &SessionOpts) -> Result<(), String> {
    let _ = tracing_subscriber::fmt()
        .with_max_level(args.log_level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    if args.sim {
        return run_sim(args, opts).await;
    }
    let path = args
        .config
        .as_ref()
        .ok_or("--config FILE is required (or --sim)")?;
    let mut config = GatewayConfig::load(path).map_err(|e| e.to_string())?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    config.validate().map_err(|e| e.to_string())?;
    let client_config = opts.client_config()?;
    let mut backends: HashMap<String, Arc<dyn EventBackend>> = HashMap::new();
    let mut stores: HashMap<String, Arc<dyn Store>> = HashMap::new();
    let mut clients = Vec::new();
    for inst in &config.instances {
        let store_path = inst.store.as_ref().ok_or_else(|| {
            format!(
                "instance {:?} has no store (set `store` in its config)",
                inst.name
            )
        })?;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(store_path).await.map_err(|e| {
            format!(
                "cannot open the store of instance {:?} ({}): {e}",
                inst.name,
                store_path.display()
            )
        })?);
        let creds = store
            .load_credentials()
            .await
            .map_err(|e| format!("cannot read the store of instance {:?}: {e}", inst.name))?;
        let backend: Arc<dyn EventBackend> = match creds.and_then(|c| c.pn) {
            Some(jid) => {
                let (client, events) = Client::new(store.clone(), client_config.clone());
                client
                    .connect()
                    .await
                    .map_err(|e| format!("instance {:?}: cannot connect: {e}", inst.name))?;
                tracing::info!(instance = %inst.name, %jid, "connecting");
                clients.push(client.clone());
                Arc::new(ClientBackend::spawn(client, events))
            }
            None => {
                tracing::warn!(
                    instance = %inst.name,
                    store = %store_path.display(),
                    "no linked device in this store (run `waevent pair --store …`): sends answer 503"
                );
                Arc::new(DisconnectedBackend::new())
            }
        };
        backends.insert(inst.name.clone(), backend);
        stores.insert(inst.name.clone(), store);
    }
    let running = Gateway::new(config, backends, stores)
        .map_err(|e| e.to_string())?
        .bind()
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "waevent: gateway listening on http://{}",
        running.local_addr()
    );
    let result = running
        .run_until(super::shutdown_signal())
        .await
        .map_err(|e| format!("gateway stopped: {e}"));
    for client in clients {
        client.disconnect().await;
    }
    result
}

fn random_secret() -> String {
    let mut bytes = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The configuration `--sim` uses without `--config`: one instance `demo` with fresh
/// tokens.
fn sim_default_config(args: &ServeArgs) -> Result<GatewayConfig, String> {
    let listen = args
        .listen
        .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 8080)));
    let webhook = match &args.webhook_url {
        Some(url) => format!(
            "webhook_url = {}\nwebhook_secret = \"{}\"\n",
            toml_string(url),
            random_secret()
        ),
        None => String::new(),
    };
    let text = format!(
        "listen = \"{listen}\"\n\n[[instances]]\nname = \"demo\"\ntoken = \"{}\"\nclient_token = \"{}\"\n{webhook}",
        random_secret(),
        random_secret(),
    );
    GatewayConfig::from_toml(&text).map_err(|e| e.to_string())
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// One `--sim` instance, ready.
struct SimInstance {
    config: InstanceConfig,
    device: Jid,
    group: Jid,
    members: usize,
}

async fn run_sim(args: ServeArgs, opts: &SessionOpts) -> Result<(), String> {
    use waevent::sim::{GroupAddressing, GroupSpec, SimConfig, SimServer};

    let out = Output { json: opts.json };
    let mut config = match &args.config {
        Some(path) => GatewayConfig::load(path).map_err(|e| e.to_string())?,
        None => sim_default_config(&args)?,
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    config.validate().map_err(|e| e.to_string())?;
    let sim = SimServer::start(SimConfig::default())
        .await
        .map_err(|e| format!("cannot start the simulator: {e}"))?;
    let mut backends: HashMap<String, Arc<dyn EventBackend>> = HashMap::new();
    let mut stores: HashMap<String, Arc<dyn Store>> = HashMap::new();
    let mut clients = Vec::new();
    let mut ready = Vec::new();
    for (i, inst) in config.instances.iter().enumerate() {
        let phone = sim
            .try_create_account(&format!("1555010{:04}", i + 1))
            .map_err(|e| format!("simulator: {e}"))?;
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let paired =
            waevent::demo::pair_client(&sim, &phone, store.clone(), SIM_PAIR_TIMEOUT, |_| {})
                .await
                .map_err(|e| format!("instance {:?}: pairing failed: {e}", inst.name))?;
        let group = sim
            .create_group(GroupSpec {
                subject: format!("waevent demo ({})", inst.name),
                accounts: vec![phone.pn()],
                simulated_members: args.members,
                devices_per_member: 1..=3,
                addressing: GroupAddressing::Lid,
            })
            .map_err(|e| format!("simulator: cannot create the demo group: {e}"))?;
        sim.share_member_sender_keys(&group)
            .map_err(|e| format!("simulator: {e}"))?;
        let members: Vec<Jid> = sim
            .group_members(&group)
            .map_err(|e| format!("simulator: {e}"))?
            .into_iter()
            .filter(|m| m.to_non_ad() != phone.lid() && m.to_non_ad() != phone.pn())
            .collect();
        let member_count = members.len();
        clients.push(paired.client.clone());
        let client_backend: Arc<dyn EventBackend> =
            Arc::new(ClientBackend::spawn(paired.client, paired.events));
        let backend: Arc<dyn EventBackend> = if args.no_answers {
            client_backend
        } else {
            Arc::new(waevent::demo::RespondingGroupBackend::new(
                client_backend,
                sim.clone(),
                group.clone(),
                members,
                phone.pn(),
                Duration::from_secs(3),
            ))
        };
        backends.insert(inst.name.clone(), backend);
        stores.insert(inst.name.clone(), store);
        ready.push(SimInstance {
            config: inst.clone(),
            device: paired.device,
            group,
            members: member_count,
        });
    }
    let running = Gateway::new(config, backends, stores)
        .map_err(|e| e.to_string())?
        .bind()
        .await
        .map_err(|e| e.to_string())?;
    let base = format!("http://{}", running.local_addr());
    print_sim_ready(out, &base, &ready);
    let result = running
        .run_until(super::shutdown_signal())
        .await
        .map_err(|e| format!("gateway stopped: {e}"));
    for client in clients {
        client.disconnect().await;
    }
    sim.shutdown().await;
    result
}

/// Z-API's way of naming a group: `<id>-group`.
fn zapi_group(group: &Jid) -> String {
    format!("{}-group", group.user)
}

fn print_sim_ready(out: Output, base: &str, ready: &[SimInstance]) {
    if out.json {
        let instances: Vec<_> = ready
            .iter()
            .map(|r| {
                json!({
                    "name": r.config.name,
                    "token": String::from_utf8_lossy(r.config.token.expose()),
                    "clientToken": r.config.client_token.as_ref().map(|t| String::from_utf8_lossy(t.expose()).into_owned()),
                    "webhookSecret": r.config.webhook_secret.as_ref().map(|t| String::from_utf8_lossy(t.expose()).into_owned()),
                    "device": r.device.to_string(),
                    "group": r.group.to_string(),
                    "members": r.members,
                })
            })
            .collect();
        out.json_line(&json!({"event": "ready", "url": base, "instances": instances}));
        return;
    }
    let mut text = format!(
        "waevent serve --sim: gateway on {base}, backed by an in-process WhatsApp simulator.\n"
    );
    for r in ready {
        text.push_str(&format!(
            "instance {:?}: linked as {} through the QR flow; demo group {} with {} simulated \
             members (1-3 devices each), who answer every event card sent to it.\n",
            r.config.name, r.device, r.group, r.members
        ));
    }
    if let Some(r) = ready.first() {
        let token = String::from_utf8_lossy(r.config.token.expose()).into_owned();
        let client_token = r
            .config
            .client_token
            .as_ref()
            .map(|t| String::from_utf8_lossy(t.expose()).into_owned())
            .unwrap_or_default();
        text.push_str(&format!(
            "\nTry it (paste into a shell):\n\n\
export WAEVENT={base} INSTANCE={name} TOKEN={token} CLIENT_TOKEN={client_token} GROUP={group}\n\n\
# Z-API: send an event card to the demo group\n\
curl -s -X POST $WAEVENT/instances/$INSTANCE/token/$TOKEN/send-event \\\n\
  -H \"Client-Token: $CLIENT_TOKEN\" -H 'Content-Type: application/json' \\\n\
  -d '{{\"phone\":\"{zgroup}\",\"event\":{{\"name\":\"Team sync\",\"dateTime\":\"2026-12-01T15:00:00\",\"timeZone\":\"UTC-3\",\"location\":{{\"name\":\"Room 4\"}},\"callLinkType\":\"video\"}}}}'\n\n\
# RyzeAPI: the same through RyzeAPI's route\n\
curl -s -X POST $WAEVENT/api/message/event/$INSTANCE \\\n\
  -H \"token: $TOKEN\" -H 'Content-Type: application/json' -H 'Idempotency-Key: sync-1' \\\n\
  -d '{{\"number\":\"'$GROUP'\",\"name\":\"Team sync\",\"startAt\":\"2026-12-01T15:00:00-03:00\",\"endAt\":\"2026-12-01T16:00:00-03:00\",\"hasReminder\":true,\"reminderOffsetSec\":900}}'\n\n\
# Z-API: answer an event (messageId from a send above)\n\
curl -s -X POST $WAEVENT/instances/$INSTANCE/token/$TOKEN/send-event-response \\\n\
  -H \"Client-Token: $CLIENT_TOKEN\" -H 'Content-Type: application/json' \\\n\
  -d '{{\"phone\":\"{zgroup}\",\"eventMessageId\":\"<messageId>\",\"eventResponse\":\"GOING\"}}'\n\n\
# The members' answers, live (websocat, or any WebSocket client):\n\
websocat \"ws://{host}/instances/$INSTANCE/events?token=$TOKEN\"\n",
            name = r.config.name,
            group = r.group,
            zgroup = zapi_group(&r.group),
            host = base.trim_start_matches("http://"),
        ));
        if let Some(secret) = &r.config.webhook_secret {
            text.push_str(&format!(
                "\nWebhooks are signed with X-Waevent-Signature: sha256=HMAC(\"{}\", body).\n",
                String::from_utf8_lossy(secret.expose())
            ));
        }
    }
    text.push_str("\nCtrl-C to stop.");
    out.text(&text);
}
