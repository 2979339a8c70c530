//! The model's prediction for a scenario: the IMS client paired in memory with the scenario's own
//! smart host.
//!
//! Nothing here walks a plan by hand. The sans-IO [`ImsClient`] (the same one the built-in target
//! drives over TCP) talks to the very conversations the scenario's smart host serves: the
//! scripted [`Session`](crate::proto::Session) with the scenario's behaviour, or a cassette replay.
//! Bytes go from one to the other as they would over a socket, and the server's events go into a
//! [`RecordingBuilder`], which builds the same [`Recording`] a running smart host's recorder does.
//! So the prediction follows every script feature for free: command overrides, EHLO answers and
//! replies by occurrence, hang-ups, delays longer than the client waits. And it is judged exactly
//! as a run is, from a [`Recording`].
//!
//! Time is virtual. The clock starts at one reading and moves only to the server's next deadline
//! ([`Conversation::poll_timeout`]: a delayed reply, a greet pause, the idle timeout) while the
//! client waits for a reply; the client has timed out when that deadline is past its own (its
//! reply timeout after its last command, or after connecting for the greeting). So a prediction
//! takes no wall-clock time and is the same every run.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::ims::{self, Action, ConnectionRun, DequeuePlan, ImsClient, PeerEhlo};
use crate::proto::Accepted;
use crate::proto::Recording;
use crate::proto::factory::{ConversationFactory, Conversations, ConversationsError};
use crate::proto::recording::RecordingBuilder;
use crate::proto::session::deadline_after;
use crate::proto::{Conversation, Output, SessionLimits};
use crate::reply::ReplyReader;

use super::file::Scenario;
use super::judge::Observed;

/// How long the model's client waits for a reply unless told otherwise: the conformance runner's
/// default `--timeout`, so a scripted delay longer than that is "no reply" in both.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The address the in-memory client is recorded as coming from.
const IN_MEMORY_PEER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
    0,
);

/// What the reference model expects to happen in a scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    /// What the first connection learned from EHLO (the script's EHLO answer when the cycle makes
    /// no connection, or the greeting refuses it).
    pub peer: PeerEhlo,
    /// True when the smart host refuses the session in its greeting (e.g. `421` at connect).
    pub refused_at_greeting: bool,
    /// The plan of the first connection; each connection plans with the EHLO answer it got.
    pub plan: DequeuePlan,
    /// What the client did, one entry per connection.
    pub runs: Vec<ConnectionRun>,
    /// What the scenario's smart host recorded.
    #[serde(skip)]
    pub recording: Recording,
}

impl Prediction {
    /// The ETRN arguments the smart host receives on each connection, as on the wire.
    pub fn etrn_per_connection(&self) -> Vec<Vec<String>> {
        self.observed()
            .connections
            .iter()
            .map(|c| c.iter().map(|e| e.arg.raw().to_owned()).collect())
            .collect()
    }

    /// The prediction in the shape expectations judge: read from the recording, like a run.
    pub fn observed(&self) -> Observed {
        Observed::from_recording(
            &self.recording,
            self.plan.local_command.iter().cloned().collect(),
        )
    }
}

/// Runs the model on a scenario, with the default reply timeout.
pub fn predict(scenario: &Scenario) -> Result<Prediction, ConversationsError> {
    predict_with(scenario, DEFAULT_REPLY_TIMEOUT)
}

/// Runs the model on a scenario; the client gives up on a reply after `reply_timeout`.
pub fn predict_with(
    scenario: &Scenario,
    reply_timeout: Duration,
) -> Result<Prediction, ConversationsError> {
    let conversations =
        Conversations::for_script(&scenario.smarthost, None, &SessionLimits::default())?.factory;
    let profile = scenario.smarthost.profile()?;
    let scripted_peer = scenario.smarthost.peer_ehlo(&profile);
    let mut recorder = RecordingBuilder::new();
    let cycle = ims::cycle(&scenario.ims);
    let mut runs = Vec::with_capacity(cycle.connections);
    let mut first_plan = None;
    for index in 0..cycle.connections {
        let (run, plan) = pair(
            &scenario.ims,
            &conversations,
            &mut recorder,
            index,
            reply_timeout,
        );
        if first_plan.is_none() {
            first_plan = plan;
        }
        runs.push(run);
    }
    let recording = recorder.recording();
    let refused_at_greeting = recording
        .sessions
        .first()
        .and_then(|s| s.greeting.as_ref())
        .is_some_and(|g| g.code / 100 != 2);
    let peer = runs
        .first()
        .and_then(|r| r.peer.clone())
        .unwrap_or(scripted_peer);
    let plan = first_plan.unwrap_or_else(|| ims::plan(&scenario.ims, &peer));
    Ok(Prediction {
        peer,
        refused_at_greeting,
        plan,
        runs,
        recording,
    })
}

/// One connection: the client and the server's conversation `index`, bytes carried between them
/// until the client is done, the server's events into `recorder`.
fn pair(
    config: &ims::ImsConfig,
    conversations: &ConversationFactory,
    recorder: &mut RecordingBuilder,
    index: usize,
    reply_timeout: Duration,
) -> (ConnectionRun, Option<DequeuePlan>) {
    let id = recorder.open(IN_MEMORY_PEER, 0);
    let mut now = std::time::Instant::now();
    let mut server = conversations(&Accepted {
        index: index as u64,
        peer: IN_MEMORY_PEER.ip(),
        now,
        wall_clock: std::time::SystemTime::UNIX_EPOCH,
    });
    let mut client = ImsClient::new(config);
    let mut replies = ReplyReader::new();
    let mut server_closed = false;
    // When the client stops waiting for the reply it waits for.
    let mut gives_up_at = deadline_after(now, reply_timeout);
    loop {
        if drain(server.as_mut(), recorder, id, &mut |bytes| {
            replies.push(bytes)
        }) {
            server_closed = true;
        }
        let reply = match replies.next_reply() {
            Some(Ok(reply)) => reply,
            // Nothing yet: the clock moves to the server's next deadline, if the client is still
            // waiting then.
            None if !server_closed
                && let Some(at) = server.poll_timeout()
                && at <= gives_up_at =>
            {
                now = now.max(at);
                server.handle_timeout(now);
                continue;
            }
            // Malformed, or nothing is coming in time (the server closed, its next deadline is
            // past the client's, or it waits for input this client will not send): the client
            // drops the connection.
            _ => {
                client.on_closed();
                break;
            }
        };
        match client.on_reply(&reply) {
            Action::Send(bytes) => {
                server.receive(&bytes, now);
                gives_up_at = deadline_after(now, reply_timeout);
            }
            Action::Close => break,
        }
    }
    if !server_closed {
        server.peer_closed();
        // What the server still holds (a reply the client did not wait for, its close) goes
        // out at its time: the recording ends as a run's does.
        while server.holds_output()
            && let Some(at) = server.poll_timeout()
        {
            now = now.max(at);
            server.handle_timeout(now);
        }
        drain(server.as_mut(), recorder, id, &mut |_| {});
    }
    let plan = client.plan().cloned();
    (client.into_run(), plan)
}

/// Carries out the server's outputs: events to the recorder, bytes to `send`. True when the
/// server closed the connection.
fn drain(
    server: &mut dyn Conversation,
    recorder: &mut RecordingBuilder,
    id: u64,
    send: &mut dyn FnMut(&[u8]),
) -> bool {
    let mut closed = false;
    let mut bytes = Vec::new();
    while let Some(output) = server.poll_output() {
        match output {
            Output::Event(event) => recorder.event(id, event, 0),
            // This client never asks for STARTTLS.
            Output::StartTls => {}
            Output::Close(reason) => {
                recorder.close(id, reason, 0);
                closed = true;
            }
        }
    }
    server.poll_transmit(&mut bytes);
    if !bytes.is_empty() {
        send(&bytes);
    }
    closed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ims::Rule;

    fn scenario(smarthost: &str) -> Scenario {
        let text = format!(
            "id = \"t\"\ntitle = \"t\"\nbasis = [\"KB269771\"]\ngrade = \"must\"\n[ims]\nsite_address = \"@site.com\"\noutbound_messages = 1\nregistry = {{ AlwaysUseETRN = 1 }}\nrouting_table = [{{ sent_to = \"a.com\", action = \"inbound\" }}, {{ sent_to = \"b.com\", action = \"inbound\" }}]\n[smarthost]\n{smarthost}\n[expect]\netrn = []\n"
        );
        match super::super::parse_scenario(std::path::Path::new("t.toml"), &text) {
            Ok(s) => s,
            Err(e) => panic!("{e:?}"),
        }
    }

    fn replies(p: &Prediction) -> Vec<(String, Option<u16>)> {
        p.runs[0]
            .exchanges
            .iter()
            .map(|x| (x.arg.raw().to_owned(), x.reply.map(|c| c.get())))
            .collect()
    }

    #[test]
    fn a_delay_longer_than_the_client_waits_is_no_reply() {
        let s = scenario(
            "etrn = [{ arg = \"a.com\", reply = { reply = \"250 OK\", delay_ms = 3000 } }]",
        );
        let patient = predict_with(&s, Duration::from_secs(10)).unwrap();
        assert_eq!(
            replies(&patient),
            [("a.com".into(), Some(250)), ("b.com".into(), Some(250))]
        );
        let hasty = predict_with(&s, Duration::from_secs(1)).unwrap();
        assert_eq!(replies(&hasty), [("a.com".into(), None)]);
        assert_eq!(hasty.runs[0].exchanges[0].rule, Rule::NoReply);
        // The server did answer, late; the client had gone.
        assert_eq!(hasty.recording.sessions[0].etrn[0].record.reply, Some(250));
        assert_eq!(hasty.observed().connections[0].len(), 1);
    }

    #[test]
    fn the_client_times_out_on_the_virtual_clock_exactly_at_its_timeout() {
        // Two delays of 3 s in one session: each is measured from the client's own command, so
        // a client that waits 3 s gets both replies, and one that waits a millisecond less none.
        let s = scenario("etrn_default = { reply = \"250 OK\", delay_ms = 3000 }");
        let exact = predict_with(&s, Duration::from_millis(3000)).unwrap();
        assert_eq!(
            replies(&exact),
            [("a.com".into(), Some(250)), ("b.com".into(), Some(250))]
        );
        let short = predict_with(&s, Duration::from_millis(2999)).unwrap();
        assert_eq!(replies(&short), [("a.com".into(), None)]);
        // The reply the client did not wait for still goes out, and the session ends as the
        // client left it.
        let session = &short.recording.sessions[0];
        assert_eq!(session.close, Some(crate::proto::CloseReason::PeerClosed));
    }

    #[test]
    fn a_greet_pause_longer_than_the_client_waits_is_no_greeting() {
        // sendmail's greet pause is 1 s.
        let s = scenario("profile = \"sendmail\"");
        assert!(
            !predict_with(&s, Duration::from_secs(1)).unwrap().runs[0]
                .exchanges
                .is_empty()
        );
        let hasty = predict_with(&s, Duration::from_millis(999)).unwrap();
        assert!(hasty.runs[0].exchanges.is_empty());
        assert_eq!(hasty.recording.sessions[0].greeting, None);
    }

    #[test]
    fn a_scripted_hang_up_ends_the_connection() {
        let s = scenario("etrn = [{ arg = \"a.com\", reply = { close = true } }]");
        let p = predict(&s).unwrap();
        assert_eq!(replies(&p), [("a.com".into(), None)]);
        assert_eq!(p.runs[0].not_sent.len(), 1);
        assert!(!p.runs[0].quits);
    }

    #[test]
    fn a_command_override_is_followed() {
        // 421 to MAIL: the client closes before any ETRN.
        let s = scenario("[smarthost.commands]\nMAIL = \"421 4.3.2 shutting down\"");
        let p = predict(&s).unwrap();
        assert!(p.runs[0].exchanges.is_empty());
        assert!(p.observed().connections[0].is_empty());
        // 451 to MAIL: the message stays queued and the ETRNs still go out.
        let s = scenario("[smarthost.commands]\nMAIL = \"451 4.3.0 later\"");
        assert_eq!(predict(&s).unwrap().runs[0].exchanges.len(), 2);
    }
}
