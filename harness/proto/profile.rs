//! Server profiles: how real ETRN servers answer, as reviewed data files.
//!
//! Each file in `harness/proto/profiles/` is one server as it was observed on loopback with
//! `etrn-harness probe` (spec S rows, `scenarios/README.md`): its greeting, EHLO reply, the texts
//! of the commands a probe sends, its line-length limit, an optional greet pause, and an ordered
//! list of ETRN rules. A file names the server version it was verified against; `probe
//! --against-profile` re-proves it against a running server. A scenario names a profile and
//! overrides what it needs; `serve --profile-file` runs a profile of one's own (for instance one
//! written by `probe --emit-profile`).
//!
//! Replies may use placeholders, filled in by the session: in every reply `{host}` (the server's
//! name), `{client}` (the EHLO or HELO argument), `{client_ip}` (the client's address) and
//! `{date}` (the time the connection was accepted, RFC 5322 form); in ETRN replies `{arg}` (the
//! argument, outer blanks trimmed), `{node}` (the same without its leading `@` or `#`) and
//! `{arg7}` (the argument with its trailing blanks and the eighth bit of each byte cleared, as
//! sendmail echoes it); `{from}` (the MAIL FROM path) in `mail`; `{command}` (the line) in
//! `unknown_command`.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::proto::{CommandLimit, ErrorLimit, EtrnFacts, GreetPause, LongLine, ServerReplies};
use crate::reply::Reply;

/// The shipped profiles.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ProfileName {
    /// RFC 1985's own reply texts; accepts every node.
    #[default]
    Rfc1985,
    /// Postfix 3.7: 250 for `served` domains (fast_flush_domains), 459 for the rest.
    Postfix,
    /// Exim 4.96 with acl_smtp_etrn and no smtp_etrn_command: 501 unless the argument starts
    /// with '#'.
    Exim,
    /// Exim 4.96 as Debian configures it: ETRN not advertised, 458 to every ETRN.
    EximDefault,
    /// Exim 4.96 with a working smtp_etrn_command: 250 for `served` domains.
    EximEtrnCommand,
    /// sendmail 8.17: accepts everything, echoes the argument; Debian's one-second greet pause.
    Sendmail,
    /// Exchange 5.5 IMS in the server role.
    ExchangeIms,
}

impl ProfileName {
    pub const ALL: &'static [ProfileName] = &[
        ProfileName::Rfc1985,
        ProfileName::Postfix,
        ProfileName::Exim,
        ProfileName::EximDefault,
        ProfileName::EximEtrnCommand,
        ProfileName::Sendmail,
        ProfileName::ExchangeIms,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProfileName::Rfc1985 => "rfc1985",
            ProfileName::Postfix => "postfix",
            ProfileName::Exim => "exim",
            ProfileName::EximDefault => "exim-default",
            ProfileName::EximEtrnCommand => "exim-etrn-command",
            ProfileName::Sendmail => "sendmail",
            ProfileName::ExchangeIms => "exchange-ims",
        }
    }

    /// The profile with this name, if there is one.
    pub fn from_name(name: &str) -> Option<ProfileName> {
        Self::ALL.iter().copied().find(|p| p.as_str() == name)
    }

    /// The profile file's text, as shipped.
    pub fn source(self) -> &'static str {
        match self {
            ProfileName::Rfc1985 => include_str!("profiles/rfc1985.toml"),
            ProfileName::Postfix => include_str!("profiles/postfix.toml"),
            ProfileName::Exim => include_str!("profiles/exim.toml"),
            ProfileName::EximDefault => include_str!("profiles/exim-default.toml"),
            ProfileName::EximEtrnCommand => include_str!("profiles/exim-etrn-command.toml"),
            ProfileName::Sendmail => include_str!("profiles/sendmail.toml"),
            ProfileName::ExchangeIms => include_str!("profiles/exchange-ims.toml"),
        }
    }

    /// Loads the shipped profile. The files are part of the crate and checked by a test, so an
    /// error here is a packaging bug; it is still reported rather than panicking.
    pub fn load(self) -> Result<Profile, ProfileError> {
        Profile::parse(self.source(), &format!("profile {}", self.as_str()))
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A profile file that cannot be used: where, what, and how to fix it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{origin}{}: {message}", location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct ProfileError {
    /// The file, or `profile NAME` for a shipped one.
    pub origin: String,
    /// Line and column (1-based), when the fault has a place.
    pub location: Option<(usize, usize)>,
    pub message: String,
}

/// The largest profile file read; a real one is a few KiB.
pub const MAX_PROFILE_FILE: u64 = 256 * 1024;

/// The longest `line_limit` a profile may set: the session holds one line that long per
/// connection.
pub const MAX_LINE_LIMIT: usize = 1024 * 1024;

/// The longest greet pause a profile may set (sendmail's default is one second).
pub const MAX_GREET_PAUSE_MILLIS: u64 = 60_000;

/// One server's observed behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub description: String,
    /// Where the replies come from (a spec row, a source file).
    pub basis: String,
    /// The server version and set-up this profile was proved against with `probe
    /// --against-profile`; empty for profiles never checked against a server.
    #[serde(default)]
    pub verified_against: String,
    /// The greeting; `{host}` and `{date}` are filled in.
    pub greeting: Reply,
    /// Debian's sendmail waits before greeting, and refuses a client that talks first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greet_pause: Option<GreetPause>,
    /// The first line of the EHLO reply, e.g. `{host}` or `{host} Hello {client} [{client_ip}]`.
    pub ehlo_first_line: String,
    /// Lines of the EHLO reply after the first, verbatim and in order.
    pub ehlo_keywords: Vec<String>,
    /// The reply to HELO.
    pub helo: Reply,
    /// The reply to an accepted MAIL FROM.
    pub mail: Reply,
    /// The reply to QUIT (the server then closes).
    pub quit: Reply,
    /// The reply to NOOP.
    pub noop: Reply,
    /// The reply to RSET.
    pub rset: Reply,
    /// The reply to a verb the server does not know.
    pub unknown_command: Reply,
    /// The longest command line the server reads, in octets with CRLF (RFC 5321 §4.5.3.1.4:
    /// at least 512).
    pub line_limit: usize,
    /// The reply to a longer line; or `"truncate"`: the first `line_limit` octets are read as
    /// the command and the rest of the line is discarded (Postfix); or `{ each_piece = "…" }`:
    /// that reply to every piece of `line_limit + 1` octets of the line and to its rest (Exim).
    pub line_too_long: LongLine,
    /// Exim ends a session after too many syntax or protocol errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_limit: Option<ErrorLimit>,
    /// Exim ends a session after too many commands that deliver no mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_limit: Option<CommandLimit>,
    /// How long a queue run started by an accepted ETRN lasts, for the `running` condition
    /// (Exim serialises ETRN runs per argument).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etrn_run_millis: Option<u64>,
    /// Queue names a `#queue` ETRN argument may name (the `known-queue` condition).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<String>,
    /// How ETRN is answered: the first rule whose conditions all hold.
    pub etrn: Vec<EtrnReplyRule>,
}

/// One ETRN rule: when every condition holds, this reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtrnReplyRule {
    /// Conditions that must all hold; `"!x"` negates `x`. One string is a list of one.
    #[serde(with = "one_or_many")]
    pub when: Vec<Condition>,
    pub reply: Reply,
}

/// A fact about one ETRN command that a rule can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Condition {
    pub negated: bool,
    pub test: EtrnTest,
}

/// What a [`Condition`] tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtrnTest {
    /// Always true: the last rule's catch-all.
    Any,
    /// `ETRN` with no argument.
    Missing,
    /// Inside MAIL … DATA.
    InTransaction,
    /// Before any EHLO or HELO.
    BeforeHello,
    /// More than one word.
    SeveralWords,
    /// The argument starts with `#`.
    Queue,
    /// The argument starts with `@`.
    Subdomains,
    /// `#name` where name is one of the profile's `queues` (compared ignoring case).
    KnownQueue,
    /// The node (the argument without a leading `@` or `#`) is a host name by Postfix's rules:
    /// labels of letters, digits and inner hyphens, at most 63 octets each and 255 in all, no
    /// empty label (so no trailing dot), not all digits.
    Hostname,
    /// The node is an address literal, `[192.0.2.1]` or `[IPv6:…]`.
    AddressLiteral,
    /// The argument has a byte outside ASCII.
    EightBit,
    /// The argument is one RFC 1985 node as the harness reads it: one word, an optional `@` or
    /// `#`, then a domain (U-labels and a trailing dot allowed) or, after `#`, any queue name.
    ValidArgument,
    /// The node is one the scenario's `served` list names (the server holds mail for it).
    Served,
    /// The argument as sent, compared ignoring case, is one of the `served` list's entries as
    /// written (no `@`/`#` stripped, no trailing dot forgiven): a lookup of the whole argument,
    /// as Exim's `smtp_etrn_command` does.
    ServedAsSent,
    /// An ETRN with the same argument (as sent) was accepted on this server less than
    /// `etrn_run_millis` before: its queue run is still going.
    Running,
}

impl EtrnTest {
    /// Every test.
    const ALL: [EtrnTest; 15] = [
        EtrnTest::Any,
        EtrnTest::Missing,
        EtrnTest::InTransaction,
        EtrnTest::BeforeHello,
        EtrnTest::SeveralWords,
        EtrnTest::Queue,
        EtrnTest::Subdomains,
        EtrnTest::KnownQueue,
        EtrnTest::Hostname,
        EtrnTest::AddressLiteral,
        EtrnTest::EightBit,
        EtrnTest::ValidArgument,
        EtrnTest::Served,
        EtrnTest::ServedAsSent,
        EtrnTest::Running,
    ];

    const NAMES: &'static [(&'static str, EtrnTest)] = &[
        ("any", EtrnTest::Any),
        ("missing", EtrnTest::Missing),
        ("in-transaction", EtrnTest::InTransaction),
        ("before-hello", EtrnTest::BeforeHello),
        ("several-words", EtrnTest::SeveralWords),
        ("queue", EtrnTest::Queue),
        ("subdomains", EtrnTest::Subdomains),
        ("known-queue", EtrnTest::KnownQueue),
        ("hostname", EtrnTest::Hostname),
        ("address-literal", EtrnTest::AddressLiteral),
        ("eight-bit", EtrnTest::EightBit),
        ("valid-argument", EtrnTest::ValidArgument),
        ("served", EtrnTest::Served),
        ("served-as-sent", EtrnTest::ServedAsSent),
        ("running", EtrnTest::Running),
    ];

    /// Whether the test is about the session's state rather than the argument.
    pub fn is_about_state(self) -> bool {
        matches!(
            self,
            EtrnTest::Missing | EtrnTest::InTransaction | EtrnTest::BeforeHello
        )
    }

    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("any", |(n, _)| n)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.negated {
            f.write_str("!")?;
        }
        f.write_str(self.test.name())
    }
}

impl std::str::FromStr for Condition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (negated, name) = match s.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let test = EtrnTest::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                let names: Vec<&str> = EtrnTest::NAMES.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown ETRN condition {s:?}; use one of {} (\"!\" negates)",
                    names.join(", ")
                )
            })?;
        Ok(Condition { negated, test })
    }
}

impl Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `when = "x"` or `when = ["x", "!y"]`.
mod one_or_many {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Condition;

    pub fn serialize<S: Serializer>(v: &[Condition], s: S) -> Result<S::Ok, S::Error> {
        match v {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Condition>, D::Error> {
        // Parsed by hand: an untagged enum would hide the condition's own message.
        let value = toml::Value::deserialize(d)?;
        match value {
            toml::Value::String(s) => s.parse().map(|c| vec![c]).map_err(serde::de::Error::custom),
            toml::Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    toml::Value::String(s) => s.parse().map_err(serde::de::Error::custom),
                    other => Err(serde::de::Error::custom(format!(
                        "a condition is a string, not {}",
                        other.type_str()
                    ))),
                })
                .collect(),
            other => Err(serde::de::Error::custom(format!(
                "`when` is a condition or a list of them, not {}",
                other.type_str()
            ))),
        }
    }
}

impl Profile {
    /// Parses a profile file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Profile, ProfileError> {
        let profile: Profile = toml::from_str(text).map_err(|e| ProfileError {
            origin: origin.to_owned(),
            location: e.span().map(|s| line_column(text, s.start)),
            message: e.message().to_owned(),
        })?;
        profile.check().map_err(|message| ProfileError {
            origin: origin.to_owned(),
            location: None,
            message,
        })?;
        Ok(profile)
    }

    /// Reads a profile file: a regular file, at most `MAX_PROFILE_FILE` octets.
    pub fn read(path: &Path) -> Result<Profile, ProfileError> {
        let origin = path.display().to_string();
        let fail = |message: String| ProfileError {
            origin: origin.clone(),
            location: None,
            message,
        };
        let text = crate::files::read_regular_file(path, MAX_PROFILE_FILE)
            .map_err(|e| fail(e.reason()))?;
        Profile::parse(&text, &origin)
    }

    /// What parsing cannot catch: a limit outside what a server can mean, an ETRN list
    /// without a catch-all, an EHLO line that is no reply text.
    fn check(&self) -> Result<(), String> {
        if !(512..=MAX_LINE_LIMIT).contains(&self.line_limit) {
            return Err(format!(
                "line_limit = {} is outside 512 (RFC 5321 §4.5.3.1.4) to {MAX_LINE_LIMIT} octets; write a limit in that range",
                self.line_limit
            ));
        }
        if let Some(pause) = &self.greet_pause
            && pause.millis > MAX_GREET_PAUSE_MILLIS
        {
            return Err(format!(
                "greet_pause.millis = {} is longer than {MAX_GREET_PAUSE_MILLIS} ms; write a shorter pause",
                pause.millis
            ));
        }
        for line in std::iter::once(&self.ehlo_first_line).chain(&self.ehlo_keywords) {
            Reply::parse(&format!("250 {line}")).map_err(|e| {
                format!("the EHLO line {line:?} is no reply text: {e}; {}", e.fix())
            })?;
        }
        if !self
            .etrn
            .last()
            .is_some_and(|r| r.when.iter().all(|c| c.test == EtrnTest::Any && !c.negated))
        {
            return Err(
                "the last [[etrn]] rule must be `when = \"any\"`, so every ETRN gets an answer"
                    .into(),
            );
        }
        if self.ehlo_first_line.is_empty() {
            return Err("ehlo_first_line is empty; write at least \"{host}\"".into());
        }
        Ok(())
    }

    /// The everyday replies and the line limit, as the session takes them.
    pub fn server_replies(&self) -> ServerReplies {
        ServerReplies {
            ehlo_first_line: self.ehlo_first_line.clone(),
            helo: self.helo.clone(),
            mail: self.mail.clone(),
            quit: self.quit.clone(),
            noop: self.noop.clone(),
            rset: self.rset.clone(),
            unknown_command: self.unknown_command.clone(),
            line_limit: self.line_limit,
            line_too_long: self.line_too_long.clone(),
            error_limit: self.error_limit.clone(),
            command_limit: self.command_limit.clone(),
        }
    }

    /// The profile as a file's text (what `probe --emit-profile` writes).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// The rule that answers this ETRN; `server` says what the script knows.
    pub fn etrn_rule(&self, facts: &EtrnFacts<'_>, server: ServerFacts) -> MatchedRule<'_> {
        let found = self.etrn.iter().position(|rule| {
            rule.when
                .iter()
                .all(|c| self.holds(c.test, facts, server) != c.negated)
        });
        self.matched(found)
    }

    /// The rule at `found` (the first whose conditions hold) as it answers.
    fn matched(&self, found: Option<usize>) -> MatchedRule<'_> {
        // `check` makes the last rule a catch-all, so `position` finds one in a parsed profile.
        let index = found.unwrap_or(self.etrn.len().saturating_sub(1));
        match self.etrn.get(index) {
            Some(rule) => MatchedRule {
                index: Some(index),
                reply: &rule.reply,
                catch_all: index + 1 == self.etrn.len(),
                about_state: rule_about_state(rule),
            },
            None => MatchedRule {
                index: None,
                reply: &self.unknown_command,
                catch_all: true,
                about_state: false,
            },
        }
    }

    /// The ETRN rules made ready for the ETRNs to come (see [`EtrnRules`]): for a server that
    /// answers many with this profile.
    pub(crate) fn etrn_rules(&self) -> EtrnRules {
        let mut named_before = Tests::NONE;
        let rules = self
            .etrn
            .iter()
            .map(|rule| {
                let (mut hold, mut fail) = (Tests::NONE, Tests::NONE);
                for c in &rule.when {
                    let tests = if c.negated { &mut fail } else { &mut hold };
                    *tests = tests.with(c.test);
                }
                let named = Tests(hold.0 | fail.0);
                let first_named = EtrnTest::ALL
                    .into_iter()
                    .filter(|t| named.contains(*t) && !named_before.contains(*t))
                    .filter(|t| !Tests::AT_A_GLANCE.contains(*t))
                    .collect();
                named_before = Tests(named_before.0 | named.0);
                CompiledRule {
                    hold,
                    fail,
                    first_named,
                    about_state: rule_about_state(rule),
                }
            })
            .collect();
        EtrnRules { rules }
    }

    fn holds(&self, test: EtrnTest, facts: &EtrnFacts<'_>, server: ServerFacts) -> bool {
        match test {
            EtrnTest::SeveralWords => facts.argument.iter().any(u8::is_ascii_whitespace),
            EtrnTest::KnownQueue => {
                facts.argument.first() == Some(&b'#')
                    && self
                        .queues
                        .iter()
                        .any(|q| q.as_bytes().eq_ignore_ascii_case(facts.node()))
            }
            EtrnTest::Hostname => is_hostname(facts.node()),
            EtrnTest::AddressLiteral => is_address_literal(facts.node()),
            EtrnTest::EightBit => !facts.argument.is_ascii(),
            at_a_glance => Tests::at_a_glance(facts, server).contains(at_a_glance),
        }
    }
}

/// A rule about the session's state only (see [`MatchedRule::about_state`]): every condition
/// a plain one about the state.
fn rule_about_state(rule: &EtrnReplyRule) -> bool {
    rule.when
        .iter()
        .all(|c| !c.negated && c.test.is_about_state())
}

/// A set of [`EtrnTest`]s, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tests(u32);

impl Tests {
    const NONE: Tests = Tests(0);

    const fn bit(test: EtrnTest) -> u32 {
        1 << test as u32
    }

    fn with(self, test: EtrnTest) -> Tests {
        Tests(self.0 | Tests::bit(test))
    }

    fn contains(self, test: EtrnTest) -> bool {
        self.0 & Tests::bit(test) != 0
    }

    /// The tests [`Profile::holds`] reads off one fact each (all but those that read the
    /// argument through, or the profile's queues).
    const AT_A_GLANCE: Tests = Tests(
        !(Tests::bit(EtrnTest::SeveralWords)
            | Tests::bit(EtrnTest::KnownQueue)
            | Tests::bit(EtrnTest::Hostname)
            | Tests::bit(EtrnTest::AddressLiteral)
            | Tests::bit(EtrnTest::EightBit)),
    );

    /// Which of the tests [`AT_A_GLANCE`](Self::AT_A_GLANCE) hold for this ETRN: all at once,
    /// each a bit set or not, without a dispatch per test.
    fn at_a_glance(facts: &EtrnFacts<'_>, server: ServerFacts) -> Tests {
        let first = facts.argument.first();
        let set = |test, holds: bool| if holds { Tests::bit(test) } else { 0 };
        Tests(
            set(EtrnTest::Any, true)
                | set(EtrnTest::Missing, facts.argument.is_empty())
                | set(EtrnTest::InTransaction, facts.in_transaction)
                | set(EtrnTest::BeforeHello, facts.before_hello)
                | set(EtrnTest::Queue, first == Some(&b'#'))
                | set(EtrnTest::Subdomains, first == Some(&b'@'))
                | set(EtrnTest::ValidArgument, facts.parsed.is_some())
                | set(EtrnTest::Served, server.served)
                | set(EtrnTest::ServedAsSent, server.served_as_sent)
                | set(EtrnTest::Running, server.running),
        )
    }
}

/// A profile's ETRN rules, each one's conditions read once into the tests that must hold and
/// those that must not ([`Profile::etrn_rules`]), so that an ETRN is not answered by walking
/// the conditions' list and dispatching on each in every rule: each test the rules need is
/// evaluated once, by the first rule that names it, and a rule is then two comparisons.
#[derive(Debug, Clone)]
pub(crate) struct EtrnRules {
    /// The profile's rules, in its order.
    rules: Vec<CompiledRule>,
}

#[derive(Debug, Clone)]
struct CompiledRule {
    /// The tests of the rule's plain conditions.
    hold: Tests,
    /// The tests of its negated (`!`) conditions.
    fail: Tests,
    /// The tests no rule before it names that read the argument through: what is evaluated
    /// when this rule is tried (the others are known by then, or from the start).
    first_named: Box<[EtrnTest]>,
    /// What [`Profile::matched`] finds for this rule's `about_state`, found once.
    about_state: bool,
}

impl EtrnRules {
    /// No rule reads the argument beyond its first octet and whether it is valid (every test
    /// the rules name is one [`Tests::at_a_glance`] sets): the rule that answers a valid
    /// argument is then a function of the session's state, the option character and the
    /// server's facts (see `valid_argument::ValidArgumentRules`).
    pub(crate) fn read_at_a_glance(&self) -> bool {
        self.rules.iter().all(|rule| rule.first_named.is_empty())
    }

    /// `profile.etrn_rule(facts, server)` for the profile these rules were made from. Equal to
    /// it because a rule holds exactly when every plain condition's test holds and no negated
    /// one's does, and a test's value does not depend on the rule that asks (it reads only the
    /// facts), so evaluating each test once (at the start, or when a rule first needs it)
    /// gives every rule the values the conditions' walk gives it.
    pub(crate) fn rule<'p>(
        &self,
        profile: &'p Profile,
        facts: &EtrnFacts<'_>,
        server: ServerFacts,
    ) -> MatchedRule<'p> {
        let mut holding = Tests::at_a_glance(facts, server);
        let found = self.rules.iter().position(|rule| {
            for test in &rule.first_named {
                if profile.holds(*test, facts, server) {
                    holding = holding.with(*test);
                }
            }
            holding.0 & rule.hold.0 == rule.hold.0 && holding.0 & rule.fail.0 == 0
        });
        // The rule's reply as `Profile::matched` gives it, with its `about_state` as compiled
        // (walking its conditions again cost as much as finding it).
        match (
            found,
            found.and_then(|i| Some((profile.etrn.get(i)?, self.rules.get(i)?))),
        ) {
            (Some(index), Some((rule, compiled))) => MatchedRule {
                index: Some(index),
                reply: &rule.reply,
                catch_all: index + 1 == profile.etrn.len(),
                about_state: compiled.about_state,
            },
            _ => profile.matched(found),
        }
    }
}

/// What the script, not the command, knows about an ETRN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerFacts {
    /// The node is in the scenario's `served` list.
    pub served: bool,
    /// The argument as sent is one of the `served` entries.
    pub served_as_sent: bool,
    /// A queue run for the same argument is still going.
    pub running: bool,
}

/// The ETRN rule that answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchedRule<'a> {
    /// The rule's position in the profile's `etrn` list; `None` when the list is empty (only a
    /// profile that skipped `check` can have one) and `reply` is the unknown-command reply.
    pub index: Option<usize>,
    pub reply: &'a Reply,
    /// The last rule, `when = "any"`: what a script's `etrn_default` replaces.
    pub catch_all: bool,
    /// A rule about the session's state only (no argument, inside a transaction, before
    /// EHLO): it answers before a script's rules for particular arguments, as a server checks
    /// the state before it reads the argument.
    pub about_state: bool,
}

/// Postfix's `valid_hostname`: labels of letters, digits, underscores ("grr..", says its source)
/// and inner hyphens, at most 63 octets each and 255 in all, no empty label, not all digits and
/// dots.
pub fn is_hostname(name: &[u8]) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    let labels_ok = name.split(|b| *b == b'.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
            && label.first() != Some(&b'-')
            && label.last() != Some(&b'-')
    });
    labels_ok && !name.iter().all(|b| b.is_ascii_digit() || *b == b'.')
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
pub fn is_address_literal(node: &[u8]) -> bool {
    let Some(inner) = node
        .strip_prefix(b"[")
        .and_then(|rest| rest.strip_suffix(b"]"))
    else {
        return false;
    };
    let Ok(inner) = std::str::from_utf8(inner) else {
        return false;
    };
    match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => {
            inner[5..].parse::<std::net::Ipv6Addr>().is_ok()
        }
        _ => inner.parse::<std::net::Ipv4Addr>().is_ok(),
    }
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(argument: &str) -> EtrnFacts<'_> {
        EtrnFacts {
            argument: argument.as_bytes(),
            parsed: None,
            now: std::time::Instant::now(),
            in_transaction: false,
            before_hello: false,
        }
    }

    #[test]
    fn every_shipped_profile_parses_and_greets() {
        for name in ProfileName::ALL {
            let p = name.load().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(p.greeting.code().get(), 220, "{name}");
            assert!(p.line_limit >= 512, "{name}");
        }
    }

    #[test]
    fn a_profile_survives_writing_and_reading() {
        for name in ProfileName::ALL {
            let p = name.load().unwrap_or_else(|e| panic!("{e}"));
            let again = Profile::parse(&p.to_toml(), "written").unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(p, again, "{name}");
        }
    }

    #[test]
    fn postfix_rules_follow_the_real_server() {
        let p = ProfileName::Postfix.load().unwrap();
        let said = |arg: &str, served: bool| {
            let server = ServerFacts {
                served,
                ..ServerFacts::default()
            };
            p.etrn_rule(&facts(arg), server).reply.to_string()
        };
        assert_eq!(said("a.example", true), "250 Queuing started");
        assert_eq!(
            said("b.example", false),
            "459 <{node}>: service unavailable"
        );
        assert!(said("a.example.", true).starts_with("501"));
        assert!(said("-bad-", false).starts_with("501"));
        assert!(said("a.example b.example", true).starts_with("500"));
        assert!(said("[127.0.0.1]", false).starts_with("459"));
        assert!(said("", false).starts_with("500"));
    }

    #[test]
    fn every_test_has_a_bit_of_its_own() {
        let mut all = Tests::NONE;
        for test in EtrnTest::ALL {
            assert!(!all.contains(test), "{test:?}");
            all = all.with(test);
        }
        assert_eq!(EtrnTest::ALL.len(), EtrnTest::NAMES.len());
    }

    proptest::proptest! {
        /// Whatever the rules and the ETRN, the compiled rules pick the rule the profile's own
        /// walk picks (every shipped profile's rules, and rules made of any conditions).
        #[test]
        fn compiled_rules_answer_as_the_profile_s_rules(
            shipped in proptest::sample::select(ProfileName::ALL.to_vec()),
            made in proptest::option::of(proptest::collection::vec(
                proptest::collection::vec(
                    (proptest::bool::ANY, proptest::sample::select(EtrnTest::ALL.to_vec())),
                    0..4,
                ),
                0..6,
            )),
            argument in proptest::sample::select(vec![
                "", "a.example", "@a.example", "#q1", "#Q1", "a b", "[127.0.0.1]", "b\u{fc}.example",
                "-bad-", "1.2.3.4", "a.example.", "#",
            ]),
            in_transaction in proptest::bool::ANY,
            before_hello in proptest::bool::ANY,
            served in proptest::bool::ANY,
            served_as_sent in proptest::bool::ANY,
            running in proptest::bool::ANY,
        ) {
            let mut profile = shipped.load().map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            if let Some(made) = made {
                profile.queues = vec!["q1".into()];
                profile.etrn = made
                    .into_iter()
                    .enumerate()
                    .map(|(i, when)| EtrnReplyRule {
                        when: when
                            .into_iter()
                            .map(|(negated, test)| Condition { negated, test })
                            .collect(),
                        reply: Reply::new(crate::reply_code!(250), i.to_string()),
                    })
                    .collect();
            }
            let parsed = crate::domain::EtrnArg::parse(argument).ok();
            let facts = EtrnFacts {
                parsed: parsed.as_ref(),
                in_transaction,
                before_hello,
                ..facts(argument)
            };
            let server = ServerFacts { served, served_as_sent, running };
            proptest::prop_assert_eq!(
                profile.etrn_rules().rule(&profile, &facts, server),
                profile.etrn_rule(&facts, server)
            );
        }
    }

    #[test]
    fn host_names_by_postfix_rules() {
        for good in ["a.example", "xn--bcher-kva.example", "a-b.c", "x"] {
            assert!(is_hostname(good.as_bytes()), "{good}");
        }
        let long = "a".repeat(64);
        for bad in [
            "a.example.",
            "-bad-",
            "",
            "1.2.3.4",
            "b\u{fc}cher.example",
            &long,
        ] {
            assert!(!is_hostname(bad.as_bytes()), "{bad}");
        }
        assert!(is_address_literal(b"[127.0.0.1]"));
        assert!(is_address_literal(b"[IPv6:::1]"));
        assert!(!is_address_literal(b"[nope]"));
    }

    #[test]
    fn errors_name_the_place_and_the_fix() {
        let e = Profile::parse("description = 1", "x.toml").unwrap_err();
        assert_eq!(e.location, Some((1, 15)));
        let text = ProfileName::Rfc1985
            .source()
            .replace("when = \"any\"", "when = \"anything\"");
        let e = Profile::parse(&text, "x.toml").unwrap_err();
        assert!(e.message.contains("unknown ETRN condition"), "{e}");
        let text = ProfileName::Rfc1985
            .source()
            .replace("line_limit = 512", "line_limit = 100");
        let e = Profile::parse(&text, "x.toml").unwrap_err();
        assert!(e.to_string().contains("512"), "{e}");
        let text = ProfileName::Sendmail
            .source()
            .replace("millis = 1000", "millis = 18446744073709551615");
        let e = Profile::parse(&text, "x.toml").unwrap_err();
        assert!(e.to_string().contains("greet_pause.millis"), "{e}");
        let text = ProfileName::Postfix.source().replace(
            "ehlo_first_line = \"{host}\"",
            "ehlo_first_line = \"{hots}\"",
        );
        let e = Profile::parse(&text, "x.toml").unwrap_err();
        assert!(e.to_string().contains("{hots}"), "{e}");
    }
}
