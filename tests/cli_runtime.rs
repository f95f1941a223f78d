//! Every runtime command takes the same target as `up`: a build output directory
//! (as TARGET or `--plan`), or an appliance file, which `up` builds into `--out` and
//! the other commands find there without building again. Run on the real binary with
//! the sim driver (no VMs).

mod runtime_fixture;

use runtime_fixture::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};

/// A directory with a site whose store is inside it, so nothing reaches the host's.
fn workdir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::Builder::new()
        .prefix("vocc-cli-rt-")
        .tempdir()
        .unwrap();
    let dir = t.path().to_path_buf();
    fs::write(
        dir.join("site.voc"),
        format!(
            "site test {{\n  host local {{\n    cpu 2\n    overcommit 16\n    memory 16G\n    reserve 1G\n    disk 64G\n    hypervisor [kvm xen]\n  }}\n  store \"{}\"\n}}\n",
            dir.join("store").display()
        ),
    )
    .unwrap();
    (t, dir)
}

fn demo() -> String {
    root().join("appliances/demo.voc").display().to_string()
}

fn json(dir: &Path, args: &[&str]) -> (Option<i32>, Value, String) {
    let mut args = args.to_vec();
    args.push("--json");
    let o = vocc(dir, &args, &[]);
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (o.status.code(), v, text(&o.stderr))
}

fn states(v: &Value) -> Vec<String> {
    v["clusters"][0]["nodes"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|n| n["state"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_command_takes_the_appliance_file_that_up_took() {
    let (_t, dir) = workdir();
    let file = demo();
    let f = file.as_str();
    let (code, _, err) = json(&dir, &["up", f, "--site", "site.voc", "--driver", "sim"]);
    assert_eq!(code, Some(0), "{err}");
    let plan = fs::metadata(dir.join("out/plan.json"))
        .unwrap()
        .modified()
        .unwrap();

    let (code, v, err) = json(&dir, &["status", f]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        !states(&v).is_empty() && states(&v).iter().all(|s| s == "running"),
        "{v}"
    );
    for (op, state) in [
        ("pause", "paused"),
        ("unpause", "running"),
        ("stop", "stopped"),
        ("start", "running"),
        ("unstage", "unstaged"),
    ] {
        let (code, _, err) = json(&dir, &[op, f]);
        assert_eq!(code, Some(0), "{op}: {err}");
        let (_, v, _) = json(&dir, &["status", "--plan", f]);
        assert!(states(&v).iter().all(|s| s == state), "{op}: {v}");
    }
    json(&dir, &["start", f]);
    // `exec` and `console` reach the node through the file too: the sim driver runs
    // every command as one that succeeds without output, and keeps no console, which
    // is what it says (not a usage error about the target).
    let o = vocc(&dir, &["exec", f, "head", "--", "true"], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = vocc(&dir, &["console", f, "head"], &[]);
    assert!(!text(&o.stderr).contains("Usage"), "{}", text(&o.stderr));

    let (code, v, err) = json(&dir, &["down", f]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["reports"][0]["operation"], "down");
    assert!(!dir.join("out/.vocc-run/demo").exists());
    // Nothing was built again after `up`.
    let again = fs::metadata(dir.join("out/plan.json"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(plan, again);
}

#[test]
fn a_file_is_found_where_up_built_it_and_nowhere_else() {
    let (_t, dir) = workdir();
    let file = demo();
    // Not built yet: refused, nothing built.
    let o = vocc(&dir, &["down", &file, "--driver", "sim"], &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(
        err.contains("has no build of") && err.contains("run `vocc up"),
        "{err}"
    );
    assert!(!dir.join("out").exists());
    // Built into `-o elsewhere`: found there with the same `-o`.
    let (code, _, err) = json(
        &dir,
        &[
            "up",
            &file,
            "-o",
            "elsewhere",
            "--site",
            "site.voc",
            "--driver",
            "sim",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let (code, v, err) = json(&dir, &["status", &file, "-o", "elsewhere"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(states(&v).iter().all(|s| s == "running"), "{v}");
    // Another appliance's build is not taken for this one.
    let osg = root().join("appliances/osg.voc").display().to_string();
    let o = vocc(&dir, &["down", &osg, "-o", "elsewhere"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("is of `"), "{}", text(&o.stderr));
    let (code, _, err) = json(&dir, &["down", "--plan", "elsewhere"]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn up_honours_plan_and_two_targets_are_refused() {
    let (_t, dir) = workdir();
    let o = vocc(
        &dir,
        &[
            "build",
            &demo(),
            "--site",
            "site.voc",
            "--config-only",
            "-o",
            "built",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    // There is no `out` here: `up --plan built` must use `built`.
    let (code, v, err) = json(&dir, &["up", "--plan", "built", "--driver", "sim"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["reports"][0]["cluster"], "demo");
    assert!(dir.join("built/.vocc-run/demo/journal.json").exists());
    let (code, _, err) = json(&dir, &["status", "built", "--plan", "other"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("two targets"), "{err}");
    let (code, _, err) = json(&dir, &["down", "built"]);
    assert_eq!(code, Some(0), "{err}");
}
