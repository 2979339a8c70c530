//! Conformance runs: any implementation of the IMS dequeue client against the scenario corpus.
//!
//! - `target`: what is tested: the built-in reference client, or an external program (`--exec`)
//!   started once per scenario with a documented environment.
//! - `builtin`: the reference client, driven by the model over real SMTP.
//! - `runner`: a fresh smart host per scenario, the target against it, cases in parallel.
//! - `verdict`: PASS, FAIL, NON-STRICT, INFORMATIONAL, ERROR, KNOWN from a recording.
//! - `violation`: protocol rules checked on the wire, whatever the scenario expects.
//! - `known`: an implementation's known deviations.
//! - [`report`]: human, JSON and JUnit XML reports.
//! - `report_doc`: a report as the HTML pages show it, from a run or read back from its JSON.
//! - [`html`]: the HTML page of a run, and the matrix of several implementations' runs.

pub(crate) mod builtin;
pub mod html;
pub(crate) mod known;
pub(crate) mod outcome;
pub mod report;
pub(crate) mod report_doc;
pub(crate) mod runner;
pub(crate) mod target;
pub(crate) mod verdict;
pub(crate) mod violation;

pub use builtin::run as run_builtin;
pub use known::{KnownDeviations, KnownMatch, StaleEntry};
pub use outcome::TargetOutcome;
pub use report_doc::{CaseDoc, ReportDoc, ReportDocError};
pub use runner::{Case, RunAborted, RunOptions, filter, run_all, run_case};
pub use target::Target;
pub use verdict::{CaseResult, Verdict};
pub use violation::{Violation, ViolationKind};
