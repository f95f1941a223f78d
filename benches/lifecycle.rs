//! Lifecycle benchmark (not a timed test): `cargo bench --bench lifecycle`.
//!
//! On a lab of N hosts (`scripts/lab`, reached over SSH), a cluster of N nodes, one per
//! host, runs under the `sim` driver on every host (no guests: this machine's two
//! cores cannot boot 64, and a guest's own pause time is not the runtime's). The
//! runtime brings it up, then pauses and unpauses the whole cluster: once from a fresh
//! runtime (sessions with every host opened on the way: what one `vocc pause` pays),
//! then ten times more with the sessions open (what a control process that lives on
//! pays), and asks for its status as many times. It reports, per N, the median of each,
//! and their ratio to N = 1: an operation goes to every host at once, so its latency
//! should not grow with N.
//!
//! Options (after `--`): `--hosts 1,2,4,8,16,32,64`, `--rounds 10`.
//! Needs root (the lab) and the packages of `scripts/setup`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::lab::Lab;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use vocc_runtime::plan::State;
use vocc_runtime::{Op, Options, Runtime, Selection};

/// CPU time (user and system) this process has used, in milliseconds.
fn own_cpu_ms() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    ms(u.ru_utime) + ms(u.ru_stime)
}

/// CPU time (in milliseconds, from the scheduler's own count) of every process on this
/// machine, by part: the control side's `ssh` clients, the hosts' `sshd`s and the hosts'
/// `vocc-host`s (the lab's hosts share this machine's cores; on a site each host has
/// its own).
fn parts_cpu_ms() -> [f64; 3] {
    let mut sums = [0.0; 3];
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return sums;
    };
    for p in procs.flatten() {
        let Ok(comm) = std::fs::read_to_string(p.path().join("comm")) else {
            continue;
        };
        let part = match comm.trim_end() {
            "ssh" => 0,
            "sshd" => 1,
            "vocc-host" => 2,
            _ => continue,
        };
        let Ok(tasks) = std::fs::read_dir(p.path().join("task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let ns = std::fs::read_to_string(t.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split(' ').next()?.parse::<f64>().ok())
                .unwrap_or(0.0);
            sums[part] += ns / 1e6;
        }
    }
    sums
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut hosts = vec![1, 2, 4, 8, 16, 32, 64];
    let mut rounds = 10;
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().expect("a value after the option").clone();
        match a.as_str() {
            "--hosts" => {
                hosts = value()
                    .split(',')
                    .map(|n| n.parse().expect("host counts such as 1,2,4"))
                    .collect()
            }
            "--rounds" => rounds = value().parse().expect("a number of rounds"),
            other => panic!("unknown option `{other}` (--hosts, --rounds)"),
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The vocc-host beside this benchmark's build of vocc.
    let status = Command::new("cargo")
        .args([
            "build",
            "--release",
            "-p",
            "vocc-runtime",
            "--bin",
            "vocc-host",
        ])
        .current_dir(root)
        .status()
        .expect("cargo");
    assert!(status.success(), "building vocc-host");
    let program = root.join("target/release/vocc-host");
    println!("lifecycle operations on N hosts over SSH (sim guests), {rounds} rounds");
    println!(
        "| N | up | pause, sessions opened | pause | unpause | status | slowest host's round trip | CPU per op: vocc, ssh (control) | sshd, vocc-host (hosts) | this machine's floor | pause vs N=1 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut first: Option<f64> = None;
    for n in hosts {
        let lab = Lab::up_with(
            &format!("lc{n}"),
            n,
            "0",
            &[
                "--no-slurm",
                "--host-program",
                &program.display().to_string(),
            ],
        );
        let plan = lab.sim_cluster(Path::new(env!("CARGO_BIN_EXE_vocc")), "bench", n);
        lab.enter_control();
        let open = || Runtime::open(&plan, None, Options::default()).expect("the plan");
        let all = Selection::default();
        let rt = open();
        let t = Instant::now();
        let up = rt
            .up("bench", State::Running, Some("sim"), &all)
            .expect("up");
        assert!(up.ok, "{up:?}");
        let up_ms = t.elapsed().as_secs_f64() * 1e3;
        drop(rt);
        let rt = open();
        // The whole operation, and its slowest node's round trip to its host.
        let timed = |op: Op| {
            let t = Instant::now();
            let r = rt.operate("bench", op, &all).expect("the operation");
            assert!(r.ok, "{r:?}");
            let slowest = r
                .nodes
                .iter()
                .filter_map(|n| n.phases.values().next().copied())
                .fold(0.0, f64::max);
            (t.elapsed().as_secs_f64() * 1e3, slowest)
        };
        let (cold, _) = timed(Op::Pause);
        timed(Op::Unpause);
        let cpu_before = own_cpu_ms();
        let parts_before = parts_cpu_ms();
        let mut pause = Vec::new();
        let mut unpause = Vec::new();
        let mut trips = Vec::new();
        for _ in 0..rounds {
            let (ms, trip) = timed(Op::Pause);
            pause.push(ms);
            trips.push(trip);
            unpause.push(timed(Op::Unpause).0);
        }
        // What the control side itself spends per operation (this process: the DAG,
        // the requests and answers, the journal); the hosts' sshd and vocc-host, which
        // on a site run on the hosts' own CPUs, share this machine's two here.
        let control = (own_cpu_ms() - cpu_before) / (2 * rounds) as f64;
        let parts = parts_cpu_ms();
        let part = |i: usize| (parts[i] - parts_before[i]) / (2 * rounds) as f64;
        // Every part of an operation runs on this machine's cores here: the wall time
        // cannot be less than all their CPU time spread over them.
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get()) as f64;
        let floor = (control + part(0) + part(1) + part(2)) / cores;
        let mut status = Vec::new();
        for _ in 0..rounds {
            // Past the moment in which the runtime takes a node's last answer as its
            // state: each status asks every host.
            std::thread::sleep(Duration::from_millis(1100));
            let t = Instant::now();
            let s = rt.status("bench").expect("status");
            assert_eq!(s.len(), n);
            status.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let status = median(status);
        let (pause, unpause, trip) = (median(pause), median(unpause), median(trips));
        let base = *first.get_or_insert(pause);
        println!(
            "| {n} | {:.0} ms | {cold:.1} ms | {pause:.2} ms | {unpause:.2} ms | {status:.2} ms | {trip:.2} ms | {control:.2}, {:.2} ms | {:.2}, {:.2} ms | {floor:.2} ms | {:.2}× |",
            up_ms,
            part(0),
            part(1),
            part(2),
            pause / base
        );
        let down = rt.down("bench", None).expect("down");
        assert!(down.ok, "{down:?}");
        drop(rt);
        std::thread::sleep(Duration::from_millis(100));
    }
}
