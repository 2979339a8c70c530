//! `serve`'s live lines: what its stdout shows as sessions come and go, and the thread that
//! makes them.
//!
//! The recorder's live feed is read by a thread of its own ([`LivePrinting`]), never by a task
//! of the runtime that serves the sessions; its lines go through [`Output`], written by another
//! thread; a [`Printer`] counts what they showed, so that the stop line can say whether they show
//! everything.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use etrn_harness::proto::Event;
use etrn_harness::smarthost::{Lifetime, LiveEvent};

use super::output::Output;
use super::ready::{Count, Ready, Server, Stopped};
use super::serve::EventsFormat;

/// The live events, turned into lines by a thread of its own until [`LivePrinting::stop`].
///
/// Why a thread and not a task: under load events come far faster than people read them, and a
/// task woken for each costs a wake-up (often a system call to unpark a worker) per event, on
/// the runtime that serves the sessions. This thread takes what gathered, queues its lines for
/// [`Output`] and naps for [`LIVE_NAP`], so that at an ordinary pace it wakes a hundred times a
/// second at most, and while it naps the feed has no waiter to wake; a feed busy enough to fill
/// before the next nap ends is read again at once instead. Measured under `smtp-source -s 20`
/// (README, Benchmarks): a task woken per event cost the server a tenth more CPU than
/// `--quiet`; a task napping on the runtime's timer, or a thread napping 1 ms, left both cores
/// idle part of the time and was slower still; a 10 ms nap is level with `--quiet`.
///
/// The thread never waits on anything but the feed and the stop: its lines are queued for
/// [`Output`] (dropped and counted when the queue is full) and it logs nothing, so a stdout or a
/// stderr nobody reads cannot hold it, and the stop waits for it at most [`STOP_DEADLINE`].
pub(super) struct LivePrinting {
    stop: tokio::sync::oneshot::Sender<()>,
    printer: Handed,
    format: EventsFormat,
    shown: Arc<Shown>,
}

/// Where the printer is while the live lines are printed.
enum Handed {
    /// With the thread, which gives it back when stopped.
    ToThread(tokio::sync::oneshot::Receiver<Printer>),
    /// Here: the thread did not start (the process is out of threads); no live line is printed.
    Kept(Printer),
}

/// How long live events gather between two wake-ups of the thread that prints them. A line may
/// show this much later (and the writer's nap again): too little for anyone reading to see.
const LIVE_NAP: Duration = Duration::from_millis(10);

/// Events found at one wake-up past which the feed counts as busy and is read again without a
/// nap: at that pace it would fill (and lose events) within a few naps.
const BUSY_WAKE: usize = etrn_harness::smarthost::LIVE_CAPACITY / 4;

/// How long the stop waits for the thread to print what the feed holds.
const STOP_DEADLINE: Duration = Duration::from_secs(2);

impl LivePrinting {
    /// Prints `live` (nothing when `None`: `--quiet`) with `printer` from now on.
    pub(super) fn start(
        printer: Printer,
        live: Option<tokio::sync::broadcast::Receiver<Arc<LiveEvent>>>,
    ) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (give_back, printer_back) = tokio::sync::oneshot::channel::<Printer>();
        let runtime = tokio::runtime::Handle::current();
        let (format, shown) = (printer.format, Arc::clone(&printer.shown));
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
                let _ = hand_over.send((live, printer));
                Handed::ToThread(printer_back)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a thread for the live lines: none are printed");
                Handed::Kept(printer)
            }
        };
        LivePrinting {
            stop,
            printer,
            format,
            shown,
        }
    }

    /// Stops the thread once it has printed the events the feed holds, and gives the printer
    /// back; waits at most [`STOP_DEADLINE`].
    pub(super) async fn stop(self) -> Printer {
        let _ = self.stop.send(());
        let printer = match self.printer {
            Handed::Kept(printer) => printer,
            Handed::ToThread(back) => match tokio::time::timeout(STOP_DEADLINE, back).await {
                Ok(Ok(printer)) => printer,
                // The thread did not finish (or panicked): the stop line is still said, with
                // what the lines showed, counted as they were queued.
                _ => {
                    tracing::warn!("the live lines did not finish in time; the stop line follows");
                    Printer::showing(self.format, self.shown)
                }
            },
        };
        let missed = printer.shown.missed.load(Ordering::Relaxed);
        if missed > 0 {
            // Said once, here, not by the thread as it happened: a stderr nobody reads must
            // not hold it.
            tracing::warn!(missed, "live output fell behind; the recording is complete");
        }
        printer
    }
}

/// The thread's loop: waits for an event (or the stop), prints it and everything gathered behind
/// it, naps unless the feed is busy; once stopped, prints what the feed holds.
fn print_until(
    runtime: &tokio::runtime::Handle,
    live: &mut tokio::sync::broadcast::Receiver<Arc<LiveEvent>>,
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
            // The recorder is gone, or the stop: what the feed holds and no more.
            Some(Err(RecvError::Closed)) | None => break,
        }
        if drain(live, printer, usize::MAX) < BUSY_WAKE {
            std::thread::sleep(LIVE_NAP);
        }
    }
    // What the feed holds now, and no more: sessions still running after a second signal may
    // go on recording; what they add is counted as missed, not waited for.
    let held = live.len();
    drain(live, printer, held);
    printer.missed(live.len() as u64);
}

/// Prints at most `max` of the live events gathered so far; how many it took.
fn drain(
    live: &mut tokio::sync::broadcast::Receiver<Arc<LiveEvent>>,
    printer: &mut Printer,
    max: usize,
) -> usize {
    use tokio::sync::broadcast::error::TryRecvError;
    let mut taken = 0;
    while taken < max {
        match live.try_recv() {
            Ok(e) => printer.event(&e),
            Err(TryRecvError::Lagged(n)) => printer.missed(n),
            Err(TryRecvError::Empty | TryRecvError::Closed) => break,
        }
        taken += 1;
    }
    taken
}

/// What the live lines showed, counted as each line was queued: kept apart from the printer so
/// that the stop line can say it even when the thread that prints did not finish.
#[derive(Default)]
struct Shown {
    /// Sessions and ETRNs the lines showed.
    sessions: AtomicUsize,
    etrn: AtomicUsize,
    /// Live events the output fell behind on (the recording has them): lagged behind the
    /// server's feed, or dropped because stdout was not read fast enough.
    missed: AtomicU64,
}

/// stdout's lines, and what they showed, so the stop line can say whether they show everything.
/// Every line goes through [`Output`], written by a thread of its own: a reader that does not
/// read can hold neither the signals nor the shutdown.
pub(super) struct Printer {
    format: EventsFormat,
    out: Output,
    shown: Arc<Shown>,
}

impl Printer {
    pub(super) fn new(format: EventsFormat) -> Self {
        Self::showing(format, Arc::default())
    }

    /// A printer whose stop line says what `shown` counted.
    fn showing(format: EventsFormat, shown: Arc<Shown>) -> Self {
        Printer {
            format,
            out: Output::start(),
            shown,
        }
    }

    /// The first lines: the ready object for programs, or the addresses for people.
    pub(super) fn ready(&self, ready: &Ready) {
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
            self.shown.missed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match event {
            LiveEvent::Opened { .. } => {
                self.shown.sessions.fetch_add(1, Ordering::Relaxed);
            }
            LiveEvent::Event {
                event: Event::Etrn(_),
                ..
            } => {
                self.shown.etrn.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// `n` events the feed lost before this printer read them.
    fn missed(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        self.shown.missed.fetch_add(n, Ordering::Relaxed);
        if self.format == EventsFormat::Jsonl
            && !self
                .out
                .line(serde_json::json!({ "missed": n }).to_string())
        {
            self.shown.missed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `sessions`, `etrn` and `refused` count what the recording holds (since the last `POST
    /// /reset`); `lifetime` what the smart host saw since it started, which is what the lines
    /// above show. Refusals at the connection cap are said for people only when there were some
    /// (they have no line of their own above); programs always get the count.
    pub(super) fn stopped(
        &self,
        why: &'static str,
        sessions: usize,
        etrn: usize,
        refused: u64,
        lifetime: Lifetime,
    ) {
        // The stop line counts what the recorder saw; when the lines above show less (the output
        // fell behind, or printed nothing), it says so rather than disagree with them silently.
        let (shown_sessions, shown_etrn, missed) = (
            self.shown.sessions.load(Ordering::Relaxed),
            self.shown.etrn.load(Ordering::Relaxed),
            self.shown.missed.load(Ordering::Relaxed),
        );
        let shown = self.format == EventsFormat::None
            || (shown_sessions == lifetime.sessions && shown_etrn == lifetime.etrn);
        // After a reset the recording holds less than the lines above show: both are said.
        let since_reset = if lifetime.resets == 0 {
            String::new()
        } else {
            format!(
                " since the last reset ({} session(s), {} ETRN in all)",
                lifetime.sessions, lifetime.etrn
            )
        };
        let mut counts = vec![Count::new("etrn", "ETRN", etrn)];
        if refused > 0 || self.format == EventsFormat::Jsonl {
            counts.push(Count::new("refused", "refused", refused));
        }
        let stopped = Stopped {
            command: Server::Serve,
            why,
            sessions: sessions as u64,
            counts,
        };
        let line = match self.format {
            EventsFormat::Jsonl => {
                let mut line = stopped;
                line.counts.push(Count::new("missed", "missed", missed));
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
                shown_sessions,
                shown_etrn,
                lifetime.sessions,
                lifetime.etrn,
                missed
            ),
        };
        self.out.last(line);
    }

    /// FILE is whole, or misses `missed` lines the disk fell behind on (said when not 0).
    pub(super) fn recording_written(&self, path: &std::path::Path, missed: u64) {
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
    pub(super) async fn finish(self) {
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
