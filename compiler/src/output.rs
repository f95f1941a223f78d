//! The output tree: rendered files written once each into a content-addressed object
//! store and hard-linked into every node's directory, with the plan and a manifest.
//!
//! ```text
//! OUT/objects/<sha256>          each distinct content once (0600 secrets, 0644 files)
//! OUT/nodes/<node>/files/...    the guest's files (etc/hosts, etc/fstab, ...): hard links
//! OUT/nodes/<node>/cidata/...   cloud-init NoCloud meta-data, user-data, network-config
//! OUT/nodes/<node>/cmdline      the kernel command line
//! OUT/nodes/<node>/xen.cfg      or libvirt.xml: the domain configuration
//! OUT/plan.json                 the plan
//! OUT/manifest.json             every file written: path, sha256, size, kind, owner, source
//! ```
//!
//! Hard links keep the output linear in the cluster size: a cluster-wide file such as
//! /etc/hosts grows with the cluster, and a copy per node would make the tree grow
//! with its square. Where a file system refuses another link to one inode (ext4 stops
//! at 65,000), the node gets a copy instead.
//!
//! Invariants: the tree depends only on what is written, never on what was there
//! before or on when (no timestamps; sorted manifest; stale objects and node
//! directories are removed). A name under `objects/` always holds its whole content:
//! objects are written to a temporary name and renamed. The node directories are
//! built beside the old ones and swapped in with two renames, so a killed build
//! leaves the previous nodes in place. Nothing is synced to disk: the atomicity is
//! against a killed process, not a power cut. One build writes to an OUT at a time.

use crate::render::{hex, Digest, Object, Rendered};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use vocc_runtime::Plan;

/// The version of the manifest format.
pub const MANIFEST_VERSION: u32 = 1;

/// A file the caller wants written into the tree besides the rendered ones (a model
/// dump, a report): at `path` relative to OUT, atomically, and listed in the manifest.
#[derive(Debug, Clone)]
pub struct ExtraFile {
    pub path: String,
    pub bytes: Vec<u8>,
    pub kind: String,
    pub cluster: Option<String>,
    pub source: String,
}

/// One object of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestObject {
    pub sha256: String,
    pub size: u64,
    /// Octal permission bits, `0644`.
    pub mode: String,
}

/// One file of the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Relative to OUT.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// The template that made it, `munge.key`, `plan`, or an extra file's kind.
    pub kind: String,
    /// `node`, `role` or `cluster` for rendered files, `plan` for the plan.
    pub scope: String,
    pub cluster: Option<String>,
    pub node: Option<String>,
    /// `file:line:col` of the appliance statement that produced the file.
    pub source: String,
}

/// One image artifact of the tree (a layer, a kernel, a node's overlay or config
/// drive), written by [`crate::image`]: where it is, what it is, whose it is, and
/// whether this build made it or found it in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestImage {
    /// Relative to OUT: `layers/<cluster>/<layer>.img`, `nodes/<node>/root.qcow2`.
    pub path: String,
    pub sha256: String,
    /// Bytes (the apparent size of sparse images).
    pub size: u64,
    /// `layer`, `kernel`, `initrd`, `overlay`, `data-overlay`, `swap`, `config-drive`.
    pub kind: String,
    /// `raw`, `qcow2`, `iso9660`, `bzimage`, `cpio`.
    pub format: String,
    pub cluster: String,
    /// The node it belongs to (node artifacts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The layer id it is, or that it is backed by (`<cluster>/<layer>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// `file:line:col` of the appliance statement behind it.
    pub source: String,
    /// The sha256 of its canonical recipe (the store's index key).
    pub recipe: String,
    /// `hit` (found in the store) or `built` (made by this build).
    pub cache: String,
    /// What changed since the previous build of this tree, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `OUT/manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub objects: Vec<ManifestObject>,
    pub files: Vec<ManifestFile>,
    /// The image artifacts, when images were built (absent for `--config-only`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ManifestImage>,
}

impl Manifest {
    /// The manifest as JSON with one object or file per line (a diff of two builds
    /// then shows one line per changed file), ending in a newline.
    pub fn to_json(&self) -> String {
        fn list<T: Serialize + Sync>(out: &mut String, name: &str, items: &[T], last: bool) {
            let lines: Vec<String> = items
                .par_iter()
                .map(|item| serde_json::to_string(item).unwrap_or_default())
                .collect();
            out.push_str("  \"");
            out.push_str(name);
            out.push_str("\": [\n");
            for (i, line) in lines.iter().enumerate() {
                out.push_str("    ");
                out.push_str(line);
                out.push_str(if i + 1 < lines.len() { ",\n" } else { "\n" });
            }
            out.push_str(if last { "  ]\n" } else { "  ],\n" });
        }
        let mut out = String::with_capacity(200 * (self.objects.len() + self.files.len()));
        out.push_str(&format!("{{\n  \"version\": {},\n", self.version));
        list(&mut out, "objects", &self.objects, false);
        list(&mut out, "files", &self.files, self.images.is_empty());
        if !self.images.is_empty() {
            list(&mut out, "images", &self.images, true);
        }
        out.push_str("}\n");
        out
    }

    /// Writes the manifest as `OUT/manifest.json`, atomically.
    pub fn write(&self, out: &Path) -> io::Result<()> {
        write_atomic(&out.join("manifest.json"), self.to_json().as_bytes())
    }
}

/// Writes the rendered files of every node of `plan`, the plan and `extra` under
/// `out`, replacing what an earlier build left there, and returns the manifest (also
/// written as `OUT/manifest.json`).
pub fn write_tree(
    out: &Path,
    rendered: &Rendered,
    plan: &Plan,
    extra: &[ExtraFile],
) -> io::Result<Manifest> {
    let dirs: HashMap<&str, &str> = plan
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n.dir.as_str()))
        .collect();
    let mut nodes = Vec::with_capacity(rendered.nodes.len());
    for n in &rendered.nodes {
        let Some(dir) = dirs.get(n.id.as_str()) else {
            return Err(invalid(format!(
                "node `{}` was rendered but is not in the plan",
                n.id
            )));
        };
        nodes.push((node_name(dir)?, n));
    }
    nodes.sort_by(|a, b| a.0.cmp(b.0));
    if let Some(w) = nodes.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(invalid(format!(
            "two nodes have the directory `nodes/{}`",
            w[0].0
        )));
    }

    fs::create_dir_all(out)?;
    let objects = out.join("objects");
    fs::create_dir_all(&objects)?;
    let staging = out.join(".nodes.new");
    let old = out.join(".nodes.old");
    remove_all(&staging)?;
    remove_all(&old)?;

    // The objects: each referenced content once. Content used by one file only (most
    // node files) is written in the node's directory and then linked under its hash,
    // which saves a rename per file; the object's name still appears only once its
    // content is complete.
    let mut uses: HashMap<&Digest, u32> = HashMap::new();
    for (_, n) in &nodes {
        for f in n.files() {
            *uses.entry(&f.digest).or_default() += 1;
        }
    }
    let present: HashSet<String> = fs::read_dir(&objects)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let mut wanted: Vec<(&Digest, &Object, String)> =
        uses.keys()
            .map(|d| {
                let object = rendered.objects.get(*d).ok_or_else(|| {
                    invalid(format!("object {} is missing from the store", hex(d)))
                })?;
                Ok((*d, object, hex(d)))
            })
            .collect::<io::Result<_>>()?;
    wanted.par_sort_unstable_by(|a, b| a.0.cmp(b.0));
    let fix_modes = umask_interferes(&objects)?;
    // Objects a node writes itself: used once, and not kept from an earlier build.
    let written_by_node: HashSet<&Digest> = wanted
        .iter()
        .filter(|(d, _, name)| uses[d] == 1 && !present.contains(name))
        .map(|(d, _, _)| *d)
        .collect();
    wanted
        .par_iter()
        .filter(|(d, _, name)| !present.contains(name) && !written_by_node.contains(d))
        .try_for_each(|(_, object, name)| write_object(&objects, name, object, fix_modes))?;

    // The node directories, built aside and swapped in.
    fs::create_dir(&staging)?;
    nodes.par_iter().try_for_each(|(name, node)| {
        let dir = staging.join(name);
        let mut parents = BTreeSet::new();
        for f in node.files() {
            let mut p = Path::new(&f.path);
            while let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
                if !parents.insert(parent) {
                    break;
                }
                p = parent;
            }
        }
        fs::create_dir(&dir)?;
        for p in &parents {
            fs::create_dir(dir.join(p))?;
        }
        for f in node.files() {
            let to = dir.join(&f.path);
            let object = objects.join(hex(&f.digest));
            if written_by_node.contains(&f.digest) {
                let o = &rendered.objects[&f.digest];
                create(&to, &o.bytes, o.mode, fix_modes)?;
                fs::hard_link(&to, &object)?;
            } else {
                link(&object, &to, &rendered.objects[&f.digest], fix_modes)?;
            }
        }
        Ok::<(), io::Error>(())
    })?;
    let current = out.join("nodes");
    let had_nodes = current.exists();
    if had_nodes {
        fs::rename(&current, &old)?;
    }
    fs::rename(&staging, &current)?;
    if had_nodes {
        let children: Vec<PathBuf> = fs::read_dir(&old)?
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()?;
        children.par_iter().try_for_each(|c| remove_all(c))?;
        remove_all(&old)?;
    }

    // Objects no node refers to any more (and leftovers of killed builds).
    let keep: HashSet<&str> = wanted.iter().map(|(_, _, n)| n.as_str()).collect();
    present
        .par_iter()
        .filter(|n| !keep.contains(n.as_str()))
        .try_for_each(|n| match fs::remove_file(objects.join(n)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })?;

    // The plan, the extra files and the manifest.
    let mut plan_json = serde_json::to_string_pretty(plan).map_err(io::Error::other)?;
    plan_json.push('\n');
    write_atomic(&out.join("plan.json"), plan_json.as_bytes())?;
    for e in extra {
        let rel = safe_relative(&e.path)?;
        if let Some(parent) = rel.parent() {
            fs::create_dir_all(out.join(parent))?;
        }
        write_atomic(&out.join(rel), &e.bytes)?;
    }

    let manifest = manifest(&nodes, &wanted, plan_json.as_bytes(), plan, extra);
    write_atomic(&out.join("manifest.json"), manifest.to_json().as_bytes())?;
    Ok(manifest)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// The `<node>` of a plan's `nodes/<node>` directory.
fn node_name(dir: &str) -> io::Result<&str> {
    match dir.trim_end_matches('/').split_once('/') {
        Some(("nodes", name))
            if !name.is_empty() && !name.contains('/') && name != "." && name != ".." =>
        {
            Ok(name)
        }
        _ => Err(invalid(format!(
            "node directory `{dir}` is not `nodes/<node>`"
        ))),
    }
}

/// `path` if it is relative and stays inside the tree.
fn safe_relative(path: &str) -> io::Result<&Path> {
    let p = Path::new(path);
    if p.components().all(|c| matches!(c, Component::Normal(_))) && !path.is_empty() {
        Ok(p)
    } else {
        Err(invalid(format!(
            "`{path}` is not a relative path inside the output"
        )))
    }
}

fn remove_all(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether the process umask would strip bits of the modes objects need (0644), so
/// that every object needs its mode set explicitly; checked once with a probe file.
fn umask_interferes(dir: &Path) -> io::Result<bool> {
    let probe = dir.join(format!(".probe.{}", std::process::id()));
    let _ = fs::remove_file(&probe);
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&probe)?;
    let mode = f.metadata()?.permissions().mode() & 0o777;
    drop(f);
    fs::remove_file(&probe)?;
    Ok(mode != 0o644)
}

fn create(path: &Path, bytes: &[u8], mode: u32, fix_mode: bool) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    if fix_mode {
        f.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    f.write_all(bytes)
}

fn write_object(objects: &Path, name: &str, object: &Object, fix_mode: bool) -> io::Result<()> {
    let tmp = objects.join(format!(".tmp.{name}.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    create(&tmp, &object.bytes, object.mode, fix_mode)?;
    fs::rename(&tmp, objects.join(name))
}

/// Links `object` (whose content is `content`) to `to`, or copies it where the object
/// has as many links as the file system allows.
fn link(object: &Path, to: &Path, content: &Object, fix_mode: bool) -> io::Result<()> {
    match fs::hard_link(object, to) {
        Err(e) if e.raw_os_error() == Some(libc::EMLINK) => {
            create(to, &content.bytes, content.mode, fix_mode)
        }
        other => other,
    }
}

/// Writes `path` through a temporary file in the same directory and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp: PathBuf = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    create(&tmp, bytes, 0o644, true)?;
    fs::rename(&tmp, path)
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    hex(&Sha256::digest(bytes).into())
}

fn manifest(
    nodes: &[(&str, &crate::render::NodeOutput)],
    objects: &[(&Digest, &Object, String)],
    plan_json: &[u8],
    plan: &Plan,
    extra: &[ExtraFile],
) -> Manifest {
    let sizes: HashMap<&Digest, u64> = objects
        .iter()
        .map(|(d, o, _)| (*d, o.bytes.len() as u64))
        .collect();
    let mut files: Vec<ManifestFile> = nodes
        .par_iter()
        .flat_map_iter(|(name, node)| {
            let sizes = &sizes;
            node.files().map(move |f| ManifestFile {
                path: format!("nodes/{name}/{}", f.path),
                sha256: hex(&f.digest),
                size: sizes.get(&f.digest).copied().unwrap_or(0),
                kind: f.kind.to_owned(),
                scope: f.scope.as_str().to_owned(),
                cluster: Some(node.cluster.clone()),
                node: Some(node.id.clone()),
                source: f.source.to_string(),
            })
        })
        .collect();
    files.push(ManifestFile {
        path: "plan.json".into(),
        sha256: sha256(plan_json),
        size: plan_json.len() as u64,
        kind: "plan".into(),
        scope: "plan".into(),
        cluster: None,
        node: None,
        source: format!("site `{}`", plan.site),
    });
    for e in extra {
        files.push(ManifestFile {
            path: e.path.clone(),
            sha256: sha256(&e.bytes),
            size: e.bytes.len() as u64,
            kind: e.kind.clone(),
            scope: "extra".into(),
            cluster: e.cluster.clone(),
            node: None,
            source: e.source.clone(),
        });
    }
    files.par_sort_unstable_by(|a, b| a.path.cmp(&b.path));
    let objects = objects
        .iter()
        .map(|(_, o, name)| ManifestObject {
            sha256: name.clone(),
            size: o.bytes.len() as u64,
            mode: format!("{:04o}", o.mode),
        })
        .collect();
    Manifest {
        version: MANIFEST_VERSION,
        objects,
        files,
        images: Vec::new(),
    }
}
