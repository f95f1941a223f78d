//! Checking: the rules that relate elements to each other — names that must resolve,
//! mounts against exports and networks, the batch system's controller and queues,
//! host names, and values that would break line-based config files.
//!
//! Every rule stays quiet about what an earlier diagnostic already explains: a
//! reference to a definition reported broken, or a rule about a role whose statement
//! failed (see [`Notes`]).

pub mod images;
mod values;

use crate::args::one_of;
use crate::model::*;
use crate::resolve::{and, check_name, unknown, valid_hostname, Kind, Notes, Part};
use vocc_dsl::{Diagnostic, Document, Span, Stmt, Value, ValueKind};

/// The longest value (in characters) vocc accepts: more is a mistake, and config files
/// and kernel command lines have limits of their own.
pub const MAX_VALUE_CHARS: usize = 1024;

/// Values are spliced into config files line by line: a newline or another control
/// character in any of them would let one value write several lines.
pub fn control_characters<'d>(
    docs: impl IntoIterator<Item = &'d Document>,
    diags: &mut Vec<Diagnostic>,
) {
    fn value(kw: &str, v: &Value, diags: &mut Vec<Diagnostic>) {
        let text = match &v.kind {
            ValueKind::Word(s) | ValueKind::Str(s) | ValueKind::Path(s) => s.as_str(),
            ValueKind::Ref { target, path } => {
                if target.chars().any(char::is_control) {
                    target.as_str()
                } else {
                    path.as_str()
                }
            }
            ValueKind::List(items) => {
                items.iter().for_each(|i| value(kw, i, diags));
                return;
            }
            _ => return,
        };
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            let (what, escape) = match c {
                '\n' => ("a newline".to_string(), "`\\n`"),
                '\t' => ("a tab".to_string(), "`\\t`"),
                '\r' => ("a carriage return".to_string(), "it"),
                c => (format!("the control character U+{:04X}", c as u32), "it"),
            };
            diags.push(
                Diagnostic::error(v.span, format!("value of `{kw}` contains {what}"))
                    .with_label("not allowed in a value")
                    .with_hint(format!(
                        "values are written into line-based config files: remove {escape}"
                    )),
            );
        } else if text.chars().count() > MAX_VALUE_CHARS {
            diags.push(
                Diagnostic::error(
                    v.span,
                    format!(
                        "value of `{kw}` is {} characters long",
                        text.chars().count()
                    ),
                )
                .with_label("too long")
                .with_hint(format!(
                    "a value has at most {MAX_VALUE_CHARS} characters: names, paths and \
                     command lines are much shorter"
                )),
            );
        }
    }
    fn stmt(s: &Stmt, diags: &mut Vec<Diagnostic>) {
        s.args.iter().for_each(|v| value(&s.keyword.name, v, diags));
        s.children().iter().for_each(|c| stmt(c, diags));
    }
    for doc in docs {
        doc.stmts.iter().for_each(|s| stmt(s, diags));
    }
}

/// A cluster without roles makes no nodes: a warning, for input that is otherwise
/// right (a cluster with mistakes may well be unfinished).
pub fn no_roles(diags: &mut Vec<Diagnostic>, c: &Cluster) {
    if c.roles.is_empty() {
        diags.push(
            Diagnostic::warning(c.origin.span, format!("cluster `{}` has no roles", c.name))
                .with_label("makes no nodes")
                .with_hint("add `role NAME { root LAYER … }` for each kind of node"),
        );
    }
}

/// Every network with DHCP clients needs a node to serve DHCP on it: one with a
/// static or pool address there (the renderer picks the scheduler's controller
/// first). Run on allocated nodes of input that is otherwise right.
pub fn dhcp_servers(diags: &mut Vec<Diagnostic>, c: &Cluster) {
    for net in &c.networks {
        let on = |n: &&Node| -> bool { n.nics.iter().any(|i| i.network == net.name) };
        let client = c.nodes.iter().filter(on).find(|n| {
            n.nics
                .iter()
                .any(|i| i.network == net.name && i.method == NicMethod::Dhcp)
        });
        let Some(client) = client else { continue };
        let served = c.nodes.iter().any(|n| {
            n.nics.iter().any(|i| {
                i.network == net.name
                    && matches!(i.method, NicMethod::Static | NicMethod::Pool)
                    && i.address.is_some()
            })
        });
        if !served {
            diags.push(
                Diagnostic::error(
                    net.origin.span,
                    format!(
                        "network `{}` has DHCP clients but no node that can serve DHCP",
                        net.name
                    ),
                )
                .with_label("nodes ask for DHCP leases here")
                .with_secondary(
                    client.origin.span,
                    format!("role `{}` asks for a lease", client.role),
                )
                .with_hint(format!(
                    "give one role a fixed address on it to serve DHCP, as in `nic eth0 {} pool`, \
                     or use `assign pool`",
                    net.name
                )),
            );
        }
    }
}

/// Names, networks, layers, mounts and exports of one cluster.
pub fn cluster(diags: &mut Vec<Diagnostic>, c: &mut Cluster, notes: &Notes) {
    // Shared definitions a role could use are candidates for did-you-mean too.
    let mut net_names: Vec<&str> = c.networks.iter().map(|n| n.name.as_str()).collect();
    net_names.extend(notes.shared(Kind::Network));
    net_names.sort_unstable();
    net_names.dedup();
    let mut layer_names: Vec<&str> = c.layers.iter().map(|l| l.name.as_str()).collect();
    layer_names.extend(notes.shared(Kind::Layer));
    layer_names.sort_unstable();
    layer_names.dedup();
    let net_known = |n: &str| c.network(n).is_some() || notes.broken(&c.name, Kind::Network, n);
    // The cluster name was checked when it was read; node ids are only worth checking
    // once it is right.
    let cluster_ok = valid_hostname(&c.name) && c.name.len() <= crate::resolve::CLUSTER_NAME_MAX;
    for r in &c.roles {
        host_names(diags, c, r, cluster_ok);
        for n in &r.nics {
            let span = notes.part(n.origin.span, Part::NicNetwork);
            if !net_known(&n.network) {
                diags.push(unknown(
                    "network",
                    &n.network,
                    span,
                    net_names.iter().copied(),
                ));
            } else if let (Some(m @ (NicMethod::Pool | NicMethod::Dhcp)), Some(net)) =
                (n.method, c.network(&n.network).filter(|n| !n.is_private()))
            {
                let how = if m == NicMethod::Pool { "pool" } else { "dhcp" };
                diags.push(
                    Diagnostic::error(
                        n.origin.span,
                        format!(
                            "`{}` takes a `{how}` address on network `{}` ({}), which is \
                             not a private range",
                            n.name,
                            net.name,
                            net.cidr()
                        ),
                    )
                    .with_label("vocc would hand out public addresses")
                    .with_hint(
                        "write the address the NIC has on a public network (`nic eth1 public \
                         192.0.2.10`), or put the NIC on a private network",
                    ),
                );
            }
        }
        for l in &r.root {
            if c.layer(l).is_none() {
                let span = notes.part(r.origin.span, Part::RootLayer(l.clone()));
                diags.push(unknown("layer", l, span, layer_names.iter().copied()));
            }
        }
        let mut ats: Vec<(&str, Span)> = Vec::new();
        for d in &r.disks {
            if c.layer(&d.layer).is_none() {
                let span = notes.part(d.origin.span, Part::DiskLayer);
                diags.push(unknown(
                    "layer",
                    &d.layer,
                    span,
                    layer_names.iter().copied(),
                ));
            }
            ats.push((&d.at, notes.part(d.origin.span, Part::DiskAt)));
        }
        for m in &r.mounts {
            let at = notes.part(m.origin.span, Part::MountAt);
            if let Some((_, prev)) = ats.iter().find(|(a, _)| *a == m.at) {
                diags.push(
                    Diagnostic::error(at, format!("a disk and a mount are both at `{}`", m.at))
                        .with_label("mounted here")
                        .with_secondary(*prev, "the disk is mounted here")
                        .with_hint("mount each at its own path"),
                );
            }
            ats.push((&m.at, at));
        }
        // A NIC on an unknown network was reported: it may be the one meant.
        let incomplete = notes.incomplete(&c.name, &r.name)
            || r.nics.iter().any(|n| c.network(&n.network).is_none());
        for e in &r.exports {
            let span = notes.part(e.origin.span, Part::ExportNetwork);
            if !net_known(&e.network) {
                diags.push(unknown(
                    "network",
                    &e.network,
                    span,
                    net_names.iter().copied(),
                ));
            } else if let Some(net) = c.network(&e.network).filter(|n| !n.is_private()) {
                diags.push(
                    Diagnostic::error(
                        span,
                        format!(
                            "`{}` is exported to network `{}` ({}), which is not a private range",
                            e.path,
                            net.name,
                            net.cidr()
                        ),
                    )
                    .with_label("every address of this subnet could mount it")
                    .with_hint(format!(
                        "export only to a private network ({})",
                        crate::model::private_ranges_text()
                    )),
                );
            } else if !incomplete && !r.nics.iter().any(|n| n.network == e.network) {
                diags.push(
                    Diagnostic::error(
                        span,
                        format!(
                            "role `{}` exports `{}` to network `{}` but has no NIC on it",
                            r.name, e.path, e.network
                        ),
                    )
                    .with_label("not on this network")
                    .with_hint(format!(
                        "add `nic {} {}` to role `{}`, or export to a network it is on",
                        free_nic(r),
                        e.network,
                        r.name
                    )),
                );
            }
        }
    }
    mounts(diags, c, notes);
    values::cluster(diags, c);
}

/// A NIC name the role does not use yet, for hints.
fn free_nic(r: &Role) -> String {
    (0..)
        .map(|i| format!("eth{i}"))
        .find(|n| !r.nics.iter().any(|x| x.name == *n))
        .unwrap_or_default()
}

/// Host names after expansion (`worker` + index) and node ids
/// (`<cluster>-<host name>`) must be host name labels of at most 63 characters.
fn host_names(diags: &mut Vec<Diagnostic>, c: &Cluster, r: &Role, cluster_ok: bool) {
    if !valid_hostname(&r.name) {
        check_name(diags, "role", &r.name, r.origin.span, Some(63));
        return;
    }
    let host = crate::alloc::hostname(r, r.count);
    let id = format!("{}-{host}", c.name);
    if host.len() > 63 {
        diags.push(
            Diagnostic::error(
                r.origin.span,
                format!(
                    "host name `{host}` of role `{}` is longer than 63 characters",
                    r.name
                ),
            )
            .with_label("node host names are made from it")
            .with_hint(format!("shorten the role name by {}", host.len() - 63)),
        );
    } else if cluster_ok && id.len() > 63 {
        diags.push(
            Diagnostic::error(
                r.origin.span,
                format!("node id `{id}` is longer than 63 characters"),
            )
            .with_label(format!("node ids of role `{}` are made from it", r.name))
            .with_hint(format!(
                "node ids are `<cluster>-<host name>`: shorten the name of role `{}` or of \
                 cluster `{}` by {}",
                r.name,
                c.name,
                id.len() - 63
            )),
        );
    }
}

/// Mounts: the source role exists, has one node, exports the path to a network the
/// mounting role is on. Sets each mount's network, and makes mounts of read-only
/// exports read-only.
fn mounts(diags: &mut Vec<Diagnostic>, c: &mut Cluster, notes: &Notes) {
    let role_names: Vec<&str> = c.roles.iter().map(|r| r.name.as_str()).collect();
    let mut resolved: Vec<(usize, usize, String, bool)> = Vec::new();
    for (ri, r) in c.roles.iter().enumerate() {
        let incomplete = notes.incomplete(&c.name, &r.name)
            || r.nics.iter().any(|n| c.network(&n.network).is_none());
        for (mi, m) in r.mounts.iter().enumerate() {
            let source = notes.part(m.origin.span, Part::MountSource);
            let Some(src) = c.role(&m.role) else {
                if !notes.broken(&c.name, Kind::Role, &m.role) {
                    let span = notes.part(m.origin.span, Part::MountRole);
                    diags.push(unknown("role", &m.role, span, role_names.iter().copied()));
                }
                continue;
            };
            if src.name == r.name {
                diags.push(
                    Diagnostic::error(source, format!("role `{}` mounts its own export", r.name))
                        .with_label("from itself")
                        .with_hint(
                            "mount the export of another role; a node has its own files already",
                        ),
                );
                continue;
            }
            if src.count > 1 {
                diags.push(
                    Diagnostic::error(
                        source,
                        format!(
                            "cannot mount from role `{}`: it has {} nodes",
                            src.name, src.count
                        ),
                    )
                    .with_label("which node would serve it?")
                    .with_secondary(src.origin.span, "role defined here")
                    .with_hint(format!(
                        "mount from a role with `count 1`, or give role `{}` `count 1`",
                        src.name
                    )),
                );
                continue;
            }
            let Some(export) = src.exports.iter().find(|e| e.path == m.path) else {
                if notes.incomplete(&c.name, &src.name) {
                    continue;
                }
                let paths: Vec<&str> = src.exports.iter().map(|e| e.path.as_str()).collect();
                let mut d = Diagnostic::error(
                    source,
                    format!("role `{}` does not export `{}`", src.name, m.path),
                )
                .with_label("nothing to mount");
                d = match vocc_dsl::diag::suggest(&m.path, paths.iter().copied()) {
                    Some(p) => d.with_hint(format!("did you mean `{}:{p}`?", src.name)),
                    None if paths.is_empty() => d.with_hint(format!(
                        "role `{}` exports nothing: add `export {} to NETWORK` to it",
                        src.name, m.path
                    )),
                    None => d.with_hint(format!("role `{}` exports {}", src.name, one_of(&paths))),
                };
                diags.push(d.with_secondary(src.origin.span, "exporting role"));
                continue;
            };
            if !r.nics.iter().any(|n| n.network == export.network) {
                if !incomplete {
                    diags.push(off_network(r, src, m, export, source, notes));
                }
                continue;
            }
            resolved.push((ri, mi, export.network.clone(), export.access == Access::Ro));
        }
    }
    for (ri, mi, net, ro) in resolved {
        if let Some(m) = c.roles.get_mut(ri).and_then(|r| r.mounts.get_mut(mi)) {
            m.network = net;
            // A read-write mount of a read-only export could not write anyway: make it
            // read-only instead of failing at boot.
            if ro {
                m.access = Access::Ro;
            }
        }
    }
}

fn off_network(
    r: &Role,
    src: &Role,
    m: &Mount,
    export: &Export,
    source: Span,
    notes: &Notes,
) -> Diagnostic {
    let nets: Vec<&str> = r.nics.iter().map(|n| n.network.as_str()).collect();
    Diagnostic::error(
        source,
        format!(
            "role `{}` mounts `{}:{}` but is not on network `{}`",
            r.name, src.name, m.path, export.network
        ),
    )
    .with_label(format!(
        "`{}` is exported only to `{}`",
        m.path, export.network
    ))
    .with_secondary(
        notes.part(export.origin.span, Part::ExportNetwork),
        "exported to that network here",
    )
    .with_hint(if nets.is_empty() {
        format!(
            "role `{}` has no NIC: add `nic eth0 {}` to it",
            r.name, export.network
        )
    } else {
        format!(
            "role `{}` is on {}: add `nic {} {}` to it, or export to one of those",
            r.name,
            one_of(&nets),
            free_nic(r),
            export.network
        )
    })
}

/// The batch system: one kind per cluster, exactly one controller (a single node)
/// when any role takes part, and queues that compute roles name must be declared.
/// With `broken`, a scheduler or queue statement of the cluster failed: what it would
/// have declared is unknown, so nothing is reported as missing.
pub fn scheduler(
    diags: &mut Vec<Diagnostic>,
    c: &mut Cluster,
    mut queues: Vec<Queue>,
    stmt: &Stmt,
    broken: bool,
) {
    let parts: Vec<(&Role, &SchedRole)> = c
        .roles
        .iter()
        .filter_map(|r| r.scheduler.as_ref().map(|s| (r, s)))
        .collect();
    let Some((_, first)) = parts.first() else {
        if let (Some(q), false) = (queues.first(), broken) {
            diags.push(
                Diagnostic::error(
                    q.origin.span,
                    format!(
                        "queue `{}` is declared but no role runs a scheduler",
                        q.name
                    ),
                )
                .with_label("no batch system to serve it")
                .with_hint("add `scheduler KIND controller` to a role, or remove the queue"),
            );
        }
        return;
    };
    let kind = first.kind;
    for (r, s) in parts.iter().skip(1) {
        if s.kind != kind {
            diags.push(
                Diagnostic::error(
                    s.origin.span,
                    format!(
                        "role `{}` uses `{}` but the cluster's scheduler is `{}`",
                        r.name,
                        s.kind.as_str(),
                        kind.as_str()
                    ),
                )
                .with_label(format!("not `{}`", kind.as_str()))
                .with_secondary(first.origin.span, "first scheduler here")
                .with_hint("a cluster runs one batch system: use the same scheduler in every role"),
            );
        }
    }
    let controllers: Vec<&(&Role, &SchedRole)> =
        parts.iter().filter(|(_, s)| s.controller).collect();
    let controller = match controllers.as_slice() {
        [] => {
            if !broken {
                let (r, s) = parts.iter().find(|(_, s)| s.compute).unwrap_or(&parts[0]);
                diags.push(
                    Diagnostic::error(
                        s.origin.span,
                        format!(
                            "role `{}` uses `{}` but no role is its controller",
                            r.name,
                            kind.as_str()
                        ),
                    )
                    .with_label("no controller for this")
                    .with_hint(format!(
                        "add `scheduler {} controller` to the head role",
                        kind.as_str()
                    )),
                );
            }
            return;
        }
        [(r, s), others @ ..] => {
            if r.count > 1 {
                diags.push(
                    Diagnostic::error(
                        s.origin.span,
                        format!("controller role `{}` has {} nodes", r.name, r.count),
                    )
                    .with_label("one controller per cluster")
                    .with_secondary(r.origin.span, "role defined here")
                    .with_hint(format!(
                        "a batch system has one controller: give role `{}` `count 1`",
                        r.name
                    )),
                );
            }
            for (r2, s2) in others {
                diags.push(
                    Diagnostic::error(
                        s2.origin.span,
                        format!(
                            "roles `{}` and `{}` are both the controller",
                            r.name, r2.name
                        ),
                    )
                    .with_label("second controller")
                    .with_secondary(s.origin.span, "first controller here")
                    .with_hint(
                        "a batch system has one controller: remove `controller` from one role",
                    ),
                );
            }
            r.name.clone()
        }
    };
    let system = crate::scheduler::of(kind);
    match system.queues() {
        crate::scheduler::Queues::None { title, instead } => {
            if let Some(q) = queues.first() {
                diags.push(
                    Diagnostic::error(
                        q.origin.span,
                        format!(
                            "queue `{}` is declared but `{}` has no queues",
                            q.name,
                            kind.as_str()
                        ),
                    )
                    .with_label(format!("{title} does not use it"))
                    .with_hint(format!("remove the queue; {instead}")),
                );
            }
            queues.clear();
        }
        crate::scheduler::Queues::Named { implicit, .. } if queues.is_empty() => {
            // The implicit queue takes every job: the whole cluster serves its VO.
            queues.push(Queue {
                name: implicit.into(),
                vo: None,
                default: true,
                origin: Origin {
                    span: stmt.keyword.span,
                    location: c.origin.location.clone(),
                },
            });
        }
        crate::scheduler::Queues::Named { .. } => {}
    }
    let defaults: Vec<&Queue> = queues.iter().filter(|q| q.default).collect();
    if let [a, rest @ ..] = defaults.as_slice() {
        for b in rest {
            diags.push(
                Diagnostic::error(
                    b.origin.span,
                    format!("queues `{}` and `{}` are both the default", a.name, b.name),
                )
                .with_label("second default")
                .with_secondary(a.origin.span, "first default here")
                .with_hint("mark one queue `default`"),
            );
        }
    } else if let Some(q) = queues.first_mut() {
        q.default = true;
    }
    let names: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
    if !broken {
        for (_, s) in &parts {
            for (q, span) in s.queues.iter().zip(&s.queue_spans) {
                if !names.contains(&q.as_str()) {
                    diags.push(unknown_queue(kind, q, *span, &names));
                }
            }
        }
    }
    c.scheduler = Some(Scheduler {
        kind,
        queues,
        controller,
    });
}

fn unknown_queue(kind: SchedulerKind, q: &str, span: Span, names: &[&str]) -> Diagnostic {
    let rules = crate::scheduler::of(kind).queues();
    let what = rules.word();
    let d = Diagnostic::error(span, format!("unknown {what} `{q}`"))
        .with_label(format!("no such {what}"));
    match vocc_dsl::diag::suggest(q, names.iter().copied()) {
        Some(s) => d.with_hint(format!("did you mean `{s}`?")),
        None => match rules {
            crate::scheduler::Queues::None { title, .. } => {
                d.with_hint(format!("{title} has no queues: remove it"))
            }
            crate::scheduler::Queues::Named { .. } => {
                let known: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                let d = d.with_hint(format!("declare it in the cluster: `{what} {q}`"));
                if known.is_empty() {
                    d
                } else {
                    d.with_hint(format!("the cluster declares {}", and(&known)))
                }
            }
        },
    }
}
