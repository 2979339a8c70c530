//! The fake smart host, running: the tokio driver around the sans-IO conversations of
//! [`crate::proto`] (which decide everything it says), and the recorder of what clients send.
//!
//! - `server`: the tokio driver around the sans-IO session: deadlines, limits, TLS, a bounded
//!   shutdown.
//! - `accept`: the one accept loop of every server here (also the cassette proxies): the
//!   connection cap (refuse past it, or leave connections in the listen queue), refusals counted
//!   apart, backoff when out of descriptors.
//! - `handle`: the one handle of every running server: its address, a bounded shutdown, stop on
//!   drop, and event-driven counts of sessions ended and connections refused.
//! - `recorder`: every session's events, JSON recordings, event-driven waits.
//! - `stream`: a `--record` stream (JSON Lines) read back into the recording document.
//! - `stream_writer`: the thread that writes a `--record` stream, off the sessions' path.
//! - `json_line`: the `--record` stream's commonest lines, written field by field (the same
//!   text as through `serde_json::Value`, at a fraction of the cost).
//! - `log`: how the recorder packs a session's events in memory (replies shared, one buffer a
//!   session).
//! - `tls`: a self-signed certificate for STARTTLS, made at start-up.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use etrn_harness::smarthost::{SmartHost, SmartHostConfig};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let host = SmartHost::start(SmartHostConfig::default()).await?;
//! let mut client = tokio::net::TcpStream::connect(host.addr()).await?;
//! client.write_all(b"EHLO client.example\r\nETRN a.example\r\nQUIT\r\n").await?;
//! let mut replies = String::new();
//! client.read_to_string(&mut replies).await?;
//!
//! let recording = host.recorder().wait_for_closed_sessions(1, Duration::from_secs(5)).await?;
//! assert_eq!(recording.etrn_domains(), ["a.example"]);
//! assert!(replies.contains("250 OK, queuing for node a.example started"));
//! host.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub(crate) mod accept;
pub(crate) mod handle;
pub(crate) mod json_line;
mod log;
pub(crate) mod recorder;
pub(crate) mod server;
pub(crate) mod stream;
pub(crate) mod stream_writer;
pub(crate) mod tls;

pub use accept::{ConnectionLimit, LISTEN_BACKLOG, WhenFull};
pub use handle::ServerHandle;
pub use recorder::{
    EtrnCursor, LIVE_CAPACITY, Lifetime, LiveEvent, LiveFeed, LiveLine, Recorder, RecordingJson,
    Retention, SessionPage, SharedLine, WaitTimeout,
};
pub use server::{ConversationSwitch, SmartHost, SmartHostConfig, StartError};
pub use stream::{StreamError, write_document};
pub use stream_writer::{STREAM_BUFFER_OCTETS, STREAM_FINISH_DEADLINE, StreamEnd};
