//! Placement of nodes on hosts (the strategy is described in the parent module), the
//! record of every decision, and the diagnostics when nodes do not fit.

use super::{
    human_size, layer_id, vcpus, DEFAULT_BUSYBOX_SIZE, DEFAULT_LAYER_SIZE, NODE_DISK_ALLOWANCE,
};
use crate::model::{Access, Cluster, Host, Hypervisor, Layer, LayerSource, Model, Node, Role};
use std::collections::{BTreeSet, HashMap};
use std::ops::Add;
use vocc_dsl::Diagnostic;
use vocc_runtime::Plan;

/// Where an earlier plan put its nodes, for placement to keep them there: the site it
/// was made for and each node's host. Nodes of a plan made for another site are not
/// kept anywhere.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    site: String,
    hosts: HashMap<String, String>,
}

impl Previous {
    /// No earlier plan: every node is placed afresh.
    pub fn none() -> Previous {
        Previous::default()
    }

    /// The placement of `plan`.
    pub fn from_plan(plan: &Plan) -> Previous {
        Previous {
            site: plan.site.clone(),
            hosts: plan
                .nodes
                .iter()
                .map(|n| (n.id.clone(), n.host.clone()))
                .collect(),
        }
    }

    /// The placement of a plan's text (`plan.json`), read for nothing else: the site
    /// and each node's id and host, of a plan of this version of the format. Reading
    /// no more than that keeps a rebuild of thousands of nodes from paying for a full
    /// load of the plan (which [`vocc_runtime::schema::load_plan`] does).
    pub fn read(json: &str) -> Result<Previous, String> {
        #[derive(serde::Deserialize)]
        struct Placed {
            schema_version: u32,
            site: String,
            nodes: Vec<PlacedNode>,
        }
        #[derive(serde::Deserialize)]
        struct PlacedNode {
            id: String,
            host: String,
        }
        let placed: Placed = serde_json::from_str(json).map_err(|e| e.to_string())?;
        if placed.schema_version != vocc_runtime::SCHEMA_VERSION {
            return Err(format!(
                "it is of schema version {}, this vocc writes version {}",
                placed.schema_version,
                vocc_runtime::SCHEMA_VERSION
            ));
        }
        // These names are printed (by `explain`): refuse what would reach a terminal raw.
        let words =
            std::iter::once(&placed.site).chain(placed.nodes.iter().flat_map(|n| [&n.id, &n.host]));
        if let Some(bad) = words.into_iter().find(|w| w.chars().any(char::is_control)) {
            return Err(format!("it names {bad:?}, with a control character"));
        }
        Ok(Previous {
            site: placed.site,
            hosts: placed.nodes.into_iter().map(|n| (n.id, n.host)).collect(),
        })
    }

    /// The host node `id` ran on, when the earlier plan was made for site `site`.
    fn host(&self, site: &str, id: &str) -> Option<&str> {
        if self.site != site {
            return None;
        }
        self.hosts.get(id).map(String::as_str)
    }
}

/// What one node needs from the host it runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    pub cpu: u32,
    /// Whether the node's CPUs are host CPUs of its own (`cpu N pinned`).
    pub pinned: bool,
    pub memory: u64,
    /// The node's own disk: `overlay + swap + writable`.
    pub disk: u64,
    /// [`super::NODE_DISK_ALLOWANCE`]: the overlay and config drive.
    pub overlay: u64,
    pub swap: u64,
    /// Room for the overlays of writable data disks.
    pub writable: u64,
    /// Every layer the node uses (root layers, then data disks) with the disk it
    /// costs, paid once per host that runs it.
    pub layers: Vec<(String, u64)>,
}

/// Free resources of a host (or, summed, of several).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Free {
    /// Virtual CPUs: `cpu × overcommit` less those of the nodes placed.
    pub cpu: u64,
    /// Host CPUs not yet given to a pinned node: `cpu` less those of the pinned nodes
    /// placed (pinned CPUs are never overcommitted).
    pub pinned: u64,
    /// Bytes: `memory − reserve` less those of the nodes placed.
    pub memory: u64,
    pub disk: u64,
}

impl Add for Free {
    type Output = Free;

    fn add(self, other: Free) -> Free {
        Free {
            cpu: self.cpu.saturating_add(other.cpu),
            pinned: self.pinned.saturating_add(other.pinned),
            memory: self.memory.saturating_add(other.memory),
            disk: self.disk.saturating_add(other.disk),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    Cpu,
    /// Host CPUs of a node's own (`cpu N pinned`).
    Pinned,
    Memory,
    Disk,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Pinned => "pinned cpu",
            Resource::Memory => "memory",
            Resource::Disk => "disk",
        }
    }

    /// `3 vCPUs` or `512 MiB`.
    pub fn amount(self, n: u64) -> String {
        match self {
            Resource::Cpu => vcpus(n),
            Resource::Pinned => format!("{n} host CPU{}", if n == 1 { "" } else { "s" }),
            Resource::Memory | Resource::Disk => human_size(n),
        }
    }
}

/// A resource a host lacks for a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    pub resource: Resource,
    /// What the node needs on this host (for disk, with the layers it lacks).
    pub needed: u64,
    pub free: u64,
}

impl Shortfall {
    pub fn by(&self) -> u64 {
        self.needed.saturating_sub(self.free)
    }
}

/// One host as it stood when a node was placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub host: String,
    /// Whether the host runs the cluster's hypervisor; when not, nothing else counts.
    pub hypervisor: bool,
    pub free: Free,
    /// Disk for the node's layers that this host does not run yet.
    pub layer_disk: u64,
    /// Empty when the node fits (and the hypervisor matches).
    pub short: Vec<Shortfall>,
}

impl Candidate {
    pub fn fits(&self) -> bool {
        self.hypervisor && self.short.is_empty()
    }
}

/// Why a node went where it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub node: String,
    pub hostname: String,
    pub cluster: String,
    pub role: String,
    /// The hypervisor the cluster asks for (none: any).
    pub hypervisor: Option<Hypervisor>,
    /// The hypervisor the node runs under on its chosen host.
    pub runs: Option<Hypervisor>,
    pub demand: Demand,
    /// Every host of the site, in site order, as it stood just before this node.
    pub candidates: Vec<Candidate>,
    /// The chosen host, `None` when the node fits nowhere.
    pub chosen: Option<String>,
    /// The host the previous plan put the node on, if it had the node.
    pub previous: Option<String>,
}

impl Decision {
    /// Whether the node stays on the host of the previous plan.
    pub fn kept(&self) -> bool {
        self.previous.is_some() && self.previous == self.chosen
    }

    /// The host that lacks least for this node: among hosts of the right hypervisor,
    /// the one short of the fewest resources, then by the smallest sum of shortfalls
    /// relative to the need, ties going to the first host.
    pub fn best(&self) -> Option<&Candidate> {
        let lack = |c: &Candidate| {
            let relative: u128 = c
                .short
                .iter()
                .map(|s| u128::from(s.by()) * 1_000_000 / u128::from(s.needed.max(1)))
                .sum();
            (c.short.len(), relative)
        };
        let mut best: Option<&Candidate> = None;
        for c in self.candidates.iter().filter(|c| c.hypervisor) {
            if best.is_none_or(|b| lack(c) < lack(b)) {
                best = Some(c);
            }
        }
        best
    }
}

/// The disk a layer costs on each host that runs it.
pub fn layer_size(layer: &Layer) -> u64 {
    layer.size.unwrap_or(match layer.source {
        LayerSource::Busybox => DEFAULT_BUSYBOX_SIZE,
        _ => DEFAULT_LAYER_SIZE,
    })
}

pub(crate) fn demand(cluster: &Cluster, role: &Role) -> Demand {
    // The checker resolves every layer name; count an unknown one at the default size
    // rather than for nothing.
    let size = |name: &str| cluster.layer(name).map_or(DEFAULT_LAYER_SIZE, layer_size);
    let mut layers: Vec<(String, u64)> = Vec::new();
    for name in role.root.iter().chain(role.disks.iter().map(|d| &d.layer)) {
        let id = layer_id(&cluster.name, name);
        if !layers.iter().any(|(l, _)| *l == id) {
            layers.push((id, size(name)));
        }
    }
    let writable: u64 = role
        .disks
        .iter()
        .filter(|d| d.access == Access::Rw)
        .map(|d| size(&d.layer))
        .sum();
    let swap = role.swap.unwrap_or(0);
    Demand {
        cpu: role.cpu,
        pinned: role.pinned,
        memory: role.memory,
        disk: NODE_DISK_ALLOWANCE + swap + writable,
        overlay: NODE_DISK_ALLOWANCE,
        swap,
        writable,
        layers,
    }
}

struct HostState<'a> {
    host: &'a Host,
    free: Free,
    layers: BTreeSet<String>,
}

impl HostState<'_> {
    fn assess(&self, hypervisor: Option<Hypervisor>, demand: &Demand) -> Candidate {
        let layer_disk: u64 = demand
            .layers
            .iter()
            .filter(|(id, _)| !self.layers.contains(id))
            .map(|(_, size)| size)
            .sum();
        let matches = self.host.hypervisor_for(hypervisor).is_some();
        let mut short = Vec::new();
        if matches {
            let pinned = if demand.pinned {
                u64::from(demand.cpu)
            } else {
                0
            };
            let needs = [
                (Resource::Cpu, u64::from(demand.cpu), self.free.cpu),
                (Resource::Pinned, pinned, self.free.pinned),
                (Resource::Memory, demand.memory, self.free.memory),
                (Resource::Disk, demand.disk + layer_disk, self.free.disk),
            ];
            for (resource, needed, free) in needs {
                if needed > free {
                    short.push(Shortfall {
                        resource,
                        needed,
                        free,
                    });
                }
            }
        }
        Candidate {
            host: self.host.name.clone(),
            hypervisor: matches,
            free: self.free,
            layer_disk,
            short,
        }
    }

    /// The disk this host needs for the node's layers it does not run yet, when the
    /// node fits; the allocation-free fast path of [`HostState::assess`].
    fn fits(&self, hypervisor: Option<Hypervisor>, demand: &Demand) -> Option<u64> {
        if self.host.hypervisor_for(hypervisor).is_none()
            || u64::from(demand.cpu) > self.free.cpu
            || (demand.pinned && u64::from(demand.cpu) > self.free.pinned)
            || demand.memory > self.free.memory
        {
            return None;
        }
        let layer_disk: u64 = demand
            .layers
            .iter()
            .filter(|(id, _)| !self.layers.contains(id))
            .map(|(_, size)| size)
            .sum();
        (demand.disk + layer_disk <= self.free.disk).then_some(layer_disk)
    }

    fn take(&mut self, demand: &Demand, layer_disk: u64) {
        self.free.cpu -= u64::from(demand.cpu);
        if demand.pinned {
            self.free.pinned -= u64::from(demand.cpu);
        }
        self.free.memory -= demand.memory;
        self.free.disk -= demand.disk + layer_disk;
        self.layers
            .extend(demand.layers.iter().map(|(id, _)| id.clone()));
    }
}

/// What a host offers when empty.
pub(crate) fn capacity(host: &Host) -> Free {
    Free {
        cpu: u64::from(host.cpu) * u64::from(host.overcommit),
        pinned: u64::from(host.cpu),
        memory: host.memory.saturating_sub(host.reserve),
        disk: host.disk,
    }
}

/// Places every node and records why, with the diagnostics for what does not fit.
/// Placement goes on past a node that fits nowhere (it takes nothing), so the decisions
/// cover every node whatever the diagnostics say. Nodes of `previous` stay on their
/// hosts where they still can; see [`decide_with`].
pub fn decide(model: &Model, previous: &Previous) -> (Vec<Decision>, Vec<Diagnostic>) {
    decide_with(model, previous, true)
}

/// Like [`decide`], but a placed node's decision keeps no candidates (only nodes that
/// fit nowhere keep them, for their diagnostics): what planning needs, in time and
/// memory linear in nodes × hosts without an allocation per pair.
pub fn decide_placed(model: &Model, previous: &Previous) -> (Vec<Decision>, Vec<Diagnostic>) {
    decide_with(model, previous, false)
}

/// A node to place, with the index of its role's demand.
struct Pending<'a> {
    cluster: &'a Cluster,
    role: &'a Role,
    node: &'a Node,
    demand: usize,
    previous: Option<&'a str>,
}

/// Places in two passes, both in model order. First every node the previous plan had
/// stays on its host if that host is still in the site, runs the cluster's hypervisor
/// and has room after the nodes kept before it; then the other nodes are spread. The
/// decisions come in that order, which is the order placement took.
fn decide_with(
    model: &Model,
    previous: &Previous,
    record: bool,
) -> (Vec<Decision>, Vec<Diagnostic>) {
    let site = &model.site;
    let mut hosts: Vec<HostState> = site
        .hosts
        .iter()
        .map(|host| HostState {
            host,
            free: capacity(host),
            layers: BTreeSet::new(),
        })
        .collect();
    let index: HashMap<&str, usize> = if previous.site == site.name {
        site.hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.name.as_str(), i))
            .collect()
    } else {
        HashMap::new()
    };
    let mut demands: Vec<Demand> = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
    for cluster in &model.clusters {
        for role in &cluster.roles {
            demands.push(demand(cluster, role));
            for node in cluster.nodes_of(&role.name) {
                pending.push(Pending {
                    cluster,
                    role,
                    node,
                    demand: demands.len() - 1,
                    previous: previous.host(&site.name, &node.id),
                });
            }
        }
    }
    let mut decisions = Vec::with_capacity(pending.len());
    let mut rest = Vec::with_capacity(pending.len());
    for p in pending {
        let demand = &demands[p.demand];
        let kept = p
            .previous
            .and_then(|name| index.get(name).copied())
            .and_then(|i| {
                hosts[i]
                    .fits(p.cluster.hypervisor, demand)
                    .map(|layer_disk| (i, layer_disk))
            });
        match kept {
            Some(chosen) => {
                decisions.push(decide_one(&mut hosts, &p, demand, Some(chosen), record))
            }
            None => rest.push(p),
        }
    }
    for p in rest {
        let demand = &demands[p.demand];
        // Spread: the fitting host with the most free memory, ties to the first.
        let mut chosen: Option<(usize, u64)> = None;
        for (i, h) in hosts.iter().enumerate() {
            if let Some(layer_disk) = h.fits(p.cluster.hypervisor, demand) {
                if chosen.is_none_or(|(b, _)| h.free.memory > hosts[b].free.memory) {
                    chosen = Some((i, layer_disk));
                }
            }
        }
        decisions.push(decide_one(&mut hosts, &p, demand, chosen, record));
    }
    let diags = diagnose(model, &decisions);
    (decisions, diags)
}

/// Puts the node on `chosen` (a host and the disk its layers add there) and records
/// the decision, with the hosts as they stood before when asked or when it fits nowhere.
fn decide_one(
    hosts: &mut [HostState],
    p: &Pending,
    demand: &Demand,
    chosen: Option<(usize, u64)>,
    record: bool,
) -> Decision {
    let candidates: Vec<Candidate> = if record || chosen.is_none() {
        hosts
            .iter()
            .map(|h| h.assess(p.cluster.hypervisor, demand))
            .collect()
    } else {
        Vec::new()
    };
    if let Some((i, layer_disk)) = chosen {
        hosts[i].take(demand, layer_disk);
    }
    Decision {
        node: p.node.id.clone(),
        hostname: p.node.hostname.clone(),
        cluster: p.cluster.name.clone(),
        role: p.role.name.clone(),
        hypervisor: p.cluster.hypervisor,
        runs: chosen.and_then(|(i, _)| hosts[i].host.hypervisor_for(p.cluster.hypervisor)),
        demand: demand.clone(),
        chosen: chosen.map(|(i, _)| hosts[i].host.name.clone()),
        previous: p.previous.map(str::to_owned),
        candidates,
    }
}

/// Diagnostics in this order of preference: a cluster whose hypervisor no host runs;
/// else a site too small in all for the clusters of one hypervisor; else each role
/// with nodes that fit no host (one diagnostic per role, at its first such node).
fn diagnose(model: &Model, decisions: &[Decision]) -> Vec<Diagnostic> {
    let site = &model.site;
    let mut diags = Vec::new();
    let mut hypervisors: Vec<Option<Hypervisor>> = Vec::new();
    for cluster in &model.clusters {
        if !hypervisors.contains(&cluster.hypervisor) {
            hypervisors.push(cluster.hypervisor);
        }
    }
    for hv in hypervisors {
        let clusters: Vec<&Cluster> = model
            .clusters
            .iter()
            .filter(|c| c.hypervisor == hv)
            .collect();
        if !site.hosts.iter().any(|h| h.hypervisor_for(hv).is_some()) {
            diags.extend(clusters.iter().map(|c| no_hypervisor(model, c)));
            continue;
        }
        let totals = site_totals(model, hv, &clusters);
        if !totals.is_empty() {
            diags.extend(totals);
            continue;
        }
        let mut reported: Vec<(&str, &str)> = Vec::new();
        for (i, d) in decisions.iter().enumerate() {
            if d.hypervisor != hv || d.chosen.is_some() {
                continue;
            }
            let key = (d.cluster.as_str(), d.role.as_str());
            if reported.contains(&key) {
                continue;
            }
            reported.push(key);
            let others = decisions[i + 1..]
                .iter()
                .filter(|o| o.chosen.is_none() && (o.cluster.as_str(), o.role.as_str()) == key)
                .count();
            if let Some(diag) = fits_nowhere(model, d, others) {
                diags.push(diag);
            }
        }
    }
    diags
}

fn no_hypervisor(model: &Model, cluster: &Cluster) -> Diagnostic {
    let site = &model.site;
    let hv = crate::model::hypervisor_name(cluster.hypervisor);
    let mut others: Vec<&str> = site
        .hosts
        .iter()
        .flat_map(|h| h.hypervisors.iter().map(|v| v.as_str()))
        .collect();
    others.sort_unstable();
    others.dedup();
    let (secondary, hint) = match others.as_slice() {
        [] => (
            format!("site `{}` declares no host", site.name),
            format!("add hosts to site `{}`", site.name),
        ),
        [one] => (
            format!("the hosts of site `{}` run {one}", site.name),
            format!(
                "set `hypervisor {one}` in cluster `{}`, or add {hv} hosts to site `{}`",
                cluster.name, site.name
            ),
        ),
        several => (
            format!(
                "the hosts of site `{}` run {}",
                site.name,
                several.join(" and ")
            ),
            format!(
                "change the `hypervisor` of cluster `{}`, or add {hv} hosts to site `{}`",
                cluster.name, site.name
            ),
        ),
    };
    Diagnostic::error(
        cluster.origin.span,
        format!(
            "no host of site `{}` runs `{hv}`, the hypervisor of cluster `{}`",
            site.name, cluster.name
        ),
    )
    .with_label(format!("cluster `{}` needs {hv} hosts", cluster.name))
    .with_secondary(site.origin.span, secondary)
    .with_hint(hint)
}

/// One diagnostic per resource of which the clusters of hypervisor `hv` need more than
/// the hosts of `hv` offer in all. Layers count once each, as if all nodes sharing one
/// could sit on one host: this is a lower bound, not a placement.
fn site_totals(model: &Model, hv: Option<Hypervisor>, clusters: &[&Cluster]) -> Vec<Diagnostic> {
    let site = &model.site;
    let hosts: Vec<&Host> = site
        .hosts
        .iter()
        .filter(|h| h.hypervisor_for(hv).is_some())
        .collect();
    let offered = hosts
        .iter()
        .map(|h| capacity(h))
        .fold(Free::default(), Add::add);
    let needs: Vec<Free> = clusters.iter().map(|c| cluster_needs(c)).collect();
    let needed = needs.iter().copied().fold(Free::default(), Add::add);
    let subject = match clusters {
        [one] => format!("cluster `{}` needs", one.name),
        several => {
            let names: Vec<String> = several.iter().map(|c| format!("`{}`", c.name)).collect();
            format!("clusters {} need", join_and(&names))
        }
    };
    let offerer = if hosts.len() == site.hosts.len() {
        format!("site `{}` offers", site.name)
    } else {
        format!(
            "the {} hosts of site `{}` offer",
            crate::model::hypervisor_name(hv),
            site.name
        )
    };
    let rows = [
        (Resource::Cpu, needed.cpu, offered.cpu),
        (Resource::Pinned, needed.pinned, offered.pinned),
        (Resource::Memory, needed.memory, offered.memory),
        (Resource::Disk, needed.disk, offered.disk),
    ];
    let mut diags = Vec::new();
    for (resource, need, offer) in rows {
        if need <= offer {
            continue;
        }
        let (what, of, after, hint) = match resource {
            Resource::Cpu => (
                vcpus(need),
                "",
                "",
                "lower the `count` or `cpu` of a role, raise the hosts' `overcommit`, or add hosts",
            ),
            Resource::Pinned => (
                Resource::Pinned.amount(need),
                " of their own",
                " in all",
                "lower the `count` or `cpu` of a pinned role, drop `pinned` from one, or add hosts",
            ),
            Resource::Memory => (
                human_size(need),
                " of memory",
                " after the hosts' reserves",
                "lower the `count` or `memory` of a role, or add hosts",
            ),
            Resource::Disk => (
                human_size(need),
                " of disk",
                "",
                "lower the `count`, `swap` or layer sizes of a role, or add hosts or disk",
            ),
        };
        let offer_text = match resource {
            Resource::Cpu | Resource::Pinned => offer.to_string(),
            _ => human_size(offer),
        };
        let mut diag = Diagnostic::error(
            site.origin.span,
            format!("{subject} {what}{of} but {offerer} {offer_text}{after}"),
        )
        .with_label(format!(
            "{} on {} {} host{}",
            resource.amount(offer),
            hosts.len(),
            crate::model::hypervisor_name(hv),
            if hosts.len() == 1 { "" } else { "s" }
        ))
        .with_hint(format!("{hint} to site `{}`", site.name));
        for (cluster, need) in clusters.iter().zip(&needs) {
            let n = match resource {
                Resource::Cpu => need.cpu,
                Resource::Pinned => need.pinned,
                Resource::Memory => need.memory,
                Resource::Disk => need.disk,
            };
            diag = diag.with_secondary(
                cluster.origin.span,
                format!("cluster `{}` needs {}", cluster.name, resource.amount(n)),
            );
        }
        diags.push(diag);
    }
    diags
}

/// What all nodes of a cluster need together, each layer they use counted once.
fn cluster_needs(cluster: &Cluster) -> Free {
    let mut total = Free::default();
    let mut layers: BTreeSet<String> = BTreeSet::new();
    for role in &cluster.roles {
        let d = demand(cluster, role);
        let count = cluster.nodes_of(&role.name).count() as u64;
        if count == 0 {
            continue;
        }
        total.cpu += u64::from(d.cpu) * count;
        if d.pinned {
            total.pinned += u64::from(d.cpu) * count;
        }
        total.memory += d.memory * count;
        total.disk += d.disk * count;
        for (id, size) in d.layers {
            if layers.insert(id) {
                total.disk += size;
            }
        }
    }
    total
}

fn fits_nowhere(model: &Model, d: &Decision, others: usize) -> Option<Diagnostic> {
    let site = &model.site;
    let cluster = model.clusters.iter().find(|c| c.name == d.cluster)?;
    let role = cluster.role(&d.role)?;
    let best = d.best()?;
    let host = site.hosts.iter().find(|h| h.name == best.host)?;
    let demand = &d.demand;
    let mut label = format!(
        "each node of role `{}` needs {}, {} of memory and {} of disk, and its layers",
        role.name,
        vcpus(u64::from(demand.cpu)),
        human_size(demand.memory),
        human_size(demand.disk),
    );
    if others > 0 {
        label.push_str(&format!(
            "; {others} more node{} of this role fit{} nowhere either",
            if others == 1 { "" } else { "s" },
            if others == 1 { "s" } else { "" }
        ));
    }
    let fields: Vec<&str> = best
        .short
        .iter()
        .map(|s| match s.resource {
            Resource::Cpu | Resource::Pinned => "`cpu`",
            Resource::Memory => "`memory`",
            Resource::Disk => "`swap` or layer sizes",
        })
        .collect();
    let resources: Vec<&str> = best.short.iter().map(|s| s.resource.as_str()).collect();
    let overcommit = if resources.contains(&"cpu") {
        ", raise the hosts' `overcommit`"
    } else {
        ""
    };
    let mut diag = Diagnostic::error(
        role.origin.span,
        format!("node `{}` fits no host of site `{}`", d.node, site.name),
    )
    .with_label(label)
    .with_secondary(
        host.origin.span,
        format!("`{}` is the host that lacks least", host.name),
    )
    .with_hint(format!(
        "on `{}`, the best host, {}",
        host.name,
        shortfalls(host, best)
    ))
    .with_hint(format!(
        "lower the {} of role `{}`{overcommit}, or add a host with more {} to site `{}`",
        join_and(&fields),
        role.name,
        join_and(&resources),
        site.name
    ));
    let matching = d.candidates.iter().filter(|c| c.hypervisor).count();
    if matching < d.candidates.len() {
        diag = diag.with_hint(format!(
            "only the {matching} {} hosts of site `{}` can take nodes of cluster `{}`",
            crate::model::hypervisor_name(d.hypervisor),
            site.name,
            d.cluster
        ));
    }
    Some(diag)
}

/// `memory is short by 96 MiB (needs 512 MiB, 416 MiB free after the 96 MiB reserve)`,
/// several joined with `and`.
pub fn shortfalls(host: &Host, candidate: &Candidate) -> String {
    let parts: Vec<String> = candidate
        .short
        .iter()
        .map(|s| {
            let r = s.resource;
            let detail = match r {
                Resource::Cpu => format!(
                    "needs {}, {} free of {} cpu{} × overcommit {}",
                    s.needed,
                    s.free,
                    host.cpu,
                    if host.cpu == 1 { "" } else { "s" },
                    host.overcommit
                ),
                Resource::Pinned => format!(
                    "needs {} of its own, {} of the host's {} not yet pinned",
                    r.amount(s.needed),
                    s.free,
                    host.cpu
                ),
                Resource::Memory if host.reserve > 0 => format!(
                    "needs {}, {} free after the {} reserve",
                    human_size(s.needed),
                    human_size(s.free),
                    human_size(host.reserve)
                ),
                Resource::Memory => {
                    format!(
                        "needs {}, {} free",
                        human_size(s.needed),
                        human_size(s.free)
                    )
                }
                Resource::Disk if candidate.layer_disk > 0 => format!(
                    "needs {} with {} of layers not yet on the host, {} free",
                    human_size(s.needed),
                    human_size(candidate.layer_disk),
                    human_size(s.free)
                ),
                Resource::Disk => {
                    format!(
                        "needs {}, {} free",
                        human_size(s.needed),
                        human_size(s.free)
                    )
                }
            };
            format!("{} is short by {} ({detail})", r.as_str(), r.amount(s.by()))
        })
        .collect();
    join_and(&parts)
}

/// `a`, `a and b`, `a, b and c`.
pub(crate) fn join_and<S: AsRef<str>>(items: &[S]) -> String {
    join(items, "and")
}

fn join<S: AsRef<str>>(items: &[S], word: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_owned(),
        [init @ .., last] => {
            let init: Vec<&str> = init.iter().map(AsRef::as_ref).collect();
            format!("{} {word} {}", init.join(", "), last.as_ref())
        }
    }
}
