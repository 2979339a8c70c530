//! The `etrn-harness` command line: a thin layer over the library that renders errors for people.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use etrn_harness::scenario::{self, ScenarioError, explain::explain};
use tracing_subscriber::EnvFilter;

/// Exit status for invalid scenario files and usage errors.
const EXIT_INVALID: u8 = 2;
/// Exit status when the model disagrees with a scenario's `[expect]`.
const EXIT_DISAGREES: u8 = 1;

#[derive(Parser)]
#[command(
    name = "etrn-harness",
    version,
    about = "SMTP test harness for ETRN (RFC 1985) dequeuing, with a reference model of Exchange 5.5 IMS",
    long_about = "SMTP test harness for ETRN (RFC 1985) dequeuing.\n\n\
        Scenario files (scenarios/<topic>/<name>.toml) describe an Exchange 5.5 IMS configuration, \
        how the upstream smart host answers, and which ETRN commands a conforming client sends. \
        `check` validates them, `expect` shows what the reference model plans for them, and \
        `schema` prints the file format as JSON Schema.\n\n\
        Logging goes to stderr and follows RUST_LOG (e.g. RUST_LOG=etrn_harness=debug)."
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Validate scenario files; exit 0 when all are valid, 2 with diagnostics otherwise.
    Check {
        /// Files or folders (searched for *.toml); default: scenarios/
        #[arg(default_value = "scenarios")]
        paths: Vec<PathBuf>,
        /// Print one line per error instead of annotated source excerpts.
        #[arg(long)]
        short: bool,
    },
    /// Print the reference model's plan for scenarios: each ETRN with the rule behind it, the
    /// reply handling, and whether the model agrees with the file's [expect]. Exit 1 if it does not.
    Expect {
        /// Scenario files or folders; default: scenarios/
        #[arg(default_value = "scenarios")]
        paths: Vec<PathBuf>,
        /// One line per scenario instead of the full plan.
        #[arg(long)]
        brief: bool,
    },
    /// Print the JSON Schema of the scenario file format.
    Schema,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Check { paths, short } => check(&paths, short),
        Command::Expect { paths, brief } => expect(&paths, brief),
        Command::Schema => {
            println!("{}", scenario::schema::json_schema());
            ExitCode::SUCCESS
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn report(errors: &[ScenarioError], short: bool) {
    for e in errors {
        if short {
            eprintln!("{}", e.one_line());
        } else {
            eprintln!("{:?}", miette::Report::new(e.clone()));
        }
    }
}

fn check(paths: &[PathBuf], short: bool) -> ExitCode {
    let corpus = scenario::load_corpus(paths);
    report(&corpus.errors, short);
    let files: std::collections::HashSet<&str> =
        corpus.errors.iter().map(|e| e.file.as_str()).collect();
    if corpus.errors.is_empty() {
        println!("{} scenario file(s) valid", corpus.scenarios.len());
        ExitCode::SUCCESS
    } else {
        println!(
            "{} scenario file(s) valid, {} invalid ({} error(s))",
            corpus.scenarios.len(),
            files.len(),
            corpus.errors.len()
        );
        ExitCode::from(EXIT_INVALID)
    }
}

fn expect(paths: &[PathBuf], brief: bool) -> ExitCode {
    let corpus = scenario::load_corpus(paths);
    if !corpus.errors.is_empty() {
        report(&corpus.errors, !std::io::stderr().is_terminal());
        return ExitCode::from(EXIT_INVALID);
    }
    let mut disagreements = 0;
    for (path, s) in &corpus.scenarios {
        let prediction = match scenario::predict(s) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::from(EXIT_INVALID);
            }
        };
        let deviations = s.expect.judge(&prediction.observed(), s.grade);
        tracing::debug!(scenario = %s.id, deviations = deviations.len(), "judged");
        if !deviations.is_empty() {
            disagreements += 1;
        }
        if brief {
            let sent: Vec<String> = prediction
                .observed()
                .connections
                .first()
                .map(|c| c.iter().map(|a| a.raw().to_owned()).collect())
                .unwrap_or_default();
            let verdict = if deviations.is_empty() {
                "agrees"
            } else {
                "DISAGREES"
            };
            println!(
                "{:<48} {:<9} connections={} etrn=[{}]",
                s.id,
                verdict,
                prediction.runs.len(),
                sent.join(", ")
            );
        } else {
            if corpus.scenarios.len() > 1 {
                println!("==> {}", path.display());
            }
            print!("{}", explain(s, &prediction, &deviations));
            if corpus.scenarios.len() > 1 {
                println!();
            }
        }
    }
    if corpus.scenarios.len() > 1 || brief {
        println!(
            "{} scenario(s): model agrees with {}, disagrees with {}",
            corpus.scenarios.len(),
            corpus.scenarios.len() - disagreements,
            disagreements
        );
    }
    if disagreements == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DISAGREES)
    }
}
