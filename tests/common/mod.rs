//! Shared helpers for integration tests: the independent implementations in
//! `tools/interop` (npm and PyPI packages), installed on first use from the registries
//! by the versions pinned in `tools/interop/package-lock.json` and `requirements.txt`.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// `tools/interop` in this checkout.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/interop")
}

// `File::lock` is stable since Rust 1.89, above the declared rust-version (1.85):
// the tests need 1.89 while the library keeps 1.85.
/// Serialises installs across test processes with a lock file created exclusively
/// (`create_new`), removed when done; a lock older than 10 minutes is taken as stale.
fn with_install_lock<T>(f: impl FnOnce() -> T) -> T {
    let path = interop_dir().join(".install.lock");
    let started = std::time::Instant::now();
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let stale = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > std::time::Duration::from_secs(600));
                if stale {
                    let _ = std::fs::remove_file(&path);
                }
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(900),
                    "timed out waiting for {}",
                    path.display()
                );
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Err(e) => panic!("cannot create {}: {e}", path.display()),
        }
    }
    struct Unlock(PathBuf);
    impl Drop for Unlock {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _unlock = Unlock(path);
    f()
}

fn run_checked(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes sure the npm packages are installed; returns `tools/interop`.
pub fn node_env() -> &'static Path {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = interop_dir();
        with_install_lock(|| {
            if !dir.join("node_modules/baileys/lib/WABinary").exists()
                || !dir.join("node_modules/libsignal/src").exists()
            {
                run_checked(
                    Command::new("npm")
                        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
                        .current_dir(&dir),
                    "npm ci in tools/interop",
                );
            }
        });
        dir
    })
}

/// Makes sure the Python venv with the PyPI packages exists; returns its interpreter.
pub fn python_env() -> &'static Path {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = interop_dir();
        let py = dir.join(".venv/bin/python");
        with_install_lock(|| {
            let ready = dir.join(".venv/.installed");
            if !ready.exists() {
                run_checked(
                    Command::new("python3")
                        .args(["-m", "venv", ".venv"])
                        .current_dir(&dir),
                    "python3 -m venv",
                );
                run_checked(
                    Command::new(&py)
                        .args(["-m", "pip", "install", "-q", "-r", "requirements.txt"])
                        .current_dir(&dir),
                    "pip install -r tools/interop/requirements.txt",
                );
                std::fs::write(&ready, b"ok").unwrap();
            }
        });
        py
    })
}

fn run_with_stdin(mut cmd: Command, input: &[u8], what: &str) -> Vec<u8> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for child");
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `node tools/interop/<script>` with `input` on stdin; returns stdout.
pub fn run_node(script: &str, input: &[u8]) -> Vec<u8> {
    let dir = node_env();
    let mut cmd = Command::new("node");
    cmd.arg(dir.join(script)).current_dir(dir);
    run_with_stdin(cmd, input, script)
}

/// Runs `tools/interop/<script>` under the venv's Python with `input` on stdin.
pub fn run_python(script: &str, input: &[u8]) -> Vec<u8> {
    let py = python_env();
    let mut cmd = Command::new(py);
    cmd.arg(interop_dir().join(script))
        .current_dir(interop_dir());
    run_with_stdin(cmd, input, script)
}
