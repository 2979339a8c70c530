//! The profile rule that answers a valid ETRN argument, found once per script rather than once
//! per ETRN, when only the session's state and the argument's option character can tell.
//!
//! Every pipelined ETRN of the bench (`ETRN d1.bench.example`, ...) asked the profile's rules
//! again, though nothing about its name could change the answer: the default script serves no
//! list, has no rule or default of its own, and runs no queues, and the `rfc1985` profile's rules
//! read only whether the argument is there, valid, inside a transaction. For such a script and
//! profile, [`ValidArgumentRules`] holds the rule for each state and option character; a script
//! or profile that looks further (a `served` list, a host-name test, ...) has none, and every
//! ETRN takes the rules' walk as before.

use std::time::Instant;

use crate::domain::EtrnArg;

use super::EtrnFacts;
use super::profile::{EtrnRules, Profile, ServerFacts};
use super::script::SmartHostScript;

/// One of the profile's rules (its index) for each of the twelve ways a valid argument can
/// come: inside a transaction or not, before EHLO/HELO or not, with no option character, `@`
/// or `#`.
#[derive(Debug, Clone)]
pub(crate) struct ValidArgumentRules([usize; 12]);

impl ValidArgumentRules {
    /// The rules' answers for `script` with `profile` (compiled as `rules`, answered as
    /// `answers` of them), when nothing but the state and the option character decides them:
    /// the script has no answer of its own for an ETRN (no `served` list, rule, default, or
    /// answer by state, which come before the profile's), the profile starts no queue runs (a
    /// run in progress answers otherwise), and its rules read only the facts
    /// [`EtrnRules::read_at_a_glance`] reads. Each rule is then found as it would be for any
    /// valid argument with that first octet: the server's facts are all false (no list to be
    /// served from, no run). `now` is the session's clock, which the facts carry and no such
    /// rule reads.
    pub(crate) fn of(
        script: &SmartHostScript,
        profile: &Profile,
        rules: &EtrnRules,
        answers: usize,
        now: Instant,
    ) -> Option<ValidArgumentRules> {
        let script_answers = !script.served.is_empty()
            || !script.etrn.is_empty()
            || script.etrn_default.is_some()
            || script.etrn_in_transaction.is_some()
            || script.etrn_before_hello.is_some();
        if script_answers || profile.etrn_run_millis.is_some() || !rules.read_at_a_glance() {
            return None;
        }
        let mut found = [0; 12];
        for (key, rule) in found.iter_mut().enumerate() {
            let argument = ["a.example", "@a.example", "#a.example"][key >> 2];
            let parsed = EtrnArg::parse(argument).ok()?;
            let facts = EtrnFacts {
                argument: argument.as_bytes(),
                parsed: Some(&parsed),
                in_transaction: key & 1 != 0,
                before_hello: key & 2 != 0,
                now,
            };
            // A rule without an answer (none: the profile has no rules) is left to the walk.
            *rule = rules
                .rule(profile, &facts, ServerFacts::default())
                .index
                .filter(|i| *i < answers)?;
        }
        Some(ValidArgumentRules(found))
    }

    /// The index of the rule that answers `etrn`, when its argument is valid (else `None`: the
    /// rules are walked).
    pub(crate) fn rule(&self, etrn: &EtrnFacts<'_>) -> Option<usize> {
        etrn.parsed?;
        let option = match etrn.argument.first()? {
            b'@' => 1,
            b'#' => 2,
            _ => 0,
        };
        let key = usize::from(etrn.in_transaction) | usize::from(etrn.before_hello) << 1;
        self.0.get(key | option << 2).copied()
    }
}
