//! Server-side conformance: the same ETRN probes against any smart host, or against a profile.
//!
//! `etrn-harness probe HOST:PORT` sends a documented, versioned set of probes (`set`), one
//! fresh connection each, and reports every reply, whether the session stayed open, and the
//! RFC 1985 / RFC 5321 rule each answer meets or breaks (`rules`). With a profile to compare,
//! the same probes are answered in memory by the sans-IO session answering as the profile says,
//! and every difference in code, masked text or connection state is reported ([`compare`]); so
//! the shipped profiles are proved against the real servers they name, and anyone can clone
//! their own smart host into a profile (`emit`).
//!
//! - `set`: the probes and their version.
//! - `run`: the TCP driver (every wait bounded) and the in-memory driver (virtual clock).
//! - `rules`: the server-side rules with their grades and bases.
//! - [`compare`]: masking (host name, dates, client name and address) and differences.
//! - `emit`: a profile from what a server answered.
//! - `report`: human, JSON and JUnit reports.

pub(crate) mod compare;
pub(crate) mod emit;
pub(crate) mod report;
pub(crate) mod rules;
pub(crate) mod run;
pub(crate) mod set;

use std::sync::Arc;

use crate::proto::{Behaviour, SessionLimits};
use crate::proto::{Profile, SmartHostScript};

pub use compare::{Difference, Masks, compare};
pub use emit::{profile_from, served_script};
pub use report::{Comparison, ProbeReport};
pub use run::{End, ProbeResult, probe_behaviour, probe_server};
pub use set::{PROBE_SET_VERSION, Probe, SERVED_DOMAIN, Step, probe_set};

/// The address the in-memory session sees its client at (masked like a real one).
pub const IN_MEMORY_CLIENT_IP: &str = "127.0.0.1";

/// Probes `script` answering with `profile` in memory, as a smart host with STARTTLS offered
/// when the profile advertises it (the server would offer it too).
pub fn probe_profile(script: SmartHostScript, profile: Profile) -> Vec<ProbeResult> {
    let script = Arc::new(script);
    let behaviour: Arc<dyn Behaviour> = Arc::new(script.behaviour_with(profile));
    // The limits a smart host would run this behaviour with (STARTTLS offered if advertised).
    let limits = crate::proto::factory::limits_for(behaviour.as_ref(), SessionLimits::default());
    probe_behaviour(behaviour, &limits, &probe_set())
}
