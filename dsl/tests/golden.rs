//! Data-driven tests: every `tests/inputs/<area>/*.voc` is checked against the golden
//! files beside it. Set `VOCC_BLESS=1` to write the golden files from the current output
//! instead (then review the diff).
//!
//! - `parse/x.voc` → `x.tree` (the tree, see `vocc_dsl::dump`) and `x.diags` (one
//!   diagnostic per line in short form, hints indented below; absent when there are
//!   none).
//! - `fmt/x.voc` → `x.fmt` (the formatted text), or `x.diags` if formatting is refused.
//! - Every input of every area that parses without errors formats idempotently, and
//!   its formatted text parses to the same tree.

use std::fs;
use std::path::{Path, PathBuf};
use vocc_dsl::{dump, format, format_source, parse, Diagnostic, FileId, SourceMap};

fn inputs(area: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/inputs")
        .join(area);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "voc"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    files
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn short_diags(path: &Path, text: &str, diags: &[Diagnostic]) -> String {
    let mut map = SourceMap::new();
    map.add(name(path), text);
    let mut out = String::new();
    for d in diags {
        out.push_str(&d.short(&map));
        out.push('\n');
        for h in &d.hints {
            out.push_str(&format!("    help: {h}\n"));
        }
    }
    out
}

/// Compares `actual` with the golden file `path` (absent means empty), or writes it when
/// blessing. Returns a description of the mismatch.
fn check(path: &Path, actual: &str) -> Option<String> {
    if std::env::var_os("VOCC_BLESS").is_some() {
        let result = if actual.is_empty() {
            fs::remove_file(path).or(Ok(()))
        } else {
            fs::write(path, actual)
        };
        result.unwrap_or_else(|e: std::io::Error| panic!("{}: {e}", path.display()));
        return None;
    }
    let expected = fs::read_to_string(path).unwrap_or_default();
    (expected != actual).then(|| {
        format!(
            "--- {} (expected)\n{expected}--- actual\n{actual}",
            path.display()
        )
    })
}

fn report(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{}\n(set VOCC_BLESS=1 to accept)",
        failures.join("\n")
    );
}

#[test]
fn parse_goldens() {
    let mut failures = Vec::new();
    for path in inputs("parse") {
        let text = read(&path);
        let (doc, diags) = parse(FileId(0), &text);
        failures.extend(check(
            &path.with_extension("tree"),
            &dump::dump(&doc, &text),
        ));
        failures.extend(check(
            &path.with_extension("diags"),
            &short_diags(&path, &text, &diags),
        ));
    }
    report(failures);
}

#[test]
fn fmt_goldens() {
    let mut failures = Vec::new();
    for path in inputs("fmt") {
        let text = read(&path);
        let (formatted, diags) = match format_source(FileId(0), &text) {
            Ok(f) => (f, String::new()),
            Err(d) => (String::new(), short_diags(&path, &text, &d)),
        };
        failures.extend(check(&path.with_extension("fmt"), &formatted));
        failures.extend(check(&path.with_extension("diags"), &diags));
    }
    report(failures);
}

#[test]
fn formatting_is_idempotent_and_keeps_the_tree() {
    let mut checked = 0;
    for path in inputs("parse").into_iter().chain(inputs("fmt")) {
        let text = read(&path);
        let (doc, diags) = parse(FileId(0), &text);
        if diags.iter().any(Diagnostic::is_error) {
            continue;
        }
        let once = format(&doc, &text);
        let (doc2, diags2) = parse(FileId(0), &once);
        assert!(
            diags2.is_empty(),
            "{}: formatted text has errors:\n{once}",
            path.display()
        );
        assert_eq!(
            dump::shape(&doc2),
            dump::shape(&doc),
            "{}: tree changed",
            path.display()
        );
        assert_eq!(
            doc2.comments.len(),
            doc.comments.len(),
            "{}: comments lost",
            path.display()
        );
        let twice = format(&doc2, &once);
        assert_eq!(
            twice,
            once,
            "{}: formatting is not idempotent",
            path.display()
        );
        checked += 1;
    }
    assert!(checked > 5, "only {checked} error-free inputs");
}
