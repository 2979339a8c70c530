//! The fake smart host: a scriptable ESMTP server that records what clients send.
//!
//! - [`script`]: a scenario's `[smarthost]` table, made executable as a [`ScriptBehaviour`].
//! - [`profile`]: server profiles as reviewed data (`profiles/*.toml`, or a file of one's own):
//!   texts, limits, a greet pause and ordered ETRN rules, each proved against the server it names.
//! - [`server`]: the tokio driver around the sans-IO session: deadlines, limits, TLS, a bounded
//!   shutdown.
//! - [`accept`]: the one accept loop of every server here (also the cassette proxies): the
//!   connection cap, refusals counted apart, backoff when out of descriptors.
//! - [`recorder`]: every session's events, JSON recordings, event-driven waits.
//! - [`stream`]: a `--record` stream (JSON Lines) read back into the recording document.
//! - `log`: how the recorder packs a session's events in memory (replies shared, one buffer a
//!   session).
//! - [`tls`]: a self-signed certificate for STARTTLS, made at start-up.
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

pub mod accept;
mod log;
pub mod profile;
pub mod recorder;
pub mod script;
pub mod server;
pub mod stream;
pub mod tls;

pub use profile::{Profile, ProfileName};
pub use recorder::{
    EtrnCursor, Lifetime, LiveEvent, LiveLine, RecordedEtrn, Recorder, Recording, RecordingJson,
    Retention, SessionPage, SessionRecording, SharedLine, WaitTimeout,
};
pub use script::{EtrnRule, ScriptBehaviour, SmartHostScript};
pub use server::{ConversationSwitch, SmartHost, SmartHostConfig, StartError};
