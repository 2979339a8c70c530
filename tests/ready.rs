//! The first and last lines of `serve`, `record` and `replay` (one ready object, one stop line
//! shape), `--ready-file`, the address forms every address option takes, and the exit status of
//! an address in use. Every process is the real binary; clients are real TCP connections.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const WAIT: Duration = Duration::from_secs(10);

/// A command under test: killed when dropped, its stdout read line by line.
struct Running {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().expect("stdout");
        Running {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("a line in time")
            .expect("read")
            .expect("a line before the end")
    }

    async fn json(&mut self) -> Value {
        let line = self.line().await;
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
    }

    /// The lines left and the exit status, once it stops by itself.
    async fn rest(mut self) -> (Vec<String>, Option<i32>) {
        let mut rest = Vec::new();
        while let Some(l) = tokio::time::timeout(WAIT, self.lines.next_line())
            .await
            .expect("in time")
            .expect("read")
        {
            rest.push(l);
        }
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("stops by itself")
            .expect("exit status");
        (rest, status.code())
    }
}

/// One EHLO/ETRN/QUIT session; what the server said.
fn session(addr: &str) -> String {
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(WAIT)).expect("timeout");
    c.write_all(b"EHLO c.example\r\nETRN a.example\r\nQUIT\r\n")
        .expect("write");
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out
}

fn text(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("{v} is not a string"))
        .to_owned()
}

#[tokio::test]
async fn serve_names_every_address_in_one_object_on_stdout_and_in_the_ready_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ready_file = dir.path().join("ready.json");
    let record = dir.path().join("rec.jsonl");
    let (ready_s, record_s) = (ready_file.to_string_lossy(), record.to_string_lossy());
    let mut serve = Running::start(&[
        "serve",
        "--listen",
        "localhost:0",
        "--api",
        "0",
        "--events",
        "jsonl",
        "--exit-after-sessions",
        "1",
        "--ready-file",
        &ready_s,
        "--record",
        &record_s,
    ]);
    let line = serve.line().await;
    let ready: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(ready["event"], "ready");
    assert_eq!(ready["command"], "serve");
    assert_eq!(ready["record"], record_s.as_ref());
    // `localhost` and a bare port both mean 127.0.0.1.
    let smtp: SocketAddr = text(&ready["smtp"]).parse().expect("an address");
    let api: SocketAddr = text(&ready["api"]).parse().expect("an address");
    assert!(
        smtp.ip().is_loopback() && smtp.is_ipv4() && smtp.port() != 0,
        "{smtp}"
    );
    assert!(
        api.ip().is_loopback() && api.is_ipv4() && api.port() != 0,
        "{api}"
    );
    assert_eq!(ready["api_url"], format!("http://{api}"));
    // The file holds the same object, whole, by the time the line is out.
    let file = std::fs::read_to_string(&ready_file).expect("the ready file");
    assert_eq!(file, format!("{line}\n"));
    // Both addresses answer.
    TcpStream::connect(api).expect("the API listens");
    assert!(session(&smtp.to_string()).starts_with("220"));
    let (rest, code) = serve.rest().await;
    assert_eq!(code, Some(0), "{rest:?}");
    let stop: Value = serde_json::from_str(
        rest.iter()
            .find(|l| l.contains(r#""event":"stopped""#))
            .expect("a stop line"),
    )
    .expect("JSON");
    assert_eq!(
        (
            &stop["command"],
            stop["sessions"].as_u64(),
            stop["etrn"].as_u64()
        ),
        (&"serve".into(), Some(1), Some(1))
    );
}

#[tokio::test]
async fn record_and_replay_announce_and_count_in_the_same_shapes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cassette = dir.path().join("c.cassette");
    let cassette_s = cassette.to_string_lossy();
    // The upstream is the harness's own smart host, a real server on its own port.
    let mut upstream = Running::start(&["serve", "--listen", "0", "--events", "jsonl"]);
    let upstream_addr = text(&upstream.json().await["smtp"]);
    let upstream_port = upstream_addr.rsplit(':').next().expect("a port").to_owned();
    let ready_file = dir.path().join("record.ready");
    let mut record = Running::start(&[
        "record",
        "--listen",
        "[::1]:0",
        // A bare port: the upstream on 127.0.0.1.
        "--upstream",
        &upstream_port,
        "--cassette",
        &cassette_s,
        "--events",
        "jsonl",
        "--exit-after-sessions",
        "1",
        "--ready-file",
        &ready_file.to_string_lossy(),
    ]);
    let ready = record.json().await;
    assert_eq!(
        (&ready["event"], &ready["command"]),
        (&"ready".into(), &"record".into())
    );
    assert_eq!(ready["upstream"], upstream_addr.as_str());
    assert_eq!(ready["cassette"], cassette_s.as_ref());
    let smtp: SocketAddr = text(&ready["smtp"]).parse().expect("an address");
    assert!(smtp.is_ipv6() && smtp.ip().is_loopback(), "{smtp}");
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(&ready_file).expect("ready file"))
            .expect("JSON");
    assert_eq!(file, ready);
    assert!(session(&smtp.to_string()).contains("250"));
    let (rest, code) = record.rest().await;
    assert_eq!(code, Some(0), "{rest:?}");
    let stop: Value = serde_json::from_str(rest.last().expect("a stop line")).expect("JSON");
    assert_eq!(
        (&stop["event"], &stop["command"], &stop["why"]),
        (
            &"stopped".into(),
            &"record".into(),
            &"session limit reached".into()
        )
    );
    assert_eq!(
        (stop["sessions"].as_u64(), stop["refused"].as_u64()),
        (Some(1), Some(0))
    );
    drop(upstream);

    // Replay the cassette: the ready object names it; the stop line counts as serve's does.
    let mut replay = Running::start(&[
        "replay",
        "--cassette",
        &cassette_s,
        "--listen",
        "0",
        "--events",
        "jsonl",
        "--exit-after-sessions",
        "1",
    ]);
    let ready = replay.json().await;
    assert_eq!(
        (&ready["event"], &ready["command"]),
        (&"ready".into(), &"replay".into())
    );
    assert_eq!(ready["cassette"], cassette_s.as_ref());
    assert!(ready.get("upstream").is_none(), "{ready}");
    assert!(session(&text(&ready["smtp"])).contains("250"));
    let (rest, code) = replay.rest().await;
    assert_eq!(code, Some(0), "{rest:?}");
    let stop: Value = serde_json::from_str(rest.last().expect("a stop line")).expect("JSON");
    assert_eq!(
        (&stop["event"], &stop["command"]),
        (&"stopped".into(), &"replay".into())
    );
    assert_eq!(
        (
            stop["sessions"].as_u64(),
            stop["etrn"].as_u64(),
            stop["mismatches"].as_u64(),
            stop["unplayed"].as_u64()
        ),
        (Some(1), Some(1), Some(0), Some(0))
    );

    // For people, record's stop line has the shape serve's has.
    let mut record = Running::start(&[
        "record",
        "--listen",
        "0",
        "--upstream",
        "localhost:1",
        "--cassette",
        &dir.path().join("other.cassette").to_string_lossy(),
    ]);
    assert!(record.line().await.starts_with("recording 127.0.0.1:"));
    let pid = record.child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let (rest, code) = record.rest().await;
    assert_eq!(code, Some(0), "{rest:?}");
    assert_eq!(rest, ["stopped (terminated): 0 session(s), 0 refused"]);
}

/// `etrn-harness ARGS` that is expected to exit at once: its status and stderr.
fn exits(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_address_in_use_exits_3_for_every_listening_option() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = taken.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let cassette = dir.path().join("c.cassette");
    std::fs::write(&cassette, "").expect("an empty cassette");
    let cassette = cassette.to_string_lossy();
    // A ready file from an earlier run is gone at once: nobody polling for it is misled.
    let stale = dir.path().join("ready.json");
    std::fs::write(&stale, "{\"event\":\"ready\",\"smtp\":\"127.0.0.1:1\"}\n").expect("write");
    let (code, err) = exits(&[
        "serve",
        "--listen",
        &taken,
        "--ready-file",
        &stale.to_string_lossy(),
    ]);
    assert_eq!(code, Some(3), "{err}");
    assert!(!stale.exists(), "the stale ready file is still there");
    for args in [
        vec!["serve", "--listen", &taken],
        vec!["serve", "--listen", "0", "--api", &taken],
        vec![
            "record",
            "--listen",
            &taken,
            "--upstream",
            "1",
            "--cassette",
            &cassette,
        ],
        vec!["replay", "--listen", &taken, "--cassette", &cassette],
    ] {
        let (code, err) = exits(&args);
        assert_eq!(code, Some(3), "{args:?}: {err}");
        assert!(
            err.contains(&taken) && err.contains("cannot listen"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn a_bad_address_is_a_usage_error_that_says_what_to_write() {
    for (option, bad) in [
        ("--listen", "mx.example:25"),
        ("--listen", "70000"),
        ("--api", "localhost"),
        ("--listen", "[::1]"),
    ] {
        let (code, err) = exits(&["serve", option, bad]);
        assert_eq!(code, Some(2), "{option} {bad}: {err}");
        assert!(err.contains(bad), "{option} {bad}: {err}");
        assert!(err.contains("PORT"), "{option} {bad}: {err}");
    }
    let (code, err) = exits(&["probe", "nowhere"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no port"), "{err}");
}

#[test]
fn a_ready_file_that_cannot_be_written_stops_serve_with_status_4() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, err) = exits(&[
        "serve",
        "--listen",
        "0",
        "--ready-file",
        &dir.path().to_string_lossy(),
    ]);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("cannot write the ready file"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        0,
        "nothing is left behind"
    );
}
