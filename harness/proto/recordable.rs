//! What a session hands the smart host's recorder in parts, not made into events: an ETRN's
//! command line, a reply quoting the ETRN argument, and an ETRN whose record its argument,
//! reply and flags make.
//!
//! Every pipelined ETRN is answered `250 OK, queuing for node d1.example started`. As an
//! [`Event::Reply`] that costs a vector and a string, made by the session and freed by the
//! recorder, which first searches the line for the argument again to pack it as "this template
//! around the argument". The session knows both already: the reply's [`Template`] was cut once
//! around its `{node}`, and the argument is the one it just read. So it queues a
//! [`QuotedReply`] instead. Likewise an ETRN's [`Event::Etrn`] boxes a record the recorder
//! packs as its argument, reply and flags: the session queues a [`PlainEtrn`] of those. The
//! smart host's driver, asking for [`Conversation::poll_recordable`], hands both to the
//! recorder as they are. And the line itself: its [`Event::Command`] is built, queued, taken
//! out and matched like any command's, though an ETRN's line holds no secret and its verb is
//! known, so the session queues an [`EtrnCommandLine`] of its bytes and line end.
//!
//! Meant for the path between the two only: the types are public (the driver's
//! [`Conversation`](super::Conversation) method names them) but only this crate makes them, and
//! [`Session::poll_output`], and so every other reader of a session (the prediction, the probe,
//! the tests), the recording stream and the live feeds get the very events these stand for
//! ([`Recordable::into_output`]). `Event` keeps its shape: its
//! users, its JSON schema and every recording are as they were.
//!
//! [`Template`]: crate::reply::Template
//! [`Conversation::poll_recordable`]: super::Conversation::poll_recordable
//! [`Session::poll_output`]: super::Session::poll_output

use std::fmt;
use std::sync::Arc;

use super::etrn::rebuild_etrn_record;
use super::event::{CommandLine, EtrnFlag, Event, LineBytes};
use super::session::Output;
use crate::reply::Quoting;
use crate::wire::Verb;
use crate::wire::observer::ObservedCommand;

/// An ETRN's command line recorded as it came: no secret in it, so its recorded form is the
/// line itself, and its verb is ETRN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtrnCommandLine {
    /// The line as received, line end included.
    raw: LineBytes,
    bare_lf: bool,
}

impl EtrnCommandLine {
    /// The line `observed`, when it is an ETRN recorded as it came; `None` for any other line
    /// (another verb, an AUTH response, a line with a secret replaced), which is reported as
    /// its event.
    pub(crate) fn of(observed: &ObservedCommand<'_>) -> Option<EtrnCommandLine> {
        // The verb first: every other command (a mail session's) is turned away at once.
        if !matches!(observed.command.verb(), Verb::Etrn) || observed.auth_response {
            return None;
        }
        let line = observed.command.line();
        // The line itself (nearly every line) is known unchanged without comparing it.
        if !std::ptr::eq(&*observed.recorded, line) && *observed.recorded != *line {
            return None;
        }
        Some(EtrnCommandLine {
            raw: LineBytes::from(line),
            bare_lf: !line.ends_with(b"\r\n"),
        })
    }

    /// The line as received, line end included.
    pub(crate) fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Ended by a bare LF instead of CRLF.
    pub(crate) fn bare_lf(&self) -> bool {
        self.bare_lf
    }

    /// The line without its line end, escaped for display ([`CommandLine::text`]).
    pub fn text(&self) -> String {
        super::event::line_text(&self.raw)
    }

    /// The line's event, as the session reports any command line.
    pub fn into_event(self) -> Event {
        Event::Command(CommandLine {
            raw: self.raw,
            verb: Verb::Etrn,
            bare_lf: self.bare_lf,
            redacted: false,
        })
    }
}

/// A one-line reply: `around[0]`, the argument, `around[1]`.
#[derive(Debug, Clone)]
pub struct QuotedReply {
    /// The reply's text around the argument, its code, and its bytes on the wire around it:
    /// shared with the reply it was filled from.
    quoting: Arc<Quoting>,
    /// Printable ASCII (so the line shows it as it is): kept in place, as a command line's bytes.
    argument: LineBytes,
}

impl PartialEq for QuotedReply {
    /// The code and the line.
    fn eq(&self, other: &Self) -> bool {
        self.code() == other.code() && self.line() == other.line()
    }
}

impl Eq for QuotedReply {}

impl QuotedReply {
    /// The reply `quoting` fills in with `argument`; `None` when `argument` is not printable
    /// ASCII (a reply shows anything else cleaned or replaced, so the line would not be the
    /// argument between the two parts).
    pub(crate) fn new(quoting: &Arc<Quoting>, argument: &[u8]) -> Option<QuotedReply> {
        if !super::replies::printable_ascii(argument) {
            return None;
        }
        QuotedReply::of_printable(quoting, argument)
    }

    /// [`QuotedReply::new`] for an `argument` known to be printable ASCII (an ETRN argument that
    /// took the parse's fast path: letters, digits, hyphens, dots and an `@` or `#`), not
    /// checked again.
    pub(crate) fn of_printable(quoting: &Arc<Quoting>, argument: &[u8]) -> Option<QuotedReply> {
        (quoting.around.len() == 2).then(|| QuotedReply {
            quoting: Arc::clone(quoting),
            argument: LineBytes::from(argument),
        })
    }

    pub fn code(&self) -> u16 {
        self.quoting.code
    }

    /// `[before, after]`, as the reply shares them.
    pub(crate) fn around(&self) -> &Arc<[String]> {
        &self.quoting.around
    }

    /// The argument quoted.
    pub(crate) fn argument(&self) -> &[u8] {
        &self.argument
    }

    fn part(&self, i: usize) -> &str {
        self.quoting.around.get(i).map_or("", String::as_str)
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
            code: self.code(),
            lines: vec![self.line()],
        }
    }

    /// Appends the reply's bytes on the wire to `out`, as [`crate::reply::Reply::write_wire`]
    /// writes the reply filled in.
    pub(crate) fn write_wire(&self, out: &mut Vec<u8>) {
        let (before, after) = (&*self.quoting.wire_before, &*self.quoting.wire_after);
        if self.argument.is_empty() && self.line_is_only_the_argument() {
            // An empty line: the code alone, no space after it.
            out.extend_from_slice(before.get(..3).unwrap_or_default());
            out.extend_from_slice(b"\r\n");
            return;
        }
        out.reserve(before.len() + self.argument.len() + after.len());
        out.extend_from_slice(before);
        out.extend_from_slice(&self.argument);
        out.extend_from_slice(after);
    }

    fn line_is_only_the_argument(&self) -> bool {
        self.part(0).is_empty() && self.part(1).is_empty()
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

/// An ETRN whose record is what its argument, reply and flags make
/// (the recorder rebuilds it from them): nearly every ETRN, its argument's text being its parsed
/// argument's (see [`EtrnRecord::raw`]).
///
/// [`EtrnRecord::raw`]: super::EtrnRecord::raw
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainEtrn {
    /// UTF-8, escaping to itself: kept in place, as a command line's bytes.
    argument: LineBytes,
    reply: Option<u16>,
    flags: Vec<EtrnFlag>,
}

impl PlainEtrn {
    /// Only [`super::etrn::EtrnLine::into_plain`] makes one, having checked that the parts
    /// make the record.
    pub(crate) fn new(argument: &[u8], reply: Option<u16>, flags: Vec<EtrnFlag>) -> PlainEtrn {
        PlainEtrn {
            argument: LineBytes::from(argument),
            reply,
            flags,
        }
    }

    /// The argument, outer spaces trimmed.
    pub(crate) fn argument(&self) -> &[u8] {
        &self.argument
    }

    /// The argument as text ([`EtrnRecord::raw`](super::EtrnRecord::raw)).
    pub fn raw(&self) -> &str {
        std::str::from_utf8(&self.argument).unwrap_or_default()
    }

    pub fn reply(&self) -> Option<u16> {
        self.reply
    }

    pub fn flags(&self) -> &[EtrnFlag] {
        &self.flags
    }

    /// The ETRN's event, as the session reports any ETRN.
    pub fn into_event(self) -> Event {
        Event::Etrn(Box::new(rebuild_etrn_record(
            &self.argument,
            self.reply,
            self.flags,
        )))
    }
}

/// What a conversation has for its driver, as the smart host's driver takes it
/// ([`Conversation::poll_recordable`](super::Conversation::poll_recordable)): an [`Output`], or
/// an ETRN's line, a reply or an ETRN for the recorder to pack as they are.
///
/// Why: every pipelined ETRN's reply, made into an [`Event::Reply`], cost a vector and a string
/// that the recorder freed after searching the line for the argument again, and its record a
/// box the recorder unpacked into the same argument, reply and flags. The session knows those
/// parts; the recorder packs them. Anyone else gets the events ([`Recordable::into_output`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recordable {
    Output(Output),
    EtrnCommand(EtrnCommandLine),
    QuotedReply(QuotedReply),
    PlainEtrn(PlainEtrn),
}

impl Recordable {
    /// As an [`Output`]: a line, a quoted reply or an ETRN becomes its event.
    pub fn into_output(self) -> Output {
        match self {
            Recordable::Output(output) => output,
            Recordable::EtrnCommand(line) => Output::Event(line.into_event()),
            Recordable::QuotedReply(reply) => Output::Event(reply.into_event()),
            Recordable::PlainEtrn(etrn) => Output::Event(etrn.into_event()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etrn::{Greeted, read_etrn};
    use crate::proto::replies::{Placeholders, Sent};
    use crate::reply::{Placeholder, Reply};
    use crate::wire::Command;

    proptest::proptest! {
        /// A quoted reply is the reply the placeholders fill in: its line, its event and its
        /// bytes on the wire, whatever the text around the argument and the argument.
        #[test]
        fn a_quoted_reply_is_the_reply_filled_in(
            code in proptest::sample::select(vec![250u16, 251, 421, 458, 501, 550]),
            before in "([ -z]|\u{e9}){0,12}",
            after in "([ -z]|\u{e9}){0,12}",
            node in proptest::bool::ANY,
            argument in proptest::collection::vec(
                proptest::sample::select(b"@#aZ.-1 \t\\\x7f\xc3\xa9\xff".to_vec()),
                0..12,
            ),
        ) {
            let name = if node { "node" } else { "arg" };
            let reply = Reply::parse(&format!("{code} {before}{{{name}}}{after}")).unwrap();
            let quoting = reply.template().and_then(|t| t.quoting()).unwrap();
            let sent = Sent::Bytes(&argument);
            let value = match quoting.placeholder {
                Placeholder::Node => sent.node().bytes(),
                _ => sent.bytes(),
            };
            let filled = Placeholders { arg: Some(sent), ..Placeholders::default() }.reply(&reply);
            let printable = value.iter().all(|b| matches!(b, 0x20..=0x7e));
            let Some(quoted) = QuotedReply::new(quoting, value) else {
                proptest::prop_assert!(!printable, "{value:?}");
                return Ok(());
            };
            proptest::prop_assert_eq!(quoted.code(), code);
            proptest::prop_assert_eq!(&quoted.line(), &filled.lines()[0]);
            proptest::prop_assert_eq!(quoted.to_string(), filled.lines()[0].clone());
            let mut wire = Vec::new();
            quoted.write_wire(&mut wire);
            proptest::prop_assert_eq!(wire, filled.wire_bytes());
            proptest::prop_assert_eq!(
                quoted.into_event(),
                Event::Reply { code, lines: filled.lines().to_vec() }
            );
        }

        /// An ETRN's line handed over as its parts is the event any command line makes, whatever
        /// the verb's case, the space or tab after it, the line end, the length (over the 30
        /// octets kept in place, over a line's limit) and the recorded form (the line itself or
        /// a copy; a secret replaced, or an AUTH response, stays an event).
        #[test]
        fn an_etrn_line_is_the_event_its_line_makes(
            verb in proptest::sample::select(vec!["ETRN", "etrn", "Etrn", "eTrN", "ETRNX", "AUTH", "NOOP", ""]),
            after_verb in proptest::sample::select(vec![" ", "\t", "  ", " \t", ""]),
            argument in "[@#]?([a-zA-Z0-9.=+/_\\-]|\u{fc}| |\t|\u{1}){0,12}",
            repeat in proptest::sample::select(vec![1usize, 4, 60]),
            end in proptest::sample::select(vec!["\r\n", "\n"]),
            form in 0u8..4,
        ) {
            let line = format!("{verb}{after_verb}{}{end}", argument.repeat(repeat));
            let line = line.as_bytes();
            let mut observer = crate::wire::observer::ServerSideObserver::new(
                512,
                crate::wire::observer::DataEnd::CrlfDotCrlf,
                crate::wire::observer::Authentication::Checked,
            );
            let mut observed = observer.command(line);
            match form {
                // As the observer made it: the line itself unless it holds a secret.
                0 => {}
                1 => observed.recorded = std::borrow::Cow::Owned(line.to_vec()),
                2 => observed.recorded = crate::wire::redact::command(line),
                _ => observed = ObservedCommand::auth_response(line),
            }
            let event = Event::Command(CommandLine::from(&observed));
            match EtrnCommandLine::of(&observed) {
                Some(parts) => {
                    let Event::Command(command) = &event else { unreachable!() };
                    proptest::prop_assert_eq!(parts.raw(), &command.raw[..]);
                    proptest::prop_assert_eq!(parts.text(), command.text());
                    proptest::prop_assert_eq!(parts.into_event(), event);
                }
                None => proptest::prop_assert!(
                    !matches!(&event, Event::Command(c) if c.verb == Verb::Etrn && !c.redacted),
                    "{event:?}"
                ),
            }
        }

        /// An ETRN handed over as its parts is the record its line makes.
        #[test]
        fn a_plain_etrn_is_the_record_its_line_makes(
            argument in "[@#]?([a-zA-Z0-9.,_\\-\\\\]|\u{fc}| |\t|\u{1}){0,12}",
            reply in proptest::option::of(proptest::sample::select(vec![250u16, 458, 501])),
            greeted in proptest::sample::select(vec![Greeted::No, Greeted::EtrnAdvertised, Greeted::Helo]),
        ) {
            let line = format!("ETRN {argument}\r\n");
            let command = Command::parse(line.as_bytes());
            let record = read_etrn(&command, greeted, false).record(reply);
            match read_etrn(&command, greeted, false).into_plain(reply) {
                Ok(plain) => {
                    proptest::prop_assert!(record.raw_is_the_arguments());
                    proptest::prop_assert_eq!(plain.raw(), record.raw());
                    proptest::prop_assert_eq!(plain.into_event(), Event::Etrn(Box::new(record)));
                }
                Err(boxed) => proptest::prop_assert_eq!(*boxed, record),
            }
        }
    }
}
