//! Rebuilding into an output tree keeps the nodes of its plan on their hosts: the real
//! `vocc` binary builds `appliances/gridway-sge.voc` (`--config-only`), the appliance
//! changes (a role grows or shrinks, a host leaves the site), and the rebuild into the
//! same tree moves no node but the new ones and those whose host is gone.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

/// Node id → (host, [(address, mac)]).
type Placement = BTreeMap<String, (String, Vec<(Option<String>, String)>)>;

fn shipped() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("appliances/gridway-sge.voc");
    std::fs::read_to_string(path).unwrap()
}

/// The appliance with `role NAME { … count N … }` set to `count`.
fn with_count(text: &str, role: &str, count: u32) -> String {
    let at = text.find(&format!("role {role} {{")).unwrap();
    let close = at + text[at..].find('}').unwrap();
    let mut i = at + text[at..close].find("count ").unwrap() + "count ".len();
    // `count $fusion`: the count is set where the variable is (`let fusion = 2`).
    if let Some(var) = text[i..].strip_prefix('$') {
        let name: String = var
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let set = format!("let {name} = ");
        i = text.find(&set).unwrap() + set.len();
    }
    let digits = text[i..].find(|c: char| !c.is_ascii_digit()).unwrap();
    format!("{}{count}{}", &text[..i], &text[i + digits..])
}

fn vocc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vocc"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run vocc")
}

/// Writes `text` as `appliance.voc` in `dir` and builds it into `dir/out`.
fn build(dir: &Path, text: &str, out: &str) -> Output {
    std::fs::write(dir.join("appliance.voc"), text).unwrap();
    let output = vocc(
        dir,
        &[
            "build",
            "--config-only",
            "--secrets",
            "secrets",
            "-o",
            out,
            "appliance.voc",
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn placement(out: &Path) -> Placement {
    let text = std::fs::read_to_string(out.join("plan.json")).unwrap();
    let plan = vocc_runtime::schema::load_plan(&text).unwrap();
    plan.nodes
        .into_iter()
        .map(|n| {
            let nics = n.nics.into_iter().map(|c| (c.address, c.mac)).collect();
            (n.id, (n.host, nics))
        })
        .collect()
}

/// Builds `before` into a fresh tree, then `after` into the same tree and into a
/// fresh one: the placements (before, rebuilt, fresh).
fn rebuild(before: &str, after: &str) -> (Placement, Placement, Placement) {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), before, "out");
    let first = placement(&dir.path().join("out"));
    build(dir.path(), after, "out");
    build(dir.path(), after, "fresh");
    (
        first,
        placement(&dir.path().join("out")),
        placement(&dir.path().join("fresh")),
    )
}

/// The nodes of both placements whose host differs.
fn moved(a: &Placement, b: &Placement) -> Vec<String> {
    a.iter()
        .filter(|(id, (host, _))| b.get(*id).is_some_and(|(h, _)| h != host))
        .map(|(id, _)| id.clone())
        .collect()
}

/// Every node of `before` that is in `after` too has the same addresses and MACs.
fn same_nics(before: &Placement, after: &Placement) {
    for (id, (_, nics)) in before {
        if let Some((_, now)) = after.get(id) {
            assert_eq!(nics, now, "node `{id}` changed its addresses or MACs");
        }
    }
}

#[test]
fn growing_a_role_keeps_every_other_node_on_its_host() {
    let text = shipped();
    let grown = with_count(&text, "fusion", 3);
    let (before, after, fresh) = rebuild(&text, &grown);
    // Placed afresh, the new node early in the order shifts the hosts of those after it.
    assert!(!moved(&before, &fresh).is_empty(), "{fresh:?}");
    assert_eq!(moved(&before, &after), Vec::<String>::new(), "{after:?}");
    assert_eq!(after.len(), before.len() + 1);
    assert!(after.contains_key("gridway-fusion3"));
    same_nics(&before, &after);
}

#[test]
fn shrinking_a_role_keeps_every_other_node_on_its_host() {
    // (A role of one node names it without an index, so each role keeps two.)
    let text = with_count(&shipped(), "fusion", 3);
    let shrunk = with_count(&with_count(&text, "fusion", 2), "bio", 3);
    let (before, after, fresh) = rebuild(&text, &shrunk);
    assert!(!moved(&before, &fresh).is_empty(), "{fresh:?}");
    assert_eq!(moved(&before, &after), Vec::<String>::new(), "{after:?}");
    let ids: Vec<&str> = after.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        [
            "gridway-bio1",
            "gridway-bio2",
            "gridway-bio3",
            "gridway-front",
            "gridway-fusion1",
            "gridway-fusion2"
        ]
    );
    same_nics(&before, &after);
}

#[test]
fn removing_a_host_moves_only_its_nodes() {
    let text = shipped();
    let smaller = text.replace("host h[01-08]", "host h[02-08]");
    assert_ne!(smaller, text);
    let (before, after, fresh) = rebuild(&text, &smaller);
    assert!(moved(&before, &fresh).len() > 1, "{fresh:?}");
    let on_h01: Vec<String> = before
        .iter()
        .filter(|(_, (host, _))| host == "h01")
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(on_h01, ["gridway-front"]);
    assert_eq!(moved(&before, &after), on_h01, "{after:?}");
    assert!(after.values().all(|(host, _)| host != "h01"));
    same_nics(&before, &after);
}

#[test]
fn the_same_previous_plan_and_appliance_give_the_same_plan() {
    let text = shipped();
    let grown = with_count(&with_count(&text, "fusion", 4), "bio", 6);
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), &text, "a");
    build(dir.path(), &text, "b");
    build(dir.path(), &grown, "a");
    build(dir.path(), &grown, "b");
    let a = std::fs::read(dir.path().join("a/plan.json")).unwrap();
    let b = std::fs::read(dir.path().join("b/plan.json")).unwrap();
    assert!(a == b, "two rebuilds from the same plan differ");
}

#[test]
fn a_plan_of_another_site_or_one_that_cannot_be_read_keeps_nothing() {
    let text = shipped();
    let grown = with_count(&text, "fusion", 3);
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), &text.replace("site ucm", "site other"), "out");
    build(dir.path(), &grown, "out");
    build(dir.path(), &grown, "fresh");
    let out = dir.path().join("out");
    assert_eq!(placement(&out), placement(&dir.path().join("fresh")));

    // A plan that does not load is reported and left out of placement.
    build(dir.path(), &text, "broken");
    let broken = dir.path().join("broken");
    let target = std::fs::canonicalize(broken.join("plan.json")).unwrap();
    std::fs::remove_file(&target).unwrap();
    std::fs::write(&target, "{ not a plan").unwrap();
    let output = build(dir.path(), &grown, "broken");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("warning: cannot use the previous plan `broken/plan.json`"),
        "{stderr}"
    );
    assert_eq!(placement(&broken), placement(&dir.path().join("fresh")));
}

#[test]
fn explain_says_when_a_node_stays_on_its_host() {
    let text = shipped();
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), &text, "out");
    std::fs::write(
        dir.path().join("appliance.voc"),
        with_count(&text, "fusion", 3).replace("host h[01-08]", "host h[02-08]"),
    )
    .unwrap();
    let explain = |node: &str| {
        let out = vocc(dir.path(), &["explain", "appliance.voc", node, "-o", "out"]);
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8(out.stdout).unwrap()
    };
    let bio1 = explain("gridway-bio1");
    assert!(
        bio1.ends_with(
            "it stays on `h04`, its host in the previous plan, which still has room for it\n"
        ),
        "{bio1}"
    );
    let front = explain("gridway-front");
    assert!(
        front.contains(
            "its host in the previous plan, `h01`, is no longer in site `ucm`, so it is placed \
             again\nplacement spreads nodes"
        ),
        "{front}"
    );
    let new = explain("gridway-fusion3");
    assert!(!new.contains("previous plan"), "{new}");
    assert!(new.contains("placement spreads nodes"), "{new}");
}
