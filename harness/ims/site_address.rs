//! The Site Addressing SMTP address, `userformat@domain` (KB153270).
//!
//! Under "Do not reroute incoming SMTP mail" IMS sends ETRN for this address's domain (KB269771).
//! The user part is a template for generated proxy addresses; it may use `%` substitutions and is
//! optional (`@site.org.com` is the usual form, KB161803).

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::{Domain, DomainError};
use crate::rejection::Rejection;

/// Why a site address is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiteAddressError {
    #[error("site address {text:?} has no '@'; the format is userformat@domain (KB153270)")]
    NoAt { text: String },
    #[error("site address {text:?}: {source}")]
    Domain { text: String, source: DomainError },
    #[error("site address {text:?}: unknown substitution {token:?} in the user part")]
    Substitution { text: String, token: String },
}

impl SiteAddressError {
    pub fn fix(&self) -> &'static str {
        match self {
            SiteAddressError::NoAt { .. } => {
                "write \"@site.example.com\" or \"%g.%s@site.example.com\""
            }
            SiteAddressError::Domain { source, .. } => source.fix(),
            SiteAddressError::Substitution { .. } => {
                "use %%, %s, %g, %i, %d, %m, %rxy or %n<field> with n from 1 to 99 (KB153270)"
            }
        }
    }
}

/// A parsed site address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteAddress {
    raw: String,
    user_format: String,
    domain: Domain,
}

impl SiteAddress {
    /// Splits at the **last** `@` (baseline for O-16; KB201470 shows `@` can leak into the site
    /// name) and validates the `%` substitutions of the user part.
    pub fn parse(text: &str) -> Result<Self, SiteAddressError> {
        let Some(at) = text.rfind('@') else {
            return Err(SiteAddressError::NoAt { text: text.into() });
        };
        let (user_format, domain) = (&text[..at], &text[at + 1..]);
        check_substitutions(user_format).map_err(|token| SiteAddressError::Substitution {
            text: text.into(),
            token,
        })?;
        let domain = Domain::parse(domain).map_err(|source| SiteAddressError::Domain {
            text: text.into(),
            source,
        })?;
        Ok(SiteAddress {
            raw: text.into(),
            user_format: user_format.into(),
            domain,
        })
    }

    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The template before the last `@`; empty means the default `%m`.
    pub fn user_format(&self) -> &str {
        &self.user_format
    }

    /// The SMTP domain of the site: what "Do not reroute" sends.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// True when the user part itself holds an `@`, the KB201470 corruption.
    pub fn has_several_at_signs(&self) -> bool {
        self.user_format.contains('@')
    }
}

/// Checks `%%`, `%s`, `%g`, `%i`, `%d`, `%m`, `%rxy`, and the 4.0 SP2 `%n<field>` form.
fn check_substitutions(user: &str) -> Result<(), String> {
    let mut chars = user.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        let mut token = String::from('%');
        // Optional count of 1 or 2 digits (n <= 99).
        let mut digits = String::new();
        while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
            digits.push(d);
            chars.next();
        }
        token.push_str(&digits);
        let field = chars.next();
        if let Some(f) = field {
            token.push(f);
        }
        let count_ok = digits.is_empty() || (digits.len() <= 2 && digits != "0" && digits != "00");
        match field {
            Some('%') if digits.is_empty() => {}
            Some('s' | 'g' | 'i' | 'd' | 'm') if count_ok => {}
            Some('r') if digits.is_empty() => {
                // %rxy: two more characters.
                for _ in 0..2 {
                    match chars.next() {
                        Some(x) => token.push(x),
                        None => return Err(token),
                    }
                }
            }
            _ => return Err(token),
        }
    }
    Ok(())
}

impl fmt::Display for SiteAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl Serialize for SiteAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for SiteAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SiteAddress::parse(&s).map_err(|e| Rejection::invalid(&e, e.fix()).into_de_error())
    }
}

impl schemars::JsonSchema for SiteAddress {
    fn schema_name() -> Cow<'static, str> {
        "SiteAddress".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "@[^@]+$",
            "description": "The Site Addressing SMTP address, userformat@domain, e.g. \"@site.org.com\" or \"%g.%s@example.com\""
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_last_at_sign() {
        let sa = SiteAddress::parse("%g.%s@example.com").unwrap();
        assert_eq!(sa.domain().raw(), "example.com");
        assert_eq!(sa.user_format(), "%g.%s");
        let odd = SiteAddress::parse("%m@test@microsoft.example.com").unwrap();
        assert_eq!(odd.domain().raw(), "microsoft.example.com");
        assert!(odd.has_several_at_signs());
    }

    #[test]
    fn substitutions() {
        for ok in [
            "@a.com",
            "%m@a.com",
            "%g%2s@a.com",
            "%r.x%m@a.com",
            "%%x@a.com",
            "%99d@a.com",
        ] {
            assert!(SiteAddress::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "%q@a.com",
            "%0s@a.com",
            "%100s@a.com",
            "%r.@a.com",
            "%@a.com",
        ] {
            assert!(
                matches!(
                    SiteAddress::parse(bad),
                    Err(SiteAddressError::Substitution { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            SiteAddress::parse("site.com"),
            Err(SiteAddressError::NoAt { .. })
        ));
        assert!(matches!(
            SiteAddress::parse("@bad_x.com"),
            Err(SiteAddressError::Domain { .. })
        ));
    }
}
