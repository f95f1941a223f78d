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
}

impl Lab {
    /// Brings up `hosts` hosts on links of `rate` (a tc rate, `0` for unshaped), under
    /// a prefix of the test's own so that two labs never share a namespace.
    pub fn up(name: &str, hosts: usize, rate: &str) -> Lab {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lab");
        let prefix = format!("vocc-t{}-{name}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        let lab = Lab {
            dir,
            prefix,
            hosts,
            script,
        };
        // A lab of an earlier run of this test that was killed before its teardown.
        lab.down();
        let ran = lab.script(&["up", "--hosts", &hosts.to_string(), "--rate", rate]);
        assert!(ran.success(), "the lab did not come up: {}", ran.report());
        lab
    }

    fn script(&self, args: &[&str]) -> Ran {
        let mut cmd = Command::new("bash");
        cmd.arg(&self.script).args(args);
        cmd.arg("--dir")
            .arg(&self.dir)
            .arg("--prefix")
            .arg(&self.prefix);
        run(&mut cmd, Duration::from_secs(180))
    }

    /// Runs a command on a member of the lab (`ctl` or `h1`...) and waits for it.
    pub fn exec(&self, member: &str, argv: &[&str], limit: Duration) -> Ran {
        let mut cmd = Command::new("bash");
        cmd.arg(&self.script)
            .args(["exec", "--dir"])
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

    /// Cuts (`down`) or restores (`up`) a member's link to the switch.
    pub fn link(&self, member: &str, state: &str) {
        let mut cmd = Command::new("bash");
        cmd.arg(&self.script)
            .args(["link", "--dir"])
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
