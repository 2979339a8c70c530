//! How a session answers: the seam between the protocol core and whatever scripts it.
//!
//! The session knows SMTP; a [`Behaviour`] knows what this particular server says. The smart host's
//! script ([`ScriptBehaviour`](super::ScriptBehaviour)) implements it from a scenario or a server profile; a behaviour is
//! shared by every session of one server, so answers by occurrence count across sessions.

use std::borrow::Cow;

use crate::proto::answer::Answer;
use crate::wire::Verb;

use super::etrn::EtrnFacts;
use super::replies::{GreetPause, ServerReplies};

/// What the server says where SMTP leaves it a choice.
pub trait Behaviour: Send + Sync {
    /// The server's name: `{host}` in every reply text.
    fn hostname(&self) -> &str;
    /// The greeting; a non-2xx greeting refuses the session. Borrowed when the behaviour holds
    /// it, as [`Behaviour::etrn`]'s answer: the session fills it into a reply of its own.
    fn greeting(&self) -> Cow<'_, Answer>;
    /// A pause before the greeting, and what a client that talks first gets; `None`: greet at
    /// once.
    fn greet_pause(&self) -> Option<&GreetPause> {
        None
    }
    /// The EHLO keyword lines to advertise, or the answer that refuses EHLO (a HELO-only peer).
    fn ehlo(&self) -> Result<&[String], Answer>;
    /// The texts of the everyday replies, and the line limit.
    fn replies(&self) -> &ServerReplies;
    /// A scripted answer for this verb that overrides the normal one, if any.
    /// Called once per command, so implementations may count occurrences.
    fn command(&self, verb: &Verb) -> Option<Answer>;
    /// The answer to an ETRN command, whatever its argument (none, several words, invalid).
    /// Borrowed when the behaviour holds it already (the usual case): the session fills the
    /// reply's placeholders into a new reply anyway, so a copy here would be thrown away.
    fn etrn(&self, etrn: &EtrnFacts<'_>) -> Cow<'_, Answer>;
}
