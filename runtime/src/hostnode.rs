//! The host half of running nodes: what `vocc-host serve` does when the control side
//! asks it to load, start, pause, stop, observe or unload one of its nodes, or to run a
//! command on one. The host keeps, in its store, a copy of each cluster's plan and of
//! its own nodes' files (put there by the control side, `put`), and acts on them with
//! the hypervisor driver the request names, exactly as the control machine would on a
//! node of its own:
//!
//! ```text
//! STORE/clusters/<cluster>/plan.json            the plan (its sha256 is in every request)
//! STORE/clusters/<cluster>/nodes/<id>/...       the node's files (cmdline, cidata.img, ...)
//! STORE/run/<cluster>/nodes/<id>/               console log, pid file, sockets
//! STORE/nodes/<id>/, STORE/layers/...           disks and staged layers, as on any host
//! ```
//!
//! Invariants: every request is data (JSON), never a command line; names from it become
//! paths only after the runtime's label check, and only below the store it names; the
//! plan is the control side's own, byte for byte, or the host refuses to act.

use crate::driver::{self, ExecOutput, LoadTimes, NodeCtx, Observed};
use crate::journal::Segment;
use crate::plan::Plan;
use crate::state::Layout;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One node operation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    Load,
    Start,
    WaitReady {
        limit_ms: u64,
    },
    Pause,
    Unpause,
    Stop {
        force: bool,
        grace_ms: u64,
    },
    Unload,
    Observe,
    Exec {
        argv: Vec<String>,
        limit_ms: u64,
    },
    /// The node's console log (its last `driver::CONSOLE_MAX` bytes).
    Console,
}

/// A node operation on this host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeRequest {
    /// The host's store (absolute).
    pub store: String,
    pub cluster: String,
    pub node: String,
    /// The hypervisor driver that runs the node here.
    pub driver: String,
    /// The sha256 of the plan the control side runs.
    pub plan: String,
    /// The cluster's L2 segments (for networks without a bridge).
    #[serde(default)]
    pub segments: BTreeMap<String, Segment>,
    pub action: Action,
    /// A node that the plan no longer has, as the control side's journal recorded it:
    /// the host may stop, unload and observe it (never load or start it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub former: Option<Box<crate::plan::PlanNode>>,
}

/// What a node operation did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeAnswer {
    /// What was done (the driver's detail), when it succeeded.
    pub ok: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// What is there now (`absent`, `defined`, `running`, `paused`), when known.
    pub observed: Option<String>,
    pub pid: Option<i32>,
    pub config_ms: Option<f64>,
    pub define_ms: Option<f64>,
    pub exec: Option<ExecAnswer>,
    pub console: Option<String>,
}

/// `vocc exec`'s result across the link.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExecAnswer {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Remove what the host keeps of a cluster: its processes, node files and plan.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReclaimRequest {
    pub store: String,
    pub cluster: String,
    pub driver: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Reclaimed {
    pub killed: Vec<String>,
    pub errors: Vec<String>,
}

pub fn observed_name(o: Observed) -> &'static str {
    match o {
        Observed::Absent => "absent",
        Observed::Defined => "defined",
        Observed::Running => "running",
        Observed::Paused => "paused",
    }
}

pub fn observed_from(s: &str) -> Option<Observed> {
    Some(match s {
        "absent" => Observed::Absent,
        "defined" => Observed::Defined,
        "running" => Observed::Running,
        "paused" => Observed::Paused,
        _ => return None,
    })
}

/// Where the host keeps a cluster's plan and node files.
pub fn cluster_dir(store: &Path, cluster: &str) -> PathBuf {
    store.join("clusters").join(cluster)
}

/// The layout a host runs a cluster's nodes in: node files from the cluster's copy in
/// the store, runtime state under `STORE/run`, disks and layers in the store.
pub fn layout(store: &Path, cluster: &str) -> Layout {
    Layout {
        out: cluster_dir(store, cluster),
        state: store.join("run"),
        store: store.to_path_buf(),
    }
}

fn store_and_cluster(store: &str, cluster: &str) -> Result<PathBuf, String> {
    let store = crate::relay::check_path(store)?;
    if !crate::names::is_label(cluster) {
        return Err(format!(
            "the cluster name `{}` is not a label: {}",
            crate::names::shown(cluster),
            crate::names::LABEL_RULE
        ));
    }
    Ok(store)
}

/// Carries out one node request on this host.
pub fn handle(req: &NodeRequest) -> NodeAnswer {
    match run(req) {
        Ok(a) => a,
        Err(e) => NodeAnswer {
            error: Some(e),
            ..NodeAnswer::default()
        },
    }
}

fn run(req: &NodeRequest) -> Result<NodeAnswer, String> {
    let store = store_and_cluster(&req.store, &req.cluster)?;
    let layout = layout(&store, &req.cluster);
    let plan = cached_plan(&layout.out.join("plan.json"), &req.cluster, &req.plan)?;
    let plan = &*plan;
    let cluster = plan
        .clusters
        .iter()
        .find(|c| c.name == req.cluster)
        .ok_or_else(|| format!("the plan has no cluster `{}`", req.cluster))?;
    let node = match plan
        .nodes
        .iter()
        .find(|n| n.id == req.node && n.cluster == req.cluster)
    {
        Some(n) => n,
        None => former(req)?,
    };
    let driver = driver::by_name(&req.driver).map_err(|e| e.to_string())?;
    let ctx = NodeCtx {
        plan,
        cluster,
        node,
        layout: &layout,
        segments: &req.segments,
    };
    let mut answer = NodeAnswer::default();
    let done = match &req.action {
        Action::Load => {
            let mut times = LoadTimes::default();
            let r = driver.load(&ctx, &mut times);
            answer.config_ms = Some(times.config_ms);
            answer.define_ms = Some(times.define_ms);
            r
        }
        Action::Start => driver.start(&ctx),
        Action::WaitReady { limit_ms } => driver.wait_ready(&ctx, Duration::from_millis(*limit_ms)),
        Action::Pause => driver.pause(&ctx),
        Action::Unpause => driver.unpause(&ctx),
        Action::Stop { force, grace_ms } => {
            driver.stop(&ctx, *force, Duration::from_millis(*grace_ms))
        }
        Action::Unload => {
            let r = driver.unload(&ctx);
            // The node's files go with it; the plan stays until the cluster's reclaim.
            let _ = std::fs::remove_dir_all(layout.out.join(node.dir.trim_matches('/')));
            r
        }
        Action::Observe => Ok(String::new()),
        Action::Console => driver.console_text(&ctx).map(|bytes| {
            answer.console = Some(String::from_utf8_lossy(&bytes).into_owned());
            String::new()
        }),
        Action::Exec { argv, limit_ms } => driver
            .exec(&ctx, argv, Duration::from_millis(*limit_ms))
            .map(|o: ExecOutput| {
                answer.exec = Some(ExecAnswer {
                    status: o.status,
                    stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
                });
                String::new()
            }),
    };
    match done {
        Ok(detail) => answer.ok = Some(detail),
        Err(e) => answer.error = Some(e.to_string()),
    }
    answer.observed = driver.observe(&ctx).map(|o| observed_name(o).to_owned());
    answer.pid = driver.pid(&ctx);
    Ok(answer)
}

/// The node of a request that the plan no longer has: only to be taken down, and only
/// when its names are labels and its directory stays in the store, as a plan's.
fn former(req: &NodeRequest) -> Result<&crate::plan::PlanNode, String> {
    let missing = || format!("the plan has no node `{}`", req.node);
    let n = req.former.as_ref().ok_or_else(missing)?;
    if n.id != req.node || n.cluster != req.cluster {
        return Err(missing());
    }
    if !matches!(
        req.action,
        Action::Stop { .. } | Action::Unload | Action::Observe
    ) {
        return Err(format!(
            "node `{}` is no longer in the plan: it can only be stopped or unloaded",
            req.node
        ));
    }
    if let Some(problem) = crate::journal::recorded_problem(n) {
        return Err(format!(
            "the former node `{}` is refused: {problem}",
            req.node
        ));
    }
    Ok(n)
}

/// A file's identity for a cache of what was read from it: device, inode, size and
/// modification time (a file replaced by renaming is a new inode).
pub fn file_key(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{} {} {} {}.{}",
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    )
}

/// A plan file read and checked, with its sha256.
type Loaded = (String, std::sync::Arc<Plan>);

/// The plan at `path`, read and checked once for as long as the file stays the same
/// (device, inode, size, modification time: `put` replaces it by renaming, so a new
/// plan is a new inode). A session's requests then cost no parse of the plan each.
/// It must be the plan whose sha256 is `want`.
fn cached_plan(path: &Path, cluster: &str, want: &str) -> Result<std::sync::Arc<Plan>, String> {
    static CACHE: std::sync::Mutex<Option<BTreeMap<PathBuf, (String, Loaded)>>> =
        std::sync::Mutex::new(None);
    let meta = std::fs::metadata(path).map_err(|e| {
        format!("the host has no plan of cluster `{cluster}` ({e}): the control side puts it first")
    })?;
    let key = file_key(&meta);
    let other = || {
        format!(
            "the host's copy of the plan of cluster `{cluster}` is not the one the control \
             side runs"
        )
    };
    if let Some((k, (sha, plan))) = CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(BTreeMap::new)
        .get(path)
    {
        if *k == key {
            return if sha == want {
                Ok(plan.clone())
            } else {
                Err(other())
            };
        }
    }
    let bytes = std::fs::read(path).map_err(|e| format!("`{}`: {e}", path.display()))?;
    let sha = sha256_hex(&bytes);
    if sha != want {
        return Err(other());
    }
    let text = String::from_utf8(bytes).map_err(|e| format!("the plan is not UTF-8: {e}"))?;
    let plan = crate::schema::load_plan(&text).map_err(|e| e.to_string())?;
    let plan = std::sync::Arc::new(plan);
    CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(BTreeMap::new)
        .insert(path.to_path_buf(), (key, (sha, plan.clone())));
    Ok(plan)
}

/// Ends and removes everything this host keeps of a cluster.
pub fn reclaim(req: &ReclaimRequest) -> Reclaimed {
    let mut out = Reclaimed::default();
    let store = match store_and_cluster(&req.store, &req.cluster) {
        Ok(s) => s,
        Err(e) => {
            out.errors.push(e);
            return out;
        }
    };
    let layout = layout(&store, &req.cluster);
    match driver::by_name(&req.driver).and_then(|d| d.reclaim(&layout, &req.cluster)) {
        Ok(killed) => out.killed = killed,
        Err(e) => out.errors.push(e.to_string()),
    }
    for dir in [layout.out.clone(), layout.cluster(&req.cluster)] {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => out.errors.push(format!("`{}`: {e}", dir.display())),
        }
    }
    for dir in ["clusters", "run", "nodes"] {
        let _ = std::fs::remove_dir(store.join(dir));
    }
    out
}

/// Files of a store: their sha256 (none where absent), for the control side to put
/// only what differs.
pub fn sums(root: &str, paths: &[String]) -> Result<Vec<Option<String>>, String> {
    let root = crate::relay::check_path(root)?;
    paths
        .iter()
        .map(|rel| {
            let path = crate::hostops::inside(&root, rel)?;
            match std::fs::read(&path) {
                Ok(bytes) => Ok(Some(sha256_hex(&bytes))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("`{}`: {e}", path.display())),
            }
        })
        .collect()
}

/// Writes a file into the store (whole or not at all), after checking its sha256.
pub fn put(root: &str, rel: &str, mode: u32, sha256: &str, hex: &str) -> Result<(), String> {
    let root = crate::relay::check_path(root)?;
    let path = crate::hostops::inside(&root, rel)?;
    let bytes = from_hex(hex).ok_or("the data is not hex")?;
    if sha256_hex(&bytes) != sha256 {
        return Err(format!("`{rel}` arrived damaged (its sha256 differs)"));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("`{}`: {e}", dir.display()))?;
    }
    crate::atomic::write(&path, &bytes, mode & 0o755)
        .map_err(|e| format!("`{}`: {e}", path.display()))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let s = s.as_bytes();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_goes_both_ways_and_refuses_what_is_not() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(from_hex(&to_hex(&bytes)).unwrap(), bytes);
        assert_eq!(from_hex("0"), None);
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex("AB"), None);
    }

    #[test]
    fn put_stays_inside_the_store_and_checks_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let root = store.display().to_string();
        let data = b"console=ttyS0\n";
        let sha = sha256_hex(data);
        put(
            &root,
            "clusters/demo/nodes/a/cmdline",
            0o644,
            &sha,
            &to_hex(data),
        )
        .unwrap();
        assert_eq!(
            std::fs::read(store.join("clusters/demo/nodes/a/cmdline")).unwrap(),
            data
        );
        assert!(put(&root, "../victim", 0o644, &sha, &to_hex(data)).is_err());
        assert!(put(&root, "/etc/victim", 0o644, &sha, &to_hex(data)).is_err());
        assert!(put(&root, "x", 0o644, &sha, &to_hex(b"other")).is_err());
        let got = sums(
            &root,
            &["clusters/demo/nodes/a/cmdline".into(), "nothing".into()],
        )
        .unwrap();
        assert_eq!(got, vec![Some(sha), None]);
        assert!(!dir.path().join("victim").exists());
    }

    #[test]
    fn a_node_the_plan_lacks_is_only_taken_down_and_only_with_plain_names() {
        let mut node: crate::plan::PlanNode = serde_json::from_value(serde_json::json!({
            "id": "demo-worker3", "cluster": "demo", "hostname": "worker3", "role": "worker",
            "index": 3, "host": "h1", "cpu": 1, "memory": 1, "disk": 1, "swap": null,
            "persistence": "persistent", "root": [], "disks": [], "nics": [], "after": [],
            "dir": "nodes/demo-worker3", "source": "x"
        }))
        .unwrap();
        let req = |action: Action, node: &crate::plan::PlanNode| NodeRequest {
            store: "/s".into(),
            cluster: "demo".into(),
            node: "demo-worker3".into(),
            driver: "sim".into(),
            plan: String::new(),
            segments: BTreeMap::new(),
            action,
            former: Some(Box::new(node.clone())),
        };
        assert!(former(&req(Action::Unload, &node)).is_ok());
        assert!(former(&req(Action::Observe, &node)).is_ok());
        let e = former(&req(Action::Start, &node)).unwrap_err();
        assert!(e.contains("only be stopped"), "{e}");
        let none = NodeRequest {
            former: None,
            ..req(Action::Unload, &node)
        };
        assert!(former(&none).unwrap_err().contains("has no node"));
        node.dir = "nodes/../../etc".into();
        assert!(former(&req(Action::Unload, &node)).is_err());
        node.dir = "nodes/demo-worker3".into();
        node.id = "demo-other".into();
        assert!(former(&req(Action::Unload, &node)).is_err());
    }

    #[test]
    fn a_node_request_with_another_plan_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let req = NodeRequest {
            store: store.display().to_string(),
            cluster: "demo".into(),
            node: "demo-head".into(),
            driver: "sim".into(),
            plan: "0".repeat(64),
            segments: BTreeMap::new(),
            action: Action::Observe,
            former: None,
        };
        let a = handle(&req);
        assert!(a.error.unwrap().contains("has no plan"));
        std::fs::create_dir_all(cluster_dir(&store, "demo")).unwrap();
        std::fs::write(cluster_dir(&store, "demo").join("plan.json"), "{}").unwrap();
        let a = handle(&req);
        assert!(a.error.unwrap().contains("not the one"));
        let bad = NodeRequest {
            cluster: "../x".into(),
            ..req
        };
        assert!(handle(&bad).error.unwrap().contains("cluster"));
    }
}
