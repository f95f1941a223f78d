//! Reading a statement's values: a cursor that substitutes variables and reports
//! missing, mistyped and extra values with a diagnostic at the right place.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use vocc_dsl::{Context, Diagnostic, Span, Stmt, Value, ValueKind};

/// How deep variables may refer to variables before vocc gives up; a chain this long
/// is a mistake even without a cycle.
const MAX_VAR_DEPTH: usize = 64;

/// Variables in scope, innermost last. A variable's value keeps the span of its
/// definition; a substituted value takes the span of the `$name` that used it.
#[derive(Debug, Default, Clone)]
pub struct Vars {
    scopes: Vec<HashMap<String, Value>>,
    /// Values given on the command line (`--var name=value`): they win over `let`.
    pub overrides: HashMap<String, Value>,
    /// Variables whose `--var` value was reported wrong: statements using them are
    /// skipped without another diagnostic.
    pub broken: std::collections::HashSet<String>,
    /// Whether an unknown variable goes unreported (its statement is still skipped):
    /// for shared definitions no cluster uses, whose variables may be meant to come
    /// from the clusters that would use them.
    pub lenient: bool,
}

impl Vars {
    pub fn push(&mut self, scope: HashMap<String, Value>) {
        self.scopes.push(scope);
    }

    pub fn pop(&mut self) {
        self.scopes.pop();
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.overrides
            .get(name)
            .or_else(|| self.scopes.iter().rev().find_map(|s| s.get(name)))
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

    /// Replaces `$name` references in a value (also inside lists). `None` when a
    /// variable could not be substituted; that has been reported.
    pub fn subst(&self, v: &Value, diags: &mut Vec<Diagnostic>) -> Option<Value> {
        self.subst_in(v, diags, &mut Vec::new())
    }

    /// `stack` holds the variables being expanded, outermost first.
    fn subst_in(
        &self,
        v: &Value,
        diags: &mut Vec<Diagnostic>,
        stack: &mut Vec<String>,
    ) -> Option<Value> {
        match &v.kind {
            ValueKind::Var(name) => {
                if self.broken.contains(name) {
                    return None;
                }
                let Some(def) = self.get(name) else {
                    if self.lenient {
                        return None;
                    }
                    let mut d = Diagnostic::error(v.span, format!("unknown variable `${name}`"))
                        .with_label("not defined");
                    d = match vocc_dsl::diag::suggest(name, self.names()) {
                        Some(s) => d.with_hint(format!("did you mean `${s}`?")),
                        None => d.with_hint(format!("define it with `let {name} = VALUE`")),
                    };
                    diags.push(d);
                    return None;
                };
                if let Some(pos) = stack.iter().position(|n| n == name) {
                    diags.push(self.cycle(&stack[pos..]));
                    return None;
                }
                if stack.len() >= MAX_VAR_DEPTH {
                    diags.push(
                        Diagnostic::error(v.span, format!("variable `${name}` nests too deeply"))
                            .with_hint(format!(
                                "variables may refer to variables at most {MAX_VAR_DEPTH} deep: \
                                 give one of them a plain value"
                            )),
                    );
                    return None;
                }
                stack.push(name.clone());
                let inner = self.subst_in(def, diags, stack);
                stack.pop();
                Some(Value {
                    kind: inner?.kind,
                    span: v.span,
                })
            }
            ValueKind::List(items) => {
                let mut out = Vec::new();
                for i in items {
                    out.push(self.subst_in(i, diags, stack)?);
                }
                Some(Value {
                    kind: ValueKind::List(out),
                    span: v.span,
                })
            }
            _ => Some(v.clone()),
        }
    }

    /// The diagnostic for variables that refer to each other. The same cycle is found
    /// from whichever of its variables is used first, so it is told from its smallest
    /// name, at the reference that closes it: every use reports the same diagnostic,
    /// which the compiler keeps once.
    fn cycle(&self, names: &[String]) -> Diagnostic {
        let start = names
            .iter()
            .enumerate()
            .min_by_key(|(_, n)| *n)
            .map_or(0, |(i, _)| i);
        let ring: Vec<&String> = names[start..].iter().chain(&names[..start]).collect();
        let (first, last) = (ring[0], ring[ring.len() - 1]);
        let span = self
            .get(last)
            .and_then(|def| find_var(def, first))
            .unwrap_or_default();
        let shown: Vec<String> = ring.iter().map(|n| format!("`${n}`")).collect();
        let (message, hint) = match shown.as_slice() {
            [one] => (
                format!("variable {one} refers to itself"),
                "give it a value that does not use it",
            ),
            _ => (
                format!("variables {} refer to each other", and_list(&shown)),
                "give one of them a value that does not use the others",
            ),
        };
        Diagnostic::error(span, message)
            .with_label("this reference closes the cycle")
            .with_hint(hint)
    }
}

/// The span of a `$name` reference inside a value.
fn find_var(v: &Value, name: &str) -> Option<Span> {
    match &v.kind {
        ValueKind::Var(n) if n == name => Some(v.span),
        ValueKind::List(items) => items.iter().find_map(|i| find_var(i, name)),
        _ => None,
    }
}

/// "`a`, `b` and `c`"
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// A cursor over one statement's values.
///
/// A statement whose values could not be substituted (an unknown variable) is
/// *poisoned*: its problem has been reported, and the caller skips it. Once any
/// diagnostic has been reported for the statement, [`Args::done`] stays quiet, so one
/// mistake does not also make its neighbours "unexpected".
pub struct Args<'a> {
    stmt: &'a Stmt,
    vals: Vec<Value>,
    /// For each value that came from `$name`: the name, and whether `--var` set it.
    from_var: Vec<Option<(String, bool)>>,
    pos: usize,
    poisoned: bool,
    /// How many diagnostics existed before this statement was read.
    start: usize,
}

impl<'a> Args<'a> {
    pub fn new(stmt: &'a Stmt, vars: &Vars, diags: &mut Vec<Diagnostic>) -> Args<'a> {
        let start = diags.len();
        let mut vals = Vec::new();
        let mut from_var = Vec::new();
        let mut poisoned = false;
        for v in &stmt.args {
            match vars.subst(v, diags) {
                Some(s) => vals.push(s),
                None => {
                    poisoned = true;
                    vals.push(Value {
                        kind: ValueKind::Word(String::new()),
                        span: v.span,
                    });
                }
            }
            from_var.push(match &v.kind {
                ValueKind::Var(n) => Some((n.clone(), vars.overrides.contains_key(n))),
                _ => None,
            });
        }
        Args {
            stmt,
            vals,
            from_var,
            pos: 0,
            poisoned,
            start,
        }
    }

    /// Whether a value of the statement could not be substituted (already reported):
    /// the caller should skip the statement.
    pub fn poisoned(&self) -> bool {
        self.poisoned
    }

    /// Skips the values left, without a diagnostic (the statement already has one).
    pub fn skip_rest(&mut self) {
        self.pos = self.vals.len();
    }

    pub fn keyword(&self) -> &str {
        &self.stmt.keyword.name
    }

    pub fn peek(&self) -> Option<&Value> {
        self.vals.get(self.pos)
    }

    /// The span to blame for a missing value: the end of what the statement has.
    fn missing_span(&self) -> Span {
        let last = self.vals.last().map_or(self.stmt.keyword.span, |v| v.span);
        Span {
            start: last.end,
            end: last.end,
            ..last
        }
    }

    /// Reports a missing or wrong value: "`memory` needs a size, as in `memory 512M`".
    pub fn expected(&self, got: Option<&Value>, what: &str, example: &str) -> Diagnostic {
        let kw = self.keyword();
        match got {
            None => Diagnostic::error(self.missing_span(), format!("`{kw}` needs {what}"))
                .with_label(format!("expected {what} here"))
                .with_hint(format!("write it as in `{example}`")),
            Some(v) => {
                let found = match &v.kind {
                    ValueKind::Str(s) if s.is_empty() => "an empty string",
                    k => k.describe(),
                };
                let d = Diagnostic::error(v.span, format!("`{kw}` needs {what}, not {found}"))
                    .with_label(format!("expected {what}"))
                    .with_hint(format!("write it as in `{example}`"));
                self.with_origin(d, v)
            }
        }
    }

    /// Adds where a value came from when it was substituted for a variable, since the
    /// caret then stands under `$name`, not under the value.
    fn with_origin(&self, d: Diagnostic, v: &Value) -> Diagnostic {
        let Some(i) = self.vals.iter().position(|x| x.span == v.span) else {
            return d;
        };
        match self.from_var.get(i) {
            Some(Some((name, true))) => d.with_hint(format!(
                "`${name}` is `{}` here, set on the command line by `--var {name}=…`",
                shown(v)
            )),
            Some(Some((name, false))) => {
                d.with_hint(format!("`${name}` is `{}` here, from its `let`", shown(v)))
            }
            _ => d,
        }
    }

    /// The value at the cursor, `None` when it is missing or poisoned; a missing one
    /// is reported as `expected(what, example)`.
    fn take_value(
        &mut self,
        what: &str,
        example: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Value> {
        let v = self.next();
        if self.poisoned {
            // The unknown variable in this statement was reported; nothing else is.
            return None;
        }
        if v.is_none() {
            diags.push(self.expected(None, what, example));
        }
        v
    }

    /// A name: a bare word or a non-empty string.
    pub fn name(
        &mut self,
        what: &str,
        example: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<(String, Span)> {
        let v = self.take_value(what, example, diags)?;
        match &v.kind {
            ValueKind::Word(s) | ValueKind::Str(s) if !s.is_empty() => Some((s.clone(), v.span)),
            _ => {
                diags.push(self.expected(Some(&v), what, example));
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
        let v = self.take_value(&what, example, diags)?;
        match &v.kind {
            ValueKind::Word(s) | ValueKind::Str(s) if !s.is_empty() => {
                if let Some(c) = choices.iter().find(|c| **c == s) {
                    return Some((c, v.span));
                }
                let d = unknown_value(s, self.keyword(), v.span, choices);
                diags.push(self.with_origin(d, &v));
                None
            }
            _ => {
                diags.push(self.expected(Some(&v), &what, example));
                None
            }
        }
    }

    pub fn int(&mut self, example: &str, diags: &mut Vec<Diagnostic>) -> Option<(u64, Span)> {
        let v = self.take_value("a number", example, diags)?;
        match &v.kind {
            ValueKind::Int(n) => Some((*n, v.span)),
            _ => {
                diags.push(self.expected(Some(&v), "a number", example));
                None
            }
        }
    }

    pub fn size(&mut self, example: &str, diags: &mut Vec<Diagnostic>) -> Option<(u64, Span)> {
        let v = self.take_value("a size", example, diags)?;
        match &v.kind {
            ValueKind::Size(n) => Some((*n, v.span)),
            ValueKind::Int(n) => {
                let d = Diagnostic::error(
                    v.span,
                    format!(
                        "`{}` needs a size with a unit, not the bare number `{n}`",
                        self.keyword()
                    ),
                )
                .with_label("no unit")
                .with_hint(format!("add K, M, G or T, as in `{example}`"));
                diags.push(self.with_origin(d, &v));
                None
            }
            _ => {
                diags.push(self.expected(Some(&v), "a size", example));
                None
            }
        }
    }

    /// A duration in seconds: `30s`, `10min`, `2h`.
    pub fn duration(&mut self, example: &str, diags: &mut Vec<Diagnostic>) -> Option<(u64, Span)> {
        let v = self.take_value("a duration", example, diags)?;
        let kw = self.keyword();
        let hint = match &v.kind {
            ValueKind::Duration(secs) => return Some((*secs, v.span)),
            ValueKind::Int(n) => {
                format!("the bare number `{n}` has no unit: add s, min or h, as in `{example}`")
            }
            // `2m` reads as two mebibytes: say what was most likely meant.
            ValueKind::Size(n) if n % (1 << 20) == 0 && *n < (1 << 30) => format!(
                "`m` is a size unit (mebibytes) and minutes are `min`: write `{kw} {}min`",
                n >> 20
            ),
            _ => {
                diags.push(self.expected(Some(&v), "a duration", example));
                return None;
            }
        };
        let d = Diagnostic::error(
            v.span,
            format!(
                "`{}` needs a duration, not {}",
                self.keyword(),
                v.kind.describe()
            ),
        )
        .with_label("expected a duration")
        .with_hint(hint);
        diags.push(self.with_origin(d, &v));
        None
    }

    pub fn ip(&mut self, example: &str, diags: &mut Vec<Diagnostic>) -> Option<(Ipv4Addr, Span)> {
        let v = self.take_value("an IPv4 address", example, diags)?;
        match &v.kind {
            ValueKind::Ip(ip) => Some((*ip, v.span)),
            ValueKind::Cidr(ip, p) => {
                let d = Diagnostic::error(
                    v.span,
                    format!(
                        "`{}` needs an address, not the subnet `{ip}/{p}`",
                        self.keyword()
                    ),
                )
                .with_label("expected an address")
                .with_hint(format!(
                    "write the address without `/{p}`, as in `{example}`"
                ));
                diags.push(d);
                None
            }
            _ => {
                diags.push(self.expected(Some(&v), "an IPv4 address", example));
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
        let v = self.take_value("an absolute path", example, diags)?;
        match &v.kind {
            ValueKind::Path(p) | ValueKind::Str(p) | ValueKind::Word(p) if !p.is_empty() => {
                if let Some(d) = check_guest_path(p, v.span) {
                    diags.push(d);
                    return None;
                }
                Some((p.clone(), v.span))
            }
            _ => {
                diags.push(self.expected(Some(&v), "an absolute path", example));
                None
            }
        }
    }

    /// A path on the machine that builds (an image, a directory): absolute or relative
    /// to the appliance file.
    pub fn host_path(
        &mut self,
        example: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<(String, Span)> {
        let v = self.take_value("a path", example, diags)?;
        match &v.kind {
            ValueKind::Path(p) | ValueKind::Str(p) | ValueKind::Word(p) if !p.is_empty() => {
                Some((p.clone(), v.span))
            }
            _ => {
                diags.push(self.expected(Some(&v), "a path", example));
                None
            }
        }
    }

    /// Reports the values left over, unless the statement already has a diagnostic.
    pub fn done(&mut self, diags: &mut Vec<Diagnostic>) {
        if let Some(v) = self.vals.get(self.pos) {
            if diags.len() == self.start && !self.poisoned {
                let last = self.vals.last().map_or(v.span, |l| l.span);
                let mut d = Diagnostic::error(
                    v.span.to(last),
                    format!("unexpected `{}` after `{}`", shown(v), self.keyword()),
                )
                .with_label("not part of this statement");
                d = match &v.kind {
                    ValueKind::Word(w) => match new_statement_hint(w, self.keyword()) {
                        Some(h) => d.with_hint(h),
                        None => d.with_hint("remove it, or start a new statement after `;`"),
                    },
                    _ => d.with_hint("remove it, or start a new statement after `;`"),
                };
                diags.push(d);
            }
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
            if let Some(h) = new_statement_hint(w, self.keyword()) {
                return d.with_hint(h);
            }
        }
        d = d.with_hint(format!("expected {}", one_of(expected)));
        d
    }
}

/// The values one by one; reading past the end leaves the cursor at the end.
impl Iterator for Args<'_> {
    type Item = Value;

    fn next(&mut self) -> Option<Value> {
        let v = self.vals.get(self.pos).cloned();
        self.pos = (self.pos + 1).min(self.vals.len());
        v
    }
}

/// "unknown value `poll` for `assign`", with a "did you mean" or the choices.
pub fn unknown_value(word: &str, keyword: &str, span: Span, choices: &[&str]) -> Diagnostic {
    let what = one_of(choices);
    let d = Diagnostic::error(span, format!("unknown value `{word}` for `{keyword}`"))
        .with_label(format!("expected {what}"));
    match vocc_dsl::diag::suggest(word, choices.iter().copied()) {
        Some(c) => d.with_hint(format!("did you mean `{c}`?")),
        None => d.with_hint(format!("use {what}")),
    }
}

/// The hint for a word that stands among a statement's values but is spelled like a
/// key, or close to one: most likely a new statement without the `;` before it.
pub fn new_statement_hint(word: &str, keyword: &str) -> Option<String> {
    let mut keys: Vec<&str> = Context::ALL
        .iter()
        .filter(|c| **c != Context::File)
        .flat_map(|c| c.keywords().iter().copied())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let key = if keys.contains(&word) {
        word.to_string()
    } else {
        vocc_dsl::diag::suggest(word, keys.iter().copied())?.to_string()
    };
    let start = if key == word {
        format!("`{word}` starts a new statement only")
    } else {
        format!("did you mean a new statement `{key}`? it starts one only")
    };
    Some(format!(
        "{start} after a line break or `;`: write `{keyword} …; {key} …` or put it on its \
         own line"
    ))
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
            Diagnostic::error(span, format!("guest path `{p}` is not absolute"))
                .with_label("relative path")
                .with_hint(format!(
                    "guest paths start with `/`, as in `/{}`",
                    p.trim_start_matches("./")
                )),
        );
    }
    if p.split('/').any(|c| c == "..") {
        let mut parts: Vec<&str> = Vec::new();
        let mut above_root = false;
        for c in p.split('/').filter(|c| !c.is_empty() && *c != ".") {
            if c == ".." {
                above_root |= parts.pop().is_none();
            } else {
                parts.push(c);
            }
        }
        let hint = if above_root {
            "a guest path cannot climb above `/`: write the path it means without `..`".to_string()
        } else {
            format!("write the path it leads to: `/{}`", parts.join("/"))
        };
        return Some(
            Diagnostic::error(span, format!("guest path `{p}` contains `..`"))
                .with_label("`..` is not allowed here")
                .with_hint(hint),
        );
    }
    if p.chars().any(char::is_whitespace) {
        return Some(
            Diagnostic::error(span, format!("guest path `{p}` contains whitespace")).with_hint(
                "fstab and exports are whitespace-separated: choose a path without spaces",
            ),
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
        ValueKind::IntRange(lo, hi) => format!("{lo}..{hi}"),
        ValueKind::Duration(secs) => duration_text(*secs),
        ValueKind::Size(n) => size_text(*n),
        ValueKind::Ip(ip) => ip.to_string(),
        ValueKind::Cidr(ip, p) => format!("{ip}/{p}"),
        ValueKind::Ref { target, path } => format!("{target}:{path}"),
        ValueKind::Range {
            prefix,
            lo,
            hi,
            width,
            suffix,
        } => {
            format!(
                "{prefix}[{lo:0width$}-{hi:0width$}]{suffix}",
                width = *width
            )
        }
        ValueKind::List(_) => "[…]".into(),
        ValueKind::Var(n) => format!("${n}"),
        ValueKind::Plus => "+".into(),
        ValueKind::Eq => "=".into(),
    }
}

/// A duration in the largest unit that divides it: `2min` for 120 seconds.
pub fn duration_text(secs: u64) -> String {
    match secs {
        0 => "0s".to_owned(),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}min", s / 60),
        s => format!("{s}s"),
    }
}

/// A size in the unit it was most likely written in: `128M` for 134217728.
pub fn size_text(n: u64) -> String {
    for (shift, unit) in [(40, 'T'), (30, 'G'), (20, 'M'), (10, 'K')] {
        if n != 0 && n.trailing_zeros() >= shift {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n} bytes")
}
