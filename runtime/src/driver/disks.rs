//! A node's own disks on its host, shared by the drivers that boot real guests. They
//! are attached in one fixed order, the order the generated fstab, xl.cfg and domain
//! XML assume: the root overlay, the role's data disks in order, the swap disk, the
//! config drive.
//!
//! - root: `STORE/nodes/<id>/root.qcow2`, a qcow2 overlay over the root image layer;
//! - a read-only data disk: the staged layer itself, attached read-only;
//! - a writable data disk: `STORE/nodes/<id>/<layer>.qcow2`, an overlay;
//! - swap: `STORE/nodes/<id>/swap.img`, sparse and blank (the boot hook formats it);
//! - config drive: `STORE/nodes/<id>/cidata.img`, copied from `OUT/nodes/<id>/`.
//!
//! Invariant: every file appears under its final name only when complete
//! (`atomic::install`), so an existing file is a finished one and loading again skips it.

use super::NodeCtx;
use crate::artifacts;
use crate::atomic;
use crate::error::{Error, Result};
use crate::plan::{Access, ImageFormat, PlanLayer};
use crate::proc;
use std::fs;
use std::os::unix::fs::PermissionsExt;
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

fn missing_layer(node: &str, id: &str) -> Error {
    Error::Other(format!(
        "node `{node}` uses layer `{id}`, which the plan does not list"
    ))
}

/// The paths of a node's boot, without touching anything.
pub fn boot(n: &NodeCtx) -> Result<Boot> {
    let layout = n.layout;
    let node = n.node;
    let root = artifacts::root_layer(n.plan, node)
        .ok_or_else(|| Error::Other(format!("node `{}` has no root layer in the plan", node.id)))?;
    let dir = n.store_dir();
    let mut disks = vec![Disk {
        path: dir.join("root.qcow2"),
        format: "qcow2",
        readonly: false,
    }];
    for d in &node.disks {
        let layer =
            artifacts::layer(n.plan, &d.layer).ok_or_else(|| missing_layer(&node.id, &d.layer))?;
        if d.access == Access::Ro {
            disks.push(Disk {
                path: artifacts::staged(layout, layer, "img"),
                format: layer.format.unwrap_or(ImageFormat::Raw).as_str(),
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
        kernel: artifacts::staged(layout, root, "vmlinuz"),
        initrd: artifacts::staged(layout, root, "initrd"),
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
    let root = artifacts::root_layer(n.plan, node)
        .ok_or_else(|| Error::Other(format!("node `{}` has no root layer", node.id)))?;
    if overlay(n, root, "root.qcow2", fresh)? {
        made.push("root overlay".to_owned());
    }
    for d in node.disks.iter().filter(|d| d.access != Access::Ro) {
        let layer =
            artifacts::layer(n.plan, &d.layer).ok_or_else(|| missing_layer(&node.id, &d.layer))?;
        let file = format!("{}.qcow2", layer_name(&d.layer));
        if overlay(n, layer, &file, fresh)? {
            made.push(format!("{} overlay", layer_name(&d.layer)));
        }
    }
    if let Some(size) = node.swap.filter(|s| *s > 0) {
        let path = dir.join("swap.img");
        if fresh || !path.exists() {
            atomic::install(&path, |tmp| fs::File::create(tmp)?.set_len(size))
                .map_err(|e| Error::io("create", &path, e))?;
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
    copy(&drive, &target)?;
    made.push("config drive".to_owned());
    Ok(made.join(", "))
}

/// Copies `from` to `to` (writable, whole or not at all).
fn copy(from: &Path, to: &Path) -> Result<()> {
    atomic::install(to, |tmp| {
        fs::copy(from, tmp)?;
        fs::set_permissions(tmp, fs::Permissions::from_mode(0o644))
    })
    .map_err(|e| Error::io("copy to", to, e))
}

/// The overlay `file` of the node over `layer`; false when one was there. The build's
/// template (`OUT/nodes/<id>/<file>`, backed by a path relative to its directory that
/// resolves in the store too) is copied; without one, qemu-img makes the overlay.
fn overlay(n: &NodeCtx, layer: &PlanLayer, file: &str, fresh: bool) -> Result<bool> {
    let path = n.store_dir().join(file);
    if path.exists() && !fresh {
        return Ok(false);
    }
    let base = artifacts::staged(n.layout, layer, "img");
    if !base.exists() {
        return Err(Error::Other(format!(
            "the staged layer `{}` is missing: stage it first (`vocc up --until staged`)",
            base.display()
        )));
    }
    let template = n.out_dir().join(file);
    if template.exists() {
        copy(&template, &path)?;
        return Ok(true);
    }
    let format = layer.format.unwrap_or(ImageFormat::Raw).as_str();
    // qemu-img's failure is carried through the temporary's io::Error and named with
    // the overlay's path.
    atomic::install(&path, |tmp| {
        let args = [
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "-F".as_ref(),
            format.as_ref(),
            "-b".as_ref(),
            base.as_os_str(),
            tmp.as_os_str(),
        ];
        proc::run_ok::<&std::ffi::OsStr>(
            &qemu_img(),
            &args,
            Duration::from_secs(60),
            "install qemu-utils",
        )
        .map(drop)
        .map_err(std::io::Error::other)
    })
    .map_err(|e| Error::io("create", &path, e))?;
    Ok(true)
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
