//! Record on miss (VCR's new_episodes): replay what the cassette has; at the first command it does
//! not have, fetch the rest of the session from the real upstream and append it to the cassette.
//!
//! At a miss the connection is handed over: a new upstream connection is brought to the same point
//! by sending the client's earlier lines again (their replies already came from the cassette, so
//! the upstream's are recorded but not forwarded), then the missed line goes up and the session is
//! relayed and recorded like any recorded session. The appended session is complete, so a later
//! replay of that connection finds every exchange.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};

use super::listener::{ProxyServer, bind};

use crate::smtp::{Conversation, Output};

use super::format::{self, Cassette, Direction};
use super::record::{CassetteWriter, RecordError, relay_from};
use super::replay::{ReplayOptions, ReplaySession};

/// A replay server that records what it misses.
pub struct MissRecordingReplay;

impl MissRecordingReplay {
    /// Serves `cassette` on `listen`; misses go to `upstream` and are appended through `writer`.
    pub async fn start(
        cassette: Cassette,
        options: ReplayOptions,
        listen: SocketAddr,
        upstream: SocketAddr,
        writer: CassetteWriter,
    ) -> Result<ProxyServer, RecordError> {
        let (listener, addr) = bind(listen).await?;
        let cassette = Arc::new(cassette);
        let options = ReplayOptions {
            record_on_miss: true,
            ..options
        };
        info!(%addr, %upstream, "replaying; misses are recorded");
        Ok(ProxyServer::spawn(
            listener,
            addr,
            info_span!("replay with record-on-miss", %addr, %upstream),
            move |client, peer, index, stop| {
                let conversation =
                    ReplaySession::new(Arc::clone(&cassette), index, options.clone());
                connection(client, peer, conversation, upstream, writer.clone(), stop)
                    .instrument(info_span!("replay", %peer))
            },
        ))
    }
}

async fn connection(
    mut client: TcpStream,
    peer: SocketAddr,
    mut conversation: ReplaySession,
    upstream: SocketAddr,
    writer: CassetteWriter,
    mut stop: watch::Receiver<bool>,
) {
    let _ = client.set_nodelay(true);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Some(output) = conversation.poll_output() {
            match output {
                Output::Send { bytes, .. } => {
                    if client.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Output::Close(_) => {
                    let _ = client.shutdown().await;
                    return;
                }
                Output::Event(_) | Output::StartTls => {}
            }
        }
        if let Some(history) = conversation.take_miss() {
            info!(
                lines = history.len(),
                "miss: fetching the rest of the session from the upstream"
            );
            handover(client, peer, history, upstream, &writer, stop).await;
            return;
        }
        tokio::select! {
            read = client.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => conversation.receive(&buf[..n]),
            },
            _ = stop.changed() => return,
        }
    }
}

/// Brings a fresh upstream session to where the client is, then relays and records the rest.
async fn handover(
    mut client: TcpStream,
    peer: SocketAddr,
    history: Vec<Vec<u8>>,
    upstream: SocketAddr,
    writer: &CassetteWriter,
    stop: watch::Receiver<bool>,
) {
    let id = writer.next_session();
    let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    writer.append(&format::session_header(
        id,
        &[
            ("upstream", upstream.to_string()),
            ("client", peer.to_string()),
            ("started", started),
            ("recorded", "on-miss".into()),
        ],
    ));
    let Some((missed, earlier)) = history.split_last() else {
        return;
    };
    let server = match TcpStream::connect(upstream).await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "upstream unreachable on a miss");
            let _ = client
                .write_all(b"451 4.4.1 etrn-harness replay: not in the cassette and the upstream is unreachable\r\n")
                .await;
            writer.append(&format!("{id} end upstream-unreachable\n"));
            return;
        }
    };
    let _ = server.set_nodelay(true);
    let mut server = BufReader::new(server);
    // The greeting, then each earlier line again; the replies are recorded, not forwarded.
    let timeout = Duration::from_secs(30);
    if record_reply(&mut server, id, writer, timeout)
        .await
        .is_none()
    {
        writer.append(&format!("{id} end upstream-closed\n"));
        return;
    }
    let mut in_data = false;
    for line in earlier {
        if server.get_mut().write_all(line).await.is_err() {
            writer.append(&format!("{id} end upstream-closed\n"));
            return;
        }
        if in_data {
            writer.append(&format::line(id, Direction::Data, line));
            if line.as_slice() != b".\r\n" {
                continue;
            }
            in_data = false;
        } else {
            writer.append(&format::line(id, Direction::Client, line));
        }
        match record_reply(&mut server, id, writer, timeout).await {
            Some(354) => in_data = true,
            Some(_) => {}
            None => {
                writer.append(&format!("{id} end upstream-closed\n"));
                return;
            }
        }
    }
    // From the missed line on, the upstream answers the client directly.
    let server = server.into_inner();
    relay_from(client, server, missed.clone(), in_data, id, writer, stop).await;
}

/// Reads one complete reply from the upstream, records it, returns its code.
async fn record_reply(
    server: &mut BufReader<TcpStream>,
    id: u32,
    writer: &CassetteWriter,
    timeout: Duration,
) -> Option<u16> {
    loop {
        let mut line = Vec::new();
        let n = tokio::time::timeout(timeout, server.read_until(b'\n', &mut line))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        writer.append(&format::line(id, Direction::Server, &line));
        if line.get(3) != Some(&b'-') {
            return std::str::from_utf8(line.get(..3)?).ok()?.parse().ok();
        }
    }
}
