//! The qemu driver for real, under TCG (or KVM where it works): a head and two workers
//! booted from this machine's kernel and the fixture initramfs, reaching each other by
//! name over the cluster's L2 segment; pause, unpause, stop and down on all nodes at
//! once; and `vocc up` killed with SIGKILL at several points and run again.
//!
//! VM tests run one at a time (a machine-wide lock), each cluster on its own multicast
//! ports, and always end with `vocc down` (a guard), even when they fail.

mod runtime_fixture;

use runtime_fixture::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

fn json(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", text(&o.stdout), text(&o.stderr)))
}

fn states(status: &Value) -> Vec<(String, String, Option<String>)> {
    status["clusters"][0]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().to_owned(),
                n["state"].as_str().unwrap().to_owned(),
                n["observed"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// The qemu processes that run node `id` of the tree (by its pid file path).
fn qemus(out: &Path, cluster: &str, id: &str) -> usize {
    let pidfile = out
        .join(".vocc-run")
        .join(cluster)
        .join("nodes")
        .join(id)
        .join("qemu.pid");
    vocc_runtime::proc::find(&pidfile.to_string_lossy()).len()
}

/// Nothing of the cluster is left: no process mentions the tree, no state, no overlay.
fn assert_reclaimed(out: &Path, cluster: &str) {
    let needle = format!("{}/", out.display());
    assert_eq!(
        vocc_runtime::proc::find(&needle),
        Vec::<i32>::new(),
        "processes left"
    );
    assert!(!out.join(".vocc-run").join(cluster).exists(), "state left");
    let nodes = out.join(".vocc/store/nodes");
    let left: Vec<_> = std::fs::read_dir(&nodes)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "overlays left: {left:?}");
    let layers = out.join(".vocc/store/layers").join(cluster);
    let left: Vec<_> = std::fs::read_dir(&layers)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "staged layers left: {left:?}");
}

#[test]
fn a_cluster_boots_reaches_itself_by_name_and_goes_down() {
    let _lock = vm_lock();
    let t = tree("qa", &demo_nodes(), "kvm");
    let dir = t.dir.path().to_path_buf();
    let out = t.out.to_string_lossy().into_owned();
    let env = vec![("VOCC_MCAST_BASE", mcast_base(1))];
    let _down = Down {
        dir: dir.clone(),
        out: t.out.clone(),
        env: env.clone(),
    };

    let start = Instant::now();
    let o = vocc(&dir, &["up", &out, "--json", "--timeout", "300"], &env);
    let up = json(&o);
    assert!(
        o.status.success(),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    eprintln!("up took {:?}", start.elapsed());
    let report = &up["reports"][0];
    assert_eq!(report["driver"], "qemu");
    for n in report["nodes"].as_array().unwrap() {
        assert_eq!(n["state"], "running", "{n}");
        for phase in ["staging", "config", "define", "boot", "ready"] {
            assert!(n["phases"][phase].is_number(), "{phase} missing in {n}");
        }
    }
    // Up again: everything is there, nothing is started twice.
    let o = vocc(&dir, &["up", &out, "--json"], &env);
    assert!(o.status.success(), "{}", text(&o.stderr));
    for id in ["qa-head", "qa-worker1", "qa-worker2"] {
        assert_eq!(qemus(&t.out, "qa", id), 1, "{id}");
    }

    // Names over the cluster network, from a worker to the head and the other worker.
    let plan = format!("--plan={out}");
    for target in ["head", "worker2"] {
        let o = vocc(
            &dir,
            &[
                "exec", &plan, "worker1", "--", "ping", "-c", "1", "-W", "10", target,
            ],
            &env,
        );
        assert!(
            o.status.success(),
            "ping {target}: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        assert!(
            text(&o.stdout).contains("1 packets received"),
            "{}",
            text(&o.stdout)
        );
    }
    // Arguments arrive as they are, and the exit status comes back.
    let o = vocc(
        &dir,
        &["exec", &plan, "qa-head", "--", "echo", "a  b; $HOME `x`"],
        &env,
    );
    assert_eq!(text(&o.stdout), "a  b; $HOME `x`\n", "{}", text(&o.stderr));
    let o = vocc(
        &dir,
        &[
            "exec",
            &plan,
            "head",
            "--",
            "sh",
            "-c",
            "echo oops >&2; exit 3",
        ],
        &env,
    );
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(text(&o.stderr), "oops\n");
    let o = vocc(&dir, &["exec", &plan, "worker2", "--", "hostname"], &env);
    assert_eq!(text(&o.stdout), "worker2\n");

    let o = vocc(&dir, &["console", &plan, "head", "-n", "50"], &env);
    assert!(
        text(&o.stdout).contains("vocc: ready qa-head"),
        "{}",
        text(&o.stdout)
    );

    // Lifecycle on all nodes at once.
    let o = vocc(&dir, &["pause", &plan, "--json"], &env);
    assert!(o.status.success(), "{}", text(&o.stdout));
    let st = json(&vocc(&dir, &["status", &plan, "--json"], &env));
    for (node, state, observed) in states(&st) {
        assert_eq!(
            (state.as_str(), observed.as_deref()),
            ("paused", Some("paused")),
            "{node}"
        );
    }
    let o = vocc(&dir, &["unpause", &plan], &env);
    assert!(o.status.success(), "{}", text(&o.stdout));
    let st = json(&vocc(&dir, &["status", &plan, "--json"], &env));
    for (node, state, observed) in states(&st) {
        assert_eq!(
            (state.as_str(), observed.as_deref()),
            ("running", Some("running")),
            "{node}"
        );
    }
    let o = vocc(&dir, &["stop", &plan, "--grace", "2"], &env);
    assert!(o.status.success(), "{}", text(&o.stdout));
    let st = json(&vocc(&dir, &["status", &plan, "--json"], &env));
    for (node, state, observed) in states(&st) {
        assert_eq!(
            (state.as_str(), observed.as_deref()),
            ("stopped", Some("defined")),
            "{node}"
        );
        assert_eq!(qemus(&t.out, "qa", &node), 0);
    }
    // Start brings them back (in dependency order), then down reclaims everything.
    let o = vocc(&dir, &["start", &plan, "--role", "head"], &env);
    assert!(o.status.success(), "{}", text(&o.stdout));
    assert_eq!(qemus(&t.out, "qa", "qa-head"), 1);
    assert_eq!(qemus(&t.out, "qa", "qa-worker1"), 0);

    let o = vocc(&dir, &["down", &plan], &env);
    assert!(o.status.success(), "{}", text(&o.stdout));
    assert_reclaimed(&t.out, "qa");
    // Down again is fine.
    let o = vocc(&dir, &["down", &plan], &env);
    assert!(o.status.success(), "{}", text(&o.stdout));
}

#[test]
fn a_killed_up_resumes_and_every_node_runs_once() {
    let _lock = vm_lock();
    let t = tree("qk", &demo_nodes(), "kvm");
    let dir = t.dir.path().to_path_buf();
    let out = t.out.to_string_lossy().into_owned();
    let env = vec![("VOCC_MCAST_BASE", mcast_base(2))];
    let _down = Down {
        dir: dir.clone(),
        out: t.out.clone(),
        env: env.clone(),
    };
    let ids = ["qk-head", "qk-worker1", "qk-worker2"];
    // Kill points: while reading and staging, while loading, while the head boots,
    // while the workers boot.
    for (i, after) in [50u64, 400, 1500, 5000, 12000].iter().enumerate() {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vocc"))
            .args(["up", &out, "--timeout", "300"])
            .current_dir(&dir)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(*after));
        // SIGKILL: no chance to clean up or write the journal.
        child.kill().unwrap();
        child.wait().unwrap();
        for id in ids {
            // A qemu that was daemonizing when `up` died shows as two processes (parent
            // and child) until the parent exits: wait for that, then count.
            let mut n = qemus(&t.out, "qk", id);
            let settle = std::time::Instant::now();
            while n > 1 && settle.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(100));
                n = qemus(&t.out, "qk", id);
            }
            assert!(n <= 1, "after kill {i} at {after} ms: {n} qemus for {id}");
        }
    }
    let o = vocc(&dir, &["up", &out, "--json", "--timeout", "300"], &env);
    assert!(
        o.status.success(),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    for id in ids {
        assert_eq!(qemus(&t.out, "qk", id), 1, "{id}");
    }
    let st = json(&vocc(
        &dir,
        &["status", &format!("--plan={out}"), "--json"],
        &env,
    ));
    for (node, state, observed) in states(&st) {
        assert_eq!(
            (state.as_str(), observed.as_deref()),
            ("running", Some("running")),
            "{node}"
        );
    }
    let o = vocc(&dir, &["down", &format!("--plan={out}")], &env);
    assert!(o.status.success(), "{}", text(&o.stdout));
    assert_reclaimed(&t.out, "qk");
}
