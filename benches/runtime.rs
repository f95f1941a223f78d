//! Runtime benchmark: `up`, `pause` and `unpause` of clusters of 10, 100 and 1,000
//! nodes under the `sim` driver (no VMs), run by the real `vocc` binary on a
//! synthetic plan (a head and N-1 workers that wait for it, one layer).
//!
//! Reports, per size and operation, the best wall time of several runs of the whole
//! command (process start, reading and validating the plan, the lock, the journal,
//! scheduling, the report) and the operation's own time as its report gives it, with
//! both per node. Run with `cargo bench --bench runtime` (sizes: `-- 10 100`).
//! Target: the runtime's overhead per node stays flat across sizes (seeds: ~100 ms
//! per operation, flat).

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn vocc() -> PathBuf {
    // Cargo builds the binary (in the bench profile) before running the bench.
    PathBuf::from(env!("CARGO_BIN_EXE_vocc"))
}

/// A plan of one cluster with a head and `n - 1` workers.
fn plan(n: usize) -> Value {
    let mut nodes = Vec::new();
    let mut steps = vec![
        json!({"id": "stage:local:sim/os", "action": "stage", "host": "local",
        "layer": "sim/os", "after": [], "reaches": "staged"}),
    ];
    for i in 0..n {
        let (host, after) = if i == 0 {
            ("head".to_owned(), vec![])
        } else {
            (format!("worker{i}"), vec!["sim-head".to_owned()])
        };
        let id = format!("sim-{host}");
        let mut start_after = vec![format!("load:{id}")];
        start_after.extend(after.iter().map(|a| format!("ready:{a}")));
        steps.push(
            json!({"id": format!("load:{id}"), "action": "load", "node": id,
            "after": ["stage:local:sim/os"], "reaches": "loaded"}),
        );
        steps.push(
            json!({"id": format!("start:{id}"), "action": "start", "node": id,
            "after": start_after, "reaches": "running"}),
        );
        steps.push(
            json!({"id": format!("ready:{id}"), "action": "wait_ready", "node": id,
            "after": [format!("start:{id}")], "reaches": "running"}),
        );
        let addr = format!(
            "10.{}.{}.{}",
            20 + (i + 10) / 65536,
            ((i + 10) / 256) % 256,
            (i + 10) % 256
        );
        nodes.push(json!({
            "id": id, "cluster": "sim", "hostname": host,
            "role": if i == 0 { "head" } else { "worker" }, "index": i + 1, "host": "local",
            "cpu": 1, "memory": 134217728u64, "disk": 67108864u64, "swap": null,
            "persistence": "persistent", "root": ["sim/os"], "disks": [],
            "nics": [{"name": "eth0", "network": "private", "method": "pool", "address": addr,
                      "mac": format!("52:54:00:{:02x}:{:02x}:{:02x}", i >> 16 & 255, i >> 8 & 255, i & 255),
                      "bridge": null}],
            "after": after, "dir": format!("nodes/{id}"), "source": "bench.voc:1:1"
        }));
    }
    json!({
        "schema_version": vocc_runtime::SCHEMA_VERSION, "site": "local", "store": ".vocc/store",
        "hosts": [{"name": "local", "hypervisors": ["kvm"], "cpu": 2, "overcommit": 1000,
                   "memory": 1u64 << 50, "reserve": 0, "disk": 1u64 << 50, "address": null}],
        "clusters": [{"name": "sim", "vo": "sim", "hypervisor": "kvm", "domain": "sim",
                      "networks": [{"name": "private", "subnet": "10.0.0.0/8", "assign": "pool",
                                    "gateway": null, "bridge": null, "uplink": false}]}],
        "layers": [{"id": "sim/os", "cluster": "sim", "name": "os", "source": "busybox",
                    "size": null, "sha256": null}],
        "nodes": nodes,
        "staging": [{"host": "local", "layer": "sim/os"}],
        "steps": steps,
    })
}

/// Runs one command; returns (wall ms, the report's own total ms).
fn run(bin: &Path, dir: &Path, args: &[&str]) -> (f64, f64) {
    let t = Instant::now();
    let out = Command::new(bin)
        .args(args)
        .arg("--json")
        .current_dir(dir)
        .output()
        .expect("run vocc");
    let wall = t.elapsed().as_secs_f64() * 1e3;
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
    let own = doc["reports"][0]["total_ms"].as_f64().unwrap_or(f64::NAN);
    (wall, own)
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10, 100, 1000]
    } else {
        sizes
    };
    let bin = vocc();
    println!(
        "{:>6}  {:<8} {:>10} {:>12} {:>10} {:>12}",
        "nodes", "op", "wall ms", "wall µs/node", "own ms", "own µs/node"
    );
    for &n in &sizes {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).expect("out");
        std::fs::write(out.join("plan.json"), plan(n).to_string()).expect("plan");
        let mut best: Vec<(&str, f64, f64)> = vec![
            ("up", f64::MAX, f64::MAX),
            ("pause", f64::MAX, f64::MAX),
            ("unpause", f64::MAX, f64::MAX),
        ];
        for _ in 0..5 {
            let results = [
                run(&bin, dir.path(), &["up", "out", "--driver", "sim"]),
                run(&bin, dir.path(), &["pause"]),
                run(&bin, dir.path(), &["unpause"]),
            ];
            for (b, (wall, own)) in best.iter_mut().zip(results) {
                b.1 = b.1.min(wall);
                b.2 = b.2.min(own);
            }
            run(&bin, dir.path(), &["down"]);
        }
        for (op, wall, own) in best {
            println!(
                "{n:>6}  {op:<8} {wall:>10.1} {:>12.1} {own:>10.1} {:>12.1}",
                wall * 1e3 / n as f64,
                own * 1e3 / n as f64
            );
        }
    }
}
