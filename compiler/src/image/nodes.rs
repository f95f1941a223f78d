//! Each node's own artifacts: its root overlay over the shared root layer, overlays of
//! its writable data disks, its swap disk, and its config drive.
//!
//! An overlay depends only on its backing path, format and size, so all nodes of a
//! role share one store object (placed in each node's directory). A swap disk is a
//! blank sparse file of the role's swap size; the boot hook gives it a signature. A
//! config drive holds the node's rendered files and `vocc/node.env`.

use super::drive::{self, DriveFile};
use super::store::Output;
use super::tools::{Run, QEMU_IMG};
use super::{Builder, BuiltLayer, ImageError, Placed, NODE_BUILDER};
use crate::model::{Cluster, Model, Node, Role};
use crate::output::ManifestImage;
use crate::render::{hex, Rendered};
use std::collections::{BTreeMap, HashMap};
use vocc_runtime::Plan;

/// Builds (or finds) every node's artifacts.
pub(super) fn build(
    b: &mut Builder,
    model: &Model,
    plan: &Plan,
    rendered: &Rendered,
    layers: &HashMap<(String, String), BuiltLayer>,
) -> Result<Vec<Placed>, ImageError> {
    let dirs: HashMap<&str, &vocc_runtime::plan::PlanNode> =
        plan.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let mut placed = Vec::new();
    for cluster in &model.clusters {
        for node in &cluster.nodes {
            let Some(pn) = dirs.get(node.id.as_str()) else {
                continue;
            };
            let Some(role) = cluster.role(&node.role) else {
                continue;
            };
            let source = role.origin.location.as_str();
            let dir = pn.dir.trim_end_matches('/');
            let mut place = |path: String,
                             out: &Output,
                             key: &str,
                             kind: &str,
                             format: &str,
                             layer: Option<String>| {
                placed.push(Placed {
                    symlink: false,
                    image: ManifestImage {
                        path,
                        sha256: out.sha256.clone(),
                        size: out.size,
                        kind: kind.into(),
                        format: format.into(),
                        cluster: cluster.name.clone(),
                        node: Some(node.id.clone()),
                        layer,
                        source: source.to_owned(),
                        recipe: key.to_owned(),
                        cache: String::new(),
                        reason: None,
                    },
                });
            };

            // The root overlay, over the role's root image.
            let root_id = pn
                .root_image
                .clone()
                .or_else(|| pn.root.first().cloned())
                .unwrap_or_default();
            let root_name = root_id.rsplit('/').next().unwrap_or(&root_id).to_owned();
            if let Some(layer) = layers.get(&(cluster.name.clone(), root_name.clone())) {
                let (out, key) = overlay(b, &cluster.name, &root_name, layer, &node.id, source)?;
                place(
                    format!("{dir}/root.qcow2"),
                    &out,
                    &key,
                    "overlay",
                    "qcow2",
                    Some(root_id.clone()),
                );
            }
            // Writable data disks.
            for d in role
                .disks
                .iter()
                .filter(|d| d.access == crate::model::Access::Rw)
            {
                if let Some(layer) = layers.get(&(cluster.name.clone(), d.layer.clone())) {
                    let (out, key) = overlay(
                        b,
                        &cluster.name,
                        &d.layer,
                        layer,
                        &node.id,
                        &d.origin.location,
                    )?;
                    let id = format!("{}/{}", cluster.name, d.layer);
                    place(
                        format!("{dir}/{}.qcow2", d.layer),
                        &out,
                        &key,
                        "data-overlay",
                        "qcow2",
                        Some(id),
                    );
                }
            }
            // Swap.
            if let Some(size) = role.swap.filter(|s| *s > 0) {
                let recipe =
                    serde_json::json!({ "builder": NODE_BUILDER, "kind": "swap", "size": size });
                let e = b.cached(
                    &format!("swap {}", node.id),
                    recipe,
                    vec![],
                    source,
                    |b, work, _| {
                        let path = work.join("swap.img");
                        let f = std::fs::File::create(&path)
                            .map_err(|e| ImageError::io("cannot create a swap disk".into(), e))?;
                        f.set_len(size)
                            .map_err(|e| ImageError::io("cannot size a swap disk".into(), e))?;
                        Ok([("swap".to_owned(), b.store.insert(&path, 0o444)?)].into())
                    },
                )?;
                place(
                    format!("{dir}/swap.img"),
                    &e.outputs["swap"],
                    &e.key,
                    "swap",
                    "raw",
                    None,
                );
            }
            // The config drive.
            let (out, key) = config_drive(b, cluster, role, node, rendered, source)?;
            place(
                format!("{dir}/cidata.img"),
                &out,
                &key,
                "config-drive",
                "iso9660",
                None,
            );
        }
    }
    Ok(placed)
}

/// The qcow2 overlay over `layers/<cluster>/<name>.img`, named relative to the node's
/// directory so that it resolves in OUT and in a host store of the same shape.
fn overlay(
    b: &mut Builder,
    cluster: &str,
    name: &str,
    layer: &BuiltLayer,
    node: &str,
    source: &str,
) -> Result<(Output, String), ImageError> {
    let backing = format!("../../layers/{cluster}/{name}.img");
    let recipe = serde_json::json!({
        "builder": NODE_BUILDER, "kind": "overlay", "backing": backing,
        "format": layer.format, "size": layer.virtual_size,
    });
    let e = b.cached(
        &format!("overlay {node}"),
        recipe,
        vec![],
        source,
        |b, work, _| {
            let path = work.join("overlay.qcow2");
            // `-u`: the backing file is named relative to where the overlay will be, not
            // where it is made; give the size instead of letting qemu-img open it.
            Run::new(QEMU_IMG, source)
                .args([
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-F",
                    layer.format,
                    "-u",
                    "-b",
                    &backing,
                    "--",
                ])
                .arg(&path)
                .arg(layer.virtual_size.to_string())
                .run()?;
            Ok([("overlay".to_owned(), b.store.insert(&path, 0o444)?)].into())
        },
    )?;
    Ok((e.outputs["overlay"].clone(), e.key))
}

/// The node's config drive: cloud-init's files at the root, vocc's under `vocc/`.
fn config_drive(
    b: &mut Builder,
    cluster: &Cluster,
    role: &Role,
    node: &Node,
    rendered: &Rendered,
    source: &str,
) -> Result<(Output, String), ImageError> {
    // The node that serves DHCP on a network gets its dnsmasq.conf: it runs dnsmasq.
    let dhcp = rendered
        .node(&node.id)
        .is_some_and(|out| out.files().any(|f| f.path == "files/etc/dnsmasq.conf"));
    let env = node_env(cluster, role, node, dhcp);
    let mut files: Vec<DriveFile> = vec![DriveFile {
        path: "vocc/node.env".into(),
        mode: 0o644,
        bytes: env.as_bytes(),
    }];
    if let Some(out) = rendered.node(&node.id) {
        for f in out.files() {
            let path = if let Some(p) = f.path.strip_prefix("cidata/") {
                p.to_owned()
            } else if let Some(p) = f.path.strip_prefix("files/") {
                format!("vocc/files/{p}")
            } else {
                continue;
            };
            let Some(object) = rendered.objects.get(&f.digest) else {
                continue;
            };
            files.push(DriveFile {
                path,
                mode: object.mode,
                bytes: &object.bytes,
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let listing: Vec<serde_json::Value> = files
        .iter()
        .map(|f| {
            serde_json::json!({
                "path": f.path,
                "mode": format!("{:04o}", f.mode),
                "sha256": hex(&sha2::Digest::finalize(sha2::Digest::chain_update(sha2::Sha256::default(), f.bytes)).into()),
            })
        })
        .collect();
    let recipe = serde_json::json!({
        "builder": NODE_BUILDER, "kind": "config-drive", "label": drive::LABEL, "files": listing,
    });
    let e = b.cached(
        &format!("config drive {}", node.id),
        recipe,
        vec![],
        source,
        |b, work, _| {
            let image = work.join("cidata.img");
            drive::make(&work.join("tree"), &image, &files, source)?;
            Ok([("drive".to_owned(), b.store.insert(&image, 0o400)?)].into())
        },
    )?;
    Ok((e.outputs["drive"].clone(), e.key))
}

/// `vocc/node.env`: shell assignments the hook and the layer's scripts read.
pub(super) fn node_env(cluster: &Cluster, role: &Role, node: &Node, dhcp: bool) -> String {
    let (enable, disable) = units(role, dhcp);
    let vars: BTreeMap<&str, String> = [
        ("VOCC_NODE", node.id.clone()),
        ("VOCC_HOSTNAME", node.hostname.clone()),
        ("VOCC_FQDN", format!("{}.{}", node.hostname, cluster.domain)),
        ("VOCC_CLUSTER", cluster.name.clone()),
        ("VOCC_ROLE", role.name.clone()),
        ("VOCC_ENABLE", enable.join(" ")),
        ("VOCC_DISABLE", disable.join(" ")),
        ("VOCC_NET", early_network(cluster, node)),
        ("VOCC_SECRETS", secrets(role)),
    ]
    .into();
    let mut out = String::from("# vocc node environment: generated by vocc\n");
    for (k, v) in vars {
        out.push_str(&format!("{k}='{}'\n", v.replace('\'', "'\\''")));
    }
    out
}

/// `VOCC_SECRETS`: the secrets of the role's batch system and the user each belongs
/// to (`PATH:USER`, space-separated), which the hook makes that user's alone.
fn secrets(role: &Role) -> String {
    let Some(part) = &role.scheduler else {
        return String::new();
    };
    let secrets = crate::scheduler::of(part.kind).secrets();
    let specs: Vec<String> = secrets
        .iter()
        .map(|s| format!("{}:{}", s.path, s.owner))
        .collect();
    specs.join(" ")
}

/// `VOCC_NET`: the node's addresses, for the hook to set before PID 1 (`NAME,MAC,
/// ADDRESS/PREFIX,GATEWAY` per NIC, `-` for no gateway, space-separated), when every
/// NIC has a fixed address (static or pool); empty when one has DHCP or an external
/// address, which the layer's own network service then brings up.
fn early_network(cluster: &Cluster, node: &Node) -> String {
    use crate::model::NicMethod;
    let mut specs = Vec::new();
    for nic in &node.nics {
        let (NicMethod::Static | NicMethod::Pool, Some(address)) = (nic.method, nic.address) else {
            return String::new();
        };
        let Some(net) = cluster.networks.iter().find(|n| n.name == nic.network) else {
            return String::new();
        };
        let gateway = net
            .gateway
            .map_or_else(|| "-".to_owned(), |g| g.to_string());
        specs.push(format!(
            "{},{},{address}/{},{gateway}",
            nic.name, nic.mac, net.prefix
        ));
    }
    specs.join(" ")
}

/// The systemd units a node of `role` runs or does not run, among those a shared
/// Debian layer may carry for other roles. The batch system's daemons are not among
/// them: `/etc/vocc/services` names those ([`crate::scheduler::services`]).
fn units(role: &Role, dhcp: bool) -> (Vec<&'static str>, Vec<&'static str>) {
    let (mut enable, mut disable) = (Vec::new(), Vec::new());
    let mut pick = |name, on| {
        if on {
            enable.push(name)
        } else {
            disable.push(name)
        }
    };
    pick("nfs-server", !role.exports.is_empty());
    // The DHCP server of a network (the layer needs the `dnsmasq` package).
    pick("dnsmasq", dhcp);
    (enable, disable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{compile, Options};
    use crate::world::MemWorld;
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::Path;

    fn env_of(text: &str, node: &str) -> String {
        let world = MemWorld::new().with("/a.voc", text);
        let c = compile(&world, Path::new("/a.voc"), &Options::default()).unwrap();
        let model = c.model.unwrap_or_else(|| panic!("{:?}", c.diags));
        let cluster = &model.clusters[0];
        let node = cluster.nodes.iter().find(|n| n.id == node).unwrap();
        let role = cluster.role(&node.role).unwrap();
        node_env(cluster, role, node, false)
    }

    const CLUSTER: &str = r#"
cluster c {
  layer os {
    from busybox
  }
  network private {
    subnet 10.1.0.0/24
    assign pool
  }
  network public {
    subnet 192.0.2.0/28
    assign static
    gateway 192.0.2.1
  }
  network lab {
    subnet 10.9.0.0/24
    assign dhcp
  }
  role head {
    root os
    nic eth0 private
    nic eth1 public 192.0.2.10
  }
  role worker {
    count 2
    root os
    nic eth0 private
    nic eth1 lab
  }
  role dhcpd {
    root os
    nic eth0 lab pool
  }
}
"#;

    /// The services file names a node's batch daemons; node.env names none of them,
    /// so that no daemon is named in two places that could disagree.
    #[test]
    fn node_env_leaves_the_batch_daemons_to_the_services_file() {
        let slurm = CLUSTER
            .replace("root os\n    nic eth0 private\n    nic eth1 public", "root os\n    scheduler slurm controller\n    nic eth0 private\n    nic eth1 public")
            .replace("count 2\n    root os", "count 2\n    root os\n    scheduler slurm compute");
        assert!(
            slurm.contains("scheduler slurm controller")
                && slurm.contains("scheduler slurm compute")
        );
        let daemons: Vec<&str> = crate::scheduler::ALL
            .iter()
            .flat_map(|s| s.daemons())
            .flat_map(|d| d.names.iter().copied())
            .collect();
        for node in ["c-head", "c-worker1", "c-dhcpd"] {
            let env = env_of(&slurm, node);
            let units: Vec<&str> = env
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("VOCC_ENABLE=")
                        .or(l.strip_prefix("VOCC_DISABLE="))
                })
                .flat_map(|v| v.trim_matches('\'').split_whitespace())
                .collect();
            assert_eq!(units, ["nfs-server", "dnsmasq"], "{node}: {env}");
            assert!(units.iter().all(|u| !daemons.contains(u)), "{node}: {env}");
        }
    }

    /// The node that serves DHCP on a network runs dnsmasq; the others keep it off.
    #[test]
    fn the_dhcp_server_runs_dnsmasq() {
        let world = MemWorld::new().with("/a.voc", CLUSTER);
        let c = compile(&world, Path::new("/a.voc"), &Options::default()).unwrap();
        let model = c.model.unwrap();
        let cluster = &model.clusters[0];
        let node = &cluster.nodes[0];
        let role = cluster.role(&node.role).unwrap();
        let on = node_env(cluster, role, node, true);
        assert!(
            on.contains("VOCC_ENABLE='dnsmasq'") || on.contains(" dnsmasq'"),
            "{on}"
        );
        assert!(!on
            .lines()
            .any(|l| l.starts_with("VOCC_DISABLE=") && l.contains("dnsmasq")));
        let off = node_env(cluster, role, node, false);
        assert!(off
            .lines()
            .any(|l| l.starts_with("VOCC_DISABLE=") && l.contains("dnsmasq")));
    }

    /// Runs the boot hook with `env` as node.env and `files` on the drive against a
    /// root whose passwd has `munge`; returns the root and what `chown` was asked.
    fn hook(env: &str, files: &[(&str, u32)]) -> (tempfile::TempDir, String) {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let (drive, root, bin) = (
            tmp.path().join("drive"),
            tmp.path().join("root"),
            tmp.path().join("bin"),
        );
        for d in [drive.join("vocc/files"), root.join("etc"), bin.clone()] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(drive.join("vocc/node.env"), env).unwrap();
        for (path, mode) in files {
            let p = drive.join("vocc/files").join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"key").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
        }
        let passwd = "root:x:0:0::/root:/bin/sh\nmunge:x:105:107::/nonexistent:/bin/false\n";
        std::fs::write(root.join("etc/passwd"), passwd).unwrap();
        let log = tmp.path().join("chown.log");
        for stub in ["hostname", "mount", "swapon", "mkswap", "ip", "dd", "chown"] {
            let body = if stub == "chown" {
                format!("#!/bin/sh\necho \"$@\" >>'{}'\n", log.display())
            } else {
                "#!/bin/sh\nexit 0\n".to_owned()
            };
            let p = bin.join(stub);
            std::fs::write(&p, body).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let script = tmp.path().join("hook.sh");
        std::fs::write(&script, crate::image::BOOT_HOOK).unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = std::process::Command::new("sh")
            .arg(&script)
            .arg(&drive)
            .arg(&root)
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let asked = std::fs::read_to_string(&log).unwrap_or_default();
        (tmp, asked)
    }

    /// A batch system's secret reaches a node as its module says: the hook gives it to
    /// the secret's user alone.
    #[test]
    fn the_hook_gives_a_batch_systems_secret_to_its_user_alone() {
        let slurm = CLUSTER.replace(
            "root os\n    nic eth0 private\n    nic eth1 public",
            "root os\n    scheduler slurm controller\n    nic eth0 private\n    nic eth1 public",
        );
        let env = env_of(&slurm, "c-head");
        assert!(
            env.contains("VOCC_SECRETS='/etc/munge/munge.key:munge'\n"),
            "{env}"
        );
        let key = [("etc/munge/munge.key", 0o600)];
        let (root, asked) = hook(&env, &key);
        let placed = root.path().join("root/etc/munge/munge.key");
        let mode = std::fs::metadata(&placed).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400);
        assert_eq!(asked, format!("105:107 {}\n", placed.display()));
        // A node outside the batch system has no secret to give.
        let other = env_of(&slurm, "c-dhcpd");
        assert!(other.contains("VOCC_SECRETS=''\n"), "{other}");
        let (_root, asked) = hook(&other, &[]);
        assert_eq!(asked, "");
    }

    #[test]
    fn fixed_addresses_go_to_the_hook_only_when_every_nic_has_one() {
        let head = env_of(CLUSTER, "c-head");
        let line = head
            .lines()
            .find(|l| l.starts_with("VOCC_NET="))
            .unwrap()
            .to_owned();
        let fields: Vec<Vec<&str>> = line["VOCC_NET='".len()..line.len() - 1]
            .split(' ')
            .map(|s| s.split(',').collect())
            .collect();
        assert_eq!(fields.len(), 2, "{line}");
        assert_eq!(fields[0][0], "eth0");
        assert_eq!(fields[0][3], "-");
        assert!(fields[0][2].starts_with("10.1.0.") && fields[0][2].ends_with("/24"));
        assert_eq!(fields[1][0], "eth1");
        assert_eq!(&fields[1][2..], ["192.0.2.10/28", "192.0.2.1"]);
        assert!(fields[1][1].starts_with("02:"), "{line}");
        // A DHCP NIC leaves all of the node's network to the layer's own service.
        assert!(env_of(CLUSTER, "c-worker1").contains("VOCC_NET=''\n"));
    }
}
