//! The proxy-style servers (the recorder, the record-on-miss replay): the smart host's one accept
//! loop ([`accept_loop`]) with a task per connection, and an event-driven count of ended sessions.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tracing::{Instrument, Span};

use crate::smarthost::accept::{Cap, accept_loop};

/// A running proxy-style server.
pub struct ProxyServer {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    ended: Arc<(AtomicUsize, Notify)>,
    refused: Arc<AtomicUsize>,
}

/// Simultaneous connections a recorder relays unless told otherwise (as the smart host).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;

/// How long the `421` to a connection past the cap may take to write.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);

impl ProxyServer {
    /// Serves `listener`: each connection runs `on_connection(stream, peer, index, stop)`, where
    /// `index` counts connections from 0 and `stop` changes at shutdown. At most
    /// `max_connections` at once: more get `421` at connect (the smart host's own cap) and are
    /// neither relayed nor recorded.
    pub fn spawn<F, Fut>(
        listener: TcpListener,
        addr: SocketAddr,
        span: Span,
        max_connections: usize,
        mut on_connection: F,
    ) -> ProxyServer
    where
        F: FnMut(TcpStream, SocketAddr, usize, watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (shutdown, watcher) = watch::channel(false);
        let ended = Arc::new((AtomicUsize::new(0), Notify::new()));
        let counter = Arc::clone(&ended);
        let refused = Arc::new(AtomicUsize::new(0));
        let refusals = Arc::clone(&refused);
        let cap = Cap {
            max_connections,
            refusal_timeout: REFUSAL_TIMEOUT,
            on_refusal: Arc::new(move || {
                refusals.fetch_add(1, Ordering::SeqCst);
            }),
        };
        let mut index = 0usize;
        let task = tokio::spawn(
            accept_loop(listener, Some(cap), watcher, move |stream, peer, stop| {
                let session = on_connection(stream, peer, index, stop);
                index += 1;
                let counter = Arc::clone(&counter);
                async move {
                    session.await;
                    counter.0.fetch_add(1, Ordering::SeqCst);
                    counter.1.notify_waiters();
                }
            })
            .instrument(span),
        );
        ProxyServer {
            addr,
            shutdown,
            task: Some(task),
            ended,
            refused,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections refused at the cap so far.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// Waits until `n` sessions have ended (their last cassette line written); false on timeout.
    pub async fn wait_for_closed_sessions(&self, n: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.ended.1.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.ended.0.load(Ordering::SeqCst) >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Stops accepting and ends the open sessions; the sessions it served in all (for the stop
    /// line).
    pub async fn shutdown(mut self) -> usize {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.ended.0.load(Ordering::SeqCst)
    }
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Binds `listen` for a proxy server.
pub async fn bind(listen: SocketAddr) -> Result<(TcpListener, SocketAddr), super::RecordError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| super::RecordError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| super::RecordError::Bind {
            addr: listen,
            source,
        })?;
    Ok((listener, addr))
}
