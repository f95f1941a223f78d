//! PBS/Torque: `server_name` on every node of the batch system; on the controller the
//! server's `nodes` file and a `qmgr` script that makes the queues; the MOM's
//! configuration on compute nodes. `trqauthd` everywhere, `pbs_server` and
//! `pbs_sched` on the controller, `pbs_mom` on compute nodes, each under the name of
//! Torque's own unit or of Debian's older SysV script.

use super::{BatchSystem, Daemon, Part, Queues, RoleFile};
use crate::model::{SchedRole, SchedulerKind};
use crate::render::data::{queue_vars, value, ClusterFacts};
use crate::render::{template_list, ClusterFiles, RenderError, To};
use serde::Serialize;

template_list! {
    pub(super) TEMPLATES {
        "pbs-server_name" => "/var/spool/torque/server_name", Cluster, Config;
        "pbs-nodes" => "/var/spool/torque/server_priv/nodes", Cluster, Config;
        "pbs-qmgr" => "/etc/vocc/pbs/qmgr", Cluster, Config;
        "pbs-mom_config" => "/var/spool/torque/mom_priv/config", Role, Config;
    }
}

pub struct Pbs;

impl BatchSystem for Pbs {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Pbs
    }

    fn words(&self) -> &'static [&'static str] {
        &["pbs", "torque"]
    }

    fn queues(&self) -> Queues {
        Queues::Named {
            word: "queue",
            implicit: "batch",
        }
    }

    fn daemons(&self) -> &'static [Daemon] {
        &[
            // Torque 4 and later: client commands and pbs_server authorize through
            // trqauthd.
            Daemon {
                part: Part::Any,
                names: &["trqauthd"],
            },
            Daemon {
                part: Part::Controller,
                names: &["pbs_server", "torque-server"],
            },
            Daemon {
                part: Part::Controller,
                names: &["pbs_sched", "torque-scheduler"],
            },
            Daemon {
                part: Part::Compute,
                names: &["pbs_mom", "torque-mom"],
            },
        ]
    }

    fn cluster_files(&self, files: &mut ClusterFiles<'_, '_>) -> Result<(), RenderError> {
        let facts = files.facts();
        let source = facts.cluster.origin.location.as_str();
        files.render(
            To::Members,
            "pbs-server_name",
            "/var/spool/torque/server_name",
            vec![],
            source,
        )?;
        files.render(
            To::Controller,
            "pbs-nodes",
            "/var/spool/torque/server_priv/nodes",
            vec![("nodes", value(nodes(facts)))],
            source,
        )?;
        files.render(
            To::Controller,
            "pbs-qmgr",
            "/etc/vocc/pbs/qmgr",
            vec![("queues", value(queue_vars(facts)))],
            source,
        )
    }

    fn role_files(&self, part: &SchedRole) -> Vec<RoleFile> {
        let mom = RoleFile {
            template: "pbs-mom_config",
            path: "/var/spool/torque/mom_priv/config",
        };
        part.compute.then_some(mom).into_iter().collect()
    }
}

/// A line of the server's `nodes` file.
#[derive(Serialize)]
struct Node<'a> {
    hostname: &'a str,
    np: u32,
    /// The queues the node serves, as node properties (`batch osg`).
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
        for n in c.nodes_of(&r.name) {
            out.push(Node {
                hostname: &n.hostname,
                np: r.cpu,
                properties: properties.clone(),
            });
        }
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
        let files =
            |part| Pbs.role_files(role(SchedulerKind::Pbs, part).scheduler.as_ref().unwrap());
        assert_eq!(
            files("compute"),
            [RoleFile {
                template: "pbs-mom_config",
                path: "/var/spool/torque/mom_priv/config"
            }]
        );
        assert!(files("controller submit").is_empty());
        assert_eq!(Pbs.queues().word(), "queue");
    }
}
