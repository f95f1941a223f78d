//! Elastic roles at run time, through the real binary and the runtime's API on the sim
//! driver: a plain `up` leaves standby nodes unstarted and reports them as standby;
//! `up --node` starts one; a later plain `up` leaves it running; `stop` and `unstage`
//! of that node return it to standby, and the next plain `up` neither restarts it nor
//! removes it. A rebuilt plan that makes a running node standby leaves it running; one
//! that drops a standby node removes it as any node the plan lost.

mod runtime_fixture;

use runtime_fixture::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use vocc_runtime::plan::State;
use vocc_runtime::{Op, Options, Runtime, Selection};

const ADDRESSES: [&str; 4] = ["10.10.0.11", "10.10.0.12", "10.10.0.13", "10.10.0.14"];
const WORKERS: [&str; 3] = ["worker1", "worker2", "worker3"];

/// Writes the plan of cluster `s` into `dir/out`: a head and `max` workers, those
/// after the first `min` standby nodes (as `count MIN..MAX` makes them).
fn write_plan(dir: &Path, min: usize, max: usize) {
    let mut nodes = vec![FixtureNode {
        role: "head",
        hostname: "head",
        address: ADDRESSES[0],
        after: vec![],
    }];
    for (i, w) in WORKERS.iter().take(max).enumerate() {
        nodes.push(FixtureNode {
            role: "worker",
            hostname: w,
            address: ADDRESSES[i + 1],
            after: vec!["head"],
        });
    }
    let mut p = plan("s", &nodes, "kvm", &"0".repeat(64));
    for n in &mut p.nodes {
        n.standby = WORKERS
            .iter()
            .position(|w| *w == n.hostname)
            .is_some_and(|k| k + 1 > min);
    }
    std::fs::create_dir_all(dir.join("out")).unwrap();
    std::fs::write(
        dir.join("out/plan.json"),
        serde_json::to_string_pretty(&p).unwrap(),
    )
    .unwrap();
}

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::Builder::new()
        .prefix("vocc-elastic-")
        .tempdir()
        .unwrap();
    let dir = t.path().to_path_buf();
    (t, dir)
}

fn run(dir: &Path, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let o = vocc(dir, &args, &[]);
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert_eq!(o.status.code(), Some(0), "{}{v:#}", text(&o.stderr));
    v
}

/// Nodes as (node, state, standby).
type Rows = Vec<(String, String, bool)>;

/// The nodes of the first report of `v`, and whether any was removed.
fn reported(v: &Value) -> (Rows, bool) {
    let nodes = v["reports"][0]["nodes"].as_array().unwrap();
    (
        nodes
            .iter()
            .map(|n| {
                (
                    n["node"].as_str().unwrap().to_owned(),
                    n["state"].as_str().unwrap().to_owned(),
                    n["standby"].as_bool().unwrap_or(false),
                )
            })
            .collect(),
        nodes.iter().any(|n| n["removed"] == true),
    )
}

/// `status` as rows, and the text table's state column by node.
fn status(dir: &Path) -> (Rows, Vec<(String, String)>) {
    let v = run(dir, &["status", "out"]);
    let json = v["clusters"][0]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().to_owned(),
                n["state"].as_str().unwrap().to_owned(),
                n["standby"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    let o = vocc(dir, &["status", "out"], &[]);
    let table = text(&o.stdout)
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            match cells.as_slice() {
                [node, _, _, state, ..] if node.starts_with("s-") => {
                    Some(((*node).to_owned(), (*state).to_owned()))
                }
                _ => None,
            }
        })
        .collect();
    (json, table)
}

fn rows(list: &[(&str, &str, bool)]) -> Rows {
    list.iter()
        .map(|(n, s, b)| (n.to_string(), s.to_string(), *b))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect()
}

#[test]
fn standby_nodes_start_only_when_named_and_return_to_standby_after_stop_and_unstage() {
    let (_t, dir) = tmp();
    write_plan(&dir, 1, 3);

    // A plain `up`: the head and worker1 run, worker2 and worker3 stay standby: staged
    // (the layer they would boot is on their host), never loaded.
    let (nodes, removed) = reported(&run(&dir, &["up", "out", "--driver", "sim"]));
    assert!(!removed);
    assert_eq!(
        nodes,
        rows(&[
            ("s-head", "running", false),
            ("s-worker1", "running", false),
            ("s-worker2", "staged", true),
            ("s-worker3", "staged", true),
        ])
    );
    let (json, table) = status(&dir);
    assert_eq!(
        json,
        rows(&[
            ("s-head", "running", false),
            ("s-worker1", "running", false),
            ("s-worker2", "staged", true),
            ("s-worker3", "staged", true),
        ])
    );
    assert_eq!(
        table,
        pairs(&[
            ("s-head", "running"),
            ("s-worker1", "running"),
            ("s-worker2", "standby"),
            ("s-worker3", "standby"),
        ])
    );
    // The text report of `up` says so too.
    let o = vocc(&dir, &["up", "out"], &[]);
    let out = text(&o.stdout);
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("s-worker3") && l.ends_with("standby")),
        "{out}"
    );

    // Named, a standby node starts (by host name as by id).
    let (nodes, _) = reported(&run(&dir, &["up", "out", "--node", "worker2"]));
    assert!(
        nodes.contains(&("s-worker2".into(), "running".into(), false)),
        "{nodes:?}"
    );
    assert!(!nodes.iter().any(|(n, _, _)| n == "s-worker3"), "{nodes:?}");

    // A plain `up` leaves it running and worker3 unstarted.
    let (nodes, removed) = reported(&run(&dir, &["up", "out"]));
    assert!(!removed);
    assert!(nodes.contains(&("s-worker2".into(), "running".into(), true)));
    assert!(nodes.contains(&("s-worker3".into(), "staged".into(), true)));
    let (_, table) = status(&dir);
    assert_eq!(table[2], ("s-worker2".into(), "running".into()));

    // Stop and unstage return it to standby; the others keep running.
    run(&dir, &["stop", "out", "--node", "s-worker2"]);
    run(&dir, &["unstage", "out", "--node", "s-worker2"]);
    let (json, table) = status(&dir);
    assert_eq!(json[2], ("s-worker2".into(), "unstaged".into(), true));
    assert_eq!(
        table,
        pairs(&[
            ("s-head", "running"),
            ("s-worker1", "running"),
            ("s-worker2", "standby"),
            ("s-worker3", "standby"),
        ])
    );

    // A plain `up` neither restarts nor removes it (it is staged again, as a standby
    // node is when its role's layer is on its host).
    let (nodes, removed) = reported(&run(&dir, &["up", "out"]));
    assert!(!removed, "{nodes:?}");
    assert!(nodes.contains(&("s-worker2".into(), "staged".into(), true)));
    let (json, _) = status(&dir);
    assert_eq!(json[2], ("s-worker2".into(), "staged".into(), true));
    run(&dir, &["down", "out"]);
}

/// What the site's loop does, through the API: start a standby node by naming it,
/// then stop and unstage it; plain `up`s in between never touch it.
#[test]
fn the_api_starts_a_standby_node_by_name_and_returns_it_to_standby() {
    let (_t, dir) = tmp();
    write_plan(&dir, 1, 3);
    let rt = Runtime::open(&dir.join("out"), None, Options::default()).unwrap();
    let all = Selection::default();
    let worker3 = Selection {
        nodes: vec!["s-worker3".into()],
        ..Default::default()
    };
    let state = |rt: &Runtime, id: &str| {
        rt.status("s")
            .unwrap()
            .into_iter()
            .find(|n| n.node == id)
            .map(|n| n.state)
            .unwrap()
    };

    // Not loaded: its layer may be staged on its host, nothing more.
    let standby = |s: State| matches!(s, State::Unstaged | State::Staged);
    let r = rt.up("s", State::Running, Some("sim"), &all).unwrap();
    assert!(r.ok);
    assert!(standby(state(&rt, "s-worker3")));

    // A role selection is not a name: the role's standby nodes stay standby.
    let role = Selection {
        roles: vec!["worker".into()],
        ..Default::default()
    };
    rt.up("s", State::Running, None, &role).unwrap();
    assert!(standby(state(&rt, "s-worker3")));

    let r = rt.up("s", State::Running, None, &worker3).unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!(state(&rt, "s-worker3"), State::Running);
    rt.up("s", State::Running, None, &all).unwrap();
    assert_eq!(state(&rt, "s-worker3"), State::Running);

    let r = rt.operate("s", Op::Stop, &worker3).unwrap();
    assert!(r.ok && r.nodes.len() == 1, "{r:?}");
    assert_eq!(state(&rt, "s-worker3"), State::Stopped);
    // Stopped but not unstaged is not started again by a plain `up` either.
    rt.up("s", State::Running, None, &all).unwrap();
    assert_eq!(state(&rt, "s-worker3"), State::Stopped);
    let r = rt.operate("s", Op::Unstage, &worker3).unwrap();
    assert!(r.ok, "{r:?}");
    assert_eq!(state(&rt, "s-worker3"), State::Unstaged);
    let r = rt.up("s", State::Running, None, &all).unwrap();
    assert!(r.ok && !r.nodes.iter().any(|n| n.removed), "{r:?}");
    assert!(standby(state(&rt, "s-worker3")));
    for id in ["s-head", "s-worker1"] {
        assert_eq!(state(&rt, id), State::Running, "{id}");
    }
    rt.down("s", None).unwrap();
}

#[test]
fn a_rebuilt_plan_keeps_a_running_node_that_became_standby_and_removes_one_it_lost() {
    let (_t, dir) = tmp();
    // All three workers run from the start.
    write_plan(&dir, 3, 3);
    run(&dir, &["up", "out", "--driver", "sim"]);

    // `count 1..3`: worker2 and worker3 become standby and stay running.
    write_plan(&dir, 1, 3);
    let (nodes, removed) = reported(&run(&dir, &["up", "out"]));
    assert!(!removed);
    assert!(nodes.contains(&("s-worker3".into(), "running".into(), true)));

    // `count 1..2`: worker3 leaves the plan and is removed; worker2 stays as it is.
    write_plan(&dir, 1, 2);
    let v = run(&dir, &["up", "out"]);
    let gone: Vec<&Value> = v["reports"][0]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["removed"] == true)
        .collect();
    assert_eq!(gone.len(), 1, "{v:#}");
    assert_eq!(gone[0]["node"], "s-worker3");
    let (json, _) = status(&dir);
    assert_eq!(
        json,
        rows(&[
            ("s-head", "running", false),
            ("s-worker1", "running", false),
            ("s-worker2", "running", true),
        ])
    );
    run(&dir, &["down", "out"]);
}
