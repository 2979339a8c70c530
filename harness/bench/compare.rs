//! Side by side: the smart host (as a separate `etrn-harness serve` process, recording on) and
//! Postfix's `smtp-sink`, the same workloads against both, alternating, several rounds. Results are
//! ratios within one run, never absolute thresholds.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::load::{self, LoadReport, LoadSpec, Workload};
use super::rss::rss_kib;

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
    let mut child = Command::new(exe)
        .args(["serve", "--quiet", "--listen", "127.0.0.1:0"])
        .args(["--max-connections", "100000", "--idle-timeout", "600"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| BenchError::Spawn {
            what: exe.display().to_string(),
            source,
        })?;
    let Some(out) = child.stdout.take() else {
        return Err(BenchError::NotReady {
            what: "the smart host".into(),
            detail: "no standard output".into(),
        });
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
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| BenchError::NotReady {
            what: "the smart host".into(),
            detail: format!("first line {first:?}"),
        })?;
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

/// A measured quantity per server, one value per round.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub unit: &'static str,
    /// Whether more is better (rates) or less (memory, time).
    pub higher_is_better: bool,
    pub smart_host: Vec<f64>,
    pub smtp_sink: Vec<f64>,
    /// Latency percentiles of the last round, µs: (p50, p99) for the smart host and smtp-sink.
    pub latency_us: Option<((u64, u64), (u64, u64))>,
}

impl Row {
    /// smart host / smtp-sink per round: min, median, max.
    pub fn ratios(&self) -> (f64, f64, f64) {
        let mut r: Vec<f64> = self
            .smart_host
            .iter()
            .zip(&self.smtp_sink)
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
}

fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
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
    pub rows: Vec<Row>,
    /// The smart host's peak RSS over the whole run, KiB.
    pub smart_host_peak_rss_kib: Option<u64>,
    pub smtp_sink_peak_rss_kib: Option<u64>,
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

/// [`compare`], saying each run before it starts (called between runs, never during one).
pub async fn compare_with(
    spec: &CompareSpec,
    mut step: impl FnMut(Step<'_>),
) -> Result<CompareReport, BenchError> {
    raise_fd_limit();
    let ours = start_smart_host(&spec.smart_host_exe, &[])?;
    let sink = start_smtp_sink().await?;
    let workloads: [(&str, Workload, u64, usize); 4] = [
        (
            "(a) new session, EHLO, ETRN, QUIT",
            Workload::Etrn,
            20_000,
            32,
        ),
        (
            "(b) one session, pipelined ETRN",
            Workload::Pipelined,
            200_000,
            1,
        ),
        ("(c) mail sink, 1 KiB message", Workload::Mail, 20_000, 32),
        ("(d) idle connections held", Workload::Idle, 5_000, 64),
    ];
    let mut rows: Vec<Row> = workloads
        .iter()
        .map(|(name, w, _, _)| Row {
            name: (*name).into(),
            unit: match w {
                Workload::Etrn | Workload::Mail => "sessions/s",
                Workload::Pipelined => "ETRN/s",
                Workload::Idle => "KiB RSS per connection",
            },
            higher_is_better: *w != Workload::Idle,
            smart_host: Vec::new(),
            smtp_sink: Vec::new(),
            latency_us: None,
        })
        .collect();
    let mut source_row = Row {
        name: "(c) smtp-source, 1 KiB messages".into(),
        unit: "messages/s",
        higher_is_better: true,
        smart_host: Vec::new(),
        smtp_sink: Vec::new(),
        latency_us: None,
    };
    let mut runs = Vec::new();
    for round in 0..spec.rounds {
        // Alternate which server goes first, so warm caches and noise fall on both.
        let order: [&Server; 2] = if round % 2 == 0 {
            [&ours, &sink]
        } else {
            [&sink, &ours]
        };
        for (i, (name, workload, count, concurrency)) in workloads.iter().enumerate() {
            let mut latencies = [(0, 0); 2];
            for server in order {
                step(Step {
                    round: round + 1,
                    rounds: spec.rounds,
                    workload: name,
                    server: server.name,
                });
                let mut load = LoadSpec::new(server.addr, *workload, scaled(*count, spec.scale));
                load.concurrency = *concurrency;
                load.max_duration = spec.max_duration;
                let pid = server.pid();
                let before = rss_kib(pid);
                let report = load::run_probing(&load, &|| rss_kib(pid)).await;
                let value = match workload {
                    Workload::Etrn | Workload::Mail => report.sessions_per_sec(),
                    Workload::Pipelined => report.commands_per_sec(),
                    Workload::Idle => match (before, report.probe_while_held) {
                        (Some(b), Some(h)) if report.sessions > 0 => {
                            h.saturating_sub(b) as f64 / report.sessions as f64
                        }
                        _ => f64::NAN,
                    },
                };
                let slot = usize::from(server.name == "smtp-sink");
                latencies[slot] = (report.latency_p50_us, report.latency_p99_us);
                if server.name == "smtp-sink" {
                    rows[i].smtp_sink.push(value);
                } else {
                    rows[i].smart_host.push(value);
                }
                runs.push((
                    format!("round {} {} {}", round + 1, server.name, name),
                    report,
                ));
            }
            rows[i].latency_us = Some((latencies[0], latencies[1]));
        }
        for server in order {
            step(Step {
                round: round + 1,
                rounds: spec.rounds,
                workload: "(c) smtp-source, 1 KiB messages",
                server: server.name,
            });
            let rate =
                smtp_source(server.addr, scaled(20_000, spec.scale), spec.max_duration).await;
            if server.name == "smtp-sink" {
                source_row.smtp_sink.push(rate);
            } else {
                source_row.smart_host.push(rate);
            }
        }
    }
    rows.insert(3, source_row);
    Ok(CompareReport {
        rounds: spec.rounds,
        scale: spec.scale,
        rows,
        smart_host_peak_rss_kib: super::rss::peak_rss_kib(ours.pid()),
        smtp_sink_peak_rss_kib: super::rss::peak_rss_kib(sink.pid()),
        runs,
    })
}

/// Postfix's own load tool against `addr`: messages per second, or NaN if it is missing or fails.
async fn smtp_source(addr: SocketAddr, messages: u64, limit: Duration) -> f64 {
    let program = "/usr/sbin/smtp-source";
    if !std::path::Path::new(program).exists() {
        return f64::NAN;
    }
    let started = Instant::now();
    let run = tokio::process::Command::new(program)
        .args(["-l", "1024", "-s", "32", "-m", &messages.to_string()])
        .args(["-f", "bench@bench.example", "-t", "sink@sink.example"])
        .arg(addr.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .status();
    match tokio::time::timeout(limit, run).await {
        Ok(Ok(status)) if status.success() => messages as f64 / started.elapsed().as_secs_f64(),
        _ => f64::NAN,
    }
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
    let mut o = format!(
        "{} round(s), scale {}; ratio = smart host / smtp-sink per round (min / median / max)\n\n",
        report.rounds, report.scale
    );
    o.push_str(&format!(
        "{:<36} {:<24} {:>14} {:>14}   {:<22} {}\n",
        "workload", "unit", "smart host", "smtp-sink", "ratio", "p50/p99 µs (host | sink)"
    ));
    for r in &report.rows {
        let (lo, mid, hi) = r.ratios();
        let lat = r
            .latency_us
            .map(|((a, b), (c, d))| format!("{a}/{b} | {c}/{d}"))
            .unwrap_or_default();
        o.push_str(&format!(
            "{:<36} {:<24} {:>14.1} {:>14.1}   {:<22} {}\n",
            r.name,
            r.unit,
            median_of(&r.smart_host),
            median_of(&r.smtp_sink),
            format!("{lo:.2} / {mid:.2} / {hi:.2}"),
            lat
        ));
    }
    o.push_str(&format!(
        "\npeak RSS: smart host {} KiB, smtp-sink {} KiB\n",
        report
            .smart_host_peak_rss_kib
            .map_or("?".into(), |v| v.to_string()),
        report
            .smtp_sink_peak_rss_kib
            .map_or("?".into(), |v| v.to_string())
    ));
    o
}
