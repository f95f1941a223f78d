//! Rendering: every node's boot-time configuration (and its domain configuration)
//! from the checked model, the plan and the templates, into a content store.
//!
//! Each output has a scope, and is rendered once per scope, not once per node:
//! cluster-wide files (hosts, dnsmasq, most of a batch system's files) once per
//! cluster; role-wide files (fstab, exports, the services file, cloud-init user-data,
//! a batch system's per-role configuration) once per role; and node files (hostname,
//! interfaces, networkd, cloud-init meta-data and network-config, the kernel command
//! line, the xen.cfg or libvirt.xml) once per node, the nodes of a cluster in parallel. Nothing
//! done per node walks the cluster, so the time per node stays flat as clusters grow.
//! The cluster-wide files, which do list every node, are rendered while the nodes
//! are. Handlebars reads its variables from a JSON value, so each worker keeps one
//! copy of its role's variables and writes only the node's own ones over those of the
//! previous node, in place (`render/assign.rs`).
//!
//! The result is a content store (sha256 → bytes and mode) plus, per node, the list of
//! its files (path in the node's output directory → sha256). Files shared by many
//! nodes are stored once; [`crate::output`] links them into every node's directory.
//!
//! Which files a node gets:
//! - every node: `files/etc/hostname`, `files/etc/hosts`, `files/etc/network/interfaces`,
//!   `files/etc/systemd/network/10-<nic>.network` per NIC, `files/etc/fstab`,
//!   `files/etc/vocc/services` (the batch daemons to start or keep off), `cmdline`,
//!   `cidata/{meta-data,user-data,network-config}`, and `xen.cfg` (xen clusters) or
//!   `libvirt.xml` (kvm clusters);
//! - roles that export: `files/etc/exports`;
//! - the node serving DHCP on a network with `dhcp` NICs: `files/etc/dnsmasq.conf`;
//! - the roles of a batch system: the files its module renders
//!   ([`crate::scheduler`]: `slurm.conf` and the munge key, the PBS, SGE and HTCondor
//!   files), each for the roles the module names ([`To`]).

mod assign;
pub(crate) mod data;
mod layout;
mod templates;

pub(crate) use templates::template_list;
pub use templates::{
    escape_config, escape_xml, info, Escape, Scope, TemplateError, TemplateInfo, TemplateSource,
    Templates, TEMPLATES,
};

use crate::model::{Cluster, Model, Node, Role};
use crate::scheduler::{self, Secret};
use crate::secrets::Secrets;
use data::{value, ClusterFacts};
use handlebars::Context;
use rayon::prelude::*;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use vocc_runtime::plan::PlanNode;
use vocc_runtime::Plan;

/// A sha256 digest.
pub type Digest = [u8; 32];

/// A hasher for keys that are hashes already: digests, and their hex forms. It
/// reads a few words of the key instead of all of it, which is what makes it fast,
/// so it is no good for keys that share long prefixes and suffixes (paths).
#[derive(Debug, Default, Clone, Copy)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        // Every bit of the state reaches the low bits, which pick the bucket.
        let h = self.0 ^ (self.0 >> 33);
        let h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }

    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let n = bytes.len();
        let x = if n >= 16 {
            word(0) ^ word(8).rotate_left(21) ^ word(n - 8).rotate_left(42) ^ n as u64
        } else {
            bytes
                .iter()
                .fold(n as u64, |h, &b| h.rotate_left(8) ^ u64::from(b))
        };
        self.0 = (self.0.rotate_left(29) ^ x).wrapping_mul(K);
    }

    fn write_usize(&mut self, _len: usize) {
        // The length prefix of a digest, always 32; `write` sees the length anyway.
    }
}

/// The hasher of maps keyed by [`Digest`].
pub type DigestState = BuildHasherDefault<DigestHasher>;

/// A map keyed by [`Digest`].
pub type DigestMap<K, V> = HashMap<K, V, DigestState>;

/// The lowercase hex form of a digest (the object's file name).
pub fn hex(d: &Digest) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = Vec::with_capacity(64);
    for b in d {
        s.push(HEX[usize::from(b >> 4)]);
        s.push(HEX[usize::from(b & 15)]);
    }
    String::from_utf8(s).unwrap_or_default()
}

/// One distinct content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub bytes: Vec<u8>,
    /// Unix permission bits: 0600 for secrets, 0755 for scripts, 0644 otherwise. Two
    /// files with the same content but different modes share the object with the
    /// intersection of their modes (the stricter one).
    pub mode: u32,
}

/// One file of a node's output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// Relative to the node's directory: `files/etc/hosts` (the guest's `/etc/hosts`),
    /// `cidata/meta-data`, `xen.cfg`.
    pub path: String,
    pub digest: Digest,
    /// The template that made it (or the secret it is, `munge.key`).
    pub kind: &'static str,
    pub scope: Scope,
    /// `file:line:col` of the appliance statement the file comes from.
    pub source: Arc<str>,
}

/// The files of one node.
#[derive(Debug, Clone)]
pub struct NodeOutput {
    pub id: String,
    pub cluster: String,
    /// Files made for this node alone (node scope, and the dnsmasq config of a DHCP
    /// server), sorted by path.
    pub own: Vec<FileRef>,
    /// Files shared with the other nodes of its role (role and cluster scope), sorted
    /// by path.
    pub shared: Arc<Vec<FileRef>>,
}

impl NodeOutput {
    /// Every file of the node, own files first.
    pub fn files(&self) -> impl Iterator<Item = &FileRef> {
        self.own.iter().chain(self.shared.iter())
    }
}

/// Everything rendered: the content store and each node's files, in model order.
#[derive(Debug, Default)]
pub struct Rendered {
    pub objects: DigestMap<Digest, Object>,
    pub nodes: Vec<NodeOutput>,
    /// Indexes into `nodes`, sorted by node id, for [`Rendered::node`].
    by_id: Vec<usize>,
}

impl Rendered {
    /// The content of a file.
    pub fn content(&self, file: &FileRef) -> Option<&[u8]> {
        self.objects.get(&file.digest).map(|o| o.bytes.as_slice())
    }

    /// The node with id `id`, found in logarithmic time (the image step asks for
    /// every node).
    pub fn node(&self, id: &str) -> Option<&NodeOutput> {
        let indexed = self
            .by_id
            .binary_search_by(|&i| self.nodes.get(i).map_or("", |n| n.id.as_str()).cmp(id))
            .ok()
            .and_then(|at| self.nodes.get(self.by_id[at]))
            .filter(|n| n.id == id);
        // Nodes pushed by hand after rendering are not indexed.
        indexed.or_else(|| self.nodes.iter().find(|n| n.id == id))
    }

    fn add(&mut self, digest: Digest, object: Object) {
        match self.objects.entry(digest) {
            std::collections::hash_map::Entry::Occupied(mut e) => e.get_mut().mode &= object.mode,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(object);
            }
        }
    }
}

/// Why rendering failed. Each error names the template, what it was rendered for, and
/// the appliance statement behind it.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{location}: template `{template}` failed for {target}: {message}")]
    Template {
        template: String,
        target: String,
        location: String,
        message: String,
    },
    #[error("{location}: node `{node}` is not in the plan")]
    NotPlaced { node: String, location: String },
    #[error(
        "{location}: cluster `{cluster}` runs {kind} but there is no `{secret}` for it; \
         load the secrets of the model first"
    )]
    MissingSecret {
        cluster: String,
        kind: &'static str,
        secret: &'static str,
        location: String,
    },
    #[error("{location}: {message}")]
    Model { location: String, message: String },
}

const MODE_FILE: u32 = 0o644;
const MODE_SECRET: u32 = 0o600;
const MODE_SCRIPT: u32 = 0o755;

/// Renders every node of every cluster of `model`, placed by `plan`.
pub fn render(
    model: &Model,
    plan: &Plan,
    templates: &Templates,
    secrets: &Secrets,
) -> Result<Rendered, RenderError> {
    let placed: HashMap<&str, &PlanNode> = plan.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let layers: data::PlanLayers<'_> = plan.layers.iter().map(|l| (l.id.as_str(), l)).collect();
    let nodes = model.clusters.iter().map(|c| c.nodes.len()).sum();
    let mut rendered = Rendered {
        objects: DigestMap::with_capacity_and_hasher(nodes * 8, DigestState::default()),
        nodes: Vec::with_capacity(nodes),
        by_id: Vec::new(),
    };
    for cluster in &model.clusters {
        let env = Env {
            plan,
            placed: &placed,
            layers: &layers,
            templates,
            secrets,
        };
        render_cluster(&mut rendered, cluster, &env)?;
    }
    let mut by_id: Vec<usize> = (0..rendered.nodes.len()).collect();
    by_id.par_sort_unstable_by(|&a, &b| rendered.nodes[a].id.cmp(&rendered.nodes[b].id));
    rendered.by_id = by_id;
    Ok(rendered)
}

/// What every render of one model shares.
struct Env<'a> {
    plan: &'a Plan,
    placed: &'a HashMap<&'a str, &'a PlanNode>,
    layers: &'a data::PlanLayers<'a>,
    templates: &'a Templates,
    secrets: &'a Secrets,
}

/// What a render is for, in error messages.
enum For<'a> {
    Cluster(&'a Cluster),
    Role(&'a Cluster, &'a Role),
    Node(&'a Node),
}

impl For<'_> {
    fn describe(&self) -> String {
        match self {
            For::Cluster(c) => format!("cluster `{}`", c.name),
            For::Role(c, r) => format!("role `{}` of cluster `{}`", r.name, c.name),
            For::Node(n) => format!("node `{}`", n.id),
        }
    }
}

/// A file about to enter the store.
struct Made {
    file: FileRef,
    object: Object,
}

/// Renders `template` into a file at `path` of the node directories. `buf` is scratch
/// space that a caller rendering many files keeps from one to the next.
#[allow(clippy::too_many_arguments)]
fn make(
    templates: &Templates,
    template: &'static str,
    ctx: &Context,
    buf: &mut Vec<u8>,
    path: String,
    scope: Scope,
    source: &Arc<str>,
    what: For<'_>,
) -> Result<Made, RenderError> {
    buf.clear();
    templates
        .render_into(template, ctx, buf)
        .map_err(|e| RenderError::Template {
            template: template.to_owned(),
            target: what.describe(),
            location: source.to_string(),
            message: e.to_string(),
        })?;
    let mode = if template.ends_with(".sh") {
        MODE_SCRIPT
    } else {
        MODE_FILE
    };
    // A copy of exactly the rendered length: a store of many small files should not
    // keep the scratch space's spare room.
    Ok(stored(buf.to_vec(), mode, path, template, scope, source))
}

fn stored(
    bytes: Vec<u8>,
    mode: u32,
    path: String,
    kind: &'static str,
    scope: Scope,
    source: &Arc<str>,
) -> Made {
    let digest: Digest = Sha256::digest(&bytes).into();
    let file = FileRef {
        path,
        digest,
        kind,
        scope,
        source: Arc::clone(source),
    };
    Made {
        file,
        object: Object { bytes, mode },
    }
}

/// The path of a guest file in a node's directory.
fn guest(path: &str) -> String {
    format!("files/{}", path.trim_start_matches('/'))
}

/// `base` with more variables.
fn extend(base: &Value, extra: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    let mut v = base.clone();
    if let Value::Object(m) = &mut v {
        m.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
    }
    v
}

/// The cluster-wide files of a cluster, and who gets them.
#[derive(Default)]
struct Shared<'a> {
    /// Role name → files every node of the role gets.
    roles: HashMap<&'a str, Vec<FileRef>>,
    /// Node id → files only that node gets (a DHCP server's dnsmasq.conf).
    nodes: HashMap<&'a str, Vec<FileRef>>,
}

fn render_cluster(out: &mut Rendered, cluster: &Cluster, env: &Env<'_>) -> Result<(), RenderError> {
    let facts = ClusterFacts::new(cluster)?;
    let base = Value::Object(Map::from_iter([
        ("cluster".to_owned(), value(facts.cluster_vars())),
        ("scheduler".to_owned(), value(facts.sched_vars_of())),
    ]));
    // The cluster-wide files (some of which list every node) and the nodes' own files
    // do not depend on each other, so they are rendered at the same time; the nodes'
    // shared files are filled in after.
    let mut cluster_store = Rendered::default();
    let (shared, nodes) = rayon::join(
        || {
            cluster_files(
                &mut cluster_store,
                &facts,
                &base,
                env.templates,
                env.secrets,
            )
        },
        || {
            let mut role_store = Rendered::default();
            let per_role = cluster
                .roles
                .iter()
                .map(|role| {
                    let files = role_files(&mut role_store, &facts, &base, role, env)?;
                    Ok((files, node_files(&facts, &base, role, env)?))
                })
                .collect::<Result<Vec<_>, RenderError>>();
            per_role.map(|r| (role_store, r))
        },
    );
    let mut shared = shared?;
    let (role_store, nodes) = nodes?;
    for (digest, object) in cluster_store.objects.into_iter().chain(role_store.objects) {
        out.add(digest, object);
    }
    for (role, (role_files, rendered)) in cluster.roles.iter().zip(nodes) {
        let mut files = shared.roles.remove(role.name.as_str()).unwrap_or_default();
        files.extend(role_files);
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let files = Arc::new(files);
        for (mut node, objects) in rendered {
            for (digest, object) in objects {
                out.add(digest, object);
            }
            if let Some(extra) = shared.nodes.get(node.id.as_str()) {
                node.own.extend(extra.iter().cloned());
                node.own.sort_by(|a, b| a.path.cmp(&b.path));
            }
            node.shared = Arc::clone(&files);
            out.nodes.push(node);
        }
    }
    Ok(())
}

/// A node's output (without its shared files yet) and the contents of its own files.
type NodeRendered = (NodeOutput, Vec<(Digest, Object)>);

/// Renders the own files of every node of `role`, in model order.
fn node_files(
    facts: &ClusterFacts<'_>,
    base: &Value,
    role: &Role,
    env: &Env<'_>,
) -> Result<Vec<NodeRendered>, RenderError> {
    let cluster = facts.cluster;
    let job = NodeJob {
        cluster,
        role,
        env,
        base: node_base(facts, base, role),
    };
    let nodes: Vec<&Node> = cluster.nodes_of(&role.name).collect();
    // Each worker renders many nodes with one copy of the role's variables, in which
    // only the node's own variables change.
    nodes
        .par_iter()
        .map_init(
            || Scratch {
                ctx: Context::from(job.base.clone()),
                buf: Vec::with_capacity(8 << 10),
            },
            |scratch, node| {
                let Some(placed) = env.placed.get(node.id.as_str()) else {
                    return Err(RenderError::NotPlaced {
                        node: node.id.clone(),
                        location: node.origin.location.clone(),
                    });
                };
                job.node(scratch, node, placed)
            },
        )
        .collect()
}

/// Who gets a cluster-wide file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum To {
    /// Every role of the cluster.
    All,
    /// Every role that takes part in the batch system.
    Members,
    /// The batch system's controller role.
    Controller,
    /// Every compute role but the controller's.
    Compute,
}

/// Where the cluster-wide files of a cluster go as they are rendered, and the roles
/// that get them. A batch system renders its own through this
/// ([`crate::scheduler::BatchSystem::cluster_files`]).
pub struct ClusterFiles<'r, 'a> {
    facts: &'r ClusterFacts<'a>,
    base: &'r Value,
    templates: &'r Templates,
    out: &'r mut Rendered,
    shared: &'r mut Shared<'a>,
    buf: Vec<u8>,
}

impl<'r, 'a> ClusterFiles<'r, 'a> {
    /// What the cluster's files know about the cluster as a whole.
    pub(crate) fn facts(&self) -> &'r ClusterFacts<'a> {
        self.facts
    }

    /// Renders `template` with the cluster's variables and `vars` to the guest path
    /// the template produces, for the nodes of the roles `to` names.
    pub(crate) fn render(
        &mut self,
        to: To,
        template: &'static str,
        vars: Vec<(&'static str, Value)>,
    ) -> Result<(), RenderError> {
        let path = info(template).map_or("", |t| t.produces);
        let source = self.facts.cluster.origin.location.as_str();
        self.render_at(to, template, path, vars, source)
    }

    /// Renders `template` as [`ClusterFiles::render`] does, to the guest file `path`;
    /// `source` is the appliance location the file comes from (the cluster's, or a
    /// queue's).
    pub(crate) fn render_at(
        &mut self,
        to: To,
        template: &'static str,
        path: &str,
        vars: Vec<(&'static str, Value)>,
        source: &str,
    ) -> Result<(), RenderError> {
        let ctx = Context::from(extend(self.base, vars));
        let made = make(
            self.templates,
            template,
            &ctx,
            &mut self.buf,
            guest(path),
            Scope::Cluster,
            &Arc::from(source),
            For::Cluster(self.facts.cluster),
        )?;
        self.give(made, to);
        Ok(())
    }

    /// Installs the cluster's secret `secret` (0600) on the nodes of the roles `to`
    /// names.
    fn secret(&mut self, secret: &Secret, secrets: &Secrets, to: To) -> Result<(), RenderError> {
        let cluster = self.facts.cluster;
        let Some(key) = secrets.get(&cluster.name, secret.name) else {
            return Err(RenderError::MissingSecret {
                cluster: cluster.name.clone(),
                kind: cluster.scheduler.as_ref().map_or("", |s| s.kind.as_str()),
                secret: secret.name,
                location: cluster.origin.location.clone(),
            });
        };
        let made = stored(
            key.to_vec(),
            MODE_SECRET,
            guest(secret.path),
            secret.name,
            Scope::Cluster,
            &Arc::from(cluster.origin.location.as_str()),
        );
        self.give(made, to);
        Ok(())
    }

    fn give(&mut self, made: Made, to: To) {
        let cluster = self.facts.cluster;
        let controller = self
            .facts
            .sched
            .as_ref()
            .map(|(s, _)| s.controller.as_str());
        for r in &cluster.roles {
            let gets = match to {
                To::All => true,
                To::Members => r.scheduler.is_some(),
                To::Controller => Some(r.name.as_str()) == controller,
                To::Compute => {
                    r.scheduler.as_ref().is_some_and(|s| s.compute)
                        && Some(r.name.as_str()) != controller
                }
            };
            if gets {
                self.shared
                    .roles
                    .entry(r.name.as_str())
                    .or_default()
                    .push(made.file.clone());
            }
        }
        self.out.add(made.file.digest, made.object);
    }
}

/// Renders the cluster-wide files: /etc/hosts, the batch system's files and secrets,
/// and the DHCP servers' dnsmasq.conf.
fn cluster_files<'a>(
    out: &mut Rendered,
    facts: &ClusterFacts<'a>,
    base: &Value,
    templates: &Templates,
    secrets: &Secrets,
) -> Result<Shared<'a>, RenderError> {
    let cluster = facts.cluster;
    let mut shared = Shared::default();
    let mut files = ClusterFiles {
        facts,
        base,
        templates,
        out,
        shared: &mut shared,
        buf: Vec::new(),
    };
    let hosts = vec![("hosts", value(data::host_lines(facts)))];
    files.render(To::All, "hosts", hosts)?;

    if let Some((sched, _)) = &facts.sched {
        let system = scheduler::of(sched.kind);
        system.cluster_files(&mut files)?;
        for secret in system.secrets() {
            files.secret(secret, secrets, To::Members)?;
        }
    }
    for server in &facts.dhcp {
        let vars = [
            (
                "server",
                value(data::HostRef {
                    hostname: server.node.hostname.clone(),
                    fqdn: facts.fqdn(&server.node.hostname),
                    address: None,
                }),
            ),
            ("networks", value(data::dhcp_networks(cluster, server))),
        ];
        let ctx = Context::from(extend(base, vars));
        let src: Arc<str> = Arc::from(server.networks[0].network.origin.location.as_str());
        let path = guest("/etc/dnsmasq.conf");
        let m = make(
            templates,
            "dnsmasq.conf",
            &ctx,
            &mut Vec::new(),
            path,
            Scope::Cluster,
            &src,
            For::Node(server.node),
        )?;
        shared
            .nodes
            .entry(server.node.id.as_str())
            .or_default()
            .push(m.file.clone());
        out.add(m.file.digest, m.object);
    }
    Ok(shared)
}

/// Renders the role-wide files of `role`: fstab, exports, cloud-init user-data, the
/// batch system's services the boot hook starts, and its per-role configuration.
fn role_files(
    out: &mut Rendered,
    facts: &ClusterFacts<'_>,
    base: &Value,
    role: &Role,
    env: &Env<'_>,
) -> Result<Vec<FileRef>, RenderError> {
    let cluster = facts.cluster;
    let rsrc: Arc<str> = Arc::from(role.origin.location.as_str());
    let mut vars = extend(
        base,
        [
            ("role", value(facts.role_vars(role))),
            (
                "disks",
                value(data::disks(
                    cluster,
                    cluster.files_hypervisor(),
                    role,
                    env.layers,
                    &env.plan.store,
                    None,
                )),
            ),
            ("mounts", value(data::mounts(facts, role))),
            ("exports", value(data::exports(cluster, role))),
        ],
    );
    let part = role.scheduler.as_ref();
    let system = part.map(|p| (scheduler::of(p.kind), p));
    if let Some((system, p)) = system {
        for (name, v) in system.role_vars(p) {
            vars[name] = v;
        }
    }
    vars["services"] = value(scheduler::services(role));
    let ctx = Context::from(vars);

    let mut wanted = vec![
        ("fstab", guest("/etc/fstab")),
        ("services", guest("/etc/vocc/services")),
    ];
    if !role.exports.is_empty() {
        wanted.push(("exports", guest("/etc/exports")));
    }
    wanted.push(("user-data", "cidata/user-data".to_owned()));
    if let Some((system, p)) = system {
        for t in system.role_files(p) {
            wanted.push((t, guest(info(t).map_or("", |t| t.produces))));
        }
    }
    let mut files = Vec::with_capacity(wanted.len());
    let mut buf = Vec::new();
    for (t, path) in wanted {
        let m = make(
            env.templates,
            t,
            &ctx,
            &mut buf,
            path,
            Scope::Role,
            &rsrc,
            For::Role(cluster, role),
        )?;
        files.push(m.file.clone());
        out.add(m.file.digest, m.object);
    }
    Ok(files)
}

/// The variables every node of `role` shares.
fn node_base(facts: &ClusterFacts<'_>, base: &Value, role: &Role) -> Value {
    let hv = facts.cluster.files_hypervisor();
    let root = format!("/dev/{}", layout::disk_device(hv, 0));
    extend(
        base,
        [
            ("role", value(facts.role_vars(role))),
            ("console", layout::console(hv).into()),
            ("root_device", root.into()),
        ],
    )
}

/// What rendering one node of a role needs.
struct NodeJob<'a> {
    cluster: &'a Cluster,
    role: &'a Role,
    env: &'a Env<'a>,
    base: Value,
}

/// What a worker keeps from one node to the next: the role's variables, whose node
/// entries each node replaces, and a render buffer.
struct Scratch {
    ctx: Context,
    buf: Vec<u8>,
}

/// Sets `key` of the variables to `value`, written over the previous node's (see
/// `assign`).
fn set<T: serde::Serialize + ?Sized>(vars: &mut Context, key: &'static str, value: &T) {
    if let Value::Object(m) = vars.data_mut() {
        match m.get_mut(key) {
            Some(slot) => assign::assign(slot, value),
            None => {
                m.insert(key.to_owned(), data::value(value));
            }
        }
    }
}

impl NodeJob<'_> {
    fn node(
        &self,
        scratch: &mut Scratch,
        node: &Node,
        placed: &PlanNode,
    ) -> Result<NodeRendered, RenderError> {
        let cluster = self.cluster;
        let src: Arc<str> = Arc::from(node.origin.location.as_str());
        let Scratch { ctx, buf } = scratch;
        // Every variable of the previous node is replaced or removed here, so that no
        // template ever sees another node's values.
        set(
            ctx,
            "node",
            &data::NodeVars {
                id: &node.id,
                hostname: &node.hostname,
                fqdn: format!("{}.{}", node.hostname, cluster.domain),
                index: node.index,
                host: &placed.host,
                dir: &placed.dir,
                cpus: placed
                    .cpus
                    .as_ref()
                    .map(|c| c.iter().map(u32::to_string).collect::<Vec<_>>().join(",")),
                source: &node.origin.location,
            },
        );
        let nics = data::nics(cluster, node, placed);
        set(ctx, "nics", &nics);
        let (layers, store) = (self.env.layers, &self.env.plan.store);
        // The node's own files are for the hypervisor of its host.
        let hv = match placed.hypervisor {
            Some(vocc_runtime::plan::Hypervisor::Xen) => crate::model::Hypervisor::Xen,
            Some(vocc_runtime::plan::Hypervisor::Kvm) => crate::model::Hypervisor::Kvm,
            None => cluster.files_hypervisor(),
        };
        set(ctx, "console", &layout::console(hv));
        set(
            ctx,
            "root_device",
            &format!("/dev/{}", layout::disk_device(hv, 0)),
        );
        let disks = data::disks(cluster, hv, self.role, layers, store, Some(&placed.dir));
        set(ctx, "disks", &disks);
        let (kernel, initrd) = data::kernel(layers, store, &cluster.name, placed, self.role);
        set(ctx, "kernel", &kernel);
        set(ctx, "initrd", &initrd);
        set(ctx, "cmdline", &());
        if let Value::Object(m) = ctx.data_mut() {
            m.remove("nic");
        }
        let mut made = Vec::with_capacity(6 + nics.len());
        let mut file = |ctx: &Context, t: &'static str, path: String| {
            make(
                self.env.templates,
                t,
                ctx,
                buf,
                path,
                Scope::Node,
                &src,
                For::Node(node),
            )
        };

        let cmdline = file(ctx, "cmdline", "cmdline".into())?;
        let line = String::from_utf8_lossy(&cmdline.object.bytes)
            .trim()
            .to_owned();
        set(ctx, "cmdline", &line);
        made.push(cmdline);
        made.push(file(ctx, "hostname", guest("/etc/hostname"))?);
        made.push(file(ctx, "interfaces", guest("/etc/network/interfaces"))?);
        made.push(file(ctx, "meta-data", "cidata/meta-data".into())?);
        made.push(file(ctx, "network-config", "cidata/network-config".into())?);
        match hv {
            crate::model::Hypervisor::Xen => made.push(file(ctx, "xen.cfg", "xen.cfg".into())?),
            crate::model::Hypervisor::Kvm => {
                made.push(file(ctx, "libvirt.xml", "libvirt.xml".into())?)
            }
        }
        for nic in &nics {
            set(ctx, "nic", nic);
            made.push(file(
                ctx,
                "networkd.network",
                guest(&format!("/etc/systemd/network/10-{}.network", nic.name)),
            )?);
        }

        let (mut own, objects): (Vec<FileRef>, Vec<(Digest, Object)>) = made
            .into_iter()
            .map(|m| {
                let digest = m.file.digest;
                (m.file, (digest, m.object))
            })
            .unzip();
        own.sort_by(|a, b| a.path.cmp(&b.path));
        let out = NodeOutput {
            id: node.id.clone(),
            cluster: cluster.name.clone(),
            own,
            shared: Arc::default(),
        };
        Ok((out, objects))
    }
}
