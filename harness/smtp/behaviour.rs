//! How a session answers: the seam between the protocol core and whatever scripts it.
//!
//! The session knows SMTP; a [`Behaviour`] knows what this particular server says. The smart host's
//! script (`crate::smarthost`) implements it from a scenario or a server profile; a behaviour is
//! shared by every session of one server, so answers by occurrence count across sessions.

use crate::answer::Answer;
use crate::domain::EtrnArg;

/// What the server says where SMTP leaves it a choice.
pub trait Behaviour: Send + Sync {
    /// The server's name: the first word of the EHLO reply.
    fn hostname(&self) -> &str;
    /// The greeting; a non-2xx greeting refuses the session.
    fn greeting(&self) -> Answer;
    /// The EHLO keyword lines to advertise, or the answer that refuses EHLO (a HELO-only peer).
    fn ehlo(&self) -> Result<Vec<String>, Answer>;
    /// A scripted answer for this verb (upper case) that overrides the normal one, if any.
    /// Called once per command, so implementations may count occurrences.
    fn command(&self, verb: &str) -> Option<Answer>;
    /// The answer to `ETRN <arg>`.
    fn etrn(&self, arg: &EtrnArg) -> Answer;
    /// The answer to `ETRN` without an argument.
    fn etrn_missing_argument(&self) -> Answer;
    /// The answer to ETRN inside a mail transaction; `None` processes it as usual (sendmail).
    fn etrn_in_transaction(&self) -> Option<Answer>;
    /// The answer to ETRN before EHLO/HELO; `None` processes it as usual (Postfix, sendmail).
    fn etrn_before_hello(&self) -> Option<Answer>;
}
