//! `etrn-harness probe`: the probe set against a smart host, graded, compared, or cloned.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use etrn_harness::domain::EtrnArg;
use etrn_harness::escape::escape;
use etrn_harness::probe::{
    self, Comparison, End, Masks, ProbeReport, ProbeResult, compare, profile_from,
};
use etrn_harness::proto::{Profile, SmartHostScript};
use etrn_harness::scenario;

use super::{EXIT_DISAGREES, EXIT_INVALID, ProbeArgs, ProbeFormat, report_errors};

/// What the server is compared with: a name for reports, the script and its profile.
struct Against {
    name: String,
    script: SmartHostScript,
    profile: Profile,
}

/// `probe`: lists the set, or probes the server, reports, compares, emits its profile.
pub fn run(args: ProbeArgs) -> ExitCode {
    if args.list {
        list();
        return ExitCode::SUCCESS;
    }
    let Some(server) = args.server else {
        eprintln!("error: give the smart host as HOST:PORT");
        return ExitCode::from(EXIT_INVALID);
    };
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 3600.0) {
        eprintln!(
            "error: --timeout {} is not a number of seconds between 0 and 3600",
            args.timeout
        );
        return ExitCode::from(EXIT_INVALID);
    }
    // Whatever is compared with is read before the server is probed: a bad file is found at
    // once, not after a minute of probing.
    let against = match against(&args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(super::exit::EXIT_SYSTEM);
        }
    };
    let results = probe_with_progress(&runtime, server, &args);
    // Not one connection made: an error of the command, not a finding about a server.
    if results.iter().all(|r| matches!(r.end, End::Failed { .. }))
        && let Some(End::Failed { error }) = results.first().map(|r| &r.end)
    {
        eprintln!("error: cannot reach {server}: {error}; check HOST:PORT and that it listens");
        return ExitCode::from(EXIT_INVALID);
    }
    let report = report_of(server, results, against);
    let text = match args.format {
        ProbeFormat::Human => Ok(report.human(args.verbose)),
        ProbeFormat::Json => report.json().map_err(|e| e.to_string()),
        ProbeFormat::Junit => report.junit(args.strict).map_err(|e| e.to_string()),
    };
    if let Err(code) = super::write_report(text, args.output.as_deref(), || report.summary()) {
        return code;
    }
    // The profile comes after the report: a server the emitter cannot describe still gets its
    // report.
    if let Some(path) = &args.emit_profile
        && let Err(code) = emit(&report, path)
    {
        return code;
    }
    if report.fails(args.strict) {
        ExitCode::from(EXIT_DISAGREES)
    } else {
        ExitCode::SUCCESS
    }
}

/// Every probe of the set against `server`, the progress shown on a terminal.
fn probe_with_progress(
    runtime: &tokio::runtime::Runtime,
    server: std::net::SocketAddr,
    args: &ProbeArgs,
) -> Vec<ProbeResult> {
    let probes = probe::probe_set();
    let total = probes.len();
    let show_progress = std::io::stderr().is_terminal();
    let mut done = 0;
    runtime.block_on(probe::probe_server(
        server,
        &probes,
        Duration::from_secs_f64(args.timeout),
        Duration::from_millis(args.settle),
        |r| {
            done += 1;
            if show_progress {
                eprint!(
                    "\r\x1b[Kprobe {done}/{total}: {} ({})",
                    r.id,
                    r.end.describe()
                );
                if done == total {
                    eprintln!();
                }
            }
        },
    ))
}

/// The report on `server`'s results, compared with `against` if given.
fn report_of(
    server: std::net::SocketAddr,
    results: Vec<ProbeResult>,
    against: Option<Against>,
) -> ProbeReport {
    let masks = Masks::of(&results, &local_address(server));
    let mut report = ProbeReport::new(server.to_string(), results, masks);
    if let Some(against) = against {
        let answered = probe::probe_profile(against.script, against.profile);
        let answered_masks = Masks::of(&answered, probe::IN_MEMORY_CLIENT_IP);
        report.comparison = Some(Comparison {
            differences: compare(&report.results, &report.masks, &answered, &answered_masks),
            against: against.name,
        });
    }
    report
}

/// The probe set, one probe a block.
fn list() {
    say!(
        "probe set {} ({} probes, each on a fresh connection: the greeting is read, the lines \
         shown are sent one at a time unless marked, then NOOP asks whether the session is \
         still open)",
        probe::PROBE_SET_VERSION,
        probe::probe_set().len(),
    );
    for p in probe::probe_set() {
        say!("{:<28} {}", p.id, p.title);
        for step in &p.steps {
            if let Some(sent) = step.sent() {
                let mut shown = escape(&sent);
                if shown.len() > 72 {
                    let cut = shown.char_indices().nth(60).map_or(shown.len(), |(i, _)| i);
                    shown = format!("{}… ({} octets)", &shown[..cut], sent.len());
                }
                let how = match step {
                    probe::Step::TalkFirst(_) => " (before the greeting)",
                    probe::Step::Pipelined(_) => " (in one write)",
                    _ => "",
                };
                say!("{:<28}   C{how}: {shown}", "");
            }
        }
    }
}

/// What `args` compares with; `Err` is the exit status after the error was shown.
fn against(args: &ProbeArgs) -> Result<Option<Against>, ExitCode> {
    let served = match EtrnArg::parse(probe::SERVED_DOMAIN) {
        Ok(a) => vec![a],
        Err(_) => Vec::new(),
    };
    let script_for = |profile| SmartHostScript {
        profile,
        served: served.clone(),
        ..SmartHostScript::default()
    };
    if let Some(name) = args.against_profile {
        let profile = name.load().map_err(|e| invalid(&e))?;
        return Ok(Some(Against {
            name: format!("profile {name}"),
            script: script_for(name),
            profile,
        }));
    }
    if let Some(path) = &args.against_profile_file {
        let profile = Profile::read(path).map_err(|e| invalid(&e))?;
        return Ok(Some(Against {
            name: path.display().to_string(),
            script: script_for(Default::default()),
            profile,
        }));
    }
    if let Some(path) = &args.against_scenario {
        let one = scenario::resolve_one(path).map_err(|e| super::selection_error(&e))?;
        let scenario = one.load().map_err(|errors| {
            report_errors(&errors, false);
            ExitCode::from(EXIT_INVALID)
        })?;
        let profile = scenario.smarthost.profile().map_err(|e| invalid(&e))?;
        return Ok(Some(Against {
            name: path.display().to_string(),
            script: scenario.smarthost,
            profile,
        }));
    }
    Ok(None)
}

fn invalid(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(EXIT_INVALID)
}

/// Writes the profile the report describes, then checks it against the server's answers.
fn emit(report: &ProbeReport, path: &Path) -> Result<(), ExitCode> {
    let description = format!("cloned from {} by etrn-harness probe", report.target);
    let profile = profile_from(&report.results, &report.masks, &description).map_err(|e| {
        eprintln!("error: cannot make a profile of {}: {e}", report.target);
        ExitCode::from(EXIT_DISAGREES)
    })?;
    let text = format!(
        "# Emitted by `etrn-harness probe --emit-profile` from {}. Review it: every text is\n# what the server said, with its name, the date and the client put back as placeholders.\n{}",
        report.target,
        profile.to_toml()
    );
    // The file is only ever whole.
    if let Err(e) = etrn_harness::files::write_whole(path, text.as_bytes()) {
        eprintln!("error: cannot write {}: {e}", path.display());
        return Err(ExitCode::from(super::exit::EXIT_SYSTEM));
    }
    let answered = probe::probe_profile(probe::served_script(), profile);
    let differences = compare(
        &report.results,
        &report.masks,
        &answered,
        &Masks::of(&answered, probe::IN_MEMORY_CLIENT_IP),
    );
    eprintln!(
        "wrote {}: it reproduces {} of {} probes",
        path.display(),
        report.results.len()
            - differences
                .iter()
                .map(|d| &d.probe)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
        report.results.len()
    );
    for d in &differences {
        eprintln!(
            "  {} differs in {}: server {:?}, profile {:?}",
            d.probe, d.kind, d.server, d.profile
        );
    }
    Ok(())
}

/// The address this machine uses towards `server`: what the server sees as its client.
fn local_address(server: std::net::SocketAddr) -> String {
    let bind: std::net::SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    std::net::UdpSocket::bind(bind)
        .and_then(|s| s.connect(server).and_then(|()| s.local_addr()))
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| server.ip().to_string())
}
