//! Reading and writing the node's small files (keys, shares, genesis) with one-line errors
//! that name the file and say what to do about it.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path} does not exist: {fix}")]
    Missing { path: PathBuf, fix: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} already exists: remove it first or write elsewhere with {fix}")]
    Exists { path: PathBuf, fix: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error(
        "{path} holds a secret key but is readable by group or others (mode {mode:04o}): make it private with `chmod 600 {path}`"
    )]
    Exposed { path: PathBuf, mode: u32 },
}

/// Read a whole file; a missing file gets `fix` as its advice.
pub fn read(path: &Path, fix: &str) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(|e| read_error(path, fix, e))
}

fn read_error(path: &Path, fix: &str, e: std::io::Error) -> FileError {
    match e.kind() {
        std::io::ErrorKind::NotFound => FileError::Missing {
            path: path.to_owned(),
            fix: fix.to_owned(),
        },
        _ => FileError::Read {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    }
}

/// Read a file holding a secret key: refused when group or others may read or write it, since
/// anyone who can read it can sign as this node (and a key others can write is not ours).
pub fn read_secret(path: &Path, fix: &str) -> Result<Vec<u8>, FileError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| read_error(path, fix, e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(FileError::Exposed {
            path: path.to_owned(),
            mode,
        });
    }
    read(path, fix)
}

/// [`read_secret`] as UTF-8 text.
pub fn read_secret_text(path: &Path, fix: &str) -> Result<String, FileError> {
    let bytes = read_secret(path, fix)?;
    String::from_utf8(bytes).map_err(|_| FileError::Read {
        path: path.to_owned(),
        reason: "not UTF-8 text".into(),
    })
}

/// Read a whole file as UTF-8 text.
pub fn read_text(path: &Path, fix: &str) -> Result<String, FileError> {
    let bytes = read(path, fix)?;
    String::from_utf8(bytes).map_err(|_| FileError::Read {
        path: path.to_owned(),
        reason: "not UTF-8 text".into(),
    })
}

/// Create `path` with mode 0600 and write `bytes`, synced; refuses to overwrite.
pub fn write_secret(path: &Path, bytes: &[u8], fix: &str) -> Result<(), FileError> {
    write_new(path, bytes, 0o600, fix)
}

/// Create `path` with `mode` and write `bytes`, synced; refuses to overwrite.
pub fn write_new(path: &Path, bytes: &[u8], mode: u32, fix: &str) -> Result<(), FileError> {
    let werr = |e: std::io::Error| FileError::Write {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(werr)?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => FileError::Exists {
                path: path.to_owned(),
                fix: fix.to_owned(),
            },
            _ => werr(e),
        })?;
    file.write_all(bytes).map_err(werr)?;
    file.sync_all().map_err(werr)
}
