//! Side by side: the smart host (as a separate `etrn-harness serve` process, recording on) and
//! Postfix's `smtp-sink`, the same workloads against both, several rounds. Results are ratios
//! within one run, never absolute thresholds.
//!
//! Each round runs every workload four times, in the order A B B A (the smart host first in odd
//! rounds, smtp-sink first in even ones), each run half the workload's count, and takes each
//! server's mean: a server that runs right after the other runs a little slower (in row (b) by
//! a tenth), and with plain alternation an odd number of rounds gave one server the first place
//! more often. Halves keep a round's work, and what the smart host records, as one whole run.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::cpu::{Usage, own_usage, process_usage, waited_children_usage};
use super::load::{self, LoadReport, LoadSpec, Workload};
use super::rss::rss_kib;
use super::verdict::RowVerdict;

/// Why a comparison could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} did not come up: {detail}")]
    NotReady { what: String, detail: String },
    #[error("Postfix's {0} is not installed (Debian: apt-get install postfix)")]
    Missing(&'static str),
}

/// How big a comparison is.
#[derive(Debug, Clone)]
pub struct CompareSpec {
    /// The `etrn-harness` binary to run as the smart host (a release build for real numbers).
    pub smart_host_exe: PathBuf,
    pub rounds: usize,
    /// Multiplies every workload's count: 1.0 is the full benchmark.
    pub scale: f64,
    /// Hard stop for each workload run.
    pub max_duration: Duration,
}

/// One server under test, as a child process.
pub(crate) struct Server {
    name: &'static str,
    pub(crate) addr: SocketAddr,
    /// Where its API listens, when it was started with `--api`.
    pub(crate) api: Option<SocketAddr>,
    child: Child,
}

impl Server {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `etrn-harness serve --quiet` as a process, with `extra` arguments.
pub(crate) fn start_smart_host(exe: &PathBuf, extra: &[&str]) -> Result<Server, BenchError> {
    start_serve(exe, Output::Quiet, extra)
}

/// What `serve` prints, as a benchmark starts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    /// `--quiet`: no live lines.
    Quiet,
    /// The default: a line per ETRN and message, to a pipe the bench drains (as a user's
    /// `serve | tee` or `serve > file` gets them).
    Default,
}

/// `etrn-harness serve` as a process, with `extra` arguments (with `--api`, the server knows
/// its API's address: its line follows the listening line).
fn start_serve(exe: &PathBuf, output: Output, extra: &[&str]) -> Result<Server, BenchError> {
    let mut child = Command::new(exe)
        .arg("serve")
        .args(if output == Output::Quiet {
            &["--quiet"][..]
        } else {
            &[][..]
        })
        .args(["--listen", "127.0.0.1:0"])
        // Room for every workload's connections, unless the row sets its own cap.
        .args(if extra.contains(&"--max-connections") {
            &[][..]
        } else {
            &["--max-connections", "100000"][..]
        })
        .args(["--idle-timeout", "600"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| BenchError::Spawn {
            what: exe.display().to_string(),
            source,
        })?;
    // A std child is not killed when dropped: one that never says where it listens is stopped
    // here, not left running.
    let abandon = |mut child: Child, detail: String| {
        let _ = child.kill();
        let _ = child.wait();
        Err(BenchError::NotReady {
            what: "the smart host".into(),
            detail,
        })
    };
    let Some(out) = child.stdout.take() else {
        return abandon(child, "no standard output".into());
    };
    let mut out = BufReader::new(out);
    let mut first = String::new();
    let _ = out.read_line(&mut first);
    // With --api, its address is the second line.
    let mut second = String::new();
    if extra.contains(&"--api") {
        let _ = out.read_line(&mut second);
    }
    let api = second
        .trim()
        .strip_prefix("api on http://")
        .and_then(|a| a.parse().ok());
    // Keep reading what it prints, so it never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let Some(addr) = first
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
    else {
        return abandon(child, format!("first line {first:?}"));
    };
    Ok(Server {
        name: "smart host",
        addr,
        api,
        child,
    })
}

async fn start_smtp_sink() -> Result<Server, BenchError> {
    let program = "/usr/sbin/smtp-sink";
    if !std::path::Path::new(program).exists() {
        return Err(BenchError::Missing("smtp-sink"));
    }
    // A free loopback port: bind, read it, release it for smtp-sink.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|source| BenchError::Spawn {
            what: "a port probe".into(),
            source,
        })?
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // As root smtp-sink insists on -u; 4096 is the listen backlog.
    let child = Command::new(program)
        .args(["-u", "nobody", &format!("127.0.0.1:{port}"), "4096"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| BenchError::Spawn {
            what: program.into(),
            source,
        })?;
    let server = Server {
        name: "smtp-sink",
        addr,
        api: None,
        child,
    };
    // smtp-sink says nothing when it is ready; its listening socket is the only sign. Bounded:
    // 200 attempts, 10 ms apart.
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(server);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(BenchError::NotReady {
        what: "smtp-sink".into(),
        detail: format!("nothing listening on {addr} after 2 s"),
    })
}

/// A measured quantity per server, one value per round (the mean of its two runs in that round).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub unit: &'static str,
    /// Whether more is better (rates) or less (memory, time).
    pub higher_is_better: bool,
    pub smart_host: Vec<f64>,
    pub smtp_sink: Vec<f64>,
    /// Latency percentiles of the last run of each server, µs: (p50, p99) for the smart host and
    /// smtp-sink.
    pub latency_us: Option<((u64, u64), (u64, u64))>,
    /// The server's CPU time (user and system, from `/proc`) per unit of the row (session,
    /// command, message), µs, one value per round as for the figures; empty for (d), whose
    /// figure is memory.
    pub smart_host_cpu_us_per_unit: Vec<f64>,
    pub smtp_sink_cpu_us_per_unit: Vec<f64>,
    /// The load tool's CPU time over the elapsed time of the same runs, one value per round:
    /// smtp-source is one thread, so near 1.0 it was busy throughout and the row measures it
    /// more than the server; the load generator runs a thread per CPU, so it may pass 1.0.
    pub client_busy_smart_host: Vec<f64>,
    pub client_busy_smtp_sink: Vec<f64>,
    /// The load tool's minor page faults per unit in the same runs, one value per round: how
    /// often the kernel had to serve it a page (each a trip into the kernel, a cost of its own
    /// that the row's time includes).
    pub client_faults_per_unit_smart_host: Vec<f64>,
    pub client_faults_per_unit_smtp_sink: Vec<f64>,
}

impl Row {
    /// smart host / smtp-sink per round: min, median, max.
    pub fn ratios(&self) -> (f64, f64, f64) {
        ratios(&self.smart_host, &self.smtp_sink)
    }

    /// The servers' CPU per unit, smart host / smtp-sink per round (lower is better): min,
    /// median, max.
    pub fn cpu_ratios(&self) -> (f64, f64, f64) {
        ratios(
            &self.smart_host_cpu_us_per_unit,
            &self.smtp_sink_cpu_us_per_unit,
        )
    }
}

/// `a / b` per round: min, median, max (NaN when there is none).
fn ratios(a: &[f64], b: &[f64]) -> (f64, f64, f64) {
    let mut r: Vec<f64> = a
        .iter()
        .zip(b)
        .filter(|(_, s)| **s > 0.0)
        .map(|(h, s)| h / s)
        .collect();
    r.sort_by(f64::total_cmp);
    (
        r.first().copied().unwrap_or(f64::NAN),
        median(&r),
        r.last().copied().unwrap_or(f64::NAN),
    )
}

fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The mean of a round's runs of one server (NaN if any failed: a failure is not averaged away).
fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// Median of unsorted values.
pub fn median_of(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    median(&v)
}

/// Everything a comparison measured.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    pub rounds: usize,
    pub scale: f64,
    /// Where it ran: CPUs, kernel, the versions of etrn-harness and Postfix.
    pub machine: Machine,
    pub rows: Vec<Row>,
    /// Each row's rounds counted, and which server they favour beyond chance (a sign test, see
    /// [`super::verdict`]), in the order of `rows`.
    pub verdicts: Vec<RowVerdict>,
    /// The peak RSS over the whole run, KiB, of the `serve --quiet` process that ran (a) to
    /// (d), which share it with smtp-sink.
    pub smart_host_peak_rss_kib: Option<u64>,
    pub smtp_sink_peak_rss_kib: Option<u64>,
    /// The peak RSS of the smart hosts of rows (e) to (i), by their setup.
    pub other_smart_hosts_peak_rss_kib: Vec<(String, Option<u64>)>,
    /// Every load report, for the record.
    pub runs: Vec<(String, LoadReport)>,
}

fn scaled(n: u64, scale: f64) -> u64 {
    ((n as f64 * scale).round() as u64).max(1)
}

/// One run of a comparison about to start, for a progress display.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// From 1.
    pub round: usize,
    pub rounds: usize,
    pub workload: &'a str,
    /// `smart host` or `smtp-sink`.
    pub server: &'a str,
}

/// Runs the comparison. Raises this process's file-descriptor limit (inherited by both servers)
/// so that workload (d) can hold thousands of connections.
pub async fn compare(spec: &CompareSpec) -> Result<CompareReport, BenchError> {
    compare_with(spec, |_| {}).await
}

/// Which smart host a row measures: `serve` as a user runs it differs by its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Host {
    /// `serve --quiet`: the server alone.
    Quiet,
    /// `serve` with its default live lines, to a pipe.
    DefaultOutput,
    /// `serve --quiet --record FILE`: the recording streamed as it happens.
    Recording,
    /// `serve --quiet --api ADDR` with [`API_WAITS`] waits pending on the API.
    ApiWaits,
    /// `serve --quiet --threads CPUS`: a worker per CPU (tokio's own default; serve's takes all
    /// CPUs but one). On a machine of one CPU it is the default, one event loop.
    WorkerPerCpu,
    /// `serve --quiet --max-connections 100 --when-full queue`: Postfix's admission, at most 100
    /// sessions served and the rest waiting in the listen queue.
    Queueing,
}

/// How a row is measured.
#[derive(Debug, Clone, Copy)]
enum Measure {
    /// A workload of the load generator: count and concurrency at scale 1.
    Load(Workload, u64, usize),
    /// Postfix's smtp-source: messages at scale 1, sessions at once, message size (`None`: its
    /// own default).
    SmtpSource(u64, usize, Option<usize>),
}

/// Waits held pending on the API during row (g).
pub const API_WAITS: usize = 10;

/// The rows, in the order they run and print.
const ROWS: [(&str, Host, Measure); 11] = [
    (
        "(a) new session, EHLO, ETRN, QUIT",
        Host::Quiet,
        Measure::Load(Workload::Etrn, 20_000, 32),
    ),
    (
        "(b) one session, pipelined ETRN",
        Host::Quiet,
        Measure::Load(Workload::Pipelined, 200_000, 1),
    ),
    (
        "(c) mail sink, 1 KiB message",
        Host::Quiet,
        Measure::Load(Workload::Mail, 20_000, 32),
    ),
    (
        "(c) smtp-source, 1 KiB messages",
        Host::Quiet,
        Measure::SmtpSource(20_000, 32, Some(1024)),
    ),
    (
        "(c) smtp-source, 1000 sessions at once",
        Host::Quiet,
        Measure::SmtpSource(20_000, 1000, Some(1024)),
    ),
    (
        "(d) idle connections held",
        Host::Quiet,
        Measure::Load(Workload::Idle, 5_000, 64),
    ),
    (
        "(e) serve, default output: smtp-source -s 20",
        Host::DefaultOutput,
        Measure::SmtpSource(5_000, 20, None),
    ),
    (
        "(f) serve --record FILE: new session + ETRN",
        Host::Recording,
        Measure::Load(Workload::Etrn, 20_000, 32),
    ),
    (
        "(g) 10 API waits pending: new session + ETRN",
        Host::ApiWaits,
        Measure::Load(Workload::Etrn, 20_000, 32),
    ),
    (
        "(h) serve --threads CPUS: new session + ETRN",
        Host::WorkerPerCpu,
        Measure::Load(Workload::Etrn, 20_000, 32),
    ),
    (
        "(i) --when-full queue, smtp-source -s 1000",
        Host::Queueing,
        Measure::SmtpSource(20_000, 1000, Some(1024)),
    ),
];

/// Row (i)'s `--max-connections`: Postfix's `default_process_limit`.
pub const QUEUEING_MAX_CONNECTIONS: usize = 100;

/// The smart hosts of one comparison, one process each.
struct Hosts {
    quiet: Server,
    default_output: Server,
    recording: Server,
    api: Server,
    worker_per_cpu: Server,
    queueing: Server,
    /// The API's base URL (`http://127.0.0.1:PORT`).
    api_url: String,
    /// Holds the streamed recording; removed at the end.
    _dir: tempfile::TempDir,
}

impl Hosts {
    /// Their process ids, in the order of [`Host`].
    fn pids(&self) -> [u32; 6] {
        [
            self.quiet.pid(),
            self.default_output.pid(),
            self.recording.pid(),
            self.api.pid(),
            self.worker_per_cpu.pid(),
            self.queueing.pid(),
        ]
    }

    /// The smart hosts, row (h)'s with a worker for each of `cpus`.
    fn start(exe: &PathBuf, cpus: usize) -> Result<Hosts, BenchError> {
        let dir = tempfile::tempdir().map_err(|source| BenchError::Spawn {
            what: "a folder for the streamed recording".into(),
            source,
        })?;
        let file = dir.path().join("recording.jsonl");
        let file = file.to_string_lossy().into_owned();
        let quiet = start_smart_host(exe, &[])?;
        let default_output = start_serve(exe, Output::Default, &[])?;
        let recording = start_smart_host(exe, &["--record", &file])?;
        let api = start_serve(exe, Output::Quiet, &["--api", "127.0.0.1:0"])?;
        let worker_per_cpu = start_smart_host(exe, &["--threads", &cpus.to_string()])?;
        let queueing = start_smart_host(
            exe,
            &[
                "--max-connections",
                &QUEUEING_MAX_CONNECTIONS.to_string(),
                "--when-full",
                "queue",
            ],
        )?;
        let api_url = api
            .api
            .map(|addr| format!("http://{addr}"))
            .ok_or_else(|| BenchError::NotReady {
                what: "the smart host's API".into(),
                detail: "no `api on` line".into(),
            })?;
        Ok(Hosts {
            quiet,
            default_output,
            recording,
            api,
            worker_per_cpu,
            queueing,
            api_url,
            _dir: dir,
        })
    }

    fn get(&self, host: Host) -> &Server {
        match host {
            Host::Quiet => &self.quiet,
            Host::DefaultOutput => &self.default_output,
            Host::Recording => &self.recording,
            Host::ApiWaits => &self.api,
            Host::WorkerPerCpu => &self.worker_per_cpu,
            Host::Queueing => &self.queueing,
        }
    }

    fn all(&self) -> [(Host, &Server); 6] {
        [
            (Host::Quiet, &self.quiet),
            (Host::DefaultOutput, &self.default_output),
            (Host::Recording, &self.recording),
            (Host::ApiWaits, &self.api),
            (Host::WorkerPerCpu, &self.worker_per_cpu),
            (Host::Queueing, &self.queueing),
        ]
    }
}

/// The machine and the programs a comparison ran on, for its report.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPUs this process may use.
    pub cpus: usize,
    /// The kernel's release (`uname -r`).
    pub kernel: Option<String>,
    pub etrn_harness_version: &'static str,
    /// Postfix's `mail_version` (smtp-sink and smtp-source come with it).
    pub postfix_version: Option<String>,
}

impl Machine {
    fn this() -> Machine {
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            kernel: crate::files::read_regular_file(
                std::path::Path::new("/proc/sys/kernel/osrelease"),
                256,
            )
            .ok()
            .map(|r| r.trim().to_owned()),
            etrn_harness_version: env!("CARGO_PKG_VERSION"),
            postfix_version: Command::new("/usr/sbin/postconf")
                .args(["-d", "-h", "mail_version"])
                .stderr(Stdio::null())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .filter(|v| !v.is_empty()),
        }
    }
}

/// [`compare`], saying each run before it starts (called between runs, never during one).
pub async fn compare_with(
    spec: &CompareSpec,
    mut step: impl FnMut(Step<'_>),
) -> Result<CompareReport, BenchError> {
    raise_fd_limit();
    // Read first, off the runtime's workers (it runs `postconf` and reads `/proc`): row (h) runs
    // a worker per CPU it counts, so the report names the count (h) ran with.
    let machine = tokio::task::spawn_blocking(Machine::this)
        .await
        .map_err(|e| BenchError::NotReady {
            what: "the machine's description".into(),
            detail: e.to_string(),
        })?;
    // Off the workers too: each start waits for the process's first line.
    let exe = spec.smart_host_exe.clone();
    let cpus = machine.cpus.max(1);
    let hosts = tokio::task::spawn_blocking(move || Hosts::start(&exe, cpus))
        .await
        .map_err(|e| BenchError::NotReady {
            what: "the smart hosts".into(),
            detail: e.to_string(),
        })??;
    let sink = start_smtp_sink().await?;
    // What a user who stops the run (or a test) needs to see that none is left behind.
    tracing::info!(smart_hosts = ?hosts.pids(), smtp_sink = sink.pid(), "the servers are running");
    let mut rows = empty_rows();
    // Each server runs a workload twice a round: each run takes half the count, so a round does
    // the work (and records the sessions) of one run of the whole count, as before A B B A.
    let half = CompareSpec {
        scale: spec.scale / 2.0,
        ..spec.clone()
    };
    let mut runs = Vec::new();
    for round in 0..spec.rounds {
        for (i, (name, host, measure)) in ROWS.iter().enumerate() {
            // A B B A: whatever the order costs (the one who runs second in a pair runs a little
            // slower) falls on both servers alike in every round.
            let ours = hosts.get(*host);
            let order: [&Server; 4] = if round % 2 == 0 {
                [ours, &sink, &sink, ours]
            } else {
                [&sink, ours, ours, &sink]
            };
            let mut latencies = [(0, 0); 2];
            // The smart host's runs, then smtp-sink's.
            let mut figures: [RoundFigures; 2] = Default::default();
            for (run, server) in order.into_iter().enumerate() {
                step(Step {
                    round: round + 1,
                    rounds: spec.rounds,
                    workload: name,
                    server: server.name,
                });
                let is_sink = server.name == "smtp-sink";
                // The waits are the smart host's load: none for smtp-sink, which has no API.
                let waits = if *host == Host::ApiWaits && !is_sink {
                    api_waits(&hosts.api_url, API_WAITS).await
                } else {
                    Vec::new()
                };
                let server_before = process_usage(server.pid());
                let measured = measure_once(server, measure, &half).await;
                let server_cpu = process_usage(server.pid())
                    .zip(server_before)
                    .map(|(after, before)| after.since(before).cpu_seconds);
                let mine = &mut figures[usize::from(is_sink)];
                mine.value.push(measured.value);
                // A run that failed, or that /proc could not measure, is NaN: not averaged away.
                mine.cpu_us_per_unit
                    .push(match (server_cpu, measured.units) {
                        (Some(cpu), Some(units)) => cpu * 1e6 / units as f64,
                        _ => f64::NAN,
                    });
                mine.client_busy.push(match measured.client_usage {
                    Some(used) if measured.elapsed_seconds > 0.0 => {
                        used.cpu_seconds / measured.elapsed_seconds
                    }
                    _ => f64::NAN,
                });
                mine.client_faults_per_unit
                    .push(match (measured.client_usage, measured.units) {
                        (Some(used), Some(units)) => used.minor_faults as f64 / units as f64,
                        _ => f64::NAN,
                    });
                if let Some(report) = measured.report {
                    latencies[usize::from(is_sink)] =
                        (report.latency_p50_us, report.latency_p99_us);
                    runs.push((
                        format!(
                            "round {} {} {} ({})",
                            round + 1,
                            server.name,
                            name,
                            if run < 2 { "first" } else { "second" }
                        ),
                        report,
                    ));
                }
                drop(waits);
            }
            let [host, sink] = figures;
            let row = &mut rows[i];
            row.smart_host.push(mean(&host.value));
            row.smtp_sink.push(mean(&sink.value));
            // (d)'s figure is memory: its CPU per connection held says nothing.
            if !matches!(measure, Measure::Load(Workload::Idle, ..)) {
                row.smart_host_cpu_us_per_unit
                    .push(mean(&host.cpu_us_per_unit));
                row.smtp_sink_cpu_us_per_unit
                    .push(mean(&sink.cpu_us_per_unit));
                row.client_busy_smart_host.push(mean(&host.client_busy));
                row.client_busy_smtp_sink.push(mean(&sink.client_busy));
                row.client_faults_per_unit_smart_host
                    .push(mean(&host.client_faults_per_unit));
                row.client_faults_per_unit_smtp_sink
                    .push(mean(&sink.client_faults_per_unit));
            }
            if matches!(measure, Measure::Load(..)) {
                rows[i].latency_us = Some((latencies[0], latencies[1]));
            }
        }
    }
    let verdicts = rows
        .iter()
        .map(|r| RowVerdict::of(&r.name, &r.smart_host, &r.smtp_sink, r.higher_is_better))
        .collect();
    Ok(CompareReport {
        rounds: spec.rounds,
        scale: spec.scale,
        machine,
        rows,
        verdicts,
        smart_host_peak_rss_kib: super::rss::peak_rss_kib(hosts.quiet.pid()),
        smtp_sink_peak_rss_kib: super::rss::peak_rss_kib(sink.pid()),
        other_smart_hosts_peak_rss_kib: hosts
            .all()
            .iter()
            .filter(|(h, _)| *h != Host::Quiet)
            .map(|(h, s)| (format!("{h:?}"), super::rss::peak_rss_kib(s.pid())))
            .collect(),
        runs,
    })
}

/// A row per measure of [`ROWS`], with its unit and no figure yet.
fn empty_rows() -> Vec<Row> {
    ROWS.iter()
        .map(|(name, _, measure)| Row {
            name: (*name).into(),
            unit: match measure {
                Measure::Load(Workload::Etrn | Workload::Mail, ..) => "sessions/s",
                Measure::Load(Workload::Pipelined, ..) => "ETRN/s",
                Measure::Load(Workload::Idle, ..) => "KiB RSS per connection",
                Measure::SmtpSource(..) => "messages/s",
            },
            higher_is_better: !matches!(measure, Measure::Load(Workload::Idle, ..)),
            smart_host: Vec::new(),
            smtp_sink: Vec::new(),
            latency_us: None,
            smart_host_cpu_us_per_unit: Vec::new(),
            smtp_sink_cpu_us_per_unit: Vec::new(),
            client_busy_smart_host: Vec::new(),
            client_busy_smtp_sink: Vec::new(),
            client_faults_per_unit_smart_host: Vec::new(),
            client_faults_per_unit_smtp_sink: Vec::new(),
        })
        .collect()
}

/// One server's runs of one row in one round.
#[derive(Default)]
struct RoundFigures {
    /// The row's figure.
    value: Vec<f64>,
    /// The server's CPU time per unit, µs.
    cpu_us_per_unit: Vec<f64>,
    /// The load tool's CPU time over the elapsed time.
    client_busy: Vec<f64>,
    /// The load tool's minor page faults per unit.
    client_faults_per_unit: Vec<f64>,
}

/// What one run of one measure gave.
struct Measured {
    /// The row's figure.
    value: f64,
    /// What the figure counts (sessions, commands, messages) for a CPU time per unit; `None` for
    /// (d), whose figure is memory, and for a run of smtp-source that failed or of the load
    /// generator that completed nothing.
    units: Option<u64>,
    elapsed_seconds: f64,
    /// The load tool's CPU time and page faults over the run: smtp-source's, or this process's
    /// (the load generator runs in it; the threads that drain `serve`'s output are idle in these
    /// rows).
    client_usage: Option<Usage>,
    /// The load generator's report, when it was the one that measured.
    report: Option<LoadReport>,
}

/// One measure against one server.
async fn measure_once(server: &Server, measure: &Measure, spec: &CompareSpec) -> Measured {
    match measure {
        Measure::Load(workload, count, concurrency) => {
            let mut load = LoadSpec::new(server.addr, *workload, scaled(*count, spec.scale));
            load.concurrency = *concurrency;
            load.max_duration = spec.max_duration;
            let pid = server.pid();
            let before = rss_kib(pid);
            let client_before = own_usage();
            let report = load::run_probing(&load, &|| rss_kib(pid)).await;
            let client_usage = own_usage()
                .zip(client_before)
                .map(|(after, before)| after.since(before));
            let (value, units) = match workload {
                Workload::Etrn | Workload::Mail => {
                    (report.sessions_per_sec(), Some(report.sessions))
                }
                Workload::Pipelined => (report.commands_per_sec(), Some(report.commands)),
                Workload::Idle => match (before, report.probe_while_held) {
                    (Some(b), Some(h)) if report.sessions > 0 => {
                        (h.saturating_sub(b) as f64 / report.sessions as f64, None)
                    }
                    _ => (f64::NAN, None),
                },
            };
            Measured {
                value,
                units: units.filter(|n| *n > 0),
                elapsed_seconds: report.elapsed_us as f64 / 1e6,
                client_usage,
                report: Some(report),
            }
        }
        Measure::SmtpSource(messages, sessions, size) => {
            let messages = scaled(*messages, spec.scale);
            let client_before = waited_children_usage();
            let started = Instant::now();
            let done =
                smtp_source(server.addr, messages, *sessions, *size, spec.max_duration).await;
            let elapsed_seconds = started.elapsed().as_secs_f64();
            let client_usage = waited_children_usage()
                .zip(client_before)
                .map(|(after, before)| after.since(before));
            Measured {
                value: if done {
                    messages as f64 / elapsed_seconds
                } else {
                    f64::NAN
                },
                units: done.then_some(messages),
                elapsed_seconds,
                client_usage: client_usage.filter(|_| done),
                report: None,
            }
        }
    }
}

/// `n` waits for ETRNs of domains that never come, pending on the API at `base` (what a test's
/// `GET /etrn?wait=DOMAIN` does while it waits): each an HTTP request whose connection is held
/// until the returned streams are dropped. A wait that cannot be sent is left out (the figure
/// is then kinder, never harsher).
async fn api_waits(base: &str, n: usize) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let Some(addr) = base
        .strip_prefix("http://")
        .and_then(|a| a.trim_end_matches('/').parse::<SocketAddr>().ok())
    else {
        return Vec::new();
    };
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
            continue;
        };
        let request = format!(
            "GET /etrn?wait=never-{i}.bench.example&timeout=300 HTTP/1.1\r\nHost: {addr}\r\n\r\n"
        );
        if stream.write_all(request.as_bytes()).await.is_ok() {
            held.push(stream);
        }
    }
    held
}

/// Postfix's own load tool against `addr`: `messages` messages over `sessions` sessions at once
/// (of `size` octets; `None`: smtp-source's default), a new connection per message; whether it
/// ran and succeeded within `limit` (it is waited for: its CPU time and page faults count as
/// this process's waited children's). It runs with [`SMTP_SOURCE_TUNABLES`].
async fn smtp_source(
    addr: SocketAddr,
    messages: u64,
    sessions: usize,
    size: Option<usize>,
    limit: Duration,
) -> bool {
    let program = "/usr/sbin/smtp-source";
    if !std::path::Path::new(program).exists() {
        return false;
    }
    let Ok(mut child) = smtp_source_command(program, addr, messages, sessions, size).spawn() else {
        return false;
    };
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(status)) => status.success(),
        Ok(Err(_)) => false,
        Err(_) => {
            // Killed and waited for here (a second at most), so its usage is counted now
            // and never in a later run's.
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
            false
        }
    }
}

/// The command line and environment [`smtp_source`] runs `program` with.
fn smtp_source_command(
    program: &str,
    addr: SocketAddr,
    messages: u64,
    sessions: usize,
    size: Option<usize>,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(program);
    if let Some(size) = size {
        command.args(["-l", &size.to_string()]);
    }
    command
        .env(
            "GLIBC_TUNABLES",
            smtp_source_tunables(std::env::var_os("GLIBC_TUNABLES")),
        )
        .args(["-s", &sessions.to_string(), "-m", &messages.to_string()])
        .args(["-f", "bench@bench.example", "-t", "sink@sink.example"])
        .arg(addr.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

/// glibc's malloc settings for smtp-source: its heap is never handed back to the kernel (no
/// trimming), and blocks under 32 MiB (glibc's largest threshold on 64-bit) come from the heap,
/// never from a mapping of their own. Left as glibc sets them, the client's freed memory goes
/// back to the kernel as the order its sessions end allows and is mapped in again page by page
/// (Postfix's allocator fills every block it hands out), and its page faults, a few thousand in
/// one run and over a hundred thousand in the next against the same server, swing the row's
/// rate more than the servers do (the README's Benchmarks has the measurements). The same for
/// both servers; the servers run as users run them.
const SMTP_SOURCE_TUNABLES: &str =
    "glibc.malloc.trim_threshold=1073741824:glibc.malloc.mmap_threshold=33554432";

/// [`SMTP_SOURCE_TUNABLES`] after the caller's own `GLIBC_TUNABLES` (glibc takes the last of a
/// name given twice, so these two are ours whatever the caller set).
fn smtp_source_tunables(callers: Option<std::ffi::OsString>) -> std::ffi::OsString {
    let mut tunables = callers.unwrap_or_default();
    if !tunables.is_empty() {
        tunables.push(":");
    }
    tunables.push(SMTP_SOURCE_TUNABLES);
    tunables
}

/// Raises the soft file-descriptor limit to the hard limit, for this process and its children.
pub fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        // Best effort: without it workload (d) reports connection errors, which show.
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// The comparison as a table for people.
pub fn table(report: &CompareReport) -> String {
    let m = &report.machine;
    let mut o = format!(
        "{} round(s), scale {}; ratio = smart host / smtp-sink per round (min / median / max); \
         rounds = the rounds the smart host did better in, and whether that many could be \
         chance (a sign test at 5% in each direction: better 5/5, 6/6, 7/7, 7/8 ...; fewer than \
         five rounds never decide; across many rows trust a verdict two runs repeat)\n\
         {} CPU(s), kernel {}, etrn-harness {}, Postfix {}\n\n",
        report.rounds,
        report.scale,
        m.cpus,
        m.kernel.as_deref().unwrap_or("?"),
        m.etrn_harness_version,
        m.postfix_version.as_deref().unwrap_or("?"),
    );
    o.push_str(&format!(
        "{:<46} {:<24} {:>14} {:>14}   {:<22} {:<12} {}\n",
        "workload",
        "unit",
        "smart host",
        "smtp-sink",
        "ratio",
        "rounds",
        "p50/p99 µs (host | sink)"
    ));
    for (r, verdict) in report.rows.iter().zip(&report.verdicts) {
        let (lo, mid, hi) = r.ratios();
        let lat = r
            .latency_us
            .map(|((a, b), (c, d))| format!("{a}/{b} | {c}/{d}"))
            .unwrap_or_default();
        o.push_str(&format!(
            "{:<46} {:<24} {:>14.1} {:>14.1}   {:<22} {:<12} {}\n",
            r.name,
            r.unit,
            median_of(&r.smart_host),
            median_of(&r.smtp_sink),
            format!("{lo:.2} / {mid:.2} / {hi:.2}"),
            verdict.label(),
            lat
        ));
    }
    o.push_str(&format!(
        "\nCPU (user + system, from /proc in 10 ms ticks): each server's per unit of the row, and \
         the load tool's CPU time over the elapsed time\n(smtp-source, one thread: near 100% it \
         was the bottleneck, and the row above measures it more than the server; the load \
         generator runs a thread per CPU), and the load tool's minor page faults per unit\n\n\
         {:<46} {:>12} {:>12}   {:<22} {:<30} {}\n",
        "workload",
        "host µs",
        "sink µs",
        "ratio (lower: less)",
        "load tool busy (host | sink)",
        "load tool faults/unit (host | sink)"
    ));
    for r in report
        .rows
        .iter()
        .filter(|r| !r.smart_host_cpu_us_per_unit.is_empty())
    {
        let (lo, mid, hi) = r.cpu_ratios();
        o.push_str(&format!(
            "{:<46} {:>12.1} {:>12.1}   {:<22} {:<30} {:.2} | {:.2}\n",
            r.name,
            median_of(&r.smart_host_cpu_us_per_unit),
            median_of(&r.smtp_sink_cpu_us_per_unit),
            format!("{lo:.2} / {mid:.2} / {hi:.2}"),
            format!(
                "{:.0}% | {:.0}%",
                median_of(&r.client_busy_smart_host) * 100.0,
                median_of(&r.client_busy_smtp_sink) * 100.0
            ),
            median_of(&r.client_faults_per_unit_smart_host),
            median_of(&r.client_faults_per_unit_smtp_sink),
        ));
    }
    o.push_str(&format!(
        "\npeak RSS: smart host ((a) to (d)) {} KiB, smtp-sink {} KiB\n",
        report
            .smart_host_peak_rss_kib
            .map_or("?".into(), |v| v.to_string()),
        report
            .smtp_sink_peak_rss_kib
            .map_or("?".into(), |v| v.to_string())
    ));
    for (setup, peak) in &report.other_smart_hosts_peak_rss_kib {
        o.push_str(&format!(
            "peak RSS: smart host {setup} {} KiB\n",
            peak.map_or("?".into(), |v| v.to_string())
        ));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn smtp_source_runs_with_the_tunables_and_the_rows_load() {
        let addr: SocketAddr = "127.0.0.1:2525".parse().expect("an address");
        let command = smtp_source_command("smtp-source", addr, 500, 32, Some(1024));
        let command = command.as_std();
        let tunables = command
            .get_envs()
            .find(|(name, _)| *name == "GLIBC_TUNABLES")
            .and_then(|(_, value)| value)
            .expect("GLIBC_TUNABLES is set for the child");
        assert!(
            tunables.to_string_lossy().ends_with(SMTP_SOURCE_TUNABLES),
            "{tunables:?}"
        );
        let args: Vec<_> = command.get_args().map(|a| a.to_string_lossy()).collect();
        assert_eq!(
            args,
            [
                "-l",
                "1024",
                "-s",
                "32",
                "-m",
                "500",
                "-f",
                "bench@bench.example",
                "-t",
                "sink@sink.example",
                "127.0.0.1:2525"
            ]
        );
    }

    #[test]
    fn smtp_source_gets_the_callers_tunables_then_its_own() {
        assert_eq!(
            smtp_source_tunables(None),
            OsString::from(SMTP_SOURCE_TUNABLES)
        );
        assert_eq!(
            smtp_source_tunables(Some(OsString::new())),
            OsString::from(SMTP_SOURCE_TUNABLES)
        );
        assert_eq!(
            smtp_source_tunables(Some(OsString::from("glibc.malloc.tcache_count=0"))),
            OsString::from(format!(
                "glibc.malloc.tcache_count=0:{SMTP_SOURCE_TUNABLES}"
            ))
        );
    }
}
