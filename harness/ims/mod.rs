//! The reference model of Exchange 5.5 IMS as an ETRN client. No I/O: configuration in, plan out.
//!
//! - `config`: what the administrator configured (registry, Routing, Connections, Dial-up pages).
//! - `site_address` and `routing`: the two places the ETRN domains come from.
//! - `peer`: what the EHLO exchange told IMS about its peer.
//! - [`plan()`]: the pure decision function, each decision naming a [`Rule`].
//! - `reaction`: what IMS does after each ETRN reply.
//! - `client`: the IMS as a sans-IO SMTP client: replies in, the next command out. The
//!   built-in target drives it over TCP; the model's prediction pairs it in memory with the
//!   scenario's smart host.
//! - `rules`: every rule with its basis (KB article, RFC section) and grade.

pub(crate) mod client;
pub(crate) mod config;
pub(crate) mod peer;
pub(crate) mod plan;
pub(crate) mod reaction;
pub(crate) mod routing;
pub(crate) mod rules;
pub(crate) mod site_address;

pub use client::{Action, ConnectionRun, Cycle, EtrnExchange, ImsClient, cycle};
pub use config::{
    Credentials, Delivery, DialUp, ExchangeVersion, ImsConfig, Registry, RegistryFlag, RoutingMode,
};
pub use peer::PeerEhlo;
pub use plan::{ConnectionTarget, Decision, Dequeue, DequeuePlan, Greeting, PlannedEtrn, plan};
pub use reaction::{Reaction, react};
pub use routing::{MatchKind, RoutingAction, RoutingRow, SentTo};
pub use rules::{Grade, Rule};
pub use site_address::SiteAddress;
