//! PBS/Torque: `server_name` on every node of the batch system; on the controller the
//! server's `nodes` file and a `qmgr` script that makes the queues; the MOM's
//! configuration on compute nodes. `trqauthd` everywhere, `pbs_server` and
//! `pbs_sched` on the controller, `pbs_mom` on compute nodes, each under the name of
//! Torque's own unit or of Debian's older SysV script.

use super::{BatchSystem, Daemon};
use crate::model::{SchedRole, SchedulerKind};
use crate::render::data::{queue_vars, value, ClusterFacts};
use crate::render::{template_list, ClusterFiles, RenderError, To};
use serde::Serialize;

pub struct Pbs;

impl BatchSystem for Pbs {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Pbs
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["torque"]
    }

    fn daemons(&self) -> &'static [Daemon] {
        const {
            &[
                // Torque 4 and later: client commands and pbs_server authorize through
                // trqauthd.
                Daemon::any(&["trqauthd"]),
                Daemon::controller(&["pbs_server", "torque-server"]),
                Daemon::controller(&["pbs_sched", "torque-scheduler"]),
                Daemon::compute(&["pbs_mom", "torque-mom"]),
            ]
        }
    }

    fn cluster_files(&self, files: &mut ClusterFiles<'_, '_>) -> Result<(), RenderError> {
        let facts = files.facts();
        files.render(To::Members, "pbs-server_name", vec![])?;
        let nodes = vec![("nodes", value(nodes(facts)))];
        files.render(To::Controller, "pbs-nodes", nodes)?;
        let queues = vec![("queues", value(queue_vars(facts)))];
        files.render(To::Controller, "pbs-qmgr", queues)?;
        files.render(To::Controller, "pbs-configure.sh", vec![])
    }

    fn role_files(&self, part: &SchedRole) -> Vec<&'static str> {
        if part.compute {
            vec!["pbs-mom_config"]
        } else {
            vec![]
        }
    }
}

template_list! {
    "pbs-server_name" => "/var/spool/torque/server_name", Cluster, Config;
    "pbs-nodes" => "/var/spool/torque/server_priv/nodes", Cluster, Config;
    "pbs-qmgr" => "/etc/vocc/pbs/qmgr", Cluster, Config;
    "pbs-configure.sh" => "/etc/vocc/batch/configure", Cluster, Config;
    "pbs-mom_config" => "/var/spool/torque/mom_priv/config", Role, Config;
}

/// A line of the server's `nodes` file: a compute node, its CPUs, and the queues it
/// serves as node properties (`batch osg`).
#[derive(Serialize)]
struct Node<'a> {
    hostname: &'a str,
    np: u32,
    properties: String,
}

fn nodes<'a>(facts: &ClusterFacts<'a>) -> Vec<Node<'a>> {
    let c = facts.cluster;
    let mut out = Vec::new();
    for r in &c.roles {
        if !r.scheduler.as_ref().is_some_and(|s| s.compute) {
            continue;
        }
        let properties = facts.served_queues(r).join(" ");
        out.extend(c.nodes_of(&r.name).map(|n| Node {
            hostname: &n.hostname,
            np: r.cpu,
            properties: properties.clone(),
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{role, started};
    use super::*;

    #[test]
    fn trqauthd_runs_everywhere_the_server_and_scheduler_on_the_controller() {
        let k = SchedulerKind::Pbs;
        assert_eq!(
            started(k, "controller"),
            [
                "trqauthd",
                "pbs_server torque-server",
                "pbs_sched torque-scheduler"
            ]
        );
        assert_eq!(started(k, "compute"), ["trqauthd", "pbs_mom torque-mom"]);
        assert_eq!(started(k, "submit"), ["trqauthd"]);
    }

    #[test]
    fn only_compute_roles_get_the_mom_configuration() {
        let files = |part| {
            let r = role(SchedulerKind::Pbs, part);
            Pbs.role_files(r.scheduler.as_ref().unwrap())
        };
        assert_eq!(files("compute"), ["pbs-mom_config"]);
        assert!(files("controller submit").is_empty());
        assert_eq!(Pbs.queues().word(), "queue");
        assert!(Pbs.secrets().is_empty());
    }
}
