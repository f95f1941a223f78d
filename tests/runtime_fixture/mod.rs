//! Fixtures for the runtime's integration tests: a plan and an output tree made by
//! hand (no compiler), booting this machine's Debian kernel with a tiny initramfs of
//! busybox, the vocc agent and an /init that configures the network from the kernel
//! command line and prints the readiness marker, as the image side's boot hook does.
//! Also: running the `vocc` binary, a global lock so that VM tests run one at a time,
//! and a guard that runs `vocc down` even when a test fails.

#![allow(dead_code)]

use serde_json::json;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use vocc_runtime::plan::{Plan, SCHEMA_VERSION};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A node of a fixture cluster: role, host name, address.
pub struct FixtureNode {
    pub role: &'static str,
    pub hostname: &'static str,
    pub address: &'static str,
    /// Host names of the nodes it waits for.
    pub after: Vec<&'static str>,
}

pub fn demo_nodes() -> Vec<FixtureNode> {
    vec![
        FixtureNode {
            role: "head",
            hostname: "head",
            address: "10.10.0.11",
            after: vec![],
        },
        FixtureNode {
            role: "worker",
            hostname: "worker1",
            address: "10.10.0.12",
            after: vec!["head"],
        },
        FixtureNode {
            role: "worker",
            hostname: "worker2",
            address: "10.10.0.13",
            after: vec!["head"],
        },
    ]
}

fn sha256(path: &Path) -> String {
    let bytes = fs::read(path).unwrap();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The plan of a cluster `name` with `nodes` on host `local`, every node on network
/// `private` with one layer `tiny`; `hypervisor` is `kvm` or `xen`. Written as JSON
/// and read with `load_plan`, as a site would.
pub fn plan(name: &str, nodes: &[FixtureNode], hypervisor: &str, layer_sha: &str) -> Plan {
    let layer = format!("{name}/tiny");
    let stage = format!("stage:local:{layer}");
    let mut steps = vec![json!({
        "id": stage, "action": "stage", "host": "local", "layer": layer,
        "after": [], "reaches": "staged"
    })];
    let mut plan_nodes = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let id = format!("{name}-{}", n.hostname);
        let after: Vec<String> = n.after.iter().map(|h| format!("{name}-{h}")).collect();
        let mut start_after = vec![format!("load:{id}")];
        start_after.extend(after.iter().map(|a| format!("ready:{a}")));
        steps.push(
            json!({"id": format!("load:{id}"), "action": "load", "node": id,
            "after": [stage], "reaches": "loaded"}),
        );
        steps.push(
            json!({"id": format!("start:{id}"), "action": "start", "node": id,
            "after": start_after, "reaches": "running"}),
        );
        steps.push(
            json!({"id": format!("ready:{id}"), "action": "wait_ready", "node": id,
            "after": [format!("start:{id}")], "reaches": "running"}),
        );
        plan_nodes.push(json!({
            "id": id, "cluster": name, "hostname": n.hostname, "role": n.role,
            "index": i + 1, "host": "local", "cpu": 1, "memory": 128u64 << 20,
            "disk": 64u64 << 20, "swap": null, "persistence": "persistent",
            "root": [layer], "disks": [],
            "nics": [{"name": "eth0", "network": "private", "method": "pool",
                      "address": n.address, "mac": format!("52:54:00:00:00:{:02x}", 0x10 + i),
                      "bridge": null}],
            "after": after, "dir": format!("nodes/{id}"), "source": "fixture.voc:1:1"
        }));
    }
    let doc = json!({
        "schema_version": SCHEMA_VERSION,
        "site": "local",
        "store": ".vocc/store",
        "hosts": [{"name": "local", "hypervisors": ["kvm", "xen"], "cpu": 2, "overcommit": 16,
                   "memory": 16u64 << 30, "reserve": 2u64 << 30, "disk": 64u64 << 30,
                   "address": null}],
        "clusters": [{"name": name, "vo": name, "hypervisor": hypervisor, "domain": name,
                      "networks": [{"name": "private", "subnet": "10.10.0.0/24", "assign": "pool",
                                    "gateway": null, "bridge": null, "uplink": false}]}],
        "layers": [{"id": layer, "cluster": name, "name": "tiny", "source": "busybox",
                    "size": 1u64 << 20, "sha256": layer_sha}],
        "nodes": plan_nodes,
        "staging": [{"host": "local", "layer": layer}],
        "steps": steps,
    });
    vocc_runtime::schema::load_plan(&doc.to_string()).expect("the fixture plan loads")
}

/// An output tree for a cluster: `OUT/plan.json`, the layer (a blank 1 MiB image the
/// guests do not mount), its kernel and the fixture initramfs, and per node a config
/// drive (blank) and a kernel command line that carries the node's address and the
/// cluster's hosts for the fixture /init.
pub struct Tree {
    pub dir: tempfile::TempDir,
    pub out: PathBuf,
    pub plan: Plan,
}

pub fn tree(name: &str, nodes: &[FixtureNode], hypervisor: &str) -> Tree {
    let dir = tempfile::Builder::new()
        .prefix("vocc-rt-")
        .tempdir()
        .unwrap();
    let out = dir.path().join("out");
    let layers = out.join("layers").join(name);
    fs::create_dir_all(&layers).unwrap();
    let img = layers.join("tiny.img");
    fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    fs::copy(kernel(), layers.join("tiny.vmlinuz")).unwrap();
    fs::copy(initramfs(), layers.join("tiny.initrd")).unwrap();
    let plan = plan(name, nodes, hypervisor, &sha256(&img));
    let hosts: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}={}", n.hostname, n.address))
        .collect();
    for (n, pn) in nodes.iter().zip(&plan.nodes) {
        let nd = out.join(&pn.dir);
        fs::create_dir_all(&nd).unwrap();
        fs::write(nd.join("cidata.img"), vec![0u8; 64 << 10]).unwrap();
        fs::write(
            nd.join("cmdline"),
            format!(
                "console=ttyS0 rdinit=/init panic=-1 vocc.node={} vocc.hostname={} vocc.ip={}/24 vocc.hosts={}\n",
                pn.id,
                n.hostname,
                n.address,
                hosts.join(",")
            ),
        )
        .unwrap();
        fs::write(nd.join("xen.cfg"), format!("name = \"{}\"\n", pn.id)).unwrap();
    }
    fs::write(
        out.join("plan.json"),
        serde_json::to_string_pretty(&plan).unwrap(),
    )
    .unwrap();
    Tree { dir, out, plan }
}

/// This machine's Debian kernel (the package `linux-image-amd64`).
pub fn kernel() -> PathBuf {
    let mut found: Vec<PathBuf> = fs::read_dir("/boot")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
    });
    found.sort();
    found.pop().expect(
        "no kernel in /boot: the qemu tests boot this machine's kernel (apt-get install \
         linux-image-amd64, as scripts/setup does)",
    )
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec >/dev/console 2>&1 </dev/null
for m in $(cat /modules); do insmod "/lib/modules/$m"; done
node=; name=; ip=; hosts=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	vocc.node=*) node="${arg#vocc.node=}" ;;
	vocc.hostname=*) name="${arg#vocc.hostname=}" ;;
	vocc.ip=*) ip="${arg#vocc.ip=}" ;;
	vocc.hosts=*) hosts="${arg#vocc.hosts=}" ;;
	esac
done
hostname "$name"
echo "127.0.0.1 localhost" >/etc/hosts
for pair in $(echo "$hosts" | tr ',' ' '); do
	echo "${pair#*=} ${pair%%=*}" >>/etc/hosts
done
ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ] && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
ip link set eth0 up
ip addr add "$ip" dev eth0
/bin/vocc-agent /dev/ttyS1 &
echo "vocc: ready $node"
while true; do sleep 3600; done
"#;

const MODULES: &[&str] = &[
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio.ko",
    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/net/core/failover.ko",
    "kernel/drivers/net/net_failover.ko",
    "kernel/drivers/net/virtio_net.ko",
];

/// The fixture initramfs (made once per test process, by busybox's cpio).
pub fn initramfs() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let k = kernel();
        let release = k
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches("vmlinuz-")
            .to_owned();
        // Under the target directory, not the system's temporary one: it outlives the
        // test process (qemu reads it), and the next build's `cargo clean` takes it.
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("vocc-test-initramfs-{}", std::process::id()));
        let tree = base.join("tree");
        let _ = fs::remove_dir_all(&base);
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "lib/modules"] {
            fs::create_dir_all(tree.join(d)).unwrap();
        }
        fs::copy("/bin/busybox", tree.join("bin/busybox")).expect("busybox-static is needed");
        let script = |path: &Path, text: &str| {
            fs::write(path, text).unwrap();
            fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
        };
        script(&tree.join("init"), INIT);
        script(
            &tree.join("bin/vocc-agent"),
            vocc_runtime::agent::GUEST_SCRIPT,
        );
        let mut list = String::new();
        for m in MODULES {
            let name = Path::new(m)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            fs::copy(
                Path::new("/lib/modules").join(&release).join(m),
                tree.join("lib/modules").join(&name),
            )
            .unwrap_or_else(|e| panic!("kernel module {m}: {e}"));
            list.push_str(&name);
            list.push('\n');
        }
        fs::write(tree.join("modules"), list).unwrap();
        let mut entries = Vec::new();
        for e in walkdir::WalkDir::new(&tree).sort_by_file_name() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(&tree).unwrap();
            if !rel.as_os_str().is_empty() {
                entries.push(rel.to_string_lossy().into_owned());
            }
        }
        let out = base.join("initrd.cpio");
        let mut child = Command::new("busybox")
            .args(["cpio", "-o", "-H", "newc"])
            .current_dir(&tree)
            .stdin(Stdio::piped())
            .stdout(fs::File::create(&out).unwrap())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all((entries.join("\n") + "\n").as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
        out
    })
    .clone()
}

/// Runs the `vocc` binary in `dir` with extra environment.
pub fn vocc(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vocc"));
    c.args(args).current_dir(dir).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run vocc")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Holds the machine-wide lock for tests that boot VMs (one at a time, across test
/// binaries too).
pub struct VmLock(fs::File);

pub fn vm_lock() -> VmLock {
    use std::os::unix::io::AsRawFd;
    let f = fs::File::create(std::env::temp_dir().join("vocc-vm-tests.lock")).unwrap();
    // SAFETY: flock on a descriptor we own; blocks until the other test is done.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    VmLock(f)
}

/// A multicast port base of its own for this test process and `salt` (0 to 4: each
/// test file that boots VMs uses its own).
pub fn mcast_base(salt: u32) -> String {
    (20000 + (std::process::id() % 500) * 50 + salt * 10).to_string()
}

/// Runs `vocc down` on drop, so that a failing test leaves no VM behind.
pub struct Down {
    pub dir: PathBuf,
    pub out: PathBuf,
    pub env: Vec<(&'static str, String)>,
}

impl Drop for Down {
    fn drop(&mut self) {
        let out = self.out.to_string_lossy().into_owned();
        let o = vocc(&self.dir, &["down", "--plan", &out], &self.env);
        if !o.status.success() {
            eprintln!("vocc down failed: {}{}", text(&o.stdout), text(&o.stderr));
        }
    }
}

fn sha256_bytes(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Builds a shipped appliance (configuration only) into `dir/out` with a site whose
/// store is `dir/store` (absolute, as the generated xl.cfg and domain XML need), then
/// stands in for the image build: every layer gets an image (and the plan its sha256),
/// a kernel and an initramfs, and every node a config drive.
pub fn built_tree(dir: &Path, appliance: &str, extra: &[&str]) {
    let store = dir.join("store");
    fs::write(
        dir.join("site.voc"),
        format!(
            "site test {{\n  host local {{\n    cpu 2\n    overcommit 16\n    memory 16G\n    reserve 1G\n    disk 64G\n    hypervisor [kvm xen]\n  }}\n  store \"{}\"\n}}\n",
            store.display()
        ),
    )
    .unwrap();
    let appliance = root().join(appliance);
    let appliance = appliance.to_string_lossy();
    let mut args = vec![
        "build",
        &*appliance,
        "--site",
        "site.voc",
        "--config-only",
        "-o",
        "out",
    ];
    args.extend_from_slice(extra);
    let o = vocc(dir, &args, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = dir.join("out");
    let mut plan: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("plan.json")).unwrap()).unwrap();
    for layer in plan["layers"].as_array_mut().unwrap() {
        let (cluster, name) = (
            layer["cluster"].as_str().unwrap().to_owned(),
            layer["name"].as_str().unwrap().to_owned(),
        );
        let bytes = format!("layer {cluster}/{name}\n").into_bytes();
        let d = out.join("layers").join(&cluster);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(format!("{name}.img")), &bytes).unwrap();
        fs::write(d.join(format!("{name}.vmlinuz")), b"kernel").unwrap();
        fs::write(d.join(format!("{name}.initrd")), b"initrd").unwrap();
        layer["sha256"] = serde_json::Value::String(sha256_bytes(&bytes));
    }
    for node in plan["nodes"].as_array().unwrap() {
        let d = out.join(node["dir"].as_str().unwrap());
        fs::write(d.join("cidata.img"), b"cidata").unwrap();
    }
    fs::write(
        out.join("plan.json"),
        serde_json::to_string_pretty(&plan).unwrap(),
    )
    .unwrap();
}
