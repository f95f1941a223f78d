//! Allocation: expand roles into nodes, give every NIC its address and a
//! deterministic MAC.
//!
//! Stability is the rule: adding a node to any role must not renumber the others. On
//! each network, the roles whose NICs take pool or DHCP addresses take turns: with `L`
//! such roles, node `k` of the `l`-th one gets free address number `(k - 1) * L + l`
//! of the subnet (skipping static and infrastructure addresses). A node's address
//! therefore depends only on its role, its index and what the appliance writes, never
//! on how many nodes another role has. MACs are a hash of the cluster, host name and
//! interface, so they never depend on other nodes at all.

use crate::model::*;
use crate::resolve::{edge_name, host_range, outside, Notes, Part};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use vocc_dsl::{Diagnostic, Span};

/// The host name of node `index` (1-based) of a role: numbered in a role that says
/// `count` (so that `worker1` stays `worker1` as the count goes from 1 to 2 and back),
/// the role's name in a role without.
pub fn hostname(role: &Role, index: u32) -> String {
    if role.numbered {
        format!("{}{index}", role.name)
    } else {
        role.name.clone()
    }
}

/// A locally administered unicast MAC derived from the node and NIC names; `salt`
/// moves it on the rare collision.
pub fn mac(cluster: &str, hostname: &str, nic: &str, salt: u32) -> String {
    let mut h = Sha256::new();
    h.update(cluster.as_bytes());
    h.update([0]);
    h.update(hostname.as_bytes());
    h.update([0]);
    h.update(nic.as_bytes());
    if salt > 0 {
        h.update(salt.to_be_bytes());
    }
    let d = h.finalize();
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        d[0], d[1], d[2], d[3], d[4]
    )
}

fn effective_method(spec: &NicSpec, net: &Network) -> NicMethod {
    spec.method.unwrap_or(match net.assign {
        Assign::Dhcp => NicMethod::Dhcp,
        Assign::Static => NicMethod::Static,
        Assign::Pool => NicMethod::Pool,
        Assign::External => NicMethod::External,
    })
}

/// Who holds an address already.
enum Holder {
    /// A node, with the span of the address that gave it (a static one) or its NIC.
    Node { id: String, span: Span },
    /// The gateway or a DNS server of the network.
    Infrastructure { what: String, span: Span },
}

/// Builds `cluster.nodes`. `macs` holds the MACs of the whole model (several
/// clusters may share a site's bridges), so collisions are avoided across clusters.
/// Each mistake is reported once per NIC statement, not once per node.
pub fn nodes(
    diags: &mut Vec<Diagnostic>,
    c: &mut Cluster,
    macs: &mut HashSet<String>,
    notes: &Notes,
) {
    // Nodes in model order: role by role.
    let mut nodes: Vec<Node> = Vec::new();
    for r in &c.roles {
        for index in 1..=r.count {
            let hostname = hostname(r, index);
            nodes.push(Node {
                id: format!("{}-{hostname}", c.name),
                hostname,
                role: r.name.clone(),
                index,
                nics: Vec::new(),
                origin: r.origin.clone(),
            });
        }
    }
    let role_pos: HashMap<&str, usize> = c
        .roles
        .iter()
        .enumerate()
        .map(|(i, r)| (r.name.as_str(), i))
        .collect();

    // Static addresses first: they are reserved before the pool hands anything out.
    let mut taken: HashMap<Ipv4Addr, Holder> = HashMap::new();
    for net in &c.networks {
        reserve_infrastructure(net, notes, &mut taken);
    }
    let mut per_node: Vec<Vec<Nic>> = vec![Vec::new(); nodes.len()];
    // NIC statements already reported, and pairs of them already found to overlap.
    let mut reported: HashSet<Span> = HashSet::new();
    let mut overlaps: HashSet<(Span, Span)> = HashSet::new();
    for (ni, node) in nodes.iter().enumerate() {
        let Some(role) = c.role(&node.role) else {
            continue;
        };
        for spec in &role.nics {
            let Some(net) = c.network(&spec.network) else {
                continue;
            };
            let method = effective_method(spec, net);
            let mut address = None;
            if method == NicMethod::Static || spec.address.is_some() {
                match spec.address {
                    None => {
                        if reported.insert(spec.origin.span) {
                            diags.push(no_address(spec, net, role));
                        }
                    }
                    Some(first) => {
                        let span = notes.part(spec.origin.span, Part::NicAddress);
                        match static_address(net, role, first, node.index, span) {
                            Ok(ip) => match taken.get(&ip) {
                                Some(holder) => {
                                    let other = match holder {
                                        Holder::Node { span, .. }
                                        | Holder::Infrastructure { span, .. } => *span,
                                    };
                                    if overlaps.insert((span, other)) {
                                        diags
                                            .push(taken_twice(ip, node, role, first, span, holder));
                                    }
                                }
                                None => {
                                    taken.insert(
                                        ip,
                                        Holder::Node {
                                            id: node.id.clone(),
                                            span,
                                        },
                                    );
                                    address = Some(ip);
                                }
                            },
                            Err(d) => {
                                if reported.insert(spec.origin.span) {
                                    diags.push(d);
                                }
                            }
                        }
                    }
                }
            }
            per_node[ni].push(Nic {
                name: spec.name.clone(),
                network: net.name.clone(),
                method: if spec.address.is_some() {
                    NicMethod::Static
                } else {
                    method
                },
                address,
                mac: String::new(),
            });
        }
    }

    // Pool and DHCP addresses. On each network, the roles' NICs that take one are
    // lanes in declaration order; node `k` of lane `l` of `L` gets the free address
    // number `(k - 1) * L + l`, counting from the start of the subnet and skipping
    // the static and infrastructure addresses. So an address depends only on the
    // node's role and index and on what the appliance writes, never on how many
    // nodes other roles have: growing any role renumbers nobody.
    let mut lanes: HashMap<&str, Vec<(&str, &str)>> = HashMap::new();
    for r in &c.roles {
        for spec in &r.nics {
            let Some(net) = c.network(&spec.network) else {
                continue;
            };
            if spec.address.is_none()
                && matches!(
                    effective_method(spec, net),
                    NicMethod::Pool | NicMethod::Dhcp
                )
            {
                lanes
                    .entry(net.name.as_str())
                    .or_default()
                    .push((r.name.as_str(), spec.name.as_str()));
            }
        }
    }
    // Per network, the offsets in the subnet the pool skips, ascending.
    let mut skipped: HashMap<&str, Vec<u64>> = HashMap::new();
    for net in &c.networks {
        let base = u64::from(u32::from(net.subnet));
        let mut offs: Vec<u64> = taken
            .keys()
            .filter(|ip| net.contains(**ip))
            .map(|ip| u64::from(u32::from(*ip)) - base)
            .collect();
        offs.sort_unstable();
        skipped.insert(&net.name, offs);
    }
    // Nodes in (index, role) order, so that a pool too small is reported at the first
    // node that does not fit.
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by_key(|&i| {
        (
            nodes[i].index,
            role_pos.get(nodes[i].role.as_str()).copied(),
        )
    });
    let mut exhausted: HashSet<String> = HashSet::new();
    for &ni in &order {
        for nic in per_node[ni].iter_mut() {
            if !matches!(nic.method, NicMethod::Pool | NicMethod::Dhcp) || nic.address.is_some() {
                continue;
            }
            let Some(net) = c.network(&nic.network) else {
                continue;
            };
            let net_lanes = lanes.get(net.name.as_str()).map_or(&[][..], Vec::as_slice);
            let lane = net_lanes
                .iter()
                .position(|(r, n)| *r == nodes[ni].role && *n == nic.name)
                .unwrap_or(0) as u64;
            let count = net_lanes.len().max(1) as u64;
            let slot = (u64::from(nodes[ni].index) - 1) * count + lane;
            let base = u64::from(u32::from(net.subnet));
            let size = 1u64 << (32 - u32::from(net.prefix.min(32)));
            // The `slot`-th address of 1 ..= size - 2 that is not skipped.
            let mut off = 1 + slot;
            for t in skipped.get(net.name.as_str()).into_iter().flatten() {
                if (1..=off).contains(t) {
                    off += 1;
                }
            }
            let ip = (off + 1 < size)
                .then(|| u32::try_from(base + off).map(Ipv4Addr::from).ok())
                .flatten();
            match ip {
                Some(ip) => {
                    let span = nodes[ni].origin.span;
                    taken.insert(
                        ip,
                        Holder::Node {
                            id: nodes[ni].id.clone(),
                            span,
                        },
                    );
                    nic.address = Some(ip);
                }
                None if exhausted.insert(net.name.clone()) => {
                    let spec_span = c
                        .role(&nodes[ni].role)
                        .and_then(|r| r.nics.iter().find(|s| s.name == nic.name))
                        .map_or(nodes[ni].origin.span, |s| s.origin.span);
                    let skips = skipped.get(net.name.as_str()).map_or(0, Vec::len) as u64;
                    let need = pool_slots(c, net_lanes);
                    diags.push(pool_exhausted(
                        net,
                        &nodes[ni].id,
                        spec_span,
                        need,
                        count,
                        skips,
                    ));
                }
                None => {}
            }
        }
    }

    // MACs, unique across the model.
    for (ni, node) in nodes.iter_mut().enumerate() {
        let mut nics = std::mem::take(&mut per_node[ni]);
        for nic in &mut nics {
            let mut salt = 0;
            loop {
                let m = mac(&c.name, &node.hostname, &nic.name, salt);
                if macs.insert(m.clone()) {
                    nic.mac = m;
                    break;
                }
                salt += 1;
            }
        }
        node.nics = nics;
    }
    c.nodes = nodes;
}

/// A static NIC that gives no address.
fn no_address(spec: &NicSpec, net: &Network, role: &Role) -> Diagnostic {
    let message = if spec.method == Some(NicMethod::Static) {
        format!("nic `{}` is `static` but gives no address", spec.name)
    } else {
        format!(
            "nic `{}` on static network `{}` gives no address",
            spec.name, net.name
        )
    };
    let mut d = Diagnostic::error(spec.origin.span, message)
        .with_label("no address")
        .with_hint(format!(
            "write the address: `nic {} {} {}`",
            spec.name,
            net.name,
            example_host(net)
        ));
    if role.count > 1 {
        d = d.with_hint(format!(
            "role `{}` has {} nodes: they get consecutive addresses from the one written",
            role.name, role.count
        ));
    }
    d
}

/// The address of node `index` of a role whose static NIC starts at `first`, or why
/// the role's addresses do not fit its network (the same for every node of the role).
fn static_address(
    net: &Network,
    role: &Role,
    first: Ipv4Addr,
    index: u32,
    span: Span,
) -> Result<Ipv4Addr, Diagnostic> {
    if !net.contains(first) {
        return Err(outside(span, first, net, "nic"));
    }
    if let Some(which) = edge_name(net, first) {
        return Err(Diagnostic::error(
            span,
            format!(
                "nic address `{first}` is the {which} address of network `{}`",
                net.name
            ),
        )
        .with_label(format!("the {which} address of {}", net.cidr()))
        .with_hint(format!("use a host address: {}", host_range(net))));
    }
    let mask = u32::from(net.netmask());
    let last_host = u64::from(u32::from(net.subnet) | !mask) - 1;
    let start = u64::from(u32::from(first));
    let end = start + u64::from(role.count) - 1;
    if end > last_host {
        let room = last_host - start + 1;
        let hosts = last_host - u64::from(u32::from(net.subnet));
        let hint = if u64::from(role.count) <= hosts {
            let lowest =
                Ipv4Addr::from(u32::try_from(last_host + 1 - u64::from(role.count)).unwrap_or(0));
            format!("start at `{lowest}` or lower, or use a larger subnet")
        } else {
            format!(
                "network `{}` has only {hosts} host addresses: use a larger subnet",
                net.name
            )
        };
        return Err(Diagnostic::error(
            span,
            format!(
                "role `{}` needs {} addresses from `{first}` but network `{}` ({}) has {room} from there",
                role.name,
                role.count,
                net.name,
                net.cidr()
            ),
        )
        .with_label(format!("{} consecutive addresses start here", role.count))
        .with_hint(hint));
    }
    let ip = start + u64::from(index) - 1;
    Ok(Ipv4Addr::from(u32::try_from(ip).unwrap_or(0)))
}

fn taken_twice(
    ip: Ipv4Addr,
    node: &Node,
    role: &Role,
    first: Ipv4Addr,
    span: Span,
    holder: &Holder,
) -> Diagnostic {
    let consecutive = (role.count > 1).then(|| {
        format!(
            "role `{}` gives its {} nodes consecutive addresses from `{first}`",
            role.name, role.count
        )
    });
    let d = match holder {
        Holder::Node { id, span: other } => Diagnostic::error(
            span,
            format!("address `{ip}` of `{}` is already taken by `{id}`", node.id),
        )
        .with_label("taken twice")
        .with_secondary(*other, format!("`{id}` has it from here"))
        .with_hint("give each node its own address"),
        Holder::Infrastructure { what, span: other } => {
            Diagnostic::error(span, format!("address `{ip}` of `{}` is {what}", node.id))
                .with_label(what.clone())
                .with_secondary(*other, format!("{what} here"))
                .with_hint(
                    "the gateway and DNS servers are never given to nodes: choose another address",
                )
        }
    };
    match consecutive {
        Some(h) => d.with_hint(h),
        None => d,
    }
}

/// The pool of `net` has no address left for `node`.
/// How many pool slots the lanes of a network use: the largest role sets the length.
fn pool_slots(c: &Cluster, lanes: &[(&str, &str)]) -> u64 {
    let longest = lanes
        .iter()
        .filter_map(|(r, _)| c.role(r))
        .map(|r| u64::from(r.count))
        .max()
        .unwrap_or(0);
    longest * lanes.len() as u64
}

/// `need` pool slots (`lanes` per node index) do not fit beside `others` addresses
/// the pool skips.
fn pool_exhausted(
    net: &Network,
    node: &str,
    span: Span,
    need: u64,
    lanes: u64,
    others: u64,
) -> Diagnostic {
    let hosts = (1u64 << (32 - u32::from(net.prefix.min(32)))).saturating_sub(2);
    let free = hosts.saturating_sub(others);
    let total = need + others;
    // The smallest prefix whose host addresses hold every address wanted.
    let prefix = (1..=30u32)
        .rev()
        .find(|p| (1u64 << (32 - p)) - 2 >= total)
        .unwrap_or(1);
    let turns = if lanes > 1 {
        format!(
            " ({lanes} roles take turns, one address each per node number, so that growing one \
             never renumbers another)"
        )
    } else {
        String::new()
    };
    Diagnostic::error(
        span,
        format!(
            "network `{}` ({}) runs out of addresses at `{node}`",
            net.name,
            net.cidr()
        ),
    )
    .with_label("no address left for this NIC")
    .with_secondary(net.origin.span, "network defined here")
    .with_hint(format!(
        "the pool hands out {need} addresses{turns} and has {free}: use a larger subnet (at \
         least `/{prefix}`) or fewer nodes"
    ))
}

/// Network and broadcast addresses, the gateway and DNS servers are never handed out.
fn reserve_infrastructure(net: &Network, notes: &Notes, taken: &mut HashMap<Ipv4Addr, Holder>) {
    let mut reserve = |ip: Ipv4Addr, what: String, span: Span| {
        if net.contains(ip) {
            taken
                .entry(ip)
                .or_insert(Holder::Infrastructure { what, span });
        }
    };
    if let Some(g) = net.gateway {
        let span = notes.part(net.origin.span, Part::Gateway);
        reserve(g, format!("the gateway of network `{}`", net.name), span);
    }
    for d in &net.dns {
        reserve(
            *d,
            format!("a DNS server of network `{}`", net.name),
            net.origin.span,
        );
    }
}

fn example_host(net: &Network) -> Ipv4Addr {
    let size = 1u64 << (32 - u32::from(net.prefix.min(32)));
    let host = 10u64.min(size.saturating_sub(2)).max(1);
    Ipv4Addr::from(u32::try_from(u64::from(u32::from(net.subnet)) + host).unwrap_or(0))
}
