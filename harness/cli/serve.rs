//! `etrn-harness serve`: the smart host as a process, with live ETRN lines and a recording.

use std::process::ExitCode;
use std::time::Duration;

use etrn_harness::proto::SessionLimits;
use etrn_harness::proto::SmartHostScript;
use etrn_harness::smarthost::{LiveFeed, Recorder, SmartHostConfig};

use etrn_harness::scenario;

use super::exit::{EXIT_SYSTEM, EXIT_UNAVAILABLE};
use super::ready::{Ready, Server};
use super::serve_lines::{LivePrinting, Printer};
use super::signals::{FOREVER, StopSignal};
use super::{EXIT_INVALID, ServeArgs, report_errors};

pub fn run(args: ServeArgs) -> ExitCode {
    match prepare(args) {
        Ok((runtime, config, options)) => runtime.block_on(serve(config, options)),
        Err(code) => code,
    }
}

/// The runtime the sessions, the API and the signals run on: `threads` workers, or by default
/// [`default_workers`]. One is a single event loop on this thread, as smtp-sink's, with no
/// worker to hand tasks to or wake.
fn serve_runtime(threads: Option<u16>) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = threads.map_or_else(
        || {
            default_workers(
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            )
        },
        usize::from,
    );
    match workers {
        // `--threads` is at least 1, as is the default.
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
}

/// The workers `serve` runs on a machine of `cpus` CPUs unless told: all CPUs but one, and at
/// least one (`TOKIO_WORKER_THREADS`, which tokio's own default reads, is not read: `--threads`
/// says it). A load test on loopback runs its client on the same machine: a worker per CPU
/// takes turns with the client for the same cores, and tokio wakes idle workers to look for
/// work whenever a task becomes ready. On two cores under Postfix's one-threaded `smtp-source`
/// that made five times smtp-sink's context switches and a tenth fewer messages a second, where
/// one event loop served as many as smtp-sink (README, Benchmarks, `--threads`).
fn default_workers(cpus: usize) -> usize {
    cpus.saturating_sub(1).max(1)
}

/// Everything `serve` needs, read from the command line in the order its errors are said.
fn prepare(
    args: ServeArgs,
) -> Result<(tokio::runtime::Runtime, SmartHostConfig, ServeOptions), ExitCode> {
    super::ready::remove_stale(args.ready.ready_file.as_deref())?;
    let script = script_of(&args)?;
    let profile = profile_file(args.profile_file.as_deref())?;
    let config = SmartHostConfig {
        listen: args.listen,
        script,
        limits: SessionLimits {
            max_line_octets: args.max_line_length.map(|n| n as usize),
            max_message_octets: args.max_message_size,
            starttls: args.starttls,
            idle_timeout: Duration::from_secs(args.idle_timeout),
        },
        max_connections: args.max_connections,
        when_full: args.when_full.into(),
        retention: args.retain.into(),
        profile,
    };
    let runtime = serve_runtime(args.threads).map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        ExitCode::from(EXIT_SYSTEM)
    })?;
    let format = if args.quiet {
        EventsFormat::None
    } else {
        args.events
    };
    let cassette_dir = cassette_folder(args.cassette_dir.as_deref())?;
    let options = ServeOptions {
        record: args.record,
        // At most 1 GiB by the argument's range: it fits a usize.
        record_buffer: usize::try_from(args.record_buffer).unwrap_or(usize::MAX),
        exit_after: args.exit_after_sessions,
        format,
        api: args.api,
        ready_file: args.ready.ready_file,
        api_options: etrn_harness::api::ApiOptions {
            cassette_dir,
            write_timeout: Duration::from_secs(args.api_write_timeout),
        },
    };
    Ok((runtime, config, options))
}

/// The script to serve: a scenario's smart host, or a profile's, with `--served` and
/// `--hostname` on top.
fn script_of(args: &ServeArgs) -> Result<SmartHostScript, ExitCode> {
    let mut script = match (&args.scenario, args.profile) {
        (Some(arg), _) => match scenario::resolve_one(arg).map(|one| one.load()) {
            Ok(Ok(s)) => s.smarthost,
            Ok(Err(errors)) => {
                report_errors(&errors, false);
                return Err(ExitCode::from(EXIT_INVALID));
            }
            Err(e) => return Err(super::selection_error(&e)),
        },
        (None, Some(profile)) => SmartHostScript {
            profile,
            ..SmartHostScript::default()
        },
        (None, None) => SmartHostScript::default(),
    };
    for domain in &args.served {
        match etrn_harness::domain::EtrnArg::parse(domain) {
            Ok(arg) => script.served.push(arg),
            Err(e) => {
                eprintln!("error: --served {domain:?}: {e}; {}", e.fix());
                return Err(ExitCode::from(EXIT_INVALID));
            }
        }
    }
    if let Some(name) = &args.hostname {
        if etrn_harness::domain::Domain::parse(name).is_err() {
            eprintln!(
                "error: --hostname {name:?} is not a host name; write one such as mx.example"
            );
            return Err(ExitCode::from(EXIT_INVALID));
        }
        script.hostname = Some(name.clone());
    }
    Ok(script)
}

/// The profile of `--profile-file`, if given.
fn profile_file(
    path: Option<&std::path::Path>,
) -> Result<Option<etrn_harness::proto::Profile>, ExitCode> {
    path.map(|path| {
        etrn_harness::proto::Profile::read(path).map_err(|e| {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID)
        })
    })
    .transpose()
}

/// The `--cassette-dir` folder, opened once, here: the API opens every cassette relative to it.
fn cassette_folder(
    dir: Option<&std::path::Path>,
) -> Result<Option<std::sync::Arc<etrn_harness::files::Folder>>, ExitCode> {
    dir.map(|dir| {
        etrn_harness::files::Folder::open(dir)
            .map(std::sync::Arc::new)
            .map_err(|e| {
                eprintln!("error: --cassette-dir: {e}");
                ExitCode::from(EXIT_INVALID)
            })
    })
    .transpose()
}

/// What `serve` does besides serving SMTP.
struct ServeOptions {
    record: Option<std::path::PathBuf>,
    /// Octets of stream lines that may wait for the disk.
    record_buffer: usize,
    exit_after: Option<usize>,
    format: EventsFormat,
    api: Option<std::net::SocketAddr>,
    ready_file: Option<std::path::PathBuf>,
    /// The cassette folder and the write timeout of the API.
    api_options: etrn_harness::api::ApiOptions,
}

/// Serves until a stop: starts the recording, the host, the API; announces them; prints the live
/// events; stops everything and finishes the recording.
async fn serve(config: SmartHostConfig, options: ServeOptions) -> ExitCode {
    let ServeOptions {
        record,
        record_buffer,
        exit_after,
        format,
        api: api_listen,
        ready_file,
        api_options,
    } = options;
    // As the runtime counts its own: what `--threads` and the CPUs made of it.
    let runtime = tokio::runtime::Handle::current();
    let shape = match runtime.runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => "one event loop",
        _ => "worker threads",
    };
    tracing::info!(
        workers = runtime.metrics().num_workers(),
        shape,
        "the sessions' runtime"
    );
    let limits = config.limits.clone();
    let script = config.script.clone();
    let quiet = format == EventsFormat::None;
    let printer = Printer::new(format);
    let (recorder, partial) = match start_stream(config.retention, record.as_deref(), record_buffer)
    {
        Ok(started) => started,
        Err(code) => return code,
    };
    let host = match etrn_harness::smarthost::SmartHost::start_recording(config, recorder).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(host_failure(&e));
        }
    };
    // Subscribe and install the signal handlers before announcing the address: a client that
    // connects at once, or a SIGTERM sent right after, is not missed.
    // Quiet: no subscriber at all, so the recorder does not queue live events nobody prints.
    // Lines for people show sessions and ETRNs only: their feed carries nothing else.
    let feed = match format {
        EventsFormat::Human => LiveFeed::SessionsAndEtrn,
        _ => LiveFeed::Everything,
    };
    let live = (!quiet).then(|| host.recorder().subscribe_to(feed));
    let mut stop_signal = match StopSignal::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return ExitCode::from(EXIT_SYSTEM);
        }
    };
    let api = match start_api(api_listen, &host, limits, script, api_options).await {
        Ok(api) => api,
        Err(()) => {
            // In use or not this machine's, as for --listen: the same status.
            host.shutdown().await;
            printer.finish().await;
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    // Announced once everything listens, all addresses at once.
    let mut ready = Ready::new(Server::Serve, host.addr()).with_api(api.as_ref().map(|a| a.addr()));
    ready.record = record.clone();
    // The file first: a program that reads the line and then the file finds it. Written (and
    // synced) off the runtime: with one event loop (`--threads 1`, and the default on two CPUs)
    // its thread is the one serving the sessions.
    if let Some(path) = &ready_file
        && let Err(e) = write_ready_file(&ready, path).await
    {
        eprintln!("error: cannot write the ready file {}: {e}", path.display());
        if let Some(api) = api {
            api.shutdown().await;
        }
        host.shutdown().await;
        printer.finish().await;
        return ExitCode::from(EXIT_SYSTEM);
    }
    printer.ready(&ready);
    let printing = LivePrinting::start(printer, live);
    let why = until_stop(&host, exit_after, &mut stop_signal).await;
    tracing::info!(why, "stopping");
    // The API first: its live feeds end, its waits are answered, nothing new comes in through it.
    if let Some(api) = api {
        api.shutdown().await;
    }
    let recorder = stop_host(host, &mut stop_signal).await;
    // The closes the shutdown recorded are printed too, before the stop line that counts them.
    let printer = printing.stop().await;
    // Counted by the recorder, so forgotten sessions (--retain N or open) count too.
    let sessions = recorder.session_count();
    // FILE first, so that the stop line is the last line, as for record and replay.
    let code = finish_recording(record, partial.as_deref(), &recorder, &printer);
    printer.stopped(
        why,
        sessions,
        recorder.etrn_count(),
        recorder.refused_count(),
        recorder.lifetime(),
    );
    printer.finish().await;
    code
}

/// [`Ready::write_file`] on a thread for blocking work.
async fn write_ready_file(ready: &Ready, path: &std::path::Path) -> std::io::Result<()> {
    let (ready, path) = (ready.clone(), path.to_owned());
    tokio::task::spawn_blocking(move || ready.write_file(&path))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// The recorder, streaming to `--record`'s file (under a name beside it, returned) if given.
/// The stream is set up before the first connection can arrive; a path that cannot be written is
/// said now, not after the sessions it was for.
fn start_stream(
    retention: etrn_harness::smarthost::Retention,
    record: Option<&std::path::Path>,
    buffer_octets: usize,
) -> Result<(Recorder, Option<std::path::PathBuf>), ExitCode> {
    let recorder = Recorder::with_retention(retention);
    let Some(path) = record else {
        return Ok((recorder, None));
    };
    let streamed = open_stream(path).and_then(|(file, beside)| {
        recorder.stream_to_with_buffer(Box::new(file), buffer_octets)?;
        Ok(beside)
    });
    match streamed {
        Ok(beside) => {
            tracing::info!(partial = %beside.display(), "streaming the recording; renamed at exit");
            Ok((recorder, Some(beside)))
        }
        Err(e) => {
            eprintln!(
                "error: cannot write the recording to {}: {e}",
                path.display()
            );
            Err(ExitCode::from(EXIT_INVALID))
        }
    }
}

/// The API on `listen`, if given, warning when it is reachable from beyond this machine; `Err`
/// once the failure is said.
async fn start_api(
    listen: Option<std::net::SocketAddr>,
    host: &etrn_harness::smarthost::SmartHost,
    limits: SessionLimits,
    script: SmartHostScript,
    options: etrn_harness::api::ApiOptions,
) -> Result<Option<etrn_harness::api::Api>, ()> {
    let Some(listen) = listen else {
        return Ok(None);
    };
    let started = etrn_harness::api::Api::start(
        listen,
        host.addr(),
        host.shared_recorder(),
        host.switch(),
        limits,
        script,
        options,
    )
    .await;
    match started {
        Ok(api) => {
            if !api.addr().ip().is_loopback() {
                eprintln!(
                    "warning: the API on {} is reachable from beyond this machine and has no \
                     authentication: whoever reaches it can read the recording and change \
                     the script; use --api 127.0.0.1:PORT unless that is what you want",
                    api.addr()
                );
            }
            Ok(Some(api))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(())
        }
    }
}

/// Waits for the session limit or a stop signal; says which.
async fn until_stop(
    host: &etrn_harness::smarthost::SmartHost,
    exit_after: Option<usize>,
    stop_signal: &mut StopSignal,
) -> &'static str {
    let limit = async {
        match exit_after {
            Some(n) => {
                // Counted, never derived from the recording (not even once at the end: only
                // the count matters here), so a soak stays linear.
                let _ = host.recorder().until_closed_sessions(n, FOREVER).await;
                "session limit reached"
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        why = limit => why,
        why = stop_signal.received() => why,
    }
}

/// Stops the host and returns its recorder. The shutdown is bounded (sessions close at once,
/// stragglers after a grace period); a second signal does not wait for it: what there is gets
/// written at once.
async fn stop_host(
    host: etrn_harness::smarthost::SmartHost,
    stop_signal: &mut StopSignal,
) -> std::sync::Arc<Recorder> {
    let recorder = host.shared_recorder();
    // Stopped without building the recording: the stop line only counts, and a long recording
    // built at once would multiply serve's memory at the very end.
    tokio::select! {
        () = host.stop() => {}
        again = stop_signal.received() => {
            eprintln!("{again} again: stopping at once");
            recorder.close_open(etrn_harness::proto::CloseReason::Shutdown);
        }
    };
    recorder
}

/// The stream becomes the recording in one step: FILE is only ever a whole recording. The
/// stream's writer writes what it holds first, waited for at most
/// [`etrn_harness::smarthost::STREAM_FINISH_DEADLINE`].
fn finish_recording(
    record: Option<std::path::PathBuf>,
    partial: Option<&std::path::Path>,
    recorder: &Recorder,
    printer: &Printer,
) -> ExitCode {
    let end = recorder.finish_stream();
    let (Some(path), Some(beside)) = (record, partial) else {
        return ExitCode::SUCCESS;
    };
    if let Some(e) = end.error {
        // A stream that stopped short has no marker where it stops: renamed onto FILE it would
        // pass for a whole recording. It stays the `.partial` file, as a killed server's does.
        eprintln!(
            "error: the recording stream failed: {e}; {} is not written, the lines written so \
             far stay in {} (`etrn-harness recording` reads them)",
            path.display(),
            beside.display()
        );
        return ExitCode::from(EXIT_SYSTEM);
    }
    if let Err(e) = std::fs::rename(beside, &path) {
        eprintln!(
            "error: cannot rename {} to {}: {e}; the recording stays in the former",
            beside.display(),
            path.display()
        );
        return ExitCode::from(EXIT_SYSTEM);
    }
    printer.recording_written(&path, end.missed);
    if end.missed > 0 {
        // The file says so at the gap too, and `recording` refuses it: it can never pass as
        // whole, and neither may this run.
        eprintln!(
            "error: the recording in {} misses {} line(s): the disk fell behind the sessions \
             (each gap is marked in the file); give --record-buffer more room or record onto a \
             faster disk",
            path.display(),
            end.missed
        );
        return ExitCode::from(EXIT_SYSTEM);
    }
    ExitCode::SUCCESS
}

/// The exit status for a smart host that did not start (`serve`, `replay`): an address that
/// cannot be listened on is [`EXIT_UNAVAILABLE`], like `--api`'s; a script, profile or cassette
/// it cannot use is bad input.
pub fn host_failure(e: &etrn_harness::smarthost::StartError) -> u8 {
    use etrn_harness::smarthost::StartError;
    match e {
        StartError::Bind { .. } => EXIT_UNAVAILABLE,
        StartError::Tls(_) | StartError::Blocking(_) => EXIT_SYSTEM,
        StartError::Conversations(_) | StartError::NoConnections => EXIT_INVALID,
    }
}

/// How `serve`, `record` and `replay` report on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EventsFormat {
    /// A line per session opened or closed and per ETRN (its flags included), for people.
    #[default]
    Human,
    /// One JSON object per line: the ready object (`"event":"ready"`, every address), every
    /// event (the `--record` stream's shape), the stop line (`"event":"stopped"`).
    Jsonl,
    /// Only the addresses and the stop line.
    None,
}

/// Opens the JSON Lines stream: a new file beside `path` (created exclusively, with a random
/// name, so nothing planted there can redirect it), renamed onto `path` at exit (a rename
/// replaces a link without following it), so `path` only ever holds a whole recording. A killed
/// server leaves the `.partial` file with every line but those being written. Refused: a
/// folder, a link or anything but a regular file already at `path` (said at start, not at exit).
fn open_stream(path: &std::path::Path) -> std::io::Result<(std::fs::File, std::path::PathBuf)> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(std::io::Error::other("it is a link"));
        }
        Ok(m) if m.is_dir() => return Err(std::io::Error::other("it is a folder")),
        Ok(m) if !m.is_file() => {
            return Err(std::io::Error::other(
                "it is not a regular file (a FIFO or a device)",
            ));
        }
        _ => {}
    }
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("it names no file"))?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let beside = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".partial")
        .tempfile_in(folder)?;
    let (file, temp_path) = beside.into_parts();
    // Kept even if serve dies: the lines streamed so far are the recording.
    let beside = temp_path.keep().map_err(|e| e.error)?;
    Ok((file, beside))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_takes_all_cpus_but_one_and_at_least_one() {
        assert_eq!(default_workers(1), 1);
        assert_eq!(default_workers(2), 1);
        assert_eq!(default_workers(3), 2);
        assert_eq!(default_workers(64), 63);
    }
}
