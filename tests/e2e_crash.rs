//! A client killed with SIGKILL at random moments (while connecting, logging in and
//! uploading prekeys) leaves a SQLite store that still works: after every kill the
//! database passes its integrity check, the device is still paired, every prekey the
//! server holds for it is in the store with the same public key, and a new process
//! logs in with it.

mod client_support;

use std::time::Duration;

use rand::{Rng, SeedableRng};
use waevent::client::Event;
use waevent::jid::Jid;
use waevent::signal::curve::PublicKey;
use waevent::signal::store::SignalStoreExt;
use waevent::sim::{SimConfig, SimServer};
use waevent::store::{SqliteStore, Store};

use client_support::*;

/// Kills per run.
const KILLS: usize = 12;

/// The test binary re-executed as a client that keeps logging in and uploading
/// prekeys until it is killed (does nothing in a normal run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churning_child() {
    let Some((mode, store_path, config)) = child_config() else {
        return;
    };
    let (client, mut events, _store) = sqlite_client(&store_path, config).await;
    match mode.as_str() {
        "churn" => {
            for cycle in 0u32.. {
                client.connect().await.expect("child connects");
                wait_for(&mut events, "login", |e| matches!(e, Event::Connected)).await;
                child_say(&format!("logged in {cycle}"));
                client.upload_prekeys(50).await.expect("upload");
                child_say(&format!("uploaded {cycle}"));
                client.disconnect().await;
            }
        }
        "login" => {
            client.connect().await.expect("child connects");
            wait_for(&mut events, "login", |e| matches!(e, Event::Connected)).await;
            let count = client
                .upload_prekeys(50)
                .await
                .expect("upload after the crashes");
            child_say(&format!("uploaded {count}"));
            client.disconnect().await;
            child_say("done");
        }
        other => panic!("unknown child mode {other}"),
    }
}

/// Every prekey the server holds for `device`, as (id, public key).
fn server_prekeys(sim: &SimServer, device: &Jid) -> Vec<(u32, PublicKey)> {
    sim.with_world(|w| {
        w.account(device)
            .and_then(|a| a.devices.get(&device.device))
            .map(|d| d.prekeys.iter().copied().collect())
            .unwrap_or_default()
    })
}

/// The store at `path` is sound and agrees with the server. Prekeys already checked
/// (in `checked`) are skipped; the final round passes an empty set to check them all.
async fn check_store(
    path: &std::path::Path,
    sim: &SimServer,
    device: &Jid,
    round: usize,
    checked: &mut std::collections::HashSet<u32>,
) {
    let store = SqliteStore::open(path)
        .await
        .unwrap_or_else(|e| panic!("round {round}: store does not open: {e}"));
    store
        .integrity_check()
        .await
        .unwrap_or_else(|e| panic!("round {round}: {e}"));
    let creds = store
        .load_credentials()
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("round {round}: credentials lost"));
    assert_eq!(creds.pn.as_ref(), Some(device), "round {round}");
    for (id, public) in server_prekeys(sim, device) {
        if !checked.insert(id) {
            continue;
        }
        let record = store
            .load_prekey_record(id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("round {round}: server prekey {id} is not in the store"));
        assert_eq!(
            record.key_pair.public, public,
            "round {round}: prekey {id} differs from the server's"
        );
    }
    let info = sim
        .registered_devices(device)
        .into_iter()
        .find(|d| &d.jid == device)
        .unwrap();
    assert_eq!(
        info.identity, creds.identity.key_pair.public,
        "round {round}"
    );
    let spk = store
        .load_signed_prekey_record(info.signed_prekey_id)
        .await
        .unwrap()
        .expect("signed prekey");
    assert_eq!(spk.key_pair.public, info.signed_prekey, "round {round}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_at_random_moments_leaves_a_working_store() {
    let seed: u64 = rand::random();
    println!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let sim = start_sim_with(SimConfig {
        max_prekeys_per_device: 1_000_000,
        ..SimConfig::default()
    })
    .await;
    let phone = sim.create_account("5511977770001");
    let device = {
        let (client, mut events, _store) = sqlite_client(&path, client_config(&sim)).await;
        let device = pair_by_qr(&client, &mut events, &phone).await;
        client.disconnect().await;
        device
    };
    let mut checked = std::collections::HashSet::new();
    check_store(&path, &sim, &device, 0, &mut checked).await;

    let mut outputs = Vec::new();
    for round in 1..=KILLS {
        let mut child = spawn_child("churning_child", "churn", &sim, &path);
        // Half the kills land around connecting and logging in, half later.
        let delay = if round % 2 == 0 {
            Duration::from_millis(rng.gen_range(20..300))
        } else {
            Duration::from_millis(rng.gen_range(300..1000))
        };
        tokio::time::sleep(delay).await;
        child.kill().expect("SIGKILL the child");
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let uploads = stdout.matches("CHILD uploaded").count();
        let logins = stdout.matches("CHILD logged in").count();
        outputs.push(format!(
            "round {round}: killed after {delay:?}, {logins} logins, {uploads} uploads"
        ));
        // The server may still hold the dead connection for a moment.
        tokio::time::sleep(Duration::from_millis(50)).await;
        check_store(&path, &sim, &device, round, &mut checked).await;
    }
    println!("{}", outputs.join("\n"));

    let child = spawn_child("churning_child", "login", &sim, &path);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "final login failed:\n{stdout}");
    assert!(stdout.contains("CHILD done"), "{stdout}");
    checked.clear();
    check_store(&path, &sim, &device, KILLS + 1, &mut checked).await;
    assert!(
        sim.protocol_errors().is_empty(),
        "{:?}",
        sim.protocol_errors()
    );
    sim.shutdown().await;
}
