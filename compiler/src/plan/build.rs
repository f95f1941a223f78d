//! Writing the plan from a placed model: hosts, clusters and their networks, layers,
//! nodes, the staging list and the steps. Also the one ordering check the plan needs:
//! roles must not mount from each other in a cycle, or no node could start first.

use super::layer_id;
use super::place::{demand, Decision};
use crate::model::SiteAccess;
use crate::model::{
    Access, Assign, Cluster, Hypervisor, LayerSource, Model, NicMethod, Persistence, SchedulerKind,
};
use std::collections::{BTreeSet, HashMap};
use vocc_dsl::Diagnostic;
use vocc_runtime::hostlink::HostLink;
use vocc_runtime::plan::{
    self, Action, BatchKind, PlanBatch, PlanCluster, PlanDisk, PlanDrain, PlanHost, PlanImages,
    PlanLayer, PlanNetwork, PlanNic, PlanNode, StageItem, State, Step,
};
use vocc_runtime::{Plan, SCHEMA_VERSION};

/// The plan of a model whose every node has a host in `decisions`.
pub(super) fn build(model: &Model, decisions: &[Decision]) -> Plan {
    let site = &model.site;
    let host_of: HashMap<&str, &str> = decisions
        .iter()
        .filter_map(|d| Some((d.node.as_str(), d.chosen.as_deref()?)))
        .collect();
    let runs: HashMap<&str, Hypervisor> = decisions
        .iter()
        .filter_map(|d| Some((d.node.as_str(), d.runs?)))
        .collect();
    let hosts: Vec<PlanHost> = site
        .hosts
        .iter()
        .map(|h| PlanHost {
            name: h.name.clone(),
            hypervisors: h.hypervisors.iter().map(|v| hypervisor(*v)).collect(),
            cpu: h.cpu,
            overcommit: h.overcommit,
            memory: h.memory,
            reserve: h.reserve,
            disk: h.disk,
            address: h.address.clone(),
            link: link(&site.access, &h.name, h.address.as_deref()),
        })
        .collect();
    let images = site.images.as_ref().and_then(|server| {
        Some(PlanImages {
            name: server.name.clone(),
            address: server.address.clone(),
            // The checker refuses an image server on a site without `access`.
            link: link(&site.access, &server.name, server.address.as_deref())?,
        })
    });
    let clusters: Vec<PlanCluster> = model
        .clusters
        .iter()
        .map(|c| plan_cluster(model, c))
        .collect();
    let layers: Vec<PlanLayer> = model
        .clusters
        .iter()
        .flat_map(|c| {
            c.layers.iter().map(|l| PlanLayer {
                id: layer_id(&c.name, &l.name),
                cluster: c.name.clone(),
                name: l.name.clone(),
                source: source_text(&l.source),
                size: l.size,
                sha256: None,
                image: None,
                format: None,
                kernel: None,
                initrd: None,
                sums: Default::default(),
            })
        })
        .collect();

    let mut nodes = Vec::new();
    for cluster in &model.clusters {
        // Node ids by role, once per cluster: looking them up per node would make
        // planning quadratic in the cluster size.
        let mut by_role: std::collections::HashMap<&str, Vec<&str>> =
            std::collections::HashMap::new();
        for n in &cluster.nodes {
            by_role
                .entry(n.role.as_str())
                .or_default()
                .push(n.id.as_str());
        }
        for role in &cluster.roles {
            let need = demand(cluster, role);
            // Exporting roles have one node (the checker sees to it), so this is short.
            let mut deps: Vec<&str> = Vec::new();
            for mount in &role.mounts {
                for dep in by_role.get(mount.role.as_str()).into_iter().flatten() {
                    if !deps.contains(dep) {
                        deps.push(dep);
                    }
                }
            }
            for node in cluster.nodes_of(&role.name) {
                let after: Vec<String> = deps
                    .iter()
                    .filter(|d| **d != node.id)
                    .map(|d| (*d).to_owned())
                    .collect();
                let bridge = |network: &str| site.bridge(network).map(str::to_owned);
                nodes.push(PlanNode {
                    id: node.id.clone(),
                    cluster: cluster.name.clone(),
                    hostname: node.hostname.clone(),
                    role: role.name.clone(),
                    index: node.index,
                    standby: role.standby(node.index),
                    host: host_of
                        .get(node.id.as_str())
                        .copied()
                        .unwrap_or_default()
                        .to_owned(),
                    hypervisor: runs
                        .get(node.id.as_str())
                        .copied()
                        .or(cluster.hypervisor)
                        .map(hypervisor),
                    cpu: role.cpu,
                    cpus: None,
                    memory: role.memory,
                    disk: need.disk,
                    swap: role.swap,
                    persistence: persistence(role.persistence),
                    root: role
                        .root
                        .iter()
                        .map(|l| layer_id(&cluster.name, l))
                        .collect(),
                    root_image: None,
                    disks: role
                        .disks
                        .iter()
                        .map(|d| PlanDisk {
                            layer: layer_id(&cluster.name, &d.layer),
                            at: d.at.clone(),
                            access: access(d.access),
                        })
                        .collect(),
                    nics: node
                        .nics
                        .iter()
                        .map(|n| PlanNic {
                            name: n.name.clone(),
                            network: n.network.clone(),
                            method: method(n.method),
                            address: n.address.map(|a| a.to_string()),
                            mac: n.mac.clone(),
                            bridge: bridge(&n.network),
                        })
                        .collect(),
                    after,
                    dir: format!("nodes/{}", node.id),
                    source: role.origin.location.clone(),
                });
            }
        }
    }

    pin(model, &mut nodes);
    let staging = staging(site.hosts.iter().map(|h| h.name.as_str()), &layers, &nodes);
    let steps = steps(&staging, &nodes);
    Plan {
        schema_version: SCHEMA_VERSION,
        site: site.name.clone(),
        store: site.store.clone(),
        hosts,
        images,
        clusters,
        layers,
        nodes,
        staging,
        steps,
    }
}

/// Gives each node of a pinned role (`cpu N pinned`) its own host CPUs: on each host,
/// the next `cpu` CPUs no pinned node took before it, in plan order. Placement has
/// already made sure that a host's pinned nodes need no more CPUs than it has.
fn pin(model: &Model, nodes: &mut [PlanNode]) {
    let pinned: BTreeSet<(&str, &str)> = model
        .clusters
        .iter()
        .flat_map(|c| {
            c.roles
                .iter()
                .filter(|r| r.pinned)
                .map(move |r| (c.name.as_str(), r.name.as_str()))
        })
        .collect();
    if pinned.is_empty() {
        return;
    }
    let cpus: HashMap<&str, u32> = model
        .site
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), h.cpu))
        .collect();
    let mut next: HashMap<String, u32> = HashMap::new();
    for n in nodes.iter_mut() {
        if !pinned.contains(&(n.cluster.as_str(), n.role.as_str())) || n.host.is_empty() {
            continue;
        }
        let first = next.entry(n.host.clone()).or_insert(0);
        let end = *first + n.cpu;
        if end <= cpus.get(n.host.as_str()).copied().unwrap_or(0) {
            n.cpus = Some((*first..end).collect());
            *first = end;
        }
    }
}

fn plan_cluster(model: &Model, cluster: &Cluster) -> PlanCluster {
    PlanCluster {
        name: cluster.name.clone(),
        vo: cluster.vo.clone(),
        hypervisor: cluster.hypervisor.map(hypervisor),
        domain: cluster.domain.clone(),
        networks: cluster
            .networks
            .iter()
            .map(|n| PlanNetwork {
                name: n.name.clone(),
                subnet: n.cidr(),
                assign: assign(n.assign),
                gateway: n.gateway.map(|g| g.to_string()),
                bridge: model.site.bridge(&n.name).map(str::to_owned),
                uplink: n.uplink,
            })
            .collect(),
        batch: plan_batch(cluster),
    }
}

/// The cluster's batch system as the runtime needs it to drain a compute node: the
/// controller's node, the compute roles, and the module's drain commands.
fn plan_batch(cluster: &Cluster) -> Option<PlanBatch> {
    let sched = cluster.scheduler.as_ref()?;
    let controller = cluster.nodes.iter().find(|n| n.role == sched.controller)?;
    let module = crate::scheduler::of(sched.kind);
    let owned = |argv: &[&str]| argv.iter().map(|a| (*a).to_owned()).collect();
    Some(PlanBatch {
        kind: match sched.kind {
            SchedulerKind::Slurm => BatchKind::Slurm,
            SchedulerKind::Condor => BatchKind::Condor,
            SchedulerKind::Sge => BatchKind::Sge,
            SchedulerKind::Pbs => BatchKind::Pbs,
        },
        controller: controller.id.clone(),
        compute: cluster
            .roles
            .iter()
            .filter(|r| r.scheduler.as_ref().is_some_and(|s| s.compute))
            .map(|r| r.name.clone())
            .collect(),
        drain: module.drain().map(|d| PlanDrain {
            start: owned(d.start),
            jobs: owned(d.jobs),
        }),
    })
}

/// Each layer once per host that runs a node using it, by host (site order) then layer
/// (plan order).
fn staging<'a>(
    hosts: impl Iterator<Item = &'a str>,
    layers: &[PlanLayer],
    nodes: &[PlanNode],
) -> Vec<StageItem> {
    let host_rank: HashMap<&str, usize> = hosts.enumerate().map(|(i, h)| (h, i)).collect();
    let layer_rank: HashMap<&str, usize> = layers
        .iter()
        .enumerate()
        .map(|(i, l)| (l.id.as_str(), i))
        .collect();
    let mut set: BTreeSet<(usize, usize, &str, &str)> = BTreeSet::new();
    for node in nodes {
        for layer in node_layers(node) {
            // Ranks are known for every placed node and resolved layer; an unknown name
            // sorts last rather than being dropped.
            let h = host_rank
                .get(node.host.as_str())
                .copied()
                .unwrap_or(usize::MAX);
            let l = layer_rank.get(layer).copied().unwrap_or(usize::MAX);
            set.insert((h, l, node.host.as_str(), layer));
        }
    }
    set.into_iter()
        .map(|(_, _, host, layer)| StageItem {
            host: host.to_owned(),
            layer: layer.to_owned(),
        })
        .collect()
}

/// The layers a node uses, root first, each once.
fn node_layers(node: &PlanNode) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for layer in node.root.iter().chain(node.disks.iter().map(|d| &d.layer)) {
        if !out.contains(&layer.as_str()) {
            out.push(layer);
        }
    }
    out
}

fn stage_id(host: &str, layer: &str) -> String {
    format!("stage:{host}:{layer}")
}

/// Staging steps first, then per node `load` (after its layers are staged on its host),
/// `start` (after its load) and `ready` (after its start and after every node it mounts
/// from is ready). Nodes boot together: a node's readiness marker waits for its own
/// mounts, so a worker boots while its head does and is ready once it has mounted.
fn steps(staging: &[StageItem], nodes: &[PlanNode]) -> Vec<Step> {
    let mut steps: Vec<Step> = staging
        .iter()
        .map(|s| Step {
            id: stage_id(&s.host, &s.layer),
            action: Action::Stage {
                host: s.host.clone(),
                layer: s.layer.clone(),
            },
            after: Vec::new(),
            reaches: State::Staged,
        })
        .collect();
    for node in nodes {
        let load = format!("load:{}", node.id);
        let start = format!("start:{}", node.id);
        steps.push(Step {
            id: load.clone(),
            action: Action::Load {
                node: node.id.clone(),
            },
            after: node_layers(node)
                .into_iter()
                .map(|l| stage_id(&node.host, l))
                .collect(),
            reaches: State::Loaded,
        });
        steps.push(Step {
            id: start.clone(),
            action: Action::Start {
                node: node.id.clone(),
            },
            after: vec![load],
            reaches: State::Running,
        });
        let mut after = vec![start];
        after.extend(node.after.iter().map(|dep| format!("ready:{dep}")));
        steps.push(Step {
            id: format!("ready:{}", node.id),
            action: Action::WaitReady {
                node: node.id.clone(),
            },
            after,
            reaches: State::Running,
        });
    }
    steps
}

/// A node is ready only once the nodes it mounts from are ready, so roles that mount
/// from each other (or a role from itself) could never be. One diagnostic per cycle, at
/// the mount that closes it.
pub(super) fn check_mounts(model: &Model) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for cluster in &model.clusters {
        let roles = &cluster.roles;
        let index: HashMap<&str, usize> = roles
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.as_str(), i))
            .collect();
        // 0 new, 1 on the current path, 2 done.
        let mut mark = vec![0u8; roles.len()];
        // Several mounts between the same two roles close the same cycle: report it once.
        let mut reported: BTreeSet<(usize, usize)> = BTreeSet::new();
        for root in 0..roles.len() {
            if mark[root] != 0 {
                continue;
            }
            let mut path: Vec<(usize, usize)> = vec![(root, 0)];
            mark[root] = 1;
            while let Some(&mut (role, ref mut next)) = path.last_mut() {
                let Some(mount) = roles[role].mounts.get(*next) else {
                    mark[role] = 2;
                    path.pop();
                    continue;
                };
                *next += 1;
                let Some(&to) = index.get(mount.role.as_str()) else {
                    continue;
                };
                match mark[to] {
                    0 => {
                        mark[to] = 1;
                        path.push((to, 0));
                    }
                    1 if reported.insert((role, to)) => {
                        let from = path.iter().position(|&(r, _)| r == to).unwrap_or(0);
                        let names: Vec<String> = path[from..]
                            .iter()
                            .map(|&(r, _)| format!("`{}`", roles[r].name))
                            .collect();
                        let message = if names.len() == 1 {
                            format!("role {} mounts from itself", names[0])
                        } else {
                            format!(
                                "roles {} mount from each other in a cycle",
                                super::place::join_and(&names)
                            )
                        };
                        diags.push(
                            Diagnostic::error(mount.origin.span, message)
                                .with_label(format!(
                                    "role `{}` mounts from `{}` here",
                                    roles[role].name, mount.role
                                ))
                                .with_hint(
                                    "a node is ready only once the nodes it mounts from are ready; \
                                     remove one of the mounts of the cycle",
                                ),
                        );
                    }
                    _ => {}
                }
            }
        }
    }
    diags
}

fn source_text(source: &LayerSource) -> String {
    match source {
        LayerSource::Busybox => "busybox".to_owned(),
        LayerSource::Debian { suite } => format!("debian {suite}"),
        LayerSource::Image { path, .. } => format!("image {path}"),
        LayerSource::Dir { path } => format!("dir {path}"),
    }
}

fn assign(assign: Assign) -> plan::Assign {
    match assign {
        Assign::Dhcp => plan::Assign::Dhcp,
        Assign::Static => plan::Assign::Static,
        Assign::Pool => plan::Assign::Pool,
        Assign::External => plan::Assign::External,
    }
}

fn method(method: NicMethod) -> plan::NicMethod {
    match method {
        NicMethod::Dhcp => plan::NicMethod::Dhcp,
        NicMethod::Static => plan::NicMethod::Static,
        NicMethod::Pool => plan::NicMethod::Pool,
        NicMethod::External => plan::NicMethod::External,
    }
}

fn persistence(persistence: Persistence) -> plan::Persistence {
    match persistence {
        Persistence::Persistent => plan::Persistence::Persistent,
        Persistence::Ephemeral => plan::Persistence::Ephemeral,
    }
}

fn access(access: Access) -> plan::Access {
    match access {
        Access::Ro => plan::Access::Ro,
        Access::Rw => plan::Access::Rw,
    }
}

fn hypervisor(hypervisor: Hypervisor) -> plan::Hypervisor {
    match hypervisor {
        Hypervisor::Xen => plan::Hypervisor::Xen,
        Hypervisor::Kvm => plan::Hypervisor::Kvm,
    }
}

/// How the control machine reaches the machine `name` (a host or the image server),
/// from the site's `access`.
fn link(access: &SiteAccess, name: &str, address: Option<&str>) -> Option<HostLink> {
    match access {
        SiteAccess::Local => None,
        SiteAccess::Ssh {
            user,
            identity,
            known_hosts,
            program,
            ..
        } => Some(HostLink::Ssh {
            // The checker requires an address of every machine under `access ssh`.
            address: address.unwrap_or(name).to_owned(),
            user: user.clone(),
            identity: identity.into(),
            known_hosts: known_hosts.into(),
            program: program.clone(),
        }),
        SiteAccess::Slurm { program, conf, .. } => Some(HostLink::Slurm {
            node: name.to_owned(),
            program: program.clone(),
            conf: conf.as_ref().map(Into::into),
        }),
    }
}
