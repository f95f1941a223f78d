//! Values that no escape can carry into the file they reach, rejected here: the kernel
//! command line has no escape for `"` and a fixed length; fstab and exports decode a
//! path's `\ooo` escapes (exportfs twice), so no guest path can hold a backslash; the
//! VO of a queue names a Unix group in the batch system's access lists. Everything
//! else a value may hold, each generated file escapes in its own syntax
//! (`render/templates.rs`).

use crate::model::{Cluster, Role};
use vocc_dsl::Diagnostic;

/// The most bytes of extra kernel arguments a role may have. The kernel reads at most
/// 2048 bytes of command line on x86 and drops the rest; vocc's own arguments
/// (console, root device, `net.ifnames=0`, `vocc.node=<id>` with a 63-character id)
/// need fewer than 150 of them, and `vocc.node` comes last, so it is the first to go.
pub const CMDLINE_EXTRA_MAX: usize = 1800;

/// The extra kernel arguments (`cmdline`) of every role of `c`.
pub fn cluster(diags: &mut Vec<Diagnostic>, c: &Cluster) {
    for r in &c.roles {
        cmdline(diags, r);
        guest_paths(diags, r);
    }
    for q in c.scheduler.iter().flat_map(|s| &s.queues) {
        if let Some(vo) = q.vo.as_deref().filter(|vo| !group_name(vo)) {
            diags.push(
                Diagnostic::error(
                    q.origin.span,
                    format!(
                        "the VO `{vo}` of queue `{}` is not a Unix group name",
                        q.name
                    ),
                )
                .with_label("its access list is the Unix group of the VO's name")
                .with_hint(
                    "a queue for a VO takes the jobs of the members of the Unix group of that \
                     name: use at most 32 lowercase letters, digits, `_`, `.` and `-`, not \
                     starting with a digit, `.` or `-`",
                ),
            );
        }
    }
}

/// A Unix group name the batch systems' access lists and Debian's `groupadd` accept.
fn group_name(s: &str) -> bool {
    s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

/// fstab and exports decode `\ooo` escapes (exportfs twice), so a backslash in a
/// guest path cannot be written so that every reader of those files (mount, exportfs,
/// the boot scripts) gets the path back.
fn guest_paths(diags: &mut Vec<Diagnostic>, r: &Role) {
    let paths = r
        .disks
        .iter()
        .map(|d| (&d.at, d.origin.span))
        .chain(r.mounts.iter().map(|m| (&m.at, m.origin.span)))
        .chain(r.exports.iter().map(|e| (&e.path, e.origin.span)));
    for (path, span) in paths.filter(|(p, _)| p.contains('\\')) {
        diags.push(
            Diagnostic::error(span, format!("guest path `{path}` contains `\\`"))
                .with_label("fstab and exports cannot carry this path")
                .with_hint(
                    "fstab and exports read a backslash as the start of an escape (exportfs \
                     even twice): choose a path without `\\`",
                ),
        );
    }
}

fn cmdline(diags: &mut Vec<Diagnostic>, r: &Role) {
    // The kernel reads `"` as the start or end of a quoted value that may hold spaces,
    // up to the next `"` anywhere on the line: one stray quote would swallow the
    // arguments after it (the node's own `vocc.node=`). vocc splits `cmdline` at
    // spaces, so a quoted value could never hold a space anyway.
    // A value that is not a string or a word (a list) reaches `cmdline` as written,
    // line breaks and comments included.
    if let Some(word) = r
        .cmdline
        .iter()
        .find(|w| w.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        diags.push(
            Diagnostic::error(
                r.origin.span,
                format!(
                    "kernel argument `{}` of role `{}` is not one word",
                    word.escape_debug(),
                    r.name
                ),
            )
            .with_label("in this role's `cmdline`")
            .with_hint(
                "write the kernel arguments as one string, as in `cmdline \"quiet loglevel=3\"`",
            ),
        );
        return;
    }
    if let Some(word) = r.cmdline.iter().find(|w| w.contains('"')) {
        diags.push(
            Diagnostic::error(
                r.origin.span,
                format!(
                    "kernel argument `{word}` of role `{}` contains `\"`",
                    r.name
                ),
            )
            .with_label("in this role's `cmdline`")
            .with_hint(
                "the kernel reads `\"` as a quote up to the next `\"` on the whole command \
                 line: write the argument without `\"`",
            ),
        );
    }
    let len = r.cmdline.iter().map(|w| w.len() + 1).sum::<usize>();
    if len > CMDLINE_EXTRA_MAX {
        diags.push(
            Diagnostic::error(
                r.origin.span,
                format!(
                    "the kernel arguments of role `{}` take {len} bytes, more than {CMDLINE_EXTRA_MAX}",
                    r.name
                ),
            )
            .with_label("in this role's `cmdline`")
            .with_hint(
                "the kernel reads at most 2048 bytes of command line and vocc needs room for \
                 its own arguments: shorten `cmdline`",
            ),
        );
    }
}
