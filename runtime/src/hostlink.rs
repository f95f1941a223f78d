//! How the control side reaches a host's half of the runtime (`vocc-host`): run it here,
//! over SSH, or through the site's own Slurm (`srun -w HOST`). Every way is an argument
//! vector whose words are checked here: an SSH command is a line for the remote shell,
//! so the only words that reach it are the host binary's path (plain characters only)
//! and a fixed operation name; everything else travels as JSON on the link's stdin.

use serde::{Deserialize, Serialize};
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The operations `vocc-host` has; the only words after its path on a remote line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostOp {
    Hello,
    Receive,
    Remove,
    Serve,
}

impl HostOp {
    pub fn word(self) -> &'static str {
        match self {
            HostOp::Hello => "hello",
            HostOp::Receive => "receive",
            HostOp::Remove => "remove",
            HostOp::Serve => "serve",
        }
    }
}

/// One way to reach a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "via", rename_all = "lowercase", deny_unknown_fields)]
pub enum HostLink {
    /// The host is this machine: run the binary directly.
    Local { program: PathBuf },
    /// OpenSSH with key authentication only; host keys checked against `known_hosts`.
    Ssh {
        address: String,
        user: String,
        identity: PathBuf,
        known_hosts: PathBuf,
        program: String,
    },
    /// The site's Slurm runs the host-side step on the host (`srun -w HOST`); `conf` is
    /// the Slurm configuration to use when it is not the system's.
    Slurm {
        node: String,
        program: String,
        conf: Option<PathBuf>,
    },
}

/// A word that may stand on a remote shell line unquoted: an absolute path of plain
/// characters.
pub fn check_program(program: &str) -> Result<(), String> {
    let plain = program.starts_with('/')
        && program.len() <= 256
        && !program.contains("/../")
        && !program.ends_with("/..")
        && program
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+".contains(&b));
    if plain {
        Ok(())
    } else {
        Err(format!(
            "the host program `{}` must be an absolute path of letters, digits and `/._-+`",
            program.escape_debug()
        ))
    }
}

/// A host name or address that ssh and srun take as one plain word.
pub fn check_address(address: &str) -> Result<(), String> {
    let plain = !address.is_empty()
        && address.len() <= 253
        && !address.starts_with('-')
        && address
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b));
    if plain {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a host name or address",
            address.escape_debug()
        ))
    }
}

pub fn check_user(user: &str) -> Result<(), String> {
    let plain = !user.is_empty()
        && user.len() <= 32
        && !user.starts_with('-')
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if plain {
        Ok(())
    } else {
        Err(format!("`{}` is not a user name", user.escape_debug()))
    }
}

/// Where this user's SSH connections to hosts are multiplexed: one authenticated
/// connection per host, kept for a few minutes, carries every operation's session, so
/// an operation on N hosts costs no handshakes once the hosts are connected.
///
/// ssh names a shared connection by user, host and port only; two sites (or two labs
/// in different network namespaces) may have hosts at the same address. The folder is
/// therefore per site identity (the key and known_hosts files) and per network
/// namespace, so that a session never rides another site's connection.
fn control_dir(identity: &Path, known_hosts: &Path) -> PathBuf {
    use sha2::{Digest, Sha256};
    let netns = std::fs::read_link("/proc/thread-self/ns/net")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut h = Sha256::new();
    for part in [
        identity.display().to_string(),
        known_hosts.display().to_string(),
        netns,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest: String = h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    crate::state::user_dir().join("ssh").join(digest)
}

/// The options every SSH command of vocc carries: keys only, host keys checked, dead
/// links noticed within seconds, and the shared connection.
fn ssh_options(identity: &Path, known_hosts: &Path, user: &str) -> Vec<String> {
    let mut o = vec!["-i".to_owned(), identity.display().to_string()];
    for opt in [
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "StrictHostKeyChecking=yes".into(),
        "BatchMode=yes".into(),
        "IdentitiesOnly=yes".into(),
        "PasswordAuthentication=no".into(),
        "ConnectTimeout=5".into(),
        "ServerAliveInterval=2".into(),
        "ServerAliveCountMax=3".into(),
        format!(
            "ControlPath={}/%C",
            control_dir(identity, known_hosts).display()
        ),
    ] {
        o.push("-o".into());
        o.push(opt);
    }
    o.extend(["-l".into(), user.into()]);
    o
}

/// The longest an `ssh -O` request to a shared connection's master may take.
const CONTROL_LIMIT: Duration = Duration::from_secs(10);

/// Asks the shared connection to `address` (`ssh -O what`): whether it said yes, or
/// `None` when its master did not answer within `CONTROL_LIMIT` (a wedged master would
/// otherwise hold the caller forever).
fn control_op(options: &[String], what: &str, address: &str) -> Option<bool> {
    let child = Command::new("ssh")
        .args(options)
        .args(["-O", what, "--"])
        .arg(address)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    // No ssh to ask: no connection either (starting one says why).
    let Ok(mut child) = child else {
        return Some(false);
    };
    let deadline = Instant::now() + CONTROL_LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status.success()),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// A file in `dir` that has no name: it goes when the last process holding it does.
fn tempfile_in(dir: &Path) -> Result<std::fs::File, String> {
    let path = crate::atomic::temporary(&dir.join("connect.log"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("cannot create `{}`: {e}", path.display()))?;
    let _ = std::fs::remove_file(&path);
    Ok(file)
}

impl HostLink {
    /// Makes sure the host can be reached, and for SSH that an authenticated shared
    /// connection to it is up (started now if it is not), so that the sessions that
    /// follow cost no handshake. Says why when the host cannot be reached.
    pub fn connect(&self) -> Result<(), String> {
        self.check()?;
        let HostLink::Ssh {
            address,
            user,
            identity,
            known_hosts,
            ..
        } = self
        else {
            return Ok(());
        };
        let dir = control_dir(identity, known_hosts);
        // Only this user may reach the shared connections' sockets.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        let options = ssh_options(identity, known_hosts, user);
        match control_op(&options, "check", address) {
            Some(true) => return Ok(()),
            Some(false) => {}
            None => {
                return Err(format!(
                    "the shared ssh connection to `{address}` did not answer its check within \
                     {} s: end its `ssh` master (its socket is in `{}`) and try again",
                    CONTROL_LIMIT.as_secs(),
                    dir.display()
                ))
            }
        }
        // What the connection says goes to an unnamed file (read on failure).
        let mut log = tempfile_in(&dir)?;
        // `-f` returns once authenticated and leaves the connection in the background.
        let mut child = Command::new("ssh")
            .args(&options)
            .args([
                "-o",
                "ControlMaster=yes",
                "-o",
                "ControlPersist=300",
                "-f",
                "-N",
                "-T",
                "--",
            ])
            .arg(address)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Not a pipe: the connection lives on in the background with this stderr,
            // and a pipe nobody reads any more would end it at its first message.
            .stderr(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
            .spawn()
            .map_err(|e| format!("cannot run ssh: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(_)) => {
                    let mut err = String::new();
                    // ssh wrote through a duplicate of this file, at the shared offset.
                    let _ = log.seek(std::io::SeekFrom::Start(0));
                    let _ = log.read_to_string(&mut err);
                    let err = err.trim().lines().last().unwrap_or("ssh failed").to_owned();
                    return Err(format!("cannot connect to `{address}` over ssh: {err}"));
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "cannot connect to `{address}` over ssh within 30 s"
                    ));
                }
            }
        }
    }

    /// Closes the shared connection to the host, if there is one, and returns once it
    /// is gone.
    pub fn disconnect(&self) {
        if let HostLink::Ssh {
            address,
            user,
            identity,
            known_hosts,
            ..
        } = self
        {
            if self.check().is_ok() {
                let options = ssh_options(identity, known_hosts, user);
                let control = |what: &str| control_op(&options, what, address) == Some(true);
                control("exit");
                // The connection ends a moment after it is asked to: a session started
                // in between would ride a connection on its way out. Wait for it.
                let deadline = Instant::now() + Duration::from_secs(5);
                while control("check") && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    /// A command that runs the fixed shell `script` on the host, with `args` as its
    /// positional parameters (`$1`…). The script is vocc's own text, never a value
    /// from a plan; every argument must pass [`check_program`], since over SSH it is a
    /// word of the remote shell's line.
    pub fn shell(&self, script: &'static str, args: &[&str]) -> Result<Command, String> {
        self.check()?;
        for a in args {
            check_program(a)?;
        }
        assert!(
            !script.contains('\''),
            "a host script holds no single quote"
        );
        let mut cmd = match self {
            HostLink::Local { .. } => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(script).arg("sh").args(args);
                c
            }
            HostLink::Ssh {
                address,
                user,
                identity,
                known_hosts,
                ..
            } => {
                let mut c = Command::new("ssh");
                c.args(ssh_options(identity, known_hosts, user))
                    .args(["-o", "ControlMaster=no", "-T", "--"])
                    .arg(address)
                    .arg("sh")
                    .arg("-c")
                    .arg(format!("'{script}'"))
                    .arg("sh")
                    .args(args);
                c
            }
            HostLink::Slurm { node, conf, .. } => {
                let mut c = Command::new("srun");
                if let Some(conf) = conf {
                    c.env("SLURM_CONF", conf);
                }
                c.args(["--quiet", "-N1", "-n1", "-w"])
                    .arg(node)
                    .args(["--", "sh", "-c", script, "sh"])
                    .args(args);
                c
            }
        };
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Ok(cmd)
    }

    /// Checks every word that would reach a command line.
    pub fn check(&self) -> Result<(), String> {
        match self {
            HostLink::Local { program } => {
                // A plan may only ever start the host half itself.
                let named = program.file_name().is_some_and(|n| n == "vocc-host");
                if program.is_absolute() && named {
                    Ok(())
                } else {
                    Err(format!(
                        "the local host program `{}` must be an absolute path to `vocc-host`",
                        program.display()
                    ))
                }
            }
            HostLink::Ssh {
                address,
                user,
                program,
                ..
            } => {
                check_address(address)?;
                check_user(user)?;
                check_program(program)
            }
            HostLink::Slurm { node, program, .. } => {
                check_address(node)?;
                check_program(program)
            }
        }
    }

    /// The command that runs `op` on the host, with stdin and stdout piped for the
    /// JSON protocol and stderr piped for the failure message.
    pub fn command(&self, op: HostOp) -> Result<Command, String> {
        self.check()?;
        let mut cmd = match self {
            HostLink::Local { program } => {
                let mut c = Command::new(program);
                c.arg(op.word());
                c
            }
            HostLink::Ssh {
                address,
                user,
                identity,
                known_hosts,
                program,
            } => {
                let mut c = Command::new("ssh");
                c.args(ssh_options(identity, known_hosts, user))
                    .args(["-o", "ControlMaster=no", "-T", "--"])
                    .arg(address)
                    .arg(program)
                    .arg(op.word());
                c
            }
            HostLink::Slurm {
                node,
                program,
                conf,
            } => {
                let mut c = Command::new("srun");
                if let Some(conf) = conf {
                    c.env("SLURM_CONF", conf);
                }
                c.args(["--quiet", "--unbuffered", "-N1", "-n1", "-w"])
                    .arg(node)
                    .arg("--")
                    .arg(program)
                    .arg(op.word());
                c
            }
        };
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Ok(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh(address: &str, user: &str, program: &str) -> HostLink {
        HostLink::Ssh {
            address: address.into(),
            user: user.into(),
            identity: "/k".into(),
            known_hosts: "/kh".into(),
            program: program.into(),
        }
    }

    #[test]
    fn words_that_a_remote_shell_would_read_are_plain() {
        assert!(ssh("10.0.0.1", "root", "/usr/lib/vocc/vocc-host")
            .check()
            .is_ok());
        for program in [
            "vocc-host",
            "/bin/vocc-host; rm -rf /",
            "/bin/$(id)",
            "/bin/a b",
            "/bin/`x`",
            "/opt/../etc/x",
        ] {
            assert!(ssh("h1", "root", program).check().is_err(), "{program}");
        }
        for address in ["-oProxyCommand=x", "h1 h2", "h1;x", ""] {
            assert!(ssh(address, "root", "/b").check().is_err(), "{address}");
        }
        assert!(ssh("h1", "-l", "/b").check().is_err());
    }

    #[test]
    fn a_shared_connection_whose_master_never_answers_fails_in_bounded_time() {
        let dir = tempfile::tempdir().unwrap();
        let (identity, known_hosts) = (dir.path().join("k"), dir.path().join("kh"));
        let link = HostLink::Ssh {
            address: "127.0.0.9".into(),
            user: "root".into(),
            identity: identity.clone(),
            known_hosts: known_hosts.clone(),
            program: "/b/vocc-host".into(),
        };
        // Where ssh looks for the shared connection, as ssh itself expands it.
        let shown = Command::new("ssh")
            .arg("-G")
            .args(ssh_options(&identity, &known_hosts, "root"))
            .args(["--", "127.0.0.9"])
            .output()
            .expect("ssh (openssh-client)");
        let shown = String::from_utf8_lossy(&shown.stdout);
        let path = shown
            .lines()
            .find_map(|l| l.strip_prefix("controlpath "))
            .expect("ssh -G names the control path");
        std::fs::create_dir_all(Path::new(path).parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(path);
        // A master that takes the connection and never says a word.
        let wedged = std::os::unix::net::UnixListener::bind(path).unwrap();
        let t = Instant::now();
        let e = link.connect().unwrap_err();
        assert!(e.contains("did not answer its check"), "{e}");
        assert!(t.elapsed() < CONTROL_LIMIT + Duration::from_secs(5));
        drop(wedged);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn an_ssh_link_ends_options_before_the_host() {
        let cmd = ssh("h1", "root", "/b/vocc-host")
            .command(HostOp::Receive)
            .unwrap();
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let dashdash = args.iter().position(|a| a == "--").unwrap();
        assert_eq!(&args[dashdash + 1..], ["h1", "/b/vocc-host", "receive"]);
        assert!(args.contains(&"StrictHostKeyChecking=yes".to_string()));
    }
}
