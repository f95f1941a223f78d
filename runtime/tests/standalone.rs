//! A site installs the runtime without the compiler: the runtime crate must not depend
//! on the language, the compiler or the template engine.

#[test]
fn the_runtime_depends_on_neither_the_compiler_nor_the_templates() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    for forbidden in ["vocc-dsl", "vocc-compiler", "handlebars"] {
        assert!(
            !manifest.contains(forbidden),
            "runtime/Cargo.toml names `{forbidden}`"
        );
    }
}
