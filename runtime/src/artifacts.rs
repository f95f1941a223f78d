//! Where the runtime finds what the build made, in the plan's directory (OUT):
//!
//! - a layer's image: `OUT/layers/<cluster>/<layer>.img`, and for a bottom root layer
//!   its kernel and initramfs beside it (`.vmlinuz`, `.initrd`);
//! - a node's config drive: `OUT/nodes/<id>/cidata.img`;
//! - a node's kernel command line: `OUT/nodes/<id>/cmdline` (one line).
//!
//! Staging copies (or links) layers from here into the host's store; loading copies
//! the config drive next to the node's overlay. See `agent.md` for the contract with
//! the image side.

use crate::plan::PlanLayer;
use crate::state::Layout;
use std::path::PathBuf;

/// A layer's image as built, with `ext` one of `img`, `vmlinuz`, `initrd`.
pub fn layer_file(layout: &Layout, layer: &PlanLayer, ext: &str) -> PathBuf {
    layout
        .out
        .join("layers")
        .join(&layer.cluster)
        .join(format!("{}.{ext}", layer.name))
}
