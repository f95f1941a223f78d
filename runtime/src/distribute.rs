//! The control half of staging a layer to many hosts: one file from this machine to the
//! same path on every host, each host receiving it once and verifying it, through a
//! pipelined chain (see `relay`), in rounds: a host that becomes unreachable fails alone,
//! the hosts behind it in the chain are chained again without it, and a later run
//! continues every partial file where it stopped.
//!
//! `Strategy::Direct` sends to every host from this machine at once, the way every host
//! pulling from one image server would; it is kept to measure the chain against.

use crate::hostlink::{HostLink, HostOp};
use crate::relay::{self, Event, Forward, Peer, Receive};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A host to stage to: its name for reports, its address on the site's network (where
/// its upstream connects), how the control side reaches it, and the absolute path the
/// file takes there (the same store path on every host of a site).
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub address: String,
    pub link: HostLink,
    pub dest: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// source → h1 → h2 → … : each link carries the file once, all at the same time.
    Chain,
    /// source → every host at once: the source's link is shared N ways.
    Direct,
}

/// What to send: a file of this machine, its size and sha256.
#[derive(Debug, Clone)]
pub struct Transfer<'a> {
    pub source: &'a Path,
    pub size: u64,
    pub sha256: &'a str,
    /// Seconds without progress after which a hop gives up.
    pub stall_secs: u64,
}

/// How staging went on one host.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The file is there and verified; `received` bytes came over the network in this run.
    Done { received: u64, forwarded: u64 },
    /// It is not: at which step and why; `have` bytes are kept for the next run.
    Failed {
        step: String,
        error: String,
        have: u64,
    },
}

/// One host's result, with its time from the start of the distribution to its end.
#[derive(Debug, Clone)]
pub struct HostResult {
    pub host: String,
    pub outcome: Outcome,
    pub secs: f64,
}

/// An open control link to a host's `vocc-host receive`.
struct Session {
    index: usize,
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::Receiver<Result<Event, String>>,
    have: u64,
    port: u16,
}

impl Session {
    fn send<T: serde::Serialize>(&mut self, msg: &T) -> Result<(), String> {
        let mut line = serde_json::to_vec(msg).map_err(|e| e.to_string())?;
        line.push(b'\n');
        let stdin = self.stdin.as_mut().ok_or("the link is closed")?;
        stdin
            .write_all(&line)
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("cannot write to the host: {e}"))
    }

    /// The next event, or why the link ended without one.
    fn next(&mut self, limit: Duration) -> Result<Event, String> {
        match self.events.recv_timeout(limit) {
            Ok(Ok(event)) => Ok(event),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
        }
    }

    /// Ends the link: the host's program ends once its stdin closes; one that does not
    /// within two seconds is killed. Returns the last line it wrote to stderr.
    fn close(mut self) -> String {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(2);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        stderr.trim().lines().last().unwrap_or("").to_owned()
    }
}

fn open(index: usize, target: &Target, req: &Receive, limit: Duration) -> Result<Session, String> {
    target
        .link
        .connect()
        .map_err(|e| format!("cannot reach the host ({e})"))?;
    let mut child = target
        .link
        .command(HostOp::Receive)?
        .spawn()
        .map_err(|e| format!("cannot start the link to the host: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stdin = child.stdin.take();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let parsed = match line {
                Ok(l) => serde_json::from_str::<Event>(&l).map_err(|e| {
                    format!(
                        "the host answered something else than vocc-host ({e}): `{}`",
                        l.escape_debug()
                    )
                }),
                Err(e) => Err(e.to_string()),
            };
            if tx.send(parsed).is_err() {
                return;
            }
        }
        let _ = tx.send(Err("the link to the host closed".into()));
    });
    let mut session = Session {
        index,
        child,
        stdin,
        events: rx,
        have: 0,
        port: 0,
    };
    let first = session.send(req).and_then(|_| session.next(limit));
    match first {
        Ok(Event::Listening { port, have }) => {
            session.have = have;
            session.port = port;
            Ok(session)
        }
        Ok(Event::Failed { step, error, .. }) => {
            session.close();
            Err(format!("{step}: {error}"))
        }
        Ok(other) => {
            session.close();
            Err(format!("unexpected answer {other:?}"))
        }
        Err(e) => {
            let why = session.close();
            let e = if why.is_empty() {
                e
            } else {
                format!("{e}: {why}")
            };
            Err(format!("cannot reach the host ({e})"))
        }
    }
}

/// Stages `transfer` to every target; returns one result per target, in their order.
pub fn distribute(transfer: &Transfer, targets: &[Target], strategy: Strategy) -> Vec<HostResult> {
    let started = Instant::now();
    let mut results: Vec<Option<HostResult>> = vec![None; targets.len()];
    let mut received = vec![0u64; targets.len()];
    let mut forwarded = vec![0u64; targets.len()];
    let mut last_error: Vec<Option<(String, String, u64)>> = vec![None; targets.len()];
    let stall = Duration::from_secs(transfer.stall_secs.max(1));
    let source = match File::open(transfer.source) {
        Ok(f) => f,
        Err(e) => {
            let error = format!(
                "cannot read the source `{}`: {e}",
                transfer.source.display()
            );
            return targets
                .iter()
                .map(|t| HostResult {
                    host: t.host.clone(),
                    outcome: Outcome::Failed {
                        step: "source".into(),
                        error: error.clone(),
                        have: 0,
                    },
                    secs: 0.0,
                })
                .collect();
        }
    };

    // Each round chains the hosts still waiting; a round in which no byte moved ends it.
    for _round in 0..=targets.len() {
        let pending: Vec<usize> = (0..targets.len())
            .filter(|&i| results[i].is_none())
            .collect();
        if pending.is_empty() {
            break;
        }
        let token = new_token();
        let opened: Vec<(usize, Result<Session, String>)> = thread::scope(|s| {
            let handles: Vec<_> = pending
                .iter()
                .map(|&i| {
                    let req = Receive {
                        path: targets[i].dest.clone(),
                        size: transfer.size,
                        sha256: transfer.sha256.to_owned(),
                        token: token.clone(),
                        listen: targets[i].address.clone(),
                        stall_secs: stall.as_secs(),
                    };
                    let target = &targets[i];
                    s.spawn(move || (i, open(i, target, &req, stall * 4)))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("opening a link does not panic"))
                .collect()
        });
        let mut sessions = Vec::new();
        for (i, r) in opened {
            match r {
                Ok(s) => sessions.push(s),
                Err(error) => {
                    let have = last_error[i].as_ref().map_or(0, |e| e.2);
                    results[i] = Some(HostResult {
                        host: targets[i].host.clone(),
                        outcome: Outcome::Failed {
                            step: "connect".into(),
                            error,
                            have,
                        },
                        secs: started.elapsed().as_secs_f64(),
                    });
                }
            }
        }
        if sessions.is_empty() {
            break;
        }
        // Those that have it all first; among the rest, the most complete lead the chain.
        sessions.sort_by(|a, b| b.have.cmp(&a.have).then(a.index.cmp(&b.index)));
        let needy: Vec<usize> = (0..sessions.len())
            .filter(|&k| sessions[k].have < transfer.size)
            .collect();
        let peer = |s: &Session| Peer {
            address: targets[s.index].address.clone(),
            port: s.port,
            token: token.clone(),
            from: s.have,
        };
        // Tell each host its next hop, and work out who this machine sends to itself.
        let mut from_source: Vec<Peer> = Vec::new();
        for k in 0..sessions.len() {
            let next = match strategy {
                Strategy::Chain => needy
                    .iter()
                    .position(|&n| n == k)
                    .and_then(|p| needy.get(p + 1))
                    .map(|&n| peer(&sessions[n])),
                Strategy::Direct => None,
            };
            let is_first = needy.first() == Some(&k);
            if sessions[k].have < transfer.size && (strategy == Strategy::Direct || is_first) {
                from_source.push(peer(&sessions[k]));
            }
            // A host that cannot take this has a closed link, which its final event shows.
            let _ = sessions[k].send(&Forward { next });
        }
        let moved_before: u64 = received.iter().sum();
        let decided_before = results.iter().filter(|r| r.is_some()).count();
        let finals: Vec<(Result<Event, String>, f64)> = thread::scope(|s| {
            for p in &from_source {
                let source = &source;
                s.spawn(move || {
                    // A failed send shows as the receiver's failure, which says more.
                    let _ = relay::send_to(source, transfer.size, p, stall);
                });
            }
            let handles: Vec<_> = sessions
                .iter_mut()
                .map(|session| {
                    // Stalls end a hop much sooner; this only bounds a host that hangs.
                    let limit = stall * 8 + Duration::from_secs(transfer.size / 100_000);
                    s.spawn(move || {
                        let event = session.next(limit);
                        (event, started.elapsed().as_secs_f64())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("waiting does not panic"))
                .collect()
        });
        // The answers come in the sessions' order.
        for (session, (event, secs)) in sessions.into_iter().zip(finals) {
            let i = session.index;
            let why = session.close();
            match event {
                Ok(Event::Done {
                    received: r,
                    forwarded: f,
                    ..
                }) => {
                    received[i] += r;
                    forwarded[i] += f;
                    results[i] = Some(HostResult {
                        host: targets[i].host.clone(),
                        outcome: Outcome::Done {
                            received: received[i],
                            forwarded: forwarded[i],
                        },
                        secs,
                    });
                }
                Ok(Event::Failed {
                    step,
                    error,
                    have,
                    received: r,
                }) => {
                    received[i] += r;
                    // A stalled or closed upstream is the upstream's failure: try again
                    // next round. Anything else is this host's own.
                    if step == "receive" || step == "listen" {
                        last_error[i] = Some((step, error, have));
                    } else {
                        results[i] = Some(HostResult {
                            host: targets[i].host.clone(),
                            outcome: Outcome::Failed { step, error, have },
                            secs,
                        });
                    }
                }
                Ok(other) => {
                    results[i] = Some(HostResult {
                        host: targets[i].host.clone(),
                        outcome: Outcome::Failed {
                            step: "protocol".into(),
                            error: format!("unexpected answer {other:?}"),
                            have: 0,
                        },
                        secs,
                    });
                }
                Err(e) => {
                    // The control link itself is gone: the host (or its link) is down.
                    let have = last_error[i].as_ref().map_or(0, |e| e.2);
                    let error = if why.is_empty() {
                        e
                    } else {
                        format!("{e}: {why}")
                    };
                    results[i] = Some(HostResult {
                        host: targets[i].host.clone(),
                        outcome: Outcome::Failed {
                            step: "link".into(),
                            error: format!("the host became unreachable ({error})"),
                            have,
                        },
                        secs,
                    });
                }
            }
        }
        let moved: u64 = received.iter().sum();
        let decided = results.iter().filter(|r| r.is_some()).count();
        if moved == moved_before && decided == decided_before {
            break;
        }
    }
    targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            results[i].clone().unwrap_or_else(|| {
                let (step, error, have) =
                    last_error[i]
                        .clone()
                        .unwrap_or(("receive".into(), "no progress".into(), 0));
                HostResult {
                    host: t.host.clone(),
                    outcome: Outcome::Failed { step, error, have },
                    secs: started.elapsed().as_secs_f64(),
                }
            })
        })
        .collect()
}

/// A token that only this transfer's hosts learn (over their control links).
fn new_token() -> String {
    let mut bytes = [0u8; 16];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        let t = Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id());
        bytes.copy_from_slice(&t.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
