//! Images: the read-only layers a site boots, each node's copy-on-write overlay and
//! config drive, built into a content-addressed store and placed in the output tree.
//!
//! # Layers
//!
//! A layer is a read-only file system image (ext4, or a pinned raw/qcow2 image) in the
//! store ([`store`]), named by the sha256 of its bytes and found again by the sha256
//! of its canonical recipe: source, packages, size, builder version, kernel package,
//! the busybox binary and the boot scripts it carries. The same recipe gives the same
//! bytes ([`ext4`] explains how), so two clean builds in two stores agree.
//!
//! Stacking: a role's root is **one** layer image. `root os` uses the layer `os`;
//! `root os + [pkgs]` (or `root os + extra`, with `extra` a `dir` layer copied on top)
//! is a derived recipe — the same builder, the union of the packages, the stacked
//! trees — built and cached on its own, placed as `layers/<cluster>/os+<role>.img`,
//! listed in the plan as layer `<cluster>/os+<role>` and named by the nodes'
//! `root_image`. Read-only data disks (`disk vdt at /opt/vdt`) are separate layers
//! attached as extra disks. To serve every node from one image, an appliance puts
//! every role's packages in the shared layer (the boot hook enables each node's own
//! services and disables the others before PID 1 starts).
//!
//! Sources: `busybox` ([`busybox`]), `debian` ([`debian`]), `dir` (the tree owned by
//! root, each file with its own permission bits less set-id bits and group and other
//! write; a tree with a file others may not read makes a layer only its owner may
//! read), `image` (the file as it is, verified against its pinned sha256). The
//! checker has already refused sources outside the appliance's tree
//! ([`crate::sources`]); here a `dir` is again required to be a real directory of
//! files, directories and links, and files are opened as regular files only. Every root vocc builds boots with Debian's kernel and vocc's
//! initramfs ([`kernel`]), whose `/init` runs the boot hook (`templates/boot/`).
//!
//! # The output tree
//!
//! ```text
//! OUT/layers/<cluster>/<layer>.img      → STORE/objects/<sha256>  (symbolic link)
//! OUT/layers/<cluster>/<layer>.vmlinuz  → the kernel, for root layers
//! OUT/layers/<cluster>/<layer>.initrd   → the vocc initramfs, for root layers
//! OUT/nodes/<node>/root.qcow2           qcow2 overlay, backing file
//!                                       `../../layers/<cluster>/<layer>.img` (raw)
//! OUT/nodes/<node>/<layer>.qcow2        overlay of a writable data disk (`disk … rw`)
//! OUT/nodes/<node>/swap.img             sparse raw disk; the hook runs mkswap on it
//! OUT/nodes/<node>/cidata.img           ISO 9660 config drive, label `cidata`
//! ```
//!
//! Node files are hard links to store objects (read-only templates: the runtime makes
//! its own writable copies), copied where the store is on another file system. The
//! overlays' backing paths are relative, so the tree keeps working when moved, and a
//! host store with the same shape (`<store>/layers/...`, `<store>/nodes/<node>/...`)
//! resolves them without `qemu-img rebase`. A root overlay is the same for every node
//! of a role, so the store holds it once.
//!
//! # Booting a node (qemu, direct kernel boot)
//!
//! ```text
//! qemu-system-x86_64 -machine q35 -accel tcg,tb-size=128 -cpu max -smp 1 -m 256 \
//!   -nodefaults -no-user-config -display none -serial file:console.log \
//!   -kernel OUT/layers/<c>/<l>.vmlinuz -initrd OUT/layers/<c>/<l>.initrd \
//!   -append "console=ttyS0 root=/dev/vda rw net.ifnames=0 vocc.node=<id>" \
//!   -drive file=<copy of root.qcow2>,format=qcow2,if=virtio \
//!   [-drive file=OUT/layers/<c>/<data>.img,format=raw,if=virtio,readonly=on]... \
//!   [-drive file=<copy of swap.img>,format=raw,if=virtio] \
//!   -drive file=OUT/nodes/<id>/cidata.img,format=raw,if=virtio,readonly=on \
//!   -netdev socket,id=n0,mcast=230.0.0.1:PORT,localaddr=127.0.0.1 \
//!   -device virtio-net-pci,netdev=n0,mac=<the node's MAC>
//! ```
//!
//! Disks go in the order the rendered fstab assumes (root, data disks in role order,
//! swap, config drive last); the initramfs finds the config drive as the last disk
//! with an ISO 9660 file system holding `vocc/node.env`, so it needs no serial number
//! or label. `root=` may say `xvda` (a Xen cluster's command line): the initramfs
//! takes `vda` when `xvda` does not exist, and renames fstab's disks the same way. The
//! console shows `vocc: configured <id>` when the hook has applied the drive and
//! `vocc: ready <id>` when the node is up; `vocc: boot failed: <why>` if it cannot boot.

mod busybox;
mod cpio;
mod debian;
mod drive;
mod ext4;
mod kernel;
mod nodes;
mod progress;
mod store;
mod tools;

pub use progress::Progress;
pub use store::{default_dir, gc, GcReport};

/// The sha256 of a source file (a pinned image) for the checker, remembered in the
/// default store's hash cache when that store exists (a check creates no store).
pub fn hash_source_file(path: &Path) -> io::Result<String> {
    let memo = default_dir().join("cache/hash");
    store::memo_hash(memo.is_dir().then_some(memo.as_path()), path)
}

use crate::model::{Layer, LayerSource, Model};
use crate::output::{Manifest, ManifestImage};
use crate::render::Rendered;
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use store::{sha256_hex, Entry, Output, Store};
use vocc_runtime::plan::{Action, FileSum, PlanLayer, StageItem, State, Step};
use vocc_runtime::Plan;

/// Versions of the builders; a change of what a builder makes bumps its version, so
/// that old cache entries are not taken for new ones.
pub const LAYER_BUILDER: &str = "vocc-layer/6";
pub const BOOT_BUILDER: &str = "vocc-boot/2";
pub const NODE_BUILDER: &str = "vocc-node/1";

/// The initramfs `/init`.
pub const BOOT_INIT: &str = include_str!("../../../templates/boot/init");
/// The boot hook, run by `/init`; also installed in every layer as
/// `/usr/lib/vocc/hook.sh`.
pub const BOOT_HOOK: &str = include_str!("../../../templates/boot/hook.sh");
/// The busybox layer's `/etc/init.d/rcS`, `/etc/inittab` and udhcpc script.
pub const BOOT_RCS: &str = include_str!("../../../templates/boot/rcS");
pub const BOOT_INITTAB: &str = include_str!("../../../templates/boot/inittab");
pub const BOOT_UDHCPC: &str = include_str!("../../../templates/boot/udhcpc.script");
/// Debian layers: the unit that prints the readiness marker (see [`ready_unit`]), and
/// the one that runs the runtime's command agent on the second serial port.
pub const BOOT_READY_UNIT: &str = include_str!("../../../templates/boot/vocc-ready.service");
pub const BOOT_AGENT_UNIT: &str = include_str!("../../../templates/boot/vocc-agent.service");
pub const BOOT_BATCH_SETUP_UNIT: &str =
    include_str!("../../../templates/boot/vocc-batch-setup.service");
pub const BOOT_BATCH_CONFIGURE_UNIT: &str =
    include_str!("../../../templates/boot/vocc-batch-configure.service");
/// What `vocc-ready.service` runs: waits for the node's NFS mounts, prints the marker.
pub const BOOT_READY_SCRIPT: &str = include_str!("../../../templates/boot/vocc-ready");
/// The guest side of `vocc exec` (the runtime's), installed as `/lib/vocc/vocc-agent`.
pub const GUEST_AGENT: &str = vocc_runtime::agent::GUEST_SCRIPT;

/// `vocc-ready.service` as a layer carries it: [`BOOT_READY_UNIT`], ordered after every
/// batch daemon as well ([`crate::scheduler::ready_after`]), below its
/// `After=nfs-server.service`.
pub fn ready_unit() -> String {
    ordered(BOOT_READY_UNIT, "After=nfs-server.service", "After")
}

/// `vocc-batch-setup.service` as a layer carries it: before every batch system's daemons.
pub fn batch_setup_unit() -> String {
    ordered(BOOT_BATCH_SETUP_UNIT, "Before=multi-user.target", "Before")
}

/// `vocc-batch-configure.service` as a layer carries it: after every batch system's
/// daemons.
pub fn batch_configure_unit() -> String {
    ordered(
        BOOT_BATCH_CONFIGURE_UNIT,
        "After=network-online.target",
        "After",
    )
}

/// `unit` with a `KEY=` line per batch system (the units of its daemons) after the
/// line `at`.
fn ordered(unit: &str, at: &str, key: &str) -> String {
    let mut out = String::with_capacity(unit.len() + 512);
    for line in unit.lines() {
        out.push_str(line);
        out.push('\n');
        if line == at {
            for units in crate::scheduler::ready_after() {
                out.push_str(&format!("{key}={units}\n"));
            }
        }
    }
    out
}

/// The sha256 of every script a layer or initramfs carries (part of their recipes).
pub fn scripts_hash() -> String {
    let ready = ready_unit();
    let (setup, configure) = (batch_setup_unit(), batch_configure_unit());
    let all = [
        &setup,
        &configure,
        BOOT_INIT,
        BOOT_HOOK,
        BOOT_RCS,
        BOOT_INITTAB,
        BOOT_UDHCPC,
        &ready,
        BOOT_AGENT_UNIT,
        BOOT_READY_SCRIPT,
        GUEST_AGENT,
    ];
    sha256_hex(all.join("\0").as_bytes())
}

/// Why an image build failed. Each names the appliance line behind it where there is one.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("`{program}` is not installed: apt-get install {package} (or run scripts/setup)")]
    MissingTool {
        program: &'static str,
        package: &'static str,
    },
    #[error("{source_line}: `{command}` failed ({status}):\n{stderr}")]
    ToolFailed {
        command: String,
        status: String,
        stderr: String,
        source_line: String,
    },
    #[error("{source_line}: {message}")]
    Kernel {
        message: String,
        source_line: String,
    },
    #[error("{source_line}: {message}")]
    Debian {
        message: String,
        source_line: String,
    },
    #[error("{source_line}: {message}")]
    Layer {
        message: String,
        source_line: String,
    },
    #[error(
        "{source_line}: layer `{layer}` needs about {needed} bytes but its size is {size}: raise \
         its `size`"
    )]
    TooSmall {
        layer: String,
        size: u64,
        needed: u64,
        source_line: String,
    },
    #[error(
        "{source_line}: `{path}` has sha256 {actual}, but the layer pins {expected}: update the \
         `sha256` or use the right image"
    )]
    HashMismatch {
        path: String,
        expected: String,
        actual: String,
        source_line: String,
    },
    #[error("{what}: {err}")]
    Io { what: String, err: io::Error },
}

/// A build failure the appliance caused, told as a diagnostic would tell it.
pub struct InputProblem<'a> {
    /// `file:line:col` of the layer or role behind it.
    pub location: &'a str,
    pub message: String,
    pub hint: &'static str,
}

impl ImageError {
    /// The failure as the input's mistake, when it is one: a layer the builder cannot
    /// make, a pinned image whose bytes changed, a `size` too small for the tree. Not
    /// a missing tool, a failing program or the disk.
    pub fn input_problem(&self) -> Option<InputProblem<'_>> {
        match self {
            ImageError::Layer {
                message,
                source_line,
            } => Some(InputProblem {
                location: source_line,
                message: message.clone(),
                hint: "correct the layer; `vocc check` finds most such mistakes before a build",
            }),
            ImageError::TooSmall {
                size,
                needed,
                source_line,
                ..
            } => Some(InputProblem {
                location: source_line,
                message: format!(
                    "the layer needs about {} MiB, more than its `size` of {} MiB",
                    needed.div_ceil(1 << 20),
                    size >> 20
                ),
                hint: "raise the layer's `size`, or leave it out to size the layer to its tree",
            }),
            ImageError::HashMismatch {
                path,
                expected,
                actual,
                source_line,
            } => Some(InputProblem {
                location: source_line,
                message: format!(
                    "image `{path}` has sha256 `{actual}`, not the pinned `{expected}`"
                ),
                hint: "update the layer's `sha256` to the image's, or use the image it pins",
            }),
            _ => None,
        }
    }

    pub(crate) fn io(what: String, err: io::Error) -> ImageError {
        ImageError::Io { what, err }
    }

    fn layer(message: impl Into<String>, source: &str) -> ImageError {
        ImageError::Layer {
            message: message.into(),
            source_line: source.to_owned(),
        }
    }
}

/// What the caller chose.
pub struct ImageOptions {
    /// The content-addressed store (`--store`, else [`default_dir`]).
    pub store: PathBuf,
    /// The output tree (its previous manifest explains what changed).
    pub out: PathBuf,
    pub progress: Progress,
}

/// The images of a build, ready to be placed in the output tree by [`install`].
pub struct Images {
    store: PathBuf,
    placed: Vec<Placed>,
    /// How many artifacts this build made (the rest were cache hits).
    pub built: usize,
    pub hits: usize,
}

/// One artifact to place in OUT.
struct Placed {
    /// Symbolic link (layers, kernels) or hard link (node files) to the object.
    symlink: bool,
    image: ManifestImage,
}

/// Ties cache lookups, builds and progress together.
pub(crate) struct Builder<'a> {
    store: &'a Store,
    progress: &'a Progress,
    /// Recipe key → whether this build found it (`hit`) or made it (`built`).
    status: HashMap<String, &'static str>,
    kernel: Option<kernel::KernelPackage>,
}

impl Builder<'_> {
    /// The entry of `recipe` from the store, or built now by `build` in a fresh work
    /// directory, given the recipe key (it returns the outputs it put in the store).
    pub(crate) fn cached(
        &mut self,
        what: &str,
        recipe: serde_json::Value,
        caches: Vec<String>,
        source: &str,
        build: impl FnOnce(&mut Self, &Path, &str) -> Result<BTreeMap<String, Output>, ImageError>,
    ) -> Result<Entry, ImageError> {
        let key = sha256_hex(&serde_json::to_vec(&recipe).unwrap_or_default());
        if let Some(entry) = self.store.lookup(&key) {
            self.status.entry(key).or_insert("hit");
            self.progress.hit(what);
            return Ok(entry);
        }
        let task = self.progress.start(what);
        let work = self.store.work_dir()?;
        let result = build(self, work.path(), &key);
        task.done(result.is_ok());
        let _ = source;
        let entry = Entry {
            key: key.clone(),
            recipe,
            outputs: result?,
            caches,
        };
        self.store.record(&entry)?;
        self.status.insert(key, "built");
        Ok(entry)
    }

    fn kernel_package(&mut self, source: &str) -> Result<kernel::KernelPackage, ImageError> {
        if let Some(k) = &self.kernel {
            return Ok(k.clone());
        }
        let k = kernel::resolve(self.store, source)?;
        self.kernel = Some(k.clone());
        Ok(k)
    }
}

/// A root or data disk image to build: a model layer, or a role's derived root.
struct LayerJob<'m> {
    cluster: &'m str,
    /// The file stem under `layers/<cluster>/`, and the plan layer's name.
    name: String,
    base: &'m Layer,
    /// Layers stacked on the base (`root a + b`).
    stacked: Vec<&'m Layer>,
    /// The role's packages (`root a + [p q]`).
    packages: Vec<String>,
    source: String,
    /// Used as a root: it needs a kernel and initramfs.
    boots: bool,
    /// Not a layer of the model: the plan gets it added.
    derived: Option<String>,
}

/// A built layer.
struct BuiltLayer {
    image: Output,
    image_key: String,
    /// `raw` or `qcow2`.
    format: &'static str,
    /// Bytes the guest sees.
    virtual_size: u64,
    boot: Option<(Output, Output, String)>,
}

/// Builds (or finds in the store) every layer the model's roles use, every node's
/// overlays, swap disk and config drive, and records the layers' hashes, images and
/// kernels in `plan`. Nothing is placed in the output tree yet: [`install`] does that
/// once the tree is written.
pub fn build(
    model: &Model,
    plan: &mut Plan,
    rendered: &Rendered,
    options: &ImageOptions,
) -> Result<Images, ImageError> {
    for cluster in &model.clusters {
        for job in layer_jobs(cluster)? {
            packages_in_release(&job)?;
        }
    }
    let store = Store::open(&options.store)?;
    let previous = previous_keys(&options.out);
    let mut b = Builder {
        store: &store,
        progress: &options.progress,
        status: HashMap::new(),
        kernel: None,
    };
    let mut placed: Vec<Placed> = Vec::new();
    let mut built: HashMap<(String, String), BuiltLayer> = HashMap::new();

    for cluster in &model.clusters {
        for job in layer_jobs(cluster)? {
            let layer = build_layer(&mut b, &job)?;
            let id = format!("{}/{}", job.cluster, job.name);
            let stem = format!("layers/{}/{}", job.cluster, job.name);
            let mut add = |path: String, out: &Output, key: &str, kind: &str, format: &str| {
                placed.push(Placed {
                    symlink: true,
                    image: ManifestImage {
                        path,
                        sha256: out.sha256.clone(),
                        size: out.size,
                        kind: kind.into(),
                        format: format.into(),
                        cluster: job.cluster.to_owned(),
                        node: None,
                        layer: Some(id.clone()),
                        source: job.source.clone(),
                        recipe: key.to_owned(),
                        cache: String::new(),
                        reason: None,
                    },
                });
            };
            add(
                format!("{stem}.img"),
                &layer.image,
                &layer.image_key,
                "layer",
                layer.format,
            );
            if let Some((k, i, key)) = &layer.boot {
                add(format!("{stem}.vmlinuz"), k, key, "kernel", "bzimage");
                add(format!("{stem}.initrd"), i, key, "initrd", "cpio");
            }
            update_plan_layer(plan, &job, &layer);
            built.insert((job.cluster.to_owned(), job.name.clone()), layer);
        }
    }
    prune_staging(plan);

    placed.extend(nodes::build(&mut b, model, plan, rendered, &built)?);

    let mut images = Images {
        store: store.root().to_path_buf(),
        placed,
        built: 0,
        hits: 0,
    };
    for p in &mut images.placed {
        let status = b.status.get(&p.image.recipe).copied().unwrap_or("hit");
        p.image.cache = status.to_owned();
        p.image.reason = reason(&store, previous.get(&p.image.path), &p.image.recipe, status);
    }
    images.built = images
        .placed
        .iter()
        .filter(|p| p.image.cache == "built")
        .count();
    images.hits = images.placed.len() - images.built;
    Ok(images)
}

/// Refuses a Debian layer with a package its release does not have, when this
/// machine has the release's index: before anything is built, not minutes into
/// mmdebstrap.
fn packages_in_release(job: &LayerJob) -> Result<(), ImageError> {
    let LayerSource::Debian { suite } = &job.base.source else {
        return Ok(());
    };
    let Some(index) = crate::packages::host_index(suite) else {
        return Ok(());
    };
    let missing: Vec<&str> = job
        .base
        .packages
        .iter()
        .chain(&job.packages)
        .filter(|p| !index.has(p))
        .map(|p| p.split('=').next().unwrap_or(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ImageError::layer(
        format!(
            "`{suite}` has no package {} (apt's lists on this machine)",
            missing
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        &job.source,
    ))
}

/// The jobs of a cluster's layers: each role's root (plain or derived) and each data
/// disk, once each.
fn layer_jobs(cluster: &crate::model::Cluster) -> Result<Vec<LayerJob<'_>>, ImageError> {
    let mut jobs: Vec<LayerJob<'_>> = Vec::new();
    let find = |name: &str, source: &str| {
        cluster
            .layer(name)
            .ok_or_else(|| ImageError::layer(format!("there is no layer `{name}`"), source))
    };
    fn add<'m>(jobs: &mut Vec<LayerJob<'m>>, job: LayerJob<'m>) -> Result<(), ImageError> {
        match jobs.iter_mut().find(|j| j.name == job.name) {
            Some(j) => j.boots |= job.boots,
            None => jobs.push(job),
        }
        Ok(())
    }
    for role in &cluster.roles {
        let source = role.origin.location.clone();
        let Some(bottom) = role.root.first() else {
            continue;
        };
        let base = find(bottom, &source)?;
        let stacked = role.root[1..]
            .iter()
            .map(|l| find(l, &source))
            .collect::<Result<Vec<_>, _>>()?;
        let derived = !stacked.is_empty() || !role.packages.is_empty();
        let mut packages = role.packages.clone();
        packages.sort();
        packages.dedup();
        add(
            &mut jobs,
            LayerJob {
                cluster: &cluster.name,
                name: if derived {
                    format!("{bottom}+{}", role.name)
                } else {
                    bottom.clone()
                },
                base,
                stacked,
                derived: derived.then(|| {
                    let mut text = role.root.join(" + ");
                    if !packages.is_empty() {
                        text.push_str(&format!(" + [{}]", packages.join(" ")));
                    }
                    text
                }),
                packages,
                source: if derived {
                    source.clone()
                } else {
                    base.origin.location.clone()
                },
                boots: true,
            },
        )?;
        for d in &role.disks {
            let layer = find(&d.layer, &d.origin.location)?;
            add(
                &mut jobs,
                LayerJob {
                    cluster: &cluster.name,
                    name: d.layer.clone(),
                    base: layer,
                    stacked: Vec::new(),
                    packages: Vec::new(),
                    source: layer.origin.location.clone(),
                    boots: false,
                    derived: None,
                },
            )?;
        }
    }
    Ok(jobs)
}

/// A `from dir` tree, looked at before it is copied.
struct Tree {
    path: PathBuf,
    /// The content hash: names, kinds, permission bits, link targets and contents,
    /// in sorted order.
    hash: String,
    /// Some file in it is not readable by others: the layer is kept private too.
    private: bool,
}

/// Reads the directory tree `dir` of a `from dir` layer. It must be a real directory
/// (not a symbolic link to one) holding only files, directories and symbolic links
/// (which are copied as links, never followed): a FIFO or a device would block or
/// never end.
fn read_tree(dir: &Path, source: &str) -> Result<Tree, ImageError> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::PermissionsExt;
    let top = dir
        .symlink_metadata()
        .map_err(|e| ImageError::layer(format!("cannot read `{}`: {e}", dir.display()), source))?;
    if !top.is_dir() {
        return Err(ImageError::layer(
            format!(
                "`{}` is {}, not a directory",
                dir.display(),
                crate::sources::Kind::of(&top).describe()
            ),
            source,
        ));
    }
    let mut h = Sha256::new();
    let mut private = false;
    for e in walkdir::WalkDir::new(dir).sort_by_file_name().min_depth(1) {
        let e =
            e.map_err(|e| ImageError::io(format!("cannot read `{}`", dir.display()), e.into()))?;
        let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update([0]);
        let meta = e
            .path()
            .symlink_metadata()
            .map_err(|err| ImageError::io(format!("cannot read `{}`", e.path().display()), err))?;
        let mode = layer_mode(&meta);
        if meta.is_dir() {
            h.update(format!("d{mode:o}"));
        } else if meta.is_symlink() {
            h.update(b"l");
            let t = fs::read_link(e.path()).unwrap_or_default();
            h.update(t.as_os_str().as_encoded_bytes());
        } else if meta.is_file() {
            private |= meta.permissions().mode() & 0o004 == 0;
            h.update(format!("f{mode:o}"));
            let file = crate::sources::open_regular(e.path()).map_err(|err| {
                ImageError::io(format!("cannot read `{}`", e.path().display()), err)
            })?;
            h.update(store::hash_reader(file).map_err(|err| {
                ImageError::io(format!("cannot read `{}`", e.path().display()), err)
            })?);
        } else {
            return Err(ImageError::layer(
                format!(
                    "`{}` holds `{}`, which is {}: a layer holds only files, directories and \
                     symbolic links",
                    dir.display(),
                    rel.display(),
                    crate::sources::Kind::of(&meta).describe()
                ),
                source,
            ));
        }
        h.update([0]);
    }
    Ok(Tree {
        path: dir.to_path_buf(),
        hash: crate::render::hex(&h.finalize().into()),
        private,
    })
}

/// The permission bits a copied file or directory gets in a layer: its own, less
/// set-id and sticky bits and write permission for group and others (a tree copied
/// from a user's directory becomes root's), so that a file only its owner could read
/// stays so. Directories keep the owner's access.
fn layer_mode(meta: &fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o755;
    if meta.is_dir() {
        mode | 0o700
    } else {
        mode
    }
}

/// Builds or finds one layer (and, for roots, its kernel and initramfs).
fn build_layer(b: &mut Builder, job: &LayerJob) -> Result<BuiltLayer, ImageError> {
    let source = job.source.as_str();
    let what = format!("layer {}/{}", job.cluster, job.name);
    let mut stacked_dirs = Vec::new();
    for l in &job.stacked {
        match &l.source {
            LayerSource::Dir { path } => {
                stacked_dirs.push(read_tree(&crate::sources::layer_path(l, path), source)?);
            }
            _ => {
                return Err(ImageError::layer(
                    format!(
                        "only `dir` layers can be stacked on a root, and `{}` is not one: \
                         put its packages in the bottom layer or the role's `+ [...]`",
                        l.name
                    ),
                    source,
                ))
            }
        }
        if !l.packages.is_empty() && !matches!(job.base.source, LayerSource::Debian { .. }) {
            return Err(ImageError::layer(
                format!("layer `{}` has packages but the root is not Debian", l.name),
                source,
            ));
        }
    }
    let mut packages: Vec<String> = job.base.packages.clone();
    packages.extend(job.stacked.iter().flat_map(|l| l.packages.iter().cloned()));
    packages.extend(job.packages.iter().cloned());
    packages.sort();
    packages.dedup();
    let dirs: Vec<&str> = stacked_dirs.iter().map(|t| t.hash.as_str()).collect();
    let private = stacked_dirs.iter().any(|t| t.private);
    let size = job.base.size;

    let (entry, format) = match &job.base.source {
        LayerSource::Busybox => {
            if !packages.is_empty() {
                return Err(ImageError::layer(
                    format!(
                        "a busybox layer takes no packages ({}): use a `debian` layer",
                        packages.join(" ")
                    ),
                    source,
                ));
            }
            let bb = busybox::host_busybox(b.store, source)?;
            let extra = busybox::nfs_tools(b.store, source)?;
            let host_files: Vec<[&str; 2]> = extra
                .iter()
                .map(|f| [f.dest.as_str(), f.sha256.as_str()])
                .collect();
            let recipe = serde_json::json!({
                "builder": LAYER_BUILDER, "kind": "busybox", "busybox": bb.sha256,
                "host_files": host_files,
                "scripts": scripts_hash(), "size": size.unwrap_or(crate::plan::DEFAULT_BUSYBOX_SIZE),
                "dirs": dirs,
            });
            let e = b.cached(&what, recipe, vec![], source, |b, work, key| {
                let root = work.join("root");
                busybox::stage(&root, &bb, &extra)?;
                overlay_dirs(&root, &stacked_dirs)?;
                ext4_layer(
                    b,
                    work,
                    key,
                    &root,
                    FsParams {
                        size: Some(size.unwrap_or(crate::plan::DEFAULT_BUSYBOX_SIZE)),
                        root_owned: true,
                        private,
                    },
                    source,
                )
            })?;
            (e, "raw")
        }
        LayerSource::Debian { suite } => {
            let kernel = b.kernel_package(source)?;
            let sources = debian::sources_for(suite, source)?;
            let recipe = serde_json::json!({
                "builder": LAYER_BUILDER, "kind": "debian", "suite": suite,
                "sources": sha256_hex(sources.as_bytes()), "packages": packages,
                "base": debian::BASE_PACKAGES, "kernel": kernel.id(), "scripts": scripts_hash(),
                "debconf": crate::scheduler::debconf(),
                "size": size, "dirs": dirs,
            });
            let suite = suite.clone();
            let e = b.cached(
                &what,
                recipe,
                vec![kernel.cache_ref()],
                source,
                |b, work, key| {
                    let tree = kernel::fetch(b.store, &kernel, source)?;
                    let root = work.join("root");
                    debian::stage(&root, work, &suite, &packages, &sources, source)?;
                    kernel::install_modules(&tree, &root, source)?;
                    debian::finish(&root)?;
                    overlay_dirs(&root, &stacked_dirs)?;
                    ext4_layer(
                        b,
                        work,
                        key,
                        &root,
                        FsParams {
                            size,
                            root_owned: false,
                            private,
                        },
                        source,
                    )
                },
            )?;
            (e, "raw")
        }
        LayerSource::Dir { path } => {
            if !packages.is_empty() {
                return Err(ImageError::layer("a `dir` layer takes no packages", source));
            }
            let tree = read_tree(&crate::sources::layer_path(job.base, path), source)?;
            let private = private || tree.private;
            let dir = tree.path;
            let recipe = serde_json::json!({
                "builder": LAYER_BUILDER, "kind": "dir", "tree": tree.hash,
                "size": size, "dirs": dirs, "boots": job.boots,
                "scripts": if job.boots { Some(scripts_hash()) } else { None },
            });
            let boots = job.boots;
            let e = b.cached(&what, recipe, vec![], source, |b, work, key| {
                let root = work.join("root");
                copy_tree(&dir, &root)?;
                overlay_dirs(&root, &stacked_dirs)?;
                fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                    .map_err(|e| {
                        ImageError::io(format!("cannot prepare `{}`", root.display()), e)
                    })?;
                if boots {
                    let p = root.join("usr/lib/vocc");
                    fs::create_dir_all(&p)
                        .and_then(|_| fs::write(p.join("hook.sh"), BOOT_HOOK))
                        .map_err(|e| ImageError::io("cannot add the hook".into(), e))?;
                }
                ext4_layer(
                    b,
                    work,
                    key,
                    &root,
                    FsParams {
                        size,
                        root_owned: true,
                        private,
                    },
                    source,
                )
            })?;
            (e, "raw")
        }
        LayerSource::Image { path, sha256 } => {
            if !packages.is_empty() || !dirs.is_empty() {
                return Err(ImageError::layer(
                    "an `image` layer takes no packages and nothing stacked on it",
                    source,
                ));
            }
            let file = crate::sources::layer_path(job.base, path);
            let actual = b.store.hash_host_file(&file)?;
            if !actual.eq_ignore_ascii_case(sha256) {
                return Err(ImageError::HashMismatch {
                    path: file.display().to_string(),
                    expected: sha256.to_lowercase(),
                    actual,
                    source_line: source.to_owned(),
                });
            }
            let recipe =
                serde_json::json!({ "builder": LAYER_BUILDER, "kind": "image", "sha256": actual });
            let e = b.cached(&what, recipe, vec![], source, |b, work, _| {
                use std::os::unix::fs::PermissionsExt;
                let copy = work.join("image");
                let cannot = |e| ImageError::io(format!("cannot copy `{}`", file.display()), e);
                let mut src = crate::sources::open_regular(&file).map_err(cannot)?;
                // An image only its owner may read stays so in the store.
                let mode = match src.metadata().map_err(cannot)?.permissions().mode() & 0o004 {
                    0 => 0o400,
                    _ => 0o444,
                };
                let mut dst = fs::File::create(&copy).map_err(cannot)?;
                io::copy(&mut src, &mut dst).map_err(cannot)?;
                Ok([("image".to_owned(), b.store.insert(&copy, mode)?)].into())
            })?;
            let fmt = if read_magic(&b.store.object(&e.outputs["image"].sha256)) == *b"QFI\xfb" {
                "qcow2"
            } else {
                "raw"
            };
            (e, fmt)
        }
    };
    let image = entry
        .outputs
        .get("image")
        .cloned()
        .ok_or_else(|| ImageError::layer("the store entry has no image", source))?;
    let virtual_size = if format == "qcow2" {
        qcow2_size(&b.store.object(&image.sha256)).unwrap_or(image.size)
    } else {
        image.size
    };
    let boot = if job.boots && !matches!(job.base.source, LayerSource::Image { .. }) {
        let k = b.kernel_package(source)?;
        let e = kernel::boot_files(b, &k, source)?;
        let (kern, initrd) = kernel::outputs(&e)
            .ok_or_else(|| ImageError::layer("the store entry has no kernel", source))?;
        Some((kern.clone(), initrd.clone(), e.key.clone()))
    } else {
        None
    };
    Ok(BuiltLayer {
        image,
        image_key: entry.key,
        format,
        virtual_size,
        boot,
    })
}

/// How a layer's file system is made: its size, whether every file belongs to root,
/// and whether its object is readable by its owner only (it holds a file that is).
struct FsParams {
    size: Option<u64>,
    root_owned: bool,
    private: bool,
}

fn ext4_layer(
    b: &mut Builder,
    work: &Path,
    key: &str,
    root: &Path,
    fs: FsParams,
    source: &str,
) -> Result<BTreeMap<String, Output>, ImageError> {
    let image = work.join("layer.img");
    ext4::make(&ext4::Ext4 {
        tree: root,
        image: &image,
        size: fs.size,
        seed: key,
        // From the recipe, not the layer's name: one recipe may serve layers of
        // several names (`os` in one appliance, `os+head` in another).
        label: &format!("vocc-{}", &key[..key.len().min(11)]),
        root_owned: fs.root_owned,
        source,
    })?;
    let mode = if fs.private { 0o400 } else { 0o444 };
    Ok([("image".to_owned(), b.store.insert(&image, mode)?)].into())
}

/// Copies each tree over `root`, in order (later trees win).
fn overlay_dirs(root: &Path, dirs: &[Tree]) -> Result<(), ImageError> {
    for t in dirs {
        copy_tree(&t.path, root)?;
    }
    Ok(())
}

/// Copies the tree `from` into `to` (files, directories, symbolic links; nothing
/// else, and links are never followed), each with its [`layer_mode`].
fn copy_tree(from: &Path, to: &Path) -> Result<(), ImageError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    for e in walkdir::WalkDir::new(from).sort_by_file_name() {
        let e =
            e.map_err(|e| ImageError::io(format!("cannot read `{}`", from.display()), e.into()))?;
        let rel = e.path().strip_prefix(from).unwrap_or(e.path());
        let dest = to.join(rel);
        let io =
            |err: io::Error| ImageError::io(format!("cannot copy to `{}`", dest.display()), err);
        let meta = e.path().symlink_metadata().map_err(io)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            fs::create_dir_all(&dest).map_err(io)?;
            if e.depth() > 0 {
                fs::set_permissions(&dest, fs::Permissions::from_mode(layer_mode(&meta)))
                    .map_err(io)?;
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(e.path()).map_err(io)?;
            let _ = fs::remove_file(&dest);
            std::os::unix::fs::symlink(target, &dest).map_err(io)?;
        } else if ft.is_file() {
            let _ = fs::remove_file(&dest);
            let mut src = crate::sources::open_regular(e.path()).map_err(io)?;
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&dest)
                .map_err(io)?;
            io::copy(&mut src, &mut out).map_err(io)?;
            out.set_permissions(fs::Permissions::from_mode(layer_mode(&meta)))
                .map_err(io)?;
        }
    }
    Ok(())
}

fn read_magic(path: &Path) -> [u8; 4] {
    use std::io::Read;
    let mut m = [0u8; 4];
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_exact(&mut m);
    }
    m
}

/// The virtual size in a qcow2 header (bytes 24..32, big-endian).
fn qcow2_size(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut h = [0u8; 32];
    fs::File::open(path).ok()?.read_exact(&mut h).ok()?;
    Some(u64::from_be_bytes(h[24..32].try_into().ok()?))
}

/// Records a built layer in the plan: its hash, image and kernel, and for a derived
/// root a new layer with its staging (each host that runs a node of the role).
fn update_plan_layer(plan: &mut Plan, job: &LayerJob, layer: &BuiltLayer) {
    let id = format!("{}/{}", job.cluster, job.name);
    let stem = format!("layers/{}/{}", job.cluster, job.name);
    let sum = |o: &Output| FileSum {
        sha256: o.sha256.clone(),
        bytes: o.size,
    };
    let fill = |l: &mut PlanLayer| {
        l.sha256 = Some(layer.image.sha256.clone());
        l.image = Some(format!("{stem}.img"));
        l.format = layer.format.parse().ok();
        l.sums.insert("img".into(), sum(&layer.image));
        if let Some((kernel, initrd, _)) = &layer.boot {
            l.kernel = Some(format!("{stem}.vmlinuz"));
            l.initrd = Some(format!("{stem}.initrd"));
            l.sums.insert("vmlinuz".into(), sum(kernel));
            l.sums.insert("initrd".into(), sum(initrd));
        }
    };
    if let Some(l) = plan.layers.iter_mut().find(|l| l.id == id) {
        fill(l);
    } else if let Some(text) = &job.derived {
        let mut l = PlanLayer {
            id: id.clone(),
            cluster: job.cluster.to_owned(),
            name: job.name.clone(),
            source: format!("derived {text}"),
            size: job.base.size,
            sha256: None,
            image: None,
            format: None,
            kernel: None,
            initrd: None,
            sums: Default::default(),
        };
        fill(&mut l);
        plan.layers.push(l);
    }
    if !job.boots {
        return;
    }
    let role_of = |name: &str| {
        job.derived
            .as_ref()
            .map(|_| name.rsplit('+').next().unwrap_or(name).to_owned())
    };
    let role = role_of(&job.name);
    let mut hosts: Vec<(String, String)> = Vec::new();
    for n in plan.nodes.iter_mut().filter(|n| n.cluster == job.cluster) {
        let mine = match &role {
            Some(r) => &n.role == r,
            None => n.root.len() == 1 && n.root_image.is_none() && n.root.first() == Some(&id),
        };
        if mine {
            n.root_image = Some(id.clone());
            if job.derived.is_some() {
                hosts.push((n.host.clone(), n.id.clone()));
            }
        }
    }
    for (host, node) in hosts {
        let stage = format!("stage:{host}:{id}");
        if !plan.staging.iter().any(|s| s.host == host && s.layer == id) {
            plan.staging.push(StageItem {
                host: host.clone(),
                layer: id.clone(),
            });
            let at = plan
                .steps
                .iter()
                .rposition(|s| matches!(s.action, Action::Stage { .. }))
                .map_or(0, |i| i + 1);
            plan.steps.insert(
                at,
                Step {
                    id: stage.clone(),
                    action: Action::Stage {
                        host: host.clone(),
                        layer: id.clone(),
                    },
                    after: Vec::new(),
                    reaches: State::Staged,
                },
            );
        }
        if let Some(load) = plan
            .steps
            .iter_mut()
            .find(|s| s.id == format!("load:{node}"))
        {
            if !load.after.contains(&stage) {
                load.after.push(stage);
            }
        }
    }
}

/// Drops the staging of layers no node boots from or attaches once the images exist:
/// a layer that every role using it extends with packages is built only as part of
/// the roles' derived images, so it has no image of its own to stage.
fn prune_staging(plan: &mut Plan) {
    let needed = |layer: &str| {
        plan.nodes.iter().any(|n| {
            let root = match &n.root_image {
                Some(image) => image == layer,
                None => n.root.iter().any(|l| l == layer),
            };
            root || n.disks.iter().any(|d| d.layer == layer)
        })
    };
    let unused: Vec<String> = plan
        .steps
        .iter()
        .filter(|s| matches!(&s.action, Action::Stage { layer, .. } if !needed(layer)))
        .map(|s| s.id.clone())
        .collect();
    if unused.is_empty() {
        return;
    }
    let kept: Vec<(String, String)> = plan
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Stage { host, layer } if !unused.contains(&s.id) => {
                Some((host.clone(), layer.clone()))
            }
            _ => None,
        })
        .collect();
    plan.steps.retain(|s| !unused.contains(&s.id));
    for s in &mut plan.steps {
        s.after.retain(|a| !unused.contains(a));
    }
    plan.staging
        .retain(|i| kept.iter().any(|(h, l)| *h == i.host && *l == i.layer));
}

/// The recipe keys of the previous build of `out`, by path (from its manifest).
fn previous_keys(out: &Path) -> HashMap<String, String> {
    let Ok(bytes) = fs::read(out.join("manifest.json")) else {
        return HashMap::new();
    };
    let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) else {
        return HashMap::new();
    };
    m.images.into_iter().map(|i| (i.path, i.recipe)).collect()
}

/// Why an artifact was built, or what changed since the previous build.
fn reason(store: &Store, previous: Option<&String>, key: &str, status: &str) -> Option<String> {
    match previous {
        Some(old) if old == key => (status == "built").then(|| "not in the store".to_owned()),
        Some(old) => {
            let new = store.entry(key)?;
            Some(match store.entry(old) {
                Some(o) => format!("changed: {}", explain(&o.recipe, &new.recipe)),
                None => "the recipe changed".to_owned(),
            })
        }
        None => (status == "built").then(|| "new".to_owned()),
    }
}

/// What differs between two recipes, briefly: `packages +slurmctld`, `files etc/hosts`.
fn explain(old: &serde_json::Value, new: &serde_json::Value) -> String {
    use serde_json::Value;
    let (Some(o), Some(n)) = (old.as_object(), new.as_object()) else {
        return "the recipe".into();
    };
    let mut parts = Vec::new();
    let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let (a, b) = (
            o.get(k).unwrap_or(&Value::Null),
            n.get(k).unwrap_or(&Value::Null),
        );
        if a == b {
            continue;
        }
        match (a, b) {
            (Value::Array(x), Value::Array(y)) => {
                let name = |v: &Value| match v.get("path").and_then(Value::as_str) {
                    Some(p) => p.to_owned(),
                    None => v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                };
                let added: Vec<String> = y.iter().filter(|v| !x.contains(v)).map(name).collect();
                let removed: Vec<String> = x.iter().filter(|v| !y.contains(v)).map(name).collect();
                let mut changed: Vec<String> = Vec::new();
                for a in &added {
                    changed.push(if removed.contains(a) {
                        format!("~{a}")
                    } else {
                        format!("+{a}")
                    });
                }
                changed.extend(
                    removed
                        .iter()
                        .filter(|r| !added.contains(r))
                        .map(|r| format!("-{r}")),
                );
                parts.push(format!("{k} {}", changed.join(" ")));
            }
            _ => parts.push(k.to_string()),
        }
    }
    parts.join("; ")
}

/// Places the artifacts in the tree `out` (staged by [`crate::output::stage_tree`],
/// which wrote `nodes/`), removes layers no longer built, registers the output
/// directory `root` with the store for `vocc gc`, and writes the manifest with its
/// `images`.
pub fn install(
    images: &Images,
    out: &Path,
    root: &Path,
    manifest: &mut Manifest,
) -> Result<(), ImageError> {
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |e: io::Error| ImageError::io(format!("cannot place `{what}`"), e)
    };
    let mut wanted = std::collections::HashSet::new();
    for p in &images.placed {
        let dest = out.join(&p.image.path);
        wanted.insert(dest.clone());
        let object = images.store.join("objects").join(&p.image.sha256);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        // A link is replaced the way a file is: made under a temporary name of
        // `vocc_runtime::atomic` (which a later sweep recognises), renamed, the
        // directory synced.
        let tmp = vocc_runtime::atomic::temporary(&dest);
        if p.symlink {
            if fs::read_link(&dest).ok().as_deref() == Some(object.as_path()) {
                continue;
            }
            std::os::unix::fs::symlink(&object, &tmp).map_err(io(&tmp))?;
        } else if fs::hard_link(&object, &tmp).is_err() {
            copy_sparse(&object, &tmp).map_err(io(&tmp))?;
        }
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_file(&tmp);
            return Err(io(&dest)(e));
        }
        if let Some(parent) = dest.parent() {
            vocc_runtime::atomic::sync_dir(parent).map_err(io(parent))?;
        }
    }
    // Layers of an earlier build that this one does not have.
    let layers = out.join("layers");
    if let Ok(clusters) = fs::read_dir(&layers) {
        for c in clusters.flatten() {
            for f in fs::read_dir(c.path()).into_iter().flatten().flatten() {
                if !wanted.contains(&f.path()) {
                    fs::remove_file(f.path()).map_err(io(&f.path()))?;
                }
            }
            let _ = fs::remove_dir(c.path());
        }
    }
    let store = Store::open(&images.store)?;
    store.register_root(root)?;
    manifest.images = images.placed.iter().map(|p| p.image.clone()).collect();
    manifest.images.sort_by(|a, b| a.path.cmp(&b.path));
    manifest.write(out).map_err(io(&out.join("manifest.json")))
}

/// Copies a file, leaving holes where it has zeros in whole 64 KiB blocks.
fn copy_sparse(from: &Path, to: &Path) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut src = fs::File::open(from)?;
    let mut dst = fs::File::create(to)?;
    let len = src.metadata()?.len();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().all(|&b| b == 0) {
            dst.seek(SeekFrom::Current(n as i64))?;
        } else {
            dst.write_all(&buf[..n])?;
        }
    }
    dst.set_len(len)?;
    dst.sync_all()
}
