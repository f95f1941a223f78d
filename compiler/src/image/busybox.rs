//! The embedded default layer: a minimal root assembled from the host's static busybox
//! (package `busybox-static`), with vocc's init scripts. The kernel and its modules
//! come with the layer's initramfs ([`super::kernel`]); the root needs none of its own.
//!
//! The root's init is busybox's: `/etc/inittab` runs `/etc/init.d/rcS`, which brings
//! up the network from the interfaces file with `ifup` (busybox's `ip` and `udhcpc`),
//! mounts data disks and swap from fstab, serves `/etc/exports` when the NFS server
//! tools are in the layer, mounts NFS shares in the background until their server
//! answers, and prints `vocc: ready NODE` on the console.
//!
//! Busybox has no NFS server. When the host has the kernel NFS server's tools
//! (`nfs-kernel-server`: rpc.nfsd, rpc.mountd, exportfs), the layer carries them with
//! the libraries they load, so that a busybox head can export directories (NFSv4).

use super::store::Store;
use super::tools::{self, BUSYBOX, LDD};
use super::ImageError;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

/// The host's busybox: where it is and its sha256.
pub struct HostBusybox {
    pub path: PathBuf,
    pub sha256: String,
}

/// The host's busybox, which must be statically linked (it runs in the initramfs and
/// in a root that has no C library).
pub fn host_busybox(store: &Store, source: &str) -> Result<HostBusybox, ImageError> {
    let path = tools::locate(BUSYBOX)?;
    let path = fs::canonicalize(&path).unwrap_or(path);
    let head = read_head(&path)
        .map_err(|e| ImageError::io(format!("cannot read `{}`", path.display()), e))?;
    if has_interpreter(&head) {
        return Err(ImageError::Kernel {
            message: format!(
                "`{}` is dynamically linked; vocc needs a static busybox: apt-get install \
                 busybox-static",
                path.display()
            ),
            source_line: source.to_owned(),
        });
    }
    let sha256 = store.hash_host_file(&path)?;
    Ok(HostBusybox { path, sha256 })
}

fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = vec![0u8; 8192];
    let mut f = fs::File::open(path)?;
    let n = f.read(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// Whether an ELF64 executable names a program interpreter (is dynamically linked).
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
    };
    if !elf.starts_with(b"\x7fELF") || elf.get(4) != Some(&2) {
        return false;
    }
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..count).any(|i| u32_at(phoff + i * size) == Some(3))
}

/// The NFS server's programs the layer takes from the host, if the host has them all.
pub const NFS_TOOLS: &[&str] = &[
    "/usr/sbin/rpc.nfsd",
    "/usr/sbin/rpc.mountd",
    "/usr/sbin/exportfs",
];

/// A host file the layer carries: where it goes in the root, where it is, its sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFile {
    pub dest: String,
    pub path: PathBuf,
    pub sha256: String,
}

/// The NFS server's programs and every library they load (by `ldd`), or nothing when
/// the host lacks one of the programs.
pub fn nfs_tools(store: &Store, source: &str) -> Result<Vec<HostFile>, ImageError> {
    if !NFS_TOOLS.iter().all(|t| Path::new(t).is_file()) {
        return Ok(Vec::new());
    }
    let text = tools::Run::new(LDD, source)
        .arg("--")
        .args(NFS_TOOLS)
        .output()?;
    let mut names: Vec<String> = NFS_TOOLS.iter().map(|t| (*t).to_owned()).collect();
    names.extend(libraries(&String::from_utf8_lossy(&text)));
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|dest| {
            let path = PathBuf::from(&dest);
            let sha256 = store.hash_host_file(&path)?;
            Ok(HostFile { dest, path, sha256 })
        })
        .collect()
}

/// The absolute library paths in `ldd` output (`libc.so.6 => /lib/.../libc.so.6 (0x…)`,
/// `/lib64/ld-linux-x86-64.so.2 (0x…)`).
fn libraries(ldd: &str) -> Vec<String> {
    ldd.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_owned())
        })
        .filter(|p| !p.ends_with(':'))
        .collect()
}

/// Writes the busybox root into `root` (an empty directory).
pub fn stage(root: &Path, busybox: &HostBusybox, extra: &[HostFile]) -> Result<(), ImageError> {
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |e: std::io::Error| ImageError::io(format!("cannot write `{what}`"), e)
    };
    let dirs: &[(&str, u32)] = &[
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("usr/lib", 0o755),
        ("usr/lib/vocc", 0o755),
        ("lib", 0o755),
        ("lib/vocc", 0o755),
        ("usr/share", 0o755),
        ("usr/share/udhcpc", 0o755),
        ("etc", 0o755),
        ("etc/init.d", 0o755),
        ("etc/network", 0o755),
        ("etc/network/if-pre-up.d", 0o755),
        ("etc/network/if-up.d", 0o755),
        ("etc/network/if-down.d", 0o755),
        ("etc/network/if-post-down.d", 0o755),
        ("etc/vocc", 0o755),
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("home", 0o755),
        ("mnt", 0o755),
        ("srv", 0o755),
        ("opt", 0o755),
        ("var", 0o755),
        ("var/lib", 0o755),
        ("var/lib/nfs", 0o755),
        ("var/log", 0o755),
        ("var/spool", 0o755),
        ("var/tmp", 0o1777),
    ];
    for (d, mode) in dirs {
        let p = root.join(d);
        fs::create_dir_all(&p).map_err(io(&p))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).map_err(io(&p))?;
    }
    let bin = root.join("bin/busybox");
    fs::copy(&busybox.path, &bin).map_err(io(&bin))?;
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).map_err(io(&bin))?;
    let var_run = root.join("var/run");
    symlink("../run", &var_run).map_err(io(&var_run))?;

    // One link per applet, where busybox says it belongs (`bin/sh`, `sbin/init`, ...).
    let list = tools::Run::new(BUSYBOX, "busybox")
        .arg("--list-full")
        .output()?;
    for applet in String::from_utf8_lossy(&list)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let rel = applet.trim_start_matches('/');
        if rel == "bin/busybox" || rel.contains("..") {
            continue;
        }
        let link = root.join(rel);
        if link.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        symlink("/bin/busybox", &link).map_err(io(&link))?;
    }

    let files: &[(&str, &str, u32)] = &[
        ("etc/inittab", super::BOOT_INITTAB, 0o644),
        ("etc/init.d/rcS", super::BOOT_RCS, 0o755),
        ("usr/share/udhcpc/default.script", super::BOOT_UDHCPC, 0o755),
        ("usr/lib/vocc/hook.sh", super::BOOT_HOOK, 0o755),
        ("lib/vocc/vocc-agent", super::GUEST_AGENT, 0o755),
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            0o644,
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644),
        (
            "etc/shadow",
            "root:*:0:0:99999:7:::\nnobody:*:0:0:99999:7:::\n",
            0o600,
        ),
        ("etc/hostname", "localhost\n", 0o644),
        ("etc/hosts", "127.0.0.1\tlocalhost\n", 0o644),
        ("etc/fstab", "# written at boot by the vocc hook\n", 0o644),
        (
            "etc/network/interfaces",
            "auto lo\niface lo inet loopback\n",
            0o644,
        ),
        ("etc/netconfig", NETCONFIG, 0o644),
        ("etc/exports", "", 0o644),
    ];
    for (rel, text, mode) in files {
        let p = root.join(rel);
        fs::write(&p, text).map_err(io(&p))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).map_err(io(&p))?;
    }
    for f in extra {
        let p = root.join(f.dest.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        fs::copy(&f.path, &p).map_err(io(&p))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).map_err(io(&p))?;
    }
    Ok(())
}

/// libtirpc's transport table, which the NFS server tools read.
const NETCONFIG: &str = "\
udp        tpi_clts      v     inet     udp     -       -
tcp        tpi_cots_ord  v     inet     tcp     -       -
udp6       tpi_clts      v     inet6    udp     -       -
tcp6       tpi_cots_ord  v     inet6    tcp     -       -
local      tpi_cots_ord  -     loopback -       -       -
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_library_paths() {
        let text = "/usr/sbin/rpc.nfsd:\n\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            libraries(text),
            [
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
    }

    #[test]
    fn interpreter_is_found_in_program_headers() {
        // A 64-bit ELF header with two program headers at 0x40, the second PT_INTERP.
        let mut elf = vec![0u8; 0x40 + 2 * 56];
        elf[..5].copy_from_slice(b"\x7fELF\x02");
        elf[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        elf[0x40..0x44].copy_from_slice(&1u32.to_le_bytes());
        assert!(!has_interpreter(&elf));
        elf[0x40 + 56..0x40 + 60].copy_from_slice(&3u32.to_le_bytes());
        assert!(has_interpreter(&elf));
        assert!(!has_interpreter(b"#!/bin/sh"));
    }
}
