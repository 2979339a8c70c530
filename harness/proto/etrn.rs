//! Reading one ETRN command line: the raw argument, its parsed form, and the flags a conformance
//! check needs. Shared by the scripted session and the cassette replay, so both record ETRN alike.

use std::time::Instant;

use crate::domain::{EtrnArg, EtrnArgError};
use crate::escape::{escape, escape_text, escapes_to_itself};
use crate::wire::framing::find_byte;
use crate::wire::{Command, Verb};

use super::event::{EtrnFlag, EtrnRecord};
use super::recordable::PlainEtrn;
use super::replies::Sent;

/// Where the session stands when the ETRN arrives: tracked by the
/// [`ServerSideObserver`](crate::wire::observer::ServerSideObserver).
pub use crate::wire::observer::Greeted;

/// The facts about one ETRN command that decide its answer, gathered by the session for the
/// [`Behaviour`](super::Behaviour).
#[derive(Debug, Clone, Copy)]
pub struct EtrnFacts<'a> {
    /// The argument bytes, outer spaces trimmed; empty when there is none.
    pub argument: &'a [u8],
    /// The argument as an ETRN argument, when it is one.
    pub parsed: Option<&'a EtrnArg>,
    pub in_transaction: bool,
    pub before_hello: bool,
    /// The session's clock: when it was accepted, moved on by every timeout it handled (a
    /// behaviour that remembers queue runs across sessions times them with it).
    pub now: Instant,
}

impl EtrnFacts<'_> {
    /// The node: the argument without one leading `@` or `#`.
    pub fn node(&self) -> &[u8] {
        match self.argument.first() {
            Some(b'@' | b'#') => &self.argument[1..],
            _ => self.argument,
        }
    }
}

/// An ETRN line, read.
#[derive(Debug)]
pub struct EtrnLine<'a> {
    /// The argument bytes, spaces trimmed; empty when there is none.
    pub argument: &'a [u8],
    /// The argument as an ETRN argument, when it is UTF-8.
    pub parsed: Option<Result<EtrnArg, EtrnArgError>>,
    /// The argument as text, when it is UTF-8: validated once, for the parse and the record.
    text: Option<&'a str>,
    /// The argument took the parse's fast path: its text is its parsed argument's and escapes
    /// to itself (see `held_by_arg`), known without looking again.
    plain: bool,
    flags: Vec<EtrnFlag>,
}

/// Reads an ETRN command (its line end included).
pub fn read_etrn<'a>(
    command: &Command<'a>,
    greeted: Greeted,
    in_transaction: bool,
) -> EtrnLine<'a> {
    read_etrn_into(command, greeted, in_transaction, &mut String::new())
}

/// [`read_etrn`], a plain argument's parsed text written into `spare`'s allocation: a session
/// gives each plain ETRN's back ([`EtrnLine::take_spare`]), so a pipelined ETRN allocates none.
pub(crate) fn read_etrn_into<'a>(
    command: &Command<'a>,
    greeted: Greeted,
    in_transaction: bool,
    spare: &mut String,
) -> EtrnLine<'a> {
    let argument = command.argument();
    let mut flags = Vec::new();
    // The verb is ETRN: sent as anything but its upper-case text, some of it was lower case.
    let as_sent = command.verb_as_sent();
    let lower_case = match command.verb() {
        // Four octets compared as one number: a slice comparison calls `memcmp`.
        Verb::Etrn => <[u8; 4]>::try_from(as_sent).map_or(true, |four| four != *b"ETRN"),
        verb => as_sent != verb.as_str().as_bytes(),
    };
    if lower_case {
        flags.push(EtrnFlag::LowerCaseVerb);
    }
    if !command.line().ends_with(b"\r\n") {
        flags.push(EtrnFlag::BareLf);
    }
    match greeted {
        Greeted::No => flags.push(EtrnFlag::BeforeHello),
        Greeted::EtrnNotAdvertised => flags.push(EtrnFlag::NotAdvertised),
        Greeted::Helo => flags.push(EtrnFlag::AfterHelo),
        Greeted::EtrnAdvertised => {}
    }
    if in_transaction {
        flags.push(EtrnFlag::InTransaction);
    }
    let text = std::str::from_utf8(argument).ok();
    let plain_arg = text.and_then(|text| EtrnArg::parse_plain_into(text, spare));
    let plain = plain_arg.is_some();
    let parsed = match plain_arg {
        Some(arg) => Some(Ok(arg)),
        None => text.map(EtrnArg::parse),
    };
    // An argument read as a domain (an option character, then letters, digits, hyphens, dots or
    // U-labels) holds no space and no comma: only another one is searched for them.
    let a_domain = matches!(&parsed, Some(Ok(arg)) if arg.domain().is_some());
    if !a_domain && (find_byte(argument, b' ').is_some() || find_byte(argument, b',').is_some()) {
        flags.push(EtrnFlag::SeveralNodes);
    }
    if !argument.is_empty() && !matches!(parsed, Some(Ok(_))) {
        flags.push(EtrnFlag::Invalid);
    }
    EtrnLine {
        argument,
        parsed,
        text,
        plain,
        flags,
    }
}

impl<'a> EtrnLine<'a> {
    /// The argument, as a reply shows it: as text when it was found to be UTF-8.
    pub fn sent(&self) -> Sent<'a> {
        match self.text {
            Some(text) => Sent::Utf8(text),
            None => Sent::Bytes(self.argument),
        }
    }

    /// The argument took the parse's fast path: letters, digits, hyphens, dots and an option
    /// character, printable ASCII that escapes to itself.
    pub(crate) fn is_plain(&self) -> bool {
        self.plain
    }

    /// A plain argument's parsed form, given up for its text's allocation (the next ETRN's
    /// parse writes into it): a plain argument's record and reply need only its bytes (see
    /// [`EtrnLine::into_plain`]). `None` for any other argument, whose record needs its parse.
    #[inline(always)]
    pub(crate) fn take_spare(&mut self) -> Option<String> {
        if !self.plain {
            return None;
        }
        match self.parsed.take() {
            Some(Ok(arg)) => Some(arg.into_spare()),
            other => {
                self.parsed = other;
                None
            }
        }
    }

    /// The facts a behaviour answers from.
    pub fn facts(&self, greeted: Greeted, in_transaction: bool, now: Instant) -> EtrnFacts<'_> {
        EtrnFacts {
            argument: self.argument,
            parsed: self.parsed.as_ref().and_then(|p| p.as_ref().ok()),
            in_transaction,
            before_hello: greeted == Greeted::No,
            now,
        }
    }

    /// The record of this ETRN with the reply it got (`None`: no reply). Consumes the line: the
    /// parsed argument and the flags move into the record, uncopied.
    pub fn record(self, reply: Option<u16>) -> EtrnRecord {
        record_of(self.argument, self.text, self.parsed, reply, self.flags)
    }

    /// [`EtrnLine::record`] as its parts, when they make it (its text is its parsed argument's):
    /// the record is never made on the smart host's path (see [`super::recordable`]).
    // Inlined, as `Session::emit_etrn` is: a call copies the line to pass it (measured: 39
    // instructions a pipelined ETRN for the two).
    #[inline(always)]
    pub(crate) fn into_plain(self, reply: Option<u16>) -> Result<PlainEtrn, Box<EtrnRecord>> {
        let held =
            self.plain || matches!(&self.parsed, Some(Ok(arg)) if held_by_arg(arg, self.text));
        if held {
            Ok(PlainEtrn::new(self.argument, reply, self.flags))
        } else {
            // Boxed, as its event has it.
            Err(Box::new(self.record(reply)))
        }
    }
}

/// Whether `arg` holds `text` as a record writes it: the argument's text is not kept beside it.
fn held_by_arg(arg: &EtrnArg, text: Option<&str>) -> bool {
    text.is_some_and(|text| escapes_to_itself(text.as_bytes()) && arg.raw() == text)
}

/// The record an ETRN with this argument, reply and flags has: what [`EtrnLine::record`] gives,
/// from its parts (the recorder keeps only these and rebuilds the rest).
pub fn rebuild_etrn_record(
    argument: &[u8],
    reply: Option<u16>,
    flags: Vec<EtrnFlag>,
) -> EtrnRecord {
    let text = std::str::from_utf8(argument).ok();
    record_of(argument, text, text.map(EtrnArg::parse), reply, flags)
}

/// The record of `argument` (`text` when it is UTF-8), parsed as `parsed`: its text is not
/// copied when the parsed argument holds it as it is written (no escaping changes it).
fn record_of(
    argument: &[u8],
    text: Option<&str>,
    parsed: Option<Result<EtrnArg, EtrnArgError>>,
    reply: Option<u16>,
    flags: Vec<EtrnFlag>,
) -> EtrnRecord {
    let arg = parsed.and_then(Result::ok);
    let held = arg.as_ref().is_some_and(|arg| held_by_arg(arg, text));
    let escaped = (!held).then(|| text.map_or_else(|| escape(argument), escape_text));
    EtrnRecord::new(escaped, arg, reply, flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// An argument that takes the parse's fast path (which `paths_agree`, in `domain`, holds
        /// to the full parse) is held by its parse, as `read_etrn` takes for granted.
        #[test]
        fn a_plain_argument_is_held_by_its_parse(
            argument in "[@#]?([ -~]|\u{fc}|\t){0,16}",
        ) {
            if let Some(plain) = EtrnArg::parse_plain(&argument) {
                proptest::prop_assert!(held_by_arg(&plain, Some(&argument)));
            }
        }

        /// Whatever the argument, it is flagged as several nodes exactly when it holds a space or
        /// a comma, whether or not it was read as a domain.
        #[test]
        fn several_nodes_whatever_the_argument_s_form(
            argument in "[@#]?([a-zA-Z0-9.,_\\-]|\u{fc}| |\t){0,12}",
        ) {
            let line = format!("ETRN {argument}\r\n");
            let read = read_etrn(&Command::parse(line.as_bytes()), Greeted::EtrnAdvertised, false);
            let several = read.argument.iter().any(|b| matches!(b, b' ' | b','));
            proptest::prop_assert_eq!(read.flags.contains(&EtrnFlag::SeveralNodes), several);
        }
    }
}
