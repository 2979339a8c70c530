//! Record and replay, the drivers: SMTP sessions with a real upstream captured into cassettes, and
//! smart hosts that answer from them. The cassette format and the replay conversation are sans-IO,
//! in [`crate::proto::cassette`] and `crate::proto::replay`.
//!
//! - `record`: the recording proxy.
//! - `tls`: STARTTLS terminated by the recorder (its own certificate to the client, a TLS
//!   client to the upstream).
//! - `listener`: the accept loop the recorder and the record-on-miss replay share.
//! - `miss`: replay that fetches and appends what the cassette misses (record on miss).

pub(crate) mod listener;
pub(crate) mod miss;
pub(crate) mod record;
pub(crate) mod tls;

pub use listener::DEFAULT_MAX_CONNECTIONS;
pub use miss::MissRecordingReplay;
pub use record::{CassetteWriter, MAX_RECORDED_LINE, RecordError, RecordingProxy, TlsMode};
pub use tls::{TlsTerminate, UpstreamTrust};

use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::cassette::Cassette;
use crate::proto::factory::Conversations;
use crate::proto::replay::ReplayOptions;
use crate::smarthost::{Recorder, SmartHost, StartError};

/// A smart host that replays `cassette`: connection n replays recorded session n. At most
/// [`DEFAULT_MAX_CONNECTIONS`] at once; [`replay_server_with`] sets the cap.
pub async fn replay_server(
    cassette: Cassette,
    options: ReplayOptions,
    listen: SocketAddr,
    idle_timeout: Duration,
    recorder: Recorder,
) -> Result<SmartHost, StartError> {
    replay_server_with(
        cassette,
        options,
        listen,
        idle_timeout,
        DEFAULT_MAX_CONNECTIONS,
        recorder,
    )
    .await
}

/// [`replay_server`], serving at most `max_connections` at once (more get `421` at connect).
pub async fn replay_server_with(
    cassette: Cassette,
    options: ReplayOptions,
    listen: SocketAddr,
    idle_timeout: Duration,
    max_connections: usize,
    recorder: Recorder,
) -> Result<SmartHost, StartError> {
    let options = ReplayOptions {
        idle_timeout,
        ..options
    };
    let conversations = Conversations::replay(cassette, options);
    SmartHost::start_conversations(
        listen,
        idle_timeout,
        max_connections,
        conversations,
        recorder,
    )
    .await
}
