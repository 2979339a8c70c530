//! A probe run as people and machines read it: human text, JSON, JUnit XML.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use serde::Serialize;

use crate::ims::Grade;

use super::compare::{Difference, Masks, masked_transcript};
use super::rules::{Finding, Outcome};
use super::run::ProbeResult;
use super::set::PROBE_SET_VERSION;

/// `text` for a terminal: each line escaped (a server's bytes must not drive the reader's
/// terminal), the lines lined up under the first.
fn shown(text: &str) -> String {
    text.lines()
        .map(|l| crate::escape::escape(l.as_bytes()))
        .collect::<Vec<_>>()
        .join("\n               ")
}

/// The JSON report's format version.
pub const PROBE_REPORT_VERSION: u32 = 1;

/// Everything one `probe` run found.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// The report format's version.
    pub version: u32,
    /// The probe set's version.
    pub probe_set: u32,
    /// What was probed: `HOST:PORT`.
    pub target: String,
    pub results: Vec<ProbeResult>,
    pub findings: Vec<Finding>,
    /// With `--against-profile` (or a profile file or scenario): the differences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
    #[serde(skip)]
    pub masks: Masks,
}

/// The comparison with a profile.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// `profile NAME`, a profile file, or a scenario file.
    pub against: String,
    pub differences: Vec<Difference>,
}

impl ProbeReport {
    pub fn new(target: String, results: Vec<ProbeResult>, masks: Masks) -> Self {
        let findings = super::rules::judge(&results);
        ProbeReport {
            version: PROBE_REPORT_VERSION,
            probe_set: PROBE_SET_VERSION,
            target,
            results,
            findings,
            comparison: None,
            masks,
        }
    }

    /// Broken rules of this grade.
    pub fn broken(&self, grade: Grade) -> usize {
        self.findings
            .iter()
            .filter(|f| f.outcome == Outcome::Breaks && f.grade == grade)
            .count()
    }

    /// Whether the run fails: a difference from the profile compared with, or else a broken
    /// must (or, with `strict`, a broken should).
    pub fn fails(&self, strict: bool) -> bool {
        match &self.comparison {
            Some(c) => !c.differences.is_empty(),
            None => self.broken(Grade::Must) > 0 || (strict && self.broken(Grade::Should) > 0),
        }
    }

    fn findings_of<'a>(&'a self, probe: &'a str) -> impl Iterator<Item = &'a Finding> + 'a {
        self.findings
            .iter()
            .filter(move |f| f.probe == probe && f.outcome != Outcome::Meets)
    }

    fn differences_of<'a>(&'a self, probe: &'a str) -> impl Iterator<Item = &'a Difference> + 'a {
        self.comparison
            .iter()
            .flat_map(|c| &c.differences)
            .filter(move |d| d.probe == probe)
    }

    /// The summary line.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} probes (probe set {}) against {}: {} must and {} should broken, {} informational notes",
            self.results.len(),
            self.probe_set,
            self.target,
            self.broken(Grade::Must),
            self.broken(Grade::Should),
            self.findings
                .iter()
                .filter(|f| f.outcome == Outcome::Note)
                .count()
        );
        if let Some(c) = &self.comparison {
            s.push_str(&format!(
                "; {} difference(s) from {}",
                c.differences.len(),
                c.against
            ));
        }
        s
    }

    /// The human report: one block per probe, then the summary.
    pub fn human(&self, verbose: bool) -> String {
        let mut out = String::new();
        for r in &self.results {
            let codes: Vec<String> = r.replies().map(|x| x.code.to_string()).collect();
            out.push_str(&format!(
                "{:<28} {:<40} {}\n",
                r.id,
                codes.join(" "),
                r.end.describe()
            ));
            for f in self.findings_of(&r.id) {
                let label = match f.outcome {
                    Outcome::Breaks => format!("breaks {}", f.grade),
                    _ => "note".into(),
                };
                out.push_str(&format!(
                    "    {label}: {} ({}; {}): {}\n",
                    f.rule.id(),
                    f.rule.text(),
                    f.rule.basis(),
                    crate::escape::escape(f.detail.as_bytes())
                ));
            }
            let differences: Vec<_> = self.differences_of(&r.id).collect();
            for d in &differences {
                let at = if d.reply == 0 {
                    String::new()
                } else {
                    format!(" (reply {})", d.reply)
                };
                out.push_str(&format!(
                    "    differs in {}{at}:\n      server:  {}\n      profile: {}\n",
                    d.kind,
                    shown(&d.server),
                    shown(&d.profile)
                ));
            }
            if verbose || !differences.is_empty() {
                for line in masked_transcript(r, &self.masks) {
                    out.push_str(&format!("      {}\n", line.replace('\n', "\n      ")));
                }
            }
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }

    pub fn json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// JUnit XML: one test case per probe; a broken must (a broken should with `strict`) or a
    /// difference from the profile is a failure; the transcript goes to system-out.
    pub fn junit(&self, strict: bool) -> Result<String, quick_junit::SerializeError> {
        let mut suite = TestSuite::new("etrn-probe");
        for r in &self.results {
            let broken: Vec<String> = self
                .findings_of(&r.id)
                .filter(|f| {
                    f.outcome == Outcome::Breaks
                        && (f.grade == Grade::Must || (strict && f.grade == Grade::Should))
                })
                .map(|f| format!("{} ({}): {}", f.rule.id(), f.grade, f.detail))
                .chain(self.differences_of(&r.id).map(|d| {
                    format!(
                        "differs in {}: server {:?}, profile {:?}",
                        d.kind, d.server, d.profile
                    )
                }))
                .collect();
            let status = if broken.is_empty() {
                TestCaseStatus::success()
            } else {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(broken.join("; "));
                s
            };
            let mut case = TestCase::new(r.id.clone(), status);
            case.set_classname("etrn.probe");
            case.set_system_out(masked_transcript(r, &self.masks).join("\n"));
            suite.add_test_case(case);
        }
        let mut report = Report::new(format!("etrn-harness probe of {}", self.target));
        report.add_test_suite(suite);
        report.to_string()
    }
}
