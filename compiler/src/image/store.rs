//! The content-addressed store of built artifacts: layers, kernels, initramfs images,
//! overlays, swap disks and config drives, each named by the sha256 of its bytes, with
//! an index from recipe keys to what they produced, the caches that builds reuse, and
//! the record of which output trees use which artifacts (for `vocc gc`).
//!
//! ```text
//! STORE/objects/<sha256>        an artifact: read-only (0444; 0400 for config drives)
//! STORE/index/<key>.json        recipe key → the canonical recipe and its outputs
//! STORE/cache/kernel/<pkg>_<v>/ an extracted kernel package (vmlinuz, modules)
//! STORE/cache/hash/<id>.json    sha256 of host files, by path, device, inode, size, mtime
//! STORE/roots/<id>.json         an output tree (OUT) that uses this store
//! STORE/tmp/<pid>.<n>/          work directories of running builds
//! STORE/lock                    builds hold it shared, `vocc gc` exclusively
//! ```
//!
//! Invariants: a name under `objects/` always holds exactly the bytes its name says:
//! artifacts are built under `tmp/`, hashed, synced and renamed into place. An index
//! entry is written only after its objects, so an entry whose objects all exist is a
//! good cache hit; an entry with a missing object is a miss. Nothing under `tmp/` is
//! ever taken for a result. `vocc gc` never removes an object a registered output tree
//! still links to, whatever that tree's manifest says.

use super::ImageError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// One output of a recipe: an object of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    pub sha256: String,
    pub size: u64,
}

/// An index entry: what a recipe produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub key: String,
    /// The canonical recipe (for `why was this rebuilt`).
    pub recipe: serde_json::Value,
    /// Named outputs: `image`, `kernel`, `initrd`, `drive`, ...
    pub outputs: BTreeMap<String, Output>,
    /// Caches the build used (`kernel/<pkg>_<version>`); `vocc gc` keeps them while
    /// the entry lives.
    #[serde(default)]
    pub caches: Vec<String>,
}

/// An open store. Holding it holds the store's lock (shared, or exclusive for gc).
pub struct Store {
    root: PathBuf,
    _lock: File,
}

/// Where the store is when `--store` does not say: `$XDG_DATA_HOME/vocc/store`, else
/// `~/.local/share/vocc/store`, else `.vocc/images` in the current directory.
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("vocc/store");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(h).join(".local/share/vocc/store");
    }
    PathBuf::from(".vocc/images")
}

static TMP_COUNTER: AtomicU32 = AtomicU32::new(0);

impl Store {
    /// Opens (creating) the store at `dir` for a build: shared lock.
    pub fn open(dir: &Path) -> Result<Store, ImageError> {
        Store::open_with(dir, libc::LOCK_SH)
    }

    /// Opens the store for garbage collection: exclusive lock.
    pub fn open_exclusive(dir: &Path) -> Result<Store, ImageError> {
        Store::open_with(dir, libc::LOCK_EX)
    }

    fn open_with(dir: &Path, how: libc::c_int) -> Result<Store, ImageError> {
        let io =
            |e: io::Error| ImageError::io(format!("cannot open the store `{}`", dir.display()), e);
        for sub in [
            "objects",
            "index",
            "cache/kernel",
            "cache/hash",
            "roots",
            "tmp",
        ] {
            fs::create_dir_all(dir.join(sub)).map_err(io)?;
        }
        let root = fs::canonicalize(dir).map_err(io)?;
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .open(root.join("lock"))
            .map_err(io)?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor we own; it has no memory effects.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), how) };
        if rc != 0 {
            return Err(io(io::Error::last_os_error()));
        }
        Ok(Store { root, _lock: lock })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn object(&self, sha256: &str) -> PathBuf {
        self.root.join("objects").join(sha256)
    }

    pub fn kernel_cache(&self) -> PathBuf {
        self.root.join("cache/kernel")
    }

    /// A fresh work directory under `tmp/`, removed when dropped.
    pub fn work_dir(&self) -> Result<WorkDir, ImageError> {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self
            .root
            .join("tmp")
            .join(format!("{}.{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .map_err(|e| ImageError::io(format!("cannot create `{}`", path.display()), e))?;
        Ok(WorkDir { path })
    }

    /// The entry of `key` if it exists and all its objects are there.
    pub fn lookup(&self, key: &str) -> Option<Entry> {
        let text = fs::read(self.root.join("index").join(format!("{key}.json"))).ok()?;
        let entry: Entry = serde_json::from_slice(&text).ok()?;
        let complete = entry.key == key
            && entry.outputs.values().all(|o| {
                fs::symlink_metadata(self.object(&o.sha256))
                    .map(|m| m.len() == o.size)
                    .unwrap_or(false)
            });
        complete.then_some(entry)
    }

    /// The entry of `key`, even if some of its objects are gone (to explain rebuilds).
    pub fn entry(&self, key: &str) -> Option<Entry> {
        let text = fs::read(self.root.join("index").join(format!("{key}.json"))).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Moves the finished file `tmp` into the store under its sha256, read-only with
    /// `mode`, synced; returns its name and size. An object that is already there
    /// is kept (it has the same bytes).
    pub fn insert(&self, tmp: &Path, mode: u32) -> Result<Output, ImageError> {
        let io = |e: io::Error| ImageError::io(format!("cannot store `{}`", tmp.display()), e);
        let sha256 = hash_file(tmp).map_err(io)?;
        let size = fs::metadata(tmp).map_err(io)?.len();
        let f = File::open(tmp).map_err(io)?;
        f.sync_all().map_err(io)?;
        fs::set_permissions(tmp, fs::Permissions::from_mode(mode)).map_err(io)?;
        let dest = self.object(&sha256);
        if dest.exists() {
            let _ = fs::remove_file(tmp);
        } else {
            fs::rename(tmp, &dest).map_err(io)?;
            vocc_runtime::atomic::sync_dir(&self.root.join("objects")).map_err(io)?;
        }
        Ok(Output { sha256, size })
    }

    /// Writes the index entry of a finished build (after its objects).
    pub fn record(&self, entry: &Entry) -> Result<(), ImageError> {
        let bytes = serde_json::to_vec_pretty(entry).map_err(io::Error::other);
        let path = self.root.join("index").join(format!("{}.json", entry.key));
        bytes
            .and_then(|b| vocc_runtime::atomic::write(&path, &b, 0o644))
            .map_err(|e| ImageError::io(format!("cannot write `{}`", path.display()), e))
    }

    /// The sha256 of a host file, remembered by path, device, inode, size and mtime so
    /// that a large pinned image or the busybox binary is read once, not on every build.
    pub fn hash_host_file(&self, path: &Path) -> Result<String, ImageError> {
        memo_hash(Some(&self.root.join("cache/hash")), path)
            .map_err(|e| ImageError::io(format!("cannot read `{}`", path.display()), e))
    }

    /// Records that the output tree `out` uses this store (its manifest lists what).
    pub fn register_root(&self, out: &Path) -> Result<(), ImageError> {
        #[derive(Serialize)]
        struct Root<'a> {
            out: &'a Path,
        }
        let abs = fs::canonicalize(out)
            .map_err(|e| ImageError::io(format!("cannot resolve `{}`", out.display()), e))?;
        let id = sha256_hex(abs.as_os_str().as_encoded_bytes());
        let path = self.root.join("roots").join(format!("{id}.json"));
        let bytes = serde_json::to_vec(&Root { out: &abs }).map_err(io::Error::other);
        bytes
            .and_then(|b| vocc_runtime::atomic::write(&path, &b, 0o644))
            .map_err(|e| ImageError::io(format!("cannot write `{}`", path.display()), e))
    }
}

/// The sha256 of a regular file, remembered in `memo_dir` (when given) by its
/// resolved path, device, inode, size and modification time. The file is opened as
/// [`crate::sources::open_regular`] does, so a FIFO or a device is refused, and the
/// identity compared is that of the file read.
pub fn memo_hash(memo_dir: Option<&Path>, path: &Path) -> io::Result<String> {
    #[derive(Serialize, Deserialize, PartialEq)]
    struct Memo {
        path: PathBuf,
        #[serde(default)]
        dev: u64,
        size: u64,
        mtime: i64,
        mtime_nsec: i64,
        ino: u64,
        sha256: String,
    }
    let abs = fs::canonicalize(path)?;
    let file = crate::sources::open_regular(&abs)?;
    let meta = file.metadata()?;
    let mut memo = Memo {
        path: abs.clone(),
        dev: meta.dev(),
        size: meta.len(),
        mtime: meta.mtime(),
        mtime_nsec: meta.mtime_nsec(),
        ino: meta.ino(),
        sha256: String::new(),
    };
    let id = sha256_hex(abs.as_os_str().as_encoded_bytes());
    let memo_path = memo_dir.map(|d| d.join(format!("{id}.json")));
    if let Some(old) = memo_path
        .as_ref()
        .and_then(|p| fs::read(p).ok())
        .and_then(|b| serde_json::from_slice::<Memo>(&b).ok())
    {
        let same = Memo {
            sha256: String::new(),
            ..old
        } == memo;
        if same {
            return Ok(old.sha256);
        }
    }
    memo.sha256 = hash_reader(file)?;
    if let (Some(p), Ok(b)) = (memo_path, serde_json::to_vec(&memo)) {
        // Only a cache: a store that cannot be written is read again next time.
        let _ = vocc_runtime::atomic::write(&p, &b, 0o644);
    }
    Ok(memo.sha256)
}

/// A work directory that removes itself.
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = make_writable_and_remove(&self.path);
    }
}

/// Removes a tree even where directories were left read-only.
fn make_writable_and_remove(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            for entry in walkdir::WalkDir::new(path).into_iter().flatten() {
                if entry.file_type().is_dir() {
                    let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(0o755));
                }
            }
            fs::remove_dir_all(path)
        }
    }
}

/// What `vocc gc` did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct GcReport {
    pub roots_kept: usize,
    pub roots_removed: usize,
    pub objects_kept: usize,
    pub objects_removed: usize,
    pub bytes_freed: u64,
    pub entries_removed: usize,
    pub caches_removed: usize,
}

/// Removes every object no registered output tree uses, the index entries that named
/// them, caches no remaining entry uses, and leftovers of killed builds. An output
/// tree counts while its directory exists. What it uses is what its manifest's
/// `images` list **and** what its `layers/` and `nodes/` actually link to (symbolic
/// links into `objects/`, hard links sharing an object's inode): a manifest edited by
/// hand, or lost, never makes gc delete an object a tree still uses.
pub fn gc(dir: &Path) -> Result<GcReport, ImageError> {
    let store = Store::open_exclusive(dir)?;
    let root = store.root().to_path_buf();
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |e: io::Error| ImageError::io(format!("cannot clean `{what}`"), e)
    };
    let mut report = GcReport::default();

    // What the live output trees use.
    let mut live: BTreeSet<String> = BTreeSet::new();
    let mut linked: BTreeSet<(u64, u64)> = BTreeSet::new();
    let objects = root.join("objects");
    let roots_dir = root.join("roots");
    for e in fs::read_dir(&roots_dir).map_err(io(&roots_dir))?.flatten() {
        #[derive(Deserialize)]
        struct Root {
            out: PathBuf,
        }
        let out = fs::read(e.path())
            .ok()
            .and_then(|b| serde_json::from_slice::<Root>(&b).ok())
            .map(|r| r.out)
            .filter(|out| out.is_dir());
        let Some(out) = out else {
            report.roots_removed += 1;
            fs::remove_file(e.path()).map_err(io(&e.path()))?;
            continue;
        };
        report.roots_kept += 1;
        if let Some(m) = fs::read(out.join("manifest.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        {
            live.extend(
                m.get("images")
                    .and_then(|i| i.as_array())
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i.get("sha256")?.as_str().map(str::to_owned)),
            );
        }
        tree_links(&out, &objects, &mut live, &mut linked);
    }
    // Objects a tree holds hard links to, found by inode.
    if !linked.is_empty() {
        for e in fs::read_dir(&objects).map_err(io(&objects))?.flatten() {
            if let Ok(m) = e.metadata() {
                if linked.contains(&(m.dev(), m.ino())) {
                    live.insert(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }

    // Index entries whose objects are not all live go.
    let mut caches: BTreeSet<String> = BTreeSet::new();
    let index = root.join("index");
    for e in fs::read_dir(&index).map_err(io(&index))?.flatten() {
        let entry = fs::read(e.path())
            .ok()
            .and_then(|b| serde_json::from_slice::<Entry>(&b).ok());
        match entry {
            Some(entry) if entry.outputs.values().all(|o| live.contains(&o.sha256)) => {
                caches.extend(entry.caches);
            }
            _ => {
                report.entries_removed += 1;
                fs::remove_file(e.path()).map_err(io(&e.path()))?;
            }
        }
    }

    for e in fs::read_dir(&objects).map_err(io(&objects))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if live.contains(&name) {
            report.objects_kept += 1;
        } else {
            report.bytes_freed += e.metadata().map(|m| m.blocks() * 512).unwrap_or(0);
            report.objects_removed += 1;
            fs::remove_file(e.path()).map_err(io(&e.path()))?;
        }
    }

    let kernels = store.kernel_cache();
    for e in fs::read_dir(&kernels).map_err(io(&kernels))?.flatten() {
        if !e.path().is_dir() {
            continue;
        }
        let name = format!("kernel/{}", e.file_name().to_string_lossy());
        if !caches.contains(&name) {
            report.caches_removed += 1;
            make_writable_and_remove(&e.path()).map_err(io(&e.path()))?;
        }
    }
    let tmp = root.join("tmp");
    for e in fs::read_dir(&tmp).map_err(io(&tmp))?.flatten() {
        make_writable_and_remove(&e.path()).map_err(io(&e.path()))?;
    }
    let hashes = root.join("cache/hash");
    for e in fs::read_dir(&hashes).map_err(io(&hashes))?.flatten() {
        fs::remove_file(e.path()).map_err(io(&e.path()))?;
    }
    Ok(report)
}

/// What the output tree `out` links to in `objects`: symbolic links (layers, kernels)
/// by the object's name, hard links (node files) by device and inode. Only the two
/// levels vocc writes are looked at: `layers/<cluster>/*` and `nodes/<node>/*`.
fn tree_links(
    out: &Path,
    objects: &Path,
    names: &mut BTreeSet<String>,
    inodes: &mut BTreeSet<(u64, u64)>,
) {
    for top in ["layers", "nodes"] {
        let Ok(groups) = fs::read_dir(out.join(top)) else {
            continue;
        };
        for group in groups.flatten() {
            let Ok(files) = fs::read_dir(group.path()) else {
                continue;
            };
            for f in files.flatten() {
                let Ok(meta) = fs::symlink_metadata(f.path()) else {
                    continue;
                };
                if meta.file_type().is_symlink() {
                    if let Ok(target) = fs::read_link(f.path()) {
                        let target = group.path().join(target);
                        if target.parent() == Some(objects) {
                            if let Some(n) = target.file_name() {
                                names.insert(n.to_string_lossy().into_owned());
                            }
                        }
                    }
                } else if meta.is_file() && meta.nlink() > 1 {
                    inodes.insert((meta.dev(), meta.ino()));
                }
            }
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::render::hex(&Sha256::digest(bytes).into())
}

/// The sha256 of a file's bytes.
pub fn hash_file(path: &Path) -> io::Result<String> {
    hash_reader(File::open(path)?)
}

/// The sha256 of what `f` reads.
pub(crate) fn hash_reader(mut f: impl Read) -> io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(crate::render::hex(&h.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_file_hashes_are_remembered_by_identity() {
        let dir = tempfile::tempdir().unwrap();
        let memo = dir.path().join("memo");
        fs::create_dir_all(&memo).unwrap();
        let f = dir.path().join("image");
        fs::write(&f, b"abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(memo_hash(Some(&memo), &f).unwrap(), abc);
        // The memo is what answers while the file's identity is unchanged ...
        let entry = fs::read_dir(&memo).unwrap().next().unwrap().unwrap().path();
        let text = fs::read_to_string(&entry)
            .unwrap()
            .replace(abc, "remembered");
        fs::write(&entry, text).unwrap();
        assert_eq!(memo_hash(Some(&memo), &f).unwrap(), "remembered");
        // ... and a new content (another inode, size or time) is read again.
        let tmp = dir.path().join("new");
        fs::write(&tmp, b"abcd").unwrap();
        fs::rename(&tmp, &f).unwrap();
        assert_ne!(memo_hash(Some(&memo), &f).unwrap(), "remembered");
    }

    #[test]
    fn insert_names_objects_by_content_and_lookup_needs_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let work = store.work_dir().unwrap();
        let f = work.path().join("a");
        fs::write(&f, b"abc").unwrap();
        let out = store.insert(&f, 0o444).unwrap();
        assert_eq!(
            out.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mode = fs::metadata(store.object(&out.sha256))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o444);
        let entry = Entry {
            key: "k".into(),
            recipe: serde_json::json!({"a": 1}),
            outputs: [("image".to_owned(), out.clone())].into(),
            caches: vec![],
        };
        store.record(&entry).unwrap();
        assert_eq!(store.lookup("k"), Some(entry));
        fs::remove_file(store.object(&out.sha256)).unwrap();
        assert_eq!(store.lookup("k"), None);
        assert!(store.entry("k").is_some());
    }
}
