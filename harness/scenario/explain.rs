//! A plan rendered for people: what `etrn-harness expect` prints, and what the plan snapshots hold.

use std::fmt::Write;

use crate::ims::{self, ConnectionTarget, Dequeue, Greeting, PeerEhlo, Reaction, Rule};

use super::file::Scenario;
use super::judge::Deviation;
use super::predict::Prediction;

/// Renders the prediction for a scenario, and how it compares with the file's `[expect]`.
pub fn explain(scenario: &Scenario, prediction: &Prediction, deviations: &[Deviation]) -> String {
    let mut o = String::new();
    header(&mut o, scenario, prediction);
    decisions(&mut o, prediction);
    connections(&mut o, prediction);
    reply_handling(&mut o, prediction);
    against_smarthost(&mut o, scenario, prediction);
    etrn_per_connection(&mut o, prediction);
    verdict(&mut o, deviations);
    o
}

/// The scenario, its basis and the peer.
fn header(o: &mut String, scenario: &Scenario, prediction: &Prediction) {
    let _ = writeln!(o, "scenario {}: {}", scenario.id, scenario.title);
    let _ = writeln!(
        o,
        "basis: {} (grade {})",
        scenario.basis.join(", "),
        scenario.grade
    );
    let _ = writeln!(o, "peer: {}", peer_line(&prediction.peer));
    if prediction.refused_at_greeting {
        let _ = writeln!(
            o,
            "the smart host refuses the session in its greeting: nothing is sent"
        );
    }
    let _ = writeln!(o);
}

/// The model's decisions, each with its rule.
fn decisions(o: &mut String, prediction: &Prediction) {
    let p = &prediction.plan;
    let _ = writeln!(o, "decisions:");
    for d in &p.decisions {
        let _ = writeln!(o, "  [{}] {}", rule_tag(d.rule), d.note);
    }
    let _ = writeln!(o);
}

/// The dial-up command, the connections, and what each sends.
fn connections(o: &mut String, prediction: &Prediction) {
    let p = &prediction.plan;
    if let Some(cmd) = &p.local_command {
        let _ = writeln!(o, "local command when the link is up: {cmd}");
    }
    if p.connections.is_empty() {
        let _ = writeln!(o, "connections: none");
    } else {
        let hosts: Vec<String> = p.connections.iter().map(target).collect();
        let _ = writeln!(o, "connections ({}): {}", hosts.len(), hosts.join(", "));
        let peers_differ = prediction
            .runs
            .iter()
            .any(|r| r.peer.is_some() && r.peer.as_ref() != Some(&prediction.peer));
        if peers_differ {
            let _ = writeln!(
                o,
                "connection 1 (later connections plan with the EHLO reply they get):"
            );
        } else {
            let _ = writeln!(o, "each connection:");
        }
        let s = &p.session;
        match s.greeting {
            Greeting::Ehlo => {
                let _ = writeln!(o, "  EHLO {}", s.client_name);
            }
            Greeting::HeloAfterRefusedEhlo => {
                let _ = writeln!(o, "  EHLO {}  (refused)", s.client_name);
                let _ = writeln!(o, "  HELO {}", s.client_name);
            }
        }
        if s.outbound_messages > 0 {
            let _ = writeln!(o, "  MAIL / RCPT / DATA x {}", s.outbound_messages);
        }
        match &s.dequeue {
            Dequeue::Nothing => {}
            Dequeue::Turn => {
                let _ = writeln!(o, "  AUTH");
                let _ = writeln!(
                    o,
                    "  TURN                          [{}]",
                    rule_tag(Rule::TurnForm)
                );
            }
            Dequeue::Etrn(list) => {
                for e in list {
                    let _ = writeln!(o, "  ETRN {:<25} [{}]", e.arg.raw(), rule_tag(e.rule));
                }
            }
        }
        let _ = writeln!(o, "  QUIT");
    }
}

/// How the client reacts to each class of reply to ETRN, when it sends ETRN.
fn reply_handling(o: &mut String, prediction: &Prediction) {
    let p = &prediction.plan;
    if matches!(p.session.dequeue, Dequeue::Etrn(_)) {
        let _ = writeln!(o);
        let _ = writeln!(o, "reply handling:");
        for (label, code) in ims::reaction::REPLY_CLASSES {
            let (reaction, rule) = ims::react(*code);
            let _ = writeln!(
                o,
                "  {:<32} {:<30} [{}]",
                label,
                reaction.label(),
                rule_tag(rule)
            );
        }
    }
}

/// What each connection does against the scenario's own smart host.
fn against_smarthost(o: &mut String, scenario: &Scenario, prediction: &Prediction) {
    if !prediction.runs.is_empty() && !prediction.refused_at_greeting {
        let _ = writeln!(o);
        let _ = writeln!(
            o,
            "against this scenario's smart host ({}):",
            scenario.smarthost.profile
        );
        for (i, run) in prediction.runs.iter().enumerate() {
            let _ = writeln!(o, "  connection {}:", i + 1);
            if run.exchanges.is_empty() {
                let _ = writeln!(o, "    no ETRN");
            }
            for x in &run.exchanges {
                let reply = x.reply.map_or("no reply".to_owned(), |c| c.to_string());
                let _ = writeln!(
                    o,
                    "    ETRN {} -> {reply} -> {}",
                    x.arg.raw(),
                    reaction_word(x.reaction)
                );
            }
            for n in &run.not_sent {
                let _ = writeln!(o, "    (ETRN {} not sent)", n.raw());
            }
            if !run.quits {
                let _ = writeln!(o, "    (no QUIT: the server closed)");
            }
        }
    }
}

/// The ETRN arguments per connection, one line when every connection sends the same.
fn etrn_per_connection(o: &mut String, prediction: &Prediction) {
    let _ = writeln!(o);
    let per_connection: Vec<String> = prediction
        .etrn_per_connection()
        .iter()
        .map(|c| c.join(", "))
        .collect();
    match per_connection.split_first() {
        Some((first, rest)) if rest.iter().any(|c| c != first) => {
            for (i, c) in per_connection.iter().enumerate() {
                let _ = writeln!(o, "ETRN on connection {}: [{c}]", i + 1);
            }
        }
        Some((first, _)) => {
            let _ = writeln!(o, "ETRN on each connection: [{first}]");
        }
        None => {
            let _ = writeln!(o, "ETRN on each connection: []");
        }
    }
}

/// Whether the model agrees with the file's `[expect]`.
fn verdict(o: &mut String, deviations: &[Deviation]) {
    if deviations.is_empty() {
        let _ = writeln!(o, "[expect]: the model agrees");
    } else {
        let _ = writeln!(o, "[expect]: the model DISAGREES:");
        for d in deviations {
            let _ = writeln!(o, "  {d}");
        }
    }
}

fn rule_tag(rule: Rule) -> String {
    format!("{}, {}, {}", rule.id(), rule.grade(), rule.basis())
}

fn reaction_word(r: Reaction) -> &'static str {
    match r {
        Reaction::Continue => "continue",
        Reaction::StopEtrn => "stop",
        Reaction::Disconnect => "disconnect",
    }
}

fn target(t: &ConnectionTarget) -> String {
    match t {
        ConnectionTarget::ForwardHost(h) => format!("forward host {h}"),
        ConnectionTarget::Mx(Some(h)) => format!("MX {h}"),
        ConnectionTarget::Mx(None) => "MX".into(),
    }
}

fn peer_line(p: &PeerEhlo) -> String {
    match p {
        PeerEhlo::HeloOnly => "refuses EHLO (HELO only)".into(),
        PeerEhlo::Esmtp { keywords } => format!("ESMTP, advertises [{}]", keywords.join(", ")),
    }
}
