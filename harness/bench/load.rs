//! The load generator: four workloads against any SMTP server, bounded in count and in time.
//!
//! Loopback only by intent: the target is whatever address the caller gives, and the benchmark
//! commands only ever give 127.0.0.1. Every loop stops at `count` operations or at `max_duration`,
//! whichever comes first.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::smtp_client::{ClientError, Connection, Reply};

/// What to do to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// (a) A new connection per session: greeting, EHLO, one ETRN, QUIT.
    Etrn,
    /// (b) One session, many ETRNs, pipelined when PIPELINING is advertised.
    Pipelined,
    /// (c) Mail sink: new connection, EHLO, MAIL, RCPT, DATA of `message_octets`, QUIT.
    Mail,
    /// (d) Many connections held open after EHLO.
    Idle,
}

impl Workload {
    /// Its name on the command line and in JSON reports (`etrn`, `pipelined`).
    pub fn name(self) -> &'static str {
        match self {
            Workload::Etrn => "etrn",
            Workload::Pipelined => "pipelined",
            Workload::Mail => "mail",
            Workload::Idle => "idle",
        }
    }
}

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub target: SocketAddr,
    pub workload: Workload,
    /// Client tasks working at once (a, c), or connections opened at once (d).
    pub concurrency: usize,
    /// Sessions (a, c), ETRN commands (b), connections (d).
    pub count: u64,
    /// Hard stop, whatever `count` says.
    pub max_duration: Duration,
    /// Longest wait for one reply.
    pub reply_timeout: Duration,
    /// Message size for (c).
    pub message_octets: usize,
    /// ETRNs per write for (b) when the server pipelines.
    pub batch: usize,
}

impl LoadSpec {
    pub fn new(target: SocketAddr, workload: Workload, count: u64) -> Self {
        LoadSpec {
            target,
            workload,
            concurrency: 32,
            count,
            max_duration: Duration::from_secs(30),
            reply_timeout: Duration::from_secs(10),
            message_octets: 1024,
            batch: 64,
        }
    }
}

/// What a load run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub workload: Workload,
    /// Sessions completed (a, c), sessions used (b: 1), connections held (d).
    pub sessions: u64,
    /// Commands answered, EHLO and QUIT included.
    pub commands: u64,
    /// Replies by code.
    pub replies: BTreeMap<u16, u64>,
    /// Connections or sessions that failed: refused, timed out, closed early, malformed reply.
    pub errors: u64,
    /// The first error, for the report.
    pub first_error: Option<String>,
    pub elapsed_us: u64,
    /// Latency of a session (a, c), of a pipelined batch (b), of connect-to-EHLO-reply (d).
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
    pub latency_max_us: u64,
    /// True when `max_duration` ended the run before `count`.
    pub stopped_by_time: bool,
    /// (d): what the probe measured while every connection was held (the server's RSS in KiB).
    pub probe_while_held: Option<u64>,
}

impl LoadReport {
    pub fn sessions_per_sec(&self) -> f64 {
        per_sec(self.sessions, self.elapsed_us)
    }
    pub fn commands_per_sec(&self) -> f64 {
        per_sec(self.commands, self.elapsed_us)
    }
}

fn per_sec(n: u64, us: u64) -> f64 {
    if us == 0 {
        0.0
    } else {
        n as f64 * 1e6 / us as f64
    }
}

/// Shared tallies of one run.
struct Tally {
    replies: BTreeMap<u16, u64>,
    commands: u64,
    sessions: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            replies: BTreeMap::new(),
            commands: 0,
            sessions: 0,
            errors: 0,
            first_error: None,
            // 1 µs to 60 s at 3 significant digits: constant bounds that hdrhistogram accepts.
            latency: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("constant histogram bounds are valid"),
        }
    }

    fn reply(&mut self, r: &Reply) {
        *self.replies.entry(r.code().get()).or_default() += 1;
        self.commands += 1;
    }

    fn error(&mut self, e: &ClientError) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }

    fn latency(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, 60_000_000);
        // Within the bounds by the clamp above.
        let _ = self.latency.record(us);
    }
}

/// Runs one workload and reports.
pub async fn run(spec: &LoadSpec) -> LoadReport {
    run_probing(spec, &|| None).await
}

/// Runs one workload; for (d), calls `probe` while all connections are held open.
pub async fn run_probing(spec: &LoadSpec, probe: &(dyn Fn() -> Option<u64> + Sync)) -> LoadReport {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + spec.max_duration;
    let tally = Arc::new(Mutex::new(Tally::new()));
    let mut probed = None;
    let stopped_by_time = match spec.workload {
        Workload::Etrn | Workload::Mail => sessions(spec, deadline, &tally).await,
        Workload::Pipelined => pipelined(spec, deadline, &tally).await,
        Workload::Idle => {
            let held = open_idle(spec, deadline, &tally).await;
            let by_time =
                (held.len() as u64) < spec.count && tokio::time::Instant::now() >= deadline;
            probed = probe();
            close_idle(held, &tally).await;
            by_time
        }
    };
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let t = tally.lock().await;
    LoadReport {
        workload: spec.workload,
        sessions: t.sessions,
        commands: t.commands,
        replies: t.replies.clone(),
        errors: t.errors,
        first_error: t.first_error.clone(),
        elapsed_us,
        latency_p50_us: t.latency.value_at_quantile(0.5),
        latency_p99_us: t.latency.value_at_quantile(0.99),
        latency_max_us: t.latency.max(),
        stopped_by_time,
        probe_while_held: probed,
    }
}

/// (a) and (c): `concurrency` workers take sessions from a shared counter until `count`.
async fn sessions(
    spec: &LoadSpec,
    deadline: tokio::time::Instant,
    tally: &Arc<Mutex<Tally>>,
) -> bool {
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..spec.concurrency.max(1) {
        let next = Arc::clone(&next);
        let tally = Arc::clone(tally);
        let spec = spec.clone();
        workers.spawn(async move {
            let mut local = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < spec.count {
                if tokio::time::Instant::now() >= deadline {
                    return true;
                }
                let began = Instant::now();
                let outcome =
                    tokio::time::timeout_at(deadline, one_session(&spec, &mut local)).await;
                let mut t = tally.lock().await;
                for r in local.drain(..) {
                    t.reply(&r);
                }
                match outcome {
                    Ok(Ok(())) => {
                        t.sessions += 1;
                        t.latency(began.elapsed());
                    }
                    Ok(Err(e)) => t.error(&e),
                    Err(_) => return true,
                }
            }
            false
        });
    }
    let mut by_time = false;
    while let Some(done) = workers.join_next().await {
        by_time |= done.unwrap_or(false);
    }
    by_time
}

/// Checks a reply is positive (or, for an ETRN to a server without ETRN, any complete reply).
fn expect_positive(r: &Reply) -> Result<(), ClientError> {
    if r.code().is_positive() || r.code().get() == 354 {
        Ok(())
    } else {
        Err(ClientError::BadReply(format!(
            "{} {}",
            r.code(),
            r.lines().join(" / ")
        )))
    }
}

async fn one_session(spec: &LoadSpec, replies: &mut Vec<Reply>) -> Result<(), ClientError> {
    let mut c = Connection::open(spec.target, spec.reply_timeout).await?;
    let greeting = c.reply().await?;
    expect_positive(&greeting)?;
    let ehlo = c.command("EHLO bench.example").await?;
    expect_positive(&ehlo)?;
    replies.push(ehlo);
    match spec.workload {
        Workload::Mail => {
            for line in [
                "MAIL FROM:<bench@bench.example>",
                "RCPT TO:<sink@sink.example>",
                "DATA",
            ] {
                let r = c.command(line).await?;
                expect_positive(&r)?;
                replies.push(r);
            }
            c.send_raw(&message(spec.message_octets)).await?;
            let r = c.reply().await?;
            expect_positive(&r)?;
            replies.push(r);
        }
        // Any complete reply counts: smtp-sink answers ETRN with 500, the round trip is the same.
        _ => replies.push(c.command("ETRN bench.example").await?),
    }
    let bye = c.command("QUIT").await?;
    replies.push(bye);
    Ok(())
}

/// A message of `octets` octets of text and its terminator.
pub fn message(octets: usize) -> Vec<u8> {
    let mut m = b"Subject: etrn-harness bench\r\n\r\n".to_vec();
    let line =
        b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdef\r\n";
    while m.len() + line.len() <= octets {
        m.extend_from_slice(line);
    }
    while m.len() + 2 < octets {
        m.push(b'x');
    }
    m.extend_from_slice(b"\r\n.\r\n");
    m
}

/// (b): one session, `count` ETRNs, in batches when the server advertises PIPELINING.
async fn pipelined(
    spec: &LoadSpec,
    deadline: tokio::time::Instant,
    tally: &Arc<Mutex<Tally>>,
) -> bool {
    let result = tokio::time::timeout_at(deadline, async {
        let mut c = Connection::open(spec.target, spec.reply_timeout).await?;
        expect_positive(&c.reply().await?)?;
        let ehlo = c.command("EHLO bench.example").await?;
        expect_positive(&ehlo)?;
        let pipelining = crate::wire::ehlo::advertises(
            ehlo.lines().iter().skip(1).map(String::as_str),
            "PIPELINING",
        );
        tally.lock().await.reply(&ehlo);
        let batch = if pipelining {
            spec.batch.max(1) as u64
        } else {
            1
        };
        let mut sent = 0u64;
        while sent < spec.count {
            if tokio::time::Instant::now() >= deadline {
                return Ok(true);
            }
            let n = batch.min(spec.count - sent);
            let mut bytes = Vec::with_capacity(n as usize * 24);
            for i in sent..sent + n {
                bytes.extend_from_slice(format!("ETRN d{i}.bench.example\r\n").as_bytes());
            }
            let began = Instant::now();
            c.send_raw(&bytes).await?;
            let mut replies = Vec::with_capacity(n as usize);
            for _ in 0..n {
                replies.push(c.reply().await?);
            }
            let mut t = tally.lock().await;
            for r in &replies {
                t.reply(r);
            }
            t.latency(began.elapsed());
            sent += n;
        }
        let bye = c.command("QUIT").await?;
        let mut t = tally.lock().await;
        t.reply(&bye);
        t.sessions += 1;
        Ok::<bool, ClientError>(false)
    })
    .await;
    match result {
        Ok(Ok(by_time)) => by_time,
        Ok(Err(e)) => {
            tally.lock().await.error(&e);
            false
        }
        Err(_) => true,
    }
}

/// (d): opens `count` connections (`concurrency` at a time), greets each with EHLO, and returns
/// them open.
async fn open_idle(
    spec: &LoadSpec,
    deadline: tokio::time::Instant,
    tally: &Arc<Mutex<Tally>>,
) -> Vec<Connection> {
    let next = Arc::new(AtomicU64::new(0));
    let held = Arc::new(Mutex::new(Vec::new()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..spec.concurrency.max(1) {
        let next = Arc::clone(&next);
        let tally = Arc::clone(tally);
        let held = Arc::clone(&held);
        let spec = spec.clone();
        workers.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < spec.count {
                let began = Instant::now();
                let opened = tokio::time::timeout_at(deadline, async {
                    let mut c = Connection::open(spec.target, spec.reply_timeout).await?;
                    expect_positive(&c.reply().await?)?;
                    let ehlo = c.command("EHLO bench.example").await?;
                    expect_positive(&ehlo)?;
                    Ok::<_, ClientError>((c, ehlo))
                })
                .await;
                match opened {
                    Ok(Ok((c, ehlo))) => {
                        let mut t = tally.lock().await;
                        t.reply(&ehlo);
                        t.sessions += 1;
                        t.latency(began.elapsed());
                        drop(t);
                        held.lock().await.push(c);
                    }
                    Ok(Err(e)) => tally.lock().await.error(&e),
                    Err(_) => return,
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    std::mem::take(&mut *held.lock().await)
}

/// QUITs the held connections.
async fn close_idle(held: Vec<Connection>, tally: &Arc<Mutex<Tally>>) {
    for mut c in held {
        if let Ok(()) = c.send("QUIT").await
            && let Ok(r) = c.reply().await
        {
            tally.lock().await.reply(&r);
        }
    }
}
