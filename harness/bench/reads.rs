//! What reading a large recording and stopping cost the smart host in memory: its peak resident
//! size while clients read `GET /recording` at once, and while it stops, each over its steady
//! size, as ratios.
//!
//! Method: the smart host runs as its own process (`serve --quiet --api 127.0.0.1:0 --record
//! FILE`, full retention). After `sessions` EHLO/ETRN/QUIT sessions its resident size (`VmRSS`)
//! is the steady size. Its peak (`VmHWM`) is then reset (`/proc/PID/clear_refs`) and `readers`
//! clients read the whole `GET /recording` at once over HTTP; the peak since the reset is the
//! peak under reads. The peak is reset again, the process gets SIGTERM, and its peak is read
//! every millisecond until it is gone; the last reading is the peak of the shutdown (which
//! finishes FILE). Figures only: no goal is asserted in a test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::compare::{BenchError, start_smart_host};
use super::load::{self, LoadSpec, Workload};
use super::rss;

/// How big the measurement is.
#[derive(Debug, Clone)]
pub struct ReadsSpec {
    /// The `etrn-harness` binary to run as the smart host (a release build for real numbers).
    pub smart_host_exe: PathBuf,
    /// Sessions recorded before the reads.
    pub sessions: u64,
    /// Clients reading the recording at once.
    pub readers: usize,
    /// Hard stop for the sessions, each read and the shutdown.
    pub max_duration: Duration,
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct ReadsReport {
    pub sessions: u64,
    pub readers: usize,
    /// The size of one `GET /recording` answer, MiB.
    pub recording_mib: f64,
    /// Resident size once the sessions are done, MiB.
    pub steady_mib: f64,
    /// Peak resident size while the readers read, MiB.
    pub reads_peak_mib: f64,
    /// Peak resident size while the server stopped and finished FILE, MiB.
    pub shutdown_peak_mib: f64,
    /// Whether the peak could be reset before each measurement; when not, each peak is the peak
    /// since the server started.
    pub peak_reset: bool,
    /// Reads that failed or did not answer 200, and failed sessions.
    pub errors: u64,
}

impl ReadsReport {
    pub fn reads_ratio(&self) -> f64 {
        ratio(self.reads_peak_mib, self.steady_mib)
    }
    pub fn shutdown_ratio(&self) -> f64 {
        ratio(self.shutdown_peak_mib, self.steady_mib)
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Reads `GET /recording` to the end over HTTP/1.1: its length when the answer was 200.
async fn read_recording(api: SocketAddr, max: Duration) -> Option<usize> {
    let read = async {
        let mut stream = tokio::net::TcpStream::connect(api).await.ok()?;
        let request =
            format!("GET /recording HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.ok()?;
        answer.starts_with(b"HTTP/1.1 200").then_some(answer.len())
    };
    tokio::time::timeout(max, read).await.ok().flatten()
}

/// Measures both peaks.
pub async fn reads(spec: &ReadsSpec) -> Result<ReadsReport, BenchError> {
    let gone = super::memory::unreadable;
    let dir = super::memory::temp_dir()?;
    let file = dir.path().join("recording.jsonl");
    let file_arg = file.to_string_lossy().into_owned();
    let host = start_smart_host(
        &spec.smart_host_exe,
        &[
            "--api",
            "127.0.0.1:0",
            "--retain",
            "all",
            "--record",
            &file_arg,
        ],
    )?;
    let api = host.api.ok_or_else(|| BenchError::NotReady {
        what: "the smart host's API".into(),
        detail: "no `api on` line".into(),
    })?;
    let pid = host.pid();
    let mut load = LoadSpec::new(host.addr, Workload::Etrn, spec.sessions);
    load.max_duration = spec.max_duration;
    let ran = load::run(&load).await;
    let steady = rss::rss_kib(pid).ok_or_else(|| gone("the smart host"))?;

    let mut peak_reset = rss::reset_peak(pid);
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..spec.readers.max(1) {
        readers.spawn(read_recording(api, spec.max_duration));
    }
    let mut errors = ran.errors;
    let mut size = 0;
    while let Some(read) = readers.join_next().await {
        match read.ok().flatten() {
            Some(n) => size = size.max(n),
            None => errors += 1,
        }
    }
    let reads_peak = rss::peak_rss_kib(pid).ok_or_else(|| gone("the smart host"))?;

    peak_reset &= rss::reset_peak(pid);
    let target = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| gone("the smart host"))?;
    rustix::process::kill_process(target, rustix::process::Signal::TERM).map_err(|e| {
        BenchError::NotReady {
            what: "the smart host".into(),
            detail: format!("SIGTERM: {e}"),
        }
    })?;
    // VmHWM only grows, so the last reading before the process is gone is the shutdown's peak
    // (less whatever it grew in its last millisecond).
    let mut shutdown_peak = steady;
    let until = tokio::time::Instant::now() + spec.max_duration;
    while let Some(peak) = rss::peak_rss_kib(pid) {
        shutdown_peak = peak;
        if tokio::time::Instant::now() > until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    drop(host);
    Ok(ReadsReport {
        sessions: ran.sessions,
        readers: spec.readers.max(1),
        recording_mib: size as f64 / (1024.0 * 1024.0),
        steady_mib: mib(steady),
        reads_peak_mib: mib(reads_peak),
        shutdown_peak_mib: mib(shutdown_peak),
        peak_reset,
        errors,
    })
}

/// The report for people, with the goals.
pub fn table(r: &ReadsReport) -> String {
    let verdict = |ratio: f64| {
        if ratio <= 1.2 {
            "<= 1.2x: met"
        } else {
            "<= 1.2x: NOT met"
        }
    };
    let since = if r.peak_reset {
        ""
    } else {
        " (peak since start: it could not be reset)"
    };
    format!(
        "| resident size, {} sessions recorded (recording {:.1} MiB) | MiB | ratio to steady | goal |\n|---|---|---|---|\n\
         | steady, after the sessions | {:.1} | 1.00 | |\n\
         | peak while {} clients read GET /recording at once{since} | {:.1} | {:.2} | {} |\n\
         | peak while stopping and finishing FILE{since} | {:.1} | {:.2} | {} |\n\
         | failed reads and sessions | {} | | 0 |\n",
        r.sessions,
        r.recording_mib,
        r.steady_mib,
        r.readers,
        r.reads_peak_mib,
        r.reads_ratio(),
        verdict(r.reads_ratio()),
        r.shutdown_peak_mib,
        r.shutdown_ratio(),
        verdict(r.shutdown_ratio()),
        r.errors,
    )
}
