//! A minimal SMTP client: send a line, read a complete (multi-line) reply.
//!
//! The built-in conformance target and the load generator speak SMTP through it. It writes each
//! command in one segment with Nagle off, so a conversation on loopback costs round trips, not
//! timer waits. Each reply has one deadline, however its bytes trickle in.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

pub use crate::reply::Reply;
use crate::reply::ReplyReader;

/// Why a client conversation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server closed the connection while a reply was expected")]
    Closed,
    #[error("{0}")]
    BadReply(String),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
}

/// One client connection.
pub struct Connection {
    reader: tokio::net::tcp::OwnedReadHalf,
    replies: ReplyReader,
    writer: tokio::net::tcp::OwnedWriteHalf,
    timeout: Duration,
}

impl Connection {
    /// Connects; every later read waits at most `timeout`.
    pub async fn open(addr: SocketAddr, timeout: Duration) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect { addr, source })?;
        // Commands are small and each waits for its reply: Nagle would only add delay.
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        Ok(Connection {
            reader: r,
            replies: ReplyReader::new(),
            writer: w,
            timeout,
        })
    }

    /// Reads one complete reply, multi-line included (E29: read to the final line), within the
    /// timeout.
    pub async fn reply(&mut self) -> Result<Reply, ClientError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(reply) = self.replies.next_reply() {
                let reply = reply.map_err(|e| ClientError::BadReply(e.to_string()))?;
                debug!(%reply, "S:");
                return Ok(reply);
            }
            let n = tokio::time::timeout_at(deadline, self.reader.read(&mut buf))
                .await
                .map_err(|_| ClientError::Timeout(self.timeout))??;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.replies.push(&buf[..n]);
        }
    }

    /// The next reply, or `None` when none is coming: the server closed, reset the connection
    /// or stayed silent past the timeout (a client such as IMS treats all three alike). A reply
    /// that is not SMTP is an error.
    pub async fn reply_or_silence(&mut self) -> Result<Option<Reply>, ClientError> {
        match self.reply().await {
            Ok(reply) => Ok(Some(reply)),
            Err(ClientError::Closed | ClientError::Timeout(_)) => Ok(None),
            Err(ClientError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends one command line; CRLF is added.
    pub async fn send(&mut self, line: &str) -> Result<(), ClientError> {
        debug!(line, "C:");
        // One write per line: the line and its CRLF in one segment.
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await?;
        Ok(())
    }

    /// Sends a line and reads its reply.
    pub async fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        self.send(line).await?;
        self.reply().await
    }
}

/// The rest of the client API.
impl Connection {
    /// Writes bytes as they are (pipelined commands, message data) and flushes.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// Closes the sending side (the server sees the end of the stream).
    pub async fn close(&mut self) {
        let _ = self.writer.shutdown().await;
    }

    /// QUIT; the reply is a courtesy, a server that just closes is fine.
    pub async fn quit(&mut self) -> Result<(), ClientError> {
        self.send("QUIT").await?;
        let _ = self.reply().await;
        let _ = self.writer.shutdown().await;
        Ok(())
    }
}
