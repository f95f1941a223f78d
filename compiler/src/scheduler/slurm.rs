//! Slurm: `slurm.conf` (the compute nodes and the partitions) and `cgroup.conf` on
//! every node of the batch system, with a munge key made once per cluster; `munge`
//! everywhere, `slurmctld` on the controller and `slurmd` on compute nodes.

use super::{BatchSystem, Daemon, Part, Queues, Secret};
use crate::model::SchedulerKind;
use crate::render::data::{queue_vars, value, ClusterFacts, MIB};
use crate::render::{hostlist, template_list, ClusterFiles, RenderError, To};
use serde::Serialize;

/// The size of a munge key: 1024 random bytes.
pub const MUNGE_KEY_LEN: usize = 1024;

/// The key munge authenticates the cluster's daemons and users with.
pub const MUNGE_KEY: Secret = Secret {
    name: "munge.key",
    len: MUNGE_KEY_LEN,
    path: "/etc/munge/munge.key",
};

template_list! {
    pub(super) TEMPLATES {
        "slurm.conf" => "/etc/slurm/slurm.conf", Cluster, Config;
        "cgroup.conf" => "/etc/slurm/cgroup.conf", Cluster, Config;
    }
}

pub struct Slurm;

impl BatchSystem for Slurm {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Slurm
    }

    fn words(&self) -> &'static [&'static str] {
        &["slurm"]
    }

    fn queues(&self) -> Queues {
        Queues::Named {
            word: "partition",
            implicit: "batch",
        }
    }

    fn daemons(&self) -> &'static [Daemon] {
        &[
            Daemon {
                part: Part::Any,
                names: &["munge"],
            },
            Daemon {
                part: Part::Controller,
                names: &["slurmctld"],
            },
            Daemon {
                part: Part::Compute,
                names: &["slurmd"],
            },
        ]
    }

    fn secrets(&self) -> &'static [Secret] {
        &[MUNGE_KEY]
    }

    fn cluster_files(&self, files: &mut ClusterFiles<'_, '_>) -> Result<(), RenderError> {
        let facts = files.facts();
        let source = facts.cluster.origin.location.as_str();
        let vars = vec![
            ("nodes", value(nodes(facts))),
            ("partitions", value(queue_vars(facts))),
        ];
        files.render(
            To::Members,
            "slurm.conf",
            "/etc/slurm/slurm.conf",
            vars,
            source,
        )?;
        files.render(
            To::Members,
            "cgroup.conf",
            "/etc/slurm/cgroup.conf",
            vec![],
            source,
        )
    }
}

/// The compute nodes of one role, as a `NodeName` line of slurm.conf.
#[derive(Serialize)]
struct Nodes<'a> {
    /// A hostlist expression: `worker[1-8]`.
    names: String,
    role: &'a str,
    cpus: u32,
    memory_mib: u64,
}

fn nodes<'a>(facts: &ClusterFacts<'a>) -> Vec<Nodes<'a>> {
    facts
        .cluster
        .roles
        .iter()
        .filter(|r| r.scheduler.as_ref().is_some_and(|s| s.compute))
        .map(|r| Nodes {
            names: hostlist(facts.cluster.nodes_of(&r.name).map(|n| n.hostname.as_str())),
            role: &r.name,
            cpus: r.cpu,
            memory_mib: r.memory / MIB,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::started;
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
    fn a_cluster_gets_one_munge_key_and_partitions() {
        assert_eq!(Slurm.secrets()[0].path, "/etc/munge/munge.key");
        assert_eq!(Slurm.queues().word(), "partition");
        let part = super::super::tests::role(SchedulerKind::Slurm, "compute");
        let part = part.scheduler.as_ref().unwrap();
        assert!(Slurm.role_files(part).is_empty());
        assert!(Slurm.role_vars(part).is_empty());
    }
}
