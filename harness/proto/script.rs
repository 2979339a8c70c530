//! A smart host's script: how it answers, as a scenario's `[smarthost]` table says.
//!
//! The script is data; [`SmartHostScript::behaviour`] makes it the [`Behaviour`] that the protocol
//! core consults. The model predicts a client's ETRNs with the same [`ScriptBehaviour`] the server
//! answers with, so prediction and behaviour cannot drift apart.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::domain::{Domain, EtrnArg, EtrnOption};
use crate::ims::PeerEhlo;
use crate::proto::answer::{Answer, Answers};
use crate::proto::{Behaviour, EtrnFacts, GreetPause, ServerReplies};
use crate::reply::Reply;
use crate::wire::Verb;

use super::profile::{EtrnRules, MatchedRule, Profile, ProfileError, ProfileName, ServerFacts};
use super::valid_argument::ValidArgumentRules;

/// The server name used when a script gives none.
pub const DEFAULT_HOSTNAME: &str = "smarthost.example";

/// How a cassette replay matches commands to recorded exchanges (see [`ReplayOptions`](super::ReplayOptions)).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum MatchMode {
    /// The same command lines in the same order, byte for byte.
    Strict,
    /// The same verb and normalised argument, in order.
    #[default]
    Verb,
    /// The next unused exchange with the same verb and argument, anywhere in the session.
    Lenient,
}

/// An answer rule for one ETRN argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EtrnRule {
    /// The argument this rule answers, compared case-insensitively (`a.com`, `@a.com`, `#q1`).
    pub arg: EtrnArg,
    /// The answer, or answers by occurrence.
    pub reply: Answers,
}

/// The `[smarthost]` table of a scenario.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmartHostScript {
    /// The server profile that supplies every reply not given here; default "rfc1985".
    #[serde(default)]
    pub profile: ProfileName,
    /// The server's name in the EHLO reply; default "smarthost.example".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The greeting, e.g. "220 isp.example ESMTP" or "421 busy" to refuse at connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greeting: Option<Answer>,
    /// The EHLO reply's keyword lines, verbatim ("ETRN", "SIZE 1000", "etrn"); default: the profile's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ehlo_keywords: Option<Vec<String>>,
    /// A peer that refuses EHLO (502) and speaks only HELO.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub helo_only: bool,
    /// Domains the server holds mail for: they get the profile's `etrn_served` reply (Postfix:
    /// fast_flush_domains).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub served: Vec<EtrnArg>,
    /// The answer to every ETRN no other rule answers; default: the profile's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etrn_default: Option<Answers>,
    /// Answers for particular arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub etrn: Vec<EtrnRule>,
    /// The answer to `ETRN` without an argument; default: the profile's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etrn_missing_argument: Option<Answer>,
    /// The answer to ETRN before EHLO/HELO; default: the profile's (usually none: processed as
    /// usual and flagged in the recording, as Postfix and sendmail do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etrn_before_hello: Option<Answer>,
    /// The answer to ETRN inside a mail transaction; default: the profile's (503, except sendmail,
    /// which processes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etrn_in_transaction: Option<Answer>,
    /// Answer from this cassette instead of the script (relative to the scenario file); the
    /// model's prediction still follows the script's profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cassette: Option<std::path::PathBuf>,
    /// How the cassette replay matches commands; default "verb".
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "match")]
    pub cassette_match: Option<MatchMode>,
    /// Answers that override the normal one for a verb, e.g. `MAIL = "451 4.3.0 try later"`. A
    /// 4xx/5xx answer refuses the command; a 2xx/3xx answer keeps the command's effect and replaces
    /// the reply.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub commands: BTreeMap<String, Answers>,
}

/// A script problem that parsing alone cannot catch. `path` is relative to `[smarthost]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptProblem {
    pub path: Vec<String>,
    pub message: String,
    pub fix: String,
}

impl SmartHostScript {
    /// Finds contradictions and bad names: a HELO-only peer with EHLO keywords, a bad keyword or
    /// verb, two rules for one argument.
    pub fn problems(&self) -> Vec<ScriptProblem> {
        let mut out = Vec::new();
        let mut problem = |path: Vec<String>, message: String, fix: &str| {
            out.push(ScriptProblem {
                path,
                message,
                fix: fix.into(),
            })
        };
        if self.helo_only && self.ehlo_keywords.is_some() {
            problem(
                vec!["ehlo_keywords".into()],
                "ehlo_keywords contradicts helo_only = true: a HELO-only peer answers EHLO with 502"
                    .into(),
                "remove ehlo_keywords, or remove helo_only",
            );
        }
        for (i, k) in self.ehlo_keywords.iter().flatten().enumerate() {
            let word = k.split(' ').next().unwrap_or("");
            let valid = !word.is_empty()
                && word.as_bytes()[0].is_ascii_alphanumeric()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'=');
            if !valid || k.chars().any(|c| c.is_control()) {
                problem(
                    vec!["ehlo_keywords".into(), i.to_string()],
                    format!("{k:?} is not an EHLO keyword line (RFC 5321 §4.1.1.1)"),
                    "start with a letter or digit, then letters, digits or hyphens, e.g. \"ETRN\" or \"SIZE 1000\"",
                );
            }
        }
        for verb in self.commands.keys() {
            if verb.is_empty() || !verb.bytes().all(|b| b.is_ascii_uppercase()) {
                problem(
                    vec!["commands".into(), verb.clone()],
                    format!("{verb:?} is not an SMTP verb in upper case"),
                    "write the verb in capitals, e.g. MAIL, RCPT, DATA, EHLO, ETRN",
                );
            }
        }
        if let Some(h) = &self.hostname
            && Domain::parse(h).is_err()
        {
            problem(
                vec!["hostname".into()],
                format!("{h:?} is not a host name"),
                "write a domain such as \"smarthost.example\"",
            );
        }
        let mut seen: HashMap<&EtrnArg, usize> = HashMap::new();
        for (i, rule) in self.etrn.iter().enumerate() {
            if let Some(first) = seen.insert(&rule.arg, i) {
                problem(
                    vec!["etrn".into(), i.to_string(), "arg".into()],
                    format!(
                        "ETRN {:?} already has a reply rule (etrn[{first}])",
                        rule.arg.raw()
                    ),
                    "merge the two rules; for answers by occurrence write reply = [\"458 ...\", \"250 ...\"]",
                );
            }
        }
        out
    }

    /// The answers `[commands]` scripts for `verb`. The table is keyed by the text written in the
    /// file (upper case, or [`SmartHostScript::problems`] says so), so it is looked up by the
    /// verb's upper-case text.
    pub fn command_answers(&self, verb: &Verb) -> Option<&Answers> {
        self.commands.get(verb.as_str())
    }

    /// The resolved profile behind this script.
    pub fn profile(&self) -> Result<Profile, ProfileError> {
        self.profile.load()
    }

    /// What a client learns from EHLO: a HELO-only peer when EHLO is refused.
    pub fn peer_ehlo(&self, profile: &Profile) -> PeerEhlo {
        let ehlo_refused = self
            .command_answers(&Verb::Ehlo)
            .and_then(|a| a.nth(0).reply.as_ref())
            .is_some_and(|r| !r.code().is_positive());
        if self.helo_only || ehlo_refused {
            PeerEhlo::HeloOnly
        } else {
            PeerEhlo::Esmtp {
                keywords: self.keywords(profile),
            }
        }
    }

    fn keywords(&self, profile: &Profile) -> Vec<String> {
        self.ehlo_keywords
            .clone()
            .unwrap_or_else(|| profile.ehlo_keywords.clone())
    }

    /// The greeting this script opens with.
    pub fn greeting(&self, profile: &Profile) -> Answer {
        self.greeting
            .clone()
            .unwrap_or_else(|| Answer::reply(profile.greeting.clone()))
    }

    /// The script made executable: the [`Behaviour`] a smart host runs, with occurrence counters
    /// shared by all its sessions.
    pub fn behaviour(self: &Arc<Self>) -> Result<ScriptBehaviour, ProfileError> {
        Ok(self.behaviour_with(self.profile()?))
    }

    /// Like [`SmartHostScript::behaviour`], with `profile` in place of the one the script names
    /// (a profile file of one's own).
    pub fn behaviour_with(self: &Arc<Self>, profile: Profile) -> ScriptBehaviour {
        ScriptBehaviour {
            greeting: self.greeting(&profile),
            keywords: self.keywords(&profile),
            replies: profile.server_replies(),
            rule_answers: profile
                .etrn
                .iter()
                .map(|rule| Answer::reply(rule.reply.clone()))
                .collect(),
            etrn_rules: profile.etrn_rules(),
            valid_argument_rules: OnceLock::new(),
            script: Arc::clone(self),
            profile,
            used: Mutex::new(HashMap::new()),
            runs: Mutex::new(HashMap::new()),
        }
    }
}

/// Which answer list answered, for counting occurrences.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Source {
    Rule(usize),
    EtrnDefault,
    Command(Verb),
}

/// A script plus its profile, answering as the smart host. Thread-safe: one per server.
#[derive(Debug)]
pub struct ScriptBehaviour {
    script: Arc<SmartHostScript>,
    profile: Profile,
    /// The script's greeting, else the profile's: made once, lent to every session.
    greeting: Answer,
    keywords: Vec<String>,
    replies: ServerReplies,
    /// The profile's ETRN rules' replies as answers, in the rules' order, made once so that an
    /// ETRN a rule answers borrows its answer instead of copying the reply.
    rule_answers: Vec<Answer>,
    /// The profile's ETRN rules, compiled once for every ETRN this server answers.
    etrn_rules: EtrnRules,
    /// The rule for a valid argument by the session's state alone, when nothing else decides:
    /// found at the first ETRN, whose clock the facts it asks the rules about carry (this layer
    /// reads none of its own; no rule it keeps reads the time).
    valid_argument_rules: OnceLock<Option<ValidArgumentRules>>,
    used: Mutex<HashMap<Source, usize>>,
    /// Queue runs started by accepted ETRNs, by argument, for `etrn_run_millis`.
    runs: Mutex<HashMap<Vec<u8>, Instant>>,
}

/// Most queue runs remembered at once.
const MAX_RUNS: usize = 1024;

impl ScriptBehaviour {
    fn next<'a>(&self, source: Source, answers: &'a Answers) -> &'a Answer {
        // A poisoned lock only means another session panicked mid-count; the count is still usable.
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        let n = used.entry(source).or_insert(0);
        *n += 1;
        answers.nth(*n - 1)
    }

    /// The answer of the profile's rule `matched`.
    fn rule_answer(&self, matched: &MatchedRule<'_>) -> Cow<'_, Answer> {
        match matched.index.and_then(|i| self.rule_answers.get(i)) {
            Some(answer) => Cow::Borrowed(answer),
            None => Cow::Owned(Answer::reply(matched.reply.clone())),
        }
    }

    /// The profile this behaviour answers from.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The answer to an ETRN command. Precedence: the script's answers for a missing argument,
    /// inside a transaction and before EHLO/HELO; the profile's rule if the first that holds is
    /// about the session's state only (a server checks that before the argument); a script rule
    /// for this argument (a rule for a plain domain also answers its `@` and `#` forms, unless a
    /// rule names that form); then the profile's rules in order, where `served` is the script's
    /// list and the script's `etrn_default` replaces the profile's catch-all.
    pub fn etrn_answer(&self, etrn: &EtrnFacts<'_>) -> Cow<'_, Answer> {
        match self.valid_argument_answer(etrn) {
            Some(answer) => Cow::Borrowed(answer),
            None => self.any_etrn_answer(etrn),
        }
    }

    /// The answer to a valid argument, when the state and its option character decide it (see
    /// [`ValidArgumentRules`]): what [`ScriptBehaviour::any_etrn_answer`] finds, found once.
    fn valid_argument_answer(&self, etrn: &EtrnFacts<'_>) -> Option<&Answer> {
        let rules = self.valid_argument_rules.get_or_init(|| {
            ValidArgumentRules::of(
                &self.script,
                &self.profile,
                &self.etrn_rules,
                self.rule_answers.len(),
                etrn.now,
            )
        });
        let rule = rules.as_ref()?.rule(etrn)?;
        self.rule_answers.get(rule)
    }

    /// [`ScriptBehaviour::etrn_answer`] for any ETRN, the script and the rules read in turn.
    fn any_etrn_answer(&self, etrn: &EtrnFacts<'_>) -> Cow<'_, Answer> {
        let script = &self.script;
        let by_state = [
            (etrn.argument.is_empty(), &script.etrn_missing_argument),
            (etrn.in_transaction, &script.etrn_in_transaction),
            (etrn.before_hello, &script.etrn_before_hello),
        ];
        if let Some(answer) = by_state
            .into_iter()
            .find_map(|(applies, answer)| applies.then_some(answer.as_ref()).flatten())
        {
            return Cow::Borrowed(answer);
        }
        let served = etrn.parsed.is_some_and(|arg| {
            script
                .served
                .iter()
                .any(|s| s == arg || (s.domain().is_some() && s.domain() == arg.domain()))
        });
        let served_as_sent = script
            .served
            .iter()
            .any(|s| s.raw().as_bytes().eq_ignore_ascii_case(etrn.argument));
        let running = self.running(etrn);
        let server = ServerFacts {
            served,
            served_as_sent,
            running,
        };
        let matched = self.etrn_rules.rule(&self.profile, etrn, server);
        if matched.about_state {
            return self.rule_answer(&matched);
        }
        if let Some(arg) = etrn.parsed {
            let rule = script.etrn.iter().position(|r| &r.arg == arg).or_else(|| {
                script.etrn.iter().position(|r| {
                    r.arg.option() == EtrnOption::None
                        && r.arg.domain().is_some()
                        && r.arg.domain() == arg.domain()
                })
            });
            if let Some(i) = rule {
                return Cow::Borrowed(self.next(Source::Rule(i), &script.etrn[i].reply));
            }
        }
        let answer = match &script.etrn_default {
            Some(answers) if matched.catch_all => {
                Cow::Borrowed(self.next(Source::EtrnDefault, answers))
            }
            _ => self.rule_answer(&matched),
        };
        if !running
            && answer
                .reply
                .as_ref()
                .is_some_and(|r| r.code().is_positive())
        {
            self.start_run(etrn);
        }
        answer
    }

    /// Whether a queue run for this argument, started by an earlier accepted ETRN, still goes.
    fn running(&self, etrn: &EtrnFacts<'_>) -> bool {
        let Some(millis) = self.profile.etrn_run_millis else {
            return false;
        };
        let runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        runs.get(etrn.argument).is_some_and(|started| {
            etrn.now.saturating_duration_since(*started) < Duration::from_millis(millis)
        })
    }

    fn start_run(&self, etrn: &EtrnFacts<'_>) {
        if self.profile.etrn_run_millis.is_none() {
            return;
        }
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        if runs.len() >= MAX_RUNS {
            // Bounded: runs that have ended go first; past that, all (a flood of arguments).
            let length = Duration::from_millis(self.profile.etrn_run_millis.unwrap_or(0));
            runs.retain(|_, started| etrn.now.saturating_duration_since(*started) < length);
            if runs.len() >= MAX_RUNS {
                runs.clear();
            }
        }
        runs.insert(etrn.argument.to_vec(), etrn.now);
    }
}

impl Behaviour for ScriptBehaviour {
    fn hostname(&self) -> &str {
        self.script.hostname.as_deref().unwrap_or(DEFAULT_HOSTNAME)
    }

    fn greeting(&self) -> Cow<'_, Answer> {
        Cow::Borrowed(&self.greeting)
    }

    fn greet_pause(&self) -> Option<&GreetPause> {
        // A scripted greeting replaces the profile's whole opening, its pause included.
        match self.script.greeting {
            Some(_) => None,
            None => self.profile.greet_pause.as_ref(),
        }
    }

    fn ehlo(&self) -> Result<&[String], Answer> {
        if self.script.helo_only {
            let code = crate::reply_code!(502);
            Err(Answer::reply(Reply::new(
                code,
                "5.5.1 Error: command not implemented",
            )))
        } else {
            Ok(&self.keywords)
        }
    }

    fn replies(&self) -> &ServerReplies {
        &self.replies
    }

    fn command(&self, verb: &Verb) -> Option<Answer> {
        let answers = self.script.command_answers(verb)?;
        Some(self.next(Source::Command(verb.clone()), answers).clone())
    }

    fn etrn(&self, etrn: &EtrnFacts<'_>) -> Cow<'_, Answer> {
        self.etrn_answer(etrn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn behaviour(toml_text: &str) -> ScriptBehaviour {
        let script: SmartHostScript = toml::from_str(toml_text).unwrap();
        Arc::new(script).behaviour().unwrap()
    }

    proptest::proptest! {
        /// The answer found once for a valid argument's state and option character is the one
        /// the script and the rules give it, whatever the argument (plain, U-labels, any queue
        /// name) and the state, for every shipped profile and for scripts that answer ETRN
        /// themselves (which have no such answers: the rules are walked).
        #[test]
        fn a_valid_argument_s_answer_is_the_rules_answer(
            argument in "[@#]?([a-zA-Z0-9.\\-\\[\\]:_]|\u{fc}){0,16}",
            in_transaction: bool,
            before_hello: bool,
            profile in 0..ProfileName::ALL.len(),
            script in proptest::sample::select(vec![
                "",
                "served = [\"a.example\"]",
                "etrn_before_hello = \"451 no\"",
                "etrn_default = [\"250 fine\", \"458 not now\"]",
            ]),
        ) {
            let name = ProfileName::ALL[profile];
            let b = behaviour(&format!("profile = \"{name}\"\n{script}"));
            let parsed = EtrnArg::parse(&argument).ok();
            let facts = EtrnFacts {
                argument: argument.as_bytes(),
                parsed: parsed.as_ref(),
                now: Instant::now(),
                in_transaction,
                before_hello,
            };
            if let Some(answer) = b.valid_argument_answer(&facts) {
                proptest::prop_assert_eq!(answer, &*b.any_etrn_answer(&facts));
            }
        }
    }

    /// The default script (the bench's smart host) answers a valid argument without walking
    /// the rules: the property above is about it.
    #[test]
    fn the_default_script_answers_valid_arguments_by_state() {
        let b = behaviour("");
        let parsed = EtrnArg::parse("d1.bench.example").ok();
        let facts = EtrnFacts {
            argument: b"d1.bench.example",
            parsed: parsed.as_ref(),
            now: Instant::now(),
            in_transaction: false,
            before_hello: false,
        };
        assert!(b.valid_argument_answer(&facts).is_some());
    }

    fn said(a: &Answer) -> String {
        a.reply.as_ref().map(|r| r.to_string()).unwrap_or_default()
    }

    /// The reply to `ETRN <text>` after EHLO, placeholders filled as the session fills them.
    fn etrn(b: &ScriptBehaviour, text: &str) -> String {
        let parsed = EtrnArg::parse(text).ok();
        let facts = EtrnFacts {
            argument: text.as_bytes(),
            parsed: parsed.as_ref(),
            now: Instant::now(),
            in_transaction: false,
            before_hello: false,
        };
        let places = crate::proto::Placeholders {
            arg: Some(crate::proto::Sent::Utf8(text)),
            ..Default::default()
        };
        said(&b.etrn_answer(&facts))
            .split_once(' ')
            .map(|(code, text)| format!("{code} {}", places.fill(text)))
            .unwrap_or_default()
    }

    #[test]
    fn answers_by_occurrence_repeat_the_last() {
        let b = behaviour(r#"etrn = [{ arg = "a.com", reply = ["458 busy", "250 OK"] }]"#);
        assert_eq!(etrn(&b, "A.com"), "458 busy");
        assert_eq!(etrn(&b, "a.com"), "250 OK");
        assert_eq!(etrn(&b, "a.com"), "250 OK");
        // The same node with an option character: the plain domain's rule answers it too.
        assert_eq!(etrn(&b, "@a.com"), "250 OK");
        // Not the rule: the rfc1985 profile's default.
        assert_eq!(etrn(&b, "b.com"), "250 OK, queuing for node b.com started");
    }

    #[test]
    fn postfix_profile_serves_only_listed_domains() {
        let b = behaviour("profile = \"postfix\"\nserved = [\"a.com\"]");
        assert_eq!(etrn(&b, "a.com"), "250 Queuing started");
        assert_eq!(etrn(&b, "b.com"), "459 <b.com>: service unavailable");
    }

    #[test]
    fn exim_profile_accepts_only_queue_arguments() {
        let b = behaviour("profile = \"exim\"");
        assert_eq!(etrn(&b, "a.com"), "501 argument must begin with #");
        assert_eq!(etrn(&b, "#q1"), "250 OK");
    }

    #[test]
    fn command_overrides_count_per_verb() {
        let b = behaviour("[commands]\nMAIL = [\"451 4.3.0 later\", \"250 OK\"]");
        assert_eq!(said(&b.command(&Verb::Mail).unwrap()), "451 4.3.0 later");
        assert_eq!(said(&b.command(&Verb::Mail).unwrap()), "250 OK");
        assert!(b.command(&Verb::Rcpt).is_none());
    }

    #[test]
    fn contradictions_are_found() {
        let script: SmartHostScript = toml::from_str(
            "helo_only = true\nehlo_keywords = [\"ETRN\", \"bad!word\"]\nhostname = \"bad host\"\netrn = [{ arg = \"a.com\", reply = \"250 x\" }, { arg = \"A.COM\", reply = \"458 y\" }]\n[commands]\nmail = \"250 x\"",
        )
        .unwrap();
        let paths: Vec<_> = script
            .problems()
            .into_iter()
            .map(|p| p.path.join("."))
            .collect();
        assert_eq!(
            paths,
            [
                "ehlo_keywords",
                "ehlo_keywords.1",
                "commands.mail",
                "hostname",
                "etrn.1.arg"
            ]
        );
    }
}
