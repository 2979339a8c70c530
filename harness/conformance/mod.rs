//! Conformance runs: any implementation of the IMS dequeue client against the scenario corpus.
//!
//! - [`target`]: what is tested: the built-in reference client, or an external program (`--exec`)
//!   started once per scenario with a documented environment.
//! - [`builtin`]: the reference client, driven by the model over real SMTP.
//! - [`runner`]: a fresh smart host per scenario, the target against it, cases in parallel.
//! - [`verdict`]: PASS, FAIL, NON-STRICT, INFORMATIONAL, ERROR, KNOWN from a recording.
//! - [`violation`]: protocol rules checked on the wire, whatever the scenario expects.
//! - [`known`]: an implementation's known deviations.
//! - [`report`]: human, JSON and JUnit XML reports.

pub mod builtin;
pub mod known;
pub mod report;
pub mod runner;
pub mod target;
pub mod verdict;
pub mod violation;

pub use known::{KnownDeviations, KnownMatch, StaleEntry};
pub use runner::{Case, RunAborted, RunOptions, filter, run_all, run_case};
pub use target::{Target, TargetOutcome};
pub use verdict::{CaseResult, Verdict};
pub use violation::{Violation, ViolationKind};
