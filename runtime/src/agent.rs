//! The host side of the command agent behind `vocc exec`: a line protocol over a
//! serial port of the guest that qemu exposes as a unix socket on the host. The guest
//! side is the POSIX sh script `runtime/guest/vocc-agent` (see `agent.md`).
//!
//! Arguments travel base64-encoded, one word each, so no value is ever interpreted by
//! a shell on either side: the guest rebuilds the argument vector and runs it as such.

use crate::driver::ExecOutput;
use crate::error::{Error, Result};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the host waits for the guest to acknowledge a request before it sends it
/// again, at first; the wait doubles up to `RESEND_MAX`.
const RESEND_FIRST: Duration = Duration::from_millis(500);
const RESEND_MAX: Duration = Duration::from_secs(4);
/// The longest single read, so that the deadline and resends are looked at.
const READ_SLICE: Duration = Duration::from_millis(500);

/// The guest side, for the image side to install as `/lib/vocc/vocc-agent`.
pub const GUEST_SCRIPT: &str = include_str!("../guest/vocc-agent");

/// Runs `argv` on the guest behind `socket` and waits up to `limit` for its answer.
pub fn exec(socket: &Path, argv: &[String], limit: Duration) -> Result<ExecOutput> {
    if argv.is_empty() {
        return Err(Error::Other("no command to run".to_owned()));
    }
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Error::Other(format!("the agent at `{}`: {what}: {e}", socket.display()))
    };
    let stream = UnixStream::connect(socket).map_err(|e| {
        fail(
            "cannot connect (is the node running, and was it booted by the qemu driver?)",
            &e,
        )
    })?;
    // Unique enough to tell this request's answer from an abandoned one's.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let id = format!("{}x{}x{nanos}", std::process::id(), crate::state::now_ms());
    let mut request = format!("vocc-exec {id}");
    for a in argv {
        request.push(' ');
        request.push_str(&encode(a.as_bytes()));
    }
    request.push('\n');
    let mut writer = stream.try_clone().map_err(|e| fail("socket", &e))?;
    // A line first, so that a partial line left in the guest's buffer by an
    // interrupted exec ends before the request starts.
    let framed = format!("\n{request}");
    let mut send = || {
        writer
            .write_all(framed.as_bytes())
            .map_err(|e| fail("cannot write", &e))
    };
    send()?;
    let deadline = Instant::now() + limit;
    // Until the guest acknowledges the request, it is sent again, at growing
    // intervals: a request that reaches the port before the agent reads it (right
    // after the readiness marker) is lost. The agent runs an ID once.
    let mut resend = Instant::now() + RESEND_FIRST;
    let mut interval = RESEND_FIRST;
    let mut acked = false;
    let mut reader = BufReader::new(stream);
    let mut out = ExecOutput {
        status: -1,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    let mut begun = false;
    let mut line = Vec::new();
    loop {
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        if left.is_zero() {
            return Err(Error::Other(format!(
                "the command did not finish within {} s{}",
                limit.as_secs(),
                if acked {
                    ""
                } else {
                    " (the node's agent never acknowledged it: is the node's agent running?)"
                }
            )));
        }
        if !acked && now >= resend {
            send()?;
            interval = (interval * 2).min(RESEND_MAX);
            resend = now + interval;
        }
        let wait = if acked {
            left
        } else {
            left.min(resend.saturating_duration_since(now))
        };
        reader
            .get_ref()
            .set_read_timeout(Some(wait.clamp(Duration::from_millis(10), READ_SLICE)))
            .map_err(|e| fail("socket", &e))?;
        // A timeout can come in the middle of a line (the guest's serial port is slow
        // under emulation): what was read stays in `line` and the next read goes on.
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return Err(fail("closed", &"the guest closed the connection")),
            Ok(_) if line.last() != Some(&b'\n') => continue,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return Err(fail("cannot read", &e)),
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let mut words = text.split(' ');
        match (words.next(), words.next()) {
            (Some("vocc-ack"), Some(got)) if got == id => acked = true,
            (Some("vocc-begin"), Some(got)) if got == id => {
                acked = true;
                begun = true;
                // An answer sent again (for a request sent again) starts over.
                out.stdout.clear();
                out.stderr.clear();
            }
            (Some("vocc-out"), Some(data)) if begun => out.stdout.extend(decode(data)?),
            (Some("vocc-err"), Some(data)) if begun => out.stderr.extend(decode(data)?),
            (Some("vocc-exit"), Some(got)) if begun && got == id => {
                out.status = words.next().and_then(|s| s.parse().ok()).unwrap_or(-1);
                return Ok(out);
            }
            _ => {} // Noise, or the answer to an earlier, abandoned request.
        }
        line.clear();
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional).
pub fn decode(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        if c == b'=' {
            break;
        }
        let v = ALPHABET
            .iter()
            .position(|&a| a == c)
            .ok_or_else(|| Error::Other(format!("the agent sent bad base64: `{text}`")))?;
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "ping -c 1 head; rm -rf /",
            "é\n\0x",
        ] {
            let e = encode(s.as_bytes());
            assert_eq!(decode(&e).unwrap(), s.as_bytes(), "{e}");
        }
        assert_eq!(encode(b"hello"), "aGVsbG8=");
        assert_eq!(decode("aGVsbG8").unwrap(), b"hello");
    }

    /// The guest's answer arrives in pieces, with pauses longer than a read timeout in
    /// the middle of lines (a slow serial port): nothing of it may be lost.
    #[test]
    fn an_answer_split_across_read_timeouts_is_read_whole() {
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let guest = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while !line.starts_with("vocc-exec ") {
                line.clear();
                reader.read_line(&mut line).unwrap();
            }
            let id = line.split(' ').nth(1).unwrap().to_owned();
            let mut w = stream;
            let answer = format!(
                "noise\nvocc-begin {id}\nvocc-out {}\nvocc-exit {id} 3\n",
                encode(b"hello")
            );
            // Cut inside the begin, out and exit lines; each pause outlasts the host's
            // 500 ms read timeout.
            let bytes = answer.as_bytes();
            let cuts = [0, 13, 6 + 11 + id.len() + 5, bytes.len() - 6, bytes.len()];
            for pair in cuts.windows(2) {
                w.write_all(&bytes[pair[0]..pair[1]]).unwrap();
                w.flush().unwrap();
                std::thread::sleep(Duration::from_millis(700));
            }
            // Keep the connection open until the host has read everything.
            std::thread::sleep(Duration::from_millis(500));
        });
        let out = exec(&socket, &["true".to_owned()], Duration::from_secs(30)).unwrap();
        assert_eq!(out.stdout, b"hello");
        assert_eq!(out.status, 3);
        guest.join().unwrap();
    }

    /// A request that reaches the port before the guest's agent reads it is lost (right
    /// after the readiness marker): the host sends it again until it is acknowledged,
    /// instead of waiting for the whole limit.
    #[test]
    fn a_lost_request_is_sent_again_until_acknowledged() {
        use std::os::unix::net::UnixListener;
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let guest = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut w = stream;
            let mut seen = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 {
                    return seen;
                }
                if !line.starts_with("vocc-exec ") {
                    continue;
                }
                seen += 1;
                if seen == 1 {
                    continue; // The first copy never reached the agent.
                }
                let id = line.trim_end().split(' ').nth(1).unwrap().to_owned();
                let answer = format!(
                    "vocc-ack {id}\nvocc-begin {id}\nvocc-out {}\nvocc-exit {id} 0\n",
                    encode(b"up")
                );
                w.write_all(answer.as_bytes()).unwrap();
            }
        });
        let t = Instant::now();
        let out = exec(&socket, &["true".to_owned()], Duration::from_secs(30)).unwrap();
        assert_eq!(out.stdout, b"up");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(guest.join().unwrap() >= 2);
    }
}
