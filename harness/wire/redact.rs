//! Credentials out of every record: the one redaction path.
//!
//! AUTH carries secrets in two places: the initial response on the command line
//! (`AUTH PLAIN AGFsaWNlAHNlY3JldA==`) and every continuation line the client sends after a 334.
//! `serve`'s recording, the cassette recorder and record-on-miss all pass client lines through
//! here, so a secret cannot reach a file by a path that forgot it, whatever the whitespace.

use std::borrow::Cow;

use super::command::{Command, Verb, trim_line_end};

/// What stands for a secret.
pub const MARK: &str = "[redacted]";

/// How an AUTH continuation line is recorded.
pub const CONTINUATION: &[u8] = b"[redacted]\r\n";

/// A command line as it may be recorded: AUTH keeps its verb and mechanism and loses the rest;
/// every other line is unchanged.
pub fn command(line: &[u8]) -> Cow<'_, [u8]> {
    parsed(&Command::parse(line))
}

/// [`command`] for a line already parsed.
pub fn parsed<'a>(command: &Command<'a>) -> Cow<'a, [u8]> {
    let line = command.line();
    if *command.verb() != Verb::Auth {
        return Cow::Borrowed(line);
    }
    let mut w = command.arguments();
    let mechanism = w.next();
    if w.next().is_none() {
        return Cow::Borrowed(line);
    }
    let mut recorded = b"AUTH ".to_vec();
    recorded.extend_from_slice(mechanism.unwrap_or_default());
    recorded.extend_from_slice(b" [redacted]");
    recorded.extend_from_slice(&line[trim_line_end(line).len()..]);
    Cow::Owned(recorded)
}

/// True for a recorded continuation.
pub fn is_continuation(recorded: &[u8]) -> bool {
    trim_line_end(recorded) == MARK.as_bytes()
}

/// The mechanism of a recorded `AUTH <mechanism> [redacted]`.
pub fn redacted_auth_mechanism(recorded: &[u8]) -> Option<String> {
    let command = Command::parse(recorded);
    let is_auth = *command.verb() == Verb::Auth;
    let mut w = command.arguments();
    let mechanism = w.next()?;
    let mark = w.next()?;
    (is_auth && mark == MARK.as_bytes() && w.next().is_none())
        .then(|| String::from_utf8_lossy(mechanism).to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initial_response_goes_whatever_the_whitespace() {
        for line in [
            &b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"[..],
            b"auth\tPLAIN\tAGFsaWNlAHNlY3JldA==\r\n",
            b" AUTH  PLAIN AGFsaWNlAHNlY3JldA== \r\n",
            b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\n",
        ] {
            let r = command(line);
            assert!(
                !String::from_utf8_lossy(&r).contains("AGFsaWNl"),
                "{r:?} from {line:?}"
            );
            assert_eq!(redacted_auth_mechanism(&r).as_deref(), Some("PLAIN"));
        }
        assert_eq!(&*command(b"AUTH LOGIN\r\n"), b"AUTH LOGIN\r\n");
        assert_eq!(&*command(b"ETRN a b\r\n"), b"ETRN a b\r\n");
        assert!(is_continuation(CONTINUATION));
    }
}
