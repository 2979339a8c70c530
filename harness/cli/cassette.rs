//! `etrn-harness record` and `etrn-harness replay`.

use std::process::ExitCode;
use std::time::Duration;

use std::sync::Arc;

use etrn_harness::cassette::{
    self, Cassette, CassetteWriter, LoadCassetteError, MissRecordingReplay, ProxyServer,
    RecordError, RecordingProxy, ReplayOptions, TlsMode, TlsTerminate, UpstreamTrust,
};
use etrn_harness::smarthost::LiveEvent;
use etrn_harness::smtp::Event;
use etrn_harness::wire::Verb;

use super::output::Output;
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
        ExitCode::FAILURE
    })
}

pub fn record(args: RecordArgs) -> ExitCode {
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
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
            format!(
                "recording {addr} -> {} into {}",
                args.upstream,
                args.cassette.display()
            )
        };
        run_until_stopped(started, banner, args.exit_after_sessions).await
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
    started: Result<ProxyServer, RecordError>,
    banner: impl FnOnce(std::net::SocketAddr) -> String,
    exit_after: Option<usize>,
) -> ExitCode {
    let server = match started {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut signals = match stop_signal() {
        Ok(s) => s,
        Err(code) => return code,
    };
    say!("{}", banner(server.addr()));
    let why = tokio::select! {
        why = signals.received() => why,
        _ = server.wait_for_closed_sessions(exit_after.unwrap_or(usize::MAX), FOREVER),
            if exit_after.is_some() => "session limit reached",
    };
    server.shutdown().await;
    say!("stopped ({why})");
    ExitCode::SUCCESS
}

/// Loads a cassette for replay: errors name the line; truncation is a warning.
pub fn load(path: &std::path::Path) -> Result<Cassette, ExitCode> {
    let cassette = etrn_harness::cassette::load_cassette(path).map_err(|e| {
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

pub fn replay(args: ReplayArgs) -> ExitCode {
    let cassette = match load(&args.cassette) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mismatch_reply = match etrn_harness::reply::Reply::parse(&args.mismatch_reply) {
        Ok(r) => r.to_wire().into_bytes(),
        Err(e) => {
            eprintln!("error: --mismatch-reply: {e} ({})", e.fix());
            return ExitCode::from(EXIT_INVALID);
        }
    };
    let mut options = ReplayOptions {
        mode: args.match_mode,
        mismatch_reply,
        ..ReplayOptions::default()
    };
    for verb in &args.ignore_args {
        options.ignore_args.insert(Verb::from(verb.as_str()));
    }
    for verb in &args.match_args {
        options.ignore_args.remove(&Verb::from(verb.as_str()));
    }
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    rt.block_on(async {
        if args.record_on_miss {
            let Some(upstream) = args.upstream else {
                eprintln!("error: --record-on-miss needs --upstream HOST:PORT");
                return ExitCode::from(EXIT_INVALID);
            };
            let writer = match CassetteWriter::open(&args.cassette) {
                Ok(w) => w,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
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
            let shown = args.cassette.display().to_string();
            let banner = |addr| format!("replaying {shown} on {addr}; misses are fetched from {upstream}");
            return run_until_stopped(started, banner, args.exit_after_sessions).await;
        }
        let host = match cassette::replay_server(
            cassette,
            options,
            args.listen,
            Duration::from_secs(300),
            etrn_harness::smarthost::Recorder::new(),
        )
        .await {
            Ok(h) => h,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut live = host.recorder().subscribe();
        let mut signals = match stop_signal() {
            Ok(s) => s,
            Err(code) => return code,
        };
        // Lines go through a writer of their own: a stdout nobody reads never holds the signals.
        let out = Output::start();
        let _ = out.line(format!(
            "replaying {} on {}",
            args.cassette.display(),
            host.addr()
        ));
        let why = loop {
            tokio::select! {
                biased;
                event = live.recv() => match event.as_deref() {
                    // The live lines are for people; the counts below come from the recording,
                    // which misses nothing even when this stream lags.
                    Ok(LiveEvent::Event { session, event: Event::ReplayMismatch { position, expected, actual }, .. }) => {
                        let _ = out.line(format!("session {session}: mismatch at exchange {position}: expected {expected}, got {actual}"));
                    }
                    Ok(LiveEvent::Event { session, event: Event::ReplayUnplayed { exchanges, first }, .. }) => {
                        let _ = out.line(format!("session {session}: ended with {exchanges} recorded exchange(s) unplayed, from exchange {first}"));
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break "server stopped",
                },
                _ = host.recorder().until_closed_sessions(args.exit_after_sessions.unwrap_or(usize::MAX), FOREVER),
                    if args.exit_after_sessions.is_some() => break "session limit reached",
                why = signals.received() => break why,
            }
        };
        let recording = host.shutdown().await;
        let mut mismatches = 0usize;
        let mut unplayed = 0usize;
        for session in &recording.sessions {
            for timed in &session.events {
                match &timed.event {
                    Event::ReplayMismatch { .. } => mismatches += 1,
                    Event::ReplayUnplayed { exchanges, .. } => unplayed += exchanges,
                    _ => {}
                }
            }
        }
        out.last(format!(
            "stopped ({why}): {} session(s), {mismatches} mismatch(es), {unplayed} unplayed exchange(s)",
            recording.sessions.len()
        ));
        out.finish().await;
        if mismatches > 0 || (args.fail_on_unplayed && unplayed > 0) {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        }
    })
}
