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
//! passes stays PASS, so a fixed deviation shows up.

use std::path::Path;

use globset::{Glob, GlobMatcher};
use serde::Deserialize;

use crate::scenario::ScenarioError;
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
}

/// The parsed file.
#[derive(Debug, Default)]
pub struct KnownDeviations {
    entries: Vec<(GlobMatcher, String)>,
}

impl KnownDeviations {
    /// Reads a known-deviations file; errors are located like scenario errors.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ScenarioError::unreadable(path, &e))?;
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
            entries.push((glob.compile_matcher(), e.reason));
        }
        Ok(KnownDeviations { entries })
    }

    /// The reason this scenario's deviation is known, if it is.
    pub fn reason(&self, id: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(m, _)| m.is_match(id))
            .map(|(_, r)| r.as_str())
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
    fn a_typo_is_a_located_error() {
        let e = KnownDeviations::parse(
            Path::new("k.toml"),
            "[[known]]\nscenari = \"x\"\nreason = \"r\"\n",
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (2, 1));
    }
}
