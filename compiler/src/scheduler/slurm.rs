//! Slurm: `slurm.conf` (the compute nodes and the partitions) and `cgroup.conf` on
//! every node of the batch system, with a munge key made once per cluster; `munge`
//! everywhere, `slurmctld` on the controller and `slurmd` on compute nodes.
//!
//! The standby nodes of elastic roles (`count MIN..MAX`) are cloud nodes
//! (`State=CLOUD`), which Slurm starts out knowing as powered down, and the cluster
//! gets Slurm's power saving: a node idle for the role's `idle` is powered down, a job
//! that needs one powers it up. Slurm's own programs for that do nothing
//! (`/bin/true`): the site's loop watches the node states and starts and stops the VMs.

mod hostlist;

use super::{BatchSystem, Daemon, Drain, Queues, Secret};
use crate::model::{Role, SchedulerKind};
use crate::render::data::{queue_vars, value, ClusterFacts, QueueVars, MIB};
use crate::render::{template_list, ClusterFiles, RenderError, To};
pub use hostlist::compress as hostlist;
use serde::Serialize;

/// The size of a munge key: 1024 random bytes.
pub const MUNGE_KEY_LEN: usize = 1024;

/// The key munge authenticates the cluster's daemons and users with.
pub const MUNGE_KEY: Secret = Secret {
    name: "munge.key",
    len: MUNGE_KEY_LEN,
    path: "/etc/munge/munge.key",
    owner: "munge",
};

pub struct Slurm;

/// A node leaves Slurm drained: `DRAIN` lets its running jobs finish and starts no new
/// ones; it is empty once `squeue` lists no running or completing job on it.
pub const DRAIN: Drain = Drain {
    start: &[
        "scontrol",
        "update",
        "nodename={node}",
        "state=drain",
        "reason=vocc: the node leaves the cluster",
    ],
    jobs: &[
        "squeue",
        "--noheader",
        "--nodelist={node}",
        "--states=RUNNING,COMPLETING",
        "--format=%A",
    ],
};

impl BatchSystem for Slurm {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Slurm
    }

    fn drain(&self) -> Option<Drain> {
        Some(DRAIN)
    }

    fn secrets(&self) -> &'static [Secret] {
        &[MUNGE_KEY]
    }

    fn queues(&self) -> Queues {
        Queues::Named {
            word: "partition",
            implicit: "batch",
        }
    }

    fn daemons(&self) -> &'static [Daemon] {
        const {
            &[
                Daemon::any(&["munge"]),
                Daemon::controller(&["slurmctld"]),
                Daemon::compute(&["slurmd"]),
            ]
        }
    }

    fn cluster_files(&self, files: &mut ClusterFiles<'_, '_>) -> Result<(), RenderError> {
        let facts = files.facts();
        let vars = vec![
            ("nodes", value(nodes(facts))),
            ("partitions", value(partitions(facts))),
            ("power", value(power(facts))),
        ];
        files.render(To::Members, "slurm.conf", vars)?;
        // slurmd without systemd's D-Bus.
        files.render(To::Members, "cgroup.conf", vec![])
    }
}

template_list! {
    "slurm.conf" => "/etc/slurm/slurm.conf", Cluster, Config;
    "cgroup.conf" => "/etc/slurm/cgroup.conf", Cluster, Config;
}

/// Compute nodes of one role, as a `NodeName` line of slurm.conf: the nodes that run
/// from the start (`UNKNOWN`: Slurm learns their state when their slurmd registers),
/// or the standby nodes of an elastic role (`CLOUD`: powered down until started).
#[derive(Serialize)]
struct Nodes<'a> {
    /// A hostlist expression: `worker[1-8]`.
    names: String,
    role: &'a str,
    cpus: u32,
    memory_mib: u64,
    state: &'static str,
}

/// The host names of the nodes of `role`, as a hostlist expression.
fn names(facts: &ClusterFacts<'_>, role: &Role) -> String {
    hostlist(
        facts
            .cluster
            .nodes_of(&role.name)
            .map(|n| n.hostname.as_str()),
    )
}

/// The host names of the nodes of `role` that are standby nodes (or, with `standby`
/// false, that are not), as a hostlist expression.
fn names_where(facts: &ClusterFacts<'_>, role: &Role, standby: bool) -> String {
    hostlist(
        facts
            .cluster
            .nodes_of(&role.name)
            .filter(|n| role.standby(n.index) == standby)
            .map(|n| n.hostname.as_str()),
    )
}

fn compute_roles<'a>(facts: &ClusterFacts<'a>) -> impl Iterator<Item = &'a Role> {
    facts
        .cluster
        .roles
        .iter()
        .filter(|r| r.scheduler.as_ref().is_some_and(|s| s.compute))
}

fn nodes<'a>(facts: &ClusterFacts<'a>) -> Vec<Nodes<'a>> {
    let mut lines = Vec::new();
    for r in compute_roles(facts) {
        for (standby, state) in [(false, "UNKNOWN"), (true, "CLOUD")] {
            let names = names_where(facts, r, standby);
            if !names.is_empty() {
                lines.push(Nodes {
                    names,
                    role: &r.name,
                    cpus: r.cpu,
                    memory_mib: r.memory / MIB,
                    state,
                });
            }
        }
    }
    lines
}

/// Slurm's power saving, for a cluster with standby compute nodes.
#[derive(Serialize)]
struct Power {
    /// Seconds a node stays idle before Slurm powers it down: the smallest `idle` of
    /// the elastic compute roles (Slurm has one per cluster, or per partition, and a
    /// partition may hold several roles).
    suspend_secs: u64,
    /// The compute nodes that are not standby nodes, which Slurm never powers down.
    exclude: String,
}

fn power(facts: &ClusterFacts<'_>) -> Option<Power> {
    let elastic: Vec<&Role> = compute_roles(facts)
        .filter(|r| r.min.is_some_and(|min| min < r.count))
        .collect();
    let suspend_secs = elastic.iter().filter_map(|r| r.idle).min()?;
    let always: Vec<String> = compute_roles(facts)
        .map(|r| names_where(facts, r, false))
        .filter(|s| !s.is_empty())
        .collect();
    Some(Power {
        suspend_secs,
        exclude: always.join(","),
    })
}

/// The partitions, each with its nodes as hostlist expressions (one per role that
/// serves it), separated by commas.
fn partitions<'a>(facts: &ClusterFacts<'a>) -> Vec<QueueVars<'a>> {
    let mut partitions = queue_vars(facts);
    for (vars, q) in partitions.iter_mut().zip(&facts.queues) {
        let mut lists: Vec<String> = q.roles.iter().map(|r| names(facts, r)).collect();
        lists.retain(|s| !s.is_empty());
        vars.nodes = lists.join(",");
    }
    partitions
}

#[cfg(test)]
mod tests {
    use super::super::tests::{role, started};
    use super::*;

    #[test]
    fn munge_runs_everywhere_slurmctld_on_the_controller_slurmd_on_compute_nodes() {
        let k = SchedulerKind::Slurm;
        assert_eq!(started(k, "controller"), ["munge", "slurmctld"]);
        assert_eq!(started(k, "compute"), ["munge", "slurmd"]);
        assert_eq!(
            started(k, "controller compute"),
            ["munge", "slurmctld", "slurmd"]
        );
        assert_eq!(started(k, "submit"), ["munge"]);
    }

    #[test]
    fn a_cluster_gets_one_munge_key_and_partitions_and_roles_nothing_of_their_own() {
        assert_eq!(Slurm.secrets()[0].path, "/etc/munge/munge.key");
        assert_eq!(Slurm.queues().word(), "partition");
        for part in ["controller", "compute submit"] {
            let r = role(SchedulerKind::Slurm, part);
            let part = r.scheduler.as_ref().unwrap();
            assert!(Slurm.role_files(part).is_empty());
            assert!(Slurm.role_vars(part).is_empty());
        }
    }
}
