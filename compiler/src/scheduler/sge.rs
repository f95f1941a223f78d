//! Grid Engine (SGE): `act_qmaster` on every node of the batch system; on the
//! controller a host group and a queue per queue, an access list per VO a queue is
//! for, `setup` (the cell's spool, made at first boot for this controller) and
//! `configure` (`qconf.sh`), which loads the rest once the master runs. `gridengine-master`
//! on the controller and `gridengine-exec` on compute nodes (Debian's SysV scripts).

use super::{BatchSystem, Daemon, Queues};
use crate::model::SchedulerKind;
use crate::render::data::{queue_vars, value, ClusterFacts, QueueFacts, QueueVars};
use crate::render::{template_list, ClusterFiles, RenderError, To};

pub struct Sge;

impl BatchSystem for Sge {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Sge
    }

    fn daemons(&self) -> &'static [Daemon] {
        const {
            &[
                Daemon::controller(&["gridengine-master"]),
                Daemon::compute(&["gridengine-exec"]),
            ]
        }
    }

    /// Grid Engine's catch-all queue is `all.q`.
    fn queues(&self) -> Queues {
        Queues::Named {
            word: "queue",
            implicit: "all.q",
        }
    }

    /// Debian's packages would make a cell for the build machine: the controller makes
    /// its own at boot (`sge-setup.sh`).
    fn debconf(&self) -> &'static [&'static str] {
        &["gridengine-common shared/gridengineconfig boolean false"]
    }

    fn cluster_files(&self, files: &mut ClusterFiles<'_, '_>) -> Result<(), RenderError> {
        let facts = files.facts();
        files.render(To::Members, "sge-act_qmaster", vec![])?;
        files.render(To::Controller, "sge-setup.sh", vec![])?;
        files.render(To::Compute, "sge-registered.sh", vec![])?;
        let queues = queues(facts);
        let mut vos: Vec<&str> = queues.iter().filter_map(|q| q.vo).collect();
        vos.sort_unstable();
        vos.dedup();
        let vars = vec![("queues", value(&queues)), ("usersets", value(&vos))];
        files.render(To::Controller, "sge-qconf.sh", vars)?;
        let source = facts.cluster.origin.location.as_str();
        for vo in &vos {
            let path = format!("/etc/vocc/sge/usersets/{vo}");
            let vars = vec![("vo", value(vo))];
            files.render_at(To::Controller, "sge-userset", &path, vars, source)?;
        }
        // A queue's files come from its statement.
        for q in &queues {
            let per_queue = [
                (
                    "sge-hostgroup",
                    format!("/etc/vocc/sge/hostgroups/{}", q.hostgroup),
                ),
                ("sge-queue", format!("/etc/vocc/sge/queues/{}", q.name)),
            ];
            for (template, path) in per_queue {
                let vars = vec![("queue", value(q))];
                files.render_at(To::Controller, template, &path, vars, q.source)?;
            }
        }
        Ok(())
    }
}

template_list! {
    "sge-act_qmaster" => "/var/lib/gridengine/default/common/act_qmaster", Cluster, Config;
    "sge-hostgroup" => "/etc/vocc/sge/hostgroups/@<queue>hosts", Cluster, Config;
    "sge-queue" => "/etc/vocc/sge/queues/<queue>", Cluster, Config;
    "sge-userset" => "/etc/vocc/sge/usersets/<vo>", Cluster, Config;
    "sge-setup.sh" => "/etc/vocc/batch/setup", Cluster, Config;
    "sge-qconf.sh" => "/etc/vocc/batch/configure", Cluster, Config;
    "sge-registered.sh" => "/etc/vocc/batch/configure", Cluster, Config;
}

/// The queues, each with its host group, hosts and slots.
fn queues<'a>(facts: &ClusterFacts<'a>) -> Vec<QueueVars<'a>> {
    let mut queues = queue_vars(facts);
    for (vars, q) in queues.iter_mut().zip(&facts.queues) {
        vars.hostgroup = format!("@{}hosts", q.name);
        (vars.hosts, vars.slots) = hosts(facts, q);
    }
    queues
}

/// The hosts of a queue's host group (fully qualified, separated by spaces, `NONE` if
/// none), and its slots: the CPUs of its first role, and `[host=n]` for each host
/// with another count.
fn hosts(facts: &ClusterFacts<'_>, q: &QueueFacts<'_>) -> (String, String) {
    let mut hosts = Vec::new();
    let base = q.roles.first().map_or(1, |r| r.cpu);
    let mut slots = base.to_string();
    for r in &q.roles {
        for n in facts.cluster.nodes_of(&r.name) {
            let fqdn = facts.fqdn(&n.hostname);
            if r.cpu != base {
                slots.push_str(&format!(",[{fqdn}={}]", r.cpu));
            }
            hosts.push(fqdn);
        }
    }
    if hosts.is_empty() {
        hosts.push("NONE".into());
    }
    (hosts.join(" "), slots)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{role, started};
    use super::*;

    #[test]
    fn the_master_runs_on_the_controller_and_execds_on_compute_nodes() {
        let k = SchedulerKind::Sge;
        assert_eq!(started(k, "controller"), ["gridengine-master"]);
        assert_eq!(started(k, "compute"), ["gridengine-exec"]);
        assert_eq!(
            started(k, "controller compute"),
            ["gridengine-master", "gridengine-exec"]
        );
        assert!(started(k, "submit").is_empty());
    }

    #[test]
    fn a_cluster_without_queues_gets_all_q_and_roles_get_no_files_of_their_own() {
        assert_eq!(
            Sge.queues(),
            Queues::Named {
                word: "queue",
                implicit: "all.q"
            }
        );
        let r = role(SchedulerKind::Sge, "compute");
        assert!(Sge.role_files(r.scheduler.as_ref().unwrap()).is_empty());
        assert!(Sge.secrets().is_empty());
    }
}
