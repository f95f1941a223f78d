//! Every shipped appliance builds with its images on this machine: the real `vocc`
//! builds each of `appliances/*.voc` (the site files among them are used by the others,
//! not built) into an output tree, layers and all, in the shared test store, and each
//! layer image passes `e2fsck`. A shipped appliance that names a package its release
//! lacks fails here, at mmdebstrap, with the appliance's line.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shared_store() -> PathBuf {
    std::env::var_os("VOCC_TEST_STORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/vocc-test-store"))
}

/// The shipped appliances that describe clusters (a file holding only a site is an
/// input of the others).
fn appliances() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root().join("appliances"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "voc"))
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .any(|l| l.starts_with("cluster "))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_shipped_appliance_builds_with_its_images() {
    let appliances = appliances();
    assert!(appliances.len() >= 6, "{appliances:?}");
    let store = shared_store();
    let t = tempfile::tempdir().unwrap();
    let mut failed = Vec::new();
    for file in &appliances {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        let out = t.path().join(&name);
        let ran = Command::new(env!("CARGO_BIN_EXE_vocc"))
            .arg("build")
            .arg(file)
            .arg("-o")
            .arg(&out)
            .arg("--store")
            .arg(&store)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        if !ran.status.success() {
            failed.push(format!("{name}:\n{}", String::from_utf8_lossy(&ran.stderr)));
            continue;
        }
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
        let layers: Vec<&Value> = manifest["images"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["kind"] == "layer")
            .collect();
        assert!(!layers.is_empty(), "{name} built no layer: {manifest:#}");
        for l in layers {
            let path = out.join(l["path"].as_str().unwrap());
            if l["format"] == "qcow2" {
                continue;
            }
            let fsck = Command::new("e2fsck")
                .args(["-f", "-n"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                fsck.status.success(),
                "{name}: {} does not pass e2fsck: {}",
                path.display(),
                String::from_utf8_lossy(&fsck.stdout)
            );
        }
        eprintln!("{name}: built");
        let _ = std::fs::remove_dir_all(&out);
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
