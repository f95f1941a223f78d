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
//! OUT/manifest.json             every file written: path, sha256, size, kind, node, source
//! ```
//!
//! Hard links keep the output linear in the cluster size: a cluster-wide file such as
//! /etc/hosts grows with the cluster, and a copy per node would make the tree grow
//! with its square. Where a file system refuses another link to one inode (ext4 stops
//! at 65,000), the node gets a copy instead.
//!
//! What a node costs is its metadata operations (a directory or a file made, a link),
//! so each is done once, and from the node's own directory rather than by walking
//! the whole path again (the `*at` system calls). A content that only one file has
//! (most node files) is created in place with one open and one write, then linked
//! under its hash; a content that several files share is written once under its hash
//! and linked into each node. Nodes are written in parallel, each in its own
//! directory, while the plan is serialized and the manifest's list is made.
//!
//! The manifest lists every file, but compactly (version 2): node files are grouped
//! per node, and the files that nodes share (those of their role and cluster) are
//! listed once per distinct set. One node per line, so that a diff of two builds
//! shows one line per changed node:
//!
//! ```text
//! {
//!   "version": 2,
//!   "files": [ files outside nodes/: path, sha256, size, kind, scope, cluster, node, source ],
//!   "shared": [
//!     [{"path":"files/etc/hosts","sha256":…,"size":…,"kind":"hosts","scope":"cluster","source":…}, …]
//!   ],
//!   "nodes": [
//!     {"dir":"nodes/osg-head","node":"osg-head","cluster":"osg","source":…,"shared":0,
//!      "files":[{"path":"cmdline","sha256":…,"size":…,"kind":"cmdline"}, …]}
//!   ],
//!   "objects": [ objects no file has: sha256, size, mode (normally absent) ],
//!   "images": [ the image artifacts (absent for --config-only) ]
//! }
//! ```
//!
//! A node file's path is relative to its node's `dir`; its scope is `node` unless
//! given, its source the node's unless given, and its mode (its object's) `0644`
//! unless given. Every object is the content of some node file, so the file entries
//! list the objects too. [`Manifest`] is the expanded form: every object and every
//! file one by one, as version 1 wrote them (which it still reads).
//!
//! Invariants: the tree depends only on what is written, never on what was there
//! before or on when (no timestamps; sorted manifest; stale objects and node
//! directories are removed). A name under `objects/` always holds its whole content:
//! objects are written under a temporary name and renamed, or written in a node's
//! directory and linked. The node directories are built beside the old ones and
//! swapped in with two renames, so a killed build leaves the previous nodes in
//! place. Nothing is synced to disk: the atomicity is against a killed process, not a
//! power cut. One build writes to an OUT at a time.

use crate::render::{hex, Digest, DigestMap, DigestState, NodeOutput, Object, Rendered};
use rayon::prelude::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::CStr;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use vocc_runtime::Plan;

/// The version of the manifest format.
pub const MANIFEST_VERSION: u32 = 2;

/// The mode of most objects, left out of the manifest's file entries.
const DEFAULT_MODE: &str = "0644";

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

/// `OUT/manifest.json`, expanded: every object and every file of the tree one by one.
/// On disk it has the compact form of the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub version: u32,
    pub objects: Vec<ManifestObject>,
    pub files: Vec<ManifestFile>,
    /// The image artifacts, when images were built (absent for `--config-only`).
    pub images: Vec<ManifestImage>,
}

impl Manifest {
    /// The manifest as JSON, in its compact form, with one file outside the nodes,
    /// shared file set or node per line, ending in a newline.
    pub fn to_json(&self) -> String {
        let json = Compact::of(self).pieces().concat();
        // serde_json writes only valid UTF-8.
        String::from_utf8(json).unwrap_or_default()
    }

    /// Writes the manifest as `OUT/manifest.json`, atomically.
    pub fn write(&self, out: &Path) -> io::Result<()> {
        let path = out.join("manifest.json");
        let tmp = temporary(&path);
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o644))?;
        for piece in Compact::of(self).pieces() {
            f.write_all(&piece)?;
        }
        drop(f);
        fs::rename(&tmp, &path)
    }
}

impl Serialize for Manifest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Compact::of(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Manifest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Manifest, D::Error> {
        Stored::deserialize(deserializer)?
            .expand()
            .map_err(serde::de::Error::custom)
    }
}

/// The compact form of a manifest, borrowed from the expanded one.
#[derive(Serialize)]
struct Compact<'a> {
    version: u32,
    files: Vec<&'a ManifestFile>,
    shared: Vec<Vec<Entry<'a>>>,
    nodes: Vec<NodeEntry<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    objects: Vec<&'a ManifestObject>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    images: &'a [ManifestImage],
}

/// A node and its own files.
#[derive(Serialize)]
struct NodeEntry<'a> {
    dir: &'a str,
    node: &'a str,
    cluster: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    /// The index of its set of shared files.
    #[serde(skip_serializing_if = "Option::is_none")]
    shared: Option<usize>,
    files: Vec<Entry<'a>>,
}

/// A file of a node, relative to the node's directory.
#[derive(Serialize, Clone, Copy, PartialEq, Eq, Hash)]
struct Entry<'a> {
    path: &'a str,
    sha256: &'a str,
    size: u64,
    #[serde(skip_serializing_if = "is_default_mode")]
    mode: &'a str,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
}

fn is_default_mode(mode: &&str) -> bool {
    *mode == DEFAULT_MODE
}

/// The node directory (`nodes/<name>`), the path in it and the node of a node file.
fn in_node_dir(f: &ManifestFile) -> Option<(&str, &str, &str)> {
    let node = f.node.as_deref()?;
    let rest = f.path.strip_prefix("nodes/")?;
    let (name, rel) = rest.split_once('/')?;
    if name.is_empty() || rel.is_empty() {
        return None;
    }
    Some((&f.path[.."nodes/".len() + name.len()], rel, node))
}

impl<'a> Compact<'a> {
    fn of(m: &'a Manifest) -> Compact<'a> {
        let (grouped, objects) = rayon::join(|| Compact::group(m), || unused_objects(m));
        Compact { objects, ..grouped }
    }

    /// The compact form, but for the objects no file has.
    fn group(m: &'a Manifest) -> Compact<'a> {
        // Few objects have another mode than 0644 (secrets, scripts).
        let mut modes: Vec<(&str, &str)> = m
            .objects
            .iter()
            .filter(|o| o.mode != DEFAULT_MODE)
            .map(|o| (o.sha256.as_str(), o.mode.as_str()))
            .collect();
        modes.sort_unstable();
        let mode = |sha256: &str| match modes.binary_search_by(|(s, _)| (*s).cmp(sha256)) {
            Ok(i) => modes[i].1,
            Err(_) => DEFAULT_MODE,
        };

        // A node's files are consecutive: they are sorted by path and share a prefix.
        struct Run<'a> {
            dir: &'a str,
            node: &'a str,
            cluster: Option<&'a str>,
            files: Vec<(&'a str, &'a ManifestFile)>,
        }
        let mut files = Vec::new();
        let mut runs: Vec<Run<'a>> = Vec::new();
        for f in &m.files {
            let Some((dir, rel, node)) = in_node_dir(f) else {
                files.push(f);
                continue;
            };
            let cluster = f.cluster.as_deref();
            match runs.last_mut() {
                Some(r) if r.dir == dir && r.node == node && r.cluster == cluster => {
                    r.files.push((rel, f))
                }
                _ => runs.push(Run {
                    dir,
                    node,
                    cluster,
                    files: vec![(rel, f)],
                }),
            }
        }

        let split: Vec<(NodeEntry<'a>, Vec<Entry<'a>>)> = runs
            .into_par_iter()
            .map(|run| {
                let source = run
                    .files
                    .iter()
                    .find(|(_, f)| f.scope == "node")
                    .map(|(_, f)| f.source.as_str());
                let mut own = Vec::new();
                let mut shared = Vec::new();
                for (path, f) in run.files {
                    let mine = f.scope == "node";
                    let entry = Entry {
                        path,
                        sha256: &f.sha256,
                        size: f.size,
                        mode: mode(&f.sha256),
                        kind: &f.kind,
                        scope: (!mine).then_some(f.scope.as_str()),
                        source: (!mine || source != Some(f.source.as_str()))
                            .then_some(f.source.as_str()),
                    };
                    if mine {
                        own.push(entry);
                    } else {
                        shared.push(entry);
                    }
                }
                let node = NodeEntry {
                    dir: run.dir,
                    node: run.node,
                    cluster: run.cluster,
                    source,
                    shared: None,
                    files: own,
                };
                (node, shared)
            })
            .collect();

        // Each distinct set of shared files once, numbered in node order. Neighbours
        // mostly have the same role, so the previous node's set is tried first.
        let mut shared: Vec<Vec<Entry<'a>>> = Vec::new();
        let mut ids: HashMap<Vec<Entry<'a>>, usize> = HashMap::new();
        let mut nodes = Vec::with_capacity(split.len());
        let mut previous: Option<usize> = None;
        for (mut node, set) in split {
            if !set.is_empty() {
                let id = match previous.filter(|&p| shared[p] == set) {
                    Some(p) => p,
                    None => {
                        let next = shared.len();
                        *ids.entry(set).or_insert_with_key(|set| {
                            shared.push(set.clone());
                            next
                        })
                    }
                };
                node.shared = Some(id);
                previous = Some(id);
            }
            nodes.push(node);
        }

        // Objects that no node file has (none, when the tree was written by
        // `write_tree`).
        Compact {
            version: MANIFEST_VERSION,
            files,
            shared,
            nodes,
            objects: Vec::new(),
            images: &m.images,
        }
    }

    /// The JSON text, in pieces (written one after the other).
    fn pieces(&self) -> Vec<Vec<u8>> {
        let mut lists: Vec<(&str, Vec<Vec<u8>>)> = vec![
            ("files", lines(&self.files)),
            ("shared", lines(&self.shared)),
            ("nodes", lines(&self.nodes)),
        ];
        if !self.objects.is_empty() {
            lists.push(("objects", lines(&self.objects)));
        }
        if !self.images.is_empty() {
            lists.push(("images", lines(self.images)));
        }
        let mut pieces = vec![format!("{{\n  \"version\": {},\n", self.version).into_bytes()];
        let last = lists.len() - 1;
        for (i, (name, body)) in lists.into_iter().enumerate() {
            pieces.push(format!("  \"{name}\": [\n").into_bytes());
            pieces.extend(body);
            pieces.push(if i == last {
                b"  ]\n".to_vec()
            } else {
                b"  ],\n".to_vec()
            });
        }
        pieces.push(b"}\n".to_vec());
        pieces
    }
}

/// The objects of `m` that no node file has: none, when the tree was written by
/// [`write_tree`].
fn unused_objects(m: &Manifest) -> Vec<&ManifestObject> {
    let mut unused: HashSet<&str, DigestState> =
        HashSet::with_capacity_and_hasher(m.objects.len(), DigestState::default());
    unused.extend(m.objects.iter().map(|o| o.sha256.as_str()));
    for f in m.files.iter().filter(|f| in_node_dir(f).is_some()) {
        unused.remove(f.sha256.as_str());
    }
    m.objects
        .iter()
        .filter(|o| unused.contains(o.sha256.as_str()))
        .collect()
}

/// The items of a JSON list, one per line, indented, separated by commas: in pieces
/// made in parallel.
fn lines<T: Serialize + Sync>(items: &[T]) -> Vec<Vec<u8>> {
    let mut pieces: Vec<Vec<u8>> = items
        .par_chunks(256)
        .map(|chunk| {
            let mut buf = Vec::with_capacity(chunk.len() * 256);
            for item in chunk {
                buf.extend_from_slice(b"    ");
                // Plain structs with string keys into memory: this cannot fail.
                let _ = serde_json::to_writer(&mut buf, item);
                buf.extend_from_slice(b",\n");
            }
            buf
        })
        .collect();
    // The last item takes no comma.
    if let Some(last) = pieces.last_mut() {
        last.truncate(last.len() - 2);
        last.push(b'\n');
    }
    pieces
}

/// `manifest.json` as stored: version 2, or version 1's flat lists.
#[derive(Deserialize)]
struct Stored {
    version: u32,
    #[serde(default)]
    objects: Vec<ManifestObject>,
    #[serde(default)]
    files: Vec<ManifestFile>,
    #[serde(default)]
    shared: Vec<Vec<StoredEntry>>,
    #[serde(default)]
    nodes: Vec<StoredNode>,
    #[serde(default)]
    images: Vec<ManifestImage>,
}

#[derive(Deserialize)]
struct StoredNode {
    dir: String,
    node: String,
    cluster: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    shared: Option<usize>,
    files: Vec<StoredEntry>,
}

#[derive(Deserialize)]
struct StoredEntry {
    path: String,
    sha256: String,
    size: u64,
    #[serde(default)]
    mode: Option<String>,
    kind: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

impl Stored {
    fn expand(self) -> Result<Manifest, String> {
        if self.version > MANIFEST_VERSION {
            return Err(format!(
                "manifest version {} is newer than this vocc reads ({MANIFEST_VERSION})",
                self.version
            ));
        }
        let mut objects: BTreeMap<String, ManifestObject> = self
            .objects
            .into_iter()
            .map(|o| (o.sha256.clone(), o))
            .collect();
        let mut files = self.files;
        for n in &self.nodes {
            let set = match n.shared {
                Some(i) => self.shared.get(i).ok_or_else(|| {
                    format!(
                        "node `{}` names shared file set {i}, which is not listed",
                        n.node
                    )
                })?,
                None => &[][..],
            };
            for f in n.files.iter().chain(set) {
                objects
                    .entry(f.sha256.clone())
                    .or_insert_with(|| ManifestObject {
                        sha256: f.sha256.clone(),
                        size: f.size,
                        mode: f.mode.clone().unwrap_or_else(|| DEFAULT_MODE.to_owned()),
                    });
                files.push(ManifestFile {
                    path: format!("{}/{}", n.dir, f.path),
                    sha256: f.sha256.clone(),
                    size: f.size,
                    kind: f.kind.clone(),
                    scope: f.scope.clone().unwrap_or_else(|| "node".to_owned()),
                    cluster: n.cluster.clone(),
                    node: Some(n.node.clone()),
                    source: f
                        .source
                        .clone()
                        .or_else(|| n.source.clone())
                        .unwrap_or_default(),
                });
            }
        }
        files.par_sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Manifest {
            version: self.version,
            objects: objects.into_values().collect(),
            files,
            images: self.images,
        })
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
    let nodes = node_dirs(rendered, plan)?;
    fs::create_dir_all(out)?;
    let objects_path = out.join("objects");
    fs::create_dir_all(&objects_path)?;
    let staging = out.join(".nodes.new");
    let old = out.join(".nodes.old");
    remove_all(&staging)?;
    remove_all(&old)?;

    // How many files have each content, and which contents an earlier build left.
    let mut uses: DigestMap<&Digest, u32> =
        DigestMap::with_capacity_and_hasher(rendered.objects.len(), DigestState::default());
    for (_, n) in &nodes {
        for f in n.files() {
            *uses.entry(&f.digest).or_default() += 1;
        }
    }
    let mut wanted: Vec<(&Digest, &Object)> =
        uses.keys()
            .map(|d| {
                let object = rendered.objects.get(*d).ok_or_else(|| {
                    invalid(format!("object {} is missing from the store", hex(d)))
                })?;
                Ok((*d, object))
            })
            .collect::<io::Result<_>>()?;
    wanted.par_sort_unstable_by(|a, b| a.0.cmp(b.0));
    let (present, leftovers) = read_objects(&objects_path)?;
    let fix_modes = umask_interferes(&objects_path)?;

    // Contents several files share, written once under their names first.
    wanted
        .par_iter()
        .filter(|(d, _)| uses[d] > 1 && !present.contains(*d))
        .try_for_each(|(d, object)| write_object(&objects_path, &hex(d), object, fix_modes))?;

    // The node directories, built aside while the plan is serialized and the
    // manifest's list made, then swapped in.
    fs::create_dir(&staging)?;
    let writer = NodeWriter {
        staging: Dir::open(&staging)?,
        objects: Dir::open(&objects_path)?,
        rendered,
        uses: &uses,
        present: &present,
        fix_modes,
    };
    let (written, (plan_file, files)) = rayon::join(
        || writer.write_all(&nodes),
        || {
            rayon::join(
                || Pending::serialize(&out.join("plan.json"), plan),
                || manifest_files(&nodes, rendered, 1 + extra.len()),
            )
        },
    );
    // A plan written for nodes that failed is removed when dropped.
    written?;
    let plan_file = plan_file?;
    drop(writer);
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

    // Objects no node refers to any more, and leftovers of killed builds.
    present
        .par_iter()
        .filter(|d| !uses.contains_key(d))
        .map(hex)
        .chain(leftovers.into_par_iter())
        .try_for_each(|n| match fs::remove_file(objects_path.join(n)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })?;

    // The plan, the extra files and the manifest.
    let (plan_sha256, plan_size) = (plan_file.sha256.clone(), plan_file.size);
    plan_file.commit()?;
    let mut top = vec![ManifestFile {
        path: "plan.json".into(),
        sha256: plan_sha256,
        size: plan_size,
        kind: "plan".into(),
        scope: "plan".into(),
        cluster: None,
        node: None,
        source: format!("site `{}`", plan.site),
    }];
    for e in extra {
        let rel = safe_relative(&e.path)?;
        if let Some(parent) = rel.parent() {
            fs::create_dir_all(out.join(parent))?;
        }
        write_atomic(&out.join(rel), &e.bytes)?;
        top.push(ManifestFile {
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
    let files = insert_sorted(files, top);
    let objects = wanted
        .par_iter()
        .map(|(d, o)| ManifestObject {
            sha256: hex(d),
            size: o.bytes.len() as u64,
            mode: match o.mode {
                0o644 => DEFAULT_MODE.to_owned(),
                mode => format!("{mode:04o}"),
            },
        })
        .collect();
    let manifest = Manifest {
        version: MANIFEST_VERSION,
        objects,
        files,
        images: Vec::new(),
    };
    manifest.write(out)?;
    Ok(manifest)
}

/// The nodes of `rendered` with the names of their directories, in the order of the
/// paths of their files (`nodes/a-b/` sorts before `nodes/a/`).
fn node_dirs<'a>(
    rendered: &'a Rendered,
    plan: &'a Plan,
) -> io::Result<Vec<(&'a str, &'a NodeOutput)>> {
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
    nodes.par_sort_unstable_by(|a, b| dir_order(a.0, b.0));
    if let Some(w) = nodes.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(invalid(format!(
            "two nodes have the directory `nodes/{}`",
            w[0].0
        )));
    }
    Ok(nodes)
}

/// `files`, sorted by path, with the few files of `more` inserted in order.
fn insert_sorted(mut files: Vec<ManifestFile>, mut more: Vec<ManifestFile>) -> Vec<ManifestFile> {
    more.sort_by(|a, b| a.path.cmp(&b.path));
    for f in more {
        let at = files.partition_point(|g| g.path < f.path);
        files.insert(at, f);
    }
    files
}

/// The order of two node directories' files: that of their names followed by `/`.
fn dir_order(a: &str, b: &str) -> std::cmp::Ordering {
    let n = a.len().min(b.len());
    match a.as_bytes()[..n].cmp(&b.as_bytes()[..n]) {
        std::cmp::Ordering::Equal => {
            let next = |s: &str| s.as_bytes().get(n).copied().unwrap_or(b'/');
            next(a).cmp(&next(b))
        }
        other => other,
    }
}

/// The manifest entries of the node files, sorted by path, with room for `more`.
fn manifest_files(
    nodes: &[(&str, &NodeOutput)],
    rendered: &Rendered,
    more: usize,
) -> Vec<ManifestFile> {
    let per_node: Vec<Vec<ManifestFile>> = nodes
        .par_iter()
        .map(|(name, node)| {
            let mut files: Vec<_> = node.files().collect();
            files.sort_by(|a, b| a.path.cmp(&b.path));
            files
                .into_iter()
                .map(|f| ManifestFile {
                    path: ["nodes/", name, "/", &f.path].concat(),
                    sha256: hex(&f.digest),
                    size: rendered
                        .objects
                        .get(&f.digest)
                        .map_or(0, |o| o.bytes.len() as u64),
                    kind: f.kind.to_owned(),
                    scope: f.scope.as_str().to_owned(),
                    cluster: Some(node.cluster.clone()),
                    node: Some(node.id.clone()),
                    source: String::from(&*f.source),
                })
                .collect()
        })
        .collect();
    let mut files = Vec::with_capacity(per_node.iter().map(Vec::len).sum::<usize>() + more);
    for f in per_node {
        files.extend(f);
    }
    files
}

/// What writing the node directories needs.
struct NodeWriter<'a> {
    /// `OUT/.nodes.new`
    staging: Dir,
    objects: Dir,
    rendered: &'a Rendered,
    uses: &'a DigestMap<&'a Digest, u32>,
    /// The objects an earlier build left.
    present: &'a HashSet<Digest, DigestState>,
    fix_modes: bool,
}

impl NodeWriter<'_> {
    fn write_all(&self, nodes: &[(&str, &NodeOutput)]) -> io::Result<()> {
        nodes
            .par_iter()
            .try_for_each_init(Vec::new, |buf, (name, node)| self.write(buf, name, node))
    }

    /// Writes the directory `name` of `node`: its subdirectories, its own contents in
    /// place (each then linked under its hash), and links to the contents it shares.
    fn write(&self, buf: &mut Vec<u8>, name: &str, node: &NodeOutput) -> io::Result<()> {
        let dir = self.staging.make_dir(c_str(buf, name)?)?;
        let mut parents: Vec<&str> = Vec::with_capacity(16);
        for f in node.files() {
            if !plain_relative(&f.path) {
                return Err(invalid(format!(
                    "`{}` of node `{}` is not a relative path inside its directory",
                    f.path, node.id
                )));
            }
            parents.extend(f.path.match_indices('/').map(|(i, _)| &f.path[..i]));
        }
        // A parent sorts before its children.
        parents.sort_unstable();
        parents.dedup();
        for p in parents {
            dir.mkdir(c_str(buf, p)?)?;
        }
        for f in node.files() {
            let Some(object) = self.rendered.objects.get(&f.digest) else {
                return Err(invalid(format!(
                    "object {} is missing from the store",
                    hex(&f.digest)
                )));
            };
            let name = hex_name(&f.digest);
            let name = CStr::from_bytes_with_nul(&name).map_err(io::Error::other)?;
            let path = c_str(buf, &f.path)?;
            let alone = self.uses.get(&f.digest) == Some(&1) && !self.present.contains(&f.digest);
            if alone {
                dir.create(path, &object.bytes, object.mode, self.fix_modes)?;
                dir.link(path, &self.objects, name)?;
            } else {
                match self.objects.link(name, &dir, path) {
                    // The file system allows no more links to this inode: a copy.
                    Err(e) if e.raw_os_error() == Some(libc::EMLINK) => {
                        dir.create(path, &object.bytes, object.mode, self.fix_modes)?
                    }
                    other => other?,
                }
            }
        }
        Ok(())
    }
}

/// Whether `path` names something inside a directory: relative, no empty, `.` or
/// `..` components.
fn plain_relative(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// `s` as a C string, in `buf`.
fn c_str<'b>(buf: &'b mut Vec<u8>, s: &str) -> io::Result<&'b CStr> {
    buf.clear();
    buf.extend_from_slice(s.as_bytes());
    buf.push(0);
    CStr::from_bytes_with_nul(buf).map_err(|_| invalid(format!("`{s}` contains a NUL byte")))
}

/// The object name of `d` as a C string.
fn hex_name(d: &Digest) -> [u8; 65] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut name = [0u8; 65];
    for (i, b) in d.iter().enumerate() {
        name[2 * i] = HEX[usize::from(b >> 4)];
        name[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    name
}

/// The digest an object's name stands for.
fn digest_of(name: &str) -> Option<Digest> {
    if name.len() != 64 {
        return None;
    }
    let mut d = [0u8; 32];
    for (i, pair) in name.as_bytes().chunks(2).enumerate() {
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        d[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(d)
}

/// The objects under `objects/`, and the other names there (leftovers of killed
/// builds).
fn read_objects(dir: &Path) -> io::Result<(HashSet<Digest, DigestState>, Vec<String>)> {
    let mut present = HashSet::default();
    let mut leftovers = Vec::new();
    for e in fs::read_dir(dir)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        match digest_of(&name) {
            Some(d) => {
                present.insert(d);
            }
            None => leftovers.push(name.into_owned()),
        }
    }
    Ok((present, leftovers))
}

/// A directory that names are made in with the `*at` system calls, resolved from it
/// instead of from the root each time.
struct Dir(OwnedFd);

impl Dir {
    fn open(path: &Path) -> io::Result<Dir> {
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)?;
        Ok(Dir(f.into()))
    }

    fn fd(&self) -> libc::c_int {
        self.0.as_raw_fd()
    }

    fn mkdir(&self, name: &CStr) -> io::Result<()> {
        // SAFETY: `name` is a NUL-terminated string that outlives the call.
        check(unsafe { libc::mkdirat(self.fd(), name.as_ptr(), 0o777) })
    }

    /// Makes the directory `name` and opens it.
    fn make_dir(&self, name: &CStr) -> io::Result<Dir> {
        self.mkdir(name)?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: as in `mkdir`.
        let fd = unsafe { libc::openat(self.fd(), name.as_ptr(), flags) };
        check(fd)?;
        // SAFETY: `fd` was just opened, and nothing else owns it.
        Ok(Dir(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Creates the file `name`, which must not exist, with `bytes`.
    fn create(&self, name: &CStr, bytes: &[u8], mode: u32, fix_mode: bool) -> io::Result<()> {
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: as in `mkdir`; the mode is the variadic argument O_CREAT wants.
        let fd = unsafe { libc::openat(self.fd(), name.as_ptr(), flags, mode as libc::c_uint) };
        check(fd)?;
        // SAFETY: `fd` was just opened, and nothing else owns it.
        let mut f = fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        if fix_mode {
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        f.write_all(bytes)
    }

    /// Links the file `name` of this directory as `to_name` in `to`.
    fn link(&self, name: &CStr, to: &Dir, to_name: &CStr) -> io::Result<()> {
        // SAFETY: as in `mkdir`, for both names.
        check(unsafe { libc::linkat(self.fd(), name.as_ptr(), to.fd(), to_name.as_ptr(), 0) })
    }
}

/// The error of a system call that returned `rc`.
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A file written under a temporary name, hashed as it was written, to be renamed
/// into place once the rest of the tree is (and removed if it never is).
struct Pending {
    tmp: PathBuf,
    path: PathBuf,
    sha256: String,
    size: u64,
    committed: bool,
}

impl Pending {
    /// Writes `value` as pretty JSON and a newline, for `path`.
    fn serialize(path: &Path, value: &impl Serialize) -> io::Result<Pending> {
        let tmp = temporary(path);
        let _ = fs::remove_file(&tmp);
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(0o644))?;
        let mut w = Hashing {
            inner: BufWriter::with_capacity(1 << 16, file),
            hasher: Sha256::new(),
            size: 0,
        };
        serde_json::to_writer_pretty(&mut w, value).map_err(io::Error::other)?;
        w.write_all(b"\n")?;
        w.inner.flush()?;
        Ok(Pending {
            tmp,
            path: path.to_path_buf(),
            sha256: hex(&w.hasher.finalize().into()),
            size: w.size,
            committed: false,
        })
    }

    fn commit(mut self) -> io::Result<()> {
        fs::rename(&self.tmp, &self.path)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
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

/// The temporary name `path` is written under: in the same directory, hidden.
fn temporary(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes `path` through a temporary file in the same directory and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temporary(path);
    let _ = fs::remove_file(&tmp);
    create(&tmp, bytes, 0o644, true)?;
    fs::rename(&tmp, path)
}

fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, sha: char, scope: &str, node: Option<&str>, source: &str) -> ManifestFile {
        ManifestFile {
            path: path.into(),
            sha256: sha.to_string().repeat(64),
            size: 10,
            kind: "k".into(),
            scope: scope.into(),
            cluster: node.map(|_| "c".to_owned()),
            node: node.map(str::to_owned),
            source: source.into(),
        }
    }

    fn object(sha: char, mode: &str) -> ManifestObject {
        ManifestObject {
            sha256: sha.to_string().repeat(64),
            size: 10,
            mode: mode.into(),
        }
    }

    /// Two nodes of one role, one of another, a secret, a file outside the nodes, an
    /// object no file has and an image.
    fn sample() -> Manifest {
        let mut files = vec![
            file("nodes/a/cmdline", '1', "node", Some("a"), "f:1:1"),
            file(
                "nodes/a/files/etc/hosts",
                'h',
                "cluster",
                Some("a"),
                "f:0:1",
            ),
            file("nodes/a/files/etc/key", 'k', "cluster", Some("a"), "f:0:1"),
            file("nodes/a/xen.cfg", '2', "node", Some("a"), "f:9:9"),
            file("nodes/a-b/cmdline", '3', "node", Some("a-b"), "f:1:1"),
            file(
                "nodes/a-b/files/etc/hosts",
                'h',
                "cluster",
                Some("a-b"),
                "f:0:1",
            ),
            file(
                "nodes/a-b/files/etc/key",
                'k',
                "cluster",
                Some("a-b"),
                "f:0:1",
            ),
            file("nodes/z/cmdline", '4', "node", Some("z"), "f:2:1"),
            file(
                "nodes/z/files/etc/hosts",
                'h',
                "cluster",
                Some("z"),
                "f:0:1",
            ),
            file("plan.json", 'p', "plan", None, "site `s`"),
        ];
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Manifest {
            version: MANIFEST_VERSION,
            objects: vec![
                object('1', "0644"),
                object('2', "0755"),
                object('3', "0644"),
                object('4', "0644"),
                object('h', "0644"),
                object('k', "0600"),
                object('o', "0644"),
            ],
            files,
            images: vec![ManifestImage {
                path: "nodes/z/root.qcow2".into(),
                sha256: "i".repeat(64),
                size: 1,
                kind: "overlay".into(),
                format: "qcow2".into(),
                cluster: "c".into(),
                node: Some("z".into()),
                layer: None,
                source: "f:2:1".into(),
                recipe: "r".repeat(64),
                cache: "hit".into(),
                reason: None,
            }],
        }
    }

    #[test]
    fn the_compact_form_reads_back_as_written() {
        let m = sample();
        let json = m.to_json();
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert_eq!(
            serde_json::from_value::<Manifest>(serde_json::to_value(&m).unwrap()).unwrap(),
            m
        );
        // Shared files once per distinct set, one line per node, exceptions only.
        assert_eq!(json.matches("\"dir\":").count(), 3);
        assert_eq!(json.matches(&"h".repeat(64)).count(), 2, "{json}");
        assert!(json.contains("\"mode\":\"0600\"") && json.contains("\"mode\":\"0755\""));
        assert!(!json.contains("\"mode\":\"0644\"") || json.contains(&"o".repeat(64)));
        assert!(
            json.contains("\"source\":\"f:9:9\""),
            "a file's own source is kept"
        );
        assert!(json.ends_with("}\n"));
    }

    #[test]
    fn version_1_is_still_read() {
        let m = sample();
        #[derive(Serialize)]
        struct V1<'a> {
            version: u32,
            objects: &'a [ManifestObject],
            files: &'a [ManifestFile],
            images: &'a [ManifestImage],
        }
        let v1 = serde_json::to_string(&V1 {
            version: 1,
            objects: &m.objects,
            files: &m.files,
            images: &m.images,
        })
        .unwrap();
        let back: Manifest = serde_json::from_str(&v1).unwrap();
        assert_eq!(back, Manifest { version: 1, ..m });
        let newer = v1.replacen("\"version\":1", "\"version\":3", 1);
        assert!(serde_json::from_str::<Manifest>(&newer).is_err());
    }

    #[test]
    fn node_directories_sort_as_their_paths() {
        let mut names = ["a", "a-b", "ab", "a0", "b", "a.b"];
        names.sort_by(|a, b| dir_order(a, b));
        let mut paths: Vec<String> = names.iter().map(|n| format!("nodes/{n}/x")).collect();
        let sorted = {
            let mut p = paths.clone();
            p.sort();
            p
        };
        assert_eq!(paths, sorted);
        paths.dedup();
        assert_eq!(paths.len(), names.len());
    }

    #[test]
    fn object_names_and_digests() {
        let d: Digest = Sha256::digest(b"x").into();
        let name = hex_name(&d);
        assert_eq!(&name[..64], hex(&d).as_bytes());
        assert_eq!(name[64], 0);
        assert_eq!(digest_of(&hex(&d)), Some(d));
        assert_eq!(digest_of(".tmp.x"), None);
        assert_eq!(digest_of(&"G".repeat(64)), None);
        assert!(plain_relative("files/etc/hosts"));
        for bad in ["", "/etc", "a//b", "a/../b", "./a", "a/"] {
            assert!(!plain_relative(bad), "{bad}");
        }
    }
}
