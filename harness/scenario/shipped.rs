//! The shipped corpus, built into the binary (`harness/build.rs`), and the choice between it and
//! scenario files on disk.
//!
//! `etrn-harness run` (like `check` and `expect`) runs the shipped corpus when no argument is
//! given, so it works from any folder, installed or not. A built-in file is named
//! `builtin:<topic>/<id>.toml` (`builtin:replies/e26-500-stops-etrn.toml`) wherever the tool shows
//! it, so a report never points at a `scenarios/` folder that is not there; the same name is
//! accepted back as an argument ([`super::select`]).

use std::path::{Path, PathBuf};

use super::load::{Corpus, discover, load_texts};

include!(concat!(env!("OUT_DIR"), "/shipped.rs"));

/// What names a built-in scenario file rather than one on disk.
pub const BUILTIN_PREFIX: &str = "builtin:";

/// One file of the shipped corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ShippedFile {
    /// The path under `scenarios/`: `replies/e26-500-stops-etrn.toml`.
    pub name: &'static str,
    /// The file as shipped.
    pub text: &'static str,
}

impl ShippedFile {
    /// The name the tool shows and takes: `builtin:replies/e26-500-stops-etrn.toml`.
    pub fn label(&self) -> PathBuf {
        PathBuf::from(format!("{BUILTIN_PREFIX}{}", self.name))
    }

    /// The topic folder: `replies`.
    pub fn topic(&self) -> &'static str {
        self.name.split_once('/').map_or("", |(topic, _)| topic)
    }
}

/// Every shipped file, in path order.
pub fn shipped_files() -> impl Iterator<Item = ShippedFile> {
    SHIPPED.iter().map(|(path, text)| ShippedFile {
        name: path.strip_prefix("scenarios/").unwrap_or(path),
        text,
    })
}

/// Which scenarios a command works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorpusSource {
    /// The whole corpus built into this binary.
    Shipped,
    /// What the command line named: files and folders on disk, and built-in files.
    Given {
        /// The arguments as given, for the line saying which corpus ran.
        args: Vec<String>,
        disk: Vec<PathBuf>,
        builtin: Vec<ShippedFile>,
    },
}

impl CorpusSource {
    /// The paths given, or the shipped corpus when there are none. Every path is read from disk;
    /// [`super::select::resolve`] also takes ids and `builtin:` names.
    pub fn from_paths(paths: &[PathBuf]) -> Self {
        if paths.is_empty() {
            CorpusSource::Shipped
        } else {
            CorpusSource::Given {
                args: paths.iter().map(|p| p.display().to_string()).collect(),
                disk: paths.to_vec(),
                builtin: Vec::new(),
            }
        }
    }

    /// Reads and parses the scenarios: the files on disk first (sorted, as found), then the
    /// built-in ones in corpus order. Ids must be unique across both.
    pub fn load(&self) -> Corpus {
        let builtin = |files: Vec<ShippedFile>| {
            files
                .into_iter()
                .map(|f| (f.label(), Ok(f.text.to_owned())))
                .collect::<Vec<_>>()
        };
        match self {
            CorpusSource::Shipped => load_texts(builtin(shipped_files().collect())),
            CorpusSource::Given {
                disk, builtin: b, ..
            } => {
                let files = if disk.is_empty() {
                    Vec::new()
                } else {
                    match discover(disk) {
                        Ok(f) => f,
                        Err(e) => {
                            return Corpus {
                                scenarios: Vec::new(),
                                errors: vec![e],
                            };
                        }
                    }
                };
                let on_disk = files.into_iter().map(|file| {
                    let text = super::load::read_scenario(&file);
                    (file, text)
                });
                load_texts(on_disk.chain(builtin(b.clone())))
            }
        }
    }

    /// Whether any scenario comes from the binary, so a command says which corpus it used.
    pub fn uses_builtin(&self) -> bool {
        match self {
            CorpusSource::Shipped => true,
            CorpusSource::Given { builtin, .. } => !builtin.is_empty(),
        }
    }

    /// Says which corpus this is, for a line on stderr.
    pub fn describe(&self, scenarios: usize) -> String {
        let count = match scenarios {
            1 => "1 scenario".to_owned(),
            n => format!("{n} scenarios"),
        };
        match self {
            CorpusSource::Shipped => format!(
                "corpus: the shipped one, built into etrn-harness {} ({count}); give a PATH to use others",
                env!("CARGO_PKG_VERSION")
            ),
            CorpusSource::Given { args, .. } => {
                format!("corpus: {} ({count})", args.join(", "))
            }
        }
    }
}

/// The text of a built-in scenario, by the name the tool gives it
/// (`builtin:replies/e26-500-stops-etrn.toml`).
pub fn shipped_text(path: &Path) -> Option<&'static str> {
    let name = path.to_str()?.strip_prefix(BUILTIN_PREFIX)?;
    shipped_files().find(|f| f.name == name).map(|f| f.text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::load_corpus;

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
        assert!(
            first.to_string_lossy().starts_with("builtin:"),
            "{}",
            first.display()
        );
        assert!(shipped_text(first).is_some());
        // A path on disk is never taken for a built-in one.
        assert!(shipped_text(Path::new("scenarios/replies/e26-500-stops-etrn.toml")).is_none());
    }
}
