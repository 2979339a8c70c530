//! What recording costs in memory: bytes kept per recorded EHLO/ETRN/QUIT session with full
//! retention, and the resident size after a long soak with minimal retention and the recording
//! streamed to a file.
//!
//! Method: the smart host runs as its own process (`serve --quiet --retain all`: every session
//! kept, whatever the default). Its resident set size (`VmRSS`) is read from `/proc` after a
//! warm-up of sessions (so allocator arenas and buffers are in place), and again after the
//! measured sessions; the difference over the number of sessions is the cost of one. The soak runs `serve --retain open --record FILE` for a million
//! sessions and reads the final and peak (`VmHWM`) resident size. Figures only: no goal is
//! asserted in a test.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::compare::{BenchError, start_smart_host};
use super::load::{self, LoadSpec, Workload};
use super::rss;

/// How big the measurement is.
#[derive(Debug, Clone)]
pub struct MemorySpec {
    /// The `etrn-harness` binary to run as the smart host (a release build for real numbers).
    pub smart_host_exe: PathBuf,
    /// Sessions measured with full retention.
    pub full_sessions: u64,
    /// Sessions of the soak with minimal retention.
    pub soak_sessions: u64,
    /// Hard stop for each run.
    pub max_duration: Duration,
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    pub full_sessions: u64,
    /// Resident bytes the server kept per recorded session, full retention.
    pub bytes_per_session: f64,
    pub soak_sessions: u64,
    /// Resident size after the soak, MiB.
    pub soak_rss_mib: f64,
    /// Peak resident size during the soak, MiB.
    pub soak_peak_mib: f64,
    /// Size of the streamed recording, MiB.
    pub soak_stream_mib: f64,
    /// Sessions that failed in either run.
    pub errors: u64,
}

/// Sessions run first so that later growth is the recording's, not the allocator's warm-up.
const WARM_UP: u64 = 2_000;

async fn sessions(addr: std::net::SocketAddr, count: u64, max: Duration) -> load::LoadReport {
    let mut spec = LoadSpec::new(addr, Workload::Etrn, count);
    spec.max_duration = max;
    load::run(&spec).await
}

/// A server whose memory `/proc` does not tell.
pub(crate) fn unreadable(what: &str) -> BenchError {
    BenchError::NotReady {
        what: what.into(),
        detail: "its memory cannot be read from /proc".into(),
    }
}

/// A temporary folder for a recording the server writes.
pub(crate) fn temp_dir() -> Result<tempfile::TempDir, BenchError> {
    tempfile::tempdir().map_err(|source| BenchError::Spawn {
        what: "a temporary folder".into(),
        source,
    })
}

/// Measures both figures.
pub async fn memory(spec: &MemorySpec) -> Result<MemoryReport, BenchError> {
    let not_ready = unreadable;
    // Every session kept, whatever the default: the growth over the sessions is what each keeps.
    let full = start_smart_host(&spec.smart_host_exe, &["--retain", "all"])?;
    let warm = sessions(full.addr, WARM_UP, spec.max_duration).await;
    let before = rss::rss_kib(full.pid()).ok_or_else(|| not_ready("the smart host"))?;
    let measured = sessions(full.addr, spec.full_sessions, spec.max_duration).await;
    let after = rss::rss_kib(full.pid()).ok_or_else(|| not_ready("the smart host"))?;
    drop(full);
    let bytes_per_session =
        (after.saturating_sub(before) * 1024) as f64 / measured.sessions.max(1) as f64;

    let dir = temp_dir()?;
    let stream = dir.path().join("soak.jsonl");
    let stream_arg = stream.to_string_lossy().into_owned();
    let soak = start_smart_host(
        &spec.smart_host_exe,
        &["--retain", "open", "--record", &stream_arg],
    )?;
    let soaked = sessions(soak.addr, spec.soak_sessions, spec.max_duration).await;
    let rss = rss::rss_kib(soak.pid()).ok_or_else(|| not_ready("the smart host"))?;
    let peak = rss::peak_rss_kib(soak.pid()).ok_or_else(|| not_ready("the smart host"))?;
    drop(soak);
    // The server is killed, not stopped: its stream is still the `.soak.jsonl.<random>.partial`
    // it writes beside FILE (renamed onto FILE only by a clean stop). Every file in the folder
    // is the stream, whatever its name.
    let stream_bytes = folder_bytes(dir.path());
    Ok(MemoryReport {
        full_sessions: measured.sessions,
        bytes_per_session,
        soak_sessions: soaked.sessions,
        soak_rss_mib: rss as f64 / 1024.0,
        soak_peak_mib: peak as f64 / 1024.0,
        soak_stream_mib: stream_bytes as f64 / (1024.0 * 1024.0),
        errors: warm.errors + measured.errors + soaked.errors,
    })
}

/// The octets of the regular files directly in `dir`.
fn folder_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The report for people, with the goals.
pub fn table(r: &MemoryReport) -> String {
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    format!(
        "| figure | value | goal |\n|---|---|---|\n\
         | bytes kept per EHLO/ETRN/QUIT session, full retention ({} sessions) | {:.0} B | <= 1024 B: {} |\n\
         | RSS after {} sessions, --retain open, streamed to a file | {:.1} MiB (peak {:.1} MiB; stream {:.1} MiB) | <= 64 MiB: {} |\n\
         | failed sessions | {} | 0 |\n",
        r.full_sessions,
        r.bytes_per_session,
        verdict(r.bytes_per_session <= 1024.0),
        r.soak_sessions,
        r.soak_rss_mib,
        r.soak_peak_mib,
        r.soak_stream_mib,
        verdict(r.soak_rss_mib <= 64.0),
        r.errors,
    )
}
