//! A site's policy for elastic clusters, read by `vocc autoscale --policy FILE`: how many
//! standby nodes (the nodes of elastic roles beyond their minimum) the site runs at
//! once over every cluster, and each VO's share of that capacity when clusters compete
//! for it (seed 002's 2:5 between the fusion and bioinformatics VOs).
//!
//! ```text
//! policy ucm {
//!   capacity 6      # standby nodes running at once, over every cluster
//!   share fusion 2  # a VO's weight when VOs compete; a VO not named weighs 1
//!   share bio 5
//! }
//! ```
//!
//! The file is read with the appliance language's parser and checked as strictly: every
//! mistake is a diagnostic with its file, line and column.

use crate::args::{Args, Vars};
use std::collections::BTreeMap;
use vocc_dsl::{Context, Diagnostic, SourceMap, Span, Stmt};

/// A checked policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    /// Standby nodes the site runs at once, over every cluster.
    pub capacity: u32,
    /// VO → weight; a VO not named weighs 1.
    pub shares: BTreeMap<String, u32>,
    /// `file:line:col` of the policy.
    pub source: String,
}

impl Policy {
    /// The weight of `vo` (1 when the policy does not name it).
    pub fn weight(&self, vo: &str) -> u32 {
        self.shares.get(vo).copied().unwrap_or(1)
    }
}

/// Reads the policy in `text` (the file `name`): the policy, or every diagnostic, which
/// `map` (holding the file) renders.
pub fn read(map: &mut SourceMap, name: &str, text: &str) -> Result<Policy, Vec<Diagnostic>> {
    let file = map.add(name, text);
    let (doc, mut diags) = vocc_dsl::parse(file, text);
    let policies: Vec<&Stmt> = doc
        .stmts
        .iter()
        .filter(|s| s.keyword.name == "policy")
        .collect();
    for s in doc.stmts.iter().filter(|s| s.keyword.name != "policy") {
        if Context::File.is_keyword(&s.keyword.name) {
            diags.push(
                Diagnostic::error(
                    s.keyword.span,
                    format!(
                        "a policy file holds a `policy` only, not a `{}`",
                        s.keyword.name
                    ),
                )
                .with_label("not part of a policy")
                .with_hint("keep clusters and sites in their own files; `vocc build` reads them"),
            );
        }
    }
    let policy = match policies.as_slice() {
        [] => {
            let span = Span::new(file, 0, 0);
            diags.push(
                Diagnostic::error(span, "the file has no `policy`")
                    .with_label("no policy")
                    .with_hint("write `policy NAME { capacity 6; share fusion 2; share bio 5 }`"),
            );
            None
        }
        [one, rest @ ..] => {
            for other in rest {
                diags.push(
                    Diagnostic::error(other.keyword.span, "a file holds one policy")
                        .with_label("second policy")
                        .with_secondary(one.keyword.span, "first policy here")
                        .with_hint("keep one policy per file"),
                );
            }
            policy(map, one, &mut diags)
        }
    };
    match policy {
        Some(p) if !diags.iter().any(Diagnostic::is_error) => Ok(p),
        _ => {
            vocc_dsl::diag::sort(&mut diags);
            Err(diags)
        }
    }
}

fn policy(map: &SourceMap, stmt: &Stmt, diags: &mut Vec<Diagnostic>) -> Option<Policy> {
    let Some((name, span)) = crate::resolve::header_name(stmt) else {
        diags.push(crate::resolve::missing_name(stmt));
        return None;
    };
    crate::resolve::check_name(diags, "policy", &name, span, None);
    if stmt.block.is_none() {
        diags.push(
            Diagnostic::error(stmt.span, format!("policy `{name}` has no block"))
                .with_label("expected `{ … }`")
                .with_hint("write `policy NAME { capacity 6; share fusion 2 }`"),
        );
        return None;
    }
    let vars = Vars::default();
    let mut capacity: Option<(u32, Span)> = None;
    let mut shares: BTreeMap<String, (u32, Span)> = BTreeMap::new();
    for s in stmt.children() {
        let kw = s.keyword.name.as_str();
        if !Context::Policy.is_keyword(kw) {
            continue;
        }
        if let Some(b) = &s.block {
            diags.push(crate::resolve::unexpected_block(s, b.span));
        }
        let mut a = Args::new(s, &vars, diags);
        match kw {
            "capacity" => {
                if let Some((n, sp)) = a.int("capacity 6", diags) {
                    if let Some((_, first)) = capacity {
                        diags.push(twice("capacity", sp, first));
                    } else if n > 100_000 {
                        diags.push(
                            Diagnostic::error(
                                sp,
                                format!("`capacity {n}` is more nodes than vocc runs"),
                            )
                            .with_label("too many")
                            .with_hint("give at most 100000 standby nodes"),
                        );
                    } else {
                        capacity = Some((n as u32, sp));
                    }
                }
            }
            "share" => {
                let vo = a.name("a VO", "share fusion 2", diags);
                let weight = a.int("share fusion 2", diags);
                if let (Some((vo, vo_span)), Some((w, w_span))) = (vo, weight) {
                    if !(1..=1000).contains(&w) {
                        diags.push(
                            Diagnostic::error(w_span, format!("`share {vo} {w}` is out of range"))
                                .with_label("not between 1 and 1000")
                                .with_hint("give a VO's weight from 1 to 1000: `share fusion 2` and `share bio 5` split the capacity 2:5"),
                        );
                    } else if let Some((_, first)) = shares.get(&vo) {
                        diags.push(twice(&format!("share {vo}"), vo_span, *first));
                    } else {
                        shares.insert(vo, (w as u32, vo_span));
                    }
                }
            }
            _ => {}
        }
        a.done(diags);
    }
    let Some((capacity, _)) = capacity else {
        diags.push(
            Diagnostic::error(span, format!("policy `{name}` does not say its `capacity`"))
                .with_label("no capacity")
                .with_hint("say how many standby nodes the site runs at once: `capacity 6`"),
        );
        return None;
    };
    Some(Policy {
        name,
        capacity,
        shares: shares.into_iter().map(|(vo, (w, _))| (vo, w)).collect(),
        source: map.locate(span).to_string(),
    })
}

fn twice(what: &str, span: Span, first: Span) -> Diagnostic {
    Diagnostic::error(span, format!("`{what}` is given twice"))
        .with_label("given again")
        .with_secondary(first, "first given here")
        .with_hint("keep one of them")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(text: &str) -> Vec<String> {
        let mut map = SourceMap::new();
        match read(&mut map, "p.voc", text) {
            Ok(p) => panic!("accepted: {p:?}"),
            Err(diags) => diags
                .iter()
                .map(|d| format!("{}: {}", map.locate(d.span), d.message))
                .collect(),
        }
    }

    #[test]
    fn a_policy_gives_capacity_and_weights() {
        let mut map = SourceMap::new();
        let p = read(
            &mut map,
            "p.voc",
            "policy ucm {\n  capacity 6\n  share fusion 2\n  share bio 5\n}\n",
        )
        .unwrap();
        assert_eq!(p.capacity, 6);
        assert_eq!(p.weight("fusion"), 2);
        assert_eq!(p.weight("bio"), 5);
        assert_eq!(p.weight("other"), 1);
        assert_eq!(p.source, "p.voc:1:8");
    }

    #[test]
    fn mistakes_point_at_their_place() {
        assert_eq!(
            messages("policy ucm {\n  share fusion 0\n  share bio five\n  capcity 3\n}\n"),
            [
                "p.voc:1:8: policy `ucm` does not say its `capacity`",
                "p.voc:2:16: `share fusion 0` is out of range",
                "p.voc:3:13: `share` needs a number, not a name",
                "p.voc:4:3: unknown key `capcity` in a policy",
            ]
        );
        assert_eq!(
            messages(
                "cluster x { }\npolicy a { capacity 1; capacity 2 }\npolicy b { capacity 1 }\n"
            ),
            [
                "p.voc:1:1: a policy file holds a `policy` only, not a `cluster`",
                "p.voc:2:33: `capacity` is given twice",
                "p.voc:3:1: a file holds one policy",
            ]
        );
        assert_eq!(messages(""), ["p.voc:1:1: the file has no `policy`"]);
    }
}
