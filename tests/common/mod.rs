//! Helpers shared by the integration tests. Each test crate uses a different subset.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Stdio};

/// True under `CI=true` (or any CI value but "", "0" and "false", as insta reads it).
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether a real peer program runs (`program probe...`). Missing: a loud skip, or a failure
/// under `CI=true`, where `.ci/run` has installed it.
pub fn peer_available(program: &str, probe: &[&str]) -> bool {
    let found = Command::new(program)
        .args(probe)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            !ci(),
            "{program} is required under CI=true but is not installed"
        );
        eprintln!("SKIPPED: {program} is not installed; .ci/run installs it");
    }
    found
}

/// insta settings that keep every snapshot in the top-level `snapshots/` folder.
pub fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings
}

/// `etrn-harness probe ARGS`, killed if it runs past `limit` (which fails the test).
pub async fn run_probe(args: &[&str], limit: std::time::Duration) -> std::process::Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .arg("probe")
        .args(args)
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(limit, child)
        .await
        .expect("probe finishes within its limit")
        .expect("the binary runs")
}

/// A mail-send client session with the smart host (or proxy) at `addr`, after EHLO, STARTTLS
/// (its self-signed certificate accepted) and EHLO again; each reply awaited at most `timeout`.
pub async fn starttls_client(
    addr: std::net::SocketAddr,
    timeout: std::time::Duration,
) -> mail_send::SmtpClient<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    mail_send::SmtpClientBuilder::new("localhost", addr.port())
        .expect("builder")
        .implicit_tls(false)
        .allow_invalid_certs()
        .helo_host("client.example")
        .timeout(timeout)
        .connect()
        .await
        .expect("a STARTTLS session")
}

/// Polls `ready` until it holds or `limit` passes (false then): for state the kernel keeps and
/// tells no one of, such as a listen queue's length, where there is no event to wait on. Checks
/// every 2 ms.
pub async fn wait_for(limit: std::time::Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// [`wait_for`] for a test without a runtime: polls `ready` every 2 ms until it holds or `limit`
/// passes (false then).
pub fn wait_for_blocking(limit: std::time::Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}
