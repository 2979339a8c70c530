//! Reports: human (like `cargo test`), JSON (with every transcript), JUnit XML (quick-junit).

use std::fmt::Write;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
use serde::Serialize;

use super::outcome::TargetOutcome;
use super::runner::summary;
use super::verdict::{CaseResult, Verdict};

/// The one line printed as a case finishes.
pub fn case_line(r: &CaseResult) -> String {
    format!("case {} ... {}", r.id, r.verdict)
}

/// Why a case did not pass: the requirement, expected vs actual, and every deviation.
pub fn case_details(r: &CaseResult) -> String {
    details(r, None)
}

/// The target's standard error in a case, if it wrote any.
fn stderr_of(r: &CaseResult) -> Option<&str> {
    r.outcome.stderr()
}

/// [`case_details`], with the target's standard error replaced by a pointer to `same_as`, an
/// earlier case that showed the very same text.
fn details(r: &CaseResult, same_as: Option<&str>) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "---- {} ({}) ----", r.id, r.verdict);
    let _ = writeln!(o, "requirement: {}", r.title);
    let _ = writeln!(o, "basis: {}", r.basis.join(", "));
    let _ = writeln!(o, "file: {}", r.file);
    if let Some(e) = &r.error {
        let _ = writeln!(o, "error: {e}");
    }
    if let Some(k) = &r.known_reason {
        let _ = writeln!(o, "known deviation: {k}");
    }
    // A case the harness refused or could not run has nothing to compare.
    let nothing_ran = r.error.is_some() && r.expected.is_empty() && r.actual.is_empty();
    if r.expected.is_empty() && !nothing_ran {
        let _ = writeln!(o, "expected: no connection");
    }
    for (i, sent) in r.expected.iter().enumerate() {
        let _ = writeln!(o, "expected, connection {}: [{}]", i + 1, sent.join(", "));
    }
    if r.actual.is_empty() && !nothing_ran {
        let _ = writeln!(o, "actual: no connection");
    }
    for (i, sent) in r.actual.iter().enumerate() {
        let _ = writeln!(o, "actual, connection {}: [{}]", i + 1, sent.join(", "));
    }
    for d in &r.deviations {
        let _ = writeln!(o, "  {d}");
    }
    for v in &r.violations {
        let rule = v.kind.rule();
        let _ = writeln!(
            o,
            "  {}: {} in session {}: {} [{}, {}]",
            v.grade,
            v.kind.describe(),
            v.session,
            v.detail,
            rule.id(),
            rule.basis()
        );
    }
    match &r.outcome {
        TargetOutcome::Finished { exit, stderr, .. } => {
            let _ = writeln!(
                o,
                "target exit status: {}",
                exit.map_or("none".into(), |c| c.to_string())
            );
            write_stderr(&mut o, stderr, same_as);
        }
        TargetOutcome::TimedOut { stderr, .. } | TargetOutcome::Crashed { stderr, .. } => {
            write_stderr(&mut o, stderr, same_as);
        }
        TargetOutcome::NotStarted { .. } => {}
    }
    let transcript = r.transcript();
    if !transcript.is_empty() {
        let _ = writeln!(o, "transcript:\n{}", indent(transcript.trim_end()));
    }
    o
}

fn write_stderr(o: &mut String, stderr: &str, same_as: Option<&str>) {
    if stderr.trim().is_empty() {
        return;
    }
    match same_as {
        Some(id) => {
            let _ = writeln!(o, "target stderr: the same as in case {id}");
        }
        None => {
            let _ = writeln!(o, "target stderr:\n{}", indent(stderr.trim_end()));
        }
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The closing summary: counts by verdict and whether the run passed.
pub fn summary_line(results: &[CaseResult], strict: bool) -> String {
    let counts: Vec<String> = summary(results)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(v, n)| format!("{n} {v}"))
        .collect();
    let failed = results.iter().any(|r| r.verdict.fails(strict));
    format!(
        "conformance result: {}. {} case(s): {}{}",
        if failed { "FAILED" } else { "ok" },
        results.len(),
        if counts.is_empty() {
            "none".into()
        } else {
            counts.join(", ")
        },
        if strict { " (strict)" } else { "" }
    )
}

/// The whole human report after the run: details of every case that did not pass, then the summary.
pub fn human(results: &[CaseResult], strict: bool) -> String {
    let mut o = String::new();
    let not_passed: Vec<&CaseResult> = results
        .iter()
        .filter(|r| r.verdict != Verdict::Pass)
        .collect();
    if !not_passed.is_empty() {
        o.push('\n');
        // A target that says the same thing in every case has it shown once.
        let mut shown: Vec<(&str, &str)> = Vec::new();
        for r in not_passed {
            let stderr = stderr_of(r);
            let same_as =
                stderr.and_then(|e| shown.iter().find(|(t, _)| *t == e).map(|(_, id)| *id));
            o.push_str(&details(r, same_as));
            o.push('\n');
            if let (Some(e), None) = (stderr, same_as) {
                shown.push((e, r.id.as_str()));
            }
        }
    }
    o.push_str(&summary_line(results, strict));
    o.push('\n');
    o
}

/// Version of the JSON report's shape; [`report_schema`] describes it.
pub const REPORT_VERSION: u32 = 1;

/// This etrn-harness's version, as reports name it.
pub const HARNESS_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Now, as reports say when they were written: RFC 3339, UTC, to the second.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// The JSON report.
#[derive(Serialize, schemars::JsonSchema)]
#[schemars(title = "etrn-harness conformance report")]
struct JsonReport<'a> {
    /// The shape's version: 1.
    version: u32,
    /// The etrn-harness that judged (`0.1.0`).
    harness_version: &'a str,
    /// When the run ended: RFC 3339, UTC, to the second.
    generated: String,
    /// The target judged (`builtin`, or the `--exec` command line).
    target: &'a str,
    /// Whether NON-STRICT cases count as failing.
    strict: bool,
    /// No case failed (by the `strict` rule).
    passed: bool,
    /// Cases per verdict.
    summary: Summary,
    /// Every case, in corpus order.
    cases: Vec<JsonCase<'a>>,
}

/// Cases per verdict.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING-KEBAB-CASE")]
struct Summary {
    pass: usize,
    informational: usize,
    non_strict: usize,
    known: usize,
    fail: usize,
    error: usize,
}

impl Summary {
    fn of(results: &[CaseResult]) -> Self {
        let n = |v: Verdict| results.iter().filter(|r| r.verdict == v).count();
        Summary {
            pass: n(Verdict::Pass),
            informational: n(Verdict::Informational),
            non_strict: n(Verdict::NonStrict),
            known: n(Verdict::Known),
            fail: n(Verdict::Fail),
            error: n(Verdict::Error),
        }
    }
}

#[derive(Serialize, schemars::JsonSchema)]
struct JsonCase<'a> {
    #[serde(flatten)]
    result: &'a CaseResult,
    /// The `C:`/`S:` transcript of every session.
    transcript: String,
}

/// The JSON Schema (draft 2020-12) of the JSON report (`etrn-harness schema --report`).
pub fn report_schema() -> String {
    // The report is only ever written: fields left out when empty are optional in it.
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator();
    let schema = generator.into_root_schema_for::<JsonReport<'static>>();
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

/// The JSON report: every case with its verdict, deviations, violations, recording and transcript.
pub fn json(
    results: &[CaseResult],
    target: &str,
    strict: bool,
) -> Result<String, serde_json::Error> {
    let report = JsonReport {
        version: REPORT_VERSION,
        harness_version: HARNESS_VERSION,
        generated: now_rfc3339(),
        target,
        strict,
        passed: !results.iter().any(|r| r.verdict.fails(strict)),
        summary: Summary::of(results),
        cases: results
            .iter()
            .map(|r| JsonCase {
                result: r,
                transcript: r.transcript(),
            })
            .collect(),
    };
    serde_json::to_string_pretty(&report)
}

/// JUnit XML: FAIL is a failure, ERROR an error, KNOWN a skip with its reason; NON-STRICT is a
/// failure only in a strict run. The transcript goes to system-out.
pub fn junit(
    results: &[CaseResult],
    target: &str,
    strict: bool,
) -> Result<String, quick_junit::SerializeError> {
    let mut suite = TestSuite::new("etrn-conformance");
    for r in results {
        let status = match r.verdict {
            Verdict::Fail => failure(NonSuccessKind::Failure, r),
            Verdict::NonStrict if strict => failure(NonSuccessKind::Failure, r),
            Verdict::Error => failure(NonSuccessKind::Error, r),
            Verdict::Known => {
                let mut s = TestCaseStatus::skipped();
                s.set_message(format!(
                    "KNOWN: {}",
                    r.known_reason.as_deref().unwrap_or("")
                ));
                s
            }
            Verdict::Pass | Verdict::NonStrict | Verdict::Informational => {
                TestCaseStatus::success()
            }
        };
        let mut case = TestCase::new(r.id.clone(), status);
        case.set_classname(classname(&r.file));
        case.set_time(std::time::Duration::from_millis(r.duration_ms));
        case.set_system_out(format!("verdict: {}\n{}", r.verdict, case_details(r)));
        suite.add_test_case(case);
    }
    let mut report = Report::new(format!("etrn-harness against {target}"));
    report.add_test_suite(suite);
    report.to_string()
}

fn failure(kind: NonSuccessKind, r: &CaseResult) -> TestCaseStatus {
    let mut s = TestCaseStatus::non_success(kind);
    let first = r
        .error
        .clone()
        .or_else(|| {
            r.deviations
                .first()
                .map(|d| format!("{}: {}", d.grade, d.difference))
        })
        .or_else(|| {
            r.violations
                .first()
                .map(|v| format!("{}: {}", v.grade, v.kind.describe()))
        })
        .unwrap_or_default();
    s.set_message(format!("{} {}: {first}", r.verdict, r.title));
    s.set_type(r.verdict.label());
    s.set_description(case_details(r));
    s
}

/// The JUnit class of a scenario: `etrn.` and the name of its folder
/// (`scenarios/replies/e26.toml`, `./scenarios/replies/e26.toml` and `/abs/scenarios/replies/e26.toml`
/// all give `etrn.replies`), so CI dashboards see the same class whatever path the run was given.
fn classname(file: &str) -> String {
    let file = file
        .strip_prefix(crate::scenario::shipped::BUILTIN_PREFIX)
        .unwrap_or(file);
    let folder = std::path::Path::new(file)
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty() && n != "." && n != "..");
    match folder {
        Some(f) => format!("etrn.{f}"),
        None => "etrn".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::classname;

    #[test]
    fn class_names_do_not_depend_on_the_path_given() {
        for path in [
            "scenarios/replies/e26.toml",
            "./scenarios/replies/e26.toml",
            "/srv/ci/checkout/scenarios/replies/e26.toml",
            "replies/e26.toml",
            "builtin:replies/e26.toml",
        ] {
            assert_eq!(classname(path), "etrn.replies", "{path}");
        }
        assert_eq!(classname("e26.toml"), "etrn");
    }
}
