//! The libvirt driver against a real libvirt: `qemu:///session` as an unprivileged
//! user (as root, the test runs `vocc` as `nobody` through `setpriv`, with its own
//! HOME and XDG_RUNTIME_DIR; libvirt starts a session daemon for it). One node boots
//! the fixture kernel and initramfs under TCG (a session has no KVM here) with its
//! serial console in a file, so readiness is the real marker; then suspend, resume,
//! shutdown (then destroy), and down (destroy, undefine).
//!
//! The domain XML is the fixture's own: the compiler's declares `type='kvm'` and a
//! libvirt network per cluster network, which a session on this machine does not have.

mod runtime_fixture;

use runtime_fixture::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const NOBODY: u32 = 65534;

fn as_user(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    let mut c = if root {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_vocc"),
        ]);
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_vocc"))
    };
    c.args(args).current_dir(dir).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run vocc")
}

fn chown_all(path: &Path) {
    for e in walkdir::WalkDir::new(path) {
        let e = e.unwrap();
        std::os::unix::fs::lchown(e.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    }
}

fn observed(dir: &Path, env: &[(&str, String)]) -> (String, String) {
    let o = as_user(dir, &["status", "--json"], env);
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&o.stdout), text(&o.stderr)));
    let n = &v["clusters"][0]["nodes"][0];
    (
        n["state"].as_str().unwrap().to_owned(),
        n["observed"].as_str().unwrap_or("-").to_owned(),
    )
}

#[test]
fn the_libvirt_lifecycle_runs_on_a_qemu_session() {
    let _lock = vm_lock();
    let nodes = vec![FixtureNode {
        role: "head",
        hostname: "head",
        address: "10.10.0.11",
        after: vec![],
    }];
    let t = tree("ls", &nodes, "kvm");
    let dir = t.dir.path();
    let out = &t.out;
    let id = "ls-head";
    let console = dir.join("console");
    std::fs::create_dir_all(&console).unwrap();
    let store = out.join(".vocc/store");
    let node_store = store.join("nodes").join(id);
    let cmdline = std::fs::read_to_string(out.join("nodes").join(id).join("cmdline")).unwrap();
    let xml = format!(
        "<domain type='qemu'>\n  <name>{id}</name>\n  <memory unit='MiB'>128</memory>\n  <vcpu>1</vcpu>\n  \
         <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n    <kernel>{k}</kernel>\n    <initrd>{i}</initrd>\n    \
         <cmdline>{c}</cmdline>\n  </os>\n  <devices>\n    \
         <disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      <source file='{r}'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n    \
         <interface type='user'>\n      <mac address='52:54:00:00:00:10'/>\n      <model type='virtio'/>\n    </interface>\n    \
         <serial type='file'>\n      <source path='{log}'/>\n      <target port='0'/>\n    </serial>\n  </devices>\n</domain>\n",
        k = store.join("layers/ls/tiny.vmlinuz").display(),
        i = store.join("layers/ls/tiny.initrd").display(),
        c = cmdline.trim(),
        r = node_store.join("root.qcow2").display(),
        log = console.join(format!("{id}.log")).display(),
    );
    std::fs::write(out.join("nodes").join(id).join("libvirt.xml"), xml).unwrap();
    let home = dir.join("home");
    let run = dir.join("run");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        chown_all(dir);
    }
    let env = vec![
        ("HOME", home.to_string_lossy().into_owned()),
        ("XDG_RUNTIME_DIR", run.to_string_lossy().into_owned()),
        ("VOCC_LIBVIRT_URI", "qemu:///session".to_owned()),
        (
            "VOCC_LIBVIRT_CONSOLE_DIR",
            console.to_string_lossy().into_owned(),
        ),
    ];
    struct Down<'a>(&'a Path, &'a [(&'a str, String)]);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let o = as_user(self.0, &["down"], self.1);
            if !o.status.success() {
                eprintln!("down: {}{}", text(&o.stdout), text(&o.stderr));
            }
        }
    }
    let _down = Down(dir, &env);

    let o = as_user(
        dir,
        &["up", "out", "--driver", "libvirt", "--timeout", "240"],
        &env,
    );
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(observed(dir, &env), ("running".into(), "running".into()));
    let log = std::fs::read_to_string(console.join(format!("{id}.log"))).unwrap();
    assert!(log.contains("vocc: ready ls-head"), "{log}");

    for (op, state, seen) in [
        ("pause", "paused", "paused"),
        ("unpause", "running", "running"),
        ("stop", "stopped", "defined"),
    ] {
        let args = if op == "stop" {
            vec![op, "--grace", "2"]
        } else {
            vec![op]
        };
        let o = as_user(dir, &args, &env);
        assert!(
            o.status.success(),
            "{op}: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        assert_eq!(
            observed(dir, &env),
            (state.into(), seen.into()),
            "after {op}"
        );
    }
    let o = as_user(dir, &["down"], &env);
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    // The domain is undefined: the session no longer knows it.
    // SAFETY: getuid has no preconditions.
    let mut virsh = if unsafe { libc::getuid() } == 0 {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "virsh"]);
        c
    } else {
        Command::new("virsh")
    };
    let o = virsh
        .args(["-c", "qemu:///session", "list", "--all", "--name"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(!text(&o.stdout).contains(id), "{}", text(&o.stdout));
    assert!(!node_store.exists());
}
