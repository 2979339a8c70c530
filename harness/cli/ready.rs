//! The first and the last line of the long-running commands (`serve`, `record`, `replay`), in
//! one shape for all three: a program learns every address from one JSON object, and reads one
//! stop line whichever command it started.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Which long-running command speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Server {
    Serve,
    Record,
    Replay,
}

/// Everything the command listens on, reads or writes, known once it accepts connections:
/// `{"event":"ready","command":"serve","pid":…,"smtp":"127.0.0.1:40123",…}`. Printed first with
/// `--events jsonl`, and written to `--ready-file` whatever the output mode.
#[derive(Debug, Clone, Serialize)]
pub struct Ready {
    event: ReadyTag,
    pub command: Server,
    pub pid: u32,
    /// Where SMTP clients connect.
    pub smtp: SocketAddr,
    /// `serve --api`: the API's address, and the same as a URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// `record`, `replay --record-on-miss`: the real server sessions go to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<SocketAddr>,
    /// `record`, `replay`: the cassette written or read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cassette: Option<PathBuf>,
    /// `serve --record`: where the recording is written at exit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
enum ReadyTag {
    Ready,
}

impl Ready {
    pub fn new(command: Server, smtp: SocketAddr) -> Self {
        Ready {
            event: ReadyTag::Ready,
            command,
            pid: std::process::id(),
            smtp,
            api: None,
            api_url: None,
            upstream: None,
            cassette: None,
            record: None,
        }
    }

    /// `api` is the bound address; `api_url` a URL a client on this machine can use, so on
    /// loopback when the API listens on every address (`0.0.0.0`, `::`).
    pub fn with_api(mut self, api: Option<SocketAddr>) -> Self {
        self.api_url = api.map(|mut a| {
            if a.ip().is_unspecified() {
                a.set_ip(match a {
                    SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            format!("http://{a}")
        });
        self.api = api;
        self
    }

    /// The object as one line of JSON (no line end).
    pub fn json(&self) -> String {
        // A struct of strings, numbers and addresses always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Writes the object to `path` in one step: into a new file beside it, then renamed onto it,
    /// so a program polling for `path` reads either nothing or the whole line.
    pub fn write_file(&self, path: &Path) -> std::io::Result<()> {
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            return Err(std::io::Error::other("it is a folder"));
        }
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut file = tempfile::Builder::new()
            .prefix(".ready.")
            .tempfile_in(folder)?;
        file.write_all(format!("{}\n", self.json()).as_bytes())?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Removes a ready file left by an earlier run, before anything else, so a program polling for
/// it finds only this run's. Only a file or a link is removed (a folder stays, and writing the
/// object fails later with its reason); a file that is not there is no error.
pub fn remove_stale(path: Option<&Path>) -> Result<(), std::process::ExitCode> {
    let Some(path) = path else {
        return Ok(());
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.is_dir() => std::fs::remove_file(path).map_err(|e| {
            eprintln!(
                "error: cannot remove the old ready file {}: {e}",
                path.display()
            );
            std::process::ExitCode::from(super::exit::EXIT_SYSTEM)
        }),
        _ => Ok(()),
    }
}

/// One count on a stop line: its JSON key, and its noun for people.
#[derive(Debug, Clone, Copy)]
pub struct Count {
    pub key: &'static str,
    pub noun: &'static str,
    pub n: u64,
}

impl Count {
    pub fn new(key: &'static str, noun: &'static str, n: impl TryInto<u64>) -> Self {
        Count {
            key,
            noun,
            n: n.try_into().unwrap_or(u64::MAX),
        }
    }
}

/// The last line: why the command stopped, its sessions, and what else it counted.
/// `stopped (WHY): N session(s), COUNT NOUN, …` for people;
/// `{"event":"stopped","command":…,"why":…,"sessions":N,KEY:COUNT,…}` for programs.
#[derive(Debug)]
pub struct Stopped {
    pub command: Server,
    pub why: &'static str,
    pub sessions: u64,
    pub counts: Vec<Count>,
}

impl Stopped {
    pub fn human(&self) -> String {
        let mut line = format!("stopped ({}): {} session(s)", self.why, self.sessions);
        for c in &self.counts {
            line.push_str(&format!(", {} {}", c.n, c.noun));
        }
        line
    }

    pub fn json(&self) -> String {
        let mut object = serde_json::json!({
            "event": "stopped",
            "command": self.command,
            "why": self.why,
            "sessions": self.sessions,
        });
        for c in &self.counts {
            object[c.key] = c.n.into();
        }
        object.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_names_only_what_the_command_has() {
        let ready = Ready::new(Server::Serve, "127.0.0.1:40123".parse().unwrap())
            .with_api(Some("127.0.0.1:40124".parse().unwrap()));
        let v: serde_json::Value = serde_json::from_str(&ready.json()).unwrap();
        assert_eq!(v["event"], "ready");
        assert_eq!(v["command"], "serve");
        assert_eq!(v["smtp"], "127.0.0.1:40123");
        assert_eq!(v["api"], "127.0.0.1:40124");
        assert_eq!(v["api_url"], "http://127.0.0.1:40124");
        assert!(v.get("upstream").is_none() && v.get("cassette").is_none());
        // Bound on every address: the address as bound, the URL on loopback.
        for (bound, url) in [
            ("0.0.0.0:40124", "http://127.0.0.1:40124"),
            ("[::]:40124", "http://[::1]:40124"),
        ] {
            let ready = Ready::new(Server::Serve, "127.0.0.1:40123".parse().unwrap())
                .with_api(Some(bound.parse().unwrap()));
            let v: serde_json::Value = serde_json::from_str(&ready.json()).unwrap();
            assert_eq!(
                (v["api"].as_str(), v["api_url"].as_str()),
                (Some(bound), Some(url))
            );
        }
    }

    #[test]
    fn ready_file_is_whole_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ready.json");
        std::fs::write(&path, "stale").unwrap();
        let ready = Ready::new(Server::Replay, "[::1]:2525".parse().unwrap());
        ready.write_file(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", ready.json()));
        // Nothing is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(ready.write_file(dir.path()).is_err());
    }

    #[test]
    fn one_stop_line_shape() {
        let stopped = Stopped {
            command: Server::Replay,
            why: "terminated",
            sessions: 2,
            counts: vec![
                Count::new("etrn", "ETRN", 3usize),
                Count::new("mismatches", "mismatch(es)", 1usize),
            ],
        };
        assert_eq!(
            stopped.human(),
            "stopped (terminated): 2 session(s), 3 ETRN, 1 mismatch(es)"
        );
        let v: serde_json::Value = serde_json::from_str(&stopped.json()).unwrap();
        assert_eq!(v["event"], "stopped");
        assert_eq!(v["command"], "replay");
        assert_eq!(
            (
                v["sessions"].as_u64(),
                v["etrn"].as_u64(),
                v["mismatches"].as_u64()
            ),
            (Some(2), Some(3), Some(1))
        );
    }
}
