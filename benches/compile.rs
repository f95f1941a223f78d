//! Compile benchmark: synthetic clusters of 10 to 10,000 nodes, compiled by the real
//! `vocc` binary with every file rendered and written (`build --config-only`).
//!
//! Reports, per size, the best wall time of several runs, the time per node, and the
//! peak resident memory of the `vocc` process. Run with
//! `cargo bench --bench compile` (sizes can be chosen: `-- 10 100`).
//! Targets: 10,000 nodes in at most 1 s and 300 MB; time per node flat across sizes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn vocc() -> PathBuf {
    // `cargo bench` builds the binary in release mode next to this bench.
    let exe = std::env::current_exe().expect("bench path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("vocc");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--bin", "vocc"])
            .status()
            .expect("cargo build");
        assert!(status.success());
    }
    bin
}

/// Peak RSS in KiB of the largest child process waited for so far.
fn children_max_rss_kib() -> i64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss
}

fn main() {
    let mut sizes: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![10, 100, 1_000, 10_000];
    }
    let bin = vocc();
    let appliance = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/synthetic.voc");
    let tmp = tempfile::tempdir().expect("tempdir");
    println!(
        "{:>7} {:>10} {:>12} {:>10} {:>9}",
        "nodes", "wall ms", "µs per node", "peak MB", "files"
    );
    for &n in &sizes {
        let workers = n - 1;
        let mut best = f64::MAX;
        let runs = if n >= 10_000 { 3 } else { 5 };
        let mut rss = 0;
        let mut files = 0;
        for run in 0..runs {
            // Each run builds into a fresh directory, as a pipeline would.
            let out = tmp.path().join(format!("out-{n}-{run}"));
            let secrets = tmp.path().join("secrets");
            // A fresh process per size so that its peak memory is its own.
            let t = Instant::now();
            let status = Command::new(&bin)
                .args(["build", "--config-only", "--var"])
                .arg(format!("workers={workers}"))
                .arg(&appliance)
                .arg("-o")
                .arg(&out)
                .arg("--secrets")
                .arg(&secrets)
                .stdout(std::process::Stdio::null())
                .status()
                .expect("run vocc");
            let ms = t.elapsed().as_secs_f64() * 1e3;
            assert!(status.success(), "vocc build failed for {n} nodes");
            best = best.min(ms);
            rss = rss.max(children_max_rss_kib());
            if run == 0 {
                files = walkdir::WalkDir::new(&out)
                    .into_iter()
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_file())
                    .count();
            }
            let _ = std::fs::remove_dir_all(&out);
        }
        println!(
            "{n:>7} {best:>10.1} {:>12.1} {:>10.1} {files:>9}",
            best * 1e3 / f64::from(n),
            rss as f64 / 1024.0,
        );
    }
    println!("(peak MB is the largest vocc process so far: it only grows with size)");
}
