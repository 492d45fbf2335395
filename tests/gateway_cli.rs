//! `waevent serve` as a process: it loads the TOML config, opens each instance's SQLite
//! store (owner-only file), serves HTTP, answers 503 while no WhatsApp client is
//! linked, refuses a bad config with one line on stderr, and exits 0 on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const TOKEN: &str = "cli-instance-token-0123456789";

fn config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\n[[instances]]\nname = \"main\"\ntoken = \"{TOKEN}\"\nstore = \"{}\"\n",
            dir.join("main.db").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn serve_runs_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_waevent"))
        .args(["serve", "--config"])
        .arg(config(dir.path()))
        .args(["--log-level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    let mut seen = String::new();
    for _ in 0..50 {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
        if let Some(rest) = line
            .trim()
            .strip_prefix("waevent: gateway listening on http://")
        {
            addr = Some(rest.to_string());
            break;
        }
    }
    let addr = addr.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("no listening line in:\n{seen}")
    });
    // The token never shows up in the logs.
    assert!(!seen.contains(TOKEN), "{seen}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let health: serde_json::Value = client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            health,
            serde_json::json!({"status": "ok", "instances": 1, "connected": 0})
        );
        let r = client
            .post(format!("http://{addr}/api/message/event/main"))
            .header("token", TOKEN)
            .header("Content-Type", "application/json")
            .body(r#"{"number":"5511999999999","name":"n","startAt":"2026-05-01T10:00:00Z"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            body,
            serde_json::json!({"success": false, "error": {"message": "Instance is not connected to WhatsApp"}})
        );
    });

    // The store was created owner-only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("main.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // SIGTERM: graceful stop, exit 0.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn serve_refuses_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[[instances]]\nname = \"main\"\ntoken = \"short\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_waevent"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err.trim(),
        "waevent: invalid gateway config: instances[0].token: must be 16 to 512 bytes long, got 5"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_waevent"))
        .args(["serve", "--config"])
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .starts_with("waevent: cannot read the gateway config")
    );
}
