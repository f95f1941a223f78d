//! Scale: what a node costs must not grow with its cluster.
//!
//! `VOCC_SCALE_NODES=10000 cargo test --release -p vocc-compiler --test render_scale --
//! --nocapture` prints the render and write times of a cluster of that size.

mod common;

use common::{render_fixture, test_secrets};
use std::time::Instant;
use vocc_compiler::output::write_tree;
use vocc_compiler::render::{render, Rendered, Templates};

/// The bytes of the largest node's own files, and of everything shared per role.
fn own_bytes(r: &Rendered) -> usize {
    r.nodes
        .iter()
        .map(|n| {
            n.own
                .iter()
                .map(|f| r.content(f).unwrap().len())
                .sum::<usize>()
        })
        .max()
        .unwrap()
}

#[test]
fn a_node_costs_the_same_in_any_cluster() {
    let (_, _, small) = render_fixture("synthetic-100");
    let (_, _, big) = render_fixture("synthetic-1500");
    // Names and addresses grow by a few digits; nothing else may.
    let (s, b) = (own_bytes(&small), own_bytes(&big));
    assert!(
        b < s + 200,
        "a node's own files: {s} bytes at 100 nodes, {b} at 1500"
    );
    let files = |r: &Rendered| r.nodes.iter().map(|n| n.files().count()).max().unwrap();
    assert_eq!(files(&small), files(&big));
    // Shared files are stored once, whatever the size.
    let shared =
        |r: &Rendered| r.objects.len() - r.nodes.iter().map(|n| n.own.len()).sum::<usize>();
    assert_eq!(shared(&small), shared(&big));
}

#[test]
fn render_and_write_a_large_cluster() {
    let n: u32 = std::env::var("VOCC_SCALE_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let (model, plan) = common::build_fixture(&format!("synthetic-{n}"));
    let templates = Templates::embedded().unwrap();
    let secrets = test_secrets(&model);
    let out = tempfile::tempdir().unwrap();

    let t0 = Instant::now();
    let rendered = render(&model, &plan, &templates, &secrets).unwrap();
    let t1 = Instant::now();
    let written = write_tree(out.path(), &rendered, &plan, &[]).unwrap();
    let t2 = Instant::now();
    eprintln!(
        "{n} nodes: render {:.3} s, write {:.3} s, {} files, {} contents, {} objects",
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64(),
        written.files,
        written.contents,
        written.objects
    );
    assert_eq!(rendered.nodes.len(), n as usize);
    let per_node = rendered
        .nodes
        .iter()
        .map(|n| n.files().count())
        .sum::<usize>();
    assert_eq!(written.files, per_node + 1, "every node file and the plan");
    // Only the shared files are stored under objects/: hosts, slurm.conf and the
    // other files of the cluster, and the files of the workers' role.
    assert!(written.objects < 16, "{} objects", written.objects);
}
