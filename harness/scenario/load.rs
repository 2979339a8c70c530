//! Reading scenario files: strict parsing, validation, and errors that point into the file.
//!
//! Parsing happens in three passes, each of which can only fail in its own way:
//! 1. TOML syntax (a spanned parse of the document, kept for locating later errors);
//! 2. the format (serde with `deny_unknown_fields`; domains, replies and registry values are
//!    validated as they are read, so their errors carry the value's span);
//! 3. consistency across keys ([`validate`]), whose problems name a key path that is then located
//!    in the spanned document from pass 1.
//!
//! A value refused in pass 2 raises a typed [`Rejection`] (message, fix, kind), which
//! [`rejection::catch`] hands back next to serde's error, so nothing is parsed out of error text
//! except serde's own wording (unknown field, missing field, wrong type).

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::rejection::{self, Rejection, RejectionKind};

use super::diagnostic::{ErrorKind, ScenarioError};
use super::file::Scenario;
use super::validate::validate;

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
    let (parsed, rejection) = rejection::catch(|| toml::from_str::<Scenario>(text));
    let mut scenario = parsed.map_err(|e| vec![format_error(file, text, &e, rejection)])?;
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
                p.kind.error_kind(),
                file,
                text,
                span,
                format!("{}: {}", key_path(&p.path), p.message),
                Some(p.fix),
            )
        })
        .collect())
}

/// The largest scenario file read; the shipped ones are a few hundred octets.
const MAX_SCENARIO_FILE: u64 = 1024 * 1024;

/// A scenario file's text: a regular file only (a FIFO named on the command line must not block
/// the read), at most [`MAX_SCENARIO_FILE`] octets.
pub(crate) fn read_scenario(path: &Path) -> std::io::Result<String> {
    crate::files::read_regular_file(path, MAX_SCENARIO_FILE)
        .map_err(|e| std::io::Error::other(e.reason()))
}

/// Reads and parses one file.
pub fn load_scenario(path: &Path) -> Result<Scenario, Vec<ScenarioError>> {
    let text = read_scenario(path).map_err(|e| vec![ScenarioError::unreadable(path, &e)])?;
    parse_scenario(path, &text)
}

/// Turns a serde/TOML error into a located error with a fix. A value's own refusal comes back
/// typed from [`rejection::catch`]; it is used when it is the error serde reports (its text is the
/// error's), else the error is one of serde's own and is explained by [`serde_complaint`].
fn format_error(
    file: &Path,
    text: &str,
    e: &toml::de::Error,
    rejection: Option<Rejection>,
) -> ScenarioError {
    let raw = e.message().trim_end();
    let (kind, message, help) = match rejection.filter(|r| r.to_string().trim_end() == raw) {
        Some(r) => (rejected_kind(r.kind), r.message, r.fix),
        None => serde_complaint(raw),
    };
    ScenarioError::at(kind, file, text, e.span(), message, Some(help))
}

fn rejected_kind(kind: RejectionKind) -> ErrorKind {
    match kind {
        RejectionKind::Invalid => ErrorKind::InvalidValue,
        RejectionKind::Contradiction => ErrorKind::Contradiction,
    }
}

/// Class, message and fix for an error serde wrote itself, recognised by its wording.
fn serde_complaint(raw: &str) -> (ErrorKind, String, String) {
    let (kind, fix) = if raw.starts_with("unknown field") {
        (
            ErrorKind::UnknownKey,
            "remove the key or correct its spelling; `etrn-harness schema` lists every key",
        )
    } else if raw.starts_with("missing field") {
        (
            ErrorKind::MissingKey,
            "add the key; `etrn-harness schema` says what it holds",
        )
    } else if raw.starts_with("unknown variant") {
        (ErrorKind::InvalidValue, "use one of the values listed")
    } else if raw.starts_with("invalid type") || raw.starts_with("invalid value") {
        return (
            ErrorKind::WrongType,
            in_toml_types(raw),
            "write a value of the expected type; `etrn-harness schema` gives each key's type"
                .to_owned(),
        );
    } else {
        (
            ErrorKind::InvalidValue,
            "see `etrn-harness schema` for the format",
        )
    };
    (kind, raw.to_owned(), fix.to_owned())
}

/// serde names Rust types; a scenario author thinks in TOML types.
fn in_toml_types(raw: &str) -> String {
    ["u32", "u64", "i64", "u16", "u8"]
        .iter()
        .fold(raw.to_owned(), |m, t| {
            m.replace(&format!("expected {t}"), "expected a whole number")
        })
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
        let text = read_scenario(&file);
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

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "id = \"x\"\ntitle = \"t\"\nbasis = [\"KB269771\"]\ngrade = \"must\"\n\
                        [ims]\nsite_address = \"@site.org.com\"\noutbound_messages = 1\n";

    fn first_error(rest: &str) -> ScenarioError {
        let text = format!("{HEAD}{rest}");
        match parse_scenario(Path::new("t.toml"), &text) {
            Ok(s) => panic!("parsed: {s:?}"),
            Err(mut e) => e.remove(0),
        }
    }

    #[test]
    fn a_refused_value_keeps_its_kind_message_and_fix_apart() {
        let e = first_error("[smarthost]\netrn_default = { delay_ms = 5 }\n[expect]\netrn = []\n");
        assert_eq!(e.kind, ErrorKind::Contradiction);
        assert_eq!(e.message, "an answer with neither a reply nor close = true");
        assert_eq!(
            e.help.as_deref(),
            Some("add reply = \"250 OK\", or close = true to hang up without a reply")
        );
        let e = first_error("[expect]\netrn = [\"a b.com\"]\n");
        assert_eq!(e.kind, ErrorKind::InvalidValue);
        assert!(!e.message.contains("help"), "{}", e.message);
        assert_eq!(
            e.help.as_deref(),
            Some("write one domain per ETRN argument")
        );
    }

    #[test]
    fn serde_s_own_errors_are_classed_by_their_wording() {
        assert_eq!(
            first_error("[expect]\netrn = []\nturm = true\n").kind,
            ErrorKind::UnknownKey
        );
        let e = first_error("[expect]\netrn = []\nconnections = \"2\"\n");
        assert_eq!(e.kind, ErrorKind::WrongType);
        assert!(
            e.message.contains("expected a whole number"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_validation_problem_is_located_at_its_key() {
        let e = first_error("[expect]\netrn = []\nturn_grade = \"should\"\n");
        assert_eq!(e.kind, ErrorKind::Contradiction);
        assert!(
            e.message.starts_with("expect.turn_grade: "),
            "{}",
            e.message
        );
        assert_eq!((e.line, e.column), (10, 14));
    }
}
