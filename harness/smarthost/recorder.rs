//! The recorder: every session's events, kept safe under many concurrent sessions, with waits that
//! wake on events rather than polling.
//!
//! The recording serialises to the JSON document `etrn-harness serve --record` writes; its shape is
//! documented in the README ("Recording format").

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Notify, broadcast};

use crate::smtp::{CloseReason, EtrnRecord, Event, MessageRecord, transcript};

/// Version of the recording's JSON shape.
pub const RECORDING_VERSION: u32 = 1;

/// Everything a smart host saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recording {
    pub version: u32,
    /// Connections refused with `421` at the connection cap: not sessions, counted apart.
    pub refused: u64,
    pub sessions: Vec<SessionRecording>,
}

/// One connection.
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordedReply {
    pub code: u16,
    pub lines: Vec<String>,
}

/// A command line and its reply.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedCommand {
    pub at_us: u64,
    /// The line as received, escaped (`\r`, `\n`, `\xNN`); credentials `[redacted]`.
    pub raw: String,
    pub verb: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bare_lf: bool,
    /// `None` when no reply was sent (the server hung up, or a DATA body line).
    pub reply: Option<RecordedReply>,
}

/// An ETRN with its time.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedEtrn {
    pub at_us: u64,
    #[serde(flatten)]
    pub record: EtrnRecord,
}

/// An event with its time.
#[derive(Debug, Clone, Serialize)]
pub struct TimedEvent {
    pub at_us: u64,
    #[serde(flatten)]
    pub event: Event,
}

impl SessionRecording {
    /// RFC-style `C:`/`S:` transcript of this session.
    pub fn transcript(&self) -> String {
        transcript(self.events.iter().map(|e| &e.event))
    }

    /// The normalised ETRN domains in order (arguments that are not domains are left out).
    pub fn etrn_domains(&self) -> Vec<String> {
        self.etrn
            .iter()
            .filter_map(|e| e.record.domain.clone())
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

    /// Sessions that have ended.
    pub fn closed_sessions(&self) -> usize {
        self.sessions.iter().filter(|s| s.close.is_some()).count()
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

/// What a live listener hears.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    Opened { session: u64, peer: SocketAddr },
    Event { session: u64, event: Event },
    Closed { session: u64, reason: CloseReason },
}

/// A wait that ran out of time.
#[derive(Debug, Clone, thiserror::Error)]
#[error("timed out after {waited:?} waiting for {what}")]
pub struct WaitTimeout {
    pub what: String,
    pub waited: Duration,
}

/// Collects events from every session of one smart host.
#[derive(Debug)]
pub struct Recorder {
    started: Instant,
    state: Mutex<Recording>,
    changed: Notify,
    live: broadcast::Sender<LiveEvent>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        let (live, _) = broadcast::channel(4096);
        Recorder {
            started: Instant::now(),
            state: Mutex::new(Recording {
                version: RECORDING_VERSION,
                refused: 0,
                sessions: Vec::new(),
            }),
            changed: Notify::new(),
            live,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Recording> {
        // A panic elsewhere while holding the lock leaves the recording usable; keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn publish(&self, e: LiveEvent) {
        // No subscriber is fine: nobody is watching live.
        let _ = self.live.send(e);
        self.changed.notify_waiters();
    }

    /// A live feed of events, for printing as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.live.subscribe()
    }

    /// Registers a new session and returns its id.
    pub fn open(&self, peer: SocketAddr) -> u64 {
        let at = self.now_us();
        let id = {
            let mut r = self.lock();
            let id = r.sessions.len() as u64 + 1;
            r.sessions.push(SessionRecording {
                id,
                peer: peer.to_string(),
                started_us: at,
                ended_us: None,
                close: None,
                tls: false,
                greeting: None,
                commands: Vec::new(),
                etrn: Vec::new(),
                messages: Vec::new(),
                events: Vec::new(),
            });
            id
        };
        self.publish(LiveEvent::Opened { session: id, peer });
        id
    }

    /// Records one event of session `id`.
    pub fn event(&self, id: u64, event: Event) {
        let at = self.now_us();
        {
            let mut r = self.lock();
            let Some(s) = session_mut(&mut r, id) else {
                return;
            };
            match &event {
                Event::Command(c) => s.commands.push(RecordedCommand {
                    at_us: at,
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
                    at_us: at,
                    record: record.clone(),
                }),
                Event::Message(m) => s.messages.push(m.clone()),
                _ => {}
            }
            s.events.push(TimedEvent {
                at_us: at,
                event: event.clone(),
            });
        }
        self.publish(LiveEvent::Event { session: id, event });
    }

    /// Marks session `id` as running over TLS.
    pub fn tls_established(&self, id: u64) {
        if let Some(s) = session_mut(&mut self.lock(), id) {
            s.tls = true;
        }
        self.changed.notify_waiters();
    }

    /// Ends session `id`.
    pub fn close(&self, id: u64, reason: CloseReason) {
        let at = self.now_us();
        {
            let mut r = self.lock();
            if let Some(s) = session_mut(&mut r, id) {
                if s.close.is_some() {
                    return;
                }
                s.ended_us = Some(at);
                s.close = Some(reason.clone());
            }
        }
        self.publish(LiveEvent::Closed {
            session: id,
            reason,
        });
    }

    /// Counts a connection refused at the cap.
    pub fn refused(&self) {
        self.lock().refused += 1;
        self.changed.notify_waiters();
    }

    /// Ends every session still open, as closed for `reason` (a shutdown that could not wait).
    pub fn close_open(&self, reason: CloseReason) {
        let open: Vec<u64> = self
            .lock()
            .sessions
            .iter()
            .filter(|s| s.close.is_none())
            .map(|s| s.id)
            .collect();
        for id in open {
            self.close(id, reason.clone());
        }
    }

    /// A copy of everything recorded so far.
    pub fn recording(&self) -> Recording {
        self.lock().clone()
    }

    /// Waits until `ready` holds for the recording, waking only when something is recorded.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&Recording) -> bool,
    ) -> Result<Recording, WaitTimeout> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before checking, so an event between the check and the wait
            // still wakes us.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let r = self.lock();
                if ready(&r) {
                    return Ok(r.clone());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(WaitTimeout {
                    what: what.to_owned(),
                    waited: timeout,
                });
            }
        }
    }

    /// Waits until at least `n` sessions have closed.
    pub async fn wait_for_closed_sessions(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Recording, WaitTimeout> {
        self.wait_until(&format!("{n} closed session(s)"), timeout, |r| {
            r.closed_sessions() >= n
        })
        .await
    }

    /// Waits until an ETRN for `domain` (compared normalised) has been answered.
    pub async fn wait_for_etrn(
        &self,
        domain: &str,
        timeout: Duration,
    ) -> Result<Recording, WaitTimeout> {
        let wanted = crate::domain::Domain::parse(domain)
            .map(|d| d.normalised().to_owned())
            .unwrap_or_else(|_| domain.to_ascii_lowercase());
        self.wait_until(&format!("ETRN {domain}"), timeout, |r| {
            r.etrn_domains().iter().any(|d| d == &wanted)
        })
        .await
    }
}

fn session_mut(r: &mut Recording, id: u64) -> Option<&mut SessionRecording> {
    let index = usize::try_from(id).ok()?.checked_sub(1)?;
    r.sessions.get_mut(index)
}
