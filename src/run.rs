//! The runtime's commands: `up`, `status`, `pause`, `unpause`, `stop`, `start`,
//! `unstage`, `down`, `exec` and `console`. A thin layer over `vocc_runtime`: it
//! parses arguments, builds an appliance file first when `up` is given one (through
//! `vocc build`, the same binary), and prints reports as tables or JSON.
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
    /// Bring clusters up: stage layers, load and boot nodes, wait until they are ready.
    /// Given an appliance file, build it first (into `--out`).
    Up {
        /// A build output directory, its plan.json, or an appliance file to build.
        #[arg(default_value = "out")]
        target: PathBuf,
        /// Stop after this state ("propagate only").
        #[arg(long, value_enum, default_value = "running")]
        until: Until,
        /// The hypervisor driver (default: the one the cluster runs under, else qemu).
        #[arg(long, value_enum)]
        driver: Option<DriverArg>,
        /// Where to build an appliance file.
        #[arg(short, long, default_value = "out")]
        out: PathBuf,
        /// The site file for building an appliance file.
        #[arg(long)]
        site: Option<PathBuf>,
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
    Exec {
        /// The node: its id (`demo-worker1`) or host name (`worker1`).
        node: String,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required = true)]
        command: Vec<String>,
        /// The build output directory (or plan.json).
        #[arg(long, default_value = "out")]
        plan: PathBuf,
        /// The runtime state directory (default `OUT/.vocc-run`).
        #[arg(long)]
        state: Option<PathBuf>,
        /// Seconds to wait for the command.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// Show a node's console log.
    Console {
        node: String,
        /// The build output directory (or plan.json).
        #[arg(long, default_value = "out")]
        plan: PathBuf,
        #[arg(long)]
        state: Option<PathBuf>,
        /// Only the last N lines.
        #[arg(short = 'n', long)]
        lines: Option<usize>,
    },
}

#[derive(Args, Clone)]
pub struct RunArgs {
    /// The build output directory (or its plan.json).
    #[arg(long = "plan", default_value = "out")]
    plan: PathBuf,
    /// The runtime state directory (default `OUT/.vocc-run`).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Only this cluster of the plan.
    #[arg(long)]
    cluster: Option<String>,
    /// Only the nodes of this role (repeatable).
    #[arg(long = "role")]
    roles: Vec<String>,
    /// Only this node, by id or host name (repeatable).
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

    fn open(&self, options: Options) -> Result<Runtime, Internal> {
        Ok(Runtime::open(&self.plan, self.state.as_deref(), options)?)
    }
}

pub fn main(command: RunCommand) -> Result<ExitCode, Internal> {
    match command {
        RunCommand::Up {
            target,
            until,
            driver,
            out,
            site,
            mut run,
        } => {
            let mut build_ms = 0.0;
            if is_appliance(&target) {
                let t = Instant::now();
                if !build(&target, &out, site.as_deref())? {
                    return Ok(ExitCode::from(1));
                }
                build_ms = t.elapsed().as_secs_f64() * 1e3;
                run.plan = out;
            } else {
                run.plan = target;
            }
            let rt = run.open(run.options())?;
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
            node,
            command,
            plan,
            state,
            timeout,
        } => {
            let rt = Runtime::open(&plan, state.as_deref(), Options::default())?;
            let out = rt.exec(&node, &command, Duration::from_secs(timeout))?;
            std::io::stdout().write_all(&out.stdout)?;
            std::io::stderr().write_all(&out.stderr)?;
            // The command's own status, folded into what an exit code can carry.
            Ok(ExitCode::from(out.status.clamp(0, 255) as u8))
        }
        RunCommand::Console {
            node,
            plan,
            state,
            lines,
        } => {
            let rt = Runtime::open(&plan, state.as_deref(), Options::default())?;
            let path = rt.console(&node)?;
            let bytes = std::fs::read(&path)
                .map_err(|e| Internal::from(format!("cannot read `{}`: {e}", path.display())))?;
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
                    report::state_name(n.state).to_owned(),
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
