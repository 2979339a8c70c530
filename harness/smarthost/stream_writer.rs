//! The `--record` stream's writer: a thread of its own, so the disk is never on a session's path.
//!
//! A session's lines are appended to a bounded buffer in memory, under the recorder's lock (so
//! lines keep their order) and this buffer's own short one: no syscall per line or per batch.
//! The writer thread, woken only when the buffer goes from empty to non-empty while it sleeps,
//! swaps the buffer out and writes it whole with one `write_all`, however many batches it holds;
//! under load it writes once a millisecond at most, unwoken.
//!
//! A disk slower than the sessions fills the buffer: the lines that find it full are dropped
//! whole, never waited for, and counted. When there is room again a marker line
//! `{"at_us":N,"missed":K}` goes in at the gap (`N` is when the first of the `K` lines dropped
//! was recorded), or at the end of the stream if nothing came after it; so a stream with a gap
//! never passes as whole (`etrn-harness recording` refuses it, naming the line).

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Octets of lines that may wait for the disk before new ones are dropped (`serve
/// --record-buffer`). A session of greeting, EHLO, ETRN and QUIT streams about 1.5 KiB, so this
/// holds some ten thousand sessions: seconds of a stalled disk at the rates `bench` drives, yet a
/// bound a busy server's memory can carry. The memory it takes is a small multiple of it at
/// most: the buffer being written was as large, and a buffer grows by doubling (a batch is
/// appended before it is found not to fit).
pub const STREAM_BUFFER_OCTETS: usize = 16 * 1024 * 1024;

/// How long [`Recorder::finish_stream`](super::Recorder::finish_stream) waits for the writer
/// to write what it holds: a disk that does not take it by then does not hold the exit.
pub const STREAM_FINISH_DEADLINE: Duration = Duration::from_secs(5);

/// How long the writer waits after a write before the next: under load the lines of this long
/// go out in one write, and no session wakes the writer (a write and a wake-up per batch cost
/// more than the old write under the lock). A server killed by SIGKILL loses at most this long's
/// lines, and those of the write under way, unless the disk was behind.
const WRITE_INTERVAL: Duration = Duration::from_millis(1);

/// The largest buffer the writer keeps between writes: a burst that grew it gives the rest back.
const KEPT_BUFFER_OCTETS: usize = 1024 * 1024;

/// How the stream ended, for the stop line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamEnd {
    /// Lines dropped because the disk fell behind (each gap is marked in the stream).
    pub missed: u64,
    /// Why the stream stopped short, if it did: a failed write, or the deadline passed with
    /// lines still unwritten.
    pub error: Option<String>,
}

/// Lines dropped and not yet marked in the stream.
#[derive(Debug, Clone, Copy)]
struct Gap {
    at_us: u64,
    lines: u64,
}

impl Gap {
    /// Appends the gap's marker line.
    fn write_marker(self, out: &mut Vec<u8>) {
        use std::io::Write as _;
        // Writing to a `Vec` cannot fail.
        let _ = writeln!(
            out,
            "{{\"at_us\":{},\"missed\":{}}}",
            self.at_us, self.lines
        );
    }
}

/// What the sessions and the writer share, under one lock.
struct Pending {
    /// Lines waiting for the writer.
    bytes: Vec<u8>,
    /// The most `bytes` may hold.
    cap: usize,
    /// Lines dropped since the last that went in.
    gap: Option<Gap>,
    /// Lines dropped in all.
    missed: u64,
    /// The writer sleeps until woken: only then does an append wake it.
    writer_asleep: bool,
    /// No more lines are taken: the writer writes what is left and ends.
    closing: bool,
    /// The writer ended (everything written, or a write failed).
    writer_ended: bool,
    /// Why the stream stopped, if a write failed; nothing is taken after that.
    error: Option<String>,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writer: lines came, or it is to finish.
    wake_writer: Condvar,
    /// Said when the writer has ended.
    writer_ended: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves the buffer usable: keep going.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The session side of the stream: appends lines for the writer thread. Dropping it lets the
/// writer finish in the background; [`StreamWriter::finisher`] waits for it.
pub(crate) struct StreamWriter {
    shared: Arc<Shared>,
}

impl StreamWriter {
    /// Starts the writer thread, writing to `out` with at most `cap` octets waiting.
    pub(crate) fn start(out: Box<dyn Write + Send>, cap: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                bytes: Vec::new(),
                cap,
                gap: None,
                missed: 0,
                writer_asleep: false,
                closing: false,
                writer_ended: false,
                error: None,
            }),
            wake_writer: Condvar::new(),
            writer_ended: Condvar::new(),
        });
        let writer = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("record-stream".into())
            .spawn(move || write_until_closed(&writer, out))?;
        Ok(StreamWriter { shared })
    }

    /// Appends whole lines (each ending in `\n`) recorded at `at_us`, or drops and counts them
    /// when the buffer has no room for them.
    pub(crate) fn append(&self, at_us: u64, lines: &[u8]) {
        if !lines.is_empty() {
            self.append_with(at_us, |out| out.extend_from_slice(lines));
        }
    }

    /// Appends the whole lines `write` writes (each ending in `\n`), recorded at `at_us`,
    /// straight into the buffer; if they do not fit they are taken out again, dropped and
    /// counted.
    pub(crate) fn append_with(&self, at_us: u64, write: impl FnOnce(&mut Vec<u8>)) {
        let mut p = self.shared.lock();
        if p.error.is_some() {
            return;
        }
        if p.closing {
            // A session still closing after the stream was closed: its lines are not in the
            // file. Counted, so an end not yet told (the writer still finishing) says so.
            let mut late = Vec::new();
            write(&mut late);
            p.missed += lines_in(&late);
            return;
        }
        let was_empty = p.bytes.is_empty();
        let start = p.bytes.len();
        if let Some(gap) = p.gap {
            gap.write_marker(&mut p.bytes);
        }
        let lines_start = p.bytes.len();
        write(&mut p.bytes);
        if p.bytes.len() > p.cap {
            let dropped = lines_in(&p.bytes[lines_start..]);
            p.bytes.truncate(start);
            p.missed += dropped;
            let gap = p.gap.get_or_insert(Gap { at_us, lines: 0 });
            gap.lines += dropped;
            return;
        }
        p.gap = None;
        let wake = was_empty && p.writer_asleep;
        drop(p);
        if wake {
            self.shared.wake_writer.notify_one();
        }
    }

    /// Why the stream stopped, if a write failed.
    #[cfg(test)]
    fn error(&self) -> Option<String> {
        self.shared.lock().error.clone()
    }

    /// What finishes the stream, usable without holding the recorder's lock.
    pub(crate) fn finisher(&self) -> StreamFinisher {
        StreamFinisher {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        close(&self.shared);
    }
}

/// How many whole lines `bytes` holds.
fn lines_in(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Takes no more lines and wakes the writer to write what is left.
fn close(shared: &Shared) {
    shared.lock().closing = true;
    shared.wake_writer.notify_one();
}

/// Finishes the stream: see [`StreamFinisher::finish`].
pub(crate) struct StreamFinisher {
    shared: Arc<Shared>,
}

impl StreamFinisher {
    /// Takes no more lines, and waits at most `deadline` for the writer to write what it
    /// holds (and the marker of a gap at the end).
    pub(crate) fn finish(self, deadline: Duration) -> StreamEnd {
        close(&self.shared);
        let p = self.shared.lock();
        let (p, _) = self
            .shared
            .writer_ended
            .wait_timeout_while(p, deadline, |p| !p.writer_ended)
            .unwrap_or_else(PoisonError::into_inner);
        let error = match (&p.error, p.writer_ended) {
            (Some(e), _) => Some(e.clone()),
            (None, true) => None,
            (None, false) => Some(format!(
                "the disk did not take the last lines within {} s; the file ends short",
                deadline.as_secs_f64()
            )),
        };
        StreamEnd {
            missed: p.missed,
            error,
        }
    }
}

/// The writer thread: writes what the buffer holds, one `write_all` per swap, until the stream
/// is closed and everything is written, or a write fails.
///
/// Woken from sleep it writes at once (a lone session's lines reach the disk at once); then it
/// naps [`WRITE_INTERVAL`], unwoken by the sessions, so that under load the lines of many
/// batches gather for one write. Only a nap that found nothing puts it to sleep again: a busy
/// server's sessions neither wake it nor make it write per batch.
fn write_until_closed(shared: &Shared, mut out: Box<dyn Write + Send>) {
    let mut writing = Vec::new();
    let failed = loop {
        {
            let mut p = shared.lock();
            if p.bytes.is_empty() && !p.closing {
                p.writer_asleep = true;
                while p.bytes.is_empty() && !p.closing {
                    p = shared
                        .wake_writer
                        .wait(p)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                p.writer_asleep = false;
            }
            if p.bytes.is_empty() {
                // Closing, and nothing is left but maybe the marker of a gap at the end.
                match p.gap.take() {
                    Some(gap) => gap.write_marker(&mut writing),
                    None => break None,
                }
            } else {
                std::mem::swap(&mut p.bytes, &mut writing);
            }
        }
        let written = out.write_all(&writing).and_then(|()| out.flush());
        if written.is_ok() {
            // Off the sessions' path, and what a test of a killed server waits for.
            tracing::debug!(octets = writing.len(), "record stream: written");
        }
        writing.clear();
        writing.shrink_to(KEPT_BUFFER_OCTETS);
        if let Err(e) = written {
            break Some(e);
        }
        // The nap; closing cuts it short.
        let p = shared.lock();
        if !p.closing {
            let _ = shared
                .wake_writer
                .wait_timeout_while(p, WRITE_INTERVAL, |p| !p.closing);
        }
    };
    if let Some(e) = &failed {
        // Told before the lock is taken: a stderr that blocks must not hold the sessions.
        tracing::warn!(error = %e, "the recording stream failed; the in-memory recording goes on");
    }
    let mut p = shared.lock();
    if let Some(e) = failed {
        p.error = Some(e.to_string());
        p.bytes = Vec::new();
    }
    p.writer_ended = true;
    drop(p);
    shared.writer_ended.notify_all();
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{Receiver, Sender, channel};

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    /// A disk whose first write waits until the test lets it go (saying when it started), and
    /// which tells the test of every write done: stalled for exactly as long as the test wants.
    struct StalledDisk {
        stalled: Option<(Sender<()>, Receiver<()>)>,
        writes: Sender<Vec<u8>>,
    }

    /// The test's side of a [`StalledDisk`].
    struct Disk {
        stall_started: Receiver<()>,
        go_on: Sender<()>,
        writes: Receiver<Vec<u8>>,
    }

    impl Disk {
        fn new() -> (StalledDisk, Disk) {
            let (started, stall_started) = channel();
            let (go_on, let_go) = channel();
            let (wrote, writes) = channel();
            (
                StalledDisk {
                    stalled: Some((started, let_go)),
                    writes: wrote,
                },
                Disk {
                    stall_started,
                    go_on,
                    writes,
                },
            )
        }

        /// The next write done, as text.
        fn next_write(&self) -> String {
            String::from_utf8(self.writes.recv_timeout(WAIT).unwrap()).unwrap()
        }
    }

    impl Write for StalledDisk {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Some((started, let_go)) = self.stalled.take() {
                let _ = started.send(());
                let_go
                    .recv_timeout(WAIT)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
            }
            let _ = self.writes.send(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A 12-octet line.
    fn line(n: u32) -> Vec<u8> {
        format!("{{\"at_us\":{n}}}\n").into_bytes()
    }

    /// A writer with room for `cap` octets, stuck writing line 1 (its buffer empty again) until
    /// the test lets its disk go on.
    fn stalled_writer(cap: usize) -> (StreamWriter, Disk) {
        let (stalled, disk) = Disk::new();
        let writer = StreamWriter::start(Box::new(stalled), cap).unwrap();
        writer.append(1, &line(1));
        disk.stall_started.recv_timeout(WAIT).unwrap();
        (writer, disk)
    }

    #[test]
    fn a_full_buffer_drops_and_counts_lines_and_marks_the_gap_where_writing_resumes() {
        // Room for two lines and not a third, or for a gap's marker (23 octets) and a line.
        let (writer, disk) = stalled_writer(35);
        writer.append(2, &line(2));
        writer.append(3, &line(3));
        // Full: these two are dropped, never waited for.
        writer.append(4, &line(4));
        writer.append_with(5, |out| out.extend_from_slice(&line(5)));
        disk.go_on.send(()).unwrap();
        assert_eq!(disk.next_write(), "{\"at_us\":1}\n");
        assert_eq!(disk.next_write(), "{\"at_us\":2}\n{\"at_us\":3}\n");
        // Room again: the marker goes in at the gap, before line 6.
        writer.append(6, &line(6));
        let end = writer.finisher().finish(WAIT);
        assert_eq!(
            disk.next_write(),
            "{\"at_us\":4,\"missed\":2}\n{\"at_us\":6}\n"
        );
        assert_eq!(
            end,
            StreamEnd {
                missed: 2,
                error: None
            }
        );
        assert!(disk.writes.try_recv().is_err(), "nothing else written");
    }

    #[test]
    fn lines_dropped_at_the_end_are_marked_at_the_end() {
        let (writer, disk) = stalled_writer(12);
        writer.append(2, &line(2));
        // A batch of two lines that does not fit: both dropped, both counted.
        writer.append(3, &[line(3), line(3)].concat());
        let finisher = writer.finisher();
        drop(writer);
        disk.go_on.send(()).unwrap();
        let end = finisher.finish(WAIT);
        let written: String = [disk.next_write(), disk.next_write(), disk.next_write()].concat();
        assert_eq!(
            written,
            "{\"at_us\":1}\n{\"at_us\":2}\n{\"at_us\":3,\"missed\":2}\n"
        );
        assert_eq!(end.missed, 2);
    }

    #[test]
    fn a_disk_that_never_takes_the_lines_does_not_hold_the_finish() {
        let (writer, disk) = stalled_writer(STREAM_BUFFER_OCTETS);
        // Never let go while the finish waits.
        let end = writer.finisher().finish(Duration::from_millis(50));
        assert!(
            end.error
                .as_deref()
                .is_some_and(|e| e.contains("ends short")),
            "{end:?}"
        );
        drop(disk);
    }

    #[test]
    fn a_failed_write_stops_the_stream_and_is_told() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("no space left"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let writer = StreamWriter::start(Box::new(Full), STREAM_BUFFER_OCTETS).unwrap();
        writer.append(1, &line(1));
        // The writer ends on its own after the failed write, before anyone closes the stream.
        let p = writer.shared.lock();
        let (p, timed_out) = writer
            .shared
            .writer_ended
            .wait_timeout_while(p, WAIT, |p| !p.writer_ended)
            .unwrap();
        assert!(!timed_out.timed_out() && !p.closing);
        drop(p);
        assert_eq!(writer.error().as_deref(), Some("no space left"));
        // Taken no more, and not for closing: nothing waits for a writer that has gone.
        writer.append(2, &line(2));
        assert!(writer.shared.lock().bytes.is_empty());
        let end = writer.finisher().finish(WAIT);
        assert_eq!(end.error.as_deref(), Some("no space left"));
    }

    #[test]
    fn lines_that_come_after_the_stream_is_finished_are_counted() {
        let writer = StreamWriter::start(Box::new(std::io::sink()), STREAM_BUFFER_OCTETS).unwrap();
        assert_eq!(writer.finisher().finish(WAIT), StreamEnd::default());
        writer.append(1, &[line(1), line(2)].concat());
        let p = writer.shared.lock();
        assert_eq!((p.missed, p.bytes.len()), (2, 0));
    }
}
