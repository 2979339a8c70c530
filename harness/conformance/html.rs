//! HTML reports: one self-contained page for a run (`run --format html`), and a matrix of several
//! implementations' runs (`etrn-harness report`), cases as rows and implementations as columns,
//! as Autobahn|TestSuite shows its results.
//!
//! Pages are written with maud: every value is HTML-escaped unless marked otherwise, and only
//! the style sheet is. Transcripts hold whatever a client sent, so nothing else may be. A page
//! loads nothing: the style sheet is inline, there is no script, and a Content-Security-Policy
//! forbids any fetch, so a page opened from an archived CI artifact works offline.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::ims::Rule;

use super::outcome::TargetOutcome;
use super::report_doc::{CaseDoc, ReportDoc};
use super::verdict::Verdict;

/// The one style sheet, inlined.
const STYLE: &str = include_str!("report.css");

/// Nothing may be fetched: styles inline only, no script, no image, no font, no frame.
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'";

/// The page of one run: its summary, a table of its cases, and each case's details.
pub fn run_page(doc: &ReportDoc) -> String {
    let body = html! {
        header {
            h1 { "ETRN conformance of " code { (doc.target) } }
            (facts(doc))
        }
        (legend())
        h2 { "Cases" }
        table.cases {
            thead { tr { th { "Case" } th { "Verdict" } th { "Requirement" } } }
            tbody {
                @for case in &doc.cases {
                    tr {
                        td { a href={ "#" (case_anchor("", &case.id)) } { code { (case.id) } } }
                        (verdict_cell(case.verdict, Some(&case_anchor("", &case.id))))
                        td { (case.title) }
                    }
                }
            }
        }
        h2 { "Details" }
        @for case in &doc.cases {
            (case_section(case, &case_anchor("", &case.id)))
        }
    };
    page(&format!("ETRN conformance of {}", doc.target), body)
}

/// One column of the matrix: a report and the name it was given by (its file).
pub struct Column<'a> {
    pub source: &'a str,
    pub doc: &'a ReportDoc,
}

/// The matrix of several runs: a row per case (in the order the reports list them, the first
/// report's first), a column per run, a coloured cell per verdict linking to that case's details
/// for that run, further down the same page.
pub fn matrix_page(columns: &[Column<'_>]) -> String {
    let mut rows: Vec<(&str, &str)> = Vec::new();
    for column in columns {
        for case in &column.doc.cases {
            if !rows.iter().any(|(id, _)| *id == case.id) {
                rows.push((&case.id, &case.title));
            }
        }
    }
    let body = html! {
        header {
            h1 { "ETRN conformance matrix" }
            p { (columns.len()) " implementation(s), " (rows.len()) " case(s)." }
        }
        (legend())
        table.matrix {
            thead {
                tr {
                    th { "Case" }
                    @for (n, column) in columns.iter().enumerate() {
                        th.impl scope="col" {
                            a href={ "#" (run_anchor(n)) } { code { (column.doc.target) } }
                            small { (column.source) }
                            small { (counts_text(column.doc)) }
                        }
                    }
                }
            }
            tbody {
                @for (id, title) in &rows {
                    tr {
                        th scope="row" { code { (id) } br; small { (title) } }
                        @for (n, column) in columns.iter().enumerate() {
                            @match column.doc.case(id) {
                                Some(case) => (verdict_cell(case.verdict, Some(&case_anchor(&run_anchor(n), id)))),
                                None => td.not-run { "not run" },
                            }
                        }
                    }
                }
            }
        }
        @for (n, column) in columns.iter().enumerate() {
            section.run id=(run_anchor(n)) {
                h2 { "Run " (n + 1) ": " code { (column.doc.target) } }
                p { "From " code { (column.source) } "." }
                (facts(column.doc))
                @for case in &column.doc.cases {
                    (case_section(case, &case_anchor(&run_anchor(n), &case.id)))
                }
            }
        }
    };
    page("ETRN conformance matrix", body)
}

/// A whole page around `body`.
fn page(title: &str, body: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy" content=(CSP);
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="generator" content={ "etrn-harness " (super::report::HARNESS_VERSION) };
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    }
    .into_string()
}

/// The anchor of a run's section in the matrix.
fn run_anchor(n: usize) -> String {
    format!("run-{}", n + 1)
}

/// The anchor of a case's details (case ids are scenario ids: letters, digits, hyphens).
fn case_anchor(prefix: &str, id: &str) -> String {
    if prefix.is_empty() {
        format!("case-{id}")
    } else {
        format!("{prefix}-case-{id}")
    }
}

/// The CSS class of a verdict.
fn verdict_class(v: Verdict) -> String {
    format!("v-{}", v.label().to_ascii_lowercase())
}

/// A table cell with the verdict's name on its colour, linking to `target` when given.
fn verdict_cell(v: Verdict, target: Option<&str>) -> Markup {
    html! {
        td class={ "verdict " (verdict_class(v)) } data-verdict=(v.label()) {
            @match target {
                Some(t) => a href={ "#" (t) } { (v.label()) },
                None => (v.label()),
            }
        }
    }
}

/// What each verdict means, with its colour.
fn legend() -> Markup {
    html! {
        ul.legend aria-label="verdicts" {
            @for v in Verdict::ALL {
                li { span class={ "verdict " (verdict_class(v)) } { (v.label()) } " " (meaning(v)) }
            }
        }
    }
}

fn meaning(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "as expected",
        Verdict::Fail => "a must rule broken",
        Verdict::NonStrict => "a should rule broken (fails a strict run)",
        Verdict::Informational => "informational deviations only",
        Verdict::Error => "the target crashed, timed out or could not run",
        Verdict::Known => "a deviation known for this implementation",
    }
}

/// `3 PASS, 1 FAIL`: the verdicts a run has.
fn counts_text(doc: &ReportDoc) -> String {
    let counts: Vec<String> = doc
        .summary()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(v, n)| format!("{n} {v}"))
        .collect();
    if counts.is_empty() {
        "no case".into()
    } else {
        counts.join(", ")
    }
}

/// A run's summary: target, result, counts per verdict, when, which etrn-harness.
fn facts(doc: &ReportDoc) -> Markup {
    html! {
        dl.facts.summary {
            dt { "Target" } dd { code { (doc.target) } }
            dt { "Result" }
            dd {
                @if doc.passed { span.passed { "passed" } } @else { span.failed { "FAILED" } }
                @if doc.strict { " (strict: NON-STRICT counts as failing)" }
            }
            dt { "Cases" }
            dd {
                (doc.cases.len())
                ul.counts {
                    @for (v, n) in doc.summary() {
                        li data-verdict=(v.label()) data-count=(n) {
                            span class={ "verdict " (verdict_class(v)) } { (v.label()) } " " (n)
                        }
                    }
                }
            }
            dt { "When" } dd { (doc.generated.as_deref().unwrap_or("not recorded")) }
            dt { "etrn-harness" } dd { (doc.harness_version.as_deref().unwrap_or("not recorded")) }
        }
    }
}

/// One case's details: verdict, requirement, what was expected and sent, every deviation and
/// violation with its rule and grade, the target's exit and standard error, the transcript.
fn case_section(case: &CaseDoc, anchor: &str) -> Markup {
    let connections = case.expected.len().max(case.actual.len());
    html! {
        section id=(anchor) class={ "case " (verdict_class(case.verdict)) } data-case=(case.id) data-verdict=(case.verdict.label()) {
            h3 {
                code { (case.id) } " "
                span class={ "verdict " (verdict_class(case.verdict)) } { (case.verdict.label()) }
            }
            p.requirement { (case.title) }
            dl.facts {
                dt { "Basis" } dd { (case.basis.join(", ")) }
                dt { "File" } dd { code { (case.file) } }
                dt { "Duration" } dd { (case.duration_ms) " ms" }
                @if let Some(e) = &case.error { dt { "Error" } dd.error { (e) } }
                @if let Some(k) = &case.known_reason { dt { "Known deviation" } dd { (k) } }
                (outcome(&case.outcome))
            }
            @if connections > 0 {
                table.etrn {
                    thead { tr { th { "Connection" } th { "ETRN expected" } th { "ETRN sent" } } }
                    tbody {
                        @for i in 0..connections {
                            tr {
                                td { (i + 1) }
                                td { (args(case.expected.get(i))) }
                                td { (args(case.actual.get(i))) }
                            }
                        }
                    }
                }
            }
            @if !case.deviations.is_empty() {
                table.deviations {
                    caption { "Deviations from the expectations" }
                    thead { tr { th { "Grade" } th { "Deviation" } th { "Connection" } th { "Rule" } th { "Basis" } } }
                    tbody {
                        @for d in &case.deviations {
                            tr data-grade=(d.grade.to_string()) {
                                td class={ "grade-" (d.grade) } { (d.grade) }
                                td.difference { (d.difference) }
                                td { @if let Some(c) = d.connection { (c + 1) } }
                                (rule_cells(d.rule))
                            }
                        }
                    }
                }
            }
            @if !case.violations.is_empty() {
                table.violations {
                    caption { "Protocol rules broken on the wire" }
                    thead { tr { th { "Grade" } th { "Violation" } th { "Session" } th { "Sent" } th { "Rule" } th { "Basis" } } }
                    tbody {
                        @for v in &case.violations {
                            tr data-grade=(v.grade.to_string()) {
                                td class={ "grade-" (v.grade) } { (v.grade) }
                                td { (v.kind.describe()) }
                                td { (v.session) }
                                td { code { (v.detail) } }
                                (rule_cells(Some(v.kind.rule())))
                            }
                        }
                    }
                }
            }
            @if let Some(stderr) = case.stderr() {
                details.stderr { summary { "Target's standard error" } pre { (stderr) } }
            }
            @if !case.transcript.is_empty() {
                details.transcript { summary { "Transcript" } pre { (case.transcript.trim_end()) } }
            }
        }
    }
}

/// The rule and its basis (the rule's one-sentence summary as a tooltip), or the scenario's own
/// grade where no rule explains the deviation.
fn rule_cells(rule: Option<Rule>) -> Markup {
    html! {
        @match rule {
            Some(r) => {
                td.rule title=(r.summary()) { code { (r.id()) } }
                td { (r.basis()) }
            }
            None => {
                td.rule { "(the scenario's grade)" }
                td {}
            }
        }
    }
}

fn args(sent: Option<&Vec<String>>) -> Markup {
    html! {
        @match sent {
            None => em { "no connection" },
            Some(list) if list.is_empty() => em { "none" },
            Some(list) => code { (list.join(", ")) },
        }
    }
}

fn outcome(o: &TargetOutcome) -> Markup {
    html! {
        @match o {
            TargetOutcome::Finished { exit, local_commands, .. } => {
                dt { "Target exit status" }
                dd { @match exit { Some(c) => (c), None => "none" } }
                @if !local_commands.is_empty() {
                    dt { "Local commands" } dd { code { (local_commands.join("; ")) } }
                }
            }
            TargetOutcome::TimedOut { after_ms, .. } => {
                dt { "Target" } dd { "timed out after " (after_ms) " ms; its process group was killed" }
            }
            TargetOutcome::Crashed { reason, .. } => { dt { "Target" } dd { "crashed: " (reason) } }
            TargetOutcome::NotStarted { reason } => { dt { "Target" } dd { "not started: " (reason) } }
        }
    }
}
