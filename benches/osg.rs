//! The OSG cluster end to end, timed (a benchmark, not a timed test):
//! `cargo bench --bench osg`.
//!
//! `appliances/osg.voc --var workers=2` (head: NFS server, slurmctld, munge; two
//! workers: NFS mounts, slurmd) from `vocc build` to `srun -N2 hostname` answering on
//! the head, twice:
//!
//! 1. from nothing: an empty store, so the Debian layer, the kernel and every node
//!    artifact are built (target: the hand-built cluster's ~4 min);
//! 2. cached: the same store again, into a fresh output tree (target: ~2 min).
//!
//! Between them and after, `vocc down`. `VOCC_BENCH_OSG=cached` runs only the second,
//! on the tests' store (`VOCC_TEST_STORE`, default `target/vocc-test-store`). The VMs run
//! under qemu (TCG here); the cluster uses its own multicast ports.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const ENV: (&str, &str) = ("VOCC_MCAST_BASE", "47300");

fn vocc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vocc"))
        .args(args)
        .env(ENV.0, ENV.1)
        .current_dir(dir)
        .output()
        .expect("run vocc")
}

fn must(dir: &Path, args: &[&str]) -> Output {
    let o = vocc(dir, args);
    assert!(
        o.status.success(),
        "vocc {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

struct Run {
    build: Duration,
    up: Duration,
    first_job: Duration,
    total: Duration,
    ready: Vec<(String, f64)>,
}

/// Downs the cluster whatever happens.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = vocc(self.0, &["down", "--plan", "out"]);
    }
}

fn once(dir: &Path, store: &Path) -> Run {
    let _ = std::fs::remove_dir_all(dir.join("out"));
    let osg = root().join("appliances/osg.voc");
    let (osg, store) = (osg.to_string_lossy(), store.to_string_lossy());
    let t0 = Instant::now();
    must(
        dir,
        &[
            "build",
            &osg,
            "--var",
            "workers=2",
            "-o",
            "out",
            "--store",
            &store,
        ],
    );
    let build = t0.elapsed();
    let _down = Down(dir);
    let t1 = Instant::now();
    let o = must(
        dir,
        &[
            "up",
            "out",
            "--driver",
            "qemu",
            "--json",
            "--timeout",
            "900",
        ],
    );
    let up = t1.elapsed();
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("up --json");
    let ready = report["reports"][0]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["node"].as_str().unwrap_or("?").to_owned(),
                n["phases"]["ready"].as_f64().unwrap_or(f64::NAN) / 1e3,
            )
        })
        .collect();
    let t2 = Instant::now();
    let deadline = t2 + Duration::from_secs(600);
    loop {
        let o = vocc(
            dir,
            &[
                "exec",
                "--plan",
                "out",
                "--timeout",
                "120",
                "osg-head",
                "--",
                "srun",
                "-N2",
                "hostname",
            ],
        );
        let out = String::from_utf8_lossy(&o.stdout);
        if o.status.success() && out.contains("worker1") && out.contains("worker2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "srun -N2 hostname did not answer within 600 s: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let first_job = t2.elapsed();
    Run {
        build,
        up,
        first_job,
        total: t0.elapsed(),
        ready,
    }
}

fn report(name: &str, r: &Run, target: u64) {
    println!("{name}:");
    println!(
        "  vocc build                        {:>7.1} s",
        r.build.as_secs_f64()
    );
    println!(
        "  vocc up (stage, boot, ready)      {:>7.1} s",
        r.up.as_secs_f64()
    );
    for (node, s) in &r.ready {
        println!("    boot to ready {node:<18} {s:>7.1} s");
    }
    println!(
        "  then srun -N2 hostname answered   {:>7.1} s",
        r.first_job.as_secs_f64()
    );
    println!(
        "  build to first job                {:>7.1} s   (hand-built: ~{target} s)",
        r.total.as_secs_f64()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let only_cached = std::env::var("VOCC_BENCH_OSG").is_ok_and(|v| v == "cached");
    let work = root().join("target/bench-osg");
    std::fs::create_dir_all(&work).expect("create target/bench-osg");
    let dir = tempfile::tempdir_in(&work).expect("temp dir");
    let store = if only_cached {
        std::env::var_os("VOCC_TEST_STORE")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("target/vocc-test-store"))
    } else {
        let s = dir.path().join("store");
        std::fs::create_dir_all(&s).expect("create the store");
        s
    };
    if !only_cached {
        let r = once(dir.path(), &store);
        report("from nothing (empty store)", &r, 240);
    }
    let r = once(dir.path(), &store);
    report("cached (layers in the store)", &r, 120);
}
