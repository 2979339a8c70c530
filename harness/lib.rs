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
//! Dependencies point one way, from the top of this list to the bottom: the model knows nothing of
//! files or sockets, the protocol session knows nothing of tokio, the scenario format knows nothing
//! of sockets.
//!
//! - [`domain`]: `Domain` and `EtrnArg`: parse, validate (RFC 5321, IDNA), normalise for
//!   comparison, keep the raw text for the wire.
//! - [`wire`]: the wire layer every SMTP-speaking part shares: line framing with a cap and a
//!   linear scan, verbs and arguments split at any whitespace, reply lines, EHLO keywords, the
//!   one credential redaction, the one observer of server-side session state
//!   ([`wire::observer::ServerSideObserver`]: data, AUTH, STARTTLS, greeting and transaction
//!   from the replies) that the session, the replay and the recorder all drive, and a follower
//!   built on it that pairs pipelined requests with their replies.
//! - [`reply`]: `ReplyCode` and `Reply`, and the `ReplyReader` that reads complete replies out of
//!   a server's bytes.
//! - [`answer`]: what a scripted server does for one command: reply, delay, hang up; answers by
//!   occurrence.
//! - [`client`]: a minimal SMTP client (a line out, a complete reply in) for the load generator
//!   and tests.
//! - [`files`]: reading a file a user named: a regular file only, never blocking, with a cap.
//! - [`escape`]: bytes as one-line text (`\r`, `\xNN`) and back, for transcripts and recordings.
//! - [`rejection`]: a value refused while a file is read (message, fix, invalid or contradictory),
//!   kept typed across serde for the scenario loader.
//! - [`ims`]: the reference model of the IMS as an ETRN client. A pure function from configuration
//!   and the peer's EHLO answer to a dequeue plan; every decision names a [`ims::Rule`] with its
//!   basis (KB article or RFC section) and grade (must / should / informational). And the model as
//!   a sans-IO SMTP client ([`ims::ImsClient`]: a reply in, the next command out), which the
//!   built-in target drives over TCP and the prediction pairs in memory with a smart host.
//! - [`smtp`]: the sans-IO SMTP server session (smtp-proto parses each line, the wire layer's
//!   observer tracks how lines are read): bytes in, replies, events, TLS and close requests out;
//!   the [`smtp::Behaviour`] trait a script implements.
//! - [`smarthost`]: the fake smart host: the script and server profiles that decide what it says,
//!   the thin tokio driver (deadlines on every wait, limits, STARTTLS, a shutdown that always
//!   finishes), the one accept loop every server shares, and the recorder with event-driven waits.
//! - [`scenario`]: the TOML scenario format: strict parsing with located errors, validation,
//!   JSON Schema, the model's prediction for a scenario (its client paired in memory with the
//!   scenario's own smart host) and the judgement of what was sent, each deviation graded by the
//!   rule that explains it.
//! - [`cassette`]: record (an SMTP-aware proxy to a real upstream) and replay (a conversation
//!   answering from the cassette), the cassette text format, record-on-miss.
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
pub mod answer;
pub mod api;
pub mod bench;
pub mod cassette;
pub mod client;
pub mod conformance;
pub mod domain;
pub mod escape;
pub mod files;
pub mod ims;
pub mod probe;
pub mod rejection;
pub mod reply;
pub mod scenario;
pub mod smarthost;
pub mod smtp;
pub mod wire;
