//! `OUT/manifest.json`: every file of the output tree with its sha256, size, kind,
//! scope, cluster, node and source, and the image artifacts.
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
//!   "objects": [ contents no file has: sha256, size, mode (normally absent) ],
//!   "images": [ the image artifacts (absent for --config-only) ]
//! }
//! ```
//!
//! A node file's path is relative to its node's `dir`; its scope is `node` unless
//! given, its source the node's unless given, and its mode `0644` unless given. Every
//! content is that of some file, so the file entries list the contents too, each by
//! its sha256 (whether the tree stores it once under `objects/` or, when only one
//! file has it, in that file alone). [`Manifest`] is the expanded form: every content
//! and every file one by one, as version 1 wrote them (which it still reads).
//!
//! [`crate::output::write_tree`] writes this form straight from the rendered files,
//! node by node; [`Manifest::to_json`] writes the same bytes from the expanded form.

use crate::render::DigestState;
use rayon::prelude::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Write};
use std::path::Path;
use vocc_runtime::atomic::AtomicFile;

/// The version of the manifest format.
pub const MANIFEST_VERSION: u32 = 2;

/// The mode of most files, left out of the manifest's file entries.
pub(super) const DEFAULT_MODE: &str = "0644";

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
        write_pieces(out, &Compact::of(self).pieces())
    }
}

/// Writes `OUT/manifest.json` from its pieces, atomically.
fn write_pieces(out: &Path, pieces: &[Vec<u8>]) -> io::Result<()> {
    let mut f = AtomicFile::create(&out.join("manifest.json"), 0o644)?;
    for piece in pieces {
        f.write_all(piece)?;
    }
    f.commit()
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
pub(super) struct NodeEntry<'a> {
    pub dir: &'a str,
    pub node: &'a str,
    pub cluster: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'a str>,
    /// The index of its set of shared files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared: Option<usize>,
    pub files: Vec<Entry<'a>>,
}

/// A file of a node, relative to the node's directory.
#[derive(Serialize, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Entry<'a> {
    pub path: &'a str,
    pub sha256: &'a str,
    pub size: u64,
    #[serde(skip_serializing_if = "is_default_mode")]
    pub mode: &'a str,
    pub kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'a str>,
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
        document(self.version, lists)
    }
}

/// The JSON text of a manifest whose lists are given as their lines (see [`lines`]),
/// in pieces.
pub(super) fn document(version: u32, lists: Vec<(&str, Vec<Vec<u8>>)>) -> Vec<Vec<u8>> {
    let mut pieces = vec![format!("{{\n  \"version\": {version},\n").into_bytes()];
    let last = lists.len().saturating_sub(1);
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

/// The objects of `m` that no node file has: none, when the tree was written by
/// [`crate::output::write_tree`].
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
pub(super) fn lines<T: Serialize + Sync>(items: &[T]) -> Vec<Vec<u8>> {
    let mut pieces: Vec<Vec<u8>> = items
        .par_chunks(256)
        .map(|chunk| {
            let mut buf = Vec::with_capacity(chunk.len() * 256);
            for item in chunk {
                line(&mut buf, item);
            }
            buf
        })
        .collect();
    last_line(&mut pieces);
    pieces
}

/// Appends `item` to `buf` as a line of a list (see [`lines`]).
pub(super) fn line<T: Serialize>(buf: &mut Vec<u8>, item: &T) {
    buf.extend_from_slice(b"    ");
    // Plain structs with string keys into memory: this cannot fail.
    let _ = serde_json::to_writer(&mut *buf, item);
    buf.extend_from_slice(b",\n");
}

/// Takes the comma off the last line of a list made of `pieces` of lines.
pub(super) fn last_line(pieces: &mut [Vec<u8>]) {
    if let Some(last) = pieces.iter_mut().rev().find(|p| !p.is_empty()) {
        last.truncate(last.len() - 2);
        last.push(b'\n');
    }
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
}
