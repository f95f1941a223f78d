//! The guest agent script (`runtime/guest/vocc-agent`) as it runs in a guest, on a
//! pseudo-terminal standing in for the serial port, driven by the host side
//! (`agent::exec`) through a unix socket relayed to the terminal, as qemu relays
//! `agent.sock` to the node's ttyS1.

use std::ffi::CStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vocc_runtime::agent;

/// A pseudo-terminal: the master (the host's end) and the slave's path (the guest's
/// serial port).
fn pty() -> (File, PathBuf) {
    // SAFETY: plain libc calls on a descriptor we own; ptsname's buffer is copied at once.
    unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(fd >= 0);
        assert_eq!(libc::grantpt(fd), 0);
        assert_eq!(libc::unlockpt(fd), 0);
        let name = CStr::from_ptr(libc::ptsname(fd))
            .to_string_lossy()
            .into_owned();
        (File::from_raw_fd(fd), PathBuf::from(name))
    }
}

struct Guest {
    agent: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.agent.kill();
        let _ = self.agent.wait();
    }
}

/// The agent on a terminal, and `agent.sock` relaying to it.
fn guest() -> Guest {
    let dir = tempfile::tempdir().unwrap();
    let (master, slave) = pty();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("guest/vocc-agent");
    let agent = Command::new("sh")
        .arg(&script)
        .arg(&slave)
        .env("TMPDIR", dir.path())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let socket = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    // Non-blocking, so that the relay notices when the host leaves.
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&master);
        libc::fcntl(
            fd,
            libc::F_SETFL,
            libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK,
        );
    }
    let mut from_guest = master.try_clone().unwrap();
    std::thread::spawn(move || {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        // One connection at a time, as qemu's chardev: relay until the host leaves.
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut to_guest = master.try_clone().unwrap();
            let mut back = conn.try_clone().unwrap();
            let gone = Arc::new(AtomicBool::new(false));
            let left = gone.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || to_guest.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                left.store(true, Ordering::SeqCst);
            });
            let mut buf = [0u8; 4096];
            while !gone.load(Ordering::SeqCst) {
                match from_guest.read(&mut buf) {
                    Ok(n) if n > 0 => {
                        if back.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    _ => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
    });
    Guest {
        agent,
        socket,
        _dir: dir,
    }
}

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

#[test]
fn the_agent_runs_a_request_once_even_when_it_is_sent_twice() {
    let g = guest();
    let out = agent::exec(
        &g.socket,
        &args(&["sh", "-c", "echo hello; echo oops >&2; exit 3"]),
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice(), out.status),
        (&b"hello\n"[..], &b"oops\n"[..], 3)
    );
    // Arguments reach the command as they are, spaces and shell syntax included.
    let out = agent::exec(
        &g.socket,
        &args(&["printf", "%s|", "a  b", "$HOME `x`; rm"]),
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(out.stdout, b"a  b|$HOME `x`; rm|");

    // The same request three times, as a host that heard no acknowledgement sends it:
    // one run, and an answer to each copy.
    let count = g._dir.path().join("runs");
    let request = format!(
        "\nvocc-exec 7x7 {} {} {}\n",
        agent::encode(b"sh"),
        agent::encode(b"-c"),
        agent::encode(format!("echo run >> {}", count.display()).as_bytes())
    );
    let mut conn = std::os::unix::net::UnixStream::connect(&g.socket).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    for _ in 0..3 {
        conn.write_all(request.as_bytes()).unwrap();
    }
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while seen.matches("vocc-exit 7x7 0").count() < 3 {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "{seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(seen.matches("vocc-ack 7x7").count(), 3, "{seen}");
    assert_eq!(std::fs::read_to_string(&count).unwrap(), "run\n");
}
