//! The `sim` driver: no VMs, no files. Every action succeeds at once, so a run
//! measures the runtime's own overhead (planning, scheduling, the journal, the report)
//! at any cluster size. For tests, `VOCC_SIM_FAIL=start:demo-worker1,ready:demo-head`
//! makes named actions of named nodes fail, and `VOCC_SIM_DELAY_MS=N` makes every
//! action take N ms. `vocc exec` on a sim node succeeds: it appends the node and the
//! command as a JSON line to `VOCC_SIM_EXEC_LOG` (if set) and prints
//! `VOCC_SIM_EXEC_OUT` (if set), so a test sees what a drain asked of a controller.

use super::{Driver, ExecOutput, LoadTimes, NodeCtx, Observed};
use crate::error::{Error, Result};
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Sim {
    fail: HashSet<String>,
    delay: Duration,
    exec_log: Option<PathBuf>,
    exec_out: String,
}

impl Sim {
    pub fn from_env() -> Sim {
        let fail = std::env::var("VOCC_SIM_FAIL")
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let delay = std::env::var("VOCC_SIM_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or_default();
        Sim {
            fail,
            delay,
            exec_log: std::env::var_os("VOCC_SIM_EXEC_LOG").map(PathBuf::from),
            exec_out: std::env::var("VOCC_SIM_EXEC_OUT").unwrap_or_default(),
        }
    }

    fn act(&self, action: &str, n: &NodeCtx) -> Result<String> {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        if self.fail.contains(&format!("{action}:{}", n.node.id)) {
            return Err(Error::Other(format!("simulated failure of `{action}`")));
        }
        Ok("simulated".to_owned())
    }
}

impl Driver for Sim {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn stages_files(&self) -> bool {
        false
    }

    fn load(&self, n: &NodeCtx, _times: &mut LoadTimes) -> Result<String> {
        self.act("load", n)
    }

    fn start(&self, n: &NodeCtx) -> Result<String> {
        self.act("start", n)
    }

    fn wait_ready(&self, n: &NodeCtx, _limit: Duration) -> Result<String> {
        self.act("ready", n)
    }

    fn pause(&self, n: &NodeCtx) -> Result<String> {
        self.act("pause", n)
    }

    fn unpause(&self, n: &NodeCtx) -> Result<String> {
        self.act("unpause", n)
    }

    fn stop(&self, n: &NodeCtx, _force: bool, _grace: Duration) -> Result<String> {
        self.act("stop", n)
    }

    fn unload(&self, n: &NodeCtx) -> Result<String> {
        self.act("unload", n)
    }

    fn observe(&self, _n: &NodeCtx) -> Option<Observed> {
        None
    }

    fn console_log(&self, _n: &NodeCtx) -> Option<PathBuf> {
        None
    }

    fn exec(&self, n: &NodeCtx, argv: &[String], _limit: Duration) -> Result<ExecOutput> {
        self.act("exec", n)?;
        if let Some(log) = &self.exec_log {
            use std::io::Write;
            // One write per line: appends of concurrent drains do not interleave.
            let line = serde_json::json!({ "node": n.node.id, "argv": argv }).to_string() + "\n";
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .and_then(|mut f| f.write_all(line.as_bytes()))
                .map_err(|e| Error::io("append to", log, e))?;
        }
        Ok(ExecOutput {
            status: 0,
            stdout: self.exec_out.clone().into_bytes(),
            stderr: Vec::new(),
        })
    }
}
