//! Known deviations of one implementation, like Autobahn|TestSuite's per-agent exclusions.
//!
//! ```toml
//! # fetchmail stops at the first reply other than 250/252/253.
//! [[known]]
//! scenario = "e24-*"          # a scenario id, or a glob over ids
//! reason = "fetchmail stops after 251 (etrn.c); RFC 1985 counts 251 as success"
//! ```
//!
//! A case whose id matches gets KNOWN instead of FAIL, NON-STRICT or INFORMATIONAL; a case that
//! passes stays PASS, so a fixed deviation shows up. An entry with `rule = "<rule or check id>"`
//! knows only the deviations that rule grades: the case is KNOWN when they are all it has, and
//! is judged on the rest otherwise (fetchmail delivers no outbound mail: `rule =
//! "outbound-mail"`). Entries that match no scenario, or only cases
//! that now pass, are [`StaleEntry`]s: the run warns about them, and a strict run fails.

use std::path::Path;

use globset::{Glob, GlobMatcher};
use serde::Deserialize;

use crate::scenario::ScenarioError;

use super::verdict::{CaseResult, Verdict};
use crate::scenario::diagnostic::ErrorKind;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KnownFile {
    #[serde(default)]
    known: Vec<KnownEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KnownEntry {
    scenario: String,
    reason: String,
    /// Only the deviations this rule (or protocol check) grades are known.
    rule: Option<String>,
}

/// One entry that matches a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownMatch<'a> {
    pub reason: &'a str,
    /// `None`: the whole case; otherwise the id of the rule whose deviations are known.
    pub rule: Option<&'a str>,
}

/// The parsed file.
#[derive(Debug, Clone, Default)]
pub struct KnownDeviations {
    /// Each entry's matcher, pattern as written, reason and rule.
    entries: Vec<(GlobMatcher, String, String, Option<String>)>,
}

/// A known-deviations entry that describes nothing any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaleEntry {
    /// Its pattern matches no scenario of the corpus: a typo, or a renamed scenario.
    MatchesNothing { pattern: String },
    /// It matches a case that now passes: the deviation is fixed, or the entry hides nothing.
    NowPasses { pattern: String, case: String },
}

impl std::fmt::Display for StaleEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StaleEntry::MatchesNothing { pattern } => write!(
                f,
                "known entry {pattern:?} matches no scenario; correct the id or remove the entry"
            ),
            StaleEntry::NowPasses { pattern, case } => write!(
                f,
                "known entry {pattern:?} matches {case}, which now passes; remove the entry"
            ),
        }
    }
}

/// The largest known-deviations file read.
const MAX_KNOWN_FILE: u64 = 4 * 1024 * 1024;

impl KnownDeviations {
    /// Reads a known-deviations file; errors are located like scenario errors.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        // A regular file only, read with a cap: a FIFO named by mistake must not block the run.
        let text = crate::files::read_regular_file(path, MAX_KNOWN_FILE)
            .map_err(|e| ScenarioError::unreadable(path, &std::io::Error::other(e.reason())))?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ScenarioError> {
        let file: KnownFile = toml::from_str(text).map_err(|e| {
            ScenarioError::at(
                ErrorKind::InvalidValue,
                path,
                text,
                e.span(),
                e.message().trim_end().to_owned(),
                Some(
                    "write [[known]] tables with scenario = \"id or glob\" and reason = \"...\""
                        .into(),
                ),
            )
        })?;
        let mut entries = Vec::new();
        for e in file.known {
            let glob = Glob::new(&e.scenario).map_err(|err| {
                let at = text.find(&e.scenario);
                ScenarioError::at(
                    ErrorKind::InvalidValue,
                    path,
                    text,
                    at.map(|s| s..s + e.scenario.len()),
                    format!("{:?} is not a valid glob: {err}", e.scenario),
                    Some("use a scenario id, or * and ? as wildcards".into()),
                )
            })?;
            entries.push((glob.compile_matcher(), e.scenario, e.reason, e.rule));
        }
        Ok(KnownDeviations { entries })
    }

    /// The reason this scenario's deviation is known, if a whole-case entry knows it.
    pub fn reason(&self, id: &str) -> Option<&str> {
        self.matching(id)
            .into_iter()
            .find(|k| k.rule.is_none())
            .map(|k| k.reason)
    }

    /// Every entry that matches this scenario, in file order.
    pub fn matching(&self, id: &str) -> Vec<KnownMatch<'_>> {
        self.entries
            .iter()
            .filter(|(m, _, _, _)| m.is_match(id))
            .map(|(_, _, reason, rule)| KnownMatch {
                reason,
                rule: rule.as_deref(),
            })
            .collect()
    }

    /// The entries that describe nothing: matching none of `corpus` (every scenario id loaded,
    /// before any filter), or matching a case of `results` that passed.
    pub fn stale(&self, corpus: &[&str], results: &[CaseResult]) -> Vec<StaleEntry> {
        let mut out = Vec::new();
        for (matcher, pattern, _, rule) in &self.entries {
            if !corpus.iter().any(|id| matcher.is_match(id)) {
                out.push(StaleEntry::MatchesNothing {
                    pattern: pattern.clone(),
                });
                continue;
            }
            // An entry for one rule over many scenarios is stale when no case it matches
            // deviates any more; a whole-case entry, for each case that passes.
            if rule.is_some() {
                let matched: Vec<&CaseResult> =
                    results.iter().filter(|r| matcher.is_match(&r.id)).collect();
                if let Some(first) = matched.first()
                    && matched.iter().all(|r| r.verdict == Verdict::Pass)
                {
                    out.push(StaleEntry::NowPasses {
                        pattern: pattern.clone(),
                        case: first.id.clone(),
                    });
                }
                continue;
            }
            for r in results {
                if r.verdict == Verdict::Pass && matcher.is_match(&r.id) {
                    out.push(StaleEntry::NowPasses {
                        pattern: pattern.clone(),
                        case: r.id.clone(),
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_globs_match() {
        let k = KnownDeviations::parse(
            Path::new("k.toml"),
            "[[known]]\nscenario = \"e25-*\"\nreason = \"stops at 458\"\n[[known]]\nscenario = \"e24-251-is-success\"\nreason = \"stops at 251\"\n",
        )
        .unwrap();
        assert_eq!(k.reason("e25-459-continue"), Some("stops at 458"));
        assert_eq!(k.reason("e24-251-is-success"), Some("stops at 251"));
        assert_eq!(k.reason("e26-500-stops-etrn"), None);
    }

    #[test]
    fn an_entry_may_know_one_rule_only() {
        let k = KnownDeviations::parse(
            Path::new("k.toml"),
            "[[known]]\nscenario = \"*\"\nrule = \"outbound-mail\"\nreason = \"no mail\"\n",
        )
        .unwrap();
        assert_eq!(k.reason("e03-x"), None);
        assert_eq!(
            k.matching("e03-x"),
            [KnownMatch {
                reason: "no mail",
                rule: Some("outbound-mail")
            }]
        );
    }

    #[test]
    fn a_typo_is_a_located_error() {
        let e = KnownDeviations::parse(
            Path::new("k.toml"),
            "[[known]]\nscenari = \"x\"\nreason = \"r\"\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (2, 1));
    }
}
