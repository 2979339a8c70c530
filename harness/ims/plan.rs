//! The planner: configuration + the peer's EHLO answer → what IMS does on each connection.
//!
//! [`plan`] is a pure function. It follows the decision table (T rows) of `scenarios/README.md` with the
//! baselines of §9, and records every rule it applied in [`DequeuePlan::decisions`], so a reader
//! of `etrn-harness expect` sees why each ETRN is (or is not) there.

use std::collections::HashSet;

use serde::Serialize;

use crate::domain::{Domain, EtrnArg};

use super::config::{Delivery, DialUp, ImsConfig, RoutingMode};
use super::peer::PeerEhlo;
use super::routing::{MatchKind, RoutingAction};
use super::rules::Rule;

/// Everything IMS does in one delivery cycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DequeuePlan {
    /// One entry per SMTP connection of the cycle; each carries [`DequeuePlan::session`].
    pub connections: Vec<ConnectionTarget>,
    /// What IMS does on every connection.
    pub session: SessionPlan,
    /// A dial-up retrieval command run as a local process (T11), if configured.
    pub local_command: Option<String>,
    /// The rules that shaped the plan, in the order they were applied.
    pub decisions: Vec<Decision>,
}

/// The host one connection goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "host")]
pub enum ConnectionTarget {
    /// "Forward all messages to host".
    ForwardHost(Domain),
    /// A host found by DNS; `None` when the scenario does not name MX hosts.
    Mx(Option<Domain>),
}

/// How IMS opens the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Greeting {
    Ehlo,
    /// EHLO refused, HELO sent instead (O-18 baseline).
    HeloAfterRefusedEhlo,
}

/// One connection's conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionPlan {
    /// The EHLO/HELO argument.
    pub client_name: Domain,
    pub greeting: Greeting,
    /// Outbound MAIL transactions, all sent before any ETRN (O-4 baseline).
    pub outbound_messages: u32,
    pub dequeue: Dequeue,
}

/// How IMS asks for its queued mail on this connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "etrn")]
pub enum Dequeue {
    /// Nothing: no ETRN, no TURN.
    Nothing,
    /// These ETRN commands, in order, one node each.
    Etrn(Vec<PlannedEtrn>),
    /// AUTH, then TURN (AlwaysUseTURN).
    Turn,
}

/// One ETRN the plan sends, with the rule that put it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedEtrn {
    pub arg: EtrnArg,
    pub rule: Rule,
}

/// A rule applied while planning, with what it meant here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub rule: Rule,
    pub note: String,
}

impl DequeuePlan {
    /// The ETRN arguments each connection sends if every reply is a success.
    pub fn etrn_args(&self) -> Vec<&EtrnArg> {
        match &self.session.dequeue {
            Dequeue::Etrn(list) => list.iter().map(|p| &p.arg).collect(),
            _ => Vec::new(),
        }
    }
}

/// Plans one delivery cycle.
pub fn plan(config: &ImsConfig, peer: &PeerEhlo) -> DequeuePlan {
    let mut planner = Planner {
        config,
        decisions: Vec::new(),
    };
    let local_command = planner.local_command();
    let connections = planner.connections();
    let (greeting, dequeue) = if connections.is_empty() {
        (Greeting::Ehlo, Dequeue::Nothing)
    } else {
        planner.dequeue(peer)
    };
    DequeuePlan {
        connections,
        session: SessionPlan {
            client_name: config.ehlo_name().clone(),
            greeting,
            outbound_messages: config.outbound_messages,
            dequeue,
        },
        local_command,
        decisions: planner.decisions,
    }
}

struct Planner<'a> {
    config: &'a ImsConfig,
    decisions: Vec<Decision>,
}

impl Planner<'_> {
    fn decide(&mut self, rule: Rule, note: impl Into<String>) {
        self.decisions.push(Decision {
            rule,
            note: note.into(),
        });
    }

    fn dial_up_etrn(&self) -> Option<&[Domain]> {
        match &self.config.dialup {
            Some(DialUp::Etrn { domains }) => Some(domains),
            _ => None,
        }
    }

    /// T11: a retrieval command is a local process, never an SMTP verb.
    fn local_command(&mut self) -> Option<String> {
        let Some(DialUp::Command { command }) = &self.config.dialup else {
            return None;
        };
        self.decide(
            Rule::DialUpCommand,
            format!("runs {command:?} locally once the link is up; it adds no SMTP command"),
        );
        Some(command.clone())
    }

    /// T5, T6, T7: which connections the cycle makes.
    fn connections(&mut self) -> Vec<ConnectionTarget> {
        let c = self.config;
        let dial_up_etrn = self.dial_up_etrn().is_some() && c.version.can_send_etrn();
        if c.outbound_messages == 0 && !dial_up_etrn {
            self.decide(
                Rule::NoOutboundNoConnection,
                "no outbound message is queued, so IMS opens no connection",
            );
            return Vec::new();
        }
        if c.outbound_messages == 0 {
            self.decide(
                Rule::DialUpWithoutOutbound,
                "the dial-up link is up for ETRN retrieval although no outbound mail is queued",
            );
        }
        let hosts: Vec<ConnectionTarget> = match &c.delivery {
            Delivery::Forward { host } => vec![ConnectionTarget::ForwardHost(host.clone())],
            Delivery::Dns { mx_hosts } if mx_hosts.is_empty() => vec![ConnectionTarget::Mx(None)],
            Delivery::Dns { mx_hosts } => mx_hosts
                .iter()
                .map(|h| ConnectionTarget::Mx(Some(h.clone())))
                .collect(),
        };
        let per_host = c.connections_per_host.max(1) as usize;
        let all: Vec<ConnectionTarget> = hosts
            .iter()
            .flat_map(|h| std::iter::repeat_n(h.clone(), per_host))
            .collect();
        if all.len() > 1 {
            self.decide(
                Rule::EveryConnection,
                format!(
                    "{} connections ({} host(s) x {per_host}); each carries the same session",
                    all.len(),
                    hosts.len()
                ),
            );
        }
        all
    }

    /// T1–T4, T9–T16: what goes after the outbound mail on a connection.
    fn dequeue(&mut self, peer: &PeerEhlo) -> (Greeting, Dequeue) {
        let c = self.config;
        let greeting = match peer {
            PeerEhlo::HeloOnly => Greeting::HeloAfterRefusedEhlo,
            PeerEhlo::Esmtp { .. } => Greeting::Ehlo,
        };
        if c.registry.disable_etrn() {
            self.decide(
                Rule::DisableEtrnServerOnly,
                "DisableETRN=1 is ignored: it configures the server role",
            );
        }
        if !c.version.can_send_etrn() {
            self.decide(
                Rule::VersionGate,
                format!("Exchange {} cannot send ETRN", c.version.label()),
            );
            return (greeting, Dequeue::Nothing);
        }
        if c.registry.always_use_turn() {
            return (greeting, self.turn(peer));
        }
        let always = c.registry.always_use_etrn();
        let dial_up = self.dial_up_etrn().map(<[Domain]>::to_vec);
        if !always && dial_up.is_none() {
            self.decide(
                Rule::DefaultDialUpOnly,
                "AlwaysUseETRN is not 1 and this is no dial-up ETRN retrieval",
            );
            return (greeting, Dequeue::Nothing);
        }
        if !self.peer_takes_etrn(peer) {
            return (greeting, Dequeue::Nothing);
        }
        let etrn = self.etrn_list(always, dial_up.as_deref());
        let etrn = self.deduplicate(etrn);
        if etrn.is_empty() {
            return (greeting, Dequeue::Nothing);
        }
        self.decide_how_sent(etrn.len());
        (greeting, Dequeue::Etrn(etrn))
    }

    /// Whether ETRN may be sent to this peer (EHLO accepted, ETRN advertised), decided.
    fn peer_takes_etrn(&mut self, peer: &PeerEhlo) -> bool {
        match peer {
            PeerEhlo::HeloOnly => {
                self.decide(
                    Rule::HeloFallback,
                    "the peer refused EHLO; after HELO no ETRN is sent",
                );
                return false;
            }
            PeerEhlo::Esmtp { .. } if !peer.advertises("ETRN") => {
                self.decide(
                    Rule::EhloGating,
                    "the peer's EHLO reply does not advertise ETRN",
                );
                return false;
            }
            PeerEhlo::Esmtp { .. } => self.decide(
                Rule::EhloGating,
                "the peer advertises ETRN, so ETRN may be sent",
            ),
        }
        true
    }

    /// The ETRN arguments before deduplication: the dial-up list, or AlwaysUseETRN's set.
    fn etrn_list(&mut self, always: bool, dial_up: Option<&[Domain]>) -> Vec<PlannedEtrn> {
        let mut etrn = Vec::new();
        match dial_up {
            Some(list) if !list.is_empty() => {
                self.decide(
                    Rule::DialUpList,
                    "dial-up retrieval: the \"use these domains\" list",
                );
                etrn.extend(list.iter().map(|d| PlannedEtrn {
                    arg: EtrnArg::plain(d.clone()),
                    rule: Rule::DialUpList,
                }));
            }
            Some(_) => {
                self.decide(
                    Rule::DialUpDefault,
                    "dial-up retrieval without a list: the AlwaysUseETRN domain set",
                );
                etrn.extend(self.always_use_etrn_set());
            }
            None => {}
        }
        if always {
            if dial_up.is_some_and(|l| !l.is_empty()) {
                // The narrower reading of the Dial-up tab: its list is what the dial-up connection
                // retrieves; nothing says AlwaysUseETRN adds its own set to it.
                self.decide(
                    Rule::DialUpWithAlwaysUseEtrn,
                    "the dial-up list alone: AlwaysUseETRN's domains are not added to it",
                );
            } else if dial_up.is_none() {
                etrn.extend(self.always_use_etrn_set());
            }
        }
        etrn
    }

    /// How the `count` ETRN commands are sent: one node each, after the outbound mail, outside
    /// a transaction.
    fn decide_how_sent(&mut self, count: usize) {
        self.decide(
            Rule::OneDomainPerCommand,
            format!("{count} ETRN command(s), one node each, no option character"),
        );
        if self.config.outbound_messages > 0 {
            self.decide(
                Rule::OutboundFirst,
                format!(
                    "{} outbound message(s) first, then ETRN",
                    self.config.outbound_messages
                ),
            );
        }
        self.decide(
            Rule::NotInTransaction,
            "every ETRN goes after the end of DATA, never inside MAIL...DATA",
        );
    }

    /// T12, O-14: AlwaysUseTURN.
    fn turn(&mut self, peer: &PeerEhlo) -> Dequeue {
        self.decide(Rule::TurnInsteadOfEtrn, "AlwaysUseTURN=1: no ETRN is sent");
        if self.config.turn_credentials.is_none() {
            self.decide(
                Rule::TurnForm,
                "no SASL credentials are configured, so no TURN either",
            );
            return Dequeue::Nothing;
        }
        if !peer.advertises("AUTH") {
            self.decide(
                Rule::TurnForm,
                "the peer does not advertise AUTH, so IMS cannot authenticate for TURN",
            );
            return Dequeue::Nothing;
        }
        self.decide(Rule::TurnForm, "AUTH, then TURN, after the outbound mail");
        Dequeue::Turn
    }

    /// T2, T3: the domain set AlwaysUseETRN sends.
    fn always_use_etrn_set(&mut self) -> Vec<PlannedEtrn> {
        let c = self.config;
        match c.routing {
            RoutingMode::DoNotReroute => {
                let domain = c.site_address.domain().clone();
                self.decide(
                    Rule::SiteDomain,
                    format!(
                        "\"Do not reroute\": the site domain {:?}{}",
                        domain.raw(),
                        if c.routing_table.is_empty() {
                            ""
                        } else {
                            "; the routing table's rows are stale and unused"
                        }
                    ),
                );
                if c.site_address.has_several_at_signs() || !c.site_address.user_format().is_empty()
                {
                    self.decide(
                        Rule::SiteDomainSplit,
                        format!("{:?} split after its last '@'", c.site_address.raw()),
                    );
                }
                vec![PlannedEtrn {
                    arg: EtrnArg::plain(domain),
                    rule: Rule::SiteDomain,
                }]
            }
            RoutingMode::Reroute if c.routing_table.is_empty() => {
                self.decide(
                    Rule::EmptyTable,
                    "\"Reroute\" with an empty routing table: no domain to send",
                );
                Vec::new()
            }
            RoutingMode::Reroute => {
                self.decide(
                    Rule::RoutingTable,
                    format!(
                        "\"Reroute\": all {} routing-table rows",
                        c.routing_table.len()
                    ),
                );
                let mut out = Vec::new();
                for row in &c.routing_table {
                    if row.sent_to.matching == MatchKind::Exact {
                        self.decide(
                            Rule::ExactEntryStripped,
                            format!(
                                "\"{}\" is sent as {:?}",
                                row.sent_to,
                                row.sent_to.domain.raw()
                            ),
                        );
                    }
                    let rule = match row.action {
                        RoutingAction::Inbound => Rule::RoutingTable,
                        RoutingAction::Reroute(_) | RoutingAction::Relay => {
                            self.decide(
                                Rule::RoutingRowAnyAction,
                                format!("row \"{}\" is not inbound but is included", row.sent_to),
                            );
                            Rule::RoutingRowAnyAction
                        }
                    };
                    out.push(PlannedEtrn {
                        arg: EtrnArg::plain(row.sent_to.domain.clone()),
                        rule,
                    });
                }
                out
            }
        }
    }

    /// O-7: case-insensitive duplicates collapse to their first occurrence. The one kept takes
    /// the strongest rule among its rows: a domain with an inbound row is the routing table's.
    fn deduplicate(&mut self, list: Vec<PlannedEtrn>) -> Vec<PlannedEtrn> {
        let mut seen = HashSet::new();
        let mut out: Vec<PlannedEtrn> = Vec::with_capacity(list.len());
        for p in list {
            if seen.insert(p.arg.clone()) {
                out.push(p);
            } else {
                if p.rule == Rule::RoutingTable
                    && let Some(kept) = out.iter_mut().find(|k| k.arg == p.arg)
                    && kept.rule == Rule::RoutingRowAnyAction
                {
                    kept.rule = Rule::RoutingTable;
                }
                self.decide(
                    Rule::Deduplicate,
                    format!("{:?} is already in the set; sent once", p.arg.raw()),
                );
            }
        }
        out
    }
}
