//! End-to-end: the real client against the in-process simulator (issue 4's Done-when).
//! Pairing by QR (in process and with the `waevent pair` CLI) and by phone-number
//! code, the 515 restart, login from the SQLite store in a new process, and the prekey
//! upload that follows.

mod client_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use serde_json::Value;
use waevent::client::{Client, ConnectionState, Event};
use waevent::jid::Jid;
use waevent::proto::adv::AdvSignedDeviceIdentity;
use waevent::signal::address::ProtocolAddress;
use waevent::signal::store::SignalStoreExt;
use waevent::store::{MemoryStore, SqliteStore, Store};

use client_support::*;

/// The test binary re-executed as a child client (does nothing in a normal run).
#[tokio::test]
async fn child_client() {
    let Some((mode, store_path, config)) = child_config() else {
        return;
    };
    let (client, mut events, _store) = sqlite_client(&store_path, config).await;
    match mode.as_str() {
        "login" => {
            client.connect().await.expect("child connects");
            wait_for(&mut events, "login", |e| matches!(e, Event::Connected)).await;
            let jid = client.own_jid().await.expect("paired");
            child_say(&format!("connected {jid}"));
            // Let the post-login prekey check and <active/> run before leaving.
            let count = client.refill_prekeys_if_low().await.expect("prekey check");
            child_say(&format!("refilled {count}"));
            client.disconnect().await;
            child_say("done");
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_by_qr_then_logs_in_from_sqlite_in_a_new_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let sim = start_sim().await;
    let phone = sim.create_account("5511999990001");
    let (client, mut events, store) = sqlite_client(&path, client_config(&sim)).await;

    let device = pair_by_qr(&client, &mut events, &phone).await;
    assert_eq!(device.user, "5511999990001");
    assert_ne!(device.device, 0);

    // What pairing stored: own JIDs, the signed identity with the account key and our
    // device signature, the phone's identity under our LID device 0.
    let creds = store
        .load_credentials()
        .await
        .unwrap()
        .expect("credentials");
    assert_eq!(creds.pn.as_ref(), Some(&device));
    let lid = creds.lid.clone().expect("own LID");
    assert_eq!(lid, phone.lid().with_device(device.device));
    let account = AdvSignedDeviceIdentity::decode(&creds.account.clone().unwrap()[..]).unwrap();
    assert_eq!(
        account.account_signature_key.as_deref(),
        Some(&phone.account_key().unwrap().as_bytes()[..])
    );
    assert_eq!(account.device_signature.as_ref().map(Vec::len), Some(64));
    assert_eq!(creds.platform, "android");
    assert!(creds.login_counter >= 1);
    let primary = store
        .load_identities(&[ProtocolAddress::from_jid(&phone.lid().with_device(0))])
        .await
        .unwrap();
    assert_eq!(primary[0], phone.account_key());
    assert_eq!(
        store.lid_for_pn(&device).await.unwrap(),
        Some(lid.clone()),
        "own LID↔PN mapping"
    );

    // The server registered exactly what the store holds.
    let info = sim
        .registered_devices(&phone.pn())
        .into_iter()
        .find(|d| d.jid == device)
        .expect("device registered");
    assert_eq!(info.identity, creds.identity.key_pair.public);
    assert_eq!(info.registration_id, creds.identity.registration_id);
    assert_eq!(info.prekeys_left, 812, "first upload is 812 keys");
    for id in &info.prekey_ids {
        let record = store.load_prekey_record(*id).await.unwrap();
        assert!(record.is_some(), "server prekey {id} is in the store");
    }
    assert!(
        sim.protocol_errors().is_empty(),
        "{:?}",
        sim.protocol_errors()
    );
    client.disconnect().await;
    assert_eq!(client.state(), ConnectionState::Disconnected);
    drop(client);
    drop(store);

    // A new process logs in with the same SQLite file.
    let child = spawn_child("child_client", "login", &sim, &path);
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .expect("child runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child failed:\n{stdout}");
    assert!(
        stdout.contains(&format!("CHILD connected {device}")),
        "{stdout}"
    );
    assert!(stdout.contains("CHILD refilled 0"), "{stdout}");
    assert!(stdout.contains("CHILD done"), "{stdout}");
    assert!(
        sim.protocol_errors().is_empty(),
        "{:?}",
        sim.protocol_errors()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn pairs_by_phone_number_code() {
    let sim = start_sim().await;
    let phone = sim.create_account("+44 7700 900123");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (client, mut events) = Client::new(store.clone(), client_config(&sim));
    client.connect().await.unwrap();
    wait_for(&mut events, "the registration connection", |e| {
        matches!(e, Event::PairingQr { .. })
    })
    .await;
    // Numbers that cannot be international are refused before anything is sent.
    for bad in ["12345", "0044 7700 900123"] {
        let err = client.pair_phone(bad).await.unwrap_err().to_string();
        assert!(err.contains("invalid phone number"), "{err}");
    }
    let code = client.pair_phone("+44 7700 900123").await.unwrap();
    assert_eq!(code.len(), 9);
    assert_eq!(&code[4..5], "-");
    match wait_for(&mut events, "the code event", |e| {
        matches!(e, Event::PairingCode { .. })
    })
    .await
    {
        Event::PairingCode { code: c } => assert_eq!(c, code),
        _ => unreachable!(),
    }
    let typed = code.to_lowercase();
    let (entered, paired) = tokio::join!(
        phone.enter_pairing_code(&typed),
        wait_for(&mut events, "pair success", |e| matches!(
            e,
            Event::PairSuccess { .. }
        ))
    );
    let device = entered.expect("the phone accepts the code");
    let Event::PairSuccess { jid, .. } = paired else {
        unreachable!()
    };
    assert_eq!(jid, device);
    wait_for(&mut events, "login after 515", |e| {
        matches!(e, Event::Connected)
    })
    .await;
    wait_for(&mut events, "prekeys", |e| {
        matches!(e, Event::PreKeysUploaded { count: 812 })
    })
    .await;
    // The ADV secret derived from the code is what the phone's HMAC used, and it is
    // stored with the pairing.
    let creds = store.load_credentials().await.unwrap().unwrap();
    assert_eq!(creds.pn, Some(device));
    assert!(
        sim.protocol_errors().is_empty(),
        "{:?}",
        sim.protocol_errors()
    );
    client.disconnect().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_wrong_pairing_code_is_refused_by_the_phone() {
    let sim = start_sim().await;
    let phone = sim.create_account("5511999990003");
    let (client, mut events) = Client::new(Arc::new(MemoryStore::new()), client_config(&sim));
    client.connect().await.unwrap();
    wait_for(&mut events, "registration", |e| {
        matches!(e, Event::PairingQr { .. })
    })
    .await;
    let code = client.pair_phone("5511999990003").await.unwrap();
    let wrong = if code.starts_with('Z') {
        "YYYY-YYYY"
    } else {
        "ZZZZ-ZZZZ"
    };
    let err = phone.enter_pairing_code(wrong).await.unwrap_err();
    assert!(!err.to_string().is_empty());
    let events_after = drain(&mut events, Duration::from_millis(300)).await;
    assert!(
        !events_after
            .iter()
            .any(|e| matches!(e, Event::PairSuccess { .. })),
        "{events_after:?}"
    );
    assert!(client.own_jid().await.is_none());
    client.disconnect().await;
    sim.shutdown().await;
}

/// Reads JSON lines from the CLI until one has `event` == `want` (failing on an
/// error event or EOF).
fn read_event(lines: &mut impl Iterator<Item = std::io::Result<String>>, want: &str) -> Value {
    for line in lines {
        let line = line.expect("read CLI output");
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("CLI printed a line that is not JSON ({e}): {line}"));
        if v["event"] == want {
            return v;
        }
        assert_ne!(v["event"], "error", "CLI error: {line}");
    }
    panic!("CLI ended before a {want} event");
}

fn cli(store: &std::path::Path, sim: &waevent::sim::SimServer) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_waevent"));
    cmd.arg("pair")
        .arg("--json")
        .arg("--store")
        .arg(store)
        .arg("--server")
        .arg(sim.url())
        .arg("--trust-root")
        .arg(hex::encode(sim.trust_root().as_bytes()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pair_command_pairs_by_qr_and_by_code() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim().await;

    // QR: the CLI prints the exact QR string; the phone scans it.
    let phone = sim.create_account("5511999990004");
    let qr_store = dir.path().join("qr.db");
    let mut child = cli(&qr_store, &sim).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let qr = read_event(&mut lines, "qr");
        tx.send(qr["code"].as_str().unwrap().to_owned()).unwrap();
        let paired = read_event(&mut lines, "paired");
        let uploaded = read_event(&mut lines, "prekeys_uploaded");
        (paired, uploaded)
    });
    let code = tokio::task::spawn_blocking(move || rx.recv_timeout(EVENT_TIMEOUT))
        .await
        .unwrap()
        .expect("the CLI prints a QR");
    assert!(code.starts_with("2@") || code.contains(','), "{code}");
    assert_eq!(code.split(',').count(), 5, "{code}");
    let device = phone.scan_qr(&code).await.expect("scan the CLI's QR");
    let (paired, uploaded) = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    assert_eq!(paired["jid"], device.to_string());
    assert_eq!(
        paired["lid"],
        phone.lid().with_device(device.device).to_string()
    );
    assert_eq!(uploaded["count"], 812);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());

    // Running it again finds the stored session.
    let out = tokio::task::spawn_blocking({
        let mut cmd = cli(&qr_store, &sim);
        move || cmd.output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(out.status.success());
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["event"], "paired");
    assert_eq!(line["already"], true);
    assert_eq!(line["jid"], device.to_string());
    let store = SqliteStore::open(&qr_store).await.unwrap();
    assert_eq!(
        store.load_credentials().await.unwrap().unwrap().pn,
        Some(device)
    );

    // Code: --phone prints the code; the phone enters it.
    let phone2 = sim.create_account("5511999990005");
    let code_store = dir.path().join("code.db");
    let mut cmd = cli(&code_store, &sim);
    cmd.arg("--phone").arg("+55 11 99999-0005");
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let code = read_event(&mut lines, "pair_code");
        tx.send(code["code"].as_str().unwrap().to_owned()).unwrap();
        read_event(&mut lines, "paired")
    });
    let code = tokio::task::spawn_blocking(move || rx.recv_timeout(EVENT_TIMEOUT))
        .await
        .unwrap()
        .expect("the CLI prints a pairing code");
    let device2 = phone2
        .enter_pairing_code(&code)
        .await
        .expect("enter the CLI's code");
    let paired = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    assert_eq!(paired["jid"], device2.to_string());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert!(
        sim.protocol_errors().is_empty(),
        "{:?}",
        sim.protocol_errors()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pair_command_reports_errors_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim().await;
    // A root that is not the simulator's: the certificate chain is refused.
    let out = tokio::task::spawn_blocking({
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_waevent"));
        cmd.args(["pair", "--json", "--store"])
            .arg(dir.path().join("s.db"))
            .args(["--server", &sim.url(), "--trust-root", &"11".repeat(32)]);
        move || cmd.output()
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["event"], "error");
    let message = line["message"].as_str().unwrap();
    assert!(message.contains("certificate"), "{message}");
    sim.shutdown().await;
}

#[tokio::test]
async fn qr_refs_run_out_and_the_client_stops() {
    let sim = start_sim().await;
    let mut config = client_config(&sim);
    config.qr_timing = waevent::client::QrTiming {
        first: Duration::from_millis(150),
        rest: Duration::from_millis(50),
    };
    let (client, mut events) = Client::new(Arc::new(MemoryStore::new()), config);
    client.connect().await.unwrap();
    let mut codes = Vec::new();
    while let Event::PairingQr { code, timeout } = wait_for(&mut events, "QR or timeout", |e| {
        matches!(e, Event::PairingQr { .. } | Event::PairingTimeout)
    })
    .await
    {
        let expected = if codes.is_empty() { 150 } else { 50 };
        assert_eq!(timeout, Duration::from_millis(expected));
        codes.push(code);
    }
    assert_eq!(codes.len(), 6, "one QR per ref");
    let refs: std::collections::HashSet<&str> =
        codes.iter().map(|c| c.split(',').next().unwrap()).collect();
    assert_eq!(refs.len(), 6, "each QR has its own ref");
    match wait_for(&mut events, "disconnect", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await
    {
        Event::Disconnected {
            reason,
            will_reconnect,
        } => {
            assert!(!will_reconnect);
            assert_eq!(reason, waevent::client::DisconnectReason::PairingTimeout);
        }
        _ => unreachable!(),
    }
    assert_eq!(client.state(), ConnectionState::Disconnected);
    sim.shutdown().await;
}

#[tokio::test]
async fn pairing_refuses_a_phone_number_when_already_paired() {
    let sim = start_sim().await;
    let phone = sim.create_account("5511999990006");
    let (client, mut events) = Client::new(Arc::new(MemoryStore::new()), client_config(&sim));
    let device = pair_by_qr(&client, &mut events, &phone).await;
    let err = client.pair_phone("5511999990006").await.unwrap_err();
    assert!(err.to_string().contains(&device.to_string()), "{err}");
    let _ = Jid::parse(&device.to_string()).unwrap();
    client.disconnect().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_pair_success_for_another_adv_secret_is_refused() {
    let sim = start_sim().await;
    let phone = sim.create_account("5511999990007");
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (client, mut events) = Client::new(store.clone(), client_config(&sim));
    client.connect().await.unwrap();
    let Event::PairingQr { code, .. } =
        wait_for(&mut events, "QR", |e| matches!(e, Event::PairingQr { .. })).await
    else {
        unreachable!()
    };
    // The phone HMACs with the secret it reads from the QR: swap in another one.
    let mut fields: Vec<String> = code.split(',').map(str::to_owned).collect();
    fields[3] = base64_of(&[0x77; 32]);
    let forged = fields.join(",");
    let err = phone.scan_qr(&forged).await.unwrap_err();
    assert!(!err.to_string().is_empty());
    match wait_for(&mut events, "pair error", |e| {
        matches!(e, Event::PairError { .. })
    })
    .await
    {
        Event::PairError { message } => assert!(message.contains("hmac-mismatch"), "{message}"),
        _ => unreachable!(),
    }
    match wait_for(&mut events, "disconnect", |e| {
        matches!(e, Event::Disconnected { .. })
    })
    .await
    {
        Event::Disconnected { will_reconnect, .. } => assert!(!will_reconnect),
        _ => unreachable!(),
    }
    let creds = store.load_credentials().await.unwrap().unwrap();
    assert_eq!(creds.pn, None, "nothing was stored as paired");
    assert!(
        !sim.registered_devices(&phone.pn())
            .iter()
            .any(|d| d.jid.device != 0),
        "the server registered no companion"
    );
    sim.shutdown().await;
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
