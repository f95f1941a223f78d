//! Helpers for tests that run real programs: finding them (or saying which Debian
//! package to install), running them with a time limit, keeping a daemon for the
//! length of a test, and running such tests one at a time.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

/// Held for the length of a test whose programs must not run beside another's
/// (daemons, mount namespaces, fixed paths).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The path of `program`, or a failure that names the Debian package providing it.
/// Tests never skip for want of a tool: `scripts/setup` installs them all.
pub fn require(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    for dir in dirs {
        let p = dir.join(program);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{program}` is not installed: install the Debian package `{package}` \
         (scripts/setup installs every program the tests use)"
    )
}

/// What a finished (or stopped) program did.
#[derive(Debug)]
pub struct Ran {
    /// `None` when it ran out of time and was killed.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub command: String,
}

impl Ran {
    /// Exited with status 0 in time.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// stdout and stderr together, for reading warnings and for failure messages.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// A description for assertion messages.
    pub fn report(&self) -> String {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => "killed after its time limit".to_owned(),
        };
        format!(
            "`{}`: {status}\n--- stdout\n{}--- stderr\n{}",
            self.command, self.stdout, self.stderr
        )
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to its end, or kills it after `limit`. Output goes through files, so a
/// chatty program can never block on a full pipe.
pub fn run(cmd: &mut Command, limit: Duration) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let command = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"));
    let status = wait(&mut child, limit);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ran {
        status,
        stdout: fs::read_to_string(&out).unwrap_or_default(),
        stderr: fs::read_to_string(&err).unwrap_or_default(),
        command,
    }
}

fn wait(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A program that runs in the background for the length of a test, its stdout and
/// stderr in one log file. Dropping it kills it (by its own process id).
pub struct Daemon {
    child: Child,
    pub log: PathBuf,
    pub command: String,
}

impl Daemon {
    pub fn spawn(cmd: &mut Command, log: &Path) -> Daemon {
        let command = describe(cmd);
        let file = fs::File::create(log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"));
        Daemon {
            child,
            log: log.to_path_buf(),
            command,
        }
    }

    /// Waits until `ready` holds, the daemon exits, or `limit` passes; says which
    /// (with the daemon's log) when it is not `ready`.
    pub fn wait_until(
        &mut self,
        limit: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if ready() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // One last look: it may have become ready just before it exited.
                if ready() {
                    return Ok(());
                }
                return Err(format!(
                    "`{}` exited ({status}):\n{}",
                    self.command,
                    self.output()
                ));
            }
            if start.elapsed() >= limit {
                return Err(format!(
                    "`{}` was not ready after {limit:?}:\n{}",
                    self.command,
                    self.output()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the daemon printed so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the file at `path` exists and contains `needle`.
pub fn file_contains(path: &Path, needle: &str) -> bool {
    fs::read_to_string(path).is_ok_and(|s| s.contains(needle))
}
pub mod lab;
