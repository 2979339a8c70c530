//! The README's `console` examples, run as they are written (trycmd): the command, its exit
//! status and its output, with `...` and `[..]` for what differs between runs.

#[test]
fn readme_examples() {
    trycmd::TestCases::new()
        .register_bin("etrn-harness", trycmd::cargo::cargo_bin!("etrn-harness"))
        .case("README.md");
}
