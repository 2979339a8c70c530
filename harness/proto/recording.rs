//! What a smart host saw, as plain data: every session's commands with their replies, its ETRNs,
//! its messages and its full event log.
//!
//! These are the types the judges read and `serve --record` writes (its JSON shape is documented
//! in the README, "Recording format"). They know nothing of how they were gathered: the tokio
//! recorder ([`crate::smarthost::Recorder`]) builds them under its locks for a running server, and
//! [`RecordingBuilder`] builds them in memory for the model's prediction.

use std::net::SocketAddr;

use serde::Serialize;
use tracing::warn;

use crate::wire::Verb;

use super::{CloseReason, EtrnRecord, Event, MessageRecord, transcript};

/// Version of the recording's JSON shape.
pub const RECORDING_VERSION: u32 = 1;

/// Everything a smart host saw.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct Recording {
    pub version: u32,
    /// Connections refused with `421` at the connection cap: not sessions, counted apart.
    pub refused: u64,
    /// Closed sessions the recorder no longer holds (`serve --retain N` past its N, or `--retain
    /// open`): counted, not shown; a `--record` stream has them.
    #[serde(skip_serializing_if = "is_zero")]
    pub forgotten: u64,
    pub sessions: Vec<SessionRecording>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One connection.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct SessionRecording {
    /// 1, 2, 3 ... in order of connection.
    pub id: u64,
    /// The client's address.
    pub peer: String,
    /// Microseconds since the smart host started (monotonic clock).
    pub started_us: u64,
    pub ended_us: Option<u64>,
    /// Why the session ended; `None` while it is open.
    pub close: Option<CloseReason>,
    /// Whether TLS was established.
    pub tls: bool,
    /// The greeting sent.
    pub greeting: Option<RecordedReply>,
    /// Every command line with its reply.
    pub commands: Vec<RecordedCommand>,
    /// Every ETRN, in order.
    pub etrn: Vec<RecordedEtrn>,
    /// Mail transactions that reached the end of DATA.
    pub messages: Vec<MessageRecord>,
    /// The full event log, for transcripts.
    pub events: Vec<TimedEvent>,
}

/// A reply as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RecordedReply {
    pub code: u16,
    pub lines: Vec<String>,
}

/// A command line and its reply.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RecordedCommand {
    pub at_us: u64,
    /// The line as received, escaped (`\r`, `\n`, `\xNN`); credentials `[redacted]`.
    pub raw: String,
    /// Written as its upper-case text.
    #[schemars(with = "String")]
    pub verb: Verb,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bare_lf: bool,
    /// `None` when no reply was sent (the server hung up, or a DATA body line).
    pub reply: Option<RecordedReply>,
}

/// An ETRN with its time.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RecordedEtrn {
    pub at_us: u64,
    #[serde(flatten)]
    pub record: EtrnRecord,
}

/// An event with its time.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct TimedEvent {
    pub at_us: u64,
    #[serde(flatten)]
    pub event: Event,
}

impl SessionRecording {
    /// A session from `peer` (an address as text) just opened at `started_us`, with nothing
    /// recorded yet.
    pub fn opened(id: u64, peer: String, started_us: u64) -> Self {
        SessionRecording {
            id,
            peer,
            started_us,
            ended_us: None,
            close: None,
            tls: false,
            greeting: None,
            commands: Vec::new(),
            etrn: Vec::new(),
            messages: Vec::new(),
            events: Vec::new(),
        }
    }

    /// RFC-style `C:`/`S:` transcript of this session.
    pub fn transcript(&self) -> String {
        transcript(self.events.iter().map(|e| &e.event))
    }

    /// The normalised ETRN domains in order (arguments that are not domains are left out).
    pub fn etrn_domains(&self) -> Vec<String> {
        self.etrn
            .iter()
            .filter_map(|e| e.record.domain().map(str::to_owned))
            .collect()
    }
}

impl Recording {
    /// Every session's ETRN domains, in order of arrival per session.
    pub fn etrn_domains(&self) -> Vec<String> {
        self.sessions
            .iter()
            .flat_map(|s| s.etrn_domains())
            .collect()
    }

    /// The distinct ETRN domains, sorted.
    pub fn etrn_domain_set(&self) -> std::collections::BTreeSet<String> {
        self.etrn_domains().into_iter().collect()
    }

    /// Sessions that have ended, forgotten ones included.
    pub fn closed_sessions(&self) -> usize {
        usize::try_from(self.forgotten).unwrap_or(usize::MAX)
            + self.sessions.iter().filter(|s| s.close.is_some()).count()
    }

    /// All sessions' transcripts, each under a header line.
    pub fn transcript(&self) -> String {
        self.sessions
            .iter()
            .map(|s| format!("# session {} from {}\n{}", s.id, s.peer, s.transcript()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Recording {
    /// The document up to the opening of its `sessions` list, for writers that add the sessions
    /// one at a time: the fields stay those of `Recording`, in its order, whatever is added to
    /// it (`sessions` is the last).
    pub(crate) fn document_head(&self) -> Vec<u8> {
        let empty = Recording {
            version: self.version,
            refused: self.refused,
            forgotten: self.forgotten,
            sessions: Vec::new(),
        };
        let mut bytes = serde_json::to_vec(&empty).unwrap_or_default();
        if bytes.ends_with(b"[]}") {
            bytes.truncate(bytes.len() - 2);
        } else {
            warn!("the recording's JSON does not end with its sessions; written field by field");
            let forgotten = if self.forgotten == 0 {
                String::new()
            } else {
                format!("\"forgotten\":{},", self.forgotten)
            };
            bytes = format!(
                "{{\"version\":{},\"refused\":{},{forgotten}\"sessions\":[",
                self.version, self.refused
            )
            .into_bytes();
        }
        bytes
    }
}

impl SessionRecording {
    /// The session with `events` as its log and the lists derived from it (greeting, commands
    /// with their replies, ETRNs, messages): how the recorder builds every session it shows, and
    /// how a `--record` stream is read back.
    pub(crate) fn with_events(mut self, events: Vec<TimedEvent>) -> Self {
        let s = &mut self;
        for e in &events {
            match &e.event {
                Event::Command(c) => s.commands.push(RecordedCommand {
                    at_us: e.at_us,
                    raw: crate::escape::escape(&c.raw),
                    verb: c.verb.clone(),
                    bare_lf: c.bare_lf,
                    reply: None,
                }),
                Event::Reply { code, lines } => {
                    let reply = RecordedReply {
                        code: *code,
                        lines: lines.clone(),
                    };
                    match s.commands.last_mut() {
                        Some(c) if c.reply.is_none() => c.reply = Some(reply),
                        None if s.greeting.is_none() => s.greeting = Some(reply),
                        // A reply with no command of its own: idle timeout, end of DATA.
                        _ => {}
                    }
                }
                Event::Etrn(record) => s.etrn.push(RecordedEtrn {
                    at_us: e.at_us,
                    record: record.as_ref().clone(),
                }),
                Event::Message(m) => s.messages.push(m.clone()),
                _ => {}
            }
        }
        self.events = events;
        self
    }
}

/// A recording built in memory, one event at a time, with no locks, clock or I/O: what the
/// model's prediction records its in-memory sessions into. Times are the caller's, in
/// microseconds.
#[derive(Debug, Default)]
pub struct RecordingBuilder {
    sessions: Vec<(SessionRecording, Vec<TimedEvent>)>,
}

impl RecordingBuilder {
    pub fn new() -> Self {
        RecordingBuilder::default()
    }

    /// Opens a session from `peer` at `at_us` and returns its id (1, 2, 3 ...).
    pub fn open(&mut self, peer: SocketAddr, at_us: u64) -> u64 {
        let id = self.sessions.len() as u64 + 1;
        self.sessions.push((
            SessionRecording::opened(id, peer.to_string(), at_us),
            Vec::new(),
        ));
        id
    }

    /// Records `event` of session `id` at `at_us`; an unknown or closed session's are dropped.
    pub fn event(&mut self, id: u64, event: Event, at_us: u64) {
        if let Some((_, events)) = self.open_session(id) {
            events.push(TimedEvent { at_us, event });
        }
    }

    /// Closes session `id` at `at_us` for `reason`; only the first close counts.
    pub fn close(&mut self, id: u64, reason: CloseReason, at_us: u64) {
        if let Some((s, _)) = self.open_session(id) {
            s.ended_us = Some(at_us);
            s.close = Some(reason);
        }
    }

    fn open_session(&mut self, id: u64) -> Option<&mut (SessionRecording, Vec<TimedEvent>)> {
        let index = usize::try_from(id.checked_sub(1)?).ok()?;
        self.sessions
            .get_mut(index)
            .filter(|(s, _)| s.close.is_none())
    }

    /// The recording so far.
    pub fn recording(&self) -> Recording {
        Recording {
            version: RECORDING_VERSION,
            refused: 0,
            forgotten: 0,
            sessions: self
                .sessions
                .iter()
                .map(|(s, events)| s.clone().with_events(events.clone()))
                .collect(),
        }
    }
}
