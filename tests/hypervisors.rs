//! A site whose hosts run different hypervisors: an appliance that names no
//! `hypervisor` lets the site decide, node by node, and each node's domain file, console
//! and disk names are those of the hypervisor of the host it is placed on; an appliance
//! that names one is a constraint placement keeps. The real `vocc` binary builds each
//! case (`--config-only`), and xl's own parser reads the Xen nodes' files.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const SITE: &str = "site mixed {
  host x1 { cpu 2; memory 2G; disk 20G; hypervisor xen }
  host k1 { cpu 2; memory 2G; disk 20G; hypervisor kvm }
}
";

fn cluster(hypervisor: &str) -> String {
    format!(
        "cluster mix {{
  {hypervisor}
  network private {{ subnet 10.30.0.0/24; assign pool }}
  layer tiny {{ from busybox }}
  role worker {{ count 2; root tiny; cpu 1; memory 256M; nic eth0 private }}
}}
"
    )
}

fn build(dir: &Path, appliance: &str) -> Output {
    std::fs::write(dir.join("mix.voc"), appliance).unwrap();
    std::fs::write(dir.join("site.voc"), SITE).unwrap();
    Command::new(env!("CARGO_BIN_EXE_vocc"))
        .args([
            "build",
            "mix.voc",
            "--site",
            "site.voc",
            "--config-only",
            "-o",
            "out",
        ])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run vocc")
}

/// Node id → (host, hypervisor).
fn placed(dir: &Path) -> Vec<(String, String, String)> {
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/plan.json")).unwrap()).unwrap();
    plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_owned(),
                n["host"].as_str().unwrap().to_owned(),
                n["hypervisor"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn without_a_hypervisor_each_node_follows_its_host() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let out = build(dir, &cluster(""));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nodes = placed(dir);
    assert_eq!(
        nodes,
        [
            ("mix-worker1".into(), "x1".into(), "xen".into()),
            ("mix-worker2".into(), "k1".into(), "kvm".into())
        ]
    );
    let node = |id: &str| dir.join("out/nodes").join(id);
    // The Xen node: an xl.cfg (read by xl's own parser) and Xen's console; the KVM
    // node: a libvirt domain and a serial console.
    assert!(node("mix-worker1").join("xen.cfg").is_file());
    assert!(!node("mix-worker1").join("libvirt.xml").exists());
    assert!(node("mix-worker2").join("libvirt.xml").is_file());
    assert!(!node("mix-worker2").join("xen.cfg").exists());
    let cmdline = |id: &str| std::fs::read_to_string(node(id).join("cmdline")).unwrap();
    assert!(
        cmdline("mix-worker1").contains("console=hvc0"),
        "{}",
        cmdline("mix-worker1")
    );
    assert!(
        cmdline("mix-worker2").contains("console=ttyS0"),
        "{}",
        cmdline("mix-worker2")
    );
    let xen = std::fs::read_to_string(node("mix-worker1").join("xen.cfg")).unwrap();
    assert!(xen.contains("xvda"), "{xen}");
    let xml = std::fs::read_to_string(node("mix-worker2").join("libvirt.xml")).unwrap();
    assert!(
        xml.contains("dev='vda'") || xml.contains("dev=\"vda\""),
        "{xml}"
    );
    // xl's own parser (libxlutil) reads the Xen node's file: its disks are Xen's.
    let judge = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/judges/xl_cfg.py");
    let read = Command::new("python3")
        .arg(&judge)
        .arg(node("mix-worker1").join("xen.cfg"))
        .args(["disk", "cmdline"])
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "xl's parser: {}",
        String::from_utf8_lossy(&read.stderr)
    );
    let got: Value = serde_json::from_slice(&read.stdout).unwrap();
    let disks: Vec<&str> = got["disk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(disks.iter().any(|d| d.contains("xvda")), "{got}");
    assert!(
        got["cmdline"].as_str().unwrap().contains("console=hvc0"),
        "{got}"
    );
}

#[test]
fn a_hypervisor_the_appliance_names_is_a_constraint() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let out = build(dir, &cluster("hypervisor kvm"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (id, host, hv) in placed(dir) {
        assert_eq!((host.as_str(), hv.as_str()), ("k1", "kvm"), "{id}");
    }
    // Three nodes of 1 GiB do not fit the one KVM host: placement says so rather than
    // putting one on the Xen host.
    let big = cluster("hypervisor kvm")
        .replace("memory 256M", "memory 1G")
        .replace("count 2", "count 3");
    let out = build(dir, &big);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("kvm"), "{said}");
}

#[test]
fn a_pinned_node_runs_on_its_own_host_cpus_in_both_domain_files() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    // Two pinned workers per host: each gets one of the host's two CPUs.
    let appliance = "cluster mix {
  network private { subnet 10.30.0.0/24; assign pool }
  layer tiny { from busybox }
  role worker { count 4; root tiny; cpu 1 pinned; memory 256M; nic eth0 private }
}
";
    let out = build(dir, appliance);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out/plan.json")).unwrap()).unwrap();
    let mut per_host: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for n in plan["nodes"].as_array().unwrap() {
        let cpus: Vec<u64> = n["cpus"]
            .as_array()
            .unwrap_or_else(|| panic!("{} is not pinned: {n}", n["id"]))
            .iter()
            .map(|c| c.as_u64().unwrap())
            .collect();
        per_host
            .entry(n["host"].as_str().unwrap().to_owned())
            .or_default()
            .extend(cpus);
    }
    for cpus in per_host.values_mut() {
        cpus.sort();
    }
    assert_eq!(
        per_host.into_iter().collect::<Vec<_>>(),
        [("k1".to_owned(), vec![0, 1]), ("x1".to_owned(), vec![0, 1])]
    );
    let node = |id: &str| dir.join("out/nodes").join(id);
    for (id, _, hypervisor) in placed(dir) {
        let cpus = plan["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id.as_str())
            .unwrap()["cpus"][0]
            .to_string();
        if hypervisor == "xen" {
            // xl's own parser reads the CPU list xl pins the domain's vCPUs to.
            let judge = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/judges/xl_cfg.py");
            let read = Command::new("python3")
                .arg(&judge)
                .arg(node(&id).join("xen.cfg"))
                .arg("cpus")
                .output()
                .unwrap();
            assert!(read.status.success(), "{id}: xl's parser failed");
            let got: Value = serde_json::from_slice(&read.stdout).unwrap();
            assert_eq!(got["cpus"].as_str(), Some(cpus.as_str()), "{id}: {got}");
        } else {
            // libvirt's schema and its test driver take the domain with its cpuset.
            let xml = node(&id).join("libvirt.xml");
            let text = std::fs::read_to_string(&xml).unwrap();
            assert!(text.contains(&format!("cpuset='{cpus}'")), "{id}: {text}");
            let ran = Command::new("virt-xml-validate")
                .arg(&xml)
                .arg("domain")
                .output()
                .expect("virt-xml-validate (libvirt-clients)");
            assert!(ran.status.success(), "{id}: {ran:?}");
            let ran = Command::new("virsh")
                .args(["-c", "test:///default", "define", "--validate"])
                .arg(&xml)
                .output()
                .expect("virsh (libvirt-clients)");
            assert!(
                ran.status.success() && String::from_utf8_lossy(&ran.stdout).contains("defined"),
                "{id}: {ran:?}"
            );
        }
    }
}
