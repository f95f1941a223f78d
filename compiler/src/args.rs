//! Reading a statement's values: a cursor that substitutes variables and reports
//! missing, mistyped and extra values with a diagnostic at the right place.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use vocc_dsl::{Diagnostic, Span, Stmt, Value, ValueKind};

/// Variables in scope, innermost last. A variable's value keeps the span of its
/// definition; a substituted value takes the span of the `$name` that used it.
#[derive(Debug, Default, Clone)]
pub struct Vars {
    scopes: Vec<HashMap<String, Value>>,
    /// Values given on the command line (`--var name=value`): they win over `let`.
    pub overrides: HashMap<String, Value>,
}

impl Vars {
    pub fn push(&mut self, scope: HashMap<String, Value>) {
        self.scopes.push(scope);
    }

    pub fn pop(&mut self) {
        self.scopes.pop();
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.overrides.get(name).or_else(|| self.scopes.iter().rev().find_map(|s| s.get(name)))
    }

    fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .overrides
            .keys()
            .chain(self.scopes.iter().flat_map(|s| s.keys()))
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Replaces `$name` references in a value (also inside lists).
    pub fn subst(&self, v: &Value, diags: &mut Vec<Diagnostic>) -> Value {
        self.subst_depth(v, diags, 0)
    }

    fn subst_depth(&self, v: &Value, diags: &mut Vec<Diagnostic>, depth: usize) -> Value {
        match &v.kind {
            ValueKind::Var(name) => {
                let Some(def) = self.get(name) else {
                    let mut d = Diagnostic::error(v.span, format!("unknown variable `${name}`"))
                        .with_label("not defined");
                    d = match vocc_dsl::diag::suggest(name, self.names()) {
                        Some(s) => d.with_hint(format!("did you mean `${s}`?")),
                        None => d.with_hint(format!("define it with `let {name} = VALUE`")),
                    };
                    diags.push(d);
                    return Value { kind: ValueKind::Word(String::new()), span: v.span };
                };
                if depth > 16 {
                    diags.push(
                        Diagnostic::error(v.span, format!("variable `${name}` refers to itself"))
                            .with_hint("give the variable a value that does not use it"),
                    );
                    return Value { kind: ValueKind::Word(String::new()), span: v.span };
                }
                let inner = self.subst_depth(def, diags, depth + 1);
                Value { kind: inner.kind, span: v.span }
            }
            ValueKind::List(items) => Value {
                kind: ValueKind::List(
                    items.iter().map(|i| self.subst_depth(i, diags, depth)).collect(),
                ),
                span: v.span,
            },
            _ => v.clone(),
        }
    }
}

/// A cursor over one statement's values.
pub struct Args<'a> {
    stmt: &'a Stmt,
    vals: Vec<Value>,
    pos: usize,
}

impl<'a> Args<'a> {
    pub fn new(stmt: &'a Stmt, vars: &Vars, diags: &mut Vec<Diagnostic>) -> Args<'a> {
        let vals = stmt.args.iter().map(|v| vars.subst(v, diags)).collect();
        Args { stmt, vals, pos: 0 }
    }

    pub fn keyword(&self) -> &str {
        &self.stmt.keyword.name
    }

    pub fn peek(&self) -> Option<&Value> {
        self.vals.get(self.pos)
    }

    pub fn next(&mut self) -> Option<Value> {
        let v = self.vals.get(self.pos).cloned();
        self.pos += 1;
        v
    }

    /// The span to blame for a missing value: the end of what the statement has.
    fn missing_span(&self) -> Span {
        let last = self.vals.last().map_or(self.stmt.keyword.span, |v| v.span);
        Span { start: last.end, end: last.end, ..last }
    }

    /// Reports a missing or wrong value: "`memory` needs a size, as in `memory 512M`".
    pub fn expected(&self, got: Option<&Value>, what: &str, example: &str) -> Diagnostic {
        let kw = self.keyword();
        match got {
            None => Diagnostic::error(self.missing_span(), format!("`{kw}` needs {what}"))
                .with_label(format!("expected {what} here"))
                .with_hint(format!("write it as in `{example}`")),
            Some(v) => Diagnostic::error(
                v.span,
                format!("`{kw}` needs {what}, not {}", v.kind.describe()),
            )
            .with_label(format!("expected {what}"))
            .with_hint(format!("write it as in `{example}`")),
        }
    }

    /// A name: a bare word or a string.
    pub fn name(
        &mut self,
        what: &str,
        example: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<(String, Span)> {
        let v = self.next();
        match v.as_ref().map(|v| &v.kind) {
            Some(ValueKind::Word(s) | ValueKind::Str(s)) if !s.is_empty() => {
                Some((s.clone(), v.as_ref()?.span))
            }
            // An unknown variable was already reported.
            Some(ValueKind::Word(_)) => None,
            _ => {
                diags.push(self.expected(v.as_ref(), what, example));
                None
            }
        }
    }

    /// A bare word that must be one of `choices`.
    pub fn choice(
        &mut self,
        choices: &[&'static str],
        example: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<(&'static str, Span)> {
        let what = one_of(choices);
        let v = self.next();
        match v.as_ref().map(|v| &v.kind) {
            Some(ValueKind::Word(s) | ValueKind::Str(s)) => {
                let span = v.as_ref()?.span;
                if let Some(c) = choices.iter().find(|c| **c == s) {
                    return Some((c, span));
                }
                if s.is_empty() {
                    return None;
                }
                let mut d = Diagnostic::error(
                    span,
                    format!("unknown value `{s}` for `{}`", self.keyword()),
                )
                .with_label(format!("expected {what}"));
                d = match vocc_dsl::diag::suggest(s, choices.iter().copied()) {
                    Some(c) => d.with_hint(format!("did you mean `{c}`?")),
                    None => d.with_hint(format!("use {what}")),
                };
                diags.push(d);
                None
            }
            _ => {
                diags.push(self.expected(v.as_ref(), &what, example));
                None
            }
        }
    }

    pub fn int(&mut self, example: &str, diags: &mut Vec<Diagnostic>) -> Option<(u64, Span)> {
        let v = self.next();
        match v.as_ref().map(|v| &v.kind) {
            Some(ValueKind::Int(n)) => Some((*n, v.as_ref()?.span)),
            Some(ValueKind::Word(s)) if s.is_empty() => None,
            _ => {
                diags.push(self.expected(v.as_ref(), "a number", example));
                None
            }
        }
    }

    pub fn size(&mut self, example: &str, diags: &mut Vec<Diagnostic>) -> Option<(u64, Span)> {
        let v = self.next();
        match v.as_ref().map(|v| &v.kind) {
            Some(ValueKind::Size(n)) => Some((*n, v.as_ref()?.span)),
            Some(ValueKind::Int(_)) => {
                diags.push(
                    Diagnostic::error(
                        v.as_ref()?.span,
                        format!("`{}` needs a size with a unit", self.keyword()),
                    )
                    .with_label("no unit")
                    .with_hint(format!("add K, M, G or T, as in `{example}`")),
                );
                None
            }
            Some(ValueKind::Word(s)) if s.is_empty() => None,
            _ => {
                diags.push(self.expected(v.as_ref(), "a size", example));
                None
            }
        }
    }

    pub fn ip(&mut self, example: &str, diags: &mut Vec<Diagnostic>) -> Option<(Ipv4Addr, Span)> {
        let v = self.next();
        match v.as_ref().map(|v| &v.kind) {
            Some(ValueKind::Ip(ip)) => Some((*ip, v.as_ref()?.span)),
            Some(ValueKind::Word(s)) if s.is_empty() => None,
            _ => {
                diags.push(self.expected(v.as_ref(), "an IPv4 address", example));
                None
            }
        }
    }

    /// An absolute guest path without `..`.
    pub fn guest_path(
        &mut self,
        example: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<(String, Span)> {
        let v = self.next();
        match v.as_ref().map(|v| &v.kind) {
            Some(ValueKind::Path(p) | ValueKind::Str(p) | ValueKind::Word(p)) => {
                let span = v.as_ref()?.span;
                if p.is_empty() {
                    return None;
                }
                if let Some(d) = check_guest_path(p, span) {
                    diags.push(d);
                    return None;
                }
                Some((p.clone(), span))
            }
            _ => {
                diags.push(self.expected(v.as_ref(), "an absolute path", example));
                None
            }
        }
    }

    /// Reports every value left over.
    pub fn done(&mut self, diags: &mut Vec<Diagnostic>) {
        if let Some(v) = self.vals.get(self.pos) {
            let last = self.vals.last().map_or(v.span, |l| l.span);
            diags.push(
                Diagnostic::error(
                    v.span.to(last),
                    format!("unexpected `{}` after `{}`", shown(v), self.keyword()),
                )
                .with_label("not part of this statement")
                .with_hint("remove it, or start a new statement on its own line"),
            );
        }
        self.pos = self.vals.len();
    }

    /// Reports a clause word this statement does not know.
    pub fn unexpected(&self, v: &Value, expected: &[&str]) -> Diagnostic {
        let what = format!("`{}`", shown(v));
        let mut d = Diagnostic::error(v.span, format!("unexpected {what} in `{}`", self.keyword()))
            .with_label("not understood here");
        if let ValueKind::Word(w) = &v.kind {
            if let Some(s) = vocc_dsl::diag::suggest(w, expected.iter().copied()) {
                return d.with_hint(format!("did you mean `{s}`?"));
            }
        }
        d = d.with_hint(format!("expected {}", one_of(expected)));
        d
    }
}

/// "`a`, `b` or `c`"
pub fn one_of(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

/// Guest paths are spliced into fstab, exports and mount units: they must be
/// absolute, without `..`, and without whitespace.
pub fn check_guest_path(p: &str, span: Span) -> Option<Diagnostic> {
    if !p.starts_with('/') {
        return Some(
            Diagnostic::error(span, format!("`{p}` is not an absolute path"))
                .with_label("relative path")
                .with_hint(format!("guest paths start with `/`, as in `/{}`", p.trim_start_matches("./"))),
        );
    }
    if p.split('/').any(|c| c == "..") {
        return Some(
            Diagnostic::error(span, format!("`{p}` contains `..`"))
                .with_label("`..` is not allowed here")
                .with_hint("write the path without `..`"),
        );
    }
    if p.chars().any(|c| c.is_whitespace()) {
        return Some(
            Diagnostic::error(span, format!("path `{p}` contains whitespace"))
                .with_hint("fstab and exports are whitespace-separated: choose a path without spaces"),
        );
    }
    None
}

/// A value as the user wrote it, for messages (long lists are shortened).
pub fn shown(v: &Value) -> String {
    match &v.kind {
        ValueKind::Word(s) | ValueKind::Path(s) => s.clone(),
        ValueKind::Str(s) => format!("\"{}\"", s.escape_default()),
        ValueKind::Int(n) => n.to_string(),
        ValueKind::Size(n) => format!("{n} bytes"),
        ValueKind::Ip(ip) => ip.to_string(),
        ValueKind::Cidr(ip, p) => format!("{ip}/{p}"),
        ValueKind::Ref { target, path } => format!("{target}:{path}"),
        ValueKind::Range { prefix, lo, hi, width, suffix } => {
            format!("{prefix}[{lo:0width$}-{hi:0width$}]{suffix}", width = *width)
        }
        ValueKind::List(_) => "[…]".into(),
        ValueKind::Var(n) => format!("${n}"),
        ValueKind::Plus => "+".into(),
        ValueKind::Eq => "=".into(),
    }
}
