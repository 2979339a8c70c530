//! Benchmarks: a bounded load generator and a side-by-side comparison with Postfix's smtp-sink.
//!
//! - [`load`]: four workloads (new session + ETRN, pipelined ETRN, mail sink, idle connections)
//!   against any SMTP server, bounded in count and time, with hdrhistogram latencies.
//! - [`compare`](mod@compare): the smart host and smtp-sink as processes, the same workloads in
//!   the order A B B A over several rounds, ratios per workload, and Postfix's own smtp-source
//!   as a second load tool.
//! - [`verdict`]: what a row's rounds say, by a sign test: which server did better, or a tie.
//! - [`cpu`]: CPU time and page faults from `/proc`: a server's, the load generator's,
//!   smtp-source's.
//! - [`memory`]: what recording costs: bytes per recorded session, RSS after a long soak.
//! - [`rss`]: a server's memory from `/proc`.
//! - [`waits`]: what pending waits for ETRNs and live-feed subscribers cost the SMTP server, as
//!   ratios.
//! - [`reads`]: the peak memory while clients read a large recording and while the server stops,
//!   over its steady size.

pub mod compare;
pub mod cpu;
pub mod load;
pub mod memory;
pub mod reads;
pub mod rss;
pub mod verdict;
pub mod waits;

pub use compare::{CompareReport, CompareSpec, compare};
pub use load::{LoadReport, LoadSpec, Workload};
