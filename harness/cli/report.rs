//! `etrn-harness report`: the JSON reports of several implementations merged into one HTML
//! matrix page (implementations × cases).

use std::path::Path;
use std::process::ExitCode;

use etrn_harness::conformance::ReportDoc;
use etrn_harness::conformance::html::{self, Column};
use etrn_harness::files::read_regular_file;

use super::{EXIT_INVALID, ReportArgs};

/// The largest report read: the shipped corpus's is under 1 MiB with every transcript.
const REPORT_CAP: u64 = 64 * 1024 * 1024;

pub fn run(args: ReportArgs) -> ExitCode {
    if args.reports.is_empty() {
        eprintln!(
            "error: no report given: name the JSON reports to merge (each from `etrn-harness run --format json --output FILE`), e.g. `etrn-harness report builtin.json fetchmail.json --output matrix.html`"
        );
        return ExitCode::from(EXIT_INVALID);
    }
    if let Some(out) = &args.output
        && let Some(input) = args.reports.iter().find(|r| same_file(r, out))
    {
        eprintln!(
            "error: --output {} would overwrite the report {} it reads",
            out.display(),
            input.display()
        );
        return ExitCode::from(EXIT_INVALID);
    }
    // Every input is read before anything is written, and every bad one is named.
    let mut docs: Vec<(String, ReportDoc)> = Vec::new();
    let mut bad = 0;
    for path in &args.reports {
        let read = read_regular_file(path, REPORT_CAP)
            .map_err(|e| e.reason())
            .and_then(|text| ReportDoc::parse(&text).map_err(|e| e.to_string()));
        match read {
            Ok(doc) => {
                tracing::debug!(
                    report = %path.display(),
                    target = %doc.target,
                    cases = doc.cases.len(),
                    "report read"
                );
                docs.push((path.display().to_string(), doc));
            }
            Err(reason) => {
                eprintln!("error: {}: {reason}", path.display());
                bad += 1;
            }
        }
    }
    if bad > 0 {
        eprintln!(
            "no matrix written: {bad} of {} report(s) unusable",
            args.reports.len()
        );
        return ExitCode::from(EXIT_INVALID);
    }
    let columns: Vec<Column<'_>> = docs
        .iter()
        .map(|(source, doc)| Column { source, doc })
        .collect();
    let page = html::matrix_page(&columns);
    let cases: std::collections::BTreeSet<&str> = docs
        .iter()
        .flat_map(|(_, d)| d.cases.iter().map(|c| c.id.as_str()))
        .collect();
    let summary = |path: &Path| {
        format!(
            "matrix of {} implementation(s) x {} case(s) written to {}",
            docs.len(),
            cases.len(),
            path.display()
        )
    };
    let output = args.output.as_deref();
    match super::write_report(Ok(page), output, || output.map(summary).unwrap_or_default()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

/// Whether two paths name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
