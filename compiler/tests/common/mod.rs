//! Hand-built models and plans for the rendering and output tests (and, through
//! `#[path]`, for the real-tool validation in the root package's tests).
//!
//! [`build_fixture`] is the one entry point: a name in, a checked-looking model and a
//! plan out. The models follow the appliances of the seeds (`osg`, `pbs` as in
//! two-vo, `sge` as in gridway-sge, `condor` as in voc-condor), so switching a fixture
//! to the real appliance file later changes this function only.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use vocc_compiler::model::*;
use vocc_runtime::plan::{PlanCluster, PlanDisk, PlanHost, PlanNetwork, PlanNic, PlanNode};
use vocc_runtime::{Plan, SCHEMA_VERSION};

const MIB: u64 = 1 << 20;

/// The model and plan of fixture `name`: `osg`, `pbs`, `sge`, `condor`, or
/// `synthetic-<N>` (an OSG-like Slurm cluster with N nodes in all).
pub fn build_fixture(name: &str) -> (Model, Plan) {
    let clusters = match name {
        "osg" => vec![osg(8)],
        "pbs" => vec![pbs()],
        "sge" => vec![sge()],
        "condor" => vec![condor()],
        other => match other
            .strip_prefix("synthetic-")
            .and_then(|n| n.parse::<u32>().ok())
        {
            Some(n) if n >= 2 => vec![osg(n - 1)],
            _ => panic!("no fixture `{name}`"),
        },
    };
    finish(clusters)
}

/// A model of several fixtures at once (one output tree for all).
pub fn build_fixtures(names: &[&str]) -> (Model, Plan) {
    let clusters = names
        .iter()
        .flat_map(|n| build_fixture(n).0.clusters)
        .collect();
    finish(clusters)
}

fn origin(file: &str, line: u32) -> Origin {
    Origin {
        span: Default::default(),
        location: format!("fixtures/{file}.voc:{line}:3"),
    }
}

fn network(c: &str, name: &str, cidr: &str, assign: Assign, line: u32) -> Network {
    let (ip, prefix) = cidr.split_once('/').unwrap();
    Network {
        name: name.into(),
        subnet: ip.parse().unwrap(),
        prefix: prefix.parse().unwrap(),
        assign,
        gateway: None,
        dns: Vec::new(),
        uplink: false,
        origin: origin(c, line),
    }
}

fn layer(c: &str, name: &str, source: LayerSource, line: u32) -> Layer {
    Layer {
        name: name.into(),
        source,
        packages: Vec::new(),
        size: None,
        origin: origin(c, line),
    }
}

fn debian() -> LayerSource {
    LayerSource::Debian {
        suite: "bookworm".into(),
    }
}

fn dir(name: &str) -> LayerSource {
    LayerSource::Dir {
        path: format!("layers/{name}"),
    }
}

fn role(c: &str, name: &str, count: u32, cpu: u32, memory_mib: u64, line: u32) -> Role {
    Role {
        name: name.into(),
        count,
        numbered: count > 1,
        min: None,
        idle: None,
        root: vec!["os".into()],
        packages: Vec::new(),
        disks: Vec::new(),
        cpu,
        pinned: false,
        memory: memory_mib * MIB,
        swap: None,
        nics: Vec::new(),
        exports: Vec::new(),
        mounts: Vec::new(),
        scheduler: None,
        persistence: Persistence::Persistent,
        cmdline: Vec::new(),
        origin: origin(c, line),
    }
}

fn nic(c: &str, name: &str, net: &str, method: Option<NicMethod>, line: u32) -> NicSpec {
    NicSpec {
        name: name.into(),
        network: net.into(),
        method,
        address: None,
        origin: origin(c, line),
    }
}

fn sched(c: &str, kind: SchedulerKind, what: &str, queues: &[&str], line: u32) -> SchedRole {
    SchedRole {
        kind,
        controller: what.contains("controller"),
        compute: what.contains("compute"),
        submit: what.contains("submit"),
        queues: queues.iter().map(|q| q.to_string()).collect(),
        queue_spans: Vec::new(),
        origin: origin(c, line),
    }
}

fn queue(c: &str, name: &str, vo: Option<&str>, default: bool, line: u32) -> Queue {
    Queue {
        name: name.into(),
        vo: vo.map(Into::into),
        default,
        origin: origin(c, line),
    }
}

fn export(c: &str, path: &str, net: &str, access: Access, line: u32) -> Export {
    Export {
        path: path.into(),
        network: net.into(),
        access,
        no_root_squash: false,
        origin: origin(c, line),
    }
}

fn mount(c: &str, from: &str, path: &str, net: &str, line: u32) -> Mount {
    Mount {
        role: from.into(),
        path: path.into(),
        at: path.into(),
        access: Access::Rw,
        network: net.into(),
        origin: origin(c, line),
    }
}

fn cluster(name: &str, vo: &str, hypervisor: Hypervisor) -> Cluster {
    Cluster {
        name: name.into(),
        vo: vo.into(),
        hypervisor: Some(hypervisor),
        domain: name.into(),
        networks: Vec::new(),
        layers: vec![layer(name, "os", debian(), 20)],
        roles: Vec::new(),
        nodes: Vec::new(),
        scheduler: None,
        origin: origin(name, 1),
    }
}

/// The OSG cluster of seeds 000/003 with `workers` workers.
fn osg(workers: u32) -> Cluster {
    let c = "osg";
    let mut cl = cluster(c, "osg", Hypervisor::Xen);
    let mut public = network(c, "public", "192.0.2.0/28", Assign::Static, 10);
    public.gateway = Some(Ipv4Addr::new(192, 0, 2, 1));
    cl.networks = vec![
        network(c, "private", "10.20.0.0/24", Assign::Pool, 6),
        public,
    ];
    if workers > 200 {
        cl.networks[0] = network(c, "private", "10.0.0.0/16", Assign::Pool, 6);
    }
    cl.layers.push(layer(c, "vdt", dir("vdt"), 24));
    cl.layers.push(layer(c, "apps", dir("apps"), 25));

    let mut head = role(c, "head", 1, 1, 384, 30);
    head.disks = vec![
        Disk {
            layer: "vdt".into(),
            at: "/opt/vdt".into(),
            access: Access::Ro,
            origin: origin(c, 32),
        },
        Disk {
            layer: "apps".into(),
            at: "/opt/apps".into(),
            access: Access::Rw,
            origin: origin(c, 34),
        },
    ];
    head.exports = vec![
        export(c, "/opt/vdt", "private", Access::Ro, 33),
        export(c, "/opt/apps", "private", Access::Rw, 35),
    ];
    head.swap = Some(200 * MIB);
    let mut eth1 = nic(c, "eth1", "public", None, 38);
    eth1.address = Some(Ipv4Addr::new(192, 0, 2, 10));
    head.nics = vec![nic(c, "eth0", "private", None, 37), eth1];
    head.scheduler = Some(sched(c, SchedulerKind::Slurm, "controller submit", &[], 39));

    let mut worker = role(c, "worker", workers, 1, 360, 42);
    worker.swap = Some(200 * MIB);
    worker.nics = vec![nic(c, "eth0", "private", None, 46)];
    worker.mounts = vec![
        mount(c, "head", "/opt/vdt", "private", 47),
        mount(c, "head", "/opt/apps", "private", 48),
    ];
    worker.mounts[0].access = Access::Ro;
    worker.scheduler = Some(sched(c, SchedulerKind::Slurm, "compute", &["osg"], 49));
    worker.cmdline = vec!["quiet".into()];

    cl.roles = vec![head, worker];
    cl.scheduler = Some(Scheduler {
        kind: SchedulerKind::Slurm,
        queues: vec![queue(c, "osg", None, true, 28)],
        controller: "head".into(),
    });
    cl
}

/// A PBS/Torque cluster like `vo-a` of the two-vo appliance.
fn pbs() -> Cluster {
    let c = "vo-a";
    let mut cl = cluster(c, "gadu", Hypervisor::Xen);
    cl.networks = vec![network(c, "private", "10.60.0.0/24", Assign::Pool, 5)];
    let mut head = role(c, "head", 1, 1, 180, 12);
    head.nics = vec![nic(c, "eth0", "private", None, 13)];
    head.exports = vec![export(c, "/home", "private", Access::Rw, 14)];
    head.scheduler = Some(sched(c, SchedulerKind::Pbs, "controller submit", &[], 15));
    let mut worker = role(c, "worker", 7, 2, 180, 17);
    worker.nics = vec![nic(c, "eth0", "private", None, 18)];
    worker.mounts = vec![mount(c, "head", "/home", "private", 19)];
    worker.scheduler = Some(sched(c, SchedulerKind::Pbs, "compute", &[], 20));
    cl.roles = vec![head, worker];
    cl.scheduler = Some(Scheduler {
        kind: SchedulerKind::Pbs,
        queues: vec![queue(c, "batch", None, false, 10)],
        controller: "head".into(),
    });
    cl
}

/// GridWay over SGE: one queue per VO, DHCP on the private network.
fn sge() -> Cluster {
    let c = "gridway";
    let mut cl = cluster(c, "gridway", Hypervisor::Kvm);
    cl.networks = vec![network(c, "private", "10.40.0.0/24", Assign::Dhcp, 9)];
    let mut front = role(c, "front", 1, 1, 512, 22);
    front.nics = vec![nic(c, "eth0", "private", Some(NicMethod::Pool), 25)];
    front.exports = vec![export(c, "/home", "private", Access::Rw, 24)];
    front.scheduler = Some(sched(c, SchedulerKind::Sge, "controller submit", &[], 26));
    let mut fusion = role(c, "fusion", 2, 1, 512, 29);
    fusion.nics = vec![nic(c, "eth0", "private", None, 33)];
    fusion.mounts = vec![mount(c, "front", "/home", "private", 34)];
    fusion.scheduler = Some(sched(c, SchedulerKind::Sge, "compute", &["fusion"], 35));
    let mut bio = role(c, "bio", 5, 2, 512, 38);
    bio.nics = vec![nic(c, "eth0", "private", None, 42)];
    bio.mounts = vec![mount(c, "front", "/home", "private", 43)];
    bio.scheduler = Some(sched(c, SchedulerKind::Sge, "compute", &["bio"], 44));
    cl.roles = vec![front, fusion, bio];
    cl.scheduler = Some(Scheduler {
        kind: SchedulerKind::Sge,
        queues: vec![
            queue(c, "fusion", Some("fusion"), false, 19),
            queue(c, "bio", Some("biomed"), true, 20),
        ],
        controller: "front".into(),
    });
    cl
}

/// A Virtual Organization Cluster on KVM: HTCondor, DHCP, ephemeral compute nodes.
fn condor() -> Cluster {
    let c = "voc";
    let mut cl = cluster(c, "engage", Hypervisor::Kvm);
    let mut lan = network(c, "lan", "10.50.0.0/22", Assign::Dhcp, 8);
    lan.gateway = Some(Ipv4Addr::new(10, 50, 0, 1));
    lan.dns = vec![Ipv4Addr::new(10, 50, 0, 1)];
    lan.uplink = true;
    cl.networks = vec![lan];
    let mut head = role(c, "head", 1, 1, 1024, 20);
    head.nics = vec![nic(c, "eth0", "lan", Some(NicMethod::Pool), 24)];
    head.exports = vec![export(c, "/home", "lan", Access::Rw, 22)];
    head.scheduler = Some(sched(
        c,
        SchedulerKind::Condor,
        "controller submit",
        &[],
        25,
    ));
    let mut compute = role(c, "compute", 28, 1, 1024, 28);
    compute.persistence = Persistence::Ephemeral;
    compute.nics = vec![nic(c, "eth0", "lan", None, 33)];
    compute.mounts = vec![mount(c, "head", "/home", "lan", 34)];
    compute.scheduler = Some(sched(c, SchedulerKind::Condor, "compute", &[], 35));
    cl.roles = vec![head, compute];
    cl.scheduler = Some(Scheduler {
        kind: SchedulerKind::Condor,
        queues: Vec::new(),
        controller: "head".into(),
    });
    cl
}

/// Expands roles into nodes (host names, addresses, MACs) the way allocation does,
/// and places every node on one of four hosts.
fn finish(mut clusters: Vec<Cluster>) -> (Model, Plan) {
    for (ci, cl) in clusters.iter_mut().enumerate() {
        let mut next: Vec<u32> = cl
            .networks
            .iter()
            .map(|n| u32::from(n.subnet) + 1)
            .collect();
        let mut nodes = Vec::new();
        for (ri, r) in cl.roles.iter().enumerate() {
            for index in 1..=r.count {
                let hostname = if r.count == 1 {
                    r.name.clone()
                } else {
                    format!("{}{index}", r.name)
                };
                let nics = r
                    .nics
                    .iter()
                    .map(|spec| {
                        let ni = cl
                            .networks
                            .iter()
                            .position(|n| n.name == spec.network)
                            .unwrap();
                        let net = &cl.networks[ni];
                        let method = spec.method.unwrap_or(match net.assign {
                            Assign::Dhcp => NicMethod::Dhcp,
                            Assign::Static => NicMethod::Static,
                            Assign::Pool => NicMethod::Pool,
                            Assign::External => NicMethod::External,
                        });
                        let address = match (method, spec.address) {
                            (NicMethod::External, _) => None,
                            (_, Some(a)) => Some(Ipv4Addr::from(u32::from(a) + index - 1)),
                            _ => loop {
                                let a = Ipv4Addr::from(next[ni]);
                                next[ni] += 1;
                                if Some(a) != net.gateway && !net.dns.contains(&a) {
                                    break Some(a);
                                }
                            },
                        };
                        Nic {
                            name: spec.name.clone(),
                            network: spec.network.clone(),
                            method,
                            address,
                            mac: format!(
                                "02:{ci:02x}:{ri:02x}:{:02x}:{:02x}:{:02x}",
                                (index >> 8) & 0xff,
                                index & 0xff,
                                r.nics.iter().position(|n| n.name == spec.name).unwrap()
                            ),
                        }
                    })
                    .collect();
                nodes.push(Node {
                    id: format!("{}-{hostname}", cl.name),
                    hostname,
                    role: r.name.clone(),
                    index,
                    nics,
                    origin: r.origin.clone(),
                });
            }
        }
        cl.nodes = nodes;
    }
    let site = Site {
        name: "fixture".into(),
        hosts: Vec::new(),
        bridges: vec![
            ("private".into(), "xenbr1".into()),
            ("public".into(), "xenbr0".into()),
        ],
        store: "/var/lib/vocc".into(),
        access: Default::default(),
        images: None,
        origin: origin("site", 1),
    };
    let model = Model { clusters, site };
    let plan = plan(&model);
    (model, plan)
}

fn plan(model: &Model) -> Plan {
    let hosts: Vec<PlanHost> = (1..=4)
        .map(|i| PlanHost {
            name: format!("h{i:02}"),
            hypervisors: vec!["xen".parse().unwrap(), "kvm".parse().unwrap()],
            cpu: 64,
            overcommit: 1,
            memory: 1 << 40,
            reserve: 0,
            disk: 1 << 44,
            address: None,
            link: None,
        })
        .collect();
    let site = &model.site;
    let mut nodes = Vec::new();
    for c in &model.clusters {
        for (i, n) in c.nodes.iter().enumerate() {
            let r = c.role(&n.role).unwrap();
            nodes.push(PlanNode {
                id: n.id.clone(),
                cluster: c.name.clone(),
                hostname: n.hostname.clone(),
                role: r.name.clone(),
                index: n.index,
                standby: r.standby(n.index),
                host: hosts[i % hosts.len()].name.clone(),
                hypervisor: c.hypervisor.map(|h| h.as_str().parse().unwrap()),
                cpu: r.cpu,
                cpus: None,
                memory: r.memory,
                disk: 256 * MIB + r.swap.unwrap_or(0),
                swap: r.swap,
                persistence: match r.persistence {
                    Persistence::Persistent => "persistent".parse().unwrap(),
                    Persistence::Ephemeral => "ephemeral".parse().unwrap(),
                },
                root: r.root.iter().map(|l| format!("{}/{l}", c.name)).collect(),
                root_image: None,
                disks: r
                    .disks
                    .iter()
                    .map(|d| PlanDisk {
                        layer: format!("{}/{}", c.name, d.layer),
                        at: d.at.clone(),
                        access: d.access.as_str().parse().unwrap(),
                    })
                    .collect(),
                nics: n
                    .nics
                    .iter()
                    .map(|x| PlanNic {
                        name: x.name.clone(),
                        network: x.network.clone(),
                        method: format!("{:?}", x.method).to_lowercase().parse().unwrap(),
                        address: x.address.map(|a| a.to_string()),
                        mac: x.mac.clone(),
                        bridge: site.bridge(&x.network).map(Into::into),
                    })
                    .collect(),
                after: Vec::new(),
                dir: format!("nodes/{}", n.id),
                source: r.origin.location.clone(),
            });
        }
    }
    Plan {
        schema_version: SCHEMA_VERSION,
        site: site.name.clone(),
        store: site.store.clone(),
        hosts,
        images: None,
        clusters: model
            .clusters
            .iter()
            .map(|c| PlanCluster {
                name: c.name.clone(),
                vo: c.vo.clone(),
                hypervisor: c.hypervisor.map(|h| h.as_str().parse().unwrap()),
                domain: c.domain.clone(),
                networks: c
                    .networks
                    .iter()
                    .map(|n| PlanNetwork {
                        name: n.name.clone(),
                        subnet: n.cidr(),
                        assign: format!("{:?}", n.assign).to_lowercase().parse().unwrap(),
                        gateway: n.gateway.map(|g| g.to_string()),
                        bridge: site.bridge(&n.name).map(Into::into),
                        uplink: n.uplink,
                    })
                    .collect(),
                batch: None,
            })
            .collect(),
        layers: Vec::new(),
        nodes,
        staging: Vec::new(),
        steps: Vec::new(),
    }
}

/// A fixed munge key for tests that do not exercise the secrets directory.
pub fn test_secrets(model: &Model) -> vocc_compiler::secrets::Secrets {
    let mut s = vocc_compiler::secrets::Secrets::none();
    for c in &model.clusters {
        s.set_munge_key(&c.name, (0..1024u32).map(|i| (i * 7 + 3) as u8).collect());
    }
    s
}

/// The fixture rendered with the embedded templates.
pub fn render_fixture(name: &str) -> (Model, Plan, vocc_compiler::render::Rendered) {
    let (model, plan) = build_fixture(name);
    let templates = vocc_compiler::render::Templates::embedded().unwrap();
    let rendered =
        vocc_compiler::render::render(&model, &plan, &templates, &test_secrets(&model)).unwrap();
    (model, plan, rendered)
}

/// The text of the file `path` (relative to the node's directory) of node `node`.
pub fn text(rendered: &vocc_compiler::render::Rendered, node: &str, path: &str) -> String {
    let n = rendered
        .node(node)
        .unwrap_or_else(|| panic!("no node `{node}`"));
    let f = n.files().find(|f| f.path == path).unwrap_or_else(|| {
        let have: Vec<&str> = n.files().map(|f| f.path.as_str()).collect();
        panic!("node `{node}` has no `{path}`; it has {have:?}")
    });
    String::from_utf8(rendered.content(f).unwrap().to_vec()).unwrap()
}

/// Every regular file of the output tree `dir` as its users see it (through the
/// links at its top, leaving out its hidden machinery): relative path → (content,
/// permission bits).
pub fn read_tree(dir: &std::path::Path) -> std::collections::BTreeMap<String, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_entry(|e| e.depth() != 1 || !e.file_name().to_string_lossy().starts_with('.'))
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let mode = e.metadata().unwrap().permissions().mode() & 0o7777;
            (rel, (std::fs::read(e.path()).unwrap(), mode))
        })
        .collect()
}
