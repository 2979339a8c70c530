//! Record and replay: SMTP sessions with a real upstream captured into cassettes, and a smart host
//! that answers from them.
//!
//! - [`format`]: the cassette text format, its parser and its line writer.
//! - [`record`]: the recording proxy.
//! - [`replay`]: a conversation answering from a cassette, and the matching modes.

pub mod format;
pub mod record;
pub mod replay;

pub use format::{Cassette, CassetteError, CassetteSession, Exchange, Request};
pub use record::{CassetteWriter, RecordError, RecordingProxy};
pub use replay::{MatchMode, ReplayOptions, ReplaySession};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::smarthost::server::ConversationFactory;
use crate::smarthost::{SmartHost, StartError};
use crate::smtp::Conversation;

/// A smart host that replays `cassette`: connection n replays recorded session n.
pub async fn replay_server(
    cassette: Cassette,
    options: ReplayOptions,
    listen: SocketAddr,
    idle_timeout: Duration,
) -> Result<SmartHost, StartError> {
    let cassette = Arc::new(cassette);
    let factory: ConversationFactory = Arc::new(move |index| {
        let index = usize::try_from(index).unwrap_or(usize::MAX);
        Box::new(ReplaySession::new(Arc::clone(&cassette), index, options.clone())) as Box<dyn Conversation>
    });
    SmartHost::start_with(listen, idle_timeout, 1000, None, factory).await
}
