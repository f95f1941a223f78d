//! The host half's one-shot operations, and the control side that calls them: one JSON
//! request on the link's stdin, one JSON answer on its stdout. `remove` takes files out
//! of the host's store (what `unstage` and `down` leave on no host); the paths it gets
//! are relative to the store and must stay inside it.

use crate::hostlink::{HostLink, HostOp};
use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Remove these files (relative to `root`, the host's store) and the directories they
/// leave empty below it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Remove {
    pub root: String,
    pub paths: Vec<String>,
}

/// What `remove` did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Removed {
    /// Files removed now.
    pub removed: usize,
    /// Files that were not there.
    pub absent: usize,
    /// What could not be removed, and why.
    pub errors: Vec<String>,
}

/// A relative path of plain components, inside whatever it is joined to.
pub fn inside(root: &Path, rel: &str) -> Result<PathBuf, String> {
    let p = Path::new(rel);
    let plain = !rel.is_empty()
        && !rel.chars().any(char::is_control)
        && p.components().all(|c| matches!(c, Component::Normal(_)));
    if plain {
        Ok(root.join(p))
    } else {
        Err(format!(
            "`{}` is not a plain relative path",
            rel.escape_debug()
        ))
    }
}

/// The host half of `remove`.
pub fn serve_remove(input: &mut dyn BufRead, output: &mut dyn Write) -> io::Result<()> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    let answer = match serde_json::from_str::<Remove>(&line) {
        Err(e) => Removed {
            errors: vec![format!("a bad request: {e}")],
            ..Removed::default()
        },
        Ok(req) => remove_here(&req),
    };
    writeln!(
        output,
        "{}",
        serde_json::to_string(&answer).map_err(io::Error::other)?
    )?;
    output.flush()
}

fn remove_here(req: &Remove) -> Removed {
    let mut out = Removed::default();
    let root = match crate::relay::check_path(&req.root) {
        Ok(r) => r,
        Err(e) => {
            out.errors.push(format!("the store: {e}"));
            return out;
        }
    };
    for rel in &req.paths {
        let path = match inside(&root, rel) {
            Ok(p) => p,
            Err(e) => {
                out.errors.push(e);
                continue;
            }
        };
        match std::fs::remove_file(&path) {
            Ok(()) => out.removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => out.absent += 1,
            Err(e) => out.errors.push(format!("`{}`: {e}", path.display())),
        }
        // A partial transfer of the file goes too.
        let _ = std::fs::remove_file(crate::relay::partial_path(&path));
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == root || !d.starts_with(&root) || std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
    out
}

/// Runs one one-shot operation on a host: sends `request`, reads the answer.
pub fn call<Q: Serialize, A: for<'de> Deserialize<'de>>(
    link: &HostLink,
    op: HostOp,
    request: &Q,
    limit: Duration,
) -> Result<A, String> {
    link.connect()?;
    let mut child = link
        .command(op)?
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the link to the host: {e}"))?;
    let mut line = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    line.push(b'\n');
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&line);
    }
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the host did not answer within {} s",
                    limit.as_secs()
                ));
            }
        }
    }
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    match stdout.lines().next() {
        Some(l) => serde_json::from_str(l)
            .map_err(|e| format!("the host answered something else than vocc-host ({e})")),
        None => Err(format!(
            "the host gave no answer: {}",
            stderr.trim().lines().last().unwrap_or("the link closed")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_stays_inside_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir_all(store.join("layers/demo")).unwrap();
        std::fs::write(store.join("layers/demo/tiny.img"), b"x").unwrap();
        std::fs::write(dir.path().join("victim"), b"keep").unwrap();
        let req = Remove {
            root: store.display().to_string(),
            paths: vec![
                "layers/demo/tiny.img".into(),
                "layers/demo/tiny.initrd".into(),
                "../victim".into(),
                "/etc/passwd".into(),
            ],
        };
        let out = remove_here(&req);
        assert_eq!(out.removed, 1);
        assert_eq!(out.absent, 1);
        assert_eq!(out.errors.len(), 2, "{out:?}");
        assert!(dir.path().join("victim").exists());
        // The emptied directories below the store went with the file.
        assert!(!store.join("layers").exists());
        assert!(store.exists());
    }

    #[test]
    fn a_session_answers_each_request_in_turn() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        std::fs::create_dir_all(store.join("layers")).unwrap();
        std::fs::write(store.join("layers/a.img"), b"x").unwrap();
        let requests = [
            serde_json::to_string(&Request::Hello { sha256: false }).unwrap(),
            serde_json::to_string(&Request::Remove {
                root: store.display().to_string(),
                paths: vec!["layers/a.img".into()],
            })
            .unwrap(),
            "{\"op\":\"format\"}".to_owned(),
        ]
        .join("\n");
        let mut out = Vec::new();
        serve(&mut requests.as_bytes(), &mut out).unwrap();
        let answers: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(answers.len(), 3);
        assert_eq!(answers[0]["program"], "vocc-host");
        assert_eq!(answers[0]["sha256"], serde_json::Value::Null);
        assert_eq!(answers[1]["removed"], 1);
        assert!(answers[2]["error"]
            .as_str()
            .unwrap()
            .contains("bad request"));
        assert!(!store.join("layers/a.img").exists());
    }
}

/// What `hello` is asked: whether to hash its own binary (which costs a read of it, so
/// an operation that only wants an answer does not ask).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HelloRequest {
    pub sha256: bool,
}

/// What `vocc-host hello` says of itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Hello {
    pub program: String,
    pub version: String,
    pub sha256: Option<String>,
}

/// The sha256 of this program's binary. A session asks for it each time it opens, so
/// it is kept (in the user's runtime folder) for as long as the binary's device, inode,
/// size and modification time stay the same.
fn own_sha256() -> io::Result<String> {
    // The running program itself: its path may name another file by now (an install
    // renamed over it while this one runs), which `current_exe` would give as
    // `… (deleted)`.
    let exe = Path::new("/proc/self/exe");
    let key = crate::hostnode::file_key(&std::fs::metadata(exe)?);
    let cache = crate::state::user_dir().join("host-program.sha256");
    if let Ok(text) = std::fs::read_to_string(&cache) {
        if let Some(sha) = text.trim().strip_prefix(&format!("{key} ")) {
            if crate::relay::is_sha256(sha) {
                return Ok(sha.to_owned());
            }
        }
    }
    let sha = crate::relay::sha256_file(exe)?;
    if std::fs::create_dir_all(crate::state::user_dir()).is_ok() {
        let _ = crate::atomic::write(&cache, format!("{key} {sha}\n").as_bytes(), 0o644);
    }
    Ok(sha)
}

/// The host half of `hello`; a missing or empty request asks for no hash.
pub fn serve_hello(input: &mut dyn BufRead, output: &mut dyn Write) -> io::Result<()> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    let req: HelloRequest = if line.trim().is_empty() {
        HelloRequest::default()
    } else {
        serde_json::from_str(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
    };
    let sha256 = if req.sha256 {
        Some(own_sha256()?)
    } else {
        None
    };
    let hello = Hello {
        program: "vocc-host".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        sha256,
    };
    writeln!(
        output,
        "{}",
        serde_json::to_string(&hello).map_err(io::Error::other)?
    )?;
    output.flush()
}

/// Makes sure the host runs this very `vocc-host` (`local`, the binary beside the control
/// side's, whose sha256 is `want`): asks the host's, and when it is missing or another
/// build, copies `local` to the program path the site names, then asks again. Says what
/// it did.
pub fn ensure_program(link: &HostLink, local: &Path, want: &str) -> Result<String, String> {
    // A host that cannot be reached (a changed host key, a refused key) says so here,
    // rather than as a failed copy.
    link.connect()?;
    if let Ok(h) = hello(link, true) {
        if h.sha256.as_deref() == Some(want) {
            return Ok("found installed".to_owned());
        }
    }
    install(link, local)?;
    match hello(link, true) {
        Ok(h) if h.sha256.as_deref() == Some(want) => Ok("installed".to_owned()),
        Ok(h) => Err(format!(
            "the installed vocc-host has sha256 {}, not {want}: is the program path shared \
             with another version?",
            h.sha256.unwrap_or_default()
        )),
        Err(e) => Err(format!("vocc-host does not run after installing it: {e}")),
    }
}

/// Asks the host's `vocc-host` who it is (with the sha256 of its binary if `sha256`).
pub fn hello(link: &HostLink, sha256: bool) -> Result<Hello, String> {
    call(
        link,
        HostOp::Hello,
        &HelloRequest { sha256 },
        Duration::from_secs(30),
    )
}

/// Copies `local` to the host's program path: written under a temporary name beside it,
/// made executable, renamed into place. The only words of the remote command are the
/// (checked, plain) program path and fixed ones.
fn install(link: &HostLink, local: &Path) -> Result<(), String> {
    let program = match link {
        HostLink::Local { program } => {
            return crate::atomic::install(program, |tmp| {
                std::fs::copy(local, tmp)?;
                std::fs::set_permissions(tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            })
            .map_err(|e| format!("cannot install `{}`: {e}", program.display()));
        }
        HostLink::Ssh { program, .. } | HostLink::Slurm { program, .. } => program.clone(),
    };
    link.check()?;
    let script = "set -e; p=\"$1\"; mkdir -p \"${p%/*}\"; t=\"$p.vocc-install.$$\"; \
                  cat > \"$t\"; chmod 755 \"$t\"; mv -f \"$t\" \"$p\"";
    let mut cmd = link.shell(script, &[&program])?;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the link to the host: {e}"))?;
    let mut file = std::fs::File::open(local)
        .map_err(|e| format!("cannot read `{}`: {e}", local.display()))?;
    // A copy cut short shows in the status and stderr, which say more than the pipe.
    let sent = match child.stdin.take() {
        Some(mut stdin) => io::copy(&mut file, &mut stdin).map(|_| ()),
        None => Ok(()),
    };
    let out = child
        .wait_with_output()
        .map_err(|e| format!("installing vocc-host: {e}"))?;
    if out.status.success() && sent.is_ok() {
        Ok(())
    } else {
        Err(format!(
            "cannot install vocc-host at `{program}`: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One request of a `vocc-host serve` session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    Hello {
        #[serde(default)]
        sha256: bool,
    },
    Remove {
        root: String,
        paths: Vec<String>,
    },
    /// The sha256 of files of the store (none where absent).
    Sums {
        root: String,
        paths: Vec<String>,
    },
    /// A small file into the store, in hex, whole or not at all.
    Put {
        root: String,
        path: String,
        mode: u32,
        sha256: String,
        hex: String,
    },
    /// An operation on one of the host's nodes (`hostnode`).
    Node(crate::hostnode::NodeRequest),
    /// Ends and removes what the host keeps of a cluster.
    Reclaim(crate::hostnode::ReclaimRequest),
}

/// The answer to one request, as a line of JSON.
fn respond(request: Request) -> io::Result<String> {
    Ok(match request {
        Request::Hello { sha256 } => {
            let mut out = Vec::new();
            let req = serde_json::to_vec(&HelloRequest { sha256 }).map_err(io::Error::other)?;
            serve_hello(&mut req.as_slice(), &mut out)?;
            String::from_utf8_lossy(&out).trim_end().to_owned()
        }
        Request::Remove { root, paths } => json(&remove_here(&Remove { root, paths })),
        Request::Sums { root, paths } => match crate::hostnode::sums(&root, &paths) {
            Ok(sums) => serde_json::json!({ "sums": sums }).to_string(),
            Err(e) => serde_json::json!({ "error": e }).to_string(),
        },
        Request::Put {
            root,
            path,
            mode,
            sha256,
            hex,
        } => match crate::hostnode::put(&root, &path, mode, &sha256, &hex) {
            Ok(()) => serde_json::json!({ "put": path }).to_string(),
            Err(e) => serde_json::json!({ "error": e }).to_string(),
        },
        Request::Node(req) => json(&crate::hostnode::handle(&req)),
        Request::Reclaim(req) => json(&crate::hostnode::reclaim(&req)),
    })
}

/// An answer as its line.
fn json<T: Serialize>(answer: &T) -> String {
    serde_json::to_string(answer).unwrap_or_else(|e| {
        serde_json::json!({ "error": format!("cannot write the answer: {e}") }).to_string()
    })
}

/// A request line tagged with the control side's number for it: such requests are
/// carried out at once, each in a thread of its own, and answered as they finish
/// (`{"id": N, "answer": ...}`), so that one node's long boot does not hold up the
/// host's other nodes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tagged {
    id: u64,
    request: serde_json::Value,
}

fn bad_request(e: impl std::fmt::Display) -> String {
    serde_json::json!({ "error": format!("a bad request: {e}") }).to_string()
}

/// The host half of a session: one answer line per request line, until stdin ends.
/// Untagged requests are answered in turn; tagged ones (`Tagged`) concurrently. A run
/// keeps one session per host open, so an operation on every host costs a line each
/// way, not a process start and a login per host.
pub fn serve(input: &mut dyn BufRead, output: &mut (dyn Write + Send)) -> io::Result<()> {
    let output = std::sync::Mutex::new(output);
    let say = |line: &str| -> io::Result<()> {
        let mut out = output.lock().unwrap_or_else(|e| e.into_inner());
        writeln!(out, "{line}")?;
        out.flush()
    };
    std::thread::scope(|s| loop {
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        if let Ok(tagged) = serde_json::from_str::<Tagged>(&line) {
            let say = &say;
            s.spawn(move || {
                let answer = match serde_json::from_value::<Request>(tagged.request) {
                    Ok(r) => respond(r).unwrap_or_else(|e| {
                        serde_json::json!({ "error": e.to_string() }).to_string()
                    }),
                    Err(e) => bad_request(e),
                };
                // The control side may be gone; nothing else is to be done then.
                let _ = say(&format!("{{\"id\":{},\"answer\":{answer}}}", tagged.id));
            });
            continue;
        }
        let answer = match serde_json::from_str::<Request>(&line) {
            Ok(r) => respond(r)?,
            Err(e) => bad_request(e),
        };
        say(&answer)?;
    })
}

/// The control half of a session with one host's `vocc-host serve`.
pub struct Session {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: io::BufReader<std::process::ChildStdout>,
}

impl Session {
    /// Starts `vocc-host serve` on the host.
    pub fn open(link: &HostLink) -> Result<Session, String> {
        link.connect()?;
        let mut child = link
            .command(HostOp::Serve)?
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the link to the host: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = io::BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Session {
            child,
            stdin,
            stdout,
        })
    }

    /// Sends a request without waiting for its answer (so that all hosts work at once).
    pub fn send(&mut self, request: &Request) -> Result<(), String> {
        let mut line = serde_json::to_vec(request).map_err(|e| e.to_string())?;
        line.push(b'\n');
        self.stdin
            .write_all(&line)
            .and_then(|_| self.stdin.flush())
            .map_err(|e| format!("the link to the host closed: {e}"))
    }

    /// Reads the answer to the oldest request sent.
    pub fn answer<A: for<'de> Deserialize<'de>>(&mut self) -> Result<A, String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => Err("the link to the host closed".into()),
            Ok(_) => serde_json::from_str(&line)
                .map_err(|e| format!("the host answered something else than vocc-host ({e})")),
            Err(e) => Err(format!("reading the host's answer: {e}")),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The control half of a multiplexed session with one host's `vocc-host serve`: many
/// requests in flight at once, from many threads, each answered when the host is done
/// with it. A link that closes fails every request waiting on it, with the host's last
/// words.
pub struct Mux {
    child: std::sync::Mutex<std::process::Child>,
    stdin: std::sync::Mutex<std::process::ChildStdin>,
    waiting: std::sync::Arc<std::sync::Mutex<Waiting>>,
    next: std::sync::atomic::AtomicU64,
}

type Reply = Result<serde_json::Value, String>;

#[derive(Default)]
struct Waiting {
    /// Each request in flight, and where its answer goes (with when it came).
    by_id: std::collections::HashMap<u64, std::sync::mpsc::Sender<(Reply, Instant)>>,
    /// Why the link closed, once it has.
    closed: Option<String>,
}

impl Mux {
    /// Starts `vocc-host serve` on the host.
    pub fn open(link: &HostLink) -> Result<Mux, String> {
        use std::sync::{Arc, Mutex};
        link.connect()?;
        let mut child = link
            .command(HostOp::Serve)?
            .spawn()
            .map_err(|e| format!("cannot start the link to the host: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = io::BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let stderr = child.stderr.take().ok_or("no stderr")?;
        // The link's last words, for the message when it closes.
        let said = Arc::new(Mutex::new(String::new()));
        {
            let said = Arc::clone(&said);
            std::thread::spawn(move || {
                for line in io::BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut s = said.lock().unwrap_or_else(|e| e.into_inner());
                    if s.len() > 4096 {
                        s.clear();
                    }
                    s.push_str(line.trim());
                    s.push('\n');
                }
            });
        }
        let waiting = Arc::new(Mutex::new(Waiting::default()));
        {
            let waiting = Arc::clone(&waiting);
            std::thread::spawn(move || {
                let mut stdout = stdout;
                let mut why = "the link to the host closed".to_owned();
                loop {
                    let mut line = String::new();
                    match stdout.read_line(&mut line) {
                        Ok(0) => break,
                        Err(e) => {
                            why = format!("reading the host's answers: {e}");
                            break;
                        }
                        Ok(_) => {}
                    }
                    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&line) else {
                        why = "the host answered something else than vocc-host".to_owned();
                        break;
                    };
                    let Some(id) = v.get("id").and_then(|i| i.as_u64()) else {
                        continue;
                    };
                    let answer = v.get_mut("answer").map(serde_json::Value::take);
                    let at = Instant::now();
                    let tx = waiting
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .by_id
                        .remove(&id);
                    if let (Some(tx), Some(a)) = (tx, answer) {
                        let _ = tx.send((Ok(a), at));
                    }
                }
                // Give stderr a moment to say why.
                std::thread::sleep(Duration::from_millis(100));
                let last = said.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if let Some(l) = last.trim().lines().last() {
                    why = format!("{why}: {l}");
                }
                let mut w = waiting.lock().unwrap_or_else(|e| e.into_inner());
                let at = Instant::now();
                for (_, tx) in w.by_id.drain() {
                    let _ = tx.send((Err(why.clone()), at));
                }
                w.closed = Some(why);
            });
        }
        Ok(Mux {
            child: std::sync::Mutex::new(child),
            stdin: std::sync::Mutex::new(stdin),
            waiting,
            next: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// Why the link closed, if it has.
    pub fn closed(&self) -> Option<String> {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed
            .clone()
    }

    /// Sends a request and waits up to `limit` for its answer. An answer that is only
    /// `{"error": ...}` (a request the host refused) is an error.
    pub fn call(&self, request: &Request, limit: Duration) -> Result<serde_json::Value, String> {
        self.send(request)?.wait(limit).0
    }

    /// Sends a request and returns at once: the answer is the ticket's to wait for, so
    /// one thread can have a request in flight on every host's session.
    pub fn send(&self, request: &Request) -> Result<Ticket, String> {
        let body = serde_json::to_string(request).map_err(|e| e.to_string())?;
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(why) = &w.closed {
                return Err(why.clone());
            }
            w.by_id.insert(id, tx);
        }
        let line = format!("{{\"id\":{id},\"request\":{body}}}\n");
        let sent = {
            let mut stdin = self.stdin.lock().unwrap_or_else(|e| e.into_inner());
            stdin.write_all(line.as_bytes()).and_then(|_| stdin.flush())
        };
        let ticket = Ticket {
            id,
            rx,
            sent: Instant::now(),
            waiting: std::sync::Arc::clone(&self.waiting),
        };
        if let Err(e) = sent {
            ticket.forget();
            return Err(self
                .closed()
                .unwrap_or_else(|| format!("the link to the host closed: {e}")));
        }
        Ok(ticket)
    }
}

/// A request in flight on a `Mux`.
pub struct Ticket {
    id: u64,
    rx: std::sync::mpsc::Receiver<(Reply, Instant)>,
    sent: Instant,
    waiting: std::sync::Arc<std::sync::Mutex<Waiting>>,
}

impl Ticket {
    /// Waits up to `limit` (from now) for the answer; returns it with the time from the
    /// request's sending to its answer's arrival (to the giving up, without one). An
    /// answer that is only `{"error": ...}` is an error.
    pub fn wait(self, limit: Duration) -> (Reply, Duration) {
        match self.rx.recv_timeout(limit) {
            Ok((Ok(v), at)) => {
                let took = at.saturating_duration_since(self.sent);
                match v.as_object() {
                    Some(o) if o.len() == 1 && o.contains_key("error") => (
                        Err(o["error"].as_str().unwrap_or("an error").to_owned()),
                        took,
                    ),
                    _ => (Ok(v), took),
                }
            }
            Ok((Err(why), at)) => (Err(why), at.saturating_duration_since(self.sent)),
            Err(_) => {
                self.forget();
                (
                    Err(format!(
                        "the host did not answer within {} s",
                        limit.as_secs()
                    )),
                    self.sent.elapsed(),
                )
            }
        }
    }

    fn forget(&self) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_id
            .remove(&self.id);
    }
}

impl Drop for Mux {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}
