//! A reply that quotes the ETRN argument, on its way from the session to the recorder as the
//! text around the argument and the argument, not as a line.
//!
//! Every pipelined ETRN is answered `250 OK, queuing for node d1.example started`. As an
//! [`Event::Reply`] that costs a vector and a string, made by the session and freed by the
//! recorder, which first searches the line for the argument again to pack it as "this template
//! around the argument". The session knows both already: the reply's [`Template`] was cut once
//! around its `{node}`, and the argument is the one it just read. So it queues a
//! [`QuotedReply`] instead, and the smart host's driver, asking for
//! [`Conversation::poll_recordable`], hands it to the recorder as it is.
//!
//! Private to the path between the two: [`Session::poll_output`], and so every other reader of a
//! session (the prediction, the probe, the tests), the recording stream and the live feeds get
//! the very [`Event::Reply`] the line makes ([`QuotedReply::into_event`]). `Event` keeps its
//! shape: its users, its JSON schema and every recording are as they were.
//!
//! [`Template`]: crate::reply::Template
//! [`Conversation::poll_recordable`]: super::Conversation::poll_recordable
//! [`Session::poll_output`]: super::Session::poll_output

use std::fmt;
use std::sync::Arc;

use super::event::{Event, LineBytes};
use super::session::Output;

/// A one-line reply: `around[0]`, the argument, `around[1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotedReply {
    code: u16,
    /// The text before the argument and after it, shared with the reply it was filled from.
    around: Arc<[String]>,
    /// Printable ASCII (so the line shows it as it is): kept in place, as a command line's bytes.
    argument: LineBytes,
}

impl QuotedReply {
    /// The reply `before argument after`, with `around` holding `[before, after]`; `None` when
    /// `argument` is not printable ASCII (a reply shows anything else cleaned or replaced, so
    /// the line would not be the argument between the two).
    pub(crate) fn new(code: u16, around: Arc<[String]>, argument: &[u8]) -> Option<QuotedReply> {
        (around.len() == 2 && super::replies::printable_ascii(argument)).then(|| QuotedReply {
            code,
            around,
            argument: LineBytes::from(argument),
        })
    }

    pub fn code(&self) -> u16 {
        self.code
    }

    /// `[before, after]`, as the reply shares them.
    pub(crate) fn around(&self) -> &Arc<[String]> {
        &self.around
    }

    /// The argument quoted.
    pub(crate) fn argument(&self) -> &[u8] {
        &self.argument
    }

    fn part(&self, i: usize) -> &str {
        self.around.get(i).map_or("", String::as_str)
    }

    /// The argument as text: printable ASCII, so never replaced.
    fn argument_text(&self) -> &str {
        std::str::from_utf8(&self.argument).unwrap_or_default()
    }

    /// The reply's line, as the reply filled in would have it.
    pub fn line(&self) -> String {
        let (before, argument, after) = (self.part(0), self.argument_text(), self.part(1));
        let mut line = String::with_capacity(before.len() + argument.len() + after.len());
        line.push_str(before);
        line.push_str(argument);
        line.push_str(after);
        line
    }

    /// The reply's event, as the session reports any reply.
    pub fn into_event(self) -> Event {
        Event::Reply {
            code: self.code,
            lines: vec![self.line()],
        }
    }

    /// Appends the reply's bytes on the wire to `out`, as [`crate::reply::Reply::write_wire`]
    /// writes the reply filled in.
    pub(crate) fn write_wire(&self, out: &mut Vec<u8>) {
        let (before, after) = (self.part(0).as_bytes(), self.part(1).as_bytes());
        let code = self.code;
        let digits = [code / 100, code / 10 % 10, code % 10].map(|d| b'0' + (d % 10) as u8);
        out.reserve(before.len() + self.argument.len() + after.len() + 6);
        out.extend_from_slice(&digits);
        if before.len() + self.argument.len() + after.len() > 0 {
            out.push(b' ');
            out.extend_from_slice(before);
            out.extend_from_slice(&self.argument);
            out.extend_from_slice(after);
        }
        out.extend_from_slice(b"\r\n");
    }
}

impl fmt::Display for QuotedReply {
    /// The line, for a log line about the reply.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.part(0))?;
        f.write_str(self.argument_text())?;
        f.write_str(self.part(1))
    }
}

/// What a conversation has for its driver, as the smart host's driver takes it
/// ([`Conversation::poll_recordable`](super::Conversation::poll_recordable)): an [`Output`], or
/// a reply for the recorder to pack as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recordable {
    Output(Output),
    QuotedReply(QuotedReply),
}

impl Recordable {
    /// As an [`Output`]: a quoted reply becomes its event.
    pub fn into_output(self) -> Output {
        match self {
            Recordable::Output(output) => output,
            Recordable::QuotedReply(reply) => Output::Event(reply.into_event()),
        }
    }
}
