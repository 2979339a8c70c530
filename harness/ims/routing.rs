//! The Routing property page's table: `Sent To | Route To` rows (KB169683, KB264557).
//!
//! Under "Reroute incoming SMTP mail", AlwaysUseETRN sends ETRN for every domain of this table
//! (KB269771). A `Sent To` entry written `#x.com` matches `x.com` only (5.0 SP2+); a plain entry
//! matches the domain and its subdomains.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::{Domain, DomainError};
use crate::rejection::Rejection;

/// How a `Sent To` entry matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MatchKind {
    /// `x.com`: the domain and all its subdomains.
    DomainAndSubdomains,
    /// `#x.com`: this domain only.
    Exact,
}

/// The `Sent To` column: a domain (or IP address, KB249100) with its match kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentTo {
    pub matching: MatchKind,
    pub domain: Domain,
}

impl SentTo {
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let (matching, rest) = match text.strip_prefix('#') {
            Some(rest) => (MatchKind::Exact, rest),
            None => (MatchKind::DomainAndSubdomains, text),
        };
        let domain = Domain::parse(rest)?;
        Ok(SentTo { matching, domain })
    }
}

impl Serialize for SentTo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SentTo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        SentTo::parse(&text).map_err(|e| Rejection::invalid(&e, e.fix()).into_de_error())
    }
}

impl schemars::JsonSchema for SentTo {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SentTo".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A routing-table domain; a leading '#' makes it an exact match (KB169683)"
        })
    }
}

impl fmt::Display for SentTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.matching == MatchKind::Exact {
            f.write_str("#")?;
        }
        f.write_str(self.domain.raw())
    }
}

/// What the row does with mail for its domain ("Edit Routing Table Entry", KB264557).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingAction {
    /// "Should be accepted as \"inbound\"".
    Inbound,
    /// "Should be rerouted to this domain:" a domain or host.
    Reroute(Domain),
    /// "Override relay restrictions. Always \"relay\"" (5.5 SP2+).
    Relay,
}

/// One row of the table. Written and read as a `RoutingRowFile`, whose action and `route_to` must
/// agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "RoutingRowFile")]
pub struct RoutingRow {
    pub sent_to: SentTo,
    pub action: RoutingAction,
}

impl RoutingRow {
    pub fn inbound(sent_to: &str) -> Result<Self, DomainError> {
        Ok(RoutingRow {
            sent_to: SentTo::parse(sent_to)?,
            action: RoutingAction::Inbound,
        })
    }
}

/// The action's name in a scenario file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActionName {
    Inbound,
    Reroute,
    Relay,
}

/// A row as written in a scenario file:
/// `{ sent_to = "c.com", action = "reroute", route_to = "host1.c.net" }`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingRowFile {
    /// The "Sent To" column: a domain, `#domain` for an exact match, or an IP address.
    pub sent_to: SentTo,
    /// What the row does: `inbound`, `reroute` (needs `route_to`) or `relay`.
    pub action: ActionName,
    /// The "Route To" host or domain; only with `action = "reroute"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_to: Option<Domain>,
}

impl TryFrom<RoutingRowFile> for RoutingRow {
    type Error = Rejection;
    fn try_from(file: RoutingRowFile) -> Result<Self, Rejection> {
        let sent_to = file.sent_to;
        let action = match (file.action, file.route_to) {
            (ActionName::Reroute, Some(to)) => RoutingAction::Reroute(to),
            (ActionName::Reroute, None) => {
                return Err(Rejection::contradiction(
                    format!("routing row \"{sent_to}\": action \"reroute\" needs route_to"),
                    "add route_to = \"host.example\", or use action = \"inbound\"",
                ));
            }
            (other, Some(to)) => {
                return Err(Rejection::contradiction(
                    format!(
                        "routing row \"{sent_to}\": route_to = \"{to}\" contradicts action \"{}\"",
                        serde_name(other)
                    ),
                    "remove route_to, or set action = \"reroute\"",
                ));
            }
            (ActionName::Inbound, None) => RoutingAction::Inbound,
            (ActionName::Relay, None) => RoutingAction::Relay,
        };
        Ok(RoutingRow { sent_to, action })
    }
}

// By hand rather than `#[serde(try_from)]`, which would pass the rejection to serde as text only.
impl<'de> Deserialize<'de> for RoutingRow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let file = RoutingRowFile::deserialize(d)?;
        RoutingRow::try_from(file).map_err(Rejection::into_de_error)
    }
}

fn serde_name(a: ActionName) -> &'static str {
    match a {
        ActionName::Inbound => "inbound",
        ActionName::Reroute => "reroute",
        ActionName::Relay => "relay",
    }
}

impl From<RoutingRow> for RoutingRowFile {
    fn from(row: RoutingRow) -> Self {
        let (action, route_to) = match row.action {
            RoutingAction::Inbound => (ActionName::Inbound, None),
            RoutingAction::Reroute(d) => (ActionName::Reroute, Some(d)),
            RoutingAction::Relay => (ActionName::Relay, None),
        };
        RoutingRowFile {
            sent_to: row.sent_to,
            action,
            route_to,
        }
    }
}

impl schemars::JsonSchema for RoutingRow {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        RoutingRowFile::schema_name()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        RoutingRowFile::json_schema(g)
    }
}
