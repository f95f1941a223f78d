//! A compact, readable text form of a syntax tree, for golden tests and debugging.
//!
//! [`dump`] prints one statement per line as `line:col-line:col keyword values`, a
//! block as `{line:col-line:col}` after the values with its statements indented by two
//! spaces below, and then the comments. [`shape`] prints the same tree without
//! positions or comments, so two parses of differently laid out text can be compared.

use crate::source::{SourceFile, Span};
use crate::syntax::{Document, Stmt, Value, ValueKind};
use std::fmt::Write;

/// The tree with positions (1-based line and column, columns in characters) and
/// comments; `text` is the source it was parsed from.
pub fn dump(doc: &Document, text: &str) -> String {
    let file = SourceFile::new("", text);
    let pos = |span: Span| {
        let (l1, c1) = file.line_col(span.start as usize);
        let (l2, c2) = file.line_col(span.end as usize);
        format!("{l1}:{c1}-{l2}:{c2}")
    };
    let mut out = String::new();
    for s in &doc.stmts {
        stmt(&mut out, s, 0, Some(&pos));
    }
    for c in &doc.comments {
        let _ = writeln!(out, "comment {} {}", pos(c.span), c.text);
    }
    out
}

/// The tree without positions or comments: `keyword values {`, children, `}`.
pub fn shape(doc: &Document) -> String {
    let mut out = String::new();
    for s in &doc.stmts {
        stmt(&mut out, s, 0, None);
    }
    out
}

type Pos<'a> = &'a dyn Fn(Span) -> String;

fn stmt(out: &mut String, s: &Stmt, indent: usize, pos: Option<Pos<'_>>) {
    out.push_str(&"  ".repeat(indent));
    if let Some(pos) = pos {
        let _ = write!(out, "{} ", pos(s.span));
    }
    out.push_str(&s.keyword.name);
    for v in &s.args {
        out.push(' ');
        value(out, v);
    }
    match (&s.block, pos) {
        (None, _) => out.push('\n'),
        (Some(b), Some(pos)) => {
            let _ = writeln!(out, " {{{}}}", pos(b.span));
            for c in &b.stmts {
                stmt(out, c, indent + 1, Some(pos));
            }
        }
        (Some(b), None) => {
            out.push_str(" {\n");
            for c in &b.stmts {
                stmt(out, c, indent + 1, None);
            }
            out.push_str(&"  ".repeat(indent));
            out.push_str("}\n");
        }
    }
}

fn value(out: &mut String, v: &Value) {
    let _ = match &v.kind {
        ValueKind::Word(w) => write!(out, "word({w})"),
        ValueKind::Str(s) => write!(out, "str({s:?})"),
        ValueKind::Int(n) => write!(out, "int({n})"),
        ValueKind::IntRange(lo, hi) => write!(out, "int_range({lo}..{hi})"),
        ValueKind::Duration(secs) => write!(out, "duration({secs}s)"),
        ValueKind::Size(n) => write!(out, "size({n})"),
        ValueKind::Ip(ip) => write!(out, "ip({ip})"),
        ValueKind::Cidr(ip, len) => write!(out, "cidr({ip}/{len})"),
        ValueKind::Path(p) => write!(out, "path({p})"),
        ValueKind::Ref { target, path } => write!(out, "ref({target}:{path})"),
        ValueKind::Range {
            prefix,
            lo,
            hi,
            width,
            suffix,
        } => write!(
            out,
            "range(prefix={prefix:?} lo={lo} hi={hi} width={width} suffix={suffix:?})"
        ),
        ValueKind::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                value(out, item);
            }
            out.push(']');
            Ok(())
        }
        ValueKind::Var(name) => write!(out, "var({name})"),
        ValueKind::Plus => write!(out, "plus"),
        ValueKind::Eq => write!(out, "eq"),
    };
}
