//! A conformance report as the HTML pages show it: built from a run's results
//! (`run --format html`), or read back from the JSON report `run --format json` wrote
//! (`etrn-harness report`). Both give the same [`ReportDoc`], so one renderer serves both.

use serde::Deserialize;

use crate::scenario::Deviation;

use super::outcome::TargetOutcome;
use super::report::{HARNESS_VERSION, REPORT_VERSION, now_rfc3339};
use super::verdict::{CaseResult, Verdict};
use super::violation::Violation;

/// One implementation's run: the fields of the JSON report a person reads. The recording is left
/// out (its transcript is kept).
#[derive(Debug, Clone, Deserialize)]
pub struct ReportDoc {
    /// The etrn-harness that judged; absent in reports written before it was recorded.
    #[serde(default)]
    pub harness_version: Option<String>,
    /// When the run ended (RFC 3339); absent in reports written before it was recorded.
    #[serde(default)]
    pub generated: Option<String>,
    /// The target judged (`builtin`, or the `--exec` command line).
    pub target: String,
    /// Whether NON-STRICT counted as failing.
    pub strict: bool,
    /// No case failed (by the `strict` rule).
    pub passed: bool,
    /// Every case, in corpus order.
    pub cases: Vec<CaseDoc>,
}

/// One case of a run.
#[derive(Debug, Clone, Deserialize)]
pub struct CaseDoc {
    pub id: String,
    pub title: String,
    pub basis: Vec<String>,
    pub file: String,
    pub verdict: Verdict,
    pub error: Option<String>,
    pub deviations: Vec<Deviation>,
    pub violations: Vec<Violation>,
    /// The ETRN arguments the model expects, per connection.
    pub expected: Vec<Vec<String>>,
    /// What the target sent, per connection.
    pub actual: Vec<Vec<String>>,
    pub known_reason: Option<String>,
    pub outcome: TargetOutcome,
    pub duration_ms: u64,
    /// The `C:`/`S:` transcript of every session.
    pub transcript: String,
}

/// Why a text is not a report this etrn-harness reads. Never quotes the text: a position, or
/// the name of the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportDocError {
    #[error(
        "it is not JSON (syntax error at line {line}, column {column}); `report` reads the JSON reports of `run --format json`"
    )]
    NotJson { line: usize, column: usize },
    #[error(
        "it is JSON but not a conformance report of `run --format json` ({what} at line {line}, column {column})"
    )]
    NotReport {
        what: &'static str,
        line: usize,
        column: usize,
    },
    #[error("it is JSON but not a conformance report of `run --format json` (it has no `version`)")]
    NoVersion,
    #[error("it is a report of version {found}; this etrn-harness reads version {REPORT_VERSION}")]
    Version { found: u64 },
    #[error(
        "case {index} has an id that is not a scenario id (lower-case letters, digits, hyphens)"
    )]
    BadCaseId { index: usize },
    #[error("cases {first} and {second} have the same id")]
    DuplicateCaseId { first: usize, second: usize },
}

impl ReportDocError {
    fn of(e: &serde_json::Error, what: &'static str) -> Self {
        match e.classify() {
            serde_json::error::Category::Data => ReportDocError::NotReport {
                what,
                line: e.line(),
                column: e.column(),
            },
            _ => ReportDocError::NotJson {
                line: e.line(),
                column: e.column(),
            },
        }
    }
}

/// The version field alone, read first: a report of another version may have another shape.
#[derive(Deserialize)]
struct VersionOnly {
    version: Option<u64>,
}

impl ReportDoc {
    /// Reads a JSON report (the text of `run --format json`).
    pub fn parse(text: &str) -> Result<ReportDoc, ReportDocError> {
        let probe: VersionOnly = serde_json::from_str(text)
            .map_err(|e| ReportDocError::of(&e, "not an object with a `version`"))?;
        match probe.version {
            None => return Err(ReportDocError::NoVersion),
            Some(v) if v != u64::from(REPORT_VERSION) => {
                return Err(ReportDocError::Version { found: v });
            }
            Some(_) => {}
        }
        let doc: ReportDoc = serde_json::from_str(text)
            .map_err(|e| ReportDocError::of(&e, "a field is missing or of the wrong type"))?;
        doc.check_ids()?;
        Ok(doc)
    }

    /// The page of a run just made, from its results.
    pub fn of_run(results: &[CaseResult], target: &str, strict: bool) -> ReportDoc {
        ReportDoc {
            harness_version: Some(HARNESS_VERSION.into()),
            generated: Some(now_rfc3339()),
            target: target.into(),
            strict,
            passed: !results.iter().any(|r| r.verdict.fails(strict)),
            cases: results.iter().map(CaseDoc::of_result).collect(),
        }
    }

    /// Cases per verdict, every verdict in [`Verdict::ALL`] order.
    pub fn summary(&self) -> Vec<(Verdict, usize)> {
        Verdict::ALL
            .iter()
            .map(|v| (*v, self.cases.iter().filter(|c| c.verdict == *v).count()))
            .collect()
    }

    /// The case with this id.
    pub fn case(&self, id: &str) -> Option<&CaseDoc> {
        self.cases.iter().find(|c| c.id == id)
    }

    /// Case ids are anchors in the pages: each must be a scenario id, and unique.
    fn check_ids(&self) -> Result<(), ReportDocError> {
        let mut seen = std::collections::HashMap::new();
        for (index, case) in self.cases.iter().enumerate() {
            let valid = !case.id.is_empty()
                && !case.id.starts_with('-')
                && case
                    .id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                return Err(ReportDocError::BadCaseId { index: index + 1 });
            }
            if let Some(first) = seen.insert(case.id.as_str(), index + 1) {
                return Err(ReportDocError::DuplicateCaseId {
                    first,
                    second: index + 1,
                });
            }
        }
        Ok(())
    }
}

impl CaseDoc {
    fn of_result(r: &CaseResult) -> CaseDoc {
        CaseDoc {
            id: r.id.clone(),
            title: r.title.clone(),
            basis: r.basis.clone(),
            file: r.file.clone(),
            verdict: r.verdict,
            error: r.error.clone(),
            deviations: r.deviations.clone(),
            violations: r.violations.clone(),
            expected: r.expected.clone(),
            actual: r.actual.clone(),
            known_reason: r.known_reason.clone(),
            outcome: r.outcome.clone(),
            duration_ms: r.duration_ms,
            transcript: r.transcript(),
        }
    }

    /// The target's standard error, if it wrote any.
    pub fn stderr(&self) -> Option<&str> {
        self.outcome.stderr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_a_report_is_refused_without_quoting_it() {
        let secret = "hunter2";
        let cases = [
            (format!("<testsuites>{secret}</testsuites>"), "not JSON"),
            (format!("[\"{secret}\"]"), "not a conformance report"),
            (format!("{{\"name\": \"{secret}\"}}"), "no `version`"),
            (
                format!("{{\"version\": 7, \"x\": \"{secret}\"}}"),
                "version 7",
            ),
            (
                format!("{{\"version\": 1, \"target\": \"{secret}\"}}"),
                "not a conformance report",
            ),
        ];
        for (text, says) in cases {
            let e = ReportDoc::parse(&text).expect_err(&text).to_string();
            assert!(e.contains(says), "{text}: {e}");
            assert!(!e.contains(secret), "{e}");
        }
    }

    #[test]
    fn case_ids_must_be_scenario_ids_and_unique() {
        let case = |id: &str| {
            serde_json::json!({
                "id": id, "title": "t", "basis": [], "file": "f.toml", "verdict": "PASS",
                "error": null, "deviations": [], "violations": [], "expected": [], "actual": [],
                "known_reason": null, "outcome": {"outcome": "not-started", "reason": "r"},
                "duration_ms": 1, "transcript": ""
            })
        };
        let report = |cases: Vec<serde_json::Value>| {
            serde_json::json!({"version": 1, "target": "t", "strict": false, "passed": true,
                "cases": cases})
            .to_string()
        };
        assert!(ReportDoc::parse(&report(vec![case("e01-a"), case("e02-b")])).is_ok());
        assert_eq!(
            ReportDoc::parse(&report(vec![case("e01-a"), case("x\"><script>")])).unwrap_err(),
            ReportDocError::BadCaseId { index: 2 }
        );
        assert_eq!(
            ReportDoc::parse(&report(vec![case("e01-a"), case("e01-a")])).unwrap_err(),
            ReportDocError::DuplicateCaseId {
                first: 1,
                second: 2
            }
        );
    }
}
