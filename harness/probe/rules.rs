//! What a smart host's answers to the probes must, should or may be: the server-side rules of
//! RFC 1985 and RFC 5321, graded as the client side grades (`must` fails, `should` fails only a
//! strict run, `informational` is reported).

use serde::Serialize;

use crate::ims::Grade;

use super::run::{End, ProbeResult, ReplyLines};

/// A server-side rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerRule {
    /// Every probe's connection opens with a greeting: 220, or a refusal (554, 421).
    Greeting,
    /// Every command gets one complete, well-formed reply within the deadline.
    ReplyToEveryCommand,
    /// A server that accepts ETRN advertises it in EHLO.
    EtrnAdvertised,
    /// ETRN replies use RFC 1985's codes, or ones RFC 5321 allows for any command.
    EtrnReplyCode,
    /// ETRN without an argument gets 500 or 501.
    EtrnArgumentRequired,
    /// An argument that is no node name (two words, `-bad-`, `@` alone, raw UTF-8) gets a 5xx.
    EtrnInvalidNode,
    /// ETRN inside a mail transaction is refused.
    EtrnInTransaction,
    /// `etrn` in lower case is the same command as `ETRN`.
    VerbCase,
    /// The server closes only after QUIT or a 421.
    ClosesOnlyAfterQuitOr421,
    /// QUIT gets 221 and the server closes.
    Quit,
    /// Pipelined commands get their replies in order.
    Pipelining,
    /// The served domain's ETRN is accepted (a set-up check, not a protocol rule).
    ServedAccepted,
    /// How lines longer than 512 octets are treated.
    LongLines,
    /// How a line ended by a bare LF is treated.
    BareLf,
}

impl ServerRule {
    pub const ALL: &'static [ServerRule] = &[
        ServerRule::Greeting,
        ServerRule::ReplyToEveryCommand,
        ServerRule::EtrnAdvertised,
        ServerRule::EtrnReplyCode,
        ServerRule::EtrnArgumentRequired,
        ServerRule::EtrnInvalidNode,
        ServerRule::EtrnInTransaction,
        ServerRule::VerbCase,
        ServerRule::ClosesOnlyAfterQuitOr421,
        ServerRule::Quit,
        ServerRule::Pipelining,
        ServerRule::ServedAccepted,
        ServerRule::LongLines,
        ServerRule::BareLf,
    ];

    pub fn id(self) -> &'static str {
        match self {
            ServerRule::Greeting => "greeting",
            ServerRule::ReplyToEveryCommand => "reply-to-every-command",
            ServerRule::EtrnAdvertised => "etrn-advertised",
            ServerRule::EtrnReplyCode => "etrn-reply-code",
            ServerRule::EtrnArgumentRequired => "etrn-argument-required",
            ServerRule::EtrnInvalidNode => "etrn-invalid-node",
            ServerRule::EtrnInTransaction => "etrn-in-transaction",
            ServerRule::VerbCase => "verb-case",
            ServerRule::ClosesOnlyAfterQuitOr421 => "closes-only-after-quit-or-421",
            ServerRule::Quit => "quit",
            ServerRule::Pipelining => "pipelining",
            ServerRule::ServedAccepted => "served-accepted",
            ServerRule::LongLines => "long-lines",
            ServerRule::BareLf => "bare-lf",
        }
    }

    /// The grade of breaking the rule.
    pub fn grade(self) -> Grade {
        match self {
            ServerRule::Greeting
            | ServerRule::ReplyToEveryCommand
            | ServerRule::EtrnAdvertised
            | ServerRule::EtrnReplyCode
            | ServerRule::VerbCase
            | ServerRule::Quit
            | ServerRule::Pipelining => Grade::Must,
            ServerRule::EtrnArgumentRequired
            | ServerRule::EtrnInvalidNode
            | ServerRule::EtrnInTransaction
            | ServerRule::ClosesOnlyAfterQuitOr421 => Grade::Should,
            ServerRule::ServedAccepted | ServerRule::LongLines | ServerRule::BareLf => {
                Grade::Informational
            }
        }
    }

    /// Where the rule comes from.
    pub fn basis(self) -> &'static str {
        match self {
            ServerRule::Greeting => "RFC 5321 §3.1, §4.2",
            ServerRule::ReplyToEveryCommand => "RFC 5321 §4.2, §4.5.3.2",
            ServerRule::EtrnAdvertised => "RFC 1985 §4",
            ServerRule::EtrnReplyCode => "RFC 1985 §5.1, §5.2; RFC 5321 §4.2.4",
            ServerRule::EtrnArgumentRequired => "RFC 1985 §5, §5.2",
            ServerRule::EtrnInvalidNode => "RFC 1985 §5, §8",
            ServerRule::EtrnInTransaction => "RFC 1985 §5",
            ServerRule::VerbCase => "RFC 5321 §2.4",
            ServerRule::ClosesOnlyAfterQuitOr421 => "RFC 5321 §3.8 (§7.8 allows defence)",
            ServerRule::Quit => "RFC 5321 §4.1.1.10",
            ServerRule::Pipelining => "RFC 2920 §3",
            ServerRule::ServedAccepted => "the probe's set-up: the server relays for a.example",
            ServerRule::LongLines => "RFC 5321 §4.5.3.1.4",
            ServerRule::BareLf => "RFC 5321 §2.3.8",
        }
    }

    /// What the rule asks, for people.
    pub fn text(self) -> &'static str {
        match self {
            ServerRule::Greeting => {
                "every connection opens with a 220 greeting (or a 554/421 refusal)"
            }
            ServerRule::ReplyToEveryCommand => {
                "every command gets one complete, well-formed reply within the deadline"
            }
            ServerRule::EtrnAdvertised => "a server that accepts ETRN advertises ETRN in EHLO",
            ServerRule::EtrnReplyCode => {
                "ETRN replies use RFC 1985's codes (250-253, 458, 459, 500, 501) or ones any command may get"
            }
            ServerRule::EtrnArgumentRequired => "ETRN without an argument gets 500 or 501",
            ServerRule::EtrnInvalidNode => "an argument that is no node name gets a 5xx (501)",
            ServerRule::EtrnInTransaction => "ETRN between MAIL and the end of DATA is refused",
            ServerRule::VerbCase => "`etrn` gets what `ETRN` gets",
            ServerRule::ClosesOnlyAfterQuitOr421 => {
                "the server closes the connection only after QUIT or a 421"
            }
            ServerRule::Quit => "QUIT gets 221 and the server closes",
            ServerRule::Pipelining => "pipelined commands get one reply each, in order",
            ServerRule::ServedAccepted => "ETRN for the served domain is accepted (2xx)",
            ServerRule::LongLines => "lines over 512 octets may be refused with 500",
            ServerRule::BareLf => "a bare LF is not a line end",
        }
    }
}

/// Whether an answer meets or breaks a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Meets,
    Breaks,
    /// Noted: an informational rule's observation.
    Note,
}

/// One rule applied to one probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub probe: String,
    pub rule: ServerRule,
    pub grade: Grade,
    pub outcome: Outcome,
    pub detail: String,
}

/// RFC 1985's ETRN reply codes (§5.1, §5.2).
const RFC1985_CODES: &[u16] = &[250, 251, 252, 253, 458, 459, 500, 501];
/// Codes RFC 5321 lets a server give any command.
const GENERIC_CODES: &[u16] = &[421, 450, 451, 452, 502, 503, 504, 530, 550, 554];

/// Applies every rule to the probe results.
///
/// Long because it is one table: a check per server rule, in the rules' order, so adding a rule
/// touches one place.
pub fn judge(results: &[ProbeResult]) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut add = |r: &ProbeResult, rule: ServerRule, meets: bool, detail: String| {
        let outcome = match (meets, rule.grade()) {
            (true, _) => Outcome::Meets,
            (false, Grade::Informational) => Outcome::Note,
            (false, _) => Outcome::Breaks,
        };
        out.push(Finding {
            probe: r.id.clone(),
            rule,
            grade: rule.grade(),
            outcome,
            detail,
        });
    };
    let find = |id: &str| results.iter().find(|r| r.id == id);
    let advertised = find("ehlo").is_some_and(|r| {
        r.replies().nth(1).is_some_and(|ehlo| {
            ehlo.code == 250
                && crate::wire::ehlo::advertises(
                    ehlo.lines.iter().skip(1).map(String::as_str),
                    "ETRN",
                )
        })
    });
    let mut accepted_any = false;
    for r in results {
        let replies: Vec<&ReplyLines> = r.replies().collect();
        let talks_first = r.id == "talk-first";
        if !talks_first {
            let first = replies.first().map(|g| g.code);
            add(
                r,
                ServerRule::Greeting,
                matches!(first, Some(220 | 554 | 421)),
                match first {
                    Some(c) => format!("greeting {c}"),
                    None => "no greeting".into(),
                },
            );
        }
        let unanswered = r.unanswered();
        // Commands left unanswered by a close count, unless a 421 said the server was going.
        let cut_off = r.end == End::ClosedByServer
            && unanswered > 0
            && replies.last().is_none_or(|l| l.code != 421);
        let ended_badly = matches!(
            r.end,
            End::NoReply { .. } | End::Malformed { .. } | End::Failed { .. }
        );
        let complete = !ended_badly && !cut_off;
        let detail = match (&r.end, unanswered) {
            (End::ClosedByServer, n) if n > 0 => format!("closed with {n} command(s) unanswered"),
            (end, _) => end.describe(),
        };
        add(r, ServerRule::ReplyToEveryCommand, complete, detail);
        for (i, code) in etrn_codes(r) {
            accepted_any |= (200..300).contains(&code);
            let known = RFC1985_CODES.contains(&code) || GENERIC_CODES.contains(&code);
            add(
                r,
                ServerRule::EtrnReplyCode,
                known,
                format!("ETRN reply {} is {code}", i + 1),
            );
        }
        let closed_unasked = r.end == End::ClosedByServer;
        if closed_unasked {
            let after_421 = replies.last().is_some_and(|l| l.code == 421);
            add(
                r,
                ServerRule::ClosesOnlyAfterQuitOr421,
                after_421,
                format!(
                    "closed after {}",
                    replies.last().map_or("nothing".into(), |l| l.to_string())
                ),
            );
        }
        let last_etrn = etrn_codes(r).last().map(|(_, c)| *c);
        match r.id.as_str() {
            "etrn-no-argument" => add(
                r,
                ServerRule::EtrnArgumentRequired,
                matches!(last_etrn, Some(500 | 501)),
                format!("got {}", show(last_etrn)),
            ),
            "etrn-two-arguments" | "etrn-bad-syntax" | "etrn-at-alone" | "etrn-utf8" => add(
                r,
                ServerRule::EtrnInvalidNode,
                last_etrn.is_some_and(|c| c >= 500),
                format!("got {}", show(last_etrn)),
            ),
            "etrn-in-transaction" => add(
                r,
                ServerRule::EtrnInTransaction,
                last_etrn.is_some_and(|c| c >= 500),
                format!("got {}", show(last_etrn)),
            ),
            "etrn-served" => add(
                r,
                ServerRule::ServedAccepted,
                last_etrn.is_some_and(|c| (200..300).contains(&c)),
                format!("got {}", show(last_etrn)),
            ),
            "quit" | "etrn-pipelined-quit" => {
                let quit_ok =
                    replies.last().is_some_and(|l| l.code == 221) && r.end == End::ClosedAfterQuit;
                add(
                    r,
                    ServerRule::Quit,
                    quit_ok,
                    format!(
                        "{}, {}",
                        replies
                            .last()
                            .map_or("no reply".into(), |l| l.code.to_string()),
                        r.end.describe()
                    ),
                );
                if r.id == "etrn-pipelined-quit" {
                    add(
                        r,
                        ServerRule::Pipelining,
                        replies.len() == 4,
                        format!(
                            "{} replies to 2 pipelined commands",
                            replies.len().saturating_sub(2)
                        ),
                    );
                }
            }
            "etrn-lower-case" => {
                let upper = find("etrn-served").and_then(|s| etrn_codes(s).last().map(|(_, c)| *c));
                // Recognised as ETRN: answered as `ETRN` was, or at least not as an unknown
                // command (a queue run still going may change the answer, not the verb).
                add(
                    r,
                    ServerRule::VerbCase,
                    upper == last_etrn || !matches!(last_etrn, Some(500 | 502) | None),
                    format!("etrn: {}, ETRN: {}", show(last_etrn), show(upper)),
                );
            }
            "etrn-long-argument" | "line-1100" | "line-2100" | "line-5000" | "line-20000" => add(
                r,
                ServerRule::LongLines,
                false,
                format!("got {}, {}", show(last_etrn), r.end.describe()),
            ),
            "etrn-bare-lf" => add(
                r,
                ServerRule::BareLf,
                last_etrn.is_none(),
                match last_etrn {
                    Some(c) => format!("acted on the line: {c}"),
                    None => "not acted on".into(),
                },
            ),
            _ => {}
        }
    }
    if let Some(r) = find("ehlo") {
        add(
            r,
            ServerRule::EtrnAdvertised,
            advertised || !accepted_any,
            format!(
                "ETRN {} advertised; {} ETRN accepted",
                if advertised { "is" } else { "is not" },
                if accepted_any { "an" } else { "no" }
            ),
        );
    }
    out
}

fn show(code: Option<u16>) -> String {
    code.map_or("no reply".into(), |c| c.to_string())
}

/// The codes of the replies to the probe's ETRN lines (index among them, code).
fn etrn_codes(r: &ProbeResult) -> Vec<(usize, u16)> {
    r.etrn_replies()
        .into_iter()
        .enumerate()
        .map(|(i, reply)| (i, reply.code))
        .collect()
}
