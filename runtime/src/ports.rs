//! L2 segments for the qemu driver: each cluster network is a multicast group and UDP
//! port that only that cluster's VMs join. A multicast group is host-wide, so two
//! clusters (or two tests) on one machine must never share one: the port is claimed in
//! a host-wide registry (`/tmp/vocc-<uid>/mcast/<port>`, created exclusively, holding
//! its owner), starting from a hash of the owner so that the same cluster gets the same
//! port again. `VOCC_MCAST_BASE` and `VOCC_MCAST_SPAN` (default 42000 and 8000) move
//! the range, e.g. per test run.
//!
//! Invariant: a claim names its owner (the cluster's state directory and network); a
//! claim whose owner directory is gone is stale and may be taken over.

use crate::error::{Error, Result};
use crate::journal::Segment;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

fn registry() -> PathBuf {
    crate::state::user_dir().join("mcast")
}

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Claims (or finds again) a segment for each network of a cluster whose state lives
/// in `owner_dir`.
pub fn allocate(owner_dir: &Path, networks: &[String]) -> Result<BTreeMap<String, Segment>> {
    let base = env_u32("VOCC_MCAST_BASE", 42000).clamp(1024, 65000);
    let span = env_u32("VOCC_MCAST_SPAN", 8000).clamp(1, 65535 - base);
    let dir = registry();
    fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    let mut out = BTreeMap::new();
    for network in networks {
        let owner = format!("{}\t{network}", owner_dir.display());
        let digest = Sha256::digest(owner.as_bytes());
        let h = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        let group = format!("230.0.{}.{}", digest[4], digest[5].max(1));
        let mut found = None;
        for i in 0..span {
            let port = (base + (h.wrapping_add(i)) % span) as u16;
            if claim(&dir.join(port.to_string()), &owner)? {
                found = Some(port);
                break;
            }
        }
        let port = found.ok_or_else(|| {
            Error::Other(format!(
                "no free multicast port in {base}..{}: run `vocc down` on old clusters",
                base + span
            ))
        })?;
        out.insert(network.clone(), Segment { group, port });
    }
    Ok(out)
}

/// Takes the claim file for `owner`: true when it is (now) ours.
fn claim(path: &Path, owner: &str) -> Result<bool> {
    for _ in 0..2 {
        match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(mut f) => {
                f.write_all(owner.as_bytes())
                    .map_err(|e| Error::io("write", path, e))?;
                return Ok(true);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let held = fs::read_to_string(path).unwrap_or_default();
                if held == owner {
                    return Ok(true);
                }
                let owner_dir = held.split('\t').next().unwrap_or("");
                if held.is_empty() || owner_dir.is_empty() || Path::new(owner_dir).exists() {
                    // Someone else's (or being written right now).
                    return Ok(false);
                }
                // Stale: its cluster is gone. Take it over on the next round.
                let _ = fs::remove_file(path);
            }
            Err(e) => return Err(Error::io("create", path, e)),
        }
    }
    Ok(false)
}

/// Gives back every port that `owner_dir` holds.
pub fn release(owner_dir: &Path, segments: &BTreeMap<String, Segment>) {
    let dir = registry();
    for (network, seg) in segments {
        let path = dir.join(seg.port.to_string());
        let owner = format!("{}\t{network}", owner_dir.display());
        if fs::read_to_string(&path).is_ok_and(|held| held == owner) {
            let _ = fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_clusters_get_different_ports_and_the_same_one_again() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let nets = vec!["private".to_owned()];
        let sa = allocate(a.path(), &nets).unwrap();
        let sb = allocate(b.path(), &nets).unwrap();
        assert_ne!(sa["private"].port, sb["private"].port);
        assert_eq!(allocate(a.path(), &nets).unwrap(), sa);
        release(a.path(), &sa);
        release(b.path(), &sb);
        assert!(!registry().join(sa["private"].port.to_string()).exists());
    }
}
