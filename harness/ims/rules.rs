//! The rules of the model, each with its basis and grade.
//!
//! Every decision the planner makes names one of these rules, so a plan (and later a conformance
//! failure) can say *why* an ETRN was or was not expected and how much evidence stands behind it.
//! Grades follow the spec (`scenarios/README.md`), whose rows the bases cite as `spec X`: **must** is documented behaviour or a hard RFC requirement,
//! **should** is RFC guidance or strong inference, **informational** is an open question where the
//! model had to pick a baseline.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How much a deviation from a rule counts.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Grade {
    /// An open question: reported, never fails.
    Informational,
    /// RFC guidance or strong inference: fails only a strict run.
    Should,
    /// Documented behaviour or a hard requirement: a deviation fails.
    Must,
}

impl fmt::Display for Grade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Grade::Must => "must",
            Grade::Should => "should",
            Grade::Informational => "informational",
        })
    }
}

macro_rules! rules {
    ($( $(#[$doc:meta])* $variant:ident = ($id:literal, $grade:ident, $basis:literal, $summary:literal), )*) => {
        /// A rule of the IMS dequeue model.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum Rule { $( $(#[$doc])* $variant, )* }

        impl Rule {
            /// Every rule, in the order the model applies them.
            pub const ALL: &'static [Rule] = &[$(Rule::$variant),*];
            /// A short stable identifier, used in plans and reports.
            /// Long only as a line count runs on into the `rules!` table: one arm per rule, so adding a
            /// rule touches one place.
            pub fn id(self) -> &'static str { match self { $(Rule::$variant => $id,)* } }
            /// How a deviation from this rule is graded.
            /// Long only as a line count runs on into the `rules!` table: one arm per rule, so adding a
            /// rule touches one place.
            pub fn grade(self) -> Grade { match self { $(Rule::$variant => Grade::$grade,)* } }
            /// The source: KB article, RFC section, or `spec` row of `scenarios/README.md`.
            /// Long only as a line count runs on into the `rules!` table: one arm per rule, so adding a
            /// rule touches one place.
            pub fn basis(self) -> &'static str { match self { $(Rule::$variant => $basis,)* } }
            /// One sentence saying what the rule decides.
            /// Long only as a line count runs on into the `rules!` table: one arm per rule, so adding a
            /// rule touches one place.
            pub fn summary(self) -> &'static str { match self { $(Rule::$variant => $summary,)* } }
            /// The rule with this [`id`](Rule::id), as reports name it.
            /// Long only as a line count runs on into the `rules!` table: one arm per rule, so adding a
            /// rule touches one place.
            pub fn from_id(id: &str) -> Option<Rule> { Rule::ALL.iter().copied().find(|r| r.id() == id) }
        }
    };
}

rules! {
    /// T16: ETRN needs Exchange 5.0 SP1 or later.
    VersionGate = ("version-gate", Must, "KB184185",
        "Exchange 4.0 and 5.0 before SP1 never send ETRN"),
    /// T1: without AlwaysUseETRN, ETRN goes only over dial-up connections.
    DefaultDialUpOnly = ("default-dial-up-only", Must, "KB175494",
        "without AlwaysUseETRN=1 and without dial-up ETRN retrieval no ETRN is sent"),
    /// T5: IMS connects only when it has outbound mail.
    NoOutboundNoConnection = ("no-outbound-no-connection", Must, "KB241157",
        "with no outbound mail queued IMS makes no connection, so sends no ETRN"),
    /// T6, T7: the full set goes to every host IMS connects to.
    EveryConnection = ("every-connection", Must, "KB175494, KB241157",
        "every connection to an ETRN-capable host carries the full domain set"),
    /// O-19 baseline: parallel connections to one host each carry the set.
    ParallelConnections = ("parallel-connections", Informational, "spec O-19",
        "each of connections_per_host parallel connections to one host is made and carries the set"),
    /// T12: AlwaysUseTURN replaces ETRN.
    TurnInsteadOfEtrn = ("turn-instead-of-etrn", Must, "KB257979",
        "AlwaysUseTURN=1 makes IMS issue TURN rather than ETRN, and nothing else does"),
    /// O-14 baseline: AUTH then TURN, after outbound mail; AUT has precedence.
    TurnForm = ("turn-form", Informational, "spec O-14",
        "AUTH then TURN (not ATRN) after outbound mail; without credentials no TURN"),
    /// T4: ETRN only to hosts that advertise it.
    EhloGating = ("ehlo-gating", Must, "KB175494",
        "ETRN only when the EHLO reply advertises the ETRN keyword (case-insensitive)"),
    /// O-18 baseline: HELO fallback allowed, but no ETRN after HELO.
    HeloFallback = ("helo-fallback", Should, "KB175494; spec O-18",
        "when EHLO is refused IMS falls back to HELO and sends no ETRN"),
    /// T2: Do not reroute sends the Site Addressing domain.
    SiteDomain = ("site-domain", Must, "KB269771",
        "\"Do not reroute incoming SMTP mail\": one ETRN for the Site Addressing SMTP domain"),
    /// O-16 baseline: the domain is the text after the last `@`.
    SiteDomainSplit = ("site-domain-split", Informational, "spec O-16",
        "the site domain is the text after the last '@' of the site address, case kept"),
    /// T3: Reroute sends every routing-table domain.
    RoutingTable = ("routing-table", Must, "KB269771",
        "\"Reroute incoming SMTP mail\": one ETRN for every domain in the Routing-tab table"),
    /// E15: under Reroute the site domain is sent only when it is a row.
    SiteDomainUnderReroute = ("site-domain-under-reroute", Should, "KB269771; spec E15",
        "under \"Reroute\" the site domain is not added unless it is a routing-table row"),
    /// E05 and the site-domain baseline: the configured text goes on the wire as it is.
    LiteralForm = ("literal-form", Informational, "RFC 5321 §2.4, RFC 5890; spec O-16",
        "a domain is sent as configured: its case, a trailing dot and U-labels are kept"),
    /// O-8 baseline: rows of every action are included.
    RoutingRowAnyAction = ("routing-row-any-action", Informational, "spec O-8",
        "reroute and relay rows are included, not only inbound rows"),
    /// O-5 baseline: routing-table order.
    EtrnOrder = ("etrn-order", Informational, "spec O-5",
        "the domains go in routing-table (or dial-up list) order; replies by occurrence follow it"),
    /// O-6 baseline: `#` exact entries are sent without the `#`.
    ExactEntryStripped = ("exact-entry-stripped", Informational, "KB169683; spec O-6",
        "a '#' exact-match entry is sent without the '#'"),
    /// O-7 baseline: duplicates collapse, first occurrence kept.
    Deduplicate = ("deduplicate", Informational, "spec O-7",
        "case-insensitive duplicates are sent once, at their first position"),
    /// O-9 baseline: an empty table under Reroute sends nothing.
    EmptyTable = ("empty-table", Informational, "spec O-9",
        "an empty routing table under Reroute sends no ETRN (no site-domain fallback)"),
    /// T10: the dial-up "use these domains" list.
    DialUpList = ("dial-up-list", Should, "KB235223",
        "dial-up ETRN retrieval with a domain list sends the list in order"),
    /// T9 baseline: dial-up default domains follow the AlwaysUseETRN rule.
    DialUpDefault = ("dial-up-default", Informational, "spec O-2",
        "dial-up ETRN retrieval without a list uses the AlwaysUseETRN domain set"),
    /// O-13 baseline: the narrower reading of the Dial-up tab; its list replaces the AlwaysUseETRN set.
    DialUpWithAlwaysUseEtrn = ("dial-up-with-always-use-etrn", Informational, "spec O-13",
        "dial-up \"use these domains\" with AlwaysUseETRN: the dial-up connection sends the list only"),
    /// O-22 baseline: dial-up ETRN is sent without outbound mail too.
    DialUpWithoutOutbound = ("dial-up-without-outbound", Informational, "spec O-22",
        "a dial-up connection with ETRN retrieval is made even with no outbound mail"),
    /// T11: a retrieval command runs locally, it is not an SMTP verb.
    DialUpCommand = ("dial-up-command", Must, "KB155828",
        "a dial-up retrieval command runs as a local process, never as an SMTP command"),
    /// T14 baseline: DisableETRN concerns the server role only.
    DisableEtrnServerOnly = ("disable-etrn-server-only", Informational, "KB258292; spec O-15",
        "DisableETRN=1 does not change what the IMS sends as a client"),
    /// O-10, O-24 baseline: one plain `ETRN <domain>` per domain.
    OneDomainPerCommand = ("one-domain-per-command", Should, "RFC 1985 §5",
        "one ETRN per domain, no '@' or '#' added"),
    /// RFC 1985 §5: the argument is a node name (a domain), nothing else.
    ValidArgument = ("valid-argument", Should, "RFC 1985 §5",
        "each ETRN argument is a node name"),
    /// RFC 5321 §2.3.8: every line ends with CRLF.
    CrlfLineEnds = ("crlf-line-ends", Must, "RFC 5321 §2.3.8",
        "every command line ends with CRLF, never a bare LF"),
    /// RFC 5321 §2.4: verbs are case-insensitive; the IMS writes them in upper case.
    UpperCaseVerb = ("upper-case-verb", Informational, "RFC 5321 §2.4",
        "the verb is written in upper case (any case is legal)"),
    /// The model's session ends with QUIT (the session shape of the spec).
    QuitBeforeClosing = ("quit-before-closing", Should, "RFC 5321 §4.1.1.10",
        "a session the server did not close ends with QUIT"),
    /// RFC 6531 §3.2: raw UTF-8 only to a server that advertised SMTPUTF8.
    Utf8NeedsSmtputf8 = ("u-label-needs-smtputf8", Informational, "RFC 6531 §3.2",
        "a U-label goes raw only to a server that advertised SMTPUTF8"),
    /// E44: the IMS waits for each ETRN's reply before the next command.
    AwaitEachReply = ("await-each-reply", Must, "KB175494; spec E44",
        "no command is sent before the reply to an ETRN (or to the command before an ETRN)"),
    /// E43: ETRN rides the connection made to deliver mail; that mail is delivered on it.
    OutboundMail = ("outbound-mail", Must, "KB241157; spec E43",
        "each connection delivers the queued outbound mail (MAIL, RCPT, DATA) it was made for"),
    /// O-4 baseline: outbound mail first, then ETRN, then QUIT.
    OutboundFirst = ("outbound-first", Informational, "spec O-4",
        "outbound MAIL transactions first, then the ETRNs, then QUIT"),
    /// RFC 1985 §5: never inside a mail transaction.
    NotInTransaction = ("not-in-transaction", Must, "RFC 1985 §5",
        "ETRN is never sent between MAIL and the end of DATA"),
    /// O-11 baseline: 250-253 are success.
    ReplySuccess = ("reply-success", Should, "RFC 1985 §5.1",
        "250, 251, 252 and 253 are success: continue with the next domain"),
    /// O-11 baseline: 458/459 refuse one node; go on.
    ReplyRefused = ("reply-refused", Informational, "RFC 1985 §5.2; spec O-11",
        "458 and 459 refuse this node only: continue with the next domain"),
    /// RFC 1985 §5.2 with erratum 4130: stop after 500/501.
    ReplySyntax = ("reply-syntax", Should, "RFC 1985 §5.2, erratum 4130",
        "after 500 or 501 send no further ETRN in this session, then QUIT"),
    /// 421: the server is closing the connection.
    ReplyClosing = ("reply-closing", Must, "RFC 5321 §3.8",
        "after 421 the connection is closing: send nothing further"),
    /// O-11 baseline: no reply means the connection is gone.
    NoReply = ("no-reply", Informational, "spec O-11",
        "no reply (the server hung up or timed out): drop the connection, no further ETRN"),
    /// O-11 baseline: other codes refuse this node only.
    ReplyOther = ("reply-other", Informational, "spec O-11",
        "any other code (450, 451, 502, 503, 554, ...) fails this node only: continue"),
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}; {})", self.id(), self.grade(), self.basis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_every_rule_has_a_basis() {
        let ids: HashSet<_> = Rule::ALL.iter().map(|r| r.id()).collect();
        assert_eq!(ids.len(), Rule::ALL.len());
        assert!(Rule::ALL.iter().all(|r| !r.basis().is_empty()));
    }
}
