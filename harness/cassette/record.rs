//! Record mode: a transparent, SMTP-aware proxy that writes every session to a cassette.
//!
//! Bytes pass through unchanged and at once, in both directions; a copy is cut into lines and
//! written to the cassette, one line per write, so a killed recorder leaves a cassette that loads
//! up to its last complete exchange. The proxy follows just enough SMTP to label lines: message
//! data after a 354 to DATA, AUTH continuations after 334 (redacted, like AUTH's initial response),
//! and STARTTLS, which it passes through: after the upstream's 220 the bytes are encrypted, the
//! proxy keeps relaying them and records only that TLS began.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};

use super::format::{self, Cassette, Direction, MAGIC};
use super::listener::{ProxyServer, bind};

/// Starting the recorder failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the cassette {path}: {source}")]
    Cassette {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} exists but is not a cassette ({source}); choose another file")]
    NotACassette {
        path: PathBuf,
        source: super::format::CassetteError,
    },
}

/// Appends lines to a cassette, each in one write.
#[derive(Debug, Clone)]
pub struct CassetteWriter {
    file: Arc<Mutex<File>>,
    next_session: Arc<AtomicU32>,
}

impl CassetteWriter {
    /// Opens `path` for appending: a new file gets the version line; an existing cassette keeps
    /// its sessions and new ones are numbered after them.
    pub fn open(path: &Path) -> Result<Self, RecordError> {
        let existing = match std::fs::read_to_string(path) {
            Ok(text) if !text.is_empty() => {
                Some(
                    Cassette::parse(&text).map_err(|source| RecordError::NotACassette {
                        path: path.to_owned(),
                        source,
                    })?,
                )
            }
            Ok(_) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(RecordError::Cassette {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| RecordError::Cassette {
                path: path.to_owned(),
                source,
            })?;
        let next = match &existing {
            Some(c) => c.sessions.iter().map(|s| s.id).max().unwrap_or(0) + 1,
            None => {
                file.write_all(format!("{MAGIC}\n").as_bytes())
                    .map_err(|source| RecordError::Cassette {
                        path: path.to_owned(),
                        source,
                    })?;
                1
            }
        };
        Ok(CassetteWriter {
            file: Arc::new(Mutex::new(file)),
            next_session: Arc::new(AtomicU32::new(next)),
        })
    }

    /// A new session number.
    pub fn next_session(&self) -> u32 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Appends one line (it ends in '\n').
    pub fn append(&self, line: &str) {
        let mut f = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = f.write_all(line.as_bytes()) {
            warn!(error = %e, "cannot write to the cassette");
        }
    }
}

/// What the proxy has learnt about one session, to label its lines.
#[derive(Debug, Default)]
struct Tracker {
    last_verb: String,
    in_data: bool,
    in_auth: bool,
    tls: bool,
    quit: bool,
}

impl Tracker {
    /// How to record a client line (credentials redacted).
    fn client(&mut self, line: &[u8]) -> (Direction, Vec<u8>) {
        if self.in_data {
            if line == b".\r\n" {
                self.in_data = false;
            }
            return (Direction::Data, line.to_vec());
        }
        if self.in_auth {
            return (Direction::Client, b"[redacted]\r\n".to_vec());
        }
        let text = String::from_utf8_lossy(line);
        let mut words = text.split_whitespace();
        self.last_verb = words.next().unwrap_or("").to_ascii_uppercase();
        if self.last_verb == "QUIT" {
            self.quit = true;
        }
        if self.last_verb == "AUTH" && text.split_whitespace().count() > 2 {
            let mechanism = words.next().unwrap_or("");
            return (
                Direction::Client,
                format!("AUTH {mechanism} [redacted]\r\n").into_bytes(),
            );
        }
        (Direction::Client, line.to_vec())
    }

    /// Follows a server line; true when TLS starts after it.
    fn server(&mut self, line: &[u8]) -> bool {
        let complete = line.get(3) != Some(&b'-');
        if !complete {
            return false;
        }
        let code = std::str::from_utf8(line.get(..3).unwrap_or(b""))
            .ok()
            .and_then(|c| c.parse::<u16>().ok());
        match code {
            Some(334) => self.in_auth = true,
            Some(354) if self.last_verb == "DATA" => self.in_data = true,
            Some(220) if self.last_verb == "STARTTLS" => {
                self.tls = true;
                return true;
            }
            _ => self.in_auth = false,
        }
        false
    }
}

/// The recorder: listens on `listen`, relays each connection to `upstream`, records into
/// `cassette`.
pub struct RecordingProxy;

impl RecordingProxy {
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        cassette: &Path,
    ) -> Result<ProxyServer, RecordError> {
        let writer = CassetteWriter::open(cassette)?;
        let (listener, addr) = bind(listen).await?;
        info!(%addr, %upstream, cassette = %cassette.display(), "recording");
        Ok(ProxyServer::spawn(
            listener,
            addr,
            info_span!("recorder", %addr, %upstream),
            move |client, peer, _, stop| {
                let writer = writer.clone();
                let id = writer.next_session();
                async move { relay(client, peer, upstream, &writer, id, stop).await }
                    .instrument(info_span!("recorded session", id, %peer))
            },
        ))
    }
}

/// Relays one client to the upstream and records the session.
pub async fn relay(
    client: TcpStream,
    peer: SocketAddr,
    upstream: SocketAddr,
    writer: &CassetteWriter,
    id: u32,
    stop: watch::Receiver<bool>,
) {
    let started = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    writer.append(&format::session_header(
        id,
        &[
            ("upstream", upstream.to_string()),
            ("client", peer.to_string()),
            ("started", started),
        ],
    ));
    let server = match TcpStream::connect(upstream).await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "upstream unreachable");
            let mut client = client;
            let _ = client
                .write_all(b"421 4.4.1 etrn-harness: the upstream is unreachable\r\n")
                .await;
            writer.append(&format!("{id} end upstream-unreachable\n"));
            return;
        }
    };
    relay_streams(
        client,
        server,
        Vec::new(),
        Tracker::default(),
        id,
        writer,
        stop,
    )
    .await;
}

/// Relays an already recorded session from here on: `first` (the client's bytes not yet sent up)
/// goes to the upstream first; `in_data` says whether the client is inside message data.
pub async fn relay_from(
    client: TcpStream,
    server: TcpStream,
    first: Vec<u8>,
    in_data: bool,
    id: u32,
    writer: &CassetteWriter,
    stop: watch::Receiver<bool>,
) {
    let tracker = Tracker {
        in_data,
        ..Tracker::default()
    };
    relay_streams(client, server, first, tracker, id, writer, stop).await;
}

async fn relay_streams(
    client: TcpStream,
    mut server: TcpStream,
    first: Vec<u8>,
    tracker: Tracker,
    id: u32,
    writer: &CassetteWriter,
    stop: watch::Receiver<bool>,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let tracker = Arc::new(Mutex::new(tracker));
    if !first.is_empty() {
        if server.write_all(&first).await.is_err() {
            writer.append(&format!("{id} end upstream-closed\n"));
            return;
        }
        let mut t = tracker.lock().unwrap_or_else(PoisonError::into_inner);
        for line in first.split_inclusive(|b| *b == b'\n') {
            let (d, recorded) = t.client(line);
            writer.append(&format::line(id, d, &recorded));
        }
    }
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(
        cr,
        sw,
        Direction::Client,
        id,
        writer,
        &tracker,
        stop.clone(),
    );
    let down = pump(sr, cw, Direction::Server, id, writer, &tracker, stop);
    let (up_end, down_end) = tokio::join!(up, down);
    let quit = tracker.lock().unwrap_or_else(PoisonError::into_inner).quit;
    let reason = if quit {
        "quit"
    } else if down_end == End::Closed {
        "upstream-closed"
    } else {
        up_end.label()
    };
    writer.append(&format!("{id} end {reason}\n"));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Closed,
    Error,
    Shutdown,
}

impl End {
    fn label(self) -> &'static str {
        match self {
            End::Closed => "client-closed",
            End::Error => "io-error",
            End::Shutdown => "recorder-stopped",
        }
    }
}

/// Copies one direction, byte for byte, recording its lines until TLS starts.
async fn pump<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    mut from: R,
    mut to: W,
    direction: Direction,
    id: u32,
    writer: &CassetteWriter,
    tracker: &Mutex<Tracker>,
    mut stop: watch::Receiver<bool>,
) -> End {
    let mut buf = vec![0u8; 16 * 1024];
    let mut partial: Vec<u8> = Vec::new();
    let end = loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) => break End::Closed,
                Ok(n) => n,
                Err(_) => break End::Error,
            },
            _ = stop.changed() => break End::Shutdown,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break End::Error;
        }
        let mut t = tracker.lock().unwrap_or_else(PoisonError::into_inner);
        if t.tls {
            continue;
        }
        partial.extend_from_slice(&buf[..n]);
        while let Some(pos) = partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.drain(..=pos).collect();
            match direction {
                Direction::Server => {
                    writer.append(&format::line(id, Direction::Server, &line));
                    if t.server(&line) {
                        writer.append(&format!("{id} tls passthrough\n"));
                        partial.clear();
                        break;
                    }
                }
                _ => {
                    let (d, recorded) = t.client(&line);
                    writer.append(&format::line(id, d, &recorded));
                }
            }
        }
    };
    let _ = to.shutdown().await;
    end
}
