//! The one way vocc replaces a file: a unique temporary sibling, written and synced,
//! renamed over the target, and the directory synced, so that after a crash or a kill a
//! reader sees the whole old content or the whole new one, and the rename itself is
//! durable. A temporary left behind by a killed process carries a recognisable name
//! (`is_temporary`) so that the next writer of the directory can sweep it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The suffix every temporary file of this module ends with.
pub const TEMP_SUFFIX: &str = ".vocc-tmp";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file being written under a temporary name beside `path`. `commit` makes it
/// `path`; dropping it uncommitted removes the temporary.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: PathBuf,
    path: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    /// Opens a new temporary beside `path` with permission bits `mode` (exactly: the
    /// umask does not narrow them).
    pub fn create(path: &Path, mode: u32) -> io::Result<AtomicFile> {
        let tmp = temporary(path);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        let mut me = AtomicFile {
            tmp,
            path: path.to_path_buf(),
            file: Some(file),
        };
        me.file_mut()
            .set_permissions(fs::Permissions::from_mode(mode))?;
        Ok(me)
    }

    /// The open temporary file.
    pub fn file_mut(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("an AtomicFile holds its file until commit")
    }

    /// Where the content goes on `commit`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Syncs the content, renames it over the target and syncs the directory.
    pub fn commit(mut self) -> io::Result<()> {
        let file = self.file.take().expect("commit runs once");
        file.sync_all()?;
        drop(file);
        fs::rename(&self.tmp, &self.path)?;
        sync_dir(parent(&self.path))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file_mut().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file_mut().flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Replaces `path` with `bytes`, atomically and durably, with permission bits `mode`.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut f = AtomicFile::create(path, mode)?;
    f.write_all(bytes)?;
    f.commit()
}

/// Makes the entries of `dir` (a rename, a new file) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether `name` is a temporary of this module (possibly left by a killed process).
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

/// Removes the temporaries that killed writers left directly in `dir`; returns how many.
/// Call it only while no other process writes into `dir` (under the directory's lock).
pub fn sweep(dir: &Path) -> io::Result<usize> {
    let mut n = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_str().is_some_and(is_temporary) {
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
            n += 1;
        }
    }
    Ok(n)
}

/// A unique hidden name beside `path`: the process and a counter keep two writers, in
/// this process or another, from ever sharing one.
pub fn temporary(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}.{n}{TEMP_SUFFIX}", std::process::id()))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        write(&path, b"old", 0o644).unwrap();
        write(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_uncommitted_file_leaves_the_old_content_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.json");
        write(&path, b"old", 0o644).unwrap();
        {
            let mut f = AtomicFile::create(&path, 0o644).unwrap();
            f.write_all(b"half").unwrap();
        }
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn sweep_removes_only_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        write(&path, b"x", 0o644).unwrap();
        // A temporary as a killed writer leaves it: created, never committed or dropped.
        let leaked = temporary(&path);
        fs::write(&leaked, b"partial").unwrap();
        assert!(is_temporary(leaked.file_name().unwrap().to_str().unwrap()));
        assert_eq!(sweep(dir.path()).unwrap(), 1);
        assert!(!leaked.exists());
        assert!(path.exists());
    }
}
