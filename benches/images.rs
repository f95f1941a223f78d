//! Image benchmarks (not timed tests): `cargo bench --bench images`.
//!
//! 1. Instantiating 100 nodes over a 2 GiB layer, side by side with a plain per-node
//!    copy of the layer (what the seeds' sites did): time and disk. Targets: ≤ 2 s and
//!    ≤ the layer + 100 × 2 MiB. The plain copy is measured for a few nodes and scaled
//!    to 100 (100 copies would need 200 GiB).
//! 2. `vocc build` of a 100-node cluster over that layer (the layer in the store,
//!    node artifacts made: overlays, swap disks, config drives), and its no-op rebuild.
//! 3. A no-op rebuild of appliances/osg.voc. Target: ≤ 100 ms. Its Debian layer comes
//!    from the tests' store (`VOCC_TEST_STORE`, default `target/vocc-test-store`) and
//!    is built there first if missing (about 2 minutes).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
const NODES: usize = 100;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn vocc(dir: &Path, args: &[&str]) -> Duration {
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_vocc"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run vocc");
    let took = t.elapsed();
    assert!(
        o.status.success(),
        "vocc {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    took
}

fn run(program: &str, args: &[&str]) {
    let o = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        o.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Bytes allocated on disk under `path`.
fn allocated(path: &Path) -> u64 {
    walkdir::WalkDir::new(path)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().map(|m| m.blocks() * 512).unwrap_or(0))
        .sum()
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / MIB as f64)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "OVER TARGET"
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A fully allocated 2 GiB layer (non-zero bytes, so a copy costs what it says).
fn make_layer(path: &Path) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut block = vec![0u8; MIB as usize];
    for (i, b) in block.iter_mut().enumerate() {
        *b = (i * 131 % 251) as u8 | 1;
    }
    for _ in 0..(2 * GIB / MIB) {
        f.write_all(&block).unwrap();
    }
    f.into_inner().unwrap().sync_all().unwrap();
}

fn instantiate(dir: &Path, layer: &Path) {
    println!("== instantiating {NODES} nodes over a 2 GiB layer");
    // vocc: one qcow2 overlay per node over the shared read-only layer.
    let nodes = dir.join("overlays");
    std::fs::create_dir_all(&nodes).unwrap();
    let t = Instant::now();
    for i in 0..NODES {
        let d = nodes.join(format!("node{i}"));
        std::fs::create_dir_all(&d).unwrap();
        run(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "raw",
                "-b",
                &layer.to_string_lossy(),
                &d.join("root.qcow2").to_string_lossy(),
            ],
        );
    }
    let overlay_time = t.elapsed();
    let overlay_disk = allocated(&nodes);
    let layer_disk = allocated(layer);
    // Plain copies: a few, scaled to 100.
    let copies = dir.join("copies");
    std::fs::create_dir_all(&copies).unwrap();
    let sample = 3;
    let t = Instant::now();
    for i in 0..sample {
        std::fs::copy(layer, copies.join(format!("node{i}.img"))).unwrap();
    }
    let per_copy = t.elapsed() / sample as u32;
    let copy_disk_each = allocated(&copies) / sample as u64;
    std::fs::remove_dir_all(&copies).unwrap();
    let copy_time = per_copy * NODES as u32;
    let copy_disk = copy_disk_each * NODES as u64;

    let disk_target = layer_disk + NODES as u64 * 2 * MIB;
    println!(
        "overlays:    {:>8.3} s  {:>12} (+ the layer {})   target ≤ 2 s: {}; ≤ layer + {NODES} × 2 MiB: {}",
        overlay_time.as_secs_f64(),
        mib(overlay_disk),
        mib(layer_disk),
        verdict(overlay_time <= Duration::from_secs(2)),
        verdict(overlay_disk + layer_disk <= disk_target),
    );
    println!(
        "plain copy:  {:>8.3} s  {:>12} (measured on {sample} copies: {:.3} s and {} each)",
        copy_time.as_secs_f64(),
        mib(copy_disk),
        per_copy.as_secs_f64(),
        mib(copy_disk_each)
    );
    println!(
        "ratio (copy / overlay): time {:.0}×, disk {:.0}×",
        copy_time.as_secs_f64() / overlay_time.as_secs_f64().max(1e-9),
        copy_disk as f64 / (overlay_disk.max(1)) as f64
    );
    std::fs::remove_dir_all(&nodes).unwrap();
}

fn cluster_build(dir: &Path, layer: &Path, store: &Path) {
    println!("== vocc build: {NODES} nodes over the 2 GiB layer (pinned image)");
    let sha = {
        let o = Command::new("sha256sum").arg(layer).output().unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    let text = format!(
        "site bench {{\n  host h[01-10] {{ cpu 16; memory 64G; disk 500G }}\n  store \"/var/lib/vocc\"\n}}\n\
         cluster big {{\n  network n {{ subnet 10.40.0.0/16 }}\n  layer tiny {{ from busybox }}\n  \
         layer data {{ from image \"{}\"; sha256 \"{sha}\" }}\n  role node {{\n    count {NODES}\n    \
         root tiny\n    disk data at /data ro\n    swap 64M\n    nic eth0 n\n  }}\n}}\n",
        layer.display()
    );
    std::fs::write(dir.join("big.voc"), text).unwrap();
    let s = store.to_string_lossy();
    let warm = vocc(dir, &["build", "big.voc", "-o", "warmup", "--store", &s]);
    println!(
        "first build (layer into the store, {NODES} config drives): {:.2} s",
        warm.as_secs_f64()
    );
    std::fs::remove_dir_all(dir.join("warmup")).unwrap();
    let cold_nodes = vocc(dir, &["build", "big.voc", "-o", "out", "--store", &s]);
    println!(
        "new output tree, everything from the store: {:.3} s, {} in OUT/nodes",
        cold_nodes.as_secs_f64(),
        mib(allocated(&dir.join("out/nodes")))
    );
    let noop = median(
        (0..5)
            .map(|_| vocc(dir, &["build", "big.voc", "-o", "out", "--store", &s]))
            .collect(),
    );
    println!("no-op rebuild: {:.3} s (median of 5)", noop.as_secs_f64());
}

fn osg_noop() {
    println!("== no-op rebuild of appliances/osg.voc");
    let store = std::env::var_os("VOCC_TEST_STORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/vocc-test-store"));
    let t = tempfile::tempdir().unwrap();
    let s = store.to_string_lossy();
    let osg = root().join("appliances/osg.voc");
    let o = osg.to_string_lossy();
    let first = vocc(t.path(), &["build", &o, "-o", "out", "--store", &s]);
    println!("first build: {:.2} s", first.as_secs_f64());
    let runs: Vec<Duration> = (0..7)
        .map(|_| vocc(t.path(), &["build", &o, "-o", "out", "--store", &s]))
        .collect();
    let m = median(runs.clone());
    println!(
        "no-op rebuild: {:.1} ms median of 7 (min {:.1} ms)   target ≤ 100 ms: {}",
        m.as_secs_f64() * 1000.0,
        runs.iter().min().unwrap().as_secs_f64() * 1000.0,
        verdict(m <= Duration::from_millis(100))
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let t = tempfile::Builder::new()
        .prefix("vocc-bench-")
        .tempdir_in(root().join("target"))
        .unwrap();
    let layer = t.path().join("layer.img");
    make_layer(&layer);
    instantiate(t.path(), &layer);
    cluster_build(t.path(), &layer, &t.path().join("store"));
    osg_noop();
}
