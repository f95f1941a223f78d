//! Every shipped appliance compiles without diagnostics.

use std::path::Path;
use vocc_compiler::{compile, FsWorld, Options};

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
        if !c.diags.is_empty() {
            failures.push(vocc_dsl::diag::render(&c.map, &c.diags, false));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
