//! Request heads checked before hyper reads them, so that a request that is not HTTP/1.x or whose
//! head is too long gets the API's JSON error rather than hyper's bare `400` or `431`.
//!
//! hyper answers a head it cannot parse itself, with an empty body, and offers no hook to answer
//! otherwise. So each head is gathered here first (at most [`MAX_HEAD`] bytes) and parsed with
//! `httparse`, the parser hyper uses: a good head is handed on with its body (followed by its
//! `Content-Length`, so the next head is checked too). A bad one is never handed on: hyper is
//! handed a stand-in request instead, marked with a header no client may send ([`MARK`]), and the
//! service answers it with the JSON error ([`RefusedHead::take`]) and closes the connection. So
//! the answer comes from hyper in its turn, after the answers to the requests before it, as any
//! other. A request whose body cannot be followed by its length (`Transfer-Encoding`, `CONNECT`)
//! is passed through as it comes, and its answer closes the connection ([`needs_close`]), so no
//! head after it goes unchecked.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use axum::http::{Method, Request, StatusCode, header};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::debug;

/// The longest request head, request line and headers; beyond it the answer is `431`.
pub const MAX_HEAD: usize = 16 * 1024;
/// The most header lines in a head (hyper's own limit); beyond, `431`.
const MAX_HEADERS: usize = 100;
/// The header that marks the stand-in for a refused head; a client's head carrying it is refused.
pub const MARK: &str = "etrn-harness-refused-head";
/// The stand-in request hyper reads for a refused head.
const STAND_IN: &[u8] =
    b"GET / HTTP/1.1\r\nhost: localhost\r\netrn-harness-refused-head: 1\r\nconnection: close\r\n\r\n";

/// A connection's bytes with every request head checked before it is read on.
pub struct CheckedHeads<S> {
    inner: S,
    state: State,
    /// Bytes read from `inner` and not handed on yet.
    buf: Vec<u8>,
    /// Where a refused head's fault waits for the service.
    refused: RefusedHead,
}

/// What was wrong with a connection's refused head, for the service to answer (shared between the
/// connection's bytes and its service).
#[derive(Clone, Default)]
pub struct RefusedHead(Arc<Mutex<Option<BadHead>>>);

impl RefusedHead {
    /// The fault `request` stands in for, if it is the stand-in for a refused head.
    pub fn take<B>(&self, request: &Request<B>) -> Option<BadHead> {
        if !request.headers().contains_key(MARK) {
            return None;
        }
        let fault = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        // Only the stand-in carries the mark (a client's head with it is refused): never absent.
        Some(fault.unwrap_or(BadHead {
            status: StatusCode::BAD_REQUEST,
            error: "the request could not be read".into(),
            fix: "send an HTTP/1.1 request",
        }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Gathering the next head in `buf`.
    Head,
    /// Handing on `head` bytes of `buf`, then `body` more bytes, from `buf` first.
    Message { head: usize, body: u64 },
    /// The body's end cannot be told from its head: everything is handed on as it comes.
    Through,
    /// A head was refused: the stand-in in `buf` is handed on, then nothing more is read (what
    /// comes is dropped), while hyper answers the stand-in and closes.
    Refused,
}

/// What a head says of the body after it.
enum Framing {
    Length(u64),
    /// `Transfer-Encoding` or `CONNECT`.
    Unknown,
}

/// What is wrong with a head.
#[derive(Debug)]
pub struct BadHead {
    pub status: StatusCode,
    pub error: String,
    pub fix: &'static str,
}

impl<S> CheckedHeads<S> {
    /// The connection `inner`, and where the service finds the fault of a refused head.
    pub fn new(inner: S) -> (Self, RefusedHead) {
        let refused = RefusedHead::default();
        let checked = CheckedHeads {
            inner,
            state: State::Head,
            buf: Vec::new(),
            refused: refused.clone(),
        };
        (checked, refused)
    }

    fn refuse(&mut self, bad: BadHead) {
        debug!(status = bad.status.as_u16(), error = %bad.error, "API request head refused");
        *self
            .refused
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(bad);
        self.buf = STAND_IN.to_vec();
        self.state = State::Refused;
    }

    /// Hands on up to `n` bytes from the front of `buf`.
    fn hand_on(&mut self, out: &mut ReadBuf<'_>, n: usize) -> usize {
        let n = n.min(out.remaining()).min(self.buf.len());
        out.put_slice(&self.buf[..n]);
        self.buf.drain(..n);
        n
    }
}

/// Whether a request's answer must close the connection: its body could not be followed, so the
/// next head on the connection could not be checked.
pub fn needs_close<B>(request: &Request<B>) -> bool {
    request.method() == Method::CONNECT || request.headers().contains_key(header::TRANSFER_ENCODING)
}

/// The head at the start of `buf`: its length and framing, `None` while it is incomplete.
fn check(buf: &[u8]) -> Result<Option<(usize, Framing)>, BadHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(BadHead {
                status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                error: format!("the request has more than {MAX_HEADERS} header lines"),
                fix: "send fewer headers",
            });
        }
        Err(e) => {
            return Err(BadHead {
                status: StatusCode::BAD_REQUEST,
                error: format!("the request is not HTTP/1.1 ({e})"),
                fix: "send an HTTP/1.1 request, e.g. GET / HTTP/1.1 with a Host header",
            });
        }
    };
    if request.method == Some("CONNECT") {
        return Ok(Some((len, Framing::Unknown)));
    }
    let mut length = None;
    for h in request.headers.iter() {
        if h.name.eq_ignore_ascii_case(MARK) {
            return Err(BadHead {
                status: StatusCode::BAD_REQUEST,
                error: format!("the request carries {MARK}, a header only the server sets"),
                fix: "leave that header out",
            });
        }
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Ok(Some((len, Framing::Unknown)));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            match (n, length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => {
                    return Err(BadHead {
                        status: StatusCode::BAD_REQUEST,
                        error: "the request's Content-Length is not one number".into(),
                        fix: "send one Content-Length with the body's size in bytes",
                    });
                }
            }
        }
    }
    Ok(Some((len, Framing::Length(length.unwrap_or(0)))))
}

impl<S: AsyncRead + Unpin> AsyncRead for CheckedHeads<S> {
    /// Long because it is one state machine: an arm per state of the head check, each handing on,
    /// refusing or reading more, so the states are read in one place.
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.state {
                State::Refused if !this.buf.is_empty() => {
                    let n = this.buf.len();
                    this.hand_on(out, n);
                    return Poll::Ready(Ok(()));
                }
                State::Refused => {
                    // Read and dropped, so the connection is still watched (hyper closes it
                    // after answering the stand-in); its end is not passed on, or hyper would
                    // drop the stand-in's answer as for a client gone away.
                    let mut chunk = [0u8; 4096];
                    let mut read = ReadBuf::new(&mut chunk);
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
                    if !read.filled().is_empty() {
                        cx.waker().wake_by_ref();
                    }
                    return Poll::Pending;
                }
                State::Head => match check(&this.buf) {
                    Err(bad) => this.refuse(bad),
                    Ok(Some((head, Framing::Length(body)))) => {
                        this.state = State::Message { head, body };
                    }
                    Ok(Some((_, Framing::Unknown))) => this.state = State::Through,
                    Ok(None) if this.buf.len() > MAX_HEAD => this.refuse(BadHead {
                        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        error: format!("the request head is longer than {MAX_HEAD} bytes"),
                        fix: "send a shorter request: a shorter path, fewer or shorter headers",
                    }),
                    Ok(None) => {
                        // One byte past the cap is enough to know it is past it.
                        let mut chunk = [0u8; 4096];
                        let room = (MAX_HEAD + 1 - this.buf.len()).min(chunk.len());
                        let mut read = ReadBuf::new(&mut chunk[..room]);
                        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
                        if read.filled().is_empty() {
                            // Ended with no head, or in the middle of one: nothing to answer.
                            this.buf = Vec::new();
                            return Poll::Ready(Ok(()));
                        }
                        this.buf.extend_from_slice(read.filled());
                    }
                },
                State::Message { head, body } => {
                    if head > 0 {
                        let n = this.hand_on(out, head);
                        this.state = State::Message {
                            head: head - n,
                            body,
                        };
                        return Poll::Ready(Ok(()));
                    }
                    if body == 0 {
                        this.state = State::Head;
                        continue;
                    }
                    let wanted = usize::try_from(body).unwrap_or(usize::MAX);
                    let n = if this.buf.is_empty() {
                        // Never past the body: what follows it is the next head.
                        let mut chunk = [0u8; 8192];
                        let room = wanted.min(out.remaining()).min(chunk.len());
                        let mut read = ReadBuf::new(&mut chunk[..room]);
                        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
                        out.put_slice(read.filled());
                        read.filled().len()
                    } else {
                        this.hand_on(out, wanted)
                    };
                    this.state = State::Message {
                        head: 0,
                        body: body - n as u64,
                    };
                    return Poll::Ready(Ok(()));
                }
                State::Through => {
                    if this.buf.is_empty() {
                        return Pin::new(&mut this.inner).poll_read(cx, out);
                    }
                    let n = this.buf.len();
                    this.hand_on(out, n);
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CheckedHeads<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// What hyper would read of `sent` through the check (up to the stand-in, after which the
    /// check reads on without handing anything on), and the fault kept for the service.
    async fn through(sent: &[u8]) -> (Vec<u8>, Option<BadHead>) {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client.write_all(sent).await.unwrap_or_default();
        client.shutdown().await.unwrap_or_default();
        let (mut checked, refused) = CheckedHeads::new(server);
        let mut read = Vec::new();
        // Everything sent is there already: a read that would wait is the end of what is handed on.
        loop {
            let mut chunk = [0u8; 1024];
            let mut buf = ReadBuf::new(&mut chunk);
            let polled = std::future::poll_fn(|cx| {
                Poll::Ready(Pin::new(&mut checked).poll_read(cx, &mut buf))
            })
            .await;
            match polled {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                    read.extend_from_slice(buf.filled())
                }
                _ => break,
            }
        }
        let fault = refused
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        (read, fault)
    }

    #[tokio::test]
    async fn good_requests_pass_whole_with_their_bodies() {
        let two = b"PUT /script HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let (read, fault) = through(two).await;
        assert_eq!(read, two);
        assert!(fault.is_none());
        // A body that looks like garbage is a body, not a head.
        let body = b"PUT /s HTTP/1.1\r\nContent-Length: 4\r\n\r\n\x00\x01\x02\x03";
        assert_eq!(through(body).await.0, body);
    }

    #[tokio::test]
    async fn a_bad_head_is_not_handed_on_but_stood_in_for() {
        let good = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        for (bad, status) in [
            (b"\x16\x03\x01garbage\r\n\r\n".to_vec(), 400),
            (b"GET / HTTP/2.0\r\n\r\n".to_vec(), 400),
            (
                b"PUT / HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n".to_vec(),
                400,
            ),
            (
                format!("GET / HTTP/1.1\r\n{MARK}: 1\r\n\r\n").into_bytes(),
                400,
            ),
            (long.into_bytes(), 431),
        ] {
            let (read, fault) = through(&[good.clone(), bad].concat()).await;
            assert_eq!(read, [good.clone(), STAND_IN.to_vec()].concat());
            assert_eq!(fault.map(|f| f.status.as_u16()), Some(status));
        }
    }
}
