//! Real programs judge the files vocc generates: slurmctld (with munged on the
//! generated key) reads slurm.conf, libvirt validates and defines the domain XML,
//! dnsmasq checks its configuration, ifupdown parses and dry-runs the interfaces
//! file, and exportfs loads the exports. Each check also runs on a deliberately broken
//! sample that must fail, so that a check that cannot fail is noticed.
//!
//! Several of these programs exit 0 on bad input and only print a warning, so the
//! tests read their output too. The programs run one at a time, each with a time
//! limit; a missing program fails the test naming its Debian package.

mod common;

use common::{file_contains, require, run, serial, Daemon, Ran};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;
use tempfile::TempDir;
use vocc_compiler::build::{build, BuildOptions};
use vocc_compiler::{compile, FsWorld, Options};

const LIMIT: Duration = Duration::from_secs(30);

/// The shipped appliances the checks run on, by short name: (file, site, variables).
fn appliance(name: &str) -> (&'static str, Option<&'static str>, Vec<(String, String)>) {
    match name {
        "osg" => ("appliances/osg.voc", Some("appliances/chiba.voc"), vec![]),
        "pbs" => ("appliances/grid3.voc", Some("appliances/chiba.voc"), vec![]),
        "sge" => ("appliances/gridway-sge.voc", None, vec![]),
        "condor" => ("appliances/voc-condor.voc", None, vec![]),
        "demo" => ("appliances/demo.voc", None, vec![]),
        "osg-elastic" => (
            "appliances/osg-elastic.voc",
            Some("appliances/chiba.voc"),
            vec![("idle".into(), "30s".into())],
        ),
        // A larger Slurm cluster than the seeds': 40 workers, for hostlist ranges.
        "synthetic-40" => (
            "benches/synthetic.voc",
            None,
            vec![("workers".into(), "40".into())],
        ),
        other => panic!("no appliance for `{other}`"),
    }
}

/// Builds the named shipped appliances (configuration only, with real secrets) and
/// gathers their node directories in one place; returns the temporary directory
/// (kept alive by the caller) and that `nodes/` directory.
fn generate(names: &[&str]) -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let nodes = tmp.path().join("nodes");
    fs::create_dir_all(&nodes).unwrap();
    for name in names {
        let (file, site, vars) = appliance(name);
        let options = Options {
            site: site.map(|s| root.join(s)),
            vars,
            ..Default::default()
        };
        let c = compile(&FsWorld, &root.join(file), &options).unwrap();
        let model = c.model.unwrap_or_else(|| panic!("{file} does not compile"));
        let plan =
            vocc_compiler::plan::plan(&model).unwrap_or_else(|_| panic!("{file} does not place"));
        let out = tmp.path().join(format!("out-{name}"));
        let options = BuildOptions {
            out: out.clone(),
            templates: None,
            secrets: tmp.path().join("secrets"),
            config_only: true,
            store: None,
            json_events: false,
        };
        build(&model, plan, &options).unwrap();
        for entry in fs::read_dir(out.join("nodes")).unwrap() {
            let entry = entry.unwrap();
            fs::rename(entry.path(), nodes.join(entry.file_name())).unwrap();
        }
    }
    (tmp, nodes)
}

/// The Slurm controller's files in a generated tree.
fn slurm_head(nodes: &Path, fixture: &str) -> PathBuf {
    let cluster = if fixture == "synthetic-40" {
        "synth"
    } else {
        "osg"
    };
    nodes.join(format!("{cluster}-head/files/etc"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------
// Slurm

/// The keys the test replaces in a generated slurm.conf so that slurmctld runs as an
/// unprivileged test daemon in a temporary directory: everything else (cluster name,
/// controller, nodes, partitions, plugins) is judged as generated.
const SLURM_TEST_KEYS: &[&str] = &[
    "AuthInfo",
    "SlurmUser",
    "SlurmctldPort",
    "SlurmdPort",
    "StateSaveLocation",
    "SlurmdSpoolDir",
    "SlurmctldPidFile",
    "SlurmdPidFile",
    "SlurmctldLogFile",
    "SlurmdLogFile",
];

/// Private ports, different for every slurmctld a test run starts.
static NEXT_PORT: AtomicU16 = AtomicU16::new(46_817);

/// Starts munged on `key` and slurmctld on `conf` (with the test keys replaced) as
/// host `controller`, with `hosts` as /etc/hosts; `Ok` with slurmctld's log once it
/// runs as the primary controller, else its complaint.
fn slurmctld(conf: &str, key: &[u8], hosts: &str, controller: &str) -> Result<String, String> {
    slurmctld_asked(conf, key, hosts, controller, |_| String::new()).map(|(log, _)| log)
}

/// As [`slurmctld`], and once slurmctld runs, `ask` runs with a slurm.conf for its
/// clients (the same file, with the controller reached on this machine); `Ok` with the
/// log and what `ask` returned.
fn slurmctld_asked(
    conf: &str,
    key: &[u8],
    hosts: &str,
    controller: &str,
    ask: impl FnOnce(&Path) -> String,
) -> Result<(String, String), String> {
    let munged = require("munged", "munge");
    require("slurmctld", "slurmctld");
    let unshare = require("unshare", "util-linux");

    let tmp = tempfile::Builder::new()
        .prefix("vocc-slurm")
        .tempdir()
        .unwrap();
    let t = tmp.path();
    // munged refuses a socket directory that others cannot search.
    fs::set_permissions(t, fs::Permissions::from_mode(0o755)).unwrap();
    for d in ["sock", "state", "spool"] {
        fs::create_dir(t.join(d)).unwrap();
        fs::set_permissions(t.join(d), fs::Permissions::from_mode(0o755)).unwrap();
    }
    let key_file = t.join("munge.key");
    fs::write(&key_file, key).unwrap();
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).unwrap();
    let socket = t.join("sock/munge.sock");
    let mut munge = Daemon::spawn(
        Command::new(munged)
            .arg("-F")
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--key-file={}", key_file.display()))
            .arg(format!("--log-file={}", t.join("munged.log").display()))
            .arg(format!("--pid-file={}", t.join("munged.pid").display()))
            .arg(format!("--seed-file={}", t.join("munged.seed").display())),
        &t.join("munged.out"),
    );
    munge
        .wait_until(LIMIT, || socket.exists())
        .map_err(|e| format!("munged: {e}"))?;

    let port = NEXT_PORT.fetch_add(2, Ordering::SeqCst);
    let mut test_conf: String = conf
        .lines()
        .filter(|l| {
            let key = l.split('=').next().unwrap_or_default().trim();
            !SLURM_TEST_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    test_conf.push_str(&format!(
        "AuthInfo=socket={}\nSlurmUser=root\nSlurmctldPort={port}\nSlurmdPort={}\n\
         StateSaveLocation={}\nSlurmdSpoolDir={}\nSlurmctldPidFile={}\nSlurmdPidFile={}\n\
         SlurmctldLogFile={}\nSlurmdLogFile={}\n",
        socket.display(),
        port + 1,
        t.join("state").display(),
        t.join("spool").display(),
        t.join("slurmctld.pid").display(),
        t.join("slurmd.pid").display(),
        t.join("slurmctld.log").display(),
        t.join("slurmd.log").display(),
    ));
    let conf_file = t.join("slurm.conf");
    fs::write(&conf_file, test_conf).unwrap();
    let hosts_file = t.join("hosts");
    fs::write(&hosts_file, hosts).unwrap();

    // Its own mount and UTS namespaces: the cluster's hosts file over /etc/hosts, so
    // node names resolve without stalling, and the controller's host name.
    let mut ctld = Daemon::spawn(
        Command::new(unshare)
            .args(["-mu", "sh", "-c"])
            .arg("mount --bind \"$1\" /etc/hosts && hostname \"$2\" && exec slurmctld -D -f \"$3\"")
            .arg("sh")
            .arg(&hosts_file)
            .arg(controller)
            .arg(&conf_file),
        &t.join("slurmctld.out"),
    );
    let log = t.join("slurmctld.log");
    let marker = "Running as primary controller";
    let result = ctld.wait_until(Duration::from_secs(60), || {
        file_contains(&ctld_out(t), marker) || file_contains(&log, marker)
    });
    let answer = result.as_ref().ok().map(|()| {
        // Clients outside slurmctld's namespaces reach it on this machine.
        let client: String = fs::read_to_string(&conf_file)
            .unwrap()
            .lines()
            .map(|l| match l.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("SlurmctldHost") => {
                    format!("SlurmctldHost={controller}(127.0.0.1)\n")
                }
                _ => format!("{l}\n"),
            })
            .collect();
        let client_file = t.join("client.conf");
        fs::write(&client_file, client).unwrap();
        ask(&client_file)
    });
    drop(ctld);
    drop(munge);
    result.map(|()| {
        let mut text = fs::read_to_string(&log).unwrap_or_default();
        text.push_str(&fs::read_to_string(ctld_out(t)).unwrap_or_default());
        (text, answer.unwrap_or_default())
    })
}

fn ctld_out(t: &Path) -> PathBuf {
    t.join("slurmctld.out")
}

/// The Slurm hostlist expressions of the NodeName lines of `conf`, expanded by Slurm.
fn slurm_node_names(conf: &str, conf_file: &Path) -> Vec<String> {
    let scontrol = require("scontrol", "slurm-client");
    let mut names = Vec::new();
    for line in conf.lines().filter(|l| l.starts_with("NodeName=")) {
        let expr = line["NodeName=".len()..].split_whitespace().next().unwrap();
        let ran = run(
            Command::new(&scontrol)
                .env("SLURM_CONF", conf_file)
                .args(["show", "hostnames", expr]),
            LIMIT,
        );
        assert!(ran.success(), "{}", ran.report());
        names.extend(ran.stdout.lines().map(str::to_owned));
    }
    names
}

#[test]
fn slurmctld_runs_on_the_generated_slurm_conf() {
    let _serial = serial();
    for fixture in ["osg", "synthetic-40"] {
        let (_tmp, nodes) = generate(&[fixture]);
        let head = slurm_head(&nodes, fixture);
        let conf = read(&head.join("slurm/slurm.conf"));
        let key = fs::read(head.join("munge/munge.key")).unwrap();
        let hosts = read(&head.join("hosts"));
        slurmctld(&conf, &key, &hosts, "head").unwrap_or_else(|e| panic!("{fixture}: {e}"));

        // Slurm reads the compressed node names as exactly the workers.
        let workers: Vec<String> = fs::read_dir(&nodes)
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().into_string().ok())
            .filter_map(|n| {
                n.strip_prefix(if fixture == "osg" { "osg-" } else { "synth-" })
                    .filter(|n| n.starts_with("worker"))
                    .map(String::from)
            })
            .collect();
        let mut expanded = slurm_node_names(&conf, &head.join("slurm/slurm.conf"));
        let mut workers = workers;
        expanded.sort();
        workers.sort();
        assert_eq!(expanded, workers, "{fixture}");
    }
}

/// An elastic cluster's slurm.conf: slurmctld takes it, and knows the standby workers
/// as powered-down cloud nodes (not down), the others as nodes it waits to hear from,
/// with power saving on after the appliance's `idle`.
#[test]
fn slurmctld_knows_standby_nodes_as_powered_down_cloud_nodes() {
    let _serial = serial();
    let (_tmp, nodes) = generate(&["osg-elastic"]);
    let head = nodes.join("osg-head/files/etc");
    let conf = read(&head.join("slurm/slurm.conf"));
    assert!(conf.contains("\nSuspendTime=30\n"), "{conf}");
    assert!(conf.contains("\nNodeName=worker[2-3] CPUs=1 RealMemory=360 State=CLOUD\n"));
    let key = fs::read(head.join("munge/munge.key")).unwrap();
    let hosts = read(&head.join("hosts"));
    let scontrol = require("scontrol", "slurm-client");
    let sinfo = require("sinfo", "slurm-client");
    let (log, answer) = slurmctld_asked(&conf, &key, &hosts, "head", |client| {
        let mut said = String::new();
        for node in ["worker1", "worker2", "worker3"] {
            let ran = run(
                Command::new(&scontrol).env("SLURM_CONF", client).args([
                    "show",
                    "node",
                    node,
                    "--oneliner",
                ]),
                LIMIT,
            );
            assert!(ran.success(), "{}", ran.report());
            said.push_str(&ran.stdout);
        }
        let ran = run(
            Command::new(&sinfo).env("SLURM_CONF", client).args([
                "--noheader",
                "--Node",
                "--format=%N %t",
            ]),
            LIMIT,
        );
        assert!(ran.success(), "{}", ran.report());
        said.push_str(&ran.stdout);
        let ran = run(
            Command::new(&scontrol)
                .env("SLURM_CONF", client)
                .args(["show", "config"]),
            LIMIT,
        );
        assert!(ran.success(), "{}", ran.report());
        said.push_str(&ran.stdout);
        said
    })
    .unwrap();
    let state = |node: &str| -> String {
        answer
            .lines()
            .find(|l| l.starts_with(&format!("NodeName={node} ")))
            .and_then(|l| l.split_whitespace().find(|w| w.starts_with("State=")))
            .unwrap_or_else(|| panic!("no state of {node}:\n{answer}\n{log}"))
            .to_owned()
    };
    for node in ["worker2", "worker3"] {
        let s = state(node);
        let flags: Vec<&str> = s["State=".len()..].split('+').collect();
        assert_eq!(flags[0], "IDLE", "{node}: {s}");
        assert!(
            flags.contains(&"CLOUD") && flags.contains(&"POWERED_DOWN"),
            "{node}: {s}"
        );
        // sinfo's short form: idle, powered down.
        assert!(
            answer.lines().any(|l| l == format!("{node} idle~")),
            "{answer}"
        );
    }
    let s = state("worker1");
    assert!(
        !s.contains("CLOUD") && !s.contains("POWERED_DOWN"),
        "worker1: {s}"
    );
    for setting in [
        "SuspendTime             = 30 sec",
        "SuspendExcNodes         = worker1",
        "ResumeProgram           = /bin/true",
    ] {
        assert!(answer.contains(setting), "{setting}\n{answer}");
    }
}

#[test]
fn slurmctld_restricts_a_partition_for_a_vo_to_its_group() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("app.voc");
    // `vocc-no-such-group` is no group of this machine: slurmctld says so when it
    // resolves the partition's AllowGroups, which shows that it read the group.
    fs::write(
        &file,
        r#"cluster osg {
  network private { subnet 10.9.0.0/24 }
  layer tiny { from busybox }
  partition osg for "vocc-no-such-group" default
  partition other
  role head { root tiny; nic eth0 private; scheduler slurm controller }
  role worker { count 2; root tiny; nic eth0 private; scheduler slurm compute partition osg }
  role extra { root tiny; nic eth0 private; scheduler slurm compute partition other }
}
"#,
    )
    .unwrap();
    let c = compile(&FsWorld, &file, &Options::default()).unwrap();
    let model = c.model.expect("the appliance compiles");
    let plan = vocc_compiler::plan::plan(&model).unwrap();
    let out = tmp.path().join("out");
    let options = BuildOptions {
        out: out.clone(),
        templates: None,
        secrets: tmp.path().join("secrets"),
        config_only: true,
        store: None,
        json_events: false,
    };
    build(&model, plan, &options).unwrap();
    let head = out.join("nodes/osg-head/files/etc");
    let conf = read(&head.join("slurm/slurm.conf"));
    let partitions: Vec<&str> = conf
        .lines()
        .filter(|l| l.starts_with("PartitionName="))
        .collect();
    assert_eq!(
        partitions,
        [
            "PartitionName=osg Nodes=worker[1-2] Default=YES AllowGroups=vocc-no-such-group \
             MaxTime=INFINITE State=UP",
            "PartitionName=other Nodes=extra MaxTime=INFINITE State=UP",
        ]
    );
    let key = fs::read(head.join("munge/munge.key")).unwrap();
    let hosts = read(&head.join("hosts"));
    let log = slurmctld(&conf, &key, &hosts, "head").unwrap();
    assert!(
        log.contains("Could not find configured group vocc-no-such-group"),
        "{log}"
    );
}

#[test]
fn slurmctld_rejects_a_broken_slurm_conf() {
    let _serial = serial();
    let (_tmp, nodes) = generate(&["osg"]);
    let head = nodes.join("osg-head/files/etc");
    let conf = read(&head.join("slurm/slurm.conf"));
    let key = fs::read(head.join("munge/munge.key")).unwrap();
    let hosts = read(&head.join("hosts"));

    let bad = conf.replace("CPUs=1 ", "CPUs=one ");
    assert_ne!(bad, conf);
    let err = slurmctld(&bad, &key, &hosts, "head").unwrap_err();
    assert!(err.contains("CPUs value \"one\""), "{err}");

    let bad = conf.replace("Nodes=worker[1-8]", "Nodes=nosuch[1-2]");
    assert_ne!(bad, conf);
    let err = slurmctld(&bad, &key, &hosts, "head").unwrap_err();
    assert!(err.contains("Invalid node names in partition"), "{err}");
}

// ---------------------------------------------------------------------------------
// libvirt

fn libvirt_accepts(xml: &Path) -> Result<(), String> {
    let validate = require("virt-xml-validate", "libvirt-clients");
    let virsh = require("virsh", "libvirt-clients");
    let ran = run(Command::new(validate).arg(xml).arg("domain"), LIMIT);
    if !ran.success() || !ran.output().contains("validates") {
        return Err(ran.report());
    }
    // libvirt's built-in test hypervisor: define the domain as a real host would.
    let ran = run(
        Command::new(virsh)
            .args(["-c", "test:///default", "define", "--validate"])
            .arg(xml),
        LIMIT,
    );
    if !ran.success() || !ran.output().contains("defined from") || ran.output().contains("error") {
        return Err(ran.report());
    }
    Ok(())
}

#[test]
fn libvirt_validates_and_defines_the_domains() {
    let _serial = serial();
    // Only KVM clusters get a libvirt domain (Xen ones get xl.cfg).
    let (_tmp, nodes) = generate(&["condor", "demo"]);
    for node in [
        "voc-head",
        "voc-compute1",
        "voc-compute28",
        "demo-head",
        "demo-worker2",
    ] {
        let xml = nodes.join(node).join("libvirt.xml");
        libvirt_accepts(&xml).unwrap_or_else(|e| panic!("{node}: {e}"));
    }
}

#[test]
fn libvirt_rejects_a_broken_domain() {
    let _serial = serial();
    let (tmp, nodes) = generate(&["condor"]);
    let xml = read(&nodes.join("voc-head/libvirt.xml"));
    for (from, to) in [
        ("<vcpu>1</vcpu>", "<vcpu>one</vcpu>"),
        ("<name>voc-head</name>", ""),
    ] {
        let bad = xml.replace(from, to);
        assert_ne!(bad, xml);
        let file = tmp.path().join("bad.xml");
        fs::write(&file, bad).unwrap();
        assert!(
            libvirt_accepts(&file).is_err(),
            "libvirt took a domain with `{to}`"
        );
    }
}

// ---------------------------------------------------------------------------------
// dnsmasq

fn dnsmasq_accepts(conf: &Path) -> Ran {
    let dnsmasq = require("dnsmasq", "dnsmasq-base");
    run(
        Command::new(dnsmasq).arg("--test").arg("-C").arg(conf),
        LIMIT,
    )
}

#[test]
fn dnsmasq_checks_its_configuration() {
    let _serial = serial();
    let (tmp, nodes) = generate(&["condor", "sge"]);
    for node in ["voc-head", "gridway-front"] {
        let conf = nodes.join(node).join("files/etc/dnsmasq.conf");
        let ran = dnsmasq_accepts(&conf);
        assert!(
            ran.success() && ran.output().contains("syntax check OK"),
            "{}",
            ran.report()
        );
    }

    let conf = read(&nodes.join("voc-head/files/etc/dnsmasq.conf"));
    let bad = conf.replacen("dhcp-host=02:", "dhcp-host=zz:", 1);
    assert_ne!(bad, conf);
    let file = tmp.path().join("bad.conf");
    fs::write(&file, bad).unwrap();
    let ran = dnsmasq_accepts(&file);
    assert!(
        !ran.success() && ran.output().contains("bad hex constant"),
        "{}",
        ran.report()
    );
}

// ---------------------------------------------------------------------------------
// ifupdown

fn ifupdown(file: &Path) -> (Ran, Ran) {
    let ifquery = require("ifquery", "ifupdown");
    let ifup = require("ifup", "ifupdown");
    let state = tempfile::tempdir().unwrap();
    let list = run(
        Command::new(ifquery).arg("-i").arg(file).arg("--list"),
        LIMIT,
    );
    let up = run(
        Command::new(ifup)
            .args(["-n", "-v", "-i"])
            .arg(file)
            .arg(format!("--state-dir={}", state.path().display()))
            .arg("-a"),
        LIMIT,
    );
    (list, up)
}

#[test]
fn ifupdown_reads_the_interfaces() {
    let _serial = serial();
    let (_tmp, nodes) = generate(&["osg", "sge"]);
    let cases: [(&str, &[&str], &[&str]); 3] = [
        (
            "osg-head",
            &["lo", "eth0", "eth1"],
            &[
                "ip addr add 10.20.0.1/255.255.255.0",
                "ip addr add 192.0.2.10/255.255.255.240",
                "ip route add default via 192.0.2.1",
            ],
        ),
        (
            "osg-worker3",
            &["lo", "eth0"],
            &["ip addr add 10.20.0.6/255.255.255.0"],
        ),
        (
            "gridway-bio1",
            &["lo", "eth0"],
            &["ifup: configuring interface eth0=eth0 (inet)"],
        ),
    ];
    for (node, names, actions) in cases {
        let file = nodes.join(node).join("files/etc/network/interfaces");
        let (list, up) = ifupdown(&file);
        assert!(list.success(), "{}", list.report());
        assert_eq!(list.stdout.lines().collect::<Vec<_>>(), names, "{node}");
        assert!(
            up.success() && !up.output().contains("failed"),
            "{}",
            up.report()
        );
        for a in actions {
            assert!(
                up.output().contains(a),
                "{node}: no `{a}` in {}",
                up.report()
            );
        }
    }
}

#[test]
fn ifupdown_rejects_broken_interfaces() {
    let _serial = serial();
    let (tmp, nodes) = generate(&["osg"]);
    let good = read(&nodes.join("osg-head/files/etc/network/interfaces"));
    let file = tmp.path().join("interfaces");

    let bad = good.replacen("    address 10.20.0.1\n", "", 1);
    assert_ne!(bad, good);
    fs::write(&file, bad).unwrap();
    let (_, up) = ifupdown(&file);
    assert!(
        !up.success() && up.output().contains("missing required variable: address"),
        "{}",
        up.report()
    );

    let bad = good.replacen("iface eth0 inet static", "iface eth0 inet statik", 1);
    assert_ne!(bad, good);
    fs::write(&file, bad).unwrap();
    let (list, _) = ifupdown(&file);
    assert!(
        !list.success() && list.output().contains("unknown or no method"),
        "{}",
        list.report()
    );
}

// ---------------------------------------------------------------------------------
// exportfs

/// Loads `exports` with exportfs in a private mount namespace: the file bound over
/// /etc/exports, NFS state on a tmpfs, and the exported paths made on tmpfs mounts
/// over their top directories (which must exist on this machine).
fn exportfs(exports: &Path) -> Ran {
    require("exportfs", "nfs-kernel-server");
    let unshare = require("unshare", "util-linux");
    let text = read(exports);
    let paths: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with('/'))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut tops: Vec<String> = paths
        .iter()
        .filter_map(|p| p.split('/').nth(1))
        .map(|t| format!("/{t}"))
        .collect();
    tops.sort();
    tops.dedup();
    for t in &tops {
        assert!(
            Path::new(t).is_dir(),
            "{t} must exist to mount a tmpfs over it"
        );
    }
    let script = format!(
        "mount --bind \"$1\" /etc/exports && mount -t tmpfs tmpfs /var/lib/nfs && \
         for t in {}; do mount -t tmpfs tmpfs \"$t\" || exit 1; done && mkdir -p {} && exportfs -ra",
        tops.join(" "),
        paths.join(" ")
    );
    run(
        Command::new(unshare)
            .args(["-m", "sh", "-c", &script, "sh"])
            .arg(exports),
        LIMIT,
    )
}

#[test]
fn exportfs_loads_the_exports() {
    let _serial = serial();
    let (_tmp, nodes) = generate(&["osg", "pbs", "condor"]);
    for node in ["osg-head", "grid3-head", "voc-head"] {
        let ran = exportfs(&nodes.join(node).join("files/etc/exports"));
        // exportfs warns (and still exits 0) about options it has to assume.
        assert!(
            ran.success() && !ran.output().contains("exportfs:"),
            "{node}: {}",
            ran.report()
        );
    }
}

#[test]
fn exportfs_rejects_broken_exports() {
    let _serial = serial();
    let (tmp, nodes) = generate(&["osg"]);
    let good = read(&nodes.join("osg-head/files/etc/exports"));
    let file = tmp.path().join("exports");
    fs::write(
        &file,
        good.replacen("no_subtree_check", "no_such_option", 1),
    )
    .unwrap();
    let ran = exportfs(&file);
    assert!(
        !ran.success() && ran.output().contains("unknown keyword"),
        "{}",
        ran.report()
    );
}
