//! Reading a `serve --record` stream (JSON Lines, one event a line) back into the recording
//! document `GET /recording` returns: `etrn-harness recording FILE`.
//!
//! The document is what the API would have answered when the last line was written, with every
//! session held (`--retain all`): sessions closed before the last `{"reset":true}` line are gone,
//! sessions open across it keep their facts with the events after it, `refused` counts the
//! refusals after it. Each session is built from its events by the code the recorder uses
//! (`SessionRecording::with_events`) and serialised by the same types, so the two documents
//! are byte for byte the same.
//!
//! The file is read twice, line by line, never whole: a first pass checks every line and finds
//! the last reset, so a bad line is reported before anything is written; the second writes each
//! session as soon as it and every session before it have closed. Memory holds the sessions open
//! at a time (and those closed after the oldest still open), not the stream.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use serde_json::Value;
use tracing::warn;

use crate::files::{ReadFileError, open_regular};
use crate::proto::CloseReason;

use super::recorder::STREAM_VERSION;
use crate::proto::recording::{RECORDING_VERSION, Recording, SessionRecording, TimedEvent};

/// The longest line read: a command line at the largest `--max-line-length` (1 MiB), every
/// octet escaped as `\xNN` and that backslash escaped again in JSON, with room to spare.
pub const MAX_STREAM_LINE: usize = 16 * 1024 * 1024;

/// Why a stream could not be turned into a document.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error(transparent)]
    File(#[from] ReadFileError),
    /// A line that is no line of a recording stream; `line` is 1-based. The reason never quotes
    /// the line's text (it may hold anything a client sent).
    #[error("{path}:{line}: {reason}")]
    Line {
        path: String,
        line: u64,
        reason: String,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write the recording: {0}")]
    Write(std::io::Error),
}

/// One line of the stream, read.
enum StreamLine {
    Header,
    Opened {
        at_us: u64,
        session: u64,
        peer: String,
    },
    Event {
        session: u64,
        event: TimedEvent,
    },
    Tls {
        session: u64,
    },
    Closed {
        at_us: u64,
        session: u64,
        reason: CloseReason,
    },
    Reset,
    Refused,
    /// The marker of a gap: `lines` were dropped here, at `at_us`, because the disk fell behind.
    Missed {
        at_us: u64,
        lines: u64,
    },
}

/// Reads one line's JSON into what it says; `Err` is the reason, without the line's text.
fn parse_line(text: &[u8]) -> Result<StreamLine, String> {
    let mut v: Value = serde_json::from_slice(text).map_err(|e| {
        format!(
            "not a JSON object ({} at column {})",
            match e.classify() {
                serde_json::error::Category::Eof => "it ends too early",
                serde_json::error::Category::Syntax => "a syntax error",
                _ => "a bad value",
            },
            e.column()
        )
    })?;
    let number = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("no whole number `{key}`"))
    };
    let Some(object) = v.as_object() else {
        return Err("not a JSON object".into());
    };
    if object.contains_key("recording") {
        return match number(&v, "stream_version") {
            Ok(n) if n == u64::from(STREAM_VERSION) => Ok(StreamLine::Header),
            Ok(n) => Err(format!(
                "stream version {n}; this etrn-harness reads version {STREAM_VERSION}"
            )),
            Err(e) => Err(e),
        };
    }
    if object.contains_key("reset") {
        return Ok(StreamLine::Reset);
    }
    if object.contains_key("refused") {
        return Ok(StreamLine::Refused);
    }
    if object.contains_key("missed") && !object.contains_key("session") {
        return Ok(StreamLine::Missed {
            at_us: number(&v, "at_us")?,
            lines: number(&v, "missed")?,
        });
    }
    let session = number(&v, "session")?;
    if let Some(opened) = object.get("opened") {
        let peer = opened
            .get("peer")
            .and_then(Value::as_str)
            .ok_or("an `opened` line without its `peer`")?
            .to_owned();
        return Ok(StreamLine::Opened {
            at_us: number(&v, "at_us")?,
            session,
            peer,
        });
    }
    if let Some(reason) = object.get("closed") {
        let reason = serde_json::from_value(reason.clone()).map_err(|e| {
            format!("a `closed` line with no close reason this version knows ({e})")
        })?;
        return Ok(StreamLine::Closed {
            at_us: number(&v, "at_us")?,
            session,
            reason,
        });
    }
    if object.contains_key("tls") {
        return Ok(StreamLine::Tls { session });
    }
    if object.contains_key("event") {
        if let Some(o) = v.as_object_mut() {
            o.remove("session");
        }
        let event = serde_json::from_value(v)
            .map_err(|e| format!("an event this version does not know ({e})"))?;
        return Ok(StreamLine::Event { session, event });
    }
    Err("not a line of a recording stream (no `opened`, `event`, `closed`, `tls`, `reset` or `refused`)".into())
}

/// Calls `each` with every line of the stream at `path` and its 1-based number. The first line
/// must be the stream's header. A last line cut short (a server killed while writing it) is left
/// out with a warning; any other bad line is an error.
fn for_each_line(
    path: &Path,
    mut each: impl FnMut(u64, StreamLine) -> Result<(), StreamError>,
) -> Result<(), StreamError> {
    let name = || path.display().to_string();
    let mut reader = BufReader::new(open_regular(path)?);
    let mut buf = Vec::new();
    let mut number = 0u64;
    loop {
        buf.clear();
        let read = (&mut reader)
            .take(MAX_STREAM_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| StreamError::Read {
                path: name(),
                source,
            })?;
        if read == 0 {
            break;
        }
        number += 1;
        let bad = |reason: String| StreamError::Line {
            path: name(),
            line: number,
            reason,
        };
        let ended = buf.ends_with(b"\n");
        if !ended && buf.len() > MAX_STREAM_LINE {
            return Err(bad(format!("longer than {MAX_STREAM_LINE} octets")));
        }
        let parsed = parse_line(&buf);
        if number == 1 && !matches!(parsed, Ok(StreamLine::Header)) {
            return Err(bad(
                "not a recording stream: the first line is not its header \
                 ({\"recording\":\"etrn-harness\",...})"
                    .into(),
            ));
        }
        let line = match parsed {
            Ok(line) => line,
            Err(_) if !ended => {
                warn!(
                    file = %name(),
                    line = number,
                    "the last line was cut short (a server stopped while writing it); left out"
                );
                break;
            }
            Err(reason) => return Err(bad(reason)),
        };
        match (number, &line) {
            (1, _) => {}
            (_, StreamLine::Header) => return Err(bad("a second header line".into())),
            // A gap: a document made without those lines would pass for the whole recording.
            (_, StreamLine::Missed { at_us, lines }) => {
                return Err(bad(format!(
                    "{lines} line(s) missing here (dropped at {at_us} µs: the server's disk fell \
                     behind its sessions); this stream is not the whole recording: record again \
                     with a larger `serve --record-buffer` or onto a faster disk"
                )));
            }
            _ => each(number, line)?,
        }
    }
    if number == 0 {
        return Err(StreamError::Line {
            path: name(),
            line: 1,
            reason: "the file is empty: not a recording stream".into(),
        });
    }
    Ok(())
}

/// A session being read: its facts and its events so far.
struct Building {
    session: SessionRecording,
    events: Vec<TimedEvent>,
}

/// Writes the recording document the stream at `path` holds to `out`; returns how many sessions
/// it has.
pub fn write_document(path: &Path, out: &mut dyn Write) -> Result<usize, StreamError> {
    let (last_reset, refused) = last_reset(path)?;
    let head = Recording {
        version: RECORDING_VERSION,
        refused,
        forgotten: 0,
        sessions: Vec::new(),
    };
    out.write_all(&head.document_head())
        .map_err(StreamError::Write)?;
    // Second pass: the sessions, each written once it and all before it have closed.
    let mut held: BTreeMap<u64, Building> = BTreeMap::new();
    let mut sessions = SessionWriter { written: 0 };
    for_each_line(path, |number, line| {
        let after_reset = number > last_reset;
        apply(&mut held, line, after_reset);
        // Every closed session at the front goes out: ids only grow, so none comes before it.
        if after_reset {
            while let Some(entry) = held.first_entry() {
                if entry.get().session.close.is_none() {
                    break;
                }
                sessions.write(entry.remove(), out)?;
            }
        }
        Ok(())
    })?;
    // Sessions still open when the stream ended (a killed server) are shown open, as the API
    // shows them.
    for (_, b) in std::mem::take(&mut held) {
        sessions.write(b, out)?;
    }
    out.write_all(b"]}").map_err(StreamError::Write)?;
    out.flush().map_err(StreamError::Write)?;
    Ok(sessions.written)
}

/// The first pass: every line checked; the number of the last reset line (0 for none) and the
/// refusals after it.
fn last_reset(path: &Path) -> Result<(u64, u64), StreamError> {
    let mut last_reset = 0u64;
    let mut refused = 0u64;
    for_each_line(path, |number, line| {
        match line {
            StreamLine::Reset => {
                last_reset = number;
                refused = 0;
            }
            StreamLine::Refused => refused += 1,
            _ => {}
        }
        Ok(())
    })?;
    Ok((last_reset, refused))
}

/// One line applied to the sessions being read; `after_reset` says whether it comes after the
/// last reset.
fn apply(held: &mut BTreeMap<u64, Building>, line: StreamLine, after_reset: bool) {
    match line {
        StreamLine::Opened {
            at_us,
            session,
            peer,
        } => {
            held.insert(
                session,
                Building {
                    session: SessionRecording::opened(session, peer, at_us),
                    events: Vec::new(),
                },
            );
        }
        // Before the last reset only the facts of sessions count: a reset empties the logs.
        StreamLine::Event { session, event } if after_reset => {
            if let Some(b) = held.get_mut(&session) {
                b.events.push(event);
            }
        }
        StreamLine::Tls { session } => {
            if let Some(b) = held.get_mut(&session) {
                b.session.tls = true;
            }
        }
        StreamLine::Closed {
            at_us,
            session,
            reason,
        } => {
            if after_reset {
                if let Some(b) = held.get_mut(&session) {
                    b.session.ended_us = Some(at_us);
                    b.session.close = Some(reason);
                }
            } else {
                // Closed before the last reset: the reset forgot it.
                held.remove(&session);
            }
        }
        StreamLine::Event { .. }
        | StreamLine::Reset
        | StreamLine::Refused
        | StreamLine::Header
        | StreamLine::Missed { .. } => {}
    }
}

/// Writes the sessions of the document, a comma between them.
struct SessionWriter {
    written: usize,
}

impl SessionWriter {
    fn write(&mut self, b: Building, out: &mut dyn Write) -> Result<(), StreamError> {
        let session = b.session.with_events(b.events);
        let json = serde_json::to_vec(&session).map_err(|e| StreamError::Write(e.into()))?;
        if self.written > 0 {
            out.write_all(b",").map_err(StreamError::Write)?;
        }
        out.write_all(&json).map_err(StreamError::Write)?;
        self.written += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::proto::Event;
    use crate::smarthost::{Recorder, RecordingJson};

    /// A recorder streaming to a file, driven by hand; the document read back from the file
    /// equals the recorder's own.
    fn compare(drive: impl FnOnce(&Recorder)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.jsonl");
        let recorder = Arc::new(Recorder::new());
        recorder
            .stream_to(Box::new(std::fs::File::create(&path).unwrap()))
            .unwrap();
        drive(&recorder);
        assert_eq!(
            recorder.finish_stream(),
            crate::smarthost::StreamEnd::default()
        );
        let api: Vec<u8> = RecordingJson::new(Arc::clone(&recorder))
            .flatten()
            .collect();
        let mut read_back = Vec::new();
        write_document(&path, &mut read_back).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&read_back),
            String::from_utf8_lossy(&api)
        );
    }

    fn peer() -> std::net::SocketAddr {
        "127.0.0.1:50000".parse().unwrap()
    }

    fn reply(code: u16) -> Event {
        Event::Reply {
            code,
            lines: vec!["OK".into()],
        }
    }

    #[test]
    fn sessions_closed_out_of_order_and_a_reset_read_back_as_the_recorder_has_them() {
        compare(|r| {
            let a = r.open(peer());
            r.event(a, reply(220));
            let b = r.open(peer());
            r.event(b, reply(220));
            r.close(b, CloseReason::Quit);
            r.refused();
            r.reset();
            let c = r.open(peer());
            r.event(a, reply(250));
            r.tls_established(c);
            r.close(a, CloseReason::PeerClosed);
            r.refused();
            r.event(c, reply(221));
            // c stays open: shown open.
        });
    }

    #[test]
    fn a_stream_that_fell_behind_says_so_and_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.jsonl");
        let recorder = Recorder::new();
        // Room for a session's opened and closed lines and a marker, never for a batch of
        // 300 octets: that one is dropped however fast the disk is.
        recorder
            .stream_to_with_buffer(Box::new(std::fs::File::create(&path).unwrap()), 256)
            .unwrap();
        let id = recorder.open(peer());
        recorder.event(
            id,
            Event::Reply {
                code: 220,
                lines: vec!["x".repeat(300)],
            },
        );
        recorder.close(id, CloseReason::Quit);
        let end = recorder.finish_stream();
        assert_eq!((end.missed, end.error), (1, None));
        let err = write_document(&path, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string()
                .contains("rec.jsonl:3: 1 line(s) missing here"),
            "{err}"
        );
        // The session is in memory whole: only the stream has the gap.
        assert_eq!(recorder.recording().sessions[0].events.len(), 1);
    }

    #[test]
    fn a_bad_line_is_named_by_its_number_and_a_cut_last_line_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.jsonl");
        let header = "{\"recording\":\"etrn-harness\",\"stream_version\":1}\n";
        std::fs::write(&path, format!("{header}{{\"at_us\":1,\"session\":1,\"opened\":{{\"peer\":\"127.0.0.1:1\"}}}}\nsecret text\n")).unwrap();
        let err = write_document(&path, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("rec.jsonl:3: not a JSON object (a syntax error at column 1)"),
            "{err}"
        );
        assert!(!err.to_string().contains("secret"), "{err}");
        std::fs::write(&path, format!("{header}{{\"at_us\":1,\"sess")).unwrap();
        let mut out = Vec::new();
        write_document(&path, &mut out).unwrap();
        assert_eq!(out, b"{\"version\":1,\"refused\":0,\"sessions\":[]}");
        std::fs::write(&path, "{\"at_us\":1}\n").unwrap();
        let err = write_document(&path, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains(":1: not a recording stream"),
            "{err}"
        );
        // A gap's marker: refused, named by its line, with the count.
        std::fs::write(
            &path,
            format!("{header}{{\"at_us\":7,\"missed\":3}}\n{{\"at_us\":8,\"refused\":1}}\n"),
        )
        .unwrap();
        let err = write_document(&path, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().ends_with(
                "rec.jsonl:2: 3 line(s) missing here (dropped at 7 µs: the server's disk fell \
                 behind its sessions); this stream is not the whole recording: record again \
                 with a larger `serve --record-buffer` or onto a faster disk"
            ),
            "{err}"
        );
        assert!(matches!(
            write_document(dir.path(), &mut Vec::new()),
            Err(StreamError::File(ReadFileError::NotRegular { .. }))
        ));
    }
}
