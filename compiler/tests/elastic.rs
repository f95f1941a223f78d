//! Elastic roles (`count MIN..MAX`, `idle`): the model has every node up to MAX, the
//! plan marks exactly those after MIN as standby and places them all, names, addresses
//! and MACs do not change with MIN or MAX, and `idle` is defaulted on elastic roles and
//! warned about on others.

use std::path::Path;
use vocc_compiler::model::Model;
use vocc_compiler::{compile, FsWorld, Options};
use vocc_runtime::plan::Plan;

/// A cluster whose worker role says `count {count}` (and `{extra}` besides), on a site
/// of one host with `memory` of memory.
fn appliance(count: &str, extra: &str, memory: &str) -> String {
    format!(
        r#"cluster lab {{
  network private {{ subnet 10.1.0.0/24 }}
  layer tiny {{ from busybox; size 64M }}
  role head {{ root tiny; nic eth0 private; memory 128M; scheduler slurm controller }}
  role worker {{
    count {count}
    {extra}
    root tiny; nic eth0 private; memory 128M
    scheduler slurm compute
  }}
}}
site one {{
  host h1 {{ cpu 8; memory {memory}; disk 100G; overcommit 4 }}
}}
"#
    )
}

/// Compiles `text` with `vars`: the model and its diagnostics rendered, or the
/// rendered errors.
fn model(text: &str, vars: &[(&str, &str)]) -> Result<(Model, String), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lab.voc");
    std::fs::write(&path, text).unwrap();
    let options = Options {
        vars: vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Default::default()
    };
    let c = compile(&FsWorld, &path, &options).expect("readable");
    let shown = vocc_dsl::diag::render(&c.map, &c.diags, false);
    c.model.map(|m| (m, shown.clone())).ok_or(shown)
}

fn plan(text: &str) -> Plan {
    let (m, _) = model(text, &[]).unwrap_or_else(|e| panic!("{e}"));
    vocc_compiler::plan::plan(&m).unwrap_or_else(|_| panic!("does not place"))
}

/// The plan's workers as (id, standby, address, mac, host).
fn workers(p: &Plan) -> Vec<(String, bool, String, String, String)> {
    p.nodes
        .iter()
        .filter(|n| n.role == "worker")
        .map(|n| {
            (
                n.id.clone(),
                n.standby,
                n.nics[0].address.clone().unwrap_or_default(),
                n.nics[0].mac.clone(),
                n.host.clone(),
            )
        })
        .collect()
}

#[test]
fn a_range_makes_max_nodes_and_those_after_min_standby() {
    let (m, diags) = model(&appliance("2..4", "", "8G"), &[]).unwrap();
    assert_eq!(diags, "");
    let role = m.clusters[0].role("worker").unwrap();
    assert_eq!((role.count, role.min, role.idle), (4, Some(2), Some(600)));
    let head = m.clusters[0].role("head").unwrap();
    assert_eq!((head.min, head.idle), (None, None));

    let p = plan(&appliance("2..4", "", "8G"));
    let got: Vec<(String, bool)> = workers(&p)
        .into_iter()
        .map(|(id, standby, ..)| (id, standby))
        .collect();
    assert_eq!(
        got,
        [
            ("lab-worker1".to_owned(), false),
            ("lab-worker2".to_owned(), false),
            ("lab-worker3".to_owned(), true),
            ("lab-worker4".to_owned(), true),
        ]
    );
    assert!(p.nodes.iter().all(|n| !n.host.is_empty()));
    // The plan says nothing of standby where there is none.
    let text = serde_json::to_string(&plan(&appliance("4", "", "8G"))).unwrap();
    assert!(!text.contains("standby"));
    // `MIN..MIN` is elastic in name only: no standby node.
    let p = plan(&appliance("3..3", "", "8G"));
    assert!(workers(&p).iter().all(|w| !w.1));
}

#[test]
fn names_addresses_and_macs_do_not_change_with_min_or_max() {
    let base = workers(&plan(&appliance("1..3", "", "8G")));
    for count in ["3", "2..3", "3..3", "1..5", "2..6"] {
        let other = workers(&plan(&appliance(count, "", "8G")));
        for (a, b) in base.iter().zip(&other) {
            assert_eq!((&a.0, &a.2, &a.3), (&b.0, &b.2, &b.3), "count {count}");
        }
    }
}

#[test]
fn placement_reserves_room_for_every_potential_node() {
    // Room for the head and three workers (with the host's reserve), not for five.
    let fits = appliance("1..3", "", "700M");
    let (m, _) = model(&fits, &[]).unwrap();
    assert!(vocc_compiler::plan::plan(&m).is_ok());
    let (m, _) = model(&appliance("1..5", "", "700M"), &[]).unwrap();
    assert!(
        vocc_compiler::plan::plan(&m).is_err(),
        "standby nodes need room too"
    );
}

#[test]
fn idle_takes_a_duration_and_is_warned_about_without_a_range() {
    let (m, diags) = model(&appliance("1..3", "idle 90s", "8G"), &[]).unwrap();
    assert_eq!(diags, "");
    assert_eq!(m.clusters[0].role("worker").unwrap().idle, Some(90));

    let (m, diags) = model(&appliance("3", "idle 2min", "8G"), &[]).unwrap();
    assert!(
        diags.contains("warning: `idle 2min` has no effect: role `worker` has no count range"),
        "{diags}"
    );
    assert_eq!(m.clusters[0].role("worker").unwrap().idle, None);
}

#[test]
fn a_range_and_an_idle_may_come_from_variables() {
    let text = appliance("$workers", "idle $idle", "8G").replace(
        "cluster lab",
        "let workers = 4\nlet idle = 10min\ncluster lab",
    );
    let (m, diags) = model(&text, &[("workers", "1..2"), ("idle", "30s")]).unwrap();
    assert_eq!(diags, "");
    let role = m.clusters[0].role("worker").unwrap();
    assert_eq!((role.count, role.min, role.idle), (2, Some(1), Some(30)));
}

/// The shipped elastic appliance: one worker from the start, two standby.
#[test]
fn osg_elastic_has_one_worker_and_two_standby() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let options = Options {
        site: Some(root.join("appliances/chiba.voc")),
        ..Default::default()
    };
    let c = compile(&FsWorld, &root.join("appliances/osg-elastic.voc"), &options).unwrap();
    let m = c.model.expect("compiles");
    let p = vocc_compiler::plan::plan(&m).unwrap_or_else(|_| panic!("places"));
    let got: Vec<(String, bool)> = workers(&p)
        .into_iter()
        .map(|(id, standby, ..)| (id, standby))
        .collect();
    assert_eq!(
        got,
        [
            ("osg-worker1".to_owned(), false),
            ("osg-worker2".to_owned(), true),
            ("osg-worker3".to_owned(), true),
        ]
    );
    let batch = p.clusters[0].batch.as_ref().unwrap();
    assert_eq!(batch.controller, "osg-head");
}
