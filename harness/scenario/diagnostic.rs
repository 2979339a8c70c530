//! Errors in scenario files, located and explained.
//!
//! Every error names the file, line and column, shows the offending value and suggests a fix. The
//! CLI renders them through miette (a rustc-style pointer into the file); [`fmt::Display`] gives the
//! same facts on one line for logs and grep.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode, SourceSpan};

/// The class of a scenario error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The file could not be read.
    Unreadable,
    /// Not valid TOML.
    Syntax,
    /// A key the format does not have (often a typo).
    UnknownKey,
    /// A required key is missing.
    MissingKey,
    /// A value of the wrong TOML type.
    WrongType,
    /// A value of the right type that is not allowed: a bad domain, reply, registry value, name.
    InvalidValue,
    /// Settings that contradict each other.
    Contradiction,
    /// Two files share one `id`.
    DuplicateId,
}

impl ErrorKind {
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Unreadable => "scenario::unreadable",
            ErrorKind::Syntax => "scenario::syntax",
            ErrorKind::UnknownKey => "scenario::unknown-key",
            ErrorKind::MissingKey => "scenario::missing-key",
            ErrorKind::WrongType => "scenario::wrong-type",
            ErrorKind::InvalidValue => "scenario::invalid-value",
            ErrorKind::Contradiction => "scenario::contradiction",
            ErrorKind::DuplicateId => "scenario::duplicate-id",
        }
    }
}

/// One problem in one scenario file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ScenarioError {
    pub kind: ErrorKind,
    /// The file as given on the command line or found in a folder.
    pub file: String,
    /// 1-based line and column of the offending value; 0 when the error concerns the whole file.
    pub line: u32,
    pub column: u32,
    pub message: String,
    /// The offending text, as written in the file.
    pub value: Option<String>,
    /// What to write instead.
    pub help: Option<String>,
    /// The excerpt miette draws; boxed because most errors are passed around, few are drawn.
    excerpt: Option<Box<Excerpt>>,
}

/// The file text and where in it the error points.
#[derive(Debug, Clone)]
struct Excerpt {
    source: NamedSource<String>,
    span: SourceSpan,
    label: &'static str,
}

impl ScenarioError {
    /// An error at `span` (byte offsets) of `text`.
    pub fn at(
        kind: ErrorKind,
        file: &Path,
        text: &str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Self {
        let file_name = file.display().to_string();
        let (line, column, value, span) = match span {
            Some(r) => {
                let start = r.start.min(text.len());
                let end = r.end.clamp(start, text.len());
                let (line, column) = line_column(text, start);
                let value = match text.get(start..end).map(|v| shorten(v.trim_end())) {
                    Some(v) if !v.is_empty() => v,
                    // An empty span (a syntax error at a position): show the rest of the line.
                    _ => match text[floor_char_boundary(text, start)..].lines().next() {
                        Some(rest) if !rest.trim().is_empty() => shorten(rest.trim_end()),
                        _ => "end of file".to_owned(),
                    },
                };
                // miette's renderer cannot draw a label past column 65,535 (it panics); an excerpt
                // of such a line would be unreadable anyway. Line, column and value still say it.
                let excerpt = (column <= MAX_EXCERPT_COLUMN
                    && line_length(text, start) <= MAX_EXCERPT_LINE)
                    .then(|| SourceSpan::from(start..end));
                (line, column, Some(value), excerpt)
            }
            None => (0, 0, None, None),
        };
        let (line, column) = (saturate(line), saturate(column));
        let label = match kind {
            ErrorKind::UnknownKey => "not a key of this table",
            ErrorKind::MissingKey => "in this table",
            ErrorKind::WrongType => "wrong type",
            ErrorKind::Syntax => "here",
            ErrorKind::Contradiction => "contradicts another setting",
            ErrorKind::DuplicateId => "used by another file",
            _ => "not allowed",
        };
        ScenarioError {
            kind,
            file: file_name.clone(),
            line,
            column,
            message: message.into(),
            value,
            help,
            excerpt: span.map(|span| {
                Box::new(Excerpt {
                    source: NamedSource::new(file_name, text.to_owned()),
                    span,
                    label,
                })
            }),
        }
    }

    /// The file itself could not be read.
    pub fn unreadable(file: &Path, error: &std::io::Error) -> Self {
        ScenarioError {
            kind: ErrorKind::Unreadable,
            file: file.display().to_string(),
            line: 0,
            column: 0,
            message: format!("cannot read the file: {error}"),
            value: None,
            help: Some("check the path and its permissions".into()),
            excerpt: None,
        }
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )?;
        } else {
            write!(f, "{}: {}", self.file, self.message)?;
        }
        Ok(())
    }
}

impl ScenarioError {
    /// Everything on one line, the fix included: for logs, CI output and grep.
    pub fn one_line(&self) -> String {
        match &self.help {
            Some(h) => format!("{self} (help: {h})"),
            None => self.to_string(),
        }
    }
}

impl Diagnostic for ScenarioError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.kind.code()))
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.excerpt.as_ref().map(|e| &e.source as &dyn SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let e = self.excerpt.as_ref()?;
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some(e.label.to_owned()),
            e.span,
        ))))
    }
}

/// Longest line, in characters, drawn as an annotated excerpt.
const MAX_EXCERPT_LINE: usize = 4096;
/// Furthest column an excerpt label is drawn at.
const MAX_EXCERPT_COLUMN: usize = MAX_EXCERPT_LINE;

/// Characters in the line that holds byte offset `at`.
fn line_length(text: &str, at: usize) -> usize {
    let at = floor_char_boundary(text, at);
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    text[start..end].chars().count()
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The first line of a value, at most 60 characters.
fn shorten(v: &str) -> String {
    let first = v.lines().next().unwrap_or("");
    if first.chars().count() > 60 || v.contains('\n') {
        let cut: String = first.chars().take(60).collect();
        format!("{cut}...")
    } else {
        first.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let text = "a = 1\nbü = \"x\"\n";
        assert_eq!(line_column(text, 0), (1, 1));
        let x = text.find("\"x\"").unwrap();
        assert_eq!(line_column(text, x), (2, 6));
    }
}
