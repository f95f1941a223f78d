//! The batch systems a cluster may run, one module each behind [`BatchSystem`]:
//! [`slurm`], [`condor`] (HTCondor), [`sge`] (Grid Engine) and [`pbs`] (PBS/Torque).
//!
//! A module owns everything that is particular to its batch system: the words that
//! name it in `scheduler KIND`, how it treats queues (its name for them, the queue a
//! cluster gets when it declares none, or none at all), its daemons and which part of
//! the batch system runs each, the secrets its clusters need, its templates and the
//! files it renders per cluster and per role. The rest of the compiler asks the module
//! of a cluster's [`SchedulerKind`] ([`of`]) and decides nothing about a batch system
//! itself: the parser reads `scheduler KIND` through [`named`], the checker applies
//! [`BatchSystem::queues`], the renderer calls [`BatchSystem::cluster_files`] and
//! [`BatchSystem::role_files`] and writes [`services`] to `/etc/vocc/services`, and
//! the secrets of [`BatchSystem::secrets`] are made by `secrets.rs`, installed by the
//! renderer, and handed to their user by the boot hook (`VOCC_SECRETS` in `node.env`).
//!
//! What every batch system shares stays out of the modules: one kind per cluster, one
//! controller of one node, the queues of the cluster and which compute roles serve
//! them (`check::scheduler`, `render/data.rs`), and the boot hook, which starts the
//! daemons `/etc/vocc/services` marks `on` and keeps those marked `off` from starting.
//!
//! Adding a batch system is adding a module here with its templates and tests, and
//! listing it in [`ALL`] and [`TEMPLATES`].

pub mod condor;
pub mod pbs;
pub mod sge;
pub mod slurm;

use crate::model::{Role, SchedRole, SchedulerKind};
use crate::render::{ClusterFiles, RenderError, TemplateInfo};
use serde::Serialize;
use serde_json::Value;

/// One batch system: what its statements mean, how it is checked, what it renders
/// and what its nodes run. What most batch systems do is the default.
pub trait BatchSystem: Sync {
    /// The kind of the model this module implements; `scheduler KIND` names it by
    /// the kind's name.
    fn kind(&self) -> SchedulerKind;

    /// Other words that name it after `scheduler` (`torque` for `pbs`).
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }

    /// How it sorts jobs: by default into queues, a cluster that declares none
    /// getting one named `batch`.
    fn queues(&self) -> Queues {
        Queues::Named {
            word: "queue",
            implicit: "batch",
        }
    }

    /// Its daemons, each with the part of the batch system that runs it, in the order
    /// `/etc/vocc/services` lists them.
    fn daemons(&self) -> &'static [Daemon];

    /// The secrets a cluster running it needs, made once per cluster and installed on
    /// every node of the batch system.
    fn secrets(&self) -> &'static [Secret] {
        &[]
    }

    /// Renders the files that nodes share with the whole cluster (`files` says who
    /// gets each).
    fn cluster_files(&self, files: &mut ClusterFiles<'_, '_>) -> Result<(), RenderError> {
        let _ = files;
        Ok(())
    }

    /// The templates a role with `part` in the batch system renders once per role,
    /// each to the guest path it produces.
    fn role_files(&self, part: &SchedRole) -> Vec<&'static str> {
        let _ = part;
        Vec::new()
    }

    /// Variables its role templates see besides the common ones, by name.
    fn role_vars(&self, part: &SchedRole) -> Vec<(&'static str, Value)> {
        let _ = part;
        Vec::new()
    }

    /// Debconf answers every Debian layer is built with (`owner question type value`):
    /// a batch system's packages install unconfigured, since a node learns its
    /// cluster (its controller, its hosts) only when it boots.
    fn debconf(&self) -> &'static [&'static str] {
        &[]
    }

    /// How a compute node is drained before it leaves the cluster (the plan's
    /// `batch.drain`, run on the controller); none when the batch system has no drain
    /// step, and the runtime then stops the node without one.
    fn drain(&self) -> Option<Drain> {
        None
    }
}

/// A drain: a command that stops new jobs from starting on a node, and one that lists
/// the node's jobs (no output: none left). `{node}` in an argument stands for the
/// node's host name; the runtime runs both as argument vectors, never through a shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    pub start: &'static [&'static str],
    pub jobs: &'static [&'static str],
}

/// The debconf answers of every batch system (`BatchSystem::debconf`).
pub fn debconf() -> Vec<&'static str> {
    ALL.iter()
        .flat_map(|s| s.debconf().iter().copied())
        .collect()
}

/// Where a batch system's boot steps are, on the nodes that have them: `setup` runs
/// before its daemons start (`vocc-batch-setup.service`), `configure` once they run
/// and before the node says it is ready (`vocc-batch-configure.service`). Both are
/// run by `/bin/sh` and must be safe to run at every boot.
pub const SETUP: &str = "/etc/vocc/batch/setup";
pub const CONFIGURE: &str = "/etc/vocc/batch/configure";

/// Every batch system vocc knows, in the order `/etc/vocc/services` lists their
/// daemons (and `scheduler KIND` offers them).
pub static ALL: &[&dyn BatchSystem] = &[&slurm::Slurm, &condor::Condor, &sge::Sge, &pbs::Pbs];

/// The templates of every batch system, by module.
pub const TEMPLATES: &[&[TemplateInfo]] = &[
    slurm::TEMPLATES,
    pbs::TEMPLATES,
    sge::TEMPLATES,
    condor::TEMPLATES,
];

/// The module of a kind.
pub fn of(kind: SchedulerKind) -> &'static dyn BatchSystem {
    match ALL.iter().find(|s| s.kind() == kind) {
        Some(s) => *s,
        // Every kind has a module: `every_kind_has_one_module` proves it.
        None => &slurm::Slurm,
    }
}

/// The batch system `word` names after `scheduler`.
pub fn named(word: &str) -> Option<&'static dyn BatchSystem> {
    ALL.iter()
        .copied()
        .find(|s| s.kind().as_str() == word || s.aliases().contains(&word))
}

/// Every word `scheduler KIND` accepts.
pub fn words() -> Vec<&'static str> {
    ALL.iter()
        .flat_map(|s| std::iter::once(s.kind().as_str()).chain(s.aliases().iter().copied()))
        .collect()
}

/// How a batch system sorts jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queues {
    /// Into named queues. `word` is what the batch system calls one in messages
    /// (`partition`); a cluster that declares none gets one queue named `implicit`
    /// (and compute roles that name none serve it).
    Named {
        word: &'static str,
        implicit: &'static str,
    },
    /// Not at all: a declared queue is an error. `title` names the batch system in
    /// messages and `instead` says how it places jobs.
    None {
        title: &'static str,
        instead: &'static str,
    },
}

impl Queues {
    /// What messages call a queue.
    pub fn word(self) -> &'static str {
        match self {
            Queues::Named { word, .. } => word,
            Queues::None { .. } => "queue",
        }
    }
}

/// The part of a batch system a daemon belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Every node that takes part in the batch system.
    Any,
    Controller,
    Compute,
}

impl Part {
    /// Whether a role with `part` in the batch system runs the daemons of this part.
    pub fn of(self, part: &SchedRole) -> bool {
        match self {
            Part::Any => true,
            Part::Controller => part.controller,
            Part::Compute => part.compute,
        }
    }
}

/// One daemon, under the names its service has in the packagings vocc knows: a
/// systemd unit, or a SysV script that systemd runs through its generator. The boot
/// hook starts the first of them a layer has.
#[derive(Debug, Clone, Copy)]
pub struct Daemon {
    pub part: Part,
    pub names: &'static [&'static str],
}

impl Daemon {
    /// A daemon every node of the batch system runs.
    pub const fn any(names: &'static [&'static str]) -> Daemon {
        Daemon {
            part: Part::Any,
            names,
        }
    }

    /// A daemon of the controller.
    pub const fn controller(names: &'static [&'static str]) -> Daemon {
        Daemon {
            part: Part::Controller,
            names,
        }
    }

    /// A daemon of compute nodes.
    pub const fn compute(names: &'static [&'static str]) -> Daemon {
        Daemon {
            part: Part::Compute,
            names,
        }
    }
}

/// A secret of a cluster: `len` random bytes, kept as `<secrets>/<cluster>/<name>`
/// and installed at the guest path `path` on every node of the batch system, where
/// the boot hook gives it to the user `owner` alone (0400).
#[derive(Debug, Clone, Copy)]
pub struct Secret {
    pub name: &'static str,
    pub len: usize,
    pub path: &'static str,
    pub owner: &'static str,
}

/// One line of `/etc/vocc/services`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Service {
    /// Whether the role runs the daemon (a shared layer carries every role's).
    pub on: bool,
    /// The names of its service, space-separated.
    pub names: String,
}

/// Every daemon of every batch system, and whether nodes of `role` run it: those of
/// the role's part in its batch system on, all others off. This is the one place
/// that decides which batch daemons a node starts.
pub fn services(role: &Role) -> Vec<Service> {
    ALL.iter()
        .flat_map(|system| {
            let part = role.scheduler.as_ref().filter(|s| s.kind == system.kind());
            system.daemons().iter().map(move |d| Service {
                on: part.is_some_and(|p| d.part.of(p)),
                names: d.names.join(" "),
            })
        })
        .collect()
}

/// The systemd units of every batch system's daemons, one space-separated list per
/// batch system: the readiness marker waits for them ([`crate::image::ready_unit`]).
pub fn ready_after() -> Vec<String> {
    ALL.iter()
        .map(|system| {
            let names = system.daemons().iter().flat_map(|d| d.names.iter());
            let units: Vec<String> = names.map(|n| format!("{n}.service")).collect();
            units.join(" ")
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{Origin, Persistence};

    /// A role with `part` in batch system `kind` (`None`: in none).
    pub(crate) fn role(kind: SchedulerKind, part: &str) -> Role {
        let sched = SchedRole {
            kind,
            controller: part.contains("controller"),
            compute: part.contains("compute"),
            submit: part.contains("submit"),
            queues: Vec::new(),
            queue_spans: Vec::new(),
            origin: origin(),
        };
        Role {
            name: "r".into(),
            count: 1,
            numbered: false,
            min: None,
            idle: None,
            root: Vec::new(),
            packages: Vec::new(),
            disks: Vec::new(),
            cpu: 1,
            pinned: false,
            memory: 1 << 30,
            swap: None,
            nics: Vec::new(),
            exports: Vec::new(),
            mounts: Vec::new(),
            scheduler: (!part.is_empty()).then_some(sched),
            persistence: Persistence::Persistent,
            cmdline: Vec::new(),
            origin: origin(),
        }
    }

    fn origin() -> Origin {
        Origin {
            span: vocc_dsl::Span::default(),
            location: "a.voc:1:1".into(),
        }
    }

    /// The service names a role of `kind` with `part` starts.
    pub(crate) fn started(kind: SchedulerKind, part: &str) -> Vec<String> {
        services(&role(kind, part))
            .into_iter()
            .filter(|s| s.on)
            .map(|s| s.names)
            .collect()
    }

    #[test]
    fn every_kind_has_one_module() {
        for kind in [
            SchedulerKind::Slurm,
            SchedulerKind::Pbs,
            SchedulerKind::Sge,
            SchedulerKind::Condor,
        ] {
            assert_eq!(ALL.iter().filter(|s| s.kind() == kind).count(), 1);
            assert_eq!(of(kind).kind(), kind);
        }
        assert_eq!(TEMPLATES.len(), ALL.len());
    }

    /// A batch system's files go where their templates say they go.
    #[test]
    fn every_batch_template_produces_a_guest_path() {
        for t in TEMPLATES.iter().flat_map(|t| t.iter()) {
            assert!(t.produces.starts_with('/'), "{}", t.name);
            assert!(!t.produces.contains(' '), "{}", t.name);
            assert_eq!(
                crate::render::info(t.name).map(|i| i.produces),
                Some(t.produces)
            );
        }
    }

    #[test]
    fn every_word_names_one_batch_system() {
        let words = words();
        assert_eq!(
            words,
            ["slurm", "condor", "htcondor", "sge", "pbs", "torque"]
        );
        let mut unique = words.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), words.len());
        assert_eq!(named("torque").map(|s| s.kind()), Some(SchedulerKind::Pbs));
        assert!(named("lsf").is_none());
    }

    #[test]
    fn a_role_outside_every_batch_system_starts_no_daemon_and_lists_them_all() {
        let none = role(SchedulerKind::Slurm, "");
        let all = services(&none);
        assert!(all.iter().all(|s| !s.on));
        let daemons: usize = ALL.iter().map(|s| s.daemons().len()).sum();
        assert_eq!(all.len(), daemons);
    }

    #[test]
    fn no_service_name_belongs_to_two_daemons() {
        let mut names: Vec<&str> = ALL
            .iter()
            .flat_map(|s| s.daemons())
            .flat_map(|d| d.names.iter().copied())
            .collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
    }

    /// `vocc-ready.service` prints the readiness marker after the services vocc
    /// starts: it is ordered after every batch daemon under each of its names, and
    /// systemd reads it.
    #[test]
    fn the_readiness_unit_waits_for_every_batch_daemon() {
        let unit = crate::image::ready_unit();
        let after: Vec<&str> = unit
            .lines()
            .filter_map(|l| l.strip_prefix("After="))
            .flat_map(str::split_whitespace)
            .collect();
        for system in ALL {
            for d in system.daemons() {
                for name in d.names {
                    let unit = format!("{name}.service");
                    assert!(after.contains(&unit.as_str()), "{unit}");
                }
            }
        }
        assert!(after.contains(&"nfs-server.service"));
        verify("vocc-ready.service", &unit);
    }

    /// systemd reads `unit` (named `name`) without a complaint.
    fn verify(name: &str, unit: &str) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(name);
        std::fs::write(&path, unit).unwrap();
        let verify = std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .expect("`systemd-analyze` is not installed: install the Debian package `systemd`");
        let said = String::from_utf8_lossy(&verify.stderr);
        assert!(
            verify.status.success() && said.trim().is_empty(),
            "{said}\n{unit}"
        );
    }

    /// A batch system's setup runs before any batch daemon, its configuration after
    /// every one and before the readiness marker; systemd reads both units.
    #[test]
    fn batch_steps_run_before_and_after_the_daemons() {
        let setup = crate::image::batch_setup_unit();
        let configure = crate::image::batch_configure_unit();
        let listed = |unit: &str, key: &str| -> Vec<String> {
            unit.lines()
                .filter_map(|l| l.strip_prefix(key))
                .flat_map(str::split_whitespace)
                .map(str::to_owned)
                .collect()
        };
        let (before, after) = (listed(&setup, "Before="), listed(&configure, "After="));
        for system in ALL {
            for d in system.daemons() {
                for name in d.names {
                    let unit = format!("{name}.service");
                    assert!(before.contains(&unit), "setup before {unit}");
                    assert!(after.contains(&unit), "configure after {unit}");
                }
            }
        }
        assert!(listed(&configure, "Before=").contains(&"vocc-ready.service".to_owned()));
        assert!(setup.contains(&format!("ConditionPathExists={SETUP}")));
        assert!(configure.contains(&format!("ConditionPathExists={CONFIGURE}")));
        verify("vocc-batch-setup.service", &setup);
        verify("vocc-batch-configure.service", &configure);
    }
}
