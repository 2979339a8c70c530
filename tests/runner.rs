//! The conformance runner catches bugs: deliberately wrong implementations get exactly the
//! verdicts they deserve; real implementations (the smtplib adapter, fetchmail) are judged through
//! `--exec`; the `run` command's options, reports and exit codes work as documented.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use etrn_harness::conformance::{
    self, Case, CaseResult, KnownDeviations, RunOptions, Target, Verdict, ViolationKind,
};
use etrn_harness::scenario;

mod common;

fn available(program: &str) -> bool {
    common::peer_available(program, &["--version"])
}

fn corpus() -> Vec<Case> {
    let c = scenario::load_corpus(&[PathBuf::from("scenarios")]);
    assert!(c.errors.is_empty());
    c.scenarios
        .into_iter()
        .map(|(file, scenario)| Case { file, scenario })
        .collect()
}

fn run(target: Target, known: KnownDeviations) -> Vec<CaseResult> {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let options = RunOptions {
        target,
        jobs: 4,
        timeout: Duration::from_secs(10),
    };
    runtime.block_on(conformance::run_all(corpus(), options, known, |_, _, _| {}))
}

fn exec(script: &str) -> Target {
    Target::Exec {
        command: format!("python3 {script}"),
    }
}

/// Every case that did not PASS, with its verdict.
fn not_passed(results: &[CaseResult]) -> BTreeMap<String, Verdict> {
    results
        .iter()
        .filter(|r| r.verdict != Verdict::Pass)
        .map(|r| (r.id.clone(), r.verdict))
        .collect()
}

fn verdict_of<'a>(results: &'a [CaseResult], id: &str) -> &'a CaseResult {
    results
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no case {id}"))
}

fn snapshot(name: &str, results: &[CaseResult]) {
    let text: String = not_passed(results)
        .into_iter()
        .map(|(id, v)| format!("{id}: {v}\n"))
        .collect();
    common::snapshot_settings().bind(|| insta::assert_snapshot!(name, text));
}

#[test]
fn the_builtin_client_passes_every_scenario() {
    let results = run(Target::Builtin, KnownDeviations::default());
    assert_eq!(results.len(), corpus().len());
    assert_eq!(not_passed(&results), BTreeMap::new());
}

#[test]
fn the_smtplib_adapter_passes_every_scenario() {
    if !available("python3") {
        return;
    }
    let results = run(
        exec("harness/adapters/smtplib_ims.py"),
        KnownDeviations::default(),
    );
    assert_eq!(not_passed(&results), BTreeMap::new());
}

#[test]
fn a_client_that_ignores_the_routing_mode_fails_the_do_not_reroute_cases() {
    if !available("python3") {
        return;
    }
    let results = run(
        exec("tests/fixtures/wrong/ignores_routing_mode.py"),
        KnownDeviations::default(),
    );
    let e06 = verdict_of(&results, "e06-no-reroute-ignores-stale-table");
    assert_eq!(e06.verdict, Verdict::Fail);
    assert_eq!(e06.actual, [vec!["a.com".to_string(), "b.com".to_string()]]);
    snapshot("wrong_ignores_routing_mode", &results);
}

#[test]
fn a_client_that_adds_at_is_caught_by_the_option_character_rule() {
    if !available("python3") {
        return;
    }
    let results = run(
        exec("tests/fixtures/wrong/adds_at.py"),
        KnownDeviations::default(),
    );
    let r = verdict_of(&results, "rfc1985-250-continue");
    assert_eq!(r.verdict, Verdict::NonStrict);
    assert!(
        r.violations
            .iter()
            .any(|v| v.kind == ViolationKind::OptionCharacter)
    );
    assert_eq!(
        verdict_of(&results, "e08-reroute-two-domains").verdict,
        Verdict::Fail
    );
    snapshot("wrong_adds_at", &results);
}

#[test]
fn a_client_that_stops_after_458_is_informational_only() {
    if !available("python3") {
        return;
    }
    let results = run(
        exec("tests/fixtures/wrong/stops_after_458.py"),
        KnownDeviations::default(),
    );
    assert_eq!(
        not_passed(&results),
        BTreeMap::from([
            ("e25-458-continue".to_string(), Verdict::Informational),
            (
                "occurrence-458-then-250".to_string(),
                Verdict::Informational
            ),
        ])
    );
}

#[test]
fn a_client_that_sends_etrn_inside_a_transaction_fails() {
    if !available("python3") {
        return;
    }
    let results = run(
        exec("tests/fixtures/wrong/etrn_in_transaction.py"),
        KnownDeviations::default(),
    );
    let r = verdict_of(&results, "e42-etrn-after-three-messages");
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(
        r.violations
            .iter()
            .any(|v| v.kind == ViolationKind::EtrnInTransaction)
    );
    // Without outbound mail there is no transaction to send it in.
    assert_eq!(
        verdict_of(&results, "o22-dial-up-etrn-without-outbound-mail").verdict,
        Verdict::Pass
    );
    snapshot("wrong_etrn_in_transaction", &results);
}

#[test]
fn a_client_that_ignores_the_ehlo_keywords_fails_exactly_the_gating_cases() {
    if !available("python3") {
        return;
    }
    let results = run(
        exec("tests/fixtures/wrong/etrn_not_advertised.py"),
        KnownDeviations::default(),
    );
    assert_eq!(
        not_passed(&results),
        BTreeMap::from([
            ("b4-keyword-prefix-is-not-etrn".to_string(), Verdict::Fail),
            ("e17-etrn-not-advertised".to_string(), Verdict::Fail),
        ])
    );
    let e17 = verdict_of(&results, "e17-etrn-not-advertised");
    assert!(
        e17.violations
            .iter()
            .any(|v| v.kind == ViolationKind::EtrnNotAdvertised)
    );
}

#[test]
fn a_client_that_goes_on_after_500_is_non_strict() {
    if !available("python3") {
        return;
    }
    let results = run(
        exec("tests/fixtures/wrong/continues_after_500.py"),
        KnownDeviations::default(),
    );
    assert_eq!(
        not_passed(&results),
        BTreeMap::from([
            ("e26-500-stops-etrn".to_string(), Verdict::NonStrict),
            ("e27-exim-hash-only".to_string(), Verdict::NonStrict),
            (
                "rfc1985-500-on-second-of-three".to_string(),
                Verdict::NonStrict
            ),
            ("rfc1985-501-stops-etrn".to_string(), Verdict::NonStrict),
        ])
    );
    let e26 = verdict_of(&results, "e26-500-stops-etrn");
    assert!(
        e26.violations
            .iter()
            .any(|v| v.kind == ViolationKind::EtrnAfterSyntaxError)
    );
}

#[test]
fn a_client_that_sends_bare_lf_fails_every_case_where_it_speaks() {
    if !available("python3") {
        return;
    }
    let results = run(
        exec("tests/fixtures/wrong/bare_lf.py"),
        KnownDeviations::default(),
    );
    let passed: Vec<&str> = results
        .iter()
        .filter(|r| r.verdict == Verdict::Pass)
        .map(|r| r.id.as_str())
        .collect();
    // No connection at all, or refused at the greeting: no command line to get wrong.
    assert_eq!(
        passed,
        [
            "e21-no-outbound-mail-no-connection",
            "greeting-421-refuses-session"
        ]
    );
    for r in results.iter().filter(|r| r.verdict != Verdict::Pass) {
        assert_eq!(r.verdict, Verdict::Fail, "{}", r.id);
        assert!(
            r.violations.iter().any(|v| v.kind == ViolationKind::BareLf),
            "{}",
            r.id
        );
    }
}

#[test]
fn fetchmail_passes_every_scenario_but_its_documented_deviations() {
    if !available("python3") || !available("fetchmail") {
        return;
    }
    let known = KnownDeviations::load(Path::new("harness/adapters/fetchmail-ims.known.toml"))
        .expect("the known file parses");
    let results = run(exec("harness/adapters/fetchmail_ims.py"), known);
    let unexpected: Vec<String> = results
        .iter()
        .filter(|r| !matches!(r.verdict, Verdict::Pass | Verdict::Known))
        .map(conformance::report::case_details)
        .collect();
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
    snapshot("fetchmail_known_deviations", &results);
    // fetchmail stops after 251: RFC 1985 counts it as success.
    let e24 = verdict_of(&results, "e24-251-is-success");
    assert_eq!(e24.actual, [vec!["a.com".to_string()]]);
}

// ----- the `run` command -----

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .arg("run")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn run_defaults_to_the_builtin_target_over_the_corpus_and_exits_0() {
    let o = cli(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(
        out.contains("case e03-no-reroute-site-domain ... PASS"),
        "{out}"
    );
    assert!(
        out.trim_end().ends_with(&format!(
            "conformance result: ok. {n} case(s): {n} PASS",
            n = corpus().len()
        )),
        "{out}"
    );
}

#[test]
fn run_list_and_filter() {
    let o = cli(&["--list", "--filter", "e2?-*"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(out.contains("e24-251-is-success"), "{out}");
    assert!(!out.contains("e03-"), "{out}");
    let plain = cli(&["--list", "--filter", "reroute"]);
    assert!(stdout(&plain).contains("e08-reroute-two-domains"));
}

#[test]
fn run_exits_1_on_fail_and_strict_counts_non_strict() {
    if !available("python3") {
        return;
    }
    let wrong = cli(&[
        "--exec",
        "python3 tests/fixtures/wrong/etrn_not_advertised.py",
        "--filter",
        "e17-*",
    ]);
    assert_eq!(wrong.status.code(), Some(1));
    let out = stdout(&wrong);
    assert!(
        out.contains("---- e17-etrn-not-advertised (FAIL) ----"),
        "{out}"
    );
    assert!(
        out.contains("requirement: The peer's EHLO reply lacks ETRN: no ETRN"),
        "{out}"
    );
    assert!(
        out.contains("must: ETRN a.com sent but not expected"),
        "{out}"
    );
    assert!(
        out.contains("ETRN although the peer did not advertise it"),
        "{out}"
    );
    assert!(
        out.contains("C: ETRN a.com"),
        "the transcript is shown: {out}"
    );

    let lenient = cli(&[
        "--exec",
        "python3 tests/fixtures/wrong/continues_after_500.py",
        "--filter",
        "e26-*",
    ]);
    assert_eq!(lenient.status.code(), Some(0), "{}", stdout(&lenient));
    let strict = cli(&[
        "--exec",
        "python3 tests/fixtures/wrong/continues_after_500.py",
        "--filter",
        "e26-*",
        "--strict",
    ]);
    assert_eq!(strict.status.code(), Some(1));
}

#[test]
fn run_known_file_turns_a_deviation_into_known() {
    if !available("python3") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let known = dir.path().join("known.toml");
    std::fs::write(
        &known,
        "[[known]]\nscenario = \"e17-*\"\nreason = \"ignores EHLO on purpose\"\n",
    )
    .expect("write");
    let o = cli(&[
        "--exec",
        "python3 tests/fixtures/wrong/etrn_not_advertised.py",
        "--filter",
        "e17-*",
        "--known",
        &known.to_string_lossy(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("known deviation: ignores EHLO on purpose"));
}

#[test]
fn run_writes_json_and_junit_reports() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json_path = dir.path().join("report.json");
    let o = cli(&[
        "--filter",
        "e26-*",
        "--format",
        "json",
        "--output",
        &json_path.to_string_lossy(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json_path).expect("written")).expect("JSON");
    assert_eq!(json["passed"], true);
    let case = &json["cases"][0];
    assert_eq!(case["id"], "e26-500-stops-etrn");
    assert_eq!(case["verdict"], "PASS");
    assert!(
        case["transcript"]
            .as_str()
            .expect("transcript")
            .contains("S: 500 Syntax Error")
    );
    assert_eq!(case["recording"]["sessions"][0]["etrn"][0]["reply"], 500);

    let junit = cli(&["--filter", "e2[46]-*", "--format", "junit"]);
    assert_eq!(junit.status.code(), Some(0));
    let xml = stdout(&junit);
    let report = quick_junit_parse(&xml);
    assert!(
        report.contains("<testsuite name=\"etrn-conformance\" tests=\"2\""),
        "{xml}"
    );
    assert!(xml.contains("classname=\"scenarios.replies\""), "{xml}");
}

/// The JUnit text, checked to be well-formed enough for CI systems (one root, balanced suites).
fn quick_junit_parse(xml: &str) -> String {
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert_eq!(xml.matches("<testsuites").count(), 1);
    assert_eq!(
        xml.matches("<testsuite ").count(),
        xml.matches("</testsuite>").count()
    );
    xml.to_owned()
}

#[test]
fn a_target_that_never_connects_is_an_error() {
    let o = cli(&["--exec", "true", "--filter", "e03-*"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("error: the target never connected"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_target_that_hangs_is_killed_with_its_whole_process_group() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("child.pid");
    // The target starts a grandchild that would outlive it, then hangs itself.
    let command = format!("sleep 60 & echo $! > '{}'; sleep 60", pid_file.display());
    let o = cli(&["--exec", &command, "--filter", "e03-*", "--timeout", "0.5"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("error: timed out after 500 ms"),
        "{}",
        stdout(&o)
    );
    let pid = std::fs::read_to_string(&pid_file).expect("the target wrote its child's pid");
    let proc_path = PathBuf::from(format!("/proc/{}", pid.trim()));
    // Killed with SIGKILL before `run` returned; only reaping can lag, and a zombie has no cmdline.
    let alive = std::fs::read(proc_path.join("cmdline")).is_ok_and(|c| !c.is_empty());
    assert!(!alive, "the grandchild {} survived", pid.trim());
}

#[test]
fn the_exec_contract_environment_and_placeholders() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("env.txt");
    let command = format!(
        "printf '%s\\n' \"$ETRN_HARNESS_HOST\" \"$ETRN_HARNESS_PORT\" {{host}} {{port}} \"$ETRN_HARNESS_SCENARIO\" > '{o}'; cat {{config}} >> '{o}'",
        o = out.display()
    );
    let _ = cli(&["--exec", &command, "--filter", "e03-*"]);
    let text = std::fs::read_to_string(&out).expect("the target ran");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "127.0.0.1");
    assert_eq!(lines[0], lines[2]);
    assert_eq!(lines[1], lines[3]);
    assert!(lines[1].parse::<u16>().is_ok_and(|p| p > 0));
    assert!(
        lines[4].ends_with("e03-no-reroute-site-domain.toml"),
        "{}",
        lines[4]
    );
    let json: serde_json::Value =
        serde_json::from_str(&lines[5..].join("\n")).expect("config JSON");
    assert_eq!(json["site_address"], "@site.org.com");
    assert_eq!(json["routing"], "do-not-reroute");
    assert_eq!(json["registry"]["AlwaysUseETRN"], 1);
}
