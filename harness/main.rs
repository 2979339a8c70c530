//! The `etrn-harness` command line: a thin layer over the library that renders errors for people.
//!
//! The arguments are defined in `cli/args.rs`; each subcommand's body is a module of `cli/`.

/// `println!` that never panics: a reader that went away (`| head`, a closed pipe to `jq`) must not
/// stop a command, and above all must not keep `serve` from writing its recording at exit.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that never panics, for the same reason as [`say!`].
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use etrn_harness::scenario;
use tracing_subscriber::EnvFilter;

use cli::args::{Cli, Command, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Check {
            paths,
            filter,
            short,
        } => cli::corpus::check(&paths, filter.as_deref(), short),
        Command::Expect {
            paths,
            filter,
            brief,
        } => cli::corpus::expect(&paths, filter.as_deref(), brief),
        Command::Scenarios(command) => cli::scenarios::run(command),
        Command::Recording { file } => cli::recording::run(&file),
        Command::Schema { report, openapi } => {
            if openapi {
                say!("{}", etrn_harness::api::openapi_document());
            } else if report {
                say!("{}", etrn_harness::conformance::report::report_schema());
            } else {
                say!("{}", scenario::json_schema());
            }
            ExitCode::SUCCESS
        }
        Command::Serve(args) => cli::serve::run(args),
        Command::Probe(args) => cli::probe::run(args),
        Command::Run(args) => cli::run::run(args),
        Command::Report(args) => cli::report::run(args),
        Command::Bench(command) => cli::bench::run(command),
        Command::Record(args) => cli::cassette::record(args),
        Command::Replay(args) => cli::cassette::replay(args),
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    // Colour only for a person at a terminal: a log file or a CI log gets plain text.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
