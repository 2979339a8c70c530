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
    /// Run an implementation against the scenario corpus and judge it.
    ///
    /// Each scenario gets a fresh smart host on its own port; the target runs once against it;
    /// the recording is judged. Exit 0 when nothing FAILed or ERRORed (with --strict, no
    /// NON-STRICT either), 1 otherwise, 2 for usage or scenario errors.
    Run(RunArgs),
    /// Run the fake smart host: a scriptable ESMTP server that records every command.
    ///
    /// Prints one line per ETRN as it arrives. On Ctrl-C, SIGTERM or after --exit-after-sessions
    /// it writes the recording as JSON to --record (schema in the README).
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Scenario files or folders; default: scenarios/
    #[arg(default_value = "scenarios")]
    paths: Vec<PathBuf>,
    /// The built-in reference client (the only named target).
    #[arg(long, value_parser = ["builtin"], default_value = "builtin", conflicts_with = "exec")]
    target: String,
    /// An external program to test, run once per scenario through `sh -c`. Placeholders {host},
    /// {port}, {config}, {scenario}, {local_commands}; the same facts in ETRN_HARNESS_* variables.
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
    /// Only scenarios whose id matches this glob (a plain word matches ids containing it).
    #[arg(long, value_name = "GLOB")]
    filter: Option<String>,
    /// List the selected scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Count NON-STRICT as failing.
    #[arg(long)]
    strict: bool,
    /// Known deviations of this implementation (TOML [[known]] scenario/reason tables).
    #[arg(long, value_name = "FILE")]
    known: Option<PathBuf>,
    /// Cases at once; default: the number of CPUs.
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Seconds each case's target may run before its process group is killed.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    timeout: f64,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Human)]
    format: ReportFormat,
    /// Write the report here instead of standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportFormat {
    Human,
    Json,
    Junit,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:2525")]
    listen: std::net::SocketAddr,
    /// Answer as this scenario's [smarthost] table says.
    #[arg(long, conflicts_with = "profile")]
    scenario: Option<PathBuf>,
    /// Answer as this server profile (rfc1985, postfix, exim, sendmail, exchange-ims).
    #[arg(long, value_parser = parse_profile)]
    profile: Option<etrn_harness::smarthost::ProfileName>,
    /// Write the recording as JSON here when the server stops.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Stop after this many sessions have closed.
    #[arg(long)]
    exit_after_sessions: Option<usize>,
    /// Close sessions idle this many seconds with 421.
    #[arg(long, default_value_t = 300)]
    idle_timeout: u64,
    /// Refuse connections beyond this many with 421.
    #[arg(long, default_value_t = 1000)]
    max_connections: usize,
    /// Longest command line in octets, CRLF included.
    #[arg(long, default_value_t = 512)]
    max_line_length: usize,
    /// Largest message accepted, in octets; larger ones get 552.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    max_message_size: usize,
    /// Offer STARTTLS with a self-signed certificate made at start-up.
    #[arg(long)]
    starttls: bool,
}

fn parse_profile(s: &str) -> Result<etrn_harness::smarthost::ProfileName, String> {
    etrn_harness::smarthost::ProfileName::ALL
        .iter()
        .copied()
        .find(|p| p.as_str() == s)
        .ok_or_else(|| {
            let names: Vec<&str> = etrn_harness::smarthost::ProfileName::ALL
                .iter()
                .map(|p| p.as_str())
                .collect();
            format!("unknown profile {s:?}; use one of {}", names.join(", "))
        })
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
        Command::Serve(args) => serve::run(args),
        Command::Run(args) => run::run(args),
    }
}

mod run {
    //! `etrn-harness run`.

    use std::io::{IsTerminal, Write};
    use std::process::ExitCode;
    use std::time::Duration;

    use etrn_harness::conformance::{self, Case, KnownDeviations, RunOptions, Target, report};

    use super::{
        EXIT_DISAGREES, EXIT_INVALID, ReportFormat, RunArgs, report as report_errors, scenario,
    };

    pub fn run(args: RunArgs) -> ExitCode {
        let corpus = scenario::load_corpus(&args.paths);
        if !corpus.errors.is_empty() {
            report_errors(&corpus.errors, !std::io::stderr().is_terminal());
            return ExitCode::from(EXIT_INVALID);
        }
        let mut cases: Vec<Case> = corpus
            .scenarios
            .into_iter()
            .map(|(file, scenario)| Case { file, scenario })
            .collect();
        if let Some(pattern) = &args.filter {
            cases = match conformance::filter(cases, pattern) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: --filter {pattern:?} is not a valid glob: {e}");
                    return ExitCode::from(EXIT_INVALID);
                }
            };
        }
        if args.list {
            for c in &cases {
                println!("{:<48} {}", c.scenario.id, c.scenario.title);
            }
            println!("{} scenario(s)", cases.len());
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
        if !(args.timeout.is_finite() && args.timeout > 0.0) {
            eprintln!("error: --timeout must be a positive number of seconds");
            return ExitCode::from(EXIT_INVALID);
        }
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
                return ExitCode::FAILURE;
            }
        };
        let human = args.format == ReportFormat::Human;
        let to_stdout = args.output.is_none();
        let live = human && to_stdout;
        let progress = live && std::io::stdout().is_terminal();
        if live {
            println!("running {} case(s) against {}", cases.len(), target.name());
        }
        let results = runtime.block_on(conformance::run_all(
            cases,
            options,
            known,
            |r, done, total| {
                if live {
                    let mut out = std::io::stdout().lock();
                    if progress {
                        let _ = write!(out, "\r\x1b[2K");
                    }
                    let _ = writeln!(out, "{}", report::case_line(r));
                    if progress {
                        let _ = write!(out, "[{done}/{total}] running...");
                        let _ = out.flush();
                    }
                }
            },
        ));
        if progress {
            print!("\r\x1b[2K");
        }
        let text = match args.format {
            ReportFormat::Human => Ok(report::human(&results, args.strict)),
            ReportFormat::Json => {
                report::json(&results, &target.name(), args.strict).map_err(|e| e.to_string())
            }
            ReportFormat::Junit => {
                report::junit(&results, &target.name(), args.strict).map_err(|e| e.to_string())
            }
        };
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot render the report: {e}");
                return ExitCode::FAILURE;
            }
        };
        match &args.output {
            Some(path) => {
                if let Err(e) = std::fs::write(path, &text) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
                eprintln!("{}", report::summary_line(&results, args.strict));
            }
            None => print!("{text}"),
        }
        if results.iter().any(|r| r.verdict.fails(args.strict)) {
            ExitCode::from(EXIT_DISAGREES)
        } else {
            ExitCode::SUCCESS
        }
    }
}

mod serve {
    //! `etrn-harness serve`.

    use std::process::ExitCode;
    use std::time::Duration;

    use etrn_harness::smarthost::{
        LiveEvent, Recording, SmartHost, SmartHostConfig, SmartHostScript,
    };
    use etrn_harness::smtp::{Event, SessionLimits};

    use super::{EXIT_INVALID, ServeArgs, report, scenario};

    /// Long enough to mean "no timeout", short enough not to overflow the clock.
    const FOREVER: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

    pub fn run(args: ServeArgs) -> ExitCode {
        let script = match (&args.scenario, args.profile) {
            (Some(path), _) => match scenario::load_scenario(path) {
                Ok(s) => s.smarthost,
                Err(errors) => {
                    report(&errors, false);
                    return ExitCode::from(EXIT_INVALID);
                }
            },
            (None, Some(profile)) => SmartHostScript {
                profile,
                ..SmartHostScript::default()
            },
            (None, None) => SmartHostScript::default(),
        };
        let config = SmartHostConfig {
            listen: args.listen,
            script,
            limits: SessionLimits {
                max_line_octets: args.max_line_length,
                max_message_octets: args.max_message_size,
                starttls: args.starttls,
            },
            idle_timeout: Duration::from_secs(args.idle_timeout),
            max_connections: args.max_connections,
        };
        let runtime = match tokio::runtime::Runtime::new() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: cannot start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        runtime.block_on(serve(config, args.record, args.exit_after_sessions))
    }

    async fn serve(
        config: SmartHostConfig,
        record: Option<std::path::PathBuf>,
        exit_after: Option<usize>,
    ) -> ExitCode {
        let host = match SmartHost::start(config).await {
            Ok(h) => h,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        // Subscribe and install the signal handlers before announcing the address: a client that
        // connects at once, or a SIGTERM sent right after, is not missed.
        let mut live = host.recorder().subscribe();
        let mut stop_signal = match StopSignal::install() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("listening on {}", host.addr());
        let why = {
            let stop = async {
                match exit_after {
                    Some(n) => {
                        let _ = host
                            .recorder()
                            .wait_until(&format!("{n} sessions"), FOREVER, |r| {
                                r.closed_sessions() >= n
                            })
                            .await;
                        "session limit reached"
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(stop);
            loop {
                tokio::select! {
                    event = live.recv() => match event {
                    Ok(e) => print_live(&e),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "live output fell behind; the recording is complete");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break "server stopped",
                },
                why = &mut stop => break why,
                    why = stop_signal.received() => break why,
                }
            }
        };
        while let Ok(e) = live.try_recv() {
            print_live(&e);
        }
        tracing::info!(why, "stopping");
        let recording = host.shutdown().await;
        println!(
            "stopped ({why}): {} session(s), {} ETRN",
            recording.sessions.len(),
            recording.etrn_domains().len()
        );
        match record {
            Some(path) => match write_recording(&path, &recording) {
                Ok(()) => {
                    println!("recording written to {}", path.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!(
                        "error: cannot write the recording to {}: {e}",
                        path.display()
                    );
                    ExitCode::FAILURE
                }
            },
            None => ExitCode::SUCCESS,
        }
    }

    fn print_live(event: &LiveEvent) {
        if let LiveEvent::Event {
            session,
            event: Event::Etrn(e),
        } = event
        {
            let reply = e.reply.map_or("no reply".to_owned(), |c| c.to_string());
            println!("session {session}: ETRN {} -> {reply}", e.raw);
        }
    }

    /// Ctrl-C and SIGTERM, registered once so that no signal between two polls is lost.
    struct StopSignal {
        #[cfg(unix)]
        interrupt: tokio::signal::unix::Signal,
        #[cfg(unix)]
        terminate: tokio::signal::unix::Signal,
    }

    impl StopSignal {
        #[cfg(unix)]
        fn install() -> std::io::Result<Self> {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignal {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }

        #[cfg(not(unix))]
        fn install() -> std::io::Result<Self> {
            Ok(StopSignal {})
        }

        #[cfg(unix)]
        async fn received(&mut self) -> &'static str {
            tokio::select! {
                _ = self.interrupt.recv() => "interrupted",
                _ = self.terminate.recv() => "terminated",
            }
        }

        #[cfg(not(unix))]
        async fn received(&mut self) -> &'static str {
            let _ = tokio::signal::ctrl_c().await;
            "interrupted"
        }
    }

    /// Writes next to the target and renames, so a reader never sees half a recording.
    fn write_recording(path: &std::path::Path, recording: &Recording) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(recording).map_err(std::io::Error::other)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = std::path::PathBuf::from(tmp);
        std::fs::write(&tmp, json)?;
        std::fs::rename(&tmp, path)
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
            let sent = prediction.first_connection_etrn();
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
