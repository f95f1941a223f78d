//! Golden outputs: every shipped appliance is built with `--config-only` and its whole
//! output tree — model, plan, manifest and every node's rendered files — is compared
//! with `tests/golden/<appliance>.txt`. Regenerate with `VOCC_BLESS=1 cargo test --test
//! golden` and review the diff.
//!
//! Also here: two builds give byte-identical trees, and adding a worker changes no
//! other node's address or MAC.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Secrets with fixed test keys, so outputs are comparable across machines.
fn test_secrets(dir: &Path, clusters: &[&str]) {
    for c in clusters {
        let d = dir.join(c);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        let key: Vec<u8> = (0..1024u32)
            .map(|i| (i * 7 + c.len() as u32) as u8)
            .collect();
        let p = d.join("munge.key");
        std::fs::write(&p, key).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

fn build(args: &[&str], out: &Path, secrets: &Path) {
    let res = Command::new(env!("CARGO_BIN_EXE_vocc"))
        .arg("build")
        .arg("--config-only")
        .args(args)
        .arg("-o")
        .arg(out)
        .arg("--secrets")
        .arg(secrets)
        .current_dir(root())
        .output()
        .expect("run vocc");
    assert!(
        res.status.success(),
        "vocc build {args:?} failed:\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
}

/// Every regular file of the output tree `dir` as its users see it (through the
/// links at its top, leaving out its hidden machinery), by relative path.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() != 1 || !e.file_name().to_string_lossy().starts_with('.'))
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

/// One readable text for a whole tree: each file once, repeats named by reference,
/// binary files and secrets by their hash.
fn snapshot(dir: &Path) -> String {
    let mut out = String::new();
    let mut seen: BTreeMap<[u8; 32], String> = BTreeMap::new();
    for (path, bytes) in tree(dir) {
        if path.starts_with("objects/") {
            continue;
        }
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        out.push_str(&format!("=== {path}\n"));
        if let Some(first) = seen.get(&digest) {
            out.push_str(&format!("(same as {first})\n"));
            continue;
        }
        seen.insert(digest, path.clone());
        match String::from_utf8(bytes.clone()) {
            Ok(text) if !path.ends_with("munge.key") => {
                out.push_str(&text);
                if !text.ends_with('\n') {
                    out.push_str("\n(no newline at end)\n");
                }
            }
            _ => out.push_str(&format!(
                "(binary, {} bytes, sha256 {})\n",
                bytes.len(),
                digest
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            )),
        }
    }
    out
}

struct Case {
    name: &'static str,
    args: &'static [&'static str],
    clusters: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "demo",
        args: &["appliances/demo.voc"],
        clusters: &["demo"],
    },
    Case {
        name: "osg",
        args: &["appliances/osg.voc", "--site", "appliances/chiba.voc"],
        clusters: &["osg"],
    },
    Case {
        name: "grid3",
        args: &["appliances/grid3.voc", "--site", "appliances/chiba.voc"],
        clusters: &["grid3"],
    },
    Case {
        name: "gridway-sge",
        args: &["appliances/gridway-sge.voc"],
        clusters: &["gridway"],
    },
    Case {
        name: "voc-condor",
        args: &["appliances/voc-condor.voc"],
        clusters: &["voc"],
    },
    Case {
        name: "osg-elastic",
        args: &[
            "appliances/osg-elastic.voc",
            "--site",
            "appliances/chiba.voc",
        ],
        clusters: &["osg"],
    },
    Case {
        name: "two-vo",
        args: &["appliances/two-vo.voc"],
        clusters: &["vo-a", "vo-b"],
    },
];

#[test]
fn every_appliance_matches_its_golden_output() {
    let tmp = tempfile::tempdir().unwrap();
    let bless = std::env::var_os("VOCC_BLESS").is_some();
    let mut failures = Vec::new();
    for case in CASES {
        let secrets = tmp.path().join(format!("secrets-{}", case.name));
        test_secrets(&secrets, case.clusters);
        let out = tmp.path().join(format!("out-{}", case.name));
        build(case.args, &out, &secrets);
        let actual = snapshot(&out);
        let golden = root()
            .join("tests/golden")
            .join(format!("{}.txt", case.name));
        if bless {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        if expected != actual {
            let first = expected
                .lines()
                .zip(actual.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(expected.lines().count().min(actual.lines().count()));
            failures.push(format!(
                "{}: output differs from {} from line {}:\n  expected: {:?}\n  actual:   {:?}",
                case.name,
                golden.display(),
                first + 1,
                expected.lines().nth(first),
                actual.lines().nth(first)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(run `VOCC_BLESS=1 cargo test --test golden` and review the diff)",
        failures.join("\n")
    );
}

#[test]
fn two_builds_are_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let secrets = tmp.path().join("secrets");
    test_secrets(&secrets, &["osg"]);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let args = ["appliances/osg.voc", "--site", "appliances/chiba.voc"];
    build(&args, &a, &secrets);
    build(&args, &b, &secrets);
    let (ta, tb) = (tree(&a), tree(&b));
    assert!(ta.len() > 100, "a real tree: {} files", ta.len());
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (path, bytes) in &ta {
        assert!(tb[path] == *bytes, "{path} differs between two builds");
    }
    // A rebuild into an existing tree gives the same tree again.
    build(&args, &a, &secrets);
    assert_eq!(tree(&a), tb);
}

#[test]
fn adding_a_worker_renumbers_nobody() {
    let tmp = tempfile::tempdir().unwrap();
    let secrets = tmp.path().join("secrets");
    test_secrets(&secrets, &["osg"]);
    let nics = |workers: u32| -> BTreeMap<(String, String), (String, String)> {
        let out = tmp.path().join(format!("w{workers}"));
        let var = format!("workers={workers}");
        build(
            &[
                "appliances/osg.voc",
                "--site",
                "appliances/chiba.voc",
                "--var",
                &var,
            ],
            &out,
            &secrets,
        );
        let plan: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("plan.json")).unwrap()).unwrap();
        let mut map = BTreeMap::new();
        for n in plan["nodes"].as_array().unwrap() {
            for nic in n["nics"].as_array().unwrap() {
                map.insert(
                    (
                        n["id"].as_str().unwrap().to_string(),
                        nic["name"].as_str().unwrap().to_string(),
                    ),
                    (
                        nic["address"].as_str().unwrap_or("").to_string(),
                        nic["mac"].as_str().unwrap().to_string(),
                    ),
                );
            }
        }
        map
    };
    let before = nics(8);
    let after = nics(9);
    assert_eq!(after.len(), before.len() + 1);
    for (k, v) in &before {
        assert_eq!(
            after.get(k),
            Some(v),
            "{k:?} changed when a worker was added"
        );
    }
    let new = &after[&("osg-worker9".to_string(), "eth0".to_string())];
    assert!(
        !before.values().any(|v| v.0 == new.0 || v.1 == new.1),
        "new node reuses {new:?}"
    );
}
