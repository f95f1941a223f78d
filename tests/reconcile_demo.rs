//! Reconcile on `up` with real VMs: the demo cluster (busybox, NFS from the head) grows
//! from two workers to three and shrinks to one, each time by `vocc up` of the edited
//! appliance file. The survivors keep their qemu (same pid), their names, addresses and
//! MACs, in the plan and as the guest itself sees them (`vocc exec`); the removed
//! workers are stopped and reclaimed (no qemu, no disks, no runtime files), and no
//! qemu of the cluster runs that the journal does not know.

mod runtime_fixture;

use runtime_fixture::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The demo appliance as cluster `grow`, with `workers` workers.
fn appliance(workers: usize) -> String {
    let demo = std::fs::read_to_string(root().join("appliances/demo.voc")).unwrap();
    let text = demo
        .replace(
            "cluster demo {",
            &format!("let workers = {workers}\n\ncluster grow {{"),
        )
        .replace("count 2", "count $workers");
    assert!(text.contains("count $workers"), "the demo changed: {demo}");
    text
}

fn json(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", text(&o.stdout), text(&o.stderr)))
}

/// `vocc up` of the appliance with `workers` workers; its report.
fn up(dir: &Path, workers: usize, env: &[(&str, String)]) -> Value {
    std::fs::write(dir.join("grow.voc"), appliance(workers)).unwrap();
    let o = vocc(
        dir,
        &["up", "grow.voc", "-o", "out", "--json", "--timeout", "300"],
        env,
    );
    let v = json(&o);
    assert!(o.status.success(), "{v:#}\n{}", text(&o.stderr));
    v["reports"][0].clone()
}

/// Each node's (address, MAC) in the plan.
fn placed(dir: &Path) -> BTreeMap<String, (String, String)> {
    let plan: Value =
        serde_json::from_slice(&std::fs::read(dir.join("out/plan.json")).unwrap()).unwrap();
    plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let nic = &n["nics"][0];
            (
                n["hostname"].as_str().unwrap().to_owned(),
                (
                    nic["address"].as_str().unwrap().to_owned(),
                    nic["mac"].as_str().unwrap().to_lowercase(),
                ),
            )
        })
        .collect()
}

/// Each node `status` shows: (state, pid, removed).
fn status(dir: &Path, env: &[(&str, String)]) -> BTreeMap<String, (String, i64, bool)> {
    let v = json(&vocc(dir, &["status", "--json"], env));
    v["clusters"][0]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().to_owned(),
                (
                    n["state"].as_str().unwrap().to_owned(),
                    n["pid"].as_i64().unwrap_or(0),
                    n["removed"].as_bool().unwrap_or(false),
                ),
            )
        })
        .collect()
}

/// The address and MAC of the guest's eth0, as the guest sees them.
fn inside(dir: &Path, node: &str, env: &[(&str, String)]) -> (String, String) {
    let run = |argv: &[&str]| {
        let mut args = vec!["exec", node, "--"];
        args.extend_from_slice(argv);
        let o = vocc(dir, &args, env);
        assert!(
            o.status.success(),
            "{argv:?} on {node}: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        text(&o.stdout)
    };
    let mac = run(&["cat", "/sys/class/net/eth0/address"])
        .trim()
        .to_lowercase();
    let addr = run(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    let addr = addr
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no address on {node}: {addr}"))
        .to_owned();
    (addr, mac)
}

/// The pids of the qemus of cluster `grow` on this machine.
fn qemus() -> Vec<i64> {
    let o = std::process::Command::new("pgrep")
        .args(["-f", "--", "-name grow-"])
        .output()
        .unwrap();
    let mut pids: Vec<i64> = text(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    pids.sort();
    pids
}

/// Every qemu of the cluster is one the journal knows, and the other way round.
fn only_known_qemus(dir: &Path, env: &[(&str, String)]) {
    let mut known: Vec<i64> = status(dir, env).values().map(|s| s.1).collect();
    known.sort();
    assert_eq!(qemus(), known, "qemus against the journal's nodes");
}

#[test]
fn the_demo_grows_to_three_workers_and_shrinks_to_one() {
    let _lock = vm_lock();
    let t = tempfile::Builder::new()
        .prefix("vocc-grow-")
        .tempdir()
        .unwrap();
    let dir = t.path();
    let env = vec![("VOCC_MCAST_BASE", mcast_base(4))];
    let _down = Down {
        dir: dir.to_path_buf(),
        out: dir.join("out"),
        env: env.clone(),
    };

    up(dir, 2, &env);
    let first = status(dir, &env);
    assert_eq!(first.len(), 3, "{first:?}");
    let plan2 = placed(dir);
    let seen1 = inside(dir, "worker1", &env);
    assert_eq!(seen1, plan2["worker1"], "worker1 as its plan says");
    only_known_qemus(dir, &env);

    // Grow: worker3 boots; the others keep their qemu, address and MAC.
    let r = up(dir, 3, &env);
    assert!(
        r["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["removed"].is_null()),
        "{r:#}"
    );
    let grown = status(dir, &env);
    assert_eq!(grown.len(), 4, "{grown:?}");
    for (id, s) in &first {
        assert_eq!(grown[id], *s, "{id} is the same VM");
    }
    assert_eq!(grown["grow-worker3"].0, "running");
    let plan3 = placed(dir);
    for (host, p) in &plan2 {
        assert_eq!(plan3[host], *p, "{host} keeps its address and MAC");
    }
    assert_eq!(inside(dir, "worker3", &env), plan3["worker3"]);
    only_known_qemus(dir, &env);

    // Shrink: worker2 and worker3 are stopped and reclaimed, nothing to drain.
    let r = up(dir, 1, &env);
    let removed: Vec<&Value> = r["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["removed"] == true)
        .collect();
    assert_eq!(removed.len(), 2, "{r:#}");
    for n in &removed {
        assert_eq!(n["state"], "unstaged", "{n}");
        assert!(n["phases"]["stop"].is_number() && n["phases"]["unload"].is_number());
        assert!(
            n["details"]["drain"]
                .as_str()
                .unwrap()
                .contains("no batch system"),
            "{n}"
        );
    }
    let shrunk = status(dir, &env);
    assert_eq!(
        shrunk.keys().collect::<Vec<_>>(),
        ["grow-head", "grow-worker1"],
        "{shrunk:?}"
    );
    for id in ["grow-head", "grow-worker1"] {
        assert_eq!(shrunk[id], first[id], "{id} is the same VM");
    }
    let plan1 = placed(dir);
    assert_eq!(plan1["worker1"], plan2["worker1"]);
    assert_eq!(plan1["head"], plan2["head"]);
    assert_eq!(inside(dir, "worker1", &env), seen1);
    let o = vocc(
        dir,
        &[
            "exec", "worker1", "--", "ping", "-c", "1", "-W", "10", "head",
        ],
        &env,
    );
    assert!(o.status.success(), "ping head: {}", text(&o.stderr));
    for gone in ["grow-worker2", "grow-worker3"] {
        for path in [
            format!("out/.vocc/store/nodes/{gone}"),
            format!("out/.vocc-run/grow/nodes/{gone}"),
        ] {
            assert!(!dir.join(&path).exists(), "{path} left");
        }
    }
    only_known_qemus(dir, &env);

    let o = vocc(dir, &["down"], &env);
    assert!(o.status.success(), "{}", text(&o.stdout));
    assert!(qemus().is_empty(), "qemu left after down: {:?}", qemus());
}
