//! The shipped corpus, built into the binary (`harness/build.rs`), and the choice between it and
//! scenario files on disk.
//!
//! `etrn-harness run` (like `check` and `expect`) runs the shipped corpus when no path is given,
//! so it works from any folder, installed or not; a path given on the command line always wins.

use std::path::{Path, PathBuf};

use super::load::{Corpus, load_corpus, load_texts};

include!(concat!(env!("OUT_DIR"), "/shipped.rs"));

/// Which scenarios a command works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorpusSource {
    /// The corpus built into this binary.
    Shipped,
    /// Scenario files and folders on disk.
    Paths(Vec<PathBuf>),
}

impl CorpusSource {
    /// The paths given, or the shipped corpus when there are none.
    pub fn from_paths(paths: &[PathBuf]) -> Self {
        if paths.is_empty() {
            CorpusSource::Shipped
        } else {
            CorpusSource::Paths(paths.to_vec())
        }
    }

    pub fn load(&self) -> Corpus {
        match self {
            CorpusSource::Shipped => load_texts(
                SHIPPED
                    .iter()
                    .map(|(path, text)| (PathBuf::from(path), Ok((*text).to_owned()))),
            ),
            CorpusSource::Paths(paths) => load_corpus(paths),
        }
    }

    /// Says which corpus this is, for a line on stderr.
    pub fn describe(&self, scenarios: usize) -> String {
        match self {
            CorpusSource::Shipped => format!(
                "corpus: the shipped one, built into etrn-harness {} ({scenarios} scenarios); give a PATH to use others",
                env!("CARGO_PKG_VERSION")
            ),
            CorpusSource::Paths(paths) => {
                let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                format!("corpus: {} ({scenarios} scenarios)", shown.join(", "))
            }
        }
    }
}

/// The text of a shipped scenario, by its path (`scenarios/replies/e26-500-stops-etrn.toml`).
pub fn shipped_text(path: &Path) -> Option<&'static str> {
    SHIPPED
        .iter()
        .find(|(p, _)| Path::new(p) == path)
        .map(|(_, text)| *text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_corpus_is_the_scenarios_folder() {
        let shipped = CorpusSource::Shipped.load();
        let on_disk = load_corpus(&[PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scenarios"
        ))]);
        assert!(shipped.errors.is_empty());
        let ids = |c: &Corpus| {
            c.scenarios
                .iter()
                .map(|(_, s)| s.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&shipped), ids(&on_disk));
        assert!(shipped.scenarios.len() > 40);
        let (first, _) = &shipped.scenarios[0];
        assert!(first.starts_with("scenarios"), "{}", first.display());
        assert!(shipped_text(first).is_some());
    }
}
