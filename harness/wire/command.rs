//! A command line, parsed once: its [`Verb`] as a type and its argument.
//!
//! RFC 5321 separates verb and argument with one space; real clients also send tabs, several
//! spaces or a leading space. [`Command::parse`] splits at any run of ASCII whitespace (SP, HTAB)
//! after skipping leading whitespace, so a verb is recognised, and a credential found, whatever
//! the spacing.
//!
//! Everything that decides on a verb (the session, replay, the follower, redaction, the recorders
//! and the conformance checks) reads it as a [`Verb`] from here, so none of them compares verb
//! text and all of them agree on what a line's verb is. The upper-case text ([`Verb::as_str`])
//! is only what is written out (event logs, recordings, JSON), which therefore read as before.
//! The session's full parse of MAIL, RCPT, AUTH and the rest stays smtp-proto's
//! ([`Command::request`]); ETRN's argument is read here, since smtp-proto keeps only its first
//! token.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// Where the verb of `text` (a line without its line end) is: leading SP/HTAB skipped, up to
/// the next SP/HTAB or the end. The one reading of a verb's place, for [`Command::parse`] and
/// [`has_verb`].
fn verb_span(text: &[u8]) -> (usize, usize) {
    let first = text.iter().position(|b| !is_space(b)).unwrap_or(text.len());
    let after_verb = text[first..]
        .iter()
        .position(is_space)
        .map_or(text.len(), |p| first + p);
    (first, after_verb)
}

/// Whether `line`'s verb is `verb`: `Command::parse(line).verb() == verb`, without reading the
/// argument. For a check that every line passes through (the redaction's: is this AUTH?).
pub fn has_verb(line: &[u8], verb: &Verb) -> bool {
    let text = trim_line_end(line);
    let (first, after_verb) = verb_span(text);
    let word = &text[first..after_verb];
    match verb {
        Verb::Other(_) => Verb::parse(word) == *verb,
        // A known verb is its upper-case text and no other word is (see `UnknownVerb`), and
        // upper-casing a word makes it that text exactly when the two are equal ignoring ASCII
        // case ("" for a blank line).
        known => word.eq_ignore_ascii_case(known.as_str().as_bytes()),
    }
}

/// An SMTP command verb, whatever case it was sent in.
///
/// Serialized as its upper-case text (`"EHLO"`, `""` for a blank line, the unknown verb's own
/// text), so whatever records a verb writes what it always wrote.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    Helo,
    Ehlo,
    /// LMTP's greeting (RFC 2033); a session answers it as a mistake.
    Lhlo,
    Mail,
    Rcpt,
    Data,
    Bdat,
    Burl,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    /// RFC 1985.
    Etrn,
    /// RFC 821's role reversal.
    Turn,
    /// RFC 2645.
    Atrn,
    StartTls,
    Auth,
    /// A blank line (or one of whitespace only): no verb at all.
    Blank,
    /// A verb this crate does not know, kept as its upper-case text.
    Other(UnknownVerb),
}

/// The upper-case text of a verb [`Verb`] has no variant for (bytes that are not UTF-8 shown as
/// U+FFFD). Only [`Verb::parse`] makes one, so it never holds a known verb's text and two verbs
/// are equal exactly when their texts are.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnknownVerb(Box<str>);

impl UnknownVerb {
    /// The verb's text, upper case.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Verb {
    /// Every verb with a name of its own (all but [`Verb::Other`]), in a fixed order.
    pub const KNOWN: [Verb; 20] = [
        Verb::Helo,
        Verb::Ehlo,
        Verb::Lhlo,
        Verb::Mail,
        Verb::Rcpt,
        Verb::Data,
        Verb::Bdat,
        Verb::Burl,
        Verb::Rset,
        Verb::Noop,
        Verb::Quit,
        Verb::Vrfy,
        Verb::Expn,
        Verb::Help,
        Verb::Etrn,
        Verb::Turn,
        Verb::Atrn,
        Verb::StartTls,
        Verb::Auth,
        Verb::Blank,
    ];

    /// The verb a word names, in any case (`b"ehlo"` is [`Verb::Ehlo`]); an empty word is
    /// [`Verb::Blank`]. The word is taken whole: `b"MAIL FROM"` is an unknown verb.
    pub fn parse(word: &[u8]) -> Verb {
        if let Some(verb) = Verb::known(word) {
            return verb;
        }
        // Upper-casing ASCII bytes leaves the UTF-8 structure alone, so this is the text of the
        // word as sent, upper-cased.
        let upper = word.to_ascii_uppercase();
        Verb::Other(UnknownVerb(
            String::from_utf8_lossy(&upper).into_owned().into(),
        ))
    }

    /// The known verb `word` is in some case: every command line reads one, so this allocates
    /// nothing and compares words, not bytes one by one.
    fn known(word: &[u8]) -> Option<Verb> {
        // A byte ANDed with 0xDF (bit 5, ASCII's case bit, cleared) is an upper-case letter L
        // exactly when the byte is L or its lower case: so a word ANDed so is a verb's text, all
        // letters, exactly when the word is that verb in some case. Every verb but STARTTLS has
        // four letters.
        const UPPER_4: u32 = 0xDFDF_DFDF;
        const UPPER_8: u64 = 0xDFDF_DFDF_DFDF_DFDF;
        let four: [u8; 4] = match word.len() {
            0 => return Some(Verb::Blank),
            4 => word.try_into().ok()?,
            8 => {
                let eight: [u8; 8] = word.try_into().ok()?;
                return (u64::from_le_bytes(eight) & UPPER_8 == u64::from_le_bytes(*b"STARTTLS"))
                    .then_some(Verb::StartTls);
            }
            _ => return None,
        };
        Some(match &(u32::from_le_bytes(four) & UPPER_4).to_le_bytes() {
            b"HELO" => Verb::Helo,
            b"EHLO" => Verb::Ehlo,
            b"LHLO" => Verb::Lhlo,
            b"MAIL" => Verb::Mail,
            b"RCPT" => Verb::Rcpt,
            b"DATA" => Verb::Data,
            b"BDAT" => Verb::Bdat,
            b"BURL" => Verb::Burl,
            b"RSET" => Verb::Rset,
            b"NOOP" => Verb::Noop,
            b"QUIT" => Verb::Quit,
            b"VRFY" => Verb::Vrfy,
            b"EXPN" => Verb::Expn,
            b"HELP" => Verb::Help,
            b"ETRN" => Verb::Etrn,
            b"TURN" => Verb::Turn,
            b"ATRN" => Verb::Atrn,
            b"AUTH" => Verb::Auth,
            _ => return None,
        })
    }

    /// The upper-case wire text: `"EHLO"`, `""` for [`Verb::Blank`].
    pub fn as_str(&self) -> &str {
        match self {
            Verb::Helo => "HELO",
            Verb::Ehlo => "EHLO",
            Verb::Lhlo => "LHLO",
            Verb::Mail => "MAIL",
            Verb::Rcpt => "RCPT",
            Verb::Data => "DATA",
            Verb::Bdat => "BDAT",
            Verb::Burl => "BURL",
            Verb::Rset => "RSET",
            Verb::Noop => "NOOP",
            Verb::Quit => "QUIT",
            Verb::Vrfy => "VRFY",
            Verb::Expn => "EXPN",
            Verb::Help => "HELP",
            Verb::Etrn => "ETRN",
            Verb::Turn => "TURN",
            Verb::Atrn => "ATRN",
            Verb::StartTls => "STARTTLS",
            Verb::Auth => "AUTH",
            Verb::Blank => "",
            Verb::Other(v) => v.as_str(),
        }
    }
}

impl From<&str> for Verb {
    fn from(text: &str) -> Verb {
        Verb::parse(text.as_bytes())
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Verb {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Any text, in any case: what a user writes in a profile (`verbs = ["helo", "EHLO"]`).
impl<'de> Deserialize<'de> for Verb {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(d)?;
        Ok(Verb::from(text.as_ref()))
    }
}

/// One command line, split once into its verb and argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command<'a> {
    line: &'a [u8],
    verb: Verb,
    verb_as_sent: &'a [u8],
    argument_as_sent: &'a [u8],
}

impl<'a> Command<'a> {
    /// Reads a command line (line end included or not): leading SP/HTAB skipped, the verb up to
    /// the next run of them, the argument after it.
    pub fn parse(line: &'a [u8]) -> Command<'a> {
        let text = trim_line_end(line);
        let (first, after_verb) = verb_span(text);
        let verb_as_sent = &text[first..after_verb];
        let rest = &text[after_verb..];
        let from = rest.iter().position(|b| !is_space(b)).unwrap_or(rest.len());
        Command {
            line,
            verb: Verb::parse(verb_as_sent),
            verb_as_sent,
            argument_as_sent: &rest[from..],
        }
    }

    /// The line as given, line end included.
    pub fn line(&self) -> &'a [u8] {
        self.line
    }

    /// The verb.
    pub fn verb(&self) -> &Verb {
        &self.verb
    }

    /// The verb's bytes in the case they were sent (`b"etrn"`); empty for a blank line.
    pub fn verb_as_sent(&self) -> &'a [u8] {
        self.verb_as_sent
    }

    /// Everything after the verb and the whitespace that follows it, trailing whitespace kept
    /// (`"ETRN  a.example "` gives `"a.example "`): what sendmail echoes.
    pub fn argument_as_sent(&self) -> &'a [u8] {
        self.argument_as_sent
    }

    /// Everything after the verb, its surrounding whitespace trimmed (`"ETRN  a.example "` gives
    /// `"a.example"`).
    pub fn argument(&self) -> &'a [u8] {
        let rest = self.argument_as_sent;
        let to = rest.iter().rposition(|b| !is_space(b)).map_or(0, |p| p + 1);
        &rest[..to]
    }

    /// The argument's words, split at runs of SP/HTAB (`"AUTH PLAIN  x"` gives `PLAIN`, `x`).
    pub fn arguments(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        self.argument_as_sent
            .split(is_space)
            .filter(|w| !w.is_empty())
    }

    /// The argument's words lower-cased and joined by one space: the form replay compares.
    pub fn normalised_argument(&self) -> String {
        self.arguments()
            .map(|w| String::from_utf8_lossy(w).to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The whole line as smtp-proto parses it: MAIL's and RCPT's addresses and parameters,
    /// AUTH's mechanism, and its errors, as the session answers them. smtp-proto needs the line
    /// end; CRLF and a bare LF both work.
    pub fn request(&self) -> Result<smtp_proto::Request<Cow<'a, str>>, smtp_proto::Error> {
        smtp_proto::Request::parse(&mut self.line.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::Just;
    use proptest::strategy::Strategy;

    proptest::proptest! {
        #[test]
        fn a_word_is_the_known_verb_whose_text_it_is_upper_cased(
            word in proptest::prop_oneof![
                // A known verb in mixed case, or with one byte off by ASCII's case bit.
                (proptest::sample::select(Verb::KNOWN.to_vec()), proptest::collection::vec(0u8..3, 8))
                    .prop_map(|(v, how)| v.as_str().bytes().zip(how).map(|(b, how)| match how {
                        0 => b,
                        1 => b.to_ascii_lowercase(),
                        _ => b ^ 0x60,
                    }).collect()),
                proptest::collection::vec(proptest::prop_oneof![
                    Just(b'E'), Just(b't'), Just(b'R'), Just(b'n'), Just(b'S'), Just(0), Just(0xc3),
                    proptest::num::u8::ANY
                ], 0..10),
            ]
        ) {
            let upper = String::from_utf8_lossy(&word.to_ascii_uppercase()).into_owned();
            let reference = Verb::KNOWN
                .iter()
                .find(|v| v.as_str() == upper)
                .cloned()
                .unwrap_or_else(|| Verb::Other(UnknownVerb(upper.clone().into())));
            proptest::prop_assert_eq!(Verb::parse(&word), reference);
        }
    }

    fn verb(line: &[u8]) -> Verb {
        Command::parse(line).verb().clone()
    }

    #[test]
    fn verbs_in_any_case() {
        assert_eq!(verb(b"ehlo x\r\n"), Verb::Ehlo);
        assert_eq!(verb(b"Etrn a.example\r\n"), Verb::Etrn);
        assert_eq!(verb(b"starttls\r\n"), Verb::StartTls);
        assert_eq!(verb(b"QUIT\r\n"), Verb::Quit);
        assert_eq!(verb(b"QUIT"), Verb::Quit);
        assert_eq!(Command::parse(b"eTrN a\r\n").verb_as_sent(), b"eTrN");
        assert_eq!(Verb::Etrn.as_str(), "ETRN");
        assert_eq!(Verb::StartTls.to_string(), "STARTTLS");
    }

    #[test]
    fn any_whitespace_separates_the_verb() {
        assert_eq!(verb(b" AUTH\tPLAIN\tAGIK\r\n"), Verb::Auth);
        assert_eq!(verb(b"\t \tETRN\t@b\n"), Verb::Etrn);
        let c = Command::parse(b"ETRN  a.example \r\n");
        assert_eq!(c.argument(), b"a.example");
        assert_eq!(c.argument_as_sent(), b"a.example ");
        assert_eq!(Command::parse(b"\tETRN\t@b\n").argument(), b"@b");
        assert_eq!(Command::parse(b"QUIT\r\n").argument(), b"");
        assert_eq!(Command::parse(b"QUIT  \r\n").argument_as_sent(), b"");
        let auth = Command::parse(b"AUTH  PLAIN\tAGIK \r\n");
        assert_eq!(
            auth.arguments().collect::<Vec<_>>(),
            [&b"PLAIN"[..], b"AGIK"]
        );
        assert_eq!(
            Command::parse(b"MAIL  FROM:<A>\tSIZE=1\r\n").normalised_argument(),
            "from:<a> size=1"
        );
    }

    #[test]
    fn a_blank_line_has_no_verb() {
        for line in [&b"\r\n"[..], b"", b"  \t\r\n", b"\n"] {
            let c = Command::parse(line);
            assert_eq!(c.verb(), &Verb::Blank, "{line:?}");
            assert_eq!(c.verb().as_str(), "");
            assert_eq!(c.argument(), b"");
            assert_eq!(c.normalised_argument(), "");
        }
    }

    #[test]
    fn an_unknown_verb_keeps_its_text_in_upper_case() {
        let v = verb(b"xfoo bar\r\n");
        assert!(matches!(&v, Verb::Other(u) if u.as_str() == "XFOO"));
        assert_eq!(v, Verb::from("XFOO"));
        assert_eq!(v.as_str(), "XFOO");
        // A known verb's text is always the known verb, however it is made.
        assert_eq!(Verb::from("etrn"), Verb::Etrn);
        assert_eq!(Verb::from(""), Verb::Blank);
        // A word is taken whole.
        assert!(matches!(Verb::from("MAIL FROM"), Verb::Other(_)));
        assert!(matches!(verb(b"ETRNX a\r\n"), Verb::Other(_)));
    }

    #[test]
    fn eight_bit_bytes_are_kept_as_sent_and_shown_replaced() {
        let c = Command::parse(b"\xffetrn b\xfc.example\r\n");
        assert_eq!(c.verb().as_str(), "\u{fffd}ETRN");
        assert_eq!(c.verb_as_sent(), b"\xffetrn");
        assert_eq!(c.argument(), b"b\xfc.example");
        // UTF-8 in a verb: upper-casing touches only the ASCII letters.
        assert_eq!(verb("étrn x".as_bytes()).as_str(), "éTRN");
        assert_eq!(verb(b"ETRN b\xfc.example\r\n"), Verb::Etrn);
    }

    #[test]
    fn serialized_as_the_upper_case_text() {
        assert_eq!(
            serde_json::to_string(&Verb::Ehlo).ok().as_deref(),
            Some("\"EHLO\"")
        );
        assert_eq!(
            serde_json::to_string(&Verb::Blank).ok().as_deref(),
            Some("\"\"")
        );
        let read: Result<Vec<Verb>, _> = serde_json::from_str(r#"["helo", "Xfoo"]"#);
        assert_eq!(read.ok(), Some(vec![Verb::Helo, Verb::from("XFOO")]));
    }

    #[test]
    fn smtp_proto_reads_the_same_line() {
        let c = Command::parse(b"MAIL FROM:<a@b> SIZE=10\r\n");
        assert!(matches!(
            c.request(),
            Ok(smtp_proto::Request::Mail { from }) if from.address == "a@b" && from.size == 10
        ));
    }
}
