//! Reading one ETRN command line: the raw argument, its parsed form, and the flags a conformance
//! check needs. Shared by the scripted session and the cassette replay, so both record ETRN alike.

use crate::domain::{EtrnArg, EtrnArgError};
use crate::escape::escape;
use crate::wire;

use super::event::{EtrnFlag, EtrnRecord};

/// Where the session stands when the ETRN arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greeted {
    /// No EHLO/HELO answered yet.
    No,
    /// EHLO answered, with the ETRN keyword.
    EtrnAdvertised,
    /// An EHLO reply without ETRN.
    EtrnNotAdvertised,
    /// HELO: the session has no service extensions at all.
    Helo,
}

/// An ETRN line, read.
#[derive(Debug)]
pub struct EtrnLine<'a> {
    /// The argument bytes, spaces trimmed; empty when there is none.
    pub argument: &'a [u8],
    /// The argument as an ETRN argument, when it is UTF-8.
    pub parsed: Option<Result<EtrnArg, EtrnArgError>>,
    flags: Vec<EtrnFlag>,
}

/// Reads `line` (line end included) as an ETRN command.
pub fn read_etrn(line: &[u8], greeted: Greeted, in_transaction: bool) -> EtrnLine<'_> {
    let verb = wire::command::words(line).next().unwrap_or(&[]);
    let argument = wire::argument(line);
    let mut flags = Vec::new();
    if verb != b"ETRN" {
        flags.push(EtrnFlag::LowerCaseVerb);
    }
    if !line.ends_with(b"\r\n") {
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
    if argument.iter().any(|b| *b == b' ' || *b == b',') {
        flags.push(EtrnFlag::SeveralNodes);
    }
    let parsed = std::str::from_utf8(argument).ok().map(EtrnArg::parse);
    if !argument.is_empty() && !matches!(parsed, Some(Ok(_))) {
        flags.push(EtrnFlag::Invalid);
    }
    EtrnLine {
        argument,
        parsed,
        flags,
    }
}

impl EtrnLine<'_> {
    /// The record of this ETRN with the reply it got (`None`: no reply).
    pub fn record(&self, reply: Option<u16>) -> EtrnRecord {
        record_of(
            self.argument,
            self.parsed.clone(),
            reply,
            self.flags.clone(),
        )
    }
}

/// The record an ETRN with this argument, reply and flags has: what [`EtrnLine::record`] gives,
/// from its parts (the recorder keeps only these and rebuilds the rest).
pub fn rebuild_etrn_record(
    argument: &[u8],
    reply: Option<u16>,
    flags: Vec<EtrnFlag>,
) -> EtrnRecord {
    let parsed = std::str::from_utf8(argument).ok().map(EtrnArg::parse);
    record_of(argument, parsed, reply, flags)
}

fn record_of(
    argument: &[u8],
    parsed: Option<Result<EtrnArg, EtrnArgError>>,
    reply: Option<u16>,
    flags: Vec<EtrnFlag>,
) -> EtrnRecord {
    let arg = parsed.and_then(Result::ok);
    let (option, domain) = match &arg {
        Some(arg) => (
            Some(arg.option()),
            arg.domain().map(|d| d.normalised().to_owned()),
        ),
        None => (None, None),
    };
    EtrnRecord {
        raw: escape(argument),
        arg,
        option,
        domain,
        reply,
        flags,
    }
}
