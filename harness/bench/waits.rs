//! What the API's waits and live feeds cost the SMTP server: new sessions with an ETRN each, with
//! nothing held and with many waits pending or many live-feed subscribers, side by side in one
//! run, as ratios.
//!
//! Method: one smart host in this process (full retention, so the recording grows through the
//! run, as a test's does). Each round runs the EHLO/ETRN/QUIT workload once per row: nothing held;
//! N waits for ETRNs of domains that never come (what a test's `GET /etrn?wait=DOMAIN` does while
//! it waits: the recorder's own wait, which the API awaits), each bounded by the run's duration
//! and ended after the workload; M live-feed subscribers (what `GET /events` does: a receiver of
//! the recorder's broadcast that builds each event's JSON line, as the API's feed does, and drops
//! it instead of writing it to a socket); K clients of the real API's `GET /events` over HTTP,
//! reading everything it streams (the API takes at most 64 connections at once, so K stays
//! under that). The rows' order rotates between rounds. A row's rate is
//! its median over the rounds; its ratio is that over the median with nothing held (1.0: free);
//! the spread is the lowest and highest ratio of one round's run to the same round's run with
//! nothing held. Load generator and server share the runtime and the machine, so the ratios are
//! the figures, not the rates. Figures only: nothing is asserted in a test.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::net::SocketAddr;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::compare::BenchError;
use super::load::{self, LoadSpec, Workload};
use crate::api::Api;
use crate::api::feed::FeedLog;
use crate::smarthost::{Recorder, SmartHost, SmartHostConfig};

/// How big the measurement is.
#[derive(Debug, Clone)]
pub struct WaitsSpec {
    /// Sessions per workload run.
    pub sessions: u64,
    /// A row per entry: this many waits pending.
    pub waits: Vec<usize>,
    /// A row with this many live-feed subscribers (0: no such row).
    pub subscribers: usize,
    /// A row with this many HTTP clients of the API's `GET /events` (0: no such row).
    pub feeds: usize,
    /// Rounds of every row.
    pub rounds: u32,
    /// Client tasks at once.
    pub concurrency: usize,
    /// Hard stop for each run, and the deadline of each wait.
    pub max_duration: Duration,
}

/// What a row holds while its workload runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Held {
    Nothing,
    Waits(usize),
    Subscribers(usize),
    Feeds(usize),
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Held::Nothing => write!(f, "nothing held"),
            Held::Waits(n) => write!(f, "{n} waits pending"),
            Held::Subscribers(n) => write!(f, "{n} live-feed subscribers"),
            Held::Feeds(n) => write!(f, "{n} GET /events clients over HTTP"),
        }
    }
}

/// One row's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub held: Held,
    /// Median sessions/s over the rounds.
    pub sessions_per_sec: f64,
    /// The median over the median with nothing held.
    pub ratio: f64,
    /// The lowest and highest ratio of one round's run to that round's run with nothing held.
    pub ratio_min: f64,
    pub ratio_max: f64,
    /// Live events the subscribers missed because they fell behind (the feed's `missed`): a
    /// subscriber that misses events costs less, so this says whether the ratio is a kind one.
    pub missed: u64,
}

/// The figures.
#[derive(Debug, Clone, Serialize)]
pub struct WaitsReport {
    /// Nothing held first, then each row as asked.
    pub rows: Vec<Row>,
    /// Sessions completed over every run.
    pub sessions: u64,
    /// Failed sessions over every run.
    pub errors: u64,
}

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied().unwrap_or(0.0)
}

/// Runs the rounds.
pub async fn waits(spec: &WaitsSpec) -> Result<WaitsReport, BenchError> {
    let config = SmartHostConfig::default();
    let (limits, script) = (config.limits.clone(), config.script.clone());
    let not_ready = |what: &str, e: &dyn std::fmt::Display| BenchError::NotReady {
        what: what.into(),
        detail: e.to_string(),
    };
    let host = SmartHost::start(config)
        .await
        .map_err(|e| not_ready("the smart host", &e))?;
    let recorder = host.shared_recorder();
    let api = if spec.feeds > 0 {
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let api = Api::start(
            listen,
            host.addr(),
            Arc::clone(&recorder),
            host.switch(),
            limits,
            script,
            crate::api::ApiOptions::default(),
        )
        .await
        .map_err(|e| not_ready("the API", &e))?;
        Some(api)
    } else {
        None
    };
    let mut load = LoadSpec::new(host.addr(), Workload::Etrn, spec.sessions);
    load.concurrency = spec.concurrency.max(1);
    load.max_duration = spec.max_duration;
    let held = held_rows(spec);
    // rates[row][round]
    let mut rates = vec![Vec::new(); held.len()];
    let mut missed = vec![0; held.len()];
    let (mut sessions, mut errors) = (0, 0);
    for round in 0..spec.rounds.max(1) {
        // The order rotates, so no row always runs on the longest recording.
        let shift = round as usize % held.len();
        for row in (0..held.len()).map(|i| (i + shift) % held.len()) {
            let api = api.as_ref().map(Api::addr);
            let (report, lost) =
                run_holding(&recorder, api, &load, held[row], spec.max_duration).await?;
            rates[row].push(report.sessions_per_sec());
            missed[row] += lost;
            sessions += report.sessions;
            errors += report.errors;
        }
    }
    if let Some(api) = api {
        api.shutdown().await;
    }
    host.stop().await;
    let rows = report_rows(&held, &rates, missed);
    Ok(WaitsReport {
        rows,
        sessions,
        errors,
    })
}

/// What each row holds while the load runs: nothing first, then each count of waits, the
/// subscribers, the feeds.
fn held_rows(spec: &WaitsSpec) -> Vec<Held> {
    let mut held = vec![Held::Nothing];
    held.extend(spec.waits.iter().map(|n| Held::Waits(*n)));
    if spec.subscribers > 0 {
        held.push(Held::Subscribers(spec.subscribers));
    }
    if spec.feeds > 0 {
        held.push(Held::Feeds(spec.feeds));
    }
    held
}

/// The rows of the report: each row's median rate, and its ratio to the row that holds nothing.
fn report_rows(held: &[Held], rates: &[Vec<f64>], missed: Vec<u64>) -> Vec<Row> {
    let base = median(rates[0].clone());
    held.iter()
        .zip(rates)
        .zip(missed)
        .map(|((held, r), missed)| {
            let per_round: Vec<f64> = r
                .iter()
                .zip(&rates[0])
                .map(|(x, none)| if *none > 0.0 { x / none } else { 0.0 })
                .collect();
            let m = median(r.clone());
            Row {
                held: *held,
                sessions_per_sec: m,
                ratio: if base > 0.0 { m / base } else { 0.0 },
                ratio_min: per_round.iter().copied().fold(f64::INFINITY, f64::min),
                ratio_max: per_round.iter().copied().fold(0.0, f64::max),
                missed,
            }
        })
        .collect()
}

/// One workload run holding `held`, released after it; the live events the subscribers missed.
async fn run_holding(
    recorder: &Arc<Recorder>,
    api: Option<SocketAddr>,
    load: &LoadSpec,
    held: Held,
    deadline: Duration,
) -> Result<(load::LoadReport, u64), BenchError> {
    let mut holders = tokio::task::JoinSet::new();
    // Live-feed subscribers end with the run (their tasks are stopped with the holders); the
    // sender is kept until then, since a feed whose sender is gone ends at once.
    let (_feeds_stop, feeds_stopped) = tokio::sync::watch::channel(false);
    let missed = Arc::new(AtomicU64::new(0));
    match held {
        Held::Nothing => {}
        Held::Waits(n) => {
            for i in 0..n {
                let recorder = Arc::clone(recorder);
                holders.spawn(async move {
                    let _ = recorder
                        .until_etrn(&format!("never-{i}.example"), deadline)
                        .await;
                });
            }
            // Every wait registered before the run starts (bounded: a wait that never registers
            // only makes the figure kinder).
            let registered = tokio::time::Instant::now() + Duration::from_secs(5);
            while recorder.pending_etrn_domains() < n && tokio::time::Instant::now() < registered {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        Held::Subscribers(n) => {
            // The API's own feed log, without HTTP: one pump, every subscriber reading from it;
            // started for this row only, so that no other row pays for its pump.
            let feed_log = FeedLog::new(Arc::clone(recorder), feeds_stopped.clone());
            for _ in 0..n {
                // Subscribed here, before the run: no subscriber misses its start. Each takes
                // the API's own feed, chunk by chunk, as `GET /events` does, without HTTP.
                let mut feed = feed_log.subscribe();
                let missed = Arc::clone(&missed);
                holders.spawn(async move {
                    let mut told = 0;
                    while let Some(chunk) = feed.next_pieces().await {
                        std::hint::black_box(chunk);
                        missed.fetch_add(feed.missed() - told, Ordering::Relaxed);
                        told = feed.missed();
                    }
                });
            }
        }
        Held::Feeds(n) => {
            let api = api.ok_or_else(|| BenchError::NotReady {
                what: "the API".into(),
                detail: "not started".into(),
            })?;
            for _ in 0..n {
                // Connected and answered here, before the run: no feed misses its start.
                let stream = open_feed(api, deadline).await?;
                holders.spawn(read_feed(stream, Arc::clone(&missed)));
            }
        }
    }
    let report = load::run(load).await;
    holders.shutdown().await;
    Ok((report, missed.load(Ordering::Relaxed)))
}

/// A `GET /events` connection whose answer has begun (its head read).
async fn open_feed(api: SocketAddr, deadline: Duration) -> Result<TcpStream, BenchError> {
    let refused = |detail: String| BenchError::NotReady {
        what: "a GET /events client".into(),
        detail,
    };
    let open = async {
        let mut stream = TcpStream::connect(api)
            .await
            .map_err(|e| refused(e.to_string()))?;
        let request = format!("GET /events HTTP/1.1\r\nHost: {api}\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| refused(e.to_string()))?;
        let mut head = [0u8; 1024];
        let n = stream
            .read(&mut head)
            .await
            .map_err(|e| refused(e.to_string()))?;
        if head[..n].starts_with(b"HTTP/1.1 200") {
            Ok(stream)
        } else {
            Err(refused(format!(
                "answered {:?}",
                String::from_utf8_lossy(&head[..n.min(40)])
            )))
        }
    };
    tokio::time::timeout(deadline, open)
        .await
        .map_err(|_| refused("no answer in time".into()))?
}

/// Reads a feed until cancelled, counting the events it says it missed.
async fn read_feed(mut stream: TcpStream, missed: Arc<AtomicU64>) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            return;
        }
        // A `missed` event's data is `{"missed":N}`; one cut by a read goes uncounted (rare).
        const KEY: &[u8] = b"{\"missed\":";
        let text = &buf[..n];
        let lost: u64 = (0..text.len().saturating_sub(KEY.len()))
            .filter(|i| text[*i..].starts_with(KEY))
            .filter_map(|i| {
                let digits = &text[i + KEY.len()..];
                let end = digits.iter().position(|b| !b.is_ascii_digit())?;
                std::str::from_utf8(&digits[..end])
                    .ok()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        missed.fetch_add(lost, Ordering::Relaxed);
    }
}

/// The report for people.
pub fn table(r: &WaitsReport) -> String {
    let mut t = String::from(
        "| held while the sessions run | sessions/s (median) | ratio to nothing held | spread (per round) |\n|---|---|---|---|\n",
    );
    for row in &r.rows {
        let missed = if row.missed > 0 {
            format!(" ({} live events missed)", row.missed)
        } else {
            String::new()
        };
        t.push_str(&format!(
            "| {} | {:.0} | {:.2}{missed} | {:.2}-{:.2} |\n",
            row.held, row.sessions_per_sec, row.ratio, row.ratio_min, row.ratio_max
        ));
    }
    t.push_str(&format!(
        "| sessions, failed | {}, {} | | |\n",
        r.sessions, r.errors
    ));
    t
}
