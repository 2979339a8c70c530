//! The `--record` stream's JSON lines, written straight into a buffer.
//!
//! A line is what `serde_json` makes of the recorder's line types (`line::opened`, `line::event`,
//! `line::closed` in `recorder`) through a `serde_json::Value`: an object whose keys come out in
//! sorted order, because a `Value`'s map is sorted. Building that `Value` (a map node and a string
//! per field) and then formatting it cost more than the whole SMTP session it describes: with
//! `--record`, 3,000 EHLO/ETRN/QUIT sessions took twice the instructions they take without
//! (callgrind). So the lines a busy server writes most (commands, replies, unawaited lines, ETRNs,
//! messages, session opened and closed) are written here field by field, in the same sorted order
//! with the same escapes; every other event takes the `Value` path. The tests hold the two equal.

use std::io::Write;
use std::net::SocketAddr;

use crate::escape::escape;
use crate::proto::{CloseReason, Event};

/// Appends the line of `event` (session `session`, at `at_us`) to `out`, without its line end.
pub(crate) fn write_event(out: &mut Vec<u8>, at_us: u64, session: u64, event: &Event) {
    match event {
        Event::Command(c) => {
            at(out, at_us);
            if c.bare_lf {
                out.extend_from_slice(b",\"bare_lf\":true");
            }
            out.extend_from_slice(b",\"event\":\"command\",\"raw\":");
            raw_string(out, &c.raw);
            if c.redacted {
                out.extend_from_slice(b",\"redacted\":true");
            }
            session_field(out, session);
            out.extend_from_slice(b",\"verb\":");
            string(out, c.verb.as_str());
            out.push(b'}');
        }
        Event::Reply { code, lines } => {
            at(out, at_us);
            out.extend_from_slice(b",\"code\":");
            number(out, u64::from(*code));
            out.extend_from_slice(b",\"event\":\"reply\",\"lines\":[");
            for (i, l) in lines.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, l);
            }
            out.push(b']');
            session_field(out, session);
            out.push(b'}');
        }
        Event::Unawaited { raw } => {
            at(out, at_us);
            out.extend_from_slice(b",\"event\":\"unawaited\",\"raw\":");
            raw_string(out, raw);
            session_field(out, session);
            out.push(b'}');
        }
        Event::Etrn(record) => {
            at(out, at_us);
            out.extend_from_slice(b",\"domain\":");
            optional(out, record.domain(), string);
            out.extend_from_slice(b",\"event\":\"etrn\"");
            if !record.flags.is_empty() {
                out.extend_from_slice(b",\"flags\":");
                serialized(out, &record.flags);
            }
            out.extend_from_slice(b",\"option\":");
            optional(out, record.option.as_ref(), serialized);
            out.extend_from_slice(b",\"raw\":");
            string(out, record.raw());
            out.extend_from_slice(b",\"reply\":");
            optional(out, record.reply, |out, r| number(out, u64::from(r)));
            session_field(out, session);
            out.push(b'}');
        }
        Event::Message(m) => {
            at(out, at_us);
            out.extend_from_slice(b",\"event\":\"message\",\"from\":");
            string(out, &m.from);
            out.extend_from_slice(b",\"recipients\":[");
            for (i, r) in m.recipients.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(out, r);
            }
            out.extend_from_slice(b"],\"reply\":");
            number(out, u64::from(m.reply));
            session_field(out, session);
            out.extend_from_slice(b",\"size\":");
            number(out, m.size as u64);
            out.push(b'}');
        }
        other => write_value(out, &super::recorder::line::event(at_us, session, other)),
    }
}

/// Appends the line of session `session` opened from `peer` at `at_us`.
pub(crate) fn write_opened(out: &mut Vec<u8>, at_us: u64, session: u64, peer: SocketAddr) {
    at(out, at_us);
    out.extend_from_slice(b",\"opened\":{\"peer\":\"");
    // An address needs no escaping. An IPv4 one (the usual client) digit by digit: through
    // `Display` it cost more than the rest of the line.
    match peer {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                number(out, u64::from(octet));
            }
            out.push(b':');
            number(out, u64::from(v4.port()));
        }
        SocketAddr::V6(_) => {
            let _ = write!(out, "{peer}");
        }
    }
    out.extend_from_slice(b"\"}");
    session_field(out, session);
    out.push(b'}');
}

/// Appends the line of session `session` closed for `reason` at `at_us`.
pub(crate) fn write_closed(out: &mut Vec<u8>, at_us: u64, session: u64, reason: &CloseReason) {
    at(out, at_us);
    // The reason's own keys in the `Value` path's sorted order: `detail`, then `reason`.
    out.extend_from_slice(b",\"closed\":{");
    if let Some(detail) = reason.detail() {
        out.extend_from_slice(b"\"detail\":");
        string(out, detail);
        out.push(b',');
    }
    out.extend_from_slice(b"\"reason\":\"");
    out.extend_from_slice(reason.name().as_bytes());
    out.extend_from_slice(b"\"}");
    session_field(out, session);
    out.push(b'}');
}

/// The opening brace and the first key of every line.
fn at(out: &mut Vec<u8>, at_us: u64) {
    out.extend_from_slice(b"{\"at_us\":");
    number(out, at_us);
}

fn session_field(out: &mut Vec<u8>, session: u64) {
    out.extend_from_slice(b",\"session\":");
    number(out, session);
}

/// `n` in decimal, without the formatting machinery (several numbers a line, every line).
fn number(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// A line as it came, as [`escape`] shows it, as a JSON string. Nearly every line is printable
/// ASCII without a backslash or a quote, ending in CRLF: it is written as it is, its CRLF as the
/// escaped `\\r\\n` (escaped again for JSON), without the escaped copy that takes an allocation
/// for every command a session sends. Any other line takes that copy.
fn raw_string(out: &mut Vec<u8>, raw: &[u8]) {
    if let Some(text) = raw.strip_suffix(b"\r\n")
        && crate::escape::escapes_to_itself(text)
        && !text.contains(&b'"')
    {
        out.push(b'"');
        out.extend_from_slice(text);
        out.extend_from_slice(br#"\\r\\n""#);
        return;
    }
    string(out, &escape(raw));
}

/// A JSON string, escaped exactly as `serde_json` escapes it.
fn string(out: &mut Vec<u8>, s: &str) {
    serialized(out, s);
}

fn optional<T>(out: &mut Vec<u8>, v: Option<T>, write: impl FnOnce(&mut Vec<u8>, T)) {
    match v {
        Some(v) => write(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// A small value through `serde_json`'s own serializer: no `Value` in between. For the values
/// used here (strings, unit and tagged enums, lists of them) its output is the `Value` path's.
fn serialized<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// Appends a line built as a `Value` (the rare ones).
pub(crate) fn write_value(out: &mut Vec<u8>, v: &serde_json::Value) {
    serialized(out, v);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etrn::{Greeted, read_etrn};
    use crate::proto::event::{CommandLine, MessageRecord};
    use crate::wire::{Command, Verb};
    use proptest::prelude::*;

    /// The line the `Value` path gives, the reference.
    fn slow(at_us: u64, session: u64, event: &Event) -> String {
        super::super::recorder::line::event(at_us, session, event).to_string()
    }

    fn fast(at_us: u64, session: u64, event: &Event) -> String {
        let mut out = Vec::new();
        write_event(&mut out, at_us, session, event);
        String::from_utf8(out).expect("the writer writes UTF-8")
    }

    fn etrn(line: &[u8], greeted: Greeted, in_transaction: bool, reply: Option<u16>) -> Event {
        Event::Etrn(Box::new(
            read_etrn(&Command::parse(line), greeted, in_transaction).record(reply),
        ))
    }

    fn events() -> Vec<Event> {
        vec![
            Event::Command(CommandLine {
                raw: b"EHLO x\r\n".into(),
                verb: Verb::Ehlo,
                bare_lf: false,
                redacted: false,
            }),
            Event::Command(CommandLine {
                raw: b"ehlo \"q\" \\ \x01\xff\xc3\xa9\n".into(),
                verb: Verb::Ehlo,
                bare_lf: true,
                redacted: true,
            }),
            Event::Command(CommandLine {
                raw: b"MAIL FROM:<\"a b\"@x>\r\n".into(),
                verb: Verb::Mail,
                bare_lf: false,
                redacted: false,
            }),
            Event::Command(CommandLine {
                raw: b"XYZZY\r\n".into(),
                verb: Verb::parse(b"XYZZY"),
                bare_lf: false,
                redacted: false,
            }),
            Event::Reply {
                code: 250,
                lines: vec![
                    "mx greets \"x\"".into(),
                    "ETRN".into(),
                    "\u{1}\u{e9}".into(),
                ],
            },
            Event::Reply {
                code: 421,
                lines: vec![],
            },
            Event::Unawaited {
                raw: b"ETRN a\xff\r\n".to_vec(),
            },
            etrn(
                b"ETRN a.example\r\n",
                Greeted::EtrnAdvertised,
                false,
                Some(250),
            ),
            etrn(
                b"etrn @B\xc3\xbccher.example\n",
                Greeted::No,
                true,
                Some(458),
            ),
            etrn(b"ETRN #queue\r\n", Greeted::Helo, false, None),
            etrn(
                b"ETRN bad..x, y\r\n",
                Greeted::EtrnNotAdvertised,
                false,
                Some(501),
            ),
            etrn(b"ETRN\r\n", Greeted::EtrnAdvertised, false, Some(501)),
            Event::Message(MessageRecord {
                from: "a\"@b".into(),
                recipients: vec!["c@d".into(), "e\\@f".into()],
                size: 1024,
                reply: 552,
            }),
            Event::Message(MessageRecord {
                from: String::new(),
                recipients: vec![],
                size: 0,
                reply: 250,
            }),
            Event::StartTls,
            Event::LineTooLong { octets: 9000 },
            Event::Turn { reply: Some(502) },
        ]
    }

    #[test]
    fn every_line_is_the_value_paths_line() {
        for event in events() {
            assert_eq!(fast(123, 7, &event), slow(123, 7, &event), "{event:?}");
        }
    }

    #[test]
    fn opened_and_closed_are_the_value_paths_lines() {
        for peer in ["[::1]:2525", "127.0.0.1:0", "10.200.99.9:65535"] {
            let peer: SocketAddr = peer.parse().expect("an address");
            for (at_us, session) in [(5, 9), (0, 0), (u64::MAX, 1_234_567_890)] {
                let mut out = Vec::new();
                write_opened(&mut out, at_us, session, peer);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    super::super::recorder::line::opened(at_us, session, peer).to_string()
                );
            }
        }
        for reason in [
            CloseReason::Quit,
            CloseReason::PeerClosed,
            CloseReason::RefusedAtGreeting,
            CloseReason::TlsFailed("bad \"cert\"".into()),
            CloseReason::Io("reset\u{1}".into()),
        ] {
            let mut out = Vec::new();
            write_closed(&mut out, 5, 9, &reason);
            assert_eq!(
                String::from_utf8_lossy(&out),
                super::super::recorder::line::closed(5, 9, &reason).to_string()
            );
        }
    }

    proptest! {
        /// Whatever bytes a client sends, the command's and the ETRN's lines are the reference's.
        #[test]
        fn any_line_is_the_value_paths_line(
            argument in proptest::collection::vec(any::<u8>(), 0..40),
            at_us in any::<u64>(),
            session in any::<u64>(),
        ) {
            let mut line = b"ETRN ".to_vec();
            line.extend(argument.iter().filter(|b| **b != b'\n'));
            line.extend_from_slice(b"\r\n");
            let command = Event::Command(CommandLine {
                raw: line.clone().into(),
                verb: Verb::Etrn,
                bare_lf: false,
                redacted: false,
            });
            prop_assert_eq!(fast(at_us, session, &command), slow(at_us, session, &command));
            let etrn = etrn(&line, Greeted::EtrnAdvertised, false, Some(250));
            prop_assert_eq!(fast(at_us, session, &etrn), slow(at_us, session, &etrn));
        }

        /// A printable line, as nearly every client sends (the fast path when it has no quote or
        /// backslash), with its CRLF or without, is the reference's too: commands and unawaited.
        #[test]
        fn a_printable_line_is_the_value_paths_line(
            text in "[ -~]{0,40}",
            crlf in any::<bool>(),
        ) {
            let mut raw = text.into_bytes();
            if crlf {
                raw.extend_from_slice(b"\r\n");
            }
            let command = Event::Command(CommandLine {
                raw: raw.clone().into(),
                verb: Verb::Etrn,
                bare_lf: false,
                redacted: false,
            });
            prop_assert_eq!(fast(1, 2, &command), slow(1, 2, &command));
            let unawaited = Event::Unawaited { raw };
            prop_assert_eq!(fast(1, 2, &unawaited), slow(1, 2, &unawaited));
        }
    }
}
