//! The smart host: a tokio TCP server around the sans-IO session.
//!
//! The driver is deliberately thin: it reads bytes into the [`Session`](crate::proto::Session), carries out its outputs in
//! order (write, upgrade to TLS, close), sleeps until the session's next deadline and tells it the
//! time then, applies the connection cap, and hands every event to the [`Recorder`].
//!
//! The conversation's deadlines (the idle timeout, scripted reply delays, a greet pause) are the
//! session's: it computes them from the times the driver gives it
//! ([`Conversation::poll_timeout`], [`Conversation::handle_timeout`]). The driver keeps only the
//! deadlines of its own I/O. Every wait has a deadline and every wait races the shutdown signal:
//! a write must proceed within the idle timeout (a client that pipelines and never reads cannot
//! pin its session), a TLS handshake has its own limit, and a wait for the session's next
//! deadline (a scripted delay) ends when the server stops. So a shutdown always finishes, and the
//! recording is always complete: [`SmartHost::shutdown`] waits a bounded grace period, then
//! records what is still open as closed by `shutdown`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::proto::factory::{ConversationFactory, Conversations, ConversationsError};
use crate::proto::profile::Profile;
use crate::proto::recording::Recording;
use crate::proto::script::SmartHostScript;
use crate::proto::{
    Accepted, CloseReason, Conversation, Event, Output, Recordable, Session, SessionLimits,
};
use crate::wire::framing::find_byte;

use super::accept::{Cap, ConnectionLimit, WhenFull};
use super::handle::ServerHandle;
use super::recorder::{Recorder, Retention};
use super::tls::{TlsSetupError, self_signed_acceptor};

/// How to run a smart host.
#[derive(Debug, Clone)]
pub struct SmartHostConfig {
    /// Where to listen; port 0 picks a free port. Default 127.0.0.1:0.
    pub listen: SocketAddr,
    /// How to answer.
    pub script: SmartHostScript,
    /// Line and message limits and the idle timeout (a session idle that long gets 421 and is
    /// closed; writes and a refusal at the connection cap are bounded by it too); `starttls`
    /// offers STARTTLS with a self-signed certificate.
    pub limits: SessionLimits,
    /// Simultaneous connections served. Default 1000.
    pub max_connections: usize,
    /// What one more gets: `421` at connect (the default), or a wait in the listen queue until a
    /// session ends.
    pub when_full: WhenFull,
    /// How much history the recorder keeps in memory. Default: all of it (a test reads what it
    /// caused; `serve` keeps the 10,000 sessions that closed last unless told `--retain`).
    pub retention: Retention,
    /// A profile of one's own (`serve --profile-file`) in place of the one the script names.
    pub profile: Option<Profile>,
}

impl Default for SmartHostConfig {
    fn default() -> Self {
        SmartHostConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            script: SmartHostScript::default(),
            limits: SessionLimits::default(),
            max_connections: 1000,
            when_full: WhenFull::Refuse,
            retention: Retention::All,
            profile: None,
        }
    }
}

impl SmartHostConfig {
    /// The default configuration answering as `script` says.
    pub fn with_script(script: SmartHostScript) -> Self {
        SmartHostConfig {
            script,
            ..SmartHostConfig::default()
        }
    }
}

/// Starting a smart host failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The script's profile or cassette cannot be used.
    #[error(transparent)]
    Conversations(#[from] ConversationsError),
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    /// The task that reads the script's files did not finish (the runtime is shutting down).
    #[error("cannot prepare the smart host: {0}")]
    Blocking(String),
    /// A connection cap of 0: every connection would be refused, or, queueing, never greeted.
    #[error("the connection cap must be at least 1")]
    NoConnections,
}

/// A running smart host: the one [`ServerHandle`] every server here has, and its recorder.
/// Dropping it stops accepting; [`SmartHost::shutdown`] also ends open sessions and returns the
/// recording.
pub struct SmartHost {
    handle: ServerHandle,
    recorder: Arc<Recorder>,
    shared: Arc<Shared>,
}

/// The longest a TLS handshake may take, whatever the idle timeout.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Replaces what a running smart host says, from the next connection on.
#[derive(Clone)]
pub struct ConversationSwitch(Arc<Shared>);

impl ConversationSwitch {
    /// Puts `conversations` in place from the next connection on. When they may ask for STARTTLS
    /// and this server has no certificate yet (it was started without TLS), one is made first, so
    /// their STARTTLS works; making it is the only way this fails.
    pub fn replace(&self, conversations: Conversations) -> Result<(), TlsSetupError> {
        if let Some(name) = &conversations.tls_name {
            let mut tls = self
                .0
                .tls
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if tls.is_none() {
                *tls = Some(self_signed_acceptor(name)?);
            }
        }
        let mut current = self
            .0
            .conversations
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = conversations.factory;
        Ok(())
    }
}

/// What a connection task needs, shared by all of them.
struct Shared {
    /// Read once per connection; replaced while running by [`SmartHost::replace_conversations`].
    conversations: std::sync::RwLock<ConversationFactory>,
    idle_timeout: Duration,
    /// Made at start, or when a script that needs it is put in place.
    tls: std::sync::RwLock<Option<TlsAcceptor>>,
    recorder: Arc<Recorder>,
}

impl SmartHost {
    /// Binds, and returns once the smart host accepts connections.
    pub async fn start(config: SmartHostConfig) -> Result<SmartHost, StartError> {
        let recorder = Recorder::with_retention(config.retention);
        Self::start_recording(config, recorder).await
    }

    /// Like [`SmartHost::start`], recording into `recorder` (one that streams to a file, say:
    /// set up before the first connection can arrive).
    pub async fn start_recording(
        config: SmartHostConfig,
        recorder: Recorder,
    ) -> Result<SmartHost, StartError> {
        // The one factory decides (a cassette the script names is read here, before any
        // connection); reading a file blocks, so it runs off the runtime's workers.
        let SmartHostConfig {
            script,
            profile,
            limits,
            ..
        } = config.clone();
        let conversations = tokio::task::spawn_blocking(move || {
            Conversations::for_script(&script, profile, &limits)
        })
        .await
        .map_err(|e| StartError::Blocking(e.to_string()))??;
        info!(profile = %config.script.profile, cassette = config.script.cassette.is_some(), "scripted smart host");
        Self::start_conversations(
            config.listen,
            config.limits.idle_timeout,
            ConnectionLimit {
                max: config.max_connections,
                when_full: config.when_full,
            },
            conversations,
            recorder,
        )
        .await
    }

    /// Starts a server running `conversations` (with a self-signed certificate when they may ask
    /// for STARTTLS).
    pub async fn start_conversations(
        listen: SocketAddr,
        idle_timeout: Duration,
        connections: impl Into<ConnectionLimit>,
        conversations: Conversations,
        recorder: Recorder,
    ) -> Result<SmartHost, StartError> {
        let tls = match &conversations.tls_name {
            Some(name) => Some(self_signed_acceptor(name)?),
            None => None,
        };
        Self::start_with(
            listen,
            idle_timeout,
            connections,
            tls,
            conversations.factory,
            recorder,
        )
        .await
    }

    /// Starts a server whose connections run the conversations `conversations` makes (a cassette
    /// replay, for instance); `tls` is required if they ever ask for STARTTLS. `idle_timeout`
    /// bounds the driver's own waits (a write, a refusal at the cap, a TLS handshake); the
    /// conversations time their clients themselves.
    pub async fn start_with(
        listen: SocketAddr,
        idle_timeout: Duration,
        connections: impl Into<ConnectionLimit>,
        tls: Option<TlsAcceptor>,
        conversations: ConversationFactory,
        recorder: Recorder,
    ) -> Result<SmartHost, StartError> {
        let connections = connections.into();
        if connections.max == 0 {
            return Err(StartError::NoConnections);
        }
        let listener = super::accept::bind(listen).map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
        let recorder = Arc::new(recorder);
        let shared = Arc::new(Shared {
            conversations: std::sync::RwLock::new(conversations),
            idle_timeout,
            tls: std::sync::RwLock::new(tls),
            recorder: Arc::clone(&recorder),
        });
        let kept = Arc::clone(&shared);
        let counting = Arc::clone(&recorder);
        let cap = Cap {
            limit: connections,
            refusal_timeout: idle_timeout,
            on_refusal: Arc::new(move || counting.refused()),
        };
        let span = info_span!("smarthost", %addr);
        let handle =
            ServerHandle::spawn(listener, addr, span, cap, move |stream, peer, _, stop| {
                let shared = Arc::clone(&shared);
                let id = shared.recorder.open(peer);
                async move {
                    let accepted = accepted_now(id - 1, peer.ip());
                    let reason = serve(stream, id, &accepted, &shared, stop).await;
                    debug!(?reason, "session closed");
                    shared.recorder.close(id, reason);
                }
                .instrument(info_span!("session", id, %peer))
            });
        info!(%addr, "smart host listening");
        Ok(SmartHost {
            handle,
            recorder,
            shared: kept,
        })
    }

    /// From the next connection on, runs the conversations `conversations` makes (a new script or
    /// profile while running); sessions already open keep theirs.
    pub fn replace_conversations(&self, conversations: Conversations) -> Result<(), TlsSetupError> {
        self.switch().replace(conversations)
    }

    /// A handle that replaces the conversations from elsewhere (the HTTP API), while this smart
    /// host keeps running.
    pub fn switch(&self) -> ConversationSwitch {
        ConversationSwitch(Arc::clone(&self.shared))
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.handle.addr()
    }

    /// The recorder: the recording so far, and event-driven waits.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// A copy of the recording so far.
    pub fn recording(&self) -> Recording {
        self.recorder.recording()
    }

    /// The recorder, shared: it outlives [`SmartHost::shutdown`] (a second Ctrl-C may want what
    /// there is while the shutdown is still under way).
    pub fn shared_recorder(&self) -> Arc<Recorder> {
        Arc::clone(&self.recorder)
    }

    /// Stops accepting, closes every open session, and returns the recording. Sessions close at
    /// once (every wait of theirs races this signal); any still open after `SHUTDOWN_GRACE` are
    /// ended and recorded as closed by `shutdown`.
    pub async fn shutdown(self) -> Recording {
        let recorder = Arc::clone(&self.recorder);
        self.stop().await;
        recorder.recording()
    }

    /// Stops as [`SmartHost::shutdown`] does, without building the recording: for a caller that
    /// only counts, or reads the recorder in its own way ([`SmartHost::shared_recorder`] outlives
    /// this). Building a long recording at a stop would cost a multiple of its memory at once.
    pub async fn stop(self) {
        self.handle.stop().await;
        self.recorder.close_open(CloseReason::Shutdown);
    }
}

/// A connection accepted now from `peer`, on tokio's clock: the one the drivers sleep on (paused
/// in some tests). The sans-IO conversations never read a clock; the drivers give them the time.
pub(crate) fn accepted_now(index: u64, peer: std::net::IpAddr) -> Accepted {
    Accepted {
        index,
        peer,
        now: Instant::now().into_std(),
        wall_clock: std::time::SystemTime::now(),
    }
}

/// How a plaintext or TLS leg of a session ended.
enum Leg<S> {
    Closed(CloseReason),
    StartTls(S),
}

async fn serve(
    stream: TcpStream,
    id: u64,
    accepted: &Accepted,
    shared: &Shared,
    shutdown: watch::Receiver<bool>,
) -> CloseReason {
    let _ = stream.set_nodelay(true);
    let factory = Arc::clone(
        &shared
            .conversations
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let mut session = factory(accepted);
    // The scripted session, nearly every connection, is driven as itself: through the trait
    // object each of its calls (several per pipelined command) was an indirect call to code laid
    // out apart from the driver's, none of it inlined. A replay goes through the trait.
    let any: &mut dyn std::any::Any = session.as_mut();
    match any.downcast_mut::<Session>() {
        Some(scripted) => serve_conversation(stream, scripted, id, shared, shutdown).await,
        None => serve_conversation(stream, session.as_mut(), id, shared, shutdown).await,
    }
}

/// A session's legs: plaintext, then TLS after STARTTLS.
async fn serve_conversation<C: Conversation + ?Sized>(
    stream: TcpStream,
    session: &mut C,
    id: u64,
    shared: &Shared,
    mut shutdown: watch::Receiver<bool>,
) -> CloseReason {
    // Boxed: awaited inline, the driver's state (some 950 octets) was laid out twice in this
    // future, once as the value built and once as the value awaited, and an idle connection
    // held both (2.7 KiB in all; 1.75 KiB with the box).
    let plain = match Box::pin(drive(stream, session, id, shared, &mut shutdown)).await {
        Leg::Closed(reason) => return reason,
        Leg::StartTls(s) => s,
    };
    // Boxed: the TLS leg's state (the handshake, rustls's connection) is several KiB that a
    // plaintext session, the common case, would otherwise carry in its own future.
    Box::pin(serve_tls(plain, session, id, shared, shutdown)).await
}

/// The rest of a session after STARTTLS: the handshake, then the TLS leg.
async fn serve_tls<C: Conversation + ?Sized>(
    plain: TcpStream,
    session: &mut C,
    id: u64,
    shared: &Shared,
    mut shutdown: watch::Receiver<bool>,
) -> CloseReason {
    let acceptor = shared
        .tls
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let Some(acceptor) = acceptor else {
        return CloseReason::TlsFailed("STARTTLS accepted without a TLS configuration".into());
    };
    let limit = TLS_HANDSHAKE_TIMEOUT.min(shared.idle_timeout);
    let tls = tokio::select! {
        handshake = tokio::time::timeout(limit, acceptor.accept(plain)) => match handshake {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return CloseReason::TlsFailed(e.to_string()),
            Err(_) => return CloseReason::TlsFailed(format!("handshake not done within {limit:?}")),
        },
        _ = shutdown.changed() => return CloseReason::Shutdown,
    };
    debug!("TLS established");
    session.tls_established(Instant::now().into_std());
    shared.recorder.tls_established(id);
    match drive(tls, session, id, shared, &mut shutdown).await {
        Leg::Closed(reason) => reason,
        Leg::StartTls(_) => CloseReason::TlsFailed("STARTTLS inside TLS".into()),
    }
}

/// After the server's 421 (to the greeting, EHLO or any command) the driver keeps reading for
/// this long before it closes, so what the client had already sent, or sends at once, is
/// recorded ([`Event::AfterClose`]) for the judge: nothing may follow a 421. A client that closes
/// on the 421 ends the linger at once.
pub const LINGER_AFTER_421: Duration = Duration::from_millis(250);

/// The most the linger after a 421 reads.
pub const LINGER_MAX_OCTETS: usize = 16 * 1024;

/// The most lines fed under one lock of the recorder ([`Recorder::batch`]): a pipelining client's
/// write (the bench's is 64 commands), while other sessions' recording waits no longer than that
/// takes.
const LINES_PER_BATCH: usize = 64;

/// The most of one line an [`Event::Unawaited`] keeps.
const UNAWAITED_MAX_OCTETS: usize = 512;

/// The most one read takes: what is ready up to this much is taken before any of it is fed, so
/// the lines a client pipelined are seen as such ([`Event::Unawaited`]). Read into the stack of
/// the poll that reads, never held across a wait: a connection holds no read buffer of its own
/// (an idle one, of the thousands a soak holds open, held a KiB), only the bytes it has read and
/// not yet fed.
const READ_BUFFER_MAX: usize = 16 * 1024;

/// One poll of a read of what is ready, up to [`READ_BUFFER_MAX`], onto the end of `unfed`.
fn poll_read_onto<S: AsyncRead + Unpin>(
    stream: &mut S,
    unfed: &mut Vec<u8>,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<std::io::Result<usize>> {
    // Uninitialised: a socket's read writes what it takes and nothing else.
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); READ_BUFFER_MAX];
    let mut read = tokio::io::ReadBuf::uninit(&mut space);
    std::pin::Pin::new(stream)
        .poll_read(cx, &mut read)
        .map_ok(|()| {
            unfed.extend_from_slice(read.filled());
            read.filled().len()
        })
}

/// Waits for bytes and reads what is ready onto the end of `unfed`: how many (0 at the end).
async fn read_onto<S: AsyncRead + Unpin>(
    stream: &mut S,
    unfed: &mut Vec<u8>,
) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| poll_read_onto(stream, unfed, cx)).await
}

/// Runs one leg of a session over `stream` until it closes or upgrades to TLS.
///
/// Bytes are fed to the session a line at a time, so the driver knows which lines arrived
/// before the replies to earlier ones were written ([`Event::Unawaited`]: the client did not
/// wait for them), and which arrived after the session closed.
///
/// Long because it is the driver's one loop, and its arms (outputs to carry out, a held reply to
/// wait for, a read, the session's timer, the stop signal) share the pending write, the batch of
/// events and the unfed bytes; split apart they would pass all of them back and forth.
async fn drive<S: AsyncRead + AsyncWrite + Unpin, C: Conversation + ?Sized>(
    mut stream: S,
    session: &mut C,
    id: u64,
    shared: &Shared,
    shutdown: &mut watch::Receiver<bool>,
) -> Leg<S> {
    let idle = shared.idle_timeout;
    // The time the lines being fed arrived: taken once per read (and when the session is woken
    // at a deadline), not once per line; the lines of one read arrived together.
    let mut now = Instant::now().into_std();
    // Replies to pipelined commands go out in one write, as a real server's would.
    let mut pending: Vec<u8> = Vec::new();
    // Bytes read and not yet given to the session, from `fed` on.
    let mut unfed: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut at_line_start = true;
    let mut peeked = false;
    let mut last_reply: Option<u16> = None;
    // Events wait here until the next write (or wait): recorded as one batch, under one lock,
    // before the replies they go with leave, so a client never sees a reply whose event is not
    // yet in the recording.
    let mut batch: Vec<Event> = Vec::new();
    // An output taken from the session while feeding it lines that needs the loop's I/O.
    let mut deferred: Option<Output> = None;
    // One timer for the session's deadlines, moved at each wait rather than made again: moved
    // later (the idle deadline, after every line) it stays where the runtime has it until it
    // fires, where a timer made and dropped per wait was registered and taken out each time.
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    // One wait for the stop signal for the whole leg, on a receiver of its own (the writes and
    // the linger race `shutdown` themselves): subscribed once, not at every wait.
    let mut stop = shutdown.clone();
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        if *shutdown.borrow() {
            shared.recorder.events(id, &mut batch);
            return Leg::Closed(CloseReason::Shutdown);
        }
        while let Some(output) = deferred.take().or_else(|| session.poll_output()) {
            match output {
                Output::Event(event) => {
                    note(&event, &mut last_reply);
                    batch.push(event);
                }
                Output::StartTls => {
                    session.poll_transmit(&mut pending);
                    // Plaintext pipelined behind STARTTLS goes to the session, which discards
                    // and records it (CVE-2011-0411).
                    if fed < unfed.len() {
                        session.receive(&unfed[fed..], now);
                        while let Some(Output::Event(event)) = session.poll_output() {
                            batch.push(event);
                        }
                    }
                    shared.recorder.events(id, &mut batch);
                    if let Err(reason) = flush(&mut stream, &mut pending, idle, shutdown).await {
                        return Leg::Closed(reason);
                    }
                    return Leg::StartTls(stream);
                }
                Output::Close(reason) => {
                    session.poll_transmit(&mut pending);
                    shared.recorder.events(id, &mut batch);
                    // The last words are a courtesy: bounded like every write.
                    let _ = flush(&mut stream, &mut pending, idle, shutdown).await;
                    if last_reply == Some(421) && reason != CloseReason::IdleTimeout {
                        let rest = unfed.get(fed..).unwrap_or_default();
                        let after = linger(&mut stream, rest, shutdown).await;
                        let lines: Vec<&[u8]> = after.split_inclusive(|b| *b == b'\n').collect();
                        for raw in session.recorded_forms(&lines) {
                            let event = Event::AfterClose { raw };
                            log_event(&event);
                            shared.recorder.event(id, event);
                        }
                    }
                    let _ = tokio::time::timeout(idle, stream.shutdown()).await;
                    return Leg::Closed(reason);
                }
            }
        }
        session.poll_transmit(&mut pending);
        if session.holds_output() {
            // A scripted delay: what is due before it goes out now, and nothing is read until
            // the session releases the rest (the client is waiting for it), as a server that
            // sleeps before it answers.
            shared.recorder.events(id, &mut batch);
            if let Err(reason) = flush(&mut stream, &mut pending, idle, shutdown).await {
                return Leg::Closed(reason);
            }
            let wake = session.poll_timeout().map(Instant::from_std);
            set_timer(timer.as_mut(), wake);
            tokio::select! {
                _ = &mut timer, if wake.is_some() => {
                    now = Instant::now().into_std();
                    session.handle_timeout(now);
                }
                _ = &mut stopped => return Leg::Closed(CloseReason::Shutdown),
            }
            continue;
        }
        if fed < unfed.len() {
            // The lines read so far, one at a time, up to `LINES_PER_BATCH` under one lock of
            // the recorder, each line's events packed as soon as they are made. What the
            // driver must do with I/O (a TLS upgrade, a close, a held reply) ends the batch.
            let mut record = shared.recorder.batch(id);
            for event in batch.drain(..) {
                record.push(event);
            }
            for _ in 0..LINES_PER_BATCH {
                let start = fed;
                // Vectorised (`find_byte`): every byte read is searched here.
                fed = find_byte(&unfed[start..], b'\n').map_or(unfed.len(), |i| start + i + 1);
                let piece = &unfed[start..fed];
                if at_line_start && !pending.is_empty() {
                    let form = session.recorded_form(piece);
                    record.unawaited(&form[..form.len().min(UNAWAITED_MAX_OCTETS)]);
                }
                at_line_start = piece.ends_with(b"\n");
                session.receive_cut(piece, now);
                if fed == unfed.len() {
                    unfed.clear();
                    fed = 0;
                }
                while let Some(output) = session.poll_recordable() {
                    match output {
                        Recordable::Output(Output::Event(event)) => {
                            note(&event, &mut last_reply);
                            record.push(event);
                        }
                        Recordable::EtrnCommand(line) => {
                            debug!(line = %line.text(), "C:");
                            record.etrn_command(line);
                        }
                        Recordable::QuotedReply(reply) => {
                            last_reply = Some(reply.code());
                            debug!(code = reply.code(), text = %reply, "S:");
                            record.quoted_reply(reply);
                        }
                        Recordable::PlainEtrn(etrn) => {
                            info!(raw = %etrn.raw(), reply = ?etrn.reply(), flags = ?etrn.flags(), "ETRN");
                            record.plain_etrn(etrn);
                        }
                        Recordable::Output(other) => {
                            deferred = Some(other);
                            break;
                        }
                    }
                }
                // This line's replies, so the next line knows whether it came before them.
                session.poll_transmit(&mut pending);
                if deferred.is_some() || session.holds_output() || fed >= unfed.len() {
                    break;
                }
            }
            continue;
        }
        if !pending.is_empty() && !peeked {
            // What has arrived before these replies go out was sent without waiting for them.
            // One look per write: a client that writes and never reads still meets the write
            // deadline, and the replies held back stay bounded.
            peeked = true;
            if let Some(Ok(n)) = read_ready(&mut stream, &mut unfed).await
                && n > 0
            {
                now = Instant::now().into_std();
                continue;
            }
        }
        shared.recorder.events(id, &mut batch);
        if let Err(reason) = flush(&mut stream, &mut pending, idle, shutdown).await {
            return Leg::Closed(reason);
        }
        peeked = false;
        // The conversation is woken at its next deadline (the end of a greet pause, the idle
        // timeout), whatever the client does meanwhile.
        let wake = session.poll_timeout().map(Instant::from_std);
        set_timer(timer.as_mut(), wake);
        tokio::select! {
            // The timer first: a client that writes just as a greet pause ends was still polite.
            biased;
            _ = &mut timer, if wake.is_some() => {
                // tokio's clock (paused in some tests), not the wall's.
                now = Instant::now().into_std();
                session.handle_timeout(now);
            }
            read = read_onto(&mut stream, &mut unfed) => match read {
                Ok(0) => session.peer_closed(),
                Ok(_) => now = Instant::now().into_std(),
                Err(e) => return Leg::Closed(CloseReason::Io(e.to_string())),
            },
            _ = &mut stopped => {
                let _ = tokio::time::timeout(idle, stream.shutdown()).await;
                return Leg::Closed(CloseReason::Shutdown);
            }
        }
    }
}

/// Moves `timer` to `wake`, when there is one and it is not there already (a wait without one
/// leaves the timer out of its `select!`).
fn set_timer(timer: std::pin::Pin<&mut tokio::time::Sleep>, wake: Option<Instant>) {
    if let Some(at) = wake
        && timer.deadline() != at
    {
        timer.reset(at);
    }
}

/// What the client has already sent, without waiting, read onto the end of `unfed`: `None`
/// when nothing is there yet.
///
/// One poll of the read, not a read under a zero timeout: tokio's timer rounds a deadline up to
/// its next millisecond tick, so `timeout(Duration::ZERO, read)` on an idle socket waits about a
/// millisecond, and did so before every write (it held pipelined ETRN at a fifteenth of
/// smtp-sink's rate).
async fn read_ready<S: AsyncRead + Unpin>(
    stream: &mut S,
    unfed: &mut Vec<u8>,
) -> Option<std::io::Result<usize>> {
    std::future::poll_fn(|cx| match poll_read_onto(stream, unfed, cx) {
        std::task::Poll::Ready(read) => std::task::Poll::Ready(Some(read)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

/// Sleeps until `at`, or forever when there is no `at`.
pub(crate) async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Reads what the client sends within [`LINGER_AFTER_421`] (at most [`LINGER_MAX_OCTETS`]),
/// after `rest`, the bytes it had sent that the session never took; ends early when the client
/// closes, the read fails, or the server stops.
async fn linger<S: AsyncRead + Unpin>(
    stream: &mut S,
    rest: &[u8],
    shutdown: &mut watch::Receiver<bool>,
) -> Vec<u8> {
    let mut got = rest.to_vec();
    let deadline = Instant::now() + LINGER_AFTER_421;
    while got.len() < LINGER_MAX_OCTETS {
        tokio::select! {
            read = tokio::time::timeout_at(deadline, read_onto(stream, &mut got)) => match read {
                Ok(Ok(n)) if n > 0 => {}
                _ => break,
            },
            _ = shutdown.changed() => break,
        }
    }
    got.truncate(LINGER_MAX_OCTETS);
    got
}

/// Writes and flushes what is pending, if anything, within `limit` and unless the server stops.
async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    pending: &mut Vec<u8>,
    limit: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), CloseReason> {
    if pending.is_empty() {
        return Ok(());
    }
    // The usual case, a socket with room for the replies, costs no timer and no wait for the
    // stop signal: setting those up cost more than the write.
    match write_ready(stream, pending).await {
        Ok(WriteReady::Done) => return Ok(()),
        Ok(WriteReady::Blocked) => {}
        Err(e) => return Err(CloseReason::Io(e.to_string())),
    }
    let write = async {
        stream.write_all(pending).await?;
        stream.flush().await
    };
    tokio::select! {
        written = tokio::time::timeout(limit, write) => match written {
            Ok(Ok(())) => {
                pending.clear();
                Ok(())
            }
            Ok(Err(e)) => Err(CloseReason::Io(e.to_string())),
            Err(_) => Err(CloseReason::WriteTimeout),
        },
        _ = shutdown.changed() => Err(CloseReason::Shutdown),
    }
}

/// How far [`write_ready`] got.
enum WriteReady {
    /// Everything was written and flushed; `pending` is empty.
    Done,
    /// The stream cannot take more now; `pending` holds what it has not taken.
    Blocked,
}

/// Writes and flushes as much of `pending` as the stream takes without waiting, removing what
/// it took: one poll of each, as [`read_ready`] reads.
async fn write_ready<S: AsyncWrite + Unpin>(
    stream: &mut S,
    pending: &mut Vec<u8>,
) -> std::io::Result<WriteReady> {
    use std::task::Poll;
    std::future::poll_fn(|cx| {
        let mut written = 0;
        let blocked = loop {
            if written == pending.len() {
                match std::pin::Pin::new(&mut *stream).poll_flush(cx) {
                    Poll::Ready(Ok(())) => break false,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break true,
                }
            }
            match std::pin::Pin::new(&mut *stream).poll_write(cx, &pending[written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break true,
            }
        };
        pending.drain(..written);
        Poll::Ready(Ok(if blocked {
            WriteReady::Blocked
        } else {
            WriteReady::Done
        }))
    })
    .await
}

/// Logs `event`, and keeps a reply's code in `last_reply` (a 421 is followed by a linger).
fn note(event: &Event, last_reply: &mut Option<u16>) {
    if let Event::Reply { code, .. } = event {
        *last_reply = Some(*code);
    }
    log_event(event);
}

fn log_event(event: &Event) {
    match event {
        Event::Command(c) => debug!(line = %c.text(), "C:"),
        Event::Reply { code, lines } => debug!(code, text = %lines.join(" / "), "S:"),
        Event::Etrn(e) => info!(raw = %e.raw(), reply = ?e.reply, flags = ?e.flags, "ETRN"),
        Event::Message(m) => {
            info!(from = %m.from, recipients = m.recipients.len(), size = m.size, "message")
        }
        Event::DiscardedAfterStartTls { octets } => {
            warn!(octets, "plaintext pipelined after STARTTLS discarded")
        }
        other => debug!(?other, "event"),
    }
}
