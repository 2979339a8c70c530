//! `etrn-harness record` and `etrn-harness replay`.

use std::process::ExitCode;

use std::sync::Arc;

use etrn_harness::cassette::{
    self, CassetteWriter, MissRecordingReplay, RecordError, RecordingProxy, TlsMode, TlsTerminate,
    UpstreamTrust,
};
use etrn_harness::proto::Event;
use etrn_harness::proto::ReplayOptions;
use etrn_harness::proto::cassette::{Cassette, LoadCassetteError};
use etrn_harness::smarthost::{LiveEvent, ServerHandle};
use etrn_harness::wire::Verb;

use super::exit::{EXIT_DISAGREES, EXIT_SYSTEM, EXIT_UNAVAILABLE};
use super::output::Output;
use super::ready::{Count, Ready, Server, Stopped};
use super::serve::EventsFormat;
use super::signals::{FOREVER, StopSignal};
use super::{EXIT_INVALID, RecordArgs, ReplayArgs, TlsArg};

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Runtime::new() {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            None
        }
    }
}

/// Installs the stop signals, reporting a failure.
fn stop_signal() -> Result<StopSignal, ExitCode> {
    StopSignal::install().map_err(|e| {
        eprintln!("error: cannot install signal handlers: {e}");
        ExitCode::from(EXIT_SYSTEM)
    })
}

/// The exit status for a proxy that did not start: an address in use and a cassette another
/// recorder holds are unavailable; a cassette that cannot be opened is the system's failure;
/// the rest (a file that is no cassette, TLS settings) is bad input.
fn record_failure(e: &RecordError) -> u8 {
    match e {
        RecordError::Bind { .. } | RecordError::Locked { .. } => EXIT_UNAVAILABLE,
        RecordError::Cassette { .. } => EXIT_SYSTEM,
        _ => EXIT_INVALID,
    }
}

/// Where a long-running command's first and last lines go: stdout in the chosen format, and
/// the ready object to `--ready-file`.
struct Announcer {
    format: EventsFormat,
    ready_file: Option<std::path::PathBuf>,
    out: Output,
}

impl Announcer {
    fn new(format: EventsFormat, ready_file: Option<std::path::PathBuf>) -> Self {
        Announcer {
            format,
            ready_file,
            out: Output::start(),
        }
    }

    /// The first line (`human` for people, the ready object for programs) and the ready file.
    /// The file first: a program that reads the line and then the file finds it.
    fn ready(&self, ready: &Ready, human: String) -> Result<(), ExitCode> {
        if let Some(path) = &self.ready_file
            && let Err(e) = ready.write_file(path)
        {
            eprintln!("error: cannot write the ready file {}: {e}", path.display());
            return Err(ExitCode::from(EXIT_SYSTEM));
        }
        let _ = self.out.line(if self.format == EventsFormat::Jsonl {
            ready.json()
        } else {
            human
        });
        Ok(())
    }

    /// A line between the first and the last: `human` for people, `json` for programs, nothing
    /// with `--events none`.
    fn event(&self, human: impl FnOnce() -> String, json: impl FnOnce() -> String) {
        let _ = match self.format {
            EventsFormat::Human => self.out.line(human()),
            EventsFormat::Jsonl => self.out.line(json()),
            EventsFormat::None => true,
        };
    }

    /// The stop line, then what is left written (bounded, as serve's).
    async fn stopped(self, stopped: &Stopped) {
        self.out.last(if self.format == EventsFormat::Jsonl {
            stopped.json()
        } else {
            stopped.human()
        });
        self.out.finish().await;
    }
}

pub fn record(args: RecordArgs) -> ExitCode {
    if let Err(code) = super::ready::remove_stale(args.ready.ready_file.as_deref()) {
        return code;
    }
    let Some(rt) = runtime() else {
        return ExitCode::from(EXIT_SYSTEM);
    };
    let tls = match tls_mode(&args) {
        Ok(t) => t,
        Err(code) => return code,
    };
    rt.block_on(async {
        let started = RecordingProxy::start_with(
            args.listen,
            args.upstream,
            &args.cassette,
            tls,
            args.max_connections,
        )
        .await;
        let banner = |addr| {
            let mut ready = Ready::new(Server::Record, addr);
            ready.upstream = Some(args.upstream);
            ready.cassette = Some(args.cassette.clone());
            let human = format!(
                "recording {addr} -> {} into {}",
                args.upstream,
                args.cassette.display()
            );
            (ready, human)
        };
        let announcer = Announcer::new(args.events.events, args.ready.ready_file);
        run_until_stopped(started, banner, announcer, args.exit_after_sessions).await
    })
}

/// The STARTTLS handling `record` was asked for.
fn tls_mode(args: &RecordArgs) -> Result<TlsMode, ExitCode> {
    let usage = |message: &str| {
        eprintln!("error: {message}");
        ExitCode::from(EXIT_INVALID)
    };
    if args.tls == TlsArg::Passthrough {
        if args.upstream_ca.is_some() || args.upstream_insecure || args.upstream_name.is_some() {
            return Err(usage(
                "--upstream-ca, --upstream-insecure and --upstream-name apply to --tls terminate",
            ));
        }
        return Ok(TlsMode::Passthrough);
    }
    let trust = match (&args.upstream_ca, args.upstream_insecure) {
        (Some(ca), _) => UpstreamTrust::Ca(ca.clone()),
        (None, true) => UpstreamTrust::Insecure,
        (None, false) => {
            return Err(usage(
                "--tls terminate checks the upstream's certificate: give --upstream-ca FILE (PEM), or --upstream-insecure for a private test server",
            ));
        }
    };
    let name = args
        .upstream_name
        .clone()
        .unwrap_or_else(|| args.upstream.ip().to_string());
    match TlsTerminate::new(&args.hostname, &name, &trust) {
        Ok(t) => Ok(TlsMode::Terminate(Arc::new(t))),
        Err(e) => Err(usage(&e.to_string())),
    }
}

/// Announces a proxy server, runs it until a stop signal or until `exit_after` sessions have
/// ended, and shuts it down.
async fn run_until_stopped(
    started: Result<ServerHandle, RecordError>,
    banner: impl FnOnce(std::net::SocketAddr) -> (Ready, String),
    announcer: Announcer,
    exit_after: Option<usize>,
) -> ExitCode {
    let server = match started {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(record_failure(&e));
        }
    };
    let mut signals = match stop_signal() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let (ready, human) = banner(server.addr());
    if let Err(code) = announcer.ready(&ready, human) {
        server.stop().await;
        announcer.out.finish().await;
        return code;
    }
    let why = tokio::select! {
        why = signals.received() => why,
        _ = server.wait_for_ended_sessions(exit_after.unwrap_or(usize::MAX), FOREVER),
            if exit_after.is_some() => "session limit reached",
    };
    let refused = server.refused();
    // Counted by the shutdown, which ends (and so counts) the sessions still open.
    let sessions = server.stop().await;
    let stopped = Stopped {
        command: ready.command,
        why,
        sessions: sessions as u64,
        counts: vec![Count::new("refused", "refused", refused)],
    };
    announcer.stopped(&stopped).await;
    ExitCode::SUCCESS
}

/// The line people see for a live event of a replay: its mismatches and unplayed exchanges.
fn replay_line(event: &LiveEvent) -> Option<String> {
    match event {
        LiveEvent::Event {
            session,
            event:
                Event::ReplayMismatch {
                    position,
                    expected,
                    actual,
                },
            ..
        } => Some(format!(
            "session {session}: mismatch at exchange {position}: expected {expected}, got {actual}"
        )),
        LiveEvent::Event {
            session,
            event: Event::ReplayUnplayed { exchanges, first },
            ..
        } => Some(format!(
            "session {session}: ended with {exchanges} recorded exchange(s) unplayed, from exchange {first}"
        )),
        _ => None,
    }
}

/// Loads a cassette for replay: errors name the line; truncation is a warning.
pub fn load(path: &std::path::Path) -> Result<Cassette, ExitCode> {
    let cassette = etrn_harness::proto::cassette::load_cassette(path).map_err(|e| {
        match e {
            LoadCassetteError::Read(e) => {
                eprintln!(
                    "error: cannot read the cassette {}: {}",
                    path.display(),
                    e.reason()
                )
            }
            LoadCassetteError::Parse { .. } => eprintln!("error: {e}"),
        }
        ExitCode::from(EXIT_INVALID)
    })?;
    if let Some(line) = cassette.truncated_at {
        eprintln!(
            "warning: {}:{line}: the cassette stops in the middle of an exchange (a killed recorder?); replaying what comes before",
            path.display()
        );
    }
    Ok(cassette)
}

/// `replay`: the cassette served as is, or with misses fetched from `--upstream` and recorded.
pub fn replay(args: ReplayArgs) -> ExitCode {
    if let Err(code) = super::ready::remove_stale(args.ready.ready_file.as_deref()) {
        return code;
    }
    let cassette = match load(&args.cassette) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let options = match replay_options(&args) {
        Ok(options) => options,
        Err(code) => return code,
    };
    let Some(rt) = runtime() else {
        return ExitCode::from(EXIT_SYSTEM);
    };
    let announcer = Announcer::new(args.events.events, args.ready.ready_file.clone());
    rt.block_on(async {
        if args.record_on_miss {
            replay_recording_misses(cassette, options, &args, announcer).await
        } else {
            replay_only(cassette, options, &args, announcer).await
        }
    })
}

/// The replay's options from the command line: the match mode, the reply to a mismatch, the
/// verbs whose arguments are ignored.
fn replay_options(args: &ReplayArgs) -> Result<ReplayOptions, ExitCode> {
    let mismatch_reply = match etrn_harness::reply::Reply::parse(&args.mismatch_reply) {
        Ok(r) => r.to_wire().into_bytes(),
        Err(e) => {
            eprintln!("error: --mismatch-reply: {e} ({})", e.fix());
            return Err(ExitCode::from(EXIT_INVALID));
        }
    };
    let mut options = ReplayOptions {
        mode: args.match_mode.into(),
        mismatch_reply,
        ..ReplayOptions::default()
    };
    for verb in &args.ignore_args {
        options.ignore_args.insert(Verb::from(verb.as_str()));
    }
    for verb in &args.match_args {
        options.ignore_args.remove(&Verb::from(verb.as_str()));
    }
    Ok(options)
}

/// `--record-on-miss`: a miss is fetched from `--upstream` and appended to the cassette.
async fn replay_recording_misses(
    cassette: Cassette,
    options: ReplayOptions,
    args: &ReplayArgs,
    announcer: Announcer,
) -> ExitCode {
    let Some(upstream) = args.upstream else {
        eprintln!("error: --record-on-miss needs --upstream HOST:PORT");
        return ExitCode::from(EXIT_INVALID);
    };
    let writer = match CassetteWriter::open(&args.cassette) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(record_failure(&e));
        }
    };
    let started = MissRecordingReplay::start(
        cassette,
        options,
        args.listen,
        upstream,
        writer,
        args.max_connections,
    )
    .await;
    let banner = |addr| {
        let mut ready = Ready::new(Server::Replay, addr);
        ready.upstream = Some(upstream);
        ready.cassette = Some(args.cassette.clone());
        let human = format!(
            "replaying {} on {addr}; misses are fetched from {upstream}",
            args.cassette.display()
        );
        (ready, human)
    };
    run_until_stopped(started, banner, announcer, args.exit_after_sessions).await
}

/// The cassette served as is until a stop; mismatches (and unplayed exchanges, if asked) fail.
async fn replay_only(
    cassette: Cassette,
    options: ReplayOptions,
    args: &ReplayArgs,
    announcer: Announcer,
) -> ExitCode {
    let host = match cassette::replay_server_with(
        cassette,
        options,
        args.listen,
        etrn_harness::proto::DEFAULT_IDLE_TIMEOUT,
        args.max_connections,
        etrn_harness::smarthost::Recorder::new(),
    )
    .await
    {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(super::serve::host_failure(&e));
        }
    };
    let mut live = host.recorder().subscribe();
    let mut signals = match stop_signal() {
        Ok(s) => s,
        Err(code) => return code,
    };
    // Lines go through a writer of their own: a stdout nobody reads never holds the signals.
    let mut ready = Ready::new(Server::Replay, host.addr());
    ready.cassette = Some(args.cassette.clone());
    let human = format!("replaying {} on {}", args.cassette.display(), host.addr());
    if let Err(code) = announcer.ready(&ready, human) {
        host.shutdown().await;
        announcer.out.finish().await;
        return code;
    }
    let show = |e: &LiveEvent| {
        if let Some(human) = replay_line(e) {
            announcer.event(|| human, || e.json_text().to_string());
        }
    };
    let why = loop {
        tokio::select! {
            biased;
            event = live.recv() => match event.as_deref() {
                // The live lines are for people; the counts below come from the recording,
                // which misses nothing even when this stream lags.
                Ok(e) => show(e),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break "server stopped",
            },
            _ = host.recorder().until_closed_sessions(args.exit_after_sessions.unwrap_or(usize::MAX), FOREVER),
                if args.exit_after_sessions.is_some() => break "session limit reached",
            why = signals.received() => break why,
        }
    };
    // What was recorded before the stop is shown: `recv` may have said "not yet" with events
    // queued (tokio's cooperative budget), letting the stop branch win the race above.
    while let Ok(e) = live.try_recv() {
        show(&e);
    }
    let recording = host.shutdown().await;
    let (stopped, mismatches, unplayed) = replay_stopped(&recording, why);
    announcer.stopped(&stopped).await;
    if mismatches > 0 || (args.fail_on_unplayed && unplayed > 0) {
        ExitCode::from(EXIT_DISAGREES)
    } else {
        ExitCode::SUCCESS
    }
}

/// The replay's stop line, counted from the recording, with its mismatches and unplayed
/// exchanges.
fn replay_stopped(
    recording: &etrn_harness::Recording,
    why: &'static str,
) -> (Stopped, usize, usize) {
    let mut mismatches = 0usize;
    let mut unplayed = 0usize;
    let mut etrn = 0usize;
    for session in &recording.sessions {
        etrn += session.etrn.len();
        for timed in &session.events {
            match &timed.event {
                Event::ReplayMismatch { .. } => mismatches += 1,
                Event::ReplayUnplayed { exchanges, .. } => unplayed += exchanges,
                _ => {}
            }
        }
    }
    let stopped = Stopped {
        command: Server::Replay,
        why,
        sessions: recording.sessions.len() as u64,
        counts: vec![
            Count::new("etrn", "ETRN", etrn),
            Count::new("mismatches", "mismatch(es)", mismatches),
            Count::new("unplayed", "unplayed exchange(s)", unplayed),
        ],
    };
    (stopped, mismatches, unplayed)
}
