//! A smart host's script: how it answers, as a scenario's `[smarthost]` table says.
//!
//! The script is data plus one pure decision, [`EtrnResponder::reply_to`], which picks the reply to
//! each ETRN. The model uses it to predict what a client sends; the server (a later layer) uses the
//! same responder on the wire, so prediction and behaviour cannot drift apart.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::domain::{EtrnArg, EtrnOption};
use crate::ims::PeerEhlo;
use crate::reply::Reply;

use super::profile::{Profile, ProfileError, ProfileName};

/// One reply, or replies by occurrence: `["458 busy", "250 OK"]` answers the first matching ETRN
/// with 458 and every later one with 250 (the last entry repeats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplySequence(Vec<Reply>);

impl Serialize for ReplySequence {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }
}

// A string or a list of strings. Written by hand because an untagged enum would hide a bad reply
// behind "data did not match any variant".
impl<'de> Deserialize<'de> for ReplySequence {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ReplySequence;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a reply such as \"250 OK\" or a list of replies by occurrence")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ReplySequence, E> {
                Reply::parse(s)
                    .map(ReplySequence::single)
                    .map_err(|e| E::custom(crate::hint(&e, e.fix())))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<ReplySequence, A::Error> {
                let mut list = Vec::new();
                while let Some(r) = seq.next_element::<Reply>()? {
                    list.push(r);
                }
                ReplySequence::new(list).ok_or_else(|| {
                    serde::de::Error::custom(crate::hint(
                        &"an empty list of replies",
                        "give at least one reply, e.g. \"250 OK\"",
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl schemars::JsonSchema for ReplySequence {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ReplySequence".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let reply = g.subschema_for::<Reply>();
        schemars::json_schema!({
            "description": "A reply, or a list of replies by occurrence (the last repeats)",
            "anyOf": [reply, { "type": "array", "items": reply, "minItems": 1 }]
        })
    }
}

impl ReplySequence {
    pub fn single(reply: Reply) -> Self {
        ReplySequence(vec![reply])
    }

    pub fn new(replies: Vec<Reply>) -> Option<Self> {
        (!replies.is_empty()).then_some(ReplySequence(replies))
    }

    /// The reply for the `n`th use (0-based); the last one repeats.
    pub fn nth(&self, n: usize) -> &Reply {
        &self.0[n.min(self.0.len() - 1)]
    }

    pub fn replies(&self) -> &[Reply] {
        &self.0
    }
}

/// A reply rule for one ETRN argument.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EtrnRule {
    /// The argument this rule answers, compared case-insensitively (`a.com`, `@a.com`, `#q1`).
    pub arg: EtrnArg,
    /// The reply, or replies by occurrence.
    pub reply: ReplySequence,
}

/// The `[smarthost]` table of a scenario.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmartHostScript {
    /// The server profile that supplies every reply not given here; default "rfc1985".
    #[serde(default)]
    pub profile: ProfileName,
    /// The greeting, e.g. "220 isp.example ESMTP" or "421 busy" to refuse at connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greeting: Option<Reply>,
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
    /// The reply to every ETRN no other rule answers; default: the profile's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etrn_default: Option<ReplySequence>,
    /// Replies for particular arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub etrn: Vec<EtrnRule>,
}

/// A script problem that parsing alone cannot catch. `path` is relative to `[smarthost]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptProblem {
    pub path: Vec<String>,
    pub message: String,
    pub fix: String,
}

impl SmartHostScript {
    /// Finds contradictions: a HELO-only peer with EHLO keywords, a bad keyword, two rules for one
    /// argument.
    pub fn problems(&self) -> Vec<ScriptProblem> {
        let mut out = Vec::new();
        if self.helo_only && self.ehlo_keywords.is_some() {
            out.push(ScriptProblem {
                path: vec!["ehlo_keywords".into()],
                message: "ehlo_keywords contradicts helo_only = true: a HELO-only peer answers EHLO with 502".into(),
                fix: "remove ehlo_keywords, or remove helo_only".into(),
            });
        }
        for (i, k) in self.ehlo_keywords.iter().flatten().enumerate() {
            let word = k.split(' ').next().unwrap_or("");
            let valid = !word.is_empty()
                && word.as_bytes()[0].is_ascii_alphanumeric()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'=');
            if !valid || k.chars().any(|c| c.is_control()) {
                out.push(ScriptProblem {
                    path: vec!["ehlo_keywords".into(), i.to_string()],
                    message: format!("{k:?} is not an EHLO keyword line (RFC 5321 §4.1.1.1)"),
                    fix: "start with a letter or digit, then letters, digits or hyphens, e.g. \"ETRN\" or \"SIZE 1000\"".into(),
                });
            }
        }
        let mut seen: HashMap<&EtrnArg, usize> = HashMap::new();
        for (i, rule) in self.etrn.iter().enumerate() {
            if let Some(first) = seen.insert(&rule.arg, i) {
                out.push(ScriptProblem {
                    path: vec!["etrn".into(), i.to_string(), "arg".into()],
                    message: format!(
                        "ETRN {:?} already has a reply rule (etrn[{first}])",
                        rule.arg.raw()
                    ),
                    fix: "merge the two rules; for replies by occurrence write reply = [\"458 ...\", \"250 ...\"]".into(),
                });
            }
        }
        out
    }

    /// The resolved profile behind this script.
    pub fn profile(&self) -> Result<Profile, ProfileError> {
        self.profile.load()
    }

    /// What the client learns from EHLO.
    pub fn peer_ehlo(&self, profile: &Profile) -> PeerEhlo {
        if self.helo_only {
            PeerEhlo::HeloOnly
        } else {
            PeerEhlo::Esmtp {
                keywords: self
                    .ehlo_keywords
                    .clone()
                    .unwrap_or_else(|| profile.ehlo_keywords.clone()),
            }
        }
    }

    /// A stateful responder for ETRN replies over the life of one smart host.
    pub fn responder(&self) -> Result<EtrnResponder<'_>, ProfileError> {
        Ok(EtrnResponder {
            script: self,
            profile: self.profile()?,
            used: HashMap::new(),
        })
    }
}

/// Which reply source answered, for counting occurrences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    Rule(usize),
    Default,
}

/// Picks ETRN replies, counting occurrences per rule across every session of the smart host.
#[derive(Debug)]
pub struct EtrnResponder<'a> {
    script: &'a SmartHostScript,
    profile: Profile,
    used: HashMap<Source, usize>,
}

impl EtrnResponder<'_> {
    /// The reply to `ETRN <arg>`, `{node}` filled in. Precedence: a rule for this argument, the
    /// profile's served reply for a `served` node, the profile's queue reply for `#` arguments,
    /// the script's default, the profile's default.
    pub fn reply_to(&mut self, arg: &EtrnArg) -> Reply {
        let reply = if let Some(i) = self.script.etrn.iter().position(|r| &r.arg == arg) {
            let n = self.bump(Source::Rule(i));
            self.script.etrn[i].reply.nth(n).clone()
        } else if self
            .script
            .served
            .iter()
            .any(|s| s == arg || s.domain().is_some() && s.domain() == arg.domain())
        {
            self.profile.etrn_served.clone()
        } else if let (EtrnOption::Queue, Some(q)) = (arg.option(), &self.profile.etrn_queue) {
            q.clone()
        } else if let Some(seq) = &self.script.etrn_default {
            let n = self.bump(Source::Default);
            seq.nth(n).clone()
        } else {
            self.profile.etrn_default.clone()
        };
        reply.for_node(arg.raw())
    }

    fn bump(&mut self, source: Source) -> usize {
        let n = self.used.entry(source).or_insert(0);
        *n += 1;
        *n - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(s: &str) -> EtrnArg {
        EtrnArg::parse(s).unwrap()
    }

    #[test]
    fn replies_by_occurrence_repeat_the_last() {
        let script: SmartHostScript =
            toml::from_str(r#"etrn = [{ arg = "a.com", reply = ["458 busy", "250 OK"] }]"#)
                .unwrap();
        let mut r = script.responder().unwrap();
        assert_eq!(r.reply_to(&arg("A.com")).code().get(), 458);
        assert_eq!(r.reply_to(&arg("a.com")).code().get(), 250);
        assert_eq!(r.reply_to(&arg("a.com")).code().get(), 250);
        // Not the rule: the rfc1985 profile's default.
        assert_eq!(
            r.reply_to(&arg("b.com")).to_string(),
            "250 OK, queuing for node b.com started"
        );
    }

    #[test]
    fn postfix_profile_serves_only_listed_domains() {
        let script: SmartHostScript =
            toml::from_str("profile = \"postfix\"\nserved = [\"a.com\"]").unwrap();
        let mut r = script.responder().unwrap();
        assert_eq!(r.reply_to(&arg("a.com")).to_string(), "250 Queuing started");
        assert_eq!(
            r.reply_to(&arg("b.com")).to_string(),
            "459 <b.com>: service unavailable"
        );
    }

    #[test]
    fn exim_profile_accepts_only_queue_arguments() {
        let script: SmartHostScript = toml::from_str("profile = \"exim\"").unwrap();
        let mut r = script.responder().unwrap();
        assert_eq!(r.reply_to(&arg("a.com")).code().get(), 501);
        assert_eq!(r.reply_to(&arg("#q1")).code().get(), 250);
    }

    #[test]
    fn contradictions_are_found() {
        let script: SmartHostScript = toml::from_str(
            "helo_only = true\nehlo_keywords = [\"ETRN\", \"bad!word\"]\netrn = [{ arg = \"a.com\", reply = \"250 x\" }, { arg = \"A.COM\", reply = \"458 y\" }]",
        )
        .unwrap();
        let paths: Vec<_> = script
            .problems()
            .into_iter()
            .map(|p| p.path.join("."))
            .collect();
        assert_eq!(paths, ["ehlo_keywords", "ehlo_keywords.1", "etrn.1.arg"]);
    }
}
