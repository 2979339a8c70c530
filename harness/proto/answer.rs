//! What a scripted server does in answer to one command: reply, wait, hang up.
//!
//! In a scenario an answer is usually just a reply string, `"458 busy"`. The table form adds the
//! misbehaviour a test needs: `{ reply = "250 OK", delay_ms = 300 }` waits before replying,
//! `{ close = true }` hangs up without a reply, `{ reply = "421 bye", close = true }` replies and
//! hangs up. A list is answers by occurrence: `["458 busy", "250 OK"]` answers the first matching
//! command with 458 and every later one with 250 (the last entry repeats).

use std::borrow::Cow;
use std::time::Duration;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::rejection::Rejection;
use crate::reply::Reply;

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    /// The reply; `None` only together with `close`: hang up without a word.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<Reply>,
    /// Wait this long before replying (or closing).
    #[serde(skip_serializing_if = "is_zero")]
    pub delay_ms: u64,
    /// Close the connection after the reply.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub close: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Answer {
    /// Just a reply. A 421 reply always closes (RFC 5321 §3.8).
    pub fn reply(reply: Reply) -> Self {
        let close = reply.code() == crate::reply::ReplyCode::CLOSING;
        Answer {
            reply: Some(reply),
            delay_ms: 0,
            close,
        }
    }

    /// Hang up without replying.
    pub fn hang_up() -> Self {
        Answer {
            reply: None,
            delay_ms: 0,
            close: true,
        }
    }

    pub fn delay(&self) -> Option<Duration> {
        (self.delay_ms > 0).then(|| Duration::from_millis(self.delay_ms))
    }

    /// True when the connection ends after this answer (an explicit close or a 421).
    pub fn closes(&self) -> bool {
        self.close
            || self
                .reply
                .as_ref()
                .is_some_and(|r| r.code() == crate::reply::ReplyCode::CLOSING)
    }
}

impl Answer {
    /// True when the string form `"250 OK"` says all there is.
    fn is_plain_reply(&self) -> bool {
        match &self.reply {
            Some(r) => {
                self.delay_ms == 0 && self.close == (r.code() == crate::reply::ReplyCode::CLOSING)
            }
            None => false,
        }
    }
}

impl From<Reply> for Answer {
    fn from(r: Reply) -> Self {
        Answer::reply(r)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerTable {
    #[serde(default)]
    reply: Option<Reply>,
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    close: bool,
}

/// Longest scripted delay: a test that needs more is better served by `close`.
const MAX_DELAY_MS: u64 = 600_000;

impl TryFrom<AnswerTable> for Answer {
    type Error = Rejection;
    fn try_from(t: AnswerTable) -> Result<Self, Rejection> {
        if t.reply.is_none() && !t.close {
            return Err(Rejection::contradiction(
                "an answer with neither a reply nor close = true",
                "add reply = \"250 OK\", or close = true to hang up without a reply",
            ));
        }
        if t.delay_ms > MAX_DELAY_MS {
            return Err(Rejection::invalid(
                format!(
                    "delay_ms = {} is over {MAX_DELAY_MS} (10 minutes)",
                    t.delay_ms
                ),
                "use a shorter delay; to simulate a dead peer use close = true",
            ));
        }
        let mut a = match t.reply {
            Some(r) => Answer::reply(r),
            None => Answer::hang_up(),
        };
        a.delay_ms = t.delay_ms;
        a.close |= t.close;
        Ok(a)
    }
}

struct AnswerVisitor;

impl<'de> Visitor<'de> for AnswerVisitor {
    type Value = Answer;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a reply such as \"250 OK\" or a table { reply, delay_ms, close }")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Answer, E> {
        Reply::parse(s)
            .map(Answer::reply)
            .map_err(|e| Rejection::invalid(&e, e.fix()).into_de_error())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Answer, A::Error> {
        let t = AnswerTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Answer::try_from(t).map_err(Rejection::into_de_error)
    }
}

impl<'de> Deserialize<'de> for Answer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnswerVisitor)
    }
}

impl schemars::JsonSchema for Answer {
    fn schema_name() -> Cow<'static, str> {
        "Answer".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let reply = g.subschema_for::<Reply>();
        schemars::json_schema!({
            "description": "A reply string, or { reply, delay_ms, close } to delay or hang up",
            "anyOf": [
                reply,
                {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {
                        "reply": reply,
                        "delay_ms": { "type": "integer", "minimum": 0, "maximum": MAX_DELAY_MS },
                        "close": { "type": "boolean" }
                    }
                }
            ]
        })
    }
}

/// Answers by occurrence; the last one repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answers(Vec<Answer>);

impl Answers {
    pub fn single(answer: impl Into<Answer>) -> Self {
        Answers(vec![answer.into()])
    }

    pub fn new(answers: Vec<Answer>) -> Option<Self> {
        (!answers.is_empty()).then_some(Answers(answers))
    }

    /// The answer for the `n`th use (0-based).
    pub fn nth(&self, n: usize) -> &Answer {
        &self.0[n.min(self.0.len() - 1)]
    }

    pub fn as_slice(&self) -> &[Answer] {
        &self.0
    }
}

impl Serialize for Answers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] if one.is_plain_reply() => one.reply.serialize(s),
            [one] => one.serialize(s),
            many => many.serialize(s),
        }
    }
}

// A string, a table, or a list of either. Written by hand because an untagged enum would hide a
// bad reply behind "data did not match any variant".
impl<'de> Deserialize<'de> for Answers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Answers;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an answer (\"250 OK\" or a table) or a list of answers by occurrence")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Answers, E> {
                AnswerVisitor.visit_str(s).map(Answers::single)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Answers, A::Error> {
                AnswerVisitor.visit_map(map).map(Answers::single)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Answers, A::Error> {
                let mut list = Vec::new();
                while let Some(a) = seq.next_element::<Answer>()? {
                    list.push(a);
                }
                Answers::new(list).ok_or_else(|| {
                    Rejection::invalid(
                        "an empty list of answers",
                        "give at least one, e.g. \"250 OK\"",
                    )
                    .into_de_error()
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl schemars::JsonSchema for Answers {
    fn schema_name() -> Cow<'static, str> {
        "Answers".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let one = g.subschema_for::<Answer>();
        schemars::json_schema!({
            "description": "An answer, or a list of answers by occurrence (the last repeats)",
            "anyOf": [one, { "type": "array", "items": one, "minItems": 1 }]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        a: Answers,
    }

    fn parse(text: &str) -> Result<Answers, String> {
        toml::from_str::<T>(text)
            .map(|t| t.a)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn string_table_and_list_forms() {
        let one = parse(r#"a = "250 OK""#).unwrap();
        assert_eq!(one.nth(5).reply.as_ref().unwrap().code().get(), 250);
        let slow = parse(r#"a = { reply = "250 OK", delay_ms = 20 }"#).unwrap();
        assert_eq!(slow.nth(0).delay(), Some(Duration::from_millis(20)));
        let hang = parse("a = { close = true }").unwrap();
        assert!(hang.nth(0).reply.is_none() && hang.nth(0).closes());
        let seq = parse(r#"a = ["458 busy", { reply = "250 OK" }]"#).unwrap();
        assert_eq!(seq.nth(0).reply.as_ref().unwrap().code().get(), 458);
        assert_eq!(seq.nth(9).reply.as_ref().unwrap().code().get(), 250);
    }

    #[test]
    fn a_421_reply_closes() {
        assert!(parse(r#"a = "421 bye""#).unwrap().nth(0).closes());
    }

    #[test]
    fn rejects_an_answer_that_does_nothing() {
        let e = parse("a = { delay_ms = 5 }").unwrap_err();
        assert!(e.contains("neither a reply nor close"), "{e}");
        assert!(parse("a = []").unwrap_err().contains("empty list"));
        assert!(parse(r#"a = "25x""#).is_err());
    }
}
