//! The resolved cluster model (IR): what the checker builds from appliance files and
//! what allocation, planning and rendering read. Every element keeps the span of the
//! statement that produced it, so later failures point back at the appliance line.
//!
//! Invariant: a `Model` is built only by `resolve`/`check`; once built it is valid
//! (names resolve, addresses are in their subnets, counts are at least 1).

use serde::Serialize;
use std::net::Ipv4Addr;
use vocc_dsl::{SourceMap, Span};

/// Where an element of the model came from: its span, and the `file:line:col` that
/// span resolves to (which is what the JSON dump shows).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    pub span: Span,
    pub location: String,
}

impl Origin {
    pub fn new(map: &SourceMap, span: Span) -> Origin {
        Origin {
            span,
            location: map.locate(span).to_string(),
        }
    }
}

impl Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.location)
    }
}

/// Everything compiled from one appliance file (one or more clusters) and a site.
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub clusters: Vec<Cluster>,
    pub site: Site,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hypervisor {
    Xen,
    Kvm,
}

impl Hypervisor {
    pub fn as_str(self) -> &'static str {
        match self {
            Hypervisor::Xen => "xen",
            Hypervisor::Kvm => "kvm",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    pub name: String,
    /// The virtual organisation the cluster serves.
    pub vo: String,
    /// The hypervisor the appliance asks for; without one the site decides, node by
    /// node (each runs under its host's: [`Host::hypervisor_for`]).
    pub hypervisor: Option<Hypervisor>,
    /// DNS domain of the nodes (default: the cluster name).
    pub domain: String,
    pub networks: Vec<Network>,
    pub layers: Vec<Layer>,
    pub roles: Vec<Role>,
    /// Every node, in role order then index order.
    pub nodes: Vec<Node>,
    /// The batch system of the cluster, if any role takes part in one.
    pub scheduler: Option<Scheduler>,
    pub origin: Origin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Assign {
    /// Nodes ask a DHCP server (vocc renders dnsmasq for it, with fixed leases).
    Dhcp,
    /// Addresses are pre-arranged and written in the appliance.
    Static,
    /// vocc allocates addresses from the subnet.
    Pool,
    /// An external service assigns addresses; vocc does not know them.
    External,
}

/// The ranges a cluster network that vocc assigns addresses in, or that a node
/// exports to, must lie in: RFC 1918's and the shared address space of RFC 6598.
pub const PRIVATE_RANGES: [(Ipv4Addr, u8); 4] = [
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
];

/// The private range that holds all of `subnet/prefix`, if any.
pub fn private_range(subnet: Ipv4Addr, prefix: u8) -> Option<(Ipv4Addr, u8)> {
    PRIVATE_RANGES.into_iter().find(|(net, p)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(*p)).unwrap_or(0);
        prefix >= *p && u32::from(subnet) & mask == u32::from(*net)
    })
}

/// "`10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16` or `100.64.0.0/10`", for hints.
pub fn private_ranges_text() -> String {
    let r: Vec<String> = PRIVATE_RANGES
        .iter()
        .map(|(n, p)| format!("`{n}/{p}`"))
        .collect();
    format!("{}, {}, {} or {}", r[0], r[1], r[2], r[3])
}

#[derive(Debug, Clone, Serialize)]
pub struct Network {
    pub name: String,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
    pub assign: Assign,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// Give this network a NAT uplink to the outside (user-mode NAT under qemu).
    pub uplink: bool,
    pub origin: Origin,
}

impl Network {
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(
            u32::MAX
                .checked_shl(32 - u32::from(self.prefix))
                .unwrap_or(0),
        )
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::from(self.netmask());
        u32::from(ip) & mask == u32::from(self.subnet) & mask
    }

    /// Whether the whole subnet lies in a private range ([`PRIVATE_RANGES`]).
    pub fn is_private(&self) -> bool {
        private_range(self.subnet, self.prefix).is_some()
    }

    pub fn cidr(&self) -> String {
        format!("{}/{}", self.subnet, self.prefix)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LayerSource {
    /// The embedded minimal root built from the host's busybox and a Debian kernel.
    Busybox,
    /// A Debian release built with mmdebstrap.
    Debian { suite: String },
    /// An existing raw or qcow2 image, pinned by its sha256.
    Image { path: String, sha256: String },
    /// A directory tree (relative paths are relative to the appliance file).
    Dir { path: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct Layer {
    pub name: String,
    pub source: LayerSource,
    pub packages: Vec<String>,
    /// Filesystem size in bytes, if given.
    pub size: Option<u64>,
    pub origin: Origin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Ro,
    Rw,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Ro => "ro",
            Access::Rw => "rw",
        }
    }
}

/// A read-only or writable data disk made from a layer, mounted in the guest.
#[derive(Debug, Clone, Serialize)]
pub struct Disk {
    pub layer: String,
    pub at: String,
    /// Writable disks get a per-node overlay; read-only ones are shared as they are.
    pub access: Access,
    pub origin: Origin,
}

/// An NFS export of a guest path to one network.
#[derive(Debug, Clone, Serialize)]
pub struct Export {
    pub path: String,
    pub network: String,
    pub access: Access,
    /// `no_root_squash` when true; root is squashed unless asked otherwise.
    pub no_root_squash: bool,
    pub origin: Origin,
}

/// An NFS mount of another role's export.
#[derive(Debug, Clone, Serialize)]
pub struct Mount {
    /// The exporting role.
    pub role: String,
    pub path: String,
    pub at: String,
    pub access: Access,
    /// The network the mount goes over (the export's network).
    pub network: String,
    pub origin: Origin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerKind {
    Slurm,
    Pbs,
    Sge,
    Condor,
}

impl SchedulerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerKind::Slurm => "slurm",
            SchedulerKind::Pbs => "pbs",
            SchedulerKind::Sge => "sge",
            SchedulerKind::Condor => "condor",
        }
    }
}

/// A queue (PBS, SGE, HTCondor) or partition (Slurm) of the cluster's batch system.
#[derive(Debug, Clone, Serialize)]
pub struct Queue {
    pub name: String,
    /// The VO whose jobs go to this queue (SGE: one queue per VO).
    pub vo: Option<String>,
    pub default: bool,
    pub origin: Origin,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scheduler {
    pub kind: SchedulerKind,
    pub queues: Vec<Queue>,
    /// The role whose (single) node runs the controller.
    pub controller: String,
}

/// A role's part in the batch system.
#[derive(Debug, Clone, Serialize)]
pub struct SchedRole {
    pub kind: SchedulerKind,
    pub controller: bool,
    pub compute: bool,
    pub submit: bool,
    /// Queues/partitions a compute node serves (empty: the default queue).
    pub queues: Vec<String>,
    #[serde(skip)]
    pub queue_spans: Vec<Span>,
    pub origin: Origin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Persistence {
    /// A copy-on-write overlay that survives a stop.
    Persistent,
    /// Writes are thrown away when the node stops (seed 004).
    Ephemeral,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NicMethod {
    Dhcp,
    Static,
    Pool,
    External,
}

/// A NIC as a role declares it.
#[derive(Debug, Clone, Serialize)]
pub struct NicSpec {
    pub name: String,
    pub network: String,
    /// `None`: the network's way of assigning addresses.
    pub method: Option<NicMethod>,
    /// The address written in the appliance (static), for a role of count 1; for a
    /// larger count, the first of consecutive addresses.
    pub address: Option<Ipv4Addr>,
    pub origin: Origin,
}

#[derive(Debug, Clone, Serialize)]
pub struct Role {
    pub name: String,
    pub count: u32,
    /// Whether its nodes are numbered (`worker1`, `worker2`, …): a role that says
    /// `count`, whatever the count, so that a node keeps its name when the count
    /// changes; a role without is one node named as the role.
    #[serde(skip)]
    pub numbered: bool,
    /// `count MIN..MAX`: how many of the role's nodes run from the start (`count` is
    /// then MAX, and every node up to it exists in the model and the plan); the nodes
    /// after the first `min` are standby nodes, which a site starts and stops as the
    /// batch system needs them. `None` for a plain count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    /// For an elastic role (`min` is set): seconds a node may stay idle before its
    /// batch system powers it down (`idle`, 10 minutes by default). `None` otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<u64>,
    /// Layers stacked into the root filesystem, bottom first.
    pub root: Vec<String>,
    /// Extra packages added on top of the root layers.
    pub packages: Vec<String>,
    pub disks: Vec<Disk>,
    pub cpu: u32,
    /// `cpu N pinned`: each node runs on `cpu` host CPUs of its own, which no other
    /// pinned node on the host shares (placement picks them).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
    /// Bytes.
    pub memory: u64,
    /// Bytes of swap made at boot, if any.
    pub swap: Option<u64>,
    pub nics: Vec<NicSpec>,
    pub exports: Vec<Export>,
    pub mounts: Vec<Mount>,
    pub scheduler: Option<SchedRole>,
    pub persistence: Persistence,
    /// Extra kernel command line arguments.
    pub cmdline: Vec<String>,
    pub origin: Origin,
}

/// A NIC of one node, with its allocated address and MAC.
#[derive(Debug, Clone, Serialize)]
pub struct Nic {
    pub name: String,
    pub network: String,
    pub method: NicMethod,
    /// Known for static, pool and dhcp (a fixed lease); `None` for external.
    pub address: Option<Ipv4Addr>,
    pub mac: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// Unique in the whole model: `<cluster>-<hostname>`.
    pub id: String,
    pub hostname: String,
    pub role: String,
    /// 1-based index within the role.
    pub index: u32,
    pub nics: Vec<Nic>,
    pub origin: Origin,
}

/// A physical host of the site (after range expansion).
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    pub name: String,
    pub cpu: u32,
    /// Virtual CPUs allowed per physical CPU.
    pub overcommit: u32,
    pub memory: u64,
    pub disk: u64,
    /// Memory kept for dom0 / the host itself.
    pub reserve: u64,
    /// The hypervisors the host can run guests for (use [`Host::runs`]).
    pub hypervisors: Vec<Hypervisor>,
    pub address: Option<String>,
    pub origin: Origin,
}

#[derive(Debug, Clone, Serialize)]
pub struct Site {
    pub name: String,
    pub hosts: Vec<Host>,
    /// Network name → host bridge.
    pub bridges: Vec<(String, String)>,
    pub store: String,
    /// How the control machine reaches every host's `vocc-host`.
    pub access: SiteAccess,
    /// The image server the hosts take layers from (`images NAME { … }`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<ImageServer>,
    pub origin: Origin,
}

/// A site's image server: a machine reached like the hosts (the site's `access`) that
/// keeps every layer in its store, at the site's store path, and heads each layer's
/// chain to the hosts, so that a layer leaves the control machine at most once.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageServer {
    pub name: String,
    pub address: Option<String>,
    pub origin: Origin,
}

/// How the control machine reaches the hosts of a site (`access` in a site).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(tag = "via", rename_all = "lowercase")]
pub enum SiteAccess {
    /// Every host is the machine vocc runs on.
    #[default]
    Local,
    /// OpenSSH to each host's `address`, with a key, host keys checked.
    Ssh {
        user: String,
        identity: String,
        known_hosts: String,
        program: String,
        origin: Origin,
    },
    /// The site's own Slurm: `srun -w HOST`.
    Slurm {
        program: String,
        conf: Option<String>,
        origin: Origin,
    },
}

impl Cluster {
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.name == name)
    }

    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    pub fn layer(&self, name: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.name == name)
    }

    pub fn nodes_of<'a>(&'a self, role: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes.iter().filter(move |n| n.role == role)
    }
}

/// How long an elastic role's node may stay idle when the role does not say (`idle`).
pub const DEFAULT_IDLE_SECS: u64 = 600;

impl Role {
    /// Whether node `index` (1-based) of the role is a standby node: one of an elastic
    /// role (`count MIN..MAX`) after the first MIN, which a plain `vocc up` leaves
    /// unstarted.
    pub fn standby(&self, index: u32) -> bool {
        self.min.is_some_and(|min| index > min)
    }
}

impl Host {
    /// Whether a guest written for `hypervisor` can run on this host.
    pub fn runs(&self, hypervisor: Hypervisor) -> bool {
        self.hypervisors.contains(&hypervisor)
    }

    /// The hypervisor a node of a cluster that asks for `wanted` runs under here: that
    /// one if this host runs it; for a cluster that asks for none, KVM where the host
    /// runs it, else the host's first.
    pub fn hypervisor_for(&self, wanted: Option<Hypervisor>) -> Option<Hypervisor> {
        match wanted {
            Some(h) => self.runs(h).then_some(h),
            None if self.runs(Hypervisor::Kvm) => Some(Hypervisor::Kvm),
            None => self.hypervisors.first().copied(),
        }
    }
}

impl Cluster {
    /// The hypervisor the cluster's shared files name disks and consoles for (each
    /// node's own files follow its host): the one it asks for, else KVM. A guest maps
    /// the names at boot when it finds the other's devices.
    pub fn files_hypervisor(&self) -> Hypervisor {
        self.hypervisor.unwrap_or(Hypervisor::Kvm)
    }
}

/// A hypervisor the way messages name it: `xen`, `kvm`, or any for none asked.
pub fn hypervisor_name(h: Option<Hypervisor>) -> &'static str {
    h.map_or("any hypervisor", Hypervisor::as_str)
}

impl Site {
    pub fn bridge(&self, network: &str) -> Option<&str> {
        self.bridges
            .iter()
            .find(|(n, _)| n == network)
            .map(|(_, b)| b.as_str())
    }
}
