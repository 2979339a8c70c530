//! `etrn-harness serve`: the smart host as a process, with live ETRN lines and a recording.

use std::process::ExitCode;
use std::time::Duration;

use etrn_harness::smarthost::{LiveEvent, Recorder, SmartHostConfig, SmartHostScript};
use etrn_harness::smtp::{Event, SessionLimits};

use etrn_harness::scenario;

use super::signals::{FOREVER, StopSignal};
use super::{EXIT_INVALID, ServeArgs, report_errors};

pub fn run(args: ServeArgs) -> ExitCode {
    let script = match (&args.scenario, args.profile) {
        (Some(path), _) => match scenario::load_scenario(path) {
            Ok(s) => s.smarthost,
            Err(errors) => {
                report_errors(&errors, false);
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
        retention: args.retain,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(
        config,
        args.record,
        args.exit_after_sessions,
        args.quiet,
    ))
}

async fn serve(
    config: SmartHostConfig,
    record: Option<std::path::PathBuf>,
    exit_after: Option<usize>,
    quiet: bool,
) -> ExitCode {
    // The stream is set up before the first connection can arrive; a path that cannot be
    // written is said now, not after the sessions it was for.
    let recorder = Recorder::with_retention(config.retention);
    let mut partial = None;
    if let Some(path) = &record {
        let streamed = open_stream(path).and_then(|(file, beside)| {
            recorder.stream_to(Box::new(file))?;
            Ok(beside)
        });
        match streamed {
            Ok(beside) => {
                tracing::info!(partial = %beside.display(), "streaming the recording; renamed at exit");
                partial = Some(beside);
            }
            Err(e) => {
                eprintln!(
                    "error: cannot write the recording to {}: {e}",
                    path.display()
                );
                return ExitCode::from(EXIT_INVALID);
            }
        }
    }
    let host = match etrn_harness::cassette::start_for_script_recording(config, recorder).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Subscribe and install the signal handlers before announcing the address: a client that
    // connects at once, or a SIGTERM sent right after, is not missed.
    // Quiet: no subscriber at all, so the recorder does not queue live events nobody prints.
    let mut live = (!quiet).then(|| host.recorder().subscribe());
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
                    // Counted, not derived from the recording at every event: a soak stays linear.
                    let _ = host.recorder().wait_for_closed_sessions(n, FOREVER).await;
                    "session limit reached"
                }
                None => std::future::pending().await,
            }
        };
        tokio::pin!(stop);
        loop {
            tokio::select! {
                event = next_live(&mut live) => match event {
                Ok(e) => print_live(&e, quiet),
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
    while let Some(Ok(e)) = live.as_mut().map(|l| l.try_recv()) {
        print_live(&e, quiet);
    }
    tracing::info!(why, "stopping");
    // The shutdown is bounded (sessions close at once, stragglers after a grace period); a second
    // signal does not wait for it: what there is gets written at once.
    let recorder = host.shared_recorder();
    let recording = tokio::select! {
        recording = host.shutdown() => recording,
        again = stop_signal.received() => {
            eprintln!("{again} again: stopping at once");
            recorder.close_open(etrn_harness::smtp::CloseReason::Shutdown);
            recorder.recording()
        }
    };
    // Counted by the recorder, so forgotten sessions (--retain open) count too.
    println!(
        "stopped ({why}): {} session(s), {} ETRN",
        recording.sessions.len() + usize::try_from(recording.forgotten).unwrap_or(usize::MAX),
        recorder.etrn_count()
    );
    // The stream becomes the recording in one step: FILE is only ever a whole recording.
    if let (Some(path), Some(beside)) = (&record, &partial)
        && let Err(e) = std::fs::rename(beside, path)
    {
        eprintln!(
            "error: cannot rename {} to {}: {e}; the recording stays in the former",
            beside.display(),
            path.display()
        );
        return ExitCode::FAILURE;
    }
    match (record, recorder.stream_error()) {
        (Some(path), None) => {
            println!("recording written to {}", path.display());
            ExitCode::SUCCESS
        }
        (Some(path), Some(e)) => {
            eprintln!(
                "error: the recording stream to {} failed: {e}; it stops there",
                path.display()
            );
            ExitCode::FAILURE
        }
        (None, _) => ExitCode::SUCCESS,
    }
}

/// The next live event, or never when there is no subscriber.
async fn next_live(
    live: &mut Option<tokio::sync::broadcast::Receiver<LiveEvent>>,
) -> Result<LiveEvent, tokio::sync::broadcast::error::RecvError> {
    match live {
        Some(l) => l.recv().await,
        None => std::future::pending().await,
    }
}

fn print_live(event: &LiveEvent, quiet: bool) {
    if quiet {
        return;
    }
    if let LiveEvent::Event {
        session,
        event: Event::Etrn(e),
    } = event
    {
        let reply = e.reply.map_or("no reply".to_owned(), |c| c.to_string());
        println!("session {session}: ETRN {} -> {reply}", e.raw);
    }
}

/// Opens the JSON Lines stream: a new file beside `path` (created exclusively, with a random
/// name, so nothing planted there can redirect it), renamed onto `path` at exit (a rename
/// replaces a link without following it), so `path` only ever holds a whole recording. A killed
/// server leaves the `.partial` file with every line but the one being written. Refused: a
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
