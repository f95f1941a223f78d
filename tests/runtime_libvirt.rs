//! The libvirt driver's lifecycle on libvirt's own test hypervisor (`test:///default`)
//! with the domain XML the compiler generates for the demo cluster: define, start,
//! suspend, resume, shutdown/destroy, undefine.
//!
//! The test hypervisor keeps its state per connection, so a domain defined by one
//! `virsh` is gone for the next: the driver keeps one `virsh` session per process for
//! `test:` URIs, and this test runs the whole lifecycle in one process through the
//! runtime's API (the same calls the `vocc` commands make).

mod runtime_fixture;

use runtime_fixture::*;
use vocc_runtime::plan::State;
use vocc_runtime::{Op, Options, Runtime, Selection};

fn observed(rt: &Runtime) -> Vec<(String, State, Option<String>)> {
    rt.status("demo")
        .unwrap()
        .into_iter()
        .map(|n| (n.node, n.state, n.observed))
        .collect()
}

#[test]
fn the_libvirt_lifecycle_runs_on_the_test_hypervisor() {
    let t = tempfile::Builder::new()
        .prefix("vocc-libvirt-")
        .tempdir()
        .unwrap();
    let dir = t.path();
    built_tree(dir, "appliances/demo.voc", &[]);
    // The only test in this binary: setting the process environment is safe here.
    std::env::set_var("VOCC_LIBVIRT_URI", "test:///default");
    let rt = Runtime::open(&dir.join("out"), None, Options::default()).unwrap();
    let all = Selection::default();

    let report = rt
        .up("demo", State::Running, Some("libvirt"), &all)
        .unwrap();
    assert!(report.ok, "{}", report.table());
    for (node, state, seen) in observed(&rt) {
        assert_eq!(
            (state, seen.as_deref()),
            (State::Running, Some("running")),
            "{node}"
        );
    }
    for n in &report.nodes {
        assert!(n.phases.contains_key("define"), "{}", report.table());
    }

    let report = rt.operate("demo", Op::Pause, &all).unwrap();
    assert!(report.ok, "{}", report.table());
    for (node, state, seen) in observed(&rt) {
        assert_eq!(
            (state, seen.as_deref()),
            (State::Paused, Some("paused")),
            "{node}"
        );
    }
    let report = rt.operate("demo", Op::Unpause, &all).unwrap();
    assert!(report.ok, "{}", report.table());
    for (node, state, seen) in observed(&rt) {
        assert_eq!(
            (state, seen.as_deref()),
            (State::Running, Some("running")),
            "{node}"
        );
    }
    // The test hypervisor shuts a domain off at once on `shutdown`.
    let report = rt.operate("demo", Op::Stop, &all).unwrap();
    assert!(report.ok, "{}", report.table());
    for (node, state, seen) in observed(&rt) {
        assert_eq!(
            (state, seen.as_deref()),
            (State::Stopped, Some("defined")),
            "{node}"
        );
    }
    // Start one worker: its head comes first.
    let one = Selection {
        roles: vec![],
        nodes: vec!["worker1".into()],
    };
    let report = rt.up("demo", State::Running, None, &one).unwrap();
    assert!(report.ok, "{}", report.table());
    let seen = observed(&rt);
    assert_eq!(seen[0].2.as_deref(), Some("running"));
    assert_eq!(seen[1].2.as_deref(), Some("running"));
    assert_eq!(seen[2].2.as_deref(), Some("defined"));

    let report = rt.down("demo", None).unwrap();
    assert!(report.ok, "{}", report.table());
    for (node, state, seen) in observed(&rt) {
        // No journal after down: the driver is not known, nothing is observed.
        assert_eq!((state, seen), (State::Unstaged, None), "{node}");
    }
    // The domains are undefined: ask the test hypervisor directly through a fresh
    // driver on the same session.
    use vocc_runtime::driver::{Driver, NodeCtx, Observed};
    let driver = vocc_runtime::driver::libvirt::Libvirt::new("test:///default");
    let segments = Default::default();
    for node in &rt.plan.nodes {
        let ctx = NodeCtx {
            plan: &rt.plan,
            cluster: &rt.plan.clusters[0],
            node,
            layout: &rt.layout,
            segments: &segments,
        };
        assert_eq!(driver.observe(&ctx), Some(Observed::Absent), "{}", node.id);
    }
    assert!(!dir.join("store/nodes/demo-head").exists());
}
