//! The fake smart host. For now: its script and the server profiles, both pure data; the tokio
//! server that executes them builds on these.
//!
//! - [`script`]: a scenario's `[smarthost]` table and the ETRN reply decision.
//! - [`profile`]: the shipped server profiles (`profiles/*.toml`).

pub mod profile;
pub mod script;

pub use profile::{Profile, ProfileName};
pub use script::{EtrnRule, ScriptBehaviour, SmartHostScript};
