//! The recorder: every session's events, kept safe under many concurrent sessions, with waits that
//! wake on events rather than polling.
//!
//! The recording serialises to the JSON document `etrn-harness serve --record` writes; its shape is
//! documented in the README ("Recording format").

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::json_line;
use super::log::{EventLog, Interner};
use super::stream_writer::{STREAM_BUFFER_OCTETS, STREAM_FINISH_DEADLINE, StreamEnd, StreamWriter};
use tokio::sync::{Notify, broadcast};
use tracing::warn;

use crate::proto::recording::{RECORDING_VERSION, RecordedEtrn, Recording, SessionRecording};
use crate::proto::{CloseReason, EtrnCommandLine, Event, PlainEtrn, QuotedReply};

/// What a live listener hears; `at_us` is microseconds since the recorder started, as in the
/// recording.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    Opened {
        session: u64,
        peer: SocketAddr,
        at_us: u64,
        line: SharedLine,
    },
    Event {
        session: u64,
        event: Event,
        at_us: u64,
        line: SharedLine,
    },
    Closed {
        session: u64,
        reason: CloseReason,
        at_us: u64,
        line: SharedLine,
    },
}

/// Which live events a listener hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveFeed {
    /// Every event of every session: the API's `GET /events`, `serve --events jsonl`.
    Everything,
    /// Sessions opened and closed, and ETRNs: `serve`'s lines for people.
    SessionsAndEtrn,
}

impl LiveFeed {
    /// Whether this feed carries `event`.
    pub fn has(self, event: &LiveEvent) -> bool {
        match self {
            LiveFeed::Everything => true,
            LiveFeed::SessionsAndEtrn => !matches!(
                event,
                LiveEvent::Event { event, .. } if !matches!(event, Event::Etrn(_))
            ),
        }
    }
}

/// An event's JSON line, built by the first listener that asks for it: every listener gets the
/// same event (an `Arc`), so with many live-feed subscribers an event is turned into JSON once,
/// not once per subscriber (200 subscribers building their own cut the SMTP server to a fiftieth
/// of its rate).
#[derive(Debug, Clone, Default)]
pub struct SharedLine(std::sync::OnceLock<Arc<str>>);

impl LiveEvent {
    /// The event's JSON line as text (see [`LiveEvent::json_line`]), built once for all copies.
    pub fn json_text(&self) -> Arc<str> {
        let (LiveEvent::Opened { line, .. }
        | LiveEvent::Event { line, .. }
        | LiveEvent::Closed { line, .. }) = self;
        Arc::clone(line.0.get_or_init(|| {
            let mut out = Vec::new();
            self.write_json(&mut out);
            String::from_utf8_lossy(&out).into()
        }))
    }

    /// Appends the event's JSON line (without its line end) to `out`: the text of
    /// [`LiveEvent::json_line`], written without building it.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            LiveEvent::Opened {
                session,
                peer,
                at_us,
                ..
            } => json_line::write_opened(out, *at_us, *session, *peer),
            LiveEvent::Event {
                session,
                event,
                at_us,
                ..
            } => json_line::write_event(out, *at_us, *session, event),
            LiveEvent::Closed {
                session,
                reason,
                at_us,
                ..
            } => json_line::write_closed(out, *at_us, *session, reason),
        }
    }

    /// The event as one JSON line: the same line the `--record` stream holds for it.
    pub fn json_line(&self) -> serde_json::Value {
        match self {
            LiveEvent::Opened {
                session,
                peer,
                at_us,
                ..
            } => line::opened(*at_us, *session, *peer),
            LiveEvent::Event {
                session,
                event,
                at_us,
                ..
            } => line::event(*at_us, *session, event),
            LiveEvent::Closed {
                session,
                reason,
                at_us,
                ..
            } => line::closed(*at_us, *session, reason),
        }
    }
}

/// The JSON lines of the `--record` stream, built in one place for the stream and the live feed,
/// from the types [`LiveLine`] describes.
pub(super) mod line {
    use std::net::SocketAddr;

    use serde::Serialize;
    use serde_json::Value;

    use crate::proto::{CloseReason, Event};

    /// A session opened.
    #[derive(Serialize, schemars::JsonSchema)]
    pub struct Opened {
        pub at_us: u64,
        pub session: u64,
        pub opened: Peer,
    }

    /// Who connected.
    #[derive(Serialize, schemars::JsonSchema)]
    pub struct Peer {
        /// The client's address.
        pub peer: String,
    }

    /// A session event: the event's own fields (tagged by `event`), with `at_us` and `session`.
    #[derive(Serialize, schemars::JsonSchema)]
    pub struct Happened<'a> {
        pub at_us: u64,
        pub session: u64,
        #[serde(flatten)]
        pub event: &'a Event,
    }

    /// A session closed.
    #[derive(Serialize, schemars::JsonSchema)]
    pub struct Closed<'a> {
        pub at_us: u64,
        pub session: u64,
        pub closed: &'a CloseReason,
    }

    pub fn opened(at_us: u64, session: u64, peer: SocketAddr) -> Value {
        let peer = Peer {
            peer: peer.to_string(),
        };
        serde_json::to_value(Opened {
            at_us,
            session,
            opened: peer,
        })
        .unwrap_or_default()
    }

    pub fn event(at_us: u64, session: u64, event: &Event) -> Value {
        serde_json::to_value(Happened {
            at_us,
            session,
            event,
        })
        .unwrap_or_default()
    }

    pub fn closed(at_us: u64, session: u64, reason: &CloseReason) -> Value {
        serde_json::to_value(Closed {
            at_us,
            session,
            closed: reason,
        })
        .unwrap_or_default()
    }
}

/// Counts since a smart host started, never reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// Sessions opened.
    pub sessions: usize,
    /// ETRN commands recorded.
    pub etrn: usize,
    /// Resets of the recording (`POST /reset`).
    pub resets: u64,
}

/// A line of the `--record` stream about a session, and the data of the live feed's `opened`,
/// `event` and `closed` events.
// Only its schema is used (the API's OpenAPI document): the lines are written from the types it
// names (`LiveEvent::json_line`).
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum LiveLine<'a> {
    Opened(line::Opened),
    Event(line::Happened<'a>),
    Closed(line::Closed<'a>),
}

/// A wait that ran out of time.
#[derive(Debug, Clone, thiserror::Error)]
#[error("timed out after {waited:?} waiting for {what}")]
pub struct WaitTimeout {
    pub what: String,
    pub waited: Duration,
}

/// How much of a smart host's history the recorder keeps in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Retention {
    /// Every session, open or closed.
    #[default]
    All,
    /// Open sessions and the `n` that closed last: when one more closes, the one that closed
    /// longest ago is counted, then forgotten (memory stays bounded by `n` sessions whatever the
    /// length of the run; a JSON Lines stream keeps everything). `Latest(0)` is [`Retention::Open`].
    Latest(usize),
    /// Open sessions only: a closed session is counted, then forgotten (memory stays flat in a
    /// soak; a JSON Lines stream keeps everything).
    Open,
}

impl Retention {
    /// How many closed sessions it keeps, `None` for all of them.
    fn closed_kept(self) -> Option<usize> {
        match self {
            Retention::All => None,
            Retention::Latest(n) => Some(n),
            Retention::Open => Some(0),
        }
    }
}

/// What the recorder keeps of one session: its facts and its event log, nothing twice. The lists
/// a [`SessionRecording`] shows (commands with replies, ETRNs, messages) are derived from the log.
///
/// Every session recorded keeps one, so its facts are kept compact (the peer, the closing, the
/// counts, the log's references back; the id is its key): 120 octets where plain fields took 232.
#[derive(Debug, Clone)]
struct SessionLog {
    peer: Peer,
    started_us: u64,
    closed: Option<Closed>,
    tls: bool,
    events: EventLog,
    /// How many ETRNs `events` has: a session without any leaves the indexes without its log
    /// being read.
    etrns: u32,
    /// The number of its first ETRN: where its runs of numbers start.
    first_etrn: u64,
}

impl SessionLog {
    /// Session `id` (its key among the sessions held) as a recording: the lists derived from
    /// the event log.
    fn derive(&self, id: u64, interner: &Interner) -> SessionRecording {
        SessionRecording {
            ended_us: self.closed.as_ref().map(|c| c.at_us),
            close: self.closed.as_ref().map(Closed::reason),
            tls: self.tls,
            ..SessionRecording::opened(id, self.peer.address().to_string(), self.started_us)
        }
        .with_events(self.events.events(interner))
    }

    fn is_open(&self) -> bool {
        self.closed.is_none()
    }
}

/// A peer's address in 16 octets where a `SocketAddr` takes 32: an IPv4 peer (nearly every one)
/// inline, an IPv6 one (with its flow and scope) boxed.
#[derive(Debug, Clone)]
enum Peer {
    V4(SocketAddrV4),
    V6(Box<SocketAddrV6>),
}

impl Peer {
    fn new(address: SocketAddr) -> Self {
        match address {
            SocketAddr::V4(v4) => Peer::V4(v4),
            SocketAddr::V6(v6) => Peer::V6(Box::new(v6)),
        }
    }

    fn address(&self) -> SocketAddr {
        match self {
            Peer::V4(v4) => SocketAddr::V4(*v4),
            Peer::V6(v6) => SocketAddr::V6(**v6),
        }
    }
}

/// When and why a session closed, in 24 octets where the time and a [`CloseReason`] took 40.
#[derive(Debug, Clone)]
struct Closed {
    at_us: u64,
    reason: HowClosed,
}

/// A [`CloseReason`] without a detail as a reference to the one in [`PLAIN_CLOSE_REASONS`]; one
/// with a detail (a TLS or socket error's text, rare) boxed.
#[derive(Debug, Clone)]
enum HowClosed {
    Plain(&'static CloseReason),
    Detailed(Box<CloseReason>),
}

/// The reasons a session closes for that carry no detail: what nearly every session closes for.
static PLAIN_CLOSE_REASONS: [CloseReason; 9] = CloseReason::PLAIN;

impl Closed {
    fn new(at_us: u64, reason: &CloseReason) -> Self {
        Closed {
            at_us,
            reason: match PLAIN_CLOSE_REASONS.iter().find(|r| *r == reason) {
                Some(plain) => HowClosed::Plain(plain),
                None => HowClosed::Detailed(Box::new(reason.clone())),
            },
        }
    }

    fn reason(&self) -> CloseReason {
        match &self.reason {
            HowClosed::Plain(reason) => (*reason).clone(),
            HowClosed::Detailed(reason) => (**reason).clone(),
        }
    }
}

/// A hash map on a fast hash: its keys are the recorder's own (domains, reply texts), looked up
/// once or twice per ETRN, where SipHash's resistance to chosen keys cost more than the rest.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// How many ETRNs of the sessions held name each normalised domain. A domain of up to
/// [`SHORT_DOMAIN`] octets (nearly every one) is kept inline in its key, not in an allocation of
/// its own: a client that names a new domain in every ETRN grows this by one entry per ETRN, and
/// the allocation was most of what an entry cost.
#[derive(Debug, Default)]
struct DomainCounts {
    short: FastMap<ShortDomain, u32>,
    long: FastMap<Box<str>, u32>,
}

/// The longest domain a [`ShortDomain`] holds.
const SHORT_DOMAIN: usize = 23;

/// A domain of up to [`SHORT_DOMAIN`] octets: its length, then its octets, then zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ShortDomain([u8; SHORT_DOMAIN + 1]);

impl ShortDomain {
    fn new(domain: &str) -> Option<Self> {
        let len = u8::try_from(domain.len())
            .ok()
            .filter(|l| usize::from(*l) <= SHORT_DOMAIN)?;
        let mut key = [0u8; SHORT_DOMAIN + 1];
        key[0] = len;
        key[1..=domain.len()].copy_from_slice(domain.as_bytes());
        Some(ShortDomain(key))
    }
}

impl DomainCounts {
    /// Counts one more ETRN for `domain`.
    fn add(&mut self, domain: &str) {
        let count = match ShortDomain::new(domain) {
            Some(key) => self.short.entry(key).or_default(),
            // The key is made only for a domain not seen before.
            None => match self.long.get_mut(domain) {
                Some(count) => count,
                None => self.long.entry(domain.into()).or_default(),
            },
        };
        *count = count.saturating_add(1);
    }

    /// Counts one ETRN for `domain` less; a domain no ETRN names any more goes.
    fn remove_one(&mut self, domain: &str) {
        match ShortDomain::new(domain) {
            Some(key) => {
                if let Some(n) = self.short.get_mut(&key) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.short.remove(&key);
                    }
                }
            }
            None => {
                if let Some(n) = self.long.get_mut(domain) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.long.remove(domain);
                    }
                }
            }
        }
    }

    fn contains(&self, domain: &str) -> bool {
        match ShortDomain::new(domain) {
            Some(key) => self.short.contains_key(&key),
            None => self.long.contains_key(domain),
        }
    }

    /// How many domains are counted.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }
}

/// The ETRNs of the sessions held, by number: the numbers run in the order ETRNs were recorded,
/// so they are kept as runs of consecutive numbers of one session (one run for a session that
/// pipelines thousands), in order, found by a binary search.
///
/// A forgotten session's runs are emptied where they stand (a run of no numbers keeps the order
/// the binary search needs) and taken out from either end at once: a deque, because under
/// [`Retention::Latest`] the oldest closed session goes, its runs usually among the first, and
/// under [`Retention::Open`] the one that just closed, its runs usually among the last. Runs
/// emptied in the middle (an open session's older runs before them, a newer session's after)
/// are swept out together once they are as many as the others: taking each out at once would
/// move the runs on its shorter side, all of them for every close when a session held open
/// sends an ETRN between every two others.
#[derive(Debug, Default)]
struct EtrnNumbers {
    runs: VecDeque<EtrnRun>,
    /// How many numbers the runs hold.
    held: usize,
    /// How many runs are empty (forgotten) and not yet swept out.
    emptied: usize,
}

/// `count` ETRNs of `session`, numbered from `first`, the first of them its `nth` (from 0). A
/// session that opens, sends one ETRN and quits leaves a run: 24 octets, counts as `u32` (a
/// session's ETRNs are counted in one, [`SessionLog::etrns`]).
#[derive(Debug, Clone, Copy)]
struct EtrnRun {
    first: u64,
    session: u64,
    count: u32,
    nth: u32,
}

impl EtrnRun {
    /// The number after its last.
    fn end(&self) -> u64 {
        self.first.saturating_add(u64::from(self.count))
    }
}

impl EtrnNumbers {
    /// Adds ETRN `number` (higher than any held), the `nth` of `session`.
    fn push(&mut self, number: u64, session: u64, nth: u32) {
        self.held += 1;
        if let Some(last) = self.runs.back_mut()
            && last.session == session
            && last.end() == number
            && last.nth.checked_add(last.count) == Some(nth)
        {
            last.count += 1;
            return;
        }
        self.runs.push_back(EtrnRun {
            first: number,
            count: 1,
            session,
            nth,
        });
    }

    /// Takes out the `count` ETRNs of `session`, the first of them numbered `first`. Only the
    /// runs from its first to its last are looked at: under `--retain open` a session that
    /// pipelines for hours leaves a run between every two short sessions' ETRNs, and each short
    /// session that closes must not walk all of them.
    fn forget(&mut self, session: u64, first: u64, count: u32) {
        let start = self.runs.partition_point(|r| r.end() <= first);
        let mut left = count;
        for run in self.runs.range_mut(start..) {
            if left == 0 {
                break;
            }
            if run.session == session && run.count > 0 {
                left = left.saturating_sub(run.count);
                run.count = 0;
                self.emptied += 1;
            }
        }
        while self.runs.front().is_some_and(|r| r.count == 0) {
            self.runs.pop_front();
            self.emptied -= 1;
        }
        while self.runs.back().is_some_and(|r| r.count == 0) {
            self.runs.pop_back();
            self.emptied -= 1;
        }
        // Swept once they are half: each run is moved a bounded number of times on average.
        if self.emptied > 0 && self.emptied * 2 >= self.runs.len() {
            self.runs.retain(|r| r.count > 0);
            self.emptied = 0;
        }
        self.held = self.held.saturating_sub(count as usize);
    }

    fn clear(&mut self) {
        self.runs.clear();
        self.held = 0;
        self.emptied = 0;
    }

    fn len(&self) -> usize {
        self.held
    }

    /// The highest number held.
    fn last(&self) -> Option<u64> {
        self.runs.back().map(|r| r.end() - 1)
    }

    /// The ETRNs numbered after `after`, in order: each number, its session and its place there.
    fn after(&self, after: u64) -> impl Iterator<Item = (u64, u64, usize)> + '_ {
        let start = self
            .runs
            .partition_point(|r| r.end() <= after.saturating_add(1));
        self.runs.range(start..).flat_map(move |r| {
            let from = r.first.max(after.saturating_add(1));
            (from..r.end()).map(move |n| {
                let nth = u64::from(r.nth) + (n - r.first);
                (n, r.session, usize::try_from(nth).unwrap_or(usize::MAX))
            })
        })
    }
}

/// The recorder's state under its lock.
#[derive(Default)]
struct State {
    retention: Retention,
    /// The sessions held, by id (all of them, the open ones and the latest closed, or the open
    /// ones: [`Retention`]).
    ///
    /// Boxed: a B-tree filled in id order leaves its nodes little over half full, and a session's
    /// facts are some 240 octets; in the nodes themselves they cost twice that per session, behind
    /// a box only the pointer does.
    sessions: BTreeMap<u64, Box<SessionLog>>,
    /// The closed sessions held, in the order they closed: under [`Retention::Latest`] the
    /// first is the next to be forgotten (empty under the other retentions).
    closed_held: VecDeque<u64>,
    /// Whether the warning that the history is full was given (once in a recorder's life).
    told_history_full: bool,
    /// Reply texts the held logs share.
    interner: Interner,
    last_id: u64,
    refused: u64,
    /// Every session closed so far, forgotten or not.
    closed: usize,
    /// Every ETRN recorded so far, forgotten or not.
    etrn: usize,
    /// The normalised domains of the ETRNs the held sessions have, each with how many: a wait
    /// for a domain looks here, never at the recording. A forgotten session takes its domains
    /// with it, so under [`Retention::Open`] the index stays as small as what is held.
    ///
    /// Built from the logs the first time something looks (`None` until then, and again after a
    /// reset), then kept up to date: a smart host nobody asks about domains (a benchmark, a
    /// soak) neither pays for a look-up per ETRN nor keeps every domain a second time (a client
    /// naming a new domain in every ETRN made the index 35 of the 85 octets an ETRN cost).
    etrn_domains: Option<DomainCounts>,
    /// One waker per domain some wait is pending on, with the number of waits on it: an ETRN
    /// wakes the waits for its own domain only, so its cost does not grow with the waits pending.
    etrn_waiters: FastMap<String, (Arc<Notify>, usize)>,
    /// The ETRNs of the sessions held, by number (1, 2, 3 ... in the order they were recorded;
    /// a reset does not start again), each with its session and its place among the session's
    /// ETRNs: `GET /etrn` pages and streams from here, never from the recording.
    etrn_numbers: EtrnNumbers,
    /// The number the last ETRN recorded got.
    last_etrn_number: u64,
    forgotten: u64,
    /// Every ETRN since the start, resets included.
    etrn_total: usize,
    /// `POST /reset`s so far.
    resets: u64,
    /// The JSON Lines stream's writer, when there is one.
    stream: Option<StreamWriter>,
}

impl State {
    /// The domain index, built from the held sessions' logs if nothing has looked at it yet.
    fn etrn_domains(&mut self) -> &DomainCounts {
        let State {
            etrn_domains,
            sessions,
            interner,
            ..
        } = self;
        etrn_domains.get_or_insert_with(|| {
            let mut domains = DomainCounts::default();
            for s in sessions.values().filter(|s| s.etrns > 0) {
                for domain in etrn_domains_of(s, interner) {
                    domains.add(&domain);
                }
            }
            domains
        })
    }

    /// Forgets closed session `id`: it is counted as forgotten, and its ETRNs leave the indexes
    /// with it (its log is read only if it has any, and the domains are built).
    fn forget(&mut self, id: u64) {
        if let Some(s) = self.sessions.remove(&id) {
            if s.etrns > 0 {
                self.etrn_numbers.forget(id, s.first_etrn, s.etrns);
                if let Some(domains) = self.etrn_domains.as_mut() {
                    for domain in etrn_domains_of(&s, &self.interner) {
                        domains.remove_one(&domain);
                    }
                }
            }
            self.forgotten += 1;
        }
    }

    /// Appends one JSON line, recorded at `at_us`, to the stream, if there is one: straight into
    /// the writer's buffer, no write here (see [`StreamWriter`]).
    fn stream(&mut self, at_us: u64, line: impl FnOnce(&mut Vec<u8>)) {
        if let Some(stream) = &self.stream {
            stream.append_with(at_us, |out| {
                line(out);
                out.push(b'\n');
            });
        }
    }
}

/// Collects events from every session of one smart host.
pub struct Recorder {
    started: Instant,
    state: Mutex<State>,
    /// Every event: for [`Recorder::wait_until`] only.
    changed: Notify,
    /// A session closed, or a reset: for [`Recorder::wait_for_closed_sessions`].
    closed_changed: Notify,
    /// Every listener gets the same event, never a copy of its own.
    live: broadcast::Sender<Arc<LiveEvent>>,
    /// Sessions opened and closed and ETRNs only ([`LiveFeed::SessionsAndEtrn`]): `serve`'s
    /// lines for people need no more, and the commands and replies of a mail session are most
    /// of its events (a copy of each, sent to a listener who drops it, cost the default `serve`
    /// a quarter of its time per session).
    summary: broadcast::Sender<Arc<LiveEvent>>,
    /// Times a wait for an ETRN looked at the index again after a wake-up (tests count them).
    #[cfg(test)]
    etrn_wakeups: std::sync::atomic::AtomicUsize,
    /// Session events copied for the live feeds (tests count them).
    #[cfg(test)]
    live_copies: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// Version of the JSON Lines stream's shape.
pub const STREAM_VERSION: u32 = 1;

/// Live events a feed holds for a listener that has not read them yet; a listener further
/// behind misses the oldest (it is told how many).
pub const LIVE_CAPACITY: usize = 4096;

impl Recorder {
    pub fn new() -> Self {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        let (summary, _) = broadcast::channel(LIVE_CAPACITY);
        Recorder {
            started: Instant::now(),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            closed_changed: Notify::new(),
            live,
            summary,
            #[cfg(test)]
            etrn_wakeups: std::sync::atomic::AtomicUsize::new(0),
            #[cfg(test)]
            live_copies: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// A recorder that keeps `retention` of its history in memory.
    pub fn with_retention(retention: Retention) -> Self {
        let r = Self::new();
        r.lock().retention = retention;
        r
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the recording usable; keep going.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Sends a session's opening or closing to both feeds (it is in both).
    fn publish(&self, e: LiveEvent) {
        // Nobody listening live: no copy to make.
        if self.live.receiver_count() > 0 || self.summary.receiver_count() > 0 {
            self.send_live(Arc::new(e));
        }
        self.changed.notify_waiters();
    }

    /// A live feed of events, for printing as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.live.subscribe()
    }

    /// A live feed of `feed`'s events.
    pub fn subscribe_to(&self, feed: LiveFeed) -> broadcast::Receiver<Arc<LiveEvent>> {
        match feed {
            LiveFeed::Everything => self.live.subscribe(),
            LiveFeed::SessionsAndEtrn => self.summary.subscribe(),
        }
    }

    /// `event` to every listener whose feed has it (one `Arc`, whatever the number of feeds).
    fn send_live(&self, event: Arc<LiveEvent>) {
        if LiveFeed::SessionsAndEtrn.has(&event) && self.summary.receiver_count() > 0 {
            // Nobody may listen any more: that is no error.
            let _ = self.summary.send(Arc::clone(&event));
        }
        if self.live.receiver_count() > 0 {
            let _ = self.live.send(event);
        }
    }

    /// Streams everything from now on to `out` as JSON Lines, one line per event as it happens
    /// (a header line first, written here). Lines are appended under the recorder's lock, so
    /// they keep their order, and written by a thread of its own, off the sessions' path:
    /// [`Recorder::finish_stream`] waits for it.
    pub fn stream_to(&self, out: Box<dyn Write + Send>) -> std::io::Result<()> {
        self.stream_to_with_buffer(out, STREAM_BUFFER_OCTETS)
    }

    /// [`Recorder::stream_to`] with at most `cap` octets of lines waiting for the writer (the
    /// default is [`STREAM_BUFFER_OCTETS`]): lines that find the buffer full are dropped,
    /// counted and marked in the stream.
    pub fn stream_to_with_buffer(
        &self,
        mut out: Box<dyn Write + Send>,
        cap: usize,
    ) -> std::io::Result<()> {
        let header =
            serde_json::json!({ "recording": "etrn-harness", "stream_version": STREAM_VERSION });
        out.write_all(format!("{header}\n").as_bytes())?;
        out.flush()?;
        self.lock().stream = Some(StreamWriter::start(out, cap)?);
        Ok(())
    }

    /// Ends the stream: nothing is appended any more, and what the writer holds is written,
    /// waited for at most [`STREAM_FINISH_DEADLINE`] (a disk that does not take it by then
    /// does not hold the exit, and the end says so). Says how many lines were dropped and why
    /// the stream stopped short, if it did; the default end when there is no stream.
    pub fn finish_stream(&self) -> StreamEnd {
        // Waited for without the recorder's lock: sessions still closing go on.
        let finisher = self.lock().stream.as_ref().map(StreamWriter::finisher);
        finisher.map_or_else(StreamEnd::default, |f| f.finish(STREAM_FINISH_DEADLINE))
    }

    /// Registers a new session and returns its id.
    pub fn open(&self, peer: SocketAddr) -> u64 {
        let at = self.now_us();
        let id = {
            let mut r = self.lock();
            r.last_id += 1;
            let id = r.last_id;
            r.sessions.insert(
                id,
                Box::new(SessionLog {
                    peer: Peer::new(peer),
                    started_us: at,
                    closed: None,
                    tls: false,
                    events: EventLog::default(),
                    etrns: 0,
                    first_etrn: 0,
                }),
            );
            r.stream(at, |out| json_line::write_opened(out, at, id, peer));
            id
        };
        self.publish(LiveEvent::Opened {
            session: id,
            peer,
            at_us: at,
            line: SharedLine::default(),
        });
        id
    }

    /// Records one event of session `id`.
    pub fn event(&self, id: u64, event: Event) {
        self.events(id, &mut vec![event]);
    }

    /// Records `events` of session `id`, in order, and leaves `events` empty (its capacity
    /// kept, for the next batch): under one lock, with one time, one append to the stream and
    /// one wake-up of the waits.
    pub fn events(&self, id: u64, events: &mut Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let mut batch = self.batch(id);
        for event in events.drain(..) {
            batch.push(event);
        }
    }

    /// Starts recording a batch of session `id`'s events: under one lock, with one time (they
    /// arrived together: what one read brought, answered before one write), one append to the
    /// stream and one wake-up of the waits, all when the batch is dropped. A session answering
    /// pipelined commands pays for the lock once per batch, not once per event; and as each
    /// event is packed as soon as it is pushed, its memory is free again before the next one is
    /// made (events made for a whole batch and freed together missed the allocator's
    /// per-thread cache).
    ///
    /// The lock is taken with the batch's first event (a read that records nothing, the lines of
    /// a message, never takes it) and held until the batch is dropped; meanwhile every other
    /// session's recording waits, so the driver keeps a batch to a bounded number of lines, and
    /// never holds one across an `.await` (the guard is not `Send`).
    pub(crate) fn batch(&self, id: u64) -> RecordBatch<'_> {
        RecordBatch {
            at: self.now_us(),
            live_everything: self.live.receiver_count() > 0,
            live_summary: self.summary.receiver_count() > 0,
            state: None,
            recorder: self,
            id,
            lines: Vec::new(),
            wake: Vec::new(),
            published: Vec::new(),
            pushed: false,
            log: BatchLog::NotTaken,
        }
    }

    /// Marks session `id` as running over TLS.
    pub fn tls_established(&self, id: u64) {
        let at = self.now_us();
        {
            let mut r = self.lock();
            if let Some(s) = r.sessions.get_mut(&id) {
                s.tls = true;
            }
            r.stream(at, |out| {
                json_line::write_value(
                    out,
                    &serde_json::json!({ "at_us": at, "session": id, "tls": true }),
                )
            });
        }
        self.changed.notify_waiters();
    }

    /// Ends session `id`.
    pub fn close(&self, id: u64, reason: CloseReason) {
        let at = self.now_us();
        let mut history_full = None;
        {
            let mut r = self.lock();
            let kept = r.retention.closed_kept();
            let Some(s) = r.sessions.get_mut(&id) else {
                return;
            };
            if !s.is_open() {
                return;
            }
            s.closed = Some(Closed::new(at, &reason));
            // The log grows no more: give back what doubling the vector reserved.
            s.events.shrink();
            r.closed += 1;
            r.stream(at, |out| json_line::write_closed(out, at, id, &reason));
            match kept {
                None => {}
                Some(0) => r.forget(id),
                Some(n) => {
                    r.closed_held.push_back(id);
                    if r.closed_held.len() > n && !r.told_history_full {
                        r.told_history_full = true;
                        history_full = Some(n);
                    }
                    while r.closed_held.len() > n {
                        if let Some(oldest) = r.closed_held.pop_front() {
                            r.forget(oldest);
                        }
                    }
                }
            }
        }
        if let Some(kept) = history_full {
            // Once, and after the lock is let go: a stderr that blocks must not hold the
            // sessions. A warning, which serve shows unless told otherwise: a user reading the
            // recording later would otherwise wonder where the first sessions went.
            tracing::warn!(
                kept,
                "history full: from now on the session that closed longest ago is forgotten as \
                 each one more closes (counted; --retain all keeps every one, --record FILE \
                 streams every one)"
            );
        }
        self.closed_changed.notify_waiters();
        self.publish(LiveEvent::Closed {
            session: id,
            reason,
            at_us: at,
            line: SharedLine::default(),
        });
    }

    /// Forgets everything recorded so far: closed sessions go, open ones keep going with an
    /// empty log, and the counts (sessions closed, ETRNs, refusals) start again from zero. Ids
    /// keep counting up. The `--record` stream, if any, is not touched: it keeps everything.
    pub fn reset(&self) {
        let at = self.now_us();
        {
            let mut r = self.lock();
            r.sessions.retain(|_, s| s.is_open());
            r.closed_held.clear();
            for s in r.sessions.values_mut() {
                s.events = EventLog::default();
                s.etrns = 0;
            }
            r.etrn_numbers.clear();
            r.closed = 0;
            r.etrn = 0;
            // The waits for ETRNs stay pending, on an empty index: nothing to wake them for.
            // The open sessions' logs start again empty: the index, built again when next
            // looked at, starts empty too.
            r.etrn_domains = None;
            r.refused = 0;
            r.forgotten = 0;
            r.resets += 1;
            r.stream(at, |out| {
                json_line::write_value(out, &serde_json::json!({ "at_us": at, "reset": true }))
            });
        }
        self.closed_changed.notify_waiters();
        self.changed.notify_waiters();
    }

    /// Counts a connection refused at the cap.
    pub fn refused(&self) {
        let at = self.now_us();
        {
            let mut r = self.lock();
            r.refused += 1;
            let refused = r.refused;
            r.stream(at, |out| {
                json_line::write_value(out, &serde_json::json!({ "at_us": at, "refused": refused }))
            });
        }
        self.changed.notify_waiters();
    }

    /// Ends every session still open, as closed for `reason` (a shutdown that could not wait).
    pub fn close_open(&self, reason: CloseReason) {
        let open: Vec<u64> = self
            .lock()
            .sessions
            .iter()
            .filter(|(_, s)| s.is_open())
            .map(|(id, _)| *id)
            .collect();
        for id in open {
            self.close(id, reason.clone());
        }
    }

    /// ETRN commands recorded so far (forgotten sessions' included).
    pub fn etrn_count(&self) -> usize {
        self.lock().etrn
    }

    /// Connections refused at the cap so far (since the last reset), without building a
    /// recording.
    pub fn refused_count(&self) -> u64 {
        self.lock().refused
    }

    /// Sessions closed so far (forgotten ones included), without building a recording.
    pub fn closed_count(&self) -> usize {
        self.lock().closed
    }

    /// Sessions the recording has (held, open or closed) plus the ones forgotten: what
    /// `recording().sessions.len() + recording().forgotten` counts, without building it.
    pub fn session_count(&self) -> usize {
        let r = self.lock();
        r.sessions
            .len()
            .saturating_add(usize::try_from(r.forgotten).unwrap_or(usize::MAX))
    }

    /// What the smart host saw since it started, resets or not: for a stop line that must agree
    /// with the live lines printed before it.
    pub fn lifetime(&self) -> Lifetime {
        let r = self.lock();
        Lifetime {
            sessions: usize::try_from(r.last_id).unwrap_or(usize::MAX),
            etrn: r.etrn_total,
            resets: r.resets,
        }
    }

    /// Whether a session held has an ETRN for the normalised `domain` (one recorded since the
    /// start or the last reset, and not forgotten). A look-up, whatever the length of the
    /// recording (the first one after a start or a reset builds the index from the logs).
    pub fn has_etrn(&self, domain: &str) -> bool {
        self.lock().etrn_domains().contains(domain)
    }

    /// A copy of everything recorded so far (derived from the event logs).
    pub fn recording(&self) -> Recording {
        let r = self.lock();
        Recording {
            version: RECORDING_VERSION,
            refused: r.refused,
            forgotten: r.forgotten,
            sessions: r
                .sessions
                .iter()
                .map(|(id, s)| s.derive(*id, &r.interner))
                .collect(),
        }
    }

    /// Waits until `ready` holds for the recording, waking only when something is recorded.
    ///
    /// Cost: every event that happens while it waits builds the whole recording again from the
    /// event logs and runs `ready` on it, O(history) per event per pending wait; on a busy server
    /// with a long recording that slows every session down. For an ETRN or a count of closed
    /// sessions, [`Recorder::wait_for_etrn`] and [`Recorder::wait_for_closed_sessions`] cost O(1)
    /// per event instead.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&Recording) -> bool,
    ) -> Result<Recording, WaitTimeout> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before checking, so an event between the check and the wait
            // still wakes us.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let r = self.recording();
                if ready(&r) {
                    return Ok(r);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(WaitTimeout {
                    what: what.to_owned(),
                    waited: timeout,
                });
            }
        }
    }

    /// Waits until at least `n` sessions have closed, and returns the recording (built once, at
    /// the end). See [`Recorder::until_closed_sessions`] for the cost.
    pub async fn wait_for_closed_sessions(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Recording, WaitTimeout> {
        self.until_closed_sessions(n, timeout).await?;
        Ok(self.recording())
    }

    /// Waits until at least `n` sessions have closed (forgotten ones included). Woken only when a
    /// session closes (or at a reset), and then it reads a counter: O(1) per event however long
    /// the recording, and no recording is built.
    pub async fn until_closed_sessions(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<(), WaitTimeout> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Enabled before the count is read: a close in between still wakes this wait.
            let notified = self.closed_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.closed_count() >= n {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(WaitTimeout {
                    what: format!("{n} closed session(s)"),
                    waited: timeout,
                });
            }
        }
    }

    /// Waits until an ETRN for `domain` (compared normalised) has been recorded, and returns the
    /// recording (built once, at the end). See [`Recorder::until_etrn`] for the cost.
    pub async fn wait_for_etrn(
        &self,
        domain: &str,
        timeout: Duration,
    ) -> Result<Recording, WaitTimeout> {
        self.until_etrn(domain, timeout).await?;
        Ok(self.recording())
    }

    /// Waits until an ETRN for `domain` (compared normalised: case, trailing dot and IDNA form do
    /// not matter) is in a session held (recorded since the start or the last reset, and not
    /// forgotten: what the recording shows). It looks at an index of the domains seen, and is woken only by an ETRN for its
    /// own domain: O(1) per event whatever is pending, and no recording is built.
    pub async fn until_etrn(&self, domain: &str, timeout: Duration) -> Result<(), WaitTimeout> {
        let wanted = normalised_domain(domain);
        let deadline = tokio::time::Instant::now() + timeout;
        let Some(waiter) = EtrnWaiter::register(self, &wanted) else {
            return Ok(());
        };
        loop {
            let notified = waiter.notify.notified();
            tokio::pin!(notified);
            // Enabled before the index is read: an ETRN in between still wakes this wait.
            notified.as_mut().enable();
            if self.has_etrn(&wanted) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(WaitTimeout {
                    what: format!("ETRN {domain}"),
                    waited: timeout,
                });
            }
            #[cfg(test)]
            self.etrn_wakeups
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The domains some wait for an ETRN is pending on now (each counted once however many wait
    /// on it): none is left behind by a wait that ended.
    pub fn pending_etrn_domains(&self) -> usize {
        self.lock().etrn_waiters.len()
    }
}

impl Recorder {
    /// The session `id` as a recording, if it is held: derived under the lock, one session only.
    fn derive_session(&self, id: u64) -> Option<SessionRecording> {
        let r = self.lock();
        r.sessions.get(&id).map(|s| s.derive(id, &r.interner))
    }

    /// Every ETRN of the sessions held, with its session's id, in the order they were recorded:
    /// what `GET /etrn` lists. Read 256 at a time with an [`EtrnCursor`] (the lock is let go in
    /// between), so the recording is never built.
    pub fn etrns(&self) -> Vec<(u64, RecordedEtrn)> {
        let mut cursor = EtrnCursor::new(0, self.lock().last_etrn_number);
        let mut all = Vec::new();
        loop {
            let batch = cursor.next_batch(self, 256);
            if batch.is_empty() {
                return all;
            }
            all.extend(batch.into_iter().map(|(_, session, e)| (session, e)));
        }
    }

    /// The numbers of the ETRNs held after `after`: the last of the first `limit` (`after` when
    /// there are none), and whether more follow it now. A look-up in the index of numbers,
    /// O(`limit`), never the recording.
    pub fn etrn_page(&self, after: u64, limit: usize) -> (u64, bool) {
        let r = self.lock();
        if limit >= r.etrn_numbers.len() {
            // All of them: the last number, without walking the index.
            let last = r.etrn_numbers.last();
            return (last.filter(|&n| n > after).unwrap_or(after), false);
        }
        let mut numbers = r.etrn_numbers.after(after).map(|(n, _, _)| n);
        let last = numbers.by_ref().take(limit).last().unwrap_or(after);
        (last, numbers.next().is_some())
    }
}

/// A reader of the ETRNs of the sessions held numbered after a cursor and at most a bound, a batch
/// at a time, in order of number: what a streamed `GET /etrn` writes. Each session a batch needs
/// is read under the lock, and the last one's ETRNs are kept for the next batch, so a session
/// with thousands of ETRNs is read once, not once per batch.
pub struct EtrnCursor {
    after: u64,
    upto: u64,
    /// The session read last, with its ETRNs in order.
    kept: Option<(u64, Vec<RecordedEtrn>)>,
}

impl EtrnCursor {
    /// The ETRNs numbered after `after` and at most `upto`.
    pub fn new(after: u64, upto: u64) -> Self {
        EtrnCursor {
            after,
            upto,
            kept: None,
        }
    }

    /// The next at most `max` ETRNs, each with its number and its session; none at the end.
    pub fn next_batch(&mut self, recorder: &Recorder, max: usize) -> Vec<(u64, u64, RecordedEtrn)> {
        if self.after >= self.upto {
            return Vec::new();
        }
        let mut read: HashMap<u64, Vec<RecordedEtrn>> = self.kept.take().into_iter().collect();
        let wanted: Vec<(u64, u64, usize)> = {
            let r = recorder.lock();
            let upto = self.upto;
            let wanted: Vec<(u64, u64, usize)> = r
                .etrn_numbers
                .after(self.after)
                .take_while(|(n, _, _)| *n <= upto)
                .take(max)
                .collect();
            for &(_, session, nth) in &wanted {
                // Kept from before this ETRN was recorded: read again.
                if read.get(&session).is_some_and(|etrns| nth < etrns.len()) {
                    continue;
                }
                if let Some(s) = r.sessions.get(&session) {
                    read.insert(session, etrns_of(s, &r.interner));
                }
            }
            wanted
        };
        let batch = wanted
            .iter()
            .filter_map(|&(n, session, nth)| {
                Some((n, session, read.get(&session)?.get(nth)?.clone()))
            })
            .collect();
        match wanted.last() {
            Some(&(n, session, _)) => {
                self.after = n;
                self.kept = read.remove(&session).map(|etrns| (session, etrns));
            }
            None => self.after = self.upto,
        }
        batch
    }
}

/// The normalised domains of session `s`'s ETRNs (one per ETRN that names one), read from its log.
fn etrn_domains_of(s: &SessionLog, interner: &Interner) -> impl Iterator<Item = String> {
    s.events
        .events(interner)
        .into_iter()
        .filter_map(|e| match e.event {
            Event::Etrn(record) => record.domain().map(str::to_owned),
            _ => None,
        })
}

/// The ETRNs of session `s`, in order, read from its log.
fn etrns_of(s: &SessionLog, interner: &Interner) -> Vec<RecordedEtrn> {
    s.events
        .events(interner)
        .into_iter()
        .filter_map(|e| match e.event {
            Event::Etrn(record) => Some(RecordedEtrn {
                at_us: e.at_us,
                record: *record,
            }),
            _ => None,
        })
        .collect()
}

/// How many bytes of JSON [`RecordingJson`] gathers before it hands a piece on.
const JSON_PIECE: usize = 64 * 1024;

/// The recording's JSON document in pieces of about 64 KiB, for a streamed answer:
/// byte for byte what `serde_json::to_string(&recorder.recording())` writes when nothing is
/// recorded meanwhile, but never the whole recording in memory. The sessions are those held when
/// it was made, each derived under the lock when its turn comes (so a session still open shows
/// what it had then); one removed by a reset or forgotten meanwhile is left out (the
/// `forgotten` count is the one when it was made).
pub struct RecordingJson {
    recorder: Arc<Recorder>,
    ids: std::vec::IntoIter<u64>,
    head: Option<Vec<u8>>,
    first: bool,
    done: bool,
}

/// Which sessions a [`RecordingJson`] writes, and whether more followed them when it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPage {
    /// The id of the last session written; `None` when there is none.
    pub last: Option<u64>,
    /// Whether sessions with higher ids were held.
    pub more: bool,
}

impl RecordingJson {
    /// The whole recording.
    pub fn new(recorder: Arc<Recorder>) -> Self {
        Self::page(recorder, 0, usize::MAX).0
    }

    /// The recording with only the sessions whose ids come after `after`, at most `limit` of
    /// them (its other fields are the whole recording's); which they are is fixed now.
    pub fn page(recorder: Arc<Recorder>, after: u64, limit: usize) -> (Self, SessionPage) {
        let (ids, more, head) = {
            let r = recorder.lock();
            let mut held = r
                .sessions
                .range(after.saturating_add(1)..)
                .map(|(id, _)| *id);
            let ids: Vec<u64> = held.by_ref().take(limit).collect();
            let more = held.next().is_some();
            let empty = Recording {
                version: RECORDING_VERSION,
                refused: r.refused,
                forgotten: r.forgotten,
                sessions: Vec::new(),
            };
            (ids, more, empty)
        };
        let page = SessionPage {
            last: ids.last().copied(),
            more,
        };
        let json = RecordingJson {
            recorder,
            ids: ids.into_iter(),
            head: Some(head.document_head()),
            first: true,
            done: false,
        };
        (json, page)
    }
}

impl Iterator for RecordingJson {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        let mut out = self.head.take().unwrap_or_default();
        while out.len() < JSON_PIECE {
            let Some(id) = self.ids.next() else {
                out.extend_from_slice(b"]}");
                self.done = true;
                return Some(out);
            };
            // Derived under the lock, written after it is let go.
            let Some(session) = self.recorder.derive_session(id) else {
                continue;
            };
            match serde_json::to_vec(&session) {
                Ok(json) => {
                    if !self.first {
                        out.push(b',');
                    }
                    self.first = false;
                    out.extend_from_slice(&json);
                }
                Err(e) => {
                    warn!(session = id, error = %e, "a session could not be written as JSON; left out")
                }
            }
        }
        Some(out)
    }
}

/// One session's batch of events being recorded, under the recorder's lock
/// ([`Recorder::batch`]). Dropping it appends the batch's stream lines, lets the lock go, and
/// then wakes the waits and tells the live feeds.
pub(crate) struct RecordBatch<'a> {
    recorder: &'a Recorder,
    /// Taken with the first event: a read that records nothing (the lines of a message) never
    /// waits for the lock, nor holds it while the session works.
    state: Option<MutexGuard<'a, State>>,
    id: u64,
    at: u64,
    live_everything: bool,
    live_summary: bool,
    /// The batch's stream lines: appended to the stream's buffer at the end, in one piece.
    lines: Vec<u8>,
    /// The waits for the domains of this batch's ETRNs.
    wake: Vec<Arc<Notify>>,
    /// Copies for the live feeds, sent once the lock is let go.
    published: Vec<Event>,
    pushed: bool,
    /// The session's log, taken out of its facts for the batch: one look-up of the session
    /// per batch, not one per event.
    log: BatchLog,
}

/// What a batch writes of its session's facts.
enum BatchLog {
    /// No event pushed yet.
    NotTaken,
    /// Taken out of the session's [`SessionLog`], put back when the batch ends.
    Taken {
        events: EventLog,
        etrns: u32,
        first_etrn: u64,
    },
    /// The session is not held (forgotten, or reset away): its events are not kept.
    NotHeld,
}

impl BatchLog {
    /// The session's log, taken out of `state` on first use.
    fn take(&mut self, state: &mut State, id: u64) -> Option<(&mut EventLog, &mut u32, &mut u64)> {
        if let BatchLog::NotTaken = self {
            *self = match state.sessions.get_mut(&id) {
                Some(s) => BatchLog::Taken {
                    events: std::mem::take(&mut s.events),
                    etrns: s.etrns,
                    first_etrn: s.first_etrn,
                },
                None => BatchLog::NotHeld,
            };
        }
        match self {
            BatchLog::Taken {
                events,
                etrns,
                first_etrn,
            } => Some((events, etrns, first_etrn)),
            _ => None,
        }
    }

    /// Puts a taken log back into its session.
    fn put_back(&mut self, state: &mut State, id: u64) {
        if let BatchLog::Taken {
            events,
            etrns,
            first_etrn,
        } = std::mem::replace(self, BatchLog::NotTaken)
            && let Some(s) = state.sessions.get_mut(&id)
        {
            s.events = events;
            s.etrns = etrns;
            s.first_etrn = first_etrn;
        }
    }
}

/// What a batch's stream lines take before they first grow: an EHLO/ETRN/QUIT session's lines,
/// its greeting's to its close, are about 1.5 KiB in all, and a batch holds one exchange of them.
const BATCH_LINES_OCTETS: usize = 1024;

impl RecordBatch<'_> {
    /// Records one event, packed at once.
    pub(crate) fn push(&mut self, event: Event) {
        let recorder = self.recorder;
        let state = &mut **self.state.get_or_insert_with(|| recorder.lock());
        self.pushed = true;
        if state.stream.is_some() {
            if self.lines.capacity() == 0 {
                // A batch's lines are a few hundred octets: one allocation, not one per doubling
                // from empty.
                self.lines.reserve(BATCH_LINES_OCTETS);
            }
            json_line::write_event(&mut self.lines, self.at, self.id, &event);
            self.lines.push(b'\n');
        }
        let Some((events, etrns, first_etrn)) = self.log.take(state, self.id) else {
            return;
        };
        if self.live_everything || (self.live_summary && matches!(event, Event::Etrn(_))) {
            self.published.push(event.clone());
            #[cfg(test)]
            self.recorder
                .live_copies
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Event::Etrn(record) = &event {
            count_etrn(state, self.id, etrns, first_etrn);
            if let Some(domain) = record.domain() {
                // Woken after the lock is let go; a wait registers under the lock, so none
                // misses this.
                if !state.etrn_waiters.is_empty()
                    && let Some((n, _)) = state.etrn_waiters.get(domain)
                    && !self.wake.iter().any(|w| Arc::ptr_eq(w, n))
                {
                    self.wake.push(Arc::clone(n));
                }
                if let Some(domains) = state.etrn_domains.as_mut() {
                    domains.add(domain);
                }
            }
        }
        events.push(self.at, event, &mut state.interner);
    }

    /// Records the ETRN `etrn` stands for, packed from its parts unless the stream, a live feed,
    /// a wait for a domain or the index of domains needs its record.
    pub(crate) fn plain_etrn(&mut self, etrn: PlainEtrn) {
        let recorder = self.recorder;
        let state = &mut **self.state.get_or_insert_with(|| recorder.lock());
        if state.stream.is_some()
            || self.live_everything
            || self.live_summary
            || !state.etrn_waiters.is_empty()
            || state.etrn_domains.is_some()
        {
            self.push(etrn.into_event());
            return;
        }
        self.pushed = true;
        let Some((events, etrns, first_etrn)) = self.log.take(state, self.id) else {
            return;
        };
        count_etrn(state, self.id, etrns, first_etrn);
        events.push_plain_etrn(self.at, &etrn, &mut state.interner);
    }

    /// Records the ETRN command line `line` stands for, packed from its parts unless the stream
    /// or the full live feed needs its event.
    pub(crate) fn etrn_command(&mut self, line: EtrnCommandLine) {
        let recorder = self.recorder;
        let state = &mut **self.state.get_or_insert_with(|| recorder.lock());
        if state.stream.is_some() || self.live_everything {
            self.push(line.into_event());
            return;
        }
        self.pushed = true;
        let Some((events, _, _)) = self.log.take(state, self.id) else {
            return;
        };
        events.push_etrn_command(self.at, &line, &mut state.interner);
    }

    /// Records the reply `reply` stands for, packed from its parts unless the stream or the
    /// full live feed needs its event.
    pub(crate) fn quoted_reply(&mut self, reply: QuotedReply) {
        let recorder = self.recorder;
        let state = &mut **self.state.get_or_insert_with(|| recorder.lock());
        if state.stream.is_some() || self.live_everything {
            self.push(reply.into_event());
            return;
        }
        self.pushed = true;
        let Some((events, _, _)) = self.log.take(state, self.id) else {
            return;
        };
        if !events.push_quoted_reply(self.at, &reply, &mut state.interner) {
            events.push(self.at, reply.into_event(), &mut state.interner);
        }
    }

    /// Records [`Event::Unawaited`] for `raw`, a line as it will be recorded, borrowed: no
    /// event is made unless the stream or the full live feed needs one.
    pub(crate) fn unawaited(&mut self, raw: &[u8]) {
        let recorder = self.recorder;
        let state = &mut **self.state.get_or_insert_with(|| recorder.lock());
        if state.stream.is_some() || self.live_everything {
            self.push(Event::Unawaited { raw: raw.to_vec() });
            return;
        }
        self.pushed = true;
        if let Some((events, _, _)) = self.log.take(state, self.id) {
            events.push_unawaited(self.at, raw);
        }
    }
}

/// Numbers an ETRN of session `id`, which has had `etrns` (the first numbered `first_etrn`).
fn count_etrn(state: &mut State, id: u64, etrns: &mut u32, first_etrn: &mut u64) {
    state.last_etrn_number += 1;
    state.etrn_numbers.push(state.last_etrn_number, id, *etrns);
    if *etrns == 0 {
        *first_etrn = state.last_etrn_number;
    }
    *etrns = etrns.saturating_add(1);
    state.etrn += 1;
    state.etrn_total += 1;
}

impl Drop for RecordBatch<'_> {
    fn drop(&mut self) {
        let Some(mut state) = self.state.take() else {
            return;
        };
        self.log.put_back(&mut state, self.id);
        if let Some(stream) = &state.stream {
            stream.append(self.at, &self.lines);
        }
        drop(state);
        if !self.pushed {
            return;
        }
        // Looked at first: a batch usually has neither, and draining an empty vector is not free.
        if !self.wake.is_empty() {
            for waiters in self.wake.drain(..) {
                waiters.notify_waiters();
            }
        }
        if !self.published.is_empty() {
            self.publish_batch();
        }
        self.recorder.changed.notify_waiters();
    }
}

impl RecordBatch<'_> {
    /// Sends the batch's copies to the live feeds.
    fn publish_batch(&mut self) {
        for event in self.published.drain(..) {
            self.recorder.send_live(Arc::new(LiveEvent::Event {
                session: self.id,
                event,
                at_us: self.at,
                line: SharedLine::default(),
            }));
        }
    }
}

/// `domain` as the index holds it: normalised when it is a domain, lower case otherwise.
fn normalised_domain(domain: &str) -> String {
    crate::domain::Domain::parse(domain)
        .map(|d| d.normalised().to_owned())
        .unwrap_or_else(|_| domain.to_ascii_lowercase())
}

/// One pending wait for an ETRN, registered on its domain's waker; the waker goes when its last
/// wait does (a finished wait, a timed-out one, or a dropped request), so the map holds only the
/// domains waited on now.
struct EtrnWaiter<'a> {
    recorder: &'a Recorder,
    domain: String,
    notify: Arc<Notify>,
}

impl<'a> EtrnWaiter<'a> {
    /// Registers a wait on `domain`, unless the index already has it (`None`: nothing to wait
    /// for). Checked and registered under one lock, so no ETRN falls in between.
    fn register(recorder: &'a Recorder, domain: &str) -> Option<Self> {
        let mut r = recorder.lock();
        if r.etrn_domains().contains(domain) {
            return None;
        }
        let entry = r
            .etrn_waiters
            .entry(domain.to_owned())
            .or_insert_with(|| (Arc::new(Notify::new()), 0));
        entry.1 += 1;
        let notify = Arc::clone(&entry.0);
        Some(EtrnWaiter {
            recorder,
            domain: domain.to_owned(),
            notify,
        })
    }
}

impl Drop for EtrnWaiter<'_> {
    fn drop(&mut self) {
        let mut r = self.recorder.lock();
        if let Some((_, waits)) = r.etrn_waiters.get_mut(&self.domain) {
            *waits = waits.saturating_sub(1);
            if *waits == 0 {
                r.etrn_waiters.remove(&self.domain);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::CommandLine;
    use crate::wire::Command;

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40000))
    }

    fn command(r: &Recorder, id: u64, line: &str, code: u16) {
        r.event(
            id,
            Event::Command(CommandLine {
                raw: line.as_bytes().into(),
                verb: Command::parse(line.as_bytes()).verb().clone(),
                bare_lf: false,
                redacted: false,
            }),
        );
        r.event(
            id,
            Event::Reply {
                code,
                lines: vec!["ok".into()],
            },
        );
    }

    #[test]
    fn live_listeners_share_each_event_and_its_json_line() {
        let r = Recorder::new();
        let (mut a, mut b) = (r.subscribe(), r.subscribe());
        let id = r.open(peer());
        command(&r, id, "ETRN a.example\r\n", 250);
        for _ in 0..3 {
            let (x, y) = (a.try_recv().unwrap(), b.try_recv().unwrap());
            assert!(Arc::ptr_eq(&x, &y), "one event for every listener");
            assert_eq!(*x.json_text(), x.json_line().to_string());
            assert!(Arc::ptr_eq(&x.json_text(), &y.json_text()), "built once");
        }
    }

    #[test]
    fn a_batch_is_told_to_listeners_only_when_it_ends_with_one_time() {
        let r = Recorder::new();
        let mut live = r.subscribe();
        let id = r.open(peer());
        assert!(matches!(
            *live.try_recv().unwrap(),
            LiveEvent::Opened { .. }
        ));
        let mut batch = r.batch(id);
        for domain in ["a.example", "b.example"] {
            batch.push(Event::Etrn(Box::new(
                crate::proto::etrn::rebuild_etrn_record(domain.as_bytes(), Some(250), Vec::new()),
            )));
        }
        assert!(
            live.try_recv().is_err(),
            "nothing is told while the batch is open"
        );
        drop(batch);
        let times: Vec<u64> = (0..2)
            .map(|_| match &*live.try_recv().unwrap() {
                LiveEvent::Event { at_us, .. } => *at_us,
                other => panic!("not an event: {other:?}"),
            })
            .collect();
        assert_eq!(times[0], times[1], "one time for the batch");
        assert!(r.has_etrn("a.example") && r.has_etrn("b.example"));
        let domains: Vec<_> = r.recording().sessions[0]
            .etrn
            .iter()
            .map(|e| e.record.domain().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(domains, ["a.example", "b.example"], "in the order pushed");
    }

    #[test]
    fn a_batch_puts_its_session_s_log_back_and_keeps_nothing_of_one_not_held() {
        let r = Recorder::with_retention(Retention::Open);
        let kept = r.open(peer());
        let gone = r.open(peer());
        r.close(gone, CloseReason::Quit);
        for id in [kept, gone] {
            let mut batch = r.batch(id);
            batch.unawaited(b"ETRN a.example\r\n");
            batch.push(Event::Etrn(Box::new(
                crate::proto::etrn::rebuild_etrn_record(b"a.example", Some(250), Vec::new()),
            )));
        }
        // A second batch finds what the first put back.
        etrn(&r, kept, "b.example");
        let recording = r.recording();
        assert_eq!(
            recording.sessions.len(),
            1,
            "the closed session stays forgotten"
        );
        let session = &recording.sessions[0];
        assert_eq!(session.id, kept);
        assert!(matches!(session.events[0].event, Event::Unawaited { .. }));
        let domains: Vec<_> = session
            .etrn
            .iter()
            .map(|e| e.record.domain().map(str::to_owned))
            .collect();
        assert_eq!(
            domains,
            [Some("a.example".into()), Some("b.example".into())]
        );
        assert_eq!(
            r.etrn_count(),
            2,
            "the ETRN of the session not held is not counted"
        );
    }

    #[test]
    fn a_batch_takes_the_lock_with_its_first_event() {
        let r = Recorder::new();
        let id = r.open(peer());
        let mut batch = r.batch(id);
        assert!(r.state.try_lock().is_ok(), "free while nothing is recorded");
        batch.unawaited(b"NOOP\r\n");
        assert!(r.state.try_lock().is_err(), "held from the first event");
        drop(batch);
        assert!(r.state.try_lock().is_ok(), "let go at the end");
    }

    #[test]
    fn the_sessions_and_etrn_feed_carries_only_those_and_shares_them() {
        let r = Recorder::new();
        let mut everything = r.subscribe_to(LiveFeed::Everything);
        let mut summary = r.subscribe_to(LiveFeed::SessionsAndEtrn);
        let id = r.open(peer());
        command(&r, id, "EHLO c\r\n", 250);
        r.event(
            id,
            Event::Etrn(Box::new(
                crate::proto::etrn::read_etrn(
                    &Command::parse(b"ETRN a.example\r\n"),
                    crate::proto::etrn::Greeted::EtrnAdvertised,
                    false,
                )
                .record(Some(250)),
            )),
        );
        r.close(id, CloseReason::Quit);
        let all: Vec<_> = std::iter::from_fn(|| everything.try_recv().ok()).collect();
        let some: Vec<_> = std::iter::from_fn(|| summary.try_recv().ok()).collect();
        // Opened, EHLO, its reply, the ETRN, closed; the summary without the EHLO and reply.
        assert_eq!(all.len(), 5);
        let kept: Vec<_> = all
            .iter()
            .filter(|e| LiveFeed::SessionsAndEtrn.has(e))
            .collect();
        assert_eq!(kept.len(), 3);
        assert_eq!(some.len(), 3);
        for (a, b) in kept.into_iter().zip(&some) {
            assert!(Arc::ptr_eq(a, b), "the same event, not a copy");
        }
        assert!(matches!(*some[0], LiveEvent::Opened { .. }));
        assert!(matches!(
            &*some[1],
            LiveEvent::Event {
                event: Event::Etrn(_),
                ..
            }
        ));
        assert!(matches!(*some[2], LiveEvent::Closed { .. }));
    }

    #[test]
    fn a_summary_listener_alone_gets_no_copies_of_commands() {
        let r = Recorder::new();
        let mut summary = r.subscribe_to(LiveFeed::SessionsAndEtrn);
        let id = r.open(peer());
        for _ in 0..10 {
            command(&r, id, "NOOP\r\n", 250);
        }
        r.close(id, CloseReason::Quit);
        let heard: Vec<_> = std::iter::from_fn(|| summary.try_recv().ok()).collect();
        assert_eq!(heard.len(), 2, "opened and closed only: {heard:?}");
        let copies = || r.live_copies.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(copies(), 0, "no command or reply was copied for the feed");
        // With a listener to everything, each is.
        let _everything = r.subscribe_to(LiveFeed::Everything);
        let id = r.open(peer());
        command(&r, id, "NOOP\r\n", 250);
        assert_eq!(copies(), 2);
    }

    #[test]
    fn the_lists_are_derived_from_the_one_event_log() {
        let r = Recorder::new();
        let id = r.open(peer());
        r.event(
            id,
            Event::Reply {
                code: 220,
                lines: vec!["hi".into()],
            },
        );
        command(&r, id, "EHLO c\r\n", 250);
        command(&r, id, "QUIT\r\n", 221);
        r.close(id, CloseReason::Quit);
        let s = &r.recording().sessions[0];
        assert_eq!(s.greeting.as_ref().map(|g| g.code), Some(220));
        let commands: Vec<_> = s
            .commands
            .iter()
            .map(|c| (c.verb.as_str(), c.reply.as_ref().map(|r| r.code)))
            .collect();
        assert_eq!(commands, [("EHLO", Some(250)), ("QUIT", Some(221))]);
        assert_eq!(s.events.len(), 5);
    }

    #[test]
    fn retention_open_forgets_closed_sessions_but_counts_them() {
        let r = Recorder::with_retention(Retention::Open);
        let first = r.open(peer());
        let second = r.open(peer());
        command(&r, first, "QUIT\r\n", 221);
        r.close(first, CloseReason::Quit);
        let rec = r.recording();
        assert_eq!(rec.sessions.len(), 1, "only the open one is held");
        assert_eq!(rec.sessions[0].id, second);
        assert_eq!((rec.forgotten, rec.closed_sessions()), (1, 1));
        r.close(second, CloseReason::PeerClosed);
        assert_eq!(r.closed_count(), 2);
        assert!(r.recording().sessions.is_empty());
    }

    #[test]
    fn retention_latest_keeps_the_sessions_that_closed_last_and_every_open_one() {
        let r = Recorder::with_retention(Retention::Latest(2));
        // Opened first and still open when the others close: never forgotten for its age.
        let idle = r.open(peer());
        let ids: Vec<u64> = (0..5).map(|_| r.open(peer())).collect();
        for (n, id) in ids.iter().enumerate() {
            etrn(&r, *id, &format!("d{n}.example"));
        }
        // Closed out of order: the order of closing decides, not the ids.
        for id in [ids[3], ids[0], ids[4], ids[1]] {
            r.close(id, CloseReason::Quit);
        }
        let rec = r.recording();
        let held: Vec<u64> = rec.sessions.iter().map(|s| s.id).collect();
        assert_eq!(
            held,
            vec![idle, ids[1], ids[2], ids[4]],
            "the open two and the last two closed, in id order"
        );
        assert_eq!((rec.forgotten, r.closed_count(), r.etrn_count()), (2, 4, 5));
        assert!(
            !r.has_etrn("d3.example") && !r.has_etrn("d0.example"),
            "forgotten"
        );
        assert!(r.has_etrn("d4.example") && r.has_etrn("d1.example") && r.has_etrn("d2.example"));
        let numbered: Vec<u64> = r.etrns().into_iter().map(|(id, _)| id).collect();
        assert_eq!(
            numbered,
            vec![ids[1], ids[2], ids[4]],
            "the numbers index forgets them too"
        );
        // A reset forgets the closed ones held; the count starts again from there.
        r.reset();
        assert!(
            r.lock().closed_held.is_empty(),
            "no id of a session gone is kept"
        );
        let after: Vec<u64> = (0..3).map(|_| r.open(peer())).collect();
        for id in &after {
            r.close(*id, CloseReason::Quit);
        }
        let held: Vec<u64> = r.recording().sessions.iter().map(|s| s.id).collect();
        assert_eq!(held, vec![idle, ids[2], after[1], after[2]]);
    }

    #[test]
    fn a_session_held_open_between_the_others_keeps_the_index_in_order_and_small() {
        let r = Recorder::with_retention(Retention::Latest(2));
        let open = r.open(peer());
        // The open session's ETRNs alternate with short sessions': none of its runs can merge.
        for n in 0..100 {
            etrn(&r, open, &format!("o{n}.example"));
            let id = r.open(peer());
            etrn(&r, id, &format!("s{n}.example"));
            r.close(id, CloseReason::Quit);
        }
        let domains: Vec<String> = r
            .etrns()
            .into_iter()
            .filter_map(|(_, e)| e.record.domain().map(str::to_owned))
            .collect();
        let mut expected: Vec<String> = (0..98).map(|n| format!("o{n}.example")).collect();
        expected.extend(["o98", "s98", "o99", "s99"].map(|d| format!("{d}.example")));
        assert_eq!(domains, expected);
        assert_eq!(r.lock().etrn_numbers.len(), 102);
    }

    #[test]
    fn runs_forgotten_between_two_held_are_swept_before_they_outnumber_them() {
        let r = Recorder::with_retention(Retention::Latest(1));
        let open = r.open(peer());
        etrn(&r, open, "first.example");
        let short: Vec<u64> = (0..50).map(|_| r.open(peer())).collect();
        for (n, id) in short.iter().enumerate() {
            etrn(&r, *id, &format!("s{n}.example"));
        }
        etrn(&r, open, "last.example");
        // Now the short sessions' runs lie between the open session's two: forgetting them
        // empties runs in the middle, which neither end can pop.
        for id in &short {
            r.close(*id, CloseReason::Quit);
        }
        let state = r.lock();
        let numbers = &state.etrn_numbers;
        // Held: the open session's two runs and the last short session's one.
        assert_eq!(numbers.len(), 3);
        assert!(
            numbers.runs.len() <= 2 * 3,
            "{} runs for 3 held: the emptied ones were not swept",
            numbers.runs.len()
        );
        let held: Vec<u64> = numbers.after(0).map(|(n, _, _)| n).collect();
        assert_eq!(held, vec![1, 51, 52]);
    }

    #[test]
    fn forgetting_the_oldest_session_leaves_every_other_etrn_in_number_order() {
        let mut numbers = EtrnNumbers::default();
        // Sessions 1 and 2 interleave (1 1 2 1 2 2), then 3 pipelines.
        for (number, (session, nth)) in [(1, 0), (1, 1), (2, 0), (1, 2), (2, 1), (2, 2), (3, 0)]
            .into_iter()
            .enumerate()
        {
            numbers.push(number as u64 + 1, session, nth);
        }
        numbers.forget(1, 1, 3);
        let left: Vec<(u64, u64, usize)> = numbers.after(0).collect();
        assert_eq!(left, vec![(3, 2, 0), (5, 2, 1), (6, 2, 2), (7, 3, 0)]);
        assert_eq!(numbers.len(), 4);
        numbers.forget(3, 7, 1);
        numbers.forget(2, 3, 3);
        assert_eq!((numbers.len(), numbers.after(0).count()), (0, 0));
    }

    #[test]
    fn reset_forgets_what_was_recorded_and_open_sessions_go_on() {
        let r = Recorder::new();
        let first = r.open(peer());
        let open = r.open(peer());
        command(&r, first, "QUIT\r\n", 221);
        r.close(first, CloseReason::Quit);
        command(&r, open, "NOOP\r\n", 250);
        r.reset();
        let rec = r.recording();
        assert_eq!(rec.sessions.len(), 1);
        assert_eq!(rec.sessions[0].id, open);
        assert!(rec.sessions[0].events.is_empty(), "its log starts again");
        assert_eq!((r.closed_count(), r.etrn_count()), (0, 0));
        // What the smart host saw since it started is not forgotten.
        assert_eq!(r.lifetime().resets, 1);
        assert!(r.lifetime().sessions >= 2, "{:?}", r.lifetime());
        command(&r, open, "QUIT\r\n", 221);
        r.close(open, CloseReason::Quit);
        assert_eq!(r.closed_count(), 1);
        assert_eq!(r.recording().sessions[0].commands.len(), 1);
        assert!(r.open(peer()) > open, "ids keep counting up");
    }

    fn etrn(r: &Recorder, id: u64, domain: &str) {
        r.event(
            id,
            Event::Etrn(Box::new(crate::proto::etrn::rebuild_etrn_record(
                domain.as_bytes(),
                Some(250),
                Vec::new(),
            ))),
        );
    }

    fn wakeups(r: &Recorder) -> usize {
        r.etrn_wakeups.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_wait_for_a_domain_is_woken_by_its_own_etrn_only() {
        let r = Arc::new(Recorder::new());
        let id = r.open(peer());
        let waiting = {
            let r = Arc::clone(&r);
            tokio::spawn(async move {
                r.until_etrn("Wanted.Example.", Duration::from_secs(10))
                    .await
            })
        };
        // On this one thread, the wait has registered once the spawned task has run.
        while r.pending_etrn_domains() == 0 {
            tokio::task::yield_now().await;
        }
        for n in 0..200 {
            etrn(&r, id, &format!("other{n}.example"));
            command(&r, id, "NOOP\r\n", 250);
        }
        r.tls_established(id);
        r.refused();
        let other = r.open(peer());
        r.close(other, CloseReason::Quit);
        tokio::task::yield_now().await;
        assert_eq!(wakeups(&r), 0, "no other event woke the wait");
        assert!(!waiting.is_finished());
        etrn(&r, id, "wanted.example");
        let done = tokio::time::timeout(Duration::from_secs(10), waiting).await;
        assert!(matches!(done, Ok(Ok(Ok(())))), "{done:?}");
        assert_eq!(
            wakeups(&r),
            1,
            "its own ETRN woke it once, and it looked once"
        );
        assert_eq!(
            r.pending_etrn_domains(),
            0,
            "the waker went with its last wait"
        );
        // Already there: answered at once, nothing registered.
        assert!(r.until_etrn("wanted.example", Duration::ZERO).await.is_ok());
        assert_eq!(r.pending_etrn_domains(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn etrn_waits_time_out_and_leave_nothing_behind() {
        let r = Recorder::new();
        let waited = r
            .until_etrn("never.example", Duration::from_millis(20))
            .await;
        assert!(waited.is_err());
        assert_eq!(r.pending_etrn_domains(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reset_empties_the_etrn_index_and_the_closed_count() {
        let r = Recorder::new();
        let id = r.open(peer());
        etrn(&r, id, "a.example");
        r.close(id, CloseReason::Quit);
        assert!(r.has_etrn("a.example"));
        assert!(r.until_closed_sessions(1, Duration::ZERO).await.is_ok());
        r.reset();
        assert!(!r.has_etrn("a.example"));
        assert!(
            r.until_etrn("a.example", Duration::from_millis(10))
                .await
                .is_err()
        );
        assert!(
            r.until_closed_sessions(1, Duration::from_millis(10))
                .await
                .is_err()
        );
        let again = r.open(peer());
        etrn(&r, again, "A.EXAMPLE");
        r.close(again, CloseReason::Quit);
        let rec = r.wait_for_etrn("a.example", Duration::ZERO).await;
        assert_eq!(rec.map(|rec| rec.sessions.len()).ok(), Some(1));
        assert!(r.wait_for_closed_sessions(1, Duration::ZERO).await.is_ok());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_session_wait_is_woken_by_closes_not_by_other_events() {
        let r = Arc::new(Recorder::new());
        let id = r.open(peer());
        let waiting = {
            let r = Arc::clone(&r);
            tokio::spawn(async move { r.until_closed_sessions(1, Duration::from_secs(10)).await })
        };
        tokio::task::yield_now().await;
        etrn(&r, id, "a.example");
        command(&r, id, "NOOP\r\n", 250);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        r.close(id, CloseReason::Quit);
        let done = tokio::time::timeout(Duration::from_secs(10), waiting).await;
        assert!(matches!(done, Ok(Ok(Ok(())))), "{done:?}");
    }

    #[test]
    fn a_forgotten_session_takes_its_etrns_out_of_the_index() {
        let r = Recorder::with_retention(Retention::Open);
        let first = r.open(peer());
        let second = r.open(peer());
        etrn(&r, first, "both.example");
        etrn(&r, first, "first.example");
        etrn(&r, second, "both.example");
        r.close(first, CloseReason::Quit);
        assert!(r.recording().sessions.len() == 1);
        assert!(!r.has_etrn("first.example"), "as the recording: forgotten");
        assert!(r.has_etrn("both.example"), "still in the session held");
        r.close(second, CloseReason::Quit);
        assert!(!r.has_etrn("both.example"));
        assert_eq!(
            r.lock().etrn_domains().len(),
            0,
            "the index is as small as what is held"
        );
        assert_eq!(r.session_count(), 2);
    }

    #[test]
    fn the_domain_index_built_late_answers_as_one_kept_from_the_start() {
        for retention in [Retention::All, Retention::Latest(1), Retention::Open] {
            let r = Recorder::with_retention(retention);
            let (first, second) = (r.open(peer()), r.open(peer()));
            etrn(&r, first, "before.example");
            etrn(&r, first, "both.example");
            etrn(&r, second, "both.example");
            assert!(r.lock().etrn_domains.is_none(), "nothing looked yet");
            assert!(r.has_etrn("before.example") && r.has_etrn("both.example"));
            assert!(!r.has_etrn("after.example"));
            etrn(&r, second, "after.example");
            assert!(r.has_etrn("after.example"), "kept up to date once built");
            r.close(first, CloseReason::Quit);
            // Latest(1) keeps the one closed session there is.
            let held = retention != Retention::Open;
            assert_eq!(r.has_etrn("before.example"), held, "{retention:?}");
            assert!(r.has_etrn("both.example"));
            assert_eq!(r.lock().etrn_domains().len(), if held { 3 } else { 2 });
            r.reset();
            assert!(!r.has_etrn("both.example") && !r.has_etrn("after.example"));
            etrn(&r, second, "again.example");
            assert!(r.has_etrn("again.example"));
            r.close(second, CloseReason::Quit);
            assert_eq!(r.has_etrn("again.example"), held, "{retention:?}");
        }
    }

    #[test]
    fn the_compact_facts_give_back_every_peer_and_close_reason() {
        let v6: SocketAddr = "[fe80::1%7]:2525"
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([0u16; 8], 2525)));
        let reasons = [
            CloseReason::Quit,
            CloseReason::Shutdown,
            CloseReason::PeerClosed,
            CloseReason::TlsFailed("bad certificate".into()),
            CloseReason::Io("connection reset".into()),
        ];
        let r = Recorder::new();
        for (n, reason) in reasons.iter().enumerate() {
            let peer = if n % 2 == 0 { peer() } else { v6 };
            let id = r.open(peer);
            r.close(id, reason.clone());
            let session = r.derive_session(id);
            assert_eq!(
                session.map(|s| (s.peer, s.close, s.ended_us.is_some())),
                Some((peer.to_string(), Some(reason.clone()), true))
            );
        }
        assert!(matches!(Peer::new(v6), Peer::V6(_)));
        assert!(v6.to_string().contains("%7"), "the scope is kept: {v6}");
        assert!(
            std::mem::size_of::<SessionLog>() <= 120,
            "{}",
            std::mem::size_of::<SessionLog>()
        );
    }

    fn busy(r: &Recorder, sessions: u64) {
        for n in 0..sessions {
            let id = r.open(peer());
            r.event(
                id,
                Event::Reply {
                    code: 220,
                    lines: vec![format!("greeting {n}")],
                },
            );
            command(r, id, "EHLO client\r\n", 250);
            etrn(r, id, &format!("d{}.example", n % 7));
            command(r, id, "QUIT\r\n", 221);
            if n % 5 != 0 {
                r.close(id, CloseReason::Quit);
            }
        }
    }

    #[test]
    fn the_json_in_pieces_is_the_recording_s_json() {
        for retention in [Retention::All, Retention::Latest(3), Retention::Open] {
            let r = Arc::new(Recorder::with_retention(retention));
            busy(&r, 300);
            r.refused();
            let pieces: Vec<Vec<u8>> = RecordingJson::new(Arc::clone(&r)).collect();
            assert!(
                pieces.len() > 1 || retention != Retention::All,
                "{}",
                pieces.len()
            );
            assert!(pieces.iter().all(|p| p.len() < 2 * JSON_PIECE));
            let whole: Vec<u8> = pieces.concat();
            let expected = serde_json::to_string(&r.recording()).unwrap_or_default();
            assert_eq!(String::from_utf8_lossy(&whole), expected);
        }
        let empty = Arc::new(Recorder::new());
        let whole: Vec<u8> = RecordingJson::new(Arc::clone(&empty))
            .collect::<Vec<_>>()
            .concat();
        assert_eq!(
            String::from_utf8_lossy(&whole),
            serde_json::to_string(&empty.recording()).unwrap_or_default()
        );
    }

    #[test]
    fn sessions_reset_away_are_left_out_of_the_pieces() {
        let r = Arc::new(Recorder::new());
        busy(&r, 10);
        let pieces = RecordingJson::new(Arc::clone(&r));
        r.reset();
        let whole: Vec<u8> = pieces.collect::<Vec<_>>().concat();
        let v: serde_json::Value = serde_json::from_slice(&whole).unwrap_or_default();
        assert_eq!(
            v["sessions"].as_array().map(Vec::len),
            Some(2),
            "the two open ones"
        );
    }

    #[test]
    fn the_etrns_are_the_recording_s_in_order_of_time() {
        let r = Recorder::new();
        busy(&r, 50);
        let recording = r.recording();
        let mut expected: Vec<(u64, u64, Option<String>)> = recording
            .sessions
            .iter()
            .flat_map(|s| {
                s.etrn
                    .iter()
                    .map(|e| (s.id, e.at_us, e.record.domain().map(str::to_owned)))
            })
            .collect();
        expected.sort_by_key(|e| e.1);
        let got: Vec<_> = r
            .etrns()
            .into_iter()
            .map(|(id, e)| (id, e.at_us, e.record.domain().map(str::to_owned)))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn the_numbers_of_interleaved_and_forgotten_sessions_page_in_order() {
        let r = Recorder::with_retention(Retention::Open);
        let (a, b, c) = (r.open(peer()), r.open(peer()), r.open(peer()));
        // Numbers 1..=9: a a b a c c b b a.
        for (session, domain) in [
            (a, "a1"),
            (a, "a2"),
            (b, "b1"),
            (a, "a3"),
            (c, "c1"),
            (c, "c2"),
            (b, "b2"),
            (b, "b3"),
            (a, "a4"),
        ] {
            etrn(&r, session, &format!("{domain}.example"));
        }
        r.close(c, CloseReason::Quit);
        let held: Vec<(u64, Option<String>)> = r
            .etrns()
            .into_iter()
            .map(|(id, e)| (id, e.record.domain().map(str::to_owned)))
            .collect();
        let expected: Vec<(u64, Option<String>)> = [
            (a, "a1"),
            (a, "a2"),
            (b, "b1"),
            (a, "a3"),
            (b, "b2"),
            (b, "b3"),
            (a, "a4"),
        ]
        .into_iter()
        .map(|(id, d)| (id, Some(format!("{d}.example"))))
        .collect();
        assert_eq!(held, expected, "c's ETRNs (5 and 6) are forgotten");
        assert_eq!(r.etrn_page(0, 3), (3, true));
        assert_eq!(r.etrn_page(3, 2), (7, true), "4, then 7: 5 and 6 went");
        assert_eq!(r.etrn_page(7, 2), (9, false));
        assert_eq!(r.etrn_page(9, 2), (9, false));
        let mut cursor = EtrnCursor::new(2, 8);
        let numbers: Vec<u64> = std::iter::from_fn(|| {
            let batch = cursor.next_batch(&r, 2);
            (!batch.is_empty()).then_some(batch)
        })
        .flatten()
        .map(|(n, _, _)| n)
        .collect();
        assert_eq!(numbers, [3, 4, 7, 8]);
    }

    #[test]
    fn domains_short_and_long_are_counted_until_their_last_etrn_goes() {
        let long = "a-label-longer-than-the-inline-key.example";
        let short = "short.example";
        assert!(long.len() > SHORT_DOMAIN && short.len() < SHORT_DOMAIN);
        let at_the_limit = "x".repeat(SHORT_DOMAIN);
        let past_the_limit = "y".repeat(SHORT_DOMAIN + 1);
        let mut counts = DomainCounts::default();
        for d in [
            long,
            short,
            long,
            at_the_limit.as_str(),
            short,
            past_the_limit.as_str(),
        ] {
            counts.add(d);
        }
        assert_eq!(counts.len(), 4);
        // A prefix of a domain held, inline or not, is another domain.
        for prefix in ["short.exampl", &at_the_limit[1..], &past_the_limit[1..]] {
            assert!(!counts.contains(prefix), "{prefix} was never added");
        }
        assert!(counts.contains(&past_the_limit));
        counts.remove_one(&past_the_limit);
        for d in [long, short] {
            counts.remove_one(d);
            assert!(counts.contains(d), "{d} has one ETRN left");
            counts.remove_one(d);
            assert!(!counts.contains(d), "{d} has none");
        }
        assert!(counts.contains(&at_the_limit));
        counts.remove_one("never.example");
        assert_eq!(counts.len(), 1);
    }

    #[test]
    fn the_session_count_is_what_the_recording_counts() {
        let counted = |r: &Recorder| {
            let rec = r.recording();
            rec.sessions.len() + usize::try_from(rec.forgotten).unwrap_or(usize::MAX)
        };
        for retention in [Retention::All, Retention::Latest(3), Retention::Open] {
            let r = Recorder::with_retention(retention);
            busy(&r, 20);
            assert_eq!(r.session_count(), counted(&r), "{retention:?}");
            r.reset();
            busy(&r, 7);
            r.close_open(CloseReason::Shutdown);
            assert_eq!(r.session_count(), counted(&r), "{retention:?}");
            assert_eq!(r.session_count(), r.closed_count(), "{retention:?}");
        }
    }

    #[test]
    fn the_stream_has_a_line_per_event_in_order() {
        #[derive(Clone, Default)]
        struct Shared(std::sync::Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Shared::default();
        let r = Recorder::with_retention(Retention::Open);
        r.stream_to(Box::new(sink.clone())).unwrap_or_default();
        let id = r.open(peer());
        command(&r, id, "QUIT\r\n", 221);
        r.close(id, CloseReason::Quit);
        r.refused();
        assert_eq!(r.finish_stream(), StreamEnd::default());
        let bytes = sink
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let text = String::from_utf8(bytes).unwrap_or_default();
        let kinds: Vec<String> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
                ["recording", "opened", "event", "closed", "refused"]
                    .iter()
                    .find(|k| !v[**k].is_null())
                    .map(|k| k.to_string())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(
            kinds,
            ["recording", "opened", "event", "event", "closed", "refused"]
        );
    }
}
