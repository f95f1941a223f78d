//! Tests of placement, diagnostics and the plan, on models built with [`super::kit`].

use super::kit::*;
use super::*;
use crate::model::{Hypervisor, Model, Site};
use vocc_runtime::plan::{steps_until, State};
use vocc_runtime::schema::load_plan;

/// Node id → host, in plan order.
fn hosts_of(plan: &Plan) -> Vec<(&str, &str)> {
    plan.nodes
        .iter()
        .map(|n| (n.id.as_str(), n.host.as_str()))
        .collect()
}

fn errors(model: &Model) -> Vec<Diagnostic> {
    match place(model) {
        Ok(_) => panic!("expected diagnostics, got a plan"),
        Err(diags) => diags,
    }
}

fn roomy(n: u32) -> Site {
    site("chiba", hosts("c", n, 4, 4 * GIB, 40 * GIB))
}

fn role_span(model: &Model, cluster: usize, role: &str) -> vocc_dsl::Span {
    model.clusters[cluster]
        .role(role)
        .map(|r| r.origin.span)
        .unwrap_or_default()
}

#[test]
fn spread_puts_one_node_per_host_then_wraps_by_free_memory() {
    let model = model(
        vec![osg(8, 512 * MIB)],
        site("chiba", hosts("c", 4, 4, 2 * GIB, 40 * GIB)),
    );
    let plan = plan(&model).unwrap();
    // The head takes c01; three workers take the emptier hosts; the fourth goes to the
    // first of the three equal hosts; c01 (512 MiB less) comes round again later.
    assert_eq!(
        hosts_of(&plan),
        vec![
            ("osg-head", "c01"),
            ("osg-worker1", "c02"),
            ("osg-worker2", "c03"),
            ("osg-worker3", "c04"),
            ("osg-worker4", "c02"),
            ("osg-worker5", "c03"),
            ("osg-worker6", "c04"),
            ("osg-worker7", "c01"),
            ("osg-worker8", "c02"),
        ]
    );
}

#[test]
fn only_hosts_of_the_clusters_hypervisor_take_its_nodes() {
    let mut site = roomy(4);
    site.hosts[0].hypervisors = vec![Hypervisor::Kvm];
    site.hosts[1].hypervisors = vec![Hypervisor::Kvm];
    let plan = plan(&model(vec![osg(3, 512 * MIB)], site)).unwrap();
    assert_eq!(
        hosts_of(&plan),
        vec![
            ("osg-head", "c03"),
            ("osg-worker1", "c04"),
            ("osg-worker2", "c04"),
            ("osg-worker3", "c03"),
        ]
    );
}

#[test]
fn a_cluster_whose_hypervisor_no_host_runs_is_one_error() {
    let mut cluster = osg(3, 512 * MIB);
    cluster.hypervisor = Some(Hypervisor::Kvm);
    let model = model(vec![cluster], roomy(2));
    let diags = errors(&model);
    assert_eq!(diags.len(), 1, "{diags:#?}");
    let d = &diags[0];
    assert_eq!(
        d.message,
        "no host of site `chiba` runs `kvm`, the hypervisor of cluster `osg`"
    );
    assert_eq!(d.span, model.clusters[0].origin.span);
    assert_eq!(d.secondary[0].span, model.site.origin.span);
    assert_eq!(d.secondary[0].message, "the hosts of site `chiba` run xen");
    assert_eq!(
        d.hints,
        ["set `hypervisor xen` in cluster `osg`, or add kvm hosts to site `chiba`"]
    );
}

#[test]
fn a_node_that_fits_nowhere_names_the_best_host_and_what_it_lacks() {
    // The design notes' OSG head (512 MiB) on their chiba hosts (512 MiB, 96 reserved).
    let model = model(vec![osg(8, 512 * MIB)], chiba(16));
    let diags = errors(&model);
    assert_eq!(diags.len(), 1, "{diags:#?}");
    let d = &diags[0];
    assert_eq!(d.message, "node `osg-head` fits no host of site `chiba`");
    assert_eq!(d.span, role_span(&model, 0, "head"));
    assert_eq!(
        d.label,
        "each node of role `head` needs 1 vCPU, 512 MiB of memory and 1480 MiB of disk, and its layers"
    );
    assert_eq!(
        d.hints,
        [
            "on `c01`, the best host, memory is short by 96 MiB (needs 512 MiB, 416 MiB free after \
             the 96 MiB reserve)",
            "lower the `memory` of role `head`, or add a host with more memory to site `chiba`",
        ]
    );
    assert_eq!(d.secondary[0].span, model.site.hosts[0].origin.span);
}

#[test]
fn the_best_host_is_the_one_that_lacks_least() {
    let mut hosts = hosts("c", 3, 2, 2 * GIB, 40 * GIB);
    hosts[0].disk = GIB; // short of disk, by more than half of the need
    hosts[1].disk = 1536 * MIB; // short of disk and of cpu
    hosts[1].cpu = 1;
    hosts[2].memory = GIB; // short of memory by less than c01 of disk
    let worker = with_root(role("worker", 1, 2, 1536 * MIB), &["os"]);
    let model = model(
        vec![cluster("osg", vec![debian("os", 2 * GIB)], vec![worker])],
        site("chiba", hosts),
    );
    let diags = errors(&model);
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_eq!(
        diags[0].hints[0],
        "on `c03`, the best host, memory is short by 512 MiB (needs 1.5 GiB, 1 GiB free)"
    );

    // With the memory gone too, c01 lacks least; the disk text counts the layers.
    let mut model = model;
    model.site.hosts[2].hypervisors = vec![Hypervisor::Kvm];
    let diags = errors(&model);
    assert_eq!(
        diags[0].hints,
        [
            "on `c01`, the best host, disk is short by 1.25 GiB (needs 2.25 GiB with 2 GiB of \
             layers not yet on the host, 1 GiB free)",
            "lower the `swap` or layer sizes of role `worker`, or add a host with more disk to \
             site `chiba`",
            "only the 2 xen hosts of site `chiba` can take nodes of cluster `osg`",
        ]
    );
}

#[test]
fn nodes_of_one_role_that_fit_nowhere_make_one_diagnostic() {
    // The site has memory enough in all (7456 MiB of 8 GiB), but in pieces too small.
    let mut cluster = osg(6, 256 * MIB);
    cluster.roles[1].memory = 1200 * MIB;
    let model = model(
        vec![cluster],
        site("chiba", hosts("c", 4, 4, 2 * GIB, 40 * GIB)),
    );
    let diags = errors(&model);
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_eq!(
        diags[0].message,
        "node `osg-worker5` fits no host of site `chiba`"
    );
    assert!(
        diags[0]
            .label
            .ends_with("; 1 more node of this role fits nowhere either"),
        "{}",
        diags[0].label
    );
}

#[test]
fn demand_beyond_the_whole_site_is_one_error_per_resource() {
    let model = model(
        vec![osg(5, 512 * MIB)],
        site("chiba", hosts("c", 2, 2, 8 * GIB, 40 * GIB)),
    );
    let diags = errors(&model);
    assert_eq!(diags.len(), 1, "{diags:#?}");
    let d = &diags[0];
    assert_eq!(
        d.message,
        "cluster `osg` needs 6 vCPUs but site `chiba` offers 4"
    );
    assert_eq!(d.span, model.site.origin.span);
    assert_eq!(d.label, "4 vCPUs on 2 xen hosts");
    assert_eq!(d.secondary.len(), 1);
    assert_eq!(d.secondary[0].span, model.clusters[0].origin.span);
    assert_eq!(d.secondary[0].message, "cluster `osg` needs 6 vCPUs");

    // Two clusters, short of memory too.
    let mut site = model.site.clone();
    site.hosts[0].memory = GIB;
    site.hosts[0].reserve = 512 * MIB;
    site.hosts[1].memory = 4 * GIB;
    let model = super::kit::model(vec![osg(5, 512 * MIB), vo("cms", 5, 512 * MIB)], site);
    let messages: Vec<String> = errors(&model).into_iter().map(|d| d.message).collect();
    assert_eq!(
        messages,
        [
            "clusters `osg` and `cms` need 12 vCPUs but site `chiba` offers 4",
            "clusters `osg` and `cms` need 4624 MiB of memory but site `chiba` offers 4.5 GiB \
             after the hosts' reserves",
        ]
    );
}

#[test]
fn memory_beyond_the_whole_site_is_reported_after_reserves() {
    let model = model(vec![osg(8, 256 * MIB)], chiba(4));
    let diags = errors(&model);
    let messages: Vec<&str> = diags.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "cluster `osg` needs 3136 MiB of memory but site `chiba` offers 1664 MiB after the \
             hosts' reserves",
            "cluster `osg` needs 9 vCPUs but site `chiba` offers 8",
        ]
    );
    assert_eq!(
        diags[0].hints,
        ["lower the `count` or `memory` of a role, or add hosts to site `chiba`"]
    );
}

#[test]
fn two_clusters_share_a_site_one_node_of_each_per_host() {
    let model = model(
        vec![osg(7, 512 * MIB), vo("cms", 7, 512 * MIB)],
        site("chiba", hosts("c", 8, 2, 2 * GIB, 20 * GIB)),
    );
    let plan = plan(&model).unwrap();
    for host in &plan.hosts {
        let on: Vec<&str> = plan
            .nodes
            .iter()
            .filter(|n| n.host == host.name)
            .map(|n| n.cluster.as_str())
            .collect();
        assert_eq!(on, ["osg", "cms"], "on {}", host.name);
    }
    // Layers belong to their cluster even when alike.
    assert!(plan
        .staging
        .iter()
        .any(|s| s.host == "c01" && s.layer == "cms/os"));
    assert!(plan
        .staging
        .iter()
        .any(|s| s.host == "c01" && s.layer == "osg/os"));
}

#[test]
fn each_layer_is_staged_once_per_host_that_uses_it() {
    let plan = plan(&model(vec![osg(8, 512 * MIB)], roomy(4))).unwrap();
    let staged: Vec<String> = plan
        .staging
        .iter()
        .map(|s| format!("{} {}", s.host, s.layer))
        .collect();
    assert_eq!(
        staged,
        [
            "c01 osg/os",
            "c01 osg/vdt",
            "c01 osg/apps",
            "c02 osg/os",
            "c03 osg/os",
            "c04 osg/os"
        ]
    );
    let stage_steps: Vec<&str> = plan
        .steps
        .iter()
        .filter(|s| s.reaches == State::Staged)
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(
        stage_steps,
        [
            "stage:c01:osg/os",
            "stage:c01:osg/vdt",
            "stage:c01:osg/apps",
            "stage:c02:osg/os",
            "stage:c03:osg/os",
            "stage:c04:osg/os"
        ]
    );
}

#[test]
fn a_layer_costs_its_disk_once_per_host() {
    // One host with room for the 2 GiB layer and two nodes' 256 MiB allowances.
    let node_role = with_root(role("node", 2, 1, 256 * MIB), &["os"]);
    let cluster = cluster("demo", vec![debian("os", 2 * GIB)], vec![node_role]);
    let disk = 2 * GIB + 2 * NODE_DISK_ALLOWANCE;
    let fits = model(
        vec![cluster.clone()],
        site("chiba", vec![host("c01", 2, 4 * GIB, disk)]),
    );
    assert!(plan(&fits).is_ok());
    let tight = model(
        vec![cluster],
        site("chiba", vec![host("c01", 2, 4 * GIB, disk - MIB)]),
    );
    let diags = errors(&tight);
    assert_eq!(
        diags[0].message,
        "cluster `demo` needs 2.5 GiB of disk but site `chiba` offers 2559 MiB"
    );
}

#[test]
fn writable_disks_and_swap_count_per_node() {
    let model = model(vec![osg(1, 512 * MIB)], roomy(1));
    let placement = place(&model).unwrap();
    let head = &placement.decisions[0].demand;
    assert_eq!(head.disk, NODE_DISK_ALLOWANCE + 200 * MIB + GIB);
    assert_eq!(
        head.layers,
        [
            ("osg/os".to_owned(), 2 * GIB),
            ("osg/vdt".to_owned(), 750 * MIB),
            ("osg/apps".to_owned(), GIB)
        ]
    );
    assert_eq!(placement.plan.nodes[0].disk, head.disk);
}

#[test]
fn layers_without_a_size_count_the_defaults() {
    let mut os = debian("os", GIB);
    os.size = None;
    let tiny = layer("tiny", crate::model::LayerSource::Busybox, None);
    assert_eq!(layer_size(&os), DEFAULT_LAYER_SIZE);
    assert_eq!(layer_size(&tiny), DEFAULT_BUSYBOX_SIZE);
}

#[test]
fn steps_wait_for_staging_and_for_the_nodes_mounted_from() {
    let plan = plan(&model(vec![osg(2, 512 * MIB)], roomy(2))).unwrap();
    let step = |id: &str| plan.steps.iter().find(|s| s.id == id).unwrap();
    assert_eq!(
        step("load:osg-head").after,
        [
            "stage:c01:osg/os",
            "stage:c01:osg/vdt",
            "stage:c01:osg/apps"
        ]
    );
    assert_eq!(step("start:osg-head").after, ["load:osg-head"]);
    assert_eq!(step("ready:osg-head").after, ["start:osg-head"]);
    assert_eq!(step("load:osg-worker1").after, ["stage:c02:osg/os"]);
    // Workers boot with the head; they are ready once the head is (their mounts).
    assert_eq!(step("start:osg-worker1").after, ["load:osg-worker1"]);
    assert_eq!(
        step("ready:osg-worker1").after,
        ["start:osg-worker1", "ready:osg-head"]
    );
    let worker = plan.nodes.iter().find(|n| n.id == "osg-worker1").unwrap();
    assert_eq!(worker.after, ["osg-head"]);
    assert_eq!(worker.nics[0].bridge.as_deref(), Some("xenbr1"));
    assert_eq!(worker.dir, "nodes/osg-worker1");
    // Every step comes after the steps it waits for, so the list is one valid order.
    for (i, s) in plan.steps.iter().enumerate() {
        for a in &s.after {
            assert!(
                plan.steps[..i].iter().any(|p| &p.id == a),
                "{} before {a}",
                s.id
            );
        }
    }
}

#[test]
fn steps_until_stops_at_the_target_state() {
    let plan = plan(&model(vec![osg(2, 512 * MIB)], roomy(2))).unwrap();
    let kinds = |target| -> Vec<String> {
        steps_until(&plan, target)
            .iter()
            .map(|s| s.id.split(':').next().unwrap_or("").to_owned())
            .collect()
    };
    let count = |target, kind: &str| kinds(target).iter().filter(|k| *k == kind).count();
    assert_eq!(kinds(State::Staged), ["stage"; 4]);
    assert_eq!(
        (
            count(State::Loaded, "stage"),
            count(State::Loaded, "load"),
            count(State::Loaded, "start")
        ),
        (4, 3, 0)
    );
    assert_eq!(steps_until(&plan, State::Running).len(), plan.steps.len());
    assert_eq!(steps_until(&plan, State::Paused).len(), plan.steps.len());
    assert!(steps_until(&plan, State::Unstaged).is_empty());
}

#[test]
fn the_same_model_gives_the_same_plan_and_the_runtime_reads_it() {
    let json = || {
        let model = model(vec![osg(8, 512 * MIB)], roomy(4));
        serde_json::to_string_pretty(&plan(&model).unwrap()).unwrap()
    };
    let first = json();
    assert_eq!(first, json());
    let plan = load_plan(&first).unwrap();
    assert_eq!(serde_json::to_string_pretty(&plan).unwrap(), first);
    assert_eq!(plan.nodes[0].source, "test.voc:11:1");
}

#[test]
fn roles_that_mount_from_each_other_cannot_start() {
    let mut cluster = osg(2, 512 * MIB);
    cluster.roles[0] = with_mount(cluster.roles[0].clone(), "worker", "/scratch");
    let model = model(vec![cluster], roomy(2));
    let diags = errors(&model);
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_eq!(
        diags[0].message,
        "roles `head` and `worker` mount from each other in a cycle"
    );
    assert_eq!(
        diags[0].span,
        model.clusters[0].roles[1].mounts[0].origin.span
    );
}

#[test]
fn sizes_read_exactly_when_they_are_exact() {
    assert_eq!(human_size(0), "0 MiB");
    assert_eq!(human_size(96 * MIB), "96 MiB");
    assert_eq!(human_size(750 * MIB), "750 MiB");
    assert_eq!(human_size(2 * GIB), "2 GiB");
    assert_eq!(human_size(1536 * MIB), "1.5 GiB");
    assert_eq!(human_size(1025 * MIB), "1025 MiB");
    assert_eq!(human_size(512 << 10), "0.5 MiB");
    assert_eq!(human_size(4 << 10), "4 KiB");
    assert_eq!(human_size(1000), "1000 B");
    assert_eq!(human_size(MIB + 1000), "about 1 MiB");
    assert_eq!(human_size(5 * GIB / 3), "about 1.67 GiB");
    assert_eq!(human_size(76618 * MIB), "about 74.82 GiB");
    assert_eq!(human_size(10239 * MIB), "10239 MiB");
}

#[test]
fn kept_nodes_stay_put_and_a_full_host_gives_up_its_later_nodes() {
    let roomy_site = site("chiba", hosts("c", 4, 4, 2 * GIB, 40 * GIB));
    let before = plan(&model(vec![osg(8, 512 * MIB)], roomy_site.clone())).unwrap();
    // c02 runs osg-worker1, -4 and -8; now it has memory for two nodes only.
    let mut smaller = roomy_site.clone();
    smaller.hosts[1].memory = GIB;
    let previous = Previous::from_plan(&before);
    let placement = place_after(&model(vec![osg(8, 512 * MIB)], smaller), &previous).unwrap();
    let hosts = hosts_of(&placement.plan);
    let moved: Vec<&str> = hosts
        .iter()
        .zip(hosts_of(&before))
        .filter(|(now, was)| now.1 != was.1)
        .map(|(now, _)| now.0)
        .collect();
    // The nodes are kept in model order, so the last of c02's gives way.
    assert_eq!(moved, ["osg-worker8"]);
    let last = placement.decisions.last().unwrap();
    assert_eq!(
        (last.node.as_str(), last.previous.as_deref(), last.kept()),
        ("osg-worker8", Some("c02"), false)
    );
    assert!(placement.decisions[..8].iter().all(Decision::kept));

    // A host that no longer runs the cluster's hypervisor gives up all its nodes.
    let mut kvm = roomy_site.clone();
    kvm.hosts[0].hypervisors = vec![Hypervisor::Kvm];
    let placement = place_after(&model(vec![osg(8, 512 * MIB)], kvm), &previous).unwrap();
    let moved: Vec<&str> = hosts_of(&placement.plan)
        .iter()
        .zip(hosts_of(&before))
        .filter(|(now, was)| now.1 != was.1)
        .map(|(now, _)| now.0)
        .collect();
    assert_eq!(moved, ["osg-head", "osg-worker7"]);

    // A plan of another site keeps nothing.
    let mut other = before.clone();
    other.site = "elsewhere".to_owned();
    for n in &mut other.nodes {
        n.host = "c04".to_owned();
    }
    let placement = place_after(
        &model(vec![osg(8, 512 * MIB)], roomy_site),
        &Previous::from_plan(&other),
    )
    .unwrap();
    assert_eq!(hosts_of(&placement.plan), hosts_of(&before));
}

#[test]
fn the_previous_placement_is_read_from_a_plans_text() {
    let roomy_site = site("chiba", hosts("c", 4, 4, 2 * GIB, 40 * GIB));
    let before = plan(&model(vec![osg(8, 512 * MIB)], roomy_site.clone())).unwrap();
    let mut text = serde_json::to_string(&before).unwrap();
    let previous = Previous::read(&text).unwrap();
    let mut site = roomy_site;
    site.hosts.remove(1);
    let model = model(vec![osg(8, 512 * MIB)], site);
    assert_eq!(
        hosts_of(&plan_after(&model, &previous).unwrap()),
        hosts_of(&plan_after(&model, &Previous::from_plan(&before)).unwrap())
    );

    text = text.replacen("\"host\":\"c03\"", "\"host\":\"c\\u001b[2J\"", 1);
    assert_eq!(
        Previous::read(&text).unwrap_err(),
        "it names \"c\\u{1b}[2J\", with a control character"
    );
    let other = text.replacen(
        &format!("\"schema_version\":{}", vocc_runtime::SCHEMA_VERSION),
        "\"schema_version\":999",
        1,
    );
    assert!(Previous::read(&other)
        .unwrap_err()
        .starts_with("it is of schema version 999"));
    assert!(Previous::read("{ not a plan").is_err());
}
