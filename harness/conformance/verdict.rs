//! Verdicts: what one case's recording means, graded.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::EtrnArg;
use crate::ims::Grade;
use crate::proto::Recording;
use crate::scenario::{self, Deviation, Observed, Prediction, Scenario};

use super::known::KnownMatch;
use super::outcome::TargetOutcome;
use super::violation::{Violation, violations};

/// The outcome of one case (h2spec and Autobahn|TestSuite use the same scale).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "SCREAMING-KEBAB-CASE")]
pub enum Verdict {
    /// Everything as expected.
    Pass,
    /// Only informational-grade deviations.
    Informational,
    /// A should-grade deviation: fails only a strict run.
    NonStrict,
    /// A deviation listed in the `--known` file for this implementation.
    Known,
    /// A must-grade deviation.
    Fail,
    /// The target crashed, timed out or never connected.
    Error,
}

impl Verdict {
    pub const ALL: [Verdict; 6] = [
        Verdict::Pass,
        Verdict::Fail,
        Verdict::NonStrict,
        Verdict::Informational,
        Verdict::Error,
        Verdict::Known,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::NonStrict => "NON-STRICT",
            Verdict::Informational => "INFORMATIONAL",
            Verdict::Error => "ERROR",
            Verdict::Known => "KNOWN",
        }
    }

    /// Whether this verdict makes the run fail.
    pub fn fails(self, strict: bool) -> bool {
        match self {
            Verdict::Fail | Verdict::Error => true,
            Verdict::NonStrict => strict,
            _ => false,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Everything known about one case after it ran.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CaseResult {
    pub id: String,
    pub title: String,
    pub basis: Vec<String>,
    pub file: String,
    pub verdict: Verdict,
    /// Why the case is an ERROR, when it is.
    pub error: Option<String>,
    /// Expectations the target did not meet.
    pub deviations: Vec<Deviation>,
    /// Protocol rules it broke.
    pub violations: Vec<Violation>,
    /// The ETRN arguments the model expects, per connection.
    pub expected: Vec<Vec<String>>,
    /// What it sent, per connection.
    pub actual: Vec<Vec<String>>,
    /// The reason from the known-deviations file, for KNOWN.
    pub known_reason: Option<String>,
    pub outcome: TargetOutcome,
    pub duration_ms: u64,
    /// Every session of the case, as recorded.
    pub recording: Recording,
}

impl CaseResult {
    /// The `C:`/`S:` transcript of every session.
    pub fn transcript(&self) -> String {
        self.recording.transcript()
    }
}

/// What a recording shows the target did, in the shape expectations judge.
pub fn observe(recording: &Recording, outcome: &TargetOutcome) -> Observed {
    let local_commands = match outcome {
        TargetOutcome::Finished { local_commands, .. } => local_commands.clone(),
        _ => Vec::new(),
    };
    Observed::from_recording(recording, local_commands)
}

/// Whether the model expects an ETRN or a TURN on some connection.
fn expects_dequeue(prediction: &Prediction) -> bool {
    let observed = prediction.observed();
    observed.turn || observed.connections.iter().any(|c| !c.is_empty())
}

/// Judges one case.
pub fn judge(
    scenario: &Scenario,
    prediction: &Prediction,
    recording: &Recording,
    outcome: &TargetOutcome,
    known: &[KnownMatch<'_>],
) -> (Verdict, Option<String>, Vec<Deviation>, Vec<Violation>) {
    // A whole-case entry knows everything; rule entries know the deviations of their rules.
    let whole_case = known.iter().any(|k| k.rule.is_none());
    let known_rule = |id: &str| known.iter().any(|k| k.rule == Some(id));
    let observed = observe(recording, outcome);
    let mut deviations = scenario::judge(scenario, &observed);
    deviations.extend(scenario::judge_mail(&prediction.observed(), &observed));
    // Arguments the judgement grades by their cause are not protocol violations on top.
    let explained: Vec<EtrnArg> = scenario
        .expect
        .all_etrn()
        .chain(&scenario.expect.absent)
        .map(|e| e.arg.clone())
        .chain(
            deviations
                .iter()
                .filter_map(|d| d.explained_arg())
                .filter_map(|raw| EtrnArg::parse(raw).ok()),
        )
        .collect();
    let violations = violations(recording, &explained);
    let error = match outcome {
        TargetOutcome::TimedOut { after_ms, .. } => Some(format!("timed out after {after_ms} ms")),
        TargetOutcome::Crashed { reason, .. } | TargetOutcome::NotStarted { reason } => {
            Some(reason.clone())
        }
        // A target that failed without ever connecting where the model dequeues crashed: its
        // silence says nothing about its ETRN. One that exited 0 without connecting chose not
        // to, and is judged like any other (its missing ETRNs count at their grades).
        TargetOutcome::Finished {
            exit: Some(code), ..
        } if *code != 0 && expects_dequeue(prediction) && recording.sessions.is_empty() => Some(
            format!("the target exited with status {code} without connecting"),
        ),
        TargetOutcome::Finished { .. } => None,
    };
    match (&error, whole_case, outcome) {
        // A client that cannot do what the case needs may give up without connecting: the
        // known-deviations file may say so. A crash or a timeout is always an ERROR.
        (Some(_), true, TargetOutcome::Finished { .. }) => {
            return (Verdict::Known, error, deviations, violations);
        }
        (Some(_), _, _) => return (Verdict::Error, error, deviations, violations),
        (None, _, _) => {}
    }
    let counted = |rule: &str| !known_rule(rule);
    let worst = deviations
        .iter()
        .filter(|d| d.rule.is_none_or(|r| counted(r.id())))
        .map(|d| d.grade)
        .chain(
            violations
                .iter()
                .filter(|v| counted(v.kind.id()))
                .map(|v| v.grade),
        )
        .max();
    let only_known = deviations.len() + violations.len() > 0;
    let verdict = match (worst, whole_case) {
        (None, _) if only_known && !known.is_empty() => Verdict::Known,
        (None, _) => Verdict::Pass,
        (Some(_), true) => Verdict::Known,
        (Some(Grade::Must), false) => Verdict::Fail,
        (Some(Grade::Should), false) => Verdict::NonStrict,
        (Some(Grade::Informational), false) => Verdict::Informational,
    };
    (verdict, None, deviations, violations)
}
