//! The cassette text format: versioned, human-readable, diffable, written line by line.
//!
//! ```text
//! etrn-harness cassette v1
//! 1 session upstream=127.0.0.1:2547 client=127.0.0.1:50312 started=2026-11-29T00:30:00Z
//! 1 S: 220 mx.test ESMTP Postfix (Debian/GNU)
//! 1 C: EHLO client.example
//! 1 S: 250-mx.test
//! 1 S: 250 CHUNKING
//! 1 C: DATA
//! 1 S: 354 End data with <CR><LF>.<CR><LF>
//! 1 D: Subject: test
//! 1 D: .
//! 1 S: 250 2.0.0 Ok: queued as 4F2A1
//! 1 C: QUIT
//! 1 S: 221 2.0.0 Bye
//! 1 end quit
//! ```
//!
//! Every line after the version starts with the session number, so sessions recorded in parallel
//! interleave without mixing; session headers appear in session-number order. `C:` is a client
//! command line, `D:` a line of message data, `S:` a server reply line; their text is escaped
//! (`\r`, `\n`, `\xNN`, `\\`) and stands for the line plus CRLF. A line that did not end in CRLF
//! is written `C!`/`D!`/`S!` with its exact bytes escaped, line end included: a bare LF, a line cut
//! by a close, or a piece of an over-long line (consecutive pieces of one line join up again).
//!
//! Lines are written in the order they crossed the proxy, so with pipelining (RFC 2920) several
//! `C:` lines may come before their replies: each reply answers the oldest request still waiting,
//! exactly as on the wire. `tls passthrough` marks STARTTLS relayed encrypted: nothing after it
//! was recorded; `tls terminate` marks STARTTLS the recorder terminated: the plaintext of the rest
//! follows. `end <reason>` closes a session. Credentials are written `[redacted]`.
//!
//! One event per line: a text holding something that reads as the start of a line (`1 S: `) has
//! that space written `\x20`, so a line that swallowed the next one (a lost line end) is told
//! apart and refused. The parser reads a cassette the way the server read the wire: a reply while
//! the client is mid-line answers nothing it sent, lines pipelined behind DATA are message data
//! once the 354 comes, and nothing is answered after a 221 or 421; every fault is named by its line.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::Path;

use crate::escape::{escape, unescape};
use crate::wire::ReplyLine;
use crate::wire::{Command, Verb};

/// The first line of every cassette.
pub const MAGIC: &str = "etrn-harness cassette v1";

/// Every reason an `end` line may give: what the recorders write, and nothing else.
pub const END_REASONS: &[&str] = &[
    "quit",
    "client-closed",
    "upstream-closed",
    "upstream-unreachable",
    "recorder-stopped",
    "io-error",
    "tls-failed",
];

/// The cassette's bytes as text; a byte that is not UTF-8 is named by its line (the cassette
/// itself is escaped ASCII/UTF-8, so such a byte is a damaged or foreign file).
pub fn text_of(bytes: &[u8]) -> Result<&str, CassetteError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        CassetteError {
            line: good.iter().filter(|b| **b == b'\n').count() + 1,
            message: "a byte that is not UTF-8: the file is damaged, or not a cassette".into(),
        }
    })
}

/// Who sent a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A command line from the client.
    Client,
    /// A line of message data from the client.
    Data,
    /// A reply line from the server.
    Server,
}

impl Direction {
    fn tag(self) -> char {
        match self {
            Direction::Client => 'C',
            Direction::Data => 'D',
            Direction::Server => 'S',
        }
    }
}

/// One line of a cassette, ready to write.
pub fn line(session: u64, direction: Direction, bytes: &[u8]) -> String {
    match bytes.strip_suffix(b"\r\n") {
        Some(text) if !text.contains(&b'\r') && !text.contains(&b'\n') => {
            format!("{session} {}: {}\n", direction.tag(), escaped(text))
        }
        _ => format!("{session} {}! {}\n", direction.tag(), escaped(bytes)),
    }
}

/// What follows a line's session number and its space, for every kind of line: two lines
/// merged into one (a lost line end) show one of these inside the first line's text.
const LINE_KINDS: &[&str] = &[
    "C: ", "D: ", "S: ", "C! ", "D! ", "S! ", "session ", "end ", "tls ",
];

/// Where `text` holds the start of another line (`<digits> <kind>`): the position of the space
/// after the digits.
fn embedded_line_start(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    (1..bytes.len()).find(|&i| {
        bytes[i] == b' '
            && bytes[i - 1].is_ascii_digit()
            && LINE_KINDS.iter().any(|kind| {
                let after = &text[i + 1..];
                // The kind may also end the line (`1 C:` with an empty text, a bare `1 session`).
                after.starts_with(kind) || kind.strip_suffix(' ') == Some(after)
            })
    })
}

/// A line's text escaped, with the space of anything that would read as the start of another
/// line written `\x20`: so the reader can tell a line that swallowed the next one (a lost line
/// end) from one that only says something like it.
fn escaped(bytes: &[u8]) -> String {
    let mut text = escape(bytes);
    while let Some(at) = embedded_line_start(&text) {
        text.replace_range(at..=at, "\\x20");
    }
    text
}

/// The header line of a session.
pub fn session_header(session: u64, fields: &[(&str, String)]) -> String {
    let mut l = format!("{session} session");
    for (k, v) in fields {
        l.push_str(&format!(" {k}={}", v.replace(' ', "_")));
    }
    l.push('\n');
    l
}

/// What the client sent for one exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Nothing: the greeting.
    Greeting,
    /// One command line, line end included.
    Command(Vec<u8>),
    /// Message data lines, the final "." line included.
    Data(Vec<Vec<u8>>),
}

/// A request and the reply it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The cassette line the request starts on (the reply's first line for the greeting).
    pub line: usize,
    pub request: Request,
    /// The reply lines, line ends included; empty when the server closed without replying.
    pub reply: Vec<Vec<u8>>,
}

impl Exchange {
    /// The reply code, if there is a reply.
    pub fn reply_code(&self) -> Option<u16> {
        ReplyLine::parse(self.reply.first()?).map(|l| l.code)
    }

    /// True when the reply is all there: its last line ends the reply and ends in LF. A reply cut
    /// by the upstream closing is not.
    pub fn reply_is_complete(&self) -> bool {
        self.reply.last().is_some_and(|l| ReplyLine::ends_reply(l))
    }

    /// True when this is DATA answered 354: what the client sends next is message data, up to
    /// its final ".". The parser goes by this; the replay by the same rule in its
    /// `ServerSideObserver`.
    pub fn opens_data(&self) -> bool {
        matches!(&self.request, Request::Command(c) if *Command::parse(c).verb() == Verb::Data)
            && self.reply_is_complete()
            && self.reply_code() == Some(354)
    }

    /// The reply as it went on the wire.
    pub fn reply_bytes(&self) -> Vec<u8> {
        self.reply.concat()
    }
}

/// How a session's STARTTLS was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMark {
    /// No STARTTLS.
    #[default]
    None,
    /// Relayed encrypted: nothing after it was recorded.
    Passthrough,
    /// Terminated by the recorder: the rest was recorded in plaintext.
    Terminated,
}

/// One recorded session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CassetteSession {
    pub id: u64,
    /// `upstream`, `client`, `started` and whatever else the header holds.
    pub fields: BTreeMap<String, String>,
    pub exchanges: Vec<Exchange>,
    /// Whether and how STARTTLS happened.
    pub tls: TlsMark,
    /// Why it ended; `None` when the recorder stopped first.
    pub end: Option<String>,
}

/// A loaded cassette.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cassette {
    pub sessions: Vec<CassetteSession>,
    /// Where the file stopped in the middle of a line or an exchange (a killed recorder): the
    /// line number; everything before it was loaded.
    pub truncated_at: Option<usize>,
}

/// A malformed cassette.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CassetteError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.tag())
    }
}

/// A session being assembled while parsing.
struct Building {
    session: CassetteSession,
    /// Requests sent and not yet fully answered, oldest first (pipelining).
    waiting: VecDeque<Exchange>,
    /// A reply no request waits for (the greeting, a 421 at a timeout) being read.
    unsolicited: Option<Exchange>,
    /// Data lines since the last DATA reply.
    data: Vec<Vec<u8>>,
    data_line: usize,
    /// DATA got its 354 and the data's final "." has not come: `D:` lines may follow.
    data_open: bool,
    /// The first reply of the session has come: it is the greeting, whatever a client that
    /// talked first had sent before it.
    greeted: bool,
    /// The code of a reply after which the server closes (221, 421): no reply can follow it.
    closing: Option<u16>,
}

impl Building {
    fn new(session: CassetteSession) -> Self {
        Building {
            session,
            waiting: VecDeque::new(),
            unsolicited: None,
            data: Vec::new(),
            data_line: 0,
            data_open: false,
            greeted: false,
            closing: None,
        }
    }

    fn request(&mut self, line: usize, request: Request) {
        self.waiting.push_back(Exchange {
            line,
            request,
            reply: Vec::new(),
        });
    }

    fn client_line(&mut self, n: usize, bytes: Vec<u8>) {
        // A piece of an over-long line joins the piece before it.
        if let Some(Exchange {
            request: Request::Command(c),
            reply,
            ..
        }) = self.waiting.back_mut()
            && !c.ends_with(b"\n")
            && reply.is_empty()
        {
            c.extend_from_slice(&bytes);
            return;
        }
        self.request(n, Request::Command(bytes));
    }

    fn data_line(&mut self, n: usize, bytes: Vec<u8>) {
        match self.data.last_mut() {
            Some(last) if !last.ends_with(b"\n") => last.extend_from_slice(&bytes),
            _ => {
                if self.data.is_empty() {
                    self.data_line = n;
                }
                self.data.push(bytes);
            }
        }
        if self.data.last().is_some_and(|l| l == b".\r\n") {
            self.data_open = false;
            let lines = std::mem::take(&mut self.data);
            self.request(self.data_line, Request::Data(lines));
        }
    }

    fn server_line(&mut self, n: usize, bytes: Vec<u8>) {
        if !self.greeted && self.unsolicited.is_none() {
            // The greeting is owed before any request is answered.
            self.greeted = true;
            self.unsolicited = Some(Exchange {
                line: n,
                request: Request::Greeting,
                reply: Vec::new(),
            });
        }
        // A reply in progress that no request asked for (the greeting, a 421 at a timeout)
        // goes on; otherwise the oldest waiting request is answered; with none, or with only a
        // line the client has not finished (a server answers whole lines), one starts.
        let unfinished = matches!(
            self.waiting.front(),
            Some(Exchange { request: Request::Command(c), .. }) if !c.ends_with(b"\n")
        );
        let unprompted = self.unsolicited.is_some() || self.waiting.is_empty() || unfinished;
        let target = if unprompted {
            self.unsolicited.get_or_insert_with(|| Exchange {
                line: n,
                request: Request::Greeting,
                reply: Vec::new(),
            })
        } else {
            match self.waiting.front_mut() {
                Some(e) => e,
                None => return,
            }
        };
        match target.reply.last_mut() {
            Some(last) if !last.ends_with(b"\n") => last.extend_from_slice(&bytes),
            _ => target.reply.push(bytes),
        }
        if !target.reply_is_complete() {
            return;
        }
        let finished = if unprompted {
            self.unsolicited.take()
        } else {
            self.waiting.pop_front()
        };
        let Some(done) = finished else {
            return;
        };
        if let Some(code @ (221 | 421)) = done.reply_code() {
            self.closing = Some(code);
        }
        let opens_data = done.opens_data();
        self.session.exchanges.push(done);
        if opens_data {
            self.data_open = true;
            // Lines a client pipelined behind DATA (RFC 2920 forbids it, but a client may) were
            // written as commands before the 354 came; the server read them as message data, and
            // so does the replay.
            for e in std::mem::take(&mut self.waiting) {
                match e.request {
                    Request::Command(bytes) if self.data_open => self.data_line(e.line, bytes),
                    _ => self.waiting.push_back(e),
                }
            }
        }
    }

    /// The session ended (or TLS hid the rest): what waits is kept as it is, an unanswered
    /// request with no reply, so the replay closes there as the upstream did.
    fn flush(&mut self) {
        if let Some(e) = self.unsolicited.take() {
            self.session.exchanges.push(e);
        }
        if !self.data.is_empty() {
            let lines = std::mem::take(&mut self.data);
            self.request(self.data_line, Request::Data(lines));
        }
        self.session.exchanges.extend(self.waiting.drain(..));
    }
}

impl Cassette {
    /// Parses a cassette. Malformed lines are errors; a file that stops mid-way (no final line
    /// end, or a request without its reply) loads up to its last complete exchange.
    pub fn parse(text: &str) -> Result<Cassette, CassetteError> {
        let (lines, mut truncated_at) = whole_lines(text);
        check_version_line(&lines)?;
        let mut sessions = SessionsBeingRead::default();
        for (index, raw) in lines.iter().enumerate().skip(1) {
            let n = index + 1;
            let l = raw.strip_suffix('\r').unwrap_or(raw);
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (id, rest) = numbered(n, l)?;
            if let Some(fields) = rest.strip_prefix("session") {
                sessions.start(n, id, fields)?;
            } else {
                sessions.get(n, id)?.event(n, id, rest)?;
            }
        }
        Ok(Cassette {
            sessions: sessions.finish(&mut truncated_at),
            truncated_at,
        })
    }
}

/// An error on line `line`.
fn error_at(line: usize, message: String) -> CassetteError {
    CassetteError { line, message }
}

/// The text's complete lines, and the number of a partial last line (after the last '\n') if
/// there is one.
fn whole_lines(text: &str) -> (Vec<&str>, Option<usize>) {
    let mut lines: Vec<&str> = text.split('\n').collect();
    let mut truncated_at = None;
    // The text after the last '\n' is a partial line unless it is empty.
    if let Some(last) = lines.pop()
        && !last.is_empty()
    {
        truncated_at = Some(lines.len() + 1);
    }
    (lines, truncated_at)
}

/// The first line is the version line.
fn check_version_line(lines: &[&str]) -> Result<(), CassetteError> {
    match lines.first() {
        Some(first) if first.trim_end() == MAGIC => Ok(()),
        // The line itself is not shown: a file named by mistake may hold anything.
        Some(_) => Err(error_at(
            1,
            format!("the first line is not {MAGIC:?}: not a cassette, or another version"),
        )),
        None => Err(error_at(
            1,
            "the file is empty; a cassette starts with its version line".into(),
        )),
    }
}

/// Line `n`'s session number and the rest of it, which must hold no second line.
fn numbered(n: usize, l: &str) -> Result<(u64, &str), CassetteError> {
    let (id, rest) = l
        .split_once(' ')
        .ok_or_else(|| error_at(n, "a line without a session number".into()))?;
    let id: u64 = id
        .parse()
        .map_err(|_| error_at(n, "the line does not start with a session number".into()))?;
    // The recorder writes one event per line and escapes anything inside a text that
    // reads as the start of a line; so this is two lines whose line end was lost.
    if let Some(at) = embedded_line_start(rest) {
        let digits = rest[..at]
            .bytes()
            .rev()
            .take_while(u8::is_ascii_digit)
            .count();
        // 1-based, counted in the whole line: the session number and its space first.
        let column = l.len() - rest.len() + at - digits + 1;
        return Err(error_at(
            n,
            format!(
                "two lines merged into one: another line starts at column {column} (a \
                 lost line end; split the line there, or write the space after that \
                 number as \\x20 if the text is meant)"
            ),
        ));
    }
    Ok((id, rest))
}

/// The sessions read so far, in the order their `session` lines came.
#[derive(Default)]
struct SessionsBeingRead {
    building: BTreeMap<u64, Building>,
    order: Vec<u64>,
}

impl SessionsBeingRead {
    /// A `session` line on line `n`: session `id` begins with these header fields.
    fn start(&mut self, n: usize, id: u64, fields: &str) -> Result<(), CassetteError> {
        if self.building.contains_key(&id) {
            return Err(error_at(n, format!("session {id} starts twice")));
        }
        // Sessions are numbered as they begin, so headers come in number order.
        if self.order.last().is_some_and(|last| *last > id) {
            return Err(error_at(
                n,
                format!("session {id} starts after a session with a higher number"),
            ));
        }
        let mut map = BTreeMap::new();
        for f in fields.split_whitespace() {
            let (k, v) = f
                .split_once('=')
                .ok_or_else(|| error_at(n, "a header field that is not key=value".into()))?;
            map.insert(k.to_owned(), v.to_owned());
        }
        self.order.push(id);
        self.building.insert(
            id,
            Building::new(CassetteSession {
                id,
                fields: map,
                exchanges: Vec::new(),
                tls: TlsMark::None,
                end: None,
            }),
        );
        Ok(())
    }

    /// Session `id`, which line `n` uses: begun and not ended.
    fn get(&mut self, n: usize, id: u64) -> Result<&mut Building, CassetteError> {
        let b = self.building.get_mut(&id).ok_or_else(|| {
            error_at(n, format!("session {id} is used before its `session` line"))
        })?;
        if b.session.end.is_some() {
            return Err(error_at(
                n,
                format!("session {id} continues after its `end` line"),
            ));
        }
        Ok(b)
    }

    /// The sessions, in order; a session the recorder stopped in the middle of an exchange is
    /// loaded up to the last complete one, and where it stops goes in `truncated_at`.
    fn finish(mut self, truncated_at: &mut Option<usize>) -> Vec<CassetteSession> {
        let mut sessions = Vec::new();
        for id in self.order {
            let Some(mut b) = self.building.remove(&id) else {
                continue;
            };
            if b.session.end.is_some() || b.session.tls == TlsMark::Passthrough {
                b.flush();
            } else if let Some(e) = b.waiting.front().or(b.unsolicited.as_ref()) {
                // The recorder stopped mid-exchange: load up to the last complete one.
                truncated_at.get_or_insert(e.line);
            } else if !b.data.is_empty() {
                truncated_at.get_or_insert(b.data_line);
            }
            sessions.push(b.session);
        }
        sessions
    }
}

impl Building {
    /// Line `n` of session `id`, after its number: an `end`, a `tls`, or a C:, D:, S: line.
    fn event(&mut self, n: usize, id: u64, rest: &str) -> Result<(), CassetteError> {
        if let Some(reason) = rest.strip_prefix("end ") {
            return self.end(n, reason.trim());
        }
        if self.session.tls == TlsMark::Passthrough {
            return Err(error_at(
                n,
                format!("session {id} continues after `tls passthrough`, which hides the rest"),
            ));
        }
        match rest {
            "tls passthrough" => {
                self.flush();
                self.session.tls = TlsMark::Passthrough;
                Ok(())
            }
            "tls terminate" => {
                self.session.tls = TlsMark::Terminated;
                Ok(())
            }
            _ => self.tagged(n, rest),
        }
    }

    /// An `end` line with this reason.
    fn end(&mut self, n: usize, reason: &str) -> Result<(), CassetteError> {
        if !END_REASONS.contains(&reason) {
            return Err(error_at(
                n,
                format!(
                    "an `end` line with an unknown reason; a recorder writes one of {}",
                    END_REASONS.join(", ")
                ),
            ));
        }
        self.flush();
        self.session.end = Some(reason.to_owned());
        Ok(())
    }

    /// A C:, D: or S: line (`!` for one without its line end).
    fn tagged(&mut self, n: usize, rest: &str) -> Result<(), CassetteError> {
        let (tag, exact, text) = match rest.as_bytes() {
            [t @ (b'C' | b'D' | b'S'), b':', b' ', ..] => (*t, false, &rest[3..]),
            [t @ (b'C' | b'D' | b'S'), b':'] => (*t, false, ""),
            [t @ (b'C' | b'D' | b'S'), b'!', b' ', ..] => (*t, true, &rest[3..]),
            _ => {
                return Err(error_at(
                    n,
                    "not a C:, D:, S:, session, tls or end line".into(),
                ));
            }
        };
        let mut bytes = unescape(text).map_err(|e| error_at(n, e.to_string()))?;
        if !exact {
            bytes.extend_from_slice(b"\r\n");
        }
        // Message data is what follows a 354 to DATA, up to its final "."; the recorder
        // writes nothing else there, and the replay could not replay anything else.
        match tag {
            b'D' if !self.data_open => Err(error_at(
                n,
                "message data without a 354 reply to DATA before it".into(),
            )),
            b'C' if self.data_open => Err(error_at(
                n,
                "a command line inside message data (before its final \".\")".into(),
            )),
            b'C' => {
                self.client_line(n, bytes);
                Ok(())
            }
            b'D' => {
                self.data_line(n, bytes);
                Ok(())
            }
            _ => self.checked_server_line(n, bytes),
        }
    }

    /// An S: line, which must come before any closing reply and start with a code unless it
    /// continues a piece.
    fn checked_server_line(&mut self, n: usize, bytes: Vec<u8>) -> Result<(), CassetteError> {
        // The replay closes after such a reply, as the server did.
        if let Some(code) = self.closing {
            return Err(error_at(
                n,
                format!(
                    "a reply after the server's {code}, after which it closes the \
                     connection (a line moved or doubled?)"
                ),
            ));
        }
        let continues_a_piece = self
            .unsolicited
            .as_ref()
            .or(self.waiting.front())
            .and_then(|e| e.reply.last())
            .is_some_and(|l| !l.ends_with(b"\n"));
        if !continues_a_piece && ReplyLine::parse(&bytes).is_none() {
            return Err(error_at(
                n,
                "a reply line that does not start with a three-digit code".into(),
            ));
        }
        self.server_line(n, bytes);
        Ok(())
    }
}

/// A cassette of one session with these lines and, if given, this `end` reason (for tests).
#[cfg(test)]
pub(crate) fn one_session(id: u64, lines: &[(Direction, &[u8])], end: Option<&str>) -> String {
    let mut t = format!("{MAGIC}\n{}", session_header(id, &[]));
    for (d, l) in lines {
        t.push_str(&line(id, *d, l));
    }
    if let Some(reason) = end {
        t.push_str(&format!("{id} end {reason}\n"));
    }
    t
}

/// The fuzz counterexample (seed `07728455...` in `tests/proptest-regressions`): a DATA the
/// client sent before the greeting, answered 250, not 354; the file cut after the 334 that
/// answers the EHLO, with the AUTH pipelined behind it still unanswered.
#[cfg(test)]
pub(crate) const DATA_REFUSED_THEN_CUT: &str = "etrn-harness cassette v1
1 session
1 C: DATA
1 S: 220 mx.test ESMTP
1 C: EHLO c.example
1 S: 250-mx.test
1 S: 250 ETRN
1 C: AUTH PLAIN
1 S: 334 
";

/// The largest cassette file read: a recording of some hundred thousand sessions. A cassette is
/// held in memory to replay, so the cap bounds that too.
pub const MAX_CASSETTE_FILE: u64 = 256 * 1024 * 1024;

/// Why a cassette file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadCassetteError {
    /// Not a regular file, too large, unreadable.
    #[error(transparent)]
    Read(#[from] crate::files::ReadFileError),
    /// Malformed: the line and what is wrong with it, never the line's text.
    #[error("{path}:{}: {}", source.line, source.message)]
    Parse { path: String, source: CassetteError },
}

impl LoadCassetteError {
    /// Why, in a few words, without the path (for messages that name it themselves) and never a
    /// line of the file.
    pub fn reason(&self) -> String {
        match self {
            LoadCassetteError::Read(e) => e.reason(),
            LoadCassetteError::Parse { source, .. } => source.to_string(),
        }
    }
}

/// Reads and parses the cassette at `path`: a regular file only (a FIFO or device is refused
/// before any read, so nothing blocks), at most [`MAX_CASSETTE_FILE`] octets, a byte that is not
/// UTF-8 named by its line. Blocking: call it off the runtime's workers.
pub fn load_cassette(path: &Path) -> Result<Cassette, LoadCassetteError> {
    let bytes = crate::files::read_regular_bytes(path, MAX_CASSETTE_FILE)?;
    parse_cassette(&bytes, path)
}

/// Parses a cassette already read from `path` (named in errors with the line at fault).
pub fn parse_cassette(bytes: &[u8], path: &Path) -> Result<Cassette, LoadCassetteError> {
    let parse_error = |source| LoadCassetteError::Parse {
        path: path.display().to_string(),
        source,
    };
    let text = text_of(bytes).map_err(parse_error)?;
    Cassette::parse(text).map_err(parse_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        let mut t = format!("{MAGIC}\n");
        t.push_str(&session_header(1, &[("upstream", "127.0.0.1:25".into())]));
        for (d, l) in [
            (Direction::Server, &b"220 mx.test ESMTP\r\n"[..]),
            (Direction::Client, b"EHLO c\r\n"),
            (Direction::Server, b"250-mx.test\r\n"),
            (Direction::Server, b"250 ETRN\r\n"),
            (Direction::Client, b"ETRN a.example\n"),
            (Direction::Server, b"250 Queuing started\r\n"),
            (Direction::Client, b"DATA\r\n"),
            (Direction::Server, b"354 go\r\n"),
            (Direction::Data, b"hello \xff\r\n"),
            (Direction::Data, b".\r\n"),
            (Direction::Server, b"250 Ok\r\n"),
        ] {
            t.push_str(&line(1, d, l));
        }
        t.push_str("1 end quit\n");
        t
    }

    #[test]
    fn writes_and_parses_back_byte_for_byte() {
        let text = sample();
        assert!(text.contains("1 C! ETRN a.example\\n\n"), "{text}");
        assert!(text.contains("1 D: hello \\xff\n"), "{text}");
        let c = Cassette::parse(&text).unwrap();
        assert_eq!(c.truncated_at, None);
        let s = &c.sessions[0];
        assert_eq!(s.fields["upstream"], "127.0.0.1:25");
        assert_eq!(s.exchanges.len(), 5);
        assert_eq!(s.exchanges[0].request, Request::Greeting);
        assert_eq!(s.exchanges[1].reply_bytes(), b"250-mx.test\r\n250 ETRN\r\n");
        assert_eq!(
            s.exchanges[2].request,
            Request::Command(b"ETRN a.example\n".to_vec())
        );
        assert_eq!(
            s.exchanges[4].request,
            Request::Data(vec![b"hello \xff\r\n".to_vec(), b".\r\n".to_vec()])
        );
        assert_eq!(s.exchanges[4].reply_code(), Some(250));
        assert_eq!(s.end.as_deref(), Some("quit"));
    }

    #[test]
    fn a_cassette_cut_mid_line_or_mid_exchange_loads_up_to_the_last_complete_exchange() {
        let text = sample();
        let cut = &text[..text.find("1 S: 250 Queuing").unwrap() + 6];
        let c = Cassette::parse(cut).unwrap();
        assert_eq!(c.sessions[0].exchanges.len(), 2, "greeting and EHLO");
        assert!(c.truncated_at.is_some());
        let cut = &text[..text.find("1 S: 250 Queuing").unwrap()];
        let c = Cassette::parse(cut).unwrap();
        assert_eq!(c.sessions[0].exchanges.len(), 2);
        assert_eq!(c.truncated_at, Some(7), "the ETRN without its reply");
    }

    #[test]
    fn structure_is_checked_and_no_error_shows_the_files_text() {
        // A file named by mistake: its first line is never echoed.
        let e = Cassette::parse("root:x:0:0:root:/root:/bin/bash\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(!e.to_string().contains("root"), "{e}");
        let e = Cassette::parse(&format!("{MAGIC}\n1 session\n1 end bogus-reason\n")).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(
            e.message.contains("unknown reason") && !e.message.contains("bogus"),
            "{e}"
        );
        let e = Cassette::parse(&format!("{MAGIC}\n2 session\n1 session\n")).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        let e = Cassette::parse(&format!("{MAGIC}\n1 session\n1 X: secret\n")).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        for reason in END_REASONS {
            let ok = format!("{MAGIC}\n1 session\n1 end {reason}\n");
            assert!(Cassette::parse(&ok).is_ok(), "{reason}");
        }
    }

    #[test]
    fn the_first_reply_is_the_greeting_even_after_a_client_that_talked_first() {
        let text = format!(
            "{MAGIC}\n1 session\n1 C: EHLO x\n1 S: 220-hi\n1 C: ETRN a\n1 S: 220 there\n1 S: 250 ok\n1 S: 250 queued\n"
        );
        let c = Cassette::parse(&text).unwrap();
        let e = &c.sessions[0].exchanges;
        assert_eq!(e[0].request, Request::Greeting);
        assert_eq!(e[0].reply_bytes(), b"220-hi\r\n220 there\r\n");
        assert_eq!(e[1].request, Request::Command(b"EHLO x\r\n".to_vec()));
        assert_eq!(e[1].reply_code(), Some(250));
        assert_eq!(e[2].request, Request::Command(b"ETRN a\r\n".to_vec()));
        assert_eq!(e[2].reply_bytes(), b"250 queued\r\n");
    }

    #[test]
    fn message_data_only_follows_a_354_to_data_up_to_its_final_dot() {
        let head = format!("{MAGIC}\n1 session\n1 S: 220 ok\n");
        let e = Cassette::parse(&format!("{head}1 D: Subject: x\n")).unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.message.contains("354"), "{e}");
        let e = Cassette::parse(&format!("{head}1 C: DATA\n1 S: 250 no\n1 D: .\n")).unwrap_err();
        assert_eq!(e.line, 6);
        let e = Cassette::parse(&format!(
            "{head}1 C: DATA\n1 S: 354 go\n1 D: x\n1 C: QUIT\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, 7);
        assert!(e.message.contains("inside message data"), "{e}");
        let ok = format!("{head}1 C: DATA\n1 S: 354 go\n1 D: x\n1 D: .\n1 S: 250 q\n1 C: QUIT\n");
        assert!(Cassette::parse(&ok).is_ok());
    }

    #[test]
    fn a_byte_that_is_not_utf8_is_named_by_its_line() {
        let mut bytes = format!("{MAGIC}\n1 session\n1 C: EHLO ").into_bytes();
        bytes.extend_from_slice(b"\xff\xfe\n");
        let e = text_of(&bytes).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(text_of(b"ok\nfine\n").is_ok());
    }

    #[test]
    fn malformed_lines_name_their_line_number() {
        assert_eq!(Cassette::parse("nope\n").unwrap_err().line, 1);
        let bad = format!("{MAGIC}\n1 session\n1 X: what\n");
        let e = Cassette::parse(&bad).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("not a C:, D:, S:"), "{e}");
        let bad = format!("{MAGIC}\n2 C: EHLO x\n");
        assert_eq!(Cassette::parse(&bad).unwrap_err().line, 2);
        let bad = format!("{MAGIC}\n1 session\n1 S: OK\n");
        assert!(
            Cassette::parse(&bad)
                .unwrap_err()
                .message
                .contains("three-digit")
        );
        let bad = format!("{MAGIC}\n1 session\n1 C: a\\q\n");
        assert_eq!(Cassette::parse(&bad).unwrap_err().line, 3);
    }

    #[test]
    fn a_reply_after_221_or_421_is_refused_at_its_line() {
        for code in [221, 421] {
            let text = format!(
                "{MAGIC}\n1 session\n1 S: 220 mx\n1 C: NOOP\n1 S: {code} bye\n1 S: 250 ok\n"
            );
            let e = Cassette::parse(&text).unwrap_err();
            assert_eq!(e.line, 6, "{e}");
            assert!(
                e.message.contains(&format!("after the server's {code}")),
                "{e}"
            );
        }
        // Client lines may follow (pipelined before the client saw the reply).
        let ok = format!(
            "{MAGIC}\n1 session\n1 S: 220 mx\n1 C: QUIT\n1 C: NOOP\n1 S: 221 bye\n1 end quit\n"
        );
        assert!(Cassette::parse(&ok).is_ok());
    }

    #[test]
    fn a_reply_while_the_client_is_mid_line_answers_nothing_it_sent() {
        // The upstream timed out a client that stopped mid-line: the 421 is unprompted.
        let text = format!(
            "{MAGIC}\n1 session\n1 S: 220 mx\n1 C! ETRN a.ex\n1 S: 421 timeout\n1 end upstream-closed\n"
        );
        let e = &Cassette::parse(&text).unwrap().sessions[0].exchanges;
        assert_eq!(e[1].request, Request::Greeting);
        assert_eq!(e[1].reply_code(), Some(421));
        assert_eq!(e[2].request, Request::Command(b"ETRN a.ex".to_vec()));
        assert!(e[2].reply.is_empty());
    }

    #[test]
    fn lines_pipelined_behind_data_are_message_data_once_354_comes() {
        let text = format!(
            "{MAGIC}\n1 session\n1 S: 220 mx\n1 C: DATA\n1 C: Subject: x\n1 S: 354 go\n1 D: .\n1 S: 250 queued\n1 end quit\n"
        );
        let e = &Cassette::parse(&text).unwrap().sessions[0].exchanges;
        assert!(e[1].opens_data());
        assert_eq!(
            e[2].request,
            Request::Data(vec![b"Subject: x\r\n".to_vec(), b".\r\n".to_vec()])
        );
        assert_eq!(e[2].reply_code(), Some(250));
        // 354 to anything but DATA opens nothing.
        let text = format!("{MAGIC}\n1 session\n1 S: 220 mx\n1 C: NOOP\n1 S: 354 odd\n1 D: x\n");
        assert_eq!(Cassette::parse(&text).unwrap_err().line, 6);
    }

    #[test]
    fn data_not_answered_354_opens_nothing_and_a_cut_session_loads_its_complete_exchanges() {
        let c = Cassette::parse(DATA_REFUSED_THEN_CUT).unwrap();
        let e = &c.sessions[0].exchanges;
        let pairs: Vec<(Request, Vec<u8>)> = e
            .iter()
            .map(|e| (e.request.clone(), e.reply_bytes()))
            .collect();
        assert_eq!(
            pairs,
            [
                (Request::Greeting, b"220 mx.test ESMTP\r\n".to_vec()),
                (
                    Request::Command(b"DATA\r\n".to_vec()),
                    b"250-mx.test\r\n250 ETRN\r\n".to_vec()
                ),
                (
                    Request::Command(b"EHLO c.example\r\n".to_vec()),
                    b"334 \r\n".to_vec()
                ),
            ]
        );
        assert!(
            !e[1].opens_data(),
            "DATA answered 250 opens no message data"
        );
        // The AUTH has no reply in the file: the recorder stopped before it came.
        assert_eq!(c.truncated_at, Some(8));
        // A refused DATA is followed by commands: a 503, then NOOP answered, then the cut.
        let text = format!(
            "{MAGIC}\n1 session\n1 S: 220 mx\n1 C: DATA\n1 S: 503 need RCPT\n1 C: NOOP\n1 S: 250 ok\n1 C: QUIT\n"
        );
        let c = Cassette::parse(&text).unwrap();
        let e = &c.sessions[0].exchanges;
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!(e[2].request, Request::Command(b"NOOP\r\n".to_vec()));
        assert_eq!(c.truncated_at, Some(8), "the QUIT without its reply");
    }

    #[test]
    fn two_lines_merged_are_refused_and_a_text_that_reads_like_a_line_is_escaped() {
        let e =
            Cassette::parse(&format!("{MAGIC}\n1 session\n1 S: 220 mx1 C: EHLO x\n")).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(
            e.message.contains("two lines merged") && e.message.contains("column 12"),
            "{e}"
        );
        let e = Cassette::parse(&format!("{MAGIC}\n1 session\n1 end quit2 session\n")).unwrap_err();
        assert!(e.message.contains("two lines merged"), "{e}");
        for said in [
            &b"NOOP 2 D: x\r\n"[..],
            b"250 1 end here\r\n",
            b"x 9 C:\r\n",
            b"7 session",
        ] {
            let l = line(1, Direction::Client, said);
            assert_eq!(embedded_line_start(&l[2..]), None, "{l}");
            let text = format!("{MAGIC}\n1 session\n{l}1 end client-closed\n");
            let c = Cassette::parse(&text).unwrap();
            let Request::Command(c) = &c.sessions[0].exchanges[0].request else {
                panic!("{text}");
            };
            assert_eq!(c, said);
        }
        // Nothing that merely has digits before a space is touched.
        assert_eq!(
            line(1, Direction::Server, b"250 2 sessions ok\r\n"),
            "1 S: 250 2 sessions ok\n"
        );
    }

    #[test]
    fn pipelined_commands_before_their_replies_pair_in_order() {
        let t = one_session(
            7,
            &[
                (Direction::Server, &b"220 mx\r\n"[..]),
                (Direction::Client, b"EHLO c\r\n"),
                (Direction::Server, b"250 ok\r\n"),
                (Direction::Client, b"ETRN a\r\n"),
                (Direction::Client, b"ETRN b\r\n"),
                (Direction::Client, b"QUIT\r\n"),
                (Direction::Server, b"250 a queued\r\n"),
                (Direction::Server, b"458 b refused\r\n"),
                (Direction::Server, b"221 bye\r\n"),
            ],
            Some("quit"),
        );
        let c = Cassette::parse(&t).unwrap();
        let pairs: Vec<(Request, Vec<u8>)> = c.sessions[0]
            .exchanges
            .iter()
            .map(|e| (e.request.clone(), e.reply_bytes()))
            .collect();
        assert_eq!(
            pairs[2..],
            [
                (
                    Request::Command(b"ETRN a\r\n".to_vec()),
                    b"250 a queued\r\n".to_vec()
                ),
                (
                    Request::Command(b"ETRN b\r\n".to_vec()),
                    b"458 b refused\r\n".to_vec()
                ),
                (
                    Request::Command(b"QUIT\r\n".to_vec()),
                    b"221 bye\r\n".to_vec()
                ),
            ]
        );
    }

    #[test]
    fn pieces_of_long_or_cut_lines_join_up_and_numbers_are_64_bit() {
        let big = u64::MAX;
        let mut t = format!("{MAGIC}\n{}", session_header(big, &[]));
        t.push_str(&line(big, Direction::Server, b"220 mx\r\n"));
        t.push_str(&line(big, Direction::Client, b"NOOP aaaa"));
        t.push_str(&line(big, Direction::Client, b"bbbb\r\n"));
        t.push_str(&line(big, Direction::Server, b"250 Queu"));
        t.push_str(&format!("{big} end upstream-closed\n"));
        let c = Cassette::parse(&t).unwrap();
        let s = &c.sessions[0];
        assert_eq!(s.id, u64::MAX);
        assert_eq!(
            s.exchanges[1].request,
            Request::Command(b"NOOP aaaabbbb\r\n".to_vec())
        );
        assert_eq!(s.exchanges[1].reply_bytes(), b"250 Queu");
        assert!(
            !s.exchanges[1].reply_is_complete(),
            "the upstream left mid-reply"
        );
    }
}
