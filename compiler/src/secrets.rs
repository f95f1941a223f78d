//! Per-cluster secrets (today: the munge key of a Slurm cluster), made once from the
//! operating system's random source and kept in a secrets directory, so that later
//! builds reuse them and their output stays byte-identical.
//!
//! Invariant: a secret is never derived from anything in the appliance or site files;
//! it comes from `getrandom` only. Secret files are 0600 in 0700 directories, and a
//! secret file that others can read is refused rather than used.
//!
//! Layout: `<dir>/<cluster>/munge.key`. The command line picks `dir`, by default
//! `<appliance dir>/.vocc/secrets` (see [`default_dir`]).

use crate::model::{Model, SchedulerKind};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The size of a munge key: 1024 random bytes.
pub const MUNGE_KEY_LEN: usize = 1024;

/// The secrets directory for an appliance file: `<its dir>/.vocc/secrets`.
pub fn default_dir(appliance: &Path) -> PathBuf {
    let dir = appliance.parent().unwrap_or(Path::new(""));
    dir.join(".vocc").join("secrets")
}

/// The secrets of the clusters of one model.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    munge: BTreeMap<String, Arc<[u8]>>,
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
    /// Secrets with no keys (for models without a Slurm cluster).
    pub fn none() -> Secrets {
        Secrets::default()
    }

    /// Loads the secrets every cluster of `model` needs from `dir`, making (and
    /// keeping) the ones that do not exist yet.
    pub fn load_or_create(dir: &Path, model: &Model) -> Result<Secrets, SecretsError> {
        let mut secrets = Secrets::default();
        for c in &model.clusters {
            if c.scheduler
                .as_ref()
                .is_some_and(|s| s.kind == SchedulerKind::Slurm)
            {
                let key = load_or_create(&dir.join(&c.name), "munge.key", MUNGE_KEY_LEN)?;
                secrets.munge.insert(c.name.clone(), key.into());
            }
        }
        Ok(secrets)
    }

    /// The munge key of cluster `cluster`.
    pub fn munge_key(&self, cluster: &str) -> Option<&[u8]> {
        self.munge.get(cluster).map(|k| &k[..])
    }

    /// Sets the munge key of a cluster (for tests and callers that keep keys elsewhere).
    pub fn set_munge_key(&mut self, cluster: &str, key: Vec<u8>) {
        self.munge.insert(cluster.to_owned(), key.into());
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

    let mut key = vec![0u8; len];
    getrandom::fill(&mut key).map_err(|e| SecretsError::Random {
        path: path.clone(),
        message: e.to_string(),
    })?;
    // Written under a temporary name and linked into place, so that a killed build
    // never leaves a short key, and two builds racing keep the first key made.
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(&key)?;
        f.sync_all()
    })();
    let linked = written.and_then(|()| fs::hard_link(&tmp, &path));
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read(&path, len),
        Err(e) => Err(io_err(&path)(e)),
    }
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
