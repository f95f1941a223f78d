//! `vocc graph`: Graphviz reads the DOT it writes, and draws each label's lines as
//! separate lines, with every value as written (no escape of DOT taking effect).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use vocc_compiler::{compile, FsWorld, Options};

/// The texts of the SVG that `dot -Tsvg` draws for the appliance `text`.
fn drawn(text: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.voc");
    std::fs::write(&file, text).unwrap();
    drawn_file(&file)
}

/// The same for the appliance file `file`, where it is (beside its layers).
fn drawn_file(file: &Path) -> Vec<String> {
    let c = compile(&FsWorld, file, &Options::default()).unwrap();
    let model = c
        .model
        .unwrap_or_else(|| panic!("{}", vocc_dsl::diag::render(&c.map, &c.diags, false)));
    let dot = vocc_compiler::graph::dot(&model);
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("graphviz `dot` is installed (Debian package graphviz)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dot.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.is_empty(), "{stderr}\n{dot}");
    let svg = String::from_utf8(out.stdout).unwrap();
    svg.split("<text")
        .skip(1)
        .filter_map(|t| t.split_once('>'))
        .filter_map(|(_, rest)| rest.split_once("</text>"))
        .map(|(text, _)| {
            text.replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&#45;", "-")
                .replace("&amp;", "&")
        })
        .collect()
}

#[test]
fn labels_are_drawn_on_separate_lines() {
    let osg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../appliances/osg.voc");
    let texts = drawn_file(&osg);
    assert!(
        !texts.iter().any(|t| t.contains("\\n")),
        "a literal `\\n` is drawn: {texts:#?}"
    );
    for line in [
        "private",
        "10.20.0.0/24 pool",
        "head ×1",
        "slurm controller submit",
    ] {
        assert!(texts.iter().any(|t| t == line), "no `{line}` in {texts:#?}");
    }
}

#[test]
fn values_are_drawn_as_written() {
    // `\N` and `\G` are DOT's escapes for the node's and the graph's names; a VO
    // holding them is drawn as written.
    let texts = drawn(
        r#"cluster c {
  vo "a\\Nb \"c\" \\G & <d> \\n"
  network private { subnet 10.9.0.0/24 }
  layer tiny { from busybox }
  role head { root tiny; nic eth0 private }
}"#,
    );
    assert!(
        texts
            .iter()
            .any(|t| t == r#"c (vo a\Nb "c" \G & <d> \n, any hypervisor)"#),
        "{texts:#?}"
    );
}
