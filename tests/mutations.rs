//! The mutation suite: every file in `tests/fixtures/wrong/` is a plausible implementation of the
//! IMS client with exactly one mistake (a subclass of the smtplib adapter overriding one rule). Each
//! is run through `--exec` against the whole corpus, and must be caught:
//!
//! - its worst verdict is the one the grade of the rule it breaks gives (its header says which:
//!   `rule: <rule or protocol-check id>` and `verdict: FAIL | NON-STRICT | INFORMATIONAL`), that
//!   and at least two scenarios catch it at that verdict with that rule named as a cause (a
//!   mistake one scenario alone catches is a gap in the corpus);
//! - every deviation at a case's verdict names the rule behind it, and every deviation that
//!   names a rule has that rule's grade;
//! - the exact verdict of every scenario matches its reviewed snapshot
//!   (`snapshots/mutation@<name>.snap`).
//!
//! One test per fixture (`cargo test --test mutations -- adds_at`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use etrn_harness::conformance::{
    self, Case, CaseResult, KnownDeviations, RunOptions, Target, Verdict, ViolationKind,
};
use etrn_harness::ims::{Grade, Rule};
use etrn_harness::scenario;
use libtest_mimic::{Arguments, Failed, Trial};

mod common;

const FIXTURES: &str = "tests/fixtures/wrong";

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let mut files: Vec<PathBuf> = std::fs::read_dir(FIXTURES)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "py"));
    files.sort();
    let mut trials = vec![Trial::test("the_suite_has_at_least_25_mutations", {
        let n = files.len();
        move || {
            if n >= 25 {
                Ok(())
            } else {
                Err(format!("only {n} mutations in {FIXTURES}").into())
            }
        }
    })];
    for file in files {
        let name = file
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        trials.push(Trial::test(name.clone(), move || mutation(&name, &file)));
    }
    libtest_mimic::run(&args, trials).exit_code()
}

/// What a fixture's header declares.
struct Declared {
    rule: String,
    verdict: Verdict,
}

fn declared(file: &Path) -> Result<Declared, Failed> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
            .ok_or_else(|| format!("{}: no `{key}` line in the docstring", file.display()))
    };
    let rule = field("rule:")?;
    let verdict = match field("verdict:")?.as_str() {
        "FAIL" => Verdict::Fail,
        "NON-STRICT" => Verdict::NonStrict,
        "INFORMATIONAL" => Verdict::Informational,
        other => return Err(format!("{}: unknown verdict {other:?}", file.display()).into()),
    };
    Ok(Declared { rule, verdict })
}

/// The grade of a model rule or a protocol check, by id.
fn grade_of(id: &str) -> Option<Grade> {
    Rule::ALL
        .iter()
        .find(|r| r.id() == id)
        .map(|r| r.grade())
        .or_else(|| {
            ViolationKind::ALL
                .iter()
                .find(|k| k.id() == id)
                .map(|k| k.grade())
        })
}

fn verdict_for(grade: Grade) -> Verdict {
    match grade {
        Grade::Must => Verdict::Fail,
        Grade::Should => Verdict::NonStrict,
        Grade::Informational => Verdict::Informational,
    }
}

/// The causes a case names: rule ids of its deviations, ids of its protocol violations.
fn causes(r: &CaseResult) -> Vec<String> {
    let mut out: Vec<String> = r
        .deviations
        .iter()
        .filter_map(|d| d.rule.map(|r| r.id().to_owned()))
        .chain(r.violations.iter().map(|v| v.kind.id().to_owned()))
        .collect();
    out.sort();
    out.dedup();
    out
}

fn mutation(name: &str, file: &Path) -> Result<(), Failed> {
    let declared = declared(file)?;
    let grade = grade_of(&declared.rule)
        .ok_or_else(|| format!("`rule: {}` names no rule or protocol check", declared.rule))?;
    if verdict_for(grade) != declared.verdict {
        return Err(format!(
            "the header says {} but rule {} is graded {grade}",
            declared.verdict, declared.rule
        )
        .into());
    }
    if !common::peer_available("python3", &["--version"]) {
        return Ok(());
    }
    let corpus = scenario::load_corpus(&[PathBuf::from("scenarios")]);
    if !corpus.errors.is_empty() {
        return Err("the corpus does not load".into());
    }
    let cases: Vec<Case> = corpus
        .scenarios
        .into_iter()
        .map(|(file, scenario)| Case { file, scenario })
        .collect();
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("runtime: {e}"))?;
    let options = RunOptions {
        target: Target::Exec {
            command: format!("python3 {}", file.display()),
        },
        jobs: 4,
        timeout: Duration::from_secs(10),
    };
    let results = runtime
        .block_on(conformance::run_all(
            cases,
            options,
            KnownDeviations::default(),
            |_, _, _| {},
        ))
        .map_err(|e| e.to_string())?;

    let not_passed: BTreeMap<&str, &CaseResult> = results
        .iter()
        .filter(|r| r.verdict != Verdict::Pass)
        .map(|r| (r.id.as_str(), r))
        .collect();
    let details = || {
        not_passed
            .values()
            .map(|r| conformance::report::case_details(r))
            .collect::<Vec<_>>()
            .join("\n")
    };
    if let Some(r) = not_passed.values().find(|r| r.verdict == Verdict::Error) {
        return Err(format!("{name}: ERROR in {}:\n{}", r.id, details()).into());
    }
    let worst = not_passed.values().map(|r| r.verdict).max();
    if worst != Some(declared.verdict) {
        return Err(format!(
            "{name}: worst verdict {worst:?}, its rule {} gives {}:\n{}",
            declared.rule,
            declared.verdict,
            details()
        )
        .into());
    }
    // Caught "by at least two scenarios at its grade": each of them at the declared verdict,
    // with the declared rule among its causes.
    let catching: Vec<&str> = not_passed
        .values()
        .filter(|r| r.verdict == declared.verdict && causes(r).contains(&declared.rule))
        .map(|r| r.id.as_str())
        .collect();
    if catching.len() < 2 {
        return Err(format!(
            "{name}: only {catching:?} catch it at {} with rule {} as a cause; add a scenario \
             that catches this mistake too:\n{}",
            declared.verdict,
            declared.rule,
            details()
        )
        .into());
    }
    // Each verdict says which rule it broke: every deviation at the case's grade names one.
    let unnamed: Vec<String> = not_passed
        .values()
        .flat_map(|r| {
            let grade = match r.verdict {
                Verdict::Fail => Some(Grade::Must),
                Verdict::NonStrict => Some(Grade::Should),
                Verdict::Informational => Some(Grade::Informational),
                _ => None,
            };
            r.deviations
                .iter()
                .filter(move |d| Some(d.grade) == grade && d.rule.is_none())
                .map(move |d| format!("{}: {d}", r.id))
        })
        .collect();
    if !unnamed.is_empty() {
        return Err(format!(
            "{name}: deviations that name no rule set a verdict:\n{}",
            unnamed.join("\n")
        )
        .into());
    }
    // A named rule is the one that set the grade (README, "A named rule is always the one that
    // set the grade"): no deviation names a rule at another grade than that rule's.
    let misnamed: Vec<String> = not_passed
        .values()
        .flat_map(|r| {
            r.deviations
                .iter()
                .filter(|d| d.rule.is_some_and(|rule| rule.grade() != d.grade))
                .map(move |d| format!("{}: {d}", r.id))
        })
        .collect();
    if !misnamed.is_empty() {
        return Err(format!(
            "{name}: deviations graded otherwise than the rule they name:\n{}",
            misnamed.join("\n")
        )
        .into());
    }
    let text: String = not_passed
        .values()
        .map(|r| format!("{}: {} [{}]\n", r.id, r.verdict, causes(r).join(", ")))
        .collect();
    let mut settings = common::snapshot_settings();
    settings.set_snapshot_suffix(name);
    settings.set_description(format!(
        "rule: {}, verdict: {}",
        declared.rule, declared.verdict
    ));
    settings.bind(|| insta::assert_snapshot!("mutation", text));
    Ok(())
}
