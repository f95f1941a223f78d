//! The lab of hosts that tests of sites with many hosts run on (`scripts/lab`): every
//! host answers over SSH with its own host key and name and sees its own store, the
//! lab's Slurm runs a step on the host asked for, links are shaped and can be cut, and
//! `down` leaves nothing behind.

mod common;

use common::lab::Lab;
use std::time::{Duration, Instant};

fn argv(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn lab_hosts_answer_over_ssh_and_slurm_and_leave_nothing_behind() {
    let _serial = common::serial();
    let lab = Lab::up("basic", 3, "40mbit");
    let long = Duration::from_secs(60);

    // SSH: key only, host keys checked, each host its own name and its own store.
    for i in 1..=3 {
        let host = format!("h{i}");
        let cmd = lab.ssh(
            &host,
            &format!(
                "hostname; echo {host} > {}/store/mark; ls {}/store",
                lab.dir.display(),
                lab.dir.display()
            ),
        );
        let ran = lab.exec("ctl", &argv(&cmd), long);
        assert!(ran.success(), "{}", ran.report());
        let lines: Vec<&str> = ran.stdout.lines().collect();
        assert_eq!(lines, [host.as_str(), "mark"], "{}", ran.report());
    }
    for i in 1..=3 {
        let mark = std::fs::read_to_string(lab.dir.join(format!("h{i}/store/mark"))).unwrap();
        assert_eq!(mark.trim(), format!("h{i}"));
    }
    // A host key that does not match is refused, not recorded.
    let mut bad = lab.ssh("h1", "true");
    let i = bad
        .iter()
        .position(|a| a.starts_with("UserKnownHostsFile="))
        .unwrap();
    let wrong = lab.dir.join("wrong_known_hosts");
    let h2_key = std::fs::read_to_string(lab.dir.join("known_hosts")).unwrap();
    let h2_line = h2_key.lines().find(|l| l.starts_with("h2,")).unwrap();
    std::fs::write(
        &wrong,
        h2_line
            .replacen("h2,", "h1,", 1)
            .replace("10.251.0.12", "10.251.0.11"),
    )
    .unwrap();
    bad[i] = format!("UserKnownHostsFile={}", wrong.display());
    let ran = lab.exec("ctl", &argv(&bad), long);
    assert!(
        !ran.success(),
        "a wrong host key was accepted: {}",
        ran.report()
    );
    assert!(
        ran.stderr.contains("HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        ran.report()
    );

    // The lab's Slurm runs a step on the host it is asked for.
    for host in ["h2", "h3"] {
        let ran = lab.exec("ctl", &["srun", "-w", host, "hostname"], long);
        assert!(ran.success(), "{}", ran.report());
        assert_eq!(ran.stdout.trim(), host, "{}", ran.report());
    }

    // The links are shaped: 5 MB at 40 Mbit/s cannot take less than 1 s.
    let blob = lab.dir.join("blob");
    std::fs::write(&blob, vec![7u8; 5_000_000]).unwrap();
    let send = lab.ssh("h1", "cat > /dev/null");
    let mut line = argv(&send).join(" ");
    line.push_str(&format!(" < {}", blob.display()));
    let started = Instant::now();
    let ran = lab.exec("ctl", &["bash", "-c", &line], long);
    let took = started.elapsed();
    assert!(ran.success(), "{}", ran.report());
    assert!(
        took >= Duration::from_millis(1000),
        "5 MB crossed a 40 Mbit/s link in {took:?}"
    );

    // A cut link fails that host only; restored, it answers again.
    lab.link("h1", "down");
    let ran = lab.exec("ctl", &argv(&lab.ssh("h1", "true")), long);
    assert!(
        !ran.success(),
        "h1 answered with its link cut: {}",
        ran.report()
    );
    let ran = lab.exec("ctl", &argv(&lab.ssh("h2", "true")), long);
    assert!(ran.success(), "{}", ran.report());
    lab.link("h1", "up");
    let ran = lab.exec("ctl", &argv(&lab.ssh("h1", "true")), long);
    assert!(ran.success(), "{}", ran.report());

    // Down: no namespace, no process, no file of the lab is left.
    let ran = lab.down();
    assert!(ran.success(), "{}", ran.report());
    assert_eq!(lab.namespaces(), Vec::<String>::new());
    assert!(!lab.dir.exists(), "{} is left", lab.dir.display());
    let ps = common::run(std::process::Command::new("ps").args(["-eo", "args"]), long);
    let dir = lab.dir.display().to_string();
    let left: Vec<&str> = ps.stdout.lines().filter(|l| l.contains(&dir)).collect();
    assert!(left.is_empty(), "processes of the lab are left: {left:?}");
    // And again: down is idempotent.
    assert!(lab.down().success());
}

#[test]
fn a_failed_lab_up_leaves_nothing_behind() {
    let _serial = common::serial();
    // More hosts than the switch's addresses allow are refused before anything is made.
    let lab_dir = std::env::temp_dir().join(format!("vocc-t{}-bad", std::process::id()));
    let ran = common::run(
        std::process::Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lab"))
            .args(["up", "--hosts", "0", "--dir"])
            .arg(&lab_dir)
            .args(["--prefix", "vocc-tbad"]),
        Duration::from_secs(60),
    );
    assert!(!ran.success());
    assert!(
        ran.stderr.contains("--hosts must be 1 to 200"),
        "{}",
        ran.report()
    );
    assert!(!lab_dir.join("lab.env").exists());
}
