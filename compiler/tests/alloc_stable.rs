//! Growing any role of a shipped appliance by one node changes no other node's address
//! or MAC: addresses depend on a node's role and index, not on other roles' counts.

use std::collections::BTreeMap;
use std::path::Path;
use vocc_compiler::{compile, FsWorld, Options};

type Nics = BTreeMap<(String, String), (String, String)>;

/// `(node id, nic)` → `(address, mac)` of every node of `text`, or the diagnostics.
/// The text is compiled as a file beside a copy of the shipped appliances' `layers/`,
/// whose directories the layers of the shipped files come from.
fn try_nics(text: &str) -> Result<Nics, String> {
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../appliances/layers");
    for entry in walkdir::WalkDir::new(&shipped) {
        let entry = entry.unwrap();
        let to = dir
            .path()
            .join("layers")
            .join(entry.path().strip_prefix(&shipped).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
        } else {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
    let path = dir.path().join("appliance.voc");
    std::fs::write(&path, text).unwrap();
    let c = compile(&FsWorld, &path, &Options::default()).expect("readable");
    let Some(model) = c.model else {
        return Err(vocc_dsl::diag::render(&c.map, &c.diags, false));
    };
    let mut map = BTreeMap::new();
    for cl in &model.clusters {
        for n in &cl.nodes {
            for nic in &n.nics {
                map.insert(
                    (n.id.clone(), nic.name.clone()),
                    (
                        nic.address.map(|a| a.to_string()).unwrap_or_default(),
                        nic.mac.clone(),
                    ),
                );
            }
        }
    }
    Ok(map)
}

fn nics(text: &str) -> Nics {
    try_nics(text).unwrap_or_else(|e| panic!("{e}"))
}

/// The appliance with one more node in the role whose block starts at `at` (the
/// offset of `role NAME {`): its `count N` becomes `count N+1`, or `count 2` is added.
/// A count that is a variable (`count $workers`) grows where the variable is set
/// (`let workers = 8`); `None` when it is set nowhere in the file.
fn grown(text: &str, at: usize) -> Option<String> {
    let open = at + text[at..].find('{').unwrap() + 1;
    let close = open + text[open..].find('}').unwrap();
    let block = &text[open..close];
    match block.find("count ") {
        Some(i) => {
            let mut start = open + i + "count ".len();
            if let Some(var) = text[start..].strip_prefix('$') {
                let name: String = var
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let set = format!("let {name} = ");
                start = text.find(&set)? + set.len();
            }
            let digits = text[start..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(0);
            let n: u32 = text[start..start + digits].parse().ok()?;
            Some(format!(
                "{}{}{}",
                &text[..start],
                n + 1,
                &text[start + digits..]
            ))
        }
        None => Some(format!("{}\n    count 2{}", &text[..open], &text[open..])),
    }
}

#[test]
fn growing_any_role_renumbers_nobody() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../appliances");
    let mut grown_roles = 0;
    for name in [
        "gridway-sge.voc",
        "osg.voc",
        "voc-condor.voc",
        "grid3.voc",
        "demo.voc",
    ] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let before = nics(&text);
        for (at, _) in text.match_indices("\n  role ") {
            // A scheduler's controller is one node: that role cannot grow.
            let Some(Ok(after)) = grown(&text, at + 1).map(|t| try_nics(&t)) else {
                continue;
            };
            assert!(after.len() > before.len(), "{name}: no node was added");
            for (k, v) in &before {
                // A role of one node named `head` becomes `head1` and `head2`: its own
                // node is renamed, every other one must keep what it had.
                if let Some(now) = after.get(k) {
                    assert_eq!(now, v, "{name}: {k:?} changed when a role at {at} grew");
                }
            }
            grown_roles += 1;
        }
    }
    assert!(grown_roles >= 5, "only {grown_roles} roles grown");
}

/// The case from the report: one more `fusion` worker in gridway-sge moved `bio`
/// workers to other addresses.
#[test]
fn one_more_fusion_worker_leaves_bio_workers_alone() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../appliances");
    let text = std::fs::read_to_string(dir.join("gridway-sge.voc")).unwrap();
    let before = nics(&text);
    let after = nics(&text.replacen("let fusion = 2", "let fusion = 3", 1));
    for i in 1..=5 {
        let k = (format!("gridway-bio{i}"), "eth0".to_string());
        assert_eq!(before[&k], after[&k], "{k:?}");
    }
    let new = &after[&("gridway-fusion3".to_string(), "eth0".to_string())];
    assert!(!before.values().any(|v| v.0 == new.0 || v.1 == new.1));
}
