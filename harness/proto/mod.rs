//! The smart host, sans I/O: everything it decides, with no sockets, no tokio and no clock of its
//! own. The drivers ([`crate::smarthost`], [`crate::cassette`]) accept connections, keep the
//! timers and move bytes; everything they run is made here.
//!
//! The server session:
//! - `session`: the state machine: bytes in, [`Output`]s (replies, events, TLS, close) out.
//!   How it reads the client's bytes and what its replies established (data, AUTH responses,
//!   STARTTLS, greeting, transaction) is the wire layer's observer, shared with the replay.
//! - `conversation`: the trait a server driver runs: the session, or a cassette replay.
//! - `behaviour`: the trait through which a script decides what the server says.
//! - `etrn`: reading an ETRN line into a record with its flags, and the facts a behaviour
//!   answers it from.
//! - `replies`: the texts of a server's everyday replies, its line limit, a greet pause, and
//!   the placeholders reply texts may use.
//! - `event`: what a session reports (commands, replies, ETRNs, messages, why it closed).
//! - `recordable`: a reply quoting the ETRN argument, and a plain ETRN, handed to the smart
//!   host's recorder as their parts rather than as events.
//! - `transcript`: `C:`/`S:` text from events.
//!
//! What it says:
//! - `script`: a scenario's `[smarthost]` table, made executable as a [`ScriptBehaviour`].
//! - `answer`: what a script does for one command: reply, delay, hang up; answers by occurrence.
//! - `valid_argument`: the profile rule that answers a valid ETRN argument, found once per
//!   script when only the session's state and the option character can change it.
//! - `profile`: server profiles as reviewed data (`profiles/*.toml`, or a file of one's own):
//!   texts, limits, a greet pause and ordered ETRN rules, each proved against the server it names.
//! - [`cassette`](mod@cassette): the cassette text format, its parser and its line writer.
//! - `replay`: a conversation answering from a cassette, and the matching modes.
//! - `factory`: the one choice between script and cassette, for every server and the prediction.
//!
//! What it saw:
//! - `recording`: the [`Recording`] as plain data (what the judges read and `--record` writes),
//!   and a lock-free builder for in-memory runs.

pub(crate) mod answer;
pub(crate) mod behaviour;
pub mod cassette;
pub(crate) mod conversation;
pub(crate) mod etrn;
pub(crate) mod event;
pub(crate) mod factory;
pub(crate) mod profile;
pub(crate) mod recordable;
pub(crate) mod recording;
pub(crate) mod replay;
pub(crate) mod replies;
pub(crate) mod script;
pub(crate) mod session;
pub(crate) mod transcript;
pub(crate) mod valid_argument;

pub use answer::Answer;
pub use behaviour::Behaviour;
pub use conversation::{Accepted, Conversation};
pub use etrn::EtrnFacts;
pub use event::{
    CloseReason, CommandLine, EtrnFlag, EtrnRecord, EtrnRecordFields, Event, LineBytes,
    MessageRecord,
};
pub use factory::{ConversationFactory, Conversations, ConversationsError};
pub use profile::{
    Condition, EtrnReplyRule, EtrnTest, MatchedRule, Profile, ProfileError, ProfileName,
    ServerFacts,
};
pub use recordable::{EtrnCommandLine, PlainEtrn, QuotedReply, Recordable};
pub use recording::{
    RecordedCommand, RecordedEtrn, RecordedReply, Recording, RecordingBuilder, SessionRecording,
    TimedEvent,
};
pub use replay::{MatchMode, ReplayOptions, ReplaySession};
pub use replies::{
    CommandLimit, ErrorLimit, GreetPause, LongLine, Placeholders, Sent, ServerReplies,
};
pub use script::{EtrnRule, ScriptBehaviour, ScriptProblem, SmartHostScript};
pub use session::{DEFAULT_IDLE_TIMEOUT, Output, Session, SessionLimits};
pub use transcript::transcript;
