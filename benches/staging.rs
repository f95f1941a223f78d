//! Staging benchmark (not a timed test): `cargo bench --bench staging`.
//!
//! On a lab of hosts (`scripts/lab`, network namespaces on this machine with links
//! shaped to a rate R), one layer of S bytes goes from the control machine to N hosts,
//! for N = 1, 2, 4, …, 64: once through vocc's pipelined chain and once the naive way,
//! every host pulling from the one source at once. For each N it reports the makespan
//! (from the start until the last host has the layer verified; once from no connection,
//! SSH handshakes included, and once with the hosts connected, as for a second layer)
//! divided by S/R, and the latency of one operation sent to all N hosts at once over the
//! sessions a run keeps open with them (`hello` to `vocc-host serve` over SSH: the
//! dispatch every lifecycle operation pays). It ends with the per-hop cost: the slope of
//! the chain's makespan over N.
//!
//! Options (after `--`): `--size 8M`, `--rate 20mbit`, `--hosts 1,2,4,8,16,32,64`,
//! `--naive-max 64` (the largest N the naive way is measured at: it takes N × S/R),
//! `--runs 1` (how many times the chain from no connection runs at each N; each run is
//! printed, the table shows their median). A run in which a host fails prints that
//! host's steps (the control side's and the host's own) and the bench fails at the end;
//! every run's steps of every host are kept in a folder it names.
//! Needs root (the lab) and the packages of `scripts/setup`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::lab::Lab;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use vocc_runtime::distribute::{distribute, Outcome, Strategy, Target, Transfer};
use vocc_runtime::hostlink::HostLink;
use vocc_runtime::hostops::{Hello, Request, Session};
use vocc_runtime::relay::{partial_path, sha256_file};

struct Options {
    size: u64,
    rate: String,
    rate_bits: f64,
    hosts: Vec<usize>,
    naive_max: usize,
    runs: usize,
}

fn parse_size(s: &str) -> u64 {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().expect("a size such as 8M");
    n * match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => panic!("a size such as 8M"),
    }
}

fn parse_rate(s: &str) -> f64 {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: f64 = s[..digits].parse().expect("a rate such as 20mbit");
    n * match &s[digits..] {
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        _ => panic!("a rate in kbit, mbit or gbit"),
    }
}

fn options() -> Options {
    let mut o = Options {
        size: 8 << 20,
        rate: "20mbit".into(),
        rate_bits: 20e6,
        hosts: vec![1, 2, 4, 8, 16, 32, 64],
        naive_max: 64,
        runs: 1,
    };
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().expect("a value after the option").clone();
        match a.as_str() {
            "--size" => o.size = parse_size(&value()),
            "--rate" => {
                o.rate = value();
                o.rate_bits = parse_rate(&o.rate);
            }
            "--hosts" => {
                o.hosts = value()
                    .split(',')
                    .map(|n| n.parse().expect("host counts such as 1,2,4"))
                    .collect()
            }
            "--naive-max" => o.naive_max = value().parse().expect("a number"),
            "--runs" => o.runs = value().parse().expect("a number of runs"),
            other => panic!("unknown option `{other}`"),
        }
    }
    o
}

/// `cargo bench` builds this package's targets; the host program is the runtime's.
fn host_program() -> PathBuf {
    let exe = std::env::current_exe().expect("bench path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-p",
            "vocc-runtime",
            "--bin",
            "vocc-host",
        ])
        .status()
        .expect("cargo build");
    assert!(status.success());
    dir.join("vocc-host")
}

fn address(i: usize) -> String {
    format!("10.251.0.{}", 10 + i)
}

fn link(lab: &Lab, i: usize, program: &Path) -> HostLink {
    HostLink::Ssh {
        address: address(i),
        user: "root".into(),
        identity: lab.dir.join("id_ed25519"),
        known_hosts: lab.dir.join("known_hosts"),
        program: program.display().to_string(),
    }
}

/// The time for one operation (`hello`) to be answered by all `n` hosts, sent to all
/// at once over the sessions a run keeps open with each host (`vocc-host serve`).
fn hello_latency(sessions: &mut [Session]) -> Duration {
    let started = Instant::now();
    for s in sessions.iter_mut() {
        s.send(&Request::Hello { sha256: false })
            .expect("the host takes requests");
    }
    for s in sessions.iter_mut() {
        let _: Hello = s.answer().expect("the host answers");
    }
    started.elapsed()
}

/// What every measured run shares.
struct Bench<'a> {
    lab: &'a Lab,
    program: &'a Path,
    transfer: Transfer<'a>,
    /// S/R in seconds.
    one: f64,
    /// Where every run's steps are kept.
    logs: PathBuf,
    failures: std::cell::Cell<usize>,
}

/// Stages the layer to hosts 1..=n once; prints the run's makespan (or which hosts
/// failed, with their steps) and returns the makespan when every host has the layer.
fn measure(b: &Bench, n: usize, strategy: Strategy, warm: bool, what: &str) -> Option<f64> {
    let run = std::fs::read_dir(&b.logs).map_or(0, |d| d.count());
    let name = format!("layers/bench-{n}-{run}.img");
    let targets: Vec<Target> = (1..=n)
        .map(|i| Target {
            host: format!("h{i}"),
            address: address(i),
            link: link(b.lab, i, b.program),
            dest: format!("{}/store/{name}", b.lab.dir.display()),
            head: false,
        })
        .collect();
    for t in &targets {
        if warm {
            t.link.connect().expect("the host answers");
        } else {
            t.link.disconnect();
        }
    }
    let started = Instant::now();
    let results = distribute(&b.transfer, &targets, strategy);
    let makespan = started.elapsed().as_secs_f64();
    let mut steps = String::new();
    let mut failed = Vec::new();
    for r in &results {
        let ok = matches!(r.outcome, Outcome::Done { received, .. } if received == b.transfer.size);
        if !ok {
            failed.push(r);
        }
        steps.push_str(&format!("{} {:.2} s {:?}\n", r.host, r.secs, r.outcome));
        for line in &r.log {
            steps.push_str(&format!("  {line}\n"));
        }
    }
    let file = b.logs.join(format!("{run:03}-n{n}.log"));
    std::fs::write(&file, format!("N = {n}, {what}\n{steps}")).expect("the steps file");
    for i in 1..=n {
        let f = b.lab.host_file(&format!("h{i}"), &name);
        let _ = std::fs::remove_file(&f);
        let _ = std::fs::remove_file(partial_path(&f));
    }
    if failed.is_empty() {
        eprintln!(
            "N = {n}, {what}: {makespan:.2} s = {:.2} × S/R",
            makespan / b.one
        );
        return Some(makespan);
    }
    b.failures.set(b.failures.get() + 1);
    eprintln!(
        "N = {n}, {what}: {} hosts FAILED after {makespan:.2} s (all steps in {})",
        failed.len(),
        file.display()
    );
    for r in failed {
        eprintln!("{} failed after {:.2} s: {:?}", r.host, r.secs, r.outcome);
        for line in &r.log {
            eprintln!("  {line}");
        }
    }
    None
}

fn median(xs: &[f64]) -> Option<f64> {
    let mut xs = xs.to_vec();
    xs.sort_by(f64::total_cmp);
    (!xs.is_empty()).then(|| xs[xs.len() / 2])
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let o = options();
    let program = host_program();
    let max = *o.hosts.iter().max().expect("at least one host count");
    let lab = Lab::up_with("bench", max, &o.rate, &["--no-slurm"]);
    lab.enter_control();

    let source = lab.dir.join("layer.img");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let bytes: Vec<u8> = (0..o.size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(&source, &bytes).expect("the layer");
    let sha = sha256_file(&source).expect("its sha256");
    let transfer = Transfer {
        source: &source,
        size: o.size,
        sha256: &sha,
        stall_secs: 10,
    };
    let one = o.size as f64 * 8.0 / o.rate_bits;
    let logs = std::env::temp_dir().join(format!("vocc-staging-steps-{}", std::process::id()));
    std::fs::create_dir_all(&logs).expect("the steps folder");
    let bench = Bench {
        lab: &lab,
        program: &program,
        transfer,
        one,
        logs,
        failures: std::cell::Cell::new(0),
    };
    println!(
        "staging {} MiB to N hosts on links of {} (S/R = {one:.2} s), {} cores",
        o.size >> 20,
        o.rate,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "| N | vocc chain | ÷ S/R | chain, hosts connected | ÷ S/R | naive | ÷ S/R | hello to all N |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut points = Vec::new();
    for &n in &o.hosts {
        // The chain from no connection (its handshakes count; `--runs` times), once with
        // every host already connected (as for a run's second layer), then the naive way.
        let mut cold = Vec::new();
        for run in 1..=o.runs.max(1) {
            let what = format!("chain from no connection, run {run}");
            cold.extend(measure(&bench, n, Strategy::Chain, false, &what));
        }
        let row = [
            median(&cold),
            measure(&bench, n, Strategy::Chain, true, "chain, hosts connected"),
            if n > o.naive_max {
                None
            } else {
                measure(&bench, n, Strategy::Direct, false, "naive")
            },
        ];
        let mut sessions: Vec<Session> = (1..=n)
            .map(|i| Session::open(&link(&lab, i, &program)).expect("a session with the host"))
            .collect();
        let hello = (0..5)
            .map(|_| hello_latency(&mut sessions))
            .min()
            .expect("five runs");
        let cell = |m: Option<f64>| match m {
            Some(m) => (format!("{m:.2} s"), format!("{:.2}", m / one)),
            None => ("—".into(), "—".into()),
        };
        let (chain, chain_ratio) = cell(row[0]);
        let (warm, warm_ratio) = cell(row[1]);
        let (naive, naive_ratio) = cell(row[2]);
        println!(
            "| {n} | {chain} | {chain_ratio} | {warm} | {warm_ratio} | {naive} | {naive_ratio} | {:.2} ms |",
            hello.as_secs_f64() * 1000.0
        );
        if let (Some(cold), Some(warm)) = (row[0], row[1]) {
            points.push((n as f64, cold, warm));
        }
    }
    if points.len() >= 2 {
        // Least squares: makespan ≈ base + slope × N.
        let fit = |ys: Vec<(f64, f64)>| {
            let k = ys.len() as f64;
            let mx = ys.iter().map(|p| p.0).sum::<f64>() / k;
            let my = ys.iter().map(|p| p.1).sum::<f64>() / k;
            let slope = ys.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>()
                / ys.iter().map(|p| (p.0 - mx).powi(2)).sum::<f64>();
            (my - slope * mx, slope)
        };
        let (cold_base, cold) = fit(points.iter().map(|p| (p.0, p.1)).collect());
        let (warm_base, warm) = fit(points.iter().map(|p| (p.0, p.2)).collect());
        println!(
            "per-hop cost (S/R = {one:.2} s): {:.0} ms per host with SSH handshakes \
             (makespan ≈ {cold_base:.2} s + N × that), {:.0} ms per host with the hosts \
             connected (≈ {warm_base:.2} s + N × that)",
            cold * 1000.0,
            warm * 1000.0
        );
    }
    let failures = bench.failures.get();
    assert_eq!(
        failures,
        0,
        "{failures} runs had hosts that failed (their steps are printed above and kept in {})",
        bench.logs.display()
    );
}
