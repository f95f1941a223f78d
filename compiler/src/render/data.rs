//! The variables templates see, built from the model and the plan. templates/README.md
//! lists them per template; the structs here are that list in code.
//!
//! Facts every node of a cluster shares (the scheduler's controller, the DHCP servers,
//! the queues and their nodes) are worked out once per cluster in [`ClusterFacts`], so
//! that building one node's variables never walks the whole cluster.

use super::layout;
use super::RenderError;
use crate::model::*;
use crate::scheduler::Queues;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use vocc_runtime::plan::{PlanLayer, PlanNode};

/// `serde_json::to_value` of types that always convert (plain structs, string keys).
pub(crate) fn value(t: impl Serialize) -> Value {
    serde_json::to_value(t).unwrap_or_default()
}

pub(crate) const MIB: u64 = 1 << 20;

#[derive(Serialize)]
pub(crate) struct ClusterVars<'a> {
    pub name: &'a str,
    pub vo: &'a str,
    pub domain: &'a str,
    pub hypervisor: &'static str,
    pub source: &'a str,
}

/// A node as other files name it.
#[derive(Serialize, Clone)]
pub(crate) struct HostRef {
    pub hostname: String,
    pub fqdn: String,
    /// Its address on the network in question, when known.
    pub address: Option<String>,
}

#[derive(Serialize, Clone)]
pub(crate) struct NetRef {
    pub name: String,
    /// `10.20.0.0/24`
    pub cidr: String,
}

#[derive(Serialize, Clone)]
pub(crate) struct SchedVars {
    pub kind: &'static str,
    pub controller: HostRef,
    /// The network the batch system talks over: the controller's first network that
    /// another role of the batch system also has.
    pub network: Option<NetRef>,
}

#[derive(Serialize)]
pub(crate) struct RoleSchedVars<'a> {
    pub controller: bool,
    pub compute: bool,
    pub submit: bool,
    /// The queues a compute role serves (its own list, or the default queue).
    pub queues: Vec<&'a str>,
}

#[derive(Serialize)]
pub(crate) struct RoleVars<'a> {
    pub name: &'a str,
    pub count: u32,
    pub cpu: u32,
    pub memory_mib: u64,
    pub memory_kib: u64,
    pub swap_mib: Option<u64>,
    pub persistence: &'static str,
    pub cmdline: &'a [String],
    pub scheduler: Option<RoleSchedVars<'a>>,
    pub source: &'a str,
}

/// A queue (partition) of the batch system, with the compute roles that serve it.
pub(crate) struct QueueFacts<'a> {
    pub name: &'a str,
    pub vo: Option<&'a str>,
    pub default: bool,
    pub roles: Vec<&'a Role>,
    pub source: &'a str,
}

/// One network a DHCP server serves.
pub(crate) struct DhcpNet<'a> {
    pub network: &'a Network,
    /// The server's interface and address on it.
    pub interface: &'a str,
    pub address: Ipv4Addr,
}

/// A node that runs dnsmasq, and the networks it serves.
pub(crate) struct DhcpServer<'a> {
    pub node: &'a Node,
    pub networks: Vec<DhcpNet<'a>>,
}

/// What a cluster's files need to know about the cluster as a whole.
pub(crate) struct ClusterFacts<'a> {
    pub cluster: &'a Cluster,
    pub first_of_role: HashMap<&'a str, &'a Node>,
    pub sched: Option<(&'a Scheduler, SchedVars)>,
    pub queues: Vec<QueueFacts<'a>>,
    pub dhcp: Vec<DhcpServer<'a>>,
}

impl<'a> ClusterFacts<'a> {
    pub fn new(cluster: &'a Cluster) -> Result<ClusterFacts<'a>, RenderError> {
        let mut first_of_role: HashMap<&str, &Node> = HashMap::new();
        for n in &cluster.nodes {
            first_of_role.entry(n.role.as_str()).or_insert(n);
        }
        let mut facts = ClusterFacts {
            cluster,
            first_of_role,
            sched: None,
            queues: Vec::new(),
            dhcp: Vec::new(),
        };
        if let Some(s) = &cluster.scheduler {
            let vars = facts.sched_vars(s)?;
            facts.sched = Some((s, vars));
            facts.queues = queues(cluster, s);
        }
        facts.dhcp = facts.dhcp_servers()?;
        Ok(facts)
    }

    pub fn fqdn(&self, hostname: &str) -> String {
        format!("{hostname}.{}", self.cluster.domain)
    }

    pub fn cluster_vars(&self) -> ClusterVars<'a> {
        let c = self.cluster;
        ClusterVars {
            name: &c.name,
            vo: &c.vo,
            domain: &c.domain,
            hypervisor: c.files_hypervisor().as_str(),
            source: &c.origin.location,
        }
    }

    pub fn sched_vars_of(&self) -> Option<&SchedVars> {
        self.sched.as_ref().map(|(_, v)| v)
    }

    fn sched_vars(&self, s: &Scheduler) -> Result<SchedVars, RenderError> {
        let c = self.cluster;
        let Some(node) = self.first_of_role.get(s.controller.as_str()) else {
            return Err(RenderError::Model {
                location: c.origin.location.clone(),
                message: format!(
                    "the {} controller role `{}` of cluster `{}` has no node",
                    s.kind.as_str(),
                    s.controller,
                    c.name
                ),
            });
        };
        // The batch network: the controller's first network that another role of the
        // batch system shares; else its first network with an address.
        let others: Vec<&NicSpec> = c
            .roles
            .iter()
            .filter(|r| r.name != s.controller && r.scheduler.is_some())
            .flat_map(|r| &r.nics)
            .collect();
        let nic = node
            .nics
            .iter()
            .find(|n| n.address.is_some() && others.iter().any(|o| o.network == n.network))
            .or_else(|| node.nics.iter().find(|n| n.address.is_some()));
        Ok(SchedVars {
            kind: s.kind.as_str(),
            controller: HostRef {
                hostname: node.hostname.clone(),
                fqdn: self.fqdn(&node.hostname),
                address: nic.and_then(|n| n.address).map(|a| a.to_string()),
            },
            network: nic.and_then(|n| c.network(&n.network)).map(|net| NetRef {
                name: net.name.clone(),
                cidr: net.cidr(),
            }),
        })
    }

    /// The DHCP server of every network on which some NIC asks for a fixed lease: the
    /// first node of the scheduler's controller role that has a static or pool address
    /// on it, else the first node in model order that has one.
    fn dhcp_servers(&self) -> Result<Vec<DhcpServer<'a>>, RenderError> {
        let c = self.cluster;
        let controller = self.sched.as_ref().map(|(s, _)| s.controller.as_str());
        let mut servers: Vec<DhcpServer<'a>> = Vec::new();
        for net in &c.networks {
            let wanted = c.nodes.iter().any(|n| {
                n.nics
                    .iter()
                    .any(|i| i.network == net.name && i.method == NicMethod::Dhcp)
            });
            if !wanted {
                continue;
            }
            let serves = |n: &'a Node| {
                n.nics.iter().find(|i| {
                    i.network == net.name
                        && matches!(i.method, NicMethod::Static | NicMethod::Pool)
                        && i.address.is_some()
                })
            };
            let chosen = c
                .nodes
                .iter()
                .filter(|n| Some(n.role.as_str()) == controller)
                .find_map(|n| serves(n).map(|i| (n, i)))
                .or_else(|| c.nodes.iter().find_map(|n| serves(n).map(|i| (n, i))));
            let Some((node, nic)) = chosen else {
                return Err(RenderError::Model {
                    location: net.origin.location.clone(),
                    message: format!(
                        "network `{}` of cluster `{}` has DHCP clients but no node with a \
                         static or pool address on it to serve DHCP",
                        net.name, c.name
                    ),
                });
            };
            let dnet = DhcpNet {
                network: net,
                interface: &nic.name,
                address: nic.address.unwrap_or(Ipv4Addr::UNSPECIFIED),
            };
            match servers.iter_mut().find(|s| s.node.id == node.id) {
                Some(s) => s.networks.push(dnet),
                None => servers.push(DhcpServer {
                    node,
                    networks: vec![dnet],
                }),
            }
        }
        Ok(servers)
    }

    pub fn role_vars(&self, role: &'a Role) -> RoleVars<'a> {
        RoleVars {
            name: &role.name,
            count: role.count,
            cpu: role.cpu,
            memory_mib: role.memory.div_ceil(MIB),
            memory_kib: role.memory.div_ceil(1024),
            swap_mib: role.swap.map(|s| s.div_ceil(MIB)),
            persistence: match role.persistence {
                Persistence::Persistent => "persistent",
                Persistence::Ephemeral => "ephemeral",
            },
            cmdline: &role.cmdline,
            scheduler: role.scheduler.as_ref().map(|s| RoleSchedVars {
                controller: s.controller,
                compute: s.compute,
                submit: s.submit,
                queues: self.served_queues(role),
            }),
            source: &role.origin.location,
        }
    }

    /// The queues a compute role serves.
    pub fn served_queues(&self, role: &'a Role) -> Vec<&'a str> {
        self.queues
            .iter()
            .filter(|q| q.roles.iter().any(|r| r.name == role.name))
            .map(|q| q.name)
            .collect()
    }

    /// The address of `node` on `network`.
    pub fn address_on(node: &Node, network: &str) -> Option<Ipv4Addr> {
        node.nics
            .iter()
            .find(|n| n.network == network)
            .and_then(|n| n.address)
    }
}

/// The queues of a batch system: those declared (or its implicit queue, for a model
/// the checker did not fill in), the first one marked default (or the first one), and
/// the compute roles serving each; a compute role that names no queue serves the
/// default one. A batch system without queues has none.
fn queues<'a>(cluster: &'a Cluster, s: &'a Scheduler) -> Vec<QueueFacts<'a>> {
    let mut qs: Vec<QueueFacts<'a>> = s
        .queues
        .iter()
        .map(|q| QueueFacts {
            name: &q.name,
            vo: q.vo.as_deref(),
            default: q.default,
            roles: Vec::new(),
            source: &q.origin.location,
        })
        .collect();
    match crate::scheduler::of(s.kind).queues() {
        Queues::Named { implicit, .. } if qs.is_empty() => qs.push(QueueFacts {
            name: implicit,
            vo: None,
            default: true,
            roles: Vec::new(),
            source: &cluster.origin.location,
        }),
        Queues::Named { .. } => {}
        Queues::None { .. } => return Vec::new(),
    }
    let default = qs.iter().position(|q| q.default).unwrap_or(0);
    for (i, q) in qs.iter_mut().enumerate() {
        q.default = i == default;
    }
    for role in &cluster.roles {
        let Some(sr) = role.scheduler.as_ref().filter(|sr| sr.compute) else {
            continue;
        };
        if sr.queues.is_empty() {
            qs[default].roles.push(role);
        } else {
            for q in qs
                .iter_mut()
                .filter(|q| sr.queues.iter().any(|n| n == q.name))
            {
                q.roles.push(role);
            }
        }
    }
    qs
}

/// One disk of a node, in attachment order (see [`layout`]).
#[derive(Serialize)]
pub(crate) struct DiskVars<'a> {
    /// `root`, `data`, `swap` or `config`.
    pub kind: &'static str,
    pub dev: String,
    /// The image on the host (node variables only; empty in role variables).
    pub path: String,
    /// `qcow2` or `raw`.
    pub format: &'static str,
    pub readonly: bool,
    /// For data disks: the layer, mount point and access.
    pub layer: Option<&'a str>,
    pub at: Option<&'a str>,
    pub access: Option<&'static str>,
}

/// The built images of the plan's layers, by layer id (`<cluster>/<layer>`): where
/// the image step put them, when it has run.
pub(crate) type PlanLayers<'a> = HashMap<&'a str, &'a PlanLayer>;

/// The image of layer `layer` of `cluster` under `store`, and its format: the plan's
/// when the image step recorded one, else the layout's.
fn layer_image(
    layers: &PlanLayers<'_>,
    store: &str,
    cluster: &str,
    layer: &str,
) -> (String, &'static str) {
    let built = layers.get(format!("{cluster}/{layer}").as_str());
    match built.and_then(|l| l.image.as_deref()) {
        Some(image) => {
            let format = built.and_then(|l| l.format).map_or("raw", |f| f.as_str());
            (layout::in_store(store, image), format)
        }
        None => (layout::layer_image(store, cluster, layer), "raw"),
    }
}

/// The kernel and initramfs a node boots: those the plan records for the layer its
/// root is backed by (`root_image`, else its bottom root layer), else the layout's.
pub(crate) fn kernel(
    layers: &PlanLayers<'_>,
    store: &str,
    cluster: &str,
    placed: &PlanNode,
    role: &Role,
) -> (String, String) {
    let id = placed
        .root_image
        .as_deref()
        .or(placed.root.first().map(String::as_str));
    let built = id.and_then(|id| layers.get(id));
    if let Some(l) = built {
        if let (Some(k), Some(i)) = (&l.kernel, &l.initrd) {
            return (layout::in_store(store, k), layout::in_store(store, i));
        }
    }
    match role.root.first() {
        Some(l) => layout::kernel(store, cluster, l),
        None => Default::default(),
    }
}

/// The disks of a node of `role` whose files are in `dir` (`None`: without paths), named
/// as hypervisor `hv` names them.
pub(crate) fn disks<'a>(
    cluster: &Cluster,
    hv: crate::model::Hypervisor,
    role: &'a Role,
    layers: &PlanLayers<'_>,
    store: &str,
    dir: Option<&str>,
) -> Vec<DiskVars<'a>> {
    let path = |file: &str| {
        dir.map(|d| layout::node_file(store, d, file))
            .unwrap_or_default()
    };
    let mut out = Vec::with_capacity(role.disks.len() + 3);
    out.push(DiskVars {
        kind: "root",
        dev: layout::disk_device(hv, 0),
        path: path("root.qcow2"),
        format: "qcow2",
        readonly: false,
        layer: None,
        at: None,
        access: None,
    });
    for d in &role.disks {
        let shared = d.access == Access::Ro;
        let (path, format) = match (shared, dir) {
            (true, Some(_)) => layer_image(layers, store, &cluster.name, &d.layer),
            (true, None) => (String::new(), "raw"),
            (false, _) => (path(&format!("{}.qcow2", d.layer)), "qcow2"),
        };
        out.push(DiskVars {
            kind: "data",
            dev: layout::disk_device(hv, out.len()),
            path,
            format,
            readonly: shared,
            layer: Some(&d.layer),
            at: Some(&d.at),
            access: Some(d.access.as_str()),
        });
    }
    if role.swap.is_some() {
        out.push(DiskVars {
            kind: "swap",
            dev: layout::disk_device(hv, out.len()),
            path: path("swap.img"),
            format: "raw",
            readonly: false,
            layer: None,
            at: None,
            access: None,
        });
    }
    out.push(DiskVars {
        kind: "config",
        dev: layout::disk_device(hv, out.len()),
        path: path("cidata.img"),
        format: "raw",
        readonly: true,
        layer: None,
        at: None,
        access: None,
    });
    out
}

#[derive(Serialize)]
pub(crate) struct MountVars<'a> {
    /// The NFS server: the exporting role's first node, by its address on the mount's
    /// network (so that mounting needs no name service), else by host name.
    pub server: String,
    pub path: &'a str,
    pub at: &'a str,
    pub access: &'static str,
    /// Mount options that retry in the background until the server answers, and
    /// never hold up boot: `vers=4,_netdev,bg,hard,nofail` (util-linux and busybox
    /// mount both accept them). NFSv4 only: no fallback to version 3 and its status
    /// daemon while the server is still booting.
    pub options: String,
    pub source: &'a str,
}

#[derive(Serialize)]
pub(crate) struct ExportVars<'a> {
    pub path: &'a str,
    /// The export's network, `10.20.0.0/24`.
    pub clients: String,
    pub access: &'static str,
    /// `rw,sync,no_subtree_check,root_squash` (or `no_root_squash`).
    pub options: String,
    pub source: &'a str,
}

pub(crate) fn mounts<'a>(facts: &ClusterFacts<'a>, role: &'a Role) -> Vec<MountVars<'a>> {
    role.mounts
        .iter()
        .map(|m| {
            let server = facts
                .first_of_role
                .get(m.role.as_str())
                .map(|n| match ClusterFacts::address_on(n, &m.network) {
                    Some(a) => a.to_string(),
                    None => n.hostname.clone(),
                })
                .unwrap_or_else(|| m.role.clone());
            MountVars {
                server,
                path: &m.path,
                at: &m.at,
                access: m.access.as_str(),
                options: format!("{},vers=4,_netdev,bg,hard,nofail", m.access.as_str()),
                source: &m.origin.location,
            }
        })
        .collect()
}

pub(crate) fn exports<'a>(cluster: &Cluster, role: &'a Role) -> Vec<ExportVars<'a>> {
    role.exports
        .iter()
        .map(|e| ExportVars {
            path: &e.path,
            clients: cluster
                .network(&e.network)
                .map(Network::cidr)
                .unwrap_or_default(),
            access: e.access.as_str(),
            options: format!(
                "{},sync,no_subtree_check,{}",
                e.access.as_str(),
                if e.no_root_squash {
                    "no_root_squash"
                } else {
                    "root_squash"
                }
            ),
            source: &e.origin.location,
        })
        .collect()
}

/// A NIC of a node.
#[derive(Serialize)]
pub(crate) struct NicVars<'a> {
    pub name: &'a str,
    pub network: &'a str,
    /// `dhcp`, `static`, `pool` or `external`.
    pub method: &'static str,
    pub mac: &'a str,
    /// Whether the guest asks DHCP for its address: `dhcp` NICs (served by vocc's
    /// dnsmasq with a fixed lease) and `external` ones (served by the site).
    pub dhcp: bool,
    /// The address, for static and pool NICs (and the fixed lease of dhcp ones).
    pub address: Option<String>,
    pub prefix: u8,
    pub netmask: String,
    /// The network, `10.20.0.0/24`.
    pub subnet: String,
    /// The default route, on the one static NIC that carries it (see
    /// [`default_route`]); `null` elsewhere.
    pub gateway: Option<String>,
    pub dns: Vec<String>,
    /// The host bridge from the plan, if the site names one.
    pub bridge: Option<&'a str>,
}

/// The NIC that carries a node's default route: the first whose network has a
/// gateway. A node has one default route, so the other NICs get none even if their
/// networks have gateways.
pub(crate) fn default_route(cluster: &Cluster, node: &Node) -> Option<usize> {
    node.nics.iter().position(|n| {
        cluster
            .network(&n.network)
            .is_some_and(|net| net.gateway.is_some())
    })
}

pub(crate) fn nics<'a>(
    cluster: &'a Cluster,
    node: &'a Node,
    plan: &'a PlanNode,
) -> Vec<NicVars<'a>> {
    let route = default_route(cluster, node);
    node.nics
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let net = cluster.network(&n.network);
            let dhcp = matches!(n.method, NicMethod::Dhcp | NicMethod::External);
            NicVars {
                name: &n.name,
                network: &n.network,
                method: match n.method {
                    NicMethod::Dhcp => "dhcp",
                    NicMethod::Static => "static",
                    NicMethod::Pool => "pool",
                    NicMethod::External => "external",
                },
                mac: &n.mac,
                dhcp,
                address: n.address.map(|a| a.to_string()),
                prefix: net.map_or(32, |n| n.prefix),
                netmask: net.map(|n| n.netmask().to_string()).unwrap_or_default(),
                subnet: net.map(Network::cidr).unwrap_or_default(),
                gateway: net
                    .and_then(|n| n.gateway)
                    .filter(|_| !dhcp && route == Some(i))
                    .map(|g| g.to_string()),
                dns: net
                    .map(|n| n.dns.iter().map(Ipv4Addr::to_string).collect())
                    .unwrap_or_default(),
                bridge: plan
                    .nics
                    .iter()
                    .find(|p| p.name == n.name)
                    .and_then(|p| p.bridge.as_deref()),
            }
        })
        .collect()
}

#[derive(Serialize)]
pub(crate) struct NodeVars<'a> {
    pub id: &'a str,
    pub hostname: &'a str,
    pub fqdn: String,
    pub index: u32,
    /// The site host the plan puts the node on.
    pub host: &'a str,
    /// The node's directory, relative to the output and to the store.
    pub dir: &'a str,
    /// The host CPUs a pinned node runs on (`0,1`), none when its CPUs float.
    pub cpus: Option<String>,
    pub source: &'a str,
}

/// One line of /etc/hosts.
#[derive(Serialize)]
pub(crate) struct HostLine<'a> {
    pub address: String,
    pub fqdn: String,
    pub hostname: &'a str,
}

pub(crate) fn host_lines<'a>(facts: &ClusterFacts<'a>) -> Vec<HostLine<'a>> {
    facts
        .cluster
        .nodes
        .iter()
        .flat_map(|n| {
            n.nics.iter().filter_map(move |nic| {
                Some(HostLine {
                    address: nic.address?.to_string(),
                    fqdn: facts.fqdn(&n.hostname),
                    hostname: &n.hostname,
                })
            })
        })
        .collect()
}

#[derive(Serialize)]
pub(crate) struct QueueVars<'a> {
    pub name: &'a str,
    pub vo: Option<&'a str>,
    pub default: bool,
    /// Slurm only (empty for the others): the hostlist expression of the queue's
    /// nodes (empty if none).
    pub nodes: String,
    /// SGE only (empty for the others): the host group `@<queue>hosts`, its members
    /// (fully qualified, separated by spaces, `NONE` if none) and the slots (`1`, or
    /// `1,[host=2],…` when roles with different CPU counts serve the queue).
    pub hostgroup: String,
    pub hosts: String,
    pub slots: String,
    pub source: &'a str,
}

/// The queues of the batch system; the fields only one batch system fills are empty
/// here (see [`crate::scheduler`]).
pub(crate) fn queue_vars<'a>(facts: &ClusterFacts<'a>) -> Vec<QueueVars<'a>> {
    facts
        .queues
        .iter()
        .map(|q| QueueVars {
            name: q.name,
            vo: q.vo,
            default: q.default,
            nodes: String::new(),
            hostgroup: String::new(),
            hosts: String::new(),
            slots: String::new(),
            source: q.source,
        })
        .collect()
}

#[derive(Serialize)]
pub(crate) struct Lease<'a> {
    pub mac: &'a str,
    pub address: String,
    pub hostname: &'a str,
}

#[derive(Serialize)]
pub(crate) struct DhcpNetVars<'a> {
    pub name: &'a str,
    pub interface: &'a str,
    /// The server's own address on the network.
    pub address: String,
    pub subnet: String,
    pub netmask: String,
    pub prefix: u8,
    pub gateway: Option<String>,
    pub dns: Vec<String>,
    pub leases: Vec<Lease<'a>>,
    pub source: &'a str,
}

pub(crate) fn dhcp_networks<'a>(
    cluster: &'a Cluster,
    server: &DhcpServer<'a>,
) -> Vec<DhcpNetVars<'a>> {
    server
        .networks
        .iter()
        .map(|d| {
            let net = d.network;
            let leases = cluster
                .nodes
                .iter()
                .flat_map(|n| {
                    n.nics
                        .iter()
                        .filter(|i| i.network == net.name && i.method == NicMethod::Dhcp)
                        .filter_map(move |i| {
                            Some(Lease {
                                mac: &i.mac,
                                address: i.address?.to_string(),
                                hostname: &n.hostname,
                            })
                        })
                })
                .collect();
            DhcpNetVars {
                name: &net.name,
                interface: d.interface,
                address: d.address.to_string(),
                subnet: net.subnet.to_string(),
                netmask: net.netmask().to_string(),
                prefix: net.prefix,
                gateway: net.gateway.map(|g| g.to_string()),
                dns: net.dns.iter().map(Ipv4Addr::to_string).collect(),
                leases,
                source: &net.origin.location,
            }
        })
        .collect()
}
