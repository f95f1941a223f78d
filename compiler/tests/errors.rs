//! Error cases as data: every `tests/inputs/errors/*.voc` is a bad appliance that
//! carries the diagnostics it must produce as comment lines at its top:
//!
//! ```text
//! # expect: 12:5: unknown key `memroy` in a role
//! # expect: imports/a.voc:3:8: import cycle: `a.voc` imports `b.voc` imports `a.voc`
//! # site: sites/small.voc
//! # var: workers=3
//! # help: did you mean `memory`?
//! ```
//!
//! An expect line is `LINE:COL: MESSAGE` for the case file itself, or
//! `FILE:LINE:COL: MESSAGE` for another file (relative to the case). `site` names a
//! site file relative to the case, `var` is a `--var`, and each `help` is text that a
//! hint of some diagnostic of the case must contain (written by hand, never blessed). The case must produce exactly
//! the expected error diagnostics, in order of position: the compiler's and, when
//! compiling succeeds, those of placement on the site. Folders beside the cases hold
//! helper files (imports, sites) and are not cases themselves.
//!
//! `VOCC_BLESS=1 cargo test -p vocc-compiler --test errors` rewrites the expect lines
//! from what the compiler says, so adding a case is adding a file (then reading what
//! it got). `VOCC_CASE=word` runs only the cases whose file name contains `word`;
//! `VOCC_SHOW=1` prints every case's rendered diagnostics (with `--nocapture`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use vocc_compiler::{compile, FsWorld, Options};
use vocc_dsl::{Diagnostic, SourceMap};

const EXPECT: &str = "# expect: ";
const SITE: &str = "# site: ";
const VAR: &str = "# var: ";
const HELP: &str = "# help: ";

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/inputs/errors")
}

/// The directives of a case: its leading comment lines.
struct Header {
    expect: Vec<String>,
    site: Option<PathBuf>,
    vars: Vec<(String, String)>,
    helps: Vec<String>,
}

fn header(dir: &Path, text: &str) -> Result<Header, String> {
    let mut h = Header {
        expect: Vec::new(),
        site: None,
        vars: Vec::new(),
        helps: Vec::new(),
    };
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        if let Some(e) = line.strip_prefix(EXPECT) {
            h.expect.push(e.to_string());
        } else if let Some(s) = line.strip_prefix(SITE) {
            h.site = Some(dir.join(s.trim()));
        } else if let Some(text) = line.strip_prefix(HELP) {
            h.helps.push(text.trim().to_string());
        } else if let Some(v) = line.strip_prefix(VAR) {
            let (name, value) = v
                .split_once('=')
                .ok_or_else(|| format!("`{line}`: write `# var: name=value`"))?;
            h.vars
                .push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    Ok(h)
}

/// `LINE:COL: MESSAGE`, with the file in front when it is not the case itself.
fn short(map: &SourceMap, d: &Diagnostic, case: &Path, dir: &Path) -> String {
    let loc = map.locate(d.span);
    let file = Path::new(&loc.file);
    let prefix = if file == case {
        String::new()
    } else {
        let rel = file.strip_prefix(dir).unwrap_or(file);
        format!("{}:", rel.display())
    };
    format!("{prefix}{}:{}: {}", loc.line, loc.col, d.message)
}

/// What every diagnostic must look like, whatever the case.
fn style_problems(d: &Diagnostic) -> Vec<String> {
    let mut out = Vec::new();
    let m = &d.message;
    if m.chars().next().is_some_and(char::is_uppercase) {
        out.push("message starts with an uppercase letter".to_string());
    }
    if m.ends_with('.') {
        out.push("message ends with a period".to_string());
    }
    if d.hints.is_empty() {
        out.push("no hint says what to do".to_string());
    }
    for h in &d.hints {
        if h.trim().is_empty() {
            out.push("an empty hint".to_string());
        }
    }
    if d.span.start > d.span.end {
        out.push("span ends before it starts".to_string());
    }
    out
}

/// What compiling one case gave.
struct Outcome {
    text: String,
    header: Header,
    /// The error diagnostics in `short` form.
    actual: Vec<String>,
    /// Style and rendering problems, one per line.
    problems: String,
    rendered: String,
}

fn outcome(path: &Path) -> Result<Outcome, String> {
    let dir = cases_dir();
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let header = header(&dir, &text)?;
    let options = Options {
        site: header.site.clone(),
        vars: header.vars.clone(),
        ..Default::default()
    };
    let c = compile(&FsWorld, path, &options).map_err(|e| e.to_string())?;
    let mut diags = c.diags.clone();
    if let Some(model) = &c.model {
        if let Err(mut d) = vocc_compiler::plan::plan(model) {
            diags.append(&mut d);
        }
    }
    // In order of position, as the command line prints them.
    vocc_dsl::diag::sort(&mut diags);
    let actual: Vec<String> = diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| short(&c.map, d, path, &dir))
        .collect();

    let mut problems = String::new();
    for want in &header.helps {
        if !diags
            .iter()
            .any(|d| d.hints.iter().any(|h| h.contains(want.as_str())))
        {
            let _ = writeln!(problems, "  no hint says `{want}`");
        }
    }
    for d in &diags {
        for p in style_problems(d) {
            let _ = writeln!(problems, "  {}: {p}", short(&c.map, d, path, &dir));
        }
    }
    // Both output forms must work on every diagnostic.
    let rendered = vocc_dsl::diag::render(&c.map, &diags, false);
    for d in &diags {
        if !rendered.contains(&d.message) {
            let _ = writeln!(problems, "  rendering lost `{}`", d.message);
        }
        let json = d.to_json(&c.map);
        let loc = c.map.locate(d.span);
        if (json.line, json.col) != (loc.line, loc.col)
            || (json.end_line, json.end_col) < (json.line, json.col)
        {
            let _ = writeln!(problems, "  json position of `{}` is wrong", d.message);
        }
        match serde_json::to_value(&json) {
            Ok(v) if v["message"] == d.message.as_str() => {}
            Ok(_) => {
                let _ = writeln!(problems, "  json of `{}` lost its message", d.message);
            }
            Err(e) => {
                let _ = writeln!(problems, "  json of `{}` fails: {e}", d.message);
            }
        }
    }
    Ok(Outcome {
        text,
        header,
        actual,
        problems,
        rendered,
    })
}

/// Runs one case; `Err` describes every way it failed. Blessing rewrites the expect
/// lines until they agree with the output: their number moves the lines below them.
fn run(path: &Path, bless: bool) -> Result<(), String> {
    let mut o = outcome(path)?;
    if bless {
        for _ in 0..4 {
            if o.actual == o.header.expect {
                break;
            }
            std::fs::write(path, blessed(&o.text, &o.actual)).map_err(|e| e.to_string())?;
            o = outcome(path)?;
        }
    }
    if std::env::var_os("VOCC_SHOW").is_some_and(|v| v == "1") {
        println!("==== {}\n{}", path.display(), o.rendered);
    }
    let mut problems = o.problems;
    if o.actual != o.header.expect {
        let _ = writeln!(problems, "  diagnostics differ (- expected, + actual):");
        problems.push_str(&diff(&o.header.expect, &o.actual));
        let _ = writeln!(problems, "  rendered:\n{}", o.rendered);
    }
    if o.actual.is_empty() {
        let _ = writeln!(problems, "  the case produces no error: it tests nothing");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The case text with its expect lines replaced by `actual`, where the first one was
/// (or after the other header lines).
fn blessed(text: &str, actual: &[String]) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let header_len = lines.iter().take_while(|l| l.starts_with('#')).count();
    let at = lines[..header_len]
        .iter()
        .position(|l| l.starts_with(EXPECT))
        .unwrap_or(header_len);
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i == at {
            for a in actual {
                let _ = writeln!(out, "{EXPECT}{a}");
            }
        }
        if i < header_len && line.starts_with(EXPECT) {
            continue;
        }
        let _ = writeln!(out, "{line}");
    }
    if at == lines.len() {
        for a in actual {
            let _ = writeln!(out, "{EXPECT}{a}");
        }
    }
    out
}

/// A line diff of two short lists: common lines kept, the rest marked `-` and `+`.
fn diff(expected: &[String], actual: &[String]) -> String {
    let (n, m) = (expected.len(), actual.len());
    // Longest common subsequence table, from the ends.
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            let _ = writeln!(out, "      {}", expected[i]);
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(out, "    + {}", actual[j]);
            j += 1;
        } else {
            let _ = writeln!(out, "    - {}", expected[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn error_cases() {
    let bless = std::env::var_os("VOCC_BLESS").is_some_and(|v| v == "1");
    let only = std::env::var("VOCC_CASE").unwrap_or_default();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("tests/inputs/errors exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "voc"))
        .collect();
    cases.sort();
    assert!(
        !only.is_empty() || cases.len() >= 45,
        "expected at least 45 error cases"
    );
    let mut failures = String::new();
    let mut ran = 0;
    for case in cases.iter().filter(|p| p.to_string_lossy().contains(&only)) {
        ran += 1;
        if let Err(e) = run(case, bless) {
            let name = case
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let _ = writeln!(failures, "{name}:\n{e}");
        }
    }
    assert!(ran > 0, "no error case matches `{only}`");
    assert!(failures.is_empty(), "{failures}");
}

/// The runner's own parts, so that a broken runner cannot pass every case.
#[test]
fn the_runner_reads_headers_and_blesses_in_place() {
    let dir = Path::new("/cases");
    let text = "# A case.\n# site: sites/s.voc\n# expect: 1:1: old\n# var: a=1\n\ncluster x {}\n";
    let h = header(dir, text).unwrap();
    assert_eq!(h.expect, ["1:1: old"]);
    assert_eq!(h.site, Some(dir.join("sites/s.voc")));
    assert_eq!(h.vars, [("a".to_string(), "1".to_string())]);
    let new = blessed(text, &["2:3: new".to_string(), "4:5: newer".to_string()]);
    assert_eq!(
        new,
        "# A case.\n# site: sites/s.voc\n# expect: 2:3: new\n# expect: 4:5: newer\n# var: a=1\n\ncluster x {}\n"
    );
    let d = diff(&["a".into(), "b".into()], &["a".into(), "c".into()]);
    assert_eq!(d, "      a\n    + c\n    - b\n");
}

/// No input makes the compiler (or placement) panic: every case and every shipped
/// appliance, with each of its lines left out in turn and cut short at each line.
#[test]
fn damaged_inputs_never_panic() {
    let mut sources: Vec<PathBuf> = Vec::new();
    for dir in [
        cases_dir(),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../appliances"),
    ] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("folder exists")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "voc"))
            .collect();
        found.sort();
        sources.extend(found);
    }
    let path = Path::new("damaged.voc");
    let mut compiled = 0;
    for source in &sources {
        let text = std::fs::read_to_string(source).expect("readable");
        let lines: Vec<&str> = text.lines().collect();
        let mut variants: Vec<String> = Vec::new();
        for i in 0..lines.len() {
            let mut without = lines.clone();
            without.remove(i);
            variants.push(without.join("\n"));
            variants.push(lines[..i].join("\n"));
        }
        for variant in variants {
            let world = vocc_compiler::MemWorld::new().with(path, variant.clone());
            let result = std::panic::catch_unwind(|| {
                let c = compile(&world, path, &Options::default()).expect("in memory");
                if let Some(model) = &c.model {
                    let _ = vocc_compiler::plan::plan(model);
                }
                vocc_dsl::diag::render(&c.map, &c.diags, false)
            });
            assert!(
                result.is_ok(),
                "{} damaged this way panics:\n{variant}",
                source.display()
            );
            compiled += 1;
        }
    }
    assert!(compiled > 1000, "only {compiled} damaged inputs");
}

/// The other side of the `--var` errors: a good one overrides its `let`, also with a
/// value spelt like a keyword, and says nothing.
#[test]
fn good_vars_compile_clean() {
    let osg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../appliances/osg.voc");
    let options = Options {
        site: None,
        vars: vec![("workers".into(), "2".into())],
        ..Default::default()
    };
    let c = compile(&FsWorld, &osg, &options).expect("osg.voc is readable");
    assert!(
        c.diags.is_empty(),
        "{}",
        vocc_dsl::diag::render(&c.map, &c.diags, false)
    );
    let model = c.model.expect("a model");
    assert_eq!(model.clusters[0].nodes.len(), 3);

    let path = Path::new("kind.voc");
    let text = "let kind = node\ncluster lab {\n  vo $kind\n  layer tiny { from busybox }\n  role head { root tiny }\n}\n";
    let world = vocc_compiler::MemWorld::new().with(path, text);
    let options = Options {
        site: None,
        vars: vec![("kind".into(), "cluster".into())],
        ..Default::default()
    };
    let c = compile(&world, path, &options).expect("in memory");
    assert!(
        c.diags.is_empty(),
        "{}",
        vocc_dsl::diag::render(&c.map, &c.diags, false)
    );
    assert_eq!(c.model.expect("a model").clusters[0].vo, "cluster");
}
