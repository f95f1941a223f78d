//! Per-cluster secrets (those a cluster's batch system asks for,
//! [`crate::scheduler::BatchSystem::secrets`]: the munge key of a Slurm cluster), made
//! once from the operating system's random source and kept in a secrets directory, so that later
//! builds reuse them and their output stays byte-identical.
//!
//! Invariant: a secret is never derived from anything in the appliance or site files;
//! it comes from `getrandom` only. Secret files are 0600 in 0700 directories, and a
//! secret file that others can read is refused rather than used.
//!
//! Layout: `<dir>/<cluster>/<secret>` (`munge.key`), and `<dir>/<cluster>/.vocc-lock`, held while a
//! key is made (written with [`vocc_runtime::atomic`]). The command line picks `dir`, by default
//! `<appliance dir>/.vocc/secrets` (see [`default_dir`]).

use crate::model::Model;
use crate::scheduler::{self, slurm};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vocc_runtime::atomic;

pub use slurm::MUNGE_KEY_LEN;

/// The secrets directory for an appliance file: `<its dir>/.vocc/secrets`.
pub fn default_dir(appliance: &Path) -> PathBuf {
    let dir = appliance.parent().unwrap_or(Path::new(""));
    dir.join(".vocc").join("secrets")
}

/// The secrets of the clusters of one model.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// By cluster, then by secret name.
    keys: BTreeMap<String, BTreeMap<&'static str, Arc<[u8]>>>,
}

/// Why secrets could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot use the secret `{}`: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("the operating system gave no random bytes for `{}`: {message}", path.display())]
    Random { path: PathBuf, message: String },
    #[error(
        "the secret `{}` is {len} bytes, not {expected}; remove it to have a new one made",
        path.display()
    )]
    Size {
        path: PathBuf,
        len: usize,
        expected: usize,
    },
    #[error(
        "the secret `{}` can be read by others (mode {mode:o}); run `chmod 600` on it, or \
         remove it to have a new one made",
        path.display()
    )]
    Insecure { path: PathBuf, mode: u32 },
}

impl Secrets {
    /// Secrets with no keys (for models whose batch systems need none).
    pub fn none() -> Secrets {
        Secrets::default()
    }

    /// Loads the secrets every cluster of `model` needs from `dir`, making (and
    /// keeping) the ones that do not exist yet.
    pub fn load_or_create(dir: &Path, model: &Model) -> Result<Secrets, SecretsError> {
        let mut secrets = Secrets::default();
        for c in &model.clusters {
            let Some(s) = &c.scheduler else { continue };
            for secret in scheduler::of(s.kind).secrets() {
                let key = load_or_create(&dir.join(&c.name), secret.name, secret.len)?;
                secrets.set(&c.name, secret.name, key);
            }
        }
        Ok(secrets)
    }

    /// The secret `name` of cluster `cluster`.
    pub fn get(&self, cluster: &str, name: &str) -> Option<&[u8]> {
        self.keys.get(cluster)?.get(name).map(|k| &k[..])
    }

    /// Sets the secret `name` of a cluster (for tests and callers that keep secrets
    /// elsewhere).
    pub fn set(&mut self, cluster: &str, name: &'static str, key: Vec<u8>) {
        self.keys
            .entry(cluster.to_owned())
            .or_default()
            .insert(name, key.into());
    }

    /// The munge key of cluster `cluster`.
    pub fn munge_key(&self, cluster: &str) -> Option<&[u8]> {
        self.get(cluster, slurm::MUNGE_KEY.name)
    }

    /// Sets the munge key of a cluster.
    pub fn set_munge_key(&mut self, cluster: &str, key: Vec<u8>) {
        self.set(cluster, slurm::MUNGE_KEY.name, key);
    }
}

/// The `len`-byte secret `dir/name`, made if missing.
fn load_or_create(dir: &Path, name: &str, len: usize) -> Result<Vec<u8>, SecretsError> {
    let path = dir.join(name);
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SecretsError::Io { path, source }
    };
    match read(&path, len) {
        Err(SecretsError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))?;

    // One maker at a time per directory: a build that waited finds the key the
    // first one made, so racing builds all use the same key.
    let _lock = lock(dir).map_err(io_err(dir))?;
    sweep(dir).map_err(io_err(dir))?;
    match read(&path, len) {
        Err(SecretsError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    let mut key = vec![0u8; len];
    getrandom::fill(&mut key).map_err(|e| SecretsError::Random {
        path: path.clone(),
        message: e.to_string(),
    })?;
    // A killed build never leaves a short key.
    atomic::write(&path, &key, 0o600).map_err(io_err(&path))?;
    Ok(key)
}

/// Holds the lock of the secrets directory `dir` until dropped (or the process dies).
fn lock(dir: &Path) -> io::Result<fs::File> {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join(".vocc-lock"))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// Removes the temporaries of makers that were killed: this version's, and the
/// `.<name>.<pid>.tmp` of earlier ones.
fn sweep(dir: &Path) -> io::Result<()> {
    atomic::sweep(dir)?;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        let pid = name
            .strip_suffix(".tmp")
            .and_then(|r| r.rsplit_once('.'))
            .map(|(_, pid)| pid);
        if name.starts_with('.')
            && pid.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

fn read(path: &Path, len: usize) -> Result<Vec<u8>, SecretsError> {
    let io_err = |source| SecretsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::metadata(path).map_err(io_err)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretsError::Insecure {
            path: path.to_path_buf(),
            mode,
        });
    }
    let key = fs::read(path).map_err(io_err)?;
    if key.len() != len {
        return Err(SecretsError::Size {
            path: path.to_path_buf(),
            len: key.len(),
            expected: len,
        });
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_killed_maker_leaves_no_temporary_and_racing_makers_share_one_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c");
        fs::create_dir(&dir).unwrap();
        // What killed makers left: a short key under this version's and an earlier
        // version's temporary names.
        let leaked = atomic::temporary(&dir.join("munge.key"));
        fs::write(&leaked, b"short").unwrap();
        fs::write(dir.join(".munge.key.4242.tmp"), b"short").unwrap();

        let keys: Vec<Vec<u8>> = std::thread::scope(|s| {
            let makers: Vec<_> = (0..4)
                .map(|_| s.spawn(|| load_or_create(&dir, "munge.key", 64).unwrap()))
                .collect();
            makers.into_iter().map(|m| m.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0] && k.len() == 64));
        assert_eq!(fs::read(dir.join("munge.key")).unwrap(), keys[0]);
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != ".vocc-lock")
            .collect();
        assert_eq!(names, ["munge.key"]);
        let mode = fs::metadata(dir.join("munge.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
