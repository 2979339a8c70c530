//! The IMS as an SMTP client, sans I/O: fed the greeting and each reply, it says what to send next.
//!
//! [`ImsClient`] is one connection of a delivery cycle. It owns no socket and no clock: the driver
//! gives it every complete reply ([`ImsClient::on_reply`]) and carries out the [`Action`] it
//! returns; when the server hangs up or stops answering the driver says so
//! ([`ImsClient::on_closed`]). What the client does follows the model: it plans with
//! [`plan()`](super::plan()) once it knows the peer's EHLO answer, and reacts to each ETRN reply
//! with [`react`].
//!
//! Two drivers run it: the built-in conformance target over TCP (`crate::conformance::builtin`)
//! and the model's prediction, which pairs it in memory with the scenario's own smart host
//! (`crate::scenario::predict`), as quinn-proto pairs its endpoints in tests. One client, predicted
//! and run the same way, so a prediction cannot disagree with the reference implementation.

use std::collections::VecDeque;

use base64::Engine;
use serde::Serialize;

use crate::domain::EtrnArg;
use crate::reply::{Reply, ReplyCode};

use super::config::ImsConfig;
use super::peer::PeerEhlo;
use super::plan::{Dequeue, DequeuePlan, PlannedEtrn, plan};
use super::reaction::{Reaction, react};
use super::rules::Rule;

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes (a command line with its CRLF, or message data up to CRLF.CRLF), then
    /// feed the reply to [`ImsClient::on_reply`].
    Send(Vec<u8>),
    /// Close the connection: the conversation is over (after QUIT's reply, or after 421).
    Close,
}

/// One ETRN command and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EtrnExchange {
    pub arg: EtrnArg,
    /// `None`: the server hung up or did not answer in time.
    pub reply: Option<ReplyCode>,
    pub reaction: Reaction,
    pub rule: Rule,
}

/// What the client did on one connection, as it saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionRun {
    /// What the EHLO exchange told it; `None` when it never got that far.
    pub peer: Option<PeerEhlo>,
    pub exchanges: Vec<EtrnExchange>,
    /// Planned ETRNs that were not sent because of a reply.
    pub not_sent: Vec<EtrnArg>,
    /// Whether it sent TURN.
    pub turn: bool,
    /// Whether it ended with QUIT (false after 421 or when the server hung up).
    pub quits: bool,
}

impl ConnectionRun {
    /// The arguments sent, in order.
    pub fn sent(&self) -> Vec<&EtrnArg> {
        self.exchanges.iter().map(|e| &e.arg).collect()
    }
}

/// The reply the client is waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Awaiting {
    Greeting,
    Ehlo,
    Helo,
    Mail {
        message: u32,
    },
    Rcpt {
        message: u32,
    },
    Rset,
    Data {
        message: u32,
    },
    EndOfData {
        message: u32,
    },
    Auth,
    Turn,
    Etrn(PlannedEtrn),
    Quit,
    /// Nothing more: the conversation is over.
    Done,
}

/// One connection of the IMS delivery cycle.
#[derive(Debug)]
pub struct ImsClient {
    config: ImsConfig,
    awaiting: Awaiting,
    plan: Option<DequeuePlan>,
    etrn_queue: VecDeque<PlannedEtrn>,
    run: ConnectionRun,
}

impl ImsClient {
    /// A client about to connect; the first input is the server's greeting.
    pub fn new(config: &ImsConfig) -> Self {
        ImsClient {
            config: config.clone(),
            awaiting: Awaiting::Greeting,
            plan: None,
            etrn_queue: VecDeque::new(),
            run: ConnectionRun {
                peer: None,
                exchanges: Vec::new(),
                not_sent: Vec::new(),
                turn: false,
                quits: false,
            },
        }
    }

    /// True once the conversation is over.
    pub fn is_done(&self) -> bool {
        self.awaiting == Awaiting::Done
    }

    /// The plan this connection follows, once the EHLO exchange has decided it.
    pub fn plan(&self) -> Option<&DequeuePlan> {
        self.plan.as_ref()
    }

    /// What happened on this connection.
    pub fn run(&self) -> &ConnectionRun {
        &self.run
    }

    /// Ends the client and returns what happened.
    pub fn into_run(self) -> ConnectionRun {
        self.run
    }

    /// The server closed the connection, or a reply did not come in time: the client drops the
    /// connection without another command (the O-11 baseline for "no reply").
    pub fn on_closed(&mut self) {
        match std::mem::replace(&mut self.awaiting, Awaiting::Done) {
            Awaiting::Etrn(planned) => {
                self.run.exchanges.push(EtrnExchange {
                    arg: planned.arg,
                    reply: None,
                    reaction: Reaction::Disconnect,
                    rule: Rule::NoReply,
                });
                self.give_up_etrn();
            }
            // QUIT went out: a server that closes without answering it is fine.
            Awaiting::Quit => self.run.quits = true,
            _ => {}
        }
    }

    /// A complete reply from the server.
    pub fn on_reply(&mut self, reply: &Reply) -> Action {
        let code = reply.code();
        let awaiting = std::mem::replace(&mut self.awaiting, Awaiting::Done);
        // RFC 5321 §3.8: 421 to any command means the server is closing; send nothing further.
        // (To an ETRN the reaction below says the same, and records the exchange.)
        if code == ReplyCode::CLOSING && !matches!(awaiting, Awaiting::Quit | Awaiting::Etrn(_)) {
            return Action::Close;
        }
        let positive = code.is_positive();
        match awaiting {
            Awaiting::Greeting if positive => self.command(Awaiting::Ehlo, &self.hello("EHLO")),
            Awaiting::Greeting => self.quit(),
            Awaiting::Ehlo if positive => {
                // The first line names the server; every later line is an EHLO keyword line.
                let keywords = reply.lines().iter().skip(1).cloned().collect();
                self.after_hello(PeerEhlo::Esmtp { keywords })
            }
            Awaiting::Ehlo => self.command(Awaiting::Helo, &self.hello("HELO")),
            Awaiting::Helo if positive => self.after_hello(PeerEhlo::HeloOnly),
            Awaiting::Helo => self.quit(),
            Awaiting::Mail { message } if code.get() == 250 => self.command(
                Awaiting::Rcpt { message },
                "RCPT TO:<someone@remote.example>",
            ),
            Awaiting::Rcpt { message } if matches!(code.get(), 250 | 251) => {
                self.command(Awaiting::Data { message }, "DATA")
            }
            // A refused recipient leaves a transaction open: reset it before going on.
            Awaiting::Rcpt { .. } => self.command(Awaiting::Rset, "RSET"),
            Awaiting::Data { message } if code.get() == 354 => {
                self.awaiting = Awaiting::EndOfData { message };
                Action::Send(
                    format!(
                        "Subject: outbound message {}\r\n\r\nqueued by the IMS\r\n.\r\n",
                        message + 1
                    )
                    .into_bytes(),
                )
            }
            Awaiting::EndOfData { message } if code.get() == 250 => self.deliver(message + 1),
            // The server refused a message: the rest stays queued; go on to the dequeue.
            Awaiting::Mail { .. }
            | Awaiting::Data { .. }
            | Awaiting::EndOfData { .. }
            | Awaiting::Rset => self.dequeue(),
            Awaiting::Auth if code.get() == 235 => {
                self.run.turn = true;
                self.command(Awaiting::Turn, "TURN")
            }
            Awaiting::Auth | Awaiting::Turn => self.quit(),
            Awaiting::Etrn(planned) => {
                let (reaction, rule) = react(code);
                self.run.exchanges.push(EtrnExchange {
                    arg: planned.arg,
                    reply: Some(code),
                    reaction,
                    rule,
                });
                match reaction {
                    Reaction::Continue => self.next_etrn(),
                    Reaction::StopEtrn => {
                        self.give_up_etrn();
                        self.quit()
                    }
                    Reaction::Disconnect => {
                        self.give_up_etrn();
                        Action::Close
                    }
                }
            }
            Awaiting::Quit => {
                self.run.quits = true;
                Action::Close
            }
            Awaiting::Done => Action::Close,
        }
    }

    fn hello(&self, verb: &str) -> String {
        format!("{verb} {}", self.config.ehlo_name().raw())
    }

    fn command(&mut self, next: Awaiting, line: &str) -> Action {
        self.awaiting = next;
        Action::Send(format!("{line}\r\n").into_bytes())
    }

    fn quit(&mut self) -> Action {
        self.command(Awaiting::Quit, "QUIT")
    }

    /// The EHLO (or HELO) exchange is done: plan with what the peer said, then deliver.
    fn after_hello(&mut self, peer: PeerEhlo) -> Action {
        let planned = plan(&self.config, &peer);
        if let Dequeue::Etrn(list) = &planned.session.dequeue {
            self.etrn_queue = list.iter().cloned().collect();
        }
        self.plan = Some(planned);
        self.run.peer = Some(peer);
        self.deliver(0)
    }

    /// Outbound message `message` (0-based), or the dequeue when all are delivered (O-4 baseline:
    /// outbound mail first).
    fn deliver(&mut self, message: u32) -> Action {
        let queued = self
            .plan
            .as_ref()
            .map_or(0, |p| p.session.outbound_messages);
        if message >= queued {
            return self.dequeue();
        }
        let sender = format!(
            "MAIL FROM:<postmaster@{}>",
            self.config.site_address.domain().raw()
        );
        self.command(Awaiting::Mail { message }, &sender)
    }

    fn dequeue(&mut self) -> Action {
        let dequeue = self
            .plan
            .as_ref()
            .map_or(Dequeue::Nothing, |p| p.session.dequeue.clone());
        match dequeue {
            Dequeue::Nothing => self.quit(),
            Dequeue::Etrn(_) => self.next_etrn(),
            Dequeue::Turn => match &self.config.turn_credentials {
                Some(cred) => {
                    let token = base64::engine::general_purpose::STANDARD
                        .encode(format!("\0{}\0{}", cred.username, cred.password));
                    self.command(Awaiting::Auth, &format!("AUTH PLAIN {token}"))
                }
                None => self.quit(),
            },
        }
    }

    fn next_etrn(&mut self) -> Action {
        match self.etrn_queue.pop_front() {
            Some(planned) => {
                let line = format!("ETRN {}", planned.arg.raw());
                self.command(Awaiting::Etrn(planned), &line)
            }
            None => self.quit(),
        }
    }

    /// No further ETRN on this connection: what was planned is recorded as not sent.
    fn give_up_etrn(&mut self) {
        self.run
            .not_sent
            .extend(self.etrn_queue.drain(..).map(|p| p.arg));
    }
}

/// How many connections a delivery cycle makes, and the dial-up command it runs locally. Neither
/// depends on the peer, so the cycle is known before the first connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    pub connections: usize,
    pub local_command: Option<String>,
}

/// The delivery cycle of `config`.
pub fn cycle(config: &ImsConfig) -> Cycle {
    let p = plan(config, &PeerEhlo::HeloOnly);
    Cycle {
        connections: p.connections.len(),
        local_command: p.local_command,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ims::{RegistryFlag, RoutingMode, RoutingRow, SiteAddress};

    fn config() -> ImsConfig {
        let mut c = ImsConfig::new(SiteAddress::parse("@site.example").unwrap());
        c.registry.always_use_etrn = Some(RegistryFlag::Enabled);
        c.routing = RoutingMode::Reroute;
        c.routing_table = ["a.example", "b.example"]
            .iter()
            .map(|d| RoutingRow::inbound(d).unwrap())
            .collect();
        c.outbound_messages = 1;
        c
    }

    fn reply(text: &str) -> Reply {
        Reply::parse(text).unwrap()
    }

    fn sent(a: Action) -> String {
        match a {
            Action::Send(b) => String::from_utf8(b).unwrap(),
            Action::Close => "<close>".into(),
        }
    }

    /// Greeting, EHLO with ETRN and the one outbound message; returns what comes next.
    fn ready(c: &mut ImsClient) -> String {
        let steps = [
            ("220 hi", "EHLO site.example\r\n"),
            ("250 mx\nETRN", "MAIL FROM:<postmaster@site.example>\r\n"),
            ("250 ok", "RCPT TO:<someone@remote.example>\r\n"),
            ("250 ok", "DATA\r\n"),
        ];
        for (r, expected) in steps {
            assert_eq!(sent(c.on_reply(&reply(r))), expected);
        }
        let data = sent(c.on_reply(&reply("354 go on")));
        assert!(data.ends_with("\r\n.\r\n"), "{data:?}");
        sent(c.on_reply(&reply("250 queued")))
    }

    #[test]
    fn a_conversation_step_by_step() {
        let mut c = ImsClient::new(&config());
        assert_eq!(ready(&mut c), "ETRN a.example\r\n");
        assert_eq!(sent(c.on_reply(&reply("458 busy"))), "ETRN b.example\r\n");
        assert_eq!(sent(c.on_reply(&reply("250 ok"))), "QUIT\r\n");
        assert_eq!(sent(c.on_reply(&reply("221 bye"))), "<close>");
        assert!(c.is_done());
        let run = c.into_run();
        assert!(run.quits);
        assert_eq!(run.sent().len(), 2);
    }

    #[test]
    fn a_syntax_error_stops_etrn_and_421_closes_anywhere() {
        let mut c = ImsClient::new(&config());
        ready(&mut c);
        assert_eq!(sent(c.on_reply(&reply("501 no"))), "QUIT\r\n");
        assert_eq!(c.run().not_sent.len(), 1);

        let mut c = ImsClient::new(&config());
        c.on_reply(&reply("220 hi"));
        c.on_reply(&reply("250 mx\nETRN"));
        // 421 to MAIL: the server is closing; no RCPT, no QUIT.
        assert_eq!(sent(c.on_reply(&reply("421 going away"))), "<close>");
        assert!(!c.run().quits);
    }

    #[test]
    fn a_refused_message_goes_on_to_the_dequeue() {
        let mut c = ImsClient::new(&config());
        c.on_reply(&reply("220 hi"));
        c.on_reply(&reply("250 mx\nETRN"));
        assert_eq!(sent(c.on_reply(&reply("451 later"))), "ETRN a.example\r\n");
    }

    #[test]
    fn no_reply_to_an_etrn_is_recorded_and_ends_the_connection() {
        let mut c = ImsClient::new(&config());
        ready(&mut c);
        c.on_closed();
        let run = c.into_run();
        assert_eq!(run.exchanges[0].reply, None);
        assert_eq!(run.exchanges[0].rule, Rule::NoReply);
        assert_eq!(run.not_sent.len(), 1);
        assert!(!run.quits);
    }

    #[test]
    fn a_refused_ehlo_falls_back_to_helo_and_sends_no_etrn() {
        let mut c = ImsClient::new(&config());
        c.on_reply(&reply("220 hi"));
        assert_eq!(sent(c.on_reply(&reply("502 no"))), "HELO site.example\r\n");
        assert_eq!(
            sent(c.on_reply(&reply("250 hello"))),
            "MAIL FROM:<postmaster@site.example>\r\n"
        );
        assert_eq!(c.run().peer, Some(PeerEhlo::HeloOnly));
        assert_eq!(c.plan().map(|p| p.etrn_args().len()), Some(0));
    }
}
