//! The probe set: what `etrn-harness probe` sends, one fresh connection per probe.
//!
//! The set is versioned ([`PROBE_SET_VERSION`]): a report, a profile's `verified_against` and a
//! comparison name the version they were made with, and a change to any probe's lines or to the
//! order of the set is a new version. Every probe opens a connection, reads the greeting (unless
//! it talks first), says `EHLO client.example` (unless it says otherwise), sends its lines, and
//! then asks `NOOP` to see whether the session is still open (unless it ended with QUIT, when it
//! waits for the close instead).

use crate::wire::{Command, Verb};

/// The version of the probe set; part of every report.
pub const PROBE_SET_VERSION: u32 = 1;

/// The name every probe gives in EHLO and HELO (masked as `<client>` in comparisons).
pub const CLIENT_NAME: &str = "client.example";

/// The domain the server is expected to relay for (to hold mail for, and to accept ETRN for).
pub const SERVED_DOMAIN: &str = "a.example";

/// One probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Stable identifier, e.g. `etrn-served`.
    pub id: &'static str,
    /// What it asks, for people.
    pub title: &'static str,
    /// What the client does after connecting.
    pub steps: Vec<Step>,
}

/// One thing a probe's client does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read the greeting.
    Greeting,
    /// Send one line (its line end included) and read its reply.
    Line(Vec<u8>),
    /// Send these lines in one write, then read one reply per line (RFC 2920).
    Pipelined(Vec<Vec<u8>>),
    /// Send this line before the greeting has come, then read the greeting and its reply.
    TalkFirst(Vec<u8>),
}

impl Step {
    /// The line(s) this step sends, as one string for reports.
    pub fn sent(&self) -> Option<Vec<u8>> {
        match self {
            Step::Greeting => None,
            Step::Line(l) | Step::TalkFirst(l) => Some(l.clone()),
            Step::Pipelined(lines) => Some(lines.concat()),
        }
    }

    /// How many replies the step waits for.
    pub fn replies(&self) -> usize {
        match self {
            Step::Greeting | Step::Line(_) => 1,
            Step::Pipelined(lines) => lines.len(),
            Step::TalkFirst(_) => 2,
        }
    }

    /// Whether the step ends with QUIT (the server is then expected to close).
    pub fn quits(&self) -> bool {
        let last = match self {
            Step::Greeting => return false,
            Step::Line(l) | Step::TalkFirst(l) => l,
            Step::Pipelined(lines) => match lines.last() {
                Some(l) => l,
                None => return false,
            },
        };
        *Command::parse(last).verb() == Verb::Quit
    }
}

fn line(text: &str) -> Vec<u8> {
    format!("{text}\r\n").into_bytes()
}

fn ehlo() -> Step {
    Step::Line(line(&format!("EHLO {CLIENT_NAME}")))
}

/// Greeting, EHLO, then these ETRN-related lines one at a time.
fn after_ehlo(lines: &[Vec<u8>]) -> Vec<Step> {
    let mut steps = vec![Step::Greeting, ehlo()];
    steps.extend(lines.iter().cloned().map(Step::Line));
    steps
}

fn etrn(arg: &str) -> Vec<u8> {
    line(&format!("ETRN {arg}"))
}

/// The probe set, in the order it runs.
///
/// Long because it is one table: an entry per probe, so adding a probe touches one place.
pub fn probe_set() -> Vec<Probe> {
    let served = SERVED_DOMAIN;
    let long_arg = "a".repeat(600);
    let probe = |id, title, steps| Probe { id, title, steps };
    vec![
        probe(
            "ehlo",
            "the greeting and the EHLO reply",
            vec![Step::Greeting, ehlo()],
        ),
        probe(
            "helo",
            "HELO instead of EHLO",
            vec![
                Step::Greeting,
                Step::Line(line(&format!("HELO {CLIENT_NAME}"))),
            ],
        ),
        probe(
            "etrn-served",
            "ETRN for the domain the server relays for",
            after_ehlo(&[etrn(served)]),
        ),
        probe(
            "etrn-not-served",
            "ETRN for a domain the server does not relay for",
            after_ehlo(&[etrn("b.example")]),
        ),
        probe(
            "etrn-no-argument",
            "ETRN without an argument",
            after_ehlo(&[line("ETRN")]),
        ),
        probe(
            "etrn-subdomains",
            "ETRN @domain (the domain and its subdomains, RFC 1985 §5.3)",
            after_ehlo(&[etrn(&format!("@{served}"))]),
        ),
        probe(
            "etrn-queue",
            "ETRN #queue (a server-local queue name, RFC 1985 §5.3)",
            after_ehlo(&[etrn("#queue")]),
        ),
        probe(
            "etrn-queue-served",
            "ETRN #domain for the domain the server relays for",
            after_ehlo(&[etrn(&format!("#{served}"))]),
        ),
        probe(
            "etrn-two-arguments",
            "two domains in one ETRN (RFC 1985 allows one)",
            after_ehlo(&[etrn(&format!("{served} b.example"))]),
        ),
        probe(
            "etrn-before-ehlo",
            "ETRN before EHLO or HELO",
            vec![Step::Greeting, Step::Line(etrn(served))],
        ),
        probe(
            "etrn-after-helo",
            "ETRN after HELO (no service extensions)",
            vec![
                Step::Greeting,
                Step::Line(line(&format!("HELO {CLIENT_NAME}"))),
                Step::Line(etrn(served)),
            ],
        ),
        probe(
            "etrn-in-transaction",
            "ETRN between MAIL FROM and the end of DATA (RFC 1985 §5 forbids it)",
            after_ehlo(&[line(&format!("MAIL FROM:<x@{CLIENT_NAME}>")), etrn(served)]),
        ),
        probe(
            "etrn-lower-case",
            "etrn in lower case (RFC 5321 §2.4: verbs ignore case)",
            after_ehlo(&[line(&format!("etrn {served}"))]),
        ),
        probe(
            "etrn-bad-syntax",
            "ETRN -bad- (not a host name)",
            after_ehlo(&[etrn("-bad-")]),
        ),
        probe(
            "etrn-long-argument",
            "ETRN with a 600-octet argument (a 607-octet line)",
            after_ehlo(&[etrn(&long_arg)]),
        ),
        probe(
            "line-1100",
            "a 1100-octet ETRN line",
            after_ehlo(&[long_line(1100)]),
        ),
        probe(
            "line-2100",
            "a 2100-octet ETRN line",
            after_ehlo(&[long_line(2100)]),
        ),
        probe(
            "line-5000",
            "a 5000-octet ETRN line",
            after_ehlo(&[long_line(5000)]),
        ),
        probe(
            "line-20000",
            "a 20000-octet ETRN line",
            after_ehlo(&[long_line(20000)]),
        ),
        probe(
            "etrn-three-times",
            "the same ETRN three times in one session",
            after_ehlo(&[etrn(served), etrn(served), etrn(served)]),
        ),
        probe(
            "etrn-ten-times",
            "the same ETRN ten times in one session",
            after_ehlo(&vec![etrn(served); 10]),
        ),
        probe(
            "etrn-pipelined-quit",
            "ETRN and QUIT pipelined in one write (RFC 2920)",
            vec![
                Step::Greeting,
                ehlo(),
                Step::Pipelined(vec![etrn(served), line("QUIT")]),
            ],
        ),
        probe(
            "etrn-utf8",
            "ETRN with a UTF-8 domain (no SMTPUTF8 asked for)",
            after_ehlo(&[etrn("bücher.example")]),
        ),
        probe(
            "etrn-trailing-dot",
            "ETRN for the served domain with a trailing dot",
            after_ehlo(&[etrn(&format!("{served}."))]),
        ),
        probe(
            "etrn-a-label",
            "ETRN with an IDNA A-label domain",
            after_ehlo(&[etrn("xn--bcher-kva.example")]),
        ),
        probe(
            "etrn-at-alone",
            "ETRN @ (an option character and no node)",
            after_ehlo(&[etrn("@")]),
        ),
        probe(
            "etrn-upper-case-domain",
            "ETRN for the served domain in upper case",
            after_ehlo(&[etrn(&served.to_ascii_uppercase())]),
        ),
        probe(
            "etrn-address-literal",
            "ETRN [127.0.0.1] (an address literal)",
            after_ehlo(&[etrn("[127.0.0.1]")]),
        ),
        probe(
            "etrn-subdomains-not-served",
            "ETRN @domain for a domain the server does not relay for",
            after_ehlo(&[etrn("@b.example")]),
        ),
        probe(
            "etrn-queue-mqueue",
            "ETRN #mqueue (sendmail's default queue group)",
            after_ehlo(&[etrn("#mqueue")]),
        ),
        probe(
            "etrn-queue-not-served",
            "ETRN #domain for a domain the server does not relay for",
            after_ehlo(&[etrn("#b.example")]),
        ),
        probe(
            "etrn-two-spaces",
            "ETRN with two spaces before the domain",
            after_ehlo(&[line(&format!("ETRN  {served}"))]),
        ),
        probe(
            "etrn-trailing-space",
            "ETRN with a space after the domain",
            after_ehlo(&[line(&format!("ETRN {served} "))]),
        ),
        probe(
            "etrn-bare-lf",
            "ETRN ended by a bare LF (RFC 5321 §2.3.8 forbids it)",
            vec![
                Step::Greeting,
                ehlo(),
                Step::Line(format!("ETRN {served}\n").into_bytes()),
            ],
        ),
        probe(
            "talk-first",
            "EHLO sent before the greeting, then ETRN",
            vec![
                Step::TalkFirst(line(&format!("EHLO {CLIENT_NAME}"))),
                Step::Line(etrn(served)),
            ],
        ),
        probe("rset", "RSET", after_ehlo(&[line("RSET")])),
        probe(
            "unknown-command",
            "a command no server knows",
            after_ehlo(&[line("XYZZY")]),
        ),
        probe(
            "quit",
            "QUIT (RFC 5321 §4.1.1.10: 221, then the server closes)",
            vec![Step::Greeting, ehlo(), Step::Line(line("QUIT"))],
        ),
    ]
}

/// `ETRN aaa…` of exactly `octets` octets, CRLF included.
fn long_line(octets: usize) -> Vec<u8> {
    let mut l = b"ETRN ".to_vec();
    l.resize(octets.saturating_sub(2).max(5), b'a');
    l.extend_from_slice(b"\r\n");
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_every_probe_says_something() {
        let set = probe_set();
        let mut ids: Vec<_> = set.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), set.len());
        for p in &set {
            assert!(p.steps.iter().any(|s| s.sent().is_some()), "{}", p.id);
        }
        assert_eq!(long_line(1100).len(), 1100);
    }
}
