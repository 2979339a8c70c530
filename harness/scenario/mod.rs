//! Scenario files: one conformance case per TOML file under `scenarios/<topic>/<name>.toml`.
//!
//! - [`file`](mod@file): the format (`[ims]`, `[smarthost]`, `[expect]`).
//! - [`expect`]: graded expectations and [`Expectations::judge`].
//! - [`load`]: strict parsing, validation, folder discovery, the corpus.
//! - [`diagnostic`]: located errors with fixes.
//! - [`predict`](mod@predict): the reference model run on a scenario.
//! - [`explain`]: a prediction rendered for people.
//! - [`schema`]: the JSON Schema of the format.

pub mod diagnostic;
pub mod expect;
pub mod explain;
pub mod file;
pub mod load;
pub mod predict;
pub mod schema;

pub use diagnostic::{ErrorKind, ScenarioError};
pub use expect::{Deviation, Difference, Expectations, ExpectedEtrn, Observed};
pub use file::Scenario;
pub use load::{Corpus, discover, load_corpus, load_scenario, parse_scenario};
pub use predict::{Prediction, predict};
