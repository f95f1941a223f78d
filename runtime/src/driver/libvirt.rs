//! The `libvirt` driver (KVM): `virsh define/start/suspend/resume/shutdown/destroy/
//! undefine` with the generated `OUT/nodes/<id>/libvirt.xml`, on the connection
//! `VOCC_LIBVIRT_URI` (default `qemu:///system`).
//!
//! Each command is its own `virsh -c URI COMMAND ARGS...` invocation (one command per
//! invocation: with several, only the last sets the exit code), except on `test:`
//! URIs: libvirt's test driver keeps its state per connection, so a domain defined by
//! one `virsh` is gone for the next. There the driver keeps one interactive `virsh`
//! session for the life of the process and tells each command's outcome by an `echo`
//! marker on stdout and on stderr after it. State then lasts as long as the `vocc`
//! process: a lifecycle on `test:///default` runs within one process (the tests do);
//! separate `vocc` commands each see a fresh test hypervisor.
//!
//! Readiness: the marker in `VOCC_LIBVIRT_CONSOLE_DIR/<id>.log` when that log exists
//! (a serial console of `type='file'`, or `<log file=.../>`), else a running domain
//! counts as ready. Tested on `test:///default` and on a real `qemu:///session` as an
//! unprivileged user (`tests/runtime_libvirt_session.rs`).

use super::{disks, Driver, LoadTimes, NodeCtx, Observed};
use crate::console::{self, Seen};
use crate::error::{Error, Result};
use crate::proc;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const HINT: &str = "install libvirt-clients";
const LIMIT: Duration = Duration::from_secs(120);

pub struct Libvirt {
    uri: String,
    virsh: String,
    console_dir: Option<PathBuf>,
}

/// The interactive sessions of this process, by URI: every operation of the process
/// (and every driver value) sees the same test hypervisor.
fn sessions() -> &'static Mutex<HashMap<String, Session>> {
    static SESSIONS: OnceLock<Mutex<HashMap<String, Session>>> = OnceLock::new();
    SESSIONS.get_or_init(|| Mutex::new(HashMap::new()))
}

impl Libvirt {
    pub fn from_env() -> Libvirt {
        Libvirt::new(
            &std::env::var("VOCC_LIBVIRT_URI").unwrap_or_else(|_| "qemu:///system".to_owned()),
        )
    }

    pub fn new(uri: &str) -> Libvirt {
        Libvirt {
            uri: uri.to_owned(),
            virsh: std::env::var("VOCC_VIRSH").unwrap_or_else(|_| "virsh".to_owned()),
            console_dir: std::env::var_os("VOCC_LIBVIRT_CONSOLE_DIR").map(PathBuf::from),
        }
    }

    /// Runs one virsh command; `Ok(stdout)` or an error with virsh's own message.
    fn virsh(&self, args: &[&str]) -> Result<String> {
        if self.uri.starts_with("test:") {
            let mut all = sessions().lock().unwrap_or_else(|e| e.into_inner());
            if !all.contains_key(&self.uri) {
                all.insert(self.uri.clone(), Session::open(&self.virsh, &self.uri)?);
            }
            return match all.get_mut(&self.uri) {
                Some(session) => session.run(args),
                None => Err(Error::Other("no virsh session".to_owned())),
            };
        }
        let mut argv = vec!["-q", "-c", self.uri.as_str()];
        argv.extend_from_slice(args);
        Ok(proc::run_ok(&self.virsh, &argv, LIMIT, HINT)?.stdout)
    }

    /// `running`, `paused`, `shut off`, ...; `None` when the domain is not defined.
    fn domstate(&self, n: &NodeCtx) -> Option<String> {
        self.virsh(&["domstate", &n.node.id])
            .ok()
            .map(|s| s.trim().to_owned())
    }
}

impl Driver for Libvirt {
    fn name(&self) -> &'static str {
        "libvirt"
    }

    fn load(&self, n: &NodeCtx, times: &mut LoadTimes) -> Result<String> {
        let t = Instant::now();
        let made = disks::prepare(n, false)?;
        times.config_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let xml = n.out_dir().join("libvirt.xml");
        if !xml.exists() {
            return Err(Error::Other(format!(
                "node `{}` has no `{}`: is its cluster's hypervisor kvm?",
                n.node.id,
                xml.display()
            )));
        }
        // The generated XML has no <uuid>, so libvirt refuses to define a domain of
        // the same name again: a defined domain stays as it is.
        let how = if self.domstate(n).is_some() {
            "already defined"
        } else {
            self.virsh(&["define", &xml.to_string_lossy()])?;
            "defined"
        };
        times.define_ms = t.elapsed().as_secs_f64() * 1e3;
        Ok(format!("{made}; {how}"))
    }

    fn start(&self, n: &NodeCtx) -> Result<String> {
        match self.domstate(n).as_deref() {
            Some("running") | Some("paused") => return Ok("already running".to_owned()),
            None => {
                return Err(Error::Other(format!(
                    "domain `{}` is not defined: load it first",
                    n.node.id
                )))
            }
            Some(_) => {}
        }
        if n.ephemeral() {
            disks::prepare(n, true)?;
        }
        self.virsh(&["start", &n.node.id])?;
        Ok("started".to_owned())
    }

    fn wait_ready(&self, n: &NodeCtx, limit: Duration) -> Result<String> {
        let log = self.console_log(n);
        let names = [n.node.id.as_str(), n.node.hostname.as_str()];
        let t = Instant::now();
        loop {
            if !matches!(self.domstate(n).as_deref(), Some("running")) {
                return Err(Error::Died {
                    what: "its domain is not running".to_owned(),
                    tail: log
                        .as_deref()
                        .map(|l| console::tail(l, 15))
                        .unwrap_or_default(),
                });
            }
            let Some(log) = log.as_deref().filter(|l| l.exists()) else {
                return Ok("running (no console log to watch)".to_owned());
            };
            match console::scan(log, &names) {
                Some(Seen::Ready) => return Ok("ready".to_owned()),
                Some(Seen::Failed(line)) => {
                    return Err(Error::BootFailed {
                        line,
                        tail: console::tail(log, 15),
                    })
                }
                None if t.elapsed() > limit => {
                    return Err(Error::NotReady {
                        secs: limit.as_secs(),
                        marker: format!("{}{}", console::READY, n.node.id),
                        tail: console::tail(log, 15),
                    })
                }
                None => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    fn pause(&self, n: &NodeCtx) -> Result<String> {
        self.virsh(&["suspend", &n.node.id])?;
        Ok("paused".to_owned())
    }

    fn unpause(&self, n: &NodeCtx) -> Result<String> {
        self.virsh(&["resume", &n.node.id])?;
        Ok("running".to_owned())
    }

    fn stop(&self, n: &NodeCtx, force: bool, grace: Duration) -> Result<String> {
        match self.domstate(n).as_deref() {
            Some("running") | Some("paused") | Some("in shutdown") => {}
            _ => return Ok("not running".to_owned()),
        }
        if !force && !n.ephemeral() {
            self.virsh(&["shutdown", &n.node.id])?;
            let t = Instant::now();
            loop {
                match self.domstate(n).as_deref() {
                    Some("running") | Some("paused") | Some("in shutdown") => {}
                    _ => return Ok("shut down".to_owned()),
                }
                if t.elapsed() > grace {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        self.virsh(&["destroy", &n.node.id])?;
        Ok("destroyed".to_owned())
    }

    fn unload(&self, n: &NodeCtx) -> Result<String> {
        self.stop(n, true, Duration::ZERO)?;
        if self.domstate(n).is_some() {
            self.virsh(&["undefine", &n.node.id])?;
        }
        disks::remove(n)?;
        Ok("undefined".to_owned())
    }

    fn observe(&self, n: &NodeCtx) -> Option<Observed> {
        Some(match self.domstate(n).as_deref() {
            Some("running") | Some("in shutdown") => Observed::Running,
            Some("paused") => Observed::Paused,
            Some(_) => Observed::Defined,
            None => Observed::Absent,
        })
    }

    fn console_log(&self, n: &NodeCtx) -> Option<PathBuf> {
        self.console_dir
            .as_ref()
            .map(|d| d.join(format!("{}.log", n.node.id)))
    }
}

/// One interactive `virsh` whose commands are told apart by markers.
struct Session {
    child: Child,
    stdin: ChildStdin,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    count: u64,
}

impl Session {
    fn open(virsh: &str, uri: &str) -> Result<Session> {
        let mut child = Command::new(virsh)
            .args(["-q", "-c", uri])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Missing {
                program: virsh.to_owned(),
                hint: HINT,
                source,
            })?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| Error::Other("virsh has no stdin".into()))?;
        let collect = |pipe: Option<Box<dyn Read + Send>>| {
            let buf = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&buf);
            if let Some(mut pipe) = pipe {
                std::thread::spawn(move || {
                    let mut chunk = [0u8; 4096];
                    while let Ok(n) = pipe.read(&mut chunk) {
                        if n == 0 {
                            break;
                        }
                        sink.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .extend_from_slice(&chunk[..n]);
                    }
                });
            }
            buf
        };
        let out = collect(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let err = collect(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        Ok(Session {
            child,
            stdin,
            out,
            err,
            count: 0,
        })
    }

    fn run(&mut self, args: &[&str]) -> Result<String> {
        let mut line = String::new();
        for a in args {
            // virsh's own parser reads the line: quote every word, and refuse what
            // cannot be quoted.
            if a.contains('\'') || a.chars().any(char::is_control) {
                return Err(Error::Other(format!(
                    "cannot pass `{a}` to an interactive virsh"
                )));
            }
            line.push_str(&format!("'{a}' "));
        }
        self.count += 1;
        let mark = format!("vocc-mark-{}-{}-end", std::process::id(), self.count);
        let text = format!("{line}\necho {mark}\necho --err {mark}\n");
        self.stdin
            .write_all(text.as_bytes())
            .and_then(|()| self.stdin.flush())
            .map_err(|e| Error::Other(format!("virsh session: {e}")))?;
        // The echoed command lines hold the mark too, after `echo `: the answer is
        // the mark at the start of a line.
        let out_mark = format!("\n{mark}");
        let err_mark = format!("error: {mark}");
        let t = Instant::now();
        let (out, err) = loop {
            let o = take_until(&self.out, &out_mark);
            let e = o.as_ref().and_then(|_| take_until(&self.err, &err_mark));
            if let (Some(o), Some(e)) = (o.clone(), e) {
                break (o, e);
            }
            if let Some(o) = o {
                // Put stdout back until stderr catches up.
                let mut buf = self.out.lock().unwrap_or_else(|e| e.into_inner());
                let mut restored = o.into_bytes();
                restored.extend_from_slice(out_mark.as_bytes());
                restored.extend_from_slice(&buf);
                *buf = restored;
            }
            if t.elapsed() > LIMIT || matches!(self.child.try_wait(), Ok(Some(_))) {
                return Err(Error::Other(format!(
                    "virsh session did not answer `{}`",
                    args.join(" ")
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let errors: Vec<&str> = err
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("error:"))
            .collect();
        // Without a terminal virsh echoes each command after its prompt: keep only
        // what the command printed.
        let out: String = out
            .split_inclusive('\n')
            .filter(|l| !l.starts_with("virsh # "))
            .collect();
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(Error::Tool {
                command: format!("virsh {}", args.join(" ")),
                status: None,
                detail: errors.join("\n"),
            })
        }
    }
}

/// Removes and returns the text before `mark` (and the mark), if the mark is there.
fn take_until(buf: &Mutex<Vec<u8>>, mark: &str) -> Option<String> {
    let mut b = buf.lock().unwrap_or_else(|e| e.into_inner());
    let pos = b.windows(mark.len()).position(|w| w == mark.as_bytes())?;
    let before = String::from_utf8_lossy(&b[..pos]).into_owned();
    b.drain(..pos + mark.len());
    Some(before)
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.stdin.write_all(b"quit\n");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_keeps_the_test_hypervisor_and_tells_errors_apart() {
        let lv = Libvirt::new("test:///default");
        // The test hypervisor starts with one running domain, `test`.
        assert_eq!(lv.virsh(&["domstate", "test"]).unwrap().trim(), "running");
        lv.virsh(&["suspend", "test"]).unwrap();
        assert_eq!(lv.virsh(&["domstate", "test"]).unwrap().trim(), "paused");
        let err = lv.virsh(&["domstate", "no-such-domain"]).unwrap_err();
        assert!(err.to_string().contains("no-such-domain"), "{err}");
        lv.virsh(&["resume", "test"]).unwrap();
        assert_eq!(lv.virsh(&["domstate", "test"]).unwrap().trim(), "running");
    }
}
