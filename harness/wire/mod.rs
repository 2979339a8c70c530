//! The wire layer: how SMTP bytes are cut and read, in one place.
//!
//! Every part that touches SMTP text (the scripted [`Session`](crate::smtp::Session), the
//! recording proxy, replay, record-on-miss and the client's
//! [`ReplyReader`](crate::reply::ReplyReader)) frames, splits and redacts through these
//! functions, so they agree on what a line, a verb, a reply or a keyword is.
//!
//! - [`framing`]: cutting a byte stream into lines, with a cap and a linear scan.
//! - [`command`]: a command line parsed once into its [`Verb`] and argument, with any whitespace
//!   between them.
//! - [`reply_line`]: one reply line's code, continuation mark and text.
//! - [`ehlo`]: the keyword of an EHLO reply line.
//! - [`redact`]: the one place credentials are taken out of what is recorded.
//! - [`observer`]: the server side's state in one place, for the scripted session, the cassette
//!   replay and the follower: client bytes in, classified lines out (a command parsed once,
//!   message data, an AUTH response redacted, an over-long line discarded), replies in, data /
//!   AUTH / STARTTLS / greeting / transaction state out.
//! - [`follow`]: which request each reply answers, for those who only watch a session (on top of
//!   the observer).

pub mod command;
pub mod ehlo;
pub mod follow;
pub mod framing;
pub mod observer;
pub mod redact;
pub mod reply_line;

pub use command::{Command, Verb};
pub use follow::{ClientLine, Follower};
pub use framing::{Frame, LineFramer};
pub use reply_line::ReplyLine;
