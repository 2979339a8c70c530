//! The `[expect]` table and the judgement of what was sent against it.
//!
//! Expectations are graded one by one: `etrn = ["a.com", { arg = "c.com", grade = "informational" }]`
//! says `a.com` is required at the scenario's grade while `c.com` is only informational. The same
//! [`Expectations::judge`] serves the corpus test (the model against its own files) and conformance
//! runs (any implementation against the files).

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::EtrnArg;
use crate::ims::Grade;

/// One expected (or forbidden) ETRN argument, with its own grade if it differs from the scenario's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpectedEtrn {
    pub arg: EtrnArg,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grade: Option<Grade>,
}

/// The table form of an expected argument.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct ExpectedEtrnTable {
    /// The ETRN argument.
    arg: EtrnArg,
    /// The grade of this expectation, when it differs from the scenario's.
    #[serde(default)]
    grade: Option<Grade>,
}

impl schemars::JsonSchema for ExpectedEtrn {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ExpectedEtrn".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let arg = g.subschema_for::<EtrnArg>();
        let table = g.subschema_for::<ExpectedEtrnTable>();
        schemars::json_schema!({
            "description": "An ETRN argument, or { arg, grade } to grade it apart from the scenario",
            "anyOf": [arg, table]
        })
    }
}

// A string or a table: `"a.com"` or `{ arg = "a.com", grade = "should" }`. Written by hand because
// an untagged enum would hide the domain error behind "did not match any variant".
impl<'de> Deserialize<'de> for ExpectedEtrn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExpectedEtrn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an ETRN argument string or a table { arg = \"...\", grade = \"...\" }")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ExpectedEtrn, E> {
                let arg = EtrnArg::parse(s).map_err(|e| E::custom(crate::hint(&e, e.fix())))?;
                Ok(ExpectedEtrn { arg, grade: None })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ExpectedEtrn, A::Error> {
                let t = ExpectedEtrnTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ExpectedEtrn {
                    arg: t.arg,
                    grade: t.grade,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// The `[expect]` table.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// The ETRN arguments every connection sends, in the model's order.
    #[serde(default)]
    pub etrn: Vec<ExpectedEtrn>,
    /// Arguments that must not be sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<ExpectedEtrn>,
    /// The grade of the order of `etrn`; omitted, order is not judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Grade>,
    /// How many SMTP connections the delivery cycle makes; omitted, not judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<u32>,
    /// Whether AUTH + TURN is sent instead of ETRN.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub turn: bool,
    /// The grade of `turn` when it differs from the scenario's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_grade: Option<Grade>,
    /// A dial-up retrieval command expected to run locally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_command: Option<String>,
}

/// What an implementation did in one delivery cycle, as far as expectations look.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Observed {
    /// The ETRN arguments sent, per connection, in order.
    pub connections: Vec<Vec<EtrnArg>>,
    /// Whether TURN was sent on any connection.
    pub turn: bool,
    /// The local command that ran, if any.
    pub local_command: Option<String>,
}

/// How an observation differs from an expectation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Difference {
    Missing {
        arg: String,
    },
    Unexpected {
        arg: String,
    },
    Duplicated {
        arg: String,
        times: usize,
    },
    Forbidden {
        arg: String,
    },
    Order {
        expected: Vec<String>,
        actual: Vec<String>,
    },
    Connections {
        expected: u32,
        actual: usize,
    },
    Turn {
        expected: bool,
    },
    LocalCommand {
        expected: Option<String>,
        actual: Option<String>,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Missing { arg } => write!(f, "ETRN {arg} expected but not sent"),
            Difference::Unexpected { arg } => write!(f, "ETRN {arg} sent but not expected"),
            Difference::Duplicated { arg, times } => {
                write!(f, "ETRN {arg} sent {times} times on one connection")
            }
            Difference::Forbidden { arg } => write!(f, "ETRN {arg} sent although it must not be"),
            Difference::Order { expected, actual } => {
                write!(
                    f,
                    "order differs: expected [{}], sent [{}]",
                    expected.join(", "),
                    actual.join(", ")
                )
            }
            Difference::Connections { expected, actual } => {
                write!(f, "{actual} connection(s) made, {expected} expected")
            }
            Difference::Turn { expected: true } => f.write_str("TURN expected but not sent"),
            Difference::Turn { expected: false } => f.write_str("TURN sent but not expected"),
            Difference::LocalCommand { expected, actual } => {
                write!(f, "local command {actual:?}, expected {expected:?}")
            }
        }
    }
}

/// A difference and how much it counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deviation {
    pub grade: Grade,
    /// The connection (0-based) it was seen on, where it concerns one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<usize>,
    #[serde(flatten)]
    pub difference: Difference,
}

impl Expectations {
    /// Compares an observation with these expectations; `default` is the scenario's grade.
    pub fn judge(&self, observed: &Observed, default: Grade) -> Vec<Deviation> {
        let mut out = Vec::new();
        let grade_of = |e: &ExpectedEtrn| e.grade.unwrap_or(default);
        if let Some(expected) = self.connections
            && expected as usize != observed.connections.len()
        {
            out.push(Deviation {
                grade: default,
                connection: None,
                difference: Difference::Connections {
                    expected,
                    actual: observed.connections.len(),
                },
            });
        }
        for (i, sent) in observed.connections.iter().enumerate() {
            let mut counts: HashMap<&EtrnArg, usize> = HashMap::new();
            for a in sent {
                *counts.entry(a).or_default() += 1;
            }
            let mut push = |grade, difference| {
                out.push(Deviation {
                    grade,
                    connection: Some(i),
                    difference,
                })
            };
            for e in &self.etrn {
                if !counts.contains_key(&e.arg) {
                    push(
                        grade_of(e),
                        Difference::Missing {
                            arg: e.arg.raw().into(),
                        },
                    );
                }
            }
            let mut reported = std::collections::HashSet::new();
            for a in sent {
                if !reported.insert(a) {
                    continue;
                }
                if let Some(f) = self.absent.iter().find(|f| &f.arg == a) {
                    push(
                        grade_of(f),
                        Difference::Forbidden {
                            arg: a.raw().into(),
                        },
                    );
                } else if !self.etrn.iter().any(|e| &e.arg == a) {
                    push(
                        default,
                        Difference::Unexpected {
                            arg: a.raw().into(),
                        },
                    );
                }
                let times = counts[a];
                if times > 1 {
                    // Whether IMS collapses duplicates is open (O-7): report, never fail.
                    push(
                        Grade::Informational,
                        Difference::Duplicated {
                            arg: a.raw().into(),
                            times,
                        },
                    );
                }
            }
            if let Some(order) = self.order {
                let expected: Vec<&EtrnArg> = self.etrn.iter().map(|e| &e.arg).collect();
                let common: Vec<&EtrnArg> = sent.iter().filter(|a| expected.contains(a)).collect();
                let expected_common: Vec<&EtrnArg> = expected
                    .iter()
                    .copied()
                    .filter(|a| common.contains(a))
                    .collect();
                let mut dedup = Vec::new();
                for a in common {
                    if !dedup.contains(&a) {
                        dedup.push(a);
                    }
                }
                if dedup != expected_common {
                    push(
                        order,
                        Difference::Order {
                            expected: expected.iter().map(|a| a.raw().to_owned()).collect(),
                            actual: sent.iter().map(|a| a.raw().to_owned()).collect(),
                        },
                    );
                }
            }
        }
        if self.turn != observed.turn {
            out.push(Deviation {
                grade: self.turn_grade.unwrap_or(default),
                connection: None,
                difference: Difference::Turn {
                    expected: self.turn,
                },
            });
        }
        if self.local_command != observed.local_command {
            out.push(Deviation {
                grade: default,
                connection: None,
                difference: Difference::LocalCommand {
                    expected: self.local_command.clone(),
                    actual: observed.local_command.clone(),
                },
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<EtrnArg> {
        list.iter().map(|s| EtrnArg::parse(s).unwrap()).collect()
    }

    fn expect(toml_text: &str) -> Expectations {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn grades_each_expectation_on_its_own() {
        let e = expect(
            r#"etrn = ["a.com", { arg = "c.com", grade = "informational" }]
               absent = [{ arg = "site.com", grade = "should" }]"#,
        );
        let observed = Observed {
            connections: vec![args(&["site.com", "A.COM", "x.com", "a.com"])],
            ..Default::default()
        };
        let d = e.judge(&observed, Grade::Must);
        let summary: Vec<String> = d
            .iter()
            .map(|d| format!("{} {}", d.grade, d.difference))
            .collect();
        assert_eq!(
            summary,
            [
                "informational ETRN c.com expected but not sent",
                "should ETRN site.com sent although it must not be",
                "informational ETRN A.COM sent 2 times on one connection",
                "must ETRN x.com sent but not expected",
            ]
        );
    }

    #[test]
    fn order_is_judged_only_when_graded() {
        let observed = Observed {
            connections: vec![args(&["b.com", "a.com"])],
            ..Default::default()
        };
        assert!(
            expect(r#"etrn = ["a.com", "b.com"]"#)
                .judge(&observed, Grade::Must)
                .is_empty()
        );
        let d = expect("etrn = [\"a.com\", \"b.com\"]\norder = \"informational\"")
            .judge(&observed, Grade::Must);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].grade, Grade::Informational);
        assert!(matches!(d[0].difference, Difference::Order { .. }));
    }

    #[test]
    fn connections_turn_and_command() {
        let e = expect("etrn = []\nconnections = 2\nturn = true\nturn_grade = \"informational\"");
        let d = e.judge(
            &Observed {
                connections: vec![vec![]],
                ..Default::default()
            },
            Grade::Must,
        );
        let kinds: Vec<_> = d
            .iter()
            .map(|d| (d.grade, d.difference.to_string()))
            .collect();
        assert_eq!(
            kinds,
            [
                (Grade::Must, "1 connection(s) made, 2 expected".to_string()),
                (
                    Grade::Informational,
                    "TURN expected but not sent".to_string()
                ),
            ]
        );
    }
}
