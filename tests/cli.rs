//! The command line as a user runs it: exit codes, output, and errors on stderr.

use std::process::{Command, Output};

mod common;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_accepts_the_shipped_corpus_by_default() {
    let out = run(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("scenario file(s) valid"));
}

#[test]
fn check_exits_2_and_names_file_line_column_value_and_fix() {
    let out = run(&["check", "--short", "tests/fixtures/bad"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("tests/fixtures/bad/invalid-domain.toml:12:15: label \"bad_domain!\""),
        "{err}"
    );
    assert!(
        err.contains("(help: use letters, digits and hyphens only"),
        "{err}"
    );
    // Every bad file is reported, not only the first.
    assert_eq!(err.lines().count(), 15, "{err}");
    assert!(text(&out.stdout).contains("0 scenario file(s) valid, 15 invalid"));
}

#[test]
fn check_renders_annotated_excerpts_without_short() {
    let out = run(&["check", "tests/fixtures/bad/unknown-key-typo.toml"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("scenario::unknown-key"), "{err}");
    assert!(err.contains("orderd = \"informational\""), "{err}");
}

#[test]
fn check_reports_a_missing_path() {
    let out = run(&["check", "no/such/folder"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no/such/folder"));
}

#[test]
fn expect_prints_each_etrn_with_its_rule_and_the_reply_handling() {
    let out = run(&["expect", "scenarios/replies/e26-500-stops-etrn.toml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(
        o.contains("ETRN a.com                     [routing-table, must, KB269771]"),
        "{o}"
    );
    assert!(
        o.contains("500 501                          stop sending ETRN, then QUIT"),
        "{o}"
    );
    assert!(o.contains("ETRN a.com -> 500 -> stop"), "{o}");
    assert!(o.contains("(ETRN b.com not sent)"), "{o}");
    assert!(o.contains("[expect]: the model agrees"), "{o}");
}

#[test]
fn expect_exits_1_when_the_model_disagrees() {
    let out = run(&["expect", "tests/fixtures/disagree/wrong-expectation.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let o = text(&out.stdout);
    assert!(
        o.contains("must: ETRN a.com expected but not sent (connection 1)"),
        "{o}"
    );
    assert!(
        o.contains("must: ETRN site.org.com sent but not expected (connection 1)"),
        "{o}"
    );
}

#[test]
fn expect_brief_summarises_the_corpus() {
    let out = run(&["expect", "--brief"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert!(o.contains("e03-no-reroute-site-domain"), "{o}");
    assert!(o.contains("disagrees with 0"), "{o}");
}

#[test]
fn schema_is_json_schema_generated_from_the_types() {
    let out = run(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(schema["title"], "Scenario");
    let props = &schema["properties"];
    for key in [
        "id",
        "title",
        "basis",
        "grade",
        "ims",
        "smarthost",
        "expect",
    ] {
        assert!(props.get(key).is_some(), "no {key} in {props}");
    }
    assert_eq!(schema["additionalProperties"], false);
    let required: Vec<&str> = schema["required"]
        .as_array()
        .expect("required list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        required.contains(&"ims") && required.contains(&"expect"),
        "{required:?}"
    );
}

#[test]
fn help_lists_the_subcommands() {
    let out = run(&["--help"]);
    let o = text(&out.stdout);
    for cmd in ["check", "expect", "schema"] {
        assert!(o.contains(cmd), "{o}");
    }
}

#[test]
fn discovery_reads_each_folder_once_and_refuses_a_fifo() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().to_owned();
    std::fs::copy(
        "scenarios/always-use-etrn/e03-no-reroute-site-domain.toml",
        root.join("e03.toml"),
    )
    .expect("copy");
    // Two links back to the folder itself: a naive walk is exponential in the link depth.
    for name in ["a", "b"] {
        std::os::unix::fs::symlink(".", root.join(name)).expect("symlink");
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let walked = root.clone();
    std::thread::spawn(move || {
        let _ = tx.send(etrn_harness::scenario::discover(&[walked]));
    });
    let found = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("discovery finishes")
        .expect("no error");
    assert_eq!(found.len(), 1, "{found:?}");

    // A FIFO named *.toml would block a read for ever: it is an error naming the file.
    let fifo = root.join("pipe.toml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: mkfifo is not available");
        return;
    }
    let out = run(&["check", "--short", &root.to_string_lossy()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("pipe.toml"), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn the_top_level_help_describes_every_command() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for command in [
        "check", "expect", "schema", "run", "serve", "record", "replay", "bench",
    ] {
        assert!(
            help.contains(&format!("\n  {command} ")),
            "{command} is not described:\n{help}"
        );
    }
}

#[test]
fn logs_to_a_pipe_or_file_carry_no_colour_codes() {
    // stderr is a pipe here: what a CI log or `2> file` gets.
    let out = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .env("RUST_LOG", "etrn_harness=info")
        .args(["run", "--filter", "e03", "--jobs", "1"])
        .output()
        .expect("runs");
    let err = text(&out.stderr);
    assert!(err.contains("INFO"), "the run logged nothing:\n{err}");
    assert!(
        !err.contains('\x1b'),
        "ANSI escapes in a piped log:\n{err:?}"
    );
}

/// A `1.89` or `1.88.0` version as numbers, for comparing.
fn version(v: &str) -> Vec<u64> {
    v.split('.').map(|n| n.parse().unwrap_or(0)).collect()
}

#[test]
fn rust_version_is_what_the_locked_dependencies_need() {
    // cargo metadata over the locked graph, for this platform (the others' crates are never
    // downloaded). It may need the registry index: without it, skip loudly (fail under CI).
    let host = String::from_utf8_lossy(
        &Command::new("rustc")
            .arg("-vV")
            .output()
            .expect("rustc runs")
            .stdout,
    )
    .lines()
    .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
    .expect("rustc names its host");
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(["--filter-platform", &host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    if !out.status.success() {
        assert!(
            !common::ci(),
            "cargo metadata failed: {}",
            text(&out.stderr)
        );
        eprintln!(
            "SKIPPED: cargo metadata failed (no registry index?): {}",
            text(&out.stderr)
        );
        return;
    }
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let ours = packages
        .iter()
        .find(|p| p["name"] == "etrn-harness")
        .and_then(|p| p["rust_version"].as_str())
        .expect("our rust-version");
    let (needed, by) = packages
        .iter()
        .filter(|p| p["name"] != "etrn-harness")
        .filter_map(|p| Some((p["rust_version"].as_str()?, p["name"].as_str()?)))
        .max_by_key(|(v, _)| version(v))
        .expect("some dependency declares a rust-version");
    // Our own code's needs are checked by clippy's incompatible_msrv lint (CI denies warnings).
    assert!(
        version(ours) >= version(needed),
        "rust-version = {ours:?}, but the locked {by} needs {needed}"
    );
    let readme = std::fs::read_to_string("README.md").expect("README");
    assert!(
        readme.contains(&format!("Rust toolchain ({ours} or later)")),
        "the README names another minimum than {ours}"
    );
}

#[test]
fn the_json_report_has_a_version_and_matches_its_schema() {
    let schema_out = run(&["schema", "--report"]);
    assert!(schema_out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&schema_out.stdout).expect("JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    // Passing cases, and a target that fails some, so deviations and errors are in the report.
    for exec in [None, Some("sh -c 'exit 0'")] {
        let mut args = vec!["run", "--format", "json", "--filter", "e2*"];
        if let Some(e) = exec {
            args.extend(["--exec", e]);
        }
        let out = run(&args);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(report["version"], 1);
        assert!(report["summary"]["PASS"].is_u64(), "{}", report["summary"]);
        let errors: Vec<String> = validator
            .iter_errors(&report)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{exec:?}: {}", errors.join("\n"));
    }
}

#[test]
fn run_works_from_any_folder_with_the_shipped_corpus_and_says_which_ran() {
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(["run", "--filter", "e2*"])
        .current_dir(elsewhere.path())
        .output()
        .expect("runs");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("corpus: the shipped one, built into etrn-harness"),
        "{stderr}"
    );
    assert!(stdout.contains("conformance result: ok."), "{stdout}");
    // An --exec target gets a scenario file it can read, though the corpus is built in.
    let out = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(["run", "--filter", "e03-*", "--exec"])
        .arg("sh -c 'grep -q \"^id = \\\"e03-no-reroute-site-domain\\\"\" {scenario} || exit 9'")
        .current_dir(elsewhere.path())
        .output()
        .expect("runs");
    assert!(
        text(&out.stdout).contains("target exit status: 0"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // A path given wins: only its scenarios, and no word of the built-in corpus.
    let out = run(&["run", "--list", "scenarios/replies"]);
    assert!(out.status.success());
    let files = std::fs::read_dir("scenarios/replies")
        .expect("list")
        .count();
    assert!(
        text(&out.stdout).ends_with(&format!("\n{files} scenario(s)\n")),
        "{}",
        text(&out.stdout)
    );
    let out = run(&["expect", "--brief", "scenarios/replies"]);
    assert!(
        !text(&out.stderr).contains("corpus:"),
        "{}",
        text(&out.stderr)
    );
    // `run` names the corpus it ran, whichever it was.
    let out = run(&["run", "--filter", "e26-*", "scenarios/replies"]);
    assert!(
        text(&out.stderr).contains("corpus: scenarios/replies ("),
        "{}",
        text(&out.stderr)
    );
}

/// The binary run in `dir`, as an installed user runs it: no checkout around.
fn run_in(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

#[test]
fn built_in_scenarios_are_named_by_id_from_an_empty_folder() {
    let empty = tempfile::tempdir().expect("temp dir");
    let dir = empty.path();
    // A full id, the short id before its first hyphen, and the builtin: name reports use.
    for arg in [
        "e26-500-stops-etrn",
        "e26",
        "builtin:replies/e26-500-stops-etrn.toml",
    ] {
        let out = run_in(dir, &["expect", arg]);
        assert_eq!(out.status.code(), Some(0), "{arg}: {}", text(&out.stderr));
        assert!(
            text(&out.stdout).starts_with("scenario e26-500-stops-etrn: "),
            "{arg}: {}",
            text(&out.stdout)
        );
        let out = run_in(dir, &["check", arg]);
        assert_eq!(text(&out.stdout), "1 scenario file(s) valid\n", "{arg}");
    }
    // A short id shared by two scenarios selects both; a folder of the corpus, all of it.
    let out = run_in(dir, &["run", "--list", "e40"]);
    assert!(
        text(&out.stdout).ends_with("\n2 scenario(s)\n"),
        "{}",
        text(&out.stdout)
    );
    let out = run_in(
        dir,
        &["expect", "--brief", "builtin:replies", "--filter", "e2*"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("e26-500-stops-etrn"));
    assert!(!text(&out.stdout).contains("e03-"), "{}", text(&out.stdout));
    // serve and probe take one: an id that names two is refused with both named.
    let out = run_in(
        dir,
        &["serve", "--scenario", "e40", "--listen", "127.0.0.1:0"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("\"e40\" names 2 built-in scenarios (e40-exchange-4-0-never-etrn, e40-exchange-5-0-before-sp1-never-etrn)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_unknown_id_and_an_empty_selection_are_one_clear_error_each() {
    let empty = tempfile::tempdir().expect("temp dir");
    let dir = empty.path();
    for args in [
        &["expect", "e26-500-stop-etrn"][..],
        &["check", "e26-500-stop-etrn"],
        &["run", "e26-500-stop-etrn"],
        &["scenarios", "show", "e26-500-stop-etrn"],
    ] {
        let out = run_in(dir, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(
            text(&out.stderr),
            "error: no file or folder \"e26-500-stop-etrn\" here, and no built-in scenario has the id \
             \"e26-500-stop-etrn\"; did you mean e26-500-stops-etrn?\n",
            "{args:?}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    for command in ["check", "expect", "run"] {
        let out = run_in(dir, &[command, "e26", "--filter", "zzz"]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(
            text(&out.stderr).contains("error: --filter \"zzz\" selects no scenario of 1"),
            "{command}: {}",
            text(&out.stderr)
        );
    }
    // A folder with no scenario in it is no success either.
    std::fs::create_dir(dir.join("none")).expect("mkdir");
    let out = run_in(dir, &["check", "./none"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "error: no scenario files found in the given paths\n"
    );
}

#[test]
fn a_path_that_exists_wins_over_an_id() {
    let empty = tempfile::tempdir().expect("temp dir");
    let dir = empty.path();
    let mine = std::fs::read_to_string("scenarios/replies/e26-500-stops-etrn.toml")
        .expect("read")
        .replace("id = \"e26-500-stops-etrn\"", "id = \"mine\"");
    std::fs::write(dir.join("e26"), mine).expect("write");
    let out = run_in(dir, &["expect", "--brief", "e26"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("mine "),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn scenarios_list_show_and_export_give_the_corpus_as_shipped() {
    let empty = tempfile::tempdir().expect("temp dir");
    let dir = empty.path();
    let out = run_in(dir, &["scenarios", "list"]);
    assert!(out.status.success());
    let listed = text(&out.stdout);
    let on_disk = scenario_files("scenarios");
    assert_eq!(listed.lines().count(), on_disk.len());
    assert!(
        listed.lines().any(|l| l.starts_with("e26-500-stops-etrn ")
            && l.contains(" replies ")
            && l.ends_with("500 syntax error: send no further ETRN")),
        "{listed}"
    );
    let out = run_in(dir, &["scenarios", "list", "--filter", "e26"]);
    assert_eq!(text(&out.stdout).lines().count(), 1);
    // An empty filter (an unset shell variable, say) is refused, not taken for everything.
    for command in [&["scenarios", "list"][..], &["run"], &["check"]] {
        let out = run_in(dir, &[command, &["--filter", ""]].concat());
        assert_eq!(out.status.code(), Some(2), "{command:?}");
        assert!(
            text(&out.stderr).contains("error: --filter is empty: "),
            "{command:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "", "{command:?}");
    }
    // show prints the file byte for byte.
    let out = run_in(dir, &["scenarios", "show", "e26"]);
    assert!(out.status.success());
    assert_eq!(
        out.stdout,
        std::fs::read("scenarios/replies/e26-500-stops-etrn.toml").expect("read")
    );
    // A path is no id: show says what it takes.
    std::fs::write(dir.join("mine.toml"), "x").expect("write");
    let out = run_in(dir, &["scenarios", "show", "mine.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "error: \"mine.toml\" is a file here, but `scenarios show` takes a built-in scenario's id \
         only (`etrn-harness scenarios list` shows them); to read a file, `cat` it\n"
    );
    std::fs::remove_file(dir.join("mine.toml")).expect("rm");
    // export writes the scenarios/ layout, every file as in the repository.
    let out = run_in(dir, &["scenarios", "export", "corpus"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("wrote {} scenario file(s) into corpus\n", on_disk.len())
    );
    let exported = scenario_files(&dir.join("corpus").to_string_lossy());
    assert_eq!(exported.len(), on_disk.len());
    for (name, bytes) in &on_disk {
        assert_eq!(exported.get(name), Some(bytes), "{name}");
    }
    // An existing file is refused, nothing written; --force replaces; a link is never followed.
    let e26 = dir.join("corpus/replies/e26-500-stops-etrn.toml");
    std::fs::write(&e26, "mine").expect("write");
    let out = run_in(dir, &["scenarios", "export", "corpus", "--filter", "e2*"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("exists, and ")
            && text(&out.stderr).contains("nothing was written (--force replaces existing files)"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&e26).expect("read"), "mine");
    let out = run_in(
        dir,
        &[
            "scenarios",
            "export",
            "corpus",
            "--filter",
            "e2*",
            "--force",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        Some(&std::fs::read(&e26).expect("read")),
        on_disk.get("replies/e26-500-stops-etrn.toml")
    );
    std::fs::remove_file(&e26).expect("rm");
    std::os::unix::fs::symlink(dir.join("target-of-link"), &e26).expect("symlink");
    let out = run_in(
        dir,
        &[
            "scenarios",
            "export",
            "corpus",
            "--filter",
            "e26",
            "--force",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is no regular file"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.join("target-of-link").exists());
    // A DIR that is a file is refused before writing: bad input, exit 2.
    std::fs::write(dir.join("afile"), "mine").expect("write");
    let out = run_in(dir, &["scenarios", "export", "afile", "--filter", "e26"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        "error: afile exists and is no folder; nothing was written (name a folder, new or existing)\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("afile")).expect("read"),
        "mine"
    );
    // A folder that cannot be created is the system failing: exit 4.
    let out = run_in(
        dir,
        &["scenarios", "export", "afile/sub", "--filter", "e26"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("error: cannot write afile/sub/"),
        "{}",
        text(&out.stderr)
    );
    // The exported corpus is a corpus: check and run take it as a path.
    let out = run_in(dir, &["check", "corpus/defaults"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// Every `.toml` under `root`, by its path below it, with its bytes.
fn scenario_files(root: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut folders = vec![std::path::PathBuf::from(root)];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|x| x == "toml") {
                let name = path
                    .strip_prefix(root)
                    .expect("below root")
                    .to_string_lossy()
                    .into_owned();
                out.insert(name, std::fs::read(&path).expect("read"));
            }
        }
    }
    out
}

#[test]
fn arguments_out_of_range_are_usage_errors() {
    let empty = tempfile::tempdir().expect("temp dir");
    let dir = empty.path();
    for (args, says) in [
        (&["run", "--exec", ""][..], "--exec <CMD>': is empty"),
        (&["run", "--exec", "  "], "--exec <CMD>': is empty"),
        (&["run", "--jobs", "0"], "must be at least 1"),
        (&["run", "--timeout", "0"], "above 0"),
        (&["run", "--timeout=-1"], "above 0"),
        (&["run", "--timeout", "inf"], "above 0"),
        (
            &["serve", "--exit-after-sessions", "0"],
            "must be at least 1",
        ),
        (
            &["replay", "--cassette", "c", "--exit-after-sessions", "0"],
            "must be at least 1",
        ),
    ] {
        let out = run_in(dir, args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).starts_with("error: invalid value")
                && text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "", "{args:?}");
    }
}

#[test]
fn a_human_report_in_a_file_is_what_stdout_shows() {
    let empty = tempfile::tempdir().expect("temp dir");
    let dir = empty.path();
    let shown = run_in(dir, &["run", "e26", "--format", "human"]);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let out = run_in(
        dir,
        &["run", "e26", "--format", "human", "--output", "report.txt"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    let written = std::fs::read_to_string(dir.join("report.txt")).expect("read");
    assert_eq!(written, text(&shown.stdout));
    assert!(
        written
            .starts_with("running 1 case(s) against builtin\ncase e26-500-stops-etrn ... PASS\n"),
        "{written}"
    );
}

#[test]
fn reports_name_a_built_in_scenario_by_its_builtin_name() {
    let empty = tempfile::tempdir().expect("temp dir");
    let dir = empty.path();
    // A target that sends nothing fails e26, so the human report shows the case's details.
    let out = run_in(dir, &["run", "e26", "--exec", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("\nfile: builtin:replies/e26-500-stops-etrn.toml\n"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("(connection 1) [every-connection"),
        "{}",
        text(&out.stdout)
    );
    let out = run_in(dir, &["run", "e26", "--format", "json", "--exec", "true"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let case = &report["cases"][0];
    assert_eq!(case["file"], "builtin:replies/e26-500-stops-etrn.toml");
    // The JSON counts connections from 1, as the human report does.
    assert_eq!(case["deviations"][0]["connection"], 1, "{case}");
    let out = run_in(dir, &["run", "e26", "--format", "junit"]);
    assert!(
        text(&out.stdout).contains("classname=\"etrn.replies\""),
        "{}",
        text(&out.stdout)
    );
    // The name a report gives is taken back as an argument.
    let out = run_in(
        dir,
        &[
            "expect",
            "--brief",
            "builtin:replies/e26-500-stops-etrn.toml",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn help_says_the_recording_is_json_lines_and_every_listen_has_a_line() {
    let serve = text(&run(&["serve", "--help"]).stdout);
    assert!(serve.contains("to FILE as JSON Lines"), "{serve}");
    assert!(serve.contains("`etrn-harness recording FILE`"), "{serve}");
    assert!(!serve.contains("recording as JSON to"), "{serve}");
    for command in ["serve", "record", "replay"] {
        let help = text(&run(&[command, "--help"]).stdout);
        let listen = help
            .split("--listen <LISTEN>")
            .nth(1)
            .and_then(|rest| rest.lines().nth(1))
            .unwrap_or_default();
        assert!(
            listen.trim_start().starts_with(char::is_uppercase),
            "{command} --listen has no help line: {help}"
        );
    }
}
