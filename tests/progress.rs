//! `run`'s progress line on stderr: drawn at a terminal (a real pseudo-terminal, made by
//! Python's `pty` module), even with `--output`; absent when stderr is not a terminal.

use std::process::{Command, Stdio};

mod common;

/// Runs `etrn-harness ARGS` with stdout and stderr on a pseudo-terminal; what the terminal got.
/// Bounded: the child is killed after 60 s.
fn on_a_terminal(args: &[&str]) -> String {
    const SCRIPT: &str = r#"
import os, pty, select, signal, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
out, deadline = b"", time.monotonic() + 60
while time.monotonic() < deadline:
    ready, _, _ = select.select([fd], [], [], deadline - time.monotonic())
    if not ready:
        break
    try:
        chunk = os.read(fd, 65536)
    except OSError:  # EIO: the child closed the terminal
        break
    if not chunk:
        break
    out += chunk
else:
    os.kill(pid, signal.SIGKILL)
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(args)
        .env_remove("RUST_LOG")
        .env("COLUMNS", "100")
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    text
}

#[test]
fn run_shows_progress_on_a_terminal_even_with_output() {
    if !common::peer_available("python3", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let report = dir.path().join("r.json");
    let report_s = report.to_string_lossy();
    let args = [
        "run", "--filter", "e26*", "--format", "json", "--output", &report_s,
    ];
    let terminal = on_a_terminal(&args);
    // Drawn at least once (at start), with the elapsed time, the count and the case it waits
    // for, and erased before the summary line.
    let frames: Vec<&str> = terminal.split("\r\x1b[2K").collect();
    assert!(frames.len() > 2, "{terminal:?}");
    assert!(
        frames
            .iter()
            .any(|f| f.starts_with("00:0") && f.contains("[0/") && f.contains("running e26")),
        "{terminal:?}"
    );
    let summary = frames.last().expect("text after the last erase");
    assert!(!summary.contains("running"), "{terminal:?}");
    assert!(report.is_file());

    // Off a terminal: no control sequence at all, on either stream.
    let out = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    for stream in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(!text.contains('\x1b') && !text.contains('\r'), "{text:?}");
    }
}
