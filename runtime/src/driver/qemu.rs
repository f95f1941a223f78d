//! The `qemu` driver, the embedded default: one qemu-system-x86_64 per node, started
//! with `-daemonize` so that it outlives the `vocc` that started it. Later commands
//! find it through its pid file and QMP socket, whose paths derive from the state
//! directory alone.
//!
//! The command line of a node (its shape; values are argument-vector entries, never
//! shell text):
//!
//! ```text
//! qemu-system-x86_64 -name ID -machine q35 -accel tcg,tb-size=128 -cpu max   (KVM: -accel kvm -cpu host)
//!   -smp CPU -m MiB -nodefaults -no-user-config -display none -vga none
//!   -kernel STORE/layers/C/L.vmlinuz -initrd STORE/layers/C/L.initrd -append "$(cat OUT/nodes/ID/cmdline)"
//!   -drive file=DISK,format=F,if=virtio[,readonly=on]      (root, data disks, swap, config drive)
//!   -netdev socket,id=nI,mcast=GROUP:PORT,localaddr=127.0.0.1 -device virtio-net-pci,netdev=nI,mac=MAC
//!     (a network the site bridges: -netdev tap,id=nI,ifname=vtHASH,script=no,downscript=no,
//!      and the tap joins the bridge once qemu runs)
//!   -chardev file,id=console,path=RUN/console.log -device isa-serial,chardev=console,index=0   (ttyS0)
//!   -chardev socket,id=agent,path=SOCK/agent.sock,server=on,wait=off -device isa-serial,chardev=agent,index=1   (ttyS1)
//!   -chardev socket,id=qmp,path=SOCK/qmp.sock,server=on,wait=off -mon chardev=qmp,mode=control
//!   -pidfile RUN/qemu.pid -daemonize
//! ```
//!
//! A network with `uplink` gets user-mode NAT on its first node: that node's NIC, the
//! segment and a `user` netdev meet on a qemu hub.
//!
//! Invariants: one node, one pid file; qemu locks its pid file, so a second qemu for a
//! node that runs already exits at once, and a start that races a killed run's start
//! cannot make a second VM. A process is only ever signalled after checking that its
//! command line names the node's pid file.

use super::{disks, qmp, Driver, ExecOutput, LoadTimes, NodeCtx, Observed};
use crate::console::{self, Seen};
use crate::error::{Error, Result};
use crate::proc;
use crate::state::Layout;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Qemu {
    binary: String,
    /// `kvm` or `tcg`, decided once per process (from `VOCC_ACCEL` or a probe).
    accel: Mutex<Option<&'static str>>,
}

impl Qemu {
    pub fn from_env() -> Qemu {
        let accel = match std::env::var("VOCC_ACCEL").as_deref() {
            Ok("kvm") => Some("kvm"),
            Ok("tcg") => Some("tcg"),
            _ => None,
        };
        Qemu {
            binary: std::env::var("VOCC_QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into()),
            accel: Mutex::new(accel),
        }
    }

    fn pidfile(n: &NodeCtx) -> PathBuf {
        n.run_dir().join("qemu.pid")
    }

    fn qmp(n: &NodeCtx) -> PathBuf {
        n.socket_dir().join("qmp.sock")
    }

    /// The node's qemu, if it runs.
    fn pid(n: &NodeCtx) -> Option<i32> {
        let pidfile = Self::pidfile(n);
        let pid = proc::read_pid(&pidfile)?;
        proc::is_ours(pid, &pidfile.to_string_lossy()).then_some(pid)
    }

    /// KVM when /dev/kvm works, else TCG. "Works" is probed by booting the node's own
    /// kernel under KVM once per machine: /dev/kvm may exist while guests hang.
    fn accel(&self, boot: &disks::Boot, run: &Path) -> &'static str {
        let mut guard = self.accel.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = *guard {
            return a;
        }
        let a = probe_kvm(&self.binary, boot, run);
        *guard = Some(a);
        a
    }

    fn argv(&self, n: &NodeCtx, boot: &disks::Boot, accel: &str) -> Result<Vec<OsString>> {
        let run = n.run_dir();
        let sock = n.socket_dir();
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(OsString::from));
        let mib = (n.node.memory / (1024 * 1024)).max(64).to_string();
        let cpu = n.node.cpu.max(1).to_string();
        push(&["-name", &n.node.id, "-machine", "q35"]);
        if accel == "kvm" {
            push(&["-accel", "kvm", "-cpu", "host"]);
        } else {
            push(&["-accel", "tcg,tb-size=128", "-cpu", "max"]);
        }
        push(&["-smp", &cpu, "-m", &mib]);
        push(&[
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-vga",
            "none",
        ]);
        push(&["-kernel", &path_arg(&boot.kernel)?]);
        push(&["-initrd", &path_arg(&boot.initrd)?]);
        // A Xen cluster's command line names Xen's console (`hvc0`); a qemu guest has
        // serial ports only, and the runtime reads the first one.
        let cmdline: Vec<&str> = boot
            .cmdline
            .split_whitespace()
            .map(|t| {
                if t == "console=hvc0" {
                    "console=ttyS0"
                } else {
                    t
                }
            })
            .collect();
        push(&["-append", &cmdline.join(" ")]);
        for d in &boot.disks {
            let mut spec = format!("file={},format={},if=virtio", path_arg(&d.path)?, d.format);
            if d.readonly {
                spec.push_str(",readonly=on");
            }
            push(&["-drive", &spec]);
        }
        let uplink_node = |network: &str| {
            n.plan
                .nodes
                .iter()
                .find(|m| {
                    m.cluster == n.cluster.name && m.nics.iter().any(|c| c.network == network)
                })
                .is_some_and(|m| m.id == n.node.id)
        };
        for (i, nic) in n.node.nics.iter().enumerate() {
            // A network the site bridges: a tap on the host's bridge (made by qemu,
            // joined to the bridge by `start`, gone with qemu). Else a multicast
            // segment on this machine.
            let mcast = match &nic.bridge {
                Some(_) => format!(
                    "tap,id=n{i},ifname={},script=no,downscript=no",
                    tap_name(&n.node.id, &nic.name)
                ),
                None => {
                    let seg = n.segments.get(&nic.network).ok_or_else(|| {
                        Error::Other(format!("the network `{}` has no segment", nic.network))
                    })?;
                    format!(
                        "socket,id=n{i},mcast={}:{},localaddr=127.0.0.1",
                        seg.group, seg.port
                    )
                }
            };
            let uplink = n
                .cluster
                .networks
                .iter()
                .find(|w| w.name == nic.network && w.uplink)
                .filter(|_| uplink_node(&nic.network));
            if let Some(w) = uplink {
                // NIC, segment and NAT meet on hub i.
                let mut user = format!("user,id=u{i},net={}", w.subnet);
                if let Some(g) = &w.gateway {
                    user.push_str(&format!(",host={g}"));
                }
                push(&["-netdev", &mcast]);
                push(&[
                    "-netdev",
                    &format!("hubport,id=hn{i},hubid={i},netdev=n{i}"),
                ]);
                push(&["-netdev", &user]);
                push(&[
                    "-netdev",
                    &format!("hubport,id=hu{i},hubid={i},netdev=u{i}"),
                ]);
                push(&["-netdev", &format!("hubport,id=hc{i},hubid={i}")]);
                push(&[
                    "-device",
                    &format!("virtio-net-pci,netdev=hc{i},mac={}", nic.mac),
                ]);
            } else {
                push(&["-netdev", &mcast]);
                push(&[
                    "-device",
                    &format!("virtio-net-pci,netdev=n{i},mac={}", nic.mac),
                ]);
            }
        }
        let console = format!(
            "file,id=console,path={}",
            path_arg(&run.join("console.log"))?
        );
        let agent = format!(
            "socket,id=agent,path={},server=on,wait=off",
            path_arg(&sock.join("agent.sock"))?
        );
        let qmp = format!(
            "socket,id=qmp,path={},server=on,wait=off",
            path_arg(&sock.join("qmp.sock"))?
        );
        push(&[
            "-chardev",
            &console,
            "-device",
            "isa-serial,chardev=console,index=0",
        ]);
        push(&[
            "-chardev",
            &agent,
            "-device",
            "isa-serial,chardev=agent,index=1",
        ]);
        push(&["-chardev", &qmp, "-mon", "chardev=qmp,mode=control"]);
        push(&["-pidfile", &path_arg(&Self::pidfile(n))?, "-daemonize"]);
        Ok(a)
    }
}

/// The tap of a node's NIC on its host's bridge: `vt` and 12 hex digits of a hash of
/// node and NIC (interface names hold at most 15 bytes).
pub fn tap_name(node: &str, nic: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{node}/{nic}").as_bytes());
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("vt{hex}")
}

/// A bridge a plan names, checked before it is looked up or handed to `ip`.
fn bridge_name(name: &str) -> Result<&str> {
    let plain = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if plain {
        Ok(name)
    } else {
        Err(Error::Other(format!(
            "`{}` is not a bridge name",
            name.escape_debug()
        )))
    }
}

/// The node's bridges, each checked to be on this host.
fn bridges(n: &NodeCtx) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for nic in &n.node.nics {
        let Some(br) = &nic.bridge else { continue };
        let br = bridge_name(br)?;
        if !interface_exists(br) {
            return Err(Error::Other(format!(
                "the bridge `{br}` of network `{}` is not on this host: the site says \
                 every host has it",
                nic.network
            )));
        }
        out.push((tap_name(&n.node.id, &nic.name), br.to_owned()));
    }
    Ok(out)
}

/// Whether this network namespace has an interface of that name (asked of the kernel:
/// /sys may show another namespace's).
fn interface_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: a NUL-terminated name that lives across the call.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

/// Joins the node's taps to their bridges, up.
fn join_bridges(taps: &[(String, String)]) -> Result<()> {
    for (tap, br) in taps {
        proc::run_ok(
            "ip",
            &["link", "set", "dev", tap, "master", br, "up"],
            Duration::from_secs(10),
            "install iproute2",
        )?;
    }
    Ok(())
}

/// A path as a qemu option value: commas doubled (qemu's escape), and no path that
/// could not be one (control characters).
fn path_arg(p: &Path) -> Result<String> {
    let s = p
        .to_str()
        .ok_or_else(|| Error::Other(format!("the path `{}` is not valid UTF-8", p.display())))?;
    if s.chars().any(char::is_control) {
        return Err(Error::Other(format!(
            "the path `{}` has control characters",
            p.display()
        )));
    }
    Ok(s.replace(',', ",,"))
}

impl Driver for Qemu {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn load(&self, n: &NodeCtx, times: &mut LoadTimes) -> Result<String> {
        let t = Instant::now();
        let made = disks::prepare(n, false)?;
        times.config_ms = t.elapsed().as_secs_f64() * 1e3;
        // "Define": the command line is fixed now and kept for inspection.
        let t = Instant::now();
        let boot = disks::boot(n)?;
        let run = n.run_dir();
        fs::create_dir_all(&run).map_err(|e| Error::io("create", &run, e))?;
        let shape = self.argv(n, &boot, "tcg")?;
        let text: Vec<String> = shape.iter().map(|s| s.to_string_lossy().into()).collect();
        let args = run.join("qemu.args");
        crate::atomic::write(&args, (text.join("\n") + "\n").as_bytes(), 0o644)
            .map_err(|e| Error::io("write", &args, e))?;
        times.define_ms = t.elapsed().as_secs_f64() * 1e3;
        Ok(made)
    }

    fn start(&self, n: &NodeCtx) -> Result<String> {
        if let Some(pid) = Self::pid(n) {
            return Ok(format!("already running (pid {pid})"));
        }
        if n.ephemeral() {
            disks::prepare(n, true)?;
        }
        let boot = disks::boot(n)?;
        let run = n.run_dir();
        let sock = n.socket_dir();
        for dir in [&run, &sock] {
            fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        }
        let taps = bridges(n)?;
        let accel = self.accel(&boot, &run);
        let argv = self.argv(n, &boot, accel)?;
        let log = run.join("qemu.log");
        let stderr = fs::File::create(&log).map_err(|e| Error::io("create", &log, e))?;
        let mut cmd = std::process::Command::new(&self.binary);
        cmd.args(&argv)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr);
        // A pinned node's qemu (and every thread it makes: the vCPUs) runs on the
        // node's own host CPUs only.
        if let Some(cpus) = &n.node.cpus {
            pin(&mut cmd, cpus);
        }
        let mut child = cmd.spawn().map_err(|source| match &n.node.cpus {
            Some(cpus) if source.raw_os_error() == Some(libc::EINVAL) => Error::Other(format!(
                "cannot run qemu on host CPUs {cpus:?}: this host has no such CPUs online \
                 ({source}); the site file gives it more CPUs than it has"
            )),
            _ => Error::Missing {
                program: self.binary.clone(),
                hint: "install qemu-system-x86",
                source,
            },
        })?;
        // With -daemonize the first process exits once the VM is set up (sockets
        // bound, pid file written), or with an error.
        let t = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if t.elapsed() < Duration::from_secs(60) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Error::Other("qemu did not start within 60 s".into()));
                }
            }
        };
        let said = fs::read_to_string(&log).unwrap_or_default();
        if !status.success() {
            if said.contains("lock") && said.contains("pid") {
                if let Some(pid) = Self::pid(n) {
                    return Ok(format!(
                        "already running (pid {pid}; a concurrent start won)"
                    ));
                }
            }
            return Err(Error::Tool {
                command: proc::display(&self.binary, &argv),
                status: status.code(),
                detail: proc::last_lines(&said, 6).join("\n"),
            });
        }
        match Self::pid(n) {
            Some(pid) => {
                if let Err(e) = join_bridges(&taps) {
                    let _ = proc::kill_and_wait(pid, Duration::from_secs(10));
                    let _ = fs::remove_file(Self::pidfile(n));
                    return Err(e);
                }
                Ok(match &n.node.cpus {
                    Some(cpus) => format!("started ({accel}, pid {pid}, on host CPUs {cpus:?})"),
                    None => format!("started ({accel}, pid {pid})"),
                })
            }
            None => Err(Error::Died {
                what: "its qemu process exited".to_owned(),
                tail: console::tail(&run.join("console.log"), 15),
            }),
        }
    }

    fn wait_ready(&self, n: &NodeCtx, limit: Duration) -> Result<String> {
        let log = n.run_dir().join("console.log");
        let names = [n.node.id.as_str(), n.node.hostname.as_str()];
        let t = Instant::now();
        loop {
            match console::scan(&log, &names) {
                Some(Seen::Ready) => return Ok("ready".to_owned()),
                Some(Seen::Failed(line)) => {
                    return Err(Error::BootFailed {
                        line,
                        tail: console::tail(&log, 15),
                    })
                }
                None => {}
            }
            if Self::pid(n).is_none() {
                return Err(Error::Died {
                    what: "its qemu process exited".to_owned(),
                    tail: console::tail(&log, 15),
                });
            }
            if t.elapsed() > limit {
                return Err(Error::NotReady {
                    secs: limit.as_secs(),
                    marker: format!("{}{}", console::READY, n.node.id),
                    tail: console::tail(&log, 15),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pause(&self, n: &NodeCtx) -> Result<String> {
        running(n)?;
        qmp::execute(&Self::qmp(n), "stop", None)?;
        Ok("paused".to_owned())
    }

    fn unpause(&self, n: &NodeCtx) -> Result<String> {
        running(n)?;
        qmp::execute(&Self::qmp(n), "cont", None)?;
        Ok("running".to_owned())
    }

    fn stop(&self, n: &NodeCtx, force: bool, grace: Duration) -> Result<String> {
        let Some(pid) = Self::pid(n) else {
            return Ok("not running".to_owned());
        };
        let mut how = "killed";
        if !force && !n.ephemeral() {
            let qmp = Self::qmp(n);
            // A paused guest cannot see the power button.
            let _ = qmp::execute(&qmp, "cont", None);
            if qmp::execute(&qmp, "system_powerdown", None).is_ok() && proc::wait_gone(pid, grace) {
                how = "shut down";
            }
        }
        if proc::alive(pid) && !proc::kill_and_wait(pid, Duration::from_secs(10)) {
            return Err(Error::Other(format!("qemu (pid {pid}) does not die")));
        }
        for f in [Self::qmp(n), n.socket_dir().join("agent.sock")] {
            let _ = fs::remove_file(f);
        }
        let _ = fs::remove_file(Self::pidfile(n));
        Ok(how.to_owned())
    }

    fn unload(&self, n: &NodeCtx) -> Result<String> {
        self.stop(n, true, Duration::ZERO)?;
        disks::remove(n)?;
        for dir in [n.run_dir(), n.socket_dir()] {
            let _ = fs::remove_dir_all(dir);
        }
        Ok("removed".to_owned())
    }

    fn observe(&self, n: &NodeCtx) -> Option<Observed> {
        if Self::pid(n).is_some() {
            return Some(match qmp::status(&Self::qmp(n)).as_deref() {
                Ok("paused") => Observed::Paused,
                _ => Observed::Running,
            });
        }
        if n.store_dir().join("root.qcow2").exists() {
            Some(Observed::Defined)
        } else {
            Some(Observed::Absent)
        }
    }

    fn console_log(&self, n: &NodeCtx) -> Option<PathBuf> {
        Some(n.run_dir().join("console.log"))
    }

    fn pid(&self, n: &NodeCtx) -> Option<i32> {
        Self::pid(n)
    }

    fn exec(&self, n: &NodeCtx, argv: &[String], limit: Duration) -> Result<ExecOutput> {
        running(n)?;
        crate::agent::exec(&n.socket_dir().join("agent.sock"), argv, limit)
    }

    fn reclaim(&self, layout: &Layout, cluster: &str) -> Result<Vec<String>> {
        let mut killed = Vec::new();
        let roots = [layout.cluster(cluster), layout.short_socket_root(cluster)];
        for root in roots {
            let needle = format!("{}/", root.display());
            // Only qemus of ours (their pid file lies under the root), not, say, a
            // user's `tail -f` of a console log.
            let qemus = proc::find(&needle).into_iter().filter(|&pid| {
                proc::cmdline(pid).is_some_and(|a| a.iter().any(|x| x == "-pidfile"))
            });
            for pid in qemus {
                if proc::kill_and_wait(pid, Duration::from_secs(10)) {
                    killed.push(format!("pid {pid}"));
                }
            }
            let _ = fs::remove_dir_all(&root);
        }
        Ok(killed)
    }
}

fn running(n: &NodeCtx) -> Result<i32> {
    Qemu::pid(n).ok_or_else(|| Error::Other(format!("node `{}` is not running", n.node.id)))
}

/// Boots the kernel under KVM and watches for the kernel getting anywhere (its init
/// running, or panicking because the probe gives it no root) within a few seconds.
/// Where /dev/kvm exists but guests hang, nothing appears and TCG is used. The answer
/// is cached per machine and kernel in `/tmp/vocc-<uid>/accel`.
fn probe_kvm(binary: &str, boot: &disks::Boot, run: &Path) -> &'static str {
    let usable = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !usable {
        return "tcg";
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cache = std::env::temp_dir()
        .join(format!("vocc-{uid}"))
        .join("accel");
    if let Ok(text) = fs::read_to_string(&cache) {
        if let Some((rel, accel)) = text.trim().split_once(' ') {
            if rel == release.trim() {
                return if accel == "kvm" { "kvm" } else { "tcg" };
            }
        }
    }
    let log = run.join("kvm-probe.log");
    let _ = fs::remove_file(&log);
    let (Some(kernel), Some(log_s)) = (boot.kernel.to_str(), log.to_str()) else {
        return "tcg";
    };
    let args: Vec<String> = [
        "-machine",
        "q35",
        "-accel",
        "kvm",
        "-cpu",
        "host",
        "-m",
        "256",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-kernel",
        kernel,
        "-append",
        "console=ttyS0 panic=-1 rdinit=/vocc-kvm-probe root=/dev/vocc-none",
        "-serial",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("file:{log_s}")])
    .collect();
    let child = std::process::Command::new(binary)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let mut accel = "tcg";
    if let Ok(mut child) = child {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(15) {
            let text = fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Kernel panic")
                || text.contains("Run /")
                || text.contains("Freeing unused")
            {
                accel = "kvm";
                break;
            }
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = fs::remove_file(&log);
    if let Some(dir) = cache.parent() {
        let _ = fs::create_dir_all(dir);
    }
    let _ = crate::atomic::write(
        &cache,
        format!("{} {accel}\n", release.trim()).as_bytes(),
        0o644,
    );
    accel
}

/// Has `cmd` run on exactly the host CPUs `cpus` (its threads inherit the affinity).
fn pin(cmd: &mut std::process::Command, cpus: &[u32]) {
    use std::os::unix::process::CommandExt;
    // SAFETY: a zeroed cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // A CPU past the set's size (1024) is left out: with none left, the kernel refuses
    // the empty set, and the start fails saying so.
    let room = 8 * std::mem::size_of::<libc::cpu_set_t>();
    for c in cpus.iter().map(|&c| c as usize).filter(|&c| c < room) {
        // SAFETY: `c` is inside the set.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: between fork and exec the closure makes one system call on the child
    // itself (pid 0) with a set it owns, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
