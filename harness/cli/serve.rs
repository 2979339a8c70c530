//! `etrn-harness serve`: the smart host as a process, with live ETRN lines and a recording.

use std::process::ExitCode;
use std::time::Duration;

use etrn_harness::proto::SmartHostScript;
use etrn_harness::proto::{Event, SessionLimits};
use etrn_harness::smarthost::{Lifetime, LiveEvent, LiveFeed, Recorder, SmartHostConfig};

use etrn_harness::scenario;

use super::exit::{EXIT_SYSTEM, EXIT_UNAVAILABLE};
use super::output::Output;
use super::ready::{Count, Ready, Server, Stopped};
use super::signals::{FOREVER, StopSignal};
use super::{EXIT_INVALID, ServeArgs, report_errors};

pub fn run(args: ServeArgs) -> ExitCode {
    match prepare(args) {
        Ok((runtime, config, options)) => runtime.block_on(serve(config, options)),
        Err(code) => code,
    }
}

/// The runtime the sessions, the API and the signals run on: `threads` workers (`None`: one per
/// CPU, tokio's default). One is a single event loop on this thread, with no worker to hand
/// tasks to: on a small machine shared with a single-threaded client, more threads than the
/// cores left to the server only take turns on them (README, Benchmarks).
fn serve_runtime(threads: Option<u16>) -> std::io::Result<tokio::runtime::Runtime> {
    match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(n))
            .enable_all()
            .build(),
        None => tokio::runtime::Runtime::new(),
    }
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
    // synced) off the runtime: with `--threads 1` its thread is the one serving the sessions.
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
    // Counted by the recorder, so forgotten sessions (--retain open) count too.
    let sessions = recorder.session_count();
    // FILE first, so that the stop line is the last line, as for record and replay.
    let code = finish_recording(record, partial.as_deref(), &recorder, &printer);
    printer.stopped(why, sessions, recorder.etrn_count(), recorder.lifetime());
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

/// The live events, turned into lines by a thread of its own until [`LivePrinting::stop`].
///
/// Why a thread and not a task: under load events come far faster than people read them, and a
/// task woken for each costs a wake-up (often a system call to unpark a worker) per event, on
/// the runtime that serves the sessions. This thread takes what gathered, queues its lines for
/// [`Output`] and naps for [`LIVE_NAP`], so it wakes a hundred times a second at most, and while
/// it naps the feed has no waiter to wake. Measured under `smtp-source -s 20` (README,
/// Benchmarks): a task woken per event cost the server a tenth more CPU than `--quiet`; a task
/// napping on the runtime's timer, or a thread napping 1 ms, left both cores idle part of the
/// time and was slower still; a 10 ms nap is level with `--quiet`.
struct LivePrinting {
    stop: tokio::sync::oneshot::Sender<()>,
    printer: Handed,
}

/// Where the printer is while the live lines are printed.
enum Handed {
    /// With the thread, which gives it back when stopped.
    ToThread(tokio::sync::oneshot::Receiver<Printer>, EventsFormat),
    /// Here: the thread did not start (the process is out of threads); no live line is printed.
    Kept(Printer),
}

/// How long live events gather between two wake-ups of the thread that prints them. A line may
/// show this much later (and the writer's nap again): too little for anyone reading to see.
const LIVE_NAP: Duration = Duration::from_millis(10);

impl LivePrinting {
    /// Prints `live` (nothing when `None`: `--quiet`) with `printer` from now on.
    fn start(
        printer: Printer,
        live: Option<tokio::sync::broadcast::Receiver<std::sync::Arc<LiveEvent>>>,
    ) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (give_back, printer_back) = tokio::sync::oneshot::channel::<Printer>();
        let runtime = tokio::runtime::Handle::current();
        // Handed over once the thread runs, so that should it not start (the process is out of
        // threads) the printer is still here to say the stop line.
        let (hand_over, handed) = std::sync::mpsc::sync_channel::<(Option<_>, Printer)>(1);
        let started = std::thread::Builder::new()
            .name("live lines".into())
            .spawn(move || {
                let Ok((mut live, mut printer)) = handed.recv() else {
                    return;
                };
                if let Some(live) = live.as_mut() {
                    print_until(&runtime, live, &mut printer, &mut stopped);
                }
                let _ = give_back.send(printer);
            });
        let printer = match started {
            Ok(_) => {
                let format = printer.format;
                let _ = hand_over.send((live, printer));
                Handed::ToThread(printer_back, format)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a thread for the live lines: none are printed");
                Handed::Kept(printer)
            }
        };
        LivePrinting { stop, printer }
    }

    /// Stops the thread once it has printed every event already in the feed, and gives the
    /// printer back. Bounded: the thread never waits on stdout (its lines are queued for
    /// [`Output`], dropped when the queue is full).
    async fn stop(self) -> Printer {
        let _ = self.stop.send(());
        match self.printer {
            Handed::Kept(printer) => printer,
            Handed::ToThread(back, format) => match back.await {
                Ok(printer) => printer,
                // The thread panicked and its printer with it: the stop line is still said.
                Err(_) => Printer::new(format),
            },
        }
    }
}

/// The thread's loop: waits for an event (or the stop), prints it and everything gathered behind
/// it, naps; once stopped, prints what is left in the feed.
fn print_until(
    runtime: &tokio::runtime::Handle,
    live: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<LiveEvent>>,
    printer: &mut Printer,
    stopped: &mut tokio::sync::oneshot::Receiver<()>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        // Blocks this thread (never a worker) until the next event or the stop.
        let next = runtime.block_on(async {
            tokio::select! {
                biased;
                _ = &mut *stopped => None,
                event = live.recv() => Some(event),
            }
        });
        match next {
            Some(Ok(e)) => printer.event(&e),
            Some(Err(RecvError::Lagged(n))) => printer.missed(n),
            // The recorder is gone, or the stop: the rest of the feed and no more.
            Some(Err(RecvError::Closed)) | None => break,
        }
        drain(live, printer);
        std::thread::sleep(LIVE_NAP);
    }
    drain(live, printer);
}

/// Prints the live events gathered so far.
fn drain(
    live: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<LiveEvent>>,
    printer: &mut Printer,
) {
    use tokio::sync::broadcast::error::TryRecvError;
    loop {
        match live.try_recv() {
            Ok(e) => printer.event(&e),
            Err(TryRecvError::Lagged(n)) => printer.missed(n),
            Err(TryRecvError::Empty | TryRecvError::Closed) => return,
        }
    }
}

/// The exit status for a smart host that did not start (`serve`, `replay`): an address that
/// cannot be listened on is [`EXIT_UNAVAILABLE`], like `--api`'s; a script, profile or cassette
/// it cannot use is bad input.
pub fn host_failure(e: &etrn_harness::smarthost::StartError) -> u8 {
    use etrn_harness::smarthost::StartError;
    match e {
        StartError::Bind { .. } => EXIT_UNAVAILABLE,
        StartError::Tls(_) | StartError::Blocking(_) => EXIT_SYSTEM,
        StartError::Conversations(_) => EXIT_INVALID,
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

/// stdout's lines, and what they showed, so the stop line can say whether they show everything.
/// Every line goes through [`Output`], written off this task: a reader that does not read can
/// hold neither the signals nor the shutdown.
struct Printer {
    format: EventsFormat,
    out: Output,
    /// Sessions and ETRNs the lines showed.
    sessions: usize,
    etrn: usize,
    /// Live events the output fell behind on (the recording has them): lagged behind the
    /// server's feed, or dropped because stdout was not read fast enough.
    missed: u64,
}

impl Printer {
    fn new(format: EventsFormat) -> Self {
        Printer {
            format,
            out: Output::start(),
            sessions: 0,
            etrn: 0,
            missed: 0,
        }
    }

    /// The first lines: the ready object for programs, or the addresses for people.
    fn ready(&self, ready: &Ready) {
        // At start the queue is empty: no line is dropped.
        if self.format == EventsFormat::Jsonl {
            let _ = self.out.line(ready.json());
            return;
        }
        let _ = self.out.line(format!("listening on {}", ready.smtp));
        if let Some(url) = &ready.api_url {
            let _ = self.out.line(format!("api on {url}"));
        }
    }

    fn event(&mut self, event: &LiveEvent) {
        let line = match self.format {
            EventsFormat::None => None,
            EventsFormat::Jsonl => Some(event.json_text().to_string()),
            EventsFormat::Human => human_line(event),
        };
        let shown = match line {
            Some(line) => self.out.line(line),
            None => true,
        };
        if !shown {
            self.missed += 1;
            return;
        }
        match event {
            LiveEvent::Opened { .. } => self.sessions += 1,
            LiveEvent::Event {
                event: Event::Etrn(_),
                ..
            } => self.etrn += 1,
            _ => {}
        }
    }

    fn missed(&mut self, n: u64) {
        self.missed += n;
        tracing::warn!(
            missed = n,
            "live output fell behind; the recording is complete"
        );
        if self.format == EventsFormat::Jsonl
            && !self
                .out
                .line(serde_json::json!({ "missed": n }).to_string())
        {
            self.missed += 1;
        }
    }

    /// `sessions` and `etrn` count what the recording holds (since the last `POST /reset`);
    /// `lifetime` what the smart host saw since it started, which is what the lines above show.
    fn stopped(&self, why: &'static str, sessions: usize, etrn: usize, lifetime: Lifetime) {
        // The stop line counts what the recorder saw; when the lines above show less (the output
        // fell behind, or printed nothing), it says so rather than disagree with them silently.
        let shown = self.format == EventsFormat::None
            || (self.sessions == lifetime.sessions && self.etrn == lifetime.etrn);
        // After a reset the recording holds less than the lines above show: both are said.
        let since_reset = if lifetime.resets == 0 {
            String::new()
        } else {
            format!(
                " since the last reset ({} session(s), {} ETRN in all)",
                lifetime.sessions, lifetime.etrn
            )
        };
        let stopped = Stopped {
            command: Server::Serve,
            why,
            sessions: sessions as u64,
            counts: vec![Count::new("etrn", "ETRN", etrn)],
        };
        let line = match self.format {
            EventsFormat::Jsonl => {
                let mut line = stopped;
                line.counts
                    .push(Count::new("missed", "missed", self.missed));
                if lifetime.resets > 0 {
                    line.counts.extend([
                        Count::new("resets", "reset(s)", lifetime.resets),
                        Count::new("sessions_in_all", "session(s) in all", lifetime.sessions),
                        Count::new("etrn_in_all", "ETRN in all", lifetime.etrn),
                    ]);
                }
                line.json()
            }
            _ if shown => format!("{}{since_reset}", stopped.human()),
            _ => format!(
                "{}{since_reset}; the lines above show {} and {} of {} and {} (output fell behind by {} event(s); the recording has them all)",
                stopped.human(),
                self.sessions,
                self.etrn,
                lifetime.sessions,
                lifetime.etrn,
                self.missed
            ),
        };
        self.out.last(line);
    }

    /// FILE is whole, or misses `missed` lines the disk fell behind on (said when not 0).
    fn recording_written(&self, path: &std::path::Path, missed: u64) {
        let line = match self.format {
            EventsFormat::Jsonl => {
                let mut line = serde_json::json!({ "event": "recording_written", "path": path.display().to_string() });
                if missed > 0 {
                    line["missed"] = missed.into();
                }
                line.to_string()
            }
            _ if missed > 0 => format!(
                "recording written to {}, missing {missed} line(s) the disk fell behind on",
                path.display()
            ),
            _ => format!("recording written to {}", path.display()),
        };
        self.out.last(line);
    }

    /// Writes what is left, waiting at most [`super::output::FINISH_DEADLINE`].
    async fn finish(self) {
        if !self.out.finish().await {
            tracing::warn!("stdout is not being read; its last lines are left unwritten");
        }
    }
}

/// The human line of a live event: sessions opened and closed, and each ETRN with its flags.
/// Written straight into one string, with room for the line end [`Output::line`] adds: one
/// allocation per line, for every session of a busy server.
fn human_line(event: &LiveEvent) -> Option<String> {
    use std::fmt::Write as _;
    let mut line = String::with_capacity(80);
    match event {
        LiveEvent::Opened { session, peer, .. } => {
            let _ = write!(line, "session {session}: opened from {peer}");
        }
        LiveEvent::Closed {
            session, reason, ..
        } => {
            let _ = write!(line, "session {session}: closed ({}", reason.name());
            if let Some(detail) = reason.detail() {
                let _ = write!(line, ": {detail}");
            }
            line.push(')');
        }
        LiveEvent::Event {
            session,
            event: Event::Etrn(e),
            ..
        } => {
            let argument = if e.raw().is_empty() {
                "(no argument)"
            } else {
                e.raw()
            };
            let _ = write!(line, "session {session}: ETRN {argument} -> ");
            match e.reply {
                Some(code) => {
                    let _ = write!(line, "{code}");
                }
                None => line.push_str("no reply"),
            }
            for (i, flag) in e.flags.iter().enumerate() {
                line.push_str(if i == 0 { " [" } else { ", " });
                line.push_str(flag.name());
            }
            if !e.flags.is_empty() {
                line.push(']');
            }
        }
        LiveEvent::Event { .. } => return None,
    }
    Some(line)
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
