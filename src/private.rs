//! Files only their owner may read: stores, the agent's ledger and outbox,
//! and the folders that hold them. Law-enforcement data is not for every
//! account on the machine. Also the names of the files kept beside them.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Creates `path` empty with mode 0600 if it is missing, and takes the
/// group's and others' rights off an existing one. Done before SQLite opens
/// a database, since SQLite gives its `-wal` and `-shm` files the
/// database file's mode.
pub fn file(path: &Path) -> io::Result<()> {
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => tighten(path, 0o600),
        Err(e) => Err(e),
    }
}

/// [`file`] for a SQLite database, and its `-wal` and `-shm` files when an
/// earlier version left them readable by others.
pub fn sqlite(path: &Path) -> io::Result<()> {
    file(path)?;
    for suffix in ["-wal", "-shm"] {
        match tighten(&with_suffix(path, suffix), 0o600) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// `<path><suffix>`: the file beside another, such as SQLite's `-wal` and
/// `-shm`, a store's `.lock`, `.records` and `.rebuild`.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates the folder (and its parents) if missing, with mode 0700 for the
/// folder itself.
pub fn dir(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)?;
    tighten(path, 0o700)
}

fn tighten(path: &Path, most: u32) -> io::Result<()> {
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & most & 0o7777))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_folders_are_created_or_tightened_to_their_owner() {
        let d = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let folder = d.path().join("a/b");
        dir(&folder).unwrap();
        assert_eq!(mode(&folder), 0o700);
        let f = folder.join("x.sqlite");
        file(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        file(&f).unwrap();
        assert_eq!(mode(&f), 0o600, "tightened");
    }
}
