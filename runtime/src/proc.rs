//! External programs and processes: every program runs with an argument vector (never
//! through a shell), with a time limit, and processes are found and ended by pid after
//! checking that the pid still belongs to the process we mean.

use crate::error::{Error, Result};
use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What a finished program printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
}

/// The program and its arguments as one line for messages (never run as such).
pub fn display<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let mut line = program.to_owned();
    for a in args {
        line.push(' ');
        line.push_str(&a.as_ref().to_string_lossy());
    }
    line
}

/// Runs `program` with `args`, stdin closed, and collects its output; gives up (and
/// kills it) after `limit`.
pub fn run<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    envs: &[(&str, &OsStr)],
    limit: Duration,
    hint: &'static str,
) -> Result<Output> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command.spawn().map_err(|source| Error::Missing {
        program: program.to_owned(),
        hint,
        source,
    })?;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    }
    let out_thread = reader(out.take());
    let err_thread = reader(err.take());
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::ToolTimeout {
                    command: display(program, args),
                    secs: limit.as_secs(),
                });
            }
            Err(e) => return Err(Error::Other(format!("cannot wait for `{program}`: {e}"))),
        }
    };
    Ok(Output {
        status: status.code(),
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    })
}

/// Like [`run`], but a non-zero exit is an error carrying the tail of stderr.
pub fn run_ok<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    limit: Duration,
    hint: &'static str,
) -> Result<Output> {
    let out = run(program, args, &[], limit, hint)?;
    if out.success() {
        Ok(out)
    } else {
        Err(Error::Tool {
            command: display(program, args),
            status: out.status,
            detail: last_lines(&format!("{}{}", out.stderr, out.stdout), 6).join("\n"),
        })
    }
}

/// The last `n` non-empty lines of a text.
pub fn last_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.trim_end().to_owned())
        .collect()
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may contain spaces.
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(_) => false,
    }
}

/// The argument vector of a process, if it still exists.
pub fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Whether `pid` is alive, sees the files we see (its mount namespace is ours: a path
/// means something else in another, as on another host of a site's lab on one
/// machine), and one of its arguments mentions `needle` (a path that is unique to the
/// process we started, such as its pid file).
pub fn is_ours(pid: i32, needle: &str) -> bool {
    alive(pid)
        && same_mounts(pid)
        && cmdline(pid).is_some_and(|args| args.iter().any(|a| a.contains(needle)))
}

/// Whether `pid` is in this process's mount namespace (true where that cannot be read).
fn same_mounts(pid: i32) -> bool {
    match (
        std::fs::read_link("/proc/self/ns/mnt"),
        std::fs::read_link(format!("/proc/{pid}/ns/mnt")),
    ) {
        (Ok(mine), Ok(theirs)) => mine == theirs,
        _ => true,
    }
}

/// Every live process with an argument that mentions `needle`.
pub fn find(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as i32;
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me && is_ours(pid, needle))
        .collect()
}

/// Sends `signal` to `pid`.
pub fn signal(pid: i32, signal: i32) {
    if pid > 0 {
        // SAFETY: kill(2) has no memory effects; a stale pid is checked by the caller.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Kills `pid` (SIGKILL) and waits up to `limit` for it to be gone.
pub fn kill_and_wait(pid: i32, limit: Duration) -> bool {
    signal(pid, libc::SIGKILL);
    wait_gone(pid, limit)
}

/// Waits up to `limit` for `pid` to exit.
pub fn wait_gone(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    while alive(pid) {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Reads a pid file (`None` when absent or garbled).
pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
