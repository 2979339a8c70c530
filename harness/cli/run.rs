//! `etrn-harness run`: a conformance run, rendered as the chosen report.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use etrn_harness::conformance::{
    self, Case, CaseResult, KnownDeviations, ReportDoc, RunOptions, Target, html, report,
};

use etrn_harness::scenario;

use super::{EXIT_DISAGREES, EXIT_INVALID, ReportFormat, RunArgs, report_errors};

pub fn run(args: RunArgs) -> ExitCode {
    match run_and_report(&args) {
        Ok(code) | Err(code) => code,
    }
}

/// Loads and selects the cases, lists them or runs them, writes the report; the exit status.
fn run_and_report(args: &RunArgs) -> Result<ExitCode, ExitCode> {
    let (corpus_ids, cases) = load_cases(args)?;
    if args.list {
        return Ok(list(&cases));
    }
    let known = load_known(args.known.as_deref())?;
    let target = match &args.exec {
        Some(command) => Target::Exec {
            command: command.clone(),
        },
        None => Target::Builtin,
    };
    let defaults = RunOptions::default();
    let options = RunOptions {
        target: target.clone(),
        jobs: args.jobs.unwrap_or(defaults.jobs).max(1),
        timeout: Duration::from_secs_f64(args.timeout),
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        ExitCode::from(super::exit::EXIT_SYSTEM)
    })?;
    let live = args.format == ReportFormat::Human && args.output.is_none();
    let results = run_cases(&runtime, cases, options, &known, live)?;
    let ids: Vec<&str> = corpus_ids.iter().map(String::as_str).collect();
    let stale = known.stale(&ids, &results);
    for entry in &stale {
        eprintln!("warning: {entry}");
    }
    let text = render(args, &results, &target, live);
    super::write_report(text, args.output.as_deref(), || {
        report::summary_line(&results, args.strict)
    })?;
    if results.iter().any(|r| r.verdict.fails(args.strict)) || (args.strict && !stale.is_empty()) {
        Ok(ExitCode::from(EXIT_DISAGREES))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

/// The whole corpus's ids and the selected cases; the corpus is named on stderr unless listing.
fn load_cases(args: &RunArgs) -> Result<(Vec<String>, Vec<Case>), ExitCode> {
    let source = scenario::resolve(&args.paths).map_err(|e| super::selection_error(&e))?;
    let corpus = source.load();
    if !corpus.errors.is_empty() {
        report_errors(&corpus.errors, !std::io::stderr().is_terminal());
        return Err(ExitCode::from(EXIT_INVALID));
    }
    // Which corpus ran goes in the log of every run (a CI log shows it next to the verdicts).
    if !args.list {
        eprintln!("{}", source.describe(corpus.scenarios.len()));
    }
    let corpus_ids: Vec<String> = corpus.scenarios.iter().map(|(_, s)| s.id.clone()).collect();
    let cases: Vec<Case> = corpus
        .scenarios
        .into_iter()
        .map(|(file, scenario)| Case { file, scenario })
        .collect();
    // Nothing selected is no pass: a CI job with a mistyped filter must not go green.
    let cases = scenario::select(cases, |c| &c.scenario.id, args.filter.as_deref())
        .map_err(|e| super::selection_error(&e))?;
    Ok((corpus_ids, cases))
}

/// `--list`: a line per case and the count.
fn list(cases: &[Case]) -> ExitCode {
    // A reader that stops early (`| head -1`) is no error: stop writing, quietly.
    let mut out = std::io::stdout().lock();
    for c in cases {
        if writeln!(out, "{:<48} {}", c.scenario.id, c.scenario.title).is_err() {
            return ExitCode::SUCCESS;
        }
    }
    let _ = writeln!(out, "{} scenario(s)", cases.len());
    ExitCode::SUCCESS
}

/// The `--known` deviations, or none.
fn load_known(path: Option<&std::path::Path>) -> Result<KnownDeviations, ExitCode> {
    match path {
        Some(path) => KnownDeviations::load(path).map_err(|e| {
            report_errors(&[e], false);
            ExitCode::from(EXIT_INVALID)
        }),
        None => Ok(KnownDeviations::default()),
    }
}

/// Runs the cases, a line per case on stdout when `live`, the progress on a terminal.
fn run_cases(
    runtime: &tokio::runtime::Runtime,
    cases: Vec<Case>,
    options: RunOptions,
    known: &KnownDeviations,
    live: bool,
) -> Result<Vec<CaseResult>, ExitCode> {
    if live {
        let _ = writeln!(
            std::io::stdout(),
            "running {} case(s) against {}",
            cases.len(),
            options.target.name()
        );
    }
    // For a person at a terminal, whatever the report's format and destination: the case the
    // count waits for, done/total, elapsed time. The ids are kept to name the next case.
    let order: Vec<String> = cases.iter().map(|c| c.scenario.id.clone()).collect();
    let progress = super::progress::Progress::on_terminal(super::progress::run_status(
        0,
        order.len(),
        order.first().map(String::as_str),
    ));
    let results = runtime.block_on(conformance::run_all(
        cases,
        options,
        known.clone(),
        |r, done, total| {
            let print = || {
                if live {
                    let _ = writeln!(std::io::stdout(), "{}", report::case_line(r));
                }
            };
            match &progress {
                Some(p) => {
                    p.above(print);
                    p.set(super::progress::run_status(
                        done,
                        total,
                        order.get(done).map(String::as_str),
                    ));
                }
                None => print(),
            }
        },
    ));
    // Erased before anything else is said.
    drop(progress);
    results.map_err(|aborted| {
        eprintln!("error: {aborted}");
        eprintln!("nothing was judged; check the --exec command line");
        ExitCode::from(EXIT_INVALID)
    })
}

/// The report in the chosen format.
fn render(
    args: &RunArgs,
    results: &[CaseResult],
    target: &Target,
    live: bool,
) -> Result<String, String> {
    match args.format {
        // Written to a file, the human report holds what stdout would have: the run's first line
        // and one line per case (in corpus order here, as they finished there) before the details.
        ReportFormat::Human if !live => {
            let mut text = format!(
                "running {} case(s) against {}\n",
                results.len(),
                target.name()
            );
            for r in results {
                text.push_str(&report::case_line(r));
                text.push('\n');
            }
            text.push_str(&report::human(results, args.strict));
            Ok(text)
        }
        ReportFormat::Human => Ok(report::human(results, args.strict)),
        ReportFormat::Json => {
            report::json(results, &target.name(), args.strict).map_err(|e| e.to_string())
        }
        ReportFormat::Junit => {
            report::junit(results, &target.name(), args.strict).map_err(|e| e.to_string())
        }
        ReportFormat::Html => Ok(html::run_page(&ReportDoc::of_run(
            results,
            &target.name(),
            args.strict,
        ))),
    }
}
