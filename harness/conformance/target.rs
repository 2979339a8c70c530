//! Targets: the implementation a conformance run tests, started once per scenario.
//!
//! The `--exec` contract (also in the README): the command runs through `sh -c` with
//! `{host}`, `{port}`, `{config}`, `{scenario}` and `{local_commands}` replaced, and with the
//! environment variables `ETRN_HARNESS_HOST`, `ETRN_HARNESS_PORT`, `ETRN_HARNESS_CONFIG` (a JSON
//! rendering of the scenario's `[ims]` table), `ETRN_HARNESS_SCENARIO` (the scenario file) and
//! `ETRN_HARNESS_LOCAL_COMMANDS` (a file the target may write the dial-up retrieval commands it ran
//! to, one per line). It runs in its own process group; on timeout the whole group is killed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::ims::ImsConfig;

use super::builtin;
use super::outcome::TargetOutcome;

/// What a conformance run tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The reference client in this crate.
    Builtin,
    /// An external program, started once per scenario.
    Exec { command: String },
}

impl Target {
    pub fn name(&self) -> String {
        match self {
            Target::Builtin => "builtin".into(),
            Target::Exec { command } => command.clone(),
        }
    }
}

/// Everything a target needs to know about one case.
pub struct CaseEnvironment<'a> {
    pub smart_host: SocketAddr,
    pub config: &'a ImsConfig,
    pub scenario_file: &'a Path,
    /// A private folder for this case (config JSON, local-commands file).
    pub work_dir: &'a Path,
    pub timeout: Duration,
}

impl Target {
    /// Runs the target once against the case's smart host.
    pub async fn run(&self, env: &CaseEnvironment<'_>) -> TargetOutcome {
        match self {
            Target::Builtin => {
                match tokio::time::timeout(
                    env.timeout,
                    builtin::run(env.config, env.smart_host, env.timeout),
                )
                .await
                {
                    Ok(Ok(report)) => TargetOutcome::Finished {
                        exit: Some(0),
                        local_commands: report.local_commands,
                        stderr: String::new(),
                    },
                    Ok(Err(e)) => TargetOutcome::Crashed {
                        reason: e.to_string(),
                        stderr: String::new(),
                    },
                    Err(_) => TargetOutcome::TimedOut {
                        after_ms: duration_ms(env.timeout),
                        stderr: String::new(),
                    },
                }
            }
            Target::Exec { command } => exec(command, env).await,
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Replaces `{host}`, `{port}`, `{config}`, `{scenario}`, `{local_commands}` in one pass over
/// the command, so text a placeholder expands to (a path with braces in it) is never expanded again.
pub fn expand(
    command: &str,
    host: &str,
    port: u16,
    config: &Path,
    scenario: &Path,
    local: &Path,
) -> String {
    let values = [
        ("{host}", host.to_owned()),
        ("{port}", port.to_string()),
        ("{config}", shell_quote(&config.to_string_lossy())),
        ("{scenario}", shell_quote(&scenario.to_string_lossy())),
        ("{local_commands}", shell_quote(&local.to_string_lossy())),
    ];
    let mut out = String::with_capacity(command.len());
    let mut rest = command;
    while !rest.is_empty() {
        match values.iter().find(|(name, _)| rest.starts_with(name)) {
            Some((name, value)) => {
                out.push_str(value);
                rest = &rest[name.len()..];
            }
            None => {
                let mut chars = rest.chars();
                if let Some(c) = chars.next() {
                    out.push(c);
                }
                rest = chars.as_str();
            }
        }
    }
    out
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Runs the `--exec` command for one case: the configuration written, the command started with
/// the case's environment, waited for (killed at the timeout), its stderr and dial-up commands
/// read.
async fn exec(command: &str, env: &CaseEnvironment<'_>) -> TargetOutcome {
    let config_path = env.work_dir.join("ims.json");
    let local_path: PathBuf = env.work_dir.join("local-commands.txt");
    if let Err(outcome) = write_config(env, &config_path) {
        return outcome;
    }
    let mut child = match spawn(command, env, &config_path, &local_path) {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    // The group id is the child's pid, read now: once `wait` has reaped the child, tokio no longer
    // reports it, and the group (grandchildren the target left behind) could not be killed.
    let group = child.id();
    let stderr_task = read_stderr(child.stderr.take());
    let waited = tokio::time::timeout(env.timeout, child.wait()).await;
    let outcome = match waited {
        Ok(Ok(status)) => match status.code() {
            Some(code) => Ok(Some(code)),
            None => Err(format!("killed by a signal ({status})")),
        },
        Ok(Err(e)) => Err(format!("cannot wait for the target: {e}")),
        Err(_) => {
            kill_group(group);
            let _ = child.wait().await;
            let stderr = stderr_task.await.unwrap_or_default();
            return TargetOutcome::TimedOut {
                after_ms: duration_ms(env.timeout),
                stderr,
            };
        }
    };
    // Children it left behind in its group would keep the stderr pipe open: end them too.
    kill_group(group);
    let stderr = match tokio::time::timeout(Duration::from_secs(5), stderr_task).await {
        Ok(Ok(s)) => s,
        _ => String::new(),
    };
    match outcome {
        Ok(exit) => TargetOutcome::Finished {
            exit,
            local_commands: local_commands(&local_path),
            stderr,
        },
        Err(reason) => TargetOutcome::Crashed { reason, stderr },
    }
}

/// The case's IMS configuration, written where the command is told to read it.
fn write_config(env: &CaseEnvironment<'_>, config_path: &Path) -> Result<(), TargetOutcome> {
    let json = serde_json::to_vec_pretty(env.config).map_err(|e| TargetOutcome::NotStarted {
        reason: format!("cannot render the configuration: {e}"),
    })?;
    std::fs::write(config_path, json).map_err(|e| TargetOutcome::NotStarted {
        reason: format!("cannot write {}: {e}", config_path.display()),
    })
}

/// The command line, expanded and started by `sh -c` with the case in its environment.
fn spawn(
    command: &str,
    env: &CaseEnvironment<'_>,
    config_path: &Path,
    local_path: &Path,
) -> Result<tokio::process::Child, TargetOutcome> {
    let host = env.smart_host.ip().to_string();
    let port = env.smart_host.port();
    let line = expand(
        command,
        &host,
        port,
        config_path,
        env.scenario_file,
        local_path,
    );
    tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&line)
        .env("ETRN_HARNESS_HOST", &host)
        .env("ETRN_HARNESS_PORT", port.to_string())
        .env("ETRN_HARNESS_CONFIG", config_path)
        .env("ETRN_HARNESS_SCENARIO", env.scenario_file)
        .env("ETRN_HARNESS_LOCAL_COMMANDS", local_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout can kill everything it started.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| TargetOutcome::NotStarted {
            reason: format!("cannot start `sh -c {line}`: {e}"),
        })
}

/// The target's stderr, read on a task of its own.
fn read_stderr(
    mut stderr_pipe: Option<tokio::process::ChildStderr>,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut s = String::new();
        if let Some(p) = stderr_pipe.as_mut() {
            let mut bytes = Vec::new();
            // Bounded: a target that floods stderr cannot exhaust memory.
            let _ = p.take(1 << 20).read_to_end(&mut bytes).await;
            s = String::from_utf8_lossy(&bytes).into_owned();
        }
        s
    })
}

/// The dial-up commands the target wrote, a line each (none if it wrote no file).
fn local_commands(local_path: &Path) -> Vec<String> {
    std::fs::read_to_string(local_path)
        .map(|t| {
            t.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn kill_group(group: Option<u32>) {
    if let Some(pid) = group
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        // The group may already be gone; that is the goal either way.
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_expanded_and_paths_quoted() {
        let line = expand(
            "client --to {host}:{port} --config {config} --case {scenario}",
            "127.0.0.1",
            2525,
            Path::new("/w/it's.json"),
            Path::new("s.toml"),
            Path::new("l.txt"),
        );
        assert_eq!(
            line,
            "client --to 127.0.0.1:2525 --config '/w/it'\\''s.json' --case 's.toml'"
        );
    }

    #[test]
    fn an_expanded_value_is_never_expanded_again() {
        let line = expand(
            "client {scenario} {port}",
            "127.0.0.1",
            2525,
            Path::new("c.json"),
            Path::new("/w/{port}/{config}.toml"),
            Path::new("l.txt"),
        );
        assert_eq!(line, "client '/w/{port}/{config}.toml' 2525");
    }
}
