//! The front half of the pipeline: files → resolved, checked, allocated [`Model`].

use crate::args::Vars;
use crate::load::{self, Loaded};
use crate::model::*;
use crate::resolve::{Notes, Resolver};
use crate::sources::Sandbox;
use crate::world::{World, BUILTIN_PREFIX};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use vocc_dsl::{Diagnostic, Document, SourceMap, Span, Value, ValueKind};

/// What the caller chose on the command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A site file; without it, a site in the appliance file or the built-in local site.
    pub site: Option<PathBuf>,
    /// `--var name=value` overrides of `let` definitions.
    pub vars: Vec<(String, String)>,
    /// `--allow-path DIR`: directories besides the appliance's own that imports,
    /// `from dir` and `from image` may read.
    pub allow_paths: Vec<PathBuf>,
}

/// The result of compiling: the model when there were no errors, and every diagnostic.
pub struct Compilation {
    pub map: SourceMap,
    pub model: Option<Model>,
    pub diags: Vec<Diagnostic>,
    /// Every file read (for build caching and `--json`).
    pub files: Vec<PathBuf>,
}

impl Compilation {
    pub fn has_errors(&self) -> bool {
        self.diags.iter().any(Diagnostic::is_error)
    }

    /// For `vocc build`: the error when the model has no node to build (the checker
    /// only warns, since a file without clusters is fine to check).
    pub fn nothing_to_build(&self) -> Option<Diagnostic> {
        let model = self.model.as_ref()?;
        if model.clusters.iter().any(|c| !c.nodes.is_empty()) {
            return None;
        }
        let file = vocc_dsl::FileId(0);
        let name = &self.map.get(file).name;
        let what = if model.clusters.is_empty() {
            "defines no cluster"
        } else {
            "has no role that makes a node"
        };
        Some(
            Diagnostic::error(
                Span::new(file, 0, 0),
                format!("nothing to build: `{name}` {what}"),
            )
            .with_label("in this file")
            .with_hint(
                "an appliance defines `cluster NAME { … }` with at least one `role`; give \
                     it to `vocc build`",
            ),
        )
    }
}

/// Why a compilation could not even start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads, resolves and checks `path` (with `options`), and allocates addresses.
pub fn compile(
    world: &dyn World,
    path: &Path,
    options: &Options,
) -> Result<Compilation, LoadError> {
    let mut map = SourceMap::new();
    // What the parser and the control character pass report: the first word on a
    // value. Later phases do not add their own diagnostic for the same value.
    let mut diags = Vec::new();
    let sandbox = Sandbox::new(world, path, &options.allow_paths);
    let files = match load::load(world, &mut map, &mut diags, path, &sandbox) {
        Ok(files) => files,
        Err(source) => return unreadable(map, diags, path, source),
    };
    let site_files: Vec<Loaded> = match &options.site {
        Some(p) => {
            let site_sandbox = Sandbox::new(world, p, &options.allow_paths);
            match load::load(world, &mut map, &mut diags, p, &site_sandbox) {
                Ok(files) => files,
                Err(source) => return unreadable(map, diags, p, source),
            }
        }
        None => Vec::new(),
    };
    let (vars, var_docs) = command_line_vars(&mut map, &mut diags, &options.vars);
    let overrides = vars.overrides.clone();

    crate::check::control_characters(files.iter().chain(&site_files).map(|f| &f.doc), &mut diags);
    for (doc, (name, _)) in var_docs.iter().zip(&options.vars) {
        let mut found = Vec::new();
        crate::check::control_characters([doc], &mut found);
        for mut d in found {
            d.message = d.message.replacen("`let`", &format!("`--var {name}`"), 1);
            diags.push(d);
        }
    }

    // Later phases: resolve, check, allocate.
    let mut rdiags = Vec::new();
    let mut notes = Notes::default();
    let mut resolver = Resolver::new(&map, vars.clone());
    let resolved = resolver.resolve(&files);
    rdiags.append(&mut resolver.diags);
    notes.merge(std::mem::take(&mut resolver.notes));

    // The site: `--site`, else one in the file, else the built-in local site.
    let mut site = None;
    if let (Some(p), Some(main)) = (&options.site, site_files.last()) {
        let mut sr = Resolver::new(&map, vars);
        let sres = sr.resolve(&site_files);
        rdiags.append(&mut sr.diags);
        notes.merge(std::mem::take(&mut sr.notes));
        for stmt in main
            .doc
            .stmts
            .iter()
            .filter(|s| s.keyword.name == "cluster")
        {
            let name = crate::resolve::header_name(stmt)
                .map_or_else(|| "this cluster".into(), |(n, _)| format!("cluster `{n}`"));
            rdiags.push(
                Diagnostic::error(stmt.keyword.span, "a `--site` file cannot define a cluster")
                    .with_label("in the site file")
                    .with_hint(format!(
                        "clusters belong in the appliance file: move {name} there, or give this \
                         file as the appliance"
                    )),
            );
        }
        site = one_site(sres.sites, &mut rdiags);
        if site.is_none() && !main.doc.stmts.iter().any(|s| s.keyword.name == "site") {
            rdiags.push(
                Diagnostic::error(
                    Span::new(main.file, 0, 0),
                    "the `--site` file defines no site",
                )
                .with_label(format!("`{}` has no `site`", p.display()))
                .with_hint("a site file holds `site NAME { host … }`"),
            );
        }
    }
    if resolved.clusters.is_empty()
        && resolved.sites.is_empty()
        && !diags.iter().chain(&rdiags).any(Diagnostic::is_error)
    {
        rdiags.push(nothing_defined(&map, &files));
    }
    let in_file = one_site(resolved.sites, &mut rdiags);
    let site = match site.or(in_file) {
        Some(s) => s,
        None => local_site(world, &mut map, &mut diags, &mut rdiags)?,
    };

    let mut clusters = resolved.clusters;
    let mut macs = HashSet::new();
    for c in &mut clusters {
        crate::check::cluster(&mut rdiags, c, &notes);
        crate::check::images::cluster(world, &sandbox, &notes, &mut rdiags, c);
        crate::alloc::nodes(&mut rdiags, c, &mut macs, &notes);
    }
    node_ids(&clusters, &mut rdiags);
    if !diags.iter().chain(&rdiags).any(Diagnostic::is_error) {
        for c in &clusters {
            crate::check::no_roles(&mut rdiags, c);
            crate::check::dhcp_servers(&mut rdiags, c);
        }
    }
    unknown_overrides(&var_docs, &options.vars, &overrides, &notes, &mut rdiags);

    // One mistake, one diagnostic: drop what a later phase says about a value the
    // parser or the control character pass already reported.
    rdiags.retain(|d| !diags.iter().any(|first| explains(&map, first, d)));
    diags.append(&mut rdiags);
    vocc_dsl::diag::sort(&mut diags);
    // Shared definitions are read once per cluster that uses them: keep each
    // diagnostic once.
    let mut seen: HashSet<(Span, String)> = HashSet::new();
    diags.retain(|d| seen.insert((d.span, d.message.clone())));

    let mut all_files: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
    all_files.extend(site_files.iter().map(|f| f.path.clone()));
    let ok = !diags.iter().any(Diagnostic::is_error);
    let model = ok.then_some(Model { clusters, site });
    Ok(Compilation {
        map,
        model,
        diags,
        files: all_files,
    })
}

/// The warning for input that defines neither a cluster nor a site (an empty file, one
/// with only a byte order mark or comments, shared definitions alone).
fn nothing_defined(map: &SourceMap, files: &[Loaded]) -> Diagnostic {
    let root = files.last().map_or(vocc_dsl::FileId(0), |f| f.file);
    let name = &map.get(root).name;
    let what = if files.iter().all(|f| f.doc.stmts.is_empty()) {
        "has no statements"
    } else {
        "defines no cluster and no site"
    };
    Diagnostic::warning(Span::new(root, 0, 0), format!("`{name}` {what}"))
        .with_label("nothing to check or build")
        .with_hint("an appliance defines `cluster NAME { … }`, a site file `site NAME { … }`")
}

/// A file that cannot be read: when it is not UTF-8 that is the input's fault, told
/// as a diagnostic at its first bad byte; anything else is a [`LoadError`].
fn unreadable(
    mut map: SourceMap,
    mut diags: Vec<Diagnostic>,
    path: &Path,
    source: std::io::Error,
) -> Result<Compilation, LoadError> {
    let Some(bad) = source
        .get_ref()
        .and_then(|e| e.downcast_ref::<crate::world::NotUtf8>())
    else {
        return Err(LoadError::Read {
            path: path.to_path_buf(),
            source,
        });
    };
    diags.push(not_utf8(&mut map, path, bad));
    Ok(Compilation {
        map,
        model: None,
        diags,
        files: vec![path.to_path_buf()],
    })
}

/// Adds a file that is not UTF-8 to `map` (bad bytes shown as U+FFFD) and returns the
/// diagnostic at its first bad byte.
pub fn not_utf8(map: &mut SourceMap, path: &Path, bad: &crate::world::NotUtf8) -> Diagnostic {
    let file = map.add(path.display().to_string(), bad.text.clone());
    // The bad byte reads as U+FFFD, three bytes long, in the text kept for rendering.
    let span = Span::new(file, bad.offset, bad.offset + '\u{FFFD}'.len_utf8());
    Diagnostic::error(span, format!("`{}` is not UTF-8 text", path.display()))
        .with_label(format!("byte 0x{:02x} starts no UTF-8 character", bad.byte))
        .with_hint(
            "save the file as UTF-8 (for example with `iconv -f latin1 -t utf-8`); vocc reads \
             nothing else",
        )
}

/// Whether `first` (from the parser or the control character pass) already explains
/// the later diagnostic `d`: it stands inside `d`'s span, which covers a single line.
fn explains(map: &SourceMap, first: &Diagnostic, d: &Diagnostic) -> bool {
    let (a, b) = (first.span, d.span);
    a.file == b.file
        && b.start <= a.start
        && a.end <= b.end
        && !map.slice(b).contains('\n')
        && first.is_error()
}

/// Parses each `--var name=value` as `let name = [value]` in a file of its own, so
/// that its mistakes are reported like any other. The brackets gather what was given,
/// so that two values (`--var pair=1 2`) are told apart from one. The file shows what
/// the user typed, `--var name=value`, and every span is moved onto it.
fn command_line_vars(
    map: &mut SourceMap,
    diags: &mut Vec<Diagnostic>,
    given: &[(String, String)],
) -> (Vars, Vec<Document>) {
    let mut vars = Vars::default();
    let mut docs = Vec::new();
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for (i, (name, value)) in given.iter().enumerate() {
        let shown = format!("--var {name}={value}");
        let file = map.add(format!("<--var {}>", i + 1), shown.clone());
        let (mut doc, mut found) = vocc_dsl::parse(file, &format!("let {name} = [{value}]\n"));
        let onto = VarSpans {
            name: name.len() as u32,
            value: value.len() as u32,
        };
        for d in &mut found {
            d.span = onto.span(d.span);
            for l in &mut d.secondary {
                l.span = onto.span(l.span);
            }
        }
        onto.doc(&mut doc);
        if found.iter().any(Diagnostic::is_error) {
            vars.broken.insert(name.clone());
        }
        diags.append(&mut found);
        let whole = Span::new(file, 0, shown.len());
        let stmt = doc.stmts.first().filter(|_| doc.stmts.len() == 1);
        let name_value = stmt.and_then(|s| s.args.first());
        let at = name_value.map_or(whole, |v| v.span);
        let valid_name = crate::resolve::is_var_name(name)
            && matches!(name_value.map(|v| &v.kind), Some(ValueKind::Word(n)) if n == name);
        let items = match stmt.map(|s| s.args.as_slice()) {
            Some(
                [_, _, Value {
                    kind: ValueKind::List(items),
                    ..
                }],
            ) => Some(items.as_slice()),
            _ => None,
        };
        match items {
            _ if !valid_name => diags.push(
                Diagnostic::error(at, format!("`--var {name}=…` does not name a variable"))
                    .with_label("not a variable name")
                    .with_hint(
                        "write `--var NAME=VALUE`; a name starts with a letter or `_` and \
                         continues with letters, digits, `_` or `-`",
                    ),
            ),
            Some([one]) => {
                if let Some(first) = seen.get(name.as_str()) {
                    diags.push(
                        Diagnostic::error(at, format!("`--var {name}` is given twice"))
                            .with_label("given again")
                            .with_secondary(*first, "first given here")
                            .with_hint("give each variable once; the last one counts"),
                    );
                }
                seen.insert(name, at);
                vars.overrides.insert(name.clone(), one.clone());
            }
            Some([]) => diags.push(
                Diagnostic::error(at, format!("`--var {name}=` needs a value"))
                    .with_label("no value")
                    .with_hint(format!(
                        "write `--var {name}=VALUE`, as in `--var {name}=8`"
                    )),
            ),
            _ => diags.push(
                Diagnostic::error(whole, format!("`--var {name}=…` has more than one value"))
                    .with_label("one value expected")
                    .with_hint(format!(
                        "quote a value with spaces (`--var '{name}=\"a b\"'`) or write a list \
                         (`--var '{name}=[a b]'`)"
                    )),
            ),
        }
        docs.push(doc);
    }
    (vars, docs)
}

/// Where the parts of `let NAME = [VALUE]` (the text parsed for a `--var`) stand in
/// `--var NAME=VALUE` (the text shown).
struct VarSpans {
    name: u32,
    value: u32,
}

impl VarSpans {
    fn offset(&self, o: u32) -> u32 {
        let (n, v) = (self.name, self.value);
        match o {
            // `let ` → the start.
            0..=3 => 0,
            // The name, 2 further on.
            o if o <= 4 + n => o + 2,
            // ` = [` → the start of the value.
            o if o < 8 + n => 7 + n,
            // The value, 1 further back.
            o if o <= 8 + n + v => o - 1,
            _ => 7 + n + v,
        }
    }

    fn span(&self, s: Span) -> Span {
        let start = self.offset(s.start);
        Span {
            start,
            end: self.offset(s.end).max(start),
            ..s
        }
    }

    fn value(&self, v: &mut Value) {
        v.span = self.span(v.span);
        if let ValueKind::List(items) = &mut v.kind {
            items.iter_mut().for_each(|i| self.value(i));
        }
    }

    fn doc(&self, doc: &mut Document) {
        for s in &mut doc.stmts {
            s.keyword.span = self.span(s.keyword.span);
            s.span = self.span(s.span);
            s.args.iter_mut().for_each(|v| self.value(v));
        }
    }
}

/// A `--var` for a variable no `let` defines is probably misspelt.
fn unknown_overrides(
    docs: &[Document],
    given: &[(String, String)],
    overrides: &HashMap<String, Value>,
    notes: &Notes,
    diags: &mut Vec<Diagnostic>,
) {
    let mut reported = HashSet::new();
    for (doc, (name, _)) in docs.iter().zip(given) {
        let Some(stmt) = doc.stmts.first() else {
            continue;
        };
        if !overrides.contains_key(name) || notes.let_names.contains(name) || !reported.insert(name)
        {
            continue;
        }
        let span = stmt.args.first().map_or(stmt.keyword.span, |v| v.span);
        let mut d = Diagnostic::error(span, format!("there is no `let {name}` to override"))
            .with_label("no such variable");
        let names: Vec<&str> = notes.let_names.iter().map(String::as_str).collect();
        d = match vocc_dsl::diag::suggest(name, names.iter().copied()) {
            Some(s) => d.with_hint(format!("did you mean `--var {s}=…`?")),
            None if names.is_empty() => d.with_hint(
                "`--var` overrides a `let` of the appliance, and it has none: remove the `--var`",
            ),
            None => d.with_hint(format!(
                "`--var` overrides a `let` of the appliance; it has {}",
                crate::args::one_of(&names).replace(" or ", " and ")
            )),
        };
        diags.push(d);
    }
}

/// The one site of a file; a second one is a mistake.
fn one_site(mut sites: Vec<Site>, diags: &mut Vec<Diagnostic>) -> Option<Site> {
    if let [first, second, ..] = sites.as_slice() {
        diags.push(
            Diagnostic::error(second.origin.span, "a file defines at most one site")
                .with_label("second site")
                .with_secondary(first.origin.span, "first site here")
                .with_hint("keep one site per file and pick it with `--site`"),
        );
    }
    (!sites.is_empty()).then(|| sites.swap_remove(0))
}

/// The built-in local site (this machine).
fn local_site(
    world: &dyn World,
    map: &mut SourceMap,
    diags: &mut Vec<Diagnostic>,
    rdiags: &mut Vec<Diagnostic>,
) -> Result<Site, LoadError> {
    let local = Path::new(BUILTIN_PREFIX).join("local.voc");
    let local_files =
        load::load(world, map, diags, &local, &Sandbox::default()).map_err(|source| {
            LoadError::Read {
                path: local.clone(),
                source,
            }
        })?;
    let mut lr = Resolver::new(map, Vars::default());
    let mut lres = lr.resolve(&local_files);
    rdiags.append(&mut lr.diags);
    Ok(lres.sites.pop().unwrap_or_else(|| Site {
        name: "local".into(),
        hosts: Vec::new(),
        bridges: Vec::new(),
        store: String::new(),
        access: Default::default(),
        images: None,
        origin: Origin::default(),
    }))
}

/// Node ids are `<cluster>-<host name>`; two clusters could still make one id
/// (`a-b` + `c` and `a` + `b-c`).
fn node_ids(clusters: &[Cluster], diags: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<&str, &Cluster> = HashMap::new();
    let mut reported: HashSet<(&str, &str)> = HashSet::new();
    for c in clusters {
        for n in &c.nodes {
            match seen.get(n.id.as_str()) {
                Some(other) if other.name != c.name => {
                    if reported.insert((other.name.as_str(), c.name.as_str())) {
                        diags.push(
                            Diagnostic::error(
                                n.origin.span,
                                format!("node id `{}` is made by two clusters", n.id),
                            )
                            .with_label(format!("`{}` in cluster `{}`", n.hostname, c.name))
                            .with_secondary(
                                other.origin.span,
                                format!("cluster `{}` makes it too", other.name),
                            )
                            .with_hint(
                                "node ids are `<cluster>-<host name>`: rename a cluster or a role",
                            ),
                        );
                    }
                }
                Some(_) => {}
                None => {
                    seen.insert(&n.id, c);
                }
            }
        }
    }
}
