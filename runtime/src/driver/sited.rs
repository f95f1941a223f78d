//! The driver of a plan whose site has hosts reached over a link (SSH, the site's
//! Slurm): a node on this machine goes to the hypervisor driver as before; a node on
//! another host becomes a request to that host's `vocc-host serve` (`hostnode`), which
//! runs the same driver there. The control side keeps the plan, the DAG, the journal
//! and the report; a host only ever acts on one node at a time, as asked.
//!
//! One multiplexed session per host for the whole command (`hostops::Mux`): the requests
//! of all the host's nodes travel on it at once, so a lifecycle operation on every host
//! costs a line each way per node, not a login. Before its first node request a host gets
//! the cluster's plan and the files of its own nodes (`put`, only what it lacks).
//!
//! Invariants: a host that cannot be reached, or whose link drops, fails only the
//! steps of its own nodes, each with the host's name and the link's last words; nothing
//! of a node's state lives only on the control side's memory (a host answers what it
//! sees, and a later command asks again).

use super::{Change, Driver, ExecOutput, LoadTimes, NodeCtx, Observed, Pending};
use crate::error::{Error, Result};
use crate::hostlink::HostLink;
use crate::hostnode::{self, Action, NodeAnswer, NodeRequest, ReclaimRequest, Reclaimed};
use crate::hostops::{Mux, Request};
use crate::plan::Plan;
use crate::state::Layout;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a host is asked for a request that has no limit of its own.
const ASK_LIMIT: Duration = Duration::from_secs(300);

pub struct Sited {
    local: Box<dyn Driver>,
    /// The plan as the control side runs it, byte for byte, and its sha256.
    plan_text: Vec<u8>,
    plan_sha: String,
    /// OUT, where the node files are.
    out: PathBuf,
    /// The hosts' store (the same path on every host).
    store: String,
    /// The linked hosts each cluster has nodes on, and the drivers those nodes run with.
    placed: HashMap<String, HashMap<String, BTreeSet<&'static str>>>,
    hosts: Arc<Hosts>,
}

/// The linked hosts of a plan and the sessions with them, kept by the `Runtime` for as
/// long as it lives: a control process that runs many operations (or a loop that
/// watches a cluster) logs in to each host once.
pub struct Hosts {
    links: HashMap<String, HostLink>,
    /// The session with each host, opened at its first request.
    sessions: HashMap<String, Mutex<Option<Arc<Mux>>>>,
    /// `<host>/<cluster>/<node>` whose plan and files are on the host now.
    published: Mutex<HashSet<String>>,
    /// The last answer about each node, and when (for `pid` right after `start`).
    seen: Mutex<HashMap<String, (Instant, NodeAnswer)>>,
}

impl Hosts {
    /// The plan's hosts reached over a link; none when all are this machine.
    pub fn of(plan: &Plan) -> Option<Arc<Hosts>> {
        let links: HashMap<String, HostLink> = plan
            .hosts
            .iter()
            .filter_map(|h| Some((h.name.clone(), h.link.clone()?)))
            .collect();
        if links.is_empty() {
            return None;
        }
        Some(Arc::new(Hosts {
            sessions: links
                .keys()
                .map(|h| (h.clone(), Mutex::new(None)))
                .collect(),
            links,
            published: Mutex::new(HashSet::new()),
            seen: Mutex::new(HashMap::new()),
        }))
    }

    /// The host's session: the open one, or a new one (after a link that dropped).
    fn session(&self, host: &str) -> std::result::Result<Arc<Mux>, String> {
        let (Some(slot), Some(link)) = (self.sessions.get(host), self.links.get(host)) else {
            return Err("the plan does not reach this host over a link".into());
        };
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = slot.as_ref().filter(|m| m.closed().is_none()) {
            return Ok(Arc::clone(m));
        }
        let mux = Arc::new(open(link)?);
        *slot = Some(Arc::clone(&mux));
        Ok(mux)
    }

    /// Ends every session (a Slurm host's next job need not wait behind them).
    pub fn release(&self) {
        for slot in self.sessions.values() {
            slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl Sited {
    /// Wraps `local` when the plan has hosts reached over a link (`hosts`); else
    /// returns it.
    pub fn wrap(
        local: Box<dyn Driver>,
        plan: &Plan,
        plan_path: &Path,
        layout: &Layout,
        hosts: Option<&Arc<Hosts>>,
    ) -> Result<Box<dyn Driver>> {
        let Some(hosts) = hosts else {
            return Ok(local);
        };
        let mut placed: HashMap<String, HashMap<String, BTreeSet<&'static str>>> = HashMap::new();
        for n in plan
            .nodes
            .iter()
            .filter(|n| hosts.links.contains_key(&n.host))
        {
            let asked = plan
                .clusters
                .iter()
                .find(|c| c.name == n.cluster)
                .and_then(|c| c.hypervisor);
            placed
                .entry(n.cluster.clone())
                .or_default()
                .entry(n.host.clone())
                .or_default()
                .insert(host_driver(local.name(), n.hypervisor.or(asked)));
        }
        let plan_text = std::fs::read(plan_path).map_err(|e| Error::io("read", plan_path, e))?;
        Ok(Box::new(Sited {
            local,
            plan_sha: hostnode::sha256_hex(&plan_text),
            plan_text,
            out: layout.out.clone(),
            store: layout.store.display().to_string(),
            placed,
            hosts: Arc::clone(hosts),
        }))
    }

    fn remote<'a>(&self, n: &'a NodeCtx) -> Option<&'a str> {
        self.hosts
            .links
            .contains_key(&n.node.host)
            .then_some(n.node.host.as_str())
    }

    /// Puts the cluster's plan and the node's files on the host, where it lacks them.
    fn publish(&self, host: &str, mux: &Mux, n: &NodeCtx) -> std::result::Result<(), String> {
        let cluster = &n.cluster.name;
        let key = format!("{host}/{cluster}/{}", n.node.id);
        if self
            .hosts
            .published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
        {
            return Ok(());
        }
        let base = format!("clusters/{cluster}");
        let mut files: Vec<(String, Vec<u8>, u32)> =
            vec![(format!("{base}/plan.json"), self.plan_text.clone(), 0o644)];
        let dir = n.node.dir.trim_matches('/');
        let local = self.out.join(dir);
        // The node's own files (not the build's inputs in its subdirectories).
        if let Ok(entries) = std::fs::read_dir(&local) {
            for e in entries.flatten() {
                let path = e.path();
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                let bytes = std::fs::read(&path)
                    .map_err(|err| format!("cannot read `{}`: {err}", path.display()))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let mode = if meta.permissions().mode() & 0o044 == 0 {
                    0o600
                } else {
                    0o644
                };
                files.push((format!("{base}/{dir}/{name}"), bytes, mode));
            }
        }
        let paths: Vec<String> = files.iter().map(|f| f.0.clone()).collect();
        let have = mux.call(
            &Request::Sums {
                root: self.store.clone(),
                paths,
            },
            ASK_LIMIT,
        )?;
        let sums: Vec<Option<String>> = serde_json::from_value(have["sums"].clone())
            .map_err(|e| format!("the host answered something else than vocc-host ({e})"))?;
        for ((path, bytes, mode), had) in files.into_iter().zip(sums) {
            let sha256 = hostnode::sha256_hex(&bytes);
            if had.as_deref() == Some(sha256.as_str()) {
                continue;
            }
            mux.call(
                &Request::Put {
                    root: self.store.clone(),
                    path,
                    mode,
                    sha256,
                    hex: hostnode::to_hex(&bytes),
                },
                ASK_LIMIT,
            )?;
        }
        self.hosts
            .published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
        Ok(())
    }

    /// Asks the node's host to carry out `action` on it.
    fn ask(&self, host: &str, n: &NodeCtx, action: Action) -> Result<NodeAnswer> {
        let mux = self.hosts.session(host).map_err(|e| on_host(host, e))?;
        self.publish(host, &mux, n).map_err(|e| on_host(host, e))?;
        self.send(host, &mux, n, action)().0
    }

    /// Sends `action` for the node on the host's session; what is returned waits for
    /// the answer.
    fn send(
        &self,
        host: &str,
        mux: &Mux,
        n: &NodeCtx,
        action: Action,
    ) -> impl FnOnce() -> (Result<NodeAnswer>, Duration) + Send + 'static {
        let limit = ASK_LIMIT
            + match &action {
                Action::WaitReady { limit_ms } | Action::Exec { limit_ms, .. } => {
                    Duration::from_millis(*limit_ms)
                }
                Action::Stop { grace_ms, .. } => Duration::from_millis(*grace_ms),
                _ => Duration::ZERO,
            };
        let request = Request::Node(NodeRequest {
            store: self.store.clone(),
            cluster: n.cluster.name.clone(),
            node: n.node.id.clone(),
            driver: host_driver(
                self.local.name(),
                n.node.hypervisor.or(n.cluster.hypervisor),
            )
            .to_owned(),
            plan: self.plan_sha.clone(),
            segments: n.segments.clone(),
            action,
            // A node the plan no longer has travels with the request, as recorded.
            former: (!n.plan.nodes.iter().any(|m| m.id == n.node.id))
                .then(|| Box::new(n.node.clone())),
        });
        let sent = mux.send(&request);
        let (host, node, hosts) = (host.to_owned(), n.node.id.clone(), Arc::clone(&self.hosts));
        move || {
            let ticket = match sent {
                Ok(t) => t,
                Err(e) => return (Err(on_host(&host, e)), Duration::ZERO),
            };
            let (value, took) = ticket.wait(limit);
            let answer = value.and_then(|v| {
                serde_json::from_value::<NodeAnswer>(v)
                    .map_err(|e| format!("the host answered something else than vocc-host ({e})"))
            });
            let answer = match answer {
                Ok(a) => a,
                Err(e) => return (Err(on_host(&host, e)), took),
            };
            hosts
                .seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(node, (Instant::now(), answer.clone()));
            let r = match &answer.error {
                Some(e) => Err(on_host(&host, e.clone())),
                None => Ok(answer),
            };
            (r, took)
        }
    }

    /// The host's session when it is open and has the node's files: a request can then
    /// go without a wait.
    fn ready(&self, host: &str, n: &NodeCtx) -> Option<Arc<Mux>> {
        let slot = self.hosts.sessions.get(host)?;
        let mux = slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|m| m.closed().is_none())
            .map(Arc::clone)?;
        let key = format!("{host}/{}/{}", n.cluster.name, n.node.id);
        self.hosts
            .published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
            .then_some(mux)
    }

    fn detail(&self, host: &str, n: &NodeCtx, action: Action) -> Result<String> {
        self.ask(host, n, action).map(|a| a.ok.unwrap_or_default())
    }

    /// What the host said of the node within the last moment, if it did.
    fn fresh(&self, n: &NodeCtx) -> Option<NodeAnswer> {
        self.hosts
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&n.node.id)
            .filter(|(at, _)| at.elapsed() < Duration::from_secs(1))
            .map(|(_, a)| a.clone())
    }

    /// What the host said of the node within the last moment, else a fresh look.
    fn looked(&self, host: &str, n: &NodeCtx) -> Option<NodeAnswer> {
        self.fresh(n)
            .or_else(|| self.ask(host, n, Action::Observe).ok())
    }
}

fn on_host(host: &str, e: String) -> Error {
    Error::Other(format!("on host `{host}`: {e}"))
}

/// The driver a host runs a node with: Xen's for a node that runs under Xen there; for
/// KVM, the one the control side was asked for when it is a KVM driver (qemu, libvirt),
/// else qemu; `sim` stays `sim` everywhere.
fn host_driver(local: &'static str, runs: Option<crate::plan::Hypervisor>) -> &'static str {
    use crate::plan::Hypervisor;
    match (local, runs) {
        ("sim", _) => "sim",
        (_, Some(Hypervisor::Xen)) => "xen",
        ("libvirt", _) => "libvirt",
        _ => "qemu",
    }
}

/// This control side's own `vocc-host` (beside its program) and its sha256, read once.
fn own_program() -> Option<&'static (PathBuf, String)> {
    static OWN: std::sync::OnceLock<Option<(PathBuf, String)>> = std::sync::OnceLock::new();
    OWN.get_or_init(|| {
        let local = std::env::current_exe().ok()?.with_file_name("vocc-host");
        let sha = crate::relay::sha256_file(&local).ok()?;
        Some((local, sha))
    })
    .as_ref()
}

/// Opens a session with a host, installing this control side's `vocc-host` there
/// first if the host runs none or another build.
fn open(link: &HostLink) -> std::result::Result<Mux, String> {
    if let Some((local, want)) = own_program() {
        let mux = Mux::open(link)?;
        let hello = mux.call(&Request::Hello { sha256: true }, Duration::from_secs(60));
        if hello.is_ok_and(|h| h["sha256"].as_str() == Some(want.as_str())) {
            return Ok(mux);
        }
        drop(mux);
        crate::hostops::ensure_program(link, local, want)?;
    }
    Mux::open(link)
}

impl Driver for Sited {
    fn name(&self) -> &'static str {
        self.local.name()
    }

    fn stages_files(&self) -> bool {
        self.local.stages_files()
    }

    fn load(&self, n: &NodeCtx, times: &mut LoadTimes) -> Result<String> {
        let Some(host) = self.remote(n) else {
            return self.local.load(n, times);
        };
        let a = self.ask(host, n, Action::Load)?;
        times.config_ms = a.config_ms.unwrap_or_default();
        times.define_ms = a.define_ms.unwrap_or_default();
        Ok(a.ok.unwrap_or_default())
    }

    fn start(&self, n: &NodeCtx) -> Result<String> {
        match self.remote(n) {
            Some(host) => self.detail(host, n, Action::Start),
            None => self.local.start(n),
        }
    }

    fn wait_ready(&self, n: &NodeCtx, limit: Duration) -> Result<String> {
        match self.remote(n) {
            Some(host) => self.detail(
                host,
                n,
                Action::WaitReady {
                    limit_ms: limit.as_millis() as u64,
                },
            ),
            None => self.local.wait_ready(n, limit),
        }
    }

    fn begin(&self, n: &NodeCtx, change: Change) -> Option<Pending> {
        let host = self.remote(n)?;
        let mux = self.ready(host, n)?;
        let action = match change {
            Change::Pause => Action::Pause,
            Change::Unpause => Action::Unpause,
            Change::Stop { force, grace } => Action::Stop {
                force,
                grace_ms: grace.as_millis() as u64,
            },
            Change::Unload => Action::Unload,
        };
        let wait = self.send(host, &mux, n, action);
        Some(Box::new(move || {
            let (r, took) = wait();
            (r.map(|a| a.ok.unwrap_or_default()), took)
        }))
    }

    fn look(&self, nodes: &[NodeCtx]) -> bool {
        let mut all = true;
        let mut waits = Vec::new();
        for n in nodes {
            let Some(host) = self.remote(n) else {
                all = false;
                continue;
            };
            if self.fresh(n).is_some() {
                continue;
            }
            match self.ready(host, n) {
                Some(mux) => waits.push(self.send(host, &mux, n, Action::Observe)),
                None => all = false,
            }
        }
        // Each answer is kept as it is waited for; a host that did not answer is asked
        // again by `observe`.
        for wait in waits {
            all &= wait().0.is_ok();
        }
        all
    }

    fn pause(&self, n: &NodeCtx) -> Result<String> {
        match self.remote(n) {
            Some(host) => self.detail(host, n, Action::Pause),
            None => self.local.pause(n),
        }
    }

    fn unpause(&self, n: &NodeCtx) -> Result<String> {
        match self.remote(n) {
            Some(host) => self.detail(host, n, Action::Unpause),
            None => self.local.unpause(n),
        }
    }

    fn stop(&self, n: &NodeCtx, force: bool, grace: Duration) -> Result<String> {
        match self.remote(n) {
            Some(host) => self.detail(
                host,
                n,
                Action::Stop {
                    force,
                    grace_ms: grace.as_millis() as u64,
                },
            ),
            None => self.local.stop(n, force, grace),
        }
    }

    fn unload(&self, n: &NodeCtx) -> Result<String> {
        match self.remote(n) {
            Some(host) => self.detail(host, n, Action::Unload),
            None => self.local.unload(n),
        }
    }

    fn observe(&self, n: &NodeCtx) -> Option<Observed> {
        match self.remote(n) {
            Some(host) => self
                .looked(host, n)?
                .observed
                .as_deref()
                .and_then(hostnode::observed_from),
            None => self.local.observe(n),
        }
    }

    fn console_log(&self, n: &NodeCtx) -> Option<PathBuf> {
        match self.remote(n) {
            Some(_) => None,
            None => self.local.console_log(n),
        }
    }

    fn console_text(&self, n: &NodeCtx) -> Result<Vec<u8>> {
        match self.remote(n) {
            Some(host) => Ok(self
                .ask(host, n, Action::Console)?
                .console
                .unwrap_or_default()
                .into_bytes()),
            None => self.local.console_text(n),
        }
    }

    fn pid(&self, n: &NodeCtx) -> Option<i32> {
        match self.remote(n) {
            Some(host) => self.looked(host, n)?.pid,
            None => self.local.pid(n),
        }
    }

    fn exec(&self, n: &NodeCtx, argv: &[String], limit: Duration) -> Result<ExecOutput> {
        let Some(host) = self.remote(n) else {
            return self.local.exec(n, argv, limit);
        };
        let a = self.ask(
            host,
            n,
            Action::Exec {
                argv: argv.to_vec(),
                limit_ms: limit.as_millis() as u64,
            },
        )?;
        let e = a.exec.unwrap_or_default();
        Ok(ExecOutput {
            status: e.status,
            stdout: e.stdout.into_bytes(),
            stderr: e.stderr.into_bytes(),
        })
    }

    fn release(&self) {
        self.hosts.release();
    }

    /// This machine's leftovers, then those of every linked host the cluster has nodes
    /// on, all hosts at once. A host
    /// that cannot be asked is named in the error; the others are reclaimed regardless.
    fn reclaim(&self, layout: &Layout, cluster: &str) -> Result<Vec<String>> {
        let mut killed = self.local.reclaim(layout, cluster)?;
        // Each host reclaims with every driver its nodes of the cluster run with.
        let asks: Vec<(&String, Request)> = self
            .placed
            .get(cluster)
            .into_iter()
            .flatten()
            .flat_map(|(host, drivers)| {
                drivers.iter().map(move |d| {
                    let request = Request::Reclaim(ReclaimRequest {
                        store: self.store.clone(),
                        cluster: cluster.to_owned(),
                        driver: (*d).to_owned(),
                    });
                    (host, request)
                })
            })
            .collect();
        let mut errors = Vec::new();
        let answers: Vec<(String, std::result::Result<Reclaimed, String>)> =
            std::thread::scope(|s| {
                let running: Vec<_> = asks
                    .iter()
                    .map(|(host, request)| {
                        s.spawn(move || {
                            let r = self.hosts.session(host).and_then(|m| {
                                let v = m.call(request, ASK_LIMIT)?;
                                serde_json::from_value::<Reclaimed>(v).map_err(|e| e.to_string())
                            });
                            ((*host).clone(), r)
                        })
                    })
                    .collect();
                running
                    .into_iter()
                    .map(|a| a.join().expect("a reclaim does not panic"))
                    .collect()
            });
        for (host, r) in answers {
            match r {
                Ok(r) => {
                    killed.extend(r.killed.into_iter().map(|k| format!("{k} on `{host}`")));
                    errors.extend(r.errors.into_iter().map(|e| format!("host `{host}`: {e}")));
                }
                Err(e) => errors.push(format!("host `{host}`: {e}")),
            }
        }
        if errors.is_empty() {
            Ok(killed)
        } else {
            errors.sort();
            Err(Error::Other(format!(
                "could not reclaim everything: {}",
                errors.join("; ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host_driver;
    use crate::plan::Hypervisor;

    #[test]
    fn a_host_runs_each_node_with_the_driver_of_its_hypervisor() {
        assert_eq!(host_driver("qemu", Some(Hypervisor::Xen)), "xen");
        assert_eq!(host_driver("qemu", Some(Hypervisor::Kvm)), "qemu");
        assert_eq!(host_driver("libvirt", Some(Hypervisor::Kvm)), "libvirt");
        assert_eq!(host_driver("xen", Some(Hypervisor::Kvm)), "qemu");
        assert_eq!(host_driver("libvirt", Some(Hypervisor::Xen)), "xen");
        assert_eq!(host_driver("sim", Some(Hypervisor::Xen)), "sim");
        assert_eq!(host_driver("qemu", None), "qemu");
    }
}
