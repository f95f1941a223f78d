//! Reconcile on `up`, through the real binary on the sim driver: a cluster grows from
//! two workers to three and shrinks to one. Survivors keep their state and their plan
//! record, removed nodes are drained in the batch system (a drain run on the
//! controller, as `vocc exec` runs commands), stopped and reclaimed, shown as removed
//! by `status` until then, and absent afterwards; the journal holds exactly the plan's
//! nodes. A removal that fails, one that is killed, and one left by a version-1
//! journal are all finished by the next `up`.

mod runtime_fixture;

use runtime_fixture::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use vocc_runtime::plan::{BatchKind, PlanBatch, PlanDrain};

const ADDRESSES: [&str; 4] = ["10.10.0.11", "10.10.0.12", "10.10.0.13", "10.10.0.14"];
const WORKERS: [&str; 3] = ["worker1", "worker2", "worker3"];

/// The nodes of cluster `s` with `workers` workers (names never change with the count).
fn nodes_of(workers: usize) -> Vec<FixtureNode> {
    let mut nodes = vec![FixtureNode {
        role: "head",
        hostname: "head",
        address: ADDRESSES[0],
        after: vec![],
    }];
    for (i, w) in WORKERS.iter().take(workers).enumerate() {
        nodes.push(FixtureNode {
            role: "worker",
            hostname: w,
            address: ADDRESSES[i + 1],
            after: vec!["head"],
        });
    }
    nodes
}

/// Writes the plan of `workers` workers into `dir/out`, with a Slurm-like batch system
/// (controller `s-head`, compute role `worker`) when `batch`.
fn write_plan(dir: &Path, workers: usize, batch: bool) {
    let mut p = plan("s", &nodes_of(workers), "kvm", &"0".repeat(64));
    if batch {
        p.clusters[0].batch = Some(PlanBatch {
            kind: BatchKind::Slurm,
            controller: "s-head".into(),
            compute: vec!["worker".into()],
            drain: Some(PlanDrain {
                start: vec![
                    "scontrol".into(),
                    "update".into(),
                    "nodename={node}".into(),
                    "state=drain".into(),
                ],
                jobs: vec![
                    "squeue".into(),
                    "--noheader".into(),
                    "--nodelist={node}".into(),
                ],
            }),
        });
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
        .prefix("vocc-reconcile-")
        .tempdir()
        .unwrap();
    let dir = t.path().to_path_buf();
    (t, dir)
}

fn run(dir: &Path, args: &[&str], env: &[(&str, String)]) -> (Option<i32>, Value, String) {
    let mut args = args.to_vec();
    args.push("--json");
    let o = vocc(dir, &args, env);
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o.status.code(), v, text(&o.stderr))
}

/// `status` as (node, state, removed).
fn status(dir: &Path) -> Vec<(String, String, bool)> {
    let (code, v, err) = run(dir, &["status", "out"], &[]);
    assert_eq!(code, Some(0), "{err}");
    v["clusters"][0]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().to_owned(),
                n["state"].as_str().unwrap().to_owned(),
                n["removed"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

fn journal(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("out/.vocc-run/s/journal.json")).unwrap())
        .unwrap()
}

/// The ids the journal records.
fn recorded(dir: &Path) -> Vec<String> {
    journal(dir)["nodes"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The removed nodes of an `up` report, by id.
fn removed(report: &Value) -> Vec<Value> {
    report["reports"][0]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["removed"] == true)
        .cloned()
        .collect()
}

fn up(dir: &Path, env: &[(&str, String)]) -> Value {
    let (code, v, err) = run(dir, &["up", "out", "--driver", "sim"], env);
    assert_eq!(code, Some(0), "{err}{v:#}");
    v
}

#[test]
fn a_cluster_grows_from_two_workers_to_three_and_shrinks_to_one() {
    let (_t, dir) = tmp();
    write_plan(&dir, 2, true);
    up(&dir, &[]);
    let before = journal(&dir);
    assert_eq!(before["version"], 2);
    assert_eq!(
        before["nodes"]["s-worker1"]["node"]["nics"][0]["address"], "10.10.0.12",
        "the journal keeps each node as its plan placed it"
    );

    // Grow: worker3 starts, nothing is removed, the others stay as they were.
    write_plan(&dir, 3, true);
    let v = up(&dir, &[]);
    assert!(removed(&v).is_empty(), "{v:#}");
    assert_eq!(
        status(&dir),
        ["s-head", "s-worker1", "s-worker2", "s-worker3"]
            .iter()
            .map(|n| (n.to_string(), "running".to_owned(), false))
            .collect::<Vec<_>>()
    );
    let grown = journal(&dir);
    for id in ["s-head", "s-worker1", "s-worker2"] {
        assert_eq!(
            grown["nodes"][id]["node"], before["nodes"][id]["node"],
            "{id} is placed as before"
        );
    }

    // Shrink: before `up`, status shows what the plan dropped as removed, still running.
    write_plan(&dir, 1, true);
    assert_eq!(
        status(&dir),
        vec![
            ("s-head".into(), "running".into(), false),
            ("s-worker1".into(), "running".into(), false),
            ("s-worker2".into(), "running".into(), true),
            ("s-worker3".into(), "running".into(), true),
        ]
    );
    let log = dir.join("exec.log");
    let v = up(&dir, &[("VOCC_SIM_EXEC_LOG", log.display().to_string())]);
    let gone = removed(&v);
    assert_eq!(gone.len(), 2, "{v:#}");
    for (n, host) in gone.iter().zip(["worker2", "worker3"]) {
        assert_eq!(n["node"], format!("s-{host}"));
        assert_eq!(n["state"], "unstaged");
        assert!(n["error"].is_null(), "{n}");
        for phase in ["drain", "stop", "unload"] {
            assert!(n["phases"][phase].is_number(), "{phase}: {n}");
        }
        assert!(
            n["details"]["drain"]
                .as_str()
                .unwrap()
                .starts_with("drained"),
            "{n}"
        );
    }
    // The drain ran on the controller: first the drain, then the node's jobs.
    let asked: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for host in ["worker2", "worker3"] {
        let mine: Vec<&Value> = asked
            .iter()
            .filter(|a| {
                a["argv"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x.as_str().unwrap().ends_with(&format!("={host}")))
            })
            .collect();
        assert_eq!(mine.len(), 2, "{asked:?}");
        assert!(mine.iter().all(|a| a["node"] == "s-head"));
        assert_eq!(mine[0]["argv"][0], "scontrol");
        assert_eq!(mine[0]["argv"][2], format!("nodename={host}"));
        assert_eq!(mine[1]["argv"][0], "squeue");
    }
    assert_eq!(
        status(&dir),
        vec![
            ("s-head".into(), "running".into(), false),
            ("s-worker1".into(), "running".into(), false),
        ]
    );
    assert_eq!(recorded(&dir), ids(&["s-head", "s-worker1"]));
    // The text report says what happened to each removed node.
    let o = vocc(&dir, &["status", "out"], &[]);
    assert!(!text(&o.stdout).contains("worker2"));

    // Nothing left to remove: the next `up` removes nothing.
    let v = up(&dir, &[]);
    assert!(removed(&v).is_empty(), "{v:#}");
    let (code, _, err) = run(&dir, &["down", "out"], &[]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn the_text_report_lists_each_removed_node_with_its_steps() {
    let (_t, dir) = tmp();
    write_plan(&dir, 3, false);
    up(&dir, &[]);
    write_plan(&dir, 1, false);
    let o = vocc(&dir, &["up", "out"], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("removed from the plan:"), "{out}");
    for host in ["worker2", "worker3"] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("s-{host}:")))
            .unwrap_or_else(|| panic!("no line for {host}:\n{out}"));
        assert!(
            line.contains("drain") && line.contains("no batch system") && line.contains("unload"),
            "{line}"
        );
    }
}

#[test]
fn a_drain_that_outlasts_its_timeout_stops_the_node_anyway() {
    let (_t, dir) = tmp();
    write_plan(&dir, 2, true);
    up(&dir, &[]);
    write_plan(&dir, 1, true);
    let (code, v, err) = run(
        &dir,
        &["up", "out", "--drain-timeout", "1"],
        &[("VOCC_SIM_EXEC_OUT", "4711".into())],
    );
    assert_eq!(code, Some(0), "{err}{v:#}");
    let gone = removed(&v);
    assert_eq!(gone.len(), 1);
    let drain = gone[0]["details"]["drain"].as_str().unwrap();
    assert!(
        drain.contains("1 job still running after the drain timeout of 1 s"),
        "{drain}"
    );
    assert!(gone[0]["phases"]["drain"].as_f64().unwrap() >= 1000.0);
    assert_eq!(recorded(&dir), ids(&["s-head", "s-worker1"]));
}

#[test]
fn a_failed_removal_stays_known_until_the_next_up_finishes_it() {
    let (_t, dir) = tmp();
    write_plan(&dir, 3, false);
    up(&dir, &[]);
    write_plan(&dir, 1, false);
    let (code, v, _) = run(
        &dir,
        &["up", "out"],
        &[("VOCC_SIM_FAIL", "stop:s-worker3".into())],
    );
    assert_eq!(code, Some(1), "{v:#}");
    let gone = removed(&v);
    assert_eq!(gone[0]["state"], "unstaged");
    assert_eq!(gone[1]["error"]["step"], "stop:s-worker3");
    assert_eq!(gone[1]["state"], "running");
    assert_eq!(
        status(&dir),
        vec![
            ("s-head".into(), "running".into(), false),
            ("s-worker1".into(), "running".into(), false),
            ("s-worker3".into(), "running".into(), true),
        ]
    );
    let v = up(&dir, &[]);
    assert_eq!(removed(&v).len(), 1);
    assert_eq!(recorded(&dir), ids(&["s-head", "s-worker1"]));
}

#[test]
fn a_killed_reconcile_is_resumed_by_the_next_up() {
    let (_t, dir) = tmp();
    write_plan(&dir, 3, false);
    up(&dir, &[]);
    write_plan(&dir, 1, false);
    // `--until staged` runs no driver action before the removal, whose stop then takes
    // 5 s: the kill lands in the middle of it.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vocc"))
        .args(["up", "out", "--until", "staged"])
        .current_dir(&dir)
        .env("VOCC_SIM_DELAY_MS", "5000")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    let seen = status(&dir);
    assert!(
        seen.iter()
            .filter(|n| n.2)
            .map(|n| n.0.as_str())
            .eq(["s-worker2", "s-worker3"]),
        "{seen:?}"
    );
    let v = up(&dir, &[]);
    assert_eq!(removed(&v).len(), 2, "{v:#}");
    assert_eq!(status(&dir).len(), 2);
    assert_eq!(recorded(&dir), ids(&["s-head", "s-worker1"]));
}

#[test]
fn a_version_1_journal_still_loads_and_its_dropped_nodes_are_removed_by_id() {
    let (_t, dir) = tmp();
    write_plan(&dir, 2, false);
    up(&dir, &[]);
    // What an older runtime wrote: version 1, no node records.
    let path = dir.join("out/.vocc-run/s/journal.json");
    let mut j = journal(&dir);
    j["version"] = 1.into();
    for rec in j["nodes"].as_object_mut().unwrap().values_mut() {
        rec.as_object_mut().unwrap().remove("node");
    }
    std::fs::write(&path, j.to_string()).unwrap();
    write_plan(&dir, 1, false);
    assert!(status(&dir).contains(&("s-worker2".into(), "running".into(), true)));
    let v = up(&dir, &[]);
    let gone = removed(&v);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0]["node"], "s-worker2");
    assert_eq!(gone[0]["host"], "local");
    let j = journal(&dir);
    assert_eq!(j["version"], 2);
    assert_eq!(recorded(&dir), ids(&["s-head", "s-worker1"]));
    assert!(j["nodes"]["s-head"]["node"].is_object());

    // A journal newer than this runtime is refused with what to do.
    let mut j = journal(&dir);
    j["version"] = 3.into();
    std::fs::write(&path, j.to_string()).unwrap();
    let (code, _, err) = run(&dir, &["status", "out"], &[]);
    assert_ne!(code, Some(0));
    assert!(err.contains("reads versions 1 to 2"), "{err}");
}
