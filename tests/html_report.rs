//! The HTML reports: `run --format html` and the `report` matrix, made from real runs (the
//! built-in client, fetchmail through its adapter, deliberately wrong clients), parsed back with
//! an HTML parser, and rendered by a real headless Chromium with no console message.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use etrn_harness::conformance::ViolationKind;
use scraper::{ElementRef, Html, Selector};
use serde_json::Value;

mod common;

fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn sel(css: &str) -> Selector {
    Selector::parse(css).expect("a valid selector")
}

fn inner_text(e: ElementRef<'_>) -> String {
    e.text().collect::<String>()
}

/// `run ARGS --format FORMAT --output DIR/NAME`; the run's exit status must be 0 or 1 (judged).
fn run_into(dir: &Path, name: &str, format: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let out = harness(
        &[
            &["run", "--format", format, "--output"],
            &[path.to_str().expect("UTF-8 path")][..],
            args,
        ]
        .concat(),
    );
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "run {args:?}: {}",
        text(&out.stderr)
    );
    assert!(path.is_file(), "run {args:?} wrote no report");
    path
}

/// The JSON reports of real runs the matrix tests merge, made once for the whole test binary.
struct Runs {
    dir: tempfile::TempDir,
    /// Report files, in column order.
    reports: Vec<PathBuf>,
    /// The verdicts these runs must show between them.
    verdicts: BTreeSet<&'static str>,
    /// A case only a later run has, which must get its own row.
    late_case: Option<&'static str>,
}

const FILTER: &str = "e2*";

fn runs() -> &'static Runs {
    static RUNS: OnceLock<Runs> = OnceLock::new();
    RUNS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let mut verdicts = BTreeSet::from(["PASS", "ERROR"]);
        let mut late_case = None;
        let mut reports = vec![
            run_into(d, "builtin.json", "json", &["--filter", FILTER]),
            // Killed by a signal before it connects: an ERROR in every case.
            run_into(
                d,
                "killed.json",
                "json",
                &["--filter", FILTER, "--exec", "kill -KILL $$"],
            ),
        ];
        let python = common::peer_available("python3", &["--version"]);
        if python && common::peer_available("fetchmail", &["--version"]) {
            verdicts.insert("KNOWN");
            reports.push(run_into(
                d,
                "fetchmail.json",
                "json",
                &[
                    "--filter",
                    FILTER,
                    "--exec",
                    "python3 harness/adapters/fetchmail_ims.py",
                    "--known",
                    "harness/adapters/fetchmail-ims.known.toml",
                ],
            ));
        }
        if python {
            verdicts.extend(["NON-STRICT", "INFORMATIONAL", "FAIL"]);
            late_case = Some("e17-etrn-not-advertised");
            for wrong in ["stops_after_251", "reversed_order"] {
                reports.push(run_into(
                    d,
                    &format!("{wrong}.json"),
                    "json",
                    &[
                        "--filter",
                        FILTER,
                        "--exec",
                        &format!("python3 tests/fixtures/wrong/{wrong}.py"),
                    ],
                ));
            }
            // Fewer cases, and one no other run has: the matrix shows a row for it, and the
            // others as not run.
            reports.push(run_into(
                d,
                "partial.json",
                "json",
                &[
                    "--filter",
                    "{e17-*,e24-*}",
                    "--exec",
                    "python3 tests/fixtures/wrong/etrn_not_advertised.py",
                ],
            ));
        } else {
            reports.push(run_into(d, "partial.json", "json", &["--filter", "e24-*"]));
        }
        Runs {
            dir,
            reports,
            verdicts,
            late_case,
        }
    })
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("JSON")
}

/// Checks a case's details section against the case in the JSON report: verdict, every
/// deviation with its grade and rule, every violation with its rule, the transcript.
fn assert_case_section(section: ElementRef<'_>, case: &Value, run: Origin) {
    let id = case["id"].as_str().expect("id");
    assert_eq!(section.value().attr("data-case"), Some(id));
    assert_eq!(
        section.value().attr("data-verdict"),
        case["verdict"].as_str(),
        "{id}"
    );
    let deviations: Vec<ElementRef<'_>> =
        section.select(&sel("table.deviations tbody tr")).collect();
    let expected = case["deviations"].as_array().expect("deviations");
    assert_eq!(deviations.len(), expected.len(), "{id}: deviation rows");
    for (row, d) in deviations.iter().zip(expected) {
        assert_eq!(row.value().attr("data-grade"), d["grade"].as_str(), "{id}");
        let rule = inner_text(row.select(&sel("td.rule")).next().expect("rule cell"));
        match d["rule"].as_str() {
            Some(r) => assert_eq!(rule, r, "{id}"),
            None => assert_eq!(rule, "(the scenario's grade)", "{id}"),
        }
    }
    let violations: Vec<ElementRef<'_>> =
        section.select(&sel("table.violations tbody tr")).collect();
    let expected = case["violations"].as_array().expect("violations");
    assert_eq!(violations.len(), expected.len(), "{id}: violation rows");
    for (row, v) in violations.iter().zip(expected) {
        let kind: ViolationKind = serde_json::from_value(v["kind"].clone()).expect("a kind");
        let rule = inner_text(row.select(&sel("td.rule")).next().expect("rule cell"));
        assert_eq!(rule, kind.rule().id(), "{id}");
        assert_eq!(row.value().attr("data-grade"), v["grade"].as_str(), "{id}");
    }
    let transcript = case["transcript"].as_str().expect("transcript");
    let shown: Vec<String> = section
        .select(&sel("details.transcript pre"))
        .map(|pre| comparable(&inner_text(pre), run))
        .collect();
    if transcript.is_empty() {
        assert!(shown.is_empty(), "{id}");
    } else {
        assert_eq!(shown, [comparable(transcript.trim_end(), run)], "{id}");
    }
}

/// Whether a page and the JSON report it is checked against come from one run or two.
#[derive(Clone, Copy)]
enum Origin {
    OneRun,
    /// Two runs of one client: what it sent is the same, not the ports or the server's clock.
    TwoRuns,
}

fn comparable(transcript: &str, run: Origin) -> String {
    match run {
        Origin::OneRun => transcript.to_owned(),
        Origin::TwoRuns => transcript
            .lines()
            .filter(|l| l.starts_with("C: "))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// Every `href` is an anchor of the page itself: nothing leaves it, nothing is fetched.
fn assert_links_resolve(doc: &Html) -> usize {
    let ids: BTreeSet<&str> = doc
        .select(&sel("[id]"))
        .filter_map(|e| e.value().attr("id"))
        .collect();
    let mut n = 0;
    for a in doc.select(&sel("[href]")) {
        let href = a.value().attr("href").expect("href");
        let anchor = href
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("a link off the page: {href}"));
        assert!(ids.contains(anchor), "no element with id {anchor}");
        n += 1;
    }
    assert_eq!(
        doc.select(&sel("[src], script, link, iframe, object"))
            .count(),
        0
    );
    n
}

#[test]
fn a_run_page_shows_the_summary_every_case_its_deviations_and_transcript() {
    if !common::peer_available("python3", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    // A client that reverses the order and one that forgets QUIT: INFORMATIONAL and NON-STRICT
    // cases with deviations and violations, and PASS cases, in one page.
    for wrong in ["reversed_order", "no_quit"] {
        let exec = format!("python3 tests/fixtures/wrong/{wrong}.py");
        let args = ["--filter", FILTER, "--exec", &exec];
        let page = run_into(dir.path(), &format!("{wrong}.html"), "html", &args);
        let report = json(&run_into(
            dir.path(),
            &format!("{wrong}.json"),
            "json",
            &args,
        ));
        let html = std::fs::read_to_string(&page).expect("the page");
        let doc = Html::parse_document(&html);
        assert!(doc.errors.is_empty(), "{wrong}: {:?}", doc.errors);

        // Nothing may be fetched: the policy says so to the browser, too.
        let csp = doc
            .select(&sel("meta[http-equiv=\"Content-Security-Policy\"]"))
            .next()
            .and_then(|m| m.value().attr("content"))
            .expect("a Content-Security-Policy");
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        let summary = doc.select(&sel("dl.summary")).next().expect("a summary");
        assert!(inner_text(summary).contains(&exec));
        assert!(inner_text(summary).contains(env!("CARGO_PKG_VERSION")));
        for (verdict, n) in report["summary"].as_object().expect("summary") {
            let li = summary
                .select(&sel(&format!("li[data-verdict=\"{verdict}\"]")))
                .next()
                .unwrap_or_else(|| panic!("no count of {verdict}"));
            assert_eq!(li.value().attr("data-count"), Some(n.to_string().as_str()));
        }

        let cases = report["cases"].as_array().expect("cases");
        let sections: Vec<ElementRef<'_>> = doc.select(&sel("section.case")).collect();
        assert_eq!(sections.len(), cases.len(), "{wrong}");
        for (section, case) in sections.iter().zip(cases) {
            assert_case_section(*section, case, Origin::TwoRuns);
        }
        // The table of cases links each to its details.
        assert_eq!(
            doc.select(&sel("table.cases td.verdict a")).count(),
            cases.len()
        );
        assert!(assert_links_resolve(&doc) >= 2 * cases.len());
        // The run really shows what the page is for: deviations with rules, graded.
        assert!(
            doc.select(&sel("table.deviations td.rule code")).count()
                + doc.select(&sel("table.violations td.rule code")).count()
                > 0,
            "{wrong}: no deviation or violation on the page"
        );
    }
}

/// A client whose every word is markup: its command line, its standard error, and the ETRN it
/// sends all say `<script>`.
const HOSTILE: &str = r#"python3 -c 'import os, smtplib, sys
sys.stderr.write("<script>alert(2)</script>\n")
c = smtplib.SMTP(os.environ["ETRN_HARNESS_HOST"], int(os.environ["ETRN_HARNESS_PORT"]))
c.ehlo("site.org.com")
c.docmd("ETRN", "<script>alert(1)</script>")
c.quit()' "<b>x</b>""#;

#[test]
fn client_bytes_in_transcripts_and_names_are_escaped() {
    if !common::peer_available("python3", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let args = ["--filter", "e03-*", "--exec", HOSTILE];
    let page = run_into(dir.path(), "run.html", "html", &args);
    let report = run_into(dir.path(), "run.json", "json", &args);
    let matrix = dir.path().join("matrix.html");
    let out = harness(&[
        "report",
        report.to_str().expect("UTF-8"),
        "--output",
        matrix.to_str().expect("UTF-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for path in [page, matrix] {
        let html = std::fs::read_to_string(&path).expect("the page");
        assert!(!html.to_ascii_lowercase().contains("<script"), "{path:?}");
        assert!(!html.contains("<b>"), "{path:?}");
        let doc = Html::parse_document(&html);
        assert_eq!(doc.select(&sel("script, b")).count(), 0);
        // Escaped, not dropped: the text reads as the client wrote it.
        let transcript = inner_text(
            doc.select(&sel("details.transcript pre"))
                .next()
                .expect("transcript"),
        );
        assert!(
            transcript.contains("C: ETRN <script>alert(1)</script>"),
            "{transcript}"
        );
        let stderr = inner_text(
            doc.select(&sel("details.stderr pre"))
                .next()
                .expect("stderr"),
        );
        assert!(stderr.contains("<script>alert(2)</script>"), "{stderr}");
        let sent = doc
            .select(&sel(
                "table.violations td code, table.deviations td.difference",
            ))
            .map(inner_text)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(sent.contains("<script>alert(1)</script>"), "{sent}");
        let title = inner_text(doc.select(&sel("title")).next().expect("title"));
        if path.ends_with("run.html") {
            assert!(title.contains("\"<b>x</b>\""), "{title}");
        }
    }
}

#[test]
fn the_matrix_has_a_cell_per_implementation_and_case_linking_to_its_details() {
    let runs = runs();
    let matrix = runs.dir.path().join("matrix.html");
    let mut args = vec!["report".to_string()];
    args.extend(runs.reports.iter().map(|p| p.display().to_string()));
    args.extend(["--output".into(), matrix.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = harness(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!(
            "matrix of {} implementation(s)",
            runs.reports.len()
        )),
        "{}",
        text(&out.stderr)
    );
    let doc = Html::parse_document(&std::fs::read_to_string(&matrix).expect("the page"));
    assert!(doc.errors.is_empty(), "{:?}", doc.errors);

    let reports: Vec<Value> = runs.reports.iter().map(|p| json(p)).collect();
    let headers: Vec<ElementRef<'_>> = doc.select(&sel("table.matrix thead th.impl")).collect();
    assert_eq!(headers.len(), reports.len());
    for (th, report) in headers.iter().zip(&reports) {
        assert!(inner_text(*th).contains(report["target"].as_str().expect("target")));
    }
    // Rows: every case of any report, once, in the order the reports list them.
    let mut all_ids: Vec<&str> = Vec::new();
    for report in &reports {
        for case in report["cases"].as_array().expect("cases") {
            let id = case["id"].as_str().expect("id");
            if !all_ids.contains(&id) {
                all_ids.push(id);
            }
        }
    }
    if let Some(late) = runs.late_case {
        assert_eq!(all_ids.last(), Some(&late), "{all_ids:?}");
    }
    let rows: Vec<ElementRef<'_>> = doc.select(&sel("table.matrix tbody tr")).collect();
    assert_eq!(rows.len(), all_ids.len());
    let mut verdicts_seen = BTreeSet::new();
    for (row, id) in rows.iter().zip(&all_ids) {
        let th = row.select(&sel("th code")).next().expect("row head");
        assert_eq!(inner_text(th), *id);
        let cells: Vec<ElementRef<'_>> = row.select(&sel("td")).collect();
        assert_eq!(cells.len(), reports.len(), "{id}");
        for (cell, report) in cells.iter().zip(&reports) {
            let case = report["cases"]
                .as_array()
                .expect("cases")
                .iter()
                .find(|c| c["id"] == *id);
            let Some(case) = case else {
                assert!(cell.value().classes().any(|c| c == "not-run"), "{id}");
                continue;
            };
            let verdict = case["verdict"].as_str().expect("verdict");
            verdicts_seen.insert(verdict.to_string());
            // The verdict in words (not colour alone), and a link to the details of this case
            // for this implementation.
            assert_eq!(cell.value().attr("data-verdict"), Some(verdict));
            assert_eq!(inner_text(*cell), verdict);
            let href = cell
                .select(&sel("a"))
                .next()
                .and_then(|a| a.value().attr("href"))
                .expect("a link");
            let target = sel(&format!("[id=\"{}\"]", &href[1..]));
            let section = doc.select(&target).next().expect("the anchor exists");
            assert_case_section(section, case, Origin::OneRun);
            assert_eq!(
                section.value().attr("data-case"),
                Some(*id),
                "{href} is another case's"
            );
        }
    }
    assert_links_resolve(&doc);
    // The runs cover the verdicts they were chosen for, so colours and words are told apart.
    let expected: BTreeSet<String> = runs.verdicts.iter().map(|v| v.to_string()).collect();
    assert_eq!(verdicts_seen, expected);
    let legend: Vec<String> = doc
        .select(&sel("ul.legend li span.verdict"))
        .map(inner_text)
        .collect();
    assert_eq!(
        legend,
        [
            "PASS",
            "FAIL",
            "NON-STRICT",
            "INFORMATIONAL",
            "ERROR",
            "KNOWN"
        ]
    );
}

#[test]
fn report_refuses_bad_input_naming_each_file_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let out = harness(&["report"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("error: no report given"),
        "{}",
        text(&out.stderr)
    );

    let good = run_into(d, "good.json", "json", &["--filter", "e24-*"]);
    let junit = run_into(d, "junit.xml", "junit", &["--filter", "e24-*"]);
    let other = d.join("other.json");
    std::fs::write(&other, r#"{"version": 1, "target": "secret-value"}"#).expect("write");
    let newer = d.join("newer.json");
    std::fs::write(&newer, r#"{"version": 9}"#).expect("write");
    let missing = d.join("missing.json");
    let page = d.join("matrix.html");
    let paths = [&good, &junit, &other, &newer, &missing, &d.to_path_buf()];
    let mut args: Vec<String> = vec!["report".into()];
    args.extend(paths.iter().map(|p| p.display().to_string()));
    args.extend(["--output".into(), page.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = harness(&args);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for (path, reason) in [
        (&junit, "is not JSON"),
        (&other, "not a conformance report"),
        (&newer, "version 9"),
        (&missing, "cannot open it"),
        (&d.to_path_buf(), "not a regular file"),
    ] {
        let line = format!("error: {}: ", path.display());
        let said = err
            .lines()
            .find(|l| l.starts_with(&line))
            .unwrap_or_else(|| panic!("{path:?} not named: {err}"));
        assert!(said.contains(reason), "{said}");
    }
    assert!(
        !err.contains(&format!("error: {}:", good.display())),
        "{err}"
    );
    assert!(
        !err.contains("secret-value"),
        "file content in an error: {err}"
    );
    assert!(!page.exists(), "a matrix was written from bad input");

    // A report over the cap is refused before it is read whole.
    let big = d.join("big.json");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(64 * 1024 * 1024 + 1))
        .expect("a sparse file");
    let out = harness(&["report", big.to_str().expect("UTF-8")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("larger than 67108864 octets"),
        "{}",
        text(&out.stderr)
    );

    // Without --output the page goes to standard output.
    let out = harness(&["report", good.to_str().expect("UTF-8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("<!DOCTYPE html>"));

    // The page never replaces a report it reads.
    let good_arg = good.display().to_string();
    let out = harness(&["report", &good_arg, "--output", &good_arg]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        json(&good)["cases"].is_array(),
        "the report was overwritten"
    );
}

// ----- a real browser -----

/// Chromium loads `page` from disk and prints the DOM it built; every console message it logged
/// (errors, CSP violations, failed loads) is returned. `None`: Chromium is not installed (a loud
/// skip; a failure under CI=true).
async fn chromium(page: &Path) -> Option<(String, Vec<String>)> {
    if !common::peer_available("chromium", &["--version"]) {
        return None;
    }
    let profile = tempfile::tempdir().expect("a profile folder");
    let url = format!(
        "file://{}",
        page.canonicalize().expect("the page").display()
    );
    let child = tokio::process::Command::new("chromium")
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(&url)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("chromium renders the page within two minutes")
        .expect("chromium runs");
    assert!(out.status.success(), "chromium: {}", text(&out.stderr));
    // Chromium logs each console message (and each CSP violation) as `...:CONSOLE:N] "..."` (older
    // versions: `CONSOLE(N)`).
    let console = text(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE:") || l.contains(":CONSOLE("))
        .map(str::to_owned)
        .collect();
    Some((text(&out.stdout), console))
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_reports_console_messages_so_a_silent_render_means_something() {
    let dir = tempfile::tempdir().expect("temp dir");
    let page = dir.path().join("canary.html");
    std::fs::write(
        &page,
        // The pages' own policy, broken twice: an image from elsewhere and an inline script.
        "<!DOCTYPE html><html><head><title>c</title>\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\"></head>\
         <body><p id=\"p\">x</p><img src=\"https://example.invalid/x.png\">\
         <script>console.error(\"canary-message\");</script></body></html>",
    )
    .expect("write");
    let Some((dom, console)) = chromium(&page).await else {
        return;
    };
    assert!(dom.contains("id=\"p\""), "{dom}");
    assert!(
        console.iter().any(|l| l.contains("example.invalid")),
        "{console:?}"
    );
    assert!(
        console.iter().any(|l| l.contains("inline script")),
        "{console:?}"
    );
    // Without the policy the script runs: its console message and its error are caught too.
    let page = dir.path().join("canary-script.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><head><title>c</title></head><body>\
         <script>console.error(\"canary-message\"); notDefined();</script></body></html>",
    )
    .expect("write");
    let (_, console) = chromium(&page).await.expect("chromium ran a moment ago");
    assert!(
        console.iter().any(|l| l.contains("canary-message")),
        "{console:?}"
    );
    assert!(
        console.iter().any(|l| l.contains("notDefined")),
        "{console:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pages_render_in_chromium_without_a_console_message() {
    let runs = tokio::task::spawn_blocking(runs).await.expect("the runs");
    let matrix = runs.dir.path().join("rendered-matrix.html");
    let mut args = vec!["report".to_string()];
    args.extend(runs.reports.iter().map(|p| p.display().to_string()));
    args.extend(["--output".into(), matrix.display().to_string()]);
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        harness(&args)
    })
    .await
    .expect("report");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dir = runs.dir.path().to_path_buf();
    let page = tokio::task::spawn_blocking(move || {
        run_into(&dir, "rendered-run.html", "html", &["--filter", FILTER])
    })
    .await
    .expect("run");
    for path in [page, matrix] {
        let Some((dom, console)) = chromium(&path).await else {
            return;
        };
        assert!(console.is_empty(), "{path:?}: {console:#?}");
        // The browser built the page the file describes: the same cells and case sections.
        let source = Html::parse_document(&std::fs::read_to_string(&path).expect("page"));
        let rendered = Html::parse_document(&dom);
        for css in [
            "td.verdict a",
            "section.case",
            "details.transcript",
            "dl.summary",
        ] {
            let n = source.select(&sel(css)).count();
            assert!(n > 0, "{path:?}: no {css}");
            assert_eq!(rendered.select(&sel(css)).count(), n, "{path:?}: {css}");
        }
    }
}
