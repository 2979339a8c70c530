//! Reading scenario files: strict parsing, validation, and errors that point into the file.
//!
//! Parsing happens in three passes, each of which can only fail in its own way:
//! 1. TOML syntax (a spanned parse of the document, kept for locating later errors);
//! 2. the format (serde with `deny_unknown_fields`; domains, replies and registry values are
//!    validated as they are read, so their errors carry the value's span);
//! 3. consistency across keys ([`validate`]), whose problems name a key path that is then located
//!    in the spanned document from pass 1.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::{CONTRADICTION_SEPARATOR, HELP_SEPARATOR};

use super::diagnostic::{ErrorKind, ScenarioError};
use super::file::Scenario;

/// A problem found by [`validate`]: a key path, what is wrong, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ErrorKind,
    pub path: Vec<String>,
    pub message: String,
    pub fix: String,
}

/// Parses and validates one scenario from text. `file` is only used in messages.
pub fn parse_scenario(file: &Path, text: &str) -> Result<Scenario, Vec<ScenarioError>> {
    let document = DeTable::parse(text).map_err(|e| {
        vec![ScenarioError::at(
            ErrorKind::Syntax,
            file,
            text,
            e.span(),
            format!("not valid TOML: {}", e.message().trim_end()),
            Some(
                "fix the TOML syntax; strings need double quotes, tables [name], arrays [a, b]"
                    .into(),
            ),
        )]
    })?;
    let mut scenario: Scenario =
        toml::from_str(text).map_err(|e| vec![format_error(file, text, &e)])?;
    // A cassette path is relative to the scenario file.
    if let Some(c) = &scenario.smarthost.cassette
        && c.is_relative()
        && let Some(dir) = file.parent()
    {
        scenario.smarthost.cassette = Some(dir.join(c));
    }
    let problems = validate(&scenario);
    if problems.is_empty() {
        return Ok(scenario);
    }
    Err(problems
        .into_iter()
        .map(|p| {
            let span = locate(&document, &p.path);
            ScenarioError::at(
                p.kind,
                file,
                text,
                span,
                format!("{}: {}", key_path(&p.path), p.message),
                Some(p.fix),
            )
        })
        .collect())
}

/// Reads and parses one file.
pub fn load_scenario(path: &Path) -> Result<Scenario, Vec<ScenarioError>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| vec![ScenarioError::unreadable(path, &e)])?;
    parse_scenario(path, &text)
}

/// Turns a serde/TOML error into a located error with a fix.
fn format_error(file: &Path, text: &str, e: &toml::de::Error) -> ScenarioError {
    let raw = e.message().trim_end();
    let (message, help, kind) = if let Some((msg, fix)) = raw.split_once(CONTRADICTION_SEPARATOR) {
        (msg.to_owned(), fix.to_owned(), ErrorKind::Contradiction)
    } else if let Some((msg, fix)) = raw.split_once(HELP_SEPARATOR) {
        (msg.to_owned(), fix.to_owned(), ErrorKind::InvalidValue)
    } else if raw.starts_with("unknown field") {
        (
            raw.to_owned(),
            "remove the key or correct its spelling; `etrn-harness schema` lists every key"
                .to_owned(),
            ErrorKind::UnknownKey,
        )
    } else if raw.starts_with("missing field") {
        (
            raw.to_owned(),
            "add the key; `etrn-harness schema` says what it holds".to_owned(),
            ErrorKind::MissingKey,
        )
    } else if raw.starts_with("unknown variant") {
        (
            raw.to_owned(),
            "use one of the values listed".to_owned(),
            ErrorKind::InvalidValue,
        )
    } else if raw.starts_with("invalid type") || raw.starts_with("invalid value") {
        // serde names Rust types; a scenario author thinks in TOML types.
        let readable = ["u32", "u64", "i64", "u16", "u8"]
            .iter()
            .fold(raw.to_owned(), |m, t| {
                m.replace(&format!("expected {t}"), "expected a whole number")
            });
        (
            readable,
            "write a value of the expected type; `etrn-harness schema` gives each key's type"
                .to_owned(),
            ErrorKind::WrongType,
        )
    } else {
        (
            raw.to_owned(),
            "see `etrn-harness schema` for the format".to_owned(),
            ErrorKind::InvalidValue,
        )
    };
    ScenarioError::at(kind, file, text, e.span(), message, Some(help))
}

/// Checks what the format alone cannot: identifiers, and settings that contradict each other.
pub fn validate(s: &Scenario) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut problem = |kind, path: Vec<String>, message: String, fix: &str| {
        out.push(Problem {
            kind,
            path,
            message,
            fix: fix.to_owned(),
        })
    };
    let p = |parts: &[&str]| parts.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    if s.id.is_empty()
        || !s
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        || s.id.starts_with('-')
    {
        problem(
            ErrorKind::InvalidValue,
            p(&["id"]),
            format!("{:?} is not a valid scenario id", s.id),
            "use lower-case letters, digits and hyphens, e.g. \"e03-no-reroute-site-domain\"",
        );
    }
    if s.title.trim().is_empty() {
        problem(
            ErrorKind::InvalidValue,
            p(&["title"]),
            "the title is empty".into(),
            "say in one line what the case checks",
        );
    }
    if s.basis.is_empty() {
        problem(
            ErrorKind::InvalidValue,
            p(&["basis"]),
            "no basis is given".into(),
            "cite the source, e.g. basis = [\"KB269771\"] or [\"RFC 1985 §5.2\"]",
        );
    }
    for (i, b) in s.basis.iter().enumerate() {
        if b.trim().is_empty() || b.trim() != b {
            problem(
                ErrorKind::InvalidValue,
                vec!["basis".into(), i.to_string()],
                format!("basis entry {b:?} is empty or has surrounding spaces"),
                "write the reference alone, e.g. \"KB175494\"",
            );
        }
    }
    for (i, c) in s.covers.iter().enumerate() {
        if !is_row_id(c) {
            problem(
                ErrorKind::InvalidValue,
                vec!["covers".into(), i.to_string()],
                format!("{c:?} is not a row of the spec (scenarios/README.md)"),
                "use an edge case E01..E44, a decision row T1..T16 or an open question O-1..O-24",
            );
        }
    }
    for cp in s.ims.problems() {
        let mut path = vec!["ims".to_string()];
        path.extend(cp.path);
        problem(ErrorKind::Contradiction, path, cp.message, &cp.fix);
    }
    for sp in s.smarthost.problems() {
        let mut path = vec!["smarthost".to_string()];
        path.extend(sp.path);
        problem(ErrorKind::Contradiction, path, sp.message, &sp.fix);
    }

    let e = &s.expect;
    let mut first: HashMap<_, usize> = HashMap::new();
    for (i, x) in e.etrn.iter().enumerate() {
        if let Some(j) = first.insert(&x.arg, i) {
            problem(
                ErrorKind::Contradiction,
                vec!["expect".into(), "etrn".into(), i.to_string()],
                format!("{:?} is listed twice (also expect.etrn[{j}])", x.arg.raw()),
                "list each expected ETRN argument once",
            );
        }
    }
    for (i, x) in e.absent.iter().enumerate() {
        if first.contains_key(&x.arg) {
            problem(
                ErrorKind::Contradiction,
                vec!["expect".into(), "absent".into(), i.to_string()],
                format!("{:?} is both expected and forbidden", x.arg.raw()),
                "remove it from expect.absent or from expect.etrn",
            );
        }
    }
    for (c, conn) in e.connection.iter().enumerate() {
        let mut seen: HashMap<_, usize> = HashMap::new();
        for (i, x) in conn.etrn.iter().enumerate() {
            let at = || {
                [
                    "expect",
                    "connection",
                    &c.to_string(),
                    "etrn",
                    &i.to_string(),
                ]
                .map(String::from)
                .to_vec()
            };
            if let Some(j) = seen.insert(&x.arg, i) {
                problem(
                    ErrorKind::Contradiction,
                    at(),
                    format!("{:?} is listed twice (also etrn[{j}])", x.arg.raw()),
                    "list each expected ETRN argument once per connection",
                );
            }
            if e.absent.iter().any(|a| a.arg == x.arg) {
                problem(
                    ErrorKind::Contradiction,
                    at(),
                    format!("{:?} is both expected and forbidden", x.arg.raw()),
                    "remove it from expect.absent or from this connection's etrn",
                );
            }
        }
    }
    if !e.connection.is_empty() && !e.etrn.is_empty() {
        problem(
            ErrorKind::Contradiction,
            p(&["expect", "etrn"]),
            "expect.etrn and [[expect.connection]] both say what each connection sends".into(),
            "move the list into each [[expect.connection]] table, or remove the tables",
        );
    }
    if let Some(n) = e.connections
        && !e.connection.is_empty()
        && n as usize != e.connection.len()
    {
        problem(
            ErrorKind::Contradiction,
            p(&["expect", "connections"]),
            format!(
                "connections = {n}, but {} [[expect.connection]] table(s) are given",
                e.connection.len()
            ),
            "write one [[expect.connection]] table per connection, or correct connections",
        );
    }
    if e.connections_grade.is_some() && e.expected_connections().is_none() {
        problem(
            ErrorKind::Contradiction,
            p(&["expect", "connections_grade"]),
            "connections_grade is given but the connection count is not judged".into(),
            "add connections = N, or remove connections_grade",
        );
    }
    if e.turn && e.all_etrn().next().is_some() {
        problem(
            ErrorKind::Contradiction,
            p(&["expect", "turn"]),
            "TURN replaces ETRN (KB257979), but ETRN is expected too".into(),
            "set etrn = [] or turn = false",
        );
    }
    if e.turn_grade.is_some() && !e.turn {
        problem(
            ErrorKind::Contradiction,
            p(&["expect", "turn_grade"]),
            "turn_grade is given but turn is not expected".into(),
            "remove turn_grade, or set turn = true",
        );
    }
    if e.connections == Some(0) && e.all_etrn().next().is_some() {
        problem(
            ErrorKind::Contradiction,
            p(&["expect", "connections"]),
            "no connection is expected, yet ETRN is".into(),
            "set etrn = [] or a connection count of 1 or more",
        );
    }
    if e.order.is_some() && e.etrn.len() < 2 && e.connection.iter().all(|c| c.etrn.len() < 2) {
        problem(
            ErrorKind::Contradiction,
            p(&["expect", "order"]),
            "order is graded but fewer than two ETRNs are expected".into(),
            "remove order",
        );
    }
    out
}

/// `["expect", "absent", "0"]` -> `expect.absent[0]`.
pub fn key_path(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        if segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

fn is_row_id(c: &str) -> bool {
    let num = |s: &str, max: u32| s.parse::<u32>().is_ok_and(|n| (1..=max).contains(&n));
    if let Some(n) = c.strip_prefix('E') {
        n.len() == 2 && num(n, 44)
    } else if let Some(n) = c.strip_prefix("O-") {
        num(n, 24)
    } else if let Some(n) = c.strip_prefix('T') {
        num(n, 16)
    } else {
        false
    }
}

/// Finds the span of a key path (`["ims", "routing_table", "2", "route_to"]`) in the document.
/// When the full path is not there (a default was used), the deepest part that is gives the span.
pub fn locate(document: &Spanned<DeTable<'_>>, path: &[String]) -> Option<Range<usize>> {
    let mut best: Option<Range<usize>> = None;
    let mut table: Option<&DeTable<'_>> = Some(document.get_ref());
    let mut value: Option<&Spanned<DeValue<'_>>> = None;
    for segment in path {
        let next = match (table, value.map(|v| v.get_ref())) {
            (Some(t), _) => t
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == segment.as_str())
                .map(|(_, v)| v),
            (None, Some(DeValue::Array(a))) => segment.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        let Some(next) = next else { break };
        best = Some(next.span());
        value = Some(next);
        table = match next.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    best
}

/// Every `*.toml` file under the given files and folders, sorted, without duplicates.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ScenarioError> {
    let mut out = Vec::new();
    let mut visited = HashSet::new();
    for p in paths {
        walk(p, &mut out, &mut visited)?;
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Collects the `.toml` files under `path`. Each folder is read once, however many symbolic links
/// lead to it (two links to `.` would otherwise make the walk exponential); a `.toml` name that is
/// no regular file (a FIFO would block the read) is an error, not a hang.
fn walk(
    path: &Path,
    out: &mut Vec<PathBuf>,
    visited: &mut HashSet<PathBuf>,
) -> Result<(), ScenarioError> {
    let meta = std::fs::metadata(path).map_err(|e| ScenarioError::unreadable(path, &e))?;
    if meta.is_file() {
        out.push(path.to_owned());
        return Ok(());
    }
    if !meta.is_dir() {
        return Err(not_a_regular_file(path));
    }
    let real = std::fs::canonicalize(path).map_err(|e| ScenarioError::unreadable(path, &e))?;
    if !visited.insert(real) {
        return Ok(());
    }
    let entries = std::fs::read_dir(path).map_err(|e| ScenarioError::unreadable(path, &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ScenarioError::unreadable(path, &e))?;
        let p = entry.path();
        let is_toml = p.extension().is_some_and(|x| x == "toml");
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => walk(&p, out, visited)?,
            Ok(m) if is_toml && m.is_file() => out.push(p),
            Ok(_) if is_toml => return Err(not_a_regular_file(&p)),
            Ok(_) => {}
            // A dangling link named *.toml is a scenario that cannot be read: say so.
            Err(e) if is_toml => return Err(ScenarioError::unreadable(&p, &e)),
            Err(_) => {}
        }
    }
    Ok(())
}

fn not_a_regular_file(path: &Path) -> ScenarioError {
    ScenarioError::unreadable(
        path,
        &std::io::Error::other("not a regular file or folder (a FIFO, socket or device)"),
    )
}

/// A set of scenario files, loaded: the valid ones and every error.
#[derive(Debug, Default)]
pub struct Corpus {
    pub scenarios: Vec<(PathBuf, Scenario)>,
    pub errors: Vec<ScenarioError>,
}

/// Loads every scenario under `paths` and checks that ids are unique across files.
pub fn load_corpus(paths: &[PathBuf]) -> Corpus {
    let files = match discover(paths) {
        Ok(f) => f,
        Err(e) => {
            return Corpus {
                scenarios: Vec::new(),
                errors: vec![e],
            };
        }
    };
    load_texts(files.into_iter().map(|file| {
        let text = std::fs::read_to_string(&file);
        (file, text)
    }))
}

/// Parses scenario texts (read from files, or built into the binary) into a corpus, checking
/// that ids are unique across them.
pub fn load_texts(texts: impl IntoIterator<Item = (PathBuf, std::io::Result<String>)>) -> Corpus {
    let mut corpus = Corpus::default();
    let mut ids: HashMap<String, PathBuf> = HashMap::new();
    for (file, text) in texts {
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                corpus.errors.push(ScenarioError::unreadable(&file, &e));
                continue;
            }
        };
        match parse_scenario(&file, &text) {
            Ok(s) => {
                if let Some(other) = ids.get(&s.id) {
                    let span = DeTable::parse(&text)
                        .ok()
                        .and_then(|d| locate(&d, &["id".into()]));
                    corpus.errors.push(ScenarioError::at(
                        ErrorKind::DuplicateId,
                        &file,
                        &text,
                        span,
                        format!("id {:?} is already used by {}", s.id, other.display()),
                        Some("give every scenario its own id".into()),
                    ));
                    continue;
                }
                ids.insert(s.id.clone(), file.clone());
                corpus.scenarios.push((file, s));
            }
            Err(errs) => corpus.errors.extend(errs),
        }
    }
    corpus
}
