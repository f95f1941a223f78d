//! Staging one file to several hosts through `vocc-host receive`, with every host on
//! this machine (local links, each its own directory): the chain delivers a verified
//! copy to each, a resumed transfer sends only the missing bytes, a damaged part is
//! discarded, and an unreachable host fails alone.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
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
            head: false,
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
fn an_image_server_heads_the_chain_and_once_it_has_the_file_sends_it_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (source, sha) = layer(dir.path());
    let mut all = targets(dir.path(), 4);
    // h4 is the site's image server, listed last: it still leads the chain.
    all[3].head = true;
    let results = distribute(&transfer(&source, &sha), &all, Strategy::Chain);
    assert_eq!(received(&results), vec![SIZE as u64; 4]);
    let server = &results[3];
    assert!(
        server.log.iter().any(|l| l.contains("next hop 127.0.0.1")),
        "the server forwards to a host: {:#?}",
        server.log
    );
    // The hosts lose their copies; the server keeps its own. This machine's source is now
    // garbage of the same size: the hosts can only verify what the server sends them.
    for t in &all[..3] {
        fs::remove_file(&t.dest).unwrap();
    }
    fs::write(&source, vec![0u8; SIZE]).unwrap();
    let again = distribute(&transfer(&source, &sha), &all, Strategy::Chain);
    assert_eq!(received(&again), [SIZE as u64, SIZE as u64, SIZE as u64, 0]);
    match &again[3].outcome {
        Outcome::Done { forwarded, .. } => assert_eq!(*forwarded, SIZE as u64),
        other => panic!("the server: {other:?}"),
    }
    for t in &all {
        assert_eq!(sha256_file(Path::new(&t.dest)).unwrap(), sha, "{}", t.host);
    }
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

/// Reads `child`'s stdout lines on a thread of their own, so that a test can wait for
/// one with a deadline instead of hanging with the host.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn a_host_that_never_gets_its_next_hop_fails_in_time_and_says_where_it_waited() {
    let dir = tempfile::tempdir().unwrap();
    let (_, sha) = layer(dir.path());
    let mut host = Command::new(env!("CARGO_BIN_EXE_vocc-host"))
        .arg("receive")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut host);
    let mut stdin = host.stdin.take().unwrap();
    let request = serde_json::json!({
        "path": dir.path().join("h1/store/layer.img"),
        "size": SIZE,
        "sha256": sha,
        "token": "t",
        "listen": "127.0.0.1",
        "stall_secs": 1,
        "forward_secs": 2,
    });
    writeln!(stdin, "{request}").unwrap();
    let first = lines.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(first.contains("\"listening\""), "{first}");
    // The control side keeps the link open and never says where to forward.
    let started = Instant::now();
    let last = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("the host waits for its next hop forever");
    assert!(started.elapsed() < Duration::from_secs(10));
    let event: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(event["event"], "failed", "{last}");
    assert_eq!(event["step"], "request", "{last}");
    let error = event["error"].as_str().unwrap();
    assert!(
        error.contains("no next hop") && error.contains("2 s"),
        "{error}"
    );
    drop(stdin);
    let mut stderr = String::new();
    host.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    host.wait().unwrap();
    assert!(stderr.contains("waiting for the next hop"), "{stderr}");
    assert!(stderr.contains("failed at request"), "{stderr}");
}

#[test]
fn a_host_whose_program_starts_too_slowly_fails_alone_and_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let (source, sha) = layer(dir.path());
    let mut hosts = targets(dir.path(), 3);
    // h2's program starts only after a long pause, as when a login shell's startup
    // files wait for a lock first; the pause is a child holding the link's pipes.
    let slow = dir.path().join("slow/vocc-host");
    fs::create_dir_all(slow.parent().unwrap()).unwrap();
    let pid_file = dir.path().join("slow/pause.pid");
    fs::write(
        &slow,
        format!(
            "#!/bin/sh\nsleep 120 &\necho $! >{}\nwait\nexec {} \"$@\"\n",
            pid_file.display(),
            env!("CARGO_BIN_EXE_vocc-host")
        ),
    )
    .unwrap();
    fs::set_permissions(&slow, fs::Permissions::from_mode(0o755)).unwrap();
    hosts[1].link = HostLink::Local { program: slow };
    let started = Instant::now();
    let results = distribute(&transfer(&source, &sha), &hosts, Strategy::Chain);
    let took = started.elapsed();
    if let Ok(pid) = fs::read_to_string(&pid_file) {
        let _ = Command::new("kill").arg(pid.trim()).status();
    }
    match &results[1].outcome {
        Outcome::Failed { step, error, .. } => {
            assert_eq!(step, "connect");
            assert!(
                error.contains("no answer to the request within 12 s"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        results[1]
            .log
            .iter()
            .any(|l| l.contains("sent the request")),
        "{:?}",
        results[1].log
    );
    for k in [0, 2] {
        assert!(
            matches!(results[k].outcome, Outcome::Done { .. }),
            "{:?}",
            results[k]
        );
    }
    assert!(took < Duration::from_secs(40), "the run took {took:?}");
}
