//! The templates: one handlebars template per generated file, embedded in the binary
//! from `templates/`, and replaceable one by one by a site's own directory.
//!
//! Two registries keep escaping right: configuration files get an escape that only
//! defuses control characters (no HTML entities in a slurm.conf), and the libvirt
//! domain XML gets XML escaping. Both run in strict mode, so a template that names a
//! variable the renderer does not provide fails instead of printing nothing.
//!
//! Where a value lands inside a construct of its file's own language (an xl string, a
//! ClassAd string, an fstab field, an exports path, an XML comment), the template says
//! so with that language's helper (`{{xl_str cmdline}}`): each helper writes the value
//! so that the file's own parser reads back exactly the value, as one value.

use handlebars::Handlebars;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How a template's output must escape the values it interpolates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Plain configuration text: values go in as they are, but a control character
    /// (which the checker already rejects) becomes U+FFFD so that no value can start
    /// a new line or statement.
    Config,
    /// XML character data and attribute values.
    Xml,
}

/// How often a template is rendered, and so how many nodes share one rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Once per cluster (or per cluster and queue, or per DHCP server).
    Cluster,
    /// Once per role.
    Role,
    /// Once per node (or per node and NIC).
    Node,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Cluster => "cluster",
            Scope::Role => "role",
            Scope::Node => "node",
        }
    }
}

/// One embedded template: its name (the file is `templates/<name>.hbs`), what it
/// produces, its scope and its escaping.
#[derive(Debug, Clone, Copy)]
pub struct TemplateInfo {
    pub name: &'static str,
    /// Where the output goes, for people (`/etc/hosts`, `nodes/<id>/xen.cfg`). A
    /// batch system's template renders to exactly this guest path, unless the path
    /// has a `<part>` to fill in (`/etc/vocc/sge/queues/<queue>`).
    pub produces: &'static str,
    pub scope: Scope,
    pub escape: Escape,
    text: &'static str,
}

impl TemplateInfo {
    /// A template embedded from `templates/<name>.hbs` (see [`template_list`]).
    pub(crate) const fn embedded(
        name: &'static str,
        produces: &'static str,
        scope: Scope,
        escape: Escape,
        text: &'static str,
    ) -> TemplateInfo {
        TemplateInfo {
            name,
            produces,
            scope,
            escape,
            text,
        }
    }
}

/// A constant list of embedded templates: `NAME => PRODUCES, SCOPE, ESCAPE;` each,
/// with the text of `templates/NAME.hbs`, named `LIST` (a batch system's module lists
/// its own as `TEMPLATES`).
macro_rules! template_list {
    ($list:ident { $( $name:literal => $produces:literal, $scope:ident, $escape:ident; )* }) => {
        pub(crate) const $list: &[$crate::render::TemplateInfo] = &[$(
            $crate::render::TemplateInfo::embedded(
                $name,
                $produces,
                $crate::render::Scope::$scope,
                $crate::render::Escape::$escape,
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../templates/", $name, ".hbs")),
            ),
        )*];
    };
    ($( $name:literal => $produces:literal, $scope:ident, $escape:ident; )*) => {
        $crate::render::template_list! {
            TEMPLATES { $( $name => $produces, $scope, $escape; )* }
        }
    };
}
pub(crate) use template_list;

template_list! {
    GENERAL {
        "hostname" => "/etc/hostname", Node, Config;
        "hosts" => "/etc/hosts", Cluster, Config;
        "interfaces" => "/etc/network/interfaces", Node, Config;
        "networkd.network" => "/etc/systemd/network/10-<nic>.network", Node, Config;
        "fstab" => "/etc/fstab", Role, Config;
        "exports" => "/etc/exports", Role, Config;
        "services" => "/etc/vocc/services", Role, Config;
        "dnsmasq.conf" => "/etc/dnsmasq.conf (on the DHCP server)", Cluster, Config;
        "cmdline" => "nodes/<id>/cmdline", Node, Config;
        "meta-data" => "nodes/<id>/cidata/meta-data", Node, Config;
        "user-data" => "nodes/<id>/cidata/user-data", Role, Config;
        "network-config" => "nodes/<id>/cidata/network-config", Node, Config;
        "xen.cfg" => "nodes/<id>/xen.cfg (xen clusters)", Node, Config;
        "libvirt.xml" => "nodes/<id>/libvirt.xml (kvm clusters)", Node, Xml;
    }
}

/// How many templates `parts` hold together.
const fn count(parts: &[&[TemplateInfo]]) -> usize {
    let (mut n, mut i) = (0, 0);
    while i < parts.len() {
        n += parts[i].len();
        i += 1;
    }
    n
}

/// `general` and then the templates of every batch system, as one array.
const fn join<const N: usize>(
    general: &[TemplateInfo],
    systems: &[&[TemplateInfo]],
) -> [TemplateInfo; N] {
    let mut out = [general[0]; N];
    let mut n = 0;
    while n < general.len() {
        out[n] = general[n];
        n += 1;
    }
    let mut system = 0;
    while system < systems.len() {
        let mut i = 0;
        while i < systems[system].len() {
            out[n] = systems[system][i];
            n += 1;
            i += 1;
        }
        system += 1;
    }
    out
}

/// Every template vocc renders, in a fixed order: the general ones, then each batch
/// system's ([`crate::scheduler::TEMPLATES`]).
pub const TEMPLATES: &[TemplateInfo] = &join::<
    { GENERAL.len() + count(crate::scheduler::TEMPLATES) },
>(GENERAL, crate::scheduler::TEMPLATES);

/// The information about the template `name`, if vocc has one of that name.
pub fn info(name: &str) -> Option<&'static TemplateInfo> {
    TEMPLATES.iter().find(|t| t.name == name)
}

/// Where a template's text came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    Embedded,
    /// A site's file that replaced the embedded template.
    Site(PathBuf),
}

/// Why a set of templates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read the templates directory `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` is not a template vocc renders{}", path.display(), hint(.suggestion))]
    Unknown {
        path: PathBuf,
        suggestion: Option<&'static str>,
    },
    #[error("template `{name}` ({}) does not parse: {message}", describe(.origin))]
    Parse {
        name: String,
        origin: TemplateSource,
        message: String,
    },
}

fn hint(suggestion: &Option<&'static str>) -> String {
    match suggestion {
        Some(s) => format!("; did you mean `{s}.hbs`?"),
        None => "; template files are named `<template>.hbs`, see templates/README.md".into(),
    }
}

fn describe(origin: &TemplateSource) -> String {
    match origin {
        TemplateSource::Embedded => "embedded".into(),
        TemplateSource::Site(p) => p.display().to_string(),
    }
}

/// The loaded templates, ready to render.
pub struct Templates {
    config: Handlebars<'static>,
    xml: Handlebars<'static>,
    sources: BTreeMap<&'static str, TemplateSource>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("sources", &self.sources)
            .finish()
    }
}

impl Templates {
    /// The embedded templates.
    pub fn embedded() -> Result<Templates, TemplateError> {
        Templates::load(None)
    }

    /// The embedded templates, each replaced by `<dir>/<name>.hbs` where that file
    /// exists. Any other file in `dir` is an error (a misspelt name would otherwise be
    /// ignored in silence); names starting with `.` are skipped.
    pub fn load(dir: Option<&Path>) -> Result<Templates, TemplateError> {
        let mut texts: BTreeMap<&'static str, (String, TemplateSource)> = TEMPLATES
            .iter()
            .map(|t| (t.name, (t.text.to_owned(), TemplateSource::Embedded)))
            .collect();
        if let Some(dir) = dir {
            let read = |source| TemplateError::Read {
                path: dir.to_path_buf(),
                source,
            };
            let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(read)?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .map_err(read)?;
            entries.sort();
            for path in entries {
                let file = path
                    .file_name()
                    .and_then(|f| f.to_str())
                    .unwrap_or_default();
                if file.starts_with('.') {
                    continue;
                }
                let stem = file.strip_suffix(".hbs");
                let Some(t) = stem.and_then(info).filter(|_| path.is_file()) else {
                    let word = stem.unwrap_or(file);
                    let suggestion =
                        vocc_dsl::diag::suggest(word, TEMPLATES.iter().map(|t| t.name))
                            .and_then(|s| info(s).map(|t| t.name));
                    return Err(TemplateError::Unknown { path, suggestion });
                };
                let text =
                    std::fs::read_to_string(&path).map_err(|source| TemplateError::Read {
                        path: path.clone(),
                        source,
                    })?;
                texts.insert(t.name, (text, TemplateSource::Site(path)));
            }
        }

        let mut config = registry(escape_config);
        let mut xml = registry(escape_xml);
        let mut sources = BTreeMap::new();
        for t in TEMPLATES {
            let Some((text, source)) = texts.remove(t.name) else {
                continue;
            };
            let reg = match t.escape {
                Escape::Config => &mut config,
                Escape::Xml => &mut xml,
            };
            if let Err(e) = reg.register_template_string(t.name, text) {
                return Err(TemplateError::Parse {
                    name: t.name.to_owned(),
                    origin: source,
                    message: e.to_string(),
                });
            }
            sources.insert(t.name, source);
        }
        Ok(Templates {
            config,
            xml,
            sources,
        })
    }

    /// Where template `name` came from.
    pub fn source(&self, name: &str) -> Option<&TemplateSource> {
        self.sources.get(name)
    }

    /// Renders template `name` with `ctx`, appending to `out`.
    pub(crate) fn render_into(
        &self,
        name: &str,
        ctx: &handlebars::Context,
        out: &mut Vec<u8>,
    ) -> Result<(), handlebars::RenderError> {
        let reg = match info(name).map(|t| t.escape) {
            Some(Escape::Xml) => &self.xml,
            _ => &self.config,
        };
        reg.render_with_context_to_write(name, ctx, out)
    }
}

fn registry(escape: EscapeFn) -> Handlebars<'static> {
    let mut reg = Handlebars::new();
    reg.set_strict_mode(true);
    reg.register_escape_fn(escape);
    for (name, escape) in HELPERS {
        reg.register_helper(name, Box::new(Escaper(*escape)));
    }
    reg
}

/// A function that escapes a value for one construct of a file format.
pub type EscapeFn = fn(&str) -> String;

/// The escaping helpers every template may use, by name: each takes one value and
/// writes it escaped for one construct of a file format.
pub const HELPERS: &[(&str, EscapeFn)] = &[
    ("xl_str", escape_xl_str),
    ("condor_str", escape_condor_str),
    ("fstab", escape_fstab),
    ("exports_path", escape_exports_path),
    ("xml_comment", escape_xml_comment),
];

/// A helper that writes its one parameter through an escape function.
struct Escaper(EscapeFn);

impl handlebars::HelperDef for Escaper {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &handlebars::Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc handlebars::Context,
        _: &mut handlebars::RenderContext<'reg, 'rc>,
        out: &mut dyn handlebars::Output,
    ) -> handlebars::HelperResult {
        let [param] = h.params().as_slice() else {
            return Err(handlebars::RenderErrorReason::Other(format!(
                "`{}` takes one value, as in `{{{{{} name}}}}`",
                h.name(),
                h.name()
            ))
            .into());
        };
        let text = match param.value() {
            serde_json::Value::String(s) => (self.0)(s),
            serde_json::Value::Null => String::new(),
            other => (self.0)(&other.to_string()),
        };
        out.write(&text)?;
        Ok(())
    }
}

/// Control characters as U+FFFD: the checker rejects them in every value, and no
/// escape below may let one open a new line if one slipped through.
fn defuse(c: char) -> char {
    if c.is_control() {
        '\u{FFFD}'
    } else {
        c
    }
}

/// The inside of a double-quoted string of an xl domain configuration (xl.cfg(5),
/// libxlutil's lexer): `\` and `"` are escaped with a backslash.
pub fn escape_xl_str(s: &str) -> String {
    backslashed(s, |_| None)
}

/// The inside of a ClassAd string literal in an HTCondor configuration file:
/// `\` and `"` are escaped with a backslash (ClassAd syntax), and `$`, which would
/// start a macro when the configuration is read, is the built-in macro `$(DOLLAR)`.
pub fn escape_condor_str(s: &str) -> String {
    backslashed(s, |c| (c == '$').then_some("$(DOLLAR)"))
}

/// A double-quoted string's inside where `\` and `"` take a backslash, `other` says
/// what else a character becomes (if anything), and control characters are defused.
fn backslashed(s: &str, other: impl Fn(char) -> Option<&'static str>) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match (c, other(c)) {
            ('\\' | '"', _) => {
                out.push('\\');
                out.push(c);
            }
            (_, Some(text)) => out.push_str(text),
            (c, None) => out.push(defuse(c)),
        }
    }
    out
}

/// A field of /etc/fstab (fstab(5)): white space and the backslash as three octal
/// digits after a backslash, as libmount and busybox mount decode them.
pub fn escape_fstab(s: &str) -> String {
    octal(s, |c| matches!(c, ' ' | '\t' | '\\'))
}

/// The path of an /etc/exports line (exports(5)): white space, the backslash, the
/// quote, `#` and the parentheses as three octal digits after a backslash, so that the
/// path stays one token that nothing in it can end or comment out.
pub fn escape_exports_path(s: &str) -> String {
    octal(s, |c| {
        matches!(c, ' ' | '\t' | '\\' | '"' | '#' | '(' | ')')
    })
}

fn octal(s: &str, special: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if special(c) {
            out.push_str(&format!("\\{:03o}", c as u32));
        } else {
            out.push(defuse(c));
        }
    }
    out
}

/// The text of an XML comment: XML allows anything in a comment except `--` (and a
/// `-` just before the closing `-->`), so every `-` that follows a `-`, and a final
/// `-`, gets a space before it.
pub fn escape_xml_comment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '-' && out.ends_with('-') {
            out.push(' ');
        }
        out.push(defuse(c));
    }
    if out.ends_with('-') {
        out.push(' ');
    }
    out
}

/// The escape of configuration files: values go in as they are, except that control
/// characters become U+FFFD. The checker rejects them already; this keeps a value
/// from ever opening a new line (a new key, a new fstab entry) if one slipped through.
pub fn escape_config(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// XML escaping for character data and attribute values (either quote style).
pub fn escape_xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_template_parses() {
        let t = Templates::embedded().unwrap();
        for info in TEMPLATES {
            assert_eq!(t.source(info.name), Some(&TemplateSource::Embedded));
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(escape_config("a b=c\"d"), "a b=c\"d");
        assert_eq!(escape_config("a\nb"), "a\u{FFFD}b");
        assert_eq!(
            escape_xml("a<b>&'\"\n"),
            "a&lt;b&gt;&amp;&apos;&quot;\u{FFFD}"
        );
        assert_eq!(escape_xl_str(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_condor_str(r#"$(X)"\"#), r#"$(DOLLAR)(X)\"\\"#);
        assert_eq!(escape_fstab(r"/a b\040"), r"/a\040b\134040");
        assert_eq!(escape_exports_path("/a#(b)\""), r"/a\043\050b\051\042");
        assert_eq!(escape_xml_comment("a--b---"), "a- -b- - - ");
    }
}
