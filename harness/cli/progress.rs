//! A progress line on stderr, for a person at a terminal: what is running, how far along, and
//! for how long. Off a terminal (a CI log, a test, a pipe) there is none, so logs stay clean.
//!
//! The work never writes it: [`Progress::set`] only replaces the status under a lock, and a
//! thread of its own redraws the line every [`REDRAW`], so a slow terminal holds nothing up and
//! the elapsed time moves on even while one long case runs. Lines printed for good go through
//! [`Progress::above`], which clears the progress line first so the two never mix.

use std::io::{IsTerminal, Write};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the line is redrawn.
pub const REDRAW: Duration = Duration::from_millis(200);
/// The line's width when the terminal's is not known (`COLUMNS` unset).
const DEFAULT_WIDTH: usize = 80;
/// Erases the terminal's current line and returns to its start.
const CLEAR: &str = "\r\x1b[2K";

/// What the line shows, and whether it is on the screen now.
struct Status {
    text: String,
    shown: bool,
}

/// The progress line, while it is drawn. Dropping it erases the line.
pub struct Progress {
    status: Arc<Mutex<Status>>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts drawing `text` when stderr is a terminal; `None` otherwise (and should the thread
    /// not start: progress is a courtesy, never a reason to fail).
    pub fn on_terminal(text: impl Into<String>) -> Option<Progress> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let status = Arc::new(Mutex::new(Status {
            text: text.into(),
            shown: false,
        }));
        let (stop, stopped) = channel::<()>();
        let drawn = Arc::clone(&status);
        let started = Instant::now();
        let width = terminal_width();
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                loop {
                    {
                        let mut status = drawn.lock().unwrap_or_else(PoisonError::into_inner);
                        let line = render(started.elapsed(), &status.text, width);
                        let mut err = std::io::stderr().lock();
                        let _ = write!(err, "{CLEAR}{line}");
                        let _ = err.flush();
                        status.shown = true;
                    }
                    // Woken early only to stop (the sender dropped).
                    match stopped.recv_timeout(REDRAW) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                }
            })
            .ok()?;
        Some(Progress {
            status,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// What the line shows from its next redraw on.
    pub fn set(&self, text: impl Into<String>) {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .text = text.into();
    }

    /// Runs `print` (which writes a line for good, to stdout or stderr) with the progress line
    /// erased; it comes back at the next redraw.
    pub fn above(&self, print: impl FnOnce()) {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        erase(&mut status);
        print();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        erase(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

fn erase(status: &mut Status) {
    if status.shown {
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "{CLEAR}");
        let _ = err.flush();
        status.shown = false;
    }
}

/// The terminal's width as the shell says (`COLUMNS`), else [`DEFAULT_WIDTH`].
fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .filter(|&c| c >= 20)
        .unwrap_or(DEFAULT_WIDTH)
}

/// The line: elapsed time as minutes and seconds, then `text`, cut to fit in `width` columns
/// minus one (a line that filled the terminal would wrap, and `\r` would no longer erase it).
pub fn render(elapsed: Duration, text: &str, width: usize) -> String {
    let secs = elapsed.as_secs();
    let line = format!("{:02}:{:02} {text}", secs / 60, secs % 60);
    let fit = width.saturating_sub(1);
    if line.chars().count() <= fit {
        return line;
    }
    let mut cut: String = line.chars().take(fit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `run`'s status: cases done of all, and the first case still running (cases are reported in
/// order, so it is the one the count waits for).
pub fn run_status(done: usize, total: usize, current: Option<&str>) -> String {
    match current {
        Some(id) => format!("[{done}/{total}] running {id}"),
        None => format!("[{done}/{total}] done"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_elapsed_time_and_fits_the_terminal() {
        let line = render(Duration::from_secs(125), "[3/82] running e26-500", 80);
        assert_eq!(line, "02:05 [3/82] running e26-500");
        let long = "x".repeat(200);
        let cut = render(Duration::ZERO, &long, 40);
        assert_eq!(cut.chars().count(), 39);
        assert!(cut.starts_with("00:00 xxx") && cut.ends_with('…'), "{cut}");
    }

    #[test]
    fn run_status_names_the_case_the_count_waits_for() {
        assert_eq!(run_status(0, 2, Some("a")), "[0/2] running a");
        assert_eq!(run_status(2, 2, None), "[2/2] done");
    }
}
