//! The conformance runner: real implementations (the built-in client, the smtplib adapter,
//! fetchmail) are judged through `--exec`; the `run` command's options, reports and exit codes work
//! as documented, and it never reports a pass it has not earned. The deliberately wrong
//! implementations are `tests/mutations.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use etrn_harness::conformance::{
    self, Case, CaseResult, KnownDeviations, RunOptions, Target, Verdict,
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
    runtime
        .block_on(conformance::run_all(corpus(), options, known, |_, _, _| {}))
        .expect("the target starts")
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

/// Writes a run's JUnit report under `target/conformance/`, where CI keeps it: each adapter's
/// corpus runs once, here, and CI reads the reports rather than running the corpus again.
fn keep_junit(name: &str, target: &str, results: &[CaseResult]) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
        .join("conformance");
    let xml = conformance::report::junit(results, target, false).expect("the report serialises");
    std::fs::create_dir_all(&dir).expect("the report folder");
    std::fs::write(dir.join(format!("{name}.xml")), xml).expect("the report is written");
}

// The built-in client over the corpus is `tests/conformance.rs`, one test per scenario; it is not
// run again here.

#[test]
fn the_smtplib_adapter_passes_every_scenario() {
    if !available("python3") {
        return;
    }
    let target = exec("harness/adapters/smtplib_ims.py");
    let label = target.name();
    let results = run(target, KnownDeviations::default());
    keep_junit("smtplib", &label, &results);
    assert_eq!(results.len(), corpus().len());
    assert_eq!(not_passed(&results), BTreeMap::new());
}

#[test]
fn fetchmail_passes_every_scenario_but_its_documented_deviations() {
    if !available("python3") || !available("fetchmail") {
        return;
    }
    let known = KnownDeviations::load(Path::new("harness/adapters/fetchmail-ims.known.toml"))
        .expect("the known file parses");
    let target = exec("harness/adapters/fetchmail_ims.py");
    let label = target.name();
    let results = run(target, known);
    keep_junit("fetchmail", &label, &results);
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
fn run_defaults_to_the_builtin_target_and_prints_cases_in_corpus_order() {
    // A slice of the corpus across several folders (the whole corpus through the built-in client
    // is tests/conformance.rs): printed in corpus order whatever finishes first, exit 0.
    let listed = cli(&["--list", "--filter", "e1"]);
    let order: Vec<String> = stdout(&listed)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        // The last line counts the cases.
        .filter(|id| !id.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert!(order.len() > 8, "{order:?}");
    let o = cli(&["--filter", "e1", "--jobs", "8"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let out = stdout(&o);
    let printed: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("case "))
        .filter_map(|l| l.split(" ... ").next().map(str::to_owned))
        .collect();
    assert_eq!(printed, order);
    assert!(
        out.contains("case e13-subdomain-rows-no-at-option ... PASS"),
        "{out}"
    );
    assert!(
        out.trim_end().ends_with(&format!(
            "conformance result: ok. {n} case(s): {n} PASS",
            n = order.len()
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
    assert!(xml.contains("classname=\"etrn.replies\""), "{xml}");
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
fn a_target_that_never_connects_is_judged_and_one_that_fails_without_connecting_is_an_error() {
    // Exit 0 without a connection: a choice, judged; the site domain is missing (must).
    let o = cli(&["--exec", "true", "--filter", "e03-*"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("case e03-no-reroute-site-domain ... FAIL"),
        "{out}"
    );
    assert!(
        out.contains("must: ETRN site.org.com expected but not sent (connection 1)"),
        "{out}"
    );
    // On the first case, a failure without a connection means the target cannot run: exit 2.
    let o = cli(&["--exec", "exit 3", "--filter", "e03-*"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("exit 3"), "{}", stderr(&o));
    // On a later case it says nothing about ETRN: an ERROR.
    let dir = tempfile::tempdir().expect("temp dir");
    let marker = dir.path().join("ran-once");
    let command = format!(
        "if [ -e '{0}' ]; then exit 3; fi; touch '{0}'",
        marker.display()
    );
    let o = cli(&["--exec", &command, "--filter", "e0[34]-*"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("error: the target exited with status 3 without connecting"),
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

// ----- no false passes -----

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_filter_that_selects_nothing_is_exit_2_not_a_pass() {
    let o = cli(&["--filter", "zzz-no-such-case"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--filter \"zzz-no-such-case\" selects no scenario"),
        "{}",
        stderr(&o)
    );
    assert!(!stdout(&o).contains("PASS"), "{}", stdout(&o));
}

#[test]
fn a_target_the_shell_cannot_find_stops_the_run_with_its_message() {
    let o = cli(&["--exec", "no-such-etrn-client --flag"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("the target cannot run"), "{err}");
    assert!(err.contains("exit 127"), "{err}");
    assert!(
        err.contains("no-such-etrn-client"),
        "the shell's message: {err}"
    );
    assert!(!stdout(&o).contains("PASS"), "{}", stdout(&o));

    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("client.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("write");
    // Not executable: the shell says 126.
    let o = cli(&["--exec", &script.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("exit 126"), "{}", stderr(&o));
}

#[test]
fn any_non_zero_exit_without_a_connection_on_the_first_case_stops_the_run_once() {
    // An interpreter given a missing script exits 2: not the shell's 126 or 127, but the target
    // cannot run all the same, and its message is shown once, not once per case.
    let o = cli(&[
        "--exec",
        "sh -c 'echo cannot open no-such-file.py >&2; exit 2'",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("the target cannot run"), "{err}");
    assert!(err.contains("exit 2"), "{err}");
    assert_eq!(
        err.matches("cannot open no-such-file.py").count(),
        1,
        "{err}"
    );
    let out = stdout(&o);
    assert!(!out.contains("PASS") && !out.contains("ERROR"), "{out}");
}

#[test]
fn the_same_stderr_in_every_case_is_shown_once() {
    // Exits 0 without connecting: judged, and FAILs wherever ETRN is owed.
    let o = cli(&[
        "--exec",
        "sh -c 'echo the same complaint >&2'",
        "--filter",
        "e2",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    // Once in the details (the header line names the command, which holds it too).
    assert_eq!(out.matches("    the same complaint").count(), 1, "{out}");
    assert!(out.contains("target stderr: the same as in case"), "{out}");
}

#[test]
fn a_scenario_the_model_disagrees_with_is_an_error_not_a_verdict() {
    let o = cli(&["tests/fixtures/disagree/wrong-expectation.toml"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("case wrong-expectation ... ERROR"), "{out}");
    assert!(
        out.contains("error: scenario disagrees with the model"),
        "{out}"
    );
    assert!(
        out.contains("must: ETRN a.com expected but not sent (connection 1)"),
        "the expect diff: {out}"
    );
}

#[test]
fn stale_known_entries_are_warned_about_and_fail_a_strict_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let known = dir.path().join("known.toml");
    std::fs::write(
        &known,
        "[[known]]\nscenario = \"e26-*\"\nreason = \"the builtin passes it\"\n[[known]]\nscenario = \"e99-typo\"\nreason = \"matches nothing\"\n",
    )
    .expect("write");
    let known = known.to_string_lossy();
    let o = cli(&["--filter", "e26-*", "--known", &known]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("warning: known entry \"e26-*\" matches e26-500-stops-etrn, which now passes"),
        "{err}"
    );
    assert!(
        err.contains("warning: known entry \"e99-typo\" matches no scenario"),
        "{err}"
    );
    let strict = cli(&["--filter", "e26-*", "--known", &known, "--strict"]);
    assert_eq!(strict.status.code(), Some(1), "{}", stderr(&strict));
}

#[test]
fn a_u_label_as_configured_passes_and_another_form_is_informational() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("idn.toml");
    std::fs::write(
        &file,
        "id = \"idn-without-smtputf8\"\ntitle = \"t\"\nbasis = [\"RFC 6531\"]\ngrade = \"must\"\n[ims]\nsite_address = \"@site.org.com\"\noutbound_messages = 1\nregistry = { AlwaysUseETRN = 1 }\nrouting_table = [{ sent_to = \"bücher.example\", action = \"inbound\" }, { sent_to = \"A.example\", action = \"inbound\" }]\n[expect]\netrn = [\"bücher.example\", \"A.example\"]\n",
    )
    .expect("write");
    // The builtin client sends the U-label as configured, as the model does (IMS 5.5 predates
    // IDNA, spec O-7): that passes, even to a server without SMTPUTF8.
    let o = cli(&[&file.to_string_lossy()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("case idn-without-smtputf8 ... PASS"), "{out}");
    if !available("python3") {
        return;
    }
    // A client that sends the A-label and lower-cases: the same domains, other forms.
    let o = cli(&[
        &file.to_string_lossy(),
        "--exec",
        "python3 tests/fixtures/wrong/a_label_for_u_label.py",
    ]);
    let out = stdout(&o);
    assert!(
        out.contains("informational: ETRN xn--bcher-kva.example sent for bücher.example (same domain; differs in A-label for a U-label)"),
        "{out}"
    );
    assert!(!out.contains("expected but not sent"), "{out}");
}

#[test]
fn children_a_target_leaves_behind_are_killed_when_it_exits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("child.pid");
    // The target starts a grandchild that would outlive it, then exits normally at once.
    let command = format!("sleep 60 & echo $! > '{}'; exit 0", pid_file.display());
    let o = cli(&["--exec", &command, "--filter", "e03-*"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let pid = std::fs::read_to_string(&pid_file).expect("the target wrote its child's pid");
    let proc_path = PathBuf::from(format!("/proc/{}", pid.trim()));
    let alive = std::fs::read(proc_path.join("cmdline")).is_ok_and(|c| !c.is_empty());
    assert!(!alive, "the grandchild {} survived", pid.trim());
}

#[test]
fn absurd_timeouts_are_usage_errors_not_panics() {
    for timeout in ["1e300", "0", "-1", "NaN"] {
        let o = cli(&[&format!("--timeout={timeout}"), "--filter", "e03-*"]);
        assert_eq!(
            o.status.code(),
            Some(2),
            "--timeout {timeout}: {}",
            stderr(&o)
        );
        // Refused while the arguments are read, saying what a timeout may be.
        let said = stderr(&o);
        assert!(
            said.contains("--timeout") && said.contains("must be a number of seconds above 0"),
            "{said}"
        );
    }
}

#[test]
fn a_reader_that_stops_early_is_no_error() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(["run", "--list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // Close the read end before the listing is written, like `| head -0`.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("it exits");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
}
