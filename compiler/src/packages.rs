//! The package index of a Debian release, as the build machine's apt has it
//! (`/var/lib/apt/lists/*_dists_<suite>_<component>_binary-<arch>_Packages*`), so that
//! `vocc check` finds a package a release does not have before mmdebstrap does.
//! Only `Package:` and `Provides:` lines are read (a virtual package counts as
//! present), once per release and process. Without an index nothing is said.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// Where apt keeps the lists it downloaded.
pub const APT_LISTS: &str = "/var/lib/apt/lists";

/// apt's helper that decompresses any list format apt knows (lz4, xz, gz, zstd).
const APT_HELPER: &str = "/usr/lib/apt/apt-helper";

/// The names a release has: its packages and the virtual packages they provide.
#[derive(Debug, Default, Clone)]
pub struct Index {
    names: HashSet<String>,
    /// Real package names, sorted, for suggestions.
    packages: Vec<String>,
}

impl Index {
    /// An index of exactly these names (tests).
    pub fn of<'a>(names: impl IntoIterator<Item = &'a str>) -> Index {
        let mut i = Index::default();
        for n in names {
            i.names.insert(n.to_owned());
            i.packages.push(n.to_owned());
        }
        i.packages.sort();
        i
    }

    /// Whether `package` (`NAME` or `NAME=VERSION`) is in the release.
    pub fn has(&self, package: &str) -> bool {
        self.names.contains(name(package))
    }

    /// The package the name probably meant. Names whose length differs by more than
    /// [`vocc_dsl::diag::suggest`] would accept are not compared.
    pub fn suggest(&self, package: &str) -> Option<&str> {
        let n = name(package);
        let close = |c: &&String| n.len().abs_diff(c.len()) <= (n.len().max(c.len()) / 3).max(1);
        vocc_dsl::diag::suggest(n, self.packages.iter().filter(close).map(String::as_str))
    }

    /// Adds the `Package:` and `Provides:` names of a `Packages` file.
    pub fn read(&mut self, mut input: impl Read) -> io::Result<()> {
        // Whole, then split at newlines (a memchr search): several times faster than
        // reading line by line, for lists of a million lines.
        let mut bytes = Vec::new();
        input.read_to_end(&mut bytes)?;
        let text = String::from_utf8_lossy(&bytes);
        for line in text.split('\n').filter(|l| l.starts_with('P')) {
            if let Some(p) = line.strip_prefix("Package:") {
                let p = p.trim();
                if self.names.insert(p.to_owned()) {
                    self.packages.push(p.to_owned());
                }
            } else if let Some(list) = line.strip_prefix("Provides:") {
                // `a, b (= 1.0), c`
                for item in list.split(',') {
                    if let Some(n) = item.split_whitespace().next() {
                        self.names.insert(n.to_owned());
                    }
                }
            }
        }
        Ok(())
    }
}

fn name(package: &str) -> &str {
    package.split('=').next().unwrap_or(package)
}

/// The host's index of `suite` (with its `-updates` and `-security` dists, which the
/// build's sources use too), read once per process; `None` when apt has no list for
/// it or it cannot be read.
pub fn host_index(suite: &str) -> Option<Arc<Index>> {
    static CACHE: Mutex<Option<HashMap<String, Option<Arc<Index>>>>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some(known) = cache.get(suite) {
        return known.clone();
    }
    let found = load(Path::new(APT_LISTS), suite, host_arch()).map(Arc::new);
    cache.insert(suite.to_owned(), found.clone());
    found
}

/// Debian's name for this machine's architecture.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "powerpc64" => "ppc64el",
        other => other,
    }
}

/// The index of `suite` from the lists in `dir`.
pub fn load(dir: &Path, suite: &str, arch: &str) -> Option<Index> {
    let files = lists(dir, suite, arch);
    if files.is_empty() {
        return None;
    }
    let mut index = Index::default();
    for f in files {
        read_list(&f, &mut index).ok()?;
    }
    index.packages.sort();
    Some(index)
}

/// The `Packages` lists of `suite`, `suite-updates` and `suite-security` for `arch`.
pub fn lists(dir: &Path, suite: &str, arch: &str) -> Vec<PathBuf> {
    let dists = [
        suite.to_owned(),
        format!("{suite}-updates"),
        format!("{suite}-security"),
    ];
    let binary = format!("binary-{arch}");
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((_, rest)) = name.split_once("_dists_") else {
                return false;
            };
            let parts: Vec<&str> = rest.split('_').collect();
            matches!(parts.as_slice(),
                [dist, _component, b, file]
                    if dists.iter().any(|d| d == dist)
                        && *b == binary
                        && (*file == "Packages" || file.starts_with("Packages.")))
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Reads one list, plain or compressed (through apt's own helper).
fn read_list(path: &Path, index: &mut Index) -> io::Result<()> {
    if path.extension().is_none() {
        let f = crate::sources::open_regular(path)?;
        return index.read(f);
    }
    let mut child = Command::new(APT_HELPER)
        .arg("cat-file")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("no output"))?;
    let read = index.read(stdout);
    let status = child.wait()?;
    read?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("apt-helper cat-file: {status}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_and_what_they_provide_are_names() {
        let text = "Package: slurmd\nVersion: 22.05\nProvides: slurm-node, x (= 1.0)\n\n\
                    Package: munge\nDescription: Provides: nothing\n";
        let mut i = Index::default();
        i.read(text.as_bytes()).unwrap();
        assert!(i.has("slurmd") && i.has("munge=0.5") && i.has("slurm-node") && i.has("x"));
        assert!(!i.has("htcondor") && !i.has("nothing"));
        assert_eq!(i.suggest("slurm"), Some("slurmd"));
    }

    #[test]
    fn lists_are_found_by_release_and_architecture() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages.lz4",
            "deb.debian.org_debian_dists_bookworm-updates_main_binary-amd64_Packages",
            "deb.debian.org_debian-security_dists_bookworm-security_main_binary-amd64_Packages.xz",
            "deb.debian.org_debian_dists_bookworm-backports_main_binary-amd64_Packages",
            "deb.debian.org_debian_dists_bookworm_main_binary-arm64_Packages",
            "deb.debian.org_debian_dists_bookworm_InRelease",
            "deb.debian.org_debian_dists_trixie_main_binary-amd64_Packages",
        ] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let found: Vec<String> = lists(dir.path(), "bookworm", "amd64")
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found
            .iter()
            .all(|f| f.contains("bookworm") && f.contains("amd64")));
        assert!(!found.iter().any(|f| f.contains("backports")));
        assert!(load(dir.path(), "sid", "amd64").is_none());
    }
}
