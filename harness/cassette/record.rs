//! Record mode: a transparent, SMTP-aware proxy that writes every session to a cassette.
//!
//! Each line is written to the cassette *before* it is passed on, so a reply can never be
//! recorded ahead of the command it answers, pipelined or not; one cassette line per write, so a
//! killed recorder leaves a cassette that loads up to its last complete exchange. The proxy
//! follows the session with the wire layer's [`Follower`]: message data after a 354, AUTH
//! credentials (redacted, every continuation too, whatever the interleaving) and STARTTLS.
//!
//! STARTTLS is either passed through (the bytes after the upstream's 220 are relayed encrypted
//! and only the fact is recorded) or terminated ([`TlsMode::Terminate`]): the proxy is the TLS
//! server to the client (its own certificate) and a TLS client to the upstream, and records the
//! plaintext of the whole session.
//!
//! Nothing is lost at the edges: a line cut by a close is written with its exact bytes, a line
//! longer than [`MAX_RECORDED_LINE`] is written in pieces that join up again when read, and the
//! `end` line says which side closed first.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};

use super::listener::{bind, spawn};
use super::tls::TlsTerminate;
use crate::proto::cassette::{self as format, Cassette, Direction, MAGIC};
use crate::smarthost::ServerHandle;
use crate::wire::follow::ServerStep;
use crate::wire::{ClientLine, Command, Follower, Frame, LineFramer, Verb, redact};

/// The longest piece of a line written as one cassette line; longer lines are cut into pieces of
/// this size (`C!`, `D!`, `S!`), which the parser joins again.
pub const MAX_RECORDED_LINE: usize = 8 * 1024;

/// How long each TLS handshake of a terminated STARTTLS may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
    #[error(
        "cannot record into {path}: {reason}; name a regular file, or a path that does not exist yet"
    )]
    Unusable { path: PathBuf, reason: String },
    #[error("{path} exists but is not a cassette ({source}); choose another file")]
    NotACassette {
        path: PathBuf,
        source: crate::proto::cassette::CassetteError,
    },
    #[error(
        "{path} is being written by another recorder (it holds the file's lock); stop that one first, or record into another file"
    )]
    Locked { path: PathBuf },
    #[error(
        "{path} ends in the middle of line {line} (a recorder killed mid-write?); remove that last line, then record again"
    )]
    CutShort { path: PathBuf, line: usize },
    #[error("{0}")]
    Tls(#[from] super::tls::TlsSetupError),
}

/// How the proxy treats STARTTLS.
#[derive(Clone, Default)]
pub enum TlsMode {
    /// Relay the encrypted bytes; record only that TLS began.
    #[default]
    Passthrough,
    /// Terminate TLS on both sides and record the plaintext.
    Terminate(Arc<TlsTerminate>),
}

/// What the writer guards.
#[derive(Debug)]
struct Sink {
    file: File,
    /// The next session number; `None` once every number is used.
    next_session: Option<u64>,
}

/// The lock goes with the last writer, explicitly: a `flock` belongs to the open file, and a
/// process forked meanwhile (any child being spawned, before its `exec` closes the descriptor)
/// would otherwise hold it a moment longer, and a recorder opened right after would find the
/// file locked.
impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// Appends lines to a cassette, each in one write. The file is locked (`flock`, exclusive) for as
/// long as a writer holds it, so two recorders cannot interleave their sessions in one file.
#[derive(Debug, Clone)]
pub struct CassetteWriter {
    sink: Arc<Mutex<Sink>>,
}

impl CassetteWriter {
    /// Opens `path` for appending: a new file gets the version line; an existing cassette keeps
    /// its sessions and new ones are numbered after them.
    pub fn open(path: &Path) -> Result<Self, RecordError> {
        let io = |source| RecordError::Cassette {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            // A FIFO named as the cassette must not block the open; fstat then refuses it.
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path)
            .map_err(io)?;
        crate::files::ensure_regular(&file, path).map_err(|e| RecordError::Unusable {
            path: path.to_owned(),
            reason: e.reason(),
        })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(RecordError::Locked {
                    path: path.to_owned(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let mut bytes = Vec::new();
        (&file)
            .take(crate::proto::cassette::MAX_CASSETTE_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > crate::proto::cassette::MAX_CASSETTE_FILE {
            return Err(RecordError::Unusable {
                path: path.to_owned(),
                reason: format!(
                    "it is larger than {} octets",
                    crate::proto::cassette::MAX_CASSETTE_FILE
                ),
            });
        }
        let text = format::text_of(&bytes).map_err(|source| RecordError::NotACassette {
            path: path.to_owned(),
            source,
        })?;
        let next = if text.is_empty() {
            file.write_all(format!("{MAGIC}\n").as_bytes())
                .map_err(io)?;
            Some(1)
        } else {
            if !text.ends_with('\n') {
                return Err(RecordError::CutShort {
                    path: path.to_owned(),
                    line: text.lines().count(),
                });
            }
            let existing = Cassette::parse(text).map_err(|source| RecordError::NotACassette {
                path: path.to_owned(),
                source,
            })?;
            match existing.sessions.iter().map(|s| s.id).max() {
                Some(last) => last.checked_add(1),
                None => Some(1),
            }
        };
        Ok(CassetteWriter {
            sink: Arc::new(Mutex::new(Sink {
                file,
                next_session: next,
            })),
        })
    }

    /// Starts a session: takes the next number and writes its header, both under one lock, so
    /// headers appear in number order however many sessions start at once. `None` when every
    /// session number is used (numbers never wrap round to reuse one).
    pub fn begin_session(&self, fields: &[(&str, String)]) -> Option<u64> {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        let id = sink.next_session?;
        sink.next_session = id.checked_add(1);
        let header = format::session_header(id, fields);
        if let Err(e) = sink.file.write_all(header.as_bytes()) {
            warn!(error = %e, "cannot write to the cassette");
        }
        Some(id)
    }

    /// Appends one line (it ends in '\n').
    pub fn append(&self, line: &str) {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = sink.file.write_all(line.as_bytes()) {
            warn!(error = %e, "cannot write to the cassette");
        }
    }
}

/// The header fields of a session recorded from `peer` to `upstream`.
pub fn header_fields(
    upstream: SocketAddr,
    peer: SocketAddr,
    extra: &[(&'static str, &'static str)],
) -> Vec<(&'static str, String)> {
    let started = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let mut fields = vec![
        ("upstream", upstream.to_string()),
        ("client", peer.to_string()),
        ("started", started),
    ];
    fields.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    fields
}

/// How long one write to either side may take: a peer that stops reading cannot hold a relay
/// task, or the shutdown, for ever. The session then ends as `io-error`.
pub const RELAY_WRITE_DEADLINE: Duration = Duration::from_secs(30);
/// How long a write in progress may go on once the recorder is stopping; past it the session is
/// ended and recorded as `end recorder-stopped`.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long connecting to the upstream may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes `bytes` to `to` within [`RELAY_WRITE_DEADLINE`]; once `stop` says the recorder is
/// stopping, within [`STOP_GRACE`] more at most.
pub(super) async fn send<W: AsyncWrite + Unpin>(
    to: &mut W,
    bytes: &[u8],
    stop: &mut watch::Receiver<bool>,
) -> Result<(), End> {
    let write = tokio::time::timeout(RELAY_WRITE_DEADLINE, to.write_all(bytes));
    tokio::pin!(write);
    // `wait_for`, not `changed`: a stop seen before is still a stop.
    let written = tokio::select! {
        r = &mut write => Some(r),
        _ = stop.wait_for(|stopping| *stopping) => None,
    };
    let written = match written {
        Some(r) => r,
        None => match tokio::time::timeout(STOP_GRACE, write).await {
            Ok(r) => r,
            Err(_) => return Err(End::Shutdown),
        },
    };
    match written {
        Ok(Ok(())) => Ok(()),
        _ => Err(End::Error),
    }
}

/// A write that ends a session (a refusal, a `421`): bounded, its failure of no consequence.
pub(super) async fn say_last<W: AsyncWrite + Unpin>(to: &mut W, bytes: &[u8]) {
    let _ = tokio::time::timeout(STOP_GRACE, to.write_all(bytes)).await;
}

/// The reply to a client when no session number is left.
const NUMBERS_EXHAUSTED: &[u8] =
    b"421 4.3.0 etrn-harness: the cassette has used every session number\r\n";

/// The recorder: listens on `listen`, relays each connection to `upstream`, records into
/// `cassette`.
pub struct RecordingProxy;

impl RecordingProxy {
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        cassette: &Path,
    ) -> Result<ServerHandle, RecordError> {
        Self::start_with(
            listen,
            upstream,
            cassette,
            TlsMode::Passthrough,
            super::DEFAULT_MAX_CONNECTIONS,
        )
        .await
    }

    /// Like [`start`](Self::start), with a choice of STARTTLS handling and a cap on simultaneous
    /// connections (more get `421` at connect and are not recorded).
    pub async fn start_with(
        listen: SocketAddr,
        upstream: SocketAddr,
        cassette: &Path,
        tls: TlsMode,
        max_connections: usize,
    ) -> Result<ServerHandle, RecordError> {
        let writer = CassetteWriter::open(cassette)?;
        let (listener, addr) = bind(listen).await?;
        info!(%addr, %upstream, cassette = %cassette.display(), "recording");
        Ok(spawn(
            listener,
            addr,
            info_span!("recorder", %addr, %upstream),
            max_connections,
            move |client, peer, _, stop| {
                let writer = writer.clone();
                let tls = tls.clone();
                async move { relay(client, peer, upstream, &writer, tls, stop).await }
                    .instrument(info_span!("recorded session", %peer))
            },
        ))
    }
}

/// Relays one client to the upstream and records the session.
pub async fn relay(
    mut client: TcpStream,
    peer: SocketAddr,
    upstream: SocketAddr,
    writer: &CassetteWriter,
    tls: TlsMode,
    stop: watch::Receiver<bool>,
) {
    let Some(id) = writer.begin_session(&header_fields(upstream, peer, &[])) else {
        warn!("the cassette has used every session number; refusing");
        say_last(&mut client, NUMBERS_EXHAUSTED).await;
        return;
    };
    info!(id, "session started");
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream))
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
    let server = match connected {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "upstream unreachable");
            say_last(
                &mut client,
                b"421 4.4.1 etrn-harness: the upstream is unreachable\r\n",
            )
            .await;
            writer.append(&format!("{id} end upstream-unreachable\n"));
            return;
        }
    };
    let handover = Handover {
        first: Vec::new(),
        follower: Follower::new(),
    };
    relay_streams(client, server, handover, id, writer, tls, stop).await;
}

/// Where a relay starts: the client's bytes not yet sent up (a record-on-miss handover) and what
/// is known of the session so far.
pub struct Handover {
    pub first: Vec<u8>,
    pub follower: Follower,
}

/// Relays an already recorded session from `handover` on.
pub async fn relay_from(
    client: TcpStream,
    server: TcpStream,
    handover: Handover,
    id: u64,
    writer: &CassetteWriter,
    stop: watch::Receiver<bool>,
) {
    relay_streams(
        client,
        server,
        handover,
        id,
        writer,
        TlsMode::Passthrough,
        stop,
    )
    .await;
}

/// A byte stream the relay can carry: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Which end of the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Upstream,
}

/// Why a pump stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// Its source closed.
    Closed,
    /// A read or write failed.
    Error,
    /// The recorder is stopping.
    Shutdown,
    /// (Client side, TLS terminated) the client sent STARTTLS and waits for its reply.
    AtStartTls,
    /// (Upstream side, TLS terminated) the reply to STARTTLS went out; `true` when it was 220.
    StartTlsAnswered(bool),
}

/// What both pumps of one session share.
struct Shared {
    follower: Follower,
    /// STARTTLS was passed through: nothing more is recorded.
    passthrough: bool,
    /// The side that ended first, and how.
    first_end: Option<(Side, End)>,
}

/// The recording context of one session.
struct Context<'a> {
    id: u64,
    writer: &'a CassetteWriter,
    shared: Mutex<Shared>,
    terminate: bool,
}

impl Context<'_> {
    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, direction: Direction, bytes: &[u8]) {
        self.writer.append(&format::line(self.id, direction, bytes));
    }
}

async fn relay_streams(
    client: TcpStream,
    server: TcpStream,
    handover: Handover,
    id: u64,
    writer: &CassetteWriter,
    tls: TlsMode,
    mut stop: watch::Receiver<bool>,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let context = Context {
        id,
        writer,
        shared: Mutex::new(Shared {
            follower: handover.follower,
            passthrough: false,
            first_end: None,
        }),
        terminate: matches!(tls, TlsMode::Terminate(_)),
    };
    let mut client: Box<dyn Stream> = Box::new(client);
    let mut server: Box<dyn Stream> = Box::new(server);
    let mut client_lines = LineFramer::new();
    let mut server_lines = LineFramer::new();
    let mut client_piece = Piece::None;
    if !handover.first.is_empty() {
        client_lines.push(&handover.first);
        let mut out = Vec::new();
        record_client_frames(&context, &mut client_lines, &mut client_piece, &mut out);
        if send(&mut server, &out, &mut stop).await.is_err() {
            writer.append(&format!("{id} end upstream-closed\n"));
            return;
        }
    }
    // Each turn relays until the session ends, or (TLS terminated) until STARTTLS is answered.
    let reason = loop {
        let (mut cr, mut cw) = tokio::io::split(client);
        let (mut sr, mut sw) = tokio::io::split(server);
        let up = pump_client(
            &mut cr,
            &mut sw,
            &context,
            &mut client_lines,
            &mut client_piece,
            stop.clone(),
        );
        let down = pump_upstream(&mut sr, &mut cw, &context, &mut server_lines, stop.clone());
        let (up_end, down_end) = tokio::join!(up, down);
        client = Box::new(cr.unsplit(cw));
        server = Box::new(sr.unsplit(sw));
        let TlsMode::Terminate(terminate) = &tls else {
            break close(client, server, end_reason(&context)).await;
        };
        match (up_end, down_end) {
            (End::AtStartTls, End::StartTlsAnswered(true)) => {
                match terminate_tls(terminate, client, server, &mut stop).await {
                    Ok((s, c)) => {
                        info!(id, "STARTTLS terminated on both sides");
                        writer.append(&format!("{id} tls terminate\n"));
                        server = s;
                        client = c;
                    }
                    Err(reason) => break reason,
                }
            }
            // STARTTLS refused: go on in plaintext.
            (End::AtStartTls, End::StartTlsAnswered(false)) => {}
            _ => break close(client, server, end_reason(&context)).await,
        }
    };
    writer.append(&format!("{id} end {reason}\n"));
    info!(id, reason, "session ended");
}

/// The TLS handshakes on both sides after STARTTLS was answered, bounded in time: the new
/// streams (upstream, client), or the session's end reason.
async fn terminate_tls(
    terminate: &TlsTerminate,
    client: Box<dyn Stream>,
    server: Box<dyn Stream>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(Box<dyn Stream>, Box<dyn Stream>), &'static str> {
    let handshakes = async {
        let upstream = async {
            terminate
                .connect(server)
                .await
                .map(|s| Box::new(s) as Box<dyn Stream>)
        };
        let downstream = async {
            terminate
                .accept(client)
                .await
                .map(|c| Box::new(c) as Box<dyn Stream>)
        };
        tokio::try_join!(upstream, downstream)
    };
    let done = tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshakes) => r,
        _ = stop.wait_for(|stopping| *stopping) => return Err("recorder-stopped"),
    };
    match done {
        Ok(Ok(streams)) => Ok(streams),
        Ok(Err(e)) => {
            warn!(error = %e, "TLS handshake failed");
            Err("tls-failed")
        }
        Err(_) => {
            warn!("TLS handshake timed out");
            Err("tls-failed")
        }
    }
}

/// Closes both streams; the reason passes through.
async fn close(
    mut client: Box<dyn Stream>,
    mut server: Box<dyn Stream>,
    reason: &'static str,
) -> &'static str {
    let _ = tokio::time::timeout(STOP_GRACE, client.shutdown()).await;
    let _ = tokio::time::timeout(STOP_GRACE, server.shutdown()).await;
    reason
}

/// The `end` line's reason: `quit` after QUIT, otherwise the side that ended first.
fn end_reason(context: &Context<'_>) -> &'static str {
    let shared = context.shared();
    if shared.follower.quit() {
        return "quit";
    }
    match shared.first_end {
        Some((Side::Client, End::Closed)) => "client-closed",
        Some((Side::Upstream, End::Closed)) => "upstream-closed",
        Some((_, End::Shutdown)) => "recorder-stopped",
        _ => "io-error",
    }
}

/// How an over-long client line that has started is recorded, piece after piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// No over-long line in progress.
    None,
    /// Pieces of a command or of message data: recorded as they are.
    Plain(Direction),
    /// Pieces of an AUTH line or a credential: only the line end is recorded.
    Secret,
}

/// Records the client's complete frames (and pieces of over-long lines) and collects the bytes
/// to pass on into `out`. Returns true when a STARTTLS line went into `out` and the proxy
/// terminates TLS: what the client sent after it is plaintext injected before the handshake
/// (CVE-2011-0411) and is dropped.
fn record_client_frames(
    context: &Context<'_>,
    lines: &mut LineFramer,
    piece: &mut Piece,
    out: &mut Vec<u8>,
) -> bool {
    while let Some(frame) = lines.next_frame(MAX_RECORDED_LINE) {
        let mut shared = context.shared();
        match (frame, *piece) {
            (Frame::Line(tail), Piece::Plain(direction)) => {
                context.write(direction, tail);
                *piece = Piece::None;
                out.extend_from_slice(tail);
            }
            (Frame::Line(tail), Piece::Secret) => {
                let end = crate::wire::command::trim_line_end(tail).len();
                context.write(Direction::Client, &tail[end..]);
                *piece = Piece::None;
                out.extend_from_slice(tail);
            }
            (Frame::Overlong(more), Piece::Plain(direction)) => {
                context.write(direction, more);
                out.extend_from_slice(more);
            }
            (Frame::Overlong(more), Piece::Secret) => out.extend_from_slice(more),
            (Frame::Overlong(first), Piece::None) => {
                if shared.follower.is_in_data() {
                    context.write(Direction::Data, first);
                    *piece = Piece::Plain(Direction::Data);
                } else {
                    let secret = *Command::parse(first).verb() == Verb::Auth;
                    let (kind, recorded) = shared.follower.client_line(first);
                    if kind == ClientLine::AuthResponse {
                        context.write(Direction::Client, redact::MARK.as_bytes());
                        *piece = Piece::Secret;
                    } else {
                        context.write(Direction::Client, &recorded);
                        *piece = if secret {
                            Piece::Secret
                        } else {
                            Piece::Plain(Direction::Client)
                        };
                    }
                }
                out.extend_from_slice(first);
            }
            (Frame::Line(line), Piece::None) => {
                let (kind, recorded) = shared.follower.client_line(line);
                let direction = if kind == ClientLine::Data {
                    Direction::Data
                } else {
                    Direction::Client
                };
                context.write(direction, &recorded);
                out.extend_from_slice(line);
                if context.terminate
                    && kind == ClientLine::Command
                    && *Command::parse(line).verb() == Verb::StartTls
                {
                    let injected = lines.take_pending();
                    if !injected.is_empty() {
                        warn!(
                            octets = injected.len(),
                            "bytes pipelined after STARTTLS dropped"
                        );
                    }
                    return true;
                }
            }
        }
    }
    false
}

/// Copies client → upstream, recording each line before it is passed on.
async fn pump_client<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    from: &mut R,
    to: &mut W,
    context: &Context<'_>,
    lines: &mut LineFramer,
    piece: &mut Piece,
    mut stop: watch::Receiver<bool>,
) -> End {
    let mut buf = vec![0u8; 16 * 1024];
    let end = loop {
        let n = match next_chunk(from, to, &mut buf, context, &mut stop).await {
            Ok(n) => n,
            Err(end) => break end,
        };
        lines.push(&buf[..n]);
        let mut out = Vec::with_capacity(n);
        let at_starttls = record_client_frames(context, lines, piece, &mut out);
        if let Err(end) = send(to, &out, &mut stop).await {
            break end;
        }
        if at_starttls {
            return End::AtStartTls;
        }
    };
    // Keep, and pass on, what the client sent of a line it never finished.
    let rest = lines.take_pending();
    if !rest.is_empty() && !context.shared().passthrough {
        record_client_rest(context, *piece, &rest);
        // Passed on when the client closed; a stop or a failed write has had its grace.
        if end == End::Closed {
            let _ = send(to, &rest, &mut stop).await;
        }
    }
    finish(context, Side::Client, end, to).await
}

/// Reads the next bytes to record. Once STARTTLS was passed through nothing is recorded: those
/// bytes are relayed here, and reading goes on.
async fn next_chunk<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    from: &mut R,
    to: &mut W,
    buf: &mut [u8],
    context: &Context<'_>,
    stop: &mut watch::Receiver<bool>,
) -> Result<usize, End> {
    loop {
        let n = tokio::select! {
            r = from.read(buf) => match r {
                Ok(0) => return Err(End::Closed),
                Ok(n) => n,
                Err(_) => return Err(End::Error),
            },
            _ = stop.wait_for(|stopping| *stopping) => return Err(End::Shutdown),
        };
        if !context.shared().passthrough {
            return Ok(n);
        }
        send(to, &buf[..n], stop).await?;
    }
}

/// Records the bytes of a line the client never finished.
fn record_client_rest(context: &Context<'_>, piece: Piece, rest: &[u8]) {
    match piece {
        Piece::Plain(direction) => context.write(direction, rest),
        Piece::Secret => {}
        Piece::None => {
            let shared = context.shared();
            let (kind, recorded) = shared.follower.client_fragment(rest);
            let direction = if kind == ClientLine::Data {
                Direction::Data
            } else {
                Direction::Client
            };
            context.write(direction, &recorded);
        }
    }
}

/// Copies upstream → client, recording each line before it is passed on.
async fn pump_upstream<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    from: &mut R,
    to: &mut W,
    context: &Context<'_>,
    lines: &mut LineFramer,
    mut stop: watch::Receiver<bool>,
) -> End {
    let mut buf = vec![0u8; 16 * 1024];
    let end = loop {
        let n = match next_chunk(from, to, &mut buf, context, &mut stop).await {
            Ok(n) => n,
            Err(end) => break end,
        };
        lines.push(&buf[..n]);
        let mut out = Vec::with_capacity(n);
        let mut answered = None;
        while let Some(frame) = lines.next_frame(MAX_RECORDED_LINE) {
            let line = match frame {
                Frame::Line(l) => l,
                Frame::Overlong(piece) => {
                    context.write(Direction::Server, piece);
                    out.extend_from_slice(piece);
                    continue;
                }
            };
            context.write(Direction::Server, line);
            out.extend_from_slice(line);
            let mut shared = context.shared();
            match shared.follower.server_line(line) {
                ServerStep::Continue => {}
                ServerStep::TlsStarts if context.terminate => {
                    answered = Some(true);
                    break;
                }
                ServerStep::TlsRefused if context.terminate => {
                    answered = Some(false);
                    break;
                }
                ServerStep::TlsRefused => {}
                ServerStep::TlsStarts => {
                    // From here the bytes are TLS: relay them, record nothing more.
                    context
                        .writer
                        .append(&format!("{} tls passthrough\n", context.id));
                    shared.passthrough = true;
                    out.extend_from_slice(&lines.take_pending());
                    break;
                }
            }
        }
        if let Err(end) = send(to, &out, &mut stop).await {
            break end;
        }
        if let Some(accepted) = answered {
            return End::StartTlsAnswered(accepted);
        }
    };
    let rest = lines.take_pending();
    if !rest.is_empty() && !context.shared().passthrough {
        context.write(Direction::Server, &rest);
        if end == End::Closed {
            let _ = send(to, &rest, &mut stop).await;
        }
    }
    finish(context, Side::Upstream, end, to).await
}

/// A pump ended for good: note which side ended first and close the other direction.
async fn finish<W: AsyncWrite + Unpin>(
    context: &Context<'_>,
    side: Side,
    end: End,
    to: &mut W,
) -> End {
    context.shared().first_end.get_or_insert((side, end));
    let _ = tokio::time::timeout(STOP_GRACE, to.shutdown()).await;
    end
}
