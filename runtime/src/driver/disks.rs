//! A node's own disks on its host, shared by the drivers that boot real guests. They
//! are attached in one fixed order, the order the generated fstab, xl.cfg and domain
//! XML assume: the root overlay, the role's data disks in order, the swap disk, the
//! config drive.
//!
//! - root: `STORE/nodes/<id>/root.qcow2`, a qcow2 overlay over the top root layer;
//! - a read-only data disk: the staged layer itself, attached read-only;
//! - a writable data disk: `STORE/nodes/<id>/<layer>.qcow2`, an overlay;
//! - swap: `STORE/nodes/<id>/swap.img`, sparse and blank (the boot hook formats it);
//! - config drive: `STORE/nodes/<id>/cidata.img`, copied from `OUT/nodes/<id>/`.
//!
//! Invariant: every file appears under its final name only when complete (temp name
//! + rename), so an existing file is a finished one and loading again skips it.

use super::NodeCtx;
use crate::error::{Error, Result};
use crate::proc;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    /// `qcow2` or `raw`.
    pub format: &'static str,
    pub readonly: bool,
}

/// How to boot a node: kernel, initramfs, command line and disks in attachment order.
#[derive(Debug, Clone)]
pub struct Boot {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    pub disks: Vec<Disk>,
}

fn qemu_img() -> String {
    std::env::var("VOCC_QEMU_IMG").unwrap_or_else(|_| "qemu-img".to_owned())
}

fn layer_name(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// The paths of a node's boot, without touching anything.
pub fn boot(n: &NodeCtx) -> Result<Boot> {
    let layout = n.layout;
    let node = n.node;
    let bottom = node.root.first().ok_or_else(|| {
        Error::Other(format!("node `{}` has no root layer in the plan", node.id))
    })?;
    let top = node.root.last().unwrap_or(bottom);
    let dir = n.store_dir();
    let mut disks = vec![Disk {
        path: dir.join("root.qcow2"),
        format: "qcow2",
        readonly: false,
    }];
    let _ = top;
    for d in &node.disks {
        if d.access == "ro" {
            disks.push(Disk {
                path: layout.staged_layer(&d.layer, "img"),
                format: "raw",
                readonly: true,
            });
        } else {
            disks.push(Disk {
                path: dir.join(format!("{}.qcow2", layer_name(&d.layer))),
                format: "qcow2",
                readonly: false,
            });
        }
    }
    if node.swap.is_some_and(|s| s > 0) {
        disks.push(Disk {
            path: dir.join("swap.img"),
            format: "raw",
            readonly: false,
        });
    }
    disks.push(Disk {
        path: dir.join("cidata.img"),
        format: "raw",
        readonly: true,
    });
    let cmdline_file = n.out_dir().join("cmdline");
    let cmdline = fs::read_to_string(&cmdline_file)
        .map_err(|e| Error::io("read the kernel command line", &cmdline_file, e))?
        .trim()
        .to_owned();
    Ok(Boot {
        kernel: layout.staged_layer(bottom, "vmlinuz"),
        initrd: layout.staged_layer(bottom, "initrd"),
        cmdline,
        disks,
    })
}

/// Makes the node's disks that are missing (all of them when `fresh`, which an
/// ephemeral node's start asks for: its writes are thrown away). Returns what it did.
pub fn prepare(n: &NodeCtx, fresh: bool) -> Result<String> {
    let node = n.node;
    let dir = n.store_dir();
    fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    let mut made = Vec::new();
    let top = node
        .root
        .last()
        .ok_or_else(|| Error::Other(format!("node `{}` has no root layer", node.id)))?;
    if overlay(
        &n.layout.staged_layer(top, "img"),
        &dir.join("root.qcow2"),
        fresh,
    )? {
        made.push("root overlay".to_owned());
    }
    for d in node.disks.iter().filter(|d| d.access != "ro") {
        let path = dir.join(format!("{}.qcow2", layer_name(&d.layer)));
        if overlay(&n.layout.staged_layer(&d.layer, "img"), &path, fresh)? {
            made.push(format!("{} overlay", layer_name(&d.layer)));
        }
    }
    if let Some(size) = node.swap.filter(|s| *s > 0) {
        let path = dir.join("swap.img");
        if fresh || !path.exists() {
            let tmp = tmp_of(&path);
            let f = fs::File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
            f.set_len(size).map_err(|e| Error::io("size", &tmp, e))?;
            fs::rename(&tmp, &path).map_err(|e| Error::io("create", &path, e))?;
            made.push("swap".to_owned());
        }
    }
    let drive = n.out_dir().join("cidata.img");
    let target = dir.join("cidata.img");
    if !drive.exists() {
        return Err(Error::Other(format!(
            "node `{}` has no config drive at `{}`: build the plan's images first",
            node.id,
            drive.display()
        )));
    }
    let tmp = tmp_of(&target);
    fs::copy(&drive, &tmp).map_err(|e| Error::io("copy", &drive, e))?;
    fs::rename(&tmp, &target).map_err(|e| Error::io("create", &target, e))?;
    made.push("config drive".to_owned());
    Ok(made.join(", "))
}

/// A qcow2 overlay at `path` over the raw image `base`; false when one was there.
fn overlay(base: &Path, path: &Path, fresh: bool) -> Result<bool> {
    if path.exists() && !fresh {
        return Ok(false);
    }
    if !base.exists() {
        return Err(Error::Other(format!(
            "the staged layer `{}` is missing: stage it first (`vocc up --until staged`)",
            base.display()
        )));
    }
    let tmp = tmp_of(path);
    let _ = fs::remove_file(&tmp);
    let args = [
        "create".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        "-F".as_ref(),
        "raw".as_ref(),
        "-b".as_ref(),
        base.as_os_str(),
        tmp.as_os_str(),
    ];
    proc::run_ok(
        &qemu_img(),
        &args,
        Duration::from_secs(60),
        "install qemu-utils",
    )?;
    fs::rename(&tmp, path).map_err(|e| Error::io("create", path, e))?;
    Ok(true)
}

fn tmp_of(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}

/// Removes the node's own disks from the host.
pub fn remove(n: &NodeCtx) -> Result<()> {
    let dir = n.store_dir();
    match fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", &dir, e)),
    }
}
