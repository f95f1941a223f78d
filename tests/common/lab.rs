//! A lab of hosts made by `scripts/lab` for the length of a test: network namespaces
//! on this machine, each with an sshd, a munged and a slurmd, torn down when dropped
//! (also after a failed assertion), so nothing is left behind.

use super::{run, Ran};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub struct Lab {
    pub dir: PathBuf,
    pub prefix: String,
    pub hosts: usize,
    script: PathBuf,
    /// The network namespace the test started in, where the lab script always runs.
    home: std::fs::File,
}

impl Lab {
    /// Brings up `hosts` hosts on links of `rate` (a tc rate, `0` for unshaped), under
    /// a prefix of the test's own so that two labs never share a namespace.
    pub fn up(name: &str, hosts: usize, rate: &str) -> Lab {
        Lab::up_with(name, hosts, rate, &[])
    }

    /// `up` with more options of `scripts/lab up` (`--no-slurm`).
    pub fn up_with(name: &str, hosts: usize, rate: &str, options: &[&str]) -> Lab {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|d| d.join("scripts/lab"))
            .find(|p| p.is_file())
            .expect("scripts/lab in the workspace");
        let prefix = format!("vocc-t{}-{name}", std::process::id());
        let dir = Lab::dir_for(name);
        let home =
            std::fs::File::open("/proc/thread-self/ns/net").expect("this thread's namespace");
        let lab = Lab {
            dir,
            prefix,
            hosts,
            script,
            home,
        };
        // A lab of an earlier run of this test that was killed before its teardown.
        lab.down();
        let hosts = hosts.to_string();
        let mut args = vec!["up", "--hosts", &hosts, "--rate", rate];
        args.extend_from_slice(options);
        let ran = lab.script(&args);
        assert!(ran.success(), "the lab did not come up: {}", ran.report());
        lab
    }

    /// The lab script, run in this machine's own network namespace even from a thread
    /// that entered the control machine's.
    fn command(&self) -> Command {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new("bash");
        cmd.arg(&self.script);
        let home = self.home.as_raw_fd();
        // SAFETY: only setns, async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(home, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        cmd
    }

    fn script(&self, args: &[&str]) -> Ran {
        let mut cmd = self.command();
        cmd.args(args);
        cmd.arg("--dir")
            .arg(&self.dir)
            .arg("--prefix")
            .arg(&self.prefix);
        run(&mut cmd, Duration::from_secs(180))
    }

    /// The folder of the lab `up` makes under `name`, known before it is made.
    pub fn dir_for(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("vocc-t{}-{name}", std::process::id()))
    }

    /// Runs a command on a member of the lab (`ctl` or `h1`...) and waits for it.
    pub fn exec(&self, member: &str, argv: &[&str], limit: Duration) -> Ran {
        let mut cmd = self.command();
        cmd.args(["exec", "--dir"])
            .arg(&self.dir)
            .args([member, "--"])
            .args(argv);
        run(&mut cmd, limit)
    }

    /// An ssh command line from the control machine to `host`: key only, host keys
    /// checked against the lab's known_hosts.
    pub fn ssh(&self, host: &str, remote: &str) -> Vec<String> {
        let d = self.dir.display();
        [
            "ssh",
            "-i",
            &format!("{d}/id_ed25519"),
            "-o",
            &format!("UserKnownHostsFile={d}/known_hosts"),
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=3",
            &format!("root@{host}"),
            remote,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Builds with `vocc` (its configuration only) a cluster `name` of `n` workers, one
    /// on each host as the lab's site file places them, for the `sim` driver; returns
    /// its plan.
    pub fn sim_cluster(&self, vocc: &Path, name: &str, n: usize) -> PathBuf {
        let appliance = self.dir.join(format!("{name}.voc"));
        std::fs::write(
            &appliance,
            format!(
                "cluster {name} {{\n  hypervisor kvm\n  network private {{ subnet 10.20.0.0/16; \
                 assign pool }}\n  layer tiny {{ from busybox; size 64M }}\n  role worker {{ \
                 count {n}; root tiny; cpu 1; memory 128M; nic eth0 private }}\n}}\n"
            ),
        )
        .unwrap();
        let out = self.dir.join(format!("{name}-out"));
        let ran = run(
            Command::new(vocc)
                .arg("build")
                .arg(&appliance)
                .arg("--site")
                .arg(self.dir.join("site.voc"))
                .arg("--config-only")
                .arg("-o")
                .arg(&out),
            Duration::from_secs(120),
        );
        assert!(ran.success(), "{}", ran.report());
        out.join("plan.json")
    }

    /// Moves the calling thread (and the threads and programs it starts afterwards) into
    /// the control machine's network namespace, as if it ran on `ctl`.
    pub fn enter_control(&self) {
        use std::os::fd::AsRawFd;
        let ns = std::fs::File::open(format!("/run/netns/{}-ctl", self.prefix))
            .expect("the lab's control namespace");
        // SAFETY: setns on a namespace file we hold open; it changes only this thread.
        let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }

    /// Every file under a host's own store, relative to it, sorted.
    pub fn store_files(&self, host: &str) -> Vec<String> {
        let root = self.dir.join(host).join("store");
        let mut out = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    dirs.push(e.path());
                } else {
                    out.push(e.path().strip_prefix(&root).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    /// The file of a host's own store, as the host sees it at the site's store path.
    pub fn host_file(&self, host: &str, relative: &str) -> PathBuf {
        self.dir.join(host).join("store").join(relative)
    }

    /// Cuts (`down`) or restores (`up`) a member's link to the switch.
    pub fn link(&self, member: &str, state: &str) {
        let mut cmd = self.command();
        cmd.args(["link", "--dir"])
            .arg(&self.dir)
            .args([member, state]);
        let ran = run(&mut cmd, Duration::from_secs(20));
        assert!(ran.success(), "{}", ran.report());
    }

    /// The lab's namespaces that exist now.
    pub fn namespaces(&self) -> Vec<String> {
        let ran = run(
            Command::new("ip").args(["netns", "list"]),
            Duration::from_secs(10),
        );
        ran.stdout
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&format!("{}-", self.prefix)))
            .map(str::to_owned)
            .collect()
    }

    pub fn down(&self) -> Ran {
        self.script(&["down"])
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let ran = self.down();
        if !ran.success() {
            eprintln!("tearing the lab down failed: {}", ran.report());
        }
    }
}
