//! Images, judged by the real tools: `vocc build` (without `--config-only`) makes
//! layers, overlays and config drives that `qemu-img`, `e2fsck`, `xorriso` and
//! `debugfs` accept; two clean builds agree bit for bit; rebuilds reuse the store and
//! say what they rebuilt and why; a demo node boots under qemu (TCG) to its readiness
//! marker; `vocc gc` keeps what output trees use.
//!
//! The Debian test (osg) builds a layer of about 100 s once: its store survives
//! between runs (`VOCC_TEST_STORE`, default `target/vocc-test-store`).

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The store tests share (kernel download, layers); a test that needs a clean store
/// makes its own.
fn shared_store() -> PathBuf {
    std::env::var_os("VOCC_TEST_STORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/vocc-test-store"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn vocc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vocc"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run vocc")
}

/// Runs a tool and returns its output, failing the test if it cannot start.
fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (run scripts/setup): {e}"))
}

/// `vocc build FILE -o OUT --store STORE --json ...` in `dir`; returns the manifest.
fn build(dir: &Path, file: &str, out: &str, store: &Path, extra: &[&str]) -> Value {
    let store = store.to_string_lossy();
    let mut args = vec!["build", file, "-o", out, "--store", &store, "--json"];
    args.extend(extra);
    let o = vocc(dir, &args);
    assert!(
        o.status.success(),
        "vocc {args:?} failed:\n{}",
        text(&o.stderr)
    );
    let manifest = std::fs::read(dir.join(out).join("manifest.json")).unwrap();
    serde_json::from_slice(&manifest).unwrap()
}

fn images(manifest: &Value) -> Vec<&Value> {
    manifest["images"]
        .as_array()
        .expect("the manifest lists images")
        .iter()
        .collect()
}

fn of_kind<'a>(manifest: &'a Value, kind: &str) -> Vec<&'a Value> {
    images(manifest)
        .into_iter()
        .filter(|i| i["kind"] == kind)
        .collect()
}

fn demo() -> String {
    root()
        .join("appliances/demo.voc")
        .to_string_lossy()
        .into_owned()
}

fn sha256_of(path: &Path) -> String {
    let o = run("sha256sum", &[&path.to_string_lossy()]);
    text(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn demo_images_pass_the_real_tools() {
    let t = tempfile::tempdir().unwrap();
    let m = build(t.path(), &demo(), "out", &shared_store(), &[]);
    let out = t.path().join("out");

    // Every artifact is where the manifest says, with the bytes it says.
    for i in images(&m) {
        let p = out.join(i["path"].as_str().unwrap());
        assert_eq!(
            sha256_of(&p),
            i["sha256"].as_str().unwrap(),
            "{}",
            p.display()
        );
        assert!(i["source"].as_str().unwrap().contains("demo.voc:"), "{i}");
    }
    let layers = of_kind(&m, "layer");
    assert_eq!(layers.len(), 1, "one shared layer: {layers:?}");
    assert_eq!(of_kind(&m, "kernel").len(), 1);
    assert_eq!(of_kind(&m, "initrd").len(), 1);
    assert_eq!(of_kind(&m, "overlay").len(), 3);
    assert_eq!(of_kind(&m, "config-drive").len(), 3);

    // The layer: a clean ext4 file system, read-only in the store.
    let layer = out.join("layers/demo/tiny.img");
    let fsck = run("e2fsck", &["-fn", &layer.to_string_lossy()]);
    assert!(
        fsck.status.success(),
        "{}{}",
        text(&fsck.stdout),
        text(&fsck.stderr)
    );
    let target = std::fs::canonicalize(&layer).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o444
    );

    // Each overlay: qemu-img is happy, and it is backed by the shared layer (raw).
    for node in ["demo-head", "demo-worker1", "demo-worker2"] {
        let overlay = out.join(format!("nodes/{node}/root.qcow2"));
        let o = overlay.to_string_lossy();
        let check = run("qemu-img", &["check", "-f", "qcow2", &o]);
        assert!(
            check.status.success(),
            "{}{}",
            text(&check.stdout),
            text(&check.stderr)
        );
        let info = run(
            "qemu-img",
            &["info", "--backing-chain", "--output=json", &o],
        );
        assert!(info.status.success(), "{}", text(&info.stderr));
        let chain: Value = serde_json::from_slice(&info.stdout).unwrap();
        let chain = chain.as_array().unwrap();
        assert_eq!(chain.len(), 2, "{chain:?}");
        assert_eq!(chain[0]["format"], "qcow2");
        assert_eq!(chain[0]["backing-filename"], "../../layers/demo/tiny.img");
        assert_eq!(chain[0]["backing-filename-format"], "raw");
        assert_eq!(chain[1]["format"], "raw");
        assert_eq!(chain[0]["virtual-size"], chain[1]["virtual-size"]);
        assert_eq!(
            std::fs::canonicalize(chain[1]["filename"].as_str().unwrap()).unwrap(),
            target
        );
        // The config drive holds the node's host name, for vocc and for cloud-init.
        let drive = out.join(format!("nodes/{node}/cidata.img"));
        let got = t.path().join(format!("{node}.hostname"));
        let x = run(
            "xorriso",
            &[
                "-no_rc",
                "-osirrox",
                "on",
                "-indev",
                &drive.to_string_lossy(),
                "-extract",
                "/vocc/files/etc/hostname",
                &got.to_string_lossy(),
                "-pvd_info",
            ],
        );
        assert!(x.status.success(), "{}", text(&x.stderr));
        let hostname = node.trim_start_matches("demo-");
        assert_eq!(std::fs::read_to_string(&got).unwrap().trim(), hostname);
        assert!(
            text(&x.stdout).contains("Volume Id    : cidata"),
            "{}",
            text(&x.stdout)
        );
        let meta = t.path().join(format!("{node}.meta"));
        let x = run(
            "xorriso",
            &[
                "-no_rc",
                "-osirrox",
                "on",
                "-indev",
                &drive.to_string_lossy(),
                "-extract",
                "/meta-data",
                &meta.to_string_lossy(),
            ],
        );
        assert!(x.status.success(), "{}", text(&x.stderr));
        let meta = std::fs::read_to_string(&meta).unwrap();
        assert!(
            meta.contains(&format!("local-hostname: {hostname}.demo")),
            "{meta}"
        );
    }

    // The plan knows the built layer, its kernel, and each node's root image.
    let plan: Value =
        serde_json::from_slice(&std::fs::read(out.join("plan.json")).unwrap()).unwrap();
    let l = &plan["layers"][0];
    assert_eq!(l["sha256"], layers[0]["sha256"]);
    assert_eq!(l["image"], "layers/demo/tiny.img");
    assert_eq!(l["kernel"], "layers/demo/tiny.vmlinuz");
    assert_eq!(l["initrd"], "layers/demo/tiny.initrd");
    for n in plan["nodes"].as_array().unwrap() {
        assert_eq!(n["root_image"], "demo/tiny");
    }
    let check = vocc(&out, &["check", &demo()]);
    assert!(check.status.success());
}

#[test]
fn two_clean_builds_in_two_stores_agree_bit_for_bit() {
    let t = tempfile::tempdir().unwrap();
    let a = build(t.path(), &demo(), "a", &t.path().join("store-a"), &[]);
    let b = build(t.path(), &demo(), "b", &t.path().join("store-b"), &[]);
    let hashes = |m: &Value| -> BTreeMap<String, String> {
        images(m)
            .into_iter()
            .map(|i| {
                (
                    i["path"].as_str().unwrap().to_owned(),
                    i["sha256"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let (ha, hb) = (hashes(&a), hashes(&b));
    assert_eq!(ha.len(), 3 + 3 * 2, "{ha:?}");
    assert_eq!(ha, hb);
    for i in images(&a) {
        assert_eq!(i["cache"], "built", "a clean store builds everything: {i}");
    }
}

#[test]
fn a_noop_rebuild_hits_the_cache_and_an_edit_rebuilds_only_its_role() {
    let t = tempfile::tempdir().unwrap();
    let text_of = std::fs::read_to_string(demo()).unwrap();
    std::fs::write(t.path().join("demo.voc"), &text_of).unwrap();
    let store = shared_store();
    build(t.path(), "demo.voc", "out", &store, &[]);
    let again = build(t.path(), "demo.voc", "out", &store, &[]);
    for i in images(&again) {
        assert_eq!(i["cache"], "hit", "{i}");
        assert!(i.get("reason").is_none(), "{i}");
    }

    // The workers mount elsewhere: their fstab, so their config drives, change.
    let edited = text_of.replace("at /mnt/share", "at /mnt/data");
    assert_ne!(edited, text_of);
    std::fs::write(t.path().join("demo.voc"), edited).unwrap();
    let after = build(t.path(), "demo.voc", "out", &store, &[]);
    for i in images(&after) {
        let worker_drive =
            i["kind"] == "config-drive" && i["node"].as_str().unwrap().contains("worker");
        if worker_drive {
            // Built now, or by an earlier run into the shared store: either way the
            // manifest says what changed.
            let why = i["reason"].as_str().unwrap_or_default();
            assert_eq!(why, "changed: files ~vocc/files/etc/fstab", "{i}");
        } else {
            assert_eq!(i["cache"], "hit", "{i}");
            assert!(i.get("reason").is_none(), "{i}");
        }
    }
}

#[test]
fn a_demo_node_boots_under_tcg_to_its_readiness_marker() {
    let t = tempfile::tempdir().unwrap();
    build(t.path(), &demo(), "out", &shared_store(), &[]);
    let out = t.path().join("out");
    let node = out.join("nodes/demo-head");
    // A writable copy of the overlay beside it (its backing path is relative).
    let disk = node.join("boot.qcow2");
    std::fs::copy(node.join("root.qcow2"), &disk).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&disk, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cmdline = std::fs::read_to_string(node.join("cmdline")).unwrap();
    let log = t.path().join("console.log");
    let port = 20000 + (std::process::id() % 20000);
    let p = |p: &Path| p.to_string_lossy().into_owned();
    let args = [
        "-machine".to_owned(),
        "q35".into(),
        "-accel".into(),
        "tcg,tb-size=128".into(),
        "-cpu".into(),
        "max".into(),
        "-smp".into(),
        "1".into(),
        "-m".into(),
        "256".into(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
        "-serial".into(),
        format!("file:{}", p(&log)),
        "-kernel".into(),
        p(&out.join("layers/demo/tiny.vmlinuz")),
        "-initrd".into(),
        p(&out.join("layers/demo/tiny.initrd")),
        "-append".into(),
        format!("{} panic=-1", cmdline.trim()),
        "-drive".into(),
        format!("file={},format=qcow2,if=virtio", p(&disk)),
        "-drive".into(),
        format!(
            "file={},format=raw,if=virtio,readonly=on",
            p(&node.join("cidata.img"))
        ),
        "-netdev".into(),
        format!("socket,id=n0,mcast=230.0.0.1:{port},localaddr=127.0.0.1"),
        "-device".into(),
        "virtio-net-pci,netdev=n0".into(),
    ];
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run qemu-system-x86_64 (run scripts/setup)");
    let started = std::time::Instant::now();
    let mut console = String::new();
    while started.elapsed() < std::time::Duration::from_secs(180) {
        std::thread::sleep(std::time::Duration::from_millis(500));
        console = text(&std::fs::read(&log).unwrap_or_default());
        if console.contains("vocc: ready") || console.contains("boot failed") {
            break;
        }
        if let Ok(Some(_)) = qemu.try_wait() {
            break;
        }
    }
    let _ = qemu.kill();
    let status = qemu.wait_with_output().unwrap();
    assert!(
        console.contains("vocc: configured demo-head") && console.contains("vocc: ready demo-head"),
        "no readiness marker after {:?}:\n{}\n{}",
        started.elapsed(),
        console
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n"),
        text(&status.stderr)
    );
}

#[test]
fn gc_keeps_what_output_trees_use_and_removes_the_rest() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let m = build(t.path(), &demo(), "out", &store, &[]);
    let gc = |args: &[&str]| {
        let s = store.to_string_lossy();
        let mut all = vec!["gc", "--store", &s, "--json"];
        all.extend(args);
        let o = vocc(t.path(), &all);
        assert!(o.status.success(), "{}", text(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    let kept = gc(&[]);
    assert_eq!(kept["objects_removed"], 0, "{kept}");
    for i in images(&m) {
        assert!(store
            .join("objects")
            .join(i["sha256"].as_str().unwrap())
            .exists());
    }
    // A second tree of the same cluster uses the same objects.
    build(t.path(), &demo(), "out2", &store, &[]);
    std::fs::remove_dir_all(t.path().join("out")).unwrap();
    let kept = gc(&[]);
    assert_eq!(kept["objects_removed"], 0, "{kept}");
    assert_eq!(kept["roots_removed"], 1, "{kept}");
    std::fs::remove_dir_all(t.path().join("out2")).unwrap();
    let freed = gc(&[]);
    assert!(freed["objects_removed"].as_u64().unwrap() >= 7, "{freed}");
    assert_eq!(std::fs::read_dir(store.join("objects")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(store.join("index")).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(store.join("cache/kernel"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_dir())
            .count(),
        0
    );
}

#[test]
fn a_missing_tool_is_named_with_its_package() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let o = Command::new(env!("CARGO_BIN_EXE_vocc"))
        .args([
            "build",
            &demo(),
            "-o",
            "out",
            "--store",
            &store.to_string_lossy(),
        ])
        .current_dir(t.path())
        .env("PATH", t.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("is not installed: apt-get install"), "{err}");
    assert!(!t.path().join("out/nodes").exists() || !t.path().join("out/manifest.json").exists());
}

#[test]
fn pinned_images_are_verified_and_used_as_they_are() {
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("base.qcow2");
    let made = run(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", &img.to_string_lossy(), "16M"],
    );
    assert!(made.status.success());
    let sha = sha256_of(&img);
    let appliance = |sha: &str| {
        format!(
            "cluster pin {{\n  network n {{ subnet 10.31.0.0/24 }}\n  layer tiny {{ from busybox }}\n  \
             layer base {{ from image \"base.qcow2\"; sha256 \"{sha}\" }}\n  role a {{\n    root tiny\n    \
             disk base at /opt/base rw\n    nic eth0 n\n  }}\n}}\n"
        )
    };
    std::fs::write(t.path().join("pin.voc"), appliance(&sha)).unwrap();
    let m = build(t.path(), "pin.voc", "out", &shared_store(), &[]);
    let layer = images(&m)
        .into_iter()
        .find(|i| i["path"] == "layers/pin/base.img")
        .unwrap()
        .clone();
    assert_eq!(
        layer["sha256"],
        sha.as_str(),
        "the layer is the image itself"
    );
    assert_eq!(layer["format"], "qcow2");
    let overlay = t.path().join("out/nodes/pin-a/base.qcow2");
    let info = run(
        "qemu-img",
        &[
            "info",
            "--backing-chain",
            "--output=json",
            &overlay.to_string_lossy(),
        ],
    );
    let chain: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(chain[0]["backing-filename-format"], "qcow2");
    assert_eq!(chain[1]["format"], "qcow2");

    let wrong = "0".repeat(64);
    std::fs::write(t.path().join("pin.voc"), appliance(&wrong)).unwrap();
    let o = vocc(
        t.path(),
        &[
            "build",
            "pin.voc",
            "-o",
            "out",
            "--store",
            &shared_store().to_string_lossy(),
        ],
    );
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains(&sha) && err.contains(&wrong) && err.contains("pin.voc:"),
        "{err}"
    );
}

#[test]
fn a_root_with_a_stacked_dir_is_its_own_layer_in_the_plan() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("extra/etc")).unwrap();
    std::fs::write(t.path().join("extra/etc/motd"), "stacked\n").unwrap();
    std::fs::write(
        t.path().join("d.voc"),
        "cluster d {\n  network n { subnet 10.32.0.0/24 }\n  layer tiny { from busybox }\n  \
         layer extra { from dir \"extra\" }\n  role a {\n    count 2\n    root tiny + extra\n    \
         nic eth0 n\n  }\n  role b {\n    root tiny\n    nic eth0 n\n  }\n}\n",
    )
    .unwrap();
    let m = build(t.path(), "d.voc", "out", &shared_store(), &[]);
    let plan: Value =
        serde_json::from_slice(&std::fs::read(t.path().join("out/plan.json")).unwrap()).unwrap();
    let derived = plan["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == "d/tiny+a")
        .expect("a derived layer");
    assert!(
        derived["sha256"].is_string() && derived["kernel"].is_string(),
        "{derived}"
    );
    for n in plan["nodes"].as_array().unwrap() {
        let want = if n["role"] == "a" {
            "d/tiny+a"
        } else {
            "d/tiny"
        };
        assert_eq!(n["root_image"], want, "{n}");
    }
    assert!(plan["staging"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["layer"] == "d/tiny+a"));
    let load = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "load:d-a1")
        .unwrap();
    assert!(load["after"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a.as_str().unwrap().ends_with(":d/tiny+a")));
    let layer = t.path().join("out/layers/d/tiny+a.img");
    let motd = run(
        "debugfs",
        &["-R", "cat /etc/motd", &layer.to_string_lossy()],
    );
    assert_eq!(text(&motd.stdout), "stacked\n");
    let overlays = of_kind(&m, "overlay");
    assert!(overlays.iter().any(|o| o["layer"] == "d/tiny+a"));
    // The runtime's plan loader accepts the extended plan.
    let o = vocc(t.path(), &["check", "d.voc"]);
    assert!(o.status.success());
}

#[test]
fn osg_shares_one_debian_layer_that_carries_no_machine_identity() {
    let t = tempfile::tempdir().unwrap();
    let osg = root().join("appliances/osg.voc");
    let m = build(
        t.path(),
        &osg.to_string_lossy(),
        "out",
        &shared_store(),
        &[],
    );
    let layers = of_kind(&m, "layer");
    let roots: Vec<&&Value> = layers
        .iter()
        .filter(|l| l["path"].as_str().unwrap().starts_with("layers/osg/os"))
        .collect();
    assert_eq!(
        roots.len(),
        1,
        "one Debian root layer for every node: {roots:?}"
    );
    let os = roots[0];
    let overlays = of_kind(&m, "overlay");
    assert_eq!(overlays.len(), 9, "the head and 8 workers");
    for o in &overlays {
        assert_eq!(o["layer"], os["layer"], "{o}");
    }
    let image = t.path().join("out").join(os["path"].as_str().unwrap());
    let image = image.to_string_lossy();
    let fsck = run("e2fsck", &["-fn", &image]);
    assert!(fsck.status.success(), "{}", text(&fsck.stdout));
    // debugfs exits 0 whatever happens: read what it says.
    let ssh = run("debugfs", &["-R", "ls -l /etc/ssh", &image]);
    assert!(
        !text(&ssh.stdout).contains("ssh_host_"),
        "{}",
        text(&ssh.stdout)
    );
    let id = run("debugfs", &["-R", "stat /etc/machine-id", &image]);
    let (out, err) = (text(&id.stdout), text(&id.stderr));
    assert!(
        out.contains("Size: 0") || err.contains("File not found"),
        "{out}{err}"
    );
    let hook = run("debugfs", &["-R", "cat /usr/lib/vocc/hook.sh", &image]);
    assert!(text(&hook.stdout).contains("vocc: configured"));
    let munge = run("debugfs", &["-R", "ls /etc/munge", &image]);
    assert!(
        !text(&munge.stdout).contains("munge.key"),
        "no secret in a shared layer"
    );
    // Read-only data disks are layers of their own.
    assert!(layers.iter().any(|l| l["path"] == "layers/osg/vdt.img"));
}
