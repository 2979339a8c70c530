//! Running probes: over TCP against any server, or in memory against a profile.
//!
//! A probe is a list of [`Action`]s (send these bytes, read one reply, see whether the server
//! closes); the two drivers carry them out and write down what happened in the same
//! [`ProbeResult`] form, so a real server and a profile are compared line by line. The TCP driver
//! bounds every wait: a server that never answers is a finding, not a hang. The in-memory driver
//! runs the sans-IO [`Session`] with a virtual clock (a greet pause takes no time).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::escape::{escape, unescape};
use crate::proto::{Accepted, Behaviour, Output, Session, SessionLimits};
use crate::reply::{Reply, ReplyReader};
use crate::wire::{Command, Verb};

use super::set::Probe;

/// One thing the client does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Read one complete reply.
    Read,
    /// After QUIT: the server should close.
    AwaitClose,
}

/// The actions of a probe, the final look at the connection included.
pub fn actions(probe: &Probe) -> Vec<Action> {
    let mut out = Vec::new();
    let mut quits = false;
    for step in &probe.steps {
        if let Some(bytes) = step.sent() {
            out.push(Action::Send(bytes));
        }
        out.extend(std::iter::repeat_n(Action::Read, step.replies()));
        quits = step.quits();
    }
    if quits {
        out.push(Action::AwaitClose);
    } else {
        // Still open? A NOOP answered says so; a close says not.
        out.push(Action::Send(b"NOOP\r\n".to_vec()));
        out.push(Action::Read);
    }
    out
}

/// What became of one probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeResult {
    pub id: String,
    pub title: String,
    /// Every line sent and every reply got, in order.
    pub transcript: Vec<Line>,
    /// How the probe ended.
    pub end: End,
    /// How long the greeting took, over TCP (a greet pause shows here); not compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub greeting_ms: Option<u64>,
}

impl ProbeResult {
    /// Each line the client sent with the reply it got, in order; the greeting (the first reply,
    /// even for a client that talked first) answers no line. Pipelined lines are split.
    pub fn answers(&self) -> Vec<(String, &ReplyLines)> {
        let mut out = Vec::new();
        let mut waiting: std::collections::VecDeque<String> = Default::default();
        let mut greeted = false;
        for line in &self.transcript {
            match line {
                Line::Client(sent) => waiting.extend(
                    sent.split_inclusive("\\n")
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned),
                ),
                Line::Server(reply) if greeted => {
                    if let Some(sent) = waiting.pop_front() {
                        out.push((sent, reply));
                    }
                }
                Line::Server(_) => greeted = true,
            }
        }
        out
    }

    /// How many lines the client sent that got no reply.
    pub fn unanswered(&self) -> usize {
        let sent: usize = self
            .transcript
            .iter()
            .map(|l| match l {
                Line::Client(sent) => sent
                    .split_inclusive("\\n")
                    .filter(|l| !l.is_empty())
                    .count(),
                Line::Server(_) => 0,
            })
            .sum();
        sent.saturating_sub(self.answers().len())
    }

    /// The replies to the probe's ETRN lines, in order.
    pub fn etrn_replies(&self) -> Vec<&ReplyLines> {
        self.answers()
            .into_iter()
            .filter(|(sent, _)| {
                // The transcript holds each line escaped; read back, it is the line sent.
                unescape(sent).is_ok_and(|line| *Command::parse(&line).verb() == Verb::Etrn)
            })
            .map(|(_, r)| r)
            .collect()
    }

    /// The replies, in order.
    pub fn replies(&self) -> impl Iterator<Item = &ReplyLines> {
        self.transcript.iter().filter_map(|l| match l {
            Line::Server(r) => Some(r),
            Line::Client(_) => None,
        })
    }
}

/// One transcript entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    /// Bytes the client wrote, escaped (`\r\n` shown).
    Client(String),
    /// A complete reply.
    Server(ReplyLines),
}

/// A reply as data: code and text lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplyLines {
    pub code: u16,
    pub lines: Vec<String>,
}

impl From<&Reply> for ReplyLines {
    fn from(r: &Reply) -> Self {
        ReplyLines {
            code: r.code().get(),
            lines: r.lines().to_vec(),
        }
    }
}

impl std::fmt::Display for ReplyLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let last = self.lines.len().saturating_sub(1);
        for (i, l) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}{sep}{l}", self.code)?;
        }
        Ok(())
    }
}

/// How a probe ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum End {
    /// The session was still open after the probe (it answered NOOP).
    Open,
    /// The server closed after the client's QUIT.
    ClosedAfterQuit,
    /// The server closed the connection without being asked to.
    ClosedByServer,
    /// The server kept the connection open after QUIT.
    OpenAfterQuit,
    /// No reply came within the deadline.
    NoReply { waited_ms: u64 },
    /// The server sent something that is not an SMTP reply.
    Malformed { error: String },
    /// The connection could not be made or failed.
    Failed { error: String },
}

impl End {
    pub fn describe(&self) -> String {
        match self {
            End::Open => "open".into(),
            End::ClosedAfterQuit => "closed after QUIT".into(),
            End::ClosedByServer => "closed by the server".into(),
            End::OpenAfterQuit => "still open after QUIT".into(),
            End::NoReply { waited_ms } => format!("no reply within {waited_ms} ms"),
            End::Malformed { error } => format!("not an SMTP reply: {error}"),
            End::Failed { error } => format!("connection failed: {error}"),
        }
    }
}

/// What one read got.
enum Got {
    Reply(Reply),
    Closed,
    Timeout,
    Malformed(String),
}

/// Runs every probe against the server at `addr`, one connection each; `deadline` bounds each
/// read (and the connect), `settle` is waited after each probe.
pub async fn probe_server(
    addr: SocketAddr,
    probes: &[Probe],
    deadline: Duration,
    settle: Duration,
    mut progress: impl FnMut(&ProbeResult),
) -> Vec<ProbeResult> {
    let mut out = Vec::with_capacity(probes.len());
    for probe in probes {
        let span = tracing::info_span!("probe", id = probe.id, %addr);
        let _enter = span.enter();
        let result = probe_one(addr, probe, deadline).await;
        tracing::info!(end = %result.end.describe(), "probed");
        progress(&result);
        out.push(result);
        if !settle.is_zero() {
            tokio::time::sleep(settle).await;
        }
    }
    out
}

async fn probe_one(addr: SocketAddr, probe: &Probe, deadline: Duration) -> ProbeResult {
    let mut result = ProbeResult {
        id: probe.id.into(),
        title: probe.title.into(),
        transcript: Vec::new(),
        end: End::Open,
        greeting_ms: None,
    };
    let mut stream = match tokio::time::timeout(deadline, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            result.end = End::Failed {
                error: e.to_string(),
            };
            return result;
        }
        Err(_) => {
            result.end = End::Failed {
                error: format!("no connection within {} ms", deadline.as_millis()),
            };
            return result;
        }
    };
    let _ = stream.set_nodelay(true);
    let started = Instant::now();
    let mut reader = ReplyReader::new();
    let mut buf = vec![0u8; 16 * 1024];
    for action in actions(probe) {
        match action {
            Action::Send(bytes) => {
                result.transcript.push(Line::Client(escape(&bytes)));
                let write = async {
                    stream.write_all(&bytes).await?;
                    stream.flush().await
                };
                match tokio::time::timeout(deadline, write).await {
                    Ok(Ok(())) => {}
                    // A server that closed may make the write fail: what the next read sees says.
                    Ok(Err(_)) => {}
                    Err(_) => {
                        result.end = End::NoReply {
                            waited_ms: deadline.as_millis() as u64,
                        };
                        return result;
                    }
                }
            }
            Action::Read => match read_reply(&mut stream, &mut reader, &mut buf, deadline).await {
                Got::Reply(r) => {
                    if result.greeting_ms.is_none() {
                        result.greeting_ms = Some(started.elapsed().as_millis() as u64);
                    }
                    result.transcript.push(Line::Server((&r).into()))
                }
                got => {
                    result.end = ended(got, deadline);
                    return result;
                }
            },
            Action::AwaitClose => {
                result.end = match read_reply(&mut stream, &mut reader, &mut buf, deadline).await {
                    Got::Closed => End::ClosedAfterQuit,
                    Got::Timeout => End::OpenAfterQuit,
                    Got::Reply(r) => End::Malformed {
                        error: format!("a reply after QUIT's: {}", ReplyLines::from(&r)),
                    },
                    Got::Malformed(e) => End::Malformed { error: e },
                };
                return result;
            }
        }
    }
    result
}

fn ended(got: Got, deadline: Duration) -> End {
    match got {
        Got::Closed => End::ClosedByServer,
        Got::Timeout => End::NoReply {
            waited_ms: deadline.as_millis() as u64,
        },
        Got::Malformed(e) => End::Malformed { error: e },
        Got::Reply(_) => End::Open,
    }
}

async fn read_reply(
    stream: &mut TcpStream,
    reader: &mut ReplyReader,
    buf: &mut [u8],
    deadline: Duration,
) -> Got {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        match reader.next_reply() {
            Some(Ok(r)) => return Got::Reply(r),
            Some(Err(e)) => return Got::Malformed(e.to_string()),
            None => {}
        }
        match tokio::time::timeout_at(until, stream.read(buf)).await {
            Err(_) => return Got::Timeout,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return if reader.has_partial() {
                    Got::Malformed("the connection closed in the middle of a reply".into())
                } else {
                    Got::Closed
                };
            }
            Ok(Ok(n)) => reader.push(&buf[..n]),
        }
    }
}

/// Runs every probe against `behaviour` in memory: the sans-IO session each probe's connection
/// would get from a smart host answering as it does, with a virtual clock.
pub fn probe_behaviour(
    behaviour: Arc<dyn Behaviour>,
    limits: &SessionLimits,
    probes: &[Probe],
) -> Vec<ProbeResult> {
    // One clock for the whole set, moved only by the sessions' own timers, so state that lasts
    // across sessions (a queue run) sees the probes close together, as against a real server.
    let mut now = Instant::now();
    probes
        .iter()
        .enumerate()
        .map(|(index, probe)| {
            probe_in_memory(
                Arc::clone(&behaviour),
                limits,
                probe,
                index as u64,
                &mut now,
            )
        })
        .collect()
}

/// How long the in-memory probe waits for a reply on its virtual clock: `probe --timeout`'s
/// default.
const IN_MEMORY_REPLY_WAIT: Duration = Duration::from_secs(10);

fn probe_in_memory(
    behaviour: Arc<dyn Behaviour>,
    limits: &SessionLimits,
    probe: &Probe,
    index: u64,
    now: &mut Instant,
) -> ProbeResult {
    let accepted = Accepted {
        index,
        peer: std::net::Ipv4Addr::LOCALHOST.into(),
        now: *now,
        wall_clock: SystemTime::now(),
    };
    let mut session = Session::new(behaviour, limits.clone(), &accepted);
    let mut reader = ReplyReader::new();
    let mut closed = false;
    let mut result = ProbeResult {
        id: probe.id.into(),
        title: probe.title.into(),
        transcript: Vec::new(),
        end: End::Open,
        greeting_ms: None,
    };
    for action in actions(probe) {
        drain(&mut session, &mut reader, &mut closed);
        match action {
            Action::Send(bytes) => {
                result.transcript.push(Line::Client(escape(&bytes)));
                if !closed {
                    session.receive(&bytes, *now);
                }
            }
            Action::Read => {
                let gives_up_at = *now + IN_MEMORY_REPLY_WAIT;
                loop {
                    drain(&mut session, &mut reader, &mut closed);
                    match reader.next_reply() {
                        Some(Ok(r)) => {
                            result.transcript.push(Line::Server((&r).into()));
                            break;
                        }
                        Some(Err(e)) => {
                            result.end = End::Malformed {
                                error: e.to_string(),
                            };
                            return result;
                        }
                        None if closed => {
                            result.end = End::ClosedByServer;
                            return result;
                        }
                        // The session's next deadline (a greet pause, a delayed reply, the idle
                        // timeout), if the probe would still be waiting then.
                        None => match session.poll_timeout() {
                            Some(at) if at <= gives_up_at => {
                                *now = (*now).max(at);
                                session.handle_timeout(*now);
                            }
                            _ => {
                                result.end = End::NoReply {
                                    waited_ms: IN_MEMORY_REPLY_WAIT.as_millis() as u64,
                                };
                                return result;
                            }
                        },
                    }
                }
            }
            Action::AwaitClose => {
                drain(&mut session, &mut reader, &mut closed);
                result.end = if closed {
                    End::ClosedAfterQuit
                } else {
                    End::OpenAfterQuit
                };
                return result;
            }
        }
    }
    result
}

/// Carries out a session's outputs in memory: bytes to the reader, a close noted.
fn drain(session: &mut Session, reader: &mut ReplyReader, closed: &mut bool) {
    while let Some(output) = session.poll_output() {
        match output {
            Output::Close(_) => *closed = true,
            Output::Event(_) | Output::StartTls => {}
        }
    }
    let mut bytes = Vec::new();
    session.poll_transmit(&mut bytes);
    reader.push(&bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ProfileName, SmartHostScript};

    fn in_memory(profile: ProfileName) -> Vec<ProbeResult> {
        let script = Arc::new(SmartHostScript {
            profile,
            served: vec![crate::domain::EtrnArg::parse("a.example").unwrap()],
            hostname: Some("mx.test".into()),
            ..SmartHostScript::default()
        });
        let behaviour: Arc<dyn Behaviour> = Arc::new(script.behaviour().unwrap());
        probe_behaviour(
            behaviour,
            &SessionLimits::default(),
            &super::super::set::probe_set(),
        )
    }

    fn codes(results: &[ProbeResult], id: &str) -> (Vec<u16>, End) {
        let r = results.iter().find(|r| r.id == id).unwrap();
        (r.replies().map(|r| r.code).collect(), r.end.clone())
    }

    #[test]
    fn sendmail_refuses_a_client_that_talks_first_and_greets_the_others_late() {
        let results = in_memory(ProfileName::Sendmail);
        assert_eq!(
            codes(&results, "talk-first"),
            (vec![554, 250, 550, 250], End::Open)
        );
        assert_eq!(
            codes(&results, "etrn-served"),
            (vec![220, 250, 250, 250], End::Open)
        );
        assert_eq!(codes(&results, "line-2100").1, End::ClosedByServer);
    }

    #[test]
    fn exim_closes_at_the_fourth_syntax_error() {
        let results = in_memory(ProfileName::Exim);
        let (got, end) = codes(&results, "etrn-ten-times");
        assert_eq!(got, [220, 250, 501, 501, 501, 501]);
        assert_eq!(end, End::ClosedByServer);
    }

    #[test]
    fn postfix_reads_long_lines_up_to_its_limit() {
        let results = in_memory(ProfileName::Postfix);
        assert_eq!(
            codes(&results, "line-5000"),
            (vec![220, 250, 501, 250], End::Open)
        );
        assert_eq!(
            codes(&results, "etrn-pipelined-quit"),
            (vec![220, 250, 250, 221], End::ClosedAfterQuit)
        );
    }

    #[test]
    fn exim_serialises_queue_runs_per_argument() {
        let results = in_memory(ProfileName::EximEtrnCommand);
        assert_eq!(codes(&results, "etrn-served").0, [220, 250, 250, 250]);
        // The run started by the first probe still goes.
        assert_eq!(
            codes(&results, "etrn-three-times").0,
            [220, 250, 458, 458, 458, 250]
        );
        assert_eq!(
            codes(&results, "etrn-upper-case-domain").0,
            [220, 250, 250, 250]
        );
    }
}
