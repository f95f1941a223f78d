//! Staging a layer into a host's store: linked from the build (through the build's
//! symbolic link into its content store), verified against the plan's sha256, skipped
//! when already staged and unchanged (the journal or the store's record of the
//! verification says so), refused (and removed) when the hash is wrong.

use std::fs;
use vocc_runtime::plan::PlanLayer;
use vocc_runtime::stage::{sha256_file, stage};
use vocc_runtime::state::Layout;

fn layer(sha: Option<String>) -> PlanLayer {
    serde_json::from_value(serde_json::json!({
        "id": "c/os", "cluster": "c", "name": "os", "source": "busybox",
        "size": null, "sha256": sha
    }))
    .unwrap()
}

#[test]
fn a_layer_is_linked_verified_and_staged_once() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let objects = t.path().join("objects");
    fs::create_dir_all(out.join("layers/c")).unwrap();
    fs::create_dir_all(&objects).unwrap();
    fs::write(objects.join("abc"), b"the layer").unwrap();
    std::os::unix::fs::symlink(objects.join("abc"), out.join("layers/c/os.img")).unwrap();
    fs::write(out.join("layers/c/os.vmlinuz"), b"kernel").unwrap();
    let sha = sha256_file(&objects.join("abc")).unwrap();
    let layout = Layout::new(&out, "store", None);

    let staged = stage(&layout, &layer(Some(sha.clone())), None).unwrap();
    assert_eq!(staged.how, "hardlink");
    let dst = out.join("store/layers/c/os.img");
    assert!(!fs::symlink_metadata(&dst).unwrap().file_type().is_symlink());
    assert_eq!(fs::read(&dst).unwrap(), b"the layer");
    assert_eq!(
        fs::read(out.join("store/layers/c/os.vmlinuz")).unwrap(),
        b"kernel"
    );

    let again = stage(&layout, &layer(Some(sha.clone())), Some(&staged)).unwrap();
    assert_eq!(again.how, "already staged");
    // A fresh run (no journal) trusts the store's record of the verification.
    let fresh = stage(&layout, &layer(Some(sha.clone())), None).unwrap();
    assert_eq!(fresh.how, "already staged");
    // The file changed since (its mtime): hashed again.
    fs::File::options()
        .write(true)
        .open(&dst)
        .unwrap()
        .set_modified(std::time::SystemTime::UNIX_EPOCH)
        .unwrap();
    let touched = stage(&layout, &layer(Some(sha)), None).unwrap();
    assert_eq!(touched.how, "already staged, verified");
}

#[test]
fn a_wrong_hash_is_refused_and_nothing_is_left_to_boot_from() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    fs::create_dir_all(out.join("layers/c")).unwrap();
    fs::write(out.join("layers/c/os.img"), b"tampered").unwrap();
    let layout = Layout::new(&out, "store", None);
    let err = stage(&layout, &layer(Some("0".repeat(64))), None).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("expects 0000") && msg.contains("c/os"),
        "{msg}"
    );
    assert!(!out.join("store/layers/c/os.img").exists());
    let err = stage(&layout, &layer(None), None).unwrap_err();
    assert!(err.to_string().contains("has no sha256"), "{err}");
}
