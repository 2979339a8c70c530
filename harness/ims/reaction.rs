//! How the IMS reacts to the reply to each ETRN (spec O-11, `scenarios/README.md`).
//!
//! No source describes IMS's reply handling, so this is the model's baseline: RFC 1985 §5.1
//! success codes and refusals continue with the next domain, RFC 1985 §5.2 (erratum 4130) stops
//! after 500/501, and 421 ends the conversation.

use serde::Serialize;

use crate::reply::ReplyCode;

use super::rules::Rule;

/// What the client does after one ETRN reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reaction {
    /// Send the next ETRN, if any.
    Continue,
    /// Send no further ETRN in this session; QUIT normally.
    StopEtrn,
    /// The server is closing: send nothing further, not even QUIT.
    Disconnect,
}

impl Reaction {
    pub fn label(self) -> &'static str {
        match self {
            Reaction::Continue => "continue",
            Reaction::StopEtrn => "stop sending ETRN, then QUIT",
            Reaction::Disconnect => "send nothing further (no QUIT)",
        }
    }
}

/// The reaction to a reply code, with the rule that decides it.
pub fn react(code: ReplyCode) -> (Reaction, Rule) {
    match code.get() {
        250..=253 => (Reaction::Continue, Rule::ReplySuccess),
        458 | 459 => (Reaction::Continue, Rule::ReplyRefused),
        500 | 501 => (Reaction::StopEtrn, Rule::ReplySyntax),
        421 => (Reaction::Disconnect, Rule::ReplyClosing),
        _ => (Reaction::Continue, Rule::ReplyOther),
    }
}

/// The reply classes a plan prints, in order, with a representative code for each.
pub const REPLY_CLASSES: &[(&str, ReplyCode)] = &[
    ("250 251 252 253", ReplyCode::of(250)),
    ("458 459", ReplyCode::of(458)),
    ("500 501", ReplyCode::of(500)),
    ("421", ReplyCode::of(421)),
    ("other (450 451 502 503 554 ...)", ReplyCode::of(502)),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn r(code: u16) -> Reaction {
        react(ReplyCode::new(code).unwrap()).0
    }

    #[test]
    fn every_rfc1985_code_has_its_baseline_reaction() {
        for c in [250, 251, 252, 253, 458, 459, 502, 503, 450, 451, 554] {
            assert_eq!(r(c), Reaction::Continue, "{c}");
        }
        assert_eq!(r(500), Reaction::StopEtrn);
        assert_eq!(r(501), Reaction::StopEtrn);
        assert_eq!(r(421), Reaction::Disconnect);
    }
}
