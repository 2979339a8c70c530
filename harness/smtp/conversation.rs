//! What the server driver talks to: anything that turns received bytes into outputs.
//!
//! The scripted [`Session`](super::Session) is one; a cassette replay is another. The driver is
//! the same for both: it feeds bytes in, carries outputs out, and reports timeouts and closes.

use super::session::Output;

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
}
