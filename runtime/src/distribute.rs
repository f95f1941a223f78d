//! The control half of staging a layer to many hosts: one file from this machine to the
//! same path on every host, each host receiving it once and verifying it, through a
//! pipelined chain (see `relay`), in rounds: a host that becomes unreachable fails alone,
//! the hosts behind it in the chain are chained again without it, and a later run
//! continues every partial file where it stopped.
//!
//! Every wait of the control side has a deadline too: opening a host's link (connection,
//! program start, first answer), its result, closing it. A host that misses one fails
//! alone with the step it was in, from its [`HostResult::log`]: the control side's steps
//! and the host's own, read from its stderr.
//!
//! `Strategy::Direct` sends to every host from this machine at once, the way every host
//! pulling from one image server would; it is kept to measure the chain against.

use crate::hostlink::{HostLink, HostOp};
use crate::relay::{self, Event, Forward, Peer, Receive};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin};
use std::sync::{mpsc, Arc, Mutex};
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
    /// The site's image server: it heads the chain. Once it has the file whole it sends
    /// it to the first host that lacks it, and this machine sends nothing; until then it
    /// is the first host this machine sends to, so the file crosses this machine's link
    /// once and stays on the server for every later run.
    pub head: bool,
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
    /// The steps of the host's transfers, as the control side saw them and as the host
    /// wrote them to its stderr, each with its time from the start of the distribution:
    /// for saying where a host that failed or stopped answering was.
    pub log: Vec<String>,
}

/// A host's steps, shared by the threads that see them.
#[derive(Clone)]
struct Trail {
    started: Instant,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Trail {
    fn new(started: Instant) -> Trail {
        Trail {
            started,
            lines: Arc::default(),
        }
    }

    fn push(&self, who: &str, what: &str) {
        let t = self.started.elapsed().as_secs_f64();
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.push(format!("{t:8.3} s {who}: {what}"));
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The last step the host itself reported, for failure messages.
    fn last_host_step(&self) -> Option<String> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().rev().find_map(|l| {
            l.split_once(" host: ")
                .map(|(_, what)| what.trim_start_matches("vocc-host receive: ").to_owned())
        })
    }
}

/// How long opening a host's link may take: the shared SSH connection (which
/// `HostLink::connect` gives up on after 30 s), then `vocc-host receive` starting there
/// and answering its request (`stall` × 4: a remote program may start slowly, as when
/// the login shell's startup files run first).
fn open_limit(stall: Duration) -> Duration {
    Duration::from_secs(35) + stall * 4
}

/// An open control link to a host's `vocc-host receive`.
struct Session {
    index: usize,
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::Receiver<Result<Event, String>>,
    /// Ends (disconnects) once everything the host wrote to stderr is in the trail.
    stderr_read: mpsc::Receiver<()>,
    trail: Trail,
    have: u64,
    port: u16,
}

impl Session {
    fn send<T: serde::Serialize>(&mut self, msg: &T, what: &str) -> Result<(), String> {
        let mut line = serde_json::to_vec(msg).map_err(|e| e.to_string())?;
        line.push(b'\n');
        let stdin = self.stdin.as_mut().ok_or("the link is closed")?;
        let sent = stdin
            .write_all(&line)
            .and_then(|_| stdin.flush())
            .map_err(|e| format!("cannot send the {what} to the host: {e}"));
        match &sent {
            Ok(()) => self.trail.push("control", &format!("sent the {what}")),
            Err(e) => self.trail.push("control", e),
        }
        sent
    }

    /// The next event, or why the link ended without one; `what` names the awaited
    /// event in the failure, with the last step the host reported.
    fn next(&mut self, what: &str, limit: Duration) -> Result<Event, String> {
        self.trail.push(
            "control",
            &format!("waiting for the {what} (up to {} s)", limit.as_secs()),
        );
        let event = match self.events.recv_timeout(limit) {
            Ok(Ok(event)) => Ok(event),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no {what} within {} s", limit.as_secs())),
        };
        match &event {
            Ok(e) => self.trail.push("control", &format!("got {e:?}")),
            Err(e) => self.trail.push("control", e),
        }
        event.map_err(|e| match self.trail.last_host_step() {
            Some(step) => format!("{e}; the host's last step: {step}"),
            None => format!("{e}; the host reported no step"),
        })
    }

    /// Ends the link: the host's program ends once its stdin closes; one that does not
    /// within two seconds is killed. Returns the last line the link wrote to stderr
    /// that is not one of the host's steps (what ssh or srun said), waiting at most two
    /// more seconds for it: another program may hold the pipe open.
    fn close(mut self) -> String {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(2);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.stderr_read.recv_timeout(Duration::from_secs(2));
        self.trail
            .lines()
            .iter()
            .rev()
            .filter_map(|l| l.split_once(" host: ").map(|(_, what)| what))
            .find(|what| !what.starts_with("vocc-host receive: "))
            .unwrap_or("")
            .to_owned()
    }
}

/// Connects to the host, starts `vocc-host receive` there, sends `req` and waits for
/// its first answer, all within `limit`; the result comes on `done`. Runs on a thread
/// of its own that nobody waits for: a link that hangs (an ssh that never returns)
/// costs the round no more than `limit`, and a session that opens too late is closed.
fn open_within(
    index: usize,
    target: Target,
    req: Receive,
    trail: Trail,
    limit: Duration,
) -> Result<Session, String> {
    let (done, opened) = mpsc::channel();
    let deadline = Instant::now() + limit;
    let host_trail = trail.clone();
    let answer = Duration::from_secs(req.stall_secs.max(1)) * 4;
    thread::spawn(move || {
        let session = open(index, &target, &req, host_trail, deadline, answer);
        if let Err(mpsc::SendError(Ok(late))) = done.send(session) {
            late.close();
        }
    });
    match opened.recv_timeout(limit + Duration::from_secs(1)) {
        Ok(r) => r,
        Err(_) => {
            let step = trail.lines().last().cloned().unwrap_or_default();
            trail.push("control", "gave up opening the link");
            Err(format!(
                "cannot reach the host: not connected and listening within {} s (last step: {})",
                limit.as_secs(),
                step.trim()
            ))
        }
    }
}

fn open(
    index: usize,
    target: &Target,
    req: &Receive,
    trail: Trail,
    deadline: Instant,
    limit: Duration,
) -> Result<Session, String> {
    trail.push("control", "connecting");
    target.link.connect().map_err(|e| {
        trail.push("control", &e);
        format!("cannot reach the host ({e})")
    })?;
    trail.push("control", "connected; starting `vocc-host receive`");
    let mut child = target
        .link
        .command(HostOp::Receive)?
        .spawn()
        .map_err(|e| format!("cannot start the link to the host: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
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
    // The host's steps and whatever the link says go to the trail as they come, so
    // that the pipe never fills and a host that stops answering can be placed.
    let (stderr_done, stderr_read) = mpsc::channel::<()>();
    let host_trail = trail.clone();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            match line {
                Ok(l) => host_trail.push("host", l.trim_end()),
                Err(_) => break,
            }
        }
        drop(stderr_done);
    });
    let mut session = Session {
        index,
        child,
        stdin,
        events: rx,
        stderr_read,
        trail,
        have: 0,
        port: 0,
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let first = session
        .send(req, "request")
        .and_then(|_| session.next("answer to the request", left.min(limit)));
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

/// A host's failure at `step` (its log is added at the end, from its trail).
fn failed(host: &str, step: &str, error: String, have: u64, secs: f64) -> HostResult {
    HostResult {
        host: host.to_owned(),
        outcome: Outcome::Failed {
            step: step.to_owned(),
            error,
            have,
        },
        secs,
        log: Vec::new(),
    }
}

/// Stages `transfer` to every target; returns one result per target, in their order.
pub fn distribute(transfer: &Transfer, targets: &[Target], strategy: Strategy) -> Vec<HostResult> {
    let started = Instant::now();
    let mut results: Vec<Option<HostResult>> = vec![None; targets.len()];
    let mut received = vec![0u64; targets.len()];
    let mut forwarded = vec![0u64; targets.len()];
    let mut last_error: Vec<Option<(String, String, u64)>> = vec![None; targets.len()];
    let trails: Vec<Trail> = targets.iter().map(|_| Trail::new(started)).collect();
    let stall = Duration::from_secs(transfer.stall_secs.max(1));
    // This machine's copy: none is needed when the site's image server holds the file
    // whole, so a missing one fails only the hosts that would need it.
    let source = File::open(transfer.source).map_err(|e| {
        format!(
            "this machine cannot read the source `{}` ({e})",
            transfer.source.display()
        )
    });

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
                        // Longer than this round may take to open every host's link.
                        forward_secs: (open_limit(stall) + Duration::from_secs(30)).as_secs(),
                    };
                    let (target, trail) = (targets[i].clone(), trails[i].clone());
                    trail.push("control", "round starts");
                    s.spawn(move || (i, open_within(i, target, req, trail, open_limit(stall))))
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
                    let secs = started.elapsed().as_secs_f64();
                    results[i] = Some(failed(&targets[i].host, "connect", error, have, secs));
                }
            }
        }
        if sessions.is_empty() {
            break;
        }
        // The image server first; then those that have it all; among the rest, the most
        // complete lead the chain.
        let head = |s: &Session| targets[s.index].head;
        sessions.sort_by(|a, b| {
            head(b)
                .cmp(&head(a))
                .then(b.have.cmp(&a.have))
                .then(a.index.cmp(&b.index))
        });
        // An image server that has the file whole sends it down the chain itself.
        let source_host = sessions
            .iter()
            .position(|s| head(s) && s.have >= transfer.size && strategy == Strategy::Chain);
        if let (Err(why), None) = (&source, source_host) {
            // Nothing can send to the hosts that lack the file: they fail now, and the
            // rest finish as usual.
            let (lacking, rest): (Vec<Session>, Vec<Session>) =
                sessions.into_iter().partition(|s| s.have < transfer.size);
            sessions = rest;
            let server = targets.iter().find(|t| t.head).map_or_else(
                || "no image server that could be reached holds it".to_owned(),
                |t| format!("the image server `{}` does not hold it whole", t.host),
            );
            for s in lacking {
                let (i, have) = (s.index, s.have);
                s.close();
                let error = format!("{why}, and {server}");
                let secs = started.elapsed().as_secs_f64();
                results[i] = Some(failed(&targets[i].host, "source", error, have, secs));
            }
        }
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
                Strategy::Chain if source_host == Some(k) => {
                    needy.first().map(|&n| peer(&sessions[n]))
                }
                Strategy::Chain => needy
                    .iter()
                    .position(|&n| n == k)
                    .and_then(|p| needy.get(p + 1))
                    .map(|&n| peer(&sessions[n])),
                Strategy::Direct => None,
            };
            let is_first = needy.first() == Some(&k) && source_host.is_none();
            if sessions[k].have < transfer.size && (strategy == Strategy::Direct || is_first) {
                from_source.push(peer(&sessions[k]));
            }
            // A host that cannot take this has a closed link, which its final event
            // shows (or its deadline for the next hop, should the link hold the line).
            let _ = sessions[k].send(&Forward { next }, "next hop");
        }
        let moved_before: u64 = received.iter().sum();
        let decided_before = results.iter().filter(|r| r.is_some()).count();
        let finals: Vec<(Result<Event, String>, f64)> = thread::scope(|s| {
            // (Only hosts that need this machine's copy are here, so it is there.)
            if let Ok(source) = &source {
                for p in &from_source {
                    s.spawn(move || {
                        // A failed send shows as the receiver's failure, which says more.
                        let _ = relay::send_to(source, transfer.size, p, stall);
                    });
                }
            }
            let handles: Vec<_> = sessions
                .iter_mut()
                .map(|session| {
                    // Stalls end a hop much sooner; this only bounds a host that hangs.
                    let limit = stall * 8 + Duration::from_secs(transfer.size / 100_000);
                    s.spawn(move || {
                        let event = session.next("result", limit);
                        (event, started.elapsed().as_secs_f64())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("waiting does not panic"))
                .collect()
        });
        // The links end together: each takes at most a few seconds.
        let closed: Vec<(usize, String)> = thread::scope(|s| {
            let handles: Vec<_> = sessions
                .into_iter()
                .map(|session| s.spawn(move || (session.index, session.close())))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("closing a link does not panic"))
                .collect()
        });
        // The answers come in the sessions' order.
        for ((i, why), (event, secs)) in closed.into_iter().zip(finals) {
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
                        log: Vec::new(),
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
                        results[i] = Some(failed(&targets[i].host, &step, error, have, secs));
                    }
                }
                Ok(other) => {
                    let error = format!("unexpected answer {other:?}");
                    results[i] = Some(failed(&targets[i].host, "protocol", error, 0, secs));
                }
                Err(e) => {
                    // The control link itself is gone: the host (or its link) is down.
                    let have = last_error[i].as_ref().map_or(0, |e| e.2);
                    let error = if why.is_empty() {
                        e
                    } else {
                        format!("{e}: {why}")
                    };
                    let error = format!("the host became unreachable ({error})");
                    results[i] = Some(failed(&targets[i].host, "link", error, have, secs));
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
            let result = results[i].clone().unwrap_or_else(|| {
                let (step, error, have) =
                    last_error[i]
                        .clone()
                        .unwrap_or(("receive".into(), "no progress".into(), 0));
                failed(&t.host, &step, error, have, started.elapsed().as_secs_f64())
            });
            HostResult {
                log: trails[i].lines(),
                ..result
            }
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
