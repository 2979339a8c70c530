//! Walking a plan against a peer's replies: which ETRN commands actually go out.
//!
//! The plan lists what IMS *would* send if every reply were a success; the reply handling
//! ([`super::reaction`]) cuts it short after 500/501 or 421. Running the plan against a scripted
//! peer, still without any I/O, gives the ETRN list a conformance run expects on the wire.

use serde::Serialize;

use crate::domain::EtrnArg;
use crate::reply::ReplyCode;

use super::plan::{Dequeue, DequeuePlan};
use super::reaction::{Reaction, react};
use super::rules::Rule;

/// One ETRN command and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtrnExchange {
    pub arg: EtrnArg,
    /// `None`: the server hung up without replying.
    pub reply: Option<ReplyCode>,
    pub reaction: Reaction,
    pub rule: Rule,
}

/// One connection's ETRN exchanges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionRun {
    pub exchanges: Vec<EtrnExchange>,
    /// Planned ETRNs that were not sent because of a reply.
    pub not_sent: Vec<EtrnArg>,
    /// Whether the client ends with QUIT (false after 421).
    pub quits: bool,
}

impl ConnectionRun {
    /// The arguments sent, in order.
    pub fn sent(&self) -> Vec<&EtrnArg> {
        self.exchanges.iter().map(|e| &e.arg).collect()
    }
}

/// Runs every connection of the plan in order. `reply_to` is asked for each ETRN that is sent and
/// may keep state (replies by occurrence).
pub fn run(
    plan: &DequeuePlan,
    mut reply_to: impl FnMut(&EtrnArg) -> Option<ReplyCode>,
) -> Vec<ConnectionRun> {
    plan.connections
        .iter()
        .map(|_| {
            let planned = match &plan.session.dequeue {
                Dequeue::Etrn(list) => list.as_slice(),
                Dequeue::Nothing | Dequeue::Turn => &[],
            };
            let mut run = ConnectionRun {
                exchanges: Vec::new(),
                not_sent: Vec::new(),
                quits: true,
            };
            let mut stopped = false;
            for p in planned {
                if stopped {
                    run.not_sent.push(p.arg.clone());
                    continue;
                }
                let reply = reply_to(&p.arg);
                let (reaction, rule) = match reply {
                    Some(code) => react(code),
                    None => (Reaction::Disconnect, Rule::NoReply),
                };
                run.exchanges.push(EtrnExchange {
                    arg: p.arg.clone(),
                    reply,
                    reaction,
                    rule,
                });
                match reaction {
                    Reaction::Continue => {}
                    Reaction::StopEtrn => stopped = true,
                    Reaction::Disconnect => {
                        stopped = true;
                        run.quits = false;
                    }
                }
            }
            run
        })
        .collect()
}
