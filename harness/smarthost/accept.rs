//! The one accept loop every server here runs: the smart host (scripted or replaying a cassette),
//! the recording proxy and the record-on-miss replay.
//!
//! A task per connection, taken in one at a time (the loop yields after each accept; a refusal
//! at the cap does not wait its turn); a cap on simultaneous connections, past which a
//! connection either gets `421` at once and is counted as a refusal, not as a session, or waits
//! in the kernel's listen queue until a session ends ([`WhenFull`]); a shutdown signal that every
//! connection task sees and that ends the loop; and a backoff when the process runs out of file
//! descriptors, so the loop waits for descriptors to come back instead of spinning on `accept`
//! and flooding the log (the failed accept is retried after 10 ms, doubling to at most 1 s).
//!
//! Every listener here is bound through [`bind`], with a listen backlog of [`LISTEN_BACKLOG`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// The first wait after an accept failed for lack of descriptors.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// The longest wait between two accepts that fail for lack of descriptors.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Connections the kernel may hold complete but not yet accepted (it caps the figure at
/// `net.core.somaxconn`, 4096 on current Linux). std and tokio ask for 128: a load tool that opens
/// more sessions than that at once would see the surplus SYNs dropped and its connects retried a
/// second or more later, stalls that are the listener's, not the server's. smtp-sink is run with
/// 4096 in `bench compare` too.
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with a backlog of [`LISTEN_BACKLOG`] and, as tokio's own `bind` does,
/// `SO_REUSEADDR`: a restarted server binds at once while its old connections linger in
/// `TIME_WAIT`. Must be called within a tokio runtime.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// What a connection gets when as many connections as the cap allows are open already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// Accepted and answered `421` at once: the client knows straight away, and the connection is
    /// counted as a refusal, never as a session.
    #[default]
    Refuse,
    /// Not accepted until a session ends: the connection waits, complete, in the kernel's listen
    /// queue (up to [`LISTEN_BACKLOG`] of them), and its client waits for the greeting. This is
    /// what Postfix's master does while all its smtpd processes are busy (`default_process_limit`,
    /// 100). A load tool that opens far more sessions at once than the server serves keeps only
    /// the served ones' buffers live: `bench compare` row (i).
    Queue,
}

/// How many connections a server serves at once, and what one more gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimit {
    /// Simultaneous connections served (at least 1: a server of none would never greet).
    pub max: usize,
    /// What the connection after `max` gets.
    pub when_full: WhenFull,
}

impl ConnectionLimit {
    /// At most `max` at once; one more is refused with `421`.
    pub fn refusing(max: usize) -> ConnectionLimit {
        ConnectionLimit {
            max,
            when_full: WhenFull::Refuse,
        }
    }
}

/// A bare count is a cap that refuses past it: the default, and all the proxies know.
impl From<usize> for ConnectionLimit {
    fn from(max: usize) -> ConnectionLimit {
        ConnectionLimit::refusing(max)
    }
}

/// How the loop treats connections past the cap.
#[derive(Clone)]
pub struct Cap {
    /// Simultaneous connections served, and what one more gets.
    pub limit: ConnectionLimit,
    /// How long the refusal's `421` may take to write.
    pub refusal_timeout: Duration,
    /// Called once per refusal (to count it).
    pub on_refusal: Arc<dyn Fn() + Send + Sync>,
}

/// Accepts on `listener` until `shutdown` changes, running `on_connection(stream, peer, stop)` as
/// its own task for every connection admitted; then waits for those tasks to end (they see the
/// same shutdown signal through `stop`).
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    cap: Option<Cap>,
    mut shutdown: watch::Receiver<bool>,
    mut on_connection: F,
) where
    F: FnMut(TcpStream, SocketAddr, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    // A cap above the semaphore's largest count is no cap at all.
    let slots = cap
        .as_ref()
        .map(|c| Arc::new(Semaphore::new(c.limit.max.min(Semaphore::MAX_PERMITS))));
    let queue_when_full = cap
        .as_ref()
        .is_some_and(|c| c.limit.when_full == WhenFull::Queue);
    let mut connections = JoinSet::new();
    let mut backoff = FIRST_BACKOFF;
    loop {
        // Queueing: a slot first, then `accept`. While every slot is taken the loop does not
        // accept, and the kernel holds the new connections.
        let mut reserved = None;
        if let (true, Some(slots)) = (queue_when_full, &slots) {
            tokio::select! {
                // Biased, the stop first: when a session's end frees a slot as the server
                // stops, the connection waiting in the queue must not be taken in.
                biased;
                _ = shutdown.changed() => break,
                Some(done) = connections.join_next(), if !connections.is_empty() => {
                    reaped(done);
                    continue;
                }
                permit = Arc::clone(slots).acquire_owned() => match permit {
                    Ok(permit) => reserved = Some(permit),
                    // Only `close` ends a semaphore's waits, and nothing closes this one.
                    Err(_) => break,
                },
            }
        }
        tokio::select! {
            // Biased: the stop first (no connection is taken in once it is asked for), then
            // the ended tasks (so a flood of connections cannot keep them from being reaped).
            biased;
            _ = shutdown.changed() => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => reaped(done),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    backoff = FIRST_BACKOFF;
                    let permit = match (reserved.take(), &slots, &cap) {
                        (Some(permit), _, _) => Some(permit),
                        (None, Some(slots), Some(cap)) => match Arc::clone(slots).try_acquire_owned() {
                            Ok(permit) => Some(permit),
                            Err(_) => {
                                (cap.on_refusal)();
                                debug!(%peer, "connection refused at the cap");
                                connections.spawn(refuse(stream, cap.refusal_timeout));
                                continue;
                            }
                        },
                        _ => None,
                    };
                    // Boxed: a session's future is several KiB, and tokio moves a task's future
                    // (and reads its output) by copying its whole cell, several times per task;
                    // behind a box each of those copies is a pointer.
                    let session = Box::pin(on_connection(stream, peer, shutdown.clone()));
                    connections.spawn(async move {
                        session.await;
                        drop(permit);
                    });
                    // One connection per poll of this loop, as Postfix's event loop takes one
                    // per pass: the loop yields, so the session just accepted greets and the
                    // tasks already ready run before the next connection is taken (a session's
                    // end, or the runtime's next turn, brings the loop back). Without it a poll
                    // accepts a whole waiting burst (up to tokio's budget of 128) before any of
                    // its sessions runs; a load tool that opens one connection per pass of its
                    // own (`smtp-source -s 1000`) is then greeted everywhere at once, holds
                    // every session's buffers and took half again the page faults (README,
                    // Benchmarks, "A waiting burst"). Tested below, on one event loop (serve's
                    // default); with several workers the loop waits for its own worker's turn.
                    tokio::task::yield_now().await;
                }
                Err(e) if out_of_descriptors(&e) => {
                    warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "accept failed: out of file descriptors; waiting");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => break,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                // A connection reset before it was accepted, and the like: that one is gone.
                Err(e) => warn!(error = %e, "accept failed"),
            },
        }
    }
    // Closing the listener resets the connections still waiting in its queue at once, rather
    // than after the sessions' grace.
    drop(listener);
    // Connection tasks see the same shutdown signal and end themselves; wait for them.
    while let Some(done) = connections.join_next().await {
        reaped(done);
    }
}

/// A connection task's end, taken from the set: said if it panicked or was cancelled.
fn reaped(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        warn!(error = %e, "a connection task ended abnormally");
    }
}

/// `421` at connect for a connection past the cap; bounded, so a client that does not read cannot
/// hold the task.
async fn refuse(mut stream: TcpStream, limit: Duration) {
    let _ = tokio::time::timeout(limit, async {
        stream
            .write_all(b"421 4.7.0 Too many connections, try again later\r\n")
            .await?;
        stream.shutdown().await
    })
    .await;
}

/// EMFILE (the process) or ENFILE (the system) is out of descriptors, or the kernel of buffers.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        Errno::from_io_error(e),
        Some(Errno::MFILE | Errno::NFILE | Errno::NOBUFS | Errno::NOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections made at once while nobody accepts: more than the 128 std and tokio would ask
    /// for, so a backlog of 128 drops the surplus SYNs (their connects would hang on retries).
    const AT_ONCE: usize = 300;

    /// The kernel's cap on any listen backlog; older kernels default to 128.
    fn somaxconn() -> Option<usize> {
        std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    #[tokio::test]
    async fn the_listener_holds_a_burst_of_connections_before_any_is_accepted() {
        match somaxconn() {
            Some(cap) if cap > AT_ONCE => {}
            other => {
                eprintln!(
                    "SKIPPED: net.core.somaxconn is {other:?}; the kernel caps every backlog \
                     below the {AT_ONCE} connections this test opens"
                );
                return;
            }
        }
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        // Every connect completes as soon as the kernel queues the connection for `accept`;
        // one whose SYN was dropped for a full queue would still be waiting at the deadline.
        let connects = (0..AT_ONCE).map(|_| TcpStream::connect(addr));
        let all = futures_util::future::join_all(connects);
        let connected = tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .expect("every connection is queued at once, none dropped for a full backlog");
        assert_eq!(connected.iter().filter(|c| c.is_ok()).count(), AT_ONCE);
        drop(listener);
    }

    /// A burst already waiting in the listen queue is taken in one connection at a time: the
    /// session just accepted runs (greets) before the next connection is accepted, rather than
    /// the whole queue being accepted before any of its sessions runs.
    #[tokio::test(flavor = "current_thread")]
    async fn a_waiting_burst_is_taken_in_one_connection_at_a_time() {
        use std::sync::Mutex;

        #[derive(Debug, PartialEq)]
        enum Step {
            Accepted(usize),
            SessionRan(usize),
        }
        const BURST: usize = 20;
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        // All queued by the kernel before the loop starts.
        let mut clients = Vec::new();
        for _ in 0..BURST {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        let steps = Arc::new(Mutex::new(Vec::new()));
        let (all_ran, mut ran) = tokio::sync::mpsc::channel::<()>(1);
        let (stop, stop_rx) = watch::channel(false);
        let accepting = tokio::spawn({
            let steps = Arc::clone(&steps);
            let mut accepted = 0;
            accept_loop(listener, None, stop_rx, move |_stream, _peer, _stop| {
                let n = accepted;
                accepted += 1;
                steps.lock().unwrap().push(Step::Accepted(n));
                let (steps, all_ran) = (Arc::clone(&steps), all_ran.clone());
                async move {
                    steps.lock().unwrap().push(Step::SessionRan(n));
                    if n + 1 == BURST {
                        let _ = all_ran.try_send(());
                    }
                }
            })
        });
        tokio::time::timeout(Duration::from_secs(10), ran.recv())
            .await
            .expect("every waiting connection is accepted and its session run");
        stop.send(true).unwrap();
        accepting.await.unwrap();
        let steps = std::mem::take(&mut *steps.lock().unwrap());
        let alternating: Vec<Step> = (0..BURST)
            .flat_map(|n| [Step::Accepted(n), Step::SessionRan(n)])
            .collect();
        assert_eq!(steps, alternating);
    }
}
