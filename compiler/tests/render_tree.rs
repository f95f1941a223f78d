//! The output tree: layout, hard links, the manifest, determinism and rebuilds.

mod common;

use common::{build_fixture, build_fixtures, read_tree, render_fixture, test_secrets};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use vocc_compiler::output::{stage_tree, write_tree, ExtraFile, Manifest};
use vocc_compiler::render::{render, Templates};
use vocc_runtime::Plan;

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn write(fixture: &str, out: &Path) -> Manifest {
    let (_, plan, rendered) = render_fixture(fixture);
    write_tree(out, &rendered, &plan, &[])
        .unwrap()
        .manifest()
        .unwrap()
}

#[test]
fn layout_of_the_osg_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    write("osg", out);
    let head = out.join("nodes/osg-head");
    for f in [
        "files/etc/hostname",
        "files/etc/hosts",
        "files/etc/network/interfaces",
        "files/etc/systemd/network/10-eth0.network",
        "files/etc/systemd/network/10-eth1.network",
        "files/etc/fstab",
        "files/etc/exports",
        "files/etc/slurm/slurm.conf",
        "files/etc/munge/munge.key",
        "cidata/meta-data",
        "cidata/user-data",
        "cidata/network-config",
        "cmdline",
        "xen.cfg",
    ] {
        assert!(head.join(f).is_file(), "missing nodes/osg-head/{f}");
    }
    let worker = out.join("nodes/osg-worker8");
    assert!(worker.join("files/etc/fstab").is_file());
    assert!(
        !worker.join("files/etc/exports").exists(),
        "workers export nothing"
    );
    assert!(
        !head.join("libvirt.xml").exists(),
        "a xen cluster has no libvirt domain"
    );
    assert_eq!(
        fs::read_to_string(head.join("files/etc/hostname")).unwrap(),
        "head\n"
    );

    let names: BTreeSet<String> = fs::read_dir(out.join("nodes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let expected: BTreeSet<String> = std::iter::once("osg-head".to_owned())
        .chain((1..=8).map(|i| format!("osg-worker{i}")))
        .collect();
    assert_eq!(names, expected);

    let key = head.join("files/etc/munge/munge.key");
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(head.join("xen.cfg"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );

    let plan_json = fs::read_to_string(out.join("plan.json")).unwrap();
    assert!(plan_json.ends_with("}\n"));
    let back: Plan = serde_json::from_str(&plan_json).unwrap();
    assert_eq!(back, build_fixture("osg").1);
}

#[test]
fn shared_files_are_one_inode() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    write("osg", out);
    let hosts = fs::read(out.join("nodes/osg-head/files/etc/hosts")).unwrap();
    let object = out.join("objects").join(sha(&hosts));
    let ino = fs::metadata(&object).unwrap().ino();
    for n in ["osg-head", "osg-worker1", "osg-worker8"] {
        for f in ["files/etc/hosts", "files/etc/slurm/slurm.conf"] {
            let m = fs::metadata(out.join("nodes").join(n).join(f)).unwrap();
            assert_eq!(m.nlink(), 10, "{n}/{f}: nine nodes and the object");
        }
        let m = fs::metadata(out.join("nodes").join(n).join("files/etc/hosts")).unwrap();
        assert_eq!(m.ino(), ino);
    }
    // A role-wide file is shared by the role only.
    let fstab = fs::metadata(out.join("nodes/osg-worker3/files/etc/fstab")).unwrap();
    assert_eq!(fstab.nlink(), 9, "eight workers and the object");
    // A content only one file has is that file alone: not under objects/.
    for own in [
        "nodes/osg-worker3/cidata/meta-data",
        "nodes/osg-worker3/xen.cfg",
        "nodes/osg-head/files/etc/fstab",
    ] {
        let bytes = fs::read(out.join(own)).unwrap();
        assert_eq!(fs::metadata(out.join(own)).unwrap().nlink(), 1, "{own}");
        assert!(!out.join("objects").join(sha(&bytes)).exists(), "{own}");
    }
}

#[test]
fn the_manifest_lists_every_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    let extra = ExtraFile {
        path: "reports/model.json".into(),
        bytes: b"{}\n".to_vec(),
        kind: "model".into(),
        cluster: None,
        source: "fixtures/osg.voc".into(),
    };
    let (_, plan, rendered) = render_fixture("osg");
    let written = write_tree(out, &rendered, &plan, &[extra]).unwrap();
    let manifest = written.manifest().unwrap();
    let text = fs::read_to_string(out.join("manifest.json")).unwrap();
    let on_disk: Manifest = serde_json::from_str(&text).unwrap();
    assert_eq!(on_disk, manifest);
    // Written node by node, it is what the expanded form writes.
    assert_eq!(manifest.to_json(), text);
    assert_eq!(written.files, manifest.files.len());
    assert_eq!(written.contents, manifest.objects.len());

    let tree = read_tree(out);
    let listed: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    let in_tree: BTreeSet<&str> = tree
        .keys()
        .map(String::as_str)
        .filter(|p| !p.starts_with("objects/") && *p != "manifest.json")
        .collect();
    assert_eq!(listed, in_tree);
    for f in &manifest.files {
        let (bytes, _) = &tree[&f.path];
        assert_eq!(f.sha256, sha(bytes), "{}", f.path);
        assert_eq!(f.size, bytes.len() as u64);
        if f.path.starts_with("nodes/") {
            assert!(f.node.is_some() && f.cluster.as_deref() == Some("osg"));
            assert!(
                f.source.starts_with("fixtures/osg.voc:"),
                "{}: {}",
                f.path,
                f.source
            );
        }
    }
    let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert!(paths.windows(2).all(|w| w[0] < w[1]), "sorted by path");

    // Every object is named by the hash of its content, is listed, and is exactly a
    // content that two files or more have, each of them a link to it.
    let objects: BTreeSet<(&str, String)> = tree
        .iter()
        .filter_map(|(p, (bytes, mode))| {
            let name = p.strip_prefix("objects/")?;
            assert_eq!(name, sha(bytes));
            let listed = manifest.objects.iter().find(|o| o.sha256 == name).unwrap();
            assert_eq!(listed.mode, format!("{mode:04o}"));
            Some((name, listed.mode.clone()))
        })
        .collect();
    let mut uses: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for f in manifest.files.iter().filter(|f| f.node.is_some()) {
        uses.entry(&f.sha256).or_default().push(&f.path);
    }
    let shared: BTreeSet<&str> = uses
        .iter()
        .filter(|(_, files)| files.len() > 1)
        .map(|(sha, _)| *sha)
        .collect();
    assert_eq!(
        objects.iter().map(|(s, _)| *s).collect::<BTreeSet<_>>(),
        shared
    );
    assert_eq!(written.objects, shared.len());
    for (sha, files) in &uses {
        let links = if files.len() > 1 { files.len() + 1 } else { 1 };
        for f in files {
            let m = fs::metadata(out.join(f)).unwrap();
            assert_eq!(m.nlink() as usize, links, "{f}");
        }
        assert_eq!(out.join("objects").join(sha).exists(), links > 1, "{sha}");
    }

    // Provenance: the fstab of the workers comes from the worker role's line.
    let fstab = manifest
        .files
        .iter()
        .find(|f| f.path == "nodes/osg-worker2/files/etc/fstab");
    let fstab = fstab.unwrap();
    assert_eq!(
        (fstab.kind.as_str(), fstab.scope.as_str()),
        ("fstab", "role")
    );
    assert_eq!(fstab.source, "fixtures/osg.voc:42:3");
}

#[test]
fn two_builds_are_byte_identical() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    write("osg", a.path());
    write("osg", b.path());
    assert_eq!(read_tree(a.path()), read_tree(b.path()));
}

#[test]
fn a_rebuild_equals_a_fresh_build() {
    // Build a bigger model first, then rebuild a smaller one into the same directory:
    // nodes and objects of the first build must go.
    let reused = tempfile::tempdir().unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let (model, plan) = build_fixtures(&["synthetic-12", "condor"]);
    let templates = Templates::embedded().unwrap();
    let rendered = render(&model, &plan, &templates, &test_secrets(&model)).unwrap();
    write_tree(reused.path(), &rendered, &plan, &[]).unwrap();
    assert!(reused.path().join("nodes/osg-worker11").is_dir());
    // What killed builds left is removed: temporaries of this version and of earlier
    // ones, and a generation that never became current. The runtime's state stays.
    for leftover in [".nodes.new/junk", ".vocc-tree.9/nodes/x"] {
        fs::create_dir_all(reused.path().join(leftover)).unwrap();
    }
    fs::write(reused.path().join(".plan.json.4242.tmp"), b"half").unwrap();
    fs::write(reused.path().join(".manifest.json.7.0.vocc-tmp"), b"half").unwrap();
    fs::write(reused.path().join("objects/.tmp.deadbeef.1"), b"half").unwrap();
    fs::create_dir_all(reused.path().join(".vocc-run/osg")).unwrap();
    fs::write(reused.path().join(".vocc-run/osg/journal.json"), b"{}").unwrap();

    write("osg", reused.path());
    write("osg", fresh.path());
    assert!(!reused.path().join("nodes/osg-worker11").exists());
    assert!(!reused.path().join("nodes/voc-head").exists());
    assert_eq!(read_tree(reused.path()), read_tree(fresh.path()));
    assert_eq!(entries(reused.path()), entries(fresh.path()));
    assert_eq!(
        fs::read(reused.path().join(".vocc-run/osg/journal.json")).unwrap(),
        b"{}"
    );
}

/// The names at the top of `out`, leaving out the runtime's state, with the number of
/// the current generation as `N`.
fn entries(out: &Path) -> BTreeSet<String> {
    let current = fs::read_link(out.join(".vocc-tree")).unwrap();
    let current = current.to_str().unwrap();
    fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != ".vocc-run")
        .map(|n| {
            if n == current {
                ".vocc-tree.N".into()
            } else {
                n
            }
        })
        .collect()
}

#[test]
fn the_top_of_the_tree_is_links_through_the_current_generation() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    write("osg", out);
    assert_eq!(
        entries(out),
        [
            ".vocc-lock",
            ".vocc-tree",
            ".vocc-tree.N",
            "manifest.json",
            "nodes",
            "objects",
            "plan.json"
        ]
        .map(String::from)
        .into()
    );
    for name in ["manifest.json", "nodes", "objects", "plan.json"] {
        assert_eq!(
            fs::read_link(out.join(name)).unwrap(),
            Path::new(".vocc-tree").join(name)
        );
    }
    assert_eq!(
        fs::read_link(out.join(".vocc-tree")).unwrap(),
        Path::new(".vocc-tree.1")
    );
    write("osg", out);
    assert_eq!(
        fs::read_link(out.join(".vocc-tree")).unwrap(),
        Path::new(".vocc-tree.2")
    );
    assert!(
        !out.join(".vocc-tree.1").exists(),
        "the old tree is removed"
    );
    // A name the new tree does not have leaves OUT with it.
    let extra = ExtraFile {
        path: "reports/model.json".into(),
        bytes: b"{}\n".to_vec(),
        kind: "model".into(),
        cluster: None,
        source: "fixtures/osg.voc".into(),
    };
    let (_, plan, rendered) = render_fixture("osg");
    write_tree(out, &rendered, &plan, &[extra]).unwrap();
    assert_eq!(fs::read(out.join("reports/model.json")).unwrap(), b"{}\n");
    write("osg", out);
    assert!(fs::symlink_metadata(out.join("reports")).is_err());
}

/// Checks that every file the manifest of `out` lists is there with its content, and
/// that `nodes/` holds the plan's nodes only.
fn check_whole(out: &Path) {
    let manifest: Manifest =
        serde_json::from_slice(&fs::read(out.join("manifest.json")).unwrap()).unwrap();
    for f in &manifest.files {
        assert_eq!(
            sha(&fs::read(out.join(&f.path)).unwrap()),
            f.sha256,
            "{}",
            f.path
        );
    }
    let plan: Plan = serde_json::from_slice(&fs::read(out.join("plan.json")).unwrap()).unwrap();
    let planned: BTreeSet<String> = plan.nodes.iter().map(|n| n.dir.clone()).collect();
    let present: BTreeSet<String> = fs::read_dir(out.join("nodes"))
        .unwrap()
        .map(|e| format!("nodes/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    assert_eq!(present, planned);
}

#[test]
fn a_tree_of_an_earlier_version_is_replaced_whole() {
    // The layout an earlier vocc wrote: real files and directories at the top, with
    // the leftovers of a killed build.
    let old = tempfile::tempdir().unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let out = old.path();
    let (model, plan) = build_fixtures(&["synthetic-12", "condor"]);
    let templates = Templates::embedded().unwrap();
    let rendered = render(&model, &plan, &templates, &test_secrets(&model)).unwrap();
    write_tree(out, &rendered, &plan, &[]).unwrap();
    let current = out.join(fs::read_link(out.join(".vocc-tree")).unwrap());
    for name in ["manifest.json", "nodes", "objects", "plan.json"] {
        fs::remove_file(out.join(name)).unwrap();
        fs::rename(current.join(name), out.join(name)).unwrap();
    }
    fs::remove_file(out.join(".vocc-tree")).unwrap();
    fs::remove_dir(&current).unwrap();
    fs::create_dir_all(out.join("layers/osg")).unwrap();
    fs::write(out.join("layers/osg/os.img"), b"layer").unwrap();
    fs::create_dir_all(out.join(".nodes.old/osg-worker1")).unwrap();
    fs::write(out.join(".plan.json.4242.tmp"), b"half").unwrap();

    write("osg", out);
    write("osg", fresh.path());
    check_whole(out);
    assert_eq!(read_tree(out), read_tree(fresh.path()));
    assert_eq!(entries(out), entries(fresh.path()));
}

#[test]
fn a_tree_dropped_before_its_commit_leaves_the_old_one() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    write("osg", out);
    let before = read_tree(out);
    let names = entries(out);
    let (model, plan) = build_fixtures(&["condor"]);
    let templates = Templates::embedded().unwrap();
    let rendered = render(&model, &plan, &templates, &test_secrets(&model)).unwrap();
    let staged = stage_tree(out, &rendered, &plan, &[]).unwrap();
    assert!(staged.dir().join("plan.json").is_file());
    // Readers see the old tree while the new one is written.
    assert_eq!(read_tree(out), before);
    drop(staged);
    assert_eq!(read_tree(out), before);
    assert_eq!(entries(out), names);
}

#[test]
fn concurrent_builds_into_one_directory_do_not_interleave() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    let a = render_fixture("osg");
    let (model, plan) = build_fixtures(&["condor", "pbs"]);
    let templates = Templates::embedded().unwrap();
    let rendered = render(&model, &plan, &templates, &test_secrets(&model)).unwrap();
    let b = (model, plan, rendered);
    for _ in 0..4 {
        std::thread::scope(|s| {
            for (_, plan, rendered) in [&a, &b, &a, &b] {
                s.spawn(move || write_tree(out, rendered, plan, &[]).unwrap());
            }
        });
        check_whole(out);
        assert_eq!(fs::read_dir(out).unwrap().count(), 7, "{:?}", entries(out));
    }
}

#[test]
fn every_fixture_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, plan) = build_fixtures(&["osg", "pbs", "sge", "condor"]);
    let templates = Templates::embedded().unwrap();
    let rendered = render(&model, &plan, &templates, &test_secrets(&model)).unwrap();
    let manifest = write_tree(tmp.path(), &rendered, &plan, &[])
        .unwrap()
        .manifest()
        .unwrap();
    let nodes: BTreeSet<&str> = manifest
        .files
        .iter()
        .filter_map(|f| f.node.as_deref())
        .collect();
    assert_eq!(nodes.len(), plan.nodes.len());
    assert!(tmp.path().join("nodes/voc-compute28/libvirt.xml").is_file());
    assert!(tmp.path().join("nodes/vo-a-head/xen.cfg").is_file());
}

#[test]
fn a_node_outside_the_plan_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, mut plan, rendered) = render_fixture("osg");
    plan.nodes.retain(|n| n.id != "osg-worker3");
    let err = write_tree(tmp.path(), &rendered, &plan, &[]).unwrap_err();
    assert!(err.to_string().contains("osg-worker3"), "{err}");

    let (_, mut plan, rendered) = render_fixture("osg");
    plan.nodes[1].dir = "../escape".into();
    let err = write_tree(tmp.path(), &rendered, &plan, &[]).unwrap_err();
    assert!(err.to_string().contains("../escape"), "{err}");
}
