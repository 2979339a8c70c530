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

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};

use super::listener::{bind, spawn};
use crate::smarthost::ServerHandle;

use crate::proto::{Conversation, Output};
use crate::smarthost::server::sleep_until_some;

use super::record::{
    CONNECT_TIMEOUT, CassetteWriter, End, Handover, MAX_RECORDED_LINE, RecordError, STOP_GRACE,
    header_fields, relay_from, say_last, send,
};
use crate::proto::cassette::{self as format, Cassette, Direction};
use crate::wire::{ClientLine, Follower, Frame, LineFramer, ReplyLine};

/// How long the upstream may take over each reply while it is brought up to date.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
use crate::proto::replay::{ReplayOptions, ReplaySession};

/// A replay server that records what it misses.
pub struct MissRecordingReplay;

impl MissRecordingReplay {
    /// Serves `cassette` on `listen`; misses go to `upstream` and are appended through `writer`.
    /// At most `max_connections` at once; more get `421` at connect.
    pub async fn start(
        cassette: Cassette,
        options: ReplayOptions,
        listen: SocketAddr,
        upstream: SocketAddr,
        writer: CassetteWriter,
        max_connections: usize,
    ) -> Result<ServerHandle, RecordError> {
        let (listener, addr) = bind(listen).await?;
        let cassette = Arc::new(cassette);
        let options = ReplayOptions {
            record_on_miss: true,
            ..options
        };
        info!(%addr, %upstream, "replaying; misses are recorded");
        Ok(spawn(
            listener,
            addr,
            info_span!("replay with record-on-miss", %addr, %upstream),
            max_connections,
            move |client, peer, index, stop| {
                let conversation = ReplaySession::new(
                    Arc::clone(&cassette),
                    usize::try_from(index).unwrap_or(usize::MAX),
                    options.clone(),
                    tokio::time::Instant::now().into_std(),
                );
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
    let mut replies = Vec::new();
    loop {
        while let Some(output) = conversation.poll_output() {
            match output {
                Output::Close(_) => {
                    conversation.poll_transmit(&mut replies);
                    if send(&mut client, &replies, &mut stop).await.is_err() {
                        return;
                    }
                    let _ = tokio::time::timeout(STOP_GRACE, client.shutdown()).await;
                    return;
                }
                Output::Event(_) | Output::StartTls => {}
            }
        }
        conversation.poll_transmit(&mut replies);
        if !replies.is_empty() {
            if send(&mut client, &replies, &mut stop).await.is_err() {
                return;
            }
            replies.clear();
        }
        if let Some(history) = conversation.take_miss() {
            info!(
                lines = history.len(),
                "miss: fetching the rest of the session from the upstream"
            );
            handover(client, peer, history, upstream, &writer, stop).await;
            return;
        }
        // A silent client holds no connection slot for ever: the replay's idle deadline (the
        // smart host's default) ends it with its 421.
        let wake = conversation
            .poll_timeout()
            .map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = sleep_until_some(wake) => {
                conversation.handle_timeout(tokio::time::Instant::now().into_std());
            }
            read = client.read(&mut buf) => match read {
                Ok(n) if n > 0 => {
                    conversation.receive(&buf[..n], tokio::time::Instant::now().into_std());
                }
                _ => return,
            },
            _ = stop.wait_for(|stopping| *stopping) => return,
        }
    }
}

/// Brings a fresh upstream session to where the client is, then relays and records the rest.
/// One sequence of steps over one upstream connection, each a few lines, in the order they happen.
async fn handover(
    mut client: TcpStream,
    peer: SocketAddr,
    history: Vec<Vec<u8>>,
    upstream: SocketAddr,
    writer: &CassetteWriter,
    mut stop: watch::Receiver<bool>,
) {
    let Some(id) = writer.begin_session(&header_fields(upstream, peer, &[("recorded", "on-miss")]))
    else {
        warn!("the cassette has used every session number; refusing");
        say_last(
            &mut client,
            b"421 4.3.0 etrn-harness: the cassette has used every session number\r\n",
        )
        .await;
        return;
    };
    let Some((missed, earlier)) = history.split_last() else {
        writer.append(&format!("{id} end client-closed\n"));
        return;
    };
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream))
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
    let mut server = match connected {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "upstream unreachable on a miss");
            say_last(
                &mut client,
                b"451 4.4.1 etrn-harness replay: not in the cassette and the upstream is unreachable\r\n",
            )
            .await;
            writer.append(&format!("{id} end upstream-unreachable\n"));
            return;
        }
    };
    let _ = server.set_nodelay(true);
    // The greeting, then each earlier line again; the replies are recorded, not forwarded. The
    // lines go through the same follower as a recorded session's, so credentials are redacted
    // and message data is labelled exactly as there.
    let mut follower = Follower::new();
    let mut replies = UpstreamReplies::new(id, writer);
    if let Err(end) = replies.next(&mut server, &mut follower, &mut stop).await {
        writer.append(&format!("{id} end {}\n", handover_end(end)));
        return;
    }
    for line in earlier {
        // A stop ends the handover at once: each write would otherwise get a grace of its own.
        if *stop.borrow() {
            writer.append(&format!("{id} end recorder-stopped\n"));
            return;
        }
        let (kind, recorded) = follower.client_line(line);
        let direction = if kind == ClientLine::Data {
            Direction::Data
        } else {
            Direction::Client
        };
        writer.append(&format::line(id, direction, &recorded));
        if let Err(end) = send(&mut server, line, &mut stop).await {
            writer.append(&format!("{id} end {}\n", handover_end(end)));
            return;
        }
        // Message data gets no reply line by line; its final "." does.
        if follower.is_in_data() || (kind == ClientLine::Data && line.as_slice() != b".\r\n") {
            continue;
        }
        if let Err(end) = replies.next(&mut server, &mut follower, &mut stop).await {
            writer.append(&format!("{id} end {}\n", handover_end(end)));
            return;
        }
    }
    // From the missed line on, the upstream answers the client directly.
    let handover = Handover {
        first: missed.clone(),
        follower,
    };
    relay_from(client, server, handover, id, writer, stop).await;
}

/// The `end` reason of a handover cut short, as the relay names the same ends.
fn handover_end(end: End) -> &'static str {
    match end {
        End::Shutdown => "recorder-stopped",
        End::Error => "io-error",
        _ => "upstream-closed",
    }
}

/// Reads the upstream's replies during a handover: capped lines, each recorded.
struct UpstreamReplies<'a> {
    id: u64,
    writer: &'a CassetteWriter,
    lines: LineFramer,
}

impl<'a> UpstreamReplies<'a> {
    fn new(id: u64, writer: &'a CassetteWriter) -> Self {
        UpstreamReplies {
            id,
            writer,
            lines: LineFramer::new(),
        }
    }

    /// Reads one complete reply, records it, returns its code; `None` when the upstream closed,
    /// broke the reply syntax with an over-long line, or was silent for [`REPLY_TIMEOUT`].
    async fn next(
        &mut self,
        server: &mut TcpStream,
        follower: &mut Follower,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<u16, End> {
        let mut buf = [0u8; 4096];
        loop {
            while let Some(frame) = self.lines.next_frame(MAX_RECORDED_LINE) {
                let Frame::Line(line) = frame else {
                    return Err(End::Closed);
                };
                self.writer
                    .append(&format::line(self.id, Direction::Server, line));
                follower.server_line(line);
                if let Some(reply) = ReplyLine::parse(line).filter(|r| r.last) {
                    return Ok(reply.code);
                }
            }
            let n = tokio::select! {
                read = tokio::time::timeout(REPLY_TIMEOUT, server.read(&mut buf)) => match read {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => return Err(End::Closed),
                },
                _ = stop.wait_for(|stopping| *stopping) => return Err(End::Shutdown),
            };
            self.lines.push(&buf[..n]);
        }
    }
}
