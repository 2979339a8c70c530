//! What a server says where the protocol only fixes the code: the texts of its usual replies,
//! its line-length limit, an optional greet pause, and the placeholders its texts may use.
//!
//! Real servers differ here (Postfix's QUIT is `221 2.0.0 Bye`, Exim's `221 HOST closing
//! connection`), and a fake that claims to be one of them must say what it says. A [`Behaviour`]
//! supplies these; a server profile fills them from its file.
//!
//! [`Behaviour`]: super::Behaviour

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::reply::{Piece, Placeholder, Reply, Template, cut_at_placeholders};
use crate::reply_code;
use crate::wire::Verb;

/// The texts of a server's everyday replies, and its line limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReplies {
    /// The first line of the EHLO reply (`{host}`, `{client}`, `{client_ip}` filled in).
    pub ehlo_first_line: String,
    pub helo: Reply,
    pub mail: Reply,
    pub quit: Reply,
    pub noop: Reply,
    pub rset: Reply,
    pub unknown_command: Reply,
    /// The longest command line read, in octets with CRLF.
    pub line_limit: usize,
    /// What a longer line gets.
    pub line_too_long: LongLine,
    /// Exim ends a session after too many syntax or protocol errors.
    pub error_limit: Option<ErrorLimit>,
    /// Exim ends a session after too many commands that deliver no mail.
    pub command_limit: Option<CommandLimit>,
}

/// After `max` of `verbs` since the last of `reset_by` (or the start), the next one gets
/// `reply` and the session ends (Exim's `smtp_accept_max_nonmail`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandLimit {
    pub max: u32,
    /// Read in any case (`"rset"` is RSET).
    pub verbs: Vec<Verb>,
    #[serde(default)]
    pub reset_by: Vec<Verb>,
    pub reply: Reply,
}

/// What a server does with a command line over its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LongLine {
    /// Discards the line and answers this (a 421 closes).
    Reply(Reply),
    /// Reads the first `line_limit` octets as the command and discards the rest (Postfix's
    /// `line_length_limit`).
    Truncate,
    /// Answers this to every piece of `line_limit + 1` octets, and to the rest of the line
    /// (Exim reads a long line as several commands).
    EachPiece(Reply),
}

impl Serialize for LongLine {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            LongLine::Reply(r) => r.serialize(s),
            LongLine::Truncate => s.serialize_str("truncate"),
            LongLine::EachPiece(r) => {
                use serde::ser::SerializeMap;
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("each_piece", r)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for LongLine {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            Table { each_piece: String },
        }
        let text = match Form::deserialize(d)? {
            Form::Text(text) => text,
            Form::Table { each_piece } => {
                return Reply::parse(&each_piece)
                    .map(LongLine::EachPiece)
                    .map_err(serde::de::Error::custom);
            }
        };
        if text == "truncate" {
            return Ok(LongLine::Truncate);
        }
        Reply::parse(&text).map(LongLine::Reply).map_err(|e| {
            serde::de::Error::custom(format!(
                "{e}; or write \"truncate\" (read the first line_limit octets as the command)"
            ))
        })
    }
}

/// After `max` replies with one of `codes` in a session, the next such reply gets `last_line`
/// as its last line and the session ends (Exim's `smtp_max_synprot_errors`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorLimit {
    pub max: u32,
    pub codes: Vec<u16>,
    pub last_line: String,
}

impl Default for ServerReplies {
    /// The harness's own texts (the `rfc1985` profile's).
    fn default() -> Self {
        ServerReplies {
            ehlo_first_line: "{host} greets {client}".into(),
            helo: Reply::new(reply_code!(250), "{host} Hello {client}"),
            mail: Reply::new(reply_code!(250), "2.1.0 OK"),
            quit: Reply::new(reply_code!(221), "2.0.0 Bye"),
            noop: Reply::new(reply_code!(250), "2.0.0 OK"),
            rset: Reply::new(reply_code!(250), "2.0.0 OK"),
            unknown_command: Reply::new(reply_code!(500), "5.5.2 Error: command not recognized"),
            line_limit: 512,
            line_too_long: LongLine::Reply(Reply::new(reply_code!(500), "5.5.6 Line too long")),
            error_limit: None,
            command_limit: None,
        }
    }
}

/// A greeting held back for `millis`; a client that talks before it gets `refusal` at once
/// instead of the greeting, and the session goes on as a null server: EHLO advertises only
/// `ehlo_keywords`, HELO, NOOP, RSET and QUIT are answered as usual, and every other command gets
/// `refused_command` (sendmail's `greet_pause`, on in Debian's configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GreetPause {
    pub millis: u64,
    pub refusal: Reply,
    pub refused_command: Reply,
    #[serde(default)]
    pub ehlo_keywords: Vec<String>,
}

impl GreetPause {
    pub fn duration(&self) -> Duration {
        Duration::from_millis(self.millis)
    }
}

/// Bytes the client sent, as a reply shows them: as they came, or already found to be UTF-8
/// (an ETRN argument is, when it is read), so that filling a reply does not read them for it
/// again. Either way the reply shows the same text.
#[derive(Debug, Clone, Copy)]
pub enum Sent<'a> {
    Bytes(&'a [u8]),
    Utf8(&'a str),
}

impl<'a> Sent<'a> {
    /// The bytes as they came.
    pub fn bytes(self) -> &'a [u8] {
        match self {
            Sent::Bytes(bytes) => bytes,
            Sent::Utf8(text) => text.as_bytes(),
        }
    }

    /// Without its first byte when that is `@` or `#` (an ETRN argument's node).
    // Inlined, and the option character looked for as a byte, not a character decoded: every
    // ETRN's quoted reply asks.
    #[inline]
    pub(crate) fn node(self) -> Sent<'a> {
        match self {
            Sent::Bytes([b'@' | b'#', node @ ..]) => Sent::Bytes(node),
            // `@` and `#` are ASCII: what follows starts a character.
            Sent::Utf8(text) if matches!(text.as_bytes().first(), Some(b'@' | b'#')) => {
                Sent::Utf8(text.get(1..).unwrap_or(text))
            }
            other => other,
        }
    }
}

/// The values a reply's placeholders stand for, as far as the session knows them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Placeholders<'a> {
    pub host: &'a str,
    pub client: &'a str,
    /// The client's address, written out only when a text asks for it (most never do, and a
    /// session that formatted it at connect paid for it on every connection).
    pub client_ip: Option<IpAddr>,
    /// When the connection was accepted, written out (RFC 5322 form) only when a text asks.
    pub date: Option<SystemTime>,
    /// The ETRN argument, outer blanks trimmed, when replying to ETRN.
    pub arg: Option<Sent<'a>>,
    /// The ETRN argument with its trailing blanks, for `{arg7}`.
    pub arg_as_sent: Option<&'a [u8]>,
    pub from: Option<&'a str>,
    /// The command line without its line end, for `{command}`.
    pub command: Option<&'a [u8]>,
}

impl Placeholders<'_> {
    /// `text` with every placeholder replaced, in one pass: text that came from the client is
    /// never read for placeholders again. A value's control characters (a CR in a command, an
    /// LF that clearing the eighth bit made of 0x8a) become `?`, so a reply stays one reply.
    pub fn fill(&self, text: &str) -> String {
        // Values are written straight into `out`.
        let mut out = String::with_capacity(text.len() + 32);
        cut_at_placeholders(text, |piece| self.push_piece(text, &piece, &mut out));
        out
    }

    /// The line `text`, already cut into `pieces`, filled as [`Placeholders::fill`] fills it.
    fn fill_pieces(&self, text: &str, pieces: &[Piece]) -> String {
        let mut out = String::with_capacity(text.len() + 32);
        for piece in pieces {
            self.push_piece(text, piece, &mut out);
        }
        out
    }

    /// Appends `piece` of the line `text`: its text, or the placeholder's value; a placeholder
    /// whose value is unknown here stays as it is written.
    fn push_piece(&self, text: &str, piece: &Piece, out: &mut String) {
        match piece {
            Piece::Text(range) => out.push_str(text.get(range.clone()).unwrap_or_default()),
            Piece::Value(value) => {
                if !self.push_value(*value, out) {
                    out.push('{');
                    out.push_str(value.name());
                    out.push('}');
                }
            }
        }
    }

    /// Appends what `placeholder` stands for here to `out`; false (and nothing appended) when
    /// its value is unknown.
    fn push_value(&self, placeholder: Placeholder, out: &mut String) -> bool {
        match placeholder {
            Placeholder::Host => push_clean(out, self.host),
            Placeholder::Client => push_clean(out, self.client),
            // Neither has a control character to clean.
            Placeholder::ClientIp => {
                if let Some(ip) = self.client_ip {
                    push_ip(out, ip);
                }
            }
            Placeholder::Date => {
                if let Some(date) = self.date {
                    let _ = write!(out, "{}", httpdate::HttpDate::from(date));
                }
            }
            Placeholder::Arg => match self.arg {
                Some(arg) => push_lossy(out, arg),
                None => return false,
            },
            Placeholder::Node => match self.arg {
                Some(arg) => push_lossy(out, arg.node()),
                None => return false,
            },
            // sendmail echoes the argument with its trailing blanks and the eighth bit of each
            // byte cleared.
            Placeholder::Arg7 => match self.arg_as_sent.or(self.arg.map(Sent::bytes)) {
                Some(arg) => out.extend(arg.iter().map(|b| clean(char::from(b & 0x7f)))),
                None => return false,
            },
            Placeholder::From => match self.from {
                Some(from) => push_clean(out, from),
                None => return false,
            },
            Placeholder::Command => match self.command {
                Some(command) => push_lossy(out, Sent::Bytes(command)),
                None => return false,
            },
        }
        true
    }

    /// `reply` with its placeholders filled, line by line. A reply read from text was cut at
    /// its placeholders already ([`Reply::template`]): without any, it is the reply itself.
    pub fn reply(&self, reply: &Reply) -> Reply {
        let template = reply.template();
        if template.is_some_and(Template::is_fixed) {
            return reply.clone();
        }
        // Collected at their number, not grown a line at a time.
        let lines = reply.lines().iter().enumerate().map(|(i, line)| {
            match template.and_then(|t| t.lines().get(i)) {
                Some(pieces) => self.fill_pieces(line, pieces),
                None => self.fill(line),
            }
        });
        Reply::of_lines(reply.code(), lines.collect())
    }
}

/// Appends `ip` as its `Display` writes it; an IPv4 address (the usual client) digit by digit,
/// without the formatting machinery, which costs more than the rest of a greeting.
fn push_ip(out: &mut String, ip: IpAddr) {
    let IpAddr::V4(v4) = ip else {
        let _ = write!(out, "{ip}");
        return;
    };
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        if octet >= 100 {
            out.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            out.push(char::from(b'0' + octet / 10 % 10));
        }
        out.push(char::from(b'0' + octet % 10));
    }
}

/// A value's character as a reply may carry it: a control character becomes `?`.
fn clean(c: char) -> char {
    if c.is_control() { '?' } else { c }
}

/// Appends `value` with its control characters made `?`; a value without any (the usual case)
/// is copied whole.
fn push_clean(out: &mut String, value: &str) {
    if printable_ascii(value.as_bytes()) {
        out.push_str(value);
    } else {
        out.extend(value.chars().map(clean));
    }
}

/// True when every byte is printable ASCII (0x20 to 0x7e): eight bytes at a time, since every
/// ETRN argument echoed in a reply is checked.
pub(crate) fn printable_ascii(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // A byte's high bit in `below` is set when some byte is under 0x20 (a borrow only
        // reaches bytes above one that is), in `above` when some byte is over 0x7e or has its
        // own high bit (adding 1 to a byte under 0x7f never carries out of it).
        let below = x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
        let above = (x.wrapping_add(ONES) | x) & HIGHS;
        if below | above != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|b| matches!(b, 0x20..=0x7e))
}

/// Appends bytes as [`String::from_utf8_lossy`] reads them (each invalid sequence one U+FFFD),
/// cleaned as [`push_clean`] does, without the intermediate string.
fn push_lossy(out: &mut String, value: Sent<'_>) {
    let value = match value {
        Sent::Utf8(text) => return push_clean(out, text),
        Sent::Bytes(bytes) => bytes,
    };
    if let Ok(text) = std::str::from_utf8(value) {
        // The usual case, without the chunking.
        push_clean(out, text);
        return;
    }
    for chunk in value.utf8_chunks() {
        push_clean(out, chunk.valid());
        if !chunk.invalid().is_empty() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_written_as_display_writes_it() {
        let addresses: Vec<IpAddr> = vec![
            IpAddr::from([0, 9, 10, 99]),
            IpAddr::from([100, 101, 199, 255]),
            IpAddr::from([127, 0, 0, 1]),
            "::1".parse().unwrap(),
            "2001:db8::8a2e:370:7334".parse().unwrap(),
            "::ffff:10.0.0.1".parse().unwrap(),
        ];
        for ip in addresses {
            let mut out = String::new();
            push_ip(&mut out, ip);
            assert_eq!(out, ip.to_string());
        }
        // Unknown, as a replay without a connection has it: nothing is written.
        assert_eq!(Placeholders::default().fill("[{client_ip}] {date}"), "[] ");
    }

    #[test]
    fn placeholders_are_filled() {
        let p = Placeholders {
            host: "mx.test",
            client: "c.example",
            client_ip: Some(IpAddr::from([127, 0, 0, 1])),
            date: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_458_652)),
            arg: Some(Sent::Bytes("#b\u{fc}.example".as_bytes())),
            arg_as_sent: Some("#b\u{fc}.example ".as_bytes()),
            from: Some("x@c.example"),
            command: Some(b"XYZZY"),
        };
        assert_eq!(
            p.fill("{host} {client} [{client_ip}] {date}"),
            "mx.test c.example [127.0.0.1] Sat, 05 Dec 2026 08:17:32 GMT"
        );
        assert_eq!(
            p.fill("<{node}> {arg}"),
            "<b\u{fc}.example> #b\u{fc}.example"
        );
        assert_eq!(p.fill("{arg7}"), "#bC<.example ");
        assert_eq!(p.fill("\"{command}\""), "\"XYZZY\"");
        // Client text is never expanded again, and its control characters do not split a reply.
        let tricky = Placeholders {
            arg: Some(Sent::Bytes(b"{node}{arg7}\r")),
            ..Placeholders::default()
        };
        assert_eq!(tricky.fill("<{arg}> {host}x"), "<{node}{arg7}?> x");
        let lf = Placeholders {
            arg: Some(Sent::Bytes(&[b'a', 0x8a])),
            ..Placeholders::default()
        };
        assert_eq!(lf.fill("{arg7}"), "a?");
        // Bytes that are not UTF-8 read as from_utf8_lossy reads them; C1 controls become `?`.
        let eight_bit = Placeholders {
            arg: Some(Sent::Bytes(b"#a\xffb\xc3")),
            command: Some("x\u{85}y\u{e9}".as_bytes()),
            ..Placeholders::default()
        };
        assert_eq!(
            eight_bit.fill("{arg}|{node}"),
            "#a\u{fffd}b\u{fffd}|a\u{fffd}b\u{fffd}"
        );
        assert_eq!(eight_bit.fill("{command}{"), "x?y\u{e9}{");
        assert_eq!(eight_bit.fill("{from}{nope}{arg"), "{from}{nope}{arg");
        assert_eq!(p.fill("<{from}>"), "<x@c.example>");
    }

    /// The fill as it was before replies were cut at their placeholders: scan for `{`, read the
    /// name up to `}`, and keep the `{` as text when the name is no placeholder or its value is
    /// unknown. The cut ([`cut_at_placeholders`]) and the templates must agree with it.
    fn fill_by_scanning(p: &Placeholders<'_>, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let value = after.find('}').and_then(|close| {
                let placeholder = Placeholder::named(&after[..close])?;
                let mut value = String::new();
                p.push_value(placeholder, &mut value)
                    .then_some((close, value))
            });
            match value {
                Some((close, value)) => {
                    out.push_str(&value);
                    rest = &after[close + 1..];
                }
                None => {
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn placeholder_names_are_the_documented_list() {
        for (placeholder, name) in Placeholder::ALL.iter().zip(crate::reply::PLACEHOLDERS) {
            assert_eq!(placeholder.name(), *name);
            assert_eq!(Placeholder::named(name), Some(*placeholder));
        }
        assert_eq!(Placeholder::ALL.len(), crate::reply::PLACEHOLDERS.len());
        assert_eq!(Placeholder::named("nodes"), None);
    }

    #[test]
    fn a_fixed_reply_is_sent_as_it_is_and_its_wire_bytes_are_ready() {
        let fixed = Reply::parse("250 Queuing started\nsecond").unwrap();
        let filled = Placeholders::default().reply(&fixed);
        assert_eq!(filled, fixed);
        assert!(filled.template().is_some_and(Template::is_fixed));
        assert_eq!(
            filled.wire_bytes(),
            b"250-Queuing started\r\n250 second\r\n"
        );
        let templated = Reply::parse("250 OK, queuing for node {node} started").unwrap();
        assert!(!templated.template().is_some_and(Template::is_fixed));
        let p = Placeholders {
            arg: Some(Sent::Utf8("@a.example")),
            ..Placeholders::default()
        };
        let sent = p.reply(&templated);
        assert_eq!(sent.lines(), ["OK, queuing for node a.example started"]);
        assert_eq!(sent.wire_bytes(), sent.to_wire().into_bytes());
    }

    proptest::proptest! {
        /// The node is the text without one leading `@` or `#` character, as text or as bytes.
        #[test]
        fn a_node_is_its_text_without_the_option_character(text in "[@#]?[@#a-z\u{fc}]{0,4}") {
            let node = text.strip_prefix(['@', '#']).unwrap_or(&text);
            proptest::prop_assert_eq!(Sent::Utf8(&text).node().bytes(), node.as_bytes());
            proptest::prop_assert_eq!(Sent::Bytes(text.as_bytes()).node().bytes(), node.as_bytes());
        }
    }

    proptest::proptest! {
        #[test]
        fn printable_ascii_eight_at_a_time_agrees_with_one_at_a_time(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::Just(0x1f_u8), proptest::prelude::Just(0x20), proptest::prelude::Just(0x7e),
                    proptest::prelude::Just(0x7f), proptest::prelude::Just(0x80), proptest::prelude::Just(0xff),
                    0x20_u8..0x7f, proptest::num::u8::ANY,
                ],
                0..40,
            ),
            from in 0usize..8,
        ) {
            let bytes = &bytes[from.min(bytes.len())..];
            proptest::prop_assert_eq!(
                printable_ascii(bytes),
                bytes.iter().all(|b| matches!(b, 0x20..=0x7e))
            );
        }

        /// Filling a text, a reply cut at its placeholders when it was read and a reply made in
        /// the program all give what scanning the text gives, whatever braces and values.
        #[test]
        fn every_fill_agrees_with_scanning_the_text(
            lines in proptest::collection::vec(
                "([a-z ]{0,3}|[{}]|\\{(host|node|arg|arg7|from|command|date|client|client_ip|nope)\\}?){0,8}",
                1..4,
            ),
            arg in proptest::option::of(proptest::prop_oneof![
                proptest::collection::vec(proptest::num::u8::ANY, 0..12),
                proptest::strategy::Strategy::prop_map(
                    "[@#]?[a-z{}@#\r\u{85}\u{fc}]{0,8}",
                    String::into_bytes,
                ),
            ]),
            host in "[a-z{}.\\r]{0,8}",
            from in proptest::option::of("[a-z{}@\\n]{0,8}"),
        ) {
            let p = Placeholders {
                host: &host,
                client: "c{node}.example",
                client_ip: Some(IpAddr::from([192, 0, 2, 1])),
                date: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_458_652)),
                arg: arg.as_deref().map(Sent::Bytes),
                arg_as_sent: None,
                from: from.as_deref(),
                command: Some(b"XYZZY {arg}\r"),
            };
            let expected: Vec<String> = lines.iter().map(|l| fill_by_scanning(&p, l)).collect();
            let filled: Vec<String> = lines.iter().map(|l| p.fill(l)).collect();
            proptest::prop_assert_eq!(&filled, &expected);
            // An argument handed over as the text it is fills as its bytes do.
            if let Some(text) = arg.as_deref().and_then(|a| std::str::from_utf8(a).ok()) {
                let as_text = Placeholders { arg: Some(Sent::Utf8(text)), ..p };
                let filled: Vec<String> = lines.iter().map(|l| as_text.fill(l)).collect();
                proptest::prop_assert_eq!(&filled, &expected);
            }
            let made = lines
                .iter()
                .skip(1)
                .fold(Reply::new(reply_code!(250), lines[0].clone()), |r, l| r.with_line(l.clone()));
            proptest::prop_assert!(made.template().is_none());
            let sent = p.reply(&made);
            proptest::prop_assert_eq!(sent.lines(), &expected[..]);
            // A text with braces that open no placeholder is no reply text: only the others
            // are read (and cut) as one.
            if let Ok(read) = Reply::parse(&format!("250 {}", lines.join("\n"))) {
                proptest::prop_assert!(read.template().is_some());
                let sent = p.reply(&read);
                proptest::prop_assert_eq!(sent.lines(), &expected[..]);
                proptest::prop_assert_eq!(sent.wire_bytes(), sent.to_wire().into_bytes());
            }
        }
    }
}
