//! placeholder
pub mod domain;
pub mod ims;
pub mod reply;
pub mod scenario;
pub mod smarthost;

/// Joins an error message and a suggested fix the way every scenario diagnostic shows them.
/// Errors raised inside serde can only carry a string; [`scenario`] splits it again at
/// [`HELP_SEPARATOR`] so the fix becomes the diagnostic's `help`.
pub(crate) fn hint(message: &dyn std::fmt::Display, fix: &str) -> String {
    format!("{message}{HELP_SEPARATOR}{fix}")
}

/// Like [`hint`], for values that contradict another value of the same table.
pub(crate) fn contradiction(message: &dyn std::fmt::Display, fix: &str) -> String {
    format!("{message}{CONTRADICTION_SEPARATOR}{fix}")
}

/// Separates a message from its fix inside a serde error string.
pub const HELP_SEPARATOR: &str = "\nhelp: ";
/// Separates a contradiction's message from its fix inside a serde error string.
pub const CONTRADICTION_SEPARATOR: &str = "\ncontradiction-help: ";
