//! The README's GitHub Actions and GitLab CI snippets: the `etrn-harness run` line in each is a
//! command line the binary takes, and with the built-in target in place of the implementation's
//! client it writes the JUnit report the snippet keeps.

use std::process::Command;

/// The `etrn-harness run ... etrn-conformance.xml` command of each `yaml` block, its YAML line
/// breaks and list markers folded away, split into words (single quotes group, as in sh).
fn snippet_commands() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("the README");
    let mut commands = Vec::new();
    for block in readme.split("```yaml\n").skip(1) {
        let block = block.split("```").next().unwrap_or_default();
        let flat = block.split_whitespace().collect::<Vec<_>>().join(" ");
        let Some(start) = flat.find("etrn-harness run") else {
            continue;
        };
        let rest = &flat[start..];
        let end = rest.find(".xml").expect("the command names its report") + ".xml".len();
        commands.push(words(&rest[..end]));
    }
    commands
}

fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '\'' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    words.push(word);
    words
}

#[test]
fn the_ci_snippets_run_and_keep_a_junit_report() {
    let commands = snippet_commands();
    assert_eq!(
        commands.len(),
        2,
        "one for GitHub Actions, one for GitLab: {commands:?}"
    );
    for command in commands {
        assert_eq!(command[..2], ["etrn-harness", "run"], "{command:?}");
        let report = command.last().expect("the report").clone();
        // The command line as written is accepted.
        let listed = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
            .args(&command[1..])
            .arg("--list")
            .output()
            .expect("runs");
        assert!(
            listed.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&listed.stderr)
        );
        // The built-in target in place of the client: the report is JUnit.
        let dir = tempfile::tempdir().expect("temp dir");
        let mut args: Vec<&str> = Vec::new();
        let mut rest = command[2..].iter();
        while let Some(a) = rest.next() {
            if a == "--exec" {
                rest.next();
            } else {
                args.push(a);
            }
        }
        let out = Command::new(env!("CARGO_BIN_EXE_etrn-harness"))
            .arg("run")
            .args(&args)
            .args(["--filter", "e26*"])
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let xml = std::fs::read_to_string(dir.path().join(&report)).expect("the report");
        assert!(
            xml.starts_with("<?xml") && xml.contains("<testsuites"),
            "{xml}"
        );
    }
}
