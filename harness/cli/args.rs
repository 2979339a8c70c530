//! The command line's arguments: every subcommand, flag and value, with the help texts people
//! read. Clap's types stay in this folder; the library's own types are reached through the
//! `From` conversions at the bottom.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "etrn-harness",
    version,
    about = "SMTP test harness for ETRN (RFC 1985) dequeuing, with a reference model of Exchange 5.5 IMS",
    long_about = "SMTP test harness for ETRN (RFC 1985) dequeuing.\n\n\
        Scenario files (scenarios/<topic>/<name>.toml) describe an Exchange 5.5 IMS configuration, \
        how the upstream smart host answers, and which ETRN commands a conforming client sends; \
        the behaviour they test is specified in scenarios/README.md.\n\n\
        Scenario files (a path, or a built-in scenario by id: e26):\n  \
        check      validate them (exit 2 with located diagnostics)\n  \
        expect     show what the reference model plans for them, and whether it agrees\n  \
        scenarios  list, show or export the corpus built into this binary\n  \
        schema     print the scenario format (or, with --report, the JSON report) as JSON Schema\n\n\
        Testing an implementation:\n  \
        run      run an ETRN client (the built-in model, or any program with --exec) against \
        the corpus and judge it; human, JSON, JUnit or HTML reports\n  \
        report   merge the JSON reports of several implementations into an HTML matrix page\n  \
        serve    run the fake smart host: scripted, a server profile, or a scenario's; records \
        every command\n  \
        recording  turn the stream `serve --record` writes into the recording document\n\n\
        Smart hosts:\n  \
        probe    send a versioned set of ETRN probes to any smart host and grade its answers; \
        compare them with a profile (--against-profile) or clone them into one (--emit-profile)\n\n\
        Record and replay:\n  \
        record   proxy sessions to a real upstream and write them into a cassette\n  \
        replay   answer from a cassette without the upstream\n\n\
        Measuring:\n  \
        bench    load, side-by-side comparison with smtp-sink, memory of the recording\n\n\
        Logging goes to stderr and follows RUST_LOG (e.g. RUST_LOG=etrn_harness=debug); it is \
        coloured only when stderr is a terminal and NO_COLOR is unset.\n\n\
        Addresses: IP:PORT, [::1]:PORT, localhost:PORT or a bare PORT (the last two: 127.0.0.1).\n\n\
        Exit statuses, for every command:\n  \
        0  success\n  \
        1  what was tested did not conform (a FAIL or ERROR, a broken rule, a mismatch)\n  \
        2  bad input: usage, an address, a scenario, profile or cassette file\n  \
        3  unavailable: an address in use or not this machine's, a cassette another recorder holds\n  \
        4  the system failed: a file not written, no runtime or signal handlers\n  \
        5  stopped before its result: bench compare interrupted or terminated (no report)"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Validate scenario files; exit 0 when all are valid, 2 with diagnostics otherwise.
    Check {
        /// Files or folders (searched for *.toml), built-in ids (e26, e26-500-stops-etrn) or
        /// builtin: names (builtin:replies); default: the shipped corpus, built in. A path that
        /// exists wins over an id.
        #[arg(value_name = "SCENARIO")]
        paths: Vec<PathBuf>,
        /// Only scenarios whose id matches this glob (a plain word matches ids containing it).
        #[arg(long, value_name = "GLOB")]
        filter: Option<String>,
        /// Print one line per error instead of annotated source excerpts.
        #[arg(long)]
        short: bool,
    },
    /// Print the reference model's plan for scenarios: each ETRN with the rule behind it, the
    /// reply handling, and whether the model agrees with the file's [expect]. Exit 1 if it does not.
    Expect {
        /// Scenario files or folders, built-in ids (e26) or builtin: names; default: the shipped
        /// corpus, built in. A path that exists wins over an id.
        #[arg(value_name = "SCENARIO")]
        paths: Vec<PathBuf>,
        /// Only scenarios whose id matches this glob (a plain word matches ids containing it).
        #[arg(long, value_name = "GLOB")]
        filter: Option<String>,
        /// One line per scenario instead of the full plan.
        #[arg(long)]
        brief: bool,
    },
    /// Print a JSON Schema: of the scenario file format (default), or of `run --format json`'s
    /// report (--report); or the OpenAPI 3.1 document of `serve --api` (--openapi).
    Schema {
        /// The schema of the JSON report instead (its `version` field is 1).
        #[arg(long, conflicts_with = "openapi")]
        report: bool,
        /// The OpenAPI 3.1 document of the HTTP API instead: what `GET /openapi.json` answers.
        #[arg(long)]
        openapi: bool,
    },
    /// Run an implementation against the scenario corpus and judge it.
    ///
    /// At a terminal, a progress line on stderr shows the elapsed time, the cases done and the
    /// case the count waits for (with --output too); none when stderr is not a terminal.
    ///
    /// Each scenario gets a fresh smart host on its own port; the target runs once against it;
    /// the recording is judged, each deviation graded by the rule that explains it. A scenario the
    /// model disagrees with is an ERROR, not graded. Exit 0 when nothing FAILed or ERRORed (with
    /// --strict, no NON-STRICT and no stale --known entry either), 1 otherwise; 2 for usage or
    /// scenario errors, a selection of no case, or a target that cannot run: any non-zero exit
    /// without a connection on the first case (the shell's 126 or 127, an interpreter's 2 for a
    /// missing script, ...), which stops the run with one message.
    Run(RunArgs),
    /// Merge the JSON reports of several implementations into one HTML matrix page.
    ///
    /// Implementations are columns, cases rows, each cell the verdict on its colour with a link
    /// to that case's details (deviations with their rules, transcript) further down the page.
    /// The page is self-contained: nothing is fetched. Exit 2 when no report is given or any
    /// input is unreadable or not a report (each named with the reason); nothing is written then.
    ///
    /// Example: etrn-harness report builtin.json smtplib.json fetchmail.json --output matrix.html
    Report(ReportArgs),
    /// Measure the smart host (or any SMTP server) under load, alone or side by side with smtp-sink.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Proxy sessions to a real upstream and record them into a cassette.
    Record(RecordArgs),
    /// Answer from a cassette, as the recorded upstream did.
    Replay(ReplayArgs),
    /// Probe a smart host: the versioned ETRN probe set, one connection each, every answer
    /// graded by RFC 1985 / RFC 5321; compared with a profile, or cloned into one.
    ///
    /// Without a comparison, exit 1 when a must rule is broken (with --strict, a should rule
    /// too). With --against-profile, --against-profile-file or --against-scenario, exit 1 on any
    /// difference in reply code, masked text or connection state. Exit 2 for usage errors, a bad
    /// profile or scenario file, or a server that cannot be reached at all.
    Probe(ProbeArgs),
    /// Run the fake smart host: a scriptable ESMTP server that records every command.
    ///
    /// Prints one line per ETRN as it arrives. With --record FILE it streams the recording to
    /// FILE as JSON Lines, one event a line (`etrn-harness recording FILE` turns it into the
    /// document `GET /recording` returns); it stops on Ctrl-C, SIGTERM or after
    /// --exit-after-sessions.
    Serve(ServeArgs),
    /// The built-in scenario corpus: list it, print a scenario as shipped, or export it.
    #[command(subcommand)]
    Scenarios(ScenariosCommand),
    /// Turn a recording stream (the JSON Lines `serve --record FILE` writes) into the recording
    /// document `GET /recording` returns, on standard output.
    ///
    /// Exit 2 when FILE cannot be read or a line is not a stream line (the error names the line
    /// number, never its text).
    Recording {
        /// The stream: FILE itself, or the `.FILE.<random>.partial` a killed server left.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum ScenariosCommand {
    /// One line per built-in scenario: id, topic and title.
    List {
        /// Only scenarios whose id matches this glob (a plain word matches ids containing it).
        #[arg(long, value_name = "GLOB")]
        filter: Option<String>,
    },
    /// Print a built-in scenario's file as shipped.
    Show {
        /// Its id (e26-500-stops-etrn, or e26 when that names one) or builtin: name.
        id: PathBuf,
    },
    /// Write the built-in corpus into DIR as <topic>/<id>.toml files, the layout of the
    /// repository's scenarios/ folder; an existing file is refused unless --force.
    Export {
        /// The folder (created if missing).
        dir: PathBuf,
        /// Only scenarios whose id matches this glob.
        #[arg(long, value_name = "GLOB")]
        filter: Option<String>,
        /// Replace files that are already there.
        #[arg(long)]
        force: bool,
    },
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Scenario files or folders, built-in ids (e26, e26-500-stops-etrn) or builtin: names
    /// (builtin:replies); default: the shipped corpus, built in (a message on stderr says which
    /// corpus ran). A path that exists wins over an id.
    #[arg(value_name = "SCENARIO")]
    pub paths: Vec<PathBuf>,
    /// The built-in reference client (the only named target).
    #[arg(long, value_parser = ["builtin"], default_value = "builtin", conflicts_with = "exec")]
    pub target: String,
    /// An external program to test, run once per scenario through `sh -c`. Placeholders {host},
    /// {port}, {config}, {scenario}, {local_commands}; the same facts in ETRN_HARNESS_* variables.
    #[arg(long, value_name = "CMD", value_parser = non_empty_command)]
    pub exec: Option<String>,
    /// Only scenarios whose id matches this glob (a plain word matches ids containing it).
    #[arg(long, value_name = "GLOB")]
    pub filter: Option<String>,
    /// List the selected scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// Count NON-STRICT, and stale --known entries, as failing.
    #[arg(long)]
    pub strict: bool,
    /// Known deviations of this implementation (TOML [[known]] scenario/reason tables). Entries
    /// that match no scenario, or only cases that pass, are warned about (and fail --strict).
    #[arg(long, value_name = "FILE")]
    pub known: Option<PathBuf>,
    /// Cases at once (at least 1); default: the number of CPUs.
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub jobs: Option<usize>,
    /// Seconds each case's target may run before its process group is killed (above 0, at most
    /// a day).
    #[arg(long, value_name = "SECS", default_value_t = 10.0, value_parser = case_timeout)]
    pub timeout: f64,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Human)]
    pub format: ReportFormat,
    /// Write the report here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ReportArgs {
    /// JSON reports, each written by `etrn-harness run --format json`; one column each, in
    /// this order.
    #[arg(value_name = "REPORT.json")]
    pub reports: Vec<PathBuf>,
    /// Write the page here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The reports of `run`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// A line per case, then the details of every case that did not pass.
    Human,
    /// Every case with its verdict, deviations, recording and transcript (`schema --report`).
    Json,
    /// JUnit XML for CI dashboards.
    Junit,
    /// One self-contained HTML page: summary, every case, deviations, transcripts.
    Html,
}

/// The reports of `probe`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProbeFormat {
    Human,
    Json,
    Junit,
}

#[derive(clap::Args)]
pub struct ProbeArgs {
    /// The smart host, HOST:PORT (e.g. 127.0.0.1:25, [::1]:25, localhost:2525, or a bare port
    /// meaning 127.0.0.1).
    #[arg(value_parser = super::address::connect, required_unless_present = "list")]
    pub server: Option<std::net::SocketAddr>,
    /// Compare the answers with this shipped profile's, answered in memory.
    #[arg(long, value_name = "NAME", value_parser = parse_profile, group = "against")]
    pub against_profile: Option<etrn_harness::proto::ProfileName>,
    /// Compare the answers with this profile file's.
    #[arg(long, value_name = "FILE", group = "against")]
    pub against_profile_file: Option<PathBuf>,
    /// Compare the answers with this scenario's smart host (its [smarthost] table): a file, or
    /// a built-in id (e26).
    #[arg(long, value_name = "SCENARIO", group = "against")]
    pub against_scenario: Option<PathBuf>,
    /// Write what the server answered as a profile file (for `serve --profile-file`); the
    /// emitted profile is probed in memory and any probe it does not reproduce is reported.
    #[arg(long, value_name = "FILE")]
    pub emit_profile: Option<PathBuf>,
    /// Seconds to wait for each reply (and for the connection).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,
    /// Milliseconds to wait after each probe (a server whose queue runs must end first).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub settle: u64,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ProbeFormat::Human)]
    pub format: ProbeFormat,
    /// Write the report here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Count broken should rules as failing.
    #[arg(long)]
    pub strict: bool,
    /// Show every probe's transcript in the human report, not only where it differs.
    #[arg(long)]
    pub verbose: bool,
    /// Print the probe set and exit.
    #[arg(long)]
    pub list: bool,
}

#[derive(clap::Args)]
pub struct RecordArgs {
    /// Where clients connect: IP:PORT, localhost:PORT or a bare PORT (127.0.0.1); port 0 picks
    /// a free one.
    #[arg(long, default_value = "127.0.0.1:2525", value_parser = super::address::listen)]
    pub listen: std::net::SocketAddr,
    /// The real SMTP server to record, HOST:PORT (e.g. 127.0.0.1:25, localhost:2547, or a bare
    /// port meaning 127.0.0.1).
    #[arg(long, value_parser = super::address::connect)]
    pub upstream: std::net::SocketAddr,
    /// The cassette; new sessions are appended to an existing one. It is locked while
    /// recording: a second recorder on the same file is refused.
    #[arg(long)]
    pub cassette: PathBuf,
    /// Stop after this many sessions have ended (at least 1).
    #[arg(long, value_parser = at_least_one)]
    pub exit_after_sessions: Option<usize>,
    /// Simultaneous connections relayed; more get `421` at once and are not recorded.
    #[arg(long, default_value_t = etrn_harness::cassette::DEFAULT_MAX_CONNECTIONS, value_parser = at_least_one)]
    pub max_connections: usize,
    /// STARTTLS: `passthrough` relays it encrypted and records only that it happened;
    /// `terminate` does TLS with the client (own certificate) and with the upstream, and records
    /// the plaintext of the whole session (needs --upstream-ca or --upstream-insecure).
    #[arg(long, value_enum, default_value_t = TlsArg::Passthrough)]
    pub tls: TlsArg,
    /// With --tls terminate: PEM file of the certificate(s) the upstream's certificate is
    /// checked against.
    #[arg(long, value_name = "FILE", conflicts_with = "upstream_insecure")]
    pub upstream_ca: Option<PathBuf>,
    /// With --tls terminate: do not check the upstream's certificate (a private test server
    /// with a throw-away certificate).
    #[arg(long)]
    pub upstream_insecure: bool,
    /// With --tls terminate: the name the upstream's certificate must carry; default: the
    /// upstream's address.
    #[arg(long, value_name = "NAME")]
    pub upstream_name: Option<String>,
    /// With --tls terminate: the host name in the recorder's own self-signed certificate.
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    pub hostname: String,
    #[command(flatten)]
    pub events: ProxyEventsArgs,
    #[command(flatten)]
    pub ready: ReadyArgs,
}

/// How `serve`, `record` and `replay` say they are ready, and what they print.
#[derive(clap::Args)]
pub struct ReadyArgs {
    /// Also write the ready object (every address listened on, as JSON, the first line of
    /// `--events jsonl`) to FILE once listening: written beside it and renamed, so a program
    /// polling for FILE reads the whole object or nothing.
    #[arg(long, value_name = "FILE")]
    pub ready_file: Option<PathBuf>,
}

/// What `record` and `replay` print on stdout.
#[derive(clap::Args)]
pub struct ProxyEventsArgs {
    /// `human` lines; `jsonl`: a JSON object per line (the ready object first, the stop line
    /// last); `none`: only the first and the stop line, as human.
    #[arg(long, value_enum, default_value_t = super::serve::EventsFormat::Human)]
    pub events: super::serve::EventsFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsArg {
    Passthrough,
    Terminate,
}

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The cassette to answer from.
    #[arg(long)]
    pub cassette: PathBuf,
    /// Where clients connect: IP:PORT, localhost:PORT or a bare PORT (127.0.0.1); port 0 picks
    /// a free one, printed at start.
    #[arg(long, default_value = "127.0.0.1:2525", value_parser = super::address::listen)]
    pub listen: std::net::SocketAddr,
    /// How commands are matched to recorded exchanges.
    #[arg(long = "match", value_enum, default_value_t = MatchArg::Verb)]
    pub match_mode: MatchArg,
    /// The reply to a command the cassette does not have.
    #[arg(
        long,
        default_value = "451 4.3.0 etrn-harness replay: this command is not in the cassette"
    )]
    pub mismatch_reply: String,
    /// Also ignore this verb's argument when matching in `verb` and `lenient` (repeatable).
    /// EHLO, HELO and LHLO are ignored already: their argument is the client's host name.
    #[arg(long = "ignore-args", value_name = "VERB")]
    pub ignore_args: Vec<String>,
    /// Compare this verb's argument after all (repeatable), e.g. `--match-args EHLO`.
    #[arg(long = "match-args", value_name = "VERB")]
    pub match_args: Vec<String>,
    /// Exit 1 also when a session ends with recorded exchanges its client never reached.
    #[arg(long)]
    pub fail_on_unplayed: bool,
    /// Fetch what the cassette misses from --upstream and append it (VCR's new_episodes).
    #[arg(long, requires = "upstream")]
    pub record_on_miss: bool,
    /// The real server for --record-on-miss, HOST:PORT (or a bare port meaning 127.0.0.1).
    #[arg(long, value_parser = super::address::connect)]
    pub upstream: Option<std::net::SocketAddr>,
    /// Simultaneous connections served; more get `421` at once.
    #[arg(long, default_value_t = etrn_harness::cassette::DEFAULT_MAX_CONNECTIONS, value_parser = at_least_one)]
    pub max_connections: usize,
    /// Stop after this many sessions have ended (at least 1).
    #[arg(long, value_parser = at_least_one)]
    pub exit_after_sessions: Option<usize>,
    #[command(flatten)]
    pub events: ProxyEventsArgs,
    #[command(flatten)]
    pub ready: ReadyArgs,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// One workload against one server; loopback addresses only.
    Load(BenchLoadArgs),
    /// The smart host (release build recommended) and Postfix's smtp-sink side by side: the load
    /// generator's workloads, smtp-source, and `serve` as users run it (default output,
    /// `--record FILE`, 10 pending API waits, a worker per CPU, `--when-full queue`): per row the
    /// ratio of the two and whether its rounds tell them apart beyond chance, each
    /// server's CPU time per unit, and the load tool's share of the time and its minor page
    /// faults per unit (smtp-source runs with glibc's heap trimming off and the largest mmap
    /// threshold, so its faults swing far less from run to run); at a terminal, each round and
    /// workload is shown on stderr as it runs. The JSON report names the CPUs, kernel and
    /// versions. Ctrl-C or SIGTERM stops every server it started; it then exits 5, without a
    /// report.
    Compare(BenchCompareArgs),
    /// What recording costs: bytes per recorded session, RSS after a long streamed soak.
    Memory(BenchMemoryArgs),
    /// What the API costs the SMTP server: sessions/s with waits pending and live-feed
    /// subscribers, and peak RSS under concurrent GET /recording reads and at shutdown, as
    /// ratios (release build recommended).
    #[command(visible_alias = "waits")]
    Api(BenchApiArgs),
}

#[derive(clap::Args)]
pub struct BenchApiArgs {
    /// EHLO/ETRN/QUIT sessions per run.
    #[arg(long, default_value_t = 5_000)]
    pub sessions: u64,
    /// A row per number: that many waits pending during the run (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [10, 100, 1000])]
    pub waits: Vec<usize>,
    /// A row with that many live-feed subscribers (the API's GET /events without HTTP); 0 for
    /// none.
    #[arg(long, default_value_t = 200)]
    pub subscribers: usize,
    /// A row with that many GET /events clients over HTTP (the API takes at most 64 connections);
    /// 0 for none.
    #[arg(long, default_value_t = 60)]
    pub feeds: usize,
    /// Rounds of every row.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Client tasks at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Sessions recorded before the memory figures (the recording the readers read); 0 skips
    /// them.
    #[arg(long, default_value_t = 50_000)]
    pub recorded_sessions: u64,
    /// Clients reading GET /recording at once.
    #[arg(long, default_value_t = 8)]
    pub readers: usize,
    /// Stop each run, read and shutdown after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    pub duration: f64,
}

#[derive(clap::Args)]
pub struct BenchMemoryArgs {
    /// EHLO/ETRN/QUIT sessions measured with full retention.
    #[arg(long, default_value_t = 100_000)]
    pub sessions: u64,
    /// Sessions of the soak with --retain open and the recording streamed to a file.
    #[arg(long, default_value_t = 1_000_000)]
    pub soak_sessions: u64,
    /// Stop each run after this many seconds.
    #[arg(long, default_value_t = 600.0)]
    pub duration: f64,
}

#[derive(clap::Args)]
pub struct BenchLoadArgs {
    /// The server, HOST:PORT like --upstream (e.g. 127.0.0.1:2525 or localhost:2525); it must
    /// be a loopback address.
    #[arg(long, value_parser = super::address::connect)]
    pub target: std::net::SocketAddr,
    #[arg(long, value_enum)]
    pub workload: WorkloadArg,
    /// Sessions (etrn, mail), ETRN commands (pipelined) or connections (idle).
    #[arg(long, default_value_t = 10_000)]
    pub count: u64,
    /// Client tasks at once (etrn, mail) or connections opened at once (idle).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Stop after this many seconds whatever --count says.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// The server's process id, to report its RSS (idle) and peak RSS.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct BenchCompareArgs {
    /// Rounds; each runs every workload four times, smart host and smtp-sink in the order A B B A
    /// (which goes first alternates by round), each run half the count, and takes each server's
    /// mean. The table's `rounds` column counts the rounds the smart host did better in and says
    /// `better` or `worse` only when that many could not be chance (a sign test at 5% in each
    /// direction, over the rounds that differed: 5 of 5, 6 of 6, 7 of 7, 7 of 8, 8 of 9); with
    /// fewer than 5 rounds every row reads `tie`. Equal servers still get a verdict on some row
    /// of eleven in many runs: trust one that a second run repeats.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Multiplies every workload's count (1.0: 20k sessions, 200k ETRN, 5k idle connections,
    /// 5k messages for `serve` with its default output; per server and round, in two halves).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Stop each workload run after this many seconds.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Also time a conformance run of this corpus with the builtin target: a folder, a file or
    /// a built-in id (as `run` takes them); default: the shipped corpus, built in.
    #[arg(long, value_name = "SCENARIO")]
    pub corpus: Option<PathBuf>,
    /// Write the full report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// What stdout shows as sessions run: `human` lines (sessions opened and closed, each ETRN
    /// with its reply and flags), `jsonl` (one JSON object per event), or `none`.
    #[arg(long, value_enum, default_value_t = super::serve::EventsFormat::Human)]
    pub events: super::serve::EventsFormat,
    /// Also serve the HTTP/JSON API here (e.g. 127.0.0.1:8025, or a bare port; port 0 picks
    /// one, printed on the second line and in the ready object): the recording, waits, a live
    /// feed, reset, a new script while running; `GET /openapi.json` describes it (OpenAPI 3.1).
    /// No authentication: keep it on loopback.
    #[arg(long, value_name = "ADDR", value_parser = super::address::listen)]
    pub api: Option<std::net::SocketAddr>,
    /// The one folder a script sent to `PUT /script` may name a cassette in (relative to it, no
    /// `..`, links may not lead out, regular files only; Linux, opened with openat2). Without it
    /// the API opens no file.
    #[arg(long, value_name = "DIR", requires = "api")]
    pub cassette_dir: Option<std::path::PathBuf>,
    /// Close an API connection whose answer the client has not read for this many seconds (a
    /// client that never reads cannot hold a connection for ever).
    #[arg(long, value_name = "SECS", default_value_t = 30, requires = "api",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub api_write_timeout: u64,
    /// Same as --events none (for benchmarks).
    #[arg(long, conflicts_with = "events")]
    pub quiet: bool,
    #[command(flatten)]
    pub ready: ReadyArgs,
    /// Address to listen on: IP:PORT, localhost:PORT or a bare PORT (127.0.0.1); port 0 picks
    /// a free port, printed at start.
    #[arg(long, default_value = "127.0.0.1:2525", value_parser = super::address::listen)]
    pub listen: std::net::SocketAddr,
    /// Answer as this scenario's [smarthost] table says: a file, or a built-in id (e26).
    #[arg(long, value_name = "SCENARIO", conflicts_with = "profile")]
    pub scenario: Option<PathBuf>,
    /// Answer as this server profile (rfc1985, postfix, exim, exim-default, exim-etrn-command,
    /// sendmail, exchange-ims).
    #[arg(long, value_parser = parse_profile)]
    pub profile: Option<etrn_harness::proto::ProfileName>,
    /// Answer as this profile file (one written by `probe --emit-profile`, say); with
    /// --scenario it replaces the profile the scenario names.
    #[arg(long, value_name = "FILE", conflicts_with = "profile")]
    pub profile_file: Option<PathBuf>,
    /// A domain the server holds mail for (repeatable): its ETRN gets the profile's `served`
    /// answer (Postfix's fast_flush_domains); added to a scenario's list.
    #[arg(long, value_name = "DOMAIN")]
    pub served: Vec<String>,
    /// The server's name in its greeting and replies; default: the scenario's, else
    /// smarthost.example.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Stream the recording here as JSON Lines, one line per event as it happens, written by a
    /// thread of its own (a killed server loses only what that thread had not yet written, under
    /// load about the last millisecond's lines). A link at this path is refused.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Octets of --record lines that may wait for the disk: lines that find the buffer full are
    /// dropped, counted and marked in FILE, and serve exits 4.
    #[arg(long, value_name = "OCTETS", requires = "record",
          default_value_t = etrn_harness::smarthost::STREAM_BUFFER_OCTETS as u64,
          value_parser = clap::value_parser!(u64).range(1..=(1 << 30)))]
    pub record_buffer: u64,
    /// How much history to keep in memory: N (open sessions and the N that closed last; an
    /// older one is counted, then forgotten), all, or open (open sessions only). Only all lets
    /// the memory of closed sessions grow without bound; --record still streams everything.
    #[arg(long, value_name = "N|all|open", default_value = DEFAULT_RETAIN,
          value_parser = retention)]
    pub retain: RetentionArg,
    /// Stop after this many sessions have closed (at least 1).
    #[arg(long, value_parser = at_least_one)]
    pub exit_after_sessions: Option<usize>,
    /// Close sessions idle this many seconds with 421.
    #[arg(long, default_value_t = 300)]
    pub idle_timeout: u64,
    /// Connections served at once (at least 1); what one more gets is --when-full's choice.
    #[arg(long, default_value_t = 1000, value_parser = at_least_one)]
    pub max_connections: usize,
    /// What a connection past --max-connections gets: `refuse` answers 421 at once (counted as
    /// refused in the stop line); `queue` leaves it waiting, connected, in the kernel's listen
    /// queue until a session ends, as Postfix does at its process limit (`--max-connections 100
    /// --when-full queue` is Postfix's default). A queued client that gives up before its turn
    /// still becomes a session (closed by the peer). With a load tool that opens far more
    /// sessions at once than the server needs, `queue` is faster (README, Benchmarks, row (i)).
    #[arg(long, value_enum, default_value_t = WhenFullArg::Refuse)]
    pub when_full: WhenFullArg,
    /// Threads that serve the sessions (default: all CPUs but one, at least one; the client of a
    /// load test on loopback has the last). 1: everything on a single event loop, as Postfix's
    /// smtp-sink. A client of many threads is served faster by a worker per CPU (`bench compare`
    /// row (h) measures it).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
    /// Longest command line in octets, CRLF included; default: the profile's `line_limit`
    /// (512 for rfc1985, 2048 for postfix and sendmail, 16384 for the exim profiles).
    #[arg(long, value_name = "OCTETS", value_parser = clap::value_parser!(u32).range(512..=1_048_576))]
    pub max_line_length: Option<u32>,
    /// Largest message accepted, in octets; larger ones get 552.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub max_message_size: usize,
    /// Offer STARTTLS with a self-signed certificate made at start-up.
    #[arg(long)]
    pub starttls: bool,
}

/// A count of at least one (a cap of zero connections would refuse everyone).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A command line for `sh -c`: an empty one would run nothing and judge every case ERROR.
pub fn non_empty_command(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("is empty: give the command that runs the client, e.g. --exec 'fetchmail ...'".into())
    } else {
        Ok(s.to_owned())
    }
}

/// The longest `run --timeout` accepted: beyond a day it is a typo, and a `Duration` would
/// overflow.
pub const MAX_CASE_TIMEOUT_SECS: f64 = 86_400.0;

/// Seconds a case may run: above 0 (no case runs in no time), at most a day.
pub fn case_timeout(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(t) if t.is_finite() && t > 0.0 && t <= MAX_CASE_TIMEOUT_SECS => Ok(t),
        Ok(_) => Err(format!(
            "must be a number of seconds above 0 and at most {MAX_CASE_TIMEOUT_SECS} (a day)"
        )),
        Err(e) => Err(e.to_string()),
    }
}

pub fn parse_profile(s: &str) -> Result<etrn_harness::proto::ProfileName, String> {
    etrn_harness::proto::ProfileName::ALL
        .iter()
        .copied()
        .find(|p| p.as_str() == s)
        .ok_or_else(|| {
            let names: Vec<&str> = etrn_harness::proto::ProfileName::ALL
                .iter()
                .map(|p| p.as_str())
                .collect();
            format!("unknown profile {s:?}; use one of {}", names.join(", "))
        })
}

/// `replay --match`: how a command is matched to the cassette ([`MatchMode`]).
///
/// [`MatchMode`]: etrn_harness::proto::MatchMode
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MatchArg {
    /// The same command lines in the same order, byte for byte.
    Strict,
    /// The same verb and normalised argument, in order.
    Verb,
    /// The next unused exchange with the same verb and argument, anywhere in the session.
    Lenient,
}

impl From<MatchArg> for etrn_harness::proto::MatchMode {
    fn from(arg: MatchArg) -> Self {
        use etrn_harness::proto::MatchMode;
        match arg {
            MatchArg::Strict => MatchMode::Strict,
            MatchArg::Verb => MatchMode::Verb,
            MatchArg::Lenient => MatchMode::Lenient,
        }
    }
}

/// `serve --retain`'s default: the closed sessions kept. Enough for any test that reads what it
/// caused (the counts stay exact whatever is forgotten), and a bound on memory in a load test:
/// about 4 MiB of EHLO/ETRN/QUIT sessions (README, Memory of the recording).
pub const DEFAULT_RETAIN: &str = "10000";

/// `serve --retain`: how much history the recorder keeps in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionArg {
    /// Every session, open or closed.
    All,
    /// Open sessions and the N that closed last.
    Latest(usize),
    /// Open sessions only: a closed session is counted, then forgotten (memory stays flat in a
    /// soak; a JSON Lines stream keeps everything).
    Open,
}

/// `--retain`'s value: a count, `all` or `open`.
pub fn retention(s: &str) -> Result<RetentionArg, String> {
    match s {
        "all" => Ok(RetentionArg::All),
        "open" => Ok(RetentionArg::Open),
        _ => match s.parse::<usize>() {
            Ok(0) => Ok(RetentionArg::Open),
            Ok(n) => Ok(RetentionArg::Latest(n)),
            Err(_) => Err(format!(
                "is not a count of closed sessions, `all` or `open`; e.g. --retain {DEFAULT_RETAIN}"
            )),
        },
    }
}

impl From<RetentionArg> for etrn_harness::smarthost::Retention {
    fn from(arg: RetentionArg) -> Self {
        use etrn_harness::smarthost::Retention;
        match arg {
            RetentionArg::All => Retention::All,
            RetentionArg::Latest(n) => Retention::Latest(n),
            RetentionArg::Open => Retention::Open,
        }
    }
}

/// `serve --when-full`: what a connection past `--max-connections` gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WhenFullArg {
    /// 421 at connect, at once; counted as refused, never recorded as a session.
    Refuse,
    /// Left in the kernel's listen queue until a session ends.
    Queue,
}

impl From<WhenFullArg> for etrn_harness::smarthost::WhenFull {
    fn from(arg: WhenFullArg) -> Self {
        use etrn_harness::smarthost::WhenFull;
        match arg {
            WhenFullArg::Refuse => WhenFull::Refuse,
            WhenFullArg::Queue => WhenFull::Queue,
        }
    }
}

/// `bench load --workload`: what to do to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkloadArg {
    /// (a) A new connection per session: greeting, EHLO, one ETRN, QUIT.
    Etrn,
    /// (b) One session, many ETRNs, pipelined when PIPELINING is advertised.
    Pipelined,
    /// (c) Mail sink: new connection, EHLO, MAIL, RCPT, DATA of `message_octets`, QUIT.
    Mail,
    /// (d) Many connections held open after EHLO.
    Idle,
}

impl From<WorkloadArg> for etrn_harness::bench::Workload {
    fn from(arg: WorkloadArg) -> Self {
        use etrn_harness::bench::Workload;
        match arg {
            WorkloadArg::Etrn => Workload::Etrn,
            WorkloadArg::Pipelined => Workload::Pipelined,
            WorkloadArg::Mail => Workload::Mail,
            WorkloadArg::Idle => Workload::Idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_reads_a_count_all_or_open_and_zero_as_open() {
        assert_eq!(retention(DEFAULT_RETAIN), Ok(RetentionArg::Latest(10_000)));
        assert_eq!(retention("25"), Ok(RetentionArg::Latest(25)));
        assert_eq!(
            retention("0"),
            Ok(RetentionArg::Open),
            "none kept closed is open"
        );
        assert_eq!(retention("all"), Ok(RetentionArg::All));
        assert_eq!(retention("open"), Ok(RetentionArg::Open));
        for bad in ["-1", "ten", "ALL", ""] {
            let err = retention(bad).expect_err(bad);
            assert!(err.contains("e.g. --retain 10000"), "{bad}: {err}");
        }
    }
}
