//! The kernel every layer vocc builds boots with, and the vocc initramfs.
//!
//! The kernel is Debian's (`linux-image-amd64`, resolved to the versioned package the
//! host's apt would install): its package is fetched with `apt-get download` and
//! unpacked with `dpkg-deb -x` into the store's kernel cache, once per version; the
//! host gets no kernel installed. The initramfs is vocc's own for every layer kind: the
//! host's static busybox, the vocc `/init` and hook (`templates/boot/`), and only the
//! modules a node needs to mount its disks and reach its network ([`MODULES`] and
//! what they depend on), written by [`super::cpio`] so that it is reproducible. A
//! Debian layer gets the same kernel's modules (less hardware drivers a virtual
//! machine has no use for) so that its userland can load more.

use super::cpio;
use super::store::{Entry, Output, Store};
use super::tools::{self, Run, APT_CACHE, APT_GET, DEPMOD, DPKG_DEB};
use super::{Builder, ImageError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The metapackage whose dependency names the kernel package.
pub const KERNEL_META: &str = "linux-image-amd64";

/// The modules of the initramfs that every boot loads, in order with their dependencies
/// first: the virtio and Xen disk and network drivers, ext4 (root, data disks) and its
/// checksum, ISO 9660 (the config drive).
pub const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_net",
    "xen-blkfront",
    "xen-netfront",
    "crc32c_generic",
    "crc32c-intel",
    "ext4",
    "isofs",
];

/// Modules the initramfs also carries for roots without a module tree of their own
/// (busybox layers): overlayfs, and the NFS client and server. `/init` loads them only
/// for such a root; a Debian root loads what it uses itself, when it uses it (under
/// emulation, loading the NFS modules costs seconds of every boot).
pub const EXTRA_MODULES: &[&str] = &["overlay", "nfsv4", "nfsd"];

/// Module trees a Debian layer does without: hardware a virtual machine does not have,
/// and what udev would load for the emulated machine's chipset and CPU features (AHCI,
/// its watchdog, frequency scaling, nested KVM, accelerated ciphers) at a cost of
/// seconds of an emulated boot and no use to a cluster node. The initramfs takes its
/// own modules from the whole tree.
pub const DROPPED_MODULE_DIRS: &[&str] = &[
    "kernel/drivers/gpu",
    "kernel/drivers/media",
    "kernel/drivers/net/wireless",
    "kernel/drivers/net/ethernet",
    "kernel/drivers/infiniband",
    "kernel/drivers/staging",
    "kernel/drivers/iio",
    "kernel/drivers/usb",
    "kernel/drivers/bluetooth",
    "kernel/drivers/hid",
    "kernel/drivers/input",
    "kernel/drivers/isdn",
    "kernel/drivers/scsi",
    "kernel/drivers/mtd",
    "kernel/drivers/hwmon",
    "kernel/drivers/ata",
    "kernel/drivers/watchdog",
    "kernel/drivers/cpufreq",
    "kernel/drivers/edac",
    "kernel/arch/x86/kvm",
    "kernel/arch/x86/crypto",
    "kernel/drivers/platform",
    "kernel/drivers/nfc",
    "kernel/drivers/thunderbolt",
    "kernel/sound",
    "kernel/net/wireless",
    "kernel/net/mac80211",
    "kernel/net/bluetooth",
];

/// The kernel package a build uses: name and version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelPackage {
    pub package: String,
    pub version: String,
}

impl KernelPackage {
    /// `linux-image-6.1.0-56-amd64=6.1.192-2`, the form recipes and apt take.
    pub fn id(&self) -> String {
        format!("{}={}", self.package, self.version)
    }

    /// The store's name for its cache entry (kept by `vocc gc` while used).
    pub fn cache_ref(&self) -> String {
        format!("kernel/{}", self.cache_name())
    }

    fn cache_name(&self) -> String {
        format!("{}_{}", self.package, self.version.replace([':', '/'], "+"))
    }
}

/// An unpacked kernel package in the cache.
#[derive(Debug, Clone)]
pub struct KernelTree {
    /// The unpacked package (`boot/`, `lib/modules/<release>/`).
    pub dir: PathBuf,
    /// The kernel release, `6.1.0-56-amd64`.
    pub release: String,
}

impl KernelTree {
    pub fn vmlinuz(&self) -> PathBuf {
        self.dir
            .join("boot")
            .join(format!("vmlinuz-{}", self.release))
    }

    pub fn modules(&self) -> PathBuf {
        self.dir.join("lib/modules").join(&self.release)
    }
}

/// Which kernel package `apt` would install now, remembered until the host's package
/// lists change (resolving costs an `apt-cache` run, too slow for a no-op rebuild).
pub fn resolve(store: &Store, source: &str) -> Result<KernelPackage, ImageError> {
    #[derive(Serialize, Deserialize)]
    struct Memo {
        lists: (i64, i64),
        package: KernelPackage,
    }
    let lists = fs::metadata("/var/lib/apt/lists")
        .map(|m| (m.mtime(), m.mtime_nsec()))
        .unwrap_or((0, 0));
    let memo_path = store.kernel_cache().join("resolved.json");
    if let Some(m) = fs::read(&memo_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Memo>(&b).ok())
    {
        if m.lists == lists {
            return Ok(m.package);
        }
    }
    let text = Run::new(APT_CACHE, source)
        .args(["show", "--no-all-versions", KERNEL_META])
        .output()
        .map_err(|e| match e {
            ImageError::ToolFailed { .. } => ImageError::Kernel {
                message: format!(
                    "apt knows no `{KERNEL_META}`: run `apt-get update` (scripts/setup does)"
                ),
                source_line: source.to_owned(),
            },
            e => e,
        })?;
    let text = String::from_utf8_lossy(&text);
    let package = parse_depends(&text).ok_or_else(|| ImageError::Kernel {
        message: format!("cannot tell which kernel `{KERNEL_META}` depends on"),
        source_line: source.to_owned(),
    })?;
    if let Ok(b) = serde_json::to_vec(&Memo {
        lists,
        package: package.clone(),
    }) {
        let _ = vocc_runtime::atomic::write(&memo_path, &b, 0o644);
    }
    Ok(package)
}

/// The versioned kernel package in `apt-cache show linux-image-amd64` output:
/// `Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)`.
fn parse_depends(text: &str) -> Option<KernelPackage> {
    let deps = text.lines().find_map(|l| l.strip_prefix("Depends:"))?;
    deps.split(',').find_map(|d| {
        let d = d.trim();
        let (name, rest) = d.split_once(' ')?;
        let version = rest.trim().strip_prefix("(=")?.strip_suffix(')')?.trim();
        name.starts_with("linux-image-").then(|| KernelPackage {
            package: name.to_owned(),
            version: version.to_owned(),
        })
    })
}

/// The unpacked kernel package, fetching and unpacking it into the cache if needed.
pub fn fetch(
    store: &Store,
    package: &KernelPackage,
    source: &str,
) -> Result<KernelTree, ImageError> {
    let dir = store.kernel_cache().join(package.cache_name());
    if !dir.join("lib/modules").is_dir() {
        let work = store.work_dir()?;
        Run::new(APT_GET, source)
            .args(["download", "-q", "--", &package.id()])
            .dir(work.path())
            .run()
            .map_err(|e| kernel_error(e, package, source))?;
        let deb = fs::read_dir(work.path())
            .ok()
            .and_then(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .find(|p| p.extension().is_some_and(|x| x == "deb"))
            })
            .ok_or_else(|| ImageError::Kernel {
                message: format!("`apt-get download {}` left no package", package.id()),
                source_line: source.to_owned(),
            })?;
        let unpacked = work.path().join("x");
        Run::new(DPKG_DEB, source)
            .arg("-x")
            .arg("--")
            .arg(&deb)
            .arg(&unpacked)
            .run()?;
        let release = release_of(&unpacked, package, source)?;
        Run::new(DEPMOD, source)
            .arg("-b")
            .arg(&unpacked)
            .arg("--")
            .arg(&release)
            .run()?;
        let _ = fs::remove_file(&deb);
        // Another build may have filled the cache meanwhile: then theirs is as good.
        if let Err(e) = fs::rename(&unpacked, &dir) {
            if !dir.join("lib/modules").is_dir() {
                return Err(ImageError::io(
                    format!("cannot fill `{}`", dir.display()),
                    e,
                ));
            }
        }
    }
    let release = release_of(&dir, package, source)?;
    Ok(KernelTree { dir, release })
}

fn kernel_error(e: ImageError, package: &KernelPackage, source: &str) -> ImageError {
    match e {
        ImageError::ToolFailed { stderr, .. } => ImageError::Kernel {
            message: format!(
                "cannot download the kernel package `{}`: {stderr}\n(run `apt-get update`, as \
                 scripts/setup does)",
                package.id()
            ),
            source_line: source.to_owned(),
        },
        e => e,
    }
}

fn release_of(dir: &Path, package: &KernelPackage, source: &str) -> Result<String, ImageError> {
    let modules = dir.join("lib/modules");
    let mut releases: Vec<String> = fs::read_dir(&modules)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    releases.sort();
    match releases.as_slice() {
        [one] if dir.join("boot").join(format!("vmlinuz-{one}")).is_file() => Ok(one.clone()),
        _ => Err(ImageError::Kernel {
            message: format!(
                "the package `{}` has no single kernel and module tree",
                package.id()
            ),
            source_line: source.to_owned(),
        }),
    }
}

/// The module files (relative to the release's module directory) to load for `wanted`,
/// each after everything it depends on (modules.dep and the softdeps vocc knows).
/// Modules this kernel does not have as files (built in, or absent) are skipped.
pub fn module_closure(tree: &KernelTree, wanted: &[&str]) -> Result<Vec<String>, ImageError> {
    let dep_file = tree.modules().join("modules.dep");
    let text = fs::read_to_string(&dep_file)
        .map_err(|e| ImageError::io(format!("cannot read `{}`", dep_file.display()), e))?;
    let mut deps: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut by_name: HashMap<String, &str> = HashMap::new();
    for line in text.lines() {
        let Some((module, rest)) = line.split_once(':') else {
            continue;
        };
        deps.insert(module, rest.split_whitespace().collect());
        by_name.insert(module_name(module), module);
    }
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    fn visit<'a>(
        m: &'a str,
        deps: &HashMap<&'a str, Vec<&'a str>>,
        seen: &mut HashSet<&'a str>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(m) {
            return;
        }
        // modules.dep lists a module's dependencies so that the last is loaded first.
        for d in deps.get(m).into_iter().flatten().rev() {
            visit(d, deps, seen, order);
        }
        order.push(m.to_owned());
    }
    for w in wanted {
        if let Some(m) = by_name.get(&w.replace('-', "_")) {
            visit(m, &deps, &mut seen, &mut order);
        }
    }
    Ok(order)
}

/// `kernel/fs/ext4/ext4.ko` → `ext4`; dashes become underscores, as the kernel does.
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// The initramfs of `tree`: busybox, /init, the hook, and the modules of [`MODULES`].
pub fn initramfs(tree: &KernelTree, busybox: &[u8]) -> Result<Vec<u8>, ImageError> {
    use cpio::Entry as E;
    let mut entries = Vec::new();
    for d in [
        "/bin",
        "/dev",
        "/etc",
        "/etc/vocc",
        "/lib",
        "/lib/vocc",
        "/lib/modules",
        "/proc",
        "/sys",
        "/root",
        "/cfg",
        "/tmp",
        "/run",
    ] {
        entries.push(E::Dir {
            path: d.into(),
            mode: 0o755,
        });
    }
    entries.push(E::File {
        path: "/bin/busybox".into(),
        mode: 0o755,
        data: busybox.to_vec(),
    });
    entries.push(E::Symlink {
        path: "/bin/sh".into(),
        target: "busybox".into(),
    });
    entries.push(E::CharDev {
        path: "/dev/console".into(),
        mode: 0o600,
        major: 5,
        minor: 1,
    });
    entries.push(E::File {
        path: "/init".into(),
        mode: 0o755,
        data: super::BOOT_INIT.as_bytes().to_vec(),
    });
    entries.push(E::File {
        path: "/lib/vocc/hook.sh".into(),
        mode: 0o755,
        data: super::BOOT_HOOK.as_bytes().to_vec(),
    });
    let modules = module_closure(tree, MODULES)?;
    let extra: Vec<String> = module_closure(tree, &[MODULES, EXTRA_MODULES].concat())?
        .into_iter()
        .filter(|m| !modules.contains(m))
        .collect();
    let mut dirs = std::collections::BTreeSet::new();
    let mut lists = [String::new(), String::new()];
    for (m, which) in modules
        .iter()
        .map(|m| (m, 0))
        .chain(extra.iter().map(|m| (m, 1)))
    {
        let list = &mut lists[which];
        let rel = format!("{}/{m}", tree.release);
        let mut p = Path::new(&rel).parent();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(format!("/lib/modules/{}", d.display()));
            p = d.parent();
        }
        let src = tree.modules().join(m);
        let data = fs::read(&src)
            .map_err(|e| ImageError::io(format!("cannot read `{}`", src.display()), e))?;
        entries.push(E::File {
            path: format!("/lib/modules/{rel}"),
            mode: 0o644,
            data,
        });
        list.push_str(&rel);
        list.push('\n');
    }
    for d in dirs {
        entries.push(E::Dir {
            path: d,
            mode: 0o755,
        });
    }
    entries.push(E::File {
        path: "/etc/vocc/modules".into(),
        mode: 0o644,
        data: std::mem::take(&mut lists[0]).into_bytes(),
    });
    entries.push(E::File {
        path: "/etc/vocc/modules.extra".into(),
        mode: 0o644,
        data: std::mem::take(&mut lists[1]).into_bytes(),
    });
    Ok(cpio::archive(entries, tools::EPOCH as u32))
}

/// The kernel and initramfs of every root built with `package` and this busybox, from
/// the store or built now (fetching the kernel package if the cache lacks it).
/// Outputs `kernel` and `initrd`.
pub fn boot_files(
    b: &mut Builder,
    package: &KernelPackage,
    source: &str,
) -> Result<Entry, ImageError> {
    let busybox = super::busybox::host_busybox(b.store, source)?;
    let recipe = serde_json::json!({
        "builder": super::BOOT_BUILDER,
        "kernel": package.id(),
        "busybox": busybox.sha256,
        "scripts": super::scripts_hash(),
        "modules": MODULES,
        "extra_modules": EXTRA_MODULES,
    });
    let what = format!("kernel and initramfs ({})", package.package);
    b.cached(
        &what,
        recipe,
        vec![package.cache_ref()],
        source,
        |b, work, _| {
            let tree = fetch(b.store, package, source)?;
            let kernel = work.join("vmlinuz");
            fs::copy(tree.vmlinuz(), &kernel)
                .map_err(|e| ImageError::io("cannot copy the kernel".into(), e))?;
            let bytes = fs::read(&busybox.path).map_err(|e| {
                ImageError::io(format!("cannot read `{}`", busybox.path.display()), e)
            })?;
            let initrd = work.join("initrd");
            fs::write(&initrd, initramfs(&tree, &bytes)?)
                .map_err(|e| ImageError::io("cannot write the initramfs".into(), e))?;
            let mut outputs = BTreeMap::new();
            outputs.insert("kernel".to_owned(), b.store.insert(&kernel, 0o444)?);
            outputs.insert("initrd".to_owned(), b.store.insert(&initrd, 0o444)?);
            Ok(outputs)
        },
    )
}

/// Copies the module tree of `tree` into `root` (a Debian staging tree), less the
/// [`DROPPED_MODULE_DIRS`], and indexes it with depmod.
pub fn install_modules(tree: &KernelTree, root: &Path, source: &str) -> Result<(), ImageError> {
    let from = tree.modules();
    let to = root.join("lib/modules").join(&tree.release);
    for entry in walkdir::WalkDir::new(&from).sort_by_file_name() {
        let entry =
            entry.map_err(|e| ImageError::io("cannot read the kernel modules".into(), e.into()))?;
        let rel = entry.path().strip_prefix(&from).unwrap_or(entry.path());
        let rel_s = rel.to_string_lossy();
        if DROPPED_MODULE_DIRS
            .iter()
            .any(|d| rel_s == *d || rel_s.starts_with(&format!("{d}/")))
        {
            continue;
        }
        let dest = to.join(rel);
        let io =
            |e: std::io::Error| ImageError::io(format!("cannot write `{}`", dest.display()), e);
        if entry.file_type().is_dir() {
            fs::create_dir_all(&dest).map_err(io)?;
        } else if entry.file_type().is_file() {
            fs::copy(entry.path(), &dest).map_err(io)?;
        }
    }
    Run::new(DEPMOD, source)
        .arg("-b")
        .arg(root)
        .arg("--")
        .arg(&tree.release)
        .run()
}

/// What a built kernel entry gives the plan.
pub fn outputs(entry: &Entry) -> Option<(&Output, &Output)> {
    Some((entry.outputs.get("kernel")?, entry.outputs.get("initrd")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_line_names_the_versioned_package() {
        let text = "Package: linux-image-amd64\nVersion: 6.1.192-2\n\
                    Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)\n";
        assert_eq!(
            parse_depends(text),
            Some(KernelPackage {
                package: "linux-image-6.1.0-56-amd64".into(),
                version: "6.1.192-2".into()
            })
        );
        assert_eq!(parse_depends("Depends: foo\n"), None);
    }

    #[test]
    fn module_names_are_normalised() {
        assert_eq!(
            module_name("kernel/drivers/block/xen-blkfront.ko"),
            "xen_blkfront"
        );
        assert_eq!(module_name("kernel/fs/ext4/ext4.ko.xz"), "ext4");
    }

    #[test]
    fn dependencies_load_first() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("lib/modules/6.1.0-1-amd64");
        fs::create_dir_all(&m).unwrap();
        fs::write(
            m.join("modules.dep"),
            "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko\n\
             kernel/fs/jbd2/jbd2.ko:\nkernel/fs/mbcache.ko:\nkernel/lib/crc16.ko:\n",
        )
        .unwrap();
        let tree = KernelTree {
            dir: dir.path().to_path_buf(),
            release: "6.1.0-1-amd64".into(),
        };
        let order = module_closure(&tree, &["ext4", "absent"]).unwrap();
        assert_eq!(
            order,
            [
                "kernel/fs/jbd2/jbd2.ko",
                "kernel/fs/mbcache.ko",
                "kernel/lib/crc16.ko",
                "kernel/fs/ext4/ext4.ko"
            ]
        );
    }
}
