//! Files a user names: read safely, and written whole.
//!
//! Reading: a regular file only, never blocking, with a size cap.
//!
//! A FIFO or a device named where a file belongs would block `read` forever (a FIFO) or never
//! end (`/dev/zero`). So the file is opened without blocking, checked with `fstat` on the open
//! descriptor (no race with a rename), and read up to a cap. Errors name the path and the fault,
//! never the content.
//!
//! A file a remote request names ([`Folder::read_beneath`], for `serve --cassette-dir`) is also
//! opened relative to its folder's descriptor with `openat2(RESOLVE_BENEATH)`: the kernel itself
//! refuses a path or a link that leads out of the folder, at the moment of opening, so nothing
//! can be swapped between a check and the open.

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
    read_capped(open_regular(path)?, path, cap)
}

/// Reads `file`, opened by the caller without blocking and checked to be a regular file: at most
/// `cap` octets.
fn read_capped(file: std::fs::File, path: &Path, cap: u64) -> Result<Vec<u8>, ReadFileError> {
    let name = || path.display().to_string();
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

/// A folder files are read from by relative paths that may not lead out of it (through `..`, an
/// absolute path or a link), held open by its descriptor. Linux only (`openat2`, Linux 5.6).
#[derive(Debug)]
pub struct Folder {
    fd: std::os::fd::OwnedFd,
    path: std::path::PathBuf,
}

impl Folder {
    /// Opens the folder at `path` (a folder, or an error saying why not).
    pub fn open(path: &Path) -> Result<Folder, ReadFileError> {
        let open = |source: std::io::Error| ReadFileError::Open {
            path: path.display().to_string(),
            source,
        };
        #[cfg(not(target_os = "linux"))]
        return Err(open(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "reading only beneath a folder needs Linux (openat2)",
        )));
        #[cfg(target_os = "linux")]
        let fd = rustix::fs::open(
            path,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| open(e.into()))?;
        let folder = Folder {
            fd,
            path: path.to_owned(),
        };
        // The kernel must know openat2 (Linux 5.6): found out now, not at the first request.
        folder.open_beneath(Path::new(".")).map_err(|e| match e {
            rustix::io::Errno::NOSYS => open(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "this kernel has no openat2 (Linux 5.6 or later is needed)",
            )),
            e => open(e.into()),
        })?;
        Ok(folder)
    }

    /// The folder as it was named.
    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(target_os = "linux")]
    fn open_beneath(&self, relative: &Path) -> Result<std::os::fd::OwnedFd, rustix::io::Errno> {
        use rustix::fs::{OFlags, ResolveFlags};
        rustix::fs::openat2(
            &self.fd,
            relative,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
            rustix::fs::Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
    }

    #[cfg(not(target_os = "linux"))]
    fn open_beneath(&self, _relative: &Path) -> Result<std::os::fd::OwnedFd, rustix::io::Errno> {
        Err(rustix::io::Errno::NOSYS)
    }

    /// Reads the regular file at `relative` inside the folder, at most `cap` octets. The kernel
    /// resolves `relative` beneath the folder: `..` above it, an absolute path, an absolute link
    /// or a link whose target leads out is refused ([`ReadFileError::Open`], as for a file that is
    /// not there); a relative link that stays inside is followed. Opened without blocking and
    /// checked with `fstat` before any read. Errors name `relative`, never the folder's content.
    pub fn read_beneath(&self, relative: &Path, cap: u64) -> Result<Vec<u8>, ReadFileError> {
        let fd = self
            .open_beneath(relative)
            .map_err(|e| ReadFileError::Open {
                path: relative.display().to_string(),
                source: e.into(),
            })?;
        let file = std::fs::File::from(fd);
        ensure_regular(&file, relative)?;
        read_capped(file, relative, cap)
    }
}

/// Writes `bytes` to `path` whole or not at all: into a new file beside it, then renamed onto it,
/// so a reader never sees half of it, nor does a run stopped while writing leave half of it.
/// The file is readable as any file the user writes (0644 before the umask), not 0600 as a
/// temporary file. A link to a file keeps the link (the file it names is replaced); what is not
/// a file (`/dev/stdout`, a FIFO) is a stream, written through as it is, never replaced.
/// Blocking: call it off a runtime's workers.
pub fn write_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let target = match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => return std::fs::write(path, bytes),
        Ok(_) => std::fs::canonicalize(path)?,
        Err(_) => path.to_path_buf(),
    };
    let folder = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o644))
        .tempfile_in(folder)?;
    file.write_all(bytes)?;
    file.persist(&target).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_written_whole_replaces_the_old_one_and_leaves_nothing_beside_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        std::fs::write(&path, "old, and longer than the new").unwrap();
        write_whole(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // Others may read it unless the umask says otherwise; never 0600 as a temporary file.
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o600, 0o600);
        assert_eq!(mode & 0o111, 0);
        let umask_lets_others_read = {
            let probe = dir.path().join("probe");
            std::fs::write(&probe, "").unwrap();
            std::fs::metadata(&probe).unwrap().permissions().mode() & 0o044 != 0
        };
        assert_eq!(mode & 0o044 != 0, umask_lets_others_read, "{mode:o}");
        // A folder that is not there: an error, nothing written.
        assert!(write_whole(&dir.path().join("no/such/folder/x"), b"x").is_err());
        // Through a link: the link stays, the file it names is replaced.
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        write_whole(&link, b"through").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(std::fs::read(&path).unwrap(), b"through");
        // A stream is written through, never replaced by a file.
        write_whole(Path::new("/dev/null"), b"gone").unwrap();
        assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
    }

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

    #[cfg(target_os = "linux")]
    #[test]
    fn a_folder_reads_only_what_resolves_beneath_it() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("in");
        std::fs::create_dir_all(inside.join("sub")).unwrap();
        std::fs::write(inside.join("sub/a"), "a").unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink("sub/a", inside.join("near")).unwrap();
        std::os::unix::fs::symlink("../secret", inside.join("up")).unwrap();
        std::os::unix::fs::symlink(inside.join("sub/a"), inside.join("absolute")).unwrap();
        let folder = Folder::open(&inside).unwrap();
        assert_eq!(folder.read_beneath(Path::new("sub/a"), 10).unwrap(), b"a");
        assert_eq!(folder.read_beneath(Path::new("near"), 10).unwrap(), b"a");
        for refused in [
            "../secret",
            "up",
            "absolute",
            "/etc/passwd",
            "missing",
            "sub/../../secret",
        ] {
            assert!(
                matches!(
                    folder.read_beneath(Path::new(refused), 10),
                    Err(ReadFileError::Open { .. })
                ),
                "{refused}"
            );
        }
        assert!(matches!(
            folder.read_beneath(Path::new("sub"), 10),
            Err(ReadFileError::NotRegular { .. })
        ));
        assert!(Folder::open(&inside.join("sub/a")).is_err());
    }
}
