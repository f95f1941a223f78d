//! Reading plans: the JSON schema of the plan format, and `load_plan`, which checks a
//! plan's schema version, reads it strictly and checks that everything it refers to
//! exists before the runtime acts on any of it.
//!
//! Invariant: a `Plan` that `load_plan` returns has unique ids, no dangling reference
//! and no dependency cycle, so an executor can walk its steps without checking again.
//! Invariant: in a `Plan` that `load_plan` returns, every name that becomes a path
//! (cluster, node, layer, host, network) is a label (`names.rs`), every path it gives
//! is relative and stays inside its root, no string holds a control character, and
//! addresses, MACs, digests and counts are what they claim to be.

use crate::names::{self, shown, LABEL_RULE};
use crate::plan::{Action, Plan, SCHEMA_VERSION};
use std::collections::{HashMap, HashSet};
use thiserror::Error;

/// Why a plan cannot be used. Messages are lowercase and name the offending ids.
#[derive(Debug, Error)]
pub enum PlanError {
    #[error("the plan is not valid JSON: {0}")]
    Syntax(#[source] serde_json::Error),
    #[error("the plan has no `schema_version`: is this a vocc plan?")]
    NoVersion,
    #[error(
        "the plan has schema version {found} but this runtime reads only version {supported}: \
         compile the plan with a vocc that writes version {supported}, or use a runtime that \
         reads version {found}"
    )]
    Version { found: u64, supported: u32 },
    #[error("the plan does not match schema version {version}: {source}")]
    Format {
        version: u32,
        #[source]
        source: serde_json::Error,
    },
    #[error("the plan has two {kind}s with id `{id}`")]
    Duplicate { kind: &'static str, id: String },
    #[error("{owner} refers to {kind} `{id}`, which the plan does not have")]
    Dangling {
        owner: String,
        kind: &'static str,
        id: String,
    },
    #[error("the steps wait for each other in a cycle (each waits for the next): {}", cycle.join(" → "))]
    Cycle { cycle: Vec<String> },
    #[error("the nodes wait for each other in a cycle through `after` (each waits for the next): {}", cycle.join(" → "))]
    NodeCycle { cycle: Vec<String> },
    /// A value the plan may not hold: `owner` names where (`node `x``), `field` the
    /// field, `problem` what is wrong with it and what is allowed.
    #[error("{owner}: `{field}` {problem}")]
    Invalid {
        owner: String,
        field: String,
        problem: String,
    },
}

/// A machine the control side reaches (a host, the image server): a label for a name,
/// a plain address, a usable link, and an absolute store once it is another machine.
fn machine(
    plan: &Plan,
    o: &str,
    name: &str,
    address: Option<&str>,
    link: Option<&crate::hostlink::HostLink>,
) -> Result<(), PlanError> {
    label(o, "name", name)?;
    if let Some(a) = address {
        let ok = names::is_address(a) || names::is_host_name(a);
        check(
            o,
            "address",
            a,
            ok,
            "it must be an IP address or a host name",
        )?;
    }
    if let Some(link) = link {
        if let Err(problem) = link.check() {
            return Err(invalid(o, "link", format!("is not usable: {problem}")));
        }
        if !matches!(link, crate::hostlink::HostLink::Local { .. }) && !plan.store.starts_with('/')
        {
            return Err(invalid(
                o,
                "link",
                format!(
                    "reaches another machine, whose store must be an absolute path, not `{}`",
                    shown(&plan.store)
                ),
            ));
        }
    }
    Ok(())
}

fn invalid(owner: &str, field: &str, problem: impl Into<String>) -> PlanError {
    PlanError::Invalid {
        owner: owner.to_owned(),
        field: field.to_owned(),
        problem: problem.into(),
    }
}

/// The JSON schema of the plan format (draft 7), as committed in `plan.schema.json`.
pub fn plan_schema() -> serde_json::Value {
    // Serialising a schema built from our own types cannot fail; fall back to an empty
    // schema rather than panic if schemars ever says otherwise.
    serde_json::to_value(schemars::schema_for!(Plan)).unwrap_or_default()
}

/// Reads a plan: the schema version first (so an old or new plan gets a clear message
/// rather than a confusing field error), then the document with unknown fields denied,
/// then every reference it makes.
pub fn load_plan(json: &str) -> Result<Plan, PlanError> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(PlanError::Syntax)?;
    let found = value.get("schema_version").ok_or(PlanError::NoVersion)?;
    let found = found.as_u64().ok_or(PlanError::NoVersion)?;
    if found != u64::from(SCHEMA_VERSION) {
        return Err(PlanError::Version {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    // Before anything prints a value of the plan (a serde error names unknown fields),
    // refuse what would reach a terminal or a file name raw.
    control_characters(&value, &mut String::new())?;
    // Parse the text again rather than the value so errors carry a line and column.
    let plan: Plan = serde_json::from_str(json).map_err(|source| PlanError::Format {
        version: SCHEMA_VERSION,
        source,
    })?;
    validate(&plan)?;
    Ok(plan)
}

/// Refuses control characters (newlines, escapes) in every string and key of the
/// document; `path` is where `value` is, as in `plan.nodes[0].id`.
fn control_characters(value: &serde_json::Value, path: &mut String) -> Result<(), PlanError> {
    let bad = |s: &str| s.chars().any(char::is_control);
    let refuse = |path: &str, s: &str| {
        invalid(
            "the plan",
            path,
            format!(
                "is `{}`, which holds a control character: plan values are single lines of \
                 printable text",
                shown(s)
            ),
        )
    };
    match value {
        serde_json::Value::String(s) if bad(s) => Err(refuse(path, s)),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                control_characters(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        serde_json::Value::Object(fields) => {
            for (key, item) in fields {
                if bad(key) {
                    return Err(refuse(path, key));
                }
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                control_characters(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Checks every value of a plan, then its references: unique ids, every node's host,
/// cluster and layers, every staging item, every step's subject and `after`, and no
/// dependency cycle among steps or nodes.
pub fn validate(plan: &Plan) -> Result<(), PlanError> {
    values(plan)?;
    let hosts = unique("host", plan.hosts.iter().map(|h| h.name.as_str()))?;
    let clusters = unique("cluster", plan.clusters.iter().map(|c| c.name.as_str()))?;
    let layers = unique("layer", plan.layers.iter().map(|l| l.id.as_str()))?;
    let nodes = unique("node", plan.nodes.iter().map(|n| n.id.as_str()))?;
    let steps = unique("step", plan.steps.iter().map(|s| s.id.as_str()))?;

    let check = |set: &HashSet<&str>, owner: &dyn Fn() -> String, kind, id: &str| {
        if set.contains(id) {
            Ok(())
        } else {
            Err(PlanError::Dangling {
                owner: owner(),
                kind,
                id: id.to_owned(),
            })
        }
    };
    for layer in &plan.layers {
        let owner = || format!("layer `{}`", layer.id);
        check(&clusters, &owner, "cluster", &layer.cluster)?;
    }
    for cluster in &plan.clusters {
        let Some(batch) = &cluster.batch else {
            continue;
        };
        let o = format!("the batch system of cluster `{}`", cluster.name);
        let of_cluster: HashSet<&str> = plan
            .nodes
            .iter()
            .filter(|n| n.cluster == cluster.name)
            .map(|n| n.id.as_str())
            .collect();
        check(&of_cluster, &|| o.clone(), "node", &batch.controller)?;
        for role in &batch.compute {
            label(&o, "compute", role)?;
        }
        if let Some(drain) = &batch.drain {
            for (field, argv) in [("drain.start", &drain.start), ("drain.jobs", &drain.jobs)] {
                if argv.first().is_none_or(|p| p.is_empty()) {
                    return Err(invalid(&o, field, "must name a program"));
                }
            }
        }
    }
    for node in &plan.nodes {
        let owner = || format!("node `{}`", node.id);
        check(&clusters, &owner, "cluster", &node.cluster)?;
        check(&hosts, &owner, "host", &node.host)?;
        let root_image = node.root_image.iter();
        for layer in node
            .root
            .iter()
            .chain(root_image)
            .chain(node.disks.iter().map(|d| &d.layer))
        {
            check(&layers, &owner, "layer", layer)?;
        }
        for after in &node.after {
            check(&nodes, &owner, "node", after)?;
        }
    }
    for item in &plan.staging {
        let owner = || format!("the staging of `{}` on `{}`", item.layer, item.host);
        check(&hosts, &owner, "host", &item.host)?;
        check(&layers, &owner, "layer", &item.layer)?;
    }
    for step in &plan.steps {
        let owner = || format!("step `{}`", step.id);
        match &step.action {
            Action::Stage { host, layer } => {
                check(&hosts, &owner, "host", host)?;
                check(&layers, &owner, "layer", layer)?;
            }
            Action::Load { node } | Action::Start { node } | Action::WaitReady { node } => {
                check(&nodes, &owner, "node", node)?;
            }
        }
        for after in &step.after {
            check(&steps, &owner, "step", after)?;
        }
    }
    if let Some(cycle) = find_cycle(plan) {
        return Err(PlanError::Cycle { cycle });
    }
    let ids: Vec<&str> = plan.nodes.iter().map(|n| n.id.as_str()).collect();
    let edges: Vec<Vec<&str>> = plan
        .nodes
        .iter()
        .map(|n| n.after.iter().map(String::as_str).collect())
        .collect();
    if let Some(cycle) = cycle_in(&ids, &edges) {
        return Err(PlanError::NodeCycle { cycle });
    }
    Ok(())
}

/// How an element of the plan is named in a message: by its id when that is a label,
/// else by its position (the id itself is what is wrong).
fn owner(kind: &str, i: usize, id: &str) -> String {
    if names::is_label(id) {
        format!("{kind} `{id}`")
    } else {
        format!("{kind} #{}", i + 1)
    }
}

/// `field` of `owner` must be a label.
fn label(owner: &str, field: &str, value: &str) -> Result<(), PlanError> {
    match names::label_problem(value) {
        None if !value.is_empty() => Ok(()),
        problem => Err(invalid(
            owner,
            field,
            format!(
                "is `{}`, which {}: names that become paths are labels; {LABEL_RULE}",
                shown(value),
                problem.unwrap_or("is empty")
            ),
        )),
    }
}

fn rel_path(
    owner: &str,
    field: &str,
    value: &str,
    under: &str,
    example: &str,
) -> Result<(), PlanError> {
    match names::rel_path_problem(value, under) {
        None => Ok(()),
        Some(problem) => Err(invalid(
            owner,
            field,
            format!(
                "is `{}`, which {problem}: it must be a relative path of labels inside \
                 `{under}/`, as in `{example}`",
                shown(value)
            ),
        )),
    }
}

fn check(owner: &str, field: &str, value: &str, ok: bool, allowed: &str) -> Result<(), PlanError> {
    if ok {
        Ok(())
    } else {
        Err(invalid(
            owner,
            field,
            format!("is `{}`: {allowed}", shown(value)),
        ))
    }
}

fn at_least_one(owner: &str, field: &str, value: u64) -> Result<(), PlanError> {
    check(
        owner,
        field,
        &value.to_string(),
        value >= 1,
        "it must be at least 1",
    )
}

const ADDRESS: &str = "it must be an IP address, as in `10.20.0.5`";
const MAC: &str =
    "it must be six two-digit hexadecimal numbers separated by `:`, as in `52:54:00:12:34:56`";

/// Every value of the plan on its own: labels, paths, addresses, MACs, digests, counts.
fn values(plan: &Plan) -> Result<(), PlanError> {
    if let Some(problem) = names::store_problem(&plan.store) {
        return Err(invalid(
            "the plan",
            "store",
            format!(
                "is `{}`, which {problem}: give an absolute directory or one relative to the \
                 plan's directory, without `..`",
                shown(&plan.store)
            ),
        ));
    }
    for (i, h) in plan.hosts.iter().enumerate() {
        let o = owner("host", i, &h.name);
        at_least_one(&o, "cpu", h.cpu.into())?;
        at_least_one(&o, "overcommit", h.overcommit.into())?;
        machine(plan, &o, &h.name, h.address.as_deref(), h.link.as_ref())?;
    }
    if let Some(server) = &plan.images {
        let o = format!("the image server `{}`", shown(&server.name));
        machine(
            plan,
            &o,
            &server.name,
            server.address.as_deref(),
            Some(&server.link),
        )?;
        if matches!(server.link, crate::hostlink::HostLink::Local { .. }) {
            return Err(invalid(
                &o,
                "link",
                "is `local`: an image server is another machine, reached over SSH or Slurm",
            ));
        }
        if plan.hosts.iter().any(|h| h.name == server.name) {
            return Err(invalid(
                &o,
                "name",
                "is also a host's: name a machine of its own",
            ));
        }
    }
    for (i, c) in plan.clusters.iter().enumerate() {
        let o = owner("cluster", i, &c.name);
        label(&o, "name", &c.name)?;
        for (j, n) in c.networks.iter().enumerate() {
            let o = format!("{o}, {}", owner("network", j, &n.name));
            label(&o, "name", &n.name)?;
            let subnet = "it must be an address and a prefix length, as in `10.20.0.0/24`";
            check(&o, "subnet", &n.subnet, names::is_subnet(&n.subnet), subnet)?;
            if let Some(g) = &n.gateway {
                check(&o, "gateway", g, names::is_address(g), ADDRESS)?;
            }
            if let Some(b) = &n.bridge {
                label(&o, "bridge", b)?;
            }
        }
    }
    for (i, l) in plan.layers.iter().enumerate() {
        let o = if l
            .id
            .split_once('/')
            .is_some_and(|(c, n)| names::is_label(c) && names::is_label(n))
        {
            format!("layer `{}`", l.id)
        } else {
            format!("layer #{}", i + 1)
        };
        label(&o, "cluster", &l.cluster)?;
        label(&o, "name", &l.name)?;
        let id = format!("{}/{}", l.cluster, l.name);
        check(
            &o,
            "id",
            &l.id,
            l.id == id,
            &format!("it must be `<cluster>/<name>`, here `{}`", shown(&id)),
        )?;
        if let Some(sha) = &l.sha256 {
            let allowed = "it must be 64 lowercase hexadecimal digits";
            check(&o, "sha256", sha, names::is_sha256(sha), allowed)?;
        }
        for (ext, sum) in &l.sums {
            check(
                &o,
                "sums",
                ext,
                ["img", "vmlinuz", "initrd"].contains(&ext.as_str()),
                "the files of a layer are `img`, `vmlinuz` and `initrd`",
            )?;
            let allowed = "it must be 64 lowercase hexadecimal digits";
            let field = format!("sums.{ext}");
            check(
                &o,
                &field,
                &sum.sha256,
                names::is_sha256(&sum.sha256),
                allowed,
            )?;
        }
        if let (Some(sha), Some(img)) = (&l.sha256, l.sums.get("img")) {
            check(
                &o,
                "sums.img",
                &img.sha256,
                *sha == img.sha256,
                "the image's sha256 is the layer's own `sha256`",
            )?;
        }
        let example = |ext: &str| format!("layers/{}/{}.{ext}", l.cluster, l.name);
        for (field, value, ext) in [
            ("image", &l.image, "img"),
            ("kernel", &l.kernel, "vmlinuz"),
            ("initrd", &l.initrd, "initrd"),
        ] {
            if let Some(path) = value {
                rel_path(&o, field, path, "layers", &example(ext))?;
            }
        }
    }
    let mut dirs = HashSet::new();
    for (i, n) in plan.nodes.iter().enumerate() {
        let o = owner("node", i, &n.id);
        label(&o, "id", &n.id)?;
        label(&o, "cluster", &n.cluster)?;
        label(&o, "hostname", &n.hostname)?;
        label(&o, "role", &n.role)?;
        at_least_one(&o, "cpu", n.cpu.into())?;
        at_least_one(&o, "memory", n.memory)?;
        if let Some(cpus) = &n.cpus {
            let host_cpus = plan
                .hosts
                .iter()
                .find(|h| h.name == n.host)
                .map_or(0, |h| h.cpu);
            let distinct: HashSet<u32> = cpus.iter().copied().collect();
            if cpus.len() != n.cpu as usize
                || distinct.len() != cpus.len()
                || cpus.iter().any(|&c| c >= host_cpus)
            {
                return Err(invalid(
                    &o,
                    "cpus",
                    format!(
                        "is {cpus:?}: a pinned node names `cpu` ({}) distinct CPUs of its host, \
                         numbered from 0 below the host's {host_cpus}",
                        n.cpu
                    ),
                ));
            }
        }
        rel_path(&o, "dir", &n.dir, "nodes", &format!("nodes/{}", n.id))?;
        if !dirs.insert(n.dir.as_str()) {
            return Err(invalid(
                &o,
                "dir",
                format!(
                    "is `{}`, which another node has too: each node has a directory of its own",
                    n.dir
                ),
            ));
        }
        for (j, nic) in n.nics.iter().enumerate() {
            let o = format!("{o}, {}", owner("nic", j, &nic.name));
            label(&o, "name", &nic.name)?;
            label(&o, "network", &nic.network)?;
            check(&o, "mac", &nic.mac, names::is_mac(&nic.mac), MAC)?;
            if let Some(a) = &nic.address {
                check(&o, "address", a, names::is_address(a), ADDRESS)?;
            }
            if let Some(b) = &nic.bridge {
                label(&o, "bridge", b)?;
            }
        }
    }
    Ok(())
}

fn unique<'a>(
    kind: &'static str,
    ids: impl Iterator<Item = &'a str>,
) -> Result<HashSet<&'a str>, PlanError> {
    let mut seen = HashSet::new();
    for id in ids {
        if !seen.insert(id) {
            return Err(PlanError::Duplicate {
                kind,
                id: id.to_owned(),
            });
        }
    }
    Ok(seen)
}

/// A cycle of step ids (first id repeated at the end), found by depth-first search in
/// plan order so the same plan always reports the same cycle. References are known to
/// exist when this runs.
fn find_cycle(plan: &Plan) -> Option<Vec<String>> {
    let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
    let edges: Vec<Vec<&str>> = plan
        .steps
        .iter()
        .map(|s| s.after.iter().map(String::as_str).collect())
        .collect();
    cycle_in(&ids, &edges)
}

/// A cycle in the graph whose element `i` is `ids[i]` and waits for `edges[i]`, first
/// id repeated at the end; ids not in `ids` are ignored.
fn cycle_in(ids: &[&str], edges: &[Vec<&str>]) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let index: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, s)| (*s, i)).collect();
    let edges: Vec<Vec<usize>> = edges
        .iter()
        .map(|e| e.iter().filter_map(|a| index.get(a).copied()).collect())
        .collect();
    let mut mark = vec![Mark::New; ids.len()];
    for root in 0..ids.len() {
        if mark[root] != Mark::New {
            continue;
        }
        // An explicit stack of (element, next edge to follow) keeps deep plans off the
        // call stack.
        let mut stack = vec![(root, 0usize)];
        mark[root] = Mark::Open;
        while let Some(&mut (step, ref mut next)) = stack.last_mut() {
            if let Some(&to) = edges[step].get(*next) {
                *next += 1;
                match mark[to] {
                    Mark::New => {
                        mark[to] = Mark::Open;
                        stack.push((to, 0));
                    }
                    Mark::Open => {
                        let from = stack.iter().position(|&(s, _)| s == to).unwrap_or(0);
                        let mut cycle: Vec<String> = stack[from..]
                            .iter()
                            .map(|&(s, _)| ids[s].to_owned())
                            .collect();
                        cycle.push(ids[to].to_owned());
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                mark[step] = Mark::Done;
                stack.pop();
            }
        }
    }
    None
}
