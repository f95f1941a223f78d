//! Where the runtime keeps its state: a directory beside the plan (`OUT/.vocc-run/`
//! unless `--state DIR` says otherwise), with one subdirectory per cluster:
//!
//! ```text
//! STATE/<cluster>/journal.json        the journal (replaced with `atomic::write`)
//! STATE/<cluster>/lock                held (flock) by the vocc that changes the cluster
//! STATE/<cluster>/nodes/<id>/         per node: console.log, qemu.pid, qemu.log, and the
//!                                     QMP and agent sockets when their paths are short
//! /tmp/vocc-<uid>/<hash>/<id>/        the sockets when STATE is too deep for a unix
//!                                     socket path (108 bytes); <hash> is of STATE
//! ```
//!
//! The host's store (the plan's `store`; relative to the plan's directory when not
//! absolute) holds staged layers and each node's own disks:
//! `STORE/layers/<cluster>/<layer>.img` (+ `.vmlinuz`, `.initrd`) and
//! `STORE/nodes/<id>/` (root overlay, writable data overlays, swap, config drive).
//!
//! Invariant: every path of a cluster's runtime state derives from the state directory,
//! the cluster and node names alone, so `down` finds everything even without a journal.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// The paths of one plan's runtime state.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The plan's directory (OUT): node files are relative to it.
    pub out: PathBuf,
    /// The state directory.
    pub state: PathBuf,
    /// The host store, absolute.
    pub store: PathBuf,
}

/// The longest socket path we hand to qemu (`sun_path` holds 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 100;

impl Layout {
    /// The layout of a plan in `out` whose store is `store`, with the state in `state`
    /// (default `out/.vocc-run`). Paths are made absolute, since qemu and the guests'
    /// backing files are resolved from other working directories.
    pub fn new(out: &Path, store: &str, state: Option<&Path>) -> Layout {
        let out = absolute(out);
        let state = state.map(absolute).unwrap_or_else(|| out.join(".vocc-run"));
        let store = if Path::new(store).is_absolute() {
            PathBuf::from(store)
        } else {
            out.join(store)
        };
        Layout { out, state, store }
    }

    pub fn cluster(&self, cluster: &str) -> PathBuf {
        self.state.join(cluster)
    }

    pub fn journal(&self, cluster: &str) -> PathBuf {
        self.cluster(cluster).join("journal.json")
    }

    pub fn node_run(&self, cluster: &str, node: &str) -> PathBuf {
        self.cluster(cluster).join("nodes").join(node)
    }

    /// Where a node's unix sockets live: its run directory when the paths fit, else a
    /// short directory under /tmp named by a hash of the state directory.
    pub fn node_sockets(&self, cluster: &str, node: &str) -> PathBuf {
        let run = self.node_run(cluster, node);
        if run.join("agent.sock").as_os_str().len() <= MAX_SOCKET_PATH {
            return run;
        }
        self.short_socket_root(cluster).join(node)
    }

    /// The short socket directory of a cluster (used only when the state is deep).
    pub fn short_socket_root(&self, cluster: &str) -> PathBuf {
        let digest = Sha256::digest(self.cluster(cluster).as_os_str().as_encoded_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        user_dir().join(hex)
    }

    /// The node's own disks on the host.
    pub fn node_store(&self, dir: &str) -> PathBuf {
        self.store.join(dir.trim_matches('/'))
    }
}

/// This user's folder for what must live outside a state directory (short socket
/// paths, host-wide port claims, shared SSH connections): `/tmp/vocc-<uid>`.
pub fn user_dir() -> PathBuf {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("vocc-{uid}"))
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

/// An exclusive lock on a cluster, held until dropped. The kernel releases it when
/// the process dies, so a killed `vocc up` never leaves the cluster locked.
#[derive(Debug)]
pub struct ClusterLock {
    _file: File,
}

impl ClusterLock {
    pub fn acquire(layout: &Layout, cluster: &str) -> Result<ClusterLock> {
        let dir = layout.cluster(cluster);
        fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
        let path = dir.join("lock");
        let file = File::create(&path).map_err(|e| Error::io("create", &path, e))?;
        // SAFETY: flock on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(Error::Busy {
                cluster: cluster.to_owned(),
                lock: path,
            });
        }
        Ok(ClusterLock { _file: file })
    }
}

/// Milliseconds since the Unix epoch (for the journal's timestamps).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
