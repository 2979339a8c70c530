//! What pending waits cost the SMTP server: new sessions with an ETRN each, with no wait pending
//! and with many pending, side by side in one run, as a ratio.
//!
//! Method: one smart host in this process (full retention, so the recording grows through the
//! run, as a test's does). Each round runs the EHLO/ETRN/QUIT workload twice, with no wait pending
//! and with `waits` waits for ETRNs of domains that never come (what a test's
//! `GET /etrn?wait=DOMAIN` does while it waits), each wait bounded by the run's duration and
//! ended after the workload; the order alternates between rounds. The rate of each is the median
//! over the rounds; the ratio is the rate with waits over the rate without (1.0: the waits cost
//! nothing). Load generator and server share the runtime and the machine, so the ratio is the
//! figure, not the rates. Figures only: nothing is asserted in a test.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::compare::BenchError;
use super::load::{self, LoadSpec, Workload};
use crate::smarthost::{SmartHost, SmartHostConfig};

/// How big the measurement is.
#[derive(Debug, Clone)]
pub struct WaitsSpec {
    /// Sessions per workload run.
    pub sessions: u64,
    /// Waits pending during the second run of each round.
    pub waits: usize,
    /// Rounds of the two runs.
    pub rounds: u32,
    /// Client tasks at once.
    pub concurrency: usize,
    /// Hard stop for each run, and the deadline of each wait.
    pub max_duration: Duration,
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct WaitsReport {
    pub waits: usize,
    /// Median sessions/s with no wait pending.
    pub without_waits: f64,
    /// Median sessions/s with `waits` waits pending.
    pub with_waits: f64,
    /// `with_waits / without_waits`.
    pub ratio: f64,
    /// Sessions completed over every run.
    pub sessions: u64,
    /// Failed sessions over every run.
    pub errors: u64,
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied().unwrap_or(0.0)
}

/// Runs the rounds.
pub async fn waits(spec: &WaitsSpec) -> Result<WaitsReport, BenchError> {
    let host = SmartHost::start(SmartHostConfig::default())
        .await
        .map_err(|e| BenchError::NotReady {
            what: "the smart host".into(),
            detail: e.to_string(),
        })?;
    let recorder = host.shared_recorder();
    let mut load = LoadSpec::new(host.addr(), Workload::Etrn, spec.sessions);
    load.concurrency = spec.concurrency.max(1);
    load.max_duration = spec.max_duration;
    let (mut without, mut with) = (Vec::new(), Vec::new());
    let (mut sessions, mut errors) = (0, 0);
    for round in 0..spec.rounds.max(1) {
        // The order alternates, so neither side always runs on the longer recording.
        for waiting in [round % 2 == 1, round % 2 == 0] {
            let report = if waiting {
                with_waits(&recorder, &load, spec).await
            } else {
                load::run(&load).await
            };
            if waiting { &mut with } else { &mut without }.push(report.sessions_per_sec());
            sessions += report.sessions;
            errors += report.errors;
        }
    }
    host.stop().await;
    let (without_waits, with_waits) = (median(without), median(with));
    Ok(WaitsReport {
        waits: spec.waits,
        without_waits,
        with_waits,
        ratio: if without_waits > 0.0 {
            with_waits / without_waits
        } else {
            0.0
        },
        sessions,
        errors,
    })
}

/// One workload run with `spec.waits` waits pending, ended after it.
async fn with_waits(
    recorder: &Arc<crate::smarthost::Recorder>,
    load: &LoadSpec,
    spec: &WaitsSpec,
) -> load::LoadReport {
    let mut pending = tokio::task::JoinSet::new();
    for n in 0..spec.waits {
        let recorder = Arc::clone(recorder);
        let deadline = spec.max_duration;
        pending.spawn(async move {
            let _ = recorder
                .until_etrn(&format!("never-{n}.example"), deadline)
                .await;
        });
    }
    // Every wait registered before the run starts (bounded: a wait that never registers only
    // makes the figure kinder).
    let registered = tokio::time::Instant::now() + Duration::from_secs(5);
    while recorder.pending_etrn_domains() < spec.waits && tokio::time::Instant::now() < registered {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let report = load::run(load).await;
    pending.shutdown().await;
    report
}

/// The report for people.
pub fn table(r: &WaitsReport) -> String {
    format!(
        "| waits pending | sessions/s (median) |\n|---|---|\n\
         | 0 | {:.0} |\n\
         | {} | {:.0} |\n\
         | ratio | {:.2} |\n\
         | sessions, failed | {}, {} |\n",
        r.without_waits, r.waits, r.with_waits, r.ratio, r.sessions, r.errors,
    )
}
