//! The xen driver's whole lifecycle against a recording fake `xl` on PATH
//! (`tests/runtime_fixture/fake-xl`), with the xl.cfg files the compiler generates for
//! the OSG appliance (two workers): up (dry-run `create -n` at load, `create` in
//! dependency order), pause, unpause, stop (`shutdown`), start, and down (`destroy`).
//! The fake checks that every disk an xl.cfg names exists when the domain is created,
//! so the runtime and the compiler agree on where a node's disks are.

mod runtime_fixture;

use runtime_fixture::*;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;

#[test]
fn the_xen_lifecycle_runs_through_xl() {
    let t = tempfile::Builder::new()
        .prefix("vocc-xen-")
        .tempdir()
        .unwrap();
    let dir = t.path();
    built_tree(dir, "appliances/osg.voc", &["--var", "workers=2"]);
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::copy(root().join("tests/runtime_fixture/fake-xl"), bin.join("xl")).unwrap();
    fs::set_permissions(bin.join("xl"), fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.join("xl.log");
    let env = vec![
        (
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        ),
        ("FAKE_XL_LOG", log.to_string_lossy().into_owned()),
        (
            "FAKE_XL_STATE",
            dir.join("xl-state").to_string_lossy().into_owned(),
        ),
        (
            "VOCC_XEN_CONSOLE_DIR",
            dir.join("console").to_string_lossy().into_owned(),
        ),
    ];
    let calls = || -> Vec<String> {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with("list"))
            .map(str::to_owned)
            .collect()
    };
    let cfg = |id: &str| {
        dir.join("out/nodes")
            .join(id)
            .join("xen.cfg")
            .to_string_lossy()
            .into_owned()
    };
    let ids = ["osg-head", "osg-worker1", "osg-worker2"];

    let o = vocc(dir, &["up", "out", "--driver", "xen", "--json"], &env);
    assert!(
        o.status.success(),
        "{}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    for n in report["reports"][0]["nodes"].as_array().unwrap() {
        assert_eq!(n["state"], "running", "{n}");
    }
    let c = calls();
    for id in ids {
        assert!(c.contains(&format!("create -n {}", cfg(id))), "{c:?}");
    }
    // Nodes boot together (a worker waits for the head only to be ready): each domain
    // is created once, after its config was checked with `create -n`.
    let pos = |line: String| c.iter().position(|l| *l == line).unwrap();
    for id in ids {
        assert!(pos(format!("create -n {}", cfg(id))) < pos(format!("create {}", cfg(id))));
    }

    // Up again creates nothing twice.
    let o = vocc(dir, &["up", "out"], &env);
    assert!(o.status.success(), "{}", text(&o.stdout));
    assert_eq!(
        calls().iter().filter(|l| l.starts_with("create /")).count(),
        3
    );

    for (op, word) in [
        ("pause", "pause"),
        ("unpause", "unpause"),
        ("stop", "shutdown"),
    ] {
        let o = vocc(dir, &[op, "--plan=out"], &env);
        assert!(
            o.status.success(),
            "{op}: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        let c = calls();
        for id in ids {
            assert!(c.contains(&format!("{word} {id}")), "{op}: {c:?}");
        }
    }
    let o = vocc(dir, &["status", "--plan=out", "--json"], &env);
    let st: Value = serde_json::from_slice(&o.stdout).unwrap();
    for n in st["clusters"][0]["nodes"].as_array().unwrap() {
        assert_eq!(n["state"], "stopped", "{n}");
        assert_eq!(n["observed"], "defined", "{n}");
    }
    let o = vocc(dir, &["start", "--plan=out", "--node", "worker1"], &env);
    assert!(o.status.success(), "{}", text(&o.stdout));
    // Starting a worker starts the head it waits for first.
    assert_eq!(
        calls().iter().filter(|l| l.starts_with("create /")).count(),
        5
    );

    let o = vocc(dir, &["down", "--plan=out"], &env);
    assert!(o.status.success(), "{}", text(&o.stdout));
    let c = calls();
    assert!(c.contains(&"destroy osg-head".to_owned()), "{c:?}");
    assert!(c.contains(&"destroy osg-worker1".to_owned()), "{c:?}");
    let left: Vec<_> = fs::read_dir(dir.join("xl-state"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "domains left: {left:?}");
    assert!(
        !dir.join("store/nodes").exists()
            || fs::read_dir(dir.join("store/nodes"))
                .unwrap()
                .next()
                .is_none()
    );
    assert!(!dir.join("out/.vocc-run/osg").exists());
}
