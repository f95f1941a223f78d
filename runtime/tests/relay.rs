//! Staging one file to several hosts through `vocc-host receive`, with every host on
//! this machine (local links, each its own directory): the chain delivers a verified
//! copy to each, a resumed transfer sends only the missing bytes, a damaged part is
//! discarded, and an unreachable host fails alone.

use std::fs;
use std::path::{Path, PathBuf};
use vocc_runtime::distribute::{distribute, HostResult, Outcome, Strategy, Target, Transfer};
use vocc_runtime::hostlink::HostLink;
use vocc_runtime::relay::{partial_path, sha256_file};

const SIZE: usize = 5 * (1 << 20) + 12345;

fn layer(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("layer.img");
    let bytes: Vec<u8> = (0..SIZE).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(&path, bytes).unwrap();
    let sha = sha256_file(&path).unwrap();
    (path, sha)
}

fn targets(dir: &Path, n: usize) -> Vec<Target> {
    (1..=n)
        .map(|i| Target {
            host: format!("h{i}"),
            address: "127.0.0.1".into(),
            link: HostLink::Local {
                program: env!("CARGO_BIN_EXE_vocc-host").into(),
            },
            dest: dir
                .join(format!("h{i}/store/layers/layer.img"))
                .display()
                .to_string(),
        })
        .collect()
}

fn received(results: &[HostResult]) -> Vec<u64> {
    results
        .iter()
        .map(|r| match &r.outcome {
            Outcome::Done { received, .. } => *received,
            other => panic!("{} failed: {other:?}", r.host),
        })
        .collect()
}

fn transfer<'a>(source: &'a Path, sha: &'a str) -> Transfer<'a> {
    Transfer {
        source,
        size: SIZE as u64,
        sha256: sha,
        stall_secs: 3,
    }
}

#[test]
fn a_chain_delivers_one_verified_copy_to_every_host() {
    let dir = tempfile::tempdir().unwrap();
    let (source, sha) = layer(dir.path());
    let hosts = targets(dir.path(), 4);
    let results = distribute(&transfer(&source, &sha), &hosts, Strategy::Chain);
    assert_eq!(received(&results), vec![SIZE as u64; 4]);
    // Every host but the last forwarded the whole file to the next.
    let forwarded: Vec<u64> = results
        .iter()
        .map(|r| match r.outcome {
            Outcome::Done { forwarded, .. } => forwarded,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(forwarded, [SIZE as u64, SIZE as u64, SIZE as u64, 0]);
    for t in &hosts {
        assert_eq!(sha256_file(Path::new(&t.dest)).unwrap(), sha);
        assert!(!partial_path(Path::new(&t.dest)).exists());
    }
    // Again: everything is there, nothing crosses the network.
    let again = distribute(&transfer(&source, &sha), &hosts, Strategy::Chain);
    assert_eq!(received(&again), vec![0; 4]);
}

#[test]
fn a_resumed_transfer_sends_only_the_missing_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (source, sha) = layer(dir.path());
    let bytes = fs::read(&source).unwrap();
    let hosts = targets(dir.path(), 3);
    // h1 was cut at 3 MiB, h2 at 1 MiB; h3 has nothing.
    for (t, have) in hosts.iter().zip([3usize << 20, 1 << 20]) {
        let partial = partial_path(Path::new(&t.dest));
        fs::create_dir_all(partial.parent().unwrap()).unwrap();
        fs::write(&partial, &bytes[..have]).unwrap();
    }
    let results = distribute(&transfer(&source, &sha), &hosts, Strategy::Chain);
    assert_eq!(
        received(&results),
        [
            (SIZE - (3 << 20)) as u64,
            (SIZE - (1 << 20)) as u64,
            SIZE as u64
        ]
    );
    for t in &hosts {
        assert_eq!(sha256_file(Path::new(&t.dest)).unwrap(), sha);
    }
}

#[test]
fn a_damaged_part_is_discarded_and_the_next_run_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (source, sha) = layer(dir.path());
    let hosts = targets(dir.path(), 2);
    let partial = partial_path(Path::new(&hosts[0].dest));
    fs::create_dir_all(partial.parent().unwrap()).unwrap();
    fs::write(&partial, vec![0xEE; 1 << 20]).unwrap();
    let results = distribute(&transfer(&source, &sha), &hosts, Strategy::Chain);
    match &results[0].outcome {
        Outcome::Failed { step, error, .. } => {
            assert_eq!(step, "verify");
            assert!(error.contains("discarded"), "{error}");
        }
        other => panic!("a damaged part was accepted: {other:?}"),
    }
    // h2 got what h1 forwarded: the same damaged bytes, also refused by its hash.
    assert!(!Path::new(&hosts[0].dest).exists());
    let again = distribute(&transfer(&source, &sha), &hosts, Strategy::Chain);
    assert_eq!(received(&again)[0], SIZE as u64);
    for t in &hosts {
        assert_eq!(sha256_file(Path::new(&t.dest)).unwrap(), sha);
    }
}

#[test]
fn an_unreachable_host_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (source, sha) = layer(dir.path());
    let mut hosts = targets(dir.path(), 4);
    hosts[1].link = HostLink::Local {
        program: dir.path().join("missing/vocc-host"),
    };
    for strategy in [Strategy::Chain, Strategy::Direct] {
        let results = distribute(&transfer(&source, &sha), &hosts, strategy);
        match &results[1].outcome {
            Outcome::Failed { step, error, .. } => {
                assert_eq!(step, "connect");
                assert!(error.contains("cannot start"), "{error}");
            }
            other => panic!("{other:?}"),
        }
        for k in [0, 2, 3] {
            assert!(
                matches!(results[k].outcome, Outcome::Done { .. }),
                "{:?}",
                results[k]
            );
        }
    }
}

#[test]
fn a_host_refuses_a_path_that_is_not_plain() {
    let dir = tempfile::tempdir().unwrap();
    let (source, sha) = layer(dir.path());
    let mut hosts = targets(dir.path(), 1);
    hosts[0].dest = format!("{}/h1/../../escape.img", dir.path().display());
    let results = distribute(&transfer(&source, &sha), &hosts, Strategy::Chain);
    match &results[0].outcome {
        Outcome::Failed { step, error, .. } => {
            assert_eq!(step, "connect");
            assert!(error.contains("not a plain path"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!dir.path().parent().unwrap().join("escape.img").exists());
}
