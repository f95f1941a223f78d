//! End to end: an elastic OSG cluster (`appliances/osg-elastic.voc`: the head, worker1,
//! and two standby workers) grows when a job needs more nodes than are up and shrinks
//! after its idle time, under qemu, with `vocc autoscale` as the site's loop and a
//! policy file. Slurm knows the standby workers as powered-down cloud nodes; a job for
//! three nodes makes it power two up; the loop starts them, the job runs on all three,
//! and once they have been idle for the role's `idle` Slurm powers them down and the
//! loop stops and reclaims them.
//!
//! Run with `--nocapture` for the timings (submission to the job running on grown
//! nodes, beside seed 002's two minutes to add a worker).

mod runtime_fixture;

use runtime_fixture::*;
use serde_json::Value;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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

    fn sh(&self, node: &str, script: &str) -> Output {
        self.vocc(&["exec", node, "--timeout", "60", "--", "sh", "-c", script])
    }

    fn ok(&self, node: &str, script: &str) -> String {
        let o = self.sh(node, script);
        assert!(
            o.status.success(),
            "on {node}: `{script}`: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        text(&o.stdout)
    }

    /// Polls until `done` holds for `script`'s output on the head, for up to `limit`.
    fn poll(&self, script: &str, limit: Duration, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let o = self.sh("head", script);
            if o.status.success() && done(&text(&o.stdout)) {
                return text(&o.stdout);
            }
            assert!(
                start.elapsed() < limit,
                "`{script}` did not give what was expected within {limit:?}: {}{}",
                text(&o.stdout),
                text(&o.stderr)
            );
            std::thread::sleep(Duration::from_secs(3));
        }
    }

    /// Nodes the journal has running.
    fn running(&self) -> Vec<String> {
        let st: Value = serde_json::from_slice(&self.vocc(&["status", "--json"]).stdout).unwrap();
        st["clusters"][0]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["state"] == "running")
            .map(|n| n["node"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// `sinfo` states by node: `worker2 idle~`.
fn states(sinfo: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = sinfo
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_owned(), w.next()?.to_owned()))
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The autoscaler, running as a site would run it, killed when the test ends.
struct Loop(Child);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_elastic_cluster_grows_for_a_job_and_shrinks_when_idle() {
    let _lock = vm_lock();
    let t = tempfile::Builder::new()
        .prefix("vocc-elastic-")
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
    let appliance = root().join("appliances/osg-elastic.voc");
    let store = shared_store();
    let (appliance, store) = (appliance.to_string_lossy(), store.to_string_lossy());
    let o = c.vocc(&[
        "build", &appliance, "--var", "idle=30s", "-o", "out", "--store", &store,
    ]);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));

    // Up: the head and worker1; the standby workers stay down.
    let t0 = Instant::now();
    let o = c.vocc(&["up", "out", "--json", "--timeout", "900"]);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    let up_secs = t0.elapsed().as_secs_f64();
    assert_eq!(c.running(), ["osg-head", "osg-worker1"]);
    c.poll("sinfo -h -N -o '%N %t'", Duration::from_secs(300), |s| {
        states(s)
            == [
                ("worker1".into(), "idle".into()),
                ("worker2".into(), "idle~".into()),
                ("worker3".into(), "idle~".into()),
            ]
    });

    // The site's loop, under a policy that allows both standby workers.
    std::fs::write(dir.join("policy.voc"), "policy lab {\n  capacity 2\n}\n").unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_vocc"))
        .args([
            "autoscale",
            "out",
            "--policy",
            "policy.voc",
            "--interval",
            "3",
            "--json",
        ])
        .current_dir(&dir)
        .envs(c.env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut scaler = Loop(child);

    // A job for three nodes: Slurm powers up the two standby workers for it.
    c.ok("head", "mkdir -p /opt/apps/e2e && chmod 1777 /opt/apps/e2e");
    let submitted = Instant::now();
    let id = c.ok(
        "head",
        "sbatch --parsable -N3 -o /opt/apps/e2e/grow.out --wrap 'srun hostname'",
    );
    let id = id.trim().to_owned();
    let job = format!("squeue -h -j {id} -o %T");
    c.poll(&job, Duration::from_secs(900), |s| {
        matches!(s.trim(), "RUNNING" | "COMPLETING" | "") && !s.contains("PENDING")
    });
    let to_running = submitted.elapsed().as_secs_f64();
    let out = c.poll(
        "cat /opt/apps/e2e/grow.out 2>/dev/null",
        Duration::from_secs(120),
        |s| s.lines().count() == 3,
    );
    let mut ran: Vec<&str> = out.split_whitespace().collect();
    ran.sort();
    assert_eq!(ran, ["worker1", "worker2", "worker3"]);
    let slurm_job = c.ok("head", &format!("scontrol show job {id} -o || true"));
    assert_eq!(
        c.running(),
        ["osg-head", "osg-worker1", "osg-worker2", "osg-worker3"]
    );

    // Idle for 30 s: Slurm powers them down; the loop stops and reclaims them.
    let idle_from = Instant::now();
    let start = Instant::now();
    while c.running() != ["osg-head", "osg-worker1"] {
        assert!(
            start.elapsed() < Duration::from_secs(400),
            "the grown workers still run: {:?}",
            c.running()
        );
        std::thread::sleep(Duration::from_secs(5));
    }
    let shrunk = idle_from.elapsed().as_secs_f64();
    // Known to Slurm as powered down, not as failed.
    c.poll("sinfo -h -N -o '%N %t'", Duration::from_secs(120), |s| {
        let st = states(s);
        st.contains(&("worker2".into(), "idle~".into()))
            && st.contains(&("worker3".into(), "idle~".into()))
    });
    let st: Value = serde_json::from_slice(&c.vocc(&["status", "--json"]).stdout).unwrap();
    for n in st["clusters"][0]["nodes"].as_array().unwrap() {
        if ["osg-worker2", "osg-worker3"].contains(&n["node"].as_str().unwrap()) {
            assert_eq!(n["standby"], true, "{n}");
            assert!(n["pid"].is_null(), "{n}");
        }
    }

    // What the loop said: a round that started the two workers, saying why.
    let _ = scaler.0.kill();
    let _ = scaler.0.wait();
    let mut said = String::new();
    scaler
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    let rounds: Vec<Value> = said
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let grew = rounds
        .iter()
        .find(|r| {
            r["plan"]["start"]["osg"]
                .as_array()
                .is_some_and(|a| a.len() == 2)
        })
        .unwrap_or_else(|| panic!("no round started the two workers: {said}"));
    let why = grew["plan"]["shares"][0]["why"].as_str().unwrap();
    assert!(why.contains("started 2"), "{why}");
    let grow_ms = grew["ms"].as_f64().unwrap();
    assert!(
        rounds.iter().any(|r| r["plan"]["stop"]["osg"]
            .as_array()
            .is_some_and(|a| a.len() == 2)),
        "no round stopped the two workers: {said}"
    );

    let o = c.vocc(&["down"]);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    eprintln!(
        "\nelastic OSG cluster (qemu):\n  up (head, worker1)                          {up_secs:>7.1} s\n  \
         job for 3 nodes: submission to running      {to_running:>7.1} s\n  \
         the loop's round that started 2 workers     {:>7.1} s\n  \
         idle 30 s, then powered down and stopped    {shrunk:>7.1} s\n  \
         why: {why}\n  slurm: {}",
        grow_ms / 1e3,
        slurm_job.trim()
    );
}
