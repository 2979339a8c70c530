//! The built-in target: the model's sans-IO IMS client ([`ImsClient`]) driven over real TCP.
//!
//! This file is only the I/O: connect with the [`smtp_client`](crate::smtp_client), hand each
//! complete reply to the client, write what it says to write, close when it says so. Every decision (EHLO or HELO,
//! the outbound mail, which ETRNs, how to react to each reply, QUIT) is the client's, the same
//! client the model's prediction runs in memory. A reply that does not come within the timeout
//! counts as no reply, as the model's O-11 baseline says. A dial-up retrieval command is reported,
//! never run.

use std::net::SocketAddr;
use std::time::Duration;

use tracing::{debug, instrument};

use crate::ims::{self, Action, ConnectionRun, ImsClient, ImsConfig};
use crate::smtp_client::{ClientError, Connection};

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
    let mut server = Connection::open(addr, reply_timeout).await?;
    let mut client = ImsClient::new(config);
    loop {
        let Some(reply) = server.reply_or_silence().await? else {
            debug!("no reply: the server closed or stayed silent");
            client.on_closed();
            break;
        };
        match client.on_reply(&reply) {
            Action::Send(bytes) => {
                debug!(line = %String::from_utf8_lossy(&bytes).trim_end(), "C:");
                if server.send_raw(&bytes).await.is_err() {
                    // The server is gone; the read that follows would say so too.
                    client.on_closed();
                    break;
                }
            }
            Action::Close => break,
        }
    }
    server.close().await;
    Ok(client.into_run())
}
