//! Property tests of the IMS model and the scenario format over generated configurations.

use std::collections::HashSet;
use std::path::Path;

use etrn_harness::domain::{Domain, EtrnArg, EtrnOption};
use etrn_harness::ims::MatchKind;
use etrn_harness::ims::{
    self, Credentials, Delivery, Dequeue, DialUp, ExchangeVersion, Grade, ImsConfig, PeerEhlo,
    Registry, RegistryFlag, RoutingAction, RoutingMode, RoutingRow, SentTo, SiteAddress,
};
use etrn_harness::proto::{ProfileName, SmartHostScript};
use etrn_harness::scenario::{self, Expectations, ExpectedEtrn, Scenario};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn config() -> ProptestConfig {
    // Cases come from PROPTEST_CASES (default 256); failures are kept under tests/.
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/proptest-regressions/properties.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// An RFC 1035 letters-digits-hyphen label, in mixed case.
fn label() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?"
}

fn domain_text() -> impl Strategy<Value = String> {
    (prop::collection::vec(label(), 1..4), any::<bool>()).prop_map(|(labels, dot)| {
        let mut d = labels.join(".");
        if dot {
            d.push('.');
        }
        d
    })
}

fn domain() -> impl Strategy<Value = Domain> {
    prop_oneof![
        9 => domain_text(),
        1 => Just("bücher.example".to_string()),
    ]
    .prop_map(|d| Domain::parse(&d).expect("generated domains are valid"))
}

fn routing_row() -> impl Strategy<Value = RoutingRow> {
    (any::<bool>(), domain(), 0..3u8, domain()).prop_map(|(exact, domain, action, to)| RoutingRow {
        sent_to: SentTo {
            matching: if exact {
                MatchKind::Exact
            } else {
                MatchKind::DomainAndSubdomains
            },
            domain,
        },
        action: match action {
            0 => RoutingAction::Inbound,
            1 => RoutingAction::Reroute(to),
            _ => RoutingAction::Relay,
        },
    })
}

fn flag() -> impl Strategy<Value = Option<RegistryFlag>> {
    prop_oneof![
        Just(None),
        Just(Some(RegistryFlag::Disabled)),
        Just(Some(RegistryFlag::Enabled))
    ]
}

fn site_address() -> impl Strategy<Value = SiteAddress> {
    (
        prop_oneof![Just(""), Just("%m"), Just("%g.%s"), Just("%g%2s")],
        domain(),
    )
        .prop_map(|(user, d)| SiteAddress::parse(&format!("{user}@{}", d.raw())).expect("valid"))
}

/// Any configuration the format accepts.
fn any_config() -> impl Strategy<Value = ImsConfig> {
    let registry = (flag(), flag(), flag()).prop_map(|(e, t, d)| Registry {
        always_use_etrn: e,
        always_use_turn: t,
        disable_etrn: d,
    });
    let dialup = prop_oneof![
        3 => Just(None),
        1 => Just(Some(DialUp::None)),
        1 => prop::collection::vec(domain(), 0..3).prop_map(|domains| Some(DialUp::Etrn { domains })),
        1 => Just(Some(DialUp::Command { command: "ping isp.example".into() })),
    ];
    let delivery = prop_oneof![
        Just(Delivery::default()),
        domain().prop_map(|host| Delivery::Forward { host }),
    ];
    (
        prop_oneof![Just(ExchangeVersion::V5_0Sp1), Just(ExchangeVersion::V5_5)],
        registry,
        prop_oneof![Just(RoutingMode::Reroute), Just(RoutingMode::DoNotReroute)],
        prop::collection::vec(routing_row(), 0..6),
        site_address(),
        delivery,
        dialup,
        0..4u32,
        1..3u32,
        prop::option::of(Just(Credentials {
            username: "site-org".into(),
            password: "secret".into(),
        })),
    )
        .prop_map(
            |(
                version,
                registry,
                routing,
                routing_table,
                site_address,
                delivery,
                dialup,
                outbound,
                per_host,
                credentials,
            )| {
                let mut c = ImsConfig::new(site_address);
                c.version = version;
                c.registry = registry;
                if version < ExchangeVersion::V5_5 {
                    // AlwaysUseTURN exists from 5.5 SP3: a scenario file with it on 5.0 is invalid.
                    c.registry.always_use_turn = None;
                }
                c.routing = routing;
                c.routing_table = routing_table;
                c.delivery = delivery;
                c.dialup = dialup;
                c.outbound_messages = outbound;
                c.connections_per_host = per_host;
                c.turn_credentials = credentials;
                c
            },
        )
}

/// A plain AlwaysUseETRN set-up: 5.5, mail queued, no dial-up, no TURN.
fn always_use_etrn(mut c: ImsConfig) -> ImsConfig {
    c.version = ExchangeVersion::V5_5;
    c.registry.always_use_etrn = Some(RegistryFlag::Enabled);
    c.registry.always_use_turn = None;
    c.dialup = None;
    c.outbound_messages = c.outbound_messages.max(1);
    c
}

fn etrn_peer() -> PeerEhlo {
    PeerEhlo::esmtp(["PIPELINING", "ETRN", "8BITMIME"])
}

fn planned(c: &ImsConfig, peer: &PeerEhlo) -> Vec<EtrnArg> {
    ims::plan(c, peer)
        .etrn_args()
        .into_iter()
        .cloned()
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn do_not_reroute_sends_exactly_the_site_domain(c in any_config()) {
        let mut c = always_use_etrn(c);
        c.routing = RoutingMode::DoNotReroute;
        let args = planned(&c, &etrn_peer());
        prop_assert_eq!(args, vec![EtrnArg::plain(c.site_address.domain().clone())]);
    }

    #[test]
    fn reroute_sends_the_tables_domains_normalised_and_deduplicated(c in any_config()) {
        let mut c = always_use_etrn(c);
        c.routing = RoutingMode::Reroute;
        let args = planned(&c, &etrn_peer());
        let normalised: Vec<&str> = args.iter().map(|a| a.domain().expect("a domain").normalised()).collect();
        let mut expected: Vec<&str> = Vec::new();
        for row in &c.routing_table {
            let d = row.sent_to.domain.normalised();
            if !expected.contains(&d) {
                expected.push(d);
            }
        }
        prop_assert_eq!(normalised, expected);
    }

    #[test]
    fn no_always_use_etrn_and_no_dial_up_etrn_sends_nothing(c in any_config()) {
        let mut c = c;
        c.registry.always_use_etrn = None;
        if matches!(c.dialup, Some(DialUp::Etrn { .. })) {
            c.dialup = None;
        }
        prop_assert!(planned(&c, &etrn_peer()).is_empty());
    }

    #[test]
    fn a_peer_without_the_etrn_keyword_gets_nothing(
        c in any_config(),
        keywords in prop::collection::vec("(PIPELINING|SIZE [0-9]{1,6}|8BITMIME|ETRNX|AUTH LOGIN|X-ETRN)", 0..5),
        helo_only in any::<bool>(),
    ) {
        let peer = if helo_only { PeerEhlo::HeloOnly } else { PeerEhlo::Esmtp { keywords } };
        prop_assert!(planned(&c, &peer).is_empty());
    }

    #[test]
    fn every_planned_argument_is_a_plain_valid_domain(c in any_config()) {
        for arg in planned(&c, &etrn_peer()) {
            prop_assert_eq!(arg.option(), EtrnOption::None);
            let d = Domain::parse(arg.raw());
            prop_assert!(d.is_ok(), "{:?}: {:?}", arg, d);
            let reparsed = EtrnArg::parse(arg.raw());
            prop_assert!(reparsed.is_ok());
            prop_assert_eq!(reparsed.expect("checked"), arg);
        }
    }

    #[test]
    fn no_argument_is_planned_twice_on_one_connection(c in any_config()) {
        let args = planned(&c, &etrn_peer());
        let unique: HashSet<&EtrnArg> = args.iter().collect();
        prop_assert_eq!(unique.len(), args.len());
    }

    #[test]
    fn turn_never_comes_with_etrn(c in any_config()) {
        let plan = ims::plan(&c, &PeerEhlo::esmtp(["ETRN", "AUTH LOGIN"]));
        if c.registry.always_use_turn() {
            prop_assert!(plan.etrn_args().is_empty());
        }
        if plan.session.dequeue == Dequeue::Turn {
            prop_assert!(c.registry.always_use_turn() && c.turn_credentials.is_some());
        }
    }

    #[test]
    fn a_scenario_rendered_to_toml_parses_back_to_the_same_value(
        c in any_config(),
        profile in prop::sample::select(ProfileName::ALL),
        grade in prop_oneof![Just(Grade::Must), Just(Grade::Should), Just(Grade::Informational)],
        helo_only in any::<bool>(),
    ) {
        let args = planned(&c, &etrn_peer());
        let scenario = Scenario {
            id: "generated-case".into(),
            title: "a generated scenario".into(),
            basis: vec!["KB269771".into()],
            grade,
            covers: vec!["T3".into()],
            ims: c,
            smarthost: SmartHostScript { profile, helo_only, ..SmartHostScript::default() },
            expect: Expectations {
                etrn: args.into_iter().map(|arg| ExpectedEtrn { arg, grade: None }).collect(),
                ..Expectations::default()
            },
        };
        let text = toml::to_string(&scenario).expect("a scenario renders to TOML");
        let parsed = scenario::parse_scenario(Path::new("generated.toml"), &text);
        prop_assert!(parsed.is_ok(), "{}\n{:?}", text, parsed.err().map(|e| e.iter().map(|e| e.one_line()).collect::<Vec<_>>()));
        let parsed = parsed.expect("checked");
        prop_assert_eq!(&parsed, &scenario);
        // Raw text survives too, not only the normalised comparison form.
        prop_assert_eq!(toml::to_string(&parsed).expect("renders"), text);
    }
}
