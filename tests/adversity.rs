//! The smart host under adversity, on loopback and bounded in time: a client that never reads, a
//! slowloris, a connection flood past the cap, and a shutdown under each of them and under a
//! scripted delay and a stalled TLS handshake; and the recording proxy held to the same promises
//! (a shutdown with a client that never reads, a cap with `421`). Each test asserts that the server stays responsive,
//! that its shutdown finishes, and that the recording holds every session with its close reason.

use std::time::Duration;

use etrn_harness::proto::{CloseReason, SessionLimits};
use etrn_harness::proto::{Recording, SmartHostScript};
use etrn_harness::smarthost::{SmartHost, SmartHostConfig};
use etrn_harness::wire::Verb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The bound on every wait of these tests: far above what each should take.
const WAIT: Duration = Duration::from_secs(20);

fn config(script: &str, idle: Duration) -> SmartHostConfig {
    let script: SmartHostScript = toml::from_str(script).expect("valid script");
    let mut config = SmartHostConfig::with_script(script);
    config.limits.idle_timeout = idle;
    config
}

async fn start(config: SmartHostConfig) -> SmartHost {
    SmartHost::start(config).await.expect("smart host starts")
}

/// Shuts the host down, failing the test if that does not finish in time.
async fn shut(host: SmartHost) -> Recording {
    tokio::time::timeout(WAIT, host.shutdown())
        .await
        .expect("the shutdown finishes")
}

/// A full, polite session: proof that the server still serves.
async fn still_serves(host: &SmartHost) {
    let mut c = TcpStream::connect(host.addr()).await.expect("connect");
    c.write_all(b"EHLO c\r\nETRN ok.example\r\nQUIT\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    tokio::time::timeout(WAIT, c.read_to_string(&mut out))
        .await
        .expect("answered in time")
        .expect("read");
    assert!(out.starts_with("220 "), "{out}");
    assert!(out.contains("221 "), "{out}");
}

/// Connects and pipelines ETRN commands without ever reading a reply, until the server stops
/// taking them (its own writes blocked) or `limit` octets went out.
async fn never_reads(addr: std::net::SocketAddr, limit: usize) -> tokio::task::JoinHandle<usize> {
    never_reads_until_blocked(addr, limit).await.0
}

/// [`never_reads`], also saying (with the octets sent) when its writes stopped going through.
async fn never_reads_until_blocked(
    addr: std::net::SocketAddr,
    limit: usize,
) -> (
    tokio::task::JoinHandle<usize>,
    tokio::sync::oneshot::Receiver<usize>,
) {
    let mut c = TcpStream::connect(addr).await.expect("connect");
    let (blocked, said) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let chunk = b"ETRN a.example\r\n".repeat(4096);
        let mut sent = 0;
        while sent < limit {
            match tokio::time::timeout(Duration::from_secs(2), c.write_all(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len(),
                // Blocked (the server stopped reading) or closed: either way, stop.
                _ => break,
            }
        }
        let _ = blocked.send(sent);
        // Hold the socket open, its replies unread, until the test is done with it.
        let _ = tokio::time::timeout(WAIT, std::future::pending::<()>()).await;
        drop(c);
        sent
    });
    (task, said)
}

/// Connects past a cap: the server says `421` and closes, in time.
async fn refused_at_connect(addr: std::net::SocketAddr) {
    let mut c = TcpStream::connect(addr).await.expect("connect");
    let mut out = String::new();
    tokio::time::timeout(WAIT, c.read_to_string(&mut out))
        .await
        .expect("refused in time")
        .expect("read");
    assert!(out.starts_with("421 "), "{out}");
}

fn close_of(r: &Recording, session: usize) -> Option<CloseReason> {
    r.sessions.get(session).and_then(|s| s.close.clone())
}

/// A script whose every ETRN reply is twenty lines: the replies to a client that does not read
/// fill the socket buffers after a few thousand ETRNs, not a hundred thousand, so these tests
/// cost little and stay well inside [`WAIT`] on a loaded machine.
fn long_replies() -> String {
    let reply = format!("250 {}", vec!["x".repeat(70); 20].join("\\n"));
    format!("etrn_default = \"{reply}\"")
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_by_the_write_deadline() {
    let host = start(config(&long_replies(), Duration::from_secs(1))).await;
    let client = never_reads(host.addr(), 64 << 20).await;
    let r = host
        .recorder()
        .wait_until("the reader-less session to close", WAIT, |r| {
            close_of(r, 0).is_some()
        })
        .await
        .expect("the session is closed in time");
    assert_eq!(close_of(&r, 0), Some(CloseReason::WriteTimeout));
    assert!(r.sessions[0].etrn.len() > 1000, "it served until then");
    still_serves(&host).await;
    client.abort();
    let r = shut(host).await;
    assert!(r.sessions.iter().all(|s| s.close.is_some()));
}

#[tokio::test]
async fn a_shutdown_finishes_while_a_client_never_reads() {
    // A long idle timeout: only the shutdown can end the blocked write.
    let host = start(config(&long_replies(), Duration::from_secs(300))).await;
    let client = never_reads(host.addr(), 64 << 20).await;
    host.recorder()
        .wait_until("many ETRNs", WAIT, |r| {
            r.sessions.first().is_some_and(|s| s.etrn.len() > 1000)
        })
        .await
        .expect("the flood arrives");
    let r = shut(host).await;
    assert_eq!(close_of(&r, 0), Some(CloseReason::Shutdown));
    client.abort();
}

#[tokio::test]
async fn a_slowloris_gets_no_more_time_than_a_silent_client() {
    let host = start(config("", Duration::from_secs(1))).await;
    let mut c = TcpStream::connect(host.addr()).await.expect("connect");
    let drip = tokio::spawn(async move {
        // One byte every 200 ms, never a line end: each read is in time, no line ever is.
        let mut ticks = tokio::time::interval(Duration::from_millis(200));
        let mut got = Vec::new();
        for byte in b"EHLO slow.example-and-so-on-and-so-forth"
            .iter()
            .cycle()
            .take(100)
        {
            ticks.tick().await;
            if c.write_all(&[*byte]).await.is_err() {
                break;
            }
            let mut buf = [0u8; 512];
            if let Ok(Ok(n)) = tokio::time::timeout(Duration::ZERO, c.read(&mut buf)).await {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    });
    let r = host
        .recorder()
        .wait_until("the slowloris to be cut off", WAIT, |r| {
            close_of(r, 0).is_some()
        })
        .await
        .expect("closed in time");
    assert_eq!(close_of(&r, 0), Some(CloseReason::IdleTimeout));
    // Ended well before the 100 bytes (20 s) it would have dripped.
    let seen = tokio::time::timeout(WAIT, drip)
        .await
        .expect("the client notices")
        .expect("joined");
    assert!(seen.contains("421 "), "{seen}");
    still_serves(&host).await;
    shut(host).await;
}

#[tokio::test]
async fn a_flood_past_the_cap_is_refused_and_the_server_recovers() {
    let host = start(SmartHostConfig {
        max_connections: 4,
        ..config("", Duration::from_secs(30))
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = TcpStream::connect(host.addr()).await.expect("connect");
        let mut greeting = [0u8; 4];
        c.read_exact(&mut greeting).await.expect("greeted");
        assert_eq!(&greeting, b"220 ");
        held.push(c);
    }
    for _ in 0..40 {
        refused_at_connect(host.addr()).await;
    }
    drop(held);
    host.recorder()
        .wait_until("the held sessions to close", WAIT, |r| {
            r.closed_sessions() == 4
        })
        .await
        .expect("every held session closes");
    still_serves(&host).await;
    let r = shut(host).await;
    // Refusals are counted apart: they are no sessions (and no --exit-after-sessions).
    assert_eq!(r.refused, 40);
    assert_eq!(r.sessions.len(), 5);
    assert!(r.sessions.iter().all(|s| s.close.is_some()));
}

#[tokio::test]
async fn a_shutdown_ends_a_scripted_delay_at_once() {
    // Ten minutes before this reply: the shutdown must not wait for it.
    let host = start(config(
        "etrn_default = { reply = \"250 OK\", delay_ms = 600000 }",
        Duration::from_secs(300),
    ))
    .await;
    let mut c = TcpStream::connect(host.addr()).await.expect("connect");
    c.write_all(b"EHLO c\r\nETRN a.example\r\n")
        .await
        .expect("write");
    host.recorder()
        .wait_for_etrn("a.example", WAIT)
        .await
        .expect("the ETRN arrives");
    let r = shut(host).await;
    assert_eq!(close_of(&r, 0), Some(CloseReason::Shutdown));
    assert_eq!(r.sessions[0].etrn.len(), 1);
}

#[tokio::test]
async fn a_shutdown_ends_a_stalled_tls_handshake() {
    let host = start(SmartHostConfig {
        limits: SessionLimits {
            starttls: true,
            ..SessionLimits::default()
        },
        ..config("", Duration::from_secs(300))
    })
    .await;
    let mut c = TcpStream::connect(host.addr()).await.expect("connect");
    c.write_all(b"EHLO c\r\nSTARTTLS\r\n").await.expect("write");
    host.recorder()
        .wait_until("STARTTLS accepted", WAIT, |r| {
            r.sessions.first().is_some_and(|s| {
                s.commands
                    .iter()
                    .any(|c| c.verb == Verb::StartTls && c.reply.is_some())
            })
        })
        .await
        .expect("STARTTLS is answered");
    // The client never sends its ClientHello.
    let r = shut(host).await;
    assert_eq!(close_of(&r, 0), Some(CloseReason::Shutdown));
    drop(c);
}

/// `etrn-harness serve` with a small descriptor limit: it runs out of descriptors, backs off
/// instead of spinning on `accept`, and serves again once descriptors come back.
#[test]
fn out_of_descriptors_the_accept_loop_backs_off_and_recovers() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().expect("temp dir");
    let record = dir.path().join("r.json");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 40 && exec '{}' serve --listen 127.0.0.1:0 --quiet --log-format json --record '{}'",
            env!("CARGO_BIN_EXE_etrn-harness"),
            record.display()
        ))
        .env("RUST_LOG", "etrn_harness=warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("a first line");
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let (tx, warnings) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // More connections than the server has descriptors: the rest wait in the backlog.
    let held: Vec<std::net::TcpStream> = (0..60)
        .map(|_| std::net::TcpStream::connect(&addr).expect("connect"))
        .collect();
    // The loop waits 10, 20, 40, 80 ms ... between failed accepts: wait for a doubled backoff.
    let mut backoffs = Vec::new();
    // One deadline for the whole wait: a loop that spins would log without end.
    let deadline = std::time::Instant::now() + WAIT;
    let outcome = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match warnings.recv_timeout(left) {
            Ok(line) => {
                let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if let Some(ms) = json["fields"]["backoff_ms"].as_u64() {
                    backoffs.push(ms);
                    if ms >= 80 {
                        break Ok(());
                    }
                }
            }
            Err(e) => break Err(e),
        }
    };
    if let Err(e) = outcome {
        let _ = child.kill();
        panic!("no growing backoff within {WAIT:?} ({e}); saw {backoffs:?}");
    }
    assert!(
        backoffs.windows(2).all(|w| w[1] >= w[0]),
        "the backoff grows: {backoffs:?}"
    );
    // Descriptors come back when the held connections close; then a new client is served.
    drop(held);
    let mut c = std::net::TcpStream::connect(&addr).expect("connect");
    c.set_read_timeout(Some(WAIT)).expect("timeout");
    c.write_all(b"EHLO c\r\nETRN a.example\r\nQUIT\r\n")
        .expect("write");
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    assert!(out.starts_with("220 "), "{out}");
    assert!(out.contains("221 "), "{out}");
    // A graceful stop still writes the whole recording.
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success());
    let mut rest = String::new();
    let _ = stdout.read_to_string(&mut rest);
    let status = child.wait().expect("exits");
    assert!(status.success(), "{rest}");
    let text = std::fs::read_to_string(&record).expect("recording written");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let opened = lines.iter().filter(|l| !l["opened"].is_null()).count();
    let closed = lines.iter().filter(|l| !l["closed"].is_null()).count();
    assert!(opened > 1, "{text}");
    assert_eq!(opened, closed, "every session closed");
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "etrn" && l["domain"] == "a.example"),
        "the last client's ETRN is there"
    );
}

// ----- the recording proxy -----

/// A recorder in front of a private smart host, into a cassette in `dir`.
async fn recorder(
    dir: &std::path::Path,
    max_connections: usize,
) -> (
    SmartHost,
    etrn_harness::smarthost::ServerHandle,
    std::path::PathBuf,
) {
    // Long replies fill the way to a client that does not read long before its commands fill
    // the way up.
    let upstream = start(config(&long_replies(), Duration::from_secs(300))).await;
    let path = dir.join("c.cassette");
    let proxy = etrn_harness::cassette::RecordingProxy::start_with(
        "127.0.0.1:0".parse().expect("addr"),
        upstream.addr(),
        &path,
        etrn_harness::cassette::TlsMode::Passthrough,
        max_connections,
    )
    .await
    .expect("the recorder starts");
    (upstream, proxy, path)
}

#[tokio::test]
async fn the_recorder_stops_in_time_while_a_client_never_reads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (upstream, proxy, path) = recorder(dir.path(), 10).await;
    let (client, blocked) = never_reads_until_blocked(proxy.addr(), 64 << 20).await;
    // The client's own writes stopped going through: every buffer on the way is full, and the
    // proxy's relay writes (to the client, and so to the upstream) are blocked.
    let sent = tokio::time::timeout(WAIT, blocked)
        .await
        .expect("the flood fills the buffers in time")
        .expect("the client says so");
    assert!(sent < 64 << 20, "the proxy took everything: {sent}");
    // The stop still ends the session, after the grace.
    tokio::time::timeout(WAIT, proxy.stop())
        .await
        .expect("the recorder's shutdown finishes");
    client.abort();
    let text = std::fs::read_to_string(&path).expect("the cassette");
    assert!(
        text.lines().any(|l| l == "1 end recorder-stopped"),
        "{}",
        text.lines().last().unwrap_or_default()
    );
    shut(upstream).await;
}

#[tokio::test]
async fn the_recorder_refuses_connections_past_its_cap_with_421() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (upstream, proxy, path) = recorder(dir.path(), 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(proxy.addr()).await.expect("connect");
        let mut greeting = [0u8; 4];
        tokio::time::timeout(WAIT, c.read_exact(&mut greeting))
            .await
            .expect("greeted in time")
            .expect("greeted");
        assert_eq!(&greeting, b"220 ");
        held.push(c);
    }
    refused_at_connect(proxy.addr()).await;
    assert_eq!(proxy.refused(), 1);
    drop(held);
    assert!(proxy.wait_for_ended_sessions(2, WAIT).await);
    tokio::time::timeout(WAIT, proxy.stop())
        .await
        .expect("the shutdown finishes");
    // The refused connection is no session of the cassette.
    let text = std::fs::read_to_string(&path).expect("the cassette");
    assert_eq!(
        text.lines()
            .filter(|l| l.ends_with(" session") || l.contains(" session "))
            .count(),
        2,
        "{text}"
    );
    shut(upstream).await;
}
