//! Protocol violations found in a recording, whatever the scenario expects.
//!
//! These are the rules any ETRN client must keep (RFC 1985, RFC 5321) and the command form of the
//! model (`ims-etrn.md` §9), checked on what actually crossed the wire.

use serde::Serialize;

use crate::domain::{EtrnArg, EtrnOption};
use crate::ims::Grade;
use crate::smarthost::{Recording, SessionRecording};
use crate::smtp::{CloseReason, EtrnFlag};

/// One rule broken on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub grade: Grade,
    /// The session (1-based) it happened in.
    pub session: u64,
    pub kind: ViolationKind,
    /// What was sent, as recorded.
    pub detail: String,
}

/// The kinds of violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViolationKind {
    /// ETRN before EHLO/HELO was answered.
    EtrnBeforeEhlo,
    /// ETRN to a peer whose EHLO reply did not advertise it, or after HELO.
    EtrnNotAdvertised,
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
}

impl ViolationKind {
    /// The grade, per `ims-etrn.md` §9 and the RFCs.
    pub fn grade(self) -> Grade {
        match self {
            ViolationKind::EtrnBeforeEhlo
            | ViolationKind::EtrnNotAdvertised
            | ViolationKind::EtrnInTransaction
            | ViolationKind::BareLf => Grade::Must,
            ViolationKind::EtrnAfterSyntaxError
            | ViolationKind::SeveralNodesInOneEtrn
            | ViolationKind::OptionCharacter
            | ViolationKind::InvalidArgument
            | ViolationKind::NoQuit => Grade::Should,
            ViolationKind::LowerCaseVerb => Grade::Informational,
        }
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
        }
    }
}

/// Finds every violation in a recording. `expected_forms` are the ETRN arguments the scenario
/// itself grades (expected or forbidden): their option characters are judged there, not here.
pub fn violations(recording: &Recording, expected_forms: &[EtrnArg]) -> Vec<Violation> {
    recording
        .sessions
        .iter()
        .flat_map(|s| session_violations(s, expected_forms))
        .collect()
}

fn session_violations(s: &SessionRecording, expected_forms: &[EtrnArg]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut push = |kind: ViolationKind, detail: String| {
        out.push(Violation {
            grade: kind.grade(),
            session: s.id,
            kind,
            detail,
        })
    };
    if let Some(c) = s.commands.iter().find(|c| c.bare_lf) {
        push(ViolationKind::BareLf, c.raw.clone());
    }
    let mut refused_syntax = false;
    for e in &s.etrn {
        let r = &e.record;
        let shown = format!("ETRN {}", r.raw);
        if refused_syntax {
            push(ViolationKind::EtrnAfterSyntaxError, shown.clone());
        }
        for flag in &r.flags {
            let kind = match flag {
                EtrnFlag::BeforeHello => ViolationKind::EtrnBeforeEhlo,
                EtrnFlag::NotAdvertised => ViolationKind::EtrnNotAdvertised,
                EtrnFlag::InTransaction => ViolationKind::EtrnInTransaction,
                EtrnFlag::SeveralNodes => ViolationKind::SeveralNodesInOneEtrn,
                EtrnFlag::Invalid => ViolationKind::InvalidArgument,
                EtrnFlag::LowerCaseVerb => ViolationKind::LowerCaseVerb,
                // Reported once per session above, for any command.
                EtrnFlag::BareLf => continue,
            };
            push(kind, shown.clone());
        }
        if matches!(r.option, Some(EtrnOption::Subdomains | EtrnOption::Queue)) {
            let graded_by_scenario =
                EtrnArg::parse(&r.raw).is_ok_and(|a| expected_forms.contains(&a));
            if !graded_by_scenario {
                push(ViolationKind::OptionCharacter, shown.clone());
            }
        }
        if matches!(r.reply, Some(500 | 501)) {
            refused_syntax = true;
        }
    }
    let quit = s.commands.iter().any(|c| c.verb == "QUIT");
    if !quit && matches!(s.close, Some(CloseReason::PeerClosed | CloseReason::Io(_))) {
        push(
            ViolationKind::NoQuit,
            format!("the client closed after {} command(s)", s.commands.len()),
        );
    }
    out
}
