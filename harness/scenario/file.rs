//! The scenario file: one conformance case in TOML.
//!
//! ```toml
//! id = "e03-no-reroute-site-domain"
//! title = "Do not reroute: ETRN for the Site Addressing domain"
//! basis = ["KB269771", "KB175494"]
//! grade = "must"
//! covers = ["E03", "T2"]
//!
//! [ims]
//! routing = "do-not-reroute"
//! site_address = "@site.org.com"
//! outbound_messages = 1
//! registry = { AlwaysUseETRN = 1 }
//!
//! [smarthost]
//! profile = "rfc1985"
//!
//! [expect]
//! etrn = ["site.org.com"]
//! ```

use serde::{Deserialize, Serialize};

use crate::ims::{Grade, ImsConfig};
use crate::proto::SmartHostScript;

use super::expect::Expectations;

/// One scenario, parsed and validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Unique, stable identifier: lower-case letters, digits and hyphens.
    pub id: String,
    /// One line saying what the case checks.
    pub title: String,
    /// The sources behind the expectation: KB articles, RFC sections, `spec` rows of `scenarios/README.md`.
    pub basis: Vec<String>,
    /// How a deviation no rule of the model explains counts (unless an expectation says otherwise).
    pub grade: Grade,
    /// Rows of the spec (`scenarios/README.md`) this case covers (E01..E44, T1..T16).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub covers: Vec<String>,
    /// The IMS configuration under test.
    pub ims: ImsConfig,
    /// How the upstream answers.
    #[serde(default)]
    pub smarthost: SmartHostScript,
    /// What a conforming implementation sends.
    pub expect: Expectations,
}
