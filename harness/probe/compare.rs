//! Comparing two probe runs: a real server's and a profile's.
//!
//! Reply codes and connection states must be equal. Texts are compared after masking what
//! differs between any two runs of the same server and is no part of its behaviour:
//! - the server's host name (the first word of its first 220 greeting) becomes `<host>`;
//! - dates in RFC 5322 form (`Sat, 05 Dec 2026 08:17:32 +0000`, `Sat, 5 Dec 2026 08:17:32
//!   GMT`) become `<date>`;
//! - the client's EHLO name ([`CLIENT_NAME`]) becomes `<client>`;
//! - the client's address as the server saw it becomes `<client-ip>`.
//!
//! Timing is not compared (sendmail delays its tenth ETRN reply, Exim its 221).

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use super::run::{End, Line, ProbeResult};
use super::set::CLIENT_NAME;

static DATE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2}( [+-]\d{4}| [A-Z]{1,5})?",
    )
    .ok()
});

/// What to mask in one run's texts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Masks {
    /// The server's name, if its greeting gave one.
    pub host: Option<String>,
    /// The client's address as the server saw it.
    pub client_ip: String,
}

impl Masks {
    /// The masks of a run: the host name from its first 220 greeting.
    pub fn of(results: &[ProbeResult], client_ip: &str) -> Masks {
        let host = results
            .iter()
            .flat_map(|r| r.replies())
            .find(|r| r.code == 220)
            .and_then(|r| r.lines.first())
            .and_then(|l| l.split_whitespace().next())
            .map(str::to_owned);
        Masks {
            host,
            client_ip: client_ip.to_owned(),
        }
    }

    /// `text` masked, line by line; a reply line's code and separator (`250-`) are kept apart.
    pub fn apply(&self, text: &str) -> String {
        text.split('\n')
            .map(|line| {
                let prefixed = line.len() >= 4
                    && line.as_bytes()[..3].iter().all(u8::is_ascii_digit)
                    && matches!(line.as_bytes()[3], b' ' | b'-');
                if prefixed {
                    format!("{}{}", &line[..4], self.apply_text(&line[4..]))
                } else {
                    self.apply_text(line)
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn apply_text(&self, text: &str) -> String {
        let mut out = match DATE.as_ref() {
            Some(re) => re.replace_all(text, "<date>").into_owned(),
            None => text.to_owned(),
        };
        out = out.replace(CLIENT_NAME, "<client>");
        if !self.client_ip.is_empty() {
            out = out.replace(&self.client_ip, "<client-ip>");
        }
        if let Some(host) = &self.host {
            out = replace_word(&out, host, "<host>");
        }
        out
    }
}

/// Replaces `word` where it stands as a whole word (not inside `mx.test.example`).
fn replace_word(text: &str, word: &str, by: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + word.len()..].chars().next();
        let part_of_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '-');
        let dotted = after == Some('.')
            && rest[at + word.len() + 1..]
                .chars()
                .next()
                .is_some_and(char::is_alphanumeric);
        out.push_str(&rest[..at]);
        if part_of_word(before) || part_of_word(after) || dotted {
            out.push_str(word);
        } else {
            out.push_str(by);
        }
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

/// One difference between the server and the profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub probe: String,
    /// What differs: `code`, `text`, `connection`, or `reply-count`.
    pub kind: DifferenceKind,
    /// 1-based reply number within the probe (0 for the connection state).
    pub reply: usize,
    /// What the server said (masked).
    pub server: String,
    /// What the profile said (masked).
    pub profile: String,
}

/// The kinds of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DifferenceKind {
    Code,
    Text,
    Connection,
    ReplyCount,
}

impl std::fmt::Display for DifferenceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DifferenceKind::Code => "code",
            DifferenceKind::Text => "text",
            DifferenceKind::Connection => "connection",
            DifferenceKind::ReplyCount => "reply count",
        })
    }
}

/// Every difference between a server's run and a profile's, probe by probe.
pub fn compare(
    server: &[ProbeResult],
    server_masks: &Masks,
    profile: &[ProbeResult],
    profile_masks: &Masks,
) -> Vec<Difference> {
    let mut out = Vec::new();
    for (s, p) in server.iter().zip(profile) {
        let s_replies: Vec<_> = s.replies().collect();
        let p_replies: Vec<_> = p.replies().collect();
        let diff = |kind, reply, server: String, profile: String| Difference {
            probe: s.id.clone(),
            kind,
            reply,
            server,
            profile,
        };
        for (i, (a, b)) in s_replies.iter().zip(&p_replies).enumerate() {
            if a.code != b.code {
                out.push(diff(
                    DifferenceKind::Code,
                    i + 1,
                    server_masks.apply(&a.to_string()),
                    profile_masks.apply(&b.to_string()),
                ));
            } else {
                let a_text = server_masks.apply(&a.to_string());
                let b_text = profile_masks.apply(&b.to_string());
                if a_text != b_text {
                    out.push(diff(DifferenceKind::Text, i + 1, a_text, b_text));
                }
            }
        }
        if s_replies.len() != p_replies.len() {
            let show = |r: &ProbeResult| {
                r.replies()
                    .map(|r| r.code.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push(diff(
                DifferenceKind::ReplyCount,
                s_replies.len().min(p_replies.len()) + 1,
                format!("{} replies ({})", s_replies.len(), show(s)),
                format!("{} replies ({})", p_replies.len(), show(p)),
            ));
        }
        if !same_end(&s.end, &p.end) {
            out.push(diff(
                DifferenceKind::Connection,
                0,
                s.end.describe(),
                p.end.describe(),
            ));
        }
    }
    out
}

fn same_end(a: &End, b: &End) -> bool {
    match (a, b) {
        // The deadline is each driver's own; what matters is that nothing came.
        (End::NoReply { .. }, End::NoReply { .. }) => true,
        _ => a == b,
    }
}

/// A run's transcript, masked, for reports.
pub fn masked_transcript(result: &ProbeResult, masks: &Masks) -> Vec<String> {
    result
        .transcript
        .iter()
        .map(|l| match l {
            // A 20000-octet line is shown by its start and its length.
            Line::Client(c) if c.len() > 120 => {
                let cut = c.char_indices().nth(60).map_or(c.len(), |(i, _)| i);
                format!("C: {}… ({} characters)", &c[..cut], c.len())
            }
            Line::Client(c) => format!("C: {c}"),
            // A server's text is shown escaped: it must not drive the reader's terminal.
            Line::Server(r) => masks
                .apply(&r.to_string())
                .lines()
                .map(|l| format!("S: {}", crate::escape::escape(l.as_bytes())))
                .collect::<Vec<_>>()
                .join("\n"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_what_is_no_part_of_a_servers_behaviour() {
        let m = Masks {
            host: Some("mx.test".into()),
            client_ip: "127.0.0.1".into(),
        };
        assert_eq!(
            m.apply("220 mx.test ESMTP Exim 4.96 Sat, 05 Dec 2026 08:33:50 +0000"),
            "220 <host> ESMTP Exim 4.96 <date>"
        );
        assert_eq!(
            m.apply("220 mx.test ESMTP Sendmail 8.17.1.9; Sat, 5 Dec 2026 08:33:50 GMT; from: localhost [127.0.0.1]"),
            "220 <host> ESMTP Sendmail 8.17.1.9; <date>; from: localhost [<client-ip>]"
        );
        assert_eq!(
            m.apply("250-mx.test Hello client.example [127.0.0.1]"),
            "250-<host> Hello <client> [<client-ip>]"
        );
        // Not inside another name.
        assert_eq!(m.apply("459 <mx.test.example>"), "459 <mx.test.example>");
        assert_eq!(
            m.apply("221 2.0.0 mx.test closing"),
            "221 2.0.0 <host> closing"
        );
    }
}
