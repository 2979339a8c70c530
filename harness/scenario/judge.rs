//! Judging what was sent against a scenario's `[expect]`, each deviation graded by its cause.
//!
//! A deviation takes the grade of the rule that explains it, not the scenario's grade wholesale:
//! `ETRN @d` where `d` is expected is `d` sent with an option character (a *should* of RFC 1985
//! §5), not "`d` missing"; `ETRN #ms.com` for a `#ms.com` row is the open question of the `#`
//! (informational); the site domain sent under "Reroute" breaks E15 (*should*); `A.COM` for
//! `a.com` is the same domain in another literal form (informational, both forms reported).
//! A missing domain is as certain as the least certain premise of the set that holds it:
//! with DisableETRN=1 (O-15), a dial-up default set (O-2) or a split site address (O-16) that
//! open point names it. Only what no rule explains takes the scenario's grade (and names no rule):
//! a named rule is always the one that set the grade.
//!
//! The same [`judge`] serves the corpus test and `expect` (the model's prediction against its own
//! files) and conformance runs (any implementation against the files), both from a
//! [`Recording`].

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::{Domain, EtrnArg, EtrnOption};
use crate::ims::{self, Grade, ImsConfig, MatchKind, PeerEhlo, RoutingMode, Rule};
use crate::proto::Recording;
use crate::proto::{CloseReason, EtrnFlag, EtrnRecord};
use crate::reply::ReplyCode;
use crate::wire::Verb;

use super::expect::ExpectedEtrn;
use super::file::Scenario;

/// What an implementation did in one delivery cycle, as far as expectations look.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, schemars::JsonSchema)]
pub struct Observed {
    /// The ETRN arguments sent, per connection, in order, with the reply each got (arguments that
    /// are no node name at all are left out: the protocol checks report them).
    pub connections: Vec<Vec<SentEtrn>>,
    /// Whether TURN was sent on any connection.
    pub turn: bool,
    /// The local command that ran, if any.
    pub local_command: Option<String>,
    /// The outbound messages each connection delivered (the end of DATA accepted), in order.
    pub messages: Vec<usize>,
    /// Per connection, whether its first ETRN came before its first MAIL (or it sent none) and
    /// the server then closed it: mail missing there was cut off by the order (spec O-4).
    pub etrn_first_then_closed: Vec<bool>,
    /// Per connection, whether the session fell back to HELO (accepted) after EHLO.
    pub helo: Vec<bool>,
    /// Per connection, the ETRN keyword as the smart host's EHLO reply wrote it (the first word
    /// of an ehlo-line equal to `ETRN` ignoring case), if it advertised one.
    pub etrn_keyword: Vec<Option<String>>,
}

impl Observed {
    /// What a smart host's recording shows, plus the local commands the client reported.
    pub fn from_recording(recording: &Recording, local_commands: Vec<String>) -> Self {
        Observed {
            connections: recording
                .sessions
                .iter()
                .map(|s| {
                    s.etrn
                        .iter()
                        .enumerate()
                        .flat_map(|(command, e)| nodes(&e.record, command))
                        .collect()
                })
                .collect(),
            turn: recording
                .sessions
                .iter()
                .any(|s| s.commands.iter().any(|c| c.verb == Verb::Turn)),
            local_command: local_commands.into_iter().next(),
            messages: recording
                .sessions
                .iter()
                .map(|s| {
                    s.messages
                        .iter()
                        .filter(|m| (200..300).contains(&m.reply))
                        .count()
                })
                .collect(),
            helo: recording
                .sessions
                .iter()
                .map(|s| {
                    s.commands.iter().any(|c| {
                        c.verb == Verb::Helo && c.reply.as_ref().is_some_and(|r| r.code == 250)
                    })
                })
                .collect(),
            etrn_first_then_closed: recording
                .sessions
                .iter()
                .map(|s| {
                    let first = |verb: Verb| s.commands.iter().position(|c| c.verb == verb);
                    let etrn_first = match (first(Verb::Etrn), first(Verb::Mail)) {
                        (Some(e), Some(m)) => e < m,
                        (Some(_), None) => true,
                        _ => false,
                    };
                    etrn_first && matches!(s.close, Some(CloseReason::Scripted))
                })
                .collect(),
            etrn_keyword: recording
                .sessions
                .iter()
                .map(|s| {
                    s.commands
                        .iter()
                        .filter(|c| c.verb == Verb::Ehlo)
                        .filter_map(|c| c.reply.as_ref())
                        .filter(|r| r.code == 250)
                        .flat_map(|r| r.lines.iter().skip(1))
                        .filter_map(|l| l.split_whitespace().next())
                        .find(|w| w.eq_ignore_ascii_case("ETRN"))
                        .map(str::to_owned)
                })
                .collect(),
        }
    }
}

/// One ETRN node sent, and the reply code it got (`None`: none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct SentEtrn {
    pub arg: EtrnArg,
    pub reply: Option<u16>,
    /// Which ETRN command of the connection (0-based) carried it: several nodes packed into one
    /// command share it.
    pub command: usize,
}

impl Observed {
    /// The arguments sent on each connection, without the replies.
    pub fn args(&self) -> Vec<Vec<&EtrnArg>> {
        self.connections
            .iter()
            .map(|c| c.iter().map(|s| &s.arg).collect())
            .collect()
    }
}

/// The nodes one ETRN asked for. Several nodes packed into one command count as each of them
/// (the protocol checks grade the packing itself, RFC 1985 §5), so a client that packs is not
/// also told its domains are missing. `raw` escapes only what no node name contains.
fn nodes(record: &EtrnRecord, command: usize) -> Vec<SentEtrn> {
    let args: Vec<EtrnArg> = if record.flags.contains(&EtrnFlag::SeveralNodes) {
        let pieces: Result<Vec<EtrnArg>, _> = record
            .raw()
            .split([' ', ','])
            .filter(|p| !p.is_empty())
            .map(EtrnArg::parse)
            .collect();
        pieces.unwrap_or_default()
    } else {
        record.arg().into_iter().cloned().collect()
    };
    args.into_iter()
        .map(|arg| SentEtrn {
            arg,
            reply: record.reply,
            command,
        })
        .collect()
}

/// How an observation differs from an expectation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Difference {
    Missing {
        arg: String,
    },
    Unexpected {
        arg: String,
    },
    /// An expected node sent with another option character (`@d` or `#d` for `d`).
    Altered {
        expected: String,
        sent: String,
    },
    /// An expected domain sent in another literal form: case, trailing dot, A- or U-label.
    Form {
        expected: String,
        sent: String,
        differs_in: Vec<FormDifference>,
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
    /// Fewer outbound messages delivered on a connection than the model delivers there.
    OutboundMail {
        expected: usize,
        delivered: usize,
    },
}

/// One way two texts of the same domain differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FormDifference {
    Case,
    TrailingDot,
    /// The A-label (`xn--...`) where the configuration has the U-label.
    ALabel,
    /// The U-label where the configuration has the A-label.
    ULabel,
}

impl FormDifference {
    fn label(self) -> &'static str {
        match self {
            FormDifference::Case => "case",
            FormDifference::TrailingDot => "trailing dot",
            FormDifference::ALabel => "A-label for a U-label",
            FormDifference::ULabel => "U-label for an A-label",
        }
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::Missing { arg } => write!(f, "ETRN {arg} expected but not sent"),
            Difference::Unexpected { arg } => write!(f, "ETRN {arg} sent but not expected"),
            Difference::Altered { expected, sent } => {
                write!(f, "ETRN {sent} sent where ETRN {expected} is expected")
            }
            Difference::Form {
                expected,
                sent,
                differs_in,
            } => {
                let how: Vec<&str> = differs_in.iter().map(|d| d.label()).collect();
                write!(
                    f,
                    "ETRN {sent} sent for {expected} (same domain; differs in {})",
                    how.join(", ")
                )
            }
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
            Difference::OutboundMail {
                expected,
                delivered,
            } => write!(
                f,
                "{delivered} of {expected} queued outbound message(s) delivered"
            ),
        }
    }
}

/// A difference, how much it counts, and the rule that explains it. It reads back from a JSON
/// report (`etrn-harness report`), its rule by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Deviation {
    pub grade: Grade,
    /// The connection it was seen on, where it concerns one: 0-based here, written 1-based
    /// (the first connection is 1, as the human report and a violation's `session` count).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "one_based")]
    #[schemars(range(min = 1))]
    pub connection: Option<usize>,
    /// The model's rule that explains it and gives its grade; `None`: the scenario's own grade.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "rule_id",
        deserialize_with = "rule_by_id"
    )]
    #[schemars(with = "Option<String>")]
    pub rule: Option<Rule>,
    #[serde(flatten)]
    pub difference: Difference,
}

fn one_based<S: Serializer>(connection: &Option<usize>, s: S) -> Result<S::Ok, S::Error> {
    match connection {
        Some(c) => s.serialize_u64(u64::try_from(*c).unwrap_or(u64::MAX).saturating_add(1)),
        None => s.serialize_none(),
    }
}

fn rule_id<S: Serializer>(rule: &Option<Rule>, s: S) -> Result<S::Ok, S::Error> {
    match rule {
        Some(r) => s.serialize_str(r.id()),
        None => s.serialize_none(),
    }
}

fn rule_by_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Rule>, D::Error> {
    let Some(id) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    Rule::from_id(&id)
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom("a rule id this etrn-harness does not know"))
}

impl fmt::Display for Deviation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.grade, self.difference)?;
        if let Some(c) = self.connection {
            write!(f, " (connection {})", c + 1)?;
        }
        if let Some(r) = self.rule {
            write!(f, " [{}, {}]", r.id(), r.basis())?;
        }
        Ok(())
    }
}

impl Deviation {
    /// The argument as sent, for a deviation that grades it by its cause, so the protocol
    /// checks do not grade its option character a second time.
    pub fn explained_arg(&self) -> Option<&str> {
        match &self.difference {
            Difference::Altered { sent, .. } | Difference::Form { sent, .. } => Some(sent),
            Difference::Unexpected { arg } if self.rule.is_some() => Some(arg),
            _ => None,
        }
    }
}

/// Compares an observation with a scenario's expectations: the number of connections, what each
/// sent, TURN, the dial-up command.
pub fn judge(scenario: &Scenario, observed: &Observed) -> Vec<Deviation> {
    let causes = Causes::new(&scenario.ims);
    let mut out = Vec::new();
    out.extend(connection_count(scenario, observed, &causes));
    out.extend(each_connection(scenario, observed, &causes));
    out.extend(turn(scenario, observed));
    out.extend(local_command(scenario, observed));
    out
}

/// A connection count other than the expected one.
fn connection_count(
    scenario: &Scenario,
    observed: &Observed,
    causes: &Causes<'_>,
) -> Option<Deviation> {
    let e = &scenario.expect;
    let expected = e.expected_connections()?;
    if expected as usize == observed.connections.len() {
        return None;
    }
    let rule = if causes.connections == 0 {
        causes.deciding.unwrap_or(Rule::NoOutboundNoConnection)
    } else if observed.connections.len() < expected as usize {
        causes.connection_rule_for(observed.connections.len())
    } else {
        causes.connection_rule()
    };
    // The rule grades the count; `connections_grade` only where no rule explains it.
    let (grade, rule) = graded(Some(rule), e.connections_grade.unwrap_or(rule.grade()));
    Some(deviation(
        grade,
        rule,
        Difference::Connections {
            expected,
            actual: observed.connections.len(),
        },
    ))
}

/// The deviations of each connection's ETRNs, numbered.
fn each_connection(
    scenario: &Scenario,
    observed: &Observed,
    causes: &Causes<'_>,
) -> Vec<Deviation> {
    let e = &scenario.expect;
    let default = scenario.grade;
    let mut out = Vec::new();
    // Every connection made, and every connection the expectations (or the model) call for: a
    // connection never made has sent nothing, so its expected ETRNs are missing.
    let expected_count = e
        .expected_connections()
        .map_or(causes.connections, |n| n as usize);
    for i in 0..observed.connections.len().max(expected_count) {
        // Past the listed connections only the connection count is judged.
        let Some(expected) = e.etrn_on(i) else {
            continue;
        };
        let made = observed.connections.get(i);
        let connection = Connection {
            expected,
            absent: &e.absent,
            order: e.order,
            default,
            causes,
            made: made.is_some(),
            index: i,
            keyword: observed.etrn_keyword.get(i).cloned().flatten(),
            helo: observed.helo.get(i).copied().unwrap_or(false),
            ehlo_seen: observed.etrn_keyword.len() > i,
        };
        let sent = made.map_or(&[][..], Vec::as_slice);
        out.extend(connection.judge(sent).into_iter().map(|mut d| {
            d.connection = Some(i);
            d
        }));
    }
    out
}

/// TURN sent where it was not expected, or not sent where it was.
fn turn(scenario: &Scenario, observed: &Observed) -> Option<Deviation> {
    let e = &scenario.expect;
    if e.turn == observed.turn {
        return None;
    }
    // Under AlwaysUseTURN the form of the TURN exchange is the open point (O-14); elsewhere
    // a TURN replaces what should have been ETRN.
    let rule = if scenario.ims.registry.always_use_turn() {
        Rule::TurnForm
    } else {
        Rule::TurnInsteadOfEtrn
    };
    let (grade, rule) = graded(Some(rule), e.turn_grade.unwrap_or(scenario.grade));
    Some(deviation(
        grade,
        rule,
        Difference::Turn { expected: e.turn },
    ))
}

/// A dial-up command other than the expected one.
fn local_command(scenario: &Scenario, observed: &Observed) -> Option<Deviation> {
    let e = &scenario.expect;
    if e.local_command == observed.local_command {
        return None;
    }
    let (grade, rule) = graded(Some(Rule::DialUpCommand), scenario.grade);
    Some(deviation(
        grade,
        rule,
        Difference::LocalCommand {
            expected: e.local_command.clone(),
            actual: observed.local_command.clone(),
        },
    ))
}

/// The grade a deviation takes and the rule it names: the rule's own grade whenever a rule explains
/// the difference, so a named rule is always the one that set the grade; the scenario's grade (or
/// one expectation's, `order`, `connections_grade`, `turn_grade`) only for what no rule explains.
fn graded(rule: Option<Rule>, scenario: Grade) -> (Grade, Option<Rule>) {
    match rule {
        Some(r) => (r.grade(), Some(r)),
        None => (scenario, None),
    }
}

/// The outbound mail: each connection the client made must deliver as many messages as the
/// model's client delivers on that connection against the same smart host (`expected`, the
/// prediction's observation), so a server that refuses MAIL asks for nothing. ETRN rides the
/// connection opened for mail (KB241157): a client that connects only to send ETRN breaks
/// [`Rule::OutboundMail`]. Mail sent after the ETRNs is the O-4 protocol check's, not this one's.
pub fn judge_mail(expected: &Observed, observed: &Observed) -> Vec<Deviation> {
    observed
        .messages
        .iter()
        .zip(&expected.messages)
        .enumerate()
        .filter(|(_, (delivered, owed))| delivered < owed)
        .map(|(i, (delivered, owed))| {
            // ETRN first, and the server closed after it: the mail was cut off by the order,
            // which O-4 grades (as replies by occurrence make `etrn-order` grade a domain).
            let rule = if observed.etrn_first_then_closed.get(i) == Some(&true) {
                Rule::OutboundFirst
            } else {
                Rule::OutboundMail
            };
            Deviation {
                grade: rule.grade(),
                connection: Some(i),
                rule: Some(rule),
                difference: Difference::OutboundMail {
                    expected: *owed,
                    delivered: *delivered,
                },
            }
        })
        .collect()
}

/// What the configuration says about arguments the expectations do not list.
struct Causes<'a> {
    config: &'a ImsConfig,
    /// What the model sends on a connection whose replies are all successes: the set whose order
    /// and reply handling decide what goes on the wire.
    planned: Vec<ims::PlannedEtrn>,
    /// The rule that decides the domain set (site domain, routing table, dial-up list), or, where
    /// the model sends nothing, the rule that says so (version gate, no AlwaysUseETRN, TURN).
    deciding: Option<Rule>,
    /// How many connections the model makes.
    connections: usize,
    /// The AlwaysUseETRN set, when a dial-up list replaces it (the O-13 baseline).
    replaced_by_dial_up: Vec<EtrnArg>,
    /// The domains of the dial-up list.
    dial_up_list: Vec<Domain>,
}

impl<'a> Causes<'a> {
    fn new(config: &'a ImsConfig) -> Self {
        let etrn_peer = PeerEhlo::esmtp(["ETRN"]);
        let plan = ims::plan(config, &etrn_peer);
        let planned: Vec<ims::PlannedEtrn> = match &plan.session.dequeue {
            ims::Dequeue::Etrn(list) => list.clone(),
            _ => Vec::new(),
        };
        let deciding = if planned.is_empty() {
            // The first decision that ruled ETRN out.
            plan.decisions.iter().map(|d| d.rule).find(|r| {
                matches!(
                    r,
                    Rule::VersionGate
                        | Rule::NoOutboundNoConnection
                        | Rule::TurnInsteadOfEtrn
                        | Rule::DefaultDialUpOnly
                        | Rule::EmptyTable
                )
            })
        } else {
            planned.first().map(|p| match p.rule {
                Rule::RoutingRowAnyAction => Rule::RoutingTable,
                other => other,
            })
        };
        // O-14: AlwaysUseTURN rules ETRN out for certain only with credentials (KB257979,
        // "rather than ETRN"); without them what the IMS does is the open point.
        let deciding = match deciding {
            Some(Rule::TurnInsteadOfEtrn) if config.turn_credentials.is_none() => {
                Some(Rule::TurnForm)
            }
            other => other,
        };
        let dial_up_list = match &config.dialup {
            Some(ims::DialUp::Etrn { domains }) => domains.clone(),
            _ => Vec::new(),
        };
        let replaced_by_dial_up = if !dial_up_list.is_empty() && config.registry.always_use_etrn() {
            // The model itself says what AlwaysUseETRN would send without the dial-up list.
            // With mail queued, whatever the scenario says: without any mail and without the
            // dial-up list the model makes no connection, and would name no set at all.
            let mut without = config.clone();
            without.dialup = None;
            without.outbound_messages = without.outbound_messages.max(1);
            ims::plan(&without, &etrn_peer)
                .etrn_args()
                .into_iter()
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        Causes {
            config,
            planned,
            deciding,
            connections: plan.connections.len(),
            replaced_by_dial_up,
            dial_up_list,
        }
    }

    /// The rule that makes the model open its connections.
    fn connection_rule(&self) -> Rule {
        let dial_up_etrn = matches!(self.config.dialup, Some(ims::DialUp::Etrn { .. }));
        if self.config.outbound_messages == 0 && dial_up_etrn {
            Rule::DialUpWithoutOutbound
        } else {
            Rule::EveryConnection
        }
    }

    /// The rule that puts `arg` in the model's set, for an expected argument not sent. A domain
    /// with an inbound row is the routing table's (must), whichever of its rows came first.
    fn planned_rule(&self, arg: &EtrnArg) -> Option<Rule> {
        let rule = self
            .planned
            .iter()
            .find(|p| p.arg == *arg)
            .map(|p| p.rule)?;
        let inbound = |d: &Domain| {
            self.config
                .routing_table
                .iter()
                .any(|r| r.action == ims::RoutingAction::Inbound && &r.sent_to.domain == d)
        };
        Some(match (rule, arg.domain()) {
            (Rule::RoutingRowAnyAction, Some(d)) if inbound(d) => Rule::RoutingTable,
            _ => rule,
        })
    }

    /// The rule that grades `arg` expected and not sent: the weakest of the rule that puts it in
    /// the set and the open points that set rests on: DisableETRN's O-15 and the dial-up default
    /// O-2 where the connection sent none of the set, a site address with several `@` and an
    /// unusual literal form (O-16). A deviation is only as certain as its least certain
    /// premise; the first of equally weak ones is named.
    fn missing_rule(&self, arg: &EtrnArg, none_of_the_set: bool) -> Option<Rule> {
        let rule = self.planned_rule(arg)?;
        let site = &self.config.site_address;
        // Only a site address with several `@` leaves the domain in doubt.
        let split = rule == Rule::SiteDomain && site.has_several_at_signs();
        // An unusual literal form (a trailing dot, a U-label, an address, over 64 characters,
        // RFC 821's limit) is the open point O-16: a client may well refuse to send it.
        let unusual = arg.domain().is_some_and(|d| {
            let raw = d.raw();
            raw.ends_with('.') || !raw.is_ascii() || d.is_all_numeric() || raw.len() > 64
        });
        let dial_up_default = matches!(
            &self.config.dialup,
            Some(ims::DialUp::Etrn { domains }) if domains.is_empty()
        ) && !self.config.registry.always_use_etrn();
        // DisableETRN and the dial-up default decide which set there is, if any: they explain a
        // connection that sent none of the model's set, not one that left part of it out.
        let premises = [
            (
                none_of_the_set && self.config.registry.disable_etrn(),
                Rule::DisableEtrnServerOnly,
            ),
            (none_of_the_set && dial_up_default, Rule::DialUpDefault),
            (split, Rule::SiteDomainSplit),
            (unusual, Rule::LiteralForm),
        ];
        Some(
            premises
                .into_iter()
                .filter_map(|(holds, premise)| holds.then_some(premise))
                .chain([rule])
                .min_by_key(|r| r.grade())
                // Never empty: the chain holds `rule` itself.
                .unwrap_or(rule),
        )
    }

    /// The rule that makes the model open connection `index` (0-based) of its cycle.
    fn connection_rule_for(&self, index: usize) -> Rule {
        let per_host = self.config.connections_per_host.max(1) as usize;
        if per_host > 1 && !index.is_multiple_of(per_host) {
            Rule::ParallelConnections
        } else {
            self.connection_rule()
        }
    }

    /// The configuration's rule that explains sending `arg`, which no expectation of this
    /// connection lists (order and replies aside: [`Connection::unmatched`] weighs those).
    fn unexpected(&self, arg: &EtrnArg) -> Option<Rule> {
        // Where the model sends nothing at all (version gate, no AlwaysUseETRN, TURN), whatever
        // was sent breaks the rule that says so (the deciding rule, weighed by the caller).
        if self.planned.is_empty() {
            return None;
        }
        let domain = arg.domain()?;
        let exact_row = self
            .config
            .routing_table
            .iter()
            .any(|r| r.sent_to.matching == MatchKind::Exact && &r.sent_to.domain == domain);
        if arg.option() == EtrnOption::Queue && exact_row {
            return Some(Rule::ExactEntryStripped);
        }
        let configured = self
            .config
            .routing_table
            .iter()
            .any(|r| &r.sent_to.domain == domain)
            || self.dial_up_list.contains(domain);
        if arg.option() != EtrnOption::None {
            // A domain of the configuration with `@` or `#` added (RFC 1985 §5).
            return (configured || domain == self.config.site_address.domain())
                .then_some(Rule::OneDomainPerCommand);
        }
        if self.config.routing == RoutingMode::Reroute
            && domain == self.config.site_address.domain()
            && !configured
        {
            return Some(if self.config.routing_table.is_empty() {
                Rule::EmptyTable
            } else {
                Rule::SiteDomainUnderReroute
            });
        }
        if self.replaced_by_dial_up.contains(arg) {
            return Some(Rule::DialUpWithAlwaysUseEtrn);
        }
        None
    }

    /// The rule that explains `sent` in place of the expected `expected` (same node, another
    /// option character).
    fn altered(&self, sent: &EtrnArg, expected: &EtrnArg) -> Rule {
        let exact_row = |d: &Domain| {
            self.config
                .routing_table
                .iter()
                .any(|r| r.sent_to.matching == MatchKind::Exact && &r.sent_to.domain == d)
        };
        match (sent.option(), expected.option(), sent.domain()) {
            (EtrnOption::Queue, EtrnOption::None, Some(d)) if exact_row(d) => {
                Rule::ExactEntryStripped
            }
            _ => Rule::OneDomainPerCommand,
        }
    }
}

/// Whether the model's client stops sending ETRN after this reply code.
fn stops(reply: Option<u16>) -> bool {
    match reply.and_then(ReplyCode::new) {
        Some(code) => ims::react(code).0 != ims::Reaction::Continue,
        None => true,
    }
}

/// One connection's judgement.
struct Connection<'a> {
    expected: &'a [ExpectedEtrn],
    absent: &'a [ExpectedEtrn],
    order: Option<Grade>,
    default: Grade,
    causes: &'a Causes<'a>,
    /// False for a connection the client never made.
    made: bool,
    /// Its place in the cycle (0-based).
    index: usize,
    /// The ETRN keyword as this connection's EHLO reply wrote it.
    keyword: Option<String>,
    /// Whether this connection fell back to HELO.
    helo: bool,
    /// Whether the observation says what this connection's EHLO reply advertised.
    ehlo_seen: bool,
}

/// How a sent argument was matched to an expected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    Exact,
    /// Same domain, another literal form.
    Form,
    /// Same node, another option character.
    Altered,
}

impl Connection<'_> {
    /// The deviations of what this connection sent from what it should have: each sent argument
    /// matched to an expected one or not, the expected ones not sent, duplicates, the order.
    fn judge(&self, sent: &[SentEtrn]) -> Vec<Deviation> {
        // How much a difference of order counts where no rule is named; the order rule grades
        // it otherwise (see `graded`).
        let order_grade = self.order.unwrap_or(self.order_rule().grade());
        let (matched, taken) = self.match_sent(sent);
        let mut out = self.sent_deviations(sent, &matched, order_grade);
        out.extend(self.missing(sent, &taken, order_grade));
        out.extend(duplicates(sent));
        out.extend(self.order_deviation(sent, &matched));
        out
    }

    /// For each sent argument, the expected one it matches and how; and which expected ones are
    /// matched.
    fn match_sent(&self, sent: &[SentEtrn]) -> (Vec<Option<(usize, Match)>>, Vec<bool>) {
        // Each expected argument is matched by the first sent argument that names it, the
        // closest form first: the very text, then another form of it, then another option.
        let mut matched: Vec<Option<(usize, Match)>> = vec![None; sent.len()];
        let mut taken = vec![false; self.expected.len()];
        for kind in [Match::Exact, Match::Form, Match::Altered] {
            for (s, e) in sent.iter().enumerate() {
                if matched[s].is_some() {
                    continue;
                }
                let found = self.expected.iter().enumerate().position(|(x, x_arg)| {
                    !taken[x]
                        && match kind {
                            Match::Exact => x_arg.arg.raw() == e.arg.raw(),
                            Match::Form => x_arg.arg == e.arg,
                            Match::Altered => same_node(&x_arg.arg, &e.arg),
                        }
                });
                if let Some(x) = found {
                    taken[x] = true;
                    matched[s] = Some((x, kind));
                }
            }
        }
        (matched, taken)
    }

    /// The deviations of the sent arguments: another form, another option, or unmatched.
    fn sent_deviations(
        &self,
        sent: &[SentEtrn],
        matched: &[Option<(usize, Match)>],
        order_grade: Grade,
    ) -> Vec<Deviation> {
        let mut out = Vec::new();
        for (s, e) in sent.iter().enumerate() {
            let arg = &e.arg;
            match matched[s] {
                Some((_, Match::Exact)) => {}
                Some((x, Match::Form)) => {
                    let expected = &self.expected[x].arg;
                    out.push(deviation(
                        Grade::Informational,
                        Some(Rule::LiteralForm),
                        Difference::Form {
                            expected: expected.raw().into(),
                            sent: arg.raw().into(),
                            differs_in: form_differences(expected, arg),
                        },
                    ));
                }
                Some((x, Match::Altered)) => {
                    let expected = &self.expected[x].arg;
                    let rule = self.causes.altered(arg, expected);
                    out.push(deviation(
                        rule.grade(),
                        Some(rule),
                        Difference::Altered {
                            expected: expected.raw().into(),
                            sent: arg.raw().into(),
                        },
                    ));
                }
                None => {
                    // Another text of an argument sent and matched elsewhere, or sent before, is
                    // a duplicate, reported below.
                    let repeat = sent.iter().enumerate().any(|(j, other)| {
                        j != s && other.arg == *arg && (j < s || matched[j].is_some())
                    });
                    if !repeat {
                        out.push(self.unmatched(sent, s, order_grade));
                    }
                }
            }
        }
        out
    }

    /// The expected arguments not sent, each graded by the rule that explains its absence.
    fn missing(&self, sent: &[SentEtrn], taken: &[bool], order_grade: Grade) -> Vec<Deviation> {
        let mut out = Vec::new();
        // An expected argument not sent after a reply that stops ETRN was cut off by that reply:
        // the client asked in another order than the model (the replies decide which come first).
        let stopped_by_reply = sent.iter().any(|e| stops(e.reply));
        // A client that stopped after a reply other than a plain 250 broke that reply's rule.
        let last_reply_rule = sent
            .last()
            .and_then(|e| e.reply)
            .filter(|code| *code != 250)
            .and_then(ReplyCode::new)
            .map(|code| ims::react(code).1);
        for (x, e) in self.expected.iter().enumerate() {
            if !taken[x] {
                // The rule behind the expected argument grades its absence (see `graded`).
                let (grade, rule) = if stopped_by_reply {
                    graded(Some(self.order_rule()), order_grade)
                } else if !self.made {
                    // The connection's own rule grades it: every connection (must), a parallel
                    // one (informational), a dial-up one without mail (informational).
                    let rule = self.causes.connection_rule_for(self.index);
                    (rule.grade(), Some(rule))
                } else if sent.is_empty() && self.keyword.as_deref().is_some_and(|k| k != "ETRN") {
                    // Nothing sent although the EHLO reply advertised ETRN, in another case or
                    // with parameters: the keyword was not recognised.
                    (Rule::EhloGating.grade(), Some(Rule::EhloGating))
                } else {
                    // A client that read an open point otherwise sends none of the model's set
                    // (perhaps other domains): the open point grades what it left out.
                    let none_of_the_set = !sent
                        .iter()
                        .any(|s| self.causes.planned_rule(&s.arg).is_some());
                    let rule = last_reply_rule
                        .or_else(|| self.causes.missing_rule(&e.arg, none_of_the_set));
                    graded(rule, e.grade.unwrap_or(self.default))
                };
                out.push(deviation(
                    grade,
                    rule,
                    Difference::Missing {
                        arg: e.arg.raw().into(),
                    },
                ));
            }
        }
        out
    }

    /// A difference of order among the matched arguments, where the order is judged.
    fn order_deviation(
        &self,
        sent: &[SentEtrn],
        matched: &[Option<(usize, Match)>],
    ) -> Option<Deviation> {
        let order = self.order?;
        // The expected positions of the matched arguments, in the order they were sent.
        let positions: Vec<usize> = matched.iter().flatten().map(|(x, _)| *x).collect();
        if !positions.windows(2).any(|w| w[0] > w[1]) {
            return None;
        }
        let (grade, rule) = graded(Some(self.order_rule()), order);
        Some(deviation(
            grade,
            rule,
            Difference::Order {
                expected: self.expected.iter().map(|e| e.arg.raw().into()).collect(),
                actual: sent.iter().map(|e| e.arg.raw().into()).collect(),
            },
        ))
    }
}

/// A deviation with no connection number yet (`each_connection` sets it for a connection's).
fn deviation(grade: Grade, rule: Option<Rule>, difference: Difference) -> Deviation {
    Deviation {
        grade,
        connection: None,
        rule,
        difference,
    }
}

/// An argument sent more than once, once per argument.
fn duplicates(sent: &[SentEtrn]) -> Vec<Deviation> {
    let mut out = Vec::new();
    let mut counts: Vec<(&EtrnArg, usize)> = Vec::new();
    for e in sent {
        match counts.iter_mut().find(|(a, _)| **a == e.arg) {
            Some((_, n)) => *n += 1,
            None => counts.push((&e.arg, 1)),
        }
    }
    for (arg, times) in counts {
        if times > 1 {
            out.push(deviation(
                Rule::Deduplicate.grade(),
                Some(Rule::Deduplicate),
                Difference::Duplicated {
                    arg: arg.raw().into(),
                    times,
                },
            ));
        }
    }
    out
}

impl Connection<'_> {
    /// The deviation for sent argument `s`, which matches no expectation and repeats nothing:
    /// forbidden or unexpected, with the rule that explains it.
    fn unmatched(&self, sent: &[SentEtrn], s: usize, order_grade: Grade) -> Deviation {
        let arg = &sent[s].arg;
        let in_set = self.causes.planned_rule(arg).is_some();
        // A reply earlier on this connection (not one shared by packed nodes) that stops ETRN.
        let stop_reply = sent[..s]
            .iter()
            .find(|earlier| earlier.command < sent[s].command && stops(earlier.reply))
            .map(|earlier| earlier.reply);
        // A domain of the set sent after such a reply breaks that reply's rule (the protocol
        // checks report the same from the wire).
        let reply_rule =
            stop_reply
                .filter(|_| in_set)
                .map(|reply| match reply.and_then(ReplyCode::new) {
                    Some(code) => ims::react(code).1,
                    None => Rule::NoReply,
                });
        // A domain of the set sent before any stop, where the scenario expects domains of the
        // set: the client asked in another order, and replies by occurrence decided the rest,
        // whatever `absent` says about it.
        let by_order = stop_reply.is_none() && in_set && self.expects_the_model_set();
        let (grade, rule, difference) = match self.absent.iter().find(|f| f.arg == *arg) {
            Some(f) if !by_order => {
                // A rule that explains the argument grades it (a reply's, an open point's),
                // else the rule that decides the set; the scenario's grade only without either.
                let explaining = reply_rule
                    .or_else(|| self.causes.unexpected(arg))
                    .or(self.causes.deciding);
                let (grade, rule) = graded(explaining, f.grade.unwrap_or(self.default));
                (
                    grade,
                    rule,
                    Difference::Forbidden {
                        arg: arg.raw().into(),
                    },
                )
            }
            _ => {
                let cause = reply_rule
                    .or(by_order.then_some(Rule::EtrnOrder))
                    .or_else(|| self.causes.unexpected(arg));
                let (grade, rule) = match cause {
                    Some(Rule::EtrnOrder) => graded(Some(self.order_rule()), order_grade),
                    Some(r) => (r.grade(), Some(r)),
                    // On a connection that was to send nothing although the model has a set,
                    // the reason is this connection's own: a HELO fall-back, an EHLO reply
                    // without ETRN (their rules grade), or a reply by occurrence (the scenario
                    // says why).
                    None if self.expected.is_empty() && !self.causes.planned.is_empty() => {
                        match self.gating_rule() {
                            Some(r) => (r.grade(), Some(r)),
                            None => (self.default, None),
                        }
                    }
                    // Otherwise it breaks the rule that decides the set (or rules ETRN out), at
                    // that rule's grade.
                    None => graded(self.causes.deciding, self.default),
                };
                (
                    grade,
                    rule,
                    Difference::Unexpected {
                        arg: arg.raw().into(),
                    },
                )
            }
        };
        Deviation {
            grade,
            connection: None,
            rule,
            difference,
        }
    }

    /// The rule that kept ETRN off this connection, when its EHLO exchange did.
    fn gating_rule(&self) -> Option<Rule> {
        if !self.made || !self.ehlo_seen {
            None
        } else if self.helo {
            Some(Rule::HeloFallback)
        } else if self.keyword.is_none() {
            Some(Rule::EhloGating)
        } else {
            None
        }
    }

    /// The rule that orders this connection's domains: a dial-up list is sent in list order by
    /// its own rule (T10), anything else in routing-table order (O-5).
    fn order_rule(&self) -> Rule {
        match self
            .expected
            .first()
            .and_then(|e| self.causes.planned_rule(&e.arg))
        {
            Some(Rule::DialUpList) => Rule::DialUpList,
            _ => Rule::EtrnOrder,
        }
    }

    /// Whether this connection is expected to send ETRNs, all of them of the model's own set.
    fn expects_the_model_set(&self) -> bool {
        !self.expected.is_empty()
            && self
                .expected
                .iter()
                .all(|x| self.causes.planned_rule(&x.arg).is_some())
    }
}

/// The same node, whatever the option character: `d`, `@d` and `#d`.
fn same_node(a: &EtrnArg, b: &EtrnArg) -> bool {
    match (a.domain(), b.domain()) {
        (Some(x), Some(y)) => x == y,
        _ => {
            a.normalised().trim_start_matches(['@', '#'])
                == b.normalised().trim_start_matches(['@', '#'])
        }
    }
}

/// How two texts of one domain differ.
fn form_differences(expected: &EtrnArg, sent: &EtrnArg) -> Vec<FormDifference> {
    let (e, s) = (expected.raw(), sent.raw());
    let mut out = Vec::new();
    let (e_bare, s_bare) = (e.trim_end_matches('.'), s.trim_end_matches('.'));
    if e.ends_with('.') != s.ends_with('.') {
        out.push(FormDifference::TrailingDot);
    }
    match (e_bare.is_ascii(), s_bare.is_ascii()) {
        (false, true) => out.push(FormDifference::ALabel),
        (true, false) => out.push(FormDifference::ULabel),
        _ if e_bare != s_bare => out.push(FormDifference::Case),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn scenario(ims: &str, expect: &str) -> Scenario {
        let text = format!(
            "id = \"t\"\ntitle = \"t\"\nbasis = [\"KB269771\"]\ngrade = \"must\"\n[ims]\nsite_address = \"@site.com\"\noutbound_messages = 1\nregistry = {{ AlwaysUseETRN = 1 }}\n{ims}\n[expect]\n{expect}\n"
        );
        match super::super::parse_scenario(Path::new("t.toml"), &text) {
            Ok(s) => s,
            Err(e) => panic!("{e:?}"),
        }
    }

    fn observed(connections: &[&[&str]]) -> Observed {
        Observed {
            connections: connections
                .iter()
                .map(|c| {
                    c.iter()
                        .enumerate()
                        .map(|(command, a)| SentEtrn {
                            arg: EtrnArg::parse(a).unwrap(),
                            reply: Some(250),
                            command,
                        })
                        .collect()
                })
                .collect(),
            ..Observed::default()
        }
    }

    fn summary(s: &Scenario, o: &Observed) -> Vec<String> {
        judge(s, o).iter().map(ToString::to_string).collect()
    }

    const TABLE: &str = "routing_table = [{ sent_to = \"a.com\", action = \"inbound\" }, { sent_to = \"#ms.com\", action = \"inbound\" }]";

    #[test]
    fn a_rule_grades_whatever_the_expectation_says_and_repeats_are_duplicates() {
        let s = scenario(
            TABLE,
            "etrn = [\"a.com\", { arg = \"ms.com\", grade = \"informational\" }]\nabsent = [{ arg = \"x.com\", grade = \"should\" }]",
        );
        assert_eq!(
            summary(&s, &observed(&[&["x.com", "A.COM", "y.com", "a.com"]])),
            [
                "must: ETRN x.com sent although it must not be (connection 1) [routing-table, KB269771]",
                "must: ETRN y.com sent but not expected (connection 1) [routing-table, KB269771]",
                "must: ETRN ms.com expected but not sent (connection 1) [routing-table, KB269771]",
                "informational: ETRN A.COM sent 2 times on one connection (connection 1) [deduplicate, spec O-7]",
            ]
        );
    }

    #[test]
    fn an_option_character_is_graded_by_its_cause_not_as_a_missing_domain() {
        let s = scenario(TABLE, "etrn = [\"a.com\", \"ms.com\"]");
        assert_eq!(
            summary(&s, &observed(&[&["@a.com", "#ms.com"]])),
            [
                "should: ETRN @a.com sent where ETRN a.com is expected (connection 1) [one-domain-per-command, RFC 1985 §5]",
                "informational: ETRN #ms.com sent where ETRN ms.com is expected (connection 1) [exact-entry-stripped, KB169683; spec O-6]",
            ]
        );
        // '#' on a row that is no exact entry is an added option character.
        assert_eq!(
            judge(&s, &observed(&[&["#a.com", "ms.com"]]))[0].rule,
            Some(Rule::OneDomainPerCommand)
        );
    }

    #[test]
    fn the_site_domain_under_reroute_is_a_should() {
        let s = scenario(TABLE, "etrn = [\"a.com\", \"ms.com\"]");
        let d = judge(&s, &observed(&[&["a.com", "ms.com", "site.com"]]));
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].grade, d[0].rule),
            (Grade::Should, Some(Rule::SiteDomainUnderReroute))
        );
    }

    #[test]
    fn another_literal_form_is_informational_with_both_forms() {
        let s = scenario(
            "routing_table = [{ sent_to = \"Bücher.example.\", action = \"inbound\" }, { sent_to = \"a.com\", action = \"inbound\" }]",
            "etrn = [\"Bücher.example.\", \"a.com\"]",
        );
        let d = judge(&s, &observed(&[&["xn--bcher-kva.example", "A.com"]]));
        let forms: Vec<_> = d
            .iter()
            .map(|d| match &d.difference {
                Difference::Form {
                    expected,
                    sent,
                    differs_in,
                } => (
                    d.grade,
                    expected.as_str(),
                    sent.as_str(),
                    differs_in.clone(),
                ),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            forms,
            [
                (
                    Grade::Informational,
                    "Bücher.example.",
                    "xn--bcher-kva.example",
                    vec![FormDifference::TrailingDot, FormDifference::ALabel]
                ),
                (
                    Grade::Informational,
                    "a.com",
                    "A.com",
                    vec![FormDifference::Case]
                ),
            ]
        );
    }

    #[test]
    fn each_connection_is_judged_against_its_own_list() {
        let s = scenario(
            TABLE,
            "connections = 2\nconnections_grade = \"informational\"\n[[expect.connection]]\netrn = []\n[[expect.connection]]\netrn = [\"a.com\", \"ms.com\"]",
        );
        assert!(judge(&s, &observed(&[&[], &["a.com", "ms.com"]])).is_empty());
        assert_eq!(
            summary(
                &s,
                &observed(&[&["a.com", "ms.com"], &["a.com", "ms.com"], &[]])
            ),
            [
                "must: 3 connection(s) made, 2 expected [every-connection, KB175494, KB241157]",
                "must: ETRN a.com sent but not expected (connection 1)",
                "must: ETRN ms.com sent but not expected (connection 1)",
            ]
        );
    }

    #[test]
    fn reply_handling_and_order_explain_what_replies_cut_short() {
        let s = scenario(TABLE, "etrn = [\"a.com\"]");
        let sent = |reply_a, reply_ms| Observed {
            connections: vec![vec![
                SentEtrn {
                    arg: EtrnArg::parse("a.com").unwrap(),
                    reply: Some(reply_a),
                    command: 0,
                },
                SentEtrn {
                    arg: EtrnArg::parse("ms.com").unwrap(),
                    reply: Some(reply_ms),
                    command: 1,
                },
            ]],
            ..Observed::default()
        };
        // After a 500 the second ETRN breaks the reply rule, at its grade.
        let after_500 = judge(&s, &sent(500, 250));
        assert_eq!(
            (after_500[0].grade, after_500[0].rule),
            (Grade::Should, Some(Rule::ReplySyntax))
        );
        // Sent first, before any stop: another order, whatever `absent` says (replies by
        // occurrence decide what a scenario expects).
        let s = scenario(TABLE, "etrn = [\"a.com\"]\nabsent = [\"ms.com\"]");
        let reordered = Observed {
            connections: vec![vec![
                SentEtrn {
                    arg: EtrnArg::parse("ms.com").unwrap(),
                    reply: Some(250),
                    command: 0,
                },
                SentEtrn {
                    arg: EtrnArg::parse("a.com").unwrap(),
                    reply: Some(500),
                    command: 1,
                },
            ]],
            ..Observed::default()
        };
        let d = judge(&s, &reordered);
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].grade, d[0].rule),
            (Grade::Informational, Some(Rule::EtrnOrder))
        );
    }

    #[test]
    fn a_connection_never_made_misses_its_etrns() {
        let s = scenario(TABLE, "etrn = [\"a.com\", \"ms.com\"]");
        let d = judge(&s, &Observed::default());
        let missing: Vec<_> = d.iter().map(|d| (d.grade, d.rule)).collect();
        assert_eq!(
            missing,
            [
                (Grade::Must, Some(Rule::EveryConnection)),
                (Grade::Must, Some(Rule::EveryConnection))
            ]
        );
    }

    #[test]
    fn the_always_use_etrn_set_beside_a_dial_up_list_is_o13_without_mail_too() {
        // Without mail the re-plan without the list still names the AlwaysUseETRN set.
        let mut s = scenario(
            "dialup = { retrieval = \"etrn\", domains = [\"x.com\"] }\nrouting_table = [{ sent_to = \"a.com\", action = \"inbound\" }]",
            "etrn = [\"x.com\"]\nabsent = [\"a.com\"]",
        );
        s.ims.outbound_messages = 0;
        let d = judge(&s, &observed(&[&["x.com", "a.com"]]));
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].grade, d[0].rule),
            (Grade::Informational, Some(Rule::DialUpWithAlwaysUseEtrn))
        );
    }

    #[test]
    fn a_domain_with_an_inbound_row_is_the_routing_tables_whatever_row_came_first() {
        let s = scenario(
            "routing_table = [{ sent_to = \"ms.com\", action = \"reroute\", route_to = \"h.ms.net\" }, { sent_to = \"#ms.com\", action = \"inbound\" }]",
            "etrn = [\"ms.com\"]",
        );
        let d = judge(&s, &observed(&[&[]]));
        assert_eq!(
            d.iter().map(|d| (d.grade, d.rule)).collect::<Vec<_>>(),
            [(Grade::Must, Some(Rule::RoutingTable))]
        );
    }

    #[test]
    fn a_missing_domain_names_the_weakest_premise_of_its_set() {
        let missing_when = |ims: &str, sent: &[&str]| {
            let text = format!(
                "id = \"t\"\ntitle = \"t\"\nbasis = [\"KB269771\"]\ngrade = \"must\"\n[ims]\nsite_address = \"@site.com\"\noutbound_messages = 1\n{ims}\n[expect]\netrn = [\"site.com\"]\n"
            );
            let s = match super::super::parse_scenario(Path::new("t.toml"), &text) {
                Ok(s) => s,
                Err(e) => panic!("{e:?}"),
            };
            judge(&s, &observed(&[sent]))
                .iter()
                .filter(|d| matches!(d.difference, Difference::Missing { .. }))
                .map(|d| (d.grade, d.rule))
                .collect::<Vec<_>>()
        };
        let missing = |ims: &str| missing_when(ims, &[]);
        // DisableETRN=1 concerns the server role (O-15): an open point, so informational.
        let mut ims =
            "routing = \"do-not-reroute\"\nregistry = { AlwaysUseETRN = 1, DisableETRN = 1 }";
        assert_eq!(
            missing(ims),
            [(Grade::Informational, Some(Rule::DisableEtrnServerOnly))]
        );
        // Dial-up retrieval without a list and without AlwaysUseETRN: the O-2 default.
        ims = "routing = \"do-not-reroute\"\nregistry = { AlwaysUseETRN = 0 }\ndialup = { retrieval = \"etrn\" }";
        assert_eq!(
            missing(ims),
            [(Grade::Informational, Some(Rule::DialUpDefault))]
        );
        // Another reading of the open point (other domains, none of the set): still O-2. Part of
        // the set sent: the set was read as the model reads it, so its own rule grades the rest.
        assert_eq!(
            missing_when(ims, &["other.com"]),
            [(Grade::Informational, Some(Rule::DialUpDefault))]
        );
        let table = "routing = \"reroute\"\nregistry = { AlwaysUseETRN = 0 }\ndialup = { retrieval = \"etrn\" }\nrouting_table = [{ sent_to = \"site.com\", action = \"inbound\" }, { sent_to = \"b.com\", action = \"inbound\" }]";
        assert_eq!(
            missing_when(table, &["b.com"]),
            [(Grade::Must, Some(Rule::RoutingTable))]
        );
        // Nothing weaker: the site domain's own rule, must.
        ims = "routing = \"do-not-reroute\"\nregistry = { AlwaysUseETRN = 1 }";
        assert_eq!(missing(ims), [(Grade::Must, Some(Rule::SiteDomain))]);
    }

    #[test]
    fn every_named_rule_is_the_one_that_set_the_grade() {
        // Whatever the scenario says, a rule that explains the difference grades it.
        assert_eq!(
            graded(Some(Rule::SiteDomain), Grade::Informational),
            (Grade::Must, Some(Rule::SiteDomain))
        );
        assert_eq!(
            graded(Some(Rule::RoutingRowAnyAction), Grade::Must),
            (Grade::Informational, Some(Rule::RoutingRowAnyAction))
        );
        assert_eq!(graded(None, Grade::Should), (Grade::Should, None));
    }

    #[test]
    fn a_parallel_connection_never_made_takes_its_own_rules_grade() {
        let s = scenario(
            &format!("connections_per_host = 2\n{TABLE}"),
            "etrn = [\"a.com\", \"ms.com\"]\nconnections = 2",
        );
        let d = judge(&s, &observed(&[&["a.com", "ms.com"]]));
        assert!(!d.is_empty());
        for d in &d {
            assert_eq!(
                (d.grade, d.rule),
                (Grade::Informational, Some(Rule::ParallelConnections)),
                "{d}"
            );
        }
    }

    #[test]
    fn nothing_sent_to_an_etrn_keyword_in_another_case_names_ehlo_gating() {
        let s = scenario(TABLE, "etrn = [\"a.com\", \"ms.com\"]");
        let mut o = observed(&[&[]]);
        o.etrn_keyword = vec![Some("etrn".into())];
        let d = judge(&s, &o);
        assert!(
            d.iter()
                .all(|d| (d.grade, d.rule) == (Grade::Must, Some(Rule::EhloGating)))
        );
        // Upper case as written: nothing says the keyword was the cause.
        o.etrn_keyword = vec![Some("ETRN".into())];
        assert!(
            judge(&s, &o)
                .iter()
                .all(|d| d.rule == Some(Rule::RoutingTable))
        );
    }

    #[test]
    fn mail_not_delivered_is_a_must_unless_an_etrn_first_was_cut_off() {
        let expected = Observed {
            messages: vec![1],
            ..Observed::default()
        };
        let none = Observed {
            messages: vec![0],
            etrn_first_then_closed: vec![false],
            ..Observed::default()
        };
        let d = judge_mail(&expected, &none);
        assert_eq!(
            d.iter().map(|d| (d.grade, d.rule)).collect::<Vec<_>>(),
            [(Grade::Must, Some(Rule::OutboundMail))]
        );
        let cut_off = Observed {
            etrn_first_then_closed: vec![true],
            ..none
        };
        assert_eq!(
            judge_mail(&expected, &cut_off)[0].rule,
            Some(Rule::OutboundFirst)
        );
        assert!(judge_mail(&expected, &expected).is_empty());
    }

    #[test]
    fn order_is_judged_only_when_graded() {
        let unordered = scenario(TABLE, "etrn = [\"a.com\", \"ms.com\"]");
        assert!(judge(&unordered, &observed(&[&["ms.com", "a.com"]])).is_empty());
        let ordered = scenario(
            TABLE,
            "etrn = [\"a.com\", \"ms.com\"]\norder = \"informational\"",
        );
        let d = judge(&ordered, &observed(&[&["ms.com", "a.com"]]));
        assert_eq!(d.len(), 1);
        assert!(matches!(d[0].difference, Difference::Order { .. }));
        assert_eq!(d[0].grade, Grade::Informational);
    }
}
