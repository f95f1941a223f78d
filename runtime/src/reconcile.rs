//! Nodes that leave a cluster: after a size change, `up` finds the nodes its journal
//! knows but the plan no longer has (`Journal::removed`), and takes each out of the
//! cluster in three steps. `drain`: when the cluster has a batch system and the node
//! is one of its compute nodes, the batch system's drain command runs on the
//! controller node (the path `vocc exec` uses), and the node's jobs are listed until
//! none is left or the drain timeout passes; a batch system without a drain step, a
//! node that runs no jobs and a cluster without a batch system make it a no-op that
//! the step's detail says. `stop`: the node's VM ends. `unload`: its disks, overlays,
//! domain and runtime files are removed from its host. Only then does the journal
//! forget the node.
//!
//! Invariant: nothing runs that the journal does not know. A removed node's record
//! (with the node as its plan described it) stays in the journal until its unload has
//! succeeded, so a removal that fails or is killed is taken up again by the next `up`,
//! `status` shows the node as removed meanwhile, and `down` reclaims it.

use crate::dag::{self, Ended};
use crate::driver::{Driver, NodeCtx};
use crate::error::{Error, Result};
use crate::journal::Journal;
use crate::plan::{PlanCluster, PlanDrain, PlanNode, State};
use crate::report::{Failure, NodeReport};
use crate::state::{now_ms, Layout};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long one command of a drain may take on the controller.
const DRAIN_COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// How often a drain asks for the node's jobs.
const DRAIN_POLL: Duration = Duration::from_secs(2);

/// What a removal needs besides the nodes.
pub struct Removal<'a> {
    pub plan: &'a crate::plan::Plan,
    pub cluster: &'a PlanCluster,
    pub layout: &'a Layout,
    pub driver: &'a dyn Driver,
    pub jobs: usize,
    /// How long a drain waits for the node's jobs to finish.
    pub drain_timeout: Duration,
}

/// One step of a removal: how long it took and what it did.
struct Step {
    phase: &'static str,
    ms: f64,
    detail: String,
}

/// The outcome of one node's removal: its steps, and the failure that stopped it.
struct Outcome {
    steps: Vec<Step>,
    failed: Option<Failure>,
}

impl Removal<'_> {
    /// Removes `nodes` (all at once), forgets each in `journal` once it is gone (saving
    /// the journal at `path` after each), and reports each.
    pub fn run(&self, nodes: &[PlanNode], journal: &mut Journal, path: &Path) -> Vec<NodeReport> {
        if nodes.is_empty() {
            return Vec::new();
        }
        let snapshot = journal.clone();
        let deps = vec![Vec::new(); nodes.len()];
        let work = |i: usize| -> std::result::Result<Outcome, ()> {
            Ok(self.remove(&nodes[i], &snapshot))
        };
        let mut reports = Vec::new();
        dag::run(&deps, self.jobs, work, |i, ended| {
            let n = &nodes[i];
            let outcome = match ended {
                Ended::Ran(Ok(o)) => o,
                _ => Outcome {
                    steps: Vec::new(),
                    failed: Some(Failure {
                        step: format!("remove:{}", n.id),
                        message: "not attempted".into(),
                    }),
                },
            };
            let state = match &outcome.failed {
                None => {
                    journal.nodes.remove(&n.id);
                    State::Unstaged
                }
                Some(f) => {
                    let rec = journal.node(&n.id);
                    rec.error = Some(format!("{}: {}", f.step, f.message));
                    rec.updated_ms = now_ms();
                    if outcome.steps.iter().any(|s| s.phase == "stop") {
                        rec.state = State::Stopped;
                        rec.pid = None;
                        rec.ready = false;
                    }
                    rec.node.get_or_insert_with(|| n.clone());
                    rec.state
                }
            };
            // A removal done is a removal recorded: the next `up` need not repeat it.
            let _ = journal.save(path);
            reports.push(NodeReport {
                node: n.id.clone(),
                role: n.role.clone(),
                host: n.host.clone(),
                state,
                phases: outcome
                    .steps
                    .iter()
                    .map(|s| (s.phase.into(), s.ms))
                    .collect(),
                details: outcome
                    .steps
                    .into_iter()
                    .map(|s| (s.phase.into(), s.detail))
                    .collect(),
                error: outcome.failed,
                removed: true,
                standby: false,
            });
        });
        reports.sort_by(|a, b| a.node.cmp(&b.node));
        reports
    }

    fn ctx<'n>(&'n self, node: &'n PlanNode, journal: &'n Journal) -> NodeCtx<'n> {
        NodeCtx {
            plan: self.plan,
            cluster: self.cluster,
            node,
            layout: self.layout,
            segments: &journal.networks,
        }
    }

    /// Drains, stops and unloads one node; a drain that cannot be done is said in its
    /// detail and does not keep the node from being stopped.
    fn remove(&self, node: &PlanNode, journal: &Journal) -> Outcome {
        let mut steps = Vec::new();
        let t = Instant::now();
        let detail = match journal.state(&node.id) {
            State::Running | State::Paused => self.drain(node, journal),
            other => format!("{}: nothing to drain", crate::report::state_name(other)),
        };
        steps.push(Step {
            phase: "drain",
            ms: ms(t),
            detail,
        });
        let ctx = self.ctx(node, journal);
        for phase in ["stop", "unload"] {
            let t = Instant::now();
            let r = match phase {
                // Drained or not, the node goes now: a polite stop would only wait.
                "stop" => self.driver.stop(&ctx, true, Duration::ZERO),
                _ => self.driver.unload(&ctx),
            };
            match r {
                Ok(detail) => steps.push(Step {
                    phase,
                    ms: ms(t),
                    detail,
                }),
                Err(e) => {
                    return Outcome {
                        steps,
                        failed: Some(Failure {
                            step: format!("{phase}:{}", node.id),
                            message: e.to_string(),
                        }),
                    }
                }
            }
        }
        Outcome {
            steps,
            failed: None,
        }
    }

    /// Drains the node in its batch system, as far as there is one; what was done.
    fn drain(&self, node: &PlanNode, journal: &Journal) -> String {
        let Some(batch) = &self.cluster.batch else {
            return "the cluster has no batch system: nothing to drain".into();
        };
        if !batch.compute.contains(&node.role) {
            return format!("not a compute node of {}: nothing to drain", batch.kind);
        }
        let Some(drain) = &batch.drain else {
            return format!(
                "{} has no drain step: the node is stopped with whatever it runs",
                batch.kind
            );
        };
        let Some(controller) = self.plan.nodes.iter().find(|n| n.id == batch.controller) else {
            return format!(
                "the controller `{}` is not in the plan: not drained",
                batch.controller
            );
        };
        if journal.state(&controller.id) != State::Running {
            return format!(
                "the controller `{}` is not running: not drained",
                controller.id
            );
        }
        let ctx = self.ctx(controller, journal);
        match self.drain_on(&ctx, drain, &node.hostname) {
            Ok(detail) => detail,
            Err(e) => format!("could not drain on `{}` ({e}): not drained", controller.id),
        }
    }

    /// Runs the drain's commands on the controller until the node has no job left or
    /// the timeout passes.
    fn drain_on(&self, ctx: &NodeCtx, drain: &PlanDrain, host: &str) -> Result<String> {
        let run = |argv: &[String]| -> Result<String> {
            let argv = PlanDrain::for_node(argv, host);
            let out = self.driver.exec(ctx, &argv, DRAIN_COMMAND_LIMIT)?;
            if out.status != 0 {
                return Err(Error::Other(format!(
                    "`{}` exited with {}: {}",
                    argv.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        };
        let t = Instant::now();
        run(&drain.start)?;
        loop {
            let jobs = run(&drain.jobs)?;
            if jobs.is_empty() {
                return Ok(format!(
                    "drained: no job left after {}",
                    crate::report::time(ms(t))
                ));
            }
            if t.elapsed() >= self.drain_timeout {
                let n = jobs.lines().count();
                return Ok(format!(
                    "{n} job{} still running after the drain timeout of {} s: stopped anyway",
                    if n == 1 { "" } else { "s" },
                    self.drain_timeout.as_secs()
                ));
            }
            std::thread::sleep(DRAIN_POLL.min(self.drain_timeout.saturating_sub(t.elapsed())));
        }
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
