//! A compact builder of models for tests of planning and explaining, so a test states
//! only the hosts, layers and roles that matter to it. Elements are built with empty
//! origins and [`model`] numbers them in order, so every element gets its own span
//! (`test.voc` line N) and building the same model twice gives the same spans.

use super::{GIB, MIB};
use crate::model::*;
use std::net::Ipv4Addr;
use vocc_dsl::{FileId, Span};

/// A host for xen guests with overcommit 1 and no reserve.
pub fn host(name: &str, cpu: u32, memory: u64, disk: u64) -> Host {
    Host {
        name: name.to_owned(),
        cpu,
        overcommit: 1,
        memory,
        disk,
        reserve: 0,
        hypervisors: vec![Hypervisor::Xen],
        address: None,
        origin: Origin::default(),
    }
}

/// Hosts `<prefix>01` to `<prefix><n>`, alike.
pub fn hosts(prefix: &str, n: u32, cpu: u32, memory: u64, disk: u64) -> Vec<Host> {
    (1..=n)
        .map(|i| host(&format!("{prefix}{i:02}"), cpu, memory, disk))
        .collect()
}

/// A site with bridges for the `private` and `public` networks.
pub fn site(name: &str, hosts: Vec<Host>) -> Site {
    Site {
        name: name.to_owned(),
        hosts,
        bridges: vec![
            ("private".to_owned(), "xenbr1".to_owned()),
            ("public".to_owned(), "xenbr0".to_owned()),
        ],
        store: "/var/lib/vocc".to_owned(),
        access: Default::default(),
        images: None,
        origin: Origin::default(),
    }
}

pub fn layer(name: &str, source: LayerSource, size: Option<u64>) -> Layer {
    Layer {
        name: name.to_owned(),
        source,
        packages: Vec::new(),
        size,
        origin: Origin::default(),
    }
}

pub fn debian(name: &str, size: u64) -> Layer {
    layer(
        name,
        LayerSource::Debian {
            suite: "bookworm".to_owned(),
        },
        Some(size),
    )
}

pub fn dir(name: &str, size: u64) -> Layer {
    layer(
        name,
        LayerSource::Dir {
            path: format!("layers/{name}"),
        },
        Some(size),
    )
}

/// A role with one NIC `eth0` on the `private` network, persistent, no disks.
pub fn role(name: &str, count: u32, cpu: u32, memory: u64) -> Role {
    Role {
        name: name.to_owned(),
        count,
        numbered: count > 1,
        min: None,
        idle: None,
        root: Vec::new(),
        packages: Vec::new(),
        disks: Vec::new(),
        cpu,
        pinned: false,
        memory,
        swap: None,
        nics: vec![NicSpec {
            name: "eth0".to_owned(),
            network: "private".to_owned(),
            method: Some(NicMethod::Pool),
            address: None,
            origin: Origin::default(),
        }],
        exports: Vec::new(),
        mounts: Vec::new(),
        scheduler: None,
        persistence: Persistence::Persistent,
        cmdline: Vec::new(),
        origin: Origin::default(),
    }
}

pub fn with_root(mut role: Role, layers: &[&str]) -> Role {
    role.root = layers.iter().map(|l| (*l).to_owned()).collect();
    role
}

pub fn with_disk(mut role: Role, layer: &str, at: &str, access: Access) -> Role {
    role.disks.push(Disk {
        layer: layer.to_owned(),
        at: at.to_owned(),
        access,
        origin: Origin::default(),
    });
    role
}

pub fn with_mount(mut role: Role, from: &str, path: &str) -> Role {
    role.mounts.push(Mount {
        role: from.to_owned(),
        path: path.to_owned(),
        at: path.to_owned(),
        access: Access::Ro,
        network: "private".to_owned(),
        origin: Origin::default(),
    });
    role
}

/// A xen cluster with a `private` pool network; its nodes are made from its roles
/// (hostname the role name for a count of 1, else role name and index), with pool
/// addresses and MACs in order.
pub fn cluster(name: &str, layers: Vec<Layer>, roles: Vec<Role>) -> Cluster {
    let mut nodes = Vec::new();
    let mut next: u32 = 10;
    for role in &roles {
        for index in 1..=role.count {
            let hostname = if role.count == 1 {
                role.name.clone()
            } else {
                format!("{}{index}", role.name)
            };
            let nics = role
                .nics
                .iter()
                .map(|spec| {
                    next += 1;
                    Nic {
                        name: spec.name.clone(),
                        network: spec.network.clone(),
                        method: spec.method.unwrap_or(NicMethod::Pool),
                        address: Some(Ipv4Addr::new(10, 20, 0, next as u8)),
                        mac: format!("52:54:00:00:{:02x}:{:02x}", next / 256, next % 256),
                    }
                })
                .collect();
            nodes.push(Node {
                id: format!("{name}-{hostname}"),
                hostname,
                role: role.name.clone(),
                index,
                nics,
                origin: Origin::default(),
            });
        }
    }
    Cluster {
        name: name.to_owned(),
        vo: name.to_owned(),
        hypervisor: Some(Hypervisor::Xen),
        domain: name.to_owned(),
        networks: vec![Network {
            name: "private".to_owned(),
            subnet: Ipv4Addr::new(10, 20, 0, 0),
            prefix: 24,
            assign: Assign::Pool,
            gateway: None,
            dns: Vec::new(),
            uplink: false,
            origin: Origin::default(),
        }],
        layers,
        roles,
        nodes,
        scheduler: None,
        origin: Origin::default(),
    }
}

/// The model of `clusters` on `site`, with an origin of its own for every element.
pub fn model(clusters: Vec<Cluster>, site: Site) -> Model {
    let mut model = Model { clusters, site };
    let mut line = 0u32;
    let mut next = || {
        line += 1;
        Origin {
            span: Span::new(FileId(0), line as usize * 100, line as usize * 100 + 10),
            location: format!("test.voc:{line}:1"),
        }
    };
    model.site.origin = next();
    for host in &mut model.site.hosts {
        host.origin = next();
    }
    for cluster in &mut model.clusters {
        cluster.origin = next();
        for network in &mut cluster.networks {
            network.origin = next();
        }
        for layer in &mut cluster.layers {
            layer.origin = next();
        }
        for role in &mut cluster.roles {
            role.origin = next();
            for disk in &mut role.disks {
                disk.origin = next();
            }
            for mount in &mut role.mounts {
                mount.origin = next();
            }
            for nic in &mut role.nics {
                nic.origin = next();
            }
        }
        for node in &mut cluster.nodes {
            node.origin = next();
        }
    }
    model
}

/// The OSG cluster of the design notes: a head with two data disks, and `workers`
/// mounting them.
pub fn osg(workers: u32, head_memory: u64) -> Cluster {
    vo("osg", workers, head_memory)
}

/// A cluster like [`osg`] named `name`.
pub fn vo(name: &str, workers: u32, head_memory: u64) -> Cluster {
    let head = with_root(role("head", 1, 1, head_memory), &["os"]);
    let head = with_disk(head, "vdt", "/opt/vdt", Access::Ro);
    let mut head = with_disk(head, "apps", "/opt/apps", Access::Rw);
    head.swap = Some(200 * MIB);
    let worker = with_root(role("worker", workers, 1, 360 * MIB), &["os"]);
    let worker = with_mount(worker, "head", "/opt/vdt");
    let mut worker = with_mount(worker, "head", "/opt/apps");
    worker.swap = Some(200 * MIB);
    cluster(
        name,
        vec![
            debian("os", 2 * GIB),
            dir("vdt", 750 * MIB),
            dir("apps", GIB),
        ],
        vec![head, worker],
    )
}

/// The `chiba` site of the design notes: `n` hosts of 2 cpus, 512 MiB with a 96 MiB
/// reserve, and 9 GiB of disk.
pub fn chiba(n: u32) -> Site {
    let mut hosts = hosts("c", n, 2, 512 * MIB, 9 * GIB);
    for h in &mut hosts {
        h.reserve = 96 * MIB;
    }
    site("chiba", hosts)
}
