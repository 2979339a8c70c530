//! Bytes as readable text: what transcripts, recordings and cassettes show of the wire.
//!
//! Valid UTF-8 stays as it is, so `ETRN bücher.example` reads naturally; CR, LF, TAB, backslash and
//! every other control character or invalid byte become escapes (`\r`, `\n`, `\t`, `\\`, `\xNN`),
//! so a transcript line never breaks and [`unescape`] gives back the exact bytes.

/// Escapes bytes for a one-line text rendering.
pub fn escape(bytes: &[u8]) -> String {
    // The usual case (a domain, a command word): nothing to escape, one copy, not a char at a
    // time. Printable ASCII is valid UTF-8, so the conversion cannot fail.
    if escapes_to_itself(bytes)
        && let Ok(text) = std::str::from_utf8(bytes)
    {
        return text.to_owned();
    }
    escape_each(bytes)
}

/// [`escape`] of bytes already read as UTF-8 (an ETRN argument is, to be parsed): the same
/// text, without validating it again.
pub fn escape_text(text: &str) -> String {
    if escapes_to_itself(text.as_bytes()) {
        return text.to_owned();
    }
    escape_each(text.as_bytes())
}

/// True when [`escape`] leaves `bytes` as they are: printable ASCII without a backslash.
pub(crate) fn escapes_to_itself(bytes: &[u8]) -> bool {
    // No early exit, so that the compiler makes the check a few vector steps.
    bytes.iter().fold(true, |all, b| {
        all & matches!(b, 0x20..=0x5b | 0x5d..=0x7e) // printable, no `\\`
    })
}

/// [`escape`] a character (or an invalid byte) at a time.
fn escape_each(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\r' => out.push_str("\\r"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Why an escaped text cannot be turned back into bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad escape at character {position}: {detail}")]
pub struct UnescapeError {
    pub position: usize,
    pub detail: &'static str,
}

/// Reverses [`escape`].
pub fn unescape(text: &str) -> Result<Vec<u8>, UnescapeError> {
    if !text.contains('\\') {
        return Ok(text.as_bytes().to_vec());
    }
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let err = |detail| UnescapeError {
            position: i,
            detail,
        };
        match chars.next().map(|(_, c)| c) {
            Some('r') => out.push(b'\r'),
            Some('n') => out.push(b'\n'),
            Some('t') => out.push(b'\t'),
            Some('\\') => out.push(b'\\'),
            Some('x') => {
                let hex: String = chars.by_ref().take(2).map(|(_, c)| c).collect();
                let byte =
                    u8::from_str_radix(&hex, 16).map_err(|_| err("\\x needs two hex digits"))?;
                if hex.len() != 2 {
                    return Err(err("\\x needs two hex digits"));
                }
                out.push(byte);
            }
            Some(_) => return Err(err("unknown escape; use \\r \\n \\t \\\\ or \\xNN")),
            None => return Err(err("a lone backslash at the end")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_any_bytes() {
        let bytes = b"ETRN b\xc3\xbccher.example\r\n\xff\xfe\x00\\x\t".to_vec();
        let text = escape(&bytes);
        assert_eq!(text, "ETRN bücher.example\\r\\n\\xff\\xfe\\x00\\\\x\\t");
        assert_eq!(unescape(&text).unwrap(), bytes);
    }

    #[test]
    fn printable_ascii_is_kept_as_it_is() {
        assert_eq!(escape(b"d1.bench.example"), "d1.bench.example");
        assert_eq!(escape(b"@a.b #q ~!"), "@a.b #q ~!");
        assert_eq!(escape(b""), "");
        assert_eq!(escape(b"a\\b"), "a\\\\b");
        assert_eq!(escape(b"a\x7fb"), "a\\x7fb");
    }

    #[test]
    fn text_escapes_as_its_bytes_do() {
        for text in [
            "d1.bench.example",
            "a\\b",
            "b\u{fc}cher\r\n",
            "\u{85}x\u{7f}",
            "",
        ] {
            assert_eq!(escape_text(text), escape(text.as_bytes()), "{text:?}");
        }
    }

    #[test]
    fn rejects_broken_escapes() {
        assert!(unescape("a\\q").is_err());
        assert!(unescape("a\\x4").is_err());
        assert!(unescape("a\\").is_err());
    }
}
