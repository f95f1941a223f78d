//! Checking what an image build would refuse, before it starts: the files layers are
//! made from (a `from dir` that is a real directory of files, a pinned `from image`
//! whose bytes have the pinned sha256, both inside the appliance's directory tree),
//! and what a layer's builder can make (packages only on Debian, only `dir` layers
//! stacked on a root).

use crate::model::{Cluster, Layer, LayerSource};
use crate::resolve::{Kind as Def, Notes, Part};
use crate::sources::{self, Kind, Refusal, Sandbox};
use crate::world::World;
use vocc_dsl::{Diagnostic, Span};

/// The image rules of one cluster.
pub fn cluster(
    world: &dyn World,
    sandbox: &Sandbox,
    notes: &Notes,
    diags: &mut Vec<Diagnostic>,
    c: &Cluster,
) {
    let broken = |name: &str| notes.broken(&c.name, Def::Layer, name);
    for l in c.layers.iter().filter(|l| !broken(&l.name)) {
        source(world, sandbox, diags, l);
        if let LayerSource::Debian { suite } = &l.source {
            in_release(world, diags, suite, &l.packages, |p| {
                notes.part(l.origin.span, Part::Package(p.to_owned()))
            });
        }
        if !l.packages.is_empty() && !matches!(l.source, LayerSource::Debian { .. }) {
            diags.push(
                Diagnostic::error(
                    l.origin.span,
                    format!(
                        "layer `{}` has packages, but only a `debian` layer can install them",
                        l.name
                    ),
                )
                .with_label(format!("a `{}` layer", kind_word(&l.source)))
                .with_hint("remove its `packages`, or make it `from debian \"bookworm\"`"),
            );
        }
    }
    for r in &c.roles {
        let Some(base) = r.root.first().and_then(|n| c.layer(n)) else {
            continue;
        };
        if r.root.iter().any(|n| broken(n)) {
            continue;
        }
        for name in &r.root[1..] {
            let Some(l) = c.layer(name) else {
                continue;
            };
            let at = notes.part(r.origin.span, Part::RootLayer(name.clone()));
            if !matches!(l.source, LayerSource::Dir { .. }) {
                diags.push(
                    Diagnostic::error(
                        at,
                        format!(
                            "only `dir` layers can be stacked on a root, and `{name}` is a `{}` \
                             layer",
                            kind_word(&l.source)
                        ),
                    )
                    .with_label("cannot be stacked")
                    .with_hint(format!(
                        "a root is one image built from `{}`: put what `{name}` has in that \
                         layer or the role's `+ [packages]`, or make `{name}` a `from dir` layer",
                        base.name
                    )),
                );
            }
        }
        let packages = !r.packages.is_empty();
        if matches!(base.source, LayerSource::Image { .. }) && r.root.len() > 1 {
            diags.push(
                Diagnostic::error(
                    notes.part(r.origin.span, Part::RootLayer(r.root[1].clone())),
                    format!(
                        "nothing can be stacked on `{}`, a pinned `image` layer",
                        base.name
                    ),
                )
                .with_label("stacked on an image")
                .with_hint("a pinned image is used as it is: remove what follows it in `root`"),
            );
        }
        if let LayerSource::Debian { suite } = &base.source {
            in_release(world, diags, suite, &r.packages, |p| {
                notes.part(r.origin.span, Part::Package(p.to_owned()))
            });
        }
        if packages && !matches!(base.source, LayerSource::Debian { .. }) {
            diags.push(
                Diagnostic::error(
                    notes.part(r.origin.span, Part::RootLayer(base.name.clone())),
                    format!(
                        "role `{}` adds packages to `{}`, a `{}` layer, but only a `debian` \
                         layer can install them",
                        r.name,
                        base.name,
                        kind_word(&base.source)
                    ),
                )
                .with_label("cannot install packages")
                .with_hint(
                    "remove the `+ [packages]`, or build the root `from debian \"bookworm\"`",
                ),
            );
        }
    }
}

/// Packages the release does not have, when this machine has its index (apt's lists);
/// without one nothing is said: mmdebstrap will tell. A warning, not an error: the
/// index is this machine's view, and configuration builds without the packages; an
/// image build refuses such a layer before it starts (`image::build`).
fn in_release(
    world: &dyn World,
    diags: &mut Vec<Diagnostic>,
    suite: &str,
    packages: &[String],
    span: impl Fn(&str) -> Span,
) {
    if packages.is_empty() {
        return;
    }
    let Some(index) = world.packages(suite) else {
        return;
    };
    for p in packages.iter().filter(|p| !index.has(p)) {
        let name = p.split('=').next().unwrap_or(p);
        let d = Diagnostic::warning(span(p), format!("`{suite}` has no package `{name}`"))
            .with_label(format!("not in the package index of `{suite}`"));
        diags.push(match index.suggest(p) {
            Some(s) => d.with_hint(format!("did you mean `{s}`?")),
            None => d.with_hint(format!(
                "look the name up with `apt-cache search {name}` (the index is apt's lists for \
                 `{suite}` on this machine), or use a release that has it"
            )),
        });
    }
}

fn kind_word(s: &LayerSource) -> &'static str {
    match s {
        LayerSource::Busybox => "busybox",
        LayerSource::Debian { .. } => "debian",
        LayerSource::Image { .. } => "image",
        LayerSource::Dir { .. } => "dir",
    }
}

/// A `from dir` or `from image` source: inside the sandbox, the right kind of file,
/// and for an image, the pinned bytes.
fn source(world: &dyn World, sandbox: &Sandbox, diags: &mut Vec<Diagnostic>, l: &Layer) {
    let (path, what) = match &l.source {
        LayerSource::Dir { path } => (path, "directory"),
        LayerSource::Image { path, .. } => (path, "image"),
        _ => return,
    };
    let span = l.origin.span;
    let full = sources::layer_path(l, path);
    let err = |message: String, label: &str, hint: String| {
        Diagnostic::error(span, message)
            .with_label(label.to_string())
            .with_hint(hint)
    };
    let resolved = match sandbox.admit(world, &full) {
        Ok(p) => p,
        Err(Refusal::Outside { via }) => {
            let why = match via {
                Some(p) => format!("leads to `{}`, outside", p.display()),
                None => "is outside".to_string(),
            };
            diags.push(err(
                format!(
                    "the {what} of layer `{}`, `{path}`, {why} the appliance's directory",
                    l.name
                ),
                "reads outside the appliance",
                sandbox.hint(&format!("a layer's {what}")),
            ));
            return;
        }
        Err(Refusal::Unreadable(e)) => {
            diags.push(missing(span, &l.name, what, path, &full, &e));
            return;
        }
    };
    // The path as written must itself be the directory or file, not a link to one:
    // a link that leads inside today may lead elsewhere by the time of the build.
    let kind = match world.kind(&full) {
        Ok(k) => k,
        Err(e) => {
            diags.push(missing(span, &l.name, what, path, &full, &e));
            return;
        }
    };
    match (&l.source, kind) {
        (LayerSource::Dir { .. }, Kind::Dir) => match world.special_entries(&resolved, 3) {
            Ok(special) if special.is_empty() => {}
            Ok(special) => {
                let names: Vec<String> = special
                    .iter()
                    .map(|p| format!("`{}`", p.display()))
                    .collect();
                diags.push(err(
                    format!(
                        "the directory of layer `{}` holds {}, which {} neither a file, a \
                         directory nor a symbolic link",
                        l.name,
                        names.join(", "),
                        if names.len() == 1 { "is" } else { "are" }
                    ),
                    "a FIFO, socket or device in the tree",
                    "remove it from the tree: a layer holds only files, directories and symbolic \
                     links"
                        .to_string(),
                ));
            }
            Err(e) => diags.push(missing(span, &l.name, what, path, &full, &e)),
        },
        (LayerSource::Image { sha256, .. }, Kind::File { .. }) => match world.sha256(&resolved) {
            Ok(actual) if actual.eq_ignore_ascii_case(sha256) => {}
            Ok(actual) => diags.push(err(
                format!(
                    "image `{path}` of layer `{}` has sha256 `{actual}`, not the pinned `{sha256}`",
                    l.name
                ),
                "the image does not match its `sha256`",
                "update the layer's `sha256` to the image's, or use the image it pins".to_string(),
            )),
            Err(e) => diags.push(missing(span, &l.name, what, path, &full, &e)),
        },
        (_, kind) => diags.push(err(
            format!(
                "the {what} of layer `{}`, `{path}`, is {}",
                l.name,
                kind.describe()
            ),
            &format!(
                "not {}",
                if what == "image" {
                    "a file"
                } else {
                    "a directory"
                }
            ),
            format!(
                "name the {what} itself{}",
                if kind == Kind::Symlink {
                    ", not a symbolic link to it"
                } else {
                    ""
                }
            ),
        )),
    }
}

fn missing(
    span: Span,
    layer: &str,
    what: &str,
    path: &str,
    full: &std::path::Path,
    e: &std::io::Error,
) -> Diagnostic {
    let why = match e.kind() {
        std::io::ErrorKind::NotFound => "does not exist".to_string(),
        std::io::ErrorKind::PermissionDenied => "cannot be read: permission denied".to_string(),
        _ => format!("cannot be read: {e}"),
    };
    Diagnostic::error(
        span,
        format!("the {what} of layer `{layer}`, `{path}`, {why}"),
    )
    .with_label(format!("no readable {what}"))
    .with_hint(format!(
        "paths are relative to the file that defines the layer: this one is `{}`",
        full.display()
    ))
}

#[cfg(test)]
mod tests {
    use crate::{compile, MemWorld, Options};
    use std::path::Path;

    const APPLIANCE: &str = "cluster lab {\n  layer os {\n    from debian \"bookworm\"\n    \
                             packages [slurmd htcondor]\n  }\n  role head { root os + [slurmctl] }\n}\n";

    fn warnings(world: &MemWorld) -> Vec<String> {
        let path = Path::new("a.voc");
        let c = compile(world, path, &Options::default()).unwrap();
        assert!(c.model.is_some(), "warnings only");
        c.diags
            .iter()
            .map(|d| {
                let loc = c.map.locate(d.span);
                format!(
                    "{}:{}: {} ({})",
                    loc.line,
                    loc.col,
                    d.message,
                    d.hints.join("; ")
                )
            })
            .collect()
    }

    #[test]
    fn packages_a_release_lacks_are_named_at_their_place() {
        let world = MemWorld::new()
            .with("a.voc", APPLIANCE)
            .with_packages("bookworm", ["slurmd", "slurmctld", "munge"]);
        let w = warnings(&world);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("4:22: `bookworm` has no package `htcondor` (look the name up"),
            "{w:?}"
        );
        assert_eq!(
            w[1],
            "6:26: `bookworm` has no package `slurmctl` (did you mean `slurmctld`?)"
        );
    }

    #[test]
    fn without_an_index_nothing_is_said() {
        let world = MemWorld::new().with("a.voc", APPLIANCE);
        assert_eq!(warnings(&world), Vec::<String>::new());
    }
}
