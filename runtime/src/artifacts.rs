//! Where the runtime finds what the build made, and where it puts it on a host. The
//! contract with the image side (`compiler/src/image/mod.rs` documents the build's
//! half):
//!
//! - a layer's image is `OUT/<image>` as built (`layers/<cluster>/<name>.img`, often a
//!   symbolic link into the build's content store), staged to `STORE/<image>`; a root
//!   layer's `kernel` and `initrd` the same way. Paths in the plan are relative to the
//!   store and to OUT alike; plans without them (older builds) use those same names.
//! - a node's files are in `OUT/nodes/<id>/`: `cidata.img` (the config drive),
//!   `cmdline` (the kernel command line), `root.qcow2` and `<layer>.qcow2` (overlay
//!   templates whose backing files are the relative `../../layers/<cluster>/<l>.img`,
//!   so a copy in `STORE/nodes/<id>/` finds the staged layer), `swap.img`.
//! - the node's root overlay is backed by the layer `root_image` (else the bottom of
//!   `root`), whose kernel and initramfs the node boots.

use crate::plan::{Plan, PlanLayer, PlanNode};
use crate::state::Layout;
use std::path::PathBuf;

/// A layer file's path relative to OUT and to the store: `ext` is `img`, `vmlinuz` or
/// `initrd`.
pub fn layer_rel(layer: &PlanLayer, ext: &str) -> String {
    let given = match ext {
        "img" => layer.image.as_deref(),
        "vmlinuz" => layer.kernel.as_deref(),
        "initrd" => layer.initrd.as_deref(),
        _ => None,
    };
    given
        .map(|p| p.trim_start_matches('/').to_owned())
        .unwrap_or_else(|| format!("layers/{}/{}.{ext}", layer.cluster, layer.name))
}

/// A layer file as built, in OUT.
pub fn built(layout: &Layout, layer: &PlanLayer, ext: &str) -> PathBuf {
    layout.out.join(layer_rel(layer, ext))
}

/// A layer file as staged, in the host's store.
pub fn staged(layout: &Layout, layer: &PlanLayer, ext: &str) -> PathBuf {
    layout.store.join(layer_rel(layer, ext))
}

/// The layer a node's root overlay is backed by.
pub fn root_layer<'p>(plan: &'p Plan, node: &PlanNode) -> Option<&'p PlanLayer> {
    let id = node
        .root_image
        .as_deref()
        .or(node.root.first().map(String::as_str))?;
    plan.layers.iter().find(|l| l.id == id)
}

/// The layer of a data disk.
pub fn layer<'p>(plan: &'p Plan, id: &str) -> Option<&'p PlanLayer> {
    plan.layers.iter().find(|l| l.id == id)
}
