//! A value refused while a file is read: what is wrong and how to fix it, kept typed across serde.
//!
//! serde lets a `Deserialize` impl fail only with text (`de::Error::custom` takes a `Display`), yet
//! a scenario diagnostic shows the message and the fix apart (miette's `help:`) and classes the
//! refusal as an invalid value or a contradiction. Joining the two into one string and splitting
//! it again in the loader made every message a parsing hazard, so a refusal is a [`Rejection`]
//! instead:
//!
//! - [`Rejection::into_de_error`] hands serde the rendered text, all that readers of serde's
//!   string alone show (the HTTP API's script upload, profile and known-deviation files);
//! - while [`catch`] runs a deserialisation on this thread, the same call keeps the typed value,
//!   and the scenario loader takes it back with the error: kind, message and fix as made.
//!
//! This is a side channel, like the path tracking of `serde_path_to_error`: the only other way to
//! get a typed value out of a serde error is a deserializer of one's own wrapping toml's.

use std::cell::RefCell;
use std::fmt;

/// Whether a value is wrong on its own or only next to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectionKind {
    /// A value that is not allowed: a bad domain, reply, registry value, an empty list.
    Invalid,
    /// A value that contradicts another value of the same table.
    Contradiction,
}

/// A refused value: why, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: RejectionKind,
    pub message: String,
    pub fix: String,
}

impl Rejection {
    /// A value that is not allowed on its own.
    pub fn invalid(message: impl fmt::Display, fix: impl Into<String>) -> Self {
        Rejection {
            kind: RejectionKind::Invalid,
            message: message.to_string(),
            fix: fix.into(),
        }
    }

    /// A value that contradicts another value of the same table.
    pub fn contradiction(message: impl fmt::Display, fix: impl Into<String>) -> Self {
        Rejection {
            kind: RejectionKind::Contradiction,
            message: message.to_string(),
            fix: fix.into(),
        }
    }

    /// The serde error for this rejection. Inside [`catch`], the rejection itself is kept for the
    /// caller; the error's text is the [`Display`](fmt::Display) form either way.
    pub fn into_de_error<E: serde::de::Error>(self) -> E {
        let error = E::custom(&self);
        CAUGHT.with(|caught| {
            if let Some(slot) = caught.borrow_mut().as_mut() {
                *slot = Some(self);
            }
        });
        error
    }
}

/// The text a reader of serde's error sees: the message, then the fix on a line of its own. The
/// labels are the ones these readers have always shown; nothing parses them back.
impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.kind {
            RejectionKind::Invalid => "help",
            RejectionKind::Contradiction => "contradiction-help",
        };
        write!(f, "{}\n{label}: {}", self.message, self.fix)
    }
}

thread_local! {
    /// `Some` while [`catch`] runs on this thread; inside, the last rejection raised.
    static CAUGHT: RefCell<Option<Option<Rejection>>> = const { RefCell::new(None) };
}

/// Runs `deserialise` and returns its result with the last [`Rejection`] raised while it ran.
///
/// Only the last is kept: a deserialisation stops at its first error, and a rejection that a
/// caller inside swallowed is told apart by comparing its text with the error's (see the scenario
/// loader). A `catch` inside another restores the outer one's state when it ends, panic or not.
pub fn catch<T>(deserialise: impl FnOnce() -> T) -> (T, Option<Rejection>) {
    /// Puts back the state of an enclosing `catch` (or none) when dropped.
    struct Restore(Option<Option<Rejection>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            CAUGHT.with(|caught| *caught.borrow_mut() = outer);
        }
    }
    let _restore = Restore(CAUGHT.with(|caught| caught.borrow_mut().replace(None)));
    let value = deserialise();
    let rejection = CAUGHT.with(|caught| caught.borrow_mut().as_mut().and_then(Option::take));
    (value, rejection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Refused;

    impl<'de> serde::Deserialize<'de> for Refused {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let _ = <String as serde::Deserialize>::deserialize(d)?;
            Err(Rejection::contradiction("no", "write yes").into_de_error())
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)] // read only to be refused
    struct Doc {
        a: Refused,
    }

    #[test]
    fn a_caught_rejection_comes_back_typed_and_serde_gets_its_text() {
        let (result, rejection) = catch(|| toml::from_str::<Doc>("a = \"x\""));
        let error = result.expect_err("refused");
        assert_eq!(
            error.message().trim_end(),
            "no\ncontradiction-help: write yes"
        );
        assert_eq!(rejection, Some(Rejection::contradiction("no", "write yes")));
    }

    #[test]
    fn outside_a_catch_nothing_is_kept_and_nested_catches_do_not_mix() {
        assert!(toml::from_str::<Doc>("a = \"x\"").is_err());
        let ((inner, _), outer) = catch(|| catch(|| toml::from_str::<Doc>("a = \"x\"")));
        assert!(inner.is_err());
        assert_eq!(outer, None);
        assert_eq!(CAUGHT.with(|c| c.borrow().clone()), None);
    }
}
