//! The shipped profiles proved against the servers they name: private real Postfix, Exim (three
//! set-ups) and sendmail on loopback, started once for this test binary by
//! `tests/peers/real-mtas.sh` (never the system's MTA), each probed with `probe
//! --against-profile`: no difference in reply codes, masked texts or connection states.
//!
//! Needs root, Postfix installed, and the Exim and sendmail packages downloaded by `real-mtas.sh
//! fetch` into `target/peers/debs` (or `$ETRN_HARNESS_PEER_DEBS`); `.ci/run` does all three.
//! Elsewhere the test skips loudly; under `CI=true` a missing piece fails it.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

mod common;

/// The longest the five servers may take to start (about 10 s on two busy cores).
const START_LIMIT: Duration = Duration::from_secs(180);
/// The longest one probe run may take (sendmail's greet pause: about 40 s).
const PROBE_LIMIT: Duration = Duration::from_secs(300);

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn debs_dir() -> PathBuf {
    std::env::var_os("ETRN_HARNESS_PEER_DEBS")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target/peers/debs"))
}

/// Whether everything the servers need is here; a loud skip, or a failure under `CI=true`.
fn peers_available() -> bool {
    let missing = if !rustix::process::geteuid().is_root() {
        Some("root (the servers run in private mount namespaces)".to_owned())
    } else if !common::peer_available("postconf", &["-h", "mail_version"]) {
        return false;
    } else if !["exim4-daemon-light_", "sendmail-bin_"]
        .iter()
        .all(|package| {
            std::fs::read_dir(debs_dir()).is_ok_and(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(package))
            })
        })
    {
        Some(format!(
            "the Exim and sendmail packages in {} (tests/peers/real-mtas.sh fetch)",
            debs_dir().display()
        ))
    } else {
        None
    };
    match missing {
        None => true,
        Some(what) => {
            assert!(!common::ci(), "{what} is required under CI=true");
            eprintln!("SKIPPED: real servers need {what}; .ci/run provides it");
            false
        }
    }
}

/// The five servers, stopped when dropped.
struct Servers {
    run_dir: tempfile::TempDir,
    addrs: Vec<(String, String)>,
}

impl Servers {
    async fn start() -> Servers {
        let run_dir = tempfile::Builder::new()
            .prefix("etrn-real-mtas")
            // The system's temporary folder: other users (postfix, the private Debian-exim)
            // must be able to traverse it.
            .tempdir_in(std::env::temp_dir())
            .expect("a run folder");
        let script = manifest_dir().join("tests/peers/real-mtas.sh");
        let started = tokio::process::Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(debs_dir())
            .arg(run_dir.path())
            // Every queue run an accepted ETRN starts lasts 600 s, so exim-etrn-command's
            // "Already processing" answers do not depend on timing (its profile says the same).
            .env("ETRN_HOLD", "600")
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(START_LIMIT, started)
            .await
            .expect("the servers start within the limit")
            .expect("bash runs");
        let servers = Servers {
            addrs: String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.split_once(' '))
                .map(|(name, addr)| (name.to_owned(), addr.to_owned()))
                .collect(),
            run_dir,
        };
        assert!(
            out.status.success(),
            "real-mtas.sh start failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        servers
    }

    fn addr(&self, name: &str) -> &str {
        self.addrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.as_str())
            .unwrap_or_else(|| panic!("{name} did not start: {:?}", self.addrs))
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(manifest_dir().join("tests/peers/real-mtas.sh"))
            .arg("stop")
            .arg(self.run_dir.path())
            .status();
    }
}

async fn probe(args: &[&str]) -> Output {
    common::run_probe(args, PROBE_LIMIT).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One test, so the servers start once for the binary: every profile against its server, then
/// a profile cloned from the real Postfix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_profile_matches_the_real_server_it_names() {
    if !peers_available() {
        return;
    }
    let servers = Servers::start().await;
    let names = [
        "postfix",
        "exim",
        "exim-default",
        "exim-etrn-command",
        "sendmail",
    ];
    let runs: Vec<_> = names
        .iter()
        .map(|name| {
            let name = name.to_string();
            let addr = servers.addr(&name).to_owned();
            tokio::spawn(async move {
                let out = probe(&[&addr, "--against-profile", &name]).await;
                (name, out)
            })
        })
        .collect();
    let mut failures = Vec::new();
    for run in runs {
        let (name, out) = run.await.expect("probe task");
        let report = text(&out.stdout);
        eprintln!("{name}: {}", report.lines().last().unwrap_or(""));
        if out.status.code() != Some(0) || !report.contains("0 difference(s) from profile") {
            failures.push(format!(
                "{name} differs from its profile:\n{report}\n{}",
                text(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // A profile cloned from the real Postfix reproduces it.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("postfix-clone.toml");
    let out = probe(&[
        servers.addr("postfix"),
        "--emit-profile",
        &file.display().to_string(),
    ])
    .await;
    let n = etrn_harness::probe::probe_set().len();
    assert!(
        text(&out.stderr).contains(&format!("it reproduces {n} of {n} probes")),
        "{}",
        text(&out.stderr)
    );
    assert!(Path::new(&file).is_file());
}
