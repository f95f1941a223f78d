//! A build killed at any moment leaves its output tree wholly the old one or wholly
//! the new one, and the next build leaves nothing of the killed one behind.
//!
//! The real `vocc` binary builds a config-only tree of a couple of thousand nodes, then
//! rebuilds it with another node count and is killed (SIGKILL) at moments spread over
//! the rebuild's measured duration (its writing part, mostly). After each kill: every file the manifest lists
//! exists with its sha256 (the plan and the model are listed too), no node directory
//! exists that the plan does not list, and the runtime's state directory is untouched.
//! After the next, complete build the tree holds exactly as many entries and bytes as
//! a fresh build of the same input: no temporary of the killed build remains.

use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vocc_compiler::output::Manifest;
use vocc_runtime::Plan;

/// The two worker counts the rebuilds alternate between.
const COUNTS: [u32; 2] = [1499, 1489];
/// How many kills.
const KILLS: u32 = 10;

fn appliance() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/synthetic.voc")
}

fn command(out: &Path, secrets: &Path, workers: u32) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vocc"));
    c.args(["build", "--config-only", "--var"])
        .arg(format!("workers={workers}"))
        .arg(appliance())
        .arg("-o")
        .arg(out)
        .arg("--secrets")
        .arg(secrets)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

fn build(out: &Path, secrets: &Path, workers: u32) -> Duration {
    let t = Instant::now();
    let res = command(out, secrets, workers).output().expect("run vocc");
    assert!(
        res.status.success(),
        "vocc build failed:\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    t.elapsed()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks that `out` is one whole tree; returns its number of nodes.
fn check_whole(out: &Path, when: &str) -> usize {
    let text = fs::read(out.join("manifest.json"))
        .unwrap_or_else(|e| panic!("{when}: no manifest.json: {e}"));
    let manifest: Manifest = serde_json::from_slice(&text)
        .unwrap_or_else(|e| panic!("{when}: manifest.json does not parse: {e}"));
    let mut wrong = Vec::new();
    for f in &manifest.files {
        match fs::read(out.join(&f.path)) {
            Ok(bytes) if sha256(&bytes) == f.sha256 => {}
            Ok(_) => wrong.push(format!("{}: another content", f.path)),
            Err(e) => wrong.push(format!("{}: {e}", f.path)),
        }
    }
    assert!(
        wrong.is_empty(),
        "{when}: {} of {} files the manifest lists are not as listed, e.g. {:?}",
        wrong.len(),
        manifest.files.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert!(manifest.files.iter().any(|f| f.path == "plan.json"));
    let plan: Plan = serde_json::from_slice(&fs::read(out.join("plan.json")).unwrap())
        .unwrap_or_else(|e| panic!("{when}: plan.json does not parse: {e}"));
    let planned: BTreeSet<String> = plan
        .nodes
        .iter()
        .map(|n| n.dir.trim_end_matches('/').to_owned())
        .collect();
    let present: BTreeSet<String> = fs::read_dir(out.join("nodes"))
        .unwrap_or_else(|e| panic!("{when}: no nodes/: {e}"))
        .map(|e| format!("nodes/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    let unplanned: Vec<&String> = present.difference(&planned).collect();
    assert!(
        unplanned.is_empty(),
        "{when}: {} node directories that the plan does not list, e.g. {:?}",
        unplanned.len(),
        &unplanned[..unplanned.len().min(5)]
    );
    let missing: Vec<&String> = planned.difference(&present).collect();
    assert!(
        missing.is_empty(),
        "{when}: planned node directories missing: {missing:?}"
    );
    plan.nodes.len()
}

/// The entries under `dir` (not following symbolic links, leaving out the runtime's
/// state) and the bytes of its regular files.
fn footprint(dir: &Path) -> (usize, u64) {
    let (mut entries, mut bytes) = (0, 0);
    let walk = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| e.depth() != 1 || e.file_name() != ".vocc-run");
    for e in walk {
        let e = e.unwrap();
        entries += 1;
        if e.file_type().is_file() {
            bytes += e.metadata().unwrap().len();
        }
    }
    (entries, bytes)
}

/// The names under `dir` that a fresh build does not have, for the failure message.
fn extra_names(dir: &Path, fresh: &Path) -> Vec<String> {
    let names = |d: &Path| -> BTreeSet<String> {
        walkdir::WalkDir::new(d)
            .min_depth(1)
            .max_depth(2)
            .into_iter()
            .map(|e| {
                let e = e.unwrap();
                e.path()
                    .strip_prefix(d)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    };
    let fresh = names(fresh);
    names(dir)
        .into_iter()
        .filter(|n| !fresh.contains(n) && !n.starts_with(".vocc-run"))
        .collect()
}

#[test]
fn a_killed_rebuild_leaves_the_old_tree_or_the_new_one() {
    // A file system in memory when there is one: the test measures kills, not disks.
    let tmp = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")
    } else {
        tempfile::tempdir()
    }
    .unwrap();
    let secrets = tmp.path().join("secrets");
    let out = tmp.path().join("out");

    // Fresh builds of both counts: what a complete build leaves.
    let fresh: Vec<(PathBuf, (usize, u64))> = COUNTS
        .iter()
        .map(|&n| {
            let dir = tmp.path().join(format!("fresh-{n}"));
            build(&dir, &secrets, n);
            let f = footprint(&dir);
            (dir, f)
        })
        .collect();

    build(&out, &secrets, COUNTS[0]);
    // The runtime's state lives in the tree and survives every rebuild.
    let journal = out.join(".vocc-run/synth/journal.json");
    fs::create_dir_all(journal.parent().unwrap()).unwrap();
    fs::write(&journal, b"{\"state\":\"up\"}\n").unwrap();
    let rebuild = build(&out, &secrets, COUNTS[1]);
    check_whole(&out, "after a complete rebuild");

    let mut current = 1;
    let mut outcomes = Vec::new();
    for k in 0..KILLS {
        let next = 1 - current;
        // Most of the first third is reading and rendering, which write nothing.
        let delay = rebuild.mul_f64(0.3 + 0.7 * (f64::from(k) + 0.5) / f64::from(KILLS));
        let mut child = command(&out, &secrets, COUNTS[next])
            .stderr(Stdio::null())
            .spawn()
            .expect("run vocc");
        std::thread::sleep(delay);
        child.kill().unwrap();
        let status = child.wait().unwrap();
        let when = format!("killed after {delay:?} (of {rebuild:?})");
        let nodes = check_whole(&out, &when);
        assert!(
            [COUNTS[current] + 1, COUNTS[next] + 1].contains(&(nodes as u32)),
            "{when}: {nodes} nodes"
        );
        outcomes.push(if status.success() {
            "finished"
        } else if nodes as u32 == COUNTS[next] + 1 {
            "new"
        } else {
            "old"
        });
        assert_eq!(
            fs::read(&journal).unwrap(),
            b"{\"state\":\"up\"}\n",
            "{when}: the runtime's state changed"
        );

        // The next build completes and leaves what a fresh one does.
        build(&out, &secrets, COUNTS[next]);
        current = next;
        check_whole(&out, &format!("{when}, then rebuilt"));
        let (dir, expected) = &fresh[current];
        assert_eq!(
            footprint(&out),
            *expected,
            "{when}, then rebuilt: entries and bytes differ from a fresh build: {:?}",
            extra_names(&out, dir)
        );
    }
    eprintln!("outcomes of the kills: {outcomes:?}");
}
