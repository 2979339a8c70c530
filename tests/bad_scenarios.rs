//! Each class of bad scenario file gets a located error with a fix; the rendered messages are
//! reviewed snapshots.

use std::path::{Path, PathBuf};

use etrn_harness::scenario::{self, ErrorKind, ScenarioError};
use miette::{GraphicalReportHandler, GraphicalTheme};

mod common;

fn errors_of(relative: &str) -> Vec<ScenarioError> {
    let text = std::fs::read_to_string(relative).expect("fixture exists");
    match scenario::parse_scenario(Path::new(relative), &text) {
        Ok(s) => panic!("{relative} parsed although it is invalid: {s:?}"),
        Err(e) => e,
    }
}

fn render(errors: &[ScenarioError]) -> String {
    let handler =
        GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor()).with_width(100);
    let mut out = String::new();
    for e in errors {
        out.push_str(&e.one_line());
        out.push_str("\n\n");
        handler
            .render_report(&mut out, e)
            .expect("render to a String");
        out.push('\n');
    }
    out
}

/// (fixture, class, line, column) for the first error of each file.
const CASES: &[(&str, ErrorKind, u32, u32)] = &[
    ("syntax-unclosed-array", ErrorKind::Syntax, 12, 23),
    ("unknown-key-typo", ErrorKind::UnknownKey, 12, 1),
    ("missing-site-address", ErrorKind::MissingKey, 6, 1),
    ("wrong-type-count", ErrorKind::WrongType, 8, 21),
    ("invalid-domain", ErrorKind::InvalidValue, 12, 15),
    (
        "registry-value-out-of-range",
        ErrorKind::InvalidValue,
        9,
        30,
    ),
    ("invalid-reply", ErrorKind::InvalidValue, 13, 34),
    ("unknown-routing-mode", ErrorKind::InvalidValue, 9, 11),
    (
        "contradiction-route-to-inbound",
        ErrorKind::Contradiction,
        9,
        17,
    ),
    (
        "contradiction-connections-and-tables",
        ErrorKind::Contradiction,
        14,
        15,
    ),
    (
        "contradiction-helo-only-with-keywords",
        ErrorKind::Contradiction,
        12,
        17,
    ),
    (
        "contradiction-expected-and-absent",
        ErrorKind::Contradiction,
        14,
        11,
    ),
    (
        "contradiction-turn-on-old-version",
        ErrorKind::Contradiction,
        10,
        30,
    ),
    ("invalid-id", ErrorKind::InvalidValue, 1, 6),
    ("site-address-without-at", ErrorKind::InvalidValue, 7, 16),
];

#[test]
fn each_class_of_error_is_located_and_classified() {
    let mut wrong = Vec::new();
    for (name, kind, line, column) in CASES {
        let errors = errors_of(&format!("tests/fixtures/bad/{name}.toml"));
        let e = &errors[0];
        if (e.kind, e.line, e.column) != (*kind, *line, *column) {
            wrong.push(format!(
                "{name}: got {:?} at {}:{}, expected {kind:?} at {line}:{column} ({})",
                e.kind, e.line, e.column, e.message
            ));
        }
        if e.help.is_none() || e.value.is_none() {
            wrong.push(format!("{name}: fix {:?}, value {:?}", e.help, e.value));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_fixture_is_in_the_table() {
    let mut names: Vec<String> = std::fs::read_dir("tests/fixtures/bad")
        .expect("fixture folder")
        .map(|e| {
            e.expect("entry")
                .path()
                .file_stem()
                .expect("stem")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    let mut listed: Vec<String> = CASES.iter().map(|c| c.0.to_string()).collect();
    listed.sort();
    assert_eq!(names, listed);
}

#[test]
fn rendered_errors_match_their_reviewed_snapshots() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    common::snapshot_settings().bind(|| {
        insta::glob!("fixtures/bad", "*.toml", |path| {
            let relative = path.strip_prefix(root).expect("inside the crate");
            let errors = errors_of(&relative.to_string_lossy());
            insta::assert_snapshot!(render(&errors));
        });
    });
}

#[test]
fn duplicate_ids_across_files_are_reported_with_both_files() {
    let corpus = scenario::load_corpus(&[PathBuf::from("tests/fixtures/dup")]);
    assert_eq!(corpus.scenarios.len(), 1);
    assert_eq!(corpus.errors.len(), 1);
    let e = &corpus.errors[0];
    assert_eq!(e.kind, ErrorKind::DuplicateId);
    assert!(e.file.ends_with("b.toml"), "{}", e.file);
    assert!(e.message.contains("a.toml"), "{}", e.message);
    assert_eq!((e.line, e.column), (1, 6));
}

#[test]
fn an_unreadable_path_is_an_error_not_a_panic() {
    let corpus = scenario::load_corpus(&[PathBuf::from("tests/fixtures/no-such-folder")]);
    assert_eq!(corpus.errors.len(), 1);
    assert_eq!(corpus.errors[0].kind, ErrorKind::Unreadable);
}

#[test]
fn an_error_past_column_65535_renders_without_an_excerpt_instead_of_panicking() {
    let text = format!("id = \"x\"\ntitle = \"{}\" oops\n", "a".repeat(70_000));
    let errors = match scenario::parse_scenario(Path::new("long.toml"), &text) {
        Ok(s) => panic!("parsed: {s:?}"),
        Err(e) => e,
    };
    let rendered = render(&errors);
    assert!(rendered.contains("long.toml:2:70012"), "{rendered}");
    assert_eq!((errors[0].line, errors[0].column), (2, 70012));
}
