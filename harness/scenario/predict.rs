//! The model's prediction for a scenario: its plan, walked against the scenario's smart host.

use std::sync::Arc;

use serde::Serialize;

use crate::ims::{self, ConnectionRun, Dequeue, DequeuePlan, PeerEhlo};
use crate::smarthost::profile::ProfileError;

use super::expect::Observed;
use super::file::Scenario;

/// What the reference model expects to happen in a scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Prediction {
    /// What the client learns from the smart host's EHLO reply.
    pub peer: PeerEhlo,
    /// True when the smart host refuses the session in its greeting (e.g. `421` at connect).
    pub refused_at_greeting: bool,
    pub plan: DequeuePlan,
    /// One entry per connection of the plan.
    pub runs: Vec<ConnectionRun>,
}

impl Prediction {
    /// The ETRN arguments the first connection sends, as on the wire.
    pub fn first_connection_etrn(&self) -> Vec<String> {
        self.runs
            .first()
            .map(|r| r.exchanges.iter().map(|e| e.arg.raw().to_owned()).collect())
            .unwrap_or_default()
    }

    /// The prediction in the shape expectations judge.
    pub fn observed(&self) -> Observed {
        Observed {
            connections: self
                .runs
                .iter()
                .map(|r| r.exchanges.iter().map(|e| e.arg.clone()).collect())
                .collect(),
            turn: !self.refused_at_greeting
                && !self.runs.is_empty()
                && self.plan.session.dequeue == Dequeue::Turn,
            local_command: self.plan.local_command.clone(),
        }
    }
}

/// Runs the model on a scenario.
pub fn predict(scenario: &Scenario) -> Result<Prediction, ProfileError> {
    let profile = scenario.smarthost.profile()?;
    let peer = scenario.smarthost.peer_ehlo(&profile);
    let greeting = scenario.smarthost.greeting(&profile);
    let refused_at_greeting = greeting
        .reply
        .as_ref()
        .is_none_or(|r| !r.code().is_positive());
    let plan = ims::plan(&scenario.ims, &peer);
    // The same behaviour the smart host answers with, so prediction and server agree.
    let behaviour = Arc::new(scenario.smarthost.clone()).behaviour()?;
    let runs = if refused_at_greeting {
        plan.connections
            .iter()
            .map(|_| ConnectionRun {
                exchanges: Vec::new(),
                not_sent: plan.etrn_args().into_iter().cloned().collect(),
                quits: true,
            })
            .collect()
    } else {
        ims::run(&plan, |arg| {
            behaviour.etrn_answer(arg).reply.map(|r| r.code())
        })
    };
    Ok(Prediction {
        peer,
        refused_at_greeting,
        plan,
        runs,
    })
}
