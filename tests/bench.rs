//! The load generator counts right: sessions, commands, replies by code and errors match what the
//! smart host recorded. No timing is asserted; speed is for `etrn-harness bench compare`.

mod common;

use std::time::Duration;

use etrn_harness::bench::load::{self, LoadSpec, Workload};
use etrn_harness::proto::SmartHostScript;
use etrn_harness::smarthost::{SmartHost, SmartHostConfig};

const WAIT: Duration = Duration::from_secs(20);

async fn host(script: &str) -> SmartHost {
    let script: SmartHostScript = toml::from_str(script).expect("valid script");
    SmartHost::start(SmartHostConfig::with_script(script))
        .await
        .expect("smart host starts")
}

fn spec(host: &SmartHost, workload: Workload, count: u64) -> LoadSpec {
    let mut s = LoadSpec::new(host.addr(), workload, count);
    s.concurrency = 4;
    s.max_duration = WAIT;
    s
}

#[tokio::test]
async fn new_session_workload_counts_sessions_commands_and_replies() {
    let h = host("").await;
    let r = load::run(&spec(&h, Workload::Etrn, 40)).await;
    assert_eq!((r.sessions, r.errors, r.stopped_by_time), (40, 0, false));
    // EHLO, ETRN and QUIT per session.
    assert_eq!(r.commands, 120);
    assert_eq!(r.replies.get(&250), Some(&80));
    assert_eq!(r.replies.get(&221), Some(&40));
    let rec = h
        .recorder()
        .wait_for_closed_sessions(40, WAIT)
        .await
        .expect("all closed");
    assert_eq!(rec.sessions.len(), 40);
    assert_eq!(rec.etrn_domains().len(), 40);
    assert!(r.latency_p50_us > 0 && r.latency_p99_us >= r.latency_p50_us);
}

#[tokio::test]
async fn refusals_are_counted_by_code_and_hang_ups_as_errors() {
    let refusing = host("etrn_default = \"458 busy\"").await;
    let r = load::run(&spec(&refusing, Workload::Etrn, 10)).await;
    assert_eq!(r.replies.get(&458), Some(&10));
    assert_eq!(r.errors, 0, "a complete reply is not an error");
    let hanging = host("etrn_default = { close = true }").await;
    let r = load::run(&spec(&hanging, Workload::Etrn, 10)).await;
    assert_eq!((r.sessions, r.errors), (0, 10));
    assert!(r.first_error.is_some());
}

#[tokio::test]
async fn pipelined_workload_sends_exactly_count_etrns_in_one_session() {
    let h = host("").await;
    let r = load::run(&spec(&h, Workload::Pipelined, 1000)).await;
    assert_eq!((r.sessions, r.errors), (1, 0));
    assert_eq!(r.commands, 1002, "EHLO, 1000 ETRN, QUIT");
    let rec = h
        .recorder()
        .wait_for_closed_sessions(1, WAIT)
        .await
        .expect("closed");
    assert_eq!(rec.sessions[0].etrn.len(), 1000);
    // Without PIPELINING it still sends them all, one at a time.
    let plain = host("ehlo_keywords = [\"ETRN\"]").await;
    let r = load::run(&spec(&plain, Workload::Pipelined, 100)).await;
    assert_eq!((r.commands, r.errors), (102, 0));
}

#[tokio::test]
async fn mail_workload_delivers_messages_of_the_given_size() {
    let h = host("").await;
    let r = load::run(&spec(&h, Workload::Mail, 12)).await;
    assert_eq!((r.sessions, r.errors, r.commands), (12, 0, 72));
    let rec = h
        .recorder()
        .wait_for_closed_sessions(12, WAIT)
        .await
        .expect("closed");
    for s in &rec.sessions {
        assert_eq!(s.messages.len(), 1);
        // 1024 octets of message data; the terminating "." line is not counted.
        assert_eq!(s.messages[0].size, 1024);
    }
}

#[tokio::test]
async fn idle_workload_holds_every_connection_while_probing() {
    let h = host("").await;
    let recorder = h.recorder();
    // The probe counts the sessions the server has open at that moment.
    let r = load::run_probing(&spec(&h, Workload::Idle, 30), &|| {
        let open = recorder
            .recording()
            .sessions
            .iter()
            .filter(|s| s.close.is_none())
            .count();
        Some(open as u64)
    })
    .await;
    assert_eq!((r.sessions, r.errors), (30, 0));
    assert_eq!(
        r.probe_while_held,
        Some(30),
        "all 30 were open at the probe"
    );
    h.recorder()
        .wait_for_closed_sessions(30, WAIT)
        .await
        .expect("closed afterwards");
}

#[tokio::test]
async fn the_time_bound_stops_a_run_before_its_count() {
    let h = host("etrn_default = { reply = \"250 OK\", delay_ms = 20 }").await;
    let mut s = spec(&h, Workload::Etrn, 1_000_000);
    s.max_duration = Duration::from_millis(300);
    let r = load::run(&s).await;
    assert!(r.stopped_by_time);
    assert!(r.sessions < 1_000_000);
}

#[test]
fn messages_have_the_requested_size() {
    for size in [64, 1024, 4000] {
        let m = load::message(size);
        // `size` octets of data ending in CRLF, then the terminating ".\r\n".
        assert_eq!(m.len(), size + 3);
        assert!(m.ends_with(b"\r\n.\r\n"));
    }
}

#[test]
fn bench_load_refuses_targets_off_this_machine() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args([
            "bench",
            "load",
            "--target",
            "192.0.2.1:25",
            "--workload",
            "etrn",
            "--count",
            "1",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
}

#[tokio::test]
async fn bench_load_takes_host_port_like_upstream() {
    let h = host("").await;
    let target = format!("localhost:{}", h.addr().port());
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(["bench", "load", "--target", &target])
        .args(["--workload", "etrn", "--count", "3", "--json"])
        .output()
        .await
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // localhost may resolve to ::1 first while the host listens on 127.0.0.1: then every
    // session is an error, and still the name was taken as HOST:PORT and found to be loopback.
    assert!(
        out.status.code() != Some(2),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("a JSON report");
    let first = std::net::ToSocketAddrs::to_socket_addrs(&target)
        .expect("resolves")
        .next()
        .expect("an address");
    if first.is_ipv4() {
        assert_eq!(report["sessions"], 3, "{stdout}");
        assert_eq!(report["errors"], 0, "{stdout}");
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(["bench", "load", "--target", "no-port-here"])
        .args(["--workload", "etrn", "--count", "1"])
        .output()
        .expect("runs");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not HOST:PORT"));
}

#[tokio::test]
async fn the_waits_benchmark_runs_every_row_and_counts_every_session() {
    use etrn_harness::bench::waits::{self, Held, WaitsSpec};
    let spec = WaitsSpec {
        sessions: 30,
        waits: vec![2, 20],
        subscribers: 5,
        feeds: 3,
        rounds: 2,
        concurrency: 4,
        max_duration: WAIT,
    };
    let r = waits::waits(&spec).await.expect("the benchmark runs");
    // Counts only: the rates and their ratios are figures, never asserted.
    assert_eq!((r.sessions, r.errors), (5 * 2 * 30, 0));
    let held: Vec<Held> = r.rows.iter().map(|row| row.held).collect();
    assert_eq!(
        held,
        [
            Held::Nothing,
            Held::Waits(2),
            Held::Waits(20),
            Held::Subscribers(5),
            Held::Feeds(3)
        ]
    );
    assert!(r.rows.iter().all(|row| row.sessions_per_sec > 0.0), "{r:?}");
    let table = waits::table(&r);
    for line in [
        "| nothing held |",
        "| 2 waits pending |",
        "| 20 waits pending |",
        "| 5 live-feed subscribers |",
        "| 3 GET /events clients over HTTP |",
    ] {
        assert!(table.contains(line), "{line}\n{table}");
    }
}

/// `bench api` at a small scale: both tables, every row, the reads and the shutdown measured on
/// a real `serve --api` process.
#[test]
fn bench_api_prints_every_row_of_both_tables() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(["bench", "api", "--sessions", "20", "--waits", "3,30"])
        .args(["--subscribers", "4", "--feeds", "2", "--rounds", "1"])
        .args(["--concurrency", "2"])
        .args([
            "--recorded-sessions",
            "200",
            "--readers",
            "3",
            "--duration",
            "60",
        ])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "| nothing held |",
        "| 3 waits pending |",
        "| 30 waits pending |",
        "| 4 live-feed subscribers |",
        "| 2 GET /events clients over HTTP |",
        "| sessions, failed | 100, 0 |",
        "200 sessions recorded",
        "| steady, after the sessions |",
        "| peak while 3 clients read GET /recording at once",
        "| peak while stopping and finishing FILE",
        "| failed reads and sessions | 0 |",
    ] {
        assert!(stdout.contains(row), "{row}\n{stdout}");
    }
}

#[tokio::test]
async fn bench_load_names_the_workload_as_the_command_line_takes_it() {
    let h = host("").await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(["bench", "load", "--target", &h.addr().to_string()])
        .args(["--workload", "pipelined", "--count", "3"])
        .output()
        .await
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!("workload pipelined against {}\n", h.addr())),
        "{stdout}"
    );
}

#[tokio::test]
async fn the_memory_benchmark_measures_the_stream_a_killed_server_left() {
    use etrn_harness::bench::memory::{self, MemorySpec};
    let spec = MemorySpec {
        smart_host_exe: env!("CARGO_BIN_EXE_etrn-harness").into(),
        full_sessions: 50,
        soak_sessions: 200,
        max_duration: WAIT,
    };
    let report = tokio::time::timeout(WAIT * 3, memory::memory(&spec))
        .await
        .expect("in time")
        .expect("measured");
    assert_eq!(report.soak_sessions, 200, "{report:?}");
    // Each streamed session is a few lines of JSON (opened, the commands and replies, closed):
    // far more than 100 octets, never nothing.
    assert!(
        report.soak_stream_mib * 1024.0 * 1024.0 > 200.0 * 100.0,
        "{report:?}"
    );
    let table = memory::table(&report);
    assert!(table.contains("; stream "), "{table}");
    assert!(!table.contains("; stream 0.0 MiB"), "{table}");
}

#[tokio::test]
async fn compare_runs_every_workload_against_both_servers_and_names_the_machine() {
    use etrn_harness::bench::compare::{self, CompareSpec};
    if !common::peer_available("/usr/sbin/smtp-sink", &[])
        || !common::peer_available("/usr/sbin/smtp-source", &[])
    {
        return;
    }
    let spec = CompareSpec {
        smart_host_exe: env!("CARGO_BIN_EXE_etrn-harness").into(),
        // Two: the second begins with smtp-sink (B A A B).
        rounds: 2,
        // Per server and round 20 sessions, 200 pipelined ETRNs, 5 idle connections, 5
        // messages for (e), each in two runs of half.
        scale: 0.001,
        max_duration: WAIT,
    };
    let mut steps = Vec::new();
    let r = compare::compare_with(&spec, |s| {
        steps.push(format!("{} {}", s.workload, s.server))
    })
    .await
    .expect("the comparison runs");
    // Counts and names only: the rates and their ratios are figures, never asserted.
    let names: Vec<&str> = r.rows.iter().map(|row| row.name.as_str()).collect();
    for new in [
        "(e) serve, default output",
        "(f) serve --record",
        "(g) 10 API waits",
        "(h) serve --threads CPUS",
        "(c) smtp-source, 1000 sessions at once",
        "(i) --when-full queue",
    ] {
        assert!(names.iter().any(|n| n.starts_with(new)), "{names:?}");
    }
    for row in &r.rows {
        assert_eq!(
            (row.smart_host.len(), row.smtp_sink.len()),
            (2, 2),
            "{}",
            row.name
        );
        // CPU per unit and the load tool's share, a round each, for every row but (d) (memory).
        let cpu_rounds = if row.name.starts_with("(d)") { 0 } else { 2 };
        for (what, v) in [
            ("host CPU", &row.smart_host_cpu_us_per_unit),
            ("sink CPU", &row.smtp_sink_cpu_us_per_unit),
            ("host client busy", &row.client_busy_smart_host),
            ("sink client busy", &row.client_busy_smtp_sink),
            ("host client faults", &row.client_faults_per_unit_smart_host),
            ("sink client faults", &row.client_faults_per_unit_smtp_sink),
        ] {
            assert_eq!(v.len(), cpu_rounds, "{} {what}", row.name);
            // Ticks of 10 ms: a tiny run may read 0; never negative, never NaN.
            assert!(v.iter().all(|x| *x >= 0.0), "{} {what}: {v:?}", row.name);
        }
        // smtp-source, a new process each run, maps in at least its stack and the code it ran:
        // its faults are counted (as a waited-for child's) against both servers.
        if row.name.contains("smtp-source") {
            for v in [
                &row.client_faults_per_unit_smart_host,
                &row.client_faults_per_unit_smtp_sink,
            ] {
                assert!(v.iter().all(|x| *x > 0.0), "{}: {v:?}", row.name);
            }
        }
        if row.higher_is_better {
            // A rate: every run completed against both (NaN when smtp-source failed).
            let all: Vec<f64> = row
                .smart_host
                .iter()
                .chain(&row.smtp_sink)
                .copied()
                .collect();
            assert!(all.iter().all(|v| *v > 0.0), "{}: {all:?}", row.name);
        }
    }
    // A B B A in every round, the first beginning with the smart host and the second with
    // smtp-sink, each row in turn.
    assert_eq!(steps.len(), 2 * 4 * r.rows.len(), "{steps:?}");
    let rows_twice = r
        .rows
        .iter()
        .map(|row| (row, 0))
        .chain(r.rows.iter().map(|row| (row, 1)));
    for ((row, round), runs) in rows_twice.zip(steps.chunks(4)) {
        let servers: Vec<&str> = runs
            .iter()
            .map(|s| s.strip_prefix(row.name.as_str()).unwrap_or(s).trim())
            .collect();
        let expected = if round == 0 {
            ["smart host", "smtp-sink", "smtp-sink", "smart host"]
        } else {
            ["smtp-sink", "smart host", "smart host", "smtp-sink"]
        };
        assert_eq!(servers, expected, "{} in round {}", row.name, round + 1);
    }
    for (name, run) in &r.runs {
        assert_eq!(run.errors, 0, "{name}: {:?}", run.first_error);
    }
    assert!(r.machine.cpus > 0);
    assert_eq!(r.machine.etrn_harness_version, env!("CARGO_PKG_VERSION"));
    assert!(r.machine.postfix_version.is_some());
    assert!(r.machine.kernel.is_some());
    let json = serde_json::to_value(&r).expect("serialises");
    assert!(json["machine"]["postfix_version"].is_string(), "{json}");
    let table = compare::table(&r);
    assert!(
        table.contains("(g) 10 API waits") && table.contains("Postfix"),
        "{table}"
    );
    assert!(table.contains("load tool busy"), "{table}");
    assert!(table.contains("load tool faults/unit"), "{table}");
    assert!(
        json["rows"][0]["smart_host_cpu_us_per_unit"].is_array(),
        "{json}"
    );
    // A verdict per row, from its two rounds: two rounds can never tell the servers apart.
    assert_eq!(r.verdicts.len(), r.rows.len());
    for (row, v) in r.rows.iter().zip(&r.verdicts) {
        assert_eq!(v.workload, row.name);
        assert_eq!(v.rounds, 2, "{v:?}");
        assert_eq!(
            v.verdict,
            etrn_harness::bench::verdict::Verdict::NoClearDifference
        );
        assert!(table.contains(&v.label()), "{table}");
    }
    assert_eq!(
        (
            &json["verdicts"][0]["verdict"],
            &json["verdicts"][0]["smart_host_ahead"]
        ),
        (
            &serde_json::json!("no_clear_difference"),
            &serde_json::json!(r.verdicts[0].smart_host_ahead)
        ),
        "{json}"
    );
}

/// Kills the processes it names when dropped: what a failing test would otherwise leave running.
struct KillOnDrop(Vec<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Only for a failing test: after a passing one the ids are free, maybe someone else's.
        if !std::thread::panicking() {
            return;
        }
        for pid in self
            .0
            .iter()
            .filter_map(|p| rustix::process::Pid::from_raw(*p))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Whether a process with this id exists (a zombie counts: it is not reaped yet).
fn process_exists(pid: i32) -> bool {
    rustix::process::Pid::from_raw(pid)
        .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
}

#[tokio::test]
async fn a_terminated_compare_leaves_no_server_running() {
    use tokio::io::AsyncBufReadExt;
    if !common::peer_available("/usr/sbin/smtp-sink", &[]) {
        return;
    }
    // Large enough that the run is still going when the signal comes: the signal is sent as
    // soon as the servers are logged running, and the test ends with the bench.
    let dir = tempfile::tempdir().expect("a temporary folder");
    let report = dir.path().join("compare.json");
    let mut bench = tokio::process::Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(["bench", "compare", "--rounds", "3", "--scale", "1"])
        .arg("--json")
        .arg(&report)
        .args(["--log-format", "json"])
        .env("RUST_LOG", "etrn_harness::bench=info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("bench compare starts");
    let stderr = bench.stderr.take().expect("piped");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    // Every server's pid, from the bench's own log line.
    let servers: Vec<i32> = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.expect("stderr reads") {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let fields = &event["fields"];
            if fields["message"] != "the servers are running" {
                continue;
            }
            let hosts = fields["smart_hosts"].as_str().expect("a list of pids");
            let mut pids: Vec<i32> = hosts
                .trim_matches(['[', ']'])
                .split(", ")
                .map(|p| p.parse().expect("a pid"))
                .collect();
            pids.push(
                fields["smtp_sink"]
                    .as_i64()
                    .and_then(|p| i32::try_from(p).ok())
                    .expect("smtp-sink's pid"),
            );
            return pids;
        }
        panic!("bench compare ended before its servers ran");
    })
    .await
    .expect("the servers are running within the wait");
    // Should the bench leave them, the test does not.
    let _reaper = KillOnDrop(servers.clone());
    assert_eq!(
        servers.len(),
        7,
        "six smart hosts and smtp-sink: {servers:?}"
    );
    assert!(
        servers.iter().all(|pid| process_exists(*pid)),
        "{servers:?}"
    );
    let pid = bench
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .expect("running");
    let pid = rustix::process::Pid::from_raw(pid).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("signalled");
    let status = tokio::time::timeout(WAIT, bench.wait())
        .await
        .expect("bench compare stops within the wait")
        .expect("waited");
    assert_eq!(
        status.code(),
        Some(5),
        "stopped before its result: {status}"
    );
    // The bench reaps what it kills before it exits, so none is even a zombie.
    let left: Vec<i32> = servers.into_iter().filter(|p| process_exists(*p)).collect();
    assert!(left.is_empty(), "still running after the bench: {left:?}");
    // The bench has exited: what it wrote after the log line ends at the pipe's end.
    let rest = tokio::time::timeout(WAIT, async {
        let mut rest = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push(line);
        }
        rest
    })
    .await
    .expect("the rest of stderr within the wait");
    assert!(
        rest.iter().any(|l| l.contains("bench compare terminated")),
        "{rest:?}"
    );
    // Stopped before the comparison was whole: no report, not even part of one.
    let left_in_dir: Vec<_> = std::fs::read_dir(dir.path())
        .expect("the folder reads")
        .collect();
    assert!(left_in_dir.is_empty(), "{left_in_dir:?}");
    assert!(!report.exists());
}

#[tokio::test]
async fn compare_writes_its_json_report_whole() {
    if !common::peer_available("/usr/sbin/smtp-sink", &[])
        || !common::peer_available("/usr/sbin/smtp-source", &[])
    {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary folder");
    let report = dir.path().join("compare.json");
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(["bench", "compare", "--rounds", "1", "--scale", "0.001"])
        .arg("--json")
        .arg(&report)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT * 6, run)
        .await
        .expect("bench compare ends within the wait")
        .expect("bench compare runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("conformance run, builtin target"),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("the report is there"))
            .expect("the report is JSON");
    assert!(
        json["rows"].as_array().is_some_and(|rows| rows.len() > 10),
        "{json}"
    );
    // Renamed into place: nothing else is left in the folder.
    assert_eq!(std::fs::read_dir(dir.path()).expect("reads").count(), 1);
}
