//! A site of several hosts, as an operator runs it: the lab's site file says how vocc
//! reaches the hosts (SSH, or the lab's Slurm), `vocc build` places the demo cluster on
//! them, `vocc up --until staged` puts every layer the nodes need on the hosts that run
//! them, verified, and `vocc down` leaves nothing on any host. Over SSH, the hosts do
//! not have vocc-host yet: vocc installs its own first.

mod common;

use common::lab::Lab;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `vocc-host`, built beside `vocc` by `cargo test --workspace` (the runtime's own
/// tests need it too).
fn host_program() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_vocc")).with_file_name("vocc-host");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build -p vocc-runtime --bin vocc-host` (or the whole \
         workspace's tests)",
        p.display()
    );
    p
}

fn vocc(args: &[&str]) -> common::Ran {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vocc"));
    cmd.args(args);
    common::run(&mut cmd, Duration::from_secs(300))
}

/// `install`: the site names a program path where nothing is yet, and vocc puts its own
/// vocc-host there (checked by its sha256) before staging.
fn stage_and_remove(way: &str, site_file: &str, install: bool) {
    let _serial = common::serial();
    let name = format!("site-{way}");
    let program = if install {
        Lab::dir_for(&name).join("bin/vocc-host")
    } else {
        host_program()
    };
    let lab = Lab::up_with(
        &name,
        3,
        "100mbit",
        &["--host-program", &program.display().to_string()],
    );
    let out = lab.dir.join("out");
    // The tests' image store: layers and kernels are built (and downloaded) once.
    let store = std::env::var_os("VOCC_TEST_STORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vocc-test-store"));
    let site = lab.dir.join(site_file);
    let (out_s, store_s, site_s) = (
        out.display().to_string(),
        store.display().to_string(),
        site.display().to_string(),
    );
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/appliances/demo.voc");
    let ran = vocc(&[
        "build", demo, "--site", &site_s, "-o", &out_s, "--store", &store_s,
    ]);
    assert!(ran.success(), "{}", ran.report());
    // From here on this test is the control machine, on the lab's network only.
    lab.enter_control();

    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("plan.json")).unwrap()).unwrap();
    let used: Vec<String> = {
        let mut h: Vec<String> = plan["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["host"].as_str().unwrap().to_owned())
            .collect();
        h.sort();
        h.dedup();
        h
    };
    assert!(used.len() >= 2, "the demo should span hosts: {used:?}");

    assert_eq!(program.is_file(), !install);
    let ran = vocc(&["up", &out_s, "--until", "staged"]);
    assert!(ran.success(), "{}", ran.report());
    eprintln!("{}", ran.stdout);
    assert!(
        std::fs::read(&program).unwrap() == std::fs::read(host_program()).unwrap(),
        "the hosts run another vocc-host"
    );
    for host in ["h1", "h2", "h3"] {
        let files = lab.store_files(host);
        if used.iter().any(|h| h == host) {
            assert_eq!(
                files,
                [
                    "layers/demo/tiny.img",
                    "layers/demo/tiny.initrd",
                    "layers/demo/tiny.vmlinuz"
                ],
                "{host}"
            );
        } else {
            assert!(files.is_empty(), "{host} runs no node but got {files:?}");
        }
    }
    // Verified on arrival: each host's image is the built one.
    let built = std::fs::read(out.join("layers/demo/tiny.img")).unwrap();
    for host in &used {
        let staged = std::fs::read(lab.dir.join(host).join("store/layers/demo/tiny.img")).unwrap();
        assert!(staged == built, "{host}'s image differs from the build's");
    }
    // Again: nothing to send.
    let ran = vocc(&["up", &out_s, "--until", "staged"]);
    assert!(ran.success(), "{}", ran.report());
    assert!(ran.stdout.contains("already staged"), "{}", ran.stdout);

    let ran = vocc(&["down", &out_s]);
    assert!(ran.success(), "{}", ran.report());
    for host in ["h1", "h2", "h3"] {
        assert_eq!(
            lab.store_files(host),
            Vec::<String>::new(),
            "{host} keeps files"
        );
    }
}

#[test]
fn the_demo_is_staged_on_lab_hosts_over_ssh_and_removed_by_down() {
    stage_and_remove("ssh", "site.voc", true);
}

#[test]
fn the_demo_is_staged_on_lab_hosts_through_slurm_and_removed_by_down() {
    stage_and_remove("slurm", "site-slurm.voc", false);
}

#[test]
fn a_host_whose_key_is_not_the_known_one_is_refused_with_the_reason() {
    let _serial = common::serial();
    let lab = Lab::up_with(
        "site-key",
        2,
        "0",
        &[
            "--no-slurm",
            "--host-program",
            &host_program().display().to_string(),
        ],
    );
    // h1's line names h2's key.
    let known = std::fs::read_to_string(lab.dir.join("known_hosts")).unwrap();
    let h2_key = known.lines().find(|l| l.starts_with("h2,")).unwrap();
    let (_, key) = h2_key.split_once(' ').unwrap();
    let other = known
        .lines()
        .map(|l| {
            if l.starts_with("h1,") {
                format!("h1,10.251.0.11 {key}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(lab.dir.join("known_hosts"), other + "\n").unwrap();
    let out = lab.dir.join("out").display().to_string();
    let site = lab.dir.join("site.voc").display().to_string();
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/appliances/demo.voc");
    let store = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vocc-test-store");
    let store = std::env::var_os("VOCC_TEST_STORE")
        .map(PathBuf::from)
        .unwrap_or(store)
        .display()
        .to_string();
    let ran = vocc(&[
        "build", demo, "--site", &site, "-o", &out, "--store", &store,
    ]);
    assert!(ran.success(), "{}", ran.report());
    lab.enter_control();
    let ran = vocc(&["up", &out, "--until", "staged"]);
    assert!(!ran.success(), "{}", ran.report());
    let said = ran.output();
    assert!(
        said.contains("`stage:h1:demo/tiny`")
            && said.contains("host `h1`")
            && said.contains("Host key verification failed"),
        "{said}"
    );
    // h2 was not held up by h1.
    assert!(
        lab.dir.join("h2/store/layers/demo/tiny.img").is_file(),
        "{said}"
    );
    let ran = vocc(&["down", &out]);
    assert!(
        !ran.success() || ran.output().contains("h1"),
        "{}",
        ran.report()
    );
}

/// Bytes this thread's network namespace has sent on `eth0` (the control machine's link,
/// once the thread entered it).
fn sent_by_control() -> u64 {
    let dev = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
    let line = dev
        .lines()
        .find(|l| l.trim_start().starts_with("eth0:"))
        .unwrap_or_else(|| panic!("no eth0 in {dev}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    // eth0: rx bytes packets errs drop fifo frame compressed multicast, then tx bytes.
    fields[9].parse().unwrap()
}

#[test]
fn layers_leave_the_control_machine_once_when_the_site_has_an_image_server() {
    let _serial = common::serial();
    let lab = Lab::up_with(
        "site-img",
        3,
        "100mbit",
        &[
            "--no-slurm",
            "--images",
            "--host-program",
            &host_program().display().to_string(),
        ],
    );
    let site = lab.dir.join("site.voc");
    assert!(
        std::fs::read_to_string(&site)
            .unwrap()
            .contains("images img { address 10.251.0.5 }"),
        "the lab's site file names its image server"
    );
    let out = lab.dir.join("out").display().to_string();
    let site = site.display().to_string();
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/appliances/demo.voc");
    let store = std::env::var_os("VOCC_TEST_STORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/vocc-test-store"))
        .display()
        .to_string();
    let ran = vocc(&[
        "build", demo, "--site", &site, "-o", &out, "--store", &store,
    ]);
    assert!(ran.success(), "{}", ran.report());
    lab.enter_control();
    let layer: u64 = ["img", "vmlinuz", "initrd"]
        .iter()
        .map(|ext| {
            std::fs::metadata(format!("{out}/layers/demo/tiny.{ext}"))
                .unwrap()
                .len()
        })
        .sum();
    let staged = |how: &str| -> Vec<String> {
        let ran = vocc(&["up", &out, "--until", "staged", "--json"]);
        assert!(ran.success(), "{}", ran.report());
        let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
        let staging = report["reports"][0]["staging"].as_array().unwrap().clone();
        let hows: Vec<String> = staging
            .iter()
            .map(|s| s["detail"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert!(
            !hows.is_empty() && hows.iter().all(|h| h.contains(how)),
            "expected `{how}` in every staging step: {hows:#?}"
        );
        hows
    };

    // First: the layer goes to the image server, which passes it down the chain.
    let before = sent_by_control();
    staged("sent down the chain");
    let first = sent_by_control() - before;
    let kept = lab.store_files("img");
    assert_eq!(
        kept,
        [
            "layers/demo/tiny.img",
            "layers/demo/tiny.initrd",
            "layers/demo/tiny.vmlinuz"
        ],
        "the image server keeps what it passed on"
    );
    assert!(
        first >= layer,
        "the control machine sent {first} bytes of a {layer}-byte layer"
    );
    // Down removes it from the hosts, not from the server.
    let ran = vocc(&["down", &out]);
    assert!(ran.success(), "{}", ran.report());
    for host in ["h1", "h2", "h3"] {
        assert_eq!(lab.store_files(host), Vec::<String>::new(), "{host}");
    }
    assert_eq!(lab.store_files("img"), kept);

    // Again: every host takes it from the server; the control machine sends requests only.
    let before = sent_by_control();
    staged("from the image server `img`");
    let again = sent_by_control() - before;
    eprintln!(
        "layer {layer} bytes; the control machine sent {first} bytes the first time, \
         {again} bytes with the image server holding it"
    );
    assert!(
        again < layer / 4,
        "the control machine sent {again} bytes of a {layer}-byte layer the server had"
    );
    let built = std::fs::read(format!("{out}/layers/demo/tiny.img")).unwrap();
    // Every host that runs a node of the layer holds the build's image.
    let hosts_hold_the_build = || {
        for host in ["h1", "h2", "h3"] {
            if lab.host_file(host, "layers/demo/tiny.img").is_file() {
                let got = std::fs::read(lab.host_file(host, "layers/demo/tiny.img")).unwrap();
                assert!(got == built, "{host}'s image differs from the build's");
            }
        }
    };
    hosts_hold_the_build();

    // An image server that cannot be reached is passed over, and said so.
    let ran = vocc(&["down", &out]);
    assert!(ran.success(), "{}", ran.report());
    lab.link("img", "down");
    let hows = staged("not from the image server `img`");
    assert!(
        hows.iter().all(|h| h.contains("sent down the chain")),
        "{hows:#?}"
    );
    lab.link("img", "up");
    let ran = vocc(&["down", &out]);
    assert!(ran.success(), "{}", ran.report());

    // A control machine that does not hold the layer's files (a plan built elsewhere,
    // whose images the server holds): every host takes them from the server, checked
    // against the sizes and hashes the plan records.
    let (layers, aside) = (format!("{out}/layers"), format!("{out}/layers-elsewhere"));
    std::fs::rename(&layers, &aside).unwrap();
    let before = sent_by_control();
    staged("from the image server `img`");
    let without = sent_by_control() - before;
    eprintln!("without the layer's files here, the control machine sent {without} bytes");
    assert!(
        without < layer / 4,
        "the control machine sent {without} bytes of a {layer}-byte layer it does not hold"
    );
    hosts_hold_the_build();
    let ran = vocc(&["down", &out]);
    assert!(ran.success(), "{}", ran.report());
    // Without the server as well, nothing can send the layer: each host's staging
    // fails at its source, saying why.
    lab.link("img", "down");
    let ran = vocc(&["up", &out, "--until", "staged"]);
    assert!(!ran.success(), "{}", ran.report());
    let said = format!("{}{}", ran.stdout, ran.stderr);
    assert!(
        said.contains("failed at source: this machine cannot read the source")
            && said.contains("no image server that could be reached holds it"),
        "{said}"
    );
    lab.link("img", "up");
    std::fs::rename(&aside, &layers).unwrap();
    let ran = vocc(&["down", &out]);
    assert!(ran.success(), "{}", ran.report());
}

/// A control process that keeps its sessions (a site's loop, a program on the API) sends
/// each operation to every host at once from one thread: each host's node answers; a
/// host cut off meanwhile fails only its own node, with the host's name; and once its
/// link is back, the next operation reaches it again on a new session.
#[test]
fn a_kept_runtime_operates_on_every_host_at_once_and_a_cut_host_fails_alone() {
    use vocc_runtime::plan::State;
    use vocc_runtime::{Op, Options, Runtime, Selection};
    let _serial = common::serial();
    let program = host_program();
    let lab = Lab::up_with(
        "site-ops",
        3,
        "0",
        &[
            "--no-slurm",
            "--host-program",
            &program.display().to_string(),
        ],
    );
    let plan = lab.sim_cluster(Path::new(env!("CARGO_BIN_EXE_vocc")), "ops", 3);
    lab.enter_control();
    let rt = Runtime::open(&plan, None, Options::default()).unwrap();
    let all = Selection::default();
    let up = rt.up("ops", State::Running, Some("sim"), &all).unwrap();
    assert!(up.ok, "{up:?}");
    let hosts: std::collections::BTreeSet<&str> =
        up.nodes.iter().map(|n| n.host.as_str()).collect();
    assert_eq!(hosts.len(), 3, "one node on each host: {hosts:?}");

    let paused = rt.operate("ops", Op::Pause, &all).unwrap();
    assert!(paused.ok, "{paused:?}");
    for n in &paused.nodes {
        assert_eq!(n.state, State::Paused, "{n:?}");
        assert!(n.phases.contains_key("pause"), "{n:?}");
    }

    lab.link("h2", "down");
    let t = std::time::Instant::now();
    let unpaused = rt.operate("ops", Op::Unpause, &all).unwrap();
    let took = t.elapsed();
    assert!(!unpaused.ok);
    for n in &unpaused.nodes {
        if n.host == "h2" {
            assert_eq!(n.state, State::Paused, "{n:?}");
            let e = n.error.as_ref().expect("the cut host's node fails");
            eprintln!("after {took:?}, {}: {}", e.step, e.message);
            assert!(e.message.contains("on host `h2`"), "{e:?}");
            assert_eq!(e.step, format!("unpause:{}", n.node));
        } else {
            assert_eq!(n.state, State::Running, "{n:?}");
            assert!(n.error.is_none(), "{n:?}");
        }
    }
    assert!(
        took < Duration::from_secs(60),
        "the cut host held the operation {took:?}"
    );

    lab.link("h2", "up");
    let again = rt.operate("ops", Op::Unpause, &all).unwrap();
    assert!(again.ok, "{again:?}");
    assert!(again.nodes.iter().all(|n| n.state == State::Running));
    let down = rt.down("ops", None).unwrap();
    assert!(down.ok, "{down:?}");
    for h in ["h1", "h2", "h3"] {
        let left: Vec<String> = lab
            .store_files(h)
            .into_iter()
            .filter(|f| f.contains("ops"))
            .collect();
        assert!(left.is_empty(), "{h} keeps {left:?}");
    }
}
