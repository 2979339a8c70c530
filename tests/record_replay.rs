//! Record and replay against a real upstream: a private Postfix instance on loopback, started and
//! stopped by the test (its settings below; spec S-1). Without Postfix or fetchmail the Postfix test
//! skips loudly; under `CI=true` it fails. The other tests use the harness's own smart host as the
//! upstream.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use etrn_harness::cassette::{self, CassetteWriter, MissRecordingReplay, RecordingProxy};
use etrn_harness::proto::Event;
use etrn_harness::proto::SmartHostScript;
use etrn_harness::proto::cassette::Cassette;
use etrn_harness::proto::{MatchMode, ReplayOptions};
use etrn_harness::smarthost::{SmartHost, SmartHostConfig};
use etrn_harness::smtp_client::Connection;

mod common;

const WAIT: Duration = Duration::from_secs(20);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A private Postfix instance; stopped when dropped.
struct Postfix {
    config: PathBuf,
    addr: SocketAddr,
}

impl Postfix {
    fn start(dir: &Path) -> Postfix {
        Postfix::start_with(dir, &[])
    }

    /// A private Postfix with these `main.cf` settings on top of the usual ones.
    fn start_with(dir: &Path, extra: &[String]) -> Postfix {
        let port = free_port();
        let relay = free_port();
        let etc = dir.join("etc");
        for d in ["etc", "spool", "data"] {
            std::fs::create_dir_all(dir.join(d)).expect("create folder");
        }
        std::fs::write(etc.join("main.cf"), "").expect("main.cf");
        std::fs::copy("/usr/share/postfix/master.cf.dist", etc.join("master.cf"))
            .expect("master.cf");
        let d = dir.display();
        let run = |args: &[&str]| {
            let out = Command::new(args[0])
                .args(&args[1..])
                .output()
                .expect("postfix tools run");
            assert!(
                out.status.success(),
                "{args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["chown", "postfix", &format!("{d}/data")]);
        let etc_s = etc.display().to_string();
        let settings = [
            format!("queue_directory = {d}/spool"),
            format!("data_directory = {d}/data"),
            format!("maillog_file_prefixes = /var, /dev/stdout, {d}"),
            format!("maillog_file = {d}/postfix.log"),
            format!("syslog_name = pfx-{port}"),
            "compatibility_level = 3.6".into(),
            "inet_interfaces = loopback-only".into(),
            "inet_protocols = ipv4".into(),
            "myhostname = mx.test".into(),
            "mydestination =".into(),
            "alias_maps =".into(),
            "alias_database =".into(),
            "mynetworks = 127.0.0.0/8".into(),
            "relay_domains = etrn.example".into(),
            "fast_flush_domains = $relay_domains".into(),
            format!("relay_transport = smtp:[127.0.0.1]:{relay}"),
            "default_transport = error".into(),
            "smtp_tls_security_level = none".into(),
            "smtpd_tls_security_level = none".into(),
            "queue_run_delay = 1h".into(),
            "minimal_backoff_time = 1h".into(),
            "maximal_backoff_time = 2h".into(),
        ];
        let mut postconf = vec!["postconf", "-c", &etc_s, "-e"];
        postconf.extend(settings.iter().map(String::as_str));
        postconf.extend(extra.iter().map(String::as_str));
        run(&postconf);
        run(&["postconf", "-c", &etc_s, "-MX", "smtp/inet"]);
        let service = format!("127.0.0.1:{port}/inet=127.0.0.1:{port} inet n - n - - smtpd");
        run(&["postconf", "-c", &etc_s, "-M", &service]);
        run(&["postconf", "-c", &etc_s, "-F", "*/*/chroot = n"]);
        let _ = Command::new("postfix")
            .args(["-c", &etc_s, "post-install", "create-missing"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        run(&["postfix", "-c", &etc_s, "start"]);
        Postfix {
            config: etc,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// Waits until Postfix accepts connections. Postfix announces readiness nowhere but in its
    /// listening socket, so this probes it: at most 250 attempts, 20 ms apart.
    async fn ready(&self) {
        for _ in 0..250 {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let log = std::fs::read_to_string(self.config.parent().expect("dir").join("postfix.log"))
            .unwrap_or_default();
        panic!("Postfix did not listen on {} within 5 s:\n{log}", self.addr);
    }

    fn stop(&self) {
        let _ = Command::new("postfix")
            .args(["-c", &self.config.display().to_string(), "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.stop();
    }
}

/// fetchmail in ETRN mode against `addr`; returns its exit status.
async fn fetchmail(addr: SocketAddr, domains: &str, home: &Path) -> Option<i32> {
    let run = tokio::process::Command::new("fetchmail")
        .env("HOME", home)
        .arg("--pidfile")
        .arg(home.join("fetchmail.pid"))
        .args([
            "--nosyslog",
            "-p",
            "ETRN",
            "-t",
            "10",
            "-P",
            &addr.port().to_string(),
        ])
        .args(["--fetchdomains", domains, "127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    tokio::time::timeout(WAIT, run)
        .await
        .expect("fetchmail ends in time")
        .expect("fetchmail runs")
        .code()
}

/// A message submitted through `addr` with the harness's client.
async fn submit(addr: SocketAddr) -> Vec<u16> {
    let mut c = Connection::open(addr, WAIT).await.expect("connect");
    let mut codes = vec![c.reply().await.expect("greeting").code().get()];
    for line in [
        "EHLO client.example",
        "MAIL FROM:<sender@src.test>",
        "RCPT TO:<user@etrn.example>",
        "DATA",
    ] {
        codes.push(c.command(line).await.expect("reply").code().get());
    }
    c.send_raw(b"Subject: recorded\r\n\r\nhello\r\n.\r\n")
        .await
        .expect("data");
    codes.push(c.reply().await.expect("queued").code().get());
    codes.push(c.command("QUIT").await.expect("bye").code().get());
    codes
}

/// The reply lines of a cassette session, as bytes.
fn replies(c: &Cassette, session: usize) -> Vec<Vec<u8>> {
    c.sessions[session]
        .exchanges
        .iter()
        .flat_map(|e| e.reply.clone())
        .collect()
}

/// The reply lines a replay sent, from its recording.
fn replayed(r: &etrn_harness::proto::Recording, session: usize) -> Vec<Vec<u8>> {
    r.sessions[session]
        .events
        .iter()
        .filter_map(|e| match &e.event {
            Event::Reply { code, lines } => Some(
                etrn_harness::reply::Reply::parse(&format!("{code} {}", lines.join("\n")))
                    .map(|r| r.to_wire().into_bytes())
                    .unwrap_or_default(),
            ),
            _ => None,
        })
        .flat_map(|wire| {
            wire.split_inclusive(|b| *b == b'\n')
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn record_fetchmail_and_a_submission_through_postfix_then_replay_without_it() {
    if !common::peer_available("postconf", &["-d", "mail_version"])
        || !common::peer_available("fetchmail", &["--version"])
    {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    // Postfix's own users must be able to reach the queue under it.
    let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
    let cassette_path = dir.path().join("postfix.cassette");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let postfix = Postfix::start(&dir.path().join("pfx"));
    postfix.ready().await;

    let proxy = RecordingProxy::start(
        "127.0.0.1:0".parse().expect("addr"),
        postfix.addr,
        &cassette_path,
    )
    .await
    .expect("recorder starts");
    let recorded_exit = fetchmail(proxy.addr(), "etrn.example,unlisted.example", &home).await;
    // One session after the other, so the cassette (and its snapshot) has a fixed order.
    assert!(
        proxy.wait_for_ended_sessions(1, WAIT).await,
        "fetchmail's session ends"
    );
    let codes = submit(proxy.addr()).await;
    assert_eq!(codes, [220, 250, 250, 250, 354, 250, 221]);
    assert!(
        proxy.wait_for_ended_sessions(2, WAIT).await,
        "both sessions end"
    );
    proxy.stop().await;
    postfix.stop();
    drop(postfix);

    let text = std::fs::read_to_string(&cassette_path).expect("cassette written");
    assert!(text.contains("S: 250 Queuing started"), "{text}");
    assert!(
        text.contains("S: 459 <unlisted.example>: service unavailable"),
        "{text}"
    );
    // fetchmail stops after the 459: exit 3 (spec C-2).
    assert_eq!(recorded_exit, Some(3));
    let cassette = Cassette::parse(&text).expect("the cassette loads");
    assert_eq!(cassette.sessions.len(), 2);

    // Replay with Postfix gone: the same client run sees the same replies, byte for byte.
    let host = cassette::replay_server(
        cassette.clone(),
        ReplayOptions::default(),
        "127.0.0.1:0".parse().expect("addr"),
        WAIT,
        etrn_harness::smarthost::Recorder::new(),
    )
    .await
    .expect("replay starts");
    let replay_exit = fetchmail(host.addr(), "etrn.example,unlisted.example", &home).await;
    let codes = submit(host.addr()).await;
    assert_eq!(codes, [220, 250, 250, 250, 354, 250, 221]);
    let rec = host
        .recorder()
        .wait_for_closed_sessions(2, WAIT)
        .await
        .expect("replayed sessions end");
    host.shutdown().await;
    assert_eq!(replay_exit, recorded_exit);
    assert_eq!(replayed(&rec, 0), replies(&cassette, 0));
    assert_eq!(replayed(&rec, 1), replies(&cassette, 1));
    assert!(!rec.sessions.iter().any(|s| {
        s.events
            .iter()
            .any(|e| matches!(e.event, Event::ReplayMismatch { .. }))
    }));

    // The cassette as a reviewed snapshot, with what changes between runs redacted.
    let mut settings = common::snapshot_settings();
    settings.add_filter(r"started=\S+", "started=[time]");
    settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[port]");
    settings.add_filter(r"queued as [0-9A-Za-z]+", "queued as [queue-id]");
    settings.add_filter(r"(?m)^(\d+ C: EHLO) \S+$", "$1 [client-name]");
    settings.bind(|| insta::assert_snapshot!("postfix_cassette", text));
}

async fn upstream() -> SmartHost {
    let script: SmartHostScript =
        toml::from_str("profile = \"postfix\"\nserved = [\"a.example\"]").expect("script");
    SmartHost::start(SmartHostConfig::with_script(script))
        .await
        .expect("upstream starts")
}

async fn talk(addr: SocketAddr, lines: &[&str]) -> Vec<String> {
    let mut c = Connection::open(addr, WAIT).await.expect("connect");
    let mut out = vec![format!("{}", c.reply().await.expect("greeting").code())];
    for l in lines {
        let r = c.command(l).await.expect("reply");
        out.push(format!("{} {}", r.code(), r.lines().join("/")));
    }
    out
}

/// Records EHLO, ETRN a.example, QUIT through the proxy to `up` into `path`, and loads it.
async fn record_one_session(up: &SmartHost, path: &Path) -> Cassette {
    let proxy = RecordingProxy::start("127.0.0.1:0".parse().expect("addr"), up.addr(), path)
        .await
        .expect("starts");
    talk(proxy.addr(), &["EHLO c.example", "ETRN a.example", "QUIT"]).await;
    assert!(proxy.wait_for_ended_sessions(1, WAIT).await);
    proxy.stop().await;
    Cassette::parse(&std::fs::read_to_string(path).expect("read")).expect("parse")
}

/// `SmartHost::start` with a script that names a cassette replays it: the one conversation
/// factory decides for every server, so the library API, `serve`, a conformance case and the
/// prediction cannot disagree on what the script means.
#[tokio::test]
async fn a_smart_host_started_from_a_script_naming_a_cassette_replays_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("one.cassette");
    // A text the scripted server never says: only the replay can send it.
    std::fs::write(
        &path,
        "etrn-harness cassette v1\n1 session\n1 S: 220 replayed.example ESMTP\n\
         1 C: EHLO c.example\n1 S: 250 replayed.example\n1 C: ETRN a.example\n\
         1 S: 250 from the cassette\n1 C: QUIT\n1 S: 221 bye\n1 end quit\n",
    )
    .expect("write");
    let script = SmartHostScript {
        cassette: Some(path),
        ..SmartHostScript::default()
    };
    let host = SmartHost::start(SmartHostConfig::with_script(script))
        .await
        .expect("starts");
    let said = talk(host.addr(), &["EHLO c.example", "ETRN a.example", "QUIT"]).await;
    assert_eq!(
        said,
        [
            "220",
            "250 replayed.example",
            "250 from the cassette",
            "221 bye"
        ]
    );
    host.shutdown().await;
}

/// A script naming a cassette that cannot be read does not start, and says which file.
#[tokio::test]
async fn a_smart_host_whose_script_names_a_missing_cassette_does_not_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = SmartHostScript {
        cassette: Some(dir.path().join("absent.cassette")),
        ..SmartHostScript::default()
    };
    let error = match SmartHost::start(SmartHostConfig::with_script(script)).await {
        Ok(_) => panic!("started without its cassette"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("absent.cassette"), "{error}");
}

/// A replaying smart host serves at most its cap at once (what `replay --max-connections` sets):
/// the connection past it gets `421` at connect and is counted as refused, not replayed.
#[tokio::test]
async fn a_replay_past_its_connection_cap_gets_421_at_connect() {
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let recorded = record_one_session(&up, &dir.path().join("c.cassette")).await;
    let host = cassette::replay_server_with(
        recorded,
        ReplayOptions::default(),
        "127.0.0.1:0".parse().expect("addr"),
        WAIT,
        1,
        etrn_harness::Recorder::new(),
    )
    .await
    .expect("replay starts");
    let mut first = Connection::open(host.addr(), WAIT).await.expect("connect");
    assert_eq!(
        first.reply().await.expect("greeting").code().to_string(),
        "220"
    );
    let mut second = Connection::open(host.addr(), WAIT).await.expect("connect");
    let refusal = second.reply().await.expect("a refusal");
    assert_eq!(refusal.code().get(), 421, "{refusal}");
    first.quit().await.expect("quit");
    let rec = host
        .recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .expect("the replayed session ends");
    assert_eq!(rec.refused, 1);
    assert_eq!(rec.sessions.len(), 1);
    host.shutdown().await;
}

#[tokio::test]
async fn a_replay_mismatch_gets_451_and_names_position_expected_and_actual() {
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("c.cassette");
    let cassette = record_one_session(&up, &path).await;
    let options = ReplayOptions {
        mode: MatchMode::Strict,
        ..ReplayOptions::default()
    };
    let host = cassette::replay_server(
        cassette,
        options,
        "127.0.0.1:0".parse().expect("addr"),
        WAIT,
        etrn_harness::smarthost::Recorder::new(),
    )
    .await
    .expect("replay");
    let out = talk(
        host.addr(),
        &["EHLO c.example", "ETRN other.example", "QUIT"],
    )
    .await;
    assert_eq!(
        out[2],
        "451 4.3.0 etrn-harness replay: this command is not in the cassette"
    );
    let rec = host
        .recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .expect("closed");
    let mismatch = rec.sessions[0].events.iter().find_map(|e| match &e.event {
        Event::ReplayMismatch {
            position,
            expected,
            actual,
        } => Some((*position, expected.clone(), actual.clone())),
        _ => None,
    });
    assert_eq!(
        mismatch,
        Some((
            3,
            "ETRN a.example\\r\\n".to_string(),
            "ETRN other.example\\r\\n".to_string()
        ))
    );
}

#[test]
fn a_truncated_or_malformed_cassette_is_reported_with_its_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cut = dir.path().join("cut.cassette");
    std::fs::write(
        &cut,
        "etrn-harness cassette v1\n1 session upstream=x\n1 S: 220 mx.test\n1 C: EHLO c\n1 S: 250 mx.test\n1 C: ETRN a.exa",
    )
    .expect("write");
    let bad = dir.path().join("bad.cassette");
    std::fs::write(
        &bad,
        "etrn-harness cassette v1\n1 session\n1 S: 220 ok\n1 Z: ???\n",
    )
    .expect("write");
    let run = |path: &Path| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
            .args(["replay", "--listen", "127.0.0.1:0", "--cassette"])
            .arg(path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runs");
        // A loadable cassette starts a server: read its first line, then stop it.
        let mut first = String::new();
        let stdout = child.stdout.take().expect("stdout");
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first);
        let _ = child.kill();
        let out = child.wait_with_output().expect("ends");
        (
            out.status.code(),
            first,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (_, first, err) = run(&cut);
    assert!(first.starts_with("replaying "), "{first}{err}");
    assert!(
        err.contains("cut.cassette:6: the cassette stops in the middle of an exchange"),
        "{err}"
    );
    let (code, _, err) = run(&bad);
    assert_eq!(code, Some(2));
    assert!(err.contains("bad.cassette:4:"), "{err}");
    assert!(err.contains("not a C:, D:, S:"), "{err}");
}

#[tokio::test]
async fn record_on_miss_fetches_the_rest_from_the_upstream_and_appends_it() {
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("c.cassette");
    let cassette = record_one_session(&up, &path).await;
    let writer = CassetteWriter::open(&path).expect("append");
    let replay = MissRecordingReplay::start(
        cassette,
        ReplayOptions::default(),
        "127.0.0.1:0".parse().expect("addr"),
        up.addr(),
        writer,
        etrn_harness::cassette::DEFAULT_MAX_CONNECTIONS,
    )
    .await
    .expect("replay starts");
    // a.example is in the cassette; new.example is not: the upstream answers it.
    let out = talk(
        replay.addr(),
        &[
            "EHLO c.example",
            "ETRN a.example",
            "ETRN new.example",
            "QUIT",
        ],
    )
    .await;
    assert_eq!(out[2], "250 Queuing started");
    assert_eq!(out[3], "459 <new.example>: service unavailable");
    assert_eq!(out[4], "221 2.0.0 Bye");
    replay.stop().await;
    let upstream_seen = up
        .recorder()
        .wait_for_closed_sessions(2, WAIT)
        .await
        .expect("upstream sessions");
    // The upstream was brought to the same point (EHLO, ETRN a.example) before the missed command.
    assert_eq!(
        upstream_seen.sessions[1].etrn_domains(),
        ["a.example", "new.example"]
    );
    let grown = Cassette::parse(&std::fs::read_to_string(&path).expect("read")).expect("parse");
    assert_eq!(grown.sessions.len(), 2);
    assert_eq!(
        grown.sessions[1].fields.get("recorded").map(String::as_str),
        Some("on-miss")
    );
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(
        text.contains("2 C: ETRN new.example\n2 S: 459 <new.example>: service unavailable\n"),
        "{text}"
    );
}

#[tokio::test]
async fn parallel_sessions_are_kept_apart_and_credentials_redacted() {
    let script: SmartHostScript =
        toml::from_str("ehlo_keywords = [\"ETRN\", \"AUTH PLAIN LOGIN\"]").expect("script");
    let up = SmartHost::start(SmartHostConfig::with_script(script))
        .await
        .expect("upstream");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("p.cassette");
    let proxy = RecordingProxy::start("127.0.0.1:0".parse().expect("addr"), up.addr(), &path)
        .await
        .expect("starts");
    let addr = proxy.addr();
    let clients: Vec<_> = (0..3)
        .map(|i| {
            tokio::spawn(async move {
                talk(
                    addr,
                    &[
                        "EHLO c.example",
                        "AUTH PLAIN AHVzZXIAc2VjcmV0",
                        &format!("ETRN n{i}.example"),
                        "QUIT",
                    ],
                )
                .await
            })
        })
        .collect();
    for c in clients {
        c.await.expect("client");
    }
    assert!(proxy.wait_for_ended_sessions(3, WAIT).await);
    proxy.stop().await;
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(
        !text.contains("AHVzZXIAc2VjcmV0"),
        "credentials leaked:\n{text}"
    );
    assert_eq!(text.matches("C: AUTH PLAIN [redacted]").count(), 3);
    let cassette = Cassette::parse(&text).expect("parse");
    let mut etrn: Vec<String> = cassette
        .sessions
        .iter()
        .map(|s| {
            let lines: Vec<String> = s
                .exchanges
                .iter()
                .filter_map(|e| match &e.request {
                    etrn_harness::proto::cassette::Request::Command(c)
                        if c.starts_with(b"ETRN") =>
                    {
                        Some(String::from_utf8_lossy(c).trim_end().to_owned())
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(lines.len(), 1, "one ETRN per session: {lines:?}");
            lines[0].clone()
        })
        .collect();
    etrn.sort();
    assert_eq!(
        etrn,
        ["ETRN n0.example", "ETRN n1.example", "ETRN n2.example"]
    );
}

#[tokio::test]
async fn starttls_is_passed_through_and_marked() {
    let config = SmartHostConfig {
        limits: etrn_harness::proto::SessionLimits {
            starttls: true,
            ..Default::default()
        },
        ..SmartHostConfig::default()
    };
    let up = SmartHost::start(config).await.expect("upstream");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tls.cassette");
    let proxy = RecordingProxy::start("127.0.0.1:0".parse().expect("addr"), up.addr(), &path)
        .await
        .expect("starts");
    let mut client = common::starttls_client(proxy.addr(), WAIT).await;
    let r = client
        .cmd(b"ETRN secret.example\r\n")
        .await
        .expect("ETRN over TLS");
    assert_eq!(r.code(), 250);
    client.quit().await.expect("quit");
    assert!(proxy.wait_for_ended_sessions(1, WAIT).await);
    proxy.stop().await;
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(
        text.contains("1 C: STARTTLS\n1 S: 220 2.0.0 Ready to start TLS\n1 tls passthrough\n"),
        "{text}"
    );
    assert!(
        !text.contains("secret.example"),
        "nothing after STARTTLS is recorded:\n{text}"
    );
    // The upstream saw the ETRN, so the bytes really passed through.
    let seen = up
        .recorder()
        .wait_for_etrn("secret.example", WAIT)
        .await
        .expect("upstream saw it");
    assert!(seen.sessions[0].tls);
}

/// ETRN through a mail-send client (STARTTLS, then ETRN) to `addr`: the ETRN reply.
async fn etrn_over_tls(addr: SocketAddr) -> String {
    let mut client = common::starttls_client(addr, WAIT).await;
    let r = client
        .cmd(b"ETRN etrn.example\r\n")
        .await
        .expect("ETRN over TLS");
    client.quit().await.expect("quit");
    format!("{} {}", r.code(), r.message())
}

#[tokio::test]
async fn tls_terminated_by_the_recorder_against_postfix_requiring_tls_then_replayed() {
    if !common::peer_available("postconf", &["-d", "mail_version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
    // Postfix's certificate, and the same file as the recorder's trust anchor.
    let certified =
        rcgen::generate_simple_self_signed(vec!["mx.test".to_owned()]).expect("certificate");
    let cert = dir.path().join("mx.pem");
    let key = dir.path().join("mx.key");
    std::fs::write(&cert, certified.cert.pem()).expect("cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("key");
    let postfix = Postfix::start_with(
        &dir.path().join("pfx"),
        &[
            "smtpd_tls_security_level = encrypt".into(),
            format!("smtpd_tls_cert_file = {}", cert.display()),
            format!("smtpd_tls_key_file = {}", key.display()),
        ],
    );
    postfix.ready().await;
    // TLS really is required: ETRN in plaintext is refused.
    let plain = talk(
        postfix.addr,
        &["EHLO c.example", "ETRN etrn.example", "QUIT"],
    )
    .await;
    assert!(plain[2].starts_with("530"), "{plain:?}");

    let path = dir.path().join("tls.cassette");
    let terminate = etrn_harness::cassette::TlsTerminate::new(
        "localhost",
        "mx.test",
        &etrn_harness::cassette::UpstreamTrust::Ca(cert.clone()),
    )
    .expect("TLS set-up");
    let proxy = RecordingProxy::start_with(
        "127.0.0.1:0".parse().expect("addr"),
        postfix.addr,
        &path,
        etrn_harness::cassette::TlsMode::Terminate(std::sync::Arc::new(terminate)),
        etrn_harness::cassette::DEFAULT_MAX_CONNECTIONS,
    )
    .await
    .expect("recorder");
    let live = etrn_over_tls(proxy.addr()).await;
    assert!(live.starts_with("250"), "{live}");
    assert!(proxy.wait_for_ended_sessions(1, WAIT).await);
    proxy.stop().await;
    postfix.stop();

    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains("1 tls terminate\n"), "{text}");
    assert!(
        text.contains("1 C: ETRN etrn.example\n"),
        "the plaintext after STARTTLS is recorded:\n{text}"
    );
    assert!(text.ends_with("1 end quit\n"), "{text}");
    let cassette = Cassette::parse(&text).expect("parse");

    // Postfix is gone; the replay offers STARTTLS and answers the rest from the cassette.
    let replay = cassette::replay_server(
        cassette,
        ReplayOptions::default(),
        "127.0.0.1:0".parse().expect("addr"),
        WAIT,
        etrn_harness::smarthost::Recorder::new(),
    )
    .await
    .expect("replay");
    let replayed = etrn_over_tls(replay.addr()).await;
    assert_eq!(replayed, live);
    replay
        .recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .expect("the replayed session ends");
    let recording = replay.shutdown().await;
    assert!(recording.sessions[0].tls, "the replay did TLS");
    assert!(
        !recording.sessions[0].events.iter().any(|e| matches!(
            e.event,
            Event::ReplayMismatch { .. } | Event::ReplayUnplayed { .. }
        )),
        "{:?}",
        recording.sessions[0].events
    );
}

#[tokio::test]
async fn a_scenario_can_answer_from_a_cassette() {
    use etrn_harness::conformance::{self, Case, KnownDeviations, RunOptions, Verdict};
    let dir = tempfile::tempdir().expect("temp dir");
    let scenario_text =
        std::fs::read_to_string("scenarios/replies/e25-458-continue.toml").expect("scenario");
    let scenario = etrn_harness::scenario::parse_scenario(Path::new("e25.toml"), &scenario_text)
        .expect("valid");
    // Record the builtin client against the scenario's own smart host.
    let up = SmartHost::start(SmartHostConfig::with_script(scenario.smarthost.clone()))
        .await
        .expect("upstream");
    let path = dir.path().join("e25.cassette");
    let proxy = RecordingProxy::start("127.0.0.1:0".parse().expect("addr"), up.addr(), &path)
        .await
        .expect("starts");
    etrn_harness::conformance::run_builtin(&scenario.ims, proxy.addr(), WAIT)
        .await
        .expect("builtin runs");
    assert!(proxy.wait_for_ended_sessions(1, WAIT).await);
    proxy.stop().await;
    drop(up);
    // The same scenario, answered from the cassette (path relative to the scenario file).
    let replayed_text = scenario_text.replace(
        "[smarthost]",
        "[smarthost]\ncassette = \"e25.cassette\"\nmatch = \"strict\"",
    );
    let file = dir.path().join("e25.toml");
    std::fs::write(&file, &replayed_text).expect("write");
    let replayed = etrn_harness::scenario::load_scenario(&file).expect("valid with a cassette");
    assert_eq!(replayed.smarthost.cassette.as_deref(), Some(path.as_path()));
    let result = conformance::run_case(
        &Case {
            file,
            scenario: replayed,
        },
        &RunOptions {
            jobs: 1,
            ..RunOptions::default()
        },
        &KnownDeviations::default(),
    )
    .await;
    assert_eq!(
        result.verdict,
        Verdict::Pass,
        "{}",
        conformance::report::case_details(&result)
    );
    assert!(
        result
            .transcript()
            .contains("S: 458 Unable to queue messages for node a.com")
    );
}

#[tokio::test]
async fn the_record_command_writes_a_cassette_and_stops_after_n_sessions() {
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cli.cassette");
    let up_addr = up.addr().to_string();
    let cassette = path.to_string_lossy();
    // Its output is dropped after the first line: a reader that went away must not make the
    // recorder fail at exit (its stop line goes to a closed pipe).
    let (mut child, output, addr, _) =
        started(&["record", "--upstream", &up_addr, "--cassette", &cassette]).await;
    drop(output);
    talk(addr, &["EHLO c.example", "ETRN a.example", "QUIT"]).await;
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("stops by itself")
        .expect("exit");
    assert!(status.success());
    let text = std::fs::read_to_string(&path).expect("written");
    assert!(
        text.starts_with("etrn-harness cassette v1\n1 session upstream="),
        "{text}"
    );
    assert!(
        text.contains("1 C: ETRN a.example\n1 S: 250 Queuing started\n"),
        "{text}"
    );
    assert!(text.ends_with("1 end quit\n"), "{text}");
}

/// Output lines of a command under test.
type OutputLines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// Starts `etrn-harness ARGS --listen 127.0.0.1:0 --exit-after-sessions 1` (`record` or `replay`)
/// and reads the address it listens on from its first line (`recording ADDR -> ...`,
/// `replaying FILE on ADDR`). The process, its remaining output, the address and that line.
async fn started(args: &[&str]) -> (tokio::process::Child, OutputLines, SocketAddr, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--exit-after-sessions", "1"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the command starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("in time")
        .expect("read")
        .expect("a first line");
    let addr = first
        .split_whitespace()
        .find_map(|w| w.parse::<SocketAddr>().ok())
        .unwrap_or_else(|| panic!("no address in the first line {first:?}"));
    (child, lines, addr, first)
}

/// Runs `etrn-harness replay` on `cassette` with `extra` flags for one session of `lines`;
/// returns its exit code and everything it printed.
async fn replay_cli(cassette: &Path, extra: &[&str], lines: &[&str]) -> (i32, String) {
    let cassette = cassette.to_string_lossy();
    let mut args = vec!["replay", "--cassette", &cassette];
    args.extend(extra);
    let (mut child, mut out, addr, first) = started(&args).await;
    let mut c = Connection::open(addr, WAIT).await.expect("connect");
    c.reply().await.expect("greeting");
    for l in lines {
        c.command(l).await.expect("reply");
    }
    drop(c);
    let mut printed = first;
    while let Ok(Some(l)) = tokio::time::timeout(WAIT, out.next_line())
        .await
        .expect("in time")
    {
        printed.push('\n');
        printed.push_str(&l);
    }
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("stops by itself")
        .expect("exit");
    (status.code().unwrap_or(-1), printed)
}

#[tokio::test]
async fn the_replay_command_exits_1_on_any_mismatch_and_on_unplayed_exchanges_when_asked() {
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("c.cassette");
    record_one_session(&up, &path).await;
    // Another machine's host name, the same commands: no mismatch.
    let (code, out) = replay_cli(&path, &[], &["EHLO other.host", "ETRN a.example", "QUIT"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 mismatch(es), 0 unplayed"), "{out}");
    // One command the cassette does not have: exit 1, however the rest went.
    let (code, out) = replay_cli(
        &path,
        &[],
        &["EHLO c.example", "ETRN z.example", "ETRN a.example", "QUIT"],
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1 mismatch(es)"), "{out}");
    // Leaving early: reported; a failure only with --fail-on-unplayed.
    let (code, out) = replay_cli(&path, &[], &["EHLO c.example"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 unplayed exchange(s)"), "{out}");
    let (code, out) = replay_cli(&path, &["--fail-on-unplayed"], &["EHLO c.example"]).await;
    assert_eq!(code, 1, "{out}");
    // --match-args EHLO brings the host name back into the comparison.
    let (code, out) = replay_cli(
        &path,
        &["--match-args", "ehlo"],
        &["EHLO other.host", "ETRN a.example", "QUIT"],
    )
    .await;
    assert_eq!(code, 1, "{out}");
}

#[tokio::test]
async fn the_record_command_refuses_a_locked_cassette_and_an_unchecked_tls_upstream() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("locked.cassette");
    let _held = CassetteWriter::open(&path).expect("first writer");
    let out = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args([
            "record",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:25",
        ])
        .arg("--cassette")
        .arg(&path)
        .output()
        .expect("runs");
    // Held by another process: unavailable, as an address in use is.
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("being written by another recorder"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args([
            "record",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "127.0.0.1:25",
        ])
        .args(["--tls", "terminate", "--cassette"])
        .arg(dir.path().join("other.cassette"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--upstream-ca FILE"), "{err}");
}
