//! The keyword of an EHLO reply line.
//!
//! An ehlo-line is a keyword and its parameters (RFC 5321 §4.1.1.1), e.g. `SIZE 10240000`. Old
//! servers write parameters after `=` (`AUTH=LOGIN`), some separate them with a tab; the keyword
//! is what comes before the first of these, and it matches ignoring case (§2.4). A prefix such as
//! `ETRNX` is another keyword.

/// The keyword of one ehlo-line (`"SIZE 10240000"` gives `"SIZE"`).
pub fn keyword(line: &str) -> &str {
    let line = line.trim_start_matches([' ', '\t']);
    line.split([' ', '\t', '=', '\r', '\n'])
        .next()
        .unwrap_or("")
}

/// True when one of `lines` (ehlo-lines, the greeting line left out) has `wanted` as keyword.
pub fn advertises<'a, I>(lines: I, wanted: &str) -> bool
where
    I: IntoIterator<Item = &'a str>,
{
    lines
        .into_iter()
        .any(|l| keyword(l).eq_ignore_ascii_case(wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_end_at_space_tab_or_equals() {
        assert_eq!(keyword("SIZE 10240000"), "SIZE");
        assert_eq!(keyword("AUTH=LOGIN"), "AUTH");
        assert_eq!(keyword("etrn"), "etrn");
        assert_eq!(keyword("AUTH\tPLAIN"), "AUTH");
        assert!(advertises(["PIPELINING", "etrn"], "ETRN"));
        assert!(!advertises(["ETRNX", "XETRN"], "ETRN"));
    }
}
