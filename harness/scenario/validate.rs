//! What the format alone cannot check: identifiers, and settings that contradict each other.
//!
//! Each rule is a small function named for what it requires, returning the [`Problem`]s it finds;
//! [`validate`] runs them in a fixed order, which is the order the diagnostics are shown in. A
//! problem names its rule ([`ProblemKind`]) so tests and tools can match on the rule rather than on
//! the message, and a key path that the loader locates in the file.

use std::collections::HashMap;

use crate::domain::EtrnArg;

use super::diagnostic::ErrorKind;
use super::expect::ExpectedEtrn;
use super::file::Scenario;

/// The rule a [`Problem`] breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// `id` is not lower-case letters, digits and hyphens (or starts with a hyphen, or is empty).
    InvalidId,
    /// `title` is empty or blank.
    EmptyTitle,
    /// `basis` cites nothing.
    NoBasis,
    /// A `basis` entry is blank or has surrounding spaces.
    BadBasisEntry,
    /// A `covers` entry is not a row of the spec (E01..E44, T1..T16, O-1..O-24).
    UnknownSpecRow,
    /// `[ims]` settings contradict each other ([`crate::ims::ImsConfig::problems`]).
    ImsContradiction,
    /// `[smarthost]` settings contradict each other or name something that does not exist
    /// ([`crate::proto::SmartHostScript::problems`]).
    SmartHostContradiction,
    /// An ETRN argument is expected twice in one list.
    DuplicateEtrn,
    /// An ETRN argument is both expected and listed in `expect.absent`.
    ExpectedAndAbsent,
    /// `expect.etrn` and `[[expect.connection]]` tables are both given.
    EtrnAndConnectionTables,
    /// `expect.connections` differs from the number of `[[expect.connection]]` tables.
    ConnectionCountMismatch,
    /// `expect.connections_grade` without a connection count to grade.
    ConnectionsGradeWithoutCount,
    /// `expect.turn` together with expected ETRNs (TURN replaces ETRN, KB257979).
    TurnAndEtrn,
    /// `expect.turn_grade` without `turn = true`.
    TurnGradeWithoutTurn,
    /// `expect.connections = 0` together with expected ETRNs.
    EtrnWithoutConnection,
    /// `expect.order` with fewer than two ETRNs in every list.
    OrderWithoutTwoEtrns,
}

impl ProblemKind {
    /// The class of diagnostic the problem is shown as: a value wrong on its own, or settings
    /// that contradict each other.
    pub fn error_kind(self) -> ErrorKind {
        match self {
            ProblemKind::InvalidId
            | ProblemKind::EmptyTitle
            | ProblemKind::NoBasis
            | ProblemKind::BadBasisEntry
            | ProblemKind::UnknownSpecRow => ErrorKind::InvalidValue,
            _ => ErrorKind::Contradiction,
        }
    }
}

/// A problem found by [`validate`]: the rule broken, the key path, what is wrong, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    /// Key path from the document root, as `["expect", "absent", "0"]`.
    pub path: Vec<String>,
    pub message: String,
    pub fix: String,
}

impl Problem {
    fn new(
        kind: ProblemKind,
        path: Vec<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Problem {
            kind,
            path,
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// One rule: every problem of its kind in a scenario.
type Rule = fn(&Scenario) -> Vec<Problem>;

/// The rules, in the order their problems are reported.
const RULES: &[Rule] = &[
    id_is_valid,
    title_is_given,
    basis_is_given,
    basis_entries_are_trimmed,
    covers_names_spec_rows,
    ims_is_consistent,
    smarthost_is_consistent,
    etrn_listed_once,
    expected_is_not_absent,
    connection_lists_are_consistent,
    etrn_or_connection_tables,
    connection_count_matches_tables,
    connections_grade_needs_a_count,
    turn_excludes_etrn,
    turn_grade_needs_turn,
    no_connection_no_etrn,
    order_needs_two_etrns,
];

/// Checks what the format alone cannot: identifiers, and settings that contradict each other.
pub fn validate(s: &Scenario) -> Vec<Problem> {
    RULES.iter().flat_map(|rule| rule(s)).collect()
}

fn path(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// `[name, index]`, as `["basis", "2"]`.
fn indexed(name: &str, index: usize) -> Vec<String> {
    vec![name.to_owned(), index.to_string()]
}

/// A check that holds or fails once per scenario, as a list of at most one problem.
fn unless(
    holds: bool,
    kind: ProblemKind,
    at: &[&str],
    message: impl Into<String>,
    fix: &str,
) -> Vec<Problem> {
    if holds {
        Vec::new()
    } else {
        vec![Problem::new(kind, path(at), message, fix)]
    }
}

fn id_is_valid(s: &Scenario) -> Vec<Problem> {
    let valid = !s.id.is_empty()
        && s.id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.id.starts_with('-');
    unless(
        valid,
        ProblemKind::InvalidId,
        &["id"],
        format!("{:?} is not a valid scenario id", s.id),
        "use lower-case letters, digits and hyphens, e.g. \"e03-no-reroute-site-domain\"",
    )
}

fn title_is_given(s: &Scenario) -> Vec<Problem> {
    unless(
        !s.title.trim().is_empty(),
        ProblemKind::EmptyTitle,
        &["title"],
        "the title is empty",
        "say in one line what the case checks",
    )
}

fn basis_is_given(s: &Scenario) -> Vec<Problem> {
    unless(
        !s.basis.is_empty(),
        ProblemKind::NoBasis,
        &["basis"],
        "no basis is given",
        "cite the source, e.g. basis = [\"KB269771\"] or [\"RFC 1985 §5.2\"]",
    )
}

fn basis_entries_are_trimmed(s: &Scenario) -> Vec<Problem> {
    let bad = |b: &String| b.trim().is_empty() || b.trim() != b;
    (s.basis.iter().enumerate())
        .filter(|(_, b)| bad(b))
        .map(|(i, b)| {
            Problem::new(
                ProblemKind::BadBasisEntry,
                indexed("basis", i),
                format!("basis entry {b:?} is empty or has surrounding spaces"),
                "write the reference alone, e.g. \"KB175494\"",
            )
        })
        .collect()
}

fn covers_names_spec_rows(s: &Scenario) -> Vec<Problem> {
    (s.covers.iter().enumerate())
        .filter(|(_, c)| !is_row_id(c))
        .map(|(i, c)| {
            Problem::new(
                ProblemKind::UnknownSpecRow,
                indexed("covers", i),
                format!("{c:?} is not a row of the spec (scenarios/README.md)"),
                "use an edge case E01..E44, a decision row T1..T16 or an open question O-1..O-24",
            )
        })
        .collect()
}

/// `E01`..`E44` (two digits), `T1`..`T16`, `O-1`..`O-24`: the rows of `scenarios/README.md`.
fn is_row_id(c: &str) -> bool {
    let num = |s: &str, max: u32| s.parse::<u32>().is_ok_and(|n| (1..=max).contains(&n));
    if let Some(n) = c.strip_prefix('E') {
        n.len() == 2 && num(n, 44)
    } else if let Some(n) = c.strip_prefix("O-") {
        num(n, 24)
    } else if let Some(n) = c.strip_prefix('T') {
        num(n, 16)
    } else {
        false
    }
}

/// The model's own consistency check, its paths put under `ims`.
fn ims_is_consistent(s: &Scenario) -> Vec<Problem> {
    (s.ims.problems().into_iter())
        .map(|p| {
            let at = std::iter::once("ims".to_owned()).chain(p.path).collect();
            Problem::new(ProblemKind::ImsContradiction, at, p.message, p.fix)
        })
        .collect()
}

/// The script's own consistency check, its paths put under `smarthost`.
fn smarthost_is_consistent(s: &Scenario) -> Vec<Problem> {
    (s.smarthost.problems().into_iter())
        .map(|p| {
            let at = std::iter::once("smarthost".to_owned())
                .chain(p.path)
                .collect();
            Problem::new(ProblemKind::SmartHostContradiction, at, p.message, p.fix)
        })
        .collect()
}

fn etrn_listed_once(s: &Scenario) -> Vec<Problem> {
    let mut first: HashMap<&EtrnArg, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, x) in s.expect.etrn.iter().enumerate() {
        if let Some(j) = first.insert(&x.arg, i) {
            out.push(Problem::new(
                ProblemKind::DuplicateEtrn,
                path(&["expect", "etrn", &i.to_string()]),
                format!("{:?} is listed twice (also expect.etrn[{j}])", x.arg.raw()),
                "list each expected ETRN argument once",
            ));
        }
    }
    out
}

fn expected_is_not_absent(s: &Scenario) -> Vec<Problem> {
    let e = &s.expect;
    (e.absent.iter().enumerate())
        .filter(|(_, x)| e.etrn.iter().any(|y| y.arg == x.arg))
        .map(|(i, x)| {
            Problem::new(
                ProblemKind::ExpectedAndAbsent,
                path(&["expect", "absent", &i.to_string()]),
                format!("{:?} is both expected and forbidden", x.arg.raw()),
                "remove it from expect.absent or from expect.etrn",
            )
        })
        .collect()
}

/// Within each `[[expect.connection]]`: every argument listed once, none forbidden. Both checks
/// run entry by entry, so an entry's problems are reported together.
fn connection_lists_are_consistent(s: &Scenario) -> Vec<Problem> {
    let e = &s.expect;
    let mut out = Vec::new();
    for (c, conn) in e.connection.iter().enumerate() {
        let mut seen: HashMap<&EtrnArg, usize> = HashMap::new();
        for (i, x) in conn.etrn.iter().enumerate() {
            let at = path(&[
                "expect",
                "connection",
                &c.to_string(),
                "etrn",
                &i.to_string(),
            ]);
            if let Some(j) = seen.insert(&x.arg, i) {
                out.push(Problem::new(
                    ProblemKind::DuplicateEtrn,
                    at.clone(),
                    format!("{:?} is listed twice (also etrn[{j}])", x.arg.raw()),
                    "list each expected ETRN argument once per connection",
                ));
            }
            if is_absent(&e.absent, x) {
                out.push(Problem::new(
                    ProblemKind::ExpectedAndAbsent,
                    at,
                    format!("{:?} is both expected and forbidden", x.arg.raw()),
                    "remove it from expect.absent or from this connection's etrn",
                ));
            }
        }
    }
    out
}

fn is_absent(absent: &[ExpectedEtrn], x: &ExpectedEtrn) -> bool {
    absent.iter().any(|a| a.arg == x.arg)
}

fn etrn_or_connection_tables(s: &Scenario) -> Vec<Problem> {
    let e = &s.expect;
    unless(
        e.connection.is_empty() || e.etrn.is_empty(),
        ProblemKind::EtrnAndConnectionTables,
        &["expect", "etrn"],
        "expect.etrn and [[expect.connection]] both say what each connection sends",
        "move the list into each [[expect.connection]] table, or remove the tables",
    )
}

fn connection_count_matches_tables(s: &Scenario) -> Vec<Problem> {
    let e = &s.expect;
    let Some(n) = e.connections else {
        return Vec::new();
    };
    unless(
        e.connection.is_empty() || n as usize == e.connection.len(),
        ProblemKind::ConnectionCountMismatch,
        &["expect", "connections"],
        format!(
            "connections = {n}, but {} [[expect.connection]] table(s) are given",
            e.connection.len()
        ),
        "write one [[expect.connection]] table per connection, or correct connections",
    )
}

fn connections_grade_needs_a_count(s: &Scenario) -> Vec<Problem> {
    let e = &s.expect;
    unless(
        e.connections_grade.is_none() || e.expected_connections().is_some(),
        ProblemKind::ConnectionsGradeWithoutCount,
        &["expect", "connections_grade"],
        "connections_grade is given but the connection count is not judged",
        "add connections = N, or remove connections_grade",
    )
}

fn turn_excludes_etrn(s: &Scenario) -> Vec<Problem> {
    let e = &s.expect;
    unless(
        !(e.turn && e.all_etrn().next().is_some()),
        ProblemKind::TurnAndEtrn,
        &["expect", "turn"],
        "TURN replaces ETRN (KB257979), but ETRN is expected too",
        "set etrn = [] or turn = false",
    )
}

fn turn_grade_needs_turn(s: &Scenario) -> Vec<Problem> {
    let e = &s.expect;
    unless(
        e.turn_grade.is_none() || e.turn,
        ProblemKind::TurnGradeWithoutTurn,
        &["expect", "turn_grade"],
        "turn_grade is given but turn is not expected",
        "remove turn_grade, or set turn = true",
    )
}

fn no_connection_no_etrn(s: &Scenario) -> Vec<Problem> {
    let e = &s.expect;
    unless(
        !(e.connections == Some(0) && e.all_etrn().next().is_some()),
        ProblemKind::EtrnWithoutConnection,
        &["expect", "connections"],
        "no connection is expected, yet ETRN is",
        "set etrn = [] or a connection count of 1 or more",
    )
}

fn order_needs_two_etrns(s: &Scenario) -> Vec<Problem> {
    let e = &s.expect;
    let fewer_than_two = e.etrn.len() < 2 && e.connection.iter().all(|c| c.etrn.len() < 2);
    unless(
        !(e.order.is_some() && fewer_than_two),
        ProblemKind::OrderWithoutTwoEtrns,
        &["expect", "order"],
        "order is graded but fewer than two ETRNs are expected",
        "remove order",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid scenario, `top` added to its top-level keys and `expect` to its `[expect]` table.
    fn scenario(top: &str, expect: &str) -> Scenario {
        let text = format!(
            "id = \"ok\"\ntitle = \"t\"\nbasis = [\"KB269771\"]\ngrade = \"must\"\n{top}\n\
             [ims]\nsite_address = \"@site.org.com\"\noutbound_messages = 1\nregistry = {{ AlwaysUseETRN = 1 }}\n\
             [expect]\n{expect}\n"
        );
        match toml::from_str(&text) {
            Ok(s) => s,
            Err(e) => panic!("{text}\n{e}"),
        }
    }

    fn kinds(s: &Scenario) -> Vec<ProblemKind> {
        validate(s).into_iter().map(|p| p.kind).collect()
    }

    #[test]
    fn a_valid_scenario_has_no_problem() {
        assert_eq!(kinds(&scenario("", "etrn = [\"site.org.com\"]")), []);
    }

    #[test]
    fn each_rule_names_its_kind() {
        let cases: &[(&str, &str, ProblemKind)] = &[
            ("covers = [\"E45\"]", "", ProblemKind::UnknownSpecRow),
            (
                "",
                "etrn = [\"a.com\", \"A.com\"]",
                ProblemKind::DuplicateEtrn,
            ),
            (
                "",
                "etrn = [\"a.com\"]\nabsent = [\"a.com\"]",
                ProblemKind::ExpectedAndAbsent,
            ),
            (
                "",
                "turn = true\netrn = [\"a.com\"]",
                ProblemKind::TurnAndEtrn,
            ),
            (
                "",
                "turn_grade = \"should\"",
                ProblemKind::TurnGradeWithoutTurn,
            ),
            (
                "",
                "connections = 0\netrn = [\"a.com\"]",
                ProblemKind::EtrnWithoutConnection,
            ),
            (
                "",
                "order = \"should\"\netrn = [\"a.com\"]",
                ProblemKind::OrderWithoutTwoEtrns,
            ),
            (
                "",
                "connections_grade = \"should\"",
                ProblemKind::ConnectionsGradeWithoutCount,
            ),
        ];
        for (top, expect, kind) in cases {
            assert_eq!(kinds(&scenario(top, expect)), [*kind], "{top} / {expect}");
        }
    }

    #[test]
    fn the_id_title_and_basis_rules_are_invalid_values() {
        let mut s = scenario("", "");
        s.id = "-x".into();
        s.title = " ".into();
        s.basis = vec![" KB1".into()];
        let problems = validate(&s);
        let got: Vec<_> = problems.iter().map(|p| (p.kind, p.path.clone())).collect();
        assert_eq!(
            got,
            [
                (ProblemKind::InvalidId, path(&["id"])),
                (ProblemKind::EmptyTitle, path(&["title"])),
                (ProblemKind::BadBasisEntry, path(&["basis", "0"])),
            ]
        );
        assert!(
            problems
                .iter()
                .all(|p| p.kind.error_kind() == ErrorKind::InvalidValue)
        );
    }

    #[test]
    fn a_connection_entry_reports_its_problems_together_in_rule_order() {
        let s = scenario(
            "",
            "absent = [\"a.com\"]\nconnections = 2\n\
             [[expect.connection]]\netrn = [\"a.com\", \"a.com\"]",
        );
        let got: Vec<_> = validate(&s).into_iter().map(|p| (p.kind, p.path)).collect();
        let at = |i: &str| path(&["expect", "connection", "0", "etrn", i]);
        assert_eq!(
            got,
            [
                (ProblemKind::ExpectedAndAbsent, at("0")),
                (ProblemKind::DuplicateEtrn, at("1")),
                (ProblemKind::ExpectedAndAbsent, at("1")),
                (
                    ProblemKind::ConnectionCountMismatch,
                    path(&["expect", "connections"])
                ),
            ]
        );
        assert!(
            validate(&s)
                .iter()
                .all(|p| p.kind.error_kind() == ErrorKind::Contradiction)
        );
    }

    #[test]
    fn spec_rows_are_the_readme_s() {
        for ok in ["E01", "E44", "T1", "T16", "O-1", "O-24"] {
            assert!(is_row_id(ok), "{ok}");
        }
        for bad in ["E1", "E45", "T0", "T17", "O-25", "X1", ""] {
            assert!(!is_row_id(bad), "{bad}");
        }
    }
}
