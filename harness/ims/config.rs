//! What an IMS is configured with: the inputs of the model (the abbreviations of `scenarios/README.md`).
//!
//! The types mirror the administrator's view (registry values, property pages) rather than the
//! model's decisions, so a scenario reads like a description of a real server. Everything a file can
//! get wrong is caught while parsing (domains, registry values) or by [`ImsConfig::problems`]
//! (settings that contradict each other).

use serde::{Deserialize, Serialize};

use crate::domain::Domain;
use crate::rejection::Rejection;

use super::routing::RoutingRow;
use super::site_address::SiteAddress;

/// The Exchange release (KB184185: ETRN needs 5.0 SP1 or later).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub enum ExchangeVersion {
    /// Exchange 4.0 Internet Mail Connector.
    #[serde(rename = "4.0")]
    V4_0,
    /// Exchange 5.0 before Service Pack 1.
    #[serde(rename = "5.0")]
    V5_0,
    /// Exchange 5.0 with Service Pack 1 or later.
    #[serde(rename = "5.0-sp1")]
    V5_0Sp1,
    /// Exchange 5.5 Internet Mail Service (the model describes SP3/SP4, O-21).
    #[default]
    #[serde(rename = "5.5")]
    V5_5,
}

impl ExchangeVersion {
    /// KB184185: older versions cannot send ETRN.
    pub fn can_send_etrn(self) -> bool {
        self >= ExchangeVersion::V5_0Sp1
    }

    pub fn label(self) -> &'static str {
        match self {
            ExchangeVersion::V4_0 => "4.0",
            ExchangeVersion::V5_0 => "5.0",
            ExchangeVersion::V5_0Sp1 => "5.0-sp1",
            ExchangeVersion::V5_5 => "5.5",
        }
    }
}

/// A REG_DWORD flag. Only 0 and 1 are modelled (O-12); other values are rejected when parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "i64")]
pub enum RegistryFlag {
    Disabled,
    Enabled,
}

impl TryFrom<i64> for RegistryFlag {
    type Error = Rejection;
    fn try_from(v: i64) -> Result<Self, Rejection> {
        match v {
            0 => Ok(RegistryFlag::Disabled),
            1 => Ok(RegistryFlag::Enabled),
            other => Err(Rejection::invalid(
                format!("registry value {other} is not modelled; a REG_DWORD flag here is 0 or 1"),
                "write 1 to enable, 0 to disable, or leave the key out for \"absent\" (KB175494)",
            )),
        }
    }
}

// By hand rather than `#[serde(try_from)]`, which would pass the rejection to serde as text only.
impl<'de> Deserialize<'de> for RegistryFlag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = i64::deserialize(d)?;
        RegistryFlag::try_from(value).map_err(Rejection::into_de_error)
    }
}

impl From<RegistryFlag> for i64 {
    fn from(f: RegistryFlag) -> i64 {
        match f {
            RegistryFlag::Disabled => 0,
            RegistryFlag::Enabled => 1,
        }
    }
}

impl schemars::JsonSchema for RegistryFlag {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RegistryFlag".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "integer", "enum": [0, 1], "description": "REG_DWORD 0 or 1" })
    }
}

/// `HKLM\SYSTEM\CurrentControlSet\Services\MSExchangeIMC\Parameters`. A missing key is "absent",
/// which the model treats like 0 but a scenario can tell apart (E01 vs E02).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// `AlwaysUseETRN` (KB175494): send ETRN to every ESMTP host that advertises it.
    #[serde(
        rename = "AlwaysUseETRN",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub always_use_etrn: Option<RegistryFlag>,
    /// `AlwaysUseTURN` (KB257979, 5.5 SP3+): TURN instead of ETRN.
    #[serde(
        rename = "AlwaysUseTURN",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub always_use_turn: Option<RegistryFlag>,
    /// `DisableETRN` (KB258292): the server role's switch.
    #[serde(
        rename = "DisableETRN",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub disable_etrn: Option<RegistryFlag>,
}

impl Registry {
    pub fn always_use_etrn(&self) -> bool {
        self.always_use_etrn == Some(RegistryFlag::Enabled)
    }
    pub fn always_use_turn(&self) -> bool {
        self.always_use_turn == Some(RegistryFlag::Enabled)
    }
    pub fn disable_etrn(&self) -> bool {
        self.disable_etrn == Some(RegistryFlag::Enabled)
    }
}

/// The Routing property page's two options (KB255695). Rerouting is the default (KB193922).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum RoutingMode {
    /// "Reroute incoming SMTP mail (Required for POP3/IMAP4 Support)".
    #[default]
    Reroute,
    /// "Do not reroute incoming SMTP mail".
    DoNotReroute,
}

/// Message delivery on the Connections property page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "mode", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Delivery {
    /// "Use domain name system (DNS)": IMS connects to the MX hosts. `mx_hosts` lists the hosts one
    /// delivery cycle connects to (E22); empty means one.
    Dns {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mx_hosts: Vec<Domain>,
    },
    /// "Forward all messages to host" (KB241157): every connection goes to this host.
    Forward { host: Domain },
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery::Dns {
            mx_hosts: Vec::new(),
        }
    }
}

/// The Dial-up Connections page's mail retrieval, for a session over a dial-up (RAS) link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "retrieval", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DialUp {
    /// A dial-up link with no retrieval action.
    None,
    /// ETRN retrieval. `domains` is the "use these domains" list (KB235223); empty means the
    /// default domain option.
    Etrn {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        domains: Vec<Domain>,
    },
    /// A local program run when the link is up (KB155828), e.g. `finger example.com@isp.net`.
    Command { command: String },
}

/// SASL/AUTH credentials set per E-Mail Domain on the Security tab (KB257979).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The whole IMS configuration a scenario describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImsConfig {
    /// Exchange release; default "5.5".
    #[serde(default)]
    pub version: ExchangeVersion,
    /// Registry values under the MSExchangeIMC Parameters key.
    #[serde(default)]
    pub registry: Registry,
    /// Routing property page option; default "reroute".
    #[serde(default)]
    pub routing: RoutingMode,
    /// Routing property page table, in the order the rows were entered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routing_table: Vec<RoutingRow>,
    /// The Site Addressing SMTP address, e.g. "@site.org.com".
    pub site_address: SiteAddress,
    /// The name IMS gives in EHLO/HELO; default: the site address's domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<Domain>,
    /// Connections property page: DNS or "Forward all messages to host".
    #[serde(default)]
    pub delivery: Delivery,
    /// Connections IMS opens in parallel to each host (E23); default 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub connections_per_host: u32,
    /// Present when this session runs over a dial-up link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialup: Option<DialUp>,
    /// Outbound messages queued for the peer when the cycle starts.
    pub outbound_messages: u32,
    /// Credentials for AlwaysUseTURN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_credentials: Option<Credentials>,
}

fn one() -> u32 {
    1
}
fn is_one(n: &u32) -> bool {
    *n == 1
}

/// Settings that contradict each other. `path` names the key, as `ims.registry.AlwaysUseTURN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub path: Vec<String>,
    pub message: String,
    pub fix: String,
}

impl ImsConfig {
    /// A 5.5 IMS with everything else at its installation default.
    pub fn new(site_address: SiteAddress) -> Self {
        ImsConfig {
            version: ExchangeVersion::default(),
            registry: Registry::default(),
            routing: RoutingMode::default(),
            routing_table: Vec::new(),
            site_address,
            fqdn: None,
            delivery: Delivery::default(),
            connections_per_host: 1,
            dialup: None,
            outbound_messages: 1,
            turn_credentials: None,
        }
    }

    /// The EHLO name: `fqdn`, or the site domain.
    pub fn ehlo_name(&self) -> &Domain {
        self.fqdn.as_ref().unwrap_or(self.site_address.domain())
    }

    /// Finds contradictory settings. An empty list means the configuration is consistent.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut problem = |path: &[&str], message: String, fix: &str| {
            out.push(ConfigProblem {
                path: path.iter().map(|s| s.to_string()).collect(),
                message,
                fix: fix.into(),
            })
        };
        if self.registry.always_use_turn.is_some() && self.version < ExchangeVersion::V5_5 {
            problem(
                &["registry", "AlwaysUseTURN"],
                format!(
                    "AlwaysUseTURN exists from Exchange 5.5 SP3 (KB257979), but version = \"{}\"",
                    self.version.label()
                ),
                "remove AlwaysUseTURN, or set version = \"5.5\"",
            );
        }
        if self.connections_per_host == 0 {
            problem(
                &["connections_per_host"],
                "connections_per_host = 0 would mean IMS never connects".into(),
                "use 1 (the default) or more; to model no connection set outbound_messages = 0",
            );
        }
        if let Delivery::Dns { mx_hosts } = &self.delivery {
            let mut seen = std::collections::HashSet::new();
            for (i, h) in mx_hosts.iter().enumerate() {
                if !seen.insert(h) {
                    problem(
                        &["delivery", "mx_hosts", &i.to_string()],
                        format!("MX host {:?} is listed twice", h.raw()),
                        "list each MX host once",
                    );
                }
            }
        }
        if let Some(DialUp::Command { command }) = &self.dialup
            && command.trim().is_empty()
        {
            problem(
                &["dialup", "command"],
                "the dial-up retrieval command is empty".into(),
                "write the local command, e.g. \"finger example.com@isp.example\", or use retrieval = \"none\"",
            );
        }
        if let Some(c) = &self.turn_credentials
            && c.username.is_empty()
        {
            problem(
                &["turn_credentials", "username"],
                "the TURN credentials have an empty user name".into(),
                "write the SASL user name set on the Security tab (KB257979), or remove turn_credentials",
            );
        }
        out
    }
}
