//! Sources that reach outside their place, on the real binary: layer trees and imports
//! outside the appliance's directory (also through symbolic links), files that would
//! block or never end, what a `from dir` layer keeps of its files' modes, build
//! failures the input caused told as diagnostics, and `vocc gc` against a manifest
//! edited by hand. Image builds here use busybox and `dir` layers only (seconds each).

mod common;

use serde_json::Value;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn vocc(dir: &Path, args: &[&str]) -> common::Ran {
    common::run(
        Command::new(env!("CARGO_BIN_EXE_vocc"))
            .args(args)
            .current_dir(dir),
        Duration::from_secs(120),
    )
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

const TINY: &str = "layer tiny { from busybox }\n  role head { root tiny }";

#[test]
fn layer_trees_outside_the_appliance_are_refused_unless_allowed() {
    let t = tempfile::tempdir().unwrap();
    let app = t.path().join("app");
    let outside = t.path().join("outside");
    fs::create_dir_all(&app).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("key"), "secret\n").unwrap();
    symlink("/", app.join("rootlink")).unwrap();
    symlink(&outside, app.join("outlink")).unwrap();
    fs::write(
        app.join("a.voc"),
        format!(
            "cluster lab {{\n  layer up {{ from dir \"../outside\" }}\n  layer etc {{ from dir \
             \"../../../../../../../../../etc\" }}\n  layer all {{ from dir \"rootlink\" }}\n  \
             layer via {{ from dir \"outlink\" }}\n  {TINY}\n}}\n"
        ),
    )
    .unwrap();
    let start = Instant::now();
    let r = vocc(&app, &["check", "a.voc"]);
    assert_eq!(r.status.and_then(|s| s.code()), Some(1), "{}", r.report());
    // Refused by its path, not after reading the host's root.
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    for (line, what) in [
        (
            "a.voc:2:",
            "`../outside`, is outside the appliance's directory",
        ),
        ("a.voc:3:", "is outside the appliance's directory"),
        ("a.voc:4:", "`rootlink`, leads to `/`, outside"),
        ("a.voc:5:", "`outlink`, leads to"),
    ] {
        let at = r
            .stderr
            .find(what)
            .unwrap_or_else(|| panic!("{what}: {}", r.report()));
        let block = &r.stderr[at..];
        assert!(block.contains(line), "{line} {what}: {}", r.report());
    }
    assert!(r.stderr.contains("--allow-path"), "{}", r.report());

    // Allowed on the command line, the outside tree is checked like any other; the
    // links still are not followed as the layer's tree.
    let allow = outside.to_string_lossy().into_owned();
    let r = vocc(&app, &["check", "a.voc", "--allow-path", &allow]);
    assert_eq!(r.status.and_then(|s| s.code()), Some(1), "{}", r.report());
    assert!(!r.stderr.contains("a.voc:2:"), "{}", r.report());
    assert!(
        r.stderr.contains("`outlink`, is a symbolic link"),
        "{}",
        r.report()
    );
}

#[test]
fn imports_never_block_grow_without_bound_or_show_other_files() {
    let t = tempfile::tempdir().unwrap();
    let app = t.path();
    mkfifo(&app.join("fifo.voc"));
    symlink("/dev/zero", app.join("zero.voc")).unwrap();
    symlink("/etc/passwd", app.join("passwd.voc")).unwrap();
    fs::write(app.join("big.voc"), "#".repeat(5 << 20)).unwrap();
    for (import, allow, expect) in [
        (
            "fifo.voc",
            None,
            "cannot import `fifo.voc`: a FIFO, socket or device, not a regular file",
        ),
        (
            "zero.voc",
            None,
            "cannot import `zero.voc`: it leads to `/dev/zero`, outside",
        ),
        (
            "zero.voc",
            Some("/dev"),
            "cannot import `zero.voc`: a FIFO, socket or device",
        ),
        (
            "big.voc",
            None,
            "cannot import `big.voc`: larger than 4 MiB",
        ),
        (
            "passwd.voc",
            None,
            "cannot import `passwd.voc`: it leads to `/etc/passwd`",
        ),
        (
            "/etc/passwd",
            None,
            "cannot import `/etc/passwd`: not a `.voc` file",
        ),
        (
            "/etc/../etc/hosts.voc",
            None,
            "is outside the appliance's directory",
        ),
    ] {
        fs::write(
            app.join("a.voc"),
            format!("import \"{import}\"\ncluster lab {{\n  {TINY}\n}}\n"),
        )
        .unwrap();
        let mut args = vec!["check", "a.voc"];
        if let Some(a) = allow {
            args.extend(["--allow-path", a]);
        }
        let r = common::run(
            Command::new(env!("CARGO_BIN_EXE_vocc"))
                .args(&args)
                .current_dir(app),
            Duration::from_secs(20),
        );
        assert_eq!(
            r.status.and_then(|s| s.code()),
            Some(1),
            "{import}: {}",
            r.report()
        );
        assert!(r.stderr.contains(expect), "{import}: {}", r.report());
        assert!(!r.stderr.contains("root:x:0"), "{import}: {}", r.report());
    }
    // The top-level file is read the same way.
    let r = common::run(
        Command::new(env!("CARGO_BIN_EXE_vocc"))
            .args(["check", "fifo.voc"])
            .current_dir(app),
        Duration::from_secs(20),
    );
    assert!(r.status.is_some(), "blocked: {}", r.report());
    assert!(!r.success(), "{}", r.report());
}

#[test]
fn check_hashes_pinned_images_and_reports_in_json() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("base.img"), vec![0u8; 4096]).unwrap();
    let wrong = "0".repeat(64);
    fs::write(
        t.path().join("p.voc"),
        format!(
            "cluster pin {{\n  layer base {{ from image \"base.img\"; sha256 \"{wrong}\" }}\n  \
             {TINY}\n}}\n"
        ),
    )
    .unwrap();
    let r = vocc(t.path(), &["check", "p.voc", "--json"]);
    assert_eq!(r.status.and_then(|s| s.code()), Some(1), "{}", r.report());
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    let d = &doc["files"][0]["diagnostics"][0];
    // sha256 of 4096 zero bytes.
    let actual = "ad7facb2586fc6e966c004d7d1d16b024f5805ff7cb47c7a85dabd8b48892ca7";
    assert_eq!(
        d["message"],
        format!("image `base.img` of layer `base` has sha256 `{actual}`, not the pinned `{wrong}`")
    );
    assert_eq!(
        (d["line"].as_u64(), d["col"].as_u64()),
        (Some(2), Some(9)),
        "{d}"
    );
}

/// A busybox root with a `from dir` data disk, built into `store`.
fn appliance(dir: &Path, size: Option<&str>) {
    let size = size.map_or_else(String::new, |s| format!("  size {s}"));
    fs::write(
        dir.join("s.voc"),
        format!(
            "cluster s {{\n  network n {{ subnet 10.33.0.0/24 }}\n  layer tiny {{ from busybox }}\n  \
             layer data {{\n    from dir \"tree\"\n  {size}\n  }}\n  role a {{\n    root tiny\n    \
             disk data at /data\n    nic eth0 n\n  }}\n}}\n"
        ),
    )
    .unwrap();
}

fn debugfs_mode(image: &Path, file: &str) -> String {
    let r = common::run(
        Command::new(common::require("debugfs", "e2fsprogs")).args([
            "-R",
            &format!("stat {file}"),
            &image.to_string_lossy(),
        ]),
        Duration::from_secs(30),
    );
    assert!(r.success(), "{}", r.report());
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains("Mode:"))
        .unwrap_or_else(|| panic!("{}", r.report()));
    line.split("Mode:")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn dir_layers_keep_private_files_private_and_input_failures_are_diagnostics() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/motd"), "hello\n").unwrap();
    fs::write(tree.join("etc/key"), "secret\n").unwrap();
    fs::set_permissions(tree.join("etc/key"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(tree.join("run.sh"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(tree.join("run.sh"), fs::Permissions::from_mode(0o4777)).unwrap();
    appliance(t.path(), None);
    let store = t.path().join("store").to_string_lossy().into_owned();
    let r = vocc(
        t.path(),
        &["build", "s.voc", "-o", "out", "--store", &store],
    );
    assert!(r.success(), "{}", r.report());

    let link = t.path().join("out/layers/s/data.img");
    let object = fs::read_link(&link).unwrap();
    let mode = fs::metadata(&object).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o400,
        "a layer holding a private file is private in the store"
    );
    assert_eq!(debugfs_mode(&object, "/etc/key"), "0600");
    assert_eq!(debugfs_mode(&object, "/etc/motd"), "0644");
    // No set-id bit and no write permission for others survive the copy.
    assert_eq!(debugfs_mode(&object, "/run.sh"), "0755");
    let busybox = fs::read_link(t.path().join("out/layers/s/tiny.img")).unwrap();
    let mode = fs::metadata(busybox).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o444, "other layers stay readable");

    // A `size` too small for the tree is found by the build only: a diagnostic at
    // the layer, exit 1, in text and in JSON.
    appliance(t.path(), Some("8M"));
    let r = vocc(
        t.path(),
        &["build", "s.voc", "-o", "out", "--store", &store],
    );
    assert_eq!(r.status.and_then(|s| s.code()), Some(1), "{}", r.report());
    assert!(r.stderr.contains("s.voc:4:9"), "{}", r.report());
    assert!(
        r.stderr.contains("more than its `size` of 8 MiB"),
        "{}",
        r.report()
    );
    let r = vocc(
        t.path(),
        &["build", "s.voc", "-o", "out", "--store", &store, "--json"],
    );
    assert_eq!(r.status.and_then(|s| s.code()), Some(1), "{}", r.report());
    let doc: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["diagnostics"][0]["line"], 4, "{doc}");
}

#[test]
fn gc_keeps_what_trees_link_whatever_their_manifests_say() {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("tree")).unwrap();
    fs::write(t.path().join("tree/motd"), "hello\n").unwrap();
    appliance(t.path(), None);
    let store = t.path().join("store");
    let s = store.to_string_lossy().into_owned();
    let r = vocc(t.path(), &["build", "s.voc", "-o", "out", "--store", &s]);
    assert!(r.success(), "{}", r.report());
    let linked: Vec<std::path::PathBuf> = ["tiny.img", "tiny.vmlinuz", "tiny.initrd", "data.img"]
        .iter()
        .map(|f| fs::read_link(t.path().join("out/layers/s").join(f)).unwrap())
        .collect();
    let overlay = t.path().join("out/nodes/s-a/root.qcow2");
    assert!(
        fs::metadata(&overlay).unwrap().nlink() >= 2,
        "a hard link to its object"
    );

    // A manifest that lists no images, then none at all.
    let manifest = t.path().join("out/manifest.json");
    let mut m: Value = serde_json::from_slice(&fs::read(&manifest).unwrap()).unwrap();
    m["images"] = Value::Array(Vec::new());
    fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    for round in 0..2 {
        let r = vocc(t.path(), &["gc", "--store", &s, "--json"]);
        assert!(r.success(), "{}", r.report());
        for object in &linked {
            assert!(
                object.exists(),
                "round {round}: gc removed {}",
                object.display()
            );
        }
        let ino = fs::metadata(&overlay).unwrap().ino();
        let kept = fs::read_dir(store.join("objects"))
            .unwrap()
            .flatten()
            .any(|e| e.metadata().unwrap().ino() == ino);
        assert!(kept, "round {round}: gc removed the overlay's object");
        fs::remove_file(&manifest).ok();
    }
    // With the tree gone, everything goes.
    fs::remove_dir_all(t.path().join("out")).unwrap();
    let r = vocc(t.path(), &["gc", "--store", &s, "--json"]);
    assert!(r.success(), "{}", r.report());
    assert_eq!(fs::read_dir(store.join("objects")).unwrap().count(), 0);
}

#[test]
fn packages_bookworm_lacks_are_found_by_check_and_refused_before_mmdebstrap() {
    let lists = vocc_compiler::packages::lists(
        Path::new(vocc_compiler::packages::APT_LISTS),
        "bookworm",
        "amd64",
    );
    assert!(
        !lists.is_empty(),
        "apt has no lists for bookworm: run `apt-get update` (scripts/setup does)"
    );
    let t = tempfile::tempdir().unwrap();
    fs::write(
        t.path().join("p.voc"),
        "cluster p {\n  network n { subnet 10.34.0.0/24 }\n  layer os {\n    from debian \
         \"bookworm\"\n    packages [nfs-common htcondor torque-mom]\n  }\n  role a {\n    \
         root os + [slurmctl mail-transport-agent]\n    nic eth0 n\n  }\n}\n",
    )
    .unwrap();
    let r = vocc(t.path(), &["check", "p.voc"]);
    assert!(r.success(), "warnings only: {}", r.report());
    for (at, what) in [
        ("p.voc:5:26", "`bookworm` has no package `htcondor`"),
        ("p.voc:5:35", "`bookworm` has no package `torque-mom`"),
        ("p.voc:8:16", "`bookworm` has no package `slurmctl`"),
    ] {
        let i = r
            .stderr
            .find(what)
            .unwrap_or_else(|| panic!("{what}: {}", r.report()));
        assert!(r.stderr[i..].contains(at), "{at}: {}", r.report());
    }
    assert!(
        r.stderr.contains("did you mean `slurmctld`?"),
        "{}",
        r.report()
    );
    // `mail-transport-agent` is virtual: provided, so present.
    assert!(
        !r.stderr.contains("mail-transport-agent`"),
        "{}",
        r.report()
    );

    // An image build refuses the layer before it starts one.
    let start = Instant::now();
    let store = t.path().join("store").to_string_lossy().into_owned();
    let r = vocc(
        t.path(),
        &["build", "p.voc", "-o", "out", "--store", &store],
    );
    assert_eq!(r.status.and_then(|s| s.code()), Some(1), "{}", r.report());
    let refused = "error: `bookworm` has no package `htcondor`, `torque-mom`, `slurmctl`";
    let i = r
        .stderr
        .find(refused)
        .unwrap_or_else(|| panic!("{}", r.report()));
    assert!(r.stderr[i..].contains("p.voc:7:8"), "{}", r.report());
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_fifo_or_device_in_a_layer_tree_is_refused_by_check() {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("tree/run")).unwrap();
    fs::write(t.path().join("tree/motd"), "hello\n").unwrap();
    mkfifo(&t.path().join("tree/run/pipe"));
    fs::write(
        t.path().join("f.voc"),
        format!("cluster f {{\n  layer t {{ from dir \"tree\" }}\n  {TINY}\n}}\n"),
    )
    .unwrap();
    let r = common::run(
        Command::new(env!("CARGO_BIN_EXE_vocc"))
            .args(["check", "f.voc"])
            .current_dir(t.path()),
        Duration::from_secs(20),
    );
    assert_eq!(r.status.and_then(|s| s.code()), Some(1), "{}", r.report());
    assert!(
        r.stderr
            .contains("the directory of layer `t` holds `run/pipe`, which is neither a file"),
        "{}",
        r.report()
    );
}
