//! What a session reports: every command, reply and ETRN, as data.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::domain::{EtrnArg, EtrnOption};
use crate::escape::escape;
use crate::wire::Verb;
use crate::wire::observer::ObservedCommand;

/// Something that happened in a session, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    /// A complete command line as received (credentials replaced when `redacted`).
    Command(CommandLine),
    /// A reply sent.
    Reply { code: u16, lines: Vec<String> },
    /// An ETRN command and its outcome (boxed: the largest event, and not the commonest, would
    /// otherwise size every event in every log).
    Etrn(Box<EtrnRecord>),
    /// `ATRN d1,d2` (RFC 2645).
    Atrn {
        domains: Vec<String>,
        reply: Option<u16>,
    },
    /// `TURN` (RFC 821).
    Turn { reply: Option<u16> },
    /// A successful AUTH; the password is never kept.
    Auth { mechanism: String, username: String },
    /// A mail transaction that reached the end of DATA.
    Message(MessageRecord),
    /// A command line over the limit, answered with 500 and discarded.
    LineTooLong { octets: usize },
    /// A line the client sent after the server's 421, read during the linger before the close
    /// (the tokio driver's, `LINGER_AFTER_421`); never answered.
    AfterClose {
        #[serde(serialize_with = "escaped", deserialize_with = "unescaped")]
        #[schemars(with = "String")]
        raw: Vec<u8>,
    },
    /// A command line that had arrived before the reply to the previous command was written:
    /// the client did not wait for that reply. Recorded by the tokio driver just before the
    /// line's own `command` event.
    Unawaited {
        #[serde(serialize_with = "escaped", deserialize_with = "unescaped")]
        #[schemars(with = "String")]
        raw: Vec<u8>,
    },
    /// What the client sent last without ending the line before it closed: kept as it came
    /// (credentials replaced), never acted on or answered. A cassette keeps the same bytes.
    Unterminated {
        #[serde(serialize_with = "escaped", deserialize_with = "unescaped")]
        #[schemars(with = "String")]
        raw: Vec<u8>,
    },
    /// STARTTLS accepted; the TLS handshake follows.
    StartTls,
    /// Plaintext pipelined after STARTTLS, discarded unread (the CVE-2011-0411 class).
    DiscardedAfterStartTls { octets: usize },
    /// The client talked during a greet pause and was refused (sendmail's greet_pause).
    TalkedBeforeGreeting,
    /// A cassette replay got a command it did not expect: the position (1-based exchange of the
    /// recorded session), what the cassette holds there, and what came.
    ReplayMismatch {
        position: usize,
        expected: String,
        actual: String,
    },
    /// A cassette replay ended with recorded exchanges its client never asked for: how many,
    /// and the position (1-based) of the first.
    ReplayUnplayed { exchanges: usize, first: usize },
}

/// One command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CommandLine {
    /// The bytes as received, line end included; not UTF-8 safe, see [`CommandLine::text`].
    #[serde(serialize_with = "escaped", deserialize_with = "unescaped_line")]
    #[schemars(with = "String")]
    pub raw: LineBytes,
    /// The verb, as far as it could be read; written as its upper-case text.
    #[schemars(with = "String")]
    pub verb: Verb,
    /// Ended by a bare LF instead of CRLF (RFC 5321 §2.3.8 forbids it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bare_lf: bool,
    /// The line held credentials, replaced by `[redacted]`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

impl From<&ObservedCommand<'_>> for CommandLine {
    /// The event for a line the observer read: its recorded form, no verb for an AUTH response.
    fn from(observed: &ObservedCommand<'_>) -> Self {
        let line = observed.command.line();
        let recorded = &*observed.recorded;
        CommandLine {
            raw: LineBytes::from(recorded),
            verb: observed.recorded_verb(),
            bare_lf: !line.ends_with(b"\r\n"),
            // The line itself (nearly every line) is known unchanged without comparing it.
            redacted: !std::ptr::eq(recorded, line) && recorded != line,
        }
    }
}

impl CommandLine {
    /// The line without its line end, escaped for display.
    pub fn text(&self) -> String {
        line_text(&self.raw)
    }
}

/// A command line's bytes without their line end (CRLF or a bare LF), escaped for display.
pub(crate) fn line_text(raw: &[u8]) -> String {
    let trimmed = raw
        .strip_suffix(b"\n")
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .unwrap_or(raw);
    escape(trimmed)
}

/// A command line's bytes: kept in place up to [`LineBytes::INLINE`] octets (nearly every
/// command line, a pipelined ETRN's among them), so the event of one costs no allocation;
/// longer ones on the heap. Reads as the bytes (`Deref<Target = [u8]>`); equal by content.
///
/// Written here rather than taken from `smallvec`: its capacity is a `usize`, so in the 32
/// octets that keep a [`CommandLine`] no larger than a [`MessageRecord`] it keeps 24 octets in
/// place (`SmallVec<[u8; 32]>` takes 40, even with its `union` feature); a one-octet length
/// keeps 30, a pipelined ETRN of the bench (`ETRN d199999.bench.example`, 28 with its CRLF)
/// among them.
#[derive(Clone)]
pub struct LineBytes(LineRepr);

#[derive(Clone)]
enum LineRepr {
    Inline {
        len: u8,
        bytes: [u8; LineBytes::INLINE],
    },
    Heap(Vec<u8>),
}

impl LineBytes {
    /// The longest line kept in place: so a [`CommandLine`] is no larger than the largest
    /// other event.
    pub const INLINE: usize = 30;
}

impl std::ops::Deref for LineBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            LineRepr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            LineRepr::Heap(bytes) => bytes,
        }
    }
}

impl From<&[u8]> for LineBytes {
    fn from(line: &[u8]) -> Self {
        match u8::try_from(line.len()) {
            Ok(len) if line.len() <= LineBytes::INLINE => {
                let mut bytes = [0; LineBytes::INLINE];
                bytes[..line.len()].copy_from_slice(line);
                LineBytes(LineRepr::Inline { len, bytes })
            }
            _ => LineBytes(LineRepr::Heap(line.to_vec())),
        }
    }
}

impl<const N: usize> From<&[u8; N]> for LineBytes {
    fn from(line: &[u8; N]) -> Self {
        LineBytes::from(&line[..])
    }
}

impl From<Vec<u8>> for LineBytes {
    /// Kept where it is: no copy.
    fn from(line: Vec<u8>) -> Self {
        LineBytes(LineRepr::Heap(line))
    }
}

impl PartialEq for LineBytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for LineBytes {}

impl PartialEq<[u8]> for LineBytes {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for LineBytes {
    fn eq(&self, other: &&[u8; N]) -> bool {
        **self == other[..]
    }
}

impl std::fmt::Debug for LineBytes {
    /// As the bytes are: a list of numbers, as a `Vec<u8>` shows.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

fn escaped<S: serde::Serializer>(raw: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&escape(raw))
}

/// [`unescaped`], as a command line's bytes.
fn unescaped_line<'de, D: serde::Deserializer<'de>>(d: D) -> Result<LineBytes, D::Error> {
    unescaped(d).map(LineBytes::from)
}

/// The bytes an escaped string stands for: reading a recording stream back
/// (`etrn-harness recording`), so each event serialises again to the same text.
fn unescaped<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    crate::escape::unescape(&text).map_err(serde::de::Error::custom)
}

/// One ETRN, as the conformance runner judges it.
///
/// The argument's text is kept once: the parsed argument ([`EtrnRecord::arg`]) holds it, and
/// [`EtrnRecord::raw`] and [`EtrnRecord::domain`] are read from it when it gives them (nearly
/// every ETRN: a domain as sent, nothing to escape), so recording one costs no copies of it.
/// Written and read as [`EtrnRecordFields`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtrnRecord {
    /// The argument as sent, escaped, when the parsed argument's text is not that (or there is
    /// none); `None`: it is [`EtrnArg::raw`].
    raw: Option<String>,
    /// The argument parsed, when it is one node (kept, so no reader parses `raw` again).
    arg: Option<EtrnArg>,
    /// The option character, when the argument parsed.
    pub option: Option<EtrnOption>,
    /// The normalised domain of a record without a parsed argument (one read back from a
    /// recording); with one, it is the argument's.
    domain: Option<String>,
    /// The reply code sent; `None` when the server hung up without replying.
    pub reply: Option<u16>,
    /// Facts about the command that a conformance check may care about.
    pub flags: Vec<EtrnFlag>,
}

impl EtrnRecord {
    /// The record of an argument whose escaped text is `escaped` when it is not `arg`'s own
    /// text (`None`: it is), parsed as `arg`.
    pub(crate) fn new(
        escaped: Option<String>,
        arg: Option<EtrnArg>,
        reply: Option<u16>,
        flags: Vec<EtrnFlag>,
    ) -> Self {
        let raw = match (&arg, escaped) {
            (_, Some(text)) => Some(text),
            (Some(_), None) => None,
            (None, None) => Some(String::new()),
        };
        EtrnRecord {
            raw,
            option: arg.as_ref().map(EtrnArg::option),
            arg,
            domain: None,
            reply,
            flags,
        }
    }

    /// The argument as sent (escaped if not valid UTF-8), without the verb.
    pub fn raw(&self) -> &str {
        match (&self.raw, &self.arg) {
            (Some(raw), _) => raw,
            (None, Some(arg)) => arg.raw(),
            (None, None) => "",
        }
    }

    /// The argument parsed, when it is one node.
    pub fn arg(&self) -> Option<&EtrnArg> {
        self.arg.as_ref()
    }

    /// The normalised domain (lower case, A-label, no trailing dot), when the node is a domain.
    pub fn domain(&self) -> Option<&str> {
        match &self.arg {
            Some(arg) => arg.domain().map(|d| d.normalised()),
            None => self.domain.as_deref(),
        }
    }

    /// Whether [`EtrnRecord::raw`] is the parsed argument's own text: the record is what its
    /// argument, reply and flags make, nothing kept beside them.
    pub(crate) fn raw_is_the_arguments(&self) -> bool {
        self.raw.is_none() && self.arg.is_some()
    }
}

/// One ETRN, as the conformance runner judges it.
#[derive(Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(rename = "EtrnRecord")]
pub struct EtrnRecordFields<'a> {
    /// The argument as sent (escaped if not valid UTF-8), without the verb.
    #[serde(borrow)]
    pub raw: Cow<'a, str>,
    /// The option character, when the argument parsed.
    pub option: Option<EtrnOption>,
    /// The normalised domain (lower case, A-label, no trailing dot), when the node is a domain.
    #[serde(borrow)]
    pub domain: Option<Cow<'a, str>>,
    /// The reply code sent; `None` when the server hung up without replying.
    pub reply: Option<u16>,
    /// Facts about the command that a conformance check may care about.
    #[serde(default, skip_serializing_if = "<[EtrnFlag]>::is_empty")]
    pub flags: Cow<'a, [EtrnFlag]>,
}

impl Serialize for EtrnRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        EtrnRecordFields {
            raw: Cow::Borrowed(self.raw()),
            option: self.option,
            domain: self.domain().map(Cow::Borrowed),
            reply: self.reply,
            flags: Cow::Borrowed(&self.flags),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for EtrnRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let fields = EtrnRecordFields::deserialize(d)?;
        Ok(EtrnRecord {
            raw: Some(fields.raw.into_owned()),
            arg: None,
            option: fields.option,
            domain: fields.domain.map(Cow::into_owned),
            reply: fields.reply,
            flags: fields.flags.into_owned(),
        })
    }
}

impl schemars::JsonSchema for EtrnRecord {
    fn schema_name() -> Cow<'static, str> {
        EtrnRecordFields::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        EtrnRecordFields::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        EtrnRecordFields::json_schema(generator)
    }
}

/// Something unusual about one ETRN command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EtrnFlag {
    /// Sent before EHLO/HELO was answered.
    BeforeHello,
    /// Sent in a session whose EHLO reply did not advertise ETRN.
    NotAdvertised,
    /// Sent in a session greeted with HELO (EHLO refused), where no extension is available.
    AfterHelo,
    /// Sent between MAIL and the end of DATA.
    InTransaction,
    /// The line ended with a bare LF.
    BareLf,
    /// More than one node in one command (spaces or commas).
    SeveralNodes,
    /// The argument is not a valid node name.
    Invalid,
    /// The verb was not in upper case.
    LowerCaseVerb,
}

impl EtrnFlag {
    /// The flag's name as a recording writes it (its serde name).
    pub fn name(self) -> &'static str {
        match self {
            EtrnFlag::BeforeHello => "before-hello",
            EtrnFlag::NotAdvertised => "not-advertised",
            EtrnFlag::AfterHelo => "after-helo",
            EtrnFlag::InTransaction => "in-transaction",
            EtrnFlag::BareLf => "bare-lf",
            EtrnFlag::SeveralNodes => "several-nodes",
            EtrnFlag::Invalid => "invalid",
            EtrnFlag::LowerCaseVerb => "lower-case-verb",
        }
    }

    /// Every flag, in declaration order.
    pub const ALL: [EtrnFlag; 8] = [
        EtrnFlag::BeforeHello,
        EtrnFlag::NotAdvertised,
        EtrnFlag::AfterHelo,
        EtrnFlag::InTransaction,
        EtrnFlag::BareLf,
        EtrnFlag::SeveralNodes,
        EtrnFlag::Invalid,
        EtrnFlag::LowerCaseVerb,
    ];
}

/// A mail transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MessageRecord {
    pub from: String,
    pub recipients: Vec<String>,
    /// Octets of the message after dot-unstuffing.
    pub size: usize,
    /// The reply code at the end of DATA (250, or 552 when too big).
    pub reply: u16,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "reason", content = "detail")]
pub enum CloseReason {
    /// The client sent QUIT.
    Quit,
    /// The script told the server to hang up (or to answer 421).
    Scripted,
    /// The greeting refused the session with 421.
    RefusedAtGreeting,
    /// The client made more syntax or protocol errors than the server allows (Exim).
    TooManyErrors,
    /// The client sent more commands that deliver no mail than the server allows (Exim).
    TooManyCommands,
    /// No complete command line within the idle timeout; 421 sent.
    IdleTimeout,
    /// The client did not read the replies: a write could not proceed within the idle timeout.
    WriteTimeout,
    /// The client closed the connection.
    PeerClosed,
    /// The server was shut down.
    Shutdown,
    /// The TLS handshake failed.
    TlsFailed(String),
    /// A socket error.
    Io(String),
}

impl CloseReason {
    /// Every reason that carries no detail, what nearly every session closes for.
    pub const PLAIN: [CloseReason; 9] = [
        CloseReason::Quit,
        CloseReason::Scripted,
        CloseReason::RefusedAtGreeting,
        CloseReason::TooManyErrors,
        CloseReason::TooManyCommands,
        CloseReason::IdleTimeout,
        CloseReason::WriteTimeout,
        CloseReason::PeerClosed,
        CloseReason::Shutdown,
    ];

    /// The reason's name as a recording writes it (`"reason"`, its serde name): written out
    /// for every session by the stream and the lines for people, without `serde_json`.
    pub fn name(&self) -> &'static str {
        match self {
            CloseReason::Quit => "quit",
            CloseReason::Scripted => "scripted",
            CloseReason::RefusedAtGreeting => "refused-at-greeting",
            CloseReason::TooManyErrors => "too-many-errors",
            CloseReason::TooManyCommands => "too-many-commands",
            CloseReason::IdleTimeout => "idle-timeout",
            CloseReason::WriteTimeout => "write-timeout",
            CloseReason::PeerClosed => "peer-closed",
            CloseReason::Shutdown => "shutdown",
            CloseReason::TlsFailed(_) => "tls-failed",
            CloseReason::Io(_) => "io",
        }
    }

    /// What a recording writes as the reason's `"detail"`, if it has one.
    pub fn detail(&self) -> Option<&str> {
        match self {
            CloseReason::TlsFailed(detail) | CloseReason::Io(detail) => Some(detail),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command line kept in place makes no event larger than the largest other one.
    #[test]
    fn a_line_in_place_costs_no_room_in_an_event() {
        assert!(std::mem::size_of::<CommandLine>() <= std::mem::size_of::<MessageRecord>());
        let short = LineBytes::from(b"ETRN d12345.bench.example\r\n");
        assert!(matches!(short.0, LineRepr::Inline { .. }));
        assert_eq!(short, b"ETRN d12345.bench.example\r\n");
        let long = LineBytes::from(&[b'x'; LineBytes::INLINE + 1][..]);
        assert!(matches!(long.0, LineRepr::Heap(_)));
        assert_eq!(long.len(), LineBytes::INLINE + 1);
        // Equal by content, wherever it is kept.
        assert_eq!(
            LineBytes::from(b"QUIT\r\n".to_vec()),
            LineBytes::from(b"QUIT\r\n")
        );
        assert_eq!(format!("{short:?}"), format!("{:?}", short.to_vec()));
    }

    /// The names are the serde names, so every writer of a recording names a reason or a flag
    /// alike.
    #[test]
    fn names_are_the_serde_names() {
        let detailed = [
            CloseReason::TlsFailed("bad certificate".into()),
            CloseReason::Io("reset".into()),
        ];
        for reason in CloseReason::PLAIN.into_iter().chain(detailed) {
            let value = serde_json::to_value(&reason).unwrap();
            assert_eq!(value["reason"].as_str(), Some(reason.name()), "{reason:?}");
            assert_eq!(value["detail"].as_str(), reason.detail(), "{reason:?}");
        }
        for flag in EtrnFlag::ALL {
            assert_eq!(
                serde_json::to_value(flag).unwrap().as_str(),
                Some(flag.name())
            );
        }
    }
}
