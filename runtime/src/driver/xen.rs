//! The `xen` driver: `xl create/pause/unpause/shutdown/destroy` with the generated
//! `OUT/nodes/<id>/xen.cfg`. `VOCC_XL` names the program (default `xl` on PATH; the
//! tests put a recording fake there). Readiness is the marker on the guest's console
//! log as xenconsoled writes it with `--log=guest`
//! (`VOCC_XEN_CONSOLE_DIR`, default `/var/log/xen/console`, file `guest-<id>.log`);
//! without such a log, a running domain counts as ready and the report says so.

use super::{disks, Driver, LoadTimes, NodeCtx, Observed};
use crate::console::{self, Seen};
use crate::error::{Error, Result};
use crate::proc;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Xen {
    xl: String,
    console_dir: PathBuf,
}

const HINT: &str = "install xen-utils on a Xen host (dom0)";
const LIMIT: Duration = Duration::from_secs(120);

impl Xen {
    pub fn from_env() -> Xen {
        Xen {
            xl: std::env::var("VOCC_XL").unwrap_or_else(|_| "xl".to_owned()),
            console_dir: std::env::var_os("VOCC_XEN_CONSOLE_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/var/log/xen/console")),
        }
    }

    fn xl(&self, args: &[&str]) -> Result<proc::Output> {
        proc::run_ok(&self.xl, args, LIMIT, HINT)
    }

    fn config(n: &NodeCtx) -> Result<String> {
        let cfg = n.out_dir().join("xen.cfg");
        if !cfg.exists() {
            return Err(Error::Other(format!(
                "node `{}` has no `{}`: is its cluster's hypervisor xen?",
                n.node.id,
                cfg.display()
            )));
        }
        Ok(cfg.to_string_lossy().into_owned())
    }

    /// The domain's state letters from `xl list <id>` (`r-----`, `--p---`), if any.
    fn domain(&self, n: &NodeCtx) -> Option<String> {
        let out = proc::run(&self.xl, &["list", n.node.id.as_str()], &[], LIMIT, HINT).ok()?;
        if !out.success() {
            return None;
        }
        out.stdout
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.first() == Some(&n.node.id.as_str()))
            .and_then(|f| f.get(4).map(|s| s.to_string()))
    }
}

impl Driver for Xen {
    fn name(&self) -> &'static str {
        "xen"
    }

    fn load(&self, n: &NodeCtx, times: &mut LoadTimes) -> Result<String> {
        let t = Instant::now();
        let made = disks::prepare(n, false)?;
        times.config_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        // xl has no separate define: check that it accepts the configuration.
        let cfg = Self::config(n)?;
        self.xl(&["create", "-n", &cfg])?;
        times.define_ms = t.elapsed().as_secs_f64() * 1e3;
        Ok(made)
    }

    fn start(&self, n: &NodeCtx) -> Result<String> {
        if self.domain(n).is_some() {
            return Ok("already running".to_owned());
        }
        if n.ephemeral() {
            disks::prepare(n, true)?;
        }
        let cfg = Self::config(n)?;
        self.xl(&["create", &cfg])?;
        Ok("created".to_owned())
    }

    fn wait_ready(&self, n: &NodeCtx, limit: Duration) -> Result<String> {
        let log = self.console_dir.join(format!("guest-{}.log", n.node.id));
        let names = [n.node.id.as_str(), n.node.hostname.as_str()];
        let t = Instant::now();
        loop {
            if self.domain(n).is_none() {
                return Err(Error::Died {
                    what: "xl lists no such domain".to_owned(),
                    tail: console::tail(&log, 15),
                });
            }
            if !log.exists() {
                return Ok("running (no console log to watch)".to_owned());
            }
            match console::scan(&log, &names) {
                Some(Seen::Ready) => return Ok("ready".to_owned()),
                Some(Seen::Failed(line)) => {
                    return Err(Error::BootFailed {
                        line,
                        tail: console::tail(&log, 15),
                    })
                }
                None if t.elapsed() > limit => {
                    return Err(Error::NotReady {
                        secs: limit.as_secs(),
                        marker: format!("{}{}", console::READY, n.node.id),
                        tail: console::tail(&log, 15),
                    })
                }
                None => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    fn pause(&self, n: &NodeCtx) -> Result<String> {
        self.xl(&["pause", &n.node.id])?;
        Ok("paused".to_owned())
    }

    fn unpause(&self, n: &NodeCtx) -> Result<String> {
        self.xl(&["unpause", &n.node.id])?;
        Ok("running".to_owned())
    }

    fn stop(&self, n: &NodeCtx, force: bool, grace: Duration) -> Result<String> {
        if self.domain(n).is_none() {
            return Ok("not running".to_owned());
        }
        if !force && !n.ephemeral() {
            self.xl(&["shutdown", &n.node.id])?;
            let t = Instant::now();
            while t.elapsed() < grace {
                if self.domain(n).is_none() {
                    return Ok("shut down".to_owned());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        self.xl(&["destroy", &n.node.id])?;
        Ok("destroyed".to_owned())
    }

    fn unload(&self, n: &NodeCtx) -> Result<String> {
        self.stop(n, true, Duration::ZERO)?;
        disks::remove(n)?;
        Ok("removed".to_owned())
    }

    fn observe(&self, n: &NodeCtx) -> Option<Observed> {
        match self.domain(n) {
            Some(state) if state.contains('p') => Some(Observed::Paused),
            Some(_) => Some(Observed::Running),
            None if n.store_dir().join("root.qcow2").exists() => Some(Observed::Defined),
            None => Some(Observed::Absent),
        }
    }

    fn console_log(&self, n: &NodeCtx) -> Option<PathBuf> {
        Some(self.console_dir.join(format!("guest-{}.log", n.node.id)))
    }
}
