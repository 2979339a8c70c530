//! `etrn-harness bench`: the load generator alone, or the comparison with smtp-sink.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use etrn_harness::bench::{self, LoadSpec, compare::CompareSpec};
use etrn_harness::conformance::{self, Case, KnownDeviations, RunOptions};
use etrn_harness::scenario;

use super::exit::EXIT_STOPPED;
use super::signals::StopSignal;
use super::{
    BenchApiArgs, BenchCommand, BenchCompareArgs, BenchLoadArgs, BenchMemoryArgs, EXIT_INVALID,
    report_errors,
};

pub fn run(command: BenchCommand) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(super::exit::EXIT_SYSTEM);
        }
    };
    match command {
        BenchCommand::Load(args) => runtime.block_on(load(args)),
        BenchCommand::Compare(args) => runtime.block_on(compare(args)),
        BenchCommand::Memory(args) => runtime.block_on(memory(args)),
        BenchCommand::Api(args) => runtime.block_on(api(args)),
    }
}

fn seconds(s: f64, flag: &str) -> Result<Duration, ExitCode> {
    if s.is_finite() && s > 0.0 {
        Ok(Duration::from_secs_f64(s))
    } else {
        eprintln!("error: {flag} must be a positive number of seconds");
        Err(ExitCode::from(EXIT_INVALID))
    }
}

async fn load(args: BenchLoadArgs) -> ExitCode {
    if !args.target.ip().is_loopback() {
        eprintln!(
            "error: --target {} is not a loopback address; load runs stay on this machine",
            args.target
        );
        return ExitCode::from(EXIT_INVALID);
    }
    let duration = match seconds(args.duration, "--duration") {
        Ok(d) => d,
        Err(code) => return code,
    };
    bench::compare::raise_fd_limit();
    let mut spec = LoadSpec::new(args.target, args.workload.into(), args.count);
    spec.concurrency = args.concurrency.max(1);
    spec.max_duration = duration;
    let pid = args.server_pid;
    let report = bench::load::run_probing(&spec, &|| pid.and_then(bench::rss::rss_kib)).await;
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(j) => say!("{j}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        // The name the command line takes (`etrn`, `pipelined`), not the Rust variant's.
        let workload = report.workload.name();
        say!("workload {workload} against {}", args.target);
        say!(
            "sessions {} ({:.1}/s), commands {} ({:.1}/s), errors {}{}",
            report.sessions,
            report.sessions_per_sec(),
            report.commands,
            report.commands_per_sec(),
            report.errors,
            report
                .first_error
                .as_deref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        );
        say!(
            "latency p50 {} µs, p99 {} µs, max {} µs; elapsed {:.3} s{}",
            report.latency_p50_us,
            report.latency_p99_us,
            report.latency_max_us,
            report.elapsed_us as f64 / 1e6,
            if report.stopped_by_time {
                " (stopped by --duration)"
            } else {
                ""
            }
        );
        let codes: Vec<String> = report
            .replies
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        say!("replies {}", codes.join(", "));
        if let Some(pid) = pid {
            say!(
                "server RSS {} KiB{}, peak {} KiB",
                bench::rss::rss_kib(pid).map_or("?".into(), |v| v.to_string()),
                report
                    .probe_while_held
                    .map(|v| format!(" ({v} KiB while the connections were held)"))
                    .unwrap_or_default(),
                bench::rss::peak_rss_kib(pid).map_or("?".into(), |v| v.to_string())
            );
        }
    }
    if report.errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// This binary, to run as the smart host under test; a warning when it is a debug build.
fn this_program(bench: &str) -> Result<std::path::PathBuf, ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: this is a debug build; for real numbers run `cargo run --release -- bench {bench}`"
        );
    }
    std::env::current_exe().map_err(|e| {
        eprintln!("error: cannot find this program's path: {e}");
        ExitCode::FAILURE
    })
}

async fn memory(args: BenchMemoryArgs) -> ExitCode {
    let duration = match seconds(args.duration, "--duration") {
        Ok(d) => d,
        Err(code) => return code,
    };
    let exe = match this_program("memory") {
        Ok(p) => p,
        Err(code) => return code,
    };
    bench::compare::raise_fd_limit();
    let spec = bench::memory::MemorySpec {
        smart_host_exe: exe,
        full_sessions: args.sessions,
        soak_sessions: args.soak_sessions,
        max_duration: duration,
    };
    match bench::memory::memory(&spec).await {
        Ok(report) => {
            say_raw!("{}", bench::memory::table(&report));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn api(args: BenchApiArgs) -> ExitCode {
    let duration = match seconds(args.duration, "--duration") {
        Ok(d) => d,
        Err(code) => return code,
    };
    let exe = match this_program("api") {
        Ok(p) => p,
        Err(code) => return code,
    };
    bench::compare::raise_fd_limit();
    let spec = bench::waits::WaitsSpec {
        sessions: args.sessions,
        waits: args.waits,
        subscribers: args.subscribers,
        feeds: args.feeds,
        rounds: args.rounds,
        concurrency: args.concurrency,
        max_duration: duration,
    };
    let mut failed = match bench::waits::waits(&spec).await {
        Ok(report) => {
            say_raw!("{}", bench::waits::table(&report));
            report.errors > 0
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.recorded_sessions > 0 {
        let spec = bench::reads::ReadsSpec {
            smart_host_exe: exe,
            sessions: args.recorded_sessions,
            readers: args.readers,
            max_duration: duration,
        };
        match bench::reads::reads(&spec).await {
            Ok(report) => {
                say_raw!("\n{}", bench::reads::table(&report));
                failed |= report.errors > 0;
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn compare(args: BenchCompareArgs) -> ExitCode {
    let duration = match seconds(args.duration, "--duration") {
        Ok(d) => d,
        Err(code) => return code,
    };
    if !(args.scale.is_finite() && args.scale > 0.0) {
        eprintln!("error: --scale must be a positive number");
        return ExitCode::from(EXIT_INVALID);
    }
    let exe = match this_program("compare") {
        Ok(p) => p,
        Err(code) => return code,
    };
    let spec = CompareSpec {
        smart_host_exe: exe,
        rounds: args.rounds.max(1),
        scale: args.scale,
        max_duration: duration,
    };
    // Installed before any server starts: a run stopped by SIGTERM (`timeout`, a CI job's
    // cancel) or Ctrl-C drops the comparison, and with it the servers it started, which would
    // otherwise outlive it (a signal's default action runs no destructor).
    let mut stop = match StopSignal::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install the signal handlers: {e}");
            return ExitCode::from(super::exit::EXIT_SYSTEM);
        }
    };
    // At a terminal, each workload and round as it starts (the whole run takes minutes).
    let progress = super::progress::Progress::on_terminal(format!(
        "round 1/{}: starting the servers",
        spec.rounds
    ));
    let comparing = bench::compare::compare_with(&spec, |step| {
        if let Some(p) = &progress {
            p.set(format!(
                "round {}/{}: {} against {}",
                step.round, step.rounds, step.workload, step.server
            ));
        }
    });
    let compared = tokio::select! {
        compared = comparing => compared,
        why = stop.received() => return stopped(why, progress),
    };
    let report = match compared {
        Ok(r) => r,
        Err(e) => {
            drop(progress);
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(p) = &progress {
        p.above(|| say_raw!("{}", bench::compare::table(&report)));
    } else {
        say_raw!("{}", bench::compare::table(&report));
    }
    // The report is whole once the comparison is: written before the conformance timing (which
    // it does not hold), so a stop during that timing keeps it.
    if let Some(path) = args.json.clone() {
        let written = tokio::task::spawn_blocking(move || write_json(&path, &report)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                drop(progress);
                eprintln!("error: {message}");
                return ExitCode::from(super::exit::EXIT_SYSTEM);
            }
            Err(e) => {
                drop(progress);
                eprintln!("error: the report's writer did not finish: {e}");
                return ExitCode::from(super::exit::EXIT_SYSTEM);
            }
        }
    }
    let timing = conformance_speed(&args.corpus, spec.rounds, progress.as_ref());
    let conformance = tokio::select! {
        timed = timing => match timed {
            Ok(line) => line,
            Err(code) => return code,
        },
        why = stop.received() => {
            drop(progress);
            eprintln!("bench compare {why} while timing the conformance run; the comparison's report stands");
            return ExitCode::from(EXIT_STOPPED);
        }
    };
    drop(progress);
    say!("{conformance}");
    ExitCode::SUCCESS
}

/// Writes `report` as JSON to `path` whole or not at all: a run stopped while writing leaves no
/// half a report.
fn write_json(
    path: &std::path::Path,
    report: &bench::compare::CompareReport,
) -> Result<(), String> {
    serde_json::to_vec_pretty(report)
        .map_err(std::io::Error::other)
        .and_then(|json| etrn_harness::files::write_whole(path, &json))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `bench compare` stopped by a signal during the comparison: the comparison, and with it the
/// servers it started, was dropped before this runs (`select!` drops the branch that lost), so
/// they are killed and reaped by now. One exception: a signal while the smart hosts are still
/// starting (on tokio's blocking pool) stops them when their start finishes, which the runtime's
/// drop at the end of `run` waits for.
fn stopped(why: &str, progress: Option<super::progress::Progress>) -> ExitCode {
    drop(progress);
    eprintln!("bench compare {why}: its servers are stopped; no report written");
    ExitCode::from(EXIT_STOPPED)
}

/// Times whole conformance runs of the corpus with the builtin target.
async fn conformance_speed(
    corpus: &Option<PathBuf>,
    rounds: usize,
    progress: Option<&super::progress::Progress>,
) -> Result<String, ExitCode> {
    let source = scenario::resolve(corpus.as_slice()).map_err(|e| super::selection_error(&e))?;
    let loaded = source.load();
    if !loaded.errors.is_empty() {
        report_errors(&loaded.errors, true);
        return Err(ExitCode::from(EXIT_INVALID));
    }
    let cases: Vec<Case> = loaded
        .scenarios
        .into_iter()
        .map(|(file, scenario)| Case { file, scenario })
        .collect();
    let n = cases.len();
    let mut per_case_ms = Vec::new();
    for round in 1..=rounds {
        if let Some(p) = progress {
            p.set(format!(
                "round {round}/{rounds}: conformance run of {n} cases, builtin target"
            ));
        }
        let started = Instant::now();
        let results = conformance::run_all(
            cases.clone(),
            RunOptions::default(),
            KnownDeviations::default(),
            |_, _, _| {},
        )
        .await;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if results.is_ok_and(|r| r.len() == n) && n > 0 {
            per_case_ms.push(ms / n as f64);
        }
    }
    let median = bench::compare::median_of(&per_case_ms);
    Ok(format!(
        "conformance run, builtin target: {n} cases, {median:.2} ms per case ({:.0} cases/s), median of {rounds} run(s)",
        1e3 / median
    ))
}
