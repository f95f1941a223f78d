//! Checking: the rules that relate elements to each other — names that must resolve,
//! mounts against exports and networks, the batch system's controller and queues,
//! guest paths, host names, and values that would break line-based config files.

use crate::args::one_of;
use crate::load::Loaded;
use crate::model::*;
use crate::resolve::{duplicate, unknown, valid_hostname};
use vocc_dsl::{Diagnostic, Span, Stmt, Value, ValueKind};

/// Values are spliced into config files line by line: a newline or another control
/// character in any of them would let one value write several lines.
pub fn control_characters(files: &[Loaded], diags: &mut Vec<Diagnostic>) {
    fn value(v: &Value, diags: &mut Vec<Diagnostic>) {
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
                items.iter().for_each(|i| value(i, diags));
                return;
            }
            _ => return,
        };
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            let what = match c {
                '\n' => "a newline".to_string(),
                '\t' => "a tab".to_string(),
                '\r' => "a carriage return".to_string(),
                c => format!("the control character U+{:04X}", c as u32),
            };
            diags.push(
                Diagnostic::error(v.span, format!("value contains {what}"))
                    .with_label("not allowed in a value")
                    .with_hint("values end up in line-based config files: remove it"),
            );
        }
    }
    fn stmt(s: &Stmt, diags: &mut Vec<Diagnostic>) {
        s.args.iter().for_each(|v| value(v, diags));
        s.children().iter().for_each(|c| stmt(c, diags));
    }
    for f in files {
        f.doc.stmts.iter().for_each(|s| stmt(s, diags));
    }
}

/// Names, networks, layers, mounts and exports of one cluster.
pub fn cluster(diags: &mut Vec<Diagnostic>, c: &mut Cluster) {
    let net_names: Vec<&str> = c.networks.iter().map(|n| n.name.as_str()).collect();
    let layer_names: Vec<&str> = c.layers.iter().map(|l| l.name.as_str()).collect();
    let role_names: Vec<&str> = c.roles.iter().map(|r| r.name.as_str()).collect();
    let digits = |n: u32| n.to_string().len();

    for r in &c.roles {
        // Host names after expansion: `worker` + index.
        let longest = if r.count > 1 {
            r.name.len() + digits(r.count)
        } else {
            r.name.len()
        };
        if !valid_hostname(&r.name) || longest > 63 {
            crate::resolve::check_name(diags, "role", &r.name, r.origin.span, true);
        } else if c.name.len() + 1 + longest > 63 {
            diags.push(
                Diagnostic::error(
                    r.origin.span,
                    format!("node names of role `{}` grow too long", r.name),
                )
                .with_hint("node ids are `<cluster>-<host name>`: use shorter names (at most 63)"),
            );
        }
        let mut nic_names: Vec<(&str, Span)> = Vec::new();
        for n in &r.nics {
            if let Some((_, prev)) = nic_names.iter().find(|(x, _)| *x == n.name) {
                diags.push(duplicate("nic", &n.name, n.origin.span, *prev));
            }
            nic_names.push((&n.name, n.origin.span));
            if c.network(&n.network).is_none() {
                diags.push(unknown(
                    "network",
                    &n.network,
                    n.origin.span,
                    net_names.iter().copied(),
                ));
            }
        }
        for l in &r.root {
            if c.layer(l).is_none() {
                diags.push(unknown(
                    "layer",
                    l,
                    r.origin.span,
                    layer_names.iter().copied(),
                ));
            }
        }
        let mut ats: Vec<(&str, Span)> = Vec::new();
        for d in &r.disks {
            if c.layer(&d.layer).is_none() {
                diags.push(unknown(
                    "layer",
                    &d.layer,
                    d.origin.span,
                    layer_names.iter().copied(),
                ));
            }
            ats.push((&d.at, d.origin.span));
        }
        for m in &r.mounts {
            if let Some((_, prev)) = ats.iter().find(|(a, _)| *a == m.at) {
                diags.push(
                    Diagnostic::error(
                        m.origin.span,
                        format!("two things are mounted at `{}`", m.at),
                    )
                    .with_secondary(*prev, "also mounted here")
                    .with_hint("mount each at its own path"),
                );
            }
            ats.push((&m.at, m.origin.span));
        }
        for e in &r.exports {
            if c.network(&e.network).is_none() {
                diags.push(unknown(
                    "network",
                    &e.network,
                    e.origin.span,
                    net_names.iter().copied(),
                ));
            } else if !r.nics.iter().any(|n| n.network == e.network) {
                diags.push(
                    Diagnostic::error(
                        e.origin.span,
                        format!(
                            "role `{}` exports `{}` to network `{}` but has no NIC on it",
                            r.name, e.path, e.network
                        ),
                    )
                    .with_hint(format!("add `nic eth0 {}` to role `{}`", e.network, r.name)),
                );
            }
        }
    }

    // Mounts: the source role exists, has one node, exports the path to a network the
    // mounting role is on.
    let mut resolved: Vec<(usize, usize, String)> = Vec::new();
    for (ri, r) in c.roles.iter().enumerate() {
        for (mi, m) in r.mounts.iter().enumerate() {
            let Some(src) = c.role(&m.role) else {
                diags.push(unknown(
                    "role",
                    &m.role,
                    m.origin.span,
                    role_names.iter().copied(),
                ));
                continue;
            };
            if src.name == r.name {
                diags.push(
                    Diagnostic::error(
                        m.origin.span,
                        format!("role `{}` mounts its own export", r.name),
                    )
                    .with_hint("mount the export of another role"),
                );
                continue;
            }
            if src.count > 1 {
                diags.push(
                    Diagnostic::error(
                        m.origin.span,
                        format!(
                            "role `{}` has {} nodes; a mount needs a single server",
                            src.name, src.count
                        ),
                    )
                    .with_secondary(src.origin.span, "role defined here")
                    .with_hint(format!(
                        "mount from a role with `count 1`, or set `count 1` on `{}`",
                        src.name
                    )),
                );
                continue;
            }
            let Some(export) = src.exports.iter().find(|e| e.path == m.path) else {
                let paths: Vec<&str> = src.exports.iter().map(|e| e.path.as_str()).collect();
                let mut d = Diagnostic::error(
                    m.origin.span,
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
                let nets: Vec<&str> = r.nics.iter().map(|n| n.network.as_str()).collect();
                diags.push(
                    Diagnostic::error(
                        m.origin.span,
                        format!(
                            "role `{}` mounts `{}:{}` but is not on network `{}`",
                            r.name, src.name, m.path, export.network
                        ),
                    )
                    .with_secondary(export.origin.span, "exported to that network here")
                    .with_hint(if nets.is_empty() {
                        format!("add `nic eth0 {}` to role `{}`", export.network, r.name)
                    } else {
                        format!(
                            "role `{}` is on {}: add a NIC on `{}` or export to one of those",
                            r.name,
                            one_of(&nets),
                            export.network
                        )
                    }),
                );
                continue;
            }
            if m.access == Access::Rw && export.access == Access::Ro {
                // A read-write mount of a read-only export works but cannot write:
                // make the mount read-only instead of failing at boot.
                resolved.push((ri, mi, export.network.clone()));
                continue;
            }
            resolved.push((ri, mi, export.network.clone()));
        }
    }
    for (ri, mi, net) in resolved {
        let ro = {
            let m = &c.roles[ri].mounts[mi];
            c.role(&m.role)
                .and_then(|s| s.exports.iter().find(|e| e.path == m.path))
                .is_some_and(|e| e.access == Access::Ro)
        };
        let m = &mut c.roles[ri].mounts[mi];
        m.network = net;
        if ro {
            m.access = Access::Ro;
        }
    }
}

/// The batch system: one kind per cluster, exactly one controller (a single node)
/// when any role takes part, and queues that compute roles name must be declared.
pub fn scheduler(
    diags: &mut Vec<Diagnostic>,
    c: &mut Cluster,
    mut queues: Vec<Queue>,
    stmt: &Stmt,
) {
    let parts: Vec<(&Role, &SchedRole)> = c
        .roles
        .iter()
        .filter_map(|r| r.scheduler.as_ref().map(|s| (r, s)))
        .collect();
    let Some((_, first)) = parts.first() else {
        if let Some(q) = queues.first() {
            diags.push(
                Diagnostic::error(
                    q.origin.span,
                    format!("queue `{}` but no role runs a scheduler", q.name),
                )
                .with_hint("add `scheduler KIND controller` to a role, or remove the queue"),
            );
        }
        return;
    };
    let kind = first.kind;
    for (r, s) in &parts[1..] {
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
                .with_secondary(first.origin.span, "first scheduler here")
                .with_hint("a cluster runs one batch system: use the same scheduler in every role"),
            );
        }
    }
    let controllers: Vec<&(&Role, &SchedRole)> =
        parts.iter().filter(|(_, s)| s.controller).collect();
    let controller = match controllers.as_slice() {
        [] => {
            let (r, s) = parts.iter().find(|(_, s)| s.compute).unwrap_or(&parts[0]);
            diags.push(
                Diagnostic::error(
                    s.origin.span,
                    format!(
                        "role `{}` takes part in `{}` but no role is its controller",
                        r.name,
                        kind.as_str()
                    ),
                )
                .with_hint(format!(
                    "add `scheduler {} controller` to the head role",
                    kind.as_str()
                )),
            );
            return;
        }
        [(r, s)] => {
            if r.count > 1 {
                diags.push(
                    Diagnostic::error(
                        s.origin.span,
                        format!("controller role `{}` has {} nodes", r.name, r.count),
                    )
                    .with_hint("a batch system has one controller: give its role `count 1`"),
                );
            }
            r.name.clone()
        }
        [(r1, _), (r2, s2), ..] => {
            diags.push(
                Diagnostic::error(
                    s2.origin.span,
                    format!(
                        "roles `{}` and `{}` are both scheduler controllers",
                        r1.name, r2.name
                    ),
                )
                .with_secondary(r1.origin.span, "first controller")
                .with_hint("a batch system has one controller: remove `controller` from one role"),
            );
            r1.name.clone()
        }
    };
    if kind == SchedulerKind::Condor {
        if let Some(q) = queues.first() {
            diags.push(
                Diagnostic::error(q.origin.span, "HTCondor has no queues")
                    .with_hint("remove the queue; HTCondor matches jobs to machines instead"),
            );
        }
        queues.clear();
    } else if queues.is_empty() {
        let name = if kind == SchedulerKind::Sge {
            "all.q"
        } else {
            "batch"
        };
        queues.push(Queue {
            name: name.into(),
            vo: Some(c.vo.clone()),
            default: true,
            origin: crate::model::Origin {
                span: stmt.keyword.span,
                location: c.origin.location.clone(),
            },
        });
    }
    let defaults: Vec<&Queue> = queues.iter().filter(|q| q.default).collect();
    if let [a, b, ..] = defaults.as_slice() {
        diags.push(
            Diagnostic::error(
                b.origin.span,
                format!("queues `{}` and `{}` are both the default", a.name, b.name),
            )
            .with_secondary(a.origin.span, "first default")
            .with_hint("mark one queue `default`"),
        );
    } else if defaults.is_empty() {
        if let Some(q) = queues.first_mut() {
            q.default = true;
        }
    }
    let names: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
    for (_, s) in &parts {
        for (q, span) in s.queues.iter().zip(&s.queue_spans) {
            if !names.contains(&q.as_str()) {
                let what = if kind == SchedulerKind::Slurm {
                    "partition"
                } else {
                    "queue"
                };
                let mut d = Diagnostic::error(*span, format!("unknown {what} `{q}`"))
                    .with_label(format!("no such {what}"));
                d = match vocc_dsl::diag::suggest(q, names.iter().copied()) {
                    Some(s) => d.with_hint(format!("did you mean `{s}`?")),
                    None if kind == SchedulerKind::Condor => {
                        d.with_hint("HTCondor has no queues: remove it")
                    }
                    None => d.with_hint(format!("declare it in the cluster: `{what} {q}`")),
                };
                diags.push(d);
            }
        }
    }
    c.scheduler = Some(Scheduler {
        kind,
        queues,
        controller,
    });
}
