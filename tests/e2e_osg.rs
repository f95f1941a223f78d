//! End to end: the OSG virtual cluster of seeds 000/003 (`appliances/osg.voc` with
//! `--var workers=2`), built by vocc (one Debian bookworm layer, cached in the shared
//! test store), booted under qemu by `vocc up`, and checked from inside with
//! `vocc exec`: NFS exports from the head read (and, where writable, written) by both
//! workers; Slurm with both workers idle, `srun -N2 hostname`, an `sbatch` job writing
//! into the shared export; Slurm still working after `vocc pause` / `vocc unpause`;
//! `vocc down` leaving no qemu process, socket or overlay behind.
//!
//! Run with `--nocapture` to see the timing of each stage and the per-node phases.
//! `VOCC_E2E_TEMPLATES=DIR` builds with `--templates DIR` (site overrides of the
//! generated files), to show what the test says about a cluster broken on purpose.

mod runtime_fixture;

use runtime_fixture::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// The store the image tests share (`tests/images.rs`): the Debian layer is built
/// once and survives between runs.
fn shared_store() -> PathBuf {
    std::env::var_os("VOCC_TEST_STORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/vocc-test-store"))
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", text(&o.stdout), text(&o.stderr)))
}

struct Cluster {
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Cluster {
    fn vocc(&self, args: &[&str]) -> Output {
        vocc(&self.dir, args, &self.env)
    }

    /// `vocc exec NODE -- sh -c SCRIPT`.
    fn sh(&self, node: &str, script: &str, timeout: u64) -> Output {
        let t = timeout.to_string();
        self.vocc(&["exec", node, "--timeout", &t, "--", "sh", "-c", script])
    }

    /// `srun -N2 hostname` on the head must answer with both workers' names.
    fn srun_on_both_workers(&self, what: &str) {
        let out = self.ok("head", "srun -N2 hostname", 240);
        let mut names: Vec<&str> = out.split_whitespace().collect();
        names.sort();
        assert_eq!(names, ["worker1", "worker2"], "{what} said {out}");
    }

    /// Like `sh`, but the command must succeed; returns its stdout.
    fn ok(&self, node: &str, script: &str, timeout: u64) -> String {
        let o = self.sh(node, script, timeout);
        assert!(
            o.status.success(),
            "on {node}: `{script}` failed ({}):\n--- stdout\n{}--- stderr\n{}{}",
            o.status,
            text(&o.stdout),
            text(&o.stderr),
            self.consoles(),
        );
        text(&o.stdout)
    }

    /// The last console lines of every node, for failure messages.
    fn consoles(&self) -> String {
        let mut s = String::new();
        for n in ["head", "worker1", "worker2"] {
            let o = self.vocc(&["console", n, "-n", "25"]);
            s.push_str(&format!("\n--- console of {n}\n{}", text(&o.stdout)));
        }
        s
    }

    /// Polls `script` on `node` until its stdout satisfies `done`, for up to `limit`.
    fn poll(
        &self,
        node: &str,
        script: &str,
        limit: Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            let o = self.sh(node, script, 60);
            let last = format!("{}{}", text(&o.stdout), text(&o.stderr));
            if o.status.success() && done(&text(&o.stdout)) {
                return text(&o.stdout);
            }
            if start.elapsed() >= limit {
                panic!(
                    "on {node}: `{script}` did not give what was expected within {limit:?}; \
                     last output:\n{last}{}\n--- slurm logs\n{}",
                    self.consoles(),
                    self.slurm_logs()
                );
            }
            std::thread::sleep(Duration::from_secs(3));
        }
    }

    fn slurm_logs(&self) -> String {
        let mut s = String::new();
        for (n, log) in [
            ("head", "/var/log/slurm/slurmctld.log"),
            ("worker1", "/var/log/slurm/slurmd.log"),
            ("worker2", "/var/log/slurm/slurmd.log"),
        ] {
            let o = self.sh(n, &format!("tail -n 15 {log}"), 30);
            s.push_str(&format!(
                "--- {n}:{log}\n{}{}",
                text(&o.stdout),
                text(&o.stderr)
            ));
        }
        s
    }
}

/// `sinfo` lines `NODE STATE` of the workers, e.g. `worker1 idle`.
const SINFO: &str = "sinfo -h -N -o '%N %t'";

fn both_idle(out: &str) -> bool {
    ["worker1", "worker2"].iter().all(|w| {
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [*w, "idle"])
    })
}

/// Every process whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                found.push(format!("{}: {c}", e.file_name().to_string_lossy()));
            }
        }
    }
    found
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[test]
fn the_osg_cluster_shares_nfs_and_runs_slurm_jobs_across_its_workers() {
    let _lock = vm_lock();
    let t = tempfile::Builder::new()
        .prefix("vocc-osg-")
        .tempdir()
        .unwrap();
    let dir = t.path().to_path_buf();
    let c = Cluster {
        dir: dir.clone(),
        env: vec![("VOCC_MCAST_BASE", mcast_base(0))],
    };
    let _down = Down {
        dir: dir.clone(),
        out: dir.join("out"),
        env: c.env.clone(),
    };
    let mut stages: Vec<(String, Duration)> = Vec::new();

    // Build: the Debian layer (cached in the shared store), the node artifacts.
    let osg = root().join("appliances/osg.voc");
    let store = shared_store();
    let t0 = Instant::now();
    let (osg, store) = (osg.to_string_lossy(), store.to_string_lossy());
    let mut args = vec![
        "build",
        &osg,
        "--var",
        "workers=2",
        "-o",
        "out",
        "--store",
        &store,
        "--json",
    ];
    let templates = std::env::var("VOCC_E2E_TEMPLATES").unwrap_or_default();
    if !templates.is_empty() {
        args.extend(["--templates", &templates]);
    }
    let o = c.vocc(&args);
    let build_wall = t0.elapsed();
    assert!(
        o.status.success(),
        "vocc build: {}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    // The build's progress events (stderr, one JSON object a line): layers and kernel
    // versus per-node artifacts.
    let (mut layers, mut artifacts) = (0.0, 0.0);
    for line in text(&o.stderr).lines() {
        let Ok(ev) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if ev["event"] != "done" {
            continue;
        }
        let what = ev["what"].as_str().unwrap_or("");
        let s = ev["seconds"].as_f64().unwrap_or(0.0);
        eprintln!(
            "  build: {what:<50} {s:>8.1} s  ({})",
            ev["cache"].as_str().unwrap_or("-")
        );
        if what.starts_with("layer ") || what.starts_with("kernel") {
            layers += s;
        } else {
            artifacts += s;
        }
    }
    stages.push((
        "layer build (layers + kernel; 0 when cached)".into(),
        Duration::from_secs_f64(layers),
    ));
    stages.push((
        "node artifacts (overlays, swap, config drives)".into(),
        Duration::from_secs_f64(artifacts),
    ));
    stages.push(("vocc build, wall".into(), build_wall));
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/plan.json")).unwrap()).unwrap();
    let host_store = {
        let s = PathBuf::from(plan["store"].as_str().unwrap());
        if s.is_absolute() {
            s
        } else {
            dir.join("out").join(s)
        }
    };

    // Up, under qemu.
    let t0 = Instant::now();
    let up_start = t0;
    let o = c.vocc(&[
        "up",
        "out",
        "--driver",
        "qemu",
        "--json",
        "--timeout",
        "900",
    ]);
    let up_wall = t0.elapsed();
    let up = json(&o);
    assert!(
        o.status.success(),
        "vocc up: {up:#}\n{}{}",
        text(&o.stderr),
        c.consoles()
    );
    stages.push(("vocc up, wall (stage, load, boot to ready)".into(), up_wall));
    let report = &up["reports"][0];
    let nodes = report["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{up:#}");
    eprintln!("\nvocc up: per-node phases (ms)");
    for n in nodes {
        assert_eq!(n["state"], "running", "{n}");
        assert!(n["phases"]["ready"].is_number(), "{n}");
        let all = n["phases"].as_object().unwrap();
        let mut order: Vec<&str> = ["staging", "define", "config", "boot", "ready"]
            .into_iter()
            .filter(|p| all.contains_key(*p))
            .collect();
        let rest: Vec<&str> = all
            .keys()
            .map(String::as_str)
            .filter(|k| !order.contains(k))
            .collect();
        order.extend(rest);
        let phases: Vec<String> = order
            .iter()
            .map(|k| format!("{k} {:.0}", all[*k].as_f64().unwrap_or(0.0)))
            .collect();
        eprintln!(
            "  {:<12} {}",
            n["node"].as_str().unwrap(),
            phases.join("  ")
        );
        let boot: f64 = ["boot", "ready"]
            .iter()
            .filter_map(|p| n["phases"][*p].as_f64())
            .sum();
        stages.push((
            format!("boot to ready: {}", n["node"].as_str().unwrap()),
            Duration::from_secs_f64(boot / 1e3),
        ));
    }

    // NFS: the head writes into its writable export; each worker reads it, reads the
    // read-only export, cannot write there, and writes a file back into /opt/apps.
    c.ok(
        "head",
        "mkdir -p /opt/apps/e2e && chmod 1777 /opt/apps/e2e && \
         echo from-the-head >/opt/apps/e2e/head.txt && ls /opt/vdt >/dev/null",
        60,
    );
    let vdt = c.ok("head", "ls /opt/vdt", 30);
    for w in ["worker1", "worker2"] {
        c.poll(
            w,
            "cat /opt/apps/e2e/head.txt",
            Duration::from_secs(240),
            |s| s.trim() == "from-the-head",
        );
        let mounts = c.ok(w, "grep ' nfs' /proc/mounts", 30);
        for m in [
            "10.20.0.1:/opt/vdt /opt/vdt",
            "10.20.0.1:/opt/apps /opt/apps",
        ] {
            assert!(mounts.contains(m), "{w} mounts {mounts}, not {m}");
        }
        assert_eq!(c.ok(w, "ls /opt/vdt", 30), vdt, "{w} sees another /opt/vdt");
        let o = c.sh(w, &format!("echo no >/opt/vdt/{w}.txt"), 30);
        assert!(!o.status.success(), "{w} wrote into the read-only export");
        c.ok(
            w,
            &format!("echo from-{w} >/opt/apps/e2e/{w}.txt && sync"),
            60,
        );
    }
    for w in ["worker1", "worker2"] {
        let got = c.ok("head", &format!("cat /opt/apps/e2e/{w}.txt"), 30);
        assert_eq!(got.trim(), format!("from-{w}"));
    }

    // Slurm: both workers register and are idle.
    let t0 = Instant::now();
    let sinfo = c.poll("head", SINFO, Duration::from_secs(420), both_idle);
    eprintln!("\nsinfo on the head:\n{sinfo}");
    stages.push((
        "slurm: both workers idle (after NFS checks)".into(),
        t0.elapsed(),
    ));

    let t0 = Instant::now();
    c.srun_on_both_workers("srun -N2 hostname");
    stages.push(("first job: srun -N2 hostname".into(), t0.elapsed()));
    stages.push((
        "from `vocc up` to `srun -N2 hostname` answered".into(),
        up_start.elapsed(),
    ));

    let t0 = Instant::now();
    let id = c.ok(
        "head",
        "sbatch --parsable -N1 -o /opt/apps/e2e/job-%j.out --wrap 'hostname; echo e2e-batch-done'",
        120,
    );
    let id = id.trim().to_owned();
    assert!(
        id.bytes().all(|b| b.is_ascii_digit()) && !id.is_empty(),
        "sbatch said {id}"
    );
    let got = c.poll(
        "head",
        &format!("cat /opt/apps/e2e/job-{id}.out"),
        Duration::from_secs(240),
        |s| s.contains("e2e-batch-done"),
    );
    assert!(
        got.lines()
            .next()
            .is_some_and(|h| h == "worker1" || h == "worker2"),
        "the batch job ran on {got}"
    );
    stages.push(("sbatch job, output read on the head".into(), t0.elapsed()));

    // Pause and unpause the whole cluster: Slurm still answers and a new job runs.
    for op in ["pause", "unpause"] {
        let o = c.vocc(&[op, "--json"]);
        assert!(
            o.status.success(),
            "{op}: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        let r = json(&o);
        assert_eq!(
            r["reports"][0]["nodes"].as_array().unwrap().len(),
            3,
            "{r:#}"
        );
        if op == "pause" {
            let st = json(&c.vocc(&["status", "--json"]));
            for n in st["clusters"][0]["nodes"].as_array().unwrap() {
                assert_eq!(n["observed"], "paused", "{n}");
            }
            std::thread::sleep(Duration::from_secs(5));
        }
    }
    let t0 = Instant::now();
    c.poll("head", SINFO, Duration::from_secs(300), both_idle);
    c.srun_on_both_workers("after unpause, srun -N2 hostname");
    stages.push((
        "after unpause: idle again and srun -N2".into(),
        t0.elapsed(),
    ));

    // Down: nothing left.
    let run_dir = dir.join("out/.vocc-run");
    let o = c.vocc(&["down"]);
    assert!(
        o.status.success(),
        "down: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let left = processes_mentioning(&run_dir.to_string_lossy());
    assert!(left.is_empty(), "processes left after down: {left:#?}");
    let left = processes_mentioning("-name osg-");
    assert!(left.is_empty(), "qemu left after down: {left:#?}");
    assert!(
        !run_dir.join("osg").exists(),
        "runtime state left after down"
    );
    for n in ["osg-head", "osg-worker1", "osg-worker2"] {
        let p = host_store.join("nodes").join(n);
        assert!(!p.exists(), "overlays left after down: {}", p.display());
    }
    let sockets = sockets_under(&std::env::temp_dir(), &dir);
    assert!(sockets.is_empty(), "sockets left after down: {sockets:#?}");

    eprintln!("\nstage timings:");
    for (what, d) in &stages {
        eprintln!("  {what:<50} {:>9}", secs(*d));
    }
}

/// Sockets of this cluster's nodes: under the run directory, or in the short socket
/// directories `/tmp/vocc-<uid>/<hash>/<node>/` when that path was too long.
fn sockets_under(tmp: &Path, dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut found = Vec::new();
    let mut stack = vec![dir.join("out/.vocc-run")];
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let short = tmp.join(format!("vocc-{uid}"));
    if let Ok(rd) = std::fs::read_dir(&short) {
        for e in rd.flatten() {
            if e.file_name() != "mcast" {
                for n in ["osg-head", "osg-worker1", "osg-worker2"] {
                    stack.push(e.path().join(n));
                }
            }
        }
    }
    while let Some(p) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&p) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_socket() {
                found.push(e.path());
            }
        }
    }
    found
}
