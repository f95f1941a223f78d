//! The runtime's commands: `up`, `status`, `pause`, `unpause`, `stop`, `start`,
//! `unstage`, `down`, `exec` and `console`. A thin layer over `vocc_runtime`: it
//! parses arguments, builds an appliance file first when `up` is given one (through
//! `vocc build`, the same binary), and prints reports as tables or JSON.
//!
//! Every command takes the same target: a build output directory (or its plan.json),
//! given as TARGET or `--plan`, or an appliance file. `up FILE` builds the file into
//! `--out`; the other commands act on that build of it, without building again (a
//! changed file must not change what `down` reclaims).
//!
//! Exit codes: 0 when every node did what was asked, 1 when some node failed (the
//! report says which, at which step and why), 2 on usage or internal errors.

use crate::cli::Internal;
use clap::{Args, Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use vocc_runtime::plan::State;
use vocc_runtime::report::{self, Report};
use vocc_runtime::{Op, Options, Runtime, Selection};

#[derive(Subcommand)]
pub enum RunCommand {
    /// Bring clusters up: stage layers, load and boot nodes, wait until they are ready;
    /// then drain, stop and reclaim the nodes the journal knows that the plan no longer
    /// has. Standby nodes of elastic roles start only when named with `--node`. Given
    /// an appliance file, build it first (into `--out`).
    Up {
        /// Stop after this state ("propagate only").
        #[arg(long, value_enum, default_value = "running")]
        until: Until,
        /// The hypervisor driver (default: the one the cluster runs under, else qemu).
        #[arg(long, value_enum)]
        driver: Option<DriverArg>,
        /// The site file for building an appliance file.
        #[arg(long)]
        site: Option<PathBuf>,
        /// Seconds to wait for the jobs of a compute node that the plan no longer has
        /// to finish (after its batch system drained it) before it is stopped anyway.
        #[arg(long, default_value_t = 600)]
        drain_timeout: u64,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Show every node's state: as recorded in the journal and as the driver sees it.
    Status {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Pause running nodes (all at once).
    Pause {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Resume paused nodes.
    Unpause {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Stop nodes: a polite shutdown, then kill after `--grace` (ephemeral nodes and
    /// `--force`: kill at once).
    Stop {
        #[command(flatten)]
        run: RunArgs,
        /// Kill at once.
        #[arg(long)]
        force: bool,
        /// Seconds to wait for a polite shutdown.
        #[arg(long, default_value_t = 10)]
        grace: u64,
    },
    /// Start stopped (or loaded) nodes and wait until they are ready, in dependency order.
    Start {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Stop nodes and remove their disks from the host (and the layers, once no node
    /// of the cluster uses them).
    Unstage {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Reclaim everything of a cluster: processes, domains, overlays, staged layers,
    /// sockets, ports and the runtime state. Safe to repeat.
    Down {
        #[command(flatten)]
        run: RunArgs,
        /// The driver to reclaim with when no journal says (default qemu).
        #[arg(long, value_enum)]
        driver: Option<DriverArg>,
    },
    /// Run a command on a running node and return its output and exit status.
    #[command(override_usage = "vocc exec [OPTIONS] [TARGET] <NODE> -- <COMMAND>...")]
    Exec {
        /// `[TARGET] NODE`: the target as for `up`, then the node, by its id
        /// (`demo-worker1`) or host name (`worker1`).
        #[arg(num_args = 1..=2, required = true, value_names = ["TARGET", "NODE"])]
        place: Vec<String>,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
        #[command(flatten)]
        target: TargetArgs,
        /// The runtime state directory (default `OUT/.vocc-run`).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Seconds to wait for the command.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Grow and shrink elastic clusters under the site's policy: each round, start the
    /// standby nodes the cluster's Slurm powers up (a job waits for them), as far as the
    /// policy's capacity and VO shares allow, and stop and reclaim those Slurm powered
    /// down after their idle time. Says, per VO, why it grew or did not.
    Autoscale {
        /// The build output directory (or its plan.json). Default: `--out`.
        #[arg(value_name = "TARGET")]
        target: Option<PathBuf>,
        #[command(flatten)]
        place: TargetArgs,
        /// The runtime state directory (default `OUT/.vocc-run`).
        #[arg(long)]
        state: Option<PathBuf>,
        /// The site's policy file (`policy NAME { capacity N; share VO WEIGHT }`).
        #[arg(long)]
        policy: PathBuf,
        /// One round, then exit.
        #[arg(long)]
        once: bool,
        /// Seconds between rounds.
        #[arg(long, default_value_t = 10)]
        interval: u64,
        /// Print each round as a line of JSON.
        #[arg(long)]
        json: bool,
        /// Seconds a started node may take to become ready.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Show a node's console log.
    #[command(override_usage = "vocc console [OPTIONS] [TARGET] <NODE>")]
    Console {
        /// `[TARGET] NODE`: the target as for `up`, then the node.
        #[arg(num_args = 1..=2, required = true, value_names = ["TARGET", "NODE"])]
        place: Vec<String>,
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long)]
        state: Option<PathBuf>,
        /// Only the last N lines.
        #[arg(short = 'n', long)]
        lines: Option<usize>,
    },
}

/// What a runtime command acts on, the same for every command.
#[derive(Args, Clone)]
pub struct TargetArgs {
    /// The build output directory (or its plan.json), or an appliance file (`up`
    /// builds it into `--out`; the other commands use that build). The same as TARGET.
    #[arg(long = "plan", value_name = "TARGET")]
    plan: Option<PathBuf>,
    /// Where an appliance file is built (and found by the commands after `up`); also
    /// the target when none is given.
    #[arg(short, long, default_value = "out")]
    out: PathBuf,
}

/// A resolved target: a plan to open, or an appliance file.
enum Target {
    Plan(PathBuf),
    Appliance(PathBuf),
}

impl TargetArgs {
    /// The target given as TARGET (`positional`) or `--plan`, else `--out`.
    fn resolve(&self, positional: Option<&Path>) -> Result<Target, Internal> {
        let given = match (positional, self.plan.as_deref()) {
            (Some(a), Some(b)) if a != b => {
                return Err(Internal::from(format!(
                    "two targets, `{}` and `--plan {}`: give one",
                    a.display(),
                    b.display()
                )))
            }
            (Some(t), _) | (None, Some(t)) => t,
            (None, None) => &self.out,
        };
        Ok(if is_appliance(given) {
            Target::Appliance(given.to_path_buf())
        } else {
            Target::Plan(given.to_path_buf())
        })
    }

    /// The plan to open for a command other than `up`: an appliance file is found as
    /// `up FILE` built it, in `--out`, and not built again.
    fn plan(&self, positional: Option<&Path>) -> Result<PathBuf, Internal> {
        match self.resolve(positional)? {
            Target::Plan(plan) => Ok(plan),
            Target::Appliance(file) => built_from(&file, &self.out),
        }
    }
}

/// `out`, when it holds a build of the appliance `file` (a node of its plan was made
/// by a role of `file`).
fn built_from(file: &Path, out: &Path) -> Result<PathBuf, Internal> {
    let plan_path = out.join("plan.json");
    let not_built = |why: String| {
        Internal::from(format!(
            "{why}: run `vocc up {}` first, or give `-o DIR` where it was built",
            file.display()
        ))
    };
    let text = std::fs::read_to_string(&plan_path).map_err(|_| {
        not_built(format!(
            "`{}` has no build of `{}`",
            out.display(),
            file.display()
        ))
    })?;
    let plan = vocc_runtime::schema::load_plan(&text).map_err(Internal::from)?;
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let wanted = canonical(file);
    // A node's source is `file:line:col`; the file as `vocc build` was given it.
    let from = |source: &str| {
        let mut parts = source.rsplitn(3, ':');
        let (_, _) = (parts.next(), parts.next());
        parts.next().map(|f| canonical(Path::new(f)))
    };
    let sources: Vec<PathBuf> = plan.nodes.iter().filter_map(|n| from(&n.source)).collect();
    if sources.is_empty() || sources.contains(&wanted) {
        Ok(out.to_path_buf())
    } else {
        Err(not_built(format!(
            "the build in `{}` is of `{}`, not of `{}`",
            out.display(),
            sources[0].display(),
            file.display()
        )))
    }
}

/// The target and the node of `exec` and `console` (`[TARGET] NODE`).
fn target_and_node(place: &[String]) -> (Option<&Path>, &str) {
    match place {
        [target, node] => (Some(Path::new(target.as_str())), node.as_str()),
        [node] => (None, node.as_str()),
        _ => (None, ""),
    }
}

#[derive(Args, Clone)]
pub struct RunArgs {
    /// A build output directory, its plan.json, or an appliance file (`up` builds it
    /// into `--out`; the other commands use that build). Default: `--out`.
    #[arg(value_name = "TARGET")]
    target: Option<PathBuf>,
    #[command(flatten)]
    place: TargetArgs,
    /// The runtime state directory (default `OUT/.vocc-run`).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Only this cluster of the plan.
    #[arg(long)]
    cluster: Option<String>,
    /// Only the nodes of this role (repeatable).
    #[arg(long = "role")]
    roles: Vec<String>,
    /// Only this node, by id or host name (repeatable); `up` and `start` start a
    /// standby node only when it is named here.
    #[arg(long = "node")]
    nodes: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Actions in flight at once.
    #[arg(long, default_value_t = 64)]
    jobs: usize,
    /// Seconds a node may take to become ready.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Until {
    Staged,
    Loaded,
    Running,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DriverArg {
    Qemu,
    Libvirt,
    Xen,
    Sim,
}

impl DriverArg {
    fn name(self) -> &'static str {
        match self {
            DriverArg::Qemu => "qemu",
            DriverArg::Libvirt => "libvirt",
            DriverArg::Xen => "xen",
            DriverArg::Sim => "sim",
        }
    }
}

impl RunArgs {
    fn options(&self) -> Options {
        Options {
            jobs: self.jobs.max(1),
            ready_timeout: Duration::from_secs(self.timeout),
            ..Options::default()
        }
    }

    fn selection(&self) -> Selection {
        Selection {
            roles: self.roles.clone(),
            nodes: self.nodes.clone(),
        }
    }

    /// Opens the target's plan (for commands other than `up`).
    fn open(&self, options: Options) -> Result<Runtime, Internal> {
        let plan = self.place.plan(self.target.as_deref())?;
        Ok(Runtime::open(&plan, self.state.as_deref(), options)?)
    }
}

pub fn main(command: RunCommand) -> Result<ExitCode, Internal> {
    match command {
        RunCommand::Up {
            until,
            driver,
            site,
            drain_timeout,
            run,
        } => {
            let mut build_ms = 0.0;
            let plan = match run.place.resolve(run.target.as_deref())? {
                Target::Appliance(file) => {
                    let t = Instant::now();
                    if !build(&file, &run.place.out, site.as_deref())? {
                        return Ok(ExitCode::from(1));
                    }
                    build_ms = t.elapsed().as_secs_f64() * 1e3;
                    run.place.out.clone()
                }
                Target::Plan(plan) => plan,
            };
            let options = Options {
                drain_timeout: Duration::from_secs(drain_timeout),
                ..run.options()
            };
            let rt = Runtime::open(&plan, run.state.as_deref(), options)?;
            let target = match until {
                Until::Staged => State::Staged,
                Until::Loaded => State::Loaded,
                Until::Running => State::Running,
            };
            let mut reports = Vec::new();
            for cluster in rt.clusters(run.cluster.as_deref())? {
                let mut r = rt.up(
                    &cluster,
                    target,
                    driver.map(DriverArg::name),
                    &run.selection(),
                )?;
                r.processing_ms += build_ms;
                reports.push(r);
            }
            print_reports(&reports, run.json)
        }
        RunCommand::Status { run } => status(&run),
        RunCommand::Autoscale {
            target,
            place,
            state,
            policy,
            once,
            interval,
            json,
            timeout,
        } => {
            let text = std::fs::read_to_string(&policy)
                .map_err(|e| Internal::from(format!("cannot read `{}`: {e}", policy.display())))?;
            let mut map = vocc_dsl::SourceMap::new();
            let policy =
                match vocc_compiler::policy::read(&mut map, &policy.display().to_string(), &text) {
                    Ok(p) => p,
                    Err(diags) => {
                        crate::cli::print_diags(&map, &diags);
                        return Ok(ExitCode::from(1));
                    }
                };
            let plan = place.plan(target.as_deref())?;
            let options = Options {
                ready_timeout: Duration::from_secs(timeout),
                ..Options::default()
            };
            let rt = Runtime::open(&plan, state.as_deref(), options)?;
            loop {
                let r = crate::autoscale::round(&rt, &policy, Duration::from_secs(60));
                let mut out = std::io::stdout().lock();
                if json {
                    writeln!(
                        out,
                        "{}",
                        serde_json::to_string(&r).map_err(|e| Internal::from(e.to_string()))?
                    )?;
                } else {
                    write!(out, "{}", crate::autoscale::text(&r))?;
                }
                out.flush()?;
                drop(out);
                if once {
                    return Ok(ExitCode::SUCCESS);
                }
                std::thread::sleep(Duration::from_secs(interval.max(1)));
            }
        }
        RunCommand::Pause { run } => operate(&run, Op::Pause, run.options()),
        RunCommand::Unpause { run } => operate(&run, Op::Unpause, run.options()),
        RunCommand::Stop { run, force, grace } => {
            let options = Options {
                force,
                stop_grace: Duration::from_secs(grace),
                ..run.options()
            };
            operate(&run, Op::Stop, options)
        }
        RunCommand::Start { run } => {
            let rt = run.open(run.options())?;
            let mut reports = Vec::new();
            for cluster in rt.clusters(run.cluster.as_deref())? {
                let mut r = rt.up(&cluster, State::Running, None, &run.selection())?;
                r.operation = "start".to_owned();
                reports.push(r);
            }
            print_reports(&reports, run.json)
        }
        RunCommand::Unstage { run } => operate(&run, Op::Unstage, run.options()),
        RunCommand::Down { run, driver } => {
            let rt = run.open(run.options())?;
            let mut reports = Vec::new();
            for cluster in rt.clusters(run.cluster.as_deref())? {
                reports.push(rt.down(&cluster, driver.map(DriverArg::name))?);
            }
            print_reports(&reports, run.json)
        }
        RunCommand::Exec {
            place,
            command,
            target,
            state,
            timeout,
        } => {
            let (positional, node) = target_and_node(&place);
            let plan = target.plan(positional)?;
            let rt = Runtime::open(&plan, state.as_deref(), Options::default())?;
            let out = rt.exec(node, &command, Duration::from_secs(timeout))?;
            std::io::stdout().write_all(&out.stdout)?;
            std::io::stderr().write_all(&out.stderr)?;
            // The command's own status, folded into what an exit code can carry.
            Ok(ExitCode::from(out.status.clamp(0, 255) as u8))
        }
        RunCommand::Console {
            place,
            target,
            state,
            lines,
        } => {
            let (positional, node) = target_and_node(&place);
            let plan = target.plan(positional)?;
            let rt = Runtime::open(&plan, state.as_deref(), Options::default())?;
            let bytes = rt.console(node)?;
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<String> = text.lines().map(vocc_runtime::console::clean).collect();
            let from = lines.map_or(0, |n| all.len().saturating_sub(n));
            let mut stdout = std::io::stdout().lock();
            for line in &all[from..] {
                writeln!(stdout, "{line}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// An appliance file rather than a plan or a build directory.
fn is_appliance(target: &Path) -> bool {
    target.extension().is_some_and(|e| e == "voc")
        || target.to_string_lossy().starts_with("<builtin>/")
}

/// Builds an appliance through `vocc build` (this same binary), so that `up FILE`
/// builds exactly as `vocc build FILE -o OUT` does.
fn build(file: &Path, out: &Path, site: Option<&Path>) -> Result<bool, Internal> {
    let me = std::env::current_exe()?;
    let mut command = std::process::Command::new(me);
    command.arg("build").arg(file).arg("-o").arg(out);
    if let Some(site) = site {
        command.arg("--site").arg(site);
    }
    // The build's own messages go to stderr; stdout stays the run's report.
    command.stdout(std::process::Stdio::null());
    Ok(command.status()?.success())
}

fn operate(run: &RunArgs, op: Op, options: Options) -> Result<ExitCode, Internal> {
    let rt = run.open(options)?;
    let mut reports = Vec::new();
    for cluster in rt.clusters(run.cluster.as_deref())? {
        reports.push(rt.operate(&cluster, op, &run.selection())?);
    }
    print_reports(&reports, run.json)
}

fn print_reports(reports: &[Report], json: bool) -> Result<ExitCode, Internal> {
    let ok = reports.iter().all(|r| r.ok);
    let mut stdout = std::io::stdout().lock();
    if json {
        let doc = serde_json::json!({ "ok": ok, "reports": reports });
        writeln!(stdout, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        for r in reports {
            write!(stdout, "{}", r.table())?;
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn status(run: &RunArgs) -> Result<ExitCode, Internal> {
    let rt = run.open(run.options())?;
    let mut all = Vec::new();
    for cluster in rt.clusters(run.cluster.as_deref())? {
        let nodes = rt.status(&cluster)?;
        all.push(serde_json::json!({ "cluster": cluster, "nodes": nodes }));
        if !run.json {
            let mut rows = vec![[
                "node", "role", "host", "state", "ready", "observed", "pid", "error",
            ]
            .map(str::to_owned)];
            for n in nodes {
                rows.push([
                    n.node,
                    n.role,
                    n.host,
                    if n.removed {
                        // Out of the plan, not yet reclaimed: the next `up` removes it.
                        format!("{} (removed)", report::state_name(n.state))
                    } else if n.standby {
                        report::standby_state(n.state).to_owned()
                    } else {
                        report::state_name(n.state).to_owned()
                    },
                    if n.ready { "yes" } else { "no" }.to_owned(),
                    n.observed.unwrap_or_else(|| "-".to_owned()),
                    n.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
                    n.error.unwrap_or_default(),
                ]);
            }
            let widths: Vec<usize> = (0..8)
                .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
                .collect();
            println!("cluster `{cluster}`:");
            for row in rows {
                let line: Vec<String> = row
                    .iter()
                    .zip(&widths)
                    .map(|(cell, w)| format!("{cell:<w$}"))
                    .collect();
                println!("  {}", line.join("  ").trim_end());
            }
        }
    }
    if run.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "clusters": all }))?
        );
    }
    Ok(ExitCode::SUCCESS)
}
