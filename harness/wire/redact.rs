//! Credentials out of every record: the one redaction path.
//!
//! AUTH carries secrets in two places: the initial response on the command line
//! (`AUTH PLAIN AGFsaWNlAHNlY3JldA==`) and every continuation line the client sends after a 334.
//! `serve`'s recording, the cassette recorder and record-on-miss all pass client lines through
//! here, so a secret cannot reach a file by a path that forgot it, whatever the whitespace.

use std::borrow::Cow;

use super::command::{Command, Verb, has_verb, trim_line_end};

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

/// Which client lines answer an AUTH whatever its reply, held by the
/// [`ServerSideObserver`](super::observer::ServerSideObserver) for the session, the replay and
/// the recorder alike (a line after a 334 is a response by the observer's own rule). After an AUTH line every
/// line that is no SMTP command (an unknown verb, or a blank line; a base64 response is never a
/// known verb but by a three-octet accident) is a credential, until a command comes, whatever
/// the AUTH's reply: a response pipelined behind a refused AUTH (502, 503, 504) is as secret as
/// one sent after a 334.
#[derive(Debug, Default, Clone)]
pub struct AuthResponses {
    /// An AUTH line came and no command since.
    open: bool,
}

impl AuthResponses {
    /// `command`'s line as it may be recorded, and whether it is an AUTH response (then its verb,
    /// the response's first word, is a secret too).
    pub fn line<'a>(&mut self, command: &Command<'a>) -> (Cow<'a, [u8]>, bool) {
        let form = self.form(command);
        if !form.1 {
            self.open = *command.verb() == Verb::Auth;
        }
        form
    }

    /// `lines`, not yet read, as they would be recorded one after another from this state, the
    /// state itself unchanged: for a driver that records lines (unawaited, after a 421) before
    /// or instead of the session reading them.
    pub fn forms(&self, lines: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut window = self.clone();
        lines
            .iter()
            .map(|line| window.line(&Command::parse(line)).0.into_owned())
            .collect()
    }

    /// The recorded form of `line`, not yet parsed: `self.form(&Command::parse(line)).0`.
    /// Outside an AUTH exchange only an AUTH line is recorded otherwise than it came ([`parsed`]),
    /// so a line whose verb is not AUTH (every ETRN of a pipelined batch) is that line, found
    /// from its first byte, or else its first word: a verb starts at the first byte that is not
    /// SP or HTAB, so a line that starts with neither, nor with an A, has no AUTH verb.
    pub fn recorded<'a>(&self, line: &'a [u8]) -> Cow<'a, [u8]> {
        if !self.open {
            let auth = match line.first() {
                Some(b'A' | b'a' | b' ' | b'\t') => has_verb(line, &Verb::Auth),
                _ => false,
            };
            if !auth {
                return Cow::Borrowed(line);
            }
        }
        self.form(&Command::parse(line)).0
    }

    /// What [`line`](Self::line) would say of `command`, without taking it in.
    pub fn form<'a>(&self, command: &Command<'a>) -> (Cow<'a, [u8]>, bool) {
        if self.open && matches!(command.verb(), Verb::Other(_) | Verb::Blank) {
            (Cow::Borrowed(CONTINUATION), true)
        } else {
            (parsed(command), false)
        }
    }
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
    use proptest::prelude::Just;
    use proptest::strategy::Strategy;

    /// Command lines made of the pieces that matter here: verbs in any case, AUTH among them,
    /// the whitespace and line ends that separate them, and any other byte.
    fn any_line() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        let piece = proptest::prop_oneof![
            Just(b"AUTH".to_vec()),
            Just(b"aUtH".to_vec()),
            Just(b"ETRN".to_vec()),
            Just(b"AUTHX".to_vec()),
            Just(b"starttls".to_vec()),
            Just(b" ".to_vec()),
            Just(b"\t".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"PLAIN".to_vec()),
            proptest::collection::vec(proptest::num::u8::ANY, 1..3),
        ];
        let pieces = proptest::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat());
        // And lines shaped as commands: blanks, a verb, words, a line end.
        let word = || {
            proptest::sample::select(vec![
                "AUTH", "aUtH", "auth", "ETRN", "AUTHX", "A", "", "xAUTH", "PLAIN", "AGFsaWNl",
            ])
        };
        let blanks = || proptest::sample::select(vec!["", " ", "\t", " \t"]);
        let shaped = (
            blanks(),
            word(),
            proptest::collection::vec((blanks(), word()), 0..3),
            proptest::sample::select(vec!["\r\n", "\n", "", "\r"]),
        )
            .prop_map(|(lead, verb, words, end)| {
                let mut line = format!("{lead}{verb}");
                for (blank, word) in words {
                    line.push_str(if blank.is_empty() { " " } else { blank });
                    line.push_str(word);
                }
                line.push_str(end);
                line.into_bytes()
            });
        proptest::prop_oneof![pieces, shaped]
    }

    proptest::proptest! {
        #[test]
        fn a_line_s_recorded_form_is_its_parsed_form(line in any_line(), open in proptest::bool::ANY) {
            let window = AuthResponses { open };
            proptest::prop_assert_eq!(
                window.recorded(&line),
                window.form(&Command::parse(&line)).0
            );
        }

        #[test]
        fn a_verb_found_from_the_first_word_is_the_parsed_verb(line in any_line()) {
            let parsed = Command::parse(&line).verb().clone();
            for verb in [Verb::Auth, Verb::Etrn, Verb::StartTls, Verb::Blank, Verb::from("AUTHX")] {
                proptest::prop_assert_eq!(has_verb(&line, &verb), parsed == verb, "{:?}", verb);
            }
        }
    }

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

    #[test]
    fn responses_after_an_auth_are_secrets_whatever_its_reply_until_a_command() {
        let mut window = AuthResponses::default();
        let mut seen = |line: &[u8]| {
            let (recorded, secret) = window.line(&Command::parse(line));
            (String::from_utf8_lossy(&recorded).into_owned(), secret)
        };
        assert_eq!(
            seen(b"dXNlcg==\r\n"),
            ("dXNlcg==\r\n".into(), false),
            "no AUTH yet"
        );
        assert_eq!(seen(b"AUTH LOGIN\r\n"), ("AUTH LOGIN\r\n".into(), false));
        assert_eq!(seen(b"dXNlcg==\r\n"), ("[redacted]\r\n".into(), true));
        assert_eq!(seen(b"c2VjcmV0\r\n"), ("[redacted]\r\n".into(), true));
        assert_eq!(seen(b"\r\n"), ("[redacted]\r\n".into(), true));
        assert_eq!(seen(b"ETRN a\r\n"), ("ETRN a\r\n".into(), false));
        assert_eq!(
            seen(b"c2VjcmV0\r\n"),
            ("c2VjcmV0\r\n".into(), false),
            "closed"
        );
    }
}
