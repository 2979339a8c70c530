//! A command line's verb and argument.
//!
//! RFC 5321 separates them with one space; real clients also send tabs, several spaces or a
//! leading space. Everything here splits at any run of ASCII whitespace (SP, HTAB) after
//! skipping leading whitespace, so a verb is recognised, and a credential found, whatever the
//! spacing.

fn is_space(b: &u8) -> bool {
    matches!(b, b' ' | b'\t')
}

/// The line without its line end (CRLF, bare LF or a stray CR).
pub fn trim_line_end(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\r' | b'\n') {
        end -= 1;
    }
    &line[..end]
}

/// The words of a command line: its line end dropped, split at runs of SP/HTAB.
pub fn words(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    trim_line_end(line)
        .split(is_space)
        .filter(|w| !w.is_empty())
}

/// The verb, upper-cased (`"ehlo x"` gives `"EHLO"`); empty for a blank line.
pub fn verb(line: &[u8]) -> String {
    words(line)
        .next()
        .map(|v| String::from_utf8_lossy(v).to_ascii_uppercase())
        .unwrap_or_default()
}

/// Everything after the verb and the whitespace that follows it, trailing whitespace kept
/// (`"ETRN  a.example "` gives `"a.example "`): what sendmail echoes.
pub fn argument_as_sent(line: &[u8]) -> &[u8] {
    let text = trim_line_end(line);
    let first = text.iter().position(|b| !is_space(b)).unwrap_or(text.len());
    let after_verb = text[first..]
        .iter()
        .position(is_space)
        .map_or(text.len(), |p| first + p);
    let rest = &text[after_verb..];
    let from = rest.iter().position(|b| !is_space(b)).unwrap_or(rest.len());
    &rest[from..]
}

/// Everything after the verb, its surrounding whitespace trimmed (`"ETRN  a.example "` gives
/// `"a.example"`).
pub fn argument(line: &[u8]) -> &[u8] {
    let rest = argument_as_sent(line);
    let to = rest.iter().rposition(|b| !is_space(b)).map_or(0, |p| p + 1);
    &rest[..to]
}

/// The argument's words lower-cased and joined by one space: the form replay compares.
pub fn normalised_argument(line: &[u8]) -> String {
    words(line)
        .skip(1)
        .map(|w| String::from_utf8_lossy(w).to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_whitespace_separates_the_verb() {
        assert_eq!(verb(b"ehlo x\r\n"), "EHLO");
        assert_eq!(verb(b" AUTH\tPLAIN\tAGIK\r\n"), "AUTH");
        assert_eq!(verb(b"\r\n"), "");
        assert_eq!(argument(b"ETRN  a.example \r\n"), b"a.example");
        assert_eq!(argument(b"\tETRN\t@b\n"), b"@b");
        assert_eq!(argument(b"QUIT\r\n"), b"");
        assert_eq!(
            normalised_argument(b"MAIL  FROM:<A>\tSIZE=1\r\n"),
            "from:<a> size=1"
        );
    }
}
