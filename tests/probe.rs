//! `etrn-harness probe` as a user runs it, against real TCP servers on loopback: the smart host
//! with each shipped profile (the TCP run must equal the in-memory one), servers that misbehave
//! (unreachable, not SMTP, closing mid-probe, silent), bad profile files, and a cloned profile.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use etrn_harness::domain::EtrnArg;
use etrn_harness::probe::probe_set;
use etrn_harness::proto::{ProfileName, SmartHostScript};
use etrn_harness::smarthost::{SmartHost, SmartHostConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

mod common;

/// Longest a probe run may take in these tests (sendmail's greet pause makes its run ~40 s).
const RUN_LIMIT: Duration = Duration::from_secs(120);

async fn probe(args: &[&str]) -> Output {
    common::run_probe(args, RUN_LIMIT).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)))
}

/// The smart host answering as `profile`, relaying for a.example (as the probes assume).
async fn smart_host(profile: ProfileName) -> SmartHost {
    let script = SmartHostScript {
        profile,
        served: vec![EtrnArg::parse("a.example").expect("domain")],
        ..SmartHostScript::default()
    };
    SmartHost::start(SmartHostConfig::with_script(script))
        .await
        .expect("smart host starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_profile_over_tcp_answers_as_it_does_in_memory() {
    // All profiles at once: the sendmail one waits a second for each greeting.
    let runs = ProfileName::ALL.iter().map(|&profile| async move {
        let host = smart_host(profile).await;
        let addr = host.addr().to_string();
        let out = probe(&[
            &addr,
            "--against-profile",
            profile.as_str(),
            "--format",
            "json",
        ])
        .await;
        (profile, out)
    });
    for (profile, out) in futures_join(runs).await {
        let report = json(&out);
        assert_eq!(
            report["comparison"]["differences"],
            serde_json::json!([]),
            "{profile}"
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{profile}: {}",
            text(&out.stderr)
        );
        assert_eq!(
            report["results"].as_array().map(Vec::len),
            Some(probe_set().len()),
            "{profile}"
        );
        assert_eq!(report["probe_set"], 1);
        assert_eq!(report["version"], 1);
    }
}

/// Runs the futures concurrently and returns their outputs in order.
async fn futures_join<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn a_server_unlike_its_profile_is_shown_and_exits_1() {
    let host = smart_host(ProfileName::Postfix).await;
    let addr = host.addr().to_string();
    let out = probe(&[&addr, "--against-profile", "sendmail"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    // Postfix refuses the unserved domain; sendmail would queue it.
    assert!(report.contains("etrn-not-served"), "{report}");
    assert!(
        report.contains("server:  459 <b.example>: service unavailable"),
        "{report}"
    );
    assert!(
        report.contains("profile: 250 2.0.0 Queuing for node b.example started"),
        "{report}"
    );
    assert!(
        report.contains("difference(s) from profile sendmail"),
        "{report}"
    );
}

#[tokio::test]
async fn answers_are_graded_by_the_rfc_rules() {
    // sendmail's answers, greeted at once (a scripted greeting replaces the greet pause).
    let script = SmartHostScript {
        profile: ProfileName::Sendmail,
        greeting: Some(etrn_harness::proto::Answer::reply(
            etrn_harness::reply::Reply::parse("220 mx.example ESMTP").expect("reply"),
        )),
        ..SmartHostScript::default()
    };
    let host = SmartHost::start(SmartHostConfig::with_script(script))
        .await
        .expect("smart host starts");
    let addr = host.addr().to_string();
    let out = probe(&[&addr, "--format", "json"]).await;
    // sendmail breaks should rules only: it passes unless --strict.
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report = json(&out);
    let breaks = |rule: &str| {
        report["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["rule"] == rule && f["outcome"] == "breaks")
            .count()
    };
    // Two words, `-bad-`, `@` alone and raw UTF-8 are all queued.
    assert_eq!(breaks("etrn-invalid-node"), 4);
    assert_eq!(breaks("etrn-in-transaction"), 1);
    assert_eq!(breaks("quit"), 0);
    let out = probe(&[&addr, "--strict", "--format", "junit"]).await;
    assert_eq!(out.status.code(), Some(1));
    let xml = text(&out.stdout);
    assert!(
        xml.contains("<testcase name=\"etrn-in-transaction\""),
        "{xml}"
    );
    assert!(xml.contains("etrn-in-transaction (should)"), "{xml}");
}

#[tokio::test]
async fn an_unreachable_server_is_an_error_not_a_hang() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let out = probe(&[&format!("127.0.0.1:{port}"), "--timeout", "2"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(&format!("cannot reach 127.0.0.1:{port}")),
        "{}",
        text(&out.stderr)
    );
}

/// A server on loopback that does `serve` with every connection until the test ends.
async fn odd_server<F, Fut>(serve: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    addr
}

#[tokio::test]
async fn a_server_that_is_not_smtp_is_a_finding() {
    let addr = odd_server(|mut s| async move {
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    })
    .await;
    let out = probe(&[&addr, "--format", "json", "--timeout", "2"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report = json(&out);
    let results = report["results"].as_array().expect("results");
    assert_eq!(results.len(), probe_set().len());
    assert!(
        results.iter().all(|r| r["end"]["state"] == "malformed"),
        "{report}"
    );
}

#[tokio::test]
async fn a_server_that_closes_mid_probe_is_a_finding() {
    // Greets, reads one command, and hangs up without answering it.
    let addr = odd_server(|mut s| async move {
        let _ = s.write_all(b"220 odd.example ESMTP\r\n").await;
        let mut buf = [0u8; 512];
        let _ = s.read(&mut buf).await;
    })
    .await;
    let out = probe(&[&addr, "--timeout", "2"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains("closed by the server"), "{report}");
    assert!(
        report.contains("breaks must: reply-to-every-command"),
        "{report}"
    );
}

#[tokio::test]
async fn a_silent_server_is_a_finding_bounded_by_the_timeout() {
    let addr = odd_server(|mut s| async move {
        // Never a word; hold the connection until the client goes.
        let mut buf = [0u8; 512];
        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
    let started = std::time::Instant::now();
    let out = probe(&[&addr, "--timeout", "0.2", "--format", "json"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report = json(&out);
    let results = report["results"].as_array().expect("results");
    assert!(
        results.iter().all(|r| r["end"]["state"] == "no-reply"),
        "{report}"
    );
    // Bounded: one deadline per probe, not a hang (a generous margin for a busy machine).
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test]
async fn a_bad_profile_file_is_refused_with_its_place_before_probing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.toml");
    let source = ProfileName::Postfix
        .source()
        .replace("line_limit = 2048", "line_limit = \"long\"");
    std::fs::write(&bad, source).expect("write");
    // The server is never reached: the profile is read first.
    let out = probe(&[
        "127.0.0.1:9",
        "--against-profile-file",
        &bad.display().to_string(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let line = ProfileName::Postfix
        .source()
        .lines()
        .position(|l| l.starts_with("line_limit"))
        .expect("a line_limit line")
        + 1;
    assert!(
        err.contains(&format!("{}:{line}:14: invalid type", bad.display())),
        "{err}"
    );
    let fifo = dir.path().join("fifo.toml");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::RUSR).expect("fifo");
    let out = probe(&[
        "127.0.0.1:9",
        "--against-profile-file",
        &fifo.display().to_string(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("it is not a regular file"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn a_cloned_profile_serves_and_proves_itself() {
    let host = smart_host(ProfileName::Postfix).await;
    let addr = host.addr().to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("clone.toml");
    let file_arg = file.display().to_string();
    let out = probe(&[&addr, "--emit-profile", &file_arg]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!(
            "it reproduces {n} of {n} probes",
            n = probe_set().len()
        )),
        "{}",
        text(&out.stderr)
    );
    // The clone, served by the CLI, answers as the original did.
    let clone_text = std::fs::read_to_string(&file).expect("written");
    assert!(clone_text.contains("greeting = \"220 {host} ESMTP Postfix\""));
    let serve = serve_profile_file(&file).await;
    let out = probe(&[
        &serve.addr,
        "--against-profile",
        "postfix",
        "--format",
        "json",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let report = json(&out);
    assert_eq!(report["comparison"]["differences"], serde_json::json!([]));
    // Under the name `serve --hostname` gave it.
    assert_eq!(
        report["results"][0]["transcript"][0]["server"]["lines"][0],
        "mx.clone.test ESMTP Postfix"
    );
}

/// `serve --profile-file FILE --served a.example` on a free port.
struct Served {
    addr: String,
    _child: tokio::process::Child,
}

async fn serve_profile_file(file: &Path) -> Served {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(["serve", "--listen", "127.0.0.1:0", "--served", "a.example"])
        .args(["--hostname", "mx.clone.test"])
        .arg("--profile-file")
        .arg(file)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("serve says where it listens")
        .expect("a line")
        .expect("a line");
    let addr = first
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    // Keep draining stdout so the server never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Served {
        addr,
        _child: child,
    }
}

#[tokio::test]
async fn a_scenarios_smart_host_is_compared_with_the_scenario() {
    // The smart host a scenario describes, over TCP, against the same scenario in memory.
    let file = "scenarios/replies/exim-etrn-command-unlisted-458.toml";
    let scenario = etrn_harness::scenario::load_scenario(Path::new(file)).expect("valid scenario");
    let host = SmartHost::start(SmartHostConfig::with_script(scenario.smarthost))
        .await
        .expect("smart host starts");
    let addr = host.addr().to_string();
    let out = probe(&[&addr, "--against-scenario", file]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains(&format!("0 difference(s) from {file}")),
        "{}",
        text(&out.stdout)
    );
}
