//! A minimal SMTP client: send a line, read a complete (multi-line) reply.
//!
//! The built-in conformance target and the load generator speak SMTP through it. It writes each
//! command in one segment with Nagle off, so a conversation on loopback costs round trips, not
//! timer waits.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tracing::debug;

/// Longest reply line the client accepts (RFC 5321 §4.5.3.1.5 allows 512).
const MAX_REPLY_LINE: u64 = 4096;

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
    #[error("malformed reply line {0:?}")]
    BadReply(String),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
}

/// A complete reply: its code and the text of each line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// One client connection.
pub struct Connection {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
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
            reader: BufReader::new(r),
            writer: w,
            timeout,
        })
    }

    /// Reads one complete reply, multi-line included (E29: read to the final line).
    pub async fn reply(&mut self) -> Result<Reply, ClientError> {
        let mut lines = Vec::new();
        loop {
            let mut raw = Vec::new();
            let read = tokio::time::timeout(self.timeout, async {
                (&mut self.reader)
                    .take(MAX_REPLY_LINE)
                    .read_until(b'\n', &mut raw)
                    .await
            })
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))??;
            if read == 0 {
                return Err(ClientError::Closed);
            }
            let line = String::from_utf8_lossy(&raw).trim_end().to_owned();
            let code: u16 = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| ClientError::BadReply(line.clone()))?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_owned());
            if !more {
                debug!(code, text = %lines.join(" / "), "S:");
                return Ok(Reply { code, lines });
            }
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

    /// QUIT; the reply is a courtesy, a server that just closes is fine.
    pub async fn quit(&mut self) -> Result<(), ClientError> {
        self.send("QUIT").await?;
        let _ = self.reply().await;
        let _ = self.writer.shutdown().await;
        Ok(())
    }
}
