//! Following a session from outside: which reply answers which request.
//!
//! The recording proxy and record-on-miss see both directions but play neither part, and with
//! pipelining (RFC 2920) a client may send several commands before the first reply. The
//! [`Follower`] keeps the requests waiting for a reply in order, so it knows that a 354 answers
//! DATA (message data follows), a 334 answers AUTH (the next client lines are credentials), and a
//! 220 answers STARTTLS (the bytes after it are TLS), however the two directions interleave.

use std::borrow::Cow;
use std::collections::VecDeque;

use super::command::Verb;
use super::observer::{Authentication, Classified, DataEnd, Prompt, Replied, ServerSideObserver};
use super::redact;
use super::reply_line::ReplyLine;

/// What a client line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientLine {
    /// A command.
    Command,
    /// A line of message data (after a 354).
    Data,
    /// A response to an AUTH challenge: a secret.
    AuthResponse,
}

/// A request waiting for its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Waiting {
    Command(Verb),
    AuthResponse,
    EndOfData,
}

/// What a complete server reply started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerStep {
    /// Nothing that changes how lines are read.
    Continue,
    /// The upstream accepted STARTTLS: what follows is TLS.
    TlsStarts,
    /// The upstream refused STARTTLS: the session goes on in plaintext.
    TlsRefused,
}

/// Follows one session's two directions.
///
/// What a reply means (data after a 354 to DATA, an AUTH response after a 334, the exchange over
/// at a 235, TLS after a 220 to STARTTLS), where message data ends and which lines are redacted
/// are the [`ServerSideObserver`]'s rules, the same the scripted session and the replay follow.
/// The follower adds what only a watcher of a pipelined session needs: the queue that pairs each
/// reply with its request, and an AUTH whose responses may come before its 334 does.
#[derive(Debug, Clone)]
pub struct Follower {
    waiting: VecDeque<Waiting>,
    /// An AUTH was sent and its final reply has not come: client lines are credentials, even
    /// those pipelined before the 334 arrives.
    in_auth: bool,
    /// The proxy relays lines whatever their length: no limit here, the upstream judges.
    observer: ServerSideObserver,
    quit: bool,
}

impl Default for Follower {
    fn default() -> Self {
        Follower {
            waiting: VecDeque::new(),
            in_auth: false,
            observer: ServerSideObserver::without_line_limit(
                DataEnd::DotLine,
                Authentication::Checked,
            ),
            quit: false,
        }
    }
}

impl Follower {
    pub fn new() -> Self {
        Follower::default()
    }

    /// True while the client is sending message data.
    pub fn is_in_data(&self) -> bool {
        self.observer.in_data()
    }

    /// True once the client has sent QUIT.
    pub fn quit(&self) -> bool {
        self.quit
    }

    /// A complete client line: what it is and the form to record (credentials redacted).
    pub fn client_line<'a>(&mut self, line: &'a [u8]) -> (ClientLine, Cow<'a, [u8]>) {
        if self.in_auth && !self.observer.in_data() {
            return (
                ClientLine::AuthResponse,
                Cow::Borrowed(redact::CONTINUATION),
            );
        }
        match self.observer.line(line) {
            Classified::Data { .. } => (ClientLine::Data, Cow::Borrowed(line)),
            Classified::EndOfData(_) => {
                self.waiting.push_back(Waiting::EndOfData);
                (ClientLine::Data, Cow::Borrowed(line))
            }
            Classified::AuthResponse(_) => {
                self.waiting.push_back(Waiting::AuthResponse);
                (
                    ClientLine::AuthResponse,
                    Cow::Borrowed(redact::CONTINUATION),
                )
            }
            Classified::Command(observed) if observed.auth_response => {
                // The server answers it like any other line.
                self.waiting.push_back(Waiting::AuthResponse);
                (ClientLine::AuthResponse, observed.recorded)
            }
            Classified::Command(observed) => {
                let verb = observed.command.verb();
                self.in_auth |= *verb == Verb::Auth;
                self.quit |= *verb == Verb::Quit;
                self.waiting.push_back(Waiting::Command(verb.clone()));
                (ClientLine::Command, observed.recorded)
            }
            // Without a line limit and a TLS handshake of its own, the observer hands out
            // nothing else; were it to, the line is recorded as a command would be.
            Classified::DataPiece(_)
            | Classified::OverlongPiece { .. }
            | Classified::TooLong { .. }
            | Classified::DiscardedAfterStartTls { .. } => {
                (ClientLine::Command, redact::command(line))
            }
        }
    }

    /// The client's last bytes without a line end (it left mid-line): what they are and the form
    /// to record. A cut AUTH line is redacted like a whole one; a cut continuation entirely.
    pub fn client_fragment<'a>(&self, bytes: &'a [u8]) -> (ClientLine, Cow<'a, [u8]>) {
        if self.observer.in_data() {
            (ClientLine::Data, Cow::Borrowed(bytes))
        } else if self.in_auth
            || self.observer.awaits_auth_response()
            || self.observer.command_form(bytes).1
        {
            (
                ClientLine::AuthResponse,
                Cow::Borrowed(redact::MARK.as_bytes()),
            )
        } else {
            (ClientLine::Command, redact::command(bytes))
        }
    }

    /// A complete server line.
    pub fn server_line(&mut self, line: &[u8]) -> ServerStep {
        let Some(reply) = ReplyLine::parse(line).filter(|r| r.last) else {
            return ServerStep::Continue;
        };
        let auth = Waiting::Command(Verb::Auth);
        match (self.waiting.front(), reply.code) {
            // A challenge: the AUTH goes on, and keeps its place.
            (Some(w), 334) if *w == auth => return ServerStep::Continue,
            // No request waits: the greeting, or a 421 at a timeout.
            (None, _) => return ServerStep::Continue,
            _ => {}
        }
        let Some(answered) = self.waiting.pop_front() else {
            return ServerStep::Continue;
        };
        if answered == auth {
            self.in_auth = false;
        }
        let prompt = match &answered {
            Waiting::Command(verb) => Prompt::Command(verb),
            Waiting::AuthResponse => Prompt::AuthResponse,
            Waiting::EndOfData => Prompt::EndOfData,
        };
        // Only the reply's last line: the follower has no use for an EHLO's keywords.
        match self.observer.replied(prompt, &[line]) {
            Replied::TlsStarts => ServerStep::TlsStarts,
            Replied::Continue if answered == Waiting::Command(Verb::StartTls) => {
                ServerStep::TlsRefused
            }
            Replied::Continue => ServerStep::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pipelined_auth_continuation_is_a_secret_before_its_334_arrives() {
        let mut f = Follower::new();
        let (kind, rec) = f.client_line(b"EHLO c\r\n");
        assert_eq!((kind, &*rec), (ClientLine::Command, &b"EHLO c\r\n"[..]));
        f.client_line(b"AUTH PLAIN\r\n");
        let (kind, rec) = f.client_line(b"AGFsaWNlAHNlY3JldA==\r\n");
        assert_eq!(
            (kind, &*rec),
            (ClientLine::AuthResponse, redact::CONTINUATION)
        );
        // EHLO's reply does not end the AUTH; the 334 neither; the 235 does.
        f.server_line(b"250 ok\r\n");
        f.server_line(b"334 \r\n");
        assert_eq!(f.client_line(b"more\r\n").0, ClientLine::AuthResponse);
        f.server_line(b"235 ok\r\n");
        assert_eq!(f.client_line(b"ETRN a\r\n").0, ClientLine::Command);
    }

    #[test]
    fn a_response_sent_after_a_refused_auth_is_still_a_secret() {
        let mut f = Follower::new();
        f.client_line(b"AUTH PLAIN\r\n");
        f.server_line(b"504 5.5.4 unrecognised\r\n");
        let (kind, rec) = f.client_line(b"AGFsaWNlAHNlY3JldA==\r\n");
        assert_eq!(
            (kind, &*rec),
            (ClientLine::AuthResponse, redact::CONTINUATION)
        );
        // Its own reply pairs with it; a command ends the window.
        f.server_line(b"500 5.5.2 unknown\r\n");
        assert_eq!(f.client_line(b"ETRN a\r\n").0, ClientLine::Command);
        assert_eq!(f.client_line(b"c2VjcmV0\r\n").0, ClientLine::Command);
        // After a 235 the next line is a command again.
        let mut f = Follower::new();
        f.client_line(b"AUTH PLAIN AGFsaWNl\r\n");
        f.server_line(b"235 ok\r\n");
        assert_eq!(f.client_line(b"XCLIENT a\r\n").0, ClientLine::Command);
    }

    #[test]
    fn data_follows_354_and_tls_follows_220_to_starttls() {
        let mut f = Follower::new();
        for l in [&b"MAIL FROM:<>\r\n"[..], b"RCPT TO:<a@b>\r\n", b"DATA\r\n"] {
            f.client_line(l);
        }
        f.server_line(b"250 ok\r\n");
        f.server_line(b"250 ok\r\n");
        assert!(!f.is_in_data());
        f.server_line(b"354 go\r\n");
        assert_eq!(f.client_line(b"QUIT\r\n").0, ClientLine::Data);
        assert_eq!(f.client_line(b".\r\n").0, ClientLine::Data);
        f.server_line(b"250 queued\r\n");
        f.client_line(b"STARTTLS\r\n");
        assert_eq!(f.server_line(b"220 go\r\n"), ServerStep::TlsStarts);
    }

    #[test]
    fn the_follower_reads_by_the_observer_s_rules() {
        // Data ends at any ".\r\n" line, as a line-reading upstream ends it.
        let mut f = Follower::new();
        f.client_line(b"DATA\r\n");
        f.server_line(b"354 go\r\n");
        assert_eq!(f.client_line(b"text\n").0, ClientLine::Data);
        assert_eq!(f.client_line(b".\r\n").0, ClientLine::Data);
        assert!(!f.is_in_data());
        f.server_line(b"250 queued\r\n");
        // The proxy relays a line whatever its length: still a command, recorded whole.
        let long = format!("NOOP {}\r\n", "a".repeat(10_000));
        let (kind, recorded) = f.client_line(long.as_bytes());
        assert_eq!((kind, recorded.len()), (ClientLine::Command, long.len()));
        f.server_line(b"250 ok\r\n");
        // A 334 to a response sent after a refused AUTH: the next line is a response, whatever
        // it looks like; a 235 to it ends the exchange.
        f.client_line(b"AUTH PLAIN\r\n");
        f.server_line(b"504 no\r\n");
        assert_eq!(f.client_line(b"AGFsaWNl\r\n").0, ClientLine::AuthResponse);
        f.server_line(b"334 more\r\n");
        assert_eq!(f.client_line(b"RSET\r\n").0, ClientLine::AuthResponse);
        f.server_line(b"235 ok\r\n");
        assert_eq!(f.client_line(b"c2VjcmV0\r\n").0, ClientLine::Command);
    }
}
