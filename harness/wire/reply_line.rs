//! One reply line: `250-mx.test` or `250 OK`.
//!
//! This is the lenient reading, for those who pass replies on (the proxy, replay, the cassette):
//! three digits, then a space, a `-` or the line end. The client's
//! [`ReplyReader`](crate::reply::ReplyReader) adds the strict checks (code range, one code per
//! reply) on top of it.

use super::command::trim_line_end;

/// A parsed reply line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLine<'a> {
    /// The three digits, as a number (000 to 999; range checks are the caller's).
    pub code: u16,
    /// False for `250-...`: more lines of the same reply follow.
    pub last: bool,
    /// The text after the separator, line end dropped.
    pub text: &'a [u8],
}

impl<'a> ReplyLine<'a> {
    /// Reads a line; `None` when it does not start with three digits followed by SP, `-` or the
    /// line end.
    pub fn parse(line: &'a [u8]) -> Option<ReplyLine<'a>> {
        let text = trim_line_end(line);
        let digits = text.get(..3)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let code = digits
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        let (last, rest) = match text.get(3) {
            None => (true, &text[3..]),
            Some(b' ') => (true, &text[4..]),
            Some(b'-') => (false, &text[4..]),
            Some(_) => return None,
        };
        Some(ReplyLine {
            code,
            last,
            text: rest,
        })
    }

    /// True when `line` is a whole reply line (it ends in LF) that ends its reply.
    pub fn ends_reply(line: &[u8]) -> bool {
        line.ends_with(b"\n") && ReplyLine::parse(line).is_some_and(|l| l.last)
    }
}

/// The code of a reply as it went on the wire (its first line's).
pub fn code_of(reply: &[u8]) -> Option<u16> {
    ReplyLine::parse(reply.split_inclusive(|b| *b == b'\n').next()?).map(|l| l.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_code_mark_and_text() {
        let l = ReplyLine::parse(b"250-mx.test\r\n").unwrap();
        assert_eq!((l.code, l.last, l.text), (250, false, &b"mx.test"[..]));
        let l = ReplyLine::parse(b"221\r\n").unwrap();
        assert_eq!((l.code, l.last, l.text), (221, true, &b""[..]));
        assert!(ReplyLine::parse(b"25O ok\r\n").is_none());
        assert!(ReplyLine::parse(b"250ok\r\n").is_none());
        assert!(ReplyLine::ends_reply(b"250 ok\r\n"));
        assert!(
            !ReplyLine::ends_reply(b"250 Queu"),
            "a cut line ends nothing"
        );
        assert_eq!(code_of(b"250-a\r\n250 b\r\n"), Some(250));
    }
}
