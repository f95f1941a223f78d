//! The runtime's one error type: what went wrong, said so that the person running the
//! cluster knows what to do next. Messages are lowercase and name the node, the file
//! or the program involved.

use crate::schema::PlanError;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("cannot {what} `{}`: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{program}` is not installed or cannot run ({source}): {hint}")]
    Missing {
        program: String,
        hint: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed{}{}", status.map(|s| format!(" with exit status {s}")).unwrap_or_default(), tail(detail))]
    Tool {
        command: String,
        status: Option<i32>,
        detail: String,
    },
    #[error("`{command}` did not finish within {secs} s")]
    ToolTimeout { command: String, secs: u64 },
    #[error(
        "not ready after {secs} s: no `{marker}` on its console{}",
        console_tail(tail)
    )]
    NotReady {
        secs: u64,
        marker: String,
        tail: Vec<String>,
    },
    #[error(
        "the node failed to boot: its console says `{line}`{}",
        console_tail(tail)
    )]
    BootFailed { line: String, tail: Vec<String> },
    #[error("the node is no longer running ({what}){}", console_tail(tail))]
    Died { what: String, tail: Vec<String> },
    #[error("another vocc is working on cluster `{cluster}` (it holds `{}`); wait for it or stop it", lock.display())]
    Busy { cluster: String, lock: PathBuf },
    #[error("the `{driver}` driver cannot {what}")]
    Unsupported { driver: String, what: String },
    #[error("the layer `{layer}` has sha256 {found} in the store but the plan expects {expected}: rebuild it or remove `{}`", path.display())]
    Checksum {
        layer: String,
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error(
        "cannot {doing} cluster `{cluster}`: another deployment of a cluster `{cluster}` is up \
         with the same store `{}`, from the plan `{}` (state `{}`), and owns the cluster's disks \
         there; take that one down first (`vocc down --plan {}`), or give this plan a site with \
         another store", store.display(), plan.display(), state.display(), plan.display()
    )]
    Claimed {
        cluster: String,
        store: PathBuf,
        plan: PathBuf,
        state: PathBuf,
        doing: String,
    },
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

fn tail(detail: &str) -> String {
    let detail = detail.trim();
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

fn console_tail(lines: &[String]) -> String {
    if lines.is_empty() {
        return "; its console is empty".to_owned();
    }
    let mut out = String::from("; the last lines of its console:");
    for line in lines {
        out.push_str("\n    | ");
        out.push_str(line);
    }
    out
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
