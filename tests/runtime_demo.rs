//! Acceptance for the runtime on the real demo appliance: `vocc up appliances/demo.voc`
//! builds it (busybox layer, overlays, config drives), boots the head and two workers
//! under qemu and reports them ready; the nodes reach each other by name over the
//! cluster network (`vocc exec` a ping from a worker to the head and to the other
//! worker); pause, unpause, stop and down act on all nodes at once.

mod runtime_fixture;

use runtime_fixture::*;
use serde_json::Value;

fn json(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", text(&o.stdout), text(&o.stderr)))
}

fn observed(dir: &std::path::Path, env: &[(&str, String)]) -> Vec<(String, String)> {
    let st = json(&vocc(dir, &["status", "--json"], env));
    st["clusters"][0]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["state"].as_str().unwrap().to_owned(),
                n["observed"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_demo_cluster_boots_and_its_nodes_reach_each_other_by_name() {
    let _lock = vm_lock();
    let t = tempfile::Builder::new()
        .prefix("vocc-demo-")
        .tempdir()
        .unwrap();
    let dir = t.path();
    let env = vec![("VOCC_MCAST_BASE", mcast_base(3))];
    let _down = Down {
        dir: dir.to_path_buf(),
        out: dir.join("out"),
        env: env.clone(),
    };
    let demo = root().join("appliances/demo.voc");
    let o = vocc(
        dir,
        &[
            "up",
            &demo.to_string_lossy(),
            "-o",
            "out",
            "--json",
            "--timeout",
            "300",
        ],
        &env,
    );
    let up = json(&o);
    assert!(o.status.success(), "{up:#}\n{}", text(&o.stderr));
    let nodes = up["reports"][0]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for n in nodes {
        assert_eq!(n["state"], "running", "{n}");
        assert!(n["phases"]["ready"].is_number(), "{n}");
    }
    for target in ["head", "worker2"] {
        let o = vocc(
            dir,
            &[
                "exec", "worker1", "--", "ping", "-c", "1", "-W", "10", target,
            ],
            &env,
        );
        assert!(
            o.status.success(),
            "ping {target}: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
    }
    for (op, state, seen) in [
        ("pause", "paused", "paused"),
        ("unpause", "running", "running"),
        ("stop", "stopped", "defined"),
    ] {
        let o = vocc(dir, &[op, "--json"], &env);
        assert!(o.status.success(), "{op}: {}", text(&o.stdout));
        let report = json(&o);
        assert_eq!(report["reports"][0]["nodes"].as_array().unwrap().len(), 3);
        for (s, o) in observed(dir, &env) {
            assert_eq!((s.as_str(), o.as_str()), (state, seen), "after {op}");
        }
    }
    let o = vocc(dir, &["down"], &env);
    assert!(o.status.success(), "{}", text(&o.stdout));
    assert!(!dir.join("out/.vocc-run/demo").exists());
    assert!(!dir.join("out/.vocc/store/nodes").exists());
}
