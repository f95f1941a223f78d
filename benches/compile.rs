//! Compile benchmark: synthetic clusters of 10 to 10,000 nodes, compiled by the real
//! `vocc` binary with every file rendered and written (`build --config-only`).
//!
//! Reports, per size, the best wall time of several runs, the time per node, the peak
//! resident memory of the `vocc` process, the files and directories written, and the
//! file system operations per node: each directory is one `mkdir`, and each file name
//! one `create` or `link`, which is most of what a node costs; and the wall time of a
//! rebuild into the first run's tree, which writes a whole new tree beside it,
//! switches to it and removes the old one. Run
//! with `cargo bench --bench compile`; sizes can be chosen (`-- 10 100`), and so can
//! the directory the trees are built in (`-- --dir /dev/shm`; default: the system's
//! temporary directory), because the file system decides much of the time.
//! `VOCC_BENCH_BIN=path/to/vocc` measures another build of vocc instead.
//! Targets: 10,000 nodes in at most 1 s and 300 MB; time per node flat across sizes.
//!
//! The trees are removed only after the last run. On ext4 without a journal, the
//! inode allocator skips, one by one, the inodes freed in the last minute or so, so
//! removing a tree of 220,000 files just before the next run would make that run pay
//! for the previous one's cleanup (ten times over, on this project's machines).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn vocc() -> PathBuf {
    // Another build of vocc to compare with, if asked for.
    if let Some(bin) = std::env::var_os("VOCC_BENCH_BIN") {
        return PathBuf::from(bin);
    }
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

/// The sizes and the directory asked for on the command line.
fn args() -> (Vec<u32>, Option<PathBuf>) {
    let mut sizes = Vec::new();
    let mut dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--dir" {
            dir = args.next().map(PathBuf::from);
        } else if let Some(d) = a.strip_prefix("--dir=") {
            dir = Some(PathBuf::from(d));
        } else if let Ok(n) = a.parse() {
            sizes.push(n);
        }
    }
    if sizes.is_empty() {
        sizes = vec![10, 100, 1_000, 10_000];
    }
    (sizes, dir)
}

fn main() {
    let (sizes, dir) = args();
    let bin = vocc();
    let appliance = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/synthetic.voc");
    let tmp = match &dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("tempdir");
    println!("trees built in {}", tmp.path().display());
    println!(
        "{:>7} {:>10} {:>12} {:>10} {:>9} {:>7} {:>9} {:>11}",
        "nodes", "wall ms", "µs per node", "peak MB", "files", "dirs", "ops/node", "rebuild ms"
    );
    for &n in &sizes {
        let workers = n - 1;
        let mut best = f64::MAX;
        let runs = if n >= 10_000 { 3 } else { 5 };
        let mut rss = 0;
        let (mut files, mut dirs) = (0u32, 0u32);
        let secrets = tmp.path().join("secrets");
        // A fresh process per size so that its peak memory is its own.
        let build = |out: &Path| {
            let t = Instant::now();
            let status = Command::new(&bin)
                .args(["build", "--config-only", "--var"])
                .arg(format!("workers={workers}"))
                .arg(&appliance)
                .arg("-o")
                .arg(out)
                .arg("--secrets")
                .arg(&secrets)
                .stdout(std::process::Stdio::null())
                .status()
                .expect("run vocc");
            assert!(status.success(), "vocc build failed for {n} nodes");
            t.elapsed().as_secs_f64() * 1e3
        };
        for run in 0..runs {
            // Each run builds into a fresh directory, as a pipeline would.
            let out = tmp.path().join(format!("out-{n}-{run}"));
            best = best.min(build(&out));
            rss = rss.max(children_max_rss_kib());
            if run == 0 {
                for e in walkdir::WalkDir::new(&out)
                    .into_iter()
                    .filter_map(Result::ok)
                {
                    if e.file_type().is_file() {
                        files += 1;
                    } else if e.file_type().is_dir() {
                        dirs += 1;
                    }
                }
            }
        }
        let rebuild = build(&tmp.path().join(format!("out-{n}-0")));
        println!(
            "{n:>7} {best:>10.1} {:>12.1} {:>10.1} {files:>9} {dirs:>7} {:>9.1} {rebuild:>11.1}",
            best * 1e3 / f64::from(n),
            rss as f64 / 1024.0,
            f64::from(files + dirs) / f64::from(n),
        );
    }
    println!("(peak MB is the largest vocc process so far: it only grows with size)");
    // The trees go with `tmp`, now.
}
