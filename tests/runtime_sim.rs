//! The executor through the real binary on the sim driver (no VMs): reports and exit
//! codes, one node's failure not stopping the others, resuming after a failure or a
//! SIGKILL, propagate-only runs, node selection, the cluster lock, driver mismatches,
//! and plans refused before anything runs.

mod runtime_fixture;

use runtime_fixture::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

struct Sim {
    _dir: tempfile::TempDir,
    dir: PathBuf,
}

fn sim() -> Sim {
    let t = tempfile::Builder::new()
        .prefix("vocc-sim-")
        .tempdir()
        .unwrap();
    let dir = t.path().to_path_buf();
    let plan = plan("s", &demo_nodes(), "kvm", &"0".repeat(64));
    std::fs::create_dir_all(dir.join("out")).unwrap();
    std::fs::write(
        dir.join("out/plan.json"),
        serde_json::to_string_pretty(&plan).unwrap(),
    )
    .unwrap();
    Sim { _dir: t, dir }
}

fn run(dir: &Path, args: &[&str], env: &[(&str, String)]) -> (Option<i32>, Value, String) {
    let mut args = args.to_vec();
    args.push("--json");
    let o = vocc(dir, &args, env);
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o.status.code(), v, text(&o.stderr))
}

fn nodes(report: &Value) -> Vec<(String, String, Option<String>)> {
    report["reports"][0]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().to_owned(),
                n["state"].as_str().unwrap().to_owned(),
                n["error"]["step"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn states(dir: &Path) -> Vec<String> {
    let (_, v, _) = run(dir, &["status"], &[]);
    v["clusters"][0]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["state"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn up_reports_every_phase_and_a_table_on_a_terminal() {
    let s = sim();
    let (code, v, err) = run(&s.dir, &["up", "out", "--driver", "sim"], &[]);
    assert_eq!(code, Some(0), "{err}");
    let r = &v["reports"][0];
    assert_eq!(r["operation"], "up");
    assert!(r["processing_ms"].is_number() && r["total_ms"].is_number());
    for n in r["nodes"].as_array().unwrap() {
        for phase in ["staging", "config", "define", "boot", "ready"] {
            assert!(n["phases"][phase].is_number(), "{phase}: {n}");
        }
    }
    let o = vocc(&s.dir, &["pause", "--node", "worker1"], &[]);
    let table = text(&o.stdout);
    assert!(
        table.starts_with("pause of cluster `s` (sim driver)"),
        "{table}"
    );
    assert!(
        table.contains("s-worker1") && !table.contains("s-worker2"),
        "{table}"
    );
    assert_eq!(states(&s.dir), ["running", "paused", "running"]);
    // The journal is JSON and says the same.
    let journal: Value = serde_json::from_str(
        &std::fs::read_to_string(s.dir.join("out/.vocc-run/s/journal.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(journal["driver"], "sim");
    assert_eq!(journal["nodes"]["s-worker1"]["state"], "paused");
    assert_eq!(journal["last"]["operation"], "pause");
}

#[test]
fn a_failing_node_does_not_stop_the_others_and_up_again_resumes() {
    let s = sim();
    let fail = [("VOCC_SIM_FAIL", "start:s-worker1".to_owned())];
    let (code, v, _) = run(&s.dir, &["up", "out", "--driver", "sim"], &fail);
    assert_eq!(code, Some(1));
    assert_eq!(
        nodes(&v),
        [
            ("s-head".into(), "running".into(), None),
            (
                "s-worker1".into(),
                "loaded".into(),
                Some("start:s-worker1".into())
            ),
            ("s-worker2".into(), "running".into(), None),
        ]
    );
    let msg = v["reports"][0]["nodes"][1]["error"]["message"]
        .as_str()
        .unwrap();
    assert!(msg.contains("simulated failure of `start`"), "{msg}");
    let (code, v, _) = run(&s.dir, &["up", "out"], &[]);
    assert_eq!(code, Some(0));
    assert!(nodes(&v).iter().all(|n| n.1 == "running" && n.2.is_none()));
}

#[test]
fn when_the_head_is_not_ready_its_workers_are_not_started() {
    let s = sim();
    let fail = [("VOCC_SIM_FAIL", "ready:s-head".to_owned())];
    let (code, v, _) = run(&s.dir, &["up", "out", "--driver", "sim"], &fail);
    assert_eq!(code, Some(1));
    let r = &v["reports"][0]["nodes"];
    assert_eq!(r[0]["error"]["step"], "ready:s-head");
    for w in [1, 2] {
        assert_eq!(
            r[w]["error"]["step"],
            format!("start:{}", r[w]["node"].as_str().unwrap())
        );
        let msg = r[w]["error"]["message"].as_str().unwrap();
        assert!(msg.contains("`ready:s-head`, which failed"), "{msg}");
        assert_eq!(r[w]["state"], "loaded");
    }
}

#[test]
fn propagate_only_stops_at_the_state_asked_for() {
    let s = sim();
    let (code, _, _) = run(
        &s.dir,
        &["up", "out", "--driver", "sim", "--until", "staged"],
        &[],
    );
    assert_eq!(code, Some(0));
    assert_eq!(states(&s.dir), ["staged", "staged", "staged"]);
    run(&s.dir, &["up", "out", "--until", "loaded"], &[]);
    assert_eq!(states(&s.dir), ["loaded", "loaded", "loaded"]);
    // A worker alone brings up the head it waits for.
    let (code, v, _) = run(&s.dir, &["up", "out", "--node", "worker2"], &[]);
    assert_eq!(code, Some(0));
    assert_eq!(nodes(&v).len(), 2);
    assert_eq!(states(&s.dir), ["running", "loaded", "running"]);
    let (code, _, _) = run(&s.dir, &["stop", "--role", "worker"], &[]);
    assert_eq!(code, Some(0));
    assert_eq!(states(&s.dir), ["running", "loaded", "stopped"]);
    let (code, _, _) = run(&s.dir, &["start"], &[]);
    assert_eq!(code, Some(0));
    assert_eq!(states(&s.dir), ["running", "running", "running"]);
    let (code, _, _) = run(&s.dir, &["unstage"], &[]);
    assert_eq!(code, Some(0));
    assert_eq!(states(&s.dir), ["unstaged", "unstaged", "unstaged"]);
}

#[test]
fn unknown_roles_nodes_and_clusters_are_usage_errors() {
    let s = sim();
    run(&s.dir, &["up", "out", "--driver", "sim"], &[]);
    let (code, _, err) = run(&s.dir, &["pause", "--role", "wroker"], &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("no role `wroker`") && err.contains("`worker`"),
        "{err}"
    );
    let (code, _, err) = run(&s.dir, &["pause", "--node", "worker9"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no node `worker9`"), "{err}");
    let (code, _, err) = run(&s.dir, &["pause", "--cluster", "other"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no cluster `other`"), "{err}");
    // A cluster that runs under one driver is not taken over by another.
    let (code, _, err) = run(&s.dir, &["up", "out", "--driver", "qemu"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("runs under the `sim` driver"), "{err}");
    // Lifecycle operations need a cluster that is up.
    run(&s.dir, &["down"], &[]);
    let (code, _, err) = run(&s.dir, &["pause"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("is not up"), "{err}");
}

#[test]
fn a_plan_is_refused_before_anything_runs() {
    let s = sim();
    let path = s.dir.join("out/plan.json");
    let good = std::fs::read_to_string(&path).unwrap();
    for (bad, says) in [
        (
            good.replacen("\"schema_version\": 1", "\"schema_version\": 99", 1),
            "schema version 99",
        ),
        (
            good.replacen("\"site\":", "\"sight\": 1, \"site\":", 1),
            "unknown field `sight`",
        ),
        (
            good.replacen(
                "\"after\": [\n        \"load:s-head\"",
                "\"after\": [\n        \"load:s-nobody\"",
                1,
            ),
            "load:s-nobody",
        ),
    ] {
        assert_ne!(bad, good);
        std::fs::write(&path, &bad).unwrap();
        let (code, _, err) = run(&s.dir, &["up", "out", "--driver", "sim"], &[]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(says), "{says}: {err}");
        assert!(!s.dir.join("out/.vocc-run").exists(), "something ran");
    }
}

#[test]
fn a_second_vocc_is_refused_while_one_runs_and_a_killed_up_resumes() {
    let s = sim();
    let slow = [("VOCC_SIM_DELAY_MS", "300".to_owned())];
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vocc"))
        .args(["up", "out", "--driver", "sim"])
        .current_dir(&s.dir)
        .envs(slow.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The journal appears once `up` holds the lock; its actions take 300 ms each.
    let journal = s.dir.join("out/.vocc-run/s/journal.json");
    for _ in 0..200 {
        if journal.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    let (code, _, err) = run(&s.dir, &["pause"], &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("another vocc is working on cluster `s`"),
        "{err}"
    );
    // SIGKILL mid-run: the lock goes with the process, the journal stays readable.
    child.kill().unwrap();
    child.wait().unwrap();
    let (code, v, err) = run(&s.dir, &["up", "out"], &[]);
    assert_eq!(code, Some(0), "{err}{v:#}");
    assert!(nodes(&v).iter().all(|n| n.1 == "running"));
    let (code, _, _) = run(&s.dir, &["down"], &[]);
    assert_eq!(code, Some(0));
    let (code, _, _) = run(&s.dir, &["down"], &[]);
    assert_eq!(code, Some(0));
}

/// The sim tree with `edit` applied to its plan.
fn edited(s: &Sim, edit: impl FnOnce(&mut Value)) {
    let path = s.dir.join("out/plan.json");
    let mut plan: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut plan);
    std::fs::write(&path, serde_json::to_string_pretty(&plan).unwrap()).unwrap();
}

/// Renames the plan's one cluster everywhere it is named, as a hand edit would.
fn rename_cluster(plan: &mut Value, name: &str) {
    plan["clusters"][0]["name"] = name.into();
    for layer in plan["layers"].as_array_mut().unwrap() {
        layer["cluster"] = name.into();
    }
    for node in plan["nodes"].as_array_mut().unwrap() {
        node["cluster"] = name.into();
    }
}

#[test]
fn a_plan_cannot_reach_outside_its_place() {
    // A cluster named by an absolute path: `down` would remove `STATE/<cluster>`, which
    // is that directory.
    let s = sim();
    let victim = s.dir.join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("precious"), "keep").unwrap();
    edited(&s, |p| rename_cluster(p, victim.to_str().unwrap()));
    for driver in ["sim", "qemu"] {
        let (code, _, err) = run(&s.dir, &["down", "--plan", "out", "--driver", driver], &[]);
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.contains("cluster #1: `name`") && err.contains("not a label"),
            "{err}"
        );
        assert!(
            victim.join("precious").exists(),
            "down removed {}",
            victim.display()
        );
    }

    // A cluster named `../../victim`: `up` would put its journal and lock there.
    let s = sim();
    edited(&s, |p| rename_cluster(p, "../../victim"));
    let (code, _, err) = run(&s.dir, &["up", "out", "--driver", "sim"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("`../../victim`, which is not a label"),
        "{err}"
    );
    let outside = s.dir.join("out/.vocc-run/../../victim");
    assert!(!outside.exists(), "up wrote into {}", outside.display());
    assert!(!s.dir.join("out/.vocc-run").exists(), "something ran");

    // A layer image outside the store: unstaging removes the staged image.
    let s = sim();
    std::fs::write(s.dir.join("victim-layer.img"), "keep").unwrap();
    edited(&s, |p| {
        p["store"] = "store".into();
        p["layers"][0]["image"] = "../../victim-layer.img".into();
    });
    let (code, _, err) = run(&s.dir, &["down", "--plan", "out", "--driver", "qemu"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("layer `s/tiny`: `image` is `../../victim-layer.img`, which leaves its root"),
        "{err}"
    );
    assert!(s.dir.join("victim-layer.img").exists());

    // A node id that would print an escape sequence to the terminal.
    let s = sim();
    edited(&s, |p| p["nodes"][0]["id"] = "s-head\n\u{1b}[2J".into());
    let (code, _, err) = run(&s.dir, &["status"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
    assert!(
        err.contains("`nodes[0].id` is `s-head\\n\\u{1b}[2J`"),
        "{err}"
    );
}

#[test]
fn a_journal_that_cannot_be_saved_during_up_is_reported() {
    let s = sim();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_vocc"))
        .args(["up", "out", "--driver", "sim", "--json"])
        .current_dir(&s.dir)
        .env("VOCC_SIM_DELAY_MS", "300")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let journal = s.dir.join("out/.vocc-run/s/journal.json");
    for _ in 0..200 {
        if journal.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // A directory in the journal's place: every save until it goes fails.
    std::fs::remove_file(&journal).unwrap();
    std::fs::create_dir(&journal).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    std::fs::remove_dir(&journal).unwrap();
    let o = child.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(1), "{v:#}");
    let warning = v["reports"][0]["warnings"][0].as_str().unwrap_or_default();
    assert!(
        warning.contains("the journal could not be saved during the run")
            && warning.contains("journal.json"),
        "{v:#}"
    );
    assert!(nodes(&v).iter().all(|n| n.1 == "running"), "{v:#}");
    assert!(journal.is_file());
}

#[test]
fn two_deployments_of_one_cluster_name_do_not_share_a_store() {
    // Two output trees with a cluster `s` each, on one store.
    let s = sim();
    let store = s.dir.join("store");
    edited(&s, |p| p["store"] = store.to_str().unwrap().into());
    std::fs::create_dir_all(s.dir.join("other")).unwrap();
    std::fs::copy(s.dir.join("out/plan.json"), s.dir.join("other/plan.json")).unwrap();

    let (code, _, err) = run(&s.dir, &["up", "out", "--driver", "sim"], &[]);
    assert_eq!(code, Some(0), "{err}");
    let claims = std::fs::read_dir(store.join("deployments"))
        .unwrap()
        .count();
    for args in [
        &["up", "other", "--driver", "sim"][..],
        &["down", "other", "--driver", "sim"][..],
    ] {
        let (code, _, err) = run(&s.dir, args, &[]);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        let first = s.dir.join("out/plan.json");
        assert!(
            err.contains("another deployment of a cluster `s` is up")
                && err.contains(&format!("from the plan `{}`", first.display())),
            "{err}"
        );
        assert!(!s.dir.join("other/.vocc-run/s/journal.json").exists());
        assert_eq!(
            std::fs::read_dir(store.join("deployments"))
                .unwrap()
                .count(),
            claims
        );
    }
    assert_eq!(states(&s.dir), ["running", "running", "running"]);

    // Once the first is down, the second may come up.
    let (code, _, err) = run(&s.dir, &["down", "out"], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!store.join("deployments").exists());
    let (code, _, err) = run(&s.dir, &["up", "other", "--driver", "sim"], &[]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = run(&s.dir, &["down", "other"], &[]);
    assert_eq!(code, Some(0), "{err}");
}
