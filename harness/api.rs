//! The live HTTP/JSON API of a running smart host (`serve --api ADDR`), for tests in any
//! language: ask what was received, wait for it, follow it live, start over, change the script.
//!
//! | method and path | what it does |
//! |---|---|
//! | `GET /` | where the SMTP server listens, and these endpoints |
//! | `GET /recording` | the recording of the sessions held (the JSON of [`Recording`](crate::proto::Recording)) |
//! | `GET /etrn` | every ETRN of the sessions held, in order, with its session |
//! | `GET /events` | the live feed: one server-sent event per session event |
//! | `POST /reset` | forget what was recorded ([`Recorder::reset`]) |
//! | `GET /script` | the script new connections get, as JSON |
//! | `PUT /script` | a new `[smarthost]` script (a TOML or JSON body) from the next connection on |
//! | `PUT /profile/{name}` | a server profile from the next connection on |
//! | `GET /openapi.json` | this API in OpenAPI 3.1, built from the same table as the routes (see `openapi.rs`) |
//!
//! `GET /recording` and `GET /etrn` wait when asked: `?wait=DOMAIN` until an ETRN for that domain
//! arrives, `?sessions=N` until N sessions have closed, each for at most `timeout` seconds
//! (default 10, at most 300); a wait that runs out answers 408. The waits are the recorder's own,
//! never polled, woken only by an ETRN for their domain or by a session closing: a pending wait
//! costs the SMTP server O(1) per event however many are pending. Their answers are written a
//! piece at a time ([`RecordingJson`]): never the whole document in memory, sent whole with its
//! length when it fits in one piece of 64 KiB, streamed (chunked) when longer.
//!
//! Both are paged when asked: `?after=ID` (a session id for `/recording`, an ETRN number for
//! `/etrn`) and `&limit=N` (at most [`MAX_PAGE`], [`DEFAULT_PAGE`] by default); the answer says
//! where to continue in a `Next-After` header and, when more are held, a `Link` with `rel="next"`.
//!
//! # A local service, hardened
//!
//! The API has no authentication: it is for tests, on loopback, and it holds itself to that.
//!
//! * **Host.** Every request must name this machine: `localhost`, an address in `127.0.0.0/8`,
//!   `[::1]` (any port), or the address the API is bound to or the connection arrived on. Any
//!   other `Host` is `403` (a page on another site cannot reach the API by DNS rebinding); none at
//!   all is `400`.
//! * **No cross-origin writes.** A `POST`, `PUT` or `DELETE` with an `Origin` that is not such a
//!   loopback origin is `403`. Its `Content-Type` must be `application/toml`, `text/toml` or
//!   `application/json` (`415` otherwise), or absent with no
//!   body. A browser sends those types cross-origin only after a CORS preflight, which the API
//!   never grants, and a request without a type only with its `Origin`: no page on another site
//!   can change the server's state.
//! * **Bounded.** At most [`MAX_CONNECTIONS`] connections at once (more are answered `503` and
//!   closed at once); a connection must send a complete request head within
//!   [`HEADER_READ_TIMEOUT`] of opening or of its previous answer, or it is closed; a head is at
//!   most [`MAX_HEAD`] bytes (`431`), checked before hyper reads it so that a bad one gets a JSON
//!   answer too (see `head.rs`); a body is at most [`MAX_BODY`] bytes (`413`), read within
//!   [`BODY_READ_TIMEOUT`] (`408`); a write that makes no progress for [`WRITE_TIMEOUT`] (or
//!   [`ApiOptions::write_timeout`]) closes the connection.
//! * **Errors** are JSON, `{"error": ..., "fix": ...}`, 404, 405 and a query that does not parse
//!   included; an error quotes at most [`MAX_ERROR_CHARS`] characters, never a whole request line.
//! * **Shutdown.** Live feeds end at once; a pending wait is answered `503` ("the server is
//!   stopping"); other requests get [`SHUTDOWN_GRACE`].
//!
//! Binding beyond loopback is allowed (for a test network) but warned of.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio_stream::StreamExt;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::files::{Folder, ReadFileError};
use crate::proto::recording::RecordedEtrn;
use crate::proto::{Conversations, SessionLimits};
use crate::proto::{ProfileName, SmartHostScript};
use crate::smarthost::{
    ConversationSwitch, EtrnCursor, LiveLine, Recorder, RecordingJson, WaitTimeout,
};

pub(crate) mod feed;
mod head;
mod openapi;
mod routes;

pub use head::MAX_HEAD;
pub use routes::{OPENAPI_PATH, openapi_document};

/// The longest wait a request may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// The wait when a request asks for one without `timeout`.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// How long a shutdown waits for requests in flight (a live feed ends at once, a pending wait is
/// answered `503` at once).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The most API connections open at once; a connection beyond is answered `503` and closed, so
/// idle API clients cannot take the descriptors the SMTP server needs.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a connection may take to send a complete request head, from its opening or from its
/// previous answer (so it is also the idle keep-alive timeout); then it is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request body (`PUT /script`); beyond, `413`.
pub const MAX_BODY: usize = 64 * 1024;
/// How long a request body may take to arrive once its head has; then `408`.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The most characters of an error message; what a request sent is quoted within it.
pub const MAX_ERROR_CHARS: usize = 200;
/// The largest buffer a connection reads into, request head included (hyper's floor is 8 KiB).
const MAX_READ_BUFFER: usize = MAX_HEAD;
/// How long a write to a client may make no progress (a client that does not read its answer)
/// before the connection is closed, by default (`serve --api-write-timeout`).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the API is given beyond where it listens.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// The one folder a script sent to the API may name a cassette in (`serve --cassette-dir`),
    /// held open; `None`: no file is ever opened for a request.
    pub cassette_dir: Option<Arc<Folder>>,
    /// How long a write may make no progress before its connection is closed.
    pub write_timeout: Duration,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            cassette_dir: None,
            write_timeout: WRITE_TIMEOUT,
        }
    }
}

/// The answer to a connection beyond [`MAX_CONNECTIONS`], written without waiting.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
connection: close\r\ncontent-length: 100\r\n\r\n\
{\"error\":\"too many API connections at once\",\
\"fix\":\"close idle connections to the API and try again\"}";

/// What every request handler shares.
#[derive(Clone)]
struct ApiState {
    recorder: Arc<Recorder>,
    switch: ConversationSwitch,
    limits: SessionLimits,
    smtp: SocketAddr,
    /// Where the API listens: a `Host` naming this address is this server.
    bound: SocketAddr,
    /// The script new connections get (as it was sent: a cassette by the name it was asked
    /// by), for `GET /script` and `GET /`.
    script: Arc<Mutex<SmartHostScript>>,
    /// The one folder a script sent here may name a cassette in (`serve --cassette-dir`);
    /// `None`: no file is ever opened for a request.
    cassette_dir: Option<Arc<Folder>>,
    /// The live feed's shared log of framed events (`GET /events`).
    feed: Arc<feed::FeedLog>,
    stop: watch::Receiver<bool>,
}

/// The local address a request's connection arrived on (a request extension).
#[derive(Clone, Copy)]
struct ArrivedOn(SocketAddr);

/// A running API server.
pub struct Api {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Starting the API failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for the API on {addr}: {source}")]
pub struct ApiError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

impl Api {
    /// Serves the API of the smart host at `smtp` (its recorder and its conversation switch) on
    /// `listen`; `limits` are the session limits new scripts run with. An address beyond loopback
    /// is served, with a warning.
    pub async fn start(
        listen: SocketAddr,
        smtp: SocketAddr,
        recorder: Arc<Recorder>,
        switch: ConversationSwitch,
        limits: SessionLimits,
        script: SmartHostScript,
        options: ApiOptions,
    ) -> Result<Api, ApiError> {
        let listener = crate::smarthost::accept::bind(listen).map_err(|source| ApiError {
            addr: listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| ApiError {
            addr: listen,
            source,
        })?;
        // The command line warns a person; this event is for a library user's log.
        if !addr.ip().is_loopback() {
            info!(
                %addr,
                "the API listens beyond loopback and has no authentication: whoever reaches it \
                 can read the recording and change the script"
            );
        }
        let (stop, watcher) = watch::channel(false);
        let feed_source = Arc::clone(&recorder);
        let state = ApiState {
            recorder,
            switch,
            limits,
            smtp,
            bound: addr,
            script: Arc::new(Mutex::new(script)),
            cassette_dir: options.cassette_dir,
            feed: feed::FeedLog::new(Arc::clone(&feed_source), watcher.clone()),
            stop: watcher.clone(),
        };
        let app = router(state);
        let task = tokio::spawn(accept(listener, app, watcher, options.write_timeout));
        info!(%addr, "HTTP API listening");
        Ok(Api { addr, stop, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops: no new connection is accepted, live feeds end at once, pending waits are answered
    /// `503`, other requests get [`SHUTDOWN_GRACE`] to finish; then every connection is closed.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
            .await
            .is_err()
        {
            // The connections are the accept task's: aborting it drops (and closes) them all.
            task.abort();
        }
    }
}

/// Accepts connections until the stop signal, each served in a task of its own while a permit
/// of [`MAX_CONNECTIONS`] lasts; then waits for the connections to finish.
async fn accept(
    listener: TcpListener,
    app: Router,
    mut stop: watch::Receiver<bool>,
    write_timeout: Duration,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    let mut saturated = false;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopping| *stopping) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, for one: pause rather than spin, and try again.
                warn!(error = %e, "the API could not accept a connection");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    _ = stop.wait_for(|stopping| *stopping) => break,
                }
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            if !saturated {
                warn!(
                    max = MAX_CONNECTIONS,
                    "the API has as many connections as it takes: more are answered 503 until \
                     some close"
                );
                saturated = true;
            }
            debug!(peer = ?stream.peer_addr().ok(), "API connection refused: too many at once");
            // Written only if the socket takes it at once; dropping the stream closes it.
            let _ = stream.try_write(BUSY);
            continue;
        };
        saturated = false;
        connections.spawn(connection(
            stream,
            app.clone(),
            stop.clone(),
            permit,
            write_timeout,
        ));
    }
    drop(listener);
    // Each connection saw the stop signal too and is finishing.
    while connections.join_next().await.is_some() {}
}

/// Serves one connection with HTTP/1.1 until it closes, it stays silent for
/// [`HEADER_READ_TIMEOUT`], a write makes no progress for `write_timeout` (a client that does not
/// read its answer), or the server stops (then gracefully: a request in flight is answered).
/// Each request head is checked before hyper reads it ([`head`]), so a bad one gets a JSON answer.
async fn connection(
    stream: TcpStream,
    app: Router,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
    write_timeout: Duration,
) {
    let arrived_on = stream.local_addr().ok().map(ArrivedOn);
    // A write that makes no progress for the deadline fails, and hyper drops the connection.
    let mut timed = tokio_io_timeout::TimeoutStream::new(stream);
    timed.set_write_timeout(Some(write_timeout));
    let (io, refused) = head::CheckedHeads::new(Box::pin(timed));
    let service = hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
        if let Some(local) = arrived_on {
            request.extensions_mut().insert(local);
        }
        let refusal = refused.take(&request);
        let close = refusal.is_some() || head::needs_close(&request);
        let answered = app.clone().oneshot(request.map(Body::new));
        async move {
            let mut response = match refusal {
                Some(bad) => ApiFailure::new(bad.status, bad.error, bad.fix).into_response(),
                None => answered.await?,
            };
            if close {
                response.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_READ_BUFFER);
    let served = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(served);
    let mut stopping = false;
    loop {
        tokio::select! {
            ended = served.as_mut() => {
                if let Err(e) = ended {
                    if timed_out(&e) {
                        info!(
                            deadline = ?write_timeout,
                            "API connection closed: the client did not read its answer within the \
                             write deadline"
                        );
                    } else {
                        debug!(error = %e, "API connection closed");
                    }
                }
                return;
            }
            _ = stop.wait_for(|stopping| *stopping), if !stopping => {
                served.as_mut().graceful_shutdown();
                stopping = true;
            }
        }
    }
}

/// Whether a connection ended because a write made no progress within its deadline.
fn timed_out(e: &hyper::Error) -> bool {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        cause = c.source();
    }
    false
}

fn router(state: ApiState) -> Router {
    routes::endpoints()
        .into_iter()
        .fold(Router::new(), |router, e| router.route(e.path, e.handler))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), admit))
        .with_state(state)
}

/// An error answer: a status, what went wrong and how to fix it.
struct ApiFailure {
    status: StatusCode,
    error: String,
    fix: &'static str,
}

impl ApiFailure {
    fn new(status: StatusCode, error: impl Into<String>, fix: &'static str) -> Self {
        ApiFailure {
            status,
            error: error.into(),
            fix,
        }
    }
}

/// The body of every error the API answers.
#[derive(Serialize, JsonSchema)]
struct ErrorBody {
    /// What went wrong, in at most 200 characters.
    error: String,
    /// How to fix it.
    fix: &'static str,
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: excerpt(&self.error, MAX_ERROR_CHARS),
            fix: self.fix,
        };
        (self.status, Json(body)).into_response()
    }
}

/// At most `max` characters of `text`, marked with `…` when cut.
fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((cut, _)) => {
            let kept = text[..cut].char_indices().nth(max.saturating_sub(1));
            let cut = kept.map_or(cut, |(i, _)| i);
            format!("{}…", &text[..cut])
        }
    }
}

/// A header's value quoted for an error: short, control characters escaped.
fn quoted(value: &[u8]) -> String {
    format!("{:?}", excerpt(&String::from_utf8_lossy(value), 60))
}

/// Whether `host` (a `Host` header or the authority of an origin: a name or address, with or
/// without a port) names this machine: `localhost`, a loopback address, or `bound` or `arrived`
/// (the API's own addresses; an unspecified one matches nothing).
fn is_local_host(host: &str, bound: SocketAddr, arrived: Option<SocketAddr>) -> bool {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((inside, "")) => (inside, None),
            Some((inside, after)) => match after.strip_prefix(':') {
                Some(port) => (inside, Some(port)),
                None => return false,
            },
            None => return false,
        },
        None => match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    if let Some(port) = port
        && port.parse::<u16>().is_err()
    {
        return false;
    }
    if name.eq_ignore_ascii_case("localhost") || name.eq_ignore_ascii_case("localhost.") {
        return true;
    }
    // A bare IPv6 address is only valid in brackets.
    if !host.starts_with('[') && name.contains(':') {
        return false;
    }
    let Ok(ip) = name.parse::<IpAddr>() else {
        return false;
    };
    let ip = ip.to_canonical();
    ip.is_loopback()
        || [Some(bound), arrived]
            .into_iter()
            .flatten()
            .any(|a| !a.ip().is_unspecified() && a.ip().to_canonical() == ip)
}

/// Whether an `Origin` header is a page served from this machine (`http` or `https`).
fn is_local_origin(origin: &str, bound: SocketAddr, arrived: Option<SocketAddr>) -> bool {
    let Some(authority) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    !authority.contains(['/', '@']) && is_local_host(authority, bound, arrived)
}

/// Whether a request may change the server's state.
fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The content types a state-changing request may carry.
const ACCEPTED_TYPES: [&str; 3] = ["application/toml", "text/toml", "application/json"];

/// The media type of a `Content-Type` value, lower case, without its parameters.
fn media_type(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let media = text.split(';').next().unwrap_or_default();
    media.trim().to_ascii_lowercase()
}

/// The checks every request passes before its handler: it names this machine, it comes from no
/// foreign page when it changes anything, its body is of an accepted type and size.
async fn admit(State(s): State<ApiState>, request: Request, next: Next) -> Response {
    let arrived = request.extensions().get::<ArrivedOn>().map(|a| a.0);
    match refusal(
        &s,
        arrived,
        request.method(),
        request.uri(),
        request.headers(),
    ) {
        None => next.run(request).await,
        Some(failure) => {
            info!(
                method = %request.method(),
                path = %excerpt(request.uri().path(), 60),
                status = failure.status.as_u16(),
                error = %excerpt(&failure.error, MAX_ERROR_CHARS),
                "API request refused"
            );
            failure.into_response()
        }
    }
}

/// Why a request is refused before its handler, if it is: a Host not this machine's, an Origin
/// of another site or a body of the wrong type on a change of state, a body too large.
fn refusal(
    s: &ApiState,
    arrived: Option<SocketAddr>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Option<ApiFailure> {
    host_refusal(s, arrived, uri, headers)
        .or_else(|| {
            if changes_state(method) {
                origin_refusal(s, arrived, method, headers)
                    .or_else(|| content_type_refusal(headers))
            } else {
                None
            }
        })
        .or_else(|| size_refusal(headers))
}

/// A request that names no Host, more than one, or one that is not this machine (DNS rebinding).
fn host_refusal(
    s: &ApiState,
    arrived: Option<SocketAddr>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Option<ApiFailure> {
    let hosts: Vec<_> = headers.get_all(header::HOST).iter().collect();
    let from_uri = uri.authority().map(|a| a.as_str().as_bytes());
    let named: Vec<&[u8]> = hosts.iter().map(|h| h.as_bytes()).chain(from_uri).collect();
    if named.is_empty() {
        return Some(ApiFailure::new(
            StatusCode::BAD_REQUEST,
            "the request names no Host",
            "send a Host header, e.g. Host: 127.0.0.1 (HTTP/1.1 clients do)",
        ));
    }
    if hosts.len() > 1 {
        return Some(ApiFailure::new(
            StatusCode::BAD_REQUEST,
            "the request has more than one Host header",
            "send one Host header",
        ));
    }
    for host in named {
        let local = std::str::from_utf8(host).is_ok_and(|h| is_local_host(h, s.bound, arrived));
        if !local {
            return Some(ApiFailure::new(
                StatusCode::FORBIDDEN,
                format!("Host {} is not this machine", quoted(host)),
                "reach the API as http://127.0.0.1:PORT, http://localhost:PORT or by the \
                 address it listens on; other host names are refused (DNS rebinding)",
            ));
        }
    }
    None
}

/// A change of state from a web page of another site.
fn origin_refusal(
    s: &ApiState,
    arrived: Option<SocketAddr>,
    method: &Method,
    headers: &HeaderMap,
) -> Option<ApiFailure> {
    let mut origins = headers.get_all(header::ORIGIN).iter();
    if let Some(origin) = origins.next() {
        let local = origins.next().is_none()
            && origin
                .to_str()
                .is_ok_and(|o| is_local_origin(o, s.bound, arrived));
        if !local {
            return Some(ApiFailure::new(
                StatusCode::FORBIDDEN,
                format!(
                    "a {method} from the page at {} is refused",
                    quoted(origin.as_bytes())
                ),
                "change the API's state from a test or a tool on this machine, not from a web \
                 page on another site",
            ));
        }
    }
    None
}

/// A body of a type the API does not read, or a body without a type.
fn content_type_refusal(headers: &HeaderMap) -> Option<ApiFailure> {
    match headers.get(header::CONTENT_TYPE) {
        Some(value) => {
            let media = media_type(value.as_bytes());
            if !ACCEPTED_TYPES.contains(&media.as_str()) {
                return Some(ApiFailure::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("Content-Type {} is not accepted", quoted(value.as_bytes())),
                    "send Content-Type: application/toml or application/json (a script), \
                     or no body and no Content-Type",
                ));
            }
        }
        None => {
            let empty = headers
                .get(header::CONTENT_LENGTH)
                .is_none_or(|l| l.as_bytes() == b"0")
                && headers.get(header::TRANSFER_ENCODING).is_none();
            if !empty {
                return Some(ApiFailure::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "a body without a Content-Type is not accepted",
                    "send Content-Type: application/toml or application/json with a script",
                ));
            }
        }
    }
    None
}

/// A body larger than the API reads, as its Content-Length declares.
fn size_refusal(headers: &HeaderMap) -> Option<ApiFailure> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|l| l.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Some(too_large());
    }
    None
}

fn too_large() -> ApiFailure {
    ApiFailure::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than {MAX_BODY} bytes"),
        "send a shorter script: a [smarthost] table's contents, a cassette by name",
    )
}

/// The answer to a path no endpoint has.
async fn not_found(method: Method, uri: Uri) -> ApiFailure {
    debug!(%method, path = %excerpt(uri.path(), 60), "API request for no endpoint");
    ApiFailure::new(
        StatusCode::NOT_FOUND,
        format!("no endpoint {method} {}", excerpt(uri.path(), 80)),
        "GET / lists the endpoints",
    )
}

/// The answer to an endpoint asked with a method it does not take.
async fn method_not_allowed(method: Method, uri: Uri) -> ApiFailure {
    debug!(%method, path = %excerpt(uri.path(), 60), "API request with the wrong method");
    ApiFailure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {method}", excerpt(uri.path(), 80)),
        "GET / lists the endpoints with their methods",
    )
}

/// `GET /`: where the SMTP server listens, and what the API offers.
#[derive(Serialize, JsonSchema)]
struct Index {
    /// The address the SMTP server listens on.
    smtp: String,
    /// The profile of the script new connections get.
    profile: ProfileName,
    /// Every endpoint, `METHOD /path: what it does` (the OpenAPI document at `/openapi.json`
    /// says the rest).
    endpoints: Vec<String>,
}

async fn index(State(s): State<ApiState>) -> Json<Index> {
    let profile = s
        .script
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .profile;
    Json(Index {
        smtp: s.smtp.to_string(),
        profile,
        endpoints: routes::listed().to_vec(),
    })
}

/// The parameters of `PUT /profile/{name}`.
#[derive(JsonSchema)]
#[allow(dead_code)] // Only its schema is used: the handler reads the name as text, to answer 404.
struct ProfilePath {
    /// A shipped profile.
    name: ProfileName,
}

/// What a reading request may wait for, and the page it asks for.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    /// Wait until an ETRN for this domain has arrived (compared as domains).
    wait: Option<String>,
    /// Wait until this many sessions have closed.
    // Text, parsed by `waited`, so that a bad value is refused naming it.
    #[schemars(with = "Option<u64>")]
    sessions: Option<String>,
    /// Seconds to wait at most, from 0 to 300; default 10.
    #[schemars(with = "Option<f64>", range(min = 0, max = 300))]
    timeout: Option<String>,
    /// The cursor: the items after this one (a session id for `/recording`, an ETRN number for
    /// `/etrn`).
    // Text, parsed by `Page::of`, so that a bad value is refused naming it.
    #[schemars(with = "Option<u64>")]
    after: Option<String>,
    /// The most items in the answer, from 1 to 1000; 100 when `after` is given alone.
    #[schemars(with = "Option<u64>", range(min = 1, max = 1000))]
    limit: Option<String>,
}

/// The most items (sessions, ETRNs) one page holds.
pub const MAX_PAGE: usize = 1000;
/// The items a page holds when the request gives `after` without `limit`.
pub const DEFAULT_PAGE: usize = 100;

/// The page a reading request asks for: the items after `after`, at most `limit`; `paged` when it
/// gave `after` or `limit` (otherwise the answer is everything, as before paging existed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Page {
    after: u64,
    limit: usize,
    paged: bool,
}

impl Page {
    /// The page `q` asks for, or the `400` naming the parameter that is wrong.
    fn of(q: &WaitQuery) -> Result<Page, ApiFailure> {
        let after = match &q.after {
            None => 0,
            Some(text) => text.parse::<u64>().map_err(|_| {
                ApiFailure::new(
                    StatusCode::BAD_REQUEST,
                    format!("after={} is not a cursor", excerpt(text, 40)),
                    "give after as a whole number from 0: the `Next-After` header of the previous \
                     page (a session id for /recording, an ETRN number for /etrn)",
                )
            })?,
        };
        let limit = match &q.limit {
            None => None,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => Some(n),
                _ => {
                    return Err(ApiFailure::new(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "limit={} is not a number of items from 1 to {MAX_PAGE}",
                            excerpt(text, 40)
                        ),
                        "give limit as a whole number from 1 to 1000, e.g. limit=100",
                    ));
                }
            },
        };
        let paged = q.after.is_some() || limit.is_some();
        Ok(Page {
            after,
            limit: match (paged, limit) {
                (_, Some(n)) => n,
                (true, None) => DEFAULT_PAGE,
                (false, None) => usize::MAX,
            },
            paged,
        })
    }

    /// The headers of a page's answer: `Next-After` (the cursor after the last item in it, or
    /// `after` when it is empty) and, when more items were held, a `Link` to the next page.
    fn headers(&self, path: &str, last: u64, more: bool) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if !self.paged {
            return headers;
        }
        headers.insert(NEXT_AFTER, header::HeaderValue::from(last));
        if more {
            let link = format!("<{path}?after={last}&limit={}>; rel=\"next\"", self.limit);
            if let Ok(value) = header::HeaderValue::try_from(link) {
                headers.insert(header::LINK, value);
            }
        }
        headers
    }
}

/// The header that carries the cursor to continue from.
const NEXT_AFTER: header::HeaderName = header::HeaderName::from_static("next-after");

/// The query of a reading request, or the JSON `400` that says why it does not parse.
fn wait_query(q: Result<Query<WaitQuery>, QueryRejection>) -> Result<WaitQuery, ApiFailure> {
    q.map(|Query(q)| q).map_err(|rejection| {
        debug!(error = %excerpt(&rejection.body_text(), MAX_ERROR_CHARS), "API query refused");
        // axum's own prefix says nothing a user of this API needs ("Failed to deserialize ...").
        let text = rejection.body_text();
        let why = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text);
        ApiFailure::new(
            StatusCode::BAD_REQUEST,
            format!("the query does not parse: {why}"),
            "ask wait=DOMAIN or sessions=N, timeout=SECS in seconds (e.g. timeout=5), \
             after=CURSOR and limit=N; nothing else",
        )
    })
}

/// The query's `timeout=`, or the default.
fn wait_timeout(q: &WaitQuery) -> Result<Duration, ApiFailure> {
    match q.timeout.as_deref().map(|t| (t, t.parse::<f64>())) {
        None => Ok(DEFAULT_WAIT),
        Some((_, Ok(t))) if t.is_finite() && t >= 0.0 && t <= MAX_WAIT.as_secs_f64() => {
            Ok(Duration::from_secs_f64(t))
        }
        Some((text, _)) => Err(ApiFailure::new(
            StatusCode::BAD_REQUEST,
            format!(
                "timeout={} is not a number of seconds from 0 to 300",
                excerpt(text, 40)
            ),
            "give timeout in seconds, e.g. timeout=5",
        )),
    }
}

/// The query's `sessions=`, if given.
fn wait_sessions(q: &WaitQuery) -> Result<Option<usize>, ApiFailure> {
    q.sessions
        .as_deref()
        .map(|text| {
            text.parse::<usize>().map_err(|_| {
                ApiFailure::new(
                    StatusCode::BAD_REQUEST,
                    format!("sessions={} is not a number of sessions", excerpt(text, 40)),
                    "give sessions as a whole number from 0, e.g. sessions=1",
                )
            })
        })
        .transpose()
}

/// The wait the query asks for, if any. A wait still pending when the server stops is answered
/// `503`. The waits read an index or a count, never the recording.
async fn waited(s: &ApiState, q: &WaitQuery) -> Result<(), ApiFailure> {
    let timeout = wait_timeout(q)?;
    let sessions = wait_sessions(q)?;
    if q.wait.as_deref().is_some_and(|d| d.trim().is_empty()) {
        return Err(ApiFailure::new(
            StatusCode::BAD_REQUEST,
            "wait= is empty: no domain to wait for",
            "give the domain whose ETRN to wait for, e.g. wait=example.com, or leave wait out",
        ));
    }
    let timed_out = |e: WaitTimeout| {
        ApiFailure::new(
            StatusCode::REQUEST_TIMEOUT,
            e.to_string(),
            "check that the client connected to the smart host, or wait longer (timeout=SECS)",
        )
    };
    let wait = async {
        match (&q.wait, sessions) {
            (Some(_), Some(_)) => Err(ApiFailure::new(
                StatusCode::BAD_REQUEST,
                "wait and sessions were both given",
                "wait for one thing per request: wait=DOMAIN or sessions=N",
            )),
            (Some(domain), None) => {
                debug!(domain = %excerpt(domain, 60), ?timeout, "an API request waits for an ETRN");
                s.recorder
                    .until_etrn(domain, timeout)
                    .await
                    .map_err(timed_out)
            }
            (None, Some(n)) => {
                debug!(
                    sessions = n,
                    ?timeout,
                    "an API request waits for closed sessions"
                );
                s.recorder
                    .until_closed_sessions(n, timeout)
                    .await
                    .map_err(timed_out)
            }
            (None, None) => Ok(()),
        }
    };
    let mut stop = s.stop.clone();
    tokio::select! {
        biased;
        done = wait => done,
        _ = stop.wait_for(|stopping| *stopping) => {
            debug!("a pending API wait is answered: the server is stopping");
            Err(ApiFailure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is stopping",
                "the smart host stopped before what was waited for arrived; check what stopped it",
            ))
        }
    }
}

async fn recording(
    State(s): State<ApiState>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Response, ApiFailure> {
    let q = wait_query(q)?;
    let page = Page::of(&q)?;
    waited(&s, &q).await?;
    let (json, sessions) = RecordingJson::page(Arc::clone(&s.recorder), page.after, page.limit);
    let headers = page.headers(
        "/recording",
        sessions.last.unwrap_or(page.after),
        sessions.more,
    );
    Ok((headers, json_response(json)).into_response())
}

async fn etrn(
    State(s): State<ApiState>,
    q: Result<Query<WaitQuery>, QueryRejection>,
) -> Result<Response, ApiFailure> {
    let q = wait_query(q)?;
    let page = Page::of(&q)?;
    waited(&s, &q).await?;
    let (last, more) = s.recorder.etrn_page(page.after, page.limit);
    let headers = page.headers("/etrn", last, more);
    Ok((
        headers,
        json_response(etrn_json(Arc::clone(&s.recorder), page.after, last)),
    )
        .into_response())
}

/// An item of `GET /etrn`: an ETRN as the recording has it, with its session.
#[derive(Serialize, JsonSchema)]
struct EtrnOfSession<'a> {
    #[serde(flatten)]
    etrn: &'a RecordedEtrn,
    /// The id of the session it came in.
    session: u64,
}

/// How many bytes of JSON a piece of an answer gathers before it is handed on.
const JSON_PIECE: usize = 64 * 1024;

/// How many ETRNs a piece of `GET /etrn` reads from the recorder at a time.
const ETRN_BATCH: usize = 256;

/// `GET /etrn`'s document in pieces: the ETRNs numbered after `after` and at most `upto` as a JSON
/// array, each with its `session`, read from the recorder a batch at a time as the answer is
/// written (never all of them at once, never the recording).
fn etrn_json(
    recorder: Arc<Recorder>,
    after: u64,
    upto: u64,
) -> impl Iterator<Item = Vec<u8>> + Send + 'static {
    let mut cursor = EtrnCursor::new(after, upto);
    let mut head = Some(b"[".to_vec());
    let mut first = true;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut out = head.take().unwrap_or_default();
        while out.len() < JSON_PIECE {
            let batch = cursor.next_batch(&recorder, ETRN_BATCH);
            if batch.is_empty() {
                out.push(b']');
                done = true;
                return Some(out);
            }
            for (_, session, etrn) in batch {
                // The record's own fields with its session, as one object (keys in serde_json's
                // order).
                let v = serde_json::to_value(EtrnOfSession {
                    etrn: &etrn,
                    session,
                })
                .unwrap_or_default();
                if !first {
                    out.push(b',');
                }
                first = false;
                if let Err(err) = serde_json::to_writer(&mut out, &v) {
                    warn!(session, error = %err, "an ETRN could not be written as JSON");
                }
            }
        }
        Some(out)
    })
}

/// A JSON answer from its pieces: in one body with its length when it fits in one piece (a small
/// recording reads as before), streamed (chunked) piece by piece when not, so an answer never holds
/// the whole document in memory.
fn json_response(pieces: impl Iterator<Item = Vec<u8>> + Send + 'static) -> Response {
    let mut pieces = pieces.peekable();
    let first = pieces.next().unwrap_or_default();
    let body = if pieces.peek().is_none() {
        Body::from(first)
    } else {
        let all = std::iter::once(first).chain(pieces);
        Body::from_stream(tokio_stream::iter(all.map(Ok::<_, Infallible>)))
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The data of an event of the live feed.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Only its schema is used: the feed writes each line as it is built.
enum FeedData<'a> {
    /// `opened`, `event`, `closed`: the line `serve --events jsonl` prints.
    Line(LiveLine<'a>),
    /// `missed`.
    Missed(Missed),
}

/// The data of a `missed` event: the feed fell behind and lost this many events.
#[derive(Serialize, JsonSchema)]
struct Missed {
    missed: u64,
}

/// The live feed: each session event as a server-sent event named `opened`, `event` or `closed`
/// whose data is the JSON line `serve --events jsonl` prints; `missed` when the feed fell behind.
/// It ends when the server stops.
async fn events(State(s): State<ApiState>) -> Response {
    feed::response(s.feed.subscribe())
}

/// The answer to `POST /reset`.
#[derive(Serialize, JsonSchema)]
struct ResetDone {
    /// Always true.
    reset: bool,
}

async fn reset(State(s): State<ApiState>) -> Json<ResetDone> {
    s.recorder.reset();
    info!("recording reset through the API");
    Json(ResetDone { reset: true })
}

/// The cassette a script sent to the API names, read and parsed: `asked`, relative to the
/// cassette folder, opened by the kernel only beneath it ([`Folder::read_beneath`]). Every
/// refusal reads the same, so a request learns nothing of what exists outside the folder; a file
/// inside that is not a regular one (a FIFO) is `422`, unread. Blocking (it reads the file).
fn read_cassette(
    dir: Option<&Folder>,
    asked: &std::path::Path,
) -> Result<crate::proto::cassette::Cassette, ApiFailure> {
    let Some(dir) = dir else {
        return Err(ApiFailure {
            status: StatusCode::FORBIDDEN,
            error: "this server opens no cassette named through the API".into(),
            fix: "start serve with --cassette-dir DIR and name a cassette relative to DIR",
        });
    };
    let refused = || ApiFailure {
        status: StatusCode::FORBIDDEN,
        error: format!("no cassette {} in the cassette folder", asked.display()),
        fix: "name a regular file inside serve's --cassette-dir, relative to it, without `..`",
    };
    // The kernel refuses `..` above the folder; this refuses it anywhere, for one plain rule.
    let plain = asked.components().all(|c| {
        matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    });
    if !plain {
        return Err(refused());
    }
    let unusable = |message: String| ApiFailure {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        error: format!("cassette {}: {message}", asked.display()),
        fix: "name a shipped profile and a readable cassette",
    };
    let bytes = match dir.read_beneath(asked, crate::proto::cassette::MAX_CASSETTE_FILE) {
        Ok(bytes) => bytes,
        Err(ReadFileError::Open { source, .. }) => {
            debug!(error = %source, "a cassette named through the API was refused");
            return Err(refused());
        }
        Err(e) => return Err(unusable(e.reason())),
    };
    crate::proto::cassette::parse_cassette(&bytes, asked).map_err(|e| unusable(e.reason()))
}

/// Puts `script` in place for the next connections. Blocking: a cassette is read here.
fn install(s: &ApiState, script: SmartHostScript) -> Result<Json<ScriptInstalled>, ApiFailure> {
    let cassette = match &script.cassette {
        Some(asked) => Some(read_cassette(s.cassette_dir.as_deref(), asked)?),
        None => None,
    };
    if let Some(problem) = script.problems().into_iter().next() {
        return Err(ApiFailure {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: format!("{}: {}", problem.path.join("."), problem.message),
            fix: "correct the script; `etrn-harness check` explains scenario files the same way",
        });
    }
    let conversations = match cassette {
        Some(cassette) => Conversations::replay_for_script(&script, cassette, &s.limits),
        None => Conversations::scripted(&script, None, &s.limits).map_err(|e| ApiFailure {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: e.to_string(),
            fix: "name a shipped profile and a readable cassette",
        })?,
    };
    s.switch.replace(conversations).map_err(|e| {
        warn!(error = %e, "no certificate for the new script's STARTTLS");
        ApiFailure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "cannot make a certificate for this script's STARTTLS".into(),
            fix: "see the smart host's log",
        }
    })?;
    let profile = script.profile;
    *s.script.lock().unwrap_or_else(PoisonError::into_inner) = script;
    info!(%profile, "script replaced through the API");
    Ok(Json(ScriptInstalled {
        profile,
        applies_to: "connections from now on",
    }))
}

/// The answer to a script put in place.
#[derive(Serialize, JsonSchema)]
struct ScriptInstalled {
    /// The profile of the new script.
    profile: ProfileName,
    /// Which sessions get it: always "connections from now on".
    applies_to: &'static str,
}

/// A request body: at most [`MAX_BODY`] bytes (`413` beyond), within [`BODY_READ_TIMEOUT`].
async fn read_body(body: Body) -> Result<Vec<u8>, ApiFailure> {
    let mut data = body.into_data_stream();
    let mut read = Vec::new();
    let all = async {
        while let Some(chunk) = data.next().await {
            let chunk = chunk.map_err(|e| {
                ApiFailure::new(
                    StatusCode::BAD_REQUEST,
                    format!("the body could not be read: {e}"),
                    "send the whole body, as its Content-Length says",
                )
            })?;
            if read.len() + chunk.len() > MAX_BODY {
                return Err(too_large());
            }
            read.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(BODY_READ_TIMEOUT, all).await {
        Ok(Ok(())) => Ok(read),
        Ok(Err(failure)) => Err(failure),
        Err(_) => Err(ApiFailure::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {}s",
                BODY_READ_TIMEOUT.as_secs()
            ),
            "send the body with the request",
        )),
    }
}

/// Where in `text` the byte offset `at` is, as `line L, column C` (both from 1).
fn line_and_column(text: &str, at: usize) -> String {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}")
}

/// The script new connections get, as JSON: what `PUT /script` takes.
async fn get_script(State(s): State<ApiState>) -> Json<SmartHostScript> {
    Json(
        s.script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone(),
    )
}

/// The body of `PUT /script` as a script: JSON when its `Content-Type` says so, TOML otherwise.
/// An error carries the parser's message placed by line and column, never the offending line.
fn parse_script(json: bool, text: &str) -> Result<SmartHostScript, ApiFailure> {
    if json {
        return serde_json::from_str(text).map_err(|e| {
            // serde_json ends its message with the place; it is put first, as for TOML.
            let message = e.to_string();
            let place = format!(" at line {} column {}", e.line(), e.column());
            let message = message.strip_suffix(&place).unwrap_or(&message);
            ApiFailure::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("line {}, column {}: {message}", e.line(), e.column()),
                "send a [smarthost] table's contents as a JSON object, e.g. {\"profile\": \"postfix\"}",
            )
        });
    }
    toml::from_str(text).map_err(|e| {
        let place = e
            .span()
            .map(|span| format!("{}: ", line_and_column(text, span.start)))
            .unwrap_or_default();
        ApiFailure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{place}{}", e.message().trim_end()),
            "send the contents of a scenario's [smarthost] table as TOML, e.g. profile = \"postfix\"",
        )
    })
}

async fn put_script(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ScriptInstalled>, ApiFailure> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| media_type(t.as_bytes()) == "application/json");
    let body = read_body(body).await?;
    let text = String::from_utf8(body).map_err(|e| {
        ApiFailure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "byte {} of the body is not UTF-8",
                e.utf8_error().valid_up_to()
            ),
            "send the script as UTF-8 TOML or JSON",
        )
    })?;
    let script = parse_script(json, &text)?;
    install_off_the_workers(s, script).await
}

/// Puts `script` in place off the runtime's workers: loading a cassette reads a file, and a
/// script that offers STARTTLS on a server without a certificate has one made.
async fn install_off_the_workers(
    s: ApiState,
    script: SmartHostScript,
) -> Result<Json<ScriptInstalled>, ApiFailure> {
    tokio::task::spawn_blocking(move || install(&s, script))
        .await
        .unwrap_or_else(|_| {
            Err(ApiFailure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "installing the script failed",
                "see the server's log",
            ))
        })
}

/// The fix for a profile name that is not one: every shipped profile, from [`ProfileName::ALL`] so
/// that the list cannot drift from the profiles.
fn profile_fix() -> &'static str {
    static FIX: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let names: Vec<&str> = ProfileName::ALL.iter().map(|p| p.as_str()).collect();
        format!("use one of {}", names.join(", "))
    });
    FIX.as_str()
}

async fn put_profile(
    State(s): State<ApiState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<ScriptInstalled>, ApiFailure> {
    let Ok(Path(name)) = name else {
        return Err(ApiFailure::new(
            StatusCode::BAD_REQUEST,
            "the profile name is not valid UTF-8",
            profile_fix(),
        ));
    };
    let Some(profile) = ProfileName::ALL
        .iter()
        .copied()
        .find(|p| p.as_str() == name)
    else {
        return Err(ApiFailure {
            status: StatusCode::NOT_FOUND,
            error: format!("no profile {:?}", excerpt(&name, 60)),
            fix: profile_fix(),
        });
    };
    let script = SmartHostScript {
        profile,
        ..SmartHostScript::default()
    };
    install_off_the_workers(s, script).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(addr: &str) -> SocketAddr {
        addr.parse().expect("an address")
    }

    #[test]
    fn loopback_names_and_the_api_s_own_addresses_are_this_machine() {
        let bound = at("127.0.0.1:8025");
        for host in [
            "localhost",
            "LOCALHOST:8025",
            "127.0.0.1",
            "127.0.0.1:8025",
            "127.9.8.7:1",
            "[::1]",
            "[::1]:8025",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(is_local_host(host, bound, None), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8025",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "192.0.2.5:8025",
            "0.0.0.0:8025",
            "::1",
            "[::1",
            "[::1]x",
            "127.0.0.1:port",
            "127.0.0.1:99999",
            "",
        ] {
            assert!(!is_local_host(host, bound, None), "{host}");
        }
        let public = at("192.0.2.5:8025");
        assert!(is_local_host("192.0.2.5:8025", public, None));
        assert!(is_local_host("192.0.2.5", public, None));
        // Bound to every address: the one a connection arrived on is this machine, no other.
        let any = at("0.0.0.0:8025");
        assert!(is_local_host("192.0.2.5:8025", any, Some(public)));
        assert!(!is_local_host("192.0.2.6:8025", any, Some(public)));
        assert!(!is_local_host("0.0.0.0:8025", any, Some(any)));
    }

    #[test]
    fn only_pages_served_from_this_machine_are_local_origins() {
        let bound = at("127.0.0.1:8025");
        for origin in [
            "http://localhost:3000",
            "https://127.0.0.1",
            "http://[::1]:8025",
        ] {
            assert!(is_local_origin(origin, bound, None), "{origin}");
        }
        for origin in [
            "null",
            "http://evil.example",
            "http://localhost.evil.example",
            "file://",
            "http://127.0.0.1/path",
            "http://user@127.0.0.1",
            "ftp://127.0.0.1",
        ] {
            assert!(!is_local_origin(origin, bound, None), "{origin}");
        }
    }

    #[test]
    fn excerpts_are_bounded_in_characters() {
        assert_eq!(excerpt("short", 200), "short");
        let long = "é".repeat(1000);
        let cut = excerpt(&long, MAX_ERROR_CHARS);
        assert_eq!(cut.chars().count(), MAX_ERROR_CHARS);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn the_busy_answer_declares_its_length() {
        let text = std::str::from_utf8(BUSY).expect("ASCII");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert!(json["error"].is_string() && json["fix"].is_string());
    }

    /// A recorder with `n` closed sessions, each greeted and with an ETRN.
    fn recorded(n: u64) -> Arc<Recorder> {
        let r = Arc::new(Recorder::new());
        for i in 0..n {
            let id = r.open(at("127.0.0.1:40000"));
            r.event(
                id,
                crate::proto::Event::Reply {
                    code: 220,
                    lines: vec![format!("hello {i} ").repeat(20)],
                },
            );
            r.event(
                id,
                crate::proto::Event::Etrn(Box::new(crate::proto::etrn::rebuild_etrn_record(
                    format!("d{}.example", i % 3).as_bytes(),
                    Some(250),
                    Vec::new(),
                ))),
            );
            r.close(id, crate::proto::CloseReason::Quit);
        }
        r
    }

    /// What `GET /etrn` answered before it was streamed: the recording's ETRNs, sorted by time.
    fn etrn_as_before(recording: &crate::proto::Recording) -> String {
        let mut all = Vec::new();
        for session in &recording.sessions {
            for e in &session.etrn {
                let mut v = serde_json::to_value(e).unwrap_or_default();
                v["session"] = session.id.into();
                all.push(v);
            }
        }
        all.sort_by_key(|v| v["at_us"].as_u64());
        serde_json::to_string(&all).unwrap_or_default()
    }

    async fn body_of(response: Response) -> (Option<String>, String) {
        // What hyper writes as the Content-Length: the body's exact size, when it has one.
        let length = axum::body::HttpBody::size_hint(response.body())
            .exact()
            .map(|n| n.to_string());
        assert_eq!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|t| t.as_bytes()),
            Some(&b"application/json"[..])
        );
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        (length, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn the_answers_are_the_documents_streamed_or_whole() {
        for sessions in [0, 3, 400] {
            let r = recorded(sessions);
            let recording = r.recording();
            let (length, body) = body_of(json_response(RecordingJson::new(Arc::clone(&r)))).await;
            assert_eq!(body, serde_json::to_string(&recording).unwrap_or_default());
            // A small document keeps its length; a large one is streamed, so it has none.
            assert_eq!(length.is_some(), sessions < 400, "{sessions} sessions");
            let (_, body) = body_of(json_response(etrn_json(Arc::clone(&r), 0, u64::MAX))).await;
            assert_eq!(body, etrn_as_before(&recording), "{sessions} sessions");
        }
    }

    #[test]
    fn the_etrn_pieces_close_the_array_whatever_the_cut() {
        // Enough ETRNs for several pieces: the array still ends once, with `]`.
        let r = recorded(3000);
        let pieces: Vec<Vec<u8>> = etrn_json(Arc::clone(&r), 0, u64::MAX).collect();
        assert!(pieces.len() > 1, "{}", pieces.len());
        let whole = pieces.concat();
        assert_eq!(
            String::from_utf8_lossy(&whole),
            etrn_as_before(&r.recording())
        );
    }

    #[test]
    fn a_page_of_etrns_is_the_slice_of_the_whole_list_across_batches() {
        let r = recorded(3000);
        let whole: serde_json::Value = serde_json::from_slice(
            &etrn_json(Arc::clone(&r), 0, u64::MAX)
                .collect::<Vec<_>>()
                .concat(),
        )
        .unwrap_or_default();
        let (last, more) = r.etrn_page(250, 600);
        assert_eq!((last, more), (850, true));
        let page: serde_json::Value = serde_json::from_slice(
            &etrn_json(Arc::clone(&r), 250, last)
                .collect::<Vec<_>>()
                .concat(),
        )
        .unwrap_or_default();
        assert_eq!(page.as_array().map(Vec::len), Some(600));
        assert_eq!(page[0], whole[250]);
        assert_eq!(page[599], whole[849]);
        assert_eq!(r.etrn_page(2990, 600), (3000, false));
        assert_eq!(r.etrn_page(3000, 600), (3000, false));
    }

    #[test]
    fn one_session_s_many_etrns_are_read_in_order_across_batches() {
        let r = Arc::new(Recorder::new());
        let id = r.open(at("127.0.0.1:40000"));
        for i in 0..1000 {
            r.event(
                id,
                crate::proto::Event::Etrn(Box::new(crate::proto::etrn::rebuild_etrn_record(
                    format!("d{i}.example").as_bytes(),
                    Some(250),
                    Vec::new(),
                ))),
            );
        }
        let all: serde_json::Value = serde_json::from_slice(
            &etrn_json(Arc::clone(&r), 0, u64::MAX)
                .collect::<Vec<_>>()
                .concat(),
        )
        .unwrap_or_default();
        let domains: Vec<String> = (0..1000).map(|i| format!("d{i}.example")).collect();
        let got: Vec<&str> = all
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["domain"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(got, domains);
    }

    #[test]
    fn a_page_is_asked_for_with_after_or_limit_and_bounded() {
        let query = |after: Option<&str>, limit: Option<&str>| WaitQuery {
            wait: None,
            sessions: None,
            timeout: None,
            after: after.map(str::to_owned),
            limit: limit.map(str::to_owned),
        };
        let whole = Page::of(&query(None, None)).ok();
        assert_eq!(
            whole.map(|p| (p.after, p.limit, p.paged)),
            Some((0, usize::MAX, false))
        );
        let after = Page::of(&query(Some("7"), None)).ok();
        assert_eq!(
            after.map(|p| (p.after, p.limit, p.paged)),
            Some((7, DEFAULT_PAGE, true))
        );
        let limited = Page::of(&query(None, Some("1000"))).ok();
        assert_eq!(limited.map(|p| (p.after, p.limit)), Some((0, MAX_PAGE)));
        for (after, limit) in [(Some("x"), None), (None, Some("0")), (None, Some("1001"))] {
            assert!(
                Page::of(&query(after, limit)).is_err(),
                "{after:?} {limit:?}"
            );
        }
    }

    #[test]
    fn line_and_column_count_from_one() {
        assert_eq!(line_and_column("a = 1\nb = x", 10), "line 2, column 5");
        assert_eq!(line_and_column("x", 0), "line 1, column 1");
    }
}
