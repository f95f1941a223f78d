//! End to end: the GridWay SGE cluster of seed 002 (`appliances/gridway-sge.voc` at
//! one worker per VO: `--var fusion=1 --var bio=1`, on the local site), built by vocc
//! (Debian bookworm layers with Grid Engine 8.1.9, cached in the shared test store),
//! booted under qemu by `vocc up`, and checked from inside with `vocc exec`:
//! - `qhost` lists every worker, `qstat -g c` one queue per VO, and each VO's host
//!   group holds exactly that VO's workers;
//! - a job sent to `fusion` runs on the fusion worker and one sent to `bio` on the bio
//!   worker, each writing its output into the front's NFS export, which the front
//!   reads; a member of one VO cannot send a job to the other VO's queue;
//! - after `vocc pause` / `vocc unpause` a job runs again; `vocc down` leaves nothing.
//!
//! Run with `--nocapture` to see the timing of each stage (set beside seed 002's
//! Table 2 in the project's notes). `VOCC_E2E_TEMPLATES=DIR` builds with
//! `--templates DIR`, to see what the test says about a cluster broken on purpose.

mod runtime_fixture;

use runtime_fixture::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

const NODES: [&str; 3] = ["front", "fusion1", "bio1"];

fn shared_store() -> PathBuf {
    std::env::var_os("VOCC_TEST_STORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/vocc-test-store"))
}

struct Cluster {
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Cluster {
    fn vocc(&self, args: &[&str]) -> Output {
        vocc(&self.dir, args, &self.env)
    }

    fn sh(&self, node: &str, script: &str, timeout: u64) -> Output {
        let t = timeout.to_string();
        self.vocc(&["exec", node, "--timeout", &t, "--", "sh", "-c", script])
    }

    fn ok(&self, node: &str, script: &str, timeout: u64) -> String {
        let o = self.sh(node, script, timeout);
        assert!(
            o.status.success(),
            "on {node}: `{script}` failed ({}):\n--- stdout\n{}--- stderr\n{}{}",
            o.status,
            text(&o.stdout),
            text(&o.stderr),
            self.diagnosis(),
        );
        text(&o.stdout)
    }

    /// Consoles and Grid Engine's own logs, for failure messages.
    fn diagnosis(&self) -> String {
        let mut s = String::new();
        for n in NODES {
            let o = self.vocc(&["console", n, "-n", "15"]);
            s.push_str(&format!("\n--- console of {n}\n{}", text(&o.stdout)));
        }
        for (n, log) in [
            ("front", "/var/spool/gridengine/qmaster/messages"),
            ("fusion1", "/var/spool/gridengine/execd/fusion1/messages"),
            ("bio1", "/var/spool/gridengine/execd/bio1/messages"),
        ] {
            let o = self.sh(n, &format!("tail -n 10 {log}"), 30);
            s.push_str(&format!("--- {n}:{log}\n{}", text(&o.stdout)));
        }
        s
    }

    fn poll(&self, node: &str, script: &str, limit: Duration, done: impl Fn(&str) -> bool) {
        let start = Instant::now();
        loop {
            let o = self.sh(node, script, 60);
            if o.status.success() && done(&text(&o.stdout)) {
                return;
            }
            if start.elapsed() >= limit {
                panic!(
                    "on {node}: `{script}` did not give what was expected within {limit:?}; \
                     last output:\n{}{}{}",
                    text(&o.stdout),
                    text(&o.stderr),
                    self.diagnosis()
                );
            }
            std::thread::sleep(Duration::from_secs(3));
        }
    }

    /// Submits `argv` as `user` to `queue` from the front (waiting until it is
    /// accepted: `-w e`); returns the job's output file in the export.
    fn submit(&self, user: &str, queue: &str, tag: &str) -> String {
        let out = format!("/home/{user}/{tag}.out");
        self.ok(
            "front",
            &format!(
                "su {user} -c 'cd /home/{user} && qsub -w e -q {queue} -b y -j y -o {out} hostname'"
            ),
            60,
        );
        out
    }
}

/// `qhost` lists both workers with a load (their execds report to the master).
fn both_registered(qhost: &str) -> bool {
    ["fusion1.gridway", "bio1.gridway"].iter().all(|h| {
        qhost.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(h) && f.get(1).is_some_and(|a| *a != "-")
        })
    })
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[test]
fn the_sge_cluster_runs_each_vos_jobs_on_that_vos_workers() {
    let _lock = vm_lock();
    let t = tempfile::Builder::new()
        .prefix("vocc-sge-")
        .tempdir()
        .unwrap();
    let dir = t.path().to_path_buf();
    let c = Cluster {
        dir: dir.clone(),
        env: vec![("VOCC_MCAST_BASE", mcast_base(2))],
    };
    let _down = Down {
        dir: dir.clone(),
        out: dir.join("out"),
        env: c.env.clone(),
    };
    let mut stages: Vec<(String, Duration)> = Vec::new();

    let appliance = root().join("appliances/gridway-sge.voc");
    let site = root().join("appliances/local.voc");
    let store = shared_store();
    let (appliance, site, store) = (
        appliance.to_string_lossy(),
        site.to_string_lossy(),
        store.to_string_lossy(),
    );
    let mut args = vec![
        "build", &appliance, "--site", &site, "--var", "fusion=1", "--var", "bio=1", "-o", "out",
        "--store", &store,
    ];
    let templates = std::env::var("VOCC_E2E_TEMPLATES").unwrap_or_default();
    if !templates.is_empty() {
        args.extend(["--templates", &templates]);
    }
    let t0 = Instant::now();
    let o = c.vocc(&args);
    assert!(
        o.status.success(),
        "vocc build: {}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    stages.push((
        "vocc build (layers cached after the first)".into(),
        t0.elapsed(),
    ));

    let t0 = Instant::now();
    let o = c.vocc(&["up", "out", "--json", "--timeout", "900"]);
    let up: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert!(
        o.status.success(),
        "vocc up: {up:#}\n{}{}",
        text(&o.stderr),
        c.diagnosis()
    );
    stages.push(("vocc up (stage, load, boot to ready)".into(), t0.elapsed()));
    // Each node's phases, as seed 002's Table 2 splits a deployment: staging (PT),
    // configuration (DA), define (VMB), boot to ready (VMR).
    for n in up["reports"][0]["nodes"].as_array().unwrap() {
        let p = &n["phases"];
        let ms = |k: &str| p[k].as_f64().unwrap_or(0.0);
        stages.push((
            format!(
                "  {}: staging {:.0} ms, config {:.0} ms, define {:.0} ms, boot to ready",
                n["node"].as_str().unwrap(),
                ms("staging"),
                ms("config"),
                ms("define"),
            ),
            Duration::from_secs_f64((ms("boot") + ms("ready")) / 1e3),
        ));
    }

    // Every worker's execd reports to the master.
    let t0 = Instant::now();
    c.poll("front", "qhost", Duration::from_secs(300), both_registered);
    stages.push(("both execds registered (after ready)".into(), t0.elapsed()));

    // One queue per VO, each on a host group of exactly that VO's workers.
    let queues = c.ok("front", "qstat -g c", 30);
    for q in ["fusion", "bio"] {
        assert!(
            queues
                .lines()
                .any(|l| l.split_whitespace().next() == Some(q)),
            "no queue {q}:\n{queues}"
        );
    }
    for (group, host) in [
        ("@fusionhosts", "fusion1.gridway"),
        ("@biohosts", "bio1.gridway"),
    ] {
        let g = c.ok("front", &format!("qconf -shgrp {group}"), 30);
        let hosts: Vec<&str> = g
            .lines()
            .filter_map(|l| l.strip_prefix("hostlist"))
            .flat_map(str::split_whitespace)
            .collect();
        assert_eq!(hosts, [host], "{group}:\n{g}");
    }

    // The VOs' members, as a site makes them: the same ids on every node (homes are
    // on the front's export).
    let members = "groupadd -g 3001 fusion && groupadd -g 3002 biomed && \
                   useradd -u 3001 -g fusion -d /home/alice -s /bin/sh alice && \
                   useradd -u 3002 -g biomed -d /home/bob -s /bin/sh bob";
    for n in NODES {
        c.ok(n, members, 60);
    }
    c.ok(
        "front",
        "mkdir -p /home/alice /home/bob && chown alice:fusion /home/alice && \
         chown bob:biomed /home/bob",
        30,
    );

    // Each VO's job runs on its own worker; its output reaches the front over NFS.
    let t0 = Instant::now();
    let fusion = c.submit("alice", "fusion", "first");
    let bio = c.submit("bob", "bio", "first");
    for (file, host) in [(&fusion, "fusion1"), (&bio, "bio1")] {
        c.poll(
            "front",
            &format!("cat {file}"),
            Duration::from_secs(240),
            |s| s.trim() == host,
        );
    }
    stages.push((
        "a job per VO, output read on the front".into(),
        t0.elapsed(),
    ));
    // Not into the other VO's queue.
    let o = c.sh(
        "front",
        "su alice -c 'cd /home/alice && qsub -w e -q bio -b y -j y -o /home/alice/no.out hostname'",
        60,
    );
    assert!(
        !o.status.success(),
        "a fusion member sent a job to the bio queue: {}",
        text(&o.stdout)
    );

    // Pause and unpause: Grid Engine runs jobs again.
    for op in ["pause", "unpause"] {
        let o = c.vocc(&[op, "--json"]);
        assert!(
            o.status.success(),
            "{op}: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        if op == "pause" {
            std::thread::sleep(Duration::from_secs(5));
        }
    }
    let t0 = Instant::now();
    let again = c.submit("alice", "fusion", "again");
    c.poll(
        "front",
        &format!("cat {again}"),
        Duration::from_secs(300),
        |s| s.trim() == "fusion1",
    );
    stages.push(("after unpause: a fusion job again".into(), t0.elapsed()));

    let run_dir = dir.join("out/.vocc-run");
    let o = c.vocc(&["down"]);
    assert!(
        o.status.success(),
        "down: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert!(
        !run_dir.join("gridway").exists(),
        "runtime state left after down"
    );
    let qemus = std::process::Command::new("pgrep")
        .args(["-f", "-a", "--", "-name gridway-"])
        .output()
        .unwrap();
    assert!(
        text(&qemus.stdout).trim().is_empty(),
        "qemu left after down: {}",
        text(&qemus.stdout)
    );

    eprintln!("\nstage timings:");
    for (what, d) in &stages {
        eprintln!("  {what:<50} {:>9}", secs(*d));
    }
}
