//! The README's `console` examples, run as they are written (trycmd): the command, its exit
//! status and its output, with `...` and `[..]` for what differs between runs.
//!
//! They run in an empty temporary folder, as a user who installed the binary runs them: an
//! example that needs the checkout (a path under `scenarios/` or `tests/`) fails here.

/// Where `program` is on `PATH`: trycmd runs only the programs it is given.
fn on_path(program: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(program))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{program} is not on PATH; the README's examples use it"))
}

#[test]
fn readme_examples() {
    // trycmd runs a `X.md` in the folder `X.in` beside it: a copy of the README beside an empty
    // folder, both in a temporary one.
    let sandbox = tempfile::tempdir().expect("temp dir");
    let readme = sandbox.path().join("README.md");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"), &readme)
        .expect("copy the README");
    std::fs::create_dir(sandbox.path().join("README.in")).expect("the empty folder");
    trycmd::TestCases::new()
        .register_bin("etrn-harness", trycmd::cargo::cargo_bin!("etrn-harness"))
        .register_bin("sed", on_path("sed"))
        .case(&readme);
}

/// The README's Rust example is the crate doc's second example, which runs as a doctest: every
/// line of the README's block, in order, is a visible line of that doctest.
#[test]
fn the_readme_rust_example_is_a_doctest() {
    let readme = include_str!("../README.md");
    let block: Vec<&str> = readme
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the README has a ```rust block")
        .lines()
        .collect();
    let crate_doc = include_str!("../harness/lib.rs");
    let doctest: Vec<&str> = crate_doc
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .skip_while(|l| !l.starts_with("A smart host for a client under test"))
        .skip_while(|l| *l != "```")
        .skip(1)
        .take_while(|l| *l != "```")
        .filter(|l| !l.starts_with("# ") && *l != "#")
        .collect();
    assert!(!block.is_empty());
    assert_eq!(
        block, doctest,
        "README.md's Rust example and lib.rs's doctest differ"
    );
}
