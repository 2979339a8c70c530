//! The smart host over real sockets: library API, real client libraries (mail-send over STARTTLS,
//! Python's smtplib), limits, several servers at once, and the `serve` command.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use etrn_harness::proto::SmartHostScript;
use etrn_harness::proto::{CloseReason, EtrnFlag, Event, SessionLimits};
use etrn_harness::smarthost::{SmartHost, SmartHostConfig, StartError, WhenFull};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;

const WAIT: Duration = Duration::from_secs(10);

fn script(text: &str) -> SmartHostScript {
    toml::from_str(text).expect("valid script")
}

async fn start(text: &str) -> SmartHost {
    SmartHost::start(SmartHostConfig::with_script(script(text)))
        .await
        .expect("smart host starts")
}

fn with_starttls() -> SmartHostConfig {
    SmartHostConfig {
        limits: SessionLimits {
            starttls: true,
            ..SessionLimits::default()
        },
        ..SmartHostConfig::default()
    }
}

/// Sends `input` in one write and reads until the server closes.
async fn converse(host: &SmartHost, input: &[u8]) -> String {
    let mut c = TcpStream::connect(host.addr()).await.expect("connect");
    c.write_all(input).await.expect("write");
    let mut out = String::new();
    tokio::time::timeout(WAIT, c.read_to_string(&mut out))
        .await
        .expect("the server answers and closes in time")
        .expect("read");
    out
}

#[tokio::test]
async fn records_etrn_domains_in_order_and_as_a_set() {
    let host = start("").await;
    converse(
        &host,
        b"EHLO c\r\nETRN b.example\r\nETRN A.example\r\nETRN b.example\r\nQUIT\r\n",
    )
    .await;
    let r = host
        .recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .expect("session closes");
    assert_eq!(r.etrn_domains(), ["b.example", "a.example", "b.example"]);
    assert_eq!(
        r.etrn_domain_set().into_iter().collect::<Vec<_>>(),
        ["a.example", "b.example"]
    );
    assert_eq!(r.sessions[0].close, Some(CloseReason::Quit));
    assert!(r.sessions[0].ended_us >= Some(r.sessions[0].started_us));
    host.shutdown().await;
}

#[tokio::test]
async fn several_smart_hosts_in_one_process_keep_their_recordings_apart() {
    let hosts = [
        start("").await,
        start("profile = \"postfix\"").await,
        start("profile = \"exim\"").await,
    ];
    let mut clients = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        for j in 0..5 {
            let addr = h.addr();
            clients.push(tokio::spawn(async move {
                let mut c = TcpStream::connect(addr).await.expect("connect");
                let input = format!("EHLO c\r\nETRN h{i}-c{j}.example\r\nQUIT\r\n");
                c.write_all(input.as_bytes()).await.expect("write");
                let mut out = String::new();
                c.read_to_string(&mut out).await.expect("read");
                out
            }));
        }
    }
    for c in clients {
        tokio::time::timeout(WAIT, c)
            .await
            .expect("in time")
            .expect("client task");
    }
    let expected_codes = [250, 459, 501];
    for (i, h) in hosts.iter().enumerate() {
        let r = h
            .recorder()
            .wait_for_closed_sessions(5, WAIT)
            .await
            .expect("5 sessions");
        assert_eq!(r.sessions.len(), 5);
        let mut domains = r.etrn_domains();
        domains.sort();
        let expected: Vec<String> = (0..5).map(|j| format!("h{i}-c{j}.example")).collect();
        assert_eq!(domains, expected);
        for s in &r.sessions {
            assert_eq!(s.etrn[0].record.reply, Some(expected_codes[i]));
        }
    }
    for h in hosts {
        h.shutdown().await;
    }
}

#[tokio::test]
async fn waiting_for_a_domain_wakes_on_the_event_and_times_out_otherwise() {
    let host = start("").await;
    let addr = host.addr();
    let client = tokio::spawn(async move {
        let mut c = TcpStream::connect(addr).await.expect("connect");
        c.write_all(b"EHLO c\r\nETRN wanted.example\r\n")
            .await
            .expect("write");
        // Keep the session open while the test waits.
        let mut buf = [0u8; 1024];
        let _ = c.read(&mut buf).await;
        c
    });
    let r = host
        .recorder()
        .wait_for_etrn("Wanted.Example", WAIT)
        .await
        .expect("seen");
    assert_eq!(
        r.closed_sessions(),
        0,
        "the wait returned on the ETRN, not on the close"
    );
    let missing = host
        .recorder()
        .wait_for_etrn("never.example", Duration::from_millis(100))
        .await;
    assert!(missing.is_err());
    drop(client);
    host.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_open_sessions_and_returns_the_recording() {
    let host = start("").await;
    let mut c = TcpStream::connect(host.addr()).await.expect("connect");
    c.write_all(b"EHLO c\r\nETRN a.example\r\n")
        .await
        .expect("write");
    host.recorder()
        .wait_for_etrn("a.example", WAIT)
        .await
        .expect("seen");
    let r = host.shutdown().await;
    assert_eq!(r.sessions[0].close, Some(CloseReason::Shutdown));
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(WAIT, c.read_to_end(&mut rest))
        .await
        .expect("closed");
}

/// A smart host that serves one connection at once, and that connection, greeted.
async fn capped_at_one(when_full: WhenFull) -> (SmartHost, TcpStream) {
    let config = SmartHostConfig {
        max_connections: 1,
        when_full,
        ..SmartHostConfig::default()
    };
    let host = SmartHost::start(config).await.expect("starts");
    let mut first = TcpStream::connect(host.addr()).await.expect("connect");
    let mut greeting = [0u8; 64];
    let n = first.read(&mut greeting).await.expect("greeting");
    assert!(greeting[..n].starts_with(b"220 "));
    (host, first)
}

#[tokio::test]
async fn a_connection_cap_of_zero_is_refused_at_start() {
    for when_full in [WhenFull::Refuse, WhenFull::Queue] {
        let config = SmartHostConfig {
            max_connections: 0,
            when_full,
            ..SmartHostConfig::default()
        };
        let started = SmartHost::start(config).await;
        assert!(
            matches!(started, Err(StartError::NoConnections)),
            "{when_full:?}: {:?}",
            started.map(|h| h.addr())
        );
    }
}

#[tokio::test]
async fn connection_cap_answers_421_at_connect() {
    let (host, first) = capped_at_one(WhenFull::Refuse).await;
    let second = converse(&host, b"").await;
    assert!(
        second.starts_with("421 4.7.0 Too many connections"),
        "{second}"
    );
    let r = host
        .recorder()
        .wait_until("the refusal", WAIT, |r| r.refused == 1)
        .await
        .expect("counted");
    // A refusal is counted apart: it is no session.
    assert_eq!(r.sessions.len(), 1);
    drop(first);
    host.shutdown().await;
}

#[tokio::test]
async fn past_the_cap_a_queued_connection_waits_in_the_listen_queue_for_a_session_to_end() {
    let (host, mut first) = capped_at_one(WhenFull::Queue).await;
    let mut greeting = [0u8; 64];
    // The second connection completes in the kernel and stays there: the loop takes no slot-less
    // connection, so it neither greets nor refuses it.
    let mut second = TcpStream::connect(host.addr()).await.expect("connect");
    let queued = common::wait_for(WAIT, || accept_queue(host.addr()) == Some(1)).await;
    assert!(
        queued,
        "the second connection is never seen in the listen queue"
    );
    assert_eq!(host.recording().sessions.len(), 1);
    assert_eq!(host.recording().refused, 0);
    // The first session ends; its slot goes to the one waiting.
    first.write_all(b"QUIT\r\n").await.expect("QUIT");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(WAIT, first.read_to_end(&mut rest)).await;
    let n = tokio::time::timeout(WAIT, second.read(&mut greeting))
        .await
        .expect("the queued connection is greeted once a slot is free")
        .expect("greeting");
    assert!(greeting[..n].starts_with(b"220 "), "{:?}", &greeting[..n]);
    let r = host
        .recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .expect("the first session closed");
    assert_eq!(r.sessions.len(), 2);
    let first_ended = r.sessions[0].ended_us.expect("ended");
    assert!(
        r.sessions[1].started_us >= first_ended,
        "the second session started at {} µs, before the first ended at {first_ended} µs",
        r.sessions[1].started_us
    );
    assert_eq!(r.refused, 0, "a queued connection is no refusal");
    drop(second);
    host.shutdown().await;
}

#[tokio::test]
async fn a_server_stopping_with_a_connection_queued_past_the_cap_leaves_it_unserved() {
    let (host, first) = capped_at_one(WhenFull::Queue).await;
    let mut queued = TcpStream::connect(host.addr()).await.expect("connect");
    let seen = common::wait_for(WAIT, || accept_queue(host.addr()) == Some(1)).await;
    assert!(
        seen,
        "the second connection is never seen in the listen queue"
    );
    // The stop ends the first session, which frees its slot: the stop came first, so the loop
    // must not take the queued connection in (the loop's selects are biased to the stop).
    let recording = tokio::time::timeout(WAIT, host.shutdown())
        .await
        .expect("the stop finishes");
    assert_eq!(recording.sessions.len(), 1, "{recording:?}");
    drop(first);
    // The listener is gone: the queued connection is reset or closed, never greeted.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(WAIT, queued.read_to_end(&mut rest))
        .await
        .expect("the queued connection is ended");
    assert!(
        !rest.starts_with(b"220"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// Connections complete in the kernel and not yet accepted on the IPv4 listener at `addr`: the
/// `rx_queue` field of its LISTEN line in `/proc/net/tcp`.
fn accept_queue(addr: std::net::SocketAddr) -> Option<u32> {
    let std::net::SocketAddr::V4(v4) = addr else {
        return None;
    };
    // The kernel prints the address as the u32 it holds in network order, read natively.
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(v4.ip().octets()),
        v4.port()
    );
    let table = std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_else(|e| panic!("cannot read /proc/net/tcp for the listen queue: {e}"));
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl, local_address, rem_address, st (0A: LISTEN), tx_queue:rx_queue, ...
        if fields.get(1) != Some(&local.as_str()) || fields.get(3) != Some(&"0A") {
            return None;
        }
        let (_, rx) = fields.get(4)?.split_once(':')?;
        u32::from_str_radix(rx, 16).ok()
    })
}

#[tokio::test]
async fn idle_sessions_get_421_and_are_closed() {
    // The deadline is the session's; this proves the driver sleeps until it and no longer.
    let mut config = SmartHostConfig::default();
    config.limits.idle_timeout = Duration::from_millis(150);
    let host = SmartHost::start(config).await.expect("starts");
    let started = std::time::Instant::now();
    let out = converse(&host, b"EHLO c\r\n").await;
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "421 before the deadline: {:?}",
        started.elapsed()
    );
    assert!(
        out.ends_with("421 4.4.2 smarthost.example Error: timeout exceeded\r\n"),
        "{out}"
    );
    let r = host
        .recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .expect("closed");
    assert_eq!(r.sessions[0].close, Some(CloseReason::IdleTimeout));
    host.shutdown().await;
}

#[tokio::test]
async fn a_line_moves_the_idle_deadline_later() {
    // The driver keeps one timer per session and moves it to each deadline: a line read must
    // move it later, so the 421 comes an idle timeout after the last line, not after the connect.
    use tokio::io::{AsyncWriteExt, BufReader};
    let mut config = SmartHostConfig::default();
    config.limits.idle_timeout = Duration::from_millis(1000);
    let host = SmartHost::start(config).await.expect("starts");
    let mut c = BufReader::new(TcpStream::connect(host.addr()).await.expect("connects"));
    assert!(reply_line(&mut c).await.starts_with("220 "));
    // Two lines, each well inside the timeout of the one before, the second past the first
    // deadline: a timer left where the connect put it would end the session before the second.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        c.get_mut().write_all(b"NOOP\r\n").await.expect("writes");
        assert!(reply_line(&mut c).await.starts_with("250 "));
    }
    let last_line = std::time::Instant::now();
    assert!(reply_line(&mut c).await.starts_with("421 "));
    assert!(
        last_line.elapsed() >= Duration::from_millis(800),
        "421 only {:?} after the last line",
        last_line.elapsed()
    );
    host.shutdown().await;
}

/// Reads one reply line from `c`, within [`WAIT`].
async fn reply_line(c: &mut tokio::io::BufReader<TcpStream>) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut line = String::new();
    tokio::time::timeout(WAIT, c.read_line(&mut line))
        .await
        .expect("a reply in time")
        .expect("read");
    line
}

#[tokio::test]
async fn the_driver_holds_a_reply_and_a_greeting_until_the_sessions_time() {
    // The session's deadline logic is tested on a virtual clock (tests/session.rs); this proves
    // the tokio driver sleeps until each deadline it is given, over TCP, with generous bounds.
    let host =
        start("profile = \"sendmail\"\netrn_default = { reply = \"250 later\", delay_ms = 300 }")
            .await;
    let connected = std::time::Instant::now();
    let mut c = tokio::io::BufReader::new(TcpStream::connect(host.addr()).await.expect("connect"));
    assert!(reply_line(&mut c).await.starts_with("220 "));
    let pause = connected.elapsed();
    assert!(
        pause >= Duration::from_secs(1),
        "greeted after {pause:?}: before sendmail's 1 s pause"
    );
    c.get_mut().write_all(b"EHLO c\r\n").await.expect("write");
    while reply_line(&mut c).await.as_bytes().get(3) != Some(&b' ') {}
    let asked = std::time::Instant::now();
    c.get_mut()
        .write_all(b"ETRN a.example\r\n")
        .await
        .expect("write");
    assert_eq!(reply_line(&mut c).await, "250 later\r\n");
    let delay = asked.elapsed();
    assert!(
        delay >= Duration::from_millis(300),
        "the reply came after {delay:?}"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn scripted_421_greeting_and_hang_up() {
    let refusing = start("greeting = \"421 4.3.2 Service not available\"").await;
    assert_eq!(
        converse(&refusing, b"").await,
        "421 4.3.2 Service not available\r\n"
    );
    let silent = start("etrn_default = { close = true }").await;
    let out = converse(&silent, b"EHLO c\r\nETRN a.example\r\nNOOP\r\n").await;
    assert!(
        out.ends_with("250 8BITMIME\r\n"),
        "no reply after the ETRN: {out}"
    );
    let r = silent
        .recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .expect("closed");
    assert_eq!(r.sessions[0].etrn[0].record.reply, None);
    assert_eq!(r.sessions[0].close, Some(CloseReason::Scripted));
}

#[tokio::test]
async fn bare_lf_and_non_utf8_over_the_wire() {
    let host = start("").await;
    let out = converse(
        &host,
        b"EHLO c\nETRN \xffbad.example\nETRN ok.example\nQUIT\n",
    )
    .await;
    assert!(out.contains("501 Syntax Error in Parameters"), "{out}");
    let r = host
        .recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .expect("closed");
    let s = &r.sessions[0];
    assert!(s.commands.iter().all(|c| c.bare_lf));
    assert_eq!(s.commands[1].raw, "ETRN \\xffbad.example\\n");
    assert!(s.etrn[1].record.flags.contains(&EtrnFlag::BareLf));
    assert_eq!(s.etrn[1].record.domain(), Some("ok.example"));
}

#[tokio::test]
async fn starttls_with_a_rust_client_library_and_pipelined_etrn() {
    let host = SmartHost::start(with_starttls()).await.expect("starts");
    let mut client = common::starttls_client(host.addr(), WAIT).await;
    let replies = client
        .cmds([
            &b"ETRN a.example\r\n"[..],
            b"ETRN @b.example\r\n",
            b"ETRN #q1\r\n",
        ])
        .await
        .expect("pipelined ETRN");
    let codes: Vec<u16> = replies.iter().map(|r| r.code()).collect();
    assert_eq!(codes, [250, 250, 250]);
    client.quit().await.expect("quit");
    let r = host
        .recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .expect("closed");
    let s = &r.sessions[0];
    assert!(s.tls);
    let raws: Vec<&str> = s.etrn.iter().map(|e| e.record.raw()).collect();
    assert_eq!(raws, ["a.example", "@b.example", "#q1"]);
    // After TLS the client said EHLO again, so no ETRN is flagged.
    assert!(s.etrn.iter().all(|e| e.record.flags.is_empty()));
    host.shutdown().await;
}

#[tokio::test]
async fn plaintext_injected_after_starttls_is_not_executed() {
    let host = SmartHost::start(with_starttls()).await.expect("starts");
    let mut c = TcpStream::connect(host.addr()).await.expect("connect");
    c.write_all(b"EHLO c\r\nSTARTTLS\r\nETRN injected.example\r\n")
        .await
        .expect("write");
    // The server now expects a TLS ClientHello; hang up instead.
    let mut buf = vec![0u8; 4096];
    let mut got = String::new();
    while !got.contains("220 2.0.0") {
        let n = tokio::time::timeout(WAIT, c.read(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        assert!(n > 0, "closed early: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    drop(c);
    let r = host
        .recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .expect("closed");
    assert!(
        r.etrn_domains().is_empty(),
        "the injected ETRN was executed"
    );
    // Either the session saw the injected bytes with the STARTTLS line and discarded them, or
    // they reached the TLS handshake, which refused them as a ClientHello.
    let s = &r.sessions[0];
    let discarded = s
        .transcript()
        .contains("pipelined after STARTTLS discarded");
    let refused = matches!(s.close, Some(CloseReason::TlsFailed(_)));
    assert!(discarded || refused, "{:?}\n{}", s.close, s.transcript());
}

#[tokio::test]
async fn python_smtplib_docmd_etrn() {
    if !common::peer_available("python3", &["--version"]) {
        return;
    }
    let host = start(
        r#"etrn = [{ arg = "b.example", reply = "458 Unable to queue messages for node {node}" }]"#,
    )
    .await;
    let program = format!(
        "import smtplib\n\
         s = smtplib.SMTP('127.0.0.1', {port}, timeout=10)\n\
         s.ehlo()\n\
         print(s.has_extn('etrn'))\n\
         print(s.docmd('ETRN', 'a.example'))\n\
         print(s.docmd('ETRN', 'b.example'))\n\
         s.quit()\n",
        port = host.addr().port()
    );
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new("python3")
            .arg("-c")
            .arg(program)
            .output(),
    )
    .await
    .expect("python finishes in time")
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "True\n(250, b'OK, queuing for node a.example started')\n(458, b'Unable to queue messages for node b.example')\n"
    );
    let r = host
        .recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .expect("closed");
    let s = &r.sessions[0];
    // smtplib sends a lower-case "ehlo" with an address literal, then upper-case ETRN.
    assert!(
        s.commands[0].raw.starts_with("ehlo "),
        "{}",
        s.commands[0].raw
    );
    assert_eq!(r.etrn_domains(), ["a.example", "b.example"]);
    host.shutdown().await;
}

/// A running `etrn-harness serve`, its output lines arriving on a channel so every read is
/// bounded in time.
struct Serve {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    addr: String,
}

/// Each line of `from`, on a channel, read by a thread of its own to the end (a reader that went
/// away never makes the writer fail).
fn lines_of(from: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    lines
}

impl Serve {
    fn spawn(args: &[&str]) -> Serve {
        let child = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve starts");
        Serve::announced(child)
    }

    /// `serve` with its stderr (warnings, and the log at the `RUST_LOG` filter given) on a
    /// channel too.
    fn spawn_logged(args: &[&str], filter: &str) -> (Serve, std::sync::mpsc::Receiver<String>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", filter)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve starts");
        let log = lines_of(child.stderr.take().expect("stderr"));
        (Serve::announced(child), log)
    }

    /// The server `child`, once it has said where it listens.
    fn announced(mut child: std::process::Child) -> Serve {
        let lines = lines_of(child.stdout.take().expect("stdout"));
        let mut serve = Serve {
            child,
            lines,
            addr: String::new(),
        };
        let first = serve.next_line();
        serve.addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        serve
    }

    fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(WAIT) {
            Ok(line) => line,
            Err(e) => {
                let _ = self.child.kill();
                panic!("no output from serve within {WAIT:?}: {e}");
            }
        }
    }

    /// Reads lines until one starts with `prefix`; returns all of them.
    fn lines_until(&mut self, prefix: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self.next_line();
            let done = line.starts_with(prefix);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn talk(addr: &str, input: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    c.set_read_timeout(Some(WAIT)).expect("timeout");
    c.write_all(input).expect("write");
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out
}

#[test]
fn serve_prints_each_etrn_and_writes_the_recording_after_n_sessions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let record = dir.path().join("recording.json");
    let record_arg = record.to_string_lossy().into_owned();
    let mut serve = Serve::spawn(&[
        "--profile",
        "postfix",
        "--exit-after-sessions",
        "2",
        "--record",
        &record_arg,
    ]);
    talk(&serve.addr, b"EHLO c\r\nETRN a.example\r\nQUIT\r\n");
    talk(&serve.addr, b"EHLO c\r\nETRN @b.example\r\nQUIT\r\n");
    let out = serve.lines_until("stopped (").join("\n");
    assert!(serve.child.wait().expect("serve exits").success());
    assert!(out.contains("session 1: ETRN a.example -> 459\n"), "{out}");
    assert!(out.contains("session 2: ETRN @b.example -> 459\n"), "{out}");
    let lines = stream_lines(&record);
    assert_eq!(lines[0]["recording"], "etrn-harness");
    assert_eq!(lines[0]["stream_version"], 1);
    let etrn: Vec<&serde_json::Value> = lines.iter().filter(|l| l["event"] == "etrn").collect();
    assert_eq!(etrn.len(), 2);
    assert_eq!(etrn[1]["session"], 2);
    assert_eq!(etrn[1]["raw"], "@b.example");
    assert_eq!(etrn[1]["domain"], "b.example");
    assert_eq!(etrn[1]["option"], "subdomains");
    assert_eq!(etrn[1]["reply"], 459);
    let command = lines
        .iter()
        .find(|l| l["event"] == "command" && l["session"] == 1 && l["verb"] == "ETRN")
        .expect("the command line");
    assert_eq!(command["raw"], "ETRN a.example\\r\\n");
    let closed: Vec<&serde_json::Value> = lines.iter().filter(|l| !l["closed"].is_null()).collect();
    assert_eq!(closed.len(), 2);
    assert_eq!(closed[0]["closed"]["reason"], "quit");
}

#[test]
fn serve_shows_sessions_flags_and_a_missing_argument_and_the_stop_line_agrees() {
    let mut serve = Serve::spawn(&["--profile", "postfix", "--exit-after-sessions", "2"]);
    // Lower-case verb and no EHLO: two flags; then ETRN without an argument.
    talk(&serve.addr, b"etrn a.example\r\nQUIT\r\n");
    talk(&serve.addr, b"EHLO c\r\nETRN\r\nQUIT\r\n");
    let out = serve.lines_until("stopped").join("\n");
    assert!(serve.child.wait().expect("serve exits").success());
    assert!(out.contains("session 1: opened from 127.0.0.1:"), "{out}");
    assert!(
        out.contains("session 1: ETRN a.example -> 459 [lower-case-verb, before-hello]"),
        "{out}"
    );
    assert!(out.contains("session 1: closed (quit)"), "{out}");
    assert!(
        out.contains("session 2: ETRN (no argument) -> 500"),
        "{out}"
    );
    // The stop line counts what the lines above show: two sessions, two ETRN.
    assert!(
        out.ends_with("stopped (session limit reached): 2 session(s), 2 ETRN"),
        "{out}"
    );
}

/// The `workers=` and `shape=` of serve's log line about its runtime, started with `args`.
fn runtime_of_serve(args: &[&str]) -> String {
    let (serve, log) = Serve::spawn_logged(args, "etrn_harness=info");
    let line = loop {
        match log.recv_timeout(WAIT) {
            Ok(line) if line.contains("the sessions' runtime") => break line,
            Ok(_) => {}
            Err(e) => panic!("no runtime line from serve within {WAIT:?}: {e}"),
        }
    };
    drop(serve);
    // `workers=N`, then `shape="..."` (a string field, quoted by the log's text format).
    let field = |name: &str, end: char| {
        let start = line
            .find(name)
            .unwrap_or_else(|| panic!("no {name} in {line:?}"));
        let rest = &line[start..];
        let stop = rest[name.len()..]
            .find(end)
            .map_or(rest.len(), |i| name.len() + i + end.len_utf8());
        rest[..stop].trim_end().to_owned()
    };
    format!("{} {}", field("workers=", ' '), field("shape=\"", '"'))
}

/// By default all CPUs but one (the client under test on loopback has the last), and one event
/// loop on this thread when that leaves one; `--threads N` as many workers.
#[test]
fn serve_runs_all_cpus_but_one_unless_told() {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let expected = match cpus.saturating_sub(1) {
        0 | 1 => "workers=1 shape=\"one event loop\"".to_owned(),
        n => format!("workers={n} shape=\"worker threads\""),
    };
    assert_eq!(runtime_of_serve(&[]), expected);
    assert_eq!(
        runtime_of_serve(&["--threads", "1"]),
        "workers=1 shape=\"one event loop\""
    );
    assert_eq!(
        runtime_of_serve(&["--threads", "3"]),
        "workers=3 shape=\"worker threads\""
    );
}

/// `--threads 1`: everything on one event loop. A session held open does not hold another
/// session, nor the API, nor the live lines; the recording and the stop are as with more threads.
#[test]
fn serve_on_one_thread_serves_sessions_side_by_side_with_the_api() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().expect("temp dir");
    let record = dir.path().join("recording.jsonl");
    let record_arg = record.to_string_lossy().into_owned();
    let mut serve = Serve::spawn(&[
        "--threads",
        "1",
        "--api",
        "127.0.0.1:0",
        "--exit-after-sessions",
        "2",
        "--record",
        &record_arg,
    ]);
    let api = api_of(&mut serve);
    // Session 1 greeted and left open (its reads bounded)...
    let held = std::net::TcpStream::connect(&serve.addr).expect("connect");
    held.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut held_reader = BufReader::new(held.try_clone().expect("clone"));
    let mut greeting = String::new();
    held_reader.read_line(&mut greeting).expect("the greeting");
    assert!(greeting.starts_with("220"), "{greeting:?}");
    // ...while session 2 runs start to end, and the API answers.
    let answer = talk(&serve.addr, b"EHLO c\r\nETRN a.example\r\nQUIT\r\n");
    assert!(answer.contains("\r\n221"), "{answer}");
    let (status, body) = http(&api, "GET", "/etrn", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("a.example"), "{body}");
    // Session 1 goes on and ends; that is the second closed session: serve stops.
    let mut held = held;
    held.write_all(b"EHLO c\r\nETRN b.example\r\nQUIT\r\n")
        .expect("write");
    let out = serve.lines_until("stopped (").join("\n");
    assert!(serve.child.wait().expect("serve exits").success());
    assert!(out.contains("session 2: ETRN a.example -> "), "{out}");
    assert!(out.contains("session 1: ETRN b.example -> "), "{out}");
    assert!(
        out.find("session 2: ETRN").expect("2's ETRN")
            < out.find("session 1: ETRN").expect("1's ETRN"),
        "{out}"
    );
    let etrn: Vec<String> = stream_lines(&record)
        .iter()
        .filter(|l| l["event"] == "etrn")
        .map(|l| l["domain"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(etrn, ["a.example", "b.example"]);
}

#[test]
fn serve_when_full_queue_holds_a_connection_past_the_cap_until_a_session_ends() {
    use std::io::{Read, Write};
    let mut serve = Serve::spawn(&[
        "--max-connections",
        "1",
        "--when-full",
        "queue",
        "--exit-after-sessions",
        "2",
    ]);
    let held = std::net::TcpStream::connect(&serve.addr).expect("connect");
    held.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut held_reader = BufReader::new(held.try_clone().expect("clone"));
    let mut greeting = String::new();
    held_reader.read_line(&mut greeting).expect("the greeting");
    assert!(greeting.starts_with("220"), "{greeting:?}");
    // The second connection waits in the kernel's queue (with the default `refuse` it would
    // be taken in and read 421 at once), its commands already sent.
    let mut second = std::net::TcpStream::connect(&serve.addr).expect("connect");
    second.set_read_timeout(Some(WAIT)).expect("timeout");
    let addr: std::net::SocketAddr = serve.addr.parse().expect("an address");
    let queued = common::wait_for_blocking(WAIT, || accept_queue(addr) == Some(1));
    assert!(
        queued,
        "the second connection is never seen in the listen queue"
    );
    second
        .write_all(b"EHLO c\r\nETRN b.example\r\nQUIT\r\n")
        .expect("write");
    let mut held = held;
    held.write_all(b"EHLO c\r\nETRN a.example\r\nQUIT\r\n")
        .expect("write");
    let mut answer = String::new();
    let _ = second.read_to_string(&mut answer);
    assert!(answer.starts_with("220"), "{answer}");
    assert!(answer.contains("\r\n221"), "{answer}");
    let out = serve.lines_until("stopped (").join("\n");
    assert!(serve.child.wait().expect("serve exits").success());
    // The second session opened only once the first had closed.
    let first_closed = out.find("session 1: closed").expect("1 closed");
    let second_opened = out.find("session 2: opened").expect("2 opened");
    assert!(first_closed < second_opened, "{out}");
    assert!(out.contains("session 1: ETRN a.example -> "), "{out}");
    assert!(out.contains("session 2: ETRN b.example -> "), "{out}");
}

#[test]
fn serve_stop_line_counts_the_connections_refused_at_the_cap() {
    use std::io::Write;
    let mut serve = Serve::spawn(&["--max-connections", "1", "--exit-after-sessions", "1"]);
    let held = std::net::TcpStream::connect(&serve.addr).expect("connect");
    held.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut held_reader = BufReader::new(held.try_clone().expect("clone"));
    let mut greeting = String::new();
    held_reader.read_line(&mut greeting).expect("the greeting");
    let refused = talk(&serve.addr, b"");
    assert!(refused.starts_with("421 "), "{refused}");
    let mut held = held;
    held.write_all(b"QUIT\r\n").expect("write");
    let out = serve.lines_until("stopped (");
    assert_eq!(
        out.last().map(String::as_str),
        Some("stopped (session limit reached): 1 session(s), 0 ETRN, 1 refused"),
        "{out:?}"
    );
    assert!(serve.child.wait().expect("serve exits").success());
}

#[test]
fn serve_refuses_a_connection_cap_of_zero() {
    // A cap of none would refuse every connection, or, queueing, greet none.
    let (code, err) = exits_by_itself(&["serve", "--max-connections", "0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--max-connections") && err.contains("must be at least 1"),
        "{err}"
    );
}

#[test]
fn serve_events_jsonl_prints_one_json_object_per_line() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(["serve", "--listen", "127.0.0.1:0", "--events", "jsonl"])
        .args(["--exit-after-sessions", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first: serde_json::Value =
        serde_json::from_str(&lines.next().expect("a line").expect("read")).expect("JSON");
    // The ready object names every address; without --api it has none.
    assert_eq!(
        (&first["event"], &first["command"]),
        (&"ready".into(), &"serve".into())
    );
    assert!(first.get("api").is_none(), "{first}");
    let addr = first["smtp"].as_str().expect("the address").to_owned();
    talk(&addr, b"EHLO c\r\nETRN a.example\r\nQUIT\r\n");
    let rest: Vec<serde_json::Value> = lines
        .map(|l| serde_json::from_str(&l.expect("read")).expect("every line is JSON"))
        .collect();
    assert!(child.wait().expect("exits").success());
    assert_eq!(rest[0]["session"], 1);
    assert!(rest[0]["opened"]["peer"].is_string(), "{rest:?}");
    let etrn = rest
        .iter()
        .find(|l| l["event"] == "etrn")
        .expect("the ETRN");
    assert_eq!(etrn["domain"], "a.example");
    assert!(etrn["at_us"].is_u64());
    assert!(rest.iter().any(|l| l["closed"]["reason"] == "quit"));
    let last = rest.last().expect("a stop line");
    assert_eq!(
        (&last["event"], &last["command"], &last["why"]),
        (
            &"stopped".into(),
            &"serve".into(),
            &"session limit reached".into()
        )
    );
    assert_eq!(
        (
            last["sessions"].as_u64(),
            last["etrn"].as_u64(),
            last["refused"].as_u64()
        ),
        (Some(1), Some(1), Some(0))
    );
}

/// The JSON Lines of a `--record` stream, each line parsed (a last line cut short is left out).
fn stream_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("the recording exists");
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    if lines.last().is_some_and(|l| !l.ends_with('\n')) {
        lines.pop();
    }
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {l:?}: {e}")))
        .collect()
}

#[test]
fn serve_writes_the_recording_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let record = dir.path().join("r.json");
    let record_arg = record.to_string_lossy().into_owned();
    let mut serve = Serve::spawn(&["--record", &record_arg]);
    talk(&serve.addr, b"EHLO c\r\nETRN a.example\r\nQUIT\r\n");
    // The live line proves the session is recorded before the signal.
    assert_eq!(
        serve
            .lines_until("session 1: ETRN")
            .last()
            .map(String::as_str),
        Some("session 1: ETRN a.example -> 250")
    );
    sigterm(&serve.child);
    let out = serve.lines_until("stopped (").join("\n");
    assert!(out.contains("stopped (terminated)"), "{out}");
    assert!(serve.child.wait().expect("exits").success());
    let lines = stream_lines(&record);
    let etrn = lines
        .iter()
        .find(|l| l["event"] == "etrn")
        .expect("the ETRN");
    assert_eq!(etrn["domain"], "a.example");
    // The stream was renamed onto the path: nothing is left beside it.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, [std::ffi::OsString::from("r.json")]);
}

#[test]
fn two_signals_in_a_row_never_lose_the_recording() {
    // The second signal may arrive during the (bounded, usually instant) shutdown, which it then
    // cuts short, or after it: either way the open session is closed as `shutdown`, the stream
    // holds it, and serve exits 0. Which of the two happened cannot be forced from outside, so
    // both outcomes are held to the same assertions.
    let dir = tempfile::tempdir().expect("temp dir");
    let record = dir.path().join("r.jsonl");
    let record_arg = record.to_string_lossy().into_owned();
    let mut serve = Serve::spawn(&["--record", &record_arg]);
    let mut open = std::net::TcpStream::connect(&serve.addr).expect("connect");
    std::io::Write::write_all(&mut open, b"EHLO c\r\nETRN a.example\r\n").expect("write");
    assert_eq!(
        serve
            .lines_until("session 1: ETRN")
            .last()
            .map(String::as_str),
        Some("session 1: ETRN a.example -> 250")
    );
    let pid = serve.child.id().to_string();
    let killed = Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}; kill -TERM {pid}")])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let out = serve.lines_until("stopped (").join("\n");
    assert!(out.contains("1 session(s), 1 ETRN"), "{out}");
    assert!(serve.child.wait().expect("exits").success());
    let lines = stream_lines(&record);
    assert!(
        lines
            .iter()
            .any(|l| l["session"] == 1 && l["closed"]["reason"] == "shutdown"),
        "{lines:?}"
    );
    drop(open);
}

#[test]
fn serve_refuses_a_fifo_as_the_recording() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("r.jsonl");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    // Nobody reads the FIFO: serve must neither hang at start nor serve into it.
    let (code, err) = refused_at_start(&fifo);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot write the recording"), "{err}");
}

#[test]
fn serve_streams_each_event_soon_after_it_happens_and_a_killed_server_keeps_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let record = dir.path().join("r.jsonl");
    let record_arg = record.to_string_lossy().into_owned();
    // The stream's writer says each write it made in the log: what this test waits on.
    let (mut serve, log) = Serve::spawn_logged(
        &["--record", &record_arg],
        "etrn_harness::smarthost::stream_writer=debug",
    );
    talk(&serve.addr, b"EHLO c\r\nETRN a.example\r\nQUIT\r\n");
    // The live line is printed once the event is recorded; the stream, which grows beside the
    // recording's path until the rename at exit, has it once its writer thread wrote it.
    assert_eq!(
        serve
            .lines_until("session 1: ETRN")
            .last()
            .map(String::as_str),
        Some("session 1: ETRN a.example -> 250")
    );
    let partial = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            name.is_some_and(|n| n.starts_with(".r.jsonl.") && n.ends_with(".partial"))
        })
        .expect("the stream beside the recording's path");
    assert!(!record.exists(), "the path holds only a whole recording");
    // Written off the session's path: read again after each write the writer logs, until the
    // ETRN is there. Bounded by WAIT.
    let deadline = std::time::Instant::now() + WAIT;
    let lines = loop {
        let lines = stream_lines(&partial);
        if lines
            .iter()
            .any(|l| l["event"] == "etrn" && l["domain"] == "a.example")
        {
            break lines;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let logged = log
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the ETRN not streamed within {WAIT:?}: {lines:?}"));
        assert!(
            logged.contains("record stream: written"),
            "only the writer's writes are logged: {logged}"
        );
    };
    // SIGKILL: no chance to write anything more; what was streamed stays, line by line.
    serve.child.kill().expect("kill");
    serve.child.wait().expect("reaped");
    let after = stream_lines(&partial);
    assert!(after.len() >= lines.len());
    assert!(after.iter().any(|l| l["event"] == "etrn"));
}

/// Starts `serve` (the command given, its arguments so far) on loopback with JSON lines and
/// `--record record`: the child, its stdout and stderr lines, and its SMTP address.
fn serve_jsonl_recording(
    serve: &mut Command,
    record: &std::path::Path,
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
    std::sync::mpsc::Receiver<String>,
    String,
) {
    let mut child = serve
        .args(["--listen", "127.0.0.1:0", "--events", "jsonl", "--record"])
        .arg(record)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let lines = lines_of(child.stdout.take().expect("stdout"));
    let errors = lines_of(child.stderr.take().expect("stderr"));
    let first = lines.recv_timeout(WAIT).expect("the ready line");
    let first: serde_json::Value = serde_json::from_str(&first).expect("JSON");
    let addr = first["smtp"].as_str().expect("address").to_owned();
    (child, lines, errors, addr)
}

#[test]
fn serve_whose_record_buffer_overflows_says_what_the_file_misses_and_exits_4() {
    let dir = tempfile::tempdir().expect("temp dir");
    let record = dir.path().join("r.jsonl");
    // A buffer smaller than any batch of lines: each is dropped, however fast the disk.
    let (child, lines, errors, addr) = serve_jsonl_recording(
        Command::new(env!("CARGO_BIN_EXE_etrn-harness")).args(["serve", "--record-buffer", "16"]),
        &record,
    );
    let next = || lines.recv_timeout(WAIT).expect("a line from serve");
    talk(&addr, b"EHLO c\r\nETRN a.example\r\nQUIT\r\n");
    while !next().contains("\"closed\"") {}
    sigterm(&child);
    let written = loop {
        let line = next();
        if line.contains("recording_written") {
            break serde_json::from_str::<serde_json::Value>(&line).expect("JSON");
        }
    };
    let status = exit_within_wait(child, "serve did not stop on SIGTERM");
    assert_eq!(status.code(), Some(4), "{status}");
    // Every line of the session was dropped: at least its opened, command, reply and closed.
    let missed = written["missed"].as_u64().expect("missed");
    assert!(missed >= 4, "{written}");
    // serve has exited: its stderr ends, and the channel with it.
    let mut said = Vec::new();
    while let Ok(line) = errors.recv_timeout(WAIT) {
        said.push(line);
    }
    assert!(
        said.iter()
            .any(|l| l.contains(&format!("misses {missed} line(s)"))),
        "{said:?}"
    );
    // The file says so where the lines are missing, and is never taken for a whole recording.
    let stream = stream_lines(&record);
    assert_eq!(
        stream.last().map(|l| &l["missed"]),
        Some(&serde_json::json!(missed))
    );
    let out = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .arg("recording")
        .arg(&record)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line(s) missing here"));
    assert!(out.stdout.is_empty(), "no document is made");
}

#[test]
fn serve_whose_recording_stream_fails_leaves_the_partial_file_and_exits_4() {
    let dir = tempfile::tempdir().expect("temp dir");
    let record = dir.path().join("r.jsonl");
    // A file-size limit of one block makes the disk refuse the stream after its header (EFBIG;
    // SIGXFSZ ignored, as exec keeps it); stdout and stderr are pipes, which it does not touch.
    let (child, lines, errors, addr) = serve_jsonl_recording(
        Command::new("sh")
            .arg("-c")
            .arg(r#"trap '' XFSZ; ulimit -f 1 && exec "$0" "$@""#)
            .arg(env!("CARGO_BIN_EXE_etrn-harness"))
            .arg("serve"),
        &record,
    );
    let next = || lines.recv_timeout(WAIT).expect("a line from serve");
    // More than a block of stream lines: the write that passes the limit fails.
    for _ in 0..4 {
        talk(&addr, b"EHLO c\r\nETRN a.example\r\nQUIT\r\n");
    }
    let mut closed = 0;
    while closed < 4 {
        if next().contains("\"closed\"") {
            closed += 1;
        }
    }
    sigterm(&child);
    let status = exit_within_wait(child, "serve did not stop on SIGTERM");
    assert_eq!(status.code(), Some(4), "{status}");
    let mut said = Vec::new();
    while let Ok(line) = errors.recv_timeout(WAIT) {
        said.push(line);
    }
    let error = said
        .iter()
        .find(|l| l.starts_with("error: the recording stream failed"))
        .unwrap_or_else(|| panic!("no error: {said:?}"));
    assert!(
        error.contains(".partial") && error.contains("is not written"),
        "{error}"
    );
    // FILE never holds a stream that stops short; the `.partial` file keeps what was written.
    assert!(!record.exists(), "a short stream renamed onto FILE");
    let partial = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".partial"))
        .expect("the .partial file stays");
    assert!(std::fs::metadata(&partial).expect("metadata").len() > 0);
}

#[test]
fn serve_rejects_an_invalid_scenario_with_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args([
            "serve",
            "--scenario",
            "tests/fixtures/bad/invalid-reply.toml",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("scenario::invalid-value") && err.contains("25O OK"),
        "{err}"
    );
}

#[test]
fn serve_answers_as_a_built_in_scenario_named_by_its_id() {
    // e26's smart host answers 500 to `ETRN a.com`; the default profile would accept it.
    let empty = tempfile::tempdir().expect("temp dir");
    let child = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(["serve", "--listen", "127.0.0.1:0", "--scenario", "e26"])
        .args(["--exit-after-sessions", "1"])
        .current_dir(empty.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let mut serve = Serve::announced(child);
    let replies = talk(&serve.addr, b"EHLO c\r\nETRN a.com\r\nQUIT\r\n");
    assert!(replies.contains("\r\n500 "), "{replies}");
    serve.lines_until("stopped");
}

#[test]
fn serve_refuses_an_unwritable_recording_path_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-folder").join("r.json");
    // It must exit by itself, before serving anything: the recording could never be written.
    let (code, err) = refused_at_start(&missing);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot write the recording"), "{err}");
}

/// Runs `serve --record PATH`, which must stop by itself at start; its exit code and stderr.
fn refused_at_start(record: &std::path::Path) -> (Option<i32>, String) {
    let record = record.display().to_string();
    exits_by_itself(&["serve", "--listen", "127.0.0.1:0", "--record", &record])
}

#[test]
fn serve_refuses_a_link_at_the_recording_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "untouched").expect("write");
    let record = dir.path().join("r.jsonl");
    std::os::unix::fs::symlink(&victim, &record).expect("symlink");
    let out = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(["serve", "--listen", "127.0.0.1:0", "--record"])
        .arg(&record)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot write the recording"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "untouched"
    );
}

#[tokio::test]
async fn the_recording_format_is_as_the_readme_documents_it() {
    let host = SmartHost::start(SmartHostConfig::default())
        .await
        .expect("starts");
    let addr = host.addr().to_string();
    tokio::task::spawn_blocking(move || {
        talk(
            &addr,
            b"EHLO c\r\nETRN a.example\r\nETRN #q\r\nETRN bad!node\nQUIT\r\n",
        )
    })
    .await
    .expect("client");
    let recording = host
        .recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .expect("closed");
    let json = serde_json::to_value(&recording).expect("JSON");
    assert_eq!(json["version"], 1);
    assert!(json.get("forgotten").is_none(), "omitted when 0: {json}");
    let etrn = &json["sessions"][0]["etrn"];
    // A plain domain: no flags key at all.
    assert_eq!(etrn[0]["domain"], "a.example");
    assert!(etrn[0].get("flags").is_none(), "{}", etrn[0]);
    // #q: option queue, the queue name read as a domain.
    assert_eq!(
        (etrn[1]["option"].as_str(), etrn[1]["domain"].as_str()),
        (Some("queue"), Some("q"))
    );
    // No valid node: option and domain null, flags say why.
    assert!(
        etrn[2]["option"].is_null() && etrn[2]["domain"].is_null(),
        "{}",
        etrn[2]
    );
    assert_eq!(etrn[2]["flags"], serde_json::json!(["bare-lf", "invalid"]));
    let commands = &json["sessions"][0]["commands"];
    assert!(commands[0].get("bare_lf").is_none());
    assert_eq!(commands[3]["bare_lf"], true);
}

#[test]
fn the_http_api_serves_a_python_client_using_only_the_standard_library() {
    if !common::peer_available("python3", &["--version"]) {
        return;
    }
    let mut serve = Serve::spawn(&["--api", "127.0.0.1:0"]);
    let api_line = serve.next_line();
    let api = api_line
        .strip_prefix("api on ")
        .unwrap_or_else(|| panic!("unexpected second line {api_line:?}"))
        .to_owned();
    let client = Command::new("python3")
        .args(["tests/fixtures/api_client.py", &api, &serve.addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let pid = client.id().to_string();
    // Bounded: each of the client's calls times out after 10 s; this caps the whole.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(client.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("output"),
        Err(e) => {
            let _ = Command::new("kill").args(["-9", &pid]).status();
            panic!("the Python client did not finish within 60 s: {e}");
        }
    };
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn serve_whose_reader_went_away_still_writes_its_recording() {
    let dir = tempfile::tempdir().expect("temp dir");
    let record = dir.path().join("r.jsonl");
    let (child, stdout, first) = first_line(
        Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--exit-after-sessions",
                "1",
            ])
            .arg("--record")
            .arg(&record)
            .stderr(Stdio::null()),
    );
    let addr = first
        .trim_end()
        .strip_prefix("listening on ")
        .expect("the address")
        .to_owned();
    // Like `serve | head -1`: every later line goes to a closed pipe.
    drop(stdout);
    talk(&addr, b"EHLO c\r\nETRN a.example\r\nQUIT\r\n");
    let status = exit_within_wait(child, "serve did not stop after its session");
    assert!(status.success(), "{status}");
    let lines = stream_lines(&record);
    assert!(
        lines.iter().any(|l| l["domain"] == "a.example"),
        "{lines:?}"
    );
}

/// The lines the recorder saw after a 421, and the lines that came before an earlier reply.
fn after_close_and_unawaited(
    r: &etrn_harness::proto::SessionRecording,
) -> (Vec<String>, Vec<String>) {
    let text = |raw: &[u8]| String::from_utf8_lossy(raw).trim_end().to_owned();
    let mut after = Vec::new();
    let mut unawaited = Vec::new();
    for e in &r.events {
        match &e.event {
            Event::AfterClose { raw } => after.push(text(raw)),
            Event::Unawaited { raw } => unawaited.push(text(raw)),
            _ => {}
        }
    }
    (after, unawaited)
}

/// [`converse`], then the recording once the session closed.
async fn conversed(host: &SmartHost, input: &[u8]) -> etrn_harness::proto::Recording {
    converse(host, input).await;
    host.recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .expect("closed")
}

/// A smart host that greets with 421, and a client that sends `input` after that greeting
/// regardless: the recording once the session closed after its linger.
async fn talked_past_a_421_greeting(input: &[u8]) -> etrn_harness::proto::Recording {
    let refusing = start("greeting = \"421 4.3.2 Service not available\"").await;
    let mut c = TcpStream::connect(refusing.addr()).await.expect("connect");
    let mut greeting = [0u8; 64];
    let n = tokio::time::timeout(WAIT, c.read(&mut greeting))
        .await
        .expect("greeting in time")
        .expect("read");
    assert!(greeting[..n].starts_with(b"421 "));
    c.write_all(input).await.expect("write");
    refusing
        .recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .expect("closed after the linger")
}

#[tokio::test]
async fn what_a_client_sends_after_a_421_is_read_for_a_linger_and_recorded() {
    // 421 to the greeting: the client talks on regardless.
    let r = talked_past_a_421_greeting(b"EHLO c\r\nETRN a.example\r\nQUIT\r\n").await;
    let (after, _) = after_close_and_unawaited(&r.sessions[0]);
    assert_eq!(after, ["EHLO c", "ETRN a.example", "QUIT"]);
    assert!(r.sessions[0].commands.is_empty(), "none of it was answered");
    assert!(
        r.sessions[0]
            .transcript()
            .contains("C: QUIT   [after the 421, not answered]"),
        "{}",
        r.sessions[0].transcript()
    );

    // 421 to an ETRN in a pipelined write: the rest is recorded, not processed.
    let closing = start("etrn = [{ arg = \"a.example\", reply = \"421 closing\" }]").await;
    let r = conversed(
        &closing,
        b"EHLO c\r\nETRN a.example\r\nETRN b.example\r\nQUIT\r\n",
    )
    .await;
    let (after, _) = after_close_and_unawaited(&r.sessions[0]);
    assert_eq!(after, ["ETRN b.example", "QUIT"]);
    assert_eq!(r.etrn_domains(), ["a.example"]);

    // A client that says nothing more: the linger ends, bounded, with nothing recorded.
    let silent = start("greeting = \"421 busy\"").await;
    let _c = TcpStream::connect(silent.addr()).await.expect("connect");
    let r = silent
        .recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .expect("closed after the linger although the client keeps its socket open");
    assert!(after_close_and_unawaited(&r.sessions[0]).0.is_empty());
}

#[tokio::test]
async fn commands_sent_before_an_earlier_reply_are_recorded_as_unawaited() {
    // All in one write, at connect: every line came before the reply (or greeting) before it.
    let host = start("").await;
    converse(
        &host,
        b"EHLO c\r\nETRN a.example\r\nETRN b.example\r\nQUIT\r\n",
    )
    .await;
    let r = host
        .recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .expect("closed");
    let (_, unawaited) = after_close_and_unawaited(&r.sessions[0]);
    assert_eq!(
        unawaited,
        ["EHLO c", "ETRN a.example", "ETRN b.example", "QUIT"]
    );

    // Two writes, the second while the first ETRN's reply is delayed: still unawaited.
    let slow = start("etrn_default = { reply = \"250 OK\", delay_ms = 200 }").await;
    let mut c = TcpStream::connect(slow.addr()).await.expect("connect");
    let mut reader = tokio::io::BufReader::new(&mut c);
    let mut line = String::new();
    use tokio::io::AsyncBufReadExt;
    // The greeting, then the whole EHLO reply: waited for.
    reader.read_line(&mut line).await.expect("greeting");
    reader
        .get_mut()
        .write_all(b"EHLO c\r\n")
        .await
        .expect("write");
    loop {
        line.clear();
        reader.read_line(&mut line).await.expect("EHLO reply");
        if line.as_bytes().get(3) == Some(&b' ') {
            break;
        }
    }
    reader
        .get_mut()
        .write_all(b"ETRN a.example\r\n")
        .await
        .expect("write");
    reader
        .get_mut()
        .write_all(b"ETRN b.example\r\n")
        .await
        .expect("write");
    for _ in 0..2 {
        line.clear();
        reader.read_line(&mut line).await.expect("ETRN reply");
    }
    reader
        .get_mut()
        .write_all(b"QUIT\r\n")
        .await
        .expect("write");
    line.clear();
    reader.read_line(&mut line).await.expect("QUIT reply");
    let r = slow
        .recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .expect("closed");
    let (_, unawaited) = after_close_and_unawaited(&r.sessions[0]);
    assert_eq!(unawaited, ["ETRN b.example"], "QUIT waited for its turn");
}

#[tokio::test]
async fn a_pipelined_write_longer_than_a_small_read_is_recorded_line_by_line() {
    // Several times the driver's first read buffer, in one write: every line is taken before
    // the first reply goes out, so each is unawaited, whole.
    let host = start("").await;
    let etrns: Vec<String> = (0..300)
        .map(|n| format!("ETRN d{n}.bench.example"))
        .collect();
    let mut input = b"EHLO c\r\n".to_vec();
    for line in &etrns {
        input.extend_from_slice(line.as_bytes());
        input.extend_from_slice(b"\r\n");
    }
    input.extend_from_slice(b"QUIT\r\n");
    let r = conversed(&host, &input).await;
    let (_, unawaited) = after_close_and_unawaited(&r.sessions[0]);
    // EHLO is unawaited when it arrived before the greeting went out: a race not judged here.
    let after_ehlo: Vec<&String> = unawaited.iter().filter(|l| *l != "EHLO c").collect();
    let mut expected: Vec<&String> = etrns.iter().collect();
    let quit = "QUIT".to_owned();
    expected.push(&quit);
    assert_eq!(after_ehlo, expected);
    assert_eq!(r.sessions[0].etrn.len(), 300);
}

/// One HTTP/1.1 request to the API, over a plain socket (every read bounded): the status and
/// the body.
fn http(api: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    exchange(
        api,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/toml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// Sends `request` as it is and reads the answer to the end (bounded): the status and the body
/// (status 0: no answer). A server that refuses a request before reading all of it may reset the
/// connection after its answer: what arrived before counts.
fn exchange(api: &str, request: &str) -> (u16, String) {
    let (status, _, body) = exchange_with_head(api, request);
    (status, body)
}

/// [`exchange`], with the answer's head (status line and header lines, lower case) as well.
fn exchange_with_head(api: &str, request: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(api).expect("the API accepts");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let _ = s.write_all(request.as_bytes());
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes);
    let answer = String::from_utf8_lossy(&bytes);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .map_or((answer.as_ref(), ""), |(h, b)| (h, b));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// The JSON error in `body`: it has an `error` and a `fix`, both strings.
/// The body of a chunked answer, its chunks joined (`None`: not a well-formed chunked body).
fn dechunked(body: &str) -> Option<String> {
    let mut rest = body;
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size..)?.strip_prefix("\r\n")?;
    }
}

#[test]
fn a_long_recording_is_streamed_in_chunks_as_the_same_document() {
    let mut serve = Serve::spawn(&["--api", "127.0.0.1:0", "--events", "none"]);
    let api = api_of(&mut serve);
    let sessions = 150;
    for n in 0..sessions {
        talk(
            &serve.addr,
            format!("EHLO c\r\nETRN d{n}.example\r\nQUIT\r\n").as_bytes(),
        );
    }
    let request = |path: &str| {
        exchange(
            &api,
            &format!("GET {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n"),
        )
    };
    // The raw answer: the head says how the body comes.
    let (status, body) = request(&format!("/recording?sessions={sessions}&timeout=20"));
    assert_eq!(status, 200, "{body}");
    let document = dechunked(&body).unwrap_or_else(|| panic!("not chunked: {:?}", &body[..80]));
    let recording: serde_json::Value = serde_json::from_str(&document).expect("one JSON document");
    let ids = session_ids(&recording);
    assert_eq!(ids, (1..=sessions).collect::<Vec<u64>>());
    assert!(recording["sessions"][0]["etrn"][0]["domain"] == "d0.example");
    // The ETRNs alone fit in one piece: answered whole, with their length.
    let (status, etrn) = request("/etrn?wait=d149.example");
    assert_eq!(status, 200, "{etrn}");
    let etrn: serde_json::Value = serde_json::from_str(&etrn).expect("JSON, not chunked");
    assert_eq!(etrn.as_array().map(Vec::len), Some(150));
    assert_eq!(etrn[149]["session"], 150);
}

#[test]
fn serve_retain_n_keeps_the_sessions_that_closed_last_and_counts_the_rest() {
    // Serve's own default log filter: its warnings only.
    let (mut serve, log) = Serve::spawn_logged(
        &["--api", "127.0.0.1:0", "--events", "none", "--retain", "2"],
        "warn",
    );
    let api = api_of(&mut serve);
    for n in 1..=5 {
        talk(
            &serve.addr,
            format!("EHLO c\r\nETRN d{n}.example\r\nQUIT\r\n").as_bytes(),
        );
    }
    // `talk` returns when the server has hung up, before it may have recorded the close: wait
    // on the count the recording keeps whatever it forgets.
    let (status, body) = http(&api, "GET", "/recording?sessions=5&timeout=20", "");
    assert_eq!(status, 200, "{body}");
    let recording: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let ids = session_ids(&recording);
    assert_eq!(ids, vec![4, 5], "{recording}");
    assert_eq!(recording["forgotten"], 3, "{recording}");
    // The ETRN index forgets with the sessions: the last two domains only.
    let (status, etrn) = http(&api, "GET", "/etrn", "");
    assert_eq!(status, 200, "{etrn}");
    let etrn: serde_json::Value = serde_json::from_str(&etrn).expect("JSON");
    let domains: Vec<&str> = etrn
        .as_array()
        .expect("ETRNs")
        .iter()
        .filter_map(|e| e["domain"].as_str())
        .collect();
    assert_eq!(domains, vec!["d4.example", "d5.example"]);
    sigterm(&serve.child);
    assert!(serve.child.wait().expect("exits").success());
    // Its stderr ends when it exits: every line it logged, and one warning that it forgets.
    let warned = log
        .iter()
        .filter(|line| line.contains("history full"))
        .count();
    assert_eq!(warned, 1, "one warning, at the first session forgotten");
}

#[test]
fn serve_retain_refuses_what_is_not_a_count_all_or_open() {
    let (code, err) = exits_by_itself(&["serve", "--retain", "some"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--retain") && err.contains("e.g. --retain 10000"),
        "{err}"
    );
    // The help says what it keeps unless told.
    let out = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(["serve", "--help"])
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--retain <N|all|open>") && help.contains("[default: 10000]"),
        "{help}"
    );
}

/// The ids of the sessions a recording document (or a page of one) holds, in its order.
fn session_ids(recording: &serde_json::Value) -> Vec<u64> {
    recording["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter_map(|s| s["id"].as_u64())
        .collect()
}

/// A header's value in a head [`exchange_with_head`] returned (names in lower case).
fn header_of<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

#[test]
fn a_client_pages_through_the_recording_and_the_etrns_by_cursor() {
    let mut serve = Serve::spawn(&["--api", "127.0.0.1:0", "--events", "none"]);
    let api = api_of(&mut serve);
    // Five sessions; the third sends two ETRNs: six ETRNs, numbered 1 to 6.
    for n in 1..=5 {
        let extra = if n == 3 { "ETRN extra.example\r\n" } else { "" };
        talk(
            &serve.addr,
            format!("EHLO c\r\nETRN d{n}.example\r\n{extra}QUIT\r\n").as_bytes(),
        );
    }
    let get = |path: &str| {
        let (status, head, body) = exchange_with_head(
            &api,
            &format!("GET {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(status, 200, "{path}: {body}");
        let json: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
        (head, json)
    };
    // Without a page asked for: everything, with no paging headers (as before paging).
    let (head, all) = get("/recording?sessions=5");
    assert_eq!(all["sessions"].as_array().map(Vec::len), Some(5));
    assert!(header_of(&head, "link").is_none() && header_of(&head, "next-after").is_none());
    // Pages of two sessions, following each answer's `Link` until there is none.
    let mut path = "/recording?limit=2".to_owned();
    let mut pages = Vec::new();
    loop {
        let (head, page) = get(&path);
        let ids = session_ids(&page);
        // The cursor is the last id of the page.
        assert_eq!(
            header_of(&head, "next-after"),
            ids.last().map(u64::to_string).as_deref(),
            "{head}"
        );
        pages.push(ids);
        match header_of(&head, "link") {
            Some(link) => {
                path = link
                    .strip_prefix('<')
                    .and_then(|l| l.strip_suffix(">; rel=\"next\""))
                    .unwrap_or_else(|| panic!("not a next link: {link}"))
                    .to_owned();
            }
            None => break,
        }
    }
    assert_eq!(pages, [vec![1, 2], vec![3, 4], vec![5]]);
    // After the last one: an empty page whose cursor stays where it was.
    let (head, page) = get("/recording?after=5");
    assert_eq!(page["sessions"], serde_json::json!([]));
    assert_eq!(header_of(&head, "next-after"), Some("5"));
    assert!(header_of(&head, "link").is_none());
    // The ETRNs by number: the page after 2 holds the third session's two.
    let (head, etrns) = get("/etrn?after=2&limit=2");
    let domains: Vec<&str> = etrns
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|e| e["domain"].as_str())
        .collect();
    assert_eq!(domains, ["d3.example", "extra.example"]);
    assert_eq!(etrns[1]["session"], 3);
    assert_eq!(header_of(&head, "next-after"), Some("4"));
    assert_eq!(
        header_of(&head, "link"),
        Some("</etrn?after=4&limit=2>; rel=\"next\"")
    );
    let (head, rest) = get("/etrn?after=4");
    assert_eq!(rest.as_array().map(Vec::len), Some(2));
    assert_eq!(header_of(&head, "next-after"), Some("6"));
    assert!(header_of(&head, "link").is_none());
    // A reset does not start the numbers again: a client's cursor still holds.
    assert_eq!(http(&api, "POST", "/reset", "").0, 200);
    talk(&serve.addr, b"EHLO c\r\nETRN late.example\r\nQUIT\r\n");
    let (head, late) = get("/etrn?after=6&wait=late.example");
    assert_eq!(late[0]["domain"], "late.example");
    assert_eq!(late.as_array().map(Vec::len), Some(1));
    assert_eq!(header_of(&head, "next-after"), Some("7"));
    // A bad page is a JSON 400 that names its parameter.
    for (query, named) in [
        ("after=-1", "after="),
        ("after=soon", "after="),
        ("limit=0", "limit="),
        ("limit=1001", "limit="),
        ("limit=ten", "limit="),
    ] {
        for endpoint in ["/recording", "/etrn"] {
            let (status, body) = http(&api, "GET", &format!("{endpoint}?{query}"), "");
            assert_eq!(status, 400, "{endpoint}?{query}: {body}");
            let error = json_error(&body)["error"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(error.starts_with(named), "{error}");
        }
    }
}

fn json_error(body: &str) -> serde_json::Value {
    let json: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"));
    assert!(
        json["error"].is_string() && json["fix"].is_string(),
        "{json}"
    );
    json
}

fn api_of(serve: &mut Serve) -> String {
    let line = serve.next_line();
    line.strip_prefix("api on http://")
        .unwrap_or_else(|| panic!("unexpected second line {line:?}"))
        .to_owned()
}

/// A script whose profile offers STARTTLS (Exim's), put through the API into a smart host started
/// without TLS: the smart host makes its certificate then, and the client's STARTTLS succeeds
/// (the mail-send client library requires it, then sends an ETRN inside TLS).
#[tokio::test]
async fn a_starttls_script_put_through_the_api_gets_a_working_starttls() {
    let mut serve = Serve::spawn(&["--api", "127.0.0.1:0"]);
    let api = api_of(&mut serve);
    let (status, body) = http(&api, "PUT", "/script", "profile = \"exim\"\n");
    assert_eq!(status, 200, "{body}");
    let smtp: std::net::SocketAddr = serve.addr.parse().expect("the SMTP address");
    let mut client = common::starttls_client(smtp, WAIT).await;
    client
        .cmd(b"ETRN tls.example\r\n")
        .await
        .expect("ETRN inside TLS");
    client.quit().await.expect("quit");
    let (status, body) = http(&api, "GET", "/recording", "");
    assert_eq!(status, 200, "{body}");
    let recording: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let session = &recording["sessions"][0];
    assert_eq!(session["tls"], true, "{session}");
    assert_eq!(session["etrn"][0]["raw"], "tls.example", "{session}");
}

#[test]
fn the_api_opens_no_file_a_request_names_without_a_cassette_dir() {
    let mut serve = Serve::spawn(&["--api", "127.0.0.1:0"]);
    let api = api_of(&mut serve);
    for path in ["/etc/passwd", "/proc/self/environ", "/no/such/file"] {
        let (status, body) = http(&api, "PUT", "/script", &format!("cassette = \"{path}\"\n"));
        assert_eq!(status, 403, "{path}: {body}");
        // One answer whatever exists, and never a line of the file.
        assert!(body.contains("opens no cassette"), "{body}");
        assert!(!body.contains("root:") && !body.contains(path), "{body}");
    }
}

#[test]
fn the_api_reads_cassettes_only_as_regular_files_inside_the_cassette_dir() {
    let dir = tempfile::tempdir().expect("temp dir");
    let folder = dir.path().join("cassettes");
    std::fs::create_dir(&folder).expect("folder");
    std::fs::write(
        folder.join("ok.cassette"),
        "etrn-harness cassette v1\n1 session\n1 S: 220 replayed.example ESMTP\n1 C: QUIT\n1 S: 221 bye\n1 end quit\n",
    )
    .expect("cassette");
    std::fs::write(
        dir.path().join("outside.cassette"),
        "etrn-harness cassette v1\n",
    )
    .expect("outside");
    std::os::unix::fs::symlink("/etc/passwd", folder.join("link")).expect("symlink");
    std::os::unix::fs::symlink(dir.path().join("outside.cassette"), folder.join("out"))
        .expect("symlink");
    // Relative links: one leads out of the folder, one stays inside; an absolute one inside.
    std::os::unix::fs::symlink("../outside.cassette", folder.join("up")).expect("symlink");
    std::os::unix::fs::symlink("ok.cassette", folder.join("near")).expect("symlink");
    std::os::unix::fs::symlink(folder.join("ok.cassette"), folder.join("absolute"))
        .expect("symlink");
    rustix::fs::mkfifoat(rustix::fs::CWD, folder.join("fifo"), rustix::fs::Mode::RUSR)
        .expect("fifo");
    let folder_arg = folder.display().to_string();
    let mut serve = Serve::spawn(&["--api", "127.0.0.1:0", "--cassette-dir", &folder_arg]);
    let api = api_of(&mut serve);
    let outside = dir.path().join("outside.cassette").display().to_string();
    for asked in [
        "../outside.cassette",
        outside.as_str(),
        "link",
        "out",
        "up",
        "absolute",
        "missing",
    ] {
        let (status, body) = http(&api, "PUT", "/script", &format!("cassette = \"{asked}\"\n"));
        assert_eq!(status, 403, "{asked}: {body}");
        assert!(
            body.contains("no cassette") && !body.contains("root:"),
            "{body}"
        );
    }
    // A FIFO inside the folder is refused at once, unread: the server goes on answering.
    let (status, body) = http(&api, "PUT", "/script", "cassette = \"fifo\"\n");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("not a regular file"), "{body}");
    // A relative link that stays inside the folder is followed.
    let (status, body) = http(&api, "PUT", "/script", "cassette = \"near\"\n");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(&api, "PUT", "/script", "cassette = \"ok.cassette\"\n");
    assert_eq!(status, 200, "{body}");
    let mut smtp = std::net::TcpStream::connect(&serve.addr).expect("smtp");
    smtp.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut greeting = [0u8; 64];
    let n = std::io::Read::read(&mut smtp, &mut greeting).expect("greeting");
    assert!(
        String::from_utf8_lossy(&greeting[..n]).starts_with("220 replayed.example"),
        "{:?}",
        String::from_utf8_lossy(&greeting[..n])
    );
}

/// Runs the binary with `args` and returns its exit code and stderr; it must exit by itself
/// within [`WAIT`] (a FIFO read would block it for ever).
fn exits_by_itself(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        let _ = tx.send(text);
    });
    let err = match rx.recv_timeout(WAIT) {
        Ok(text) => text,
        Err(e) => {
            let _ = child.kill();
            panic!("{args:?} did not exit: {e}");
        }
    };
    (child.wait().expect("exits").code(), err)
}

#[test]
fn a_fifo_named_as_a_scenario_cassette_or_known_list_is_refused_unread() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("pipe");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
    )
    .expect("fifo");
    let fifo = fifo.display().to_string();
    let (code, err) = exits_by_itself(&["replay", "--cassette", &fifo, "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
    let (code, err) = exits_by_itself(&[
        "record",
        "--cassette",
        &fifo,
        "--upstream",
        "127.0.0.1:9",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
    let (code, err) = exits_by_itself(&["run", "--known", &fifo, "--filter", "e03"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
    for args in [
        &["serve", "--listen", "127.0.0.1:0", "--scenario", &fifo][..],
        &["check", &fifo][..],
        &["expect", &fifo][..],
    ] {
        let (code, err) = exits_by_itself(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains("not a regular file"), "{args:?}: {err}");
    }
}

#[test]
fn a_damaged_cassette_is_refused_with_its_line_and_without_its_text() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("damaged.cassette");
    let mut bytes =
        b"etrn-harness cassette v1\n1 session\n1 S: 220 ok\n1 C: AUTH PLAIN s3cret".to_vec();
    bytes.extend_from_slice(b"\xff\n1 end quit\n");
    std::fs::write(&file, bytes).expect("write");
    let path = file.display().to_string();
    let (code, err) = exits_by_itself(&["replay", "--cassette", &path, "--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("{path}:4: a byte that is not UTF-8")),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn serve_whose_stdout_is_not_read_still_stops_on_sigterm_and_writes_its_recording() {
    let dir = tempfile::tempdir().expect("temp dir");
    let record = dir.path().join("r.jsonl");
    let (child, stdout, first) = first_line(
        Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
            .args(["serve", "--listen", "127.0.0.1:0", "--events", "jsonl"])
            .arg("--record")
            .arg(&record)
            .stderr(Stdio::null()),
    );
    // Like `Popen(stdout=PIPE)` that reads one line: the pipe stays open and is never read again.
    let listening: serde_json::Value = serde_json::from_str(&first).expect("a JSON line");
    let addr = listening["smtp"].as_str().expect("the address").to_owned();
    // Far more output than a pipe holds (64 KiB): about 600 octets of JSON lines per session.
    const SESSIONS: usize = 400;
    for _ in 0..SESSIONS {
        talk(&addr, b"EHLO c\r\nETRN a.example\r\nQUIT\r\n");
    }
    sigterm(&child);
    let status = exit_within_wait(
        child,
        "serve did not stop on SIGTERM with its stdout unread",
    );
    assert!(status.success(), "{status}");
    let lines = stream_lines(&record);
    let closed = lines.iter().filter(|l| l.get("closed").is_some()).count();
    assert_eq!(closed, SESSIONS, "every session is in the recording");
    drop(stdout);
}

/// Waits at most [`WAIT`] for `child` to exit; kills it and fails the test with `failure` if it
/// does not.
fn exit_within_wait(mut child: std::process::Child, failure: &str) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(WAIT) {
        Ok(status) => status.expect("exit status"),
        Err(e) => {
            let _ = Command::new("kill").args(["-9", &pid]).status();
            panic!("{failure}: {e}");
        }
    }
}

#[test]
fn the_api_answers_only_requests_that_name_this_machine() {
    let mut serve = Serve::spawn(&["--api", "127.0.0.1:0"]);
    let api = api_of(&mut serve);
    let port = api
        .rsplit_once(':')
        .map(|(_, p)| p.to_owned())
        .expect("a port");
    // DNS rebinding: a foreign name resolving to 127.0.0.1 reaches the socket, not the API.
    for host in [
        format!("rebind.evil.example:{port}"),
        "evil.example".to_owned(),
    ] {
        let (status, body) = exchange(
            &api,
            &format!("GET /recording HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(status, 403, "{host}: {body}");
        assert!(
            json_error(&body)["error"]
                .as_str()
                .unwrap_or_default()
                .contains("not this machine")
        );
        assert!(!body.contains("sessions"), "{body}");
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        "localhost".to_owned(),
    ] {
        let (status, body) = exchange(
            &api,
            &format!("GET /etrn HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!((status, body.as_str()), (200, "[]"), "{host}");
    }
    let (status, body) = exchange(&api, "GET /etrn HTTP/1.0\r\n\r\n");
    assert_eq!(status, 400, "{body}");
    assert!(
        json_error(&body)["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no Host")
    );
}

#[test]
fn a_cross_origin_reset_is_refused_and_the_recording_stays() {
    let mut serve = Serve::spawn(&["--api", "127.0.0.1:0"]);
    let api = api_of(&mut serve);
    talk(&serve.addr, b"EHLO c\r\nETRN a.example\r\nQUIT\r\n");
    let (status, body) = http(&api, "GET", "/etrn?wait=a.example&timeout=5", "");
    assert_eq!(status, 200, "{body}");
    let reset = |headers: &str| {
        exchange(
            &api,
            &format!(
                "POST /reset HTTP/1.1\r\nHost: {api}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        )
    };
    // What any web page can send with fetch() or a form, to any address.
    let (status, body) = reset("Origin: http://evil.example\r\nContent-Type: text/plain\r\n");
    assert_eq!(status, 403, "{body}");
    json_error(&body);
    let (status, body) = reset("Origin: null\r\n");
    assert_eq!(status, 403, "{body}");
    for form in [
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let (status, body) = reset(&format!("Content-Type: {form}\r\n"));
        assert_eq!(status, 415, "{form}: {body}");
        let fix = json_error(&body)["fix"].clone();
        assert!(
            fix.as_str().is_some_and(|f| f.contains("application/json")),
            "{fix}"
        );
    }
    let (status, body) = http(&api, "GET", "/etrn", "");
    assert_eq!(status, 200);
    let etrn: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        etrn[0]["domain"], "a.example",
        "the recording is intact: {body}"
    );
    // A tool on this machine: no body and no Content-Type (curl -X POST), or a page on loopback.
    let (status, body) = reset("Origin: http://localhost:3000\r\n");
    assert_eq!((status, body.as_str()), (200, r#"{"reset":true}"#));
    let (status, body) = http(&api, "GET", "/etrn", "");
    assert_eq!((status, body.as_str()), (200, "[]"));
    // A script sent as a form is refused too; as TOML it is taken.
    let script = "profile = \"postfix\"";
    let put = |content_type: &str| {
        exchange(
            &api,
            &format!(
                "PUT /script HTTP/1.1\r\nHost: {api}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{script}",
                script.len()
            ),
        )
    };
    assert_eq!(put("application/x-www-form-urlencoded").0, 415);
    // Not refused as a type (JSON is a script too), but TOML does not parse as JSON.
    assert_eq!(put("application/json").0, 422);
    assert_eq!(put("text/toml; charset=utf-8").0, 200);
}

#[test]
fn the_active_script_is_read_back_and_may_be_sent_as_json() {
    let mut serve = Serve::spawn(&["--api", "127.0.0.1:0", "--profile", "postfix"]);
    let api = api_of(&mut serve);
    let get = || {
        let (status, body) = http(&api, "GET", "/script", "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    };
    assert_eq!(get(), serde_json::json!({ "profile": "postfix" }));
    let put_json = |script: &str| {
        exchange(
            &api,
            &format!(
                "PUT /script HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{script}",
                script.len()
            ),
        )
    };
    let script = serde_json::json!({
        "profile": "exim",
        "etrn_default": "458 busy",
        "commands": { "NOOP": "250 scripted" }
    });
    let (status, body) = put_json(&script.to_string());
    assert_eq!(status, 200, "{body}");
    // What GET answers is what was sent, and what PUT takes back.
    assert_eq!(get(), script);
    let (status, body) = put_json(&get().to_string());
    assert_eq!(status, 200, "{body}");
    let reply = talk(&serve.addr, b"EHLO c\r\nETRN a.example\r\nQUIT\r\n");
    assert!(reply.contains("\r\n458 busy\r\n"), "{reply:?}");
    let (status, index) = http(&api, "GET", "/", "");
    assert_eq!(status, 200);
    assert!(index.contains("\"profile\":\"exim\""), "{index}");
    // A profile sent by name, and a TOML script, are read back as JSON too.
    assert_eq!(http(&api, "PUT", "/profile/sendmail", "").0, 200);
    assert_eq!(get(), serde_json::json!({ "profile": "sendmail" }));
    assert_eq!(
        http(&api, "PUT", "/script", "hostname = \"mx.example\"").0,
        200
    );
    assert_eq!(
        get(),
        serde_json::json!({ "profile": "rfc1985", "hostname": "mx.example" })
    );
    // JSON that does not parse, or names no field of a script: 422, placed, and the script stays.
    for (bad, place) in [
        ("{\"profile\": ", "line 1, column"),
        (
            "{\n  \"profile\": \"exim\",\n  \"nonsense\": 1\n}",
            "line 3, column",
        ),
        ("[1, 2]", "line 1, column"),
    ] {
        let (status, body) = put_json(bad);
        assert_eq!(status, 422, "{bad}: {body}");
        let error = json_error(&body)["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(error.starts_with(place), "{error}");
    }
    assert_eq!(get()["hostname"], "mx.example");
}

#[test]
fn the_api_caps_its_connections_and_smtp_still_accepts() {
    use std::io::Read;
    const CAP: usize = etrn_harness::api::MAX_CONNECTIONS;
    let mut serve = Serve::spawn(&["--api", "127.0.0.1:0", "--max-connections", "8"]);
    let api = api_of(&mut serve);
    // Silent connections, accepted in order: the first CAP hold a place, the rest are refused.
    let idle: Vec<std::net::TcpStream> = (0..CAP + 4)
        .map(|_| std::net::TcpStream::connect(&api).expect("the API accepts"))
        .collect();
    let refused_at_once = |mut c: &std::net::TcpStream| {
        c.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut answer = String::new();
        let started = std::time::Instant::now();
        let _ = c.read_to_string(&mut answer);
        assert!(
            started.elapsed() < WAIT,
            "the refusal took {:?}",
            started.elapsed()
        );
        answer
    };
    for c in &idle[CAP..] {
        let answer = refused_at_once(c);
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    }
    // A further client is answered at once, not left hanging, and says why.
    let further = std::net::TcpStream::connect(&api).expect("the API accepts");
    let answer = refused_at_once(&further);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert!(
        json_error(body)["error"]
            .as_str()
            .unwrap_or_default()
            .contains("too many")
    );
    // The SMTP server still has descriptors and answers.
    let reply = talk(&serve.addr, b"QUIT\r\n");
    assert!(reply.starts_with("220 "), "{reply:?}");
    drop(idle);
}

#[test]
fn a_silent_or_idle_api_connection_is_closed_after_the_header_read_timeout() {
    use std::io::{Read, Write};
    let mut serve = Serve::spawn(&["--api", "127.0.0.1:0"]);
    let api = api_of(&mut serve);
    let limit = etrn_harness::api::HEADER_READ_TIMEOUT;
    let bound = limit + WAIT;
    // One never sends a byte; the other sends a request, reads the answer, then stays silent;
    // a third sends a head and part of its body, then nothing.
    let silent = std::net::TcpStream::connect(&api).expect("the API accepts");
    let mut idle = std::net::TcpStream::connect(&api).expect("the API accepts");
    let mut partial = std::net::TcpStream::connect(&api).expect("the API accepts");
    let started = std::time::Instant::now();
    write!(
        partial,
        "PUT /script HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/toml\r\nContent-Length: 40\r\nConnection: close\r\n\r\nprofile ="
    )
    .expect("sent");
    write!(idle, "GET /etrn HTTP/1.1\r\nHost: {api}\r\n\r\n").expect("sent");
    idle.set_read_timeout(Some(bound)).expect("timeout");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.ends_with(b"[]") {
        let n = idle.read(&mut chunk).expect("the answer");
        assert!(
            n > 0,
            "closed before answering: {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&chunk[..n]);
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    partial.set_read_timeout(Some(bound)).expect("timeout");
    let mut answer = String::new();
    let _ = partial.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(
        started.elapsed() >= etrn_harness::api::BODY_READ_TIMEOUT - Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    json_error(answer.split_once("\r\n\r\n").map_or("", |(_, b)| b));
    for (what, mut c) in [("silent", silent), ("idle", idle)] {
        c.set_read_timeout(Some(bound)).expect("timeout");
        let closed = match c.read(&mut chunk) {
            Ok(0) => true,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => true,
            Ok(n) => panic!(
                "{what}: unexpected {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ),
            Err(e) => panic!("{what}: still open after {:?}: {e}", started.elapsed()),
        };
        assert!(closed);
        let after = started.elapsed();
        assert!(
            after >= limit - Duration::from_secs(1) && after < bound,
            "{what}: closed after {after:?}"
        );
    }
}

#[test]
fn a_large_body_is_refused_and_no_error_echoes_the_request() {
    let mut serve = Serve::spawn(&["--api", "127.0.0.1:0"]);
    let api = api_of(&mut serve);
    // Declared too large: refused before a byte of it is read.
    let (status, body) = exchange(
        &api,
        &format!(
            "PUT /script HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/toml\r\nContent-Length: 1800000\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 413, "{body}");
    json_error(&body);
    // A long invalid line within the cap: the answer places it, never quotes it whole.
    let line = format!("etrn_default = \"{}", "x".repeat(60_000));
    let (status, body) = http(&api, "PUT", "/script", &line);
    assert_eq!(status, 422, "{}", &body[..body.len().min(500)]);
    assert!(body.len() < 600, "{} bytes: {}", body.len(), &body[..500]);
    let error = json_error(&body)["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(error.starts_with("line 1, column"), "{error}");
    assert!(!error.contains("xxxxxxxxxx"), "{error}");
    // A request head beyond 16 KiB is refused, in JSON.
    let (status, big_head_body) = exchange(
        &api,
        &format!(
            "GET / HTTP/1.1\r\nHost: {api}\r\nX-Padding: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(20_000)
        ),
    );
    assert_eq!(status, 431);
    json_error(&big_head_body);
    let key = "k".repeat(5000);
    let (status, body) = http(&api, "GET", &format!("/etrn?{key}=1"), "");
    assert_eq!(status, 400);
    assert!(
        json_error(&body)["error"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .count()
            <= 200
    );
}

#[test]
fn a_request_that_is_not_http_or_whose_head_is_too_long_gets_a_json_error() {
    let mut serve = Serve::spawn(&["--api", "127.0.0.1:0"]);
    let api = api_of(&mut serve);
    let good = format!("GET /etrn HTTP/1.1\r\nHost: {api}\r\n\r\n");
    let cases = [
        // Not HTTP at all: a TLS client hello, an SMTP client, an HTTP/2 preface.
        (
            "\u{16}\u{3}\u{1}\u{2}\u{0}\u{1}\u{0}\u{1}\u{fc}\u{3}\u{3}".to_owned(),
            400,
        ),
        ("EHLO client.example\r\n\r\n".to_owned(), 400),
        ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_owned(), 400),
        (
            format!("PUT /script HTTP/1.1\r\nHost: {api}\r\nContent-Length: 1x\r\n\r\n"),
            400,
        ),
        // A head beyond 16 KiB, in its request line or in a header, and one never ended.
        (
            format!(
                "GET /{} HTTP/1.1\r\nHost: {api}\r\n\r\n",
                "p".repeat(20_000)
            ),
            431,
        ),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: {api}\r\nX-Padding: {}\r\n\r\n",
                "a".repeat(20_000)
            ),
            431,
        ),
        (format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(17_000)), 431),
    ];
    for (request, expected) in &cases {
        let (status, head, body) = exchange_with_head(&api, request);
        assert_eq!(status, *expected, "{:?}: {head}", &request[..20]);
        json_error(&body);
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(body.len() < 300, "{body}");
    }
    // After a good request on the same connection: the good one is answered, then the error.
    let (status, _, body) = exchange_with_head(&api, &format!("{good}garbage\r\n\r\n"));
    assert_eq!(status, 200);
    let (first, rest) = body
        .split_once("HTTP/1.1 400 Bad Request\r\n")
        .unwrap_or_else(|| panic!("no second answer: {body:?}"));
    assert_eq!(first, "[]");
    json_error(rest.split_once("\r\n\r\n").map_or("", |(_, b)| b));
    // A chunked body's end is not followed: it is answered, and its answer closes the connection,
    // so no head after it goes unchecked.
    let (status, head, body) = exchange_with_head(
        &api,
        &format!(
            "PUT /script HTTP/1.1\r\nHost: {api}\r\nContent-Type: application/toml\r\nTransfer-Encoding: chunked\r\n\r\n13\r\nprofile = \"postfix\"\r\n0\r\n\r\n{good}"
        ),
    );
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(!body.contains("HTTP/1.1"), "a second answer: {body}");
    // A body is a body, not a head: a PUT whose body is not HTTP is judged as a script.
    let (status, body) = http(&api, "PUT", "/script", "\u{16}\u{3}\u{1} not TOML\r\n\r\n");
    assert_eq!(status, 422, "{body}");
}

#[test]
fn an_api_client_that_never_reads_its_answer_is_closed_at_the_write_deadline() {
    use std::io::{Read, Write};
    let (mut serve, log) = Serve::spawn_logged(
        &[
            "--api",
            "127.0.0.1:0",
            "--events",
            "none",
            "--api-write-timeout",
            "1",
        ],
        "etrn_harness::api=debug",
    );
    let api = api_of(&mut serve);
    // One session of many commands: a recording of tens of megabytes, more than the loopback
    // buffers of both ends hold.
    let noops = "NOOP\r\n".repeat(60_000);
    talk(&serve.addr, format!("EHLO c\r\n{noops}QUIT\r\n").as_bytes());
    let mut reader = std::net::TcpStream::connect(&api).expect("the API accepts");
    write!(
        reader,
        "GET /recording?sessions=1 HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n"
    )
    .expect("sent");
    // The server says when it gave up on the client; only then does the client read.
    loop {
        let line = log
            .recv_timeout(WAIT)
            .expect("the log says the connection was closed");
        if line.contains("API connection closed") {
            assert!(line.contains("write deadline"), "{line}");
            break;
        }
    }
    reader.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut got = Vec::new();
    let _ = reader.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{:?}",
        &text[..text.len().min(80)]
    );
    // Cut: the chunked answer never reached its last, empty chunk.
    assert!(!text.ends_with("\r\n0\r\n\r\n"), "the whole answer came");
    // The API serves on.
    let (status, _) = http(&api, "GET", "/etrn", "");
    assert_eq!(status, 200);
}

#[test]
fn unknown_paths_wrong_methods_and_bad_queries_are_answered_in_json() {
    let mut serve = Serve::spawn(&["--api", "127.0.0.1:0"]);
    let api = api_of(&mut serve);
    for (method, path, expected) in [
        ("GET", "/nowhere", 404),
        ("GET", "/reset", 405),
        ("DELETE", "/script", 405),
        ("GET", "/etrn?timeout=soon", 400),
        ("GET", "/recording?timeout=-1", 400),
        ("GET", "/etrn?wiat=a.example", 400),
        ("GET", "/etrn?sessions=many", 400),
        ("GET", "/etrn?wait=", 400),
        ("GET", "/etrn?foo=1", 400),
        ("PUT", "/profile/nope", 404),
    ] {
        let (status, body) = http(&api, method, path, "");
        assert_eq!(status, expected, "{method} {path}: {body}");
        json_error(&body);
    }
    // A bad parameter is named, and the fix lists every parameter there is.
    let error = |path: &str| json_error(&http(&api, "GET", path, "").1);
    let e = error("/etrn?timeout=soon");
    assert_eq!(
        e["error"],
        "timeout=soon is not a number of seconds from 0 to 300"
    );
    let e = error("/etrn?sessions=many");
    assert_eq!(e["error"], "sessions=many is not a number of sessions");
    // An empty wait is answered at once (no 10 s default wait), naming the parameter.
    let e = error("/etrn?wait=");
    assert_eq!(e["error"], "wait= is empty: no domain to wait for");
    let e = error("/etrn?foo=1");
    let (message, fix) = (
        e["error"].as_str().expect("text"),
        e["fix"].as_str().expect("text"),
    );
    assert!(
        message.starts_with("the query does not parse: ")
            && message.contains("unknown field `foo`"),
        "{message}"
    );
    for parameter in ["wait=", "sessions=", "timeout=", "after=", "limit="] {
        assert!(fix.contains(parameter), "{parameter}: {fix}");
    }
    // The profiles a 404 offers are every shipped profile.
    let e = json_error(&http(&api, "PUT", "/profile/nope", "").1);
    let fix = e["fix"].as_str().expect("text");
    for profile in etrn_harness::proto::ProfileName::ALL {
        assert!(fix.contains(profile.as_str()), "{profile:?}: {fix}");
    }
}

#[test]
fn a_wait_pending_when_serve_stops_is_answered_503() {
    let (mut serve, log) =
        Serve::spawn_logged(&["--api", "127.0.0.1:0"], "etrn_harness::api=debug");
    let api = api_of(&mut serve);
    let asking = api.clone();
    let (tx, answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(http(
            &asking,
            "GET",
            "/etrn?wait=never.example&timeout=60",
            "",
        ));
    });
    // The server's own log says when the wait is pending: then the signal.
    loop {
        let line = log
            .recv_timeout(WAIT)
            .expect("the log says the request waits");
        if line.contains("waits for an ETRN") {
            break;
        }
    }
    sigterm(&serve.child);
    let (status, body) = answer.recv_timeout(WAIT).expect("the wait is answered");
    assert_eq!(status, 503, "{body}");
    assert_eq!(json_error(&body)["error"], "the server is stopping");
    assert!(serve.child.wait().expect("exits").success());
}

#[test]
fn an_api_beyond_loopback_is_served_with_a_warning() {
    let (mut serve, log) = Serve::spawn_logged(&["--api", "0.0.0.0:0"], "warn");
    // The line for people is a URL that works: loopback, not the unspecified address.
    let line = serve.next_line();
    let port = line
        .strip_prefix("api on http://127.0.0.1:")
        .unwrap_or_else(|| panic!("unexpected second line {line:?}"))
        .to_owned();
    let api = format!("127.0.0.1:{port}");
    let (status, body) = http(&api, "GET", "/etrn", "");
    assert_eq!((status, body.as_str()), (200, "[]"));
    // The warning is said once, as a `warning:` line, not also as a log event: all of stderr is
    // read, to its end when serve has stopped.
    sigterm(&serve.child);
    let mut said = Vec::new();
    while let Ok(line) = log.recv_timeout(WAIT) {
        said.push(line);
    }
    assert!(serve.child.wait().expect("exits").success());
    let warnings: Vec<&String> = said
        .iter()
        .filter(|l| l.contains("no authentication"))
        .collect();
    assert_eq!(warnings.len(), 1, "{said:#?}");
    assert!(
        warnings[0].starts_with(&format!("warning: the API on 0.0.0.0:{port} ")),
        "{said:#?}"
    );
}

#[tokio::test]
async fn a_last_line_the_client_never_ended_is_in_the_recording() {
    let host = start("").await;
    let mut c = TcpStream::connect(host.addr()).await.expect("connect");
    c.write_all(b"EHLO c\r\nETRN a.exa").await.expect("write");
    c.shutdown().await.expect("half-close");
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, c.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .expect("read");
    let r = host
        .recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .expect("the session closes");
    let kept: Vec<&[u8]> = r.sessions[0]
        .events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Unterminated { raw } => Some(raw.as_slice()),
            _ => None,
        })
        .collect();
    assert_eq!(kept, [b"ETRN a.exa".as_slice()]);
    assert!(r.sessions[0].etrn.is_empty(), "never acted on");
}

#[test]
fn a_refused_auths_pipelined_response_reaches_no_output_of_serve() {
    let dir = tempfile::tempdir().expect("temp dir");
    let record = dir.path().join("r.jsonl");
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(["serve", "--listen", "127.0.0.1:0", "--events", "jsonl"])
        .args(["--api", "127.0.0.1:0"])
        .arg("--record")
        .arg(&record)
        .env("RUST_LOG", "etrn_harness=trace")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("serve starts");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = || lines.recv_timeout(WAIT).expect("a line from serve");
    let first: serde_json::Value = serde_json::from_str(&next()).expect("JSON");
    // One ready object: the SMTP address, the API's, and the recording's path.
    let addr = first["smtp"].as_str().expect("address").to_owned();
    let api = first["api"].as_str().expect("api").to_owned();
    assert_eq!(first["api_url"], format!("http://{api}"));
    assert_eq!(first["record"], record.display().to_string());
    // rfc1985 offers no AUTH: the AUTH is refused, its pipelined response read as a line.
    talk(
        &addr,
        b"EHLO c\r\nAUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nETRN a.example\r\nQUIT\r\n",
    );
    let (status, recording) = http(&api, "GET", "/recording?sessions=1", "");
    assert_eq!(status, 200, "{recording}");
    sigterm(&child);
    let mut feed = String::new();
    loop {
        let line = next();
        feed.push_str(&line);
        if line.contains("\"event\":\"stopped\"") {
            break;
        }
    }
    let status = exit_within_wait(child, "serve did not stop on SIGTERM");
    assert!(status.success(), "{status}");
    let stream = std::fs::read_to_string(&record).expect("the recording");
    let logged = std::fs::read_to_string(&log).expect("the log");
    assert!(logged.contains("C:"), "the debug log shows command lines");
    for (what, text) in [
        ("the API", &recording),
        ("the live feed", &feed),
        ("the recording", &stream),
        ("the log", &logged),
    ] {
        assert!(
            !text.contains("AGFsaWNl") && !text.to_ascii_uppercase().contains("AGFSAWNL"),
            "{what} holds the credential: {text}"
        );
        assert!(text.contains("[redacted]"), "{what}: {text}");
    }
}

#[test]
fn replay_shows_and_logs_no_credential_a_client_sends() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cassette = dir.path().join("auth.cassette");
    std::fs::write(
        &cassette,
        "etrn-harness cassette v1\n1 session\n1 S: 220 up ESMTP\n1 C: EHLO c\n1 S: 250-up\n1 S: 250 AUTH PLAIN\n1 C: AUTH PLAIN\n1 S: 334 \n1 C: [redacted]\n1 S: 235 ok\n1 C: QUIT\n1 S: 221 bye\n1 end quit\n",
    )
    .expect("cassette");
    let log = dir.path().join("stderr.log");
    let (child, mut stdout, first) = first_line(
        Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
            .args([
                "replay",
                "--listen",
                "127.0.0.1:0",
                "--exit-after-sessions",
                "1",
            ])
            .arg("--cassette")
            .arg(&cassette)
            .env("RUST_LOG", "etrn_harness=trace")
            .stderr(std::fs::File::create(&log).expect("log file")),
    );
    let addr = first
        .split_whitespace()
        .last()
        .expect("the address")
        .to_owned();
    // Another mechanism with an initial response (a mismatch), then responses behind it.
    talk(
        &addr,
        b"EHLO c\r\nAUTH LOGIN dXNlcm5hbWU=\r\nc2VjcmV0cGFzcw==\r\nQUIT\r\n",
    );
    let mut shown = String::new();
    let _ = std::io::Read::read_to_string(&mut stdout, &mut shown);
    let status = exit_within_wait(child, "replay did not stop after its session");
    assert!(status.code().is_some(), "{status}");
    let logged = std::fs::read_to_string(&log).expect("the log");
    assert!(shown.contains("mismatch"), "{shown}");
    for (what, text) in [("stdout", &shown), ("the log", &logged)] {
        for secret in [
            "dXNlcm5hbWU",
            "c2VjcmV0cGFzcw",
            "DXNLCM5HBWU",
            "C2VJCMV0CGFZCW",
        ] {
            assert!(!text.contains(secret), "{what} holds {secret}: {text}");
        }
    }
    assert!(shown.contains("[redacted]"), "{shown}");
}

#[tokio::test]
async fn credentials_pipelined_after_a_421_are_recorded_redacted() {
    let r =
        talked_past_a_421_greeting(b"AUTH LOGIN\r\ndXNlcm5hbWU=\r\nc2VjcmV0cGFzcw==\r\nQUIT\r\n")
            .await;
    let (after, _) = after_close_and_unawaited(&r.sessions[0]);
    assert_eq!(after, ["AUTH LOGIN", "[redacted]", "[redacted]", "QUIT"]);
}

#[test]
fn replay_whose_stdout_is_not_read_still_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cassette = dir.path().join("c.cassette");
    std::fs::write(
        &cassette,
        "etrn-harness cassette v1\n1 session\n1 S: 220 up ESMTP\n1 C: QUIT\n1 S: 221 bye\n1 end quit\n",
    )
    .expect("cassette");
    let (child, stdout, first) = first_line(
        Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
            .args(["replay", "--listen", "127.0.0.1:0"])
            .arg("--cassette")
            .arg(&cassette)
            .stderr(Stdio::null()),
    );
    // Like `Popen(stdout=PIPE)` that reads one line and no more.
    let addr = first
        .split_whitespace()
        .last()
        .expect("the address")
        .to_owned();
    // Each unknown command is a mismatch line of about 120 octets: far more than a pipe holds.
    let flood = b"NOOP padding-padding-padding-padding\r\n".repeat(2000);
    let mut input = flood.clone();
    input.extend_from_slice(b"QUIT\r\n");
    talk(&addr, &input);
    sigterm(&child);
    let status = exit_within_wait(
        child,
        "replay did not stop on SIGTERM with its stdout unread",
    );
    assert!(status.code().is_some(), "{status}");
    drop(stdout);
}

/// Sends SIGTERM to `child` (it must be sent).
fn sigterm(child: &std::process::Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
}

/// Starts `command` with its stdout piped and reads the first line (the address it listens
/// on); the rest of stdout is the caller's, to read or, on purpose, to leave unread.
fn first_line(
    command: &mut Command,
) -> (
    std::process::Child,
    BufReader<std::process::ChildStdout>,
    String,
) {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("the first line");
    (child, stdout, first)
}

/// One SMTP session by Python's smtplib: EHLO, `ETRN domain`, QUIT.
fn smtplib_etrn(addr: &str, domain: &str) {
    let (host, port) = addr.rsplit_once(':').expect("HOST:PORT");
    let program = format!(
        "import smtplib\n\
         s = smtplib.SMTP('{host}', {port}, timeout=10)\n\
         s.ehlo('client.example')\n\
         assert s.docmd('ETRN', '{domain}')[0] == 250\n\
         s.quit()\n"
    );
    let child = Command::new("python3")
        .arg("-c")
        .arg(program)
        .spawn()
        .expect("python runs");
    let status = exit_within_wait(child, "smtplib did not finish");
    assert!(status.success(), "{status}");
}

#[test]
fn the_recording_command_gives_what_get_recording_answers_and_the_stop_line_tells_of_a_reset() {
    if !common::peer_available("python3", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let record = dir.path().join("rec.jsonl");
    let record_arg = record.to_string_lossy().into_owned();
    let mut serve = Serve::spawn(&["--api", "127.0.0.1:0", "--record", &record_arg]);
    let api = api_of(&mut serve);
    // Session 1 closes before the reset: the reset forgets it.
    talk(&serve.addr, b"EHLO c\r\nETRN a.example\r\nQUIT\r\n");
    let (status, body) = http(&api, "GET", "/recording?sessions=1&timeout=5", "");
    assert_eq!(status, 200, "{body}");
    // Session 2 is open across the reset: it stays, with what it sends after.
    let mut open = std::net::TcpStream::connect(&serve.addr).expect("connect");
    open.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut greeting = BufReader::new(open.try_clone().expect("clone"));
    let mut line = String::new();
    greeting.read_line(&mut line).expect("greeting");
    assert!(line.starts_with("220 "), "{line}");
    let (status, body) = exchange(
        &api,
        &format!("POST /reset HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!((status, body.as_str()), (200, r#"{"reset":true}"#));
    smtplib_etrn(&serve.addr, "b.example");
    {
        use std::io::{Read, Write};
        open.write_all(b"EHLO c\r\nETRN c.example\r\nQUIT\r\n")
            .expect("write");
        let mut rest = String::new();
        let _ = greeting.read_to_string(&mut rest);
        assert!(
            rest.contains("250 OK, queuing for node c.example"),
            "{rest}"
        );
    }
    let (status, from_api) = http(&api, "GET", "/recording?sessions=2&timeout=5", "");
    assert_eq!(status, 200, "{from_api}");
    let document: serde_json::Value = serde_json::from_str(&from_api).expect("JSON");
    let ids = session_ids(&document);
    assert_eq!(ids, [2, 3], "{from_api}");
    sigterm(&serve.child);
    let out = serve.lines_until("stopped (").join("\n");
    assert!(serve.child.wait().expect("exits").success());
    // The lines above show three sessions and three ETRN; the recording holds two of each.
    assert!(
        out.contains(
            "stopped (terminated): 2 session(s), 2 ETRN since the last reset (3 session(s), 3 ETRN in all)"
        ),
        "{out}"
    );
    assert!(!out.contains("fell behind"), "{out}");
    // The stream turned into the document is what the API answered, byte for byte.
    let converted = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .arg("recording")
        .arg(&record)
        .output()
        .expect("runs");
    assert!(
        converted.status.success(),
        "{}",
        String::from_utf8_lossy(&converted.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&converted.stdout),
        format!("{from_api}\n")
    );
    // A file that is no stream: exit 2, the line named, its text not shown.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"recording\":\"etrn-harness\",\"stream_version\":1}\nAUTH secret\n",
    )
    .expect("write");
    let refused = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .arg("recording")
        .arg(&bad)
        .output()
        .expect("runs");
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("bad.jsonl:2: not a JSON object"), "{err}");
    assert!(!err.contains("secret"), "{err}");
    assert!(refused.stdout.is_empty());
    // A folder (and so a FIFO or a device) is refused unread.
    let folder = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .arg("recording")
        .arg(dir.path())
        .output()
        .expect("runs");
    assert_eq!(folder.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&folder.stderr).contains("is not a regular file"),
        "{}",
        String::from_utf8_lossy(&folder.stderr)
    );
}

#[test]
fn the_live_feed_sends_each_event_as_a_named_server_sent_event_and_ends_when_serve_stops() {
    use std::io::{Read, Write};
    let mut serve = Serve::spawn(&["--api", "127.0.0.1:0", "--events", "none"]);
    let api = api_of(&mut serve);
    let mut feed = std::net::TcpStream::connect(&api).expect("the API accepts");
    feed.set_read_timeout(Some(WAIT)).expect("timeout");
    feed.write_all(format!("GET /events HTTP/1.1\r\nHost: {api}\r\n\r\n").as_bytes())
        .expect("request");
    // Read until `until` holds: every read is bounded by WAIT, a silent feed fails the test.
    let mut received = Vec::new();
    let mut read_until = |until: &dyn Fn(&str) -> bool| loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if until(&text) {
            return text;
        }
        let mut piece = [0u8; 4096];
        match feed.read(&mut piece) {
            Ok(0) => return text,
            Ok(n) => received.extend_from_slice(&piece[..n]),
            Err(e) => panic!("the feed went silent: {e}; so far {text:?}"),
        }
    };
    // The head is sent once the feed is subscribed: what happens from now on is in it.
    let head = read_until(&|t| t.contains("\r\n\r\n"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    for n in 1..=3 {
        talk(
            &serve.addr,
            format!("EHLO c\r\nETRN feed{n}.example\r\nQUIT\r\n").as_bytes(),
        );
    }
    read_until(&|t| t.matches("event: closed").count() == 3);
    // The feed ends when serve stops: the body's last chunk, then the end of the connection.
    sigterm(&serve.child);
    let all = read_until(&|t| t.ends_with("0\r\n\r\n"));
    let (_, body) = all.split_once("\r\n\r\n").expect("a head and a body");
    let body = dechunked(body).unwrap_or_else(|| panic!("not a whole chunked body: {body:?}"));
    let events: Vec<(&str, serde_json::Value)> = body
        .split_terminator("\n\n")
        .map(|event| {
            let (name, data) = event
                .strip_prefix("event: ")
                .and_then(|e| e.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("not one named event of one data line: {event:?}"));
            let data = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data:?}"));
            (name, data)
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "opened").count(),
        3,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "closed").count(),
        3,
        "{names:?}"
    );
    assert!(!names.contains(&"missed"), "{names:?}");
    // Each data is the line `--events jsonl` prints: the ETRNs with their domains, in order.
    let etrn: Vec<&str> = events
        .iter()
        .filter(|(name, data)| *name == "event" && data["event"] == "etrn")
        .filter_map(|(_, data)| data["domain"].as_str())
        .collect();
    assert_eq!(
        etrn,
        ["feed1.example", "feed2.example", "feed3.example"],
        "{body}"
    );
    assert!(serve.child.wait().expect("exits").success());
}
