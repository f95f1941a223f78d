//! HTCondor: one `condor_config.local` per role, whose `DAEMON_LIST` says what the
//! role's `condor` service runs (the central manager's daemons on the controller, a
//! startd on compute nodes, a schedd on submit nodes). HTCondor has no queues: it
//! matches jobs to machines.

use super::{BatchSystem, Daemon, Queues};
use crate::model::{SchedRole, SchedulerKind};
use crate::render::template_list;
use serde_json::{json, Value};

pub struct Condor;

impl BatchSystem for Condor {
    fn kind(&self) -> SchedulerKind {
        SchedulerKind::Condor
    }

    fn queues(&self) -> Queues {
        Queues::None {
            title: "HTCondor",
            instead: "HTCondor matches jobs to machines instead",
        }
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["htcondor"]
    }

    fn daemons(&self) -> &'static [Daemon] {
        const { &[Daemon::any(&["condor"])] }
    }

    /// Its configuration differs by role, so it has no cluster-wide files.
    fn role_files(&self, _: &SchedRole) -> Vec<&'static str> {
        vec!["condor_config.local"]
    }

    fn role_vars(&self, part: &SchedRole) -> Vec<(&'static str, Value)> {
        vec![("condor", json!({ "daemons": daemon_list(part) }))]
    }
}

/// The daemons of a role's `DAEMON_LIST`.
fn daemon_list(s: &SchedRole) -> String {
    let mut d = vec!["MASTER"];
    if s.controller {
        d.extend(["COLLECTOR", "NEGOTIATOR", "SCHEDD"]);
    }
    if s.compute {
        d.push("STARTD");
    }
    if s.submit && !d.contains(&"SCHEDD") {
        d.push("SCHEDD");
    }
    d.join(", ")
}

template_list! {
    "condor_config.local" => "/etc/condor/condor_config.local", Role, Config;
}

#[cfg(test)]
mod tests {
    use super::super::tests::{role, started};
    use super::*;

    fn daemons_of(part: &str) -> Value {
        let r = role(SchedulerKind::Condor, part);
        let vars = Condor.role_vars(r.scheduler.as_ref().unwrap());
        vars[0].1["daemons"].clone()
    }

    #[test]
    fn every_role_runs_condor_and_its_daemon_list_says_what_for() {
        for part in ["controller", "compute", "submit"] {
            assert_eq!(started(SchedulerKind::Condor, part), ["condor"]);
        }
        assert_eq!(
            daemons_of("controller"),
            "MASTER, COLLECTOR, NEGOTIATOR, SCHEDD"
        );
        assert_eq!(daemons_of("compute"), "MASTER, STARTD");
        assert_eq!(daemons_of("compute submit"), "MASTER, STARTD, SCHEDD");
        assert_eq!(
            daemons_of("controller submit"),
            "MASTER, COLLECTOR, NEGOTIATOR, SCHEDD"
        );
    }

    #[test]
    fn every_role_gets_its_own_configuration_and_no_queue() {
        let r = role(SchedulerKind::Condor, "submit");
        let files = Condor.role_files(r.scheduler.as_ref().unwrap());
        assert_eq!(files, ["condor_config.local"]);
        assert!(matches!(Condor.queues(), Queues::None { .. }));
        assert!(Condor.secrets().is_empty());
    }
}
