//! The front half of the pipeline: files → resolved, checked, allocated [`Model`].

use crate::args::Vars;
use crate::load::{self, Loaded};
use crate::model::*;
use crate::resolve::Resolver;
use crate::world::{World, BUILTIN_PREFIX};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use vocc_dsl::{Diagnostic, SourceMap, ValueKind};

/// What the caller chose on the command line.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A site file; without it, a site in the appliance file or the built-in local site.
    pub site: Option<PathBuf>,
    /// `--var name=value` overrides of `let` definitions.
    pub vars: Vec<(String, String)>,
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
    let mut diags = Vec::new();
    let files =
        load::load(world, &mut map, &mut diags, path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;

    // The site: `--site`, else one in the file, else the built-in local site.
    let site_files: Vec<Loaded> = match &options.site {
        Some(p) => {
            load::load(world, &mut map, &mut diags, p).map_err(|source| LoadError::Read {
                path: p.clone(),
                source,
            })?
        }
        None => Vec::new(),
    };

    let mut vars = Vars::default();
    for (i, (name, value)) in options.vars.iter().enumerate() {
        let (_, doc) = load::parse_into(
            &mut map,
            &mut diags,
            &format!("<--var {}>", i + 1),
            format!("let {name} = {value}\n"),
        );
        if let Some(v) = doc.stmts.first().and_then(|s| s.args.get(2)) {
            vars.overrides.insert(name.clone(), v.clone());
        }
    }

    crate::check::control_characters(&files, &mut diags);
    crate::check::control_characters(&site_files, &mut diags);

    let mut resolver = Resolver::new(&map, vars.clone());
    let resolved = resolver.resolve(&files);
    let mut rdiags = std::mem::take(&mut resolver.diags);

    let mut site = None;
    if !site_files.is_empty() {
        let mut sr = Resolver::new(&map, vars);
        let mut sres = sr.resolve(&site_files);
        rdiags.append(&mut sr.diags);
        if sres.sites.is_empty() && !sres.clusters.is_empty() {
            // Resolved but unused: a site file holding clusters is a mistake.
        }
        site = sres.sites.drain(..).next();
        if site.is_none() {
            if let Some(p) = &options.site {
                rdiags.push(
                    Diagnostic::error(
                        vocc_dsl::Span::new(map_file(&map, p), 0, 0),
                        format!("`{}` defines no site", p.display()),
                    )
                    .with_hint("a site file holds `site NAME { host … }`"),
                );
            }
        }
    }
    let mut sites = resolved.sites;
    if sites.len() > 1 {
        rdiags.push(
            Diagnostic::error(sites[1].origin.span, "a file defines at most one site")
                .with_secondary(sites[0].origin.span, "first site here")
                .with_hint("keep one site per file and pick it with `--site`"),
        );
    }
    if site.is_none() && !sites.is_empty() {
        site = Some(sites.swap_remove(0));
    }
    let site = match site {
        Some(s) => s,
        None => {
            let local = Path::new(BUILTIN_PREFIX).join("local.voc");
            let local_files =
                load::load(world, &mut map, &mut diags, &local).map_err(|source| {
                    LoadError::Read {
                        path: local.clone(),
                        source,
                    }
                })?;
            let mut lr = Resolver::new(&map, Vars::default());
            let mut lres = lr.resolve(&local_files);
            rdiags.append(&mut lr.diags);
            match lres.sites.pop() {
                Some(s) => s,
                None => Site {
                    name: "local".into(),
                    hosts: Vec::new(),
                    bridges: Vec::new(),
                    store: String::new(),
                    origin: Origin::default(),
                },
            }
        }
    };

    let mut clusters = resolved.clusters;
    let mut macs = HashSet::new();
    let mut names: HashMap<String, String> = HashMap::new();
    for c in &mut clusters {
        crate::check::cluster(&mut rdiags, c);
        crate::alloc::nodes(&mut rdiags, c, &mut macs);
        for n in &c.nodes {
            names.insert(n.id.clone(), c.name.clone());
        }
    }
    // Node ids are `<cluster>-<host>`; two clusters could still produce one id.
    let mut seen: HashMap<&str, &Cluster> = HashMap::new();
    for c in &clusters {
        for n in &c.nodes {
            if let Some(other) = seen.insert(&n.id, c) {
                if other.name != c.name {
                    rdiags.push(
                        Diagnostic::error(
                            n.origin.span,
                            format!("node id `{}` is made twice", n.id),
                        )
                        .with_secondary(other.origin.span, "by this cluster too")
                        .with_hint("rename a cluster or a role"),
                    );
                }
            }
        }
    }
    diags.append(&mut rdiags);
    let mut all_files: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
    all_files.extend(site_files.iter().map(|f| f.path.clone()));
    vocc_dsl::diag::sort(&mut diags);
    diags.dedup();
    let ok = !diags.iter().any(Diagnostic::is_error);
    let model = ok.then_some(Model { clusters, site });
    let _ = ValueKind::Plus;
    Ok(Compilation {
        map,
        model,
        diags,
        files: all_files,
    })
}

fn map_file(map: &SourceMap, p: &Path) -> vocc_dsl::FileId {
    let name = p.display().to_string();
    map.files()
        .find(|(_, f)| f.name == name)
        .map_or(vocc_dsl::FileId(0), |(id, _)| id)
}
