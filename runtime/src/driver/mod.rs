//! Hypervisor drivers behind one small trait. A driver acts on one node at a time; the
//! executor runs many of them in parallel, so drivers are `Sync` and keep no state of
//! their own between calls beyond what they can read back from the host (a pid file, a
//! domain list), which is what makes every step idempotent.
//!
//! - `qemu` — one qemu-system-x86_64 per node (the embedded default).
//! - `libvirt` — KVM through `virsh` with the generated domain XML.
//! - `xen` — `xl` with the generated xl.cfg.
//! - `sim` — no VMs: planning and scale tests.
//!
//! `sited` wraps whichever of them runs a plan whose site has hosts reached over a link,
//! sending those hosts' nodes to the host half (`vocc-host`).

pub mod disks;
pub mod libvirt;
pub mod qemu;
pub mod qmp;
pub mod sim;
pub mod sited;
pub mod xen;

use crate::error::{Error, Result};
use crate::journal::Segment;
use crate::plan::{Plan, PlanCluster, PlanNode};
use crate::state::Layout;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a driver needs to know about one node.
pub struct NodeCtx<'a> {
    pub plan: &'a Plan,
    pub cluster: &'a PlanCluster,
    pub node: &'a PlanNode,
    pub layout: &'a Layout,
    /// The L2 segment of each of the cluster's networks.
    pub segments: &'a BTreeMap<String, Segment>,
}

impl NodeCtx<'_> {
    /// The node's runtime directory (console log, pid file).
    pub fn run_dir(&self) -> PathBuf {
        self.layout.node_run(&self.cluster.name, &self.node.id)
    }

    /// Where the node's unix sockets live.
    pub fn socket_dir(&self) -> PathBuf {
        self.layout.node_sockets(&self.cluster.name, &self.node.id)
    }

    /// The node's rendered files in the plan's directory (`OUT/nodes/<id>`).
    pub fn out_dir(&self) -> PathBuf {
        self.layout.out.join(self.node.dir.trim_matches('/'))
    }

    /// The node's own disks on its host (`STORE/nodes/<id>`).
    pub fn store_dir(&self) -> PathBuf {
        self.layout.node_store(&self.node.dir)
    }

    pub fn ephemeral(&self) -> bool {
        self.node.persistence == crate::plan::Persistence::Ephemeral
    }
}

/// What a driver sees of a node on its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Nothing of the node exists (not loaded, or unloaded).
    Absent,
    /// Loaded (defined, disks made) but not running.
    Defined,
    Running,
    Paused,
}

/// Time a load spent on the node's files (`config`) and on defining it (`define`).
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadTimes {
    pub config_ms: f64,
    pub define_ms: f64,
}

/// The result of `vocc exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A change of a node's state that a driver may send without waiting (`Driver::begin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Pause,
    Unpause,
    Stop { force: bool, grace: Duration },
    Unload,
}

/// What waits for the answer to a change sent by `Driver::begin`: the change's detail
/// (or why it failed) and the time from its sending to its answer.
pub type Pending = Box<dyn FnOnce() -> (Result<String>, Duration) + Send>;

/// One hypervisor. Each method is idempotent: asked to do what is already done, it
/// says so in its detail string and succeeds.
pub trait Driver: Send + Sync {
    fn name(&self) -> &'static str;

    /// Whether staging puts real files into the host's store (false for `sim`).
    fn stages_files(&self) -> bool {
        true
    }

    /// Makes the node's disks and configuration on its host and defines it.
    fn load(&self, n: &NodeCtx, times: &mut LoadTimes) -> Result<String>;

    /// Boots a loaded (or stopped) node.
    fn start(&self, n: &NodeCtx) -> Result<String>;

    /// Waits until the node says it is ready (its marker on the console).
    fn wait_ready(&self, n: &NodeCtx, limit: Duration) -> Result<String>;

    fn pause(&self, n: &NodeCtx) -> Result<String>;

    fn unpause(&self, n: &NodeCtx) -> Result<String>;

    /// Stops the node: politely (then by force after `grace`) unless `force` or the
    /// node is ephemeral, which are killed at once.
    fn stop(&self, n: &NodeCtx, force: bool, grace: Duration) -> Result<String>;

    /// Undefines a stopped node and removes its disks from the host.
    fn unload(&self, n: &NodeCtx) -> Result<String>;

    /// What is there now; `None` when the driver cannot tell (`sim`), in which case the
    /// journal is believed.
    fn observe(&self, n: &NodeCtx) -> Option<Observed>;

    /// The node's console log on this machine, if the driver keeps one.
    fn console_log(&self, n: &NodeCtx) -> Option<PathBuf>;

    /// The node's console log as it is now (at most its last `CONSOLE_MAX` bytes), from
    /// wherever the node runs.
    fn console_text(&self, n: &NodeCtx) -> Result<Vec<u8>> {
        let path = self.console_log(n).ok_or_else(|| Error::Unsupported {
            driver: self.name().to_owned(),
            what: "keep console logs".to_owned(),
        })?;
        console_tail_bytes(&path)
    }

    /// The pid of the node's process on this machine, if it has one (qemu).
    fn pid(&self, _n: &NodeCtx) -> Option<i32> {
        None
    }

    /// Runs a command on a running node.
    fn exec(&self, _n: &NodeCtx, _argv: &[String], _limit: Duration) -> Result<ExecOutput> {
        Err(Error::Unsupported {
            driver: self.name().to_owned(),
            what: "run commands on nodes (`vocc exec` needs the qemu driver's agent)".to_owned(),
        })
    }

    /// Carries out `change` on the node, waiting for it (the method it names).
    fn change(&self, n: &NodeCtx, change: Change) -> Result<String> {
        match change {
            Change::Pause => self.pause(n),
            Change::Unpause => self.unpause(n),
            Change::Stop { force, grace } => self.stop(n, force, grace),
            Change::Unload => self.unload(n),
        }
    }

    /// Sends `change` for the node to where it runs and returns at once, with what
    /// waits for its answer, when the driver can (a node on a host reached over an open
    /// session): one thread then has the change in flight on every host. `None`: the
    /// caller calls the change's method (on a thread of its own) instead.
    fn begin(&self, _n: &NodeCtx, _change: Change) -> Option<Pending> {
        None
    }

    /// Asks at once, for every node on a host with an open session, what is there; the
    /// answers serve `observe` and `pid` for the moment that follows. Returns whether
    /// every node's answer is now at hand (so those calls cost no wait). A driver that
    /// looks in place has nothing to do ahead.
    fn look(&self, _nodes: &[NodeCtx]) -> bool {
        false
    }

    /// Ends the driver's own links to hosts (`sited`'s sessions), so that a program
    /// started next on a host does not wait behind them (a Slurm host with no free CPU).
    fn release(&self) {}

    /// Ends whatever the driver left of a cluster that the journal may not know of
    /// (processes of a killed run); part of `down`.
    fn reclaim(&self, _layout: &Layout, _cluster: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// The most of a console log `console_text` returns: its last 4 MiB.
pub const CONSOLE_MAX: u64 = 4 << 20;

/// The last `CONSOLE_MAX` bytes of a console log.
pub fn console_tail_bytes(path: &std::path::Path) -> Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("read", path, e))?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > CONSOLE_MAX {
        f.seek(SeekFrom::Start(len - CONSOLE_MAX))
            .map_err(|e| Error::io("read", path, e))?;
    }
    let mut out = Vec::new();
    f.read_to_end(&mut out)
        .map_err(|e| Error::io("read", path, e))?;
    Ok(out)
}

/// The drivers by name.
pub const DRIVERS: &[&str] = &["qemu", "libvirt", "xen", "sim"];

/// A driver by name, configured from the environment where it has settings
/// (`VOCC_LIBVIRT_URI`, `VOCC_XL`, `VOCC_ACCEL`, ...).
pub fn by_name(name: &str) -> Result<Box<dyn Driver>> {
    match name {
        "qemu" => Ok(Box::new(qemu::Qemu::from_env())),
        "libvirt" => Ok(Box::new(libvirt::Libvirt::from_env())),
        "xen" => Ok(Box::new(xen::Xen::from_env())),
        "sim" => Ok(Box::new(sim::Sim::from_env())),
        other => Err(Error::Other(format!(
            "there is no driver `{other}`: use one of {}",
            DRIVERS.join(", ")
        ))),
    }
}
