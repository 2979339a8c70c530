//! The sans-IO session, byte for byte: every command, every ETRN reply code, scripting and limits.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use etrn_harness::domain::EtrnOption;
use etrn_harness::proto::SmartHostScript;
use etrn_harness::proto::{
    Accepted, CloseReason, EtrnFlag, EtrnRecord, Event, Output, Session, SessionLimits, transcript,
};
use proptest::prelude::*;

mod common;

/// Everything one batch of input produced.
#[derive(Debug, Default)]
struct Step {
    events: Vec<Event>,
    sent: String,
    starttls: bool,
    closed: Option<CloseReason>,
}

impl Step {
    fn codes(&self) -> Vec<u16> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Reply { code, .. } => Some(*code),
                _ => None,
            })
            .collect()
    }

    fn etrn(&self) -> Vec<EtrnRecord> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Etrn(r) => Some(r.as_ref().clone()),
                _ => None,
            })
            .collect()
    }
}

/// The virtual clock's origin: sessions are accepted then, and a test that does not care about
/// time gives every input this time (the session keeps the latest time it was told).
fn t0() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// `millis` after [`t0`] on the virtual clock.
fn at(millis: u64) -> Instant {
    t0() + Duration::from_millis(millis)
}

/// A session of `script` accepted at [`t0`], nothing drained yet.
fn accepted(script: &str, limits: SessionLimits) -> Session {
    let script: SmartHostScript = toml::from_str(script).expect("valid script");
    let behaviour = Arc::new(script).behaviour().expect("profile loads");
    let accepted = Accepted {
        index: 0,
        peer: std::net::Ipv4Addr::LOCALHOST.into(),
        now: t0(),
        wall_clock: std::time::SystemTime::UNIX_EPOCH,
    };
    Session::new(Arc::new(behaviour), limits, &accepted)
}

fn session_with(script: &str, limits: SessionLimits) -> (Session, Step) {
    let mut s = accepted(script, limits);
    let mut greeting = drain(&mut s);
    // A polite client: it waits out a greet pause (sendmail's) before it talks.
    if greeting.sent.is_empty()
        && let Some(pause_end) = s.poll_timeout()
    {
        s.handle_timeout(pause_end);
        greeting = drain(&mut s);
    }
    (s, greeting)
}

fn session(script: &str) -> (Session, Step) {
    session_with(script, SessionLimits::default())
}

fn drain(s: &mut Session) -> Step {
    let mut step = Step::default();
    while let Some(o) = s.poll_output() {
        match o {
            Output::Event(e) => step.events.push(e),
            Output::StartTls => step.starttls = true,
            Output::Close(r) => step.closed = Some(r),
        }
    }
    let mut bytes = Vec::new();
    s.poll_transmit(&mut bytes);
    step.sent = String::from_utf8_lossy(&bytes).into_owned();
    step
}

fn send(s: &mut Session, input: &[u8]) -> Step {
    send_at(s, input, t0())
}

fn send_at(s: &mut Session, input: &[u8], now: Instant) -> Step {
    s.receive(input, now);
    drain(s)
}

/// A session past EHLO.
fn greeted(script: &str) -> Session {
    let (mut s, _) = session(script);
    let step = send(&mut s, b"EHLO client.example\r\n");
    assert_eq!(step.codes(), [250]);
    s
}

#[test]
fn greeting_and_ehlo_advertise_the_scripted_keywords() {
    let (mut s, greeting) =
        session("ehlo_keywords = [\"ETRN\", \"SIZE 1000\", \"AUTH PLAIN LOGIN\"]");
    assert_eq!(greeting.sent, "220 smarthost.example ESMTP\r\n");
    let step = send(&mut s, b"EHLO client.example\r\n");
    assert_eq!(
        step.sent,
        "250-smarthost.example greets client.example\r\n250-ETRN\r\n250-SIZE 1000\r\n250 AUTH PLAIN LOGIN\r\n"
    );
}

#[test]
fn starttls_is_advertised_only_when_the_driver_can_do_it() {
    let limits = SessionLimits {
        starttls: true,
        ..SessionLimits::default()
    };
    let (mut s, _) = session_with("", limits);
    let step = send(&mut s, b"EHLO c\r\n");
    assert!(step.sent.ends_with("250 STARTTLS\r\n"), "{}", step.sent);
    let (mut plain, _) = session("ehlo_keywords = [\"ETRN\", \"STARTTLS\"]");
    let step = send(&mut plain, b"EHLO c\r\nSTARTTLS\r\n");
    assert!(
        !step.sent.contains("250 STARTTLS") && !step.sent.contains("250-STARTTLS"),
        "{}",
        step.sent
    );
    assert_eq!(step.codes(), [250, 502]);
}

#[test]
fn helo_mail_rcpt_data_rset_noop_vrfy_help_quit() {
    let (mut s, _) = session("");
    let step = send(
        &mut s,
        b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@b.example>\r\nDATA\r\n..leading dot\r\nbody\r\n.\r\nRSET\r\nNOOP\r\nVRFY x\r\nHELP\r\nQUIT\r\n",
    );
    assert_eq!(
        step.codes(),
        [250, 250, 250, 354, 250, 250, 250, 252, 214, 221]
    );
    let message = step.events.iter().find_map(|e| match e {
        Event::Message(m) => Some(m.clone()),
        _ => None,
    });
    let m = message.expect("a message was recorded");
    assert_eq!(m.from, "");
    assert_eq!(m.recipients, ["a@b.example"]);
    // ".leading dot\r\n" (unstuffed) + "body\r\n"
    assert_eq!(m.size, 14 + 6);
    assert_eq!(step.closed, Some(CloseReason::Quit));
}

#[test]
fn mail_accepts_esmtp_parameters_and_data_ends_only_at_crlf_dot_crlf() {
    let mut s = greeted("");
    let step = send(
        &mut s,
        b"MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<c@d.example>\r\nDATA\r\nline\n.\nstill data\r\n.\r\n",
    );
    assert_eq!(step.codes(), [250, 250, 354, 250]);
}

#[test]
fn commands_out_of_sequence_get_503() {
    let (mut s, _) = session("");
    let step = send(&mut s, b"MAIL FROM:<a@b.example>\r\nEHLO c\r\nRCPT TO:<x@y.example>\r\nDATA\r\nMAIL FROM:<a@b.example>\r\nMAIL FROM:<a@b.example>\r\nDATA\r\n");
    assert_eq!(step.codes(), [503, 250, 503, 503, 250, 503, 503]);
}

#[test]
fn unknown_verbs_get_500_and_the_session_goes_on() {
    let mut s = greeted("");
    let step = send(&mut s, b"FROB x\r\nNOOP\r\n");
    assert_eq!(step.codes(), [500, 250]);
    assert!(step.closed.is_none());
}

#[test]
fn every_rfc1985_reply_code_is_sent_and_recorded() {
    let script = r#"etrn = [
        { arg = "a250.example", reply = "250 OK, queuing for node {node} started" },
        { arg = "a251.example", reply = "251 OK, no messages waiting for node {node}" },
        { arg = "a252.example", reply = "252 OK, pending messages for node {node} started" },
        { arg = "a253.example", reply = "253 OK, 14 pending messages for node {node} started" },
        { arg = "a458.example", reply = "458 Unable to queue messages for node {node}" },
        { arg = "a459.example", reply = "459 Node {node} not allowed: Unable to resolve name." },
        { arg = "a500.example", reply = "500 Syntax Error" },
        { arg = "a501.example", reply = "501 Syntax Error in Parameters" },
    ]"#;
    let mut s = greeted(script);
    for code in [250, 251, 252, 253, 458, 459, 500, 501] {
        let step = send(&mut s, format!("ETRN a{code}.example\r\n").as_bytes());
        assert_eq!(step.codes(), [code]);
        let r = &step.etrn()[0];
        assert_eq!(r.reply, Some(code));
        assert_eq!(r.domain(), Some(format!("a{code}.example").as_str()));
        assert!(r.flags.is_empty(), "{:?}", r.flags);
    }
    let step = send(&mut s, b"ETRN a253.example\r\n");
    assert_eq!(
        step.sent,
        "253 OK, 14 pending messages for node a253.example started\r\n"
    );
}

#[test]
fn a_421_reply_to_etrn_closes_the_connection() {
    let mut s = greeted(r#"etrn_default = "421 4.3.0 closing""#);
    let step = send(&mut s, b"ETRN a.example\r\nETRN b.example\r\n");
    assert_eq!(step.codes(), [421]);
    assert_eq!(step.closed, Some(CloseReason::Scripted));
    assert_eq!(step.etrn().len(), 1, "nothing after 421 is processed");
}

#[test]
fn etrn_keeps_the_raw_argument_and_recognises_option_characters() {
    let mut s = greeted("");
    let step = send(
        &mut s,
        "ETRN @Sub.Example.\r\nETRN #queue_1\r\nETRN bücher.example\r\netrn x.example\n".as_bytes(),
    );
    let r = step.etrn();
    assert_eq!(r[0].raw(), "@Sub.Example.");
    assert_eq!(r[0].option, Some(EtrnOption::Subdomains));
    assert_eq!(r[0].domain(), Some("sub.example"));
    assert_eq!(r[1].option, Some(EtrnOption::Queue));
    assert_eq!(r[1].domain(), None);
    assert_eq!(r[2].raw(), "bücher.example");
    assert_eq!(r[2].domain(), Some("xn--bcher-kva.example"));
    assert_eq!(r[3].flags, [EtrnFlag::LowerCaseVerb, EtrnFlag::BareLf]);
}

#[test]
fn etrn_without_argument_gets_the_profiles_reply() {
    let mut s = greeted("");
    assert_eq!(
        send(&mut s, b"ETRN\r\n").sent,
        "501 Syntax Error in Parameters\r\n"
    );
    let mut p = greeted("profile = \"postfix\"");
    assert_eq!(
        send(&mut p, b"ETRN \r\n").sent,
        "500 Syntax: ETRN domain\r\n"
    );
}

#[test]
fn etrn_inside_a_transaction_gets_503_unless_the_profile_allows_it() {
    let mut s = greeted("");
    let step = send(&mut s, b"MAIL FROM:<>\r\nETRN a.example\r\n");
    assert_eq!(step.codes(), [250, 503]);
    assert_eq!(step.etrn()[0].flags, [EtrnFlag::InTransaction]);
    let mut sendmail = greeted("profile = \"sendmail\"");
    let step = send(&mut sendmail, b"MAIL FROM:<>\r\nETRN a.example\r\n");
    assert_eq!(step.codes(), [250, 250]);
    assert_eq!(step.etrn()[0].flags, [EtrnFlag::InTransaction]);
}

#[test]
fn etrn_before_ehlo_is_accepted_and_flagged() {
    let (mut s, _) = session("");
    let step = send(&mut s, b"ETRN a.example\r\n");
    assert_eq!(step.codes(), [250]);
    assert_eq!(step.etrn()[0].flags, [EtrnFlag::BeforeHello]);
}

#[test]
fn the_script_overrides_the_profiles_etrn_state_replies() {
    let (mut s, _) = session(
        "etrn_before_hello = \"503 5.5.1 Error: send HELO/EHLO first\"\netrn_in_transaction = \"250 fine\"\netrn_missing_argument = \"500 5.5.2 Parameter required\"",
    );
    let step = send(
        &mut s,
        b"ETRN a.example\r\nEHLO c\r\nMAIL FROM:<>\r\nETRN a.example\r\nRSET\r\nETRN\r\n",
    );
    assert_eq!(step.codes(), [503, 250, 250, 250, 250, 500]);
    assert!(step.sent.contains("250 fine\r\n"));
}

#[test]
fn etrn_that_was_not_advertised_is_flagged() {
    let mut s = greeted("ehlo_keywords = [\"8BITMIME\"]");
    let step = send(&mut s, b"ETRN a.example\r\n");
    assert_eq!(step.etrn()[0].flags, [EtrnFlag::NotAdvertised]);
    // After HELO there are no extensions at all: its own flag, graded by the HELO fallback rule.
    let (mut h, _) = session("");
    let step = send(&mut h, b"HELO c\r\nETRN a.example\r\n");
    assert_eq!(step.etrn()[0].flags, [EtrnFlag::AfterHelo]);
}

#[test]
fn two_nodes_in_one_etrn_are_refused_and_flagged() {
    let mut s = greeted("");
    let step = send(
        &mut s,
        b"ETRN a.example b.example\r\nETRN a.example,b.example\r\n",
    );
    assert_eq!(step.codes(), [501, 501]);
    for r in step.etrn() {
        assert_eq!(r.flags, [EtrnFlag::SeveralNodes, EtrnFlag::Invalid]);
    }
}

#[test]
fn turn_and_atrn() {
    let mut s = greeted("");
    let step = send(&mut s, b"TURN\r\nATRN a.example,b.example\r\n");
    assert_eq!(step.codes(), [502, 502]);
    assert!(step.events.contains(&Event::Atrn {
        domains: vec!["a.example".into(), "b.example".into()],
        reply: Some(502),
    }));
    let mut odmr = greeted("ehlo_keywords = [\"ATRN\", \"AUTH PLAIN\"]");
    let step = send(
        &mut odmr,
        b"ATRN a.example\r\nAUTH PLAIN AHVzZXIAc2VjcmV0\r\nATRN a.example\r\n",
    );
    assert_eq!(step.codes(), [530, 235, 453]);
    let mut scripted = greeted("[commands]\nTURN = \"250 OK, turning\"");
    assert_eq!(send(&mut scripted, b"TURN\r\n").codes(), [250]);
}

#[test]
fn auth_plain_and_login_accept_anything_and_redact() {
    let mut s = greeted("ehlo_keywords = [\"ETRN\", \"AUTH PLAIN LOGIN\"]");
    // "\0user\0secret"
    let step = send(&mut s, b"AUTH PLAIN AHVzZXIAc2VjcmV0\r\n");
    assert_eq!(step.codes(), [235]);
    assert!(step.events.contains(&Event::Auth {
        mechanism: "PLAIN".into(),
        username: "user".into()
    }));
    let text = transcript(&step.events);
    assert!(text.contains("C: AUTH PLAIN [redacted]"), "{text}");
    assert!(!text.contains("AHVzZXIAc2VjcmV0"), "{text}");

    let mut l = greeted("ehlo_keywords = [\"AUTH LOGIN\"]");
    let step = send(&mut l, b"AUTH LOGIN\r\ndXNlcg==\r\nc2VjcmV0\r\n");
    assert_eq!(step.codes(), [334, 334, 235]);
    let text = transcript(&step.events);
    assert!(
        !text.contains("c2VjcmV0") && text.contains("C: [redacted]"),
        "{text}"
    );

    let mut none = greeted("");
    assert_eq!(
        send(&mut none, b"AUTH PLAIN AHVzZXIAc2VjcmV0\r\n").codes(),
        [502]
    );
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let (mut s, _) = session("etrn = [{ arg = \"b.example\", reply = \"458 no\" }]");
    let step = send(
        &mut s,
        b"EHLO c\r\nETRN a.example\r\nETRN b.example\r\nNOOP\r\nQUIT\r\n",
    );
    assert_eq!(step.codes(), [250, 250, 458, 250, 221]);
}

#[test]
fn a_line_split_across_reads_is_one_command() {
    let mut s = greeted("");
    assert!(send(&mut s, b"ETR").events.is_empty());
    assert!(send(&mut s, b"N a.exa").events.is_empty());
    assert_eq!(send(&mut s, b"mple\r\n").codes(), [250]);
}

#[test]
fn an_overlong_line_gets_500_and_the_session_goes_on() {
    let limits = SessionLimits {
        max_line_octets: Some(64),
        ..SessionLimits::default()
    };
    let (mut s, _) = session_with("", limits);
    let long = format!("ETRN {}.example\r\n", "a".repeat(100));
    let step = send(&mut s, long.as_bytes());
    assert_eq!(step.codes(), [500]);
    assert!(step.sent.contains("Line too long"));
    assert!(step.etrn().is_empty());
    // Over several reads, without a line end for a while.
    s.receive(b"NOOP ", t0());
    for _ in 0..10 {
        s.receive(&[b'x'; 50], t0());
    }
    let step = send(&mut s, b"\r\nNOOP\r\n");
    assert_eq!(step.codes(), [500, 250]);
}

#[test]
fn bytes_that_are_not_utf8_are_recorded_as_received() {
    let mut s = greeted("");
    let step = send(&mut s, b"ETRN \xff\xfe.example\r\nNOOP \x00\x80\r\n");
    assert_eq!(step.codes(), [501, 250]);
    assert_eq!(step.etrn()[0].raw(), "\\xff\\xfe.example");
    let Some(Event::Command(c)) = step.events.first() else {
        panic!("first event is the command");
    };
    assert_eq!(c.raw, b"ETRN \xff\xfe.example\r\n");
}

#[test]
fn bytes_pipelined_after_starttls_are_discarded() {
    let limits = SessionLimits {
        starttls: true,
        ..SessionLimits::default()
    };
    let (mut s, _) = session_with("", limits);
    let step = send(&mut s, b"EHLO c\r\nSTARTTLS\r\nETRN injected.example\r\n");
    assert_eq!(step.codes(), [250, 220]);
    assert!(step.starttls);
    assert!(step.etrn().is_empty());
    assert!(
        step.events
            .contains(&Event::DiscardedAfterStartTls { octets: 23 })
    );
    // Anything else read before the handshake is discarded too.
    let step = send(&mut s, b"ETRN late.example\r\n");
    assert!(step.etrn().is_empty());
    s.tls_established(t0());
    let step = send(&mut s, b"ETRN a.example\r\n");
    assert_eq!(
        step.etrn()[0].flags,
        [EtrnFlag::BeforeHello],
        "TLS resets the session (RFC 3207)"
    );
}

#[test]
fn scripted_greeting_421_closes_at_once() {
    let (_, greeting) = session("greeting = \"421 4.3.2 busy\"");
    assert_eq!(greeting.sent, "421 4.3.2 busy\r\n");
    assert_eq!(greeting.closed, Some(CloseReason::RefusedAtGreeting));
}

#[test]
fn scripted_greeting_554_serves_only_quit() {
    let (mut s, _) = session("greeting = \"554 no service\"");
    let step = send(&mut s, b"EHLO c\r\nETRN a.example\r\nQUIT\r\n");
    assert_eq!(step.codes(), [503, 503, 221]);
    assert!(step.etrn().is_empty());
}

#[test]
fn helo_only_peer_refuses_ehlo_and_accepts_helo() {
    let (mut s, _) = session("helo_only = true");
    let step = send(&mut s, b"EHLO c\r\nHELO c\r\n");
    assert_eq!(step.codes(), [502, 250]);
}

#[test]
fn command_overrides_refuse_without_effect_or_replace_the_text() {
    let mut s = greeted("[commands]\nMAIL = [\"451 4.3.0 try later\", \"250 2.1.0 fine\"]");
    let step = send(
        &mut s,
        b"MAIL FROM:<>\r\nRCPT TO:<a@b.example>\r\nMAIL FROM:<>\r\nRCPT TO:<a@b.example>\r\n",
    );
    assert_eq!(step.codes(), [451, 503, 250, 250]);
    assert!(step.sent.contains("250 2.1.0 fine\r\n"));
}

#[test]
fn multi_line_delayed_and_silent_answers() {
    let mut s = greeted(
        r#"etrn = [
            { arg = "multi.example", reply = "250 first line\nsecond line" },
            { arg = "slow.example", reply = { reply = "250 OK", delay_ms = 40 } },
            { arg = "gone.example", reply = { close = true } },
        ]"#,
    );
    let step = send(&mut s, b"ETRN multi.example\r\nETRN slow.example\r\n");
    assert_eq!(step.sent, "250-first line\r\n250 second line\r\n");
    // The delayed reply is held; the session says until when.
    assert!(s.holds_output());
    assert_eq!(s.poll_timeout(), Some(at(40)));
    s.handle_timeout(at(40));
    assert_eq!(drain(&mut s).sent, "250 OK\r\n");
    let step = send(&mut s, b"ETRN gone.example\r\nNOOP\r\n");
    assert_eq!(step.sent, "");
    assert_eq!(step.closed, Some(CloseReason::Scripted));
    assert_eq!(step.etrn()[0].reply, None);
}

#[test]
fn a_message_over_the_size_limit_gets_552() {
    let limits = SessionLimits {
        max_message_octets: 10,
        ..SessionLimits::default()
    };
    let (mut s, _) = session_with("", limits);
    let step = send(&mut s, b"EHLO c\r\nMAIL FROM:<a@b.example> SIZE=11\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n0123456789abcdef\r\n.\r\n");
    assert_eq!(step.codes(), [250, 552, 250, 250, 354, 552]);
}

#[test]
fn idle_timeout_sends_421_and_closes() {
    let mut s = greeted("");
    s.handle_timeout(t0() + SessionLimits::default().idle_timeout);
    let step = drain(&mut s);
    assert_eq!(step.codes(), [421]);
    assert_eq!(step.closed, Some(CloseReason::IdleTimeout));
    s.receive(b"NOOP\r\n", t0() + Duration::from_secs(301));
    assert!(
        drain(&mut s).events.is_empty(),
        "a closed session ignores input"
    );
}

#[test]
fn transcript_of_an_ims_like_session_matches_its_snapshot() {
    let (mut s, greeting) = session(
        r#"etrn = [{ arg = "b.com", reply = "251 OK, no messages waiting for node {node}" }]"#,
    );
    let mut events = greeting.events;
    for line in [
        "EHLO ims.site.org.com\r\n",
        "MAIL FROM:<user@site.org.com>\r\n",
        "RCPT TO:<someone@remote.example>\r\n",
        "DATA\r\n",
        "Subject: test\r\n\r\nhello\r\n.\r\n",
        "ETRN a.com\r\n",
        "ETRN b.com\r\n",
        "QUIT\r\n",
    ] {
        events.extend(send(&mut s, line.as_bytes()).events);
    }
    common::snapshot_settings()
        .bind(|| insta::assert_snapshot!("session_ims_transcript", transcript(&events)));
}

/// Lines of commands that always get exactly one reply and never change the framing.
fn one_reply_command() -> impl Strategy<Value = Vec<u8>> {
    let text = prop_oneof![
        Just("NOOP".to_string()),
        Just("RSET".to_string()),
        Just("HELO c.example".to_string()),
        Just("EHLO c.example".to_string()),
        Just("VRFY x".to_string()),
        Just("MAIL FROM:<a@b.example>".to_string()),
        Just("RCPT TO:<c@d.example>".to_string()),
        Just("TURN".to_string()),
        Just("ETRN".to_string()),
        "ETRN [@#]?[a-z0-9.]{1,20}",
        "[A-Z]{1,8}( [ -~]{0,20})?",
        "[ -~]{0,40}",
    ];
    (text, any::<bool>()).prop_filter_map("skip verbs that change the framing", |(t, crlf)| {
        let verb = t.split(' ').next().unwrap_or("").to_ascii_uppercase();
        if ["DATA", "AUTH", "STARTTLS", "QUIT", "BDAT"].contains(&verb.as_str()) {
            return None;
        }
        let mut line = t.into_bytes();
        line.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        Some(line)
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..20)) {
        let (mut s, _) = session("ehlo_keywords = [\"ETRN\", \"AUTH PLAIN LOGIN\"]");
        for c in &chunks {
            s.receive(c, t0());
            drain(&mut s);
        }
        s.handle_timeout(at(3_600_000));
        drain(&mut s);
    }

    #[test]
    fn every_complete_command_line_gets_exactly_one_reply(
        lines in prop::collection::vec(one_reply_command(), 1..30),
        split in any::<prop::sample::Index>(),
    ) {
        let (mut s, _) = session("");
        let input: Vec<u8> = lines.concat();
        // Delivered in two reads at an arbitrary point: framing must not depend on it.
        let at = split.index(input.len() + 1);
        s.receive(&input[..at], t0());
        let mut step = drain(&mut s);
        s.receive(&input[at..], t0());
        let rest = drain(&mut s);
        step.events.extend(rest.events);
        let commands = step.events.iter().filter(|e| matches!(e, Event::Command(_))).count();
        prop_assert_eq!(commands, lines.len());
        prop_assert_eq!(step.codes().len(), lines.len());
    }

    /// The driver hands over what a read brought cut at each line end (`receive_cut`, which
    /// does not search a piece for its end again): the same events, replies and close as the
    /// read given whole, for any bytes (commands, long lines, a message, a line end alone),
    /// however the reads fall.
    #[test]
    fn lines_handed_over_cut_are_served_as_the_read_they_came_in(
        reads in prop::collection::vec(
            prop::collection::vec(
                prop_oneof![
                    one_reply_command(),
                    Just(b"DATA\r\n".to_vec()),
                    Just(b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n".to_vec()),
                    Just(b"line of a message\r\n.\r\n".to_vec()),
                    prop::collection::vec(any::<u8>(), 0..700),
                    Just(b"\n".to_vec()),
                ],
                0..6,
            )
            .prop_map(|pieces| pieces.concat()),
            1..8,
        ),
    ) {
        let script = "ehlo_keywords = [\"ETRN\", \"AUTH PLAIN LOGIN\"]";
        let (mut whole, _) = session(script);
        let (mut cut, _) = session(script);
        for read in &reads {
            let given = send(&mut whole, read);
            for piece in read.split_inclusive(|b| *b == b'\n') {
                cut.receive_cut(piece, t0());
            }
            let taken = drain(&mut cut);
            prop_assert_eq!(format!("{:?}", taken.events), format!("{:?}", given.events));
            prop_assert_eq!(taken.sent, given.sent);
            prop_assert_eq!(taken.closed, given.closed);
            prop_assert_eq!(taken.starttls, given.starttls);
        }
    }
}

#[test]
fn a_scripted_421_or_close_ends_the_session() {
    let mut s = greeted("[commands]\nMAIL = \"421 4.3.2 going down\"");
    let step = send(
        &mut s,
        b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n",
    );
    assert_eq!(step.codes(), [421], "nothing after the 421");
    assert_eq!(step.closed, Some(CloseReason::Scripted));

    let mut s = greeted("[commands]\nRCPT = { reply = \"550 5.1.1 no\", close = true }");
    let step = send(
        &mut s,
        b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nQUIT\r\n",
    );
    assert_eq!(step.codes(), [250, 550]);
    assert_eq!(step.closed, Some(CloseReason::Scripted));
}

#[test]
fn a_scripted_etrn_answer_is_recorded_with_its_code() {
    // A refusal by override is still an ETRN, with the code the client got.
    let mut s = greeted("[commands]\nETRN = \"458 4.3.0 busy\"");
    let step = send(&mut s, b"ETRN a.example\r\n");
    assert_eq!(step.codes(), [458]);
    assert_eq!(step.etrn().len(), 1);
    assert_eq!(step.etrn()[0].reply, Some(458));
    // A positive override over a profile that would refuse: the recording says 250.
    let mut s = greeted("profile = \"postfix\"\n[commands]\nETRN = \"250 2.0.0 fine\"");
    let step = send(&mut s, b"ETRN a.example\r\n");
    assert_eq!(step.codes(), [250]);
    assert_eq!(step.etrn()[0].reply, Some(250));
    // By occurrence, and a 421 override closes.
    let mut s = greeted("[commands]\nETRN = [\"250 ok\", \"421 4.3.2 bye\"]");
    let step = send(
        &mut s,
        b"ETRN a.example\r\nETRN b.example\r\nETRN c.example\r\n",
    );
    assert_eq!(step.codes(), [250, 421]);
    let replies: Vec<_> = step.etrn().iter().map(|e| e.reply).collect();
    assert_eq!(replies, [Some(250), Some(421)]);
    assert_eq!(step.closed, Some(CloseReason::Scripted));
}

/// Asserts that the session's next deadline is `deadline` and that nothing comes out a
/// millisecond before it; then moves the virtual clock to it and returns what came out.
fn at_the_deadline(s: &mut Session, deadline: Instant) -> Step {
    assert_eq!(
        s.poll_timeout(),
        Some(deadline),
        "the session's next deadline"
    );
    s.handle_timeout(deadline - Duration::from_millis(1));
    let early = drain(s);
    assert!(
        early.events.is_empty() && early.sent.is_empty() && early.closed.is_none(),
        "nothing before the deadline: {early:?}"
    );
    s.handle_timeout(deadline);
    drain(s)
}

/// A sendmail session accepted at [`t0`], nothing drained yet.
fn sendmail() -> Session {
    accepted("profile = \"sendmail\"", SessionLimits::default())
}

#[test]
fn a_greet_pause_is_time_given_to_the_session() {
    let mut s = sendmail();
    // Nothing until the pause is over; the session says when that is.
    assert!(drain(&mut s).sent.is_empty());
    let greeting = at_the_deadline(&mut s, at(1000));
    assert!(
        greeting
            .sent
            .starts_with("220 smarthost.example ESMTP Sendmail")
    );
    // The greeting's date is the accept time's, as the driver gave it.
    assert!(greeting.sent.contains("Thu, 01 Jan 1970 00:00:00 GMT"));
    // Then only the idle deadline, counted from the accept: the client has said nothing yet.
    assert_eq!(s.poll_timeout(), Some(at(300_000)));
}

/// A session on the virtual clock with a 10-second idle timeout, greeted at [`t0`].
fn idling(script: &str) -> Session {
    let limits = SessionLimits {
        idle_timeout: Duration::from_secs(10),
        ..SessionLimits::default()
    };
    let (s, greeting) = session_with(script, limits);
    assert_eq!(greeting.codes(), [220]);
    s
}

#[test]
fn the_idle_deadline_is_the_sessions_nothing_before_it_and_421_at_it() {
    let mut s = idling("");
    let step = at_the_deadline(&mut s, at(10_000));
    assert_eq!(
        step.sent,
        "421 4.4.2 smarthost.example Error: timeout exceeded\r\n"
    );
    assert_eq!(step.closed, Some(CloseReason::IdleTimeout));
    assert_eq!(s.poll_timeout(), None, "closed: no deadline left");
}

#[test]
fn a_line_end_moves_the_idle_deadline_and_a_byte_at_a_time_does_not() {
    let mut s = idling("");
    // A complete line at 4 s: the deadline is 10 s after it.
    assert_eq!(send_at(&mut s, b"NOOP\r\n", at(4_000)).codes(), [250]);
    assert_eq!(s.poll_timeout(), Some(at(14_000)));
    // A slowloris: a byte a second, no line end. The deadline stays where it was.
    for (i, byte) in b"NOOP".iter().enumerate() {
        send_at(&mut s, &[*byte], at(5_000 + 1_000 * i as u64));
        assert_eq!(s.poll_timeout(), Some(at(14_000)));
    }
    assert_eq!(
        at_the_deadline(&mut s, at(14_000)).closed,
        Some(CloseReason::IdleTimeout)
    );
}

#[test]
fn tls_established_starts_the_idle_deadline_again() {
    let limits = SessionLimits {
        starttls: true,
        idle_timeout: Duration::from_secs(10),
        ..SessionLimits::default()
    };
    let (mut s, _) = session_with("", limits);
    assert!(send_at(&mut s, b"EHLO c\r\nSTARTTLS\r\n", at(1_000)).starttls);
    // The handshake is the driver's to time: the session asks for no wake-up meanwhile.
    assert_eq!(s.poll_timeout(), None);
    s.tls_established(at(7_000));
    assert_eq!(s.poll_timeout(), Some(at(17_000)));
}

#[test]
fn a_delayed_reply_is_held_until_its_time_and_later_replies_queue_behind_it() {
    let mut s = idling(
        r#"etrn = [{ arg = "slow.example", reply = { reply = "250 slow", delay_ms = 3000 } }]"#,
    );
    // Received at 1 s: the ETRN's reply is due at 4 s; the NOOP pipelined behind it waits too.
    let step = send_at(&mut s, b"ETRN slow.example\r\nNOOP\r\n", at(1_000));
    // The ETRN's reply is decided at once (its event is reported), its bytes are held.
    assert_eq!(step.codes(), [250]);
    assert_eq!(step.sent, "");
    assert!(s.holds_output());
    // A line that comes during the hold is answered behind it too.
    let step = send_at(&mut s, b"RSET\r\n", at(2_000));
    assert!(step.events.is_empty() && step.sent.is_empty());
    let step = at_the_deadline(&mut s, at(4_000));
    assert_eq!(step.sent, "250 slow\r\n250 2.0.0 OK\r\n250 2.0.0 OK\r\n");
    assert_eq!(step.codes(), [250, 250]);
    assert!(!s.holds_output());
    // The idle deadline is back: 10 s after the last line end (the RSET at 2 s).
    assert_eq!(s.poll_timeout(), Some(at(12_000)));
}

#[test]
fn what_the_observer_reads_behind_a_delayed_reply_is_reported_behind_it() {
    let mut s = idling(
        r#"etrn = [{ arg = "slow.example", reply = { reply = "250 slow", delay_ms = 3000 } }]"#,
    );
    // Pipelined behind the delayed ETRN: a line over the 512-octet limit, then a NOOP.
    let input = format!("ETRN slow.example\r\nNOOP {}\r\nNOOP\r\n", "x".repeat(600));
    let step = send_at(&mut s, input.as_bytes(), at(1_000));
    // Only the ETRN's own events come out at once: the observer's verdicts on the lines after
    // it (too long, a command) wait with their replies.
    let too_long = |step: &Step| {
        step.events
            .iter()
            .any(|e| matches!(e, Event::LineTooLong { .. }))
    };
    assert!(!too_long(&step), "{:?}", step.events);
    assert_eq!(step.codes(), [250]);
    assert_eq!(step.sent, "");
    let step = at_the_deadline(&mut s, at(4_000));
    assert!(too_long(&step), "{:?}", step.events);
    assert!(
        step.events
            .iter()
            .any(|e| matches!(e, Event::Command(c) if c.raw == b"NOOP\r\n")),
        "{:?}",
        step.events
    );
    assert!(step.sent.starts_with("250 slow\r\n5"), "{}", step.sent);
    assert!(step.sent.ends_with("250 2.0.0 OK\r\n"), "{}", step.sent);
}

#[test]
fn delays_run_one_after_another_and_the_idle_deadline_waits_for_them() {
    let mut s = idling(r#"etrn_default = { reply = "250 later", delay_ms = 8000 }"#);
    send_at(&mut s, b"ETRN a.example\r\nETRN b.example\r\n", at(0));
    // The second delay starts when the first reply goes out: 8 s, then 16 s.
    assert_eq!(at_the_deadline(&mut s, at(8_000)).sent, "250 later\r\n");
    // 16 s is past the idle deadline (10 s): no 421 while the client waits for the server.
    let step = at_the_deadline(&mut s, at(16_000));
    // The last reply out, the deadline long past: the 421 follows it, as it did when the driver
    // slept through the delay.
    assert_eq!(
        step.sent,
        "250 later\r\n421 4.4.2 smarthost.example Error: timeout exceeded\r\n"
    );
    assert_eq!(step.closed, Some(CloseReason::IdleTimeout));
}

#[test]
fn a_delayed_hang_up_closes_at_its_time() {
    let mut s = idling(r#"etrn_default = { close = true, delay_ms = 500 }"#);
    let step = send_at(&mut s, b"ETRN a.example\r\n", at(0));
    assert_eq!(step.closed, None);
    let step = at_the_deadline(&mut s, at(500));
    assert_eq!(
        (step.sent.as_str(), step.closed),
        ("", Some(CloseReason::Scripted))
    );
}

#[test]
fn a_client_that_talks_during_the_greet_pause_meets_a_null_server() {
    let mut s = sendmail();
    let step = send(
        &mut s,
        b"EHLO c.example\r\nETRN a.example\r\nNOOP\r\nQUIT\r\n",
    );
    // Refused at once, not after the pause; EHLO cut down; ETRN refused; NOOP and QUIT served.
    assert_eq!(step.codes(), [554, 250, 550, 250, 221]);
    assert!(step.events.contains(&Event::TalkedBeforeGreeting));
    assert!(step.sent.contains("250 ENHANCEDSTATUSCODES\r\n"));
    assert!(!step.sent.contains("ETRN\r\n"));
    assert_eq!(step.closed, Some(CloseReason::Quit));
}

#[test]
fn exim_limits_errors_and_non_mail_commands() {
    let (mut s, _) = session("profile = \"exim\"");
    let step = send(&mut s, b"EHLO c\r\n");
    assert_eq!(step.codes(), [250]);
    let step = send(&mut s, &b"ETRN a.example\r\n".repeat(4));
    assert_eq!(step.codes(), [501, 501, 501, 501]);
    assert!(
        step.sent.ends_with(
            "501-argument must begin with #\r\n501 Too many syntax or protocol errors\r\n"
        )
    );
    assert_eq!(step.closed, Some(CloseReason::TooManyErrors));
    let (mut s, _) = session("profile = \"exim-default\"");
    let mut input = b"EHLO c\r\n".to_vec();
    input.extend(b"ETRN a.example\r\n".repeat(10));
    input.extend(b"NOOP\r\n");
    let step = send(&mut s, &input);
    assert_eq!(step.codes().last(), Some(&554));
    assert_eq!(step.codes().len(), 12);
    assert_eq!(step.closed, Some(CloseReason::TooManyCommands));
}

#[test]
fn long_lines_as_each_profile_reads_them() {
    let line = |octets: usize| {
        let mut l = b"ETRN ".to_vec();
        l.resize(octets - 2, b'a');
        l.extend_from_slice(b"\r\n");
        l
    };
    // Postfix reads the first 2048 octets as the command: not a host name.
    let (mut s, _) = session("profile = \"postfix\"");
    assert_eq!(send(&mut s, &line(5000)).codes(), [501]);
    // Exim reads every 16384 octets as a command of its own.
    let (mut s, _) = session("profile = \"exim\"");
    assert_eq!(send(&mut s, &line(20000)).codes(), [500, 500]);
    // sendmail hangs up on a line over 2048 octets.
    let (mut s, _) = session("profile = \"sendmail\"");
    let step = send(&mut s, &line(2100));
    assert_eq!(step.codes(), [421]);
    assert!(step.closed.is_some());
}

#[test]
fn an_over_long_auth_response_is_never_read_as_a_command() {
    // Postfix reads an over-long command line up to its limit; an AUTH response is no command.
    let (mut s, _) = session("profile = \"postfix\"\nehlo_keywords = [\"ETRN\", \"AUTH PLAIN\"]");
    send(&mut s, b"EHLO c\r\n");
    assert_eq!(send(&mut s, b"AUTH PLAIN\r\n").codes(), [334]);
    let mut secret = b"ETRN ".to_vec();
    secret.resize(3000, b'A');
    secret.extend_from_slice(b"\r\n");
    let step = send(&mut s, &secret);
    assert_eq!(step.codes(), [500]);
    assert!(step.etrn().is_empty());
    assert!(
        step.events
            .iter()
            .all(|e| !matches!(e, Event::Command(c) if c.raw.starts_with(b"ETRN"))),
        "{:?}",
        step.events
    );
}

/// The unterminated lines a session recorded when its client closed.
fn unterminated(s: &mut Session) -> Vec<String> {
    s.peer_closed();
    drain(s)
        .events
        .into_iter()
        .filter_map(|e| match e {
            Event::Unterminated { raw } => Some(String::from_utf8_lossy(&raw).into_owned()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_last_line_the_client_never_ended_is_recorded_and_not_acted_on() {
    let mut s = greeted("");
    let step = send(&mut s, b"ETRN a.example");
    assert!(step.events.is_empty() && step.sent.is_empty(), "{step:?}");
    let mut tail = greeted("");
    send(&mut tail, b"ETRN a.example");
    let events = {
        tail.peer_closed();
        drain(&mut tail).events
    };
    assert!(
        events.iter().all(|e| !matches!(e, Event::Etrn(_))),
        "never acted on: {events:?}"
    );
    assert_eq!(unterminated(&mut s), ["ETRN a.example"]);
    // Credentials go through the one redaction, in an AUTH exchange or on the AUTH line.
    let mut s = greeted("ehlo_keywords = [\"ETRN\", \"AUTH PLAIN LOGIN\"]");
    send(&mut s, b"AUTH PLAIN AHVzZXIAc2VjcmV0");
    assert_eq!(unterminated(&mut s), ["AUTH PLAIN [redacted]"]);
    let mut s = greeted("ehlo_keywords = [\"ETRN\", \"AUTH PLAIN LOGIN\"]");
    let step = send(&mut s, b"AUTH LOGIN\r\ndXNlcg");
    assert_eq!(step.codes(), [334]);
    assert_eq!(unterminated(&mut s), ["[redacted]"]);
    // Nothing pending: nothing recorded.
    let mut s = greeted("");
    assert!(unterminated(&mut s).is_empty());
}

#[test]
fn an_auth_response_pipelined_behind_a_refused_auth_is_never_recorded() {
    // No AUTH offered: AUTH gets 502/503, and the credentials behind it 500, unrecorded.
    // sendmail echoes an unknown command in its reply: the echo is redacted too.
    for script in [
        "",
        "ehlo_keywords = [\"ETRN\", \"AUTH PLAIN LOGIN\"]",
        "profile = \"sendmail\"",
    ] {
        for auth in [
            &b"AUTH PLAIN\r\n"[..],
            b"AUTH CRAM-MD5\r\n",
            b"AUTH LOGIN dXNlcg==\r\n",
        ] {
            let mut s = greeted(script);
            let mut input = auth.to_vec();
            input.extend_from_slice(b"AGFsaWNlAHNlY3JldA==\r\nETRN a.example\r\n");
            let step = send(&mut s, &input);
            let text = format!("{:?} {}", step.events, step.sent);
            assert!(!text.contains("AGFsaWNl"), "{script} {auth:?}: {text}");
            assert!(!text.to_ascii_uppercase().contains("AGFSAWNL"), "{text}");
            assert_eq!(step.etrn().len(), 1, "the session goes on: {text}");
        }
    }
}
