//! Protocol violations found in a recording, whatever the scenario expects.
//!
//! These are the rules any ETRN client must keep (RFC 1985, RFC 5321) and the command form of the
//! model (spec rows B and O, `scenarios/README.md`), checked on what actually crossed the wire.

use serde::{Deserialize, Serialize};

use crate::domain::{EtrnArg, EtrnOption};
use crate::escape::escape;
use crate::ims::{Grade, Rule};
use crate::proto::{CloseReason, EtrnFlag, Event};
use crate::proto::{Recording, SessionRecording};
use crate::wire::{Command, Verb};

/// One rule broken on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Violation {
    pub grade: Grade,
    /// The session (1-based) it happened in.
    pub session: u64,
    pub kind: ViolationKind,
    /// What was sent, as recorded.
    pub detail: String,
}

/// The kinds of violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ViolationKind {
    /// ETRN before EHLO/HELO was answered.
    EtrnBeforeEhlo,
    /// ETRN to a peer whose EHLO reply did not advertise it.
    EtrnNotAdvertised,
    /// ETRN after the peer refused EHLO and the session fell back to HELO.
    EtrnAfterHelo,
    /// ETRN between MAIL and the end of DATA (RFC 1985 §5).
    EtrnInTransaction,
    /// ETRN after the peer answered an ETRN with 500 or 501 (RFC 1985 §5.2, erratum 4130).
    EtrnAfterSyntaxError,
    /// More than one node in one ETRN (RFC 1985 §5 grammar).
    SeveralNodesInOneEtrn,
    /// An `@` or `#` option character the model never adds.
    OptionCharacter,
    /// An argument that is not a node name at all.
    InvalidArgument,
    /// A line ended with a bare LF (RFC 5321 §2.3.8).
    BareLf,
    /// The session ended without QUIT although the server did not close it.
    NoQuit,
    /// A verb in lower case: legal (RFC 5321 §2.4), noted.
    LowerCaseVerb,
    /// A U-label sent as raw UTF-8 to a server that did not advertise SMTPUTF8 (RFC 6531 §3.2).
    Utf8WithoutSmtputf8,
    /// ETRN before the session's outbound mail (the O-4 baseline sends the mail first).
    EtrnBeforeOutboundMail,
    /// Anything sent after a 421 reply: the connection was closing (RFC 5321 §3.8).
    #[serde(rename = "after-421")]
    After421,
    /// A command sent before the reply to an ETRN (or an ETRN before the reply to the command
    /// before it) came: the IMS waits for each reply (KB175494).
    EtrnNotAwaited,
}

impl ViolationKind {
    /// Every kind.
    pub const ALL: &'static [ViolationKind] = &[
        ViolationKind::EtrnBeforeEhlo,
        ViolationKind::EtrnNotAdvertised,
        ViolationKind::EtrnAfterHelo,
        ViolationKind::EtrnInTransaction,
        ViolationKind::EtrnAfterSyntaxError,
        ViolationKind::SeveralNodesInOneEtrn,
        ViolationKind::OptionCharacter,
        ViolationKind::InvalidArgument,
        ViolationKind::BareLf,
        ViolationKind::NoQuit,
        ViolationKind::LowerCaseVerb,
        ViolationKind::Utf8WithoutSmtputf8,
        ViolationKind::EtrnBeforeOutboundMail,
        ViolationKind::After421,
        ViolationKind::EtrnNotAwaited,
    ];

    /// A short stable identifier, as in reports.
    pub fn id(self) -> &'static str {
        match self {
            ViolationKind::EtrnBeforeEhlo => "etrn-before-ehlo",
            ViolationKind::EtrnNotAdvertised => "etrn-not-advertised",
            ViolationKind::EtrnAfterHelo => "etrn-after-helo",
            ViolationKind::EtrnInTransaction => "etrn-in-transaction",
            ViolationKind::EtrnAfterSyntaxError => "etrn-after-syntax-error",
            ViolationKind::SeveralNodesInOneEtrn => "several-nodes-in-one-etrn",
            ViolationKind::OptionCharacter => "option-character",
            ViolationKind::InvalidArgument => "invalid-argument",
            ViolationKind::BareLf => "bare-lf",
            ViolationKind::NoQuit => "no-quit",
            ViolationKind::LowerCaseVerb => "lower-case-verb",
            ViolationKind::Utf8WithoutSmtputf8 => "utf8-without-smtputf8",
            ViolationKind::EtrnBeforeOutboundMail => "etrn-before-outbound-mail",
            ViolationKind::After421 => "after-421",
            ViolationKind::EtrnNotAwaited => "etrn-not-awaited",
        }
    }

    /// The model's rule this check holds a client to: grade and basis come from that one table
    /// ([`Rule`]), never from the check.
    pub fn rule(self) -> Rule {
        match self {
            ViolationKind::EtrnBeforeEhlo | ViolationKind::EtrnNotAdvertised => Rule::EhloGating,
            ViolationKind::EtrnAfterHelo => Rule::HeloFallback,
            ViolationKind::EtrnInTransaction => Rule::NotInTransaction,
            ViolationKind::EtrnAfterSyntaxError => Rule::ReplySyntax,
            ViolationKind::SeveralNodesInOneEtrn | ViolationKind::OptionCharacter => {
                Rule::OneDomainPerCommand
            }
            ViolationKind::InvalidArgument => Rule::ValidArgument,
            ViolationKind::BareLf => Rule::CrlfLineEnds,
            ViolationKind::NoQuit => Rule::QuitBeforeClosing,
            ViolationKind::LowerCaseVerb => Rule::UpperCaseVerb,
            ViolationKind::Utf8WithoutSmtputf8 => Rule::Utf8NeedsSmtputf8,
            ViolationKind::EtrnBeforeOutboundMail => Rule::OutboundFirst,
            ViolationKind::After421 => Rule::ReplyClosing,
            ViolationKind::EtrnNotAwaited => Rule::AwaitEachReply,
        }
    }

    /// The grade: its rule's.
    pub fn grade(self) -> Grade {
        self.rule().grade()
    }

    pub fn describe(self) -> &'static str {
        match self {
            ViolationKind::EtrnBeforeEhlo => "ETRN before EHLO/HELO",
            ViolationKind::EtrnNotAdvertised => "ETRN although the peer did not advertise it",
            ViolationKind::EtrnInTransaction => "ETRN inside a mail transaction",
            ViolationKind::EtrnAfterSyntaxError => "ETRN after a 500/501 reply to ETRN",
            ViolationKind::SeveralNodesInOneEtrn => "several nodes packed into one ETRN",
            ViolationKind::OptionCharacter => "an '@' or '#' option character",
            ViolationKind::InvalidArgument => "an ETRN argument that is not a node name",
            ViolationKind::BareLf => "a command line ended with a bare LF",
            ViolationKind::NoQuit => "no QUIT before closing",
            ViolationKind::LowerCaseVerb => "a lower-case ETRN verb",
            ViolationKind::EtrnAfterHelo => "ETRN after the fallback to HELO",
            ViolationKind::Utf8WithoutSmtputf8 => {
                "a U-label as raw UTF-8 although the server did not advertise SMTPUTF8"
            }
            ViolationKind::EtrnBeforeOutboundMail => "ETRN before the outbound mail",
            ViolationKind::After421 => "a command after a 421 reply (the connection was closing)",
            ViolationKind::EtrnNotAwaited => "a command sent without waiting for an ETRN's reply",
        }
    }
}

/// Finds every violation in a recording. `explained` are the ETRN arguments the scenario's
/// judgement already grades (expected, forbidden, or matched to the expected node they alter):
/// their option characters are judged there, by their cause, not here again.
pub fn violations(recording: &Recording, explained: &[EtrnArg]) -> Vec<Violation> {
    recording
        .sessions
        .iter()
        .flat_map(|s| session_violations(s, explained))
        .collect()
}

/// The session's violations, in this order: a bare LF, each ETRN's, outbound mail after ETRN,
/// what the events show (after 421, not awaited), no QUIT.
fn session_violations(s: &SessionRecording, explained: &[EtrnArg]) -> Vec<Violation> {
    let mut found = Vec::new();
    if let Some(c) = s.commands.iter().find(|c| c.bare_lf) {
        found.push((ViolationKind::BareLf, c.raw.clone()));
    }
    found.extend(etrn_violations(s, explained));
    found.extend(mail_after_etrn(s));
    found.extend(event_violations(s));
    found.extend(no_quit(s));
    found
        .into_iter()
        .map(|(kind, detail)| Violation {
            grade: kind.grade(),
            session: s.id,
            kind,
            detail,
        })
        .collect()
}

/// What each ETRN of the session breaks, with the command as shown.
fn etrn_violations(s: &SessionRecording, explained: &[EtrnArg]) -> Vec<(ViolationKind, String)> {
    let mut out = Vec::new();
    let mut push = |kind: ViolationKind, detail: String| out.push((kind, detail));
    let mut refused_syntax = false;
    let smtputf8 = advertised_smtputf8(s);
    for e in &s.etrn {
        let r = &e.record;
        let shown = format!("ETRN {}", r.raw());
        if refused_syntax {
            push(ViolationKind::EtrnAfterSyntaxError, shown.clone());
        }
        for flag in &r.flags {
            let kind = match flag {
                EtrnFlag::BeforeHello => ViolationKind::EtrnBeforeEhlo,
                EtrnFlag::NotAdvertised => ViolationKind::EtrnNotAdvertised,
                EtrnFlag::AfterHelo => ViolationKind::EtrnAfterHelo,
                EtrnFlag::InTransaction => ViolationKind::EtrnInTransaction,
                EtrnFlag::SeveralNodes => ViolationKind::SeveralNodesInOneEtrn,
                // Packed nodes are no node name: the packing is the one mistake.
                EtrnFlag::Invalid if r.flags.contains(&EtrnFlag::SeveralNodes) => continue,
                EtrnFlag::Invalid => ViolationKind::InvalidArgument,
                EtrnFlag::LowerCaseVerb => ViolationKind::LowerCaseVerb,
                // Reported once per session above, for any command.
                EtrnFlag::BareLf => continue,
            };
            push(kind, shown.clone());
        }
        if matches!(r.option, Some(EtrnOption::Subdomains | EtrnOption::Queue)) {
            let graded_by_scenario = EtrnArg::parse(r.raw()).is_ok_and(|a| explained.contains(&a));
            if !graded_by_scenario {
                push(ViolationKind::OptionCharacter, shown.clone());
            }
        }
        // A U-label sent as configured is the model's own wire form (IMS 5.5 predates IDNA:
        // spec O-7); only one the configuration does not hold is flagged.
        let as_configured = EtrnArg::parse(r.raw())
            .is_ok_and(|a| explained.iter().any(|x| x == &a && x.raw() == a.raw()));
        if !r.raw().is_ascii() && !smtputf8 && !as_configured {
            push(ViolationKind::Utf8WithoutSmtputf8, shown.clone());
        }
        if matches!(r.reply, Some(500 | 501)) {
            refused_syntax = true;
        }
    }
    out
}

/// Outbound mail after an ETRN: the first MAIL command the server accepted after the first ETRN.
fn mail_after_etrn(s: &SessionRecording) -> Option<(ViolationKind, String)> {
    let first = s.commands.iter().position(|c| c.verb == Verb::Etrn)?;
    let mail = s.commands[first..]
        .iter()
        .find(|c| c.verb == Verb::Mail && c.reply.as_ref().is_some_and(|r| r.code == 250))?;
    Some((ViolationKind::EtrnBeforeOutboundMail, mail.raw.clone()))
}

/// What the client sent after the server's 421 (recorded during the linger), and commands sent
/// before an ETRN's reply had come.
fn event_violations(s: &SessionRecording) -> Vec<(ViolationKind, String)> {
    let mut out = Vec::new();
    let mut push = |kind: ViolationKind, detail: String| out.push((kind, detail));
    let mut previous_verb: Option<&Verb> = None;
    let mut after_421 = false;
    for timed in &s.events {
        match &timed.event {
            Event::AfterClose { raw } if !after_421 && !raw.iter().all(u8::is_ascii_whitespace) => {
                after_421 = true;
                push(ViolationKind::After421, escape(raw));
            }
            Event::Unawaited { raw } => {
                let etrn = *Command::parse(raw).verb() == Verb::Etrn;
                if previous_verb == Some(&Verb::Etrn) || etrn {
                    push(ViolationKind::EtrnNotAwaited, escape(raw));
                }
            }
            Event::Command(c) => previous_verb = Some(&c.verb),
            Event::Message(_) => previous_verb = None,
            _ => {}
        }
    }
    out
}

/// A session the client closed without QUIT.
fn no_quit(s: &SessionRecording) -> Option<(ViolationKind, String)> {
    let quit = s.commands.iter().any(|c| c.verb == Verb::Quit);
    (!quit && matches!(s.close, Some(CloseReason::PeerClosed | CloseReason::Io(_)))).then(|| {
        (
            ViolationKind::NoQuit,
            format!("the client closed after {} command(s)", s.commands.len()),
        )
    })
}

/// Whether the server's EHLO reply in this session advertised SMTPUTF8.
fn advertised_smtputf8(s: &SessionRecording) -> bool {
    s.commands
        .iter()
        .filter(|c| c.verb == Verb::Ehlo)
        .filter_map(|c| c.reply.as_ref())
        .any(|r| {
            crate::wire::ehlo::advertises(r.lines.iter().skip(1).map(String::as_str), "SMTPUTF8")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_takes_its_grade_from_its_rule_in_the_one_table() {
        for kind in ViolationKind::ALL {
            assert_eq!(kind.grade(), kind.rule().grade(), "{}", kind.id());
            assert!(Rule::ALL.contains(&kind.rule()), "{}", kind.id());
        }
    }

    #[test]
    fn ids_are_the_serialised_names_and_unique() {
        for kind in ViolationKind::ALL {
            let json = serde_json::to_value(kind).unwrap_or_default();
            assert_eq!(json, kind.id(), "{kind:?}");
        }
        let ids: std::collections::HashSet<_> = ViolationKind::ALL.iter().map(|k| k.id()).collect();
        assert_eq!(ids.len(), ViolationKind::ALL.len());
    }
}
