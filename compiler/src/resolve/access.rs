//! A site's `access`: how the control machine reaches the host half of the runtime
//! (`vocc-host`) on each host. `access ssh { … }` names the user, the key, the
//! known_hosts file and the program; `access slurm { … }` the program and, if it is not
//! the system's, the Slurm configuration. Without `access`, every host is this machine.
//!
//! The words of these statements end up on command lines (ssh's, srun's) and, for the
//! program, on the remote shell's line: each is checked here to be plain, with the same
//! rules the runtime applies when it loads the plan.

use super::{header_name, Resolver};
use crate::args::Args;
use crate::model::{ImageServer, SiteAccess};
use vocc_dsl::{Context, Diagnostic, Span, Stmt};
use vocc_runtime::hostlink;

const WAYS: &[&str] = &["ssh", "slurm", "local"];

impl Resolver<'_> {
    /// Reads `access WAY { … }`; `None` after an error (reported).
    pub(super) fn access(&mut self, stmt: &Stmt) -> Option<SiteAccess> {
        let Some((way, span)) = header_name(stmt) else {
            self.err(
                Diagnostic::error(stmt.keyword.span, "`access` needs a way to reach the hosts")
                    .with_label("expected `ssh`, `slurm` or `local`")
                    .with_hint("write `access ssh { user root; identity \"/root/.ssh/vocc\"; known_hosts \"/etc/vocc/known_hosts\"; program \"/usr/local/bin/vocc-host\" }`"),
            );
            return None;
        };
        if !WAYS.contains(&way.as_str()) {
            self.err(crate::args::unknown_value(&way, "access", span, WAYS));
            return None;
        }
        self.extra_header(stmt, 1);
        if way == "local" {
            if let Some(b) = &stmt.block {
                self.err(super::unexpected_block(stmt, b.span));
            }
            return Some(SiteAccess::Local);
        }
        if stmt.block.is_none() {
            self.err(super::missing_block(stmt));
            return None;
        }
        self.once(stmt, &format!("`access {way}`"), Context::Access.keywords());
        let mut user: Option<String> = None;
        let mut identity = None;
        let mut known_hosts = None;
        let mut program = None;
        let mut conf = None;
        let mut broken = false;
        for s in stmt.children() {
            let kw = s.keyword.name.as_str();
            if !Context::Access.is_keyword(kw) {
                continue;
            }
            self.no_block(s);
            let mut a = Args::new(s, &self.vars, &mut self.diags);
            if a.poisoned() {
                broken = true;
                continue;
            }
            let ssh_only = matches!(kw, "user" | "identity" | "known_hosts");
            if (ssh_only && way != "ssh") || (kw == "conf" && way != "slurm") {
                self.err(
                    Diagnostic::error(
                        s.keyword.span,
                        format!("`{kw}` is not a setting of `access {way}`"),
                    )
                    .with_label(format!("not used by {way}"))
                    .with_hint(if way == "ssh" {
                        "`access ssh` takes `user`, `identity`, `known_hosts` and `program`"
                    } else {
                        "`access slurm` takes `program` and `conf`"
                    }),
                );
                a.skip_rest();
                broken = true;
                continue;
            }
            match kw {
                "user" => match a.name("a user name", "user root", &mut self.diags) {
                    Some((u, sp)) => match hostlink::check_user(&u) {
                        Ok(()) => user = Some(u),
                        Err(_) => {
                            self.err(
                                Diagnostic::error(sp, format!("`{}` is not a user name", u.escape_debug()))
                                    .with_label("letters, digits, `.`, `_` and `-` only")
                                    .with_hint("give the user vocc logs in as on every host, as in `user root`"),
                            );
                            broken = true;
                        }
                    },
                    None => broken = true,
                },
                "identity" | "known_hosts" | "conf" | "program" => {
                    let example = match kw {
                        "identity" => "identity \"/root/.ssh/vocc\"",
                        "known_hosts" => "known_hosts \"/etc/vocc/known_hosts\"",
                        "conf" => "conf \"/etc/slurm/slurm.conf\"",
                        _ => "program \"/usr/local/bin/vocc-host\"",
                    };
                    match a.host_path(example, &mut self.diags) {
                        Some((p, sp)) => match self.access_path(kw, &p, sp, example) {
                            Some(p) => match kw {
                                "identity" => identity = Some(p),
                                "known_hosts" => known_hosts = Some(p),
                                "conf" => conf = Some(p),
                                _ => program = Some(p),
                            },
                            None => broken = true,
                        },
                        None => broken = true,
                    }
                }
                _ => {}
            }
            a.done(&mut self.diags);
        }
        if broken {
            return None;
        }
        let origin = self.origin(stmt.keyword.span.to(span));
        let needs = |what: &[(&str, bool)]| -> Vec<String> {
            what.iter()
                .filter(|(_, has)| !has)
                .map(|(k, _)| format!("`{k}`"))
                .collect()
        };
        let missing = if way == "ssh" {
            needs(&[
                ("user", user.is_some()),
                ("identity", identity.is_some()),
                ("known_hosts", known_hosts.is_some()),
                ("program", program.is_some()),
            ])
        } else {
            needs(&[("program", program.is_some())])
        };
        if !missing.is_empty() {
            self.err(
                Diagnostic::error(span, format!("`access {way}` does not say its {}", super::and(&missing)))
                    .with_label("incomplete")
                    .with_hint(if way == "ssh" {
                        "vocc logs in with a key only and checks every host's key: give `user`, `identity` (the private key), `known_hosts` and `program` (where `vocc-host` is on the hosts)"
                    } else {
                        "give `program`, where `vocc-host` is on the hosts"
                    }),
            );
            return None;
        }
        Some(if way == "ssh" {
            SiteAccess::Ssh {
                user: user?,
                identity: identity?,
                known_hosts: known_hosts?,
                program: program?,
                origin,
            }
        } else {
            SiteAccess::Slurm {
                program: program?,
                conf,
                origin,
            }
        })
    }

    /// An absolute path for `access`; the program's is also a word a remote shell reads.
    fn access_path(&mut self, kw: &str, p: &str, span: Span, example: &str) -> Option<String> {
        if !p.starts_with('/') {
            self.err(
                Diagnostic::error(
                    span,
                    format!("`{kw}` `{}` is not an absolute path", p.escape_debug()),
                )
                .with_label("relative path")
                .with_hint(format!("write it from `/`, as in `{example}`")),
            );
            return None;
        }
        if kw == "program" {
            if let Err(problem) = hostlink::check_program(p) {
                self.err(
                    Diagnostic::error(span, format!("`program` cannot be `{}`", p.escape_debug()))
                        .with_label("not a plain path")
                        .with_hint(format!(
                            "{problem}: the path stands on a remote shell's command line"
                        )),
                );
                return None;
            }
        } else if p.chars().any(char::is_control) || p.contains("/../") {
            self.err(
                Diagnostic::error(
                    span,
                    format!("`{kw}` `{}` is not a plain path", p.escape_debug()),
                )
                .with_label("not a plain path")
                .with_hint(format!("write it without `..`, as in `{example}`")),
            );
            return None;
        }
        Some(p.to_owned())
    }
}

impl Resolver<'_> {
    /// Reads `images NAME { address A }`: the site's image server. `None` after an error
    /// (reported).
    pub(super) fn images(&mut self, stmt: &Stmt) -> Option<ImageServer> {
        let Some((name, span)) = header_name(stmt) else {
            self.err(
                Diagnostic::error(stmt.keyword.span, "`images` needs the image server's name")
                    .with_label("no name")
                    .with_hint("write `images repo { address 10.0.0.2 }`: the machine that keeps the site's layers"),
            );
            return None;
        };
        super::check_name(&mut self.diags, "image server", &name, span, None);
        self.extra_header(stmt, 1);
        let mut address = None;
        let mut broken = false;
        if stmt.block.is_some() {
            self.once(
                stmt,
                &format!("`images {name}`"),
                Context::Images.keywords(),
            );
            for s in stmt.children() {
                if s.keyword.name != "address" {
                    continue;
                }
                self.no_block(s);
                let mut a = Args::new(s, &self.vars, &mut self.diags);
                if a.poisoned() {
                    broken = true;
                    continue;
                }
                let at = a.peek().map_or(s.span, |v| v.span);
                match self.host_address(&mut a) {
                    None => broken = true,
                    Some(addr) => match hostlink::check_address(&addr) {
                        Ok(()) => address = Some(addr),
                        Err(problem) => {
                            broken = true;
                            self.err(
                            Diagnostic::error(at, problem)
                                .with_label("not a plain host name or address")
                                .with_hint("it stands on ssh's and srun's command lines: letters, digits, `.`, `-` and `:` only"),
                            )
                        }
                    },
                }
                a.done(&mut self.diags);
            }
        }
        if broken {
            return None;
        }
        Some(ImageServer {
            name,
            address,
            origin: self.origin(stmt.keyword.span.to(span)),
        })
    }
}

impl Resolver<'_> {
    /// An image server is reached like the hosts, so the site needs a way to reach
    /// machines; it is a machine of its own (a host already takes layers down the chain),
    /// and over SSH it needs an address.
    pub(super) fn check_images(&mut self, server: &ImageServer, site: &crate::model::Site) {
        let span = server.origin.span;
        if site.access == SiteAccess::Local {
            self.err(
                Diagnostic::error(span, format!("the image server `{}` cannot be reached: the site has no `access`", server.name))
                    .with_label("every host is this machine")
                    .with_hint("an image server serves hosts reached over `access ssh { … }` or `access slurm { … }`; on this machine alone the layers are in its store already"),
            );
        } else if let Some(h) = site.hosts.iter().find(|h| h.name == server.name) {
            self.err(
                Diagnostic::error(span, format!("the image server `{}` is also a host of the site", server.name))
                    .with_label("a host")
                    .with_secondary(h.origin.span, "the host")
                    .with_hint("name a machine of its own: every host already takes each layer down the chain that the image server heads"),
            );
        } else if matches!(site.access, SiteAccess::Ssh { .. }) && server.address.is_none() {
            self.err(
                Diagnostic::error(
                    span,
                    format!(
                        "the image server `{}` has no `address`, which `access ssh` needs",
                        server.name
                    ),
                )
                .with_label("no address")
                .with_hint(format!(
                    "give it one: `images {} {{ address 10.0.0.2 }}`",
                    server.name
                )),
            );
        }
    }
}
