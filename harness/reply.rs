//! SMTP reply codes and replies: the server's half of the wire vocabulary.
//!
//! A scenario writes a reply as one string, `"250 OK, queuing for node {node} started"`; a
//! multi-line reply separates its lines with `\n` (`"250 first\nsecond"` goes on the wire as
//! `250-first` / `250 second`). `{node}` in the text stands for the node name the client sent,
//! which lets one default reply serve every domain; [`PLACEHOLDERS`] lists the others.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::rejection::Rejection;
use crate::wire::command::trim_line_end;
use crate::wire::{Frame, LineFramer, ReplyLine};

/// A three-digit SMTP reply code (RFC 5321 §4.2), 200 to 599.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ReplyCode(u16);

impl ReplyCode {
    pub const OK: ReplyCode = ReplyCode(250);
    pub const CLOSING: ReplyCode = ReplyCode(421);

    /// A code in 200..=599 with a second digit of 0 to 5 (RFC 5321 §4.2.1).
    pub fn new(code: u16) -> Option<Self> {
        ((200..=599).contains(&code) && (code / 10) % 10 <= 5).then_some(ReplyCode(code))
    }

    /// A code written in the program. In a `const` context (as [`reply_code!`](crate::reply_code)
    /// puts it) an invalid code is a compile error, so none can silently become another.
    pub const fn of(code: u16) -> Self {
        assert!(
            code >= 200 && code <= 599 && (code / 10) % 10 <= 5,
            "not an SMTP reply code (RFC 5321 §4.2.1)"
        );
        ReplyCode(code)
    }

    pub fn get(self) -> u16 {
        self.0
    }

    /// 2yz: positive completion.
    pub fn is_positive(self) -> bool {
        self.0 / 100 == 2
    }
}

impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A [`ReplyCode`] checked when the program is compiled: `reply_code!(250)`.
#[macro_export]
macro_rules! reply_code {
    ($code:literal) => {
        const { $crate::reply::ReplyCode::of($code) }
    };
}

/// Why a reply text is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply {text:?} does not start with a three-digit code")]
    NoCode { text: String },
    #[error("reply code {code} is outside 200..=599 (RFC 5321 §4.2.1)")]
    BadCode { code: u16 },
    #[error("reply {text:?}: the code must be followed by a space")]
    NoSpace { text: String },
    #[error("reply {text:?} contains a carriage return or a control character")]
    Control { text: String },
    #[error(
        "reply {text:?} uses placeholder {{{name}}}; the known ones are {{host}}, {{client}}, {{client_ip}}, {{date}}, {{arg}}, {{node}}, {{arg7}}, {{from}} and {{command}}"
    )]
    UnknownPlaceholder { text: String, name: String },
}

impl ReplyError {
    pub fn fix(&self) -> &'static str {
        match self {
            ReplyError::NoCode { .. } | ReplyError::NoSpace { .. } => {
                "write the code, a space and the text, e.g. \"250 OK, queuing for node {node} started\""
            }
            ReplyError::BadCode { .. } => "use a reply code from 200 to 599, e.g. 250, 458, 501",
            ReplyError::Control { .. } => {
                "separate the lines of a multi-line reply with \\n only; the server adds CRLF"
            }
            ReplyError::UnknownPlaceholder { .. } => {
                "write {node} for the node name the client sent (see the README's profile section), or remove the braces"
            }
        }
    }
}

/// The placeholders a reply text may use; the session fills them in
/// ([`crate::proto::Placeholders`]).
pub const PLACEHOLDERS: &[&str] = &[
    "host",
    "client",
    "client_ip",
    "date",
    "arg",
    "node",
    "arg7",
    "from",
    "command",
];

/// A placeholder a reply text may use: `{node}` is [`Placeholder::Node`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    Host,
    Client,
    ClientIp,
    Date,
    Arg,
    Node,
    Arg7,
    From,
    Command,
}

impl Placeholder {
    /// Every placeholder, in the order of [`PLACEHOLDERS`].
    pub const ALL: [Placeholder; 9] = [
        Placeholder::Host,
        Placeholder::Client,
        Placeholder::ClientIp,
        Placeholder::Date,
        Placeholder::Arg,
        Placeholder::Node,
        Placeholder::Arg7,
        Placeholder::From,
        Placeholder::Command,
    ];

    /// The placeholder `{name}` stands for, if any.
    pub fn named(name: &str) -> Option<Placeholder> {
        let index = PLACEHOLDERS.iter().position(|known| *known == name)?;
        Placeholder::ALL.get(index).copied()
    }

    /// Its name, as written between the braces.
    pub fn name(self) -> &'static str {
        PLACEHOLDERS[self as usize]
    }
}

/// A piece of a reply line: its own text (a byte range of the line), or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(Range<usize>),
    Value(Placeholder),
}

/// Cuts `text` at its placeholders, handing each piece to `piece` in order: `{name}` for a
/// [`Placeholder`] name is one [`Piece::Value`]; everything else, a brace that opens no
/// placeholder included, is text (`{x{node}` is the text `{x` and the value `{node}`).
pub fn cut_at_placeholders(text: &str, mut piece: impl FnMut(Piece)) {
    let bytes = text.as_bytes();
    let mut text_from = 0;
    let mut at = 0;
    while let Some(open) = bytes[at..].iter().position(|b| *b == b'{') {
        let after = at + open + 1;
        // `{` and `}` are ASCII, so every cut is at a character boundary.
        let named = bytes[after..]
            .iter()
            .position(|b| *b == b'}')
            .and_then(|close| Some((close, Placeholder::named(&text[after..after + close])?)));
        match named {
            Some((close, value)) => {
                if text_from < after - 1 {
                    piece(Piece::Text(text_from..after - 1));
                }
                piece(Piece::Value(value));
                at = after + close + 1;
                text_from = at;
            }
            None => at = after,
        }
    }
    if text_from < bytes.len() {
        piece(Piece::Text(text_from..bytes.len()));
    }
}

/// A reply's lines cut at their placeholders once, when the reply is read from a profile or a
/// script, so that a reply filled for every ETRN is not searched for braces every time; and,
/// when it has no placeholder at all, its bytes on the wire, the same every time it is sent.
#[derive(Debug)]
pub struct Template {
    lines: Vec<Vec<Piece>>,
    fixed_wire: Option<Box<[u8]>>,
    quoting: Option<Arc<Quoting>>,
}

/// A one-line reply whose one placeholder is the ETRN argument, `{arg}` or `{node}` (every
/// profile's ETRN reply, `250 OK, queuing for node {node} started`): its text before the
/// argument and after it, cut once, so the session can write it around the argument and hand
/// the recorder the two parts it packs such a reply as, without making the line.
#[derive(Debug)]
pub(crate) struct Quoting {
    /// [`Placeholder::Arg`] or [`Placeholder::Node`].
    pub(crate) placeholder: Placeholder,
    /// The reply's code.
    pub(crate) code: u16,
    /// The text before the argument and after it: shared by every reply filled from this one.
    pub(crate) around: Arc<[String]>,
    /// The bytes on the wire before the argument (the code, a space, the text before it) and
    /// after it (the text after it, CRLF): a reply around an argument is three copies.
    pub(crate) wire_before: Box<[u8]>,
    pub(crate) wire_after: Box<[u8]>,
}

impl Quoting {
    fn of(code: ReplyCode, line: &str, pieces: &[Piece]) -> Option<Quoting> {
        let text = |range: &Range<usize>| line.get(range.clone()).map(str::to_owned);
        let (before, value, after) = match pieces {
            [Piece::Value(v)] => (String::new(), *v, String::new()),
            [Piece::Text(b), Piece::Value(v)] => (text(b)?, *v, String::new()),
            [Piece::Value(v), Piece::Text(a)] => (String::new(), *v, text(a)?),
            [Piece::Text(b), Piece::Value(v), Piece::Text(a)] => (text(b)?, *v, text(a)?),
            _ => return None,
        };
        if !matches!(value, Placeholder::Arg | Placeholder::Node) {
            return None;
        }
        let wire_before = format!("{code} {before}").into_bytes().into_boxed_slice();
        let wire_after = format!("{after}\r\n").into_bytes().into_boxed_slice();
        Some(Quoting {
            placeholder: value,
            code: code.get(),
            around: Arc::from([before, after]),
            wire_before,
            wire_after,
        })
    }
}

impl Template {
    fn of(reply: &Reply) -> Template {
        let lines: Vec<Vec<Piece>> = reply
            .lines
            .iter()
            .map(|line| {
                let mut pieces = Vec::new();
                cut_at_placeholders(line, |p| pieces.push(p));
                pieces
            })
            .collect();
        let fixed = lines.iter().flatten().all(|p| matches!(p, Piece::Text(_)));
        let quoting = match (reply.lines.as_slice(), lines.as_slice()) {
            ([line], [pieces]) => Quoting::of(reply.code, line, pieces).map(Arc::new),
            _ => None,
        };
        Template {
            quoting,
            lines,
            fixed_wire: fixed.then(|| reply.render().into_boxed_slice()),
        }
    }

    /// Each line's pieces, in the reply's order.
    pub fn lines(&self) -> &[Vec<Piece>] {
        &self.lines
    }

    /// True when no line has a placeholder: filling changes nothing.
    pub fn is_fixed(&self) -> bool {
        self.fixed_wire.is_some()
    }

    /// The reply's text around the ETRN argument, when it is one line quoting only that.
    pub(crate) fn quoting(&self) -> Option<&Arc<Quoting>> {
        self.quoting.as_ref()
    }
}

/// A complete reply: a code and one or more lines of text.
#[derive(Clone)]
pub struct Reply {
    code: ReplyCode,
    lines: Vec<String>,
    /// The lines cut at their placeholders, for a reply read from text ([`Reply::parse`]), which
    /// is one a server keeps and fills again and again; shared by its copies.
    template: Option<Arc<Template>>,
}

impl PartialEq for Reply {
    /// The code and the lines: the template is made of the lines.
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code && self.lines == other.lines
    }
}
impl Eq for Reply {}

impl Reply {
    pub fn new(code: ReplyCode, text: impl Into<String>) -> Self {
        Reply {
            code,
            lines: vec![text.into()],
            template: None,
        }
    }

    pub fn parse(text: &str) -> Result<Self, ReplyError> {
        let digits = text
            .get(..3)
            .filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
        let Some(digits) = digits else {
            return Err(ReplyError::NoCode { text: text.into() });
        };
        let number: u16 = digits
            .parse()
            .map_err(|_| ReplyError::NoCode { text: text.into() })?;
        let code = ReplyCode::new(number).ok_or(ReplyError::BadCode { code: number })?;
        let rest = &text[3..];
        let first = match rest.strip_prefix(' ') {
            Some(r) => r,
            None if rest.is_empty() => "",
            None => return Err(ReplyError::NoSpace { text: text.into() }),
        };
        if text.chars().any(|c| c.is_control() && c != '\n') {
            return Err(ReplyError::Control { text: text.into() });
        }
        let mut braces = first;
        while let Some(start) = braces.find('{') {
            let after = &braces[start + 1..];
            let end = after.find('}').unwrap_or(after.len());
            let name = &after[..end];
            if !PLACEHOLDERS.contains(&name) {
                return Err(ReplyError::UnknownPlaceholder {
                    text: text.into(),
                    name: name.into(),
                });
            }
            braces = &after[end..];
        }
        let mut reply = Reply {
            code,
            lines: first.split('\n').map(str::to_owned).collect(),
            template: None,
        };
        reply.template = Some(Arc::new(Template::of(&reply)));
        Ok(reply)
    }

    /// A reply of `lines` as they are (one empty line when there are none): built at once, not
    /// a line at a time as [`Reply::with_line`] builds it.
    pub(crate) fn of_lines(code: ReplyCode, mut lines: Vec<String>) -> Self {
        if lines.is_empty() {
            lines.push(String::new());
        }
        Reply {
            code,
            lines,
            template: None,
        }
    }

    /// The reply with one more line.
    pub fn with_line(mut self, line: impl Into<String>) -> Self {
        self.lines.push(line.into());
        // The template was of the old lines.
        self.template = None;
        self
    }

    /// The lines cut at their placeholders, when the reply was read from text.
    pub fn template(&self) -> Option<&Template> {
        self.template.as_deref()
    }

    /// [`Reply::to_wire`] as bytes; a reply without placeholders read from text has them ready.
    pub fn wire_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_wire(&mut out);
        out
    }

    /// [`Reply::wire_bytes`] appended to `out`: a server writes its replies into one buffer.
    pub fn write_wire(&self, out: &mut Vec<u8>) {
        match self.template().and_then(|t| t.fixed_wire.as_deref()) {
            Some(wire) => out.extend_from_slice(wire),
            None => self.render_into(out),
        }
    }

    pub fn code(&self) -> ReplyCode {
        self.code
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    pub fn is_multiline(&self) -> bool {
        self.lines.len() > 1
    }

    /// The lines, taken out of the reply.
    pub fn into_lines(self) -> Vec<String> {
        self.lines
    }

    /// The bytes on the wire: `250-a\r\n250 b\r\n`.
    pub fn to_wire(&self) -> String {
        // The lines are text and the code's digits ASCII, so this is always UTF-8.
        String::from_utf8(self.render()).unwrap_or_default()
    }

    /// The bytes on the wire, in a buffer of their own.
    fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.render_into(&mut out);
        out
    }

    /// The bytes on the wire, appended to `out` with room made once, without `format!`: every
    /// reply the server sends goes through here.
    fn render_into(&self, out: &mut Vec<u8>) {
        let code = self.code.get();
        // A ReplyCode has three digits (200..=599).
        let digits = [code / 100, code / 10 % 10, code % 10].map(|d| b'0' + d as u8);
        let size: usize = self.lines.iter().map(|l| l.len() + 6).sum();
        out.reserve(size);
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            out.extend_from_slice(&digits);
            if i != last {
                out.push(b'-');
                out.extend_from_slice(line.as_bytes());
            } else if !line.is_empty() {
                out.push(b' ');
                out.extend_from_slice(line.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        let text = self.lines.join("\n");
        if !text.is_empty() {
            write!(f, " {text}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reply({:?})", self.to_string())
    }
}

impl FromStr for Reply {
    type Err = ReplyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reply::parse(s)
    }
}

impl Serialize for Reply {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reply {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Reply::parse(&s).map_err(|e| Rejection::invalid(&e, e.fix()).into_de_error())
    }
}

impl schemars::JsonSchema for Reply {
    fn schema_name() -> Cow<'static, str> {
        "Reply".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[2-5][0-5][0-9]( .*)?$",
            "description": "An SMTP reply: a code, a space and the text; lines of a multi-line reply separated by \\n; {node} stands for the node name sent"
        })
    }
}

/// Longest reply line a [`ReplyReader`] accepts, CRLF included (RFC 5321 §4.5.3.1.5 allows 512;
/// real servers send longer EHLO lines, so there is room, but not without bound).
pub const MAX_REPLY_LINE: usize = 4096;

/// Why bytes from a server are not a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyLineError {
    #[error("malformed reply line {line:?}: {reason}")]
    Malformed { line: String, reason: &'static str },
    #[error("a reply line longer than {MAX_REPLY_LINE} octets")]
    TooLong,
    #[error("a multi-line reply changed its code from {first} to {then}")]
    CodeChanged { first: u16, then: u16 },
    #[error("a multi-line reply of more than {MAX_REPLY_LINES} lines")]
    TooManyLines,
}

/// The most lines one reply may have; a server sending more is broken or hostile.
pub const MAX_REPLY_LINES: usize = 1000;

/// Reads complete replies out of the bytes a server sends, sans I/O: push what arrives, take each
/// complete (multi-line) reply. The client side of the wire, used by the built-in target over TCP
/// and by the model's in-memory prediction alike, so both read replies the same way.
#[derive(Debug, Default)]
pub struct ReplyReader {
    lines: LineFramer,
    /// Lines of a multi-line reply read so far.
    partial: Option<(ReplyCode, Vec<String>)>,
    /// An error was returned: nothing more is read from this connection.
    broken: bool,
}

impl ReplyReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes from the server.
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.broken {
            self.lines.push(bytes);
        }
    }

    /// True when bytes of an unfinished reply are waiting.
    pub fn has_partial(&self) -> bool {
        !self.lines.pending().is_empty() || self.partial.is_some()
    }

    /// The next complete reply, if one has arrived. An error leaves the reader unusable for this
    /// connection: a client cannot resynchronise with a server that breaks the reply syntax.
    pub fn next_reply(&mut self) -> Option<Result<Reply, ReplyLineError>> {
        if self.broken {
            return None;
        }
        let next = self.read();
        if matches!(next, Some(Err(_))) {
            self.broken = true;
            self.lines.clear();
        }
        next
    }

    fn read(&mut self) -> Option<Result<Reply, ReplyLineError>> {
        loop {
            let line = match self.lines.next_frame(MAX_REPLY_LINE + 1)? {
                Frame::Overlong(_) => return Some(Err(ReplyLineError::TooLong)),
                Frame::Line(l) if l.len() > MAX_REPLY_LINE => {
                    return Some(Err(ReplyLineError::TooLong));
                }
                Frame::Line(l) => l.to_vec(),
            };
            match self.line(&line) {
                Ok(Some(reply)) => return Some(Ok(reply)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// One reply line: `Some` when it completes a reply.
    fn line(&mut self, raw: &[u8]) -> Result<Option<Reply>, ReplyLineError> {
        let shown = || String::from_utf8_lossy(trim_line_end(raw)).into_owned();
        let malformed = |reason| ReplyLineError::Malformed {
            line: shown(),
            reason,
        };
        let parsed = ReplyLine::parse(raw).ok_or_else(|| {
            let digits = raw
                .get(..3)
                .is_some_and(|d| d.iter().all(u8::is_ascii_digit));
            malformed(if digits {
                "the code is not followed by a space or '-'"
            } else {
                "no three-digit code"
            })
        })?;
        let code =
            ReplyCode::new(parsed.code).ok_or_else(|| malformed("a code outside 200..=599"))?;
        let (first, mut lines) = self.partial.take().unwrap_or((code, Vec::new()));
        if first != code {
            return Err(ReplyLineError::CodeChanged {
                first: first.get(),
                then: code.get(),
            });
        }
        if lines.len() >= MAX_REPLY_LINES {
            return Err(ReplyLineError::TooManyLines);
        }
        lines.push(String::from_utf8_lossy(parsed.text).into_owned());
        if !parsed.last {
            self.partial = Some((code, lines));
            return Ok(None);
        }
        Ok(Some(Reply {
            code,
            lines,
            template: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_single_and_multi_line() {
        let r = Reply::parse("250 OK").unwrap();
        assert_eq!(r.code().get(), 250);
        assert_eq!(r.to_wire(), "250 OK\r\n");
        let m = Reply::parse("250 first\nsecond").unwrap();
        assert!(m.is_multiline());
        assert_eq!(m.to_wire(), "250-first\r\n250 second\r\n");
        assert_eq!(Reply::parse("221").unwrap().to_wire(), "221\r\n");
        let empty_inner = Reply::new(crate::reply_code!(554), "").with_line("");
        assert_eq!(empty_inner.to_wire(), "554-\r\n554\r\n");
        assert_eq!(
            Reply::parse("421 a\n\nb").unwrap().to_wire(),
            "421-a\r\n421-\r\n421 b\r\n"
        );
    }

    #[test]
    fn codes_written_in_the_program_are_checked() {
        assert_eq!(crate::reply_code!(459).get(), 459);
        let rejected = std::panic::catch_unwind(|| ReplyCode::of(std::hint::black_box(260)));
        assert!(rejected.is_err(), "260 is no reply code");
    }

    #[test]
    fn rejects_malformed_replies() {
        assert!(matches!(Reply::parse("OK"), Err(ReplyError::NoCode { .. })));
        assert_eq!(
            Reply::parse("199 x"),
            Err(ReplyError::BadCode { code: 199 })
        );
        assert_eq!(
            Reply::parse("260 x"),
            Err(ReplyError::BadCode { code: 260 })
        );
        assert!(matches!(
            Reply::parse("250OK"),
            Err(ReplyError::NoSpace { .. })
        ));
        assert!(matches!(
            Reply::parse("250 a\r\nb"),
            Err(ReplyError::Control { .. })
        ));
        assert!(matches!(
            Reply::parse("250 {domain}"),
            Err(ReplyError::UnknownPlaceholder { .. })
        ));
    }

    fn read_all(chunks: &[&[u8]]) -> Vec<Result<Reply, ReplyLineError>> {
        let mut r = ReplyReader::new();
        let mut out = Vec::new();
        for c in chunks {
            r.push(c);
            while let Some(reply) = r.next_reply() {
                out.push(reply);
            }
        }
        out
    }

    #[test]
    fn a_reader_joins_multi_line_replies_across_any_split() {
        let wire: &[u8] = b"220 hi\r\n250-mx greets\r\n250-ETRN\r\n250 SIZE 10\r\n221\r\n";
        for cut in 0..wire.len() {
            let got = read_all(&[&wire[..cut], &wire[cut..]]);
            let got: Vec<String> = got.into_iter().map(|r| r.unwrap().to_string()).collect();
            assert_eq!(
                got,
                ["220 hi", "250 mx greets\nETRN\nSIZE 10", "221"],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn a_reader_refuses_what_is_not_a_reply() {
        assert!(matches!(
            read_all(&[b"hello\r\n"])[..],
            [Err(ReplyLineError::Malformed { .. })]
        ));
        assert_eq!(
            read_all(&[b"250-a\r\n251 b\r\n"]),
            [Err(ReplyLineError::CodeChanged {
                first: 250,
                then: 251
            })]
        );
        let long = vec![b'2'; MAX_REPLY_LINE + 1];
        assert_eq!(read_all(&[&long]), [Err(ReplyLineError::TooLong)]);
    }
}
