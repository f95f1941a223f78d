//! The demo cluster on a site of three hosts, booted for real: the lab's hosts are
//! network namespaces with their own sshd (and slurmd); vocc on the lab's control
//! machine reaches them over SSH, or through the lab's Slurm, stages the layer, hands
//! each host its nodes, and the nodes, under qemu on different hosts, form one cluster
//! over the site's bridge: they ping each other by name, and a worker on another host
//! than the head reads and writes the head's NFS export. Pause, unpause and stop act on
//! every host at once; after `down` nothing is left on any host.

mod common;

use common::lab::Lab;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn host_program() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_vocc")).with_file_name("vocc-host");
    assert!(p.is_file(), "{} is missing", p.display());
    p
}

fn vocc(args: &[&str]) -> common::Ran {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vocc"));
    cmd.args(args);
    common::run(&mut cmd, Duration::from_secs(600))
}

fn json(ran: &common::Ran) -> Value {
    serde_json::from_str(&ran.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", ran.report()))
}

/// The lab's processes that are qemus, per host (`ip netns pids`).
fn qemus(lab: &Lab, host: &str) -> Vec<String> {
    let ns = format!("{}-{host}", lab.prefix);
    let out = Command::new("ip")
        .args(["netns", "pids", &ns])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("qemu-system"))
        })
        .map(str::to_owned)
        .collect()
}

fn states(out: &str) -> Vec<(String, String, String, String)> {
    let ran = vocc(&["status", out, "--json"]);
    assert!(ran.success(), "{}", ran.report());
    json(&ran)["clusters"][0]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().to_owned(),
                n["host"].as_str().unwrap().to_owned(),
                n["state"].as_str().unwrap().to_owned(),
                n["observed"].as_str().unwrap_or("-").to_owned(),
            )
        })
        .collect()
}

fn exec(out: &str, node: &str, argv: &[&str]) -> common::Ran {
    let mut args = vec!["exec", out, node, "--timeout", "60", "--"];
    args.extend_from_slice(argv);
    vocc(&args)
}

/// `vocc down` of a build when dropped: whatever happens in a test, nothing keeps
/// running.
struct Down(String);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = vocc(&["down", &self.0]);
    }
}

/// The demo built for the lab's site `site_file` into `LAB/out`; from here on the
/// calling thread is the lab's control machine. Returns the build and its `Down`.
fn build_demo(lab: &Lab, site_file: &str) -> (String, Down) {
    let out = lab.dir.join("out").display().to_string();
    let store = std::env::var_os("VOCC_TEST_STORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vocc-test-store"));
    let site = lab.dir.join(site_file).display().to_string();
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/appliances/demo.voc");
    let ran = vocc(&[
        "build",
        demo,
        "--site",
        &site,
        "-o",
        &out,
        "--store",
        &store.display().to_string(),
    ]);
    assert!(ran.success(), "{}", ran.report());
    lab.enter_control();
    let down = Down(out.clone());
    (out, down)
}

fn demo_on_three_hosts(name: &str, site_file: &str, options: &[&str]) {
    let _serial = common::serial();
    let program = host_program().display().to_string();
    let mut opts = vec!["--host-program", program.as_str()];
    opts.extend_from_slice(options);
    let lab = Lab::up_with(name, 3, "100mbit", &opts);
    let (out, _down) = build_demo(&lab, site_file);

    let t = Instant::now();
    let ran = vocc(&["up", &out, "--json", "--timeout", "300"]);
    let up_secs = t.elapsed().as_secs_f64();
    assert!(ran.success(), "{}", ran.report());
    let report = json(&ran);
    let nodes = report["reports"][0]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{report:#}");
    let mut host_of = std::collections::HashMap::new();
    for n in nodes {
        assert_eq!(n["state"], "running", "{n}");
        assert!(n["phases"]["ready"].is_number(), "{n}");
        host_of.insert(
            n["node"].as_str().unwrap().to_owned(),
            n["host"].as_str().unwrap().to_owned(),
        );
    }
    eprintln!("up on {name}: {up_secs:.1} s; placement {host_of:?}");
    let head_host = &host_of["demo-head"];
    let away = ["demo-worker1", "demo-worker2"]
        .into_iter()
        .find(|w| &host_of[*w] != head_host)
        .expect("a worker on another host than the head");
    let away_name = away.trim_start_matches("demo-");
    // Its console, from the host it runs on.
    let ran = vocc(&["console", &out, away_name]);
    assert!(
        ran.success() && ran.stdout.contains(&format!("vocc: ready {away}")),
        "{}",
        ran.report()
    );
    // Every node reaches the others by name, across hosts.
    for (from, to) in [
        (away_name, "head"),
        ("head", away_name),
        ("worker1", "worker2"),
        ("worker2", "worker1"),
    ] {
        let ran = exec(&out, from, &["ping", "-c", "1", "-W", "10", to]);
        assert!(ran.success(), "{from} → {to}: {}", ran.report());
    }
    // The worker away from the head writes to the head's export and reads the head's
    // writes; the head sees the worker's file in the directory it exports.
    let script = "for i in $(seq 1 60); do grep -q ' /mnt/share ' /proc/mounts && break; \
                  sleep 1; done; echo from-worker > /mnt/share/w.txt && cat /mnt/share/h.txt";
    // Root is squashed on the export (the demo's `rw` keeps NFS's default): the head
    // opens the directory to everyone, as its admin would.
    let ran = exec(
        &out,
        "head",
        &[
            "sh",
            "-c",
            "chmod 1777 /srv/share && echo from-head > /srv/share/h.txt",
        ],
    );
    assert!(ran.success(), "{}", ran.report());
    let ran = exec(&out, away_name, &["sh", "-c", script]);
    assert!(ran.success(), "{}", ran.report());
    assert!(ran.stdout.contains("from-head"), "{}", ran.report());
    let ran = exec(&out, "head", &["cat", "/srv/share/w.txt"]);
    assert!(ran.stdout.contains("from-worker"), "{}", ran.report());

    // Lifecycle operations on every host at once; each host says what it sees.
    for (op, state, seen) in [
        ("pause", "paused", "paused"),
        ("unpause", "running", "running"),
        ("stop", "stopped", "defined"),
    ] {
        let t = Instant::now();
        let ran = vocc(&[op, &out, "--json"]);
        assert!(ran.success(), "{op}: {}", ran.report());
        eprintln!("{op}: {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
        for (node, host, s, o) in states(&out) {
            assert_eq!(
                (s.as_str(), o.as_str()),
                (state, seen),
                "{node} on {host} after {op}"
            );
        }
    }
    let ran = vocc(&["up", &out, "--timeout", "300"]);
    assert!(ran.success(), "up after stop: {}", ran.report());
    let ran = vocc(&["down", &out]);
    assert!(ran.success(), "{}", ran.report());
    for host in ["h1", "h2", "h3"] {
        assert_eq!(
            lab.store_files(host),
            Vec::<String>::new(),
            "{host} keeps files"
        );
        assert_eq!(qemus(&lab, host), Vec::<String>::new(), "{host} runs qemus");
    }
}

#[test]
fn the_demo_runs_on_three_lab_hosts_over_ssh() {
    demo_on_three_hosts("run-ssh", "site.voc", &["--no-slurm"]);
}

#[test]
fn the_demo_runs_on_three_lab_hosts_through_slurm() {
    demo_on_three_hosts("run-slurm", "site-slurm.voc", &[]);
}

/// A host that cannot be reached fails its own nodes' steps, named with the host and
/// the cause; the others come up. Once the host is back, `up` again finishes: the
/// running nodes are left as they are (the same qemu, not a second one) and the missing
/// node is started.
#[test]
fn a_host_cut_off_fails_only_its_nodes_and_up_resumes_when_it_is_back() {
    let _serial = common::serial();
    let program = host_program().display().to_string();
    let lab = Lab::up_with(
        "run-cut",
        3,
        "0",
        &["--no-slurm", "--host-program", &program],
    );
    let (out, _down) = build_demo(&lab, "site.voc");
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(lab.dir.join("out/plan.json")).unwrap())
            .unwrap();
    let host_of = |id: &str| -> String {
        plan["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .unwrap()["host"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let cut = host_of("demo-worker2");
    assert_ne!(cut, host_of("demo-head"), "the head must stay reachable");
    lab.link(&cut, "down");
    let ran = vocc(&["up", &out, "--json", "--timeout", "300"]);
    assert!(!ran.success(), "{}", ran.report());
    let report = json(&ran);
    for n in report["reports"][0]["nodes"].as_array().unwrap() {
        if n["host"] == cut.as_str() {
            let message = n["error"]["message"].as_str().unwrap_or_default();
            eprintln!("{}: {}: {message}", n["node"], n["error"]["step"]);
            assert!(
                message.contains(&format!("`{cut}`")),
                "the failure names the host: {n}"
            );
        } else {
            assert_eq!(n["state"], "running", "{n}");
        }
    }
    let before: Vec<_> = states(&out);
    let pid_of = |id: &str| {
        let ran = vocc(&["status", &out, "--json"]);
        json(&ran)["clusters"][0]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node"] == id)
            .unwrap()["pid"]
            .as_i64()
    };
    let head_pid = pid_of("demo-head");
    assert!(head_pid.is_some(), "{before:?}");
    lab.link(&cut, "up");
    let ran = vocc(&["up", &out, "--json", "--timeout", "300"]);
    assert!(ran.success(), "{}", ran.report());
    for (node, host, s, o) in states(&out) {
        assert_eq!(
            (s.as_str(), o.as_str()),
            ("running", "running"),
            "{node} on {host}"
        );
    }
    assert_eq!(pid_of("demo-head"), head_pid, "the head was started again");
    assert_eq!(qemus(&lab, &host_of("demo-head")).len(), 1);
    let ran = vocc(&["down", &out]);
    assert!(ran.success(), "{}", ran.report());
    for host in ["h1", "h2", "h3"] {
        assert_eq!(
            lab.store_files(host),
            Vec::<String>::new(),
            "{host} keeps files"
        );
        assert_eq!(qemus(&lab, host), Vec::<String>::new(), "{host} runs qemus");
    }
}
