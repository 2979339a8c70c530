//! Reading a file a user named, safely: a regular file only, never blocking, with a size cap.
//!
//! A FIFO or a device named where a file belongs would block `read` forever (a FIFO) or never
//! end (`/dev/zero`). So the file is opened without blocking, checked with `fstat` on the open
//! descriptor (no race with a rename), and read up to a cap. Errors name the path and the fault,
//! never the content.

use std::io::Read;
use std::path::Path;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadFileError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a regular file (a folder, FIFO, socket or device)")]
    NotRegular { path: String },
    #[error("{path} is larger than {cap} octets")]
    TooLarge { path: String, cap: u64 },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not UTF-8 text")]
    NotUtf8 { path: String },
}

impl ReadFileError {
    /// The fault without the path, for a caller that names the file itself.
    pub fn reason(&self) -> String {
        match self {
            ReadFileError::Open { source, .. } => format!("cannot open it: {source}"),
            ReadFileError::NotRegular { .. } => {
                "it is not a regular file (a folder, FIFO, socket or device)".into()
            }
            ReadFileError::TooLarge { cap, .. } => format!("it is larger than {cap} octets"),
            ReadFileError::Read { source, .. } => format!("cannot read it: {source}"),
            ReadFileError::NotUtf8 { .. } => "it is not UTF-8 text".into(),
        }
    }
}

/// Reads the regular file at `path`, at most `cap` octets, as UTF-8 text.
pub fn read_regular_file(path: &Path, cap: u64) -> Result<String, ReadFileError> {
    let bytes = read_regular_bytes(path, cap)?;
    String::from_utf8(bytes).map_err(|_| ReadFileError::NotUtf8 {
        path: path.display().to_string(),
    })
}

/// Reads the regular file at `path`, at most `cap` octets, as bytes: for a format that reports
/// a bad byte with its line itself.
pub fn read_regular_bytes(path: &Path, cap: u64) -> Result<Vec<u8>, ReadFileError> {
    let name = || path.display().to_string();
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ReadFileError::Read {
            path: name(),
            source,
        })?;
    if bytes.len() as u64 > cap {
        return Err(ReadFileError::TooLarge { path: name(), cap });
    }
    Ok(bytes)
}

/// Opens the regular file at `path` for reading, without blocking on a FIFO: for a caller that
/// reads it piece by piece with caps of its own (a recording stream, line by line).
pub fn open_regular(path: &Path) -> Result<std::fs::File, ReadFileError> {
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| ReadFileError::Open {
        path: path.display().to_string(),
        source: e.into(),
    })?;
    let file = std::fs::File::from(fd);
    ensure_regular(&file, path)?;
    Ok(file)
}

/// Checks that `file`, opened by the caller, is a regular file: for a file opened to write as
/// well as to read (a cassette appended to), which [`read_regular_bytes`] cannot open.
pub fn ensure_regular(file: &std::fs::File, path: &Path) -> Result<(), ReadFileError> {
    let stat = rustix::fs::fstat(file).map_err(|e| ReadFileError::Open {
        path: path.display().to_string(),
        source: e.into(),
    })?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::RegularFile {
        Ok(())
    } else {
        Err(ReadFileError::NotRegular {
            path: path.display().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_small_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_regular_file(dir.path(), 10),
            Err(ReadFileError::NotRegular { .. })
        ));
        let big = dir.path().join("big");
        std::fs::write(&big, "x".repeat(11)).unwrap();
        assert!(matches!(
            read_regular_file(&big, 10),
            Err(ReadFileError::TooLarge { .. })
        ));
        assert_eq!(read_regular_file(&big, 11).unwrap().len(), 11);
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::RUSR).unwrap();
        assert!(matches!(
            read_regular_file(&fifo, 10),
            Err(ReadFileError::NotRegular { .. })
        ));
    }
}
