//! `etrn-harness serve`: the smart host as a process, with live ETRN lines and a recording.

use std::process::ExitCode;
use std::time::Duration;

use etrn_harness::smarthost::{LiveEvent, Recording, SmartHostConfig, SmartHostScript};
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
    let host = match etrn_harness::cassette::start_for_script(config).await {
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

/// Writes next to the target and renames, so a reader never sees half a recording.
fn write_recording(path: &std::path::Path, recording: &Recording) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(recording).map_err(std::io::Error::other)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = std::path::PathBuf::from(tmp);
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}
