//! Planning: place every node of a model on a host of its site and write the plan the
//! runtime executes (hosts, networks with their bridges, layers, nodes, what to stage
//! where, and the steps that bring nodes up).
//!
//! # Placement
//!
//! Like the Globus Workspace Service, nodes are matched to hosts on free resources. A
//! host offers `cpu × overcommit` vCPUs, `memory − reserve` of memory, and its disk. A
//! node needs its role's cpu and memory, and disk for its own files:
//! [`NODE_DISK_ALLOWANCE`] for its overlay and config drive, its swap, and the size of
//! each writable data disk (its overlay may grow to the layer's size). Each distinct
//! layer a host runs (root or data disk) costs its size once on that host, however
//! many of its nodes share it; a layer without a declared size counts
//! [`DEFAULT_LAYER_SIZE`], or [`DEFAULT_BUSYBOX_SIZE`] for the embedded busybox root.
//! Only hosts that run the cluster's hypervisor may take its nodes.
//!
//! The strategy is *spread*: nodes are placed one at a time in model order (cluster,
//! then role, then index), each on the host with the most free memory among those it
//! fits on, ties going to the first host in site order. A cluster thus lands one node
//! per host while it can, and a second cluster on the same site fills the hosts the
//! first left emptiest. Spreading keeps one host's failure from taking a whole
//! cluster, and gives every guest the most headroom; packing would leave hosts free
//! for other work, which a site dedicated to VO clusters does not need. The same model
//! always gives the same placement.
//!
//! A rebuild keeps running nodes where they are. Given the previous plan of the same
//! site ([`Previous`]; `vocc build` reads the one in its output tree), placement first
//! puts every node that plan had back on its host, in model order, if the host is still
//! in the site, still runs the cluster's hypervisor and still has room after the nodes
//! kept before it. Only the other nodes (new ones, and those whose host no longer
//! fits) are then spread as above, around the kept ones. Growing or shrinking a role,
//! or removing a host, thus moves no node but the new ones and those of the removed
//! host; the same previous plan and model always give the same placement.
//!
//! When the clusters need more of a resource than the site offers in all, placement
//! says so once per resource instead of once per node that fits nowhere.

mod build;
mod place;

#[cfg(test)]
pub(crate) mod kit;
#[cfg(test)]
mod tests;

use crate::model::Model;
use vocc_dsl::Diagnostic;
use vocc_runtime::Plan;

pub use place::{
    decide, layer_size, shortfalls, Candidate, Decision, Demand, Free, Previous, Resource,
    Shortfall,
};

pub(crate) use place::join_and;

/// One mebibyte.
pub const MIB: u64 = 1 << 20;
/// One gibibyte.
pub const GIB: u64 = 1 << 30;

/// Host disk every node needs for its own copy-on-write overlay and its config drive,
/// besides swap and writable data disks. A config drive is well under 1 MiB; the rest
/// is room for what a short-lived grid node writes to its root (logs, spool, package
/// caches) before it is thrown away or stopped.
pub const NODE_DISK_ALLOWANCE: u64 = 256 * MIB;

/// Disk counted for a Debian, image or directory layer that declares no `size`: a
/// Debian root with a batch system is about 400 MB, so 1 GiB leaves room for packages.
pub const DEFAULT_LAYER_SIZE: u64 = GIB;

/// Disk counted for the embedded busybox layer when it declares no `size`: busybox, a
/// kernel and a small initramfs.
pub const DEFAULT_BUSYBOX_SIZE: u64 = 64 * MIB;

/// A placement: the plan, and why each node went where it did (for `explain`).
#[derive(Debug, Clone)]
pub struct Placement {
    pub plan: Plan,
    /// One per node, in placement order: the nodes kept on their previous hosts, then
    /// the others, each group by cluster, role and index.
    pub decisions: Vec<Decision>,
}

/// Places every node of `model` and writes the plan, or says why it cannot: nodes that
/// fit no host, a site too small in all, a cluster whose hypervisor no host runs, or
/// roles that mount from each other.
pub fn place(model: &Model) -> Result<Placement, Vec<Diagnostic>> {
    place_after(model, &Previous::none())
}

/// Like [`place`], but the nodes of `previous` stay on their hosts where they still
/// fit (see the module documentation).
pub fn place_after(model: &Model, previous: &Previous) -> Result<Placement, Vec<Diagnostic>> {
    let (decisions, mut diags) = place::decide_placed(model, previous);
    diags.extend(build::check_mounts(model));
    if diags.iter().any(Diagnostic::is_error) {
        vocc_dsl::diag::sort(&mut diags);
        return Err(diags);
    }
    let plan = build::build(model, &decisions);
    Ok(Placement { plan, decisions })
}

/// The plan of `model`; see [`place`].
pub fn plan(model: &Model) -> Result<Plan, Vec<Diagnostic>> {
    place(model).map(|p| p.plan)
}

/// The plan of `model` placed after `previous`; see [`place_after`].
pub fn plan_after(model: &Model, previous: &Previous) -> Result<Plan, Vec<Diagnostic>> {
    place_after(model, previous).map(|p| p.plan)
}

/// A byte count for people, exact when exact: GiB with at most two decimals from 1 GiB
/// up (`2 GiB`, `1.5 GiB`), else whole MiB below 10 GiB (`750 MiB`, `1480 MiB`), else
/// rounded to two decimals and marked (`about 74.82 GiB`).
pub fn human_size(bytes: u64) -> String {
    const KIB: u64 = 1 << 10;
    let exact = |unit: u64| u128::from(bytes) * 100 % u128::from(unit) == 0;
    let show = |unit: u64, name: &str| {
        let hundredths = (u128::from(bytes) * 100 + u128::from(unit) / 2) / u128::from(unit);
        let (whole, frac) = (hundredths / 100, hundredths % 100);
        match frac {
            0 => format!("{whole} {name}"),
            f if f % 10 == 0 => format!("{whole}.{} {name}", f / 10),
            f => format!("{whole}.{f:02} {name}"),
        }
    };
    if bytes >= GIB && exact(GIB) {
        show(GIB, "GiB")
    } else if bytes < 10 * GIB && exact(MIB) {
        show(MIB, "MiB")
    } else if bytes < MIB && bytes.is_multiple_of(KIB) {
        show(KIB, "KiB")
    } else if bytes >= GIB {
        format!("about {}", show(GIB, "GiB"))
    } else if bytes >= MIB {
        format!("about {}", show(MIB, "MiB"))
    } else {
        format!("{bytes} B")
    }
}

/// `1 vCPU`, `4 vCPUs`.
pub(crate) fn vcpus(n: u64) -> String {
    if n == 1 {
        "1 vCPU".to_owned()
    } else {
        format!("{n} vCPUs")
    }
}

/// The id of a cluster's layer in the plan: `<cluster>/<layer>`.
pub(crate) fn layer_id(cluster: &str, layer: &str) -> String {
    format!("{cluster}/{layer}")
}
