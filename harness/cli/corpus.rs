//! `etrn-harness check` and `etrn-harness expect`: the corpus on its own, without a server.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use etrn_harness::scenario::{self, explain};

use super::{EXIT_DISAGREES, EXIT_INVALID, report_errors};

/// The scenarios the arguments and `--filter` select, loaded; `Err` is the exit status after the
/// error was shown. Files that do not parse have no id: they stay in `errors` whatever the filter.
fn selected(paths: &[PathBuf], filter: Option<&str>) -> Result<scenario::Corpus, ExitCode> {
    let source = scenario::resolve(paths).map_err(|e| super::selection_error(&e))?;
    let mut corpus = source.load();
    if source == scenario::CorpusSource::Shipped {
        eprintln!("{}", source.describe(corpus.scenarios.len()));
    }
    if corpus.errors.is_empty() || filter.is_some() {
        let all = std::mem::take(&mut corpus.scenarios);
        match scenario::select(all, |(_, s)| &s.id, filter) {
            Ok(kept) => corpus.scenarios = kept,
            Err(e) if corpus.errors.is_empty() => return Err(super::selection_error(&e)),
            Err(_) => {}
        }
    }
    Ok(corpus)
}

pub fn check(paths: &[PathBuf], filter: Option<&str>, short: bool) -> ExitCode {
    let corpus = match selected(paths, filter) {
        Ok(c) => c,
        Err(code) => return code,
    };
    report_errors(&corpus.errors, short);
    let files: HashSet<&str> = corpus.errors.iter().map(|e| e.file.as_str()).collect();
    if corpus.errors.is_empty() {
        say!("{} scenario file(s) valid", corpus.scenarios.len());
        ExitCode::SUCCESS
    } else {
        say!(
            "{} scenario file(s) valid, {} invalid ({} error(s))",
            corpus.scenarios.len(),
            files.len(),
            corpus.errors.len()
        );
        ExitCode::from(EXIT_INVALID)
    }
}

pub fn expect(paths: &[PathBuf], filter: Option<&str>, brief: bool) -> ExitCode {
    let corpus = match selected(paths, filter) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !corpus.errors.is_empty() {
        report_errors(&corpus.errors, !std::io::stderr().is_terminal());
        return ExitCode::from(EXIT_INVALID);
    }
    let mut disagreements = 0;
    for (path, s) in &corpus.scenarios {
        let prediction = match scenario::predict(s) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return ExitCode::from(EXIT_INVALID);
            }
        };
        let deviations = scenario::judge(s, &prediction.observed());
        tracing::debug!(scenario = %s.id, deviations = deviations.len(), "judged");
        if !deviations.is_empty() {
            disagreements += 1;
        }
        if brief {
            let lists: Vec<String> = prediction
                .etrn_per_connection()
                .iter()
                .map(|c| format!("[{}]", c.join(", ")))
                .collect();
            // One list when every connection sends the same, else one per connection.
            let sent = match lists.first() {
                None => "[]".to_owned(),
                Some(first) if lists.iter().all(|l| l == first) => first.clone(),
                Some(_) => lists.join(" "),
            };
            let verdict = if deviations.is_empty() {
                "agrees"
            } else {
                "DISAGREES"
            };
            say!(
                "{:<48} {:<9} connections={} etrn={sent}",
                s.id,
                verdict,
                prediction.runs.len(),
            );
        } else {
            if corpus.scenarios.len() > 1 {
                say!("==> {}", path.display());
            }
            say_raw!("{}", explain(s, &prediction, &deviations));
            if corpus.scenarios.len() > 1 {
                say!();
            }
        }
    }
    if corpus.scenarios.len() > 1 || brief {
        say!(
            "{} scenario(s): model agrees with {}, disagrees with {}",
            corpus.scenarios.len(),
            corpus.scenarios.len() - disagreements,
            disagreements
        );
    }
    if disagreements == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DISAGREES)
    }
}
