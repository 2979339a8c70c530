//! `serve`'s stdout, written off the server's path by a thread of its own.
//!
//! stdout may be a terminal, a file, or a pipe nobody drains (`Popen(stdout=PIPE)` that reads one
//! line): a `write` to a full pipe blocks for as long as the reader waits. If whoever makes the
//! lines wrote them too, such a reader would freeze it, and `serve`, which waits for the last
//! live lines at its stop, would never write its recording. So lines go into a bounded queue; a
//! thread writes what gathered, a batch per `write` (64 KiB at most), and naps 10 ms unless the
//! batch was full; a line that finds the queue full is dropped and counted (the recording has every event). The last lines
//! (the stop line, where the recording went) wait for the queue to empty, and
//! [`Output::finish`] waits for them at most [`FINISH_DEADLINE`]: a reader that never reads
//! cannot hold the exit.

use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Lines that may wait for the writer before new ones are dropped.
pub const QUEUE_LINES: usize = 4096;
/// A batch is closed once it holds this many octets (a line is never split, so one can be
/// longer); it goes out in one `write_all`.
const BATCH_OCTETS: usize = 64 * 1024;
/// How long lines gather between two writes (see `serve_lines.rs`' `LIVE_NAP` for why not
/// less).
const WRITE_NAP: Duration = Duration::from_millis(10);
/// How long the exit waits for the last lines to be written.
pub const FINISH_DEADLINE: Duration = Duration::from_secs(2);

/// The writer thread's queue.
pub struct Output {
    lines: Option<SyncSender<String>>,
    /// Lines written after every queued one, once the queue is closed.
    last: Arc<Mutex<Vec<String>>>,
    /// Said when the writer thread is done (everything written, or stdout gone).
    done: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Output {
    /// Starts the writer thread. Should the thread not start, lines are written in place, on
    /// the caller's thread (there is nothing better to do with them; it never happens short of
    /// the process being out of threads).
    pub fn start() -> Self {
        let (lines, queue) = sync_channel::<String>(QUEUE_LINES);
        let last: Arc<Mutex<Vec<String>>> = Arc::default();
        let (said, done) = tokio::sync::oneshot::channel();
        let last_lines = Arc::clone(&last);
        let started = std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || {
                write_until_closed(&queue);
                let last =
                    std::mem::take(&mut *last_lines.lock().unwrap_or_else(PoisonError::into_inner));
                let _ = write_batch(&last.concat());
                let _ = said.send(());
            });
        Output {
            lines: Some(lines),
            last,
            done: started.ok().map(|_| done),
        }
    }

    /// Queues a line (its line end included); `false` when it was dropped because the writer is
    /// behind.
    pub fn line(&self, mut line: String) -> bool {
        line.push('\n');
        match &self.lines {
            Some(lines) if self.done.is_some() => match lines.try_send(line) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => false,
                // The writer ended (it never does before `finish`): nothing can be shown.
                Err(TrySendError::Disconnected(_)) => false,
            },
            _ => write_batch(&line),
        }
    }

    /// A line written after everything queued, however far behind the writer is.
    pub fn last(&self, mut line: String) {
        line.push('\n');
        if self.done.is_some() {
            self.last
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(line);
        } else {
            write_batch(&line);
        }
    }

    /// Closes the queue and waits, at most [`FINISH_DEADLINE`], for the writer to write what is
    /// left; `false` when it did not finish in time (stdout is not being read).
    pub async fn finish(mut self) -> bool {
        drop(self.lines.take());
        match self.done.take() {
            Some(done) => matches!(
                tokio::time::timeout(FINISH_DEADLINE, done).await,
                Ok(Ok(()))
            ),
            None => true,
        }
    }
}

/// Writes queued lines until the queue is closed, each batch in one `write`. Once stdout fails
/// (its reader went away) the rest is read and discarded, so the queue never blocks.
fn write_until_closed(queue: &Receiver<String>) {
    let mut writable = true;
    let mut batch = String::new();
    while let Ok(first) = queue.recv() {
        batch.clear();
        batch.push_str(&first);
        while batch.len() < BATCH_OCTETS {
            match queue.try_recv() {
                Ok(more) => batch.push_str(&more),
                Err(_) => break,
            }
        }
        if writable {
            writable = write_batch(&batch);
        }
        // Lines gather for a moment before the next batch: a writer that went straight back
        // to the queue would be woken (a system call for whoever queues) and would write
        // (another) for nearly every line under load. Not after a full batch: more is waiting,
        // and a nap would only let the queue fill.
        if batch.len() < BATCH_OCTETS {
            std::thread::sleep(WRITE_NAP);
        }
    }
}

/// One `write` of `text` to stdout (through its lock, so nothing else interleaves).
fn write_batch(text: &str) -> bool {
    if text.is_empty() {
        return true;
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_ok()
}
