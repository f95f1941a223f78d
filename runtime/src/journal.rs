//! The journal of a cluster: what the runtime believes about every node (its state,
//! its process), what each step did and how long it took, where each layer was staged
//! and verified, the network segments the cluster was given, and the report of the
//! last operation. It is written atomically (temp file + rename).
//!
//! Each node's record keeps the node as the plan that last acted on it described it
//! (`NodeRecord::node`: id, host, hypervisor, disks, ...), written before any step
//! touches the node. A node that a later plan no longer has can then still be found,
//! drained, stopped and reclaimed by `up`, shown by `status` and reclaimed by `down`.
//!
//! Versions: 1 had no `node` in its records; it still loads, and a version-1 record of
//! a node that the plan no longer has is reclaimed by the paths that derive from its
//! id alone, on this machine. Version 2 is written; a newer one is refused.
//!
//! Invariant: the journal is a record, not the truth. Every step asks its driver what
//! is really there before acting (a running qemu, a defined domain, a staged file), so
//! a journal that lags behind a killed run only costs a re-check, never a second VM.

use crate::error::{Error, Result};
use crate::plan::{PlanNode, State};
use crate::report::Report;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The version this runtime writes.
pub const JOURNAL_VERSION: u32 = 2;

/// The oldest version this runtime still reads.
pub const JOURNAL_OLDEST: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    pub cluster: String,
    /// The driver that brought the cluster up; later commands use it.
    pub driver: String,
    /// The plan file the cluster runs.
    pub plan: String,
    /// Each cluster network's L2 segment (qemu: a multicast group and port).
    pub networks: BTreeMap<String, Segment>,
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Staged layers by `<host>:<layer>`.
    pub staged: BTreeMap<String, Staged>,
    pub steps: BTreeMap<String, StepRecord>,
    /// The report of the last operation.
    pub last: Option<Report>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub group: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub state: State,
    /// The readiness marker was seen since the last start.
    pub ready: bool,
    pub pid: Option<i32>,
    /// The last failure (`step: message`), cleared by the next success.
    pub error: Option<String>,
    /// When the record last changed (ms since the epoch).
    pub updated_ms: u64,
    /// The node as the plan that last acted on it placed it (none in version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<PlanNode>,
}

impl Default for NodeRecord {
    fn default() -> Self {
        NodeRecord {
            state: State::Unstaged,
            ready: false,
            pid: None,
            error: None,
            updated_ms: 0,
            node: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staged {
    pub path: String,
    pub sha256: String,
    /// `hardlink`, `reflink`, `copy` or `in place`.
    pub how: String,
    /// Size, mtime and inode when verified: unchanged metadata skips the re-hash.
    pub size: u64,
    pub mtime_ns: i128,
    pub inode: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Done,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub status: StepStatus,
    pub started_ms: u64,
    pub duration_ms: f64,
    /// What the step did (`staged by hardlink`, `already running`) or why it failed.
    pub detail: String,
}

impl Journal {
    pub fn new(cluster: &str, driver: &str, plan: &str) -> Journal {
        Journal {
            version: JOURNAL_VERSION,
            cluster: cluster.to_owned(),
            driver: driver.to_owned(),
            plan: plan.to_owned(),
            ..Journal::default()
        }
    }

    /// Reads a journal; `None` when there is none.
    pub fn load(path: &Path) -> Result<Option<Journal>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", path, e)),
        };
        let journal: Journal = serde_json::from_str(&text).map_err(|e| {
            Error::Other(format!(
                "the journal `{}` is damaged ({e}): run `vocc down` to reclaim the cluster",
                path.display()
            ))
        })?;
        if !(JOURNAL_OLDEST..=JOURNAL_VERSION).contains(&journal.version) {
            return Err(Error::Other(format!(
                "the journal `{}` has version {} but this runtime reads versions \
                 {JOURNAL_OLDEST} to {JOURNAL_VERSION}: use the vocc that wrote it",
                path.display(),
                journal.version
            )));
        }
        Ok(Some(journal))
    }

    /// Replaces the journal at `path` atomically and durably (`atomic::write`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec(self).map_err(|e| Error::Other(e.to_string()))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        }
        crate::atomic::write(path, &text, 0o644).map_err(|e| Error::io("save the journal", path, e))
    }

    pub fn node(&mut self, id: &str) -> &mut NodeRecord {
        self.nodes.entry(id.to_owned()).or_default()
    }

    pub fn state(&self, id: &str) -> State {
        self.nodes.get(id).map_or(State::Unstaged, |n| n.state)
    }

    /// The nodes the journal knows that `plan` no longer has in its cluster, each as
    /// the journal recorded it (a version-1 record: as its id alone lays it out), in
    /// id order.
    pub fn removed(&self, plan: &crate::plan::Plan) -> Vec<PlanNode> {
        let kept: std::collections::HashSet<&str> = plan
            .nodes
            .iter()
            .filter(|n| n.cluster == self.cluster)
            .map(|n| n.id.as_str())
            .collect();
        self.nodes
            .iter()
            .filter(|(id, _)| !kept.contains(id.as_str()) && crate::names::is_label(id))
            .map(|(id, rec)| match &rec.node {
                Some(n) if n.id == *id && recorded_problem(n).is_none() => n.clone(),
                _ => by_id(&self.cluster, id, plan),
            })
            .collect()
    }
}

/// Why a node that a journal (or a request) recorded cannot name paths, if it cannot:
/// its names must be labels and its directory a relative path under `nodes/`, as
/// `load_plan` demands of the plan's nodes.
pub fn recorded_problem(n: &PlanNode) -> Option<String> {
    for (field, value) in [("id", &n.id), ("cluster", &n.cluster), ("host", &n.host)] {
        if !crate::names::is_label(value) {
            return Some(format!(
                "its {field} `{}` is not a label",
                crate::names::shown(value)
            ));
        }
    }
    crate::names::rel_path_problem(&n.dir, "nodes").map(|p| format!("its dir {p}"))
}

/// A node of a version-1 journal that the plan no longer has: what its id alone says
/// (its files, disks and processes are named by it), on the plan's first host without
/// a link (this machine).
fn by_id(cluster: &str, id: &str, plan: &crate::plan::Plan) -> PlanNode {
    let host = plan
        .hosts
        .iter()
        .find(|h| h.link.is_none())
        .or(plan.hosts.first())
        .map(|h| h.name.clone())
        .unwrap_or_default();
    PlanNode {
        id: id.to_owned(),
        cluster: cluster.to_owned(),
        hostname: id
            .strip_prefix(&format!("{cluster}-"))
            .unwrap_or(id)
            .to_owned(),
        role: String::new(),
        index: 0,
        standby: false,
        host,
        hypervisor: None,
        cpu: 1,
        cpus: None,
        memory: 0,
        disk: 0,
        swap: None,
        persistence: crate::plan::Persistence::Persistent,
        root: Vec::new(),
        root_image: None,
        disks: Vec::new(),
        nics: Vec::new(),
        after: Vec::new(),
        dir: format!("nodes/{id}"),
        source: "an older journal".to_owned(),
    }
}
