//! The inbox folder of `agent watch` on disk: which files are ready, where a
//! handled file goes (`done/` or `failed/`), and the receipt written beside it.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::publish::FileSummary;

pub const DONE: &str = "done";
pub const FAILED: &str = "failed";
const RECEIPT: &str = ".receipt.json";

/// A file is complete once renamed into the inbox; these names are files
/// still being written (or hidden), which are left alone.
pub fn is_ready_name(name: &str) -> bool {
    !name.starts_with('.') && !name.ends_with(".tmp") && !name.ends_with(".part")
}

/// The ready files of the inbox, in name order (the order they are applied).
pub fn ready_files(inbox: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(inbox)? {
        let entry = entry?;
        // Not UTF-8: no receipt could name it faithfully; such a name cannot
        // come from the exports we document, so it is left where it is.
        let Ok(name) = entry.file_name().into_string() else { continue };
        if !is_ready_name(&name) {
            continue;
        }
        let path = entry.path();
        // Vanished between listing and stat: it is simply not there any more.
        if fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push((name, path));
        }
    }
    files.sort();
    Ok(files)
}

/// What says a file is still being written: its size and modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub modified: SystemTime,
}

impl Stamp {
    pub fn of(path: &Path) -> io::Result<Stamp> {
        let m = fs::metadata(path)?;
        Ok(Stamp { size: m.len(), modified: m.modified()? })
    }
}

/// The inbox files seen so far and since when each has kept its stamp. An
/// export job that writes in place instead of renaming in breaks the inbox
/// contract; a file is taken only once it has been still for the settle
/// interval, so such a job is caught unless it pauses for longer than that
/// (and then, while it keeps the file open, by [`open_for_writing`]).
#[derive(Default)]
pub struct Settling {
    seen: HashMap<PathBuf, (Stamp, Instant)>,
}

impl Settling {
    /// Whether `path`, now stamped `stamp`, has kept that stamp for `settle`.
    pub fn settled(&mut self, path: &Path, stamp: Stamp, now: Instant, settle: Duration) -> bool {
        match self.seen.get(path) {
            Some((s, since)) if *s == stamp => now.duration_since(*since) >= settle,
            _ => {
                self.seen.insert(path.to_path_buf(), (stamp, now));
                settle.is_zero()
            }
        }
    }

    /// Forgets `path` (taken, moved away, or changed while being read).
    pub fn forget(&mut self, path: &Path) {
        self.seen.remove(path);
    }

    /// Keeps only the files still in the inbox.
    pub fn retain(&mut self, present: &[(String, PathBuf)]) {
        self.seen.retain(|p, _| present.iter().any(|(_, q)| q == p));
    }
}

/// Whether a process this account can see holds `path` open for writing
/// (Linux: `/proc/<pid>/fd` and the access mode in `fdinfo`). Processes of
/// other accounts cannot be seen; the settle interval still applies to them.
pub fn open_for_writing(path: &Path) -> bool {
    let Ok(target) = path.canonicalize() else { return false };
    let Ok(procs) = fs::read_dir("/proc") else { return false };
    procs.flatten().any(|p| {
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else { return false };
        fds.flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t == target) && writes(&p.path(), &fd.file_name()))
    })
}

/// The `flags:` line of `fdinfo` is octal; its low two bits are the access
/// mode (`O_WRONLY` = 1, `O_RDWR` = 2).
fn writes(proc_dir: &Path, fd: &std::ffi::OsStr) -> bool {
    let Ok(info) = fs::read_to_string(proc_dir.join("fdinfo").join(fd)) else { return false };
    info.lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        .is_some_and(|flags| flags & 0o3 != 0)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `name` in `dir`, or `stem~N.ext` when a file of that name (or its
/// receipt) is already there: a force may drop `export.csv` every day.
pub fn free_name(dir: &Path, name: &str) -> String {
    let taken = |n: &str| dir.join(n).exists() || dir.join(format!("{n}{RECEIPT}")).exists();
    if !taken(name) {
        return name.to_string();
    }
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, ""),
    };
    (2..).map(|n| format!("{stem}~{n}{ext}")).find(|n| !taken(n)).expect("some name is free")
}

pub fn receipt_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}{RECEIPT}"))
}

/// What `done/<name>.receipt.json` says.
#[derive(Serialize)]
pub struct Receipt<'a> {
    #[serde(flatten)]
    pub summary: &'a FileSummary,
    pub finished_at: String,
}

/// What `failed/<name>.receipt.json` says.
#[derive(Serialize)]
pub struct FailedReceipt<'a> {
    pub file: &'a str,
    pub error: &'a str,
    /// For a file that changed after it was read: what that read published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read: Option<&'a FileSummary>,
    pub finished_at: String,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Writes the receipt whole or not at all (temporary file, fsync, rename),
/// so a reader never sees half a receipt.
pub fn write_receipt(dir: &Path, name: &str, receipt: &impl Serialize) -> io::Result<()> {
    let path = receipt_path(dir, name);
    let tmp = dir.join(format!(".{name}{RECEIPT}.tmp"));
    let mut text = serde_json::to_vec_pretty(receipt).map_err(io::Error::other)?;
    text.push(b'\n');
    let mut f = fs::File::create(&tmp)?;
    f.write_all(&text)?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    sync_dir(dir)
}

/// Moves `file` into `dir` as `name`; both folders are on one file system.
pub fn move_into(file: &Path, dir: &Path, name: &str) -> io::Result<()> {
    fs::rename(file, dir.join(name))?;
    sync_dir(dir)?;
    file.parent().map_or(Ok(()), sync_dir)
}

/// A rename is durable only once its folder is synced.
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_being_written_or_hidden_are_not_ready() {
        for name in [".x.csv", "x.csv.tmp", "x.csv.part", ".x.tmp"] {
            assert!(!is_ready_name(name), "{name}");
        }
        for name in ["x.csv", "x.jsonl", "x.txt", "tmp.csv"] {
            assert!(is_ready_name(name), "{name}");
        }
    }

    #[test]
    fn a_taken_name_gets_a_numbered_one() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(free_name(dir.path(), "export.csv"), "export.csv");
        fs::write(dir.path().join("export.csv"), "").unwrap();
        assert_eq!(free_name(dir.path(), "export.csv"), "export~2.csv");
        fs::write(receipt_path(dir.path(), "export~2.csv"), "").unwrap();
        assert_eq!(free_name(dir.path(), "export.csv"), "export~3.csv");
        fs::write(dir.path().join("README"), "").unwrap();
        assert_eq!(free_name(dir.path(), "README"), "README~2");
    }

    #[test]
    fn a_file_is_settled_once_its_stamp_has_held_for_the_interval() {
        let (p, t0, settle) = (Path::new("/in/a.csv"), Instant::now(), Duration::from_millis(500));
        let stamp = |size| Stamp { size, modified: SystemTime::UNIX_EPOCH };
        let mut s = Settling::default();
        assert!(!s.settled(p, stamp(10), t0, settle), "first sight");
        assert!(!s.settled(p, stamp(10), t0 + Duration::from_millis(499), settle));
        assert!(!s.settled(p, stamp(20), t0 + Duration::from_millis(600), settle), "grew: the clock restarts");
        assert!(!s.settled(p, stamp(20), t0 + Duration::from_millis(1000), settle));
        assert!(s.settled(p, stamp(20), t0 + Duration::from_millis(1100), settle));
        s.forget(p);
        assert!(!s.settled(p, stamp(20), t0 + Duration::from_millis(1200), settle), "forgotten");
        assert!(Settling::default().settled(p, stamp(1), t0, Duration::ZERO), "no interval: at once");
    }

    #[test]
    fn a_file_open_for_writing_is_seen_and_a_closed_or_read_only_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        let mut w = fs::File::create(&path).unwrap();
        assert!(open_for_writing(&path));
        let _r = fs::File::open(&path).unwrap();
        w.write_all(b"x").unwrap();
        drop(w);
        assert!(!open_for_writing(&path), "only open for reading now");
        assert!(!open_for_writing(&dir.path().join("absent.csv")));
    }

    #[test]
    fn ready_files_come_in_name_order_without_folders() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.csv", "a.jsonl", ".c.csv.tmp", "d.part"] {
            fs::write(dir.path().join(name), "").unwrap();
        }
        fs::create_dir(dir.path().join(DONE)).unwrap();
        let names: Vec<String> = ready_files(dir.path()).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a.jsonl", "b.csv"]);
    }
}
