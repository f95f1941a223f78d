//! Debian layers: a release with packages, built with mmdebstrap (`--mode=root`) from
//! the host's own apt sources, then made fit to share.
//!
//! The root gets systemd, udev, kmod, iproute2 and the recipe's packages; no kernel
//! package (vocc's kernel boots every layer: the tree gets that kernel's modules, less
//! drivers for hardware a virtual machine lacks). Documentation, manual pages,
//! translations and apt's lists are dropped. systemd-networkd runs the network from the
//! rendered `.network` files, and `vocc-ready.service` prints the readiness marker.
//! Nothing that identifies a machine stays: no SSH host keys, an empty
//! `/etc/machine-id` (systemd makes one at first boot), no random seed, no logs.

use super::tools::{Run, MMDEBSTRAP};
use super::ImageError;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

/// Packages every Debian layer has besides the recipe's.
pub const BASE_PACKAGES: &[&str] = &["systemd-sysv", "udev", "kmod", "iproute2", "netbase"];

/// Units masked in every Debian layer (see [`finish`]).
pub const MASKED: &[&str] = &[
    "getty-static.service",
    "getty@tty1.service",
    "e2scrub_reap.service",
    "e2scrub_all.timer",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "fstrim.timer",
    "man-db.timer",
    "modprobe@dm_mod.service",
    "modprobe@drm.service",
    "modprobe@efi_pstore.service",
    "modprobe@fuse.service",
    "modprobe@loop.service",
    "nfs-blkmap.service",
    "systemd-binfmt.service",
    "systemd-update-utmp.service",
    "systemd-update-utmp-runlevel.service",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
];

/// The host's apt sources (deb822), whose mirrors the layers use.
pub const HOST_SOURCES: &str = "/etc/apt/sources.list.d/debian.sources";

/// The apt sources for `suite`: the host's deb822 sources with each stanza's suites
/// renamed from the host's release to `suite` (`bookworm-updates` → `trixie-updates`).
pub fn sources_for(suite: &str, source: &str) -> Result<String, ImageError> {
    let text = fs::read_to_string(HOST_SOURCES).map_err(|e| ImageError::Debian {
        message: format!("cannot read the host's apt sources `{HOST_SOURCES}`: {e}"),
        source_line: source.to_owned(),
    })?;
    Ok(rename_suites(&text, suite))
}

fn rename_suites(text: &str, suite: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        match line.strip_prefix("Suites:") {
            Some(list) => {
                let renamed: Vec<String> = list
                    .split_whitespace()
                    .map(|s| match s.split_once('-') {
                        Some((_, tail)) => format!("{suite}-{tail}"),
                        None => suite.to_owned(),
                    })
                    .collect();
                out.push_str(&format!("Suites: {}\n", renamed.join(" ")));
            }
            None if line.trim_start().starts_with('#') => {}
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Builds the root of `suite` with `packages` into `root` (which must not exist).
pub fn stage(
    root: &Path,
    work: &Path,
    suite: &str,
    packages: &[String],
    sources: &str,
    source: &str,
) -> Result<(), ImageError> {
    let mirror = work.join("mirror.sources");
    fs::write(&mirror, sources)
        .map_err(|e| ImageError::io("cannot write the apt sources".into(), e))?;
    command(suite, packages, root, &mirror, source)
        .run()
        .map_err(|e| match e {
            ImageError::ToolFailed {
                command,
                status,
                stderr,
                source_line,
            } => ImageError::ToolFailed {
                command,
                status,
                stderr: format!(
                    "{stderr}\n(are the packages [{}] in `{suite}`?)",
                    packages.join(" ")
                ),
                source_line,
            },
            e => e,
        })
}

/// The mmdebstrap run that builds `suite` with `packages` into `root`. Its options
/// end with `--`, so neither the suite nor a path is ever read as one.
fn command(suite: &str, packages: &[String], root: &Path, mirror: &Path, source: &str) -> Run {
    let mut include: Vec<&str> = BASE_PACKAGES.to_vec();
    include.extend(packages.iter().map(String::as_str));
    Run::new(MMDEBSTRAP, source)
        .args([
            "--mode=root",
            "--variant=minbase",
            "--format=directory",
            "-q",
        ])
        .arg(format!("--include={}", include.join(",")))
        .arg("--aptopt=Acquire::Languages \"none\"")
        .args([
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-exclude=/usr/share/info/*",
            "--dpkgopt=path-exclude=/usr/share/lintian/*",
        ])
        .args(debconf_hook(&crate::scheduler::debconf()))
        .arg("--customize-hook=chroot \"$1\" systemctl enable systemd-networkd")
        // Options end here: the suite (checked to be a release name) and the paths
        // can never be read as one.
        .arg("--")
        .arg(suite)
        .arg(root)
        .arg(mirror)
}

/// The hook that gives debconf its answers before the packages are installed (none
/// without answers). The answers are vocc's own constants, quoted for the hook's shell.
fn debconf_hook(answers: &[&str]) -> Option<String> {
    if answers.is_empty() {
        return None;
    }
    let quoted: Vec<String> = answers
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    Some(format!(
        "--essential-hook=printf '%s\\n' {} | chroot \"$1\" debconf-set-selections",
        quoted.join(" ")
    ))
}

/// Makes a built root fit to share: vocc's files in, machine identity and caches out.
pub fn finish(root: &Path) -> Result<(), ImageError> {
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |e: std::io::Error| ImageError::io(format!("cannot prepare `{what}`"), e)
    };
    let put = |rel: &str, text: &str, mode: u32| -> Result<(), ImageError> {
        use std::os::unix::fs::PermissionsExt;
        let p = root.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        fs::write(&p, text).map_err(io(&p))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(io(&p))
    };
    put("usr/lib/vocc/hook.sh", super::BOOT_HOOK, 0o755)?;
    put("lib/vocc/vocc-agent", super::GUEST_AGENT, 0o755)?;
    put("lib/vocc/vocc-ready", super::BOOT_READY_SCRIPT, 0o755)?;
    put(
        "lib/systemd/system/vocc-ready.service",
        &super::ready_unit(),
        0o644,
    )?;
    put(
        "lib/systemd/system/vocc-agent.service",
        super::BOOT_AGENT_UNIT,
        0o644,
    )?;
    put(
        "lib/systemd/system/vocc-batch-setup.service",
        &super::batch_setup_unit(),
        0o644,
    )?;
    put(
        "lib/systemd/system/vocc-batch-configure.service",
        &super::batch_configure_unit(),
        0o644,
    )?;
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants).map_err(io(&wants))?;
    for unit in [
        "vocc-ready.service",
        "vocc-agent.service",
        "vocc-batch-setup.service",
        "vocc-batch-configure.service",
    ] {
        let link = wants.join(unit);
        let _ = fs::remove_file(&link);
        symlink(format!("/lib/systemd/system/{unit}"), &link).map_err(io(&link))?;
    }

    // Units that do nothing for a virtual cluster node and cost seconds of an emulated
    // boot: periodic maintenance, consoles without a screen, loading modules the node
    // never uses, pNFS block layouts, login records, debug file systems.
    let system = root.join("etc/systemd/system");
    for unit in MASKED {
        let link = system.join(unit);
        let _ = fs::remove_file(&link);
        symlink("/dev/null", &link).map_err(io(&link))?;
    }

    // Machine identity: every node makes its own at first boot.
    put("etc/machine-id", "", 0o444)?;
    for rel in [
        "var/lib/dbus/machine-id",
        "var/lib/systemd/random-seed",
        "var/cache/ldconfig/aux-cache",
    ] {
        remove(&root.join(rel))?;
    }
    let ssh = root.join("etc/ssh");
    if let Ok(dir) = fs::read_dir(&ssh) {
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                remove(&e.path())?;
            }
        }
    }
    // Secrets packages make at install (munge's key): each cluster brings its own.
    for secret in crate::scheduler::ALL.iter().flat_map(|s| s.secrets()) {
        remove(&root.join(secret.path.trim_start_matches('/')))?;
    }
    // Caches and logs of the build.
    for rel in [
        "var/lib/apt/lists",
        "var/cache/apt",
        "var/log",
        "var/cache/debconf",
        "tmp",
        "var/tmp",
    ] {
        empty_dir(&root.join(rel), rel == "var/cache/debconf")?;
    }
    // The password and group backups (`passwd-`) carry the build's date.
    if let Ok(dir) = fs::read_dir(root.join("etc")) {
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().ends_with('-') && e.path().is_file() {
                remove(&e.path())?;
            }
        }
    }
    Ok(())
}

fn remove(p: &Path) -> Result<(), ImageError> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ImageError::io(
            format!("cannot remove `{}`", p.display()),
            e,
        )),
        _ => Ok(()),
    }
}

/// Removes the files below `dir` (keeping directories, which packages expect). With
/// `old_only`, only debconf's `*-old` backups go.
fn empty_dir(dir: &Path, old_only: bool) -> Result<(), ImageError> {
    for e in walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .flatten()
    {
        if e.file_type().is_dir() {
            continue;
        }
        if old_only && !e.file_name().to_string_lossy().ends_with("-old") {
            continue;
        }
        remove(e.path())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mmdebstrap_reads_no_value_as_an_option() {
        let run = command(
            "bookworm",
            &["vim".to_owned()],
            Path::new("/s/tmp/1/root"),
            Path::new("/s/tmp/1/mirror.sources"),
            "x",
        );
        let shown = run.display();
        let (options, operands) = shown.split_once(" -- ").expect("options end with `--`");
        assert!(options.contains("--include=systemd-sysv,"), "{shown}");
        assert_eq!(operands, "bookworm /s/tmp/1/root /s/tmp/1/mirror.sources");
    }

    #[test]
    fn suites_follow_the_recipe() {
        let host = "Types: deb\n# a comment\nURIs: http://deb.debian.org/debian\n\
                    Suites: bookworm bookworm-updates\n\nTypes: deb\nSuites: bookworm-security\n";
        assert_eq!(
            rename_suites(host, "trixie"),
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie trixie-updates\n\n\
             Types: deb\nSuites: trixie-security\n"
        );
    }

    #[test]
    fn a_shared_layer_keeps_no_batch_system_secret() {
        let tmp = tempfile::tempdir().unwrap();
        let key = tmp.path().join("etc/munge/munge.key");
        fs::create_dir_all(key.parent().unwrap()).unwrap();
        fs::write(&key, b"made by the package").unwrap();
        finish(tmp.path()).unwrap();
        assert!(!key.exists());
        assert!(tmp.path().join("usr/lib/vocc/hook.sh").is_file());
    }
}
