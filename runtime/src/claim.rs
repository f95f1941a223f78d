//! Which deployment owns a cluster name in a host store. Two output trees (two builds
//! of one appliance, or two VOs that both name a cluster `demo`) would share
//! `STORE/nodes/<id>/` and `STORE/layers/<cluster>/`, and, under libvirt or Xen, the
//! domain names: the second `up` would fight the first for its disks, and the second
//! `down` would remove them. So the first `up` of a cluster claims its name in the store
//! (`STORE/deployments/<cluster>.json`: the state directory and the plan), and an `up`
//! or `down` from another state directory is refused, before it touches anything,
//! while that deployment is up (its journal exists). `down` gives the claim back.
//!
//! Invariant: a store's `nodes/<id>` and `layers/<cluster>` are changed only by the
//! deployment that holds the cluster's claim.

use crate::atomic;
use crate::error::{Error, Result};
use crate::state::Layout;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The owner of a cluster name in a store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// The owner's state directory (absolute): its identity.
    pub state: PathBuf,
    /// The owner's plan, for messages.
    pub plan: PathBuf,
}

fn dir(layout: &Layout) -> PathBuf {
    layout.store.join("deployments")
}

fn path(layout: &Layout, cluster: &str) -> PathBuf {
    dir(layout).join(format!("{cluster}.json"))
}

/// Holds `STORE/deployments/.lock` while claims are read and written, so that two
/// `up`s at once cannot both find the name free.
struct StoreLock {
    _file: File,
}

impl StoreLock {
    fn acquire(layout: &Layout) -> Result<StoreLock> {
        let dir = dir(layout);
        fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
        let lock = dir.join(".lock");
        let file = File::create(&lock).map_err(|e| Error::io("create", &lock, e))?;
        // SAFETY: flock on a descriptor we own; held only for a read and a write.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        Ok(StoreLock { _file: file })
    }
}

fn read(path: &Path) -> Option<Claim> {
    serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
}

/// The live claim of another deployment on `cluster`, if there is one: a claim whose
/// state directory is not `layout`'s and still holds the cluster's journal.
fn other(layout: &Layout, cluster: &str) -> Option<Claim> {
    let claim = read(&path(layout, cluster))?;
    let live = claim.state.join(cluster).join("journal.json").exists();
    (!same_dir(&claim.state, &layout.state) && live).then_some(claim)
}

/// Whether two paths name one directory (`out/.vocc-run` and `./out/../out/.vocc-run`).
fn same_dir(a: &Path, b: &Path) -> bool {
    let canonical = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    a == b || canonical(a) == canonical(b)
}

fn refused(layout: &Layout, cluster: &str, claim: &Claim, doing: &str) -> Error {
    Error::Claimed {
        cluster: cluster.to_owned(),
        store: layout.store.clone(),
        plan: claim.plan.clone(),
        state: claim.state.clone(),
        doing: doing.to_owned(),
    }
}

/// Claims `cluster` in the store for this deployment (`up`), or says which deployment
/// holds it.
pub fn acquire(layout: &Layout, cluster: &str, plan: &Path) -> Result<()> {
    let _lock = StoreLock::acquire(layout)?;
    if let Some(claim) = other(layout, cluster) {
        return Err(refused(layout, cluster, &claim, "bring up"));
    }
    let plan = if plan.is_absolute() {
        plan.to_path_buf()
    } else {
        std::env::current_dir().map_or_else(|_| plan.to_path_buf(), |d| d.join(plan))
    };
    let mine = Claim {
        state: layout.state.clone(),
        plan,
    };
    let path = path(layout, cluster);
    if read(&path).as_ref() != Some(&mine) {
        let text = serde_json::to_vec_pretty(&mine).map_err(|e| Error::Other(e.to_string()))?;
        atomic::write(&path, &text, 0o644).map_err(|e| Error::io("write", &path, e))?;
    }
    Ok(())
}

/// Checks that `down` may reclaim `cluster` from the store: no other live deployment
/// holds it.
pub fn check(layout: &Layout, cluster: &str) -> Result<()> {
    if !dir(layout).exists() {
        return Ok(());
    }
    let _lock = StoreLock::acquire(layout)?;
    match other(layout, cluster) {
        Some(claim) => Err(refused(layout, cluster, &claim, "take down")),
        None => Ok(()),
    }
}

/// Gives the claim back (`down`), unless another deployment holds it; removes the
/// claims directory once it is empty.
pub fn release(layout: &Layout, cluster: &str) {
    let dir = dir(layout);
    if !dir.exists() {
        return;
    }
    if let Ok(_lock) = StoreLock::acquire(layout) {
        let path = path(layout, cluster);
        if read(&path).is_none_or(|c| same_dir(&c.state, &layout.state)) {
            let _ = fs::remove_file(&path);
        }
        let others = fs::read_dir(&dir).map_or(1, |d| {
            d.flatten().filter(|e| e.file_name() != ".lock").count()
        });
        if others == 0 {
            let _ = fs::remove_file(dir.join(".lock"));
            let _ = fs::remove_dir(&dir);
        }
    }
}
