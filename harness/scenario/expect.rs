//! The `[expect]` table: what a conforming implementation sends.
//!
//! What each expectation is worth comes from the model's rule that explains a difference (see
//! [`super::judge()`]); a grade written here (`{ arg = "c.com", grade = "informational" }`,
//! `connections_grade`, `turn_grade`) counts only for a difference no rule explains. Where
//! connections differ (a smart host that answers by occurrence, two MX hosts that advertise
//! differently), `[[expect.connection]]` tables give each connection its own list. The judgement
//! of what was sent against these tables is [`super::judge()`].

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::EtrnArg;
use crate::ims::Grade;
use crate::rejection::Rejection;

/// One expected (or forbidden) ETRN argument, with its own grade for a difference no rule explains.
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
    /// The grade of a difference no rule explains, when it differs from the scenario's.
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
            "description": "An ETRN argument, or { arg, grade } to grade a difference no rule explains apart from the scenario",
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
                let arg = EtrnArg::parse(s)
                    .map_err(|e| Rejection::invalid(&e, e.fix()).into_de_error::<E>())?;
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

/// One `[[expect.connection]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionExpectation {
    /// The ETRN arguments this connection sends, in the model's order.
    #[serde(default)]
    pub etrn: Vec<ExpectedEtrn>,
}

impl Expectations {
    /// The expected ETRNs of connection `index` (0-based); `None` past the listed connections.
    pub fn etrn_on(&self, index: usize) -> Option<&[ExpectedEtrn]> {
        if self.connection.is_empty() {
            Some(&self.etrn)
        } else {
            self.connection.get(index).map(|c| c.etrn.as_slice())
        }
    }

    /// Every expected ETRN of any connection.
    pub fn all_etrn(&self) -> impl Iterator<Item = &ExpectedEtrn> {
        self.etrn
            .iter()
            .chain(self.connection.iter().flat_map(|c| &c.etrn))
    }

    /// How many connections are expected, when that is judged.
    pub fn expected_connections(&self) -> Option<u32> {
        self.connections.or_else(|| {
            (!self.connection.is_empty())
                .then(|| u32::try_from(self.connection.len()).unwrap_or(u32::MAX))
        })
    }
}

/// The `[expect]` table.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// The ETRN arguments every connection sends, in the model's order.
    #[serde(default)]
    pub etrn: Vec<ExpectedEtrn>,
    /// Per-connection expectations, in connection order, instead of one `etrn` list for all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connection: Vec<ConnectionExpectation>,
    /// Arguments that must not be sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub absent: Vec<ExpectedEtrn>,
    /// Whether the order of `etrn` is judged (its rule grades it; this grade only where none does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Grade>,
    /// How many SMTP connections the delivery cycle makes; omitted, not judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<u32>,
    /// The grade of `connections` where no rule explains the count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections_grade: Option<Grade>,
    /// Whether AUTH + TURN is sent instead of ETRN.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub turn: bool,
    /// The grade of `turn` where no rule explains it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_grade: Option<Grade>,
    /// A dial-up retrieval command expected to run locally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_command: Option<String>,
}
