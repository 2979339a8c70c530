//! `etrn-harness run`: a conformance run, rendered as the chosen report.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use etrn_harness::conformance::{
    self, Case, KnownDeviations, ReportDoc, RunOptions, Target, html, report,
};

use etrn_harness::scenario;

use super::{EXIT_DISAGREES, EXIT_INVALID, ReportFormat, RunArgs, report_errors};

pub fn run(args: RunArgs) -> ExitCode {
    let source = match scenario::resolve(&args.paths) {
        Ok(s) => s,
        Err(e) => return super::selection_error(&e),
    };
    let corpus = source.load();
    if !corpus.errors.is_empty() {
        report_errors(&corpus.errors, !std::io::stderr().is_terminal());
        return ExitCode::from(EXIT_INVALID);
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
    let cases = match scenario::select(cases, |c| &c.scenario.id, args.filter.as_deref()) {
        Ok(c) => c,
        Err(e) => return super::selection_error(&e),
    };
    if args.list {
        // A reader that stops early (`| head -1`) is no error: stop writing, quietly.
        let mut out = std::io::stdout().lock();
        for c in &cases {
            if writeln!(out, "{:<48} {}", c.scenario.id, c.scenario.title).is_err() {
                return ExitCode::SUCCESS;
            }
        }
        let _ = writeln!(out, "{} scenario(s)", cases.len());
        return ExitCode::SUCCESS;
    }
    let known = match &args.known {
        Some(path) => match KnownDeviations::load(path) {
            Ok(k) => k,
            Err(e) => {
                report_errors(&[e], false);
                return ExitCode::from(EXIT_INVALID);
            }
        },
        None => KnownDeviations::default(),
    };
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
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(super::exit::EXIT_SYSTEM);
        }
    };
    let human = args.format == ReportFormat::Human;
    let to_stdout = args.output.is_none();
    let live = human && to_stdout;
    if live {
        let _ = writeln!(
            std::io::stdout(),
            "running {} case(s) against {}",
            cases.len(),
            target.name()
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
    let results = match results {
        Ok(results) => results,
        Err(aborted) => {
            eprintln!("error: {aborted}");
            eprintln!("nothing was judged; check the --exec command line");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let ids: Vec<&str> = corpus_ids.iter().map(String::as_str).collect();
    let stale = known.stale(&ids, &results);
    for entry in &stale {
        eprintln!("warning: {entry}");
    }
    let text = match args.format {
        // Written to a file, the human report holds what stdout would have: the run's first line
        // and one line per case (in corpus order here, as they finished there) before the details.
        ReportFormat::Human if !live => {
            let mut text = format!(
                "running {} case(s) against {}\n",
                results.len(),
                target.name()
            );
            for r in &results {
                text.push_str(&report::case_line(r));
                text.push('\n');
            }
            text.push_str(&report::human(&results, args.strict));
            Ok(text)
        }
        ReportFormat::Human => Ok(report::human(&results, args.strict)),
        ReportFormat::Json => {
            report::json(&results, &target.name(), args.strict).map_err(|e| e.to_string())
        }
        ReportFormat::Junit => {
            report::junit(&results, &target.name(), args.strict).map_err(|e| e.to_string())
        }
        ReportFormat::Html => Ok(html::run_page(&ReportDoc::of_run(
            &results,
            &target.name(),
            args.strict,
        ))),
    };
    if let Err(code) = super::write_report(text, args.output.as_deref(), || {
        report::summary_line(&results, args.strict)
    }) {
        return code;
    }
    if results.iter().any(|r| r.verdict.fails(args.strict)) || (args.strict && !stale.is_empty()) {
        ExitCode::from(EXIT_DISAGREES)
    } else {
        ExitCode::SUCCESS
    }
}
