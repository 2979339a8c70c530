//! Domain names and ETRN arguments.
//!
//! A domain is kept twice: the **raw** text, exactly as configured or received, because that is
//! what goes on the wire and what a conformance report must show; and a **normalised** form
//! (lower case, no trailing dot, IDNA A-labels) that every comparison uses, because RFC 5321 §2.4
//! makes domains case-insensitive and fetchmail sends U-labels as raw UTF-8 while other clients send
//! A-labels.
//!
//! An ETRN argument (RFC 1985 §5) is an optional option character (`@` for "this domain and its
//! subdomains", `#` for a server-local queue name) followed by a node name.

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use idna::AsciiDenyList;
use serde::{Deserialize, Serialize};

use crate::rejection::Rejection;
use crate::wire::framing::find_byte;

/// Longest domain in octets without the trailing dot (RFC 1035 §2.3.4 allows 255 on the wire,
/// which leaves 253 characters of text).
pub const MAX_DOMAIN_OCTETS: usize = 253;
/// Longest label in octets (RFC 1035 §2.3.4).
pub const MAX_LABEL_OCTETS: usize = 63;

/// Why a text is not a valid domain. Every message names the offending part; `fix()` says what to
/// write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the domain is empty")]
    Empty,
    #[error("{text:?} contains whitespace or a control character")]
    Whitespace { text: String },
    #[error("{text:?} is {octets} octets long; a domain has at most {MAX_DOMAIN_OCTETS}")]
    TooLong { text: String, octets: usize },
    #[error("{text:?} has an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel { text: String },
    #[error(
        "label {label:?} of {text:?} is {octets} octets long; a label has at most {MAX_LABEL_OCTETS}"
    )]
    LabelTooLong {
        text: String,
        label: String,
        octets: usize,
    },
    #[error(
        "label {label:?} of {text:?} contains {character:?}, which is not a letter, digit or hyphen"
    )]
    BadCharacter {
        text: String,
        label: String,
        character: char,
    },
    #[error("label {label:?} of {text:?} starts or ends with a hyphen")]
    Hyphen { text: String, label: String },
    #[error("{text:?} is not a valid internationalised domain name (IDNA)")]
    Idna { text: String },
}

impl DomainError {
    /// A suggestion a person can act on.
    pub fn fix(&self) -> &'static str {
        match self {
            DomainError::Empty => "write a fully qualified domain such as \"example.com\"",
            DomainError::Whitespace { .. } => {
                "remove the spaces: one domain per entry, e.g. \"example.com\""
            }
            DomainError::TooLong { .. } | DomainError::LabelTooLong { .. } => {
                "shorten the name; DNS (RFC 1035 §2.3.4) limits labels to 63 and names to 253 octets"
            }
            DomainError::EmptyLabel { .. } => {
                "remove the extra dot, e.g. \"a..b.com\" -> \"a.b.com\""
            }
            DomainError::BadCharacter { .. } => {
                "use letters, digits and hyphens only (RFC 5321 §4.1.2), or a U-label such as \"bücher.example\""
            }
            DomainError::Hyphen { .. } => {
                "move or remove the hyphen at the start or end of the label"
            }
            DomainError::Idna { .. } => {
                "write the domain as an A-label (xn--...) or as a valid U-label"
            }
        }
    }
}

/// A domain name: the raw text plus its normalised comparison form.
///
/// Equality and hashing use the normalised form, so `Example.COM.` equals `example.com`.
#[derive(Clone)]
pub struct Domain {
    raw: String,
    /// The normalised form when it differs from the raw text without its trailing dot; `None`
    /// when it does not (the common case: a name already in lower case), so such a domain costs
    /// one allocation, not two.
    normalised: Option<String>,
}

impl Domain {
    /// Parses and validates a domain (RFC 5321 §4.1.2 letters-digits-hyphen labels, or IDNA U-labels).
    /// A single trailing dot is allowed and kept in the raw text.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        match Domain::parse_plain_ascii(text) {
            Some(domain) => Ok(domain),
            None => Domain::parse_any(text),
        }
    }

    /// The fast path of [`Domain::parse`], because every ETRN parses its argument (twice: the
    /// session and the recorder) and nearly every argument is a plain ASCII name: one pass over
    /// the bytes, no `chars()`, no IDNA, one allocation (two with upper case). It accepts only
    /// letters, digits, hyphens and dots, and only a name [`Domain::parse_any`] accepts too, with
    /// the same result; anything else (non-ASCII, or any error) is `None` and left to
    /// `parse_any`, so every error is found and worded in one place.
    fn parse_plain_ascii(text: &str) -> Option<Domain> {
        Domain::parse_plain_ascii_into(text, &mut String::new())
    }

    /// [`Domain::parse_plain_ascii`], its raw text written into `spare`'s allocation (taken, and
    /// left empty, only when the name is plain): a caller that parses many names gives the
    /// text of the last one back ([`EtrnArg::into_spare`]) and allocates none.
    fn parse_plain_ascii_into(text: &str, spare: &mut String) -> Option<Domain> {
        let bytes = text.as_bytes();
        let without_dot = bytes.strip_suffix(b".").unwrap_or(bytes);
        if without_dot.is_empty() || without_dot.len() > MAX_DOMAIN_OCTETS {
            return None;
        }
        let label_ok = |label: &[u8]| {
            matches!(
                (label.first(), label.last()),
                (Some(first), Some(last)) if *first != b'-' && *last != b'-'
            ) && label.len() <= MAX_LABEL_OCTETS
        };
        // Each byte's class goes into one set, looked at once at the end: per byte a look-up
        // and an OR, with no branch, so the loop unrolls.
        let seen = without_dot
            .iter()
            .fold(0, |seen, b| seen | PLAIN_ASCII[usize::from(*b)]);
        if seen & OTHER != 0 {
            return None;
        }
        // Then the labels, from dot to dot, eight bytes at a time.
        let mut rest = without_dot;
        while let Some(dot) = find_byte(rest, b'.') {
            if !label_ok(&rest[..dot]) {
                return None;
            }
            rest = &rest[dot + 1..];
        }
        if !label_ok(rest) {
            return None;
        }
        // ASCII throughout, so the normalised form is the lower-cased text without its dot.
        let normalised =
            (seen & UPPER != 0).then(|| text[..without_dot.len()].to_ascii_lowercase());
        let mut raw = std::mem::take(spare);
        raw.clear();
        raw.push_str(text);
        Some(Domain { raw, normalised })
    }

    /// The whole of [`Domain::parse`]: U-labels through IDNA, and every error.
    fn parse_any(text: &str) -> Result<Self, DomainError> {
        if text.is_empty() {
            return Err(DomainError::Empty);
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(DomainError::Whitespace { text: text.into() });
        }
        let without_dot = text.strip_suffix('.').unwrap_or(text);
        if without_dot.is_empty() || without_dot.split('.').any(str::is_empty) {
            return Err(DomainError::EmptyLabel { text: text.into() });
        }
        // Report characters against the label the user wrote, before IDNA mapping hides them.
        for label in without_dot.split('.') {
            if let Some(character) = label
                .chars()
                .find(|c| c.is_ascii() && !(c.is_ascii_alphanumeric() || *c == '-'))
            {
                return Err(DomainError::BadCharacter {
                    text: text.into(),
                    label: label.into(),
                    character,
                });
            }
        }
        let ascii: Cow<'_, str> = if without_dot.is_ascii() {
            Cow::Owned(without_dot.to_ascii_lowercase())
        } else {
            idna::domain_to_ascii_cow(without_dot.as_bytes(), AsciiDenyList::STD3)
                .map_err(|_| DomainError::Idna { text: text.into() })?
        };
        if ascii.len() > MAX_DOMAIN_OCTETS {
            return Err(DomainError::TooLong {
                text: text.into(),
                octets: ascii.len(),
            });
        }
        for label in ascii.split('.') {
            if label.is_empty() {
                return Err(DomainError::EmptyLabel { text: text.into() });
            }
            if label.len() > MAX_LABEL_OCTETS {
                return Err(DomainError::LabelTooLong {
                    text: text.into(),
                    label: label.into(),
                    octets: label.len(),
                });
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(DomainError::Hyphen {
                    text: text.into(),
                    label: label.into(),
                });
            }
        }
        let normalised = (ascii != without_dot).then(|| ascii.into_owned());
        Ok(Domain {
            raw: text.to_owned(),
            normalised,
        })
    }

    /// The text exactly as written: what goes on the wire.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Lower case, no trailing dot, A-labels: what comparisons use.
    pub fn normalised(&self) -> &str {
        match &self.normalised {
            Some(normalised) => normalised,
            None => self.raw.strip_suffix('.').unwrap_or(&self.raw),
        }
    }

    /// True when every label is numeric, as in `192.168.1.10` (KB249100 allows such routing rows;
    /// Postfix refuses them as ETRN arguments).
    pub fn is_all_numeric(&self) -> bool {
        self.normalised()
            .split('.')
            .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
    }
}

/// What a byte is to [`Domain::parse_plain_ascii`], one bit each, in a table so that each byte
/// costs one look-up: a lower-case letter, a digit or a hyphen (0: the normalised form keeps it
/// as it is), or one of these.
type PlainAscii = u8;
/// An upper-case letter: the normalised form differs from the raw text.
const UPPER: PlainAscii = 1;
/// A dot: a label ends (the labels are checked apart).
const DOT: PlainAscii = 2;
/// Anything else: not for the fast path.
const OTHER: PlainAscii = 4;

const PLAIN_ASCII: [PlainAscii; 256] = {
    let mut table = [OTHER; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match b as u8 {
            b'a'..=b'z' | b'0'..=b'9' | b'-' => 0,
            b'A'..=b'Z' => UPPER,
            b'.' => DOT,
            _ => OTHER,
        };
        b += 1;
    }
    table
};

impl PartialEq for Domain {
    fn eq(&self, other: &Self) -> bool {
        self.normalised() == other.normalised()
    }
}
impl Eq for Domain {}
impl Hash for Domain {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.normalised().hash(state);
    }
}

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Domain({:?})", self.raw)
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl FromStr for Domain {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Domain::parse(s)
    }
}

impl TryFrom<String> for Domain {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Domain::parse(&s)
    }
}

impl Serialize for Domain {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for Domain {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Domain::parse(&s).map_err(|e| Rejection::invalid(&e, e.fix()).into_de_error())
    }
}

impl schemars::JsonSchema for Domain {
    fn schema_name() -> Cow<'static, str> {
        "Domain".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": 254,
            "description": "A domain: letters-digits-hyphen labels or IDNA U-labels, an optional trailing dot"
        })
    }
}

/// The option character in front of an ETRN node name (RFC 1985 §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EtrnOption {
    /// No option character: the normal form.
    None,
    /// `@`: the node and every subdomain of it.
    Subdomains,
    /// `#`: a server-local queue name rather than a domain.
    Queue,
}

impl EtrnOption {
    /// The character on the wire, if any.
    pub fn prefix(self) -> &'static str {
        match self {
            EtrnOption::None => "",
            EtrnOption::Subdomains => "@",
            EtrnOption::Queue => "#",
        }
    }
}

/// The node an ETRN argument names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EtrnNode {
    Domain(Domain),
    /// After `#`, RFC 1985 allows any server-local queue name; we keep it if it is not a domain.
    Queue(String),
}

/// Why a text is not a valid ETRN argument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtrnArgError {
    #[error("the ETRN argument is empty")]
    Empty,
    #[error("ETRN argument {raw:?} has an option character but no node name")]
    OptionOnly { raw: String },
    #[error(
        "ETRN argument {raw:?} contains whitespace; RFC 1985 §5 allows one node name per command"
    )]
    Whitespace { raw: String },
    #[error("ETRN argument {raw:?}: {source}")]
    Domain { raw: String, source: DomainError },
}

impl EtrnArgError {
    pub fn fix(&self) -> &'static str {
        match self {
            EtrnArgError::Empty | EtrnArgError::OptionOnly { .. } => {
                "write a node name such as \"example.com\", \"@example.com\" or \"#queue1\""
            }
            EtrnArgError::Whitespace { .. } => "write one domain per ETRN argument",
            EtrnArgError::Domain { source, .. } => source.fix(),
        }
    }
}

/// One ETRN argument: raw text, option character and node name.
///
/// Equality compares the option and the normalised node, so `ETRN Example.COM` and
/// `ETRN example.com.` name the same queue.
#[derive(Clone)]
pub struct EtrnArg {
    /// The argument as written when it has an option character; `None`: it is the node's
    /// domain as written, so the text is not kept twice.
    raw: Option<String>,
    option: EtrnOption,
    node: EtrnNode,
}

impl EtrnArg {
    /// Parses an argument as received or configured.
    pub fn parse(raw: &str) -> Result<Self, EtrnArgError> {
        // Anything but a plain argument, and every error, takes the full parse.
        match EtrnArg::parse_plain(raw) {
            Some(arg) => Ok(arg),
            None => EtrnArg::parse_any(raw),
        }
    }

    /// The fast path of [`EtrnArg::parse`], with its result: an optional option character, then
    /// a plain ASCII domain (see `Domain::parse_plain_ascii`, which also refuses whitespace);
    /// `None` for anything else. Such an argument is letters, digits, hyphens, dots and an `@`
    /// or `#`, so a caller also knows it shows (and is recorded) as it is.
    pub(crate) fn parse_plain(raw: &str) -> Option<Self> {
        EtrnArg::parse_plain_into(raw, &mut String::new())
    }

    /// [`EtrnArg::parse_plain`], its domain's text written into `spare`'s allocation (see
    /// `Domain::parse_plain_ascii_into`).
    pub(crate) fn parse_plain_into(raw: &str, spare: &mut String) -> Option<Self> {
        let (option, rest) = split_option(raw);
        let domain = Domain::parse_plain_ascii_into(rest, spare)?;
        Some(EtrnArg::new(raw, option, EtrnNode::Domain(domain)))
    }

    /// The argument's allocation for a text, given up for the next parse to write into
    /// ([`EtrnArg::parse_plain_into`]): its domain's raw text, else its own.
    #[inline]
    pub(crate) fn into_spare(self) -> String {
        match self.node {
            EtrnNode::Domain(domain) => domain.raw,
            EtrnNode::Queue(queue) => queue,
        }
    }

    fn parse_any(raw: &str) -> Result<Self, EtrnArgError> {
        if raw.is_empty() {
            return Err(EtrnArgError::Empty);
        }
        if raw.chars().any(char::is_whitespace) {
            return Err(EtrnArgError::Whitespace { raw: raw.into() });
        }
        let (option, rest) = split_option(raw);
        if rest.is_empty() {
            return Err(EtrnArgError::OptionOnly { raw: raw.into() });
        }
        let node = match (option, Domain::parse(rest)) {
            (_, Ok(d)) => EtrnNode::Domain(d),
            (EtrnOption::Queue, Err(_)) => EtrnNode::Queue(rest.to_owned()),
            (_, Err(source)) => {
                return Err(EtrnArgError::Domain {
                    raw: raw.into(),
                    source,
                });
            }
        };
        Ok(EtrnArg::new(raw, option, node))
    }

    /// The argument `raw`, read as `option` and `node` (without an option character, `node` is a
    /// domain whose raw text is `raw`).
    fn new(raw: &str, option: EtrnOption, node: EtrnNode) -> Self {
        EtrnArg {
            raw: (option != EtrnOption::None).then(|| raw.to_owned()),
            option,
            node,
        }
    }

    /// The plain form `ETRN <domain>` with no option character.
    pub fn plain(domain: Domain) -> Self {
        EtrnArg {
            raw: None,
            option: EtrnOption::None,
            node: EtrnNode::Domain(domain),
        }
    }

    pub fn raw(&self) -> &str {
        match (&self.raw, &self.node) {
            (Some(raw), _) => raw,
            (None, EtrnNode::Domain(domain)) => domain.raw(),
            (None, EtrnNode::Queue(queue)) => queue,
        }
    }

    pub fn option(&self) -> EtrnOption {
        self.option
    }

    pub fn node(&self) -> &EtrnNode {
        &self.node
    }

    /// The domain, when the node is one.
    pub fn domain(&self) -> Option<&Domain> {
        match &self.node {
            EtrnNode::Domain(d) => Some(d),
            EtrnNode::Queue(_) => None,
        }
    }

    /// The comparison form: option character plus normalised node.
    pub fn normalised(&self) -> String {
        match &self.node {
            EtrnNode::Domain(d) => format!("{}{}", self.option.prefix(), d.normalised()),
            EtrnNode::Queue(q) => format!("#{q}"),
        }
    }
}

/// The option character, if any, and the node name after it.
fn split_option(raw: &str) -> (EtrnOption, &str) {
    match raw.as_bytes().first() {
        Some(b'@') => (EtrnOption::Subdomains, &raw[1..]),
        Some(b'#') => (EtrnOption::Queue, &raw[1..]),
        _ => (EtrnOption::None, raw),
    }
}

impl PartialEq for EtrnArg {
    fn eq(&self, other: &Self) -> bool {
        self.option == other.option && self.node == other.node
    }
}
impl Eq for EtrnArg {}
impl Hash for EtrnArg {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.option.hash(state);
        self.node.hash(state);
    }
}

impl fmt::Debug for EtrnArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EtrnArg({:?})", self.raw())
    }
}

impl fmt::Display for EtrnArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.raw())
    }
}

impl FromStr for EtrnArg {
    type Err = EtrnArgError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EtrnArg::parse(s)
    }
}

impl Serialize for EtrnArg {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.raw())
    }
}

impl<'de> Deserialize<'de> for EtrnArg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        EtrnArg::parse(&s).map_err(|e| Rejection::invalid(&e, e.fix()).into_de_error())
    }
}

impl schemars::JsonSchema for EtrnArg {
    fn schema_name() -> Cow<'static, str> {
        "EtrnArg".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[@#]?[^\\s]+$",
            "description": "An ETRN argument: an optional '@' (subdomains) or '#' (queue name), then a node name"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_raw_and_normalises() {
        let d = Domain::parse("Example.COM.").unwrap();
        assert_eq!(d.raw(), "Example.COM.");
        assert_eq!(d.normalised(), "example.com");
        assert_eq!(d, Domain::parse("example.com").unwrap());
    }

    #[test]
    fn u_labels_compare_equal_to_a_labels() {
        let u = Domain::parse("bücher.example").unwrap();
        assert_eq!(u.normalised(), "xn--bcher-kva.example");
        assert_eq!(u, Domain::parse("XN--BCHER-KVA.example").unwrap());
        assert_eq!(u.raw(), "bücher.example");
    }

    #[test]
    fn rejects_what_dns_cannot_carry() {
        assert_eq!(Domain::parse(""), Err(DomainError::Empty));
        assert!(matches!(
            Domain::parse("a..b"),
            Err(DomainError::EmptyLabel { .. })
        ));
        assert!(matches!(
            Domain::parse("bad_domain!.example"),
            Err(DomainError::BadCharacter { character: '_', .. })
        ));
        assert!(matches!(
            Domain::parse("-a.com"),
            Err(DomainError::Hyphen { .. })
        ));
        assert!(matches!(
            Domain::parse(&format!("{}.com", "a".repeat(64))),
            Err(DomainError::LabelTooLong { octets: 64, .. })
        ));
        let long = vec!["abcdefghi"; 26].join(".");
        assert!(matches!(
            Domain::parse(&long),
            Err(DomainError::TooLong { .. })
        ));
        assert!(matches!(
            Domain::parse("a b.com"),
            Err(DomainError::Whitespace { .. })
        ));
    }

    #[test]
    fn numeric_rows_are_domains_but_flagged() {
        let ip = Domain::parse("192.168.1.10").unwrap();
        assert!(ip.is_all_numeric());
        assert!(!Domain::parse("a1.com").unwrap().is_all_numeric());
    }

    /// What a parse gave, in full: raw and normalised text, or the error.
    fn outcome(parsed: Result<Domain, DomainError>) -> Result<(String, String), DomainError> {
        parsed.map(|d| (d.raw().to_owned(), d.normalised().to_owned()))
    }

    /// The same for an ETRN argument: its raw text, option, domain (raw and normalised) and
    /// normalised form, in one line.
    fn arg_outcome(parsed: Result<EtrnArg, EtrnArgError>) -> Result<String, EtrnArgError> {
        parsed.map(|a| {
            let domain = a.domain().map(|d| (d.raw(), d.normalised()));
            format!(
                "{:?} {:?} {domain:?} {:?}",
                a.raw(),
                a.option(),
                a.normalised()
            )
        })
    }

    /// The fast path and the full parse agree on `text`, as a domain and as an ETRN argument.
    fn paths_agree(text: &str) {
        assert_eq!(
            outcome(Domain::parse(text)),
            outcome(Domain::parse_any(text)),
            "{text:?}"
        );
        assert_eq!(
            arg_outcome(EtrnArg::parse(text)),
            arg_outcome(EtrnArg::parse_any(text)),
            "{text:?}"
        );
    }

    #[test]
    fn the_fast_path_agrees_at_the_edges() {
        let label63 = "a".repeat(63);
        let label64 = "b".repeat(64);
        // Three 63-octet labels and the dots between them are 191 octets; a last label of 61
        // makes 253 (the most), of 62 makes 254 (one too many).
        let three = [&label63[..]; 3].join(".");
        let longest = format!("{three}.{}", "a".repeat(61));
        let too_long = format!("{three}.{}", "a".repeat(62));
        assert_eq!((longest.len(), too_long.len()), (253, 254));
        assert!(Domain::parse(&longest).is_ok());
        assert!(matches!(
            Domain::parse(&too_long),
            Err(DomainError::TooLong { octets: 254, .. })
        ));
        for text in [
            "",
            ".",
            "@",
            "#",
            "a",
            "A",
            "a.",
            "a..",
            ".a",
            "a..b",
            "-a.b",
            "a-.b",
            "a.b-",
            "a-b.c",
            "Example.COM.",
            "@Example.COM.",
            "#queue_1",
            "#A.b",
            "192.168.1.10",
            "a b",
            "a\tb",
            "bücher.example",
            "xn--bcher-kva.example",
            &label63,
            &label64,
            &longest,
            &too_long,
            &longest[1..],
            &format!("{longest}."),
            &format!("{too_long}."),
            &format!("@{longest}"),
            &format!("@{too_long}"),
            &format!("{}.", &longest[1..]),
        ] {
            paths_agree(text);
        }
        // The common case keeps one text where raw and normalised are the same.
        let d = Domain::parse("d1.bench.example").unwrap();
        assert!(d.normalised.is_none());
        assert_eq!(d.normalised(), "d1.bench.example");
        assert_eq!(EtrnArg::parse("a.example.").unwrap().raw(), "a.example.");
    }

    proptest::proptest! {
        #[test]
        fn the_fast_path_agrees_on_any_ascii(text in "[ -~\\t\\x00\\x7f]{0,40}") {
            paths_agree(&text);
        }

        #[test]
        fn the_fast_path_agrees_on_names_near_the_limits(
            prefix in "[@#]?",
            labels in proptest::collection::vec("[a-zA-Z0-9_-]{0,66}", 1..7),
            dots in "[.]{0,2}",
        ) {
            paths_agree(&format!("{prefix}{}{dots}", labels.join(".")));
        }
    }

    #[test]
    fn etrn_option_characters() {
        let at = EtrnArg::parse("@Example.org").unwrap();
        assert_eq!(at.option(), EtrnOption::Subdomains);
        assert_eq!(at.normalised(), "@example.org");
        let q = EtrnArg::parse("#queue_1").unwrap();
        assert_eq!(q.option(), EtrnOption::Queue);
        assert_eq!(q.node(), &EtrnNode::Queue("queue_1".into()));
        assert_ne!(
            EtrnArg::parse("#a.com").unwrap(),
            EtrnArg::parse("a.com").unwrap()
        );
        assert!(matches!(
            EtrnArg::parse("@"),
            Err(EtrnArgError::OptionOnly { .. })
        ));
        assert!(matches!(
            EtrnArg::parse("a.com b.com"),
            Err(EtrnArgError::Whitespace { .. })
        ));
        assert!(matches!(
            EtrnArg::parse("@bad_name"),
            Err(EtrnArgError::Domain { .. })
        ));
    }
}
