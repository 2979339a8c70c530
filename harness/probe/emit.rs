//! A profile from what a server answered: `probe --emit-profile`.
//!
//! Each text the probes saw goes into the profile with the run's masks turned back into
//! placeholders (the host name into `{host}`, a date into `{date}`, the client's name and
//! address into `{client}` and `{client_ip}`, the ETRN argument into `{arg}` or `{node}`). The
//! ETRN rules follow the probes' classes in a fixed order (inside a transaction, before EHLO, no
//! argument, several words, eight-bit, `#` and `@` forms, not a host name, an address literal,
//! the served domain, anything else), each answered as its probe was. What this cannot express
//! (an error limit, queue runs that outlast a session, a line limit between two probed lengths)
//! shows up when the emitted profile is compared with the server, which the caller does.

use super::compare::{Masks, compare};
use super::run::{ProbeResult, ReplyLines};
use super::set::{CLIENT_NAME, SERVED_DOMAIN};
use crate::domain::EtrnArg;
use crate::proto::SmartHostScript;
use crate::proto::profile::{Condition, EtrnReplyRule, EtrnTest, Profile};
use crate::proto::{GreetPause, LongLine};
use crate::reply::Reply;

/// The profile the results describe, or why none can be made (no greeting, no EHLO reply).
///
/// Long because it is one mapping: a field of the profile per probe that shows it, so a new
/// profile field touches one place.
pub fn profile_from(
    results: &[ProbeResult],
    masks: &Masks,
    description: &str,
) -> Result<Profile, String> {
    let find = |id: &str| results.iter().find(|r| r.id == id);
    let reply = |id: &str, n: usize| -> Option<&ReplyLines> { find(id)?.replies().nth(n) };
    let ehlo = reply("ehlo", 1)
        .filter(|r| r.code == 250)
        .ok_or("the server gave no 250 reply to EHLO")?;
    let greeting = reply("ehlo", 0).ok_or("the server gave no greeting")?;
    let to_reply = |r: &ReplyLines, arg: Option<&str>| -> Result<Reply, String> {
        let text = placeholders(&r.to_string(), masks, arg);
        // Lines after the first go in as `\n`-separated text, as scenario replies are written.
        let joined = text
            .lines()
            .map(|l| l.get(4..).unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        Reply::parse(&format!("{} {joined}", r.code)).map_err(|e| e.to_string())
    };
    let everyday = |id: &str, n: usize, fallback: &str| -> Result<Reply, String> {
        match reply(id, n) {
            Some(r) => to_reply(r, None),
            None => Reply::parse(fallback).map_err(|e| e.to_string()),
        }
    };
    let mail = match reply("etrn-in-transaction", 2) {
        Some(r) => Reply::parse(
            &to_reply(r, None)?
                .to_string()
                .replace(&format!("x@{CLIENT_NAME}"), "{from}")
                .replace("x@{client}", "{from}"),
        )
        .map_err(|e| e.to_string())?,
        None => Reply::parse("250 OK").map_err(|e| e.to_string())?,
    };
    let (line_limit, line_too_long) = line_limit(results, masks)?;
    let mut profile = Profile {
        description: description.to_owned(),
        basis: "etrn-harness probe --emit-profile".into(),
        verified_against: format!(
            "the server probed (probe set {})",
            super::set::PROBE_SET_VERSION
        ),
        greeting: to_reply(greeting, None)?,
        greet_pause: greet_pause(results, masks)?,
        ehlo_first_line: placeholders(ehlo.lines.first().map_or("", String::as_str), masks, None),
        ehlo_keywords: ehlo.lines.iter().skip(1).cloned().collect(),
        helo: everyday("helo", 1, "250 {host}")?,
        mail,
        quit: everyday("quit", 2, "221 2.0.0 Bye")?,
        noop: everyday("rset", 3, "250 OK")?,
        rset: everyday("rset", 2, "250 OK")?,
        unknown_command: match reply("unknown-command", 2) {
            Some(r) => Reply::parse(&to_reply(r, None)?.to_string().replace("XYZZY", "{command}"))
                .map_err(|e| e.to_string())?,
            None => Reply::parse("500 unrecognized command").map_err(|e| e.to_string())?,
        },
        line_limit,
        line_too_long,
        error_limit: None,
        command_limit: None,
        etrn_run_millis: None,
        queues: Vec::new(),
        etrn: Vec::new(),
    };
    for (when, id, arg) in ETRN_CLASSES {
        let Some(answer) = etrn_reply(find(id)) else {
            continue;
        };
        let arg = arg.replace("SERVED", SERVED_DOMAIN);
        profile.etrn.push(EtrnReplyRule {
            when: conditions(when)?,
            reply: to_reply(answer, Some(&arg))?,
        });
    }
    if !profile
        .etrn
        .last()
        .is_some_and(|r| r.when == conditions("any").unwrap_or_default())
    {
        return Err("the server answered no ETRN for an unserved domain".into());
    }
    profile.queues = vec!["mqueue".into()];
    // Through text and back: the profile's own checks, as for a file.
    let profile =
        Profile::parse(&profile.to_toml(), "the emitted profile").map_err(|e| e.to_string())?;
    Ok(refine(profile, results, masks))
}

/// The emitted profile made as small and as true as the probes can tell: each rule's `{arg}`
/// tried as `{arg7}` (the argument as sent, trailing blanks kept), then every rule that changes
/// no probe's answer dropped. Each candidate is probed in memory and kept only if it differs
/// from the server in no more places than the one before.
fn refine(mut profile: Profile, results: &[ProbeResult], masks: &Masks) -> Profile {
    let differences = |p: &Profile| {
        let answered = super::probe_profile(served_script(), p.clone());
        let answered_masks = Masks::of(&answered, super::IN_MEMORY_CLIENT_IP);
        compare(results, masks, &answered, &answered_masks).len()
    };
    let mut best = differences(&profile);
    for i in 0..profile.etrn.len() {
        let text = profile.etrn[i].reply.to_string();
        if !text.contains("{arg}") {
            continue;
        }
        let mut candidate = profile.clone();
        if let Ok(reply) = Reply::parse(&text.replace("{arg}", "{arg7}")) {
            candidate.etrn[i].reply = reply;
            let d = differences(&candidate);
            if d < best {
                (profile, best) = (candidate, d);
            }
        }
    }
    let mut i = 0;
    while i + 1 < profile.etrn.len() {
        let mut candidate = profile.clone();
        candidate.etrn.remove(i);
        let d = differences(&candidate);
        if d <= best {
            (profile, best) = (candidate, d);
        } else {
            i += 1;
        }
    }
    let knows_queues = profile
        .etrn
        .iter()
        .any(|r| r.when.iter().any(|c| c.test == EtrnTest::KnownQueue));
    if !knows_queues {
        profile.queues.clear();
    }
    profile
}

/// The script the probes assume: the served domain served.
pub fn served_script() -> SmartHostScript {
    SmartHostScript {
        served: EtrnArg::parse(SERVED_DOMAIN).into_iter().collect(),
        ..SmartHostScript::default()
    }
}

/// The ETRN classes in rule order: conditions, the probe that shows the answer, its argument.
const ETRN_CLASSES: &[(&str, &str, &str)] = &[
    ("in-transaction", "etrn-in-transaction", "SERVED"),
    ("missing", "etrn-no-argument", ""),
    ("before-hello", "etrn-before-ehlo", "SERVED"),
    ("several-words", "etrn-two-arguments", "SERVED b.example"),
    ("eight-bit", "etrn-utf8", "bücher.example"),
    ("known-queue", "etrn-queue-mqueue", "#mqueue"),
    ("queue served", "etrn-queue-served", "#SERVED"),
    ("queue", "etrn-queue", "#queue"),
    ("subdomains served", "etrn-subdomains", "@SERVED"),
    ("subdomains !hostname", "etrn-at-alone", "@"),
    ("subdomains", "etrn-subdomains-not-served", "@b.example"),
    ("address-literal", "etrn-address-literal", "[127.0.0.1]"),
    ("!hostname", "etrn-bad-syntax", "-bad-"),
    ("served", "etrn-served", "SERVED"),
    ("any", "etrn-not-served", "b.example"),
];

fn conditions(text: &str) -> Result<Vec<Condition>, String> {
    text.split_whitespace().map(str::parse).collect()
}

/// The reply to the probe's last ETRN line.
fn etrn_reply(result: Option<&ProbeResult>) -> Option<&ReplyLines> {
    result?.etrn_replies().last().copied()
}

/// Masked values back into placeholders; the ETRN argument first, so that an argument that
/// looks like the client's address stays the argument.
fn placeholders(text: &str, masks: &Masks, arg: Option<&str>) -> String {
    let mut text = text.to_owned();
    if let Some(arg) = arg.filter(|a| !a.is_empty()) {
        let node = arg.trim_start_matches(['@', '#']);
        let seven_bit: String = arg.bytes().map(|b| char::from(b & 0x7f)).collect();
        if text.contains(arg) {
            text = text.replace(arg, "{arg}");
        } else if !arg.is_ascii() && text.contains(&seven_bit) {
            text = text.replace(&seven_bit, "{arg7}");
        } else if !node.is_empty() && text.contains(node) {
            text = text.replace(node, "{node}");
        }
    }
    masks
        .apply(&text)
        .replace("<host>", "{host}")
        .replace("<date>", "{date}")
        .replace("<client-ip>", "{client_ip}")
        .replace("<client>", "{client}")
}

/// The longest probed line read as a command, and what a longer one got.
fn line_limit(results: &[ProbeResult], masks: &Masks) -> Result<(usize, LongLine), String> {
    let sizes = [
        ("line-1100", 1100),
        ("line-2100", 2100),
        ("line-5000", 5000),
        ("line-20000", 20000),
    ];
    let mut limit = 1024;
    for (id, octets) in sizes {
        let Some(r) = results.iter().find(|r| r.id == id) else {
            continue;
        };
        let answer = etrn_reply(Some(r)).or_else(|| r.replies().last());
        let too_long = answer.is_some_and(|a| {
            a.code == 421
                || a.lines
                    .iter()
                    .any(|l| l.to_ascii_lowercase().contains("too long"))
        });
        if too_long {
            let reply = answer.map(|a| placeholders(&a.to_string(), masks, None));
            let reply = reply.unwrap_or_default();
            let parsed = Reply::parse(&reply).map_err(|e| e.to_string())?;
            return Ok((limit, LongLine::Reply(parsed)));
        }
        limit = octets;
    }
    // Every probed line was read: the server reads at least the longest.
    Ok((limit, LongLine::Truncate))
}

/// A greet pause, when the client that talked first was refused.
fn greet_pause(results: &[ProbeResult], masks: &Masks) -> Result<Option<GreetPause>, String> {
    let Some(r) = results.iter().find(|r| r.id == "talk-first") else {
        return Ok(None);
    };
    let replies: Vec<_> = r.replies().collect();
    let Some(first) = replies.first().filter(|g| g.code != 220) else {
        return Ok(None);
    };
    let parse = |r: &ReplyLines| Reply::parse(&placeholders(&r.to_string(), masks, None));
    let refusal = parse(first).map_err(|e| e.to_string())?;
    let refused_command = match replies.get(2) {
        Some(r) => parse(r).map_err(|e| e.to_string())?,
        None => refusal.clone(),
    };
    let millis = results
        .iter()
        .find(|r| r.id == "ehlo")
        .and_then(|r| r.greeting_ms)
        .unwrap_or(0);
    Ok(Some(GreetPause {
        millis,
        refusal,
        refused_command,
        ehlo_keywords: replies
            .get(1)
            .map(|e| e.lines.iter().skip(1).cloned().collect())
            .unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_of_every_class_parse() {
        for (when, _, _) in ETRN_CLASSES {
            assert!(conditions(when).is_ok(), "{when}");
        }
        assert_eq!(
            conditions("any").unwrap(),
            [Condition {
                negated: false,
                test: EtrnTest::Any
            }]
        );
    }
}
