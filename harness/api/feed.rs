//! `GET /events`, the live feed: every session event as a server-sent event, written in batches.
//!
//! Each subscriber is a task of its own woken by the recorder's broadcast. Under load it wakes less
//! often than events come, so on each wake it takes every event already waiting (up to
//! [`FEED_BATCH`] octets) and hands hyper one chunk: one write for many events. With an event per
//! chunk (axum's `Sse`) each subscriber cost the SMTP server a write and a frame per event, and 60
//! subscribers cut its session rate to a fifth.

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

/// A comment sent when nothing happened for this long, so that proxies and clients with idle
/// timeouts keep the feed open (the period axum's `KeepAlive` uses).
const FEED_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One subscriber's feed: its place in the broadcast, and the stop signal that ends it.
struct Feed {
    events: broadcast::Receiver<Arc<LiveEvent>>,
    stop: watch::Receiver<bool>,
}

/// The answer to `GET /events`: a `text/event-stream` that ends when the server stops.
pub(super) fn response(
    events: broadcast::Receiver<Arc<LiveEvent>>,
    stop: watch::Receiver<bool>,
) -> Response {
    let feed = Feed { events, stop };
    let body = Body::from_stream(futures_util::stream::unfold(feed, Feed::next_chunk));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

impl Feed {
    /// Waits for the next event (or the keep-alive period, or the stop), then takes every event
    /// already waiting; `None` ends the feed.
    async fn next_chunk(mut self) -> Option<(Result<Bytes, Infallible>, Feed)> {
        let Feed { events, stop } = &mut self;
        let first = tokio::select! {
            biased;
            _ = stop.wait_for(|stopping| *stopping) => return None,
            received = events.recv() => Some(received),
            () = tokio::time::sleep(FEED_KEEP_ALIVE) => None,
        };
        let Some(first) = first else {
            return Some((Ok(Bytes::from_static(b":\n\n")), self));
        };
        let events = &mut self.events;
        let mut chunk = Vec::new();
        match first {
            Ok(event) => push_event(&mut chunk, &event),
            Err(RecvError::Lagged(n)) => push_missed(&mut chunk, n),
            Err(RecvError::Closed) => return None,
        }
        while chunk.len() < FEED_BATCH {
            match events.try_recv() {
                Ok(event) => push_event(&mut chunk, &event),
                Err(TryRecvError::Lagged(n)) => push_missed(&mut chunk, n),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        Some((Ok(Bytes::from(chunk)), self))
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

/// Appends the `missed` event: `n` events this subscriber fell too far behind to be given.
fn push_missed(chunk: &mut Vec<u8>, n: u64) {
    push(chunk, b"missed", format!("{{\"missed\":{n}}}").as_bytes());
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
        push_missed(&mut chunk, 3);
        assert_eq!(
            String::from_utf8(chunk).unwrap(),
            "event: event\ndata: {\"a\":\"x\\ny\"}\n\nevent: missed\ndata: {\"missed\":3}\n\n"
        );
    }
}
