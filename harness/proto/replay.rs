//! Replay mode: a conversation that answers from a cassette, byte for byte.
//!
//! Connection *n* of the server replays recorded session *n* (the last one once they run out).
//! Each command is matched to a recorded exchange, and the recorded reply goes out exactly as it
//! was received from the real upstream; pipelined commands are answered in order, as the
//! upstream answered them.
//!
//! - `strict`: the next exchange, and the same command line, byte for byte;
//! - `verb`: the next exchange, with the same verb and argument (case and spacing ignored);
//! - `lenient`: the first unused exchange of the session with the same verb and argument.
//!
//! In `verb` and `lenient` the arguments of the verbs in [`ReplayOptions::ignore_args`] are not
//! compared: by default EHLO, HELO and LHLO, whose argument is the client's own host name, so a
//! cassette recorded on one machine replays on another.
//!
//! A command that does not match gets the mismatch reply (default `451`) and an
//! [`Event::ReplayMismatch`] naming the position, what the cassette holds there and what came.
//! The replay then finds its place again: a later command that matches a later exchange is
//! answered from there (the exchanges skipped are a mismatch too), so one extra or missing
//! command costs one mismatch, not every command after it. When the session ends with
//! exchanges its client never reached, an [`Event::ReplayUnplayed`] says how many.

use std::collections::{BTreeSet, VecDeque};
use std::hash::{DefaultHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::escape::escape;
use crate::proto::etrn::read_etrn;
use crate::proto::session::{DEFAULT_IDLE_TIMEOUT, deadline_after};
use crate::proto::{CloseReason, CommandLine, Conversation, Event, Output};
use crate::wire::observer::{
    Authentication, Classified, DataEnd, ObservedCommand, Prompt, Replied, ServerSideObserver,
};
use crate::wire::{Command, LineFramer, ReplyLine, Verb, redact};

use super::cassette::{Cassette, CassetteSession, Exchange, Request};

pub use crate::proto::script::MatchMode;

/// The longest command line a replay reads, line end included; a longer one is answered with
/// 500 and discarded, as the scripted session does.
pub const MAX_COMMAND_LINE: usize = 4096;

/// How many bytes of client lines a record-on-miss replay keeps to hand over at a miss; past it
/// a miss is answered with the mismatch reply instead.
const MAX_HISTORY: usize = 1024 * 1024;

/// How a replay answers.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub mode: MatchMode,
    /// The reply to a command the cassette does not have, CRLF included.
    pub mismatch_reply: Vec<u8>,
    /// At a miss, stop and hand the session over ([`ReplaySession::take_miss`]) instead of
    /// replying.
    pub record_on_miss: bool,
    /// Verbs whose arguments `verb` and `lenient` do not compare.
    pub ignore_args: BTreeSet<Verb>,
    /// A command line must be complete this long after the last one ended, else 421 and close,
    /// as the scripted session does.
    pub idle_timeout: Duration,
}

/// The verbs whose arguments are ignored unless told otherwise: the client's host name.
pub const DEFAULT_IGNORED_ARGS: [Verb; 3] = [Verb::Ehlo, Verb::Helo, Verb::Lhlo];

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            mode: MatchMode::Verb,
            mismatch_reply:
                b"451 4.3.0 etrn-harness replay: this command is not in the cassette\r\n".to_vec(),
            record_on_miss: false,
            ignore_args: DEFAULT_IGNORED_ARGS.into_iter().collect(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Message data being received: compared by a running hash, so a large message costs no memory.
#[derive(Debug, Default)]
struct IncomingData {
    /// The bytes so far, hashed as one stream (how they were cut into lines does not matter).
    hash: DefaultHasher,
}

impl IncomingData {
    fn add(&mut self, bytes: &[u8]) {
        self.hash.write(bytes);
    }
}

/// The hash [`IncomingData`] computes, over recorded data lines.
fn data_hash(lines: &[Vec<u8>]) -> u64 {
    let mut h = DefaultHasher::new();
    for l in lines {
        h.write(l);
    }
    h.finish()
}

/// One connection replaying one recorded session.
pub struct ReplaySession {
    cassette: Arc<Cassette>,
    session: usize,
    options: ReplayOptions,
    used: Vec<bool>,
    next: usize,
    lines: LineFramer,
    /// How the client's bytes are read and what the replayed replies established (greeting,
    /// transaction, data, AUTH, STARTTLS): the state the scripted session shares.
    observer: ServerSideObserver,
    /// Message data being received after a recorded 354.
    data: IncomingData,
    out: VecDeque<Output>,
    /// The replies' bytes, for [`Conversation::poll_transmit`].
    transmit: Vec<u8>,
    closed: bool,
    /// Every client line so far, for a handover at a miss; `None` once past [`MAX_HISTORY`].
    history: Option<Vec<Vec<u8>>>,
    history_bytes: usize,
    /// Set at a miss under `record_on_miss`: the history up to and including the missed line.
    miss: Option<Vec<Vec<u8>>>,
    /// The position of the last mismatch reported, so a resynchronisation right after it is not
    /// counted twice.
    last_mismatch: Option<usize>,
    /// When the client has been idle too long: moved on by every line end it sends.
    idle_at: Instant,
}

impl ReplaySession {
    /// Replays recorded session `index` (the last one when `index` is past the end), for a
    /// connection accepted at `now`.
    pub fn new(
        cassette: Arc<Cassette>,
        index: usize,
        options: ReplayOptions,
        now: Instant,
    ) -> Self {
        let session = index.min(cassette.sessions.len().saturating_sub(1));
        let count = cassette
            .sessions
            .get(session)
            .map_or(0, |s| s.exchanges.len());
        let history = options.record_on_miss.then(Vec::new);
        let idle_at = deadline_after(now, options.idle_timeout);
        let mut r = ReplaySession {
            cassette,
            session,
            options,
            used: vec![false; count],
            next: 0,
            lines: LineFramer::new(),
            // The data ends where the recorded upstream, a line reader, ended it.
            observer: ServerSideObserver::new(
                MAX_COMMAND_LINE,
                DataEnd::DotLine,
                Authentication::Replayed,
            ),
            data: IncomingData::default(),
            out: VecDeque::new(),
            transmit: Vec::new(),
            closed: false,
            history,
            history_bytes: 0,
            miss: None,
            last_mismatch: None,
            idle_at,
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

    fn exchange(&self, index: usize) -> Option<Exchange> {
        self.recorded()?.exchanges.get(index).cloned()
    }

    fn send(&mut self, bytes: &[u8]) {
        let mut code = 0;
        let mut lines = Vec::new();
        for l in bytes.split_inclusive(|b| *b == b'\n') {
            if let Some(r) = ReplyLine::parse(l) {
                if lines.is_empty() {
                    code = r.code;
                }
                lines.push(String::from_utf8_lossy(r.text).into_owned());
            }
        }
        self.out
            .push_back(Output::Event(Event::Reply { code, lines }));
        self.transmit.extend_from_slice(bytes);
    }

    fn close(&mut self, reason: CloseReason) {
        if self.closed {
            return;
        }
        self.closed = true;
        // Exchanges with a request the client never reached (the greeting has none).
        let unplayed: Vec<usize> = self
            .recorded()
            .map(|s| {
                s.exchanges
                    .iter()
                    .enumerate()
                    .filter(|(i, e)| !self.used[*i] && e.request != Request::Greeting)
                    .map(|(i, _)| i)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(first) = unplayed.first() {
            self.out.push_back(Output::Event(Event::ReplayUnplayed {
                exchanges: unplayed.len(),
                first: first + 1,
            }));
        }
        self.out.push_back(Output::Close(reason));
    }

    /// Answers exchange `index`, then every reply the upstream sent unprompted right after it
    /// (a 421 at its timeout, a second banner), in the order they came.
    fn answer(&mut self, index: usize, e: &Exchange) {
        self.answer_one(index, e);
        while !self.closed
            && self.used.get(self.next) == Some(&false)
            && let Some(following) = self.exchange(self.next)
            && following.request == Request::Greeting
        {
            self.answer_one(self.next, &following);
        }
    }

    /// Sends exchange `index`'s recorded reply and follows its consequences.
    fn answer_one(&mut self, index: usize, e: &Exchange) {
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
        if !e.reply_is_complete() {
            // The upstream closed in the middle of its reply: so does the replay.
            self.close(CloseReason::Scripted);
            return;
        }
        match e.reply_code() {
            Some(421) => self.close(CloseReason::Scripted),
            Some(221) => self.close(CloseReason::Quit),
            _ => {}
        }
    }

    /// Finds the exchange for a request: the expected one (`Ok`), a later one after a divergence
    /// (`Err(Some)`, strict and verb only), or none (`Err(None)`).
    fn find(&self, fits: impl Fn(&Request) -> bool) -> Result<usize, Option<usize>> {
        let Some(session) = self.recorded() else {
            return Err(None);
        };
        let exchanges = &session.exchanges;
        let unused = |i: &usize| !self.used[*i];
        match self.options.mode {
            MatchMode::Strict | MatchMode::Verb => {
                if exchanges.get(self.next).is_some_and(|e| fits(&e.request)) {
                    return Ok(self.next);
                }
                Err((self.next + 1..exchanges.len())
                    .filter(unused)
                    .find(|i| fits(&exchanges[*i].request)))
            }
            MatchMode::Lenient => (0..exchanges.len())
                .filter(unused)
                .find(|i| fits(&exchanges[*i].request))
                .ok_or(None),
        }
    }

    /// Whether a client command matches a recorded command line under the options. Redacted
    /// credentials match any line; a redacted AUTH matches the same mechanism.
    fn matches(&self, recorded: &[u8], command: &Command<'_>) -> bool {
        if redact::is_continuation(recorded) {
            return true;
        }
        if let Some(mechanism) = redact::redacted_auth_mechanism(recorded) {
            return *command.verb() == Verb::Auth
                && command
                    .arguments()
                    .next()
                    .is_some_and(|m| m.eq_ignore_ascii_case(mechanism.as_bytes()));
        }
        match self.options.mode {
            MatchMode::Strict => recorded == command.line(),
            MatchMode::Verb | MatchMode::Lenient => {
                let recorded = Command::parse(recorded);
                command.verb() == recorded.verb()
                    && (self.options.ignore_args.contains(command.verb())
                        || recorded.normalised_argument() == command.normalised_argument())
            }
        }
    }

    /// After a miss under `record_on_miss`: the client's lines so far (the missed one last) and any
    /// bytes it sent after them. The session answers nothing more.
    pub fn take_miss(&mut self) -> Option<Vec<Vec<u8>>> {
        let mut history = self.miss.take()?;
        let rest = self.lines.take_pending();
        if !rest.is_empty()
            && let Some(last) = history.last_mut()
        {
            last.extend_from_slice(&rest);
        }
        Some(history)
    }

    fn expected_here(&self) -> String {
        match self.recorded().and_then(|s| s.exchanges.get(self.next)) {
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
        }
    }

    fn report_mismatch(&mut self, actual: &[u8]) {
        self.last_mismatch = Some(self.next);
        let expected = self.expected_here();
        self.out.push_back(Output::Event(Event::ReplayMismatch {
            position: self.next + 1,
            expected,
            actual: escape(actual),
        }));
    }

    /// No exchange answers `actual`.
    fn mismatch(&mut self, actual: &[u8]) {
        if self.options.record_on_miss
            && let Some(history) = &self.history
        {
            self.miss = Some(history.clone());
            self.closed = true;
            return;
        }
        self.report_mismatch(actual);
        let reply = self.options.mismatch_reply.clone();
        self.send(&reply);
        if reply.starts_with(b"421") {
            self.close(CloseReason::Scripted);
        }
    }

    /// A later exchange answers `actual`: the ones before it were skipped.
    fn resynchronise(&mut self, actual: &[u8], index: usize, e: &Exchange) {
        if self.last_mismatch != Some(self.next) {
            self.report_mismatch(actual);
        }
        self.answer(index, e);
    }

    fn remember(&mut self, line: &[u8]) {
        if let Some(history) = &mut self.history {
            self.history_bytes += line.len();
            if self.history_bytes > MAX_HISTORY {
                self.history = None;
            } else {
                history.push(line.to_vec());
            }
        }
    }

    /// The line that ends message data: the data is matched by its hash.
    fn end_of_data(&mut self, line: &[u8]) {
        self.remember(line);
        self.data.add(line);
        let received = std::mem::take(&mut self.data).hash.finish();
        let strict = self.options.mode == MatchMode::Strict;
        let found =
            self.find(|r| matches!(r, Request::Data(d) if !strict || data_hash(d) == received));
        match found {
            Ok(i) => {
                if let Some(e) = self.exchange(i) {
                    self.answer(i, &e);
                }
            }
            Err(Some(i)) => {
                if let Some(e) = self.exchange(i) {
                    self.resynchronise(b"<message data>", i, &e);
                }
            }
            Err(None) => self.mismatch(b"<message data>"),
        }
    }

    fn client_line(&mut self, line: Classified<'_>) {
        match line {
            Classified::Command(observed) => {
                self.remember(observed.command.line());
                self.command(observed);
            }
            Classified::AuthResponse(line) => {
                self.remember(line);
                self.command(ObservedCommand::auth_response(line));
            }
            Classified::Data { line, .. } => {
                self.remember(line);
                self.data.add(line);
            }
            Classified::EndOfData(line) => self.end_of_data(line),
            Classified::DataPiece(piece) => {
                self.data.add(piece);
                self.history = None;
            }
            // Counted by the observer, answered once the line ends.
            Classified::OverlongPiece { .. } => {}
            Classified::TooLong { octets, last, .. } => {
                self.remember(last);
                self.out
                    .push_back(Output::Event(Event::LineTooLong { octets }));
                self.send(b"500 5.5.6 Line too long\r\n");
            }
            Classified::DiscardedAfterStartTls { octets } => {
                // Plaintext pipelined behind STARTTLS is never acted on (CVE-2011-0411).
                self.out
                    .push_back(Output::Event(Event::DiscardedAfterStartTls { octets }));
            }
        }
    }

    fn command(&mut self, observed: ObservedCommand<'_>) {
        // The one form a line is shown in: its Command event, a mismatch line, the logs.
        self.out
            .push_back(Output::Event(Event::Command(CommandLine::from(&observed))));
        let recorded_form = observed.recorded.into_owned();
        let command = observed.command;
        let verb = command.verb();
        let prompt = if observed.auth_response {
            Prompt::AuthResponse
        } else {
            Prompt::Command(verb)
        };
        let etrn = (prompt == Prompt::Command(&Verb::Etrn)).then(|| {
            read_etrn(
                &command,
                self.observer.greeted(),
                self.observer.in_transaction(),
            )
        });
        let found = self.find(|r| matches!(r, Request::Command(c) if self.matches(c, &command)));
        let index = match found {
            Ok(i) | Err(Some(i)) => Some(i),
            Err(None) => None,
        };
        let exchange = index.and_then(|i| Some((i, self.exchange(i)?)));
        let code = match &exchange {
            Some((_, e)) => e.reply_code(),
            None => crate::wire::reply_line::code_of(&self.options.mismatch_reply),
        };
        if let Some(read) = etrn {
            self.out
                .push_back(Output::Event(Event::Etrn(Box::new(read.record(code)))));
        }
        match (found, exchange) {
            (Ok(_), Some((i, e))) => {
                let replied = self.observer.replied(prompt, &e.reply);
                self.answer(i, &e);
                if replied == Replied::TlsStarts {
                    self.maybe_start_tls();
                }
            }
            (Err(Some(_)), Some((i, e))) => {
                self.observer.replied(prompt, &e.reply);
                self.resynchronise(&recorded_form, i, &e);
            }
            _ => self.mismatch(&recorded_form),
        }
    }

    /// STARTTLS answered 220 in a session whose recorder terminated TLS: the client gets a TLS
    /// handshake (with the replay's own certificate) and the plaintext that followed is replayed.
    /// A session recorded in passthrough has nothing after it: the replay reads on.
    fn maybe_start_tls(&mut self) {
        let terminated = self
            .recorded()
            .is_some_and(|s| s.tls == super::cassette::TlsMark::Terminated);
        if terminated && !self.closed {
            self.observer.start_tls();
            self.out.push_back(Output::Event(Event::StartTls));
            self.out.push_back(Output::StartTls);
        }
    }
}

impl Conversation for ReplaySession {
    fn receive(&mut self, bytes: &[u8], now: Instant) {
        if self.closed {
            return;
        }
        if bytes.contains(&b'\n') {
            self.idle_at = deadline_after(now, self.options.idle_timeout);
        }
        if self.observer.tls_pending() {
            // Plaintext pipelined behind STARTTLS is never acted on (CVE-2011-0411).
            self.out
                .push_back(Output::Event(Event::DiscardedAfterStartTls {
                    octets: bytes.len(),
                }));
            return;
        }
        let mut lines = std::mem::take(&mut self.lines);
        lines.push(bytes);
        while let Some(line) = self.observer.next_line(&mut lines) {
            self.client_line(line);
            if self.closed {
                if self.miss.is_none() {
                    lines.clear();
                }
                break;
            }
        }
        self.lines = lines;
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        super::conversation::hand_over(&mut self.transmit, out);
    }

    fn tls_established(&mut self, now: Instant) {
        self.observer.tls_established();
        self.idle_at = deadline_after(now, self.options.idle_timeout);
    }

    /// The idle deadline; none once closed, or while the driver does a TLS handshake.
    fn poll_timeout(&self) -> Option<Instant> {
        (!self.closed && !self.observer.tls_pending()).then_some(self.idle_at)
    }

    fn handle_timeout(&mut self, now: Instant) {
        if !self.closed && !self.observer.tls_pending() && self.idle_at <= now {
            self.send(b"421 4.4.2 etrn-harness replay: timeout exceeded\r\n");
            self.close(CloseReason::IdleTimeout);
        }
    }

    fn peer_closed(&mut self) {
        self.close(CloseReason::PeerClosed);
    }
    fn recorded_forms(&self, lines: &[&[u8]]) -> Vec<Vec<u8>> {
        self.observer.recorded_forms(lines)
    }
    fn recorded_form<'a>(&self, line: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        self.observer.recorded_form(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::cassette::{Direction, one_session};

    /// The bytes `s` has for its client, taken.
    fn transmitted(s: &mut ReplaySession) -> String {
        let mut bytes = Vec::new();
        s.poll_transmit(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn cassette() -> Arc<Cassette> {
        let t = one_session(
            1,
            &[
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
            ],
            None,
        );
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
            Instant::now(),
        );
        s.receive(input, Instant::now());
        let mut sent = String::new();
        let mut events = Vec::new();
        while let Some(o) = s.poll_output() {
            if let Output::Event(e) = o {
                events.push(e);
            }
        }
        sent.push_str(&transmitted(&mut s));
        (sent, events)
    }

    #[test]
    fn a_reply_the_upstream_sent_unprompted_follows_the_one_before_it() {
        let t = one_session(
            1,
            &[
                (Direction::Server, &b"220 mx.test ESMTP\r\n"[..]),
                (Direction::Client, b"EHLO c.example\r\n"),
                (Direction::Server, b"250 mx.test\r\n"),
                (Direction::Server, b"421 4.4.2 mx.test timeout\r\n"),
            ],
            Some("upstream-closed"),
        );
        let mut s = ReplaySession::new(
            Arc::new(Cassette::parse(&t).unwrap()),
            0,
            ReplayOptions::default(),
            Instant::now(),
        );
        s.receive(b"EHLO c.example\r\n", Instant::now());
        let mut sent = String::new();
        let mut closed = false;
        while let Some(o) = s.poll_output() {
            if let Output::Close(_) = o {
                closed = true;
            }
        }
        sent.push_str(&transmitted(&mut s));
        assert_eq!(
            sent,
            "220 mx.test ESMTP\r\n250 mx.test\r\n421 4.4.2 mx.test timeout\r\n"
        );
        assert!(closed);
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
        // `verb` wants the next exchange: a skipped one is a mismatch, then the replay goes on
        // from the command that matched.
        let (sent, events) = run(MatchMode::Verb, b"EHLO c.example\r\nETRN b.example\r\n");
        assert!(
            sent.ends_with("459 <b.example>: service unavailable\r\n"),
            "{sent}"
        );
        assert!(events.contains(&Event::ReplayMismatch {
            position: 3,
            expected: "ETRN a.example\\r\\n".into(),
            actual: "ETRN b.example\\r\\n".into(),
        }));
    }

    fn mismatches(events: &[Event]) -> usize {
        events
            .iter()
            .filter(|e| matches!(e, Event::ReplayMismatch { .. }))
            .count()
    }

    #[test]
    fn one_extra_or_changed_command_costs_one_mismatch_not_every_later_one() {
        let (sent, events) = run(
            MatchMode::Verb,
            b"EHLO c.example\r\nNOOP\r\nETRN a.example\r\nETRN b.example\r\nQUIT\r\n",
        );
        assert_eq!(mismatches(&events), 1, "{events:?}");
        assert!(sent.ends_with("221 2.0.0 Bye\r\n"), "{sent}");
        // A changed argument: one mismatch for it; the next command finds its place again.
        let (sent, events) = run(
            MatchMode::Strict,
            b"EHLO c.example\r\nETRN x.example\r\nETRN b.example\r\nQUIT\r\n",
        );
        assert_eq!(mismatches(&events), 1, "{events:?}");
        assert!(sent.ends_with("221 2.0.0 Bye\r\n"), "{sent}");
    }

    #[test]
    fn the_ehlo_argument_is_ignored_except_in_strict_or_when_asked() {
        let (sent, events) = run(MatchMode::Verb, b"EHLO ci-runner-42\r\n");
        assert!(sent.ends_with("250 ETRN\r\n"), "{sent}");
        assert_eq!(mismatches(&events), 0);
        let (_, events) = run(MatchMode::Strict, b"EHLO ci-runner-42\r\n");
        assert_eq!(mismatches(&events), 1);
        let mut options = ReplayOptions::default();
        options.ignore_args.remove(&Verb::Ehlo);
        let mut s = ReplaySession::new(cassette(), 0, options, Instant::now());
        s.receive(b"EHLO ci-runner-42\r\n", Instant::now());
        let events: Vec<Event> = std::iter::from_fn(|| s.poll_output())
            .filter_map(|o| match o {
                Output::Event(e) => Some(e),
                _ => None,
            })
            .collect();
        assert_eq!(mismatches(&events), 1);
    }

    #[test]
    fn the_idle_deadline_is_the_replays_own_on_a_virtual_clock() {
        let t0 = Instant::now();
        let secs = |n: u64| t0 + Duration::from_secs(n);
        let options = ReplayOptions {
            idle_timeout: Duration::from_secs(10),
            ..ReplayOptions::default()
        };
        let mut s = ReplaySession::new(cassette(), 0, options, t0);
        let sent = |s: &mut ReplaySession| -> (String, Option<CloseReason>) {
            let mut sent = String::new();
            let mut closed = None;
            while let Some(o) = s.poll_output() {
                match o {
                    Output::Close(reason) => closed = Some(reason),
                    Output::Event(_) | Output::StartTls => {}
                }
            }
            sent.push_str(&transmitted(s));
            (sent, closed)
        };
        sent(&mut s);
        assert_eq!(s.poll_timeout(), Some(secs(10)));
        // A line end at 4 s moves it; half a line at 6 s does not.
        s.receive(b"EHLO c.example\r\n", secs(4));
        s.receive(b"ETRN a.ex", secs(6));
        assert_eq!(s.poll_timeout(), Some(secs(14)));
        sent(&mut s);
        s.handle_timeout(secs(13));
        assert_eq!(
            sent(&mut s),
            (String::new(), None),
            "nothing before the deadline"
        );
        s.handle_timeout(secs(14));
        assert_eq!(
            sent(&mut s),
            (
                "421 4.4.2 etrn-harness replay: timeout exceeded\r\n".into(),
                Some(CloseReason::IdleTimeout)
            )
        );
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn a_replayed_starttls_stops_the_idle_deadline_until_the_handshake_is_done() {
        let t0 = Instant::now();
        let secs = |n: u64| t0 + Duration::from_secs(n);
        let text = "etrn-harness cassette v1
1 session
1 S: 220 mx.test ESMTP
1 C: EHLO c.example
1 S: 250-mx.test
1 S: 250 STARTTLS
1 C: STARTTLS
1 S: 220 2.0.0 Ready to start TLS
1 tls terminate
1 C: EHLO c.example
1 S: 250 mx.test
";
        let options = ReplayOptions {
            idle_timeout: Duration::from_secs(10),
            ..ReplayOptions::default()
        };
        let mut s = ReplaySession::new(Arc::new(Cassette::parse(text).unwrap()), 0, options, t0);
        // The outputs; the bytes sent meanwhile are dropped.
        let drain = |s: &mut ReplaySession| {
            let out = std::iter::from_fn(|| s.poll_output()).collect::<Vec<_>>();
            transmitted(s);
            out
        };
        drain(&mut s);
        s.receive(b"EHLO c.example\r\nSTARTTLS\r\nNOOP\r\n", secs(2));
        let out = drain(&mut s);
        assert!(out.contains(&Output::StartTls), "{out:?}");
        // The observer discards what was pipelined behind STARTTLS, and the handshake is the
        // driver's to time: no idle deadline meanwhile.
        assert!(
            out.contains(&Output::Event(Event::DiscardedAfterStartTls { octets: 6 })),
            "{out:?}"
        );
        assert_eq!(s.poll_timeout(), None);
        s.tls_established(secs(5));
        assert_eq!(s.poll_timeout(), Some(secs(15)));
        s.receive(b"EHLO c.example\r\n", secs(7));
        assert_eq!(transmitted(&mut s), "250 mx.test\r\n");
        assert_eq!(s.poll_timeout(), Some(secs(17)));
    }

    #[test]
    fn a_session_left_early_reports_what_it_never_reached() {
        let mut s = ReplaySession::new(cassette(), 0, ReplayOptions::default(), Instant::now());
        s.receive(b"EHLO c.example\r\n", Instant::now());
        s.peer_closed();
        let events: Vec<Event> = std::iter::from_fn(|| s.poll_output())
            .filter_map(|o| match o {
                Output::Event(e) => Some(e),
                _ => None,
            })
            .collect();
        assert!(
            events.contains(&Event::ReplayUnplayed {
                exchanges: 3,
                first: 3
            }),
            "{events:?}"
        );
    }

    #[test]
    fn a_command_line_past_the_cap_is_refused_and_the_session_goes_on() {
        let mut input = vec![b'x'; MAX_COMMAND_LINE * 4];
        input.extend_from_slice(b"\r\nEHLO c.example\r\n");
        let (sent, events) = run(MatchMode::Verb, &input);
        assert!(
            sent.contains("500 5.5.6 Line too long\r\n") && sent.ends_with("250 ETRN\r\n"),
            "{sent}"
        );
        assert!(events.iter().any(
            |e| matches!(e, Event::LineTooLong { octets } if *octets == MAX_COMMAND_LINE * 4 + 2)
        ));
    }

    #[test]
    fn a_cassette_cut_mid_exchange_replays_exactly_up_to_the_cut_and_has_nothing_after_it() {
        let cassette = Cassette::parse(crate::proto::cassette::DATA_REFUSED_THEN_CUT)
            .expect("it loads up to the cut");
        let options = ReplayOptions {
            mode: MatchMode::Strict,
            ..ReplayOptions::default()
        };
        let mut s = ReplaySession::new(Arc::new(cassette), 0, options, Instant::now());
        let output = |s: &mut ReplaySession| {
            let mut sent = String::new();
            let mut mismatches = 0;
            while let Some(o) = s.poll_output() {
                if let Output::Event(Event::ReplayMismatch { .. }) = o {
                    mismatches += 1;
                }
            }
            sent.push_str(&transmitted(s));
            (sent, mismatches)
        };
        // The DATA answered 250 in the cassette: the EHLO after it is a command, not message data.
        s.receive(b"DATA\r\nEHLO c.example\r\n", Instant::now());
        assert_eq!(
            output(&mut s),
            (
                "220 mx.test ESMTP\r\n250-mx.test\r\n250 ETRN\r\n334 \r\n".to_owned(),
                0
            )
        );
        // The recorder stopped before the upstream answered the AUTH: the cassette has no reply
        // for it, and says so (with record-on-miss the upstream would be asked).
        s.receive(b"AUTH PLAIN\r\n", Instant::now());
        let (sent, mismatches) = output(&mut s);
        assert!(sent.starts_with("451 4.3.0 "), "{sent}");
        assert_eq!(mismatches, 1);
    }

    #[test]
    fn strict_compares_message_data_verb_does_not() {
        let t = one_session(
            1,
            &[
                (Direction::Server, &b"220 mx\r\n"[..]),
                (Direction::Client, b"DATA\r\n"),
                (Direction::Server, b"354 go\r\n"),
                (Direction::Data, b"recorded text\r\n"),
                (Direction::Data, b".\r\n"),
                (Direction::Server, b"250 queued\r\n"),
            ],
            None,
        );
        let recorded = Arc::new(Cassette::parse(&t).unwrap());
        let replay = |mode, data: &[u8]| {
            let options = ReplayOptions {
                mode,
                ..ReplayOptions::default()
            };
            let mut s = ReplaySession::new(Arc::clone(&recorded), 0, options, Instant::now());
            s.receive(b"DATA\r\n", Instant::now());
            // The same bytes cut differently hash the same.
            for piece in data.chunks(3) {
                s.receive(piece, Instant::now());
            }
            std::iter::from_fn(|| s.poll_output())
                .filter(|o| matches!(o, Output::Event(Event::ReplayMismatch { .. })))
                .count()
        };
        assert_eq!(replay(MatchMode::Strict, b"recorded text\r\n.\r\n"), 0);
        assert_eq!(replay(MatchMode::Strict, b"other text\r\n.\r\n"), 1);
        assert_eq!(replay(MatchMode::Verb, b"other text\r\n.\r\n"), 0);
    }
}
