//! Resolving: interpret the statements of loaded files into model elements —
//! variables, definitions shared through `import`, role inheritance, defaults — and
//! report every statement that does not make sense on its own.
//!
//! Cross-element rules (mounts against exports, schedulers, addresses) live in
//! `check` and `alloc`; this module only builds.

use crate::args::{one_of, Args, Vars};
use crate::load::Loaded;
use crate::model::*;
use std::collections::{BTreeMap, HashMap};
use vocc_dsl::{Diagnostic, SourceMap, Span, Stmt, Value, ValueKind};

/// Definitions visible to every cluster: the top-level `network`, `layer` and `role`
/// statements of the main file and of everything it imports.
#[derive(Default)]
pub struct Defs<'a> {
    pub networks: BTreeMap<String, &'a Stmt>,
    pub layers: BTreeMap<String, &'a Stmt>,
    pub roles: BTreeMap<String, &'a Stmt>,
}

pub struct Resolver<'a> {
    pub map: &'a SourceMap,
    pub diags: Vec<Diagnostic>,
    pub vars: Vars,
    pub defs: Defs<'a>,
}

/// What resolving the main file produced.
pub struct Resolved {
    pub clusters: Vec<Cluster>,
    pub sites: Vec<Site>,
}

const ROLE_NIC_METHODS: &[&str] = &["dhcp", "pool", "static", "external"];

impl<'a> Resolver<'a> {
    pub fn new(map: &'a SourceMap, vars: Vars) -> Resolver<'a> {
        Resolver {
            map,
            diags: Vec::new(),
            vars,
            defs: Defs::default(),
        }
    }

    fn origin(&self, span: Span) -> Origin {
        Origin::new(self.map, span)
    }

    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
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
                        .with_hint("import files hold shared `let`, `network`, `layer` and `role` definitions; move this into the main file"),
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
                            if let Some(prev) = seen.insert(c.name.clone(), c.origin.span) {
                                self.err(duplicate("cluster", &c.name, c.origin.span, prev));
                            } else {
                                out.clusters.push(c);
                            }
                        }
                    }
                    "site" => {
                        if let Some(s) = self.site(stmt) {
                            out.sites.push(s);
                        }
                    }
                    _ => {}
                }
            }
        }
        self.vars.pop();
        out
    }

    fn let_stmt(&mut self, stmt: &Stmt, scope: &mut HashMap<String, Value>) {
        let ok = match stmt.args.as_slice() {
            [name, eq, value] => match (&name.kind, &eq.kind) {
                (ValueKind::Word(n), ValueKind::Eq) if is_var_name(n) => {
                    if scope.contains_key(n) {
                        self.err(
                            Diagnostic::error(
                                name.span,
                                format!("variable `{n}` is defined twice"),
                            )
                            .with_hint("remove one of the definitions"),
                        );
                    }
                    scope.insert(n.clone(), value.clone());
                    true
                }
                _ => false,
            },
            _ => false,
        };
        if !ok {
            let span = stmt.args.first().map_or(stmt.keyword.span, |v| v.span);
            self.err(
                Diagnostic::error(span, "`let` needs a name, `=` and a value")
                    .with_hint("write `let workers = 8` (spaces around `=`)"),
            );
        }
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
        if let Some(prev) = table.insert(name.clone(), stmt) {
            let prev_span = header_name(prev).map_or(prev.span, |(_, s)| s);
            self.diags
                .push(duplicate(kind.name(), &name, span, prev_span));
        }
    }

    // ----- clusters -------------------------------------------------------------

    fn cluster(&mut self, stmt: &'a Stmt) -> Option<Cluster> {
        let name = header_name(stmt);
        if name.is_none() {
            self.err(missing_name(stmt));
        }
        self.extra_header(stmt, 1);
        if stmt.block.is_none() {
            self.err(missing_block(stmt));
            return None;
        }
        let (name, name_span) = name?;
        check_name(&mut self.diags, "cluster", &name, name_span, true);

        let mut scope = HashMap::new();
        for s in stmt.children().iter().filter(|s| s.keyword.name == "let") {
            self.let_stmt(s, &mut scope);
        }
        self.vars.push(scope);

        let mut cluster = Cluster {
            name: name.clone(),
            vo: name.clone(),
            hypervisor: Hypervisor::Kvm,
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
        for s in stmt.children() {
            match s.keyword.name.as_str() {
                "vo" => {
                    let mut a = Args::new(s, &self.vars, &mut self.diags);
                    if let Some((vo, _)) = a.name("a VO name", "vo \"osg\"", &mut self.diags) {
                        cluster.vo = vo;
                    }
                    a.done(&mut self.diags);
                }
                "domain" => {
                    let mut a = Args::new(s, &self.vars, &mut self.diags);
                    if let Some((d, span)) = a.name(
                        "a DNS domain",
                        "domain \"osg.example.org\"",
                        &mut self.diags,
                    ) {
                        if d.split('.').all(valid_hostname) {
                            cluster.domain = d;
                        } else {
                            self.err(
                                Diagnostic::error(span, format!("`{d}` is not a valid DNS domain"))
                                    .with_hint(
                                        "use dot-separated labels of letters, digits and `-`",
                                    ),
                            );
                        }
                    }
                    a.done(&mut self.diags);
                }
                "hypervisor" => {
                    let mut a = Args::new(s, &self.vars, &mut self.diags);
                    if let Some((h, _)) =
                        a.choice(&["xen", "kvm"], "hypervisor kvm", &mut self.diags)
                    {
                        cluster.hypervisor = hypervisor(h);
                    }
                    a.done(&mut self.diags);
                }
                "network" => {
                    if let Some(n) = self.network(s) {
                        if let Some(prev) = cluster.networks.iter().find(|p| p.name == n.name) {
                            self.diags.push(duplicate(
                                "network",
                                &n.name,
                                n.origin.span,
                                prev.origin.span,
                            ));
                        } else {
                            cluster.networks.push(n);
                        }
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
                    Some((n, span)) => {
                        if let Some(prev) = local_roles.insert(n.clone(), s) {
                            let prev_span = header_name(prev).map_or(prev.span, |(_, s)| s);
                            self.diags.push(duplicate("role", &n, span, prev_span));
                        }
                    }
                    None => self.err(missing_name(s)),
                },
                "queue" | "partition" => {
                    if let Some(q) = self.queue(s) {
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
                }
                _ => {}
            }
        }
        // Roles in declaration order; inheritance may reach cluster roles and shared ones.
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
            if let Some(role) = self.role(s, &local_roles) {
                cluster.roles.push(role);
            }
        }
        self.pull_shared(&mut cluster);
        self.vars.pop();
        crate::check::scheduler(&mut self.diags, &mut cluster, queues, stmt);
        Some(cluster)
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
            if cluster.network(&n).is_none() {
                if let Some(stmt) = self.defs.networks.get(&n).copied() {
                    if let Some(net) = self.network(stmt) {
                        cluster.networks.push(net);
                    }
                }
            }
        }
        for l in layers {
            if cluster.layer(&l).is_none() {
                if let Some(stmt) = self.defs.layers.get(&l).copied() {
                    if let Some(layer) = self.layer(stmt) {
                        cluster.layers.push(layer);
                    }
                }
            }
        }
    }

    fn queue(&mut self, s: &Stmt) -> Option<Queue> {
        let mut a = Args::new(s, &self.vars, &mut self.diags);
        let kw = s.keyword.name.clone();
        let (name, span) = a.name(
            &format!("a {kw} name"),
            &format!("{kw} osg for \"osg\" default"),
            &mut self.diags,
        )?;
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
                    if let Some((vo, _)) =
                        a.name("a VO name", "queue bio for \"biomed\"", &mut self.diags)
                    {
                        q.vo = Some(vo);
                    }
                }
                _ => self.diags.push(a.unexpected(&v, &["for", "default"])),
            }
        }
        if let Some(b) = &s.block {
            self.err(unexpected_block(s, b.span));
        }
        Some(q)
    }

    // ----- networks and layers --------------------------------------------------

    pub fn network(&mut self, stmt: &Stmt) -> Option<Network> {
        let (name, span) = header_name(stmt)?;
        self.extra_header(stmt, 1);
        check_name(&mut self.diags, "network", &name, span, false);
        if stmt.block.is_none() {
            self.err(missing_block(stmt));
            return None;
        }
        let mut subnet: Option<(std::net::Ipv4Addr, u8)> = None;
        let mut net = Network {
            name,
            subnet: std::net::Ipv4Addr::UNSPECIFIED,
            prefix: 0,
            assign: Assign::Pool,
            gateway: None,
            dns: Vec::new(),
            uplink: false,
            origin: self.origin(span),
        };
        let mut gateway_span = None;
        let mut dns_spans = Vec::new();
        for s in stmt.children() {
            let mut a = Args::new(s, &self.vars, &mut self.diags);
            match s.keyword.name.as_str() {
                "subnet" => {
                    let v = a.next();
                    match v.as_ref().map(|v| &v.kind) {
                        Some(ValueKind::Cidr(ip, p)) => {
                            let net_addr = u32::from(*ip)
                                & u32::MAX.checked_shl(32 - u32::from(*p)).unwrap_or(0);
                            if net_addr != u32::from(*ip) {
                                if let Some(v) = &v {
                                    self.diags.push(
                                        Diagnostic::error(
                                            v.span,
                                            format!("`{ip}/{p}` has host bits set"),
                                        )
                                        .with_hint(
                                            format!(
                                                "the network address is `{}/{p}`",
                                                std::net::Ipv4Addr::from(net_addr)
                                            ),
                                        ),
                                    );
                                }
                            } else if *p > 30 {
                                if let Some(v) = &v {
                                    self.diags.push(
                                        Diagnostic::error(
                                            v.span,
                                            format!("subnet `/{p}` is too small for a cluster"),
                                        )
                                        .with_hint("use a prefix of at most `/30`"),
                                    );
                                }
                            } else {
                                subnet = Some((*ip, *p));
                            }
                        }
                        _ => self.diags.push(a.expected(
                            v.as_ref(),
                            "a subnet",
                            "subnet 10.20.0.0/24",
                        )),
                    }
                }
                "assign" => {
                    if let Some((m, _)) = a.choice(
                        &["dhcp", "static", "pool", "external"],
                        "assign pool",
                        &mut self.diags,
                    ) {
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
                    while a.peek().is_some() {
                        if let Some((ip, sp)) = a.ip("dns 10.20.0.1", &mut self.diags) {
                            net.dns.push(ip);
                            dns_spans.push(sp);
                        }
                    }
                    if net.dns.is_empty() && dns_spans.is_empty() {
                        a.ip("dns 10.20.0.1", &mut self.diags);
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
            self.no_block(s);
        }
        let Some((ip, prefix)) = subnet else {
            if !stmt.children().iter().any(|s| s.keyword.name == "subnet") {
                self.err(
                    Diagnostic::error(span, format!("network `{}` has no subnet", net.name))
                        .with_hint("add `subnet 10.20.0.0/24` (any private IPv4 subnet)"),
                );
            }
            return None;
        };
        net.subnet = ip;
        net.prefix = prefix;
        if let (Some(g), Some(sp)) = (net.gateway, gateway_span) {
            if !net.contains(g) {
                self.err(outside(sp, g, &net));
            }
        }
        Some(net)
    }

    pub fn layer(&mut self, stmt: &Stmt) -> Option<Layer> {
        let (name, span) = header_name(stmt)?;
        self.extra_header(stmt, 1);
        check_name(&mut self.diags, "layer", &name, span, false);
        if stmt.block.is_none() {
            self.err(missing_block(stmt));
            return None;
        }
        let mut source: Option<LayerSource> = None;
        let mut sha: Option<(String, Span)> = None;
        let mut layer = Layer {
            name,
            source: LayerSource::Busybox,
            packages: Vec::new(),
            size: None,
            origin: self.origin(span),
        };
        for s in stmt.children() {
            let mut a = Args::new(s, &self.vars, &mut self.diags);
            match s.keyword.name.as_str() {
                "from" => {
                    let Some((kind, _)) = a.choice(
                        &["busybox", "debian", "image", "dir"],
                        "from debian \"bookworm\"",
                        &mut self.diags,
                    ) else {
                        a.done(&mut self.diags);
                        continue;
                    };
                    source = match kind {
                        "busybox" => Some(LayerSource::Busybox),
                        "debian" => a
                            .name(
                                "a Debian release",
                                "from debian \"bookworm\"",
                                &mut self.diags,
                            )
                            .map(|(suite, _)| LayerSource::Debian { suite }),
                        "image" => self
                            .host_path(&mut a, "from image \"base.qcow2\" sha256 \"…\"")
                            .map(|path| LayerSource::Image {
                                path,
                                sha256: String::new(),
                            }),
                        _ => self
                            .host_path(&mut a, "from dir \"layers/vdt\"")
                            .map(|path| LayerSource::Dir { path }),
                    };
                }
                "packages" => {
                    let v = a.next();
                    match v.as_ref().map(|v| &v.kind) {
                        Some(ValueKind::List(items)) => {
                            layer.packages.extend(self.package_list(items));
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
                    if let Some((h, sp)) =
                        a.name("a sha256 digest", "sha256 \"e3b0c442…\"", &mut self.diags)
                    {
                        if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
                            sha = Some((h.to_ascii_lowercase(), sp));
                        } else {
                            self.err(
                                Diagnostic::error(sp, "`sha256` needs 64 hexadecimal digits")
                                    .with_hint("copy the digest printed by `sha256sum IMAGE`"),
                            );
                        }
                    }
                }
                _ => {}
            }
            a.done(&mut self.diags);
            self.no_block(s);
        }
        match source {
            Some(LayerSource::Image { path, .. }) => match sha {
                Some((h, _)) => layer.source = LayerSource::Image { path, sha256: h },
                None => self.err(
                    Diagnostic::error(
                        span,
                        format!("layer `{}` is an image without `sha256`", layer.name),
                    )
                    .with_hint(
                        "pin the image: add `sha256 \"…\"` with the digest of the image file",
                    ),
                ),
            },
            Some(src) => {
                if let Some((_, sp)) = sha {
                    self.err(
                        Diagnostic::error(sp, "`sha256` pins only `from image` layers")
                            .with_hint("remove it; other layers are named by their content anyway"),
                    );
                }
                layer.source = src;
            }
            None => {
                if !stmt.children().iter().any(|s| s.keyword.name == "from") {
                    self.err(
                        Diagnostic::error(span, format!("layer `{}` has no `from`", layer.name))
                            .with_hint("say where it comes from: `from busybox`, `from debian \"bookworm\"`, `from image \"x.qcow2\"` or `from dir \"path\"`"),
                    );
                }
                return None;
            }
        }
        Some(layer)
    }

    fn host_path(&mut self, a: &mut Args, example: &str) -> Option<String> {
        let (p, span) = a
            .name("a path", example, &mut self.diags)
            .or_else(|| None)?;
        if p.chars().any(char::is_control) {
            // Reported by the control character pass.
            return None;
        }
        let _ = span;
        Some(p)
    }

    fn package_list(&mut self, items: &[Value]) -> Vec<String> {
        let mut out = Vec::new();
        for item in items {
            match &item.kind {
                ValueKind::Word(w) | ValueKind::Str(w) => {
                    if valid_package(w) {
                        out.push(w.clone());
                    } else if !w.is_empty() {
                        self.err(
                            Diagnostic::error(item.span, format!("`{w}` is not a valid package name"))
                                .with_hint("Debian package names use lowercase letters, digits and `+-.` (optionally `=VERSION`)"),
                        );
                    }
                }
                other => self.err(
                    Diagnostic::error(
                        item.span,
                        format!("expected a package name, not {}", other.describe()),
                    )
                    .with_hint("list package names, as in `[nfs-common munge]`"),
                ),
            }
        }
        out
    }

    // ----- roles ----------------------------------------------------------------

    /// The statements that make a role: its ancestors' first, then its own.
    fn role_stmts(
        &mut self,
        stmt: &'a Stmt,
        local: &BTreeMap<String, &'a Stmt>,
        chain: &mut Vec<String>,
    ) -> Vec<&'a Stmt> {
        let mut out = Vec::new();
        let Some((name, _)) = header_name(stmt) else {
            return out;
        };
        chain.push(name.clone());
        match stmt.args.get(1) {
            Some(Value {
                kind: ValueKind::Word(w),
                ..
            }) if w == "extends" => {
                match stmt.args.get(2).map(|v| (&v.kind, v.span)) {
                    Some((ValueKind::Word(parent) | ValueKind::Str(parent), pspan)) => {
                        if chain.contains(parent) {
                            let mut names: Vec<String> =
                                chain.iter().map(|c| format!("`{c}`")).collect();
                            names.push(format!("`{parent}`"));
                            self.err(
                                Diagnostic::error(
                                    pspan,
                                    format!("role inheritance cycle: {}", names.join(" extends ")),
                                )
                                .with_label("this closes the cycle")
                                .with_hint(
                                    "a role cannot extend itself, directly or through others",
                                ),
                            );
                        } else {
                            // A cluster role may extend a shared role of the same name.
                            let found = local
                                .get(parent)
                                .filter(|p| !std::ptr::eq(**p, stmt))
                                .or_else(|| self.defs.roles.get(parent))
                                .copied();
                            match found {
                                Some(p) => out = self.role_stmts(p, local, chain),
                                None => {
                                    let mut cands: Vec<&str> =
                                        local.keys().map(String::as_str).collect();
                                    cands.extend(self.defs.roles.keys().map(String::as_str));
                                    self.diags.push(unknown("role", parent, pspan, cands));
                                }
                            }
                        }
                        if let Some(extra) = stmt.args.get(3) {
                            self.err(
                                Diagnostic::error(extra.span, "a role extends one role")
                                    .with_hint("write `role NAME extends PARENT { … }`"),
                            );
                        }
                    }
                    _ => self.err(
                        Diagnostic::error(stmt.args[1].span, "`extends` needs a role name")
                            .with_hint("write `role worker extends base { … }`"),
                    ),
                }
            }
            Some(v) => self.err(
                Diagnostic::error(v.span, "unexpected value after the role name")
                    .with_hint("write `role NAME { … }` or `role NAME extends PARENT { … }`"),
            ),
            None => {}
        }
        chain.pop();
        out.extend(stmt.children());
        out
    }

    fn role(&mut self, stmt: &'a Stmt, local: &BTreeMap<String, &'a Stmt>) -> Option<Role> {
        let (name, span) = header_name(stmt)?;
        if stmt.block.is_none() {
            self.err(missing_block(stmt));
            return None;
        }
        let stmts = self.role_stmts(stmt, local, &mut Vec::new());
        let mut role = Role {
            name,
            count: 1,
            root: Vec::new(),
            packages: Vec::new(),
            disks: Vec::new(),
            cpu: 1,
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
        let mut root_seen = false;
        for s in stmts {
            self.role_stmt(&mut role, s, &mut root_seen);
            self.no_block(s);
        }
        if !root_seen {
            self.err(
                Diagnostic::error(span, format!("role `{}` has no root layer", role.name))
                    .with_hint("add `root LAYER`, e.g. a layer `from busybox`"),
            );
        }
        Some(role)
    }

    fn role_stmt(&mut self, role: &mut Role, s: &Stmt, root_seen: &mut bool) {
        let mut a = Args::new(s, &self.vars, &mut self.diags);
        match s.keyword.name.as_str() {
            "count" => {
                if let Some((n, sp)) = a.int("count 8", &mut self.diags) {
                    if n < 1 {
                        self.err(
                            Diagnostic::error(sp, "`count` must be at least 1")
                                .with_hint("remove the role if it should have no nodes"),
                        );
                    } else if n > 100_000 {
                        self.err(
                            Diagnostic::error(
                                sp,
                                format!("`count {n}` is more nodes than vocc plans for"),
                            )
                            .with_hint("use at most 100000 nodes per role"),
                        );
                    } else {
                        role.count = n as u32;
                    }
                }
            }
            "cpu" => {
                if let Some((n, sp)) = a.int("cpu 2", &mut self.diags) {
                    if n < 1 || n > 1024 {
                        self.err(
                            Diagnostic::error(sp, "`cpu` must be between 1 and 1024")
                                .with_hint("give the number of virtual CPUs, as in `cpu 2`"),
                        );
                    } else {
                        role.cpu = n as u32;
                    }
                }
            }
            "memory" => {
                if let Some((n, sp)) = a.size("memory 512M", &mut self.diags) {
                    if n < (16 << 20) {
                        self.err(
                            Diagnostic::error(sp, "`memory` must be at least 16M").with_hint(
                                "a guest needs some memory to boot, as in `memory 256M`",
                            ),
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
            "root" => {
                *root_seen = true;
                role.root.clear();
                role.packages.clear();
                let mut want_layer = true;
                while let Some(v) = a.next() {
                    match (&v.kind, want_layer) {
                        (ValueKind::Word(w) | ValueKind::Str(w), true) => {
                            if !w.is_empty() {
                                role.root.push(w.clone());
                            }
                            want_layer = false;
                        }
                        (ValueKind::List(items), true) => {
                            let pk = self.package_list(items);
                            role.packages.extend(pk);
                            want_layer = false;
                        }
                        (ValueKind::Plus, false) => want_layer = true,
                        _ => {
                            self.diags.push(
                                Diagnostic::error(v.span, format!("unexpected {} in `root`", v.kind.describe()))
                                    .with_hint("write layers and package lists joined by `+`, as in `root os + [slurmctld]`"),
                            );
                            break;
                        }
                    }
                }
                if role.root.is_empty() {
                    self.err(
                        Diagnostic::error(s.keyword.span, "`root` needs a layer")
                            .with_hint("write `root LAYER`, optionally `+ [packages]`"),
                    );
                } else if want_layer {
                    self.err(
                        Diagnostic::error(s.span, "`root` ends with `+`")
                            .with_hint("add a layer or a package list after `+`"),
                    );
                }
            }
            "disk" => {
                if let Some(d) = self.disk(&mut a) {
                    role.disks.retain(|x| x.at != d.at);
                    role.disks.push(d);
                }
            }
            "nic" => {
                if let Some(n) = self.nic(&mut a) {
                    role.nics.retain(|x| x.name != n.name);
                    role.nics.push(n);
                }
            }
            "export" => {
                if let Some((path, sp)) =
                    a.guest_path("export /home to private rw", &mut self.diags)
                {
                    if let Some(e) = self.export_clauses(&mut a, path, sp) {
                        role.exports.retain(|x| x.path != e.path);
                        role.exports.push(e);
                    }
                }
            }
            "mount" => {
                if let Some(m) = self.mount(&mut a) {
                    role.mounts.retain(|x| x.at != m.at);
                    role.mounts.push(m);
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
                while let Some(v) = a.next() {
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

    /// `disk LAYER at /PATH [ro|rw]`
    fn disk(&mut self, a: &mut Args) -> Option<Disk> {
        let (layer, lspan) = a.name("a layer", "disk vdt at /opt/vdt", &mut self.diags)?;
        let mut at: Option<(String, Span)> = None;
        let mut access = Access::Ro;
        while let Some(v) = a.next() {
            match &v.kind {
                ValueKind::Word(w) if w == "at" => {
                    at = a.guest_path("disk vdt at /opt/vdt", &mut self.diags);
                    at.as_ref()?;
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
                Diagnostic::error(lspan, format!("disk `{layer}` has no mount point")).with_hint(
                    format!("add `at /PATH`, as in `disk {layer} at /opt/{layer}`"),
                ),
            );
            return None;
        };
        Some(Disk {
            layer,
            at,
            access,
            origin: self.origin(lspan.to(at_span)),
        })
    }

    /// `export PATH [to] NETWORK [ro|rw] [no_root_squash]`
    fn export_clauses(&mut self, a: &mut Args, path: String, span: Span) -> Option<Export> {
        if matches!(a.peek().map(|v| &v.kind), Some(ValueKind::Word(w)) if w == "to") {
            a.next();
        }
        let (network, nspan) =
            a.name("a network", "export /home to private rw", &mut self.diags)?;
        let mut e = Export {
            path,
            network,
            access: Access::Ro,
            no_root_squash: false,
            origin: self.origin(span.to(nspan)),
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

    /// `mount ROLE:/PATH at /PATH [ro|rw]`
    fn mount(&mut self, a: &mut Args) -> Option<Mount> {
        let v = a.next();
        let (role, path, rspan) = match v.as_ref().map(|v| (&v.kind, v.span)) {
            Some((ValueKind::Ref { target, path }, span)) => {
                if let Some(d) = crate::args::check_guest_path(path, span) {
                    self.err(d);
                    return None;
                }
                (target.clone(), path.clone(), span)
            }
            _ => {
                self.diags.push(a.expected(
                    v.as_ref(),
                    "an export as `ROLE:/PATH`",
                    "mount head:/opt/vdt at /opt/vdt",
                ));
                return None;
            }
        };
        let mut at: Option<(String, Span)> = None;
        let mut access = None;
        while let Some(v) = a.next() {
            match &v.kind {
                ValueKind::Word(w) if w == "at" => {
                    at = a.guest_path("mount head:/opt/vdt at /opt/vdt", &mut self.diags);
                    at.as_ref()?;
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
        Some(Mount {
            role,
            path,
            at,
            access: access.unwrap_or(Access::Rw),
            network: String::new(),
            origin: self.origin(rspan.to(at_span)),
        })
    }

    /// `nic NAME NETWORK [dhcp|pool|static|external|ADDRESS]`
    fn nic(&mut self, a: &mut Args) -> Option<NicSpec> {
        let (name, span) = a.name("an interface name", "nic eth0 private", &mut self.diags)?;
        if name.len() > 15
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            self.err(
                Diagnostic::error(span, format!("`{name}` is not a valid interface name"))
                    .with_hint("use at most 15 letters, digits, `_`, `.` or `-`, as in `eth0`"),
            );
            return None;
        }
        let (network, nspan) = a.name("a network", "nic eth0 private", &mut self.diags)?;
        let mut nic = NicSpec {
            name,
            network,
            method: None,
            address: None,
            origin: self.origin(span.to(nspan)),
        };
        let mut method = None;
        if let Some(v) = a.next() {
            match &v.kind {
                ValueKind::Ip(ip) => {
                    method = Some(NicMethod::Static);
                    nic.address = Some(*ip);
                    nic.origin = self.origin(span.to(v.span));
                }
                ValueKind::Word(w) if ROLE_NIC_METHODS.contains(&w.as_str()) => {
                    method = Some(match w.as_str() {
                        "dhcp" => NicMethod::Dhcp,
                        "static" => NicMethod::Static,
                        "external" => NicMethod::External,
                        _ => NicMethod::Pool,
                    });
                    nic.origin = self.origin(span.to(v.span));
                    if w == "static" {
                        if let Some(Value {
                            kind: ValueKind::Ip(ip),
                            span: ipspan,
                        }) = a.peek().cloned()
                        {
                            a.next();
                            nic.address = Some(ip);
                            nic.origin = self.origin(span.to(ipspan));
                        }
                    }
                }
                _ => {
                    let mut exp: Vec<&str> = ROLE_NIC_METHODS.to_vec();
                    exp.push("an address");
                    self.diags.push(a.unexpected(&v, &exp));
                    return None;
                }
            }
        }
        nic.method = method;
        Some(nic)
    }

    /// `scheduler KIND (controller|compute|submit)+ [partition|queue NAME]*`
    fn sched_role(&mut self, a: &mut Args) -> Option<SchedRole> {
        let (kind, kspan) = a.choice(
            &["slurm", "pbs", "torque", "sge", "condor", "htcondor"],
            "scheduler slurm compute partition osg",
            &mut self.diags,
        )?;
        let kind = match kind {
            "slurm" => SchedulerKind::Slurm,
            "pbs" | "torque" => SchedulerKind::Pbs,
            "sge" => SchedulerKind::Sge,
            _ => SchedulerKind::Condor,
        };
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
        while let Some(v) = a.next() {
            last = v.span;
            match &v.kind {
                ValueKind::Word(w) if w == "controller" => r.controller = true,
                ValueKind::Word(w) if w == "compute" => r.compute = true,
                ValueKind::Word(w) if w == "submit" => r.submit = true,
                ValueKind::Word(w) if w == "partition" || w == "queue" => {
                    if let Some((q, qs)) = a.name(
                        "a queue name",
                        "scheduler slurm compute partition osg",
                        &mut self.diags,
                    ) {
                        r.queues.push(q);
                        r.queue_spans.push(qs);
                        last = qs;
                    }
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
                Diagnostic::error(kspan, "`scheduler` needs the node's part")
                    .with_hint("add `controller`, `compute` or `submit`"),
            );
            return None;
        }
        if !r.compute && !r.queues.is_empty() {
            self.err(
                Diagnostic::error(last, "only compute nodes serve a queue")
                    .with_hint("add `compute`, or remove the partition/queue"),
            );
        }
        r.origin = self.origin(kspan.to(last));
        Some(r)
    }

    // ----- sites ----------------------------------------------------------------

    pub fn site(&mut self, stmt: &Stmt) -> Option<Site> {
        let name = header_name(stmt);
        if name.is_none() {
            self.err(missing_name(stmt));
        }
        self.extra_header(stmt, 1);
        if stmt.block.is_none() {
            self.err(missing_block(stmt));
            return None;
        }
        let (name, span) = name?;
        check_name(&mut self.diags, "site", &name, span, false);
        let mut scope = HashMap::new();
        for s in stmt.children().iter().filter(|s| s.keyword.name == "let") {
            self.let_stmt(s, &mut scope);
        }
        self.vars.push(scope);
        let mut site = Site {
            name,
            hosts: Vec::new(),
            bridges: Vec::new(),
            store: "/var/lib/vocc".into(),
            origin: self.origin(span),
        };
        let mut host_spans: HashMap<String, Span> = HashMap::new();
        let mut bridge_spans: HashMap<String, Span> = HashMap::new();
        for s in stmt.children() {
            match s.keyword.name.as_str() {
                "host" => {
                    for h in self.hosts(s) {
                        if let Some(prev) = host_spans.insert(h.name.clone(), h.origin.span) {
                            self.diags
                                .push(duplicate("host", &h.name, h.origin.span, prev));
                        } else {
                            site.hosts.push(h);
                        }
                    }
                }
                "bridge" => {
                    let mut a = Args::new(s, &self.vars, &mut self.diags);
                    let net = a.name("a network name", "bridge private xenbr1", &mut self.diags);
                    let br = net.as_ref().and_then(|_| {
                        a.name("a bridge name", "bridge private xenbr1", &mut self.diags)
                    });
                    if let (Some((n, nspan)), Some((b, bspan))) = (net, br) {
                        if b.len() > 15
                            || !b
                                .bytes()
                                .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
                        {
                            self.err(
                                Diagnostic::error(
                                    bspan,
                                    format!("`{b}` is not a valid bridge name"),
                                )
                                .with_hint("use at most 15 letters, digits, `_`, `.` or `-`"),
                            );
                        } else if let Some(prev) = bridge_spans.insert(n.clone(), nspan) {
                            self.diags.push(
                                Diagnostic::error(nspan, format!("network `{n}` has two bridges"))
                                    .with_secondary(prev, "first bridge here")
                                    .with_hint("give each network one bridge"),
                            );
                        } else {
                            site.bridges.push((n, b));
                        }
                    }
                    a.done(&mut self.diags);
                    self.no_block(s);
                }
                "store" => {
                    let mut a = Args::new(s, &self.vars, &mut self.diags);
                    let v = a.next();
                    match v.as_ref().map(|v| &v.kind) {
                        Some(ValueKind::Path(p) | ValueKind::Str(p)) if !p.is_empty() => {
                            site.store = p.clone()
                        }
                        _ => self.diags.push(a.expected(
                            v.as_ref(),
                            "a directory",
                            "store \"/var/lib/vocc\"",
                        )),
                    }
                    a.done(&mut self.diags);
                    self.no_block(s);
                }
                _ => {}
            }
        }
        self.vars.pop();
        if site.hosts.is_empty() && !stmt.children().iter().any(|s| s.keyword.name == "host") {
            self.err(
                Diagnostic::error(span, format!("site `{}` has no hosts", site.name))
                    .with_hint("add `host NAME { cpu 2  memory 4G  disk 40G }`"),
            );
        }
        Some(site)
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
                if hi - lo >= 100_000 {
                    self.err(
                        Diagnostic::error(span, "host range is too large")
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
        let Some(first) = names.first() else {
            return Vec::new();
        };
        for (n, sp) in &names {
            if !valid_hostname(n) {
                self.err(
                    Diagnostic::error(*sp, format!("host name `{n}` is not a valid host name"))
                        .with_hint("use lowercase letters, digits and `-`"),
                );
                return Vec::new();
            }
        }
        if stmt.block.is_none() {
            self.err(missing_block(stmt));
            return Vec::new();
        }
        let mut cpu = None;
        let mut memory = None;
        let mut disk = None;
        let mut reserve = 0;
        let mut overcommit = 1;
        let mut hypervisors = vec![Hypervisor::Kvm];
        let mut address = None;
        for s in stmt.children() {
            let mut a = Args::new(s, &self.vars, &mut self.diags);
            match s.keyword.name.as_str() {
                "cpu" => {
                    if let Some((n, sp)) = a.int("cpu 2", &mut self.diags) {
                        if n == 0 || n > 4096 {
                            self.err(
                                Diagnostic::error(sp, "`cpu` must be between 1 and 4096")
                                    .with_hint("give the host's CPU count"),
                            );
                        } else {
                            cpu = Some(n as u32);
                        }
                    }
                }
                "overcommit" => {
                    if let Some((n, sp)) = a.int("overcommit 4", &mut self.diags) {
                        if n == 0 || n > 64 {
                            self.err(
                                Diagnostic::error(sp, "`overcommit` must be between 1 and 64")
                                    .with_hint("give virtual CPUs per physical CPU"),
                            );
                        } else {
                            overcommit = n as u32;
                        }
                    }
                }
                "memory" => memory = a.size("memory 4G", &mut self.diags).map(|x| x.0),
                "disk" => disk = a.size("disk 40G", &mut self.diags).map(|x| x.0),
                "reserve" => {
                    reserve = a
                        .size("reserve 96M", &mut self.diags)
                        .map_or(reserve, |x| x.0)
                }
                "hypervisor" => {
                    let v = a.next();
                    let items: Vec<Value> = match &v {
                        Some(Value {
                            kind: ValueKind::List(items),
                            ..
                        }) => items
                            .iter()
                            .map(|i| self.vars.subst(i, &mut self.diags))
                            .collect(),
                        Some(v) => vec![v.clone()],
                        None => Vec::new(),
                    };
                    let mut hs = Vec::new();
                    for it in &items {
                        match &it.kind {
                            ValueKind::Word(w) if w == "xen" || w == "kvm" => {
                                hs.push(hypervisor(w))
                            }
                            _ => self.diags.push(a.unexpected(it, &["xen", "kvm"])),
                        }
                    }
                    if items.is_empty() {
                        self.diags
                            .push(a.expected(None, "a hypervisor", "hypervisor xen"));
                    }
                    if !hs.is_empty() {
                        hypervisors = hs;
                    }
                }
                "address" => {
                    if names.len() > 1 {
                        self.err(
                            Diagnostic::error(s.span, "a host range cannot share one address")
                                .with_hint("give each host its own `host` block with its address"),
                        );
                        a.done(&mut self.diags);
                        continue;
                    }
                    address = a
                        .name(
                            "a host address",
                            "address \"c01.example.org\"",
                            &mut self.diags,
                        )
                        .map(|x| x.0)
                        .or_else(|| None);
                }
                _ => {}
            }
            a.done(&mut self.diags);
            self.no_block(s);
        }
        let label = self.map.slice(stmt.args[0].span).to_string();
        let mut missing = Vec::new();
        if cpu.is_none() {
            missing.push("cpu 2");
        }
        if memory.is_none() {
            missing.push("memory 4G");
        }
        if disk.is_none() {
            missing.push("disk 40G");
        }
        if !missing.is_empty() {
            self.err(
                Diagnostic::error(
                    first.1,
                    format!(
                        "host `{label}` does not say its {}",
                        missing
                            .iter()
                            .map(|m| format!("`{}`", m.split(' ').next().unwrap_or(m)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .with_hint(format!(
                    "add {}",
                    missing
                        .iter()
                        .map(|m| format!("`{m}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
            return Vec::new();
        }
        let (cpu, memory, disk) = (cpu.unwrap_or(1), memory.unwrap_or(0), disk.unwrap_or(0));
        if reserve >= memory {
            self.err(
                Diagnostic::error(first.1, format!("host `{label}` reserves all its memory"))
                    .with_hint("make `reserve` smaller than `memory`"),
            );
        }
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

    fn extra_header(&mut self, stmt: &Stmt, n: usize) {
        if let Some(v) = stmt.args.get(n) {
            self.err(
                Diagnostic::error(
                    v.span,
                    format!(
                        "unexpected {} after the {} name",
                        v.kind.describe(),
                        stmt.keyword.name
                    ),
                )
                .with_hint(format!("write `{} NAME {{ … }}`", stmt.keyword.name)),
            );
        }
    }

    fn no_block(&mut self, s: &Stmt) {
        if let Some(b) = &s.block {
            self.err(unexpected_block(s, b.span));
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
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
        Some((ValueKind::Word(n) | ValueKind::Str(n), span)) => Some((n.clone(), span)),
        _ => None,
    }
}

pub fn missing_name(stmt: &Stmt) -> Diagnostic {
    let kw = &stmt.keyword.name;
    let span = stmt.args.first().map_or(stmt.keyword.span, |v| v.span);
    Diagnostic::error(span, format!("`{kw}` needs a name"))
        .with_hint(format!("write `{kw} NAME {{ … }}`"))
}

pub fn missing_block(stmt: &Stmt) -> Diagnostic {
    let kw = &stmt.keyword.name;
    let name = header_name(stmt).map_or_else(|| "NAME".into(), |(n, _)| n);
    Diagnostic::error(stmt.span, format!("`{kw} {name}` needs a block"))
        .with_hint(format!("write `{kw} {name} {{ … }}`"))
}

pub fn unexpected_block(stmt: &Stmt, span: Span) -> Diagnostic {
    Diagnostic::error(span, format!("`{}` takes no block", stmt.keyword.name))
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
        None => d.with_hint(format!("known {kind}s: {}", one_of(&cands))),
    }
}

pub fn outside(span: Span, ip: std::net::Ipv4Addr, net: &Network) -> Diagnostic {
    Diagnostic::error(
        span,
        format!(
            "address `{ip}` is outside network `{}` ({})",
            net.name,
            net.cidr()
        ),
    )
    .with_label("not in the subnet")
    .with_hint(format!("use an address in {}", net.cidr()))
}

fn is_var_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
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

fn valid_package(s: &str) -> bool {
    let name = s.split('=').next().unwrap_or("");
    name.len() >= 2
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
        && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Names become host names, file names and config keys: keep them plain.
pub fn check_name(diags: &mut Vec<Diagnostic>, kind: &str, name: &str, span: Span, host: bool) {
    if host {
        if !valid_hostname(name) || name.len() > 40 {
            let fixed: String = name
                .to_ascii_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            diags.push(
                Diagnostic::error(
                    span,
                    format!("{kind} name `{name}` is not a valid host name"),
                )
                .with_label("node names are made from it")
                .with_hint(format!(
                    "use lowercase letters, digits and `-` (at most 40), e.g. `{}`",
                    fixed.trim_matches('-')
                )),
            );
        }
    } else if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        || name.starts_with('.')
    {
        diags.push(
            Diagnostic::error(
                span,
                format!("{kind} name `{name}` has characters vocc cannot use"),
            )
            .with_hint("use letters, digits, `_`, `.` and `-`"),
        );
    }
}
