//! The `waevent` binary against the in-process simulator: `pair` (QR), then
//! `send-event`, `listen`, `tally`, `respond`, `edit-event` and `cancel-event` on a
//! group of simulated members, their human-readable errors; `serve --sim` answering
//! the README's requests for both APIs with members who RSVP; and `demo` reaching a
//! correct tally.

#![cfg(all(feature = "sim", feature = "gateway", feature = "cli"))]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use waevent::demo;
use waevent::event::RsvpResponse;
use waevent::jid::Jid;
use waevent::sim::{GroupAddressing, GroupSpec, SimConfig, SimPhone, SimServer};

const WAIT: Duration = Duration::from_secs(60);

fn waevent(store: &Path, sim: &SimServer) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_waevent"));
    cmd.arg("--store")
        .arg(store)
        .arg("--server")
        .arg(sim.url())
        .arg("--trust-root")
        .arg(hex::encode(sim.trust_root().as_bytes()));
    cmd
}

/// Runs a command to the end off the async workers; returns (exit code, stdout, stderr).
async fn run(mut cmd: Command) -> (i32, String, String) {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn json_line(stdout: &str, event: &str) -> Value {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == event)
        .unwrap_or_else(|| panic!("no {event:?} line in {stdout:?}"))
}

/// Pairs the store through `waevent pair --json`: the phone scans the QR it prints.
async fn pair(store: &Path, sim: &SimServer, phone: &SimPhone) -> Jid {
    let mut cmd = waevent(store, sim);
    cmd.args(["pair", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
            if v["event"] == "qr" {
                tx.send(v["code"].as_str().unwrap().to_owned()).unwrap();
            }
        }
    });
    let code = tokio::task::spawn_blocking(move || rx.recv_timeout(WAIT))
        .await
        .unwrap()
        .expect("pair prints a QR");
    let device = phone.scan_qr(&code).await.unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    reader.join().unwrap();
    device
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_commands_against_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("cli.db");
    let sim = SimServer::start(SimConfig::default()).await.unwrap();
    let phone = sim.create_account("15550108001");

    // Before pairing: a clear error, exit 2.
    let mut cmd = waevent(&store, &sim);
    cmd.args([
        "send-event",
        "--to",
        "120363000000000001@g.us",
        "--name",
        "x",
    ])
    .args(["--start", "2026-12-01T15:00:00Z"]);
    let (code, _, err) = run(cmd).await;
    assert_eq!(code, 2);
    assert!(err.starts_with("waevent: the store "), "{err}");
    assert!(err.contains("holds no linked device"), "{err}");

    let device = pair(&store, &sim, &phone).await;
    let group = sim
        .create_group(GroupSpec {
            subject: "cli test".into(),
            accounts: vec![phone.pn()],
            simulated_members: 3,
            devices_per_member: 1..=2,
            addressing: GroupAddressing::Lid,
        })
        .unwrap();
    let members: Vec<Jid> = sim
        .group_members(&group)
        .unwrap()
        .into_iter()
        .filter(|m| m.to_non_ad() != phone.lid() && m.to_non_ad() != phone.pn())
        .collect();
    let expected_devices = demo::member_devices(&sim, &members, &device).len();

    // send-event (flags), --json: the message id; every member device decrypts it.
    let mut cmd = waevent(&store, &sim);
    cmd.args([
        "--json",
        "send-event",
        "--to",
        &format!("{}-group", group.user),
    ])
    .args([
        "--name",
        "Team sync",
        "--start",
        "2026-12-01T15:00:00-03:00",
    ])
    .args(["--end", "2026-12-01T16:00:00-03:00", "--location", "Room 4"])
    .args(["--reminder", "600", "--extra-guests"]);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{err}");
    let sent = json_line(&out, "sent");
    assert_eq!(sent["chat"], group.to_string());
    let event_id = sent["messageId"].as_str().unwrap().to_string();
    let d = demo::wait_for_delivery(
        &sim,
        &group,
        &event_id,
        &device,
        None,
        expected_devices,
        WAIT,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(d.decrypted, expected_devices, "{:?}", d.failed);
    let card = d.sample.unwrap();
    assert_eq!(card.name(), "Team sync");
    assert_eq!(card.start_time(), 1_796_148_000);
    assert_eq!(card.end_time(), Some(1_796_151_600));
    assert_eq!(card.reminder_offset_secs(), Some(600));
    assert!(card.extra_guests_allowed());

    // listen --json while two members answer.
    let mut cmd = waevent(&store, &sim);
    cmd.args(["--json", "listen", "--count", "2", "--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if line.contains("\"listening\"") {
                tx.send(()).unwrap();
            }
            lines.push(line);
        }
        lines
    });
    tokio::task::spawn_blocking(move || rx.recv_timeout(WAIT))
        .await
        .unwrap()
        .expect("listen logs in");
    sim.member_rsvp(&group, &members[0], &event_id, RsvpResponse::Going, 1)
        .await
        .unwrap();
    sim.member_rsvp(&group, &members[1], &event_id, RsvpResponse::Maybe, 0)
        .await
        .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "listen exits after --count events");
    let lines = reader.join().unwrap();
    let rsvps: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "event.rsvp")
        .collect();
    assert_eq!(rsvps.len(), 2, "{lines:?}");
    let mut answers: Vec<&str> = rsvps
        .iter()
        .map(|v| v["data"]["response"].as_str().unwrap())
        .collect();
    answers.sort();
    assert_eq!(answers, ["GOING", "MAYBE"]);
    assert!(
        rsvps
            .iter()
            .all(|v| v["data"]["eventMessageId"] == event_id.as_str())
    );

    // tally --offline --json: what the store holds.
    let mut cmd = waevent(&store, &sim);
    cmd.args(["--json", "tally", "--offline", "--to", &group.to_string()])
        .args(["--event", &event_id]);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{err}");
    let tally = json_line(&out, "tally");
    assert_eq!(
        (
            &tally["going"],
            &tally["maybe"],
            &tally["notGoing"],
            &tally["extraGuestsGoing"]
        ),
        (&json!(1), &json!(1), &json!(0), &json!(1))
    );
    assert_eq!(tally["responses"].as_array().unwrap().len(), 2);

    // respond, edit-event, cancel-event: sent, with text output.
    let mut cmd = waevent(&store, &sim);
    cmd.args(["respond", "--to", &group.to_string(), "--event", &event_id])
        .args(["--response", "not-going"]);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Sent response "), "{out}");
    let mut cmd = waevent(&store, &sim);
    cmd.args([
        "--json",
        "edit-event",
        "--to",
        &group.to_string(),
        "--event",
        &event_id,
    ])
    .args([
        "--name",
        "Team sync (moved)",
        "--start",
        "2026-12-02T15:00:00Z",
    ]);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_line(&out, "sent")["what"], "edit");
    let mut cmd = waevent(&store, &sim);
    cmd.args([
        "cancel-event",
        "--to",
        &group.to_string(),
        "--event",
        &event_id,
    ]);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Sent cancellation "), "{out}");

    // Human-readable errors, one line, exit 2.
    let group_text = group.to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "send-event",
                "--to",
                "12ab",
                "--name",
                "x",
                "--start",
                "2026-12-01T15:00:00Z",
            ],
            "waevent: --to: Invalid phone number format: ",
        ),
        (
            vec![
                "send-event",
                "--to",
                "120363000000000001@g.us",
                "--start",
                "2026-12-01T15:00:00Z",
            ],
            "waevent: Name is required",
        ),
        (
            vec![
                "send-event",
                "--to",
                "120363000000000001@g.us",
                "--name",
                "x",
                "--start",
                "soon",
            ],
            "waevent: Invalid startAt, expected ISO 8601 (RFC3339): ",
        ),
        (
            vec![
                "respond",
                "--to",
                "120363000000000001@g.us",
                "--event",
                "X",
                "--response",
                "yes",
            ],
            "waevent: --response: Invalid eventResponse",
        ),
        (
            vec![
                "respond",
                "--to",
                &group_text,
                "--event",
                "3EB0NOTANEVENT",
                "--response",
                "GOING",
            ],
            "waevent: cannot answer the event: event 3EB0NOTANEVENT not found",
        ),
    ];
    for (args, want) in cases {
        let mut cmd = waevent(&store, &sim);
        cmd.args(&args);
        let (code, _, err) = run(cmd).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.starts_with(want), "{args:?}: {err:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    }
    let mut cmd = waevent(&store, &sim);
    cmd.args(["--json", "send-event", "--to", "12ab", "--name", "x"])
        .args(["--start", "2026-12-01T15:00:00Z"]);
    let (code, out, _) = run(cmd).await;
    assert_eq!(code, 2);
    let e = json_line(&out, "error");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("--to: Invalid phone number format")
    );
    assert!(
        sim.protocol_errors().is_empty(),
        "{:?}",
        sim.protocol_errors()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_sim_answers_the_readme_requests_and_members_rsvp() {
    // A webhook receiver for the members' answers.
    let hits = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, Vec<u8>)>::new()));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let hits = hits.clone();
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let hits = hits.clone();
                async move {
                    let sig = headers
                        .get("x-waevent-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    hits.lock().unwrap().push((sig, body.to_vec()));
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut child = Command::new(env!("CARGO_BIN_EXE_waevent"))
        .args([
            "--json",
            "serve",
            "--sim",
            "--members",
            "3",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--log-level", "warn", "--webhook-url"])
        .arg(format!("http://{hook_addr}/hook"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next().expect("a ready line").unwrap();
        serde_json::from_str::<Value>(&line).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(ready["event"], "ready", "{ready}");
    let base = ready["url"].as_str().unwrap().to_string();
    let inst = &ready["instances"][0];
    let name = inst["name"].as_str().unwrap();
    let token = inst["token"].as_str().unwrap();
    let client_token = inst["clientToken"].as_str().unwrap();
    let secret = inst["webhookSecret"].as_str().unwrap().to_string();
    let group = inst["group"].as_str().unwrap();
    let zgroup = format!("{}-group", group.trim_end_matches("@g.us"));
    assert_eq!(inst["members"], 3);
    let http = reqwest::Client::new();

    // The README's Z-API request.
    let r = http
        .post(format!("{base}/instances/{name}/token/{token}/send-event"))
        .header("Client-Token", client_token)
        .header("Content-Type", "application/json")
        .body(
            json!({"phone": zgroup, "event": {"name": "Team sync",
                "dateTime": "2026-12-01T15:00:00", "timeZone": "UTC-3",
                "location": {"name": "Room 4"}, "callLinkType": "video", "canceled": false}})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let z: Value = r.json().await.unwrap();
    let zapi_id = z["messageId"].as_str().unwrap().to_string();

    // The README's RyzeAPI request.
    let r = http
        .post(format!("{base}/api/message/event/{name}"))
        .header("token", token)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", "sync-2026-12-01-first")
        .body(
            json!({"number": group, "name": "Team sync", "startAt": "2026-12-01T15:00:00-03:00",
                   "endAt": "2026-12-01T16:00:00-03:00", "hasReminder": true, "reminderOffsetSec": 900})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ryze: Value = r.json().await.unwrap();
    assert_eq!(ryze["success"], true);
    assert_eq!(ryze["data"]["number"], group);

    // The README's answer request.
    let r = http
        .post(format!(
            "{base}/instances/{name}/token/{token}/send-event-response"
        ))
        .header("Client-Token", client_token)
        .header("Content-Type", "application/json")
        .body(
            json!({"phone": zgroup, "eventMessageId": zapi_id, "eventResponse": "GOING"})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The README's curl examples themselves, with the variables serve --sim prints.
    let readme_calls =
        run_readme_curl_examples(&base, name, token, client_token, group, &zapi_id).await;

    // The demo members answer both cards: 3 members × every card, signed.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let n = hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, b)| serde_json::from_slice::<Value>(b).unwrap()["type"] == "event.rsvp")
            .count();
        if n >= 3 * (2 + readme_calls) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} member answers reached the webhook"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (sig, body) in hits.lock().unwrap().iter() {
        assert!(waevent::gateway::webhook::verify_signature(
            secret.as_bytes(),
            body,
            sig
        ));
    }
    // SIGTERM: a clean exit.
    let pid = child.id().to_string();
    let status = tokio::task::spawn_blocking(move || {
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        child.wait().unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_reaches_a_correct_tally() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_waevent"));
    cmd.args([
        "--json",
        "demo",
        "--members",
        "24",
        "--devices",
        "1-3",
        "--seed",
        "5",
    ]);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let report = json_line(&out, "demo");
    assert_eq!(report["ok"], true);
    assert_eq!(report["members"], 24);
    assert_eq!(report["decrypted"], report["devices"]);
    assert!(report["devices"].as_u64().unwrap() >= 24);
    assert_eq!(report["rsvpsReceived"], 24);
    assert_eq!(report["tally"], report["expected"]);

    // Bad arguments are refused up front.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_waevent"));
    cmd.args(["demo", "--devices", "0-9"]);
    let (code, _, err) = run(cmd).await;
    assert_eq!(code, 2);
    assert!(err.contains("expected K or A-B"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_config_logs_each_paired_instance_in_with_its_own_store() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimServer::start(SimConfig::default()).await.unwrap();
    let phone = sim.create_account("15550108002");
    let paired_store = dir.path().join("main.db");
    let device = pair(&paired_store, &sim, &phone).await;
    let group = sim
        .create_group(GroupSpec {
            subject: "serve --config".into(),
            accounts: vec![phone.pn()],
            simulated_members: 2,
            devices_per_member: 1..=2,
            addressing: GroupAddressing::Lid,
        })
        .unwrap();
    let members: Vec<Jid> = sim
        .group_members(&group)
        .unwrap()
        .into_iter()
        .filter(|m| m.to_non_ad() != phone.lid() && m.to_non_ad() != phone.pn())
        .collect();
    let expected_devices = demo::member_devices(&sim, &members, &device).len();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\n\n[[instances]]\nname = \"main\"\n\
             token = \"main-instance-token-0123456789\"\nstore = \"main.db\"\n\n\
             [[instances]]\nname = \"spare\"\ntoken = \"spare-instance-token-0123456789\"\n\
             store = \"spare.db\"\n",
    )
    .unwrap();
    let mut cmd = waevent(&paired_store, &sim);
    let mut child = cmd
        .args(["serve", "--log-level", "info", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let base = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines();
        let base = loop {
            let line = lines.next().expect("serve prints its address").unwrap();
            if let Some(rest) = line.strip_prefix("waevent: gateway listening on ") {
                break rest.trim().to_string();
            }
        };
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        base
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let body = json!({"number": group.to_string(), "name": "From serve --config",
                      "startAt": "2026-12-01T15:00:00Z"})
    .to_string();
    // The paired instance logs in on its own; retry while it connects.
    let deadline = tokio::time::Instant::now() + WAIT;
    let sent: Value = loop {
        let r = http
            .post(format!("{base}/api/message/event/main"))
            .header("token", "main-instance-token-0123456789")
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        if status == 200 {
            break v;
        }
        assert_eq!(status, 503, "{v}");
        assert!(tokio::time::Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let id = sent["data"]["messageId"].as_str().unwrap();
    let d = demo::wait_for_delivery(
        &sim,
        &group,
        id,
        &device,
        None,
        expected_devices,
        WAIT,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(d.decrypted, expected_devices, "{:?}", d.failed);
    assert_eq!(d.sample.unwrap().name(), "From serve --config");
    // The unpaired instance has no client: 503.
    let r = http
        .post(format!("{base}/api/message/event/spare"))
        .header("token", "spare-instance-token-0123456789")
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let health: Value = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health,
        json!({"status": "ok", "instances": 2, "connected": 1})
    );
    let pid = child.id().to_string();
    let status = tokio::task::spawn_blocking(move || {
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        child.wait().unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "{status}");
    sim.shutdown().await;
}

/// Runs the README's gateway curl block (everything but the websocat line) with bash,
/// the variables `waevent serve --sim` exports and a real event id; returns how many
/// event cards it sent (0 when curl is not installed).
async fn run_readme_curl_examples(
    base: &str,
    instance: &str,
    token: &str,
    client_token: &str,
    group: &str,
    event_id: &str,
) -> usize {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("curl is not installed: the README's curl block is not run");
        return 0;
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```sh\n# Z-API: token in the path")
        .expect("the README's gateway curl block");
    let block = &readme[start + "```sh\n".len()..];
    let block = &block[..block.find("```").unwrap()];
    let script: String = block
        .lines()
        .filter(|l| !l.starts_with("websocat"))
        .map(|l| format!("{}\n", l.replace("\"3EB0…\"", "\"'$EVENT_ID'\"")))
        .collect();
    assert!(
        script.contains("'$EVENT_ID'"),
        "the answer example names an event"
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-e", "-c", &script])
        .env("WAEVENT", base)
        .env("INSTANCE", instance)
        .env("TOKEN", token)
        .env("CLIENT_TOKEN", client_token)
        .env("GROUP", group)
        .env("EVENT_ID", event_id);
    let (code, out, err) = run(cmd).await;
    assert_eq!(code, 0, "README curl block failed: {err}");
    // Z-API send, Z-API answer, RyzeAPI send.
    assert_eq!(out.matches("\"zaapId\"").count(), 2, "{out}");
    assert_eq!(out.matches("\"success\":true").count(), 1, "{out}");
    assert!(!out.contains("\"error\""), "{out}");
    2
}
