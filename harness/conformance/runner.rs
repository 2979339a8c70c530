//! Running cases: a fresh smart host per scenario, the target against it, a verdict from the
//! recording. Cases run in parallel, bounded by `jobs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{Instrument, info, info_span, warn};

use crate::proto::Recording;
use crate::scenario::{self, Scenario};
use crate::smarthost::SmartHostConfig;

use super::known::KnownDeviations;
use super::outcome::TargetOutcome;
use super::target::{CaseEnvironment, Target};
use super::verdict::{CaseResult, Verdict, judge};

/// A scenario to run, with the file it came from.
#[derive(Debug, Clone)]
pub struct Case {
    pub file: PathBuf,
    pub scenario: Scenario,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub target: Target,
    /// Cases at once.
    pub jobs: usize,
    /// Per-case limit for the target.
    pub timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            target: Target::Builtin,
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Keeps the cases whose id matches `pattern` (a glob; a plain word matches ids containing it).
pub fn filter(cases: Vec<Case>, pattern: &str) -> Result<Vec<Case>, scenario::SelectError> {
    let matcher = scenario::select::id_filter(pattern)?;
    Ok(cases
        .into_iter()
        .filter(|c| matcher.is_match(&c.scenario.id))
        .collect())
}

/// Runs one case.
pub async fn run_case(case: &Case, options: &RunOptions, known: &KnownDeviations) -> CaseResult {
    let started = Instant::now();
    let span = info_span!("case", id = %case.scenario.id);
    match judged(case, options, known, started).instrument(span).await {
        Ok(result) => result,
        Err(reason) => error_result(case, reason, elapsed_ms(started)),
    }
}

/// Starts the smart host, runs the target, judges; `Err` when the harness itself could not.
async fn judged(
    case: &Case,
    options: &RunOptions,
    known: &KnownDeviations,
    started: Instant,
) -> Result<CaseResult, String> {
    let s = &case.scenario;
    let prediction = scenario::predict_with(s, options.timeout).map_err(|e| e.to_string())?;
    model_agrees(case, &prediction)?;
    let mut config = SmartHostConfig::with_script(s.smarthost.clone());
    // A target that stalls must not hold its session past the case's own limit.
    config.limits.idle_timeout = options.timeout;
    let host = crate::smarthost::SmartHost::start(config)
        .await
        .map_err(|e| format!("cannot start the smart host: {e}"))?;
    let work = tempfile::Builder::new()
        .prefix("etrn-harness-case-")
        .tempdir()
        .map_err(|e| format!("cannot create a work folder: {e}"))?;
    let scenario_file = scenario_file_for(case, work.path())?;
    let env = CaseEnvironment {
        smart_host: host.addr(),
        config: &s.ims,
        scenario_file: &scenario_file,
        work_dir: work.path(),
        timeout: options.timeout,
    };
    let outcome = options.target.run(&env).await;
    // The target has exited; its sockets are closed or closing. Wait for the server side.
    let settled = host
        .recorder()
        .wait_until("every session to close", Duration::from_secs(5), |r| {
            r.sessions.iter().all(|x| x.close.is_some())
        })
        .await;
    if let Err(e) = settled {
        warn!(error = %e, "sessions still open after the target exited; closing them");
    }
    let recording = host.shutdown().await;
    let matching = known.matching(&s.id);
    let known_reason = known_reason(known, &s.id, &matching);
    let (verdict, error, deviations, violations) =
        judge(s, &prediction, &recording, &outcome, &matching);
    info!(%verdict, "case done");
    Ok(CaseResult {
        id: s.id.clone(),
        title: s.title.clone(),
        basis: s.basis.clone(),
        file: case.file.display().to_string(),
        verdict,
        error,
        deviations,
        violations,
        expected: prediction.etrn_per_connection(),
        actual: recording
            .sessions
            .iter()
            .map(|x| x.etrn.iter().map(|e| e.record.raw().to_owned()).collect())
            .collect(),
        known_reason: (verdict == Verdict::Known).then(|| known_reason.unwrap_or_default()),
        outcome,
        duration_ms: elapsed_ms(started),
        recording,
    })
}

/// A case whose own expectations the model does not meet cannot grade anybody: refused.
fn model_agrees(case: &Case, prediction: &scenario::Prediction) -> Result<(), String> {
    let disagreement = scenario::judge(&case.scenario, &prediction.observed());
    if disagreement.is_empty() {
        return Ok(());
    }
    let diff: Vec<String> = disagreement.iter().map(|d| format!("  {d}")).collect();
    Err(format!(
        "scenario disagrees with the model (`etrn-harness expect {}` shows why):\n{}",
        case.file.display(),
        diff.join("\n")
    ))
}

/// The scenario file the target reads: the case's own, or, for a scenario of the shipped corpus
/// (no file on this machine), a copy in the work folder.
fn scenario_file_for(case: &Case, work_dir: &std::path::Path) -> Result<PathBuf, String> {
    match crate::scenario::shipped::shipped_text(&case.file) {
        Some(text) => {
            let copy = work_dir.join(
                case.file
                    .file_name()
                    .unwrap_or_else(|| "scenario.toml".as_ref()),
            );
            std::fs::write(&copy, text)
                .map_err(|e| format!("cannot write the scenario for the target: {e}"))?;
            Ok(copy)
        }
        _ => Ok(case.file.clone()),
    }
}

/// Why the case's deviations are known: the file's reason for the case, or the reasons of the
/// entries that match it.
fn known_reason(
    known: &KnownDeviations,
    id: &str,
    matching: &[super::known::KnownMatch<'_>],
) -> Option<String> {
    known.reason(id).map(str::to_owned).or_else(|| {
        (!matching.is_empty()).then(|| {
            matching
                .iter()
                .map(|k| format!("{}: {}", k.rule.unwrap_or("*"), k.reason))
                .collect::<Vec<_>>()
                .join("; ")
        })
    })
}

/// An ERROR result for a case the harness could not run (or whose task panicked), so nothing goes
/// missing from the report.
fn error_result(case: &Case, reason: String, duration_ms: u64) -> CaseResult {
    let s = &case.scenario;
    CaseResult {
        id: s.id.clone(),
        title: s.title.clone(),
        basis: s.basis.clone(),
        file: case.file.display().to_string(),
        verdict: Verdict::Error,
        error: Some(reason.clone()),
        deviations: Vec::new(),
        violations: Vec::new(),
        expected: Vec::new(),
        actual: Vec::new(),
        known_reason: None,
        outcome: TargetOutcome::Crashed {
            reason,
            stderr: String::new(),
        },
        duration_ms,
        recording: Recording::default(),
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A run that stopped before judging anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunAborted {
    /// The target could not run its first case at all: every case would be an ERROR (or worse,
    /// pass for the wrong reason), so nothing is judged.
    #[error("the target cannot run (first case {case}): {message}")]
    TargetCannotStart { case: String, message: String },
}

/// Runs every case, at most `options.jobs` at once. `done` is called for each case in the order
/// of `cases` (a case that finishes early waits for those before it), so live output reads the
/// same in every run; results come back in that order too.
///
/// The first case runs alone: a target that cannot run there (no process at all, or any non-zero
/// exit without a connection: the shell's 126 or 127, an interpreter's 2 for a missing script)
/// aborts the run, with its message once, before anything is judged.
pub async fn run_all(
    cases: Vec<Case>,
    options: RunOptions,
    known: KnownDeviations,
    mut done: impl FnMut(&CaseResult, usize, usize),
) -> Result<Vec<CaseResult>, RunAborted> {
    let total = cases.len();
    let mut cases = cases.into_iter();
    let Some(first_case) = cases.next() else {
        return Ok(Vec::new());
    };
    let first = run_case(&first_case, &options, &known).await;
    if let Some(message) = first
        .outcome
        .start_failure(!first.recording.sessions.is_empty())
    {
        return Err(RunAborted::TargetCannotStart {
            case: first.id,
            message,
        });
    }
    done(&first, 1, total);
    let slots = Arc::new(Semaphore::new(options.jobs.max(1)));
    let options = Arc::new(options);
    let known = Arc::new(known);
    let mut set = JoinSet::new();
    let mut by_task = std::collections::HashMap::new();
    for (index, case) in cases.enumerate() {
        let slots = Arc::clone(&slots);
        let options = Arc::clone(&options);
        let known = Arc::clone(&known);
        let meta = case.clone();
        let handle = set.spawn(async move {
            // The semaphore is never closed, so acquiring only waits for a free slot.
            let _slot = slots.acquire_owned().await.ok();
            run_case(&case, &options, &known).await
        });
        by_task.insert(handle.id(), (index + 1, meta));
    }
    let mut results: Vec<Option<CaseResult>> = (0..total).map(|_| None).collect();
    results[0] = Some(first);
    // Cases before this one have been reported.
    let mut reported = 1;
    while let Some(joined) = set.join_next_with_id().await {
        let (task, result) = match joined {
            Ok((task, r)) => (task, r),
            Err(e) => {
                let task = e.id();
                let Some((_, meta)) = by_task.get(&task) else {
                    continue;
                };
                (
                    task,
                    error_result(meta, format!("the harness failed on this case: {e}"), 0),
                )
            }
        };
        let Some((index, _)) = by_task.get(&task) else {
            continue;
        };
        results[*index] = Some(result);
        while let Some(Some(next)) = results.get(reported) {
            reported += 1;
            done(next, reported, total);
        }
    }
    Ok(results.into_iter().flatten().collect())
}

/// Counts per verdict, in the order of [`Verdict::ALL`].
pub fn summary(results: &[CaseResult]) -> Vec<(Verdict, usize)> {
    Verdict::ALL
        .iter()
        .map(|v| (*v, results.iter().filter(|r| r.verdict == *v).count()))
        .collect()
}
