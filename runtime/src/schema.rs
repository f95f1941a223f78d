//! Reading plans: the JSON schema of the plan format, and `load_plan`, which checks a
//! plan's schema version, reads it strictly and checks that everything it refers to
//! exists before the runtime acts on any of it.
//!
//! Invariant: a `Plan` that `load_plan` returns has unique ids, no dangling reference
//! and no dependency cycle, so an executor can walk its steps without checking again.

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
    // Parse the text again rather than the value so errors carry a line and column.
    let plan: Plan = serde_json::from_str(json).map_err(|source| PlanError::Format {
        version: SCHEMA_VERSION,
        source,
    })?;
    validate(&plan)?;
    Ok(plan)
}

/// Checks the references of a plan: unique ids, every node's host, cluster and layers,
/// every staging item, every step's subject and `after`, and no dependency cycle.
pub fn validate(plan: &Plan) -> Result<(), PlanError> {
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
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let index: HashMap<&str, usize> = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let edges: Vec<Vec<usize>> = plan
        .steps
        .iter()
        .map(|s| {
            s.after
                .iter()
                .filter_map(|a| index.get(a.as_str()).copied())
                .collect()
        })
        .collect();
    let mut mark = vec![Mark::New; plan.steps.len()];
    for root in 0..plan.steps.len() {
        if mark[root] != Mark::New {
            continue;
        }
        // An explicit stack of (step, next edge to follow) keeps deep plans off the
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
                            .map(|&(s, _)| plan.steps[s].id.clone())
                            .collect();
                        cycle.push(plan.steps[to].id.clone());
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
