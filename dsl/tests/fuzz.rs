//! Property tests of the parser and the formatter on random input.
//!
//! Inputs come from three generators: a soup of fragments of the language's alphabet
//! (keywords, braces, quotes, numbers with units, addresses, comments, unicode, control
//! characters, garbage), documents rendered from a random tape of choices that follow
//! the grammar (so most of them are free of errors and exercise the formatter), and such
//! documents with a random fragment inserted somewhere.
//!
//! Properties: parsing never panics; every span lies inside the text, on character
//! boundaries, and inside its parent's span; diagnostics render; and for documents
//! without errors, formatting keeps the tree and the comments and is idempotent.
//!
//! `VOCC_FUZZ_CASES` sets the number of cases (default 2000).

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestRunner};
use std::sync::atomic::{AtomicUsize, Ordering};
use vocc_dsl::{diag, dump, format, parse, Context, Diagnostic, FileId, SourceMap, Span};
use vocc_dsl::{Stmt, Value, ValueKind};

/// Scalar values that are valid in any context (quoted when they are a keyword).
const ATOMS: &[&str] = &[
    "pool",
    "nfs-common",
    "g++",
    "xen",
    "\"bookworm\"",
    "\"a \\\"quoted\\\" \\\\ \\n \\t string\"",
    "\"\"",
    "\"中文 🎉 # not a comment\"",
    "8",
    "007",
    "18446744073709551615",
    "512M",
    "2G",
    "1.5G",
    "750MiB",
    "96MB",
    "0.5t",
    "192.0.2.10",
    "10.20.0.0/24",
    "/opt/vdt",
    "/",
    "head:/opt/vdt",
    "c[01-16]",
    "node[1-3].example.org",
    "$workers",
    "+",
    "=",
    "wörd",
    "1.5",
    "a/b:c",
    "count",
    "memory",
    "role",
];

/// Fragments for the soup: valid pieces, near misses and garbage.
const FRAGMENTS: &[&str] = &[
    "cluster",
    "site",
    "role",
    "layer",
    "network",
    "host",
    "import",
    "let",
    "count",
    "cpu",
    "memory",
    "disk",
    "packages",
    "subnet",
    "vo",
    "memroy",
    "{",
    "}",
    "[",
    "]",
    "\"",
    ";",
    "#",
    "# comment",
    "\n",
    "\r\n",
    " ",
    "  ",
    "\t",
    "",
    "\\",
    "\\\"",
    "\"str\"",
    "512M",
    "2G",
    "512X",
    "1.5G",
    "99999999999999999999999",
    "99999999999999999999G",
    "192.0.2.10",
    "300.1.1.1",
    "10.0.0.0/24",
    "10.0.0.0/33",
    "c[01-16]",
    "c[16-01]",
    "x[",
    "[1-2]",
    "-",
    "/opt",
    "head:/opt",
    "$x",
    "$",
    "$1",
    "+",
    "=",
    "é",
    "中",
    "🎉",
    "\u{a0}",
    "\u{feff}",
    "\u{2028}",
    "\u{85}",
    "\0",
    "\u{1}",
    "\u{7f}",
    "{{{{{{",
    "}}}}",
    "[[[[",
    "]]]]",
];

fn cases() -> u32 {
    std::env::var("VOCC_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// A source of choices for the structured generator; zeros once exhausted, so every
/// document ends.
struct Tape<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Tape<'_> {
    fn next(&mut self, n: u8) -> usize {
        let b = self.bytes.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        usize::from(b % n)
    }

    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }
}

fn render(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut tape = Tape { bytes, pos: 0 };
    while !tape.done() {
        stmts(&mut out, &mut tape, Context::File, 0);
    }
    out
}

fn stmts(out: &mut String, tape: &mut Tape, ctx: Context, depth: usize) {
    let n = tape.next(5);
    for _ in 0..n {
        if tape.done() {
            return;
        }
        match tape.next(10) {
            0 => out.push_str("# own line ü\n"),
            1 => out.push('\n'),
            2 => out.push_str("\n\n\n"),
            _ => {}
        }
        let keywords = ctx.keywords();
        let keyword = if keywords.is_empty() {
            ["thing", "cpu", "x-y", "role"][tape.next(4)]
        } else {
            keywords[tape.next(keywords.len() as u8)]
        };
        out.push_str(keyword);
        for _ in 0..tape.next(4) {
            out.push_str([" ", "  ", "\t"][tape.next(3)]);
            value(out, tape, ctx, depth);
        }
        if depth < 6 && tape.next(3) == 0 {
            out.push_str([" {", "{", "\n{", " # header\n\n{ # brace"][tape.next(4)]);
            out.push_str(["\n", " ", ""][tape.next(3)]);
            stmts(out, tape, ctx.child(keyword), depth + 1);
            out.push_str(["\n}", " }", "}", "\n# end\n}"][tape.next(4)]);
        }
        out.push_str(["\n", "; ", "  ", " # trailing\n", "\r\n", ";\n", "\n\n"][tape.next(7)]);
    }
}

fn value(out: &mut String, tape: &mut Tape, ctx: Context, depth: usize) {
    if depth < 6 && tape.next(8) == 0 {
        out.push('[');
        for _ in 0..tape.next(5) {
            out.push_str([" ", "\n", " # in a list\n", ""][tape.next(4)]);
            value(out, tape, Context::Unknown, depth + 1);
            out.push(' ');
        }
        out.push_str(["]", "\n]", " # before the end\n]"][tape.next(3)]);
        return;
    }
    let atom = ATOMS[tape.next(ATOMS.len() as u8)];
    if ctx.is_keyword(atom) {
        out.push_str(&format!("\"{atom}\""));
    } else {
        out.push_str(atom);
    }
}

fn inputs() -> impl Strategy<Value = String> {
    let soup = prop::collection::vec(
        prop_oneof![
            4 => select(FRAGMENTS).prop_map(str::to_string),
            1 => "\\PC{0,4}",
            1 => any::<char>().prop_map(String::from),
        ],
        0..60,
    )
    .prop_map(|parts| parts.join(""));
    let tape = || prop::collection::vec(any::<u8>(), 0..300);
    let structured = tape().prop_map(|t| render(&t));
    let mutated =
        (tape(), select(FRAGMENTS), any::<prop::sample::Index>()).prop_map(|(t, frag, at)| {
            let mut text = render(&t);
            let boundaries: Vec<usize> = (0..=text.len())
                .filter(|&i| text.is_char_boundary(i))
                .collect();
            text.insert_str(*at.get(&boundaries), frag);
            text
        });
    prop_oneof![soup, structured, mutated]
}

fn check_span(text: &str, span: Span, inside: Span, what: &str) {
    let (s, e) = (span.start as usize, span.end as usize);
    assert_eq!(span.file, FileId(0), "{what}: wrong file");
    assert!(
        s <= e && e <= text.len(),
        "{what}: span {s}..{e} outside 0..{}",
        text.len()
    );
    assert!(
        text.is_char_boundary(s) && text.is_char_boundary(e),
        "{what}: {s}..{e} splits a char"
    );
    assert!(
        inside.start <= span.start && span.end <= inside.end,
        "{what}: {s}..{e} outside its parent"
    );
}

fn check_value(text: &str, v: &Value, parent: Span) {
    check_span(text, v.span, parent, "value");
    if let ValueKind::List(items) = &v.kind {
        for item in items {
            check_value(text, item, v.span);
        }
    }
}

fn check_stmt(text: &str, s: &Stmt, parent: Span) {
    check_span(text, s.span, parent, "statement");
    check_span(text, s.keyword.span, s.span, "keyword");
    assert_eq!(
        text.get(s.keyword.span.range()),
        Some(s.keyword.name.as_str())
    );
    for v in &s.args {
        check_value(text, v, s.span);
    }
    if let Some(b) = &s.block {
        check_span(text, b.span, s.span, "block");
        for c in &b.stmts {
            check_stmt(text, c, b.span);
        }
    }
}

fn check(text: &str, error_free: &AtomicUsize) {
    let (doc, diags) = parse(FileId(0), text);
    let whole = Span::new(FileId(0), 0, text.len());
    for s in &doc.stmts {
        check_stmt(text, s, whole);
    }
    for c in &doc.comments {
        check_span(text, c.span, whole, "comment");
        assert_eq!(text.get(c.span.range()), Some(c.text.as_str()));
    }
    for d in &diags {
        check_span(text, d.span, whole, "diagnostic");
        for l in &d.secondary {
            check_span(text, l.span, whole, "label");
        }
    }
    let mut map = SourceMap::new();
    map.add("fuzz.voc", text);
    let _ = diag::render(&map, &diags, false);

    if diags.iter().any(Diagnostic::is_error) {
        return;
    }
    error_free.fetch_add(1, Ordering::Relaxed);
    let once = format(&doc, text);
    let (doc2, diags2) = parse(FileId(0), &once);
    let messages: Vec<&str> = diags2.iter().map(|d| d.message.as_str()).collect();
    assert!(
        diags2.is_empty(),
        "formatted text has errors {messages:?}:\n{once}"
    );
    assert_eq!(
        dump::shape(&doc2),
        dump::shape(&doc),
        "formatting changed the tree:\n{once}"
    );
    assert_eq!(
        doc2.comments.len(),
        doc.comments.len(),
        "formatting lost comments:\n{once}"
    );
    let twice = format(&doc2, &once);
    assert_eq!(twice, once, "formatting is not idempotent");
    assert!(once.is_empty() || (once.ends_with('\n') && !once.ends_with("\n\n")));
    for line in once.lines() {
        assert!(!line.ends_with([' ', '\t']), "trailing space in {line:?}");
    }
}

#[test]
fn parse_and_format_random_input() {
    let total = AtomicUsize::new(0);
    let error_free = AtomicUsize::new(0);
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&inputs(), |text| {
        total.fetch_add(1, Ordering::Relaxed);
        check(&text, &error_free);
        Ok(())
    });
    let (total, error_free) = (total.into_inner(), error_free.into_inner());
    eprintln!("fuzz: {total} inputs parsed, {error_free} without errors formatted twice");
    if let Err(e) = result {
        panic!("{e}");
    }
    // The structured generator is a third of the inputs and mostly valid; far fewer
    // error-free inputs means it no longer exercises the formatter.
    assert!(
        error_free * 10 >= total,
        "only {error_free} of {total} inputs were error-free"
    );
}
