//! fetchmail in ETRN mode against the smart host: the real client the harness is built for.
//!
//! Each row of spec C-1 (fetchmail 6.4.37, observed; `scenarios/README.md`) is one case:
//! the smart host answers as scripted, fetchmail runs with three `--fetchdomains`, and the test
//! checks which ETRNs arrived, whether QUIT was sent and fetchmail's exit status.
//! Without fetchmail the tests skip loudly; under `CI=true` they fail.

use std::process::Stdio;
use std::time::Duration;

use etrn_harness::proto::SmartHostScript;
use etrn_harness::smarthost::{SmartHost, SmartHostConfig};
use etrn_harness::wire::Verb;

mod common;

const WAIT: Duration = Duration::from_secs(30);
const DOMAINS: &str = "a.example,b.example,c.example";

fn fetchmail_available() -> bool {
    common::peer_available("fetchmail", &["--version"])
}

/// What one fetchmail run did.
struct Run {
    exit: Option<i32>,
    etrn: Vec<String>,
    replies: Vec<Option<u16>>,
    quit: bool,
    stderr: String,
}

async fn fetchmail_against(script: &str) -> Run {
    let script: SmartHostScript = toml::from_str(script).expect("valid script");
    let host = SmartHost::start(SmartHostConfig::with_script(script))
        .await
        .expect("smart host starts");
    let home = tempfile::tempdir().expect("temp HOME");
    let mut child = tokio::process::Command::new("fetchmail")
        .env("HOME", home.path())
        // As root fetchmail keeps its lock in /var/run unless told otherwise, and parallel tests
        // would then refuse each other ("another fetchmail is running").
        .arg("--pidfile")
        .arg(home.path().join("fetchmail.pid"))
        .args(["--nosyslog", "-p", "ETRN", "-t", "10"])
        .args(["-P", &host.addr().port().to_string()])
        .args(["--fetchdomains", DOMAINS, "127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("fetchmail starts");
    let mut stderr = child.stderr.take().expect("stderr");
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("fetchmail finishes in time")
        .expect("fetchmail runs");
    let mut err = String::new();
    let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut err).await;
    let r = host
        .recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}; fetchmail exited {status:?}:\n{err}"));
    host.shutdown().await;
    let s = &r.sessions[0];
    Run {
        exit: status.code(),
        etrn: s.etrn.iter().map(|e| e.record.raw().to_owned()).collect(),
        replies: s.etrn.iter().map(|e| e.record.reply).collect(),
        // A QUIT after a 421 is no command the server answered, but the linger records it.
        quit: s.commands.iter().any(|c| c.verb == Verb::Quit)
            || s.events.iter().any(|e| {
                matches!(&e.event, etrn_harness::proto::Event::AfterClose { raw } if raw.starts_with(b"QUIT"))
            }),
        stderr: err,
    }
}

/// (reply to the first ETRN, ETRNs fetchmail sends, QUIT sent, exit status) from spec C-1.
const TABLE: &[(&str, usize, bool, i32)] = &[
    ("250 2.0.0 Queuing started", 3, true, 0),
    ("251 OK, no messages waiting", 1, true, 0),
    ("252 OK, pending messages for node started", 3, true, 0),
    ("253 OK, 7 pending messages for node started", 3, true, 0),
    ("458 Unable to queue messages for node", 1, true, 4),
    ("459 Node not allowed: reason", 1, true, 3),
    ("500 Syntax Error", 1, true, 4),
    ("501 Syntax Error in Parameters", 1, true, 4),
    // fetchmail still says QUIT after a 421: only a server that reads past its 421 sees it.
    ("421 4.3.0 closing", 1, true, 4),
    ("554 denied", 1, true, 4),
];

#[tokio::test]
async fn fetchmail_sends_every_fetchdomain_in_order_when_all_succeed() {
    if !fetchmail_available() {
        return;
    }
    let run = fetchmail_against("").await;
    assert_eq!(
        run.etrn,
        ["a.example", "b.example", "c.example"],
        "{}",
        run.stderr
    );
    assert_eq!(run.replies, [Some(250); 3]);
    assert!(run.quit);
    assert_eq!(run.exit, Some(0), "{}", run.stderr);
}

#[tokio::test]
async fn fetchmail_reacts_to_each_reply_code_as_observed_in_peers_md() {
    if !fetchmail_available() {
        return;
    }
    let mut wrong = Vec::new();
    for (reply, sent, quit, exit) in TABLE {
        let run = fetchmail_against(&format!(
            "etrn = [{{ arg = \"a.example\", reply = \"{reply}\" }}]\netrn_default = \"250 2.0.0 Queuing started\""
        ))
        .await;
        let expected: Vec<&str> = DOMAINS.split(',').take(*sent).collect();
        if run.etrn != expected || run.quit != *quit || run.exit != Some(*exit) {
            wrong.push(format!(
                "{reply}: sent {:?} (expected {expected:?}), QUIT {} (expected {quit}), exit {:?} (expected {exit})\n{}",
                run.etrn, run.quit, run.exit, run.stderr
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn fetchmail_stops_at_459_after_a_250_as_with_postfix() {
    if !fetchmail_available() {
        return;
    }
    let run = fetchmail_against("profile = \"postfix\"\nserved = [\"a.example\"]").await;
    assert_eq!(run.etrn, ["a.example", "b.example"]);
    assert_eq!(run.replies, [Some(250), Some(459)]);
    assert_eq!(run.exit, Some(3), "{}", run.stderr);
    assert!(
        run.stderr.contains("Node b.example not allowed"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn fetchmail_sends_nothing_without_the_etrn_keyword_or_to_a_helo_only_peer() {
    if !fetchmail_available() {
        return;
    }
    let no_keyword = fetchmail_against("ehlo_keywords = [\"8BITMIME\"]").await;
    assert!(no_keyword.etrn.is_empty());
    assert_eq!(no_keyword.exit, Some(4), "{}", no_keyword.stderr);
    assert!(
        no_keyword.stderr.contains("does not support ETRN"),
        "{}",
        no_keyword.stderr
    );
    let helo_only = fetchmail_against("helo_only = true").await;
    assert!(helo_only.etrn.is_empty());
    assert_eq!(helo_only.exit, Some(128), "{}", helo_only.stderr);
}

#[tokio::test]
async fn fetchmail_desynchronises_on_a_multi_line_etrn_reply() {
    if !fetchmail_available() {
        return;
    }
    // fetchmail reads one line per reply: "250-first" answers a, "250 second" answers b.
    let run = fetchmail_against("etrn_default = \"250 first line\\nsecond line\"").await;
    assert_eq!(run.etrn.len(), 3, "{}", run.stderr);
    assert!(run.quit);
}
