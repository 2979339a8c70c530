//! etrn-harness: an SMTP test harness for ETRN (RFC 1985) dequeuing.
//!
//! A mail server behind a part-time link asks its upstream smart host to flush the mail queued for
//! it with `ETRN <domain>`. This crate models which domains Microsoft Exchange 5.5's Internet Mail
//! Service asks for (KB269771, KB175494), describes conformance cases as scenario files, plays the
//! smart host that records what a client sends (scripted, as a real server's profile, or from a
//! recorded cassette), judges a client's run against the model, and probes real smart hosts.
//!
//! # Layout
//!
//! Dependencies point one way: the model (`domain`, `ims`) and the wire layer know nothing of the
//! smart host, its drivers or the interfaces; `proto` knows nothing of tokio, sockets or the
//! drivers; `scenario` and the judges depend on `proto`, never on a driver; only the conformance
//! runner, the probe, the API and the command line start drivers.
//!
//! - [`domain`]: `Domain` and `EtrnArg`: parse, validate (RFC 5321, IDNA), normalise for
//!   comparison, keep the raw text for the wire.
//! - [`wire`]: the wire layer every SMTP-speaking part shares: line framing with a cap and a
//!   linear scan, verbs and arguments split at any whitespace, reply lines, EHLO keywords, the
//!   one credential redaction, the one observer of server-side session state
//!   (`ServerSideObserver`: data, AUTH, STARTTLS, greeting and transaction from the replies) that
//!   the session and the replay drive, and the follower built on it with which the recording
//!   proxy pairs pipelined requests with their replies.
//! - [`reply`]: `ReplyCode` and `Reply`, and the `ReplyReader` that reads complete replies out of
//!   a server's bytes.
//! - [`smtp_client`]: a minimal SMTP client (a line out, a complete reply in, each reply within
//!   its deadline) for the built-in target, the load generator and tests.
//! - [`files`]: reading a file a user named: a regular file only, never blocking, with a cap.
//! - [`escape`]: bytes as one-line text (`\r`, `\xNN`) and back, for transcripts and recordings.
//! - `rejection`: a value refused while a file is read (message, fix, invalid or contradictory),
//!   kept typed across serde for the scenario loader.
//! - [`ims`]: the reference model of the IMS as an ETRN client. A pure function from configuration
//!   and the peer's EHLO answer to a dequeue plan; every decision names a [`ims::Rule`] with its
//!   basis (KB article or RFC section) and grade (must / should / informational). And the model as
//!   a sans-IO SMTP client ([`ims::ImsClient`]: a reply in, the next command out), which the
//!   built-in target drives over TCP and the prediction pairs in memory with a smart host.
//! - [`proto`]: the smart host, sans I/O: the SMTP server session (bytes in; replies, events, TLS
//!   and close requests out; the wire layer's observer tracks how lines are read), the script and
//!   server profiles that decide what it says, the cassette format and the replay conversation,
//!   the one factory choosing between them, and the [`proto::Recording`] as plain data. Nothing
//!   in it knows tokio, sockets or a clock.
//! - [`smarthost`]: the tokio driver of every server here: the one accept loop and server handle
//!   (connection cap, a shutdown that always finishes), the session driver (deadlines on every
//!   wait, STARTTLS), and the recorder with event-driven waits and the `--record` stream.
//! - [`scenario`]: the TOML scenario format: strict parsing with located errors, validation,
//!   JSON Schema, the model's prediction for a scenario (its client paired in memory with the
//!   scenario's own smart host, both sans-IO) and the judgement of what was sent, each deviation
//!   graded by the rule that explains it. It depends on [`proto`], never on a driver.
//! - [`cassette`]: the record/replay drivers: the recording proxy to a real upstream (STARTTLS
//!   terminated or passed through), record-on-miss, and a smart host replaying a cassette.
//! - [`probe`]: server-side conformance: a versioned set of ETRN probes against any smart host,
//!   graded by RFC 1985 / RFC 5321 rules; the same probes answered in memory by a profile and
//!   every difference reported; a profile emitted from what a server answered.
//! - [`api`]: the live HTTP/JSON API of a running smart host (axum): the recording, waits,
//!   a live event feed, reset, a new script while running.
//! - [`conformance`]: targets (the built-in reference client, `--exec` programs), a fresh smart host
//!   per case, verdicts from recordings, protocol-violation checks, known deviations, reports
//!   (human, JSON, JUnit, an HTML page per run and an HTML matrix of several runs).
//! - [`bench`](mod@bench): the load generator and the side-by-side comparison with Postfix's smtp-sink.
//! - `main.rs` and `cli/`: the `etrn-harness` command line (`scenarios`, `check`, `expect`,
//!   `schema`, `run`, `report`, `serve`, `recording`, `record`, `replay`, `probe`, `bench`); only
//!   the binary compiles `cli/`.
//! - `python/`: a standard-library Python helper with a pytest fixture that starts `serve`.
//! - `adapters/`: `--exec` adapters for real implementations (Python's smtplib, fetchmail).
//!
//! # Public surface
//!
//! Each module above is a namespace; inside it, the files are private (`pub(crate)`), and the
//! module's `mod.rs` re-exports what a user of the library needs (`pub use`), so a file can be
//! split or renamed without breaking anyone. The few namespaces that stay whole are sets of
//! commands or formats: the benchmarks (`bench::load`, `bench::compare`, ...), the report
//! renderers (`conformance::report`, `conformance::html`) and the cassette text format
//! (`proto::cassette`). What most users need is also here at the root:
//!
//! - a smart host to test a client against: [`SmartHost`], [`SmartHostConfig`],
//!   [`SmartHostScript`], and what it saw: [`Recorder`], [`Recording`];
//! - scenarios and the model: [`Scenario`], [`load_scenario`], [`predict`];
//! - conformance runs: [`run_case`], [`RunOptions`], [`Verdict`].
//!
//! # Example
//!
//! ```
//! use etrn_harness::ims::{self, ImsConfig, PeerEhlo, RegistryFlag, RoutingMode, SiteAddress};
//!
//! let mut config = ImsConfig::new(SiteAddress::parse("@site.org.com").unwrap());
//! config.registry.always_use_etrn = Some(RegistryFlag::Enabled);
//! config.routing = RoutingMode::DoNotReroute;
//!
//! let plan = ims::plan(&config, &PeerEhlo::esmtp(["ETRN", "PIPELINING"]));
//! let args: Vec<&str> = plan.etrn_args().iter().map(|a| a.raw()).collect();
//! assert_eq!(args, ["site.org.com"]);
//! ```
//!
//! A smart host for a client under test (the README's "From Rust" example, word for word):
//!
//! ```
//! # use etrn_harness::{SmartHost, SmartHostConfig, SmartHostScript};
//! # async fn run_client_under_test(addr: std::net::SocketAddr) {
//! #     use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! #     let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
//! #     c.write_all(b"EHLO c.example\r\nETRN a.example\r\nETRN B.Example\r\nQUIT\r\n").await.unwrap();
//! #     let mut replies = Vec::new();
//! #     c.read_to_end(&mut replies).await.unwrap();
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use etrn_harness::{SmartHost, SmartHostConfig, SmartHostScript};
//!
//! let script: SmartHostScript = toml::from_str(r#"etrn_default = "458 busy""#)?;
//! let host = SmartHost::start(SmartHostConfig::with_script(script)).await?; // 127.0.0.1:0, ready
//! run_client_under_test(host.addr()).await;
//! let rec = host.recorder().wait_for_closed_sessions(1, Duration::from_secs(5)).await?;
//! assert_eq!(rec.etrn_domains(), ["a.example", "b.example"]);       // in order, normalised
//! host.shutdown().await;                                             // returns the recording
//! # Ok(())
//! # }
//! ```
pub mod api;
pub mod bench;
pub mod cassette;
pub mod conformance;
pub mod domain;
pub mod escape;
pub mod files;
pub mod ims;
pub mod probe;
pub mod proto;
pub(crate) mod rejection;
pub mod reply;
pub mod scenario;
pub mod smarthost;
pub mod smtp_client;
pub mod wire;

pub use conformance::{RunOptions, Verdict, run_case};
pub use proto::{Recording, SmartHostScript};
pub use scenario::{Scenario, load_scenario, predict};
pub use smarthost::{Recorder, SmartHost, SmartHostConfig};
