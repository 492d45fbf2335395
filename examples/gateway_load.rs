//! Load generator for the HTTP gateway: sustained `send-event` requests from a
//! separate process, reporting requests/s and latency percentiles.
//!
//! ```sh
//! waevent serve --sim --json > /tmp/ready.json &      # prints one "ready" line
//! cargo run --release --example gateway_load -- --ready /tmp/ready.json \
//!     --api ryze --concurrency 16 --duration 20
//! ```
//!
//! `--ready` reads the line `waevent serve --sim --json` prints (URL, instance,
//! tokens, demo group); `--url/--instance/--token/--client-token/--chat` give the
//! same by hand (e.g. for `waevent serve --config`). Every request is a real send:
//! the gateway's client encrypts and sends the card to the group through the
//! simulator. Exits 1 when any request failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;

/// Drives sustained send-event requests at a waevent gateway.
#[derive(Parser, Debug, Clone)]
struct Args {
    /// The JSON line `waevent serve --sim --json` printed (file path).
    #[arg(long, value_name = "FILE")]
    ready: Option<std::path::PathBuf>,
    /// Gateway base URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    url: Option<String>,
    /// Instance name.
    #[arg(long)]
    instance: Option<String>,
    /// Instance token.
    #[arg(long)]
    token: Option<String>,
    /// Z-API Client-Token.
    #[arg(long)]
    client_token: Option<String>,
    /// The chat to send to (a group JID).
    #[arg(long)]
    chat: Option<String>,
    /// Which API: ryze or zapi.
    #[arg(long, default_value = "ryze")]
    api: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds to run (after a 2 s warm-up that is not measured).
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Seconds of warm-up.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
}

#[derive(Debug, Clone)]
struct Target {
    url: String,
    body: String,
    headers: Vec<(&'static str, String)>,
}

fn target(args: &Args) -> Result<Target, String> {
    let mut url = args.url.clone();
    let mut instance = args.instance.clone();
    let mut token = args.token.clone();
    let mut client_token = args.client_token.clone();
    let mut chat = args.chat.clone();
    if let Some(path) = &args.ready {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let line = text
            .lines()
            .find(|l| l.contains("\"ready\""))
            .ok_or_else(|| format!("no ready line in {}", path.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("bad ready line: {e}"))?;
        let inst = &v["instances"][0];
        let s = |x: &serde_json::Value| x.as_str().map(str::to_owned);
        url = url.or(s(&v["url"]));
        instance = instance.or(s(&inst["name"]));
        token = token.or(s(&inst["token"]));
        client_token = client_token.or(s(&inst["clientToken"]));
        chat = chat.or(s(&inst["group"]));
    }
    let need = |x: Option<String>, what: &str| x.ok_or(format!("{what} is required"));
    let url = need(url, "--url")?;
    let instance = need(instance, "--instance")?;
    let token = need(token, "--token")?;
    let chat = need(chat, "--chat")?;
    match args.api.as_str() {
        "ryze" => Ok(Target {
            url: format!("{url}/api/message/event/{instance}"),
            body: serde_json::json!({
                "number": chat, "name": "Load test", "description": "gateway_load",
                "startAt": "2026-12-01T15:00:00-03:00", "endAt": "2026-12-01T16:00:00-03:00",
                "location": {"name": "Room 4"}, "hasReminder": true, "reminderOffsetSec": 900,
            })
            .to_string(),
            headers: vec![("token", token)],
        }),
        "zapi" => {
            let group = chat.strip_suffix("@g.us").map(|g| format!("{g}-group"));
            Ok(Target {
                url: format!("{url}/instances/{instance}/token/{token}/send-event"),
                body: serde_json::json!({
                    "phone": group.unwrap_or(chat),
                    "event": {"name": "Load test", "dateTime": "2026-12-01T15:00:00",
                              "timeZone": "UTC-3", "location": {"name": "Room 4"}},
                })
                .to_string(),
                headers: client_token
                    .map(|c| vec![("Client-Token", c)])
                    .unwrap_or_default(),
            })
        }
        other => Err(format!("--api must be ryze or zapi, got {other:?}")),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let target = match target(&args) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            eprintln!("gateway_load: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .expect("HTTP client");
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (http, target, measuring, stop, errors) = (
            http.clone(),
            target.clone(),
            measuring.clone(),
            stop.clone(),
            errors.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
            while !stop.load(Ordering::Relaxed) {
                let mut req = http
                    .post(&target.url)
                    .header("Content-Type", "application/json")
                    .body(target.body.clone());
                for (k, v) in &target.headers {
                    req = req.header(*k, v);
                }
                let t0 = Instant::now();
                let result = req.send().await;
                let status = match result {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                let took = t0.elapsed();
                if measuring.load(Ordering::Relaxed) {
                    *statuses.entry(status).or_default() += 1;
                    if status == 200 {
                        latencies.push(took);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (latencies, statuses)
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
    for w in workers {
        if let Ok((lat, st)) = w.await {
            all.extend(lat);
            for (k, v) in st {
                *statuses.entry(k).or_default() += v;
            }
        }
    }
    all.sort();
    let ok = all.len();
    let rps = ok as f64 / elapsed.as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{} API, {} connections, {:.1} s: {ok} sends OK, {} failed; {rps:.1} req/s; latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; statuses {:?}",
        args.api,
        args.concurrency,
        elapsed.as_secs_f64(),
        errors.load(Ordering::Relaxed),
        ms(percentile(&all, 50.0)),
        ms(percentile(&all, 90.0)),
        ms(percentile(&all, 99.0)),
        ms(all.last().copied().unwrap_or_default()),
        statuses,
    );
    if errors.load(Ordering::Relaxed) > 0 || ok == 0 {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    }
}
