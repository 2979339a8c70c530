//! Record/replay fidelity over real TCP: the harness's own smart host as the upstream, the
//! recording proxy in between, then a replay of the cassette with the upstream gone.
//!
//! - a round-trip property: any session, cut into any writes, recorded then replayed, gives the
//!   client byte-identical replies in every match mode;
//! - every byte kept at the edges (a client or an upstream leaving mid-line), the `end` line
//!   naming who left, headers in number order, numbers that cannot wrap, one recorder per file;
//! - credentials redacted on every path that writes a record.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use etrn_harness::cassette::{
    self, CassetteWriter, MissRecordingReplay, RecordError, RecordingProxy,
};
use etrn_harness::proto::Event;
use etrn_harness::proto::SmartHostScript;
use etrn_harness::proto::cassette::{self as cassette_format, Cassette};
use etrn_harness::proto::{MatchMode, ReplayOptions};
use etrn_harness::reply::ReplyReader;
use etrn_harness::smarthost::{Recorder, SmartHost, SmartHostConfig};
use etrn_harness::wire::Verb;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(20);

fn any_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn upstream(script: &str) -> SmartHost {
    let script: SmartHostScript = toml::from_str(script).expect("script");
    SmartHost::start(SmartHostConfig::with_script(script))
        .await
        .expect("upstream starts")
}

/// A client that sends each group of lines in the given pieces, then reads until every reply
/// the group asked for has come (message data lines ask for none), and at the end reads to EOF.
/// Returns every byte it received.
async fn converse(addr: SocketAddr, groups: &[Vec<Vec<u8>>], cuts: &[usize]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut received = Vec::new();
    let mut reader = ReplyReader::new();
    let mut buf = [0u8; 4096];
    let mut wanted = 1; // the greeting
    let mut got = 0;
    let mut in_data = false;
    let mut cut = cuts.iter().cycle();
    for group in groups {
        while got < wanted {
            let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
                .await
                .expect("a reply in time")
                .expect("read");
            if n == 0 {
                return received;
            }
            received.extend_from_slice(&buf[..n]);
            reader.push(&buf[..n]);
            while let Some(r) = reader.next_reply() {
                r.expect("a well-formed reply");
                got += 1;
            }
        }
        let bytes: Vec<u8> = group.concat();
        for line in group {
            if in_data {
                if line.as_slice() == b".\r\n" {
                    in_data = false;
                    wanted += 1;
                }
            } else {
                wanted += 1;
                in_data = line.as_slice() == b"DATA\r\n";
            }
        }
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = (*cut.next().unwrap_or(&7)).clamp(1, rest.len());
            stream.write_all(&rest[..n]).await.expect("write");
            rest = &rest[n..];
        }
    }
    loop {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("the server closes in time")
            .unwrap_or(0);
        if n == 0 {
            return received;
        }
        received.extend_from_slice(&buf[..n]);
    }
}

/// Records one session of `groups` through a recording proxy to `up` into `path`; returns what
/// the client received.
async fn record(up: &SmartHost, path: &Path, groups: &[Vec<Vec<u8>>], cuts: &[usize]) -> Vec<u8> {
    let proxy = RecordingProxy::start(any_addr(), up.addr(), path)
        .await
        .expect("recorder");
    let received = converse(proxy.addr(), groups, cuts).await;
    assert!(proxy.wait_for_ended_sessions(1, WAIT).await);
    proxy.stop().await;
    received
}

/// Replays `cassette` in `mode` to one client session of `groups`; what the client received,
/// and the replay's recording.
async fn replay(
    cassette: &Cassette,
    mode: MatchMode,
    groups: &[Vec<Vec<u8>>],
    cuts: &[usize],
) -> (Vec<u8>, etrn_harness::proto::Recording) {
    let options = ReplayOptions {
        mode,
        ..ReplayOptions::default()
    };
    let server =
        cassette::replay_server(cassette.clone(), options, any_addr(), WAIT, Recorder::new())
            .await
            .expect("replay");
    let received = converse(server.addr(), groups, cuts).await;
    server
        .recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .expect("the replayed session ends");
    (received, server.shutdown().await)
}

/// One step of a generated session.
#[derive(Debug, Clone)]
enum Step {
    Line(&'static str),
    /// MAIL, RCPT, DATA, these data lines, ".".
    Message(Vec<String>),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        prop::sample::select(vec![
            "NOOP",
            "RSET",
            "ETRN a.example",
            "ETRN @a.example",
            "ETRN #a.example",
            "ETRN b.example",
            "etrn  A.EXAMPLE",
            "ETRN",
            "HELP",
            "VRFY someone",
            "XNOTACOMMAND 1",
        ])
        .prop_map(Step::Line),
        prop::collection::vec("[ -~]{0,40}", 0..4).prop_map(Step::Message),
    ]
}

/// The session as groups: a group ends where the client must wait (after DATA, after the
/// message's final ".") or where the generated `waits` say; QUIT last.
fn groups(steps: &[Step], waits: &[bool]) -> Vec<Vec<Vec<u8>>> {
    let mut groups = vec![vec![b"EHLO client.example\r\n".to_vec()]];
    let mut current: Vec<Vec<u8>> = Vec::new();
    let mut wait = waits.iter().cycle();
    for s in steps {
        match s {
            Step::Line(l) => current.push(format!("{l}\r\n").into_bytes()),
            Step::Message(lines) => {
                current.push(b"MAIL FROM:<a@src.example>\r\n".to_vec());
                current.push(b"RCPT TO:<b@a.example>\r\n".to_vec());
                current.push(b"DATA\r\n".to_vec());
                groups.push(std::mem::take(&mut current));
                for l in lines {
                    // Dot-stuffing, as a client does.
                    let l = if l.starts_with('.') {
                        format!(".{l}")
                    } else {
                        l.clone()
                    };
                    current.push(format!("{l}\r\n").into_bytes());
                }
                current.push(b".\r\n".to_vec());
                groups.push(std::mem::take(&mut current));
                continue;
            }
        }
        if *wait.next().unwrap_or(&false) {
            groups.push(std::mem::take(&mut current));
        }
    }
    current.push(b"QUIT\r\n".to_vec());
    groups.push(current);
    groups.retain(|g| !g.is_empty());
    groups
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 24,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/cassette_fidelity.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// Records `groups` through a proxy to `up`, then replays the cassette in each mode with the
/// same cuts; every replay must give the bytes the upstream gave, with no mismatch.
async fn round_trip(up: &SmartHost, groups: &[Vec<Vec<u8>>], cuts: &[usize], dir: &Path) {
    let path = dir.join("round.cassette");
    let live = record(up, &path, groups, cuts).await;
    let text = std::fs::read_to_string(&path).expect("cassette");
    let cassette = Cassette::parse(&text).expect("the cassette loads");
    assert_eq!(cassette.truncated_at, None, "{text}");
    for mode in [MatchMode::Strict, MatchMode::Verb, MatchMode::Lenient] {
        let (replayed, recording) = replay(&cassette, mode, groups, cuts).await;
        let mismatches: Vec<&Event> = recording.sessions[0]
            .events
            .iter()
            .map(|t| &t.event)
            .filter(|e| {
                matches!(
                    e,
                    Event::ReplayMismatch { .. } | Event::ReplayUnplayed { .. }
                )
            })
            .collect();
        assert!(mismatches.is_empty(), "{mode:?}: {mismatches:?}\n{text}");
        assert_eq!(
            String::from_utf8_lossy(&replayed),
            String::from_utf8_lossy(&live),
            "{mode:?}\n{text}"
        );
    }
    std::fs::remove_file(&path).expect("remove");
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_session_any_split_replays_byte_identical(
        steps in prop::collection::vec(step(), 0..8),
        waits in prop::collection::vec(any::<bool>(), 1..8),
        cuts in prop::collection::vec(1usize..40, 1..8),
    ) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        rt.block_on(async {
            let up = upstream("profile = \"postfix\"\nserved = [\"a.example\"]").await;
            round_trip(&up, &groups(&steps, &waits), &cuts, dir.path()).await;
            up.shutdown().await;
        });
    }
}

#[tokio::test]
async fn a_pipelined_session_records_each_reply_with_its_command_and_replays_exactly() {
    let up = upstream("profile = \"postfix\"\nserved = [\"a.example\"]").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let groups = vec![
        vec![b"EHLO vm\r\n".to_vec()],
        vec![
            b"ETRN a.example\r\n".to_vec(),
            b"ETRN b.example\r\n".to_vec(),
            b"QUIT\r\n".to_vec(),
        ],
    ];
    // One write for the three commands.
    round_trip(&up, &groups, &[1000], dir.path()).await;
}

#[tokio::test]
async fn a_cassette_from_one_machine_replays_on_another() {
    let up = upstream("profile = \"postfix\"\nserved = [\"a.example\"]").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("vm.cassette");
    let recorded_on_vm = vec![
        vec![b"EHLO vm\r\n".to_vec()],
        vec![b"ETRN a.example\r\n".to_vec()],
        vec![b"QUIT\r\n".to_vec()],
    ];
    let live = record(&up, &path, &recorded_on_vm, &[64]).await;
    let cassette = Cassette::parse(&std::fs::read_to_string(&path).expect("read")).expect("parse");
    let on_ci = vec![
        vec![b"EHLO ci-runner-42\r\n".to_vec()],
        vec![b"ETRN a.example\r\n".to_vec()],
        vec![b"QUIT\r\n".to_vec()],
    ];
    for (mode, mismatches) in [
        (MatchMode::Verb, 0),
        (MatchMode::Lenient, 0),
        (MatchMode::Strict, 1),
    ] {
        let (got, recording) = replay(&cassette, mode, &on_ci, &[64]).await;
        let counted = recording.sessions[0]
            .events
            .iter()
            .filter(|t| matches!(t.event, Event::ReplayMismatch { .. }))
            .count();
        assert_eq!(counted, mismatches, "{mode:?}");
        if mismatches == 0 {
            assert_eq!(got, live, "{mode:?}");
        } else {
            // Strict answers the host name mismatch, then finds its place again.
            let text = String::from_utf8_lossy(&got);
            assert!(
                text.contains("451 4.3.0") && text.ends_with("221 2.0.0 Bye\r\n"),
                "{text}"
            );
        }
    }
}

/// Sends `bytes` after the greeting, reads what comes within the deadline, then closes.
async fn send_and_leave(addr: SocketAddr, bytes: &[u8], replies: usize) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut reader = ReplyReader::new();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let mut got = 0;
    let mut sent = false;
    while got < replies + 1 {
        if got == 1 && !sent {
            stream.write_all(bytes).await.expect("write");
            sent = true;
        }
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buf[..n]);
        reader.push(&buf[..n]);
        while let Some(r) = reader.next_reply() {
            r.expect("reply");
            got += 1;
        }
    }
    if !sent {
        stream.write_all(bytes).await.expect("write");
    }
    received
}

#[tokio::test]
async fn a_client_leaving_mid_line_is_kept_byte_for_byte_and_named_as_the_one_who_left() {
    let up = upstream("profile = \"postfix\"").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cut.cassette");
    let proxy = RecordingProxy::start(any_addr(), up.addr(), &path)
        .await
        .expect("recorder");
    send_and_leave(proxy.addr(), b"EHLO c\r\nETRN half.exa", 1).await;
    assert!(proxy.wait_for_ended_sessions(1, WAIT).await);
    proxy.stop().await;
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains("1 C! ETRN half.exa\n"), "{text}");
    assert!(text.ends_with("1 end client-closed\n"), "{text}");
}

#[tokio::test]
async fn an_upstream_leaving_mid_reply_is_kept_and_replayed_as_it_was() {
    // A hand-made upstream that cuts its EHLO reply in the middle and closes.
    let listener = tokio::net::TcpListener::bind(any_addr())
        .await
        .expect("bind");
    let upstream_addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        s.write_all(b"220 mx ESMTP\r\n").await.expect("greet");
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf).await;
        s.write_all(b"250-mx\r\n250 ETR").await.expect("cut reply");
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("up.cassette");
    let proxy = RecordingProxy::start(any_addr(), upstream_addr, &path)
        .await
        .expect("recorder");
    let live = send_and_leave(proxy.addr(), b"EHLO c\r\n", 1).await;
    server.await.expect("upstream");
    assert!(proxy.wait_for_ended_sessions(1, WAIT).await);
    proxy.stop().await;
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains("1 S! 250 ETR\n"), "{text}");
    assert!(text.ends_with("1 end upstream-closed\n"), "{text}");
    let cassette = Cassette::parse(&text).expect("parse");
    let replay = cassette::replay_server(
        cassette,
        ReplayOptions::default(),
        any_addr(),
        WAIT,
        Recorder::new(),
    )
    .await
    .expect("replay");
    let replayed = send_and_leave(replay.addr(), b"EHLO c\r\n", 1).await;
    assert_eq!(
        String::from_utf8_lossy(&replayed),
        String::from_utf8_lossy(&live)
    );
    replay.shutdown().await;
}

#[tokio::test]
async fn parallel_sessions_get_their_headers_in_number_order() {
    let up = upstream("profile = \"postfix\"").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("order.cassette");
    let proxy = RecordingProxy::start(any_addr(), up.addr(), &path)
        .await
        .expect("recorder");
    let addr = proxy.addr();
    let clients: Vec<_> = (0..16)
        .map(|_| {
            tokio::spawn(async move {
                let g = vec![vec![b"EHLO c\r\n".to_vec()], vec![b"QUIT\r\n".to_vec()]];
                converse(addr, &g, &[100]).await
            })
        })
        .collect();
    for c in clients {
        c.await.expect("client");
    }
    assert!(proxy.wait_for_ended_sessions(16, WAIT).await);
    proxy.stop().await;
    let text = std::fs::read_to_string(&path).expect("read");
    let headers: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_suffix("").and_then(|l| l.split_once(" session ")))
        .map(|(n, _)| n.parse().expect("number"))
        .collect();
    assert_eq!(headers, (1..=16).collect::<Vec<u64>>(), "{text}");
}

#[tokio::test]
async fn numbers_never_wrap_and_a_second_recorder_is_refused() {
    let up = upstream("profile = \"postfix\"").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("full.cassette");
    let last = u64::MAX;
    std::fs::write(
        &path,
        format!("etrn-harness cassette v1\n{last} session\n{last} S: 220 mx\n{last} end quit\n"),
    )
    .expect("write");
    let writer = CassetteWriter::open(&path).expect("opens");
    assert!(matches!(
        CassetteWriter::open(&path),
        Err(RecordError::Locked { .. })
    ));
    drop(writer);
    let before = std::fs::read_to_string(&path).expect("read");
    let proxy = RecordingProxy::start(any_addr(), up.addr(), &path)
        .await
        .expect("recorder");
    let got = send_and_leave(proxy.addr(), b"", 0).await;
    assert!(
        String::from_utf8_lossy(&got).starts_with("421 4.3.0"),
        "{got:?}"
    );
    assert!(proxy.wait_for_ended_sessions(1, WAIT).await);
    proxy.stop().await;
    assert_eq!(
        std::fs::read_to_string(&path).expect("read"),
        before,
        "nothing appended"
    );
}

const SECRET: &str = "AGFsaWNlAHNlY3JldA==";

fn assert_no_secret(text: &str) {
    assert!(!text.contains(SECRET), "a credential leaked:\n{text}");
    assert!(!text.contains("AGFsaWNl"), "a credential leaked:\n{text}");
}

#[tokio::test]
async fn credentials_are_redacted_when_recording_pipelined_auth() {
    let up = upstream("profile = \"postfix\"\nehlo_keywords = [\"ETRN\", \"AUTH PLAIN\"]").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("auth.cassette");
    let groups = vec![
        vec![b"EHLO c\r\n".to_vec()],
        // AUTH without an initial response, its continuation in the same write.
        vec![
            b"AUTH PLAIN\r\n".to_vec(),
            format!("{SECRET}\r\n").into_bytes(),
        ],
        vec![b"ETRN a.example\r\n".to_vec(), b"QUIT\r\n".to_vec()],
    ];
    record(&up, &path, &groups, &[1000]).await;
    let text = std::fs::read_to_string(&path).expect("read");
    assert_no_secret(&text);
    assert!(text.contains("1 C: [redacted]\n"), "{text}");
}

#[tokio::test]
async fn credentials_are_redacted_when_record_on_miss_resends_earlier_lines() {
    let up = upstream("profile = \"postfix\"\nehlo_keywords = [\"ETRN\", \"AUTH PLAIN\"]").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("miss.cassette");
    // A cassette with EHLO and AUTH, recorded redacted; the client then asks for an ETRN the
    // cassette lacks, so every earlier line (the AUTH included) is sent to the upstream again.
    let first = vec![
        vec![b"EHLO c\r\n".to_vec()],
        vec![format!("AUTH PLAIN {SECRET}\r\n").into_bytes()],
        vec![b"QUIT\r\n".to_vec()],
    ];
    record(&up, &path, &first, &[1000]).await;
    let cassette = Cassette::parse(&std::fs::read_to_string(&path).expect("read")).expect("parse");
    let writer = CassetteWriter::open(&path).expect("writer");
    let replay = MissRecordingReplay::start(
        cassette,
        ReplayOptions::default(),
        any_addr(),
        up.addr(),
        writer,
        etrn_harness::cassette::DEFAULT_MAX_CONNECTIONS,
    )
    .await
    .expect("replay");
    let second = vec![
        vec![b"EHLO c\r\n".to_vec()],
        vec![b"AUTH PLAIN\r\n".to_vec()],
        vec![format!("{SECRET}\r\n").into_bytes()],
        vec![b"ETRN a.example\r\n".to_vec()],
        vec![b"QUIT\r\n".to_vec()],
    ];
    let got = converse(replay.addr(), &second, &[1000]).await;
    assert!(String::from_utf8_lossy(&got).ends_with("221 2.0.0 Bye\r\n"));
    assert!(replay.wait_for_ended_sessions(1, WAIT).await);
    replay.stop().await;
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains("recorded=on-miss"), "{text}");
    assert_no_secret(&text);
}

#[tokio::test]
async fn credentials_are_redacted_in_serve_recordings_whatever_the_whitespace() {
    let up = upstream("profile = \"postfix\"\nehlo_keywords = [\"ETRN\", \"AUTH PLAIN\"]").await;
    let groups = vec![
        vec![b"EHLO c\r\n".to_vec()],
        vec![format!("AUTH\tPLAIN\t{SECRET}\r\n").into_bytes()],
        vec![format!(" AUTH PLAIN {SECRET}\r\n").into_bytes()],
        vec![b"QUIT\r\n".to_vec()],
    ];
    converse(up.addr(), &groups, &[1000]).await;
    up.recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .expect("the session ends");
    let recording = up.shutdown().await;
    let json = serde_json::to_string(&recording).expect("json");
    assert_no_secret(&json);
    let auth: Vec<String> = recording.sessions[0]
        .commands
        .iter()
        .filter(|c| c.verb == Verb::Auth)
        .map(|c| c.raw.clone())
        .collect();
    assert_eq!(auth, ["AUTH PLAIN [redacted]\\r\\n"; 2], "{json}");
}

#[tokio::test]
async fn a_line_without_end_is_recorded_in_bounded_pieces_that_join_up_again() {
    let up = upstream("profile = \"postfix\"").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("long.cassette");
    let mut long = b"NOOP ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 1024 * 1024));
    long.extend_from_slice(b"\r\n");
    let groups = vec![vec![long.clone()], vec![b"QUIT\r\n".to_vec()]];
    // Written a few bytes short of a piece at a time, so pieces never line up with writes.
    record(&up, &path, &groups, &[8000]).await;
    let text = std::fs::read_to_string(&path).expect("read");
    let longest = text.lines().map(str::len).max().unwrap_or(0);
    assert!(
        longest <= etrn_harness::cassette::MAX_RECORDED_LINE + 16,
        "a cassette line of {longest} bytes"
    );
    let cassette = Cassette::parse(&text).expect("parse");
    assert_eq!(
        cassette.sessions[0].exchanges[1].request,
        cassette_format::Request::Command(long)
    );
}

// ----- damaged cassettes -----

/// A cassette with every kind of line: two sessions interleaved, a transaction with data,
/// pipelined ETRNs, an AUTH exchange, pieces of a cut line.
const WHOLE: &str = "etrn-harness cassette v1
1 session upstream=127.0.0.1:2547 client=127.0.0.1:50312 started=2026-11-29T00:30:00Z
1 S: 220 mx.test ESMTP
1 C: EHLO c.example
1 S: 250-mx.test
1 S: 250 ETRN
2 session upstream=127.0.0.1:2547 client=127.0.0.1:50314 started=2026-11-29T00:30:01Z
2 S: 220 mx.test ESMTP
1 C: AUTH PLAIN
1 S: 334 
1 C: [redacted]
1 S: 235 ok
1 C: MAIL FROM:<a@b.example>
1 S: 250 ok
1 C: RCPT TO:<c@d.example>
1 S: 250 ok
1 C: DATA
1 S: 354 go
1 D: Subject: x
1 D: .
1 S: 250 queued
2 C: ETRN a.example
2 S: 250 ok
1 C: ETRN b.example
1 C: ETRN c.example
1 S: 250 b
1 S: 459 c
1 C! ETRN d.ex
1 C! ample\\r\\n
1 S: 250-first
1 S: 250 second
1 C: QUIT
1 S: 221 bye
1 end quit
2 C: QUIT
2 S: 221 bye
2 end client-closed
";

/// One way to damage a cassette: what a bad copy, a bad merge or a bad hand edit does.
#[derive(Debug, Clone)]
enum Damage {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    /// A line and the next one lose the line end between them.
    Merge(usize),
    /// A line keeps only its first bytes (its line end stays).
    Shorten(usize, usize),
    /// A byte anywhere becomes another.
    Byte(usize, u8),
    /// A byte that is not UTF-8 goes into a line.
    NotUtf8(usize, usize, u8),
    Insert(usize, &'static str),
    /// The file stops here.
    Cut(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    let lines = WHOLE.lines().count();
    let longest = WHOLE.lines().map(str::len).max().unwrap_or(1);
    prop_oneof![
        (0..lines).prop_map(Damage::Delete),
        (0..lines).prop_map(Damage::Duplicate),
        (0..lines, 0..lines).prop_map(|(a, b)| Damage::Swap(a, b)),
        (0..lines).prop_map(Damage::Merge),
        (0..lines, 0..longest).prop_map(|(at, keep)| Damage::Shorten(at, keep)),
        (0..WHOLE.len(), any::<u8>()).prop_map(|(at, b)| Damage::Byte(at, b)),
        (0..lines, 0..=longest, 0x80u8..=0xff).prop_map(|(l, at, b)| Damage::NotUtf8(l, at, b)),
        (
            0..lines,
            prop::sample::select(vec![
                "1 end pstream-closed",
                "1 S: 421 closing",
                "1 S: 221 bye",
                "1 S: 354 go",
                "1 C: NOOP",
                "1 C: DATA",
                "3 C: NOOP",
                "1 tls passthrough",
                "1 S: OK",
                "x",
                "1 D: .",
            ])
        )
            .prop_map(|(at, l)| Damage::Insert(at, l)),
        (0..WHOLE.len()).prop_map(Damage::Cut),
    ]
}

/// The cassette with `damages` done in order.
fn damaged(damages: &[Damage]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = WHOLE.lines().map(|l| l.as_bytes().to_vec()).collect();
    let mut cut = None;
    for d in damages {
        let n = lines.len().max(1);
        match d {
            Damage::Delete(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Damage::Duplicate(i) if !lines.is_empty() => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Damage::Swap(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
            Damage::Merge(i) if i % n + 1 < lines.len() => {
                let next = lines.remove(i % n + 1);
                lines[i % n].extend_from_slice(&next);
            }
            Damage::Shorten(i, keep) if !lines.is_empty() => lines[i % n].truncate(*keep),
            Damage::Byte(at, b) if !lines.is_empty() => {
                let line = &mut lines[at % n];
                if !line.is_empty() {
                    let i = at % line.len();
                    line[i] = *b;
                }
            }
            Damage::NotUtf8(i, at, b) if !lines.is_empty() => {
                let line = &mut lines[i % n];
                let at = at % (line.len() + 1);
                line.insert(at, *b);
            }
            Damage::Insert(at, l) => lines.insert(at % (lines.len() + 1), l.as_bytes().to_vec()),
            Damage::Cut(at) => cut = Some(*at),
            _ => {}
        }
    }
    let mut bytes = lines.join(&b'\n');
    bytes.push(b'\n');
    if let Some(at) = cut {
        bytes.truncate(at % (bytes.len() + 1));
    }
    bytes
}

/// What a session's lines in a cassette file say, read from the text on its own (not by the
/// parser under test): in file order, each client line (`C`, `D`) and the reply bytes (`S`) that
/// come before it, and all the reply bytes.
#[derive(Debug, Default)]
struct Written {
    /// Each client line's bytes, with how many reply bytes the file holds before it.
    client: Vec<(Vec<u8>, usize)>,
    replies: Vec<u8>,
}

/// Every session's lines, by session number.
fn written(text: &str) -> std::collections::BTreeMap<u64, Written> {
    let mut sessions = std::collections::BTreeMap::<u64, Written>::new();
    // A last line without its line end is a cut one, which no cassette loads.
    let mut lines: Vec<&str> = text.split('\n').collect();
    lines.pop();
    for line in lines.iter().skip(1) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some((id, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(id) = id.parse::<u64>() else {
            continue;
        };
        let (tag, exact, escaped) = match rest.get(..3) {
            Some(p @ ("C: " | "D: " | "S: " | "C! " | "D! " | "S! ")) => {
                (p.as_bytes()[0], p.as_bytes()[1] == b'!', &rest[3..])
            }
            _ if matches!(rest, "C:" | "D:" | "S:") => (rest.as_bytes()[0], false, ""),
            _ => continue,
        };
        let mut bytes =
            etrn_harness::escape::unescape(escaped).expect("it loaded, so it unescapes");
        if !exact {
            bytes.extend_from_slice(b"\r\n");
        }
        let session = sessions.entry(id).or_default();
        if tag == b'S' {
            session.replies.extend_from_slice(&bytes);
        } else {
            session.client.push((bytes, session.replies.len()));
        }
    }
    sessions
}

/// How many of a session's client lines in the file its loaded requests were read from: the
/// requests' bytes, in order, must be the bytes of the file's first client lines, exactly (a
/// session that stops mid-exchange loads only its complete exchanges, so only a prefix).
///
/// Counted by bytes rather than by reading the file's requests again: whether a DATA opens message
/// data depends on its reply (354 or not), and which reply answers which request is what the
/// parser under test works out; the bytes are what the client sent whatever the pairing.
fn lines_loaded(
    session: &cassette_format::CassetteSession,
    file: &Written,
) -> Result<usize, String> {
    let loaded: Vec<u8> = session
        .exchanges
        .iter()
        .flat_map(|e| match &e.request {
            cassette_format::Request::Greeting => Vec::new(),
            cassette_format::Request::Command(line) => line.clone(),
            cassette_format::Request::Data(lines) => lines.concat(),
        })
        .collect();
    let mut covered = 0;
    let mut count = 0;
    for (bytes, _) in &file.client {
        if covered >= loaded.len() {
            break;
        }
        if loaded.get(covered..covered + bytes.len()) != Some(bytes.as_slice()) {
            return Err(format!(
                "client line {} of the file (bytes {covered}..) is not what the loaded requests \
                 hold there",
                count + 1
            ));
        }
        covered += bytes.len();
        count += 1;
    }
    if covered != loaded.len() {
        return Err(format!(
            "the loaded requests hold {} bytes, the file's client lines {covered}",
            loaded.len()
        ));
    }
    Ok(count)
}

/// A client on a real connection that sends `client` lines in order, before each one reading
/// until the reply bytes the file holds before it have come (or the server closed), then closes
/// its side and reads to the end. Every byte it received.
async fn replay_client(addr: SocketAddr, client: &[(Vec<u8>, usize)], replies: usize) -> Vec<u8> {
    const READ: Duration = Duration::from_secs(3);
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let mut open = true;
    let mut read_until = async |stream: &mut TcpStream, received: &mut Vec<u8>, want: usize| {
        while received.len() < want {
            match tokio::time::timeout(READ, stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => received.extend_from_slice(&buf[..n]),
                _ => return false,
            }
        }
        true
    };
    for (bytes, before) in client {
        if !read_until(&mut stream, &mut received, (*before).min(replies)).await {
            open = false;
            break;
        }
        // The replay may have closed after its last reply (a 221, a 421): a failed write ends
        // the conversation, the comparison decides.
        if stream.write_all(bytes).await.is_err() {
            break;
        }
    }
    if open {
        let _ = stream.shutdown().await;
        read_until(&mut stream, &mut received, usize::MAX).await;
    }
    received
}

/// The lines of `bytes` (a last one without its line end counts; an empty file has line 1).
fn lines_of(bytes: &[u8]) -> usize {
    (bytes.split(|b| *b == b'\n').count() - usize::from(bytes.ends_with(b"\n"))).max(1)
}

/// The line a damage alone must be refused at, when it alone is sure to be refused there: a
/// merge, or a byte that is not UTF-8 (by the line it went into).
fn line_it_must_name(damages: &[Damage]) -> Option<usize> {
    let n = WHOLE.lines().count();
    match damages {
        [Damage::Merge(i)] if i % n + 1 < n => Some(i % n + 1),
        [Damage::NotUtf8(i, ..)] => Some(i % n + 1),
        _ => None,
    }
}

/// Loads the damaged cassette from a file as `replay` does and checks the outcome; a session
/// that loaded is replayed over TCP to a client that sends what the file says the client sent.
async fn refused_or_replayed_exactly(damages: &[Damage], dir: &Path) -> Result<(), TestCaseError> {
    let bytes = damaged(damages);
    let path = dir.join("damaged.cassette");
    std::fs::write(&path, &bytes).expect("write");
    let loaded = cassette_format::load_cassette(&path);
    if let Some(line) = line_it_must_name(damages) {
        let e = loaded.as_ref().err().map(ToString::to_string);
        prop_assert!(
            e.as_ref()
                .is_some_and(|e| e.starts_with(&format!("{}:{line}: ", path.display()))),
            "{damages:?} must be refused at line {line}: {e:?}"
        );
    }
    let c = match loaded {
        Err(cassette_format::LoadCassetteError::Parse { source, .. }) => {
            let lines = lines_of(&bytes);
            prop_assert!(
                (1..=lines).contains(&source.line),
                "line {} of {lines}: {source}",
                source.line
            );
            return Ok(());
        }
        Err(e) => return Err(TestCaseError::fail(format!("not a parse error: {e}"))),
        Ok(c) => c,
    };
    let text = String::from_utf8(bytes).expect("it loaded, so it is UTF-8");
    let mut written = written(&text);
    let server = cassette::replay_server(
        c.clone(),
        ReplayOptions {
            mode: MatchMode::Strict,
            ..ReplayOptions::default()
        },
        any_addr(),
        WAIT,
        Recorder::new(),
    )
    .await
    .expect("replay");
    for (index, session) in c.sessions.iter().enumerate() {
        let file = written.remove(&session.id).unwrap_or_default();
        let loaded: Vec<u8> = session
            .exchanges
            .iter()
            .flat_map(|e| e.reply_bytes())
            .collect();
        // A cassette that stops mid-exchange (reported with its line) loads up to its last
        // complete exchange; every other one loads every reply it holds.
        if c.truncated_at.is_none() {
            prop_assert_eq!(
                loaded.len(),
                file.replies.len(),
                "session {} lost replies",
                session.id
            );
        }
        let expected = &file.replies[..loaded.len().min(file.replies.len())];
        // The client sends what the session's loaded requests were read from: every client line,
        // or up to the last complete exchange of a session that stops mid-exchange.
        let sent_lines = lines_loaded(session, &file)
            .map_err(|e| TestCaseError::fail(format!("session {}: {e} in\n{text}", session.id)))?;
        if c.truncated_at.is_none() {
            prop_assert_eq!(
                sent_lines,
                file.client.len(),
                "session {} lost client lines",
                session.id
            );
        }
        let received =
            replay_client(server.addr(), &file.client[..sent_lines], expected.len()).await;
        if session.exchanges.is_empty() {
            // Nothing recorded (an unreachable upstream): the replay says so and closes.
            prop_assert!(received.starts_with(b"421 "), "session {}", session.id);
            continue;
        }
        prop_assert_eq!(
            String::from_utf8_lossy(&received),
            String::from_utf8_lossy(expected),
            "session {} (index {}) of\n{}",
            session.id,
            index,
            text
        );
    }
    let recording = server.shutdown().await;
    let mismatches = recording
        .sessions
        .iter()
        .flat_map(|s| &s.events)
        .filter(|t| matches!(t.event, Event::ReplayMismatch { .. }))
        .count();
    prop_assert_eq!(mismatches, 0, "{}", text);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..config() })]

    /// Whatever damage a cassette took (lines dropped, doubled, swapped, merged, shortened, a
    /// byte changed, a byte that is not UTF-8, a line inserted, the file cut), loading it as
    /// `replay` does either refuses it with `FILE:LINE:` naming a line that exists, or a real
    /// client sending each session's recorded client lines over TCP gets exactly that session's
    /// recorded replies, byte for byte, in order, with no mismatch (up to the reported line of
    /// a cassette that stops mid-exchange).
    #[test]
    fn a_damaged_cassette_is_refused_with_its_line_or_replayed_exactly(
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        rt.block_on(refused_or_replayed_exactly(&damages, dir.path()))?;
    }

    /// One damage alone, of each kind: the same promise, with the cases no mix hides.
    #[test]
    fn a_single_damage_is_refused_with_its_line_or_replayed_exactly(damage in damage()) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        rt.block_on(refused_or_replayed_exactly(&[damage], dir.path()))?;
    }
}

#[test]
fn the_undamaged_cassette_replays_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(refused_or_replayed_exactly(&[], dir.path()))
        .expect("it replays exactly");
    let c = Cassette::parse(WHOLE).expect("it loads");
    assert_eq!(c.sessions.len(), 2);
}

#[test]
fn two_merged_lines_are_refused_at_their_line_and_a_text_that_only_looks_like_one_is_not() {
    let merged = WHOLE.replacen("1 C: EHLO c.example\n", "1 C: EHLO c.example", 1);
    let e = Cassette::parse(&merged).expect_err("a merge");
    assert_eq!(e.line, 4, "{e}");
    assert!(
        e.message.contains("two lines merged") && e.message.contains("column 20"),
        "{e}"
    );
    // A command that says what a line would: written with its space escaped, read back intact.
    let said = b"NOOP 1 S: 250 ok\r\n";
    let line = cassette_format::line(1, cassette_format::Direction::Client, said);
    assert_eq!(line, "1 C: NOOP 1\\x20S: 250 ok\n");
    let text = format!(
        "{}\n1 session\n1 S: 220 mx\n{line}1 S: 250 ok\n1 end quit\n",
        cassette_format::MAGIC
    );
    let c = Cassette::parse(&text).expect("loads");
    assert_eq!(
        c.sessions[0].exchanges[1].request,
        cassette_format::Request::Command(said.to_vec())
    );
}
