//! The generations of an output directory and the one rename that switches between
//! them, so that a build killed at any moment leaves OUT wholly the old tree or
//! wholly the new one.
//!
//! ```text
//! OUT/.vocc-lock              held (flock) by the build writing into OUT
//! OUT/.vocc-tree              symbolic link to the current generation: the switch
//! OUT/.vocc-tree.<n>/         a generation: plan.json, manifest.json, nodes/, objects/, …
//! OUT/plan.json               -> .vocc-tree/plan.json, and so for every top-level name
//! OUT/nodes                   -> .vocc-tree/nodes
//! OUT/.vocc-run/              the runtime's state: never touched by a build
//! ```
//!
//! A build writes its whole tree into a new generation that nothing names yet, gives
//! each of its top-level names an entry link in OUT (these links never change: each
//! goes through `.vocc-tree`), then replaces `.vocc-tree` with a link to the new
//! generation by one rename. Every path a reader opens, `OUT/plan.json` or
//! `OUT/nodes/<node>/cmdline`, resolves through that link, so it reads the old tree
//! before the rename and the new one after it. An entry link whose name the current
//! generation lacks dangles: that file is absent from the tree.
//!
//! Every build starts, under the lock, by removing what killed builds left: the
//! temporaries of [`vocc_runtime::atomic`], generations other than the current one,
//! dangling entry links and the temporaries of earlier versions of vocc. A tree that
//! an earlier version wrote (real files where the entry links go) is turned into
//! links once, name by name, after the first switch.
//!
//! The switch is synced; the files of a generation are not (thousands of fsyncs would
//! cost more than the whole build): the atomicity is against a killed process, and a
//! power cut can leave a current generation with files the disk never got.

use rayon::prelude::*;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use vocc_runtime::atomic;

/// The link to the current generation.
pub(super) const LINK: &str = ".vocc-tree";
/// The lock file.
pub(super) const LOCK: &str = ".vocc-lock";
/// What an earlier vocc wrote at the top of OUT as real files and directories.
const LEGACY: [&str; 6] = [
    "nodes",
    "objects",
    "layers",
    "plan.json",
    "manifest.json",
    "model.json",
];

/// An output directory that this build holds: locked, and cleared of what killed
/// builds left.
pub(super) struct Out {
    path: PathBuf,
    /// The name of the current generation, if there is one.
    current: Option<String>,
    _lock: File,
}

impl Out {
    /// Makes `path` if needed, waits for any other build into it to finish, and
    /// sweeps it.
    pub fn open(path: &Path) -> io::Result<Out> {
        fs::create_dir_all(path)?;
        let lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.join(LOCK))?;
        // SAFETY: flock on a descriptor we own; the kernel drops the lock when the
        // process dies, so a killed build never leaves OUT locked.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let current = fs::read_link(path.join(LINK))
            .ok()
            .and_then(|t| t.to_str().map(str::to_owned))
            .filter(|t| generation_number(t).is_some() && path.join(t).is_dir());
        let out = Out {
            path: path.to_path_buf(),
            current,
            _lock: lock,
        };
        out.sweep()?;
        Ok(out)
    }

    /// Makes the directory of the next generation, empty.
    pub fn new_generation(&self) -> io::Result<Generation> {
        let n = self
            .current
            .as_deref()
            .and_then(generation_number)
            .map_or(1, |n| n + 1);
        let name = format!("{LINK}.{n}");
        let path = self.path.join(&name);
        fs::create_dir(&path)?;
        Ok(Generation {
            path,
            name,
            live: false,
        })
    }

    /// Makes `generation` the tree of OUT, and removes the one it replaces.
    pub fn switch(&self, mut generation: Generation) -> io::Result<()> {
        let mut names = Vec::new();
        for e in fs::read_dir(&generation.path)? {
            let name = e?.file_name();
            match name.to_str() {
                Some(n) if !n.starts_with('.') => names.push(n.to_owned()),
                _ => {}
            }
        }
        // Entry links for the names that have none yet: they dangle until the switch.
        let mut legacy = Vec::new();
        for name in &names {
            let entry = self.path.join(name);
            match fs::symlink_metadata(&entry) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    symlink(link_target(name), &entry)?
                }
                Err(e) => return Err(e),
                Ok(_) if is_entry_link(&entry, name) => {}
                Ok(_) => legacy.push(name),
            }
        }

        // The switch.
        let link = self.path.join(LINK);
        let tmp = atomic::temporary(&link);
        symlink(&generation.name, &tmp)?;
        if let Err(e) = fs::rename(&tmp, &link) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        generation.live = true;
        atomic::sync_dir(&self.path)?;

        // A tree of an earlier vocc: its files become entry links, one by one.
        let mut trash = Vec::new();
        for name in legacy {
            let entry = self.path.join(name);
            let tmp = atomic::temporary(&entry);
            symlink(link_target(name), &tmp)?;
            if fs::symlink_metadata(&entry)?.is_dir() {
                let away = atomic::temporary(&entry);
                fs::rename(&entry, &away)?;
                trash.push(away);
            }
            fs::rename(&tmp, &entry)?;
        }
        // Names the new tree does not have.
        for e in fs::read_dir(&self.path)? {
            let e = e?;
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if names.contains(&name) {
                continue;
            }
            if is_entry_link(&e.path(), &name) {
                remove_file(&e.path())?;
            } else if LEGACY.contains(&name.as_str()) && !e.file_type()?.is_symlink() {
                let away = atomic::temporary(&e.path());
                fs::rename(e.path(), &away)?;
                trash.push(away);
            }
        }
        if let Some(old) = &self.current {
            trash.push(self.path.join(old));
        }
        trash.iter().try_for_each(|t| remove_tree(t))
    }

    /// Removes what killed builds left in OUT.
    fn sweep(&self) -> io::Result<()> {
        atomic::sweep(&self.path)?;
        let mut doomed = Vec::new();
        for e in fs::read_dir(&self.path)? {
            let e = e?;
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if generation_number(&name).is_some() {
                if self.current.as_deref() != Some(name.as_str()) {
                    doomed.push(e.path());
                }
            } else if is_legacy_temporary(&name) {
                doomed.push(e.path());
            } else if is_entry_link(&e.path(), &name) && !e.path().exists() {
                remove_file(&e.path())?;
            }
        }
        doomed.iter().try_for_each(|d| remove_tree(d))
    }
}

/// A generation being written: removed when dropped unless it became current.
pub(super) struct Generation {
    path: PathBuf,
    name: String,
    live: bool,
}

impl Generation {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        if !self.live {
            let _ = remove_tree(&self.path);
        }
    }
}

/// What the entry link `name` points to.
fn link_target(name: &str) -> PathBuf {
    Path::new(LINK).join(name)
}

/// Whether `path` is the entry link of `name`.
fn is_entry_link(path: &Path, name: &str) -> bool {
    fs::read_link(path).is_ok_and(|t| t == link_target(name))
}

/// The `<n>` of a generation's name `.vocc-tree.<n>`.
fn generation_number(name: &str) -> Option<u64> {
    let n = name.strip_prefix(LINK)?.strip_prefix('.')?;
    n.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| n.parse().ok())?
}

/// Whether `name` is a temporary that an earlier version of vocc left at the top of
/// OUT: `.plan.json.<pid>.tmp`, or its node directories being built or replaced.
fn is_legacy_temporary(name: &str) -> bool {
    if name == ".nodes.new" || name == ".nodes.old" {
        return true;
    }
    let Some(rest) = name.strip_suffix(".tmp") else {
        return false;
    };
    let pid = rest.rsplit('.').next().unwrap_or_default();
    name.starts_with('.') && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
}

fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes a directory tree (or a file), its node directories in parallel.
pub(super) fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    if !meta.is_dir() {
        return remove_file(path);
    }
    // The wide levels of a tree are its top and its `nodes/`.
    let mut children = Vec::new();
    for e in fs::read_dir(path)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            for c in fs::read_dir(e.path())? {
                children.push(c?.path());
            }
        }
    }
    children
        .par_iter()
        .try_for_each(|c| match fs::symlink_metadata(c) {
            Ok(m) if m.is_dir() => ignore_missing(fs::remove_dir_all(c)),
            Ok(_) => remove_file(c),
            Err(_) => Ok(()),
        })?;
    ignore_missing(fs::remove_dir_all(path))
}

fn ignore_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(generation_number(".vocc-tree.12"), Some(12));
        for not in [
            ".vocc-tree",
            ".vocc-tree.",
            ".vocc-tree.1x",
            ".vocc-tree.-1",
        ] {
            assert_eq!(generation_number(not), None, "{not}");
        }
        for leftover in [".plan.json.4242.tmp", ".nodes.new", ".nodes.old"] {
            assert!(is_legacy_temporary(leftover), "{leftover}");
        }
        for kept in [".vocc-run", "plan.json", ".plan.json.tmp", "x.1.tmp"] {
            assert!(!is_legacy_temporary(kept), "{kept}");
        }
    }
}
