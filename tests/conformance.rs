//! Every scenario of the corpus is its own test: the built-in reference client against a fresh
//! smart host running the scenario's script. `cargo test --test conformance -- reroute` filters by
//! name; `cargo nextest run --partition count:1/2` shards the corpus across machines.

use std::path::PathBuf;
use std::time::Duration;

use etrn_harness::conformance::{self, Case, KnownDeviations, RunOptions, Target, Verdict, report};
use etrn_harness::scenario;
use libtest_mimic::{Arguments, Failed, Trial};

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let corpus = scenario::load_corpus(&[PathBuf::from("scenarios")]);
    let mut trials: Vec<Trial> = corpus
        .errors
        .iter()
        .map(|e| {
            let message = e.one_line();
            Trial::test(format!("invalid::{}", e.file), move || {
                Err(Failed::from(message.clone()))
            })
        })
        .collect();
    for (file, scenario) in corpus.scenarios {
        let topic = file
            .parent()
            .and_then(|p| p.file_name())
            .map_or("scenarios".into(), |n| n.to_string_lossy().into_owned());
        let name = format!("{topic}::{}", scenario.id);
        let case = Case { file, scenario };
        trials.push(Trial::test(name, move || run(case)));
    }
    libtest_mimic::run(&args, trials).exit_code()
}

fn run(case: Case) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failed::from(format!("cannot start a runtime: {e}")))?;
    let options = RunOptions {
        target: Target::Builtin,
        jobs: 1,
        timeout: Duration::from_secs(10),
    };
    let result = runtime.block_on(conformance::run_case(
        &case,
        &options,
        &KnownDeviations::default(),
    ));
    if result.verdict == Verdict::Pass {
        Ok(())
    } else {
        Err(Failed::from(report::case_details(&result)))
    }
}
