//! `vocc autoscale`: the site's loop that grows and shrinks elastic clusters under the
//! site's policy (`compiler::policy`).
//!
//! The mechanism is the cluster's own Slurm power saving, as cloud clusters use it: the
//! standby nodes of an elastic role (beyond its minimum) are declared to Slurm as cloud
//! nodes, powered down. When a job needs more nodes than are up, Slurm allocates
//! powered-down ones and marks them powering up; when a grown node has been idle for
//! the role's `idle` time, Slurm powers it down (it runs no job then). Each round, this
//! loop reads those states from the controller (`scontrol show nodes -o`, run the way
//! `vocc exec` runs a command), starts the standby nodes Slurm powers up as far as the
//! policy allows, and stops and reclaims the ones Slurm powered down.
//!
//! The policy decides growth only: how many standby nodes run at once over every
//! cluster (`capacity`), and how that capacity is shared between VOs that want more
//! than it holds (`share VO WEIGHT`): each unit of capacity goes to the VO that has
//! the least of it per unit of weight among those still asking, so 7 nodes split 2:5.
//! A running node is never stopped to make room (its jobs run to the end). A guest
//! cannot make the site start anything the plan does not have: a node name Slurm
//! reports that is not a standby node of the cluster's plan is ignored (and said).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use vocc_compiler::policy::Policy;
use vocc_runtime::plan::{BatchKind, State};
use vocc_runtime::{Op, Runtime, Selection};

/// What Slurm says of a node's power.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    /// Running or usable (no power flag).
    On,
    /// Slurm wants it: a job was given it while it was powered down.
    PoweringUp,
    /// Powered down, or on its way there: its VM may go.
    Down,
}

/// The power of each node `scontrol show nodes -o` lists, by host name.
pub fn slurm_power(text: &str) -> BTreeMap<String, Power> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key).map(str::to_owned))
        };
        let (Some(name), Some(state)) = (field("NodeName="), field("State=")) else {
            continue;
        };
        let flags: Vec<&str> = state.split('+').collect();
        let power = if flags.contains(&"POWERING_UP") {
            Power::PoweringUp
        } else if flags
            .iter()
            .any(|f| matches!(*f, "POWERED_DOWN" | "POWERING_DOWN" | "POWER_DOWN"))
        {
            Power::Down
        } else {
            Power::On
        };
        out.insert(name, power);
    }
    out
}

/// One VO's standing in a round.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Share {
    pub vo: String,
    pub weight: u32,
    /// Standby nodes of the VO's clusters running.
    pub running: u32,
    /// Standby nodes Slurm powers up that are not running.
    pub wanted: u32,
    /// What the policy gives the VO this round (running included).
    pub allocated: u32,
    /// Why it grew or did not.
    pub why: String,
}

/// Splits `capacity` among VOs in proportion to their weights, never giving a VO more
/// than it asks for (`running + wanted`), and never less than it runs: unit by unit,
/// to the VO with the least per unit of weight among those still asking (ties: the
/// first VO by name). Returns each VO's allocation, in the input's order.
pub fn allocate(capacity: u32, vos: &[(String, u32, u32, u32)]) -> Vec<u32> {
    // (vo, weight, running, wanted)
    let mut alloc: Vec<u32> = vos.iter().map(|v| v.2).collect();
    let mut left = capacity.saturating_sub(alloc.iter().sum());
    while left > 0 {
        let next = (0..vos.len())
            .filter(|&i| alloc[i] < vos[i].2 + vos[i].3)
            .min_by(|&a, &b| {
                // alloc[a]/w[a] < alloc[b]/w[b], in integers.
                let (wa, wb) = (u64::from(vos[a].1.max(1)), u64::from(vos[b].1.max(1)));
                (u64::from(alloc[a]) * wb)
                    .cmp(&(u64::from(alloc[b]) * wa))
                    .then(vos[a].0.cmp(&vos[b].0))
            });
        let Some(i) = next else { break };
        alloc[i] += 1;
        left -= 1;
    }
    alloc
}

/// The decisions of a round, before acting: each VO's share, and per cluster the
/// standby nodes to start and those to stop.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Plan {
    pub shares: Vec<Share>,
    pub start: BTreeMap<String, Vec<String>>,
    pub stop: BTreeMap<String, Vec<String>>,
    /// What was seen and not acted on (a node Slurm names that the plan does not have
    /// as a standby node, a controller that could not be asked).
    pub notes: Vec<String>,
}

/// A standby node as the loop sees it.
#[derive(Debug, Clone)]
pub struct Standby {
    pub cluster: String,
    pub vo: String,
    pub id: String,
    pub running: bool,
    pub power: Option<Power>,
}

/// Decides a round from what every cluster's standby nodes are and what Slurm says.
pub fn decide(policy: &Policy, nodes: &[Standby]) -> Plan {
    let mut plan = Plan::default();
    let mut by_vo: BTreeMap<&str, (u32, Vec<&Standby>)> = BTreeMap::new();
    for n in nodes {
        let e = by_vo.entry(n.vo.as_str()).or_default();
        match (n.running, n.power) {
            (true, Some(Power::Down)) => plan
                .stop
                .entry(n.cluster.clone())
                .or_default()
                .push(n.id.clone()),
            (true, _) => e.0 += 1,
            (false, Some(Power::PoweringUp)) => e.1.push(n),
            _ => {}
        }
    }
    let vos: Vec<(String, u32, u32, u32)> = by_vo
        .iter()
        .map(|(vo, (running, wanted))| {
            (
                (*vo).to_owned(),
                policy.weight(vo),
                *running,
                wanted.len() as u32,
            )
        })
        .collect();
    let alloc = allocate(policy.capacity, &vos);
    let total_weight: u32 = vos
        .iter()
        .filter(|v| v.2 + v.3 > 0)
        .map(|v| v.1.max(1))
        .sum();
    for ((vo, weight, running, wanted), allocated) in vos.iter().zip(&alloc) {
        let grow = allocated.saturating_sub(*running).min(*wanted);
        for n in by_vo[vo.as_str()].1.iter().take(grow as usize) {
            plan.start
                .entry(n.cluster.clone())
                .or_default()
                .push(n.id.clone());
        }
        let why = if *wanted == 0 {
            format!("no job waits for a standby node of VO `{vo}`; {running} running")
        } else if grow == *wanted {
            format!(
                "jobs of VO `{vo}` wait for {wanted} more node{}: started {grow} (its share, \
                 {weight} of {total_weight}, of capacity {} allows {allocated}; {running} were running)",
                plural(*wanted),
                policy.capacity
            )
        } else {
            format!(
                "jobs of VO `{vo}` wait for {wanted} more node{}: started {grow}, held {} — \
                 its share, {weight} of {total_weight}, of capacity {} allows {allocated} \
                 running at once and {running} already run{}",
                plural(*wanted),
                wanted - grow,
                policy.capacity,
                if *running == 1 { "s" } else { "" }
            )
        };
        plan.shares.push(Share {
            vo: vo.clone(),
            weight: *weight,
            running: *running,
            wanted: *wanted,
            allocated: *allocated,
            why,
        });
    }
    plan
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// What a round did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Round {
    pub plan: Plan,
    /// Per cluster, what starting and stopping said (`node: detail` or the error).
    pub done: Vec<String>,
    pub ms: f64,
}

/// One round over every elastic cluster of the runtime's plan.
pub fn round(rt: &Runtime, policy: &Policy, limit: Duration) -> Round {
    let t = Instant::now();
    let mut nodes = Vec::new();
    let mut notes = Vec::new();
    for cluster in &rt.plan.clusters {
        let standby: Vec<_> = rt
            .plan
            .nodes
            .iter()
            .filter(|n| n.cluster == cluster.name && n.standby)
            .collect();
        if standby.is_empty() {
            continue;
        }
        let Some(batch) = cluster
            .batch
            .as_ref()
            .filter(|b| b.kind == BatchKind::Slurm)
        else {
            notes.push(format!(
                "cluster `{}` has standby nodes but no Slurm to say when it needs them",
                cluster.name
            ));
            continue;
        };
        let running: HashMap<String, bool> = match rt.status(&cluster.name) {
            Ok(s) => s
                .into_iter()
                .map(|n| (n.node, matches!(n.state, State::Running | State::Paused)))
                .collect(),
            Err(e) => {
                notes.push(format!("cluster `{}`: {e}", cluster.name));
                continue;
            }
        };
        let argv: Vec<String> = ["scontrol", "show", "nodes", "-o"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let power = match rt.exec(&batch.controller, &argv, limit) {
            Ok(out) if out.status == 0 => slurm_power(&String::from_utf8_lossy(&out.stdout)),
            Ok(out) => {
                notes.push(format!(
                    "cluster `{}`: `scontrol show nodes` on `{}` exited with {}: {}",
                    cluster.name,
                    batch.controller,
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
                continue;
            }
            Err(e) => {
                notes.push(format!(
                    "cluster `{}`: cannot ask Slurm on `{}`: {e}",
                    cluster.name, batch.controller
                ));
                continue;
            }
        };
        let known: Vec<&str> = rt
            .plan
            .nodes
            .iter()
            .filter(|n| n.cluster == cluster.name)
            .map(|n| n.hostname.as_str())
            .collect();
        for (name, p) in &power {
            if *p == Power::PoweringUp && !known.contains(&name.as_str()) {
                notes.push(format!(
                    "cluster `{}`: Slurm powers up `{name}`, which the plan does not have: ignored",
                    cluster.name
                ));
            }
        }
        for n in standby {
            nodes.push(Standby {
                cluster: cluster.name.clone(),
                vo: cluster.vo.clone(),
                id: n.id.clone(),
                running: running.get(&n.id).copied().unwrap_or(false),
                power: power.get(&n.hostname).copied(),
            });
        }
    }
    let mut plan = decide(policy, &nodes);
    plan.notes.extend(notes);
    let mut done = Vec::new();
    for (cluster, ids) in &plan.stop {
        let sel = Selection {
            roles: Vec::new(),
            nodes: ids.clone(),
        };
        for op in [Op::Stop, Op::Unstage] {
            match rt.operate(cluster, op, &sel) {
                Ok(r) => done.extend(r.nodes.iter().map(|n| {
                    format!(
                        "{}: {} ({})",
                        n.node,
                        op.name(),
                        n.error
                            .as_ref()
                            .map_or("done".to_owned(), |e| e.message.clone())
                    )
                })),
                Err(e) => done.push(format!("cluster `{cluster}`: {} failed: {e}", op.name())),
            }
        }
    }
    for (cluster, ids) in &plan.start {
        let sel = Selection {
            roles: Vec::new(),
            nodes: ids.clone(),
        };
        match rt.up(cluster, State::Running, None, &sel) {
            Ok(r) => done.extend(r.nodes.iter().filter(|n| ids.contains(&n.node)).map(|n| {
                format!(
                    "{}: start ({})",
                    n.node,
                    n.error
                        .as_ref()
                        .map_or("running".to_owned(), |e| e.message.clone())
                )
            })),
            Err(e) => done.push(format!("cluster `{cluster}`: start failed: {e}")),
        }
    }
    Round {
        plan,
        done,
        ms: t.elapsed().as_secs_f64() * 1e3,
    }
}

/// The round as text: each VO's share and why, then what was done.
pub fn text(r: &Round) -> String {
    let mut out = String::new();
    for s in &r.plan.shares {
        out.push_str(&format!(
            "{}: running {}, waiting {}, allowed {}: {}\n",
            s.vo, s.running, s.wanted, s.allocated, s.why
        ));
    }
    for n in &r.plan.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    for d in &r.done {
        out.push_str(&format!("  {d}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(capacity: u32) -> Policy {
        Policy {
            name: "ucm".into(),
            capacity,
            shares: [("fusion".to_owned(), 2), ("bio".to_owned(), 5)].into(),
            source: "p.voc:1:8".into(),
        }
    }

    #[test]
    fn slurm_states_say_which_nodes_to_start_and_stop() {
        let text = "NodeName=worker1 Arch=x86_64 CoresPerSocket=1 State=IDLE ThreadsPerCore=1\n\
                    NodeName=worker2 Arch=x86_64 State=ALLOCATED+CLOUD+POWERING_UP Weight=1\n\
                    NodeName=worker3 State=IDLE+CLOUD+POWERED_DOWN\n\
                    NodeName=worker4 State=IDLE+POWERING_DOWN\n\
                    garbage line\n";
        let p = slurm_power(text);
        assert_eq!(p["worker1"], Power::On);
        assert_eq!(p["worker2"], Power::PoweringUp);
        assert_eq!(p["worker3"], Power::Down);
        assert_eq!(p["worker4"], Power::Down);
        assert_eq!(p.len(), 4);
    }

    #[test]
    fn capacity_is_shared_by_weight_between_vos_that_want_it() {
        let vos =
            |f: u32, b: u32| vec![("bio".to_owned(), 5, 0, b), ("fusion".to_owned(), 2, 0, f)];
        // Both want more than the capacity: 7 splits 2:5.
        assert_eq!(allocate(7, &vos(10, 10)), [5, 2]);
        // One wants little: the other takes the rest.
        assert_eq!(allocate(7, &vos(1, 10)), [6, 1]);
        // Never more than asked, never less than running.
        assert_eq!(
            allocate(7, &[("bio".into(), 5, 6, 0), ("fusion".into(), 2, 0, 3)]),
            [6, 1]
        );
        assert_eq!(allocate(0, &vos(3, 3)), [0, 0]);
    }

    #[test]
    fn a_round_starts_what_the_share_allows_and_says_why() {
        let node = |cluster: &str, vo: &str, i: u32, running: bool, power: Option<Power>| Standby {
            cluster: cluster.into(),
            vo: vo.into(),
            id: format!("{cluster}-w{i}"),
            running,
            power,
        };
        let nodes = vec![
            node("f", "fusion", 1, false, Some(Power::PoweringUp)),
            node("f", "fusion", 2, false, Some(Power::PoweringUp)),
            node("f", "fusion", 3, false, Some(Power::PoweringUp)),
            node("b", "bio", 1, false, Some(Power::PoweringUp)),
            node("b", "bio", 2, true, Some(Power::On)),
            node("b", "bio", 3, true, Some(Power::Down)),
            node("b", "bio", 4, false, Some(Power::Down)),
        ];
        let plan = decide(&policy(3), &nodes);
        // bio runs 1 (b-w3 is powered down and goes), wants 1; fusion wants 3.
        // Capacity 3: fusion 2/7 → 1, bio 5/7 → 2.
        assert_eq!(plan.stop["b"], ["b-w3"]);
        assert_eq!(plan.start["b"], ["b-w1"]);
        assert_eq!(plan.start["f"], ["f-w1"]);
        let fusion = plan.shares.iter().find(|s| s.vo == "fusion").unwrap();
        assert_eq!((fusion.running, fusion.wanted, fusion.allocated), (0, 3, 1));
        assert!(fusion.why.contains("held 2"), "{}", fusion.why);
        assert!(fusion.why.contains("2 of 7"), "{}", fusion.why);
        let bio = plan.shares.iter().find(|s| s.vo == "bio").unwrap();
        assert_eq!((bio.running, bio.wanted, bio.allocated), (1, 1, 2));
    }
}
