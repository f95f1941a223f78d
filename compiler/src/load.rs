//! Loading appliance files: read, parse, and follow `import` statements (each file
//! once, cycles reported at the import that closes them). An import reads only a
//! `.voc` file inside the [`Sandbox`] (the appliance's directory tree, or a directory
//! allowed with `--allow-path`), so no other file's lines reach a diagnostic.

use crate::sources::{Refusal, Sandbox};
use crate::world::World;
use std::path::{Path, PathBuf};
use vocc_dsl::{Diagnostic, Document, FileId, SourceMap, Span, Stmt, ValueKind};

/// One parsed file of a compilation.
#[derive(Debug)]
pub struct Loaded {
    pub file: FileId,
    pub path: PathBuf,
    pub doc: Document,
    /// Reached through an `import` rather than named by the user.
    pub imported: bool,
}

/// Loads `root` and everything it imports, depth first: imported files come before
/// the files that import them, and `root` comes last. Imports are read only from
/// inside `sandbox`. An error when `root` itself cannot be read (the caller reports
/// that).
pub fn load(
    world: &dyn World,
    map: &mut SourceMap,
    diags: &mut Vec<Diagnostic>,
    root: &Path,
    sandbox: &Sandbox,
) -> std::io::Result<Vec<Loaded>> {
    let text = world.read(root)?;
    let mut loader = Loader {
        world,
        map,
        diags,
        sandbox,
        out: Vec::new(),
        stack: Vec::new(),
    };
    loader.file(root, text, false);
    Ok(loader.out)
}

/// Parses a file that is not loaded from disk (command-line snippets, tests).
pub fn parse_into(
    map: &mut SourceMap,
    diags: &mut Vec<Diagnostic>,
    name: &str,
    text: String,
) -> (FileId, Document) {
    let file = map.add(name, text);
    let (doc, mut d) = vocc_dsl::parse(file, &map.get(file).text);
    diags.append(&mut d);
    (file, doc)
}

struct Loader<'a> {
    world: &'a dyn World,
    map: &'a mut SourceMap,
    diags: &'a mut Vec<Diagnostic>,
    sandbox: &'a Sandbox,
    out: Vec<Loaded>,
    /// Canonical paths of the files being loaded, outermost first.
    stack: Vec<PathBuf>,
}

impl Loader<'_> {
    fn file(&mut self, path: &Path, text: String, imported: bool) {
        let key = self.world.canonical(path);
        let (file, doc) = parse_into(self.map, self.diags, &path.display().to_string(), text);
        self.stack.push(key);
        for stmt in doc.stmts.iter().filter(|s| s.keyword.name == "import") {
            if let Some((arg, name)) = self.import_name(stmt) {
                let target = path.parent().unwrap_or(Path::new("")).join(&name);
                self.import(&target, &name, arg);
            }
        }
        self.stack.pop();
        self.out.push(Loaded {
            file,
            path: path.to_path_buf(),
            doc,
            imported,
        });
    }

    /// The file an `import` names, or why it names none (reported).
    fn import_name(&mut self, stmt: &Stmt) -> Option<(Span, String)> {
        let example = "write `import \"common.voc\"`";
        if let Some(b) = &stmt.block {
            self.diags.push(
                Diagnostic::error(b.span, "`import` takes no block")
                    .with_label("unexpected block")
                    .with_hint("remove the `{ … }`"),
            );
        }
        let Some(arg) = stmt.args.first() else {
            let at = stmt.keyword.span;
            self.diags.push(
                Diagnostic::error(
                    Span {
                        start: at.end,
                        ..at
                    },
                    "`import` needs a file name",
                )
                .with_label("expected a file name here")
                .with_hint(example),
            );
            return None;
        };
        if let Some(extra) = stmt.args.get(1) {
            let last = stmt.args.last().map_or(extra.span, |l| l.span);
            self.diags.push(
                Diagnostic::error(extra.span.to(last), "`import` takes one file name")
                    .with_label("a second file")
                    .with_hint("write one `import` per file"),
            );
        }
        let problem = match &arg.kind {
            ValueKind::Str(s) | ValueKind::Word(s) | ValueKind::Path(s) if !s.is_empty() => {
                return Some((arg.span, s.clone()));
            }
            ValueKind::Str(_) => "`import` needs a file name, not an empty string".to_string(),
            ValueKind::Var(_) => {
                "`import` needs a file name written out: files are imported before variables \
                 are known"
                    .to_string()
            }
            other => format!("`import` needs a file name, not {}", other.describe()),
        };
        self.diags.push(
            Diagnostic::error(arg.span, problem)
                .with_label("expected a file name")
                .with_hint(example),
        );
        None
    }

    fn import(&mut self, target: &Path, name: &str, at: Span) {
        let Some(resolved) = self.admit(target, name, at) else {
            return;
        };
        let key = self.world.canonical(&resolved);
        if let Some(pos) = self.stack.iter().position(|p| *p == key) {
            let chain: Vec<String> = self.stack[pos..]
                .iter()
                .chain(std::iter::once(&key))
                .map(|p| format!("`{}`", file_name(p)))
                .collect();
            self.diags.push(
                Diagnostic::error(at, format!("import cycle: {}", chain.join(" imports ")))
                    .with_label("this import closes the cycle")
                    .with_hint("move what both files need into a third file that imports neither"),
            );
            return;
        }
        if self
            .out
            .iter()
            .any(|l| self.world.canonical(&l.path) == key)
        {
            return;
        }
        // The file read is the one judged: its resolved path.
        match self.world.read(&resolved) {
            Ok(text) => self.file(target, text, true),
            Err(e) => {
                let (why, hint) = match e.kind() {
                    std::io::ErrorKind::NotFound => ("no such file".to_string(), None),
                    std::io::ErrorKind::PermissionDenied => ("permission denied".to_string(), None),
                    std::io::ErrorKind::InvalidData => (
                        "it is not UTF-8 text".to_string(),
                        Some("an appliance file is UTF-8 text"),
                    ),
                    _ => (
                        e.to_string(),
                        Some("an import names a regular `.voc` file of at most 4 MiB"),
                    ),
                };
                let hint = hint.map_or_else(
                    || {
                        format!(
                            "import paths are relative to the file that imports them: this one \
                             is `{}`",
                            target.display()
                        )
                    },
                    str::to_owned,
                );
                self.diags.push(
                    Diagnostic::error(at, format!("cannot import `{name}`: {why}"))
                        .with_label("cannot read this file")
                        .with_hint(hint),
                );
            }
        }
    }

    /// The resolved path of an import when it may be read: a `.voc` file inside the
    /// sandbox, as written and after its symbolic links. Otherwise reported.
    fn admit(&mut self, target: &Path, name: &str, at: Span) -> Option<std::path::PathBuf> {
        if target.extension().is_none_or(|e| e != "voc") {
            self.diags.push(
                Diagnostic::error(at, format!("cannot import `{name}`: not a `.voc` file"))
                    .with_label("not an appliance file")
                    .with_hint("an import names an appliance file, whose name ends in `.voc`"),
            );
            return None;
        }
        match self.sandbox.admit(self.world, target) {
            Ok(p) => Some(p),
            Err(Refusal::Outside { via }) => {
                let why = match via {
                    Some(p) => format!(
                        "it leads to `{}`, outside the appliance's directory",
                        p.display()
                    ),
                    None => "it is outside the appliance's directory".to_string(),
                };
                self.diags.push(
                    Diagnostic::error(at, format!("cannot import `{name}`: {why}"))
                        .with_label("outside the appliance's directory")
                        .with_hint(self.sandbox.hint("an imported file")),
                );
                None
            }
            Err(Refusal::Unreadable(e)) => {
                let why = match e.kind() {
                    std::io::ErrorKind::NotFound => "no such file".to_string(),
                    std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                    _ => e.to_string(),
                };
                self.diags.push(
                    Diagnostic::error(at, format!("cannot import `{name}`: {why}"))
                        .with_label("cannot read this file")
                        .with_hint(format!(
                            "import paths are relative to the file that imports them: this one \
                             is `{}`",
                            target.display()
                        )),
                );
                None
            }
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
