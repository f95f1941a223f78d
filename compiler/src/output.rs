//! The output tree: every node's rendered files in its own directory, each content
//! that several files share stored once under `objects/` and hard-linked into the
//! nodes that have it, with the plan and a manifest.
//!
//! ```text
//! OUT/objects/<sha256>          each content that two or more files have, once
//! OUT/nodes/<node>/files/...    the guest's files (etc/hosts, etc/fstab, ...)
//! OUT/nodes/<node>/cidata/...   cloud-init NoCloud meta-data, user-data, network-config
//! OUT/nodes/<node>/cmdline      the kernel command line
//! OUT/nodes/<node>/xen.cfg      or libvirt.xml: the domain configuration
//! OUT/plan.json                 the plan
//! OUT/manifest.json             every file written: path, sha256, size, kind, node, source
//! ```
//!
//! Each build writes its tree whole into a new directory beside the current one and
//! switches to it with one rename (`output/tree.rs`): the names above are symbolic
//! links through `OUT/.vocc-tree`, which names the current tree, so a build killed at
//! any moment leaves OUT wholly the old tree or wholly the new one, and the next build
//! removes what the killed one left.
//!
//! Hard links keep the output linear in the cluster size: a cluster-wide file such as
//! /etc/hosts grows with the cluster, and a copy per node would make the tree grow
//! with its square. Where a file system refuses another link to one inode (ext4 stops
//! at 65,000), the node gets a copy instead.
//!
//! What a node costs is its metadata operations: a directory made, a file created, a
//! link. So a node gets no more of them than its files need: its directories, each
//! made once; each content that only it has (most node files: hostname, interfaces,
//! networkd, cloud-init meta-data, the domain configuration) created in place with one
//! open and one write, and nothing under `objects/`; and one link for each content it
//! shares with other files (hosts, slurm.conf, the role's fstab), written once under
//! its hash before the nodes are. Every operation starts from the node's own directory
//! instead of walking the whole path again (the `*at` system calls of `output/dir.rs`).
//! Nodes are written in parallel, each in its own directory, each making its line of
//! the manifest as it goes, while the plan is serialized.
//!
//! Invariants: the tree depends only on what is written, never on what was there
//! before or on when (no timestamps; sorted manifest; each build writes a whole new
//! tree). `objects/` holds exactly the contents that two or more files of the tree
//! have, and each file with such a content is a hard link to its object (or a copy,
//! past the file system's link limit); every other file has one link. Readers of OUT
//! see the previous build's tree until the new one is complete; one build writes to
//! an OUT at a time (it holds `OUT/.vocc-lock`), and none touches `OUT/.vocc-run/`.

mod dir;
mod manifest;
mod tree;

pub use manifest::{Manifest, ManifestFile, ManifestImage, ManifestObject, MANIFEST_VERSION};

use crate::render::{
    hex, Digest, DigestMap, DigestState, FileRef, NodeOutput, Object, Rendered, Scope,
};
use dir::{c_str, Dir};
use manifest::{Entry, NodeEntry, DEFAULT_MODE};
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path};
use std::sync::Arc;
use vocc_runtime::Plan;

/// A file the caller wants written into the tree besides the rendered ones (a model
/// dump, a report): at `path` relative to OUT (a name the tree does not use itself), with
/// the rest of the tree, and listed in the manifest.
#[derive(Debug, Clone)]
pub struct ExtraFile {
    pub path: String,
    pub bytes: Vec<u8>,
    pub kind: String,
    pub cluster: Option<String>,
    pub source: String,
}

/// What [`write_tree`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The files of the tree: node files, the plan and the extra files.
    pub files: usize,
    /// The distinct contents of the node files.
    pub contents: usize,
    /// Of those, the ones that two or more files have, stored under `objects/`.
    pub objects: usize,
    /// `manifest.json`, in pieces.
    manifest: Vec<Vec<u8>>,
}

impl Written {
    /// The manifest written, expanded.
    pub fn manifest(&self) -> io::Result<Manifest> {
        serde_json::from_slice(&self.manifest.concat()).map_err(io::Error::other)
    }
}

/// Writes the rendered files of every node of `plan`, the plan and `extra` under
/// `out`, replacing what an earlier build left there, and the manifest of it all as
/// `OUT/manifest.json`: [`stage_tree`], then [`Staged::commit`].
pub fn write_tree(
    out: &Path,
    rendered: &Rendered,
    plan: &Plan,
    extra: &[ExtraFile],
) -> io::Result<Written> {
    stage_tree(out, rendered, plan, extra)?.commit()
}

/// A tree written in full beside the current one of OUT, which it replaces at once
/// on [`Staged::commit`]; dropped uncommitted, it is removed and OUT keeps its tree.
/// OUT stays locked against other builds until then.
pub struct Staged {
    out: tree::Out,
    generation: tree::Generation,
    written: Written,
}

impl Staged {
    /// Where the new tree is: what goes into it before the commit (images) goes here,
    /// at the paths it will have relative to OUT.
    pub fn dir(&self) -> &Path {
        self.generation.path()
    }

    /// What was written.
    pub fn written(&self) -> &Written {
        &self.written
    }

    /// Makes the new tree OUT's, by one rename, and removes the old one.
    pub fn commit(self) -> io::Result<Written> {
        self.out.switch(self.generation)?;
        Ok(self.written)
    }
}

/// Writes the tree of [`write_tree`] into a new generation of `out`, which is not yet
/// OUT's tree: readers of OUT see the tree of the previous build until the commit.
pub fn stage_tree(
    out: &Path,
    rendered: &Rendered,
    plan: &Plan,
    extra: &[ExtraFile],
) -> io::Result<Staged> {
    let nodes = node_dirs(rendered, plan)?;
    let extra_paths = extra
        .iter()
        .map(|e| extra_path(&e.path))
        .collect::<io::Result<Vec<_>>>()?;
    let out = tree::Out::open(out)?;
    let generation = out.new_generation()?;
    let dir = generation.path();
    let objects_path = dir.join("objects");
    fs::create_dir(&objects_path)?;

    let contents = Contents::count(&nodes, rendered)?;
    let fix_modes = umask_interferes(&objects_path)?;

    // Contents several files share, written once under their names first.
    contents.stored.par_iter().try_for_each(|(d, object)| {
        create(
            &objects_path.join(hex(d)),
            &object.bytes,
            object.mode,
            fix_modes,
        )
    })?;

    // The node directories, written while the plan is serialized.
    let sets = SharedSets::of(&nodes, rendered)?;
    let nodes_path = dir.join("nodes");
    fs::create_dir(&nodes_path)?;
    let writer = NodeWriter {
        nodes: Dir::open(&nodes_path)?,
        objects: Dir::open(&objects_path)?,
        rendered,
        multi: &contents.multi,
        fix_modes,
    };
    let (node_lines, plan_file) = rayon::join(
        || writer.write_all(&nodes, &sets.ids),
        || serialize(&dir.join("plan.json"), plan),
    );
    let node_lines = node_lines?;
    let (plan_sha256, plan_size) = plan_file?;
    drop(writer);

    // The plan, the extra files and the manifest.
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
    for (e, rel) in extra.iter().zip(extra_paths) {
        if let Some(parent) = rel.parent() {
            fs::create_dir_all(dir.join(parent))?;
        }
        create(&dir.join(rel), &e.bytes, 0o644, true)?;
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
    top.sort_by(|a, b| a.path.cmp(&b.path));
    let node_files: usize = nodes.iter().map(|(_, n)| n.files().count()).sum();
    let pieces = manifest::document(
        MANIFEST_VERSION,
        vec![
            ("files", manifest::lines(&top)),
            ("shared", sets.lines),
            ("nodes", node_lines),
        ],
    );
    let mut f = create_file(&dir.join("manifest.json"), 0o644, true)?;
    for piece in &pieces {
        f.write_all(piece)?;
    }
    drop(f);
    let written = Written {
        files: node_files + top.len(),
        contents: contents.distinct,
        objects: contents.stored.len(),
        manifest: pieces,
    };
    Ok(Staged {
        out,
        generation,
        written,
    })
}

/// How many files of the tree have each content.
struct Contents<'a> {
    /// The contents of two files or more, which `objects/` holds, by digest.
    stored: Vec<(&'a Digest, &'a Object)>,
    /// Their digests.
    multi: HashSet<&'a Digest, DigestState>,
    /// How many distinct contents the node files have.
    distinct: usize,
}

impl<'a> Contents<'a> {
    /// Counts each node's own files one by one, and the files a set of nodes shares
    /// once per set (times its nodes).
    fn count(nodes: &[(&str, &'a NodeOutput)], rendered: &'a Rendered) -> io::Result<Contents<'a>> {
        let own: usize = nodes.iter().map(|(_, n)| n.own.len()).sum();
        let mut uses: DigestMap<&'a Digest, u32> =
            DigestMap::with_capacity_and_hasher(own + 64, DigestState::default());
        let mut sets: HashMap<*const Vec<FileRef>, (u32, &'a [FileRef])> = HashMap::new();
        for (_, n) in nodes {
            for f in &n.own {
                *uses.entry(&f.digest).or_default() += 1;
            }
            sets.entry(Arc::as_ptr(&n.shared))
                .or_insert((0, n.shared.as_slice()))
                .0 += 1;
        }
        for (count, files) in sets.into_values() {
            for f in files {
                *uses.entry(&f.digest).or_default() += count;
            }
        }
        let distinct = uses.len();
        let mut stored = Vec::new();
        for (d, n) in uses {
            if n > 1 {
                stored.push((d, object(rendered, d)?));
            }
        }
        stored.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let multi = stored.iter().map(|(d, _)| *d).collect();
        Ok(Contents {
            stored,
            multi,
            distinct,
        })
    }
}

/// The object of digest `d`.
fn object<'a>(rendered: &'a Rendered, d: &Digest) -> io::Result<&'a Object> {
    rendered
        .objects
        .get(d)
        .ok_or_else(|| invalid(format!("object {} is missing from the store", hex(d))))
}

/// The sets of files that nodes share, as the manifest lists them: the files of a
/// node that are not its own (role and cluster scope), each distinct set once,
/// numbered in node order.
struct SharedSets {
    /// The set of each node, in the order of the nodes.
    ids: Vec<Option<usize>>,
    /// The manifest's lines of the sets.
    lines: Vec<Vec<u8>>,
}

impl SharedSets {
    fn of(nodes: &[(&str, &NodeOutput)], rendered: &Rendered) -> io::Result<SharedSets> {
        // Nodes of one role have one list of shared files; a node with shared files
        // of its own (a DHCP server's dnsmasq.conf) has a set of its own.
        let mut by_list: HashMap<*const Vec<FileRef>, Option<usize>> = HashMap::new();
        let mut by_json: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut sets: Vec<Vec<u8>> = Vec::new();
        let mut ids = Vec::with_capacity(nodes.len());
        for (_, n) in nodes {
            let plain = n.own.iter().all(|f| f.scope == Scope::Node);
            let list = Arc::as_ptr(&n.shared);
            if let Some(id) = by_list.get(&list).filter(|_| plain) {
                ids.push(*id);
                continue;
            }
            let files: Vec<&FileRef> = merged(&n.own, &n.shared)
                .filter(|f| f.scope != Scope::Node)
                .collect();
            let id = if files.is_empty() {
                None
            } else {
                let json = entries_json(&files, rendered)?;
                let next = sets.len();
                Some(*by_json.entry(json).or_insert_with_key(|json| {
                    sets.push(json.clone());
                    next
                }))
            };
            if plain {
                by_list.insert(list, id);
            }
            ids.push(id);
        }
        let mut lines: Vec<Vec<u8>> = sets
            .into_iter()
            .map(|json| [&b"    "[..], &json, b",\n"].concat())
            .collect();
        manifest::last_line(&mut lines);
        Ok(SharedSets { ids, lines })
    }
}

/// The manifest entries of a set of shared files, as JSON.
fn entries_json(files: &[&FileRef], rendered: &Rendered) -> io::Result<Vec<u8>> {
    let hexes: Vec<[u8; 65]> = files.iter().map(|f| hex_name(&f.digest)).collect();
    let objects: Vec<&Object> = files
        .iter()
        .map(|f| object(rendered, &f.digest))
        .collect::<io::Result<_>>()?;
    let modes: Vec<Cow<'static, str>> = objects.iter().map(|o| mode_text(o.mode)).collect();
    let entries: Vec<Entry<'_>> = files
        .iter()
        .enumerate()
        .map(|(i, f)| Entry {
            path: &f.path,
            sha256: hex_str(&hexes[i]),
            size: objects[i].bytes.len() as u64,
            mode: &modes[i],
            kind: f.kind,
            scope: Some(f.scope.as_str()),
            source: Some(&f.source),
        })
        .collect();
    serde_json::to_vec(&entries).map_err(io::Error::other)
}

/// The files of `a` and `b`, each sorted by path, in path order.
fn merged<'a>(a: &'a [FileRef], b: &'a [FileRef]) -> impl Iterator<Item = &'a FileRef> {
    let (mut a, mut b) = (a.iter().peekable(), b.iter().peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if y.path < x.path => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}

/// A mode as the manifest writes it.
fn mode_text(mode: u32) -> Cow<'static, str> {
    match mode {
        0o644 => Cow::Borrowed(DEFAULT_MODE),
        0o600 => Cow::Borrowed("0600"),
        0o755 => Cow::Borrowed("0755"),
        m => Cow::Owned(format!("{m:04o}")),
    }
}

/// The hex digits of an object name.
fn hex_str(name: &[u8; 65]) -> &str {
    // Hex digits are ASCII.
    std::str::from_utf8(&name[..64]).unwrap_or_default()
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

/// What writing the node directories needs.
struct NodeWriter<'a> {
    /// The new generation's `nodes/`.
    nodes: Dir,
    objects: Dir,
    rendered: &'a Rendered,
    /// The contents that `objects/` holds.
    multi: &'a HashSet<&'a Digest, DigestState>,
    fix_modes: bool,
}

impl<'a> NodeWriter<'a> {
    /// Writes every node, in parallel, and returns their lines of the manifest.
    fn write_all(
        &self,
        nodes: &[(&str, &'a NodeOutput)],
        sets: &[Option<usize>],
    ) -> io::Result<Vec<Vec<u8>>> {
        // Chunks of nodes, so that the manifest's lines come in few pieces.
        let chunk = (nodes.len() / 256).clamp(1, 64);
        let mut lines: Vec<Vec<u8>> = nodes
            .par_chunks(chunk)
            .zip(sets.par_chunks(chunk))
            .map_init(Vec::new, |buf, (nodes, sets)| {
                let mut lines = Vec::with_capacity(nodes.len() * 1536);
                for ((name, node), set) in nodes.iter().zip(sets) {
                    let files = self.write(buf, name, node)?;
                    node_line(&mut lines, name, node, *set, &files);
                }
                Ok(lines)
            })
            .collect::<io::Result<_>>()?;
        manifest::last_line(&mut lines);
        Ok(lines)
    }

    /// Writes the directory `name` of `node`: its subdirectories, the contents only
    /// it has in place, and links to the others. Returns its files in path order,
    /// with their contents.
    fn write(
        &self,
        buf: &mut Vec<u8>,
        name: &str,
        node: &'a NodeOutput,
    ) -> io::Result<Vec<(&'a FileRef, &'a Object)>> {
        let mut files = Vec::with_capacity(node.own.len() + node.shared.len());
        let mut parents: Vec<&str> = Vec::with_capacity(16);
        for f in merged(&node.own, &node.shared) {
            if !plain_relative(&f.path) {
                return Err(invalid(format!(
                    "`{}` of node `{}` is not a relative path inside its directory",
                    f.path, node.id
                )));
            }
            let slashes = f.path.bytes().enumerate().filter(|(_, b)| *b == b'/');
            parents.extend(slashes.map(|(i, _)| &f.path[..i]));
            files.push((f, object(self.rendered, &f.digest)?));
        }
        // A parent sorts before its children.
        parents.sort_unstable();
        parents.dedup();
        let dir = self.nodes.make_dir(c_str(buf, name)?)?;
        for p in parents {
            dir.mkdir(c_str(buf, p)?)?;
        }
        for (f, object) in &files {
            let path = c_str(buf, &f.path)?;
            if !self.multi.contains(&f.digest) {
                dir.create(path, &object.bytes, object.mode, self.fix_modes)?;
                continue;
            }
            let name = hex_name(&f.digest);
            let name = CStr::from_bytes_with_nul(&name).map_err(io::Error::other)?;
            match self.objects.link(name, &dir, path) {
                // The file system allows no more links to this inode: a copy.
                Err(e) if e.raw_os_error() == Some(libc::EMLINK) => {
                    dir.create(path, &object.bytes, object.mode, self.fix_modes)?
                }
                other => other?,
            }
        }
        Ok(files)
    }
}

/// Appends the manifest's line of `node` (in directory `nodes/<name>`, with shared
/// file set `set` and `files` in path order) to `out`.
fn node_line(
    out: &mut Vec<u8>,
    name: &str,
    node: &NodeOutput,
    set: Option<usize>,
    files: &[(&FileRef, &Object)],
) {
    if files.is_empty() {
        return;
    }
    let own: Vec<&(&FileRef, &Object)> = files
        .iter()
        .filter(|(f, _)| f.scope == Scope::Node)
        .collect();
    let source = own.first().map(|(f, _)| &*f.source);
    let hexes: Vec<[u8; 65]> = own.iter().map(|(f, _)| hex_name(&f.digest)).collect();
    let modes: Vec<Cow<'static, str>> = own.iter().map(|(_, o)| mode_text(o.mode)).collect();
    let dir = ["nodes/", name].concat();
    let entry = NodeEntry {
        dir: &dir,
        node: &node.id,
        cluster: Some(&node.cluster),
        source,
        shared: set,
        files: own
            .iter()
            .enumerate()
            .map(|(i, (f, o))| Entry {
                path: &f.path,
                sha256: hex_str(&hexes[i]),
                size: o.bytes.len() as u64,
                mode: &modes[i],
                kind: f.kind,
                scope: None,
                source: (Some(&*f.source) != source).then_some(&*f.source),
            })
            .collect(),
    };
    manifest::line(out, &entry);
}

/// Whether `path` names something inside a directory: relative, no empty, `.` or
/// `..` components.
fn plain_relative(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
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

/// Writes `value` as pretty JSON and a newline to the new file `path`; returns its
/// sha256 and size.
fn serialize(path: &Path, value: &impl Serialize) -> io::Result<(String, u64)> {
    let file = create_file(path, 0o644, true)?;
    let mut w = Hashing {
        inner: BufWriter::with_capacity(1 << 16, file),
        hasher: Sha256::new(),
        size: 0,
    };
    serde_json::to_writer_pretty(&mut w, value).map_err(io::Error::other)?;
    w.write_all(b"\n")?;
    w.inner.flush()?;
    Ok((hex(&w.hasher.finalize().into()), w.size))
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

/// The path of an extra file, relative to OUT, if it stays inside the tree and does
/// not take a name the tree or OUT has for itself.
fn extra_path(path: &str) -> io::Result<&Path> {
    let p = Path::new(path);
    let reserved = ["nodes", "objects", "plan.json", "manifest.json"];
    let first = path.split('/').next().unwrap_or_default();
    if p.components().all(|c| matches!(c, Component::Normal(_)))
        && !path.is_empty()
        && !first.starts_with('.')
        && !reserved.contains(&first)
    {
        Ok(p)
    } else {
        Err(invalid(format!(
            "`{path}` is not a relative path inside the output that the output leaves free"
        )))
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

/// Creates the new file `path` with permission bits `mode` (exactly, with
/// `fix_mode`).
fn create_file(path: &Path, mode: u32, fix_mode: bool) -> io::Result<fs::File> {
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    if fix_mode {
        f.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    Ok(f)
}

fn create(path: &Path, bytes: &[u8], mode: u32, fix_mode: bool) -> io::Result<()> {
    create_file(path, mode, fix_mode)?.write_all(bytes)
}

fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes).into())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(plain_relative("files/etc/hosts"));
        for bad in ["", "/etc", "a//b", "a/../b", "./a", "a/"] {
            assert!(!plain_relative(bad), "{bad}");
        }
    }
}
