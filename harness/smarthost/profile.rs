//! Server profiles: how real ETRN servers answer, as data files shipped with the crate.
//!
//! Each file in `harness/smarthost/profiles/` gives a greeting, the EHLO keywords and the ETRN
//! replies one real server was observed to give (spec S rows, `scenarios/README.md`). A scenario names a profile and
//! overrides what it needs; the profile fills in the rest.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::reply::Reply;

/// The shipped profiles.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ProfileName {
    /// RFC 1985's own reply texts; accepts every node.
    #[default]
    Rfc1985,
    /// Postfix 3.7: 250 for `served` domains (fast_flush_domains), 459 for the rest.
    Postfix,
    /// Exim 4.96 without smtp_etrn_command: 501 unless the argument starts with '#'.
    Exim,
    /// sendmail 8.17: accepts everything, echoes the argument.
    Sendmail,
    /// Exchange 5.5 IMS in the server role.
    ExchangeIms,
}

impl ProfileName {
    pub const ALL: &'static [ProfileName] = &[
        ProfileName::Rfc1985,
        ProfileName::Postfix,
        ProfileName::Exim,
        ProfileName::Sendmail,
        ProfileName::ExchangeIms,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProfileName::Rfc1985 => "rfc1985",
            ProfileName::Postfix => "postfix",
            ProfileName::Exim => "exim",
            ProfileName::Sendmail => "sendmail",
            ProfileName::ExchangeIms => "exchange-ims",
        }
    }

    fn source(self) -> &'static str {
        match self {
            ProfileName::Rfc1985 => include_str!("profiles/rfc1985.toml"),
            ProfileName::Postfix => include_str!("profiles/postfix.toml"),
            ProfileName::Exim => include_str!("profiles/exim.toml"),
            ProfileName::Sendmail => include_str!("profiles/sendmail.toml"),
            ProfileName::ExchangeIms => include_str!("profiles/exchange-ims.toml"),
        }
    }

    /// Loads the shipped profile. The files are part of the crate and checked by a test, so an
    /// error here is a packaging bug; it is still reported rather than panicking.
    pub fn load(self) -> Result<Profile, ProfileError> {
        toml::from_str(self.source()).map_err(|e| ProfileError {
            name: self.as_str(),
            message: e.message().to_owned(),
        })
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A shipped profile file failed to parse.
#[derive(Debug, Clone, thiserror::Error)]
#[error("server profile {name:?} is malformed: {message}")]
pub struct ProfileError {
    pub name: &'static str,
    pub message: String,
}

/// One server's observed behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub description: String,
    /// Where the replies come from.
    pub basis: String,
    pub greeting: Reply,
    /// Lines of the EHLO reply after the first, verbatim.
    pub ehlo_keywords: Vec<String>,
    /// The reply to a node the server does not serve.
    pub etrn_default: Reply,
    /// The reply to a node in the scenario's `served` list.
    pub etrn_served: Reply,
    /// The reply to a `#queue` argument, when it differs from the domain replies.
    #[serde(default)]
    pub etrn_queue: Option<Reply>,
    /// The reply to `ETRN` with no argument.
    pub etrn_missing_argument: Reply,
    /// The reply to ETRN inside MAIL...DATA; `None` means the server processes it as usual.
    #[serde(default)]
    pub etrn_in_transaction: Option<Reply>,
    /// The reply to ETRN before EHLO/HELO; `None` means the server processes it as usual.
    #[serde(default)]
    pub etrn_before_hello: Option<Reply>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_profile_parses_and_advertises_etrn() {
        for name in ProfileName::ALL {
            let p = name.load().unwrap_or_else(|e| panic!("{e}"));
            assert!(
                crate::wire::ehlo::advertises(p.ehlo_keywords.iter().map(String::as_str), "ETRN"),
                "{name}"
            );
            assert_eq!(p.greeting.code().get(), 220, "{name}");
        }
    }
}
