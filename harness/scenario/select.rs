//! Which scenarios a command-line argument names: a file or folder on disk, a built-in scenario by
//! its id, or a built-in file or folder by its `builtin:` name.
//!
//! An argument is resolved in this order, so that what a user sees is what runs:
//! 1. `builtin:` followed by a file or folder of the shipped corpus (`builtin:replies/e26-500-stops-etrn.toml`,
//!    `builtin:replies`, `builtin:` for all): those built-in files. Reports name built-in
//!    scenarios this way, so a name copied from a report works as an argument.
//! 2. A path that exists on disk: that file or folder (a file of yours always wins over an id).
//! 3. Anything that looks like a path (it holds a `/`, ends in `.toml` or starts with `.`): that
//!    path, which then fails to read with the usual error.
//! 4. Otherwise an id of the shipped corpus: the scenario with exactly that id, else every
//!    scenario whose id starts with it and a hyphen (`e26` is `e26-500-stops-etrn`; `e40` names
//!    both `e40-...` scenarios).
//!
//! An id no built-in scenario has is an error with the closest ids as suggestions.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobMatcher};

use super::load::parse_scenario;
use super::shipped::{BUILTIN_PREFIX, CorpusSource, ShippedFile, shipped_files};

/// An argument that names no scenario, or a selection of none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    #[error(
        "no file or folder {arg:?} here, and no built-in scenario has the id {arg:?}{}",
        did_you_mean(suggestions)
    )]
    UnknownId {
        arg: String,
        suggestions: Vec<String>,
    },
    #[error(
        "{arg:?} is no file or folder of the built-in corpus; its folders are {}",
        topics.join(", ")
    )]
    UnknownBuiltin { arg: String, topics: Vec<String> },
    #[error("{arg:?} names {} built-in scenarios ({}); give one full id", ids.len(), ids.join(", "))]
    Ambiguous { arg: String, ids: Vec<String> },
    #[error(
        "--filter is empty: give a glob or a word of the ids to keep (e.g. --filter e26), or leave --filter out to keep every scenario"
    )]
    EmptyFilter,
    #[error("--filter {pattern:?} is not a valid glob: {reason}")]
    BadFilter { pattern: String, reason: String },
    #[error(
        "--filter {pattern:?} selects no scenario of {of} (`etrn-harness scenarios list` shows the built-in ids)"
    )]
    NothingMatches { pattern: String, of: usize },
    #[error("no scenario files found in the given paths")]
    NoScenarios,
}

fn did_you_mean(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        "; `etrn-harness scenarios list` shows them".to_owned()
    } else {
        format!("; did you mean {}?", suggestions.join(", "))
    }
}

/// Every built-in scenario's id with its file, parsed once per call (the corpus is small).
fn shipped_ids() -> Vec<(String, ShippedFile)> {
    shipped_files()
        .filter_map(|f| parse_scenario(&f.label(), f.text).ok().map(|s| (s.id, f)))
        .collect()
}

/// Whether an argument that is no `builtin:` name is read from disk first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disk {
    /// A path that exists, or looks like one, is a path (the command-line rule).
    First,
    /// Only the built-in corpus is looked at (`scenarios show`).
    Ignored,
}

/// The built-in files one argument names, or `None` when it names a path on disk.
fn builtin_named(arg: &str, disk: Disk) -> Result<Option<Vec<ShippedFile>>, SelectError> {
    if let Some(rest) = arg.strip_prefix(BUILTIN_PREFIX) {
        let rest = rest.trim_end_matches('/');
        let files: Vec<ShippedFile> = shipped_files()
            .filter(|f| {
                rest.is_empty()
                    || f.name == rest
                    || f.name
                        .strip_prefix(rest)
                        .is_some_and(|r| r.starts_with('/'))
            })
            .collect();
        if files.is_empty() {
            let mut topics: Vec<String> = shipped_files()
                .map(|f| format!("{BUILTIN_PREFIX}{}", f.topic()))
                .collect();
            topics.dedup();
            return Err(SelectError::UnknownBuiltin {
                arg: arg.to_owned(),
                topics,
            });
        }
        return Ok(Some(files));
    }
    let path = Path::new(arg);
    let looks_like_a_path = arg.contains(['/', std::path::MAIN_SEPARATOR])
        || arg.ends_with(".toml")
        || arg.starts_with('.');
    if disk == Disk::First && (looks_like_a_path || path.symlink_metadata().is_ok()) {
        return Ok(None);
    }
    let ids = shipped_ids();
    if let Some((_, f)) = ids.iter().find(|(id, _)| id == arg) {
        return Ok(Some(vec![*f]));
    }
    let prefix = format!("{arg}-");
    let by_prefix: Vec<ShippedFile> = ids
        .iter()
        .filter(|(id, _)| id.starts_with(&prefix))
        .map(|(_, f)| *f)
        .collect();
    if !by_prefix.is_empty() {
        return Ok(Some(by_prefix));
    }
    Err(SelectError::UnknownId {
        arg: arg.to_owned(),
        suggestions: closest(arg, ids.iter().map(|(id, _)| id.as_str())),
    })
}

/// Up to five ids that contain the argument, or are a few edits from it (or from its first
/// hyphen-separated word, so `e62` suggests `e26-...`).
fn closest<'a>(arg: &str, ids: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = ids
        .filter_map(|id| {
            let head = id.split('-').next().unwrap_or(id);
            let distance = if id.contains(arg) {
                0
            } else {
                strsim::osa_distance(arg, id).min(strsim::osa_distance(arg, head))
            };
            (distance <= 2).then_some((distance, id))
        })
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(5)
        .map(|(_, id)| id.to_owned())
        .collect()
}

/// Resolves command-line arguments (see the module's documentation); none is the whole shipped
/// corpus.
pub fn resolve(args: &[PathBuf]) -> Result<CorpusSource, SelectError> {
    if args.is_empty() {
        return Ok(CorpusSource::Shipped);
    }
    let mut disk = Vec::new();
    let mut builtin: Vec<ShippedFile> = Vec::new();
    for arg in args {
        match builtin_named(&arg.to_string_lossy(), Disk::First)? {
            Some(files) => {
                for f in files {
                    if !builtin.contains(&f) {
                        builtin.push(f);
                    }
                }
            }
            None => disk.push(arg.clone()),
        }
    }
    // Corpus order, whatever order the arguments came in.
    builtin.sort();
    Ok(CorpusSource::Given {
        args: args.iter().map(|a| a.display().to_string()).collect(),
        disk,
        builtin,
    })
}

/// One scenario, for options that take exactly one (`serve --scenario`, `scenarios show`): a
/// file on disk, or the one built-in file an id or `builtin:` name stands for, as (name, text
/// when built in).
pub fn resolve_one(arg: &Path) -> Result<Single, SelectError> {
    let shown = arg.to_string_lossy();
    match builtin_named(&shown, Disk::First)? {
        None => Ok(Single::Disk(arg.to_owned())),
        Some(files) => only_one(&shown, files).map(Single::Builtin),
    }
}

/// The one built-in scenario an id or `builtin:` name stands for, whatever is on disk.
pub fn builtin_one(arg: &str) -> Result<ShippedFile, SelectError> {
    // With disk ignored, an argument names built-in files or is an error: never "on disk".
    let files = builtin_named(arg, Disk::Ignored)?.unwrap_or_default();
    only_one(arg, files)
}

fn only_one(arg: &str, files: Vec<ShippedFile>) -> Result<ShippedFile, SelectError> {
    match files.as_slice() {
        [one] => Ok(*one),
        [] => Err(SelectError::UnknownId {
            arg: arg.to_owned(),
            suggestions: Vec::new(),
        }),
        many => Err(SelectError::Ambiguous {
            arg: arg.to_owned(),
            ids: shipped_ids()
                .into_iter()
                .filter(|(_, f)| many.contains(f))
                .map(|(id, _)| id)
                .collect(),
        }),
    }
}

/// What [`resolve_one`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Single {
    Disk(PathBuf),
    Builtin(ShippedFile),
}

impl Single {
    /// Reads and parses it.
    pub fn load(&self) -> Result<super::Scenario, Vec<super::ScenarioError>> {
        match self {
            Single::Disk(path) => super::load_scenario(path),
            Single::Builtin(f) => parse_scenario(&f.label(), f.text),
        }
    }
}

/// The matcher of `--filter`: a glob over ids; a plain word matches ids containing it.
pub fn id_filter(pattern: &str) -> Result<GlobMatcher, SelectError> {
    // `*{}*` would keep everything: an empty value is a mistake (an unset shell variable), not a
    // request for every scenario.
    if pattern.trim().is_empty() {
        return Err(SelectError::EmptyFilter);
    }
    let glob = if pattern.contains(['*', '?', '[']) {
        pattern.to_owned()
    } else {
        format!("*{pattern}*")
    };
    Glob::new(&glob)
        .map(|g| g.compile_matcher())
        .map_err(|e| SelectError::BadFilter {
            pattern: pattern.to_owned(),
            reason: e.kind().to_string(),
        })
}

/// Keeps the scenarios whose id `--filter` matches; a filter or a set of arguments that leaves
/// nothing is an error, never an empty success (a CI job with a mistyped filter must not pass).
pub fn select<T>(
    items: Vec<T>,
    id: impl Fn(&T) -> &str,
    filter: Option<&str>,
) -> Result<Vec<T>, SelectError> {
    let of = items.len();
    let kept = match filter {
        Some(pattern) => {
            let matcher = id_filter(pattern)?;
            let kept: Vec<T> = items
                .into_iter()
                .filter(|x| matcher.is_match(id(x)))
                .collect();
            if kept.is_empty() && of > 0 {
                return Err(SelectError::NothingMatches {
                    pattern: pattern.to_owned(),
                    of,
                });
            }
            kept
        }
        None => items,
    };
    if kept.is_empty() {
        return Err(SelectError::NoScenarios);
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin_ids(source: &CorpusSource) -> Vec<String> {
        source
            .load()
            .scenarios
            .into_iter()
            .map(|(_, s)| s.id)
            .collect()
    }

    #[test]
    fn a_full_id_a_short_id_and_a_builtin_name_resolve_to_built_in_files() {
        let full = resolve(&["e26-500-stops-etrn".into()]).unwrap();
        assert_eq!(builtin_ids(&full), ["e26-500-stops-etrn"]);
        let short = resolve(&["e26".into()]).unwrap();
        assert_eq!(full.load().scenarios[0].0, short.load().scenarios[0].0);
        let both = resolve(&["e40".into()]).unwrap();
        assert_eq!(builtin_ids(&both).len(), 2);
        let named = resolve(&["builtin:replies/e26-500-stops-etrn.toml".into()]).unwrap();
        assert_eq!(builtin_ids(&named), ["e26-500-stops-etrn"]);
        let folder = resolve(&["builtin:replies/".into()]).unwrap();
        assert!(builtin_ids(&folder).len() > 10);
        assert_eq!(
            builtin_ids(&resolve(&["builtin:".into()]).unwrap()).len(),
            shipped_files().count()
        );
    }

    #[test]
    fn an_empty_filter_is_refused_not_taken_for_everything() {
        for empty in ["", " "] {
            let err = select(vec!["e26"], |s| s, Some(empty)).unwrap_err();
            assert!(matches!(err, SelectError::EmptyFilter), "{err}");
        }
        assert_eq!(
            select(vec!["e26", "e40"], |s| s, Some("e2")).unwrap(),
            ["e26"]
        );
    }

    #[test]
    fn an_unknown_id_suggests_close_ones() {
        let err = resolve(&["e26-500-stop-etrn".into()]).unwrap_err();
        let SelectError::UnknownId { suggestions, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(suggestions, &["e26-500-stops-etrn"], "{err}");
        let SelectError::UnknownId { suggestions, .. } = resolve(&["e62".into()]).unwrap_err()
        else {
            panic!("not an unknown id");
        };
        assert!(
            suggestions.iter().any(|s| s.starts_with("e26-")),
            "{suggestions:?}"
        );
        let SelectError::UnknownId { suggestions, .. } =
            resolve(&["no-such-thing-at-all".into()]).unwrap_err()
        else {
            panic!("not an unknown id");
        };
        assert!(suggestions.is_empty(), "{suggestions:?}");
        assert!(err.to_string().contains("did you mean"), "{err}");
        assert!(matches!(
            resolve(&["builtin:nowhere".into()]),
            Err(SelectError::UnknownBuiltin { .. })
        ));
    }

    #[test]
    fn what_looks_like_a_path_stays_a_path() {
        let CorpusSource::Given { disk, builtin, .. } =
            resolve(&["missing/e26.toml".into()]).unwrap()
        else {
            panic!("not given");
        };
        assert_eq!(disk, [PathBuf::from("missing/e26.toml")]);
        assert!(builtin.is_empty());
    }

    #[test]
    fn one_scenario_must_be_one() {
        assert!(matches!(
            resolve_one(Path::new("e40")),
            Err(SelectError::Ambiguous { ids, .. }) if ids.len() == 2
        ));
        let one = resolve_one(Path::new("e26")).unwrap();
        assert_eq!(one.load().unwrap().id, "e26-500-stops-etrn");
    }

    #[test]
    fn an_empty_selection_is_an_error() {
        let ids = vec!["a-1", "b-2"];
        assert_eq!(select(ids.clone(), |s| s, Some("b")).unwrap(), ["b-2"]);
        assert!(matches!(
            select(ids, |s| s, Some("zzz")),
            Err(SelectError::NothingMatches { of: 2, .. })
        ));
        assert_eq!(
            select(Vec::<&str>::new(), |s| s, None),
            Err(SelectError::NoScenarios)
        );
    }
}
