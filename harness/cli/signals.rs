//! Stopping the long-running commands (`serve`, `record`, `replay`, `bench compare`): Ctrl-C
//! and SIGTERM.

use std::time::Duration;

/// Long enough to mean "no timeout", short enough not to overflow the clock.
pub const FOREVER: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Ctrl-C and SIGTERM, registered once so that no signal between two polls is lost.
pub struct StopSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignal {
    #[cfg(unix)]
    pub fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignal {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    pub fn install() -> std::io::Result<Self> {
        Ok(StopSignal {})
    }

    #[cfg(unix)]
    pub async fn received(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "interrupted",
            _ = self.terminate.recv() => "terminated",
        }
    }

    #[cfg(not(unix))]
    pub async fn received(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "interrupted"
    }
}
