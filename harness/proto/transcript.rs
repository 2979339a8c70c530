//! RFC-style transcripts: `C:` and `S:` lines from a session's events.
//!
//! Command lines are shown escaped (a bare LF or a non-UTF-8 byte stays visible) and credentials
//! are already redacted by the session; reply lines are shown as they went on the wire, without
//! CRLF.

use super::event::Event;

fn trim_line_end(raw: &[u8]) -> &[u8] {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    raw.strip_suffix(b"\r").unwrap_or(raw)
}

/// Renders the commands and replies among `events`, one line each.
pub fn transcript<'a>(events: impl IntoIterator<Item = &'a Event>) -> String {
    let mut out = String::new();
    for e in events {
        match e {
            Event::Command(c) => {
                out.push_str("C: ");
                out.push_str(&c.text());
                if c.bare_lf {
                    out.push_str("   [bare LF]");
                }
                out.push('\n');
            }
            Event::Reply { code, lines } => {
                let last = lines.len().saturating_sub(1);
                for (i, l) in lines.iter().enumerate() {
                    let sep = if i == last { ' ' } else { '-' };
                    if l.is_empty() && i == last {
                        out.push_str(&format!("S: {code}\n"));
                    } else {
                        out.push_str(&format!("S: {code}{sep}{l}\n"));
                    }
                }
            }
            Event::Message(m) => {
                out.push_str(&format!("C: [message data, {} octets]\nC: .\n", m.size));
            }
            Event::DiscardedAfterStartTls { octets } => {
                out.push_str(&format!(
                    "   [{octets} octets pipelined after STARTTLS discarded]\n"
                ));
            }
            Event::ReplayMismatch {
                position,
                expected,
                actual,
            } => {
                out.push_str(&format!(
                    "   [replay mismatch at exchange {position}: expected {expected}, got {actual}]\n"
                ));
            }
            Event::ReplayUnplayed { exchanges, first } => {
                out.push_str(&format!(
                    "   [replay ended with {exchanges} recorded exchange(s) unplayed, from exchange {first}]\n"
                ));
            }
            Event::AfterClose { raw } => {
                out.push_str(&format!(
                    "C: {}   [after the 421, not answered]\n",
                    crate::escape::escape(trim_line_end(raw))
                ));
            }
            Event::Unterminated { raw } => {
                out.push_str(&format!(
                    "C: {}   [unterminated when the client closed, not answered]\n",
                    crate::escape::escape(raw)
                ));
            }
            Event::LineTooLong { octets } => {
                out.push_str(&format!("   [{octets}-octet line discarded]\n"));
            }
            _ => {}
        }
    }
    out
}
