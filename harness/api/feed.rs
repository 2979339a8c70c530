//! `GET /events`, the live feed: every session event as a server-sent event, framed once and
//! read by every subscriber from one shared log.
//!
//! One task (the pump) takes the recorder's broadcast, frames each event once (`event: NAME`,
//! `data: JSON`) and appends the events that were waiting together as one chunk to a [`FeedLog`]
//! of bounded size. A subscriber ([`Feed`]) keeps only its place in that log: woken when the log
//! grows, it takes every chunk since its place at once (shared bytes, not copies of events) and
//! hands hyper one piece, then pauses ([`FEED_PAUSE`]) before it looks again. So a subscriber's
//! cost is per wake-up, not per event, and its wake-ups are bounded whatever the event rate.
//! Each subscriber reading the recorder's broadcast itself, framing each event and writing it on
//! its own (axum's `Sse`) cost the SMTP server 60% of its session rate with 200 subscribers, and
//! 60 HTTP subscribers cut it to a fifth (`bench api`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::sync::watch;
use tracing::debug;

use crate::smarthost::{LiveEvent, Recorder};

/// The most a subscriber takes at once (at least one chunk): what is waiting beyond it comes
/// next time.
const FEED_BATCH: usize = 64 * 1024;

/// The most events the pump frames into one chunk.
const PUMP_BATCH: usize = 256;

/// How long a subscriber waits after a piece before it looks again: it wakes at most about 200
/// times a second whatever the event rate, and an event waits at most this long to be written
/// (the first after a quiet spell is written at once).
const FEED_PAUSE: Duration = Duration::from_millis(5);

/// A comment sent when nothing happened for this long, so that proxies and clients with idle
/// timeouts keep the feed open (the period axum's `KeepAlive` uses).
const FEED_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The most the log holds; the oldest chunks go first. A subscriber that falls further behind
/// is told how many events it missed (a `missed` event) and goes on from the oldest held.
const FEED_LOG_CAP: usize = 8 * 1024 * 1024;

/// The framed events of the recent past, shared by every subscriber.
pub(crate) struct FeedLog {
    /// Where the events come from; the pump subscribes to it while anyone reads the feed.
    recorder: Arc<Recorder>,
    /// Ends the pump and every feed.
    stop: watch::Receiver<bool>,
    /// Whether a pump runs: one is started by the first subscriber and ends once none is left,
    /// so a server nobody follows live pays nothing for its feed. Subscribing and the pump's
    /// decision to end both hold this lock, so no subscriber is left without a pump.
    pumping: Mutex<bool>,
    chunks: Mutex<Chunks>,
    /// The number of events appended so far: subscribers wait for it to pass their place.
    appended: watch::Sender<u64>,
}

#[derive(Default)]
struct Chunks {
    /// Oldest first; each starts where the one before ends.
    held: VecDeque<Chunk>,
    bytes: usize,
}

/// Events `first..first + events`, framed.
struct Chunk {
    first: u64,
    events: u64,
    framed: Bytes,
}

impl FeedLog {
    /// The live feed of `recorder`'s events, for subscribers until `stop` turns true or its
    /// sender goes.
    pub(crate) fn new(recorder: Arc<Recorder>, stop: watch::Receiver<bool>) -> Arc<FeedLog> {
        Arc::new(FeedLog {
            recorder,
            stop,
            pumping: Mutex::new(false),
            chunks: Mutex::new(Chunks::default()),
            appended: watch::Sender::new(0),
        })
    }

    /// A feed of what is appended from now on (the pump started if none runs; it runs on the
    /// current runtime).
    pub(crate) fn subscribe(self: &Arc<FeedLog>) -> Feed {
        let mut pumping = self.pumping.lock().unwrap_or_else(PoisonError::into_inner);
        let appended = self.appended.subscribe();
        if !*pumping {
            // Subscribed here, not in the task: nothing sent from now on is missed.
            let events = self.recorder.subscribe();
            tokio::spawn(Arc::clone(self).pump(events, self.stop.clone()));
            *pumping = true;
        }
        let next = *appended.borrow();
        Feed {
            log: Arc::clone(self),
            appended,
            next,
            stop: self.stop.clone(),
            busy: false,
            missed: 0,
        }
    }

    async fn pump(
        self: Arc<FeedLog>,
        mut events: broadcast::Receiver<Arc<LiveEvent>>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let first = tokio::select! {
                biased;
                _ = stop.wait_for(|stopping| *stopping) => return,
                received = events.recv() => received,
            };
            let mut waiting = Vec::new();
            let mut received = match first {
                Ok(event) => Ok(event),
                Err(RecvError::Lagged(n)) => Err(n),
                Err(RecvError::Closed) => return,
            };
            loop {
                waiting.push(received);
                if waiting.len() >= PUMP_BATCH {
                    break;
                }
                received = match events.try_recv() {
                    Ok(event) => Ok(event),
                    Err(TryRecvError::Lagged(n)) => Err(n),
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                };
            }
            // Framed only when someone reads the feed. Every event taken was sent before this
            // look, so a subscriber that arrives after it has missed none of them.
            let mut framed = Vec::new();
            if self.appended.receiver_count() > 0 {
                for received in &waiting {
                    match received {
                        Ok(event) => frame_event(&mut framed, event),
                        Err(missed) => frame_missed(&mut framed, *missed),
                    }
                }
            }
            let count = waiting.len() as u64;
            self.append(count, Bytes::from(framed));
            let mut pumping = self.pumping.lock().unwrap_or_else(PoisonError::into_inner);
            if self.appended.receiver_count() == 0 {
                // Nobody reads the feed any more: the next subscriber starts a pump again.
                *pumping = false;
                return;
            }
        }
    }

    fn append(&self, events: u64, framed: Bytes) {
        let first = *self.appended.borrow();
        if !framed.is_empty() {
            let mut chunks = self.chunks.lock().unwrap_or_else(PoisonError::into_inner);
            chunks.bytes += framed.len();
            chunks.held.push_back(Chunk {
                first,
                events,
                framed,
            });
            while chunks.bytes > FEED_LOG_CAP {
                match chunks.held.pop_front() {
                    Some(old) => chunks.bytes -= old.framed.len(),
                    None => break,
                }
            }
        }
        self.appended.send_replace(first + events);
    }

    /// The framed events from `next` on (at most about [`FEED_BATCH`] octets, at least one
    /// chunk), where they end, and how many before them are no longer held.
    fn read_from(&self, next: u64) -> (Vec<Bytes>, u64, u64) {
        let chunks = self.chunks.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest = chunks.held.front().map_or(next, |c| c.first);
        let missed = oldest.saturating_sub(next);
        let mut at = next.max(oldest);
        let start = chunks.held.partition_point(|c| c.first < at);
        let mut taken = Vec::new();
        let mut bytes = 0;
        for chunk in chunks.held.iter().skip(start) {
            if bytes >= FEED_BATCH {
                break;
            }
            bytes += chunk.framed.len();
            taken.push(chunk.framed.clone());
            at = chunk.first + chunk.events;
        }
        (taken, at, missed)
    }
}

/// One subscriber's feed: its place in the log, and the stop signal that ends it.
pub(crate) struct Feed {
    log: Arc<FeedLog>,
    appended: watch::Receiver<u64>,
    /// The number of the next event this subscriber has not been given.
    next: u64,
    stop: watch::Receiver<bool>,
    /// A piece was just given: pause before the next.
    busy: bool,
    /// Events this subscriber fell too far behind to be given.
    missed: u64,
}

/// The answer to `GET /events`: a `text/event-stream` that ends when the server stops.
pub(super) fn response(feed: Feed) -> Response {
    // Each chunk of the log goes to hyper as it is held (shared, not copied), the chunks of one
    // wake-up one after the other.
    let pieces = futures_util::stream::unfold(
        (feed, VecDeque::new()),
        |(mut feed, mut ready): (Feed, VecDeque<Bytes>)| async move {
            if ready.is_empty() {
                ready.extend(feed.next_pieces().await?);
            }
            let piece = ready.pop_front()?;
            Some((Ok::<_, Infallible>(piece), (feed, ready)))
        },
    );
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(pieces),
    )
        .into_response()
}

impl Feed {
    /// Events this subscriber was told it missed (`missed` events), in all.
    pub(crate) fn missed(&self) -> u64 {
        self.missed
    }

    /// The next pieces of the feed, never empty: every chunk appended since the last pieces (a
    /// keep-alive comment when none came for a while); `None` when the feed ends.
    pub(crate) async fn next_pieces(&mut self) -> Option<Vec<Bytes>> {
        if std::mem::take(&mut self.busy) {
            tokio::select! {
                biased;
                _ = self.stop.wait_for(|stopping| *stopping) => return None,
                () = tokio::time::sleep(FEED_PAUSE) => {}
            }
        }
        loop {
            let next = self.next;
            let grown = tokio::select! {
                biased;
                _ = self.stop.wait_for(|stopping| *stopping) => return None,
                grown = self.appended.wait_for(|appended| *appended > next) => grown.is_ok(),
                () = tokio::time::sleep(FEED_KEEP_ALIVE) => {
                    return Some(vec![Bytes::from_static(b":\n\n")]);
                }
            };
            if !grown {
                // The log is gone: the server stopped.
                return None;
            }
            let (mut taken, at, missed) = self.log.read_from(next);
            // Whatever came, the next pieces wait a moment: under load, events come one at a
            // time faster than wake-ups are worth, and waking for each is what costs.
            self.busy = true;
            self.next = at;
            if missed > 0 {
                debug!(missed, "a live-feed subscriber fell behind");
                self.missed += missed;
                let mut told = Vec::new();
                frame_missed(&mut told, missed);
                taken.insert(0, Bytes::from(told));
            }
            // Events framed while nobody listened are counted, not kept: nothing to send.
            taken.retain(|piece| !piece.is_empty());
            if !taken.is_empty() {
                return Some(taken);
            }
        }
    }
}

/// Appends `event` as a server-sent event named `opened`, `event` or `closed` whose data is the
/// JSON line `serve --events jsonl` prints (one line: compact JSON escapes every newline).
fn frame_event(framed: &mut Vec<u8>, event: &LiveEvent) {
    let name: &[u8] = match event {
        LiveEvent::Opened { .. } => b"opened",
        LiveEvent::Event { .. } => b"event",
        LiveEvent::Closed { .. } => b"closed",
    };
    frame(framed, name, event.json_text().as_bytes());
}

/// Appends the `missed` event: `n` events fell out of the feed before they could be given.
fn frame_missed(framed: &mut Vec<u8>, n: u64) {
    let data = serde_json::to_vec(&super::Missed { missed: n }).unwrap_or_default();
    frame(framed, b"missed", &data);
}

fn frame(framed: &mut Vec<u8>, name: &[u8], data: &[u8]) {
    framed.extend_from_slice(b"event: ");
    framed.extend_from_slice(name);
    framed.extend_from_slice(b"\ndata: ");
    framed.extend_from_slice(data);
    framed.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_one_named_server_sent_event_of_one_data_line() {
        let mut framed = Vec::new();
        frame(&mut framed, b"event", br#"{"a":"x\ny"}"#);
        frame_missed(&mut framed, 3);
        assert_eq!(
            String::from_utf8(framed).unwrap(),
            "event: event\ndata: {\"a\":\"x\\ny\"}\n\nevent: missed\ndata: {\"missed\":3}\n\n"
        );
    }

    #[tokio::test]
    async fn a_subscriber_gets_every_chunk_from_its_place_and_is_told_what_fell_out() {
        let (_stop_tx, stop) = watch::channel(false);
        // A recorder that records nothing: the chunks are appended by hand.
        let log = FeedLog::new(Arc::new(Recorder::new()), stop);
        let mut early = log.subscribe();
        log.append(2, Bytes::from_static(b"AB"));
        let mut late = log.subscribe();
        log.append(1, Bytes::from_static(b"C"));
        assert_eq!(
            early.next_pieces().await.map(|p| p.concat()),
            Some(b"ABC".to_vec())
        );
        assert_eq!(
            late.next_pieces().await.map(|p| p.concat()),
            Some(b"C".to_vec())
        );
        // A subscriber behind the oldest chunk held is told how many events it lost.
        let mut behind = log.subscribe();
        let big = Bytes::from(vec![b'x'; FEED_LOG_CAP]);
        log.append(5, big.clone());
        log.append(1, Bytes::from_static(b"D"));
        assert_eq!(
            log.chunks.lock().unwrap().held.len(),
            1,
            "the cap drops the oldest"
        );
        let piece = behind.next_pieces().await.expect("pieces").concat();
        assert!(piece.starts_with(b"event: missed\ndata: {\"missed\":5}\n\n"));
        assert!(piece.ends_with(b"D"));
        assert_eq!(behind.missed(), 5);
    }
}
