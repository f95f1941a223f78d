//! `queue NAME for VO`: the queue takes the jobs of the members of the Unix group of
//! the VO's name, in each batch system's own terms (Slurm's `AllowGroups`, judged by
//! slurmctld in the root package's `validate.rs`; PBS's `acl_groups`; an SGE access
//! list in the queue's `user_lists`). A queue without `for` takes every job.

use std::fs;
use vocc_compiler::render::{render, Templates};
use vocc_compiler::secrets::Secrets;
use vocc_compiler::{compile, FsWorld, Options};

/// The files of node `node` rendered from an appliance with `kind` and two queues,
/// `a` for the VO `fusion` and `b` for every job.
fn rendered(kind: &str, node: &str) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.voc");
    fs::write(
        &file,
        format!(
            r#"cluster c {{
  network private {{ subnet 10.9.0.0/24 }}
  layer tiny {{ from busybox }}
  queue a for "fusion" default
  queue b
  role head {{ root tiny; nic eth0 private; scheduler {kind} controller }}
  role w {{ count 2; root tiny; nic eth0 private; scheduler {kind} compute queue a }}
  role x {{ root tiny; nic eth0 private; scheduler {kind} compute queue b }}
}}
"#
        ),
    )
    .unwrap();
    let c = compile(&FsWorld, &file, &Options::default()).unwrap();
    let model = c.model.expect("the appliance compiles");
    let plan = vocc_compiler::plan::plan(&model).unwrap();
    let secrets = Secrets::load_or_create(&dir.path().join("secrets"), &model).unwrap();
    let r = render(&model, &plan, &Templates::embedded().unwrap(), &secrets).unwrap();
    let n = r.node(node).expect("the node");
    n.files()
        .map(|f| {
            let text = String::from_utf8(r.content(f).unwrap().to_vec()).unwrap();
            (f.path.clone(), text)
        })
        .collect()
}

fn file<'a>(files: &'a [(String, String)], path: &str) -> &'a str {
    files
        .iter()
        .find(|(p, _)| p == path)
        .map(|(_, t)| t.as_str())
        .unwrap_or_else(|| panic!("no {path}"))
}

#[test]
fn pbs_queue_for_a_vo_takes_its_group() {
    let files = rendered("pbs", "c-head");
    let qmgr = file(&files, "files/etc/vocc/pbs/qmgr");
    let a: Vec<&str> = qmgr
        .lines()
        .filter(|l| l.starts_with("set queue a acl"))
        .collect();
    assert_eq!(
        a,
        [
            "set queue a acl_group_enable = True",
            "set queue a acl_groups = fusion",
            "set queue a acl_group_sloppy = True",
        ]
    );
    assert!(!qmgr.contains("set queue b acl"), "{qmgr}");
}

#[test]
fn sge_queue_for_a_vo_takes_its_access_list() {
    let files = rendered("sge", "c-head");
    let user_lists = |q: &str| {
        file(&files, &format!("files/etc/vocc/sge/queues/{q}"))
            .lines()
            .find(|l| l.starts_with("user_lists"))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(user_lists("a"), "fusion");
    assert_eq!(user_lists("b"), "NONE");
    assert_eq!(
        file(&files, "files/etc/vocc/sge/usersets/fusion"),
        "name    fusion\ntype    ACL\nfshare  0\noticket 0\nentries @fusion\n"
    );
    let qconf = file(&files, "files/etc/vocc/batch/configure");
    let acl = qconf
        .find("qconf -Au \"$dir/usersets/fusion\"")
        .expect("qconf.sh adds the access list");
    let queue = qconf
        .find("qconf -Aq \"$dir/queues/a\"")
        .expect("qconf.sh adds the queue");
    assert!(acl < queue, "the access list must exist before the queue");
    assert_eq!(
        files
            .iter()
            .filter(|(p, _)| p.starts_with("files/etc/vocc/sge/usersets/"))
            .count(),
        1
    );
}

#[test]
fn an_implicit_queue_takes_every_job() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.voc");
    fs::write(
        &file,
        "cluster c {\n  vo \"fusion\"\n  network private { subnet 10.9.0.0/24 }\n  \
         layer tiny { from busybox }\n  role head { root tiny; nic eth0 private; scheduler \
         slurm controller compute }\n}\n",
    )
    .unwrap();
    let c = compile(&FsWorld, &file, &Options::default()).unwrap();
    let model = c.model.expect("the appliance compiles");
    let queues = &model.clusters[0].scheduler.as_ref().unwrap().queues;
    assert_eq!(queues.len(), 1);
    assert_eq!(queues[0].vo, None);
}
