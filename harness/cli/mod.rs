//! The subcommands of the `etrn-harness` binary. Only the binary compiles this folder; the
//! library (`lib.rs`) does not declare it.

pub mod bench;
pub mod cassette;
pub mod corpus;
pub mod run;
pub mod serve;
pub mod signals;

use super::{
    BenchCommand, BenchCompareArgs, BenchLoadArgs, BenchMemoryArgs, EXIT_DISAGREES, EXIT_INVALID,
    RecordArgs, ReplayArgs, ReportFormat, RunArgs, ServeArgs, TlsArg, report_errors,
};
