//! Allocation: expand roles into nodes, give every NIC its address and a
//! deterministic MAC.
//!
//! Stability is the rule: adding a node must not renumber the others. Pool and DHCP
//! addresses are handed out in the order (index, role): all first nodes of every role,
//! then all second nodes, and so on. A node's address therefore depends only on nodes
//! with a smaller index, or the same index in an earlier role — growing a role adds
//! nodes at the end of that order and moves nobody. MACs are a hash of the cluster,
//! host name and interface, so they never depend on other nodes at all.

use crate::model::*;
use crate::resolve::outside;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use vocc_dsl::Diagnostic;

/// The host name of node `index` (1-based) of a role.
pub fn hostname(role: &Role, index: u32) -> String {
    if role.count == 1 {
        role.name.clone()
    } else {
        format!("{}{index}", role.name)
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

/// Builds `cluster.nodes`. `macs` holds the MACs of the whole model (several
/// clusters may share a site's bridges), so collisions are avoided across clusters.
pub fn nodes(diags: &mut Vec<Diagnostic>, c: &mut Cluster, macs: &mut HashSet<String>) {
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
    let mut taken: HashMap<Ipv4Addr, (String, vocc_dsl::Span)> = HashMap::new();
    let mut per_node: Vec<Vec<Nic>> = vec![Vec::new(); nodes.len()];
    let mut bad_nets: HashSet<String> = HashSet::new();
    for net in &c.networks {
        reserve_infrastructure(net, &mut taken);
    }
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
                        if node.index == 1 {
                            diags.push(
                                Diagnostic::error(
                                    spec.origin.span,
                                    format!(
                                        "nic `{}` on static network `{}` has no address",
                                        spec.name, net.name
                                    ),
                                )
                                .with_hint(format!(
                                    "write the address: `nic {} {} {}`",
                                    spec.name,
                                    net.name,
                                    example_host(net)
                                )),
                            );
                        }
                    }
                    Some(first) => {
                        let ip = u32::from(first)
                            .checked_add(node.index - 1)
                            .map(Ipv4Addr::from);
                        match ip {
                            Some(ip) if net.contains(ip) && !is_edge(net, ip) => {
                                if let Some((other, span)) = taken.get(&ip) {
                                    diags.push(
                                        Diagnostic::error(
                                            spec.origin.span,
                                            format!(
                                                "`{}` and `{other}` both have address `{ip}`",
                                                node.id
                                            ),
                                        )
                                        .with_secondary(*span, "the other use")
                                        .with_hint("give each node its own address"),
                                    );
                                } else {
                                    taken.insert(ip, (node.id.clone(), spec.origin.span));
                                }
                                address = Some(ip);
                            }
                            Some(ip) if net.contains(ip) => {
                                diags.push(
                                    Diagnostic::error(
                                        spec.origin.span,
                                        format!(
                                            "address `{ip}` of `{}` is the network or broadcast address of `{}`",
                                            node.id, net.name
                                        ),
                                    )
                                    .with_hint(format!("use a host address in {}", net.cidr())),
                                );
                            }
                            _ => {
                                if node.index == 1 || net.contains(first) {
                                    let shown = ip.unwrap_or(first);
                                    let mut d = outside(spec.origin.span, shown, net);
                                    if node.index > 1 {
                                        d.message = format!(
                                            "address `{shown}` of `{}` is outside network `{}` ({})",
                                            node.id,
                                            net.name,
                                            net.cidr()
                                        );
                                        d = d.with_hint(format!(
                                            "role `{}` has {} nodes on consecutive addresses from `{first}`",
                                            role.name, role.count
                                        ));
                                    }
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

    // Pool and DHCP addresses in (index, role) order.
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_by_key(|&i| {
        (
            nodes[i].index,
            role_pos.get(nodes[i].role.as_str()).copied(),
        )
    });
    let mut cursors: BTreeMap<String, u32> = BTreeMap::new();
    let mut wanted: HashMap<String, usize> = HashMap::new();
    for nic in per_node.iter().flatten() {
        if matches!(nic.method, NicMethod::Pool | NicMethod::Dhcp) && nic.address.is_none() {
            *wanted.entry(nic.network.clone()).or_default() += 1;
        }
    }
    for &ni in &order {
        for nic in per_node[ni].iter_mut() {
            if !matches!(nic.method, NicMethod::Pool | NicMethod::Dhcp) || nic.address.is_some() {
                continue;
            }
            let Some(net) = c.network(&nic.network) else {
                continue;
            };
            let base = u32::from(net.subnet);
            let size = 1u32 << (32 - u32::from(net.prefix));
            let cursor = cursors.entry(net.name.clone()).or_insert(1);
            let mut found = None;
            while *cursor < size - 1 {
                let ip = Ipv4Addr::from(base + *cursor);
                *cursor += 1;
                if !taken.contains_key(&ip) {
                    found = Some(ip);
                    break;
                }
            }
            match found {
                Some(ip) => {
                    taken.insert(ip, (nodes[ni].id.clone(), nodes[ni].origin.span));
                    nic.address = Some(ip);
                }
                None => {
                    if bad_nets.insert(net.name.clone()) {
                        let want = wanted.get(&net.name).copied().unwrap_or(0);
                        let spec_span = c
                            .role(&nodes[ni].role)
                            .and_then(|r| r.nics.iter().find(|s| s.name == nic.name))
                            .map_or(nodes[ni].origin.span, |s| s.origin.span);
                        diags.push(
                            Diagnostic::error(
                                spec_span,
                                format!(
                                    "network `{}` ({}) runs out of addresses at `{}`",
                                    net.name,
                                    net.cidr(),
                                    nodes[ni].id
                                ),
                            )
                            .with_label("no address left for this NIC")
                            .with_secondary(net.origin.span, "network defined here")
                            .with_hint(format!(
                                "{want} NICs need an address from the pool: use a larger subnet or fewer nodes"
                            )),
                        );
                    }
                }
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

/// Network and broadcast addresses, the gateway and DNS servers are never handed out.
fn reserve_infrastructure(net: &Network, taken: &mut HashMap<Ipv4Addr, (String, vocc_dsl::Span)>) {
    let mut reserve = |ip: Ipv4Addr, what: &str| {
        if net.contains(ip) {
            taken
                .entry(ip)
                .or_insert_with(|| (format!("{what} of `{}`", net.name), net.origin.span));
        }
    };
    if let Some(g) = net.gateway {
        reserve(g, "the gateway");
    }
    for d in &net.dns {
        reserve(*d, "the DNS server");
    }
}

fn is_edge(net: &Network, ip: Ipv4Addr) -> bool {
    let mask = u32::from(net.netmask());
    let host = u32::from(ip) & !mask;
    host == 0 || host == !mask
}

fn example_host(net: &Network) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.subnet) + 10u32.min((1u32 << (32 - u32::from(net.prefix))) - 2))
}
