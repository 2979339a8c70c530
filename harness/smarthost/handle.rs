//! The one handle of every running server here: the smart host (scripted or replaying a
//! cassette), the recording proxy and the record-on-miss replay.
//!
//! It owns what they have in common, once: the address, the accept loop's task, a shutdown that
//! always finishes (every connection task races the same stop signal; any still running after
//! [`SHUTDOWN_GRACE`] are aborted), stopping on drop, and event-driven counts of the sessions
//! ended and the connections refused at the cap.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tracing::{Instrument, Span, warn};

use super::accept::{Cap, accept_loop};

/// How long a stop waits for open sessions before it ends them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Sessions ended and connections refused, with a wake-up for each session that ends.
#[derive(Default)]
struct Counts {
    ended: AtomicUsize,
    ended_changed: Notify,
    refused: AtomicUsize,
}

/// A running server. Dropping it stops accepting; [`ServerHandle::stop`] also ends the open
/// sessions and waits (bounded) for their tasks.
pub struct ServerHandle {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    counts: Arc<Counts>,
}

impl ServerHandle {
    /// Serves `listener` (bound to `addr`): each admitted connection runs
    /// `on_connection(stream, peer, index, stop)` as its own task, where `index` counts
    /// connections from 0 and `stop` changes at shutdown. Past `cap.limit.max` at once a
    /// connection either gets `421` at connect, is counted as refused (and `cap.on_refusal` is
    /// called) and is not served, or waits in the listen queue (`cap.limit.when_full`).
    pub(crate) fn spawn<F, Fut>(
        listener: TcpListener,
        addr: SocketAddr,
        span: Span,
        cap: Cap,
        mut on_connection: F,
    ) -> ServerHandle
    where
        F: FnMut(TcpStream, SocketAddr, u64, watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (shutdown, watcher) = watch::channel(false);
        let counts = Arc::new(Counts::default());
        let refusals = Arc::clone(&counts);
        let also = Arc::clone(&cap.on_refusal);
        let cap = Cap {
            on_refusal: Arc::new(move || {
                refusals.refused.fetch_add(1, Ordering::SeqCst);
                also();
            }),
            ..cap
        };
        let ends = Arc::clone(&counts);
        let mut index = 0u64;
        let task = tokio::spawn(
            accept_loop(listener, Some(cap), watcher, move |stream, peer, stop| {
                let session = on_connection(stream, peer, index, stop);
                index += 1;
                let ends = Arc::clone(&ends);
                async move {
                    session.await;
                    ends.ended.fetch_add(1, Ordering::SeqCst);
                    ends.ended_changed.notify_waiters();
                }
            })
            .instrument(span),
        );
        ServerHandle {
            addr,
            shutdown,
            task: Some(task),
            counts,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections refused at the cap so far.
    pub fn refused(&self) -> usize {
        self.counts.refused.load(Ordering::SeqCst)
    }

    /// Sessions whose task has ended so far.
    pub fn ended(&self) -> usize {
        self.counts.ended.load(Ordering::SeqCst)
    }

    /// Waits until `n` sessions have ended (their task done: for the proxies, their last
    /// cassette line written); false on timeout.
    pub async fn wait_for_ended_sessions(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.counts.ended_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.ended() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Stops accepting and ends the open sessions: they see the stop signal at once; any still
    /// running after `SHUTDOWN_GRACE` are aborted. Returns the sessions served in all.
    pub async fn stop(mut self) -> usize {
        let _ = self.shutdown.send(true);
        if let Some(mut task) = self.task.take() {
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
                Ok(Err(e)) => warn!(error = %e, "the accept loop ended abnormally"),
                Ok(Ok(())) => {}
                Err(_) => {
                    warn!(grace = ?SHUTDOWN_GRACE, "sessions still open after the grace period; ending them");
                    // Aborting the accept loop drops its set of session tasks, which aborts them.
                    task.abort();
                    let _ = task.await;
                }
            }
        }
        self.ended()
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
