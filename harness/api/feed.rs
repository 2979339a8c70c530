//! `GET /events`, the live feed: every session event as a server-sent event, written in batches.
//!
//! Each subscriber is a task of its own woken by the recorder's broadcast. On each wake it takes
//! every event already waiting (up to [`FEED_BATCH`] octets) and hands hyper one chunk: one write
//! for many events; when it took several it pauses ([`FEED_PAUSE`]) before it looks again, so that
//! under load it wakes a bounded number of times a second rather than once per event. With an
//! event per chunk (axum's `Sse`) each subscriber cost the SMTP server a write and a frame per
//! event, and 60 subscribers cut its session rate to a fifth (`bench api`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::sync::watch;

use crate::smarthost::LiveEvent;

/// The most a feed gathers into one chunk: what is waiting beyond it goes in the next one.
const FEED_BATCH: usize = 64 * 1024;

/// How long a feed that just wrote several events at once waits before it looks again. Under
/// load a subscriber woken for every event would cost the SMTP server a task wake-up per event
/// per subscriber; pausing for a moment when events come faster than one a wake-up bounds that
/// at about 200 wake-ups a second per subscriber, whatever the event rate. An event that comes
/// alone is written at once.
const FEED_PAUSE: Duration = Duration::from_millis(5);

/// A comment sent when nothing happened for this long, so that proxies and clients with idle
/// timeouts keep the feed open (the period axum's `KeepAlive` uses).
const FEED_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One subscriber's feed: its place in the broadcast, and the stop signal that ends it.
pub(crate) struct Feed {
    events: broadcast::Receiver<Arc<LiveEvent>>,
    stop: watch::Receiver<bool>,
    /// The last chunk held several events: pause before the next.
    busy: bool,
    /// Events this subscriber fell too far behind to be given.
    missed: u64,
}

/// The answer to `GET /events`: a `text/event-stream` that ends when the server stops.
pub(super) fn response(
    events: broadcast::Receiver<Arc<LiveEvent>>,
    stop: watch::Receiver<bool>,
) -> Response {
    let chunks = futures_util::stream::unfold(Feed::new(events, stop), |mut feed| async move {
        let chunk = feed.next_chunk().await?;
        Some((Ok::<_, Infallible>(chunk), feed))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(chunks),
    )
        .into_response()
}

impl Feed {
    /// A feed of `events` (subscribed by the caller, so that nothing after that is missed) that
    /// ends when `stop` turns true or its sender goes.
    pub(crate) fn new(
        events: broadcast::Receiver<Arc<LiveEvent>>,
        stop: watch::Receiver<bool>,
    ) -> Feed {
        Feed {
            events,
            stop,
            busy: false,
            missed: 0,
        }
    }

    /// Events this subscriber was told it missed (`missed` events), in all.
    pub(crate) fn missed(&self) -> u64 {
        self.missed
    }

    /// The next chunk of the feed: every event already waiting once one has come (a keep-alive
    /// comment when none came for a while); `None` when the feed ends.
    pub(crate) async fn next_chunk(&mut self) -> Option<Bytes> {
        let Feed { events, stop, .. } = self;
        if std::mem::take(&mut self.busy) {
            tokio::select! {
                biased;
                _ = stop.wait_for(|stopping| *stopping) => return None,
                () = tokio::time::sleep(FEED_PAUSE) => {}
            }
        }
        let first = tokio::select! {
            biased;
            _ = stop.wait_for(|stopping| *stopping) => return None,
            received = events.recv() => Some(received),
            () = tokio::time::sleep(FEED_KEEP_ALIVE) => None,
        };
        let Some(first) = first else {
            return Some(Bytes::from_static(b":\n\n"));
        };
        let mut chunk = Vec::new();
        let mut taken = 1;
        match first {
            Ok(event) => push_event(&mut chunk, &event),
            Err(RecvError::Lagged(n)) => self.push_missed(&mut chunk, n),
            Err(RecvError::Closed) => return None,
        }
        while chunk.len() < FEED_BATCH {
            match self.events.try_recv() {
                Ok(event) => push_event(&mut chunk, &event),
                Err(TryRecvError::Lagged(n)) => self.push_missed(&mut chunk, n),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
            taken += 1;
        }
        self.busy = taken > 1;
        Some(Bytes::from(chunk))
    }

    /// Appends the `missed` event: `n` events this subscriber fell too far behind to be given.
    fn push_missed(&mut self, chunk: &mut Vec<u8>, n: u64) {
        self.missed += n;
        let data = serde_json::to_vec(&super::Missed { missed: n }).unwrap_or_default();
        push(chunk, b"missed", &data);
    }
}

/// Appends `event` as a server-sent event named `opened`, `event` or `closed` whose data is the
/// JSON line `serve --events jsonl` prints (one line: compact JSON escapes every newline).
fn push_event(chunk: &mut Vec<u8>, event: &LiveEvent) {
    let name: &[u8] = match event {
        LiveEvent::Opened { .. } => b"opened",
        LiveEvent::Event { .. } => b"event",
        LiveEvent::Closed { .. } => b"closed",
    };
    push(chunk, name, event.json_text().as_bytes());
}

fn push(chunk: &mut Vec<u8>, name: &[u8], data: &[u8]) {
    chunk.extend_from_slice(b"event: ");
    chunk.extend_from_slice(name);
    chunk.extend_from_slice(b"\ndata: ");
    chunk.extend_from_slice(data);
    chunk.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_one_named_server_sent_event_of_one_data_line() {
        let mut chunk = Vec::new();
        push(&mut chunk, b"event", br#"{"a":"x\ny"}"#);
        push(&mut chunk, b"missed", br#"{"missed":3}"#);
        assert_eq!(
            String::from_utf8(chunk).unwrap(),
            "event: event\ndata: {\"a\":\"x\\ny\"}\n\nevent: missed\ndata: {\"missed\":3}\n\n"
        );
    }
}
