//! Two VOs' clusters on the same host (seed 001, section 5.3), booted under qemu: each
//! VO's head is pinned to a CPU of its own (`cpu 1 pinned`), which its qemu process
//! and every vCPU thread keep to; the clusters' networks are their own, so a node of
//! one VO cannot reach a node of the other even at an address of the same subnet,
//! while it reaches its own cluster's nodes.

mod runtime_fixture;

use runtime_fixture::*;
use serde_json::Value;

const APPLIANCE: &str = "layer tiny { from busybox; size 64M }

cluster vo-a {
  vo \"fusion\"
  network private { subnet 10.80.0.0/24; assign static }
  role head { root tiny; cpu 1 pinned; memory 128M; nic eth0 private 10.80.0.11 }
  role worker { root tiny; cpu 1; memory 128M; nic eth0 private 10.80.0.12 }
}

cluster vo-b {
  vo \"bio\"
  network private { subnet 10.80.0.0/24; assign static }
  role head { root tiny; cpu 1 pinned; memory 128M; nic eth0 private 10.80.0.21 }
  role worker { root tiny; cpu 1; memory 128M; nic eth0 private 10.80.0.22 }
}
";

/// This machine as a site of one host with two CPUs.
const SITE: &str = "site here {
  host local { cpu 2; overcommit 4; memory 8G; disk 40G; hypervisor [kvm xen] }
}
";

/// The CPUs a process may run on, as the kernel lists them (`0`, `0-1`).
fn cpus_allowed(pid: u64) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Every thread of a process, with the CPUs it may run on.
fn threads_allowed(pid: u64) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| {
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .collect()
}

#[test]
fn two_vos_share_a_host_on_cpus_of_their_own_and_cannot_reach_each_other() {
    let _lock = vm_lock();
    let t = tempfile::Builder::new()
        .prefix("vocc-two-vos-")
        .tempdir()
        .unwrap();
    let dir = t.path();
    std::fs::write(dir.join("vos.voc"), APPLIANCE).unwrap();
    std::fs::write(dir.join("site.voc"), SITE).unwrap();
    let env = vec![("VOCC_MCAST_BASE", mcast_base(3))];
    let _down = Down {
        dir: dir.to_path_buf(),
        out: dir.join("out"),
        env: env.clone(),
    };
    let o = vocc(
        dir,
        &[
            "up",
            "vos.voc",
            "--site",
            "site.voc",
            "-o",
            "out",
            "--json",
            "--timeout",
            "300",
        ],
        &env,
    );
    let up: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert!(o.status.success(), "{up:#}\n{}", text(&o.stderr));

    // The plan gives each head a CPU of its own, and its qemu keeps to it.
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/plan.json")).unwrap()).unwrap();
    let st: Value = serde_json::from_slice(&vocc(dir, &["status", "--json"], &env).stdout).unwrap();
    let mut pinned = Vec::new();
    for cluster in st["clusters"].as_array().unwrap() {
        for n in cluster["nodes"].as_array().unwrap() {
            let id = n["node"].as_str().unwrap();
            let pid = n["pid"]
                .as_u64()
                .unwrap_or_else(|| panic!("{id} has no pid: {n}"));
            let planned = plan["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["id"] == id)
                .unwrap();
            match planned["cpus"].as_array() {
                Some(cpus) => {
                    let cpu = cpus[0].as_u64().unwrap().to_string();
                    assert_eq!(cpus_allowed(pid), cpu, "{id}'s qemu");
                    for t in threads_allowed(pid) {
                        assert_eq!(t, cpu, "a thread of {id}'s qemu");
                    }
                    pinned.push(cpu);
                }
                None => assert_ne!(cpus_allowed(pid).len(), 1, "{id} floats"),
            }
        }
    }
    pinned.sort();
    assert_eq!(pinned, ["0", "1"], "one head on each CPU");

    // Each VO reaches its own nodes, never the other's (an address of the same subnet).
    let ping = |from: &str, to: &str| {
        vocc(
            dir,
            &["exec", from, "--", "ping", "-c", "2", "-W", "3", to],
            &env,
        )
    };
    for (from, own, other) in [
        ("vo-a-head", "10.80.0.12", "10.80.0.21"),
        ("vo-b-head", "10.80.0.22", "10.80.0.11"),
    ] {
        let o = ping(from, own);
        assert!(
            o.status.success(),
            "{from} cannot reach its own worker: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        let o = ping(from, other);
        assert!(
            !o.status.success(),
            "{from} reached the other VO's node {other}: {}",
            text(&o.stdout)
        );
        assert!(
            text(&o.stdout).contains("0 packets received")
                || text(&o.stdout).contains("100% packet loss"),
            "{}",
            text(&o.stdout)
        );
    }

    let o = vocc(dir, &["down"], &env);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
}
