//! The operations on a cluster of a plan: `up` to a state, the lifecycle operations
//! (pause, unpause, stop, unstage), `down`, `status`, `exec` and the console. Each
//! takes the cluster's lock, reads its journal, acts on the selected nodes in parallel
//! through the driver, writes the journal and returns a report.
//!
//! Invariants: a plan reaches this module only through `load_plan`, so every id it
//! names exists and its steps have no cycle. One node's failure never stops another's
//! steps: only the steps that wait for the failed one are skipped, and the report says
//! which node, which step and why. The journal is written atomically, at least every
//! quarter second during a run and at its end.

use crate::dag::{self, Ended};
use crate::driver::{self, Change, Driver, ExecOutput, LoadTimes, NodeCtx, Observed};
use crate::error::{Error, Result};
use crate::journal::{Journal, Staged, StepRecord, StepStatus};
use crate::plan::{steps_until, Action, Plan, PlanCluster, PlanNode, State, Step};
use crate::report::{Failure, NodeReport, Report, StageTiming};
use crate::schema::load_plan;
use crate::state::{now_ms, ClusterLock, Layout};
use crate::{ports, stage};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// How an operation runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Actions in flight at once (booting, waiting, pausing nodes).
    pub jobs: usize,
    /// Layers being staged at once (copies share disks and links).
    pub stage_jobs: usize,
    /// How long a node may take to print its readiness marker.
    pub ready_timeout: Duration,
    /// How long `stop` waits for a polite shutdown before it kills.
    pub stop_grace: Duration,
    /// `stop` kills at once.
    pub force: bool,
    /// How long `up` waits for the jobs of a compute node it removes to finish.
    pub drain_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            jobs: 64,
            stage_jobs: 2,
            ready_timeout: Duration::from_secs(300),
            stop_grace: Duration::from_secs(10),
            force: false,
            drain_timeout: Duration::from_secs(600),
        }
    }
}

/// Which nodes an operation acts on: all (both empty), or those of the named roles and
/// the named nodes (by id or host name). `up` (and `start`) leave standby nodes out
/// unless they are named in `nodes`.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub roles: Vec<String>,
    pub nodes: Vec<String>,
}

impl Selection {
    /// Whether `node` is named in `nodes`, by id or host name.
    pub fn names(&self, node: &PlanNode) -> bool {
        self.nodes
            .iter()
            .any(|n| *n == node.id || *n == node.hostname)
    }
}

/// A lifecycle operation on nodes that are up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Pause,
    Unpause,
    Stop,
    Unstage,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Pause => "pause",
            Op::Unpause => "unpause",
            Op::Stop => "stop",
            Op::Unstage => "unstage",
        }
    }
}

/// A node as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub node: String,
    pub role: String,
    pub host: String,
    /// What the journal says.
    pub state: State,
    pub ready: bool,
    /// What the driver sees now (`absent`, `defined`, `running`, `paused`), if it can
    /// tell.
    pub observed: Option<String>,
    pub pid: Option<i32>,
    pub error: Option<String>,
    /// The plan no longer has the node, but it is not reclaimed yet (the next `up`
    /// drains, stops and reclaims it; `down` reclaims it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
    /// A standby node of an elastic role (the plan's `standby`): `up` starts it only
    /// when it is named.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub standby: bool,
}

/// A plan opened for running, with where its state lives.
pub struct Runtime {
    pub plan: Plan,
    pub plan_path: PathBuf,
    pub layout: Layout,
    pub opts: Options,
    /// Time spent reading and validating the plan.
    pub processing_ms: f64,
    /// The hosts reached over a link and the sessions with them, for as long as the
    /// runtime lives.
    hosts: Option<std::sync::Arc<driver::sited::Hosts>>,
}

impl Runtime {
    /// Opens `plan.json` (or a directory holding one): reads it, checks its schema
    /// version and every reference, before anything acts on it.
    pub fn open(path: &Path, state: Option<&Path>, opts: Options) -> Result<Runtime> {
        let t = Instant::now();
        let plan_path = if path.is_dir() {
            path.join("plan.json")
        } else {
            path.to_path_buf()
        };
        let text =
            std::fs::read_to_string(&plan_path).map_err(|e| Error::io("read", &plan_path, e))?;
        let plan = load_plan(&text)?;
        let out = plan_path.parent().unwrap_or(Path::new("."));
        let out = if out.as_os_str().is_empty() {
            Path::new(".")
        } else {
            out
        };
        let layout = Layout::new(out, &plan.store, state);
        Ok(Runtime {
            hosts: driver::sited::Hosts::of(&plan),
            plan,
            plan_path,
            layout,
            opts,
            processing_ms: t.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// The names of the plan's clusters, or the one asked for (checked).
    pub fn clusters(&self, only: Option<&str>) -> Result<Vec<String>> {
        let all: Vec<String> = self.plan.clusters.iter().map(|c| c.name.clone()).collect();
        match only {
            None => Ok(all),
            Some(name) if all.iter().any(|c| c == name) => Ok(vec![name.to_owned()]),
            Some(name) => Err(Error::Other(format!(
                "the plan has no cluster `{name}`; it has {}",
                quoted(&all)
            ))),
        }
    }

    fn cluster(&self, name: &str) -> Result<&PlanCluster> {
        self.plan
            .clusters
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| Error::Other(format!("the plan has no cluster `{name}`")))
    }

    fn journal(&self, cluster: &str) -> Result<Option<Journal>> {
        Journal::load(&self.layout.journal(cluster))
    }

    /// The driver for a cluster: the one it runs under (from the journal) unless it is
    /// down, else the one asked for, else qemu.
    fn driver(&self, journal: Option<&Journal>, asked: Option<&str>) -> Result<Box<dyn Driver>> {
        let running = journal.filter(|j| {
            !j.driver.is_empty() && j.nodes.values().any(|n| n.state != State::Unstaged)
        });
        let recorded = journal.map(|j| j.driver.as_str()).filter(|d| !d.is_empty());
        let local = match (running, asked) {
            (Some(j), Some(a)) if j.driver != a => {
                return Err(Error::Other(format!(
                "cluster `{}` runs under the `{}` driver: use `--driver {}`, or `vocc down` first",
                j.cluster, j.driver, j.driver
            )))
            }
            (Some(j), _) => driver::by_name(&j.driver)?,
            (None, Some(a)) => driver::by_name(a)?,
            // A run killed before any node moved still chose its driver.
            (None, None) => driver::by_name(recorded.unwrap_or("qemu"))?,
        };
        self.sited(local)
    }

    /// `local`, or, when the site has hosts reached over a link, the driver that sends
    /// their nodes' operations to them (`driver::sited`).
    fn sited(&self, local: Box<dyn Driver>) -> Result<Box<dyn Driver>> {
        driver::sited::Sited::wrap(
            local,
            &self.plan,
            &self.plan_path,
            &self.layout,
            self.hosts.as_ref(),
        )
    }

    /// The selected nodes of a cluster, in plan order.
    fn select(&self, cluster: &str, sel: &Selection) -> Result<Vec<&PlanNode>> {
        let nodes: Vec<&PlanNode> = self
            .plan
            .nodes
            .iter()
            .filter(|n| n.cluster == cluster)
            .collect();
        for r in &sel.roles {
            if !nodes.iter().any(|n| &n.role == r) {
                let mut roles: Vec<String> = nodes.iter().map(|n| n.role.clone()).collect();
                roles.dedup();
                return Err(Error::Other(format!(
                    "cluster `{cluster}` has no role `{r}`; it has {}",
                    quoted(&roles)
                )));
            }
        }
        for name in &sel.nodes {
            if !nodes.iter().any(|n| &n.id == name || &n.hostname == name) {
                return Err(Error::Other(format!(
                    "cluster `{cluster}` has no node `{name}`"
                )));
            }
        }
        if sel.roles.is_empty() && sel.nodes.is_empty() {
            return Ok(nodes);
        }
        Ok(nodes
            .into_iter()
            .filter(|n| {
                sel.roles.contains(&n.role)
                    || sel.nodes.contains(&n.id)
                    || sel.nodes.contains(&n.hostname)
            })
            .collect())
    }

    /// Finds a node by id or host name in any cluster.
    pub fn node(&self, name: &str) -> Result<&PlanNode> {
        let found: Vec<&PlanNode> = self
            .plan
            .nodes
            .iter()
            .filter(|n| n.id == name || n.hostname == name)
            .collect();
        match found.as_slice() {
            [one] => Ok(one),
            [] => Err(Error::Other(format!("the plan has no node `{name}`"))),
            _ => Err(Error::Other(format!(
                "`{name}` names nodes of several clusters: use the node id (`<cluster>-<host>`)"
            ))),
        }
    }

    fn ctx<'a>(
        &'a self,
        cluster: &'a PlanCluster,
        node: &'a PlanNode,
        journal: &'a Journal,
    ) -> NodeCtx<'a> {
        NodeCtx {
            plan: &self.plan,
            cluster,
            node,
            layout: &self.layout,
            segments: &journal.networks,
        }
    }

    /// Networks without a site bridge are qemu segments on one machine: refuse a plan
    /// that spreads such a network's nodes over hosts, which could not reach each other.
    fn check_segments(&self, cluster: &PlanCluster) -> Result<()> {
        for net in &cluster.networks {
            let mut hosts: Vec<&str> = self
                .plan
                .nodes
                .iter()
                .filter(|n| n.cluster == cluster.name)
                .filter(|n| {
                    n.nics
                        .iter()
                        .any(|c| c.network == net.name && c.bridge.is_none())
                })
                .map(|n| n.host.as_str())
                .collect();
            hosts.sort();
            hosts.dedup();
            if hosts.len() > 1 {
                return Err(Error::Other(format!(
                    "network `{}` of cluster `{}` joins nodes on hosts {}, but the site names \
                     no bridge for it: add `bridge {} BRIDGE` to the site, BRIDGE being a \
                     bridge that joins those hosts",
                    net.name,
                    cluster.name,
                    hosts
                        .iter()
                        .map(|h| format!("`{h}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    net.name
                )));
            }
        }
        Ok(())
    }

    /// Brings the selected nodes of a cluster (and what they wait for) up to `target`
    /// (`staged`, `loaded` or `running`), resuming whatever an earlier run left.
    pub fn up(
        &self,
        cluster_name: &str,
        target: State,
        asked: Option<&str>,
        sel: &Selection,
    ) -> Result<Report> {
        let started = Instant::now();
        let started_ms = now_ms();
        let cluster = self.cluster(cluster_name)?;
        // Before anything is touched: the store's disks of this cluster name are ours.
        crate::claim::acquire(&self.layout, cluster_name, &self.plan_path)?;
        let _lock = ClusterLock::acquire(&self.layout, cluster_name)?;
        let old = self.journal(cluster_name)?;
        let driver = self.driver(old.as_ref(), asked)?;
        let mut journal = old.unwrap_or_default();
        journal.version = crate::journal::JOURNAL_VERSION;
        journal.cluster = cluster_name.to_owned();
        journal.driver = driver.name().to_owned();
        journal.plan = self.plan_path.display().to_string();
        if driver.name() == "qemu" {
            self.check_segments(cluster)?;
            let nets: Vec<String> = cluster.networks.iter().map(|n| n.name.clone()).collect();
            journal.networks = ports::allocate(&self.layout.cluster(cluster_name), &nets)?;
        }
        let journal_path = self.layout.journal(cluster_name);
        journal.save(&journal_path)?;

        // The steps: those of the selected nodes, the staging they need, and
        // everything those wait for. A standby node is selected only by name: without
        // one, `up` leaves it as it is (unstarted, or running if it was started).
        let (selected, standby): (Vec<&PlanNode>, Vec<&PlanNode>) = self
            .select(cluster_name, sel)?
            .into_iter()
            .partition(|n| !n.standby || sel.names(n));
        let all = steps_until(&self.plan, target);
        let wanted = wanted_steps(&all, &selected);
        let steps: Vec<&Step> = all
            .into_iter()
            .filter(|s| wanted.contains(s.id.as_str()))
            .collect();
        let index: HashMap<&str, usize> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let deps: Vec<Vec<usize>> = steps
            .iter()
            .map(|s| {
                s.after
                    .iter()
                    .filter_map(|a| index.get(a.as_str()).copied())
                    .collect()
            })
            .collect();
        let nodes: HashMap<&str, &PlanNode> =
            self.plan.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
        let layers: HashMap<&str, &crate::plan::PlanLayer> = self
            .plan
            .layers
            .iter()
            .map(|l| (l.id.as_str(), l))
            .collect();

        // The nodes in the report: the selected ones and any pulled in as dependencies.
        let mut involved: Vec<&PlanNode> = Vec::new();
        let mut seen = HashSet::new();
        for s in &steps {
            if let Some(id) = s.action.node() {
                seen.insert(id);
            }
        }
        for n in &self.plan.nodes {
            if n.cluster == cluster_name
                && (seen.contains(n.id.as_str()) || selected.iter().any(|m| m.id == n.id))
            {
                involved.push(n);
            }
        }
        // What the driver needs to stop and reclaim a node is recorded before any step
        // touches it, so that a later plan without the node can still remove it.
        for n in &involved {
            journal.node(&n.id).node = Some((*n).clone());
        }
        for n in self.plan.nodes.iter().filter(|n| n.cluster == cluster_name) {
            if let Some(rec) = journal.nodes.get_mut(&n.id) {
                rec.node = Some(n.clone());
            }
        }
        // The nodes the journal knows that the plan no longer has; removed once the
        // plan's own steps are done.
        let removed = journal.removed(&self.plan);
        journal.save(&journal_path)?;

        let known_staged = journal.staged.clone();
        let stage_slots = Semaphore::new(self.opts.stage_jobs.max(1));
        // Hosts reached over a link get each layer down one chain through all of them,
        // made by whichever of their stage steps runs first; the others wait for it.
        let remote: HashMap<&str, &crate::plan::PlanHost> = self
            .plan
            .hosts
            .iter()
            .filter(|h| h.link.is_some())
            .map(|h| (h.name.as_str(), h))
            .collect();
        let mut chains: HashMap<&str, Vec<&crate::plan::PlanHost>> = HashMap::new();
        for s in &steps {
            if let Action::Stage { host, layer } = &s.action {
                if let Some(h) = remote.get(host.as_str()) {
                    chains.entry(layer.as_str()).or_default().push(h);
                }
            }
        }
        let chained: HashMap<&str, ChainResults> =
            chains.keys().map(|l| (*l, ChainResults::new())).collect();
        let work = |i: usize| -> std::result::Result<Done, Failed> {
            let step = steps[i];
            let t = Instant::now();
            let at = now_ms();
            let mut done = Done::default();
            let result: Result<String> = match &step.action {
                Action::Stage { host, layer } => {
                    if !driver.stages_files() {
                        Ok("simulated".to_owned())
                    } else if remote.contains_key(host.as_str()) {
                        let results = chained[layer.as_str()].get_or_init(|| {
                            match layers.get(layer.as_str()) {
                                Some(l) => stage::stage_remote(
                                    &self.layout,
                                    l,
                                    &chains[layer.as_str()],
                                    self.plan.images.as_ref(),
                                ),
                                None => HashMap::new(),
                            }
                        });
                        match results.get(host) {
                            Some(Ok(s)) => {
                                done.staged = Some(s.clone());
                                Ok(s.how.clone())
                            }
                            Some(Err(e)) => Err(Error::Other(e.clone())),
                            None => Err(Error::Other(format!("no layer `{layer}`"))),
                        }
                    } else {
                        let _slot = stage_slots.acquire();
                        let key = format!("{host}:{layer}");
                        match layers.get(layer.as_str()) {
                            Some(l) => {
                                stage::stage(&self.layout, l, known_staged.get(&key)).map(|s| {
                                    let how = s.how.clone();
                                    done.staged = Some(s);
                                    how
                                })
                            }
                            None => Err(Error::Other(format!("no layer `{layer}`"))),
                        }
                    }
                }
                Action::Load { node } => {
                    let ctx = self.ctx(cluster, nodes[node.as_str()], &journal);
                    let mut times = LoadTimes::default();
                    let r = driver.load(&ctx, &mut times);
                    done.load = Some(times);
                    r
                }
                Action::Start { node } => {
                    let ctx = self.ctx(cluster, nodes[node.as_str()], &journal);
                    let r = driver.start(&ctx);
                    if r.is_ok() {
                        done.pid = driver.pid(&ctx);
                        done.paused = driver.observe(&ctx) == Some(Observed::Paused);
                    }
                    r
                }
                Action::WaitReady { node } => {
                    let ctx = self.ctx(cluster, nodes[node.as_str()], &journal);
                    driver.wait_ready(&ctx, self.opts.ready_timeout)
                }
            };
            let ms = t.elapsed().as_secs_f64() * 1e3;
            match result {
                Ok(detail) => Ok(Done {
                    detail,
                    ms,
                    at,
                    ..done
                }),
                Err(e) => Err(Failed {
                    message: e.to_string(),
                    ms,
                    at,
                }),
            }
        };

        let mut phases: HashMap<String, BTreeMap<String, f64>> = HashMap::new();
        // When each node's boot step ended (ms since the epoch).
        let mut booted: HashMap<String, f64> = HashMap::new();
        let mut failures: HashMap<String, Failure> = HashMap::new();
        let mut staging = Vec::new();
        let mut records: Vec<(usize, StepRecord, Option<Done>)> = Vec::new();
        let mut last_save = Instant::now();
        let mut save_failed: Option<Error> = None;
        let mut pending_journal = journal.clone();
        dag::run(&deps, self.opts.jobs, work, |i, ended| {
            let step = steps[i];
            let (record, done) = match ended {
                Ended::Ran(Ok(d)) => (
                    StepRecord {
                        status: StepStatus::Done,
                        started_ms: d.at,
                        duration_ms: d.ms,
                        detail: d.detail.clone(),
                    },
                    Some(d),
                ),
                Ended::Ran(Err(f)) => {
                    if let Some(node) = step.action.node() {
                        failures.insert(
                            node.to_owned(),
                            Failure {
                                step: step.id.clone(),
                                message: f.message.clone(),
                            },
                        );
                    } else {
                        for n in &involved {
                            if stage_needed(step, n) {
                                failures.entry(n.id.clone()).or_insert(Failure {
                                    step: step.id.clone(),
                                    message: f.message.clone(),
                                });
                            }
                        }
                    }
                    (
                        StepRecord {
                            status: StepStatus::Failed,
                            started_ms: f.at,
                            duration_ms: f.ms,
                            detail: f.message,
                        },
                        None,
                    )
                }
                Ended::Skipped { because } => {
                    let why = format!(
                        "not attempted: it waits for `{}`, which failed",
                        steps[because].id
                    );
                    if let Some(node) = step.action.node() {
                        failures.entry(node.to_owned()).or_insert(Failure {
                            step: step.id.clone(),
                            message: why.clone(),
                        });
                    }
                    (
                        StepRecord {
                            status: StepStatus::Skipped,
                            started_ms: now_ms(),
                            duration_ms: 0.0,
                            detail: why,
                        },
                        None,
                    )
                }
            };
            apply(
                &mut pending_journal,
                &self.plan,
                step,
                &record,
                done.as_ref(),
            );
            if let Some(d) = &done {
                match &step.action {
                    Action::Stage { host, layer } => {
                        staging.push(StageTiming {
                            host: host.clone(),
                            layer: layer.clone(),
                            ms: d.ms,
                            detail: d.detail.clone(),
                        });
                        for n in &involved {
                            if stage_needed(step, n) {
                                *phases
                                    .entry(n.id.clone())
                                    .or_default()
                                    .entry("staging".into())
                                    .or_default() += d.ms;
                            }
                        }
                    }
                    Action::Load { node } => {
                        let p = phases.entry(node.clone()).or_default();
                        let t = d.load.unwrap_or_default();
                        p.insert("config".into(), t.config_ms);
                        p.insert("define".into(), t.define_ms);
                    }
                    Action::Start { node } => {
                        booted.insert(node.clone(), d.at as f64 + d.ms);
                        phases
                            .entry(node.clone())
                            .or_default()
                            .insert("boot".into(), d.ms);
                    }
                    Action::WaitReady { node } => {
                        // From the end of the node's boot (nodes boot together, and a
                        // node's wait may start later, once those it mounts from are
                        // ready), else from the start of the wait.
                        let ms = booted
                            .get(node)
                            .map_or(d.ms, |&b| (d.at as f64 + d.ms - b).max(0.0));
                        phases
                            .entry(node.clone())
                            .or_default()
                            .insert("ready".into(), ms);
                    }
                }
            }
            records.push((i, record, done));
            if last_save.elapsed() > Duration::from_millis(250) {
                // The run goes on (the journal is a record, not the truth), but the
                // report says that the record lagged.
                if let Err(e) = pending_journal.save(&journal_path) {
                    save_failed.get_or_insert(e);
                }
                last_save = Instant::now();
            }
        });
        let mut journal = pending_journal;
        for (id, f) in &failures {
            let rec = journal.node(id);
            rec.error = Some(format!("{}: {}", f.step, f.message));
        }
        let removals = crate::reconcile::Removal {
            plan: &self.plan,
            cluster,
            layout: &self.layout,
            driver: driver.as_ref(),
            jobs: self.opts.jobs,
            drain_timeout: self.opts.drain_timeout,
        }
        .run(&removed, &mut journal, &journal_path);
        let removals_ok = removals.iter().all(|n| n.error.is_none());
        let report = Report {
            operation: "up".to_owned(),
            cluster: cluster_name.to_owned(),
            driver: driver.name().to_owned(),
            started_ms,
            processing_ms: self.processing_ms,
            total_ms: started.elapsed().as_secs_f64() * 1e3,
            staging,
            nodes: involved
                .iter()
                .map(|n| NodeReport {
                    node: n.id.clone(),
                    role: n.role.clone(),
                    host: n.host.clone(),
                    state: journal.state(&n.id),
                    phases: phases.remove(&n.id).unwrap_or_default(),
                    error: failures.remove(&n.id),
                    removed: false,
                    standby: false,
                    details: BTreeMap::new(),
                })
                .chain(
                    standby
                        .iter()
                        .filter(|n| !involved.iter().any(|m| m.id == n.id))
                        .map(|n| NodeReport {
                            node: n.id.clone(),
                            role: n.role.clone(),
                            host: n.host.clone(),
                            state: journal.state(&n.id),
                            phases: BTreeMap::new(),
                            error: None,
                            removed: false,
                            standby: true,
                            details: BTreeMap::new(),
                        }),
                )
                .chain(removals)
                .collect(),
            ok: records.iter().all(|(_, r, _)| r.status == StepStatus::Done)
                && removals_ok
                && save_failed.is_none(),
            warnings: save_failed
                .map(|e| {
                    format!(
                        "the journal could not be saved during the run ({e}); it was saved at \
                         the end, but a run killed meanwhile would have resumed from an older record"
                    )
                })
                .into_iter()
                .collect(),
        };
        journal.last = Some(report.clone());
        journal.save(&journal_path)?;
        Ok(report)
    }

    /// Pauses, unpauses, stops or unstages the selected nodes of a cluster, all at once.
    pub fn operate(&self, cluster_name: &str, op: Op, sel: &Selection) -> Result<Report> {
        let started = Instant::now();
        let started_ms = now_ms();
        let cluster = self.cluster(cluster_name)?;
        let _lock = ClusterLock::acquire(&self.layout, cluster_name)?;
        let journal_path = self.layout.journal(cluster_name);
        let Some(mut journal) = self.journal(cluster_name)? else {
            return Err(Error::Other(format!(
                "cluster `{cluster_name}` is not up (it has no journal in `{}`): run `vocc up` first",
                self.layout.state.display()
            )));
        };
        let driver = self.driver(Some(&journal), None)?;
        let selected = self.select(cluster_name, sel)?;
        let (phase, next) = match op {
            Op::Pause => ("pause", State::Paused),
            Op::Unpause => ("unpause", State::Running),
            Op::Stop => ("stop", State::Stopped),
            Op::Unstage => ("unload", State::Unstaged),
        };
        let applies = |s: State| match op {
            Op::Pause => s == State::Running,
            Op::Unpause => s == State::Paused,
            Op::Stop => matches!(s, State::Running | State::Paused),
            Op::Unstage => s != State::Unstaged,
        };
        let todo: Vec<&PlanNode> = selected
            .iter()
            .copied()
            .filter(|n| applies(journal.state(&n.id)))
            .collect();
        let change = match op {
            Op::Pause => Change::Pause,
            Op::Unpause => Change::Unpause,
            Op::Stop => Change::Stop {
                force: self.opts.force,
                grace: self.opts.stop_grace,
            },
            Op::Unstage => Change::Unload,
        };
        let networks = journal.networks.clone();
        let ctx = |n| NodeCtx {
            plan: &self.plan,
            cluster,
            node: n,
            layout: &self.layout,
            segments: &networks,
        };
        // Nodes on hosts with an open session get the change from this thread, all at
        // once, before any answer is awaited; the rest (this machine's, or a host
        // still to be reached) each on a thread of the pool.
        let mut pending = Vec::new();
        let mut here = Vec::new();
        for (i, n) in todo.iter().enumerate() {
            match driver.begin(&ctx(n), change) {
                Some(p) => pending.push((i, p)),
                None => here.push(i),
            }
        }
        type Done = std::result::Result<(String, f64), (String, f64)>;
        let mut ended: Vec<(usize, Done)> = Vec::with_capacity(todo.len());
        let work = |k: usize| -> Done {
            let t = Instant::now();
            let r = driver.change(&ctx(todo[here[k]]), change);
            let ms = t.elapsed().as_secs_f64() * 1e3;
            r.map(|d| (d, ms)).map_err(|e| (e.to_string(), ms))
        };
        dag::run(
            &vec![Vec::new(); here.len()],
            self.opts.jobs,
            work,
            |k, e| {
                let r = match e {
                    Ended::Ran(r) => r,
                    Ended::Skipped { .. } => Err(("skipped".to_owned(), 0.0)),
                };
                ended.push((here[k], r));
            },
        );
        for (i, wait) in pending {
            let (r, took) = wait();
            let ms = took.as_secs_f64() * 1e3;
            ended.push((i, r.map(|d| (d, ms)).map_err(|e| (e.to_string(), ms))));
        }
        let mut results: HashMap<String, std::result::Result<f64, String>> = HashMap::new();
        for (i, r) in ended {
            let node = todo[i];
            let r = match r {
                Ok((_, ms)) => {
                    let rec = journal.node(&node.id);
                    rec.state = next;
                    rec.error = None;
                    rec.updated_ms = now_ms();
                    if matches!(op, Op::Stop | Op::Unstage) {
                        rec.pid = None;
                        rec.ready = false;
                    }
                    Ok(ms)
                }
                Err((message, _)) => {
                    journal.node(&node.id).error = Some(format!("{}: {message}", op.name()));
                    Err(message)
                }
            };
            results.insert(node.id.clone(), r);
        }
        if op == Op::Unstage && driver.stages_files() {
            driver.release();
            self.unstage_layers(cluster_name, &mut journal);
        }
        let report = Report {
            operation: op.name().to_owned(),
            cluster: cluster_name.to_owned(),
            driver: driver.name().to_owned(),
            started_ms,
            processing_ms: self.processing_ms,
            total_ms: started.elapsed().as_secs_f64() * 1e3,
            staging: Vec::new(),
            nodes: selected
                .iter()
                .map(|n| {
                    let r = results.remove(&n.id);
                    let mut phases = BTreeMap::new();
                    if let Some(Ok(ms)) = &r {
                        phases.insert(phase.to_owned(), *ms);
                    }
                    NodeReport {
                        node: n.id.clone(),
                        role: n.role.clone(),
                        host: n.host.clone(),
                        state: journal.state(&n.id),
                        phases,
                        error: match r {
                            Some(Err(message)) => Some(Failure {
                                step: format!("{}:{}", op.name(), n.id),
                                message,
                            }),
                            _ => None,
                        },
                        removed: false,
                        standby: false,
                        details: BTreeMap::new(),
                    }
                })
                .collect(),
            ok: results_ok(&journal, &selected),
            warnings: Vec::new(),
        };
        journal.last = Some(report.clone());
        journal.save(&journal_path)?;
        Ok(report)
    }

    /// Removes the cluster's staged layers once none of its nodes is loaded.
    fn unstage_layers(&self, cluster_name: &str, journal: &mut Journal) {
        let all_down = self
            .plan
            .nodes
            .iter()
            .filter(|n| n.cluster == cluster_name)
            .all(|n| journal.state(&n.id) == State::Unstaged);
        if !all_down {
            return;
        }
        for l in self
            .plan
            .layers
            .iter()
            .filter(|l| l.cluster == cluster_name)
        {
            stage::unstage(&self.layout, l);
        }
        // What a host could not remove stays recorded, to be removed by `down`.
        let failed: HashSet<String> = self
            .unstage_remote(cluster_name)
            .into_iter()
            .map(|(host, _)| host)
            .collect();
        let prefix = format!("{cluster_name}/");
        journal.staged.retain(|key, _| {
            key.split_once(':')
                .is_some_and(|(h, l)| !l.starts_with(&prefix) || failed.contains(h))
        });
    }

    /// Removes the cluster's layers from the hosts reached over a link; the hosts that
    /// could not remove them, and why.
    fn unstage_remote(&self, cluster_name: &str) -> Vec<(String, String)> {
        let hosts: Vec<&crate::plan::PlanHost> = self
            .plan
            .hosts
            .iter()
            .filter(|h| h.link.is_some())
            .collect();
        if hosts.is_empty() {
            return Vec::new();
        }
        let layers: Vec<&crate::plan::PlanLayer> = self
            .plan
            .layers
            .iter()
            .filter(|l| l.cluster == cluster_name)
            .collect();
        stage::unstage_remote(&self.layout, &layers, &hosts)
            .into_iter()
            .filter_map(|(host, r)| match r {
                Ok(removed) if removed.errors.is_empty() => None,
                Ok(removed) => Some((
                    host,
                    format!(
                        "could not remove staged layers: {}",
                        removed.errors.join("; ")
                    ),
                )),
                Err(e) => Some((host, format!("could not remove staged layers: {e}"))),
            })
            .collect()
    }

    /// Reclaims everything of a cluster: its processes, domains, overlays, staged
    /// layers, sockets, ports and state. Safe to repeat; works without a journal.
    pub fn down(&self, cluster_name: &str, asked: Option<&str>) -> Result<Report> {
        let started = Instant::now();
        let started_ms = now_ms();
        let cluster = self.cluster(cluster_name)?;
        crate::claim::check(&self.layout, cluster_name)?;
        let lock = ClusterLock::acquire(&self.layout, cluster_name)?;
        let journal = self.journal(cluster_name)?.unwrap_or_default();
        let driver = self.sited(match (journal.driver.as_str(), asked) {
            ("", None) => driver::by_name("qemu")?,
            ("", Some(a)) => driver::by_name(a)?,
            (d, _) => driver::by_name(d)?,
        })?;
        // The plan's nodes, and those the journal knows that the plan no longer has.
        let removed = journal.removed(&self.plan);
        let nodes: Vec<&PlanNode> = self
            .plan
            .nodes
            .iter()
            .filter(|n| n.cluster == cluster_name)
            .chain(&removed)
            .collect();
        let deps = vec![Vec::new(); nodes.len()];
        let work = |i: usize| -> std::result::Result<f64, String> {
            let ctx = self.ctx(cluster, nodes[i], &journal);
            let t = Instant::now();
            driver
                .unload(&ctx)
                .map(|_| t.elapsed().as_secs_f64() * 1e3)
                .map_err(|e| e.to_string())
        };
        let mut results: HashMap<String, std::result::Result<f64, String>> = HashMap::new();
        dag::run(&deps, self.opts.jobs, work, |i, ended| {
            let r = match ended {
                Ended::Ran(r) => r,
                Ended::Skipped { .. } => Err("skipped".to_owned()),
            };
            results.insert(nodes[i].id.clone(), r);
        });
        let t = Instant::now();
        let reclaimed = driver.reclaim(&self.layout, cluster_name);
        driver.release();
        if driver.stages_files() {
            for l in self
                .plan
                .layers
                .iter()
                .filter(|l| l.cluster == cluster_name)
            {
                stage::unstage(&self.layout, l);
            }
            for (host, why) in self.unstage_remote(cluster_name) {
                results.insert(format!("(host {host})"), Err(why));
            }
        }
        // Directories of the store that are left empty (another cluster's files keep
        // theirs: remove_dir fails on a directory that is not empty).
        let _ = std::fs::remove_dir(self.layout.store.join("layers").join(cluster_name));
        for dir in ["layers", "nodes"] {
            let _ = std::fs::remove_dir(self.layout.store.join(dir));
        }
        ports::release(&self.layout.cluster(cluster_name), &journal.networks);
        crate::claim::release(&self.layout, cluster_name);
        drop(lock);
        let dir = self.layout.cluster(cluster_name);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                results.insert(
                    "(state)".into(),
                    Err(format!("cannot remove `{}`: {e}", dir.display())),
                );
            }
        }
        let reclaim_ms = t.elapsed().as_secs_f64() * 1e3;
        let mut report_nodes: Vec<NodeReport> = nodes
            .iter()
            .map(|n| {
                let r = results.remove(&n.id);
                let mut phases = BTreeMap::new();
                if let Some(Ok(ms)) = &r {
                    phases.insert("unload".to_owned(), *ms);
                }
                phases.insert("reclaim".to_owned(), reclaim_ms);
                NodeReport {
                    node: n.id.clone(),
                    role: n.role.clone(),
                    host: n.host.clone(),
                    state: State::Unstaged,
                    phases,
                    error: match r {
                        Some(Err(message)) => Some(Failure {
                            step: format!("down:{}", n.id),
                            message,
                        }),
                        _ => None,
                    },
                    removed: removed.iter().any(|m| m.id == n.id),
                    standby: false,
                    details: BTreeMap::new(),
                }
            })
            .collect();
        if let Err(e) = reclaimed {
            if let Some(first) = report_nodes.first_mut() {
                first.error.get_or_insert(Failure {
                    step: "reclaim".into(),
                    message: e.to_string(),
                });
            }
        }
        let ok = report_nodes.iter().all(|n| n.error.is_none()) && results.is_empty();
        // What is not a node's: the state directory, a host's store.
        let mut warnings: Vec<String> = results
            .into_iter()
            .filter_map(|(what, r)| r.err().map(|e| format!("{what}: {e}")))
            .collect();
        warnings.sort();
        Ok(Report {
            operation: "down".to_owned(),
            cluster: cluster_name.to_owned(),
            driver: driver.name().to_owned(),
            started_ms,
            processing_ms: self.processing_ms,
            total_ms: started.elapsed().as_secs_f64() * 1e3,
            staging: Vec::new(),
            nodes: report_nodes,
            ok,
            warnings,
        })
    }

    /// The nodes of a cluster as the journal records them and the driver sees them.
    pub fn status(&self, cluster_name: &str) -> Result<Vec<NodeStatus>> {
        let cluster = self.cluster(cluster_name)?;
        let journal = self.journal(cluster_name)?;
        let driver = match &journal {
            Some(j) if !j.driver.is_empty() => Some(self.sited(driver::by_name(&j.driver)?)?),
            _ => None,
        };
        let journal = journal.unwrap_or_default();
        let removed = journal.removed(&self.plan);
        let nodes: Vec<&PlanNode> = self
            .plan
            .nodes
            .iter()
            .filter(|n| n.cluster == cluster_name)
            .chain(&removed)
            .collect();
        // What each node's host sees, asked of every host at once.
        let mut seen: Vec<(Option<Observed>, Option<i32>)> = vec![(None, None); nodes.len()];
        if let Some(d) = &driver {
            let ctxs: Vec<NodeCtx> = nodes
                .iter()
                .map(|n| self.ctx(cluster, n, &journal))
                .collect();
            // Every answer at hand: no thread need wait for one.
            let jobs = if d.look(&ctxs) { 1 } else { self.opts.jobs };
            let look = |i: usize| -> std::result::Result<_, ()> {
                Ok((d.observe(&ctxs[i]), d.pid(&ctxs[i])))
            };
            dag::run(&vec![Vec::new(); nodes.len()], jobs, look, |i, e| {
                if let Ended::Ran(Ok(s)) = e {
                    seen[i] = s;
                }
            });
        }
        Ok(nodes
            .iter()
            .zip(seen)
            .map(|(n, (observed, pid))| {
                let rec = journal.nodes.get(&n.id).cloned().unwrap_or_default();
                let observed = observed.map(|o| {
                    match o {
                        Observed::Absent => "absent",
                        Observed::Defined => "defined",
                        Observed::Running => "running",
                        Observed::Paused => "paused",
                    }
                    .to_owned()
                });
                NodeStatus {
                    node: n.id.clone(),
                    role: n.role.clone(),
                    host: n.host.clone(),
                    state: rec.state,
                    ready: rec.ready,
                    observed,
                    pid,
                    error: rec.error,
                    removed: removed.iter().any(|m| m.id == n.id),
                    standby: n.standby,
                }
            })
            .collect())
    }

    /// Runs a command on a running node.
    pub fn exec(&self, name: &str, argv: &[String], limit: Duration) -> Result<ExecOutput> {
        let node = self.node(name)?;
        let cluster = self.cluster(&node.cluster)?;
        let journal = self.journal(&cluster.name)?.ok_or_else(|| {
            Error::Other(format!(
                "cluster `{}` is not up: run `vocc up` first",
                cluster.name
            ))
        })?;
        let driver = self.driver(Some(&journal), None)?;
        driver.exec(&self.ctx(cluster, node, &journal), argv, limit)
    }

    /// The console log of a node, from the host it runs on (its last 4 MiB).
    pub fn console(&self, name: &str) -> Result<Vec<u8>> {
        let node = self.node(name)?;
        let cluster = self.cluster(&node.cluster)?;
        let journal = self.journal(&cluster.name)?.unwrap_or_default();
        let driver = self.sited(driver::by_name(if journal.driver.is_empty() {
            "qemu"
        } else {
            &journal.driver
        })?)?;
        driver.console_text(&self.ctx(cluster, node, &journal))
    }
}

/// Whether every selected node is without a recorded failure.
fn results_ok(journal: &Journal, selected: &[&PlanNode]) -> bool {
    selected
        .iter()
        .all(|n| journal.nodes.get(&n.id).is_none_or(|r| r.error.is_none()))
}

/// What a finished step hands back to the journal.
#[derive(Default)]
struct Done {
    detail: String,
    ms: f64,
    at: u64,
    load: Option<LoadTimes>,
    staged: Option<Staged>,
    pid: Option<i32>,
    paused: bool,
}

struct Failed {
    message: String,
    ms: f64,
    at: u64,
}

/// Records a step's outcome in the journal: the step, and the state it brought its
/// node to.
fn apply(
    journal: &mut Journal,
    plan: &Plan,
    step: &Step,
    record: &StepRecord,
    done: Option<&Done>,
) {
    journal.steps.insert(step.id.clone(), record.clone());
    let Some(done) = done else { return };
    let now = now_ms();
    match &step.action {
        Action::Stage { host, layer } => {
            if let Some(s) = &done.staged {
                journal.staged.insert(format!("{host}:{layer}"), s.clone());
            }
            // A node is staged once every layer it uses is staged on its host.
            for n in plan
                .nodes
                .iter()
                .filter(|n| &n.host == host && uses(n, layer))
            {
                let all = n
                    .root
                    .iter()
                    .chain(n.disks.iter().map(|d| &d.layer))
                    .all(|l| {
                        journal
                            .steps
                            .get(&format!("stage:{}:{l}", n.host))
                            .is_some_and(|r| r.status == StepStatus::Done)
                    });
                let rec = journal.node(&n.id);
                if all && rec.state == State::Unstaged {
                    rec.state = State::Staged;
                    rec.updated_ms = now;
                }
            }
        }
        Action::Load { node } => {
            let rec = journal.node(node);
            if matches!(rec.state, State::Unstaged | State::Staged) {
                rec.state = State::Loaded;
            }
            rec.error = None;
            rec.updated_ms = now;
        }
        Action::Start { node } => {
            let rec = journal.node(node);
            let was_running = matches!(rec.state, State::Running | State::Paused);
            rec.state = if done.paused {
                State::Paused
            } else {
                State::Running
            };
            if !was_running {
                rec.ready = false;
            }
            rec.pid = done.pid.or(rec.pid);
            rec.error = None;
            rec.updated_ms = now;
        }
        Action::WaitReady { node } => {
            let rec = journal.node(node);
            rec.ready = true;
            rec.error = None;
            rec.updated_ms = now;
        }
    }
}

fn uses(n: &PlanNode, layer: &str) -> bool {
    let root = match &n.root_image {
        // Once images are built the node boots from one image, its root's layers
        // stacked (or derived with its role's packages).
        Some(image) => image == layer,
        None => n.root.iter().any(|l| l == layer),
    };
    root || n.disks.iter().any(|d| d.layer == layer)
}

/// Whether node `n` needs the staging step `step`.
fn stage_needed(step: &Step, n: &PlanNode) -> bool {
    match &step.action {
        Action::Stage { host, layer } => &n.host == host && uses(n, layer),
        _ => false,
    }
}

/// The steps a run performs for the selected nodes: their own, the staging their
/// layers need on their hosts, and (closed over `after`) everything those wait for.
fn wanted_steps<'a>(all: &[&'a Step], selected: &[&PlanNode]) -> HashSet<&'a str> {
    let chosen: HashSet<&str> = selected.iter().map(|n| n.id.as_str()).collect();
    let by_id: HashMap<&str, &Step> = all.iter().map(|s| (s.id.as_str(), *s)).collect();
    let mut wanted = HashSet::new();
    let mut queue: Vec<&Step> = all
        .iter()
        .copied()
        .filter(|s| match s.action.node() {
            Some(n) => chosen.contains(n),
            None => selected.iter().any(|n| stage_needed(s, n)),
        })
        .collect();
    while let Some(s) = queue.pop() {
        if wanted.insert(s.id.as_str()) {
            queue.extend(
                s.after
                    .iter()
                    .filter_map(|a| by_id.get(a.as_str()).copied()),
            );
        }
    }
    wanted
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A counting semaphore for bounded staging.
struct Semaphore {
    free: Mutex<usize>,
    cv: Condvar,
}

struct Permit<'a>(&'a Semaphore);

impl Semaphore {
    fn new(n: usize) -> Semaphore {
        Semaphore {
            free: Mutex::new(n),
            cv: Condvar::new(),
        }
    }

    fn acquire(&self) -> Permit<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.cv.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(|e| e.into_inner());
        *free += 1;
        self.0.cv.notify_one();
    }
}

/// The results of one layer's chain, per host: made once, read by every stage step of
/// the layer's remote hosts.
type ChainResults = std::sync::OnceLock<HashMap<String, std::result::Result<Staged, String>>>;
