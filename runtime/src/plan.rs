//! The plan format: what the compiler hands to the runtime. A plan is a JSON document
//! with a schema version; it places every node on a host, gives its addresses and
//! MACs, says what each host must stage, and lists the steps to reach a target state.
//!
//! Invariant: this module knows nothing of the appliance language; every field is
//! plain data that a site can read without the compiler.

use schemars::gen::SchemaGenerator;
use schemars::schema::{Schema, SchemaObject, SubschemaValidation};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

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
    /// The site's image server, if it names one: layers reach the hosts from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<PlanImages>,
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
    #[schemars(regex(pattern = "^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$"))]
    pub name: String,
    /// The hypervisors the host runs guests for.
    pub hypervisors: Vec<Hypervisor>,
    pub cpu: u32,
    pub overcommit: u32,
    /// Bytes, before the reserve.
    pub memory: u64,
    pub reserve: u64,
    pub disk: u64,
    pub address: Option<String>,
    /// How the control side reaches the host's `vocc-host`; none for this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<crate::hostlink::HostLink>,
}

/// A site's image server: a machine reached like the hosts that keeps the site's
/// layers in its store (at the plan's `store`) and heads every layer's chain to the
/// hosts, so that a layer leaves the control machine at most once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanImages {
    #[schemars(regex(pattern = "^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$"))]
    pub name: String,
    pub address: Option<String>,
    pub link: crate::hostlink::HostLink,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanCluster {
    #[schemars(regex(pattern = "^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$"))]
    pub name: String,
    pub vo: String,
    /// The hypervisor the appliance asks for; none: each node runs under its host's
    /// (`PlanNode::hypervisor`).
    pub hypervisor: Option<Hypervisor>,
    pub domain: String,
    pub networks: Vec<PlanNetwork>,
    /// The cluster's batch system, as far as the runtime acts on it; none without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<PlanBatch>,
}

/// A cluster's batch system as the runtime sees it: where its controller runs, which
/// roles run jobs, and how a compute node is drained before `up` removes it. The
/// runtime runs these argument vectors on the controller node (as `vocc exec` does)
/// and decides nothing about the batch system itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanBatch {
    pub kind: BatchKind,
    /// The id of the node that runs the controller.
    pub controller: String,
    /// The roles whose nodes run jobs.
    pub compute: Vec<String>,
    /// How to drain a compute node; none when the batch system has no drain step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<PlanDrain>,
}

/// A drain in two commands run on the controller; in each, an argument `{node}` (or
/// an argument's `{node}`) stands for the drained node's host name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanDrain {
    /// Stops new jobs from starting on the node.
    pub start: Vec<String>,
    /// Lists the node's jobs: the node is drained when it succeeds with no output.
    pub jobs: Vec<String>,
}

impl PlanDrain {
    /// The argument vector `argv` for the node whose host name is `node`.
    pub fn for_node(argv: &[String], node: &str) -> Vec<String> {
        argv.iter().map(|a| a.replace("{node}", node)).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanNetwork {
    #[schemars(regex(pattern = "^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$"))]
    pub name: String,
    /// `10.20.0.0/24`
    pub subnet: String,
    pub assign: Assign,
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
    #[schemars(regex(pattern = "^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$"))]
    pub cluster: String,
    #[schemars(regex(pattern = "^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$"))]
    pub name: String,
    /// `busybox`, `debian bookworm`, `image <path>`, `dir <path>`.
    pub source: String,
    /// Declared size in bytes, if any.
    pub size: Option<u64>,
    /// The content hash, once images are built (absent for `--config-only`).
    pub sha256: Option<String>,
    /// The layer's image relative to the store (and to OUT), once built:
    /// `layers/<cluster>/<name>.img`. Node overlays name it as their backing file by
    /// the relative path `../../layers/<cluster>/<name>.img`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The image's format, once built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ImageFormat>,
    /// For a root layer vocc built: the kernel to boot nodes with (direct kernel boot),
    /// relative to the store: `layers/<cluster>/<name>.vmlinuz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// The initramfs that goes with `kernel`: `layers/<cluster>/<name>.initrd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<String>,
    /// Each of the layer's built files by its extension (`img`, `vmlinuz`, `initrd`):
    /// its size and sha256, once built. Hosts verify what they receive against them, and
    /// a control machine that does not hold the files can stage them from the site's
    /// image server.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sums: BTreeMap<String, FileSum>,
}

/// A built file's size and content hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSum {
    #[schemars(regex(pattern = "^[0-9a-f]{64}$"))]
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanNode {
    /// `<cluster>-<hostname>`, unique in the plan.
    #[schemars(regex(pattern = "^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$"))]
    pub id: String,
    #[schemars(regex(pattern = "^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$"))]
    pub cluster: String,
    #[schemars(regex(pattern = "^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$"))]
    pub hostname: String,
    #[schemars(regex(pattern = "^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$"))]
    pub role: String,
    pub index: u32,
    /// A standby node of an elastic role (`count MIN..MAX`, index above MIN): placed
    /// like any node, but a plain `up` leaves it as it is (unstarted, or running if
    /// something started it); `up` starts it when it is named (`--node`), and `stop`
    /// then `unstage` return it to standby. Its batch system knows it as powered down.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub standby: bool,
    /// The site host the node runs on.
    pub host: String,
    /// The hypervisor the node runs under on its host, which its domain file is for
    /// (older plans: the cluster's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hypervisor: Option<Hypervisor>,
    #[schemars(range(min = 1))]
    pub cpu: u32,
    /// The host CPUs the node runs on, its own (`cpu N pinned`); none: any of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Vec<u32>>,
    pub memory: u64,
    /// Host disk the node needs besides its shared layers (overlay reserve, swap).
    pub disk: u64,
    pub swap: Option<u64>,
    pub persistence: Persistence,
    /// Layer ids stacked into the root, bottom first.
    pub root: Vec<String>,
    /// Once images are built: the id of the one layer image the node's root overlay
    /// is backed by (the bottom layer of `root`, or a layer derived from `root` and
    /// the role's packages, which the plan then also lists and stages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_image: Option<String>,
    pub disks: Vec<PlanDisk>,
    pub nics: Vec<PlanNic>,
    /// Nodes that must be ready before this one starts (it mounts from them).
    pub after: Vec<String>,
    /// The node's rendered files, relative to the plan's directory.
    #[schemars(regex(pattern = "^nodes(/[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127})+$"))]
    pub dir: String,
    /// `file:line:col` of the role that made the node.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanDisk {
    pub layer: String,
    pub at: String,
    pub access: Access,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanNic {
    #[schemars(regex(pattern = "^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$"))]
    pub name: String,
    #[schemars(regex(pattern = "^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$"))]
    pub network: String,
    pub method: NicMethod,
    pub address: Option<String>,
    #[schemars(regex(pattern = "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"))]
    pub mac: String,
    pub bridge: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageItem {
    pub host: String,
    pub layer: String,
}

/// Defines a plan enum: serde and the schema take exactly the lowercase names, and
/// `as_str` and `FromStr` convert to and from them.
macro_rules! plan_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema,
        )]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<$name, String> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| format!("`{s}` is not one of {}", $name::names()))
            }
        }

        impl $name {
            /// "`a`, `b` or `c`"
            pub fn names() -> String {
                let all: Vec<String> =
                    $name::ALL.iter().map(|v| format!("`{}`", v.as_str())).collect();
                match all.split_last() {
                    Some((last, rest)) if !rest.is_empty() => {
                        format!("{} or {last}", rest.join(", "))
                    }
                    _ => all.join(""),
                }
            }
        }
    };
}

plan_enum! {
    /// The hypervisor a cluster's nodes run under, and those a host offers.
    Hypervisor { Xen = "xen", Kvm = "kvm" }
}

plan_enum! {
    /// The batch system a cluster runs.
    BatchKind { Slurm = "slurm", Condor = "condor", Sge = "sge", Pbs = "pbs" }
}

plan_enum! {
    /// How a cluster network gives addresses out.
    Assign { Dhcp = "dhcp", Static = "static", Pool = "pool", External = "external" }
}

plan_enum! {
    /// How one interface of a node gets its address.
    NicMethod { Dhcp = "dhcp", Static = "static", Pool = "pool", External = "external" }
}

plan_enum! {
    /// Whether a node keeps its writes across a stop (`persistent`) or starts blank.
    Persistence { Persistent = "persistent", Ephemeral = "ephemeral" }
}

plan_enum! {
    /// How a node attaches a data layer: read-only (shared) or writable (an overlay).
    Access { Ro = "ro", Rw = "rw" }
}

plan_enum! {
    /// The format of a built layer image.
    ImageFormat { Raw = "raw", Qcow2 = "qcow2" }
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

/// One step of the plan: an action, the steps it waits for and the state it reaches.
///
/// serde does not support `deny_unknown_fields` together with `flatten`, but unknown
/// fields are still rejected: the flattened [`Action`] sees every field the step does
/// not take and denies those it does not know. The JSON schema is written by hand
/// (below) because the derived one would forbid the step's own fields in each action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

impl Action {
    /// The node this action works on (`None` for staging, which works on a host).
    pub fn node(&self) -> Option<&str> {
        match self {
            Action::Stage { .. } => None,
            Action::Load { node } | Action::Start { node } | Action::WaitReady { node } => {
                Some(node)
            }
        }
    }
}

impl JsonSchema for Step {
    fn schema_name() -> String {
        "Step".to_owned()
    }

    fn json_schema(gen: &mut SchemaGenerator) -> Schema {
        let described = |schema: Schema, text: &str| -> Schema {
            let mut object = schema.into_object();
            if object.reference.is_some() {
                // A `$ref` takes no siblings in draft 7: wrap it to describe it.
                object = SchemaObject {
                    subschemas: Some(Box::new(SubschemaValidation {
                        all_of: Some(vec![Schema::Object(object)]),
                        ..Default::default()
                    })),
                    ..Default::default()
                };
            }
            object.metadata().description = Some(text.to_owned());
            Schema::Object(object)
        };
        let common = [
            ("id", described(gen.subschema_for::<String>(), STEP_ID_DOC)),
            (
                "after",
                described(gen.subschema_for::<Vec<String>>(), STEP_AFTER_DOC),
            ),
            (
                "reaches",
                described(gen.subschema_for::<State>(), STEP_REACHES_DOC),
            ),
        ];
        let mut schema = Action::json_schema(gen).into_object();
        for variant in schema.subschemas().one_of.iter_mut().flatten() {
            if let Schema::Object(variant) = variant {
                let object = variant.object();
                for (name, field) in &common {
                    object.properties.insert((*name).to_owned(), field.clone());
                    object.required.insert((*name).to_owned());
                }
            }
        }
        schema.metadata().description = Some(
            "One step of the plan: an action, the steps it waits for and the state it reaches."
                .to_owned(),
        );
        Schema::Object(schema)
    }
}

const STEP_ID_DOC: &str = "Unique, e.g. `stage:c01:osg/os`, `start:osg-head`.";
const STEP_AFTER_DOC: &str = "Steps that must finish first.";
const STEP_REACHES_DOC: &str = "The state this step brings its node (or its host's layers) to.";

/// The steps a propagate-only run performs to bring every node to `target`, in plan
/// order, with everything they wait for.
///
/// The plan's steps only bring nodes up (`staged`, then `loaded`, then `running`). A
/// `paused` node was running first, so `Paused` selects the steps up to `running` and
/// leaves the pause to the lifecycle operation; `Unstaged` and `Stopped` need no step
/// of the plan and select none.
pub fn steps_until(plan: &Plan, target: State) -> Vec<&Step> {
    let target = match target {
        State::Unstaged | State::Stopped => return Vec::new(),
        State::Paused => State::Running,
        up => up,
    };
    let selected = |reaches: State| {
        matches!(reaches, State::Staged | State::Loaded | State::Running) && reaches <= target
    };
    let by_id: HashMap<&str, &Step> = plan.steps.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut wanted: HashSet<&str> = HashSet::new();
    let mut queue: Vec<&Step> = plan.steps.iter().filter(|s| selected(s.reaches)).collect();
    // A hand-written plan may let a step wait for one that reaches a later state; the
    // run must still perform it, so close the selection over `after`.
    while let Some(step) = queue.pop() {
        if wanted.insert(step.id.as_str()) {
            queue.extend(
                step.after
                    .iter()
                    .filter_map(|id| by_id.get(id.as_str()).copied()),
            );
        }
    }
    plan.steps
        .iter()
        .filter(|s| wanted.contains(s.id.as_str()))
        .collect()
}
