//! The built-in target: a reference implementation of the IMS dequeue client over real SMTP.
//!
//! It does what the model plans, on the wire: connect, EHLO (HELO if EHLO is refused), deliver the
//! queued outbound messages, send the planned ETRNs reacting to each reply as the model says, QUIT.
//! It plans each connection with the EHLO answer it actually got, so a smart host that does not
//! advertise ETRN gets none. A dial-up retrieval command is reported, never run.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use tracing::instrument;

use crate::client::{ClientError, Connection};
use crate::ims::{self, Dequeue, ImsConfig, PeerEhlo, Reaction};
use crate::reply::ReplyCode;

/// What the built-in client did besides SMTP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientReport {
    /// Dial-up retrieval commands it would have run.
    pub local_commands: Vec<String>,
}

/// Runs the whole delivery cycle of `config` against the smart host at `addr`.
#[instrument(skip(config), fields(site = %config.site_address))]
pub async fn run(
    config: &ImsConfig,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<ClientReport, ClientError> {
    // How many connections the cycle makes does not depend on the peer.
    let cycle = ims::plan(config, &PeerEhlo::HeloOnly);
    let report = ClientReport {
        local_commands: cycle.local_command.iter().cloned().collect(),
    };
    for _ in &cycle.connections {
        session(config, addr, timeout).await?;
    }
    Ok(report)
}

/// One connection of the cycle.
async fn session(
    config: &ImsConfig,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(), ClientError> {
    let mut c = Connection::open(addr, timeout).await?;
    let greeting = c.reply().await?;
    if greeting.code == 421 {
        return Ok(());
    }
    if !(200..300).contains(&greeting.code) {
        return quit(&mut c).await;
    }
    let name = config.ehlo_name().raw().to_owned();
    let ehlo = c.command(&format!("EHLO {name}")).await?;
    let peer = if (200..300).contains(&ehlo.code) {
        PeerEhlo::Esmtp {
            keywords: ehlo.lines.iter().skip(1).cloned().collect(),
        }
    } else {
        let helo = c.command(&format!("HELO {name}")).await?;
        if !(200..300).contains(&helo.code) {
            return quit(&mut c).await;
        }
        PeerEhlo::HeloOnly
    };
    let plan = ims::plan(config, &peer);
    let sender = format!("postmaster@{}", config.site_address.domain().raw());
    for n in 0..plan.session.outbound_messages {
        if !deliver(&mut c, &sender, n).await? {
            break;
        }
    }
    match &plan.session.dequeue {
        Dequeue::Nothing => {}
        Dequeue::Turn => {
            if let Some(cred) = &config.turn_credentials {
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("\0{}\0{}", cred.username, cred.password));
                let auth = c.command(&format!("AUTH PLAIN {token}")).await?;
                if auth.code == 235 {
                    let turn = c.command("TURN").await?;
                    if turn.code == 421 {
                        return Ok(());
                    }
                }
            }
        }
        Dequeue::Etrn(list) => {
            for planned in list {
                let reply = c.command(&format!("ETRN {}", planned.arg.raw())).await?;
                let code = ReplyCode::new(reply.code).unwrap_or(ReplyCode::CLOSING);
                match ims::react(code).0 {
                    Reaction::Continue => {}
                    Reaction::StopEtrn => break,
                    Reaction::Disconnect => return Ok(()),
                }
            }
        }
    }
    quit(&mut c).await
}

/// One outbound message; false when the server refused the transaction.
async fn deliver(c: &mut Connection, sender: &str, n: u32) -> Result<bool, ClientError> {
    if c.command(&format!("MAIL FROM:<{sender}>")).await?.code != 250 {
        return Ok(false);
    }
    if !(250..=251).contains(&c.command("RCPT TO:<someone@remote.example>").await?.code) {
        c.command("RSET").await?;
        return Ok(false);
    }
    if c.command("DATA").await?.code != 354 {
        return Ok(false);
    }
    c.send(&format!(
        "Subject: outbound message {}\r\n\r\nqueued by the IMS\r\n.",
        n + 1
    ))
    .await?;
    Ok(c.reply().await?.code == 250)
}

async fn quit(c: &mut Connection) -> Result<(), ClientError> {
    c.quit().await
}
