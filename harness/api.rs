//! The live HTTP/JSON API of a running smart host (`serve --api ADDR`), for tests in any
//! language: ask what was received, wait for it, follow it live, start over, change the script.
//!
//! | method and path | what it does |
//! |---|---|
//! | `GET /` | where the SMTP server listens, and these endpoints |
//! | `GET /recording` | the whole recording (the JSON of [`Recording`]) |
//! | `GET /etrn` | every ETRN so far, in order, with its session |
//! | `GET /events` | the live feed: one server-sent event per session event |
//! | `POST /reset` | forget what was recorded ([`Recorder::reset`]) |
//! | `PUT /script` | a new `[smarthost]` script (TOML body) from the next connection on |
//! | `PUT /profile/{name}` | a server profile from the next connection on |
//!
//! `GET /recording` and `GET /etrn` wait when asked: `?wait=DOMAIN` until an ETRN for that domain
//! arrives, `?sessions=N` until N sessions have closed, each for at most `timeout` seconds
//! (default 10, at most 300); a wait that runs out answers 408. The waits are the recorder's own,
//! woken by each event, never polled. Errors are JSON, `{"error": ..., "fix": ...}`.
//!
//! The API has no authentication: it is for tests, on loopback.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tracing::{info, warn};

use crate::smarthost::{
    ConversationSwitch, ProfileName, Recorder, Recording, SmartHostScript, WaitTimeout,
};
use crate::smtp::SessionLimits;

/// The longest wait a request may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(300);
/// The wait when a request asks for one without `timeout`.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);
/// How long a shutdown waits for requests in flight (a live feed ends at once).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What every request handler shares.
#[derive(Clone)]
struct ApiState {
    recorder: Arc<Recorder>,
    switch: ConversationSwitch,
    limits: SessionLimits,
    smtp: SocketAddr,
    /// The profile the current script is based on, for `GET /`.
    profile: Arc<Mutex<String>>,
    /// The one folder (canonical) a script sent here may name a cassette in
    /// (`serve --cassette-dir`); `None`: no file is ever opened for a request.
    cassette_dir: Option<PathBuf>,
    stop: watch::Receiver<bool>,
}

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
    /// `listen`; `limits` are the session limits new scripts run with.
    pub async fn start(
        listen: SocketAddr,
        smtp: SocketAddr,
        recorder: Arc<Recorder>,
        switch: ConversationSwitch,
        limits: SessionLimits,
        profile: &str,
        cassette_dir: Option<PathBuf>,
    ) -> Result<Api, ApiError> {
        let listener = TcpListener::bind(listen).await.map_err(|source| ApiError {
            addr: listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| ApiError {
            addr: listen,
            source,
        })?;
        let (stop, watcher) = watch::channel(false);
        let state = ApiState {
            recorder,
            switch,
            limits,
            smtp,
            profile: Arc::new(Mutex::new(profile.to_owned())),
            cassette_dir,
            stop: watcher.clone(),
        };
        let app = router(state);
        let mut shutdown = watcher;
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = shutdown.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                warn!(error = %e, "the API server stopped");
            }
        });
        info!(%addr, "HTTP API listening");
        Ok(Api { addr, stop, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops: live feeds end at once, other requests get [`SHUTDOWN_GRACE`] to finish.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/recording", get(recording))
        .route("/etrn", get(etrn))
        .route("/events", get(events))
        .route("/reset", post(reset))
        .route("/script", put(put_script))
        .route("/profile/{name}", put(put_profile))
        .with_state(state)
}

/// An error answer: a status, what went wrong and how to fix it.
struct ApiFailure {
    status: StatusCode,
    error: String,
    fix: &'static str,
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.error, "fix": self.fix });
        (self.status, Json(body)).into_response()
    }
}

async fn index(State(s): State<ApiState>) -> Json<serde_json::Value> {
    let profile = s
        .profile
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    Json(serde_json::json!({
        "smtp": s.smtp.to_string(),
        "profile": profile,
        "endpoints": [
            "GET /recording[?wait=DOMAIN|sessions=N][&timeout=SECS]",
            "GET /etrn[?wait=DOMAIN|sessions=N][&timeout=SECS]",
            "GET /events (text/event-stream)",
            "POST /reset",
            "PUT /script (TOML body: a [smarthost] table's contents)",
            "PUT /profile/{name}"
        ]
    }))
}

/// What a reading request may wait for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    /// Wait until an ETRN for this domain has arrived.
    wait: Option<String>,
    /// Wait until this many sessions have closed.
    sessions: Option<usize>,
    /// Seconds to wait at most.
    timeout: Option<f64>,
}

/// The recording, after the wait the query asks for.
async fn waited(s: &ApiState, q: &WaitQuery) -> Result<Recording, ApiFailure> {
    let timeout = match q.timeout {
        None => DEFAULT_WAIT,
        Some(t) if t.is_finite() && t >= 0.0 && t <= MAX_WAIT.as_secs_f64() => {
            Duration::from_secs_f64(t)
        }
        Some(t) => {
            return Err(ApiFailure {
                status: StatusCode::BAD_REQUEST,
                error: format!("timeout={t} is not a number of seconds from 0 to 300"),
                fix: "give timeout in seconds, e.g. timeout=5",
            });
        }
    };
    let timed_out = |e: WaitTimeout| ApiFailure {
        status: StatusCode::REQUEST_TIMEOUT,
        error: e.to_string(),
        fix: "check that the client connected to the smart host, or wait longer (timeout=SECS)",
    };
    match (&q.wait, q.sessions) {
        (Some(_), Some(_)) => Err(ApiFailure {
            status: StatusCode::BAD_REQUEST,
            error: "wait and sessions were both given".into(),
            fix: "wait for one thing per request: wait=DOMAIN or sessions=N",
        }),
        (Some(domain), None) => s
            .recorder
            .wait_for_etrn(domain, timeout)
            .await
            .map_err(timed_out),
        (None, Some(n)) => s
            .recorder
            .wait_for_closed_sessions(n, timeout)
            .await
            .map_err(timed_out),
        (None, None) => Ok(s.recorder.recording()),
    }
}

async fn recording(
    State(s): State<ApiState>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<Recording>, ApiFailure> {
    Ok(Json(waited(&s, &q).await?))
}

async fn etrn(
    State(s): State<ApiState>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<Vec<serde_json::Value>>, ApiFailure> {
    let recording = waited(&s, &q).await?;
    let mut all = Vec::new();
    for session in &recording.sessions {
        for e in &session.etrn {
            let mut v = serde_json::to_value(e).unwrap_or_default();
            v["session"] = session.id.into();
            all.push(v);
        }
    }
    all.sort_by_key(|v| v["at_us"].as_u64());
    Ok(Json(all))
}

/// The live feed: each session event as a server-sent event named `opened`, `event` or `closed`
/// whose data is the JSON line `serve --events jsonl` prints; `missed` when the feed fell behind.
/// It ends when the server stops.
async fn events(
    State(s): State<ApiState>,
) -> Sse<impl tokio_stream::Stream<Item = Result<SseEvent, Infallible>>> {
    // The feed ends when the server stops: the stop signal is merged in as a `None`.
    let stopped = tokio_stream::wrappers::WatchStream::new(s.stop.clone())
        .filter(|stopping| *stopping)
        .map(|_| None);
    let feed = BroadcastStream::new(s.recorder.subscribe())
        .map(|item| {
            let event = match item {
                Ok(live) => {
                    let name = match &live {
                        crate::smarthost::LiveEvent::Opened { .. } => "opened",
                        crate::smarthost::LiveEvent::Event { .. } => "event",
                        crate::smarthost::LiveEvent::Closed { .. } => "closed",
                    };
                    SseEvent::default()
                        .event(name)
                        .data(live.json_line().to_string())
                }
                Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                    SseEvent::default()
                        .event("missed")
                        .data(serde_json::json!({ "missed": n }).to_string())
                }
            };
            Some(Ok(event))
        })
        .merge(stopped)
        .take_while(Option::is_some)
        .filter_map(|item| item);
    Sse::new(feed).keep_alive(KeepAlive::default())
}

async fn reset(State(s): State<ApiState>) -> Json<serde_json::Value> {
    s.recorder.reset();
    info!("recording reset through the API");
    Json(serde_json::json!({ "reset": true }))
}

/// Where a script sent to the API may read its cassette: `asked`, relative to the cassette folder,
/// resolved (links followed) to a path still inside it. Every refusal reads the same, so a request
/// learns nothing of what exists outside the folder. Blocking (it asks the file system).
fn resolve_cassette(
    dir: Option<&std::path::Path>,
    asked: &std::path::Path,
) -> Result<PathBuf, ApiFailure> {
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
    let plain = asked.components().all(|c| {
        matches!(
            c,
            std::path::Component::Normal(_) | std::path::Component::CurDir
        )
    });
    if !plain {
        return Err(refused());
    }
    let resolved = std::fs::canonicalize(dir.join(asked)).map_err(|_| refused())?;
    if resolved.starts_with(dir) {
        Ok(resolved)
    } else {
        Err(refused())
    }
}

/// Puts `script` in place for the next connections. Blocking: a cassette is read here.
fn install(
    s: &ApiState,
    mut script: SmartHostScript,
) -> Result<Json<serde_json::Value>, ApiFailure> {
    if let Some(asked) = &script.cassette {
        script.cassette = Some(resolve_cassette(s.cassette_dir.as_deref(), asked)?);
    }
    if let Some(problem) = script.problems().into_iter().next() {
        return Err(ApiFailure {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: format!("{}: {}", problem.path.join("."), problem.message),
            fix: "correct the script; `etrn-harness check` explains scenario files the same way",
        });
    }
    let factory =
        crate::cassette::conversations_for_script(&script, &s.limits).map_err(|e| ApiFailure {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: e.to_string(),
            fix: "name a shipped profile and a readable cassette",
        })?;
    s.switch.replace(factory);
    let profile = script.profile.to_string();
    *s.profile.lock().unwrap_or_else(PoisonError::into_inner) = profile.clone();
    info!(%profile, "script replaced through the API");
    Ok(Json(
        serde_json::json!({ "profile": profile, "applies_to": "connections from now on" }),
    ))
}

async fn put_script(
    State(s): State<ApiState>,
    body: String,
) -> Result<Json<serde_json::Value>, ApiFailure> {
    let script: SmartHostScript = toml::from_str(&body).map_err(|e| ApiFailure {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        error: e.to_string(),
        fix: "send the contents of a scenario's [smarthost] table as TOML, e.g. profile = \"postfix\"",
    })?;
    // Loading a cassette reads a file: never on a runtime worker.
    tokio::task::spawn_blocking(move || install(&s, script))
        .await
        .unwrap_or_else(|_| {
            Err(ApiFailure {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                error: "installing the script failed".into(),
                fix: "see the server's log",
            })
        })
}

async fn put_profile(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiFailure> {
    let Some(profile) = ProfileName::ALL
        .iter()
        .copied()
        .find(|p| p.as_str() == name)
    else {
        return Err(ApiFailure {
            status: StatusCode::NOT_FOUND,
            error: format!("no profile {name:?}"),
            fix: "use rfc1985, postfix, exim, sendmail or exchange-ims",
        });
    };
    install(
        &s,
        SmartHostScript {
            profile,
            ..SmartHostScript::default()
        },
    )
}
