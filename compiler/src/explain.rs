//! Explaining placement to a person: which host a node sits on and why, or why it fits
//! nowhere, told from the decisions placement records (placement runs again on the
//! model, after the previous plan when there is one, so the story is the one the
//! compiler would tell now).

use crate::model::{Model, Node};
use crate::plan::{self, human_size, Candidate, Decision, Previous};
use std::fmt::Write;
use vocc_runtime::Plan;

/// Why node `name` (an id such as `osg-worker3`, or a hostname that only one node has)
/// runs where it does, placed after `previous` (a node may stay on its host there).
/// With a plan, also says when the plan no longer matches the model. An unknown or
/// ambiguous name is an error that lists the candidates.
pub fn explain(
    model: &Model,
    previous: &Previous,
    plan: Option<&Plan>,
    name: &str,
) -> Result<String, String> {
    let node = find(model, name)?;
    let (decisions, diags) = plan::decide(model, previous);
    let (number, decision) = decisions
        .iter()
        .enumerate()
        .find(|(_, d)| d.node == node.id)
        .ok_or_else(|| format!("node `{}` has no role in its cluster", node.id))?;
    let mut out = String::new();
    let role = model
        .clusters
        .iter()
        .find(|c| c.name == decision.cluster)
        .and_then(|c| c.role(&decision.role));
    let source = role
        .map(|r| format!(", {}", r.origin.location))
        .unwrap_or_default();
    let whom = format!(
        "node `{}` (role `{}` of cluster `{}`{source})",
        decision.node, decision.role, decision.cluster
    );
    match &decision.chosen {
        Some(host) => writeln!(out, "{whom} runs on host `{host}`"),
        None => writeln!(out, "{whom} fits no host of site `{}`", model.site.name),
    }
    .ok();
    out.push('\n');
    needs(&mut out, decision);
    out.push('\n');
    let _ = writeln!(
        out,
        "it was node {} of {} to place, when the hosts had free:",
        number + 1,
        decisions.len()
    );
    table(&mut out, model, decision);
    out.push('\n');
    why(&mut out, model, decision);
    notes(
        &mut out,
        plan,
        decision,
        diags.iter().filter(|d| d.is_error()).count(),
    );
    Ok(out)
}

/// The node called `name`: by id, else by a hostname only one node has.
fn find<'a>(model: &'a Model, name: &str) -> Result<&'a Node, String> {
    let nodes: Vec<&Node> = model.clusters.iter().flat_map(|c| &c.nodes).collect();
    if let Some(node) = nodes.iter().find(|n| n.id == name) {
        return Ok(node);
    }
    let by_hostname: Vec<&&Node> = nodes.iter().filter(|n| n.hostname == name).collect();
    match by_hostname.as_slice() {
        [one] => Ok(one),
        [] => {
            let ids = nodes.iter().map(|n| n.id.as_str());
            let hostnames = nodes.iter().map(|n| n.hostname.as_str());
            let mut message = format!("no node `{name}` in the model");
            if let Some(close) = vocc_dsl::diag::suggest(name, ids.chain(hostnames)) {
                let _ = write!(message, "; did you mean `{close}`?");
            }
            if nodes.is_empty() {
                message.push_str("; it has no nodes");
            } else {
                let _ = write!(
                    message,
                    "\nthe nodes are {}",
                    quoted(nodes.iter().map(|n| &n.id))
                );
            }
            Err(message)
        }
        several => Err(format!(
            "`{name}` is the hostname of {} nodes, {}: name one by its id",
            several.len(),
            quoted(several.iter().map(|n| &n.id))
        )),
    }
}

fn quoted<S: AsRef<str>>(items: impl Iterator<Item = S>) -> String {
    let items: Vec<String> = items.map(|s| format!("`{}`", s.as_ref())).collect();
    crate::plan::join_and(&items)
}

fn needs(out: &mut String, d: &Decision) {
    let demand = &d.demand;
    let mut parts = vec![format!(
        "{} for its overlay and config drive",
        human_size(demand.overlay)
    )];
    if demand.swap > 0 {
        parts.push(format!("{} of swap", human_size(demand.swap)));
    }
    if demand.writable > 0 {
        parts.push(format!(
            "{} for its writable disks",
            human_size(demand.writable)
        ));
    }
    let _ = writeln!(
        out,
        "it needs {}, {} of memory and {} of disk ({})",
        plan::vcpus(u64::from(demand.cpu)),
        human_size(demand.memory),
        human_size(demand.disk),
        parts.join(", ")
    );
    if !demand.layers.is_empty() {
        let layers: Vec<String> = demand
            .layers
            .iter()
            .map(|(id, size)| format!("`{id}` ({})", human_size(*size)))
            .collect();
        let _ = writeln!(
            out,
            "and disk for its layers on a host that does not run them yet: {}",
            plan::join_and(&layers)
        );
    }
}

fn table(out: &mut String, model: &Model, d: &Decision) {
    let most = chosen(d).map(|c| c.free.memory);
    let rows: Vec<[String; 5]> = d
        .candidates
        .iter()
        .map(|c| {
            let verdict = verdict(model, d, c, most);
            if c.hypervisor {
                [
                    c.host.clone(),
                    c.free.cpu.to_string(),
                    human_size(c.free.memory),
                    human_size(c.free.disk),
                    verdict,
                ]
            } else {
                [c.host.clone(), "-".into(), "-".into(), "-".into(), verdict]
            }
        })
        .collect();
    let header = ["host", "vCPUs", "memory", "disk", ""].map(str::to_owned);
    let mut widths = [0usize; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::from("  ");
        for (w, cell) in widths.iter().zip(row) {
            let _ = write!(line, "{cell:<w$}  ");
        }
        line.push_str(&row[4]);
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn chosen(d: &Decision) -> Option<&Candidate> {
    let host = d.chosen.as_ref()?;
    d.candidates.iter().find(|c| &c.host == host)
}

fn verdict(model: &Model, d: &Decision, c: &Candidate, most: Option<u64>) -> String {
    if !c.hypervisor {
        let runs: Vec<&str> = model
            .site
            .hosts
            .iter()
            .find(|h| h.name == c.host)
            .map(|h| h.hypervisors.iter().map(|v| v.as_str()).collect())
            .unwrap_or_default();
        return format!(
            "does not run {} (runs {})",
            crate::model::hypervisor_name(d.hypervisor),
            runs.join(" and ")
        );
    }
    if !c.short.is_empty() {
        let short: Vec<String> = c
            .short
            .iter()
            .map(|s| {
                format!(
                    "{} short by {}",
                    s.resource.as_str(),
                    s.resource.amount(s.by())
                )
            })
            .collect();
        return short.join(", ");
    }
    let mut text = String::from("fits");
    if d.chosen.as_deref() == Some(c.host.as_str()) {
        text.push_str(": chosen");
    } else if !d.kept() && most == Some(c.free.memory) {
        text.push_str(", as much free memory but later in site order");
    }
    if c.layer_disk > 0 {
        let _ = write!(text, " (stages {} of layers)", human_size(c.layer_disk));
    }
    text
}

fn why(out: &mut String, model: &Model, d: &Decision) {
    if let Some(host) = &d.previous {
        if d.kept() {
            let _ = writeln!(
                out,
                "it stays on `{host}`, its host in the previous plan, which still has room for it"
            );
            return;
        }
        let gone = match model.site.hosts.iter().find(|h| &h.name == host) {
            None => format!("is no longer in site `{}`", model.site.name),
            Some(h) if h.hypervisor_for(d.hypervisor).is_none() => {
                format!(
                    "no longer runs `{}`",
                    crate::model::hypervisor_name(d.hypervisor)
                )
            }
            Some(_) => "no longer has room for it after the nodes that stay".to_owned(),
        };
        let _ = writeln!(
            out,
            "its host in the previous plan, `{host}`, {gone}, so it is placed again"
        );
    }
    match chosen(d) {
        Some(c) => {
            let fitting: Vec<&Candidate> = d.candidates.iter().filter(|c| c.fits()).collect();
            let ties = fitting
                .iter()
                .filter(|f| f.free.memory == c.free.memory)
                .count();
            let _ =
                writeln!(
                out,
                "placement spreads nodes: of the {} host{} it fits, `{}` had the most free memory \
                 ({}){}",
                fitting.len(),
                if fitting.len() == 1 { "" } else { "s" },
                c.host,
                human_size(c.free.memory),
                if ties > 1 { ", the first in site order of the hosts with as much" } else { "" }
            );
        }
        None => match d.best() {
            Some(best) => {
                let host = model.site.hosts.iter().find(|h| h.name == best.host);
                let text = host.map(|h| plan::shortfalls(h, best)).unwrap_or_default();
                let _ = writeln!(out, "the best host, `{}`, lacks least: {text}", best.host);
            }
            None => {
                let _ = writeln!(
                    out,
                    "no host of site `{}` runs `{}`, the hypervisor of cluster `{}`",
                    model.site.name,
                    crate::model::hypervisor_name(d.hypervisor),
                    d.cluster
                );
            }
        },
    }
}

fn notes(out: &mut String, plan: Option<&Plan>, d: &Decision, errors: usize) {
    if let Some(plan) = plan {
        match (plan.nodes.iter().find(|n| n.id == d.node), &d.chosen) {
            (None, _) => {
                let _ = writeln!(
                    out,
                    "note: the plan has no node `{}`: it is older than the model; compile it again",
                    d.node
                );
            }
            (Some(p), Some(now)) if &p.host != now => {
                let _ = writeln!(
                    out,
                    "note: the plan puts it on `{}`, but placing the model now gives `{now}`: \
                     the plan is older than the model; compile it again",
                    p.host
                );
            }
            (Some(p), None) => {
                let _ = writeln!(
                    out,
                    "note: the plan puts it on `{}`, but it fits nowhere now: the plan is older \
                     than the model",
                    p.host
                );
            }
            (Some(_), Some(_)) => {}
        }
    }
    if errors > 0 && d.chosen.is_some() {
        let _ = writeln!(
            out,
            "note: placing this model still reports {errors} error{}, so it compiles to no plan",
            if errors == 1 { "" } else { "s" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Hypervisor;
    use crate::plan::kit::*;
    use crate::plan::MIB;

    #[test]
    fn tells_where_a_node_went_and_why() {
        let model = model(vec![osg(3, 256 * MIB)], chiba(4));
        let text = explain(&model, &Previous::none(), None, "osg-worker2").unwrap();
        let expected = "\
node `osg-worker2` (role `worker` of cluster `osg`, test.voc:15:1) runs on host `c03`

it needs 1 vCPU, 360 MiB of memory and 456 MiB of disk (256 MiB for its overlay and config drive, 200 MiB of swap)
and disk for its layers on a host that does not run them yet: `osg/os` (2 GiB)

it was node 3 of 4 to place, when the hosts had free:
  host  vCPUs  memory   disk
  c01   1      160 MiB  3914 MiB  memory short by 200 MiB
  c02   1      56 MiB   6712 MiB  memory short by 304 MiB
  c03   2      416 MiB  9 GiB     fits: chosen (stages 2 GiB of layers)
  c04   2      416 MiB  9 GiB     fits, as much free memory but later in site order (stages 2 GiB of layers)

placement spreads nodes: of the 2 hosts it fits, `c03` had the most free memory (416 MiB), the first in site order of the hosts with as much
";
        assert_eq!(text, expected);
    }

    #[test]
    fn tells_why_a_node_fits_nowhere() {
        let mut site = chiba(2);
        site.hosts[1].hypervisors = vec![Hypervisor::Kvm];
        let model = model(vec![osg(1, 512 * MIB)], site);
        let text = explain(&model, &Previous::none(), None, "head").unwrap();
        assert!(text.starts_with("node `osg-head` (role `head` of cluster `osg`, test.voc:9:1) fits no host of site `chiba`\n"), "{text}");
        assert!(
            text.contains("  c02   -      -        -      does not run xen (runs kvm)\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "the best host, `c01`, lacks least: memory is short by 96 MiB (needs 512 MiB, \
                 416 MiB free after the 96 MiB reserve)"
            ),
            "{text}"
        );
    }

    #[test]
    fn finds_nodes_by_unique_hostname_and_lists_candidates_otherwise() {
        let model = model(vec![osg(2, 256 * MIB), vo("cms", 1, 256 * MIB)], roomy());
        assert!(explain(&model, &Previous::none(), None, "worker2")
            .unwrap()
            .starts_with("node `osg-worker2`"));
        assert_eq!(
            explain(&model, &Previous::none(), None, "head").unwrap_err(),
            "`head` is the hostname of 2 nodes, `osg-head` and `cms-head`: name one by its id"
        );
        assert_eq!(
            explain(&model, &Previous::none(), None, "osg-wroker1").unwrap_err(),
            "no node `osg-wroker1` in the model; did you mean `osg-worker1`?\n\
             the nodes are `osg-head`, `osg-worker1`, `osg-worker2`, `cms-head` and `cms-worker`"
        );
    }

    #[test]
    fn says_when_the_plan_is_older_than_the_model() {
        let model = model(vec![osg(2, 256 * MIB)], roomy());
        let mut plan = crate::plan::plan(&model).unwrap();
        assert!(
            !explain(&model, &Previous::none(), Some(&plan), "osg-worker1")
                .unwrap()
                .contains("note:")
        );
        plan.nodes[1].host = "c01".to_owned();
        let text = explain(&model, &Previous::none(), Some(&plan), "osg-worker1").unwrap();
        assert!(
            text.ends_with(
                "note: the plan puts it on `c01`, but placing the model now gives `c02`: the \
                 plan is older than the model; compile it again\n"
            ),
            "{text}"
        );
        plan.nodes.remove(1);
        let text = explain(&model, &Previous::none(), Some(&plan), "osg-worker1").unwrap();
        assert!(
            text.contains("note: the plan has no node `osg-worker1`"),
            "{text}"
        );
    }

    #[test]
    fn says_when_the_model_compiles_to_no_plan() {
        // The head fits nowhere; the workers are placed but no plan is written.
        let model = model(vec![osg(2, 512 * MIB)], chiba(2));
        let text = explain(&model, &Previous::none(), None, "osg-worker1").unwrap();
        assert!(
            text.ends_with(
                "note: placing this model still reports 1 error, so it compiles to no plan\n"
            ),
            "{text}"
        );
    }

    /// Two big hosts, `c01` and `c02`, with room for everything.
    fn roomy() -> crate::model::Site {
        site(
            "chiba",
            hosts("c", 2, 8, 8 * crate::plan::GIB, 80 * crate::plan::GIB),
        )
    }
}
