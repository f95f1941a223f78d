//! Placement keeps every host within what it offers, summed over every cluster placed
//! on it: virtual CPUs within `cpu × overcommit`, memory within `memory − reserve`,
//! disk within `disk` (each layer once per host), and the host CPUs of pinned nodes
//! (`cpu N pinned`) each given to one node only. Seed 001's two VOs on eight hosts,
//! one VM of each pinned to each of a host's two CPUs, is the case.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use vocc_compiler::{compile, FsWorld, Options};

#[test]
fn two_vos_pinned_on_the_same_hosts_stay_within_every_host() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../appliances/two-vo.voc");
    let c = compile(&FsWorld, &file, &Options::default()).unwrap();
    let model = c.model.expect("two-vo compiles");
    let plan = vocc_compiler::plan::plan(&model).expect("two-vo places");
    let mut clusters_on: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for h in &plan.hosts {
        let nodes: Vec<_> = plan.nodes.iter().filter(|n| n.host == h.name).collect();
        let cpu: u64 = nodes.iter().map(|n| u64::from(n.cpu)).sum();
        let memory: u64 = nodes.iter().map(|n| n.memory).sum();
        let layers: BTreeSet<&str> = nodes
            .iter()
            .flat_map(|n| n.root.iter().map(String::as_str))
            .collect();
        let layer_disk: u64 = layers
            .iter()
            .map(|l| {
                plan.layers
                    .iter()
                    .find(|x| x.id == *l)
                    .and_then(|x| x.size)
                    .unwrap()
            })
            .sum();
        let disk: u64 = nodes.iter().map(|n| n.disk).sum::<u64>() + layer_disk;
        assert!(
            cpu <= u64::from(h.cpu * h.overcommit),
            "{}: {cpu} vCPUs",
            h.name
        );
        assert!(memory <= h.memory - h.reserve, "{}: {memory} bytes", h.name);
        assert!(disk <= h.disk, "{}: {disk} bytes of disk", h.name);
        // Every node is pinned here, each to a CPU of its own.
        let mut pinned = BTreeSet::new();
        for n in &nodes {
            let cpus = n
                .cpus
                .as_ref()
                .unwrap_or_else(|| panic!("{} is not pinned", n.id));
            assert_eq!(cpus.len(), n.cpu as usize, "{}", n.id);
            for &c in cpus {
                assert!(c < h.cpu, "{} on CPU {c} of {}", n.id, h.name);
                assert!(pinned.insert(c), "CPU {c} of {} is given twice", h.name);
            }
        }
        clusters_on
            .entry(h.name.as_str())
            .or_default()
            .extend(nodes.iter().map(|n| n.cluster.as_str()));
    }
    // As in the seed: every host runs one VM of each VO.
    assert_eq!(plan.hosts.len(), 8);
    for (host, clusters) in &clusters_on {
        assert_eq!(
            clusters.iter().copied().collect::<Vec<_>>(),
            ["vo-a", "vo-b"],
            "{host}"
        );
    }
}
