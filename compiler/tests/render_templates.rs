//! Templates: a site's overrides, the errors they can make, and the documentation.

mod common;

use common::{build_fixture, test_secrets, text};
use std::fs;
use vocc_compiler::render::{
    render, RenderError, TemplateError, TemplateSource, Templates, TEMPLATES,
};

#[test]
fn a_site_file_replaces_the_embedded_template() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("hostname.hbs"),
        "{{node.hostname}}.{{cluster.domain}}\n",
    )
    .unwrap();
    let templates = Templates::load(Some(dir.path())).unwrap();
    assert_eq!(
        templates.source("hostname"),
        Some(&TemplateSource::Site(dir.path().join("hostname.hbs")))
    );
    assert_eq!(templates.source("hosts"), Some(&TemplateSource::Embedded));
    let (model, plan) = build_fixture("osg");
    let r = render(&model, &plan, &templates, &test_secrets(&model)).unwrap();
    assert_eq!(
        text(&r, "osg-worker3", "files/etc/hostname"),
        "worker3.osg\n"
    );
    assert!(text(&r, "osg-worker3", "files/etc/hosts").contains("worker3.osg"));
}

#[test]
fn an_unknown_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("hostnme.hbs"), "x").unwrap();
    let err = Templates::load(Some(dir.path())).unwrap_err();
    assert!(matches!(err, TemplateError::Unknown { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("hostnme.hbs") && msg.contains("did you mean `hostname.hbs`"),
        "{msg}"
    );

    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("README"), "x").unwrap();
    assert!(Templates::load(Some(dir.path())).is_err());

    // Hidden files (editor swap files, .git) are not templates and not errors.
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(".hosts.hbs.swp"), "x").unwrap();
    assert!(Templates::load(Some(dir.path())).is_ok());

    let missing = dir.path().join("nope");
    let err = Templates::load(Some(&missing)).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn a_template_that_does_not_parse_is_named() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("fstab.hbs"), "{{#each mounts}}\n").unwrap();
    let err = Templates::load(Some(dir.path())).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, TemplateError::Parse { ref name, .. } if name == "fstab"),
        "{msg}"
    );
    assert!(msg.contains("fstab.hbs"), "{msg}");
}

#[test]
fn an_unknown_variable_fails_naming_template_node_and_line() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("meta-data.hbs"),
        "instance-id: {{node.uuid}}\n",
    )
    .unwrap();
    let templates = Templates::load(Some(dir.path())).unwrap();
    let (model, plan) = build_fixture("osg");
    let err = render(&model, &plan, &templates, &test_secrets(&model)).unwrap_err();
    let RenderError::Template {
        template,
        target,
        location,
        ..
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!(template, "meta-data");
    assert_eq!(target, "node `osg-head`");
    assert_eq!(location, "fixtures/osg.voc:30:3");
    assert!(err.to_string().contains("node.uuid"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("fstab.hbs"), "{{role.nmae}}\n").unwrap();
    let templates = Templates::load(Some(dir.path())).unwrap();
    let err = render(&model, &plan, &templates, &test_secrets(&model)).unwrap_err();
    assert!(
        err.to_string().contains("role `head` of cluster `osg`"),
        "{err}"
    );
}

#[test]
fn values_cannot_open_new_lines() {
    let (mut model, plan) = build_fixture("osg");
    model.clusters[0].roles[1].cmdline = vec!["a\nroot=/dev/evil".into()];
    let templates = Templates::embedded().unwrap();
    let r = render(&model, &plan, &templates, &test_secrets(&model)).unwrap();
    let cmdline = text(&r, "osg-worker1", "cmdline");
    assert_eq!(cmdline.lines().count(), 1, "{cmdline:?}");
    assert!(cmdline.contains("a\u{FFFD}root=/dev/evil"));

    let (mut model, plan) = build_fixture("condor");
    model.clusters[0].roles[1].cmdline = vec!["x<y&'z'".into()];
    let r = render(&model, &plan, &templates, &test_secrets(&model)).unwrap();
    assert!(text(&r, "voc-compute1", "libvirt.xml").contains("x&lt;y&amp;&apos;z&apos;"));
}

#[test]
fn every_template_is_documented() {
    let readme = include_str!("../../templates/README.md");
    for t in TEMPLATES {
        assert!(
            readme.contains(&format!("`{}.hbs`", t.name)),
            "templates/README.md lacks {}",
            t.name
        );
    }
}
