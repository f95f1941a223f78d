//! The committed `plan.schema.json` is the schema the plan types generate, so sites
//! and tools that validate plans without the runtime read the real format.
//! `VOCC_BLESS=1` rewrites the file.

use std::path::Path;
use vocc_runtime::schema::plan_schema;

#[test]
fn the_committed_schema_is_current() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("plan.schema.json");
    let generated = serde_json::to_string_pretty(&plan_schema()).unwrap() + "\n";
    if std::env::var_os("VOCC_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not the schema of the plan types: run `VOCC_BLESS=1 cargo test -p vocc-runtime` \
         and commit it",
        path.display()
    );
}
