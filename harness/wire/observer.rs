//! What the server side of a session has established, watched in one place.
//!
//! The scripted [`Session`](crate::proto::Session) and the cassette replay
//! ([`ReplaySession`](crate::proto::ReplaySession)) both read a client's bytes as a
//! server does: cut into lines with a cap, an over-long line discarded and answered once, message
//! data after a 354 to DATA, an AUTH response after a 334 (recorded redacted), nothing read between
//! a 220 to STARTTLS and the TLS handshake, and ETRN judged by whether EHLO or HELO was answered
//! and a mail transaction is open. A [`ServerSideObserver`] owns that state and its transitions, so
//! each rule lives here once: client bytes in, [`Classified`]s out (each command parsed once), and
//! the server's replies in ([`ServerSideObserver::replied`], or the session's own decisions
//! through [`ServerSideObserver::open_data`], [`ServerSideObserver::challenge`] and
//! [`ServerSideObserver::start_tls`]). The recording proxy's [`Follower`](super::Follower) is
//! built on it too, adding only what a watcher of a pipelined session needs (which reply answers
//! which request).
//!
//! It is sans-IO like the session: it holds no socket and no clock, and the line framer stays the
//! caller's ([`ServerSideObserver::next_line`] borrows it), so a data line is handed out as a
//! slice of the framer's buffer while the caller changes the observer's state.

use std::borrow::Cow;

use super::command::{Command, Verb};
use super::framing::{Frame, LineFramer, find_byte};
use super::reply_line::ReplyLine;
use super::{ehlo, redact};

/// Where the session stands: whether EHLO or HELO was answered, and with ETRN advertised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greeted {
    /// No EHLO/HELO answered yet.
    No,
    /// EHLO answered, with the ETRN keyword.
    EtrnAdvertised,
    /// An EHLO reply without ETRN.
    EtrnNotAdvertised,
    /// HELO: the session has no service extensions at all.
    Helo,
}

/// The longest piece of a data line handed out at once; a longer line goes on in pieces (it is
/// counted or hashed, never kept whole).
pub const DATA_CHUNK: usize = 64 * 1024;

/// Where message data ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataEnd {
    /// At CRLF "." CRLF only (RFC 5321 §4.1.1.4): a "." line after a line that ended in a bare
    /// LF, or after a piece of an over-long line, is data. The scripted session's rule.
    CrlfDotCrlf,
    /// At any line that is ".\r\n", as a line-reading upstream ends it: the rule the recorder saw
    /// applied, so the replay ends the data where the recorded server did.
    DotLine,
}

/// Whose 235 ends an AUTH exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    /// The server checked the credentials (the scripted session, a real upstream): after its 235
    /// the next line is a command whatever it looks like.
    Checked,
    /// The 235 is a recording and proves nothing (the replay answers whatever matched, even
    /// another mechanism): a line after it that is no command stays a secret.
    Replayed,
}

/// How the next client bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Commands,
    Data {
        /// The previous data line ended with CRLF (DATA's own CRLF counts).
        after_crlf: bool,
        /// A piece of an over-long line was handed out: the next line end ends that line.
        mid_line: bool,
    },
    /// A 334 was sent: the next line is an AUTH response, a secret.
    AuthResponse,
    /// STARTTLS was accepted: nothing is read until the handshake is done (CVE-2011-0411).
    TlsPending,
}

/// A command line, parsed once, with the form it is recorded in.
#[derive(Debug, Clone)]
pub struct ObservedCommand<'a> {
    pub command: Command<'a>,
    /// The line as it may be recorded, shown and matched: credentials redacted.
    pub recorded: Cow<'a, [u8]>,
    /// The line is an AUTH response (its first word is no verb but part of the secret).
    pub auth_response: bool,
}

impl<'a> ObservedCommand<'a> {
    /// The line after a 334: a secret whatever it holds.
    pub fn auth_response(line: &'a [u8]) -> Self {
        ObservedCommand {
            command: Command::parse(line),
            recorded: Cow::Borrowed(redact::CONTINUATION),
            auth_response: true,
        }
    }

    /// The verb to record: none for an AUTH response.
    pub fn recorded_verb(&self) -> Verb {
        if self.auth_response {
            Verb::Blank
        } else {
            self.command.verb().clone()
        }
    }
}

/// What one step of the client's bytes is.
#[derive(Debug)]
pub enum Classified<'a> {
    /// A command line no longer than the limit.
    Command(ObservedCommand<'a>),
    /// The line after a 334.
    AuthResponse(&'a [u8]),
    /// A line of message data; `starts_line` is false for the end of a line whose first
    /// pieces came as [`Classified::DataPiece`] (so a "." there is no dot-stuffing).
    Data { line: &'a [u8], starts_line: bool },
    /// The line that ends message data; the observer reads commands again.
    EndOfData(&'a [u8]),
    /// A [`DATA_CHUNK`] piece of a data line that has not ended.
    DataPiece(&'a [u8]),
    /// A piece of a command (or AUTH response) line past the limit; `first` for its first.
    OverlongPiece { piece: &'a [u8], first: bool },
    /// A line past the limit ended, discarded: `octets` in all, `last` its last frame (the
    /// whole line when `whole`, its tail after [`Classified::OverlongPiece`]s otherwise).
    TooLong {
        octets: usize,
        last: &'a [u8],
        whole: bool,
    },
    /// Bytes that came after STARTTLS was accepted, before the handshake: never read.
    DiscardedAfterStartTls { octets: usize },
}

/// The request a reply answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt<'a> {
    /// A command, by its verb.
    Command(&'a Verb),
    /// An AUTH response.
    AuthResponse,
    /// The end of message data.
    EndOfData,
}

/// What a reply started that the caller must carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replied {
    /// Nothing more to do.
    Continue,
    /// 220 to STARTTLS: the caller starts the handshake (and calls
    /// [`ServerSideObserver::start_tls`]) or, if it cannot, reads on in plaintext.
    TlsStarts,
}

/// The server side's view of one session; see the [module](self) documentation.
#[derive(Debug, Clone)]
pub struct ServerSideObserver {
    /// The command line limit, line end included.
    line_limit: usize,
    data_end: DataEnd,
    authentication: Authentication,
    reading: Reading,
    /// Octets of an over-long line discarded so far; `Some` while discarding up to its LF.
    overlong: Option<usize>,
    /// Which command lines answer an AUTH whatever its reply (the one redaction's rule).
    auth_responses: redact::AuthResponses,
    greeted: Greeted,
    in_transaction: bool,
}

impl ServerSideObserver {
    /// A session that has just begun: commands of at most `line_limit` octets (line end
    /// included), message data ending as `data_end` says, a 235 as `authentication` says.
    pub fn new(line_limit: usize, data_end: DataEnd, authentication: Authentication) -> Self {
        ServerSideObserver {
            line_limit,
            data_end,
            authentication,
            reading: Reading::Commands,
            overlong: None,
            auth_responses: redact::AuthResponses::default(),
            greeted: Greeted::No,
            in_transaction: false,
        }
    }

    /// A session whose lines have no limit here (a proxy relays them; the upstream judges).
    pub fn without_line_limit(data_end: DataEnd, authentication: Authentication) -> Self {
        ServerSideObserver::new(usize::MAX, data_end, authentication)
    }

    /// The next line (or piece) out of `lines`, classified; `None` when more bytes are needed.
    pub fn next_line<'f>(&mut self, lines: &'f mut LineFramer) -> Option<Classified<'f>> {
        let Some(cap) = self.frame_cap() else {
            let octets = lines.take_pending().len();
            return (octets > 0).then_some(Classified::DiscardedAfterStartTls { octets });
        };
        Some(match (self.reading, lines.next_frame(cap)?) {
            (Reading::Data { after_crlf, .. }, Frame::Overlong(piece)) => {
                self.reading = Reading::Data {
                    after_crlf,
                    mid_line: true,
                };
                Classified::DataPiece(piece)
            }
            (_, Frame::Overlong(piece)) => {
                let first = self.overlong.is_none();
                *self.overlong.get_or_insert(0) += piece.len();
                Classified::OverlongPiece { piece, first }
            }
            (_, Frame::Line(line)) => self.line(line),
        })
    }

    /// `bytes` classified as [`next_line`](Self::next_line) classifies them pushed onto a framer
    /// that holds nothing: when they are one whole line within the cap (`None` otherwise, and
    /// nothing is taken in). A line handed over on its own (the smart host's driver hands over
    /// each pipelined line so) is then neither copied into the framer nor searched again.
    pub fn whole_line<'a>(&mut self, bytes: &'a [u8]) -> Option<Classified<'a>> {
        let cap = self.frame_cap()?;
        let (last, before) = bytes.split_last()?;
        if *last != b'\n' || bytes.len() > cap.max(1) || find_byte(before, b'\n').is_some() {
            return None;
        }
        Some(self.line(bytes))
    }

    /// [`whole_line`](Self::whole_line) of `bytes` the caller has cut at their first line end:
    /// none comes before their last octet, so none is searched for.
    pub fn cut_line<'a>(&mut self, bytes: &'a [u8]) -> Option<Classified<'a>> {
        let cap = self.frame_cap()?;
        if bytes.last() != Some(&b'\n') || bytes.len() > cap.max(1) {
            return None;
        }
        Some(self.line(bytes))
    }

    /// The longest frame [`next_line`](Self::next_line) takes as a line now (a longer one comes
    /// in pieces); `None` while nothing is read (a TLS handshake is due).
    fn frame_cap(&self) -> Option<usize> {
        match self.reading {
            Reading::TlsPending => None,
            Reading::Data { .. } => Some(DATA_CHUNK),
            // One octet more than the limit: a line of exactly the limit plus one comes whole,
            // so a server that truncates has it all.
            Reading::Commands | Reading::AuthResponse => Some(self.line_limit.saturating_add(1)),
        }
    }

    /// A complete line, classified: for [`next_line`](Self::next_line), and for a caller that
    /// cuts lines itself (the recording proxy, which relays them whatever their length).
    pub fn line<'a>(&mut self, line: &'a [u8]) -> Classified<'a> {
        match self.reading {
            Reading::TlsPending => Classified::DiscardedAfterStartTls { octets: line.len() },
            Reading::Data {
                after_crlf,
                mid_line,
            } => {
                let ends = line == b".\r\n"
                    && match self.data_end {
                        DataEnd::CrlfDotCrlf => after_crlf && !mid_line,
                        DataEnd::DotLine => true,
                    };
                if ends {
                    self.reading = Reading::Commands;
                    self.in_transaction = false;
                    Classified::EndOfData(line)
                } else {
                    self.reading = Reading::Data {
                        after_crlf: line.ends_with(b"\r\n"),
                        mid_line: false,
                    };
                    Classified::Data {
                        line,
                        starts_line: !mid_line,
                    }
                }
            }
            reading => {
                if let Some(discarded) = self.overlong.take() {
                    // The AUTH exchange, if any, goes on: the next line is still its response.
                    Classified::TooLong {
                        octets: discarded + line.len(),
                        last: line,
                        whole: false,
                    }
                } else if reading == Reading::AuthResponse {
                    self.reading = Reading::Commands;
                    Classified::AuthResponse(line)
                } else if line.len() > self.line_limit {
                    Classified::TooLong {
                        octets: line.len(),
                        last: line,
                        whole: true,
                    }
                } else {
                    Classified::Command(self.command(line))
                }
            }
        }
    }

    /// `line` read as a command: parsed once, its recorded form by the one redaction. For a
    /// line the caller made itself (a truncated over-long line) as for one [`next_line`] read.
    ///
    /// [`next_line`]: Self::next_line
    pub fn command<'a>(&mut self, line: &'a [u8]) -> ObservedCommand<'a> {
        let command = Command::parse(line);
        let (recorded, auth_response) = self.auth_responses.line(&command);
        ObservedCommand {
            command,
            recorded,
            auth_response,
        }
    }

    /// What [`command`](Self::command) would record of `line` and whether it is an AUTH
    /// response, without taking it in.
    pub fn command_form<'a>(&self, line: &'a [u8]) -> (Cow<'a, [u8]>, bool) {
        self.auth_responses.form(&Command::parse(line))
    }

    /// The server's reply (its lines as sent, line ends included) to `prompt`, for a server
    /// whose state follows what it said: the replay.
    pub fn replied<L: AsRef<[u8]>>(&mut self, prompt: Prompt<'_>, reply: &[L]) -> Replied {
        let Some(code) = reply
            .first()
            .and_then(|l| ReplyLine::parse(l.as_ref()))
            .map(|l| l.code)
        else {
            return Replied::Continue;
        };
        let complete = reply
            .last()
            .is_some_and(|l| ReplyLine::ends_reply(l.as_ref()));
        let positive = (200..300).contains(&code);
        match (prompt, code) {
            (Prompt::Command(Verb::Ehlo), _) if positive => {
                let keywords: Vec<String> = reply
                    .iter()
                    .skip(1)
                    .filter_map(|l| ReplyLine::parse(l.as_ref()))
                    .map(|l| String::from_utf8_lossy(l.text).into_owned())
                    .collect();
                self.greeted_by_ehlo(keywords.iter().map(String::as_str));
            }
            (Prompt::Command(Verb::Helo), _) if positive => self.greeted_by_helo(),
            (Prompt::Command(Verb::Mail), _) if positive => self.open_transaction(),
            (Prompt::Command(Verb::Rset), _) => self.close_transaction(),
            (Prompt::Command(Verb::Data), 354) if complete => self.open_data(),
            (Prompt::Command(Verb::Auth) | Prompt::AuthResponse, 334) => self.challenge(),
            (Prompt::Command(Verb::Auth) | Prompt::AuthResponse, 235) => self.authenticated(),
            (Prompt::Command(Verb::StartTls), 220) => return Replied::TlsStarts,
            _ => {}
        }
        Replied::Continue
    }

    /// EHLO was answered with these ehlo-lines (the greeting line left out): greeted, with or
    /// without ETRN advertised, and no mail transaction (RFC 5321 §4.1.4).
    pub fn greeted_by_ehlo<'k>(&mut self, keywords: impl IntoIterator<Item = &'k str>) {
        self.greeted = if ehlo::advertises(keywords, "ETRN") {
            Greeted::EtrnAdvertised
        } else {
            Greeted::EtrnNotAdvertised
        };
        self.in_transaction = false;
    }

    /// HELO was answered: greeted without extensions, and no mail transaction.
    pub fn greeted_by_helo(&mut self) {
        self.greeted = Greeted::Helo;
        self.in_transaction = false;
    }

    /// MAIL was accepted: a mail transaction is open.
    pub fn open_transaction(&mut self) {
        self.in_transaction = true;
    }

    /// RSET: no mail transaction (whatever its reply: a server resets on RSET).
    pub fn close_transaction(&mut self) {
        self.in_transaction = false;
    }

    /// 354 to DATA: message data follows, up to its end.
    pub fn open_data(&mut self) {
        self.reading = Reading::Data {
            after_crlf: true,
            mid_line: false,
        };
    }

    /// 334 to AUTH or to a response: the next line is a response.
    pub fn challenge(&mut self) {
        self.reading = Reading::AuthResponse;
    }

    /// 235: the AUTH exchange is over, the next line is a command whatever it looks like (unless
    /// the 235 is [`Authentication::Replayed`]).
    pub fn authenticated(&mut self) {
        if self.authentication == Authentication::Checked {
            self.auth_responses = redact::AuthResponses::default();
        }
    }

    /// The TLS handshake starts: nothing is read until [`Self::tls_established`], and the
    /// session starts over (RFC 3207 §4.2).
    pub fn start_tls(&mut self) {
        self.reading = Reading::TlsPending;
        self.greeted = Greeted::No;
        self.in_transaction = false;
    }

    /// The TLS handshake is done: commands are read again.
    pub fn tls_established(&mut self) {
        if self.reading == Reading::TlsPending {
            self.reading = Reading::Commands;
        }
    }

    /// True between STARTTLS accepted and the handshake done.
    pub fn tls_pending(&self) -> bool {
        self.reading == Reading::TlsPending
    }

    /// True while message data is read.
    pub fn in_data(&self) -> bool {
        matches!(self.reading, Reading::Data { .. })
    }

    /// True when the next line is an AUTH response rather than a command.
    pub fn awaits_auth_response(&self) -> bool {
        self.reading == Reading::AuthResponse
    }

    /// Where the session stands for an ETRN.
    pub fn greeted(&self) -> Greeted {
        self.greeted
    }

    /// True while a mail transaction is open (MAIL accepted, its data not ended, no RSET).
    pub fn in_transaction(&self) -> bool {
        self.in_transaction
    }

    /// `lines`, not yet read, one after another, as they would be recorded (see
    /// [`Conversation::recorded_forms`](crate::proto::Conversation::recorded_forms)); the state
    /// unchanged.
    pub fn recorded_forms(&self, lines: &[&[u8]]) -> Vec<Vec<u8>> {
        if self.awaits_auth_response() {
            return vec![redact::CONTINUATION.to_vec(); lines.len()];
        }
        self.auth_responses.forms(lines)
    }

    /// [`ServerSideObserver::recorded_forms`] of one line, borrowed when it holds no secret: a
    /// driver that records every pipelined line ([`Event::Unawaited`](crate::proto::Event)) copies
    /// it once, not three times.
    pub fn recorded_form<'a>(&self, line: &'a [u8]) -> Cow<'a, [u8]> {
        if self.awaits_auth_response() {
            return Cow::Borrowed(redact::CONTINUATION);
        }
        self.auth_responses.recorded(line)
    }

    /// The recorded form of `rest`, the last bytes of a client that left mid-line; `None` when
    /// they are no line (empty, message data, after STARTTLS, the tail of an over-long line).
    pub fn unterminated(&mut self, rest: &[u8]) -> Option<Vec<u8>> {
        let a_line =
            self.reading != Reading::TlsPending && !self.in_data() && self.overlong.is_none();
        if !a_line || rest.is_empty() {
            return None;
        }
        // An AUTH response is a secret whatever it holds.
        let (form, secret) = self.auth_responses.line(&Command::parse(rest));
        Some(if secret || self.awaits_auth_response() {
            redact::MARK.as_bytes().to_vec()
        } else {
            form.into_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one classified line is, owned, for comparing.
    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Command { recorded: String, secret: bool },
        AuthResponse(String),
        Data { line: String, starts_line: bool },
        EndOfData,
        DataPiece(usize),
        OverlongPiece { octets: usize, first: bool },
        TooLong { octets: usize, whole: bool },
        Discarded(usize),
    }

    fn seen(line: Classified<'_>) -> Seen {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match line {
            Classified::Command(c) => Seen::Command {
                recorded: text(&c.recorded),
                secret: c.auth_response,
            },
            Classified::AuthResponse(l) => Seen::AuthResponse(text(l)),
            Classified::Data { line, starts_line } => Seen::Data {
                line: text(line),
                starts_line,
            },
            Classified::EndOfData(_) => Seen::EndOfData,
            Classified::DataPiece(p) => Seen::DataPiece(p.len()),
            Classified::OverlongPiece { piece, first } => Seen::OverlongPiece {
                octets: piece.len(),
                first,
            },
            Classified::TooLong { octets, whole, .. } => Seen::TooLong { octets, whole },
            Classified::DiscardedAfterStartTls { octets } => Seen::Discarded(octets),
        }
    }

    fn command(line: &str) -> Seen {
        Seen::Command {
            recorded: line.into(),
            secret: false,
        }
    }

    /// The observer and a framer, fed like a server: each line answered before the next is read.
    struct Server {
        observer: ServerSideObserver,
        lines: LineFramer,
    }

    impl Server {
        fn new(data_end: DataEnd) -> Self {
            Server::with(data_end, Authentication::Checked)
        }

        fn with(data_end: DataEnd, authentication: Authentication) -> Self {
            Server {
                observer: ServerSideObserver::new(512, data_end, authentication),
                lines: LineFramer::new(),
            }
        }

        fn push(&mut self, bytes: &[u8]) {
            self.lines.push(bytes);
        }

        fn next(&mut self) -> Option<Seen> {
            self.observer.next_line(&mut self.lines).map(seen)
        }

        /// Reads one command line and answers it with `reply`.
        fn exchange(&mut self, line: &str, reply: &[&str]) -> Replied {
            self.push(line.as_bytes());
            let next = self.observer.next_line(&mut self.lines);
            let Some(Classified::Command(c)) = next else {
                panic!("{line:?} read as {:?}", next.map(seen));
            };
            let verb = c.command.verb().clone();
            self.observer.replied(Prompt::Command(&verb), reply)
        }
    }

    #[test]
    fn ehlo_and_helo_replies_greet_and_end_the_transaction_a_refusal_does_not() {
        let mut s = Server::new(DataEnd::CrlfDotCrlf);
        assert_eq!(s.observer.greeted(), Greeted::No);
        s.exchange("EHLO c\r\n", &["550 no\r\n"]);
        assert_eq!(s.observer.greeted(), Greeted::No);
        s.exchange(
            "EHLO c\r\n",
            &["250-mx\r\n", "250-SIZE 1000\r\n", "250 etrn\r\n"],
        );
        assert_eq!(s.observer.greeted(), Greeted::EtrnAdvertised);
        s.exchange("MAIL FROM:<a@b>\r\n", &["250 ok\r\n"]);
        assert!(s.observer.in_transaction());
        s.exchange("EHLO c\r\n", &["250-mx\r\n", "250 ETRNX\r\n"]);
        assert_eq!(s.observer.greeted(), Greeted::EtrnNotAdvertised);
        assert!(!s.observer.in_transaction(), "EHLO ends the transaction");
        s.exchange("MAIL FROM:<a@b>\r\n", &["250 ok\r\n"]);
        s.exchange("HELO c\r\n", &["250 mx\r\n"]);
        assert_eq!(s.observer.greeted(), Greeted::Helo);
        assert!(!s.observer.in_transaction(), "HELO ends the transaction");
    }

    #[test]
    fn mail_opens_a_transaction_only_when_accepted_and_rset_closes_it_whatever_its_reply() {
        let mut s = Server::new(DataEnd::CrlfDotCrlf);
        s.exchange("MAIL FROM:<a@b>\r\n", &["503 5.5.1 send HELO first\r\n"]);
        assert!(!s.observer.in_transaction());
        s.exchange("MAIL FROM:<a@b>\r\n", &["250 ok\r\n"]);
        assert!(s.observer.in_transaction());
        s.exchange("RSET\r\n", &["500 odd\r\n"]);
        assert!(!s.observer.in_transaction());
    }

    #[test]
    fn data_follows_354_to_data_only_and_ends_the_transaction() {
        let mut s = Server::new(DataEnd::CrlfDotCrlf);
        s.exchange("MAIL FROM:<a@b>\r\n", &["250 ok\r\n"]);
        s.exchange("NOOP\r\n", &["354 not for NOOP\r\n"]);
        assert!(!s.observer.in_data());
        s.exchange("DATA\r\n", &["354 go\r\n"]);
        assert!(s.observer.in_data());
        s.push(b"QUIT\r\n..stuffed\r\n.\r\nNOOP\r\n");
        assert_eq!(
            s.next(),
            Some(Seen::Data {
                line: "QUIT\r\n".into(),
                starts_line: true
            })
        );
        assert!(matches!(s.next(), Some(Seen::Data { .. })));
        assert_eq!(s.next(), Some(Seen::EndOfData));
        assert!(!s.observer.in_transaction());
        assert_eq!(s.next(), Some(command("NOOP\r\n")));
        // A 354 cut short (the upstream closed mid-reply) opens nothing.
        s.exchange("DATA\r\n", &["354 go"]);
        assert!(!s.observer.in_data());
    }

    #[test]
    fn where_data_ends_is_the_server_s_rule() {
        for (data_end, ends_after_bare_lf) in
            [(DataEnd::CrlfDotCrlf, false), (DataEnd::DotLine, true)]
        {
            let mut s = Server::new(data_end);
            s.observer.open_data();
            s.push(b"text\n.\r\n");
            assert!(matches!(s.next(), Some(Seen::Data { .. })));
            assert_eq!(
                s.next() == Some(Seen::EndOfData),
                ends_after_bare_lf,
                "{data_end:?}"
            );
        }
        // After a piece of a long data line, the "." that ends that line is no end, nor stuffing.
        let mut s = Server::new(DataEnd::CrlfDotCrlf);
        s.observer.open_data();
        let mut long = vec![b'x'; DATA_CHUNK];
        long.extend_from_slice(b".\r\n.\r\n");
        s.push(&long);
        assert_eq!(s.next(), Some(Seen::DataPiece(DATA_CHUNK)));
        assert_eq!(
            s.next(),
            Some(Seen::Data {
                line: ".\r\n".into(),
                starts_line: false
            })
        );
        assert_eq!(s.next(), Some(Seen::EndOfData));
    }

    #[test]
    fn pipelined_commands_come_out_in_order_and_a_354_turns_the_rest_into_data() {
        let mut s = Server::new(DataEnd::CrlfDotCrlf);
        s.push(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nETRN x\r\n.\r\nETRN y\r\n");
        assert_eq!(s.next(), Some(command("MAIL FROM:<a@b>\r\n")));
        s.observer
            .replied(Prompt::Command(&Verb::Mail), &["250 ok\r\n"]);
        assert_eq!(s.next(), Some(command("RCPT TO:<c@d>\r\n")));
        assert_eq!(s.next(), Some(command("DATA\r\n")));
        s.observer
            .replied(Prompt::Command(&Verb::Data), &["354 go\r\n"]);
        assert!(
            matches!(s.next(), Some(Seen::Data { .. })),
            "ETRN x is data"
        );
        assert_eq!(s.next(), Some(Seen::EndOfData));
        assert_eq!(s.next(), Some(command("ETRN y\r\n")));
        assert_eq!(s.next(), None);
    }

    #[test]
    fn a_line_over_the_cap_is_discarded_with_its_length_and_reading_goes_on() {
        let mut s = Server::new(DataEnd::CrlfDotCrlf);
        // The limit is 512 with the line end: 513 octets still come whole (for truncation).
        let at_limit = format!("NOOP {}\r\n", "a".repeat(512 - 7));
        s.push(at_limit.as_bytes());
        assert!(matches!(s.next(), Some(Seen::Command { .. })));
        let one_over = format!("NOOP {}\r\n", "a".repeat(513 - 7));
        s.push(one_over.as_bytes());
        assert_eq!(
            s.next(),
            Some(Seen::TooLong {
                octets: 513,
                whole: true
            })
        );
        let long = format!("NOOP {}\r\nQUIT\r\n", "a".repeat(2000));
        s.push(long.as_bytes());
        let mut seen = Vec::new();
        while let Some(line) = s.next() {
            seen.push(line);
        }
        assert_eq!(
            seen,
            [
                Seen::OverlongPiece {
                    octets: 513,
                    first: true
                },
                Seen::OverlongPiece {
                    octets: 513,
                    first: false
                },
                Seen::OverlongPiece {
                    octets: 513,
                    first: false
                },
                Seen::TooLong {
                    octets: 2007,
                    whole: false
                },
                command("QUIT\r\n"),
            ]
        );
    }

    #[test]
    fn one_line_is_recorded_as_recorded_forms_records_it_and_borrowed_when_plain() {
        let lines: [&[u8]; 5] = [
            b"NOOP\r\n",
            b"ETRN a.example\r\n",
            b"AGFsaWNlAHNlY3JldA==\r\n",
            b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
            b"\r\n",
        ];
        let agree = |s: &Server| {
            for line in lines {
                let one = s.observer.recorded_form(line);
                assert_eq!(*one, s.observer.recorded_forms(&[line])[0], "{line:?}");
            }
        };
        let mut s = Server::new(DataEnd::CrlfDotCrlf);
        agree(&s);
        assert!(matches!(
            s.observer.recorded_form(b"ETRN a.example\r\n"),
            Cow::Borrowed(_)
        ));
        // After an AUTH line (refused), and while a 334 awaits its response.
        s.push(b"AUTH PLAIN\r\n");
        let _ = s.next();
        s.observer
            .replied(Prompt::Command(&Verb::Auth), &["504 no\r\n"]);
        agree(&s);
        s.exchange("AUTH LOGIN\r\n", &["334 VXNlcm5hbWU6\r\n"]);
        assert!(s.observer.awaits_auth_response());
        agree(&s);
    }

    #[test]
    fn auth_responses_are_recorded_redacted_after_a_334_and_after_a_refusal() {
        let mut s = Server::new(DataEnd::CrlfDotCrlf);
        // The initial response goes from the AUTH line itself.
        s.push(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n");
        assert_eq!(s.next(), Some(command("AUTH PLAIN [redacted]\r\n")));
        // A refused AUTH: a response sent anyway is still a secret, until a command comes.
        s.observer
            .replied(Prompt::Command(&Verb::Auth), &["504 no\r\n"]);
        s.push(b"AGFsaWNlAHNlY3JldA==\r\nNOOP\r\nc2VjcmV0\r\n");
        let secret = Seen::Command {
            recorded: "[redacted]\r\n".into(),
            secret: true,
        };
        assert_eq!(s.next(), Some(secret));
        assert_eq!(s.next(), Some(command("NOOP\r\n")));
        assert_eq!(s.next(), Some(command("c2VjcmV0\r\n")));
        // After a 334 the next line is a response whatever it looks like, and only that line.
        s.exchange("AUTH LOGIN\r\n", &["334 VXNlcm5hbWU6\r\n"]);
        assert!(s.observer.awaits_auth_response());
        assert_eq!(
            s.observer.recorded_forms(&[b"RSET\r\n"]),
            [redact::CONTINUATION.to_vec()]
        );
        s.push(b"RSET\r\n");
        assert_eq!(s.next(), Some(Seen::AuthResponse("RSET\r\n".into())));
        let response = ObservedCommand::auth_response(b"RSET\r\n");
        assert_eq!(
            (&*response.recorded, response.recorded_verb()),
            (redact::CONTINUATION, Verb::Blank)
        );
        s.observer
            .replied(Prompt::AuthResponse, &["334 UGFzc3dvcmQ6\r\n"]);
        s.push(b"c2VjcmV0\r\n");
        assert_eq!(s.next(), Some(Seen::AuthResponse("c2VjcmV0\r\n".into())));
        // 235: the exchange is over, a base64-looking line is a command again.
        s.observer.replied(Prompt::AuthResponse, &["235 ok\r\n"]);
        assert!(!s.observer.awaits_auth_response());
        s.push(b"c2VjcmV0\r\n");
        assert_eq!(s.next(), Some(command("c2VjcmV0\r\n")));
        // A replayed 235 proves nothing: the line stays a secret until a command comes.
        let mut s = Server::with(DataEnd::DotLine, Authentication::Replayed);
        s.exchange("AUTH PLAIN AGFsaWNl\r\n", &["235 ok\r\n"]);
        s.push(b"c2VjcmV0\r\n");
        assert!(matches!(s.next(), Some(Seen::Command { secret: true, .. })));
    }

    #[test]
    fn nothing_after_a_220_to_starttls_is_read_before_the_handshake() {
        let mut s = Server::new(DataEnd::CrlfDotCrlf);
        s.exchange("EHLO c\r\n", &["250 mx\r\n"]);
        s.exchange("MAIL FROM:<a@b>\r\n", &["250 ok\r\n"]);
        assert_eq!(s.exchange("NOOP\r\n", &["220 odd\r\n"]), Replied::Continue);
        assert_eq!(
            s.exchange("STARTTLS\r\n", &["454 not now\r\n"]),
            Replied::Continue
        );
        s.push(b"STARTTLS\r\nEHLO evil\r\n");
        assert_eq!(s.next(), Some(command("STARTTLS\r\n")));
        let replied = s
            .observer
            .replied(Prompt::Command(&Verb::StartTls), &["220 go\r\n"]);
        assert_eq!(replied, Replied::TlsStarts);
        s.observer.start_tls();
        assert_eq!(s.next(), Some(Seen::Discarded(b"EHLO evil\r\n".len())));
        assert_eq!(s.next(), None);
        assert_eq!(s.observer.unterminated(b"x"), None);
        // The session starts over (RFC 3207 §4.2).
        assert_eq!(s.observer.greeted(), Greeted::No);
        assert!(!s.observer.in_transaction());
        s.observer.tls_established();
        s.push(b"EHLO c\r\n");
        assert_eq!(s.next(), Some(command("EHLO c\r\n")));
    }

    #[test]
    fn an_unterminated_last_line_is_recorded_through_the_redaction() {
        let mut s = Server::new(DataEnd::CrlfDotCrlf);
        assert_eq!(
            s.observer.unterminated(b"AUTH PLAIN AGFsaWNl"),
            Some(b"AUTH PLAIN [redacted]".to_vec())
        );
        assert_eq!(
            s.observer.unterminated(b"dXNlcg=="),
            Some(redact::MARK.as_bytes().to_vec())
        );
        assert_eq!(s.observer.unterminated(b""), None);
        s.observer.open_data();
        assert_eq!(s.observer.unterminated(b"message text"), None);
    }
}
