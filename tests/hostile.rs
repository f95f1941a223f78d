//! Hostile values: an appliance whose every free-form value holds the worst the
//! language lets through (quotes, backslashes, `#`, `=`, `,`, `$(…)`, `<`, `&`, `]]>`,
//! octal-looking escapes, non-ASCII letters), built, and each generated file read back
//! by the parser of its own format: libxlutil (what `xl create` reads xl.cfg with),
//! HTCondor's configuration reader, libmount (`findmnt`), `exportfs`, libvirt and
//! libxml2, slurmctld's reader through `scontrol`, dnsmasq and ifupdown. Each value must
//! come back as exactly one value, the one written, with nothing added beside it.
//! Where the language rejects a value outright, the test shows the diagnostic.

mod common;

use common::{require, run, serial, Ran};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;
use vocc_compiler::build::{build, BuildOptions};
use vocc_compiler::{compile, FsWorld, Options};

const LIMIT: Duration = Duration::from_secs(30);

/// The worst a quoted string may hold: no control characters (the checker rejects
/// them), everything else. Written here as it reads inside a `.voc` string.
const WORST: &str = r#"x\" EVIL = \"1; $(CONDOR_HOST) $ENV(HOME) \\ \\040 # = , é ]]> <&' --"#;

/// [`WORST`] as the value it denotes.
fn worst() -> String {
    WORST.replace(r#"\""#, "\"").replace(r"\\", "\\")
}

/// The worst a guest path may hold: no white space and no backslash (the language
/// rejects both, see `the_language_rejects_what_no_format_can_carry`), the rest of
/// [`WORST`].
const WORST_PATH: &str = r#"/srv/a#c\"d(e),f'h=é<&>]]>$(X)--="#;

fn worst_path() -> String {
    WORST_PATH.replace(r#"\""#, "\"")
}

/// The site's store: hosts read images from it, so it reaches xl.cfg and the
/// libvirt domain.
const WORST_STORE: &str = r#"/srv/vo\"cc\\x,y #z é<&>]]>"#;

fn worst_store() -> String {
    WORST_STORE.replace(r#"\""#, "\"").replace(r"\\", "\\")
}

/// Kernel arguments: words without `"` (the checker rejects it) and everything else.
const WORST_CMDLINE: &str = r#"quiet\\ a=b;c=[d,e] 'q' #h é ]]> <&> x\\\\y \\040 -- $(X)"#;

fn worst_cmdline() -> Vec<String> {
    WORST_CMDLINE
        .replace(r"\\", "\\")
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// One cluster of `hypervisor` with a scheduler of `kind` and the worst values.
fn appliance(hypervisor: &str, kind: &str) -> String {
    let name = if hypervisor == "xen" { "xv" } else { "k--v" };
    // Partition names are plain (`[A-Za-z0-9_.-]`): the most they may hold.
    let partition = if kind == "slurm" {
        "partition \"a.b_c-D\""
    } else {
        ""
    };
    format!(
        r#"
cluster {name} {{
  vo "{WORST}"
  hypervisor {hypervisor}
  network private {{ subnet 10.9.0.0/24 }}
  layer tiny {{ from busybox }}
  {partition}
  role head {{
    root tiny
    nic eth0 private
    cmdline "{WORST_CMDLINE}"
    scheduler {kind} controller
    disk tiny at "{WORST_PATH}"
    export /srv/x to private
    export "{WORST_PATH}" to private rw
  }}
  role worker {{
    count 2
    root tiny
    nic eth0 private
    mount head:/srv/x at "{WORST_PATH}"
    scheduler {kind} compute
  }}
}}
site s {{
  host h1 {{ cpu 8; memory 16G; disk 200G; hypervisor [kvm xen] }}
  store "{WORST_STORE}"
}}
"#
    )
}

/// Builds `text` (configuration only); returns the temporary directory and the
/// output tree's `nodes/`.
fn generate(text: &str) -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("app.voc");
    fs::write(&file, text).unwrap();
    let c = compile(&FsWorld, &file, &Options::default()).unwrap();
    let Some(model) = c.model else {
        let messages: Vec<&str> = c.diags.iter().map(|d| d.message.as_str()).collect();
        panic!("the hostile appliance does not compile: {messages:#?}");
    };
    let plan = vocc_compiler::plan::plan(&model).expect("the hostile appliance places");
    let out = tmp.path().join("out");
    let options = BuildOptions {
        out: out.clone(),
        templates: None,
        secrets: tmp.path().join("secrets"),
        config_only: true,
        store: None,
        json_events: false,
    };
    build(&model, plan, &options).unwrap();
    (tmp, out.join("nodes"))
}

/// The error messages of compiling `text`.
fn errors(text: &str) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("app.voc");
    fs::write(&file, text).unwrap();
    let c = compile(&FsWorld, &file, &Options::default()).unwrap();
    c.diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.message.clone())
        .collect()
}

fn judge(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/judges")
        .join(script)
}

/// Runs a judge script under `python3` and reads its JSON.
fn python_judge(script: &str, file: &Path, names: &[&str]) -> Value {
    let python = require("python3", "python3");
    let ran = run(
        Command::new(python)
            .arg(judge(script))
            .arg(file)
            .args(names),
        LIMIT,
    );
    assert!(ran.success(), "{}", ran.report());
    serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("{e}: {}", ran.report()))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------
// xl.cfg

#[test]
fn xl_reads_every_value_of_xen_cfg_back_whole() {
    let (_tmp, nodes) = generate(&appliance("xen", "condor"));
    let node = nodes.join("xv-head");
    let cfg = node.join("xen.cfg");
    let got = python_judge(
        "xl_cfg.py",
        &cfg,
        &[
            "name", "kernel", "ramdisk", "cmdline", "disk", "vif", "EVIL", "extra",
        ],
    );
    let store = worst_store();
    assert_eq!(got["name"], "xv-head");
    assert_eq!(got["kernel"], format!("{store}/layers/xv/tiny.vmlinuz"));
    assert_eq!(got["ramdisk"], format!("{store}/layers/xv/tiny.initrd"));
    // The command line xl passes is the node's own, word for word.
    let cmdline = read(&node.join("cmdline"));
    let words: Vec<&str> = cmdline.split_whitespace().collect();
    let expected = worst_cmdline();
    assert_eq!(&words[4..words.len() - 1], expected.as_slice(), "{cmdline}");
    assert_eq!(got["cmdline"], cmdline.trim());
    let disks: Vec<&str> = got["disk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(
        disks,
        [
            format!("format=qcow2,vdev=xvda,access=rw,target={store}/nodes/xv-head/root.qcow2"),
            format!("format=raw,vdev=xvdb,access=ro,target={store}/layers/xv/tiny.img"),
            format!("format=raw,vdev=xvdc,access=ro,target={store}/nodes/xv-head/cidata.img"),
        ]
    );
    assert_eq!(got["vif"].as_array().map(Vec::len), Some(1));
    assert_eq!(got["EVIL"], Value::Null);
    assert_eq!(got["extra"], Value::Null);
}

#[test]
fn xl_judge_notices_an_injected_setting() {
    // The judge itself: a string that ends early lets a value set other keys.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("xen.cfg");
    fs::write(
        &cfg,
        "cmdline = \"quiet\"; disk=[\"phy:/dev/sda,xvdz,w\"]; extra=\"\"\n",
    )
    .unwrap();
    let got = python_judge("xl_cfg.py", &cfg, &["cmdline", "disk", "extra"]);
    assert_eq!(got["cmdline"], "quiet");
    assert_eq!(got["disk"][0], "phy:/dev/sda,xvdz,w");
    assert_eq!(got["extra"], "");
    fs::write(&cfg, "cmdline = \"a\" b\"\n").unwrap();
    let python = require("python3", "python3");
    let ran = run(
        Command::new(python).arg(judge("xl_cfg.py")).arg(&cfg),
        LIMIT,
    );
    assert!(!ran.success(), "{}", ran.report());
}

// ---------------------------------------------------------------------------------
// HTCondor

#[test]
fn htcondor_reads_the_vo_back_whole() {
    let (_tmp, nodes) = generate(&appliance("xen", "condor"));
    for node in ["xv-head", "xv-worker1"] {
        let conf = nodes
            .join(node)
            .join("files/etc/condor/condor_config.local");
        let got = python_judge(
            "condor_config.py",
            &conf,
            &["VOCC_VO", "EVIL", "CONDOR_HOST", "STARTD_ATTRS"],
        );
        assert_eq!(got["VOCC_VO"]["classad"], worst(), "{node}: {got}");
        assert_eq!(got["EVIL"]["value"], Value::Null, "{node}: {got}");
        assert_eq!(got["CONDOR_HOST"]["value"], "head.xv", "{node}: {got}");
        assert_eq!(got["STARTD_ATTRS"]["value"], " VOCC_VO", "{node}: {got}");
    }
}

#[test]
fn htcondor_judge_notices_a_broken_string() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("condor_config");
    fs::write(
        &conf,
        "CONDOR_HOST = h\nVOCC_VO = \"x\" VOCC_EVIL = \"1\"\nVOCC_B = \"$(CONDOR_HOST)\"\n",
    )
    .unwrap();
    let got = python_judge("condor_config.py", &conf, &["VOCC_VO", "VOCC_B"]);
    assert_ne!(got["VOCC_VO"]["classad"], "x\" VOCC_EVIL = \"1", "{got}");
    assert_eq!(got["VOCC_B"]["classad"], "h", "{got}");
}

// ---------------------------------------------------------------------------------
// fstab

/// libmount's reading of an fstab: (source, target, type) per entry.
fn findmnt(fstab: &Path) -> Vec<(String, String, String)> {
    let findmnt = require("findmnt", "util-linux");
    let ran = run(
        Command::new(findmnt).arg("--tab-file").arg(fstab).args([
            "-J",
            "-o",
            "SOURCE,TARGET,FSTYPE",
        ]),
        LIMIT,
    );
    assert!(ran.success(), "{}", ran.report());
    let v: Value = serde_json::from_str(&ran.stdout).unwrap();
    v["filesystems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            (s("source"), s("target"), s("fstype"))
        })
        .collect()
}

#[test]
fn libmount_reads_fstab_paths_back_whole() {
    let (_tmp, nodes) = generate(&appliance("xen", "condor"));
    let path = worst_path();
    assert_eq!(
        findmnt(&nodes.join("xv-head/files/etc/fstab")),
        [("/dev/xvdb".to_string(), path.clone(), "ext4".to_string())]
    );
    assert_eq!(
        findmnt(&nodes.join("xv-worker1/files/etc/fstab")),
        [("10.9.0.1:/srv/x".to_string(), path, "nfs".to_string())]
    );
}

#[test]
fn the_boot_hook_reads_exported_paths_as_exportfs_does() {
    // The boot hook makes the exported directories before init: it must decode the
    // same escapes.
    let (tmp, nodes) = generate(&appliance("xen", "condor"));
    let hook = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/boot/hook.sh"));
    let start = hook.find("unoctal() {").expect("hook.sh defines unoctal");
    let end = start + hook[start..].find("\n}\n").expect("unoctal ends") + 3;
    let script = tmp.path().join("unoctal.sh");
    fs::write(
        &script,
        format!(
            "{}\nawk '!/^#/ {{ print $1 }}' \"$1\" | unoctal\n",
            &hook[start..end]
        ),
    )
    .unwrap();
    // The initramfs runs the hook with busybox.
    let busybox = require("busybox", "busybox-static");
    let ran = run(
        Command::new(busybox)
            .args(["sh"])
            .arg(&script)
            .arg(nodes.join("xv-head/files/etc/exports")),
        LIMIT,
    );
    assert!(ran.success(), "{}", ran.report());
    assert_eq!(
        ran.stdout.lines().collect::<Vec<_>>(),
        ["/srv/x", worst_path().as_str()]
    );
}

// ---------------------------------------------------------------------------------
// exports

/// Loads `exports` with exportfs in a private mount namespace, with the exported
/// directories made (by their real names, given as arguments) on a tmpfs over /srv;
/// returns what exportfs did and the export table it wrote.
fn exportfs(exports: &Path, dirs: &[String]) -> (Ran, String) {
    require("exportfs", "nfs-kernel-server");
    let unshare = require("unshare", "util-linux");
    let script = "exports=$1; shift; mount --bind \"$exports\" /etc/exports && \
                  mount -t tmpfs tmpfs /var/lib/nfs && mount -t tmpfs tmpfs /srv && \
                  mkdir -p \"$@\" && exportfs -ra && cat /var/lib/nfs/etab";
    let ran = run(
        Command::new(unshare)
            .args(["-m", "sh", "-c", script, "sh"])
            .arg(exports)
            .args(dirs),
        LIMIT,
    );
    let etab = ran.stdout.clone();
    (ran, etab)
}

/// Decodes exports' `\ooo` escapes.
fn unoctal(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let n = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |n, c| n * 8 + u32::from(c - b'0'));
            out.push(n as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn exportfs_reads_exported_paths_back_whole() {
    let _serial = serial();
    let (_tmp, nodes) = generate(&appliance("xen", "condor"));
    let path = worst_path();
    let (ran, etab) = exportfs(
        &nodes.join("xv-head/files/etc/exports"),
        &["/srv/x".to_string(), path.clone()],
    );
    // exportfs warns (and still exits 0) about paths it cannot find.
    assert!(
        ran.success() && !ran.stderr.contains("exportfs:"),
        "{}",
        ran.report()
    );
    let mut exported: Vec<(String, String)> = etab
        .lines()
        .map(|l| {
            let (p, rest) = l.split_once('\t').unwrap();
            (unoctal(p), rest.split('(').next().unwrap().to_string())
        })
        .collect();
    exported.sort();
    assert_eq!(
        exported,
        [
            (path, "10.9.0.0/24".to_string()),
            ("/srv/x".to_string(), "10.9.0.0/24".to_string()),
        ],
        "{etab}"
    );
}

#[test]
fn exportfs_judge_notices_a_mangled_path() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("exports");
    // A raw quote opens a quoted path that runs over the next lines.
    fs::write(
        &file,
        "/srv/a\"b\t10.9.0.0/24(ro,sync,no_subtree_check)\n\
         /srv/x\t10.9.0.0/24(ro,sync,no_subtree_check)\n",
    )
    .unwrap();
    let (ran, _) = exportfs(&file, &["/srv/a\"b".to_string(), "/srv/x".to_string()]);
    assert!(
        !ran.success() || ran.stderr.contains("exportfs:"),
        "{}",
        ran.report()
    );
}

// ---------------------------------------------------------------------------------
// libvirt

/// `xpath` of `xml`, as libxml2 reads it.
fn xpath(xml: &Path, xpath: &str) -> String {
    let xmllint = require("xmllint", "libxml2-utils");
    let ran = run(
        Command::new(xmllint).args(["--xpath", xpath]).arg(xml),
        LIMIT,
    );
    assert!(ran.success(), "{}", ran.report());
    ran.stdout
        .strip_suffix('\n')
        .unwrap_or(&ran.stdout)
        .to_string()
}

#[test]
fn libvirt_reads_every_value_of_the_domain_back_whole() {
    let _serial = serial();
    let (_tmp, nodes) = generate(&appliance("kvm", "condor"));
    let node = nodes.join("k--v-head");
    let xml = node.join("libvirt.xml");
    let validate = require("virt-xml-validate", "libvirt-clients");
    let ran = run(Command::new(validate).arg(&xml).arg("domain"), LIMIT);
    assert!(
        ran.success() && ran.output().contains("validates"),
        "{}",
        ran.report()
    );
    let store = worst_store();
    let cmdline = read(&node.join("cmdline"));
    assert_eq!(xpath(&xml, "string(/domain/os/cmdline)"), cmdline.trim());
    assert_eq!(
        xpath(&xml, "string(/domain/os/kernel)"),
        format!("{store}/layers/k--v/tiny.vmlinuz")
    );
    assert_eq!(
        xpath(&xml, "string(/domain/devices/disk[1]/source/@file)"),
        format!("{store}/nodes/k--v-head/root.qcow2")
    );
    assert_eq!(xpath(&xml, "string(/domain/name)"), "k--v-head");
    assert_eq!(xpath(&xml, "count(/domain/devices/disk)"), "3");
    // The comment names the node even though XML comments cannot hold `--`.
    assert!(
        xpath(&xml, "string(/comment())").contains("k- -v-head"),
        "{}",
        read(&xml)
    );
}

// ---------------------------------------------------------------------------------
// Slurm

#[test]
fn slurm_reads_partitions_and_comments_back_whole() {
    let (_tmp, nodes) = generate(&appliance("xen", "slurm"));
    let conf = nodes.join("xv-head/files/etc/slurm/slurm.conf");
    // scontrol reads slurm.conf with slurmctld's reader and expands host lists; it
    // fails on a line it cannot read.
    let scontrol = require("scontrol", "slurm-client");
    let text = read(&conf);
    let partition = text
        .lines()
        .find(|l| l.starts_with("PartitionName="))
        .expect("a partition line");
    assert!(
        partition.starts_with("PartitionName=a.b_c-D Nodes=worker[1-2] "),
        "{partition}"
    );
    let ran = run(
        Command::new(scontrol)
            .env("SLURM_CONF", &conf)
            .args(["show", "hostnames", "worker[1-2]"]),
        LIMIT,
    );
    assert!(ran.success(), "{}", ran.report());
    // The VO is in a comment: one line, so nothing after it is read as a key.
    let comment: Vec<&str> = text.lines().filter(|l| l.contains("EVIL")).collect();
    assert_eq!(comment.len(), 1, "{text}");
    assert!(comment[0].starts_with('#'), "{text}");
}

// ---------------------------------------------------------------------------------
// What the language rejects

#[test]
fn the_language_rejects_what_no_format_can_carry() {
    let cases: &[(&str, &str)] = &[
        // A quote in a kernel argument would swallow the arguments after it.
        (
            r#"cmdline "quiet\"; disk=[\"phy:/dev/sda,xvdz,w\"]; extra=\"""#,
            "kernel argument `quiet\";` of role `head` contains `\"`",
        ),
        // fstab and exports fields end at white space.
        (
            r#"disk tiny at "/opt/a b""#,
            "guest path `/opt/a b` contains whitespace",
        ),
        // fstab and exports decode a path's escapes (exportfs twice).
        (
            r#"export "/srv/a\\040b" to private"#,
            "guest path `/srv/a\\040b` contains `\\`",
        ),
        (
            r#"disk tiny at "/opt/a\\b""#,
            "guest path `/opt/a\\b` contains `\\`",
        ),
        // Names become host names, file names, and interface names.
        (r#"nic "eth0 x" private"#, "`eth0 x`"),
        (r#"nic "eth0#x" private"#, "`eth0#x`"),
        (r#"cmdline "a\nb""#, "value of `cmdline` contains a newline"),
    ];
    for (stmt, message) in cases {
        let text = format!(
            "cluster c {{\n  hypervisor xen\n  network private {{ subnet 10.9.0.0/24 }}\n  \
             layer tiny {{ from busybox }}\n  role head {{\n    root tiny\n    {stmt}\n  }}\n}}\n"
        );
        let errors = errors(&text);
        assert!(
            errors.iter().any(|e| e.contains(message)),
            "`{stmt}`: no error with `{message}` in {errors:#?}"
        );
    }
    for (value, message) in [
        ("\"a b\"", "not a valid DNS domain"),
        ("\"a#b\"", "not a valid DNS domain"),
        ("\"a\\\"b\"", "not a valid DNS domain"),
    ] {
        let text = format!("cluster c {{ domain {value} }}\n");
        let errors = errors(&text);
        assert!(
            errors.iter().any(|e| e.contains(message)),
            "`domain {value}`: {errors:#?}"
        );
    }
}

// ---------------------------------------------------------------------------------
// dnsmasq and ifupdown: what reaches them is what the language lets through for
// names and addresses (labels, interface names, addresses), at its longest.

#[test]
fn dnsmasq_and_ifupdown_read_the_longest_names_back_whole() {
    let _serial = serial();
    let label = "a".repeat(40);
    let domain = format!("{}.{}.{}", "b".repeat(63), "c-d".repeat(21), "e0");
    // Node ids `<cluster>-<host name>` are host names of at most 63 characters.
    let role = format!("r-{}", "z".repeat(19));
    let nic = "e_t.h-0123456_9";
    let text = format!(
        r#"
cluster {label} {{
  domain "{domain}"
  network private {{ subnet 10.9.0.0/24; assign dhcp; dns 10.9.0.1; gateway 10.9.0.254 }}
  layer tiny {{ from busybox }}
  role head {{ root tiny; nic eth0 private pool; scheduler slurm controller }}
  role {role} {{ count 2; root tiny; nic {nic} private }}
}}
"#
    );
    let (_tmp, nodes) = generate(&text);
    let head = nodes.join(format!("{label}-head"));
    let dnsmasq = require("dnsmasq", "dnsmasq-base");
    let ran = run(
        Command::new(dnsmasq)
            .arg("--test")
            .arg("-C")
            .arg(head.join("files/etc/dnsmasq.conf")),
        LIMIT,
    );
    assert!(
        ran.success() && ran.output().contains("syntax check OK"),
        "{}",
        ran.report()
    );
    let worker = fs::read_dir(&nodes)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(&format!("{role}1")))
        .expect("a worker");
    let ifquery = require("ifquery", "ifupdown");
    let interfaces = worker.join("files/etc/network/interfaces");
    let ran = run(
        Command::new(&ifquery)
            .arg("-i")
            .arg(&interfaces)
            .arg("--list"),
        LIMIT,
    );
    assert!(ran.success(), "{}", ran.report());
    assert_eq!(ran.stdout.lines().collect::<Vec<_>>(), ["lo", nic]);
}
