//! What the server driver talks to: anything that turns received bytes into outputs.
//!
//! The scripted [`Session`](super::Session) is one; a cassette replay is another. The driver is
//! the same for both: it feeds bytes in, carries outputs out, reports timeouts and closes, and
//! wakes the conversation at the time it asked for.

use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use super::session::Output;

/// What a driver knows about a connection it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The connection's number on this server, from 0.
    pub index: u64,
    /// The client's address.
    pub peer: IpAddr,
    /// The driver's clock at accept: deadlines are computed from it.
    pub now: Instant,
    /// The wall-clock time at accept, for the greeting's date.
    pub wall_clock: SystemTime,
}

impl Accepted {
    /// A connection accepted now from `peer`: for drivers, which own the clock (the session
    /// never reads one).
    pub fn now(index: u64, peer: IpAddr) -> Self {
        Accepted {
            index,
            peer,
            now: Instant::now(),
            wall_clock: SystemTime::now(),
        }
    }
}

/// A sans-IO server conversation.
pub trait Conversation: Send {
    /// Bytes from the client.
    fn receive(&mut self, bytes: &[u8]);
    /// The next thing for the driver to do.
    fn poll_output(&mut self) -> Option<Output>;
    /// The TLS handshake asked for by [`Output::StartTls`] finished.
    fn tls_established(&mut self);
    /// The client was idle too long.
    fn idle_timeout(&mut self);
    /// The client closed its side.
    fn peer_closed(&mut self);
    /// When the conversation next wants [`Conversation::handle_timeout`], if ever.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    /// The time is `now` (at or after what [`Conversation::poll_timeout`] said).
    fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
    }
    /// `lines`, not yet received, one after another, as this conversation would record them:
    /// the form a driver records lines in itself (unawaited, after a 421), so credentials take
    /// one path.
    fn recorded_forms(&self, lines: &[&[u8]]) -> Vec<Vec<u8>> {
        crate::wire::redact::AuthResponses::default().forms(lines)
    }
}

impl Conversation for super::Session {
    fn receive(&mut self, bytes: &[u8]) {
        super::Session::receive(self, bytes)
    }
    fn poll_output(&mut self) -> Option<Output> {
        super::Session::poll_output(self)
    }
    fn tls_established(&mut self) {
        super::Session::tls_established(self)
    }
    fn idle_timeout(&mut self) {
        super::Session::idle_timeout(self)
    }
    fn peer_closed(&mut self) {
        super::Session::peer_closed(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        super::Session::poll_timeout(self)
    }
    fn handle_timeout(&mut self, now: Instant) {
        super::Session::handle_timeout(self, now)
    }
    fn recorded_forms(&self, lines: &[&[u8]]) -> Vec<Vec<u8>> {
        super::Session::recorded_forms(self, lines)
    }
}
