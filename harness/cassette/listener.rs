//! The proxy-style servers (the recorder, the record-on-miss replay): the one [`ServerHandle`]
//! every server here has, with the smart host's connection cap.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::Span;

use crate::smarthost::ServerHandle;
use crate::smarthost::accept::{Cap, ConnectionLimit};

/// Simultaneous connections a recorder relays unless told otherwise (as the smart host).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;

/// How long the `421` to a connection past the cap may take to write.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `listener` as a proxy-style server: each connection runs `on_connection(stream, peer,
/// index, stop)`, where `index` counts connections from 0 and `stop` changes at shutdown. At most
/// `max_connections` at once: more get `421` at connect (the smart host's own cap) and are neither
/// relayed nor recorded.
pub fn spawn<F, Fut>(
    listener: TcpListener,
    addr: SocketAddr,
    span: Span,
    max_connections: usize,
    on_connection: F,
) -> ServerHandle
where
    F: FnMut(TcpStream, SocketAddr, u64, watch::Receiver<bool>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let cap = Cap {
        limit: ConnectionLimit::refusing(max_connections),
        refusal_timeout: REFUSAL_TIMEOUT,
        // The handle counts refusals; a proxy has no recorder to tell.
        on_refusal: Arc::new(|| {}),
    };
    ServerHandle::spawn(listener, addr, span, cap, on_connection)
}

/// Binds `listen` for a proxy server.
pub async fn bind(listen: SocketAddr) -> Result<(TcpListener, SocketAddr), super::RecordError> {
    let listener =
        crate::smarthost::accept::bind(listen).map_err(|source| super::RecordError::Bind {
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
