//! Record and replay: SMTP sessions with a real upstream captured into cassettes, and a smart host
//! that answers from them.
//!
//! - [`format`](mod@format): the cassette text format, its parser and its line writer.
//! - [`record`]: the recording proxy.
//! - [`tls`](mod@tls): STARTTLS terminated by the recorder (its own certificate to the client, a TLS
//!   client to the upstream).
//! - [`listener`]: the accept loop the recorder and the record-on-miss replay share.
//! - [`replay`]: a conversation answering from a cassette, and the matching modes.
//! - [`miss`]: replay that fetches and appends what the cassette misses (record on miss).

pub mod format;
pub mod listener;
pub mod miss;
pub mod record;
pub mod replay;
pub mod tls;

pub use format::{Cassette, CassetteError, CassetteSession, Exchange, Request, TlsMark};
pub use listener::{DEFAULT_MAX_CONNECTIONS, ProxyServer};
pub use miss::MissRecordingReplay;
pub use record::{CassetteWriter, RecordError, RecordingProxy, TlsMode};
pub use replay::{MatchMode, ReplayOptions, ReplaySession};
pub use tls::{TlsTerminate, UpstreamTrust};

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::smarthost::profile::ProfileError;
use crate::smarthost::server::ConversationFactory;
use crate::smarthost::{SmartHost, SmartHostScript, StartError};
use crate::smtp::{Behaviour, Conversation, Session, SessionLimits};

/// The largest cassette file read: a recording of some hundred thousand sessions. A cassette is
/// held in memory to replay, so the cap bounds that too.
pub const MAX_CASSETTE_FILE: u64 = 256 * 1024 * 1024;

/// Why a cassette file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadCassetteError {
    /// Not a regular file, too large, unreadable.
    #[error(transparent)]
    Read(#[from] crate::files::ReadFileError),
    /// Malformed: the line and what is wrong with it, never the line's text.
    #[error("{path}:{}: {}", source.line, source.message)]
    Parse { path: String, source: CassetteError },
}

/// Reads and parses the cassette at `path`: a regular file only (a FIFO or device is refused
/// before any read, so nothing blocks), at most [`MAX_CASSETTE_FILE`] octets, a byte that is not
/// UTF-8 named by its line. Blocking: call it off the runtime's workers.
pub fn load_cassette(path: &Path) -> Result<Cassette, LoadCassetteError> {
    let bytes = crate::files::read_regular_bytes(path, MAX_CASSETTE_FILE)?;
    parse_cassette(&bytes, path)
}

/// Parses a cassette already read from `path` (named in errors with the line at fault).
pub fn parse_cassette(bytes: &[u8], path: &Path) -> Result<Cassette, LoadCassetteError> {
    let parse_error = |source| LoadCassetteError::Parse {
        path: path.display().to_string(),
        source,
    };
    let text = format::text_of(bytes).map_err(parse_error)?;
    Cassette::parse(text).map_err(parse_error)
}

/// A smart host that replays `cassette`: connection n replays recorded session n.
pub async fn replay_server(
    cassette: Cassette,
    options: ReplayOptions,
    listen: SocketAddr,
    idle_timeout: Duration,
    recorder: crate::smarthost::Recorder,
) -> Result<SmartHost, StartError> {
    // A session whose recorder terminated STARTTLS is replayed with a TLS handshake of our own.
    let tls = if cassette
        .sessions
        .iter()
        .any(|s| s.tls == TlsMark::Terminated)
    {
        Some(crate::smarthost::tls::self_signed_acceptor("localhost")?)
    } else {
        None
    };
    let options = ReplayOptions {
        idle_timeout,
        ..options
    };
    let factory = replay_factory(cassette, options);
    SmartHost::start_with(listen, idle_timeout, 1000, tls, factory, recorder).await
}

/// Conversations replaying `cassette`: connection n replays recorded session n.
fn replay_factory(cassette: Cassette, options: ReplayOptions) -> ConversationFactory {
    let cassette = Arc::new(cassette);
    Arc::new(move |accepted| {
        let index = usize::try_from(accepted.index).unwrap_or(usize::MAX);
        Box::new(ReplaySession::new(
            Arc::clone(&cassette),
            index,
            options.clone(),
            accepted.now,
        )) as Box<dyn Conversation>
    })
}

/// Starting a smart host for a script that may name a cassette failed.
#[derive(Debug, thiserror::Error)]
pub enum ScriptHostError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error("cassette {path}: {message}")]
    Cassette { path: String, message: String },
}

/// The conversations the smart host of `script` runs, one per connection: a replay of its
/// `cassette` if it names one, otherwise the scripted session. Synchronous and socket-free, so the
/// model's prediction runs in memory exactly the conversations [`start_for_script`] serves over TCP.
pub fn conversations_for_script(
    script: &SmartHostScript,
    limits: &SessionLimits,
) -> Result<ConversationFactory, ScriptHostError> {
    if let Some(path) = &script.cassette {
        return Ok(replay_for_script(script, load(path)?, limits));
    }
    let behaviour: Arc<dyn Behaviour> = Arc::new(Arc::new(script.clone()).behaviour()?);
    let limits = crate::smarthost::server::limits_for(behaviour.as_ref(), limits.clone());
    Ok(Arc::new(move |accepted| {
        Box::new(Session::new(
            Arc::clone(&behaviour),
            limits.clone(),
            accepted,
        )) as Box<dyn Conversation>
    }))
}

/// The conversations of `script` replaying `cassette`, already read (the one its `cassette`
/// names): for a caller that reads the file itself. Of `limits` a replay keeps the idle timeout.
pub fn replay_for_script(
    script: &SmartHostScript,
    cassette: Cassette,
    limits: &SessionLimits,
) -> ConversationFactory {
    let options = ReplayOptions {
        mode: script.cassette_match.unwrap_or_default(),
        idle_timeout: limits.idle_timeout,
        ..ReplayOptions::default()
    };
    replay_factory(cassette, options)
}

fn load(path: &Path) -> Result<Cassette, ScriptHostError> {
    load_cassette(path).map_err(|e| ScriptHostError::Cassette {
        path: path.display().to_string(),
        message: match e {
            LoadCassetteError::Read(e) => e.reason(),
            LoadCassetteError::Parse { source, .. } => source.to_string(),
        },
    })
}

/// The smart host a script asks for: a replay of its `cassette` if it names one, otherwise the
/// scripted server.
pub async fn start_for_script(
    config: crate::smarthost::SmartHostConfig,
) -> Result<SmartHost, ScriptHostError> {
    let recorder = crate::smarthost::Recorder::with_retention(config.retention);
    start_for_script_recording(config, recorder).await
}

/// Like [`start_for_script`], recording into `recorder`.
pub async fn start_for_script_recording(
    config: crate::smarthost::SmartHostConfig,
    recorder: crate::smarthost::Recorder,
) -> Result<SmartHost, ScriptHostError> {
    let Some(path) = config.script.cassette.clone() else {
        return Ok(SmartHost::start_recording(config, recorder).await?);
    };
    let options = ReplayOptions {
        mode: config.script.cassette_match.unwrap_or_default(),
        ..ReplayOptions::default()
    };
    Ok(replay_server(
        load(&path)?,
        options,
        config.listen,
        config.limits.idle_timeout,
        recorder,
    )
    .await?)
}
