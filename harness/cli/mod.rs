//! The subcommands of the `etrn-harness` binary. Only the binary compiles this folder; the
//! library (`lib.rs`) does not declare it.

pub mod address;
pub mod args;
pub mod bench;
pub mod cassette;
pub mod corpus;
pub mod exit;
pub mod output;
pub mod probe;
pub mod progress;
pub mod ready;
pub mod recording;
pub mod report;
pub mod run;
pub mod scenarios;
pub mod serve;
pub mod serve_lines;
pub mod signals;

use args::{
    BenchApiArgs, BenchCommand, BenchCompareArgs, BenchLoadArgs, BenchMemoryArgs, ProbeArgs,
    ProbeFormat, RecordArgs, ReplayArgs, ReportArgs, ReportFormat, RunArgs, ScenariosCommand,
    ServeArgs, TlsArg,
};
use etrn_harness::scenario::ScenarioError;
use exit::{EXIT_DISAGREES, EXIT_INVALID};

/// Says why an argument or a `--filter` selects no scenario; exit 2.
pub fn selection_error(e: &etrn_harness::scenario::SelectError) -> std::process::ExitCode {
    eprintln!("error: {e}");
    std::process::ExitCode::from(EXIT_INVALID)
}

/// Renders a report (`Err`: it could not be), writes it to `output` or standard output, and on a
/// file says `summary` on stderr. `Err` is the exit status after the error was shown.
pub fn write_report(
    text: Result<String, String>,
    output: Option<&std::path::Path>,
    summary: impl FnOnce() -> String,
) -> Result<(), std::process::ExitCode> {
    use std::io::Write as _;
    let text = text.map_err(|e| {
        eprintln!("error: cannot render the report: {e}");
        std::process::ExitCode::FAILURE
    })?;
    match output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &text) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return Err(std::process::ExitCode::from(exit::EXIT_SYSTEM));
            }
            eprintln!("{}", summary());
        }
        // A reader that went away (`| head`) does not change the verdicts or the exit status.
        None => {
            let _ = std::io::stdout().write_all(text.as_bytes());
        }
    }
    Ok(())
}

/// Shows scenario errors: one line each with `short`, otherwise located (miette).
pub fn report_errors(errors: &[ScenarioError], short: bool) {
    for e in errors {
        if short {
            eprintln!("{}", e.one_line());
        } else {
            eprintln!("{:?}", miette::Report::new(e.clone()));
        }
    }
}
