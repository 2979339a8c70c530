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
    normalised: String,
}

impl Domain {
    /// Parses and validates a domain (RFC 5321 §4.1.2 letters-digits-hyphen labels, or IDNA U-labels).
    /// A single trailing dot is allowed and kept in the raw text.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
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
        Ok(Domain {
            raw: text.to_owned(),
            normalised: ascii.into_owned(),
        })
    }

    /// The text exactly as written: what goes on the wire.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Lower case, no trailing dot, A-labels: what comparisons use.
    pub fn normalised(&self) -> &str {
        &self.normalised
    }

    /// True when every label is numeric, as in `192.168.1.10` (KB249100 allows such routing rows;
    /// Postfix refuses them as ETRN arguments).
    pub fn is_all_numeric(&self) -> bool {
        self.normalised
            .split('.')
            .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
    }
}

impl PartialEq for Domain {
    fn eq(&self, other: &Self) -> bool {
        self.normalised == other.normalised
    }
}
impl Eq for Domain {}
impl Hash for Domain {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.normalised.hash(state);
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
    raw: String,
    option: EtrnOption,
    node: EtrnNode,
}

impl EtrnArg {
    /// Parses an argument as received or configured.
    pub fn parse(raw: &str) -> Result<Self, EtrnArgError> {
        if raw.is_empty() {
            return Err(EtrnArgError::Empty);
        }
        if raw.chars().any(char::is_whitespace) {
            return Err(EtrnArgError::Whitespace { raw: raw.into() });
        }
        let (option, rest) = match raw.as_bytes()[0] {
            b'@' => (EtrnOption::Subdomains, &raw[1..]),
            b'#' => (EtrnOption::Queue, &raw[1..]),
            _ => (EtrnOption::None, raw),
        };
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
        Ok(EtrnArg {
            raw: raw.to_owned(),
            option,
            node,
        })
    }

    /// The plain form `ETRN <domain>` with no option character.
    pub fn plain(domain: Domain) -> Self {
        EtrnArg {
            raw: domain.raw().to_owned(),
            option: EtrnOption::None,
            node: EtrnNode::Domain(domain),
        }
    }

    pub fn raw(&self) -> &str {
        &self.raw
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
        write!(f, "EtrnArg({:?})", self.raw)
    }
}

impl fmt::Display for EtrnArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
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
        s.serialize_str(&self.raw)
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
