//! Staging a layer to the lab's hosts over SSH and shaped links (`scripts/lab`): every
//! host gets it once, verified; a host whose link is cut mid-transfer fails alone while
//! the hosts behind it in the chain still finish; after the link is back, the next run
//! sends that host only what it lacks and the others nothing. The lab's hosts do not
//! share a home (whose shell startup files run in every SSH session).

#[path = "../../tests/common/mod.rs"]
mod common;

use common::lab::Lab;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vocc_runtime::distribute::{distribute, HostResult, Outcome, Strategy, Target, Transfer};
use vocc_runtime::hostlink::HostLink;
use vocc_runtime::relay::{partial_path, sha256_file};

const HOSTS: usize = 8;
const SIZE: usize = 6 << 20;

fn targets(lab: &Lab) -> Vec<Target> {
    (1..=HOSTS)
        .map(|i| Target {
            host: format!("h{i}"),
            address: format!("10.251.0.{}", 10 + i),
            link: HostLink::Ssh {
                address: format!("10.251.0.{}", 10 + i),
                user: "root".into(),
                identity: lab.dir.join("id_ed25519"),
                known_hosts: lab.dir.join("known_hosts"),
                program: env!("CARGO_BIN_EXE_vocc-host").into(),
            },
            dest: format!("{}/store/layers/layer.img", lab.dir.display()),
            head: false,
        })
        .collect()
}

/// A layer of `SIZE` bytes on the control machine, and its sha256.
fn layer(lab: &Lab) -> (PathBuf, String) {
    let source = lab.dir.join("layer.img");
    let bytes: Vec<u8> = (0..SIZE)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fs::write(&source, &bytes).unwrap();
    let sha = sha256_file(&source).unwrap();
    (source, sha)
}

fn transfer<'a>(source: &'a Path, sha: &'a str) -> Transfer<'a> {
    Transfer {
        source,
        size: SIZE as u64,
        sha256: sha,
        stall_secs: 3,
    }
}

fn table(results: &[HostResult]) -> String {
    results
        .iter()
        .map(|r| format!("{:>4} {:>6.1}s {:?}\n", r.host, r.secs, r.outcome))
        .collect()
}

#[test]
fn a_layer_reaches_every_host_once_and_a_cut_link_fails_only_its_host() {
    let _serial = common::serial();
    let lab = Lab::up("stage", HOSTS, "24mbit");
    lab.enter_control();
    let (source, sha) = layer(&lab);
    let transfer = transfer(&source, &sha);
    let hosts = targets(&lab);

    // First run: h4's link is cut while the layer is on its way (6 MiB at 24 Mbit/s
    // takes about 2.1 s on each link).
    let started = Instant::now();
    let results = std::thread::scope(|s| {
        s.spawn(|| {
            // Cut it once a first part has arrived there.
            let partial = partial_path(&lab.host_file("h4", "layers/layer.img"));
            let deadline = Instant::now() + Duration::from_secs(60);
            while fs::metadata(&partial).map_or(0, |m| m.len()) < (1 << 20) {
                assert!(Instant::now() < deadline, "nothing reached h4");
                std::thread::sleep(Duration::from_millis(20));
            }
            lab.link("h4", "down");
        });
        distribute(&transfer, &hosts, Strategy::Chain)
    });
    let first = started.elapsed();
    eprintln!("first run, {first:?}:\n{}", table(&results));
    let partial = partial_path(&lab.host_file("h4", "layers/layer.img"));
    let kept = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    for (i, r) in results.iter().enumerate() {
        if i == 3 {
            match &r.outcome {
                Outcome::Failed { step, error, .. } => {
                    assert!(step == "link" || step == "connect", "{}", table(&results));
                    assert!(error.contains("reach"), "{error}");
                }
                other => panic!("h4 did not fail with its link cut: {other:?}"),
            }
        } else {
            // Every other host received the layer exactly once, over however many rounds.
            assert_eq!(
                r.outcome,
                match r.outcome {
                    Outcome::Done { forwarded, .. } => Outcome::Done {
                        received: SIZE as u64,
                        forwarded
                    },
                    _ => panic!("{} failed:\n{}", r.host, table(&results)),
                }
            );
            let file = lab.host_file(&r.host, "layers/layer.img");
            assert_eq!(sha256_file(&file).unwrap(), sha, "{}", r.host);
        }
    }
    assert!(kept > 0 && kept < SIZE as u64, "h4 kept {kept} bytes");
    // What h4 did is kept, its own steps included, up to where its link was cut.
    assert!(
        results[3]
            .log
            .iter()
            .any(|l| l.contains("host: vocc-host receive:") && l.contains("upstream")),
        "{:#?}",
        results[3].log
    );

    // Second run, link restored: h4 receives only what it lacked, the others nothing.
    lab.link("h4", "up");
    let results = distribute(&transfer, &hosts, Strategy::Chain);
    eprintln!("second run (h4 had {kept} bytes):\n{}", table(&results));
    for (i, r) in results.iter().enumerate() {
        let want = if i == 3 { SIZE as u64 - kept } else { 0 };
        match r.outcome {
            Outcome::Done { received, .. } => assert_eq!(received, want, "{}", r.host),
            _ => panic!("{} failed:\n{}", r.host, table(&results)),
        }
    }
    assert_eq!(
        sha256_file(&lab.host_file("h4", "layers/layer.img")).unwrap(),
        sha
    );
    assert!(!Path::new(&partial).exists());
}

#[test]
fn a_layer_reaches_every_host_through_the_sites_slurm() {
    let _serial = common::serial();
    let lab = Lab::up("slurm", 3, "24mbit");
    lab.enter_control();
    let (source, sha) = layer(&lab);
    let transfer = transfer(&source, &sha);
    let hosts: Vec<Target> = (1..=3)
        .map(|i| Target {
            host: format!("h{i}"),
            address: format!("10.251.0.{}", 10 + i),
            link: HostLink::Slurm {
                node: format!("h{i}"),
                program: env!("CARGO_BIN_EXE_vocc-host").into(),
                conf: Some(lab.dir.join("slurm.conf")),
            },
            dest: format!("{}/store/layers/layer.img", lab.dir.display()),
            head: false,
        })
        .collect();
    let results = distribute(&transfer, &hosts, Strategy::Chain);
    eprintln!("through Slurm:\n{}", table(&results));
    for r in &results {
        match r.outcome {
            Outcome::Done { received, .. } => assert_eq!(received, SIZE as u64, "{}", r.host),
            _ => panic!("{} failed:\n{}", r.host, table(&results)),
        }
        let file = lab.host_file(&r.host, "layers/layer.img");
        assert_eq!(sha256_file(&file).unwrap(), sha, "{}", r.host);
    }
}

#[test]
fn lab_hosts_do_not_share_a_home() {
    let _serial = common::serial();
    let lab = Lab::up("home", 2, "0");
    let long = Duration::from_secs(30);
    // A host's sessions start in its own home: what a session leaves there (as shell
    // startup files would) is not seen by another host.
    let ran = lab.exec("ctl", &argv(&lab.ssh("h1", "touch ~/.left-by-h1")), long);
    assert!(ran.success(), "{}", ran.report());
    let ran = lab.exec(
        "ctl",
        &argv(&lab.ssh("h2", "test ! -e ~/.left-by-h1")),
        long,
    );
    assert!(ran.success(), "h2 sees h1's home: {}", ran.report());
    let ran = lab.exec("ctl", &argv(&lab.ssh("h1", "test -e ~/.left-by-h1")), long);
    assert!(ran.success(), "{}", ran.report());
}

fn argv(words: &[String]) -> Vec<&str> {
    words.iter().map(String::as_str).collect()
}
