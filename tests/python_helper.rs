//! The Python helper for test authors (`harness/python/etrn_harness.py`) under pytest: its own
//! tests (`tests/python/`) drive the binary built here with `smtplib`, over real TCP. Without
//! pytest it skips loudly; under `CI=true`, where `.ci/run` installs pytest (from PyPI, for the `python3` on PATH), it fails.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

mod common;

/// The whole pytest run's bound (it takes about a second).
const LIMIT: Duration = Duration::from_secs(120);

/// Whether `python3 -m pytest` runs: a loud skip when not, a failure under `CI=true`.
fn pytest_available() -> bool {
    let runs = std::process::Command::new("python3")
        .args(["-m", "pytest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !runs {
        assert!(
            !common::ci(),
            "python3 -m pytest is required under CI=true but does not run"
        );
        eprintln!("SKIPPED: python3 -m pytest does not run; .ci/run installs pytest");
    }
    runs
}

#[tokio::test]
async fn the_python_helper_passes_its_pytest_suite() {
    if !pytest_available() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = tokio::process::Command::new("python3")
        // No cache folder written into the checkout; no user plugin changes the run.
        .args(["-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs"])
        .arg(root.join("tests/python"))
        .env("ETRN_HARNESS_BIN", env!("CARGO_BIN_EXE_etrn-harness"))
        .env("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("RUST_LOG")
        .current_dir(root)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(LIMIT, run)
        .await
        .expect("pytest finishes within its limit")
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    // Every test in the file ran: none skipped, none deselected.
    let tests = std::fs::read_to_string(root.join("tests/python/test_etrn_harness.py"))
        .expect("the test file")
        .lines()
        .filter(|l| l.starts_with("def test_"))
        .count();
    assert!(text.contains(&format!("{tests} passed")), "{text}");
    assert!(!text.contains("skipped"), "{text}");
}
