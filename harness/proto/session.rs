//! The sans-IO SMTP server session: bytes in, replies and events out.
//!
//! A [`Session`] owns no socket and no clock. The driver feeds it whatever bytes arrive
//! ([`Session::receive`]), tells it about the world ([`Session::tls_established`],
//! [`Session::peer_closed`]), writes the bytes [`Session::poll_transmit`] gives and carries out
//! what [`Session::poll_output`] returns, in order: start TLS, close. Events report what
//! happened. The replies' bytes go into one buffer the driver takes, as quinn-proto's
//! `poll_transmit` gives datagrams: a pipelined command's reply costs no buffer of its own.
//!
//! Time is an input, in the manner of quinn-proto's `poll_timeout`/`handle_timeout`: the session
//! is told the time it was accepted ([`Accepted::now`](super::Accepted::now)) and the time of every input, and computes
//! every deadline of the conversation itself. [`Session::poll_timeout`] says when it next needs
//! to act, and [`Session::handle_timeout`] is the driver saying that time has come:
//!
//! - the idle deadline ([`SessionLimits::idle_timeout`]): moved on by a receive that ends a line
//!   (so a byte at a time buys no time) and by a finished TLS handshake; past it, 421 and close;
//! - a scripted reply delay: the reply's bytes, and everything after them, are held and released
//!   at their time, in order ([`Session::holds_output`] says so meanwhile; the idle deadline does
//!   not run out while the client waits for the server);
//! - a greet pause: the greeting is held back until it ends.
//!
//! So the tokio driver sleeps until `poll_timeout` on the real clock, and the in-memory prediction,
//! the probe and the tests move a virtual one: a five-minute timeout costs them nothing.
//!
//! Framing is ours, not the parser's: smtp-proto parses one complete line, but it has no line-length
//! cap and no DATA handling we can use, so the session's [`ServerSideObserver`] (the one the
//! replay and the recording proxy share) cuts lines with the wire layer's framer
//! ([`crate::wire::framing`]), enforces the limit, and reads DATA line by line until CRLF.CRLF.
//!
//! Each command line is read once by the wire layer ([`crate::wire::Command`]): the session
//! decides on its typed [`Verb`], reads ETRN's argument from it, and has smtp-proto
//! ([`Command::request`]) parse the rest (MAIL's and RCPT's addresses, AUTH's mechanism and the
//! syntax errors it answers).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, Request};

use crate::proto::answer::Answer;
use crate::reply::{Reply, ReplyCode};
use crate::reply_code;
use crate::wire::command::trim_line_end;
use crate::wire::{Command, LineFramer, Verb, ehlo, redact};

use super::behaviour::Behaviour;
use super::conversation::Accepted;
use super::etrn::{Greeted, read_etrn_into};
use super::event::{CloseReason, CommandLine, Event, MessageRecord};
use super::recordable::{EtrnCommandLine, QuotedReply, Recordable};
use super::replies::{LongLine, Placeholders, Sent};
use crate::reply::Placeholder;
use crate::wire::observer::{
    Authentication, Classified, DataEnd, ObservedCommand, ServerSideObserver,
};

/// Limits of one session.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// Longest command line in octets, CRLF included (RFC 5321 §4.5.3.1.4: at least 512);
    /// `None`: the behaviour's (a server profile's `line_limit`).
    pub max_line_octets: Option<usize>,
    /// Largest message accepted at the end of DATA; larger ones get 552.
    pub max_message_octets: usize,
    /// Whether STARTTLS is offered (the driver must be able to do the handshake).
    pub starttls: bool,
    /// A command line must be complete this long after the last one ended (or the session
    /// began, or TLS was established), else 421 and close. A byte at a time buys no time.
    pub idle_timeout: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_line_octets: None,
            max_message_octets: 10 * 1024 * 1024,
            starttls: false,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// The idle timeout unless told otherwise: five minutes, RFC 5321 §4.5.3.2.7's server timeout.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// What the driver must do next, besides writing the bytes [`Session::poll_transmit`] gives
/// (every byte due before a [`Output::StartTls`] or [`Output::Close`] is there by the time that
/// output is polled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Report this event.
    Event(Event),
    /// Once the bytes to transmit have been written: do the TLS handshake now, then call
    /// [`Session::tls_established`].
    StartTls,
    /// Close the connection after writing the bytes to transmit.
    Close(CloseReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    /// The greeting is held back until `greet_at`.
    GreetPause,
    /// Serving commands (how the client's bytes are read, data, AUTH responses or nothing
    /// before a TLS handshake, is the observer's).
    Command,
    /// The greeting refused the session (non-2xx, not 421): only QUIT is served.
    Refused,
    /// The client talked during a greet pause: a null server (see [`super::GreetPause`]).
    NullServer,
    /// Closed: input is ignored.
    Closed,
}

/// What a 334 asked for: the step of the AUTH exchange the next response answers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AuthStep {
    /// AUTH PLAIN waiting for the initial response.
    Plain,
    /// AUTH LOGIN waiting for the user name.
    LoginUser,
    /// AUTH LOGIN waiting for the password.
    LoginPassword { username: String },
}

/// The open mail transaction's content; whether one is open is the observer's.
#[derive(Debug, Clone, Default)]
struct Transaction {
    from: String,
    recipients: Vec<String>,
}

/// One SMTP server session.
pub struct Session {
    behaviour: Arc<dyn Behaviour>,
    limits: SessionLimits,
    /// The command line limit in force: the driver's, else the behaviour's.
    line_limit: usize,
    /// The client's address and the time of the connection, for reply texts: kept as they
    /// came, written out only by a text that asks for them.
    client_ip: std::net::IpAddr,
    accepted_at: std::time::SystemTime,
    /// The EHLO or HELO argument, for reply texts.
    client: String,
    /// When a greet pause ends.
    greet_at: Option<Instant>,
    /// When the client has been idle too long: a command line must be complete by then.
    idle_at: Instant,
    /// The time `idle_at` was counted from: the lines of one read, fed one at a time with one
    /// time, count it once.
    idle_from: Instant,
    /// Outputs held back by scripted delays, each batch released at its time, in order.
    held: VecDeque<Held>,
    /// The session's clock: the latest time an input carried.
    now: Instant,
    /// The first `line_limit` octets of an over-long line, for a server that truncates.
    truncated: Option<Vec<u8>>,
    /// Replies that counted against the behaviour's error limit.
    errors: u32,
    /// Commands that counted against the behaviour's command limit.
    counted_commands: u32,
    mode: Mode,
    /// How the client's bytes are read, greeted, in a transaction: the state the replay shares.
    observer: ServerSideObserver,
    /// While the observer awaits an AUTH response: which step it answers.
    auth_step: Option<AuthStep>,
    tls_active: bool,
    authenticated: bool,
    /// The line being answered is an AUTH response: no reply may echo it (`{command}`).
    answering_a_secret: bool,
    transaction: Transaction,
    /// Octets of the message being received, dot-unstuffed.
    message_octets: usize,
    lines: LineFramer,
    /// Outputs for the driver; a reply quoting the ETRN argument, or an ETRN, as its parts (see
    /// [`Session::poll_recordable`]).
    out: VecDeque<Recordable>,
    /// The replies' bytes, due now (a scripted delay has already passed: they were held until
    /// [`Session::handle_timeout`] said their time had come), for [`Session::poll_transmit`].
    transmit: Vec<u8>,
    /// The allocation of the last plain ETRN argument's parsed text, written into by the next
    /// one's parse (the parse is dropped once its answer is decided): a pipelined ETRN
    /// allocates nothing.
    spare_text: String,
}

impl Session {
    /// A new session for the connection `accepted`; the greeting is the first output, unless
    /// the behaviour holds it back for a greet pause (then [`Session::poll_timeout`] says until
    /// when).
    pub fn new(behaviour: Arc<dyn Behaviour>, limits: SessionLimits, accepted: &Accepted) -> Self {
        let line_limit = limits
            .max_line_octets
            .unwrap_or(behaviour.replies().line_limit);
        let limits_idle = limits.idle_timeout;
        let greet_at = behaviour
            .greet_pause()
            .and_then(|p| accepted.now.checked_add(p.duration()));
        let mut s = Session {
            behaviour,
            limits,
            line_limit,
            client_ip: accepted.peer,
            accepted_at: accepted.wall_clock,
            client: String::new(),
            greet_at,
            idle_at: deadline_after(accepted.now, limits_idle),
            idle_from: accepted.now,
            held: VecDeque::new(),
            now: accepted.now,
            truncated: None,
            errors: 0,
            counted_commands: 0,
            mode: Mode::Command,
            observer: ServerSideObserver::new(
                line_limit,
                DataEnd::CrlfDotCrlf,
                Authentication::Checked,
            ),
            auth_step: None,
            tls_active: false,
            authenticated: false,
            answering_a_secret: false,
            transaction: Transaction::default(),
            message_octets: 0,
            lines: LineFramer::new(),
            out: VecDeque::new(),
            transmit: Vec::new(),
            spare_text: String::new(),
        };
        if s.greet_at.is_some() {
            s.mode = Mode::GreetPause;
        } else {
            s.greet();
        }
        s
    }

    fn greet(&mut self) {
        let greeting = self.filled_from(&self.behaviour.greeting(), None, None);
        let refused = greeting
            .reply
            .as_ref()
            .is_some_and(|r| !r.code().is_positive());
        let closes = greeting.closes();
        self.mode = Mode::Command;
        self.answer(greeting);
        if closes {
            self.close(CloseReason::RefusedAtGreeting);
        } else if refused {
            self.mode = Mode::Refused;
        }
    }

    /// When the session next needs [`Session::handle_timeout`]: the release of a delayed reply,
    /// else the end of a greet pause or the idle deadline, whichever is first. `None` once
    /// closed with nothing held, or while a TLS handshake (the driver's to time) is under way.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(held) = self.held.front() {
            // The client waits for the server: it is not idle meanwhile.
            return Some(held.at);
        }
        if self.observer.tls_pending() {
            return None;
        }
        match self.mode {
            Mode::Closed => None,
            Mode::GreetPause => Some(self.greet_at.map_or(self.idle_at, |g| g.min(self.idle_at))),
            _ => Some(self.idle_at),
        }
    }

    /// Whether outputs are held back for a scripted delay ([`Session::poll_timeout`] says until
    /// when): the client is waiting for the server.
    pub fn holds_output(&self) -> bool {
        !self.held.is_empty()
    }

    /// The time is `now`: delayed replies whose time has come are released, in order; then a
    /// greet pause that has run out ends with the greeting, and a client idle past its deadline
    /// gets 421.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        while let Some(held) = self.held.front_mut()
            && held.at <= self.now
        {
            let released = std::mem::take(&mut held.outputs);
            self.transmit.extend_from_slice(&held.bytes);
            self.held.pop_front();
            self.out.extend(released);
        }
        if !self.held.is_empty() {
            return;
        }
        if self.mode == Mode::GreetPause && self.greet_at.is_some_and(|at| at <= self.now) {
            self.greet();
        }
        if self.idle_at <= self.now {
            self.idle_timeout();
        }
    }

    /// The client talked during the greet pause: refused at once, a null server from now on.
    fn talked_first(&mut self) {
        let Some(pause) = self.behaviour.greet_pause().cloned() else {
            self.greet();
            return;
        };
        self.emit(Output::Event(Event::TalkedBeforeGreeting));
        let refusal = self.filled(Answer::reply(pause.refusal), None, None);
        self.mode = Mode::NullServer;
        self.answer(refusal);
    }

    /// The next thing for the driver to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front().map(Recordable::into_output)
    }

    /// [`Session::poll_output`], with a reply that quotes the ETRN argument, or an ETRN, as its
    /// parts, for a recorder that packs them so (see [`Recordable`]).
    pub fn poll_recordable(&mut self) -> Option<Recordable> {
        self.out.pop_front()
    }

    /// Moves the bytes due to the client onto the end of `out`, in order.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        super::conversation::hand_over(&mut self.transmit, out);
    }

    /// True once the session has asked to close; the driver stops reading.
    pub fn is_closed(&self) -> bool {
        self.mode == Mode::Closed
    }

    /// Bytes from the client, arrived at `now`. Complete lines are processed at once, in order
    /// (pipelining); one that ends a line moves the idle deadline. Replies to lines received
    /// while a delayed reply is held queue behind it.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        self.receive_bytes(bytes, now, false);
    }

    /// [`Session::receive`] of bytes cut at their first line end (no line end before their last
    /// octet), as the smart host's driver hands over what it reads: a line is not searched for
    /// its end a second time. A piece with a line end before its last octet breaks that promise
    /// and is served as one line (debug builds stop there).
    pub fn receive_cut(&mut self, piece: &[u8], now: Instant) {
        debug_assert!(
            piece
                .split_last()
                .is_none_or(|(_, before)| !before.contains(&b'\n')),
            "receive_cut: a line end before the piece's last octet"
        );
        self.receive_bytes(piece, now, true);
    }

    /// [`Session::receive`]; `cut`: no line end comes before the last octet.
    fn receive_bytes(&mut self, bytes: &[u8], now: Instant, cut: bool) {
        self.now = self.now.max(now);
        // A chunk that ends a line (every pipelined command) is seen to at once.
        if (bytes.last() == Some(&b'\n') || (!cut && bytes.contains(&b'\n')))
            && self.idle_from != self.now
        {
            self.restart_idle_deadline();
        }
        match self.mode {
            Mode::Closed => return,
            Mode::GreetPause if !bytes.is_empty() => self.talked_first(),
            Mode::GreetPause => return,
            _ => {}
        }
        if self.observer.tls_pending() {
            self.emit(Output::Event(Event::DiscardedAfterStartTls {
                octets: bytes.len(),
            }));
            return;
        }
        let whole = if !self.lines.pending().is_empty() {
            None
        } else if cut {
            self.observer.cut_line(bytes)
        } else {
            self.observer.whole_line(bytes)
        };
        if let Some(line) = whole {
            // One whole line (each pipelined command, as the smart host's driver hands it over):
            // handled where it is, not copied into the framer and searched again.
            self.client_line(line);
            return;
        }
        // The framer is taken out of `self` meanwhile, so lines are handled as slices of its
        // buffer: a DATA line costs no allocation.
        let mut lines = std::mem::take(&mut self.lines);
        lines.push(bytes);
        while let Some(line) = self.observer.next_line(&mut lines) {
            self.client_line(line);
            if self.mode == Mode::Closed {
                lines.clear();
                break;
            }
        }
        self.lines = lines;
    }

    /// A piece of a line longer than the limit: counted (by the observer), not kept (but for a
    /// server that truncates, the first `line_limit` octets).
    fn overlong_piece(&mut self, piece: &[u8], first: bool) {
        if self.observer.awaits_auth_response() {
            // A credential is never read as a command, nor answered piece by piece.
            return;
        }
        match &self.behaviour.replies().line_too_long {
            LongLine::Truncate if first => {
                self.truncated = Some(piece[..piece.len().min(self.line_limit)].to_vec());
            }
            LongLine::EachPiece(reply) => {
                let answer = self.filled(Answer::reply(reply.clone()), None, None);
                self.answer_and_maybe_close(answer);
            }
            _ => {}
        }
    }

    /// `lines`, not yet received, one after another, as the session would record them (see
    /// [`super::Conversation::recorded_forms`]): an AUTH among them makes the lines after it
    /// secrets as it would in the session.
    pub fn recorded_forms(&self, lines: &[&[u8]]) -> Vec<Vec<u8>> {
        self.observer.recorded_forms(lines)
    }

    /// One line of [`Session::recorded_forms`], borrowed when it is recorded as it came.
    pub fn recorded_form<'a>(&self, line: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        self.observer.recorded_form(line)
    }

    /// The TLS handshake finished at `now`: the session starts over (RFC 3207 §4.2), and so
    /// does the idle deadline.
    pub fn tls_established(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.restart_idle_deadline();
        if self.mode != Mode::Closed && self.observer.tls_pending() {
            // The observer forgot the greeting and the transaction when TLS started.
            self.observer.tls_established();
            self.tls_active = true;
            self.authenticated = false;
        }
    }

    /// The idle deadline counted from now.
    fn restart_idle_deadline(&mut self) {
        self.idle_at = deadline_after(self.now, self.limits.idle_timeout);
        self.idle_from = self.now;
    }

    /// The client was idle too long: 421 and close.
    fn idle_timeout(&mut self) {
        if self.mode == Mode::Closed {
            return;
        }
        let host = self.behaviour.hostname().to_owned();
        self.mode = Mode::Command;
        self.reply_text(
            reply_code!(421),
            &format!("4.4.2 {host} Error: timeout exceeded"),
        );
        self.close(CloseReason::IdleTimeout);
    }

    /// The client closed its side; nothing more will arrive. A last line it never ended is
    /// recorded as it came (through the one redaction), not acted on.
    pub fn peer_closed(&mut self) {
        if self.mode == Mode::Closed {
            return;
        }
        let rest = self.lines.take_pending();
        // Message data is counted, never kept; the tail of a line already too long is no line.
        if let Some(raw) = self.observer.unterminated(&rest) {
            self.emit(Output::Event(Event::Unterminated { raw }));
        }
        self.close(CloseReason::PeerClosed);
    }

    // ----- framing -----

    fn client_line(&mut self, line: Classified<'_>) {
        match line {
            Classified::Command(command) => self.command(command),
            Classified::AuthResponse(line) => {
                let observed = ObservedCommand::auth_response(line);
                self.emit(Output::Event(Event::Command(CommandLine::from(&observed))));
                self.auth_continuation(line);
            }
            Classified::Data { line, starts_line } => {
                let content = if starts_line && line.starts_with(b".") {
                    &line[1..] // dot-unstuffing (RFC 5321 §4.5.2)
                } else {
                    line
                };
                self.message_octets += content.len();
            }
            Classified::DataPiece(piece) => self.message_octets += piece.len(),
            Classified::EndOfData(_) => self.end_of_data(),
            Classified::OverlongPiece { piece, first } => self.overlong_piece(piece, first),
            Classified::TooLong {
                octets,
                last,
                whole,
            } => {
                self.emit(Output::Event(Event::LineTooLong { octets }));
                let truncate = self.behaviour.replies().line_too_long == LongLine::Truncate;
                let head = if whole {
                    truncate.then(|| last[..self.line_limit].to_vec())
                } else {
                    self.truncated.take()
                };
                match head {
                    Some(mut head) => {
                        head.extend_from_slice(b"\r\n");
                        let observed = self.observer.command(&head);
                        self.command(observed);
                    }
                    // The AUTH exchange gets the plain refusal, whatever the server does with
                    // commands.
                    None if self.observer.awaits_auth_response() => {
                        self.reply_text(reply_code!(500), "5.5.6 Line too long")
                    }
                    None => self.line_too_long(),
                }
            }
            Classified::DiscardedAfterStartTls { octets } => {
                // Never act on plaintext pipelined behind STARTTLS (CVE-2011-0411).
                self.emit(Output::Event(Event::DiscardedAfterStartTls { octets }));
            }
        }
    }

    fn end_of_data(&mut self) {
        // The observer closed the transaction and reads commands again.
        let size = std::mem::take(&mut self.message_octets);
        let t = std::mem::take(&mut self.transaction);
        let code = if size > self.limits.max_message_octets {
            552
        } else {
            250
        };
        self.emit(Output::Event(Event::Message(MessageRecord {
            from: t.from,
            recipients: t.recipients,
            size,
            reply: code,
        })));
        if code == 552 {
            self.reply_text(reply_code!(552), "5.3.4 Message size exceeds fixed limit");
        } else {
            self.reply_text(reply_code!(250), "2.0.0 OK: queued");
        }
    }

    fn line_too_long(&mut self) {
        if let LongLine::Reply(reply) | LongLine::EachPiece(reply) =
            &self.behaviour.replies().line_too_long
        {
            let answer = self.filled(Answer::reply(reply.clone()), None, None);
            self.answer_and_maybe_close(answer);
        }
    }

    /// Counts `verb` against the behaviour's command limit; true when it is one too many (the
    /// refusal is sent and the session closed).
    fn over_command_limit(&mut self, verb: &Verb) -> bool {
        let Some(limit) = &self.behaviour.replies().command_limit else {
            return false;
        };
        if limit.reset_by.contains(verb) {
            self.counted_commands = 0;
            return false;
        }
        if !limit.verbs.contains(verb) {
            return false;
        }
        self.counted_commands += 1;
        if self.counted_commands <= limit.max {
            return false;
        }
        let answer = self.filled(Answer::reply(limit.reply.clone()), None, None);
        self.answer(answer);
        self.close(CloseReason::TooManyCommands);
        true
    }

    // ----- commands -----

    fn command(&mut self, observed: ObservedCommand<'_>) {
        // An AUTH response's first word is no verb but part of the secret.
        self.answering_a_secret = observed.auth_response;
        // An ETRN's line goes to the recorder as its parts, as its record and reply do.
        match EtrnCommandLine::of(&observed) {
            Some(line) => self.queue(Recordable::EtrnCommand(line)),
            None => self.emit(Output::Event(Event::Command(CommandLine::from(&observed)))),
        }
        let command = observed.command;
        let verb = command.verb();

        if self.mode == Mode::Refused {
            if *verb == Verb::Quit {
                let quit = self.everyday(|r| &r.quit, None);
                self.answer(quit);
                self.close(CloseReason::Quit);
            } else {
                self.reply_text(reply_code!(503), "5.5.0 No service, only QUIT");
            }
            return;
        }
        if self.mode == Mode::NullServer && self.null_server(&command) {
            return;
        }
        if self.over_command_limit(verb) {
            return;
        }

        let scripted = self
            .behaviour
            .command(verb)
            .map(|a| self.filled(a, None, None));
        if *verb == Verb::Etrn {
            // An ETRN is recorded with whatever answers it, a scripted override included, so
            // the recording holds the code the client got.
            self.etrn(&command, scripted);
            return;
        }
        if let Some(answer) = &scripted {
            let positive = answer.reply.as_ref().is_some_and(|r| r.code().get() < 400);
            if !positive {
                // A refusal or a hang-up: no state changes; a 421 or `close` ends the session.
                self.answer_and_maybe_close(answer.clone());
                return;
            }
        }
        let normal = self.dispatch(&command);
        let answer = match (scripted, normal) {
            // A positive scripted reply keeps the command's effect but replaces what is said.
            (Some(s), Some(_)) => {
                if *verb == Verb::Ehlo
                    && let Some(reply) = &s.reply
                    && matches!(
                        self.observer.greeted(),
                        Greeted::EtrnAdvertised | Greeted::EtrnNotAdvertised
                    )
                {
                    // What the client was told is what counts for ETRN gating.
                    self.observer
                        .greeted_by_ehlo(reply.lines().iter().skip(1).map(String::as_str));
                }
                Some(s)
            }
            (_, n) => n,
        };
        if let Some(a) = answer {
            self.answer_and_maybe_close(a);
        }
        if *verb == Verb::Quit && self.mode != Mode::Closed {
            self.close(CloseReason::Quit);
        }
        if *verb == Verb::StartTls && self.mode != Mode::Closed && self.observer.tls_pending() {
            self.emit(Output::Event(Event::StartTls));
            self.emit(Output::StartTls);
        }
    }

    /// A null server's answer to `command`; false when the command is served as usual (HELO,
    /// NOOP, RSET, QUIT).
    fn null_server(&mut self, command: &Command<'_>) -> bool {
        let Some(pause) = self.behaviour.greet_pause().cloned() else {
            return false;
        };
        match command.verb() {
            Verb::Helo | Verb::Noop | Verb::Rset | Verb::Quit => return false,
            Verb::Ehlo => {
                let host = command.argument();
                self.client = String::from_utf8_lossy(host).into_owned();
                let first = self.behaviour.replies().ehlo_first_line.clone();
                let mut lines = vec![self.placeholders(None, None).fill(&first)];
                lines.extend(pause.ehlo_keywords.iter().cloned());
                // A null server's EHLO never counts as advertising ETRN.
                self.observer.greeted_by_ehlo(std::iter::empty());
                self.answer(Answer::reply(Reply::of_lines(reply_code!(250), lines)));
            }
            _ => {
                let refused = self.filled(Answer::reply(pause.refused_command), None, None);
                self.answer(refused);
            }
        }
        true
    }

    /// The normal handling of one command; returns the answer to send (None when it was sent).
    /// Long because it is one table: an arm per verb, each a line or two that hands the command
    /// to its own function, so the whole verb set reads in one place.
    fn dispatch(&mut self, command: &Command<'_>) -> Option<Answer> {
        match command.verb() {
            Verb::Turn => {
                let a = plain(reply_code!(502), "5.5.1 TURN is not supported");
                self.emit(Output::Event(Event::Turn { reply: Some(502) }));
                return Some(a);
            }
            // Read the argument ourselves: smtp-proto keeps only the first token and unquotes it,
            // which would hide a second node packed into one command.
            Verb::Etrn => {
                self.etrn(command, None);
                return None;
            }
            _ => {}
        }
        // The rest as smtp-proto reads the whole line; it finds the verb again (in its own way,
        // so an unknown or malformed command gets its error, as before).
        let line = command.line();
        match command.request() {
            Ok(Request::Ehlo { host }) => Some(self.ehlo(&host)),
            Ok(Request::Helo { host }) => {
                self.observer.greeted_by_helo();
                self.client = host.into_owned();
                Some(self.everyday(|r| &r.helo, None))
            }
            Ok(Request::Lhlo { .. }) => {
                Some(plain(reply_code!(500), "5.5.1 LHLO is for LMTP, not SMTP"))
            }
            Ok(Request::Mail { from }) => Some(self.mail(from.address.as_ref(), from.size)),
            Ok(Request::Rcpt { to }) => Some(self.rcpt(to.address.as_ref())),
            Ok(Request::Data) => Some(self.data_command()),
            Ok(Request::Bdat { .. }) => Some(plain(
                reply_code!(502),
                "5.5.1 BDAT is not supported (no CHUNKING)",
            )),
            Ok(Request::Burl { .. }) => {
                Some(plain(reply_code!(502), "5.5.1 BURL is not supported"))
            }
            Ok(Request::Rset) => {
                self.observer.close_transaction();
                Some(self.everyday(|r| &r.rset, None))
            }
            Ok(Request::Noop { .. }) => Some(self.everyday(|r| &r.noop, None)),
            Ok(Request::Vrfy { .. }) => Some(plain(
                reply_code!(252),
                "2.5.2 Cannot VRFY user, but will accept message",
            )),
            Ok(Request::Expn { .. }) => {
                Some(plain(reply_code!(502), "5.5.1 EXPN is not supported"))
            }
            Ok(Request::Help { .. }) => Some(plain(
                reply_code!(214),
                "2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT ETRN ATRN TURN AUTH STARTTLS",
            )),
            Ok(Request::Quit) => Some(self.everyday(|r| &r.quit, None)),
            Ok(Request::StartTls) => Some(self.starttls()),
            Ok(Request::Auth {
                mechanism,
                initial_response,
            }) => Some(self.auth(mechanism, initial_response.as_ref())),
            Ok(Request::Atrn { domains }) => {
                let answer = self.atrn_answer();
                let code = answer.reply.as_ref().map(|r| r.code().get());
                self.emit(Output::Event(Event::Atrn {
                    domains: domains.iter().map(|d| d.to_string()).collect(),
                    reply: code,
                }));
                Some(answer)
            }
            // Handled above; kept for exhaustiveness.
            Ok(Request::Etrn { .. }) => {
                self.etrn(command, None);
                None
            }
            Err(smtp_proto::Error::UnknownCommand) => {
                let reply = self.behaviour.replies().unknown_command.clone();
                // sendmail echoes the line; an AUTH response is echoed as the mark.
                let shown = if self.answering_a_secret {
                    redact::MARK.as_bytes()
                } else {
                    trim_line_end(line)
                };
                let places = Placeholders {
                    command: Some(shown),
                    ..self.placeholders(None, None)
                };
                Some(Answer::reply(places.reply(&reply)))
            }
            Err(smtp_proto::Error::SyntaxError { syntax }) => {
                Some(plain(reply_code!(501), &format!("5.5.4 Syntax: {syntax}")))
            }
            Err(smtp_proto::Error::InvalidSenderAddress) => {
                Some(plain(reply_code!(501), "5.1.7 Bad sender address syntax"))
            }
            Err(smtp_proto::Error::InvalidRecipientAddress) => Some(plain(
                reply_code!(501),
                "5.1.3 Bad recipient address syntax",
            )),
            Err(smtp_proto::Error::InvalidParameter { param }) => Some(plain(
                reply_code!(501),
                &format!("5.5.4 Invalid parameter {param}"),
            )),
            Err(smtp_proto::Error::UnsupportedParameter { param }) => Some(plain(
                reply_code!(555),
                &format!("5.5.4 Unsupported parameter {param}"),
            )),
            Err(_) => Some(plain(reply_code!(500), "5.5.2 Error: bad syntax")),
        }
    }

    fn keywords(&self) -> Option<&[String]> {
        self.behaviour.ehlo().ok()
    }

    fn advertises(&self, keyword: &str) -> bool {
        self.keywords()
            .is_some_and(|k| ehlo::advertises(k.iter().map(String::as_str), keyword))
    }

    fn ehlo(&mut self, host: &str) -> Answer {
        match self.behaviour.ehlo() {
            Ok(keywords) => {
                self.client = host.to_owned();
                let first = &self.behaviour.replies().ehlo_first_line;
                // Room for the first line, every keyword and STARTTLS: the lines never grow.
                let mut lines = Vec::with_capacity(keywords.len() + 2);
                lines.push(self.placeholders(None, None).fill(first));
                // STARTTLS only when TLS is possible: in the keyword list's place, else last.
                let offer_tls = self.limits.starttls && !self.tls_active;
                let mut tls_offered = false;
                for k in keywords {
                    // Only a line that starts with the eight letters can be STARTTLS's: the
                    // others are not cut into their keyword.
                    let maybe_starttls = k
                        .trim_start_matches([' ', '\t'])
                        .get(..8)
                        .is_some_and(|head| head.eq_ignore_ascii_case("STARTTLS"));
                    if maybe_starttls && ehlo::keyword(k).eq_ignore_ascii_case("STARTTLS") {
                        if offer_tls && !tls_offered {
                            tls_offered = true;
                            lines.push(k.clone());
                        }
                        continue;
                    }
                    lines.push(k.clone());
                }
                if offer_tls && !tls_offered {
                    lines.push("STARTTLS".into());
                }
                // Greeted, and any transaction over (RFC 5321 §4.1.4).
                self.observer
                    .greeted_by_ehlo(lines.iter().skip(1).map(String::as_str));
                Answer::reply(Reply::of_lines(reply_code!(250), lines))
            }
            Err(refusal) => refusal,
        }
    }

    fn mail(&mut self, from: &str, size: usize) -> Answer {
        if self.observer.greeted() == Greeted::No {
            return plain(reply_code!(503), "5.5.1 Error: send HELO/EHLO first");
        }
        if self.observer.in_transaction() {
            return plain(reply_code!(503), "5.5.1 Error: nested MAIL command");
        }
        if size != 0 && size != usize::MAX && size > self.limits.max_message_octets {
            return plain(reply_code!(552), "5.3.4 Message size exceeds fixed limit");
        }
        self.transaction = Transaction {
            from: from.to_owned(),
            recipients: Vec::new(),
        };
        self.observer.open_transaction();
        self.everyday(|r| &r.mail, Some(from))
    }

    fn rcpt(&mut self, to: &str) -> Answer {
        if !self.observer.in_transaction() {
            return plain(reply_code!(503), "5.5.1 Error: need MAIL command");
        }
        self.transaction.recipients.push(to.to_owned());
        plain(reply_code!(250), "2.1.5 OK")
    }

    fn data_command(&mut self) -> Answer {
        if !self.observer.in_transaction() {
            plain(reply_code!(503), "5.5.1 Error: need MAIL command")
        } else if self.transaction.recipients.is_empty() {
            plain(reply_code!(503), "5.5.1 Error: need RCPT command")
        } else {
            self.observer.open_data();
            self.message_octets = 0;
            plain(reply_code!(354), "End data with <CR><LF>.<CR><LF>")
        }
    }

    fn starttls(&mut self) -> Answer {
        if !self.limits.starttls {
            return plain(reply_code!(502), "5.5.1 STARTTLS is not offered");
        }
        if self.tls_active {
            return plain(reply_code!(503), "5.5.1 TLS is already active");
        }
        if self.observer.in_transaction() {
            return plain(reply_code!(503), "5.5.1 STARTTLS inside a mail transaction");
        }
        self.observer.start_tls();
        plain(reply_code!(220), "2.0.0 Ready to start TLS")
    }

    fn auth(&mut self, mechanism: u64, initial: &str) -> Answer {
        if !self.advertises("AUTH") {
            return plain(reply_code!(502), "5.5.1 AUTH is not advertised");
        }
        if self.authenticated {
            return plain(reply_code!(503), "5.5.1 Already authenticated");
        }
        if self.observer.in_transaction() {
            return plain(reply_code!(503), "5.5.1 AUTH inside a mail transaction");
        }
        match mechanism {
            AUTH_PLAIN if initial.is_empty() => self.challenge(AuthStep::Plain, ""),
            AUTH_PLAIN => self.auth_plain(initial.as_bytes()),
            AUTH_LOGIN if initial.is_empty() => self.challenge(AuthStep::LoginUser, "VXNlcm5hbWU6"),
            AUTH_LOGIN => match decode64(initial.as_bytes()) {
                Some(user) => {
                    let username = String::from_utf8_lossy(&user).into_owned();
                    self.challenge(AuthStep::LoginPassword { username }, "UGFzc3dvcmQ6")
                }
                None => plain(reply_code!(501), "5.5.2 Cannot decode the response"),
            },
            _ => plain(
                reply_code!(504),
                "5.5.4 Mechanism not supported; use PLAIN or LOGIN",
            ),
        }
    }

    /// A 334 asking for `step`: the observer reads the next line as its response.
    fn challenge(&mut self, step: AuthStep, text: &str) -> Answer {
        self.auth_step = Some(step);
        self.observer.challenge();
        plain(reply_code!(334), text)
    }

    fn auth_plain(&mut self, response: &[u8]) -> Answer {
        let Some(decoded) = decode64(response) else {
            return plain(reply_code!(501), "5.5.2 Cannot decode the response");
        };
        // authzid NUL authcid NUL password (RFC 4616)
        let parts: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
        if parts.len() != 3 {
            return plain(reply_code!(501), "5.5.2 Malformed PLAIN response");
        }
        let username = String::from_utf8_lossy(parts[1]).into_owned();
        self.succeed_auth("PLAIN", username)
    }

    fn succeed_auth(&mut self, mechanism: &str, username: String) -> Answer {
        self.authenticated = true;
        // Authenticated: the exchange is over, the next line is a command again.
        self.observer.authenticated();
        self.emit(Output::Event(Event::Auth {
            mechanism: mechanism.into(),
            username,
        }));
        plain(reply_code!(235), "2.7.0 Authentication successful")
    }

    fn auth_continuation(&mut self, line: &[u8]) {
        let response = trim_line_end(line);
        // The observer reads commands again unless the answer is another challenge.
        let step = self.auth_step.take();
        if response == b"*" {
            self.reply_text(reply_code!(501), "5.7.0 Authentication cancelled");
            return;
        }
        let answer = match step {
            Some(AuthStep::Plain) => self.auth_plain(response),
            Some(AuthStep::LoginUser) => match decode64(response) {
                Some(user) => {
                    let username = String::from_utf8_lossy(&user).into_owned();
                    self.challenge(AuthStep::LoginPassword { username }, "UGFzc3dvcmQ6")
                }
                None => plain(reply_code!(501), "5.5.2 Cannot decode the response"),
            },
            Some(AuthStep::LoginPassword { username }) => match decode64(response) {
                Some(_) => self.succeed_auth("LOGIN", username),
                None => plain(reply_code!(501), "5.5.2 Cannot decode the response"),
            },
            None => return,
        };
        self.answer(answer);
    }

    fn atrn_answer(&self) -> Answer {
        if !self.advertises("ATRN") {
            plain(reply_code!(502), "5.5.1 ATRN is not advertised")
        } else if !self.authenticated {
            plain(reply_code!(530), "5.7.0 Authentication required")
        } else {
            plain(reply_code!(453), "You have no mail")
        }
    }

    /// An ETRN line: recorded, and answered by `scripted` if the script overrides ETRN, else as
    /// the behaviour says.
    fn etrn(&mut self, command: &Command<'_>, scripted: Option<Answer>) {
        let greeted = self.observer.greeted();
        let in_transaction = self.observer.in_transaction();
        let read = read_etrn_into(command, greeted, in_transaction, &mut self.spare_text);
        let answer = match scripted {
            Some(a) => a,
            None => {
                // The behaviour's answer, borrowed: filling the placeholders makes the reply
                // this ETRN gets.
                let decided = self
                    .behaviour
                    .etrn(&read.facts(greeted, in_transaction, self.now));
                if let Some(quoted) = self.quoted(&decided, read.sent(), read.is_plain()) {
                    let (delay_ms, close) = (decided.delay_ms, decided.close);
                    drop(decided);
                    self.emit_etrn(read, Some(quoted.code()));
                    self.answer_quoted(quoted, delay_ms, close);
                    return;
                }
                let places = Placeholders {
                    arg: Some(read.sent()),
                    arg_as_sent: Some(command.argument_as_sent()),
                    ..self.placeholders(None, None)
                };
                Answer {
                    reply: decided.reply.as_ref().map(|reply| places.reply(reply)),
                    delay_ms: decided.delay_ms,
                    close: decided.close,
                }
            }
        };
        self.emit_etrn(read, answer.reply.as_ref().map(|r| r.code().get()));
        self.answer_and_maybe_close(answer);
    }

    /// Reports the ETRN `read` answered with `reply`: as its parts when they make its record.
    // Inlined, as `EtrnLine::into_plain` is: a call copies the line to pass it (152 octets;
    // with the spare text taken here, `#[inline]` no longer sufficed).
    #[inline(always)]
    fn emit_etrn(&mut self, mut read: super::etrn::EtrnLine<'_>, reply: Option<u16>) {
        if let Some(spare) = read.take_spare() {
            self.spare_text = spare;
        }
        let etrn = match read.into_plain(reply) {
            Ok(plain) => Recordable::PlainEtrn(plain),
            Err(record) => Recordable::Output(Output::Event(Event::Etrn(record))),
        };
        self.queue(etrn);
    }

    /// `decided`'s reply as a [`QuotedReply`] around `arg`, when it is one line quoting only the
    /// argument, the argument shows as it is, and the reply counts toward no error limit (the
    /// last straw adds a line). `plain`: the argument took the parse's fast path, so it is
    /// printable ASCII (see [`QuotedReply::of_printable`]).
    fn quoted(&self, decided: &Answer, arg: Sent<'_>, plain: bool) -> Option<QuotedReply> {
        let reply = decided.reply.as_ref()?;
        let quoting = reply.template()?.quoting()?;
        let code = reply.code().get();
        let error_limit = self.behaviour.replies().error_limit.as_ref();
        if quoting.code != code || error_limit.is_some_and(|l| l.codes.contains(&code)) {
            return None;
        }
        let value = match quoting.placeholder {
            Placeholder::Node => arg.node().bytes(),
            _ => arg.bytes(),
        };
        if plain {
            QuotedReply::of_printable(quoting, value)
        } else {
            QuotedReply::new(quoting, value)
        }
    }

    /// Sends `reply` as [`Session::answer_and_maybe_close`] sends an answer with one reply that
    /// counts toward no error limit.
    fn answer_quoted(&mut self, reply: QuotedReply, delay_ms: u64, close: bool) {
        let closes = (close || reply.code() == 421) && self.mode != Mode::Closed;
        if delay_ms == 0 {
            self.send(|out| reply.write_wire(out));
            self.queue(Recordable::QuotedReply(reply));
        } else {
            let mut wire = Vec::new();
            reply.write_wire(&mut wire);
            self.queue(Recordable::QuotedReply(reply));
            self.hold_for(Duration::from_millis(delay_ms));
            self.send(|out| out.extend_from_slice(&wire));
        }
        if closes {
            self.close(CloseReason::Scripted);
        }
    }

    // ----- output -----

    /// What reply texts' placeholders stand for now.
    fn placeholders<'a>(
        &'a self,
        arg: Option<Sent<'a>>,
        from: Option<&'a str>,
    ) -> Placeholders<'a> {
        Placeholders {
            host: self.behaviour.hostname(),
            client: &self.client,
            client_ip: Some(self.client_ip),
            date: Some(self.accepted_at),
            arg,
            arg_as_sent: None,
            from,
            command: None,
        }
    }

    /// `answer` with the placeholders of its reply filled in.
    fn filled(&self, mut answer: Answer, arg: Option<Sent<'_>>, from: Option<&str>) -> Answer {
        if let Some(reply) = &answer.reply
            && !reply
                .template()
                .is_some_and(crate::reply::Template::is_fixed)
        {
            answer.reply = Some(self.placeholders(arg, from).reply(reply));
        }
        answer
    }

    /// [`Session::filled`] of a borrowed `answer`: its reply is filled into a new one (copied
    /// when it has no placeholders), never copied first.
    fn filled_from(&self, answer: &Answer, arg: Option<Sent<'_>>, from: Option<&str>) -> Answer {
        Answer {
            reply: answer
                .reply
                .as_ref()
                .map(|reply| self.placeholders(arg, from).reply(reply)),
            delay_ms: answer.delay_ms,
            close: answer.close,
        }
    }

    /// One of the behaviour's everyday replies, filled in.
    fn everyday(
        &self,
        pick: impl Fn(&super::ServerReplies) -> &Reply,
        from: Option<&str>,
    ) -> Answer {
        let reply = pick(self.behaviour.replies());
        Answer::reply(self.placeholders(None, from).reply(reply))
    }

    /// Sends `answer`; a 421 or an answer with `close` then ends the session.
    fn answer_and_maybe_close(&mut self, answer: Answer) {
        let closes = answer.closes() && self.mode != Mode::Closed;
        self.answer(answer);
        if closes {
            self.close(CloseReason::Scripted);
        }
    }

    fn answer(&mut self, mut answer: Answer) {
        let mut too_many_errors = false;
        if let (Some(limit), Some(reply)) = (&self.behaviour.replies().error_limit, &answer.reply)
            && limit.codes.contains(&reply.code().get())
        {
            self.errors += 1;
            if self.errors > limit.max {
                // The last straw: the reply says why, and the session ends after it.
                answer.reply = Some(reply.clone().with_line(limit.last_line.clone()));
                too_many_errors = true;
            }
        }
        let delay = answer.delay();
        let hangs_up = answer.reply.is_none() && answer.close;
        // The reply's event is reported when it is decided (its lines move into it); its bytes
        // leave after the delay.
        match (answer.reply, delay) {
            (Some(reply), None) => {
                self.send(|out| reply.write_wire(out));
                self.emit_reply(reply);
            }
            (Some(reply), Some(delay)) => {
                let wire = reply.wire_bytes();
                self.emit_reply(reply);
                self.hold_for(delay);
                self.send(|out| out.extend_from_slice(&wire));
            }
            (None, Some(delay)) => self.hold_for(delay),
            (None, None) => {}
        }
        if hangs_up {
            self.close(CloseReason::Scripted);
        }
        if too_many_errors {
            self.close(CloseReason::TooManyErrors);
        }
    }

    /// The event of `reply`, sent.
    fn emit_reply(&mut self, reply: Reply) {
        self.emit(Output::Event(Event::Reply {
            code: reply.code().get(),
            lines: reply.into_lines(),
        }));
    }

    /// Writes bytes for the client with `write`, behind whatever a scripted delay holds.
    fn send(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        match self.held.back_mut() {
            Some(held) => write(&mut held.bytes),
            None => write(&mut self.transmit),
        }
    }

    /// Queues `output` for the driver, behind whatever a scripted delay holds.
    fn emit(&mut self, output: Output) {
        self.queue(Recordable::Output(output));
    }

    fn queue(&mut self, output: Recordable) {
        match self.held.back_mut() {
            Some(held) => held.outputs.push_back(output),
            None => self.out.push_back(output),
        }
    }

    /// Holds every output from here on for `delay`: counted from the release of what is already
    /// held, else from now (delays run one after another, as a server that sleeps does).
    fn hold_for(&mut self, delay: Duration) {
        let from = self.held.back().map_or(self.now, |h| h.at);
        self.held.push_back(Held {
            at: deadline_after(from, delay),
            outputs: VecDeque::new(),
            bytes: Vec::new(),
        });
    }

    fn reply_text(&mut self, code: ReplyCode, text: &str) {
        self.answer(plain(code, text));
    }

    fn close(&mut self, reason: CloseReason) {
        if self.mode != Mode::Closed {
            self.mode = Mode::Closed;
            self.emit(Output::Close(reason));
        }
    }
}

/// Outputs and bytes a scripted delay holds back until `at`.
#[derive(Debug)]
struct Held {
    at: Instant,
    outputs: VecDeque<Recordable>,
    /// The replies' bytes held: released to [`Session::poll_transmit`].
    bytes: Vec<u8>,
}

/// `duration` after `from`; a duration too long for the clock is as good as never.
pub(crate) fn deadline_after(from: Instant, duration: Duration) -> Instant {
    from.checked_add(duration)
        .unwrap_or_else(|| from + Duration::from_secs(100 * 365 * 24 * 3600))
}

fn plain(code: ReplyCode, text: &str) -> Answer {
    Answer::reply(Reply::new(code, text))
}

fn decode64(b: &[u8]) -> Option<Vec<u8>> {
    if b == b"=" {
        return Some(Vec::new());
    }
    base64::engine::general_purpose::STANDARD.decode(b).ok()
}
