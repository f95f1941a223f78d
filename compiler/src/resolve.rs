//! Resolving: interpret the statements of loaded files into model elements —
//! variables, definitions shared through `import`, role inheritance, defaults — and
//! report every statement that does not make sense on its own.
//!
//! Cross-element rules (mounts against exports, schedulers, addresses) live in
//! `check` and `alloc`; this module only builds. What those later rules need to point
//! at the right place and to stay quiet about mistakes already reported is kept in
//! [`Notes`]: the spans of parts of statements, the definitions that were reported
//! broken, and the roles missing a statement that failed.

mod access;

use crate::args::{
    check_guest_path, duration_text, new_statement_hint, one_of, shown, size_text, unknown_value,
    Args, Vars,
};
use crate::load::Loaded;
use crate::model::*;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use vocc_dsl::{Context, Diagnostic, SourceMap, Span, Stmt, Value, ValueKind};

/// Definitions visible to every cluster: the top-level `network`, `layer` and `role`
/// statements of the main file and of everything it imports.
#[derive(Default)]
pub struct Defs<'a> {
    pub networks: BTreeMap<String, &'a Stmt>,
    pub layers: BTreeMap<String, &'a Stmt>,
    pub roles: BTreeMap<String, &'a Stmt>,
}

/// A part of a statement that a later rule may blame, found by the span of the model
/// element's origin: the network of a `nic` is [`Part::NicNetwork`] of the NIC's
/// origin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Part {
    /// The `subnet` value of a network (by the network's origin).
    Subnet,
    NicNetwork,
    NicAddress,
    DiskLayer,
    DiskAt,
    ExportNetwork,
    /// The whole `ROLE:/PATH` of a mount.
    MountSource,
    /// The `ROLE` of `ROLE:/PATH`.
    MountRole,
    MountAt,
    /// The gateway of a network (by the network's origin).
    Gateway,
    /// A layer named in a role's `root` (by the role's origin).
    RootLayer(String),
    /// The `count` of a role (by the role's origin).
    Count,
    /// The `idle` of a role (by the role's origin).
    Idle,
    /// A package of a layer's `packages` or a role's `root … + [...]` (by the layer's
    /// or the role's origin).
    Package(String),
}

/// The most nodes a role may have (`count`, or the MAX of `count MIN..MAX`).
const MAX_COUNT: u64 = 100_000;

/// The longest `idle`: a year.
const MAX_IDLE_SECS: u64 = 365 * 24 * 3600;

/// What resolving learnt besides the model, for `check` and `alloc`.
#[derive(Debug, Default)]
pub struct Notes {
    parts: HashMap<(Span, Part), Span>,
    /// `(cluster, kind, name)` of definitions reported broken: references to them are
    /// not reported again as unknown.
    broken: HashSet<(String, Kind, String)>,
    /// `(cluster, role)` of roles where a `nic`, `disk`, `export`, `mount` or `count`
    /// statement failed: rules that would blame what is missing stay quiet.
    incomplete: HashSet<(String, String)>,
    /// Clusters where a `scheduler`, `queue` or `partition` statement failed.
    sched_broken: HashSet<String>,
    /// Every variable a `let` defines, in any scope.
    pub let_names: BTreeSet<String>,
    /// The names of shared (top-level or imported) definitions, for did-you-mean:
    /// a cluster holds only the ones its roles use.
    pub shared: BTreeSet<(Kind, String)>,
}

impl Notes {
    /// The span of `part` of the element that came from `origin`, or `origin` itself.
    pub fn part(&self, origin: Span, part: Part) -> Span {
        self.parts.get(&(origin, part)).copied().unwrap_or(origin)
    }

    pub fn broken(&self, cluster: &str, kind: Kind, name: &str) -> bool {
        self.broken
            .contains(&(cluster.to_string(), kind, name.to_string()))
    }

    /// The names of the shared definitions of a kind.
    pub fn shared(&self, kind: Kind) -> impl Iterator<Item = &str> {
        self.shared
            .iter()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, n)| n.as_str())
    }

    pub fn incomplete(&self, cluster: &str, role: &str) -> bool {
        self.incomplete
            .contains(&(cluster.to_string(), role.to_string()))
    }

    pub fn merge(&mut self, other: Notes) {
        self.parts.extend(other.parts);
        self.broken.extend(other.broken);
        self.incomplete.extend(other.incomplete);
        self.sched_broken.extend(other.sched_broken);
        self.let_names.extend(other.let_names);
        self.shared.extend(other.shared);
    }
}

pub struct Resolver<'a> {
    pub map: &'a SourceMap,
    pub diags: Vec<Diagnostic>,
    pub vars: Vars,
    pub defs: Defs<'a>,
    pub notes: Notes,
    /// The cluster being resolved (empty outside clusters).
    cluster: String,
    /// Shared definitions that some cluster used.
    used: HashSet<(Kind, String)>,
    /// Role inheritance cycles already reported, as their sorted role names.
    cycles: HashSet<Vec<String>>,
}

/// What resolving the main file produced.
pub struct Resolved {
    pub clusters: Vec<Cluster>,
    pub sites: Vec<Site>,
}

const NIC_METHODS: &[&str] = &["dhcp", "pool", "static", "external"];

/// Elements a role block may hold once per key: a second one in the same block is a
/// mistake, one in a child role replaces the parent's.
type Claims = HashMap<(&'static str, String), (usize, Span)>;

impl<'a> Resolver<'a> {
    pub fn new(map: &'a SourceMap, vars: Vars) -> Resolver<'a> {
        Resolver {
            map,
            diags: Vec::new(),
            vars,
            defs: Defs::default(),
            notes: Notes::default(),
            cluster: String::new(),
            used: HashSet::new(),
            cycles: HashSet::new(),
        }
    }

    fn origin(&self, span: Span) -> Origin {
        Origin::new(self.map, span)
    }

    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn part(&mut self, origin: Span, part: Part, span: Span) {
        self.notes.parts.insert((origin, part), span);
    }

    fn mark_broken(&mut self, kind: Kind, name: &str) {
        self.notes
            .broken
            .insert((self.cluster.clone(), kind, name.to_string()));
    }

    fn mark_sched_broken(&mut self) {
        self.notes.sched_broken.insert(self.cluster.clone());
    }

    /// Resolves the loaded files; the last one is the main file.
    pub fn resolve(&mut self, files: &'a [Loaded]) -> Resolved {
        let mut file_vars = HashMap::new();
        for loaded in files {
            for stmt in &loaded.doc.stmts {
                match stmt.keyword.name.as_str() {
                    "let" => self.let_stmt(stmt, &mut file_vars),
                    "network" => self.define(stmt, Kind::Network),
                    "layer" => self.define(stmt, Kind::Layer),
                    "role" => self.define(stmt, Kind::Role),
                    "cluster" | "site" if loaded.imported => self.err(
                        Diagnostic::error(
                            stmt.keyword.span,
                            format!("an imported file cannot define a `{}`", stmt.keyword.name),
                        )
                        .with_label("in an imported file")
                        .with_hint(
                            "import files hold shared `let`, `network`, `layer` and `role` \
                             definitions; move this into the main file",
                        ),
                    ),
                    _ => {}
                }
            }
        }
        self.vars.push(file_vars);
        let mut out = Resolved {
            clusters: Vec::new(),
            sites: Vec::new(),
        };
        if let Some(main) = files.last() {
            let mut seen: HashMap<String, Span> = HashMap::new();
            for stmt in &main.doc.stmts {
                match stmt.keyword.name.as_str() {
                    "cluster" => {
                        if let Some(c) = self.cluster(stmt) {
                            if let Some(prev) = seen.get(&c.name) {
                                self.err(duplicate("cluster", &c.name, c.origin.span, *prev));
                            } else {
                                seen.insert(c.name.clone(), c.origin.span);
                                out.clusters.push(c);
                            }
                        }
                    }
                    "site" => {
                        if let Some(s) = self.site(stmt) {
                            out.sites.push(s);
                        }
                    }
                    "policy" => self.err(
                        Diagnostic::error(stmt.keyword.span, "a `policy` is not part of an appliance or a site")
                            .with_label("a site's policy for elastic clusters")
                            .with_hint("keep it in a file of its own and give it to `vocc autoscale --policy FILE`"),
                    ),
                    _ => {}
                }
            }
        }
        self.unused_definitions();
        self.vars.pop();
        out
    }

    /// Shared definitions no cluster uses are still read once, so that their mistakes
    /// are reported where they are written; their variables may be meant to come from
    /// a cluster, so unknown ones are not reported.
    fn unused_definitions(&mut self) {
        self.cluster.clear();
        self.vars.lenient = true;
        let networks: Vec<&'a Stmt> = self.unused(Kind::Network, &self.defs.networks);
        for stmt in networks {
            let _ = self.network(stmt);
        }
        let layers: Vec<&'a Stmt> = self.unused(Kind::Layer, &self.defs.layers);
        for stmt in layers {
            let _ = self.layer(stmt);
        }
        let roles: Vec<&'a Stmt> = self.unused(Kind::Role, &self.defs.roles);
        for stmt in roles {
            let _ = self.role(stmt, &BTreeMap::new(), true);
        }
        self.vars.lenient = false;
    }

    fn unused(&self, kind: Kind, table: &BTreeMap<String, &'a Stmt>) -> Vec<&'a Stmt> {
        table
            .iter()
            .filter(|(name, _)| !self.used.contains(&(kind, (*name).clone())))
            .map(|(_, s)| *s)
            .collect()
    }

    /// `let NAME = VALUE`, reported piece by piece when malformed; a definition whose
    /// name and value are clear is kept even then, so its uses are not reported too.
    fn let_stmt(&mut self, stmt: &Stmt, scope: &mut HashMap<String, Value>) {
        self.no_block(stmt);
        let args = &stmt.args;
        let example = "write `let workers = 8`, with spaces around `=`";
        let Some(first) = args.first() else {
            self.err(
                Diagnostic::error(stmt.keyword.span, "`let` needs a name, `=` and a value")
                    .with_label("nothing to define")
                    .with_hint(example),
            );
            return;
        };
        let name = match &first.kind {
            ValueKind::Word(n) if is_var_name(n) => Some(n.clone()),
            ValueKind::Eq => {
                self.err(
                    Diagnostic::error(first.span, "`let` needs a variable name before `=`")
                        .with_label("no name before this")
                        .with_hint(example),
                );
                return;
            }
            ValueKind::Var(n) => {
                self.err(
                    Diagnostic::error(first.span, format!("`let` names `{n}` without `$`"))
                        .with_label("`$` only uses a variable")
                        .with_hint(format!("write `let {n} = VALUE`, then use it as `${n}`")),
                );
                None
            }
            _ => {
                self.err(
                    Diagnostic::error(
                        first.span,
                        format!("`{}` is not a variable name", shown(first)),
                    )
                    .with_label("not a variable name")
                    .with_hint(
                        "a variable name starts with a letter or `_` and continues with \
                             letters, digits, `_` or `-`",
                    ),
                );
                None
            }
        };
        let value = match args.get(1).map(|v| &v.kind) {
            Some(ValueKind::Eq) => match args.get(2) {
                Some(v) => {
                    if let Some(extra) = args.get(3) {
                        let last = args.last().map_or(extra.span, |l| l.span);
                        self.err(
                            Diagnostic::error(
                                extra.span.to(last),
                                format!("unexpected `{}` after the value of `let`", shown(extra)),
                            )
                            .with_label("a variable holds one value")
                            .with_hint("for several values use a list, as in `let names = [a b]`"),
                        );
                    }
                    Some(v)
                }
                None => {
                    let at = args[1].span;
                    self.err(
                        Diagnostic::error(
                            Span {
                                start: at.end,
                                ..at
                            },
                            "`let` needs a value after `=`",
                        )
                        .with_label("expected a value here")
                        .with_hint(example),
                    );
                    None
                }
            },
            Some(_) => {
                let v = &args[1];
                let hint = match &name {
                    Some(n) if args.len() == 2 => format!("write `let {n} = {}`", shown(v)),
                    _ => example.to_string(),
                };
                self.err(
                    Diagnostic::error(v.span, "`let` needs `=` between the name and the value")
                        .with_label("expected `=` before this")
                        .with_hint(hint),
                );
                (args.len() == 2).then_some(v)
            }
            None => {
                let at = first.span;
                self.err(
                    Diagnostic::error(
                        Span {
                            start: at.end,
                            ..at
                        },
                        "`let` needs `=` and a value",
                    )
                    .with_label("expected `= VALUE` here")
                    .with_hint(example),
                );
                None
            }
        };
        let Some(name) = name else { return };
        self.notes.let_names.insert(name.clone());
        let Some(value) = value else { return };
        if let Some(prev) = scope.get(&name) {
            let prev_span = prev.span;
            self.err(
                Diagnostic::error(first.span, format!("variable `{name}` is defined twice"))
                    .with_label("second definition")
                    .with_secondary(prev_span, "first value here")
                    .with_hint("remove one of the definitions; the first one counts"),
            );
            return;
        }
        scope.insert(name, value.clone());
    }

    fn define(&mut self, stmt: &'a Stmt, kind: Kind) {
        let Some((name, span)) = header_name(stmt) else {
            self.err(missing_name(stmt));
            return;
        };
        let table = match kind {
            Kind::Network => &mut self.defs.networks,
            Kind::Layer => &mut self.defs.layers,
            Kind::Role => &mut self.defs.roles,
        };
        match table.entry(name.clone()) {
            Entry::Occupied(first) => {
                let prev = header_name(first.get()).map_or(first.get().span, |(_, s)| s);
                self.diags.push(duplicate(kind.name(), &name, span, prev));
            }
            Entry::Vacant(e) => {
                self.notes.shared.insert((kind, name.clone()));
                e.insert(stmt);
            }
        }
    }

    /// Keys that take one value may stand once in a block; the first one counts.
    fn once(&mut self, block: &Stmt, what: &str, singles: &[&str]) {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for s in block.children() {
            let kw = s.keyword.name.as_str();
            if !singles.contains(&kw) {
                continue;
            }
            match seen.get(kw) {
                Some(prev) => {
                    let prev = *prev;
                    self.err(
                        Diagnostic::error(
                            s.keyword.span,
                            format!("`{kw}` is given twice in {what}"),
                        )
                        .with_label("given again")
                        .with_secondary(prev, "first given here")
                        .with_hint(format!("remove one of them; {what} has one `{kw}`")),
                    );
                }
                None => {
                    seen.insert(kw, s.keyword.span);
                }
            }
        }
    }

    // ----- clusters -------------------------------------------------------------

    /// A cluster. Its block is read even when its header is wrong, so that its
    /// mistakes are reported too; it is kept only when it has a name.
    fn cluster(&mut self, stmt: &'a Stmt) -> Option<Cluster> {
        let header = header_name(stmt);
        if header.is_none() {
            self.err(missing_name(stmt));
        }
        self.extra_header(stmt, 1);
        if stmt.block.is_none() {
            self.err(missing_block(stmt));
            return None;
        }
        let (name, name_span) = header.clone().unwrap_or((String::new(), stmt.keyword.span));
        if header.is_some() {
            check_name(
                &mut self.diags,
                "cluster",
                &name,
                name_span,
                Some(CLUSTER_NAME_MAX),
            );
        }
        self.cluster = name.clone();

        let mut scope = HashMap::new();
        for s in stmt.children().iter().filter(|s| s.keyword.name == "let") {
            self.let_stmt(s, &mut scope);
        }
        self.vars.push(scope);
        self.once(
            stmt,
            &format!("cluster `{name}`"),
            &["vo", "hypervisor", "domain"],
        );

        let mut cluster = Cluster {
            name: name.clone(),
            vo: name.clone(),
            hypervisor: None,
            domain: name.clone(),
            networks: Vec::new(),
            layers: Vec::new(),
            roles: Vec::new(),
            nodes: Vec::new(),
            scheduler: None,
            origin: self.origin(name_span),
        };
        let mut queues: Vec<Queue> = Vec::new();
        let mut local_roles: BTreeMap<String, &'a Stmt> = BTreeMap::new();
        let mut local_networks: BTreeMap<String, Span> = BTreeMap::new();
        for s in stmt.children() {
            match s.keyword.name.as_str() {
                kw @ ("vo" | "domain" | "hypervisor") => {
                    let mut a = Args::new(s, &self.vars, &mut self.diags);
                    if !a.poisoned() {
                        self.cluster_setting(&mut cluster, kw, &mut a);
                    }
                    a.done(&mut self.diags);
                    self.no_block(s);
                }
                "network" => {
                    let Some((n, span)) = header_name(s) else {
                        self.err(missing_name(s));
                        continue;
                    };
                    if let Some(prev) = local_networks.get(&n) {
                        self.err(duplicate("network", &n, span, *prev));
                        continue;
                    }
                    local_networks.insert(n.clone(), span);
                    match self.network(s) {
                        Some(net) => cluster.networks.push(net),
                        None => self.mark_broken(Kind::Network, &n),
                    }
                }
                "layer" => {
                    if let Some(l) = self.layer(s) {
                        if let Some(prev) = cluster.layers.iter().find(|p| p.name == l.name) {
                            self.diags.push(duplicate(
                                "layer",
                                &l.name,
                                l.origin.span,
                                prev.origin.span,
                            ));
                        } else {
                            cluster.layers.push(l);
                        }
                    }
                }
                "role" => match header_name(s) {
                    Some((n, span)) => match local_roles.entry(n.clone()) {
                        Entry::Occupied(first) => {
                            let prev =
                                header_name(first.get()).map_or(first.get().span, |(_, s)| s);
                            self.diags.push(duplicate("role", &n, span, prev));
                        }
                        Entry::Vacant(e) => {
                            e.insert(s);
                        }
                    },
                    None => self.err(missing_name(s)),
                },
                "queue" | "partition" => match self.queue(s) {
                    Some(q) => {
                        if let Some(prev) = queues.iter().find(|p| p.name == q.name) {
                            self.diags.push(duplicate(
                                &s.keyword.name,
                                &q.name,
                                q.origin.span,
                                prev.origin.span,
                            ));
                        } else {
                            queues.push(q);
                        }
                    }
                    None => self.mark_sched_broken(),
                },
                _ => {}
            }
        }
        // Roles in declaration order, each name once (the first definition counts);
        // inheritance may reach cluster roles and shared ones.
        for s in stmt.children().iter().filter(|s| s.keyword.name == "role") {
            let Some((n, _)) = header_name(s) else {
                continue;
            };
            if local_roles
                .get(&n)
                .is_some_and(|first| !std::ptr::eq(*first, s))
            {
                continue;
            }
            match self.role(s, &local_roles, false) {
                Some(role) => cluster.roles.push(role),
                None => {
                    self.mark_broken(Kind::Role, &n);
                    self.mark_sched_broken();
                }
            }
        }
        self.pull_shared(&mut cluster);
        self.vars.pop();
        let sched_broken = self.notes.sched_broken.contains(&name);
        crate::check::scheduler(&mut self.diags, &mut cluster, queues, stmt, sched_broken);
        self.cluster.clear();
        header.map(|_| cluster)
    }

    /// `vo`, `domain` and `hypervisor`.
    fn cluster_setting(&mut self, cluster: &mut Cluster, kw: &str, a: &mut Args) {
        match kw {
            "vo" => {
                if let Some((vo, _)) = a.name("a VO name", "vo \"osg\"", &mut self.diags) {
                    cluster.vo = vo;
                }
            }
            "domain" => {
                let example = "domain \"osg.example.org\"";
                if let Some((d, span)) = a.name("a DNS domain", example, &mut self.diags) {
                    if d.len() > DOMAIN_MAX {
                        self.err(
                            Diagnostic::error(
                                span,
                                format!(
                                    "domain of cluster `{}` is {} characters long",
                                    cluster.name,
                                    d.len()
                                ),
                            )
                            .with_label("too long")
                            .with_hint(format!(
                                "a domain has at most {DOMAIN_MAX} characters, so that \
                                 `<host name>.<domain>` stays within DNS's 253"
                            )),
                        );
                    } else if d.split('.').all(valid_hostname) {
                        cluster.domain = d;
                    } else {
                        let bad = d.split('.').find(|l| !valid_hostname(l)).unwrap_or("");
                        let why = if bad.is_empty() {
                            "it has an empty label".to_string()
                        } else {
                            format!("its label `{bad}` is not a host name label")
                        };
                        self.err(
                            Diagnostic::error(span, format!("`{d}` is not a valid DNS domain"))
                                .with_label(why)
                                .with_hint(
                                    "use dot-separated labels of lowercase letters, digits and \
                                     `-`, as in `osg.example.org`",
                                ),
                        );
                    }
                }
            }
            _ => {
                if let Some((h, _)) = a.choice(&["xen", "kvm"], "hypervisor kvm", &mut self.diags) {
                    cluster.hypervisor = Some(hypervisor(h));
                }
            }
        }
    }

    /// Adds the shared (top-level or imported) networks and layers the cluster's roles
    /// use but the cluster does not define itself.
    fn pull_shared(&mut self, cluster: &mut Cluster) {
        let mut nets: Vec<String> = Vec::new();
        let mut layers: Vec<String> = Vec::new();
        for r in &cluster.roles {
            nets.extend(r.nics.iter().map(|n| n.network.clone()));
            nets.extend(r.exports.iter().map(|e| e.network.clone()));
            layers.extend(r.root.iter().cloned());
            layers.extend(r.disks.iter().map(|d| d.layer.clone()));
        }
        for n in nets {
            if cluster.network(&n).is_some() || self.notes.broken(&cluster.name, Kind::Network, &n)
            {
                continue;
            }
            if let Some(stmt) = self.defs.networks.get(&n).copied() {
                self.used.insert((Kind::Network, n.clone()));
                match self.network(stmt) {
                    Some(net) => cluster.networks.push(net),
                    None => self.mark_broken(Kind::Network, &n),
                }
            }
        }
        for l in layers {
            if cluster.layer(&l).is_some() {
                continue;
            }
            if let Some(stmt) = self.defs.layers.get(&l).copied() {
                self.used.insert((Kind::Layer, l.clone()));
                if let Some(layer) = self.layer(stmt) {
                    cluster.layers.push(layer);
                }
            }
        }
    }

    /// `queue NAME [for VO] [default]`; `None` when it cannot be read (reported).
    fn queue(&mut self, s: &Stmt) -> Option<Queue> {
        self.no_block(s);
        let mut a = Args::new(s, &self.vars, &mut self.diags);
        if a.poisoned() {
            return None;
        }
        let kw = s.keyword.name.clone();
        let example = format!("{kw} osg for \"osg\" default");
        let (name, span) = a.name(&format!("a {kw} name"), &example, &mut self.diags)?;
        check_name(&mut self.diags, &kw, &name, span, None);
        let mut q = Queue {
            name,
            vo: None,
            default: false,
            origin: self.origin(span),
        };
        while let Some(v) = a.next() {
            match &v.kind {
                ValueKind::Word(w) if w == "default" => q.default = true,
                ValueKind::Word(w) if w == "for" => {
                    let (vo, _) =
                        a.name("a VO name", "queue bio for \"biomed\"", &mut self.diags)?;
                    q.vo = Some(vo);
                }
                _ => {
                    self.diags.push(a.unexpected(&v, &["for", "default"]));
                    return None;
                }
            }
        }
        Some(q)
    }

    // ----- networks and layers --------------------------------------------------

    /// A network; `None` when it has no usable subnet (reported).
    pub fn network(&mut self, stmt: &Stmt) -> Option<Network> {
        let Some((name, span)) = header_name(stmt) else {
            self.err(missing_name(stmt));
            return None;
        };
        self.extra_header(stmt, 1);
        check_name(&mut self.diags, "network", &name, span, None);
        if stmt.block.is_none() {
            self.err(missing_block(stmt));
            return None;
        }
        self.once(
            stmt,
            &format!("network `{name}`"),
            &["subnet", "assign", "gateway", "uplink"],
        );
        let mut subnet: Option<(Ipv4Addr, u8)> = None;
        let mut net = Network {
            name,
            subnet: Ipv4Addr::UNSPECIFIED,
            prefix: 0,
            assign: Assign::Pool,
            gateway: None,
            dns: Vec::new(),
            uplink: false,
            origin: self.origin(span),
        };
        let mut gateway_span = None;
        let mut subnet_span = None;
        for s in stmt.children() {
            if !Context::Network.is_keyword(&s.keyword.name) {
                continue;
            }
            self.no_block(s);
            let mut a = Args::new(s, &self.vars, &mut self.diags);
            if a.poisoned() {
                continue;
            }
            match s.keyword.name.as_str() {
                "subnet" => {
                    subnet = self.subnet(&mut a);
                    subnet_span = s.args.first().map(|v| v.span);
                }
                "assign" => {
                    if let Some((m, _)) = a.choice(NIC_METHODS, "assign pool", &mut self.diags) {
                        net.assign = match m {
                            "dhcp" => Assign::Dhcp,
                            "static" => Assign::Static,
                            "external" => Assign::External,
                            _ => Assign::Pool,
                        };
                    }
                }
                "gateway" => {
                    if let Some((ip, sp)) = a.ip("gateway 10.20.0.1", &mut self.diags) {
                        net.gateway = Some(ip);
                        gateway_span = Some(sp);
                    }
                }
                "dns" => {
                    if a.peek().is_none() {
                        a.ip("dns 10.20.0.1", &mut self.diags);
                    }
                    while a.peek().is_some() {
                        match a.ip("dns 10.20.0.1", &mut self.diags) {
                            Some((ip, _)) => net.dns.push(ip),
                            None => break,
                        }
                    }
                }
                "uplink" => {
                    if let Some((u, _)) = a.choice(&["nat", "none"], "uplink nat", &mut self.diags)
                    {
                        net.uplink = u == "nat";
                    }
                }
                _ => {}
            }
            a.done(&mut self.diags);
        }
        let Some((ip, prefix)) = subnet else {
            if !stmt.children().iter().any(|s| s.keyword.name == "subnet") {
                self.err(
                    Diagnostic::error(span, format!("network `{}` has no subnet", net.name))
                        .with_label("no `subnet`")
                        .with_hint("add `subnet 10.20.0.0/24` (any private IPv4 subnet)"),
                );
            }
            return None;
        };
        net.subnet = ip;
        net.prefix = prefix;
        let subnet_span = subnet_span.unwrap_or(span);
        self.part(net.origin.span, Part::Subnet, subnet_span);
        if matches!(net.assign, Assign::Pool | Assign::Dhcp) && !net.is_private() {
            let how = if net.assign == Assign::Pool {
                "assign pool"
            } else {
                "assign dhcp"
            };
            self.err(
                Diagnostic::error(
                    subnet_span,
                    format!(
                        "network `{}` hands out addresses of `{ip}/{prefix}`, which is not a \
                         private range",
                        net.name
                    ),
                )
                .with_label(format!(
                    "not private, and `{how}` gives its addresses to nodes"
                ))
                .with_hint(format!(
                    "use a private range ({}), or `assign static` for a public network whose \
                     addresses are yours",
                    crate::model::private_ranges_text()
                )),
            );
        }
        if let (Some(g), Some(sp)) = (net.gateway, gateway_span) {
            self.part(net.origin.span, Part::Gateway, sp);
            if !net.contains(g) {
                self.err(outside(sp, g, &net, "gateway"));
            } else if let Some(which) = edge_name(&net, g) {
                self.err(
                    Diagnostic::error(
                        sp,
                        format!(
                            "gateway `{g}` is the {which} address of network `{}`",
                            net.name
                        ),
                    )
                    .with_label(format!("the {which} address"))
                    .with_hint(format!("use a host address: {}", host_range(&net))),
                );
            }
        }
        Some(net)
    }

    /// `subnet A.B.C.D/N`: a network address with a prefix of at most `/30`.
    fn subnet(&mut self, a: &mut Args) -> Option<(Ipv4Addr, u8)> {
        let example = "subnet 10.20.0.0/24";
        let v = a.next();
        match v.as_ref().map(|v| (&v.kind, v.span)) {
            Some((ValueKind::Cidr(ip, p), span)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*p)).unwrap_or(0);
                let net_addr = Ipv4Addr::from(u32::from(*ip) & mask);
                if net_addr != *ip {
                    self.err(
                        Diagnostic::error(span, format!("subnet `{ip}/{p}` has host bits set"))
                            .with_label("not a network address")
                            .with_hint(format!("the network address is `{net_addr}/{p}`")),
                    );
                    None
                } else if *p < 8 {
                    self.err(
                        Diagnostic::error(span, format!("subnet `{ip}/{p}` is wider than a `/8`"))
                            .with_label("far too many addresses for a cluster")
                            .with_hint("use a prefix of `/8` or longer, as in `10.20.0.0/24`"),
                    );
                    None
                } else if let Some(what) = special_range(*ip, *p) {
                    self.err(
                        Diagnostic::error(span, format!("subnet `{ip}/{p}` is {what}"))
                            .with_label("no cluster can use these addresses")
                            .with_hint(format!(
                                "use a private range: {}",
                                crate::model::private_ranges_text()
                            )),
                    );
                    None
                } else if *p > 30 {
                    self.err(
                        Diagnostic::error(
                            span,
                            format!("subnet `{ip}/{p}` is too small for a cluster"),
                        )
                        .with_label("no room for nodes")
                        .with_hint("use a prefix of at most `/30`, as in `/24`"),
                    );
                    None
                } else {
                    Some((*ip, *p))
                }
            }
            Some((ValueKind::Ip(ip), span)) => {
                self.err(
                    Diagnostic::error(span, format!("subnet `{ip}` has no prefix length"))
                        .with_label("expected `/N` after the address")
                        .with_hint(format!("write the prefix length, as in `{ip}/24`")),
                );
                None
            }
            _ => {
                self.diags.push(a.expected(v.as_ref(), "a subnet", example));
                None
            }
        }
    }

    /// A layer. It is kept even when it has mistakes (they are reported, so there is
    /// no model to mislead), so that roles using it are not told it does not exist.
    pub fn layer(&mut self, stmt: &Stmt) -> Option<Layer> {
        let Some((name, span)) = header_name(stmt) else {
            self.err(missing_name(stmt));
            return None;
        };
        let errors_before = self.diags.iter().filter(|d| d.is_error()).count();
        self.extra_header(stmt, 1);
        check_name(&mut self.diags, "layer", &name, span, None);
        let mut layer = Layer {
            name,
            source: LayerSource::Busybox,
            packages: Vec::new(),
            size: None,
            origin: self.origin(span),
        };
        if stmt.block.is_none() {
            self.err(missing_block(stmt));
            return Some(layer);
        }
        self.once(
            stmt,
            &format!("layer `{}`", layer.name),
            &["from", "size", "sha256"],
        );
        let mut source: Option<(LayerSource, Span)> = None;
        let mut sha: Option<(String, Span)> = None;
        for s in stmt.children() {
            if !Context::Layer.is_keyword(&s.keyword.name) {
                continue;
            }
            self.no_block(s);
            let mut a = Args::new(s, &self.vars, &mut self.diags);
            if a.poisoned() {
                continue;
            }
            match s.keyword.name.as_str() {
                "from" => {
                    if let Some(src) = self.layer_source(&mut a) {
                        source = Some((src, s.span));
                    }
                }
                "packages" => {
                    let v = a.next();
                    match v.as_ref().map(|v| &v.kind) {
                        Some(ValueKind::List(items)) => {
                            layer.packages.extend(self.package_list(items, span));
                        }
                        _ => self.diags.push(a.expected(
                            v.as_ref(),
                            "a list of packages",
                            "packages [nfs-common munge]",
                        )),
                    }
                }
                "size" => {
                    if let Some((n, _)) = a.size("size 2G", &mut self.diags) {
                        layer.size = Some(n);
                    }
                }
                "sha256" => {
                    let example = "sha256 \"e3b0c442…\"";
                    if let Some((h, sp)) = a.name("a sha256 digest", example, &mut self.diags) {
                        match digest_problem(&h) {
                            None => sha = Some((h.to_ascii_lowercase(), sp)),
                            Some(why) => self.err(
                                Diagnostic::error(sp, format!("invalid sha256 digest: {why}"))
                                    .with_label("not a sha256 digest")
                                    .with_hint(
                                        "a digest is 64 hexadecimal digits: copy the one \
                                         `sha256sum IMAGE` prints",
                                    ),
                            ),
                        }
                    }
                }
                _ => {}
            }
            a.done(&mut self.diags);
        }
        let has = |kw: &str| stmt.children().iter().any(|s| s.keyword.name == kw);
        match source {
            Some((LayerSource::Image { path, .. }, from_span)) => match sha {
                Some((h, _)) => layer.source = LayerSource::Image { path, sha256: h },
                None if !has("sha256") => self.err(
                    Diagnostic::error(
                        from_span,
                        format!("image layer `{}` has no `sha256`", layer.name),
                    )
                    .with_label("an image must be pinned")
                    .with_hint("add `sha256 \"…\"` with the digest `sha256sum IMAGE` prints"),
                ),
                None => {}
            },
            Some((src, _)) => {
                if let Some((_, sp)) = sha {
                    self.err(
                        Diagnostic::error(sp, "`sha256` pins only `from image` layers")
                            .with_label("nothing to pin")
                            .with_hint("remove it; other layers are named by their content anyway"),
                    );
                }
                layer.source = src;
            }
            None => {
                if !has("from") {
                    self.err(
                        Diagnostic::error(span, format!("layer `{}` has no `from`", layer.name))
                            .with_label("no `from`")
                            .with_hint(
                                "say where it comes from: `from busybox`, `from debian \
                                 \"bookworm\"`, `from image \"x.qcow2\"` or `from dir \"path\"`",
                            ),
                    );
                }
            }
        }
        // The checker then says nothing about its source (see `check::images`).
        if self.diags.iter().filter(|d| d.is_error()).count() > errors_before {
            self.mark_broken(Kind::Layer, &layer.name);
        }
        Some(layer)
    }

    /// `from busybox | debian "SUITE" | image "PATH" | dir "PATH"`.
    fn layer_source(&mut self, a: &mut Args) -> Option<LayerSource> {
        let (kind, _) = a.choice(
            &["busybox", "debian", "image", "dir"],
            "from debian \"bookworm\"",
            &mut self.diags,
        )?;
        match kind {
            "busybox" => Some(LayerSource::Busybox),
            "debian" => a
                .name(
                    "a Debian release",
                    "from debian \"bookworm\"",
                    &mut self.diags,
                )
                .and_then(|(suite, sp)| match crate::sources::suite_problem(&suite) {
                    None => Some(LayerSource::Debian { suite }),
                    Some(hint) => {
                        self.diags.push(
                            Diagnostic::error(sp, format!("`{suite}` is not a Debian release"))
                                .with_label("not a release name")
                                .with_hint(hint),
                        );
                        None
                    }
                }),
            "image" => a
                .host_path("from image \"base.qcow2\"", &mut self.diags)
                .map(|(path, _)| LayerSource::Image {
                    path,
                    sha256: String::new(),
                }),
            _ => a
                .host_path("from dir \"layers/vdt\"", &mut self.diags)
                .map(|(path, _)| LayerSource::Dir { path }),
        }
    }

    fn package_list(&mut self, items: &[Value], origin: Span) -> Vec<String> {
        let mut out = Vec::new();
        for item in items {
            match &item.kind {
                ValueKind::Word(w) | ValueKind::Str(w) => match package_problem(w) {
                    None => {
                        self.part(origin, Part::Package(w.clone()), item.span);
                        out.push(w.clone());
                    }
                    Some(hint) => self.err(
                        Diagnostic::error(item.span, format!("`{w}` is not a valid package name"))
                            .with_label("not a Debian package name")
                            .with_hint(hint),
                    ),
                },
                other => self.err(
                    Diagnostic::error(
                        item.span,
                        format!("expected a package name, not {}", other.describe()),
                    )
                    .with_label("not a package name")
                    .with_hint("list package names, as in `[nfs-common munge]`"),
                ),
            }
        }
        out
    }

    // ----- roles ----------------------------------------------------------------

    /// The statements that make a role, its ancestors' first, each with the depth of
    /// the block it stands in (the role's own block is the deepest).
    fn role_stmts(
        &mut self,
        stmt: &'a Stmt,
        local: &BTreeMap<String, &'a Stmt>,
        chain: &mut Vec<String>,
    ) -> Vec<(&'a Stmt, usize)> {
        let mut out = Vec::new();
        let Some((name, _)) = header_name(stmt) else {
            return out;
        };
        chain.push(name);
        match stmt.args.get(1) {
            Some(Value {
                kind: ValueKind::Word(w),
                span: extends_span,
            }) if w == "extends" => match stmt.args.get(2).map(|v| (&v.kind, v.span)) {
                Some((ValueKind::Word(parent) | ValueKind::Str(parent), pspan)) => {
                    out = self.parent_stmts(stmt, parent, pspan, local, chain);
                    if let Some(extra) = stmt.args.get(3) {
                        self.err(
                            Diagnostic::error(extra.span, "a role extends one role")
                                .with_label("a second parent")
                                .with_hint("write `role NAME extends PARENT { … }`"),
                        );
                    }
                }
                other => {
                    let span = other.map_or(
                        Span {
                            start: extends_span.end,
                            ..*extends_span
                        },
                        |(_, s)| s,
                    );
                    self.err(
                        Diagnostic::error(span, "`extends` needs a role name")
                            .with_label("expected the parent role")
                            .with_hint("write `role worker extends base { … }`"),
                    );
                }
            },
            Some(v) => self.err(
                Diagnostic::error(
                    v.span,
                    format!("unexpected `{}` after the role name", shown(v)),
                )
                .with_label("not understood here")
                .with_hint("write `role NAME { … }` or `role NAME extends PARENT { … }`"),
            ),
            None => {}
        }
        let depth = chain.len();
        if let Some(name) = chain.pop() {
            // Each block of the chain, checked whenever it is used; the compiler keeps
            // one of the identical diagnostics.
            self.once(
                stmt,
                &format!("role `{name}`"),
                &[
                    "count",
                    "idle",
                    "root",
                    "cpu",
                    "memory",
                    "swap",
                    "scheduler",
                    "overlay",
                    "cmdline",
                ],
            );
        }
        out.extend(stmt.children().iter().map(|s| (s, depth)));
        out
    }

    fn parent_stmts(
        &mut self,
        stmt: &'a Stmt,
        parent: &str,
        pspan: Span,
        local: &BTreeMap<String, &'a Stmt>,
        chain: &mut Vec<String>,
    ) -> Vec<(&'a Stmt, usize)> {
        if let Some(pos) = chain.iter().position(|c| c == parent) {
            let mut key: Vec<String> = chain[pos..].to_vec();
            key.sort();
            if self.cycles.insert(key) {
                let names: Vec<String> = chain[pos..].iter().map(|c| format!("`{c}`")).collect();
                let message = match names.as_slice() {
                    [one] => format!("role {one} extends itself"),
                    [a, b] => format!("roles {a} and {b} extend each other"),
                    _ => format!("roles {} extend each other in a cycle", and(&names)),
                };
                self.err(
                    Diagnostic::error(pspan, message)
                        .with_label("this closes the cycle")
                        .with_hint("a role cannot extend itself, directly or through others"),
                );
            }
            return Vec::new();
        }
        // A cluster role may extend a shared role of the same name.
        let found = local
            .get(parent)
            .filter(|p| !std::ptr::eq(**p, stmt))
            .copied()
            .or_else(|| {
                let shared = self.defs.roles.get(parent).copied();
                if shared.is_some() {
                    self.used.insert((Kind::Role, parent.to_string()));
                }
                shared
            });
        match found {
            Some(p) => self.role_stmts(p, local, chain),
            None => {
                let mut cands: Vec<&str> = local.keys().map(String::as_str).collect();
                cands.extend(self.defs.roles.keys().map(String::as_str));
                cands.retain(|c| Some(*c) != chain.last().map(String::as_str));
                self.diags.push(unknown("role", parent, pspan, cands));
                Vec::new()
            }
        }
    }

    /// A role; `None` when it has no block (reported). A `template` is a shared role
    /// no cluster uses: only its own statements are checked.
    fn role(
        &mut self,
        stmt: &'a Stmt,
        local: &BTreeMap<String, &'a Stmt>,
        template: bool,
    ) -> Option<Role> {
        let (name, span) = header_name(stmt)?;
        if stmt.block.is_none() {
            self.err(missing_block(stmt));
            return None;
        }
        let before = self.diags.len();
        let stmts = self.role_stmts(stmt, local, &mut Vec::new());
        // A parent that could not be read may hold what seems missing, such as `root`.
        let header_failed = self.diags.len() > before;
        let mut role = Role {
            name,
            count: 1,
            numbered: false,
            min: None,
            idle: None,
            root: Vec::new(),
            packages: Vec::new(),
            disks: Vec::new(),
            cpu: 1,
            pinned: false,
            memory: 256 << 20,
            swap: None,
            nics: Vec::new(),
            exports: Vec::new(),
            mounts: Vec::new(),
            scheduler: None,
            persistence: Persistence::Persistent,
            cmdline: Vec::new(),
            origin: self.origin(span),
        };
        let mut claims = Claims::new();
        let mut root_seen = false;
        for (s, depth) in stmts {
            if !Context::Role.is_keyword(&s.keyword.name) {
                continue;
            }
            let before = self.diags.len();
            self.role_stmt(&mut role, s, depth, &mut claims, &mut root_seen);
            self.no_block(s);
            let failed = self.diags.len() > before;
            match s.keyword.name.as_str() {
                "nic" | "disk" | "export" | "mount" | "count" if failed => {
                    self.notes
                        .incomplete
                        .insert((self.cluster.clone(), role.name.clone()));
                }
                "scheduler" if failed => self.mark_sched_broken(),
                _ => {}
            }
        }
        self.elastic(&mut role);
        if !root_seen && !template && !header_failed {
            self.err(
                Diagnostic::error(span, format!("role `{}` has no root layer", role.name))
                    .with_label("no `root`")
                    .with_hint("add `root LAYER`, e.g. a layer `from busybox`"),
            );
        }
        Some(role)
    }

    /// Whether an element with `key` from the block at `depth` may replace what the
    /// role has: a parent's is replaced, a second one in the same block is reported.
    fn claim(
        &mut self,
        claims: &mut Claims,
        what: &'static str,
        key: &str,
        depth: usize,
        span: Span,
    ) -> bool {
        let k = (what, key.to_string());
        if let Some(&(d, prev)) = claims.get(&k) {
            if d == depth {
                let message = match what {
                    "nic" => format!("nic `{key}` is defined twice"),
                    "export" => format!("`{key}` is exported twice"),
                    "disk" => format!("two disks are mounted at `{key}`"),
                    _ => format!("`{key}` is mounted twice"),
                };
                self.err(
                    Diagnostic::error(span, message)
                        .with_label("second one")
                        .with_secondary(prev, "first one here")
                        .with_hint(format!(
                            "remove one of them; a role that extends another replaces the \
                             parent's {what} of the same {}",
                            if what == "nic" { "name" } else { "path" }
                        )),
                );
                return false;
            }
        }
        claims.insert(k, (depth, span));
        true
    }

    /// `count N` or `count MIN..MAX`: the role's nodes, all of them in the model;
    /// with a range, those after the first MIN are standby nodes.
    fn count(&mut self, role: &mut Role, a: &mut Args<'_>) {
        let example = "count 8";
        let Some(v) = a.peek().cloned() else {
            a.int(example, &mut self.diags);
            return;
        };
        let (min, max) = match &v.kind {
            ValueKind::IntRange(lo, hi) => {
                a.next();
                (Some(*lo), *hi)
            }
            ValueKind::Word(w) if w.contains("..") => {
                a.next();
                self.err(
                    Diagnostic::error(v.span, format!("`count {w}` is not a range of numbers"))
                        .with_label("expected MIN..MAX")
                        .with_hint(
                            "write the least and the most nodes as whole numbers, as in \
                             `count 1..3`",
                        ),
                );
                return;
            }
            _ => match a.int(example, &mut self.diags) {
                Some((n, _)) => (None, n),
                None => return,
            },
        };
        let sp = v.span;
        self.part(role.origin.span, Part::Count, sp);
        if max < 1 {
            let hint = if min.is_some() {
                "an elastic role has at least one node running, as in `count 1..3`"
            } else {
                "remove the role if it should have no nodes"
            };
            self.err(
                Diagnostic::error(sp, "`count` must be at least 1")
                    .with_label("no nodes")
                    .with_hint(hint),
            );
        } else if min == Some(0) {
            self.err(
                Diagnostic::error(
                    sp,
                    format!("`count {}` lets the role have no node", shown(&v)),
                )
                .with_label("a range starts at 1 or more")
                .with_hint(format!(
                    "an elastic role keeps at least one node running: write `count 1..{max}`"
                )),
            );
        } else if max > MAX_COUNT {
            self.err(
                Diagnostic::error(
                    sp,
                    format!("`count {}` is more nodes than vocc plans for", shown(&v)),
                )
                .with_label("too many nodes")
                .with_hint(format!("use at most {MAX_COUNT} nodes per role")),
            );
        } else {
            role.count = max as u32;
            role.min = min.map(|m| m as u32);
            role.numbered = true;
        }
    }

    /// An elastic role gets the default `idle`; on any other role `idle` is warned
    /// about (it may come from a parent that is elastic), and dropped.
    fn elastic(&mut self, role: &mut Role) {
        match (role.min, role.idle) {
            (Some(_), None) => role.idle = Some(DEFAULT_IDLE_SECS),
            (None, Some(secs)) => {
                let at = self.notes.part(role.origin.span, Part::Idle);
                self.diags.push(
                    Diagnostic::warning(
                        at,
                        format!(
                            "`idle {}` has no effect: role `{}` has no count range",
                            duration_text(secs),
                            role.name
                        ),
                    )
                    .with_label("ignored")
                    .with_hint(
                        "`idle` is how long a standby node of an elastic role may stay idle; \
                         give the role a range, as in `count 1..3`, or remove `idle`",
                    ),
                );
                role.idle = None;
            }
            _ => {}
        }
    }

    fn role_stmt(
        &mut self,
        role: &mut Role,
        s: &Stmt,
        depth: usize,
        claims: &mut Claims,
        root_seen: &mut bool,
    ) {
        let mut a = Args::new(s, &self.vars, &mut self.diags);
        if s.keyword.name == "root" {
            *root_seen = true;
        }
        if a.poisoned() {
            return;
        }
        match s.keyword.name.as_str() {
            "count" => self.count(role, &mut a),
            "idle" => {
                if let Some((secs, sp)) = a.duration("idle 10min", &mut self.diags) {
                    if secs == 0 {
                        self.err(
                            Diagnostic::error(sp, "`idle 0s` would power a node down at once")
                                .with_label("no time to take a job")
                                .with_hint(
                                    "give a node time to take the next job, as in `idle 10min`",
                                ),
                        );
                    } else if secs > MAX_IDLE_SECS {
                        self.err(
                            Diagnostic::error(sp, format!("`idle {}` is too long", duration_text(secs)))
                                .with_label("more than 365 days")
                                .with_hint("use at most `8760h`; a node that should never be powered down belongs to a role without a count range"),
                        );
                    } else {
                        role.idle = Some(secs);
                        self.part(role.origin.span, Part::Idle, sp);
                    }
                }
            }
            "cpu" => {
                if let Some((n, sp)) = a.int("cpu 2", &mut self.diags) {
                    if !(1..=1024).contains(&n) {
                        self.err(
                            Diagnostic::error(sp, format!("`cpu {n}` is out of range"))
                                .with_label("not between 1 and 1024")
                                .with_hint("give the number of virtual CPUs, from 1 to 1024, as in `cpu 2`"),
                        );
                    } else {
                        role.cpu = n as u32;
                    }
                }
                role.pinned = false;
                // A word after the count is `pinned` or a misspelling of it; anything
                // else (another statement's keyword after a missing `;`) is left for
                // `done`, which says what it is.
                let pin_word = |v: &&Value| match &v.kind {
                    ValueKind::Word(w) => {
                        w == "pinned" || vocc_dsl::diag::suggest(w, ["pinned"]).is_some()
                    }
                    _ => false,
                };
                if let Some(v) = a.peek().filter(pin_word).cloned() {
                    if matches!(&v.kind, ValueKind::Word(w) if w == "pinned") {
                        role.pinned = true;
                        a.next();
                    } else {
                        let d = a.unexpected(&v, &["pinned"]).with_hint(
                            "`cpu 2 pinned` gives each node two host CPUs of its own; without `pinned` its CPUs float",
                        );
                        self.err(d);
                        a.skip_rest();
                    }
                }
            }
            "memory" => {
                if let Some((n, sp)) = a.size("memory 512M", &mut self.diags) {
                    if n < (16 << 20) {
                        self.err(
                            Diagnostic::error(
                                sp,
                                format!("`memory {}` is too little to boot", size_text(n)),
                            )
                            .with_label("less than 16M")
                            .with_hint("give a guest at least 16M, as in `memory 256M`"),
                        );
                    } else {
                        role.memory = n;
                    }
                }
            }
            "swap" => {
                if let Some((n, _)) = a.size("swap 200M", &mut self.diags) {
                    role.swap = (n > 0).then_some(n);
                }
            }
            "root" => self.root(role, &mut a, s),
            "disk" => {
                if let Some((d, at_span)) = self.disk(&mut a) {
                    if self.claim(claims, "disk", &d.at, depth, at_span) {
                        role.disks.retain(|x| x.at != d.at);
                        role.disks.push(d);
                    }
                }
            }
            "nic" => {
                if let Some((n, name_span)) = self.nic(&mut a) {
                    if self.claim(claims, "nic", &n.name, depth, name_span) {
                        role.nics.retain(|x| x.name != n.name);
                        role.nics.push(n);
                    }
                }
            }
            "export" => {
                let example = "export /home to private rw";
                if let Some((path, sp)) = a.guest_path(example, &mut self.diags) {
                    if let Some(e) = self.export_clauses(&mut a, path, sp) {
                        if self.claim(claims, "export", &e.path, depth, sp) {
                            role.exports.retain(|x| x.path != e.path);
                            role.exports.push(e);
                        }
                    }
                }
            }
            "mount" => {
                if let Some((m, at_span)) = self.mount(&mut a) {
                    if self.claim(claims, "mount", &m.at, depth, at_span) {
                        role.mounts.retain(|x| x.at != m.at);
                        role.mounts.push(m);
                    }
                }
            }
            "scheduler" => {
                role.scheduler = self.sched_role(&mut a);
            }
            "overlay" => {
                if let Some((p, _)) = a.choice(
                    &["persistent", "ephemeral"],
                    "overlay ephemeral",
                    &mut self.diags,
                ) {
                    role.persistence = if p == "ephemeral" {
                        Persistence::Ephemeral
                    } else {
                        Persistence::Persistent
                    };
                }
            }
            "cmdline" => {
                role.cmdline.clear();
                for v in a.by_ref() {
                    match &v.kind {
                        ValueKind::Str(t) | ValueKind::Word(t) => role
                            .cmdline
                            .extend(t.split_whitespace().map(str::to_string)),
                        _ => {
                            let text = self.map.slice(v.span).to_string();
                            role.cmdline.push(text);
                        }
                    }
                }
            }
            _ => {}
        }
        a.done(&mut self.diags);
    }

    /// `root LAYER (+ LAYER | + [packages])*`
    fn root(&mut self, role: &mut Role, a: &mut Args, s: &Stmt) {
        role.root.clear();
        role.packages.clear();
        let hint = "join layers and package lists with `+`, as in `root os + [slurmctld]`";
        let mut want_layer = true;
        let mut last_plus: Option<Span> = None;
        let mut any = false;
        for v in a.by_ref() {
            any = true;
            match (&v.kind, want_layer) {
                (ValueKind::Word(w) | ValueKind::Str(w), true) if !w.is_empty() => {
                    self.part(role.origin.span, Part::RootLayer(w.clone()), v.span);
                    role.root.push(w.clone());
                    want_layer = false;
                }
                (ValueKind::List(items), true) if !role.root.is_empty() => {
                    let pk = self.package_list(items, role.origin.span);
                    role.packages.extend(pk);
                    want_layer = false;
                }
                (ValueKind::List(_), true) => {
                    self.err(
                        Diagnostic::error(v.span, "`root` starts with a package list")
                            .with_label("expected a layer first")
                            .with_hint("name the bottom layer first, as in `root os + [vim]`"),
                    );
                    return;
                }
                (ValueKind::Plus, false) => {
                    want_layer = true;
                    last_plus = Some(v.span);
                }
                (ValueKind::Word(w), false) if new_statement_hint(w, "root").is_some() => {
                    let d = Diagnostic::error(v.span, format!("unexpected `{w}` in `root`"))
                        .with_label("not joined to the layers with `+`")
                        .with_hint(new_statement_hint(w, "root").unwrap_or_default());
                    self.err(d);
                    return;
                }
                (ValueKind::Word(_) | ValueKind::Str(_) | ValueKind::List(_), false) => {
                    self.err(
                        Diagnostic::error(
                            v.span,
                            format!("`root` needs `+` before `{}`", shown(&v)),
                        )
                        .with_label("expected `+` before this")
                        .with_hint(hint),
                    );
                    return;
                }
                _ => {
                    self.err(
                        Diagnostic::error(v.span, format!("unexpected `{}` in `root`", shown(&v)))
                            .with_label("not a layer or a package list")
                            .with_hint(hint),
                    );
                    return;
                }
            }
        }
        if !any {
            let at = s.keyword.span;
            self.err(
                Diagnostic::error(
                    Span {
                        start: at.end,
                        ..at
                    },
                    "`root` needs a layer",
                )
                .with_label("expected a layer here")
                .with_hint("write `root LAYER`, optionally followed by `+ [packages]`"),
            );
        } else if let (true, Some(plus)) = (want_layer, last_plus) {
            self.err(
                Diagnostic::error(plus, "`root` ends with `+`")
                    .with_label("nothing after this `+`")
                    .with_hint("add a layer or a package list after `+`, or remove the `+`"),
            );
        }
    }

    /// `disk LAYER at /PATH [ro|rw]`, with the span of its path.
    fn disk(&mut self, a: &mut Args) -> Option<(Disk, Span)> {
        let (layer, lspan) = a.name("a layer", "disk vdt at /opt/vdt", &mut self.diags)?;
        let mut at: Option<(String, Span)> = None;
        let mut access = Access::Ro;
        while let Some(v) = a.next() {
            match &v.kind {
                ValueKind::Word(w) if w == "at" => {
                    at = Some(a.guest_path("disk vdt at /opt/vdt", &mut self.diags)?);
                }
                ValueKind::Word(w) if w == "ro" => access = Access::Ro,
                ValueKind::Word(w) if w == "rw" => access = Access::Rw,
                _ => {
                    self.diags.push(a.unexpected(&v, &["at", "ro", "rw"]));
                    return None;
                }
            }
        }
        let Some((at, at_span)) = at else {
            self.err(
                Diagnostic::error(lspan, format!("disk `{layer}` has no mount point"))
                    .with_label("no `at /PATH`")
                    .with_hint(format!(
                        "add `at /PATH`, as in `disk {layer} at /opt/{layer}`"
                    )),
            );
            return None;
        };
        let origin = self.origin(lspan.to(at_span));
        self.part(origin.span, Part::DiskLayer, lspan);
        self.part(origin.span, Part::DiskAt, at_span);
        Some((
            Disk {
                layer,
                at,
                access,
                origin,
            },
            at_span,
        ))
    }

    /// `export PATH [to] NETWORK [ro|rw] [no_root_squash]`
    fn export_clauses(&mut self, a: &mut Args, path: String, span: Span) -> Option<Export> {
        if matches!(a.peek().map(|v| &v.kind), Some(ValueKind::Word(w)) if w == "to") {
            a.next();
        }
        let example = "export /home to private rw";
        let (network, nspan) = a.name("a network", example, &mut self.diags)?;
        let origin = self.origin(span.to(nspan));
        self.part(origin.span, Part::ExportNetwork, nspan);
        let mut e = Export {
            path,
            network,
            access: Access::Ro,
            no_root_squash: false,
            origin,
        };
        while let Some(v) = a.next() {
            match &v.kind {
                ValueKind::Word(w) if w == "ro" => e.access = Access::Ro,
                ValueKind::Word(w) if w == "rw" => e.access = Access::Rw,
                ValueKind::Word(w) if w == "no_root_squash" => e.no_root_squash = true,
                _ => {
                    self.diags
                        .push(a.unexpected(&v, &["ro", "rw", "no_root_squash"]));
                    return None;
                }
            }
        }
        Some(e)
    }

    /// `mount ROLE:/PATH [at /PATH] [ro|rw]`, with the span of where it is mounted.
    fn mount(&mut self, a: &mut Args) -> Option<(Mount, Span)> {
        let example = "mount head:/opt/vdt at /opt/vdt";
        let v = a.next();
        let (role, path, rspan) = match v.as_ref().map(|v| (&v.kind, v.span)) {
            Some((ValueKind::Ref { target, path }, span)) => {
                if let Some(d) = check_guest_path(path, span) {
                    self.err(d);
                    return None;
                }
                (target.clone(), path.clone(), span)
            }
            Some((ValueKind::Path(p), span)) => {
                self.err(
                    Diagnostic::error(span, format!("`mount` needs the role that exports `{p}`"))
                        .with_label("expected `ROLE:/PATH`")
                        .with_hint(format!("name the exporting role, as in `mount head:{p}`")),
                );
                return None;
            }
            _ => {
                self.diags
                    .push(a.expected(v.as_ref(), "an export as `ROLE:/PATH`", example));
                return None;
            }
        };
        let mut at: Option<(String, Span)> = None;
        let mut access = None;
        while let Some(v) = a.next() {
            match &v.kind {
                ValueKind::Word(w) if w == "at" => {
                    at = Some(a.guest_path(example, &mut self.diags)?);
                }
                ValueKind::Word(w) if w == "ro" => access = Some(Access::Ro),
                ValueKind::Word(w) if w == "rw" => access = Some(Access::Rw),
                _ => {
                    self.diags.push(a.unexpected(&v, &["at", "ro", "rw"]));
                    return None;
                }
            }
        }
        // Without `at`, the export is mounted at the same path.
        let (at, at_span) = at.unwrap_or((path.clone(), rspan));
        let origin = self.origin(rspan.to(at_span));
        // The role is the text before `:`, unless the value came from a variable.
        let role_span = if self.map.slice(rspan).starts_with(&format!("{role}:")) {
            Span {
                end: rspan.start + role.len() as u32,
                ..rspan
            }
        } else {
            rspan
        };
        self.part(origin.span, Part::MountSource, rspan);
        self.part(origin.span, Part::MountRole, role_span);
        self.part(origin.span, Part::MountAt, at_span);
        Some((
            Mount {
                role,
                path,
                at,
                access: access.unwrap_or(Access::Rw),
                network: String::new(),
                origin,
            },
            at_span,
        ))
    }

    /// `nic NAME NETWORK [dhcp|pool|static|external] [ADDRESS]`, with the span of
    /// its name.
    fn nic(&mut self, a: &mut Args) -> Option<(NicSpec, Span)> {
        let (name, span) = a.name("an interface name", "nic eth0 private", &mut self.diags)?;
        if name.len() > 15
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            self.err(
                Diagnostic::error(span, format!("`{name}` is not a valid interface name"))
                    .with_label("not an interface name")
                    .with_hint("use at most 15 letters, digits, `_`, `.` or `-`, as in `eth0`"),
            );
            return None;
        }
        let (network, nspan) = a.name("a network", "nic eth0 private", &mut self.diags)?;
        let mut end = nspan;
        let mut method = None;
        let mut address: Option<(Ipv4Addr, Span)> = None;
        if let Some(v) = a.next() {
            end = v.span;
            match &v.kind {
                ValueKind::Ip(ip) => {
                    method = Some(NicMethod::Static);
                    address = Some((*ip, v.span));
                }
                ValueKind::Word(w) if NIC_METHODS.contains(&w.as_str()) => {
                    method = Some(match w.as_str() {
                        "dhcp" => NicMethod::Dhcp,
                        "static" => NicMethod::Static,
                        "external" => NicMethod::External,
                        _ => NicMethod::Pool,
                    });
                    if w == "static" {
                        if let Some(Value {
                            kind: ValueKind::Ip(ip),
                            span: ipspan,
                        }) = a.peek().cloned()
                        {
                            a.next();
                            address = Some((ip, ipspan));
                            end = ipspan;
                        }
                    }
                }
                ValueKind::Word(w) => {
                    let d =
                        Diagnostic::error(v.span, format!("unknown address method `{w}` in `nic`"))
                            .with_label("expected an address method or an address");
                    self.err(
                        match vocc_dsl::diag::suggest(w, NIC_METHODS.iter().copied()) {
                            Some(m) => d.with_hint(format!("did you mean `{m}`?")),
                            None if new_statement_hint(w, "nic").is_some() => {
                                d.with_hint(new_statement_hint(w, "nic").unwrap_or_default())
                            }
                            None => d.with_hint(format!(
                                "use one of {}, or an address of network `{network}`",
                                NIC_METHODS
                                    .iter()
                                    .map(|m| format!("`{m}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )),
                        },
                    );
                    return None;
                }
                ValueKind::Cidr(ip, p) => {
                    self.err(
                        Diagnostic::error(v.span, format!("nic address `{ip}/{p}` is a subnet"))
                            .with_label("expected an address")
                            .with_hint(format!(
                                "write the address alone, as in `nic {name} {network} {ip}`; the \
                                 network's `subnet` gives the prefix"
                            )),
                    );
                    return None;
                }
                _ => {
                    self.diags.push(a.expected(
                        Some(&v),
                        "an address method or an address",
                        "nic eth1 public 192.0.2.10",
                    ));
                    return None;
                }
            }
        }
        let origin = self.origin(span.to(end));
        self.part(origin.span, Part::NicNetwork, nspan);
        if let Some((_, sp)) = address {
            self.part(origin.span, Part::NicAddress, sp);
        }
        Some((
            NicSpec {
                name,
                network,
                method,
                address: address.map(|(ip, _)| ip),
                origin,
            },
            span,
        ))
    }

    /// `scheduler KIND (controller|compute|submit)+ [partition|queue NAME]*`
    fn sched_role(&mut self, a: &mut Args) -> Option<SchedRole> {
        let (word, kspan) = a.choice(
            &crate::scheduler::words(),
            "scheduler slurm compute partition osg",
            &mut self.diags,
        )?;
        let kind = crate::scheduler::named(word)?.kind();
        let mut r = SchedRole {
            kind,
            controller: false,
            compute: false,
            submit: false,
            queues: Vec::new(),
            queue_spans: Vec::new(),
            origin: self.origin(kspan),
        };
        let mut last = kspan;
        let mut queue_start: Option<Span> = None;
        while let Some(v) = a.next() {
            last = v.span;
            match &v.kind {
                ValueKind::Word(w) if w == "controller" => r.controller = true,
                ValueKind::Word(w) if w == "compute" => r.compute = true,
                ValueKind::Word(w) if w == "submit" => r.submit = true,
                ValueKind::Word(w) if w == "partition" || w == "queue" => {
                    let (q, qs) = a.name(
                        &format!("a {w} name"),
                        "scheduler slurm compute partition osg",
                        &mut self.diags,
                    )?;
                    queue_start.get_or_insert(v.span);
                    r.queues.push(q);
                    r.queue_spans.push(qs);
                    last = qs;
                }
                _ => {
                    self.diags.push(a.unexpected(
                        &v,
                        &["controller", "compute", "submit", "partition", "queue"],
                    ));
                    return None;
                }
            }
        }
        if !(r.controller || r.compute || r.submit) {
            self.err(
                Diagnostic::error(
                    Span {
                        start: last.end,
                        ..last
                    },
                    format!("`scheduler {}` needs the node's part", kind.as_str()),
                )
                .with_label("expected `controller`, `compute` or `submit`")
                .with_hint(format!(
                    "add `controller`, `compute` or `submit`, as in `scheduler {} compute`",
                    kind.as_str()
                )),
            );
            return None;
        }
        if let (false, Some(start)) = (r.compute, queue_start) {
            self.err(
                Diagnostic::error(start.to(last), "only compute nodes serve a queue")
                    .with_label("this node does not compute")
                    .with_hint("add `compute`, or remove the partition or queue"),
            );
        }
        r.origin = self.origin(kspan.to(last));
        Some(r)
    }

    // ----- sites ----------------------------------------------------------------

    /// A site. Like a cluster, its block is read even when its header is wrong.
    pub fn site(&mut self, stmt: &Stmt) -> Option<Site> {
        let header = header_name(stmt);
        if header.is_none() {
            self.err(missing_name(stmt));
        }
        self.extra_header(stmt, 1);
        if stmt.block.is_none() {
            self.err(missing_block(stmt));
            return None;
        }
        let (name, span) = header.clone().unwrap_or((String::new(), stmt.keyword.span));
        if header.is_some() {
            check_name(&mut self.diags, "site", &name, span, None);
        }
        let mut scope = HashMap::new();
        for s in stmt.children().iter().filter(|s| s.keyword.name == "let") {
            self.let_stmt(s, &mut scope);
        }
        self.vars.push(scope);
        self.once(
            stmt,
            &format!("site `{name}`"),
            &["store", "access", "images"],
        );
        let mut site = Site {
            name,
            hosts: Vec::new(),
            bridges: Vec::new(),
            store: "/var/lib/vocc".into(),
            access: SiteAccess::Local,
            images: None,
            origin: self.origin(span),
        };
        let mut host_spans: HashMap<String, Span> = HashMap::new();
        let mut bridge_spans: HashMap<String, Span> = HashMap::new();
        for s in stmt.children() {
            match s.keyword.name.as_str() {
                "host" => {
                    let hosts = self.hosts(s);
                    let mut twice: Vec<(String, Span, Span)> = Vec::new();
                    for h in hosts {
                        if let Some(prev) = host_spans.get(&h.name) {
                            twice.push((h.name.clone(), h.origin.span, *prev));
                        } else {
                            host_spans.insert(h.name.clone(), h.origin.span);
                            site.hosts.push(h);
                        }
                    }
                    // One diagnostic per `host` statement, however many names collide.
                    if let Some((name, span, prev)) = twice.first() {
                        let mut d = duplicate("host", name, *span, *prev);
                        if twice.len() > 1 {
                            d = d.with_hint(format!(
                                "{} more hosts of this range are defined before",
                                twice.len() - 1
                            ));
                        }
                        self.err(d);
                    }
                }
                "bridge" => {
                    let mut a = Args::new(s, &self.vars, &mut self.diags);
                    if !a.poisoned() {
                        self.bridge(&mut site, &mut a, &mut bridge_spans);
                    }
                    a.done(&mut self.diags);
                    self.no_block(s);
                }
                "access" => {
                    if let Some(access) = self.access(s) {
                        site.access = access;
                    }
                }
                "images" => site.images = self.images(s),
                "store" => {
                    let mut a = Args::new(s, &self.vars, &mut self.diags);
                    if !a.poisoned() {
                        if let Some((p, pspan)) =
                            a.host_path("store \"/var/lib/vocc\"", &mut self.diags)
                        {
                            // Domain definitions name images by this path: libvirt
                            // and xl need it absolute, and every host must agree.
                            if p.starts_with('/') {
                                site.store = p;
                            } else {
                                self.err(
                                    Diagnostic::error(pspan, format!("store `{p}` is not an absolute path"))
                                        .with_label("relative path")
                                        .with_hint("hosts find their images by this path: write it from `/`, as in `store \"/var/lib/vocc\"`"),
                                );
                            }
                        }
                    }
                    a.done(&mut self.diags);
                    self.no_block(s);
                }
                _ => {}
            }
        }
        self.vars.pop();
        if let SiteAccess::Ssh { origin, .. } = &site.access {
            let access = origin.span;
            for h in site.hosts.iter().filter(|h| h.address.is_none()) {
                self.diags.push(
                    Diagnostic::error(
                        h.origin.span,
                        format!(
                            "host `{}` has no `address`, which `access ssh` needs",
                            h.name
                        ),
                    )
                    .with_label("no address")
                    .with_secondary(access, "vocc reaches the hosts over SSH")
                    .with_hint(format!(
                        "give it one: `host {} {{ address 10.0.0.1; … }}`",
                        h.name
                    )),
                );
            }
        }
        if let Some(server) = &site.images {
            self.check_images(server, &site);
        }
        if !stmt.children().iter().any(|s| s.keyword.name == "host") {
            self.err(
                Diagnostic::error(span, format!("site `{}` has no hosts", site.name))
                    .with_label("no `host`")
                    .with_hint("add `host NAME { cpu 2; memory 4G; disk 40G }`"),
            );
        }
        header.map(|_| site)
    }

    /// `bridge NETWORK BRIDGE`
    fn bridge(&mut self, site: &mut Site, a: &mut Args, spans: &mut HashMap<String, Span>) {
        let example = "bridge private xenbr1";
        let Some((n, nspan)) = a.name("a network name", example, &mut self.diags) else {
            return;
        };
        let Some((b, bspan)) = a.name("a bridge name", example, &mut self.diags) else {
            return;
        };
        if b.len() > 15
            || !b
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
        {
            self.err(
                Diagnostic::error(bspan, format!("`{b}` is not a valid bridge name"))
                    .with_label("not an interface name")
                    .with_hint("use at most 15 letters, digits, `_`, `.` or `-`, as in `xenbr0`"),
            );
        } else if let Some(prev) = spans.get(&n) {
            self.err(
                Diagnostic::error(nspan, format!("network `{n}` has two bridges"))
                    .with_label("second bridge")
                    .with_secondary(*prev, "first bridge here")
                    .with_hint("give each network one bridge"),
            );
        } else {
            spans.insert(n.clone(), nspan);
            site.bridges.push((n, b));
        }
    }

    fn hosts(&mut self, stmt: &Stmt) -> Vec<Host> {
        let names: Vec<(String, Span)> = match stmt.args.first().map(|v| (&v.kind, v.span)) {
            Some((ValueKind::Word(n) | ValueKind::Str(n), span)) => vec![(n.clone(), span)],
            Some((
                ValueKind::Range {
                    prefix,
                    lo,
                    hi,
                    width,
                    suffix,
                },
                span,
            )) => {
                if hi.saturating_sub(*lo) >= 100_000 {
                    self.err(
                        Diagnostic::error(span, "host range is too large")
                            .with_label("more than 100000 hosts")
                            .with_hint("a site lists at most 100000 hosts in one range"),
                    );
                    return Vec::new();
                }
                (*lo..=*hi)
                    .map(|i| (format!("{prefix}{i:0width$}{suffix}", width = *width), span))
                    .collect()
            }
            _ => {
                self.err(missing_name(stmt));
                return Vec::new();
            }
        };
        self.extra_header(stmt, 1);
        let label = stmt
            .args
            .first()
            .map_or_else(String::new, |v| self.map.slice(v.span).to_string());
        let Some(first) = names.first().cloned() else {
            return Vec::new();
        };
        if let Some((n, sp)) = names.iter().find(|(n, _)| !valid_hostname(n)) {
            self.err(
                Diagnostic::error(*sp, format!("host `{n}` is not a valid host name"))
                    .with_label("not a host name")
                    .with_hint(format!(
                        "use lowercase letters, digits and `-`{}",
                        example_name(n).map_or(String::new(), |e| format!(", as in `{e}`"))
                    )),
            );
            return Vec::new();
        }
        if stmt.block.is_none() {
            self.err(missing_block(stmt));
            return Vec::new();
        }
        self.once(
            stmt,
            &format!("host `{label}`"),
            &[
                "cpu",
                "memory",
                "disk",
                "hypervisor",
                "reserve",
                "overcommit",
                "address",
            ],
        );
        let mut cpu = None;
        let mut memory = None;
        let mut disk = None;
        let mut reserve: Option<(u64, Span)> = None;
        let mut overcommit = 1;
        let mut hypervisors = vec![Hypervisor::Kvm];
        let mut address = None;
        for s in stmt.children() {
            if !Context::Host.is_keyword(&s.keyword.name) {
                continue;
            }
            self.no_block(s);
            let mut a = Args::new(s, &self.vars, &mut self.diags);
            if a.poisoned() {
                continue;
            }
            match s.keyword.name.as_str() {
                "cpu" => {
                    if let Some((n, sp)) = a.int("cpu 2", &mut self.diags) {
                        if !(1..=4096).contains(&n) {
                            self.err(
                                Diagnostic::error(sp, format!("`cpu {n}` is out of range"))
                                    .with_label("not between 1 and 4096")
                                    .with_hint("give the host's CPU count, from 1 to 4096"),
                            );
                        } else {
                            cpu = Some(n as u32);
                        }
                    }
                }
                "overcommit" => {
                    if let Some((n, sp)) = a.int("overcommit 4", &mut self.diags) {
                        if !(1..=64).contains(&n) {
                            self.err(
                                Diagnostic::error(sp, format!("`overcommit {n}` is out of range"))
                                    .with_label("not between 1 and 64")
                                    .with_hint(
                                        "give the virtual CPUs per physical CPU, from 1 to 64",
                                    ),
                            );
                        } else {
                            overcommit = n as u32;
                        }
                    }
                }
                "memory" => memory = a.size("memory 4G", &mut self.diags).map(|x| x.0),
                "disk" => disk = a.size("disk 40G", &mut self.diags).map(|x| x.0),
                "reserve" => reserve = a.size("reserve 96M", &mut self.diags).or(reserve),
                "hypervisor" => {
                    if let Some(hs) = self.host_hypervisors(&mut a) {
                        hypervisors = hs;
                    }
                }
                "address" => {
                    if names.len() > 1 {
                        self.err(
                            Diagnostic::error(
                                s.span,
                                format!(
                                    "`address` names one host, but `{label}` is a range of {} hosts",
                                    names.len()
                                ),
                            )
                            .with_label("one address for several hosts")
                            .with_hint("give each host its own `host` block with its address"),
                        );
                        a.skip_rest();
                    } else {
                        address = self.host_address(&mut a);
                    }
                }
                _ => {}
            }
            a.done(&mut self.diags);
        }
        let has = |kw: &str| stmt.children().iter().any(|s| s.keyword.name == kw);
        let missing: Vec<&str> = [
            ("cpu", "cpu 2"),
            ("memory", "memory 4G"),
            ("disk", "disk 40G"),
        ]
        .iter()
        .filter(|(kw, _)| !has(kw))
        .map(|(_, example)| *example)
        .collect();
        if !missing.is_empty() {
            let keys: Vec<String> = missing
                .iter()
                .map(|m| format!("`{}`", m.split(' ').next().unwrap_or(m)))
                .collect();
            let examples: Vec<String> = missing.iter().map(|m| format!("`{m}`")).collect();
            self.err(
                Diagnostic::error(
                    first.1,
                    format!("host `{label}` does not say its {}", and(&keys)),
                )
                .with_label(format!("missing {}", and(&keys)))
                .with_hint(format!("add {}", and(&examples))),
            );
            return Vec::new();
        }
        let (Some(cpu), Some(memory), Some(disk)) = (cpu, memory, disk) else {
            // A value was given but wrong; that was reported.
            return Vec::new();
        };
        let reserve = match reserve {
            Some((r, sp)) if r >= memory => {
                self.err(
                    Diagnostic::error(
                        sp,
                        format!(
                            "host `{label}` reserves {} of its {} of memory",
                            size_text(r),
                            size_text(memory)
                        ),
                    )
                    .with_label("nothing left for guests")
                    .with_hint(
                        "make `reserve` smaller than `memory`: guests get `memory` minus `reserve`",
                    ),
                );
                return Vec::new();
            }
            Some((r, _)) => r,
            None => 0,
        };
        names
            .into_iter()
            .map(|(name, span)| Host {
                name,
                cpu,
                overcommit,
                memory,
                disk,
                reserve,
                hypervisors: hypervisors.clone(),
                address: address.clone(),
                origin: self.origin(span),
            })
            .collect()
    }

    /// `hypervisor xen`, `hypervisor [kvm xen]`
    fn host_hypervisors(&mut self, a: &mut Args) -> Option<Vec<Hypervisor>> {
        let example = "hypervisor [kvm xen]";
        let v = a.next();
        let items: Vec<Value> = match &v {
            Some(Value {
                kind: ValueKind::List(items),
                span,
            }) => {
                if items.is_empty() {
                    self.err(
                        Diagnostic::error(*span, "`hypervisor` needs at least one hypervisor")
                            .with_label("empty list")
                            .with_hint(format!("write it as in `{example}`")),
                    );
                    return None;
                }
                items.clone()
            }
            Some(v) => vec![v.clone()],
            None => {
                self.diags.push(a.expected(None, "a hypervisor", example));
                return None;
            }
        };
        let mut hs = Vec::new();
        for it in &items {
            match &it.kind {
                ValueKind::Word(w) if w == "xen" || w == "kvm" => hs.push(hypervisor(w)),
                ValueKind::Word(w) | ValueKind::Str(w) => {
                    self.err(unknown_value(w, "hypervisor", it.span, &["xen", "kvm"]));
                    return None;
                }
                _ => {
                    self.diags
                        .push(a.expected(Some(it), "`xen` or `kvm`", example));
                    return None;
                }
            }
        }
        Some(hs)
    }

    /// `address NAME-or-IP`: how the host is reached.
    fn host_address(&mut self, a: &mut Args) -> Option<String> {
        let example = "address \"c01.example.org\"";
        let v = a.next();
        match v.as_ref().map(|v| &v.kind) {
            Some(ValueKind::Word(s) | ValueKind::Str(s)) if !s.is_empty() => Some(s.clone()),
            Some(ValueKind::Ip(ip)) => Some(ip.to_string()),
            _ => {
                self.diags
                    .push(a.expected(v.as_ref(), "a host name or address", example));
                None
            }
        }
    }

    fn extra_header(&mut self, stmt: &Stmt, n: usize) {
        if let Some(v) = stmt.args.get(n) {
            let kw = &stmt.keyword.name;
            self.err(
                Diagnostic::error(
                    v.span,
                    format!("unexpected `{}` after the {kw} name", shown(v)),
                )
                .with_label("not part of the header")
                .with_hint(format!("write `{kw} NAME {{ … }}`")),
            );
        }
    }

    fn no_block(&mut self, s: &Stmt) {
        if let Some(b) = &s.block {
            self.err(unexpected_block(s, b.span));
        }
    }
}

/// The kinds of shared definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Network,
    Layer,
    Role,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Network => "network",
            Kind::Layer => "layer",
            Kind::Role => "role",
        }
    }
}

pub fn hypervisor(h: &str) -> Hypervisor {
    if h == "xen" {
        Hypervisor::Xen
    } else {
        Hypervisor::Kvm
    }
}

/// The name after a block keyword: `cluster osg {`.
pub fn header_name(stmt: &Stmt) -> Option<(String, Span)> {
    match stmt.args.first().map(|v| (&v.kind, v.span)) {
        Some((ValueKind::Word(n) | ValueKind::Str(n), span)) if !n.is_empty() => {
            Some((n.clone(), span))
        }
        _ => None,
    }
}

pub fn missing_name(stmt: &Stmt) -> Diagnostic {
    let kw = &stmt.keyword.name;
    let hint = format!("write `{kw} NAME {{ … }}`");
    match stmt.args.first() {
        Some(v) => {
            let found = match &v.kind {
                ValueKind::Str(s) | ValueKind::Word(s) if s.is_empty() => "an empty string",
                k => k.describe(),
            };
            Diagnostic::error(v.span, format!("`{kw}` needs a name, not {found}"))
                .with_label("expected a name")
                .with_hint(hint)
        }
        None => {
            let at = stmt.keyword.span;
            Diagnostic::error(
                Span {
                    start: at.end,
                    ..at
                },
                format!("`{kw}` needs a name"),
            )
            .with_label("expected a name here")
            .with_hint(hint)
        }
    }
}

/// A block statement written without its block: the caret goes where `{` is missing.
pub fn missing_block(stmt: &Stmt) -> Diagnostic {
    let kw = &stmt.keyword.name;
    let name = header_name(stmt).map_or_else(|| "NAME".into(), |(n, _)| n);
    let end = stmt.args.last().map_or(stmt.keyword.span, |v| v.span);
    Diagnostic::error(
        Span {
            start: end.end,
            ..end
        },
        format!("`{kw} {name}` needs a block"),
    )
    .with_label("expected `{` here")
    .with_hint(format!(
        "write `{kw} {name} {{ … }}`; the `{{` may stand on the next line"
    ))
}

pub fn unexpected_block(stmt: &Stmt, span: Span) -> Diagnostic {
    Diagnostic::error(span, format!("`{}` takes no block", stmt.keyword.name))
        .with_label("unexpected block")
        .with_hint("remove the `{ … }`")
}

pub fn duplicate(kind: &str, name: &str, span: Span, first: Span) -> Diagnostic {
    Diagnostic::error(span, format!("{kind} `{name}` is defined twice"))
        .with_label("second definition")
        .with_secondary(first, "first defined here")
        .with_hint(format!("rename one of them or remove the second `{kind}`"))
}

pub fn unknown<'c>(
    kind: &str,
    name: &str,
    span: Span,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Diagnostic {
    let cands: Vec<&str> = candidates.into_iter().collect();
    let d = Diagnostic::error(span, format!("unknown {kind} `{name}`"))
        .with_label(format!("no such {kind}"));
    match vocc_dsl::diag::suggest(name, cands.iter().copied()) {
        Some(s) => d.with_hint(format!("did you mean `{s}`?")),
        None if cands.is_empty() => d.with_hint(format!("define it with `{kind} {name} {{ … }}`")),
        None => d.with_hint(format!(
            "define it with `{kind} {name} {{ … }}`, or use {}{}",
            if cands.len() > 1 { "one of " } else { "" },
            one_of(&cands)
        )),
    }
}

/// An address of a network's `what` (`gateway`, `nic`) that is not in its subnet.
pub fn outside(span: Span, ip: Ipv4Addr, net: &Network, what: &str) -> Diagnostic {
    Diagnostic::error(
        span,
        format!(
            "{what} address `{ip}` is outside network `{}` ({})",
            net.name,
            net.cidr()
        ),
    )
    .with_label("not in the subnet")
    .with_hint(format!("use an address of the subnet: {}", host_range(net)))
}

/// "`192.0.2.1` to `192.0.2.14`": the host addresses of a network.
pub fn host_range(net: &Network) -> String {
    let base = u64::from(u32::from(net.subnet));
    let size = 1u64 << (32 - u32::from(net.prefix.min(32)));
    let at = |i: u64| Ipv4Addr::from(u32::try_from(base + i).unwrap_or(u32::MAX));
    if size < 4 {
        return format!("`{}`", net.cidr());
    }
    format!("`{}` to `{}`", at(1), at(size - 2))
}

/// "network" or "broadcast" when `ip` is one of those of `net`.
pub fn edge_name(net: &Network, ip: Ipv4Addr) -> Option<&'static str> {
    let mask = u32::from(net.netmask());
    let host = u32::from(ip) & !mask;
    if host == 0 {
        Some("network")
    } else if host == !mask {
        Some("broadcast")
    } else {
        None
    }
}

pub(crate) fn is_var_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// What a subnet overlapping an address range no cluster can use is: "the loopback
/// range" and so on.
fn special_range(ip: Ipv4Addr, prefix: u8) -> Option<&'static str> {
    const SPECIAL: [(Ipv4Addr, u8, &str); 5] = [
        (
            Ipv4Addr::new(0, 0, 0, 0),
            8,
            "in `0.0.0.0/8`, which means \"this network\"",
        ),
        (
            Ipv4Addr::new(127, 0, 0, 0),
            8,
            "in the loopback range `127.0.0.0/8`",
        ),
        (
            Ipv4Addr::new(169, 254, 0, 0),
            16,
            "in the link-local range `169.254.0.0/16`",
        ),
        (
            Ipv4Addr::new(224, 0, 0, 0),
            4,
            "in the multicast range `224.0.0.0/4`",
        ),
        (
            Ipv4Addr::new(240, 0, 0, 0),
            4,
            "in the reserved range `240.0.0.0/4`",
        ),
    ];
    let mask = |p: u8| u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
    SPECIAL.iter().find_map(|(net, p, what)| {
        // Overlap: the shorter prefix's mask agrees on both.
        let m = mask(prefix.min(*p));
        (u32::from(ip) & m == u32::from(*net) & m).then_some(*what)
    })
}

/// An RFC 1123 host name label.
pub fn valid_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// What is wrong with a sha256 digest, if anything.
fn digest_problem(h: &str) -> Option<String> {
    if let Some(c) = h.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Some(format!("`{c}` is not a hexadecimal digit"));
    }
    (h.len() != 64).then(|| format!("{} digits instead of 64", h.len()))
}

/// Why `s` is not a Debian package name (optionally `=VERSION`), as a hint.
fn package_problem(s: &str) -> Option<String> {
    let name = s.split('=').next().unwrap_or("");
    let ok_byte = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b);
    if name.bytes().any(|b| b.is_ascii_uppercase())
        && name.to_ascii_lowercase().bytes().all(ok_byte)
    {
        return Some(format!(
            "Debian package names are lowercase: `{}`",
            s.replacen(name, &name.to_ascii_lowercase(), 1)
        ));
    }
    if name.len() < 2
        || !name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        || !name.bytes().all(ok_byte)
        || s.split_once('=')
            .is_some_and(|(_, v)| !crate::sources::version_ok(v))
    {
        return Some(
            "a Debian package name has at least two characters: lowercase letters, digits and \
             `+-.`, starting with a letter or digit (optionally `=VERSION` after it)"
                .to_string(),
        );
    }
    None
}

/// The longest a cluster's DNS domain may be: a node's name `<host name>.<domain>`
/// must fit in DNS's 253 characters with a host name of up to 63.
pub const DOMAIN_MAX: usize = 253 - 64;

/// The longest a cluster name may be: node ids `<cluster>-<host name>` must stay
/// usable as host names.
pub const CLUSTER_NAME_MAX: usize = 40;

/// `name` made into a host name label, if that leaves anything: lowercase, accented
/// Latin letters without their accents (`wörker` → `worker`), other characters as `-`
/// (one for a run of them), at most 63 characters.
fn example_name(name: &str) -> Option<String> {
    let mut fixed = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        let mut ascii = [0u8; 4];
        let c = if c.is_ascii_alphanumeric() {
            Some(&*c.encode_utf8(&mut ascii))
        } else {
            unaccented(c)
        };
        match c {
            Some(c) => fixed.push_str(c),
            None if !fixed.ends_with('-') => fixed.push('-'),
            None => {}
        }
    }
    let mut fixed: String = fixed.trim_matches('-').chars().take(63).collect();
    while fixed.ends_with('-') {
        fixed.pop();
    }
    (!fixed.is_empty() && fixed != name && valid_hostname(&fixed)).then_some(fixed)
}

/// The ASCII letters a lowercase Latin letter with an accent (or a ligature) is
/// written with, if any.
fn unaccented(c: char) -> Option<&'static str> {
    const TABLE: [(&str, &str); 17] = [
        ("àáâãäåāăą", "a"),
        ("çćĉċč", "c"),
        ("ďđ", "d"),
        ("èéêëēĕėęě", "e"),
        ("ĝğġģ", "g"),
        ("ìíîïĩīĭįı", "i"),
        ("ĺļľł", "l"),
        ("ñńņňŉ", "n"),
        ("òóôõöøōŏő", "o"),
        ("ŕŗř", "r"),
        ("śŝşš", "s"),
        ("ţťŧ", "t"),
        ("ùúûüũūŭůűų", "u"),
        ("ýÿŷ", "y"),
        ("žźż", "z"),
        ("œ", "oe"),
        ("æ", "ae"),
    ];
    if c == 'ß' {
        return Some("ss");
    }
    TABLE
        .iter()
        .find(|(from, _)| from.contains(c))
        .map(|(_, to)| *to)
}

/// Names become host names, file names and config keys: keep them plain. With
/// `host_max`, the name must be a host name label of at most that length.
pub fn check_name(
    diags: &mut Vec<Diagnostic>,
    kind: &str,
    name: &str,
    span: Span,
    host_max: Option<usize>,
) {
    if let Some(max) = host_max {
        // The characters first, so that a long name with an uppercase letter is told
        // about the letter.
        let label = name.get(..63.min(name.len())).unwrap_or(name);
        if !valid_hostname(label) || name.ends_with('-') {
            let example = example_name(name).map_or(String::new(), |e| format!(", as in `{e}`"));
            diags.push(
                Diagnostic::error(
                    span,
                    format!("{kind} name `{name}` is not a valid host name"),
                )
                .with_label("node names are made from it")
                .with_hint(format!("use lowercase letters, digits and `-`{example}")),
            );
        } else if name.len() > max {
            diags.push(
                Diagnostic::error(
                    span,
                    format!("{kind} name `{name}` is longer than {max} characters"),
                )
                .with_label(format!("{} characters", name.len()))
                .with_hint(format!(
                    "node ids are `<{kind}>-<host name>` and must stay short host names: use at \
                     most {max} characters"
                )),
            );
        }
    } else if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        || name.starts_with('.')
        || name.starts_with('-')
    {
        diags.push(
            Diagnostic::error(
                span,
                format!("{kind} name `{name}` has characters vocc cannot use"),
            )
            .with_label("names become file names and config keys")
            .with_hint("use letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"),
        );
    } else if name.len() > 128 {
        // The plan's labels (file names on every host) stop there.
        diags.push(
            Diagnostic::error(
                span,
                format!("{kind} name `{name}` is longer than 128 characters"),
            )
            .with_label(format!("{} characters", name.len()))
            .with_hint("names become file names on every host: use at most 128 characters"),
        );
    }
}

/// "`a`, `b` and `c`"
pub fn and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}
