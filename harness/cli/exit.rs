//! The exit statuses, one per kind of failure, the same for every command (the README's "Exit
//! statuses" table):
//!
//! | status | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | what was tested did not conform: a FAIL or ERROR verdict, the model disagreeing with a scenario's `[expect]`, a broken rule or a difference in `probe`, a mismatch in `replay` |
//! | 2 | bad input: usage, an address, a scenario, profile, cassette or report that is wrong; a selection of nothing; a target that cannot run |
//! | 3 | unavailable: an address cannot be listened on (in use, not permitted, not this machine's), or a cassette another recorder holds |
//! | 4 | the system failed: a file could not be written or renamed, the runtime or the signal handlers could not start |
//! | 5 | stopped before its result: `bench compare` interrupted (Ctrl-C) or terminated (SIGTERM) |
//!
//! A script can so tell "the implementation is wrong" (1) from "the command line is" (2) from
//! "try another port" (3) from "look at the machine" (4) from "someone stopped it" (5).
//! `serve`, `record` and `replay` stop by a signal as their normal end, and exit 0.

/// What was tested did not conform.
pub const EXIT_DISAGREES: u8 = 1;
/// Bad input: usage, addresses, scenario, profile and cassette files.
pub const EXIT_INVALID: u8 = 2;
/// An address that cannot be listened on, or a file another process holds.
pub const EXIT_UNAVAILABLE: u8 = 3;
/// The system failed: writing a file, starting the runtime or the signal handlers.
pub const EXIT_SYSTEM: u8 = 4;
/// Stopped by a signal before there was a result to give (`bench compare`; `serve`, `record`
/// and `replay`, which stop by a signal as their normal end, exit 0).
pub const EXIT_STOPPED: u8 = 5;
