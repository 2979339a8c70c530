//! What the IMS learns about its peer from the EHLO exchange (PEER in `scenarios/README.md`).

use serde::Serialize;

/// The peer's answer to EHLO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum PeerEhlo {
    /// EHLO accepted; `keywords` holds each ehlo-line after the domain line, verbatim
    /// (`"ETRN"`, `"SIZE 10240000"`, `"etrn"`).
    Esmtp { keywords: Vec<String> },
    /// EHLO refused (e.g. 500 or 502): the peer only speaks HELO.
    HeloOnly,
}

impl PeerEhlo {
    /// True when an ehlo-line's first word equals `keyword`, ignoring case (RFC 5321 §2.4;
    /// baseline B4). Prefix matches such as `ETRNX` do not count.
    pub fn advertises(&self, keyword: &str) -> bool {
        match self {
            PeerEhlo::Esmtp { keywords } => {
                crate::wire::ehlo::advertises(keywords.iter().map(String::as_str), keyword)
            }
            PeerEhlo::HeloOnly => false,
        }
    }

    /// Shorthand for an ESMTP peer that advertises exactly these keywords.
    pub fn esmtp<I: IntoIterator<Item = S>, S: Into<String>>(keywords: I) -> Self {
        PeerEhlo::Esmtp {
            keywords: keywords.into_iter().map(Into::into).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_matching_is_case_insensitive_and_whole_word() {
        assert!(PeerEhlo::esmtp(["etrn"]).advertises("ETRN"));
        assert!(PeerEhlo::esmtp(["SIZE 100", "ETRN"]).advertises("ETRN"));
        assert!(!PeerEhlo::esmtp(["ETRNX"]).advertises("ETRN"));
        assert!(!PeerEhlo::esmtp(["8BITMIME"]).advertises("ETRN"));
        assert!(!PeerEhlo::HeloOnly.advertises("ETRN"));
    }
}
