//! Store files are created readable by their owner only: they hold
//! law-enforcement figures, token hashes and the access log.

use std::path::Path;

use super::StoreError;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.display().to_string(), source }
}

/// Creates `path` (and its folder) with mode 0600 before SQLite opens it, so
/// that the umask plays no part; SQLite then gives `-wal` and `-shm` the
/// database's mode. A file left 0644 by an earlier version is narrowed.
pub(super) fn prepare_private(path: &Path) -> Result<(), StoreError> {
    if path.as_os_str() == ":memory:" {
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    crate::private::sqlite(path).map_err(io(path))
}

/// What names a file on disk: a rename puts another file behind the same
/// path, and a reader that opened the old one must notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    pub fn of(path: &Path) -> std::io::Result<FileId> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(FileId { dev: m.dev(), ino: m.ino() })
    }
}
