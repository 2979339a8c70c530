//! The built-in target: the model's sans-IO IMS client ([`ImsClient`]) driven over real TCP.
//!
//! This file is only the I/O: connect, read bytes into a [`ReplyReader`], hand each complete reply
//! to the client, write what it says to write, close when it says so. Every decision (EHLO or HELO,
//! the outbound mail, which ETRNs, how to react to each reply, QUIT) is the client's, the same
//! client the model's prediction runs in memory. A reply that does not come within the timeout
//! counts as no reply, as the model's O-11 baseline says. A dial-up retrieval command is reported,
//! never run.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, instrument};

use crate::client::ClientError;
use crate::ims::{self, Action, ConnectionRun, ImsClient, ImsConfig};
use crate::reply::{Reply, ReplyReader};

/// What the built-in client did besides SMTP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientReport {
    /// Dial-up retrieval commands it would have run.
    pub local_commands: Vec<String>,
    /// What it did on each connection.
    pub connections: Vec<ConnectionRun>,
}

/// Runs the whole delivery cycle of `config` against the smart host at `addr`; each reply is
/// awaited at most `reply_timeout`.
#[instrument(skip(config), fields(site = %config.site_address))]
pub async fn run(
    config: &ImsConfig,
    addr: SocketAddr,
    reply_timeout: Duration,
) -> Result<ClientReport, ClientError> {
    let cycle = ims::cycle(config);
    let mut report = ClientReport {
        local_commands: cycle.local_command.into_iter().collect(),
        connections: Vec::new(),
    };
    for n in 0..cycle.connections {
        debug!(connection = n + 1, "connecting");
        report
            .connections
            .push(connection(config, addr, reply_timeout).await?);
    }
    Ok(report)
}

/// One connection of the cycle.
async fn connection(
    config: &ImsConfig,
    addr: SocketAddr,
    reply_timeout: Duration,
) -> Result<ConnectionRun, ClientError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|source| ClientError::Connect { addr, source })?;
    // Each command waits for its reply: Nagle would only add delay.
    stream.set_nodelay(true)?;
    let mut client = ImsClient::new(config);
    let mut reader = ReplyReader::new();
    loop {
        let Some(reply) = next_reply(&mut stream, &mut reader, reply_timeout).await? else {
            debug!("no reply: the server closed or stayed silent");
            client.on_closed();
            break;
        };
        debug!(%reply, "S:");
        match client.on_reply(&reply) {
            Action::Send(bytes) => {
                debug!(line = %String::from_utf8_lossy(&bytes).trim_end(), "C:");
                if stream.write_all(&bytes).await.is_err() {
                    // The server is gone; the read that follows would say so too.
                    client.on_closed();
                    break;
                }
            }
            Action::Close => break,
        }
    }
    let _ = stream.shutdown().await;
    Ok(client.into_run())
}

/// The next complete reply; `None` when the server closed or did not answer in time.
async fn next_reply(
    stream: &mut TcpStream,
    reader: &mut ReplyReader,
    reply_timeout: Duration,
) -> Result<Option<Reply>, ClientError> {
    let deadline = tokio::time::Instant::now() + reply_timeout;
    let mut buf = [0u8; 4096];
    loop {
        if let Some(reply) = reader.next_reply() {
            return reply
                .map(Some)
                .map_err(|e| ClientError::BadReply(e.to_string()));
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) | Ok(Ok(0)) => return Ok(None),
            Ok(Ok(n)) => reader.push(&buf[..n]),
            // A reset is the server hanging up, not a failure of the client.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
            Ok(Err(e)) => return Err(e.into()),
        }
    }
}
