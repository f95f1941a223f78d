//! Command definitions (clap) and their implementations.

use clap::{Args, Parser, Subcommand};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vocc_compiler::plan::Previous;
use vocc_compiler::{Compilation, FsWorld, Options};
use vocc_dsl::SourceMap;

#[derive(Parser)]
#[command(
    name = "vocc",
    version,
    about = "The VO Cluster Compiler: appliance files to virtual clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check appliance and site files and report every problem.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        input: InputArgs,
        /// Print diagnostics as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compile an appliance into node configuration, a plan and images.
    Build {
        /// The appliance file (default: the embedded demo cluster).
        #[arg(default_value = "<builtin>/demo.voc")]
        file: PathBuf,
        #[command(flatten)]
        input: InputArgs,
        /// Output directory.
        #[arg(short, long, default_value = "out")]
        out: PathBuf,
        /// Render configuration and the plan only; build no images.
        #[arg(long)]
        config_only: bool,
        /// Override embedded templates with the files of this directory.
        #[arg(long)]
        templates: Option<PathBuf>,
        /// Where per-cluster secrets live (default: `.vocc/secrets` beside the file).
        #[arg(long)]
        secrets: Option<PathBuf>,
        /// Print a JSON summary instead of text (and image progress as one JSON
        /// event per line on stderr).
        #[arg(long)]
        json: bool,
        /// The content-addressed image store (default: $XDG_DATA_HOME/vocc/store or
        /// ~/.local/share/vocc/store).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
    },
    /// Remove from the image store everything no built output tree uses.
    Gc {
        /// The image store (default: as for `vocc build`).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// Print a JSON report instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Say why a node sits on its host, or why it fits nowhere.
    Explain {
        file: PathBuf,
        /// A node id (`osg-worker3`) or a host name (`worker3`) when unambiguous.
        node: String,
        #[command(flatten)]
        input: InputArgs,
        /// The output tree of `vocc build`: its nodes stay on their hosts, as a
        /// rebuild into it would keep them.
        #[arg(short, long, default_value = "out")]
        out: PathBuf,
    },
    /// Format appliance files in place (keeping comments).
    Fmt {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Do not write; exit 1 when a file is not formatted.
        #[arg(long)]
        check: bool,
        /// Print the formatted text instead of writing it.
        #[arg(long, conflicts_with = "check")]
        stdout: bool,
    },
    /// Print the clusters as a Graphviz DOT graph.
    Graph {
        file: PathBuf,
        #[command(flatten)]
        input: InputArgs,
    },
    /// Print the resolved cluster model as JSON.
    Model {
        file: PathBuf,
        #[command(flatten)]
        input: InputArgs,
    },
    // --- the runtime's commands (up, status, pause, ..., exec, console): src/run.rs ---
    #[command(flatten)]
    Run(crate::run::RunCommand),
    // --- end of the runtime's commands ---
}

#[derive(Args, Clone, Default)]
struct InputArgs {
    /// The site file (default: a site in the file, else the built-in local site).
    #[arg(long)]
    site: Option<PathBuf>,
    /// Set a variable, overriding its `let`: `--var workers=2`.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// Let imports, `from dir` and `from image` read below DIR too (by default only
    /// the appliance file's own directory tree).
    #[arg(long = "allow-path", value_name = "DIR")]
    allow_paths: Vec<PathBuf>,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected NAME=VALUE")?;
    if k.is_empty() {
        return Err("expected NAME=VALUE".into());
    }
    Ok((k.to_string(), v.to_string()))
}

impl InputArgs {
    fn options(&self) -> Options {
        Options {
            site: self.site.clone(),
            vars: self.vars.clone(),
            allow_paths: self.allow_paths.clone(),
        }
    }
}

/// Writes to standard output. When the reader has gone (`vocc model FILE | head`),
/// vocc stops quietly, as Unix tools do, instead of failing on a broken pipe.
pub fn write_stdout(args: std::fmt::Arguments) -> Result<(), Internal> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        r => Ok(r?),
    }
}

/// `print!` through [`write_stdout`]: `out!("{x}")?`.
macro_rules! out {
    ($($arg:tt)*) => { write_stdout(format_args!($($arg)*)) };
}

/// `println!` through [`write_stdout`].
macro_rules! outln {
    ($($arg:tt)*) => { write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// A failure that is not the input's fault: exit 2.
pub struct Internal(String);

impl<E: std::fmt::Display> From<E> for Internal {
    fn from(e: E) -> Internal {
        Internal(e.to_string())
    }
}

fn color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { files, input, json } => check(&files, &input, json),
        Command::Build {
            file,
            input,
            out,
            config_only,
            templates,
            secrets,
            json,
            store,
        } => build(
            &file,
            &input,
            &BuildFlags {
                out: &out,
                config_only,
                templates: templates.as_deref(),
                secrets: secrets.as_deref(),
                json,
                store,
            },
        ),
        Command::Gc { store, json } => gc(store, json),
        Command::Explain {
            file,
            node,
            input,
            out,
        } => explain(&file, &node, &input, &out),
        Command::Fmt {
            files,
            check,
            stdout,
        } => fmt(&files, check, stdout),
        Command::Graph { file, input } => graph(&file, &input),
        Command::Model { file, input } => model(&file, &input),
        Command::Run(command) => crate::run::main(command), // the runtime: src/run.rs
    };
    match result {
        Ok(code) => code,
        Err(Internal(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}

/// Compiles and places (when a model came out) after `previous`, collecting every
/// diagnostic.
fn compile_and_plan(
    file: &Path,
    input: &InputArgs,
    previous: &Previous,
) -> Result<(Compilation, Option<vocc_runtime::Plan>), Internal> {
    let mut c = vocc_compiler::compile(&FsWorld, file, &input.options())?;
    let mut plan = None;
    if let Some(model) = &c.model {
        match vocc_compiler::plan::plan_after(model, previous) {
            Ok(p) => plan = Some(p),
            Err(mut d) => {
                c.diags.append(&mut d);
                vocc_dsl::diag::sort(&mut c.diags);
            }
        }
    }
    if c.has_errors() {
        c.model = None;
        plan = None;
    }
    Ok((c, plan))
}

/// How many diagnostics are rendered in full; the rest are only counted, so that a
/// file full of mistakes (or not an appliance at all) gives a readable report.
const MAX_SHOWN: usize = 100;

pub(crate) fn print_diags(map: &SourceMap, diags: &[vocc_dsl::Diagnostic]) {
    if diags.is_empty() {
        return;
    }
    let shown = &diags[..diags.len().min(MAX_SHOWN)];
    let text = vocc_dsl::diag::render(map, shown, color());
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let more = diags.len() - shown.len();
    if more > 0 {
        let _ = writeln!(
            err,
            "... and {more} more diagnostic{} not shown (the first {MAX_SHOWN} are above)",
            if more == 1 { "" } else { "s" }
        );
    }
    let errors = diags.iter().filter(|d| d.is_error()).count();
    if errors > 0 {
        let _ = writeln!(
            err,
            "error: {errors} error{} found",
            if errors == 1 { "" } else { "s" }
        );
    }
}

/// The diagnostics for `--json`: the first [`MAX_SHOWN`] of them, and how many more
/// there are.
fn json_diags(map: &SourceMap, diags: &[vocc_dsl::Diagnostic]) -> (serde_json::Value, usize) {
    let shown = &diags[..diags.len().min(MAX_SHOWN)];
    let list = shown.iter().map(|d| d.to_json(map)).collect::<Vec<_>>();
    (serde_json::json!(list), diags.len() - shown.len())
}

fn check(files: &[PathBuf], input: &InputArgs, json: bool) -> Result<ExitCode, Internal> {
    let mut failed = false;
    let mut reports = Vec::new();
    for f in files {
        let (c, _) = compile_and_plan(f, input, &Previous::none())?;
        failed |= c.has_errors();
        if json {
            let (list, omitted) = json_diags(&c.map, &c.diags);
            reports.push(serde_json::json!({
                "file": f.display().to_string(),
                "ok": !c.has_errors(),
                "diagnostics": list,
                "omitted": omitted,
            }));
        } else {
            print_diags(&c.map, &c.diags);
        }
    }
    if json {
        let doc = serde_json::json!({ "ok": !failed, "files": reports });
        outln!("{}", serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// What `vocc build` was asked for besides its input.
struct BuildFlags<'a> {
    out: &'a Path,
    config_only: bool,
    templates: Option<&'a Path>,
    secrets: Option<&'a Path>,
    json: bool,
    store: Option<PathBuf>,
}

fn build(file: &Path, input: &InputArgs, flags: &BuildFlags) -> Result<ExitCode, Internal> {
    let BuildFlags {
        out,
        config_only,
        templates,
        secrets,
        json,
        ref store,
    } = *flags;
    // Nodes of the plan already in OUT stay on their hosts where they still fit.
    let previous = previous_placement(out);
    let (mut c, mut plan) = compile_and_plan(file, input, &previous)?;
    if let Some(d) = c.nothing_to_build() {
        // The error replaces the checker's warning about the same emptiness.
        c.diags.retain(|w| w.is_error() || w.span != d.span);
        c.diags.push(d);
        c.model = None;
        plan = None;
    }
    let (Some(model), Some(plan)) = (&c.model, plan) else {
        if json {
            let (list, omitted) = json_diags(&c.map, &c.diags);
            let doc = serde_json::json!({
                "ok": false,
                "diagnostics": list,
                "omitted": omitted,
            });
            outln!("{}", serde_json::to_string_pretty(&doc)?)?;
        } else {
            print_diags(&c.map, &c.diags);
        }
        return Ok(ExitCode::from(1));
    };
    print_diags(&c.map, &c.diags);
    let secrets_dir = match secrets {
        Some(s) => s.to_path_buf(),
        None if vocc_compiler::world::builtin(file).is_some() => PathBuf::from(".vocc/secrets"),
        None => file
            .parent()
            .unwrap_or(Path::new("."))
            .join(".vocc")
            .join("secrets"),
    };
    let summary = vocc_compiler::build::build(
        model,
        plan,
        &vocc_compiler::build::BuildOptions {
            out: out.to_path_buf(),
            templates: templates.map(Path::to_path_buf),
            secrets: secrets_dir,
            config_only,
            store: store.clone(),
            json_events: json,
        },
    );
    // A failure the input caused is reported like any other mistake in it.
    let summary = match summary {
        Ok(s) => s,
        Err(e) => match e.diagnostic(model) {
            Some(d) => {
                let diags = [d];
                if json {
                    let doc = serde_json::json!({
                        "ok": false,
                        "diagnostics": diags.iter().map(|d| d.to_json(&c.map)).collect::<Vec<_>>(),
                    });
                    println!("{}", serde_json::to_string_pretty(&doc)?);
                } else {
                    print_diags(&c.map, &diags);
                }
                return Ok(ExitCode::from(1));
            }
            None => return Err(Internal(e.to_string())),
        },
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&summary)?)?;
    } else {
        outln!(
            "built {} node{} of {} cluster{} into {}",
            summary.nodes,
            if summary.nodes == 1 { "" } else { "s" },
            summary.clusters,
            if summary.clusters == 1 { "" } else { "s" },
            out.display()
        )?;
        if let Some(i) = &summary.images {
            outln!(
                "images: {} artifacts ({} built, {} from the store {})",
                i.artifacts,
                i.built,
                i.hits,
                i.store
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The placement of the plan in the output tree `out`: none when there is no plan yet,
/// and none, with a warning, when the plan cannot be read.
fn previous_placement(out: &Path) -> Previous {
    let path = out.join("plan.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Previous::none(),
        Err(e) => {
            eprintln!(
                "warning: cannot read the previous plan `{}`: {e}; every node is placed afresh",
                path.display()
            );
            return Previous::none();
        }
    };
    match Previous::read(&text) {
        Ok(previous) => previous,
        Err(e) => {
            eprintln!(
                "warning: cannot use the previous plan `{}`: {e}; every node is placed afresh",
                path.display()
            );
            Previous::none()
        }
    }
}

/// `vocc gc`: removes store entries no output tree uses.
fn gc(store: Option<PathBuf>, json: bool) -> Result<ExitCode, Internal> {
    let dir = store.unwrap_or_else(vocc_compiler::image::default_dir);
    let report = vocc_compiler::image::gc(&dir).map_err(|e| Internal(e.to_string()))?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        outln!(
            "{}: kept {} objects used by {} output trees; removed {} objects ({} MiB), {} index \
             entries, {} caches, {} stale output trees",
            dir.display(),
            report.objects_kept,
            report.roots_kept,
            report.objects_removed,
            report.bytes_freed >> 20,
            report.entries_removed,
            report.caches_removed,
            report.roots_removed
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn explain(file: &Path, node: &str, input: &InputArgs, out: &Path) -> Result<ExitCode, Internal> {
    // Placement failures are what `explain` is for: keep the model even then.
    let c = vocc_compiler::compile(&FsWorld, file, &input.options())?;
    let Some(model) = &c.model else {
        print_diags(&c.map, &c.diags);
        return Ok(ExitCode::from(1));
    };
    let previous = previous_placement(out);
    let plan = vocc_compiler::plan::plan_after(model, &previous).ok();
    match vocc_compiler::explain::explain(model, &previous, plan.as_ref(), node) {
        Ok(text) => {
            out!("{text}")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(msg) => {
            eprintln!("error: {msg}");
            Ok(ExitCode::from(1))
        }
    }
}

fn fmt(files: &[PathBuf], check: bool, stdout: bool) -> Result<ExitCode, Internal> {
    let mut code = ExitCode::SUCCESS;
    for f in files {
        let mut map = SourceMap::new();
        let read = std::fs::read(f).and_then(vocc_compiler::world::decode);
        let text = match read {
            Ok(text) => text,
            Err(e) => match e
                .get_ref()
                .and_then(|e| e.downcast_ref::<vocc_compiler::world::NotUtf8>())
            {
                Some(bad) => {
                    let d = vocc_compiler::compile::not_utf8(&mut map, f, bad);
                    print_diags(&map, &[d]);
                    code = ExitCode::from(1);
                    continue;
                }
                None => return Err(Internal(format!("cannot read `{}`: {e}", f.display()))),
            },
        };
        let id = map.add(f.display().to_string(), text.clone());
        match vocc_dsl::fmt::format_source(id, &text) {
            Ok(formatted) => {
                if stdout {
                    out!("{formatted}")?;
                } else if formatted != text {
                    if check {
                        eprintln!("{} is not formatted", f.display());
                        code = ExitCode::from(1);
                    } else {
                        write_atomic(f, formatted.as_bytes())?;
                    }
                }
            }
            Err(diags) => {
                print_diags(&map, &diags);
                code = ExitCode::from(1);
            }
        }
    }
    Ok(code)
}

fn graph(file: &Path, input: &InputArgs) -> Result<ExitCode, Internal> {
    let c = vocc_compiler::compile(&FsWorld, file, &input.options())?;
    print_diags(&c.map, &c.diags);
    match &c.model {
        Some(m) => {
            out!("{}", vocc_compiler::graph::dot(m))?;
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(ExitCode::from(1)),
    }
}

fn model(file: &Path, input: &InputArgs) -> Result<ExitCode, Internal> {
    let c = vocc_compiler::compile(&FsWorld, file, &input.options())?;
    print_diags(&c.map, &c.diags);
    match &c.model {
        Some(m) => {
            outln!("{}", serde_json::to_string_pretty(m)?)?;
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(ExitCode::from(1)),
    }
}

/// Writes a file through a temporary sibling and a rename, so it is never half written.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Internal> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| Internal(e.to_string()))?;
    Ok(())
}
