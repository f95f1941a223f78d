//! The batch systems other than Slurm, on every shipped appliance that uses them:
//! HTCondor's configuration read by HTCondor's own reader (the `htcondor2` bindings),
//! PBS/Torque's files checked against the formats Torque documents (no Torque runs
//! here, so a small validator in this file stands in for it), and the boot hook run
//! against a fake root to show which daemons it starts on each role. Each check also
//! runs on a deliberately broken sample that it must reject.

mod common;

use common::{require, run};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;
use vocc_compiler::build::{build, BuildOptions};
use vocc_compiler::model::{Cluster, Model, Node, Role, SchedulerKind};
use vocc_compiler::{compile, FsWorld, Options};

const LIMIT: Duration = Duration::from_secs(30);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped appliances, and the clusters of `tests/inputs/batch/` (batch systems as
/// the seeds ran them where no release carries their software), whose roles use the
/// batch system `kind` (as written in a `scheduler` statement), sorted.
fn shipped(kind: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = ["appliances", "tests/inputs/batch"]
        .iter()
        .flat_map(|d| fs::read_dir(root().join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "voc"))
        .filter(|p| {
            fs::read_to_string(p)
                .unwrap()
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("scheduler {kind} ")))
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no shipped appliance uses `{kind}`");
    out
}

/// A configuration-only build of one appliance.
struct Built {
    _tmp: TempDir,
    model: Model,
    nodes: PathBuf,
    name: String,
}

impl Built {
    fn file(&self, node: &Node, path: &str) -> PathBuf {
        self.nodes.join(&node.id).join("files").join(path)
    }

    fn read(&self, node: &Node, path: &str) -> String {
        let p = self.file(node, path);
        fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {}: {e}", self.name, p.display()))
    }
}

/// Builds `file` (configuration only), with `templates` in place of the embedded ones
/// when given. An appliance that does not place on a site of its own (or on the
/// default one) is built for the shipped site `chiba.voc`, as its golden output is.
fn generate(file: &Path, templates: Option<&Path>) -> Built {
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let compiled = |site: Option<PathBuf>| {
        let options = Options {
            site,
            ..Default::default()
        };
        let c = compile(&FsWorld, file, &options).unwrap();
        let model = c.model?;
        let plan = vocc_compiler::plan::plan(&model).ok()?;
        Some((model, plan))
    };
    let (model, plan) = compiled(None)
        .or_else(|| compiled(Some(root().join("appliances/chiba.voc"))))
        .unwrap_or_else(|| panic!("{name} does not compile and place"));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let options = BuildOptions {
        out: out.clone(),
        templates: templates.map(Path::to_path_buf),
        secrets: tmp.path().join("secrets"),
        config_only: true,
        store: None,
        json_events: false,
    };
    build(&model, plan, &options).unwrap();
    Built {
        _tmp: tmp,
        model,
        nodes: out.join("nodes"),
        name,
    }
}

/// The clusters of `model` that use the batch system `kind`, each with its controller
/// node.
fn clusters_of(model: &Model, kind: SchedulerKind) -> Vec<(&Cluster, &Node)> {
    model
        .clusters
        .iter()
        .filter_map(|c| {
            let s = c.scheduler.as_ref().filter(|s| s.kind == kind)?;
            let head = c.nodes_of(&s.controller).next()?;
            Some((c, head))
        })
        .collect()
}

fn role_of<'a>(cluster: &'a Cluster, node: &Node) -> &'a Role {
    cluster.role(&node.role).unwrap()
}

// ---------------------------------------------------------------------------------
// HTCondor

/// Reads `file` with HTCondor's configuration reader (the judge script) and returns
/// each of `names` as `{value, classad}`; an error when the reader refuses the file.
fn condor_read(file: &Path, names: &[&str]) -> Result<Value, String> {
    let python = require("python3", "python3");
    let ran = run(
        Command::new(python)
            .arg(root().join("tests/judges/condor_config.py"))
            .arg(file)
            .args(names),
        LIMIT,
    );
    if !ran.success() {
        return Err(ran.report());
    }
    serde_json::from_str(&ran.stdout).map_err(|e| format!("{e}: {}", ran.report()))
}

/// A list macro (`DAEMON_LIST`, `ALLOW_*`) as HTCondor splits it: at commas and white
/// space.
fn list(v: &Value) -> BTreeSet<String> {
    v.as_str()
        .unwrap_or_default()
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// What is wrong with the HTCondor configuration of every node of `built`, as HTCondor
/// reads it: empty when every node gets what its role is meant to run.
fn condor_problems(built: &Built) -> Vec<String> {
    let names = [
        "CONDOR_HOST",
        "DAEMON_LIST",
        "START",
        "SUSPEND",
        "PREEMPT",
        "ALLOW_READ",
        "ALLOW_WRITE",
        "ALLOW_DAEMON",
        "ALLOW_ADMINISTRATOR",
        "UID_DOMAIN",
        "FILESYSTEM_DOMAIN",
        "TRUST_UID_DOMAIN",
        "VOCC_VO",
        "STARTD_ATTRS",
    ];
    let mut problems = Vec::new();
    let clusters = clusters_of(&built.model, SchedulerKind::Condor);
    assert!(
        !clusters.is_empty(),
        "{} has no HTCondor cluster",
        built.name
    );
    for (cluster, head) in clusters {
        let head_fqdn = format!("{}.{}", head.hostname, cluster.domain);
        // The nodes of a role share one file: HTCondor reads it once per role.
        for role in cluster.roles.iter().filter(|r| r.scheduler.is_some()) {
            let s = role.scheduler.as_ref().unwrap();
            let node = cluster.nodes_of(&role.name).next().unwrap();
            let file = built.file(node, "etc/condor/condor_config.local");
            let text = built.read(node, "etc/condor/condor_config.local");
            for other in cluster.nodes_of(&role.name) {
                if built.read(other, "etc/condor/condor_config.local") != text {
                    problems.push(format!("{}: its file differs from {}'s", other.id, node.id));
                }
            }
            let got = match condor_read(&file, &names) {
                Ok(got) => got,
                Err(e) => {
                    problems.push(format!("{}: HTCondor refuses the file: {e}", node.id));
                    continue;
                }
            };
            let mut expect = |what: &str, ok: bool| {
                if !ok {
                    problems.push(format!("{}: {what}: {}", node.id, got));
                }
            };
            expect(
                "CONDOR_HOST is the head's name",
                got["CONDOR_HOST"]["value"] == head_fqdn.as_str(),
            );
            let mut daemons = vec!["MASTER"];
            if s.controller {
                daemons.extend(["COLLECTOR", "NEGOTIATOR", "SCHEDD"]);
            }
            if s.compute {
                daemons.push("STARTD");
            }
            if s.submit {
                daemons.push("SCHEDD");
            }
            expect(
                "DAEMON_LIST runs the role's daemons",
                list(&got["DAEMON_LIST"]["value"]) == set(&daemons),
            );
            if s.compute {
                expect(
                    "a compute node starts jobs and lets them run",
                    got["START"]["classad"] == true
                        && got["SUSPEND"]["classad"] == false
                        && got["PREEMPT"]["classad"] == false,
                );
            }
            // Host-based security: the cluster's network may read, write and talk
            // daemon to daemon; only the central manager and the node itself
            // administer.
            let network = cluster
                .networks
                .iter()
                .find(|n| n.name == head.nics[0].network)
                .map(|n| format!("{}/{}", n.subnet, n.prefix))
                .unwrap();
            for level in ["ALLOW_READ", "ALLOW_WRITE", "ALLOW_DAEMON"] {
                expect(
                    &format!("{level} is the cluster's network"),
                    list(&got[level]["value"]) == set(&[network.as_str(), "127.0.0.1"]),
                );
            }
            expect(
                "ALLOW_ADMINISTRATOR is the head and the node itself",
                list(&got["ALLOW_ADMINISTRATOR"]["value"])
                    == set(&[head_fqdn.as_str(), "127.0.0.1"]),
            );
            for domain in ["UID_DOMAIN", "FILESYSTEM_DOMAIN"] {
                expect(
                    &format!("{domain} is the cluster's domain"),
                    got[domain]["value"] == cluster.domain.as_str(),
                );
            }
            expect(
                "TRUST_UID_DOMAIN is true",
                got["TRUST_UID_DOMAIN"]["classad"] == true,
            );
            // The VO: one attribute, a ClassAd string that is the VO.
            expect(
                "VOCC_VO is the VO, as a ClassAd string",
                got["VOCC_VO"]["classad"] == cluster.vo.as_str()
                    && got["VOCC_VO"]["value"]
                        .as_str()
                        .is_some_and(|v| v.starts_with('"')),
            );
            expect(
                "the machine ad carries exactly one vocc attribute",
                list(&got["STARTD_ATTRS"]["value"]) == set(&["VOCC_VO"]),
            );
        }
    }
    problems
}

#[test]
fn htcondor_reads_what_each_role_is_meant_to_run() {
    for file in shipped("condor") {
        let built = generate(&file, None);
        let problems = condor_problems(&built);
        assert!(problems.is_empty(), "{}: {problems:#?}", built.name);
    }
}

/// A site's template that changes `from` into `to` in the embedded HTCondor template.
fn broken_condor_template(dir: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(root().join("templates/condor_config.local.hbs")).unwrap();
    assert!(text.contains(from), "the template has no `{from}`");
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join("condor_config.local.hbs"),
        text.replacen(from, to, 1),
    )
    .unwrap();
}

#[test]
fn htcondor_check_rejects_a_broken_template() {
    let file = &shipped("condor")[0];
    let cases = [
        // A dropped line: the startd would not run.
        ("DAEMON_LIST = {{condor.daemons}}\n", "", "DAEMON_LIST"),
        // A dropped line: daemons of other nodes are refused.
        (
            "ALLOW_DAEMON = {{scheduler.network.cidr}}, 127.0.0.1\n",
            "",
            "ALLOW_DAEMON",
        ),
        // The central manager's short name only.
        (
            "CONDOR_HOST = {{scheduler.controller.fqdn}}",
            "CONDOR_HOST = {{scheduler.controller.hostname}}",
            "CONDOR_HOST",
        ),
        // A second attribute in the machine ad.
        (
            "$(STARTD_ATTRS) VOCC_VO",
            "$(STARTD_ATTRS) VOCC_VO VOCC_EXTRA",
            "one vocc attribute",
        ),
        // The VO outside a ClassAd string: an attribute reference, not the VO.
        (
            "VOCC_VO = \"{{condor_str cluster.vo}}\"",
            "VOCC_VO = {{cluster.vo}}",
            "VOCC_VO",
        ),
        // Corrupt syntax: HTCondor's reader refuses a line that is no assignment.
        (
            "TRUST_UID_DOMAIN = True",
            "TRUST_UID_DOMAIN True",
            "refuses",
        ),
    ];
    for (from, to, named) in cases {
        let tmp = tempfile::tempdir().unwrap();
        broken_condor_template(tmp.path(), from, to);
        let built = generate(file, Some(tmp.path()));
        let problems = condor_problems(&built);
        assert!(
            problems.iter().any(|p| p.contains(named)),
            "changing `{from}` into `{to}` went unnoticed (want `{named}`): {problems:#?}"
        );
    }
}

// ---------------------------------------------------------------------------------
// PBS/Torque

/// A host name as Torque's files take it: labels of letters, digits and `-`, joined by
/// dots.
fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A node property or queue name: letters, digits, `_`, `-` and `.`, starting with a
/// letter or digit.
fn is_word(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The lines of a Torque file that say something: without blank lines and `#`
/// comments.
fn meaningful(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// `server_priv/nodes`: one node per line, `NAME[:ts] [np=N] [gpus=N] [PROPERTY...]`.
/// Returns each node's `np` and properties.
fn pbs_nodes(text: &str) -> Result<BTreeMap<String, (u32, Vec<String>)>, String> {
    let mut out = BTreeMap::new();
    for (n, line) in meaningful(text) {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap();
        let host = name.strip_suffix(":ts").unwrap_or(name);
        if !is_hostname(host) {
            return Err(format!("line {n}: `{name}` is no node name"));
        }
        let mut np = None;
        let mut properties = Vec::new();
        for w in words {
            if let Some((key, value)) = w.split_once('=') {
                let count: u32 = value
                    .parse()
                    .map_err(|_| format!("line {n}: `{w}`: the count is no number"))?;
                match key {
                    "np" if np.is_none() && count > 0 => np = Some(count),
                    "np" => return Err(format!("line {n}: `{w}`: np is given twice or is 0")),
                    "gpus" => {}
                    _ => return Err(format!("line {n}: `{w}` is no node attribute")),
                }
            } else if is_word(w) {
                properties.push(w.to_owned());
            } else {
                return Err(format!("line {n}: `{w}` is no node property"));
            }
        }
        if out
            .insert(host.to_owned(), (np.unwrap_or(1), properties))
            .is_some()
        {
            return Err(format!("line {n}: node `{host}` is listed twice"));
        }
    }
    Ok(out)
}

/// `server_name`: the server's host name, one line.
fn pbs_server_name(text: &str) -> Result<String, String> {
    let lines: Vec<(usize, &str)> = meaningful(text).collect();
    match lines.as_slice() {
        [(_, name)] if is_hostname(name) => Ok(name.to_string()),
        [(n, name)] => Err(format!("line {n}: `{name}` is no host name")),
        _ => Err(format!("{} lines: want one host name", lines.len())),
    }
}

/// What `mom_priv/config` says: the server, the log mask, and the `$usecp` pairs.
#[derive(Debug, Default)]
struct MomConfig {
    servers: Vec<String>,
    usecp: Vec<(String, String, String)>,
}

/// `mom_priv/config`: `$NAME VALUE...` directives (here `$pbsserver HOST`, `$clienthost
/// HOST`, `$logevent MASK`, `$restricted HOST`, `$usecp HOST:PATH PATH`), and static
/// resources `NAME VALUE`.
fn pbs_mom_config(text: &str) -> Result<MomConfig, String> {
    let mut out = MomConfig::default();
    for (n, line) in meaningful(text) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let err = |why: &str| Err(format!("line {n}: `{line}`: {why}"));
        match words.as_slice() {
            ["$pbsserver" | "$clienthost" | "$restricted", host] => {
                let pattern = words[0] == "$restricted" && host.contains('*');
                if !(is_hostname(host) || pattern) {
                    return err("no host name");
                }
                if words[0] == "$pbsserver" {
                    out.servers.push(host.to_string());
                }
            }
            ["$logevent", mask] => {
                let ok = match mask.strip_prefix("0x") {
                    Some(hex) => u32::from_str_radix(hex, 16).is_ok(),
                    None => mask.parse::<u32>().is_ok(),
                };
                if !ok {
                    return err("the mask is no number");
                }
            }
            ["$usecp", from, to] => {
                let Some((host, path)) = from.split_once(':') else {
                    return err("the source is no HOST:PATH");
                };
                let host_ok = host == "*" || is_hostname(host.strip_prefix("*.").unwrap_or(host));
                if !host_ok || !path.starts_with('/') || !to.starts_with('/') {
                    return err("want `$usecp HOST:/PATH /PATH`");
                }
                out.usecp
                    .push((host.to_owned(), path.to_string(), to.to_string()));
            }
            [w, ..] if w.starts_with('$') => {
                return err("no directive this file knows, or the wrong number of values")
            }
            [name, _value, ..] if is_word(name) => {}
            _ => return err("neither a `$` directive nor a static resource"),
        }
    }
    if out.servers.is_empty() {
        return Err("no `$pbsserver`: pbs_mom would not know its server".into());
    }
    Ok(out)
}

/// What a qmgr script sets up: the queues, each with its attributes, and the server's
/// attributes.
#[derive(Debug, Default)]
struct Qmgr {
    queues: BTreeMap<String, BTreeMap<String, String>>,
    server: BTreeMap<String, String>,
}

fn is_bool(v: &str) -> bool {
    // The forms Torque's attributes take for a boolean.
    matches!(
        v,
        "TRUE" | "True" | "true" | "Y" | "y" | "1" | "FALSE" | "False" | "false" | "N" | "n" | "0"
    )
}

/// Whether `value` is of the type of the queue attribute `attr` (those vocc sets and
/// their close kin).
fn queue_attr(attr: &str, value: &str) -> Result<(), String> {
    let ok = match attr {
        "queue_type" => matches!(
            value.to_ascii_lowercase().as_str(),
            "execution" | "e" | "route" | "r"
        ),
        "enabled" | "started" | "acl_group_enable" | "acl_group_sloppy" | "acl_user_enable" => {
            is_bool(value)
        }
        "acl_groups" | "acl_users" => value.split(',').all(is_word),
        "max_running" | "max_queuable" | "priority" => value.parse::<i64>().is_ok(),
        a if a.starts_with("resources_default.") || a.starts_with("resources_max.") => {
            !value.is_empty() && !value.contains(char::is_whitespace)
        }
        _ => return Err(format!("`{attr}` is no queue attribute")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("`{value}` is no value of `{attr}`"))
    }
}

/// Whether `value` is of the type of the server attribute `attr`.
fn server_attr(attr: &str, value: &str, qmgr: &Qmgr) -> Result<(), String> {
    let user_at_host = |v: &str| {
        v.split(',').all(|u| {
            u.split_once('@')
                .is_some_and(|(user, host)| is_word(user) && (host == "*" || is_hostname(host)))
        })
    };
    let ok = match attr {
        "scheduling" | "acl_host_enable" | "query_other_jobs" => is_bool(value),
        "acl_hosts" | "submit_hosts" => value.split(',').all(is_hostname),
        "managers" | "operators" => user_at_host(value),
        "keep_completed" | "node_check_rate" | "scheduler_iteration" => {
            value.parse::<u32>().is_ok()
        }
        "default_queue" => {
            if !qmgr.queues.contains_key(value) {
                return Err(format!(
                    "default_queue `{value}` is no queue created before"
                ));
            }
            true
        }
        _ => return Err(format!("`{attr}` is no server attribute")),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("`{value}` is no value of `{attr}`"))
    }
}

/// A qmgr script: `create queue NAME`, `set queue NAME ATTR = VALUE`, `set server ATTR =
/// VALUE`, one command per line, a queue created before it is set.
fn pbs_qmgr(text: &str) -> Result<Qmgr, String> {
    let mut q = Qmgr::default();
    for (n, line) in meaningful(text) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let err = |why: String| Err(format!("line {n}: `{line}`: {why}"));
        match words.as_slice() {
            ["create", "queue", name] => {
                if !is_word(name) || name.len() > 15 {
                    return err("no queue name".into());
                }
                if q.queues.insert(name.to_string(), BTreeMap::new()).is_some() {
                    return err("the queue exists".into());
                }
            }
            ["set", "queue", name, attr, "=", value] => {
                if let Err(e) = queue_attr(attr, value) {
                    return err(e);
                }
                let Some(attrs) = q.queues.get_mut(*name) else {
                    return err(format!("queue `{name}` is not created yet"));
                };
                attrs.insert(attr.to_string(), value.to_string());
            }
            ["set", "server", attr, "=", value] => {
                if let Err(e) = server_attr(attr, value, &q) {
                    return err(e);
                }
                q.server.insert(attr.to_string(), value.to_string());
            }
            _ => return err("no qmgr command this file may hold".into()),
        }
    }
    for (name, attrs) in &q.queues {
        for attr in ["queue_type", "enabled", "started"] {
            if !attrs.contains_key(attr) {
                return Err(format!("queue `{name}` has no `{attr}`: it takes no jobs"));
            }
        }
    }
    Ok(q)
}

fn yes(v: Option<&String>) -> bool {
    v.is_some_and(|v| matches!(v.as_str(), "TRUE" | "True" | "true" | "Y" | "y" | "1"))
}

#[test]
fn torque_files_follow_torques_formats_and_say_what_the_cluster_is() {
    for file in shipped("pbs") {
        let built = generate(&file, None);
        let name = &built.name;
        let clusters = clusters_of(&built.model, SchedulerKind::Pbs);
        assert!(!clusters.is_empty(), "{name} has no PBS cluster");
        for (cluster, head) in clusters {
            let at = |what: &str| format!("{name}: cluster {}: {what}", cluster.name);
            let server = pbs_server_name(&built.read(head, "var/spool/torque/server_name"))
                .unwrap_or_else(|e| panic!("{}: {e}", at("server_name")));
            assert_eq!(server, head.hostname, "{}", at("server_name"));

            // Every compute node, once, with its role's CPUs and the queues it serves.
            let nodes = pbs_nodes(&built.read(head, "var/spool/torque/server_priv/nodes"))
                .unwrap_or_else(|e| panic!("{}: {e}", at("nodes")));
            let mut expected = BTreeMap::new();
            for node in &cluster.nodes {
                let role = role_of(cluster, node);
                let s = role.scheduler.as_ref();
                if s.is_some_and(|s| s.compute) {
                    expected.insert(node.hostname.clone(), role.cpu);
                }
            }
            let got: BTreeMap<String, u32> =
                nodes.iter().map(|(h, (np, _))| (h.clone(), *np)).collect();
            assert_eq!(got, expected, "{}", at("nodes"));

            // The server is configured at boot by a script the shell reads, which feeds
            // qmgr the file below.
            let script = built.read(head, "etc/vocc/batch/configure");
            assert!(script.contains("/etc/vocc/pbs/qmgr"), "{}", at("configure"));
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("configure");
            fs::write(&path, &script).unwrap();
            let parsed = Command::new("sh").arg("-n").arg(&path).output().unwrap();
            assert!(
                parsed.status.success(),
                "{}: {}",
                at("configure"),
                String::from_utf8_lossy(&parsed.stderr)
            );

            // The queues: each takes jobs and reaches some node through its property.
            let qmgr = pbs_qmgr(&built.read(head, "etc/vocc/pbs/qmgr"))
                .unwrap_or_else(|e| panic!("{}: {e}", at("qmgr")));
            let queues: BTreeSet<&String> = qmgr.queues.keys().collect();
            let declared: BTreeSet<&String> = cluster
                .scheduler
                .as_ref()
                .unwrap()
                .queues
                .iter()
                .map(|q| &q.name)
                .collect();
            assert_eq!(queues, declared, "{}", at("qmgr queues"));
            // A queue for a VO takes the jobs of the VO's Unix group only.
            for q in &cluster.scheduler.as_ref().unwrap().queues {
                let attrs = &qmgr.queues[&q.name];
                match &q.vo {
                    Some(vo) => assert!(
                        yes(attrs.get("acl_group_enable")) && attrs.get("acl_groups") == Some(vo),
                        "{}",
                        at(&format!("queue {} is not limited to `{vo}`", q.name))
                    ),
                    None => assert!(
                        !yes(attrs.get("acl_group_enable")),
                        "{}",
                        at(&format!("queue {} is limited to a group", q.name))
                    ),
                }
            }
            for (q, attrs) in &qmgr.queues {
                assert!(
                    yes(attrs.get("enabled")) && yes(attrs.get("started")),
                    "{}",
                    at(&format!("queue {q} is not enabled and started"))
                );
                let need = attrs
                    .get("resources_default.neednodes")
                    .unwrap_or_else(|| panic!("{}", at(&format!("queue {q} has no neednodes"))));
                assert!(
                    nodes.values().any(|(_, props)| props.contains(need)),
                    "{}",
                    at(&format!("no node has the property `{need}` of queue {q}"))
                );
            }
            assert!(yes(qmgr.server.get("scheduling")), "{}", at("scheduling"));
            assert_eq!(
                qmgr.server.get("managers"),
                Some(&format!("root@{}", head.hostname)),
                "{}",
                at("managers")
            );

            // Each compute node's MOM: its server, and local copies for NFS mounts.
            for node in &cluster.nodes {
                let role = role_of(cluster, node);
                if !role.scheduler.as_ref().is_some_and(|s| s.compute) {
                    continue;
                }
                let mom = pbs_mom_config(&built.read(node, "var/spool/torque/mom_priv/config"))
                    .unwrap_or_else(|e| panic!("{}: {e}", at(&format!("{} mom config", node.id))));
                assert_eq!(
                    mom.servers,
                    std::slice::from_ref(&server),
                    "{}",
                    at(&node.id)
                );
                let mounts: BTreeSet<(String, String)> = role
                    .mounts
                    .iter()
                    .map(|m| (m.path.clone(), m.at.clone()))
                    .collect();
                let usecp: BTreeSet<(String, String)> = mom
                    .usecp
                    .iter()
                    .map(|(_, from, to)| (from.clone(), to.clone()))
                    .collect();
                assert_eq!(usecp, mounts, "{}", at(&format!("{} $usecp", node.id)));
            }
        }
    }
}

#[test]
fn torque_validator_rejects_broken_samples() {
    // The good forms first, so that a validator that refuses everything is noticed.
    assert!(pbs_nodes("# c\nworker1 np=2 batch osg\nworker2:ts\nw3 np=1 gpus=1\n").is_ok());
    assert_eq!(pbs_server_name("head\n").unwrap(), "head");
    assert!(
        pbs_mom_config("$pbsserver head\n$logevent 0x1ff\n$usecp *:/home /home\narch x86\n")
            .is_ok()
    );
    assert!(pbs_qmgr(
        "create queue b\nset queue b queue_type = Execution\nset queue b enabled = True\n\
         set queue b started = True\nset server default_queue = b\n"
    )
    .is_ok());

    for bad in [
        "worker1 np=0\n",
        "worker1 np=two\n",
        "worker1 np=1 np=2\n",
        "worker1 np=1\nworker1 np=1\n",
        "worker_1 np=1\n",
        "worker1 np=1 batch,osg\n",
        "worker1 cpus=2\n",
    ] {
        assert!(pbs_nodes(bad).is_err(), "nodes accepted: {bad:?}");
    }
    for bad in ["", "head\nother\n", "head node\n", "-head\n"] {
        assert!(
            pbs_server_name(bad).is_err(),
            "server_name accepted: {bad:?}"
        );
    }
    for bad in [
        "$logevent 255\n",
        "$pbsserver\n",
        "pbsserver head\n",
        "$pbsserver head other\n",
        "$pbsserver head\n$usecp /home /home\n",
        "$pbsserver head\n$usecp *:/home\n",
        "$pbsserver head\n$usecp *:home /home\n",
        "$pbsserver head\n$logevent all\n",
        "$pbsserver head\n$nosuch 1\n",
    ] {
        assert!(pbs_mom_config(bad).is_err(), "mom config accepted: {bad:?}");
    }
    let good = "create queue b\nset queue b queue_type = Execution\n\
                set queue b enabled = True\nset queue b started = True\n";
    for bad in [
        "set queue b enabled = True\ncreate queue b\n".to_owned(),
        format!("{good}set queue b enabled = Maybe\n"),
        format!("{good}set queue b queue_type = Bogus\n"),
        format!("{good}set server default_queue = nosuch\n"),
        format!("{good}set server keep_completed = soon\n"),
        format!("{good}set server managers = root\n"),
        format!("{good}set queue b nosuch = 1\n"),
        format!("{good}set queue b enabled True\n"),
        format!("{good}create queue b\n"),
        "create queue b\nset queue b queue_type = Execution\n".to_owned(),
        format!("{good}delete queue b\n"),
    ] {
        assert!(pbs_qmgr(&bad).is_err(), "qmgr accepted: {bad:?}");
    }
}

#[test]
fn torque_check_rejects_a_broken_template() {
    // A site's template that drops the server's name from the MOM's configuration.
    let tmp = tempfile::tempdir().unwrap();
    let text = fs::read_to_string(root().join("templates/pbs-mom_config.hbs")).unwrap();
    fs::write(
        tmp.path().join("pbs-mom_config.hbs"),
        text.replacen("$pbsserver {{scheduler.controller.hostname}}\n", "", 1),
    )
    .unwrap();
    let file = &shipped("pbs")[0];
    let built = generate(file, Some(tmp.path()));
    let (cluster, _) = clusters_of(&built.model, SchedulerKind::Pbs)[0];
    let node = cluster
        .nodes
        .iter()
        .find(|n| {
            role_of(cluster, n)
                .scheduler
                .as_ref()
                .is_some_and(|s| s.compute)
        })
        .unwrap();
    let e = pbs_mom_config(&built.read(node, "var/spool/torque/mom_priv/config")).unwrap_err();
    assert!(e.contains("$pbsserver"), "{e}");
}

// ---------------------------------------------------------------------------------
// The boot hook

/// Every batch system daemon's service in a fake Debian root, as a shared layer with
/// every package installed has them: systemd units enabled in
/// multi-user.target.wants, and (for `sysv`) SysV scripts started in rc2.d-rc5.d.
fn fake_root(root: &Path, units: &[&str], sysv: &[&str]) {
    let lib = root.join("lib/systemd/system");
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&lib).unwrap();
    fs::create_dir_all(&wants).unwrap();
    for unit in units {
        let file = format!("{unit}.service");
        fs::write(lib.join(&file), "[Service]\n").unwrap();
        std::os::unix::fs::symlink(format!("/lib/systemd/system/{file}"), wants.join(&file))
            .unwrap();
    }
    fs::create_dir_all(root.join("etc/init.d")).unwrap();
    for script in sysv {
        fs::write(root.join("etc/init.d").join(script), "#!/bin/sh\n").unwrap();
        for level in 2..=5 {
            let dir = root.join(format!("etc/rc{level}.d"));
            fs::create_dir_all(&dir).unwrap();
            std::os::unix::fs::symlink(
                format!("../init.d/{script}"),
                dir.join(format!("S02{script}")),
            )
            .unwrap();
        }
    }
}

/// The services the fake root starts at boot: enabled units and SysV scripts started in
/// every one of rc2.d-rc5.d.
fn started(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    for e in fs::read_dir(wants).into_iter().flatten() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        out.insert(name.trim_end_matches(".service").to_owned());
    }
    let by_level: Vec<BTreeSet<String>> = (2..=5)
        .map(|level| {
            fs::read_dir(root.join(format!("etc/rc{level}.d")))
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    let name = e.unwrap().file_name().to_string_lossy().into_owned();
                    let rest = name.strip_prefix('S')?;
                    (rest.len() > 2 && rest[..2].chars().all(|c| c.is_ascii_digit()))
                        .then(|| rest[2..].to_owned())
                })
                .collect()
        })
        .collect();
    let all = by_level
        .iter()
        .skip(1)
        .fold(by_level[0].clone(), |acc, s| &acc & s);
    out.extend(all);
    out
}

/// Runs the boot hook for `node` of `built` against a fresh fake root with `units` and
/// `sysv` services; returns the services it leaves started and the hook's output.
fn hook(built: &Built, node: &Node, units: &[&str], sysv: &[&str]) -> (BTreeSet<String>, String) {
    let tmp = tempfile::tempdir().unwrap();
    let drive = tmp.path().join("drive");
    let target = tmp.path().join("root");
    fake_root(&target, units, sysv);
    fs::create_dir_all(drive.join("vocc")).unwrap();
    // The node's files as the config drive carries them; node.env with no units of its
    // own, so that what starts comes from the rendered files alone.
    let copied = Command::new("cp")
        .arg("-a")
        .arg(built.nodes.join(&node.id).join("files"))
        .arg(drive.join("vocc/files"))
        .status()
        .unwrap();
    assert!(copied.success());
    fs::write(
        drive.join("vocc/node.env"),
        format!(
            "VOCC_NODE='{}'\nVOCC_HOSTNAME='{}'\n",
            node.id, node.hostname
        ),
    )
    .unwrap();
    // The hook may touch the machine (host name, mounts, swap, addresses): here those
    // programs do nothing.
    let bin = tmp.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    for stub in ["hostname", "mount", "swapon", "mkswap", "ip", "chown", "dd"] {
        let p = bin.join(stub);
        fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let ran = run(
        Command::new("sh")
            .arg(root().join("templates/boot/hook.sh"))
            .arg(&drive)
            .arg(&target)
            .env("PATH", path),
        LIMIT,
    );
    assert!(ran.success(), "{}: {}", node.id, ran.report());
    assert!(
        ran.stdout
            .contains(&format!("vocc: configured {}", node.id)),
        "{}",
        ran.report()
    );
    (started(&target), ran.stdout)
}

/// Every daemon's service of every batch system, as systemd units.
const UNITS: &[&str] = &[
    "munge",
    "slurmctld",
    "slurmd",
    "condor",
    "trqauthd",
    "pbs_server",
    "pbs_sched",
    "pbs_mom",
    "nfs-server",
];

/// Debian's gridengine and older torque packages ship SysV scripts only.
const SYSV: &[&str] = &["gridengine-master", "gridengine-exec"];

/// The batch daemons a role of `kind` runs, by its part in the batch system, under
/// the names Torque's own units and Debian's SysV scripts have.
fn daemons(
    kind: SchedulerKind,
    controller: bool,
    compute: bool,
    torque_sysv: bool,
) -> Vec<&'static str> {
    let mut d = Vec::new();
    match kind {
        SchedulerKind::Slurm => {
            d.push("munge");
            if controller {
                d.push("slurmctld");
            }
            if compute {
                d.push("slurmd");
            }
        }
        SchedulerKind::Condor => d.push("condor"),
        SchedulerKind::Sge => {
            if controller {
                d.push("gridengine-master");
            }
            if compute {
                d.push("gridengine-exec");
            }
        }
        SchedulerKind::Pbs => {
            d.push("trqauthd");
            if controller {
                d.extend(if torque_sysv {
                    ["torque-server", "torque-scheduler"]
                } else {
                    ["pbs_server", "pbs_sched"]
                });
            }
            if compute {
                d.push(if torque_sysv { "torque-mom" } else { "pbs_mom" });
            }
        }
    }
    d
}

#[test]
fn the_boot_hook_starts_each_roles_batch_daemons_and_no_others() {
    // One shipped appliance of each batch system.
    let files = [
        ("slurm", SchedulerKind::Slurm),
        ("condor", SchedulerKind::Condor),
        ("sge", SchedulerKind::Sge),
        ("pbs", SchedulerKind::Pbs),
    ];
    let mut seen = 0;
    for (kind, k) in files {
        let file = &shipped(kind)[0];
        let built = generate(file, None);
        for cluster in &built.model.clusters {
            for role in &cluster.roles {
                let node = cluster.nodes_of(&role.name).next().unwrap();
                let s = role.scheduler.as_ref().filter(|s| s.kind == k);
                // A layer with Torque's own units, and one with Debian's SysV scripts
                // for it.
                for torque_sysv in [false, true] {
                    let sysv: Vec<&str> = if torque_sysv {
                        SYSV.iter()
                            .copied()
                            .chain(["torque-server", "torque-scheduler", "torque-mom"])
                            .collect()
                    } else {
                        SYSV.to_vec()
                    };
                    let units: Vec<&str> = UNITS
                        .iter()
                        .copied()
                        .filter(|u| !(torque_sysv && u.starts_with("pbs_")))
                        .collect();
                    let (got, out) = hook(&built, node, &units, &sysv);
                    let mut want: BTreeSet<String> = s
                        .map(|s| daemons(k, s.controller, s.compute, torque_sysv))
                        .unwrap_or_default()
                        .into_iter()
                        .map(String::from)
                        .collect();
                    // Not a batch daemon: the image's node.env decides (empty here), and
                    // the hook leaves the layer's link as it was.
                    want.insert("nfs-server".into());
                    assert_eq!(
                        got, want,
                        "{}: {} ({kind}, sysv torque: {torque_sysv}): {out}",
                        built.name, node.id
                    );
                    seen += 1;
                }
            }
        }
    }
    assert!(seen >= 8);
}

#[test]
fn the_boot_hook_says_when_a_layer_lacks_a_daemon() {
    let built = generate(&shipped("condor")[0], None);
    let node = &built.model.clusters[0].nodes[0];
    let (got, out) = hook(&built, node, &["munge"], &[]);
    assert!(got.is_empty(), "{got:?}");
    assert!(
        out.contains("this layer has none of the services condor"),
        "{out}"
    );
}
