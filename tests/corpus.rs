//! The shipped corpus against the reference model: the files and the model cannot drift apart.

use std::collections::BTreeSet;
use std::path::PathBuf;

use etrn_harness::scenario::{self, Corpus, explain::explain};

mod common;

fn corpus() -> Corpus {
    scenario::load_corpus(&[PathBuf::from("scenarios")])
}

#[test]
fn every_shipped_scenario_is_valid_and_there_are_at_least_45() {
    let c = corpus();
    let errors: Vec<String> = c.errors.iter().map(|e| e.one_line()).collect();
    assert!(
        errors.is_empty(),
        "invalid scenarios:\n{}",
        errors.join("\n")
    );
    assert!(
        c.scenarios.len() >= 45,
        "only {} scenarios",
        c.scenarios.len()
    );
}

#[test]
fn the_model_agrees_with_every_scenarios_expectations() {
    let mut disagreements = Vec::new();
    for (path, s) in corpus().scenarios {
        let prediction = scenario::predict(&s).expect("shipped profiles load");
        let deviations = scenario::judge(&s, &prediction.observed());
        for d in deviations {
            disagreements.push(format!("{}: {} {}", path.display(), d.grade, d.difference));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn every_expressible_edge_case_of_ims_etrn_md_is_covered() {
    let covered: BTreeSet<String> = corpus()
        .scenarios
        .into_iter()
        .flat_map(|(_, s)| s.covers)
        .collect();
    // E38 needs a domain longer than DNS allows (a >507-octet node to pass 512 octets per line), which
    // the Domain type rejects; tests/bad_scenarios.rs shows that error instead.
    let missing: Vec<String> = (1..=42)
        .filter(|n| *n != 38)
        .map(|n| format!("E{n:02}"))
        .filter(|e| !covered.contains(e))
        .collect();
    assert!(
        missing.is_empty(),
        "edge cases without a scenario: {missing:?}"
    );
}

#[test]
fn every_rfc1985_reply_code_and_421_is_exercised() {
    let mut codes = BTreeSet::new();
    for (_, s) in corpus().scenarios {
        let prediction = scenario::predict(&s).expect("shipped profiles load");
        for run in &prediction.runs {
            codes.extend(
                run.exchanges
                    .iter()
                    .filter_map(|x| x.reply.map(|c| c.get())),
            );
        }
    }
    for code in [250, 251, 252, 253, 458, 459, 500, 501, 421, 502] {
        assert!(
            codes.contains(&code),
            "no scenario answers an ETRN with {code}"
        );
    }
}

#[test]
fn plan_of_every_scenario_matches_its_reviewed_snapshot() {
    common::snapshot_settings().bind(|| {
        insta::glob!("../scenarios", "**/*.toml", |path| {
            let s = scenario::load_scenario(path).expect("valid scenario");
            let prediction = scenario::predict(&s).expect("shipped profiles load");
            let deviations = scenario::judge(&s, &prediction.observed());
            insta::assert_snapshot!(explain(&s, &prediction, &deviations));
        });
    });
}
