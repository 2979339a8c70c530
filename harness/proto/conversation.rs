//! What the server driver talks to: anything that turns received bytes into outputs.
//!
//! The scripted [`Session`](super::Session) is one; a cassette replay is another. The driver is
//! the same for both: it feeds bytes in, writes the bytes it is given
//! ([`Conversation::poll_transmit`]), carries outputs out, reports closes, and wakes the
//! conversation at the time it asked for.
//!
//! Time is an input, as in quinn-proto: every input that can move a deadline carries the time it
//! happened (`now`), and the conversation computes its deadlines (the idle timeout, scripted
//! reply delays, a greet pause) from those times. The driver's whole part in timing is a loop:
//! feed bytes, poll outputs, sleep until [`Conversation::poll_timeout`], call
//! [`Conversation::handle_timeout`] with the time it woke. A driver on a virtual clock (the
//! prediction, the tests) advances its `now` to the next `poll_timeout` instead of sleeping.

use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use super::recordable::Recordable;
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

/// A sans-IO server conversation.
///
/// `Any` (so `'static`: a conversation owns what it holds), so a driver can run the scripted
/// [`Session`](super::Session) as itself rather than through the trait object (the smart host's
/// does, for speed).
pub trait Conversation: Send + std::any::Any {
    /// Bytes from the client, arrived at `now`.
    fn receive(&mut self, bytes: &[u8], now: Instant);
    /// [`Conversation::receive`] of bytes cut at their first line end (none comes before their
    /// last octet), for a conversation that can skip searching them again.
    fn receive_cut(&mut self, piece: &[u8], now: Instant) {
        self.receive(piece, now);
    }
    /// The next thing for the driver to do, besides writing what
    /// [`Conversation::poll_transmit`] gives.
    fn poll_output(&mut self) -> Option<Output>;
    /// [`Conversation::poll_output`] for a driver that records: a reply quoting the ETRN
    /// argument, or an ETRN, may come as its parts, for the recorder to pack without making its
    /// event (see [`Recordable`]). What it stands for is what `poll_output` would have given.
    fn poll_recordable(&mut self) -> Option<Recordable> {
        self.poll_output().map(Recordable::Output)
    }
    /// Moves the bytes due to the client onto the end of `out`, in order. Every byte due
    /// before an [`Output::StartTls`] or an [`Output::Close`] is there by the time that output
    /// is polled, and none after it: a conversation has nothing more to send in plaintext once
    /// it asked for the handshake (until [`Conversation::tls_established`]), nor anything once
    /// it asked to close, so a driver writes all it took before acting on either.
    fn poll_transmit(&mut self, out: &mut Vec<u8>);
    /// The TLS handshake asked for by [`Output::StartTls`] finished at `now`.
    fn tls_established(&mut self, now: Instant);
    /// The client closed its side.
    fn peer_closed(&mut self);
    /// When the conversation next wants [`Conversation::handle_timeout`] (its next deadline),
    /// if ever.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The time is `now` (at or after what [`Conversation::poll_timeout`] said): whatever was
    /// due by then happens (a delayed reply released, the idle timeout's 421).
    fn handle_timeout(&mut self, now: Instant);
    /// Whether outputs are held back until [`Conversation::poll_timeout`] (a scripted reply
    /// delay): the client is waiting for the server, so a driver need not read meanwhile.
    fn holds_output(&self) -> bool {
        false
    }
    /// `lines`, not yet received, one after another, as this conversation would record them:
    /// the form a driver records lines in itself (unawaited, after a 421), so credentials take
    /// one path.
    fn recorded_forms(&self, lines: &[&[u8]]) -> Vec<Vec<u8>> {
        crate::wire::redact::AuthResponses::default().forms(lines)
    }
    /// One line of [`Conversation::recorded_forms`], borrowed when it is recorded as it came.
    fn recorded_form<'a>(&self, line: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        std::borrow::Cow::Owned(self.recorded_forms(&[line]).pop().unwrap_or_default())
    }
}

impl Conversation for super::Session {
    fn receive(&mut self, bytes: &[u8], now: Instant) {
        super::Session::receive(self, bytes, now)
    }
    fn receive_cut(&mut self, piece: &[u8], now: Instant) {
        super::Session::receive_cut(self, piece, now)
    }
    fn poll_output(&mut self) -> Option<Output> {
        super::Session::poll_output(self)
    }
    fn poll_recordable(&mut self) -> Option<Recordable> {
        super::Session::poll_recordable(self)
    }
    fn poll_transmit(&mut self, out: &mut Vec<u8>) {
        super::Session::poll_transmit(self, out)
    }
    fn tls_established(&mut self, now: Instant) {
        super::Session::tls_established(self, now)
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
    fn holds_output(&self) -> bool {
        super::Session::holds_output(self)
    }
    fn recorded_forms(&self, lines: &[&[u8]]) -> Vec<Vec<u8>> {
        super::Session::recorded_forms(self, lines)
    }
    fn recorded_form<'a>(&self, line: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        super::Session::recorded_form(self, line)
    }
}

/// Moves the bytes a conversation has for its client (`transmit`) onto the end of the driver's
/// `out`, for [`Conversation::poll_transmit`].
pub(crate) fn hand_over(transmit: &mut Vec<u8>, out: &mut Vec<u8>) {
    if out.is_empty() {
        // The usual case, the driver's buffer written out: the two swap, so neither copies and
        // both keep the room they grew.
        std::mem::swap(out, transmit);
    } else {
        out.append(transmit);
    }
}
