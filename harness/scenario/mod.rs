//! Scenario files: one conformance case per TOML file under `scenarios/<topic>/<name>.toml`.
//!
//! - `file`: the format (`[ims]`, `[smarthost]`, `[expect]`).
//! - `expect`: the `[expect]` table: graded expectations, per connection where they differ.
//! - `judge`: what was sent against the expectations, each deviation graded by its cause.
//! - `load`: strict parsing, folder discovery, the corpus.
//! - `validate`: the consistency rules, one function each, and their typed problems.
//! - `diagnostic`: located errors with fixes.
//! - `predict`: the reference model run on a scenario.
//! - [`explain`]: a prediction rendered for people.
//! - `schema`: the JSON Schema of the format.
//! - `shipped`: the corpus built into the binary, and the choice between it and paths on disk.
//! - [`select`]: which scenarios a command-line argument names (a path, an id, a `builtin:` name).

pub(crate) mod diagnostic;
pub(crate) mod expect;
pub(crate) mod explain;
pub(crate) mod file;
pub(crate) mod judge;
pub(crate) mod load;
pub(crate) mod predict;
pub(crate) mod schema;
pub(crate) mod select;
pub(crate) mod shipped;
pub(crate) mod validate;

pub use diagnostic::{ErrorKind, ScenarioError};
pub use expect::{ConnectionExpectation, Expectations, ExpectedEtrn};
pub use explain::explain;
pub use file::Scenario;
pub use judge::{Deviation, Difference, FormDifference, Observed, judge, judge_mail};
pub use load::{Corpus, discover, load_corpus, load_scenario, load_texts, parse_scenario};
pub use predict::{DEFAULT_REPLY_TIMEOUT, Prediction, predict, predict_with};
pub use schema::json_schema;
pub use select::{SelectError, Single, builtin_one, resolve, resolve_one, select};
pub use shipped::{CorpusSource, ShippedFile, shipped_files};
pub use validate::{Problem, ProblemKind, validate};
