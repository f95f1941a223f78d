//! `vocc graph`: the clusters as Graphviz DOT — roles, networks, exports and mounts.

use crate::model::{Access, Model};
use std::fmt::Write;

/// Quotes a DOT identifier or label. In a label a backslash starts an escape (`\n` a
/// line break, `\N` the node's name), so a backslash of a value is doubled and a line
/// break of the label is written `\n`.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn dot(model: &Model) -> String {
    let mut out =
        String::from("digraph vocc {\n  rankdir=LR;\n  node [fontname=\"sans-serif\"];\n");
    for c in &model.clusters {
        let _ = writeln!(out, "  subgraph {} {{", q(&format!("cluster_{}", c.name)));
        let _ = writeln!(
            out,
            "    label={};",
            q(&format!(
                "{} (vo {}, {})",
                c.name,
                c.vo,
                crate::model::hypervisor_name(c.hypervisor)
            ))
        );
        for n in &c.networks {
            let _ = writeln!(
                out,
                "    {} [shape=ellipse, label={}];",
                q(&format!("{}/net/{}", c.name, n.name)),
                q(&format!("{}\n{} {:?}", n.name, n.cidr(), n.assign).to_lowercase())
            );
        }
        for r in &c.roles {
            let sched = r.scheduler.as_ref().map_or(String::new(), |s| {
                let mut parts = Vec::new();
                if s.controller {
                    parts.push("controller");
                }
                if s.compute {
                    parts.push("compute");
                }
                if s.submit {
                    parts.push("submit");
                }
                format!("\n{} {}", s.kind.as_str(), parts.join(" "))
            });
            let _ = writeln!(
                out,
                "    {} [shape=box, label={}];",
                q(&format!("{}/role/{}", c.name, r.name)),
                q(&format!("{} ×{}{sched}", r.name, r.count))
            );
            for nic in &r.nics {
                let _ = writeln!(
                    out,
                    "    {} -> {} [dir=none, label={}];",
                    q(&format!("{}/role/{}", c.name, r.name)),
                    q(&format!("{}/net/{}", c.name, nic.network)),
                    q(&nic.name)
                );
            }
            for e in &r.exports {
                let _ = writeln!(
                    out,
                    "    {} [shape=folder, label={}];",
                    q(&format!("{}/export/{}:{}", c.name, r.name, e.path)),
                    q(&format!("{}:{} ({})", r.name, e.path, e.access.as_str()))
                );
                let _ = writeln!(
                    out,
                    "    {} -> {} [label=\"exports\"];",
                    q(&format!("{}/role/{}", c.name, r.name)),
                    q(&format!("{}/export/{}:{}", c.name, r.name, e.path))
                );
            }
        }
        for r in &c.roles {
            for m in &r.mounts {
                let style = if m.access == Access::Ro {
                    "dashed"
                } else {
                    "solid"
                };
                let _ = writeln!(
                    out,
                    "    {} -> {} [style={style}, label={}];",
                    q(&format!("{}/export/{}:{}", c.name, m.role, m.path)),
                    q(&format!("{}/role/{}", c.name, r.name)),
                    q(&format!("mount at {}", m.at))
                );
            }
        }
        out.push_str("  }\n");
    }
    out.push_str("}\n");
    out
}
