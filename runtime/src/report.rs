//! The report after every operation: a timing per phase and node in the spirit of
//! seed 002's table (processing, staging, config, define, boot, ready), with the
//! failures (which node, which step, why). Printed as a table on a terminal and as JSON
//! with `--json`; the journal keeps the last one.

use crate::plan::State;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The phases in the order the table shows them.
pub const PHASES: &[&str] = &[
    "staging", "config", "define", "boot", "ready", "pause", "unpause", "drain", "stop", "unload",
    "reclaim",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `up`, `pause`, `unpause`, `stop`, `start`, `unstage`, `down`.
    pub operation: String,
    pub cluster: String,
    pub driver: String,
    pub started_ms: u64,
    /// Reading and validating the plan (and building it, for `up FILE`).
    pub processing_ms: f64,
    /// Wall time of the whole operation.
    pub total_ms: f64,
    pub staging: Vec<StageTiming>,
    pub nodes: Vec<NodeReport>,
    pub ok: bool,
    /// What went wrong besides the nodes' steps (a journal that could not be saved
    /// during the run); each makes the operation not `ok`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTiming {
    pub host: String,
    pub layer: String,
    pub ms: f64,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    pub node: String,
    pub role: String,
    pub host: String,
    pub state: State,
    /// Milliseconds per phase, for the phases this operation went through.
    pub phases: BTreeMap<String, f64>,
    pub error: Option<Failure>,
    /// The node is no longer in the plan: `up` drained, stopped and reclaimed it
    /// (`state` is `unstaged` once it is gone).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
    /// A standby node (the plan's `standby`) that this `up` left as it was: it starts
    /// only when named (`--node`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub standby: bool,
    /// What each phase did, in the driver's or the batch system's words (a removed
    /// node's drain, stop and unload).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub step: String,
    pub message: String,
}

impl Report {
    pub fn failures(&self) -> impl Iterator<Item = (&NodeReport, &Failure)> {
        self.nodes
            .iter()
            .filter_map(|n| n.error.as_ref().map(|f| (n, f)))
    }

    /// The report as a text table with one row per node, then the staging and the
    /// failures.
    pub fn table(&self) -> String {
        let phases: Vec<&str> = PHASES
            .iter()
            .copied()
            .filter(|p| self.nodes.iter().any(|n| n.phases.contains_key(*p)))
            .collect();
        let mut head: Vec<String> = vec!["node".into(), "host".into()];
        head.extend(phases.iter().map(|p| p.to_string()));
        head.push("state".into());
        let mut rows = vec![head];
        for n in &self.nodes {
            let mut row = vec![n.node.clone(), n.host.clone()];
            for p in &phases {
                row.push(
                    n.phases
                        .get(*p)
                        .map_or_else(|| "-".to_owned(), |ms| time(*ms)),
                );
            }
            let state = if n.removed && n.state == State::Unstaged {
                "removed".to_owned()
            } else if n.removed {
                format!("removed, {}", state_name(n.state))
            } else if n.standby {
                standby_state(n.state).to_owned()
            } else {
                state_name(n.state).to_owned()
            };
            row.push(if n.error.is_some() {
                format!("{state} (failed)")
            } else {
                state
            });
            rows.push(row);
        }
        let widths: Vec<usize> = (0..rows[0].len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} of cluster `{}` ({} driver): processing {}, total {}",
            self.operation,
            self.cluster,
            self.driver,
            time(self.processing_ms),
            time(self.total_ms)
        );
        for (i, row) in rows.iter().enumerate() {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                // Names left, times right, like a spreadsheet.
                let numeric = c >= 2 && c < row.len() - 1;
                if numeric {
                    let _ = write!(line, "{cell:>w$}  ", w = widths[c]);
                } else {
                    let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
                }
            }
            let _ = writeln!(out, "  {}", line.trim_end());
            if i == 0 {
                let rule: usize = widths.iter().map(|w| w + 2).sum::<usize>() - 2;
                let _ = writeln!(out, "  {}", "-".repeat(rule));
            }
        }
        if !self.staging.is_empty() {
            let _ = writeln!(out, "staging:");
            for s in &self.staging {
                let _ = writeln!(
                    out,
                    "  {} on {}: {} ({})",
                    s.layer,
                    s.host,
                    time(s.ms),
                    s.detail
                );
            }
        }
        let removed: Vec<&NodeReport> = self.nodes.iter().filter(|n| n.removed).collect();
        if !removed.is_empty() {
            let _ = writeln!(out, "removed from the plan:");
            for n in removed {
                let steps: Vec<String> = PHASES
                    .iter()
                    .filter_map(|p| {
                        let ms = n.phases.get(*p)?;
                        Some(match n.details.get(*p) {
                            Some(d) if !d.is_empty() => format!("{p} {} ({d})", time(*ms)),
                            _ => format!("{p} {}", time(*ms)),
                        })
                    })
                    .collect();
                let _ = writeln!(out, "  {}: {}", n.node, steps.join(", "));
            }
        }
        let failures: Vec<_> = self.failures().collect();
        if !failures.is_empty() {
            let _ = writeln!(
                out,
                "{} node{} failed:",
                failures.len(),
                if failures.len() == 1 { "" } else { "s" }
            );
            for (n, f) in failures {
                let _ = writeln!(out, "  {} at step `{}`: {}", n.node, f.step, f.message);
            }
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}

pub fn state_name(s: State) -> &'static str {
    match s {
        State::Unstaged => "unstaged",
        State::Staged => "staged",
        State::Loaded => "loaded",
        State::Running => "running",
        State::Paused => "paused",
        State::Stopped => "stopped",
    }
}

/// How a standby node's state reads: `standby` while it does not run, else its state.
pub fn standby_state(s: State) -> &'static str {
    match s {
        State::Running | State::Paused => state_name(s),
        _ => "standby",
    }
}

/// `850 ms`, `12.4 s`, `3 min 5 s`.
pub fn time(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        let s = (ms / 1000.0).round() as u64;
        format!("{} min {} s", s / 60, s % 60)
    }
}
