//! Benchmarks: a bounded load generator and a side-by-side comparison with Postfix's smtp-sink.
//!
//! - [`load`]: four workloads (new session + ETRN, pipelined ETRN, mail sink, idle connections)
//!   against any SMTP server, bounded in count and time, with hdrhistogram latencies.
//! - [`compare`](mod@compare): the smart host and smtp-sink as processes, the same workloads alternating over
//!   several rounds, ratios per workload, and Postfix's own smtp-source as a second load tool.
//! - [`memory`]: what recording costs: bytes per recorded session, RSS after a long soak.
//! - [`rss`]: a server's memory from `/proc`.
//! - [`waits`]: what pending waits for ETRNs cost the SMTP server, as a ratio.

pub mod compare;
pub mod load;
pub mod memory;
pub mod rss;
pub mod waits;

pub use compare::{CompareReport, CompareSpec, compare};
pub use load::{LoadReport, LoadSpec, Workload};
