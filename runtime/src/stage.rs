//! Staging: each layer into each host's store once, verified against the plan's
//! sha256 before anything boots from it. On this machine the store is local, so a
//! layer arrives by hard link, else by reflink, else by copy (remote hosts, by a site's
//! own transport, come later). The image's kernel and initramfs come along.
//!
//! Invariant: a staged image has the name it will be booted from only once its whole
//! content is there (temp name + rename), and its hash is checked before the stage
//! step succeeds; a verified file whose size, mtime and inode are unchanged is not
//! hashed again. What was verified is recorded twice: in the cluster's journal, and in
//! the store (`STORE/.verified/<sha256>`: device, inode, size, mtime), so that another
//! cluster or a fresh run staging the same file (a hard link shares the inode) trusts
//! the check already made.

use crate::artifacts;
use crate::error::{Error, Result};
use crate::journal::Staged;
use crate::plan::PlanLayer;
use crate::state::Layout;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Stages `layer` into the store; `known` is what the journal recorded last time.
pub fn stage(layout: &Layout, layer: &PlanLayer, known: Option<&Staged>) -> Result<Staged> {
    let expected = layer.sha256.clone().ok_or_else(|| {
        Error::Other(format!(
            "the layer `{}` has no sha256 in the plan: build its images (`vocc build` without \
             `--config-only`) before running it",
            layer.id
        ))
    })?;
    let dst = artifacts::staged(layout, layer, "img");
    let src = artifacts::built(layout, layer, "img");
    for ext in ["vmlinuz", "initrd"] {
        let from = artifacts::built(layout, layer, ext);
        if from.exists() {
            place(&from, &artifacts::staged(layout, layer, ext))?;
        }
    }
    if let Ok(meta) = fs::metadata(&dst) {
        if let Some(k) = known {
            if k.sha256 == expected && same_file(k, &meta) {
                return Ok(Staged {
                    how: "already staged".to_owned(),
                    ..k.clone()
                });
            }
        }
        if verified(layout, &expected, &meta) {
            return Ok(record(&dst, &expected, "already staged", &meta));
        }
        if sha256_file(&dst)? == expected {
            remember(layout, &expected, &meta);
            return Ok(record(&dst, &expected, "already staged, verified", &meta));
        }
        // Something else sits under the layer's name: replace it.
        let _ = fs::remove_file(&dst);
    }
    if !src.exists() {
        return Err(Error::Other(format!(
            "the image of layer `{}` is not at `{}`: build the plan's images first",
            layer.id,
            src.display()
        )));
    }
    let how = place(&src, &dst)?;
    let meta = fs::metadata(&dst).map_err(|e| Error::io("read", &dst, e))?;
    if verified(layout, &expected, &meta) {
        return Ok(record(&dst, &expected, how, &meta));
    }
    let found = sha256_file(&dst)?;
    if found != expected {
        let _ = fs::remove_file(&dst);
        return Err(Error::Checksum {
            layer: layer.id.clone(),
            path: src,
            expected,
            found,
        });
    }
    remember(layout, &expected, &meta);
    Ok(record(&dst, &expected, how, &meta))
}

/// The identity of a file as the store's record of a verification keeps it.
fn identity(meta: &fs::Metadata) -> String {
    format!(
        "{} {} {} {}\n",
        meta.dev(),
        meta.ino(),
        meta.len(),
        mtime_ns(meta)
    )
}

fn verified_path(layout: &Layout, sha: &str) -> std::path::PathBuf {
    layout.store.join(".verified").join(sha)
}

/// Whether the store records that this very file (device, inode, size, mtime) was
/// found to hash to `sha`.
fn verified(layout: &Layout, sha: &str, meta: &fs::Metadata) -> bool {
    fs::read_to_string(verified_path(layout, sha)).is_ok_and(|r| r == identity(meta))
}

/// Records a verification in the store (best effort: without it, the next staging
/// hashes again).
fn remember(layout: &Layout, sha: &str, meta: &fs::Metadata) {
    let path = verified_path(layout, sha);
    let Some(dir) = path.parent() else { return };
    if fs::create_dir_all(dir).is_err() {
        return;
    }
    let _ = crate::atomic::write(&path, identity(meta).as_bytes(), 0o644);
}

fn same_file(k: &Staged, meta: &fs::Metadata) -> bool {
    k.size == meta.len() && k.inode == meta.ino() && k.mtime_ns == mtime_ns(meta)
}

fn mtime_ns(meta: &fs::Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

fn record(path: &Path, sha: &str, how: &str, meta: &fs::Metadata) -> Staged {
    Staged {
        path: path.display().to_string(),
        sha256: sha.to_owned(),
        how: how.to_owned(),
        size: meta.len(),
        mtime_ns: mtime_ns(meta),
        inode: meta.ino(),
    }
}

/// Puts `src` at `dst` (read-only) the cheapest way: the same file, a hard link, a
/// reflink, or a copy. Returns how.
fn place(src: &Path, dst: &Path) -> Result<&'static str> {
    // The build links its layers into its content store: stage the file itself, not
    // the (possibly relative) link.
    let src = &fs::canonicalize(src).map_err(|e| Error::io("read", src, e))?;
    if let (Ok(a), Ok(b)) = (fs::metadata(src), fs::metadata(dst)) {
        if a.dev() == b.dev() && a.ino() == b.ino() {
            return Ok("in place");
        }
    }
    let dir = dst.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    // Hosts that share this machine's store stage the same layer at once: each copy
    // gets a temporary name of its own, and the last rename wins with identical content.
    crate::atomic::install(dst, |tmp| {
        let how = if fs::hard_link(src, tmp).is_ok() {
            "hardlink"
        } else if reflink(src, tmp) {
            "reflink"
        } else {
            fs::copy(src, tmp)?;
            "copy"
        };
        if how != "hardlink" {
            let _ = fs::set_permissions(tmp, fs::Permissions::from_mode(0o444));
        }
        Ok(how)
    })
    .map_err(|e| Error::io("stage", dst, e))
}

/// A copy-on-write clone (FICLONE), where the file system can.
fn reflink(src: &Path, dst: &Path) -> bool {
    use std::os::unix::io::AsRawFd;
    const FICLONE: libc::c_ulong = 0x4004_9409;
    let (Ok(from), Ok(to)) = (File::open(src), File::create(dst)) else {
        return false;
    };
    // SAFETY: both descriptors are open for the duration of the call.
    let ok = unsafe { libc::ioctl(to.as_raw_fd(), FICLONE as _, from.as_raw_fd()) } == 0;
    if !ok {
        let _ = fs::remove_file(dst);
    }
    ok
}

/// The sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| Error::io("read", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Removes a staged layer (and its kernel and initramfs) from the store.
pub fn unstage(layout: &Layout, layer: &PlanLayer) {
    for ext in ["img", "vmlinuz", "initrd"] {
        let _ = fs::remove_file(artifacts::staged(layout, layer, ext));
    }
}

/// Stages `layer` to hosts the control side reaches over a link (SSH or Slurm), all of
/// them at once down one chain per file (`distribute`): the image, then its kernel and
/// initramfs if it has them. Each host's result: what was staged, or why not.
///
/// With a site's image server, each chain starts there: the server keeps every layer it
/// is sent, so a layer crosses this machine's link once, and later runs (another
/// cluster, the same after `unstage`, a new host) take it from the server. A server that
/// cannot be reached is passed over: this machine heads the chain itself.
pub fn stage_remote(
    layout: &Layout,
    layer: &PlanLayer,
    hosts: &[&crate::plan::PlanHost],
    server: Option<&crate::plan::PlanImages>,
) -> HashMap<String, std::result::Result<Staged, String>> {
    use crate::distribute::{distribute, Outcome, Strategy, Target, Transfer};
    let mut results: HashMap<String, std::result::Result<Staged, String>> = HashMap::new();
    let Some(expected) = layer.sha256.clone() else {
        let why = format!(
            "the layer `{}` has no sha256 in the plan: build its images before running it",
            layer.id
        );
        return hosts
            .iter()
            .map(|h| (h.name.clone(), Err(why.clone())))
            .collect();
    };
    // Each host runs this control side's own vocc-host (installed now if it does not).
    // Its sha256 once, not once per host.
    let local = std::env::current_exe()
        .ok()
        .map(|e| e.with_file_name("vocc-host"))
        .and_then(|p| Some((sha256_file(&p).ok()?, p)));
    // The image server's vocc-host too, checked beside the hosts'; a server that fails
    // its check is left out (and said in each host's account of the layer).
    let mut server_failed: Option<String> = None;
    std::thread::scope(|s| {
        let machines: Vec<(&str, &crate::hostlink::HostLink)> = hosts
            .iter()
            .filter_map(|h| Some((h.name.as_str(), h.link.as_ref()?)))
            .chain(server.map(|s| (s.name.as_str(), &s.link)))
            .collect();
        let is_server = |name: &str| server.is_some_and(|s| s.name == name);
        let checks: Vec<_> = machines
            .into_iter()
            .map(|(h, link)| {
                let local = local.as_ref();
                s.spawn(move || {
                    let r = match local {
                        Some((want, local)) => {
                            crate::hostops::ensure_program(link, local, want).map(|_| ())
                        }
                        None => crate::hostops::hello(link, false).map(|_| ()),
                    };
                    (h.to_owned(), r)
                })
            })
            .collect();
        for c in checks {
            match c.join() {
                Ok((name, Err(e))) if is_server(&name) => server_failed = Some(e),
                Ok((host, Err(e))) => {
                    results.insert(host.clone(), Err(format!("host `{host}`: {e}")));
                }
                _ => {}
            }
        }
    });
    let server_note = match (server, &server_failed) {
        (Some(s), Some(why)) => format!(
            "; not from the image server `{}`, which could not be used ({why})",
            s.name
        ),
        _ => String::new(),
    };
    let server = server.filter(|_| server_failed.is_none());
    // Whether the image came from the image server whole (it sent; this machine did not).
    let mut from_server = false;
    let mut received: HashMap<String, u64> = HashMap::new();
    let mut image_size = 0;
    for ext in ["img", "vmlinuz", "initrd"] {
        let source = artifacts::built(layout, layer, ext);
        // What the file is: as the plan records it (so this machine need not hold it,
        // when the site's image server does), else as this machine's copy is.
        let recorded = layer.sums.get(ext);
        if ext != "img" && recorded.is_none() && !source.exists() {
            continue;
        }
        let (sha, size) = match recorded {
            Some(r) if ext != "img" || r.sha256 == expected => (r.sha256.clone(), r.bytes),
            _ => {
                let sha = if ext == "img" {
                    Ok(expected.clone())
                } else {
                    sha256_file(&source).map_err(|e| e.to_string())
                };
                let size = fs::metadata(&source).map(|m| m.len());
                match (sha, size) {
                    (Ok(s), Ok(n)) => (s, n),
                    (Err(e), _) => return fail_all(hosts, &results, e),
                    (_, Err(e)) => {
                        let why = format!(
                            "the image of layer `{}` is not at `{}` ({e}): build the plan's \
                             images first",
                            layer.id,
                            source.display()
                        );
                        return fail_all(hosts, &results, why);
                    }
                }
            }
        };
        if ext == "img" {
            image_size = size;
        }
        let dest = artifacts::staged(layout, layer, ext).display().to_string();
        let mut targets: Vec<Target> = hosts
            .iter()
            .filter(|h| !results.contains_key(&h.name))
            .filter_map(|h| {
                Some(Target {
                    host: h.name.clone(),
                    address: h.address.clone().unwrap_or_else(|| h.name.clone()),
                    link: h.link.clone()?,
                    dest: dest.clone(),
                    head: false,
                })
            })
            .collect();
        if targets.is_empty() {
            continue;
        }
        if let Some(s) = server {
            targets.push(Target {
                host: s.name.clone(),
                address: s.address.clone().unwrap_or_else(|| s.name.clone()),
                link: s.link.clone(),
                dest: dest.clone(),
                head: true,
            });
        }
        let transfer = Transfer {
            source: &source,
            size,
            sha256: &sha,
            stall_secs: 10,
        };
        for r in distribute(&transfer, &targets, Strategy::Chain) {
            if server.is_some_and(|s| s.name == r.host) {
                // The server's own result matters only for saying where the image came
                // from: a host that did not get it fails with its own step.
                if ext == "img" {
                    from_server = matches!(
                        r.outcome,
                        Outcome::Done { received: 0, forwarded, .. } if forwarded > 0
                    );
                }
                continue;
            }
            match r.outcome {
                Outcome::Done { received: n, .. } => *received.entry(r.host).or_default() += n,
                Outcome::Failed { step, error, have } => {
                    let why = format!(
                        "staging `{}` to host `{}` failed at {step}: {error} ({have} bytes kept \
                         for the next run)",
                        dest, r.host
                    );
                    results.insert(r.host, Err(why));
                }
            }
        }
    }
    let dest = artifacts::staged(layout, layer, "img")
        .display()
        .to_string();
    for h in hosts {
        results.entry(h.name.clone()).or_insert_with(|| {
            let n = received.get(&h.name).copied().unwrap_or(0);
            Ok(Staged {
                path: dest.clone(),
                sha256: expected.clone(),
                how: if n == 0 {
                    format!("already staged on the host{server_note}")
                } else if from_server {
                    format!(
                        "sent down the chain from the image server `{}` ({n} bytes)",
                        server.map_or("", |s| s.name.as_str())
                    )
                } else {
                    format!("sent down the chain ({n} bytes){server_note}")
                },
                size: image_size,
                mtime_ns: 0,
                inode: 0,
            })
        });
    }
    results
}

fn fail_all(
    hosts: &[&crate::plan::PlanHost],
    done: &HashMap<String, std::result::Result<Staged, String>>,
    why: String,
) -> HashMap<String, std::result::Result<Staged, String>> {
    let mut out = done.clone();
    for h in hosts {
        out.entry(h.name.clone())
            .or_insert_with(|| Err(why.clone()));
    }
    out
}

/// Removes `layers` from the stores of hosts reached over a link, all hosts at once.
/// Each host's answer, or why it could not be asked.
pub fn unstage_remote(
    layout: &Layout,
    layers: &[&PlanLayer],
    hosts: &[&crate::plan::PlanHost],
) -> Vec<(String, std::result::Result<crate::hostops::Removed, String>)> {
    use crate::hostlink::HostOp;
    use crate::hostops::{call, Remove};
    let request = Remove {
        root: layout.store.display().to_string(),
        paths: layers
            .iter()
            .flat_map(|l| ["img", "vmlinuz", "initrd"].map(|ext| artifacts::layer_rel(l, ext)))
            .collect(),
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .iter()
            .filter_map(|h| Some((h, h.link.as_ref()?)))
            .map(|(h, link)| {
                let request = &request;
                s.spawn(move || {
                    let r = call(
                        link,
                        HostOp::Remove,
                        request,
                        std::time::Duration::from_secs(60),
                    );
                    (h.name.clone(), r)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|t| t.join().expect("a removal does not panic"))
            .collect()
    })
}
