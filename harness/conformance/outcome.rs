//! How a target's run ended, as plain data: what the verdicts, the reports and the HTML pages read.
//! It lives apart from [`target`](super::target), which runs targets (processes, TCP), so the
//! judging code depends on no driver.

/// How a target's run ended.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum TargetOutcome {
    /// It finished; `exit` is the exit status (non-zero is not an error by itself: fetchmail exits
    /// 4 after a 458, as designed).
    Finished {
        exit: Option<i32>,
        /// Dial-up retrieval commands it reported.
        local_commands: Vec<String>,
        /// Its standard error, for the report.
        stderr: String,
    },
    /// It did not finish within the timeout; its process group was killed.
    TimedOut { after_ms: u64, stderr: String },
    /// It died from a signal, or the built-in client failed.
    Crashed { reason: String, stderr: String },
    /// It could not be started at all (no shell, the work folder not writable).
    NotStarted { reason: String },
}

impl TargetOutcome {
    /// The target's standard error, if it wrote any (trailing blank lines left out).
    pub fn stderr(&self) -> Option<&str> {
        match self {
            TargetOutcome::Finished { stderr, .. }
            | TargetOutcome::TimedOut { stderr, .. }
            | TargetOutcome::Crashed { stderr, .. } => {
                Some(stderr.trim_end()).filter(|s| !s.trim().is_empty())
            }
            TargetOutcome::NotStarted { .. } => None,
        }
    }

    /// Why the target could not run at all, if it could not: it was not started, or it exited
    /// non-zero without `connected` (the shell's 126 "not executable" and 127 "not found", an
    /// interpreter's 2 for a missing script, any other status), with its message.
    pub fn start_failure(&self, connected: bool) -> Option<String> {
        match self {
            TargetOutcome::NotStarted { reason } => Some(reason.clone()),
            TargetOutcome::Finished {
                exit: Some(code),
                stderr,
                ..
            } if *code != 0 && !connected => {
                let meaning = match code {
                    126 => "the command is not executable",
                    127 => "the command was not found",
                    _ => "it exited non-zero without connecting",
                };
                let said = stderr.trim();
                Some(if said.is_empty() {
                    format!("exit {code}: {meaning}")
                } else {
                    format!("exit {code}: {meaning}: {said}")
                })
            }
            _ => None,
        }
    }
}
