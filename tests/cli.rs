//! The `vocc` binary as users and pipelines meet it: exit codes, diagnostics on
//! stderr, `--json`, colours, `fmt`, `graph`, `model`, `explain`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn vocc(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vocc"))
        .args(args)
        .current_dir(dir)
        .env_remove("NO_COLOR")
        .output()
        .expect("run vocc")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn appliances() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root().join("appliances"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "voc"))
        .map(|p| format!("appliances/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    v.sort();
    v
}

#[test]
fn check_accepts_every_shipped_appliance() {
    let files = appliances();
    let mut args = vec!["check"];
    args.extend(files.iter().map(String::as_str));
    let out = vocc(&args, &root());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Three appliances of the seed papers name their batch systems' packages (Torque,
    // HTCondor), which bookworm does not have: where this machine has apt's lists for
    // bookworm, check warns about exactly those, and says nothing else.
    let known = [
        "torque-client",
        "torque-mom",
        "torque-server",
        "torque-scheduler",
        "htcondor",
    ];
    let stderr = text(&out.stderr);
    for line in stderr
        .lines()
        .filter(|l| l.starts_with("warning") || l.starts_with("error"))
    {
        assert!(
            known
                .iter()
                .any(|p| line == format!("warning: `bookworm` has no package `{p}`")),
            "{stderr}"
        );
    }
}

#[test]
fn osg_fits_chiba() {
    let out = vocc(
        &[
            "check",
            "--site",
            "appliances/chiba.voc",
            "appliances/osg.voc",
        ],
        &root(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn errors_exit_1_with_rustc_style_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.voc"),
        "cluster c {\n  role head {\n    root os\n    memroy 512M\n  }\n}\n",
    )
    .unwrap();
    let out = vocc(&["check", "bad.voc"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    // Not a terminal: no colour codes.
    assert!(!err.contains('\u{1b}'), "{err}");
    assert!(
        err.contains("error: unknown key `memroy` in a role"),
        "{err}"
    );
    assert!(err.contains("bad.voc:4:5"), "{err}");
    assert!(err.contains("did you mean `memory`?"), "{err}");
    // Every error in the file at once: the unknown layer too.
    assert!(err.contains("unknown layer `os`"), "{err}");
    assert!(err.contains("^^^^^^"), "{err}");
}

#[test]
fn json_diagnostics_are_machine_readable() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.voc"), "cluster c {\n  vo\n}\n").unwrap();
    let out = vocc(&["check", "--json", "bad.voc"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json on stdout");
    assert_eq!(v["ok"], false);
    let d = &v["files"][0]["diagnostics"][0];
    assert_eq!(d["severity"], "error");
    assert_eq!(d["line"], 2);
    assert!(d["message"].as_str().unwrap().contains("`vo` needs"), "{d}");
    assert!(!d["hints"].as_array().unwrap().is_empty());
}

#[test]
fn usage_errors_exit_2() {
    let out = vocc(&["check"], &root());
    assert_eq!(out.status.code(), Some(2));
    let out = vocc(&["frobnicate"], &root());
    assert_eq!(out.status.code(), Some(2));
    let out = vocc(&["check", "no/such/file.voc"], &root());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read `no/such/file.voc`"));
}

#[test]
fn fmt_leaves_shipped_appliances_unchanged_and_is_idempotent() {
    // Every shipped file is already in the canonical layout, as `.ci/run` checks.
    let shipped = appliances();
    let mut args = vec!["fmt", "--check"];
    args.extend(shipped.iter().map(String::as_str));
    let out = vocc(&args, &root());
    assert!(
        out.status.success(),
        "`vocc fmt --check` on the shipped appliances failed:\n{}",
        text(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    for f in shipped {
        let src = std::fs::read_to_string(root().join(&f)).unwrap();
        let p = dir.path().join("x.voc");
        std::fs::write(&p, &src).unwrap();
        let once = vocc(&["fmt", "--stdout", "x.voc"], dir.path());
        assert!(once.status.success(), "{f}: {}", text(&once.stderr));
        std::fs::write(&p, &once.stdout).unwrap();
        let check = vocc(&["fmt", "--check", "x.voc"], dir.path());
        assert!(check.status.success(), "{f} is not stable under fmt");
        // Comments survive.
        let comments = |s: &str| {
            s.lines()
                .filter(|l| l.trim_start().starts_with('#'))
                .count()
        };
        assert_eq!(
            comments(&src),
            comments(&text(&once.stdout)),
            "{f} lost comments"
        );
    }
}

#[test]
fn fmt_rewrites_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.voc");
    std::fs::write(
        &p,
        "cluster a {   # the cluster\nvo \"a\"   ;  hypervisor kvm\n}\n",
    )
    .unwrap();
    let out = vocc(&["fmt", "--check", "a.voc"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let out = vocc(&["fmt", "a.voc"], dir.path());
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        "cluster a {  # the cluster\n  vo \"a\"; hypervisor kvm\n}\n"
    );
}

#[test]
fn graph_is_valid_dot() {
    let out = vocc(&["graph", "appliances/osg.voc"], &root());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dot = text(&out.stdout);
    assert!(dot.contains("mount at /opt/vdt"), "{dot}");
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("graphviz `dot` is installed (Debian package graphviz)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dot.as_bytes())
        .unwrap();
    let res = child.wait_with_output().unwrap();
    assert!(
        res.status.success(),
        "dot rejected the graph: {}",
        text(&res.stderr)
    );
    assert!(res.stderr.is_empty(), "dot warned: {}", text(&res.stderr));
}

#[test]
fn model_dump_keeps_source_locations() {
    let out = vocc(&["model", "appliances/demo.voc"], &root());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let role = &v["clusters"][0]["roles"][0];
    assert_eq!(role["name"], "head");
    assert!(
        role["origin"]
            .as_str()
            .unwrap()
            .starts_with("appliances/demo.voc:"),
        "{role}"
    );
}

#[test]
fn var_overrides_let() {
    let out = vocc(
        &["model", "--var", "workers=2", "appliances/osg.voc"],
        &root(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["clusters"][0]["nodes"].as_array().unwrap().len(), 3);
}

#[test]
fn explain_says_where_and_why() {
    let out = vocc(
        &[
            "explain",
            "--site",
            "appliances/chiba.voc",
            "appliances/osg.voc",
            "worker3",
        ],
        &root(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("osg-worker3"), "{s}");
    assert!(s.contains("c0"), "{s}");
    let out = vocc(&["explain", "appliances/osg.voc", "wroker3"], &root());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("worker3"),
        "{}",
        text(&out.stderr)
    );
}

/// Runs vocc with its standard output a pipe whose reading end is already closed, as
/// for `vocc model FILE | head` once `head` has what it wants.
fn vocc_into_closed_pipe(args: &[&str], dir: &Path) -> Output {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: `pipe` fills two new descriptors, each owned once below.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Command::new(env!("CARGO_BIN_EXE_vocc"))
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::from(write))
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run vocc")
}

#[test]
fn a_closed_pipe_on_stdout_ends_every_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let demo = root().join("appliances/demo.voc");
    let demo = demo.to_str().unwrap();
    let out = vocc(
        &[
            "build",
            "--config-only",
            "-o",
            "out",
            "--secrets",
            "sec",
            demo,
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let osg = root().join("appliances/osg.voc");
    let osg = osg.to_str().unwrap();
    for args in [
        &["model", osg][..],
        &["model", "--var", "workers=120", osg],
        &["graph", osg],
        &["check", "--json", osg],
        &["explain", osg, "worker1"],
        &["fmt", "--stdout", osg],
        &[
            "build",
            "--config-only",
            "-o",
            "out2",
            "--secrets",
            "sec",
            demo,
        ],
        &["status", "--plan", "out"],
    ] {
        let out = vocc_into_closed_pipe(args, dir.path());
        assert_eq!(
            out.status.code(),
            Some(0),
            "vocc {args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "vocc {args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_file_that_is_not_utf8_is_an_input_error_at_its_first_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("latin1.voc"),
        b"cluster c {\n  vo \"caf\xe9\"\n}\n",
    )
    .unwrap();
    let out = vocc(&["check", "latin1.voc"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("latin1.voc:2:10"), "{err}");
    assert!(err.contains("`latin1.voc` is not UTF-8 text"), "{err}");
    assert!(err.contains("byte 0xe9"), "{err}");
    // The same for `build`, and for a `--site` file.
    let out = vocc(&["build", "--config-only", "latin1.voc"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let demo = root().join("appliances/demo.voc");
    let out = vocc(
        &["check", "--site", "latin1.voc", demo.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("latin1.voc:2:10"));
    // `fmt` says the same and leaves the file alone.
    let out = vocc(&["fmt", "latin1.voc"], dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("latin1.voc:2:10"));
    assert_eq!(
        std::fs::read(dir.path().join("latin1.voc")).unwrap(),
        b"cluster c {\n  vo \"caf\xe9\"\n}\n"
    );
}

#[test]
fn input_that_defines_nothing_is_told_and_builds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.voc"), "").unwrap();
    std::fs::write(dir.path().join("bom.voc"), "\u{feff}").unwrap();
    std::fs::write(dir.path().join("comments.voc"), "# nothing yet\n").unwrap();
    std::fs::write(
        dir.path().join("noroles.voc"),
        "cluster c {\n  hypervisor kvm\n}\n",
    )
    .unwrap();
    for (f, warning) in [
        ("empty.voc", "warning: `empty.voc` has no statements"),
        ("bom.voc", "warning: `bom.voc` has no statements"),
        ("comments.voc", "warning: `comments.voc` has no statements"),
        ("noroles.voc", "warning: cluster `c` has no roles"),
    ] {
        let out = vocc(&["check", f], dir.path());
        assert_eq!(out.status.code(), Some(0), "{f}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains(warning),
            "{f}: {}",
            text(&out.stderr)
        );
        let out = vocc(&["build", "--config-only", "-o", "out", f], dir.path());
        assert_eq!(out.status.code(), Some(1), "{f}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("error: nothing to build"),
            "{f}: {}",
            text(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{f}");
        assert!(!dir.path().join("out").exists(), "{f}");
    }
    // A site file alone is fine to check.
    let out = vocc(&["check", "appliances/chiba.voc"], &root());
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn a_flood_of_mistakes_shows_the_first_hundred() {
    let dir = tempfile::tempdir().unwrap();
    let mut src = String::from("cluster c {\n");
    for i in 0..20_000 {
        src.push_str(&format!("  bogus{i} 1\n"));
    }
    src.push_str("}\n");
    std::fs::write(dir.path().join("many.voc"), src).unwrap();
    let out = vocc(&["check", "many.voc"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.matches("error: unknown key").count(), 100, "{err}");
    assert!(
        err.contains("... and 19900 more diagnostics not shown"),
        "{err}"
    );
    assert!(err.ends_with("error: 20000 errors found\n"), "{err}");
    assert!(err.len() < 100_000, "{} bytes of diagnostics", err.len());
    let out = vocc(&["check", "--json", "many.voc"], dir.path());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["files"][0]["diagnostics"].as_array().unwrap().len(), 100);
    assert_eq!(v["files"][0]["omitted"], 19900);
}
