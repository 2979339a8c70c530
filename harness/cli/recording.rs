//! `etrn-harness recording FILE`: a `serve --record` stream turned into the document
//! `GET /recording` returns, on standard output.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use etrn_harness::smarthost::{StreamError, write_document};

use super::EXIT_INVALID;

pub fn run(file: &Path) -> ExitCode {
    // No server runs here: writing straight to a buffered stdout is no hot path.
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match write_document(file, &mut out) {
        Ok(_) => {
            let _ = out.write_all(b"\n");
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        // A reader that went away (`| head`) is no error of the stream's.
        Err(StreamError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e @ StreamError::Write(_)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}
