//! Record and replay: SMTP sessions with a real upstream captured into cassettes, and a smart host
//! that answers from them.
//!
//! - [`format`]: the cassette text format, its parser and its line writer.
//! - [`record`]: the recording proxy.

pub mod format;
pub mod record;

pub use format::{Cassette, CassetteError, CassetteSession, Exchange, Request};
