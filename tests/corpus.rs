//! The shipped corpus against the reference model: the files and the model cannot drift apart.

use std::collections::BTreeSet;
use std::path::PathBuf;

use etrn_harness::scenario::{self, Corpus, explain};

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
    let missing: Vec<String> = (1..=44)
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

/// Every text file of the project, for the citation checks (build output and caches left out).
fn project_text_files() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = [
        "harness",
        "scenarios",
        "tests",
        "snapshots",
        "README.md",
        "Cargo.toml",
        ".ci",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "__pycache__") {
                continue;
            }
            for e in std::fs::read_dir(&p).expect("list").flatten() {
                stack.push(e.path());
            }
        } else if let Ok(text) = std::fs::read_to_string(&p) {
            out.push((p, text));
        }
    }
    out
}

#[test]
fn every_citation_points_into_the_repository() {
    let spec = std::fs::read_to_string("scenarios/README.md").expect("the spec");
    // Row ids and sources are the first cell of a table row.
    let rows: BTreeSet<String> = spec
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(" |").next())
        .map(str::to_owned)
        .collect();
    let row = regex_lite_row();
    let mut problems = Vec::new();
    // Documents this repository does not contain (names built here so this file passes too).
    let outside = [
        ["ims-etrn", ".md"].concat(),
        ["peers", ".md"].concat(),
        ["shared/", "reference"].concat(),
    ];
    for (path, text) in project_text_files() {
        if path == std::path::Path::new("scenarios/README.md") {
            continue;
        }
        for o in &outside {
            if text.contains(o.as_str()) {
                problems.push(format!(
                    "{}: cites {o}, which is not in the repository",
                    path.display()
                ));
            }
        }
        for (i, _) in text.match_indices("spec ") {
            for id in row(&text[i + 5..]) {
                if !rows.contains(&id) {
                    problems.push(format!(
                        "{}: spec {id} is not a row of scenarios/README.md",
                        path.display()
                    ));
                }
            }
        }
        for (i, _) in text.match_indices("KB") {
            let digits: String = text[i + 2..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if digits.len() == 6 && !rows.contains(&format!("KB{digits}")) {
                problems.push(format!(
                    "{}: KB{digits} is not among the spec's sources",
                    path.display()
                ));
            }
        }
    }
    for (path, s) in corpus().scenarios {
        for c in s.covers {
            if !rows.contains(&c) {
                problems.push(format!(
                    "{}: covers {c}, not a row of the spec",
                    path.display()
                ));
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Whether one basis names a source of the spec: a KB article of its sources, `spec` rows, an
/// RFC (section) of its protocol texts, or erratum 4130.
fn basis_is_in_the_spec(piece: &str, rows: &BTreeSet<String>, spec: &str) -> bool {
    let row = regex_lite_row();
    if let Some(ids) = piece.strip_prefix("spec ") {
        let ids = row(ids);
        return !ids.is_empty() && ids.iter().all(|id| rows.contains(id));
    }
    if let Some(rfc) = piece.strip_prefix("RFC ") {
        let number: String = rfc.chars().take_while(char::is_ascii_digit).collect();
        return !number.is_empty() && spec.contains(&format!("RFC {number} ("));
    }
    if piece == "erratum 4130" {
        return spec.contains("erratum 4130");
    }
    piece.len() == 8 && piece.starts_with("KB") && rows.contains(piece)
}

#[test]
fn every_basis_is_a_row_or_a_source_of_the_spec() {
    let spec = std::fs::read_to_string("scenarios/README.md").expect("the spec");
    let rows: BTreeSet<String> = spec
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(" |").next())
        .map(str::to_owned)
        .collect();
    let mut problems = Vec::new();
    let mut check = |whose: String, basis: &str| {
        for piece in basis.split([';', ',']).map(str::trim) {
            // `spec O-2, O-9` continues a spec citation after the comma.
            let continues = regex_lite_row()(piece)
                .first()
                .is_some_and(|id| id == piece);
            if !continues && !basis_is_in_the_spec(piece, &rows, &spec) {
                problems.push(format!(
                    "{whose}: basis {piece:?} is no row, KB article or RFC of the spec"
                ));
            }
        }
    };
    for (path, s) in corpus().scenarios {
        for b in &s.basis {
            check(path.display().to_string(), b);
        }
    }
    for rule in etrn_harness::ims::Rule::ALL {
        check(format!("rule {}", rule.id()), rule.basis());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // A basis outside the spec is refused.
    assert!(!basis_is_in_the_spec("DOC-xcp04012", &rows, &spec));
    assert!(!basis_is_in_the_spec(
        &["KB", "999999"].concat(),
        &rows,
        &spec
    ));
    assert!(!basis_is_in_the_spec(
        &["spec ", "O-99"].concat(),
        &rows,
        &spec
    ));
}

/// The row ids a `spec ...` citation names: `O-2, O-9`, `B4`, `E37`, `S-1`.
fn regex_lite_row() -> impl Fn(&str) -> Vec<String> {
    |after: &str| {
        let mut ids = Vec::new();
        let mut rest = after;
        loop {
            let id: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            let looks_like_row = id.len() >= 2
                && id.starts_with(|c: char| "TEOBSC".contains(c))
                && id.chars().last().is_some_and(|c| c.is_ascii_digit());
            if !looks_like_row {
                return ids;
            }
            rest = &rest[id.len()..];
            ids.push(id);
            match rest.strip_prefix(", ") {
                Some(r) => rest = r,
                None => return ids,
            }
        }
    }
}
