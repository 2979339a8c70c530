//! Replay mode: a conversation that answers from a cassette, byte for byte.
//!
//! Connection *n* of the server replays recorded session *n* (the last one once they run out).
//! Each command is matched to a recorded exchange, and the recorded reply goes out exactly as it
//! was received from the real upstream:
//!
//! - `strict`: the next exchange, and the same command line, byte for byte;
//! - `verb`: the next exchange, with the same verb and argument (case and spacing ignored);
//! - `lenient`: the first unused exchange of the session with the same verb and argument.
//!
//! A command that does not match gets the mismatch reply (default `451`) and a
//! [`Event::ReplayMismatch`] naming the position, what the cassette holds there and what came.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::escape::escape;
use crate::smtp::etrn::{Greeted, read_etrn};
use crate::smtp::{CloseReason, CommandLine, Conversation, Event, Output};

use super::format::{Cassette, CassetteSession, Exchange, Request};

pub use crate::smarthost::script::MatchMode;

/// How a replay answers.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub mode: MatchMode,
    /// The reply to a command the cassette does not have, CRLF included.
    pub mismatch_reply: Vec<u8>,
    /// At a miss, stop and hand the session over ([`ReplaySession::take_miss`]) instead of
    /// replying.
    pub record_on_miss: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            mode: MatchMode::Verb,
            mismatch_reply:
                b"451 4.3.0 etrn-harness replay: this command is not in the cassette\r\n".to_vec(),
            record_on_miss: false,
        }
    }
}

/// One connection replaying one recorded session.
pub struct ReplaySession {
    cassette: Arc<Cassette>,
    session: usize,
    options: ReplayOptions,
    used: Vec<bool>,
    next: usize,
    buffer: Vec<u8>,
    /// Message data lines being collected after a recorded 354.
    data: Option<Vec<Vec<u8>>>,
    out: VecDeque<Output>,
    closed: bool,
    /// Every client line so far, for a handover at a miss.
    history: Vec<Vec<u8>>,
    /// Set at a miss under `record_on_miss`: the history up to and including the missed line.
    miss: Option<Vec<Vec<u8>>>,
    /// What the replayed replies established, so ETRNs are recorded with the same flags as the
    /// scripted server gives them.
    greeted: Greeted,
    in_transaction: bool,
}

/// The verb and normalised argument of a command line.
fn key(line: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(line);
    let mut words = text.split_whitespace();
    let verb = words.next().unwrap_or("").to_ascii_uppercase();
    let argument = words
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join(" ");
    (verb, argument)
}

/// Whether a client line matches a recorded command under `mode`. Redacted credentials match any
/// line; a redacted AUTH matches the same mechanism.
fn matches(recorded: &[u8], line: &[u8], mode: MatchMode) -> bool {
    if recorded == b"[redacted]\r\n" {
        return true;
    }
    let (rv, ra) = key(recorded);
    let (lv, la) = key(line);
    if rv == "AUTH" && ra.ends_with("[redacted]") {
        let mechanism = ra.split(' ').next().unwrap_or("");
        return lv == "AUTH" && la.split(' ').next() == Some(mechanism);
    }
    match mode {
        MatchMode::Strict => recorded == line,
        MatchMode::Verb | MatchMode::Lenient => rv == lv && ra == la,
    }
}

impl ReplaySession {
    /// Replays recorded session `index` (the last one when `index` is past the end).
    pub fn new(cassette: Arc<Cassette>, index: usize, options: ReplayOptions) -> Self {
        let session = index.min(cassette.sessions.len().saturating_sub(1));
        let count = cassette
            .sessions
            .get(session)
            .map_or(0, |s| s.exchanges.len());
        let mut r = ReplaySession {
            cassette,
            session,
            options,
            used: vec![false; count],
            next: 0,
            buffer: Vec::new(),
            data: None,
            out: VecDeque::new(),
            closed: false,
            history: Vec::new(),
            miss: None,
            greeted: Greeted::No,
            in_transaction: false,
        };
        match r.recorded().and_then(|s| s.exchanges.first()).cloned() {
            Some(e) if e.request == Request::Greeting => r.answer(0, &e),
            Some(_) => {}
            None => {
                r.send(b"421 4.3.0 etrn-harness replay: the cassette holds no session\r\n");
                r.close(CloseReason::Scripted);
            }
        }
        r
    }

    fn recorded(&self) -> Option<&CassetteSession> {
        self.cassette.sessions.get(self.session)
    }

    fn send(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let lines: Vec<String> = text
            .lines()
            .map(|l| l.get(4..).unwrap_or("").to_owned())
            .collect();
        let code = text.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        self.out
            .push_back(Output::Event(Event::Reply { code, lines }));
        self.out.push_back(Output::Send {
            bytes: bytes.to_vec(),
            delay: None,
        });
    }

    fn close(&mut self, reason: CloseReason) {
        if !self.closed {
            self.closed = true;
            self.out.push_back(Output::Close(reason));
        }
    }

    /// Sends exchange `index`'s recorded reply and follows its consequences.
    fn answer(&mut self, index: usize, e: &Exchange) {
        if let Some(u) = self.used.get_mut(index) {
            *u = true;
        }
        self.next = index + 1;
        if e.reply.is_empty() {
            // The upstream closed without replying.
            self.close(CloseReason::Scripted);
            return;
        }
        self.send(&e.reply_bytes());
        match e.reply_code() {
            Some(354) => self.data = Some(Vec::new()),
            Some(421) => self.close(CloseReason::Scripted),
            Some(221) => self.close(CloseReason::Quit),
            _ => {}
        }
    }

    /// Finds the exchange for a request under the match mode.
    fn find(&self, fits: impl Fn(&Request) -> bool) -> Option<usize> {
        let exchanges = &self.recorded()?.exchanges;
        match self.options.mode {
            MatchMode::Strict | MatchMode::Verb => exchanges
                .get(self.next)
                .filter(|e| fits(&e.request))
                .map(|_| self.next),
            MatchMode::Lenient => exchanges
                .iter()
                .enumerate()
                .find(|(i, e)| !self.used[*i] && fits(&e.request))
                .map(|(i, _)| i),
        }
    }

    /// After a miss under `record_on_miss`: the client's lines so far (the missed one last) and any
    /// bytes it sent after them. The session answers nothing more.
    pub fn take_miss(&mut self) -> Option<Vec<Vec<u8>>> {
        let mut history = self.miss.take()?;
        if !self.buffer.is_empty() {
            let rest = std::mem::take(&mut self.buffer);
            if let Some(last) = history.last_mut() {
                last.extend_from_slice(&rest);
            }
        }
        Some(history)
    }

    fn mismatch(&mut self, actual: &[u8]) {
        if self.options.record_on_miss {
            self.miss = Some(self.history.clone());
            self.closed = true;
            return;
        }
        let expected = match self.recorded().and_then(|s| s.exchanges.get(self.next)) {
            Some(Exchange {
                request: Request::Command(c),
                ..
            }) => escape(c),
            Some(Exchange {
                request: Request::Data(d),
                ..
            }) => format!("{} line(s) of message data", d.len()),
            Some(_) => "a reply without a command".into(),
            None => "the end of the recorded session".into(),
        };
        self.out.push_back(Output::Event(Event::ReplayMismatch {
            position: self.next + 1,
            expected,
            actual: escape(actual),
        }));
        let reply = self.options.mismatch_reply.clone();
        self.send(&reply);
        if reply.starts_with(b"421") {
            self.close(CloseReason::Scripted);
        }
    }

    fn line(&mut self, line: &[u8]) {
        self.history.push(line.to_vec());
        if let Some(data) = &mut self.data {
            data.push(line.to_vec());
            if line != b".\r\n" {
                return;
            }
            let lines = self.data.take().unwrap_or_default();
            self.in_transaction = false;
            let strict = self.options.mode == MatchMode::Strict;
            let found = self.find(|r| matches!(r, Request::Data(d) if !strict || *d == lines));
            match found.and_then(|i| Some((i, self.recorded()?.exchanges.get(i)?.clone()))) {
                Some((i, e)) => self.answer(i, &e),
                None => self.mismatch(b"<message data>"),
            }
            return;
        }
        let (verb, _) = key(line);
        self.out
            .push_back(Output::Event(Event::Command(CommandLine {
                raw: line.to_vec(),
                verb: verb.clone(),
                bare_lf: !line.ends_with(b"\r\n"),
                redacted: false,
            })));
        let etrn = (verb == "ETRN").then(|| read_etrn(line, self.greeted, self.in_transaction));
        let mode = self.options.mode;
        let found = self.find(|r| matches!(r, Request::Command(c) if matches(c, line, mode)));
        let exchange = found.and_then(|i| Some((i, self.recorded()?.exchanges.get(i)?.clone())));
        let code = match &exchange {
            Some((_, e)) => e.reply_code(),
            None => std::str::from_utf8(self.options.mismatch_reply.get(..3).unwrap_or(b""))
                .ok()
                .and_then(|c| c.parse().ok()),
        };
        if let Some(read) = etrn {
            self.out
                .push_back(Output::Event(Event::Etrn(Box::new(read.record(code)))));
        }
        match exchange {
            Some((i, e)) => {
                self.follow(&verb, &e);
                self.answer(i, &e);
            }
            None => self.mismatch(line),
        }
    }

    /// Tracks greeting and transaction state from a replayed exchange.
    fn follow(&mut self, verb: &str, e: &Exchange) {
        let positive = e.reply_code().is_some_and(|c| (200..300).contains(&c));
        match verb {
            "EHLO" if positive => {
                let etrn = e.reply.iter().skip(1).any(|l| {
                    l.get(4..)
                        .and_then(|k| std::str::from_utf8(k).ok())
                        .and_then(|k| k.split_whitespace().next())
                        .is_some_and(|w| w.eq_ignore_ascii_case("ETRN"))
                });
                self.greeted = if etrn {
                    Greeted::EtrnAdvertised
                } else {
                    Greeted::EtrnNotAdvertised
                };
                self.in_transaction = false;
            }
            "HELO" if positive => {
                self.greeted = Greeted::Helo;
                self.in_transaction = false;
            }
            "MAIL" if positive => self.in_transaction = true,
            "RSET" => self.in_transaction = false,
            _ => {}
        }
    }
}

impl Conversation for ReplaySession {
    fn receive(&mut self, bytes: &[u8]) {
        if self.closed {
            return;
        }
        self.buffer.extend_from_slice(bytes);
        while let Some(pos) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=pos).collect();
            self.line(&line);
            if self.closed {
                if self.miss.is_none() {
                    self.buffer.clear();
                }
                return;
            }
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn tls_established(&mut self) {}

    fn idle_timeout(&mut self) {
        if !self.closed {
            self.send(b"421 4.4.2 etrn-harness replay: timeout exceeded\r\n");
            self.close(CloseReason::IdleTimeout);
        }
    }

    fn peer_closed(&mut self) {
        self.close(CloseReason::PeerClosed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cassette::format::{Direction, MAGIC, line, session_header};

    fn cassette() -> Arc<Cassette> {
        let mut t = format!("{MAGIC}\n{}", session_header(1, &[]));
        for (d, l) in [
            (Direction::Server, &b"220 mx.test ESMTP Postfix\r\n"[..]),
            (Direction::Client, b"EHLO c.example\r\n"),
            (Direction::Server, b"250-mx.test\r\n"),
            (Direction::Server, b"250 ETRN\r\n"),
            (Direction::Client, b"ETRN a.example\r\n"),
            (Direction::Server, b"250 Queuing started\r\n"),
            (Direction::Client, b"ETRN b.example\r\n"),
            (
                Direction::Server,
                b"459 <b.example>: service unavailable\r\n",
            ),
            (Direction::Client, b"QUIT\r\n"),
            (Direction::Server, b"221 2.0.0 Bye\r\n"),
        ] {
            t.push_str(&line(1, d, l));
        }
        Arc::new(Cassette::parse(&t).unwrap())
    }

    fn run(mode: MatchMode, input: &[u8]) -> (String, Vec<Event>) {
        let mut s = ReplaySession::new(
            cassette(),
            0,
            ReplayOptions {
                mode,
                ..ReplayOptions::default()
            },
        );
        s.receive(input);
        let mut sent = String::new();
        let mut events = Vec::new();
        while let Some(o) = s.poll_output() {
            match o {
                Output::Send { bytes, .. } => sent.push_str(&String::from_utf8_lossy(&bytes)),
                Output::Event(e) => events.push(e),
                _ => {}
            }
        }
        (sent, events)
    }

    #[test]
    fn replays_recorded_replies_byte_for_byte() {
        let (sent, _) = run(
            MatchMode::Strict,
            b"EHLO c.example\r\nETRN a.example\r\nETRN b.example\r\nQUIT\r\n",
        );
        assert_eq!(
            sent,
            "220 mx.test ESMTP Postfix\r\n250-mx.test\r\n250 ETRN\r\n250 Queuing started\r\n459 <b.example>: service unavailable\r\n221 2.0.0 Bye\r\n"
        );
    }

    #[test]
    fn strict_wants_the_same_bytes_verb_forgives_case() {
        let (sent, events) = run(MatchMode::Strict, b"ehlo C.example\r\n");
        assert!(
            sent.ends_with(
                "451 4.3.0 etrn-harness replay: this command is not in the cassette\r\n"
            )
        );
        assert!(events.contains(&Event::ReplayMismatch {
            position: 2,
            expected: "EHLO c.example\\r\\n".into(),
            actual: "ehlo C.example\\r\\n".into(),
        }));
        let (sent, _) = run(MatchMode::Verb, b"ehlo C.example\r\n");
        assert!(sent.ends_with("250 ETRN\r\n"));
    }

    #[test]
    fn lenient_takes_exchanges_out_of_order() {
        let (sent, _) = run(
            MatchMode::Lenient,
            b"EHLO c.example\r\nETRN b.example\r\nETRN a.example\r\n",
        );
        assert!(
            sent.ends_with("459 <b.example>: service unavailable\r\n250 Queuing started\r\n"),
            "{sent}"
        );
        let (sent, _) = run(MatchMode::Verb, b"EHLO c.example\r\nETRN b.example\r\n");
        assert!(
            sent.ends_with(
                "451 4.3.0 etrn-harness replay: this command is not in the cassette\r\n"
            )
        );
    }
}
