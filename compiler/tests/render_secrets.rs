//! Secrets: made once from the random source, kept private, reused by later builds.

mod common;

use common::build_fixture;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use vocc_compiler::render::{render, RenderError, Templates};
use vocc_compiler::secrets::{default_dir, Secrets, SecretsError, MUNGE_KEY_LEN};

fn mode(p: &std::path::Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_munge_key_is_made_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let secrets_dir = dir.path().join("secrets");
    let (model, _) = build_fixture("osg");
    let first = Secrets::load_or_create(&secrets_dir, &model).unwrap();
    let key = first.munge_key("osg").unwrap().to_vec();
    assert_eq!(key.len(), MUNGE_KEY_LEN);
    assert!(key.iter().any(|&b| b != key[0]), "random, not constant");

    let file = secrets_dir.join("osg/munge.key");
    assert_eq!(fs::read(&file).unwrap(), key);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&secrets_dir.join("osg")), 0o700);

    let again = Secrets::load_or_create(&secrets_dir, &model).unwrap();
    assert_eq!(again.munge_key("osg").unwrap(), &key[..]);

    // Another secrets directory: another key, never one derived from the model.
    let other = Secrets::load_or_create(&dir.path().join("other"), &model).unwrap();
    assert_ne!(other.munge_key("osg").unwrap(), &key[..]);
}

#[test]
fn only_slurm_clusters_get_a_munge_key() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = build_fixture("condor");
    let s = Secrets::load_or_create(dir.path(), &model).unwrap();
    assert!(s.munge_key("voc").is_none());
    assert!(!dir.path().join("voc").exists());
}

#[test]
fn a_readable_or_short_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (model, _) = build_fixture("osg");
    Secrets::load_or_create(dir.path(), &model).unwrap();
    let file = dir.path().join("osg/munge.key");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let err = Secrets::load_or_create(dir.path(), &model).unwrap_err();
    assert!(
        matches!(err, SecretsError::Insecure { mode: 0o644, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chmod 600"), "{err}");

    fs::write(&file, b"short").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let err = Secrets::load_or_create(dir.path(), &model).unwrap_err();
    assert!(matches!(err, SecretsError::Size { len: 5, .. }), "{err}");
}

#[test]
fn rendering_a_slurm_cluster_needs_its_key() {
    let (model, plan) = build_fixture("osg");
    let templates = Templates::embedded().unwrap();
    let err = render(&model, &plan, &templates, &Secrets::none()).unwrap_err();
    assert!(matches!(err, RenderError::MissingSecret { ref cluster, .. } if cluster == "osg"));
}

#[test]
fn builds_with_kept_secrets_are_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (model, plan) = build_fixture("osg");
    let templates = Templates::embedded().unwrap();
    let out = |name: &str| {
        let secrets = Secrets::load_or_create(&dir.path().join("secrets"), &model).unwrap();
        let r = render(&model, &plan, &templates, &secrets).unwrap();
        let out = dir.path().join(name);
        vocc_compiler::output::write_tree(&out, &r, &plan, &[]).unwrap();
        common::read_tree(&out)
    };
    assert_eq!(out("a"), out("b"));
}

#[test]
fn the_default_directory_is_beside_the_appliance() {
    assert_eq!(
        default_dir(std::path::Path::new("appliances/osg.voc")),
        std::path::Path::new("appliances/.vocc/secrets")
    );
    assert_eq!(
        default_dir(std::path::Path::new("osg.voc")),
        std::path::Path::new(".vocc/secrets")
    );
}
