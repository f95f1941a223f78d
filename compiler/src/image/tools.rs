//! The external programs image builds run, and how they run: always with an argument
//! vector (never a shell line with spliced values), with a fixed environment for
//! reproducible output, and with errors that name the Debian package of a missing
//! program, or the command and the tail of its stderr when it fails.

use super::ImageError;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A program vocc runs, and the Debian package that installs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub program: &'static str,
    pub package: &'static str,
}

pub const QEMU_IMG: Tool = Tool {
    program: "qemu-img",
    package: "qemu-utils",
};
pub const MKFS_EXT4: Tool = Tool {
    program: "mkfs.ext4",
    package: "e2fsprogs",
};
pub const DEBUGFS: Tool = Tool {
    program: "debugfs",
    package: "e2fsprogs",
};
pub const DUMPE2FS: Tool = Tool {
    program: "dumpe2fs",
    package: "e2fsprogs",
};
pub const XORRISO: Tool = Tool {
    program: "xorriso",
    package: "xorriso",
};
pub const MMDEBSTRAP: Tool = Tool {
    program: "mmdebstrap",
    package: "mmdebstrap",
};
pub const APT_GET: Tool = Tool {
    program: "apt-get",
    package: "apt",
};
pub const APT_CACHE: Tool = Tool {
    program: "apt-cache",
    package: "apt",
};
pub const DPKG_DEB: Tool = Tool {
    program: "dpkg-deb",
    package: "dpkg",
};
pub const DEPMOD: Tool = Tool {
    program: "depmod",
    package: "kmod",
};
pub const BUSYBOX: Tool = Tool {
    program: "busybox",
    package: "busybox-static",
};
pub const LDD: Tool = Tool {
    program: "ldd",
    package: "libc-bin",
};

/// The fixed time every image carries (2025-01-01T00:00:00Z): file times, file system
/// times, ISO volume dates. Images are a function of their recipe, not of the clock.
pub const EPOCH: i64 = 1_735_689_600;

/// Where a program is, searching `PATH` and the sbin directories (a user's `PATH` often
/// lacks `/usr/sbin`, where mkfs.ext4 and depmod live).
pub fn locate(tool: Tool) -> Result<PathBuf, ImageError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = [OsString::from("/usr/sbin"), OsString::from("/sbin")];
    let dirs = std::env::split_paths(&path).chain(extra.iter().map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(tool.program);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(ImageError::MissingTool {
        program: tool.program,
        package: tool.package,
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// One run of a tool: its arguments, environment and working directory.
pub struct Run {
    tool: Tool,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    dir: Option<PathBuf>,
    /// The appliance line behind this run, for error messages.
    source: String,
}

impl Run {
    pub fn new(tool: Tool, source: &str) -> Run {
        Run {
            tool,
            args: Vec::new(),
            env: Vec::new(),
            dir: None,
            source: source.to_owned(),
        }
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Run {
        self.args.push(a.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<OsStr>) -> Run {
        self.env.push((k.into(), v.as_ref().to_owned()));
        self
    }

    pub fn dir(mut self, d: &Path) -> Run {
        self.dir = Some(d.to_path_buf());
        self
    }

    /// The command as a person would type it (for messages only; never executed).
    pub fn display(&self) -> String {
        let mut s = self.tool.program.to_owned();
        for a in &self.args {
            let a = a.to_string_lossy();
            s.push(' ');
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
                s.push('\'');
                s.push_str(&a.replace('\'', "'\\''"));
                s.push('\'');
            } else {
                s.push_str(&a);
            }
        }
        s
    }

    /// Runs to completion and returns stdout; fails with the command and the tail of
    /// its stderr when it exits non-zero.
    pub fn output(self) -> Result<Vec<u8>, ImageError> {
        let program = locate(self.tool)?;
        let mut cmd = Command::new(&program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("LC_ALL", "C.UTF-8")
            .env("TZ", "UTC")
            .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
            .env("E2FSPROGS_FAKE_TIME", EPOCH.to_string());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        if let Some(d) = &self.dir {
            cmd.current_dir(d);
        }
        let out = cmd.output().map_err(|e| ImageError::ToolFailed {
            command: self.display(),
            status: "could not start".into(),
            stderr: e.to_string(),
            source_line: self.source.clone(),
        })?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
            if text.trim().is_empty() {
                text = String::from_utf8_lossy(&out.stdout).into_owned();
            }
            Err(ImageError::ToolFailed {
                command: self.display(),
                status: out.status.to_string(),
                stderr: tail(&text, 15),
                source_line: self.source,
            })
        }
    }

    /// Runs to completion; stdout is discarded.
    pub fn run(self) -> Result<(), ImageError> {
        self.output().map(drop)
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_what_a_shell_would_split() {
        let r = Run::new(QEMU_IMG, "x").args(["create", "a b", "it's", ""]);
        assert_eq!(r.display(), "qemu-img create 'a b' 'it'\\''s' ''");
    }

    #[test]
    fn a_missing_tool_names_its_package() {
        let t = Tool {
            program: "vocc-no-such-program",
            package: "vocc-pkg",
        };
        let e = locate(t).unwrap_err().to_string();
        assert!(
            e.contains("vocc-no-such-program") && e.contains("apt-get install vocc-pkg"),
            "{e}"
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
