//! The plan format: what the compiler hands to the runtime. A plan is a JSON document
//! with a schema version; it places every node on a host, gives its addresses and
//! MACs, says what each host must stage, and lists the steps to reach a target state.
//!
//! Invariant: this module knows nothing of the appliance language; every field is
//! plain data that a site can read without the compiler.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Bumped on every incompatible change of the plan format.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub schema_version: u32,
    pub site: String,
    /// The directory on each host where staged layers live.
    pub store: String,
    pub hosts: Vec<PlanHost>,
    pub clusters: Vec<PlanCluster>,
    pub layers: Vec<PlanLayer>,
    pub nodes: Vec<PlanNode>,
    /// Each layer once per host that runs a node using it.
    pub staging: Vec<StageItem>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanHost {
    pub name: String,
    pub hypervisor: String,
    pub cpu: u32,
    pub overcommit: u32,
    /// Bytes, before the reserve.
    pub memory: u64,
    pub reserve: u64,
    pub disk: u64,
    pub address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanCluster {
    pub name: String,
    pub vo: String,
    pub hypervisor: String,
    pub domain: String,
    pub networks: Vec<PlanNetwork>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanNetwork {
    pub name: String,
    /// `10.20.0.0/24`
    pub subnet: String,
    pub assign: String,
    pub gateway: Option<String>,
    /// The site's bridge for this network, if the site names one.
    pub bridge: Option<String>,
    pub uplink: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanLayer {
    /// `<cluster>/<layer>`, unique in the plan.
    pub id: String,
    pub cluster: String,
    pub name: String,
    /// `busybox`, `debian bookworm`, `image <path>`, `dir <path>`.
    pub source: String,
    /// Declared size in bytes, if any.
    pub size: Option<u64>,
    /// The content hash, once images are built (absent for `--config-only`).
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanNode {
    /// `<cluster>-<hostname>`, unique in the plan.
    pub id: String,
    pub cluster: String,
    pub hostname: String,
    pub role: String,
    pub index: u32,
    /// The site host the node runs on.
    pub host: String,
    pub cpu: u32,
    pub memory: u64,
    /// Host disk the node needs besides its shared layers (overlay reserve, swap).
    pub disk: u64,
    pub swap: Option<u64>,
    pub persistence: String,
    /// Layer ids stacked into the root, bottom first.
    pub root: Vec<String>,
    pub disks: Vec<PlanDisk>,
    pub nics: Vec<PlanNic>,
    /// Nodes that must be ready before this one starts (it mounts from them).
    pub after: Vec<String>,
    /// The node's rendered files, relative to the plan's directory.
    pub dir: String,
    /// `file:line:col` of the role that made the node.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanDisk {
    pub layer: String,
    pub at: String,
    pub access: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanNic {
    pub name: String,
    pub network: String,
    pub method: String,
    pub address: Option<String>,
    pub mac: String,
    pub bridge: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageItem {
    pub host: String,
    pub layer: String,
}

/// Node states, as in the seeds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Unstaged,
    Staged,
    Loaded,
    Running,
    Paused,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Put a layer into a host's store (once per host).
    Stage { host: String, layer: String },
    /// Create the node's overlay and config drive and define its domain.
    Load { node: String },
    /// Boot the node.
    Start { node: String },
    /// Wait for the node's readiness marker.
    WaitReady { node: String },
}

// No `deny_unknown_fields` here: serde does not support it together with `flatten`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Step {
    /// Unique, e.g. `stage:c01:osg/os`, `start:osg-head`.
    pub id: String,
    #[serde(flatten)]
    pub action: Action,
    /// Steps that must finish first.
    pub after: Vec<String>,
    /// The state this step brings its node (or its host's layers) to.
    pub reaches: State,
}
