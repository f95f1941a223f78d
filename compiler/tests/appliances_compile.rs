//! Every shipped appliance compiles without diagnostics, but for the packages of the
//! seed papers' batch systems that bookworm lacks (warned about where this machine
//! has apt's lists for bookworm).

use std::path::Path;
use vocc_compiler::{compile, FsWorld, Options};

/// Torque and HTCondor packages that `grid3`, `two-vo` and `voc-condor` name.
const HISTORICAL: &[&str] = &[
    "torque-client",
    "torque-mom",
    "torque-server",
    "torque-scheduler",
    "htcondor",
];

#[test]
fn shipped_appliances_compile_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../appliances");
    let mut failures = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "voc"))
    {
        let c = compile(&FsWorld, p, &Options::default()).unwrap();
        let known = |d: &vocc_dsl::Diagnostic| {
            !d.is_error()
                && HISTORICAL
                    .iter()
                    .any(|p| d.message == format!("`bookworm` has no package `{p}`"))
        };
        let diags: Vec<_> = c.diags.iter().filter(|d| !known(d)).cloned().collect();
        if !diags.is_empty() {
            failures.push(vocc_dsl::diag::render(&c.map, &diags, false));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
