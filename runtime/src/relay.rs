//! The host half of staging a layer over the network: receive a file from an upstream
//! peer into the host's store, forward it to the next host of a chain while it arrives,
//! verify it by its sha256, and resume after an interruption.
//!
//! Layers travel down a pipelined chain (source → h1 → h2 → … → hN, the technique of
//! Kadeploy's chain deployment): every host receives at its link's rate and, at the same
//! time, sends what it has to the next one, so the time to reach N hosts stays close to
//! one transfer time whatever N is, and each layer crosses each link once. A host sends
//! its successor from its own file, not from the stream it is reading, so each hop
//! carries exactly the bytes the receiver lacks: a resumed transfer sends no byte twice.
//!
//! The protocol on a host's control link (stdin/stdout of `vocc-host receive`, reached
//! locally, over SSH or through Slurm) is JSON lines: the control side sends a
//! [`Receive`], the host answers [`Event::Listening`] with its port and how much of the
//! file it already has (or [`Event::Done`] at once when it has it all), the control side
//! sends a [`Forward`] naming the next hop, and the host ends with `Done` or `Failed`.
//! The data connection starts with a header (the transfer's token and the offset the
//! sender starts from); a connection with another token is refused. What arrives is
//! trusted only once its sha256 matches the one the control side sent.
//!
//! Every wait of a host has a deadline (its request, its next hop, its upstream, each
//! read and write), so a host always ends with an event that names the step it stopped
//! at. The host writes its steps to stderr as it goes (`vocc-host receive: 1.694 s:
//! waiting for the upstream (up to 40 s)`), which the control side keeps.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The size of one read or write of layer data.
pub const CHUNK: usize = 1 << 20;

/// What the control side asks of a host: receive `path` (absolute, on the host) with
/// this size and sha256, from whoever presents `token`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Receive {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub token: String,
    /// The address the host listens on for its upstream (its address on the site's
    /// network; `0.0.0.0` for any).
    pub listen: String,
    /// Seconds without progress after which a transfer gives up (a cut link).
    pub stall_secs: u64,
    /// Seconds the host waits for its [`Forward`] once it reported `Listening`: the
    /// control side sends it when every host of the round has answered, which it waits
    /// for a bounded time, so a host never waits for it forever.
    #[serde(default = "default_forward_secs")]
    pub forward_secs: u64,
}

fn default_forward_secs() -> u64 {
    120
}

/// The next hop of the chain, or none for its last host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    pub next: Option<Peer>,
}

/// A host waiting for data: where to connect and from which offset to send.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    pub address: String,
    pub port: u16,
    pub token: String,
    pub from: u64,
}

/// What a host reports on its control link.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "lowercase", deny_unknown_fields)]
pub enum Event {
    /// Ready for its upstream: the port it listens on and the bytes it already has.
    Listening { port: u16, have: u64 },
    /// The whole file is in place and verified. `received` counts the bytes that came
    /// over the network in this transfer; `forwarded` those sent on to the next hop;
    /// `forward_error` says why the next hop did not get everything (it is that host's
    /// failure, not this one's).
    Done {
        received: u64,
        forwarded: u64,
        forward_error: Option<String>,
    },
    /// The transfer stopped: at which step, why, and how much of the file is kept for
    /// a resumed transfer.
    Failed {
        step: String,
        error: String,
        have: u64,
        received: u64,
    },
}

/// Where a file's received part is kept until it is whole and verified.
pub fn partial_path(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    path.with_file_name(format!(".{name}.partial"))
}

/// A path a host accepts to write: absolute, with no `..`, no empty or control-character
/// components.
pub fn check_path(path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!("`{path}` is not an absolute path"));
    }
    if path.chars().any(char::is_control) {
        return Err("the path holds control characters".into());
    }
    for c in p.components() {
        match c {
            Component::RootDir | Component::Normal(_) => {}
            _ => return Err(format!("`{path}` is not a plain path (no `.` or `..`)")),
        }
    }
    if p.file_name().is_none() {
        return Err(format!("`{path}` names no file"));
    }
    Ok(p.to_path_buf())
}

/// Whether `s` is a lowercase sha256 in hex.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The data connection's header: the token, then the offset the sender starts from.
fn write_header(stream: &mut TcpStream, token: &str, from: u64) -> io::Result<()> {
    let mut header = Vec::with_capacity(token.len() + 10);
    header.push(token.len() as u8);
    header.extend_from_slice(token.as_bytes());
    header.extend_from_slice(&from.to_be_bytes());
    stream.write_all(&header)
}

fn read_header(stream: &mut TcpStream) -> io::Result<(String, u64)> {
    let mut len = [0u8; 1];
    stream.read_exact(&mut len)?;
    let mut token = vec![0u8; len[0] as usize];
    stream.read_exact(&mut token)?;
    let mut from = [0u8; 8];
    stream.read_exact(&mut from)?;
    Ok((
        String::from_utf8_lossy(&token).into_owned(),
        u64::from_be_bytes(from),
    ))
}

/// How far the local file is written, shared by the receiving and forwarding halves.
#[derive(Default)]
struct Progress {
    written: Mutex<(u64, bool)>,
    changed: Condvar,
}

impl Progress {
    fn advance(&self, to: u64) {
        let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
        w.0 = to;
        self.changed.notify_all();
    }

    fn finish(&self) {
        let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
        w.1 = true;
        self.changed.notify_all();
    }

    /// Waits until more than `pos` bytes are written (or the receiving half ended);
    /// returns how many are.
    fn wait_beyond(&self, pos: u64, limit: Duration) -> (u64, bool) {
        let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = Instant::now() + limit;
        while w.0 <= pos && !w.1 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            w = self
                .changed
                .wait_timeout(w, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *w
    }
}

/// Sends `file` from byte `from` to `size` into `stream`, reading only what `progress`
/// says is written. Returns the bytes sent.
fn send_from_file(
    file: &File,
    stream: &mut TcpStream,
    from: u64,
    size: u64,
    progress: Option<&Progress>,
    stall: Duration,
) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut pos = from;
    while pos < size {
        let available = match progress {
            Some(p) => {
                let (written, ended) = p.wait_beyond(pos, stall);
                if written <= pos {
                    let why = if ended {
                        "this host stopped receiving"
                    } else {
                        "no data arrived to forward"
                    };
                    return Err(io::Error::new(io::ErrorKind::TimedOut, why));
                }
                written
            }
            None => size,
        };
        let n = ((available - pos) as usize).min(CHUNK);
        file.read_exact_at(&mut buf[..n], pos)?;
        stream.write_all(&buf[..n])?;
        pos += n as u64;
    }
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Write);
    Ok(pos - from)
}

/// Connects to `peer` and sends it `file` from the offset it asked for.
pub fn send_to(file: &File, size: u64, peer: &Peer, stall: Duration) -> io::Result<u64> {
    send_to_inner(file, size, peer, None, stall)
}

fn send_to_inner(
    file: &File,
    size: u64,
    peer: &Peer,
    progress: Option<&Progress>,
    stall: Duration,
) -> io::Result<u64> {
    let addr: SocketAddr = format!("{}:{}", peer.address, peer.port)
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{e}")))?;
    let mut stream = TcpStream::connect_timeout(&addr, stall)?;
    stream.set_write_timeout(Some(stall))?;
    stream.set_nodelay(true)?;
    write_header(&mut stream, &peer.token, peer.from)?;
    send_from_file(file, &mut stream, peer.from, size, progress, stall)
}

/// Hashes the first `len` bytes of `file`.
fn hash_prefix(file: &File, len: u64) -> io::Result<Sha256> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0;
    while pos < len {
        let n = ((len - pos) as usize).min(CHUNK);
        file.read_exact_at(&mut buf[..n], pos)?;
        h.update(&buf[..n]);
        pos += n as u64;
    }
    Ok(h)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 of a whole file.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    Ok(hex(&hash_prefix(&f, len)?.finalize()))
}

/// The lines the control side sends on a host's control link, read by a thread of
/// their own so that every wait for one has a deadline: a control side that never
/// sends its next line (or a link that holds it) ends the transfer with a failure that
/// says which line was awaited, instead of leaving the host waiting forever.
struct Requests {
    lines: mpsc::Receiver<io::Result<String>>,
}

impl Requests {
    fn new<R: BufRead + Send + 'static>(mut input: R) -> Requests {
        let (tx, rx) = mpsc::channel();
        // Detached: a read that never returns must not keep the transfer from ending.
        thread::spawn(move || loop {
            let mut line = String::new();
            let read = input.read_line(&mut line);
            let end = !matches!(read, Ok(n) if n > 0);
            if tx.send(read.map(|_| line)).is_err() || end {
                return;
            }
        });
        Requests { lines: rx }
    }

    /// The next line, parsed as `T`; `what` names it in the failure.
    fn next<T: for<'de> Deserialize<'de>>(&self, what: &str, limit: Duration) -> Result<T, String> {
        match self.lines.recv_timeout(limit) {
            Ok(Ok(line)) if line.is_empty() => Err(format!(
                "the control side closed the link before sending {what}"
            )),
            Ok(Ok(line)) => serde_json::from_str(&line).map_err(|e| format!("a bad {what}: {e}")),
            Ok(Err(e)) => Err(format!("cannot read {what}: {e}")),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "no {what} from the control side within {} s",
                limit.as_secs()
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(format!(
                "the control side closed the link before sending {what}"
            )),
        }
    }
}

/// How long a host waits for its request once started: the control side sends it
/// right after starting the host's program, so it is normally there already.
pub const REQUEST_WAIT: Duration = Duration::from_secs(60);

/// The steps of a transfer on a host, written to its stderr as they happen, so that
/// the control side can say which step a host that stopped answering was in.
struct Steps {
    started: Instant,
}

impl Steps {
    fn step(&self, what: std::fmt::Arguments) {
        let t = self.started.elapsed().as_secs_f64();
        // stderr is unbuffered; a failed write (a closed link) changes nothing here.
        let _ = writeln!(io::stderr(), "vocc-host receive: {t:.3} s: {what}");
    }
}

/// Runs one transfer on a host: the host half of the protocol, reading the control
/// link's lines from `input` and answering on `output`. Everything that goes wrong
/// ends in a `Failed` event; every wait has a deadline.
pub fn serve_receive<R: BufRead + Send + 'static>(
    input: R,
    output: &mut dyn Write,
) -> io::Result<()> {
    let steps = Steps {
        started: Instant::now(),
    };
    let requests = Requests::new(input);
    let event = match receive(&requests, output, &steps) {
        Ok(event) => event,
        Err((step, error, have, received)) => Event::Failed {
            step: step.into(),
            error,
            have,
            received,
        },
    };
    match &event {
        Event::Failed { step, error, .. } => steps.step(format_args!("failed at {step}: {error}")),
        _ => steps.step(format_args!("done")),
    }
    emit(output, &event)
}

fn emit(output: &mut dyn Write, event: &Event) -> io::Result<()> {
    let mut line = serde_json::to_vec(event).map_err(io::Error::other)?;
    line.push(b'\n');
    output.write_all(&line)?;
    output.flush()
}

type Failure = (&'static str, String, u64, u64);

fn receive(requests: &Requests, output: &mut dyn Write, steps: &Steps) -> Result<Event, Failure> {
    let fail = |step: &'static str, have: u64| move |e: String| (step, e, have, 0);
    steps.step(format_args!(
        "waiting for the request (up to {} s)",
        REQUEST_WAIT.as_secs()
    ));
    let req: Receive = requests
        .next("request", REQUEST_WAIT)
        .map_err(fail("request", 0))?;
    let path = check_path(&req.path).map_err(fail("request", 0))?;
    if !is_sha256(&req.sha256) {
        return Err(("request", "the sha256 is not 64 hex digits".into(), 0, 0));
    }
    if req.token.is_empty() || req.token.len() > 128 {
        return Err(("request", "the token must have 1 to 128 bytes".into(), 0, 0));
    }
    let stall = Duration::from_secs(req.stall_secs.max(1));
    let forward_limit = Duration::from_secs(req.forward_secs.max(1));
    steps.step(format_args!(
        "request for `{}` ({} bytes)",
        req.path, req.size
    ));

    // Already there and whole: nothing to receive.
    if fs::metadata(&path).is_ok_and(|m| m.len() == req.size)
        && sha256_file(&path).is_ok_and(|h| h == req.sha256)
    {
        steps.step(format_args!(
            "has the file whole; waiting for the next hop (up to {} s)",
            forward_limit.as_secs()
        ));
        emit(
            output,
            &Event::Listening {
                port: 0,
                have: req.size,
            },
        )
        .map_err(|e| ("report", e.to_string(), req.size, 0))?;
        let forward: Forward = requests
            .next("next hop", forward_limit)
            .map_err(fail("request", req.size))?;
        // A host with the whole file may head the chain (a site's image server): it
        // sends the next hop what that one lacks, from its own file.
        let (forwarded, forward_error) = match &forward.next {
            None => (0, None),
            Some(peer) => {
                steps.step(format_args!(
                    "heads the chain: sending to {}:{} from byte {}",
                    peer.address, peer.port, peer.from
                ));
                let sent =
                    File::open(&path).and_then(|f| send_to_inner(&f, req.size, peer, None, stall));
                match sent {
                    Ok(n) => {
                        steps.step(format_args!("sent {n} bytes"));
                        (n, None)
                    }
                    Err(e) => {
                        steps.step(format_args!("sending stopped: {e}"));
                        (0, Some(e.to_string()))
                    }
                }
            }
        };
        return Ok(Event::Done {
            received: 0,
            forwarded,
            forward_error,
        });
    }

    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).map_err(|e| {
        (
            "store",
            format!("cannot create `{}`: {e}", dir.display()),
            0,
            0,
        )
    })?;
    let partial = partial_path(&path);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&partial)
        .map_err(|e| {
            (
                "store",
                format!("cannot open `{}`: {e}", partial.display()),
                0,
                0,
            )
        })?;
    let mut have = file.metadata().map(|m| m.len()).unwrap_or(0);
    if have > req.size {
        file.set_len(0)
            .map_err(|e| ("store", e.to_string(), 0, 0))?;
        have = 0;
    }

    let listener = TcpListener::bind((req.listen.as_str(), 0)).map_err(|e| {
        (
            "listen",
            format!("cannot listen on `{}`: {e}", req.listen),
            have,
            0,
        )
    })?;
    let port = listener
        .local_addr()
        .map_err(|e| ("listen", e.to_string(), have, 0))?
        .port();
    emit(output, &Event::Listening { port, have })
        .map_err(|e| ("report", e.to_string(), have, 0))?;
    steps.step(format_args!(
        "listening on port {port} with {have} bytes; waiting for the next hop (up to {} s)",
        forward_limit.as_secs()
    ));
    let forward: Forward = requests
        .next("next hop", forward_limit)
        .map_err(fail("request", have))?;
    match &forward.next {
        Some(p) => steps.step(format_args!(
            "next hop {}:{} from byte {}",
            p.address, p.port, p.from
        )),
        None => steps.step(format_args!("last of the chain")),
    }

    let progress = Arc::new(Progress::default());
    progress.advance(have);
    let file = Arc::new(file);
    let forwarder = forward.next.clone().map(|peer| {
        let (file, progress) = (Arc::clone(&file), Arc::clone(&progress));
        let size = req.size;
        thread::spawn(move || send_to_inner(&file, size, &peer, Some(&progress), stall))
    });

    let received = receive_stream(&listener, &file, &req, have, &progress, stall, steps);
    progress.finish();
    match &received {
        Ok(n) => steps.step(format_args!("received {n} bytes")),
        Err((e, n)) => steps.step(format_args!("receiving stopped after {n} bytes: {e}")),
    }
    if forwarder.is_some() {
        steps.step(format_args!("waiting for the next hop to take the rest"));
    }
    let forwarded = forwarder.map(|t| {
        t.join()
            .unwrap_or_else(|_| Err(io::Error::other("the forwarding thread panicked")))
    });
    let (forwarded, forward_error) = match forwarded {
        None => (0, None),
        Some(Ok(n)) => (n, None),
        Some(Err(e)) => (0, Some(e.to_string())),
    };
    let received = match received {
        Ok(n) => n,
        Err((error, received)) => {
            let have = file.metadata().map(|m| m.len()).unwrap_or(0);
            return Err(("receive", error, have, received));
        }
    };

    // Whole: verify, then make it the store's file.
    file.sync_all()
        .map_err(|e| ("store", e.to_string(), req.size, received))?;
    let digest = hex(&hash_prefix(&file, req.size)
        .map_err(|e| ("verify", e.to_string(), req.size, received))?
        .finalize());
    if digest != req.sha256 {
        let _ = fs::remove_file(&partial);
        return Err((
            "verify",
            format!(
                "received sha256 {digest}, expected {}; the part is discarded",
                req.sha256
            ),
            0,
            received,
        ));
    }
    fs::rename(&partial, &path).map_err(|e| ("store", e.to_string(), req.size, received))?;
    let _ = crate::atomic::sync_dir(dir);
    Ok(Event::Done {
        received,
        forwarded,
        forward_error,
    })
}

/// Accepts the upstream (the first connection with the right token) and writes what it
/// sends at the offset it names, which must be what this host has.
fn receive_stream(
    listener: &TcpListener,
    file: &File,
    req: &Receive,
    have: u64,
    progress: &Progress,
    stall: Duration,
    steps: &Steps,
) -> Result<u64, (String, u64)> {
    if have == req.size {
        return Ok(0);
    }
    steps.step(format_args!(
        "waiting for the upstream (up to {} s)",
        (stall * 4).as_secs()
    ));
    let mut stream = accept(listener, &req.token, have, stall).map_err(|e| (e, 0))?;
    steps.step(format_args!(
        "upstream {} connected, sending from byte {have}",
        stream
            .peer_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string())
    ));
    stream
        .set_read_timeout(Some(stall))
        .map_err(|e| (e.to_string(), 0))?;
    let mut buf = vec![0u8; CHUNK];
    let mut pos = have;
    while pos < req.size {
        let want = ((req.size - pos) as usize).min(CHUNK);
        let n = match stream.read(&mut buf[..want]) {
            Ok(0) => {
                return Err((
                    format!(
                        "the upstream closed the connection at byte {pos} of {}",
                        req.size
                    ),
                    pos - have,
                ))
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err((
                    format!(
                        "no data from the upstream for {} s at byte {pos} of {}",
                        stall.as_secs(),
                        req.size
                    ),
                    pos - have,
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err((format!("receiving: {e}"), pos - have)),
        };
        file.write_all_at(&buf[..n], pos)
            .map_err(|e| (format!("writing the store: {e}"), pos - have))?;
        pos += n as u64;
        progress.advance(pos);
    }
    Ok(pos - have)
}

fn accept(
    listener: &TcpListener,
    token: &str,
    have: u64,
    stall: Duration,
) -> Result<TcpStream, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + stall * 4;
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false).map_err(|e| e.to_string())?;
                stream
                    .set_read_timeout(Some(stall))
                    .map_err(|e| e.to_string())?;
                match read_header(&mut stream) {
                    Ok((t, from)) if t == token && from == have => return Ok(stream),
                    Ok((t, from)) if t == token => {
                        return Err(format!(
                            "the upstream starts at byte {from}, this host has {have}"
                        ))
                    }
                    // Someone else: not our upstream; keep waiting for it.
                    _ => {}
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("accepting the upstream: {e}")),
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no upstream connected within {} s",
                (stall * 4).as_secs()
            ));
        }
    }
}
