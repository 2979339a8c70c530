//! The SMTP server protocol core, sans I/O: no sockets, no tokio, no clock.
//!
//! - [`session`]: the state machine: bytes in, [`Output`]s (replies, events, TLS, close) out.
//!   How it reads the client's bytes and what its replies established (data, AUTH responses,
//!   STARTTLS, greeting, transaction) is the wire layer's
//!   [`ServerSideObserver`](crate::wire::observer::ServerSideObserver), shared with the replay.
//! - [`behaviour`]: the trait through which a script decides what the server says.
//! - [`conversation`]: the trait a server driver runs: the session, or a cassette replay.
//! - [`etrn`]: reading an ETRN line into a record with its flags, and the facts a behaviour
//!   answers it from.
//! - [`replies`]: the texts of a server's everyday replies, its line limit, a greet pause, and
//!   the placeholders reply texts may use.
//! - [`event`]: what a session reports (commands, replies, ETRNs, messages, why it closed).
//! - [`transcript`](mod@transcript): `C:`/`S:` text from events.

pub mod behaviour;
pub mod conversation;
pub mod etrn;
pub mod event;
pub mod replies;
pub mod session;
pub mod transcript;

pub use behaviour::Behaviour;
pub use conversation::{Accepted, Conversation};
pub use etrn::EtrnFacts;
pub use event::{CloseReason, CommandLine, EtrnFlag, EtrnRecord, Event, MessageRecord};
pub use replies::{CommandLimit, ErrorLimit, GreetPause, LongLine, Placeholders, ServerReplies};
pub use session::{Output, Session, SessionLimits};
pub use transcript::transcript;
